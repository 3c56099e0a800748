//! Runtime starvation on a real runtime: long polls counted per site, blocked workers seen
//! while the poll is still running, all workers blocked, the scheduling-delay probe kept out
//! of the service's sites.

use std::time::{Duration, Instant};

use taskscope::model::{Evidence, FindingKind, LONG_POLL_BOUNDS_SECONDS, Severity};

/// A runtime of `workers` workers with an agent that samples every 50 ms.
fn runtime(workers: usize) -> (taskscope::Agent, tokio::runtime::Runtime) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    let agent = taskscope::Agent::builder()
        .growth_window(Duration::from_secs(3))
        .install(&mut builder);
    (agent, builder.build().expect("runtime"))
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn long_polls_are_counted_per_site_by_duration() {
    assert_eq!(LONG_POLL_BOUNDS_SECONDS, [0.01, 0.1, 1.0, 10.0]);
    let (agent, rt) = runtime(2);
    rt.block_on(async {
        // One poll of 150 ms, then one short one.
        tokio::spawn(async {
            std::thread::sleep(Duration::from_millis(150));
            tokio::task::yield_now().await;
        })
        .await
        .unwrap();
    });
    drop(rt);
    let snap = agent.snapshot();
    let row = snap
        .sites
        .iter()
        .find(|s| s.site.starts_with("agent/tests/starvation.rs:"))
        .expect("the task's row");
    assert_eq!(row.polls, 2);
    assert_eq!(row.long_polls, [1, 1, 0, 0]);
    // The long poll counts exactly in busy time, whether or not it was sampled.
    assert!(
        (0.14..0.2).contains(&row.busy_seconds),
        "{}",
        row.busy_seconds
    );
}

#[test]
fn a_poll_in_progress_is_a_blocked_worker_until_it_ends() {
    let (agent, rt) = runtime(2);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let stuck = rt.spawn(async move {
        // Blocks its worker (no .await) until the test says so.
        let _ = go_rx.recv_timeout(Duration::from_secs(10));
    });
    let id: u64 = stuck.id().to_string().parse().unwrap();
    let finding = wait_for("a blocked-worker finding", || {
        agent
            .snapshot()
            .findings
            .into_iter()
            .find(|f| f.kind == FindingKind::BlockedWorker)
    });
    assert_eq!(finding.severity, Severity::Critical);
    assert_eq!(finding.count, 1);
    assert!(
        finding.site.starts_with("agent/tests/starvation.rs:"),
        "{finding:?}"
    );
    match finding.evidence {
        Evidence::BlockedWorker {
            worker,
            task,
            seconds,
            threshold_seconds,
        } => {
            assert!(worker.is_some_and(|w| w < 2), "{finding:?}");
            assert_eq!(task, id);
            assert!(seconds > 0.1 && threshold_seconds == 0.1, "{finding:?}");
        }
        ref e => panic!("evidence {e:?}"),
    }
    let snap = agent.snapshot();
    let rt_info = snap.runtime.as_ref().unwrap();
    assert_eq!(rt_info.blocked_workers, 1);
    assert!(rt_info.longest_poll_seconds > 0.1);
    assert_eq!(snap.polls_in_progress[0].task, id);
    // One of two workers: the runtime as a whole still runs.
    assert!(
        snap.findings
            .iter()
            .all(|f| f.kind != FindingKind::AllWorkersBlocked)
    );
    rt.block_on(async { tokio::spawn(async { 7 }).await.unwrap() });

    go_tx.send(()).unwrap();
    rt.block_on(stuck).unwrap();
    let snap = agent.snapshot();
    assert!(snap.findings.is_empty(), "{:#?}", snap.findings);
    assert_eq!(snap.runtime.as_ref().unwrap().blocked_workers, 0);
}

#[test]
fn one_worker_stuck_on_a_one_worker_runtime_blocks_them_all() {
    let (agent, rt) = runtime(1);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let stuck = rt.spawn(async move {
        let _ = go_rx.recv_timeout(Duration::from_secs(10));
    });
    let all = wait_for("an all-workers-blocked finding", || {
        agent
            .snapshot()
            .findings
            .into_iter()
            .find(|f| f.kind == FindingKind::AllWorkersBlocked)
    });
    assert_eq!((all.site.as_str(), all.count), ("(runtime)", 1));
    assert!(matches!(
        all.evidence,
        Evidence::AllWorkersBlocked { workers: 1, .. }
    ));
    // The probe the agent spawned meanwhile cannot run: its wait is the scheduling delay.
    let delay = wait_for("the probe's wait to show", || {
        let d = agent.snapshot().runtime?.scheduling_delay;
        (d.last_seconds >= 0.2).then_some(d)
    });
    assert!(delay.last_seconds >= 0.2, "{delay:?}");
    // A task spawned now waits for its first poll until the worker is free: its site's
    // worst scheduling delay says so.
    let late = rt.spawn(async {});
    let late_id: u64 = late.id().to_string().parse().unwrap();
    let late_site = agent
        .snapshot_with(&taskscope::SnapshotOptions {
            max_tasks: 100,
            ..taskscope::SnapshotOptions::default()
        })
        .tasks
        .into_iter()
        .find(|t| t.id == late_id)
        .expect("the late task is live")
        .site;
    std::thread::sleep(Duration::from_millis(300));
    go_tx.send(()).unwrap();
    rt.block_on(stuck).unwrap();
    rt.block_on(late).unwrap();
    let snap = agent.snapshot();
    let row = snap.sites.iter().find(|s| s.site == late_site).unwrap();
    assert!(row.first_poll_delay_max_seconds >= 0.25, "{row:?}");
    let quick = snap
        .sites
        .iter()
        .filter(|s| s.site != late_site)
        .map(|s| s.first_poll_delay_max_seconds)
        .fold(0.0, f64::max);
    assert!(quick < 0.25, "{:?}", snap.sites);
}

#[test]
fn the_probe_measures_scheduling_delay_and_is_not_a_service_site() {
    let (agent, rt) = runtime(2);
    rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
    let delay = wait_for("three probes", || {
        let d = agent.snapshot().runtime?.scheduling_delay;
        (d.count >= 3).then_some(d)
    });
    assert_eq!(delay.bounds.len(), delay.counts.len());
    assert_eq!(*delay.counts.last().unwrap(), delay.count, "{delay:?}");
    let snap = agent.snapshot();
    let sites: Vec<&str> = snap.sites.iter().map(|s| s.site.as_str()).collect();
    assert_eq!(sites.len(), 1, "{sites:?}");
    assert!(
        sites[0].starts_with("agent/tests/starvation.rs:"),
        "{sites:?}"
    );
    // Nor is it in a dump's tasks or the per-task list.
    let tasks = agent
        .snapshot_with(&taskscope::SnapshotOptions {
            max_tasks: 100,
            ..taskscope::SnapshotOptions::default()
        })
        .tasks;
    assert!(tasks.is_empty(), "{tasks:?}");
    let rt_info = snap.runtime.unwrap();
    assert_eq!(rt_info.worker_busy_ratio.len(), 2);
    assert!(rt_info.cpu_quota > 0.0);
}
