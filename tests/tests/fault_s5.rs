//! End to end: fault `S5` (read guards held across slow channel sends) in the demo as a real
//! process; the tasks taskscope counts and the timeouts the fault reports.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, site_of};

const FILE: &str = "demo-service/src/faults/s5_guard_across_await.rs";
const READERS: usize = 50;

#[tokio::test]
async fn guards_held_across_awaits_make_readers_time_out() {
    let demo = Demo::start(&[]);
    let reader = site_of(FILE, "// fault site: S5 reader");
    let writer = site_of(FILE, "// fault site: S5 writer");
    let drainer = site_of(FILE, "// fault site: S5 drainer");
    demo.fault_on("S5").await;
    demo.wait_live(&reader, READERS as u64).await;
    demo.wait_live(&writer, 1).await;
    demo.wait_live(&drainer, 1).await;

    let snap = demo.snapshot().await;
    for (site, want) in [(&reader, READERS), (&writer, 1), (&drainer, 1)] {
        let tasks = snap.tasks.iter().filter(|t| &t.site == site).count();
        assert_eq!(tasks, want, "tasks at {site}");
        let row = snap
            .sites
            .iter()
            .find(|s| &s.site == site)
            .unwrap_or_else(|| panic!("no row for {site}: {:?}", snap.sites));
        assert_eq!(
            (row.live, row.spawned, row.completed),
            (want as u64, want as u64, 0)
        );
    }

    // Readers queue behind the waiting writer and time out; the writer waits too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = fault_status(&demo, "S5").await;
        if status["reader_timeouts"].as_u64().unwrap() > 0
            && status["writer_wait_seconds_total"].as_f64().unwrap() > 0.0
        {
            break status;
        }
        assert!(Instant::now() < deadline, "S5 status stayed at {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status["reader_acquisitions"].as_u64().unwrap() > 0,
        "{status}"
    );
    demo.wait_live(&reader, READERS as u64).await;
    demo.wait_live(&writer, 1).await;

    demo.fault_off("S5").await;
    demo.wait_live(&reader, 0).await;
    demo.wait_live(&writer, 0).await;
    demo.wait_live(&drainer, 0).await;
}

/// The `status` of fault `name` in `GET /faults`.
async fn fault_status(demo: &Demo, name: &str) -> serde_json::Value {
    let (code, body) = demo.get("/faults").await;
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no fault {name} in {body}"))["status"]
        .clone()
}
