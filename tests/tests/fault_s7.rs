//! End to end: fault `S7` (a task that never yields) in the demo as a real process. While a
//! spin task computes, taskscope shows exactly one live task at the spin site, mid-poll, and
//! the exporter keeps answering; switching the fault off stops the spins and the service
//! serves again.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, site_of};
use taskscope::model::TaskState;

const FILE: &str = "demo-service/src/faults/s7_never_yields.rs";

#[tokio::test]
async fn a_spinning_task_shows_as_one_running_task_at_its_site() {
    let demo = Demo::start(&[]);
    let spin = site_of(FILE, "// fault site: S7 spin");
    let driver = site_of(FILE, "// fault site: S7 driver");
    demo.fault_on("S7").await;
    demo.wait_live(&driver, 1).await;

    // A spin starts at once and then every 5 s; catch one in progress. Every snapshot here
    // comes from the exporter while a service worker is stuck in the spin's poll.
    let deadline = Instant::now() + Duration::from_secs(30);
    let snap = loop {
        let snap = demo.snapshot().await;
        if snap
            .tasks
            .iter()
            .any(|t| t.site == spin && t.state == TaskState::Running)
        {
            break snap;
        }
        assert!(
            Instant::now() < deadline,
            "no running task at {spin}; tasks: {:?}",
            snap.tasks
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let spinning: Vec<_> = snap.tasks.iter().filter(|t| t.site == spin).collect();
    assert_eq!(spinning.len(), 1, "tasks at {spin}: {spinning:?}");
    assert_eq!(spinning[0].state, TaskState::Running);
    assert_eq!(
        snap.sites.iter().find(|s| s.site == spin).map(|s| s.live),
        Some(1),
        "site rows: {:?}",
        snap.sites
    );
    assert_eq!(snap.runtime.as_ref().map(|r| r.workers), Some(2));
    // The exporter's other endpoint answers too while the spin runs.
    assert!(demo.metrics().await.contains("taskscope_tasks_live"));

    // Off: the driver ends, the spin in progress finishes its 2 s, and nothing new starts.
    demo.fault_off("S7").await;
    demo.wait_live(&driver, 0).await;
    demo.wait_live(&spin, 0).await;
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
}
