//! Fault `S1`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S1` fault.
pub struct IdleKeepAlive;

impl Fault for IdleKeepAlive {
    fn name(&self) -> &'static str {
        "S1"
    }

    fn summary(&self) -> &'static str {
        "Idle keep-alive connections: one task per connection, no idle timeout, clients hold silent sockets"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S1 is not implemented yet")
    }
}
