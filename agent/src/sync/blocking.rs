//! Blocking locks for state shared with async code, instrumented: a thread that waits for
//! one of these blocks its tokio worker, and taskscope shows who holds it.

use std::fmt;
use std::panic::Location;
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};

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
        let site = Location::caller();
        let (guard, poisoned) = match self.inner.try_lock() {
            Ok(g) => (g, false),
            Err(TryLockError::Poisoned(e)) => (e.into_inner(), true),
            Err(TryLockError::WouldBlock) => {
                let wait = self.state.begin_wait(site, LockMode::Exclusive, 1);
                let r = self.inner.lock();
                wait.granted();
                match r {
                    Ok(g) => (g, false),
                    Err(e) => (e.into_inner(), true),
                }
            }
        };
        let guard = MutexGuard {
            hold: self.state.hold(site, LockMode::Exclusive, 1),
            inner: guard,
        };
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
