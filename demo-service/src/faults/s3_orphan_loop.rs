//! Fault `S3`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S3` fault.
pub struct OrphanLoop;

impl Fault for OrphanLoop {
    fn name(&self) -> &'static str {
        "S3"
    }

    fn summary(&self) -> &'static str {
        "Per-connection background loop that outlives its connection"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S3 is not implemented yet")
    }
}
