//! End to end: the lost-waker indicator in the demo as a real process (`--lost-waker`).
//! Fault `lostwaker` strands 9 of its 10 gate waiters with no waker: a certain leak,
//! reported at their spawn site with their exact count. Fault S2's waiters are idle too,
//! but their oneshot senders live in the reply map: never reported as lost.

mod common;

use std::time::Duration;

use common::{Demo, finding_metric, metric, site_of};
use taskscope::model::{Evidence, FindingKind, Severity};

const FILE: &str = "demo-service/src/faults/lost_waker.rs";
const WAITERS: u64 = 10;

#[tokio::test]
async fn waiters_that_lost_their_waker_are_reported_and_s2_waiters_are_not() {
    let demo = Demo::start(&["--lost-waker", "--idle-floor", "1"]);
    let site = site_of(FILE, "// fault site: lost waker");
    let s2 = site_of(
        "demo-service/src/faults/s2_reply_map.rs",
        "// fault site: S2 request",
    );
    demo.fault_on("S2").await;
    demo.fault_on("lostwaker").await;
    demo.wait_live(&site, WAITERS).await;
    demo.wait_live(&s2, 10).await;

    // All but the last waiter to poll the gate lost their waker.
    let lost = demo
        .wait_finding(FindingKind::LostWaker, &site, |f| f.count == WAITERS - 1)
        .await;
    assert_eq!(lost.severity, Severity::Critical);
    let Evidence::LostWaker { task_ids, .. } = &lost.evidence else {
        panic!("lost-waker evidence expected: {lost:#?}");
    };
    assert_eq!(task_ids.len() as u64, WAITERS - 1, "{lost:#?}");

    // S2's waiters are idle (their own finding says so) but never lost: their senders live.
    demo.wait_finding(FindingKind::IdleTooLong, &s2, |f| f.count == 10)
        .await;
    let snap = demo.snapshot().await;
    let lost_sites: Vec<(&str, u64)> = snap
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::LostWaker)
        .map(|f| (f.site.as_str(), f.count))
        .collect();
    assert_eq!(lost_sites, [(site.as_str(), WAITERS - 1)]);

    let text = demo.metrics().await;
    assert_eq!(
        metric(&text, "taskscope_tasks_lost_waker", &site),
        Some((WAITERS - 1) as f64)
    );
    assert_eq!(metric(&text, "taskscope_tasks_lost_waker", &s2), Some(0.0));
    assert_eq!(
        finding_metric(&text, "lost_waker", "critical", &site),
        Some((WAITERS - 1) as f64)
    );

    // Off: the waiters are aborted and the finding clears.
    demo.fault_off("lostwaker").await;
    demo.wait_live(&site, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        demo.findings_at(FindingKind::LostWaker, &site)
            .await
            .is_empty()
    );
}

/// Without `--lost-waker` the layer is not installed and nothing is claimed.
#[tokio::test]
async fn without_the_layer_no_lost_waker_finding_is_made() {
    let demo = Demo::start(&["--idle-floor", "1"]);
    let site = site_of(FILE, "// fault site: lost waker");
    demo.fault_on("lostwaker").await;
    demo.wait_live(&site, WAITERS).await;
    // Past the layer's one-second idle minimum: the tasks are idle, nothing is claimed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let snap = demo.snapshot().await;
    let row = snap.sites.iter().find(|s| s.site == site).expect("the row");
    assert!(row.oldest_idle_seconds >= 1.0, "{row:?}");
    assert!(
        snap.findings
            .iter()
            .all(|f| f.kind != FindingKind::LostWaker),
        "{:#?}",
        snap.findings
    );
}
