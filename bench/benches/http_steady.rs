//! Steady HTTP: a small axum service under a constant load, with and without the taskscope
//! agent: throughput and latency percentiles (targets: throughput ≥ 0.98x, p99 ≤ 1.05x).
//!
//! The demo service always runs with the agent (it is built around it), so the comparison
//! is this small service instead, in one build, with the agent installed or not. Its one
//! route, `GET /work`, does what a handler of the demo does in small: it spawns two tasks
//! (each yields once and hashes a few hundred bytes), awaits both and answers with a short
//! JSON body; every request therefore spawns, polls and ends two tasks besides the
//! connection's own.
//!
//! Variants, each a fresh child process (this binary, re-executed with `--child`), a
//! 2-worker runtime:
//!
//! - `bare`: the service alone;
//! - `taskscope`: `taskscope::install` on the builder and the exporter on a loopback port,
//!   scraped (`GET /metrics`) once a second during the run, as a monitored service is;
//! - `dial9` (feature `bench-dial9`): dial9 0.5.7 recording to rotating files, task tracking
//!   on, as in `agent/benches/peers.rs`.
//!
//! Load: `wrk` (Debian package `wrk`) with 1 thread and C connections for D seconds after a
//! 1 s warm-up, `--latency` for the percentiles; without wrk on the PATH, or with
//! `--loader builtin`, a built-in closed-loop loader (C threads, one keep-alive connection
//! each, every latency recorded). The loader shares the 2 cores with the service, alike for
//! every variant. Rounds interleave the variants, the order rotating each round.
//!
//! Run: `cargo bench -p taskscope-bench --bench http_steady -- [--rounds R] [--secs D]
//! [--connections C] [--loader wrk|builtin]` (defaults: 5 rounds, 5 s, 32 connections,
//! wrk when installed). Quick mode (`--quick` or `TASKSCOPE_BENCH_QUICK=1`, as CI runs it):
//! 1 round of 1 s, built-in loader, 4 connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use taskscope_bench::{child_command, cpu_time, median, peak_rss_kib, quick};

/// Requests the service answered (warm-up included).
static SERVED: AtomicU64 = AtomicU64::new(0);

/// The variants, in the order of the first round (`dial9` with feature `bench-dial9`).
const VARIANTS: &[&str] = if cfg!(feature = "bench-dial9") {
    &["bare", "taskscope", "dial9"]
} else {
    &["bare", "taskscope"]
};

/// A little CPU work: FNV-1a over `len` bytes derived from `seed`.
fn hash(seed: u64, len: usize) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for i in 0..len as u64 {
        h = (h ^ (i & 0xff)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

async fn work() -> String {
    SERVED.fetch_add(1, Ordering::Relaxed);
    let a = tokio::spawn(async {
        tokio::task::yield_now().await;
        hash(1, 256)
    });
    let b = tokio::spawn(async {
        tokio::task::yield_now().await;
        hash(2, 256)
    });
    let (a, b) = (a.await.unwrap_or(0), b.await.unwrap_or(0));
    format!("{{\"a\":{a},\"b\":{b}}}")
}

/// Child: serves until its stdin closes; prints "ADDR EXPORTER_ADDR|-" first, and at the
/// end "tasks_seen peak_rss_kib".
fn child(variant: &str) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = match variant {
        "bare" => None,
        "taskscope" => Some(taskscope::install(&mut builder)),
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
    let exporter = agent.as_ref().map(|a| {
        taskscope_exporter::Exporter::new(a.clone())
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("exporter")
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("listen");
    let addr = listener.local_addr().expect("address");
    let app = Router::new().route("/work", get(work));
    rt.spawn(async move { axum::serve(listener, app).await });
    println!(
        "{addr} {}",
        exporter
            .as_ref()
            .map_or("-".to_string(), |e| e.local_addr().to_string())
    );
    std::io::stdout().flush().expect("stdout");
    // Serve until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let seen = agent.map_or(0, |a| {
        a.snapshot().sites.iter().map(|s| s.spawned).sum::<u64>()
    });
    // CPU per request is steadier than throughput on a loaded machine: other processes
    // take CPU away from the service, they do not make its requests cost more.
    println!(
        "{seen} {} {} {}",
        peak_rss_kib(),
        SERVED.load(Ordering::Relaxed),
        cpu_time().as_nanos()
    );
    drop(exporter);
    rt.shutdown_timeout(Duration::from_secs(1));
    #[cfg(feature = "bench-dial9")]
    if let Some(d) = dial9 {
        dial9_peer::finish(d);
    }
}

/// dial9 (feature `bench-dial9`) as in `agent/benches/peers.rs`: its production example's
/// setup (rotating trace files on disk, 64 MiB each, 256 MiB in all), task tracking on.
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
        let dir = std::env::temp_dir().join(format!("taskscope-http-dial9-{}", std::process::id()));
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

    /// Flushes the recorder and removes its files.
    pub fn finish(d: Dial9) {
        d.recorder.graceful_shutdown(Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&d.dir);
    }
}

/// What one load run measured.
#[derive(Debug, Clone, Copy)]
struct Load {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// The service's CPU time over all requests it served, warm-up included (µs).
    cpu_us_per_req: f64,
}

/// wrk's latency figure ("1.23ms", "870.00us", "1.02s") in microseconds.
fn wrk_micros(text: &str) -> Option<f64> {
    let (num, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let x: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => x,
        "ms" => x * 1e3,
        "s" => x * 1e6,
        "m" => x * 60e6,
        _ => return None,
    })
}

fn run_wrk(url: &str, connections: usize, secs: u64) -> Load {
    let out = std::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "the service answered errors: {text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output: {text}"))
    };
    Load {
        rps: field("Requests/sec:").parse().expect("Requests/sec"),
        p50_us: wrk_micros(&field("50%")).expect("50%"),
        p99_us: wrk_micros(&field("99%")).expect("99%"),
        cpu_us_per_req: f64::NAN,
    }
}

/// One keep-alive connection's closed loop: request, read the answer (Content-Length
/// bodies), record the latency; until `stop`.
fn builtin_connection(addr: SocketAddr, stop: &AtomicBool) -> Vec<u32> {
    let mut lat = Vec::new();
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let request = format!("GET /work HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        writer.write_all(request.as_bytes()).expect("send");
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).expect("read header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if line.starts_with("HTTP/") {
                assert!(line.contains(" 200 "), "answer: {line}");
            }
            if let Some(v) = line
                .to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
            {
                length = v.parse().expect("content-length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("read body");
        lat.push(start.elapsed().as_micros() as u32);
    }
    lat
}

fn run_builtin(addr: SocketAddr, connections: usize, secs: u64) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || builtin_connection(addr, &stop))
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("loader thread"))
        .collect();
    let took = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let at = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)));
    Load {
        rps: all.len() as f64 / took,
        p50_us: at(0.50).copied().unwrap_or(0) as f64,
        p99_us: at(0.99).copied().unwrap_or(0) as f64,
        cpu_us_per_req: f64::NAN,
    }
}

/// A running service child and its addresses.
struct Service {
    child: Child,
    addr: SocketAddr,
    exporter: Option<SocketAddr>,
}

fn start(variant: &str) -> Service {
    let exe = std::env::current_exe().expect("own path");
    let mut child = child_command(exe)
        .args(["--child", variant])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the service");
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut first)
        .expect("the service's address");
    let mut parts = first.split_whitespace();
    let addr = parts.next().and_then(|a| a.parse().ok()).expect("address");
    let exporter = parts.next().and_then(|a| a.parse().ok());
    Service {
        child,
        addr,
        exporter,
    }
}

/// Closes the child's stdin and returns its closing line: (tasks the agent saw, peak RSS KiB).
fn stop(mut service: Service) -> (u64, u64, u64, u64) {
    drop(service.child.stdin.take());
    let mut rest = String::new();
    service
        .child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut rest)
        .expect("child output");
    let status = service.child.wait().expect("wait for the service");
    assert!(status.success(), "service failed");
    let xs: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().expect("child output"))
        .collect();
    match xs[..] {
        [seen, rss, served, cpu_ns] => (seen, rss, served, cpu_ns),
        _ => panic!("service output: {rest}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1]);
        return;
    }
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let q = quick();
    let number = |flag: &str, default: usize| {
        value_of(flag).map_or(default, |s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{flag} takes a number"))
        })
    };
    let rounds = number("--rounds", if q { 1 } else { 5 }).max(1);
    let secs = number("--secs", if q { 1 } else { 5 }).max(1) as u64;
    let connections = number("--connections", if q { 4 } else { 32 }).max(1);
    let has_wrk = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    let loader = value_of("--loader")
        .unwrap_or_else(|| if has_wrk && !q { "wrk" } else { "builtin" }.to_string());
    assert!(
        matches!(loader.as_str(), "wrk" | "builtin"),
        "--loader wrk|builtin"
    );
    println!(
        "steady HTTP: GET /work (2 spawned tasks per request), 2-worker service, loader {loader} \
         with {connections} connections, {secs} s after 1 s warm-up, {rounds} rounds, \
         a fresh process per run, order rotating"
    );
    let load = |addr: SocketAddr, secs: u64| {
        if loader == "wrk" {
            run_wrk(&format!("http://{addr}/work"), connections, secs)
        } else {
            run_builtin(addr, connections, secs)
        }
    };
    let mut samples: Vec<Vec<Load>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    let mut scrapes = 0usize;
    for round in 0..rounds {
        for k in 0..VARIANTS.len() {
            let v = (k + round) % VARIANTS.len();
            let service = start(VARIANTS[v]);
            load(service.addr, 1);
            // The monitored variant is scraped once a second, as Prometheus would.
            let stop_scraper = Arc::new(AtomicBool::new(false));
            let scraper = service.exporter.map(|exporter| {
                let stop = Arc::clone(&stop_scraper);
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let f = taskscope_bench::get(exporter, "/metrics").expect("scrape");
                        assert_eq!(f.status, 200);
                        n += 1;
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    n
                })
            });
            let l = load(service.addr, secs);
            stop_scraper.store(true, Ordering::Relaxed);
            if let Some(s) = scraper {
                scrapes += s.join().expect("scraper");
            }
            let (seen, _rss, served, cpu_ns) = stop(service);
            let mut l = l;
            l.cpu_us_per_req = cpu_ns as f64 / 1e3 / served.max(1) as f64;
            if VARIANTS[v] == "taskscope" {
                assert!(seen > 0, "the agent saw no tasks");
            }
            samples[v].push(l);
        }
    }
    let med = |v: usize, f: fn(&Load) -> f64| median(samples[v].iter().map(f).collect());
    let (base_rps, base_p50, base_p99, base_cpu) = (
        med(0, |l| l.rps),
        med(0, |l| l.p50_us),
        med(0, |l| l.p99_us),
        med(0, |l| l.cpu_us_per_req),
    );
    println!(
        "{:<10} {:>10} {:>7} {:>10} {:>7} {:>10} {:>7} {:>9} {:>7}",
        "variant", "req/s", "ratio", "p50", "ratio", "p99", "ratio", "CPU/req", "ratio"
    );
    for (v, name) in VARIANTS.iter().enumerate() {
        let (rps, p50, p99, cpu) = (
            med(v, |l| l.rps),
            med(v, |l| l.p50_us),
            med(v, |l| l.p99_us),
            med(v, |l| l.cpu_us_per_req),
        );
        println!(
            "{:<10} {:>10.0} {:>6.3}x {:>8.0}us {:>6.3}x {:>8.0}us {:>6.3}x {:>7.1}us {:>6.3}x",
            name,
            rps,
            rps / base_rps,
            p50,
            p50 / base_p50,
            p99,
            p99 / base_p99,
            cpu,
            cpu / base_cpu
        );
    }
    for (v, name) in VARIANTS.iter().enumerate() {
        let xs: Vec<String> = samples[v]
            .iter()
            .map(|l| {
                format!(
                    "{:.0}/{:.0}/{:.0}/{:.1}",
                    l.rps, l.p50_us, l.p99_us, l.cpu_us_per_req
                )
            })
            .collect();
        println!(
            "  {name} rounds (req/s / p50 us / p99 us / CPU us per request): {}",
            xs.join(" ")
        );
    }
    // Each round's ratio pairs runs close in time, so it suffers less from the load of
    // other processes drifting over the whole run than the ratio of medians does.
    for (v, name) in VARIANTS.iter().enumerate().skip(1) {
        let paired = |f: fn(&Load) -> f64| {
            median(
                samples[v]
                    .iter()
                    .zip(&samples[0])
                    .map(|(x, b)| f(x) / f(b))
                    .collect(),
            )
        };
        println!(
            "  {name} / bare, median of per-round ratios: req/s {:.3}x, p50 {:.3}x, p99 {:.3}x, \
             CPU per request {:.3}x",
            paired(|l| l.rps),
            paired(|l| l.p50_us),
            paired(|l| l.p99_us),
            paired(|l| l.cpu_us_per_req)
        );
    }
    println!("  /metrics scrapes during the taskscope runs: {scrapes}");
}
