//! Spawn sites: turning `TaskMeta::spawned_at()` into a small integer on the hot path, and
//! into a short, stable label for readers.
//!
//! The hot path sees a `&'static Location`. The same call site almost always yields the same
//! pointer, so the table is keyed first by the pointer in a fixed, insert-only, lock-free
//! index. A miss (first spawn from a site, or the same site reached through another pointer,
//! e.g. a generic instantiated twice) takes a mutex once to intern the site by its content;
//! after warm-up spawns never lock or allocate here.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::model::OVERFLOW_SITE;

/// Shortens a source path as rustc records it into something short and stable across
/// machines:
///
/// - a dependency from the cargo registry keeps `crate-version/...`;
/// - a git dependency keeps `repo/...` after the checkout hash;
/// - the standard library keeps `library/...`;
/// - anything else stays as rustc recorded it: relative for the local crate or workspace (as
///   cargo passes them), absolute for path dependencies outside it. Labels never depend on
///   where the binary runs.
///
/// ```
/// use taskscope::site::display_path;
/// assert_eq!(
///     display_path("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/axum-0.8.9/src/serve/mod.rs"),
///     "axum-0.8.9/src/serve/mod.rs"
/// );
/// assert_eq!(display_path("demo-service/src/main.rs"), "demo-service/src/main.rs");
/// ```
pub fn display_path(path: &str) -> String {
    if let Some(rest) = after_marker(path, "/registry/src/") {
        // rest = "<index-dir>/<crate-version>/src/..."
        if let Some((_, tail)) = rest.split_once('/') {
            return tail.to_string();
        }
    }
    if let Some(rest) = after_marker(path, "/git/checkouts/") {
        // rest = "<repo>-<hash>/<rev>/src/..."
        let mut parts = rest.splitn(3, '/');
        if let (Some(repo), Some(_rev), Some(tail)) = (parts.next(), parts.next(), parts.next()) {
            let repo = repo.rsplit_once('-').map_or(repo, |(name, _hash)| name);
            return format!("{repo}/{tail}");
        }
    }
    if path.starts_with("/rustc/")
        && let Some(rest) = after_marker(path, "/library/")
    {
        return format!("library/{rest}");
    }
    path.to_string()
}

fn after_marker<'a>(path: &'a str, marker: &str) -> Option<&'a str> {
    path.find(marker).map(|i| &path[i + marker.len()..])
}

/// The label of a spawn site: `path:line:col`, path shortened by [`display_path`].
pub fn label(location: &Location<'_>) -> String {
    format!(
        "{}:{}:{}",
        display_path(location.file()),
        location.line(),
        location.column()
    )
}

/// A slot of the pointer index: `key` is the `Location` address (0 = empty), `value` the
/// site number. `value` is written before `key` is published.
#[derive(Default)]
struct IndexSlot {
    key: AtomicUsize,
    value: AtomicU32,
}

/// How far a lookup probes before giving up on the index and taking the slow path.
const MAX_PROBE: usize = 32;

/// Sites kept apart for the agent's own tasks (its scheduling probe), so that they never
/// take a place the service's sites are promised by the cap.
const RESERVED: usize = 1;

/// Fixed-capacity table of spawn sites, numbered `0..len`; the last number
/// ([`SiteTable::overflow`]) is the overflow row. Counters live in the per-thread lanes,
/// indexed by these numbers. Holds `capacity` service sites plus [`RESERVED`] for the agent.
pub(crate) struct SiteTable {
    index: Box<[IndexSlot]>,
    labels: Box<[OnceLock<String>]>,
    /// Sites allocated so far (excluding overflow), the agent's own included.
    len: AtomicUsize,
    /// Of those, the agent's own (allocated through [`SiteTable::lookup_reserved`]).
    reserved_used: AtomicUsize,
    /// Slow path: interning by label, so two pointers to the same site, or two source
    /// paths that shorten to the same label, share a row.
    intern: Mutex<HashMap<String, u32>>,
}

impl SiteTable {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let index_len = (capacity * 4).next_power_of_two();
        let slots = capacity + RESERVED + 1;
        let labels: Box<[OnceLock<String>]> = (0..slots).map(|_| OnceLock::new()).collect();
        let _ = labels[slots - 1].set(OVERFLOW_SITE.to_string());
        SiteTable {
            index: (0..index_len).map(|_| IndexSlot::default()).collect(),
            labels,
            len: AtomicUsize::new(0),
            reserved_used: AtomicUsize::new(0),
            intern: Mutex::new(HashMap::new()),
        }
    }

    /// Most service sites tracked before the overflow row takes over.
    pub(crate) fn capacity(&self) -> usize {
        self.labels.len() - 1 - RESERVED
    }

    /// Number of site rows counters need, the overflow row included.
    pub(crate) fn slots(&self) -> usize {
        self.labels.len()
    }

    pub(crate) fn overflow(&self) -> u32 {
        (self.labels.len() - 1) as u32
    }

    /// Service sites tracked (the agent's own not counted).
    pub(crate) fn tracked(&self) -> usize {
        self.len() - self.reserved_used.load(Ordering::Relaxed)
    }

    /// Site number for a location. Lock-free when the location was seen before.
    #[inline]
    pub(crate) fn lookup(&self, location: &'static Location<'static>) -> u32 {
        let key = location as *const Location<'static> as usize;
        let mask = self.index.len() - 1;
        let mut i = hash_ptr(key) & mask;
        for _ in 0..MAX_PROBE {
            let slot = &self.index[i];
            let k = slot.key.load(Ordering::Acquire);
            if k == key {
                return slot.value.load(Ordering::Relaxed);
            }
            if k == 0 {
                break;
            }
            i = (i + 1) & mask;
        }
        self.intern_slow(location, false)
    }

    /// Site number for one of the agent's own spawn locations: taken from the reserved
    /// places, so the service keeps every place its cap promises.
    pub(crate) fn lookup_reserved(&self, location: &'static Location<'static>) -> u32 {
        self.intern_slow(location, true)
    }

    #[cold]
    fn intern_slow(&self, location: &'static Location<'static>, reserved: bool) -> u32 {
        // A poisoned lock only means another thread panicked mid-insert; the map is still
        // consistent (insert is the last step), so keep going.
        let mut intern = self.intern.lock().unwrap_or_else(|e| e.into_inner());
        let label = label(location);
        let site = match intern.get(&label) {
            Some(&site) => site,
            None => {
                let next = self.len.load(Ordering::Relaxed);
                let agents = self.reserved_used.load(Ordering::Relaxed);
                let full = if reserved {
                    agents >= RESERVED
                } else {
                    next - agents >= self.capacity()
                };
                if full {
                    // The label is not kept (the map stays bounded), but the pointer goes
                    // into the index below, so this site's next spawns skip this lock.
                    self.overflow()
                } else {
                    let _ = self.labels[next].set(label.clone());
                    if reserved {
                        self.reserved_used.fetch_add(1, Ordering::Relaxed);
                    }
                    self.len.store(next + 1, Ordering::Release);
                    intern.insert(label, next as u32);
                    next as u32
                }
            }
        };
        self.publish(location as *const Location<'static> as usize, site);
        site
    }

    /// Records `key -> site` in the pointer index. Called with the intern lock held, so
    /// there is a single writer; readers see either an empty slot or a complete entry.
    fn publish(&self, key: usize, site: u32) {
        let mask = self.index.len() - 1;
        let mut i = hash_ptr(key) & mask;
        for _ in 0..MAX_PROBE {
            let slot = &self.index[i];
            let k = slot.key.load(Ordering::Relaxed);
            if k == key {
                return;
            }
            if k == 0 {
                slot.value.store(site, Ordering::Relaxed);
                slot.key.store(key, Ordering::Release);
                return;
            }
            i = (i + 1) & mask;
        }
        // Index crowded around this hash: this pointer keeps taking the slow path, which is
        // correct, only slower.
    }

    pub(crate) fn label(&self, site: u32) -> &str {
        self.labels[site as usize].get().map_or("", String::as_str)
    }

    /// Number of sites allocated (excluding overflow).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

/// Fibonacci hashing of an address: locations are 8-byte aligned statics laid out close
/// together, so the low bits alone would cluster.
#[inline]
fn hash_ptr(key: usize) -> usize {
    (key as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shortened() {
        assert_eq!(
            display_path("/home/u/.cargo/git/checkouts/hyper-0a1b2c3d/4e5f6a7/src/proto/h1.rs"),
            "hyper/src/proto/h1.rs"
        );
        assert_eq!(
            display_path("/rustc/59807616e1/library/core/src/future/mod.rs"),
            "library/core/src/future/mod.rs"
        );
        assert_eq!(display_path("src/main.rs"), "src/main.rs");
        assert_eq!(display_path("/elsewhere/z.rs"), "/elsewhere/z.rs");
    }

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn same_site_same_number_and_overflow_when_full() {
        let table = SiteTable::new(2);
        let a = here();
        let b = here();
        let c = here();
        assert_eq!(table.lookup(a), 0);
        assert_eq!(table.lookup(a), 0);
        assert_eq!(table.lookup(b), 1);
        assert_eq!(table.lookup(c), table.overflow());
        assert_eq!(table.len(), 2);
        // The overflowed pointer is in the lock-free index now.
        let key = c as *const Location<'static> as usize;
        assert!(
            table
                .index
                .iter()
                .any(|s| s.key.load(Ordering::Relaxed) == key)
        );
        assert_eq!(table.label(0), label(a));
        assert_eq!(table.label(table.overflow()), OVERFLOW_SITE);
    }
}
