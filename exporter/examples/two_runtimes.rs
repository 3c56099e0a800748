//! Two tokio runtimes in one process, each with its own named agent, served by one
//! exporter: a `web` runtime answering (simulated) requests and an `io` runtime holding
//! long-lived connections.
//!
//! ```text
//! cargo run -p taskscope-exporter --example two_runtimes     # serves 127.0.0.1:6060
//! taskscope http://127.0.0.1:6060                            # one target per runtime
//! curl -s 127.0.0.1:6060/metrics | grep 'taskscope_tasks_live{'
//! ```

use std::net::SocketAddr;
use std::time::Duration;

fn runtime(name: &str, workers: usize) -> (tokio::runtime::Runtime, taskscope::Agent) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    let agent = taskscope::Agent::builder()
        .runtime_name(name)
        .install(&mut builder);
    (builder.build().expect("build the runtime"), agent)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6060".into())
        .parse()?;
    let (web_rt, web) = runtime("web", 2);
    let (io_rt, io) = runtime("io", 1);
    let exporter = taskscope_exporter::Exporter::new(web)
        .runtime(io)?
        .bind(addr)?;
    println!(
        "serving runtimes web and io on http://{}",
        exporter.local_addr()
    );

    // io: 20 connections that stay open, each waking every second.
    for _ in 0..20 {
        io_rt.spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    // web: a request every 10 ms, each done after 50 ms.
    web_rt.block_on(async {
        loop {
            tokio::spawn(tokio::time::sleep(Duration::from_millis(50)));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    Ok(())
}
