//! End to end: the demo under load with no fault switched on; when the load stops, every
//! spawn site returns to its idle level and none keeps growing.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEMO, TempDir};
use taskscope::model::Snapshot;

fn live_by_site(snap: &Snapshot) -> BTreeMap<String, u64> {
    snap.sites
        .iter()
        .map(|s| (s.site.clone(), s.live))
        .collect()
}

#[tokio::test]
async fn sites_return_to_idle_after_load() {
    let data = TempDir::new("steady");
    let mut child = Command::new(DEMO)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--exporter-addr",
            "127.0.0.1:0",
            "--workers",
            "2",
        ])
        .args(["--load", "150", "--duration", "3"])
        .arg("--data-dir")
        .arg(&data.0)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let _service = out.next().unwrap().unwrap();
    let exporter = out
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("taskscope exporter on ")
        .expect("exporter line")
        .to_string();
    // The load generator reports on stderr when its duration is over.
    let stderr = child.stderr.take().unwrap();
    let report = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("load: "))
    });
    let report = tokio::time::timeout(Duration::from_secs(60), report)
        .await
        .expect("the load ends")
        .unwrap()
        .expect("a load report line");
    let sent: u64 = report
        .strip_prefix("load: ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected report: {report}"));
    assert!(sent > 100, "{report}");
    assert!(report.contains("latency p50"), "{report}");

    let client = reqwest::Client::new();
    let snapshot = || async {
        client
            .get(format!("{exporter}/debug/taskscope/snapshot"))
            .send()
            .await
            .unwrap()
            .json::<Snapshot>()
            .await
            .unwrap()
    };
    let during: Snapshot = snapshot().await;
    let spawned: u64 = during.sites.iter().map(|s| s.spawned).sum();
    assert!(spawned > sent, "the load spawned tasks: {spawned}");

    // Idle level: nothing the handlers spawned is left (confirmations end within their
    // 1 s timeout, connections close with the load's client); the worker pool keeps its 4
    // workers, the server its accept loop and serve task.
    let deadline = Instant::now() + Duration::from_secs(30);
    let idle = loop {
        let snap = snapshot().await;
        let live = live_by_site(&snap);
        let handlers: u64 = live
            .iter()
            .filter(|(s, _)| s.starts_with("demo-service/src/app.rs") || s.contains("report_leak"))
            .map(|(_, n)| n)
            .sum();
        let workers: u64 = live
            .iter()
            .filter(|(s, _)| s.starts_with("demo-service/src/workers.rs"))
            .map(|(_, n)| n)
            .sum();
        let connections: u64 = live
            .iter()
            .filter(|(s, _)| s.starts_with("axum-"))
            .map(|(_, n)| n)
            .sum();
        // axum: the accept loop (1), and no connection left.
        if handlers == 0 && workers == 4 && connections == 1 {
            break live;
        }
        assert!(
            Instant::now() < deadline,
            "not back to idle: handlers {handlers}, workers {workers}, axum {connections}: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // And it stays there: no site grows while nothing happens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = live_by_site(&snapshot().await);
    assert_eq!(later, idle);
    let _ = child.kill();
    let _ = child.wait();
}
