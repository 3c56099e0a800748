//! Uncontended cost of taskscope's instrumented locks against tokio's own.
//!
//! Method: one task on a 2-worker runtime (agent installed, so task ids and the registry
//! are as in a service) locks, bumps a counter and unlocks N times in a loop; the time per
//! iteration is the cost of an uncontended lock + unlock. Variants alternate order every
//! round, in one process (the locks are independent), medians of R rounds. Compared pairs:
//! `tokio::sync::Mutex` / `taskscope::sync::Mutex`, `tokio::sync::RwLock::read` /
//! `taskscope::sync::RwLock::read`, `std::sync::Mutex` / `taskscope::sync::blocking::Mutex`.
//!
//! Run: `cargo bench -p taskscope --bench locks -- [N] [ROUNDS]` (defaults 2000000, 9;
//! quick mode, `--quick` or `TASKSCOPE_BENCH_QUICK=1` as in CI: 20000, 3).
//! The cost of the tokio resource layer on tokio's own locks: `cargo bench -p taskscope
//! --features tokio-resources --bench locks -- --tokio-layer` (compare its "tokio" rows
//! with a run without the feature).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

type Case = (
    &'static str,
    fn(&tokio::runtime::Runtime, usize) -> Duration,
);

/// A benchmark function: one task creates the lock with `$new`, then runs `$op` on it `n`
/// times; returns the loop's time.
macro_rules! case {
    ($name:ident, $new:expr, |$l:ident| $op:expr) => {
        fn $name(rt: &tokio::runtime::Runtime, n: usize) -> Duration {
            rt.block_on(async move {
                tokio::spawn(async move {
                    let $l = $new;
                    let mut sum = 0u64;
                    let start = Instant::now();
                    for _ in 0..n {
                        sum = sum.wrapping_add($op);
                    }
                    black_box(sum);
                    start.elapsed()
                })
                .await
                .unwrap()
            })
        }
    };
}

case!(tokio_mutex, tokio::sync::Mutex::new(0u64), |m| {
    let mut g = m.lock().await;
    *g += 1;
    *g
});
case!(taskscope_mutex, taskscope::sync::Mutex::new(0u64), |m| {
    let mut g = m.lock().await;
    *g += 1;
    *g
});
case!(tokio_read, tokio::sync::RwLock::new(1u64), |l| *l
    .read()
    .await);
case!(taskscope_read, taskscope::sync::RwLock::new(1u64), |l| *l
    .read()
    .await);
case!(std_mutex, std::sync::Mutex::new(0u64), |m| {
    let mut g = m.lock().unwrap();
    *g += 1;
    *g
});
case!(
    blocking_mutex,
    taskscope::sync::blocking::Mutex::new(0u64),
    |m| {
        let mut g = m.lock().unwrap();
        *g += 1;
        *g
    }
);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (default_n, default_rounds) = if common::quick() {
        (20_000, 3)
    } else {
        (2_000_000, 9)
    };
    let n: usize = args.first().map_or(default_n, |s| s.parse().expect("N"));
    let rounds: usize = args
        .get(1)
        .map_or(default_rounds, |s| s.parse().expect("ROUNDS"))
        .max(1);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = taskscope::install(&mut builder);
    // With the `tokio-resources` feature and `--tokio-layer`, tokio's own locks run under
    // taskscope's resource layer: the "tokio" rows then show that layer's cost.
    #[cfg(feature = "tokio-resources")]
    if std::env::args().any(|a| a == "--tokio-layer") {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(agent.tokio_resource_layer());
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        println!("tokio's locks under taskscope's tokio resource layer");
    }
    let _agent = agent;
    let rt = builder.build().expect("runtime");
    let pairs: [(Case, Case); 3] = [
        (
            ("tokio Mutex", tokio_mutex),
            ("taskscope Mutex", taskscope_mutex),
        ),
        (
            ("tokio RwLock read", tokio_read),
            ("taskscope RwLock read", taskscope_read),
        ),
        (
            ("std Mutex", std_mutex),
            ("taskscope blocking Mutex", blocking_mutex),
        ),
    ];
    println!(
        "uncontended lock + unlock: {n} iterations in one task, 2 workers, {rounds} rounds, \
         order alternating (medians)"
    );
    println!("{:>26} {:>10} {:>10}", "variant", "per iter", "ratio");
    for (base, ours) in pairs {
        base.1(&rt, n / 10);
        ours.1(&rt, n / 10);
        let (mut b, mut o) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                b.push(base.1(&rt, n));
                o.push(ours.1(&rt, n));
            } else {
                o.push(ours.1(&rt, n));
                b.push(base.1(&rt, n));
            }
        }
        let (b, o) = (median(b), median(o));
        let per = |d: Duration| d.as_nanos() as f64 / n as f64;
        println!("{:>26} {:>8.1}ns {:>9.2}x", base.0, per(b), 1.0);
        println!("{:>26} {:>8.1}ns {:>9.2}x", ours.0, per(o), per(o) / per(b));
    }
}
