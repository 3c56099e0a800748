//! Cost of a task dump: how long it takes and how long the instrumented runtime stops.
//!
//! Method: a 2-worker multi-thread runtime with the agent installed holds N idle tasks (each
//! awaits a oneshot whose sender is kept), plus a ticker task that sleeps 1 ms in a loop and
//! records the largest gap between two ticks; and a probe thread outside the runtime spawns
//! a task into it every 1 ms and records the largest delay from spawn to first poll (the
//! ticker alone can be late because its timer is, the probe shows whether the workers ran
//! anything at all). Dumps are taken from a separate
//! current-thread runtime, as the exporter does. For each size: one warm-up dump (the first
//! one parses debug info), then ROUNDS dumps, 300 ms apart so that the spurious polls that
//! follow a traced dump are over; reported are the medians of the dump's `took_seconds`
//! (everything, resolving symbols included) and `paused_seconds` (tokio's `Handle::dump`),
//! and the median and worst over the rounds of the ticker's largest gap and the probe's
//! largest delay in a window from the dump's start to 300 ms after its end (how long the
//! workers really stopped, the spurious re-polls after a dump included). Registry-only dumps (`trace: false`) never call tokio's
//! dump. Each size runs in a fresh process (this binary, re-executed).
//!
//! Run: `cargo bench -p taskscope --features taskdump --bench dump -- [ROUNDS]` (default 5).
//! Quick mode (`--quick` or `TASKSCOPE_BENCH_QUICK=1`, as CI runs it): 1000 tasks traced and
//! registry-only, 1 round.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskscope::DumpOptions;

/// (tasks, traced) cases, each run in a fresh process.
const CASES: &[(usize, bool)] = &[
    (10_000, true),
    (100_000, true),
    (100_000, false),
    (1_000_000, false),
];

/// The ticker's state: nanoseconds since `origin` of the last tick, and the largest gap.
struct Ticker {
    origin: Instant,
    last: AtomicU64,
    max_gap: AtomicU64,
}

impl Ticker {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Starts a new window: the largest gap from now on.
    fn reset(&self) {
        self.last.store(self.now(), Ordering::SeqCst);
        self.max_gap.store(0, Ordering::SeqCst);
    }

    fn tick(&self) {
        let now = self.now();
        let last = self.last.swap(now, Ordering::SeqCst);
        self.max_gap
            .fetch_max(now.saturating_sub(last), Ordering::SeqCst);
    }
}

/// The quick mode's cases.
const QUICK_CASES: &[(usize, bool)] = &[(1_000, true), (1_000, false)];

/// Child process: one case; prints "took_ns paused_ns gap_ns probe_ns" per round, the
/// warm-up first.
fn child(n: usize, traced: bool, rounds: usize) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    // Room for every task in the lock-free ring (the default holds 2^18).
    let agent = taskscope::Agent::builder()
        .task_slots((n + 1000).next_power_of_two())
        .install(&mut builder);
    let rt = builder.build().expect("runtime");
    let ticker = Arc::new(Ticker {
        origin: Instant::now(),
        last: AtomicU64::new(0),
        max_gap: AtomicU64::new(0),
    });
    let senders = rt.block_on(async {
        let t = Arc::clone(&ticker);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                t.tick();
            }
        });
        let mut senders = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            senders.push(tx);
            tokio::spawn(async move {
                let _ = rx.await;
            });
        }
        senders
    });
    // The probe: spawn-to-first-poll delay of a task spawned from outside every 1 ms.
    let probe_max = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let handle = rt.handle().clone();
        let (probe_max, stop) = (Arc::clone(&probe_max), Arc::clone(&stop));
        let origin = ticker.origin;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let sent = origin.elapsed().as_nanos() as u64;
                let probe_max = Arc::clone(&probe_max);
                handle.spawn(async move {
                    let delay = (origin.elapsed().as_nanos() as u64).saturating_sub(sent);
                    probe_max.fetch_max(delay, Ordering::SeqCst);
                });
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // Let every task reach its await point.
    std::thread::sleep(Duration::from_millis(500));
    let outside = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("dump runtime");
    let options = DumpOptions {
        trace: traced,
        timeout: Duration::from_secs(60),
        ..DumpOptions::default()
    };
    for _ in 0..=rounds {
        ticker.reset();
        probe_max.store(0, Ordering::SeqCst);
        let dump = outside.block_on(agent.dump(&options)).expect("dump");
        // A gap that spans the dump's end is recorded at the next tick.
        std::thread::sleep(Duration::from_millis(300));
        let gap = ticker.max_gap.load(Ordering::SeqCst);
        let delay = probe_max.load(Ordering::SeqCst);
        assert!(dump.total_tasks as usize > n, "dump missed tasks");
        assert!(dump.complete, "{:?}", dump.notes);
        println!(
            "{} {} {} {}",
            (dump.took_seconds * 1e9) as u64,
            (dump.paused_seconds * 1e9) as u64,
            gap,
            delay
        );
    }
    stop.store(true, Ordering::Relaxed);
    probe.join().expect("probe thread");
    drop(senders);
    drop(rt);
}

fn median(mut xs: Vec<u64>) -> u64 {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(
            args[i + 1].parse().expect("tasks"),
            args[i + 2] == "traced",
            args[i + 3].parse().expect("rounds"),
        );
        return;
    }
    if !taskscope::dump::TRACING_SUPPORTED {
        eprintln!("note: no task dumps in this build (feature `taskdump`): traced rows fall back");
    }
    let rounds: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if common::quick() { 1 } else { 5 })
        .max(1);
    let cases = if common::quick() { QUICK_CASES } else { CASES };
    println!(
        "task dumps: N idle tasks on a 2-worker runtime, dumped from another runtime; \
         medians of {rounds} (after a warm-up)"
    );
    println!(
        "{:>9} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "tasks",
        "dump",
        "took",
        "paused",
        "gap med",
        "gap max",
        "probe med",
        "probe max",
        "warm-up"
    );
    let exe = std::env::current_exe().expect("own path");
    for &(n, traced) in cases {
        let kind = if traced { "traced" } else { "registry" };
        let out = common::child_command(&exe)
            .args(["--child", &n.to_string(), kind, &rounds.to_string()])
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<Vec<u64>> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        let col = |k: usize| median(rows[1..].iter().map(|r| r[k]).collect());
        let worst = |k: usize| rows[1..].iter().map(|r| r[k]).max().unwrap_or(0);
        println!(
            "{:>9} {:<9} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms",
            n,
            kind,
            ms(col(0)),
            ms(col(1)),
            ms(col(2)),
            ms(worst(2)),
            ms(col(3)),
            ms(worst(3)),
            ms(rows[0][0])
        );
    }
}
