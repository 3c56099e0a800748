//! taskscope demo service: a small axum backend over SQLite, built from the article's
//! concurrency patterns, instrumented with the taskscope agent and exporter, with every
//! fault scenario one switch away and a built-in load generator.
//!
//! The binary is a thin wrapper around [`main`], so that tests can build the very same
//! program (see the `tests/` crate).

pub mod app;
pub mod db;
pub mod faults;
pub mod load;
pub mod outside;
pub mod upstream;
pub mod workers;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::{oneshot, watch};

/// Command line of the demo service.
#[derive(Debug, Parser)]
#[command(name = "taskscope-demo", version, about)]
pub struct Args {
    /// Address of the service's HTTP API (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Address of the taskscope exporter (/metrics, /debug/taskscope/snapshot).
    #[arg(long, default_value = taskscope_exporter::DEFAULT_ADDR)]
    pub exporter_addr: SocketAddr,
    /// Worker threads of the service's runtime (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The runtime's max_blocking_threads (fault S8 exhausts exactly this many).
    #[arg(long, default_value_t = 64)]
    pub max_blocking_threads: usize,
    /// Where the SQLite database lives (created and seeded if empty). Default: a fresh
    /// directory in the temp dir, removed on exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Switch a fault on from the start (repeatable): S1 ... S11, or leak.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// Drive the service with this many requests per second from the built-in load
    /// generator.
    #[arg(long, value_name = "RATE", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub load: Option<u32>,
    /// With --load: most requests in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// With --load: stop the load after this many seconds and print its report (the
    /// service keeps running).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Run the taskscope TUI in this terminal, watching this service; quitting it stops the
    /// service. Logs go to a file in the temp directory meanwhile.
    #[arg(long)]
    pub tui: bool,
    /// Leak indicator: the least idle time that counts as "idle too long", seconds (each
    /// spawn site's threshold is this or 4x its longest normal wait, whichever is longer).
    #[arg(long, value_name = "SECS", default_value_t = 120.0, value_parser = positive_secs)]
    pub idle_floor: f64,
    /// Leak indicator: the window over which a site's live count must keep rising to be
    /// flagged as growth, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = positive_secs)]
    pub growth_window: f64,
    /// Leak indicator: the least rise of a site's low-water mark (live tasks) between the
    /// halves of the growth window that counts as growth.
    #[arg(long, value_name = "TASKS", default_value_t = taskscope::leaks::DEFAULT_GROWTH_MIN_TASKS, value_parser = clap::value_parser!(u64).range(1..))]
    pub growth_min_tasks: u64,
    /// Leak indicator: track every task's wakers (taskscope's opt-in lost-waker layer) to
    /// report tasks that nothing can wake again (see fault `lostwaker`). Costs a tracing
    /// span per task and an event per waker operation.
    #[arg(long)]
    pub lost_waker: bool,
    /// Follow tokio's own locks (the worker pool's shared receiver is one) through tokio's
    /// resource tracing, so they show among the locks.
    #[arg(long)]
    pub tokio_resources: bool,
    /// Also run console-subscriber (tokio-console's instrumentation), serving its gRPC API
    /// on ADDR (default 127.0.0.1:6669): `taskscope console` and `tokio-console` read it,
    /// next to taskscope's own exporter.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:6669")]
    pub console_subscriber: Option<std::net::SocketAddr>,
}

/// A number of seconds, more than 0 and at most a day.
fn positive_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs > 0.0 && secs <= 86_400.0 {
        Ok(secs)
    } else {
        Err(format!("{secs} is not between 0 and 86400 seconds"))
    }
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

/// A data directory, removed on drop when it was made for this run.
struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs the service until Ctrl-C, SIGTERM, or (with `--tui`) the TUI quits.
pub fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = match &args.data_dir {
        Some(p) => DataDir {
            path: p.clone(),
            temporary: false,
        },
        None => DataDir {
            path: std::env::temp_dir().join(format!("taskscope-demo-{}", std::process::id())),
            temporary: true,
        },
    };

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .max_blocking_threads(args.max_blocking_threads.max(1));
    if let Some(workers) = args.workers {
        builder.worker_threads(workers.max(1));
    }
    let agent = taskscope::Agent::builder()
        .idle_floor(Duration::from_secs_f64(args.idle_floor))
        .growth_window(Duration::from_secs_f64(args.growth_window))
        .growth_min_tasks(args.growth_min_tasks)
        .max_blocking_threads(args.max_blocking_threads.max(1))
        .install(&mut builder);
    // Before the runtime exists: the lost-waker layer must see every task from its spawn.
    init_logging(
        args.tui,
        args.lost_waker.then(|| agent.lost_waker_layer()),
        args.tokio_resources.then(|| agent.tokio_resource_layer()),
        args.console_subscriber,
    )?;
    let runtime = builder.build().context("cannot build the runtime")?;

    let exporter = taskscope_exporter::Exporter::new(agent)
        .token_from_env()
        .context("the taskscope token settings")?
        .bind(args.exporter_addr)
        .context("cannot start the taskscope exporter")?;
    let outside = outside::Outside::start().context("cannot start the outside runtime")?;
    let upstream = upstream::start(&outside).context("cannot start the fake upstream")?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let faults = faults::Faults::new();
    let (listener, state) = runtime.block_on(async {
        let db = db::open(&data_dir.path)
            .await
            .with_context(|| format!("cannot open the database in {}", data_dir.path.display()))?;
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let state = app::AppState::new(db, upstream, Arc::clone(&faults), shutdown_rx);
        anyhow::Ok((listener, state))
    })?;
    let service_addr = listener.local_addr()?;
    let service_url = format!("http://{service_addr}");
    let exporter_url = format!("http://{}", exporter.local_addr());
    faults.set_context(faults::FaultContext {
        outside: outside.clone(),
        service_url: service_url.clone(),
        state: state.clone(),
        max_blocking_threads: args.max_blocking_threads.max(1),
    });
    {
        let _enter = runtime.enter();
        for name in &args.faults {
            faults.start(name).map_err(anyhow::Error::msg)?;
        }
    }
    tracing::info!(%service_addr, %exporter_url, data_dir = %data_dir.path.display(), "started");
    if !args.tui {
        // Tests and scripts read these lines to find the ports. A reader may close the pipe
        // once it has the lines it wants: the service goes on (`println!` would panic).
        let mut lines =
            format!("service listening on {service_url}\ntaskscope exporter on {exporter_url}\n");
        if let Some(addr) = args.console_subscriber {
            lines.push_str(&format!("console-subscriber on http://{addr}\n"));
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(lines.as_bytes()).and_then(|()| out.flush());
    }

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let router = app::router(state);
    let server = runtime.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown_signal(stop_rx).await;
                let _ = stopping_tx.send(());
            })
            .await
    });

    if let Some(rate) = args.load {
        let report = load::start(
            &outside,
            load::LoadConfig {
                base: service_url.clone(),
                rate,
                concurrency: args.concurrency as usize,
                duration: args.duration.map(Duration::from_secs),
                progress: !args.tui && std::io::stderr().is_terminal(),
            },
        );
        if args.duration.is_some() {
            outside.spawn(async move {
                if let Ok(report) = report.await {
                    tracing::info!("{report}");
                    eprintln!("{report}");
                }
            });
        }
    }

    // Held until here: dropping the sender reads as a stop request.
    let _stop_tx = if args.tui {
        let result = taskscope_tui::run(taskscope_tui::Config {
            url: exporter_url,
            refresh: Duration::from_secs(1),
        });
        let _ = stop_tx.send(());
        result.context("the TUI failed")?;
        None
    } else {
        Some(stop_tx)
    };

    // Serve until stopped; then stop background work and faults, and give open connections
    // at most GRACE.
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
    let _ = shutdown_tx.send(true);
    {
        let _enter = runtime.enter();
        faults.stop_all();
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    exporter.shutdown();
    drop(data_dir);
    match served {
        Ok(Ok(Ok(()))) | Err(()) => Ok(()),
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

/// The resource layer as it sits in the demo's subscriber stack.
type TokioResources = tracing_subscriber::filter::Filtered<
    taskscope::tokio_sync::TokioResourceLayer,
    taskscope::tokio_sync::ResourceEvents,
    tracing_subscriber::layer::Layered<
        Option<taskscope::waker::LostWakerLayer>,
        tracing_subscriber::layer::Layered<
            tracing_subscriber::filter::Filtered<
                Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>,
                tracing_subscriber::EnvFilter,
                tracing_subscriber::Registry,
            >,
            tracing_subscriber::Registry,
        >,
    >,
>;

/// Logs (filtered by `RUST_LOG`, default `info`) and, if given, the lost-waker layer, in
/// the process's global subscriber. The log filter is per layer: a global one would hide
/// tokio's task spans and waker events from the lost-waker layer.
fn init_logging(
    to_file: bool,
    lost_waker: Option<taskscope::waker::LostWakerLayer>,
    tokio_resources: Option<TokioResources>,
    console: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = if to_file {
        let path = std::env::temp_dir().join("taskscope-demo.log");
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(lost_waker)
        .with(tokio_resources)
        // console-subscriber serves its API from a thread of its own; it needs tokio's
        // `tracing` feature, which the taskscope features above turn on.
        .with(console.map(|addr| {
            console_subscriber::ConsoleLayer::builder()
                .with_default_env()
                .server_addr(addr)
                .spawn()
        }))
        .try_init()
        .context("cannot set the global tracing subscriber")?;
    Ok(())
}
