//! End to end: fault `S11` (`futures::executor::block_on` inside the runtime) in the demo as
//! a real process with 2 workers. Two handlers block both workers on a tokio sleep nobody
//! drives: taskscope shows both as running tasks at the handler site and the exporter keeps
//! answering; after the watchdog's bounded stall both handlers end and the service serves
//! again.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, site_of};
use taskscope::model::TaskState;

const FILE: &str = "demo-service/src/faults/s11_block_on_in_runtime.rs";

#[tokio::test]
async fn two_block_on_handlers_stall_both_workers_until_the_watchdog() {
    let demo = Demo::start(&[]);
    let site = site_of(FILE, "// fault site: S11 handler");
    demo.fault_on("S11").await;

    // Both handlers inside their poll at once: both workers blocked. These snapshots come
    // from the exporter while the service cannot run anything.
    let deadline = Instant::now() + Duration::from_secs(30);
    let snap = loop {
        let snap = demo.snapshot().await;
        let running = snap
            .tasks
            .iter()
            .filter(|t| t.site == site && t.state == TaskState::Running)
            .count();
        if running == 2 {
            break snap;
        }
        assert!(
            Instant::now() < deadline,
            "never saw 2 running tasks at {site}; tasks: {:?}",
            snap.tasks
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let handlers: Vec<_> = snap.tasks.iter().filter(|t| t.site == site).collect();
    assert_eq!(handlers.len(), 2, "tasks at {site}: {handlers:?}");
    assert!(handlers.iter().all(|t| t.state == TaskState::Running));
    assert_eq!(
        snap.sites.iter().find(|s| s.site == site).map(|s| s.live),
        Some(2),
        "site rows: {:?}",
        snap.sites
    );
    assert_eq!(snap.runtime.as_ref().map(|r| r.workers), Some(2));
    assert!(demo.metrics().await.contains("taskscope_tasks_live"));

    // The watchdog cancels the helpers after a bounded stall; the handlers give up and end,
    // and the service answers again (the request may wait out the stall, within the
    // client's timeout).
    demo.wait_live(&site, 0).await;
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    demo.fault_off("S11").await;
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
}
