//! End to end: fault `S11` (`futures::executor::block_on` inside the runtime) in the demo as
//! a real process with 2 workers. Two handlers block both workers on a tokio sleep nobody
//! drives: taskscope shows both as running tasks at the handler site and the exporter keeps
//! answering; after the watchdog's bounded stall both handlers end and the service serves
//! again.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, site_of};
use taskscope::model::{Evidence, FindingKind, TaskState};

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

    // Both workers blocked: one finding per worker at the handler site, and one for the
    // runtime; the agent's probe task cannot be polled, so the scheduling delay grows.
    let snap = loop {
        let snap = demo.snapshot().await;
        let delay = snap
            .runtime
            .as_ref()
            .map_or(0.0, |r| r.scheduling_delay.last_seconds);
        if snap
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::AllWorkersBlocked)
            && delay >= 1.0
        {
            break snap;
        }
        assert!(
            Instant::now() < deadline,
            "no all-workers-blocked finding with a growing delay: {:#?} {:?}",
            snap.findings,
            snap.runtime
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let blocked: Vec<_> = snap
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::BlockedWorker)
        .collect();
    assert_eq!(blocked.len(), 2, "{:#?}", snap.findings);
    let mut workers: Vec<u64> = blocked
        .iter()
        .map(|f| {
            assert_eq!(f.site, site);
            match f.evidence {
                Evidence::BlockedWorker {
                    worker: Some(w), ..
                } => w,
                ref e => panic!("evidence: {e:?}"),
            }
        })
        .collect();
    workers.sort_unstable();
    assert_eq!(workers, [0, 1]);
    let all = snap
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::AllWorkersBlocked)
        .expect("checked above");
    assert_eq!((all.site.as_str(), all.count), ("(runtime)", 2));
    assert!(all.summary.contains(&site), "{}", all.summary);
    assert!(matches!(
        all.evidence,
        Evidence::AllWorkersBlocked { workers: 2, .. }
    ));
    assert_eq!(snap.runtime.as_ref().map(|r| r.blocked_workers), Some(2));

    // The watchdog cancels the helpers after a bounded stall; the handlers give up and end,
    // and the service answers again (the request may wait out the stall, within the
    // client's timeout).
    demo.wait_live(&site, 0).await;
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    demo.fault_off("S11").await;
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let snap = demo.snapshot().await;
    assert!(
        snap.findings.iter().all(|f| !matches!(
            f.kind,
            FindingKind::BlockedWorker | FindingKind::AllWorkersBlocked
        )),
        "{:#?}",
        snap.findings
    );
}
