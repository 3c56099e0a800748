//! Instructions per task: what the agent's hooks add to one spawn + poll(s) + terminate,
//! counted by valgrind's callgrind (stable under load, unlike time on a shared machine).
//!
//! Method: a child process (this binary, `--child VARIANT TASKS CASE`) builds a
//! current-thread runtime (one thread, so the count does not depend on scheduling), with
//! `taskscope::install` or without, and one task spawns TASKS tasks, each yielding 0 or 4
//! times before it returns (case `y0`, `y4`), or sleeps 1 ms and does the steady load's
//! ~50 multiply-rotates 4 times (case `s4`, a tenth of the tasks), and awaits them all.
//! Run under `valgrind --tool=callgrind`, the child's total instruction count is read from
//! callgrind's summary. Two sizes (N1 < N2)
//! per case cancel the fixed costs (runtime, agent and valgrind start-up):
//! per task = (Ir(N2) - Ir(N1)) / (N2 - N1). With 0 yields a task is one spawn, one poll
//! and one termination; 4 yields add four polls, which gives the cost of a poll.
//! The agent's share of each case is per task(taskscope) - per task(bare). Each callgrind
//! output file is kept (the path is printed), for `callgrind_annotate --inclusive=yes FILE`
//! to show which of the agent's functions the instructions go to.
//!
//! The tasks are spawned by one driver task; with `--from-block-on` they are spawned from
//! `Runtime::block_on`'s future instead (no task: the thread holds no lane of the agent's
//! counters while spawning).
//!
//! Run: `cargo bench -p taskscope --bench hook_cost -- [N1,N2] [--cases y0,y4,s4]
//! [--from-block-on]` (default 20000,200000 and all three cases;
//! needs `valgrind`). Without valgrind, or in quick mode (`--quick` or
//! `TASKSCOPE_BENCH_QUICK=1`, as CI runs it: 200 and 2000 tasks, no valgrind), the children
//! run natively and only their time per task is shown.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Child: one runtime, one storm; prints the time it took, nanoseconds.
fn child(variant: &str, tasks: usize, case: &str) {
    // "y4": 4 yields; "s4": 4 rounds of sleep(1 ms) + the steady load's ~50 multiply-rotates.
    let sleeps = case.starts_with('s');
    let rounds: usize = case[1..].parse().expect("case: y0, y4 or s4");
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    let agent = match variant {
        "bare" => None,
        "taskscope" => Some(taskscope::install(&mut builder)),
        v if common::floor_variant(v, &mut builder) => None,
        other => panic!("unknown variant {other}"),
    };
    let rt = builder.build().expect("runtime");
    let start = Instant::now();
    // Spawned from a task (as in the storm benchmarks), so the spawner's thread holds a
    // lane; `--from-block-on` spawns from `block_on`'s future instead, which is no task.
    let storm = async move {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                tokio::spawn(async move {
                    let mut x = 1u64;
                    for _ in 0..rounds {
                        if sleeps {
                            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                            for _ in 0..50 {
                                x = std::hint::black_box(
                                    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7),
                                );
                            }
                        } else {
                            tokio::task::yield_now().await;
                        }
                    }
                    x
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
    };
    if std::env::args().any(|a| a == "--from-block-on") {
        rt.block_on(storm);
    } else {
        rt.block_on(async { tokio::spawn(storm).await.expect("driver") });
    }
    let took = start.elapsed();
    drop(rt);
    if let Some(agent) = agent {
        let spawned: u64 = agent.snapshot().sites.iter().map(|s| s.spawned).sum();
        let driver = u64::from(!std::env::args().any(|a| a == "--from-block-on"));
        assert_eq!(spawned, tasks as u64 + driver, "agent missed spawns");
    }
    println!("{}", took.as_nanos());
}

/// One measured child: instructions (under callgrind) or nanoseconds (natively).
fn run(
    exe: &PathBuf,
    callgrind: bool,
    variant: &str,
    tasks: usize,
    case: &str,
) -> (f64, Option<PathBuf>) {
    let mut args = vec![
        "--child".to_string(),
        variant.to_string(),
        tasks.to_string(),
        case.to_string(),
    ];
    if std::env::args().any(|a| a == "--from-block-on") {
        args.push("--from-block-on".to_string());
    }
    if !callgrind {
        let out = common::child_command(exe)
            .args(&args)
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("child output");
        return (ns, None);
    }
    let file =
        std::env::temp_dir().join(format!("taskscope-callgrind-{variant}-{tasks}-{case}.out"));
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(exe)
        .args(&args)
        .output()
        .expect("run valgrind");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "valgrind failed: {err}");
    // "==123== Collected : 456789"
    let ir = err
        .lines()
        .find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, n)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no instruction count in callgrind's output: {err}"));
    (ir, Some(file))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(
            &args[i + 1],
            args[i + 2].parse().expect("tasks"),
            &args[i + 3],
        );
        return;
    }
    let quick = common::quick();
    let (n1, n2) = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--cases"))
        .and_then(|(_, s)| {
            let (a, b) = s.split_once(',')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or(if quick {
            (200, 2_000)
        } else {
            (20_000, 200_000)
        });
    assert!(n1 < n2, "N1 < N2");
    let has_valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    let callgrind = has_valgrind && !quick;
    let unit = if callgrind { "instructions" } else { "ns" };
    println!(
        "per task: (count at {n2} tasks - count at {n1}) / {}, current-thread runtime; {unit}{}",
        n2 - n1,
        if callgrind {
            " (valgrind --tool=callgrind)"
        } else {
            " (no valgrind or quick mode: wall-clock time, noisy)"
        }
    );
    println!(
        "{:<10} {:>7} {:>14} {:>14} {:>12}",
        "variant", "case", "at N1", "at N2", "per task"
    );
    let exe = std::env::current_exe().expect("own path");
    let mut per = std::collections::HashMap::new();
    // y0: spawn + 1 poll + terminate; y4: 4 yields more; s4: 4 sleeps with a little work
    // (the steady load's loop; a tenth of the tasks, timers make it slower under valgrind).
    let cases: Vec<String> = args
        .iter()
        .position(|a| a == "--cases")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || vec!["y0".into(), "y4".into(), "s4".into()],
            |s| s.split(',').map(String::from).collect(),
        );
    for case in cases.iter().map(String::as_str) {
        assert!(
            matches!(case, "y0" | "y4" | "s4"),
            "--cases takes y0, y4 and s4"
        );
        let (n1, n2) = if case == "s4" {
            (n1 / 10, n2 / 10)
        } else {
            (n1, n2)
        };
        for variant in ["bare", "hooks", "floor", "taskscope"] {
            let (a, _) = run(&exe, callgrind, variant, n1, case);
            let (b, file) = run(&exe, callgrind, variant, n2, case);
            let p = (b - a) / (n2 - n1) as f64;
            per.insert((variant, case), p);
            println!(
                "{:<10} {:>7} {:>14.0} {:>14.0} {:>12.1}{}",
                variant,
                case,
                a,
                b,
                p,
                file.map_or(String::new(), |f| format!("   {}", f.display()))
            );
        }
    }
    if cases.len() < 3 {
        return;
    }
    for variant in ["taskscope", "floor", "hooks"] {
        let hook = |c| per[&(variant, c)] - per[&("bare", c)];
        println!(
            "{variant}: share per task {:.1} {unit} for spawn + 1 poll + terminate ({:.1}% of \
             bare), {:.1} per extra poll (from 4 yields: {:.1}); steady-like task (4 x sleep \
             1 ms + work): {:.1} {unit} per task, {:.1}% of bare",
            hook("y0"),
            100.0 * hook("y0") / per[&("bare", "y0")],
            (hook("y4") - hook("y0")) / 4.0,
            hook("y4"),
            hook("s4"),
            100.0 * hook("s4") / per[&("bare", "s4")]
        );
    }
}
