//! Maps a [`Tracker`]'s state onto taskscope's model: sites, live tasks, findings and
//! locks in a [`Snapshot`], plus what console knows that the model has no field for
//! ([`ConsoleFacts`]: wakers, wakes, self-wakes, task names, what is unavailable and why).
//!
//! Every age is computed against the latest update's `now` (the service's clock), never
//! this process's clock: two readers of the same updates get the same snapshot.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use taskscope::LeakSettings;
use taskscope::model::{
    AgentInfo, CapUsage, LockKind, LockMode, LockRow, LockSource, LockWaiter, ProcessInfo,
    SCHEMA_VERSION, SiteRow, Snapshot, TaskRow, TaskState,
};

use super::findings::{self, LOST_WAKER_MIN_IDLE, SiteFacts, round};
use super::tracker::{self, Nanos, Tracker, seconds_between};

/// Most tasks listed in [`Snapshot::tasks`] and [`ConsoleFacts::tasks`] (the agent's
/// listing cap too); [`Snapshot::tasks_total`] says how many are live.
pub const MAX_LISTED_TASKS: usize = 100_000;

/// Most holders or waiters listed per lock row, as in the agent.
const MAX_LOCK_PARTIES: usize = 100;

/// What is never available through console-subscriber, said in the JSON and the TUI.
pub const UNAVAILABLE: &[&str] = &[
    "task dumps: console's API carries no stacks or await points; run the taskscope agent \
     (taskscope::Agent) for dumps",
    "baselines and diffs: console keeps no per-site history to compare against (growth \
     is judged from the counts this reader saw since it connected)",
    "panics, long polls, worker and blocking-pool facts: console's API does not report them",
    "lock holders by task: console says a lock is held, not by whom; holders are counted, \
     not listed",
];

/// Per-site facts console has and the model does not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleSite {
    /// `file:line:col`, as in [`SiteRow::site`].
    pub site: String,
    /// Self-wakes of its tasks (live and ended).
    pub self_wakes: u64,
    /// Its live, idle tasks that hold no waker (lost, or not yet past the one-second
    /// minimum).
    pub idle_without_waker: u64,
}

/// Per-task facts console has and the model does not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleTask {
    /// As in [`TaskRow::id`]: tokio's task id, else console's.
    pub id: u64,
    /// console's own id for the task (a tracing span id).
    pub console_id: u64,
    /// Spawn site.
    pub site: String,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Wakers alive now (clones minus drops).
    pub wakers: i64,
    /// Times woken.
    pub wakes: u64,
    /// Times it woke itself.
    pub self_wakes: u64,
}

/// What came with the snapshot from console: its extra facts and its gaps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsoleFacts {
    /// The console endpoint.
    pub url: String,
    /// Updates received on this stream.
    pub updates: u64,
    /// Per site, most self-wakes first.
    pub sites: Vec<ConsoleSite>,
    /// Per live task (oldest first, at most [`MAX_LISTED_TASKS`]).
    pub tasks: Vec<ConsoleTask>,
    /// Events console could not record (its buffer was full): tasks, resources, async ops.
    pub dropped_events: [u64; 3],
    /// `spawn_blocking` tasks and `block_on` futures seen, kept out of the sites as the
    /// agent does.
    pub blocking_tasks: u64,
    /// What is not available from console, and why.
    pub unavailable: Vec<String>,
}

/// The headless output: the snapshot, with console's extras under `console` (a reader
/// that wants only the snapshot decodes the same JSON as a [`Snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsoleReport {
    /// The mapped snapshot, at the top level.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// console's extras.
    pub console: ConsoleFacts,
}

struct LiveTask<'a> {
    console_id: u64,
    entry: &'a tracker::TaskEntry,
    age: f64,
    idle: f64,
    running: bool,
}

impl LiveTask<'_> {
    fn id(&self) -> u64 {
        self.entry.tokio_id.unwrap_or(self.console_id)
    }
}

fn live_tasks(t: &Tracker, now: Nanos) -> Vec<LiveTask<'_>> {
    let mut out: Vec<LiveTask<'_>> = t
        .tasks
        .iter()
        .map(|(&console_id, entry)| {
            let s = &entry.stats;
            let running = s.running();
            let created = s.created.unwrap_or(now);
            let idle = if running {
                0.0
            } else {
                seconds_between(s.last_poll_started.unwrap_or(created), now)
            };
            LiveTask {
                console_id,
                entry,
                age: seconds_between(created, now),
                idle,
                running,
            }
        })
        .collect();
    // Oldest first, as the agent lists them; ids break ties so the order is stable.
    out.sort_by(|a, b| b.age.total_cmp(&a.age).then(a.id().cmp(&b.id())));
    out
}

/// Whether nothing can wake this task: polled, not running, not woken since its latest
/// poll, no waker alive, idle at least [`LOST_WAKER_MIN_IDLE`].
fn lost_waker(task: &LiveTask<'_>) -> bool {
    let s = &task.entry.stats;
    s.polls > 0
        && !task.running
        && !s.woken_since_poll()
        && s.wakers <= 0
        && task.idle >= LOST_WAKER_MIN_IDLE
}

fn idle_without_waker(task: &LiveTask<'_>) -> bool {
    let s = &task.entry.stats;
    s.polls > 0 && !task.running && !s.woken_since_poll() && s.wakers <= 0
}

/// The snapshot console's state stands for now, judged with `settings`.
pub fn snapshot(t: &Tracker, settings: &LeakSettings, url: &str) -> Snapshot {
    report(t, settings, url).snapshot
}

/// The snapshot and console's extras.
pub fn report(t: &Tracker, settings: &LeakSettings, url: &str) -> ConsoleReport {
    let now = t.now.unwrap_or(0);
    let tasks = live_tasks(t, now);

    let mut facts: Vec<SiteFacts> = t
        .sites
        .iter()
        .map(|s| {
            let (threshold, derived) = findings::idle_threshold(settings, s.longest_wait);
            SiteFacts {
                site: s.label.clone(),
                completed: s.completed,
                threshold,
                derived,
                longest_wait: s.longest_wait,
                ..SiteFacts::default()
            }
        })
        .collect();
    let mut rows: Vec<SiteRow> = t
        .sites
        .iter()
        .map(|s| SiteRow {
            site: s.label.clone(),
            spawned: s.spawned,
            completed: s.completed,
            polls: s.ended_polls,
            busy_seconds: s.ended_busy_nanos as f64 / 1e9,
            longest_wait_seconds: round(s.longest_wait),
            first_poll_delay_max_seconds: round(s.first_poll_delay_max),
            ..SiteRow::default()
        })
        .collect();
    let mut extra: Vec<ConsoleSite> = t
        .sites
        .iter()
        .map(|s| ConsoleSite {
            site: s.label.clone(),
            self_wakes: s.ended_self_wakes,
            idle_without_waker: 0,
        })
        .collect();

    for task in &tasks {
        let i = task.entry.site as usize;
        let s = &task.entry.stats;
        let (row, f, x) = (&mut rows[i], &mut facts[i], &mut extra[i]);
        row.live += 1;
        row.polls = row.polls.saturating_add(s.polls);
        row.busy_seconds += s.busy_nanos as f64 / 1e9;
        x.self_wakes = x.self_wakes.saturating_add(s.self_wakes);
        f.live += 1;
        if !task.running {
            row.oldest_idle_seconds = row.oldest_idle_seconds.max(task.idle);
            f.oldest_idle = f.oldest_idle.max(task.idle);
            if task.idle > f.threshold {
                f.idle_over += 1;
            }
        }
        if idle_without_waker(task) {
            x.idle_without_waker += 1;
        }
        if lost_waker(task) {
            f.lost_wakers.push((task.id(), task.idle));
        }
    }
    let mut all_findings = Vec::new();
    for ((row, f), counts) in rows.iter_mut().zip(&facts).zip(&t.sites) {
        row.idle_over_threshold = f.idle_over;
        row.idle_threshold_seconds = round(f.threshold);
        row.oldest_idle_seconds = round(row.oldest_idle_seconds);
        row.busy_seconds = round(row.busy_seconds);
        all_findings.extend(findings::findings_for(f));
        // Growth: the agent's own indicator over the counts sampled at each update.
        let (front, back) = counts.history.as_slices();
        let samples = [front, back].concat();
        if let Some(growth) = taskscope::leaks::growth_finding(&f.site, &samples, settings) {
            row.live_trend_per_second = match growth.evidence {
                taskscope::model::Evidence::Growth {
                    rate_per_second, ..
                } => rate_per_second,
                _ => 0.0,
            };
            all_findings.push(growth);
        }
    }
    findings::sort_findings(&mut all_findings);
    rows.sort_by(|a, b| b.live.cmp(&a.live).then(a.site.cmp(&b.site)));
    extra.sort_by(|a, b| b.self_wakes.cmp(&a.self_wakes).then(a.site.cmp(&b.site)));

    let label = |task: &LiveTask<'_>| t.sites[task.entry.site as usize].label.clone();
    let task_rows: Vec<TaskRow> = tasks
        .iter()
        .take(MAX_LISTED_TASKS)
        .map(|task| TaskRow {
            id: task.id(),
            site: label(task),
            age_seconds: round(task.age),
            state: if task.running {
                TaskState::Running
            } else {
                TaskState::Idle
            },
            idle_seconds: round(task.idle),
            polls: task.entry.stats.polls,
        })
        .collect();
    let console_tasks: Vec<ConsoleTask> = tasks
        .iter()
        .take(MAX_LISTED_TASKS)
        .map(|task| ConsoleTask {
            id: task.id(),
            console_id: task.console_id,
            site: label(task),
            name: task.entry.name.as_deref().map(str::to_string),
            wakers: task.entry.stats.wakers,
            wakes: task.entry.stats.wakes,
            self_wakes: task.entry.stats.self_wakes,
        })
        .collect();

    let ids: HashMap<u64, (u64, String)> = tasks
        .iter()
        .map(|task| (task.console_id, (task.id(), label(task))))
        .collect();
    let locks = lock_rows(t, now, &ids);

    let snapshot = Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at_unix_ms: (now.max(0) / 1_000_000) as u64,
        uptime_seconds: 0.0,
        process: ProcessInfo {
            pid: 0,
            name: format!("console-subscriber at {url}"),
        },
        runtime: None,
        agent: AgentInfo {
            site_capacity: tracker::MAX_SITES as u64,
            sites_tracked: t.sites.len() as u64,
            overflow_spawned: t.overflow_spawned,
            caps: vec![
                CapUsage {
                    cap: "console_tasks".into(),
                    capacity: tracker::MAX_TASKS as u64,
                    used: t.tasks.len() as u64,
                    dropped: t.tasks_turned_away,
                },
                CapUsage {
                    cap: "sites".into(),
                    capacity: tracker::MAX_SITES as u64,
                    used: t.sites.len() as u64,
                    dropped: t.overflow_spawned,
                },
                CapUsage {
                    cap: "tokio_resources".into(),
                    capacity: tracker::MAX_LOCKS as u64,
                    used: t.locks.len() as u64,
                    dropped: t.locks_turned_away,
                },
            ],
            ..AgentInfo::default()
        },
        sites: rows,
        tasks_total: tasks.len() as u64,
        tasks: task_rows,
        findings: all_findings,
        baseline: None,
        polls_in_progress: Vec::new(),
        locks,
        // Whatever else the model has (and console does not say) keeps its default.
        ..Snapshot::default()
    };
    ConsoleReport {
        snapshot,
        console: ConsoleFacts {
            url: url.to_string(),
            updates: t.updates,
            sites: extra,
            tasks: console_tasks,
            dropped_events: [
                t.dropped_events.tasks,
                t.dropped_events.resources,
                t.dropped_events.async_ops,
            ],
            blocking_tasks: t.blocking_tasks,
            unavailable: UNAVAILABLE.iter().map(|s| s.to_string()).collect(),
        },
    }
}

/// One row per lock identity (kind and creation site), most waiters first. console does
/// not say who holds a lock, only that it is held: holders are counted in `more_holders`.
fn lock_rows(t: &Tracker, now: Nanos, tasks: &HashMap<u64, (u64, String)>) -> Vec<LockRow> {
    let mut rows: Vec<LockRow> = Vec::new();
    let mut index: HashMap<(LockKind, &str), usize> = HashMap::new();
    let mut instance_row: HashMap<u64, usize> = HashMap::new();
    let mut ids: Vec<&u64> = t.locks.keys().collect();
    ids.sort();
    for id in ids {
        let lock = &t.locks[id];
        let i = *index
            .entry((lock.kind, lock.created_at.as_str()))
            .or_insert_with(|| {
                rows.push(LockRow {
                    lock: lock.created_at.clone(),
                    kind: lock.kind,
                    created_at: lock.created_at.clone(),
                    source: LockSource::TokioTracing,
                    ..LockRow::default()
                });
                rows.len() - 1
            });
        instance_row.insert(*id, i);
        let row = &mut rows[i];
        row.instances += 1;
        row.more_holders += match lock.kind {
            LockKind::Mutex => u64::from(lock.locked),
            LockKind::RwLock => {
                if lock.write_locked {
                    1
                } else {
                    lock.readers
                }
            }
            _ => 0,
        };
        if let Some(p) = lock.permits {
            row.permits_available = Some(row.permits_available.unwrap_or(0) + p);
        }
    }
    let mut op_ids: Vec<&u64> = t.lock_ops.keys().collect();
    op_ids.sort();
    for op_id in op_ids {
        let op = &t.lock_ops[op_id];
        let Some(&i) = instance_row.get(&op.resource) else {
            continue;
        };
        let known = op.task.and_then(|c| tasks.get(&c));
        rows[i].waiters.push(LockWaiter {
            instance: op.resource,
            task: known.map(|k| k.0),
            task_site: known.map(|k| k.1.clone()),
            site: String::new(),
            mode: op.mode,
            permits: u32::from(op.mode != LockMode::Unknown),
            waiting_seconds: round(op.created.map_or(0.0, |c| seconds_between(c, now))),
        });
    }
    for row in &mut rows {
        row.waiters
            .sort_by(|a, b| b.waiting_seconds.total_cmp(&a.waiting_seconds));
        if row.waiters.len() > MAX_LOCK_PARTIES {
            row.more_waiters = (row.waiters.len() - MAX_LOCK_PARTIES) as u64;
            row.waiters.truncate(MAX_LOCK_PARTIES);
        }
    }
    rows.sort_by(|a, b| {
        (b.waiters.len() as u64 + b.more_waiters)
            .cmp(&(a.waiters.len() as u64 + a.more_waiters))
            .then(a.lock.cmp(&b.lock))
    });
    rows
}
