//! End to end: tokio's own locks through tokio's resource tracing (`--tokio-resources`). The
//! demo's worker pool shares its job receiver behind a `tokio::sync::Mutex`: with no jobs,
//! one worker holds it while it waits for a job and the other three wait for the lock.

mod common;

use common::{Demo, ROOT, site_of};
use taskscope::model::{LockKind, LockMode, LockSource};

const FILE: &str = "demo-service/src/workers.rs";

/// `file:line:col` of `Mutex::new(` on the line carrying `marker` (tokio's creation site).
fn created_at(marker: &str) -> String {
    let source = std::fs::read_to_string(format!("{ROOT}/{FILE}")).unwrap();
    let (idx, line) = source
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker))
        .expect("marker");
    let col = line.find("Mutex::new(").expect("Mutex::new on the line") + 1;
    format!("{FILE}:{}:{col}", idx + 1)
}

#[tokio::test]
async fn the_worker_pools_tokio_mutex_shows_its_holder_and_three_waiters() {
    let demo = Demo::start(&["--tokio-resources"]);
    let worker = site_of(FILE, "// spawn site: worker");
    let label = format!("tokio::sync::Mutex ({})", created_at("// lock: job queue"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let row = loop {
        let snap = demo.snapshot().await;
        if let Some(row) = snap.locks.into_iter().find(|l| l.lock == label)
            && row.holders.len() == 1
            && row.waiters.len() == 3
        {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {label} with 1 holder and 3 waiters"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(row.source, LockSource::TokioTracing);
    assert_eq!((row.kind, row.instances), (LockKind::Mutex, 1));
    assert_eq!(row.holders[0].task_site.as_deref(), Some(worker.as_str()));
    assert_eq!(row.holders[0].mode, LockMode::Exclusive);
    for w in &row.waiters {
        assert_eq!(w.task_site.as_deref(), Some(worker.as_str()), "{row:#?}");
        assert_eq!(
            (w.site.as_str(), w.mode),
            ("Mutex::lock", LockMode::Exclusive)
        );
    }
    let mut tasks: Vec<u64> = row
        .holders
        .iter()
        .chain(row.holders.iter())
        .filter_map(|h| h.task)
        .chain(row.waiters.iter().filter_map(|w| w.task))
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    assert_eq!(tasks.len(), 4, "four distinct workers: {row:#?}");

    // A job goes through: the lock changes hands and the count of acquisitions grows.
    let before = row.acquisitions;
    let (code, body) = demo.post("/jobs", serde_json::json!({"user_id": 1})).await;
    assert!(code < 300, "{code} {body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let snap = demo.snapshot().await;
        let row = snap.locks.iter().find(|l| l.lock == label).unwrap();
        if row.acquisitions > before && row.holders.len() == 1 && row.waiters.len() == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{row:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
