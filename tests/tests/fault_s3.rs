//! End to end: fault S3 (a per-connection heartbeat loop that outlives its connection) in
//! the demo as a real process; what taskscope reports at the loop's and the connection's
//! spawn sites.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, site_of};

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
    let demo = Demo::start(&[]);
    let loop_site = site_of(FILE, "// fault site: S3 loop");
    let conn_site = site_of(FILE, "// fault site: S3 connection");
    demo.fault_on("S3").await;

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

    // Off: the stop signal ends every loop.
    demo.fault_off("S3").await;
    demo.wait_live(&loop_site, 0).await;
    demo.wait_live(&conn_site, 0).await;
}
