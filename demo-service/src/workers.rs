//! A worker pool fed by a channel: a fixed number of worker tasks receive jobs from one
//! bounded queue, compute a user's order total and store it (the article's worker pool).

use std::sync::Arc;

use sqlx::SqlitePool;
// The shared receiver stays on tokio's Mutex: an idle worker holds it across `recv()`
// by design (the others queue for it), which taskscope::sync would rightly flag as a
// guard held across an await.
use tokio::sync::{Mutex, mpsc};

use crate::db;

/// Worker tasks in the pool.
pub const WORKERS: usize = 4;
/// Jobs the queue holds before `submit` answers "busy".
pub const QUEUE: usize = 100;

/// A job: compute the order total of `user_id` and store it as result `id`.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// Result id.
    pub id: i64,
    /// User whose orders to add up.
    pub user_id: i64,
}

/// The sending side of the pool.
#[derive(Clone)]
pub struct Pool {
    tx: mpsc::Sender<Job>,
}

impl Pool {
    /// Starts [`WORKERS`] workers sharing one queue. Must run within the service runtime.
    pub fn start(db: SqlitePool) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx)); // lock: job queue
        for _ in 0..WORKERS {
            let rx = Arc::clone(&rx);
            let db = db.clone();
            tokio::spawn(async move { worker(rx, db).await }); // spawn site: worker
        }
        Pool { tx }
    }

    /// Queues a job; `false` when the queue is full.
    pub fn submit(&self, job: Job) -> bool {
        self.tx.try_send(job).is_ok()
    }
}

async fn worker(rx: Arc<Mutex<mpsc::Receiver<Job>>>, db: SqlitePool) {
    loop {
        // Take one job, releasing the queue before working on it.
        let Some(job) = rx.lock().await.recv().await else {
            return;
        };
        match db::order_stats(&db, job.user_id).await {
            Ok(stats) => {
                if let Err(e) =
                    db::store_job_result(&db, job.id, job.user_id, stats.total_cents).await
                {
                    tracing::warn!(job = job.id, "cannot store job result: {e}");
                }
            }
            Err(e) => tracing::warn!(job = job.id, "job failed: {e}"),
        }
    }
}
