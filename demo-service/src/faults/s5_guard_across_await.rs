//! Fault `S5`: read guards held across slow awaits; the writer and later readers queue.
//!
//! One `tokio::sync::RwLock` over a config ([`GuardAcrossAwait::start`] creates it).
//! [`READERS`] reader tasks (site `S5 reader`) loop: take a read guard (giving up after
//! [`READER_TIMEOUT`]) and, while still holding it, await a send of an audit record into a
//! bounded channel of [`CHANNEL_CAPACITY`] that a drainer task (site `S5 drainer`) empties
//! slowly, one record every [`DRAIN_INTERVAL`]. A writer task (site `S5 writer`) wants to
//! update the config every [`WRITER_INTERVAL`], waiting at most [`WRITER_TIMEOUT`] for
//! `write()`.
//!
//! The real-world bug: a guard kept alive across an `.await` that can take long (a send into
//! a full channel, a network call), here because the record is built from the guarded config
//! and sent before the guard's scope ends. The channel is nearly always full, so readers hold
//! their guards for seconds. The writer needs every guard released; tokio's `RwLock` is fair,
//! so while the writer waits, readers that come back queue behind it and time out: the
//! service serves errors while no task is busy.
//!
//! Switching the fault off aborts every task it spawned (dropping the guards).
//!
//! What taskscope shows: [`READERS`] live tasks at the reader site, one at the writer site
//! and one at the drainer site, mostly idle; the status of `GET /faults` counts reader and
//! writer timeouts. (With taskscope's instrumented locks: the current holders with their
//! hold times, waiters by mode, the writer's wait time, and "guard held across .await" at
//! the reader's acquire site.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskscope::sync::RwLock;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{Active, Fault, FaultContext};

/// Reader tasks.
pub const READERS: usize = 50;

/// Capacity of the audit channel the readers send into while holding their guards.
pub const CHANNEL_CAPACITY: usize = 4;

/// The drainer takes one record per interval.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(100);

/// How long a reader waits for its read guard before giving up (counted as a timeout).
pub const READER_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between the writer's attempts.
pub const WRITER_INTERVAL: Duration = Duration::from_millis(500);

/// How long the writer waits for `write()` before giving up (counted as a timeout).
pub const WRITER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the lock protects.
#[derive(Debug, Default)]
struct Config {
    generation: u64,
}

/// Counters for `GET /faults`.
#[derive(Debug, Default)]
struct Stats {
    reader_acquisitions: AtomicU64,
    reader_timeouts: AtomicU64,
    records_sent: AtomicU64,
    writer_acquisitions: AtomicU64,
    writer_timeouts: AtomicU64,
    writer_wait_micros_total: AtomicU64,
    writer_wait_micros_max: AtomicU64,
}

impl Stats {
    fn json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "reader_acquisitions": get(&self.reader_acquisitions),
            "reader_timeouts": get(&self.reader_timeouts),
            "records_sent": get(&self.records_sent),
            "writer_acquisitions": get(&self.writer_acquisitions),
            "writer_timeouts": get(&self.writer_timeouts),
            "writer_wait_seconds_total": get(&self.writer_wait_micros_total) as f64 / 1e6,
            "writer_wait_seconds_max": get(&self.writer_wait_micros_max) as f64 / 1e6,
        })
    }
}

/// The `S5` fault.
pub struct GuardAcrossAwait;

impl Fault for GuardAcrossAwait {
    fn name(&self) -> &'static str {
        "S5"
    }

    fn summary(&self) -> &'static str {
        "Read guards held across slow channel sends; the writer and later readers queue"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        // The lock every task uses.
        let config = Arc::new(RwLock::named(Config::default(), "config"));
        let stats = Arc::new(Stats::default());
        let (audit_tx, audit_rx) = mpsc::channel::<u64>(CHANNEL_CAPACITY);
        let mut tasks: Vec<AbortHandle> = Vec::with_capacity(READERS + 2);

        let drainer = tokio::spawn(drain(audit_rx)); // fault site: S5 drainer
        tasks.push(drainer.abort_handle());
        for _ in 0..READERS {
            let (config, stats, audit) = (config.clone(), stats.clone(), audit_tx.clone());
            let reader = tokio::spawn(reader_loop(config, stats, audit)); // fault site: S5 reader
            tasks.push(reader.abort_handle());
        }
        drop(audit_tx);
        let writer = tokio::spawn(writer_loop(config, stats.clone())); // fault site: S5 writer
        tasks.push(writer.abort_handle());

        Ok(Active::new(move || {
            for task in tasks {
                task.abort();
            }
        })
        .with_status(move || stats.json()))
    }
}

/// A reader: reads the config and sends an audit record built from it, guard still held.
async fn reader_loop(config: Arc<RwLock<Config>>, stats: Arc<Stats>, audit: mpsc::Sender<u64>) {
    loop {
        let acquire = config.read(); // lock acquire: S5 read
        let guard = match tokio::time::timeout(READER_TIMEOUT, acquire).await {
            Ok(guard) => guard,
            Err(_) => {
                stats.reader_timeouts.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        stats.reader_acquisitions.fetch_add(1, Ordering::Relaxed);
        // The bug: the guard lives across this await, which waits for room in a channel that
        // is nearly always full.
        if audit.send(guard.generation).await.is_err() {
            return;
        }
        stats.records_sent.fetch_add(1, Ordering::Relaxed);
        drop(guard);
    }
}

/// The slow consumer of the audit channel.
async fn drain(mut audit: mpsc::Receiver<u64>) {
    while audit.recv().await.is_some() {
        tokio::time::sleep(DRAIN_INTERVAL).await;
    }
}

/// The writer: updates the config every interval, waiting at most [`WRITER_TIMEOUT`].
async fn writer_loop(config: Arc<RwLock<Config>>, stats: Arc<Stats>) {
    loop {
        tokio::time::sleep(WRITER_INTERVAL).await;
        let asked = Instant::now();
        let acquire = config.write(); // lock acquire: S5 write
        let acquired = tokio::time::timeout(WRITER_TIMEOUT, acquire).await;
        let waited = u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats
            .writer_wait_micros_total
            .fetch_add(waited, Ordering::Relaxed);
        stats
            .writer_wait_micros_max
            .fetch_max(waited, Ordering::Relaxed);
        match acquired {
            Ok(mut guard) => {
                guard.generation += 1;
                stats.writer_acquisitions.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.writer_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
