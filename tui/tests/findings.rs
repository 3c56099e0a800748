//! The findings view (key `f`), rendered into a `TestBackend` (NO_COLOR) and read back as
//! text; Enter on a finding opens its site's detail or its lock.

use std::time::Instant;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use taskscope::model::{
    DeadlockStep, Evidence, Finding, FindingKind, LockMode, LockRow, ProcessInfo, SCHEMA_VERSION,
    Severity, SiteRow, Snapshot,
};
use taskscope_tui::state::{App, FindingTarget, Nav, View};
use taskscope_tui::view;

const ACCOUNTS: &str = "accounts (demo-service/src/bank.rs:12:20)";
const CACHE: &str = "demo-service/src/cache.rs:30:17";
const LEAK: &str = "demo-service/src/faults/leak.rs:42:5";

/// Two spawn sites, two locks (the deadlocked one second), and two findings, most severe
/// first: a deadlock on `accounts` and idle tasks at the leak site.
fn snapshot() -> Snapshot {
    let deadlock = Finding {
        kind: FindingKind::Deadlock,
        severity: Severity::Critical,
        site: ACCOUNTS.into(),
        count: 1,
        summary: format!(
            "deadlock: task 17 waits for exclusive of {ACCOUNTS}, which it already holds: \
             it can never proceed; 2 more tasks wait behind it"
        ),
        fragment: "tasks in a lock cycle".into(),
        evidence: Evidence::Deadlock {
            cycle: vec![DeadlockStep {
                task: Some(17),
                task_site: Some("demo-service/src/bank.rs:80:9".into()),
                waits_for: ACCOUNTS.into(),
                wait_site: "demo-service/src/bank.rs:44:31".into(),
                wait_mode: LockMode::Exclusive,
                waiting_seconds: 4.4,
                holds: vec![format!(
                    "exclusive of {ACCOUNTS} at demo-service/src/bank.rs:40:31"
                )],
            }],
            blocked_behind: 2,
        },
    };
    let idle = Finding {
        kind: FindingKind::IdleTooLong,
        severity: Severity::Warning,
        site: LEAK.into(),
        count: 7,
        summary: format!(
            "7 tasks spawned at {LEAK} have been idle for more than 10.0 s (oldest 42.1 s); \
             tasks there normally wait at most 200ms"
        ),
        fragment: "tasks idle for more than 10.0 s".into(),
        evidence: Evidence::IdleTooLong {
            threshold_seconds: 10.0,
            derived: true,
            longest_wait_seconds: 0.2,
            oldest_idle_seconds: 42.1,
            live: 7,
        },
    };
    let lock = |name: &str| LockRow {
        lock: name.into(),
        ..LockRow::default()
    };
    Snapshot {
        schema_version: SCHEMA_VERSION,
        process: ProcessInfo {
            pid: 7,
            name: "demo".into(),
        },
        sites: vec![
            SiteRow {
                site: "demo-service/src/bank.rs:80:9".into(),
                live: 12,
                spawned: 12,
                ..SiteRow::default()
            },
            SiteRow {
                site: LEAK.into(),
                live: 7,
                spawned: 7,
                ..SiteRow::default()
            },
        ],
        locks: vec![lock(CACHE), lock(ACCOUNTS)],
        findings: vec![deadlock, idle],
        ..Snapshot::default()
    }
}

fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::render(f, app)).unwrap();
    let buf = terminal.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

/// A line's text without the pane's borders and trailing blanks.
fn inner(line: &str) -> &str {
    line.trim_start_matches('│')
        .trim_end_matches(|c: char| c == '│' || c.is_whitespace())
}

/// The inner lines of the pane whose title starts with `title`, up to its bottom border,
/// without the blank lines at its end.
fn pane(lines: &[String], title: &str) -> Vec<String> {
    let top = lines
        .iter()
        .position(|l| l.starts_with(&format!("┌ {title}")))
        .unwrap_or_else(|| panic!("no pane {title:?} in {lines:#?}"));
    let mut pane: Vec<String> = lines[top + 1..]
        .iter()
        .take_while(|l| !l.starts_with('└'))
        .map(|l| inner(l).to_string())
        .collect();
    while pane.last().is_some_and(String::is_empty) {
        pane.pop();
    }
    pane
}

/// Sizes the state like the event loop does before each draw.
fn sized(app: &mut App, width: u16, height: u16) {
    app.set_finding_viewport_rows(view::finding_table_body_rows(
        Rect::new(0, 0, width, height),
        app,
    ));
}

fn app_with(snap: Snapshot) -> App {
    let t0 = Instant::now();
    let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
    app.apply(Ok(snap), t0);
    app
}

#[test]
fn f_lists_every_finding_with_the_selected_ones_evidence() {
    let mut app = app_with(snapshot());
    app.open_findings();
    assert_eq!(app.view(), View::Findings);
    sized(&mut app, 80, 24);
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    assert_eq!(lines.len(), 24);
    assert!(lines[0].starts_with("┌ taskscope › findings ─"), "{text}");
    assert_eq!(inner(&lines[2]), "Findings: 1 crit 1 warn", "{text}");

    // One row per finding, most severe first: severity, kind, site, count.
    assert_eq!(
        pane(&lines, "Findings (2)"),
        [
            "Sev  Kind          Site                                                  Count",
            "CRIT deadlock      accounts (demo-service/src/bank.rs:12:20)                 1",
            "WARN idle_too_long demo-service/src/faults/leak.rs:42:5                      7",
        ],
        "{text}"
    );
    // The selected (first) finding in full: what Enter opens, site, summary, evidence.
    assert_eq!(
        pane(&lines, "Finding 1 of 2"),
        [
            "Enter: the locks view on accounts (demo-service/src/bank.rs:12:20)",
            "Site: accounts (demo-service/src/bank.rs:12:20)",
            "deadlock: task 17 waits for exclusive of accounts",
            "(demo-service/src/bank.rs:12:20), which it already holds: it can never",
            "proceed; 2 more tasks wait behind it",
            "Evidence:",
            "  task 17 waits 4.4s for exclusive of accounts",
            "    (demo-service/src/bank.rs:12:20) at demo-service/src/bank.rs:44:31",
            "    spawned at demo-service/src/bank.rs:80:9",
            "    holds exclusive of accounts (demo-service/src/bank.rs:12:20) at",
            "      demo-service/src/bank.rs:40:31",
            "  2 more tasks wait behind the cycle",
        ],
        "{text}"
    );
    assert_eq!(inner(&lines[23]), view::FINDINGS_FOOTER, "{text}");

    app.navigate(Nav::Down);
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    assert_eq!(
        pane(&lines, "Finding 2 of 2"),
        [
            "Enter: this spawn site's detail and task dump",
            "Site: demo-service/src/faults/leak.rs:42:5",
            "7 tasks spawned at demo-service/src/faults/leak.rs:42:5 have been idle for",
            "more than 10.0 s (oldest 42.1 s); tasks there normally wait at most 200ms",
            "Evidence:",
            "  idle threshold 10.0s (from the site's own waits)",
            "  longest wait that ended in a poll 200ms",
            "  oldest idle 42.1s, 7 live",
        ],
        "{text}"
    );
    app.navigate(Nav::Down);
    assert_eq!(app.finding_selected(), 1, "clamped");
}

#[test]
fn enter_on_a_site_finding_opens_the_sites_detail() {
    let mut app = app_with(snapshot());
    app.open_findings();
    app.navigate(Nav::Down);
    assert_eq!(
        app.finding_target(app.selected_finding().unwrap()),
        FindingTarget::Site(LEAK.into())
    );
    assert_eq!(app.open_selected_finding(), View::Detail);
    // As Enter on the sites table: that site selected, its detail open, a dump asked for.
    assert_eq!(app.rows()[app.selected()].site, LEAK);
    assert_eq!(app.detail().map(|d| d.site()), Some(LEAK));
    assert_eq!(
        app.take_dump_request().map(|r| r.site).as_deref(),
        Some(LEAK)
    );
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    assert!(lines[0].starts_with("┌ taskscope › spawn site ─"), "{text}");
    assert_eq!(inner(&lines[2]), format!("Site: {LEAK}"), "{text}");
    assert_eq!(
        inner(&lines[3]),
        "Live: 7   Spawned: 7   Completed: 0   Busy: 0.00s",
        "{text}"
    );
    assert!(text.contains("WARN 7 tasks spawned at"), "{text}");
    // Back goes to the findings, where it was.
    app.close_detail();
    assert_eq!(app.view(), View::Findings);
    assert_eq!(app.finding_selected(), 1);
    // And from there back to the sites table.
    app.close_findings();
    assert_eq!(app.view(), View::Sites);
    assert!(app.open_detail());
    app.close_detail();
    assert_eq!(app.view(), View::Sites, "from the table, back to the table");
}

#[test]
fn enter_on_a_deadlock_opens_the_locks_view_on_its_lock() {
    let mut app = app_with(snapshot());
    assert_eq!(app.selected_lock().map(|l| l.lock.as_str()), Some(CACHE));
    app.open_findings();
    assert_eq!(
        app.finding_target(app.selected_finding().unwrap()),
        FindingTarget::Lock(Some(ACCOUNTS.into()))
    );
    assert_eq!(app.open_selected_finding(), View::Locks);
    assert_eq!(app.lock_selected(), 1);
    assert_eq!(app.selected_lock().map(|l| l.lock.as_str()), Some(ACCOUNTS));
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    assert!(lines[0].starts_with("┌ taskscope › locks ─"), "{text}");
    // The detail pane is the deadlocked lock's, with the finding.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("┌ {ACCOUNTS} ─"))),
        "{text}"
    );
    assert!(text.contains("CRIT deadlock: task 17 waits"), "{text}");
    // Back goes to the findings.
    app.close_locks();
    assert_eq!(app.view(), View::Findings);
    // From the table, l still goes back to the table.
    app.close_findings();
    assert_eq!(app.toggle_locks(), View::Locks);
    assert_eq!(app.toggle_locks(), View::Sites);
}

#[test]
fn a_lock_finding_without_its_lock_still_opens_the_locks_view() {
    let mut snap = snapshot();
    snap.locks.retain(|l| l.lock != ACCOUNTS);
    let mut app = app_with(snap);
    app.open_findings();
    assert_eq!(
        app.finding_target(app.selected_finding().unwrap()),
        FindingTarget::Lock(None)
    );
    let text = screen(&app, 80, 24).join("\n");
    assert!(
        text.contains("Enter: the locks view (no lock matches)"),
        "{text}"
    );
    assert_eq!(app.open_selected_finding(), View::Locks);
    assert_eq!(app.selected_lock().map(|l| l.lock.as_str()), Some(CACHE));
}

#[test]
fn a_finding_elsewhere_opens_nothing_and_says_so() {
    let mut snap = snapshot();
    snap.findings[1].site = "gone.rs:1:1".into();
    let mut app = app_with(snap);
    app.open_findings();
    app.navigate(Nav::End);
    assert_eq!(
        app.finding_target(app.selected_finding().unwrap()),
        FindingTarget::Nothing
    );
    assert_eq!(app.open_selected_finding(), View::Findings);
    assert_eq!(app.take_dump_request(), None);
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    assert!(
        text.contains("not a spawn site of the table: Enter opens nothing"),
        "{text}"
    );
    assert_eq!(
        inner(&lines[23]),
        "nothing to open: gone.rs:1:1 is not a spawn site of the table",
        "{text}"
    );
}

#[test]
fn no_findings_says_so_and_the_selection_follows_its_finding() {
    let mut snap = snapshot();
    let mut app = app_with(snap.clone());
    app.open_findings();
    app.navigate(Nav::Down);
    // The order changes: the idle finding stays selected.
    snap.findings.swap(0, 1);
    app.apply(Ok(snap.clone()), Instant::now());
    assert_eq!(app.finding_selected(), 0);
    assert_eq!(app.selected_finding().map(|f| f.site.as_str()), Some(LEAK));
    snap.findings.clear();
    app.apply(Ok(snap), Instant::now());
    assert_eq!(app.selected_finding(), None);
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    assert_eq!(pane(&lines, "Findings (0)"), [view::NO_FINDINGS], "{text}");
    assert_eq!(inner(&lines[2]), "Findings: none", "{text}");
    // Before the first snapshot: waiting.
    let mut app = App::new("http://127.0.0.1:6060", Instant::now()).with_no_color(true);
    app.open_findings();
    let text = screen(&app, 80, 24).join("\n");
    assert!(text.contains("waiting for the first snapshot"), "{text}");
}

#[test]
fn findings_view_honours_no_color() {
    use ratatui::style::Color;
    let mut app = app_with(snapshot());
    app.open_findings();
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    terminal.draw(|f| view::render(f, &app)).unwrap();
    assert!(
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
    );
    app.toggle_help();
    app.toggle_pause(Instant::now());
    terminal.draw(|f| view::render(f, &app)).unwrap();
    assert!(
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
    );
    app.no_color = false;
    terminal.draw(|f| view::render(f, &app)).unwrap();
    let buf = terminal.backend().buffer();
    assert!(buf.content().iter().any(|c| c.fg == Color::Yellow));
    app.close_help();
    terminal.draw(|f| view::render(f, &app)).unwrap();
    let buf = terminal.backend().buffer();
    assert!(buf.content().iter().any(|c| c.fg == Color::Red), "CRIT");
}
