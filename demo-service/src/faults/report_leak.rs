//! Fault: report jobs that block forever on a progress channel nobody reads.
//!
//! The article's first goroutine leak, in tokio form. In Go, a goroutine sending on an
//! unbuffered channel that no one reads blocks forever. A tokio `mpsc` send fails once the
//! receiver is dropped, so the tokio version of this bug keeps the receiver alive and never
//! reads it: here `POST /reports` starts a report job that streams progress into a bounded
//! channel meant for a progress endpoint no client ever calls; the receiver sits in the job
//! registry. The first progress message fills the channel, the second send waits forever.
//!
//! What taskscope shows: every call leaves exactly one more live task at the spawn site in
//! [`start`], idle, its idle age growing; `taskscope_tasks_live` at that site equals the
//! number of calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::app::AppState;

/// Most report jobs the registry keeps; beyond it `POST /reports` answers 503, so the leak
/// is bounded in memory even when driven hard.
pub const MAX_JOBS: usize = 100_000;

/// Progress receivers by job id, waiting for a reader that never comes.
#[derive(Default)]
pub struct ReportJobs {
    next_id: AtomicU64,
    progress: Mutex<HashMap<u64, mpsc::Receiver<u32>>>,
}

/// Answer to `POST /reports`.
#[derive(Serialize)]
pub struct Started {
    /// The new job's id.
    pub job: u64,
}

/// `POST /reports`: starts a report job.
pub async fn start(State(state): State<AppState>) -> Result<Json<Started>, (StatusCode, String)> {
    let jobs = &state.reports;
    let (tx, rx) = mpsc::channel::<u32>(1);
    let job = jobs.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut progress = jobs.progress.lock().unwrap_or_else(|e| e.into_inner());
        if progress.len() >= MAX_JOBS {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_JOBS} report jobs pending\n"),
            ));
        }
        progress.insert(job, rx);
    }
    tokio::spawn(async move { run_report(tx).await }); // leak site: report job
    Ok(Json(Started { job }))
}

/// The job: computes a little, then reports progress after each part.
async fn run_report(progress: mpsc::Sender<u32>) {
    for percent in [50, 100] {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        // The bug: nobody reads `progress`, so the second send waits forever.
        if progress.send(percent).await.is_err() {
            return;
        }
    }
}
