//! What every instrumented lock records: its identity (a class shared by every lock created
//! at one place with one name), its counters, and who holds and waits for it now.
//!
//! The uncontended path is a compare-and-swap to claim a holder slot, a few relaxed counter
//! updates and two coarse clock reads (acquire and release). Everything about waiting
//! happens only when a lock is contended, under a per-lock mutex, next to the wait itself.
//! Aggregation (labels, histograms, the wait-for graph) happens when someone reads.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use crate::model::{LockKind, LockMode};

/// Most lock identities tracked; locks created beyond share one overflow class.
pub const MAX_LOCK_CLASSES: usize = 256;

/// Holder acquire sites charged with delay per lock identity; the rest go to "(other)".
pub(crate) const MAX_DELAY_SITES: usize = 16;

/// Bounds of the wait histogram, seconds.
pub(crate) const WAIT_BOUNDS: [f64; 10] =
    [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// Bounds of the hold histogram, seconds (coarse clock underneath).
pub(crate) const HOLD_BOUNDS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Coarse monotonic nanoseconds (resolution one kernel tick, ~5 ns to read).
#[inline]
pub(crate) fn coarse_now() -> u64 {
    crate::clock::coarse_ns()
}

/// The current tokio task's id, 0 outside a task.
#[inline]
pub(crate) fn current_task() -> u64 {
    tokio::task::try_id().map_or(0, crate::tasks::id_to_u64)
}

/// A histogram of durations with atomic buckets (not cumulative; summed when read).
pub(crate) struct AtomicHistogram {
    bounds: &'static [f64],
    /// One per bound, plus the +Inf bucket.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe_ns(&self, ns: u64) {
        let secs = ns as f64 * 1e-9;
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn sum_seconds(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// Cumulative counts per bound, total count, sum (seconds).
    pub(crate) fn read(&self) -> crate::model::DelayHistogram {
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        let mut running = 0;
        for c in self.counts.iter().take(self.bounds.len()) {
            running += c.load(Ordering::Relaxed);
            cumulative.push(running);
        }
        let count = running + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        crate::model::DelayHistogram {
            bounds: self.bounds.to_vec(),
            counts: cumulative,
            count,
            sum: self.sum_seconds(),
            last_seconds: 0.0,
        }
    }
}

/// Delay charged to one holder acquire site.
#[derive(Clone, Copy)]
pub(crate) struct Charged {
    /// `None` for "(other)".
    pub(crate) site: Option<&'static Location<'static>>,
    pub(crate) ns: u64,
    pub(crate) contentions: u64,
}

/// Everything shared by the locks of one identity.
pub(crate) struct Class {
    pub(crate) kind: LockKind,
    pub(crate) created_at: Option<&'static Location<'static>>,
    pub(crate) name: Option<String>,
    pub(crate) acquisitions: AtomicU64,
    pub(crate) contended: AtomicU64,
    pub(crate) wait: AtomicHistogram,
    pub(crate) hold: AtomicHistogram,
    pub(crate) instances: AtomicU64,
    pub(crate) delay: Mutex<Vec<Charged>>,
    /// (when, total wait seconds) samples for the recent wait share; a few per class.
    pub(crate) wait_samples: Mutex<std::collections::VecDeque<(Instant, f64)>>,
}

impl Class {
    fn new(
        kind: LockKind,
        created_at: Option<&'static Location<'static>>,
        name: Option<String>,
    ) -> Self {
        Class {
            kind,
            created_at,
            name,
            acquisitions: AtomicU64::new(0),
            contended: AtomicU64::new(0),
            wait: AtomicHistogram::new(&WAIT_BOUNDS),
            hold: AtomicHistogram::new(&HOLD_BOUNDS),
            instances: AtomicU64::new(0),
            delay: Mutex::new(Vec::new()),
            wait_samples: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn charge(&self, site: Option<&'static Location<'static>>, ns: u64) {
        let mut delay = lock(&self.delay);
        let key = |c: &Charged| c.site.map(|l| l as *const _ as usize);
        let wanted = site.map(|l| l as *const _ as usize);
        if let Some(c) = delay.iter_mut().find(|c| key(c) == wanted) {
            c.ns += ns;
            c.contentions += 1;
            return;
        }
        let named = delay.iter().filter(|c| c.site.is_some()).count();
        let site = if named < MAX_DELAY_SITES { site } else { None };
        match delay
            .iter_mut()
            .find(|c| c.site.is_none() && site.is_none())
        {
            Some(other) => {
                other.ns += ns;
                other.contentions += 1;
            }
            None => delay.push(Charged {
                site,
                ns,
                contentions: 1,
            }),
        }
    }

    /// Records the total wait now, for [`Class::wait_share`]; keeps 12 samples.
    pub(crate) fn sample_wait(&self, now: Instant) {
        let total = self.wait.sum_seconds();
        let mut s = lock(&self.wait_samples);
        s.push_back((now, total));
        while s.len() > 12 {
            s.pop_front();
        }
    }

    /// Seconds of waiting per second over the last 10 s of samples, counting the part of
    /// each wait still in progress (`waiting`, seconds so far) that falls in the window.
    pub(crate) fn wait_share(&self, now: Instant, waiting: &[f64]) -> f64 {
        let s = lock(&self.wait_samples);
        let total = self.wait.sum_seconds();
        let Some(&(at, before)) = s
            .iter()
            .find(|(at, _)| now.duration_since(*at).as_secs_f64() <= 10.5)
        else {
            return 0.0;
        };
        let dt = now.duration_since(at).as_secs_f64();
        if dt < 0.5 {
            return 0.0;
        }
        let in_progress: f64 = waiting.iter().map(|w| w.min(dt)).sum();
        ((total - before).max(0.0) + in_progress) / dt
    }
}

/// A holder slot: claimed with a compare-and-swap, then written by its owner only.
#[derive(Default)]
pub(crate) struct HolderSlot {
    used: AtomicBool,
    task: AtomicU64,
    site: AtomicUsize,
    mode: AtomicU8,
    permits: AtomicU32,
    since: AtomicU64,
}

/// A task waiting for a lock.
#[derive(Clone)]
pub(crate) struct Waiter {
    pub(crate) seq: u64,
    pub(crate) task: u64,
    pub(crate) site: &'static Location<'static>,
    pub(crate) mode: LockMode,
    pub(crate) permits: u32,
    pub(crate) since: Instant,
}

/// One lock's live state, shared between the lock and the registry.
pub(crate) struct Instance {
    pub(crate) id: u64,
    pub(crate) class: Arc<Class>,
    pub(crate) holders: Box<[HolderSlot]>,
    /// Holders that found no free slot (only counted).
    pub(crate) extra_holders: AtomicU64,
    pub(crate) waiters: Mutex<Vec<Waiter>>,
    next_seq: AtomicU64,
    /// Acquire site of the last guard released: the one that handed the lock on, charged
    /// with the wait of whoever got it next (Go's mutex profile charges the unlocker).
    last_released: AtomicUsize,
}

pub(crate) fn mode_code(mode: LockMode) -> u8 {
    match mode {
        LockMode::Exclusive => 1,
        LockMode::Read => 2,
        LockMode::Write => 3,
        LockMode::Permits => 4,
        LockMode::Unknown => 0,
    }
}

pub(crate) fn mode_of(code: u8) -> LockMode {
    match code {
        1 => LockMode::Exclusive,
        2 => LockMode::Read,
        3 => LockMode::Write,
        4 => LockMode::Permits,
        _ => LockMode::Unknown,
    }
}

/// A holder as read: every field from one slot (a slot released while read may mix two
/// holders' fields; such a reading is at worst one stale row).
#[derive(Clone, Copy)]
pub(crate) struct HolderView {
    pub(crate) task: u64,
    pub(crate) site: Option<&'static Location<'static>>,
    pub(crate) mode: LockMode,
    pub(crate) permits: u32,
    pub(crate) since: u64,
}

fn location_of(ptr: usize) -> Option<&'static Location<'static>> {
    // SAFETY: only addresses of `&'static Location<'static>` are stored in slots.
    (ptr != 0).then(|| unsafe { &*(ptr as *const Location<'static>) })
}

impl Instance {
    /// Records an acquisition by the current task; returns the slot to free (or none when
    /// every slot was taken).
    #[inline]
    pub(crate) fn acquired(
        &self,
        site: &'static Location<'static>,
        mode: LockMode,
        permits: u32,
    ) -> Hold {
        self.class.acquisitions.fetch_add(1, Ordering::Relaxed);
        let since = coarse_now();
        let slot = self.holders.iter().position(|s| {
            !s.used.load(Ordering::Relaxed)
                && s.used
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        });
        match slot {
            Some(i) => {
                let s = &self.holders[i];
                s.task.store(current_task(), Ordering::Relaxed);
                s.site.store(site as *const _ as usize, Ordering::Relaxed);
                s.mode.store(mode_code(mode), Ordering::Relaxed);
                s.permits.store(permits, Ordering::Relaxed);
                s.since.store(since, Ordering::Release);
            }
            None => {
                self.extra_holders.fetch_add(1, Ordering::Relaxed);
            }
        }
        Hold {
            slot: slot.map_or(NO_SLOT, |i| i as u32),
            since,
            site: site as *const _ as usize,
        }
    }

    /// Ends a hold: its duration goes to the hold histogram, its slot is freed.
    #[inline]
    pub(crate) fn released(&self, hold: &Hold) {
        self.class
            .hold
            .observe_ns(coarse_now().saturating_sub(hold.since));
        self.last_released.store(hold.site, Ordering::Relaxed);
        if hold.slot == NO_SLOT {
            self.extra_holders.fetch_sub(1, Ordering::Relaxed);
        } else {
            let s = &self.holders[hold.slot as usize];
            s.task.store(0, Ordering::Relaxed);
            s.site.store(0, Ordering::Relaxed);
            s.used.store(false, Ordering::Release);
        }
    }

    /// Holders now.
    pub(crate) fn holders(&self) -> Vec<HolderView> {
        self.holders
            .iter()
            .filter(|s| s.used.load(Ordering::Acquire))
            .filter_map(|s| {
                let site = location_of(s.site.load(Ordering::Relaxed));
                site?;
                Some(HolderView {
                    task: s.task.load(Ordering::Relaxed),
                    site,
                    mode: mode_of(s.mode.load(Ordering::Relaxed)),
                    permits: s.permits.load(Ordering::Relaxed),
                    since: s.since.load(Ordering::Acquire),
                })
            })
            .collect()
    }

    /// Registers the current task as waiting; the returned token records the wait when it
    /// ends (or removes the waiter if the wait is cancelled).
    pub(crate) fn begin_wait(
        self: &Arc<Self>,
        site: &'static Location<'static>,
        mode: LockMode,
        permits: u32,
    ) -> Wait {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let since = Instant::now();
        lock(&self.waiters).push(Waiter {
            seq,
            task: current_task(),
            site,
            mode,
            permits,
            since,
        });
        Wait {
            instance: Arc::clone(self),
            seq,
            since,
            done: false,
        }
    }

    pub(crate) fn waiters(&self) -> Vec<Waiter> {
        lock(&self.waiters).clone()
    }
}

/// No holder slot (all were taken).
const NO_SLOT: u32 = u32::MAX;

/// An acquisition to end when the guard drops.
#[derive(Debug)]
pub(crate) struct Hold {
    slot: u32,
    since: u64,
    /// The acquire site (a `&'static Location` address).
    site: usize,
}

/// A wait in progress.
pub(crate) struct Wait {
    instance: Arc<Instance>,
    seq: u64,
    since: Instant,
    done: bool,
}

impl Wait {
    /// The lock was granted: count a contended acquisition and its wait.
    pub(crate) fn granted(mut self) {
        let ns = self.since.elapsed().as_nanos() as u64;
        let class = &self.instance.class;
        class.contended.fetch_add(1, Ordering::Relaxed);
        class.wait.observe_ns(ns);
        // Granted on a release: that holder made this task wait.
        let blamed = location_of(self.instance.last_released.load(Ordering::Relaxed));
        class.charge(blamed, ns);
        self.remove();
    }

    fn remove(&mut self) {
        if !self.done {
            self.done = true;
            lock(&self.instance.waiters).retain(|w| w.seq != self.seq);
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // Cancelled (the acquire future was dropped, e.g. by a timeout): no longer waiting.
        self.remove();
    }
}

/// A lock's registration: unregisters when the lock is dropped.
pub(crate) struct Registered(pub(crate) Arc<Instance>);

impl std::ops::Deref for Registered {
    type Target = Arc<Instance>;
    fn deref(&self) -> &Arc<Instance> {
        &self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        registry().unregister(&self.0);
    }
}

/// Every lock class and live lock of the process.
pub(crate) struct Registry {
    classes: Mutex<ClassTable>,
    instances: Mutex<HashMap<u64, Weak<Instance>>>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct ClassTable {
    by_key: HashMap<(usize, Option<String>, u8), Arc<Class>>,
    overflow: Option<Arc<Class>>,
    /// Locks created into the overflow class since the process started.
    overflow_registered: u64,
}

pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        classes: Mutex::new(ClassTable::default()),
        instances: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    })
}

fn kind_code(kind: LockKind) -> u8 {
    match kind {
        LockKind::Mutex => 1,
        LockKind::RwLock => 2,
        LockKind::Semaphore => 3,
        LockKind::BlockingMutex => 4,
        LockKind::BlockingRwLock => 5,
        LockKind::Unknown => 0,
    }
}

impl Registry {
    /// A new lock's state, registered under its class. Creating a lock takes two global
    /// mutexes: locks are created far less often than taken.
    pub(crate) fn register(
        &self,
        kind: LockKind,
        created_at: &'static Location<'static>,
        name: Option<String>,
        holder_slots: usize,
    ) -> Registered {
        let class =
            {
                let mut t = lock(&self.classes);
                let key = (
                    created_at as *const _ as usize,
                    name.clone(),
                    kind_code(kind),
                );
                match t.by_key.get(&key) {
                    Some(c) => Arc::clone(c),
                    None if t.by_key.len() < MAX_LOCK_CLASSES => {
                        let c = Arc::new(Class::new(kind, Some(created_at), name));
                        t.by_key.insert(key, Arc::clone(&c));
                        c
                    }
                    None => {
                        t.overflow_registered += 1;
                        Arc::clone(t.overflow.get_or_insert_with(|| {
                            Arc::new(Class::new(LockKind::Unknown, None, None))
                        }))
                    }
                }
            };
        class.instances.fetch_add(1, Ordering::Relaxed);
        let instance = Arc::new(Instance {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            class,
            holders: (0..holder_slots.max(1))
                .map(|_| HolderSlot::default())
                .collect(),
            extra_holders: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(0),
            last_released: AtomicUsize::new(0),
        });
        lock(&self.instances).insert(instance.id, Arc::downgrade(&instance));
        Registered(instance)
    }

    fn unregister(&self, instance: &Instance) {
        instance.class.instances.fetch_sub(1, Ordering::Relaxed);
        let mut all = lock(&self.instances);
        all.remove(&instance.id);
        if all.capacity() > 1024 && all.len() * 8 < all.capacity() {
            let len = all.len();
            all.shrink_to(len * 2);
        }
    }

    /// Every class, in creation order of their first lock (overflow last).
    /// Lock classes tracked (the overflow row not counted) and locks created into the
    /// overflow row since the process started.
    pub(crate) fn class_usage(&self) -> (usize, u64) {
        let t = lock(&self.classes);
        (t.by_key.len(), t.overflow_registered)
    }

    pub(crate) fn classes(&self) -> Vec<Arc<Class>> {
        let t = lock(&self.classes);
        let mut v: Vec<Arc<Class>> = t.by_key.values().cloned().collect();
        v.sort_by_key(|c| c.created_at.map(|l| (l.file(), l.line(), l.column())));
        v.extend(t.overflow.iter().cloned());
        v
    }

    /// Live locks that have holders or waiters now.
    pub(crate) fn busy_instances(&self) -> Vec<Arc<Instance>> {
        let all: Vec<Weak<Instance>> = lock(&self.instances).values().cloned().collect();
        all.iter()
            .filter_map(Weak::upgrade)
            .filter(|i| {
                i.extra_holders.load(Ordering::Relaxed) > 0
                    || i.holders.iter().any(|s| s.used.load(Ordering::Relaxed))
                    || !lock(&i.waiters).is_empty()
            })
            .collect()
    }

    /// One wait-share sample per class (the agent's sampler calls this).
    pub(crate) fn sample(&self) {
        let now = Instant::now();
        for c in self.classes() {
            c.sample_wait(now);
        }
    }
}

/// The lock identity's label: `name (site)` or the site.
pub(crate) fn class_label(class: &Class) -> String {
    match (class.created_at, &class.name) {
        (None, _) => crate::model::OVERFLOW_LOCK.to_string(),
        (Some(at), Some(name)) => format!("{name} ({})", crate::site::label(at)),
        (Some(at), None) => crate::site::label(at),
    }
}
