//! The exporter's `/metrics` encoding as it was through the `prometheus` crate (filling
//! `MetricVec`s per scrape, `Registry::gather`, `TextEncoder`), kept for tests only: the
//! direct writer in `metrics.rs` must give the same text for any snapshot.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, Metric, MetricFamily};
use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use taskscope::model::{FindingKind, LONG_POLL_BOUNDS_SECONDS, LockKind, LockRow, Snapshot};

/// Every metric the exporter serves. The README's metrics table documents the same set.
struct Families {
    tasks_live: IntGaugeVec,
    tasks_spawned: IntCounterVec,
    tasks_completed: IntCounterVec,
    task_polls: IntCounterVec,
    task_busy: CounterVec,
    workers: IntGauge,
    alive_tasks: IntGauge,
    global_queue_depth: IntGauge,
    worker_busy: CounterVec,
    blocking_threads: IntGauge,
    idle_blocking_threads: IntGauge,
    blocking_queue_depth: IntGauge,
    sites_tracked: IntGauge,
    sites_capacity: IntGauge,
    overflow_spawned: IntCounter,
    untracked_terminations: IntCounter,
    task_panics: IntCounterVec,
    cap_capacity: IntGaugeVec,
    cap_used: IntGaugeVec,
    cap_dropped: IntCounterVec,
    start_time: Gauge,
    idle_over: IntGaugeVec,
    idle_threshold: GaugeVec,
    oldest_idle: GaugeVec,
    live_trend: GaugeVec,
    lost_waker: IntGaugeVec,
    findings: IntGaugeVec,
    blocked_workers: IntGauge,
    longest_poll: Gauge,
    blocked_threshold: Gauge,
    worker_busy_ratio: GaugeVec,
    worker_steals: IntCounterVec,
    worker_parks: IntCounterVec,
    cpu_quota: Gauge,
    blocking_saturated: Gauge,
    scheduling_delay_max: Gauge,
    blocking_max: IntGauge,
    first_poll_delay: GaugeVec,
    lock_acquisitions: IntCounterVec,
    lock_contended: IntCounterVec,
    lock_holders: IntGaugeVec,
    lock_waiters: IntGaugeVec,
    lock_wait_share: GaugeVec,
    lock_delay: CounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Families {
    fn new() -> Self {
        // Names and help strings are constants: failure here is a programming error caught
        // by every test, never by input.
        let site = &["site"];
        Families {
            tasks_live: IntGaugeVec::new(
                opts("taskscope_tasks_live", "Tasks spawned at this site that have not finished."),
                site,
            )
            .expect("valid metric"),
            tasks_spawned: IntCounterVec::new(
                opts("taskscope_tasks_spawned_total", "Tasks spawned at this site."),
                site,
            )
            .expect("valid metric"),
            tasks_completed: IntCounterVec::new(
                opts(
                    "taskscope_tasks_completed_total",
                    "Tasks spawned at this site that finished (returned, panicked or were aborted).",
                ),
                site,
            )
            .expect("valid metric"),
            task_polls: IntCounterVec::new(
                opts("taskscope_task_polls_total", "Polls of tasks spawned at this site."),
                site,
            )
            .expect("valid metric"),
            task_busy: CounterVec::new(
                opts(
                    "taskscope_task_busy_seconds_total",
                    "Seconds spent polling tasks spawned at this site.",
                ),
                site,
            )
            .expect("valid metric"),
            workers: IntGauge::with_opts(opts(
                "taskscope_runtime_workers",
                "Worker threads of the tokio runtime (its GOMAXPROCS).",
            ))
            .expect("valid metric"),
            alive_tasks: IntGauge::with_opts(opts(
                "taskscope_runtime_alive_tasks",
                "Tasks the tokio runtime counts as alive.",
            ))
            .expect("valid metric"),
            global_queue_depth: IntGauge::with_opts(opts(
                "taskscope_runtime_global_queue_depth",
                "Tasks waiting in the runtime's global queue.",
            ))
            .expect("valid metric"),
            worker_busy: CounterVec::new(
                opts(
                    "taskscope_runtime_worker_busy_seconds_total",
                    "Seconds this worker spent busy polling tasks.",
                ),
                &["worker"],
            )
            .expect("valid metric"),
            blocking_threads: IntGauge::with_opts(opts(
                "taskscope_runtime_blocking_threads",
                "Threads of the runtime's blocking pool, busy or idle.",
            ))
            .expect("valid metric"),
            idle_blocking_threads: IntGauge::with_opts(opts(
                "taskscope_runtime_blocking_idle_threads",
                "Idle threads of the runtime's blocking pool.",
            ))
            .expect("valid metric"),
            blocking_queue_depth: IntGauge::with_opts(opts(
                "taskscope_runtime_blocking_queue_depth",
                "Blocking jobs waiting for a thread of the blocking pool.",
            ))
            .expect("valid metric"),
            sites_tracked: IntGauge::with_opts(opts(
                "taskscope_sites_tracked",
                "Distinct spawn sites the agent tracks.",
            ))
            .expect("valid metric"),
            sites_capacity: IntGauge::with_opts(opts(
                "taskscope_sites_capacity",
                "Most spawn sites the agent tracks before counting tasks under site=\"(overflow)\".",
            ))
            .expect("valid metric"),
            overflow_spawned: IntCounter::with_opts(opts(
                "taskscope_sites_overflow_tasks_total",
                "Tasks spawned at sites beyond the site cap.",
            ))
            .expect("valid metric"),
            untracked_terminations: IntCounter::with_opts(opts(
                "taskscope_untracked_terminations_total",
                "Terminations without a spawn (spawn_blocking tasks, worker threads), kept out of site counts.",
            ))
            .expect("valid metric"),
            task_panics: IntCounterVec::new(
                opts(
                    "taskscope_task_panics_total",
                    "Panics inside tasks spawned at this site (through the process's panic hook).",
                ),
                site,
            )
            .expect("valid metric"),
            cap_capacity: IntGaugeVec::new(
                opts("taskscope_cap_capacity", "Size of one of the agent's capped tables."),
                &["cap"],
            )
            .expect("valid metric"),
            cap_used: IntGaugeVec::new(
                opts("taskscope_cap_used", "Entries in use in one of the agent's capped tables."),
                &["cap"],
            )
            .expect("valid metric"),
            cap_dropped: IntCounterVec::new(
                opts(
                    "taskscope_cap_dropped_total",
                    "What a capped table turned away: tasks (sites, lost_waker_tasks), locks (lock_classes), resources (tokio_resources).",
                ),
                &["cap"],
            )
            .expect("valid metric"),
            start_time: Gauge::with_opts(opts(
                "taskscope_agent_start_time_seconds",
                "Unix time the agent started, in seconds.",
            ))
            .expect("valid metric"),
            idle_over: IntGaugeVec::new(
                opts(
                    "taskscope_tasks_idle_over_threshold",
                    "Live tasks spawned at this site not polled for longer than the site's idle threshold.",
                ),
                site,
            )
            .expect("valid metric"),
            idle_threshold: GaugeVec::new(
                opts(
                    "taskscope_task_idle_threshold_seconds",
                    "Idle time beyond which a task of this site counts as idle too long (fixed, or derived from the site's own waits).",
                ),
                site,
            )
            .expect("valid metric"),
            oldest_idle: GaugeVec::new(
                opts(
                    "taskscope_task_oldest_idle_seconds",
                    "Seconds since the longest-idle live task of this site was last polled.",
                ),
                site,
            )
            .expect("valid metric"),
            live_trend: GaugeVec::new(
                opts(
                    "taskscope_tasks_live_trend_per_second",
                    "Least-squares trend of this site's live count over the agent's growth window, tasks per second.",
                ),
                site,
            )
            .expect("valid metric"),
            lost_waker: IntGaugeVec::new(
                opts(
                    "taskscope_tasks_lost_waker",
                    "Live, idle tasks of this site that hold no waker: nothing can wake them (needs the lost-waker layer).",
                ),
                site,
            )
            .expect("valid metric"),
            findings: IntGaugeVec::new(
                opts(
                    "taskscope_findings",
                    "Active findings, valued by the tasks concerned; a series exists only while its finding holds.",
                ),
                &["kind", "severity", "site"],
            )
            .expect("valid metric"),
            blocked_workers: IntGauge::with_opts(opts(
                "taskscope_runtime_blocked_workers",
                "Workers in one poll for longer than the agent's blocked threshold now.",
            ))
            .expect("valid metric"),
            longest_poll: Gauge::with_opts(opts(
                "taskscope_runtime_longest_poll_seconds",
                "Duration so far of the longest poll in progress (0 when no worker is polling).",
            ))
            .expect("valid metric"),
            blocked_threshold: Gauge::with_opts(opts(
                "taskscope_runtime_blocked_threshold_seconds",
                "Poll duration beyond which a worker counts as blocked.",
            ))
            .expect("valid metric"),
            worker_busy_ratio: GaugeVec::new(
                opts(
                    "taskscope_runtime_worker_busy_ratio",
                    "Share of the agent's last sampling interval this worker spent busy (0 to 1).",
                ),
                &["worker"],
            )
            .expect("valid metric"),
            worker_steals: IntCounterVec::new(
                opts(
                    "taskscope_runtime_worker_steals_total",
                    "Tasks this worker stole from other workers.",
                ),
                &["worker"],
            )
            .expect("valid metric"),
            worker_parks: IntCounterVec::new(
                opts(
                    "taskscope_runtime_worker_parks_total",
                    "Times this worker parked for lack of work.",
                ),
                &["worker"],
            )
            .expect("valid metric"),
            cpu_quota: Gauge::with_opts(opts(
                "taskscope_process_cpu_quota",
                "CPUs the process may use: its cgroup CPU quota if set, else the CPUs it may run on.",
            ))
            .expect("valid metric"),
            blocking_saturated: Gauge::with_opts(opts(
                "taskscope_runtime_blocking_saturated_seconds",
                "Seconds the blocking pool has had no idle thread and jobs waiting, without a break (0 when not).",
            ))
            .expect("valid metric"),
            scheduling_delay_max: Gauge::with_opts(opts(
                "taskscope_runtime_scheduling_delay_max_seconds",
                "Largest scheduling delay of the agent's probe task over its last sampling interval, or the wait of a probe not yet polled.",
            ))
            .expect("valid metric"),
            blocking_max: IntGauge::with_opts(opts(
                "taskscope_runtime_blocking_max_threads",
                "The runtime's max_blocking_threads, as the service told the agent (0 when it did not).",
            ))
            .expect("valid metric"),
            first_poll_delay: GaugeVec::new(
                opts(
                    "taskscope_task_first_poll_delay_max_seconds",
                    "Longest wait of a task spawned at this site from its spawn to its first poll (scheduling delay), since the agent started.",
                ),
                site,
            )
            .expect("valid metric"),
            lock_acquisitions: IntCounterVec::new(
                opts("taskscope_lock_acquisitions_total", "Acquisitions of locks of this identity (taskscope::sync)."),
                &["lock", "kind"],
            )
            .expect("valid metric"),
            lock_contended: IntCounterVec::new(
                opts("taskscope_lock_contended_total", "Acquisitions of locks of this identity that had to wait."),
                &["lock"],
            )
            .expect("valid metric"),
            lock_holders: IntGaugeVec::new(
                opts("taskscope_lock_holders", "Guards (or permit holders) of locks of this identity now."),
                &["lock"],
            )
            .expect("valid metric"),
            lock_waiters: IntGaugeVec::new(
                opts("taskscope_lock_waiters", "Tasks waiting for locks of this identity now."),
                &["lock"],
            )
            .expect("valid metric"),
            lock_wait_share: GaugeVec::new(
                opts("taskscope_lock_wait_share_ratio", "Seconds spent waiting for locks of this identity per second, over the last 10 s."),
                &["lock"],
            )
            .expect("valid metric"),
            lock_delay: CounterVec::new(
                opts("taskscope_lock_delay_seconds_total", "Waiting time charged to the acquire site that held the lock meanwhile (Go's mutex profile)."),
                &["lock", "holder_site"],
            )
            .expect("valid metric"),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 44] {
        [
            &self.tasks_live,
            &self.tasks_spawned,
            &self.tasks_completed,
            &self.task_polls,
            &self.task_busy,
            &self.workers,
            &self.alive_tasks,
            &self.global_queue_depth,
            &self.worker_busy,
            &self.blocking_threads,
            &self.idle_blocking_threads,
            &self.blocking_queue_depth,
            &self.sites_tracked,
            &self.sites_capacity,
            &self.overflow_spawned,
            &self.untracked_terminations,
            &self.task_panics,
            &self.cap_capacity,
            &self.cap_used,
            &self.cap_dropped,
            &self.start_time,
            &self.idle_over,
            &self.idle_threshold,
            &self.oldest_idle,
            &self.live_trend,
            &self.lost_waker,
            &self.findings,
            &self.blocked_workers,
            &self.longest_poll,
            &self.blocked_threshold,
            &self.worker_busy_ratio,
            &self.worker_steals,
            &self.worker_parks,
            &self.cpu_quota,
            &self.blocking_saturated,
            &self.scheduling_delay_max,
            &self.blocking_max,
            &self.first_poll_delay,
            &self.lock_acquisitions,
            &self.lock_contended,
            &self.lock_holders,
            &self.lock_waiters,
            &self.lock_wait_share,
            &self.lock_delay,
        ]
    }

    fn fill(&self, snap: &Snapshot) {
        for row in &snap.sites {
            let l = &[row.site.as_str()];
            self.tasks_live
                .with_label_values(l)
                .set(clamp_i64(row.live));
            self.tasks_spawned.with_label_values(l).inc_by(row.spawned);
            self.tasks_completed
                .with_label_values(l)
                .inc_by(row.completed);
            self.task_polls.with_label_values(l).inc_by(row.polls);
            self.task_panics.with_label_values(l).inc_by(row.panicked);
            self.task_busy
                .with_label_values(l)
                .inc_by(row.busy_seconds.max(0.0));
            self.idle_over
                .with_label_values(l)
                .set(clamp_i64(row.idle_over_threshold));
            self.idle_threshold
                .with_label_values(l)
                .set(row.idle_threshold_seconds);
            self.oldest_idle
                .with_label_values(l)
                .set(row.oldest_idle_seconds);
            self.live_trend
                .with_label_values(l)
                .set(row.live_trend_per_second);
            self.first_poll_delay
                .with_label_values(l)
                .set(row.first_poll_delay_max_seconds);
            let lost: u64 = snap
                .findings
                .iter()
                .filter(|f| f.kind == FindingKind::LostWaker && f.site == row.site)
                .map(|f| f.count)
                .sum();
            self.lost_waker.with_label_values(l).set(clamp_i64(lost));
        }
        for f in &snap.findings {
            self.findings
                .with_label_values(&[f.kind.as_str(), f.severity.as_str(), f.site.as_str()])
                .add(clamp_i64(f.count));
        }
        if let Some(rt) = &snap.runtime {
            self.workers.set(clamp_i64(rt.workers));
            self.alive_tasks.set(clamp_i64(rt.alive_tasks));
            self.global_queue_depth
                .set(clamp_i64(rt.global_queue_depth));
            self.blocking_threads.set(clamp_i64(rt.blocking_threads));
            self.idle_blocking_threads
                .set(clamp_i64(rt.idle_blocking_threads));
            self.blocking_queue_depth
                .set(clamp_i64(rt.blocking_queue_depth));
            for (i, busy) in rt.worker_busy_seconds.iter().enumerate() {
                self.worker_busy
                    .with_label_values(&[i.to_string().as_str()])
                    .inc_by(busy.max(0.0));
            }
            self.blocked_workers.set(clamp_i64(rt.blocked_workers));
            self.longest_poll.set(rt.longest_poll_seconds);
            self.blocked_threshold.set(rt.blocked_threshold_seconds);
            self.cpu_quota.set(rt.cpu_quota);
            self.blocking_saturated.set(rt.blocking_saturated_seconds);
            self.scheduling_delay_max
                .set(rt.scheduling_delay.last_seconds);
            if let Some(m) = rt.max_blocking_threads {
                self.blocking_max.set(clamp_i64(m));
            }
            for (i, ratio) in rt.worker_busy_ratio.iter().enumerate() {
                self.worker_busy_ratio
                    .with_label_values(&[i.to_string().as_str()])
                    .set(*ratio);
            }
            for (i, n) in rt.worker_steals.iter().enumerate() {
                self.worker_steals
                    .with_label_values(&[i.to_string().as_str()])
                    .inc_by(*n);
            }
            for (i, n) in rt.worker_parks.iter().enumerate() {
                self.worker_parks
                    .with_label_values(&[i.to_string().as_str()])
                    .inc_by(*n);
            }
        }
        for l in &snap.locks {
            let lock = &[l.lock.as_str()];
            let kind = match l.kind {
                LockKind::Mutex => "mutex",
                LockKind::RwLock => "rwlock",
                LockKind::Semaphore => "semaphore",
                LockKind::BlockingMutex => "blocking_mutex",
                LockKind::BlockingRwLock => "blocking_rwlock",
                LockKind::Unknown => "unknown",
            };
            self.lock_acquisitions
                .with_label_values(&[l.lock.as_str(), kind])
                .inc_by(l.acquisitions);
            self.lock_contended
                .with_label_values(lock)
                .inc_by(l.contended);
            self.lock_holders
                .with_label_values(lock)
                .set(clamp_i64(l.holders.len() as u64 + l.more_holders));
            self.lock_waiters
                .with_label_values(lock)
                .set(clamp_i64(l.waiters.len() as u64 + l.more_waiters));
            self.lock_wait_share
                .with_label_values(lock)
                .set(l.wait_share);
            for d in &l.delay_by_holder_site {
                self.lock_delay
                    .with_label_values(&[l.lock.as_str(), d.site.as_str()])
                    .inc_by(d.seconds.max(0.0));
            }
        }
        self.sites_tracked.set(clamp_i64(snap.agent.sites_tracked));
        self.sites_capacity.set(clamp_i64(snap.agent.site_capacity));
        self.overflow_spawned.inc_by(snap.agent.overflow_spawned);
        self.untracked_terminations
            .inc_by(snap.agent.untracked_terminations);
        for cap in &snap.agent.caps {
            let l = &[cap.cap.as_str()];
            self.cap_capacity
                .with_label_values(l)
                .set(clamp_i64(cap.capacity));
            self.cap_used.with_label_values(l).set(clamp_i64(cap.used));
            self.cap_dropped.with_label_values(l).inc_by(cap.dropped);
        }
        self.start_time.set(snap.agent.started_unix_ms as f64 / 1e3);
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Histograms the agent keeps as counts already: built as protobuf families directly,
/// since the `prometheus` crate's `Histogram` only takes observations.
const POLL_DURATION: (&str, &str) = (
    "taskscope_task_poll_duration_seconds",
    "Polls of tasks spawned at this site by duration (coarse clock, resolution 1-4 ms); the sum is the site's busy time, estimated from sampled polls.",
);
const LOCK_WAIT: (&str, &str) = (
    "taskscope_lock_wait_seconds",
    "Waits of contended acquisitions of locks of this identity.",
);
const LOCK_HOLD: (&str, &str) = (
    "taskscope_lock_hold_seconds",
    "How long guards of locks of this identity were held (coarse clock, 1-4 ms resolution).",
);
const SCHEDULING_DELAY: (&str, &str) = (
    "taskscope_runtime_scheduling_delay_seconds",
    "Scheduling delay: how long the agent's probe task, spawned once per sampling interval, waited for its first poll.",
);

fn histogram(
    labels: &[(&str, &str)],
    bounds: &[f64],
    cumulative: &[u64],
    count: u64,
    sum: f64,
) -> Metric {
    let mut h = proto::Histogram::default();
    h.set_sample_count(count);
    h.set_sample_sum(sum);
    h.set_bucket(
        bounds
            .iter()
            .zip(cumulative)
            .map(|(b, c)| {
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(*b);
                bucket.set_cumulative_count(*c);
                bucket
            })
            .collect(),
    );
    let mut m = Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = proto::LabelPair::default();
                l.set_name(k.to_string());
                l.set_value(v.to_string());
                l
            })
            .collect(),
    );
    m.set_histogram(h);
    m
}

fn family(name_help: (&str, &str), metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name_help.0.to_string());
    f.set_help(name_help.1.to_string());
    f.set_field_type(proto::MetricType::HISTOGRAM);
    f.set_metric(metrics);
    f
}

/// The histogram families of a snapshot (none for an empty one: a family needs a metric).
fn histograms(snap: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    let polls: Vec<Metric> = snap
        .sites
        .iter()
        .filter(|row| row.long_polls.len() == LONG_POLL_BOUNDS_SECONDS.len())
        .map(|row| {
            // long_polls[i] counts polls of at least bound i; the bucket "le bound i" holds
            // the rest.
            let cumulative: Vec<u64> = row
                .long_polls
                .iter()
                .map(|long| row.polls.saturating_sub(*long))
                .collect();
            histogram(
                &[("site", row.site.as_str())],
                &LONG_POLL_BOUNDS_SECONDS,
                &cumulative,
                row.polls,
                row.busy_seconds.max(0.0),
            )
        })
        .collect();
    if !polls.is_empty() {
        out.push(family(POLL_DURATION, polls));
    }
    for (name_help, pick) in [
        (
            LOCK_WAIT,
            (|l: &LockRow| &l.wait_seconds) as fn(&LockRow) -> &taskscope::model::DelayHistogram,
        ),
        (LOCK_HOLD, |l: &LockRow| &l.hold_seconds),
    ] {
        let metrics: Vec<Metric> = snap
            .locks
            .iter()
            .filter(|l| pick(l).bounds.len() == pick(l).counts.len())
            .map(|l| {
                let h = pick(l);
                histogram(
                    &[("lock", l.lock.as_str())],
                    &h.bounds,
                    &h.counts,
                    h.count,
                    h.sum,
                )
            })
            .collect();
        if !metrics.is_empty() {
            out.push(family(name_help, metrics));
        }
    }
    if let Some(rt) = &snap.runtime {
        let d = &rt.scheduling_delay;
        if d.bounds.len() == d.counts.len() {
            out.push(family(
                SCHEDULING_DELAY,
                vec![histogram(&[], &d.bounds, &d.counts, d.count, d.sum)],
            ));
        }
    }
    out
}

/// Snapshots of the runtimes served, each with its name, read on every gather.
struct SnapshotCollector {
    scrapes: Vec<(Snapshot, Option<String>)>,
    template: Families,
    histogram_descs: Vec<Desc>,
}

impl SnapshotCollector {
    fn new(scrapes: Vec<(Snapshot, Option<String>)>) -> Self {
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            Desc::new(
                name.to_string(),
                help.to_string(),
                labels.iter().map(|l| l.to_string()).collect(),
                Default::default(),
            )
            .expect("valid metric")
        };
        SnapshotCollector {
            scrapes,
            template: Families::new(),
            histogram_descs: vec![
                desc(POLL_DURATION, &["site"]),
                desc(SCHEDULING_DELAY, &[]),
                desc(LOCK_WAIT, &["lock"]),
                desc(LOCK_HOLD, &["lock"]),
            ],
        }
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.template
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .chain(&self.histogram_descs)
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // One set of families per runtime; the registry merges families of the same name.
        self.scrapes
            .iter()
            .flat_map(|(snap, name)| collect_snapshot(snap, name.as_deref()))
            .collect()
    }
}

/// One runtime's families; every series labelled `runtime="NAME"` when it is named.
fn collect_snapshot(snap: &Snapshot, runtime_name: Option<&str>) -> Vec<MetricFamily> {
    let families = Families::new();
    families.fill(snap);
    let mut out: Vec<MetricFamily> = families
        .collectors()
        .into_iter()
        .flat_map(|c| c.collect())
        .chain(histograms(snap))
        .collect();
    if let Some(name) = runtime_name {
        let mut label = prometheus::proto::LabelPair::default();
        label.set_name("runtime".to_string());
        label.set_value(name.to_string());
        for family in &mut out {
            for metric in family.mut_metric().iter_mut() {
                let mut labels = metric.take_label();
                labels.push(label.clone());
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                metric.set_label(labels);
            }
        }
    }
    out
}

/// The old `/metrics` body for these snapshots, as `metrics::encode` served it.
pub(super) fn encode(scrapes: &[(&Snapshot, Option<&str>)]) -> String {
    let registry = Registry::new();
    let owned = scrapes
        .iter()
        .map(|(s, n)| ((*s).clone(), n.map(str::to_string)))
        .collect();
    registry
        .register(Box::new(SnapshotCollector::new(owned)))
        .expect("the collector registers once in a fresh registry");
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    encoder
        .encode(&registry.gather(), &mut buf)
        .expect("encodes");
    String::from_utf8(buf).expect("UTF-8")
}
