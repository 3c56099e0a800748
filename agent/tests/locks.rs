//! Instrumented locks on a real runtime: holders, waiters, contention charged to the
//! holder's acquire site, deadlocks, guards held across `.await`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use taskscope::model::{Evidence, FindingKind, LockKind, LockMode, LockRow, Severity, Snapshot};
use taskscope::sync::{Mutex, RwLock, Semaphore};

fn runtime() -> (taskscope::Agent, tokio::runtime::Runtime) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = taskscope::Agent::builder()
        .growth_window(Duration::from_secs(3))
        .install(&mut builder);
    (agent, builder.build().expect("runtime"))
}

const FILE: &str = "agent/tests/locks.rs";

fn at(line: u32) -> String {
    format!("{FILE}:{line}:")
}

fn row<'a>(snap: &'a Snapshot, name: &str) -> &'a LockRow {
    snap.locks
        .iter()
        .find(|l| l.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no lock named {name}: {:#?}", snap.locks))
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn contention_is_charged_to_the_holders_acquire_site() {
    let (agent, rt) = runtime();
    let m = Arc::new(Mutex::named(0u32, "contended"));
    let (held_tx, held_rx) = std::sync::mpsc::channel::<u32>();
    let holder = {
        let m = Arc::clone(&m);
        rt.spawn(async move {
            let (mut g, line) = (m.lock().await, line!());
            held_tx.send(line).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            *g += 1;
        })
    };
    let hold_line = held_rx.recv().unwrap();
    let waiter = {
        let m = Arc::clone(&m);
        rt.spawn(async move {
            let (mut g, line) = (m.lock().await, line!());
            *g += 1;
            line
        })
    };
    let holder_id: u64 = holder.id().to_string().parse().unwrap();
    let waiter_id: u64 = waiter.id().to_string().parse().unwrap();
    // While it waits: one holder, one waiter, with their tasks and sites.
    let snap = wait_for("the waiter", || {
        let s = agent.snapshot();
        (!row(&s, "contended").waiters.is_empty()).then_some(s)
    });
    let r = row(&snap, "contended");
    assert_eq!(r.kind, LockKind::Mutex);
    assert!(r.created_at.starts_with(FILE), "{r:?}");
    assert_eq!(r.lock, format!("contended ({})", r.created_at));
    assert_eq!(r.holders.len(), 1, "{r:#?}");
    assert_eq!(r.holders[0].task, Some(holder_id));
    assert!(r.holders[0].site.starts_with(&at(hold_line)), "{r:#?}");
    assert_eq!(r.holders[0].mode, LockMode::Exclusive);
    assert!(
        r.holders[0]
            .task_site
            .as_deref()
            .is_some_and(|s| s.starts_with(FILE))
    );
    assert_eq!(r.waiters.len(), 1);
    assert_eq!(r.waiters[0].task, Some(waiter_id));

    let wait_line = rt.block_on(waiter).unwrap();
    rt.block_on(holder).unwrap();
    let snap = agent.snapshot();
    let r = row(&snap, "contended");
    assert_eq!((r.acquisitions, r.contended), (2, 1));
    assert!(r.holders.is_empty() && r.waiters.is_empty(), "{r:#?}");
    assert_eq!(r.wait_seconds.count, 1);
    assert!(r.wait_seconds.sum > 0.2, "{:?}", r.wait_seconds);
    assert_eq!(r.hold_seconds.count, 2);
    assert_eq!(r.delay_by_holder_site.len(), 1, "{r:#?}");
    let charged = &r.delay_by_holder_site[0];
    assert!(charged.site.starts_with(&at(hold_line)), "{charged:?}");
    assert_eq!(charged.contentions, 1);
    assert!(charged.seconds > 0.2);
    assert_ne!(hold_line, wait_line);
    assert_eq!(rt.block_on(async { *m.lock().await }), 2);
}

#[test]
fn a_task_locking_a_mutex_it_holds_is_a_deadlock_naming_both_sites() {
    let (agent, rt) = runtime();
    let m = Arc::new(Mutex::named((), "reentrant"));
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<(u32, u32)>();
    let task = {
        let m = Arc::clone(&m);
        rt.spawn(async move {
            let (_outer, first) = (m.lock().await, line!());
            let second = line!() + 2;
            lines_tx.send((first, second)).unwrap();
            let _inner = m.lock().await;
        })
    };
    let id: u64 = task.id().to_string().parse().unwrap();
    let (first, second) = lines_rx.recv().unwrap();
    // Another task queues behind it.
    let behind = {
        let m = Arc::clone(&m);
        rt.spawn(async move {
            let _g = m.lock().await;
        })
    };
    let f = wait_for("a deadlock finding", || {
        agent
            .snapshot()
            .findings
            .into_iter()
            .find(|f| f.kind == FindingKind::Deadlock)
    });
    assert_eq!((f.severity, f.count), (Severity::Critical, 1));
    let Evidence::Deadlock {
        cycle,
        blocked_behind,
    } = &f.evidence
    else {
        panic!("{f:#?}");
    };
    assert_eq!(*blocked_behind, 1);
    assert_eq!(cycle.len(), 1);
    assert_eq!(cycle[0].task, Some(id));
    assert!(cycle[0].wait_site.starts_with(&at(second)), "{f:#?}");
    assert_eq!(cycle[0].holds.len(), 1);
    assert!(cycle[0].holds[0].contains(&at(first)), "{f:#?}");
    assert!(
        f.summary.contains("which it already holds"),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("reentrant"), "{}", f.summary);
    task.abort();
    behind.abort();
    let _ = rt.block_on(task);
    let _ = rt.block_on(behind);
    // Aborted: the guard, the wait and the finding are gone.
    let snap = agent.snapshot();
    assert!(
        snap.findings
            .iter()
            .all(|f| f.kind != FindingKind::Deadlock)
    );
    let r = row(&snap, "reentrant");
    assert!(r.holders.is_empty() && r.waiters.is_empty(), "{r:#?}");
}

#[test]
fn recursive_read_with_a_writer_between_is_a_two_task_deadlock() {
    let (agent, rt) = runtime();
    let lock = Arc::new(RwLock::named(0u8, "table"));
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let lock = Arc::clone(&lock);
        rt.spawn(async move {
            let _outer = lock.read().await;
            let _ = held_tx.send(());
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _inner = lock.read().await;
        })
    };
    let writer = {
        let lock = Arc::clone(&lock);
        rt.spawn(async move {
            let _ = held_rx.await;
            *lock.write().await = 1;
        })
    };
    let ids: Vec<u64> = [&reader, &writer]
        .iter()
        .map(|h| h.id().to_string().parse().unwrap())
        .collect();
    let f = wait_for("a deadlock finding", || {
        agent
            .snapshot()
            .findings
            .into_iter()
            .find(|f| f.kind == FindingKind::Deadlock)
    });
    let Evidence::Deadlock { cycle, .. } = &f.evidence else {
        panic!("{f:#?}");
    };
    let mut tasks: Vec<u64> = cycle.iter().filter_map(|s| s.task).collect();
    tasks.sort_unstable();
    let mut want = ids.clone();
    want.sort_unstable();
    assert_eq!(tasks, want, "{f:#?}");
    let modes: Vec<LockMode> = cycle.iter().map(|s| s.wait_mode).collect();
    assert!(modes.contains(&LockMode::Read) && modes.contains(&LockMode::Write));
    reader.abort();
    writer.abort();
    let _ = rt.block_on(reader);
    let _ = rt.block_on(writer);
}

#[test]
fn a_guard_held_across_a_slow_await_while_others_wait_is_reported_at_its_site() {
    let (agent, rt) = runtime();
    let lock = Arc::new(RwLock::named(0u8, "config"));
    let (line_tx, line_rx) = std::sync::mpsc::channel::<u32>();
    let holder = {
        let lock = Arc::clone(&lock);
        rt.spawn(async move {
            let (_g, line) = (lock.read().await, line!());
            line_tx.send(line).unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
    };
    let line = line_rx.recv().unwrap();
    let writer = {
        let lock = Arc::clone(&lock);
        rt.spawn(async move {
            *lock.write().await = 1;
        })
    };
    let f = wait_for("a guard-across-await finding", || {
        agent
            .snapshot()
            .findings
            .into_iter()
            .find(|f| f.kind == FindingKind::GuardAcrossAwait)
    });
    assert_eq!((f.severity, f.count), (Severity::Warning, 1));
    assert!(f.site.starts_with(&at(line)), "{f:#?}");
    holder.abort();
    let _ = rt.block_on(holder);
    rt.block_on(writer).unwrap();
}

#[test]
fn semaphore_permits_and_blocking_mutex_are_tracked() {
    let (agent, rt) = runtime();
    let sem = Arc::new(Semaphore::named(2, "pool"));
    let blocking = taskscope::sync::blocking::Mutex::named(0, "counter");
    rt.block_on(async {
        let a = sem.acquire().await.unwrap();
        let b = Arc::clone(&sem).acquire_owned().await.unwrap();
        let snap = agent.snapshot();
        let r = row(&snap, "pool");
        assert_eq!(r.kind, LockKind::Semaphore);
        assert_eq!(r.holders.len(), 2);
        assert!(
            r.holders
                .iter()
                .all(|h| h.mode == LockMode::Permits && h.permits == 1)
        );
        drop((a, b));
        let many = sem.acquire_many(2).await.unwrap();
        assert_eq!(many.num_permits(), 2);
    });
    *blocking.lock().unwrap() += 1;
    let routes = taskscope::sync::blocking::RwLock::named(vec![1], "routes");
    {
        let a = routes.read().unwrap();
        let b = routes.read().unwrap();
        let snap = agent.snapshot();
        let r = row(&snap, "routes");
        assert_eq!(r.kind, LockKind::BlockingRwLock);
        assert_eq!(r.holders.len(), 2);
        assert!(
            r.holders
                .iter()
                .all(|h| h.mode == LockMode::Read && h.task.is_none())
        );
        drop((a, b));
    }
    routes.write().unwrap().push(2);
    assert_eq!(routes.read().unwrap().len(), 2);
    let snap = agent.snapshot();
    assert_eq!(row(&snap, "pool").acquisitions, 3);
    assert!(row(&snap, "pool").holders.is_empty());
    let c = row(&snap, "counter");
    assert_eq!(
        (c.kind, c.acquisitions, c.contended),
        (LockKind::BlockingMutex, 1, 0)
    );
}
