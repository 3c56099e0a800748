//! The flight recorder behind `taskscope record URL -o FILE`: fetches a snapshot every
//! interval and appends it to a bounded, compressed recording (see [`crate::files`]) until
//! the duration is over, a cap is reached or Ctrl-C; `taskscope open FILE` replays it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::files::{self, Full, Recorder, RecordingLimits};
use crate::source::Source;

/// What to record and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// The file to write (not overwritten if it exists).
    pub output: PathBuf,
    /// Stop after this long; `None`: at a cap or Ctrl-C.
    pub duration: Option<Duration>,
    /// Time between snapshots.
    pub interval: Duration,
    /// Caps on the recording.
    pub limits: RecordingLimits,
}

/// Why recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The duration asked for is over.
    Duration(Duration),
    /// A cap was reached.
    Full(Full),
    /// Ctrl-C (or the stop future handed to [`record`]).
    Interrupted,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Duration(d) => write!(f, "{} elapsed", humantime::format_duration(*d)),
            Stopped::Full(full) => write!(f, "{full}"),
            Stopped::Interrupted => write!(f, "interrupted"),
        }
    }
}

/// What a recording run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    /// The file written.
    pub path: PathBuf,
    /// Frames written.
    pub frames: usize,
    /// Fetches that failed (no frame for them).
    pub failed: usize,
    /// Uncompressed bytes written.
    pub bytes: u64,
    /// Why it ended.
    pub stopped: Stopped,
}

/// Records `source` per `config` until the duration is over, a cap is reached or `stop`
/// completes. The first fetch must succeed (else the half-made file is removed and its
/// error returned: nothing to record from); later failures are counted and reported with
/// `on_error`, and recording goes on.
pub async fn record(
    source: &dyn Source,
    config: &RecordConfig,
    stop: impl std::future::Future<Output = ()>,
    mut on_error: impl FnMut(&str),
) -> anyhow::Result<RecordSummary> {
    let interval_ms = u64::try_from(config.interval.as_millis()).unwrap_or(u64::MAX);
    let mut recorder =
        Recorder::create(&config.output, &source.label(), interval_ms, config.limits)?;
    let first = match source.fetch().await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            drop(recorder);
            let _ = std::fs::remove_file(&config.output);
            return Err(e).context(format!("nothing recorded from {}", source.label()));
        }
    };
    recorder.push(files::unix_ms_now(), &first)?;

    let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + config.interval,
        config.interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let until_deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop, until_deadline);
    let mut failed = 0;
    let stopped = loop {
        if let Some(full) = recorder.full() {
            break Stopped::Full(full);
        }
        tokio::select! {
            () = &mut stop => break Stopped::Interrupted,
            () = &mut until_deadline => {
                break Stopped::Duration(config.duration.unwrap_or_default());
            }
            _ = ticker.tick() => {}
        }
        // A fetch takes at most the client's timeout; stopping waits for it no longer.
        let result = tokio::select! {
            () = &mut stop => break Stopped::Interrupted,
            result = source.fetch() => result,
        };
        match result {
            Ok(snapshot) => {
                recorder.push(files::unix_ms_now(), &snapshot)?;
            }
            Err(e) => {
                failed += 1;
                on_error(&e.to_string());
            }
        }
    };
    let (frames, bytes) = (recorder.frames(), recorder.bytes());
    let path = recorder.finish()?;
    Ok(RecordSummary {
        path,
        frames,
        failed,
        bytes,
        stopped,
    })
}

/// `taskscope record`: records the exporter at `url` per `config` (Ctrl-C stops it
/// cleanly), printing fetch failures to stderr; returns the summary line.
pub fn run_record(url: &str, config: &RecordConfig) -> anyhow::Result<String> {
    let url = crate::normalize_url(url)?;
    let client = crate::client::client_builder()?
        .timeout(crate::client::FETCH_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;
    let source = crate::source::HttpSource::new(client, url);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let summary = rt.block_on(record(
        &source,
        config,
        async {
            // If the signal cannot be watched, only the duration and the caps stop it.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        },
        |e| eprintln!("taskscope record: fetch failed, still recording: {e}"),
    ))?;
    let size = std::fs::metadata(&summary.path).map_or(0, |m| m.len());
    Ok(format!(
        "recorded {} frames{} to {} ({size} bytes, {} uncompressed); stopped: {}; open it with: taskscope open {}\n",
        summary.frames,
        match summary.failed {
            0 => String::new(),
            n => format!(" ({n} fetches failed)"),
        },
        summary.path.display(),
        summary.bytes,
        summary.stopped,
        summary.path.display(),
    ))
}
