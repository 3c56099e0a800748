//! `taskscope console`: services that already run console-subscriber (tokio-console's
//! instrumentation), read through its gRPC API and shown as taskscope shows its own
//! agent's data: tasks per spawn site, leak findings, locks.
//!
//! - [`stream`] connects to console's `Instrument::watch_updates` and follows it across
//!   disconnections;
//! - [`tracker`] keeps the state its incremental updates describe (tasks, lock resources,
//!   their async ops), with caps;
//! - [`to_model`] maps that state onto [`taskscope::model::Snapshot`], with [`findings`]
//!   giving the agent's lost-waker and idle-too-long indicators over console's facts;
//! - [`ConsoleSource`] plugs it into the TUI as a [`Source`], next to the HTTP exporter.
//!
//! What console cannot give (task dumps, baselines, panics, worker facts) is listed in
//! [`to_model::UNAVAILABLE`]; the TUI says so where the user asks for it.

pub mod findings;
pub mod stream;
pub mod text;
pub mod to_model;
pub mod tracker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskscope::LeakSettings;
use taskscope::model::Snapshot;

use crate::client::FetchError;
use crate::source::{Capabilities, Capability, Source, SourceFuture};

pub use stream::{DEFAULT_CONSOLE_URL, normalize_console_url, once};
pub use to_model::{ConsoleFacts, ConsoleReport};

/// How long a fetch waits for the stream's first update before saying it is still
/// connecting (the TUI shows the reason and asks again on the next tick).
const FIRST_FETCH_WAIT: Duration = Duration::from_secs(2);

/// A console-subscriber endpoint as a TUI source: a task following the stream (started on
/// the first fetch, on the TUI's runtime) keeps the state, and each fetch maps it.
pub struct ConsoleSource {
    url: String,
    settings: LeakSettings,
    shared: Arc<Mutex<stream::Shared>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ConsoleSource {
    /// A source for console at `url` (normalised with [`normalize_console_url`]), whose
    /// findings are judged with `settings`.
    pub fn new(url: &str, settings: LeakSettings) -> Result<Self, FetchError> {
        Ok(ConsoleSource {
            url: normalize_console_url(url)?,
            settings,
            shared: Arc::new(Mutex::new(stream::Shared::new())),
            task: Mutex::new(None),
        })
    }

    /// Starts following the stream, once; must be called inside a tokio runtime.
    fn ensure_following(&self) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_none() {
            task.replace(tokio::spawn(stream::follow(
                self.url.clone(),
                Arc::clone(&self.shared),
            )));
        }
    }
}

impl Drop for ConsoleSource {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl Source for ConsoleSource {
    fn label(&self) -> String {
        format!("{} (console-subscriber)", self.url)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dumps: Capability::Unavailable(
                "console-subscriber's API carries no stacks or await points, so no task \
                 dumps; the taskscope agent gives them"
                    .into(),
            ),
            baseline: Capability::Unavailable(
                "console-subscriber keeps no per-site baseline to compare against; the \
                 taskscope agent marks one"
                    .into(),
            ),
            live: true,
        }
    }

    fn fetch(&self) -> SourceFuture<Snapshot> {
        self.ensure_following();
        let (shared, settings, url) = (
            Arc::clone(&self.shared),
            self.settings.clone(),
            self.url.clone(),
        );
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + FIRST_FETCH_WAIT;
            loop {
                let result = stream::current(&shared, &settings, &url);
                let connecting = matches!(
                    shared.lock().unwrap_or_else(|e| e.into_inner()).status,
                    stream::StreamStatus::Connecting
                );
                if !connecting || tokio::time::Instant::now() >= deadline {
                    return result.map(|r| r.snapshot);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }
}

/// `taskscope console URL --once`: the report after console's first update (and `watch_for`
/// more), as JSON or text. Builds its own runtime; never waits longer than the stream's
/// limits ([`stream::CONNECT_TIMEOUT`], [`stream::FIRST_UPDATE_TIMEOUT`]) plus `watch_for`.
pub fn run_once(
    url: &str,
    settings: &LeakSettings,
    watch_for: Duration,
    json: bool,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let report = rt.block_on(once(url, settings, watch_for))?;
    Ok(if json {
        let mut text = serde_json::to_string_pretty(&report).context("cannot write JSON")?;
        text.push('\n');
        text
    } else {
        text::render(&report)
    })
}

/// `taskscope console URL`: the TUI on console's stream, refreshed every `refresh`.
pub fn run_tui(url: &str, settings: LeakSettings, refresh: Duration) -> anyhow::Result<()> {
    let source = ConsoleSource::new(url, settings)?;
    crate::run_source(Box::new(source), refresh)
}
