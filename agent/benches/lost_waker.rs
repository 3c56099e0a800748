//! Cost of the lost-waker layer (feature `lost-waker`) on a spawn storm and a steady load.
//!
//! Method (as `spawn_storm.rs`): every measurement runs in a fresh child process (this same
//! binary, re-executed), the parent alternates the variants' order every round and prints
//! medians. A child builds a 2-worker multi-thread runtime with `taskscope::install` and:
//!
//! - `storm`: runs a warm-up storm of N/10 tasks, then times one task that spawns N tasks
//!   (each yields 4 times and returns) and awaits them all;
//! - `steady`: spawns T tasks that each loop `sleep(1 ms)` + ~50 multiply-rotates, waits
//!   1 s, then counts loop iterations over 3 s and reports iterations per second.
//!
//! Variants, all in this build (tokio has its `tracing` feature here):
//!
//! - `agent`: the agent alone, no subscriber (tokio's instrumentation compiled in, idle);
//! - `registry`: plus a `tracing_subscriber` registry with a do-nothing layer filtered to
//!   the same callsites as the lost-waker layer: the cost of tracing's own span machinery
//!   (a span per task, enter/exit per poll, an event per waker operation);
//! - `lost-waker`: plus [`LostWakerLayer`] instead of the do-nothing layer.
//!
//! tokio's `tracing` feature changes tokio for the whole build, so the un-instrumented
//! baseline comes from another build of this same file without the feature: pass
//! `--baseline-exe PATH` and its `agent` variant joins the rounds as `no-tracing` (see the
//! README section for how to build it). Ratios are against `no-tracing` when present, else
//! against `agent`.
//!
//! Run: `cargo bench -p taskscope --features lost-waker --bench lost_waker --
//! [storm|steady|all] [ROUNDS] [--baseline-exe PATH] [--tasks N] [--steady-tasks T]`
//! (defaults: all, 9 rounds for the storm and 5 for the steady load, N = 200000,
//! T = 10000). Quick mode (`--quick` or `TASKSCOPE_BENCH_QUICK=1`, as CI runs it): 1 round,
//! N = 2000, T = 100, a 200 ms steady window.

mod common;

use common::{child_command, peak_rss_kib, quick, steady, storm_cpu as storm};

#[cfg(feature = "lost-waker")]
mod layers {
    use tracing::Metadata;
    use tracing::subscriber::Interest;
    use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};

    /// The same callsites the lost-waker layer asks for.
    struct TaskEvents;

    fn wants(meta: &Metadata<'_>) -> bool {
        match meta.target() {
            "tokio::task" => meta.is_span() && meta.name() == "runtime.spawn",
            "tokio::task::waker" => meta.is_event(),
            _ => false,
        }
    }

    impl<S> Filter<S> for TaskEvents {
        fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
            wants(meta)
        }
        fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
            if wants(meta) {
                Interest::always()
            } else {
                Interest::never()
            }
        }
        fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
            Some(tracing_subscriber::filter::LevelFilter::TRACE)
        }
    }

    struct Nothing;
    impl<S: tracing::Subscriber> Layer<S> for Nothing {}

    /// Sets the variant's global subscriber; the layer handle to check afterwards, if any.
    pub fn install(
        variant: &str,
        agent: &taskscope::Agent,
    ) -> Option<taskscope::waker::LostWakerLayer> {
        match variant {
            "registry" => {
                let s = tracing_subscriber::registry().with(Nothing.with_filter(TaskEvents));
                tracing::subscriber::set_global_default(s).expect("subscriber");
                None
            }
            "lost-waker" => {
                let s = tracing_subscriber::registry().with(agent.lost_waker_layer());
                tracing::subscriber::set_global_default(s).expect("subscriber");
                Some(agent.lost_waker_layer())
            }
            _ => None,
        }
    }
}

/// Child process: one workload, one variant; prints "wall cpu peak_rss_kib": for the storm
/// nanoseconds of wall-clock and of CPU time, for the steady load iterations per second of
/// each.
fn child(workload: &str, variant: &str, n: usize) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = taskscope::install(&mut builder);
    #[cfg(feature = "lost-waker")]
    let layer = layers::install(variant, &agent);
    #[cfg(not(feature = "lost-waker"))]
    assert_eq!(variant, "agent", "this build has no lost-waker layer");
    let rt = builder.build().expect("runtime");
    let (wall, cpu) = match workload {
        "storm" => {
            storm(&rt, n / 10);
            let (wall, cpu) = storm(&rt, n);
            drop(rt);
            let spawned: u64 = agent.snapshot().sites.iter().map(|s| s.spawned).sum();
            assert_eq!(spawned, (n + n / 10 + 2) as u64, "agent missed spawns");
            (wall.as_nanos() as f64, cpu.as_nanos() as f64)
        }
        "steady" => {
            let rates = steady(&rt, n);
            drop(rt);
            rates
        }
        other => panic!("unknown workload {other}"),
    };
    #[cfg(feature = "lost-waker")]
    if let Some(layer) = layer {
        // Keep the layer honest: it saw every task end, and every waker event added up.
        let s = layer.stats();
        assert_eq!(
            (
                s.tracked,
                s.over_capacity,
                s.unbalanced,
                s.misrouted_threads
            ),
            (0, 0, 0, 0),
            "{s:?}"
        );
    }
    println!("{wall} {cpu} {}", peak_rss_kib());
}

/// A variant as run: its name in the table, the executable and the variant it runs there.
struct Variant {
    name: &'static str,
    exe: std::path::PathBuf,
    arg: &'static str,
}

/// One child's answer: wall-clock and CPU figures, peak RSS in KiB.
struct Sample {
    wall: f64,
    cpu: f64,
    rss: f64,
}

fn run_child(v: &Variant, workload: &str, n: usize) -> Sample {
    let out = child_command(&v.exe)
        .args(["--child", workload, v.arg, &n.to_string()])
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child {} failed: {}",
        v.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let xs: Vec<f64> = text
        .split_whitespace()
        .map(|p| p.parse().expect("child output"))
        .collect();
    let [wall, cpu, rss] = xs[..] else {
        panic!("child output: {text}");
    };
    Sample { wall, cpu, rss }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn measure(variants: &[Variant], workload: &str, n: usize, rounds: usize) {
    let mut samples: Vec<Vec<Sample>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..variants.len() {
            let v = (k + round) % variants.len();
            samples[v].push(run_child(&variants[v], workload, n));
        }
    }
    let med = |v: usize, f: fn(&Sample) -> f64| median(samples[v].iter().map(f).collect());
    let (base_wall, base_cpu) = (med(0, |s| s.wall), med(0, |s| s.cpu));
    let storm = workload == "storm";
    if storm {
        println!(
            "{:>8} {:<11} {:>10} {:>9} {:>7} {:>10} {:>9} {:>7} {:>10}",
            "tasks", "variant", "wall", "per task", "ratio", "CPU", "per task", "ratio", "peak RSS"
        );
    } else {
        println!(
            "{:>8} {:<11} {:>12} {:>7} {:>14} {:>7} {:>10}",
            "tasks", "variant", "iter/s", "ratio", "iter/CPU-s", "ratio", "peak RSS"
        );
    }
    for (v, var) in variants.iter().enumerate() {
        let (wall, cpu, rss) = (med(v, |s| s.wall), med(v, |s| s.cpu), med(v, |s| s.rss));
        if storm {
            println!(
                "{:>8} {:<11} {:>8.1}ms {:>7.0}ns {:>6.2}x {:>8.1}ms {:>7.0}ns {:>6.2}x {:>6.0} MiB",
                n,
                var.name,
                wall / 1e6,
                wall / n as f64,
                wall / base_wall,
                cpu / 1e6,
                cpu / n as f64,
                cpu / base_cpu,
                rss / 1024.0
            );
        } else {
            println!(
                "{:>8} {:<11} {:>12.0} {:>6.2}x {:>14.0} {:>6.2}x {:>6.0} MiB",
                n,
                var.name,
                wall,
                wall / base_wall,
                cpu,
                cpu / base_cpu,
                rss / 1024.0
            );
        }
    }
    for (v, var) in variants.iter().enumerate() {
        let xs: Vec<String> = samples[v]
            .iter()
            .map(|s| {
                if storm {
                    format!("{:.0}/{:.0}ms", s.wall / 1e6, s.cpu / 1e6)
                } else {
                    format!("{:.0}k/{:.0}k", s.wall / 1e3, s.cpu / 1e3)
                }
            })
            .collect();
        println!("         {} rounds (wall/CPU): {}", var.name, xs.join(" "));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(
            &args[i + 1],
            &args[i + 2],
            args[i + 3].parse().expect("size"),
        );
        return;
    }
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let baseline = value_of("--baseline-exe");
    let q = quick();
    let tasks: usize = value_of("--tasks").map_or(if q { 2_000 } else { 200_000 }, |s| {
        s.parse().expect("--tasks N")
    });
    let steady_tasks: usize = value_of("--steady-tasks")
        .map_or(if q { 100 } else { 10_000 }, |s| {
            s.parse().expect("--steady-tasks T")
        });
    let mut skip = false;
    let free: Vec<&String> = args
        .iter()
        .filter(|a| {
            let flag_value = std::mem::replace(&mut skip, false);
            if matches!(a.as_str(), "--baseline-exe" | "--tasks" | "--steady-tasks") {
                skip = true;
            }
            !flag_value && !a.starts_with("--")
        })
        .collect();
    let workload = free.first().map_or("all", |s| s.as_str());
    let rounds: Option<usize> = free.get(1).and_then(|s| s.parse().ok()).or(q.then_some(1));

    let me = std::env::current_exe().expect("own path");
    let mut variants = Vec::new();
    if let Some(path) = baseline {
        variants.push(Variant {
            name: "no-tracing",
            exe: path.into(),
            arg: "agent",
        });
    }
    let ours: &[&'static str] = if cfg!(feature = "lost-waker") {
        &["agent", "registry", "lost-waker"]
    } else {
        &["agent"]
    };
    for &arg in ours {
        variants.push(Variant {
            name: arg,
            exe: me.clone(),
            arg,
        });
    }

    println!(
        "lost-waker layer cost: 2 workers, each run a fresh process, order alternating; ratio vs {}",
        variants[0].name
    );
    if matches!(workload, "storm" | "all") {
        let r = rounds.unwrap_or(9).max(1);
        println!(
            "spawn storm: N tasks x 4 yields, {r} rounds (medians: wall-clock time, process CPU time, peak RSS)"
        );
        measure(&variants, "storm", tasks, r);
    }
    if matches!(workload, "steady" | "all") {
        let r = rounds.unwrap_or(5).max(1);
        println!(
            "steady: T tasks looping sleep(1ms) + small work, 3 s after 1 s warm-up, {r} rounds (medians: iterations per wall-clock second and per CPU second, peak RSS)"
        );
        measure(&variants, "steady", steady_tasks, r);
    }
}
