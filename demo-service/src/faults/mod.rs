//! Faults the demo exhibits on purpose, one module each, switched on and off at run time
//! (`POST /faults/{name}`, `DELETE /faults/{name}`, `GET /faults`) or at start
//! (`--fault NAME`). Each module's doc says what it does, which real-world bug it mimics,
//! and what taskscope should show.
//!
//! A fault's [`Fault::start`] runs inside the service's runtime (so `tokio::spawn` there is
//! the service spawning) and returns an [`Active`] that stops it. Clients a fault needs run
//! on the [`Outside`] runtime, like real clients in another process.

pub mod lost_waker;
pub mod report_leak;
pub mod s10_reentrant_lock;
pub mod s11_block_on_in_runtime;
pub mod s1_idle_keepalive;
pub mod s2_reply_map;
pub mod s3_orphan_loop;
pub mod s4_recursive_read;
pub mod s5_guard_across_await;
pub mod s6_hot_mutex;
pub mod s7_never_yields;
pub mod s8_blocking_exhaustion;
pub mod s9_spawn_per_item;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use crate::app::AppState;
use crate::outside::Outside;

/// What a fault can use.
#[derive(Clone)]
pub struct FaultContext {
    /// Where its clients run.
    pub outside: Outside,
    /// Base URL of the service itself, for faults that send it requests.
    pub service_url: String,
    /// The service's shared state.
    pub state: AppState,
    /// The service runtime's `max_blocking_threads`.
    pub max_blocking_threads: usize,
}

/// A running fault.
pub struct Active {
    /// Switches it off: stops its tasks and clients, so that what it stranded can end.
    pub stop: Box<dyn FnOnce() + Send>,
    /// Details for `GET /faults` (counts so far and the like).
    pub status: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
}

impl Active {
    /// An active fault with nothing to report.
    pub fn new(stop: impl FnOnce() + Send + 'static) -> Self {
        Active {
            stop: Box::new(stop),
            status: Box::new(|| serde_json::Value::Null),
        }
    }

    /// Adds a status reporter.
    pub fn with_status(
        mut self,
        status: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.status = Box::new(status);
        self
    }
}

/// A fault the demo can switch on.
pub trait Fault: Send + Sync {
    /// Name used in URLs and `--fault`: `S1` … `S11`, or `leak`.
    fn name(&self) -> &'static str;
    /// One line: the bug it mimics.
    fn summary(&self) -> &'static str;
    /// Switches it on. Called within the service's runtime context.
    fn start(&self, ctx: &FaultContext) -> anyhow::Result<Active>;
}

/// Every fault, and which are on.
pub struct Faults {
    all: Vec<Box<dyn Fault>>,
    active: Mutex<BTreeMap<&'static str, Active>>,
    ctx: Mutex<Option<FaultContext>>,
}

/// One line of `GET /faults`.
#[derive(Debug, Serialize)]
pub struct FaultInfo {
    /// Name.
    pub name: &'static str,
    /// The bug it mimics.
    pub summary: &'static str,
    /// Whether it is on.
    pub on: bool,
    /// Details while on.
    pub status: serde_json::Value,
}

impl Faults {
    /// Every fault the demo has, all off.
    pub fn new() -> Arc<Faults> {
        let all: Vec<Box<dyn Fault>> = vec![
            Box::new(report_leak::ReportLeak),
            Box::new(s1_idle_keepalive::IdleKeepAlive),
            Box::new(s2_reply_map::ReplyMap),
            Box::new(s3_orphan_loop::OrphanLoop),
            Box::new(s4_recursive_read::RecursiveRead),
            Box::new(s5_guard_across_await::GuardAcrossAwait),
            Box::new(s6_hot_mutex::HotMutex),
            Box::new(s7_never_yields::NeverYields),
            Box::new(s8_blocking_exhaustion::BlockingExhaustion),
            Box::new(s9_spawn_per_item::SpawnPerItem),
            Box::new(s10_reentrant_lock::ReentrantLock),
            Box::new(s11_block_on_in_runtime::BlockOnInRuntime),
            Box::new(lost_waker::LostWakerGate),
        ];
        Arc::new(Faults {
            all,
            active: Mutex::new(BTreeMap::new()),
            ctx: Mutex::new(None),
        })
    }

    /// Sets what faults use; call once the service is up.
    pub fn set_context(&self, ctx: FaultContext) {
        *self.ctx.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx);
    }

    /// Names of every fault.
    pub fn names(&self) -> Vec<&'static str> {
        self.all.iter().map(|f| f.name()).collect()
    }

    fn find(&self, name: &str) -> Option<&dyn Fault> {
        self.all
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
            .map(|f| f.as_ref())
    }

    /// Whether the named fault is on.
    pub fn is_on(&self, name: &str) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// Switches a fault on (no-op if on). Must run within the service runtime's context.
    pub fn start(&self, name: &str) -> Result<&'static str, FaultError> {
        let fault = self.find(name).ok_or_else(|| FaultError::Unknown {
            name: name.to_string(),
            known: self.names(),
        })?;
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.contains_key(fault.name()) {
            return Ok(fault.name());
        }
        let ctx = self
            .ctx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(FaultError::NotReady)?;
        let running = fault
            .start(&ctx)
            .map_err(|e| FaultError::Failed(fault.name(), e.to_string()))?;
        active.insert(fault.name(), running);
        Ok(fault.name())
    }

    /// Switches a fault off (no-op if off).
    pub fn stop(&self, name: &str) -> Result<&'static str, FaultError> {
        let fault = self.find(name).ok_or_else(|| FaultError::Unknown {
            name: name.to_string(),
            known: self.names(),
        })?;
        let running = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(fault.name());
        if let Some(running) = running {
            (running.stop)();
        }
        Ok(fault.name())
    }

    /// Switches every fault off.
    pub fn stop_all(&self) {
        let all = std::mem::take(&mut *self.active.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, running) in all {
            (running.stop)();
        }
    }

    /// Every fault with its state.
    pub fn list(&self) -> Vec<FaultInfo> {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        self.all
            .iter()
            .map(|f| {
                let running = active.get(f.name());
                FaultInfo {
                    name: f.name(),
                    summary: f.summary(),
                    on: running.is_some(),
                    status: running.map_or(serde_json::Value::Null, |r| (r.status)()),
                }
            })
            .collect()
    }
}

/// Why a fault could not be switched.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// No such fault.
    #[error("no fault named {name:?}; faults: {}", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every fault.
        known: Vec<&'static str>,
    },
    /// The service is still starting.
    #[error("the service is still starting")]
    NotReady,
    /// The fault failed to start.
    #[error("fault {0} failed to start: {1}")]
    Failed(&'static str, String),
}

impl FaultError {
    fn status(&self) -> StatusCode {
        match self {
            FaultError::Unknown { .. } => StatusCode::NOT_FOUND,
            FaultError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            FaultError::Failed(..) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `GET /faults`.
pub async fn list(State(state): State<AppState>) -> Json<Vec<FaultInfo>> {
    Json(state.faults.list())
}

/// `POST /faults/{name}`.
pub async fn switch_on(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FaultInfo>, (StatusCode, String)> {
    let name = state
        .faults
        .start(&name)
        .map_err(|e| (e.status(), format!("{e}\n")))?;
    Ok(Json(info(&state, name)))
}

/// `DELETE /faults/{name}`.
pub async fn switch_off(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FaultInfo>, (StatusCode, String)> {
    let name = state
        .faults
        .stop(&name)
        .map_err(|e| (e.status(), format!("{e}\n")))?;
    Ok(Json(info(&state, name)))
}

fn info(state: &AppState, name: &str) -> FaultInfo {
    state
        .faults
        .list()
        .into_iter()
        .find(|f| f.name == name)
        .expect("a fault just switched exists")
}
