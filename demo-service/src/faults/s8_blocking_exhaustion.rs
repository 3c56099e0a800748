//! Fault `S8`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S8` fault.
pub struct BlockingExhaustion;

impl Fault for BlockingExhaustion {
    fn name(&self) -> &'static str {
        "S8"
    }

    fn summary(&self) -> &'static str {
        "Blocking pool exhaustion: blocking jobs block_on async file I/O that needs a blocking thread"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S8 is not implemented yet")
    }
}
