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
    /// Polls of this site's tasks.
    pub polls: u64,
    /// Seconds this site's tasks spent being polled, estimated from one poll in 8 (on
    /// average, random strides) timed precisely and weighted by the polls it stands for.
    pub busy_seconds: f64,
}

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
