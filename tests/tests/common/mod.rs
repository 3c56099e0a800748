//! Shared harness of the end-to-end tests: the demo as a real process on free ports, and
//! readers for what taskscope exports.

#![allow(dead_code)] // each test file uses a part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use taskscope::model::{Dump, DumpGroup, DumpSource, Finding, FindingKind, Frame, Snapshot};

/// The demo binary built by this package (same code as `taskscope-demo`).
pub const DEMO: &str = env!("CARGO_BIN_EXE_taskscope-demo-e2e");

/// Workspace root, for reading sources.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `file:line:col` of the spawn call on the line of `file` (relative to the workspace) that
/// carries `marker`, computed from the source so tests never type a line number. The column
/// is that of `tokio::spawn` / `tokio::task::spawn` / `taskscope::spawn` when present, else of
/// a method `spawn(` (as `set.spawn(` or `handle.spawn(`, whose location is the method name).
pub fn site_of(file: &str, marker: &str) -> String {
    let (number, line) = marked_line(file, marker);
    let col = [
        "tokio::spawn(",
        "tokio::task::spawn(",
        "taskscope::spawn(",
        "spawn(",
    ]
    .iter()
    .find_map(|pat| line.find(pat))
    .unwrap_or_else(|| panic!("no spawn call on the marked line of {file}: {line}"))
        + 1;
    format!("{file}:{number}:{col}")
}

/// The 1-based number and the text of the one line of `file` (relative to the workspace)
/// that carries `marker`.
pub fn marked_line(file: &str, marker: &str) -> (u32, String) {
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
    (idx as u32 + 1, line.to_string())
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
        Demo::start_bin(DEMO, extra)
    }

    /// Like [`Demo::start`], with the demo binary at `bin` (a release build, say).
    pub fn start_bin(bin: &str, extra: &[&str]) -> Demo {
        let data = TempDir::new("demo");
        let mut child = Command::new(bin)
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
        // Keep reading what else the demo prints (e.g. the console-subscriber line), so
        // its writes never meet a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
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

    /// The exporter's task dump as JSON: `GET /debug/taskscope/dump?format=json&{query}`
    /// (`query` already URL-encoded, may be empty); panics unless it answers 200.
    pub async fn dump_json(&self, query: &str) -> Dump {
        let r = self
            .client
            .get(format!(
                "{}/debug/taskscope/dump?format=json&{query}",
                self.exporter
            ))
            .send()
            .await
            .expect("the exporter answers the dump");
        let status = r.status();
        let body = r.text().await.expect("dump body");
        assert_eq!(status, 200, "dump?{query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("dump JSON: {e}: {body}"))
    }

    /// Polls per task id at `site`, from a fresh snapshot.
    pub async fn polls_at(&self, site: &str) -> BTreeMap<u64, u64> {
        self.snapshot()
            .await
            .tasks
            .iter()
            .filter(|t| t.site == site)
            .map(|t| (t.id, t.polls))
            .collect()
    }

    /// Takes a traced dump and checks what every fault test expects of it: traced and
    /// complete; exactly one group at `site`, of `count` tasks; one of its stacks has a leaf
    /// for which `leaf` holds (`what` names it in messages), and the first frame after that
    /// leaf outside tokio is in `file` with a line. Also checks that the dump did not count
    /// as polls: the tasks at `site` have the same poll counts before and 300 ms after it.
    /// Returns the dump.
    pub async fn check_traced_dump(
        &self,
        site: &str,
        count: u64,
        file: &str,
        what: &str,
        leaf: impl Fn(&str) -> bool,
    ) -> Dump {
        let before = self.polls_at(site).await;
        assert_eq!(
            before.len() as u64,
            count,
            "tasks at {site} before the dump"
        );
        let dump = self.dump_json("").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = self.polls_at(site).await;
        assert_eq!(
            before, after,
            "poll counts at {site} changed across the dump"
        );

        assert_eq!(dump.source, DumpSource::Traced, "notes: {:?}", dump.notes);
        assert!(dump.complete, "incomplete dump: {:?}", dump.notes);
        let groups: Vec<&DumpGroup> = dump.groups.iter().filter(|g| g.site == site).collect();
        assert_eq!(groups.len(), 1, "groups at {site}: {groups:#?}");
        let group = groups[0];
        assert_eq!(group.count, count, "tasks in the group at {site}");
        let stack = group
            .stacks
            .iter()
            .find(|s| s.first().is_some_and(|f| leaf(&f.function)))
            .unwrap_or_else(|| panic!("no stack at {site} waits on {what}: {:#?}", group.stacks));
        let user = first_user_frame(stack)
            .unwrap_or_else(|| panic!("no frame outside tokio after the leaf: {stack:#?}"));
        assert_eq!(
            user.file, file,
            "first frame after the {what} leaf: {stack:#?}"
        );
        assert!(user.line > 0, "no line in {user:?}");
        dump
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

impl Demo {
    /// Polls the snapshot until a finding of `kind` at `site` holds and `accept` agrees
    /// with it (at most 30 s); returns it, or panics with the findings last seen.
    pub async fn wait_finding(
        &self,
        kind: FindingKind,
        site: &str,
        accept: impl Fn(&Finding) -> bool,
    ) -> Finding {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let snap = self.snapshot().await;
            if let Some(f) = snap
                .findings
                .iter()
                .find(|f| f.kind == kind && f.site == site && accept(f))
            {
                return f.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {kind:?} finding at {site}; findings: {:#?}",
                snap.findings
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The findings now, of `kind`, at `site`.
    pub async fn findings_at(&self, kind: FindingKind, site: &str) -> Vec<Finding> {
        self.snapshot()
            .await
            .findings
            .into_iter()
            .filter(|f| f.kind == kind && f.site == site)
            .collect()
    }
}

/// `taskscope_findings{kind,severity,site}` from a /metrics text.
pub fn finding_metric(text: &str, kind: &str, severity: &str, site: &str) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exporter's text parses");
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "taskscope_findings"
                && s.labels.get("kind") == Some(kind)
                && s.labels.get("severity") == Some(severity)
                && s.labels.get("site") == Some(site)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("taskscope_findings has an unexpected type: {other:?}"),
        })
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first frame after a stack's leaf that is not tokio's own (by its file): the caller's
/// code that awaits the leaf.
pub fn first_user_frame(stack: &[Frame]) -> Option<&Frame> {
    stack.iter().skip(1).find(|f| !f.file.starts_with("tokio-"))
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

/// The value of an unlabelled metric (or the first series of `name`) in a Prometheus text
/// exposition.
pub fn scalar(text: &str, name: &str) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exporter's text parses");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name} has an unexpected type: {other:?}"),
        })
}

/// `file:line:col` of the lock call (`.lock(`, `.read(`, `.write(`, `.acquire(`) on the line
/// of `file` that carries `marker`: the acquire site taskscope reports (a method call's
/// location is its name).
pub fn acquire_site(file: &str, marker: &str) -> String {
    let source = std::fs::read_to_string(format!("{ROOT}/{file}"))
        .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    let (idx, line) = source
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker))
        .unwrap_or_else(|| panic!("no marker {marker:?} in {file}"));
    let col = [".lock(", ".read(", ".write(", ".acquire("]
        .iter()
        .find_map(|pat| line.find(pat))
        .unwrap_or_else(|| panic!("no lock call on the marked line of {file}: {line}"))
        + 2;
    format!("{file}:{}:{}", idx + 1, col)
}

impl Demo {
    /// The lock row named `name` in the snapshot now.
    pub async fn lock_row(&self, name: &str) -> taskscope::model::LockRow {
        let snap = self.snapshot().await;
        snap.locks
            .into_iter()
            .find(|l| l.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no lock named {name}"))
    }

    /// Polls the lock row named `name` until `ok` holds (at most 30 s).
    pub async fn wait_lock(
        &self,
        name: &str,
        ok: impl Fn(&taskscope::model::LockRow) -> bool,
    ) -> taskscope::model::LockRow {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let row = self.lock_row(name).await;
            if ok(&row) {
                return row;
            }
            assert!(Instant::now() < deadline, "lock {name} stayed at {row:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Demo {
    /// GET an exporter path; status and body.
    pub async fn get_exporter(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.exporter))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}
