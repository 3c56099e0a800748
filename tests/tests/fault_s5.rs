//! End to end: fault `S5` (read guards held across slow channel sends) in the demo as a real
//! process; the tasks taskscope counts and the timeouts the fault reports.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, acquire_site, site_of};
use taskscope::model::{Evidence, FindingKind, LockMode, Severity};

const FILE: &str = "demo-service/src/faults/s5_guard_across_await.rs";
const READERS: usize = 50;

#[tokio::test]
async fn guards_held_across_awaits_make_readers_time_out() {
    let demo = Demo::start(&[]);
    let reader = site_of(FILE, "// fault site: S5 reader");
    let writer = site_of(FILE, "// fault site: S5 writer");
    let drainer = site_of(FILE, "// fault site: S5 drainer");
    let read = acquire_site(FILE, "// lock acquire: S5 read");
    let write = acquire_site(FILE, "// lock acquire: S5 write");
    demo.fault_on("S5").await;
    // Before the writer's first attempt (500 ms in), every reader holds a read guard.
    let row = demo
        .wait_lock("config", |r| r.holders.len() == READERS)
        .await;
    assert!(
        row.holders.iter().all(|h| h.site == read
            && h.mode == LockMode::Read
            && h.task_site.as_deref() == Some(reader.as_str())),
        "{row:#?}"
    );
    // Then the writer waits for write behind them, at its own site.
    let row = demo
        .wait_lock("config", |r| {
            r.waiters
                .iter()
                .any(|w| w.mode == LockMode::Write && w.site == write)
        })
        .await;
    let w = row
        .waiters
        .iter()
        .find(|w| w.mode == LockMode::Write)
        .unwrap();
    assert_eq!(w.task_site.as_deref(), Some(writer.as_str()));
    // Guards held while their tasks wait on the channel: the finding names the read site.
    let f = demo
        .wait_finding(FindingKind::GuardAcrossAwait, &read, |f| f.count >= 10)
        .await;
    assert_eq!(f.severity, Severity::Warning, "someone waits: {f:#?}");
    let Evidence::GuardAcrossAwait {
        lock,
        oldest_idle_seconds,
        ..
    } = &f.evidence
    else {
        panic!("{f:#?}");
    };
    assert_eq!(lock, &row.lock);
    assert!(*oldest_idle_seconds >= 1.0);
    demo.wait_live(&reader, READERS as u64).await;
    demo.wait_live(&writer, 1).await;
    demo.wait_live(&drainer, 1).await;

    let snap = demo.snapshot().await;
    for (site, want) in [(&reader, READERS), (&writer, 1), (&drainer, 1)] {
        let tasks = snap.tasks.iter().filter(|t| &t.site == site).count();
        assert_eq!(tasks, want, "tasks at {site}");
        let row = snap
            .sites
            .iter()
            .find(|s| &s.site == site)
            .unwrap_or_else(|| panic!("no row for {site}: {:?}", snap.sites));
        assert_eq!(
            (row.live, row.spawned, row.completed),
            (want as u64, want as u64, 0)
        );
    }

    // Readers queue behind the waiting writer and time out; the writer waits too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = fault_status(&demo, "S5").await;
        if status["reader_timeouts"].as_u64().unwrap() > 0
            && status["writer_wait_seconds_total"].as_f64().unwrap() > 0.0
        {
            break status;
        }
        assert!(Instant::now() < deadline, "S5 status stayed at {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status["reader_acquisitions"].as_u64().unwrap() > 0,
        "{status}"
    );
    demo.wait_live(&reader, READERS as u64).await;
    demo.wait_live(&writer, 1).await;

    demo.fault_off("S5").await;
    demo.wait_live(&reader, 0).await;
    demo.wait_live(&writer, 0).await;
    demo.wait_live(&drainer, 0).await;
}

/// The `status` of fault `name` in `GET /faults`.
async fn fault_status(demo: &Demo, name: &str) -> serde_json::Value {
    let (code, body) = demo.get("/faults").await;
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no fault {name} in {body}"))["status"]
        .clone()
}
