//! Spawn-storm overhead of the taskscope agent against the same runtime without it.
//!
//! Method: for each round, and for each variant in alternating order, build a fresh
//! 2-worker multi-thread runtime (with or without `taskscope::install`), then time one task
//! that spawns N tasks (each yields 4 times and returns) and awaits them all. Both variants
//! run in the same process, interleaved, so machine noise hits both alike. Reports the
//! median over rounds and the ratio taskscope / baseline.
//!
//! Run: `cargo bench -p taskscope --bench spawn_storm -- [N] [ROUNDS]`
//! (defaults: N = 200000, ROUNDS = 7).

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    Baseline,
    Taskscope,
}

fn storm(variant: Variant, n: usize) -> Duration {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = (variant == Variant::Taskscope).then(|| taskscope::install(&mut builder));
    let rt = builder.build().expect("runtime");
    let elapsed = rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    tokio::spawn(async {
                        for _ in 0..4 {
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("task");
            }
            start.elapsed()
        })
        .await
        .expect("driver")
    });
    if let Some(agent) = agent {
        // Keep the agent honest: it must have seen every task.
        let snap = agent.snapshot();
        let spawned: u64 = snap.sites.iter().map(|s| s.spawned).sum();
        assert_eq!(spawned, n as u64 + 1, "agent missed spawns");
    }
    elapsed
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; keep only numeric arguments.
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = nums.first().copied().unwrap_or(200_000);
    let rounds = nums.get(1).copied().unwrap_or(7).max(1);

    // Warm-up: page in the allocator and both code paths.
    storm(Variant::Baseline, n / 10);
    storm(Variant::Taskscope, n / 10);

    let mut base = Vec::new();
    let mut ts = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Variant::Baseline, Variant::Taskscope]
        } else {
            [Variant::Taskscope, Variant::Baseline]
        };
        for v in order {
            let t = storm(v, n);
            match v {
                Variant::Baseline => base.push(t),
                Variant::Taskscope => ts.push(t),
            }
        }
    }
    let (b, t) = (median(base.clone()), median(ts.clone()));
    println!("spawn storm: {n} tasks x 4 yields, 2 workers, {rounds} rounds interleaved");
    println!(
        "{:<12} {:>12} {:>14} {:>8}",
        "variant", "median", "per task", "ratio"
    );
    for (name, d) in [("baseline", b), ("taskscope", t)] {
        println!(
            "{:<12} {:>10.1}ms {:>12.0}ns {:>7.3}x",
            name,
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e9 / n as f64,
            d.as_secs_f64() / b.as_secs_f64()
        );
    }
    println!("rounds baseline:  {:?}", base);
    println!("rounds taskscope: {:?}", ts);
}
