//! Fault `S7`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S7` fault.
pub struct NeverYields;

impl Fault for NeverYields {
    fn name(&self) -> &'static str {
        "S7"
    }

    fn summary(&self) -> &'static str {
        "A task that never yields: a 2 s CPU loop with no .await"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S7 is not implemented yet")
    }
}
