//! Fault `S3`: a per-connection background loop that outlives its connection.
//!
//! A line server on a loopback port of its own: an accept loop spawns, per accepted
//! connection, a connection task (read one line, answer it, then wait for EOF and end) and
//! a heartbeat loop that every [`INTERVAL`] does a little work on the connection's state,
//! which it holds through an `Arc`. The heartbeat's `JoinHandle` is dropped and nothing
//! stops the loop when the connection goes away. Clients on the
//! [`Outside`](crate::outside::Outside) runtime open [`CONNECTIONS`] connections, one every
//! [`PACE`]; each sends a line, reads the answer and closes.
//!
//! The bug it mimics: "fire and forget" background work per session (keep-alive pings,
//! metrics flushers, lease renewals, presence updates) spawned next to the session but
//! tied to nothing: no cancellation token, no `JoinHandle::abort` on close, no check of a
//! `Weak`. Memory and CPU grow with every connection ever accepted.
//!
//! What taskscope shows: at the heartbeat's spawn site in `accept_loop`, live =
//! connections ever accepted ([`CONNECTIONS`]), while the connection site shows 0 live. The
//! loops are NOT idle: each wakes every [`INTERVAL`], so their poll counts keep growing and
//! their time since last poll stays short; the growth indicator, not the idle one, flags
//! them, at the rate connections arrive (4/s) while they do.
//!
//! Switching the fault off sends a stop signal that every loop (and connection) watches,
//! and aborts the accept loop and the clients, so the counts return to 0. (The signal is
//! the off switch, not a fix: with the fault on, nothing sends it.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Active, Fault, FaultContext};

/// Connections the clients open, one after another.
pub const CONNECTIONS: usize = 20;
/// The clients open one connection per period, as sessions arrive over time.
pub const PACE: Duration = Duration::from_millis(250);
/// Period of the heartbeat loop.
pub const INTERVAL: Duration = Duration::from_millis(200);
/// Most connections accepted while the fault is on; beyond it new ones are closed at once,
/// so the leaked loops stay bounded.
pub const MAX_ACCEPTED: usize = 10_000;
/// Longest line the server reads.
const MAX_LINE: u64 = 1024;

/// What a connection's heartbeat works on.
struct ConnState {
    peer: SocketAddr,
    beats: AtomicU64,
}

/// Counters for `GET /faults`.
#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    open: AtomicUsize,
    loops: AtomicUsize,
    beats: AtomicU64,
    clients_done: AtomicUsize,
}

/// The `S3` fault.
pub struct OrphanLoop;

impl Fault for OrphanLoop {
    fn name(&self) -> &'static str {
        "S3"
    }

    fn summary(&self) -> &'static str {
        "Per-connection background loop that outlives its connection: nothing stops it on disconnect"
    }

    fn start(&self, ctx: &FaultContext) -> anyhow::Result<Active> {
        let std_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = TcpListener::from_std(std_listener)?;
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&counters), stop_rx));
        let clients = ctx.outside.spawn(clients(addr, Arc::clone(&counters)));
        let status = Arc::clone(&counters);
        Ok(Active::new(move || {
            clients.abort();
            server.abort();
            let _ = stop_tx.send(true);
        })
        .with_status(move || {
            serde_json::json!({
                "addr": addr.to_string(),
                "connections_accepted": status.accepted.load(Ordering::Relaxed),
                "connections_open": status.open.load(Ordering::Relaxed),
                "loops_live": status.loops.load(Ordering::Relaxed),
                "heartbeats": status.beats.load(Ordering::Relaxed),
                "clients_done": status.clients_done.load(Ordering::Relaxed),
            })
        }))
    }
}

/// Accepts connections; per connection, spawns the connection task and its heartbeat.
async fn accept_loop(listener: TcpListener, counters: Arc<Counters>, stop: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("S3: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if counters.accepted.load(Ordering::Relaxed) >= MAX_ACCEPTED {
            drop(stream);
            continue;
        }
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(ConnState {
            peer,
            beats: AtomicU64::new(0),
        });
        let (c, s) = (Arc::clone(&counters), stop.clone());
        tokio::spawn(connection(stream, c, s)); // fault site: S3 connection
        // The bug: the handle is dropped, and nothing ends the loop when the connection does.
        let (c, s) = (Arc::clone(&counters), stop.clone());
        tokio::spawn(heartbeat(conn, c, s)); // fault site: S3 loop
    }
}

/// Resolves once the fault is switched off (or its switch is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Serves one connection: reads a line, answers it, and ends at EOF.
async fn connection(stream: TcpStream, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    counters.open.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        () = serve(stream) => {}
        () = stopped(&mut stop) => {}
    }
    counters.open.fetch_sub(1, Ordering::Relaxed);
}

async fn serve(stream: TcpStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_LINE);
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => return,
        Ok(_) => {}
    }
    let answer = format!("ok {}\n", String::from_utf8_lossy(&line).trim_end());
    if write.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    // Then nothing more is expected: read (and discard) until the client closes.
    let mut read = reader.into_inner();
    let mut sink = [0u8; 1024];
    while let Ok(n) = read.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// The heartbeat: every [`INTERVAL`], a little work on the connection's state. Only the
/// fault's off switch ends it.
async fn heartbeat(conn: Arc<ConnState>, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    counters.loops.fetch_add(1, Ordering::Relaxed);
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let n = conn.beats.fetch_add(1, Ordering::Relaxed) + 1;
                counters.beats.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(peer = %conn.peer, beats = n, "S3: heartbeat");
            }
            () = stopped(&mut stop) => break,
        }
    }
    counters.loops.fetch_sub(1, Ordering::Relaxed);
}

/// The clients (on the outside runtime): [`CONNECTIONS`] connections, one every [`PACE`],
/// each sends a line, reads the answer and closes.
async fn clients(addr: SocketAddr, counters: Arc<Counters>) {
    let mut pace = tokio::time::interval(PACE);
    for i in 0..CONNECTIONS {
        pace.tick().await;
        match one_client(addr, i).await {
            Ok(()) => {
                counters.clients_done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("S3: client {i} failed: {e}"),
        }
    }
}

async fn one_client(addr: SocketAddr, i: usize) -> std::io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("hello {i}\n").as_bytes()).await?;
    let mut reader = BufReader::new(read).take(MAX_LINE);
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await? == 0 {
        return Err(std::io::Error::other("server closed without answering"));
    }
    Ok(())
}
