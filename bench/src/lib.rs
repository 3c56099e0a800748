//! What taskscope's workspace benchmarks share (`bench/benches/*`): call sites by the
//! thousand, a plain HTTP/1.1 GET for loopback timings, the quick-mode switch and medians.
//!
//! The benchmarks themselves are `cargo bench -p taskscope-bench --bench NAME`; see
//! docs/BENCHMARKS.md for what they measure and the figures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

// `spawn_from_sites` and `SITE_COUNT`, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/sites.rs"));

/// One generated call site: spawns an idle task while `left` is above 0. `track_caller`
/// hands the caller's location through to `tokio::spawn`, so each call of `s` in the
/// generated code is a spawn site of its own.
#[track_caller]
#[inline(never)]
fn s(keep: &mut Vec<tokio::sync::oneshot::Sender<()>>, left: &mut usize) {
    if *left == 0 {
        return;
    }
    *left -= 1;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = rx.await;
    });
    keep.push(tx);
}

/// Environment variable that selects the quick mode (tiny sizes, one round), as CI runs the
/// benchmarks: `TASKSCOPE_BENCH_QUICK=1 cargo test -p taskscope-bench --benches`.
pub const QUICK_ENV: &str = "TASKSCOPE_BENCH_QUICK";

/// Whether this run is a quick one: `--quick` among the arguments, or [`QUICK_ENV`] set to
/// anything but "" or "0".
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var(QUICK_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A command for a child process of a benchmark, told to be quick when this run is.
pub fn child_command(exe: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(exe);
    if quick() {
        cmd.env(QUICK_ENV, "1");
    }
    cmd
}

/// The median of `xs` (the upper one for an even count); NaN when empty.
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The answer to [`get`]: status, body size and the time from connect to the last byte.
#[derive(Debug, Clone, Copy)]
pub struct Fetched {
    /// HTTP status code.
    pub status: u16,
    /// Bytes after the header.
    pub body_bytes: usize,
    /// Connect, request, and read until the server closes.
    pub took: Duration,
}

/// `GET path` over a fresh connection with `Connection: close`, read to the end: what one
/// scrape costs the scraper in wall-clock time, transport included.
pub fn get(addr: SocketAddr, path: &str) -> Result<Fetched, String> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    let took = start.elapsed();
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of header in the answer")?;
    let status = std::str::from_utf8(&response[..head_end])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("no status line in the answer")?;
    Ok(Fetched {
        status,
        body_bytes: response.len() - head_end - 4,
        took,
    })
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
