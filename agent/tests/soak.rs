//! Churn soak: at least 10k tasks spawned and finished per second at several sites, with
//! faults switched on and off (a burst of leaked waiters, panicking tasks, aborted tasks,
//! a contended lock), while the agent is read like an exporter would. At the end the counts
//! are exact (per site: spawned equals what the test spawned, spawned - completed = live,
//! live equals the tasks really alive) and the process's memory is flat.
//!
//! CI runs 20 s in a debug build. The long run (figures in docs/SOAK.md):
//! `TASKSCOPE_SOAK_SECS=600 cargo test --release -p taskscope --test soak -- --nocapture`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskscope::SnapshotOptions;
use taskscope::model::Snapshot;

const SOURCE: &str = include_str!("soak.rs");

/// Tasks spawned per 10 ms tick, spread over the churn sites: 12k per second.
const PER_TICK: u64 = 120;
/// Long-lived tasks alive for the whole run.
const RESIDENT: u64 = 50;
/// Waiters leaked while the leak fault is on, released when it goes off.
const LEAK_BURST: u64 = 2_000;
/// One fault cycle: on for half, off for half.
const CYCLE: Duration = Duration::from_secs(4);

/// `file:line:col` of the spawn on the line carrying `marker`.
fn site_of(marker: &str) -> String {
    let (idx, line) = SOURCE
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker) && !l.contains("site_of("))
        .unwrap_or_else(|| panic!("marker {marker} not found"));
    // `tokio::spawn(` is located at `tokio`; a method call (`rt.spawn(`) at its name.
    let col = line
        .find("tokio::spawn(")
        .or_else(|| line.find("spawn("))
        .expect("spawn on marker line")
        + 1;
    format!("agent/tests/soak.rs:{}:{}", idx + 1, col)
}

/// Resident set size of this process, bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm resident field");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

/// What the test itself spawned, per site.
#[derive(Default)]
struct Spawned {
    quick: AtomicU64,
    sleepy: AtomicU64,
    panicky: AtomicU64,
    aborted: AtomicU64,
    locker: AtomicU64,
    leaked: AtomicU64,
    panics: AtomicU64,
}

#[test]
fn churn_keeps_counts_exact_and_memory_flat() {
    let secs: u64 = std::env::var("TASKSCOPE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(8);
    // Panics are part of the churn; keep their messages out of the test output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"churn fault") {
            default_hook(info);
        }
    }));

    // The live-task ring is allocated zeroed and its pages are touched as task ids sweep
    // through it (ids only grow), so RSS rises by up to its size (32 B a slot) during the
    // first sweep and then stays. Short runs use a small ring so the sweep fits in the
    // warm-up; long ones the default (2^18 slots, 8 MiB, swept in ~21 s at 12k tasks/s).
    let slots = if secs >= 120 {
        taskscope::DEFAULT_TASK_SLOTS
    } else {
        1 << 14
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = taskscope::Agent::builder()
        .task_slots(slots)
        .install(&mut builder);
    let rt = builder.build().unwrap();

    let spawned = Arc::new(Spawned::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (resident_tx, resident_rx) = tokio::sync::watch::channel(false);
    for _ in 0..RESIDENT {
        let mut rx = resident_rx.clone();
        rt.spawn(async move { rx.wait_for(|done| *done).await.map(|_| ()) }); // site: resident
    }

    // A reader like the exporter: snapshots with tasks, all along.
    let reader = {
        let agent = agent.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let snap = agent.snapshot_with(&SnapshotOptions {
                    max_tasks: 1000,
                    ..SnapshotOptions::default()
                });
                assert!(snap.tasks.len() <= 1000);
                reads += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            reads
        })
    };

    let started = Instant::now();
    let run_for = Duration::from_secs(secs);
    let lock = Arc::new(taskscope::sync::Mutex::new(0u64));
    // RSS in each fault-off half cycle (same phase, so comparable).
    let mut rss_off: Vec<(f64, u64)> = Vec::new();
    let driver = {
        let spawned = Arc::clone(&spawned);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut leak: Option<tokio::sync::watch::Sender<bool>> = None;
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let elapsed = started.elapsed();
                if elapsed >= run_for {
                    break;
                }
                let fault_on = (elapsed.as_millis() / (CYCLE.as_millis() / 2)) % 2 == 1;
                match (fault_on, leak.is_some()) {
                    (true, false) => {
                        let (tx, rx) = tokio::sync::watch::channel(false);
                        for _ in 0..LEAK_BURST {
                            let mut rx = rx.clone();
                            tokio::spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }); // site: leaked
                        }
                        spawned.leaked.fetch_add(LEAK_BURST, Ordering::Relaxed);
                        leak = Some(tx);
                    }
                    (false, true) => {
                        let _ = leak.take().map(|tx| tx.send(true));
                    }
                    _ => {}
                }
                for _ in 0..PER_TICK {
                    n += 1;
                    match n % 10 {
                        0..=5 => {
                            tokio::spawn(async { tokio::task::yield_now().await }); // site: quick
                            spawned.quick.fetch_add(1, Ordering::Relaxed);
                        }
                        6 | 7 => {
                            tokio::spawn(tokio::time::sleep(Duration::from_millis(1))); // site: sleepy
                            spawned.sleepy.fetch_add(1, Ordering::Relaxed);
                        }
                        8 => {
                            let lock = Arc::clone(&lock);
                            tokio::spawn(async move { *lock.lock().await += 1 }); // site: locker
                            spawned.locker.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            // While the fault is on, one in 10 of these panics; the rest are
                            // aborted before they finish.
                            if fault_on {
                                tokio::spawn(async { panic!("churn fault") }); // site: panicky
                                spawned.panicky.fetch_add(1, Ordering::Relaxed);
                                spawned.panics.fetch_add(1, Ordering::Relaxed);
                            } else {
                                let h = tokio::spawn(std::future::pending::<()>()); // site: aborted
                                spawned.aborted.fetch_add(1, Ordering::Relaxed);
                                h.abort();
                            }
                        }
                    }
                }
            }
            if let Some(tx) = leak.take() {
                let _ = tx.send(true);
            }
        })
    };

    // Sample RSS in the middle of each fault-off half cycle (the leaked burst released
    // half a second before), the median of ten readings 50 ms apart, from this thread.
    let mut cycle_start = CYCLE;
    while cycle_start + CYCLE / 2 <= run_for {
        let from = cycle_start + Duration::from_millis(500);
        std::thread::sleep(from.saturating_sub(started.elapsed()));
        let mut readings: Vec<u64> = (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                rss_bytes()
            })
            .collect();
        readings.sort_unstable();
        rss_off.push((from.as_secs_f64(), readings[5]));
        cycle_start += CYCLE;
    }
    std::thread::sleep(run_for.saturating_sub(started.elapsed()));
    rt.block_on(driver).unwrap();
    let elapsed = started.elapsed().as_secs_f64();

    // Quiesce: every churn task finishes; only the residents stay.
    let sites: Vec<(String, &AtomicU64, u64)> = vec![
        (site_of("// site: quick"), &spawned.quick, 0),
        (site_of("// site: sleepy"), &spawned.sleepy, 0),
        (site_of("// site: locker"), &spawned.locker, 0),
        (site_of("// site: panicky"), &spawned.panicky, 0),
        (site_of("// site: aborted"), &spawned.aborted, 0),
        (site_of("// site: leaked"), &spawned.leaked, 0),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let snap: Snapshot = loop {
        let snap = agent.snapshot();
        let settled = sites.iter().all(|(site, _, live)| {
            snap.sites
                .iter()
                .find(|r| &r.site == site)
                .is_some_and(|r| r.live == *live)
        });
        if settled {
            break snap;
        }
        assert!(Instant::now() < deadline, "never settled: {:?}", snap.sites);
        std::thread::sleep(Duration::from_millis(50));
    };
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader never panicked");

    let row = |site: &str| snap.sites.iter().find(|r| r.site == site).unwrap();
    let mut total = 0;
    for (site, count, live) in &sites {
        let r = row(site);
        let want = count.load(Ordering::Relaxed);
        total += want;
        assert_eq!(
            (r.spawned, r.live, r.spawned - r.completed),
            (want, *live, *live),
            "{site}"
        );
    }
    let resident = row(&site_of("// site: resident"));
    assert_eq!((resident.spawned, resident.live), (RESIDENT, RESIDENT));
    assert_eq!(
        row(&site_of("// site: panicky")).panicked,
        spawned.panics.load(Ordering::Relaxed)
    );
    assert_eq!(row(&site_of("// site: quick")).panicked, 0);
    assert_eq!(snap.tasks_total, RESIDENT);
    // Nothing went to the overflow row or was lost.
    assert_eq!(snap.agent.overflow_spawned, 0);

    // Memory: RSS at the same phase of each cycle, after a warm-up (a quarter of the run,
    // at least one cycle, and at least two sweeps of the ring), stays within 5% of the first
    // sample after it.
    let sweep = 2.0 * slots as f64 / (total as f64 / elapsed);
    let warm = (secs as f64 / 4.0).max(CYCLE.as_secs_f64()).max(sweep);
    let after: Vec<u64> = rss_off
        .iter()
        .filter(|(t, _)| *t > warm)
        .map(|(_, r)| *r)
        .collect();
    println!(
        "soak: {secs} s, {total} tasks ({:.0}/s), {reads} snapshots read, RSS at fault-off \
         points (MiB): {:?}",
        total as f64 / elapsed,
        rss_off
            .iter()
            .map(|(t, r)| format!("{t:.0}s:{:.1}", *r as f64 / 1048576.0))
            .collect::<Vec<_>>()
    );
    assert!(after.len() >= 2, "too short to compare memory: {rss_off:?}");
    let base = after[0] as f64;
    let worst = *after.iter().max().unwrap() as f64;
    assert!(
        worst <= base * 1.05,
        "memory grew {:.1}% after warm-up: {rss_off:?}",
        (worst / base - 1.0) * 100.0
    );
    resident_tx.send(true).unwrap();
}
