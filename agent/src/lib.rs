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
//! with plain stores; one poll in 8 (on average) is also timed precisely for busy time, and
//! every poll's end reads the coarse clock once more to count long polls. Per-site counters
//! live per thread and are summed when read, so workers do
//! not bounce cache lines. Sorting, labels and runtime metrics happen when someone reads a
//! snapshot. See `agent/benches/spawn_storm.rs` and the README for the measured cost.

#[cfg(not(tokio_unstable))]
compile_error!(
    "taskscope reads tokio's unstable task hooks: build with RUSTFLAGS=\"--cfg tokio_unstable\" \
     or put `[build] rustflags = [\"--cfg\", \"tokio_unstable\"]` in .cargo/config.toml \
     (see taskscope's README, \"Using the agent in your service\")"
);

pub mod model;
pub mod site;

mod clock;
pub mod dump;
#[cfg(all(feature = "taskdump", target_os = "linux"))]
mod frames;
mod lanes;
pub mod leakcheck;
pub mod leaks;
mod locks;
mod panics;
mod snapshot;
mod spawn;
pub mod starvation;
pub mod sync;
mod tasks;
#[cfg(feature = "tokio-resources")]
pub mod tokio_sync;
#[cfg(feature = "lost-waker")]
pub mod waker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::runtime::{Builder, Handle, TaskMeta};

use clock::Clock;
use lanes::{Lanes, PollEnd};
use site::SiteTable;
use tasks::{TaskTable, id_to_u64};

pub use dump::{DumpError, DumpOptions};
pub use leaks::{HistoryError, LeakSettings};
pub use snapshot::SnapshotOptions;
pub use spawn::spawn;

/// Default cap on distinct spawn sites (see [`AgentBuilder::site_capacity`]).
pub const DEFAULT_SITE_CAPACITY: usize = 1024;

/// Largest accepted [`AgentBuilder::site_capacity`].
pub const MAX_SITE_CAPACITY: usize = 1 << 16;

/// Default size of the live-task ring (see [`AgentBuilder::task_slots`]).
pub const DEFAULT_TASK_SLOTS: usize = 1 << 18;

/// Largest accepted [`AgentBuilder::task_slots`] (512 MiB of ring).
pub const MAX_TASK_SLOTS: usize = 1 << 24;

/// Why [`Agent::install`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// The agent was installed before; each runtime needs an agent of its own.
    #[error("this taskscope agent is installed on a runtime already; build one agent per runtime")]
    AlreadyInstalled,
}

/// Handle to the agent's state. Cheap to clone; every clone reads the same state.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
    /// The instrumented runtime, for its metrics. Held here and not in `Inner`: the
    /// runtime owns its hooks, the hooks own `Inner`, so a handle in `Inner` would keep the
    /// runtime's driver alive forever after the runtime is dropped. The hooks fill it on
    /// the first poll through a weak reference.
    runtime: Arc<OnceLock<Handle>>,
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
    /// The runtime's name, if one was given.
    runtime_name: Option<String>,
    /// Panics inside tasks, per site (see [`panics`]).
    panics: panics::PanicCounts,
    /// Whether the process's panic hook charges panics to this agent's sites.
    panic_counting: AtomicBool,
    /// Set by the first [`Agent::install`]: one agent watches one runtime.
    installed: AtomicBool,
    /// Where the first poll stores the runtime's handle (see [`Agent::runtime`]), so that
    /// installing the agent needs no second call.
    runtime: Weak<OnceLock<Handle>>,
    /// Set once the handle is stored (or cannot be), so the poll hook checks one flag.
    runtime_seen: AtomicBool,
    /// Held while a task dump runs: one at a time.
    dump_lock: Arc<tokio::sync::Mutex<()>>,
    /// Leak indicators' settings, history and baseline.
    leaks: leaks::LeakState,
    /// Lost-waker facts, once a waker-tracking layer was made for this agent.
    wakers: OnceLock<Arc<dyn leaks::WakerSource>>,
    /// Blocked workers, busy ratios, blocking pool, scheduling delay.
    starvation: starvation::RuntimeState,
    /// tokio's own locks, once a resource layer was made for this agent.
    #[cfg(feature = "tokio-resources")]
    tokio_resources: OnceLock<Arc<tokio_sync::Table>>,
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
    leaks: LeakSettings,
    blocked_threshold: Duration,
    max_blocking_threads: Option<usize>,
    count_panics: bool,
    runtime_name: Option<String>,
}

impl Default for AgentBuilder {
    fn default() -> Self {
        AgentBuilder {
            site_capacity: DEFAULT_SITE_CAPACITY,
            task_slots: DEFAULT_TASK_SLOTS,
            leaks: LeakSettings::default(),
            blocked_threshold: starvation::DEFAULT_BLOCKED_THRESHOLD,
            max_blocking_threads: None,
            count_panics: true,
            runtime_name: None,
        }
    }
}

impl AgentBuilder {
    /// Most distinct spawn sites tracked (default [`DEFAULT_SITE_CAPACITY`]). Tasks from
    /// later sites are counted in one overflow row, so memory and Prometheus label sets stay
    /// bounded even if spawn sites are generated (macros, generics).
    pub fn site_capacity(mut self, capacity: usize) -> Self {
        self.site_capacity = capacity.clamp(1, MAX_SITE_CAPACITY);
        self
    }

    /// Size of the ring that holds live tasks without locking (default
    /// [`DEFAULT_TASK_SLOTS`], 32 bytes each, rounded up to a power of two). Tasks beyond it,
    /// or whose slot an older live task still holds, go to a locked overflow map: still
    /// counted exactly, only slower to spawn and poll.
    pub fn task_slots(mut self, slots: usize) -> Self {
        self.task_slots = slots.clamp(64, MAX_TASK_SLOTS);
        self
    }

    /// One idle threshold for every site: a live task not polled for longer is "idle too
    /// long". By default each site gets its own, derived from how long its tasks normally
    /// wait (see [`AgentBuilder::idle_floor`]).
    pub fn idle_threshold(mut self, threshold: Duration) -> Self {
        self.leaks.idle_threshold = Some(threshold.max(Duration::from_millis(1)));
        self
    }

    /// The least derived idle threshold (default 120 s, [`leaks::DEFAULT_IDLE_FLOOR`]). A site's threshold is this, or
    /// [`leaks::IDLE_FACTOR`] times the longest wait any of its tasks had before being
    /// polled again, whichever is longer; so a listener that normally waits minutes for a
    /// connection is not flagged after seconds.
    pub fn idle_floor(mut self, floor: Duration) -> Self {
        self.leaks.idle_floor = floor.max(Duration::from_millis(1));
        self
    }

    /// The window over which a site's live count must keep rising to be flagged as growth
    /// (default 60 s, at least 1 s). The agent samples every site 60 times per window.
    pub fn growth_window(mut self, window: Duration) -> Self {
        self.leaks.growth_window = window.clamp(Duration::from_secs(1), Duration::from_secs(3600));
        self
    }

    /// The least rise of a site's low-water mark over the window that counts as growth
    /// (default 5 tasks).
    pub fn growth_min_tasks(mut self, tasks: u64) -> Self {
        self.leaks.growth_min_tasks = tasks.max(1);
        self
    }

    /// How far back the per-site history goes, for `diff --since` (default 300 s; at least
    /// the growth window; at most 4096 samples).
    pub fn history(mut self, span: Duration) -> Self {
        self.leaks.history = span.min(Duration::from_secs(24 * 3600));
        self
    }

    /// How long one poll may run before its worker counts as blocked (default 100 ms,
    /// [`starvation::DEFAULT_BLOCKED_THRESHOLD`]; at least 1 ms). A blocked worker is a
    /// finding, and task dumps are not started while one is (see [`Agent::dump`]).
    pub fn blocked_threshold(mut self, threshold: Duration) -> Self {
        self.blocked_threshold = threshold.max(Duration::from_millis(1));
        self
    }

    /// Tells the agent the runtime's `max_blocking_threads` (tokio does not report it), so
    /// snapshots and `/metrics` show the blocking pool against its limit.
    ///
    /// ```
    /// let mut builder = tokio::runtime::Builder::new_multi_thread();
    /// builder.max_blocking_threads(16);
    /// let agent = taskscope::Agent::builder().max_blocking_threads(16).install(&mut builder);
    /// # let _ = agent;
    /// ```
    pub fn max_blocking_threads(mut self, n: usize) -> Self {
        self.max_blocking_threads = Some(n.max(1));
        self
    }

    /// Whether to count panics inside tasks per spawn site (default on;
    /// [`model::SiteRow::panicked`], metric `taskscope_task_panics_total`).
    ///
    /// tokio catches a task's panic and hands it to the `JoinHandle`, telling its hooks
    /// nothing, so the agent wraps the process's panic hook: on [`Agent::install`] it takes
    /// the hook set so far and sets one that charges the panic to the task being polled on
    /// the panicking thread and then calls the previous hook (messages print as before).
    /// Set your own panic hook *before* installing the agent; one set after replaces the
    /// agent's, and panics are then no longer counted.
    pub fn count_panics(mut self, on: bool) -> Self {
        self.count_panics = on;
        self
    }

    /// Names the runtime this agent watches, for a process with several runtimes: the
    /// snapshot says it ([`model::AgentInfo::runtime_name`]), every metric series carries
    /// it as the `runtime` label, and one exporter can serve several named agents
    /// (`Exporter::runtime`). Up to 64 characters of `A-Z a-z 0-9 _ - .`; others are
    /// replaced by `_`.
    ///
    /// ```
    /// let mut io = tokio::runtime::Builder::new_multi_thread();
    /// let agent = taskscope::Agent::builder().runtime_name("io").install(&mut io);
    /// assert_eq!(agent.runtime_name(), Some("io"));
    /// ```
    pub fn runtime_name(mut self, name: &str) -> Self {
        let clean: String = name
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.runtime_name = (!clean.is_empty()).then_some(clean);
        self
    }

    /// Builds the agent without installing it; call [`Agent::install`] next.
    pub fn build(self) -> Agent {
        let sites = SiteTable::new(self.site_capacity);
        let site_slots = sites.slots();
        let runtime = Arc::new(OnceLock::new());
        let agent = Agent {
            runtime: Arc::clone(&runtime),
            inner: Arc::new(Inner {
                clock: Clock::new(),
                started_unix_ms: unix_ms(),
                lanes: Lanes::new(site_slots),
                sites,
                tasks: TaskTable::new(self.task_slots),
                untracked_terminations: AtomicU64::new(0),
                panics: panics::PanicCounts::new(site_slots),
                runtime_name: self.runtime_name,
                panic_counting: AtomicBool::new(self.count_panics),
                installed: AtomicBool::new(false),
                runtime: Arc::downgrade(&runtime),
                runtime_seen: AtomicBool::new(false),
                dump_lock: Arc::new(tokio::sync::Mutex::new(())),
                wakers: OnceLock::new(),
                leaks: leaks::LeakState::new(self.leaks),
                starvation: starvation::RuntimeState::new(
                    self.blocked_threshold,
                    self.max_blocking_threads,
                ),
                #[cfg(feature = "tokio-resources")]
                tokio_resources: OnceLock::new(),
            }),
        };
        leaks::start_sampler(&agent.inner);
        agent
    }

    /// Builds the agent and installs it on `builder`.
    pub fn install(self, builder: &mut Builder) -> Agent {
        let agent = self.build();
        agent.inner.installed.store(true, Ordering::Relaxed);
        agent.set_hooks(builder);
        agent
    }
}

impl Agent {
    /// Settings for a new agent.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// Sets the spawn, terminate, before-poll and after-poll hooks of `builder`, replacing
    /// any set before (a second agent installed on the same builder replaces the first,
    /// which then sees nothing: never both counting).
    ///
    /// One agent watches one runtime: installing it a second time, on this builder or
    /// another, is an error ([`InstallError::AlreadyInstalled`]) rather than two runtimes'
    /// tasks mixed in one set of counts. Build one agent per runtime.
    ///
    /// ```
    /// let agent = taskscope::Agent::builder().build();
    /// let mut first = tokio::runtime::Builder::new_multi_thread();
    /// agent.install(&mut first).unwrap();
    /// let mut second = tokio::runtime::Builder::new_current_thread();
    /// assert!(agent.install(&mut second).is_err());
    /// ```
    pub fn install(&self, builder: &mut Builder) -> Result<(), InstallError> {
        if self.inner.installed.swap(true, Ordering::Relaxed) {
            return Err(InstallError::AlreadyInstalled);
        }
        self.set_hooks(builder);
        Ok(())
    }

    fn set_hooks(&self, builder: &mut Builder) {
        if self.inner.panic_counting.load(Ordering::Relaxed) && !panics::register(&self.inner) {
            self.inner.panic_counting.store(false, Ordering::Relaxed);
        }
        let inner = Arc::clone(&self.inner);
        builder.on_task_spawn(move |meta| inner.on_spawn(meta));
        let inner = Arc::clone(&self.inner);
        builder.on_task_terminate(move |meta| inner.on_terminate(meta));
        let inner = Arc::clone(&self.inner);
        builder.on_before_task_poll(move |meta| inner.on_before_poll(meta));
        let inner = Arc::clone(&self.inner);
        builder.on_after_task_poll(move |meta| inner.on_after_poll(meta));
    }

    /// The name given with [`AgentBuilder::runtime_name`], if any.
    pub fn runtime_name(&self) -> Option<&str> {
        self.inner.runtime_name.as_deref()
    }

    /// Reads the per-site counters and runtime facts (no per-task list).
    pub fn snapshot(&self) -> model::Snapshot {
        self.snapshot_with(&SnapshotOptions::default())
    }

    /// Takes a task dump: every live task grouped by spawn site and, when the build has
    /// tokio's task dumps (feature `taskdump`), the frames where it waits.
    ///
    /// Call it from a runtime other than the instrumented one (the exporter's): it awaits
    /// tokio's dump, which pauses the instrumented runtime's workers. One dump at a time
    /// ([`DumpError::Busy`] otherwise). When a worker is stuck in a long poll, or tokio's
    /// dump does not finish within the timeout, the answer comes from the registry alone
    /// and says why.
    pub async fn dump(&self, options: &DumpOptions) -> Result<model::Dump, DumpError> {
        dump::take(&self.inner, self.runtime.get().cloned(), options).await
    }

    /// Marks a baseline now: later snapshots carry what changed per site since
    /// ([`model::Snapshot::baseline`]). Replaces an earlier baseline. Returns its wall-clock
    /// time, milliseconds since the Unix epoch.
    pub fn mark_baseline(&self) -> u64 {
        leaks::mark_baseline(&self.inner)
    }

    /// What changed per site over the last `since`, from the agent's sampled history
    /// (see [`AgentBuilder::history`]).
    pub fn diff_since(&self, since: Duration) -> Result<model::BaselineDiff, HistoryError> {
        let secs = self.inner.clock.calibrate();
        leaks::diff_since(&self.inner, since, &secs)
    }

    /// The leak indicators' settings.
    pub fn leak_settings(&self) -> &LeakSettings {
        &self.inner.leaks.settings
    }

    /// Reads a snapshot, with the per-task list if `options` asks for it.
    pub fn snapshot_with(&self, options: &SnapshotOptions) -> model::Snapshot {
        snapshot::take(&self.inner, &self.runtime, options)
    }
}

thread_local! {
    /// The last task this thread saw terminate without having been spawned. During runtime
    /// shutdown tokio shuts a task spawned into the closed runtime down at once, running its
    /// terminate hook before its spawn hook, on the spawning thread: the spawn hook checks
    /// here so that such a task is counted as spawned and completed, not live forever.
    static ORPHAN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Inner {
    #[inline]
    fn on_spawn(&self, meta: &TaskMeta<'_>) {
        let id = id_to_u64(meta.id());
        let site = self.sites.lookup(meta.spawned_at());
        let orphan = ORPHAN
            .try_with(|o| o.get() == id && o.replace(0) == id)
            .unwrap_or(false);
        self.lanes.with_existing(|lane| {
            let counters = lane.site(site);
            lane.add(&counters.spawned, 1);
            if orphan {
                lane.add_ordered(&counters.completed, 1, Ordering::Release);
                self.untracked_terminations.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            // Most spawns happen inside a poll, whose start (coarse, like every age) saves
            // a clock read.
            let now = lane.poll_started().unwrap_or_else(|| self.clock.now());
            self.tasks.insert(id, site, now);
        });
    }

    #[inline]
    fn on_terminate(&self, meta: &TaskMeta<'_>) {
        let id = id_to_u64(meta.id());
        let Some(task) = self.tasks.remove(id) else {
            // spawn_blocking tasks and the runtime's worker threads end without having been
            // spawned through the hook; keep them out of every site. So does a task spawned
            // into a runtime that is shutting down, until its spawn hook runs (see ORPHAN).
            self.untracked_terminations.fetch_add(1, Ordering::Relaxed);
            let _ = ORPHAN.try_with(|o| o.set(id));
            return;
        };
        self.lanes.with_existing(|lane| {
            let counters = lane.site(task.site);
            // tokio runs the terminate hook inside the task's last poll, before the
            // after-poll hook; account for that poll's busy time here.
            if let Some(end) = lane.end_poll(id, &self.clock) {
                lane.add(&counters.busy, end.busy);
                counters.count_poll_duration(lane, end.coarse);
            }
            // Release: a reader that sees this completion sees the spawn too.
            lane.add_ordered(&counters.completed, 1, Ordering::Release);
        });
    }

    #[inline]
    fn on_before_poll(&self, meta: &TaskMeta<'_>) {
        if !self.runtime_seen.load(Ordering::Relaxed) {
            self.capture_runtime();
        }
        let id = id_to_u64(meta.id());
        let now = self.clock.now();
        // The worker owns the task until this poll ends: the one safe moment to update its
        // slot (after the poll, a task that woke itself may already run elsewhere).
        let started = self.tasks.poll_started(id, now);
        self.lanes.with(|lane| {
            if let Some((site, waited, first)) = started {
                let counters = lane.site(site);
                lane.add(&counters.polls, 1);
                lane.raise(&counters.longest_wait, waited);
                if first {
                    // A new task is runnable from its spawn: its wait for the first poll is
                    // scheduling delay.
                    lane.raise(&counters.first_poll_delay, waited);
                }
            }
            lane.start_poll(id, started.map(|(site, ..)| site), now, &self.clock);
        });
    }

    #[cold]
    fn capture_runtime(&self) {
        if let (Some(slot), Ok(handle)) = (self.runtime.upgrade(), Handle::try_current()) {
            let _ = slot.set(handle);
        }
        self.runtime_seen.store(true, Ordering::Relaxed);
    }

    #[inline]
    fn on_after_poll(&self, meta: &TaskMeta<'_>) {
        let id = id_to_u64(meta.id());
        self.lanes.with(|lane| {
            // `None` when the task finished in this poll (the terminate hook ended the poll)
            // or on the shared fallback lane, which keeps no poll state.
            if let Some(PollEnd {
                site: Some(site),
                busy,
                coarse,
            }) = lane.end_poll(id, &self.clock)
            {
                let counters = lane.site(site);
                lane.add(&counters.busy, busy);
                counters.count_poll_duration(lane, coarse);
            }
        });
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_runtime_and_the_agent_frees_both() {
        let mut builder = Builder::new_multi_thread();
        builder.worker_threads(1).enable_all();
        let agent = install(&mut builder);
        let rt = builder.build().unwrap();
        rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
        assert!(
            agent.snapshot().runtime.is_some(),
            "handle captured on first poll"
        );
        let inner = Arc::downgrade(&agent.inner);
        let lanes = Arc::downgrade(&agent.inner.lanes);
        drop((rt, builder)); // the builder keeps copies of the hooks too
        // The agent still reads its counts after the runtime is gone.
        assert_eq!(agent.snapshot().sites[0].spawned, 1);
        drop(agent);
        // tokio's worker threads drop their last runtime handle just after shutdown returns.
        for _ in 0..500 {
            if inner.upgrade().is_none() {
                // Threads that polled for it hold its lanes weakly only.
                assert!(lanes.upgrade().is_none(), "lanes outlived the agent");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the agent outlived its runtime: runtime -> hooks -> agent -> runtime cycle");
    }
}
