//! End to end: fault `S4` (recursive read on a fair RwLock with a writer queued between) in
//! the demo as a real process; what taskscope's exporter reports about the two hung tasks.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, acquire_site, site_of};
use taskscope::model::{Evidence, FindingKind, LockMode, Severity, Snapshot, TaskRow, TaskState};

const FILE: &str = "demo-service/src/faults/s4_recursive_read.rs";

fn tasks_at<'a>(snap: &'a Snapshot, site: &str) -> Vec<&'a TaskRow> {
    snap.tasks.iter().filter(|t| t.site == site).collect()
}

/// Polls of the tasks at `sites`, by task id, sorted.
fn polls(snap: &Snapshot, sites: &[&str]) -> Vec<(u64, u64)> {
    let mut polls: Vec<_> = snap
        .tasks
        .iter()
        .filter(|t| sites.contains(&t.site.as_str()))
        .map(|t| (t.id, t.polls))
        .collect();
    polls.sort_unstable();
    polls
}

#[tokio::test]
async fn recursive_read_hangs_the_reader_and_the_writer() {
    let demo = Demo::start(&[]);
    let reader = site_of(FILE, "// fault site: S4 reader");
    let writer = site_of(FILE, "// fault site: S4 writer");
    demo.fault_on("S4").await;
    demo.wait_live(&reader, 1).await;
    demo.wait_live(&writer, 1).await;

    // Once both hang, nothing polls them: two snapshots 0.5 s apart show the same polls.
    let sites = [reader.as_str(), writer.as_str()];
    let deadline = Instant::now() + Duration::from_secs(20);
    let (before, after) = loop {
        let before = demo.snapshot().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = demo.snapshot().await;
        if polls(&before, &sites) == polls(&after, &sites) || Instant::now() > deadline {
            break (before, after);
        }
    };
    assert_eq!(
        polls(&before, &sites),
        polls(&after, &sites),
        "the S4 tasks are still being polled"
    );

    for site in sites {
        let hung = tasks_at(&after, site);
        assert_eq!(hung.len(), 1, "tasks at {site}: {hung:?}");
        assert_eq!(hung[0].state, TaskState::Idle, "{:?}", hung[0]);
        assert!(hung[0].polls >= 1, "{:?}", hung[0]);
        let row = after
            .sites
            .iter()
            .find(|s| s.site == site)
            .unwrap_or_else(|| panic!("no row for {site}: {:?}", after.sites));
        assert_eq!((row.live, row.spawned, row.completed), (1, 1, 0));
    }

    // Neither the nested read nor the write ever got through.
    let status = fault_status(&demo, "S4").await;
    assert_eq!(status["writes"], 0, "{status}");
    demo.wait_live(&reader, 1).await;
    demo.wait_live(&writer, 1).await;

    // The lock view: the reader holds a read guard and waits for another, the writer waits
    // for write; the wait-for cycle is a deadlock naming both tasks and the three sites.
    let outer = acquire_site(FILE, "// lock acquire: S4 outer read");
    let nested = acquire_site(FILE, "// lock acquire: S4 nested read");
    let write = acquire_site(FILE, "// lock acquire: S4 write");
    let row = demo
        .wait_lock("routing table", |r| r.waiters.len() == 2)
        .await;
    assert_eq!(row.holders.len(), 1, "{row:#?}");
    assert_eq!(row.holders[0].site, outer);
    assert_eq!(row.holders[0].mode, LockMode::Read);
    assert_eq!(row.holders[0].task_site.as_deref(), Some(reader.as_str()));
    let mut waits: Vec<(String, LockMode, Option<String>)> = row
        .waiters
        .iter()
        .map(|w| (w.site.clone(), w.mode, w.task_site.clone()))
        .collect();
    waits.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (nested.clone(), LockMode::Read, Some(reader.clone())),
        (write.clone(), LockMode::Write, Some(writer.clone())),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(waits, want);

    let f = demo
        .wait_finding(FindingKind::Deadlock, &row.lock, |_| true)
        .await;
    assert_eq!((f.severity, f.count), (Severity::Critical, 2));
    let Evidence::Deadlock {
        cycle,
        blocked_behind,
    } = &f.evidence
    else {
        panic!("{f:#?}");
    };
    assert_eq!(*blocked_behind, 0);
    let mut steps: Vec<(Option<String>, String, LockMode, usize)> = cycle
        .iter()
        .map(|s| {
            (
                s.task_site.clone(),
                s.wait_site.clone(),
                s.wait_mode,
                s.holds.len(),
            )
        })
        .collect();
    steps.sort_by(|a, b| a.1.cmp(&b.1));
    let mut want = vec![
        (Some(reader.clone()), nested.clone(), LockMode::Read, 1),
        (Some(writer.clone()), write.clone(), LockMode::Write, 0),
    ];
    want.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(steps, want, "{f:#?}");
    let reader_step = cycle
        .iter()
        .find(|s| s.task_site.as_deref() == Some(reader.as_str()))
        .unwrap();
    assert!(
        reader_step.holds[0].ends_with(&format!("at {outer}")),
        "{f:#?}"
    );
    for site in [&outer, &nested, &write, &reader, &writer] {
        assert!(
            f.summary.contains(site.as_str()),
            "{site} not in: {}",
            f.summary
        );
    }
    let (code, text) = demo.get_exporter("/debug/taskscope/locks").await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("CRITICAL: deadlock of 2 tasks"), "{text}");

    demo.fault_off("S4").await;
    demo.wait_live(&reader, 0).await;
    demo.wait_live(&writer, 0).await;
    let row = demo
        .wait_lock("routing table", |r| r.waiters.is_empty())
        .await;
    assert!(row.holders.is_empty(), "{row:#?}");
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
