//! Where the TUI's snapshots come from.
//!
//! The event loop never calls the HTTP client itself: it asks a [`Source`] for the next
//! snapshot on every refresh tick, and for a task dump or a baseline when the user wants
//! one. Each source says up front which of those it can do ([`Capabilities`]); the state
//! checks them before asking, so a view says `unavailable for this source: <why>` instead
//! of failing.
//!
//! Sources here: [`HttpSource`] (a live exporter).
//!
//! # Plugging in a new source
//!
//! A source that produces snapshots over time (e.g. a console-subscriber gRPC stream)
//! implements [`Source`]:
//!
//! - [`Source::fetch`] returns a future of the *current* snapshot. A streaming source keeps
//!   its own aggregate (fed by a task it spawns on the current thread's runtime) and
//!   answers with a copy of it; a source that cannot produce one says why with a
//!   [`FetchError`] (shown as DISCONNECTED with the last good data).
//! - [`Source::capabilities`] says whether task dumps and baselines are possible, and why
//!   not; the default `dump` and `mark_baseline` refuse with that reason.
//! - [`Source::label`] is what the header shows as the target.
//!
//! Then hand a `Box<dyn Source>` to [`crate::run_source`]; nothing else in the loop or the
//! views changes. The source itself is `Send` (the UI may run on a helper thread); its
//! futures need not be: the loop runs on a current-thread runtime.

use std::future::Future;
use std::pin::Pin;

use taskscope::model::{Dump, DumpTask, Snapshot};

use crate::client::{
    DUMP_FETCH_TIMEOUT, FETCH_TIMEOUT, FetchError, MAX_BODY_BYTES, baseline_url, decode_dump,
    decode_snapshot, dump_url, fetch_body, mark_baseline_at, site_tasks_url, snapshot_url,
    with_runtime,
};

/// A request to a source in flight.
pub type SourceFuture<T> = Pin<Box<dyn Future<Output = Result<T, FetchError>>>>;

/// Whether a source can do something, and if not, why (one short clause for the screen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// It can.
    Available,
    /// It cannot, for this reason (e.g. "a saved file holds no more dumps than it was
    /// saved with").
    Unavailable(String),
}

impl Capability {
    /// Why not, when unavailable.
    pub fn why_not(&self) -> Option<&str> {
        match self {
            Capability::Available => None,
            Capability::Unavailable(why) => Some(why),
        }
    }

    /// Whether it is available.
    pub fn is_available(&self) -> bool {
        matches!(self, Capability::Available)
    }
}

/// What a source can do besides giving snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Taking a task dump of one spawn site (detail view, `r`).
    pub dumps: Capability,
    /// Marking a baseline on the target (`b`).
    pub baseline: Capability,
    /// Whether new snapshots keep coming (a live target); false for a file, whose frames
    /// are stepped through instead.
    pub live: bool,
}

impl Capabilities {
    /// Everything, as a live exporter offers.
    pub fn live_exporter() -> Self {
        Capabilities {
            dumps: Capability::Available,
            baseline: Capability::Available,
            live: true,
        }
    }

    /// What a saved file offers: its frames, no dumps beyond the one saved with it, no
    /// baseline.
    pub fn file() -> Self {
        Capabilities {
            dumps: Capability::Unavailable(
                "a saved file holds only the dump saved with it, no new ones".into(),
            ),
            baseline: Capability::Unavailable(
                "a saved file has no target to mark a baseline on".into(),
            ),
            live: false,
        }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::live_exporter()
    }
}

/// Something the TUI polls for snapshots. See the module docs for how to add one.
pub trait Source: Send {
    /// What the header shows as the target: a URL, a file, an endpoint.
    fn label(&self) -> String;

    /// What this source can do besides snapshots.
    fn capabilities(&self) -> Capabilities;

    /// Starts fetching the current snapshot. The loop keeps at most one in flight per
    /// source and polls it next to the keyboard, so it never blocks input.
    fn fetch(&self) -> SourceFuture<Snapshot>;

    /// Starts a task dump of `site`; `Err(why)` when this source cannot take one.
    fn dump(&self, site: &str) -> Result<SourceFuture<Dump>, String> {
        let _ = site;
        Err(unavailable(&self.capabilities().dumps))
    }

    /// Starts marking a baseline; `Err(why)` when this source cannot.
    fn mark_baseline(&self) -> Result<SourceFuture<u64>, String> {
        Err(unavailable(&self.capabilities().baseline))
    }

    /// The same target's runtime named `name`, for a target serving several runtimes
    /// ([`Snapshot::runtimes`]): the TUI then watches each runtime as a target of its own.
    /// `None` (the default) when this source cannot tell runtimes apart.
    fn for_runtime(&self, name: &str) -> Option<Box<dyn Source>> {
        let _ = name;
        None
    }
}

fn unavailable(capability: &Capability) -> String {
    capability
        .why_not()
        .unwrap_or("this source does not implement it")
        .to_string()
}

/// A live taskscope exporter over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSource {
    client: reqwest::Client,
    url: String,
    /// The runtime asked for (`?runtime=NAME`); `None`: the exporter's first.
    runtime: Option<String>,
}

impl HttpSource {
    /// The exporter at `url` (already normalised, see [`crate::normalize_url`]), fetched
    /// with `client`.
    pub fn new(client: reqwest::Client, url: impl Into<String>) -> Self {
        HttpSource {
            client,
            url: url.into(),
            runtime: None,
        }
    }

    /// The same exporter's runtime named `name` (every request carries `runtime=NAME`).
    pub fn with_runtime(mut self, name: impl Into<String>) -> Self {
        self.runtime = Some(name.into());
        self
    }

    /// The runtime asked for, if one is.
    pub fn runtime(&self) -> Option<&str> {
        self.runtime.as_deref()
    }

    /// `url` for this source's runtime.
    fn at(&self, url: String) -> String {
        with_runtime(url, self.runtime.as_deref())
    }

    /// The exporter's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Source for HttpSource {
    fn label(&self) -> String {
        runtime_label(&self.url, self.runtime.as_deref())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::live_exporter()
    }

    fn fetch(&self) -> SourceFuture<Snapshot> {
        let (client, url) = (self.client.clone(), self.at(snapshot_url(&self.url)));
        Box::pin(async move {
            let body = fetch_body(&client, &url, FETCH_TIMEOUT, MAX_BODY_BYTES).await?;
            decode_snapshot(&url, &body)
        })
    }

    fn dump(&self, site: &str) -> Result<SourceFuture<Dump>, String> {
        let (client, url) = (self.client.clone(), self.at(dump_url(&self.url, site)));
        let tasks_url = self.at(site_tasks_url(&self.url, site));
        Ok(Box::pin(async move {
            let body = fetch_body(&client, &url, DUMP_FETCH_TIMEOUT, MAX_BODY_BYTES).await?;
            let mut dump = decode_dump(&url, &body)?;
            if dump.tasks.is_empty() {
                dump.tasks = site_tasks(&client, &tasks_url).await;
            }
            Ok(dump)
        }))
    }

    fn mark_baseline(&self) -> Result<SourceFuture<u64>, String> {
        let (client, url) = (self.client.clone(), self.at(baseline_url(&self.url)));
        Ok(Box::pin(
            async move { mark_baseline_at(&client, &url).await },
        ))
    }

    fn for_runtime(&self, name: &str) -> Option<Box<dyn Source>> {
        Some(Box::new(self.clone().with_runtime(name)))
    }
}

/// The site's oldest live tasks (ids, states, ages), without stacks, for the detail view.
/// A dump lists tasks only with their stacks (`debug=2`), too much for thousands of them,
/// so they come from the snapshot's task list; an exporter that cannot filter it by site
/// (older than this TUI) or any failure gives none, and the dump stands alone.
async fn site_tasks(client: &reqwest::Client, url: &str) -> Vec<DumpTask> {
    let Ok(body) = fetch_body(client, url, FETCH_TIMEOUT, MAX_BODY_BYTES).await else {
        return Vec::new();
    };
    let Ok(snapshot) = decode_snapshot(url, &body) else {
        return Vec::new();
    };
    snapshot
        .tasks
        .into_iter()
        .map(|t| DumpTask {
            id: t.id,
            site: t.site,
            state: t.state,
            age_seconds: t.age_seconds,
            idle_seconds: t.idle_seconds,
            polls: t.polls,
            stacks: Vec::new(),
        })
        .collect()
}

/// What the header shows for runtime `runtime` of the exporter at `url`:
/// `http://127.0.0.1:6060 runtime=io`.
pub fn runtime_label(url: &str, runtime: Option<&str>) -> String {
    match runtime {
        None => url.to_string(),
        Some(name) => format!("{url} runtime={name}"),
    }
}
