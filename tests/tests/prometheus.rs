//! End to end with a real Prometheus (Debian's `prometheus` package; `.ci/run` installs it):
//! two demo instances with faults on, scraped every second; through Prometheus' query API,
//! `taskscope_tasks_live` at the fault's site has the exact value on each instance and summed
//! across them, rates compute, every PromQL query of the Grafana dashboard returns data,
//! and the alert rules load. Also `promtool check metrics` on `/metrics` with every fault on.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Demo, TempDir, site_of};

const S2: &str = "demo-service/src/faults/s2_reply_map.rs";
const IGNORED: f64 = 10.0;

fn root() -> PathBuf {
    PathBuf::from(common::ROOT)
}

/// A Prometheus server on a free port, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://")
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (exporter URLs) every second, with taskscope's
    /// alert rules loaded.
    fn start(targets: &[&str]) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let rules = root().join("deploy/prometheus/taskscope-alerts.yml");
        std::fs::copy(&rules, dir.0.join("taskscope-alerts.yml")).unwrap();
        let targets: Vec<String> = targets
            .iter()
            .map(|t| format!("'{}'", host_port(t)))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - taskscope-alerts.yml\n\
             scrape_configs:\n  - job_name: taskscope-demo\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `prometheus` ({e}): this test needs Debian's prometheus \
                     package (`apt-get install -y prometheus`; .ci/run installs it)"
                )
            });
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Runs an instant query; the result vector (empty on an error, which is printed).
    async fn query(&self, client: &reqwest::Client, q: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/api/v1/query?query={}", self.url, encode(q));
        let Ok(r) = client.get(url).send().await else {
            return Vec::new();
        };
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if body["status"] != "success" {
            eprintln!("query {q} failed: {body}");
            return Vec::new();
        }
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `q` until `ok` accepts its result (at most 60 s).
    async fn wait(
        &self,
        client: &reqwest::Client,
        q: &str,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let result = self.query(client, q).await;
            if ok(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "query {q} never gave what was expected; last result: {result:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every PromQL expression of the dashboard, with its variables set for the test.
fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let expr = t["expr"].as_str().expect("a PromQL target");
            let q = expr
                .replace("$instance", ".*")
                .replace("$__rate_interval", "15s")
                .replace("$topn", "10");
            assert!(!q.contains('$'), "unset variable in {expr}");
            out.push((p["title"].as_str().unwrap_or("").to_string(), q));
        }
    }
    out
}

#[tokio::test]
async fn a_real_prometheus_scrapes_two_demos_and_every_dashboard_panel_has_data() {
    let site = site_of(S2, "// fault site: S2 request");
    // Both reply-map faults strand 10 requests; A also has a hot mutex (lock panels), and
    // load on both makes rates; the idle floor of 1 s gives idle findings within seconds.
    let args = ["--idle-floor", "1", "--load", "20"];
    let a = Demo::start(&args);
    let b = Demo::start(&args);
    a.fault_on("S2").await;
    b.fault_on("S2").await;
    a.fault_on("S6").await;
    a.wait_live(&site, IGNORED as u64).await;
    b.wait_live(&site, IGNORED as u64).await;

    let prom = Prometheus::start(&[&a.exporter, &b.exporter]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Both targets up.
    prom.wait(&client, "up{job=\"taskscope-demo\"} == 1", |r| r.len() == 2)
        .await;

    // The fault's site, on each instance and summed across them.
    let live = format!("taskscope_tasks_live{{site=\"{site}\"}}");
    let per = prom.wait(&client, &live, |r| r.len() == 2).await;
    for s in &per {
        assert_eq!(value(s), IGNORED, "{s}");
    }
    let mut instances: Vec<&str> = per
        .iter()
        .map(|s| s["metric"]["instance"].as_str().unwrap())
        .collect();
    instances.sort_unstable();
    let mut want = vec![host_port(&a.exporter), host_port(&b.exporter)];
    want.sort_unstable();
    assert_eq!(instances, want);
    let sum = prom
        .wait(&client, &format!("sum({live})"), |r| r.len() == 1)
        .await;
    assert_eq!(value(&sum[0]), 2.0 * IGNORED);

    // Rates compute: requests spawn tasks all the time on both instances.
    let spawn_rate = prom
        .wait(
            &client,
            "sum by (instance) (rate(taskscope_tasks_spawned_total[10s])) > 0",
            |r| r.len() == 2,
        )
        .await;
    assert!(spawn_rate.iter().all(|s| value(s) > 0.0));

    // Every dashboard query returns data.
    let queries = dashboard_queries(&root().join("deploy/grafana/dashboards/taskscope.json"));
    assert!(queries.len() >= 15, "{queries:?}");
    for (title, q) in &queries {
        let r = prom.wait(&client, q, |r| !r.is_empty()).await;
        assert!(!r.is_empty(), "panel {title:?}: {q}");
    }

    // The alert rules loaded, in their two groups.
    let r = client
        .get(format!("{}/api/v1/rules", prom.url))
        .send()
        .await
        .unwrap();
    let rules: serde_json::Value = r.json().await.unwrap();
    let mut groups: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, ["taskscope-leaks", "taskscope-rates"]);
}

#[tokio::test]
async fn promtool_accepts_the_metrics_with_every_fault_on_under_load() {
    let demo = Demo::start(&[
        "--max-blocking-threads",
        "4",
        "--lost-waker",
        "--idle-floor",
        "1",
        "--load",
        "50",
    ]);
    let (code, body) = demo.get("/faults").await;
    assert_eq!(code, 200);
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    for f in all.as_array().unwrap() {
        demo.fault_on(f["name"].as_str().unwrap()).await;
    }
    // Let every fault show (idle findings, blocked workers, locks) before scraping.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = demo.metrics().await;
    for family in [
        "taskscope_findings",
        "taskscope_lock_wait_seconds_bucket",
        "taskscope_task_poll_duration_seconds_bucket",
        "taskscope_runtime_scheduling_delay_seconds_bucket",
    ] {
        assert!(text.contains(family), "no {family} in /metrics");
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (apt-get install -y prometheus)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{said}"
    );
    assert_eq!(said.trim(), "", "promtool check metrics reported problems");
}
