//! The agent's registry against a real multi-thread runtime: exact spawn sites, counts,
//! per-task slots, blocking tasks and the site cap.

use std::time::Duration;

use taskscope::model::{OVERFLOW_SITE, TaskState};
use taskscope::{Agent, SnapshotOptions};

const SOURCE: &str = include_str!("registry.rs");

/// `file:line:col` of the `tokio::spawn` on the line carrying `marker`, read from this
/// file's source so that editing the file cannot make the test assert a stale number.
fn site_of(marker: &str) -> String {
    let (idx, line) = SOURCE
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker) && !l.contains("site_of("))
        .unwrap_or_else(|| panic!("marker {marker} not found"));
    // `tokio::spawn(` is located at `tokio`; a method call (`handle.spawn(`) at its name.
    let col = ["tokio::spawn(", "spawn("]
        .iter()
        .find_map(|p| line.find(p))
        .expect("spawn on marker line")
        + 1;
    format!("agent/tests/registry.rs:{}:{}", idx + 1, col)
}

fn runtime() -> (tokio::runtime::Runtime, Agent) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = taskscope::install(&mut builder);
    (builder.build().unwrap(), agent)
}

#[test]
fn counts_tasks_at_their_exact_spawn_site() {
    const N: u64 = 25;
    let (rt, agent) = runtime();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handles: Vec<_> = rt.block_on(async {
        (0..N)
            .map(|_| {
                let mut rx = rx.clone();
                tokio::spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }) // site: waiters
            })
            .collect()
    });
    let site = site_of("// site: waiters");

    // Every task has been polled once and parked on the watch channel.
    wait_until(|| {
        agent
            .snapshot()
            .sites
            .iter()
            .any(|s| s.site == site && s.polls >= N)
    });
    let snap = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 1000,
        ..SnapshotOptions::default()
    });
    let row = snap
        .sites
        .iter()
        .find(|s| s.site == site)
        .expect("site row");
    assert_eq!((row.live, row.spawned, row.completed), (N, N, 0));
    assert_eq!(row.polls, N);
    assert_eq!(snap.tasks_total, N);

    let mut ids: Vec<u64> = handles
        .iter()
        .map(|h| h.id().to_string().parse().unwrap())
        .collect();
    let mut listed: Vec<u64> = snap.tasks.iter().map(|t| t.id).collect();
    ids.sort();
    listed.sort();
    assert_eq!(listed, ids);
    for task in &snap.tasks {
        assert_eq!(task.site, site);
        assert_eq!(task.state, TaskState::Idle);
        assert_eq!(task.polls, 1);
        assert!(task.idle_seconds <= task.age_seconds);
    }

    // The task list of one site only (the rows stay whole); at most `max_tasks`, oldest
    // first.
    let mut other_rx = rx.clone();
    let other = rt.spawn(async move { other_rx.wait_for(|go| *go).await.map(|_| ()) }); // site: other
    wait_until(|| {
        agent
            .snapshot()
            .sites
            .iter()
            .any(|s| s.site == site_of("// site: other") && s.polls == 1)
    });
    let one = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 3,
        site: Some(site.clone()),
    });
    assert_eq!(one.tasks.len(), 3);
    assert!(one.tasks.iter().all(|t| t.site == site));
    assert_eq!(
        one.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
    let other_site = site_of("// site: other");
    let them = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 1000,
        site: Some(other_site.clone()),
    });
    assert_eq!(
        them.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![other.id().to_string().parse::<u64>().unwrap()]
    );
    assert!(them.sites.iter().any(|s| s.site == site && s.live == N));

    tx.send(true).unwrap();
    rt.block_on(async {
        other.await.unwrap().unwrap();
        for h in handles {
            h.await.unwrap().unwrap();
        }
    });
    // tokio wakes a JoinHandle before it runs the terminate hook: give the hook a moment.
    wait_until(|| {
        agent
            .snapshot()
            .sites
            .iter()
            .any(|s| s.site == site && s.completed == N)
    });
    let snap = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 1000,
        ..SnapshotOptions::default()
    });
    let row = snap
        .sites
        .iter()
        .find(|s| s.site == site)
        .expect("site row");
    assert_eq!((row.live, row.spawned, row.completed), (0, N, N));
    assert_eq!(row.polls, 2 * N);
    assert!(row.busy_seconds > 0.0);
    assert!(snap.tasks.is_empty());
    assert_eq!(snap.tasks_total, 0);

    let runtime = snap.runtime.expect("runtime facts after the first poll");
    assert_eq!(runtime.workers, 2);
    assert_eq!(runtime.worker_busy_seconds.len(), 2);
}

#[test]
fn blocking_tasks_do_not_touch_site_counts() {
    const K: u64 = 7;
    let (rt, agent) = runtime();
    rt.block_on(async {
        let handles: Vec<_> = (0..K)
            .map(|i| tokio::task::spawn_blocking(move || i * 2))
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        // A plain task too, so the runtime facts get captured.
        tokio::spawn(async {}).await.unwrap(); // site: plain
    });
    // Terminate hooks run after the JoinHandle resolves.
    wait_until(|| {
        let snap = agent.snapshot();
        snap.agent.untracked_terminations >= K && snap.sites.iter().all(|s| s.live == 0)
    });

    let snap = agent.snapshot();
    assert_eq!(snap.agent.untracked_terminations, K);
    assert_eq!(
        snap.sites.len(),
        1,
        "only the plain task's site: {:?}",
        snap.sites
    );
    let row = &snap.sites[0];
    assert_eq!(row.site, site_of("// site: plain"));
    assert_eq!((row.live, row.spawned, row.completed), (0, 1, 1));

    // Worker threads end as blocking tasks at shutdown: still no site is touched.
    drop(rt);
    let snap = agent.snapshot();
    assert_eq!(snap.agent.untracked_terminations, K + 2);
    assert_eq!(snap.sites.len(), 1);
    assert_eq!(snap.sites[0].live, 0);
}

#[test]
fn a_task_inside_a_poll_is_running() {
    let (rt, agent) = runtime();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let handle = rt.spawn(async move {
        entered_tx.send(()).unwrap();
        // Blocks the worker on purpose: the poll stays in progress until released.
        release_rx.recv().unwrap();
    });
    entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let snap = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 10,
        ..SnapshotOptions::default()
    });
    assert_eq!(snap.tasks.len(), 1);
    assert_eq!(snap.tasks[0].state, TaskState::Running);
    assert_eq!(snap.tasks[0].idle_seconds, 0.0);
    release_tx.send(()).unwrap();
    rt.block_on(handle).unwrap();
    wait_until(|| agent.snapshot().sites[0].completed == 1);
    let snap = agent.snapshot();
    assert_eq!((snap.sites[0].live, snap.sites[0].polls), (0, 1));
}

#[test]
fn sites_beyond_the_cap_share_the_overflow_row() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = Agent::builder().site_capacity(2).install(&mut builder);
    let rt = builder.build().unwrap();
    rt.block_on(async {
        tokio::spawn(async {}).await.unwrap(); // site: first
        tokio::spawn(async {}).await.unwrap(); // site: second
        tokio::spawn(async {}).await.unwrap(); // site: third
        tokio::spawn(async {}).await.unwrap(); // site: fourth
    });
    wait_until(|| agent.snapshot().sites.iter().all(|s| s.live == 0));
    let snap = agent.snapshot();
    let labels: Vec<(&str, u64)> = snap
        .sites
        .iter()
        .map(|s| (s.site.as_str(), s.spawned))
        .collect();
    let (first, second) = (site_of("// site: first"), site_of("// site: second"));
    // All finished (live 0), so rows sort by label: "(overflow)" first.
    assert_eq!(
        labels,
        vec![
            (OVERFLOW_SITE, 2),
            (first.as_str(), 1),
            (second.as_str(), 1)
        ]
    );
    assert_eq!(snap.agent.overflow_spawned, 2);
    assert_eq!(snap.agent.sites_tracked, 2);
}

#[test]
fn tasks_spawned_while_the_runtime_shuts_down_are_not_left_live() {
    // A value whose drop spawns: dropped by the runtime's shutdown, it spawns into a closed
    // runtime, where tokio runs the new task's terminate hook before its spawn hook.
    struct SpawnOnDrop;
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async {}); // site: late
            }
        }
    }
    let (rt, agent) = runtime();
    for _ in 0..5 {
        let guard = SpawnOnDrop;
        rt.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
    }
    drop(rt);
    let snap = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 100,
        ..SnapshotOptions::default()
    });
    let late = snap
        .sites
        .iter()
        .find(|s| s.site == site_of("// site: late"))
        .expect("late site");
    assert_eq!((late.live, late.spawned, late.completed), (0, 5, 5));
    assert_eq!(snap.tasks_total, 0, "{:?}", snap.tasks);
    assert!(snap.tasks.is_empty());
    // Only the two worker threads end untracked.
    assert_eq!(snap.agent.untracked_terminations, 2);
}

#[test]
fn tasks_beyond_the_ring_are_tracked_exactly() {
    const N: u64 = 300;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    // 64 ring slots: most of the 300 live tasks go to the overflow map.
    let agent = Agent::builder().task_slots(64).install(&mut builder);
    let rt = builder.build().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handles: Vec<_> = rt.block_on(async {
        (0..N)
            .map(|_| {
                let mut rx = rx.clone();
                tokio::spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }) // site: many
            })
            .collect()
    });
    let site = site_of("// site: many");
    wait_until(|| {
        agent
            .snapshot()
            .sites
            .iter()
            .any(|s| s.site == site && s.polls >= N)
    });
    let snap = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 1000,
        ..SnapshotOptions::default()
    });
    assert_eq!(snap.tasks.len() as u64, N);
    assert!(snap.tasks.iter().all(|t| t.polls == 1 && t.site == site));
    tx.send(true).unwrap();
    rt.block_on(async {
        for h in handles {
            h.await.unwrap().unwrap();
        }
    });
    wait_until(|| {
        agent
            .snapshot()
            .sites
            .iter()
            .any(|s| s.site == site && s.completed == N)
    });
    let snap = agent.snapshot_with(&SnapshotOptions {
        max_tasks: 1000,
        ..SnapshotOptions::default()
    });
    let row = snap.sites.iter().find(|s| s.site == site).unwrap();
    assert_eq!(
        (row.live, row.spawned, row.completed, row.polls),
        (0, N, N, 2 * N)
    );
    assert!(snap.tasks.is_empty());
}

#[test]
fn two_agents_on_one_thread_count_apart() {
    let make = || {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all();
        let agent = taskscope::install(&mut builder);
        (builder.build().unwrap(), agent)
    };
    let (rt_a, agent_a) = make();
    let (rt_b, agent_b) = make();
    for _ in 0..3 {
        rt_a.block_on(async { tokio::spawn(async {}).await.unwrap() });
        rt_b.block_on(async {
            tokio::spawn(async {}).await.unwrap();
            tokio::spawn(async {}).await.unwrap();
        });
    }
    drop((rt_a, rt_b));
    let spawned = |a: &Agent| {
        a.snapshot()
            .sites
            .iter()
            .map(|s| (s.spawned, s.completed, s.polls))
            .fold((0, 0, 0), |x, y| (x.0 + y.0, x.1 + y.1, x.2 + y.2))
    };
    assert_eq!(spawned(&agent_a), (3, 3, 3));
    assert_eq!(spawned(&agent_b), (6, 6, 6));
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
