//! Fault `S9`: a task spawned per item, each waiting to send into a full channel.
//!
//! `POST /ingest` takes a batch `{"items": [...]}` (any JSON values, at most
//! [`MAX_ITEMS`] per request) and, while the fault is on, spawns one task per item that
//! awaits `send` into a bounded channel of [`CHANNEL_CAPACITY`] slots. A drainer takes one
//! item every [`DRAIN_EVERY`] (the first after one period). When the fault is switched on,
//! a client on the [`Outside`](crate::outside::Outside) runtime posts one batch of
//! [`BATCH`] items to the service's own `/ingest`.
//!
//! The bug it mimics: unbounded concurrency hidden behind a bounded channel. The handler
//! answers at once ("accepted"), and the backpressure the channel was meant to give turns
//! into parked tasks, one per item, each holding its item: memory grows by the batch size
//! per request while the consumer falls further behind. The fix is to send from the
//! handler (propagating backpressure to the client) or to bound the spawning with a
//! semaphore.
//!
//! What taskscope shows: at the item site in [`ingest`], live = items − free slots: the
//! first batch of 1000 leaves exactly 1000 − 16 = 984 tasks, all idle waiting on the
//! channel's send, and every further batch adds exactly its size (1984 after the second),
//! less one per drain period; the growth indicator fires at the posting rate.
//!
//! With the fault off, `/ingest` validates the batch and answers 409 `fault S9 is off`
//! (there is no consumer to ingest into). Switching the fault off stops the drainer and
//! drops the channel's receiver, so every waiting send fails and its task ends.
//!
//! The channel lives in a process-wide slot (the service has one `/ingest`), since
//! [`AppState`] has no field for it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::{Active, Fault, FaultContext};
use crate::app::AppState;

/// Slots of the bounded channel.
pub const CHANNEL_CAPACITY: usize = 16;
/// The drainer takes one item per period, the first after one period.
pub const DRAIN_EVERY: Duration = Duration::from_secs(30);
/// Items the fault's own client posts when switched on.
pub const BATCH: usize = 1000;
/// Most items in one `/ingest` request; more is a 400.
pub const MAX_ITEMS: usize = 10_000;
/// Most item tasks waiting at once; beyond it `/ingest` answers 503, so the leak stays
/// bounded even when driven hard.
pub const MAX_WAITING: usize = 100_000;

/// The channel and counters while the fault is on.
struct Ingest {
    tx: mpsc::Sender<serde_json::Value>,
    /// Item tasks alive (spawned and not yet ended).
    waiting: AtomicUsize,
    /// Items accepted by `/ingest`.
    accepted: AtomicU64,
    /// Items the drainer took.
    drained: AtomicU64,
}

/// The running fault's channel; `None` while the fault is off.
static INGEST: Mutex<Option<Arc<Ingest>>> = Mutex::new(None);

fn current() -> Option<Arc<Ingest>> {
    INGEST.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The `S9` fault.
pub struct SpawnPerItem;

impl Fault for SpawnPerItem {
    fn name(&self) -> &'static str {
        "S9"
    }

    fn summary(&self) -> &'static str {
        "Spawn per item into a full channel: 1000 tasks per batch wait on a channel of 16"
    }

    fn start(&self, ctx: &FaultContext) -> anyhow::Result<Active> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let ingest = Arc::new(Ingest {
            tx,
            waiting: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            drained: AtomicU64::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let i = Arc::clone(&ingest);
        tokio::spawn(drainer(rx, i, stop_rx)); // fault site: S9 drainer
        *INGEST.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&ingest));
        let client = ctx.outside.spawn(post_batch(ctx.service_url.clone()));
        Ok(Active::new(move || {
            client.abort();
            // New requests see the fault off; the drainer drops the receiver, so every
            // waiting send fails.
            INGEST.lock().unwrap_or_else(|e| e.into_inner()).take();
            let _ = stop_tx.send(true);
        })
        .with_status(move || {
            serde_json::json!({
                "accepted": ingest.accepted.load(Ordering::Relaxed),
                "waiting": ingest.waiting.load(Ordering::Relaxed),
                "drained": ingest.drained.load(Ordering::Relaxed),
                "buffered": CHANNEL_CAPACITY - ingest.tx.capacity(),
            })
        }))
    }
}

/// A batch for `/ingest`.
#[derive(Deserialize)]
struct Batch {
    items: Vec<serde_json::Value>,
}

/// `POST /ingest`: with the fault on, spawns one task per item (the bug) and answers 202
/// `{"accepted": n}`. Malformed JSON or more than [`MAX_ITEMS`] items: 400. Fault off: 409.
/// Too many tasks already waiting: 503.
pub async fn ingest(
    State(_state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), (StatusCode, String)> {
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("expected {{\"items\": [...]}}: {e}\n"),
        )
    })?;
    let n = batch.items.len();
    if n > MAX_ITEMS {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("{n} items is above the limit of {MAX_ITEMS}\n"),
        ));
    }
    let Some(ingest) = current() else {
        return Err((StatusCode::CONFLICT, "fault S9 is off\n".into()));
    };
    if ingest.waiting.load(Ordering::Relaxed) + n > MAX_WAITING {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_WAITING} items already waiting\n"),
        ));
    }
    for item in batch.items {
        ingest.waiting.fetch_add(1, Ordering::Relaxed);
        let i = Arc::clone(&ingest);
        tokio::spawn(deliver(i, item)); // fault site: S9 item
    }
    ingest.accepted.fetch_add(n as u64, Ordering::Relaxed);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": n })),
    ))
}

/// One item's task: waits for a slot in the channel (the bug: one parked task per item).
async fn deliver(ingest: Arc<Ingest>, item: serde_json::Value) {
    let _ = ingest.tx.send(item).await;
    ingest.waiting.fetch_sub(1, Ordering::Relaxed);
}

/// Resolves once the fault is switched off (or its switch is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The slow consumer: one item per [`DRAIN_EVERY`]. Ends (dropping the receiver) when the
/// fault is switched off.
async fn drainer(
    mut rx: mpsc::Receiver<serde_json::Value>,
    ingest: Arc<Ingest>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(DRAIN_EVERY) => {}
        }
        tokio::select! {
            () = stopped(&mut stop) => return,
            item = rx.recv() => match item {
                Some(_) => {
                    ingest.drained.fetch_add(1, Ordering::Relaxed);
                }
                None => return,
            },
        }
    }
}

/// The fault's client (on the outside runtime): posts one batch of [`BATCH`] items.
async fn post_batch(service_url: String) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("S9: cannot build a client: {e}");
            return;
        }
    };
    let items: Vec<serde_json::Value> =
        (0..BATCH).map(|i| serde_json::json!({ "id": i })).collect();
    match client
        .post(format!("{service_url}/ingest"))
        .json(&serde_json::json!({ "items": items }))
        .send()
        .await
    {
        Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {}
        Ok(r) => tracing::warn!("S9: /ingest answered {}", r.status()),
        Err(e) => tracing::warn!("S9: posting the batch failed: {e}"),
    }
}
