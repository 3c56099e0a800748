//! Shared harness of the end-to-end tests: the demo as a real process on free ports, and
//! readers for what taskscope exports.

#![allow(dead_code)] // each test file uses a part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use taskscope::model::Snapshot;

/// The demo binary built by this package (same code as `taskscope-demo`).
pub const DEMO: &str = env!("CARGO_BIN_EXE_taskscope-demo-e2e");

/// Workspace root, for reading sources.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `file:line:col` of the spawn call on the line of `file` (relative to the workspace) that
/// carries `marker`, computed from the source so tests never type a line number. The column
/// is that of `tokio::spawn` / `tokio::task::spawn` when present, else of a method `spawn(`
/// (as `set.spawn(` or `handle.spawn(`, whose location is the method name).
pub fn site_of(file: &str, marker: &str) -> String {
    let source = std::fs::read_to_string(format!("{ROOT}/{file}"))
        .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let matches: Vec<(usize, &str)> = source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "marker {marker:?} must be on exactly one line of {file}"
    );
    let (idx, line) = matches[0];
    let col = ["tokio::spawn(", "tokio::task::spawn(", "spawn("]
        .iter()
        .find_map(|pat| line.find(pat))
        .unwrap_or_else(|| panic!("no spawn call on the marked line of {file}: {line}"))
        + 1;
    format!("{file}:{}:{}", idx + 1, col)
}

/// A running demo process, killed when dropped.
pub struct Demo {
    child: Child,
    /// Base URL of the service.
    pub service: String,
    /// Base URL of its taskscope exporter.
    pub exporter: String,
    /// An HTTP client with a timeout.
    pub client: reqwest::Client,
    _data: TempDir,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "taskscope-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Demo {
    /// Starts the demo with 2 workers on free ports, plus `extra` arguments.
    pub fn start(extra: &[&str]) -> Demo {
        let data = TempDir::new("demo");
        let mut child = Command::new(DEMO)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--exporter-addr",
                "127.0.0.1:0",
                "--workers",
                "2",
            ])
            .arg("--data-dir")
            .arg(&data.0)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the demo");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url_after = |prefix: &str| {
            let line = lines
                .next()
                .expect("the demo prints its addresses")
                .expect("readable stdout");
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
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _data: data,
        }
    }

    /// GET a service path; status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.service))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// POST JSON to a service path; status and body.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.service))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Switches a fault on through the API; panics unless it answers 200.
    pub async fn fault_on(&self, name: &str) {
        let (status, body) = self
            .post(&format!("/faults/{name}"), serde_json::json!({}))
            .await;
        assert_eq!(status, 200, "switching {name} on: {body}");
    }

    /// Switches a fault off through the API; panics unless it answers 200.
    pub async fn fault_off(&self, name: &str) {
        let r = self
            .client
            .delete(format!("{}/faults/{name}", self.service))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "switching {name} off");
    }

    /// The exporter's snapshot with up to 10000 tasks.
    pub async fn snapshot(&self) -> Snapshot {
        self.client
            .get(format!(
                "{}/debug/taskscope/snapshot?tasks=10000",
                self.exporter
            ))
            .send()
            .await
            .expect("the exporter answers")
            .json()
            .await
            .expect("snapshot JSON")
    }

    /// The exporter's /metrics text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.exporter))
            .send()
            .await
            .expect("the exporter answers")
            .text()
            .await
            .unwrap()
    }

    /// `taskscope_tasks_live{site}` from /metrics.
    pub async fn live_at(&self, site: &str) -> Option<f64> {
        metric(&self.metrics().await, "taskscope_tasks_live", site)
    }

    /// Polls /metrics until `taskscope_tasks_live{site}` equals `want` (at most 20 s);
    /// panics with the last value otherwise.
    pub async fn wait_live(&self, site: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.live_at(site).await;
            if got == Some(want as f64) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "taskscope_tasks_live{{site={site:?}}} stayed at {got:?}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `name{site=...}` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str, site: &str) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exporter's text parses");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("site") == Some(site))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name} has an unexpected type: {other:?}"),
        })
}
