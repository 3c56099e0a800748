//! Fault `leak`: report jobs that block forever on a progress channel nobody reads.
//!
//! The article's first goroutine leak, in tokio form. In Go, a goroutine sending on an
//! unbuffered channel that no one reads blocks forever. A tokio `mpsc` send fails once the
//! receiver is dropped, so the tokio version of this bug keeps the receiver alive and never
//! reads it: `POST /reports` starts a report job that streams progress into a bounded
//! channel meant for a progress endpoint no client ever calls, and the receiver sits in the
//! job registry. The first progress message fills the channel, the second send waits forever.
//!
//! With the fault off, the job gets a channel with room for all its progress (the article's
//! fix: a buffer), and finishes. Switching the fault off also drops the stored receivers, so
//! the stranded jobs' sends fail and they end.
//!
//! What taskscope shows: with the fault on, every `POST /reports` leaves exactly one more
//! live task at the spawn site in [`start_report`], idle, its idle age growing;
//! `taskscope_tasks_live` at that site equals the number of calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Active, Fault, FaultContext};
use crate::app::AppState;

/// Most report jobs the registry keeps; beyond it `POST /reports` answers 503, so the leak
/// is bounded in memory even when driven hard.
pub const MAX_JOBS: usize = 100_000;

/// Progress messages a report job sends.
const PROGRESS_STEPS: [u32; 2] = [50, 100];

/// Progress receivers by job id, waiting for a reader that never comes.
#[derive(Default)]
pub struct ReportJobs {
    leaking: AtomicBool,
    next_id: AtomicU64,
    progress: Mutex<HashMap<u64, mpsc::Receiver<u32>>>,
}

impl ReportJobs {
    fn pending(&self) -> usize {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// The `leak` fault.
pub struct ReportLeak;

impl Fault for ReportLeak {
    fn name(&self) -> &'static str {
        "leak"
    }

    fn summary(&self) -> &'static str {
        "POST /reports leaves a job blocked on a progress channel nobody reads (the article's leak)"
    }

    fn start(&self, ctx: &FaultContext) -> anyhow::Result<Active> {
        let jobs = ctx.state.reports.clone();
        jobs.leaking.store(true, Ordering::Relaxed);
        let status_jobs = jobs.clone();
        Ok(Active::new(move || {
            jobs.leaking.store(false, Ordering::Relaxed);
            // Dropping the receivers fails the stranded sends: the jobs end.
            jobs.progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        })
        .with_status(move || serde_json::json!({ "stranded_jobs": status_jobs.pending() })))
    }
}

/// Answer to `POST /reports`.
#[derive(Serialize)]
pub struct Started {
    /// The new job's id.
    pub job: u64,
}

/// `POST /reports`: starts a report job.
pub async fn start_report(
    State(state): State<AppState>,
) -> Result<Json<Started>, (StatusCode, String)> {
    let jobs = &state.reports;
    let job = jobs.next_id.fetch_add(1, Ordering::Relaxed);
    let (progress, kept) = if jobs.leaking.load(Ordering::Relaxed) {
        let (tx, rx) = mpsc::channel::<u32>(1);
        let mut pending = jobs.progress.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_JOBS {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_JOBS} report jobs pending\n"),
            ));
        }
        pending.insert(job, rx);
        (tx, None)
    } else {
        // The fix: room for every progress message, so the job never waits for a reader.
        let (tx, rx) = mpsc::channel::<u32>(PROGRESS_STEPS.len());
        (tx, Some(rx))
    };
    // taskscope::spawn keeps the job's own frames in task dumps of release builds.
    taskscope::spawn(async move { run_report(progress, kept).await }); // leak site: report job
    Ok(Json(Started { job }))
}

/// The job: computes a little, then reports progress after each part. `_kept` holds the
/// receiver of a buffered channel when the fault is off (it is read by nobody either, but
/// has room for everything).
async fn run_report(progress: mpsc::Sender<u32>, _kept: Option<mpsc::Receiver<u32>>) {
    for percent in PROGRESS_STEPS {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        // The bug: with the fault on nobody reads `progress`, so the second send waits
        // forever.
        let sent = progress.send(percent).await; // await point: the leaked job waits here
        if sent.is_err() {
            return;
        }
    }
}
