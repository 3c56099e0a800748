//! Building a [`Snapshot`] from the agent's state. All aggregation happens here, on the
//! reader's thread, never in the hooks.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use crate::Inner;
use crate::clock::Seconds;
use crate::leaks;
use crate::model::{
    AgentInfo, CapUsage, Finding, ProcessInfo, RuntimeInfo, SCHEMA_VERSION, SiteRow, Snapshot,
    TaskRow, TaskState,
};
use crate::starvation::{self, Starvation};
use crate::tasks::TaskSlot;

/// What to include in a snapshot beyond the per-site rows.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// Include up to this many live tasks, oldest first (0 = none).
    pub max_tasks: usize,
    /// List only the tasks spawned at this site (as in [`SiteRow::site`]); the site rows
    /// and findings stay whole.
    pub site: Option<String>,
}

pub(crate) fn take(
    inner: &Inner,
    runtime: &std::sync::OnceLock<tokio::runtime::Handle>,
    options: &SnapshotOptions,
) -> Snapshot {
    let secs = inner.clock.calibrate();
    let running: HashSet<u64> = inner.lanes.in_progress().iter().map(|p| p.task).collect();
    let mut all = inner.tasks.collect();
    // The agent's own probe task is not the service's.
    let probe = inner.starvation.probe_site();
    all.retain(|(_, t)| Some(t.site) != probe);
    let (sites, mut findings) = site_rows(inner, &all, &running, &secs);
    // The runtime's handle is stored before the first poll is counted, so reading it after
    // the counters means a snapshot with polls always has the runtime's facts (read before,
    // a snapshot taken during the first polls could show polls and no runtime).
    let runtime = runtime.get();
    let starvation = starvation::read(inner, runtime, &secs);
    findings.extend(starvation.findings.iter().cloned());
    let (locks, lock_findings) = crate::locks::read(inner, &running, &secs);
    findings.extend(lock_findings);
    leaks::sort_findings(&mut findings);
    let tasks = task_rows(inner, all, &running, options, &secs);
    let uptime = secs.since(0);
    Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at_unix_ms: crate::unix_ms(),
        uptime_seconds: micros(uptime),
        process: process_info(),
        runtime: runtime.map(|h| runtime_info(h, &starvation)),
        agent: AgentInfo {
            started_unix_ms: inner.started_unix_ms,
            site_capacity: inner.sites.capacity() as u64,
            sites_tracked: inner.sites.tracked() as u64,
            overflow_spawned: inner.lanes.totals(inner.sites.overflow()).spawned,
            untracked_terminations: inner.untracked_terminations.load(Ordering::Relaxed),
            panic_counting: inner.panic_counting.load(Ordering::Relaxed),
            caps: caps(inner),
            runtime_name: inner.runtime_name.clone(),
        },
        tasks_total: sites.iter().map(|s| s.live).sum(),
        sites,
        tasks,
        findings,
        baseline: leaks::baseline_diff(inner, &secs),
        polls_in_progress: starvation.polls,
        locks,
        runtimes: Vec::new(),
    }
}

/// Every cap of the agent's tables, with what it turned away.
fn caps(inner: &Inner) -> Vec<CapUsage> {
    let (lock_classes, lock_overflow) = crate::sync::state::registry().class_usage();
    let mut caps = vec![
        CapUsage {
            cap: "sites".to_string(),
            capacity: inner.sites.capacity() as u64,
            used: inner.sites.tracked() as u64,
            dropped: inner.lanes.totals(inner.sites.overflow()).spawned,
        },
        CapUsage {
            cap: "lock_classes".to_string(),
            capacity: crate::sync::state::MAX_LOCK_CLASSES as u64,
            used: lock_classes as u64,
            dropped: lock_overflow,
        },
    ];
    if let Some(wakers) = inner.wakers.get() {
        caps.push(wakers.usage());
    }
    #[cfg(feature = "tokio-resources")]
    if let Some(table) = inner.tokio_resources.get() {
        caps.push(table.usage());
    }
    caps
}

/// Seconds a task has been idle: since its last poll started, or since spawn if never
/// polled; 0 while running.
fn idle_of(task: &TaskSlot, running: bool, secs: &Seconds) -> f64 {
    if running {
        0.0
    } else {
        secs.since(task.last_poll.max(task.spawned))
    }
}

/// Per-site rows and the leak indicators' findings. One pass over the live tasks gives
/// each site's idle counts; the sampled history gives its trend.
fn site_rows(
    inner: &Inner,
    all: &[(u64, TaskSlot)],
    running: &HashSet<u64>,
    secs: &Seconds,
) -> (Vec<SiteRow>, Vec<Finding>) {
    let settings = &inner.leaks.settings;
    let overflow = inner.sites.overflow();
    let slots = overflow as usize + 1;
    let totals: Vec<_> = (0..slots as u32).map(|s| inner.lanes.totals(s)).collect();
    let thresholds: Vec<(f64, bool)> = totals
        .iter()
        .map(|t| settings.idle_threshold(t.longest_wait as f64 * 1e-9))
        .collect();
    // Per site: tasks idle over the threshold, oldest idle.
    let mut idle_over = vec![0u64; slots];
    let mut oldest = vec![0f64; slots];
    // Lost-waker candidates: live, idle, and the waker source says no waker is left.
    let zero_wakers: HashSet<u64> = inner
        .wakers
        .get()
        .map(|w| w.zero_waker_tasks().into_iter().collect())
        .unwrap_or_default();
    let mut lost: Vec<Vec<(u64, f64)>> = vec![Vec::new(); slots];
    for (id, task) in all {
        let site = (task.site as usize).min(slots - 1);
        let is_running = running.contains(id);
        let idle = idle_of(task, is_running, secs);
        if !is_running && idle > thresholds[site].0 {
            idle_over[site] += 1;
        }
        oldest[site] = oldest[site].max(idle);
        if !is_running && idle >= leaks::lost_waker_min_idle() && zero_wakers.contains(id) {
            lost[site].push((*id, idle));
        }
    }
    let trends = leaks::trends(inner);
    let mut findings = Vec::new();
    let mut rows = Vec::new();
    let probe = inner.starvation.probe_site();
    for site in 0..slots {
        if probe == Some(site as u32) {
            continue;
        }
        let t = &totals[site];
        if site == overflow as usize && t.spawned == 0 {
            continue;
        }
        if site != overflow as usize && site >= inner.sites.len() {
            continue;
        }
        let label = inner.sites.label(site as u32);
        let live = t.spawned.saturating_sub(t.completed);
        let trend = trends.get(site).copied().flatten();
        let longest_wait = t.longest_wait as f64 * 1e-9;
        let (threshold, derived) = thresholds[site];
        let facts = leaks::SiteFacts {
            site: label,
            live,
            completed: t.completed,
            idle_over: idle_over[site],
            threshold,
            derived,
            longest_wait,
            oldest_idle: oldest[site],
            trend,
            lost_wakers: std::mem::take(&mut lost[site]),
        };
        findings.extend(leaks::findings_for(&facts, settings));
        rows.push(SiteRow {
            site: label.to_string(),
            live,
            spawned: t.spawned,
            completed: t.completed,
            panicked: inner.panics.get(site as u32),
            polls: t.polls,
            busy_seconds: micros(secs.of_ticks(t.busy) + t.long_busy as f64 * 1e-9),
            idle_over_threshold: idle_over[site],
            idle_threshold_seconds: micros(threshold),
            longest_wait_seconds: micros(longest_wait),
            oldest_idle_seconds: micros(oldest[site]),
            live_trend_per_second: micros(trend.map_or(0.0, |t| t.slope)),
            long_polls: t.long_polls.to_vec(),
            first_poll_delay_max_seconds: micros(t.first_poll_delay as f64 * 1e-9),
        });
    }
    rows.sort_by(|a, b| b.live.cmp(&a.live).then_with(|| a.site.cmp(&b.site)));
    leaks::sort_findings(&mut findings);
    (rows, findings)
}

fn task_rows(
    inner: &Inner,
    mut all: Vec<(u64, TaskSlot)>,
    running: &HashSet<u64>,
    options: &SnapshotOptions,
    secs: &Seconds,
) -> Vec<TaskRow> {
    if options.max_tasks == 0 {
        return Vec::new();
    }
    if let Some(site) = &options.site {
        all.retain(|(_, task)| inner.sites.label(task.site) == site.as_str());
    }
    all.sort_by_key(|(id, task)| (task.spawned, *id));
    all.truncate(options.max_tasks);
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
                idle_seconds: micros(idle_of(&task, running, secs)),
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

fn runtime_info(handle: &tokio::runtime::Handle, st: &Starvation) -> RuntimeInfo {
    let m = handle.metrics();
    let workers = m.num_workers();
    RuntimeInfo {
        blocking_saturated_seconds: st.saturated_seconds,
        max_blocking_threads: st.max_blocking_threads,
        worker_busy_ratio: st.busy_ratio.iter().map(|r| micros(*r)).collect(),
        worker_steals: (0..workers).map(|w| m.worker_steal_count(w)).collect(),
        worker_parks: (0..workers).map(|w| m.worker_park_count(w)).collect(),
        blocked_workers: st.blocked_workers,
        longest_poll_seconds: st.longest_poll,
        blocked_threshold_seconds: st.threshold,
        cpu_quota: st.cpu_quota,
        scheduling_delay: st.delay.clone(),
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
