//! `taskscope::sync::RwLock`: tokio's fair async read-write lock, instrumented.

use std::fmt;
use std::future::Future;
use std::panic::Location;

use tokio::sync::TryLockError;

use super::mutex::Released;
use super::state::{Registered, registry};
use crate::model::{LockKind, LockMode};

/// Read holders tracked one by one per lock; more are only counted.
const READ_SLOTS: usize = 64;

/// An async read-write lock like [`tokio::sync::RwLock`] (fair: once a writer waits, new
/// readers queue behind it) that reports holders, waiters and contention to taskscope.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let config = taskscope::sync::RwLock::named(1u32, "config");
/// assert_eq!(*config.read().await, 1);
/// *config.write().await = 2;
/// assert_eq!(*config.read().await, 2);
/// # });
/// ```
pub struct RwLock<T: ?Sized> {
    state: Registered,
    inner: tokio::sync::RwLock<T>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock; its identity is this call's location.
    #[track_caller]
    pub fn new(value: T) -> Self {
        Self::make(value, None, Location::caller())
    }

    /// A new unlocked lock with a name shown next to its creation site.
    #[track_caller]
    pub fn named(value: T, name: impl Into<String>) -> Self {
        Self::make(value, Some(name.into()), Location::caller())
    }

    fn make(value: T, name: Option<String>, at: &'static Location<'static>) -> Self {
        RwLock {
            state: registry().register(LockKind::RwLock, at, name, READ_SLOTS),
            inner: tokio::sync::RwLock::new(value),
        }
    }

    /// Consumes the lock, returning the value.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, waiting while a writer holds the lock or waits for it.
    #[track_caller]
    pub fn read(&self) -> impl Future<Output = RwLockReadGuard<'_, T>> + '_ {
        let site = Location::caller();
        async move {
            let guard = match self.inner.try_read() {
                Ok(g) => g,
                Err(_) => {
                    let wait = self.state.begin_wait(site, LockMode::Read, 1);
                    let g = self.inner.read().await;
                    wait.granted();
                    g
                }
            };
            RwLockReadGuard {
                hold: self.state.hold(site, LockMode::Read, 1),
                inner: guard,
            }
        }
    }

    /// Locks for writing, waiting until no one else holds the lock.
    #[track_caller]
    pub fn write(&self) -> impl Future<Output = RwLockWriteGuard<'_, T>> + '_ {
        let site = Location::caller();
        async move {
            let guard = match self.inner.try_write() {
                Ok(g) => g,
                Err(_) => {
                    let wait = self.state.begin_wait(site, LockMode::Write, 1);
                    let g = self.inner.write().await;
                    wait.granted();
                    g
                }
            };
            RwLockWriteGuard {
                hold: self.state.hold(site, LockMode::Write, 1),
                inner: guard,
            }
        }
    }

    /// Locks for reading if that is possible now.
    #[track_caller]
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, TryLockError> {
        let site = Location::caller();
        let guard = self.inner.try_read()?;
        Ok(RwLockReadGuard {
            hold: self.state.hold(site, LockMode::Read, 1),
            inner: guard,
        })
    }

    /// Locks for writing if that is possible now.
    #[track_caller]
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>, TryLockError> {
        let site = Location::caller();
        let guard = self.inner.try_write()?;
        Ok(RwLockWriteGuard {
            hold: self.state.hold(site, LockMode::Write, 1),
            inner: guard,
        })
    }

    /// A mutable reference to the value, without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: Default> Default for RwLock<T> {
    #[track_caller]
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// A read guard of an [`RwLock`].
pub struct RwLockReadGuard<'a, T: ?Sized> {
    hold: Released<'a>,
    inner: tokio::sync::RwLockReadGuard<'a, T>,
}

/// A write guard of an [`RwLock`].
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    hold: Released<'a>,
    inner: tokio::sync::RwLockWriteGuard<'a, T>,
}

guard_impls!(RwLockReadGuard);

guard_impls!(RwLockWriteGuard, mut);
