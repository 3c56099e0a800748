//! Fault `S4`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S4` fault.
pub struct RecursiveRead;

impl Fault for RecursiveRead {
    fn name(&self) -> &'static str {
        "S4"
    }

    fn summary(&self) -> &'static str {
        "Recursive read on a fair RwLock with a writer queued between: both hang"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S4 is not implemented yet")
    }
}
