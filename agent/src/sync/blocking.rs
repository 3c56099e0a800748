//! Blocking locks for state shared with async code, instrumented: a thread that waits for
//! one of these blocks its tokio worker, and taskscope shows who holds it.

use std::fmt;
use std::panic::Location;
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};
use std::sync::{RwLockReadGuard as StdReadGuard, RwLockWriteGuard as StdWriteGuard};

use super::mutex::Released;
use super::state::{Registered, registry};
use crate::model::{LockKind, LockMode};

/// A blocking mutex like [`std::sync::Mutex`] that reports holders, waiters and contention
/// to taskscope. Waiting blocks the thread (and, on a tokio worker, every task queued
/// there): keep critical sections short and never `.await` while holding it.
///
/// ```
/// let m = taskscope::sync::blocking::Mutex::new(0);
/// *m.lock().unwrap() += 1;
/// assert_eq!(*m.lock().unwrap(), 1);
/// ```
pub struct Mutex<T: ?Sized> {
    state: Registered,
    inner: std::sync::Mutex<T>,
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
            state: registry().register(LockKind::BlockingMutex, at, name, 1),
            inner: std::sync::Mutex::new(value),
        }
    }

    /// Consumes the mutex, returning the value.
    pub fn into_inner(self) -> LockResult<T> {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, blocking the thread while another holds it.
    #[track_caller]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let (inner, poisoned, hold) = take(
            &self.state,
            Location::caller(),
            LockMode::Exclusive,
            || self.inner.try_lock(),
            || self.inner.lock(),
        );
        let guard = MutexGuard { hold, inner };
        if poisoned {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// Locks the mutex if it is free now.
    #[track_caller]
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        let site = Location::caller();
        let (guard, poisoned) = match self.inner.try_lock() {
            Ok(g) => (g, false),
            Err(TryLockError::Poisoned(e)) => (e.into_inner(), true),
            Err(TryLockError::WouldBlock) => return Err(TryLockError::WouldBlock),
        };
        let guard = MutexGuard {
            hold: self.state.hold(site, LockMode::Exclusive, 1),
            inner: guard,
        };
        if poisoned {
            Err(TryLockError::Poisoned(PoisonError::new(guard)))
        } else {
            Ok(guard)
        }
    }

    /// A mutable reference to the value, without locking.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
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

/// A held blocking [`Mutex`]; unlocks when dropped.
pub struct MutexGuard<'a, T: ?Sized> {
    hold: Released<'a>,
    inner: std::sync::MutexGuard<'a, T>,
}

guard_impls!(MutexGuard, mut);

/// Read holders tracked one by one per lock; more are only counted.
const READ_SLOTS: usize = 64;

/// A blocking read-write lock like [`std::sync::RwLock`] that reports holders, waiters and
/// contention to taskscope. Waiting blocks the thread.
///
/// ```
/// let table = taskscope::sync::blocking::RwLock::named(vec![1], "routes");
/// assert_eq!(table.read().unwrap().len(), 1);
/// table.write().unwrap().push(2);
/// assert_eq!(table.read().unwrap().len(), 2);
/// ```
pub struct RwLock<T: ?Sized> {
    state: Registered,
    inner: std::sync::RwLock<T>,
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
            state: registry().register(LockKind::BlockingRwLock, at, name, READ_SLOTS),
            inner: std::sync::RwLock::new(value),
        }
    }

    /// Consumes the lock, returning the value.
    pub fn into_inner(self) -> LockResult<T> {
        self.inner.into_inner()
    }
}

/// Takes a std guard: at once if possible, else as a recorded wait; poisoning is carried.
fn take<'a, G>(
    state: &'a Registered,
    site: &'static Location<'static>,
    mode: LockMode,
    now: impl FnOnce() -> TryLockResult<G>,
    wait: impl FnOnce() -> LockResult<G>,
) -> (G, bool, Released<'a>) {
    let (guard, poisoned) = match now() {
        Ok(g) => (g, false),
        Err(TryLockError::Poisoned(e)) => (e.into_inner(), true),
        Err(TryLockError::WouldBlock) => {
            let w = state.begin_wait(site, mode, 1);
            let r = wait();
            w.granted();
            match r {
                Ok(g) => (g, false),
                Err(e) => (e.into_inner(), true),
            }
        }
    };
    (guard, poisoned, state.hold(site, mode, 1))
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, blocking the thread while a writer holds the lock.
    #[track_caller]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let (inner, poisoned, hold) = take(
            &self.state,
            Location::caller(),
            LockMode::Read,
            || self.inner.try_read(),
            || self.inner.read(),
        );
        let guard = RwLockReadGuard { hold, inner };
        if poisoned {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// Locks for writing, blocking the thread while anyone else holds the lock.
    #[track_caller]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let (inner, poisoned, hold) = take(
            &self.state,
            Location::caller(),
            LockMode::Write,
            || self.inner.try_write(),
            || self.inner.write(),
        );
        let guard = RwLockWriteGuard { hold, inner };
        if poisoned {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }

    /// A mutable reference to the value, without locking.
    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        self.inner.get_mut()
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// A read guard of a blocking [`RwLock`].
pub struct RwLockReadGuard<'a, T: ?Sized> {
    hold: Released<'a>,
    inner: StdReadGuard<'a, T>,
}

/// A write guard of a blocking [`RwLock`].
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    hold: Released<'a>,
    inner: StdWriteGuard<'a, T>,
}

guard_impls!(RwLockReadGuard);
guard_impls!(RwLockWriteGuard, mut);
