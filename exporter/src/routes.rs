//! HTTP routes. Handlers only translate: the data comes from the agent, the formats from
//! `metrics` and serde.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
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
        .method_not_allowed_fallback(method_not_allowed)
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
        format!("no such endpoint. This is a {INDEX}"),
    )
}

async fn method_not_allowed() -> (StatusCode, &'static str) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: every taskscope endpoint answers GET\n",
    )
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    match metrics::encode(&state.registry) {
        Ok((body, content_type)) => (
            [(
                header::CONTENT_TYPE,
                format!("{content_type}; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// Parses the snapshot's query: `tasks=N` at most once, nothing else.
fn snapshot_params(pairs: &[(String, String)]) -> Result<usize, String> {
    const USAGE: &str = "the snapshot takes one parameter: tasks=N (0 to 100000)";
    let mut tasks = None;
    for (key, value) in pairs {
        if key != "tasks" {
            return Err(format!("unknown parameter {key:?}; {USAGE}"));
        }
        if tasks.is_some() {
            return Err(format!("parameter tasks given twice; {USAGE}"));
        }
        let n: usize = value
            .parse()
            .map_err(|_| format!("parameter tasks={value:?} is not a number; {USAGE}"))?;
        if n > MAX_SNAPSHOT_TASKS {
            return Err(format!(
                "parameter tasks={n} is above the limit of {MAX_SNAPSHOT_TASKS}"
            ));
        }
        tasks = Some(n);
    }
    Ok(tasks.unwrap_or(0))
}

async fn snapshot(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let max_tasks = match snapshot_params(&pairs) {
        Ok(n) => n,
        Err(message) => return bad_request(message),
    };
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
