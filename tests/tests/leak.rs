//! End to end: fault `leak` (the article's leak) in the demo as a real process; its
//! endpoint called K times; taskscope's exporter read the way Prometheus and the TUI read it.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, metric, site_of};
use taskscope::model::TaskState;

const LEAK_FILE: &str = "demo-service/src/faults/report_leak.rs";

#[tokio::test]
async fn every_leak_call_leaves_one_live_task_at_the_leak_site() {
    const K: usize = 7;
    let demo = Demo::start(&["--fault", "leak"]);
    let site = site_of(LEAK_FILE, "// leak site: report job");
    for _ in 0..K {
        let (status, _) = demo.post("/reports", serde_json::json!({})).await;
        assert_eq!(status, 200);
    }

    // The jobs block once their first progress message has filled the channel; wait until
    // every one is parked (started, slept, sent once, slept, blocked: 3 polls at least).
    let deadline = Instant::now() + Duration::from_secs(20);
    let snap = loop {
        let snap = demo.snapshot().await;
        let settled = snap
            .tasks
            .iter()
            .filter(|t| t.site == site && t.polls >= 3 && t.state == TaskState::Idle)
            .count();
        if settled == K || Instant::now() > deadline {
            break snap;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let metrics = demo.metrics().await;
    assert_eq!(
        metric(&metrics, "taskscope_tasks_live", &site),
        Some(K as f64),
        "site {site} in:\n{metrics}"
    );
    let row = snap
        .sites
        .iter()
        .find(|s| s.site == site)
        .unwrap_or_else(|| panic!("no row for {site}: {:?}", snap.sites));
    assert_eq!(
        (row.live, row.spawned, row.completed),
        (K as u64, K as u64, 0)
    );
    let leaked: Vec<_> = snap.tasks.iter().filter(|t| t.site == site).collect();
    assert_eq!(leaked.len(), K);
    assert!(leaked.iter().all(|t| t.state == TaskState::Idle));
    assert_eq!(snap.runtime.as_ref().map(|r| r.workers), Some(2));

    // One more call, one more leaked task.
    demo.post("/reports", serde_json::json!({})).await;
    demo.wait_live(&site, K as u64 + 1).await;

    // Switching the fault off frees the stranded jobs, and new jobs finish.
    demo.fault_off("leak").await;
    demo.wait_live(&site, 0).await;
    demo.post("/reports", serde_json::json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = demo.metrics().await;
        let completed = metric(&m, "taskscope_tasks_completed_total", &site);
        if completed == Some(K as f64 + 2.0)
            && metric(&m, "taskscope_tasks_live", &site) == Some(0.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job with the fault off did not finish:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
