//! A built-in load generator: drives a realistic mix of the demo's endpoints at a given rate
//! and concurrency, from the [`Outside`] runtime (it plays the clients, so its tasks are not
//! the service's). With a duration it stops by itself and reports requests/s, errors and
//! latency percentiles; attached to a terminal it shows a progress bar meanwhile.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::outside::Outside;

/// Settings of the load generator.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL of the service, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Requests per second, over all endpoints.
    pub rate: u32,
    /// Most requests in flight; ticks beyond it are skipped (counted as `skipped`).
    pub concurrency: usize,
    /// Stop after this long (forever if `None`).
    pub duration: Option<Duration>,
    /// Show a progress bar (only with a duration).
    pub progress: bool,
}

/// What a run of the load generator did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Requests that failed: connection errors and 5xx answers.
    pub errors: u64,
    /// Ticks skipped because `concurrency` requests were in flight.
    pub skipped: u64,
    /// Seconds the run lasted.
    pub seconds: f64,
    /// Latency percentiles in milliseconds: p50, p90, p99, max.
    pub latency_ms: [f64; 4],
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [p50, p90, p99, max] = self.latency_ms;
        write!(
            f,
            "load: {} requests in {:.1} s ({:.1}/s), {} errors, {} skipped at the concurrency cap; \
             latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.sent,
            self.seconds,
            self.sent as f64 / self.seconds.max(1e-9),
            self.errors,
            self.skipped,
            p50,
            p90,
            p99,
            max
        )
    }
}

#[derive(Default)]
struct Tally {
    sent: u64,
    errors: u64,
    skipped: u64,
    latency_us: Option<Histogram<u64>>,
}

/// Starts the generator on the outside runtime; the handle resolves to its report when a
/// duration was given and has passed.
pub fn start(outside: &Outside, config: LoadConfig) -> tokio::task::JoinHandle<LoadReport> {
    outside.spawn(run(config))
}

async fn run(config: LoadConfig) -> LoadReport {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        // Open loop: a slow spell opens more connections; they close once idle for a
        // while instead of the default 90 s, so the service's connection count (and its
        // growth indicator) comes back down when the spell ends.
        .pool_idle_timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client builds");
    let tally = Arc::new(Mutex::new(Tally {
        // 1 µs .. 60 s, 3 significant digits.
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
        ..Tally::default()
    }));
    let in_flight = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let period = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let bar = progress_bar(&config);
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if let Some(d) = config.duration {
            if elapsed >= d {
                break;
            }
            if let Some(bar) = &bar {
                bar.set_position(elapsed.as_millis() as u64);
            }
        }
        n += 1;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            lock(&tally).skipped += 1;
            continue;
        };
        let request = pick(n).build(&client, &config.base);
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            let t0 = Instant::now();
            let failed = match request.send().await {
                Ok(r) => r.status().is_server_error(),
                Err(_) => true,
            };
            let mut t = lock(&tally);
            t.sent += 1;
            t.errors += u64::from(failed);
            if let Some(h) = t.latency_us.as_mut() {
                let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
            }
            drop(permit);
        });
    }
    // Let requests in flight finish (bounded by the client's timeout).
    let _ = in_flight
        .acquire_many(config.concurrency.max(1) as u32)
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let t = lock(&tally);
    let pct = |q: f64| {
        t.latency_us
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1e3)
    };
    LoadReport {
        sent: t.sent,
        errors: t.errors,
        skipped: t.skipped,
        seconds: start.elapsed().as_secs_f64(),
        latency_ms: [pct(0.5), pct(0.9), pct(0.99), pct(1.0)],
    }
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

fn progress_bar(config: &LoadConfig) -> Option<indicatif::ProgressBar> {
    let d = config.duration?;
    if !config.progress {
        return None;
    }
    let bar = indicatif::ProgressBar::new(d.as_millis() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("load {bar:40} {elapsed}/{duration}")
    {
        bar.set_style(style);
    }
    Some(bar)
}

/// One request of the mix.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// GET a path.
    Get(String),
    /// POST a JSON body to a path.
    Post(String, serde_json::Value),
}

impl Request {
    fn build(&self, client: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
        match self {
            Request::Get(path) => client.get(format!("{base}{path}")),
            Request::Post(path, body) => client.post(format!("{base}{path}")).json(body),
        }
    }

    /// The request's path.
    pub fn path(&self) -> &str {
        match self {
            Request::Get(p) | Request::Post(p, _) => p,
        }
    }
}

/// The `n`-th request of the mix: mostly reads, some writes, one report job in 20.
pub fn pick(n: u64) -> Request {
    let user = (n * 7919) % 100 + 1;
    match n % 20 {
        0 => Request::Post("/reports".into(), serde_json::json!({})),
        1..=5 => Request::Get(format!("/profile/{user}")),
        6..=8 => Request::Get(format!("/dashboard/{user}")),
        9..=11 => Request::Get(format!("/cache/users/{}", user % 50 + 1)),
        12 | 13 => Request::Post("/hits".into(), serde_json::json!({})),
        14 => Request::Post(
            "/batch".into(),
            serde_json::json!({ "orders": (0..20).map(|i| serde_json::json!({"user_id": (user + i) % 100 + 1, "amount_cents": 100 + i})).collect::<Vec<_>>() }),
        ),
        15 | 16 => Request::Post(
            "/orders".into(),
            serde_json::json!({"user_id": user, "amount_cents": 1000 + n % 500}),
        ),
        _ => Request::Post("/jobs".into(), serde_json::json!({"user_id": user})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_job_in_twenty_requests() {
        let reports = (1..=100).filter(|&n| pick(n).path() == "/reports").count();
        assert_eq!(reports, 5);
    }
}
