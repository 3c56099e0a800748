//! `taskscope console --once` as text: the sites, the findings, the locks console sees and
//! what it cannot tell, for a shell or a script that does not want JSON.

use std::fmt::Write as _;

use super::to_model::ConsoleReport;

/// Most site rows printed; the JSON has them all.
const MAX_SITE_LINES: usize = 50;

/// Renders a report as `taskscope console --once` prints it.
pub fn render(r: &ConsoleReport) -> String {
    let s = &r.snapshot;
    let mut out = String::new();
    let live: u64 = s.sites.iter().map(|x| x.live).sum();
    let _ = writeln!(
        out,
        "{}: {live} live tasks at {} spawn sites ({} updates read)",
        r.console.url,
        s.sites.len(),
        r.console.updates
    );
    let _ = writeln!(
        out,
        "{:>7} {:>8} {:>9} {:>9} {:>10}  SITE",
        "LIVE", "SPAWNED", "COMPLETED", "IDLE>THR", "OLDEST-IDLE"
    );
    for row in s.sites.iter().take(MAX_SITE_LINES) {
        let _ = writeln!(
            out,
            "{:>7} {:>8} {:>9} {:>9} {:>9.1}s  {}",
            row.live,
            row.spawned,
            row.completed,
            row.idle_over_threshold,
            row.oldest_idle_seconds,
            row.site
        );
    }
    if s.sites.len() > MAX_SITE_LINES {
        let _ = writeln!(
            out,
            "... {} more sites (--json lists them all)",
            s.sites.len() - MAX_SITE_LINES
        );
    }
    if s.findings.is_empty() {
        out.push_str("no findings\n");
    }
    for f in &s.findings {
        let _ = writeln!(
            out,
            "{} {}: {}",
            f.severity.as_str(),
            f.kind.as_str(),
            f.summary
        );
    }
    for l in &s.locks {
        let _ = writeln!(
            out,
            "lock {:?} {}: {} instances, {} held, {} waiting",
            l.kind,
            l.lock,
            l.instances,
            l.holders.len() as u64 + l.more_holders,
            l.waiters.len() as u64 + l.more_waiters
        );
    }
    let [tasks, resources, ops] = r.console.dropped_events;
    if tasks + resources + ops > 0 {
        let _ = writeln!(
            out,
            "console dropped events (its buffer was full): {tasks} task, {resources} resource, \
             {ops} async op events; counts may be short"
        );
    }
    for cap in &s.agent.caps {
        if cap.dropped > 0 {
            let _ = writeln!(
                out,
                "cap {} ({}) turned away {}: not counted above",
                cap.cap, cap.capacity, cap.dropped
            );
        }
    }
    out.push_str("not available from console-subscriber:\n");
    for why in &r.console.unavailable {
        let _ = writeln!(out, "  - {why}");
    }
    out
}
