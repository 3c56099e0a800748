//! The exporter over real HTTP: metrics parsed by a Prometheus text parser, the snapshot
//! JSON, bad requests, and answers while every worker of the service is blocked.

use std::sync::mpsc;
use std::time::Duration;

use taskscope::model::{Snapshot, TaskState};
use taskscope_exporter::{Exporter, ExporterHandle};

const SOURCE: &str = include_str!("http.rs");

fn site_of(marker: &str) -> String {
    let (idx, line) = SOURCE
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker) && !l.contains("site_of("))
        .expect("marker");
    // For a method call (`rt.spawn(`) the caller location is the method name.
    let col = line.find("spawn(").expect("spawn on marker line") + 1;
    format!("exporter/tests/http.rs:{}:{}", idx + 1, col)
}

fn service(workers: usize) -> (tokio::runtime::Runtime, ExporterHandle) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    let agent = taskscope::install(&mut builder);
    let rt = builder.build().unwrap();
    let exporter = Exporter::new(agent)
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    (rt, exporter)
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client_rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("exporter answers");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ctype, resp.text().await.unwrap())
    })
}

fn gauge(body: &str, name: &str, site: &str) -> Option<f64> {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("site") == Some(site))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("unexpected type for {name}"),
        })
}

#[test]
fn metrics_and_snapshot_report_the_waiting_tasks() {
    let (rt, exporter) = service(2);
    let (tx, rx) = tokio::sync::watch::channel(false);
    for _ in 0..3 {
        let mut rx = rx.clone();
        rt.spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }); // site: waiters
    }
    let site = site_of("// site: waiters");
    let failing = rt.spawn(async { panic!("this task fails") }); // site: panics
    assert!(rt.block_on(failing).unwrap_err().is_panic());
    let panic_site = site_of("// site: panics");
    let addr = exporter.local_addr();

    let mut body = String::new();
    for _ in 0..200 {
        let (status, ctype, text) = get(addr, "/metrics");
        assert_eq!(status, 200);
        assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
        body = text;
        // The runtime's facts come with its first poll, the site's counts with every poll:
        // wait for both.
        if gauge(&body, "taskscope_task_polls_total", &site) == Some(3.0)
            && gauge(&body, "taskscope_tasks_completed_total", &panic_site) == Some(1.0)
            && body.contains("taskscope_runtime_workers 2")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        gauge(&body, "taskscope_tasks_live", &site),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        gauge(&body, "taskscope_tasks_spawned_total", &site),
        Some(3.0)
    );
    assert_eq!(
        gauge(&body, "taskscope_tasks_completed_total", &site),
        Some(0.0)
    );
    assert_eq!(gauge(&body, "taskscope_task_polls_total", &site), Some(3.0));
    assert!(body.contains("# TYPE taskscope_tasks_live gauge"));
    assert!(body.contains("# TYPE taskscope_tasks_spawned_total counter"));
    assert!(body.contains("taskscope_runtime_workers 2"), "{body}");
    assert_eq!(
        gauge(&body, "taskscope_task_panics_total", &panic_site),
        Some(1.0)
    );
    assert_eq!(
        gauge(&body, "taskscope_task_panics_total", &site),
        Some(0.0)
    );
    // Every cap with its size, use and what it turned away.
    assert!(
        body.contains("taskscope_cap_capacity{cap=\"sites\"} 1024"),
        "{body}"
    );
    assert!(
        body.contains("taskscope_cap_dropped_total{cap=\"sites\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("taskscope_cap_capacity{cap=\"lock_classes\"} 256"),
        "{body}"
    );

    let (status, ctype, json) = get(addr, "/debug/taskscope/snapshot?tasks=10");
    assert_eq!((status, ctype.as_str()), (200, "application/json"));
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap.schema_version, taskscope::model::SCHEMA_VERSION);
    let row = snap.sites.iter().find(|s| s.site == site).unwrap();
    assert_eq!((row.live, row.spawned), (3, 3));
    assert_eq!(snap.tasks.len(), 3);
    assert!(
        snap.tasks
            .iter()
            .all(|t| t.site == site && t.state == TaskState::Idle)
    );
    // One site's tasks only: its three, none of the panicked task's (finished) site.
    let (_, _, json) = get(
        addr,
        &format!("/debug/taskscope/snapshot?tasks=10&site={site}"),
    );
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap.tasks.len(), 3);
    let (_, _, json) = get(
        addr,
        &format!("/debug/taskscope/snapshot?tasks=10&site={panic_site}"),
    );
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap.tasks.len(), 0);
    assert_eq!(snap.sites.iter().find(|s| s.site == site).unwrap().live, 3);
    tx.send(true).unwrap();
    drop(rt);
    exporter.shutdown();
}

#[test]
fn answers_while_every_worker_is_blocked() {
    let (rt, exporter) = service(2);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Arc::new(std::sync::Mutex::new(release_rx));
    for _ in 0..2 {
        let entered = entered_tx.clone();
        let release = release_rx.clone();
        // No .await: each task holds a worker until released.
        rt.spawn(async move {
            entered.send(()).unwrap();
            let _ = release.lock().unwrap().recv();
        });
    }
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let (status, _, body) = get(exporter.local_addr(), "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("taskscope_tasks_live"));
    let (status, _, json) = get(exporter.local_addr(), "/debug/taskscope/snapshot?tasks=10");
    assert_eq!(status, 200);
    let snap: Snapshot = serde_json::from_str(&json).unwrap();
    let running = snap
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .count();
    assert_eq!(running, 2, "{:?}", snap.tasks);

    release_tx.send(()).unwrap();
    release_tx.send(()).unwrap();
    drop(rt);
    exporter.shutdown();
}

#[test]
fn bad_requests_get_clear_errors() {
    let (_rt, exporter) = service(1);
    let addr = exporter.local_addr();
    let usage =
        "the snapshot takes tasks=N (0 to 100000) and site=SITE (list only that site's tasks)";
    let (status, _, body) = get(addr, "/debug/taskscope/snapshot?tasks=abc");
    assert_eq!(
        (status, body),
        (
            400,
            format!("parameter tasks=\"abc\" is not a number; {usage}\n")
        )
    );
    let (status, _, body) = get(addr, "/debug/taskscope/snapshot?colour=red");
    assert_eq!(
        (status, body),
        (400, format!("unknown parameter \"colour\"; {usage}\n"))
    );
    let (status, _, body) = get(addr, "/debug/taskscope/snapshot?tasks=1&tasks=2");
    assert_eq!(
        (status, body),
        (400, format!("parameter tasks given twice; {usage}\n"))
    );
    let (status, _, body) = get(addr, "/debug/taskscope/snapshot?site=a&site=b");
    assert_eq!(
        (status, body),
        (400, format!("parameter site given twice; {usage}\n"))
    );
    let (status, _, body) = get(addr, "/debug/taskscope/snapshot?tasks=100001");
    assert_eq!(
        (status, body.as_str()),
        (400, "parameter tasks=100001 is above the limit of 100000\n")
    );
    let (status, _, body) = get(addr, "/nope");
    assert_eq!(status, 404);
    assert!(
        body.starts_with("no such endpoint. This is a taskscope exporter"),
        "{body}"
    );
    assert!(body.contains("GET /metrics"), "{body}");

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = client_rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(status.0, 405);
    assert_eq!(
        status.1,
        "method not allowed: POST /debug/taskscope/baseline; every other taskscope endpoint \
         answers GET\n"
    );

    let taken = Exporter::new(taskscope::Agent::builder().build()).bind(addr);
    let err = taken.expect_err("port in use");
    assert_eq!(err.to_string(), format!("cannot listen on {addr}"));
    let source = std::error::Error::source(&err).expect("the io error as source");
    assert!(source.to_string().contains("in use"), "{source}");
}

/// GET with an optional bearer token; the status.
fn get_with(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    client_rt.block_on(async {
        let mut req = reqwest::Client::new()
            .get(format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(5));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.send()
            .await
            .expect("exporter answers")
            .status()
            .as_u16()
    })
}

#[test]
fn a_token_guards_the_endpoints_its_scope_names() {
    use taskscope_exporter::TokenScope;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    let agent = taskscope::install(&mut builder);
    let _rt = builder.build().unwrap();
    let all = Exporter::new(agent.clone())
        .token("s3cret-token", TokenScope::Everything)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let a = all.local_addr();
    for path in [
        "/metrics",
        "/debug/taskscope/snapshot",
        "/debug/taskscope/locks",
        "/nope",
    ] {
        assert_eq!(get_with(a, path, None), 401, "{path}");
        assert_eq!(get_with(a, path, Some("wrong-token!")), 401, "{path}");
    }
    assert_eq!(get_with(a, "/metrics", Some("s3cret-token")), 200);
    assert_eq!(
        get_with(a, "/debug/taskscope/snapshot", Some("s3cret-token")),
        200
    );
    assert_eq!(get_with(a, "/nope", Some("s3cret-token")), 404);

    let debug = Exporter::new(agent)
        .token("s3cret-token", TokenScope::DebugOnly)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let d = debug.local_addr();
    assert_eq!(get_with(d, "/metrics", None), 200);
    assert_eq!(get_with(d, "/debug/taskscope/dump?trace=0", None), 401);
    assert_eq!(
        get_with(d, "/debug/pprof/tasks?trace=0", Some("s3cret-token")),
        200
    );
    // An empty token is refused at start, not accepted as "no token".
    let empty =
        Exporter::new(taskscope::Agent::builder().build()).token(" ", TokenScope::Everything);
    assert!(empty.is_err());
}

#[test]
fn traced_dumps_are_limited_to_one_per_interval() {
    use taskscope::model::{Dump, DumpSource};
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    let agent = taskscope::install(&mut builder);
    let rt = builder.build().unwrap();
    rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
    let exporter = Exporter::new(agent)
        .min_dump_interval(Duration::from_secs(60))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = exporter.local_addr();
    let dump = |path: &str| -> Dump {
        let (status, _, body) = get(addr, path);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let first = dump("/debug/taskscope/dump?format=json");
    let second = dump("/debug/taskscope/dump?format=json");
    if first.source == DumpSource::Traced {
        // Builds with task dumps: the second comes from the registry, and says why.
        assert_eq!(second.source, DumpSource::Registry, "{second:?}");
        assert!(
            second.notes[0].contains("one per 60.0 s"),
            "{:?}",
            second.notes
        );
    } else {
        // Builds without: nothing traced, nothing limited.
        assert!(second.notes.iter().all(|n| !n.contains("one per")));
    }
    // Registry-only dumps are never limited.
    let registry = dump("/debug/taskscope/dump?format=json&trace=0");
    assert!(registry.notes.iter().all(|n| !n.contains("one per")));
}

#[test]
fn text_dumps_list_groups_and_tasks_like_gos_debug_levels() {
    let (rt, exporter) = service(2);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let ids: Vec<u64> = (0..3)
        .map(|_| {
            let mut rx = rx.clone();
            let h = rt.spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }); // site: texts
            h.id().to_string().parse().unwrap()
        })
        .collect();
    let site = site_of("// site: texts");
    let addr = exporter.local_addr();
    let mut text = String::new();
    for _ in 0..200 {
        let (status, ctype, body) = get(addr, "/debug/taskscope/dump?trace=0");
        assert_eq!((status, ctype.as_str()), (200, "text/plain; charset=utf-8"));
        text = body;
        if text.contains(&format!("3 @ {site}\t")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        text.starts_with("task dump: 3 tasks in 1 groups (registry only)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("3 @ {site}\tidle min/median/max ")),
        "{text}"
    );
    assert!(
        text.contains("#\t(no await point: registry only, or not traced)"),
        "{text}"
    );
    let (_, _, tasks) = get(addr, "/debug/taskscope/dump?trace=0&debug=2");
    for id in &ids {
        assert!(
            tasks.contains(&format!("task {id} [idle, "))
                && tasks.contains(&format!("spawned at {site}")),
            "{tasks}"
        );
    }
    let _ = tx.send(true);
}
