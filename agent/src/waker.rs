//! Lost-waker detection from tokio's waker events (feature `lost-waker`).
//!
//! A task that is idle and whose wakers have all been dropped can never be polled again
//! (short of being aborted or the runtime shutting down): a certain leak. tokio reports every
//! operation on a task's waker as a `tracing` event when it is built with its `tracing` cargo
//! feature and `--cfg tokio_unstable`; [`LostWakerLayer`] counts them per task.
//!
//! # What tokio reports (1.54)
//!
//! - Each task is wrapped in a span (target `tokio::task`, name `runtime.spawn`) with fields
//!   `kind`, `task.id` (tokio's task id, the one in [`tokio::task::Id`]) and `loc.*`. It is
//!   entered for every poll, and closed when the task's future is dropped (completion,
//!   abort, runtime shutdown). `block_on` gets such a span too (`kind = "block_on"`, not a
//!   task); `spawn_blocking` uses target `tokio::task::blocking`. Both are ignored.
//! - Each clone, drop, wake (by value) and wake-by-ref of a task's waker is an event (target
//!   `tokio::task::waker`) with `op` = `waker.clone` / `waker.drop` / `waker.wake` /
//!   `waker.wake_by_ref` and `task.id` = the id of the task's **span** (not tokio's task id).
//!   The waker passed to `poll` is borrowed and never reported; a future that needs to be
//!   woken later must clone it.
//!
//! Per task the layer keeps the number of live wakers (clone +1, drop −1, wake −1 since it
//! consumes the waker, wake-by-ref 0), whether it has been polled, whether it is in a poll
//! now, and whether it was woken since its last poll started (a woken task is scheduled and
//! will be polled again even with no waker left). A task is reported when it has been
//! polled, is not in a poll, was not woken since, and holds no waker: the same test as
//! tokio-console's `LostWaker` warning. The agent's snapshot then keeps only tasks that its
//! own registry knows are live and have been idle for a while.
//!
//! # Costs and bounds
//!
//! The layer filters per layer: it never disables other layers' spans or events, and tokio's
//! other instrumentation (resource and async-op spans, poll events) stays off unless another
//! layer asks for it. Per task it keeps a 16-byte slot in one of 64 mutex-guarded shards
//! chosen by span id, so an event takes one uncontended shard lock, never a global one. At
//! most [`DEFAULT_LOST_WAKER_CAPACITY`] tasks are tracked (see
//! [`Agent::lost_waker_layer_with_capacity`]); tasks beyond are not tracked, never reported,
//! and counted ([`LostWakerStats::over_capacity`]). A slot is freed when the task's span
//! closes. See `agent/benches/lost_waker.rs` and the README for measured costs.
//!
//! # Requirements
//!
//! The subscriber holding the layer must be the **global** default
//! ([`tracing::subscriber::set_global_default`]): waker events are sent to the default
//! subscriber of the thread that touches the waker (any worker, or any thread at all), and a
//! thread that sends them elsewhere makes waker counts wrong. The layer checks this on each
//! thread that polls a tracked task; if a thread's default subscriber is not the one holding
//! this layer, the layer reports nothing from then on ([`LostWakerStats::misrouted_threads`]).
//! Static level filters that drop TRACE (`tracing/max_level_*` features) or a global filter
//! that disables TRACE for `tokio::task` turn the detector off (nothing is tracked). Do not
//! filter the layer itself such that it sees task spans but not waker events.

use std::any::{Any, TypeId};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Dispatch, Event, Metadata};
use tracing_subscriber::filter::{Filtered, LevelFilter};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::Agent;
use crate::leaks::WakerSource;

/// Default cap on tasks tracked by a [`LostWakerLayer`].
pub const DEFAULT_LOST_WAKER_CAPACITY: usize = 1 << 20;

/// Largest accepted capacity (see [`Agent::lost_waker_layer_with_capacity`]).
pub const MAX_LOST_WAKER_CAPACITY: usize = 1 << 24;

const SPAWN_TARGET: &str = "tokio::task";
const SPAWN_NAME: &str = "runtime.spawn";
const WAKER_TARGET: &str = "tokio::task::waker";

impl Agent {
    /// A tracing layer that finds tasks which lost their waker (feature `lost-waker`), with
    /// room for [`DEFAULT_LOST_WAKER_CAPACITY`] tasks.
    ///
    /// The first call makes the agent's waker table; from then on the agent's snapshots
    /// report [`crate::model::FindingKind::LostWaker`] findings for live tasks that have
    /// been idle a while with no waker left. Later calls return layers sharing that table.
    ///
    /// Put the layer in the process's **global** subscriber before the runtime spawns
    /// tasks (see the [module docs](crate::waker) for why), and build with `--cfg
    /// tokio_unstable` (tokio's waker events need it, like the agent's hooks):
    ///
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// let mut builder = tokio::runtime::Builder::new_multi_thread();
    /// builder.worker_threads(2).enable_all();
    /// let agent = taskscope::install(&mut builder);
    /// let subscriber = tracing_subscriber::registry().with(agent.lost_waker_layer());
    /// tracing::subscriber::set_global_default(subscriber).unwrap();
    /// let rt = builder.build().unwrap();
    ///
    /// // A future that returns Pending without keeping its waker: nothing can wake it.
    /// let lost = rt.spawn(std::future::poll_fn(|_cx| std::task::Poll::<()>::Pending));
    /// let id: u64 = lost.id().to_string().parse().unwrap();
    ///
    /// let layer = agent.lost_waker_layer(); // same table
    /// while !layer.zero_waker_tasks().contains(&id) {
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    /// }
    /// // Once it has been idle for a second, agent.snapshot().findings says so too.
    /// ```
    pub fn lost_waker_layer(&self) -> LostWakerLayer {
        self.lost_waker_layer_with_capacity(DEFAULT_LOST_WAKER_CAPACITY)
    }

    /// Like [`Agent::lost_waker_layer`], tracking at most `capacity` tasks at once (clamped
    /// to 1..=[`MAX_LOST_WAKER_CAPACITY`]). The capacity counts only on the first call,
    /// which makes the table; later calls share it as it is.
    pub fn lost_waker_layer_with_capacity(&self, capacity: usize) -> LostWakerLayer {
        // Every table this module stored in an agent, so that later calls find the concrete
        // table behind the agent's `Arc<dyn WakerSource>`. Holding the lock also serializes
        // this function's `set`s.
        static TABLES: Mutex<Vec<Weak<Table>>> = Mutex::new(Vec::new());
        let mut tables = lock(&TABLES);
        tables.retain(|t| t.strong_count() > 0);
        let found = |stored: &Arc<dyn WakerSource>, tables: &[Weak<Table>]| {
            let want = Arc::as_ptr(stored) as *const ();
            tables
                .iter()
                .filter_map(Weak::upgrade)
                .find(|t| std::ptr::eq(Arc::as_ptr(t) as *const (), want))
        };
        if let Some(stored) = self.inner.wakers.get() {
            // Not one of ours only if something else set the agent's source; then the layer
            // still works, on a table the agent does not read.
            let table = found(stored, &tables).unwrap_or_else(|| Arc::new(Table::new(capacity)));
            return LostWakerLayer::new(table);
        }
        let table = Arc::new(Table::new(capacity));
        let source: Arc<dyn WakerSource> = table.clone();
        match self.inner.wakers.set(source) {
            Ok(()) => {
                tables.push(Arc::downgrade(&table));
                LostWakerLayer::new(table)
            }
            Err(_) => {
                let stored = self.inner.wakers.get().expect("set failed, so it is set");
                LostWakerLayer::new(found(stored, &tables).unwrap_or(table))
            }
        }
    }
}

/// A `tracing_subscriber` layer that counts each tokio task's wakers from tokio's waker
/// events and finds tasks that lost them all (feature `lost-waker`).
///
/// Made by [`Agent::lost_waker_layer`], which also connects it to the agent's snapshots;
/// see there for how to install it. Clones share the same table; a clone must itself be
/// added to a subscriber to receive events (it is then a second observer of the same
/// events: add only one).
///
/// The layer filters what it receives per layer (like a layer wrapped in
/// [`Layer::with_filter`]): other layers in the same subscriber still see everything they
/// ask for.
pub struct LostWakerLayer {
    table: Arc<Table>,
    /// The per-layer-filtered core, made when the layer is added to a subscriber `S` (it
    /// needs `S`'s filter id): a `Filtered<Core, TaskEvents, S>`.
    stack: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for LostWakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LostWakerLayer")
            .field("stats", &self.stats())
            .field("attached", &self.stack.is_some())
            .finish()
    }
}

impl Clone for LostWakerLayer {
    /// A layer on the same table, not yet added to a subscriber.
    fn clone(&self) -> Self {
        LostWakerLayer::new(Arc::clone(&self.table))
    }
}

/// Counters of a [`LostWakerLayer`]'s table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LostWakerStats {
    /// Tasks tracked now (spawned, span not closed yet).
    pub tracked: u64,
    /// Most tasks tracked at once.
    pub capacity: u64,
    /// Tasks never tracked because the table was full; they are never reported.
    pub over_capacity: u64,
    /// Tasks whose waker events did not add up (more drops than clones: events were lost);
    /// they are never reported.
    pub unbalanced: u64,
    /// Threads that polled a tracked task while their default subscriber was not the one
    /// holding this layer. Non-zero means waker events may be lost, so the layer reports no
    /// task at all: install the subscriber as the global default.
    pub misrouted_threads: u64,
}

impl LostWakerLayer {
    fn new(table: Arc<Table>) -> Self {
        LostWakerLayer { table, stack: None }
    }

    /// tokio task ids (as `u64`, like [`JoinHandle::id`](tokio::task::JoinHandle::id)
    /// printed) of tracked tasks that have been polled, are not being polled, were not woken
    /// since their last poll started, and hold no waker: nothing can wake them. Sorted.
    ///
    /// These are the layer's raw facts; the agent's snapshot also checks its own registry
    /// (the task is live and has been idle a while) before reporting a finding. Empty while
    /// [`LostWakerStats::misrouted_threads`] is non-zero.
    pub fn zero_waker_tasks(&self) -> Vec<u64> {
        self.table.zero_waker_tasks()
    }

    /// The table's counters.
    pub fn stats(&self) -> LostWakerStats {
        self.table.stats()
    }

    fn core<S: 'static>(&self) -> Option<&Filtered<Core, TaskEvents, S>> {
        self.stack.as_deref()?.downcast_ref()
    }
}

// Every method goes to the per-layer-filtered core. A plain layer that declined tokio's other
// callsites (`Interest::never`, `enabled = false`) would disable them for every layer of the
// subscriber; a `Filtered` layer only declines them for itself.
impl<S> Layer<S> for LostWakerLayer
where
    S: Subscriber + for<'a> LookupSpan<'a> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        if let Some(c) = self.core::<S>() {
            c.on_register_dispatch(subscriber);
        }
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        let mut core: Filtered<Core, TaskEvents, S> = Filtered::new(
            Core {
                table: Arc::clone(&self.table),
            },
            TaskEvents,
        );
        core.on_layer(subscriber);
        self.stack = Some(Box::new(core));
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.core::<S>()
            .map_or_else(Interest::always, |c| c.register_callsite(metadata))
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.core::<S>().is_none_or(|c| c.enabled(metadata, ctx))
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(c) = self.core::<S>() {
            c.on_new_span(attrs, id, ctx);
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.core::<S>().and_then(|c| c.max_level_hint())
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(c) = self.core::<S>() {
            c.on_record(span, values, ctx);
        }
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        if let Some(c) = self.core::<S>() {
            c.on_follows_from(span, follows, ctx);
        }
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.core::<S>().is_none_or(|c| c.event_enabled(event, ctx))
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if let Some(c) = self.core::<S>() {
            c.on_event(event, ctx);
        }
    }

    // Enter, exit and close go straight to the table: `Filtered` would first look the span
    // up in the registry to see whether its filter enabled it, and the table answers that as
    // cheaply (it holds only the task spans the filter let through).
    fn on_enter(&self, id: &Id, _: Context<'_, S>) {
        self.table.on_enter(id.into_u64());
    }

    fn on_exit(&self, id: &Id, _: Context<'_, S>) {
        self.table.apply(id.into_u64(), Op::Exit);
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        self.table.remove(id.into_u64());
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        if let Some(c) = self.core::<S>() {
            c.on_id_change(old, new, ctx);
        }
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // Forwarded so that the subscriber sees the per-layer filter (and its id) inside.
        // Safety: the pointers returned point into `self.stack`, which lives as long as
        // `self`; the caller's contract is the one of `Layer::downcast_raw`.
        unsafe { self.core::<S>()?.downcast_raw(id) }
    }
}

/// The per-layer filter: task spans and waker events only.
#[derive(Debug, Clone, Copy)]
struct TaskEvents;

impl TaskEvents {
    fn wants(meta: &Metadata<'_>) -> bool {
        match meta.target() {
            SPAWN_TARGET => meta.is_span() && meta.name() == SPAWN_NAME,
            WAKER_TARGET => meta.is_event(),
            _ => false,
        }
    }
}

impl<S> Filter<S> for TaskEvents {
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

/// The layer proper, behind the per-layer filter: new task spans and waker events.
struct Core {
    table: Arc<Table>,
}

impl<S> Layer<S> for Core
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let meta = attrs.metadata();
        if meta.target() != SPAWN_TARGET || meta.name() != SPAWN_NAME {
            return;
        }
        let mut fields = SpawnFields::default();
        attrs.record(&mut fields);
        if fields.block_on {
            return;
        }
        // tokio before 1.37 had no `task.id` field: nothing to report such tasks by.
        if let Some(task) = fields.task {
            self.table.insert(id.into_u64(), task);
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != WAKER_TARGET {
            return;
        }
        let mut fields = WakerFields::default();
        event.record(&mut fields);
        if let (Some(op), Some(span)) = (fields.op, fields.span) {
            self.table.apply(span, Op::Waker(op));
        }
    }
}

#[derive(Default)]
struct SpawnFields {
    task: Option<u64>,
    block_on: bool,
}

impl Visit for SpawnFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "task.id" {
            self.task = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "task.id" {
            self.task = u64::try_from(value).ok();
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "kind" {
            self.block_on = value == "block_on";
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // tokio records `kind` with `%`: a Display value, seen here as Debug.
        if field.name() == "kind" {
            let mut m = Matches {
                rest: "block_on",
                ok: true,
            };
            self.block_on =
                fmt::write(&mut m, format_args!("{value:?}")).is_ok() && m.ok && m.rest.is_empty();
        }
    }
}

/// Compares formatted output with a string without allocating.
struct Matches {
    rest: &'static str,
    ok: bool,
}

impl fmt::Write for Matches {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.rest.strip_prefix(s) {
            Some(rest) if self.ok => self.rest = rest,
            _ => self.ok = false,
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WakeOp {
    Clone,
    Drop,
    Wake,
    WakeByRef,
}

#[derive(Default)]
struct WakerFields {
    op: Option<WakeOp>,
    span: Option<u64>,
}

impl Visit for WakerFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "task.id" {
            self.span = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "op" {
            self.op = match value {
                "waker.clone" => Some(WakeOp::Clone),
                "waker.drop" => Some(WakeOp::Drop),
                "waker.wake" => Some(WakeOp::Wake),
                "waker.wake_by_ref" => Some(WakeOp::WakeByRef),
                _ => None,
            };
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

/// Polled at least once.
const POLLED: u8 = 1;
/// In a poll now (span entered).
const RUNNING: u8 = 2;
/// Woken since its last poll started: scheduled, will be polled again.
const WOKEN: u8 = 4;
/// Its events did not add up: never reported.
const UNSURE: u8 = 8;

/// Something that happened to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Enter,
    Exit,
    Waker(WakeOp),
}

/// One task's state: live wakers and flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct State {
    wakers: u32,
    flags: u8,
}

impl State {
    /// Applies `op`; whether this made the state unsure.
    fn apply(&mut self, op: Op) -> bool {
        let sure = self.flags & UNSURE == 0;
        match op {
            Op::Enter => self.flags = (self.flags | POLLED | RUNNING) & !WOKEN,
            Op::Exit => self.flags &= !RUNNING,
            Op::Waker(WakeOp::Clone) => self.wakers = self.wakers.saturating_add(1),
            Op::Waker(WakeOp::Drop) => self.drop_waker(),
            Op::Waker(WakeOp::Wake) => {
                self.drop_waker();
                self.flags |= WOKEN;
            }
            Op::Waker(WakeOp::WakeByRef) => self.flags |= WOKEN,
        }
        sure && self.flags & UNSURE != 0
    }

    fn drop_waker(&mut self) {
        match self.wakers.checked_sub(1) {
            Some(n) => self.wakers = n,
            None => self.flags |= UNSURE,
        }
    }

    fn lost(&self) -> bool {
        self.wakers == 0 && self.flags & (POLLED | RUNNING | WOKEN | UNSURE) == POLLED
    }
}

/// A slot of the direct-mapped table. `state` packs a 24-bit tag of the span id (bits
/// 40..64; 0 = free, 1 = being filled), the flags (32..40) and the waker count (0..32), so
/// that one compare-and-swap both checks that the slot is this span's and updates it.
#[derive(Default)]
struct Slot {
    state: AtomicU64,
    task: AtomicU64,
}

const TAG_SHIFT: u32 = 40;
const CLAIMED: u64 = 1 << TAG_SHIFT;

fn pack(tag: u64, s: State) -> u64 {
    tag << TAG_SHIFT | u64::from(s.flags) << 32 | u64::from(s.wakers)
}

fn unpack(word: u64) -> State {
    State {
        wakers: word as u32,
        flags: (word >> 32) as u8,
    }
}

/// Span ids from `tracing_subscriber`'s registry are a slab index + 1: the slot's address in
/// its thread's pages (bits 0..38, dense from 0), the creating thread's slab shard (38..51),
/// and a generation (51..64) bumped when the slot is reused. The direct table's index keeps
/// the address, so consecutive spans sit in consecutive slots (tokio polls tasks mostly in
/// spawn order: the accesses stream), and puts each thread's run at a different offset
/// (bit-reversed shard: 0, 1/2, 1/4, 3/4, ... of the table). Another layout only means more
/// collisions, which go to the overflow map: slower, never wrong.
const ADDR_BITS: u32 = 38;
const SHARD_ID_BITS: u32 = 13;

/// The tag tells spans sharing a slot apart (and a closed span's late events from the slot's
/// next owner): 24 bits of a hash of the whole id, never 0 or 1.
fn tag_of(span: u64) -> u64 {
    let t = span.wrapping_mul(SHARD_MIX) >> TAG_SHIFT;
    if t < 2 { t + 2 } else { t }
}

/// Largest direct-mapped table: 2^18 slots of 16 bytes (4 MiB); tasks beyond it, or whose
/// slot is taken, go to the overflow map.
const MAX_DIRECT_BITS: u32 = 18;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Spreads span ids over the overflow map's shards, and makes tags.
const SHARD_MIX: u64 = 0x9E37_79B9_7F4A_7C15;
/// Hashes span ids inside a shard (a different multiplier, so that the map's own hash bits
/// do not repeat the shard's).
const MAP_MIX: u64 = 0xD6E8_FEB8_6659_FD93;

#[derive(Default)]
struct SpanIdHasher(u64);

impl Hasher for SpanIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MAP_MIX);
        }
    }

    fn write_u64(&mut self, x: u64) {
        let h = x.wrapping_mul(MAP_MIX);
        self.0 = h ^ (h >> 32);
    }
}

/// Overflow entry: tokio task id and state.
type Map = HashMap<u64, (u64, State), BuildHasherDefault<SpanIdHasher>>;

#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Map>);

/// The waker table shared by a layer and its agent: a lock-free direct-mapped table, and a
/// sharded map for tasks whose slot is taken.
struct Table {
    direct: Box<[Slot]>,
    direct_bits: u32,
    overflow: Box<[Shard]>,
    /// Entries in `overflow`, so that a miss in the direct table (another layer's span, a
    /// closed task's late event) costs no lock while the overflow is empty.
    overflow_len: AtomicUsize,
    capacity: usize,
    tracked: AtomicUsize,
    over_capacity: AtomicU64,
    unbalanced: AtomicU64,
    misrouted_threads: AtomicU64,
}

thread_local! {
    /// The table this thread last confirmed it routes waker events to (address), so that
    /// the check costs one thread-local read per poll.
    static ROUTED_TO: Cell<usize> = const { Cell::new(0) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Table {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_LOST_WAKER_CAPACITY);
        let bits = capacity.next_power_of_two().trailing_zeros();
        Self::with_direct_bits(capacity, bits.clamp(6, MAX_DIRECT_BITS))
    }

    fn with_direct_bits(capacity: usize, direct_bits: u32) -> Self {
        Table {
            direct: (0..1usize << direct_bits)
                .map(|_| Slot::default())
                .collect(),
            direct_bits,
            overflow: (0..SHARDS).map(|_| Shard::default()).collect(),
            overflow_len: AtomicUsize::new(0),
            capacity,
            tracked: AtomicUsize::new(0),
            over_capacity: AtomicU64::new(0),
            unbalanced: AtomicU64::new(0),
            misrouted_threads: AtomicU64::new(0),
        }
    }

    #[inline]
    fn slot(&self, span: u64) -> &Slot {
        let idx = span.wrapping_sub(1);
        let addr = idx & ((1 << ADDR_BITS) - 1);
        let shard = (idx >> ADDR_BITS) & ((1 << SHARD_ID_BITS) - 1);
        let offset = u64::from((shard as u32).reverse_bits()) >> (32 - self.direct_bits);
        let mask = (1u64 << self.direct_bits) - 1;
        &self.direct[(addr.wrapping_add(offset) & mask) as usize]
    }

    #[inline]
    fn shard(&self, span: u64) -> MutexGuard<'_, Map> {
        let i = (span.wrapping_mul(SHARD_MIX) >> (64 - SHARD_BITS)) as usize;
        lock(&self.overflow[i].0)
    }

    fn insert(&self, span: u64, task: u64) {
        if self.tracked.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
            self.over_capacity.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // No event for the span can come before this returns: tokio has not seen its id.
        let cell = self.slot(span);
        if cell
            .state
            .compare_exchange(0, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            cell.task.store(task, Ordering::Release);
            cell.state
                .store(pack(tag_of(span), State::default()), Ordering::Release);
            return;
        }
        let mut map = self.shard(span);
        if map.insert(span, (task, State::default())).is_some() {
            // A span id reused without a close: the old entry is gone, count it once.
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.overflow_len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Applies `op` to the span's task; whether the span is tracked.
    #[inline]
    fn apply(&self, span: u64, op: Op) -> bool {
        let tag = tag_of(span);
        let cell = self.slot(span);
        // Relaxed is enough: all of a task's operations are read-modify-writes of this one
        // word, and their order in it follows the order in which they happened (a waker
        // is cloned before the clone is dropped, on whatever threads).
        let mut word = cell.state.load(Ordering::Relaxed);
        while word >> TAG_SHIFT == tag {
            let mut state = unpack(word);
            let unsure = state.apply(op);
            match cell.state.compare_exchange_weak(
                word,
                pack(tag, state),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if unsure {
                        self.unbalanced.fetch_add(1, Ordering::Relaxed);
                    }
                    return true;
                }
                Err(now) => word = now,
            }
        }
        if self.overflow_len.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let unsure = match self.shard(span).get_mut(&span) {
            Some((_, state)) => state.apply(op),
            None => return false,
        };
        if unsure {
            self.unbalanced.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn remove(&self, span: u64) {
        let tag = tag_of(span);
        let cell = self.slot(span);
        let mut word = cell.state.load(Ordering::Relaxed);
        while word >> TAG_SHIFT == tag {
            match cell
                .state
                .compare_exchange_weak(word, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.tracked.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                Err(now) => word = now,
            }
        }
        if self.overflow_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = self.shard(span);
        if map.remove(&span).is_some() {
            self.overflow_len.fetch_sub(1, Ordering::Relaxed);
            self.tracked.fetch_sub(1, Ordering::Relaxed);
            // Give memory back after a burst: at most half empty, amortized O(1).
            if map.capacity() > 256 && map.len() * 8 < map.capacity() {
                let len = map.len();
                map.shrink_to(len * 2);
            }
        }
    }

    fn on_enter(&self, span: u64) {
        if self.apply(span, Op::Enter) {
            self.check_thread();
        }
    }

    /// Confirms once per thread (and table) that this thread's default subscriber holds
    /// this table's layer, so that the waker events it emits come here.
    #[inline]
    fn check_thread(&self) {
        let me = self as *const Table as usize;
        if ROUTED_TO.try_with(|r| r.replace(me)).unwrap_or(me) != me {
            self.verify_thread();
        }
    }

    #[cold]
    fn verify_thread(&self) {
        // Inside another dispatch on this thread `get_default` answers "none" whatever the
        // thread's subscriber; tokio never polls a task there, and the mistake would only
        // turn reports off.
        let routed = tracing::dispatcher::get_default(|d| {
            d.downcast_ref::<LostWakerLayer>()
                .is_some_and(|layer| std::ptr::eq(Arc::as_ptr(&layer.table), self))
        });
        if !routed {
            self.misrouted_threads.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn zero_waker_tasks(&self) -> Vec<u64> {
        if self.misrouted_threads.load(Ordering::Relaxed) > 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for cell in self.direct.iter() {
            let word = cell.state.load(Ordering::Acquire);
            if word >> TAG_SHIFT < 2 || !unpack(word).lost() {
                continue;
            }
            let task = cell.task.load(Ordering::Acquire);
            // The slot may have changed hands meanwhile; the new owner's word differs (a
            // fresh task is not yet polled).
            if cell.state.load(Ordering::Acquire) == word {
                out.push(task);
            }
        }
        if self.overflow_len.load(Ordering::Relaxed) > 0 {
            for shard in self.overflow.iter() {
                let map = lock(&shard.0);
                out.extend(map.values().filter(|(_, s)| s.lost()).map(|(t, _)| *t));
            }
        }
        out.sort_unstable();
        out
    }

    fn stats(&self) -> LostWakerStats {
        LostWakerStats {
            tracked: self.tracked.load(Ordering::Relaxed) as u64,
            capacity: self.capacity as u64,
            over_capacity: self.over_capacity.load(Ordering::Relaxed),
            unbalanced: self.unbalanced.load(Ordering::Relaxed),
            misrouted_threads: self.misrouted_threads.load(Ordering::Relaxed),
        }
    }
}

impl WakerSource for Table {
    fn zero_waker_tasks(&self) -> Vec<u64> {
        Table::zero_waker_tasks(self)
    }

    fn usage(&self) -> crate::model::CapUsage {
        let stats = self.stats();
        crate::model::CapUsage {
            cap: "lost_waker_tasks".to_string(),
            capacity: stats.capacity,
            used: stats.tracked,
            dropped: stats.over_capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The state machine, driven by hand-made spans and events shaped like tokio's, on one
    //! thread with a scoped subscriber.

    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn spawn_span(task: u64) -> tracing::Span {
        tracing::trace_span!(target: "tokio::task", parent: None, "runtime.spawn",
            kind = %"task", task.id = task, loc.file = "x.rs", loc.line = 1u32, loc.col = 1u32)
    }

    fn op(span: &tracing::Span, op: &'static str) {
        let id = span.id().expect("enabled").into_u64();
        tracing::trace!(target: "tokio::task::waker", op = op, task.id = id);
    }

    fn poll(span: &tracing::Span, during: impl FnOnce()) {
        let _e = span.enter();
        during();
    }

    #[test]
    fn counts_wakers_and_reports_only_idle_tasks_with_none() {
        let layer = LostWakerLayer::new(Arc::new(Table::new(100)));
        let view = layer.clone();
        let _g = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

        let a = spawn_span(7);
        assert_eq!(view.zero_waker_tasks(), Vec::<u64>::new(), "never polled");
        poll(&a, || {});
        assert_eq!(view.zero_waker_tasks(), vec![7], "polled, kept no waker");

        // Polled, keeps a clone: not lost; its wake (by value) leaves it scheduled.
        poll(&a, || op(&a, "waker.clone"));
        assert!(view.zero_waker_tasks().is_empty());
        op(&a, "waker.wake");
        assert!(view.zero_waker_tasks().is_empty(), "woken, not yet polled");
        poll(&a, || {
            assert!(view.zero_waker_tasks().is_empty(), "running");
        });
        assert_eq!(view.zero_waker_tasks(), vec![7]);

        // wake_by_ref during its own poll (yield): scheduled again.
        poll(&a, || op(&a, "waker.wake_by_ref"));
        assert!(view.zero_waker_tasks().is_empty());

        // Two clones, one dropped: still wakeable; both dropped: lost.
        poll(&a, || {
            op(&a, "waker.clone");
            op(&a, "waker.clone");
        });
        op(&a, "waker.drop");
        assert!(view.zero_waker_tasks().is_empty());
        op(&a, "waker.drop");
        assert_eq!(view.zero_waker_tasks(), vec![7]);

        // More drops than clones: events went missing, never reported again.
        op(&a, "waker.drop");
        assert!(view.zero_waker_tasks().is_empty());
        assert_eq!(view.stats().unbalanced, 1);

        // Closing frees the slot; a late drop for the closed span changes nothing.
        let id = a.id().unwrap().into_u64();
        drop(a);
        assert_eq!(view.stats().tracked, 0);
        tracing::trace!(target: "tokio::task::waker", op = "waker.drop", task.id = id);
        assert_eq!(view.stats().unbalanced, 1);
        assert_eq!(view.stats().misrouted_threads, 0);
    }

    #[test]
    fn ignores_block_on_and_other_spans_and_keeps_to_its_capacity() {
        let layer = LostWakerLayer::new(Arc::new(Table::new(2)));
        let view = layer.clone();
        let _g = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

        let block_on = tracing::trace_span!(target: "tokio::task", parent: None,
            "runtime.spawn", kind = %"block_on", task.id = 1u64);
        let other = tracing::info_span!("runtime.spawn", task.id = 2u64);
        let no_id = tracing::trace_span!(target: "tokio::task", "runtime.spawn", kind = %"task");
        assert_eq!(view.stats().tracked, 0);
        drop((block_on, other, no_id));

        let spans: Vec<_> = (10..13).map(spawn_span).collect();
        for s in &spans {
            poll(s, || {});
        }
        let stats = view.stats();
        assert_eq!((stats.tracked, stats.over_capacity), (2, 1));
        assert_eq!(view.zero_waker_tasks(), vec![10, 11]);
        drop(spans);
        assert_eq!(view.stats().tracked, 0);
    }

    #[test]
    fn slots_shared_by_spans_overflow_and_late_events_miss() {
        let t = Table::with_direct_bits(100, 6);
        let enter = |span| assert!(t.apply(span, Op::Enter));
        // Ids 1 and 65 are slab addresses 0 and 64: the same slot of 64.
        t.insert(1, 10);
        t.insert(65, 11);
        assert_eq!(t.overflow_len.load(Ordering::Relaxed), 1);
        enter(1);
        enter(65);
        assert!(t.apply(1, Op::Exit) && t.apply(65, Op::Exit));
        assert_eq!(t.zero_waker_tasks(), vec![10, 11]);
        assert!(t.apply(65, Op::Waker(WakeOp::Clone)));
        assert_eq!(t.zero_waker_tasks(), vec![10]);
        // 1 ends; its slot goes to 129 (same address, next generation in real ids).
        t.remove(1);
        t.insert(129, 12);
        assert_eq!(
            t.overflow_len.load(Ordering::Relaxed),
            1,
            "129 took the free slot"
        );
        // A late drop of 1's last waker must not touch 129.
        assert!(!t.apply(1, Op::Waker(WakeOp::Drop)));
        enter(129);
        assert!(t.apply(129, Op::Exit));
        assert_eq!(t.zero_waker_tasks(), vec![12]);
        t.remove(65);
        t.remove(129);
        assert_eq!(t.overflow_len.load(Ordering::Relaxed), 0);
        assert_eq!(t.stats().tracked, 0);
        assert_eq!(t.stats().unbalanced, 0);
    }

    #[test]
    fn many_spans_on_a_small_direct_table_are_all_counted() {
        let layer = LostWakerLayer::new(Arc::new(Table::with_direct_bits(10_000, 6)));
        let view = layer.clone();
        let _g = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        let spans: Vec<_> = (0..500).map(spawn_span).collect();
        assert!(view.table.overflow_len.load(Ordering::Relaxed) > 0);
        for (i, s) in spans.iter().enumerate() {
            poll(s, || {
                if i % 2 == 1 {
                    op(s, "waker.clone");
                }
            });
        }
        let even: Vec<u64> = (0..500).step_by(2).collect();
        assert_eq!(view.zero_waker_tasks(), even);
        assert_eq!(view.stats().tracked, 500);
        drop(spans);
        assert_eq!(view.stats().tracked, 0);
        assert_eq!(view.table.overflow_len.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_thread_routing_events_elsewhere_turns_reports_off() {
        let layer = LostWakerLayer::new(Arc::new(Table::new(10)));
        let view = layer.clone();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
        let span = tracing::dispatcher::with_default(&dispatch, || spawn_span(3));
        // Polled on a thread whose default subscriber is another one (here: none), so any
        // waker event there would be lost: the polled, waker-less task is not reported.
        let span = std::thread::spawn(move || {
            poll(&span, || {});
            span
        })
        .join()
        .unwrap();
        assert_eq!(view.stats().tracked, 1);
        assert_eq!(view.stats().misrouted_threads, 1);
        assert!(view.zero_waker_tasks().is_empty());
        drop(span);
    }

    #[test]
    fn other_layers_still_see_what_the_lost_waker_layer_declines() {
        use std::sync::atomic::AtomicUsize;
        struct CountEvents(Arc<AtomicUsize>);
        impl<S: Subscriber> Layer<S> for CountEvents {
            fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let seen = Arc::new(AtomicUsize::new(0));
        let layer = LostWakerLayer::new(Arc::new(Table::new(10)));
        let subscriber = tracing_subscriber::registry()
            .with(layer)
            .with(CountEvents(Arc::clone(&seen)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("an application log line");
            tracing::debug!(target: "tokio::runtime", "another");
        });
        assert_eq!(seen.load(Ordering::Relaxed), 2);
    }
}
