//! Fault `lostwaker`: a hand-written "cache warm" gate that keeps one waker, so every waiter
//! but the last loses its waker and can never run again.
//!
//! A real bug of hand-rolled futures: a one-slot waker cell (an `AtomicWaker`-style field)
//! shared by several waiters. Each waiter that polls the gate stores its waker in the slot,
//! dropping the waker stored before, which belonged to another task. When the gate opens,
//! only the last waiter is woken; the others hold no waker at all, so nothing can ever poll
//! them again. Unlike a task waiting on a channel whose sender is alive (S2), these tasks
//! are certainly leaked.
//!
//! With the fault on, [`WAITERS`] tasks start at once, each awaiting the gate (its warm-up
//! never finishes while the fault is on). Switching the fault off opens the gate (waking the
//! one waiter that still has a waker) and aborts the rest, so nothing is left behind.
//!
//! What taskscope shows, with the demo's `--lost-waker` layer on: a `lost_waker` finding
//! (critical) at the waiter spawn site in [`LostWakerGate::start`] for `WAITERS - 1`
//! tasks, once they have been idle a second; the last waiter, which holds the waker, is
//! idle but not reported.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{Active, Fault, FaultContext};

/// Tasks that wait on the gate.
pub const WAITERS: usize = 10;

/// A gate with room for a single waker: the bug.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }
}

/// Waits until the gate opens.
struct Opened(Arc<Gate>);

impl Future for Opened {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.open.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        // The bug: replaces (and drops) the waker of whichever task waited before.
        *self.0.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.0.open.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The `lostwaker` fault.
pub struct LostWakerGate;

impl Fault for LostWakerGate {
    fn name(&self) -> &'static str {
        "lostwaker"
    }

    fn summary(&self) -> &'static str {
        "10 tasks wait on a gate that keeps one waker: 9 lose theirs and can never run (needs --lost-waker to be seen)"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        let gate = Arc::new(Gate::default());
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let gate = Arc::clone(&gate);
                tokio::spawn(Opened(gate)) // fault site: lost waker
            })
            .collect();
        Ok(Active::new(move || {
            gate.open();
            // The waiters that lost their waker would never see the gate open.
            for w in waiters {
                w.abort();
            }
        })
        .with_status(move || serde_json::json!({ "waiters": WAITERS })))
    }
}
