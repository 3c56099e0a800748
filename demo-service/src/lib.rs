//! taskscope demo service: a small axum backend built from the article's concurrency
//! patterns, instrumented with the taskscope agent and exporter, with a leak one request
//! away and a built-in load generator.
//!
//! The binary is a thin wrapper around [`main`], so that tests can build the very same
//! program (see the `tests/` crate).

pub mod app;
pub mod faults;
pub mod load;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::oneshot;

/// Command line of the demo service.
#[derive(Debug, Parser)]
#[command(name = "taskscope-demo", version, about)]
pub struct Args {
    /// Address of the service's HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Address of the taskscope exporter (/metrics, /debug/taskscope/snapshot).
    #[arg(long, default_value = taskscope_exporter::DEFAULT_ADDR)]
    pub exporter_addr: SocketAddr,
    /// Worker threads of the service's runtime (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Drive the service with this many requests per second from a built-in load generator.
    #[arg(long, value_name = "RATE")]
    pub load: Option<u32>,
    /// With --load: one request in this many is `POST /reports`, the leak (0: never).
    #[arg(long, default_value_t = 20)]
    pub leak_every: u32,
    /// Run the taskscope TUI in this terminal, watching this service; quitting it stops the
    /// service. Logs go to a file in the temp directory meanwhile.
    #[arg(long)]
    pub tui: bool,
}

/// How long open connections may finish after a stop request.
const GRACE: Duration = Duration::from_secs(5);

/// Entry point of the `taskscope-demo` binary.
pub fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("taskscope-demo: {e:#}");
        std::process::exit(1);
    }
}

/// Runs the service until Ctrl-C, SIGTERM, or (with `--tui`) the TUI quits.
pub fn run(args: Args) -> anyhow::Result<()> {
    init_logging(args.tui)?;

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(workers) = args.workers {
        builder.worker_threads(workers.max(1));
    }
    let agent = taskscope::install(&mut builder);
    let runtime = builder.build().context("cannot build the runtime")?;

    let exporter = taskscope_exporter::Exporter::new(agent)
        .bind(args.exporter_addr)
        .context("cannot start the taskscope exporter")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.addr))
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let service_addr = listener.local_addr()?;
    let exporter_url = format!("http://{}", exporter.local_addr());
    tracing::info!(%service_addr, %exporter_url, "started");
    if !args.tui {
        // Tests and scripts read these two lines to find the ports.
        println!("service listening on http://{service_addr}");
        println!("taskscope exporter on {exporter_url}");
    }

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let router = app::router(app::AppState::default());
    let server = runtime.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown_signal(stop_rx).await;
                let _ = stopping_tx.send(());
            })
            .await
    });

    if let Some(rate) = args.load {
        load::start(load::LoadConfig {
            base: format!("http://{service_addr}"),
            rate,
            leak_every: args.leak_every,
        })
        .context("cannot start the load generator")?;
    }

    if args.tui {
        let result = taskscope_tui::run(taskscope_tui::Config {
            url: exporter_url,
            refresh: Duration::from_secs(1),
        });
        let _ = stop_tx.send(());
        result.context("the TUI failed")?;
    } else {
        // Keep the sender alive while serving: dropping it would read as a stop request.
        std::mem::forget(stop_tx);
    }

    // Serve until stopped; graceful shutdown then waits for open connections, for at most
    // GRACE.
    let served = runtime.block_on(async {
        let grace = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(GRACE).await;
        };
        tokio::select! {
            r = server => Ok(r),
            () = grace => Err(()),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    exporter.shutdown();
    match served {
        Ok(Ok(Ok(()))) | Err(_) => Ok(()),
        Ok(Ok(Err(e))) => Err(e).context("the server failed"),
        Ok(Err(e)) => Err(e).context("the server task failed"),
    }
}

/// Resolves on Ctrl-C, SIGTERM or a stop request.
async fn shutdown_signal(stop: oneshot::Receiver<()>) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            tokio::select! {
                _ = ctrl_c => {}
                _ = stop => {}
            }
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
        _ = stop => {}
    }
    tracing::info!("shutting down");
}

fn init_logging(to_file: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if to_file {
        let path = std::env::temp_dir().join("taskscope-demo.log");
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        builder
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .init();
    } else {
        builder.with_writer(std::io::stderr).init();
    }
    Ok(())
}
