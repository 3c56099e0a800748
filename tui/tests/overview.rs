//! The overview (`o`) and the sites table's sort (`S`) and filter (`/`), rendered into a
//! `TestBackend` at 80x24 (NO_COLOR) with an injected clock, read back as text.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use taskscope::model::{
    Finding, FindingKind, ProcessInfo, RuntimeInfo, SCHEMA_VERSION, Severity, SiteRow, Snapshot,
};
use taskscope_tui::state::{App, SortColumn, View};
use taskscope_tui::view;

const LEAK: &str = "demo-service/src/faults/leak.rs:42:5";
const AXUM: &str = "axum-0.8.9/src/serve/mod.rs:389:5";
const MAIN: &str = "demo-service/src/main.rs:77:9";

fn site(name: &str, live: u64, spawned: u64, completed: u64, busy: f64) -> SiteRow {
    SiteRow {
        site: name.into(),
        live,
        spawned,
        completed,
        busy_seconds: busy,
        ..SiteRow::default()
    }
}

/// At `uptime` seconds; the leak has `leak` live tasks (all spawned), axum spawns 30 a
/// second and keeps 2.
fn snapshot(uptime: f64, leak: u64) -> Snapshot {
    let axum_spawned = (uptime * 30.0) as u64;
    Snapshot {
        schema_version: SCHEMA_VERSION,
        uptime_seconds: uptime,
        process: ProcessInfo {
            pid: 4242,
            name: "demo-service".into(),
        },
        runtime: Some(RuntimeInfo {
            workers: 4,
            cpu_quota: 2.0,
            alive_tasks: 60,
            global_queue_depth: 3,
            worker_busy_ratio: vec![0.5, 1.0, 0.0, 0.25],
            blocking_threads: 5,
            idle_blocking_threads: 2,
            max_blocking_threads: Some(64),
            blocking_queue_depth: 1,
            ..RuntimeInfo::default()
        }),
        sites: vec![
            site(AXUM, 2, axum_spawned, axum_spawned - 2, 0.5),
            site(MAIN, 0, 3, 3, 9.0),
            site(LEAK, leak, leak, 0, 1.25),
        ],
        findings: vec![
            Finding {
                kind: FindingKind::Growth,
                severity: Severity::Warning,
                site: LEAK.into(),
                summary: "live tasks spawned at leak.rs grow".into(),
                ..Finding::default()
            },
            Finding {
                kind: FindingKind::IdleTooLong,
                severity: Severity::Critical,
                site: LEAK.into(),
                summary: "idle".into(),
                ..Finding::default()
            },
            Finding {
                kind: FindingKind::Growth,
                severity: Severity::Warning,
                site: AXUM.into(),
                summary: "axum grows".into(),
                ..Finding::default()
            },
        ],
        ..Snapshot::default()
    }
}

/// Four polls a second apart: the leak grows 10 a second.
fn app(t0: Instant) -> App {
    let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
    for i in 0..4u64 {
        app.apply(
            Ok(snapshot(10.0 + i as f64, 10 * (i + 1))),
            t0 + Duration::from_secs(i),
        );
    }
    app
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

fn inner(line: &str) -> &str {
    line.trim_start_matches('│')
        .trim_end_matches(|c: char| c == '│' || c.is_whitespace())
}

/// The first word of each table row holding a site, in screen order.
fn sites_in_order(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| inner(l).trim_start_matches("! ").to_string())
        .filter(|l| l.contains(".rs:"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_overview_shows_the_process_at_a_glance() {
    let t0 = Instant::now();
    let mut app = app(t0);
    app.open_overview();
    assert_eq!(app.view(), View::Overview);
    let lines = screen(&app, 80, 24);
    let text: Vec<&str> = lines.iter().map(|l| inner(l)).collect();
    assert_eq!(
        text,
        [
            "┌ taskscope › overview ────────────────────────────────────────────────────────┐",
            "Status: CONNECTED every 1.0s   Target: http://127.0.0.1:6060",
            "Process: demo-service (pid 4242)",
            "└──────────────────────────────────────────────────────────────────────────────┘",
            "┌ Tasks ───────────────────────────────────────────────────────────────────────┐",
            "Live tasks           42  ▁█",
            "Spawn rate       40.0/s  █",
            "Runtime alive        60   Global queue 3   Sites 3",
            "└──────────────────────────────────────────────────────────────────────────────┘",
            "┌ Workers: 4 on 2.0 CPUs (more workers than CPUs: they take turns) ────────────┐",
            "worker 0  ██████████░░░░░░░░░░  50%",
            "worker 1  ████████████████████ 100%",
            "worker 2  ░░░░░░░░░░░░░░░░░░░░   0%",
            "worker 3  █████░░░░░░░░░░░░░░░  25%",
            "Blocking pool 3/5 busy (max 64), 1 queued",
            "└──────────────────────────────────────────────────────────────────────────────┘",
            "┌ Findings (3) ────────────────────────────────────────────────────────────────┐",
            "By severity: 1 crit 2 warn",
            "By kind:     growth 2  idle_too_long 1",
            "└──────────────────────────────────────────────────────────────────────────────┘",
            "",
            "",
            "",
            view::OVERVIEW_FOOTER,
        ],
        "{lines:#?}"
    );
    // o, q and Esc go back to where it was opened from.
    app.close_overview();
    assert_eq!(app.view(), View::Sites);
    app.open_findings();
    app.open_overview();
    app.close_overview();
    assert_eq!(app.view(), View::Findings);
}

#[test]
fn the_overview_summarises_many_workers_and_says_when_there_are_no_facts() {
    let t0 = Instant::now();
    let mut app = App::new("http://h:1", t0).with_no_color(true);
    let mut snap = snapshot(10.0, 1);
    let runtime = snap.runtime.as_mut().unwrap();
    runtime.workers = 16;
    runtime.cpu_quota = 0.0;
    runtime.worker_busy_ratio = (0..16).map(|i| f64::from(i) / 20.0).collect();
    runtime.blocked_workers = 1;
    runtime.longest_poll_seconds = 2.5;
    app.apply(Ok(snap), t0);
    app.open_overview();
    let lines = screen(&app, 80, 30);
    let text: Vec<&str> = lines.iter().map(|l| inner(l)).collect();
    let at = text
        .iter()
        .position(|l| l.starts_with("┌ Workers: 16 ─"))
        .expect("workers box");
    assert_eq!(
        text[at + 1..at + 5],
        [
            "mean      ████████░░░░░░░░░░░░  38%",
            "busiest   ███████████████░░░░░  75% (worker 15)",
            "1 of 16 workers blocked (longest poll 2.5s)",
            "Blocking pool 3/5 busy (max 64), 1 queued",
        ],
        "{lines:#?}"
    );
    // Only one snapshot: no spawn rate yet.
    assert!(text.contains(&"Spawn rate            -"), "{lines:#?}");

    let mut empty = App::new("http://h:1", t0).with_no_color(true);
    empty.open_overview();
    let text = screen(&empty, 80, 24).join("\n");
    assert!(
        text.contains("no runtime facts yet (the runtime has not polled a task)"),
        "{text}"
    );
    assert!(text.contains("Live tasks            -"), "{text}");
}

#[test]
fn s_cycles_the_sort_column_and_the_title_names_it() {
    let t0 = Instant::now();
    let mut app = app(t0);
    let title = |app: &App| {
        screen(app, 120, 24)
            .into_iter()
            .find(|l| l.contains("Spawn sites"))
            .map(|l| {
                l.trim_matches(|c: char| c == '┌' || c == '┐' || c == '─')
                    .trim()
                    .to_string()
            })
            .unwrap()
    };
    let order = |app: &App| sites_in_order(&screen(app, 120, 24));
    assert_eq!(app.sort(), SortColumn::Live);
    assert_eq!(title(&app), "Spawn sites (3) sorted by live");
    assert_eq!(order(&app), [LEAK, AXUM, MAIN]);
    // Selection follows its site through the reorders.
    app.navigate(taskscope_tui::state::Nav::End);
    assert_eq!(app.rows()[app.selected()].site, MAIN);

    let expected = [
        (SortColumn::Delta, "Δ", [LEAK, AXUM, MAIN]),
        (SortColumn::Spawned, "spawned", [AXUM, LEAK, MAIN]),
        (SortColumn::Completed, "completed", [AXUM, MAIN, LEAK]),
        (SortColumn::Busy, "busy", [MAIN, LEAK, AXUM]),
        (SortColumn::Site, "site", [AXUM, LEAK, MAIN]),
        (SortColumn::Live, "live", [LEAK, AXUM, MAIN]),
    ];
    for (column, name, sites) in expected {
        assert_eq!(app.cycle_sort(), column);
        assert_eq!(title(&app), format!("Spawn sites (3) sorted by {name}"));
        assert_eq!(order(&app), sites, "sorted by {name}");
        assert_eq!(app.rows()[app.selected()].site, MAIN, "sorted by {name}");
    }
    // The sort holds across new snapshots.
    app.cycle_sort();
    app.cycle_sort();
    app.apply(Ok(snapshot(14.0, 50)), t0 + Duration::from_secs(4));
    assert_eq!(order(&app), [AXUM, LEAK, MAIN]);
}

#[test]
fn slash_filters_the_sites_by_text() {
    let t0 = Instant::now();
    let mut app = app(t0);
    app.start_filter();
    for c in "DEMO-service".chars() {
        app.filter_push(c);
    }
    let lines = screen(&app, 120, 24);
    assert_eq!(sites_in_order(&lines), [LEAK, MAIN]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Spawn sites (2 of 3, filter \"DEMO-service\") sorted by live")),
        "{lines:#?}"
    );
    assert_eq!(
        inner(&lines[23]),
        "/DEMO-service▏  Enter keep  Esc clear  (site contains)"
    );
    // The header still counts every site's tasks.
    assert!(
        lines.iter().any(|l| l.contains("Live tasks: 42")),
        "{lines:#?}"
    );
    app.finish_filter();
    assert!(!app.filter_editing());
    let lines = screen(&app, 120, 24);
    assert_eq!(inner(&lines[23]), view::FOOTER);
    app.filter_pop();
    for c in "e/src/m".chars() {
        app.filter_push(c);
    }
    assert_eq!(app.filter(), "DEMO-service/src/m");
    assert_eq!(sites_in_order(&screen(&app, 120, 24)), [MAIN]);
    // Nothing matches: said so, and Esc brings every site back.
    app.filter_push('x');
    let text = screen(&app, 120, 24).join("\n");
    assert!(
        text.contains("no site matches the filter (Esc clears it)"),
        "{text}"
    );
    app.clear_filter();
    assert_eq!(app.filter(), "");
    assert_eq!(sites_in_order(&screen(&app, 120, 24)), [LEAK, AXUM, MAIN]);
    // The filter is capped.
    for _ in 0..500 {
        app.filter_push('a');
    }
    assert_eq!(
        app.filter().chars().count(),
        taskscope_tui::state::MAX_FILTER_CHARS
    );
    app.clear_filter();

    // A finding whose site the filter hides still opens: the filter is dropped.
    app.start_filter();
    app.filter_push('m');
    app.filter_push('a');
    app.filter_push('i');
    app.finish_filter();
    assert_eq!(app.rows().len(), 1);
    app.open_findings();
    app.open_selected_finding();
    assert_eq!(app.view(), View::Detail);
    assert_eq!(app.detail().unwrap().site(), LEAK);
    assert_eq!(app.filter(), "");
}

#[test]
fn a_click_on_a_table_row_selects_it() {
    let t0 = Instant::now();
    let mut app = app(t0);
    let area = ratatui::layout::Rect::new(0, 0, 120, 24);
    let lines = screen(&app, 120, 24);
    let y = |needle: &str| {
        u16::try_from(lines.iter().position(|l| l.contains(needle)).unwrap()).unwrap()
    };
    let main = y(MAIN);
    assert_eq!(view::table_row_at(area, &app, 5, main), Some(2));
    app.select_index(2);
    assert_eq!(app.rows()[app.selected()].site, MAIN);
    // The column titles, the borders and the blank rows below the last site are not rows.
    let titles = y("Completed");
    assert_eq!(view::table_row_at(area, &app, 5, titles), None);
    assert_eq!(view::table_row_at(area, &app, 0, main), None);
    assert_eq!(view::table_row_at(area, &app, 119, main), None);
    assert_eq!(view::table_row_at(area, &app, 5, main + 1), None);
    // In the findings view, its own table: the third finding's row selects it.
    app.open_findings();
    let lines = screen(&app, 120, 24);
    let third = lines.iter().position(|l| l.contains("axum-0.8.9")).unwrap();
    assert_eq!(
        view::table_row_at(area, &app, 5, u16::try_from(third).unwrap()),
        Some(2),
        "{lines:#?}"
    );
    app.select_index(2);
    assert_eq!(app.selected_finding().unwrap().summary, "axum grows");
    // Nothing to click in the overview.
    app.open_overview();
    assert_eq!(view::table_row_at(area, &app, 5, 6), None);
}
