//! End to end: fault S1 (idle keep-alive connections) in the demo as a real process; what
//! taskscope reports at the connection task's spawn site.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, finding_metric, metric, site_of};
use taskscope::model::{Evidence, FindingKind, Severity, Snapshot, TaskRow, TaskState};

const FILE: &str = "demo-service/src/faults/s1_idle_keepalive.rs";
const N: usize = 50;
/// Ordinary connections (one request, then closed) the fault makes before the silent ones.
const ORDINARY: usize = 5;

/// The fault's status from `GET /faults`.
async fn status(demo: &Demo, name: &str) -> serde_json::Value {
    let (code, body) = demo.get("/faults").await;
    assert_eq!(code, 200, "{body}");
    let all: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    all.as_array()
        .expect("a list")
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no fault {name} in {body}"))["status"]
        .clone()
}

fn at<'a>(snap: &'a Snapshot, site: &str) -> Vec<&'a TaskRow> {
    snap.tasks.iter().filter(|t| t.site == site).collect()
}

fn min_idle(tasks: &[&TaskRow]) -> f64 {
    tasks
        .iter()
        .map(|t| t.idle_seconds)
        .fold(f64::INFINITY, f64::min)
}

#[tokio::test]
async fn silent_keepalive_connections_stay_live_and_idle_at_the_connection_site() {
    // Idle too long after 1 s, unless the site's own waits say otherwise.
    let demo = Demo::start(&["--idle-floor", "1"]);
    let site = site_of(FILE, "// fault site: S1 connection");
    demo.fault_on("S1").await;
    demo.wait_live(&site, N as u64).await;

    // Every client got its answer and went silent.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(&demo, "S1").await;
        if s["clients_silent"] == N && s["requests_answered"] == N + ORDINARY {
            break;
        }
        assert!(Instant::now() < deadline, "clients never all answered: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last connection tasks park on their next read.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let first = demo.snapshot().await;
    let tasks = at(&first, &site);
    assert_eq!(tasks.len(), N, "tasks at {site}");
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Idle),
        "not all idle: {tasks:?}"
    );
    let row = first
        .sites
        .iter()
        .find(|s| s.site == site)
        .unwrap_or_else(|| panic!("no row for {site}"));
    assert_eq!(
        (row.live, row.spawned, row.completed),
        (N as u64, (N + ORDINARY) as u64, ORDINARY as u64)
    );

    // Nobody polls them: the time since their last poll keeps growing.
    const GAP: f64 = 0.6;
    tokio::time::sleep(Duration::from_secs_f64(GAP)).await;
    let second = demo.snapshot().await;
    let later = at(&second, &site);
    assert_eq!(later.len(), N);
    assert!(later.iter().all(|t| t.state == TaskState::Idle));
    let (min1, min2) = (min_idle(&tasks), min_idle(&later));
    assert!(
        min2 >= min1 + GAP - 0.01,
        "idle_seconds did not grow: min {min1} then {min2}"
    );
    for t in &later {
        let before = tasks.iter().find(|b| b.id == t.id).expect("same tasks");
        assert_eq!(t.polls, before.polls, "task {} was polled", t.id);
    }

    // The leak indicator: all of them idle past the site's threshold, which is the 1 s
    // floor (the ordinary connections' waits were milliseconds); the Prometheus view agrees.
    let f = demo
        .wait_finding(FindingKind::IdleTooLong, &site, |f| f.count == N as u64)
        .await;
    assert_eq!(f.severity, Severity::Warning, "{f:#?}");
    let Evidence::IdleTooLong {
        threshold_seconds,
        derived,
        longest_wait_seconds,
        oldest_idle_seconds,
        live,
    } = f.evidence
    else {
        panic!("wrong evidence: {f:#?}")
    };
    assert_eq!((threshold_seconds, derived, live), (1.0, true, N as u64));
    assert!(longest_wait_seconds < 0.25, "{f:#?}");
    assert!(oldest_idle_seconds > 1.0, "{f:#?}");
    assert!(
        f.summary
            .starts_with(&format!("50 tasks of 50 spawned at {site} have been idle")),
        "{}",
        f.summary
    );
    let text = demo.metrics().await;
    assert_eq!(
        finding_metric(&text, "idle_too_long", "warning", &site),
        Some(N as f64)
    );
    assert_eq!(
        metric(&text, "taskscope_tasks_idle_over_threshold", &site),
        Some(N as f64)
    );
    assert_eq!(
        metric(&text, "taskscope_task_idle_threshold_seconds", &site),
        Some(1.0)
    );
    // Long-lived tasks that never finish (the accept loop itself) are not flagged.
    let accept = site_of(FILE, "// fault site: S1 accept loop");
    assert!(
        demo.findings_at(FindingKind::IdleTooLong, &accept)
            .await
            .is_empty()
    );

    // A task dump shows all of them in one group, waiting on a socket read in the
    // connection's code (next to the shutdown signal of its `select!`).
    demo.check_traced_dump(&site, N as u64, FILE, "a socket read", |f| {
        f.contains("TcpStream") && f.contains("read")
    })
    .await;

    // Off: clients gone, connection tasks read EOF and end; the finding clears.
    demo.fault_off("S1").await;
    demo.wait_live(&site, 0).await;
    assert!(
        demo.findings_at(FindingKind::IdleTooLong, &site)
            .await
            .is_empty()
    );
}
