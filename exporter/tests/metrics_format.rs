//! `/metrics` as Prometheus sees it, from two named runtimes with idle and finished tasks, a
//! contended `taskscope::sync::Mutex` whose name needs escaping, and an idle-too-long
//! finding:
//!
//! - the body's HELP and TYPE lines and its series (name and labels, and the values that do
//!   not depend on timing) match `tests/golden/metrics_format.txt`, captured from the
//!   exporter as it was before `/metrics` was written without the prometheus crate
//!   (`TASKSCOPE_UPDATE_GOLDEN=1` rewrites it);
//! - `promtool check metrics` accepts the body (skipped, saying so, without promtool).
//!
//! Source locations in labels are written as `metrics_format.rs@MARK`, MARK being the
//! `// mark:` comment of the line, so editing this file does not change the golden file.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use taskscope::Agent;
use taskscope_exporter::Exporter;

const SOURCE: &str = include_str!("metrics_format.rs");
const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/metrics_format.txt"
);
const FILE: &str = "exporter/tests/metrics_format.rs:";

/// Values that do not depend on timing or scheduling: compared exactly. Every other value
/// is written as `*`.
const STABLE_VALUES: &[&str] = &[
    "taskscope_tasks_live",
    "taskscope_tasks_spawned_total",
    "taskscope_tasks_completed_total",
    "taskscope_task_panics_total",
    "taskscope_runtime_workers",
    "taskscope_sites_capacity",
    "taskscope_cap_capacity",
    "taskscope_lock_acquisitions_total",
    "taskscope_lock_contended_total",
    "taskscope_lock_holders",
    "taskscope_lock_waiters",
    "taskscope_lock_wait_seconds_count",
    "taskscope_lock_hold_seconds_count",
    "taskscope_findings",
    "taskscope_tasks_idle_over_threshold",
];

fn runtime(name: &str) -> (tokio::runtime::Runtime, Agent) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    let agent = Agent::builder()
        .runtime_name(name)
        .idle_threshold(Duration::from_millis(50))
        .install(&mut builder);
    (builder.build().unwrap(), agent)
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("exporter answers");
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

/// Replaces `exporter/tests/metrics_format.rs:LINE:COL` by `metrics_format.rs@MARK`.
fn normalize(text: &str) -> String {
    let lines: Vec<&str> = SOURCE.lines().collect();
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(FILE) {
        out.push_str(&rest[..at]);
        let after = &rest[at + FILE.len()..];
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let line: usize = after[..digits].parse().expect("line number");
        let mut tail = &after[digits..];
        if let Some(col) = tail.strip_prefix(':') {
            let d = col.find(|c: char| !c.is_ascii_digit()).unwrap_or(col.len());
            tail = &col[d..];
        }
        let mark = lines[line - 1]
            .split("// mark: ")
            .nth(1)
            .unwrap_or_else(|| panic!("line {line} of this file has no `// mark:`"));
        out.push_str("metrics_format.rs@");
        out.push_str(mark.trim());
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// HELP and TYPE lines, then one line per sample: `name{labels sorted} value`, the value
/// `*` unless it is in [`STABLE_VALUES`]; sorted, locations normalized.
fn summary(body: &str) -> String {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("the body parses as the Prometheus text format");
    let mut out = BTreeSet::new();
    for line in body.lines().filter(|l| l.starts_with('#')) {
        out.insert(normalize(line));
    }
    for s in &scrape.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let shown = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v)
                if STABLE_VALUES.contains(&s.metric.as_str()) =>
            {
                v.to_string()
            }
            // Buckets come as one sample per series; their bounds are stable, not their
            // counts.
            prometheus_parse::Value::Histogram(ref b) => {
                let bounds: Vec<String> = b.iter().map(|b| b.less_than.to_string()).collect();
                format!("le {}", bounds.join(" "))
            }
            _ => "*".to_string(),
        };
        out.insert(normalize(&format!(
            "{}{{{}}} {shown}",
            s.metric,
            labels.join(",")
        )));
    }
    out.into_iter().collect::<Vec<_>>().join("\n") + "\n"
}

fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).ok()?;
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(k).map(normalize).as_deref() == Some(v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
            _ => f64::NAN,
        })
}

/// Runs `promtool check metrics` on the body; `None` when promtool is not installed.
fn promtool(body: &str) -> Option<std::process::Output> {
    use std::io::Write;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn metrics_body_matches_golden_and_passes_promtool() {
    let (web_rt, web) = runtime("web");
    let (io_rt, io) = runtime("io");
    let exporter = Exporter::new(web.clone())
        .runtime(io)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = exporter.local_addr();

    let (tx, rx) = tokio::sync::watch::channel(false);
    // Four tasks from one site, one of which finishes: the idle-too-long finding needs a
    // site whose tasks do finish.
    for i in 0..4 {
        let mut rx = rx.clone();
        let wait = i < 3;
        let task = async move {
            if wait {
                rx.wait_for(|go| *go).await.map(|_| ())
            } else {
                Ok(())
            }
        };
        web_rt.spawn(task); // mark: web idle
    }
    for _ in 0..2 {
        let mut rx = rx.clone();
        io_rt.spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }); // mark: io idle
    }
    for _ in 0..2 {
        let done = io_rt.spawn(async { 7 }); // mark: io done
        assert_eq!(io_rt.block_on(done).unwrap(), 7);
    }

    // One contended acquisition: the waiter queues while the holder has the lock.
    let lock = Arc::new(taskscope::sync::Mutex::named(0u32, "cache \"hot\" \\ a\nb")); // mark: lock
    let holder_lock = Arc::clone(&lock);
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let holding = async move {
        let guard = holder_lock.lock().await; // mark: holder
        held_tx.send(()).unwrap();
        release_rx.await.unwrap();
        drop(guard);
    };
    let holder = web_rt.spawn(holding); // mark: holder task
    web_rt.block_on(held_rx).unwrap();
    let waiter_lock = Arc::clone(&lock);
    let waiting = async move {
        *waiter_lock.lock().await += 1; // mark: waiter
    };
    let waiter = web_rt.spawn(waiting); // mark: waiter task
    for _ in 0..500 {
        if web.snapshot().locks.iter().any(|l| l.waiters.len() == 1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    release_tx.send(()).unwrap();
    web_rt.block_on(holder).unwrap();
    web_rt.block_on(waiter).unwrap();

    // Wait for the idle tasks to be flagged and every count to settle.
    // As prometheus_parse gives it: escaped, as written in the body.
    let lock_label = r#"cache \"hot\" \\ a\nb (metrics_format.rs@lock)"#;
    let mut body = String::new();
    for round in 0..500 {
        body = get(addr, "/metrics").1;
        let web_idle = [("runtime", "web"), ("site", "metrics_format.rs@web idle")];
        let ready = sample(&body, "taskscope_task_polls_total", &web_idle) == Some(4.0)
            && sample(&body, "taskscope_tasks_idle_over_threshold", &web_idle) == Some(3.0)
            && sample(
                &body,
                "taskscope_findings",
                &[
                    ("runtime", "web"),
                    ("kind", "idle_too_long"),
                    ("site", "metrics_format.rs@web idle"),
                ],
            ) == Some(3.0)
            && sample(
                &body,
                "taskscope_lock_contended_total",
                &[("runtime", "web"), ("lock", lock_label)],
            ) == Some(1.0);
        if ready {
            break;
        }
        assert!(round < 499, "the counts did not settle:\n{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    tx.send(true).unwrap();

    // The label value arrives escaped per the text format.
    assert!(
        body.contains(r#"lock="cache \"hot\" \\ a\nb (exporter/tests/metrics_format.rs:"#),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "taskscope_lock_acquisitions_total",
            &[("runtime", "web"), ("lock", lock_label), ("kind", "mutex")],
        ),
        Some(2.0),
        "{body}"
    );

    let got = summary(&body);
    if std::env::var_os("TASKSCOPE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want = std::fs::read_to_string(GOLDEN).expect("golden file (TASKSCOPE_UPDATE_GOLDEN=1)");
    if got != want {
        let missing: Vec<&str> = want.lines().filter(|l| !got.contains(l)).collect();
        let extra: Vec<&str> = got.lines().filter(|l| !want.contains(l)).collect();
        panic!("/metrics differs from the golden file\nmissing: {missing:#?}\nextra: {extra:#?}");
    }

    match promtool(&body) {
        None => eprintln!("SKIPPED promtool check: promtool is not installed"),
        Some(out) => assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
