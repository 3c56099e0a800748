//! Per-thread lanes: each thread that polls tasks owns a lane holding its poll in progress
//! and its own copy of every site's counters.
//!
//! Counters in a lane have a single writer (the owning thread), so the hooks update them
//! with plain loads and stores, and no cache line moves between workers on the hot path.
//! Readers sum the lanes. The poll cell (task being polled, its site, since when) is
//! readable from any thread, so a worker stuck in a poll that never returns is still
//! visible.
//!
//! A thread claims a lane on its first poll and releases it when it exits; the next thread
//! to claim it keeps adding to its counters, so totals never go back. Threads that only
//! spawn (a plain thread calling `Handle::spawn`), and every thread once all lanes are
//! taken, share one fallback lane updated with atomic read-modify-writes.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use crate::clock::Clock;

/// Most threads with a lane of their own at once, per agent.
pub(crate) const MAX_LANES: usize = 256;

/// One poll in this many, on average, is timed precisely for busy time; the sampled
/// duration is weighted by the polls it stands for, so per-site busy time stays unbiased.
/// Strides are drawn from 1..=2*SAMPLE_EVERY-1 so that periodic workloads do not alias.
pub(crate) const SAMPLE_EVERY: u32 = 8;

/// Poll durations (coarse nanoseconds) from which a poll counts as long, one counter per
/// bound: 10 ms, 100 ms, 1 s, 10 s. Shorter polls only add to `polls`.
pub(crate) const LONG_POLL_BOUNDS_NS: [u64; 4] =
    [10_000_000, 100_000_000, 1_000_000_000, 10_000_000_000];

/// One site's counters in one lane.
#[derive(Default)]
pub(crate) struct SiteCounters {
    pub(crate) spawned: AtomicU64,
    /// Written with Release and read with Acquire, before `spawned` (see [`Lanes::totals`]).
    pub(crate) completed: AtomicU64,
    pub(crate) polls: AtomicU64,
    /// Precise clock ticks spent polling.
    pub(crate) busy: AtomicU64,
    /// Longest wait (coarse ns) that ended in a poll: how long this site's tasks normally
    /// wait. Merged over lanes with `max`, not summed.
    pub(crate) longest_wait: AtomicU64,
    /// Longest wait (coarse ns) of a task from its spawn to its first poll: scheduling
    /// delay. Merged with `max`.
    pub(crate) first_poll_delay: AtomicU64,
    /// Coarse nanoseconds spent in long polls (at least the first bound), counted exactly:
    /// a sampled long poll would otherwise stand for `weight` such polls.
    pub(crate) long_busy: AtomicU64,
    /// Polls that lasted at least each of [`LONG_POLL_BOUNDS_NS`] (coarse clock).
    pub(crate) long_polls: [AtomicU64; LONG_POLL_BOUNDS_NS.len()],
}

impl SiteCounters {
    /// Counts a poll of `coarse_ns` in every long-poll bucket it reaches: one compare for
    /// the common short poll.
    #[inline]
    pub(crate) fn count_poll_duration(&self, lane: &Lane, coarse_ns: u64) {
        if coarse_ns < LONG_POLL_BOUNDS_NS[0] {
            return;
        }
        lane.add(&self.long_busy, coarse_ns);
        for (bound, counter) in LONG_POLL_BOUNDS_NS.iter().zip(&self.long_polls) {
            if coarse_ns >= *bound {
                lane.add(counter, 1);
            }
        }
    }
}

/// Totals of one site over every lane.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SiteTotals {
    pub(crate) spawned: u64,
    pub(crate) completed: u64,
    pub(crate) polls: u64,
    pub(crate) busy: u64,
    pub(crate) longest_wait: u64,
    pub(crate) first_poll_delay: u64,
    pub(crate) long_busy: u64,
    /// Polls at least as long as each of [`LONG_POLL_BOUNDS_NS`].
    pub(crate) long_polls: [u64; LONG_POLL_BOUNDS_NS.len()],
}

#[repr(align(64))]
pub(crate) struct Lane {
    in_use: AtomicBool,
    /// Whether several threads may write at once (the fallback lane).
    shared: bool,
    /// Task being polled by the owning thread, 0 when none (tokio ids start at 1).
    task: AtomicU64,
    /// Site of that task (`u32::MAX` when the table does not know it).
    site: AtomicU32,
    /// Coarse clock reading when that poll started.
    started: AtomicU64,
    /// Precise clock reading when that poll started, if it is sampled (else 0).
    sample_start: AtomicU64,
    /// Polls left until the next sampled one, and how many polls that sample stands for.
    countdown: AtomicU32,
    weight: AtomicU32,
    /// xorshift state for the sampling strides.
    rng: AtomicU64,
    counters: OnceLock<Box<[SiteCounters]>>,
    /// The thread that holds this lane now, set when it claims it (the cold path), so a
    /// reader can tell which runtime worker a poll in progress is on.
    thread: std::sync::Mutex<Option<std::thread::ThreadId>>,
}

/// How a poll ended, from the lane's record of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PollEnd {
    /// The task's site, if the table knew it when the poll started.
    pub(crate) site: Option<u32>,
    /// Precise ticks of busy time this poll accounts for: its duration times the polls its
    /// sample stands for, or 0 when it was not sampled or is a long poll (counted apart).
    pub(crate) busy: u64,
    /// The poll's duration by the coarse clock (resolution 1–4 ms), for long-poll counts.
    pub(crate) coarse: u64,
}

impl Lane {
    fn new(shared: bool, seed: u64) -> Self {
        Lane {
            in_use: AtomicBool::new(false),
            shared,
            task: AtomicU64::new(0),
            site: AtomicU32::new(u32::MAX),
            started: AtomicU64::new(0),
            sample_start: AtomicU64::new(0),
            countdown: AtomicU32::new(1),
            weight: AtomicU32::new(1),
            // xorshift must not start at 0; lanes get distinct streams.
            rng: AtomicU64::new(0x2545_F491_4F6C_DD1D ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            counters: OnceLock::new(),
            thread: std::sync::Mutex::new(None),
        }
    }

    fn counters(&self, sites: usize) -> &[SiteCounters] {
        self.counters
            .get_or_init(|| (0..sites).map(|_| SiteCounters::default()).collect())
    }

    /// Whether this is the shared fallback lane, which keeps no poll state.
    #[cfg(test)]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared
    }

    /// Adds to a counter of this lane.
    #[inline]
    pub(crate) fn add(&self, counter: &AtomicU64, n: u64) {
        self.add_ordered(counter, n, Ordering::Relaxed);
    }

    /// Adds to a counter with the given ordering for the write.
    #[inline]
    pub(crate) fn add_ordered(&self, counter: &AtomicU64, n: u64, order: Ordering) {
        if self.shared {
            counter.fetch_add(n, order);
        } else {
            // Single writer: a load and a store, no locked instruction.
            counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), order);
        }
    }

    /// Raises a maximum kept in this lane.
    #[inline]
    pub(crate) fn raise(&self, counter: &AtomicU64, value: u64) {
        if self.shared {
            counter.fetch_max(value, Ordering::Relaxed);
        } else if value > counter.load(Ordering::Relaxed) {
            counter.store(value, Ordering::Relaxed);
        }
    }

    /// This lane's counters for `site`.
    #[inline]
    pub(crate) fn site(&self, site: u32) -> &SiteCounters {
        // Allocated when the lane was claimed, with one entry per site slot.
        &self.counters.get().expect("claimed lanes have counters")[site as usize]
    }

    /// Records the start of a poll on the owning thread.
    #[inline]
    pub(crate) fn start_poll(&self, task: u64, site: Option<u32>, now: u64, clock: &Clock) {
        self.started.store(now, Ordering::Relaxed);
        self.site.store(site.unwrap_or(u32::MAX), Ordering::Relaxed);
        let left = self.countdown.load(Ordering::Relaxed).saturating_sub(1);
        self.countdown.store(left, Ordering::Relaxed);
        let sample = if left == 0 { clock.precise().max(1) } else { 0 };
        self.sample_start.store(sample, Ordering::Relaxed);
        self.task.store(task, Ordering::Release);
    }

    /// When the owning thread's poll in progress started, if it is in one.
    #[inline]
    pub(crate) fn poll_started(&self) -> Option<u64> {
        (!self.shared && self.task.load(Ordering::Relaxed) != 0)
            .then(|| self.started.load(Ordering::Relaxed))
    }

    /// Ends the poll of `task` if this lane is polling it.
    #[inline]
    pub(crate) fn end_poll(&self, task: u64, clock: &Clock) -> Option<PollEnd> {
        if self.shared || self.task.load(Ordering::Relaxed) != task {
            return None;
        }
        let coarse = clock
            .now()
            .saturating_sub(self.started.load(Ordering::Relaxed));
        let sample_start = self.sample_start.load(Ordering::Relaxed);
        let busy = if sample_start == 0 {
            0
        } else {
            let weight = self.weight.load(Ordering::Relaxed);
            self.next_stride();
            if coarse >= LONG_POLL_BOUNDS_NS[0] {
                // Long polls are counted exactly, in `long_busy`.
                0
            } else {
                clock.precise().saturating_sub(sample_start) * u64::from(weight)
            }
        };
        let site = self.site.load(Ordering::Relaxed);
        self.task.store(0, Ordering::Release);
        Some(PollEnd {
            site: (site != u32::MAX).then_some(site),
            busy,
            coarse,
        })
    }

    #[cold]
    fn next_stride(&self) {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        let stride = 1 + (x % u64::from(2 * SAMPLE_EVERY - 1)) as u32;
        self.countdown.store(stride, Ordering::Relaxed);
        self.weight.store(stride, Ordering::Relaxed);
    }
}

/// A poll in progress, as seen by a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PollInProgress {
    pub(crate) task: u64,
    pub(crate) started: u64,
    /// The polling thread, when known.
    pub(crate) thread: Option<std::thread::ThreadId>,
}

pub(crate) struct Lanes {
    /// Unique for the process's lifetime, unlike an address, so the thread-local fast path
    /// never mistakes a new `Lanes` for a dropped one.
    id: u64,
    lanes: Box<[Lane]>,
    fallback: Lane,
    /// Site slots per lane (site capacity + overflow).
    sites: usize,
}

/// Lanes this thread holds, one per live agent whose tasks it polled. Weak, so a thread
/// does not keep a dropped agent's lanes alive; released when the thread exits.
struct ThreadLanes(Vec<(Weak<Lanes>, usize)>);

impl Drop for ThreadLanes {
    fn drop(&mut self) {
        let _ = LAST.try_with(|c| c.set((0, 0)));
        for (lanes, i) in &self.0 {
            if let Some(lanes) = lanes.upgrade() {
                lanes.release(*i);
            }
        }
    }
}

thread_local! {
    static THREAD_LANES: RefCell<ThreadLanes> = const { RefCell::new(ThreadLanes(Vec::new())) };
    /// Fast path: the id of the last `Lanes` this thread used and its lane index + 1.
    static LAST: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

impl Lanes {
    pub(crate) fn new(sites: usize) -> Arc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let fallback = Lane::new(true, 0);
        fallback.counters(sites);
        Arc::new(Lanes {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            lanes: (0..MAX_LANES)
                .map(|i| Lane::new(false, i as u64 + 1))
                .collect(),
            fallback,
            sites,
        })
    }

    /// Runs `f` with this thread's lane, claiming one on first use (poll hooks).
    #[inline]
    pub(crate) fn with<R>(self: &Arc<Self>, f: impl FnOnce(&Lane) -> R) -> R {
        match self.own_lane(true) {
            Some(i) => f(&self.lanes[i]),
            None => f(&self.fallback),
        }
    }

    /// Runs `f` with this thread's lane if it has one, else the shared fallback lane
    /// (spawn and terminate hooks: a thread that never polls does not hold a lane).
    #[inline]
    pub(crate) fn with_existing<R>(self: &Arc<Self>, f: impl FnOnce(&Lane) -> R) -> R {
        match self.own_lane(false) {
            Some(i) => f(&self.lanes[i]),
            None => f(&self.fallback),
        }
    }

    #[inline]
    fn own_lane(self: &Arc<Self>, claim: bool) -> Option<usize> {
        let (last, idx) = LAST.get();
        if last == self.id {
            if idx != 0 {
                return Some(idx - 1);
            }
            // Known to hold no lane (e.g. the thread in `block_on` spawning a storm):
            // spawns and terminates go to the fallback lane without the slow lookup.
            if !claim {
                return None;
            }
        }
        self.own_lane_slow(claim)
    }

    #[cold]
    fn own_lane_slow(self: &Arc<Self>, claim: bool) -> Option<usize> {
        let idx = THREAD_LANES
            .try_with(|tl| {
                let mut tl = tl.borrow_mut();
                // Forget agents that are gone.
                tl.0.retain(|(l, _)| l.strong_count() > 0);
                let me = Arc::downgrade(self);
                match tl.0.iter().find(|(l, _)| Weak::ptr_eq(l, &me)) {
                    Some((_, i)) => Some(*i),
                    None if !claim => None,
                    None => {
                        let i = self.claim()?;
                        tl.0.push((me, i));
                        Some(i)
                    }
                }
            })
            .ok()
            .flatten();
        // Remember the answer, "none" included (index 0), until the thread claims a lane
        // or uses another agent's lanes.
        let _ = LAST.try_with(|c| c.set((self.id, idx.map_or(0, |i| i + 1))));
        idx
    }

    #[cold]
    fn claim(&self) -> Option<usize> {
        let i = self.lanes.iter().position(|l| {
            l.in_use
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        self.lanes[i].counters(self.sites);
        *self.lanes[i]
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
        Some(i)
    }

    fn release(&self, i: usize) {
        let lane = &self.lanes[i];
        lane.task.store(0, Ordering::Relaxed);
        lane.in_use.store(false, Ordering::Release);
    }

    fn all(&self) -> impl Iterator<Item = &[SiteCounters]> {
        self.lanes
            .iter()
            .chain(std::iter::once(&self.fallback))
            .filter_map(|l| l.counters.get().map(|c| &c[..]))
    }

    /// Sums every lane's counters for `site`.
    ///
    /// All `completed` counters are read (Acquire) before any `spawned` counter: a task's
    /// spawn happens before its completion, which is written with Release, so every
    /// completion seen has its spawn seen too, even across lanes, and `spawned - completed`
    /// is never below the true live count of some instant during the read.
    pub(crate) fn totals(&self, site: u32) -> SiteTotals {
        let s = site as usize;
        let mut t = SiteTotals::default();
        for c in self.all() {
            t.completed += c[s].completed.load(Ordering::Acquire);
        }
        for c in self.all() {
            let c = &c[s];
            t.spawned += c.spawned.load(Ordering::Relaxed);
            t.polls += c.polls.load(Ordering::Relaxed);
            t.busy += c.busy.load(Ordering::Relaxed);
            t.longest_wait = t.longest_wait.max(c.longest_wait.load(Ordering::Relaxed));
            t.first_poll_delay = t
                .first_poll_delay
                .max(c.first_poll_delay.load(Ordering::Relaxed));
            t.long_busy += c.long_busy.load(Ordering::Relaxed);
            for (sum, n) in t.long_polls.iter_mut().zip(&c.long_polls) {
                *sum += n.load(Ordering::Relaxed);
            }
        }
        t
    }

    /// Every poll in progress now.
    pub(crate) fn in_progress(&self) -> Vec<PollInProgress> {
        self.lanes
            .iter()
            .filter(|l| l.in_use.load(Ordering::Acquire))
            .filter_map(|l| {
                let task = l.task.load(Ordering::Acquire);
                (task != 0).then(|| PollInProgress {
                    task,
                    started: l.started.load(Ordering::Relaxed),
                    thread: *l.thread.lock().unwrap_or_else(|e| e.into_inner()),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_track_polls_sum_counters_and_free_on_exit() {
        let lanes = Lanes::new(4);
        let clock = Arc::new(Clock::new());
        let c2 = Arc::clone(&clock);
        let l2 = Arc::clone(&lanes);
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            l2.with(|lane| {
                lane.add(&lane.site(2).spawned, 3);
                lane.start_poll(42, Some(2), 1000, &c2);
            });
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
            let end = l2.with(|lane| lane.end_poll(42, &c2)).unwrap();
            assert_eq!(end.site, Some(2));
            // The first poll of a lane is always sampled, with weight 1.
            assert!(end.busy > 0);
        });
        rx.recv().unwrap();
        assert_eq!(
            lanes.in_progress(),
            vec![PollInProgress {
                task: 42,
                started: 1000,
                thread: Some(t.thread().id()),
            }]
        );
        lanes.with(|lane| lane.add(&lane.site(2).spawned, 1));
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(lanes.in_progress().is_empty());
        assert_eq!(lanes.totals(2).spawned, 4);
        // The exited thread's lane is free again and keeps its counts.
        assert_eq!(
            lanes
                .lanes
                .iter()
                .filter(|l| l.in_use.load(Ordering::Relaxed))
                .count(),
            1
        );
    }

    #[test]
    fn a_thread_without_a_lane_spawns_on_the_fallback() {
        let lanes = Lanes::new(2);
        let l2 = Arc::clone(&lanes);
        std::thread::spawn(move || l2.with_existing(|lane| assert!(lane.is_shared())))
            .join()
            .unwrap();
        assert!(
            lanes
                .lanes
                .iter()
                .all(|l| !l.in_use.load(Ordering::Relaxed))
        );
    }

    #[test]
    fn a_thread_does_not_keep_dropped_lanes_alive() {
        let lanes = Lanes::new(2);
        lanes.with(|_| ());
        let weak = Arc::downgrade(&lanes);
        drop(lanes);
        assert_eq!(weak.strong_count(), 0);
        // A new agent on the same thread gets a lane through the slow path.
        let other = Lanes::new(2);
        other.with(|lane| assert!(!lane.is_shared()));
    }
}
