//! Fault `S11`: `block_on` inside the runtime, handlers that block their worker on a future
//! that needs the runtime.
//!
//! The real-world bug: an async handler calls a synchronous helper (a sync trait method, a
//! "small" utility shared with non-async code, here a sync throttle between items) that
//! bridges into async with `futures::executor::block_on`. tokio does not catch this (only its
//! own `block_on` panics inside the runtime). The helper's future needs the tokio runtime's
//! timer, here a `tokio::time::sleep`, but the timer is only driven when a worker parks; the
//! helper parks the worker thread itself, inside a task's poll. If another worker is parked
//! on the driver, it fires the timer and the helper merely blocks its worker for the sleep;
//! once every worker is inside such a helper, no one drives the timer and the service stops
//! completely: no request is answered, no timer fires, and nothing logs an error.
//!
//! While the fault is on, it spawns one handler task per worker of the runtime (the
//! scenario's [`HANDLERS`] = 2 on the 2-worker demo the tests run), so it stalls every
//! worker on any machine. Each first awaits a reply from an upstream (a task on the outside runtime
//! that answers both after [`WARM_UP`]), then processes items, calling the helper (a
//! [`PAUSE`] sleep under `block_on`) from its poll for each item and writing each item with
//! a short async sleep. Both handlers enter the helper at about the same time and both
//! workers stall. (The wake-up comes from outside the runtime on purpose: such wakes go to
//! the global queue and wake an idle worker, so each handler lands on its own worker. Had
//! the handlers woken on a tokio timer, the first could block its worker before the timer
//! fired for the second, and then nothing drives the timer: a worker parked without the
//! driver is not woken for it. One blocked worker can then freeze the other's timers and
//! I/O too; real, but it shows as one running task, not two.)
//!
//! To make the fault recoverable, the helper's future is `select(sleep, cancel)`, where
//! `cancel` is a `futures` oneshot fired by a plain std thread (a watchdog: no tokio task can
//! run during the stall) [`STALL`] after the handler starts, or at once when the fault is
//! switched off. A cancelled handler gives up and ends, and the service serves again. One
//! switch-on is one episode: afterwards the fault stays on but does nothing more; switch it
//! off and on again to repeat it. While the workers are stalled, `DELETE /faults/S11` itself
//! cannot be served; it is answered once the stall ends.
//!
//! What taskscope shows: while stalled, 2 live tasks at the handler site (marker
//! `S11 handler` in this file), both in state `running` with polls in progress for up to
//! [`STALL`], i.e. both workers blocked in them, their busy time growing; every other task's
//! scheduling delay growing. The exporter keeps answering (its own thread and runtime).
//! After the stall both handlers end: 0 live at the site, and `GET /healthz` answers again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{Either, select};

use super::{Active, Fault, FaultContext};

/// Handler tasks spawned: one per worker of the demo as the tests run it.
pub const HANDLERS: usize = 2;

/// The sleep the helper waits for (if the runtime's timer were driven).
pub const PAUSE: Duration = Duration::from_millis(100);

/// How long the watchdog lets a handler run (stalled or not) before cancelling its helper.
pub const STALL: Duration = Duration::from_secs(5);

/// When the upstream answers the handlers (also lets the `POST` that switched the fault on
/// be answered first).
pub const WARM_UP: Duration = Duration::from_millis(200);

/// The async part of each item.
const ITEM_WRITE: Duration = Duration::from_millis(5);

/// The `S11` fault.
pub struct BlockOnInRuntime;

/// Set when the fault is switched off; the watchdogs wait on it.
#[derive(Default)]
struct StopSignal {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }

    /// Waits until stopped, at most `timeout`.
    fn wait(&self, timeout: Duration) {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(stopped, timeout, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// Counts for `GET /faults`.
#[derive(Default)]
struct Counts {
    helper_calls: AtomicU64,
    items: AtomicU64,
    cancelled: AtomicU64,
}

/// How the helper's `block_on` ended.
enum Pause {
    /// The sleep completed: another worker was free to drive the timer.
    Slept,
    /// The watchdog cancelled it.
    Cancelled,
}

impl Fault for BlockOnInRuntime {
    fn name(&self) -> &'static str {
        "S11"
    }

    fn summary(&self) -> &'static str {
        "block_on inside the runtime: handlers block their worker on a future that needs the runtime"
    }

    fn start(&self, ctx: &FaultContext) -> anyhow::Result<Active> {
        let stop = Arc::new(StopSignal::default());
        let counts = Arc::new(Counts::default());
        let handlers = tokio::runtime::Handle::current()
            .metrics()
            .num_workers()
            .max(1);
        let mut replies = Vec::with_capacity(handlers);
        for _ in 0..handlers {
            let (reply_tx, reply_rx) = tokio::sync::oneshot::channel::<()>();
            replies.push(reply_tx);
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            tokio::spawn(handler(reply_rx, stop, counts)); // fault site: S11 handler
        }
        // The upstream, on the outside runtime: answers every handler after WARM_UP.
        ctx.outside.spawn(async move {
            tokio::time::sleep(WARM_UP).await;
            for reply in replies {
                let _ = reply.send(());
            }
        });
        Ok(Active::new(move || stop.stop()).with_status(move || {
            serde_json::json!({
                "handlers": handlers,
                "helper_calls": counts.helper_calls.load(Ordering::Relaxed),
                "items": counts.items.load(Ordering::Relaxed),
                "cancelled": counts.cancelled.load(Ordering::Relaxed),
                "stall_seconds": STALL.as_secs_f64(),
            })
        }))
    }
}

/// An async handler that calls the sync helper from its poll, once per item, until its
/// watchdog cancels it.
async fn handler(
    upstream: tokio::sync::oneshot::Receiver<()>,
    stop: Arc<StopSignal>,
    counts: Arc<Counts>,
) {
    let (cancel_tx, mut cancel) = oneshot::channel::<()>();
    // The watchdog: a plain thread, since no tokio task can run while the workers stall.
    // If it cannot start, `cancel_tx` is dropped and the helper returns at once.
    let _ = std::thread::Builder::new()
        .name("s11-watchdog".into())
        .spawn(move || {
            stop.wait(STALL);
            let _ = cancel_tx.send(());
        });
    // The request's async part. Whether the upstream answers or fails, go on.
    let _ = upstream.await;
    loop {
        counts.helper_calls.fetch_add(1, Ordering::Relaxed);
        match throttle(&mut cancel) {
            Pause::Slept => counts.items.fetch_add(1, Ordering::Relaxed),
            Pause::Cancelled => {
                counts.cancelled.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        // The item's async part (say, writing it out).
        tokio::time::sleep(ITEM_WRITE).await;
    }
}

/// The sync helper. The bug: `futures::executor::block_on` on a tokio sleep, called on a
/// worker thread; it parks the worker until the sleep fires, which needs a worker to drive
/// the timer.
fn throttle(cancel: &mut oneshot::Receiver<()>) -> Pause {
    let sleep = Box::pin(tokio::time::sleep(PAUSE));
    match futures::executor::block_on(select(sleep, cancel)) {
        Either::Left(_) => Pause::Slept,
        Either::Right(_) => Pause::Cancelled,
    }
}
