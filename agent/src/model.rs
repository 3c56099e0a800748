//! The snapshot model: plain data that the agent produces, the exporter serializes and
//! every reader (TUI, CLI, tests) deserializes.
//!
//! Nothing in this module has runtime logic. Readers must not trust the wire: every field
//! has a serde default, so a snapshot from a newer agent with extra fields, or an older one
//! with fewer, still decodes; [`SCHEMA_VERSION`] says when the meaning changed.

use serde::{Deserialize, Serialize};

/// Version of the snapshot schema. Bumped when a field changes meaning or is removed;
/// adding a field does not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// Label used for the row that collects tasks whose spawn site did not fit in the site
/// table (see [`AgentInfo::site_capacity`]).
pub const OVERFLOW_SITE: &str = "(overflow)";

/// Everything the agent knows at one instant.
///
/// ```
/// let json = r#"{"schema_version":1,"sites":[{"site":"src/main.rs:10:5","live":3}]}"#;
/// let snap: taskscope::model::Snapshot = serde_json::from_str(json).unwrap();
/// assert_eq!(snap.sites[0].live, 3);
/// assert_eq!(snap.sites[0].spawned, 0); // missing fields take their defaults
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// [`SCHEMA_VERSION`] of the agent that produced this snapshot.
    pub schema_version: u32,
    /// Wall-clock time the snapshot was taken, milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// Seconds since the agent was created (roughly the service's uptime).
    pub uptime_seconds: f64,
    /// Process the agent runs in.
    pub process: ProcessInfo,
    /// Facts about the instrumented runtime; `None` until the runtime has polled a task.
    pub runtime: Option<RuntimeInfo>,
    /// The agent's own bookkeeping: caps and what they dropped.
    pub agent: AgentInfo,
    /// One row per spawn site, sorted by live count, descending.
    pub sites: Vec<SiteRow>,
    /// Live tasks, oldest first, when the reader asked for them (capped; see
    /// [`Snapshot::tasks_total`]).
    pub tasks: Vec<TaskRow>,
    /// How many live tasks the agent tracks; larger than `tasks.len()` when the list was cut.
    pub tasks_total: u64,
    /// What looks wrong now (leaks first), most severe first. Empty when all is well.
    pub findings: Vec<Finding>,
    /// What changed per site since the baseline was marked, if one was.
    pub baseline: Option<BaselineDiff>,
    /// Every poll in progress now, longest first.
    pub polls_in_progress: Vec<PollInProgress>,
    /// Instrumented locks (`taskscope::sync`), one row per lock identity (creation site and
    /// name), most waited-on first.
    pub locks: Vec<LockRow>,
    /// Names of every runtime the exporter that served this snapshot watches (select one
    /// with `?runtime=NAME`); empty when it watches a single unnamed runtime. The runtime
    /// this snapshot is about is [`AgentInfo::runtime_name`].
    pub runtimes: Vec<String>,
}

/// What kind of instrumented lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// `taskscope::sync::Mutex` (tokio's async mutex).
    Mutex,
    /// `taskscope::sync::RwLock` (tokio's fair async read-write lock).
    RwLock,
    /// `taskscope::sync::Semaphore`.
    Semaphore,
    /// `taskscope::sync::blocking::Mutex` (a `std` mutex: blocks the thread while it waits).
    BlockingMutex,
    /// `taskscope::sync::blocking::RwLock` (a `std` read-write lock).
    BlockingRwLock,
    /// A kind this reader does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// How a lock is held or asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// A mutex's only mode.
    Exclusive,
    /// An RwLock's read mode.
    Read,
    /// An RwLock's write mode.
    Write,
    /// Semaphore permits.
    Permits,
    /// A mode this reader does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl LockMode {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Exclusive => "exclusive",
            LockMode::Read => "read",
            LockMode::Write => "write",
            LockMode::Permits => "permits",
            LockMode::Unknown => "unknown",
        }
    }
}

/// One lock identity: every lock created at one place with one name, its counters since the
/// agent started and who holds and waits for it now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockRow {
    /// The label used in metrics and findings: `name (path:line:col)` when named, else the
    /// creation site; [`OVERFLOW_LOCK`] for locks beyond the cap.
    pub lock: String,
    /// What kind of lock.
    pub kind: LockKind,
    /// Where it was created, `path:line:col`.
    pub created_at: String,
    /// The name given at creation, if any.
    pub name: Option<String>,
    /// Locks of this identity alive now.
    pub instances: u64,
    /// Acquisitions (guards or permits handed out).
    pub acquisitions: u64,
    /// Acquisitions that had to wait.
    pub contended: u64,
    /// Waits of contended acquisitions, seconds.
    pub wait_seconds: DelayHistogram,
    /// How long guards were held, seconds (coarse clock: 1–4 ms resolution).
    pub hold_seconds: DelayHistogram,
    /// Waiting time over the last 10 s, seconds of waiting per second (0.5 = on average
    /// half a task waiting at any moment).
    pub wait_share: f64,
    /// Waiting charged to the acquire site of the guard whose release handed the lock to
    /// the waiter (Go's mutex profile charges the unlocker), most first; at most 16 sites,
    /// the rest under "(other)".
    pub delay_by_holder_site: Vec<HolderDelay>,
    /// Current holders (at most 100; see `more_holders`).
    pub holders: Vec<LockHolder>,
    /// Current waiters, longest first (at most 100; see `more_waiters`).
    pub waiters: Vec<LockWaiter>,
    /// Holders not listed.
    pub more_holders: u64,
    /// Waiters not listed.
    pub more_waiters: u64,
    /// Where the facts come from.
    pub source: LockSource,
    /// Permits available now (semaphores followed through tokio's tracing).
    pub permits_available: Option<u64>,
}

/// Where a [`LockRow`]'s facts come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockSource {
    /// A `taskscope::sync` lock: every fact.
    #[default]
    Taskscope,
    /// A `tokio::sync` lock followed through tokio's resource tracing: holders by task
    /// (no acquire site, no hold time), waiters, acquisitions, permits; no wait histograms,
    /// no findings.
    TokioTracing,
    /// A source this reader does not know.
    #[serde(other)]
    Unknown,
}

/// The label of the lock row that counts locks beyond the cap on lock identities.
pub const OVERFLOW_LOCK: &str = "(overflow)";

/// Delay charged to one holder acquire site of a lock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HolderDelay {
    /// Acquire site of the holder, `path:line:col` ("(other)" beyond the per-lock cap).
    pub site: String,
    /// Seconds other tasks waited while a guard from this site was held.
    pub seconds: f64,
    /// Contended acquisitions that waited for it.
    pub contentions: u64,
}

/// Someone holding a lock now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockHolder {
    /// Which lock of the identity (an id unique in the process).
    pub instance: u64,
    /// The holding task (`None` when taken outside any task, e.g. in `block_on`).
    pub task: Option<u64>,
    /// That task's spawn site, when the agent knows it.
    pub task_site: Option<String>,
    /// Where the guard was taken, `path:line:col`.
    pub site: String,
    /// How it is held.
    pub mode: LockMode,
    /// Permits held (semaphores), else 1.
    pub permits: u32,
    /// Seconds since it was taken.
    pub held_seconds: f64,
    /// Seconds since the holding task was last polled, when it is idle: a guard held
    /// across an `.await`.
    pub task_idle_seconds: Option<f64>,
}

/// Someone waiting for a lock now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockWaiter {
    /// Which lock of the identity.
    pub instance: u64,
    /// The waiting task (`None` outside any task).
    pub task: Option<u64>,
    /// That task's spawn site, when known.
    pub task_site: Option<String>,
    /// Where it asked, `path:line:col`.
    pub site: String,
    /// What it asked for.
    pub mode: LockMode,
    /// Permits asked for (semaphores), else 1.
    pub permits: u32,
    /// Seconds it has waited.
    pub waiting_seconds: f64,
}

/// The process hosting the agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessInfo {
    /// Operating-system process id.
    pub pid: u32,
    /// Executable name.
    pub name: String,
}

/// Runtime-wide facts read from tokio's runtime metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeInfo {
    /// Number of worker threads: tokio's equivalent of Go's GOMAXPROCS.
    pub workers: u64,
    /// Tasks the runtime counts as alive (spawned and not yet dropped).
    pub alive_tasks: u64,
    /// Tasks waiting in the runtime's global (injection) queue.
    pub global_queue_depth: u64,
    /// Per worker, total seconds spent busy (polling tasks) since the runtime started.
    pub worker_busy_seconds: Vec<f64>,
    /// Threads of the blocking pool (`spawn_blocking`, `tokio::fs`, ...), busy or idle.
    pub blocking_threads: u64,
    /// Idle threads of the blocking pool.
    pub idle_blocking_threads: u64,
    /// Blocking jobs waiting for a thread.
    pub blocking_queue_depth: u64,
    /// The runtime's `max_blocking_threads`, when the service told the agent
    /// (`AgentBuilder::max_blocking_threads`; tokio does not report it).
    pub max_blocking_threads: Option<u64>,
    /// Seconds the blocking pool has been saturated (no idle thread and jobs waiting)
    /// without a break, as the agent's sampler saw it; 0 when it is not.
    pub blocking_saturated_seconds: f64,
    /// Per worker, the share of the last sampling interval it spent busy (0 to 1).
    pub worker_busy_ratio: Vec<f64>,
    /// Per worker, tasks it stole from other workers since the runtime started.
    pub worker_steals: Vec<u64>,
    /// Per worker, times it parked (went to sleep for lack of work).
    pub worker_parks: Vec<u64>,
    /// Workers in one poll for longer than the agent's blocked threshold now.
    pub blocked_workers: u64,
    /// The longest poll in progress now, seconds (0 when no worker is polling).
    pub longest_poll_seconds: f64,
    /// The threshold beyond which a poll in progress counts as a blocked worker, seconds.
    pub blocked_threshold_seconds: f64,
    /// CPUs this process may use: the cgroup CPU quota (`cpu.max`) when one is set, else
    /// the CPUs it may run on. More workers than this means they share CPUs.
    pub cpu_quota: f64,
    /// Scheduling delay: how long a probe task spawned into the runtime waited for its
    /// first poll (see the README), over the agent's lifetime.
    pub scheduling_delay: DelayHistogram,
}

/// A histogram of durations, cumulative, Prometheus-style.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DelayHistogram {
    /// Upper bounds of the buckets, seconds, ascending (the last bucket, +Inf, is implied).
    pub bounds: Vec<f64>,
    /// Observations at or below each bound (cumulative), one per bound.
    pub counts: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Their sum, seconds.
    pub sum: f64,
    /// The largest observation in the last sampling interval, seconds.
    pub last_seconds: f64,
}

/// One task of a deadlock cycle: what it holds and what it waits for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadlockStep {
    /// The task.
    pub task: Option<u64>,
    /// Its spawn site, when known.
    pub task_site: Option<String>,
    /// The lock it waits for.
    pub waits_for: String,
    /// Where it asks for it, and how.
    pub wait_site: String,
    /// Mode asked for.
    pub wait_mode: LockMode,
    /// Seconds it has waited.
    pub waiting_seconds: f64,
    /// Acquire sites of the guards it holds on locks of the cycle (with their locks).
    pub holds: Vec<String>,
}

/// A poll in progress: which task a worker is polling, and for how long so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PollInProgress {
    /// The runtime's worker index (as in `worker_busy_seconds`), when known.
    pub worker: Option<u64>,
    /// The task being polled.
    pub task: u64,
    /// Its spawn site.
    pub site: String,
    /// Seconds this poll has been running.
    pub seconds: f64,
}

/// The agent's own state, so readers can tell when a cap was reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentInfo {
    /// Wall-clock time the agent started, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Most distinct spawn sites tracked; later sites share the overflow row.
    pub site_capacity: u64,
    /// Distinct spawn sites tracked now (not counting the overflow row).
    pub sites_tracked: u64,
    /// Tasks spawned at sites that did not fit, counted under [`OVERFLOW_SITE`].
    pub overflow_spawned: u64,
    /// Terminations the agent saw without a spawn: `spawn_blocking` tasks and the runtime's
    /// own worker threads, which tokio reports only when they end. They are kept out of
    /// every site's counts.
    pub untracked_terminations: u64,
    /// Whether panics inside tasks are counted per site ([`SiteRow::panicked`]): off when
    /// turned off with `AgentBuilder::count_panics(false)`, or when 64 agents in the
    /// process count them already.
    pub panic_counting: bool,
    /// Every cap of the agent's tables: its size, how much is in use, and what it turned
    /// away since the agent started. Exported as `taskscope_cap_*{cap="..."}`.
    pub caps: Vec<CapUsage>,
    /// The name given to the runtime this agent watches (`AgentBuilder::runtime_name`),
    /// if any; metrics then carry it as the `runtime` label.
    pub runtime_name: Option<String>,
}

/// One of the agent's caps (see [`AgentInfo::caps`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapUsage {
    /// Which table: `sites` (spawn sites; tasks of later sites are counted in the
    /// overflow row), `lock_classes` (instrumented lock classes; later ones share the
    /// overflow row), `lost_waker_tasks` (tasks the lost-waker layer follows; later ones are
    /// never reported), `tokio_resources` (tokio locks and ops the resource layer follows;
    /// later ones are not shown).
    pub cap: String,
    /// The cap.
    pub capacity: u64,
    /// Entries in use now.
    pub used: u64,
    /// What the cap turned away since the agent started: tasks for `sites`, lock
    /// instances for `lock_classes`, tasks for `lost_waker_tasks`, resources and ops for
    /// `tokio_resources`.
    pub dropped: u64,
}

/// Counters for one spawn site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SiteRow {
    /// `file:line:col` of the spawn call, with the file shortened (see
    /// [`crate::site::display_path`]); [`OVERFLOW_SITE`] for the overflow row.
    pub site: String,
    /// Tasks spawned here that have not finished.
    pub live: u64,
    /// Tasks spawned here since the agent started.
    pub spawned: u64,
    /// Tasks spawned here that finished (completed, panicked or were aborted).
    pub completed: u64,
    /// Panics inside tasks spawned here (counted through the process's panic hook; a task
    /// that caught its own panic still counts). Included in [`SiteRow::completed`] when
    /// the panic ended the task.
    pub panicked: u64,
    /// Polls of this site's tasks.
    pub polls: u64,
    /// Seconds this site's tasks spent being polled: polls of 10 ms or more counted
    /// exactly (coarse clock), shorter ones estimated from one poll in 8 (on average, random
    /// strides) timed precisely and weighted by the polls it stands for.
    pub busy_seconds: f64,
    /// Live tasks here not polled for longer than [`SiteRow::idle_threshold_seconds`].
    pub idle_over_threshold: u64,
    /// Idle time beyond which a task here counts as idle too long: the agent's fixed
    /// threshold if one is set, else derived from the site's own waits (see
    /// [`Evidence::IdleTooLong`]).
    pub idle_threshold_seconds: f64,
    /// The longest time any task here waited between two polls (or from spawn to its first
    /// poll) and was then polled again: how long this site's tasks normally wait.
    pub longest_wait_seconds: f64,
    /// Idle time of the site's longest-idle live task (0 when none is idle).
    pub oldest_idle_seconds: f64,
    /// Trend of the live count over the growth window, tasks per second (least squares;
    /// negative when shrinking, 0 without enough history).
    pub live_trend_per_second: f64,
    /// Polls of this site's tasks that lasted at least each of
    /// [`LONG_POLL_BOUNDS_SECONDS`] (by the coarse clock, resolution 1–4 ms): a poll of
    /// 150 ms counts in the first two. Empty from agents that predate it.
    pub long_polls: Vec<u64>,
    /// The longest any task spawned here waited from its spawn to its first poll, since
    /// the agent started (coarse clock, 1–4 ms resolution): the site's worst scheduling
    /// delay. A new task is runnable at once, so this wait is time spent in run queues.
    pub first_poll_delay_max_seconds: f64,
}

/// Bounds of [`SiteRow::long_polls`], seconds.
pub const LONG_POLL_BOUNDS_SECONDS: [f64; 4] = [0.01, 0.1, 1.0, 10.0];

/// The state of a live task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Being polled by a worker right now.
    Running,
    /// Waiting to be woken (or woken and waiting in a run queue).
    #[default]
    Idle,
    /// A state this reader does not know (sent by a newer agent).
    #[serde(other)]
    Unknown,
}

/// One live task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskRow {
    /// tokio's task id (`tokio::task::Id`), equal to `JoinHandle::id()`.
    pub id: u64,
    /// Spawn site label, as in [`SiteRow::site`].
    pub site: String,
    /// Seconds since the task was spawned.
    pub age_seconds: f64,
    /// Running or idle.
    pub state: TaskState,
    /// Seconds since its last poll (started), or since it was spawned if it was never
    /// polled; 0 while running. Resolution: the kernel's coarse clock tick (1–4 ms).
    pub idle_seconds: f64,
    /// Times the task was polled.
    pub polls: u64,
}

/// Where a dump's answer comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpSource {
    /// tokio's task dump: every task traced to the await point it waits at.
    Traced,
    /// The agent's registry alone: spawn sites, states and ages, no await points (no task
    /// dump support in this build, workers blocked, or the dump timed out).
    #[default]
    Registry,
    /// A source this reader does not know (sent by a newer agent).
    #[serde(other)]
    Unknown,
}

/// A task dump: live tasks grouped by spawn site and the frames where they wait, like Go's
/// `/debug/pprof/goroutine?debug=1`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dump {
    /// [`SCHEMA_VERSION`] of the agent that took it.
    pub schema_version: u32,
    /// Wall-clock time the dump was taken, milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// Seconds the whole dump took, resolving symbols included.
    pub took_seconds: f64,
    /// Seconds tokio's `Handle::dump` took: the runtime's workers are paused about as long.
    pub paused_seconds: f64,
    /// Traced, or from the registry only.
    pub source: DumpSource,
    /// False when tasks are missing or the answer fell back to the registry; `notes` say
    /// why.
    pub complete: bool,
    /// Plain sentences about what this dump is and is not.
    pub notes: Vec<String>,
    /// Polls in progress for longer than the threshold when the dump was asked for.
    pub blocked: Vec<BlockedPoll>,
    /// Live tasks in the dump.
    pub total_tasks: u64,
    /// Groups by (spawn site, stacks), largest first.
    pub groups: Vec<DumpGroup>,
    /// Every task, when asked for (`debug=2`), oldest first.
    pub tasks: Vec<DumpTask>,
}

/// A poll that has been running too long: a task blocking its worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockedPoll {
    /// The task being polled.
    pub task: u64,
    /// Its spawn site.
    pub site: String,
    /// Seconds the poll has been running.
    pub seconds: f64,
}

/// One frame of a stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct Frame {
    /// Demangled function name, without the hash suffix.
    pub function: String,
    /// Source file, shortened like spawn sites (empty when unknown).
    pub file: String,
    /// Line (0 when unknown).
    pub line: u32,
}

/// Smallest, median and largest of a set of durations, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

/// Tasks with the same spawn site waiting at the same frames.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DumpGroup {
    /// Spawn site, as in [`SiteRow::site`].
    pub site: String,
    /// Where they wait: one stack per leaf future being awaited (several under `join!`),
    /// innermost frame first; runtime internals are collapsed to the leaf they wait on.
    pub stacks: Vec<Vec<Frame>>,
    /// How many tasks.
    pub count: u64,
    /// Their idle times (seconds since the last poll).
    pub idle_seconds: Spread,
    /// Their ages.
    pub age_seconds: Spread,
    /// The first few task ids of the group (at most 10).
    pub task_ids: Vec<u64>,
}

/// One task of a dump.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DumpTask {
    /// tokio's task id.
    pub id: u64,
    /// Spawn site.
    pub site: String,
    /// Running or idle when the dump was taken.
    pub state: TaskState,
    /// Seconds since spawn.
    pub age_seconds: f64,
    /// Seconds since its last poll.
    pub idle_seconds: f64,
    /// Polls so far (dump polls not counted).
    pub polls: u64,
    /// Where it waits, as in [`DumpGroup::stacks`].
    pub stacks: Vec<Vec<Frame>>,
}

/// How sure, or how bad, a finding is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look; may be normal for this service.
    #[default]
    Info,
    /// Probably wrong: suspected leak.
    Warning,
    /// Certainly wrong: tasks that can never run again.
    Critical,
    /// A severity this reader does not know (sent by a newer agent).
    #[serde(other)]
    Unknown,
}

impl Severity {
    /// For sorting, most severe highest; an unknown severity ranks lowest.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Unknown => 0,
            Severity::Info => 1,
            Severity::Warning => 2,
            Severity::Critical => 3,
        }
    }

    /// Lower-case name, as in JSON and Prometheus labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What kind of trouble a finding reports.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Live tasks idle far longer than their site's tasks normally wait (suspected leak).
    IdleTooLong,
    /// A site whose live count keeps rising: its low-water mark grows (suspected leak).
    Growth,
    /// Idle tasks whose wakers were all dropped: nothing can ever wake them (certain leak).
    LostWaker,
    /// A task in one poll for longer than the threshold: it blocks its worker.
    BlockedWorker,
    /// Every worker is blocked in a poll: the runtime runs nothing else.
    AllWorkersBlocked,
    /// The blocking pool has no free thread and jobs wait, without draining.
    BlockingPoolSaturated,
    /// Tasks waiting for each other's locks in a cycle: none can ever proceed.
    Deadlock,
    /// Guards held by tasks that are idle (awaiting something else) for longer than a
    /// threshold.
    GuardAcrossAwait,
    /// A lock tasks spend much of their time waiting for.
    HotLock,
    /// A kind this reader does not know (sent by a newer agent).
    #[default]
    #[serde(other)]
    Unknown,
}

impl FindingKind {
    /// Lower-case name, as in JSON and Prometheus labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::IdleTooLong => "idle_too_long",
            FindingKind::Growth => "growth",
            FindingKind::LostWaker => "lost_waker",
            FindingKind::BlockedWorker => "blocked_worker",
            FindingKind::AllWorkersBlocked => "all_workers_blocked",
            FindingKind::BlockingPoolSaturated => "blocking_pool_saturated",
            FindingKind::Deadlock => "deadlock",
            FindingKind::GuardAcrossAwait => "guard_across_await",
            FindingKind::HotLock => "hot_lock",
            FindingKind::Unknown => "unknown",
        }
    }
}

/// Something that looks wrong at one spawn site, with the numbers behind it.
///
/// Shaped like tokio-console's warnings: `summary` is one full sentence for this site with
/// the number that crossed the line; `fragment` reads after a count of tasks
/// ("12 tasks have lost their waker").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Finding {
    /// What kind of trouble.
    pub kind: FindingKind,
    /// How sure or how bad.
    pub severity: Severity,
    /// Spawn site, as in [`SiteRow::site`].
    pub site: String,
    /// Tasks concerned.
    pub count: u64,
    /// One sentence, e.g. "50 tasks spawned at src/conn.rs:40:9 have been idle for more
    /// than 10.0 s (oldest 42.1 s); tasks there normally wait at most 0.2 s".
    pub summary: String,
    /// Reads after a count: "tasks idle for more than 10.0 s".
    pub fragment: String,
    /// The numbers behind it.
    pub evidence: Evidence,
}

/// The numbers behind a [`Finding`], by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// Behind [`FindingKind::IdleTooLong`].
    IdleTooLong {
        /// The site's idle threshold, seconds.
        threshold_seconds: f64,
        /// Whether the threshold was derived from the site's own waits (else it is the
        /// agent's fixed threshold).
        derived: bool,
        /// The site's longest wait that ended in a poll, seconds.
        longest_wait_seconds: f64,
        /// Idle time of the longest-idle task, seconds.
        oldest_idle_seconds: f64,
        /// Live tasks at the site.
        live: u64,
    },
    /// Behind [`FindingKind::Growth`].
    Growth {
        /// Growth of the live count, tasks per second over the window (least squares).
        rate_per_second: f64,
        /// Seconds of history the rate is computed over.
        window_seconds: f64,
        /// Lowest live count in the window's first half.
        floor_before: u64,
        /// Lowest live count in the window's second half.
        floor_after: u64,
        /// Live tasks at the site now.
        live: u64,
    },
    /// Behind [`FindingKind::LostWaker`].
    LostWaker {
        /// Task ids (at most 10) with no waker left.
        task_ids: Vec<u64>,
        /// Idle time of the longest-idle of them, seconds.
        oldest_idle_seconds: f64,
    },
    /// Behind [`FindingKind::BlockedWorker`].
    BlockedWorker {
        /// The worker's index, when known.
        worker: Option<u64>,
        /// The task in the poll.
        task: u64,
        /// Seconds the poll has been running.
        seconds: f64,
        /// The threshold, seconds.
        threshold_seconds: f64,
    },
    /// Behind [`FindingKind::AllWorkersBlocked`].
    AllWorkersBlocked {
        /// Workers of the runtime.
        workers: u64,
        /// The shortest of their polls in progress, seconds: how long nothing else ran.
        seconds: f64,
    },
    /// Behind [`FindingKind::Deadlock`]: the cycle, one step per task.
    Deadlock {
        /// Each task waits for the next one's lock (the last waits for the first's).
        cycle: Vec<DeadlockStep>,
        /// Other tasks waiting for locks held in the cycle.
        blocked_behind: u64,
    },
    /// Behind [`FindingKind::GuardAcrossAwait`].
    GuardAcrossAwait {
        /// The lock.
        lock: String,
        /// Guards from this site held by idle tasks now.
        guards: u64,
        /// The longest such task's idle time, seconds.
        oldest_idle_seconds: f64,
        /// The threshold, seconds.
        threshold_seconds: f64,
    },
    /// Behind [`FindingKind::HotLock`].
    HotLock {
        /// The lock.
        lock: String,
        /// Seconds of waiting per second over the last 10 s.
        wait_share: f64,
        /// Contended acquisitions since the agent started.
        contended: u64,
        /// The holder acquire sites charged with most of the delay.
        top_holder_sites: Vec<HolderDelay>,
    },
    /// Behind [`FindingKind::BlockingPoolSaturated`].
    BlockingPoolSaturated {
        /// Threads of the pool, all busy.
        threads: u64,
        /// Jobs waiting for a thread.
        queue_depth: u64,
        /// Seconds it has been so.
        seconds: f64,
    },
    /// Evidence of a kind this reader does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// Per-site change since a baseline was marked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BaselineDiff {
    /// Wall-clock time the baseline was marked, milliseconds since the Unix epoch.
    pub marked_at_unix_ms: u64,
    /// Seconds since then.
    pub age_seconds: f64,
    /// Sites whose live count or spawns changed, largest growth of live first.
    pub sites: Vec<SiteDiff>,
}

/// One site's change between two moments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SiteDiff {
    /// Spawn site.
    pub site: String,
    /// Live tasks then.
    pub live_before: u64,
    /// Live tasks now.
    pub live_after: u64,
    /// Tasks spawned in between.
    pub spawned: u64,
    /// Tasks completed in between.
    pub completed: u64,
}

impl SiteDiff {
    /// Change of the live count (negative when it shrank).
    pub fn live_delta(&self) -> i64 {
        self.live_after as i64 - self.live_before as i64
    }
}
