//! End to end: fault `S4` (recursive read on a fair RwLock with a writer queued between) in
//! the demo as a real process; what taskscope's exporter reports about the two hung tasks.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, site_of};
use taskscope::model::{Snapshot, TaskRow, TaskState};

const FILE: &str = "demo-service/src/faults/s4_recursive_read.rs";

fn tasks_at<'a>(snap: &'a Snapshot, site: &str) -> Vec<&'a TaskRow> {
    snap.tasks.iter().filter(|t| t.site == site).collect()
}

/// Polls of the tasks at `sites`, by task id, sorted.
fn polls(snap: &Snapshot, sites: &[&str]) -> Vec<(u64, u64)> {
    let mut polls: Vec<_> = snap
        .tasks
        .iter()
        .filter(|t| sites.contains(&t.site.as_str()))
        .map(|t| (t.id, t.polls))
        .collect();
    polls.sort_unstable();
    polls
}

#[tokio::test]
async fn recursive_read_hangs_the_reader_and_the_writer() {
    let demo = Demo::start(&[]);
    let reader = site_of(FILE, "// fault site: S4 reader");
    let writer = site_of(FILE, "// fault site: S4 writer");
    demo.fault_on("S4").await;
    demo.wait_live(&reader, 1).await;
    demo.wait_live(&writer, 1).await;

    // Once both hang, nothing polls them: two snapshots 0.5 s apart show the same polls.
    let sites = [reader.as_str(), writer.as_str()];
    let deadline = Instant::now() + Duration::from_secs(20);
    let (before, after) = loop {
        let before = demo.snapshot().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = demo.snapshot().await;
        if polls(&before, &sites) == polls(&after, &sites) || Instant::now() > deadline {
            break (before, after);
        }
    };
    assert_eq!(
        polls(&before, &sites),
        polls(&after, &sites),
        "the S4 tasks are still being polled"
    );

    for site in sites {
        let hung = tasks_at(&after, site);
        assert_eq!(hung.len(), 1, "tasks at {site}: {hung:?}");
        assert_eq!(hung[0].state, TaskState::Idle, "{:?}", hung[0]);
        assert!(hung[0].polls >= 1, "{:?}", hung[0]);
        let row = after
            .sites
            .iter()
            .find(|s| s.site == site)
            .unwrap_or_else(|| panic!("no row for {site}: {:?}", after.sites));
        assert_eq!((row.live, row.spawned, row.completed), (1, 1, 0));
    }

    // Neither the nested read nor the write ever got through.
    let status = fault_status(&demo, "S4").await;
    assert_eq!(status["writes"], 0, "{status}");
    demo.wait_live(&reader, 1).await;
    demo.wait_live(&writer, 1).await;

    demo.fault_off("S4").await;
    demo.wait_live(&reader, 0).await;
    demo.wait_live(&writer, 0).await;
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
