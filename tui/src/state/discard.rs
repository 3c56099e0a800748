//! Freeing large task lists off the UI thread. A snapshot may list up to a million tasks
//! (one `String` each), kept only so that `s` can save them; freeing one on the event
//! loop when the next snapshot replaces it costs tens of milliseconds of a frame. They go
//! to one background thread instead.

use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use taskscope::model::TaskRow;

/// Lists shorter than this are freed in place: a thread hand-off costs more.
const MIN_ROWS: usize = 1024;

/// Lists waiting for the background thread at most; beyond that (the thread is behind)
/// they are freed in place, so that memory waiting to be freed stays bounded.
const QUEUE: usize = 2;

/// The channel to the freeing thread; `None` when the thread could not be started.
static FREER: OnceLock<Option<SyncSender<Vec<TaskRow>>>> = OnceLock::new();

fn freer() -> Option<&'static SyncSender<Vec<TaskRow>>> {
    FREER
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Vec<TaskRow>>(QUEUE);
            std::thread::Builder::new()
                .name("taskscope-free".into())
                .spawn(move || rx.into_iter().for_each(drop))
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Frees `tasks`, on the background thread when the list is long and the thread keeps up,
/// else here.
pub(super) fn later(tasks: Vec<TaskRow>) {
    if tasks.len() < MIN_ROWS {
        return;
    }
    let Some(tx) = freer() else { return };
    // When the thread is behind (or gone) the list comes back in the error and is freed
    // here.
    if let Err(TrySendError::Full(tasks) | TrySendError::Disconnected(tasks)) = tx.try_send(tasks) {
        drop(tasks);
    }
}
