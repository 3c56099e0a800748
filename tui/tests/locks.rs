//! The locks view (key `l`), rendered into a `TestBackend` (NO_COLOR) and read back as
//! text.

use std::time::Instant;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use taskscope::model::{
    DeadlockStep, DelayHistogram, Evidence, Finding, FindingKind, HolderDelay, LockHolder,
    LockKind, LockMode, LockRow, LockWaiter, ProcessInfo, SCHEMA_VERSION, Severity, SiteRow,
    Snapshot,
};
use taskscope_tui::state::{App, Nav, View};
use taskscope_tui::view;

const ACCOUNTS: &str = "accounts (demo-service/src/bank.rs:12:20)";
const CACHE: &str = "demo-service/src/cache.rs:30:17";

fn hist(count: u64, sum: f64) -> DelayHistogram {
    DelayHistogram {
        bounds: vec![0.001, 0.01, 0.1, 1.0],
        counts: vec![0, count / 2, count / 2, count],
        count,
        sum,
        last_seconds: 0.0,
    }
}

fn waiter(task: u64, site: &str, waiting_seconds: f64) -> LockWaiter {
    LockWaiter {
        instance: 1,
        task: Some(task),
        task_site: Some("demo-service/src/bank.rs:80:9".into()),
        site: site.into(),
        mode: LockMode::Exclusive,
        permits: 1,
        waiting_seconds,
    }
}

/// Two locks, most waited-on first: `accounts`, deadlocked (task 17 holds it and asks for
/// it again) with three waiters, and a read-mostly cache lock with two readers.
fn snapshot() -> Snapshot {
    let accounts = LockRow {
        lock: ACCOUNTS.into(),
        kind: LockKind::Mutex,
        created_at: "demo-service/src/bank.rs:12:20".into(),
        name: Some("accounts".into()),
        instances: 1,
        acquisitions: 120,
        contended: 40,
        wait_seconds: hist(40, 12.5),
        hold_seconds: hist(120, 0.6),
        wait_share: 2.75,
        delay_by_holder_site: vec![
            HolderDelay {
                site: "demo-service/src/bank.rs:40:31".into(),
                seconds: 9.5,
                contentions: 30,
            },
            HolderDelay {
                site: "demo-service/src/bank.rs:55:31".into(),
                seconds: 2.0,
                contentions: 8,
            },
            HolderDelay {
                site: "demo-service/src/audit.rs:9:5".into(),
                seconds: 0.75,
                contentions: 1,
            },
            HolderDelay {
                site: "demo-service/src/audit.rs:19:5".into(),
                seconds: 0.25,
                contentions: 1,
            },
        ],
        holders: vec![LockHolder {
            instance: 1,
            task: Some(17),
            task_site: Some("demo-service/src/bank.rs:80:9".into()),
            site: "demo-service/src/bank.rs:40:31".into(),
            mode: LockMode::Exclusive,
            permits: 1,
            held_seconds: 4.5,
            task_idle_seconds: Some(4.4),
        }],
        waiters: vec![
            waiter(17, "demo-service/src/bank.rs:44:31", 4.4),
            waiter(18, "demo-service/src/bank.rs:55:31", 4.2),
            waiter(21, "demo-service/src/bank.rs:70:13", 1.5),
        ],
        more_holders: 0,
        more_waiters: 0,
        ..LockRow::default()
    };
    let reader = |task: u64| LockHolder {
        instance: 2,
        task: Some(task),
        task_site: None,
        site: "demo-service/src/cache.rs:61:22".into(),
        mode: LockMode::Read,
        permits: 1,
        held_seconds: 0.002,
        task_idle_seconds: None,
    };
    let cache = LockRow {
        lock: CACHE.into(),
        kind: LockKind::RwLock,
        created_at: CACHE.into(),
        name: None,
        instances: 1,
        acquisitions: 900,
        contended: 3,
        wait_seconds: hist(3, 0.2),
        hold_seconds: hist(900, 0.9),
        wait_share: 0.05,
        holders: vec![reader(30), reader(31)],
        ..LockRow::default()
    };
    let deadlock = Finding {
        kind: FindingKind::Deadlock,
        severity: Severity::Critical,
        site: ACCOUNTS.into(),
        count: 1,
        summary: format!(
            "deadlock: task 17 (spawned at demo-service/src/bank.rs:80:9) waits for exclusive \
             of {ACCOUNTS} at demo-service/src/bank.rs:44:31, which it already holds \
             (exclusive of {ACCOUNTS} at demo-service/src/bank.rs:40:31): it can never \
             proceed; 2 more tasks wait behind it"
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
    Snapshot {
        schema_version: SCHEMA_VERSION,
        uptime_seconds: 60.0,
        process: ProcessInfo {
            pid: 7,
            name: "demo".into(),
        },
        sites: vec![SiteRow {
            site: "demo-service/src/bank.rs:80:9".into(),
            live: 4,
            spawned: 4,
            ..SiteRow::default()
        }],
        findings: vec![deadlock],
        locks: vec![accounts, cache],
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

fn has_line(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| inner(l) == want)
}

/// The words of the first line containing `needle`.
fn row_words(lines: &[String], needle: &str) -> Vec<String> {
    let line = lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"));
    inner(line).split_whitespace().map(str::to_string).collect()
}

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Sizes the state like the event loop does before each draw.
fn sized(app: &mut App, width: u16, height: u16) {
    app.set_lock_viewport_rows(view::lock_table_body_rows(
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
fn l_shows_the_locks_and_the_selected_lock() {
    let mut app = app_with(snapshot());
    assert_eq!(app.toggle_locks(), View::Locks);
    sized(&mut app, 130, 40);
    let lines = screen(&app, 130, 40);
    let text = lines.join("\n");

    assert!(
        has_line(
            &lines,
            "Locks: 2   Held: 3   Waiting: 3   Lock findings: 1 crit"
        ),
        "{text}"
    );
    assert!(text.contains("Locks (2)"), "{text}");
    for col in [
        "Lock",
        "Kind",
        "Wait/s",
        "Contended",
        "Acq",
        "Waited (s)",
        "Holders",
        "Waiters",
    ] {
        assert!(text.contains(col), "missing column {col}: {text}");
    }
    // One row per lock, in the snapshot's order; the deadlocked one is marked.
    let table = lines
        .iter()
        .position(|l| l.contains("Locks (2)"))
        .expect("table");
    assert_eq!(
        row_words(&lines[table..], "accounts ("),
        words(&[
            "!",
            "accounts",
            "(demo-service/src/bank.rs:12:20)",
            "mutex",
            "2.75",
            "40",
            "120",
            "12.50",
            "1",
            "3"
        ]),
        "{text}"
    );
    assert_eq!(
        row_words(&lines[table..], CACHE),
        words(&[CACHE, "rwlock", "0.05", "3", "900", "0.20", "2", "0"]),
        "{text}"
    );

    // The detail pane of the selected (first) lock.
    assert!(
        lines.iter().any(|l| l.contains(&format!("┌ {ACCOUNTS} ─"))),
        "{text}"
    );
    assert!(
        has_line(
            &lines,
            "mutex  120 acquired, 40 contended  mean wait 312ms  mean hold 5ms  1 instance"
        ),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| inner(l).starts_with("CRIT deadlock: task 17 (spawned at")),
        "{text}"
    );
    assert!(has_line(&lines, "Holders (1):"), "{text}");
    assert!(
        has_line(
            &lines,
            "  task 17  exclusive  held 4.5s  idle 4.4s  at demo-service/src/bank.rs:40:31  \
             spawned at demo-service/src/bank.rs:80:9"
        ),
        "{text}"
    );
    assert!(has_line(&lines, "Waiters (3):"), "{text}");
    for w in [
        "  task 17  exclusive  waiting 4.4s  at demo-service/src/bank.rs:44:31",
        "  task 18  exclusive  waiting 4.2s  at demo-service/src/bank.rs:55:31",
        "  task 21  exclusive  waiting 1.5s  at demo-service/src/bank.rs:70:13",
    ] {
        assert!(has_line(&lines, w), "missing {w:?}: {text}");
    }
    // The top 3 of 4 holder sites charged with the delay.
    assert!(
        has_line(&lines, "Delay charged to holder site (4, 3 shown):"),
        "{text}"
    );
    for d in [
        "     9.5s  30 contentions  at demo-service/src/bank.rs:40:31",
        "     2.0s  8 contentions  at demo-service/src/bank.rs:55:31",
        "    750ms  1 contention  at demo-service/src/audit.rs:9:5",
    ] {
        assert!(has_line(&lines, d), "missing {d:?}: {text}");
    }
    assert!(!text.contains("audit.rs:19:5"), "{text}");
    assert!(has_line(&lines, view::LOCKS_FOOTER), "{text}");

    // Down selects the cache lock: readers, nobody waiting, no finding.
    app.navigate(Nav::Down);
    assert_eq!(app.selected_lock().map(|l| l.lock.as_str()), Some(CACHE));
    let lines = screen(&app, 130, 40);
    let text = lines.join("\n");
    assert!(has_line(&lines, "Holders (2):"), "{text}");
    assert!(
        has_line(
            &lines,
            "  task 30  read  held 2ms  at demo-service/src/cache.rs:61:22"
        ),
        "{text}"
    );
    assert!(has_line(&lines, "Waiters: none"), "{text}");
    assert!(!text.contains("CRIT"), "{text}");
    app.navigate(Nav::Down);
    assert_eq!(app.lock_selected(), 1, "clamped");

    // l again goes back to the sites table.
    assert_eq!(app.toggle_locks(), View::Sites);
    let text = screen(&app, 130, 40).join("\n");
    assert!(text.contains("Spawn sites (1)"), "{text}");
    assert!(text.contains("l locks"), "{text}");
}

#[test]
fn locks_fit_80x24() {
    let mut app = app_with(snapshot());
    app.toggle_locks();
    sized(&mut app, 80, 24);
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    assert_eq!(lines.len(), 24);
    // Kind and Acq make room for the label here; a named lock keeps its name and the end
    // of its site when cut (the pane below has it whole).
    assert_eq!(
        row_words(&lines, "bank.rs:12:20)"),
        words(&[
            "!",
            "accounts",
            "(…/src/bank.rs:12:20)",
            "2.75",
            "40",
            "12.50",
            "1",
            "3"
        ]),
        "{text}"
    );
    assert_eq!(
        row_words(&lines, "cache.rs:30:17"),
        words(&[CACHE, "0.05", "3", "0.20", "2", "0"]),
        "{text}"
    );
    // The selected lock's label, holder, a waiter, delay, all on screen.
    assert!(text.contains(&format!("┌ {ACCOUNTS} ─")), "{text}");
    assert!(
        has_line(
            &lines,
            "  task 17  exclusive  held 4.5s  idle 4.4s  at demo-service/src/bank.rs:40:31"
        ),
        "{text}"
    );
    assert!(
        has_line(&lines, "    spawned at demo-service/src/bank.rs:80:9"),
        "{text}"
    );
    // Not everything fits: each list says how much of it is shown.
    assert!(has_line(&lines, "Waiters (3, 2 shown):"), "{text}");
    assert!(
        has_line(
            &lines,
            "  task 18  exclusive  waiting 4.2s  at demo-service/src/bank.rs:55:31"
        ),
        "{text}"
    );
    assert!(text.contains("CRIT deadlock: task 17"), "{text}");
    assert!(text.contains("Delay charged to holder site"), "{text}");
    assert!(
        text.contains("9.5s  30 contentions  at demo-service/src/bank.rs:40:31"),
        "{text}"
    );
    assert_eq!(inner(&lines[23]), view::LOCKS_FOOTER, "{text}");
}

#[test]
fn no_locks_says_how_to_get_them() {
    let t0 = Instant::now();
    // Before the first snapshot: waiting, like the sites table.
    let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
    app.toggle_locks();
    let text = screen(&app, 100, 20).join("\n");
    assert!(text.contains("waiting for the first snapshot"), "{text}");

    let mut snap = snapshot();
    snap.locks.clear();
    snap.findings.clear();
    app.apply(Ok(snap), t0);
    assert_eq!(app.view(), View::Locks);
    let lines = screen(&app, 120, 20);
    let text = lines.join("\n");
    assert!(text.contains("Locks (0)"), "{text}");
    assert!(
        has_line(
            &lines,
            "no instrumented locks: use taskscope::sync::{Mutex, RwLock, Semaphore} to see \
             them here"
        ),
        "{text}"
    );
    assert!(has_line(
        &lines,
        "Locks: 0   Held: 0   Waiting: 0   Lock findings: none"
    ));
    // Narrower, the sentence wraps rather than being cut.
    let lines = screen(&app, 80, 24);
    let joined: String = lines
        .iter()
        .map(|l| inner(l).trim())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(joined.contains(view::NO_LOCKS), "{lines:#?}");
}

#[test]
fn the_selection_follows_its_lock_and_pages() {
    let mut snap = snapshot();
    let many: Vec<LockRow> = (0..30)
        .map(|i| LockRow {
            lock: format!("src/l.rs:{i}:1"),
            ..LockRow::default()
        })
        .collect();
    snap.locks.extend(many);
    let mut app = app_with(snap.clone());
    app.toggle_locks();
    sized(&mut app, 80, 24);
    let page = view::lock_table_body_rows(Rect::new(0, 0, 80, 24), &app);
    assert!(page >= 2, "{page}");
    app.navigate(Nav::PageDown);
    assert_eq!(app.lock_selected(), page);
    app.navigate(Nav::End);
    assert_eq!(app.lock_selected(), 31);
    let text = screen(&app, 80, 24).join("\n");
    assert!(text.contains("src/l.rs:29:1"), "{text}");
    assert!(!text.contains("bank.rs:12:20)"), "scrolled: {text}");
    // The cache lock moves to the top: the selection stays on it.
    app.navigate(Nav::Home);
    app.navigate(Nav::Down);
    snap.locks.swap(0, 1);
    app.apply(Ok(snap.clone()), Instant::now());
    assert_eq!(app.lock_selected(), 0);
    assert_eq!(app.selected_lock().map(|l| l.lock.as_str()), Some(CACHE));
    // Locks going away clamp the selection.
    app.navigate(Nav::End);
    snap.locks.truncate(2);
    app.apply(Ok(snap), Instant::now());
    assert_eq!((app.lock_selected(), app.lock_offset()), (1, 0));
}

#[test]
fn locks_view_honours_no_color() {
    use ratatui::style::Color;
    let mut app = app_with(snapshot());
    app.toggle_locks();
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
    app.no_color = false;
    terminal.draw(|f| view::render(f, &app)).unwrap();
    let buf = terminal.backend().buffer();
    assert!(
        buf.content().iter().any(|c| c.fg == Color::Red),
        "the ! mark"
    );
    assert!(buf.content().iter().any(|c| c.fg == Color::Yellow));
}
