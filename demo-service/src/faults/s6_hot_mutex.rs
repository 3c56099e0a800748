//! Fault `S6`: a hot mutex; every request takes one `Mutex` and holds it for 5 ms of work.
//!
//! [`HANDLERS`] request-handler tasks (site `S6 request`) loop: lock the one
//! `tokio::sync::Mutex` over a session cache ([`HotMutex::start`] creates it), hold it for
//! [`HOLD`] of work (an await done under the lock, like I/O), release, and start over. Each
//! handler times its `lock().await`, and the status of `GET /faults` reports acquisitions and
//! the time spent waiting for the lock.
//!
//! The real-world bug: a global lock around shared state, with slow work (a query, a
//! serialization, a call out) done while holding it. Throughput is capped at one request per
//! hold time whatever the number of workers or handlers, and latency grows with the number
//! of handlers queued: with 8 handlers each request waits about 7 holds before doing 1.
//! Nothing is stuck and nothing errors, which is what makes it hard to find without a
//! contention profile.
//!
//! Switching the fault off aborts every handler.
//!
//! What taskscope shows: [`HANDLERS`] live tasks at the request site, all alive and polled
//! steadily (not hung), mostly idle (waiting for the lock). (With taskscope's instrumented
//! locks: contended acquisitions at the lock's acquire site, total and p99 wait in seconds,
//! and the hold site responsible, as Go's mutex profile attributes delay.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskscope::sync::Mutex;
use tokio::task::AbortHandle;

use super::{Active, Fault, FaultContext};

/// Request-handler tasks.
pub const HANDLERS: usize = 8;

/// How long each request holds the mutex.
pub const HOLD: Duration = Duration::from_millis(5);

/// What the lock protects.
#[derive(Debug, Default)]
struct SessionCache {
    requests_served: u64,
}

/// Counters for `GET /faults`.
#[derive(Debug, Default)]
struct Stats {
    acquisitions: AtomicU64,
    /// Acquisitions that waited at least 1 ms for the lock.
    contended: AtomicU64,
    wait_micros_total: AtomicU64,
    wait_micros_max: AtomicU64,
}

impl Stats {
    fn json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let acquisitions = get(&self.acquisitions);
        let wait_total = get(&self.wait_micros_total) as f64 / 1e6;
        serde_json::json!({
            "handlers": HANDLERS,
            "hold_seconds": HOLD.as_secs_f64(),
            "acquisitions": acquisitions,
            "contended_acquisitions": get(&self.contended),
            "wait_seconds_total": wait_total,
            "wait_seconds_max": get(&self.wait_micros_max) as f64 / 1e6,
            "wait_seconds_mean": if acquisitions == 0 { 0.0 } else { wait_total / acquisitions as f64 },
        })
    }
}

/// The `S6` fault.
pub struct HotMutex;

impl Fault for HotMutex {
    fn name(&self) -> &'static str {
        "S6"
    }

    fn summary(&self) -> &'static str {
        "Hot mutex: every request holds one Mutex for 5 ms of work"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        // The one lock every request takes.
        let sessions = Arc::new(Mutex::named(SessionCache::default(), "session cache"));
        let stats = Arc::new(Stats::default());
        let mut tasks: Vec<AbortHandle> = Vec::with_capacity(HANDLERS);
        for _ in 0..HANDLERS {
            let (sessions, stats) = (sessions.clone(), stats.clone());
            let handler = tokio::spawn(handle_requests(sessions, stats)); // fault site: S6 request
            tasks.push(handler.abort_handle());
        }
        Ok(Active::new(move || {
            for task in tasks {
                task.abort();
            }
        })
        .with_status(move || stats.json()))
    }
}

/// A request handler: one request after another, each under the lock for [`HOLD`].
async fn handle_requests(sessions: Arc<Mutex<SessionCache>>, stats: Arc<Stats>) {
    loop {
        let asked = Instant::now();
        let mut cache = sessions.lock().await; // lock acquire: S6 request
        let waited = asked.elapsed();
        stats.acquisitions.fetch_add(1, Ordering::Relaxed);
        if waited >= Duration::from_millis(1) {
            stats.contended.fetch_add(1, Ordering::Relaxed);
        }
        let waited = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        stats.wait_micros_total.fetch_add(waited, Ordering::Relaxed);
        stats.wait_micros_max.fetch_max(waited, Ordering::Relaxed);

        // The bug: the request's slow part runs with the lock held.
        tokio::time::sleep(HOLD).await;
        cache.requests_served += 1;
        drop(cache);
    }
}
