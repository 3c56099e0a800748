//! `taskscope::sync::Mutex`: tokio's async mutex, instrumented.

use std::fmt;
use std::future::Future;
use std::panic::Location;

use tokio::sync::TryLockError;

use super::state::{Hold, Instance, Registered, registry};
use crate::model::{LockKind, LockMode};

/// An async mutex like [`tokio::sync::Mutex`] that reports its holders, waiters and
/// contention to taskscope.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let m = taskscope::sync::Mutex::new(vec![1]);
/// m.lock().await.push(2);
/// assert_eq!(m.lock().await.len(), 2);
/// # });
/// ```
pub struct Mutex<T: ?Sized> {
    state: Registered,
    inner: tokio::sync::Mutex<T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex; its identity is this call's location.
    #[track_caller]
    pub fn new(value: T) -> Self {
        Self::make(value, None, Location::caller())
    }

    /// A new unlocked mutex with a name shown next to its creation site.
    #[track_caller]
    pub fn named(value: T, name: impl Into<String>) -> Self {
        Self::make(value, Some(name.into()), Location::caller())
    }

    fn make(value: T, name: Option<String>, at: &'static Location<'static>) -> Self {
        Mutex {
            state: registry().register(LockKind::Mutex, at, name, 1),
            inner: tokio::sync::Mutex::new(value),
        }
    }

    /// Consumes the mutex, returning the value.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, waiting (asynchronously) while another task holds it. The caller's
    /// location is the acquire site.
    #[track_caller]
    pub fn lock(&self) -> impl Future<Output = MutexGuard<'_, T>> + '_ {
        self.lock_at(Location::caller())
    }

    async fn lock_at(&self, site: &'static Location<'static>) -> MutexGuard<'_, T> {
        let guard = match self.inner.try_lock() {
            Ok(g) => g,
            Err(_) => {
                let wait = self.state.begin_wait(site, LockMode::Exclusive, 1);
                let g = self.inner.lock().await;
                wait.granted();
                g
            }
        };
        MutexGuard {
            hold: self.state.hold(site, LockMode::Exclusive, 1),
            inner: guard,
        }
    }

    /// Locks the mutex if it is free.
    #[track_caller]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        let site = Location::caller();
        let guard = self.inner.try_lock()?;
        Ok(MutexGuard {
            hold: self.state.hold(site, LockMode::Exclusive, 1),
            inner: guard,
        })
    }

    /// A mutable reference to the value, without locking (the borrow proves exclusivity).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// Ends a hold when dropped: declared before the inner guard in every guard, so the holder
/// slot is cleared before the lock is handed on (a waiter never sees a holder that left).
pub(crate) struct Released<'a> {
    pub(crate) state: &'a Instance,
    pub(crate) hold: Hold,
}

impl Instance {
    /// Records an acquisition now and returns what ends it.
    #[inline]
    pub(crate) fn hold(
        &self,
        site: &'static Location<'static>,
        mode: LockMode,
        permits: u32,
    ) -> Released<'_> {
        Released {
            state: self,
            hold: self.acquired(site, mode, permits),
        }
    }
}

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.state.released(&self.hold);
    }
}

/// A held [`Mutex`]; unlocks when dropped.
pub struct MutexGuard<'a, T: ?Sized> {
    hold: Released<'a>,
    inner: tokio::sync::MutexGuard<'a, T>,
}

guard_impls!(MutexGuard, mut);
