//! `/debug/taskscope/locks` as text: each lock with its counters, holders, waiters and the
//! holder sites charged with the delay, then the lock findings.

use std::fmt::Write as _;

use taskscope::model::{Finding, FindingKind, LockKind, LockRow};

/// Whether a finding is about locks.
pub(crate) fn is_lock_finding(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::Deadlock | FindingKind::GuardAcrossAwait | FindingKind::HotLock
    )
}

fn kind(k: LockKind) -> &'static str {
    match k {
        LockKind::Mutex => "mutex",
        LockKind::RwLock => "rwlock",
        LockKind::Semaphore => "semaphore",
        LockKind::BlockingMutex => "blocking mutex",
        LockKind::BlockingRwLock => "blocking rwlock",
        LockKind::Unknown => "lock",
    }
}

fn task(task: Option<u64>, site: Option<&str>) -> String {
    match (task, site) {
        (Some(t), Some(s)) => format!("task {t} (spawned at {s})"),
        (Some(t), None) => format!("task {t}"),
        (None, _) => "outside any task".to_string(),
    }
}

/// The text page.
pub(crate) fn render(locks: &[LockRow], findings: &[&Finding]) -> String {
    let mut out = String::new();
    if locks.is_empty() {
        out.push_str(
            "no instrumented locks: use taskscope::sync::{Mutex, RwLock, Semaphore} (and \
             taskscope::sync::blocking::Mutex) to see them here\n",
        );
    } else {
        let _ = writeln!(
            out,
            "{} locks (taskscope::sync), most waited-on first; times in seconds\n",
            locks.len()
        );
    }
    for l in locks {
        let _ = writeln!(out, "{} [{}], {} alive", l.lock, kind(l.kind), l.instances);
        let _ = writeln!(
            out,
            "  acquisitions {}, contended {}, waiting {:.2}/s now, wait total {:.3}, hold total {:.3}",
            l.acquisitions, l.contended, l.wait_share, l.wait_seconds.sum, l.hold_seconds.sum
        );
        if !l.holders.is_empty() || l.more_holders > 0 {
            let _ = writeln!(
                out,
                "  holders ({}):",
                l.holders.len() as u64 + l.more_holders
            );
            for h in &l.holders {
                let idle = h
                    .task_idle_seconds
                    .map_or(String::new(), |i| format!(", task idle {i:.1}"));
                let _ = writeln!(
                    out,
                    "    {} {} at {}, held {:.3}{idle}",
                    task(h.task, h.task_site.as_deref()),
                    h.mode.as_str(),
                    h.site,
                    h.held_seconds
                );
            }
            if l.more_holders > 0 {
                let _ = writeln!(out, "    ... and {} more", l.more_holders);
            }
        }
        if !l.waiters.is_empty() || l.more_waiters > 0 {
            let _ = writeln!(
                out,
                "  waiters ({}):",
                l.waiters.len() as u64 + l.more_waiters
            );
            for w in &l.waiters {
                let _ = writeln!(
                    out,
                    "    {} {} at {}, waiting {:.3}",
                    task(w.task, w.task_site.as_deref()),
                    w.mode.as_str(),
                    w.site,
                    w.waiting_seconds
                );
            }
            if l.more_waiters > 0 {
                let _ = writeln!(out, "    ... and {} more", l.more_waiters);
            }
        }
        if !l.delay_by_holder_site.is_empty() {
            out.push_str("  delay charged to the holder's acquire site:\n");
            for d in &l.delay_by_holder_site {
                let _ = writeln!(
                    out,
                    "    {:>10.3}  {:>6} waits  {}",
                    d.seconds, d.contentions, d.site
                );
            }
        }
        out.push('\n');
    }
    if !findings.is_empty() {
        out.push_str("findings:\n");
        for f in findings {
            let _ = writeln!(
                out,
                "  {}: {}",
                f.severity.as_str().to_uppercase(),
                f.summary
            );
        }
    }
    out
}
