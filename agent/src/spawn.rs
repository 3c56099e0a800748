//! An opt-in spawn that keeps the task's own frames in task dumps of release builds.
//!
//! tokio polls every task through an internal root whose `poll` is not inlined, and a task
//! dump's backtrace stops there. In release builds the task's `async fn` bodies are inlined
//! into that root, so only tokio's leaf frames remain. A wrapper whose `poll` is never
//! inlined gives them a frame of their own again. It needs debug info in the binary too:
//! `debug = "line-tables-only"` (or more) in the release profile.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Spawns `future` on the current runtime like `tokio::spawn`, at the caller's spawn site,
/// wrapped so that task dumps of release builds show its frames.
///
/// ```
/// # let rt = tokio::runtime::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let handle = taskscope::spawn(async { 1 + 1 });
/// assert_eq!(handle.await.unwrap(), 2);
/// # });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Framed { inner: future })
}

/// The wrapper: a frame of its own around the task's future.
struct Framed<F> {
    inner: F,
}

impl<F: Future> Future for Framed<F> {
    type Output = F::Output;

    #[inline(never)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning: `inner` is never moved out of a pinned `Framed`, and
        // `Framed` has no Drop or Unpin impl that could move it.
        let inner = unsafe { self.map_unchecked_mut(|f| &mut f.inner) };
        inner.poll(cx)
    }
}
