//! Fault `S6`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S6` fault.
pub struct HotMutex;

impl Fault for HotMutex {
    fn name(&self) -> &'static str {
        "S6"
    }

    fn summary(&self) -> &'static str {
        "Hot mutex: every request holds one Mutex for 5 ms of work"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S6 is not implemented yet")
    }
}
