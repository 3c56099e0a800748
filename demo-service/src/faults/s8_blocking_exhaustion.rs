//! Fault `S8`: blocking pool exhaustion, blocking jobs that wait (via `block_on`) on async
//! file I/O that itself needs a blocking thread.
//!
//! The real-world bug: synchronous code running in `spawn_blocking` (a legacy library, a
//! sync trait implementation, a CPU job that "just needs one file") bridges back into async
//! with `Handle::block_on(tokio::fs::...)`. `tokio::fs` does its work on the same blocking
//! pool, so each such job holds one pool thread while it waits for another. Once the jobs
//! hold every thread (`max_blocking_threads`), the file operations they wait for sit in the
//! pool's queue forever: a deadlock, and every later `spawn_blocking`, `tokio::fs` call or
//! DNS lookup of the service queues behind it too. The async workers stay free, so the
//! service still answers requests that need no blocking thread.
//!
//! While the fault is on, a coordinator task spawns exactly `max_blocking_threads` blocking
//! jobs and awaits them. Each job first meets the others (a bounded rendezvous, so that all
//! of them hold a pool thread before any asks for one: under real load the pool fills by
//! itself, here it makes the deadlock certain), then `block_on`s a `tokio::fs::read` of a
//! small temporary file. To make the fault recoverable, each job's `block_on` also selects
//! on a cancel signal fired when the fault is switched off, and gives up by itself after
//! [`GIVE_UP`]. Then the jobs return, the queued reads run and the queue drains, the
//! coordinator ends and the pool's threads go idle.
//!
//! What taskscope shows: blocking threads = `max_blocking_threads`, none idle; blocking
//! queue depth > 0 (one queued read per job) and not draining, for as long as the fault is
//! on; one live, idle task at the coordinator site (marker `S8 coordinator` in this file),
//! its age growing. The jobs themselves (marker `S8 job`) are not live tasks to taskscope:
//! tokio fires no spawn or poll hook for `spawn_blocking`, only a terminate hook when they
//! end. After switching off: 0 live at the coordinator site, the queue at 0, idle blocking
//! threads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

use super::{Active, Fault, FaultContext};

/// A job that is neither read from nor cancelled gives up after this long.
pub const GIVE_UP: Duration = Duration::from_secs(60);

/// The longest a job waits at the rendezvous for the others before going on alone.
const RENDEZVOUS: Duration = Duration::from_secs(10);

/// The `S8` fault.
pub struct BlockingExhaustion;

/// State shared by the coordinator, its jobs and the status reporter.
struct Shared {
    /// Jobs that reached the rendezvous.
    arrived: Mutex<usize>,
    all_arrived: Condvar,
    /// Jobs spawned.
    jobs: usize,
    /// Jobs waiting in `block_on` right now.
    waiting: AtomicUsize,
    /// How jobs ended.
    read: AtomicU64,
    cancelled: AtomicU64,
    gave_up: AtomicU64,
    failed: AtomicU64,
}

/// How a job's `block_on` ended.
enum JobEnd {
    Read(std::io::Result<Vec<u8>>),
    Cancelled,
    GaveUp,
}

impl Fault for BlockingExhaustion {
    fn name(&self) -> &'static str {
        "S8"
    }

    fn summary(&self) -> &'static str {
        "Blocking pool exhaustion: blocking jobs block_on async file I/O that needs a blocking thread"
    }

    fn start(&self, ctx: &FaultContext) -> anyhow::Result<Active> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "taskscope-demo-s8-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // Written synchronously: a few bytes, before the pool is exhausted.
        std::fs::write(
            &path,
            b"taskscope S8: a small file read by every blocking job\n",
        )?;

        let jobs = ctx.max_blocking_threads.max(1);
        let shared = Arc::new(Shared {
            arrived: Mutex::new(0),
            all_arrived: Condvar::new(),
            jobs,
            waiting: AtomicUsize::new(0),
            read: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let handle = Handle::current();
        let coordinator_shared = Arc::clone(&shared);
        tokio::spawn(coordinate(handle, path, cancel_rx, coordinator_shared)); // fault site: S8 coordinator
        Ok(Active::new(move || {
            // Every job's block_on sees it (also a job that has not started waiting yet).
            let _ = cancel_tx.send(true);
        })
        .with_status(move || {
            serde_json::json!({
                "jobs": shared.jobs,
                "waiting": shared.waiting.load(Ordering::Relaxed),
                "read": shared.read.load(Ordering::Relaxed),
                "cancelled": shared.cancelled.load(Ordering::Relaxed),
                "gave_up": shared.gave_up.load(Ordering::Relaxed),
                "failed": shared.failed.load(Ordering::Relaxed),
            })
        }))
    }
}

/// Spawns the blocking jobs, awaits them all, then removes the file.
async fn coordinate(
    handle: Handle,
    path: PathBuf,
    cancel: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let path = Arc::new(path);
    let mut jobs = Vec::with_capacity(shared.jobs);
    for _ in 0..shared.jobs {
        let (handle, path, cancel, shared) = (
            handle.clone(),
            Arc::clone(&path),
            cancel.clone(),
            Arc::clone(&shared),
        );
        let job = move || run_job(&handle, &path, cancel, &shared);
        jobs.push(tokio::task::spawn_blocking(job)); // fault site: S8 job
    }
    for job in jobs {
        let _ = job.await;
    }
    let _ = std::fs::remove_file(&*path);
}

/// One blocking job: holds its pool thread while it waits for a read that needs another.
fn run_job(
    handle: &Handle,
    path: &std::path::Path,
    mut cancel: watch::Receiver<bool>,
    shared: &Shared,
) {
    rendezvous(shared);
    shared.waiting.fetch_add(1, Ordering::Relaxed);
    // The bug: block_on a tokio::fs call from a blocking thread. The read is queued on the
    // pool this thread belongs to.
    let end = handle.block_on(async {
        tokio::select! {
            r = tokio::fs::read(path) => JobEnd::Read(r),
            _ = cancel.wait_for(|c| *c) => JobEnd::Cancelled,
            () = tokio::time::sleep(GIVE_UP) => JobEnd::GaveUp,
        }
    });
    shared.waiting.fetch_sub(1, Ordering::Relaxed);
    let counter = match end {
        JobEnd::Read(Ok(_)) => &shared.read,
        JobEnd::Read(Err(_)) => &shared.failed,
        JobEnd::Cancelled => &shared.cancelled,
        JobEnd::GaveUp => &shared.gave_up,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Waits (at most [`RENDEZVOUS`]) until every job holds a pool thread.
fn rendezvous(shared: &Shared) {
    let mut arrived = shared.arrived.lock().unwrap_or_else(|e| e.into_inner());
    *arrived += 1;
    if *arrived >= shared.jobs {
        shared.all_arrived.notify_all();
        return;
    }
    let _ = shared
        .all_arrived
        .wait_timeout_while(arrived, RENDEZVOUS, |n| *n < shared.jobs)
        .unwrap_or_else(|e| e.into_inner());
}
