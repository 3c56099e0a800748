//! The gRPC side: connecting to console-subscriber's `Instrument` service, reading
//! `watch_updates`, and keeping a [`Tracker`] current across disconnections.
//!
//! Every wait has a limit (connect, first update, silence between updates), so a peer that
//! stops talking gives a clear state instead of a hang; every failure becomes a
//! [`FetchError`] whose text says what the URL probably is instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use console_api::instrument::instrument_client::InstrumentClient;
use console_api::instrument::{InstrumentRequest, Update};
use taskscope::LeakSettings;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::to_model::{self, ConsoleReport};
use super::tracker::Tracker;
use crate::client::FetchError;

/// Longest wait for a TCP and HTTP/2 connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait for console's first update (its whole state) after connecting.
pub const FIRST_UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// console publishes every second (its default `publish_interval`); this long without an
/// update means the stream is stuck (or another client paused it): reconnect.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest update accepted. console caps its first update at 4 MiB and later ones are
/// smaller; a bigger message is not from console.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Wait before reconnecting after the stream ended (doubles up to [`MAX_BACKOFF`]).
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The default console-subscriber address.
pub const DEFAULT_CONSOLE_URL: &str = "http://127.0.0.1:6669";

/// Normalises a console URL: `http://` added when no scheme is given, trailing slashes
/// removed. Only plain `http` (console-subscriber serves no TLS by itself).
pub fn normalize_console_url(url: &str) -> Result<String, FetchError> {
    let url = url.trim();
    let bad = |detail: String| FetchError::Request {
        url: url.to_string(),
        detail,
    };
    if url.is_empty() {
        return Err(bad("the console URL is empty".into()));
    }
    let url = match url.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => url.to_string(),
        Some((scheme, _)) => {
            return Err(bad(format!(
                "unsupported scheme {scheme:?}: console-subscriber speaks plain http/2"
            )));
        }
        None => format!("http://{url}"),
    };
    let url = url.trim_end_matches('/').to_string();
    if url.len() <= "http://".len() {
        return Err(bad("the console URL has no host".into()));
    }
    Ok(url)
}

fn transport_error(url: &str, e: &tonic::transport::Error) -> FetchError {
    // The source chain holds the useful part ("Connection refused", "timed out").
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    if detail.contains("Connection refused") {
        FetchError::ConnectionRefused {
            url: url.to_string(),
        }
    } else if detail.contains("timed out") {
        FetchError::Timeout {
            url: url.to_string(),
            seconds: CONNECT_TIMEOUT.as_secs_f64(),
        }
    } else {
        FetchError::Connect {
            url: url.to_string(),
            detail,
        }
    }
}

/// A gRPC status as a message that says what the peer probably is.
pub fn status_error(url: &str, status: &tonic::Status) -> FetchError {
    let hint = match status.code() {
        Code::Unimplemented | Code::NotFound => {
            "no console Instrument service there: is this console-subscriber? (its default \
             address is 127.0.0.1:6669)"
        }
        Code::Internal | Code::Unknown | Code::DataLoss
            if status.message().contains("decode")
                || status.message().contains("protocol")
                || status.message().contains("h2")
                || status.message().contains("transport") =>
        {
            "the answer is not console's gRPC (another service on this port, or a console-api \
             version this taskscope does not understand; it reads console-api 0.9)"
        }
        Code::ResourceExhausted => "an update was larger than taskscope accepts",
        Code::Unavailable => "console-subscriber is not reachable",
        _ => "console-subscriber refused the stream",
    };
    FetchError::Request {
        url: url.to_string(),
        detail: format!("{hint}: {} ({:?})", status.message(), status.code()),
    }
}

/// An open `watch_updates` stream.
pub struct UpdateStream {
    url: String,
    inner: tonic::Streaming<Update>,
}

impl UpdateStream {
    /// Connects to console-subscriber at `url` (normalised) and opens `watch_updates`.
    pub async fn open(url: &str) -> Result<Self, FetchError> {
        let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| FetchError::Request {
            url: url.to_string(),
            detail: format!("not a valid URL: {e}"),
        })?;
        let endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true);
        let channel: Channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(transport_error(url, &e)),
            Err(_) => {
                return Err(FetchError::Timeout {
                    url: url.to_string(),
                    seconds: CONNECT_TIMEOUT.as_secs_f64(),
                });
            }
        };
        let mut client =
            InstrumentClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let response = match tokio::time::timeout(
            FIRST_UPDATE_TIMEOUT,
            client.watch_updates(InstrumentRequest {}),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(status)) => return Err(status_error(url, &status)),
            Err(_) => {
                return Err(FetchError::Timeout {
                    url: url.to_string(),
                    seconds: FIRST_UPDATE_TIMEOUT.as_secs_f64(),
                });
            }
        };
        Ok(UpdateStream {
            url: url.to_string(),
            inner: response.into_inner(),
        })
    }

    /// The next update, waiting at most `limit`; `Ok(None)` when console ended the stream.
    pub async fn next(&mut self, limit: Duration) -> Result<Option<Update>, FetchError> {
        match tokio::time::timeout(limit, self.inner.message()).await {
            Ok(Ok(update)) => Ok(update),
            Ok(Err(status)) => Err(status_error(&self.url, &status)),
            Err(_) => Err(FetchError::Timeout {
                url: self.url.clone(),
                seconds: limit.as_secs_f64(),
            }),
        }
    }
}

/// Connects, waits for console's first update (its whole state), goes on applying updates
/// for `watch_for` more, and maps the result. For `taskscope console --once`.
pub async fn once(
    url: &str,
    settings: &LeakSettings,
    watch_for: Duration,
) -> Result<ConsoleReport, FetchError> {
    let url = normalize_console_url(url)?;
    let mut stream = UpdateStream::open(&url).await?;
    let mut tracker = Tracker::new();
    match stream.next(FIRST_UPDATE_TIMEOUT).await? {
        Some(update) => tracker.apply(update),
        None => return Err(ended(&url)),
    }
    let deadline = tokio::time::Instant::now() + watch_for;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, stream.next(SILENCE_TIMEOUT)).await {
            Ok(Ok(Some(update))) => tracker.apply(update),
            Ok(Ok(None)) => return Err(ended(&url)),
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    Ok(to_model::report(&tracker, settings, &url))
}

fn ended(url: &str) -> FetchError {
    FetchError::Request {
        url: url.to_string(),
        detail: "console-subscriber ended the stream (the service is stopping?)".into(),
    }
}

/// Where a live stream stands.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamStatus {
    /// Connecting, or connected and waiting for the first update.
    Connecting,
    /// Updates arrive.
    Streaming,
    /// The stream failed or ended; reconnecting. The tracker keeps the last state.
    Disconnected(FetchError),
}

/// What the stream task shares with its readers.
#[derive(Debug)]
pub struct Shared {
    /// The state of the current stream (reset on each reconnection: console sends its whole
    /// state again).
    pub tracker: Tracker,
    /// Where the stream stands.
    pub status: StreamStatus,
    /// Connections made so far.
    pub connections: u64,
}

impl Shared {
    /// Before the first connection.
    pub fn new() -> Self {
        Shared {
            tracker: Tracker::new(),
            status: StreamStatus::Connecting,
            connections: 0,
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Follows console at `url` forever: connects, applies every update to `shared`, and on
/// failure or end of stream marks it disconnected and reconnects with backoff. Runs until
/// its task is aborted.
pub async fn follow(url: String, shared: Arc<Mutex<Shared>>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let error = match UpdateStream::open(&url).await {
            Ok(mut stream) => {
                let mut first = true;
                loop {
                    let limit = if first {
                        FIRST_UPDATE_TIMEOUT
                    } else {
                        SILENCE_TIMEOUT
                    };
                    match stream.next(limit).await {
                        Ok(Some(update)) => {
                            let mut s = lock(&shared);
                            if first {
                                // A new stream starts with the whole state again.
                                s.tracker = Tracker::new();
                                s.connections += 1;
                                first = false;
                                backoff = MIN_BACKOFF;
                            }
                            s.tracker.apply(update);
                            s.status = StreamStatus::Streaming;
                        }
                        Ok(None) => break ended(&url),
                        Err(e) => break e,
                    }
                }
            }
            Err(e) => e,
        };
        lock(&shared).status = StreamStatus::Disconnected(error);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The current snapshot from `shared`, or why there is none: the latest error while
/// disconnected (the TUI keeps showing the last good data meanwhile).
pub fn current(
    shared: &Mutex<Shared>,
    settings: &LeakSettings,
    url: &str,
) -> Result<ConsoleReport, FetchError> {
    let s = lock(shared);
    match &s.status {
        StreamStatus::Streaming => Ok(to_model::report(&s.tracker, settings, url)),
        StreamStatus::Disconnected(e) => Err(e.clone()),
        StreamStatus::Connecting => Err(FetchError::Request {
            url: url.to_string(),
            detail: "connecting to console-subscriber, waiting for its first update".into(),
        }),
    }
}
