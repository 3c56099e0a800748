//! Instrumented locks: drop-in replacements for tokio's `Mutex`, `RwLock` and `Semaphore`
//! (and a blocking `Mutex` under [`blocking`]) that record who holds and who waits.
//!
//! Each lock has an identity: where it was created (`#[track_caller]`) and an optional
//! name. Per identity the agent counts acquisitions, contended acquisitions, wait and hold
//! times, and charges each wait to the acquire site that held the lock meanwhile (Go's
//! mutex profile). Per lock it knows the current holders (task, acquire site, mode, since)
//! and waiters; from those it finds deadlocks (a cycle of tasks each waiting for a lock
//! the next one holds), guards held across `.await`, and hot locks. All of it shows in the
//! agent's snapshot ([`crate::model::Snapshot::locks`]), `/metrics` and the TUI.
//!
//! ```
//! use taskscope::sync::Mutex;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let counter = Mutex::named(0u64, "request counter");
//! *counter.lock().await += 1; // this line is the acquire site
//! assert_eq!(*counter.lock().await, 1);
//! # });
//! ```
//!
//! The same API as tokio's for the common methods: swapping `tokio::sync::Mutex` for
//! `taskscope::sync::Mutex` is the whole change. The uncontended cost is a slot claim, a
//! few relaxed counter updates and two coarse clock reads; see `agent/benches/locks.rs`.

/// `Deref` (and `DerefMut` with `mut`) and `Debug` for a guard holding its lock's guard in
/// a field `inner` and the hold in `hold`.
macro_rules! guard_impls {
    ($guard:ident) => {
        impl<T: ?Sized> std::ops::Deref for $guard<'_, T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.inner
            }
        }

        impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for $guard<'_, T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let _ = &self.hold;
                std::fmt::Debug::fmt(&*self.inner, f)
            }
        }
    };
    ($guard:ident, mut) => {
        guard_impls!($guard);

        impl<T: ?Sized> std::ops::DerefMut for $guard<'_, T> {
            fn deref_mut(&mut self) -> &mut T {
                &mut self.inner
            }
        }
    };
}

pub mod blocking;
mod mutex;
mod rwlock;
mod semaphore;
pub(crate) mod state;

pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
pub use state::MAX_LOCK_CLASSES;
