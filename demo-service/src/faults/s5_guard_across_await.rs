//! Fault `S5`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S5` fault.
pub struct GuardAcrossAwait;

impl Fault for GuardAcrossAwait {
    fn name(&self) -> &'static str {
        "S5"
    }

    fn summary(&self) -> &'static str {
        "Read guards held across slow channel sends; the writer and later readers queue"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S5 is not implemented yet")
    }
}
