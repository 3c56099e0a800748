//! Snapshot tests of every screen of the TUI (issue #8): each one is built from fixed
//! fixture data with an injected clock, drawn into ratatui's `TestBackend` at 80x24 and at
//! 120x40 without colours (`NO_COLOR`), and compared as text with the snapshots in
//! `tests/snapshots/` (insta).
//!
//! The screens go through the same path as the event loop: a [`Workbench`] of one or more
//! targets, the viewports fitted to the screen, then `view::render_workbench`. Every time
//! shown is either an injected `Instant` or a wall-clock time taken from the fixture
//! (a dump's `taken_at_unix_ms`, a file's `saved_at_unix_ms` and frame times), so the text is
//! the same on every run.
//!
//! After a change to what a screen shows: `INSTA_UPDATE=always cargo test -p taskscope-tui
//! --test screens` (or `cargo insta review`), then read the changed `.snap` files.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use taskscope::LeakSettings;
use taskscope::model::{
    BaselineDiff, DelayHistogram, Dump, DumpGroup, DumpSource, DumpTask, Evidence, Finding,
    FindingKind, Frame, HolderDelay, LockHolder, LockKind, LockMode, LockRow, LockSource,
    LockWaiter, ProcessInfo, RuntimeInfo, SCHEMA_VERSION, Severity, SiteDiff, SiteRow, Snapshot,
    Spread, TaskState,
};
use taskscope_tui::client::FetchError;
use taskscope_tui::console::ConsoleSource;
use taskscope_tui::files::{
    FILE_VERSION, Opened, RECORDING_FORMAT, RecordedFrame, Recording, RecordingHeader,
    RecordingLimits, SNAPSHOT_FORMAT, SavedDump, SavedSnapshot,
};
use taskscope_tui::source::{Source, runtime_label};
use taskscope_tui::state::{App, View, Workbench};
use taskscope_tui::{app_for_file, view};

/// Every screen is drawn at these sizes (columns, rows).
const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

const TARGET: &str = "http://127.0.0.1:6060";
const LEAK: &str = "demo-service/src/faults/leak.rs:42:5";
const AXUM: &str = "axum-0.8.9/src/serve/mod.rs:389:5";
const SESSION_TASK: &str = "demo-service/src/session.rs:88:9";
const HYPER: &str = "hyper-util-0.1.17/src/common/exec.rs:49:22";
const MAIN: &str = "demo-service/src/main.rs:77:9";
const METRICS: &str = "demo-service/src/metrics.rs:21:5";
const CACHE_REFRESH: &str = "demo-service/src/cache.rs:112:13";
const SESSIONS: &str = "sessions (demo-service/src/session.rs:18:22)";
const SESSIONS_GUARD: &str = "demo-service/src/session.rs:57:31";
const CACHE: &str = "demo-service/src/cache.rs:30:17";
const DB_POOL: &str = "db-pool (demo-service/src/db.rs:14:20)";

/// Wall-clock time of the fixture's first poll: 2023-11-14 22:13:20 UTC.
const T0_MS: u64 = 1_700_000_000_000;

/// Polls of the fixture, one a second: a minute-long history would draw the same.
const POLLS: u64 = 12;

// ---- Fixture ----

/// Live tasks at the leak site at each poll: it only grows.
const LEAK_LIVE: [u64; POLLS as usize] = [1, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 7];
/// Live connections at the axum site at each poll: busy, but not leaking.
const AXUM_LIVE: [u64; POLLS as usize] = [15, 19, 16, 22, 18, 17, 20, 16, 21, 19, 17, 18];
/// Session workers at each poll: four of them, waiting for the `sessions` lock.
const SESSION_LIVE: [u64; POLLS as usize] = [2, 3, 3, 4, 4, 4, 3, 4, 4, 4, 4, 4];

fn site(name: &str, live: u64, spawned: u64, busy: f64) -> SiteRow {
    SiteRow {
        site: name.into(),
        live,
        spawned,
        completed: spawned - live,
        polls: spawned * 3,
        busy_seconds: busy,
        ..SiteRow::default()
    }
}

fn hist(count: u64, sum: f64) -> DelayHistogram {
    DelayHistogram {
        bounds: vec![0.001, 0.01, 0.1, 1.0],
        counts: vec![count / 4, count / 2, count * 3 / 4, count],
        count,
        sum,
        last_seconds: 0.0,
    }
}

fn waiter(task: u64, site: &str, waiting_seconds: f64) -> LockWaiter {
    LockWaiter {
        instance: 1,
        task: Some(task),
        task_site: Some(SESSION_TASK.into()),
        site: site.into(),
        mode: LockMode::Exclusive,
        permits: 1,
        waiting_seconds,
    }
}

/// Three locks, most waited-on first: the contended `sessions` mutex (task 311 holds it
/// across an `.await`, three tasks wait), a read-mostly cache lock held by two readers, and
/// a connection-pool semaphore with permits out.
fn locks() -> Vec<LockRow> {
    let sessions = LockRow {
        lock: SESSIONS.into(),
        kind: LockKind::Mutex,
        created_at: "demo-service/src/session.rs:18:22".into(),
        name: Some("sessions".into()),
        instances: 1,
        acquisitions: 5120,
        contended: 312,
        wait_seconds: hist(312, 61.8),
        hold_seconds: hist(5120, 40.2),
        wait_share: 0.84,
        delay_by_holder_site: vec![
            HolderDelay {
                site: SESSIONS_GUARD.into(),
                seconds: 48.2,
                contentions: 240,
            },
            HolderDelay {
                site: "demo-service/src/session.rs:102:17".into(),
                seconds: 11.9,
                contentions: 61,
            },
            HolderDelay {
                site: "demo-service/src/admin.rs:33:9".into(),
                seconds: 1.7,
                contentions: 11,
            },
        ],
        holders: vec![LockHolder {
            instance: 1,
            task: Some(311),
            task_site: Some(SESSION_TASK.into()),
            site: SESSIONS_GUARD.into(),
            mode: LockMode::Exclusive,
            permits: 1,
            held_seconds: 2.4,
            task_idle_seconds: Some(2.4),
        }],
        waiters: vec![
            waiter(318, SESSIONS_GUARD, 2.3),
            waiter(322, "demo-service/src/session.rs:102:17", 1.9),
            waiter(327, SESSIONS_GUARD, 0.4),
        ],
        ..LockRow::default()
    };
    let reader = |task: u64, held_seconds: f64| LockHolder {
        instance: 2,
        task: Some(task),
        task_site: Some(AXUM.into()),
        site: "demo-service/src/cache.rs:61:22".into(),
        mode: LockMode::Read,
        permits: 1,
        held_seconds,
        task_idle_seconds: None,
    };
    let cache = LockRow {
        lock: CACHE.into(),
        kind: LockKind::RwLock,
        created_at: CACHE.into(),
        instances: 1,
        acquisitions: 9004,
        contended: 4,
        wait_seconds: hist(4, 0.02),
        hold_seconds: hist(9004, 1.8),
        wait_share: 0.0,
        holders: vec![reader(290, 0.003), reader(301, 0.001)],
        ..LockRow::default()
    };
    let db_pool = LockRow {
        lock: DB_POOL.into(),
        kind: LockKind::Semaphore,
        created_at: "demo-service/src/db.rs:14:20".into(),
        name: Some("db-pool".into()),
        instances: 1,
        acquisitions: 2210,
        contended: 0,
        wait_seconds: hist(0, 0.0),
        hold_seconds: hist(2210, 19.9),
        holders: vec![LockHolder {
            instance: 3,
            task: Some(305),
            task_site: Some(AXUM.into()),
            site: "demo-service/src/db.rs:40:18".into(),
            mode: LockMode::Permits,
            permits: 2,
            held_seconds: 0.012,
            task_idle_seconds: None,
        }],
        ..LockRow::default()
    };
    vec![sessions, cache, db_pool]
}

/// Findings of several severities and kinds, most severe first, as the agent words them.
fn findings() -> Vec<Finding> {
    vec![
        Finding {
            kind: FindingKind::LostWaker,
            severity: Severity::Critical,
            site: LEAK.into(),
            count: 7,
            summary: format!(
                "7 tasks spawned at {LEAK} have lost their waker: idle and nothing holds a \
                 waker to wake them, so they can never run again (idle up to 118.4 s)"
            ),
            fragment: "tasks have lost their waker".into(),
            evidence: Evidence::LostWaker {
                task_ids: vec![12, 40, 77, 101, 160, 203, 251],
                oldest_idle_seconds: 118.4,
            },
        },
        Finding {
            kind: FindingKind::Growth,
            severity: Severity::Warning,
            site: LEAK.into(),
            count: 6,
            summary: format!(
                "live tasks spawned at {LEAK} grow by 0.06/s over the last 120 s: the \
                 low-water mark rose from 1 to 7 (7 live now)"
            ),
            fragment: "tasks more each 16.7 s".into(),
            evidence: Evidence::Growth {
                rate_per_second: 0.06,
                window_seconds: 120.0,
                floor_before: 1,
                floor_after: 7,
                live: 7,
            },
        },
        Finding {
            kind: FindingKind::HotLock,
            severity: Severity::Warning,
            site: SESSIONS.into(),
            count: 3,
            summary: format!(
                "tasks spend 0.84 s per second waiting for {SESSIONS} (312 contended \
                 acquisitions so far); most delay while held from {SESSIONS_GUARD}"
            ),
            fragment: "tasks waiting for a hot lock".into(),
            evidence: Evidence::HotLock {
                lock: SESSIONS.into(),
                wait_share: 0.84,
                contended: 312,
                top_holder_sites: locks()[0].delay_by_holder_site.clone(),
            },
        },
        Finding {
            kind: FindingKind::GuardAcrossAwait,
            severity: Severity::Warning,
            site: SESSIONS_GUARD.into(),
            count: 1,
            summary: format!(
                "1 guards of {SESSIONS} taken at {SESSIONS_GUARD} are held by tasks idle for \
                 more than 1.0 s (longest 2.4 s): held across an .await; 3 tasks wait for \
                 the lock"
            ),
            fragment: "guards held across .await".into(),
            evidence: Evidence::GuardAcrossAwait {
                lock: SESSIONS.into(),
                guards: 1,
                oldest_idle_seconds: 2.4,
                threshold_seconds: 1.0,
            },
        },
        Finding {
            kind: FindingKind::Growth,
            severity: Severity::Info,
            site: AXUM.into(),
            count: 3,
            summary: format!(
                "live tasks spawned at {AXUM} grow by 0.25/s over the last 60 s: the \
                 low-water mark rose from 15 to 18 (18 live now)"
            ),
            fragment: "tasks more each 4.0 s".into(),
            evidence: Evidence::Growth {
                rate_per_second: 0.25,
                window_seconds: 60.0,
                floor_before: 15,
                floor_after: 18,
                live: 18,
            },
        },
    ]
}

/// The demo service at poll `i` (0-based, one a second): seven sites, deliberately not in
/// live order (the view sorts), a four-worker runtime, three locks and five findings.
fn snapshot(i: u64) -> Snapshot {
    let at = i as usize;
    let leak = LEAK_LIVE[at];
    Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at_unix_ms: T0_MS + i * 1000,
        uptime_seconds: 3714.0 + i as f64,
        process: ProcessInfo {
            pid: 4242,
            name: "demo-service".into(),
        },
        runtime: Some(RuntimeInfo {
            workers: 4,
            alive_tasks: 41,
            global_queue_depth: 2,
            worker_busy_seconds: vec![2301.5, 1788.0, 2050.2, 3390.9],
            worker_busy_ratio: vec![0.62, 0.48, 0.55, 0.91],
            blocking_threads: 3,
            idle_blocking_threads: 2,
            max_blocking_threads: Some(512),
            blocking_queue_depth: 0,
            ..RuntimeInfo::default()
        }),
        sites: vec![
            site(METRICS, 0, 3714 + i, 0.93),
            // All but the newest leaked tasks idle past the site's threshold.
            SiteRow {
                idle_over_threshold: leak.saturating_sub(2),
                ..site(LEAK, leak, leak, 0.01)
            },
            site(AXUM, AXUM_LIVE[at], 48_000 + 37 * i, 812.44),
            site(CACHE_REFRESH, 0, 642, 12.08),
            site(SESSION_TASK, SESSION_LIVE[at], 1290 + 2 * i, 3.1),
            site(HYPER, 3, 96_410 + 74 * i, 41.7),
            site(MAIN, 1, 1, 0.0),
        ],
        locks: locks(),
        findings: findings(),
        ..Snapshot::default()
    }
}

/// The app after every poll of the fixture, at `t0` + 0..12 s.
fn demo_app(t0: Instant) -> App {
    let mut app = App::new(TARGET, t0).with_no_color(true);
    for i in 0..POLLS {
        app.apply(Ok(snapshot(i)), at(t0, i));
    }
    app
}

/// `t0` plus `secs` seconds.
fn at(t0: Instant, secs: u64) -> Instant {
    t0 + Duration::from_secs(secs)
}

/// The last poll of the fixture.
fn last(t0: Instant) -> Instant {
    at(t0, POLLS - 1)
}

fn frame(function: &str, file: &str, line: u32) -> Frame {
    Frame {
        function: function.into(),
        file: file.into(),
        line,
    }
}

/// The leak site's dump: five tasks waiting for a reply whose sender is gone, two in a
/// `join!` of a channel and a notification (two stacks).
fn leak_dump() -> Dump {
    Dump {
        schema_version: SCHEMA_VERSION,
        taken_at_unix_ms: T0_MS + 11_400,
        took_seconds: 0.0031,
        paused_seconds: 0.0009,
        source: DumpSource::Traced,
        complete: true,
        notes: vec![],
        blocked: vec![],
        total_tasks: 7,
        groups: vec![
            DumpGroup {
                site: LEAK.into(),
                stacks: vec![vec![
                    frame(
                        "tokio::sync::oneshot::Receiver<T>::poll",
                        "tokio-1.48.0/src/sync/oneshot.rs",
                        1110,
                    ),
                    frame(
                        "demo_service::faults::leak::await_reply::{{closure}}",
                        "demo-service/src/faults/leak.rs",
                        58,
                    ),
                    frame(
                        "demo_service::faults::leak::spawn_request::{{closure}}",
                        "demo-service/src/faults/leak.rs",
                        44,
                    ),
                ]],
                count: 5,
                idle_seconds: Spread {
                    min: 31.2,
                    median: 74.9,
                    max: 118.4,
                },
                age_seconds: Spread {
                    min: 31.3,
                    median: 75.0,
                    max: 118.6,
                },
                task_ids: vec![12, 40, 77, 101, 160],
            },
            DumpGroup {
                site: LEAK.into(),
                stacks: vec![
                    vec![
                        frame(
                            "tokio::sync::mpsc::Receiver<T>::recv",
                            "tokio-1.48.0/src/sync/mpsc/bounded.rs",
                            250,
                        ),
                        frame(
                            "demo_service::faults::leak::drain::{{closure}}",
                            "demo-service/src/faults/leak.rs",
                            71,
                        ),
                    ],
                    vec![frame(
                        "tokio::sync::notify::Notified::poll",
                        "tokio-1.48.0/src/sync/notify.rs",
                        1124,
                    )],
                ],
                count: 2,
                idle_seconds: Spread {
                    min: 6.5,
                    median: 9.0,
                    max: 11.5,
                },
                age_seconds: Spread {
                    min: 6.6,
                    median: 9.1,
                    max: 11.6,
                },
                task_ids: vec![203, 251],
            },
        ],
        // The site's task list, as the TUI's HTTP source adds it from the snapshot's
        // `?tasks=N&site=SITE` (ids, states, ages; no stacks), oldest first.
        tasks: [
            (12, 118.0, 118.4),
            (40, 101.0, 95.1),
            (77, 88.0, 74.0),
            (101, 60.2, 52.7),
            (160, 33.0, 31.2),
            (203, 11.6, 11.5),
            (251, 6.6, 6.5),
        ]
        .into_iter()
        .map(|(id, age, idle)| DumpTask {
            id,
            site: LEAK.into(),
            state: TaskState::Idle,
            age_seconds: age,
            idle_seconds: idle,
            polls: 2,
            stacks: vec![],
        })
        .collect(),
    }
}

/// Selects `site` in the sites table.
fn select_site(app: &mut App, site: &str) {
    let index = app
        .rows()
        .iter()
        .position(|r| r.site == site)
        .unwrap_or_else(|| panic!("{site} is not in the table"));
    app.select_index(index);
}

// ---- Drawing ----

/// Tells the state how many rows of the current view (and of the help) fit in `area`, as
/// the event loop does before each draw (`fit_viewport` in lib.rs).
fn fit(app: &mut App, area: Rect) {
    if app.help_shown() {
        let (rows, lines) = view::help_metrics(area);
        app.set_help_viewport(rows, lines);
    }
    match app.view() {
        View::Sites => app.set_viewport_rows(view::table_body_rows(area, app)),
        View::Locks => app.set_lock_viewport_rows(view::lock_table_body_rows(area, app)),
        View::Detail => {
            let (rows, lines) = view::detail_metrics(area, app);
            app.set_detail_viewport(rows, lines);
        }
        View::Findings => app.set_finding_viewport_rows(view::finding_table_body_rows(area, app)),
        View::Overview => {}
    }
}

/// The screen as text, one line per row, trailing blanks cut: drawn like one frame of the
/// event loop (targets synced, viewports fitted, then the workbench rendered). Without
/// colours, reverse video (the selected row, the shown target, PAUSED, REC) and underlining
/// (the sorted column) still carry meaning that plain text loses: they are listed below the
/// screen.
fn draw(wb: &mut Workbench, width: u16, height: u16) -> String {
    wb.sync();
    let area = view::workbench_view_area(Rect::new(0, 0, width, height), wb);
    fit(wb.app_mut(), area);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::render_workbench(f, wb)).unwrap();
    let buf = terminal.backend().buffer();
    let mut text: Vec<String> = (0..buf.area.height)
        .map(|y| {
            let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
            line.trim_end().to_string()
        })
        .collect();
    for (name, modifier) in [
        ("reverse video", Modifier::REVERSED),
        ("underlined", Modifier::UNDERLINED),
    ] {
        for y in 0..buf.area.height {
            let marked = |x: u16| buf[(x, y)].modifier.contains(modifier);
            let mut x = 0;
            while x < buf.area.width {
                if !marked(x) {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < buf.area.width && marked(x) {
                    x += 1;
                }
                let run: String = (start..x).map(|x| buf[(x, y)].symbol()).collect();
                text.push(format!(
                    "{name}: line {}, columns {}-{}: {:?}",
                    y + 1,
                    start + 1,
                    x,
                    run.trim_end()
                ));
            }
        }
    }
    text.join("\n")
}

/// Compares the screen `build` makes, at every size in [`SIZES`], with the snapshots
/// `<name>_<width>x<height>`; `what` (what the screen shows) heads each snapshot file. The
/// state is built afresh for each size, from the same `t0`.
fn check(name: &str, what: &str, build: impl Fn(Instant) -> Workbench) {
    let t0 = Instant::now();
    for (width, height) in SIZES {
        let mut wb = build(t0);
        let screen = draw(&mut wb, width, height);
        let mut settings = insta::Settings::clone_current();
        settings.set_description(what);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!(format!("{name}_{width}x{height}"), screen));
    }
}

/// One target's workbench.
fn one(app: App) -> Workbench {
    Workbench::new(vec![app])
}

// ---- The sites table ----

#[test]
fn connecting() {
    check(
        "connecting",
        "before the first snapshot: CONNECTING, the table waits",
        |t0| one(App::new(TARGET, t0).with_no_color(true)),
    );
}

#[test]
fn sites() {
    check(
        "sites",
        "the sites table after 12 polls: 7 sites by live count, the leak at 7 live (+6), \
         5 findings (those that fit shown, the rest counted), sparklines",
        |t0| one(demo_app(t0)),
    );
}

#[test]
fn sites_filter_editing() {
    check(
        "sites_filter_editing",
        "`/demo` being typed: the prompt in the footer, 5 of 7 sites",
        |t0| {
            let mut app = demo_app(t0);
            app.start_filter();
            for c in "demo".chars() {
                app.filter_push(c);
            }
            one(app)
        },
    );
}

#[test]
fn sites_filtered_and_sorted() {
    check(
        "sites_filtered_sorted",
        "filter `demo-service` kept (Enter), sorted by spawned (`S` twice)",
        |t0| {
            let mut app = demo_app(t0);
            app.start_filter();
            for c in "demo-service".chars() {
                app.filter_push(c);
            }
            app.finish_filter();
            app.cycle_sort();
            app.cycle_sort();
            one(app)
        },
    );
}

#[test]
fn baseline() {
    check(
        "baseline",
        "a baseline marked 95 s ago (`b` or `taskscope baseline`): the Δbase column and the \
         net change in the header",
        |t0| {
            let mut app = App::new(TARGET, t0).with_no_color(true);
            for i in 0..POLLS {
                let mut snap = snapshot(i);
                snap.baseline = Some(BaselineDiff {
                    marked_at_unix_ms: T0_MS - 84_000,
                    age_seconds: 84.0 + i as f64,
                    sites: vec![
                        SiteDiff {
                            site: LEAK.into(),
                            live_before: 0,
                            live_after: LEAK_LIVE[i as usize],
                            spawned: LEAK_LIVE[i as usize],
                            completed: 0,
                        },
                        SiteDiff {
                            site: AXUM.into(),
                            live_before: 21,
                            live_after: AXUM_LIVE[i as usize],
                            spawned: 3110,
                            completed: 3113,
                        },
                        SiteDiff {
                            site: SESSION_TASK.into(),
                            live_before: 1,
                            live_after: SESSION_LIVE[i as usize],
                            spawned: 170,
                            completed: 167,
                        },
                    ],
                });
                app.apply(Ok(snap), at(t0, i));
            }
            one(app)
        },
    );
}

#[test]
fn paused() {
    check(
        "paused",
        "paused (`p`) 5 s ago: the data of the moment of pausing (leak at 7) while polls \
         go on underneath (leak at 9)",
        |t0| {
            let mut app = demo_app(t0);
            app.toggle_pause(last(t0));
            for i in 1..=3 {
                let mut snap = snapshot(POLLS - 1);
                snap.uptime_seconds += i as f64;
                snap.sites[1] = site(LEAK, 7 + i.min(2), 7 + i.min(2), 0.01);
                app.apply(Ok(snap), at(t0, POLLS - 1 + i));
            }
            app.tick(at(t0, POLLS - 1 + 5));
            one(app)
        },
    );
}

#[test]
fn disconnected() {
    check(
        "disconnected",
        "the target stopped answering 8 s ago (refused, then a time-out): the last rows, \
         their age and the latest error",
        |t0| {
            let mut app = demo_app(t0);
            app.apply(
                Err(FetchError::ConnectionRefused {
                    url: format!("{TARGET}/debug/taskscope/snapshot"),
                }),
                at(t0, 12),
            );
            app.apply(
                Err(FetchError::Timeout {
                    url: format!("{TARGET}/debug/taskscope/snapshot"),
                    seconds: 2.0,
                }),
                at(t0, 17),
            );
            app.tick(at(t0, 20));
            one(app)
        },
    );
}

#[test]
fn recording() {
    check(
        "recording",
        "recording (`R`) in progress: REC, frames so far and the file in the header",
        |t0| {
            let mut app = demo_app(t0);
            app.set_recording(Some(("./taskscope-4242-1700000011000.jsonl.gz".into(), 42)));
            one(app)
        },
    );
}

// ---- The site detail view ----

/// The detail view of the leak site, its dump requested at the last poll.
fn detail_app(t0: Instant) -> (App, u64) {
    let mut app = demo_app(t0);
    select_site(&mut app, LEAK);
    assert!(app.open_detail());
    let request = app
        .take_dump_request()
        .expect("a dump is asked for on open");
    (app, request.id)
}

#[test]
fn detail() {
    check(
        "detail",
        "Enter on the leak site: its counts and findings, and its dump (2 groups, 7 tasks, \
         await points) taken 2 s ago",
        |t0| {
            let (mut app, id) = detail_app(t0);
            app.apply_dump(id, Ok(leak_dump()), at(t0, 12));
            app.tick(at(t0, 14));
            one(app)
        },
    );
}

#[test]
fn detail_loading() {
    check(
        "detail_loading",
        "the detail view while its first dump is being taken",
        |t0| one(detail_app(t0).0),
    );
}

// ---- The locks view ----

#[test]
fn locks_view() {
    check(
        "locks",
        "`l`: 3 locks, the contended `sessions` mutex selected: its findings, holder (idle, \
         across an .await), 3 waiters, delay by holder site",
        |t0| {
            let mut app = demo_app(t0);
            app.toggle_locks();
            one(app)
        },
    );
}

// ---- The findings view ----

#[test]
fn findings_view() {
    check(
        "findings",
        "`f`: 5 findings (1 crit, 3 warn, 1 info), the lost-waker one selected with its \
         evidence",
        |t0| {
            let mut app = demo_app(t0);
            app.open_findings();
            one(app)
        },
    );
}

#[test]
fn findings_hot_lock() {
    check(
        "findings_hot_lock",
        "the findings view on the hot-lock finding: Enter would open the locks view on it",
        |t0| {
            let mut app = demo_app(t0);
            app.open_findings();
            app.select_index(2);
            one(app)
        },
    );
}

// ---- The overview and the help ----

#[test]
fn overview() {
    check(
        "overview",
        "`o`: live tasks and spawn rate with history, 4 workers' busy bars, blocking pool, \
         findings by severity and kind",
        |t0| {
            let mut app = demo_app(t0);
            app.open_overview();
            one(app)
        },
    );
}

#[test]
fn help() {
    check(
        "help",
        "`?` over the sites table: every key (scrolled when it does not fit)",
        |t0| {
            let mut app = demo_app(t0);
            app.toggle_help();
            one(app)
        },
    );
}

// ---- Several targets ----

/// The demo service, a target that refuses connections, and a worker with one site.
fn targets(t0: Instant) -> Workbench {
    let demo = demo_app(t0);
    let mut dead = App::new("http://127.0.0.1:6061", t0).with_no_color(true);
    dead.apply(
        Err(FetchError::ConnectionRefused {
            url: "http://127.0.0.1:6061/debug/taskscope/snapshot".into(),
        }),
        t0,
    );
    dead.tick(last(t0));
    let mut worker = App::new("http://worker-1:6060", t0).with_no_color(true);
    for i in 0..POLLS {
        worker.apply(
            Ok(Snapshot {
                schema_version: SCHEMA_VERSION,
                uptime_seconds: 600.0 + i as f64,
                process: ProcessInfo {
                    pid: 5150,
                    name: "billing-worker".into(),
                },
                sites: vec![site("billing-worker/src/queue.rs:31:9", 5, 910 + i, 8.5)],
                ..Snapshot::default()
            }),
            at(t0, i),
        );
    }
    Workbench::new(vec![demo, dead, worker])
}

#[test]
fn targets_picker() {
    check(
        "targets",
        "three targets (demo-service, a dead one, billing-worker): the picker line on top, \
         the first target's sites table below",
        targets,
    );
}

#[test]
fn targets_dead_one_shown() {
    check(
        "targets_dead",
        "three targets, the dead one picked (Tab): DISCONNECTED with no data yet",
        |t0| {
            let mut wb = targets(t0);
            wb.next();
            wb
        },
    );
}

#[test]
fn targets_overview() {
    check(
        "targets_overview",
        "the overview with three targets: live tasks summed over the two that answer",
        |t0| {
            let mut wb = targets(t0);
            wb.app_mut().open_overview();
            wb
        },
    );
}

/// The demo service serving two runtimes, `web` (the fixture) and `io`, watched as one
/// target per runtime, as the event loop splits it (see src/runtimes.rs).
fn runtimes(t0: Instant) -> Workbench {
    let names = vec!["web".to_string(), "io".to_string()];
    let mut web = App::new(runtime_label(TARGET, Some("web")), t0).with_no_color(true);
    let mut io = App::new(runtime_label(TARGET, Some("io")), t0).with_no_color(true);
    for i in 0..POLLS {
        let mut snap = snapshot(i);
        snap.agent.runtime_name = Some("web".into());
        snap.runtimes = names.clone();
        web.apply(Ok(snap), at(t0, i));
        let mut snap = Snapshot {
            schema_version: SCHEMA_VERSION,
            taken_at_unix_ms: T0_MS + i * 1000,
            uptime_seconds: 3714.0 + i as f64,
            process: ProcessInfo {
                pid: 4242,
                name: "demo-service".into(),
            },
            runtime: Some(RuntimeInfo {
                workers: 2,
                alive_tasks: 3,
                worker_busy_ratio: vec![0.12, 0.05],
                blocking_threads: 1,
                idle_blocking_threads: 1,
                ..RuntimeInfo::default()
            }),
            sites: vec![
                site("demo-service/src/io/flush.rs:20:9", 2, 310 + 3 * i, 4.2),
                site("demo-service/src/io/compact.rs:66:5", 1, 12, 30.5),
            ],
            runtimes: names.clone(),
            ..Snapshot::default()
        };
        snap.agent.runtime_name = Some("io".into());
        io.apply(Ok(snap), at(t0, i));
    }
    let mut wb = Workbench::new(vec![web, io]);
    wb.select(1);
    wb
}

#[test]
fn runtimes_of_one_process() {
    check(
        "runtimes",
        "one process serving runtimes `web` and `io`, one target each: the picker tells them \
         apart, `io` shown (runtime=io in the header)",
        runtimes,
    );
}

// ---- Files: a recording and a saved snapshot ----

/// A recording of the 12 polls, opened on the last frame.
fn recording_app(t0: Instant) -> App {
    let frames = (0..POLLS)
        .map(|i| RecordedFrame {
            at_unix_ms: T0_MS + i * 1000,
            snapshot: snapshot(i),
        })
        .collect();
    let recording = Recording {
        header: RecordingHeader {
            format: RECORDING_FORMAT.into(),
            version: FILE_VERSION,
            target: TARGET.into(),
            started_at_unix_ms: T0_MS,
            interval_ms: 1000,
            limits: RecordingLimits::default(),
        },
        frames,
        cut_short: None,
    };
    app_for_file(
        "taskscope-4242-1700000000000.jsonl.gz",
        Opened::Recording(recording),
        t0,
    )
    .with_no_color(true)
}

#[test]
fn replay_recording() {
    check(
        "replay_recording",
        "a recording of 12 frames, the time cursor moved back 3 frames (←): frame 9/12 at \
         its wall time, the leak at 6",
        |t0| {
            let mut app = recording_app(t0);
            assert_eq!(app.step_frame(-3), Some(8));
            one(app)
        },
    );
}

/// A snapshot saved with `s` at the last poll, with the leak site's dump.
fn saved_snapshot_app(t0: Instant) -> App {
    let saved = SavedSnapshot {
        format: SNAPSHOT_FORMAT.into(),
        version: FILE_VERSION,
        // Fixed here: SavedSnapshot::new would stamp the wall clock.
        saved_at_unix_ms: T0_MS + 11_800,
        target: TARGET.into(),
        snapshot: snapshot(POLLS - 1),
        dump: Some(SavedDump {
            site: LEAK.into(),
            dump: leak_dump(),
        }),
    };
    app_for_file(
        "taskscope-4242-1700000011800.json",
        Opened::Snapshot(Box::new(saved)),
        t0,
    )
    .with_no_color(true)
}

#[test]
fn replay_snapshot() {
    check(
        "replay_snapshot",
        "a saved snapshot file: SAVED SNAPSHOT and its time in place of the status, one \
         frame (no history)",
        |t0| one(saved_snapshot_app(t0)),
    );
}

#[test]
fn replay_snapshot_detail() {
    check(
        "replay_snapshot_detail",
        "a saved snapshot file, the leak site's detail: the dump saved with the file",
        |t0| {
            let mut app = saved_snapshot_app(t0);
            select_site(&mut app, LEAK);
            assert!(app.open_detail());
            one(app)
        },
    );
}

#[test]
fn replay_snapshot_detail_without_dump() {
    check(
        "replay_snapshot_no_dump",
        "a saved snapshot file, a site saved without a dump: a file takes no new dumps",
        |t0| {
            let mut app = saved_snapshot_app(t0);
            select_site(&mut app, AXUM);
            assert!(app.open_detail());
            one(app)
        },
    );
}

// ---- A console-subscriber target ----

/// A service read through console-subscriber: no runtime facts, no uptime, lock holders
/// counted but not listed, waiters without an acquire site; no dumps, no baseline.
fn console_app(t0: Instant) -> App {
    let source = ConsoleSource::new("127.0.0.1:6669", LeakSettings::default()).unwrap();
    let mut app = App::new(source.label(), t0)
        .with_no_color(true)
        .with_capabilities(source.capabilities());
    let url = "http://127.0.0.1:6669";
    for i in 0..POLLS {
        let leak = LEAK_LIVE[i as usize];
        let sessions = LockRow {
            lock: "demo-service/src/session.rs:18:22".into(),
            kind: LockKind::Mutex,
            created_at: "demo-service/src/session.rs:18:22".into(),
            source: LockSource::TokioTracing,
            instances: 1,
            more_holders: 1,
            waiters: vec![
                LockWaiter {
                    instance: 9,
                    task: Some(318),
                    task_site: Some(SESSION_TASK.into()),
                    mode: LockMode::Exclusive,
                    permits: 1,
                    waiting_seconds: 2.3,
                    ..LockWaiter::default()
                },
                LockWaiter {
                    instance: 9,
                    task: Some(322),
                    task_site: Some(SESSION_TASK.into()),
                    mode: LockMode::Exclusive,
                    permits: 1,
                    waiting_seconds: 1.9,
                    ..LockWaiter::default()
                },
            ],
            ..LockRow::default()
        };
        let snap = Snapshot {
            schema_version: SCHEMA_VERSION,
            taken_at_unix_ms: T0_MS + i * 1000,
            process: ProcessInfo {
                pid: 0,
                name: format!("console-subscriber at {url}"),
            },
            sites: vec![
                // All but the newest leaked tasks idle past the site's threshold.
                SiteRow {
                    idle_over_threshold: leak.saturating_sub(2),
                    ..site(LEAK, leak, leak, 0.01)
                },
                site(AXUM, AXUM_LIVE[i as usize], 48_000 + 37 * i, 812.44),
                site(SESSION_TASK, SESSION_LIVE[i as usize], 1290 + 2 * i, 3.1),
            ],
            locks: vec![sessions],
            findings: vec![findings()[0].clone()],
            ..Snapshot::default()
        };
        app.apply(Ok(snap), at(t0, i));
    }
    app
}

#[test]
fn console_sites() {
    check(
        "console_sites",
        "a console-subscriber target after `b`: the footer says why there is no baseline",
        |t0| {
            let mut app = console_app(t0);
            app.request_baseline();
            assert!(!app.take_baseline_request(), "nothing to ask the target");
            one(app)
        },
    );
}

#[test]
fn console_detail() {
    check(
        "console_detail",
        "a console-subscriber target, the leak site's detail: why there is no task dump",
        |t0| {
            let mut app = console_app(t0);
            select_site(&mut app, LEAK);
            assert!(app.open_detail());
            assert_eq!(app.take_dump_request(), None, "nothing to ask the target");
            one(app)
        },
    );
}

#[test]
fn console_locks() {
    check(
        "console_locks",
        "a console-subscriber target's locks: one holder counted, not listed; waiters \
         without an acquire site",
        |t0| {
            let mut app = console_app(t0);
            app.toggle_locks();
            one(app)
        },
    );
}

#[test]
fn replay_snapshot_detail_after_r() {
    check(
        "replay_snapshot_detail_after_r",
        "a saved snapshot file, the leak site's detail after r: a file takes no new dumps, so \
         the refusal says why and offers no 'try again'; the saved dump stays below",
        |t0| {
            let mut app = saved_snapshot_app(t0);
            select_site(&mut app, LEAK);
            assert!(app.open_detail());
            app.request_dump();
            one(app)
        },
    );
}
