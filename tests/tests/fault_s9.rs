//! End to end: fault S9 (a task spawned per item into a full channel) in the demo as a real
//! process; what taskscope reports at the item tasks' spawn site, and how `/ingest` treats
//! bad input.

mod common;

use common::{Demo, site_of};
use serde_json::json;
use taskscope::model::TaskState;

const FILE: &str = "demo-service/src/faults/s9_spawn_per_item.rs";
const BATCH: u64 = 1000;
const CAPACITY: u64 = 16;

fn batch(n: u64) -> serde_json::Value {
    let items: Vec<_> = (0..n).map(|i| json!({ "id": i })).collect();
    json!({ "items": items })
}

#[tokio::test]
async fn every_batch_leaves_one_waiting_task_per_item_beyond_the_channel() {
    let demo = Demo::start(&[]);
    let site = site_of(FILE, "// fault site: S9 item");
    let drainer = site_of(FILE, "// fault site: S9 drainer");

    // Switching on posts one batch of 1000 from the fault's own client; 16 fit the channel.
    demo.fault_on("S9").await;
    demo.wait_live(&site, BATCH - CAPACITY).await;
    demo.wait_live(&drainer, 1).await;
    let snap = demo.snapshot().await;
    let row = snap
        .sites
        .iter()
        .find(|s| s.site == site)
        .unwrap_or_else(|| panic!("no row for {site}"));
    assert_eq!(
        (row.live, row.spawned, row.completed),
        (BATCH - CAPACITY, BATCH, CAPACITY)
    );
    let waiting: Vec<_> = snap.tasks.iter().filter(|t| t.site == site).collect();
    assert_eq!(waiting.len() as u64, BATCH - CAPACITY);
    assert!(waiting.iter().all(|t| t.state == TaskState::Idle));

    // A task dump shows them in one group, waiting on the full channel's send in the item
    // task's code.
    demo.check_traced_dump(&site, BATCH - CAPACITY, FILE, "a channel send", |f| {
        f.contains("mpsc") && f.contains("send")
    })
    .await;

    // Another batch: exactly one more waiting task per item.
    let (status, body) = demo.post("/ingest", batch(BATCH)).await;
    assert_eq!(status, 202, "{body}");
    demo.wait_live(&site, 2 * BATCH - CAPACITY).await;

    // Off: the receiver is dropped, every waiting send fails, the tasks end; /ingest refuses.
    demo.fault_off("S9").await;
    demo.wait_live(&site, 0).await;
    demo.wait_live(&drainer, 0).await;
    let (status, body) = demo.post("/ingest", batch(3)).await;
    assert_eq!((status, body.trim()), (409, "fault S9 is off"));
}

#[tokio::test]
async fn ingest_rejects_bad_input() {
    let demo = Demo::start(&[]);
    let site = site_of(FILE, "// fault site: S9 item");
    demo.fault_on("S9").await;
    demo.wait_live(&site, BATCH - CAPACITY).await;

    let raw = |body: &'static str| {
        let req = demo
            .client
            .post(format!("{}/ingest", demo.service))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for body in ["{", "not json", "[1,2,3]", "{\"items\": 5}", ""] {
        let (status, text) = raw(body).await;
        assert_eq!(status, 400, "{body:?} answered {status} {text}");
    }
    let (status, text) = demo.post("/ingest", json!({ "nothing": [] })).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = demo.post("/ingest", batch(10_001)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("10000"), "{text}");

    // Nothing was spawned for the rejected requests.
    let (status, text) = demo.post("/ingest", json!({ "items": [] })).await;
    assert_eq!(status, 202, "{text}");
    let snap = demo.snapshot().await;
    let row = snap.sites.iter().find(|s| s.site == site).unwrap();
    assert_eq!(row.spawned, BATCH);

    demo.fault_off("S9").await;
    demo.wait_live(&site, 0).await;
    // Bad input is still a 400 with the fault off; good input is a 409.
    let (status, _) = raw("{").await;
    assert_eq!(status, 400);
    let (status, _) = demo.post("/ingest", batch(1)).await;
    assert_eq!(status, 409);
}
