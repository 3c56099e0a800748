//! Fault `S7`: a task that never yields, a 2 s CPU loop with no `.await`.
//!
//! The real-world bug: an async handler does heavy synchronous work inline (hashing a
//! password, parsing a huge JSON body, compressing a response, a regex over a large input)
//! instead of moving it to `spawn_blocking` or a thread pool. The task never reaches an
//! `.await` while it computes, so the worker thread polling it can run nothing else for the
//! whole time: the tasks queued on that worker wait, timers and I/O it was driving are late,
//! and with as many such requests as workers the whole service stops answering.
//!
//! While the fault is on, a driver task spawns a spin task at once and then every
//! [`PERIOD`]; each spin task runs [`SPIN`] of real CPU work (kept alive by
//! [`std::hint::black_box`]) with no `.await`, then ends. Switching the fault off stops the
//! driver; a spin in progress cannot be interrupted (that is the bug) and finishes its
//! [`SPIN`].
//!
//! What taskscope shows: while a spin runs, exactly one live task at the spin site (marker
//! `S7 spin` in this file) in state `running`, its poll in progress for up to 2 s, and that
//! worker's busy time growing at one second per second; the driver's site has one live, idle
//! task while the fault is on. The exporter keeps answering throughout (it runs on its own
//! thread and runtime). Between spins and after the fault is off, the spin site has 0 live
//! tasks and the service serves normally.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Active, Fault, FaultContext};

/// How long each spin task computes without yielding.
pub const SPIN: Duration = Duration::from_secs(2);

/// Time between the starts of two spins.
pub const PERIOD: Duration = Duration::from_secs(5);

/// The `S7` fault.
pub struct NeverYields;

/// Counts for `GET /faults`.
#[derive(Default)]
struct Counts {
    started: AtomicU64,
    finished: AtomicU64,
}

impl Fault for NeverYields {
    fn name(&self) -> &'static str {
        "S7"
    }

    fn summary(&self) -> &'static str {
        "A task that never yields: a 2 s CPU loop with no .await"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let counts = Arc::new(Counts::default());
        let driver_counts = Arc::clone(&counts);
        tokio::spawn(drive(stop_rx, driver_counts)); // fault site: S7 driver
        Ok(Active::new(move || {
            // Ends the driver (dropping the sender would too).
            let _ = stop_tx.send(());
        })
        .with_status(move || {
            serde_json::json!({
                "spins_started": counts.started.load(Ordering::Relaxed),
                "spins_finished": counts.finished.load(Ordering::Relaxed),
                "spin_seconds": SPIN.as_secs_f64(),
                "period_seconds": PERIOD.as_secs_f64(),
            })
        }))
    }
}

/// Spawns a spin task now and every [`PERIOD`] until stopped.
async fn drive(mut stop: oneshot::Receiver<()>, counts: Arc<Counts>) {
    loop {
        let counts = Arc::clone(&counts);
        tokio::spawn(async move { spin(&counts) }); // fault site: S7 spin
        tokio::select! {
            () = tokio::time::sleep(PERIOD) => {}
            _ = &mut stop => return,
        }
    }
}

/// The bug: [`SPIN`] of CPU work inside one poll, never reaching an `.await`.
fn spin(counts: &Counts) {
    counts.started.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let mut acc: u64 = 0x9E37_79B9_7F4A_7C15;
    while start.elapsed() < SPIN {
        for i in 0..10_000u64 {
            // A step of a linear congruential generator: cheap, but real work the compiler
            // cannot drop.
            acc = black_box(
                acc.wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(black_box(i)),
            );
        }
    }
    black_box(acc);
    counts.finished.fetch_add(1, Ordering::Relaxed);
}
