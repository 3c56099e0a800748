//! End to end: the demo service as a real process, its leak endpoint called K times, and
//! taskscope's exporter read the way Prometheus and the TUI read it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use taskscope::model::{Snapshot, TaskState};

/// The demo binary built by this package (same code as `taskscope-demo`).
const DEMO: &str = env!("CARGO_BIN_EXE_taskscope-demo-e2e");

/// The leak's source, read at compile time so the expected spawn site follows the code.
const LEAK_SOURCE: &str = include_str!("../../demo-service/src/faults/report_leak.rs");
const LEAK_FILE: &str = "demo-service/src/faults/report_leak.rs";

/// `file:line:col` of the `tokio::spawn` marked as the leak site in the demo's source.
fn leak_site() -> String {
    let (idx, line) = LEAK_SOURCE
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("// leak site: report job"))
        .expect("leak site marker in report_leak.rs");
    let col = line
        .find("tokio::spawn")
        .expect("tokio::spawn on the marked line")
        + 1;
    format!("{LEAK_FILE}:{}:{}", idx + 1, col)
}

/// A running demo process, killed when dropped.
struct Demo {
    child: Child,
    service: String,
    exporter: String,
}

impl Demo {
    fn start(extra: &[&str]) -> Demo {
        let mut child = Command::new(DEMO)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--exporter-addr",
                "127.0.0.1:0",
                "--workers",
                "2",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the demo");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url_after = |prefix: &str| {
            let line = lines.next().expect("demo prints its addresses").unwrap();
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
                .to_string()
        };
        let service = url_after("service listening on ");
        let exporter = url_after("taskscope exporter on ");
        Demo {
            child,
            service,
            exporter,
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn live_at(metrics: &str, site: &str) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string())))
        .expect("the exporter's text parses");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "taskscope_tasks_live" && s.labels.get("site") == Some(site))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("taskscope_tasks_live is not a gauge: {other:?}"),
        })
}

#[tokio::test]
async fn every_leak_call_leaves_one_live_task_at_the_leak_site() {
    const K: usize = 7;
    let demo = Demo::start(&[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let site = leak_site();

    for _ in 0..K {
        let resp = client
            .post(format!("{}/reports", demo.service))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    // The jobs block once their first progress message has filled the channel; wait until
    // every one is parked (two polls each: started, then blocked after the first send).
    let deadline = Instant::now() + Duration::from_secs(10);
    let snap = loop {
        let snap: Snapshot = client
            .get(format!(
                "{}/debug/taskscope/snapshot?tasks=1000",
                demo.exporter
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let settled = snap
            .tasks
            .iter()
            .filter(|t| t.site == site && t.polls >= 3 && t.state == TaskState::Idle)
            .count();
        if settled == K || Instant::now() > deadline {
            break snap;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let metrics = client
        .get(format!("{}/metrics", demo.exporter))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        live_at(&metrics, &site),
        Some(K as f64),
        "site {site} in:\n{metrics}"
    );

    let row = snap
        .sites
        .iter()
        .find(|s| s.site == site)
        .unwrap_or_else(|| panic!("no row for {site}: {:?}", snap.sites));
    assert_eq!(
        (row.live, row.spawned, row.completed),
        (K as u64, K as u64, 0)
    );
    let leaked: Vec<_> = snap.tasks.iter().filter(|t| t.site == site).collect();
    assert_eq!(leaked.len(), K);
    assert!(leaked.iter().all(|t| t.state == TaskState::Idle));
    assert_eq!(snap.runtime.as_ref().map(|r| r.workers), Some(2));

    // One more call, one more leaked task.
    client
        .post(format!("{}/reports", demo.service))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = client
            .get(format!("{}/metrics", demo.exporter))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if live_at(&metrics, &site) == Some(K as f64 + 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "live never reached {}:\n{metrics}",
            K + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn other_endpoints_leave_no_task_behind() {
    let demo = Demo::start(&[]);
    let client = reqwest::Client::new();
    let s = &demo.service;
    assert_eq!(
        client
            .get(format!("{s}/profile/3"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{s}/profile/10"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    assert_eq!(
        client
            .post(format!("{s}/batch?items=30"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "imported 30 items\n"
    );
    assert_eq!(
        client
            .post(format!("{s}/batch?items=5000"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        client
            .post(format!("{s}/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        client
            .get(format!("{s}/cache/a"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .post(format!("{s}/hits"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "1\n"
    );

    // Background confirmations take 50 ms; after that only the server task, axum's accept
    // loop and connection task may be alive, and nothing spawned by the handlers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap: Snapshot = client
            .get(format!("{}/debug/taskscope/snapshot", demo.exporter))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ours: Vec<_> = snap
            .sites
            .iter()
            .filter(|r| r.site.starts_with("demo-service/src/app.rs") && r.live > 0)
            .collect();
        let spawned: u64 = snap
            .sites
            .iter()
            .filter(|r| r.site.starts_with("demo-service/src/app.rs"))
            .map(|r| r.spawned)
            .sum();
        // 3 profile lookups x 2 requests + 30 batch items + 1 order.
        if ours.is_empty() && spawned == 3 * 2 + 30 + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {ours:?}, spawned {spawned}, sites {:?}",
            snap.sites
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
