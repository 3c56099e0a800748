//! The demo's HTTP API: the article's backend patterns as endpoints over a real database.
//!
//! | endpoint | pattern |
//! | --- | --- |
//! | `GET /profile/{id}` | three concurrent lookups (two queries, one upstream call over TCP), the rest cancelled on the first error (errgroup) |
//! | `GET /dashboard/{id}` | three concurrent queries: recent orders, order stats, unread notifications |
//! | `POST /batch` | import up to 1000 orders, one task each, at most 10 at a time (semaphore) |
//! | `POST /orders`, `GET /orders/{id}` | answers at once; confirmation runs as a background task with its own timeout |
//! | `GET /cache/users/{id}` | users served from an in-memory cache behind an `RwLock` |
//! | `POST /jobs`, `GET /jobs/{id}` | a worker pool fed by a channel |
//! | `POST /hits` | a counter behind a `Mutex` |
//! | `POST /reports` | report jobs; they leak while fault `leak` is on |
//! | `POST /ingest` | batches of items (fault S9's handler) |
//! | `GET /faults`, `POST/DELETE /faults/{name}` | the fault switches |

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use taskscope::sync::{Mutex, RwLock, Semaphore};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::db;
use crate::faults::{self, Faults, report_leak::ReportJobs};
use crate::workers::{self, Job};

/// How long the upstream client keeps an idle connection.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most entries the user cache holds; it is cleared when full (bounded, not clever).
pub const CACHE_CAP: usize = 10_000;
/// Concurrency of a batch import, as in the article.
pub const BATCH_CONCURRENCY: usize = 10;
/// Largest batch accepted.
pub const MAX_BATCH: usize = 1000;
/// How long an order's background confirmation may take.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// Shared state of the service. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
    /// Report jobs (fault `leak`).
    pub reports: Arc<ReportJobs>,
    /// The fault switches.
    pub faults: Arc<Faults>,
}

struct Shared {
    db: SqlitePool,
    http: reqwest::Client,
    upstream: String,
    cache: RwLock<HashMap<i64, db::User>>,
    hits: Mutex<u64>,
    pool: workers::Pool,
    next_job: AtomicI64,
    /// Flips to true on shutdown; background work watches it.
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Builds the state and starts the worker pool. Must run within the service runtime.
    pub fn new(
        db: SqlitePool,
        upstream: String,
        faults: Arc<Faults>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        AppState {
            inner: Arc::new(Shared {
                pool: workers::Pool::start(db.clone()),
                db,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    // Connections opened in a burst are closed once idle for a while,
                    // so the pool shrinks back (reqwest keeps them 90 s by default, which
                    // reads as a rising floor of connection tasks for that long).
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .build()
                    .expect("a plain HTTP client builds"),
                upstream,
                cache: RwLock::named(HashMap::new(), "user cache"),
                hits: Mutex::named(0, "hit counter"),
                next_job: AtomicI64::new(1),
                shutdown,
            }),
            reports: Arc::default(),
            faults,
        }
    }

    /// The database pool.
    pub fn db(&self) -> &SqlitePool {
        &self.inner.db
    }
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/profile/{id}", get(profile))
        .route("/dashboard/{id}", get(dashboard))
        .route("/batch", post(batch))
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .route("/cache/users/{id}", get(cached_user))
        .route("/jobs", post(submit_job))
        .route("/jobs/{id}", get(job_result))
        .route("/hits", post(hit))
        .route("/reports", post(faults::report_leak::start_report))
        .route("/ingest", post(faults::s9_spawn_per_item::ingest))
        .route("/faults", get(faults::list))
        .route(
            "/faults/{name}",
            post(faults::switch_on).delete(faults::switch_off),
        )
        .with_state(state)
}

async fn index() -> &'static str {
    "taskscope demo service\n\
     GET  /profile/{id}        user, order stats and upstream preferences, concurrently\n\
     GET  /dashboard/{id}      recent orders, stats and unread notifications, concurrently\n\
     POST /batch               {\"orders\":[{\"user_id\":1,\"amount_cents\":100}]} (at most 1000)\n\
     POST /orders              {\"user_id\":1,\"amount_cents\":100}; GET /orders/{id}\n\
     GET  /cache/users/{id}    users through an RwLock cache\n\
     POST /jobs                {\"user_id\":1}; GET /jobs/{id}\n\
     POST /hits                a Mutex counter\n\
     POST /reports             report jobs (leak while fault `leak` is on)\n\
     GET  /faults; POST|DELETE /faults/{name}\n"
}

type ApiError = (StatusCode, String);

fn db_error(e: sqlx::Error) -> ApiError {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("database error: {e}\n"),
    )
}

fn not_found(what: &str, id: i64) -> ApiError {
    (StatusCode::NOT_FOUND, format!("no {what} {id}\n"))
}

/// A profile assembled from three lookups.
#[derive(Debug, Serialize)]
pub struct Profile {
    id: i64,
    name: String,
    email: String,
    orders: i64,
    total_cents: i64,
    theme: String,
}

enum Part {
    User(db::User),
    Stats(db::OrderStats),
    Theme(String),
}

#[derive(Deserialize)]
struct Preferences {
    theme: String,
}

/// `GET /profile/{id}`: the user and their order stats from the database and their
/// preferences from the upstream service, concurrently; the first error cancels the others
/// (the JoinSet aborts them when dropped), like Go's errgroup. The upstream fails ids
/// divisible by 10.
async fn profile(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Profile>, ApiError> {
    let mut set = JoinSet::new();
    let db = state.inner.db.clone();
    set.spawn(async move {
        match db::user(&db, id).await {
            Ok(Some(u)) => Ok(Part::User(u)),
            Ok(None) => Err(not_found("user", id)),
            Err(e) => Err(db_error(e)),
        }
    });
    let db = state.inner.db.clone();
    set.spawn(async move {
        db::order_stats(&db, id)
            .await
            .map(Part::Stats)
            .map_err(db_error)
    });
    let (http, upstream) = (state.inner.http.clone(), state.inner.upstream.clone());
    set.spawn(async move {
        let bad_gateway = |e: String| (StatusCode::BAD_GATEWAY, format!("upstream: {e}\n"));
        let resp = http
            .get(format!("{upstream}/preferences/{id}"))
            .send()
            .await
            .map_err(|e| bad_gateway(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(bad_gateway(resp.status().to_string()));
        }
        let prefs: Preferences = resp.json().await.map_err(|e| bad_gateway(e.to_string()))?;
        Ok(Part::Theme(prefs.theme))
    });

    let (mut user, mut stats, mut theme) = (None, None, None);
    while let Some(joined) = set.join_next().await {
        let part = joined.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))??;
        match part {
            Part::User(u) => user = Some(u),
            Part::Stats(s) => stats = Some(s),
            Part::Theme(t) => theme = Some(t),
        }
    }
    let (Some(user), Some(stats), Some(theme)) = (user, stats, theme) else {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "lookup missing\n".into()));
    };
    Ok(Json(Profile {
        id: user.id,
        name: user.name,
        email: user.email,
        orders: stats.count,
        total_cents: stats.total_cents,
        theme,
    }))
}

/// A dashboard.
#[derive(Debug, Serialize)]
pub struct Dashboard {
    recent_orders: Vec<db::Order>,
    stats: db::OrderStats,
    unread: Vec<db::Notification>,
}

/// `GET /dashboard/{id}`: three queries at once in one task (`try_join!`), failing fast.
async fn dashboard(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Dashboard>, ApiError> {
    let db = &state.inner.db;
    if db::user(db, id).await.map_err(db_error)?.is_none() {
        return Err(not_found("user", id));
    }
    let (recent_orders, stats, unread) = tokio::try_join!(
        db::recent_orders(db, id, 5),
        db::order_stats(db, id),
        db::unread_notifications(db, id),
    )
    .map_err(db_error)?;
    Ok(Json(Dashboard {
        recent_orders,
        stats,
        unread,
    }))
}

/// A new order.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct NewOrder {
    user_id: i64,
    amount_cents: i64,
}

fn check_order(o: &NewOrder) -> Result<(), ApiError> {
    if !(1..=db::USERS).contains(&o.user_id) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("user_id {} does not exist\n", o.user_id),
        ));
    }
    if o.amount_cents <= 0 {
        return Err((
            StatusCode::BAD_REQUEST,
            "amount_cents must be positive\n".into(),
        ));
    }
    Ok(())
}

/// A batch of orders to import.
#[derive(Debug, Deserialize)]
pub struct BatchImport {
    orders: Vec<NewOrder>,
}

/// `POST /batch`: one task per order, at most [`BATCH_CONCURRENCY`] inserting at once.
async fn batch(
    State(state): State<AppState>,
    Json(batch): Json<BatchImport>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if batch.orders.len() > MAX_BATCH {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "{} orders is above the limit of {MAX_BATCH}\n",
                batch.orders.len()
            ),
        ));
    }
    batch.orders.iter().try_for_each(check_order)?;
    let sem = Arc::new(Semaphore::named(BATCH_CONCURRENCY, "batch import"));
    let mut set = JoinSet::new();
    for o in batch.orders {
        let (sem, db) = (Arc::clone(&sem), state.inner.db.clone());
        set.spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore never closed");
            db::insert_order(&db, o.user_id, o.amount_cents).await
        });
    }
    let mut imported = 0;
    while let Some(r) = set.join_next().await {
        r.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?
            .map_err(db_error)?;
        imported += 1;
    }
    Ok(Json(serde_json::json!({ "imported": imported })))
}

/// `POST /orders`: stored as pending and accepted at once; the confirmation (a call to the
/// upstream payment provider, slow for order ids divisible by 100) runs in a background
/// task that outlives the request, bounded by [`CONFIRM_TIMEOUT`] (the order then stays
/// pending) and stopped by shutdown.
async fn create_order(
    State(state): State<AppState>,
    Json(o): Json<NewOrder>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_order(&o)?;
    let id = db::insert_order(&state.inner.db, o.user_id, o.amount_cents)
        .await
        .map_err(db_error)?;
    let db = state.inner.db.clone();
    let mut shutdown = state.inner.shutdown.clone();
    let payment = state
        .inner
        .http
        .post(format!("{}/payments/{id}", state.inner.upstream));
    tokio::spawn(async move {
        let confirm = async {
            let paid = payment.send().await.and_then(|r| r.error_for_status());
            match paid {
                Ok(_) => db::confirm_order(&db, id).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("payment failed: {e}")),
            }
        };
        tokio::select! {
            r = tokio::time::timeout(CONFIRM_TIMEOUT, confirm) => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(order = id, "confirmation failed: {e}"),
                Err(_) => tracing::warn!(order = id, "confirmation timed out"),
            },
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    });
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))))
}

/// `GET /orders/{id}`.
async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<db::Order>, ApiError> {
    db::order(&state.inner.db, id)
        .await
        .map_err(db_error)?
        .map(Json)
        .ok_or_else(|| not_found("order", id))
}

/// `GET /cache/users/{id}`: read under the read lock; on a miss, query and insert under the
/// write lock.
async fn cached_user(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<db::User>, ApiError> {
    if let Some(u) = state.inner.cache.read().await.get(&id) {
        return Ok(Json(u.clone()));
    }
    let user = db::user(&state.inner.db, id)
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("user", id))?;
    let mut cache = state.inner.cache.write().await;
    if cache.len() >= CACHE_CAP {
        cache.clear();
    }
    cache.insert(id, user.clone());
    Ok(Json(user))
}

#[derive(Deserialize)]
struct NewJob {
    user_id: i64,
}

/// `POST /jobs`: queued for the worker pool.
async fn submit_job(
    State(state): State<AppState>,
    Json(j): Json<NewJob>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if !(1..=db::USERS).contains(&j.user_id) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("user_id {} does not exist\n", j.user_id),
        ));
    }
    let id = state.inner.next_job.fetch_add(1, Ordering::Relaxed);
    if !state.inner.pool.submit(Job {
        id,
        user_id: j.user_id,
    }) {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "job queue full\n".into()));
    }
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "job": id }))))
}

/// `GET /jobs/{id}`: the result once a worker stored it.
async fn job_result(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (user_id, total_cents) = db::job_result(&state.inner.db, id)
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("finished job", id))?;
    Ok(Json(
        serde_json::json!({ "job": id, "user_id": user_id, "total_cents": total_cents }),
    ))
}

/// `POST /hits`: a counter behind a mutex.
async fn hit(State(state): State<AppState>) -> String {
    let mut hits = state.inner.hits.lock().await;
    *hits += 1;
    format!("{}\n", *hits)
}
