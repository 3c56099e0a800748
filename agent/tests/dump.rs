//! Task dumps against a real runtime: groups by site and await point, one at a time, no
//! dump while a worker is blocked, and the dump's own polls not counted.

use std::time::Duration;

use taskscope::dump::TRACING_SUPPORTED;
use taskscope::model::{DumpSource, Snapshot};
use taskscope::{Agent, DumpError, DumpOptions, SnapshotOptions};

const SOURCE: &str = include_str!("dump.rs");

fn site_of(marker: &str) -> String {
    let (idx, line) = SOURCE
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker) && !l.contains("site_of("))
        .expect("marker");
    let col = line.find("tokio::spawn(").expect("spawn on marker line") + 1;
    format!("agent/tests/dump.rs:{}:{}", idx + 1, col)
}

fn runtime() -> (tokio::runtime::Runtime, Agent) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = taskscope::install(&mut builder);
    (builder.build().unwrap(), agent)
}

/// Where dumps are taken from: a runtime of its own, like the exporter's.
fn reader() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn row(snap: &Snapshot, site: &str) -> (u64, u64) {
    let r = snap
        .sites
        .iter()
        .find(|s| s.site == site)
        .expect("site row");
    (r.live, r.polls)
}

fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("condition not reached within 5 s");
}

#[test]
fn waiting_tasks_group_by_site_and_await_point() {
    const N: u64 = 12;
    let (rt, agent) = runtime();
    let mut senders = Vec::new();
    rt.block_on(async {
        for _ in 0..N {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            senders.push(tx);
            tokio::spawn(async move { rx.await.ok() }); // site: oneshot waiters
        }
    });
    let site = site_of("// site: oneshot waiters");
    wait_until(|| row(&agent.snapshot(), &site) == (N, N));
    let before = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 100,
        ..SnapshotOptions::default()
    });

    let dump = reader()
        .block_on(agent.dump(&DumpOptions {
            tasks: true,
            ..DumpOptions::default()
        }))
        .unwrap();
    let group = dump.groups.iter().find(|g| g.site == site).expect("group");
    assert_eq!(group.count, N);
    assert_eq!(
        dump.tasks.iter().filter(|t| t.site == site).count() as u64,
        N
    );
    if TRACING_SUPPORTED {
        assert_eq!(dump.source, DumpSource::Traced, "{:?}", dump.notes);
        assert!(dump.complete, "{:?}", dump.notes);
        // One group: all wait at the same point, a oneshot receive.
        assert_eq!(dump.groups.iter().filter(|g| g.site == site).count(), 1);
        let leaf = &group.stacks[0][0];
        assert!(leaf.function.contains("oneshot"), "{:#?}", group.stacks);
        // The test's own async block is on the stack (debug build), with its file.
        assert!(
            group.stacks[0]
                .iter()
                .any(|f| f.file == "agent/tests/dump.rs"),
            "{:#?}",
            group.stacks
        );
    } else {
        assert_eq!(dump.source, DumpSource::Registry);
        assert!(group.stacks.is_empty());
    }

    // The dump's re-polls and the spurious poll after it are not the tasks' own: poll
    // counts and idle ages carry on as before.
    std::thread::sleep(Duration::from_millis(300));
    let after = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 100,
        ..SnapshotOptions::default()
    });
    assert_eq!(row(&after, &site), (N, N));
    for t in after.tasks.iter().filter(|t| t.site == site) {
        let old = before.tasks.iter().find(|b| b.id == t.id).unwrap();
        assert_eq!(t.polls, 1);
        assert!(
            t.idle_seconds >= old.idle_seconds + 0.25,
            "{t:?} vs {old:?}"
        );
    }
    drop(senders);
}

#[test]
fn a_blocked_worker_gets_a_registry_answer_naming_it() {
    let (rt, agent) = runtime();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    rt.spawn(async move {
        entered_tx.send(()).unwrap();
        // Blocks a worker on purpose, like scenario S7.
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
    }); // site: blocker
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let dump = reader()
        .block_on(agent.dump(&DumpOptions::default()))
        .unwrap();
    assert_eq!(dump.source, DumpSource::Registry);
    if TRACING_SUPPORTED {
        assert!(!dump.complete);
        assert_eq!(dump.blocked.len(), 1, "{:?}", dump.blocked);
        assert!(dump.blocked[0].seconds >= 0.2);
        assert!(
            dump.notes[0].contains("blocking its worker"),
            "{:?}",
            dump.notes
        );
    }
    // The runtime still runs: the blocker ends and a plain task completes.
    release_tx.send(()).unwrap();
    let done = rt.block_on(async { tokio::spawn(async { 7 }).await.unwrap() });
    assert_eq!(done, 7);
}

#[test]
fn one_dump_at_a_time() {
    let (rt, agent) = runtime();
    rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
    let reader = reader();
    let (a, b) = reader.block_on(async {
        let opts = DumpOptions::default();
        tokio::join!(agent.dump(&opts), agent.dump(&opts))
    });
    // Whichever started second found the first in progress, unless the first was already
    // done (registry-only dumps finish without awaiting anything).
    if TRACING_SUPPORTED {
        assert!(a.is_ok());
        assert_eq!(b.unwrap_err(), DumpError::Busy);
    } else {
        assert!(a.is_ok() && b.is_ok());
    }
}

#[test]
fn registry_only_dumps_never_trace() {
    let (rt, agent) = runtime();
    rt.block_on(async {
        for _ in 0..3 {
            tokio::spawn(std::future::pending::<()>()); // site: pending
        }
    });
    let site = site_of("// site: pending");
    wait_until(|| row(&agent.snapshot(), &site).1 == 3);
    let dump = reader()
        .block_on(agent.dump(&DumpOptions {
            trace: false,
            site: Some(site.clone()),
            ..DumpOptions::default()
        }))
        .unwrap();
    assert_eq!(dump.source, DumpSource::Registry);
    assert!(dump.complete);
    assert_eq!(dump.paused_seconds, 0.0);
    assert_eq!(dump.groups.len(), 1);
    assert_eq!(
        (dump.groups[0].site.as_str(), dump.groups[0].count),
        (site.as_str(), 3)
    );
    assert_eq!(dump.total_tasks, 3);
}

#[test]
fn a_task_listing_stops_at_the_cap_and_says_so() {
    let (rt, agent) = runtime();
    let n = taskscope::dump::MAX_DUMP_TASKS + 5;
    let (tx, rx) = tokio::sync::watch::channel(false);
    rt.block_on(async {
        for _ in 0..n {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let _ = rx.wait_for(|go| *go).await;
            });
        }
    });
    let outside = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dump = outside
        .block_on(agent.dump(&DumpOptions {
            trace: false,
            tasks: true,
            ..DumpOptions::default()
        }))
        .unwrap();
    assert_eq!(dump.total_tasks, n as u64);
    assert_eq!(dump.tasks.len(), taskscope::dump::MAX_DUMP_TASKS);
    assert_eq!(dump.groups.iter().map(|g| g.count).sum::<u64>(), n as u64);
    assert!(
        dump.notes
            .iter()
            .any(|n| n.contains("100000 tasks listed of 100005")),
        "{:?}",
        dump.notes
    );
    let _ = tx.send(true);
}
