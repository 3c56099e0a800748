//! Text renderings of a task dump, in the spirit of Go's `goroutine?debug=1` (groups with
//! counts) and `debug=2` (every task).

use std::fmt::Write as _;

use taskscope::model::{Dump, DumpSource, Frame, Spread, TaskState};

/// The dump's header: what it is, how complete, how long it took.
fn header(out: &mut String, dump: &Dump) {
    let source = match dump.source {
        DumpSource::Traced => "traced",
        DumpSource::Registry => "registry only",
        DumpSource::Unknown => "unknown source",
    };
    let _ = writeln!(
        out,
        "task dump: {} tasks in {} groups ({source}{}), taken in {:.1} ms, runtime paused {:.1} ms",
        dump.total_tasks,
        dump.groups.len(),
        if dump.complete { "" } else { ", INCOMPLETE" },
        dump.took_seconds * 1e3,
        dump.paused_seconds * 1e3,
    );
    for note in &dump.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for b in &dump.blocked {
        let _ = writeln!(
            out,
            "blocked: task {} spawned at {} has been in one poll for {:.2} s",
            b.task, b.site, b.seconds
        );
    }
    out.push('\n');
}

fn stacks(out: &mut String, stacks: &[Vec<Frame>]) {
    if stacks.is_empty() {
        out.push_str("#\t(no await point: registry only, or not traced)\n");
    }
    for (i, stack) in stacks.iter().enumerate() {
        if i > 0 {
            out.push_str("#\t-- and, awaited at the same time:\n");
        }
        for f in stack {
            let _ = writeln!(out, "#\t{}\t{}:{}", f.function, f.file, f.line);
        }
    }
}

fn spread(s: &Spread) -> String {
    format!("{:.3}/{:.3}/{:.3}s", s.min, s.median, s.max)
}

/// `debug=1`: one block per group, largest first.
pub(crate) fn groups(dump: &Dump) -> String {
    let mut out = String::new();
    header(&mut out, dump);
    for g in &dump.groups {
        let _ = writeln!(
            out,
            "{} @ {}\tidle min/median/max {}\tage {}",
            g.count,
            g.site,
            spread(&g.idle_seconds),
            spread(&g.age_seconds)
        );
        stacks(&mut out, &g.stacks);
        out.push('\n');
    }
    out
}

/// `debug=2`: every task, oldest first.
pub(crate) fn tasks(dump: &Dump) -> String {
    let mut out = String::new();
    header(&mut out, dump);
    for t in &dump.tasks {
        let state = match t.state {
            TaskState::Running => "running",
            TaskState::Idle => "idle",
            TaskState::Unknown => "unknown",
        };
        let _ = writeln!(
            out,
            "task {} [{state}, idle {:.3}s, age {:.3}s, {} polls] spawned at {}",
            t.id, t.idle_seconds, t.age_seconds, t.polls, t.site
        );
        stacks(&mut out, &t.stacks);
        out.push('\n');
    }
    out
}
