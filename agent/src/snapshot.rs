//! Building a [`Snapshot`] from the agent's state. All aggregation happens here, on the
//! reader's thread, never in the hooks.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use crate::Inner;
use crate::clock::Seconds;
use crate::model::{
    AgentInfo, ProcessInfo, RuntimeInfo, SCHEMA_VERSION, SiteRow, Snapshot, TaskRow, TaskState,
};

/// What to include in a snapshot beyond the per-site rows.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// Include up to this many live tasks, oldest first (0 = none).
    pub max_tasks: usize,
}

pub(crate) fn take(
    inner: &Inner,
    runtime: Option<&tokio::runtime::Handle>,
    options: &SnapshotOptions,
) -> Snapshot {
    let secs = inner.clock.calibrate();
    let sites = site_rows(inner, &secs);
    let tasks = task_rows(inner, options.max_tasks, &secs);
    let uptime = secs.since(0);
    Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at_unix_ms: crate::unix_ms(),
        uptime_seconds: micros(uptime),
        process: process_info(),
        runtime: runtime.map(runtime_info),
        agent: AgentInfo {
            started_unix_ms: inner.started_unix_ms,
            site_capacity: inner.sites.capacity() as u64,
            sites_tracked: inner.sites.len() as u64,
            overflow_spawned: inner.lanes.totals(inner.sites.overflow()).spawned,
            untracked_terminations: inner.untracked_terminations.load(Ordering::Relaxed),
        },
        tasks_total: sites.iter().map(|s| s.live).sum(),
        sites,
        tasks,
    }
}

fn site_rows(inner: &Inner, secs: &Seconds) -> Vec<SiteRow> {
    let overflow = inner.sites.overflow();
    let mut rows: Vec<SiteRow> = (0..inner.sites.len() as u32)
        .chain(std::iter::once(overflow))
        .filter_map(|site| {
            let t = inner.lanes.totals(site);
            if site == overflow && t.spawned == 0 {
                return None;
            }
            Some(SiteRow {
                site: inner.sites.label(site).to_string(),
                live: t.spawned.saturating_sub(t.completed),
                spawned: t.spawned,
                completed: t.completed,
                polls: t.polls,
                busy_seconds: micros(secs.of_ticks(t.busy)),
            })
        })
        .collect();
    rows.sort_by(|a, b| b.live.cmp(&a.live).then_with(|| a.site.cmp(&b.site)));
    rows
}

fn task_rows(inner: &Inner, max_tasks: usize, secs: &Seconds) -> Vec<TaskRow> {
    if max_tasks == 0 {
        return Vec::new();
    }
    let running: HashSet<u64> = inner.lanes.in_progress().iter().map(|p| p.task).collect();
    let mut all = inner.tasks.collect();
    all.sort_by_key(|(id, task)| (task.spawned, *id));
    all.truncate(max_tasks);
    all.into_iter()
        .map(|(id, task)| {
            let running = running.contains(&id);
            TaskRow {
                id,
                site: inner.sites.label(task.site).to_string(),
                age_seconds: micros(secs.since(task.spawned)),
                state: if running {
                    TaskState::Running
                } else {
                    TaskState::Idle
                },
                idle_seconds: if running {
                    0.0
                } else {
                    micros(secs.since(task.last_poll.max(task.spawned)))
                },
                polls: u64::from(task.polls),
            }
        })
        .collect()
}

/// Rounds seconds to the microsecond: the clocks behind them are no finer, and JSON
/// readers get `13.084` rather than `13.084000468000001`.
fn micros(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

fn runtime_info(handle: &tokio::runtime::Handle) -> RuntimeInfo {
    let m = handle.metrics();
    let workers = m.num_workers();
    RuntimeInfo {
        workers: workers as u64,
        alive_tasks: m.num_alive_tasks() as u64,
        global_queue_depth: m.global_queue_depth() as u64,
        worker_busy_seconds: (0..workers)
            .map(|w| micros(m.worker_total_busy_duration(w).as_secs_f64()))
            .collect(),
        blocking_threads: m.num_blocking_threads() as u64,
        idle_blocking_threads: m.num_idle_blocking_threads() as u64,
        blocking_queue_depth: m.blocking_queue_depth() as u64,
    }
}

fn process_info() -> ProcessInfo {
    ProcessInfo {
        pid: std::process::id(),
        name: std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    }
}
