//! End to end: fault `S10` (a task waits for a Mutex it already holds) in the demo as a real
//! process; what taskscope's exporter reports about the holder and the users queued behind.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, acquire_site, site_of};
use taskscope::model::{Evidence, FindingKind, LockMode, Severity, Snapshot, TaskRow, TaskState};

const FILE: &str = "demo-service/src/faults/s10_reentrant_lock.rs";
const WAITERS: usize = 5;

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
async fn reentrant_lock_hangs_the_holder_and_queues_every_later_user() {
    let demo = Demo::start(&[]);
    let holder = site_of(FILE, "// fault site: S10 holder");
    let waiter = site_of(FILE, "// fault site: S10 waiter");
    demo.fault_on("S10").await;
    demo.wait_live(&holder, 1).await;
    demo.wait_live(&waiter, WAITERS as u64).await;

    // Once all hang, nothing polls them: two snapshots 0.5 s apart show the same polls.
    let sites = [holder.as_str(), waiter.as_str()];
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
        "the S10 tasks are still being polled"
    );

    for (site, want) in [(holder.as_str(), 1), (waiter.as_str(), WAITERS)] {
        let hung = tasks_at(&after, site);
        assert_eq!(hung.len(), want, "tasks at {site}: {hung:?}");
        assert!(
            hung.iter()
                .all(|t| t.state == TaskState::Idle && t.polls >= 1),
            "tasks at {site}: {hung:?}"
        );
        let row = after
            .sites
            .iter()
            .find(|s| s.site == site)
            .unwrap_or_else(|| panic!("no row for {site}: {:?}", after.sites));
        assert_eq!(
            (row.live, row.spawned, row.completed),
            (want as u64, want as u64, 0)
        );
    }

    // Nobody ever got through.
    let status = fault_status(&demo, "S10").await;
    assert_eq!(status["transfers"], 0, "{status}");
    assert_eq!(status["waiter_uses"], 0, "{status}");

    // The lock view and the deadlock: one task waits for the ledger it holds, naming the
    // lock and both of its acquire sites; the later users queue behind it.
    let first = acquire_site(FILE, "// lock acquire: S10 first lock");
    let again = acquire_site(FILE, "// lock acquire: S10 re-entrant lock");
    let later = acquire_site(FILE, "// lock acquire: S10 later user");
    let row = demo
        .wait_lock("ledger", |r| r.waiters.len() == WAITERS + 1)
        .await;
    assert_eq!(row.holders.len(), 1, "{row:#?}");
    assert_eq!(row.holders[0].site, first);
    assert_eq!(row.holders[0].task_site.as_deref(), Some(holder.as_str()));
    assert_eq!(
        row.waiters.iter().filter(|w| w.site == later).count(),
        WAITERS,
        "{row:#?}"
    );
    assert_eq!(row.waiters.iter().filter(|w| w.site == again).count(), 1);
    let f = demo
        .wait_finding(FindingKind::Deadlock, &row.lock, |_| true)
        .await;
    assert_eq!((f.severity, f.count), (Severity::Critical, 1));
    let Evidence::Deadlock {
        cycle,
        blocked_behind,
    } = &f.evidence
    else {
        panic!("{f:#?}");
    };
    assert_eq!(*blocked_behind, WAITERS as u64);
    assert_eq!(cycle.len(), 1);
    assert_eq!(cycle[0].task_site.as_deref(), Some(holder.as_str()));
    assert_eq!(cycle[0].task, row.holders[0].task);
    assert_eq!(
        (cycle[0].wait_site.as_str(), cycle[0].wait_mode),
        (again.as_str(), LockMode::Exclusive)
    );
    assert_eq!(
        cycle[0].holds,
        [format!("exclusive of {} at {first}", row.lock)]
    );
    assert!(
        f.summary.contains("which it already holds"),
        "{}",
        f.summary
    );
    assert!(
        f.summary
            .contains(&format!("{WAITERS} more tasks wait behind it")),
        "{}",
        f.summary
    );

    demo.fault_off("S10").await;
    demo.wait_live(&holder, 0).await;
    demo.wait_live(&waiter, 0).await;
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
