//! Fault `S10`: a re-entrant lock; a task waits for a `Mutex` it already holds.
//!
//! One `tokio::sync::Mutex` over an account ledger ([`ReentrantLock::start`] creates it). The
//! holder task (site `S10 holder`) locks it, then calls an async helper that locks the same
//! mutex as its first step: the helper waits forever for a guard its caller holds. Once the
//! holder has the lock, [`WAITERS`] later users (site `S10 waiter`) arrive after
//! [`WAITER_DELAY`], each wanting the lock, and queue behind it forever.
//!
//! The real-world bug: a function that locks, then calls a helper written to be callable on
//! its own, which locks too. `std`'s and tokio's mutexes are not re-entrant; with a
//! synchronous mutex this panics or deadlocks the thread, which someone notices. With
//! tokio's, the task just parks: no error, no CPU, and every later user of the lock parks
//! behind it, so the outage spreads from one request to everything sharing the lock.
//!
//! Switching the fault off aborts every task it spawned (the holder's abort drops its guard).
//!
//! What taskscope shows: one live task at the holder site and [`WAITERS`] at the waiter site,
//! all idle, none completing, poll counts no longer growing. (With taskscope's instrumented
//! locks: the deadlock "task waits for a lock it holds", naming the lock, the holding acquire
//! site and the second acquire site, with the waiters behind it counted.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use taskscope::sync::Mutex;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{Active, Fault, FaultContext};

/// Later users of the lock.
pub const WAITERS: usize = 5;

/// How long after the holder has locked the later users ask for the lock.
pub const WAITER_DELAY: Duration = Duration::from_millis(20);

/// What the lock protects.
#[derive(Debug, Default)]
struct Ledger {
    balance: i64,
}

/// Counters for `GET /faults`.
#[derive(Debug, Default)]
struct Progress {
    /// Transfers the holder completed (stays 0 while the fault is on).
    transfers: AtomicU64,
    /// Lock uses by later users that completed (stays 0 while the fault is on).
    waiter_uses: AtomicU64,
}

/// The `S10` fault.
pub struct ReentrantLock;

impl Fault for ReentrantLock {
    fn name(&self) -> &'static str {
        "S10"
    }

    fn summary(&self) -> &'static str {
        "Re-entrant lock: a task waits for a Mutex it already holds"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        // The lock everyone uses.
        let ledger = Arc::new(Mutex::named(Ledger::default(), "ledger"));
        let progress = Arc::new(Progress::default());
        let (locked_tx, locked_rx) = watch::channel(false);
        let mut tasks: Vec<AbortHandle> = Vec::with_capacity(1 + WAITERS);

        let holder = {
            let (ledger, progress) = (ledger.clone(), progress.clone());
            tokio::spawn(transfer(ledger, progress, locked_tx)) // fault site: S10 holder
        };
        tasks.push(holder.abort_handle());
        for _ in 0..WAITERS {
            let (ledger, progress) = (ledger.clone(), progress.clone());
            let locked = locked_rx.clone();
            let waiter = tokio::spawn(later_user(ledger, progress, locked)); // fault site: S10 waiter
            tasks.push(waiter.abort_handle());
        }

        Ok(Active::new(move || {
            for task in tasks {
                task.abort();
            }
        })
        .with_status(move || {
            serde_json::json!({
                "transfers": progress.transfers.load(Ordering::Relaxed),
                "waiter_uses": progress.waiter_uses.load(Ordering::Relaxed),
            })
        }))
    }
}

/// The holder: locks the ledger, then calls a helper that locks it again.
async fn transfer(
    ledger: Arc<Mutex<Ledger>>,
    progress: Arc<Progress>,
    locked: watch::Sender<bool>,
) {
    let mut guard = ledger.lock().await; // lock acquire: S10 first lock
    let _ = locked.send(true);
    // The bug: `current_balance` locks `ledger`, which this task holds.
    let balance = current_balance(&ledger).await;
    guard.balance = balance - 10;
    progress.transfers.fetch_add(1, Ordering::Relaxed);
}

/// A helper that locks the ledger on its own, unaware that its caller holds it.
async fn current_balance(ledger: &Mutex<Ledger>) -> i64 {
    let guard = ledger.lock().await; // lock acquire: S10 re-entrant lock
    guard.balance
}

/// A later user: arrives once the holder has the lock and queues behind it.
async fn later_user(
    ledger: Arc<Mutex<Ledger>>,
    progress: Arc<Progress>,
    mut locked: watch::Receiver<bool>,
) {
    if locked.wait_for(|locked| *locked).await.is_err() {
        return;
    }
    tokio::time::sleep(WAITER_DELAY).await;
    let mut guard = ledger.lock().await; // lock acquire: S10 later user
    guard.balance += 1;
    progress.waiter_uses.fetch_add(1, Ordering::Relaxed);
}
