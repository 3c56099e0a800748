//! What the benchmarks share: the spawn storm workload and the peak-RSS reading.

#![allow(dead_code)] // each benchmark uses a part of it

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Environment variable that selects the quick mode: tiny sizes, one or two rounds, short
/// windows. CI runs every benchmark this way (`TASKSCOPE_BENCH_QUICK=1 cargo test --benches`)
/// so they keep compiling and running; the figures it prints mean nothing.
pub const QUICK_ENV: &str = "TASKSCOPE_BENCH_QUICK";

/// Whether this run is a quick one: `--quick` among the arguments, or [`QUICK_ENV`] set to
/// anything but "" or "0".
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var(QUICK_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A command for a child process of this benchmark, told to be quick when this run is.
pub fn child_command(exe: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(exe);
    if quick() {
        cmd.env(QUICK_ENV, "1");
    }
    cmd
}

/// One storm of `n` tasks; returns the time from the first spawn to the last completion.
pub fn storm(rt: &tokio::runtime::Runtime, n: usize) -> Duration {
    rt.block_on(async move {
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
    })
}

/// Peak resident set size of this process, KiB (0 when /proc cannot be read).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of the whole process so far.
pub fn cpu_time() -> Duration {
    // Safety: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One storm of `n` tasks; returns the time from the first spawn to the last completion,
/// and the process's CPU time meanwhile.
pub fn storm_cpu(rt: &tokio::runtime::Runtime, n: usize) -> (Duration, Duration) {
    let cpu0 = cpu_time();
    let wall = storm(rt, n);
    (wall, cpu_time() - cpu0)
}

#[repr(align(64))]
pub struct Counter(AtomicU64);

/// `tasks` tasks looping sleep(1 ms) + a little work; loop iterations per second over 3 s
/// (after 1 s of warm-up), and per second of the process's CPU time over the same 3 s. In
/// quick mode the warm-up is 50 ms and the window 200 ms.
pub fn steady(rt: &tokio::runtime::Runtime, tasks: usize) -> (f64, f64) {
    let (warm_up, window) = if quick() {
        (Duration::from_millis(50), Duration::from_millis(200))
    } else {
        (Duration::from_secs(1), Duration::from_secs(3))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Vec<Counter>> =
        Arc::new((0..tasks).map(|_| Counter(AtomicU64::new(0))).collect());
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            rt.spawn(async move {
                let mut x = i as u64 | 1;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    for _ in 0..50 {
                        x = std::hint::black_box(
                            x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7),
                        );
                    }
                    counts[i].0.fetch_add(1, Ordering::Relaxed);
                }
                x
            })
        })
        .collect();
    let total = || {
        counts
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    std::thread::sleep(warm_up);
    let (n0, t0, c0) = (total(), Instant::now(), cpu_time());
    std::thread::sleep(window);
    let (n1, t1, c1) = (total(), Instant::now(), cpu_time());
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for h in handles {
            std::hint::black_box(h.await.expect("steady task"));
        }
    });
    let n = (n1 - n0) as f64;
    (n / (t1 - t0).as_secs_f64(), n / (c1 - c0).as_secs_f64())
}

/// Installs the floor variants' hooks: `hooks` (empty) or `floor` (one relaxed add each);
/// false for any other variant.
pub fn floor_variant(variant: &str, builder: &mut tokio::runtime::Builder) -> bool {
    match variant {
        "hooks" => empty_hooks(builder),
        "floor" => floor_hooks(builder),
        _ => return false,
    }
    true
}

/// Issue #10's floor as it words it, "runtime hooks + relaxed atomics": tokio's four task
/// hooks, each doing one relaxed atomic add on one shared counter. On several workers that
/// counter's cache line moves between the cores on every event, so it costs more than the
/// hooks alone (and, in a storm, more than the agent, which counts per thread).
fn floor_hooks(builder: &mut tokio::runtime::Builder) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static EVENTS: AtomicU64 = AtomicU64::new(0);
    builder
        .on_task_spawn(|_| {
            EVENTS.fetch_add(1, Relaxed);
        })
        .on_before_task_poll(|_| {
            EVENTS.fetch_add(1, Relaxed);
        })
        .on_after_task_poll(|_| {
            EVENTS.fetch_add(1, Relaxed);
        })
        .on_task_terminate(|_| {
            EVENTS.fetch_add(1, Relaxed);
        });
}

/// tokio's four task hooks doing nothing: the cost of the hook calls alone.
fn empty_hooks(builder: &mut tokio::runtime::Builder) {
    builder
        .on_task_spawn(|_| {})
        .on_before_task_poll(|_| {})
        .on_after_task_poll(|_| {})
        .on_task_terminate(|_| {});
}
