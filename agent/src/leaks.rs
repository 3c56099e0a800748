//! Leak indicators, from certain to suspected: lost wakers, tasks idle far longer than
//! their site's norm, and sites whose live count keeps rising.
//!
//! Everything here runs on a reader's thread (a snapshot, a scrape) or on the sampler
//! thread, never in the task hooks. The hooks contribute one number per site: the longest
//! wait that ended in a poll (`SiteCounters::longest_wait`).
//!
//! Each indicator is a small object behind one trait, `Indicator`, in the shape of tokio-console's
//! warnings: decide whether it applies to a site, say one sentence for that site with the
//! number that crossed the line, and give a fragment that reads after a count.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::Inner;
use crate::clock::Seconds;
use crate::model::{BaselineDiff, Evidence, Finding, FindingKind, Severity, SiteDiff};

/// Default least idle time flagged as "idle too long" (see [`LeakSettings::idle_floor`]):
/// longer than the idle timeouts common in libraries (hyper's and reqwest's connection
/// pools keep an idle connection 90 s, as Go's net/http does), so a pooled connection
/// waiting for reuse is not flagged before its site has shown how long it may wait.
pub const DEFAULT_IDLE_FLOOR: Duration = Duration::from_secs(120);

/// A site's derived idle threshold is this many times its longest wait that ended.
pub const IDLE_FACTOR: f64 = 4.0;

/// Default growth window (see [`LeakSettings::growth_window`]).
pub const DEFAULT_GROWTH_WINDOW: Duration = Duration::from_secs(60);

/// Default least rise of a site's low-water mark over the window that counts as growth.
pub const DEFAULT_GROWTH_MIN_TASKS: u64 = 5;

/// Default span of the live-count history kept per site (for growth and `diff --since`).
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(300);

/// Samples per growth window: the sampling interval is the window divided by this.
const SAMPLES_PER_WINDOW: u32 = 60;

/// Most samples kept per site, whatever the settings ask for.
const MAX_SAMPLES: usize = 4096;

/// Lost-waker candidates must have been idle this long: a task between dropping one waker
/// and registering the next is not lost.
const LOST_WAKER_MIN_IDLE: f64 = 1.0;

/// How the leak indicators decide; set through `AgentBuilder`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeakSettings {
    /// A fixed idle threshold for every site; `None` derives one per site.
    pub idle_threshold: Option<Duration>,
    /// The least derived threshold: `max(idle_floor, IDLE_FACTOR x the site's longest
    /// wait that ended)`.
    pub idle_floor: Duration,
    /// The window over which growth is judged.
    pub growth_window: Duration,
    /// The least rise of the low-water mark over the window that counts as growth.
    pub growth_min_tasks: u64,
    /// How far back the per-site history goes (at least the growth window).
    pub history: Duration,
}

impl Default for LeakSettings {
    fn default() -> Self {
        LeakSettings {
            idle_threshold: None,
            idle_floor: DEFAULT_IDLE_FLOOR,
            growth_window: DEFAULT_GROWTH_WINDOW,
            growth_min_tasks: DEFAULT_GROWTH_MIN_TASKS,
            history: DEFAULT_HISTORY,
        }
    }
}

impl LeakSettings {
    /// How often the sampler reads every site's counts.
    pub(crate) fn sample_interval(&self) -> Duration {
        (self.growth_window / SAMPLES_PER_WINDOW).max(Duration::from_millis(50))
    }

    fn samples_kept(&self) -> usize {
        let span = self.history.max(self.growth_window);
        let n = span.as_secs_f64() / self.sample_interval().as_secs_f64();
        (n.ceil() as usize + 1).clamp(4, MAX_SAMPLES)
    }

    /// The idle threshold of a site whose longest ended wait is `longest_wait` seconds,
    /// and whether it was derived.
    pub(crate) fn idle_threshold(&self, longest_wait: f64) -> (f64, bool) {
        match self.idle_threshold {
            Some(fixed) => (fixed.as_secs_f64(), false),
            None => (
                (IDLE_FACTOR * longest_wait).max(self.idle_floor.as_secs_f64()),
                true,
            ),
        }
    }
}

/// One reading of a site.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Coarse clock reading.
    at: u64,
    live: u64,
    spawned: u64,
    completed: u64,
}

/// Per-site rings of samples, indexed by site number.
pub(crate) struct History {
    rings: Vec<VecDeque<Sample>>,
    cap: usize,
}

/// A marked baseline: every site's counts at one moment.
pub(crate) struct Baseline {
    unix_ms: u64,
    at: u64,
    /// (site label, live, spawned, completed)
    sites: Vec<(String, u64, u64, u64)>,
}

/// The sampler's and the baseline's state.
pub(crate) struct LeakState {
    pub(crate) settings: LeakSettings,
    history: Mutex<History>,
    baseline: Mutex<Option<Baseline>>,
}

impl LeakState {
    pub(crate) fn new(settings: LeakSettings) -> Self {
        let cap = settings.samples_kept();
        LeakState {
            settings,
            history: Mutex::new(History {
                rings: Vec::new(),
                cap,
            }),
            baseline: Mutex::new(None),
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // Never left half-updated: a poisoned lock still holds consistent rings.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn baseline_lock(&self) -> std::sync::MutexGuard<'_, Option<Baseline>> {
        self.baseline.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the sampler thread of an agent: every [`LeakSettings::sample_interval`] it reads
/// each site's totals into its ring. It holds the agent weakly and ends with it.
pub(crate) fn start_sampler(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let interval = inner.leaks.settings.sample_interval();
    // Without the thread the agent still works; growth and `--since` diffs stay empty.
    let _ = std::thread::Builder::new()
        .name("taskscope-sampler".into())
        .spawn(move || {
            loop {
                match weak.upgrade() {
                    Some(inner) => {
                        sample(&inner);
                        crate::starvation::sample(&inner);
                        crate::sync::state::registry().sample();
                    }
                    None => return,
                }
                std::thread::sleep(interval);
            }
        });
}

/// Reads every site into its ring once.
pub(crate) fn sample(inner: &Inner) {
    let at = inner.clock.now();
    let sites = all_sites(inner);
    let samples: Vec<(usize, Sample)> = sites
        .iter()
        .map(|&site| {
            let t = inner.lanes.totals(site);
            (
                site as usize,
                Sample {
                    at,
                    live: t.spawned.saturating_sub(t.completed),
                    spawned: t.spawned,
                    completed: t.completed,
                },
            )
        })
        .collect();
    let mut h = inner.leaks.history();
    let cap = h.cap;
    for (site, s) in samples {
        if h.rings.len() <= site {
            h.rings.resize_with(site + 1, VecDeque::new);
        }
        let ring = &mut h.rings[site];
        if ring.len() == cap {
            ring.pop_front();
        }
        ring.push_back(s);
    }
}

fn all_sites(inner: &Inner) -> Vec<u32> {
    let probe = inner.starvation.probe_site();
    (0..inner.sites.len() as u32)
        .chain(std::iter::once(inner.sites.overflow()))
        .filter(|s| Some(*s) != probe)
        .collect()
}

/// What the growth indicator computed for one site.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Trend {
    /// Least-squares slope of live over the window, tasks per second.
    pub(crate) slope: f64,
    /// Seconds the samples span.
    pub(crate) span: f64,
    pub(crate) floor_before: u64,
    pub(crate) floor_after: u64,
    /// Spawn rates (tasks per second) in the window's first and second half.
    pub(crate) spawn_rate_before: f64,
    pub(crate) spawn_rate_after: f64,
}

/// The trend of every site over the growth window (by site number; sites with too few
/// samples get none).
pub(crate) fn trends(inner: &Inner) -> Vec<Option<Trend>> {
    let window = inner.leaks.settings.growth_window.as_nanos() as u64;
    let h = inner.leaks.history();
    h.rings
        .iter()
        .map(|ring| {
            let last = ring.back()?;
            let from = last.at.saturating_sub(window);
            let samples: Vec<&Sample> = ring.iter().filter(|s| s.at >= from).collect();
            trend(&samples)
        })
        .collect()
}

fn trend(samples: &[&Sample]) -> Option<Trend> {
    if samples.len() < 4 {
        return None;
    }
    let t0 = samples[0].at;
    let xs: Vec<f64> = samples.iter().map(|s| (s.at - t0) as f64 * 1e-9).collect();
    let span = *xs.last()?;
    if span <= 0.0 {
        return None;
    }
    let n = xs.len() as f64;
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| s.live as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, s) in xs.iter().zip(samples) {
        sxy += (x - mean_x) * (s.live as f64 - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    let half = samples.len() / 2;
    let (before, after) = samples.split_at(half);
    let floor = |part: &[&Sample]| part.iter().map(|s| s.live).min().unwrap_or(0);
    let rate = |part: &[&Sample]| {
        let (a, b) = (part.first()?, part.last()?);
        let dt = (b.at - a.at) as f64 * 1e-9;
        (dt > 0.0).then(|| (b.spawned - a.spawned) as f64 / dt)
    };
    Some(Trend {
        slope: if sxx > 0.0 { sxy / sxx } else { 0.0 },
        span,
        floor_before: floor(before),
        floor_after: floor(after),
        // The halves share no sample: rate over each half's own span.
        spawn_rate_before: rate(before).unwrap_or(0.0),
        spawn_rate_after: rate(after).unwrap_or(0.0),
    })
}

/// What the readers know of one site when the indicators look at it.
pub(crate) struct SiteFacts<'a> {
    pub(crate) site: &'a str,
    pub(crate) live: u64,
    pub(crate) completed: u64,
    pub(crate) idle_over: u64,
    pub(crate) threshold: f64,
    pub(crate) derived: bool,
    pub(crate) longest_wait: f64,
    pub(crate) oldest_idle: f64,
    pub(crate) trend: Option<Trend>,
    /// Live, idle tasks with no waker left, with their idle times.
    pub(crate) lost_wakers: Vec<(u64, f64)>,
}

/// One leak indicator.
pub(crate) trait Indicator {
    /// The kind of finding it makes.
    fn kind(&self) -> FindingKind;
    /// Whether it applies to this site: severity, tasks concerned and evidence.
    fn check(
        &self,
        site: &SiteFacts<'_>,
        settings: &LeakSettings,
    ) -> Option<(Severity, u64, Evidence)>;
    /// One full sentence for the site, with the number that crossed the line.
    fn sentence(&self, site: &str, count: u64, evidence: &Evidence) -> String;
    /// Reads after a count: "tasks have lost their waker".
    fn fragment(&self, evidence: &Evidence) -> String;
}

/// Certain: idle tasks that no waker can wake.
pub(crate) struct LostWaker;

impl Indicator for LostWaker {
    fn kind(&self) -> FindingKind {
        FindingKind::LostWaker
    }

    fn check(&self, f: &SiteFacts<'_>, _: &LeakSettings) -> Option<(Severity, u64, Evidence)> {
        if f.lost_wakers.is_empty() {
            return None;
        }
        let mut lost = f.lost_wakers.clone();
        lost.sort_by(|a, b| b.1.total_cmp(&a.1));
        Some((
            Severity::Critical,
            lost.len() as u64,
            Evidence::LostWaker {
                task_ids: lost.iter().take(10).map(|t| t.0).collect(),
                oldest_idle_seconds: round(lost[0].1),
            },
        ))
    }

    fn sentence(&self, site: &str, count: u64, evidence: &Evidence) -> String {
        let oldest = match evidence {
            Evidence::LostWaker {
                oldest_idle_seconds,
                ..
            } => *oldest_idle_seconds,
            _ => 0.0,
        };
        format!(
            "{} spawned at {site} {} lost {} waker: idle and nothing holds a waker to wake \
             {}, so {} can never run again (idle up to {oldest:.1} s)",
            tasks(count),
            if count == 1 { "has" } else { "have" },
            if count == 1 { "its" } else { "their" },
            if count == 1 { "it" } else { "them" },
            if count == 1 { "it" } else { "they" },
        )
    }

    fn fragment(&self, _: &Evidence) -> String {
        "tasks have lost their waker".into()
    }
}

/// Suspected: tasks idle far longer than tasks of their site normally wait.
pub(crate) struct IdleTooLong;

impl Indicator for IdleTooLong {
    fn kind(&self) -> FindingKind {
        FindingKind::IdleTooLong
    }

    fn check(&self, f: &SiteFacts<'_>, _: &LeakSettings) -> Option<(Severity, u64, Evidence)> {
        // A site none of whose tasks ever finished runs long-lived tasks (a listener, a
        // pool's workers, an actor): for them a long wait is the job, not evidence. Their
        // multiplying is what the growth indicator is for.
        if f.idle_over == 0 || f.completed == 0 {
            return None;
        }
        Some((
            Severity::Warning,
            f.idle_over,
            Evidence::IdleTooLong {
                threshold_seconds: round(f.threshold),
                derived: f.derived,
                longest_wait_seconds: round(f.longest_wait),
                oldest_idle_seconds: round(f.oldest_idle),
                live: f.live,
            },
        ))
    }

    fn sentence(&self, site: &str, count: u64, evidence: &Evidence) -> String {
        let Evidence::IdleTooLong {
            threshold_seconds,
            derived,
            longest_wait_seconds,
            oldest_idle_seconds,
            live,
        } = evidence
        else {
            return String::new();
        };
        let why = if *derived {
            format!(
                "tasks there normally finish, and none waited more than \
                 {longest_wait_seconds:.1} s before being woken"
            )
        } else {
            "the fixed idle threshold".to_string()
        };
        format!(
            "{} of {live} spawned at {site} {} idle for more than {threshold_seconds:.1} s \
             (oldest {oldest_idle_seconds:.1} s); {why}",
            tasks(count),
            if count == 1 { "has been" } else { "have been" },
        )
    }

    fn fragment(&self, evidence: &Evidence) -> String {
        match evidence {
            Evidence::IdleTooLong {
                threshold_seconds, ..
            } => format!("tasks idle for more than {threshold_seconds:.1} s"),
            _ => "tasks idle too long".into(),
        }
    }
}

/// Suspected: a site whose live count keeps rising while its spawn rate holds.
pub(crate) struct Growth;

impl Indicator for Growth {
    fn kind(&self) -> FindingKind {
        FindingKind::Growth
    }

    fn check(&self, f: &SiteFacts<'_>, s: &LeakSettings) -> Option<(Severity, u64, Evidence)> {
        let t = f.trend?;
        // Leaked tasks never go away, so the low-water mark rises; a busy site that is not
        // leaking keeps coming back down however high its peaks.
        let rise = t.floor_after.saturating_sub(t.floor_before);
        if rise < s.growth_min_tasks.max(1) || t.slope <= 0.0 {
            return None;
        }
        // Judged over at least half the window: a site seen for a few seconds only (a pool
        // or a batch ramping up after start) has no floor to speak of yet.
        if t.span < s.growth_window.as_secs_f64() / 2.0 {
            return None;
        }
        // Leaked tasks stay: a count already back below the risen floor (a batch that
        // finished between samples) is not growth.
        if f.live < t.floor_after {
            return None;
        }
        // Growth that comes with a rising spawn rate may be load, not a leak (Little's
        // law): say so with a lower severity.
        let load_rose = t.spawn_rate_after > 1.5 * t.spawn_rate_before + 1.0;
        Some((
            if load_rose {
                Severity::Info
            } else {
                Severity::Warning
            },
            rise,
            Evidence::Growth {
                rate_per_second: round(t.slope),
                window_seconds: round(t.span),
                floor_before: t.floor_before,
                floor_after: t.floor_after,
                live: f.live,
            },
        ))
    }

    fn sentence(&self, site: &str, _count: u64, evidence: &Evidence) -> String {
        let Evidence::Growth {
            rate_per_second,
            window_seconds,
            floor_before,
            floor_after,
            live,
        } = evidence
        else {
            return String::new();
        };
        format!(
            "live tasks spawned at {site} grow by {rate_per_second:.2}/s over the last \
             {window_seconds:.0} s: the low-water mark rose from {floor_before} to \
             {floor_after} ({live} live now)"
        )
    }

    fn fragment(&self, evidence: &Evidence) -> String {
        match evidence {
            Evidence::Growth {
                rate_per_second, ..
            } => format!("tasks more each {:.1} s", 1.0 / rate_per_second.max(1e-9)),
            _ => "tasks of growth".into(),
        }
    }
}

/// Every indicator, most certain first.
pub(crate) const INDICATORS: [&(dyn Indicator + Sync); 3] = [&LostWaker, &IdleTooLong, &Growth];

/// Findings for one site.
pub(crate) fn findings_for(facts: &SiteFacts<'_>, settings: &LeakSettings) -> Vec<Finding> {
    INDICATORS
        .iter()
        .filter_map(|ind| {
            let (severity, count, evidence) = ind.check(facts, settings)?;
            Some(Finding {
                kind: ind.kind(),
                severity,
                site: facts.site.to_string(),
                count,
                summary: ind.sentence(facts.site, count, &evidence),
                fragment: ind.fragment(&evidence),
                evidence,
            })
        })
        .collect()
}

/// One reading of a site's counts, for readers that keep their own history (see
/// [`growth_finding`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrowthSample {
    /// When, in seconds from any fixed origin (only differences matter).
    pub at_seconds: f64,
    /// Live tasks then.
    pub live: u64,
    /// Tasks spawned so far then (for the spawn rate: growth that comes with a rising
    /// spawn rate may be load and is reported as info).
    pub spawned: u64,
}

/// The agent's growth indicator over a history kept elsewhere — e.g. a reader of
/// console-subscriber's updates, which has counts over time but no agent: a finding of
/// kind `growth` when the site's low-water mark rose by at least
/// [`LeakSettings::growth_min_tasks`] over the last [`LeakSettings::growth_window`] of
/// `samples` (oldest first), with the same severity, evidence and wording as the agent's.
///
/// ```
/// use taskscope::LeakSettings;
/// use taskscope::leaks::{GrowthSample, growth_finding};
///
/// // 2 more live tasks every second for a minute, at a steady spawn rate.
/// let samples: Vec<GrowthSample> = (0..=60)
///     .map(|i| GrowthSample { at_seconds: i as f64, live: 2 * i, spawned: 10 * i })
///     .collect();
/// let f = growth_finding("src/main.rs:10:5", &samples, &LeakSettings::default()).unwrap();
/// assert_eq!(f.count, 60); // the low-water mark rose from 0 to 60
/// ```
pub fn growth_finding(
    site: &str,
    samples: &[GrowthSample],
    settings: &LeakSettings,
) -> Option<Finding> {
    let last = samples.last()?;
    let window = settings.growth_window.as_secs_f64();
    let first = samples
        .iter()
        .position(|s| s.at_seconds >= last.at_seconds - window)?;
    let origin = samples[first].at_seconds;
    let mut converted = Vec::with_capacity(samples.len() - first);
    for s in &samples[first..] {
        let at = s.at_seconds - origin;
        if !at.is_finite() || at < 0.0 {
            return None; // out of order or not a number: no trend to speak of
        }
        converted.push(Sample {
            at: (at * 1e9) as u64,
            live: s.live,
            spawned: s.spawned,
            completed: 0,
        });
    }
    let refs: Vec<&Sample> = converted.iter().collect();
    let facts = SiteFacts {
        site,
        live: last.live,
        completed: 0,
        idle_over: 0,
        threshold: 0.0,
        derived: false,
        longest_wait: 0.0,
        oldest_idle: 0.0,
        trend: trend(&refs),
        lost_wakers: Vec::new(),
    };
    let (severity, count, evidence) = Growth.check(&facts, settings)?;
    Some(Finding {
        kind: Growth.kind(),
        severity,
        site: site.to_string(),
        count,
        summary: Growth.sentence(site, count, &evidence),
        fragment: Growth.fragment(&evidence),
        evidence,
    })
}

/// Sorts findings most severe first, then most tasks, then by site.
pub(crate) fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .rank()
            .cmp(&a.severity.rank())
            .then_with(|| b.count.cmp(&a.count))
            .then_with(|| a.site.cmp(&b.site))
            .then_with(|| a.kind.cmp(&b.kind))
    });
}

/// Marks a baseline now: every site's counts.
pub(crate) fn mark_baseline(inner: &Inner) -> u64 {
    let at = inner.clock.now();
    let unix_ms = crate::unix_ms();
    let sites = all_sites(inner)
        .into_iter()
        .map(|s| {
            let t = inner.lanes.totals(s);
            (
                inner.sites.label(s).to_string(),
                t.spawned.saturating_sub(t.completed),
                t.spawned,
                t.completed,
            )
        })
        .collect();
    *inner.leaks.baseline_lock() = Some(Baseline { unix_ms, at, sites });
    unix_ms
}

/// Now against the marked baseline, if there is one.
pub(crate) fn baseline_diff(inner: &Inner, secs: &Seconds) -> Option<BaselineDiff> {
    let guard = inner.leaks.baseline_lock();
    let base = guard.as_ref()?;
    let then: Vec<(&str, u64, u64, u64)> = base
        .sites
        .iter()
        .map(|(l, a, b, c)| (l.as_str(), *a, *b, *c))
        .collect();
    Some(diff(inner, &then, base.unix_ms, secs.since(base.at)))
}

/// Why a diff over a span of history cannot be had.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HistoryError {
    /// The sampler has not read the sites yet.
    #[error("no history yet: the agent samples every {0:.1} s; try again shortly")]
    Empty(f64),
    /// Asked further back than the history goes.
    #[error(
        "history goes back {have:.0} s, less than the {asked:.0} s asked for (the agent keeps {keeps:.0} s)"
    )]
    TooFar {
        /// Seconds asked for.
        asked: f64,
        /// Seconds the history covers now.
        have: f64,
        /// Seconds the history covers once full.
        keeps: f64,
    },
}

/// Now against the sample taken `since` ago (the newest at or before it).
pub(crate) fn diff_since(
    inner: &Inner,
    since: Duration,
    secs: &Seconds,
) -> Result<BaselineDiff, HistoryError> {
    let now = inner.clock.now();
    let interval = inner.leaks.settings.sample_interval().as_secs_f64();
    let h = inner.leaks.history();
    let oldest = h
        .rings
        .iter()
        .filter_map(|r| r.front().map(|s| s.at))
        .min()
        .ok_or(HistoryError::Empty(interval))?;
    // A sample within one interval of the moment asked for will do; before the agent
    // started there is none.
    let slack = inner.leaks.settings.sample_interval().as_nanos() as u64;
    let want = now.checked_sub(since.as_nanos() as u64);
    if want.is_none_or(|want| oldest > want + slack) {
        return Err(HistoryError::TooFar {
            asked: since.as_secs_f64(),
            have: secs.since(oldest),
            keeps: interval * (h.cap - 1) as f64,
        });
    }
    let want = want.unwrap_or(0);
    let mut at = oldest;
    let then: Vec<(String, u64, u64, u64)> = all_sites(inner)
        .into_iter()
        .filter_map(|site| {
            let ring = h.rings.get(site as usize)?;
            let s = ring.iter().rev().find(|s| s.at <= want.max(oldest))?;
            at = at.max(s.at);
            Some((
                inner.sites.label(site).to_string(),
                s.live,
                s.spawned,
                s.completed,
            ))
        })
        .collect();
    drop(h);
    let then: Vec<(&str, u64, u64, u64)> = then
        .iter()
        .map(|(l, a, b, c)| (l.as_str(), *a, *b, *c))
        .collect();
    let age = secs.since(at);
    let unix_ms = crate::unix_ms().saturating_sub((age * 1000.0) as u64);
    Ok(diff(inner, &then, unix_ms, age))
}

fn diff(inner: &Inner, then: &[(&str, u64, u64, u64)], unix_ms: u64, age: f64) -> BaselineDiff {
    let mut sites: Vec<SiteDiff> = all_sites(inner)
        .into_iter()
        .filter_map(|s| {
            let label = inner.sites.label(s);
            let t = inner.lanes.totals(s);
            let (live0, spawned0, completed0) = then
                .iter()
                .find(|(l, ..)| *l == label)
                .map_or((0, 0, 0), |&(_, a, b, c)| (a, b, c));
            let d = SiteDiff {
                site: label.to_string(),
                live_before: live0,
                live_after: t.spawned.saturating_sub(t.completed),
                spawned: t.spawned.saturating_sub(spawned0),
                completed: t.completed.saturating_sub(completed0),
            };
            (d.spawned > 0 || d.live_after != d.live_before).then_some(d)
        })
        .collect();
    sites.sort_by(|a, b| {
        b.live_delta()
            .cmp(&a.live_delta())
            .then_with(|| b.spawned.cmp(&a.spawned))
            .then_with(|| a.site.cmp(&b.site))
    });
    BaselineDiff {
        marked_at_unix_ms: unix_ms,
        age_seconds: round(age),
        sites,
    }
}

fn tasks(n: u64) -> String {
    if n == 1 {
        "1 task".into()
    } else {
        format!("{n} tasks")
    }
}

/// Rounds to the microsecond, like every duration in the model.
pub(crate) fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The least idle time a lost-waker candidate must have.
pub(crate) fn lost_waker_min_idle() -> f64 {
    LOST_WAKER_MIN_IDLE
}

/// Where lost-waker facts come from: the opt-in tracing layer (feature `lost-waker`), which
/// counts each task's wakers from tokio's `tokio::task::waker` events.
pub(crate) trait WakerSource: Send + Sync {
    /// tokio task ids of tasks that are alive (not terminated) as far as the source knows,
    /// have been polled at least once, and hold no waker at all: nothing can wake them.
    fn zero_waker_tasks(&self) -> Vec<u64>;
    /// The source's task table against its cap.
    fn usage(&self) -> crate::model::CapUsage;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_s: f64, live: u64, spawned: u64) -> Sample {
        Sample {
            at: (at_s * 1e9) as u64 + 1,
            live,
            spawned,
            completed: spawned - live,
        }
    }

    #[test]
    fn a_rising_floor_is_growth_and_a_sawtooth_is_not() {
        // 984 more every second: a staircase.
        let leak: Vec<Sample> = (0..10).map(|i| s(i as f64, 984 * i, 1000 * i)).collect();
        let t = trend(&leak.iter().collect::<Vec<_>>()).unwrap();
        assert!((t.slope - 984.0).abs() < 1.0, "{t:?}");
        assert_eq!((t.floor_before, t.floor_after), (0, 4920));
        // Busy but not leaking: up to 50 and back to 0, again and again.
        let busy: Vec<Sample> = (0..20)
            .map(|i| s(i as f64, if i % 2 == 0 { 0 } else { 50 }, 100 * i))
            .collect();
        let t = trend(&busy.iter().collect::<Vec<_>>()).unwrap();
        let facts = SiteFacts {
            site: "x.rs:1:1",
            live: 0,
            idle_over: 0,
            threshold: 10.0,
            derived: true,
            longest_wait: 0.0,
            oldest_idle: 0.0,
            completed: 0,
            trend: Some(t),
            lost_wakers: vec![],
        };
        assert!(Growth.check(&facts, &LeakSettings::default()).is_none());
    }

    #[test]
    fn growth_needs_half_a_window_and_a_count_still_above_the_floor() {
        // One more live task every second at a steady spawn rate.
        let ramp = |secs: u64| -> Vec<Sample> {
            (0..=secs)
                .map(|i| s(i as f64, i, 10 * i + i))
                .collect::<Vec<_>>()
        };
        let facts = |samples: &[Sample], live: u64| SiteFacts {
            site: "x.rs:1:1",
            live,
            idle_over: 0,
            threshold: 10.0,
            derived: true,
            longest_wait: 0.0,
            oldest_idle: 0.0,
            completed: 0,
            trend: trend(&samples.iter().collect::<Vec<_>>()),
            lost_wakers: vec![],
        };
        let settings = LeakSettings::default(); // 60 s window, 5 tasks
        // 20 s of history: the floor rose by 10, but a third of a window says little.
        let young = ramp(20);
        assert!(Growth.check(&facts(&young, 20), &settings).is_none());
        // 40 s: growth.
        let old = ramp(40);
        let (_, count, _) = Growth.check(&facts(&old, 40), &settings).expect("growth");
        assert_eq!(count, 20);
        // The same history, but the count is back below the risen floor now.
        assert!(Growth.check(&facts(&old, 3), &settings).is_none());
    }

    #[test]
    fn derived_threshold_follows_the_site_and_has_a_floor() {
        let s = LeakSettings::default();
        assert_eq!(s.idle_threshold(0.01), (120.0, true));
        assert_eq!(s.idle_threshold(60.0), (240.0, true));
        let fixed = LeakSettings {
            idle_threshold: Some(Duration::from_secs(2)),
            ..LeakSettings::default()
        };
        assert_eq!(fixed.idle_threshold(30.0), (2.0, false));
        assert_eq!(s.sample_interval(), Duration::from_secs(1));
        assert_eq!(s.samples_kept(), 301);
    }
}
