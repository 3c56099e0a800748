//! End to end: fault S9 (a task spawned per item into a full channel) in the demo as a real
//! process; what taskscope reports at the item tasks' spawn site, and how `/ingest` treats
//! bad input.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, finding_metric, metric, site_of};
use serde_json::json;
use taskscope::model::{Evidence, FindingKind, Severity, TaskState};

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

/// The growth indicator at the item site: batches of 100 posted every 250 ms add 400
/// waiting tasks a second; the finding's rate is within 20% of that.
#[tokio::test]
async fn growth_fires_at_the_posting_rate() {
    const ITEMS: u64 = 100;
    const EVERY: Duration = Duration::from_millis(250);
    let true_rate = ITEMS as f64 / EVERY.as_secs_f64();
    // Growth judged over 3 s, sampled every 50 ms.
    let demo = std::sync::Arc::new(Demo::start(&["--growth-window", "3"]));
    let site = site_of(FILE, "// fault site: S9 item");
    demo.fault_on("S9").await;
    demo.wait_live(&site, BATCH - CAPACITY).await;

    // Post for 8 s: the window is wholly inside the posting after 3 s.
    let poster = {
        let demo = std::sync::Arc::clone(&demo);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            for _ in 0..32 {
                tick.tick().await;
                let (status, body) = demo.post("/ingest", batch(ITEMS)).await;
                assert_eq!(status, 202, "{body}");
            }
        })
    };
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let f = demo
        .wait_finding(FindingKind::Growth, &site, |f| {
            f.severity == Severity::Warning
        })
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the posting ended first"
    );
    let Evidence::Growth {
        rate_per_second,
        window_seconds,
        floor_before,
        floor_after,
        live,
    } = f.evidence
    else {
        panic!("wrong evidence: {f:#?}")
    };
    assert!(
        (rate_per_second - true_rate).abs() <= 0.2 * true_rate,
        "growth {rate_per_second}/s, true rate {true_rate}/s: {f:#?}"
    );
    assert!(window_seconds > 2.5, "{f:#?}");
    assert!(floor_after > floor_before && live >= floor_after, "{f:#?}");
    assert!(
        f.summary
            .starts_with(&format!("live tasks spawned at {site} grow by")),
        "{}",
        f.summary
    );
    // Scraped a moment after the snapshot: the window has slid, and the rise of its floor
    // moves by up to a batch with the window's phase against the posting.
    let text = demo.metrics().await;
    let scraped = finding_metric(&text, "growth", "warning", &site).expect("growth metric");
    assert!(
        (scraped - f.count as f64).abs() <= ITEMS as f64,
        "metric {scraped}, finding count {}",
        f.count
    );
    let trend = metric(&text, "taskscope_tasks_live_trend_per_second", &site).unwrap();
    assert!(
        (trend - true_rate).abs() <= 0.2 * true_rate,
        "trend {trend}"
    );
    poster.await.unwrap();

    demo.fault_off("S9").await;
    demo.wait_live(&site, 0).await;
}
