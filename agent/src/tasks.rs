//! The live-task table: one small slot per live task.
//!
//! Task ids are sequential, so most live tasks sit in a direct-mapped ring indexed by
//! `id % ring size`: a spawn claims its slot with one compare-and-swap, a poll finds it with
//! one load and updates it with plain stores (a task is polled by one thread at a time), and
//! consecutive spawns touch consecutive memory. A task whose ring slot is still held by an
//! older live task goes to an overflow map, sharded and locked; that is the slow path, taken
//! once per ring revolution per long-lived task, or when more tasks are alive than the ring
//! holds.
//!
//! tokio hands hooks an opaque `tokio::task::Id`; its only public views are `Display` and
//! `Hash`. [`id_to_u64`] reads the integer through `Hash` without formatting.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard};

/// Overflow shards; a power of two.
const SHARDS: usize = 64;

/// Marks a ring slot being written by its claimant (never a real id: ids count up from 1).
const CLAIMING: u64 = u64::MAX;

/// High bit of a slot's site: a task dump traced the task, and the polls it leaves behind
/// must not count (site numbers stay far below it). tokio wakes a traced task once per
/// leaf future it awaits (a `select!` on a socket and a channel: two wakes), so a task may
/// be polled spuriously more than once: every poll of a marked task until the dump's
/// window closes (see [`TaskTable::unskip_except`]) is skipped, and at least one.
const SKIP_NEXT_POLL: u32 = 1 << 31;

/// Next bit down: a poll of the marked task was skipped already.
const SKIPPED: u32 = 1 << 30;

/// Both flag bits: what is left is the site.
const FLAGS: u32 = SKIP_NEXT_POLL | SKIPPED;

/// What the agent knows of a live task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskSlot {
    pub(crate) site: u32,
    pub(crate) polls: u32,
    /// Coarse clock reading at spawn.
    pub(crate) spawned: u64,
    /// Coarse clock reading at the start of the last poll; 0 if never polled.
    pub(crate) last_poll: u64,
    /// The next poll is a task dump's spurious one (overflow map only; ring slots keep it
    /// in the site's high bit).
    pub(crate) skip_next_poll: bool,
    /// A spurious poll was skipped already (overflow map only; ring slots: [`SKIPPED`]).
    pub(crate) skipped: bool,
}

/// A ring slot (32 bytes); `id` is 0 when free.
#[derive(Default)]
struct RingSlot {
    id: AtomicU64,
    site: AtomicU32,
    polls: AtomicU32,
    spawned: AtomicU64,
    last_poll: AtomicU64,
}

type Map = HashMap<u64, TaskSlot, BuildHasherDefault<IdHasher>>;

#[repr(align(64))]
struct Shard(Mutex<Map>);

pub(crate) struct TaskTable {
    ring: Box<[RingSlot]>,
    mask: u64,
    overflow: Box<[Shard]>,
    /// Coarse clock reading until which polls of tasks a dump marked are skipped: `u64::MAX`
    /// while the dump runs, then its end plus a grace period.
    skip_until: AtomicU64,
}

impl TaskTable {
    /// A table whose ring holds `ring_slots` tasks (rounded up to a power of two).
    pub(crate) fn new(ring_slots: usize) -> Self {
        let n = ring_slots.max(64).next_power_of_two();
        TaskTable {
            ring: zeroed_ring(n),
            mask: n as u64 - 1,
            overflow: (0..SHARDS)
                .map(|_| Shard(Mutex::new(Map::default())))
                .collect(),
            skip_until: AtomicU64::new(0),
        }
    }

    #[inline]
    fn slot(&self, id: u64) -> &RingSlot {
        &self.ring[(id & self.mask) as usize]
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, Map> {
        // The map is never left half-updated, so a shard poisoned by a panic elsewhere is
        // still consistent.
        self.overflow[id as usize % SHARDS]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    pub(crate) fn insert(&self, id: u64, site: u32, now: u64) {
        let slot = self.slot(id);
        if slot
            .id
            .compare_exchange(0, CLAIMING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            slot.site.store(site, Ordering::Relaxed);
            slot.polls.store(0, Ordering::Relaxed);
            slot.spawned.store(now, Ordering::Relaxed);
            slot.last_poll.store(0, Ordering::Relaxed);
            slot.id.store(id, Ordering::Release);
        } else {
            self.insert_overflow(id, site, now);
        }
    }

    #[cold]
    fn insert_overflow(&self, id: u64, site: u32, now: u64) {
        let slot = TaskSlot {
            site,
            polls: 0,
            spawned: now,
            last_poll: 0,
            skip_next_poll: false,
            skipped: false,
        };
        self.shard(id).insert(id, slot);
    }

    /// Removes a task; `None` if the table never had it.
    #[inline]
    pub(crate) fn remove(&self, id: u64) -> Option<TaskSlot> {
        let slot = self.slot(id);
        if slot.id.load(Ordering::Acquire) == id {
            let task = read(slot);
            slot.id.store(0, Ordering::Release);
            return Some(task);
        }
        self.remove_overflow(id)
    }

    #[cold]
    fn remove_overflow(&self, id: u64) -> Option<TaskSlot> {
        let mut shard = self.shard(id);
        let task = shard.remove(&id);
        // Give memory back after a burst: nothing is kept for tasks that ended.
        if shard.capacity() > 1024 && shard.len() < shard.capacity() / 4 {
            let len = shard.len();
            shard.shrink_to(len * 2);
        }
        task
    }

    /// Records the start of a poll; returns the task's site and the wait this poll ends
    /// (coarse ns since the previous poll started, or since spawn) and whether this is its
    /// first poll, or `None` for a task
    /// the table does not have, or whose poll is a task dump's spurious one. Runs in the
    /// before-poll hook, while the polling worker owns the task: no other thread can poll,
    /// finish or replace it meanwhile.
    #[inline]
    pub(crate) fn poll_started(&self, id: u64, now: u64) -> Option<(u32, u64, bool)> {
        let slot = self.slot(id);
        if slot.id.load(Ordering::Acquire) == id {
            let mut site = slot.site.load(Ordering::Relaxed);
            if site & SKIP_NEXT_POLL != 0 {
                if now < self.skip_until.load(Ordering::Relaxed) {
                    slot.site.fetch_or(SKIPPED, Ordering::Relaxed);
                    return None;
                }
                // The window is over: the mark goes, and this poll is the task's own unless
                // none was skipped yet (the dump's poll came late).
                slot.site.fetch_and(!FLAGS, Ordering::Relaxed);
                if site & SKIPPED == 0 {
                    return None;
                }
                site &= !FLAGS;
            }
            // One poller at a time: plain loads and stores.
            let polls = slot.polls.load(Ordering::Relaxed);
            slot.polls.store(polls.saturating_add(1), Ordering::Relaxed);
            let since = slot
                .last_poll
                .load(Ordering::Relaxed)
                .max(slot.spawned.load(Ordering::Relaxed));
            slot.last_poll.store(now, Ordering::Relaxed);
            return Some((site, now.saturating_sub(since), polls == 0));
        }
        self.poll_started_overflow(id, now)
    }

    #[cold]
    fn poll_started_overflow(&self, id: u64, now: u64) -> Option<(u32, u64, bool)> {
        let mut shard = self.shard(id);
        let task = shard.get_mut(&id)?;
        if task.skip_next_poll {
            if now < self.skip_until.load(Ordering::Relaxed) {
                task.skipped = true;
                return None;
            }
            task.skip_next_poll = false;
            if !std::mem::take(&mut task.skipped) {
                return None;
            }
        }
        let first = task.polls == 0;
        task.polls = task.polls.saturating_add(1);
        let since = task.last_poll.max(task.spawned);
        task.last_poll = now;
        Some((task.site, now.saturating_sub(since), first))
    }

    #[cfg_attr(not(all(feature = "taskdump", target_os = "linux")), allow(dead_code))]
    /// Marks every live task so that the polls a task dump leaves behind are not counted:
    /// a dump re-polls every task (without hooks) and then wakes it, once per leaf future
    /// the task awaits, and the polls that follow are the dump's, not the task's. Until
    /// [`TaskTable::unskip_except`] closes the window, every poll of a marked task is
    /// skipped. Returns how many were marked.
    pub(crate) fn skip_next_polls(&self) -> usize {
        self.skip_until.store(u64::MAX, Ordering::Relaxed);
        let mut n = 0;
        for slot in self.ring.iter() {
            let id = slot.id.load(Ordering::Acquire);
            if id != 0 && id != CLAIMING {
                slot.site.fetch_and(!SKIPPED, Ordering::Relaxed);
                slot.site.fetch_or(SKIP_NEXT_POLL, Ordering::Relaxed);
                n += 1;
            }
        }
        for shard in self.overflow.iter() {
            let mut shard = shard.0.lock().unwrap_or_else(|e| e.into_inner());
            for task in shard.values_mut() {
                task.skip_next_poll = true;
                task.skipped = false;
                n += 1;
            }
        }
        n
    }

    #[cfg_attr(not(all(feature = "taskdump", target_os = "linux")), allow(dead_code))]
    /// Unmarks tasks the dump did not trace (their next poll is their own) and closes the
    /// window of the traced ones' spurious polls at `until` (coarse clock): after it, a
    /// marked task's first poll is skipped only if none was.
    pub(crate) fn unskip_except(&self, traced: &std::collections::HashSet<u64>, until: u64) {
        for slot in self.ring.iter() {
            let id = slot.id.load(Ordering::Acquire);
            if id != 0 && id != CLAIMING && !traced.contains(&id) {
                slot.site.fetch_and(!FLAGS, Ordering::Relaxed);
            }
        }
        for shard in self.overflow.iter() {
            let mut shard = shard.0.lock().unwrap_or_else(|e| e.into_inner());
            for (id, task) in shard.iter_mut() {
                if !traced.contains(id) {
                    task.skip_next_poll = false;
                    task.skipped = false;
                }
            }
        }
        self.skip_until.store(until, Ordering::Relaxed);
    }

    /// One live task's slot, if the table has it (readers only: a slot that changes owner
    /// while read gives `None`).
    pub(crate) fn get(&self, id: u64) -> Option<TaskSlot> {
        let slot = self.slot(id);
        if slot.id.load(Ordering::Acquire) == id {
            let task = read(slot);
            fence(Ordering::Acquire);
            if slot.id.load(Ordering::Relaxed) == id {
                return Some(task);
            }
        }
        self.shard(id).get(&id).copied()
    }

    /// The site of a live task, for the panic hook: like [`TaskTable::get`], reading only
    /// the site.
    pub(crate) fn site_of(&self, id: u64) -> Option<u32> {
        let slot = self.slot(id);
        if slot.id.load(Ordering::Acquire) == id {
            let site = slot.site.load(Ordering::Relaxed) & !FLAGS;
            fence(Ordering::Acquire);
            if slot.id.load(Ordering::Relaxed) == id {
                return Some(site);
            }
        }
        self.shard(id).get(&id).map(|t| t.site)
    }

    /// Copies out every live task. Ring slots are read without locks (a slot that changes
    /// owner while read is skipped); overflow shards are locked one at a time.
    pub(crate) fn collect(&self) -> Vec<(u64, TaskSlot)> {
        self.collect_sized(0)
    }

    /// [`TaskTable::collect`] into a vector with room for `capacity` tasks.
    pub(crate) fn collect_sized(&self, capacity: usize) -> Vec<(u64, TaskSlot)> {
        let mut out = Vec::with_capacity(capacity);
        for slot in self.ring.iter() {
            let id = slot.id.load(Ordering::Acquire);
            if id == 0 || id == CLAIMING {
                continue;
            }
            let task = read(slot);
            // The field loads must not move after the re-check of the id.
            fence(Ordering::Acquire);
            if slot.id.load(Ordering::Relaxed) == id {
                out.push((id, task));
            }
        }
        for shard in self.overflow.iter() {
            let shard = shard.0.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(shard.iter().map(|(id, slot)| (*id, *slot)));
        }
        out
    }
}

/// A ring of free slots from zeroed memory: the allocator hands out fresh zero pages that
/// the kernel maps on first touch, so a large ring costs memory only as task ids reach it.
fn zeroed_ring(n: usize) -> Box<[RingSlot]> {
    let ring = Box::<[RingSlot]>::new_zeroed_slice(n);
    // SAFETY: RingSlot is atomics only, for which all-zero bytes are a valid value (a free
    // slot, as `RingSlot::default()` would make).
    unsafe { ring.assume_init() }
}

fn read(slot: &RingSlot) -> TaskSlot {
    let site = slot.site.load(Ordering::Relaxed);
    TaskSlot {
        site: site & !FLAGS,
        skip_next_poll: site & SKIP_NEXT_POLL != 0,
        skipped: site & SKIPPED != 0,
        polls: slot.polls.load(Ordering::Relaxed),
        spawned: slot.spawned.load(Ordering::Relaxed),
        last_poll: slot.last_poll.load(Ordering::Relaxed),
    }
}

/// The integer inside a `tokio::task::Id`, read through its `Hash` impl (which hashes the
/// inner `NonZeroU64` with one `write_u64`).
#[inline]
pub(crate) fn id_to_u64(id: tokio::task::Id) -> u64 {
    let mut capture = IdCapture(0);
    id.hash(&mut capture);
    capture.0
}

struct IdCapture(u64);

impl Hasher for IdCapture {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached with tokio's current `Id`; fold anything else in deterministically.
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Hasher for sequential integer ids: one multiply, no SipHash.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_through_hash() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = rt.spawn(async {});
        let id = handle.id();
        assert_eq!(id_to_u64(id).to_string(), id.to_string());
    }

    #[test]
    fn a_dumps_spurious_polls_are_skipped_until_its_window_closes() {
        let t = TaskTable::new(64);
        t.insert(7, 3, 10); // ring
        t.insert(71, 4, 10); // overflow (same ring slot)
        t.insert(9, 5, 10); // not traced
        assert_eq!(t.poll_started(7, 20), Some((3, 10, true)));
        assert_eq!(t.skip_next_polls(), 3);
        // While the dump runs and until its window closes: every poll of a traced task is
        // the dump's (tokio wakes a task once per leaf it awaits).
        assert_eq!(t.poll_started(7, 100), None);
        t.unskip_except(&[7, 71].into_iter().collect(), 200);
        assert_eq!(t.poll_started(7, 150), None);
        assert_eq!(t.poll_started(9, 120), Some((5, 110, true)), "not traced");
        // After the window: the task's own polls count again, the wait from its last
        // counted poll.
        assert_eq!(t.poll_started(7, 250), Some((3, 230, false)));
        assert_eq!(t.poll_started(7, 260), Some((3, 10, false)));
        // A traced task whose dump poll came only after the window: that one is skipped.
        assert_eq!(t.poll_started(71, 300), None);
        assert_eq!(t.poll_started(71, 310), Some((4, 300, true)));
        let slot = t.get(7).unwrap();
        assert_eq!((slot.site, slot.polls, slot.last_poll), (3, 3, 260));
        assert_eq!(t.site_of(7), Some(3));
        // A second dump clears what the first left.
        t.skip_next_polls();
        t.unskip_except(&[7].into_iter().collect(), 400);
        assert_eq!(t.poll_started(7, 500), None, "the second dump's late poll");
        assert_eq!(t.poll_started(7, 510), Some((3, 250, false)));
    }

    #[test]
    fn ring_and_overflow_track_polls_and_removal() {
        let t = TaskTable::new(64);
        t.insert(7, 3, 10);
        // 7 + 64 maps to the same ring slot: it goes to the overflow map.
        t.insert(71, 4, 11);
        assert_eq!(t.poll_started(7, 50), Some((3, 40, true)));
        assert_eq!(t.poll_started(71, 60), Some((4, 49, true)));
        // The wait ended by a poll runs from the previous poll's start.
        assert_eq!(t.poll_started(7, 90), Some((3, 40, false)));
        assert_eq!(t.poll_started(8, 50), None);
        let mut all = t.collect();
        all.sort_by_key(|(id, _)| *id);
        assert_eq!(
            all.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![7, 71]
        );
        let slot = t.remove(7).unwrap();
        assert_eq!(
            (slot.site, slot.polls, slot.spawned, slot.last_poll),
            (3, 2, 10, 90)
        );
        let slot = t.remove(71).unwrap();
        assert_eq!((slot.site, slot.polls, slot.last_poll), (4, 1, 60));
        assert_eq!(t.remove(7), None);
        assert!(t.collect().is_empty());
    }
}
