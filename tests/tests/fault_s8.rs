//! End to end: fault `S8` (blocking pool exhaustion) in the demo as a real process with
//! `--max-blocking-threads 4`. taskscope shows every blocking thread busy, none idle, a
//! blocking queue that does not drain, and the coordinator's task; switching the fault off
//! cancels the jobs, the queue drains and the threads go idle.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, scalar, site_of};
use taskscope::model::{Evidence, FindingKind, RuntimeInfo, Severity, TaskState};

const FILE: &str = "demo-service/src/faults/s8_blocking_exhaustion.rs";
const MAX_BLOCKING: u64 = 4;

async fn runtime(demo: &Demo) -> RuntimeInfo {
    demo.snapshot()
        .await
        .runtime
        .expect("the snapshot has runtime facts")
}

#[tokio::test]
async fn blocking_jobs_waiting_on_fs_exhaust_the_pool_until_switched_off() {
    let demo = Demo::start(&["--max-blocking-threads", "4"]);
    let site = site_of(FILE, "// fault site: S8 coordinator");
    demo.fault_on("S8").await;
    demo.wait_live(&site, 1).await;

    // Exhausted: every blocking thread busy, the jobs' reads queued.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let rt = runtime(&demo).await;
        if rt.blocking_threads == MAX_BLOCKING
            && rt.idle_blocking_threads == 0
            && rt.blocking_queue_depth > 0
        {
            break rt;
        }
        assert!(
            Instant::now() < deadline,
            "the blocking pool never looked exhausted: {rt:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // ... and it stays so: the queue does not drain.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snap = demo.snapshot().await;
    let second = snap.runtime.clone().expect("runtime facts");
    assert_eq!(second.blocking_threads, MAX_BLOCKING, "{second:?}");
    assert_eq!(second.idle_blocking_threads, 0, "{second:?}");
    assert_eq!(
        second.max_blocking_threads,
        Some(MAX_BLOCKING),
        "{second:?}"
    );
    assert!(
        second.blocking_queue_depth >= first.blocking_queue_depth,
        "the queue drained: {first:?} then {second:?}"
    );
    // One coordinator, waiting (not running) on its jobs.
    let coordinators: Vec<_> = snap.tasks.iter().filter(|t| t.site == site).collect();
    assert_eq!(coordinators.len(), 1, "tasks at {site}: {coordinators:?}");
    assert_eq!(coordinators[0].state, TaskState::Idle);
    assert_eq!(demo.live_at(&site).await, Some(1.0));
    // The async workers are free: the service still answers.
    let (status, _) = demo.get("/healthz").await;
    assert_eq!(status, 200);

    // Saturated for a second without draining: a finding, with the pool's numbers.
    let f = demo
        .wait_finding(
            FindingKind::BlockingPoolSaturated,
            "(blocking pool)",
            |_| true,
        )
        .await;
    assert_eq!(f.severity, Severity::Warning);
    let Evidence::BlockingPoolSaturated {
        threads,
        queue_depth,
        seconds,
    } = f.evidence
    else {
        panic!("blocking-pool evidence expected: {f:#?}");
    };
    assert_eq!(threads, MAX_BLOCKING, "{f:#?}");
    assert!(queue_depth > 0 && seconds >= 1.0, "{f:#?}");
    assert_eq!(f.count, queue_depth);
    let text = demo.metrics().await;
    assert!(scalar(&text, "taskscope_runtime_blocking_saturated_seconds").unwrap_or(0.0) >= 1.0);
    let rt = runtime(&demo).await;
    assert!(rt.blocking_saturated_seconds >= 1.0, "{rt:?}");

    // Off: the jobs are cancelled, the queued reads run, the coordinator ends.
    demo.fault_off("S8").await;
    demo.wait_live(&site, 0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rt = runtime(&demo).await;
        if rt.blocking_queue_depth == 0 && rt.idle_blocking_threads > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the blocking pool did not recover: {rt:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    // The sampler sees the pool drained at its next reading (every second by default).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !demo
        .findings_at(FindingKind::BlockingPoolSaturated, "(blocking pool)")
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the saturation finding stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runtime(&demo).await.blocking_saturated_seconds, 0.0);
}
