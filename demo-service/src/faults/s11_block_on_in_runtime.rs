//! Fault `S11`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S11` fault.
pub struct BlockOnInRuntime;

impl Fault for BlockOnInRuntime {
    fn name(&self) -> &'static str {
        "S11"
    }

    fn summary(&self) -> &'static str {
        "block_on inside the runtime: handlers block their worker on a future that needs the runtime"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S11 is not implemented yet")
    }
}
