//! Counting panics inside tasks, per spawn site.
//!
//! tokio catches a task's panic inside the poll and stores it for the `JoinHandle`; its
//! hooks run as for any other poll (the after-poll and terminate hooks fire), so the
//! agent's live counts stay exact, but nothing in the hooks says the task panicked. The
//! process's panic hook does run, on the panicking thread, while the task is still being
//! polled: `tokio::task::try_id()` names the task there, and the task table gives its site.
//!
//! The hook is process-wide, so it is installed once and serves every agent in the process
//! (a registry of weak references). It chains to the hook that was set before, so panic
//! messages print as they did. A hook set *after* the agent is installed replaces this one;
//! then panics are no longer counted (documented on [`crate::AgentBuilder::count_panics`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, RwLock, Weak};

use crate::Inner;
use crate::tasks::id_to_u64;

/// Most agents the process-wide hook serves at once; agents dropped since are pruned when a
/// new one registers. Beyond it, a new agent does not count panics (and says so in its
/// snapshot's `panic_counting` field).
const MAX_AGENTS: usize = 64;

/// Read by every panicking thread at once (so a read lock: two tasks panicking together must
/// both be counted), written only when an agent is installed.
static AGENTS: RwLock<Vec<Weak<Inner>>> = RwLock::new(Vec::new());
static HOOK: Once = Once::new();

/// Per-site panic counters, one per site slot (the overflow row included).
pub(crate) struct PanicCounts {
    per_site: Box<[AtomicU64]>,
}

impl PanicCounts {
    pub(crate) fn new(slots: usize) -> Self {
        PanicCounts {
            per_site: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Panics in tasks spawned at `site` since the agent started.
    pub(crate) fn get(&self, site: u32) -> u64 {
        self.per_site
            .get(site as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn count(&self, site: u32) {
        // A site beyond the slots cannot happen (sites are bounded by the same capacity);
        // the last slot is the overflow row, which takes anything unexpected.
        let last = self.per_site.len().saturating_sub(1);
        if let Some(c) = self.per_site.get((site as usize).min(last)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Adds `inner` to the agents the panic hook serves, installing the hook on first use.
/// Returns false when [`MAX_AGENTS`] live agents are registered already.
pub(crate) fn register(inner: &Arc<Inner>) -> bool {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            count_current_task();
            previous(info);
        }));
    });
    let mut agents = AGENTS.write().unwrap_or_else(|e| e.into_inner());
    agents.retain(|a| a.strong_count() > 0);
    if agents.len() >= MAX_AGENTS {
        return false;
    }
    agents.push(Arc::downgrade(inner));
    true
}

/// Called from the panic hook: charges the panic to the site of the task being polled on
/// this thread, if any agent tracks it. Never panics. The locks it takes (the registry for
/// reading, a task-table shard) are held elsewhere only for a few instructions that call no
/// user code, so a panic cannot happen while this thread holds one.
fn count_current_task() {
    let Some(id) = tokio::task::try_id() else {
        return; // not inside a task: a panic in plain code, not ours to count
    };
    let id = id_to_u64(id);
    let agents = AGENTS.read().unwrap_or_else(|e| e.into_inner());
    for agent in agents.iter().filter_map(Weak::upgrade) {
        if let Some(site) = agent.tasks.site_of(id) {
            agent.panics.count(site);
            return;
        }
    }
}
