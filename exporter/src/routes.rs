//! HTTP routes. Handlers only translate: the data comes from the agent, the formats from
//! `metrics` and serde.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use serde::Deserialize;
use taskscope::{Agent, SnapshotOptions};

use crate::MAX_SNAPSHOT_TASKS;
use crate::metrics;

struct AppState {
    agent: Agent,
    registry: Registry,
}

pub(crate) fn router(agent: Agent) -> Router {
    let state = Arc::new(AppState {
        registry: metrics::registry(agent.clone()),
        agent,
    });
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics_text))
        .route("/debug/taskscope/snapshot", get(snapshot))
        .fallback(not_found)
        .with_state(state)
}

const INDEX: &str = "taskscope exporter\n\
GET /metrics                              Prometheus text format\n\
GET /debug/taskscope/snapshot[?tasks=N]   snapshot JSON, with up to N live tasks\n";

async fn index() -> &'static str {
    INDEX
}

async fn not_found() -> (StatusCode, String) {
    (
        StatusCode::NOT_FOUND,
        format!("no such endpoint; this exporter serves:\n{INDEX}"),
    )
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    match metrics::encode(&state.registry) {
        Ok((body, content_type)) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotParams {
    /// Live tasks to list, oldest first.
    tasks: Option<usize>,
}

async fn snapshot(
    State(state): State<Arc<AppState>>,
    params: Result<Query<SnapshotParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(e) => {
            return bad_request(format!(
                "{}; parameters: tasks=N (0..={MAX_SNAPSHOT_TASKS})",
                e.body_text()
            ));
        }
    };
    let max_tasks = params.tasks.unwrap_or(0);
    if max_tasks > MAX_SNAPSHOT_TASKS {
        return bad_request(format!(
            "parameter tasks={max_tasks} is above the limit of {MAX_SNAPSHOT_TASKS}"
        ));
    }
    let snap = state.agent.snapshot_with(&SnapshotOptions { max_tasks });
    match serde_json::to_string(&snap) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode snapshot: {e}\n"),
        )
            .into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}
