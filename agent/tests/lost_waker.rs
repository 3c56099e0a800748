//! The lost-waker layer on a real multi-thread runtime (feature `lost-waker`).
//!
//! tokio's worker threads send waker events to the global default subscriber, so the main
//! test sets it once for this binary and runs every scenario in sequence, asserting exact
//! task ids and counts. The misconfiguration test runs in a child process of its own, where
//! no global subscriber is set.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use taskscope::model::{Evidence, FindingKind};
use taskscope::waker::LostWakerLayer;
use tokio::task::JoinHandle;
use tracing_subscriber::layer::SubscriberExt;

fn id_of<T>(handle: &JoinHandle<T>) -> u64 {
    handle
        .id()
        .to_string()
        .parse()
        .expect("task ids print as integers")
}

/// Returns Pending forever. Its first poll clones the waker and drops the clone (a clone and
/// a drop event), or, with `keep`, stores the clone there (until someone clears it without
/// waking). Counts its polls.
struct Forgetful {
    polls: Arc<AtomicUsize>,
    keep: Option<Arc<Mutex<Vec<Waker>>>>,
}

impl Future for Forgetful {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let waker = cx.waker().clone();
        match &self.keep {
            Some(keep) => keep.lock().unwrap().push(waker),
            None => drop(waker),
        }
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }
}

/// Waits until `cond` holds, for at most 5 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn runtime(
    agent_builder: impl FnOnce(&mut tokio::runtime::Builder) -> taskscope::Agent,
) -> (taskscope::Agent, tokio::runtime::Runtime) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = agent_builder(&mut builder);
    (agent, builder.build().expect("runtime"))
}

#[test]
fn reports_exactly_the_tasks_no_waker_can_wake() {
    if std::env::var_os(CHILD).is_some() {
        return; // the child process runs only the misconfiguration test
    }
    let (agent, rt) = runtime(taskscope::install);
    let subscriber = tracing_subscriber::registry().with(agent.lost_waker_layer());
    tracing::subscriber::set_global_default(subscriber).expect("first global subscriber");
    let view: LostWakerLayer = agent.lost_waker_layer(); // shares the agent's table

    let polls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let kept = Arc::new(Mutex::new(Vec::new()));

    // Lost at once: polled, kept no waker.
    let lost = rt.spawn(Forgetful {
        polls: Arc::clone(&polls),
        keep: None,
    });
    // Its waker sits in `kept` until the test clears it; spawned from inside a task, so on
    // a worker thread.
    let kept_task = {
        let (polls, kept) = (Arc::clone(&polls), Arc::clone(&kept));
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let handle = tokio::spawn(Forgetful {
                polls,
                keep: Some(kept),
            });
            handle_tx.send(handle).expect("test waits");
        });
        handle_rx.recv().expect("spawner ran")
    };
    // Not lost: a oneshot whose sender is held, a long sleep, a task awaiting another's
    // JoinHandle, and a task that keeps yielding (woken by itself).
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let on_oneshot = {
        let started = Arc::clone(&started);
        rt.spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            let _ = rx.await;
        })
    };
    let sleeper = {
        let started = Arc::clone(&started);
        rt.spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
    };
    let joiner = {
        let started = Arc::clone(&started);
        rt.spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            let inner = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
            let _ = inner.await;
        })
    };
    let yielder = {
        let (started, stop) = (Arc::clone(&started), Arc::clone(&stop));
        rt.spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            while !stop.load(Ordering::Relaxed) {
                tokio::task::yield_now().await;
            }
        })
    };
    let (lost_id, kept_id) = (id_of(&lost), id_of(&kept_task));

    wait_for("first polls", || {
        polls.load(Ordering::SeqCst) == 2 && started.load(Ordering::SeqCst) == 4
    });
    wait_for("the lost task to be reported", || {
        view.zero_waker_tasks() == [lost_id]
    });
    // The others stay unreported (the yielder polls thousands of times meanwhile).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(view.zero_waker_tasks(), [lost_id]);
    // 7 tasks: the two forgetful ones, oneshot, sleeper, joiner + its inner task, yielder
    // (the kept task's spawner has finished).
    assert_eq!(view.stats().tracked, 7);

    // Dropping the stored waker without waking loses the second task too.
    kept.lock().unwrap().clear();
    let mut both = vec![lost_id, kept_id];
    both.sort_unstable();
    assert_eq!(view.zero_waker_tasks(), both);

    // The agent's snapshot turns them into findings once they have been idle a second.
    wait_for("lost-waker findings", || {
        let mut ids: Vec<u64> = agent
            .snapshot()
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::LostWaker)
            .flat_map(|f| match &f.evidence {
                Evidence::LostWaker { task_ids, .. } => task_ids.clone(),
                _ => Vec::new(),
            })
            .collect();
        ids.sort_unstable();
        ids == both
    });

    // Ending every task empties the table: finished, aborted, woken by a dropped sender.
    stop.store(true, Ordering::Relaxed);
    drop(tx);
    for h in [&lost, &kept_task, &sleeper, &joiner] {
        h.abort();
    }
    rt.block_on(async move {
        yielder.await.expect("yielder");
        on_oneshot.await.expect("oneshot waiter");
        for h in [lost, kept_task, sleeper, joiner] {
            assert!(h.await.unwrap_err().is_cancelled());
        }
        // The joiner's inner task was detached: abort did not reach it. Nor is it lost.
    });
    assert_eq!(view.stats().tracked, 1, "the joiner's detached inner sleep");
    assert!(view.zero_waker_tasks().is_empty());

    // A storm of short tasks leaves nothing behind either.
    rt.block_on(async {
        let tasks: Vec<_> = (0..2000)
            .map(|i| {
                tokio::spawn(async move {
                    for _ in 0..(i % 4) {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("storm task");
        }
    });
    let stats = view.stats();
    assert_eq!(stats.tracked, 1);
    assert_eq!(
        (
            stats.over_capacity,
            stats.unbalanced,
            stats.misrouted_threads
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(view.zero_waker_tasks().is_empty());
}

const CHILD: &str = "TASKSCOPE_LOST_WAKER_CHILD";

/// With the subscriber set only on the test thread, worker threads send waker events
/// nowhere: the counts cannot be trusted, so nothing is reported and the stats say why.
#[test]
fn a_subscriber_set_for_one_thread_only_turns_reports_off() {
    if std::env::var_os(CHILD).is_none() {
        let name = "a_subscriber_set_for_one_thread_only_turns_reports_off";
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(["--exact", name, "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        return;
    }
    let (agent, rt) = runtime(taskscope::install);
    let _scope = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(agent.lost_waker_layer()),
    );
    let view = agent.lost_waker_layer();
    let polls = Arc::new(AtomicUsize::new(0));
    // Spawned from this thread, so its span reaches the layer; polled on a worker.
    let lost = rt.spawn(Forgetful {
        polls: Arc::clone(&polls),
        keep: None,
    });
    wait_for("the first poll", || polls.load(Ordering::SeqCst) == 1);
    wait_for("the check", || view.stats().misrouted_threads > 0);
    assert_eq!(view.stats().tracked, 1);
    assert!(view.zero_waker_tasks().is_empty());
    lost.abort();
}
