//! `taskscope top`: what the runtime's workers are doing right now, as text. Which task on
//! which worker has been in one poll for how long (blocked workers first), how busy each
//! worker is, the blocking pool and the scheduling delay; for a service that has stopped
//! answering, one command from the shell.

use std::fmt::Write as _;

use taskscope::model::{FindingKind, Snapshot};

/// Findings `top` shows: the starvation ones.
fn is_starvation(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::BlockedWorker
            | FindingKind::AllWorkersBlocked
            | FindingKind::BlockingPoolSaturated
    )
}

/// Renders a snapshot as `taskscope top` prints it.
///
/// ```
/// let snap = taskscope::model::Snapshot::default();
/// let text = taskscope_tui::top::render(&snap);
/// assert!(text.contains("no runtime facts"));
/// ```
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    let Some(rt) = &snap.runtime else {
        out.push_str("no runtime facts yet: the runtime has not polled a task\n");
        return out;
    };
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    let busy: Vec<String> = rt.worker_busy_ratio.iter().map(|x| pct(*x)).collect();
    let _ = writeln!(
        out,
        "workers {} on {:.1} CPUs   blocked {}   busy {}   global queue {}",
        rt.workers,
        rt.cpu_quota,
        rt.blocked_workers,
        if busy.is_empty() {
            "-".to_string()
        } else {
            busy.join(" ")
        },
        rt.global_queue_depth
    );
    let d = &rt.scheduling_delay;
    let mean = if d.count > 0 {
        d.sum / d.count as f64
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "scheduling delay: now {}, mean {} over {} probes",
        fmt_secs(d.last_seconds),
        fmt_secs(mean),
        d.count
    );
    let _ = writeln!(
        out,
        "blocking pool: {}/{} threads busy, {} queued{}",
        rt.blocking_threads.saturating_sub(rt.idle_blocking_threads),
        rt.blocking_threads,
        rt.blocking_queue_depth,
        if rt.blocking_saturated_seconds > 0.0 {
            format!(
                ", saturated for {}",
                fmt_secs(rt.blocking_saturated_seconds)
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "\npolls in progress (blocked beyond {}):",
        fmt_secs(rt.blocked_threshold_seconds)
    );
    if snap.polls_in_progress.is_empty() {
        out.push_str("  none\n");
    } else {
        let _ = writeln!(
            out,
            "  {:>6} {:>10} {:>8}  {:<7}  SITE",
            "WORKER", "TASK", "FOR", "STATE"
        );
        for p in &snap.polls_in_progress {
            let worker = p.worker.map_or("-".to_string(), |w| w.to_string());
            let state = if p.worker.is_some() && p.seconds > rt.blocked_threshold_seconds {
                "BLOCKED"
            } else {
                "running"
            };
            let _ = writeln!(
                out,
                "  {worker:>6} {:>10} {:>8}  {state:<7}  {}",
                p.task,
                fmt_secs(p.seconds),
                p.site
            );
        }
    }
    let findings: Vec<_> = snap
        .findings
        .iter()
        .filter(|f| is_starvation(f.kind))
        .collect();
    out.push_str("\nfindings:\n");
    if findings.is_empty() {
        out.push_str("  none\n");
    }
    for f in findings {
        let _ = writeln!(
            out,
            "  {}: {}",
            f.severity.as_str().to_uppercase(),
            f.summary
        );
    }
    let others = snap
        .findings
        .iter()
        .filter(|f| !is_starvation(f.kind))
        .count();
    if others > 0 {
        let _ = writeln!(
            out,
            "  (and {others} leak findings: see the TUI or the snapshot)"
        );
    }
    out
}

fn fmt_secs(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        "-".into()
    } else if secs < 0.001 {
        format!("{:.0}µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.0}ms", secs * 1e3)
    } else {
        format!("{secs:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope::model::{
        DelayHistogram, Evidence, Finding, PollInProgress, RuntimeInfo, Severity,
    };

    #[test]
    fn blocked_workers_come_out_with_their_sites() {
        let snap = Snapshot {
            runtime: Some(RuntimeInfo {
                workers: 2,
                cpu_quota: 2.0,
                blocked_workers: 1,
                longest_poll_seconds: 1.5,
                blocked_threshold_seconds: 0.1,
                worker_busy_ratio: vec![1.0, 0.25],
                blocking_threads: 4,
                idle_blocking_threads: 0,
                blocking_queue_depth: 3,
                blocking_saturated_seconds: 2.0,
                scheduling_delay: DelayHistogram {
                    count: 4,
                    sum: 0.002,
                    last_seconds: 0.0004,
                    ..DelayHistogram::default()
                },
                ..RuntimeInfo::default()
            }),
            polls_in_progress: vec![
                PollInProgress {
                    worker: Some(1),
                    task: 17,
                    site: "src/spin.rs:10:5".into(),
                    seconds: 1.5,
                },
                PollInProgress {
                    worker: Some(0),
                    task: 3,
                    site: "src/ok.rs:1:1".into(),
                    seconds: 0.002,
                },
            ],
            findings: vec![Finding {
                kind: FindingKind::BlockedWorker,
                severity: Severity::Critical,
                site: "src/spin.rs:10:5".into(),
                count: 1,
                summary: "task 17 blocks worker 1".into(),
                fragment: String::new(),
                evidence: Evidence::Unknown,
            }],
            ..Snapshot::default()
        };
        let text = render(&snap);
        assert_eq!(
            text,
            "workers 2 on 2.0 CPUs   blocked 1   busy 100% 25%   global queue 0\n\
             scheduling delay: now 400µs, mean 500µs over 4 probes\n\
             blocking pool: 4/4 threads busy, 3 queued, saturated for 2.0s\n\
             \n\
             polls in progress (blocked beyond 100ms):\n\
             \x20 WORKER       TASK      FOR  STATE    SITE\n\
             \x20      1         17     1.5s  BLOCKED  src/spin.rs:10:5\n\
             \x20      0          3      2ms  running  src/ok.rs:1:1\n\
             \n\
             findings:\n\
             \x20 CRITICAL: task 17 blocks worker 1\n"
        );
    }
}
