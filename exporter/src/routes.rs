//! HTTP routes. Handlers only translate: the data comes from the agent, the formats from
//! `metrics` and serde.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::time::Duration;

use taskscope::{Agent, DumpError, DumpOptions, HistoryError, SnapshotOptions};

use crate::MAX_SNAPSHOT_TASKS;
use crate::metrics;
use crate::metrics::Registry;

struct AppState {
    /// Every runtime served; the first answers requests without `?runtime=`.
    agents: Vec<Agent>,
    registry: Registry,
    /// Traced dumps pause the service's runtime: at most one per this interval.
    min_dump_interval: Duration,
    /// When the last traced dump started.
    last_traced: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The agent a request is about (`runtime=NAME`, default the first served) and the
/// request's other parameters.
struct Target {
    agent: Agent,
    pairs: Vec<(String, String)>,
}

impl AppState {
    /// Picks the runtime named by the `runtime` parameter and strips it from `pairs`.
    fn target(&self, pairs: Vec<(String, String)>) -> Result<Target, (StatusCode, String)> {
        let mut name = None;
        let mut rest = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            if key != "runtime" {
                rest.push((key, value));
            } else if name.replace(value).is_some() {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "parameter runtime given twice\n".to_string(),
                ));
            }
        }
        let agent = match name {
            None => self.agents[0].clone(),
            Some(name) => match self
                .agents
                .iter()
                .find(|a| a.runtime_name() == Some(name.as_str()))
            {
                Some(agent) => agent.clone(),
                None => {
                    return Err((
                        StatusCode::NOT_FOUND,
                        format!(
                            "no runtime named {name:?}; this exporter serves: {}\n",
                            self.runtime_list()
                        ),
                    ));
                }
            },
        };
        Ok(Target { agent, pairs: rest })
    }

    fn runtime_names(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter_map(|a| a.runtime_name().map(str::to_string))
            .collect()
    }

    fn runtime_list(&self) -> String {
        let names = self.runtime_names();
        if names.is_empty() {
            "one unnamed runtime".to_string()
        } else {
            names.join(", ")
        }
    }

    /// Takes a dump, answering from the registry when a traced one was taken less than
    /// `min_dump_interval` ago (so a client looping on the endpoint cannot keep the
    /// runtime paused).
    async fn dump(
        &self,
        agent: &Agent,
        options: &DumpOptions,
    ) -> Result<taskscope::model::Dump, DumpError> {
        let started = std::time::Instant::now();
        let mut options = options.clone();
        let mut limited = None;
        if options.trace {
            let last = *self.last_traced.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(last) = last.filter(|l| started.duration_since(*l) < self.min_dump_interval)
            {
                options.trace = false;
                limited = Some(started.duration_since(last));
            }
        }
        let mut dump = agent.dump(&options).await?;
        if dump.source == taskscope::model::DumpSource::Traced {
            *self.last_traced.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
        }
        if let Some(ago) = limited {
            dump.notes.insert(
                0,
                format!(
                    "registry only: traced dumps pause the runtime and this exporter allows \
                     one per {:.1} s; the last one started {:.1} s ago",
                    self.min_dump_interval.as_secs_f64(),
                    ago.as_secs_f64()
                ),
            );
        }
        Ok(dump)
    }
}

pub(crate) fn router(
    agents: Vec<Agent>,
    access: crate::auth::Access,
    min_dump_interval: Duration,
) -> Router {
    let state = Arc::new(AppState {
        registry: metrics::registry(agents.clone()),
        agents,
        min_dump_interval,
        last_traced: std::sync::Mutex::new(None),
    });
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics_text))
        .route("/debug/taskscope/snapshot", get(snapshot))
        .route("/debug/taskscope/dump", get(dump))
        .route("/debug/pprof/tasks", get(pprof_tasks))
        .route("/debug/pprof/mutex", get(pprof_mutex))
        .route("/debug/taskscope/locks", get(locks))
        .route("/debug/taskscope/baseline", post(mark_baseline))
        .route("/debug/taskscope/diff", get(diff))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            access,
            crate::auth::check,
        ))
        // Outermost: size limits are checked before the token, and the deadline covers all.
        .layer(axum::middleware::from_fn(crate::serve::limits))
}

const INDEX: &str = "taskscope exporter\n\
GET /metrics                              Prometheus text format\n\
GET /debug/taskscope/snapshot[?tasks=N][&site=SITE]\n\
                                          snapshot JSON, with up to N live tasks (of SITE)\n\
GET /debug/taskscope/dump[?debug=1|2][&format=json][&timeout=SECS][&trace=0][&site=SITE]\n\
                                          task dump grouped by spawn site and await point\n\
GET /debug/pprof/tasks[?timeout=SECS][&trace=0][&site=SITE]\n\
                                          the dump as a gzipped pprof profile (go tool pprof)\n\
GET /debug/taskscope/locks[?format=json]   instrumented locks: contention, holders, waiters,\n\
                                          deadlocks and other lock findings\n\
GET /debug/pprof/mutex                    lock contention as a gzipped pprof profile\n\
POST /debug/taskscope/baseline            mark a baseline: snapshots then carry what changed\n\
GET /debug/taskscope/diff[?since=DURATION] per-site change since the baseline, or over the\n\
                                          last DURATION (60s, 5m) of the agent's history\n\
Serving several runtimes, every endpoint but /metrics takes runtime=NAME (default: the\n\
first); /metrics labels every series with runtime=\"NAME\".\n";

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
        "method not allowed: POST /debug/taskscope/baseline; every other taskscope endpoint \
         answers GET\n",
    )
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let (body, content_type) = metrics::encode(&state.registry);
    (
        [(
            header::CONTENT_TYPE,
            format!("{content_type}; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Parses the snapshot's query: `tasks=N` and `site=SITE`, each at most once, nothing
/// else.
fn snapshot_params(pairs: &[(String, String)]) -> Result<SnapshotOptions, String> {
    const USAGE: &str =
        "the snapshot takes tasks=N (0 to 100000) and site=SITE (list only that site's tasks)";
    let mut tasks = None;
    let mut site = None;
    for (key, value) in pairs {
        if key == "site" {
            if site.is_some() {
                return Err(format!("parameter site given twice; {USAGE}"));
            }
            site = Some(value.clone());
            continue;
        }
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
    Ok(SnapshotOptions {
        max_tasks: tasks.unwrap_or(0),
        site,
    })
}

async fn snapshot(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Target { agent, pairs } = match state.target(pairs) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    let options = match snapshot_params(&pairs) {
        Ok(options) => options,
        Err(message) => return bad_request(message),
    };
    let mut snap = agent.snapshot_with(&options);
    snap.runtimes = state.runtime_names();
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

/// Parsed `dump` query.
#[derive(Debug)]
struct DumpParams {
    options: DumpOptions,
    debug: u8,
    json: bool,
}

/// Parses the dump's query: `debug=1|2`, `format=text|json`, `timeout=SECS` (0.1 to 60),
/// `trace=0|1`, `site=SITE`; each at most once.
fn dump_params(pairs: &[(String, String)]) -> Result<DumpParams, String> {
    const USAGE: &str = "parameters: debug=1|2, format=text|json, timeout=SECS (0.1 to 60), \
                         trace=0|1, site=SPAWN_SITE";
    let mut seen = std::collections::HashSet::new();
    let mut p = DumpParams {
        options: DumpOptions::default(),
        debug: 1,
        json: false,
    };
    for (key, value) in pairs {
        if !seen.insert(key.as_str()) {
            return Err(format!("parameter {key} given twice; {USAGE}"));
        }
        let bad = || format!("parameter {key}={value:?} is not valid; {USAGE}");
        match key.as_str() {
            "debug" => {
                p.debug = match value.as_str() {
                    "1" => 1,
                    "2" => 2,
                    _ => return Err(bad()),
                }
            }
            "format" => {
                p.json = match value.as_str() {
                    "json" => true,
                    "text" => false,
                    _ => return Err(bad()),
                }
            }
            "timeout" => {
                let secs: f64 = value.parse().map_err(|_| bad())?;
                if !(0.1..=60.0).contains(&secs) {
                    return Err(bad());
                }
                p.options.timeout = Duration::from_secs_f64(secs);
            }
            "trace" => {
                p.options.trace = match value.as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(bad()),
                }
            }
            "site" => p.options.site = Some(value.clone()),
            _ => return Err(format!("unknown parameter {key:?}; {USAGE}")),
        }
    }
    p.options.tasks = p.debug == 2;
    Ok(p)
}

async fn dump(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Target { agent, pairs } = match state.target(pairs) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    let params = match dump_params(&pairs) {
        Ok(p) => p,
        Err(message) => return bad_request(message),
    };
    let dump = match state.dump(&agent, &params.options).await {
        Ok(d) => d,
        Err(e @ DumpError::Busy) => {
            return (StatusCode::TOO_MANY_REQUESTS, format!("{e}\n")).into_response();
        }
    };
    if params.json {
        return match serde_json::to_string(&dump) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the dump: {e}\n"),
            )
                .into_response(),
        };
    }
    let text = if params.debug == 2 {
        crate::dump_text::tasks(&dump)
    } else {
        crate::dump_text::groups(&dump)
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// `/debug/pprof/tasks`: the dump as a gzipped pprof profile. Takes the dump's `timeout`,
/// `trace` and `site`; `debug` and `format` make no sense here.
async fn pprof_tasks(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Target { agent, pairs } = match state.target(pairs) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some((key, _)) = pairs.iter().find(|(k, _)| k == "debug" || k == "format") {
        return bad_request(format!(
            "parameter {key} does not apply to /debug/pprof/tasks; \
             parameters: timeout=SECS (0.1 to 60), trace=0|1, site=SPAWN_SITE"
        ));
    }
    let options = match dump_params(&pairs) {
        Ok(p) => p.options,
        Err(message) => return bad_request(message),
    };
    let dump = match state.dump(&agent, &options).await {
        Ok(d) => d,
        Err(e @ DumpError::Busy) => {
            return (StatusCode::TOO_MANY_REQUESTS, format!("{e}\n")).into_response();
        }
    };
    match crate::pprof::encode_gzip(&dump) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"tasks.pb.gz\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the profile: {e}\n"),
        )
            .into_response(),
    }
}

/// `POST /debug/taskscope/baseline`: marks a baseline now.
async fn mark_baseline(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Target { agent, pairs } = match state.target(pairs) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some((key, _)) = pairs.first() {
        return bad_request(format!(
            "unknown parameter {key:?}; the baseline takes no parameters"
        ));
    }
    let at = agent.mark_baseline();
    json(&serde_json::json!({ "marked_at_unix_ms": at }))
}

/// `GET /debug/taskscope/diff[?since=DURATION]`: per-site change since the baseline, or
/// over the last DURATION of the agent's history.
async fn diff(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Target { agent, pairs } = match state.target(pairs) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    const USAGE: &str = "the diff takes one parameter: since=DURATION (e.g. 60s, 5m); \
                         without it, the change since the baseline";
    let mut since = None;
    for (key, value) in &pairs {
        if key != "since" {
            return bad_request(format!("unknown parameter {key:?}; {USAGE}"));
        }
        if since.is_some() {
            return bad_request(format!("parameter since given twice; {USAGE}"));
        }
        match parse_duration(value) {
            Some(d) => since = Some(d),
            None => {
                return bad_request(format!(
                    "parameter since={value:?} is not a duration; {USAGE}"
                ));
            }
        }
    }
    match since {
        Some(since) => match agent.diff_since(since) {
            Ok(diff) => json(&diff),
            Err(e @ HistoryError::Empty(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
            }
            Err(e) => bad_request(e.to_string()),
        },
        None => match agent.snapshot().baseline {
            Some(diff) => json(&diff),
            None => (
                StatusCode::CONFLICT,
                "no baseline marked: POST /debug/taskscope/baseline first, or ask for \
                 since=DURATION\n",
            )
                .into_response(),
        },
    }
}

/// `60`, `60s`, `1m30s`, `500ms`: plain numbers are seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let d = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::try_from_secs_f64(secs).ok()?,
        Ok(_) => return None,
        Err(_) => humantime::parse_duration(text).ok()?,
    };
    (d > Duration::ZERO).then_some(d)
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode JSON: {e}\n"),
        )
            .into_response(),
    }
}

/// `GET /debug/taskscope/locks[?format=json|text]`: the locks and the lock findings.
async fn locks(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Target { agent, pairs } = match state.target(pairs) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    const USAGE: &str = "the locks take one parameter: format=text|json";
    let mut format_json = None;
    for (key, value) in &pairs {
        if key != "format" {
            return bad_request(format!("unknown parameter {key:?}; {USAGE}"));
        }
        if format_json.is_some() {
            return bad_request(format!("parameter format given twice; {USAGE}"));
        }
        format_json = Some(match value.as_str() {
            "json" => true,
            "text" => false,
            _ => return bad_request(format!("parameter format={value:?} is not valid; {USAGE}")),
        });
    }
    let snap = agent.snapshot();
    let findings: Vec<&taskscope::model::Finding> = snap
        .findings
        .iter()
        .filter(|f| crate::locks_text::is_lock_finding(f.kind))
        .collect();
    if format_json.unwrap_or(false) {
        return json(&serde_json::json!({
            "locks": snap.locks,
            "findings": findings,
        }));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        crate::locks_text::render(&snap.locks, &findings),
    )
        .into_response()
}

/// `GET /debug/pprof/mutex`: lock contention as a gzipped pprof profile.
async fn pprof_mutex(
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Target { agent, pairs } = match state.target(pairs) {
        Ok(t) => t,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some((key, _)) = pairs.first() {
        return bad_request(format!(
            "unknown parameter {key:?}; /debug/pprof/mutex takes no parameters"
        ));
    }
    let snap = agent.snapshot();
    match crate::pprof::encode_mutex_gzip(&snap.locks, snap.taken_at_unix_ms) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"mutex.pb.gz\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the profile: {e}\n"),
        )
            .into_response(),
    }
}
