//! Runtime starvation: workers stuck in one poll, the blocking pool saturated, how busy
//! each worker is, and how long a task waits to be polled (scheduling delay).
//!
//! The hooks only keep each thread's poll in progress (task and start, in its lane). The
//! rest happens on the sampler thread (busy ratios, blocking-pool saturation, the probe)
//! and on readers' threads (blocked workers), never on a worker: so it still works when
//! every worker is stuck.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::Inner;
use crate::clock::Seconds;
use crate::model::{DelayHistogram, Evidence, Finding, FindingKind, PollInProgress, Severity};

/// Default poll duration beyond which a worker counts as blocked.
pub const DEFAULT_BLOCKED_THRESHOLD: Duration = Duration::from_millis(100);

/// The blocking pool must stay saturated this long before it is a finding: a burst that
/// drains at once is normal.
pub const SATURATED_AFTER: Duration = Duration::from_secs(1);

/// Upper bounds of the scheduling-delay histogram's buckets, seconds.
pub const DELAY_BOUNDS: [f64; 9] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// No probe's site yet.
const NO_SITE: u32 = u32::MAX;

/// What the sampler learned about the runtime.
pub(crate) struct RuntimeState {
    pub(crate) blocked_threshold: Duration,
    /// The runtime's `max_blocking_threads`, when the user told the agent.
    pub(crate) max_blocking_threads: Option<usize>,
    samples: Mutex<Samples>,
    /// A probe is spawned and not yet polled: do not send another.
    probe_in_flight: AtomicBool,
    /// The probe's spawn site, kept out of the site rows: it is the agent's, not the
    /// service's.
    pub(crate) probe_site: AtomicU32,
}

#[derive(Default)]
struct Samples {
    /// Busy durations at the last sample, and when it was taken.
    prev_busy: Vec<Duration>,
    prev_at: Option<Instant>,
    busy_ratio: Vec<f64>,
    /// Seconds between the last two samples.
    interval: f64,
    saturated_since: Option<Instant>,
    delay: DelayHistogram,
    /// The largest delay seen since the last sample.
    delay_max_now: f64,
    /// When the probe in flight was spawned.
    probe_sent: Option<Instant>,
    /// CPUs the process may use, read by the sampler (cgroup files can change).
    cpu_quota: f64,
}

impl RuntimeState {
    pub(crate) fn new(blocked_threshold: Duration, max_blocking_threads: Option<usize>) -> Self {
        RuntimeState {
            blocked_threshold,
            max_blocking_threads,
            samples: Mutex::new(Samples {
                delay: DelayHistogram {
                    bounds: DELAY_BOUNDS.to_vec(),
                    counts: vec![0; DELAY_BOUNDS.len()],
                    ..DelayHistogram::default()
                },
                cpu_quota: cpu_quota(),
                ..Samples::default()
            }),
            probe_in_flight: AtomicBool::new(false),
            probe_site: AtomicU32::new(NO_SITE),
        }
    }

    /// The spawn site of the agent's probe task, once one was spawned.
    pub(crate) fn probe_site(&self) -> Option<u32> {
        let s = self.probe_site.load(Ordering::Relaxed);
        (s != NO_SITE).then_some(s)
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The instrumented runtime's handle, if the agent and its runtime are alive.
fn handle(inner: &Inner) -> Option<Handle> {
    inner.runtime.upgrade()?.get().cloned()
}

/// One sampler round: busy ratios, blocking-pool saturation, and a probe.
pub(crate) fn sample(inner: &Arc<Inner>) {
    let Some(handle) = handle(inner) else {
        return;
    };
    let m = handle.metrics();
    let now = Instant::now();
    let workers = m.num_workers();
    let busy: Vec<Duration> = (0..workers)
        .map(|w| m.worker_total_busy_duration(w))
        .collect();
    let saturated = m.num_idle_blocking_threads() == 0 && m.blocking_queue_depth() > 0;
    {
        let mut s = inner.starvation.samples();
        if let Some(prev_at) = s.prev_at {
            let dt = now.duration_since(prev_at).as_secs_f64();
            s.interval = dt;
            if dt > 0.0 && s.prev_busy.len() == workers {
                s.busy_ratio = busy
                    .iter()
                    .zip(&s.prev_busy)
                    .map(|(b, p)| (b.saturating_sub(*p).as_secs_f64() / dt).clamp(0.0, 1.0))
                    .collect();
            }
        }
        s.prev_busy = busy;
        s.prev_at = Some(now);
        s.cpu_quota = cpu_quota();
        s.saturated_since = match (saturated, s.saturated_since) {
            (true, None) => Some(now),
            (true, since) => since,
            (false, _) => None,
        };
        // The delay shown is the largest since the last round, or the wait of a probe
        // still not polled: while every worker is stuck it keeps growing.
        let waiting = s
            .probe_sent
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        s.delay.last_seconds = s.delay_max_now.max(waiting);
        s.delay_max_now = 0.0;
    }
    probe(inner, &handle);
}

/// Spawns a probe task into the runtime that records how long it waited for its first
/// poll. One at a time: while one waits, none is added (they would only pile up).
fn probe(inner: &Arc<Inner>, handle: &Handle) {
    if inner
        .starvation
        .probe_in_flight
        .swap(true, Ordering::AcqRel)
    {
        return;
    }
    let sent = Instant::now();
    inner.starvation.samples().probe_sent = Some(sent);
    let weak: Weak<Inner> = Arc::downgrade(inner);
    spawn_probe(inner, handle, async move {
        let delay = sent.elapsed().as_secs_f64();
        if let Some(inner) = weak.upgrade() {
            record_delay(&inner, delay);
        }
    });
}

/// Spawns the probe, having first marked its spawn site as the agent's, so that no reader
/// ever counts it as the service's. The site is this function's caller: tokio's spawn
/// location comes from there too, through `#[track_caller]`.
#[track_caller]
fn spawn_probe(
    inner: &Inner,
    handle: &Handle,
    probe: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if inner.starvation.probe_site().is_none() {
        let site = inner.sites.lookup_reserved(std::panic::Location::caller());
        inner.starvation.probe_site.store(site, Ordering::Relaxed);
    }
    drop(handle.spawn(probe));
}

fn record_delay(inner: &Inner, delay: f64) {
    let mut s = inner.starvation.samples();
    s.probe_sent = None;
    let h = &mut s.delay;
    for (bound, count) in h.bounds.iter().zip(h.counts.iter_mut()) {
        if delay <= *bound {
            *count += 1;
        }
    }
    h.count += 1;
    h.sum += delay;
    s.delay_max_now = s.delay_max_now.max(delay);
    drop(s);
    inner
        .starvation
        .probe_in_flight
        .store(false, Ordering::Release);
}

/// What a snapshot reports of the runtime's starvation state.
pub(crate) struct Starvation {
    pub(crate) polls: Vec<PollInProgress>,
    pub(crate) blocked_workers: u64,
    pub(crate) longest_poll: f64,
    pub(crate) busy_ratio: Vec<f64>,
    pub(crate) saturated_seconds: f64,
    pub(crate) delay: DelayHistogram,
    pub(crate) findings: Vec<Finding>,
    /// The blocked threshold, seconds.
    pub(crate) threshold: f64,
    pub(crate) cpu_quota: f64,
    pub(crate) max_blocking_threads: Option<u64>,
}

/// Reads the polls in progress (from any thread, even while every worker is stuck) and
/// the sampler's state, and makes the findings.
pub(crate) fn read(inner: &Inner, handle: Option<&Handle>, secs: &Seconds) -> Starvation {
    let threshold = inner.starvation.blocked_threshold.as_secs_f64();
    let workers_by_thread: HashMap<std::thread::ThreadId, u64> = handle
        .map(|h| {
            let m = h.metrics();
            (0..m.num_workers())
                .filter_map(|w| Some((m.worker_thread_id(w)?, w as u64)))
                .collect()
        })
        .unwrap_or_default();
    let mut polls: Vec<PollInProgress> = inner
        .lanes
        .in_progress()
        .into_iter()
        .map(|p| PollInProgress {
            worker: p.thread.and_then(|t| workers_by_thread.get(&t).copied()),
            task: p.task,
            site: inner.tasks.get(p.task).map_or_else(
                || "(unknown)".to_string(),
                |slot| inner.sites.label(slot.site).to_string(),
            ),
            seconds: crate::leaks::round(secs.since(p.started)),
        })
        .collect();
    polls.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));

    let mut findings = Vec::new();
    let blocked: Vec<&PollInProgress> = polls
        .iter()
        .filter(|p| p.seconds > threshold && p.worker.is_some())
        .collect();
    for p in &blocked {
        let worker = p
            .worker
            .map_or("a worker".to_string(), |w| format!("worker {w}"));
        findings.push(Finding {
            kind: FindingKind::BlockedWorker,
            severity: Severity::Critical,
            site: p.site.clone(),
            count: 1,
            summary: format!(
                "task {} spawned at {} has been in one poll for {:.1} s, blocking {worker}: \
                 no other task runs there until it yields",
                p.task, p.site, p.seconds
            ),
            fragment: "tasks blocking their worker".into(),
            evidence: Evidence::BlockedWorker {
                worker: p.worker,
                task: p.task,
                seconds: p.seconds,
                threshold_seconds: threshold,
            },
        });
    }
    let workers = handle.map_or(0, |h| h.metrics().num_workers() as u64);
    if workers > 0 && blocked.len() as u64 >= workers {
        let shortest = blocked
            .iter()
            .map(|p| p.seconds)
            .fold(f64::INFINITY, f64::min);
        let mut sites: Vec<&str> = blocked.iter().map(|p| p.site.as_str()).collect();
        sites.sort_unstable();
        sites.dedup();
        findings.push(Finding {
            kind: FindingKind::AllWorkersBlocked,
            severity: Severity::Critical,
            // The sites are in the sentence; the label stays one per runtime.
            site: "(runtime)".into(),
            count: blocked.len() as u64,
            summary: format!(
                "all {workers} workers have been blocked in a poll for at least {shortest:.1} \
                 s: the runtime runs nothing else (blocking: {})",
                sites.join(", ")
            ),
            fragment: "workers blocked".into(),
            evidence: Evidence::AllWorkersBlocked {
                workers,
                seconds: shortest,
            },
        });
    }

    let s = inner.starvation.samples();
    let saturated = s.saturated_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
    if saturated >= SATURATED_AFTER.as_secs_f64()
        && let Some(h) = handle
    {
        let m = h.metrics();
        let threads = m.num_blocking_threads() as u64;
        let queue = m.blocking_queue_depth() as u64;
        findings.push(Finding {
            kind: FindingKind::BlockingPoolSaturated,
            severity: Severity::Warning,
            site: "(blocking pool)".into(),
            count: queue,
            summary: format!(
                "the blocking pool has had all {threads} threads busy{} and jobs waiting for \
                 {saturated:.1} s ({queue} waiting now): spawn_blocking, tokio::fs and \
                 block_in_place calls queue behind them",
                inner
                    .starvation
                    .max_blocking_threads
                    .map_or(String::new(), |m| format!(" (max_blocking_threads = {m})"))
            ),
            fragment: "blocking jobs waiting for a thread".into(),
            evidence: Evidence::BlockingPoolSaturated {
                threads,
                queue_depth: queue,
                seconds: crate::leaks::round(saturated),
            },
        });
    }
    // tokio adds a worker's busy time when it stops processing, so a worker stuck in one
    // poll reads as idle until the poll ends: count the poll in progress instead.
    let mut busy_ratio = s.busy_ratio.clone();
    // Zeros until the sampler has two readings to compare.
    busy_ratio.resize(workers as usize, 0.0);
    let interval = match s.interval {
        i if i > 0.0 => i,
        _ => inner.leaks.settings.sample_interval().as_secs_f64(),
    };
    for p in &polls {
        if let Some(r) = p.worker.and_then(|w| busy_ratio.get_mut(w as usize)) {
            *r = r.max((p.seconds / interval).min(1.0));
        }
    }
    Starvation {
        blocked_workers: blocked.len() as u64,
        longest_poll: polls.first().map_or(0.0, |p| p.seconds),
        polls,
        busy_ratio,
        saturated_seconds: crate::leaks::round(saturated),
        delay: s.delay.clone(),
        findings,
        threshold,
        cpu_quota: s.cpu_quota,
        max_blocking_threads: inner.starvation.max_blocking_threads.map(|m| m as u64),
    }
}

/// CPUs this process may use: the cgroup v2 quota (`cpu.max`) or v1 (`cpu.cfs_quota_us`)
/// when one is set, else the CPUs it may run on.
pub(crate) fn cpu_quota() -> f64 {
    let cpus = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    cgroup_quota().map_or(cpus, |q| q.min(cpus))
}

fn cgroup_quota() -> Option<f64> {
    if let Ok(text) = std::fs::read_to_string("/sys/fs/cgroup/cpu.max") {
        return parse_cpu_max(&text);
    }
    let quota: f64 = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let period: f64 = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `cpu.max` is "QUOTA PERIOD" in microseconds, or "max PERIOD" without a quota.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("garbage"), None);
        assert!(cpu_quota() >= 0.01);
    }
}
