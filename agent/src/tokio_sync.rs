//! tokio's own locks, from tokio's resource tracing (feature `tokio-resources`): for
//! `tokio::sync::{Mutex, RwLock, Semaphore}` that a service cannot swap for
//! [`crate::sync`]'s (inside a dependency, say).
//!
//! tokio, built with its `tracing` feature and `--cfg tokio_unstable`, wraps each lock in a
//! `runtime.resource` span (type and creation site), reports its state changes as events
//! (`locked`, `write_locked`, `current_readers`, `permits`) and wraps every wait in an
//! `runtime.resource.async_op` span whose polls say whether they were ready. From these the
//! layer knows per lock: whether and by how many it is held, the permits left, which tasks
//! wait (the task that polled the async op) and since when, and acquisitions. What tokio
//! does not report: where a guard was taken, and which task holds it; the layer names the
//! task that took it as holder when the state change comes from inside a task (it does, for
//! `lock`/`read`/`write`), and says "(not reported by tokio)" for the acquire site.
//!
//! Costs: every state change and poll of an instrumented tokio lock goes through tracing
//! and one mutex-guarded table; opt in while diagnosing, like the lost-waker layer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Event, Metadata};
use tracing_subscriber::filter::{Filtered, LevelFilter};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::Agent;
use crate::model::LockKind;

/// Most tokio resources and waits tracked at once; more are ignored (and counted).
pub const MAX_TRACKED: usize = 100_000;

/// A tokio lock as the layer knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resource {
    pub(crate) kind: LockKind,
    /// `path:line:col` where it was created.
    pub(crate) created_at: String,
    pub(crate) locked: bool,
    pub(crate) write_locked: bool,
    pub(crate) readers: u64,
    pub(crate) permits: Option<u64>,
    /// Tasks that took it and have not given it back, as far as the events tell.
    pub(crate) holders: Vec<u64>,
    pub(crate) acquisitions: u64,
    pub(crate) contended: u64,
}

/// A wait for a tokio lock.
#[derive(Debug, Clone)]
pub(crate) struct AsyncOp {
    pub(crate) resource: u64,
    pub(crate) source: String,
    pub(crate) task: u64,
    pub(crate) since: Instant,
    pub(crate) pending: bool,
    pub(crate) ready: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) resources: HashMap<u64, Resource>,
    /// Internal resource span -> the lock it belongs to.
    internal: HashMap<u64, u64>,
    pub(crate) ops: HashMap<u64, AsyncOp>,
    pub(crate) dropped: u64,
}

/// The table a [`TokioResourceLayer`] fills and the agent reads.
#[derive(Default)]
pub(crate) struct Table {
    state: Mutex<State>,
}

impl Table {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The table against [`MAX_TRACKED`].
    pub(crate) fn usage(&self) -> crate::model::CapUsage {
        let state = self.lock();
        crate::model::CapUsage {
            cap: "tokio_resources".to_string(),
            capacity: MAX_TRACKED as u64,
            used: (state.resources.len() + state.ops.len()) as u64,
            dropped: state.dropped,
        }
    }
}

impl Agent {
    /// A tracing layer that follows tokio's own locks through tokio's resource tracing
    /// (feature `tokio-resources`); the agent's snapshots then list them among the locks
    /// (marked `tokio::sync::...`). Install it in the global subscriber like
    /// [`Agent::lost_waker_layer`] (see there), before the locks are created.
    pub fn tokio_resource_layer<S>(&self) -> Filtered<TokioResourceLayer, ResourceEvents, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let table = Arc::clone(self.inner.tokio_resources.get_or_init(Default::default));
        TokioResourceLayer { table }.with_filter(ResourceEvents)
    }
}

/// The layer (behind [`ResourceEvents`], its per-layer filter).
pub struct TokioResourceLayer {
    table: Arc<Table>,
}

/// Lets through tokio's resource spans and events only, for this layer alone.
#[derive(Debug, Clone, Copy)]
pub struct ResourceEvents;

impl ResourceEvents {
    fn wants(meta: &Metadata<'_>) -> bool {
        if meta.is_span() {
            meta.target().starts_with("tokio::") && meta.name().starts_with("runtime.resource")
        } else {
            meta.target().starts_with("runtime::resource::")
        }
    }
}

impl<S> Filter<S> for ResourceEvents {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        Self::wants(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

#[derive(Default)]
struct Fields {
    concrete_type: Option<String>,
    file: Option<String>,
    line: Option<u64>,
    col: Option<u64>,
    internal: bool,
    source: Option<String>,
    locked: Option<bool>,
    write_locked: Option<bool>,
    readers: Option<u64>,
    readers_op: Option<String>,
    permits: Option<u64>,
    permits_op: Option<String>,
    is_ready: Option<bool>,
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "is_internal" => self.internal = value,
            "locked" => self.locked = Some(value),
            "write_locked" => self.write_locked = Some(value),
            "is_ready" => self.is_ready = Some(value),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "loc.line" => self.line = Some(value),
            "loc.col" => self.col = Some(value),
            "current_readers" => self.readers = Some(value),
            "permits" => self.permits = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let v = Some(value.to_string());
        match field.name() {
            "concrete_type" => self.concrete_type = v,
            "loc.file" => self.file = v,
            "source" => self.source = v,
            "current_readers.op" => self.readers_op = v,
            "permits.op" => self.permits_op = v,
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, text.trim_matches('"'));
    }
}

fn kind_of(concrete_type: &str) -> Option<LockKind> {
    match concrete_type {
        "Mutex" => Some(LockKind::Mutex),
        "RwLock" => Some(LockKind::RwLock),
        "Semaphore" => Some(LockKind::Semaphore),
        _ => None,
    }
}

impl<S> Layer<S> for TokioResourceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        let mut state = self.table.lock();
        let full = state.resources.len() + state.ops.len() >= MAX_TRACKED;
        match attrs.metadata().name() {
            "runtime.resource" => {
                if f.internal {
                    if let Some(p) = parent {
                        let owner = state.internal.get(&p).copied().unwrap_or(p);
                        state.internal.insert(id.into_u64(), owner);
                    }
                    return;
                }
                let Some(kind) = f.concrete_type.as_deref().and_then(kind_of) else {
                    return;
                };
                if full {
                    state.dropped += 1;
                    return;
                }
                let created_at = match (&f.file, f.line, f.col) {
                    (Some(file), Some(l), Some(c)) => {
                        format!("{}:{l}:{c}", crate::site::display_path(file))
                    }
                    _ => "(unknown)".to_string(),
                };
                state.resources.insert(
                    id.into_u64(),
                    Resource {
                        kind,
                        created_at,
                        ..Resource::default()
                    },
                );
            }
            "runtime.resource.async_op" => {
                let Some(resource) = parent.filter(|p| state.resources.contains_key(p)) else {
                    return;
                };
                if full {
                    state.dropped += 1;
                    return;
                }
                state.ops.insert(
                    id.into_u64(),
                    AsyncOp {
                        resource,
                        source: f.source.unwrap_or_default(),
                        task: crate::sync::state::current_task(),
                        since: Instant::now(),
                        pending: false,
                        ready: false,
                    },
                );
            }
            _ => {}
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut f = Fields::default();
        event.record(&mut f);
        let task = crate::sync::state::current_task();
        let mut state = self.table.lock();
        match event.metadata().target() {
            "runtime::resource::state_update" => {
                let id = span.id().into_u64();
                let id = state.internal.get(&id).copied().unwrap_or(id);
                let Some(r) = state.resources.get_mut(&id) else {
                    return;
                };
                if let Some(locked) = f.locked {
                    r.locked = locked;
                    if locked {
                        r.holders = vec![task];
                    } else {
                        r.holders.clear();
                    }
                }
                if let Some(w) = f.write_locked {
                    r.write_locked = w;
                    if w {
                        r.holders = vec![task];
                    } else {
                        r.holders.clear();
                    }
                }
                if let Some(n) = f.readers {
                    match f.readers_op.as_deref() {
                        Some("add") => {
                            r.readers += n;
                            r.holders.push(task);
                        }
                        Some("sub") => {
                            r.readers = r.readers.saturating_sub(n);
                            if let Some(i) = r.holders.iter().position(|t| *t == task) {
                                r.holders.swap_remove(i);
                            } else {
                                r.holders.pop();
                            }
                        }
                        _ => r.readers = n,
                    }
                }
                if let Some(n) = f.permits {
                    let now = r.permits.unwrap_or(0);
                    r.permits = Some(match f.permits_op.as_deref() {
                        Some("add") => now + n,
                        Some("sub") => now.saturating_sub(n),
                        _ => n,
                    });
                }
            }
            "runtime::resource::poll_op" => {
                // Inside the async op's poll span, whose parent is the async op.
                let Some(op_id) = span.parent().map(|p| p.id().into_u64()) else {
                    return;
                };
                let Some(op) = state.ops.get_mut(&op_id) else {
                    return;
                };
                match f.is_ready {
                    Some(false) => op.pending = true,
                    Some(true) if !op.ready => {
                        op.ready = true;
                        let (resource, pending) = (op.resource, op.pending);
                        if let Some(r) = state.resources.get_mut(&resource) {
                            r.acquisitions += 1;
                            r.contended += u64::from(pending);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let id = id.into_u64();
        let mut state = self.table.lock();
        if state.ops.remove(&id).is_none() && state.resources.remove(&id).is_none() {
            state.internal.remove(&id);
        }
    }
}
