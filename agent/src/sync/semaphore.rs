//! `taskscope::sync::Semaphore`: tokio's semaphore, instrumented.

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

use tokio::sync::{AcquireError, TryAcquireError};

use super::mutex::Released;
use super::state::{Hold, Instance, Registered, registry};
use crate::model::{LockKind, LockMode};

/// Permit holders tracked one by one per semaphore; more are only counted.
const PERMIT_SLOTS: usize = 64;

/// A semaphore like [`tokio::sync::Semaphore`] that reports who holds permits, who waits,
/// and how long, to taskscope.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let limit = taskscope::sync::Semaphore::new(2);
/// let a = limit.acquire().await.unwrap();
/// let _b = limit.acquire().await.unwrap();
/// assert!(limit.try_acquire().is_err());
/// drop(a);
/// assert_eq!(limit.available_permits(), 1);
/// # });
/// ```
pub struct Semaphore {
    state: Registered,
    inner: Arc<tokio::sync::Semaphore>,
}

impl Semaphore {
    /// A semaphore with `permits` permits; its identity is this call's location.
    #[track_caller]
    pub fn new(permits: usize) -> Self {
        Self::make(permits, None, Location::caller())
    }

    /// A semaphore with a name shown next to its creation site.
    #[track_caller]
    pub fn named(permits: usize, name: impl Into<String>) -> Self {
        Self::make(permits, Some(name.into()), Location::caller())
    }

    fn make(permits: usize, name: Option<String>, at: &'static Location<'static>) -> Self {
        Semaphore {
            state: registry().register(LockKind::Semaphore, at, name, PERMIT_SLOTS),
            inner: Arc::new(tokio::sync::Semaphore::new(permits)),
        }
    }

    /// Permits available now.
    pub fn available_permits(&self) -> usize {
        self.inner.available_permits()
    }

    /// Adds permits.
    pub fn add_permits(&self, n: usize) {
        self.inner.add_permits(n)
    }

    /// Closes the semaphore: waiters and later acquisitions fail.
    pub fn close(&self) {
        self.inner.close()
    }

    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Acquires one permit, waiting if none is available.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<SemaphorePermit<'_>, AcquireError>> + '_ {
        self.acquire_many_at(1, Location::caller())
    }

    /// Acquires `n` permits at once.
    #[track_caller]
    pub fn acquire_many(
        &self,
        n: u32,
    ) -> impl Future<Output = Result<SemaphorePermit<'_>, AcquireError>> + '_ {
        self.acquire_many_at(n, Location::caller())
    }

    async fn acquire_many_at(
        &self,
        n: u32,
        site: &'static Location<'static>,
    ) -> Result<SemaphorePermit<'_>, AcquireError> {
        let permit = match self.inner.try_acquire_many(n) {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => self.inner.acquire_many(n).await?,
            Err(TryAcquireError::NoPermits) => {
                let wait = self.state.begin_wait(site, LockMode::Permits, n);
                let p = self.inner.acquire_many(n).await?;
                wait.granted();
                p
            }
        };
        Ok(SemaphorePermit {
            hold: self.state.hold(site, LockMode::Permits, n),
            inner: permit,
        })
    }

    /// Acquires one permit if one is available now.
    #[track_caller]
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_many_at(1, Location::caller())
    }

    /// Acquires `n` permits if they are available now.
    #[track_caller]
    pub fn try_acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_many_at(n, Location::caller())
    }

    fn try_acquire_many_at(
        &self,
        n: u32,
        site: &'static Location<'static>,
    ) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        let permit = self.inner.try_acquire_many(n)?;
        Ok(SemaphorePermit {
            hold: self.state.hold(site, LockMode::Permits, n),
            inner: permit,
        })
    }

    /// Acquires one permit from an `Arc`, for a permit that owns its reference.
    #[track_caller]
    pub fn acquire_owned(
        self: Arc<Self>,
    ) -> impl Future<Output = Result<OwnedSemaphorePermit, AcquireError>> {
        let site = Location::caller();
        async move {
            let inner = Arc::clone(&self.inner);
            let permit = match inner.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::Closed) => inner.acquire_owned().await?,
                Err(TryAcquireError::NoPermits) => {
                    let wait = self.state.begin_wait(site, LockMode::Permits, 1);
                    let p = inner.acquire_owned().await?;
                    wait.granted();
                    p
                }
            };
            let hold = self.state.acquired(site, LockMode::Permits, 1);
            Ok(OwnedSemaphorePermit {
                hold: OwnedRelease {
                    state: Arc::clone(&self.state.0),
                    hold,
                },
                inner: permit,
            })
        }
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.inner, f)
    }
}

/// Permits of a [`Semaphore`]; given back when dropped.
pub struct SemaphorePermit<'a> {
    #[allow(dead_code)] // ends the hold when dropped, before the permits go back
    hold: Released<'a>,
    inner: tokio::sync::SemaphorePermit<'a>,
}

impl SemaphorePermit<'_> {
    /// Permits held.
    pub fn num_permits(&self) -> usize {
        self.inner.num_permits()
    }
}

/// Permits of a [`Semaphore`] that own an `Arc` of it (from [`Semaphore::acquire_owned`]).
pub struct OwnedSemaphorePermit {
    #[allow(dead_code)] // ends the hold when dropped, before the permits go back
    hold: OwnedRelease,
    inner: tokio::sync::OwnedSemaphorePermit,
}

impl OwnedSemaphorePermit {
    /// Permits held.
    pub fn num_permits(&self) -> usize {
        self.inner.num_permits()
    }
}

struct OwnedRelease {
    state: Arc<Instance>,
    hold: Hold,
}

impl Drop for OwnedRelease {
    fn drop(&mut self) {
        self.state.released(&self.hold);
    }
}

impl std::fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.inner, f)
    }
}

impl std::fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.inner, f)
    }
}
