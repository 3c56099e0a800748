//! End to end: marking a baseline and reading what changed per site since, or over the
//! last seconds of the agent's history, through the exporter as the CLI and TUI read it.

mod common;

use std::time::Duration;

use common::{Demo, site_of};
use taskscope::model::{BaselineDiff, SiteDiff};

const LEAK_FILE: &str = "demo-service/src/faults/report_leak.rs";

async fn get(demo: &Demo, path: &str) -> (u16, String) {
    let r = demo
        .client
        .get(format!("{}{path}", demo.exporter))
        .send()
        .await
        .expect("the exporter answers");
    (r.status().as_u16(), r.text().await.unwrap())
}

fn leak_row(diff: &BaselineDiff, site: &str) -> SiteDiff {
    diff.sites
        .iter()
        .find(|s| s.site == site)
        .unwrap_or_else(|| panic!("no {site} in {diff:#?}"))
        .clone()
}

#[tokio::test]
async fn diff_since_the_baseline_and_over_the_last_seconds() {
    const K: u64 = 6;
    // History sampled every 100 ms (growth window 6 s / 60).
    let demo = Demo::start(&["--fault", "leak", "--growth-window", "6"]);
    let site = site_of(LEAK_FILE, "// leak site: report job");

    // No baseline yet: 409 with what to do.
    let (status, body) = get(&demo, "/debug/taskscope/diff").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("POST /debug/taskscope/baseline"), "{body}");
    assert!(demo.snapshot().await.baseline.is_none());

    // Two leaked jobs before the baseline, K after it.
    for _ in 0..2 {
        demo.post("/reports", serde_json::json!({})).await;
    }
    demo.wait_live(&site, 2).await;
    let r = demo
        .client
        .post(format!("{}/debug/taskscope/baseline", demo.exporter))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let marked: serde_json::Value = r.json().await.unwrap();
    assert!(marked["marked_at_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..K {
        demo.post("/reports", serde_json::json!({})).await;
    }
    demo.wait_live(&site, 2 + K).await;

    let (status, body) = get(&demo, "/debug/taskscope/diff").await;
    assert_eq!(status, 200, "{body}");
    let diff: BaselineDiff = serde_json::from_str(&body).unwrap();
    let row = leak_row(&diff, &site);
    assert_eq!(
        (row.live_before, row.live_after, row.spawned, row.completed),
        (2, 2 + K, K, 0)
    );
    assert_eq!(row.live_delta(), K as i64);
    // The leak grew most: it comes first.
    assert_eq!(diff.sites[0].site, site, "{diff:#?}");
    assert!(diff.age_seconds > 0.2, "{diff:#?}");
    // Every snapshot carries the same comparison.
    let snap = demo.snapshot().await;
    let from_snapshot = snap.baseline.expect("a baseline in the snapshot");
    assert_eq!(leak_row(&from_snapshot, &site).live_delta(), K as i64);

    // Over the last 200 ms nothing changed at the leak site; 30 s is more history than
    // the agent has yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = get(&demo, "/debug/taskscope/diff?since=200ms").await;
    assert_eq!(status, 200, "{body}");
    let recent: BaselineDiff = serde_json::from_str(&body).unwrap();
    assert!(recent.sites.iter().all(|s| s.site != site), "{recent:#?}");
    let (status, body) = get(&demo, "/debug/taskscope/diff?since=30s").await;
    assert_eq!(status, 400, "the demo has not run 30 s: {body}");
    assert!(body.contains("less than the 30 s asked for"), "{body}");

    // Bad parameters: 400 naming them.
    let (status, body) = get(&demo, "/debug/taskscope/diff?since=soon").await;
    assert_eq!(status, 400);
    assert!(body.contains("since=\"soon\" is not a duration"), "{body}");
    let (status, body) = get(&demo, "/debug/taskscope/diff?until=1").await;
    assert_eq!(status, 400);
    assert!(body.contains("unknown parameter \"until\""), "{body}");
    let r = demo
        .client
        .get(format!("{}/debug/taskscope/baseline", demo.exporter))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}
