//! End to end, release build: a task dump of fault S2, and of the README's `leak` fault, in
//! the demo built with `--release` still shows the tasks' own frames (file and line), because
//! they are spawned with `taskscope::spawn` and the release profile keeps line tables.
//!
//! The release binary is built from here with the same cargo that runs the tests (cargo
//! locks each profile's directory on its own, so this does not wait on `cargo test`'s lock);
//! after the first build it is a no-op of a second or two.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEMO, Demo, ROOT, first_user_frame, marked_line, site_of};
use taskscope::model::DumpSource;

const FILE: &str = "demo-service/src/faults/s2_reply_map.rs";
const IGNORED: u64 = 10;
const BUILD: &[&str] = &[
    "build",
    "--release",
    "-p",
    "taskscope-tests",
    "--bin",
    "taskscope-demo-e2e",
];
/// A release build from scratch takes 2–3 minutes on the 2-core CI machine.
const BUILD_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Builds the release demo and returns its path, next to the debug one's profile directory.
fn release_demo() -> PathBuf {
    let command = format!("cargo {}", BUILD.join(" "));
    let mut child = Command::new(env!("CARGO"))
        .args(BUILD)
        .current_dir(ROOT)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    // Read stderr on a thread so a chatty build cannot fill the pipe and stall.
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cargo") {
            break status;
        }
        if started.elapsed() > BUILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{command}` ran for more than {BUILD_LIMIT:?}; run it by hand before the \
                 tests:\n{}",
                log.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = log.join().unwrap_or_default();
    assert!(status.success(), "`{command}` failed ({status}):\n{log}");
    let debug_dir = PathBuf::from(DEMO).parent().unwrap().to_path_buf();
    let bin = debug_dir
        .parent()
        .unwrap()
        .join("release/taskscope-demo-e2e");
    assert!(
        bin.exists(),
        "`{command}` succeeded but {} is missing:\n{log}",
        bin.display()
    );
    bin
}

#[tokio::test]
async fn release_dump_of_s2_shows_the_request_frames() {
    let bin = tokio::task::spawn_blocking(release_demo).await.unwrap();
    let demo = Demo::start_bin(bin.to_str().unwrap(), &[]);
    let site = site_of(FILE, "// fault site: S2 request");
    demo.fault_on("S2").await;
    demo.wait_live(&site, IGNORED).await;

    // The group at the request site: all 10 ignored requests, with the request's own frame.
    let deadline = Instant::now() + Duration::from_secs(20);
    let group = loop {
        let dump = demo.dump_json(&format!("site={site}")).await;
        assert_eq!(dump.source, DumpSource::Traced, "notes: {:?}", dump.notes);
        assert!(dump.complete, "notes: {:?}", dump.notes);
        let groups: Vec<_> = dump.groups.iter().filter(|g| g.site == site).collect();
        // The last requests may still be registering with the actor: wait for one group.
        if groups.len() == 1 && groups[0].count == IGNORED {
            break groups[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no single group of {IGNORED} at {site}: {groups:#?}"
        );
        // One traced dump per second is all the exporter serves (the rest are registry-only).
        tokio::time::sleep(Duration::from_millis(1100)).await;
    };
    // With line tables only, release names are short (`poll_recv<String>`): tell tokio's
    // oneshot by its file.
    let stack = group
        .stacks
        .iter()
        .find(|s| {
            s.first()
                .is_some_and(|f| f.function.contains("oneshot") || f.file.contains("oneshot"))
        })
        .unwrap_or_else(|| panic!("no stack waits on a oneshot: {:#?}", group.stacks));
    let user = first_user_frame(stack)
        .unwrap_or_else(|| panic!("only tokio frames in release: {stack:#?}"));
    assert_eq!(user.file, FILE, "release stack: {stack:#?}");
    assert!(user.line > 0, "no line in release: {stack:#?}");

    demo.fault_off("S2").await;
    demo.wait_live(&site, 0).await;
}

/// The README's first command runs the release demo with `--fault leak`: the dump of the
/// leak site must name the line in the job where it waits, not only tokio's semaphore.
#[tokio::test]
async fn release_dump_of_the_leak_shows_the_jobs_await_point() {
    const JOBS: u64 = 5;
    const LEAK_FILE: &str = "demo-service/src/faults/report_leak.rs";
    let bin = tokio::task::spawn_blocking(release_demo).await.unwrap();
    let demo = Demo::start_bin(bin.to_str().unwrap(), &["--fault", "leak"]);
    let site = site_of(LEAK_FILE, "// leak site: report job");
    let (await_line, _) = marked_line(LEAK_FILE, "// await point: the leaked job waits here");
    for _ in 0..JOBS {
        let (status, body) = demo.post("/reports", serde_json::json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    demo.wait_live(&site, JOBS).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dump = demo.dump_json(&format!("site={site}")).await;
        assert_eq!(dump.source, DumpSource::Traced, "notes: {:?}", dump.notes);
        let lines: Vec<(u64, u32)> = dump
            .groups
            .iter()
            .filter(|g| g.site == site)
            .flat_map(|g| g.stacks.iter().map(move |s| (g.count, s)))
            .filter_map(|(count, s)| {
                first_user_frame(s)
                    .filter(|f| f.file == LEAK_FILE)
                    .map(|f| (count, f.line))
            })
            .collect();
        // A job still between its two sends may be traced elsewhere: wait for all five.
        if lines == [(JOBS, await_line)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no group of {JOBS} waiting at {LEAK_FILE}:{await_line}: {lines:?} in {:#?}",
            dump.groups
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
}
