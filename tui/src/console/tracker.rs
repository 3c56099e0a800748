//! What console-subscriber has told us so far: tasks, lock resources and their async ops,
//! kept up to date from `watch_updates`' incremental [`Update`]s.
//!
//! console sends its whole state in the first update of a stream, then only what changed:
//! new tasks, the complete stats of every task whose stats changed, and a `dropped_at` once
//! a task has ended. A task that ended is counted at its site and forgotten at once, so the
//! table holds live tasks only; every table has a cap (see the `MAX_*` constants), and what a
//! cap turned away is counted, never silently lost.
//!
//! Nothing here trusts the wire: a missing field, an unknown id or a timestamp out of range
//! is counted or skipped, never a panic.

use std::collections::{HashMap, VecDeque};

use console_api as api;
use console_api::field::{Name, Value};
use taskscope::leaks::GrowthSample;
use taskscope::model::{LockKind, LockMode, OVERFLOW_SITE};

/// Most live tasks followed one by one. console sends every task of the service; beyond
/// this, new tasks are counted in [`Tracker::tasks_turned_away`] and left out of their
/// site's counts. An entry costs about 200 bytes with its index, so the table stays under
/// about 50 MB however many tasks the service spawns.
pub const MAX_TASKS: usize = 250_000;

/// Most distinct spawn sites; tasks of later sites share the [`OVERFLOW_SITE`] row, like
/// the agent's site table.
pub const MAX_SITES: usize = 4096;

/// Samples of each site's counts kept for the growth indicator: console publishes about
/// once a second, so this covers the default 60 s growth window four times over. At most
/// 24 bytes x 256 x [`MAX_SITES`] = 25 MB.
pub const MAX_HISTORY: usize = 256;

/// Most metadata entries (one per tracing callsite: bounded by the code, capped anyway).
pub const MAX_METADATA: usize = 65_536;

/// Most live lock resources (tokio `Mutex`, `RwLock`, `Semaphore`) followed.
pub const MAX_LOCKS: usize = 100_000;

/// Most live async ops on those locks (a lock, read, write or acquire in progress).
pub const MAX_LOCK_OPS: usize = 100_000;

/// A point in time: nanoseconds since the Unix epoch, in the service's clock.
pub type Nanos = i64;

/// Converts a protobuf timestamp, saturating instead of overflowing on garbage.
pub fn nanos(ts: &prost_types::Timestamp) -> Nanos {
    ts.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(ts.nanos.clamp(0, 999_999_999)))
}

fn opt_nanos(ts: &Option<prost_types::Timestamp>) -> Option<Nanos> {
    ts.as_ref().map(nanos)
}

/// Seconds between two instants, never negative.
pub fn seconds_between(from: Nanos, to: Nanos) -> f64 {
    (to.saturating_sub(from)).max(0) as f64 / 1e9
}

/// The poll and waker facts of one task, from its latest `Stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// When it was spawned.
    pub created: Option<Nanos>,
    /// Times it was woken.
    pub wakes: u64,
    /// Times it woke itself (from inside its own poll).
    pub self_wakes: u64,
    /// Waker clones minus waker drops: wakers alive now (a wake by value drops one).
    pub wakers: i64,
    /// The latest wake.
    pub last_wake: Option<Nanos>,
    /// Polls so far.
    pub polls: u64,
    /// When its first poll started.
    pub first_poll: Option<Nanos>,
    /// When its latest poll started.
    pub last_poll_started: Option<Nanos>,
    /// When its latest poll ended (`None` while the first poll runs).
    pub last_poll_ended: Option<Nanos>,
    /// Time spent in polls that ended, nanoseconds.
    pub busy_nanos: u64,
}

impl TaskStats {
    fn from_proto(s: &api::tasks::Stats) -> Self {
        let poll = s.poll_stats.unwrap_or_default();
        let busy = poll.busy_time.as_ref().map_or(0, |d| {
            (d.seconds.max(0) as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(d.nanos.max(0) as u64)
        });
        TaskStats {
            created: opt_nanos(&s.created_at),
            wakes: s.wakes,
            self_wakes: s.self_wakes,
            wakers: (s.waker_clones as i64).wrapping_sub(s.waker_drops as i64),
            last_wake: opt_nanos(&s.last_wake),
            polls: poll.polls,
            first_poll: opt_nanos(&poll.first_poll),
            last_poll_started: opt_nanos(&poll.last_poll_started),
            last_poll_ended: opt_nanos(&poll.last_poll_ended),
            busy_nanos: busy,
        }
    }

    /// In a poll now: its latest poll started after the latest one ended.
    pub fn running(&self) -> bool {
        match (self.last_poll_started, self.last_poll_ended) {
            (Some(start), Some(end)) => start > end,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Woken since its latest poll started: it is (or soon will be) in a run queue. A wake
    /// during the poll counts too: tokio polls the task again after it.
    pub fn woken_since_poll(&self) -> bool {
        match (self.last_wake, self.last_poll_started) {
            (Some(wake), Some(start)) => wake >= start,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// One live task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEntry {
    /// tokio's task id (the `task.id` field), when console sent it.
    pub tokio_id: Option<u64>,
    /// Index of its site in [`Tracker::sites`].
    pub site: u32,
    /// The task's name (`tokio::task::Builder::name`), if any.
    pub name: Option<Box<str>>,
    /// Its latest stats (default until the first `Stats` arrives).
    pub stats: TaskStats,
}

/// One spawn site's counters over the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteCounts {
    /// `file:line:col`, as the agent labels sites.
    pub label: String,
    /// Tasks seen spawned here (console's first update also carries tasks that ended within
    /// its retention period, one hour by default).
    pub spawned: u64,
    /// Of those, the ones that ended.
    pub completed: u64,
    /// Polls and busy time of the tasks that ended (the live ones' are in their entries).
    pub ended_polls: u64,
    /// Busy time of the tasks that ended, nanoseconds.
    pub ended_busy_nanos: u64,
    /// Self-wakes of the tasks that ended.
    pub ended_self_wakes: u64,
    /// The longest wait between two polls (or from spawn to the first poll) seen to end in
    /// a poll, seconds. Seen at console's publishing granularity: a wait is measured only
    /// when one update to the next shows exactly one more poll.
    pub longest_wait: f64,
    /// The longest wait from spawn to first poll seen, seconds.
    pub first_poll_delay_max: f64,
    /// Live and spawned counts at each update (at most [`MAX_HISTORY`], oldest first), for
    /// the growth indicator ([`taskscope::leaks::growth_finding`]).
    pub history: VecDeque<GrowthSample>,
}

/// A tokio lock resource (`Mutex`, `RwLock`, `Semaphore`) alive now.
#[derive(Debug, Clone, PartialEq)]
pub struct LockEntry {
    /// What kind.
    pub kind: LockKind,
    /// Where it was created, `file:line:col`.
    pub created_at: String,
    /// `locked` (Mutex).
    pub locked: bool,
    /// `write_locked` (RwLock).
    pub write_locked: bool,
    /// `current_readers` (RwLock).
    pub readers: u64,
    /// `permits` available (Semaphore).
    pub permits: Option<u64>,
}

/// An async op on a lock: a `lock()`, `read()`, `write()` or `acquire()` not finished.
#[derive(Debug, Clone, PartialEq)]
pub struct LockOp {
    /// console's id of the lock resource.
    pub resource: u64,
    /// How it asks.
    pub mode: LockMode,
    /// console's id of the task awaiting it (from the op's stats).
    pub task: Option<u64>,
    /// When the op was created.
    pub created: Option<Nanos>,
}

/// Events console itself could not record (its buffer was full): data may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedEvents {
    /// Task events.
    pub tasks: u64,
    /// Resource events.
    pub resources: u64,
    /// Async op events.
    pub async_ops: u64,
}

/// The state built from one stream's updates.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    /// The latest update's `now`: every age is computed against it.
    pub now: Option<Nanos>,
    /// Updates applied.
    pub updates: u64,
    /// Field names of each metadata (for fields sent as an index into them).
    field_names: HashMap<u64, Vec<String>>,
    /// Live tasks by console's id (a span id, not tokio's task id).
    pub tasks: HashMap<u64, TaskEntry>,
    /// Sites by index.
    pub sites: Vec<SiteCounts>,
    site_index: HashMap<String, u32>,
    /// Live locks by console's resource id.
    pub locks: HashMap<u64, LockEntry>,
    /// Live ops on those locks by console's async op id.
    pub lock_ops: HashMap<u64, LockOp>,
    /// New tasks not followed because [`MAX_TASKS`] were live.
    pub tasks_turned_away: u64,
    /// Tasks counted under [`OVERFLOW_SITE`] because [`MAX_SITES`] sites were known.
    pub overflow_spawned: u64,
    /// Locks and lock ops not followed because of [`MAX_LOCKS`] / [`MAX_LOCK_OPS`].
    pub locks_turned_away: u64,
    /// Metadata not kept because of [`MAX_METADATA`].
    pub metadata_turned_away: u64,
    /// `spawn_blocking` tasks and `block_on` futures seen: kept out of the sites, as the
    /// agent does.
    pub blocking_tasks: u64,
    /// Stats for a task id never announced (ignored).
    pub unknown_stats: u64,
    /// What console could not record.
    pub dropped_events: DroppedEvents,
}

/// The value of a field as a number, if it is one.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U64Val(n) => Some(*n),
        Value::I64Val(n) => u64::try_from(*n).ok(),
        Value::StrVal(s) | Value::DebugVal(s) => s.trim().parse().ok(),
        Value::BoolVal(_) => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::BoolVal(b) => Some(*b),
        Value::StrVal(s) | Value::DebugVal(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::StrVal(s) => s.clone(),
        // Debug formatting quotes strings: `"name"`.
        Value::DebugVal(s) => s.trim_matches('"').to_string(),
        Value::U64Val(n) => n.to_string(),
        Value::I64Val(n) => n.to_string(),
        Value::BoolVal(b) => b.to_string(),
    }
}

/// `file:line:col` of a console location, the file shortened like the agent's sites.
pub fn location_label(loc: Option<&api::Location>) -> Option<String> {
    let loc = loc?;
    let file = loc.file.as_deref().filter(|f| !f.is_empty())?;
    Some(format!(
        "{}:{}:{}",
        taskscope::site::display_path(file),
        loc.line.unwrap_or(0),
        loc.column.unwrap_or(0)
    ))
}

/// Label for tasks console sent without a location.
pub const UNKNOWN_LOCATION: &str = "(unknown location)";

impl Tracker {
    /// An empty state, before the first update.
    pub fn new() -> Self {
        Tracker::default()
    }

    /// Applies one update from `watch_updates`.
    pub fn apply(&mut self, update: api::instrument::Update) {
        let sampled_at = update.now.as_ref().map(nanos);
        if let Some(now) = &update.now {
            let now = nanos(now);
            // Never backwards: ages must not shrink on a skewed update.
            self.now = Some(self.now.map_or(now, |prev| prev.max(now)));
        }
        if let Some(meta) = update.new_metadata {
            for m in meta.metadata {
                let (Some(id), Some(md)) = (m.id, m.metadata) else {
                    continue;
                };
                if self.field_names.len() >= MAX_METADATA && !self.field_names.contains_key(&id.id)
                {
                    self.metadata_turned_away += 1;
                    continue;
                }
                self.field_names.insert(id.id, md.field_names);
            }
        }
        if let Some(tu) = update.task_update {
            self.dropped_events.tasks = self.dropped_events.tasks.saturating_add(tu.dropped_events);
            for task in tu.new_tasks {
                self.add_task(task);
            }
            for (id, stats) in tu.stats_update {
                self.update_task(id, &stats);
            }
        }
        if let Some(ru) = update.resource_update {
            self.dropped_events.resources = self
                .dropped_events
                .resources
                .saturating_add(ru.dropped_events);
            for r in ru.new_resources {
                self.add_resource(r);
            }
            for (id, stats) in ru.stats_update {
                self.update_resource(id, &stats);
            }
        }
        if let Some(au) = update.async_op_update {
            self.dropped_events.async_ops = self
                .dropped_events
                .async_ops
                .saturating_add(au.dropped_events);
            for op in au.new_async_ops {
                self.add_async_op(op);
            }
            for (id, stats) in au.stats_update {
                self.update_async_op(id, &stats);
            }
        }
        if let Some(at) = sampled_at {
            self.sample_sites(at);
        }
        self.updates += 1;
    }

    /// Records every site's counts at `at` (the service's clock) for the growth indicator.
    fn sample_sites(&mut self, at: Nanos) {
        let at_seconds = at as f64 / 1e9;
        for site in &mut self.sites {
            if site
                .history
                .back()
                .is_some_and(|s| s.at_seconds >= at_seconds)
            {
                continue; // a skewed or repeated clock: keep the history in order
            }
            if site.history.len() >= MAX_HISTORY {
                site.history.pop_front();
            }
            site.history.push_back(GrowthSample {
                at_seconds,
                live: site.spawned.saturating_sub(site.completed),
                spawned: site.spawned,
            });
        }
    }

    /// The field's name, resolving an index into its metadata's names.
    fn field_name<'a>(&'a self, f: &'a api::Field) -> Option<&'a str> {
        match f.name.as_ref()? {
            Name::StrName(s) => Some(s),
            Name::NameIdx(i) => {
                let names = self.field_names.get(&f.metadata_id.as_ref()?.id)?;
                names.get(usize::try_from(*i).ok()?).map(String::as_str)
            }
        }
    }

    fn site_for(&mut self, label: String) -> u32 {
        if let Some(&i) = self.site_index.get(&label) {
            return i;
        }
        let label = if self.site_index.len() >= MAX_SITES {
            self.overflow_spawned += 1;
            OVERFLOW_SITE.to_string()
        } else {
            label
        };
        if let Some(&i) = self.site_index.get(&label) {
            return i;
        }
        let i = self.sites.len() as u32;
        self.sites.push(SiteCounts {
            label: label.clone(),
            ..SiteCounts::default()
        });
        self.site_index.insert(label, i);
        i
    }

    fn add_task(&mut self, task: api::tasks::Task) {
        let Some(id) = task.id.map(|i| i.id) else {
            return;
        };
        if task.kind == api::tasks::task::Kind::Blocking as i32 {
            self.blocking_tasks += 1;
            return;
        }
        let mut tokio_id = None;
        let mut name = None;
        let mut blocking = false;
        for f in &task.fields {
            let (Some(field), Some(value)) = (self.field_name(f), f.value.as_ref()) else {
                continue;
            };
            match field {
                "task.id" => tokio_id = as_u64(value),
                "task.name" => name = Some(as_text(value).into_boxed_str()),
                // tokio's span says `kind = "blocking"` for spawn_blocking and
                // "block_on" for a runtime's `block_on` future: neither is a task the
                // agent counts, and a `block_on` future's waker is the thread's parker,
                // whose clones console never sees (it would look like a lost waker).
                "kind" => blocking = matches!(as_text(value).as_str(), "blocking" | "block_on"),
                _ => {}
            }
        }
        if blocking {
            self.blocking_tasks += 1;
            return;
        }
        if self.tasks.contains_key(&id) {
            // Announced twice (a confused peer): keep the first, count it once.
            return;
        }
        if self.tasks.len() >= MAX_TASKS {
            self.tasks_turned_away += 1;
            return;
        }
        let label =
            location_label(task.location.as_ref()).unwrap_or_else(|| UNKNOWN_LOCATION.to_string());
        let site = self.site_for(label);
        self.sites[site as usize].spawned += 1;
        self.tasks.insert(
            id,
            TaskEntry {
                tokio_id,
                site,
                name,
                stats: TaskStats::default(),
            },
        );
    }

    fn update_task(&mut self, id: u64, stats: &api::tasks::Stats) {
        let Some(task) = self.tasks.get_mut(&id) else {
            self.unknown_stats += 1;
            return;
        };
        let new = TaskStats::from_proto(stats);
        let old = task.stats;
        let site = &mut self.sites[task.site as usize];
        // A wait that ended in a poll, when exactly one poll happened since the last stats
        // (with several, the waits in between are not known).
        if new.polls == old.polls + 1 {
            let wait = match (old.polls, new.created, new.first_poll) {
                (0, Some(created), Some(first)) => {
                    let d = seconds_between(created, first);
                    site.first_poll_delay_max = site.first_poll_delay_max.max(d);
                    Some(d)
                }
                _ => match (old.last_poll_ended, new.last_poll_started) {
                    (Some(end), Some(start)) => Some(seconds_between(end, start)),
                    _ => None,
                },
            };
            if let Some(w) = wait {
                site.longest_wait = site.longest_wait.max(w);
            }
        } else if old.polls == 0
            && let (Some(created), Some(first)) = (new.created, new.first_poll)
        {
            // Several polls since the last stats, the first among them: its delay is
            // known, and it ended in a poll.
            let d = seconds_between(created, first);
            site.first_poll_delay_max = site.first_poll_delay_max.max(d);
            site.longest_wait = site.longest_wait.max(d);
        }
        if stats.dropped_at.is_some() {
            site.completed += 1;
            site.ended_polls = site.ended_polls.saturating_add(new.polls);
            site.ended_busy_nanos = site.ended_busy_nanos.saturating_add(new.busy_nanos);
            site.ended_self_wakes = site.ended_self_wakes.saturating_add(new.self_wakes);
            self.tasks.remove(&id);
        } else {
            task.stats = new;
        }
    }

    fn add_resource(&mut self, r: api::resources::Resource) {
        let Some(id) = r.id.map(|i| i.id) else {
            return;
        };
        // Internal resources are parts of others (a Mutex's semaphore): the outer one
        // stands for them.
        if r.is_internal {
            return;
        }
        let kind = match r.concrete_type.as_str() {
            "Mutex" => LockKind::Mutex,
            "RwLock" => LockKind::RwLock,
            "Semaphore" => LockKind::Semaphore,
            // Timers, channels and the rest: not locks.
            _ => return,
        };
        if self.locks.len() >= MAX_LOCKS && !self.locks.contains_key(&id) {
            self.locks_turned_away += 1;
            return;
        }
        self.locks.insert(
            id,
            LockEntry {
                kind,
                created_at: location_label(r.location.as_ref())
                    .unwrap_or_else(|| UNKNOWN_LOCATION.to_string()),
                locked: false,
                write_locked: false,
                readers: 0,
                permits: None,
            },
        );
    }

    fn update_resource(&mut self, id: u64, stats: &api::resources::Stats) {
        if stats.dropped_at.is_some() {
            self.locks.remove(&id);
            self.lock_ops.retain(|_, op| op.resource != id);
            return;
        }
        let mut facts = Vec::new();
        for attr in &stats.attributes {
            let Some(f) = attr.field.as_ref() else {
                continue;
            };
            if let (Some(name), Some(value)) = (self.field_name(f), f.value.as_ref()) {
                facts.push((name.to_string(), value.clone()));
            }
        }
        let Some(lock) = self.locks.get_mut(&id) else {
            return;
        };
        for (name, value) in facts {
            match name.as_str() {
                "locked" => lock.locked = as_bool(&value).unwrap_or(lock.locked),
                "write_locked" => lock.write_locked = as_bool(&value).unwrap_or(lock.write_locked),
                "current_readers" => lock.readers = as_u64(&value).unwrap_or(lock.readers),
                "permits" => lock.permits = as_u64(&value).or(lock.permits),
                _ => {}
            }
        }
    }

    fn add_async_op(&mut self, op: api::async_ops::AsyncOp) {
        let (Some(id), Some(resource)) = (op.id.map(|i| i.id), op.resource_id.map(|i| i.id)) else {
            return;
        };
        if !self.locks.contains_key(&resource) {
            return;
        }
        let mode = match op.source.as_str() {
            "Mutex::lock" | "Mutex::lock_owned" => LockMode::Exclusive,
            "RwLock::read" | "RwLock::read_owned" => LockMode::Read,
            "RwLock::write" | "RwLock::write_owned" => LockMode::Write,
            s if s.starts_with("Semaphore::acquire") => LockMode::Permits,
            _ => LockMode::Unknown,
        };
        if self.lock_ops.len() >= MAX_LOCK_OPS && !self.lock_ops.contains_key(&id) {
            self.locks_turned_away += 1;
            return;
        }
        self.lock_ops.insert(
            id,
            LockOp {
                resource,
                mode,
                task: None,
                created: None,
            },
        );
    }

    fn update_async_op(&mut self, id: u64, stats: &api::async_ops::Stats) {
        if stats.dropped_at.is_some() {
            self.lock_ops.remove(&id);
            return;
        }
        if let Some(op) = self.lock_ops.get_mut(&id) {
            op.task = stats.task_id.as_ref().map(|t| t.id).or(op.task);
            op.created = opt_nanos(&stats.created_at).or(op.created);
        }
    }
}
