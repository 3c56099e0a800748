//! The site detail view with a task dump, rendered into a `TestBackend` (NO_COLOR).

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use taskscope::model::{
    BlockedPoll, Dump, DumpGroup, DumpSource, Frame, ProcessInfo, SCHEMA_VERSION, SiteRow,
    Snapshot, Spread,
};
use taskscope_tui::client::FetchError;
use taskscope_tui::state::{App, Nav, View};
use taskscope_tui::view;

const SITE: &str = "demo-service/src/faults/s2_reply_map.rs:89:13";

fn snapshot(live: u64) -> Snapshot {
    Snapshot {
        schema_version: SCHEMA_VERSION,
        process: ProcessInfo {
            pid: 7,
            name: "demo".into(),
        },
        sites: vec![
            SiteRow {
                site: SITE.into(),
                live,
                spawned: 30,
                completed: 30 - live,
                polls: 60,
                busy_seconds: 0.25,
                ..Default::default()
            },
            SiteRow {
                site: "demo-service/src/main.rs:77:9".into(),
                live: 1,
                spawned: 1,
                ..SiteRow::default()
            },
        ],
        ..Snapshot::default()
    }
}

fn frame(function: &str, file: &str, line: u32) -> Frame {
    Frame {
        function: function.into(),
        file: file.into(),
        line,
    }
}

/// Two groups at one site: ten tasks on a oneshot receive, two in a `join!` (two stacks).
fn dump() -> Dump {
    Dump {
        schema_version: SCHEMA_VERSION,
        // 12:34:56 UTC on some day.
        taken_at_unix_ms: 19_000 * 86_400_000 + (12 * 3600 + 34 * 60 + 56) * 1000,
        took_seconds: 0.012,
        paused_seconds: 0.004,
        source: DumpSource::Traced,
        complete: true,
        notes: vec!["frames of spawned futures only".into()],
        blocked: vec![],
        total_tasks: 12,
        groups: vec![
            DumpGroup {
                site: SITE.into(),
                stacks: vec![vec![
                    frame(
                        "tokio::sync::oneshot::Receiver<T>::poll",
                        "tokio-1.54.1/src/sync/oneshot.rs",
                        1110,
                    ),
                    frame(
                        "demo_service::faults::s2_reply_map::request::{{closure}}",
                        "demo-service/src/faults/s2_reply_map.rs",
                        131,
                    ),
                ]],
                count: 10,
                idle_seconds: Spread {
                    min: 0.5,
                    median: 2.25,
                    max: 4.0,
                },
                age_seconds: Spread {
                    min: 4.0,
                    median: 4.5,
                    max: 5.0,
                },
                task_ids: (1..=10).collect(),
            },
            DumpGroup {
                site: SITE.into(),
                stacks: vec![
                    vec![frame(
                        "tokio::time::sleep::Sleep",
                        "tokio-1.54.1/src/time/sleep.rs",
                        400,
                    )],
                    vec![frame(
                        "tokio::sync::mpsc::Receiver<T>::recv",
                        "tokio-1.54.1/src/sync/mpsc/bounded.rs",
                        250,
                    )],
                ],
                count: 2,
                idle_seconds: Spread {
                    min: 0.001,
                    median: 0.002,
                    max: 0.003,
                },
                age_seconds: Spread {
                    min: 1.0,
                    median: 1.0,
                    max: 1.0,
                },
                task_ids: vec![11, 12],
            },
        ],
        tasks: vec![],
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

/// Sizes the state like the event loop does before each draw.
fn sized(app: &mut App, width: u16, height: u16) {
    let (rows, lines) = view::detail_metrics(ratatui::layout::Rect::new(0, 0, width, height), app);
    app.set_detail_viewport(rows, lines);
}

fn open(t0: Instant) -> (App, u64) {
    let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
    app.apply(Ok(snapshot(10)), t0);
    assert_eq!(app.rows()[0].site, SITE);
    assert!(app.open_detail());
    let req = app.take_dump_request().expect("a dump on open");
    assert_eq!(req.site, SITE);
    (app, req.id)
}

#[test]
fn detail_shows_the_groups_and_their_frames() {
    let t0 = Instant::now();
    let (mut app, id) = open(t0);
    let lines = screen(&app, 120, 40);
    let text = lines.join("\n");
    assert!(text.contains("taking a dump…"), "{text}");
    assert!(text.contains("q/Esc back  r new dump"), "{text}");

    app.apply_dump(id, Ok(dump()), t0 + Duration::from_secs(1));
    app.tick(t0 + Duration::from_secs(3));
    sized(&mut app, 120, 40);
    let lines = screen(&app, 120, 40);
    let text = lines.join("\n");

    // Header: the site and its counts from the last snapshot.
    assert!(text.contains("Status: CONNECTED"), "{text}");
    assert!(has_line(&lines, &format!("Site: {SITE}")), "{text}");
    assert!(
        has_line(
            &lines,
            "Live: 10   Spawned: 30   Completed: 20   Busy: 0.25s"
        ),
        "{text}"
    );
    // The dump: when, how long, source, notes.
    assert!(
        has_line(
            &lines,
            "Dump: taken 2s ago at 12:34:56 UTC; dump took 12 ms, runtime paused 4.0 ms"
        ),
        "{text}"
    );
    assert!(
        has_line(
            &lines,
            "Source: traced (await points)   12 tasks in 2 groups"
        ),
        "{text}"
    );
    assert!(
        has_line(&lines, "note: frames of spawned futures only"),
        "{text}"
    );
    assert!(!text.contains("taking a dump"), "{text}");

    // The groups, exactly: count, site, idle spread, frames innermost first.
    let at = lines
        .iter()
        .position(|l| inner(l).starts_with("10 tasks @ "))
        .expect("first group");
    let group: Vec<&str> = lines[at..at + 9].iter().map(|l| inner(l)).collect();
    assert_eq!(
        group,
        [
            format!("10 tasks @ {SITE}  idle min/median/max 500ms/2.2s/4.0s  age max 5.0s")
                .as_str(),
            "    tokio::sync::oneshot::Receiver<T>::poll  tokio-1.54.1/src/sync/oneshot.rs:1110",
            "    demo_service::faults::s2_reply_map::request::{{closure}}  demo-service/src/faults/s2_reply_map.rs:131",
            "",
            format!("2 tasks @ {SITE}  idle min/median/max 1ms/2ms/3ms  age max 1.0s").as_str(),
            "    tokio::time::sleep::Sleep  tokio-1.54.1/src/time/sleep.rs:400",
            "    -- and, awaited at the same time:",
            "    tokio::sync::mpsc::Receiver<T>::recv  tokio-1.54.1/src/sync/mpsc/bounded.rs:250",
            "",
        ],
        "{text}"
    );

    // The header keeps following the snapshots while the view is open.
    app.apply(Ok(snapshot(12)), t0 + Duration::from_secs(4));
    let text = screen(&app, 120, 40).join("\n");
    assert!(
        text.contains("Live: 12   Spawned: 30   Completed: 18"),
        "{text}"
    );
    assert!(text.contains("10 tasks @ "), "{text}");
}

#[test]
fn registry_only_dump_says_why() {
    let t0 = Instant::now();
    let (mut app, id) = open(t0);
    let mut d = dump();
    d.source = DumpSource::Registry;
    d.complete = false;
    d.notes = vec!["a worker is blocked: dumping now would wait for it".into()];
    d.blocked = vec![BlockedPoll {
        task: 42,
        site: "demo-service/src/faults/s7.rs:10:5".into(),
        seconds: 2.5,
    }];
    for g in &mut d.groups {
        g.stacks.clear();
    }
    app.apply_dump(id, Ok(d), t0);
    let lines = screen(&app, 120, 40);
    let text = lines.join("\n");
    assert!(
        has_line(
            &lines,
            "Source: registry only (no await points), INCOMPLETE   12 tasks in 2 groups"
        ),
        "{text}"
    );
    assert!(
        has_line(
            &lines,
            "note: a worker is blocked: dumping now would wait for it"
        ),
        "{text}"
    );
    assert!(
        has_line(
            &lines,
            "blocked: task 42 spawned at demo-service/src/faults/s7.rs:10:5 has been in one poll for 2.50s"
        ),
        "{text}"
    );
    assert!(
        has_line(&lines, "    (no await point: registry only, or not traced)"),
        "{text}"
    );
}

#[test]
fn errors_stay_in_the_view() {
    let t0 = Instant::now();
    let (mut app, id) = open(t0);
    app.apply_dump(
        id,
        Err(FetchError::Status {
            status: 429,
            url: "http://127.0.0.1:6060/debug/taskscope/dump".into(),
            detail: "another task dump is in progress; try again when it is done".into(),
        }),
        t0,
    );
    assert_eq!(app.view(), View::Detail);
    let text = screen(&app, 200, 30).join("\n");
    assert!(
        text.contains("dump failed: HTTP 429 from http://127.0.0.1:6060/debug/taskscope/dump: another task dump is in progress"),
        "{text}"
    );
    // Narrower: the message wraps instead of being cut.
    let text: String = screen(&app, 60, 30).iter().map(|l| inner(l)).collect();
    assert!(
        text.contains("dump: another task dump is in progress; try again when it is done"),
        "{text}"
    );
    assert!(text.contains("press r to try again"), "{text}");

    // After a good dump, a timeout keeps it on screen under the error.
    assert!(app.request_dump());
    let id = app.take_dump_request().unwrap().id;
    app.apply_dump(id, Ok(dump()), t0);
    assert!(app.request_dump());
    let id = app.take_dump_request().unwrap().id;
    app.apply_dump(
        id,
        Err(FetchError::Timeout {
            url: "http://127.0.0.1:6060/debug/taskscope/dump".into(),
            seconds: 15.0,
        }),
        t0,
    );
    let text = screen(&app, 120, 40).join("\n");
    assert!(
        text.contains("dump failed: timed out after 15.0s"),
        "{text}"
    );
    assert!(text.contains("the previous dump is shown below"), "{text}");
    assert!(text.contains("10 tasks @ "), "{text}");
}

#[test]
fn scrolls_and_fits_small_screens() {
    let t0 = Instant::now();
    let (mut app, id) = open(t0);
    app.apply_dump(id, Ok(dump()), t0);
    // 80x16: the dump pane has a few rows; scroll to the end and see the last frame.
    sized(&mut app, 80, 16);
    let first = screen(&app, 80, 16).join("\n");
    assert!(first.contains("Task dump (lines 1-"), "{first}");
    assert!(!first.contains("mpsc"), "{first}");
    app.navigate(Nav::End);
    sized(&mut app, 80, 16);
    let lines = screen(&app, 80, 16);
    let text = lines.join("\n");
    assert!(text.contains("mpsc/bounded.rs:250"), "{text}");
    // Long functions are cut from the left so that file:line stays visible.
    app.navigate(Nav::Home);
    app.navigate(Nav::PageDown);
    sized(&mut app, 80, 16);
    let text = screen(&app, 80, 16).join("\n");
    assert!(text.contains("…"), "{text}");
    assert!(text.contains("s2_reply_map.rs:131"), "{text}");
    for (w, h) in [(20, 5), (1, 1), (0, 0), (5, 40), (200, 3)] {
        sized(&mut app, w, h);
        screen(&app, w, h);
    }
}

#[test]
fn detail_honours_no_color() {
    use ratatui::style::Color;
    let t0 = Instant::now();
    let (mut app, id) = open(t0);
    app.apply_dump(id, Ok(dump()), t0);
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
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
    assert!(
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .any(|c| c.fg == Color::Yellow)
    );
}

#[test]
fn a_source_without_dumps_never_says_try_again() {
    // A saved file: r cannot take a dump there, so the screen does not suggest it.
    let t0 = Instant::now();
    let mut app = App::new("file.json", t0)
        .with_no_color(true)
        .with_capabilities(taskscope_tui::source::Capabilities::file());
    app.apply(Ok(snapshot(10)), t0);
    assert!(app.open_detail());
    app.request_dump();
    let text = screen(&app, 120, 30).join("\n");
    assert!(text.contains("unavailable for this source"), "{text}");
    assert!(!text.contains("press r"), "{text}");
}

#[test]
fn a_long_dump_note_wraps_under_its_label() {
    let t0 = Instant::now();
    let (mut app, id) = open(t0);
    let mut d = dump();
    d.notes = vec![
        "4 tasks have no stack: spawned during the dump, or waiting on something tokio's \
         dump cannot trace"
            .into(),
    ];
    app.apply_dump(id, Ok(d), t0);
    let lines = screen(&app, 80, 24);
    let text = lines.join("\n");
    // 80 columns: two borders, "note: " and the rest of the line; nothing cut.
    assert!(
        has_line(
            &lines,
            "note: 4 tasks have no stack: spawned during the dump, or waiting on something"
        ),
        "{text}"
    );
    assert!(
        has_line(&lines, "      tokio's dump cannot trace"),
        "{text}"
    );
}
