//! Rendering an `App` into a `TestBackend` and reading the screen back as text.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use taskscope::model::{ProcessInfo, RuntimeInfo, SCHEMA_VERSION, SiteRow, Snapshot};
use taskscope_tui::client::FetchError;
use taskscope_tui::state::App;
use taskscope_tui::view;

fn fixture() -> Snapshot {
    Snapshot {
        schema_version: SCHEMA_VERSION,
        uptime_seconds: 3725.0,
        process: ProcessInfo {
            pid: 4242,
            name: "demo-service".into(),
        },
        runtime: Some(RuntimeInfo {
            workers: 4,
            alive_tasks: 11,
            global_queue_depth: 3,
            worker_busy_seconds: vec![1.0, 2.0, 3.0, 4.0],
            ..RuntimeInfo::default()
        }),
        // Deliberately not in live order: the view sorts.
        sites: vec![
            SiteRow {
                site: "axum-0.8.9/src/serve/mod.rs:389:5".into(),
                live: 2,
                spawned: 40,
                completed: 38,
                polls: 500,
                busy_seconds: 0.5,
                ..Default::default()
            },
            SiteRow {
                site: "demo-service/src/main.rs:77:9".into(),
                live: 0,
                spawned: 3,
                completed: 3,
                polls: 9,
                busy_seconds: 0.0,
                ..Default::default()
            },
            SiteRow {
                site: "demo-service/src/faults/leak.rs:42:5".into(),
                live: 7,
                spawned: 7,
                completed: 0,
                polls: 14,
                busy_seconds: 1.234,
                ..Default::default()
            },
        ],
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

/// The screen lines holding each site, in screen order, split into words.
fn site_rows(lines: &[String]) -> Vec<Vec<String>> {
    lines
        .iter()
        .filter(|l| l.contains(".rs:"))
        .map(|l| {
            l.trim_matches(|c: char| c == '│' || c.is_whitespace())
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn connected_app(t0: Instant) -> App {
    let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
    let mut earlier = fixture();
    for s in &mut earlier.sites {
        s.live = s.live.saturating_sub(1);
    }
    // Six polls, 3 s of history per sparkline column at width 20: two columns.
    for i in 0..6 {
        let snap = if i < 3 { earlier.clone() } else { fixture() };
        app.apply(Ok(snap), t0 + Duration::from_secs(i));
    }
    app
}

fn assert_rows(lines: &[String]) {
    let rows = site_rows(lines);
    assert_eq!(rows.len(), 3, "{lines:#?}");
    // Site, Live, Δ60s, Spawned, Completed, Busy, then the sparkline.
    assert_eq!(
        rows[0][..6],
        words(&[
            "demo-service/src/faults/leak.rs:42:5",
            "7",
            "+1",
            "7",
            "0",
            "1.23"
        ]),
        "{lines:#?}"
    );
    assert_eq!(
        rows[1][..6],
        words(&[
            "axum-0.8.9/src/serve/mod.rs:389:5",
            "2",
            "+1",
            "40",
            "38",
            "0.50"
        ]),
        "{lines:#?}"
    );
    assert_eq!(
        rows[2][..6],
        words(&["demo-service/src/main.rs:77:9", "0", "0", "3", "3", "0.00"]),
        "{lines:#?}"
    );
    // Two columns each, small moves drawn against 0..10: leak went 6 -> 7, axum 1 -> 2
    // (flat, not a spike), the idle site stayed at 0.
    assert_eq!(rows[0][6], "▅▆", "{lines:#?}");
    assert_eq!(rows[1][6], "▂▂", "{lines:#?}");
    assert_eq!(rows[2][6], "▁▁", "{lines:#?}");
}

#[test]
fn renders_connected_snapshot() {
    let t0 = Instant::now();
    let app = connected_app(t0);
    let lines = screen(&app, 110, 20);
    let text = lines.join("\n");

    assert!(text.contains("Target: http://127.0.0.1:6060"), "{text}");
    assert!(text.contains("Status: CONNECTED"), "{text}");
    assert!(!text.contains("DISCONNECTED"), "{text}");
    assert!(text.contains("Process: demo-service (pid 4242)"), "{text}");
    assert!(text.contains("Uptime: 1h 02m 05s"), "{text}");
    assert!(text.contains("Workers: 4"), "{text}");
    assert!(text.contains("Live tasks: 9"), "{text}");
    assert!(text.contains("Runtime alive: 11"), "{text}");
    assert!(text.contains("Global queue: 3"), "{text}");
    assert!(text.contains("Spawn sites (3)"), "{text}");
    for col in [
        "Site",
        "Live",
        "Spawned",
        "Completed",
        "Busy (s)",
        "Live (60s)",
    ] {
        assert!(text.contains(col), "missing column {col}: {text}");
    }
    assert!(text.contains("q quit  ↑/↓ select"), "{text}");
    assert!(text.contains("Enter site & task dump"), "{text}");
    assert_rows(&lines);
}

#[test]
fn renders_disconnected_with_last_rows() {
    let t0 = Instant::now();
    let mut app = connected_app(t0);
    app.apply(
        Err(FetchError::ConnectionRefused {
            url: "http://127.0.0.1:6060/debug/taskscope/snapshot".into(),
        }),
        t0 + Duration::from_secs(7),
    );
    app.tick(t0 + Duration::from_secs(10));
    let lines = screen(&app, 110, 20);
    let text = lines.join("\n");

    assert!(text.contains("DISCONNECTED"), "{text}");
    assert!(text.contains("showing data from 5s ago"), "{text}");
    assert!(text.contains("Error (for 3s): "), "{text}");
    assert!(
        text.contains("connection refused by http://127.0.0.1:6060/debug/taskscope/snapshot"),
        "{text}"
    );
    assert!(text.contains("Live tasks: 9"), "{text}");
    assert_rows(&lines);
}

#[test]
fn renders_connecting_without_data() {
    let app = App::new("http://127.0.0.1:6060", Instant::now()).with_no_color(true);
    let text = screen(&app, 80, 24).join("\n");
    assert!(text.contains("CONNECTING"), "{text}");
    assert!(text.contains("waiting for the first snapshot"), "{text}");
}

#[test]
fn fits_80x24() {
    let app = connected_app(Instant::now());
    let lines = screen(&app, 80, 24);
    let rows = site_rows(&lines);
    assert_eq!(rows.len(), 3, "{lines:#?}");
    // Long sites keep their file:line:col end when cut.
    assert_eq!(rows[0][0], "…/src/faults/leak.rs:42:5", "{lines:#?}");
    assert_eq!(
        rows[0][1..6],
        words(&["7", "+1", "7", "0", "1.23"]),
        "{lines:#?}"
    );
    // 9 sparkline columns here, 7 samples each: the 6 polls make one column.
    assert_eq!(rows[0][6], "▆", "{lines:#?}");
}

#[test]
fn tiny_and_odd_sizes_do_not_panic() {
    let t0 = Instant::now();
    let mut app = connected_app(t0);
    for (w, h) in [(20, 5), (1, 1), (0, 0), (5, 40), (200, 3), (30, 10)] {
        screen(&app, w, h);
    }
    app.apply(
        Err(FetchError::Status {
            status: 500,
            url: "http://x".into(),
            detail: "boom".into(),
        }),
        t0,
    );
    for (w, h) in [(20, 5), (1, 1), (0, 0), (7, 7)] {
        screen(&app, w, h);
    }

    // The locks view, with a long label, holders, waiters and a finding, and empty.
    use taskscope::model::{Finding, FindingKind, HolderDelay, LockHolder, LockRow, LockWaiter};
    let long = format!(
        "a-very-long-lock-name ({}:12:5)",
        "deeply/nested/".repeat(8)
    );
    let mut snap = fixture();
    snap.locks = vec![LockRow {
        lock: long.clone(),
        wait_share: 1.5,
        delay_by_holder_site: vec![HolderDelay {
            site: long.clone(),
            seconds: 3.0,
            contentions: 2,
        }],
        holders: vec![LockHolder {
            task: Some(1),
            task_site: Some(long.clone()),
            site: long.clone(),
            task_idle_seconds: Some(2.0),
            ..LockHolder::default()
        }],
        waiters: vec![LockWaiter {
            task: None,
            site: long.clone(),
            ..LockWaiter::default()
        }],
        more_waiters: 7,
        ..LockRow::default()
    }];
    snap.findings = vec![Finding {
        kind: FindingKind::HotLock,
        site: long.clone(),
        summary: "word ".repeat(200),
        ..Finding::default()
    }];
    let sizes = [
        (20, 5),
        (1, 1),
        (0, 0),
        (5, 40),
        (200, 3),
        (30, 10),
        (80, 24),
        (7, 7),
    ];
    for snap in [snap.clone(), fixture()] {
        let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
        app.apply(Ok(snap), t0);
        app.toggle_locks();
        for (w, h) in sizes {
            // Sized like the event loop does, then drawn; then resized without sizing.
            let area = ratatui::layout::Rect::new(0, 0, w, h);
            app.set_lock_viewport_rows(view::lock_table_body_rows(area, &app));
            app.navigate(taskscope_tui::state::Nav::End);
            screen(&app, w, h);
            screen(&app, h.max(1), w);
        }
    }

    // The findings view, with a finding of every kind of evidence and long labels; paused
    // or not, with the help over it or not, and the help over every other view.
    use taskscope::model::{DeadlockStep, Evidence, Severity};
    let evidence = [
        Evidence::IdleTooLong {
            threshold_seconds: 10.0,
            derived: true,
            longest_wait_seconds: f64::NAN,
            oldest_idle_seconds: 1e300,
            live: u64::MAX,
        },
        Evidence::Growth {
            rate_per_second: 0.5,
            window_seconds: 60.0,
            floor_before: 0,
            floor_after: 7,
            live: 7,
        },
        Evidence::LostWaker {
            task_ids: (0..10).collect(),
            oldest_idle_seconds: 3.0,
        },
        Evidence::BlockedWorker {
            worker: None,
            task: 9,
            seconds: 1.4,
            threshold_seconds: 0.1,
        },
        Evidence::AllWorkersBlocked {
            workers: 4,
            seconds: 2.0,
        },
        Evidence::Deadlock {
            cycle: vec![
                DeadlockStep {
                    task: None,
                    task_site: Some(long.clone()),
                    waits_for: long.clone(),
                    wait_site: long.clone(),
                    holds: vec![long.clone(); 3],
                    ..DeadlockStep::default()
                };
                3
            ],
            blocked_behind: 1,
        },
        Evidence::GuardAcrossAwait {
            lock: long.clone(),
            guards: 1,
            oldest_idle_seconds: 2.0,
            threshold_seconds: 1.0,
        },
        Evidence::HotLock {
            lock: long.clone(),
            wait_share: f64::INFINITY,
            contended: 3,
            top_holder_sites: vec![HolderDelay {
                site: long.clone(),
                seconds: 1.0,
                contentions: 1,
            }],
        },
        Evidence::BlockingPoolSaturated {
            threads: 512,
            queue_depth: 9,
            seconds: 30.0,
        },
        Evidence::Unknown,
    ];
    let mut many = snap.clone();
    many.findings = evidence
        .into_iter()
        .map(|evidence| Finding {
            kind: FindingKind::Unknown,
            severity: Severity::Unknown,
            site: long.clone(),
            count: u64::MAX,
            summary: format!("{} \x1b[2J", "word ".repeat(100)),
            evidence,
            ..Finding::default()
        })
        .collect();
    let sizes_and_more = [sizes.as_slice(), &[(2, 2), (79, 23), (81, 25), (120, 8)]].concat();
    for snap in [many, fixture()] {
        let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
        app.apply(Ok(snap), t0);
        app.open_findings();
        for (w, h) in &sizes_and_more {
            let (w, h) = (*w, *h);
            for end in [false, true] {
                let area = ratatui::layout::Rect::new(0, 0, w, h);
                app.set_finding_viewport_rows(view::finding_table_body_rows(area, &app));
                app.navigate(if end {
                    taskscope_tui::state::Nav::End
                } else {
                    taskscope_tui::state::Nav::Down
                });
                screen(&app, w, h);
                screen(&app, h.max(1), w);
            }
        }
        app.toggle_pause(t0);
        app.refresh_slower();
        for view in [0, 1, 2, 3] {
            app.close_help();
            match view {
                0 => app.open_findings(),
                1 => {
                    app.close_findings();
                    app.toggle_locks();
                }
                2 => {
                    app.close_locks();
                    app.open_detail();
                }
                _ => app.close_detail(),
            }
            for help in [false, true] {
                if help {
                    app.toggle_help();
                }
                for (w, h) in &sizes_and_more {
                    screen(&app, *w, *h);
                }
            }
        }
    }
}

#[test]
fn colours_follow_no_color() {
    use ratatui::style::Color;
    let t0 = Instant::now();
    let render = |no_color: bool| {
        let mut app = connected_app(t0);
        app.no_color = no_color;
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal.draw(|f| view::render(f, &app)).unwrap();
        terminal.backend().buffer().clone()
    };
    let plain = render(true);
    assert!(
        plain
            .content()
            .iter()
            .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
    );
    let coloured = render(false);
    assert!(coloured.content().iter().any(|c| c.fg == Color::Green));
}

#[test]
fn findings_are_listed_and_their_sites_marked() {
    use taskscope::model::{Evidence, Finding, FindingKind, Severity};
    let t0 = Instant::now();
    let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
    let mut snap = fixture();
    let site = "demo-service/src/faults/leak.rs:42:5";
    let lost = Finding {
        kind: FindingKind::LostWaker,
        severity: Severity::Critical,
        site: site.into(),
        count: 1,
        summary: format!("1 task spawned at {site} has lost its waker"),
        fragment: "tasks have lost their waker".into(),
        evidence: Evidence::Unknown,
    };
    snap.findings = vec![
        lost,
        Finding {
            kind: FindingKind::Growth,
            severity: Severity::Warning,
            site: site.into(),
            count: 7,
            summary: format!(
                "live tasks spawned at {site} grow by 0.50/s over the last 60 s: the \
                 low-water mark rose from 0 to 7 (7 live now)"
            ),
            fragment: "tasks more each 2.0 s".into(),
            evidence: Evidence::Unknown,
        },
    ];
    app.apply(Ok(snap), t0);
    let lines = screen(&app, 120, 24);
    let text = lines.join("\n");
    assert!(text.contains("Findings: 1 crit 1 warn"), "{text}");
    assert!(text.contains("Findings (2)"), "{text}");
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
    };
    // Most severe first, the agent's sentence after its severity, wrapped, above the table.
    let warn = at("WARN live tasks spawned at");
    assert!(at("CRIT 1 task spawned at") < warn, "{text}");
    let sentence: String = lines[warn..warn + 2]
        .iter()
        .map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        sentence.contains(
            "grow by 0.50/s over the last 60 s: the low-water mark rose from 0 to 7 (7 live now)"
        ),
        "{text}"
    );
    assert!(warn < at("Spawn sites (3)"), "{text}");
    // The site with findings is marked in the table; the others are not.
    let rows = site_rows(&lines[at("Spawn sites (3)")..]);
    assert_eq!(rows[0][..3], words(&["!", site, "7"]), "{text}");
    assert_eq!(rows[1][0], "axum-0.8.9/src/serve/mod.rs:389:5", "{text}");
    // Still fits 80x24 with the table showing.
    let small = screen(&app, 80, 24);
    assert!(
        small.iter().any(|l| l.contains("Spawn sites (3)")),
        "{small:#?}"
    );
}

#[test]
fn a_blocked_worker_shows_in_the_workers_line_and_the_findings() {
    use taskscope::model::{Evidence, Finding, FindingKind, Severity};
    let t0 = Instant::now();
    let mut snap = fixture();
    let rt = snap.runtime.as_mut().unwrap();
    rt.cpu_quota = 2.0;
    rt.blocked_workers = 1;
    rt.longest_poll_seconds = 1.4;
    rt.worker_busy_ratio = vec![1.0, 0.03, 0.5, 0.0];
    rt.blocking_threads = 4;
    rt.idle_blocking_threads = 1;
    rt.blocking_queue_depth = 0;
    snap.findings = vec![Finding {
        kind: FindingKind::BlockedWorker,
        severity: Severity::Critical,
        site: "demo-service/src/faults/leak.rs:42:5".into(),
        count: 1,
        summary: "task 9 spawned at demo-service/src/faults/leak.rs:42:5 has been in one poll \
                  for 1.4 s, blocking worker 0"
            .into(),
        fragment: "tasks blocking their worker".into(),
        evidence: Evidence::BlockedWorker {
            worker: Some(0),
            task: 9,
            seconds: 1.4,
            threshold_seconds: 0.1,
        },
    }];
    let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
    app.apply(Ok(snap), t0);
    let text = screen(&app, 120, 24).join("\n");
    assert!(
        text.contains(
            "Workers: 4 on 2.0 CPUs   Blocked: 1 of 4 (longest 1.4s)   Busy: 100% 3% 50% 0%   \
             Blocking: 3/4 busy, 0 queued"
        ),
        "{text}"
    );
    assert!(text.contains("Findings: 1 crit"), "{text}");
    assert!(text.contains("blocking worker 0"), "{text}");
    // Still fits a small terminal.
    screen(&app, 80, 24);
}
