//! The Prometheus view of the agents: `/metrics` written straight from their snapshots.
//!
//! Nothing is kept between scrapes: each scrape takes a snapshot per runtime and writes the
//! exposition text from it in one pass, so the exporter holds no state that could drift
//! from the agent's. The body is the one the `prometheus` crate used to produce (families
//! sorted by name, series by label values, counters summed and gauges overwritten where a
//! snapshot repeats a label set); the tests compare both on generated snapshots.

#[path = "text_format.rs"]
mod text_format;

#[cfg(test)]
#[path = "metrics_legacy.rs"]
mod legacy;

use std::collections::HashMap;

use taskscope::Agent;
use taskscope::model::{
    CapUsage, DelayHistogram, FindingKind, LONG_POLL_BOUNDS_SECONDS, LockKind, LockRow,
    RuntimeInfo, SiteRow, Snapshot,
};

use text_format::{
    CONTENT_TYPE, MetricType, push_f64, push_header, push_i64, push_label, push_series, push_u64,
};

/// How series of one family that share a label set within one snapshot combine, and how
/// the value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Integer counter: repeated label sets add up.
    IntCounter,
    /// Float counter: repeated label sets add up.
    Counter,
    /// Integer gauge: the last repeated label set wins.
    IntGauge,
    /// Integer gauge whose repeated label sets add up (findings of one kind at one site).
    IntGaugeSum,
    /// Float gauge: the last repeated label set wins.
    Gauge,
    /// Histogram: every series is written as it is.
    Histogram,
}

impl Kind {
    fn metric_type(self) -> MetricType {
        match self {
            Kind::IntCounter | Kind::Counter => MetricType::Counter,
            Kind::IntGauge | Kind::IntGaugeSum | Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        }
    }
}

/// Where a family's series come from.
#[derive(Clone, Copy)]
enum Source {
    /// One series per site row.
    Site(fn(&SiteRow) -> Value<'_>),
    /// One series per site row: tasks of lost-waker findings at the site.
    LostWaker,
    /// One histogram per site row with every long-poll count.
    PollDuration,
    /// One series per finding.
    Findings,
    /// One series per snapshot, from the runtime's metrics (0 without them).
    Runtime(fn(&RuntimeInfo) -> Value<'_>),
    /// One series per worker.
    Worker(fn(&RuntimeInfo, usize) -> Option<Value<'_>>),
    /// The runtime's scheduling-delay histogram.
    SchedulingDelay,
    /// One series per snapshot.
    Agent(fn(&Snapshot) -> Value<'_>),
    /// One series per capped table.
    Cap(fn(&CapUsage) -> Value<'_>),
    /// One series per lock identity.
    Lock(fn(&LockRow) -> Value<'_>),
    /// One series per lock identity, labelled by its kind too.
    LockAcquisitions,
    /// One series per lock identity and holder site.
    LockDelay,
    /// One histogram per lock identity.
    LockHistogram(fn(&LockRow) -> &DelayHistogram),
}

/// One family: its name, help, label names (sorted, `runtime` left out: it is added to
/// every series of a named runtime) and where its series come from.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    source: Source,
}

/// A series' value, or a histogram's buckets.
#[derive(Clone, Copy)]
enum Value<'a> {
    U(u64),
    I(i64),
    F(f64),
    Hist(Hist<'a>),
}

/// A histogram as written: cumulative counts per bound, then `+Inf`, sum and count.
#[derive(Clone, Copy)]
struct Hist<'a> {
    bounds: &'a [f64],
    counts: Counts<'a>,
    count: u64,
    sum: f64,
}

#[derive(Clone, Copy)]
enum Counts<'a> {
    /// Cumulative counts as stored.
    Cumulative(&'a [u64]),
    /// `polls - long[i]`: a site's long-poll counts count polls of at least bound i.
    PollsBelow { polls: u64, long: &'a [u64] },
}

impl Counts<'_> {
    fn get(&self, i: usize) -> u64 {
        match self {
            Counts::Cumulative(c) => c[i],
            Counts::PollsBelow { polls, long } => polls.saturating_sub(long[i]),
        }
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn lock_kind(kind: LockKind) -> &'static str {
    match kind {
        LockKind::Mutex => "mutex",
        LockKind::RwLock => "rwlock",
        LockKind::Semaphore => "semaphore",
        LockKind::BlockingMutex => "blocking_mutex",
        LockKind::BlockingRwLock => "blocking_rwlock",
        LockKind::Unknown => "unknown",
    }
}

const SITE: &[&str] = &["site"];
const WORKER: &[&str] = &["worker"];
const CAP: &[&str] = &["cap"];
const LOCK: &[&str] = &["lock"];
const NONE: &[&str] = &[];

/// Every metric the exporter serves. The README's metrics table documents the same set.
const FAMILIES: &[Family] = &[
    Family {
        name: "taskscope_tasks_live",
        help: "Tasks spawned at this site that have not finished.",
        kind: Kind::IntGauge,
        labels: SITE,
        source: Source::Site(|r| Value::I(clamp_i64(r.live))),
    },
    Family {
        name: "taskscope_tasks_spawned_total",
        help: "Tasks spawned at this site.",
        kind: Kind::IntCounter,
        labels: SITE,
        source: Source::Site(|r| Value::U(r.spawned)),
    },
    Family {
        name: "taskscope_tasks_completed_total",
        help: "Tasks spawned at this site that finished (returned, panicked or were aborted).",
        kind: Kind::IntCounter,
        labels: SITE,
        source: Source::Site(|r| Value::U(r.completed)),
    },
    Family {
        name: "taskscope_task_polls_total",
        help: "Polls of tasks spawned at this site.",
        kind: Kind::IntCounter,
        labels: SITE,
        source: Source::Site(|r| Value::U(r.polls)),
    },
    Family {
        name: "taskscope_task_busy_seconds_total",
        help: "Seconds spent polling tasks spawned at this site.",
        kind: Kind::Counter,
        labels: SITE,
        source: Source::Site(|r| Value::F(r.busy_seconds.max(0.0))),
    },
    Family {
        name: "taskscope_runtime_workers",
        help: "Worker threads of the tokio runtime (its GOMAXPROCS).",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::I(clamp_i64(rt.workers))),
    },
    Family {
        name: "taskscope_runtime_alive_tasks",
        help: "Tasks the tokio runtime counts as alive.",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::I(clamp_i64(rt.alive_tasks))),
    },
    Family {
        name: "taskscope_runtime_global_queue_depth",
        help: "Tasks waiting in the runtime's global queue.",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::I(clamp_i64(rt.global_queue_depth))),
    },
    Family {
        name: "taskscope_runtime_worker_busy_seconds_total",
        help: "Seconds this worker spent busy polling tasks.",
        kind: Kind::Counter,
        labels: WORKER,
        source: Source::Worker(|rt, i| rt.worker_busy_seconds.get(i).map(|b| Value::F(b.max(0.0)))),
    },
    Family {
        name: "taskscope_runtime_blocking_threads",
        help: "Threads of the runtime's blocking pool, busy or idle.",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::I(clamp_i64(rt.blocking_threads))),
    },
    Family {
        name: "taskscope_runtime_blocking_idle_threads",
        help: "Idle threads of the runtime's blocking pool.",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::I(clamp_i64(rt.idle_blocking_threads))),
    },
    Family {
        name: "taskscope_runtime_blocking_queue_depth",
        help: "Blocking jobs waiting for a thread of the blocking pool.",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::I(clamp_i64(rt.blocking_queue_depth))),
    },
    Family {
        name: "taskscope_sites_tracked",
        help: "Distinct spawn sites the agent tracks.",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Agent(|s| Value::I(clamp_i64(s.agent.sites_tracked))),
    },
    Family {
        name: "taskscope_sites_capacity",
        help: "Most spawn sites the agent tracks before counting tasks under site=\"(overflow)\".",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Agent(|s| Value::I(clamp_i64(s.agent.site_capacity))),
    },
    Family {
        name: "taskscope_sites_overflow_tasks_total",
        help: "Tasks spawned at sites beyond the site cap.",
        kind: Kind::IntCounter,
        labels: NONE,
        source: Source::Agent(|s| Value::U(s.agent.overflow_spawned)),
    },
    Family {
        name: "taskscope_untracked_terminations_total",
        help: "Terminations without a spawn (spawn_blocking tasks, worker threads), kept out of site counts.",
        kind: Kind::IntCounter,
        labels: NONE,
        source: Source::Agent(|s| Value::U(s.agent.untracked_terminations)),
    },
    Family {
        name: "taskscope_task_panics_total",
        help: "Panics inside tasks spawned at this site (through the process's panic hook).",
        kind: Kind::IntCounter,
        labels: SITE,
        source: Source::Site(|r| Value::U(r.panicked)),
    },
    Family {
        name: "taskscope_cap_capacity",
        help: "Size of one of the agent's capped tables.",
        kind: Kind::IntGauge,
        labels: CAP,
        source: Source::Cap(|c| Value::I(clamp_i64(c.capacity))),
    },
    Family {
        name: "taskscope_cap_used",
        help: "Entries in use in one of the agent's capped tables.",
        kind: Kind::IntGauge,
        labels: CAP,
        source: Source::Cap(|c| Value::I(clamp_i64(c.used))),
    },
    Family {
        name: "taskscope_cap_dropped_total",
        help: "What a capped table turned away: tasks (sites, lost_waker_tasks), locks (lock_classes), resources (tokio_resources).",
        kind: Kind::IntCounter,
        labels: CAP,
        source: Source::Cap(|c| Value::U(c.dropped)),
    },
    Family {
        name: "taskscope_agent_start_time_seconds",
        help: "Unix time the agent started, in seconds.",
        kind: Kind::Gauge,
        labels: NONE,
        source: Source::Agent(|s| Value::F(s.agent.started_unix_ms as f64 / 1e3)),
    },
    Family {
        name: "taskscope_tasks_idle_over_threshold",
        help: "Live tasks spawned at this site not polled for longer than the site's idle threshold.",
        kind: Kind::IntGauge,
        labels: SITE,
        source: Source::Site(|r| Value::I(clamp_i64(r.idle_over_threshold))),
    },
    Family {
        name: "taskscope_task_idle_threshold_seconds",
        help: "Idle time beyond which a task of this site counts as idle too long (fixed, or derived from the site's own waits).",
        kind: Kind::Gauge,
        labels: SITE,
        source: Source::Site(|r| Value::F(r.idle_threshold_seconds)),
    },
    Family {
        name: "taskscope_task_oldest_idle_seconds",
        help: "Seconds since the longest-idle live task of this site was last polled.",
        kind: Kind::Gauge,
        labels: SITE,
        source: Source::Site(|r| Value::F(r.oldest_idle_seconds)),
    },
    Family {
        name: "taskscope_tasks_live_trend_per_second",
        help: "Least-squares trend of this site's live count over the agent's growth window, tasks per second.",
        kind: Kind::Gauge,
        labels: SITE,
        source: Source::Site(|r| Value::F(r.live_trend_per_second)),
    },
    Family {
        name: "taskscope_tasks_lost_waker",
        help: "Live, idle tasks of this site that hold no waker: nothing can wake them (needs the lost-waker layer).",
        kind: Kind::IntGauge,
        labels: SITE,
        source: Source::LostWaker,
    },
    Family {
        name: "taskscope_findings",
        help: "Active findings, valued by the tasks concerned; a series exists only while its finding holds.",
        kind: Kind::IntGaugeSum,
        labels: &["kind", "severity", "site"],
        source: Source::Findings,
    },
    Family {
        name: "taskscope_runtime_blocked_workers",
        help: "Workers in one poll for longer than the agent's blocked threshold now.",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::I(clamp_i64(rt.blocked_workers))),
    },
    Family {
        name: "taskscope_runtime_longest_poll_seconds",
        help: "Duration so far of the longest poll in progress (0 when no worker is polling).",
        kind: Kind::Gauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::F(rt.longest_poll_seconds)),
    },
    Family {
        name: "taskscope_runtime_blocked_threshold_seconds",
        help: "Poll duration beyond which a worker counts as blocked.",
        kind: Kind::Gauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::F(rt.blocked_threshold_seconds)),
    },
    Family {
        name: "taskscope_runtime_worker_busy_ratio",
        help: "Share of the agent's last sampling interval this worker spent busy (0 to 1).",
        kind: Kind::Gauge,
        labels: WORKER,
        source: Source::Worker(|rt, i| rt.worker_busy_ratio.get(i).map(|r| Value::F(*r))),
    },
    Family {
        name: "taskscope_runtime_worker_steals_total",
        help: "Tasks this worker stole from other workers.",
        kind: Kind::IntCounter,
        labels: WORKER,
        source: Source::Worker(|rt, i| rt.worker_steals.get(i).map(|n| Value::U(*n))),
    },
    Family {
        name: "taskscope_runtime_worker_parks_total",
        help: "Times this worker parked for lack of work.",
        kind: Kind::IntCounter,
        labels: WORKER,
        source: Source::Worker(|rt, i| rt.worker_parks.get(i).map(|n| Value::U(*n))),
    },
    Family {
        name: "taskscope_process_cpu_quota",
        help: "CPUs the process may use: its cgroup CPU quota if set, else the CPUs it may run on.",
        kind: Kind::Gauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::F(rt.cpu_quota)),
    },
    Family {
        name: "taskscope_runtime_blocking_saturated_seconds",
        help: "Seconds the blocking pool has had no idle thread and jobs waiting, without a break (0 when not).",
        kind: Kind::Gauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::F(rt.blocking_saturated_seconds)),
    },
    Family {
        name: "taskscope_runtime_scheduling_delay_max_seconds",
        help: "Largest scheduling delay of the agent's probe task over its last sampling interval, or the wait of a probe not yet polled.",
        kind: Kind::Gauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::F(rt.scheduling_delay.last_seconds)),
    },
    Family {
        name: "taskscope_runtime_blocking_max_threads",
        help: "The runtime's max_blocking_threads, as the service told the agent (0 when it did not).",
        kind: Kind::IntGauge,
        labels: NONE,
        source: Source::Runtime(|rt| Value::I(rt.max_blocking_threads.map_or(0, clamp_i64))),
    },
    Family {
        name: "taskscope_task_first_poll_delay_max_seconds",
        help: "Longest wait of a task spawned at this site from its spawn to its first poll (scheduling delay), since the agent started.",
        kind: Kind::Gauge,
        labels: SITE,
        source: Source::Site(|r| Value::F(r.first_poll_delay_max_seconds)),
    },
    Family {
        name: "taskscope_lock_acquisitions_total",
        help: "Acquisitions of locks of this identity (taskscope::sync).",
        kind: Kind::IntCounter,
        labels: &["kind", "lock"],
        source: Source::LockAcquisitions,
    },
    Family {
        name: "taskscope_lock_contended_total",
        help: "Acquisitions of locks of this identity that had to wait.",
        kind: Kind::IntCounter,
        labels: LOCK,
        source: Source::Lock(|l| Value::U(l.contended)),
    },
    Family {
        name: "taskscope_lock_holders",
        help: "Guards (or permit holders) of locks of this identity now.",
        kind: Kind::IntGauge,
        labels: LOCK,
        source: Source::Lock(|l| {
            Value::I(clamp_i64(
                (l.holders.len() as u64).saturating_add(l.more_holders),
            ))
        }),
    },
    Family {
        name: "taskscope_lock_waiters",
        help: "Tasks waiting for locks of this identity now.",
        kind: Kind::IntGauge,
        labels: LOCK,
        source: Source::Lock(|l| {
            Value::I(clamp_i64(
                (l.waiters.len() as u64).saturating_add(l.more_waiters),
            ))
        }),
    },
    Family {
        name: "taskscope_lock_wait_share_ratio",
        help: "Seconds spent waiting for locks of this identity per second, over the last 10 s.",
        kind: Kind::Gauge,
        labels: LOCK,
        source: Source::Lock(|l| Value::F(l.wait_share)),
    },
    Family {
        name: "taskscope_lock_delay_seconds_total",
        help: "Waiting time charged to the acquire site that held the lock meanwhile (Go's mutex profile).",
        kind: Kind::Counter,
        labels: &["holder_site", "lock"],
        source: Source::LockDelay,
    },
    Family {
        name: "taskscope_task_poll_duration_seconds",
        help: "Polls of tasks spawned at this site by duration (coarse clock, resolution 1-4 ms); the sum is the site's busy time, estimated from sampled polls.",
        kind: Kind::Histogram,
        labels: SITE,
        source: Source::PollDuration,
    },
    Family {
        name: "taskscope_lock_wait_seconds",
        help: "Waits of contended acquisitions of locks of this identity.",
        kind: Kind::Histogram,
        labels: LOCK,
        source: Source::LockHistogram(|l| &l.wait_seconds),
    },
    Family {
        name: "taskscope_lock_hold_seconds",
        help: "How long guards of locks of this identity were held (coarse clock, 1-4 ms resolution).",
        kind: Kind::Histogram,
        labels: LOCK,
        source: Source::LockHistogram(|l| &l.hold_seconds),
    },
    Family {
        name: "taskscope_runtime_scheduling_delay_seconds",
        help: "Scheduling delay: how long the agent's probe task, spawned once per sampling interval, waited for its first poll.",
        kind: Kind::Histogram,
        labels: NONE,
        source: Source::SchedulingDelay,
    },
];

/// Most labels of a series: a family's (at most 3) and `runtime`.
const MAX_LABELS: usize = 4;

/// One series before sorting: label values in label-name order, which runtime it is from.
struct Series<'a> {
    labels: [&'a str; MAX_LABELS],
    n: u8,
    runtime: u32,
    value: Value<'a>,
}

impl Series<'_> {
    fn labels(&self) -> &[&str] {
        &self.labels[..usize::from(self.n)]
    }
}

/// One runtime's snapshot, its name and what several families need from it.
pub(crate) struct Scrape<'a> {
    snapshot: &'a Snapshot,
    runtime: Option<&'a str>,
    /// Site rows in label order (sorted by site, stable): site families are produced in the
    /// order they are written, so sorting them again costs one pass.
    site_order: Vec<usize>,
    /// Tasks of lost-waker findings by site, if there are any.
    lost_waker: HashMap<&'a str, u64>,
}

impl<'a> Scrape<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot, runtime: Option<&'a str>) -> Self {
        let mut site_order: Vec<usize> = (0..snapshot.sites.len()).collect();
        site_order.sort_by(|a, b| snapshot.sites[*a].site.cmp(&snapshot.sites[*b].site));
        let mut lost_waker = HashMap::new();
        for f in &snapshot.findings {
            if f.kind == FindingKind::LostWaker {
                let n: &mut u64 = lost_waker.entry(f.site.as_str()).or_default();
                *n = n.wrapping_add(f.count);
            }
        }
        Scrape {
            snapshot,
            runtime,
            site_order,
            lost_waker,
        }
    }

    fn sites(&self) -> impl Iterator<Item = &'a SiteRow> + '_ {
        self.site_order.iter().map(|i| &self.snapshot.sites[*i])
    }
}

/// Collects one family's series from every runtime, each runtime's in the order produced.
struct Collector<'a, 'b> {
    out: &'b mut Vec<Series<'a>>,
    /// Where `runtime` goes among the family's sorted label names.
    runtime_at: usize,
}

impl<'a> Collector<'a, '_> {
    fn push(&mut self, runtime: (u32, Option<&'a str>), values: &[&'a str], value: Value<'a>) {
        let mut labels = [""; MAX_LABELS];
        let mut n = 0;
        for (i, v) in values.iter().enumerate() {
            if i == self.runtime_at
                && let Some(r) = runtime.1
            {
                labels[n] = r;
                n += 1;
            }
            labels[n] = v;
            n += 1;
        }
        if values.len() == self.runtime_at
            && let Some(r) = runtime.1
        {
            labels[n] = r;
            n += 1;
        }
        self.out.push(Series {
            labels,
            n: n as u8,
            runtime: runtime.0,
            value,
        });
    }
}

fn collect<'a>(
    family: &Family,
    scrapes: &[Scrape<'a>],
    order: &[usize],
    c: &mut Collector<'a, '_>,
) {
    for &idx in order {
        let scrape = &scrapes[idx];
        let snap = scrape.snapshot;
        let rt = (idx as u32, scrape.runtime);
        match family.source {
            Source::Site(f) => {
                for row in scrape.sites() {
                    c.push(rt, &[row.site.as_str()], f(row));
                }
            }
            Source::LostWaker => {
                for row in scrape.sites() {
                    let lost = scrape.lost_waker.get(row.site.as_str()).copied();
                    c.push(
                        rt,
                        &[row.site.as_str()],
                        Value::I(clamp_i64(lost.unwrap_or(0))),
                    );
                }
            }
            Source::PollDuration => {
                for row in scrape.sites() {
                    if row.long_polls.len() != LONG_POLL_BOUNDS_SECONDS.len() {
                        continue;
                    }
                    let hist = Hist {
                        bounds: &LONG_POLL_BOUNDS_SECONDS,
                        counts: Counts::PollsBelow {
                            polls: row.polls,
                            long: &row.long_polls,
                        },
                        count: row.polls,
                        sum: row.busy_seconds.max(0.0),
                    };
                    c.push(rt, &[row.site.as_str()], Value::Hist(hist));
                }
            }
            Source::Findings => {
                for f in &snap.findings {
                    let values = [f.kind.as_str(), f.severity.as_str(), f.site.as_str()];
                    c.push(rt, &values, Value::I(clamp_i64(f.count)));
                }
            }
            Source::Runtime(f) => {
                let value = match &snap.runtime {
                    Some(info) => f(info),
                    // The families exist without runtime metrics, at 0.
                    None => match family.kind {
                        Kind::Gauge | Kind::Counter => Value::F(0.0),
                        _ => Value::I(0),
                    },
                };
                c.push(rt, &[], value);
            }
            Source::Worker(f) => {
                if let Some(info) = &snap.runtime {
                    for i in 0.. {
                        let Some(value) = f(info, i) else { break };
                        c.push(rt, &[worker_label(i)], value);
                    }
                }
            }
            Source::SchedulingDelay => {
                if let Some(info) = &snap.runtime {
                    let d = &info.scheduling_delay;
                    if d.bounds.len() == d.counts.len() {
                        c.push(rt, &[], Value::Hist(delay_hist(d)));
                    }
                }
            }
            Source::Agent(f) => c.push(rt, &[], f(snap)),
            Source::Cap(f) => {
                for cap in &snap.agent.caps {
                    c.push(rt, &[cap.cap.as_str()], f(cap));
                }
            }
            Source::Lock(f) => {
                for l in &snap.locks {
                    c.push(rt, &[l.lock.as_str()], f(l));
                }
            }
            Source::LockAcquisitions => {
                for l in &snap.locks {
                    let values = [lock_kind(l.kind), l.lock.as_str()];
                    c.push(rt, &values, Value::U(l.acquisitions));
                }
            }
            Source::LockDelay => {
                for l in &snap.locks {
                    for d in &l.delay_by_holder_site {
                        let values = [d.site.as_str(), l.lock.as_str()];
                        c.push(rt, &values, Value::F(d.seconds.max(0.0)));
                    }
                }
            }
            Source::LockHistogram(pick) => {
                for l in &snap.locks {
                    let h = pick(l);
                    if h.bounds.len() == h.counts.len() {
                        c.push(rt, &[l.lock.as_str()], Value::Hist(delay_hist(h)));
                    }
                }
            }
        }
    }
}

fn delay_hist(d: &DelayHistogram) -> Hist<'_> {
    Hist {
        bounds: &d.bounds,
        counts: Counts::Cumulative(&d.counts),
        count: d.count,
        sum: d.sum,
    }
}

/// Worker labels "0", "1", ...: static up to 64 workers, leaked beyond (once per index,
/// bounded by the largest worker count seen).
fn worker_label(i: usize) -> &'static str {
    const SMALL: [&str; 64] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
        "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46",
        "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61",
        "62", "63",
    ];
    if let Some(s) = SMALL.get(i) {
        return s;
    }
    static MORE: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut more = MORE.lock().unwrap_or_else(|e| e.into_inner());
    while more.len() <= i - SMALL.len() {
        let label = (SMALL.len() + more.len()).to_string();
        more.push(Box::leak(label.into_boxed_str()));
    }
    more[i - SMALL.len()]
}

/// Combines a repeated label set of one runtime into the series before it.
fn merge<'a>(kind: Kind, into: &mut Value<'a>, next: Value<'a>) {
    match (kind, into, next) {
        (Kind::IntCounter, Value::U(a), Value::U(b)) => *a = a.wrapping_add(b),
        (Kind::Counter, Value::F(a), Value::F(b)) => *a += b,
        (Kind::IntGaugeSum, Value::I(a), Value::I(b)) => *a = a.wrapping_add(b),
        (_, into, next) => *into = next,
    }
}

/// Writes one family: sorted by label values (runtimes in the order given for equal label
/// sets), repeated label sets of one runtime combined, nothing for an empty family.
fn write_family<'a>(
    out: &mut String,
    labels: &mut String,
    family: &Family,
    series: &mut Vec<Series<'a>>,
) {
    if series.is_empty() {
        return;
    }
    if family.kind == Kind::Counter {
        // A counter starts at 0 and adds: -0.0 reads as 0.
        for s in series.iter_mut() {
            if let Value::F(v) = &mut s.value {
                *v += 0.0;
            }
        }
    }
    // Stable: equal label sets keep the order of the runtimes and of the snapshot's rows.
    series.sort_by(|a, b| a.n.cmp(&b.n).then_with(|| a.labels().cmp(b.labels())));
    if family.kind != Kind::Histogram {
        series.dedup_by(|next, prev| {
            let same = prev.runtime == next.runtime && prev.labels() == next.labels();
            if same {
                merge(family.kind, &mut prev.value, next.value);
            }
            same
        });
    }
    push_header(out, family.name, family.help, family.kind.metric_type());
    // Label names of a series without and with `runtime`, sorted.
    let plain = family.labels;
    let mut named = plain.to_vec();
    named.insert(plain.partition_point(|n| *n < "runtime"), "runtime");
    for s in series.iter() {
        labels.clear();
        let names = if usize::from(s.n) > plain.len() {
            &named[..]
        } else {
            plain
        };
        for (name, value) in names.iter().zip(s.labels()) {
            push_label(labels, name, value);
        }
        write_value(out, family.name, labels, s.value);
    }
}

fn write_value(out: &mut String, name: &str, labels: &str, value: Value<'_>) {
    match value {
        Value::U(v) => {
            push_series(out, name, "", labels, "");
            push_u64(out, v);
        }
        Value::I(v) => {
            push_series(out, name, "", labels, "");
            push_i64(out, v);
        }
        Value::F(v) => {
            push_series(out, name, "", labels, "");
            push_f64(out, v);
        }
        Value::Hist(h) => {
            let mut le = String::new();
            let mut inf_seen = false;
            for (i, bound) in h.bounds.iter().enumerate() {
                le.clear();
                push_f64(&mut le, *bound);
                push_series(out, name, "_bucket", labels, &le);
                push_u64(out, h.counts.get(i));
                out.push('\n');
                inf_seen |= bound.is_sign_positive() && bound.is_infinite();
            }
            if !inf_seen {
                push_series(out, name, "_bucket", labels, "+Inf");
                push_u64(out, h.count);
                out.push('\n');
            }
            push_series(out, name, "_sum", labels, "");
            push_f64(out, h.sum);
            out.push('\n');
            push_series(out, name, "_count", labels, "");
            push_u64(out, h.count);
        }
    }
    out.push('\n');
}

/// A guess at the body's size, so that it is written without regrowing: per site ~20
/// lines of name, labels and value, per lock ~40.
fn estimate(scrapes: &[Scrape<'_>]) -> usize {
    let per_site_lines = 14 + LONG_POLL_BOUNDS_SECONDS.len() + 3;
    let mut n = 16 * 1024;
    for s in scrapes {
        let rt = s.runtime.map_or(0, |r| r.len() + 12);
        let site_bytes: usize = s.snapshot.sites.iter().map(|r| r.site.len()).sum();
        n += (site_bytes + s.snapshot.sites.len() * (64 + rt)) * per_site_lines;
        let lock_bytes: usize = s.snapshot.locks.iter().map(|l| l.lock.len()).sum();
        n += (lock_bytes + s.snapshot.locks.len() * (64 + rt)) * 40;
        n += s.snapshot.findings.len() * (160 + rt);
    }
    n
}

/// The `/metrics` body for these runtimes' snapshots: families merged by name across
/// runtimes, each series labelled `runtime="NAME"` when its runtime is named.
pub(crate) fn render(scrapes: &[Scrape<'_>]) -> String {
    let mut out = String::with_capacity(estimate(scrapes));
    // Runtimes by label: unnamed first (fewer labels), then by name; stable.
    let mut order: Vec<usize> = (0..scrapes.len()).collect();
    order.sort_by(|a, b| scrapes[*a].runtime.cmp(&scrapes[*b].runtime));
    let mut families: Vec<&Family> = FAMILIES.iter().collect();
    families.sort_by_key(|f| f.name);
    let mut series = Vec::new();
    let mut labels = String::new();
    for family in families {
        series.clear();
        let runtime_at = family.labels.partition_point(|n| *n < "runtime");
        let mut c = Collector {
            out: &mut series,
            runtime_at,
        };
        // Series whose first label is `runtime` come out sorted when runtimes are taken in
        // label order; others are sorted anyway, so the order of runtimes only has to
        // keep equal label sets in the order of `scrapes`, which a stable sort does.
        if runtime_at == 0 {
            collect(family, scrapes, &order, &mut c);
        } else {
            let given: Vec<usize> = (0..scrapes.len()).collect();
            collect(family, scrapes, &given, &mut c);
        }
        write_family(&mut out, &mut labels, family, &mut series);
    }
    out
}

/// The runtimes `/metrics` serves.
pub(crate) struct Registry {
    agents: Vec<Agent>,
}

/// The runtimes `/metrics` serves, in the order given (the first is the default one).
pub(crate) fn registry(agents: Vec<Agent>) -> Registry {
    Registry { agents }
}

/// Takes a snapshot of every runtime and writes them in the Prometheus text format;
/// returns the body and its content type.
pub(crate) fn encode(registry: &Registry) -> (String, &'static str) {
    let snapshots: Vec<Snapshot> = registry.agents.iter().map(Agent::snapshot).collect();
    let scrapes: Vec<Scrape<'_>> = snapshots
        .iter()
        .zip(&registry.agents)
        .map(|(snap, agent)| Scrape::new(snap, agent.runtime_name()))
        .collect();
    (render(&scrapes), CONTENT_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope::model::{
        AgentInfo, CapUsage, Finding, HolderDelay, LockHolder, LockWaiter, Severity,
    };

    /// xorshift64*: a fixed sequence, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }
        fn count(&mut self) -> u64 {
            match self.below(6) {
                0 => 0,
                1 => self.next(),
                2 => u64::MAX - self.below(3),
                3 => (1 << 53) + self.below(3),
                _ => self.below(1000),
            }
        }
        fn float(&mut self) -> f64 {
            match self.below(12) {
                0 => 0.0,
                1 => -0.0,
                2 => f64::NAN,
                3 => f64::INFINITY,
                4 => f64::NEG_INFINITY,
                5 => -3.25,
                6 => 1e21,
                7 => 1e-7,
                8 => self.below(1 << 40) as f64 * 1e3,
                _ => self.below(1_000_000) as f64 / 997.0,
            }
        }
        fn floats(&mut self, n: usize) -> Vec<f64> {
            (0..n).map(|_| self.float()).collect()
        }
        fn counts(&mut self, n: usize) -> Vec<u64> {
            (0..n).map(|_| self.count()).collect()
        }
        fn histogram(&mut self) -> DelayHistogram {
            let mut bounds = vec![0.0001, 0.001, 0.5, 1.0, 10.0];
            if self.below(4) == 0 {
                bounds.push(f64::INFINITY);
            }
            let n = if self.below(6) == 0 {
                bounds.len() - 1
            } else {
                bounds.len()
            };
            DelayHistogram {
                counts: (0..n).map(|_| self.below(1 << 20)).collect(),
                bounds,
                count: self.count(),
                sum: self.float(),
                last_seconds: self.float(),
            }
        }
    }

    /// Label values that need escaping, sort differently once escaped, repeat (so that
    /// series of one runtime combine), or are not ASCII.
    const SITES: &[&str] = &[
        "src/main.rs:10:5",
        "src/main.rs:9:5",
        "src/a \"quoted\".rs:1:1",
        "src/back\\slash.rs:2:2",
        "src/new\nline.rs:3:3",
        "src/zürich.rs:4:4",
        "(overflow)",
        "",
    ];
    /// Lock labels, each with one `)`, at its end. The prometheus crate told series apart
    /// by a hash of their label values run together, so `lock="a",holder_site="bc"` and
    /// `lock="ab",holder_site="c"` were one series to it; such pairs are kept out of the
    /// comparison (real lock labels end in `)` or a line:column, sites start with a path).
    const LOCKS: &[&str] = &[
        "src/main.rs:10:5)",
        "cache \"hot\" (src/a.rs:1:1)",
        "back\\slash\n (src/b.rs:2:2)",
        "zürich (src/c.rs:3:3)",
        "(overflow)",
    ];
    const RUNTIMES: &[&[Option<&str>]] = &[
        &[None],
        &[Some("web")],
        &[Some("web"), Some("io")],
        &[Some("b\"q\\\n"), Some("a"), Some("b\"q\\\n")],
        &[None, Some("x")],
        &[Some("x"), None, None],
    ];

    fn snapshot(rng: &mut Rng) -> Snapshot {
        let mut snap = Snapshot::default();
        for _ in 0..rng.below(12) {
            let long_polls = if rng.below(8) == 0 {
                rng.counts(2)
            } else {
                rng.counts(LONG_POLL_BOUNDS_SECONDS.len())
            };
            snap.sites.push(SiteRow {
                site: rng.pick(SITES).to_string(),
                live: rng.count(),
                spawned: rng.count(),
                completed: rng.count(),
                panicked: rng.count(),
                polls: rng.count(),
                busy_seconds: rng.float(),
                idle_over_threshold: rng.count(),
                idle_threshold_seconds: rng.float(),
                oldest_idle_seconds: rng.float(),
                live_trend_per_second: rng.float(),
                long_polls,
                first_poll_delay_max_seconds: rng.float(),
                ..Default::default()
            });
        }
        let kinds = [
            FindingKind::IdleTooLong,
            FindingKind::LostWaker,
            FindingKind::Growth,
            FindingKind::HotLock,
        ];
        let severities = [Severity::Info, Severity::Warning, Severity::Critical];
        for _ in 0..rng.below(6) {
            snap.findings.push(Finding {
                kind: *rng.pick(&kinds),
                severity: *rng.pick(&severities),
                site: rng.pick(SITES).to_string(),
                // Small: the old encoding sums lost-waker counts with a checked sum.
                count: rng.below(1 << 40),
                ..Default::default()
            });
        }
        if rng.below(5) != 0 {
            let workers = rng.below(4) as usize;
            // Sometimes one more than the other per-worker vectors.
            let parks = workers + usize::from(rng.below(3) == 0);
            snap.runtime = Some(RuntimeInfo {
                workers: rng.count(),
                alive_tasks: rng.count(),
                global_queue_depth: rng.count(),
                worker_busy_seconds: rng.floats(workers),
                blocking_threads: rng.count(),
                idle_blocking_threads: rng.count(),
                blocking_queue_depth: rng.count(),
                max_blocking_threads: (rng.below(2) == 0).then(|| rng.count()),
                blocking_saturated_seconds: rng.float(),
                worker_busy_ratio: rng.floats(workers),
                worker_steals: rng.counts(workers),
                worker_parks: rng.counts(parks),
                blocked_workers: rng.count(),
                longest_poll_seconds: rng.float(),
                blocked_threshold_seconds: rng.float(),
                cpu_quota: rng.float(),
                scheduling_delay: rng.histogram(),
            });
        }
        let lock_kinds = [
            LockKind::Mutex,
            LockKind::RwLock,
            LockKind::Semaphore,
            LockKind::BlockingMutex,
            LockKind::BlockingRwLock,
            LockKind::Unknown,
        ];
        for _ in 0..rng.below(5) {
            let delay = (0..rng.below(3))
                .map(|_| HolderDelay {
                    site: rng.pick(SITES).to_string(),
                    seconds: rng.float(),
                    contentions: rng.count(),
                })
                .collect();
            snap.locks.push(LockRow {
                lock: rng.pick(LOCKS).to_string(),
                kind: *rng.pick(&lock_kinds),
                acquisitions: rng.count(),
                contended: rng.count(),
                wait_seconds: rng.histogram(),
                hold_seconds: rng.histogram(),
                wait_share: rng.float(),
                delay_by_holder_site: delay,
                holders: vec![LockHolder::default(); rng.below(3) as usize],
                waiters: vec![LockWaiter::default(); rng.below(3) as usize],
                more_holders: rng.below(5),
                more_waiters: if rng.below(10) == 0 { u64::MAX - 3 } else { 0 },
                ..Default::default()
            });
        }
        let caps = ["sites", "lock_classes", "tokio_resources", "sites"];
        snap.agent = AgentInfo {
            started_unix_ms: rng.count(),
            site_capacity: rng.count(),
            sites_tracked: rng.count(),
            overflow_spawned: rng.count(),
            untracked_terminations: rng.count(),
            caps: (0..rng.below(4))
                .map(|_| CapUsage {
                    cap: rng.pick(&caps).to_string(),
                    capacity: rng.count(),
                    used: rng.count(),
                    dropped: rng.count(),
                })
                .collect(),
            ..Default::default()
        };
        snap
    }

    fn assert_same(snaps: &[(&Snapshot, Option<&str>)], case: &str) {
        let old = legacy::encode(snaps);
        let scrapes: Vec<Scrape<'_>> = snaps.iter().map(|(s, n)| Scrape::new(s, *n)).collect();
        let new = render(&scrapes);
        if old != new {
            let line = old
                .lines()
                .zip(new.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(old.lines().count().min(new.lines().count()));
            panic!(
                "{case}: bodies differ from line {}\nold: {:?}\nnew: {:?}",
                line + 1,
                old.lines().nth(line),
                new.lines().nth(line)
            );
        }
    }

    #[test]
    fn same_body_as_the_prometheus_crate_on_generated_snapshots() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..3000 {
            let names = rng.pick(RUNTIMES);
            let snaps: Vec<Snapshot> = names.iter().map(|_| snapshot(&mut rng)).collect();
            let pairs: Vec<(&Snapshot, Option<&str>)> =
                snaps.iter().zip(names.iter().copied()).collect();
            assert_same(&pairs, &format!("case {case}"));
        }
    }

    #[test]
    fn empty_snapshot_has_the_scalar_families_only() {
        let snap = Snapshot::default();
        assert_same(&[(&snap, None)], "empty");
        let body = render(&[Scrape::new(&snap, None)]);
        assert!(
            body.contains("# TYPE taskscope_runtime_workers gauge\ntaskscope_runtime_workers 0\n")
        );
        assert!(!body.contains("taskscope_tasks_live"));
        assert!(!body.contains("_bucket"));
    }

    #[test]
    fn histogram_lines_of_a_named_runtime() {
        let snap = Snapshot {
            sites: vec![SiteRow {
                site: "src/a.rs:1:2".into(),
                polls: 10,
                busy_seconds: 0.5,
                long_polls: vec![4, 2, 1, 0],
                ..Default::default()
            }],
            ..Default::default()
        };
        let body = render(&[Scrape::new(&snap, Some("web"))]);
        let want = "\
# TYPE taskscope_task_poll_duration_seconds histogram
taskscope_task_poll_duration_seconds_bucket{runtime=\"web\",site=\"src/a.rs:1:2\",le=\"0.01\"} 6
taskscope_task_poll_duration_seconds_bucket{runtime=\"web\",site=\"src/a.rs:1:2\",le=\"0.1\"} 8
taskscope_task_poll_duration_seconds_bucket{runtime=\"web\",site=\"src/a.rs:1:2\",le=\"1\"} 9
taskscope_task_poll_duration_seconds_bucket{runtime=\"web\",site=\"src/a.rs:1:2\",le=\"10\"} 10
taskscope_task_poll_duration_seconds_bucket{runtime=\"web\",site=\"src/a.rs:1:2\",le=\"+Inf\"} 10
taskscope_task_poll_duration_seconds_sum{runtime=\"web\",site=\"src/a.rs:1:2\"} 0.5
taskscope_task_poll_duration_seconds_count{runtime=\"web\",site=\"src/a.rs:1:2\"} 10
";
        assert!(body.contains(want), "{body}");
    }

    #[test]
    fn same_body_as_the_prometheus_crate_for_a_live_agent() {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2).enable_all();
        let agent = Agent::builder()
            .runtime_name("web")
            .idle_threshold(std::time::Duration::from_millis(1))
            .install(&mut builder);
        let rt = builder.build().unwrap();
        let lock = std::sync::Arc::new(taskscope::sync::Mutex::named(0u32, "a \"b\"\n"));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..20 {
                let lock = lock.clone();
                tasks.push(tokio::spawn(async move {
                    let mut g = lock.lock().await;
                    tokio::task::yield_now().await;
                    *g += 1;
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(rx);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let snap = agent.snapshot();
        assert!(!snap.sites.is_empty() && !snap.locks.is_empty());
        assert_same(&[(&snap, Some("web")), (&snap, Some("io"))], "live agent");
        assert_same(&[(&snap, None)], "live agent, unnamed");
    }
}
