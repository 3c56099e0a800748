//! End to end: fault S2 (a reply map whose upstream ignores every third request) in the
//! demo as a real process; what taskscope reports at the request tasks' spawn site.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, finding_metric, site_of};
use taskscope::model::{Evidence, FindingKind, Severity, TaskState};

const FILE: &str = "demo-service/src/faults/s2_reply_map.rs";
const REQUESTS: u64 = 30;
const IGNORED: u64 = 10;

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

#[tokio::test]
async fn ignored_requests_stay_live_and_idle_at_the_request_site() {
    let demo = Demo::start(&["--idle-floor", "1"]);
    let site = site_of(FILE, "// fault site: S2 request");
    let actor = site_of(FILE, "// fault site: S2 actor");
    demo.fault_on("S2").await;
    demo.wait_live(&site, IGNORED).await;
    demo.wait_live(&actor, 1).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(&demo, "S2").await;
        if s["pending"] == IGNORED
            && s["answered"] == REQUESTS - IGNORED
            && s["upstream_ignored"] == IGNORED
        {
            break;
        }
        assert!(Instant::now() < deadline, "S2 never settled: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let first = demo.snapshot().await;
    let row = first
        .sites
        .iter()
        .find(|s| s.site == site)
        .unwrap_or_else(|| panic!("no row for {site}"));
    assert_eq!(
        (row.live, row.spawned, row.completed),
        (IGNORED, REQUESTS, REQUESTS - IGNORED)
    );
    let waiting: Vec<_> = first.tasks.iter().filter(|t| t.site == site).collect();
    assert_eq!(waiting.len() as u64, IGNORED);
    assert!(
        waiting.iter().all(|t| t.state == TaskState::Idle),
        "not all idle: {waiting:?}"
    );

    // They stay: same tasks, older, still idle, not polled again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = demo.snapshot().await;
    let later: Vec<_> = second.tasks.iter().filter(|t| t.site == site).collect();
    assert_eq!(later.len() as u64, IGNORED);
    for t in &later {
        let before = waiting
            .iter()
            .find(|b| b.id == t.id)
            .unwrap_or_else(|| panic!("task {} is new", t.id));
        assert_eq!(t.state, TaskState::Idle);
        assert_eq!(t.polls, before.polls, "task {} was polled", t.id);
        assert!(t.age_seconds >= before.age_seconds + 0.59);
    }
    demo.wait_live(&site, IGNORED).await;

    // A task dump shows the ignored requests in one group, waiting on their oneshot reply
    // in the request's code.
    demo.check_traced_dump(&site, IGNORED, FILE, "a oneshot receive", |f| {
        f.contains("oneshot")
    })
    .await;

    // The leak indicator: the ignored requests idle past the site's threshold (the answered
    // ones finished within milliseconds); not a growth (all were spawned at once), and the
    // actor, which never finishes, is not flagged for waiting.
    let f = demo
        .wait_finding(FindingKind::IdleTooLong, &site, |f| f.count == IGNORED)
        .await;
    assert_eq!(f.severity, Severity::Warning, "{f:#?}");
    let Evidence::IdleTooLong {
        threshold_seconds,
        derived,
        live,
        ..
    } = f.evidence
    else {
        panic!("wrong evidence: {f:#?}")
    };
    assert_eq!((threshold_seconds, derived, live), (1.0, true, IGNORED));
    assert_eq!(
        finding_metric(&demo.metrics().await, "idle_too_long", "warning", &site),
        Some(IGNORED as f64)
    );
    assert!(
        demo.findings_at(FindingKind::Growth, &site)
            .await
            .is_empty()
    );
    assert!(
        demo.findings_at(FindingKind::IdleTooLong, &actor)
            .await
            .is_empty()
    );

    // Off: the actor drops the map; every waiting receiver fails and its task ends.
    demo.fault_off("S2").await;
    demo.wait_live(&site, 0).await;
    demo.wait_live(&actor, 0).await;
    assert!(
        demo.findings_at(FindingKind::IdleTooLong, &site)
            .await
            .is_empty()
    );
}
