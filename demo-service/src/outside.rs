//! The world outside the service: a runtime of its own, on its own thread, for everything
//! that plays another process (the fake upstream service, fault clients, the load
//! generator). Its tasks are not the service's, so taskscope does not count them, exactly
//! as it would not count a real client's.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Handle to the outside runtime; cheap to clone.
#[derive(Clone, Debug)]
pub struct Outside {
    handle: Handle,
}

impl Outside {
    /// Starts the outside runtime (one worker thread, never instrumented).
    pub fn start() -> std::io::Result<Outside> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("demo-outside")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        // The runtime lives as long as the process: leak it rather than tie its lifetime to
        // a handle someone might drop while clients still run.
        std::mem::forget(runtime);
        Ok(Outside { handle })
    }

    /// Runs `fut` on the outside runtime.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }

    /// The outside runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}
