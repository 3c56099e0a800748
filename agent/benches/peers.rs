//! taskscope against its peers: the same runtime without any instrumentation, and
//! console-subscriber (tokio-console's instrumentation), on a spawn storm, a steady load and
//! a memory test.
//!
//! Method (as `spawn_storm.rs` and `lost_waker.rs`): every measurement runs in a fresh child
//! process (this same binary, re-executed with `--child`), so no variant inherits another's
//! heap, caches or leftover threads; the parent alternates the variants' order every round
//! and prints medians. A child builds a 2-worker multi-thread runtime and:
//!
//! - `storm`: runs a warm-up storm of N/10 tasks, then times one task that spawns N tasks
//!   (each yields 4 times and returns) and awaits them all (`common::storm`);
//! - `steady`: spawns T tasks that each loop `sleep(1 ms)` + ~50 multiply-rotates, waits
//!   1 s, then counts loop iterations over 3 s and reports iterations per second;
//! - `memory`: spawns N tasks that each await a oneshot whose sender is kept, waits until
//!   all of them have been polled and parked, then 1.5 s more (console-subscriber's
//!   aggregator drains its events at least once a second), and reports peak RSS (VmHWM).
//!   Per live task: (RSS of the variant - RSS of `bare`) / N.
//!
//! Variants, all in this one build (with feature `bench-console`, tokio has its `tracing`
//! feature in every variant, as console-subscriber needs it):
//!
//! - `bare`: the runtime alone; no agent, no subscriber (tokio's instrumentation, when
//!   compiled in, idle);
//! - `taskscope`: `taskscope::install` on the builder; no subscriber;
//! - `dial9` (feature `bench-dial9`): dial9 0.5.7, an always-on event recorder on tokio's
//!   runtime hooks, set up as its production example does (rotating trace files on disk,
//!   task tracking on; see `dial9_peer`); the rounds also report the trace it wrote;
//! - `console` (feature `bench-console`): no agent; console-subscriber as the global
//!   subscriber the way its docs set it up (`ConsoleLayer::builder().init()`: a registry
//!   with the console layer and an error-level fmt layer, default retention of 1 h,
//!   publish interval 1 s, server thread), except that the server listens on an ephemeral
//!   port (127.0.0.1:0). No console client is connected.
//!
//! console-subscriber is slow and large (tens of KB per task), so by default it only runs
//! storms of up to 200 000 tasks and memory tests of up to 100 000 tasks; larger sizes show
//! `bare` and `taskscope` only. `--console-rounds R` runs it in the first R rounds only.
//!
//! `--big-ring`: adds `ts-ring2^22` to the storm and memory rows: the agent with a ring of
//! 2^22 task slots instead of the default 2^18, so that the live tasks of a 2M storm all
//! fit the lock-free ring and none goes to the locked overflow map.
//!
//! `--floor`: adds `hooks` and `floor` to the storm and steady rows: tokio's four task hooks
//! doing nothing (`hooks`), and doing one relaxed atomic add each on one shared counter
//! (`floor`, issue #10's floor), the least a hook-based agent costs.
//!
//! `--baseline-exe PATH`: the `spawn_storm` benchmark built without any feature (so tokio
//! has no `tracing` feature); its `baseline` variant (the same storm, no agent) joins the
//! storm rounds as `bare-notr`. Ratios stay against `bare`. Storm only.
//!
//! Run: `cargo bench -p taskscope [--features bench-console,bench-dial9] --bench peers --
//! [storm|steady|memory|all]... [--rounds R] [--memory-rounds R] [--console-rounds R]
//! [--sizes N,N] [--memory-sizes N,N] [--steady-tasks T] [--console-storm-max N]
//! [--console-memory-max N] [--baseline-exe PATH] [--big-ring] [--floor]`
//! (defaults: all; 5 rounds for storm and steady, 3 for memory; storm sizes 20000,200000;
//! memory sizes 100000,1000000; T = 10000; console caps 200000 and 100000).

mod common;

use common::{child_command, peak_rss_kib, quick, steady, storm_cpu as storm};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// `n` idle tasks, each parked on a oneshot whose sender is kept; returns once all of them
/// have been polled once and 1.5 s more have passed, with the senders still alive.
///
/// The tasks are spawned in batches of 10 000, each batch parked and followed by a 100 ms
/// pause (in every variant alike). console-subscriber sends each spawn (and each oneshot,
/// a tokio resource) through a bounded channel (102 400 events) to its aggregator thread,
/// and when that channel is full it drops the event: that task is never tracked and costs
/// it nothing. The pauses let its aggregator catch up; on this 2-core machine it still
/// falls behind somewhere above ~30 000 tasks (its RSS stops growing linearly), so its
/// per-task figure is only a true per-task cost at the smaller sizes.
fn memory(rt: &tokio::runtime::Runtime, n: usize) -> Vec<tokio::sync::oneshot::Sender<()>> {
    const BATCH: usize = 10_000;
    // Quick mode (CI): the same steps with short pauses.
    let (pause, settle) = if quick() { (10, 100) } else { (100, 1500) };
    let parked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(n);
    while senders.len() < n {
        for _ in 0..BATCH.min(n - senders.len()) {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let parked = Arc::clone(&parked);
            rt.spawn(async move {
                parked.fetch_add(1, Ordering::Relaxed);
                let _ = rx.await;
            });
            senders.push(tx);
        }
        while parked.load(Ordering::Relaxed) < senders.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(pause));
    }
    std::thread::sleep(Duration::from_millis(settle));
    senders
}

/// Child process: one workload, one variant; prints "wall cpu peak_rss_kib": for the storm
/// nanoseconds of wall-clock and of CPU time, for the steady load iterations per second of
/// each, for the memory test zeros.
fn child(workload: &str, variant: &str, n: usize) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = match variant {
        "bare" => None,
        "taskscope" => Some(taskscope::install(&mut builder)),
        v if common::floor_variant(v, &mut builder) => None,
        // The agent with a ring big enough for every live task of a 2M storm (2^22 slots,
        // 128 MiB reserved), so no task goes to the locked overflow map.
        "ts-ring2^22" => Some(
            taskscope::Agent::builder()
                .task_slots(1 << 22)
                .install(&mut builder),
        ),
        #[cfg(feature = "bench-console")]
        "console" => {
            console_subscriber::ConsoleLayer::builder()
                .server_addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                .init();
            None
        }
        #[cfg(feature = "bench-dial9")]
        "dial9" => None,
        other => panic!("unknown variant {other}"),
    };
    #[cfg(feature = "bench-dial9")]
    let (rt, dial9) = if variant == "dial9" {
        let (rt, d) = dial9_peer::runtime(builder);
        (rt, Some(d))
    } else {
        (builder.build().expect("runtime"), None)
    };
    #[cfg(not(feature = "bench-dial9"))]
    let rt = builder.build().expect("runtime");
    let (wall, cpu, spawned) = match workload {
        "storm" => {
            storm(&rt, n / 10);
            let (wall, cpu) = storm(&rt, n);
            (
                wall.as_nanos() as f64,
                cpu.as_nanos() as f64,
                (n + n / 10 + 2) as u64,
            )
        }
        "steady" => {
            let (wall, cpu) = steady(&rt, n);
            (wall, cpu, n as u64)
        }
        "memory" => {
            let senders = memory(&rt, n);
            if let Some(agent) = &agent {
                let live: u64 = agent.snapshot().sites.iter().map(|s| s.live).sum();
                assert!(live >= n as u64, "agent sees {live} live tasks of {n}");
            }
            drop(senders);
            (0.0, 0.0, n as u64)
        }
        other => panic!("unknown workload {other}"),
    };
    let rss = peak_rss_kib();
    drop(rt);
    if let Some(agent) = agent {
        // Keep the agent honest: it saw every task spawned.
        let seen: u64 = agent.snapshot().sites.iter().map(|s| s.spawned).sum();
        assert_eq!(seen, spawned, "agent missed spawns");
    }
    #[cfg(feature = "bench-dial9")]
    if let Some(d) = dial9 {
        // dial9's figure also says how much trace it wrote.
        println!("{wall} {cpu} {rss} {}", dial9_peer::finish(d));
        return;
    }
    println!("{wall} {cpu} {rss}");
}

/// dial9 (feature `bench-dial9`) set up as its production example does: a recorder writing
/// to rotating files on disk (64 MiB each, 256 MiB in all), attached to the runtime with
/// task tracking on (spawn and terminate events besides polls, parks and wakes). Tasks are
/// spawned with `tokio::spawn`, as in the other variants; dial9 records them from tokio's
/// spawn hook.
#[cfg(feature = "bench-dial9")]
mod dial9_peer {
    use dial9::{Dial9HandleTokioExt, DiskBuffer, TokioAttachOptions};
    use std::path::PathBuf;
    use std::time::Duration;

    /// The recorder and where it writes.
    pub struct Dial9 {
        recorder: dial9::Recorder,
        dir: PathBuf,
    }

    pub fn runtime(builder: tokio::runtime::Builder) -> (tokio::runtime::Runtime, Dial9) {
        let dir =
            std::env::temp_dir().join(format!("taskscope-bench-dial9-{}", std::process::id()));
        let writer = DiskBuffer::builder()
            .base_path(&dir)
            .max_file_size(64 << 20)
            .max_total_size(256 << 20)
            .build()
            .expect("dial9 trace files");
        let recorder = dial9::recorder(writer).build();
        let rt = recorder
            .handle()
            .attach_tokio_runtime(
                builder,
                TokioAttachOptions::builder()
                    .task_tracking_enabled(true)
                    .build(),
            )
            .expect("dial9 runtime");
        (rt, Dial9 { recorder, dir })
    }

    /// Flushes the recorder, removes its files; returns the bytes they held.
    pub fn finish(d: Dial9) -> u64 {
        d.recorder.graceful_shutdown(Duration::from_secs(10));
        let bytes = std::fs::read_dir(&d.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let _ = std::fs::remove_dir_all(&d.dir);
        bytes
    }
}

/// A variant as run: its name in the table, the executable and its child arguments.
struct Variant {
    name: &'static str,
    exe: PathBuf,
    /// `None`: this binary's `--child WORKLOAD NAME N`; `Some(arg)`: spawn_storm's
    /// `--child arg N`, which prints "nanoseconds peak_rss_kib".
    storm_only: Option<&'static str>,
}

/// One child's answer: wall-clock and CPU figures, peak RSS in KiB.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss: f64,
    /// Bytes of trace written (dial9 only, else NaN).
    trace: f64,
}

fn run_child(v: &Variant, workload: &str, n: usize) -> Sample {
    let mut cmd = child_command(&v.exe);
    match v.storm_only {
        None => cmd.args(["--child", workload, v.name, &n.to_string()]),
        Some(arg) => cmd.args(["--child", arg, &n.to_string()]),
    };
    // console-subscriber reads RUST_LOG for its fmt layer; keep it at its default.
    cmd.env_remove("RUST_LOG");
    let out = cmd.output().expect("run child");
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
    match xs[..] {
        [wall, cpu, rss, trace] => Sample {
            wall,
            cpu,
            rss,
            trace,
        },
        [wall, cpu, rss] => Sample {
            wall,
            cpu,
            rss,
            trace: f64::NAN,
        },
        [wall, rss] => Sample {
            wall,
            cpu: f64::NAN,
            rss,
            trace: f64::NAN,
        },
        _ => panic!("child output: {text}"),
    }
}

/// `text`, or "-" when the figure is unknown (NaN: the no-tracing baseline reports no CPU).
fn known(x: f64, text: String) -> String {
    if x.is_nan() { "-".into() } else { text }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Runs `rounds` interleaved rounds of `workload` at size `n` (console only in the first
/// `console_rounds`) and prints the table; `bare` must be variant 0.
fn measure(variants: &[&Variant], workload: &str, n: usize, rounds: usize, console_rounds: usize) {
    let mut samples: Vec<Vec<Sample>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..variants.len() {
            let v = (k + round) % variants.len();
            if variants[v].name == "console" && round >= console_rounds {
                continue;
            }
            let s = run_child(variants[v], workload, n);
            samples[v].push(s);
        }
    }
    let med = |v: usize, f: fn(&Sample) -> f64| median(samples[v].iter().map(f).collect());
    let (base_wall, base_cpu, base_rss) =
        (med(0, |s| s.wall), med(0, |s| s.cpu), med(0, |s| s.rss));
    // The CPU ratio within each round (the variants of a round run back to back), then its
    // median: slow drifts of the machine over the rounds cancel out.
    let paired = |v: usize| {
        median(
            samples[v]
                .iter()
                .zip(&samples[0])
                .map(|(s, b)| s.cpu / b.cpu)
                .collect(),
        )
    };
    match workload {
        "storm" => println!(
            "{:>8} {:<10} {:>3} {:>10} {:>9} {:>8} {:>10} {:>8} {:>8} {:>10}",
            "tasks",
            "variant",
            "n",
            "wall",
            "per task",
            "ratio",
            "CPU",
            "ratio",
            "paired",
            "peak RSS"
        ),
        "steady" => println!(
            "{:>8} {:<10} {:>3} {:>12} {:>8} {:>14} {:>8} {:>8} {:>10}",
            "tasks", "variant", "n", "iter/s", "ratio", "iter/CPU-s", "ratio", "paired", "peak RSS"
        ),
        _ => println!(
            "{:>8} {:<10} {:>3} {:>12} {:>8} {:>16}",
            "tasks", "variant", "n", "peak RSS", "ratio", "vs bare per task"
        ),
    }
    for (v, var) in variants.iter().enumerate() {
        let (wall, cpu, rss) = (med(v, |s| s.wall), med(v, |s| s.cpu), med(v, |s| s.rss));
        let runs = samples[v].len();
        match workload {
            "storm" => println!(
                "{:>8} {:<10} {:>3} {:>8.1}ms {:>7.0}ns {:>7.2}x {:>10} {:>8} {:>8} {:>6.0} MiB",
                n,
                var.name,
                runs,
                wall / 1e6,
                wall / n as f64,
                wall / base_wall,
                known(cpu, format!("{:.1}ms", cpu / 1e6)),
                known(cpu, format!("{:.2}x", cpu / base_cpu)),
                known(cpu, format!("{:.2}x", paired(v))),
                rss / 1024.0
            ),
            "steady" => println!(
                "{:>8} {:<10} {:>3} {:>12.0} {:>7.3}x {:>14.0} {:>7.3}x {:>7.3}x {:>6.0} MiB",
                n,
                var.name,
                runs,
                wall,
                wall / base_wall,
                cpu,
                cpu / base_cpu,
                paired(v),
                rss / 1024.0
            ),
            _ => println!(
                "{:>8} {:<10} {:>3} {:>8.1} MiB {:>7.2}x {:>10.0} B/task",
                n,
                var.name,
                runs,
                rss / 1024.0,
                rss / base_rss,
                (rss - base_rss) * 1024.0 / n as f64
            ),
        }
    }
    for (v, var) in variants.iter().enumerate() {
        let xs: Vec<String> = samples[v]
            .iter()
            .map(|s| match workload {
                "storm" => format!(
                    "{:.0}/{}ms",
                    s.wall / 1e6,
                    known(s.cpu, format!("{:.0}", s.cpu / 1e6))
                ),
                "steady" => format!("{:.0}k/{:.0}k", s.wall / 1e3, s.cpu / 1e3),
                _ => format!("{:.1}MiB", s.rss / 1024.0),
            })
            .collect();
        let what = match workload {
            "storm" => "wall/CPU",
            "steady" => "iter/s wall/CPU",
            _ => "peak RSS",
        };
        println!("         {} rounds ({what}): {}", var.name, xs.join(" "));
        let trace: Vec<f64> = samples[v].iter().map(|s| s.trace).collect();
        if trace.iter().all(|t| !t.is_nan()) && !trace.is_empty() {
            let t = median(trace);
            println!(
                "         {} trace written (median): {:.1} MiB, {:.0} B per task",
                var.name,
                t / (1 << 20) as f64,
                t / n as f64
            );
        }
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
    const VALUED: [&str; 9] = [
        "--rounds",
        "--memory-rounds",
        "--console-rounds",
        "--sizes",
        "--memory-sizes",
        "--steady-tasks",
        "--console-storm-max",
        "--console-memory-max",
        "--baseline-exe",
    ];
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |flag: &str, default: usize| {
        value_of(flag).map_or(default, |s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{flag} takes a number"))
        })
    };
    let list = |flag: &str, default: &[usize]| {
        value_of(flag).map_or_else(
            || default.to_vec(),
            |s| {
                s.split(',')
                    .map(|x| x.parse().unwrap_or_else(|_| panic!("{flag} N,N,...")))
                    .collect::<Vec<usize>>()
            },
        )
    };
    // Quick mode (CI): one round of tiny sizes, to keep the benchmark compiling and running.
    let q = quick();
    let rounds = number("--rounds", if q { 1 } else { 5 }).max(1);
    let memory_rounds = number("--memory-rounds", if q { 1 } else { 3 }).max(1);
    let console_rounds = value_of("--console-rounds").map(|s| {
        s.parse::<usize>()
            .expect("--console-rounds takes a number")
            .max(1)
    });
    let sizes = list("--sizes", if q { &[2_000] } else { &[20_000, 200_000] });
    let memory_sizes = list(
        "--memory-sizes",
        if q { &[2_000] } else { &[100_000, 1_000_000] },
    );
    let steady_tasks = number("--steady-tasks", if q { 100 } else { 10_000 });
    let console_storm_max = number("--console-storm-max", 200_000);
    let console_memory_max = number("--console-memory-max", 100_000);
    let baseline = value_of("--baseline-exe");

    let mut skip = false;
    let free: Vec<&str> = args
        .iter()
        .filter(|a| {
            let flag_value = std::mem::replace(&mut skip, false);
            if VALUED.contains(&a.as_str()) {
                skip = true;
            }
            !flag_value && !a.starts_with("--")
        })
        .map(|a| a.as_str())
        .collect();
    let all = free.is_empty() || free.contains(&"all");
    let wants = |w: &str| all || free.contains(&w);

    let me = std::env::current_exe().expect("own path");
    let ours = |name| Variant {
        name,
        exe: me.clone(),
        storm_only: None,
    };
    let (bare, taskscope) = (ours("bare"), ours("taskscope"));
    // The floor (`--floor`, storm and steady): the four hooks empty, and with one relaxed
    // add each.
    let floors: Vec<Variant> = if args.iter().any(|a| a == "--floor") {
        vec![ours("hooks"), ours("floor")]
    } else {
        Vec::new()
    };
    // console-subscriber only where this build has it (feature `bench-console`).
    let console = cfg!(feature = "bench-console").then(|| ours("console"));
    // `--big-ring`: the agent with a 2^22-slot ring as well (storm and memory).
    let big_ring = args
        .iter()
        .any(|a| a == "--big-ring")
        .then(|| ours("ts-ring2^22"));
    // dial9 likewise (feature `bench-dial9`).
    let dial9 = cfg!(feature = "bench-dial9").then(|| ours("dial9"));
    let notracing = baseline.map(|path| Variant {
        name: "bare-notr",
        exe: path.into(),
        storm_only: Some("baseline"),
    });

    println!(
        "taskscope vs peers: 2 workers, each run a fresh process, order alternating, ratios vs bare; \
         tokio's `tracing` feature is {} in every variant of this build",
        if cfg!(feature = "bench-console") {
            "on"
        } else {
            "off"
        }
    );
    if wants("storm") {
        let r = rounds;
        println!(
            "\nstorm: N tasks x 4 yields after a warm-up storm of N/10 (medians: wall-clock time, process CPU time, peak RSS; n = runs)"
        );
        for &n in &sizes {
            let mut vs = vec![&bare, &taskscope];
            vs.extend(floors.iter());
            vs.extend(big_ring.as_ref());
            vs.extend(dial9.as_ref());
            if let Some(c) = console.as_ref().filter(|_| n <= console_storm_max) {
                vs.push(c);
            }
            if let Some(v) = &notracing {
                vs.push(v);
            }
            measure(&vs, "storm", n, r, console_rounds.unwrap_or(r));
        }
    }
    if wants("steady") {
        let r = rounds;
        println!(
            "\nsteady: T tasks looping sleep(1ms) + small work, 3 s after 1 s warm-up (medians: iterations per wall-clock second and per CPU second, peak RSS)"
        );
        let mut vs = vec![&bare, &taskscope];
        vs.extend(floors.iter());
        vs.extend(dial9.as_ref());
        vs.extend(console.as_ref());
        measure(&vs, "steady", steady_tasks, r, console_rounds.unwrap_or(r));
    }
    if wants("memory") {
        let r = memory_rounds;
        println!(
            "\nmemory: N idle tasks parked on a oneshot (medians of peak RSS; per task: (RSS - RSS of bare) / N)"
        );
        for &n in &memory_sizes {
            let mut vs = vec![&bare, &taskscope];
            vs.extend(big_ring.as_ref());
            vs.extend(dial9.as_ref());
            if let Some(c) = console.as_ref().filter(|_| n <= console_memory_max) {
                vs.push(c);
            }
            measure(&vs, "memory", n, r, console_rounds.unwrap_or(r));
        }
    }
}
