//! What the benchmarks share: the spawn storm workload and the peak-RSS reading.

#![allow(dead_code)] // each benchmark uses a part of it

use std::time::{Duration, Instant};

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
