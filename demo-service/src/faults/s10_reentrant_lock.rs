//! Fault `S10`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S10` fault.
pub struct ReentrantLock;

impl Fault for ReentrantLock {
    fn name(&self) -> &'static str {
        "S10"
    }

    fn summary(&self) -> &'static str {
        "Re-entrant lock: a task waits for a Mutex it already holds"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S10 is not implemented yet")
    }
}
