//! End to end: fault S3 (a per-connection heartbeat loop that outlives its connection) in
//! the demo as a real process; what taskscope reports at the loop's and the connection's
//! spawn sites.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, site_of};
use taskscope::model::{Evidence, FindingKind, Severity};

const FILE: &str = "demo-service/src/faults/s3_orphan_loop.rs";
const CONNECTIONS: u64 = 20;

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
async fn loops_outlive_their_connections_and_keep_being_polled() {
    // Growth judged over 2 s (sampled every 50 ms); idle too long after 1 s. At 4
    // connections a second, the low-water mark rises by 4 from one half of the window to
    // the next: the default least rise (5) would be met only by jitter.
    let demo = Demo::start(&[
        "--growth-window",
        "2",
        "--growth-min-tasks",
        "3",
        "--idle-floor",
        "1",
    ]);
    let loop_site = site_of(FILE, "// fault site: S3 loop");
    let conn_site = site_of(FILE, "// fault site: S3 connection");
    demo.fault_on("S3").await;

    // While connections arrive (one every 250 ms, 5 s in all), the loop site grows at their
    // rate, steadily: a warning once (most of) a whole window has seen it. A shorter
    // history can show growth too, before the window fills: not what is checked here.
    let f = demo
        .wait_finding(FindingKind::Growth, &loop_site, |f| {
            f.severity == Severity::Warning
                && matches!(f.evidence, Evidence::Growth { window_seconds, .. } if window_seconds > 1.5)
        })
        .await;
    let Evidence::Growth {
        rate_per_second,
        window_seconds,
        floor_before,
        floor_after,
        ..
    } = f.evidence
    else {
        panic!("wrong evidence: {f:#?}")
    };
    assert!(
        (rate_per_second - 4.0).abs() <= 1.0,
        "rate {rate_per_second}/s, connections arrive at 4/s: {f:#?}"
    );
    assert!(window_seconds > 1.5, "{f:#?}");
    assert!(floor_after >= floor_before + 3, "{f:#?}");
    assert_eq!(f.count, floor_after - floor_before);
    // The connections come and go: no growth there; the loops wake every 200 ms: not idle.
    assert!(
        demo.findings_at(FindingKind::Growth, &conn_site)
            .await
            .is_empty()
    );
    assert!(
        demo.findings_at(FindingKind::IdleTooLong, &loop_site)
            .await
            .is_empty()
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(&demo, "S3").await;
        if s["clients_done"] == CONNECTIONS && s["connections_accepted"] == CONNECTIONS {
            break;
        }
        assert!(Instant::now() < deadline, "clients never finished: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every connection is closed; every loop still runs.
    demo.wait_live(&conn_site, 0).await;
    demo.wait_live(&loop_site, CONNECTIONS).await;

    let first = demo.snapshot().await;
    let row = |snap: &taskscope::model::Snapshot, site: &str| {
        snap.sites
            .iter()
            .find(|s| s.site == site)
            .map(|s| (s.live, s.spawned, s.completed))
    };
    assert_eq!(row(&first, &loop_site), Some((CONNECTIONS, CONNECTIONS, 0)));
    assert_eq!(row(&first, &conn_site), Some((0, CONNECTIONS, CONNECTIONS)));
    assert!(first.tasks.iter().all(|t| t.site != conn_site));
    let loops: Vec<_> = first.tasks.iter().filter(|t| t.site == loop_site).collect();
    assert_eq!(loops.len() as u64, CONNECTIONS);

    // Not idle: every loop is polled again (every 200 ms) between two snapshots.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = demo.snapshot().await;
    let later: Vec<_> = second
        .tasks
        .iter()
        .filter(|t| t.site == loop_site)
        .collect();
    assert_eq!(later.len() as u64, CONNECTIONS);
    for t in &later {
        let before = loops
            .iter()
            .find(|b| b.id == t.id)
            .unwrap_or_else(|| panic!("task {} is new", t.id));
        assert!(
            t.polls > before.polls,
            "loop task {} was not polled: {} then {}",
            t.id,
            before.polls,
            t.polls
        );
    }
    let polls = |tasks: &[&taskscope::model::TaskRow]| tasks.iter().map(|t| t.polls).sum::<u64>();
    assert!(polls(&later) >= polls(&loops) + CONNECTIONS);
    assert_eq!(
        row(&second, &conn_site),
        Some((0, CONNECTIONS, CONNECTIONS))
    );

    // Growth stopped with the connections: once a window has passed, no finding; and the
    // loops, polled every 200 ms, are still not idle.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        demo.findings_at(FindingKind::Growth, &loop_site)
            .await
            .is_empty()
    );
    assert!(
        demo.findings_at(FindingKind::IdleTooLong, &loop_site)
            .await
            .is_empty()
    );

    // Off: the stop signal ends every loop.
    demo.fault_off("S3").await;
    demo.wait_live(&loop_site, 0).await;
    demo.wait_live(&conn_site, 0).await;
}
