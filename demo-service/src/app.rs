//! The demo's HTTP API: the article's backend patterns as endpoints.
//!
//! | endpoint | pattern |
//! | --- | --- |
//! | `GET /profile/{id}` | three concurrent lookups, the rest cancelled on the first error (errgroup) |
//! | `POST /batch?items=N` | N items processed by tasks bounded by a semaphore of 10 |
//! | `POST /orders` | answers at once; confirmation runs as a background task with its own timeout |
//! | `GET /cache/{key}` | an in-memory cache behind an `RwLock` |
//! | `POST /hits` | a counter behind a `Mutex` |
//! | `POST /reports` | fault: a report job that leaks (see [`crate::faults::report_leak`]) |

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock, Semaphore};
use tokio::task::JoinSet;

use crate::faults::report_leak::{self, ReportJobs};

/// Most entries the cache holds; it is cleared when full (the demo needs bounded, not
/// clever).
pub const CACHE_CAP: usize = 10_000;

/// Concurrency of a batch import, as in the article.
pub const BATCH_CONCURRENCY: usize = 10;

/// Largest batch accepted.
pub const MAX_BATCH: usize = 1000;

/// Shared state of the service.
#[derive(Clone, Default)]
pub struct AppState {
    inner: Arc<Shared>,
    /// Report jobs (the leak fault).
    pub reports: Arc<ReportJobs>,
}

#[derive(Default)]
struct Shared {
    cache: RwLock<HashMap<String, String>>,
    hits: Mutex<u64>,
    next_order: AtomicU64,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/profile/{id}", get(profile))
        .route("/batch", post(batch))
        .route("/orders", post(order))
        .route("/cache/{key}", get(cache))
        .route("/hits", post(hit))
        .route("/reports", post(report_leak::start))
        .with_state(state)
}

async fn index() -> &'static str {
    "taskscope demo service: GET /profile/{id}, POST /batch?items=N, POST /orders, \
     GET /cache/{key}, POST /hits, POST /reports (leaks one task per call)\n"
}

type ApiError = (StatusCode, String);

/// A profile assembled from three lookups.
#[derive(Serialize)]
pub struct Profile {
    id: u64,
    user: String,
    orders: u32,
    preferences: String,
}

enum Part {
    User(String),
    Orders(u32),
    Preferences(String),
}

/// `GET /profile/{id}`: user, orders and preferences looked up concurrently; the first
/// error cancels the others (the JoinSet aborts them when dropped), like Go's errgroup.
/// Ids divisible by 10 have broken preferences, so some requests exercise the cancel path.
async fn profile(Path(id): Path<u64>) -> Result<Json<Profile>, ApiError> {
    let mut set = JoinSet::new();
    set.spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(Part::User(format!("user-{id}")))
    });
    set.spawn(async move {
        tokio::time::sleep(Duration::from_millis(8)).await;
        Ok(Part::Orders((id % 7) as u32))
    });
    set.spawn(async move {
        tokio::time::sleep(Duration::from_millis(3)).await;
        if id % 10 == 0 {
            Err(format!("preferences of user {id} are unavailable"))
        } else {
            Ok(Part::Preferences("dark-mode".into()))
        }
    });
    let mut profile = Profile {
        id,
        user: String::new(),
        orders: 0,
        preferences: String::new(),
    };
    while let Some(joined) = set.join_next().await {
        let part = joined
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| (StatusCode::BAD_GATEWAY, e))?;
        match part {
            Part::User(u) => profile.user = u,
            Part::Orders(n) => profile.orders = n,
            Part::Preferences(p) => profile.preferences = p,
        }
    }
    Ok(Json(profile))
}

#[derive(Deserialize)]
struct BatchParams {
    items: usize,
}

/// `POST /batch?items=N`: one task per item, at most [`BATCH_CONCURRENCY`] working at once.
async fn batch(Query(p): Query<BatchParams>) -> Result<String, ApiError> {
    if p.items > MAX_BATCH {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("items={} is above the limit of {MAX_BATCH}\n", p.items),
        ));
    }
    let sem = Arc::new(Semaphore::new(BATCH_CONCURRENCY));
    let mut set = JoinSet::new();
    for item in 0..p.items {
        let sem = Arc::clone(&sem);
        set.spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore never closed");
            tokio::time::sleep(Duration::from_millis(2)).await;
            item
        });
    }
    let mut done = 0;
    while let Some(r) = set.join_next().await {
        if r.is_ok() {
            done += 1;
        }
    }
    Ok(format!("imported {done} items\n"))
}

/// `POST /orders`: accepted at once; the confirmation (a slow "email") runs in a background
/// task that outlives the request, bounded by a timeout of its own.
async fn order(State(state): State<AppState>) -> (StatusCode, String) {
    let id = state.inner.next_order.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let confirm = tokio::time::sleep(Duration::from_millis(50));
        if tokio::time::timeout(Duration::from_secs(1), confirm)
            .await
            .is_err()
        {
            tracing::warn!(order = id, "confirmation timed out");
        }
    });
    (StatusCode::ACCEPTED, format!("order {id} accepted\n"))
}

/// `GET /cache/{key}`: read under the read lock; on a miss, compute and insert under the
/// write lock.
async fn cache(State(state): State<AppState>, Path(key): Path<String>) -> String {
    if let Some(v) = state.inner.cache.read().await.get(&key) {
        return format!("{v}\n");
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    let value = format!("value-of-{key}");
    let mut cache = state.inner.cache.write().await;
    if cache.len() >= CACHE_CAP {
        cache.clear();
    }
    cache.insert(key, value.clone());
    format!("{value}\n")
}

/// `POST /hits`: a counter behind a mutex.
async fn hit(State(state): State<AppState>) -> String {
    let mut hits = state.inner.hits.lock().await;
    *hits += 1;
    format!("{}\n", *hits)
}
