//! taskscope exporter: serves a [`taskscope::Agent`]'s data over HTTP, from a thread and
//! runtime of its own, so it keeps answering when every worker of the service's runtime is
//! stuck.
//!
//! | endpoint | what |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text format, read from the agent at scrape time |
//! | `GET /debug/taskscope/snapshot[?tasks=N]` | the [`taskscope::model::Snapshot`] as JSON, with up to N live tasks (oldest first, N ≤ 100000) |
//! | `GET /debug/taskscope/dump[?debug=1\|2][&format=json][&timeout=SECS][&trace=0][&site=SITE]` | a task dump ([`taskscope::model::Dump`]): groups by spawn site and await point (`debug=1`), every task (`debug=2`); 429 while another dump runs |
//! | `GET /debug/pprof/tasks[?timeout=SECS][&trace=0][&site=SITE]` | the dump as a gzipped pprof `profile.proto` ([`pprof`]): one sample per group, valued by its task count, for `go tool pprof`; 429 while another dump runs |
//! | `GET /` | this list |
//!
//! ```no_run
//! let mut builder = tokio::runtime::Builder::new_multi_thread();
//! builder.enable_all();
//! let agent = taskscope::install(&mut builder);
//! let runtime = builder.build().unwrap();
//! let exporter = taskscope_exporter::Exporter::new(agent)
//!     .bind("127.0.0.1:6060".parse().unwrap())
//!     .unwrap();
//! println!("taskscope exporter on http://{}", exporter.local_addr());
//! // ... run the service on `runtime`; the exporter stops when `exporter` is dropped.
//! # drop(runtime);
//! ```

mod auth;
mod dump_text;
mod locks_text;
mod metrics;
pub mod pprof;
mod routes;
pub mod serve;

use std::net::SocketAddr;
use std::thread::JoinHandle;

use taskscope::Agent;
use tokio::sync::oneshot;

pub use auth::{TOKEN_ENV, TOKEN_FILE_ENV, TOKEN_SCOPE_ENV, TokenError, TokenScope};

/// Default address: loopback only, as Go's pprof examples should have been.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6060";

/// Most live tasks one snapshot request may list.
pub const MAX_SNAPSHOT_TASKS: usize = 100_000;

/// Errors starting the exporter.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Several runtimes are served and one of their agents has no name.
    #[error(
        "an exporter serving several runtimes needs each agent named \
         (Agent::builder().runtime_name(..))"
    )]
    UnnamedRuntime,
    /// Two agents served by one exporter have the same name.
    #[error("two runtimes served by one exporter are both named {0:?}")]
    DuplicateRuntime(String),
    /// The exporter's thread or runtime could not be started.
    #[error("cannot start the exporter thread")]
    Start(#[source] std::io::Error),
    /// The token settings are wrong.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// An exporter not yet listening.
#[derive(Debug, Clone)]
pub struct Exporter {
    /// The runtimes served: the first answers requests without `?runtime=`.
    agents: Vec<Agent>,
    access: auth::Access,
    min_dump_interval: std::time::Duration,
}

/// Default least time between two traced task dumps served (see
/// [`Exporter::min_dump_interval`]).
pub const DEFAULT_MIN_DUMP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Exporter {
    /// An exporter for `agent`.
    pub fn new(agent: Agent) -> Self {
        Exporter {
            agents: vec![agent],
            access: auth::Access::default(),
            min_dump_interval: DEFAULT_MIN_DUMP_INTERVAL,
        }
    }

    /// Serves one more runtime's agent from the same address, for a process with several
    /// runtimes. Every agent served must then have a distinct
    /// [`runtime_name`](taskscope::AgentBuilder::runtime_name): metrics carry it as the
    /// `runtime` label, and the JSON, dump and pprof endpoints take `?runtime=NAME`
    /// (without it they answer for the first agent).
    ///
    /// ```
    /// let mut main = tokio::runtime::Builder::new_multi_thread();
    /// let web = taskscope::Agent::builder().runtime_name("web").install(&mut main);
    /// let mut io = tokio::runtime::Builder::new_multi_thread();
    /// let io_agent = taskscope::Agent::builder().runtime_name("io").install(&mut io);
    /// let exporter = taskscope_exporter::Exporter::new(web).runtime(io_agent).unwrap();
    /// # drop(exporter);
    /// ```
    pub fn runtime(mut self, agent: Agent) -> Result<Self, ExporterError> {
        self.agents.push(agent);
        let mut names = std::collections::HashSet::new();
        for agent in &self.agents {
            match agent.runtime_name() {
                None => return Err(ExporterError::UnnamedRuntime),
                Some(name) if !names.insert(name) => {
                    return Err(ExporterError::DuplicateRuntime(name.to_string()));
                }
                Some(_) => {}
            }
        }
        Ok(self)
    }

    /// Serves at most one traced task dump per `interval` (default
    /// [`DEFAULT_MIN_DUMP_INTERVAL`]): a traced dump pauses the service's runtime, so a
    /// client looping on the dump endpoints gets registry-only dumps in between (which
    /// never pause it), each saying why. `Duration::ZERO` turns the limit off.
    pub fn min_dump_interval(mut self, interval: std::time::Duration) -> Self {
        self.min_dump_interval = interval;
        self
    }

    /// Requires `Authorization: Bearer <token>` on the endpoints `scope` names; others
    /// get 401. Prefer [`Exporter::token_from_env`] in services.
    pub fn token(mut self, token: &str, scope: TokenScope) -> Result<Self, ExporterError> {
        self.access = auth::Access::token(token, scope)?;
        Ok(self)
    }

    /// Takes the token from `TASKSCOPE_TOKEN`, or from the file named by
    /// `TASKSCOPE_TOKEN_FILE`, with `TASKSCOPE_TOKEN_SCOPE=all|debug` (default all); stays
    /// open when neither is set.
    pub fn token_from_env(mut self) -> Result<Self, ExporterError> {
        self.access = auth::Access::from_env()?;
        Ok(self)
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving on a thread of its own.
    /// Returns once the socket is bound, so a bind error is reported here.
    pub fn bind(self, addr: SocketAddr) -> Result<ExporterHandle, ExporterError> {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .map_err(|source| ExporterError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ExporterError::Bind { addr, source })?;
        // A runtime without the agent's hooks: the exporter's own tasks are not the
        // service's, and it must not depend on the service's workers.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ExporterError::Start)?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        if !local_addr.ip().is_loopback() && self.access.is_open() {
            tracing::warn!(
                "taskscope exporter listens on {local_addr}, beyond loopback, without a token: \
                 anyone who reaches it can read the service's tasks and pause its runtime with \
                 task dumps; set {} (see the README, Security)",
                auth::TOKEN_ENV
            );
        }
        tracing::info!(
            "taskscope exporter listening on http://{local_addr} ({})",
            self.access.describe()
        );
        let app = routes::router(self.agents, self.access, self.min_dump_interval);
        let thread = std::thread::Builder::new()
            .name("taskscope-exporter".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("taskscope exporter cannot use its socket: {e}");
                            return;
                        }
                    };
                    serve::run(listener, app, stop_rx).await;
                });
            })
            .map_err(ExporterError::Start)?;
        Ok(ExporterHandle {
            local_addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A running exporter. Dropping it stops the server (without waiting); [`shutdown`]
/// stops it and waits for its thread.
///
/// [`shutdown`]: ExporterHandle::shutdown
#[derive(Debug)]
pub struct ExporterHandle {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ExporterHandle {
    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits for the exporter's thread to finish open requests.
    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ExporterHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
