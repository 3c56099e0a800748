//! taskscope's leak indicators over what console reports: lost wakers (certain) and tasks
//! idle too long (suspected), as findings of the same shape and wording as the agent's
//! (`taskscope::leaks`), so the TUI's findings view and scripts read them alike.
//!
//! The agent's indicators work on its own registry and are private to it; the rules are
//! restated here over console's facts, with the agent's public constants
//! ([`taskscope::leaks::IDLE_FACTOR`], [`taskscope::LeakSettings`]).

use taskscope::LeakSettings;
use taskscope::leaks::IDLE_FACTOR;
use taskscope::model::{Evidence, Finding, FindingKind, Severity};

/// A lost-waker candidate must have been idle this long (the agent's minimum too): a task
/// between dropping one waker and registering the next is not lost.
pub const LOST_WAKER_MIN_IDLE: f64 = 1.0;

/// What the indicators need to know of one site.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteFacts {
    /// `file:line:col`.
    pub site: String,
    /// Live tasks.
    pub live: u64,
    /// Tasks that ended.
    pub completed: u64,
    /// Live tasks idle for longer than `threshold`.
    pub idle_over: u64,
    /// The idle threshold, seconds.
    pub threshold: f64,
    /// Whether it was derived from the site's waits.
    pub derived: bool,
    /// The longest wait seen to end in a poll, seconds.
    pub longest_wait: f64,
    /// Idle time of the longest-idle live task, seconds.
    pub oldest_idle: f64,
    /// Live, idle tasks with no waker left: (task id, idle seconds).
    pub lost_wakers: Vec<(u64, f64)>,
}

/// The idle threshold of a site whose longest ended wait is `longest_wait` seconds, and
/// whether it was derived (the agent's rule: a fixed threshold if set, else
/// `max(idle_floor, IDLE_FACTOR x longest wait)`).
pub fn idle_threshold(settings: &LeakSettings, longest_wait: f64) -> (f64, bool) {
    match settings.idle_threshold {
        Some(fixed) => (fixed.as_secs_f64(), false),
        None => (
            (IDLE_FACTOR * longest_wait).max(settings.idle_floor.as_secs_f64()),
            true,
        ),
    }
}

/// Rounds to the microsecond, like every duration in the model.
pub fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn tasks(n: u64) -> String {
    if n == 1 {
        "1 task".to_string()
    } else {
        format!("{n} tasks")
    }
}

/// The findings for one site: lost wakers first, then idle too long.
pub fn findings_for(f: &SiteFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    if !f.lost_wakers.is_empty() {
        let mut lost = f.lost_wakers.clone();
        lost.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let count = lost.len() as u64;
        let oldest = round(lost[0].1);
        out.push(Finding {
            kind: FindingKind::LostWaker,
            severity: Severity::Critical,
            site: f.site.clone(),
            count,
            summary: format!(
                "{} spawned at {} {} lost {} waker: idle and nothing holds a waker to wake \
                 {}, so {} can never run again (idle up to {oldest:.1} s)",
                tasks(count),
                f.site,
                if count == 1 { "has" } else { "have" },
                if count == 1 { "its" } else { "their" },
                if count == 1 { "it" } else { "them" },
                if count == 1 { "it" } else { "they" },
            ),
            fragment: "tasks have lost their waker".into(),
            evidence: Evidence::LostWaker {
                task_ids: lost.iter().take(10).map(|t| t.0).collect(),
                oldest_idle_seconds: oldest,
            },
        });
    }
    // As in the agent: a site none of whose tasks ever finished runs long-lived tasks (a
    // listener, an actor), for which a long wait is the job, not evidence.
    if f.idle_over > 0 && f.completed > 0 {
        let why = if f.derived {
            format!(
                "tasks there normally finish, and none waited more than {:.1} s before being \
                 woken",
                f.longest_wait
            )
        } else {
            "the fixed idle threshold".to_string()
        };
        out.push(Finding {
            kind: FindingKind::IdleTooLong,
            severity: Severity::Warning,
            site: f.site.clone(),
            count: f.idle_over,
            summary: format!(
                "{} of {} spawned at {} {} idle for more than {:.1} s (oldest {:.1} s); {why}",
                tasks(f.idle_over),
                f.live,
                f.site,
                if f.idle_over == 1 {
                    "has been"
                } else {
                    "have been"
                },
                f.threshold,
                f.oldest_idle,
            ),
            fragment: format!("tasks idle for more than {:.1} s", f.threshold),
            evidence: Evidence::IdleTooLong {
                threshold_seconds: round(f.threshold),
                derived: f.derived,
                longest_wait_seconds: round(f.longest_wait),
                oldest_idle_seconds: round(f.oldest_idle),
                live: f.live,
            },
        });
    }
    out
}

/// Most severe first, then most tasks, then by site (the agent's order).
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .rank()
            .cmp(&a.severity.rank())
            .then(b.count.cmp(&a.count))
            .then(a.site.cmp(&b.site))
            .then(a.kind.cmp(&b.kind))
    });
}
