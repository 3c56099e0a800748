//! Fault `S2`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S2` fault.
pub struct ReplyMap;

impl Fault for ReplyMap {
    fn name(&self) -> &'static str {
        "S2"
    }

    fn summary(&self) -> &'static str {
        "Reply map that never answers: request tasks await oneshot replies the upstream never sends"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S2 is not implemented yet")
    }
}
