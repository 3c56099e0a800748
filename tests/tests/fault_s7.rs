//! End to end: fault `S7` (a task that never yields) in the demo as a real process. While a
//! spin task computes, taskscope shows exactly one live task at the spin site, mid-poll, and
//! the exporter keeps answering; switching the fault off stops the spins and the service
//! serves again.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, scalar, site_of};
use taskscope::model::{DumpSource, Evidence, FindingKind, Severity, TaskState};

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

    // A dump asked for now must not start tokio's dump (a worker has been in one poll for
    // more than the agent's threshold; tokio #7478 would wedge the runtime): it answers
    // from the registry at once, incomplete, naming the spin. The spin lasts 2 s and was
    // seen running moments ago; 300 ms more puts it well past the threshold.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let dump = demo.dump_json("timeout=3").await;
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "the dump took {:?}",
        asked.elapsed()
    );
    assert_eq!(dump.source, DumpSource::Registry, "{dump:#?}");
    assert!(!dump.complete, "{dump:#?}");
    assert!(
        dump.blocked
            .iter()
            .any(|b| b.site == spin && b.seconds > 0.1),
        "no blocked poll at {spin}: {:?}",
        dump.blocked
    );
    assert!(
        dump.notes.iter().any(|n| n.contains("blocking its worker")),
        "notes: {:?}",
        dump.notes
    );
    assert!(
        dump.groups.iter().any(|g| g.site == spin && g.count == 1),
        "no group at {spin}: {:#?}",
        dump.groups
    );
    // The service still answers (the other worker serves it).
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");

    // Blocked worker, seen from /metrics and the snapshot while a spin is 1.2-1.6 s into
    // its poll (a spin starts every 5 s and lasts 2 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = demo.metrics().await;
        let longest = scalar(&text, "taskscope_runtime_longest_poll_seconds").unwrap_or(0.0);
        if (1.2..1.6).contains(&longest) {
            assert_eq!(
                scalar(&text, "taskscope_runtime_blocked_workers"),
                Some(1.0)
            );
            assert_eq!(
                scalar(&text, "taskscope_runtime_blocked_threshold_seconds"),
                Some(0.1)
            );
            break;
        }
        assert!(Instant::now() < deadline, "no poll of 1.2-1.6 s seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snap = demo.snapshot().await;
    let blocked: Vec<_> = snap
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::BlockedWorker)
        .collect();
    assert_eq!(blocked.len(), 1, "{:#?}", snap.findings);
    let f = blocked[0];
    assert_eq!(
        (f.site.as_str(), f.count, f.severity),
        (spin.as_str(), 1, Severity::Critical)
    );
    let Evidence::BlockedWorker {
        worker,
        task,
        seconds,
        threshold_seconds,
    } = f.evidence
    else {
        panic!("blocked-worker evidence expected: {f:#?}");
    };
    let worker = worker.expect("the worker is known") as usize;
    assert!(worker < 2, "{f:#?}");
    assert!(seconds >= 1.2 && threshold_seconds == 0.1, "{f:#?}");
    assert_eq!(
        snap.tasks
            .iter()
            .find(|t| t.id == task)
            .map(|t| t.site.as_str()),
        Some(spin.as_str())
    );
    assert!(
        f.summary.contains(&format!("worker {worker}")) && f.summary.contains(&spin),
        "{}",
        f.summary
    );
    let rt = snap.runtime.as_ref().expect("runtime facts");
    assert_eq!(rt.blocked_workers, 1, "{rt:?}");
    // tokio counts busy time when a worker stops processing; the agent counts the poll in
    // progress, so the stuck worker reads fully busy.
    assert_eq!(rt.worker_busy_ratio[worker], 1.0, "{rt:?}");
    assert_eq!(
        snap.polls_in_progress[0].site, spin,
        "{:?}",
        snap.polls_in_progress
    );
    assert_eq!(snap.polls_in_progress[0].worker, Some(worker as u64));
    // `taskscope top` prints the stuck poll first, marked, with its worker, task and site.
    let top = taskscope_tui::top::render(&snap);
    let line = top
        .lines()
        .find(|l| l.contains("BLOCKED"))
        .unwrap_or_else(|| panic!("no blocked poll in:\n{top}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[0], worker.to_string(), "{top}");
    assert_eq!(cols[1], task.to_string(), "{top}");
    assert_eq!(cols[4], spin, "{top}");
    assert!(top.starts_with("workers 2 on "), "{top}");
    assert!(top.contains("blocked 1 "), "{top}");
    // Only one of two workers is stuck: not the whole runtime.
    assert!(
        snap.findings
            .iter()
            .all(|f| f.kind != FindingKind::AllWorkersBlocked)
    );

    // Off: the driver ends, the spin in progress finishes its 2 s, and nothing new starts.
    demo.fault_off("S7").await;
    demo.wait_live(&driver, 0).await;
    demo.wait_live(&spin, 0).await;
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");

    // The finding clears with the spin.
    let snap = demo.snapshot().await;
    assert!(
        snap.findings
            .iter()
            .all(|f| f.kind != FindingKind::BlockedWorker),
        "{:#?}",
        snap.findings
    );
    assert_eq!(snap.runtime.as_ref().map(|r| r.blocked_workers), Some(0));
    let text = demo.metrics().await;
    assert_eq!(
        scalar(&text, "taskscope_runtime_blocked_workers"),
        Some(0.0)
    );

    // With no spin left, a dump is traced and complete again, and the runtime still serves.
    let dump = demo.dump_json("timeout=3").await;
    assert_eq!(dump.source, DumpSource::Traced, "notes: {:?}", dump.notes);
    assert!(dump.complete, "notes: {:?}", dump.notes);
    assert!(dump.blocked.is_empty(), "{:?}", dump.blocked);
    let (status, body) = demo.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
}
