//! End to end: the demo under steady load with no fault, for more than a minute, with the
//! agent's default leak settings (idle floor 120 s, growth window 60 s): not one leak
//! finding at any moment, the listener, the worker pool and every other long-lived site
//! included. It runs past the idle floor, so that connections idling in the service's HTTP
//! client pool (90 s before they are closed) would show if the floor were too short.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEMO, TempDir};
use taskscope::model::{Finding, Snapshot};

/// Longer than the idle floor and twice the growth window.
const LOAD_SECS: u64 = 130;

#[tokio::test]
async fn steady_load_for_two_minutes_gives_no_leak_finding() {
    let data = TempDir::new("no-fp");
    let mut child = KillOnDrop(
        Command::new(DEMO)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--exporter-addr",
                "127.0.0.1:0",
                "--workers",
                "2",
            ])
            .args(["--load", "100", "--duration", &LOAD_SECS.to_string()])
            .arg("--data-dir")
            .arg(&data.0)
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let _service = out.next().unwrap().unwrap();
    let exporter = out
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("taskscope exporter on ")
        .expect("exporter line")
        .to_string();

    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut seen: BTreeMap<String, Finding> = BTreeMap::new();
    let mut polls = 0;
    let mut last: Option<Snapshot> = None;
    // Every second while the load runs, and a little after.
    while started.elapsed() < Duration::from_secs(LOAD_SECS + 3) {
        let snap: Snapshot = client
            .get(format!("{exporter}/debug/taskscope/snapshot"))
            .send()
            .await
            .expect("the exporter answers")
            .json()
            .await
            .expect("snapshot JSON");
        for f in &snap.findings {
            seen.entry(format!("{:?} {}", f.kind, f.site))
                .or_insert_with(|| f.clone());
        }
        polls += 1;
        last = Some(snap);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let last = last.expect("snapshots");
    assert!(polls > 120, "only {polls} snapshots");
    assert!(
        seen.is_empty(),
        "findings under steady load without faults: {:#?}",
        seen.values().collect::<Vec<_>>()
    );
    // The load was real: thousands of tasks came and went, and the long-lived sites (axum's
    // accept loop, the worker pool) were there all along.
    let spawned: u64 = last.sites.iter().map(|s| s.spawned).sum();
    assert!(spawned > 5_000, "the load spawned only {spawned} tasks");
    let workers = last
        .sites
        .iter()
        .find(|s| s.site.starts_with("demo-service/src/workers.rs"))
        .expect("the worker pool's site");
    assert_eq!(workers.live, 4);
}

/// Kills the demo when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
