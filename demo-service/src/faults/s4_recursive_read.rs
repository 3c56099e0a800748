//! Fault `S4`: a recursive read on a fair `RwLock`, with a writer queued in between.
//!
//! Two tasks share one `tokio::sync::RwLock` over a routing table ([`RecursiveRead::start`]
//! creates it). The reader task (site `S4 reader`) takes a read guard for the length of its
//! job and, while still holding it, calls a helper that takes a second read guard on the same
//! lock, every [`READER_PAUSE`] (its first nested read comes [`READER_PAUSE`] after the outer
//! one). The writer task (site `S4 writer`) starts once the reader holds its outer guard,
//! waits [`WRITER_DELAY`], then asks for `write()`.
//!
//! The real-world bug: code that takes a read lock and calls a helper which read-locks the
//! same lock again. It passes every test without writers, because read locks are shared. But
//! tokio's `RwLock` is fair (so is `parking_lot`'s, and Go's `sync.RWMutex` behaves the
//! same): once a writer is queued, new readers queue behind it. The writer waits for the
//! outer read guard, the nested read waits for the writer, and the outer guard is only
//! released after the nested read: both tasks hang forever, with no error and no CPU.
//!
//! Switching the fault off aborts both tasks, which drops the outer guard.
//!
//! What taskscope shows: exactly one live task at each of the two spawn sites, both idle,
//! their poll counts no longer growing and their idle time growing. (With taskscope's
//! instrumented locks: the reader holding a read guard and waiting for another read on the
//! same lock, the writer waiting for write, both acquire sites, and the cycle as a deadlock.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use taskscope::sync::RwLock;
use tokio::sync::oneshot;

use super::{Active, Fault, FaultContext};

/// Time between the reader's nested reads (the first comes this long after its outer read).
pub const READER_PAUSE: Duration = Duration::from_millis(50);

/// How long after the reader holds its outer guard the writer asks for `write()`.
pub const WRITER_DELAY: Duration = Duration::from_millis(10);

/// What the lock protects.
#[derive(Debug, Default)]
struct RoutingTable {
    version: u64,
}

/// Progress of the two tasks, for `GET /faults`.
#[derive(Debug, Default)]
struct Progress {
    /// Nested reads that got their guard (before the writer queued).
    nested_reads: AtomicU64,
    /// Writes that got their guard (stays 0 while the fault is on).
    writes: AtomicU64,
}

/// The `S4` fault.
pub struct RecursiveRead;

impl Fault for RecursiveRead {
    fn name(&self) -> &'static str {
        "S4"
    }

    fn summary(&self) -> &'static str {
        "Recursive read on a fair RwLock with a writer queued between: both hang"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        // The lock both tasks use.
        let table = Arc::new(RwLock::named(RoutingTable::default(), "routing table"));
        let progress = Arc::new(Progress::default());
        let (holding_tx, holding_rx) = oneshot::channel::<()>();

        let reader = {
            let (table, progress) = (table.clone(), progress.clone());
            tokio::spawn(reader_job(table, progress, holding_tx)) // fault site: S4 reader
        };
        let writer = {
            let (table, progress) = (table.clone(), progress.clone());
            tokio::spawn(writer_job(table, progress, holding_rx)) // fault site: S4 writer
        };

        let aborts = [reader.abort_handle(), writer.abort_handle()];
        Ok(Active::new(move || {
            for task in aborts {
                task.abort();
            }
        })
        .with_status(move || {
            serde_json::json!({
                "nested_reads": progress.nested_reads.load(Ordering::Relaxed),
                "writes": progress.writes.load(Ordering::Relaxed),
            })
        }))
    }
}

/// The reader: holds a read guard for its whole job and re-reads the lock in a helper.
async fn reader_job(
    table: Arc<RwLock<RoutingTable>>,
    progress: Arc<Progress>,
    holding: oneshot::Sender<()>,
) {
    let outer = table.read().await; // lock acquire: S4 outer read
    let _ = holding.send(());
    loop {
        tokio::time::sleep(READER_PAUSE).await;
        // The bug: a second read while `outer` is held. Once the writer is queued, it waits
        // behind the writer, which waits for `outer`.
        let version = lookup_version(&table).await;
        debug_assert_eq!(version, outer.version);
        progress.nested_reads.fetch_add(1, Ordering::Relaxed);
    }
}

/// A helper that read-locks the table on its own, unaware that its caller holds it.
async fn lookup_version(table: &RwLock<RoutingTable>) -> u64 {
    let inner = table.read().await; // lock acquire: S4 nested read
    inner.version
}

/// The writer: arrives while the reader holds its outer guard and asks for `write()`.
async fn writer_job(
    table: Arc<RwLock<RoutingTable>>,
    progress: Arc<Progress>,
    holding: oneshot::Receiver<()>,
) {
    if holding.await.is_err() {
        return;
    }
    tokio::time::sleep(WRITER_DELAY).await;
    let mut guard = table.write().await; // lock acquire: S4 write
    guard.version += 1;
    progress.writes.fetch_add(1, Ordering::Relaxed);
}
