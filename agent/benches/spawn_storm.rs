//! Spawn-storm overhead of the taskscope agent against the same runtime without it.
//!
//! Method: every measurement runs in a fresh child process (this same binary, re-executed),
//! so no variant inherits another's heap, caches or leftover threads. A child builds a
//! 2-worker multi-thread runtime (with or without `taskscope::install`), runs a warm-up storm
//! of N/10 tasks, then times one task that spawns N tasks (each yields 4 times and returns)
//! and awaits them all, and reports the time and its peak RSS. The parent alternates the
//! variants' order every round, runs ROUNDS rounds, and prints medians and the ratio
//! taskscope / baseline. The tasks do nothing but yield: the worst case for per-task cost.
//!
//! Run: `cargo bench -p taskscope --bench spawn_storm -- [N[,N...]] [ROUNDS]`
//! (defaults: N = 200000, ROUNDS = 9). Quick mode (`--quick` or `TASKSCOPE_BENCH_QUICK=1`,
//! as CI runs it): N = 2000, 2 rounds.

use std::time::Duration;

mod common;

use common::{child_command, peak_rss_kib, quick, storm};

const VARIANTS: [&str; 2] = ["baseline", "taskscope"];

/// Child process: one variant, one size; prints "nanoseconds peak_rss_kib".
fn child(variant: &str, n: usize) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = (variant == "taskscope").then(|| taskscope::install(&mut builder));
    let rt = builder.build().expect("runtime");
    storm(&rt, n / 10);
    let elapsed = storm(&rt, n);
    if let Some(agent) = agent {
        // Keep the agent honest: it must have seen every task (2 drivers + warm-up + storm).
        drop(rt);
        let spawned: u64 = agent.snapshot().sites.iter().map(|s| s.spawned).sum();
        assert_eq!(spawned, (n + n / 10 + 2) as u64, "agent missed spawns");
    }
    println!("{} {}", elapsed.as_nanos(), peak_rss_kib());
}

fn run_child(variant: &str, n: usize) -> (Duration, u64) {
    let exe = std::env::current_exe().expect("own path");
    let out = child_command(exe)
        .args(["--child", variant, &n.to_string()])
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .map(|p| p.parse::<u64>().expect("child output"));
    let ns = parts.next().expect("time");
    let rss = parts.next().expect("rss");
    (Duration::from_nanos(ns), rss)
}

fn median<T: Ord + Copy>(mut xs: Vec<T>) -> T {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().expect("size"));
        return;
    }
    // `cargo bench` passes `--bench`; keep the rest.
    let free: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (default_size, default_rounds) = if quick() { (2_000, 2) } else { (200_000, 9) };
    let sizes: Vec<usize> = free
        .first()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![default_size]);
    let rounds: usize = free
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_rounds)
        .max(1);

    println!(
        "spawn storm: tasks x 4 yields, 2 workers, {rounds} rounds, each run a fresh process, order alternating"
    );
    println!(
        "{:>9} {:<10} {:>11} {:>10} {:>8} {:>13}",
        "tasks", "variant", "median", "per task", "ratio", "peak RSS"
    );
    for &n in &sizes {
        let mut times = vec![Vec::new(); VARIANTS.len()];
        let mut rss = vec![Vec::new(); VARIANTS.len()];
        for round in 0..rounds {
            for k in 0..VARIANTS.len() {
                let v = (k + round) % VARIANTS.len();
                let (t, r) = run_child(VARIANTS[v], n);
                times[v].push(t);
                rss[v].push(r);
            }
        }
        let base = median(times[0].clone());
        for (v, name) in VARIANTS.iter().enumerate() {
            let t = median(times[v].clone());
            println!(
                "{:>9} {:<10} {:>9.1}ms {:>8.0}ns {:>7.3}x {:>10} KiB",
                n,
                name,
                t.as_secs_f64() * 1e3,
                t.as_secs_f64() * 1e9 / n as f64,
                t.as_secs_f64() / base.as_secs_f64(),
                median(rss[v].clone())
            );
        }
        for (v, name) in VARIANTS.iter().enumerate() {
            let ms: Vec<String> = times[v]
                .iter()
                .map(|t| format!("{:.0}", t.as_secs_f64() * 1e3))
                .collect();
            println!("          {name} rounds (ms): {}", ms.join(" "));
        }
    }
}
