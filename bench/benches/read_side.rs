//! The exporter's read side: how long a Prometheus scrape of `/metrics` and a
//! `/debug/taskscope/snapshot` take with 1 000 and 10 000 spawn sites, and the snapshot with
//! 1 000 000 live tasks (target: ≤ 100 ms).
//!
//! Method: each case runs in a fresh child process (this binary, re-executed with
//! `--child`). The child builds a 2-worker runtime with the agent, spawns idle tasks (each
//! awaits a oneshot whose sender is kept), waits until every one of them has been polled,
//! starts the real exporter (`taskscope_exporter::Exporter`) on a loopback port and then,
//! after one warm-up request per endpoint, takes ROUNDS rounds of: `GET /metrics`,
//! `GET /debug/taskscope/snapshot`, (1M case) `GET /debug/taskscope/snapshot?tasks=100000`,
//! and `Agent::snapshot()` called directly (the model alone, without JSON or HTTP). An HTTP
//! figure is the scraper's wall-clock time for a fresh connection: connect, request, read
//! to the end. Reported: median and worst over the rounds, and the body size.
//!
//! Cases: `sites 1000` and `sites 10000` (one idle task per site, each site a distinct
//! generated call site, see build.rs; the agent's `site_capacity` raised to fit), and
//! `tasks 1000000` (all from one site, default agent settings, so beyond the 2^18-slot ring
//! the overflow map holds the rest, as in a service with that many tasks).
//!
//! Run: `cargo bench -p taskscope-bench --bench read_side -- [ROUNDS]` (default 9). Quick
//! mode (`--quick` or `TASKSCOPE_BENCH_QUICK=1`, as CI runs it): 100 and 1000 sites, 20 000
//! tasks, 2 rounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use taskscope_bench::{child_command, get, median, quick, spawn_from_sites};

/// Spawns `n` idle tasks from one site inside the runtime; returns their senders once each
/// has been polled.
fn spawn_idle(rt: &tokio::runtime::Runtime, n: usize) -> Vec<tokio::sync::oneshot::Sender<()>> {
    let parked = Arc::new(AtomicUsize::new(0));
    let mut keep = Vec::with_capacity(n);
    let _enter = rt.enter();
    for _ in 0..n {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let parked = Arc::clone(&parked);
        tokio::spawn(async move {
            parked.fetch_add(1, Ordering::Relaxed);
            let _ = rx.await;
        });
        keep.push(tx);
    }
    while parked.load(Ordering::Relaxed) < n {
        std::thread::sleep(Duration::from_millis(5));
    }
    keep
}

/// Child: one case; prints one line per measurement: "NAME nanoseconds body_bytes", the
/// warm-up requests excluded.
fn child(case: &str, n: usize, rounds: usize) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = match case {
        "sites" => taskscope::Agent::builder()
            .site_capacity(n + 64)
            .install(&mut builder),
        _ => taskscope::install(&mut builder),
    };
    let rt = builder.build().expect("runtime");
    let keep = match case {
        "sites" => {
            let mut keep = Vec::with_capacity(n);
            rt.block_on(async { spawn_from_sites(n, &mut keep) });
            // Until every task was polled once, so each site has a poll histogram too.
            std::thread::sleep(Duration::from_millis(300));
            keep
        }
        "tasks" => spawn_idle(&rt, n),
        other => panic!("unknown case {other}"),
    };
    let snap = agent.snapshot();
    let live: u64 = snap.sites.iter().map(|s| s.live).sum();
    assert!(live >= n as u64, "agent sees {live} live tasks of {n}");
    if case == "sites" {
        let busy = snap.sites.iter().filter(|s| s.live > 0).count();
        assert!(busy >= n, "agent sees {busy} sites with live tasks of {n}");
    }
    let exporter = taskscope_exporter::Exporter::new(agent.clone())
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("exporter");
    let addr = exporter.local_addr();
    let mut paths = vec![
        ("metrics", "/metrics"),
        ("snapshot", "/debug/taskscope/snapshot"),
    ];
    if case == "tasks" {
        paths.push((
            "snapshot?tasks=100000",
            "/debug/taskscope/snapshot?tasks=100000",
        ));
    }
    for round in 0..=rounds {
        for &(name, path) in &paths {
            let f = get(addr, path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(f.status, 200, "{path}");
            if round > 0 {
                println!("{name} {} {}", f.took.as_nanos(), f.body_bytes);
            }
        }
        let start = Instant::now();
        let snap = agent.snapshot();
        let took = start.elapsed();
        std::hint::black_box(&snap);
        if round > 0 {
            println!("Agent::snapshot() {} 0", took.as_nanos());
        }
    }
    drop(exporter);
    drop(keep);
    drop(rt);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(
            &args[i + 1],
            args[i + 2].parse().expect("size"),
            args[i + 3].parse().expect("rounds"),
        );
        return;
    }
    let q = quick();
    let rounds: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if q { 2 } else { 9 })
        .max(1);
    let cases: &[(&str, usize)] = if q {
        &[("sites", 100), ("sites", 1_000), ("tasks", 20_000)]
    } else {
        &[("sites", 1_000), ("sites", 10_000), ("tasks", 1_000_000)]
    };
    println!(
        "exporter read side: 2-worker runtime with the agent, real exporter on loopback, \
         a fresh process per case; {rounds} rounds after a warm-up (median and worst)"
    );
    println!(
        "{:<6} {:>9} {:<24} {:>10} {:>10} {:>11}",
        "case", "n", "read", "median", "worst", "body"
    );
    let exe = std::env::current_exe().expect("own path");
    for &(case, n) in cases {
        let out = child_command(&exe)
            .args(["--child", case, &n.to_string(), &rounds.to_string()])
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "child {case} {n} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        // Rows in the order the child first printed them.
        let mut names: Vec<&str> = Vec::new();
        let mut rows: Vec<(&str, f64, f64)> = Vec::new();
        for line in text.lines() {
            let (name, rest) = line
                .rsplit_once(' ')
                .and_then(|(a, bytes)| {
                    let (name, ns) = a.rsplit_once(' ')?;
                    Some((name, (ns.parse::<f64>().ok()?, bytes.parse::<f64>().ok()?)))
                })
                .expect("child output");
            if !names.contains(&name) {
                names.push(name);
            }
            rows.push((name, rest.0, rest.1));
        }
        for name in names {
            let ns: Vec<f64> = rows.iter().filter(|r| r.0 == name).map(|r| r.1).collect();
            let bytes = rows.iter().find(|r| r.0 == name).map_or(0.0, |r| r.2);
            let worst = ns.iter().copied().fold(0.0, f64::max);
            println!(
                "{:<6} {:>9} {:<24} {:>8.2}ms {:>8.2}ms {:>7.0} KiB",
                case,
                n,
                name,
                median(ns) / 1e6,
                worst / 1e6,
                bytes / 1024.0
            );
        }
    }
}
