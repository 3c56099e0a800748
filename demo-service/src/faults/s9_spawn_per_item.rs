//! Fault `S9`: not implemented yet.

use super::{Active, Fault, FaultContext};

/// The `S9` fault.
pub struct SpawnPerItem;

impl Fault for SpawnPerItem {
    fn name(&self) -> &'static str {
        "S9"
    }

    fn summary(&self) -> &'static str {
        "Spawn per item into a full channel: 1000 tasks per batch wait on a channel of 16"
    }

    fn start(&self, _ctx: &FaultContext) -> anyhow::Result<Active> {
        anyhow::bail!("fault S9 is not implemented yet")
    }
}

/// `POST /ingest`: receives a batch of items (the S9 handler). Not implemented yet.
pub async fn ingest(
    axum::extract::State(_state): axum::extract::State<crate::app::AppState>,
) -> (axum::http::StatusCode, &'static str) {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "fault S9 is not implemented yet\n",
    )
}
