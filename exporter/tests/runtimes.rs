//! One exporter serving two named runtimes: metrics labelled by runtime, the JSON and dump
//! endpoints selecting one with `?runtime=NAME`, and clear errors for bad names.

use std::time::Duration;

use taskscope::Agent;
use taskscope::model::{Dump, Snapshot};
use taskscope_exporter::{Exporter, ExporterError};

const SOURCE: &str = include_str!("runtimes.rs");

fn site_of(marker: &str) -> String {
    let (idx, line) = SOURCE
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker) && !l.contains("site_of("))
        .expect("marker");
    let col = line.find("spawn(").expect("spawn on marker line") + 1;
    format!("exporter/tests/runtimes.rs:{}:{}", idx + 1, col)
}

fn runtime(name: &str) -> (tokio::runtime::Runtime, Agent) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    let agent = Agent::builder().runtime_name(name).install(&mut builder);
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

/// The value of `name{runtime=..., site=...}`.
fn sample(body: &str, name: &str, runtime: &str, site: &str) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.get("runtime") == Some(runtime)
                && s.labels.get("site") == Some(site)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
            _ => panic!("unexpected type"),
        })
}

#[test]
fn two_runtimes_are_served_apart() {
    let (web_rt, web) = runtime("web");
    let (io_rt, io) = runtime("io");
    let exporter = Exporter::new(web)
        .runtime(io)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = exporter.local_addr();
    let (tx, rx) = tokio::sync::watch::channel(false);
    for _ in 0..3 {
        let mut rx = rx.clone();
        web_rt.spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }); // site: web waiters
    }
    for _ in 0..2 {
        let mut rx = rx.clone();
        io_rt.spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }); // site: io waiters
    }
    let (web_site, io_site) = (
        site_of("// site: web waiters"),
        site_of("// site: io waiters"),
    );

    let mut body = String::new();
    for _ in 0..500 {
        body = get(addr, "/metrics").1;
        if sample(&body, "taskscope_task_polls_total", "web", &web_site) == Some(3.0)
            && sample(&body, "taskscope_task_polls_total", "io", &io_site) == Some(2.0)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        sample(&body, "taskscope_tasks_live", "web", &web_site),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "taskscope_tasks_live", "io", &io_site),
        Some(2.0)
    );
    // Each runtime's sites only under its own label.
    assert_eq!(sample(&body, "taskscope_tasks_live", "io", &web_site), None);
    assert!(
        body.contains("taskscope_runtime_workers{runtime=\"io\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("taskscope_runtime_workers{runtime=\"web\"} 1"),
        "{body}"
    );

    // JSON: the first runtime by default, the other by name; both listed.
    let (status, json) = get(addr, "/debug/taskscope/snapshot");
    assert_eq!(status, 200);
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap.agent.runtime_name.as_deref(), Some("web"));
    assert_eq!(snap.runtimes, vec!["web".to_string(), "io".to_string()]);
    assert_eq!(snap.tasks_total, 3);
    let (_, json) = get(addr, "/debug/taskscope/snapshot?runtime=io&tasks=10");
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap.agent.runtime_name.as_deref(), Some("io"));
    assert_eq!(snap.tasks.len(), 2);
    assert!(snap.tasks.iter().all(|t| t.site == io_site));

    let (status, json) = get(addr, "/debug/taskscope/dump?runtime=io&format=json&trace=0");
    assert_eq!(status, 200, "{json}");
    let dump: Dump = serde_json::from_str(&json).unwrap();
    let tasks: u64 = dump.groups.iter().map(|g| g.count).sum();
    assert_eq!(tasks, 2);
    assert!(dump.groups.iter().all(|g| g.site == io_site));

    assert_eq!(
        get(addr, "/debug/taskscope/snapshot?runtime=db"),
        (
            404,
            "no runtime named \"db\"; this exporter serves: web, io\n".to_string()
        )
    );
    assert_eq!(
        get(addr, "/debug/taskscope/locks?runtime=io&runtime=web"),
        (400, "parameter runtime given twice\n".to_string())
    );
    tx.send(true).unwrap();
    exporter.shutdown();
}

#[test]
fn serving_several_runtimes_needs_distinct_names() {
    let unnamed = Agent::builder().build();
    let named = Agent::builder().runtime_name("io").build();
    let err = Exporter::new(unnamed).runtime(named.clone()).unwrap_err();
    assert!(matches!(err, ExporterError::UnnamedRuntime), "{err}");
    let twin = Agent::builder().runtime_name("io").build();
    let err = Exporter::new(named).runtime(twin).unwrap_err();
    assert_eq!(
        err.to_string(),
        "two runtimes served by one exporter are both named \"io\""
    );
    // Names are cleaned to label-safe characters.
    let odd = Agent::builder().runtime_name("db pool/2").build();
    assert_eq!(odd.runtime_name(), Some("db_pool_2"));
}
