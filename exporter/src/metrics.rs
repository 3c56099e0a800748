//! The Prometheus view of a snapshot: a [`Collector`] that reads the agent at scrape time.
//!
//! Nothing is kept between scrapes: each scrape takes a snapshot and fills fresh metric
//! families from it, so the exporter holds no state that could drift from the agent's.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use taskscope::Agent;
use taskscope::model::{FindingKind, Snapshot};

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
    start_time: Gauge,
    idle_over: IntGaugeVec,
    idle_threshold: GaugeVec,
    oldest_idle: GaugeVec,
    live_trend: GaugeVec,
    lost_waker: IntGaugeVec,
    findings: IntGaugeVec,
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
        }
    }

    fn collectors(&self) -> [&dyn Collector; 23] {
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
            &self.start_time,
            &self.idle_over,
            &self.idle_threshold,
            &self.oldest_idle,
            &self.live_trend,
            &self.lost_waker,
            &self.findings,
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
        }
        self.sites_tracked.set(clamp_i64(snap.agent.sites_tracked));
        self.sites_capacity.set(clamp_i64(snap.agent.site_capacity));
        self.overflow_spawned.inc_by(snap.agent.overflow_spawned);
        self.untracked_terminations
            .inc_by(snap.agent.untracked_terminations);
        self.start_time.set(snap.agent.started_unix_ms as f64 / 1e3);
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Reads the agent on every scrape.
pub(crate) struct AgentCollector {
    agent: Agent,
    template: Families,
}

impl AgentCollector {
    pub(crate) fn new(agent: Agent) -> Self {
        AgentCollector {
            agent,
            template: Families::new(),
        }
    }
}

impl Collector for AgentCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.template
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let families = Families::new();
        families.fill(&self.agent.snapshot());
        families
            .collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

/// A registry holding the agent's collector, ready to encode.
pub(crate) fn registry(agent: Agent) -> Registry {
    let registry = Registry::new();
    registry
        .register(Box::new(AgentCollector::new(agent)))
        .expect("the agent collector registers once in a fresh registry");
    registry
}

/// Encodes every family in the Prometheus text format; returns the body and its content
/// type.
pub(crate) fn encode(registry: &Registry) -> Result<(String, String), prometheus::Error> {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    encoder.encode(&registry.gather(), &mut buf)?;
    Ok((
        String::from_utf8_lossy(&buf).into_owned(),
        encoder.format_type().to_string(),
    ))
}
