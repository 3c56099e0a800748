//! A built-in load generator: drives the demo's endpoints at a given rate from a runtime of
//! its own (it plays the clients, so its tasks are not the service's).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Most requests in flight at once; ticks beyond it are skipped, so a slow service does not
/// make the generator pile up work.
const MAX_IN_FLIGHT: usize = 64;

/// Settings of the load generator.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL of the service, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Requests per second, over all endpoints.
    pub rate: u32,
    /// One request in this many is `POST /reports` (the leak); 0 never.
    pub leak_every: u32,
}

/// Requests the generator sent and that failed, for its final log line.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Requests that failed (connection error or 5xx).
    pub failed: AtomicU64,
}

/// Starts the generator on a thread of its own; it runs until the process exits.
pub fn start(config: LoadConfig) -> std::io::Result<Arc<LoadStats>> {
    let stats = Arc::new(LoadStats::default());
    let s = Arc::clone(&stats);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("demo-load".into())
        .spawn(move || runtime.block_on(run(config, s)))?;
    Ok(stats)
}

async fn run(config: LoadConfig, stats: Arc<LoadStats>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a plain HTTP client builds");
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let period = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            continue;
        };
        let (method, path) = pick(n, config.leak_every);
        let url = format!("{}{}", config.base, path);
        let client = client.clone();
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let req = if method == "POST" {
                client.post(&url)
            } else {
                client.get(&url)
            };
            stats.sent.fetch_add(1, Ordering::Relaxed);
            match req.send().await {
                Ok(r) if !r.status().is_server_error() => {}
                _ => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
    }
}

/// The request mix: mostly reads, some writes, and the leak every `leak_every` requests.
fn pick(n: u64, leak_every: u32) -> (&'static str, String) {
    if leak_every > 0 && n.is_multiple_of(u64::from(leak_every)) {
        return ("POST", "/reports".into());
    }
    match n % 20 {
        0..=5 => ("GET", format!("/profile/{}", n % 97)),
        6..=10 => ("GET", format!("/cache/k{}", n % 50)),
        11..=13 => ("POST", "/hits".into()),
        14..=15 => ("POST", "/batch?items=20".into()),
        _ => ("POST", "/orders".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leak_every_n_requests() {
        let leaks = (1..=100).filter(|&n| pick(n, 20).1 == "/reports").count();
        assert_eq!(leaks, 5);
        assert!((1..=100).all(|n| pick(n, 0).1 != "/reports"));
    }
}
