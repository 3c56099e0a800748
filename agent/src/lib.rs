//! taskscope agent: always-on task observability for a tokio runtime.
//!
//! Install it on the runtime builder with one call; from then on every task spawned on that
//! runtime is counted by its spawn site (`file:line:col` of the `tokio::spawn` call), and
//! every live task has a small slot with its age, state and time of last poll.
//! [`Agent::snapshot`] reads it all as plain data ([`model::Snapshot`]).
//!
//! Requires `--cfg tokio_unstable` (tokio's task hooks and `TaskMeta::spawned_at` are
//! unstable APIs) and tokio >= 1.46.1.
//!
//! ```
//! let mut builder = tokio::runtime::Builder::new_multi_thread();
//! builder.worker_threads(2).enable_all();
//! let agent = taskscope::install(&mut builder);
//! let rt = builder.build().unwrap();
//!
//! rt.block_on(async {
//!     let tasks: Vec<_> = (0..3).map(|_| tokio::spawn(async { 1 })).collect();
//!     for t in tasks {
//!         t.await.unwrap();
//!     }
//! });
//!
//! drop(rt); // shutdown waits for the terminate hooks, which run just after a JoinHandle wakes
//! let snap = agent.snapshot();
//! let row = &snap.sites[0]; // the site of the tokio::spawn above, as "path:line:col"
//! assert_eq!((row.spawned, row.completed, row.live), (3, 3, 0));
//! assert!(row.polls >= 3);
//! ```
//!
//! # Costs
//!
//! The hooks are O(1), allocation-free after warm-up and lock-free on the common path: a
//! spawn finds its site in a lock-free index and claims a slot in a direct-mapped ring; a
//! poll reads a coarse clock once and updates its task's slot and its own thread's counters
//! with plain stores; one poll in 8 (on average) is also timed precisely for busy time. Per-site counters live per thread and are summed when read, so workers do
//! not bounce cache lines. Sorting, labels and runtime metrics happen when someone reads a
//! snapshot. See `agent/benches/spawn_storm.rs` and the README for the measured cost.

pub mod model;
pub mod site;

mod clock;
mod lanes;
mod snapshot;
mod tasks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::runtime::{Builder, Handle, TaskMeta};

use clock::Clock;
use lanes::Lanes;
use site::SiteTable;
use tasks::{TaskTable, id_to_u64};

pub use snapshot::SnapshotOptions;

/// Default cap on distinct spawn sites (see [`AgentBuilder::site_capacity`]).
pub const DEFAULT_SITE_CAPACITY: usize = 1024;

/// Default size of the live-task ring (see [`AgentBuilder::task_slots`]).
pub const DEFAULT_TASK_SLOTS: usize = 1 << 18;

/// Handle to the agent's state. Cheap to clone; every clone reads the same state.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("sites", &self.inner.sites.len())
            .finish()
    }
}

struct Inner {
    clock: Clock,
    started_unix_ms: u64,
    sites: SiteTable,
    tasks: TaskTable,
    lanes: Arc<Lanes>,
    untracked_terminations: AtomicU64,
    /// The instrumented runtime, picked up from the first poll so that installing the agent
    /// needs no second call. Read only by snapshots.
    runtime: OnceLock<Handle>,
}

/// Installs a new agent with default settings on `builder`.
///
/// Shorthand for `Agent::builder().install(builder)`.
pub fn install(builder: &mut Builder) -> Agent {
    AgentBuilder::default().install(builder)
}

/// Settings for a new [`Agent`].
#[derive(Debug, Clone)]
pub struct AgentBuilder {
    site_capacity: usize,
    task_slots: usize,
}

impl Default for AgentBuilder {
    fn default() -> Self {
        AgentBuilder {
            site_capacity: DEFAULT_SITE_CAPACITY,
            task_slots: DEFAULT_TASK_SLOTS,
        }
    }
}

impl AgentBuilder {
    /// Most distinct spawn sites tracked (default [`DEFAULT_SITE_CAPACITY`]). Tasks from
    /// later sites are counted in one overflow row, so memory and Prometheus label sets stay
    /// bounded even if spawn sites are generated (macros, generics).
    pub fn site_capacity(mut self, capacity: usize) -> Self {
        self.site_capacity = capacity.max(1);
        self
    }

    /// Size of the ring that holds live tasks without locking (default
    /// [`DEFAULT_TASK_SLOTS`], 32 bytes each, rounded up to a power of two). Tasks beyond it,
    /// or whose slot an older live task still holds, go to a locked overflow map: still
    /// counted exactly, only slower to spawn and poll.
    pub fn task_slots(mut self, slots: usize) -> Self {
        self.task_slots = slots;
        self
    }

    /// Builds the agent without installing it; call [`Agent::install`] next.
    pub fn build(self) -> Agent {
        let sites = SiteTable::new(self.site_capacity);
        Agent {
            inner: Arc::new(Inner {
                clock: Clock::new(),
                started_unix_ms: unix_ms(),
                lanes: Lanes::new(sites.capacity() + 1),
                sites,
                tasks: TaskTable::new(self.task_slots),
                untracked_terminations: AtomicU64::new(0),
                runtime: OnceLock::new(),
            }),
        }
    }

    /// Builds the agent and installs it on `builder`.
    pub fn install(self, builder: &mut Builder) -> Agent {
        let agent = self.build();
        agent.install(builder);
        agent
    }
}

impl Agent {
    /// Settings for a new agent.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// Sets the spawn, terminate, before-poll and after-poll hooks of `builder`, replacing
    /// any set before. Install one agent per runtime.
    pub fn install(&self, builder: &mut Builder) {
        let inner = Arc::clone(&self.inner);
        builder.on_task_spawn(move |meta| inner.on_spawn(meta));
        let inner = Arc::clone(&self.inner);
        builder.on_task_terminate(move |meta| inner.on_terminate(meta));
        let inner = Arc::clone(&self.inner);
        builder.on_before_task_poll(move |meta| inner.on_before_poll(meta));
        let inner = Arc::clone(&self.inner);
        builder.on_after_task_poll(move |meta| inner.on_after_poll(meta));
    }

    /// Reads the per-site counters and runtime facts (no per-task list).
    pub fn snapshot(&self) -> model::Snapshot {
        self.snapshot_with(&SnapshotOptions::default())
    }

    /// Reads a snapshot, with the per-task list if `options` asks for it.
    pub fn snapshot_with(&self, options: &SnapshotOptions) -> model::Snapshot {
        snapshot::take(&self.inner, options)
    }
}

impl Inner {
    #[inline]
    fn on_spawn(&self, meta: &TaskMeta<'_>) {
        let site = self.sites.lookup(meta.spawned_at());
        let now = self.clock.now();
        self.lanes
            .with(|lane| lane.add(&lane.site(site).spawned, 1));
        self.tasks.insert(id_to_u64(meta.id()), site, now);
    }

    #[inline]
    fn on_terminate(&self, meta: &TaskMeta<'_>) {
        let id = id_to_u64(meta.id());
        let Some(task) = self.tasks.remove(id) else {
            // spawn_blocking tasks and the runtime's worker threads end without having been
            // spawned through the hook; keep them out of every site.
            self.untracked_terminations.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.lanes.with(|lane| {
            let counters = lane.site(task.site);
            // tokio runs the terminate hook inside the task's last poll, before the
            // after-poll hook; account for that poll here, while the site is still known.
            if let Some(end) = lane.end_poll(id, &self.clock) {
                lane.add(&counters.polls, 1);
                lane.add(&counters.busy, end.busy);
            }
            lane.add(&counters.completed, 1);
        });
    }

    #[inline]
    fn on_before_poll(&self, meta: &TaskMeta<'_>) {
        if self.runtime.get().is_none() {
            self.capture_runtime();
        }
        let now = self.clock.now();
        self.lanes
            .with(|lane| lane.start_poll(id_to_u64(meta.id()), now, &self.clock));
    }

    #[cold]
    fn capture_runtime(&self) {
        if let Ok(handle) = Handle::try_current() {
            let _ = self.runtime.set(handle);
        }
    }

    #[inline]
    fn on_after_poll(&self, meta: &TaskMeta<'_>) {
        let id = id_to_u64(meta.id());
        self.lanes.with(|lane| {
            // `None` on the shared fallback lane (more polling threads than lanes): the poll
            // is still counted, without busy time, and stamped with the coarse clock.
            let end = lane.end_poll(id, &self.clock);
            let started = end.map_or_else(|| self.clock.now(), |e| e.started);
            // `None` when the task finished in this poll: the terminate hook counted it.
            if let Some(site) = self.tasks.poll_ended(id, started) {
                let counters = lane.site(site);
                lane.add(&counters.polls, 1);
                if let Some(end) = end {
                    lane.add(&counters.busy, end.busy);
                }
            }
        });
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
