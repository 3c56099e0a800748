//! `taskscope open FILE`: a saved snapshot and a recording shown in the same views with no
//! live target, rendered into a `TestBackend` (NO_COLOR) from files written to disk.

use std::path::PathBuf;
use std::time::Instant;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use taskscope::model::{Dump, DumpGroup, ProcessInfo, SCHEMA_VERSION, SiteRow, Snapshot};
use taskscope_tui::files::{self, Recorder, RecordingLimits, SavedDump, SavedSnapshot};
use taskscope_tui::state::{App, View};
use taskscope_tui::{app_for_file, view};

const LEAK: &str = "demo-service/src/faults/leak.rs:42:5";
const IDLE: &str = "demo-service/src/main.rs:77:9";
/// 2023-11-14 22:13:20 UTC.
const T0_MS: u64 = 1_700_000_000_000;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskscope-replay-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn snapshot(pid: u32, leak_live: u64) -> Snapshot {
    Snapshot {
        schema_version: SCHEMA_VERSION,
        uptime_seconds: 30.0,
        process: ProcessInfo {
            pid,
            name: "demo".into(),
        },
        sites: vec![
            SiteRow {
                site: LEAK.into(),
                live: leak_live,
                spawned: leak_live,
                ..SiteRow::default()
            },
            SiteRow {
                site: IDLE.into(),
                live: 1,
                spawned: 1,
                ..SiteRow::default()
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

fn inner(line: &str) -> &str {
    line.trim_start_matches('│')
        .trim_end_matches(|c: char| c == '│' || c.is_whitespace())
}

/// The words of the first line containing `needle`, without borders.
fn row_words(lines: &[String], needle: &str) -> Vec<String> {
    let line = lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle}: {lines:#?}"));
    inner(line).split_whitespace().map(str::to_string).collect()
}

fn recording(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("incident.jsonl.gz");
    let mut rec = Recorder::create(
        &path,
        "http://127.0.0.1:6060",
        1000,
        RecordingLimits::default(),
    )
    .unwrap();
    // Leak grows 10, 20, 30, 40 over four seconds.
    for i in 0..4u64 {
        rec.push(T0_MS + i * 1000, &snapshot(7, 10 * (i + 1)))
            .unwrap();
    }
    rec.finish().unwrap();
    path
}

#[test]
fn a_recording_replays_with_a_time_cursor() {
    let dir = scratch("cursor");
    let path = recording(&dir);
    let opened = files::open(&path).unwrap();
    let t0 = Instant::now();
    let mut app = app_for_file("incident.jsonl.gz", opened, t0).with_no_color(true);

    // Opens on the last frame, with the whole history behind it.
    let lines = screen(&app, 110, 20);
    assert_eq!(
        inner(&lines[1]),
        "REPLAY frame 4/4 at 2023-11-14 22:13:23 UTC   File: incident.jsonl.gz   From: http://127.0.0.1:6060"
    );
    assert_eq!(
        row_words(&lines, LEAK)[..3],
        ["demo-service/src/faults/leak.rs:42:5", "40", "+30"]
    );
    assert_eq!(
        row_words(&lines, "Live tasks:")[..3],
        ["Live", "tasks:", "41"]
    );
    assert_eq!(app.site_history(LEAK).unwrap().len(), 4);

    // Back two frames: the table, the Δ column and the histories are those of frame 2.
    assert_eq!(app.step_frame(-2), Some(1));
    let lines = screen(&app, 110, 20);
    assert_eq!(
        inner(&lines[1]),
        "REPLAY frame 2/4 at 2023-11-14 22:13:21 UTC   File: incident.jsonl.gz   From: http://127.0.0.1:6060"
    );
    assert_eq!(
        row_words(&lines, LEAK)[..3],
        ["demo-service/src/faults/leak.rs:42:5", "20", "+10"]
    );
    let h: Vec<u64> = app.site_history(LEAK).unwrap().samples().collect();
    assert_eq!(h, [10, 20]);
    assert_eq!(app.total_history().samples().collect::<Vec<_>>(), [11, 21]);

    // Clamped at both ends.
    assert_eq!(app.step_frame(-10), Some(0));
    assert_eq!(app.site_history(LEAK).unwrap().len(), 1);
    // One frame at a time forward gives what a rebuild gives.
    for want in [1, 2, 3] {
        assert_eq!(app.step_frame(1), Some(want));
    }
    let h: Vec<u64> = app.site_history(LEAK).unwrap().samples().collect();
    assert_eq!(h, [10, 20, 30, 40]);
    assert_eq!(
        app.total_history().samples().collect::<Vec<_>>(),
        [11, 21, 31, 41]
    );
    assert_eq!(app.step_frame(10), Some(3));
    assert_eq!(app.site_history(LEAK).unwrap().samples().last(), Some(40));

    // The same views work: the selection survives steps; dumps and baselines say why not.
    app.navigate(taskscope_tui::state::Nav::Down);
    assert_eq!(app.rows()[app.selected()].site, IDLE);
    app.step_frame(-1);
    assert_eq!(app.rows()[app.selected()].site, IDLE);
    assert!(app.open_detail());
    assert_eq!(app.take_dump_request(), None);
    let lines = screen(&app, 110, 20);
    let text = lines.join("\n");
    assert!(
        text.contains(
            "no task dump: unavailable for this source: a saved file holds only the dump saved with it, no new ones"
        ),
        "{text}"
    );
    app.request_baseline();
    assert!(!app.take_baseline_request());
    assert_eq!(
        app.notice(),
        Some(
            "baseline unavailable for this source: a saved file has no target to mark a baseline on"
        )
    );
    app.request_record_toggle();
    assert!(!app.take_record_toggle());

    // s saves the frame at the cursor, with where it came from.
    let saved = app.save_contents(T0_MS + 9000).unwrap();
    assert_eq!(saved.target, "http://127.0.0.1:6060");
    assert_eq!(saved.snapshot, snapshot(7, 30));
    assert_eq!(saved.dump, None);
}

#[test]
fn a_recording_across_a_restart_shows_a_new_process() {
    let dir = scratch("restart");
    let path = dir.join("restart.jsonl.gz");
    let mut rec = Recorder::create(&path, "h:1", 1000, RecordingLimits::default()).unwrap();
    rec.push(T0_MS, &snapshot(7, 50)).unwrap();
    rec.push(T0_MS + 1000, &snapshot(7, 60)).unwrap();
    let mut restarted = snapshot(8, 2);
    restarted.uptime_seconds = 1.0;
    rec.push(T0_MS + 3000, &restarted).unwrap();
    rec.push(T0_MS + 4000, &snapshot(8, 3)).unwrap();
    rec.finish().unwrap();
    let t0 = Instant::now();
    let app = app_for_file("restart.jsonl.gz", files::open(&path).unwrap(), t0).with_no_color(true);
    let lines = screen(&app, 110, 20);
    // The history starts again at the new pid; its age counts to the frame shown.
    assert_eq!(
        row_words(&lines, "Process:"),
        [
            "Process:",
            "demo",
            "(pid",
            "8)",
            "Uptime:",
            "30s",
            "(restarted",
            "1s",
            "ago)"
        ]
    );
    let h: Vec<u64> = app.site_history(LEAK).unwrap().samples().collect();
    assert_eq!(h, [2, 3]);
}

#[test]
fn a_saved_snapshot_opens_with_its_dump() {
    let dir = scratch("saved");
    let dump = Dump {
        schema_version: SCHEMA_VERSION,
        taken_at_unix_ms: T0_MS,
        total_tasks: 40,
        groups: vec![DumpGroup {
            site: LEAK.into(),
            count: 40,
            ..DumpGroup::default()
        }],
        ..Dump::default()
    };
    let saved = SavedSnapshot {
        saved_at_unix_ms: T0_MS + 5000,
        ..SavedSnapshot::new(
            "http://127.0.0.1:6060",
            snapshot(7, 40),
            Some(SavedDump {
                site: LEAK.into(),
                dump: dump.clone(),
            }),
        )
    };
    let path = files::save_snapshot(&dir, &saved).unwrap();
    let label = path.display().to_string();
    let t0 = Instant::now();
    let mut app = app_for_file(&label, files::open(&path).unwrap(), t0).with_no_color(true);
    let lines = screen(&app, 170, 20);
    assert_eq!(
        inner(&lines[1]),
        format!(
            "SAVED SNAPSHOT of 2023-11-14 22:13:25 UTC   File: {label}   From: http://127.0.0.1:6060"
        )
    );
    assert_eq!(
        row_words(&lines, LEAK)[..2],
        ["demo-service/src/faults/leak.rs:42:5", "40"]
    );

    // Enter on the site saved with its dump shows that dump, without asking for one.
    assert!(app.open_detail());
    assert_eq!(app.view(), View::Detail);
    assert_eq!(app.take_dump_request(), None);
    assert_eq!(app.detail().unwrap().dump(), Some(&dump));
    let text = screen(&app, 170, 20).join("\n");
    assert!(text.contains("taken at 22:13:20 UTC"), "{text}");
    // Notices (e.g. where s saved) show in the detail view's footer too.
    app.set_notice("saved to ./taskscope-7-1700000009.json (taskscope open FILE)".into());
    assert_eq!(
        screen(&app, 170, 20)[19].trim_end(),
        "saved to ./taskscope-7-1700000009.json (taskscope open FILE)"
    );
    // Saved again from the file: the same snapshot and dump.
    let again = app.save_contents(T0_MS + 9000).unwrap();
    assert_eq!(again.snapshot, saved.snapshot);
    assert_eq!(again.dump, saved.dump);
    assert_eq!(again.target, "http://127.0.0.1:6060");
}

/// Cost of one step of the time cursor on a large recording (the state rebuilds its
/// histories from up to 60 frames): 120 frames of 10k sites. Prints the numbers; run with
/// `cargo test --release -p taskscope-tui --test replay -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_replay_step_on_10k_sites() {
    let sites = 10_000u64;
    let frames: Vec<taskscope_tui::state::ReplayFrame> = (0..120u64)
        .map(|f| taskscope_tui::state::ReplayFrame {
            at_unix_ms: T0_MS + f * 1000,
            snapshot: Snapshot {
                schema_version: SCHEMA_VERSION,
                uptime_seconds: f as f64,
                process: ProcessInfo {
                    pid: 7,
                    name: "big".into(),
                },
                sites: (0..sites)
                    .map(|i| SiteRow {
                        site: format!("crate-{}/src/module_{i}.rs:{}:5", i % 50, i % 997),
                        live: (i * 7 + f) % 1000,
                        spawned: i * 100 + f,
                        ..SiteRow::default()
                    })
                    .collect(),
                ..Snapshot::default()
            },
        })
        .collect();
    let t0 = Instant::now();
    let mut app = App::new("big.jsonl.gz", t0);
    let started = Instant::now();
    app.load_frames(
        "big.jsonl.gz",
        "http://h:1",
        taskscope_tui::state::ReplayKind::Recording,
        frames,
        None,
    );
    let load = started.elapsed();
    let steps = 10;
    let started = Instant::now();
    for _ in 0..steps {
        app.step_frame(-1);
    }
    let back = started.elapsed() / steps;
    let started = Instant::now();
    for _ in 0..steps {
        app.step_frame(1);
    }
    let forward = started.elapsed() / steps;
    println!("10k sites, 120 frames: open {load:?}, step back {back:?}, step forward {forward:?}");
}

#[test]
fn hostile_frame_times_never_panic() {
    let dir = scratch("hostile");
    let path = dir.join("times.jsonl.gz");
    let mut rec = Recorder::create(&path, "h:1", 1000, RecordingLimits::default()).unwrap();
    for at in [u64::MAX, 0, u64::MAX, 5, 3] {
        rec.push(at, &snapshot(7, at % 100)).unwrap();
    }
    rec.finish().unwrap();
    let t0 = Instant::now();
    let mut app =
        app_for_file("times.jsonl.gz", files::open(&path).unwrap(), t0).with_no_color(true);
    for by in [-1, -1, 1, 1, -4, 1, 1, 1, 1, 1] {
        app.step_frame(by);
        let lines = screen(&app, 110, 20);
        assert!(inner(&lines[1]).starts_with("REPLAY frame "), "{lines:#?}");
    }
    app.step_frame(-4);
    assert_eq!(
        inner(&screen(&app, 110, 20)[1]),
        "REPLAY frame 1/5 at 18446744073709551615 ms after 1970   File: times.jsonl.gz   From: h:1"
    );
}
