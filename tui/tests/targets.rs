//! Several targets (`taskscope URL1 URL2 ...`): the picker line, switching, the overview's
//! sum, a dead target next to live ones, and a restarted target shown as a new process;
//! rendered into a `TestBackend` (NO_COLOR) with an injected clock.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use taskscope::model::{Dump, ProcessInfo, SCHEMA_VERSION, SiteRow, Snapshot};
use taskscope_tui::client::FetchError;
use taskscope_tui::state::{App, View, Workbench};
use taskscope_tui::view;

fn snapshot(pid: u32, name: &str, live: u64, uptime: f64) -> Snapshot {
    Snapshot {
        schema_version: SCHEMA_VERSION,
        uptime_seconds: uptime,
        process: ProcessInfo {
            pid,
            name: name.into(),
        },
        sites: vec![SiteRow {
            site: format!("{name}/src/main.rs:10:5"),
            live,
            spawned: live,
            ..SiteRow::default()
        }],
        ..Snapshot::default()
    }
}

fn screen(wb: &Workbench, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::render_workbench(f, wb)).unwrap();
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

/// api (pid 100, 7 live), a dead target, worker (pid 200, 5 live).
fn workbench(t0: Instant) -> Workbench {
    let app = |url: &str| App::new(url, t0).with_no_color(true);
    let mut api = app("http://127.0.0.1:6060");
    api.apply(Ok(snapshot(100, "api", 7, 50.0)), t0);
    let mut dead = app("http://127.0.0.1:6061");
    dead.apply(
        Err(FetchError::ConnectionRefused {
            url: "http://127.0.0.1:6061/debug/taskscope/snapshot".into(),
        }),
        t0,
    );
    let mut worker = app("http://10.0.0.2:6060");
    worker.apply(Ok(snapshot(200, "worker", 5, 80.0)), t0);
    Workbench::new(vec![api, dead, worker])
}

#[test]
fn the_picker_lists_every_target_and_tab_switches() {
    let t0 = Instant::now();
    let mut wb = workbench(t0);
    let lines = screen(&wb, 100, 24);
    assert_eq!(
        lines[0].trim_end(),
        "[1 api:100 7 live]  2 127.0.0.1:6061 DOWN   3 worker:200 5 live    Tab/1-9 switch"
    );
    // The view below is the shown target's, with its identity in the header.
    assert_eq!(
        inner(&lines[2]),
        "Status: CONNECTED every 1.0s   Target: http://127.0.0.1:6060"
    );
    assert!(
        inner(&lines[3]).starts_with("Process: api (pid 100)"),
        "{lines:#?}"
    );

    wb.next();
    assert_eq!(wb.active(), 1);
    let lines = screen(&wb, 100, 24);
    assert!(
        lines[0].starts_with(" 1 api:100 7 live  [2 127.0.0.1:6061 DOWN]"),
        "{lines:#?}"
    );
    assert!(
        inner(&lines[2]).starts_with("Status: DISCONNECTED every 1.0s — no data yet"),
        "{lines:#?}"
    );
    wb.select(2);
    assert_eq!(wb.app().target, "http://10.0.0.2:6060");
    wb.next();
    assert_eq!(wb.active(), 0, "wraps around");
    wb.previous();
    assert_eq!(wb.active(), 2);
    wb.select(7);
    assert_eq!(wb.active(), 2, "no such target: unchanged");

    // Too narrow for every entry: the shown one with its position.
    let lines = screen(&wb, 50, 24);
    assert_eq!(
        lines[0].trim_end(),
        "target 3/3 [3 worker:200 5 live]  Tab/1-9 switch"
    );
}

#[test]
fn the_overview_sums_live_tasks_over_the_targets() {
    let t0 = Instant::now();
    let mut wb = workbench(t0);
    wb.app_mut().open_overview();
    wb.sync();
    let summary = wb.summary();
    assert_eq!(
        (summary.targets, summary.answering, summary.live_total),
        (3, 2, 12)
    );
    let lines = screen(&wb, 80, 30);
    let text: Vec<&str> = lines.iter().map(|l| inner(l)).collect();
    let at = text
        .iter()
        .position(|l| l.starts_with("Live tasks"))
        .expect("tasks section");
    assert_eq!(text[at], "Live tasks            7  ▆");
    assert_eq!(
        text[at + 1],
        "  all targets        12  over 3 targets (2 answering)"
    );
    // The dead target still counts its last good data once it had some; it never had.
    let dead = wb.target_mut(1).unwrap();
    dead.apply(Ok(snapshot(300, "db", 4, 5.0)), t0 + Duration::from_secs(1));
    dead.apply(
        Err(FetchError::Timeout {
            url: "u".into(),
            seconds: 2.0,
        }),
        t0 + Duration::from_secs(2),
    );
    wb.sync();
    assert_eq!(wb.summary().live_total, 16);
    assert_eq!(wb.summary().answering, 2);
    // One target: no sum shown.
    let single = Workbench::new(vec![App::new("http://x", t0)]);
    assert_eq!(single.app().targets_summary(), None);
}

#[test]
fn the_refresh_interval_is_shared_and_views_are_per_target() {
    let t0 = Instant::now();
    let mut wb = workbench(t0);
    wb.app_mut().refresh_faster();
    wb.sync();
    assert!(
        wb.targets()
            .iter()
            .all(|t| t.refresh() == Duration::from_millis(500))
    );
    wb.app_mut().open_findings();
    wb.next();
    assert_eq!(wb.app().view(), View::Sites);
    wb.previous();
    assert_eq!(wb.app().view(), View::Findings);
}

#[test]
fn a_restarted_target_is_shown_as_a_new_process() {
    let t0 = Instant::now();
    let mut wb = workbench(t0);
    let api = wb.app_mut();
    api.open_detail();
    let request = api.take_dump_request().unwrap();
    api.apply_dump(
        request.id,
        Ok(Dump {
            total_tasks: 7,
            ..Dump::default()
        }),
        t0,
    );
    assert!(api.detail().unwrap().dump().is_some());
    // Same address, new pid and a fresh uptime: a new process.
    let t1 = t0 + Duration::from_secs(3);
    api.apply(Ok(snapshot(101, "api", 1, 0.5)), t1);
    assert_eq!(api.restarted_at(), Some(t1));
    assert_eq!(api.site_history("api/src/main.rs:10:5").unwrap().len(), 1);
    let detail = api.detail().unwrap();
    assert!(detail.dump().is_none(), "the old process's dump is gone");
    assert_eq!(
        detail.error(),
        Some(
            "the target restarted as a new process (pid 101): its dump was of the old one; \
             press r for a new one"
        )
    );
    api.close_detail();
    api.tick(t1 + Duration::from_secs(2));
    let lines = screen(&wb, 110, 24);
    assert!(
        lines[0].starts_with("[1 api:101 1 live restarted]"),
        "{lines:#?}"
    );
    assert!(
        inner(&lines[3]).starts_with("Process: api (pid 101)   Uptime: 0s (restarted 2s ago)"),
        "{lines:#?}"
    );
}

#[test]
fn runtimes_of_one_process_are_told_apart_in_the_picker_and_header() {
    // What the loop makes of an exporter serving runtimes `web` and `io` (see
    // src/runtimes.rs): one target per runtime, labelled with it.
    let t0 = Instant::now();
    let app = |label: &str, runtime: &str, live| {
        let mut s = snapshot(300, "demo", live, 10.0);
        s.agent.runtime_name = Some(runtime.into());
        s.runtimes = vec!["web".into(), "io".into()];
        let mut app = App::new(label, t0).with_no_color(true);
        app.apply(Ok(s), t0);
        app
    };
    let mut wb = Workbench::new(vec![
        app("http://127.0.0.1:6060 runtime=web", "web", 4),
        app("http://127.0.0.1:6060 runtime=io", "io", 2),
    ]);
    wb.select(1);
    let lines = screen(&wb, 80, 24);
    assert_eq!(
        lines[0].trim_end(),
        " 1 demo:300/web 4 live  [2 demo:300/io 2 live]   Tab/1-9 switch"
    );
    assert_eq!(
        inner(&lines[2]),
        "Status: CONNECTED every 1.0s   Target: http://127.0.0.1:6060 runtime=io"
    );
}
