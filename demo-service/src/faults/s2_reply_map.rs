//! Fault `S2`: a reply map whose upstream never answers some requests.
//!
//! An actor task owns the connection to an upstream and a map from request id to the
//! `oneshot::Sender` of whoever asked. [`REQUESTS`] request tasks each register a sender
//! with the actor (over an `mpsc`) and await the matching receiver. The actor writes each
//! request to the upstream over one real TCP connection (line protocol: `id\n`, answered by
//! `id reply\n`) and completes the sender when the reply line comes back. The fake upstream
//! runs on the [`Outside`](crate::outside::Outside) runtime and ignores every third request
//! it receives.
//!
//! The bug it mimics: request/response multiplexing over one connection (RPC clients,
//! database drivers, message brokers) with no per-request timeout and no sweep of the
//! pending map. A reply lost upstream leaves its entry in the map forever, and the task
//! awaiting it with it. Not a lost waker: the sender is alive in the map, it just never
//! sends.
//!
//! What taskscope shows: of the [`REQUESTS`] tasks spawned at the request site in
//! [`ReplyMap::start`], exactly `REQUESTS / 3` (10) stay live, idle on a oneshot receive,
//! their age growing; the other 20 complete. The actor is one more live, idle task at its
//! own site. `GET /faults` shows the map's size as `pending`.
//!
//! Switching the fault off stops the actor: it drops the map (every waiting receiver gets
//! an error and its task ends) and its connection, and the fake upstream is aborted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Active, Fault, FaultContext};

/// Request tasks spawned when the fault is switched on.
pub const REQUESTS: u64 = 30;
/// The upstream ignores every `IGNORE_EVERY`-th request it receives.
pub const IGNORE_EVERY: u64 = 3;
/// Longest line either side reads.
const MAX_LINE: usize = 256;

/// A request for the actor: the id and where to send the reply.
struct Register {
    id: u64,
    reply: oneshot::Sender<String>,
}

/// Counters for `GET /faults`.
#[derive(Default)]
struct Counters {
    /// Entries in the actor's map (requests waiting for a reply).
    pending: AtomicUsize,
    /// Requests answered.
    answered: AtomicUsize,
    /// Requests the upstream received.
    upstream_received: AtomicUsize,
    /// Requests the upstream ignored.
    upstream_ignored: AtomicUsize,
}

/// The `S2` fault.
pub struct ReplyMap;

impl Fault for ReplyMap {
    fn name(&self) -> &'static str {
        "S2"
    }

    fn summary(&self) -> &'static str {
        "Reply map that never answers: request tasks await oneshot replies the upstream never sends"
    }

    fn start(&self, ctx: &FaultContext) -> anyhow::Result<Active> {
        let std_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let upstream = ctx
            .outside
            .spawn(fake_upstream(std_listener, Arc::clone(&counters)));

        let (stop_tx, stop_rx) = watch::channel(false);
        let (requests_tx, requests_rx) = mpsc::channel::<Register>(64);
        let c = Arc::clone(&counters);
        tokio::spawn(actor(addr, requests_rx, c, stop_rx)); // fault site: S2 actor
        for id in 1..=REQUESTS {
            let tx = requests_tx.clone();
            taskscope::spawn(request(id, tx)); // fault site: S2 request
        }

        let status = Arc::clone(&counters);
        Ok(Active::new(move || {
            let _ = stop_tx.send(true);
            drop(requests_tx);
            upstream.abort();
        })
        .with_status(move || {
            serde_json::json!({
                "requests": REQUESTS,
                "pending": status.pending.load(Ordering::Relaxed),
                "answered": status.answered.load(Ordering::Relaxed),
                "upstream_received": status.upstream_received.load(Ordering::Relaxed),
                "upstream_ignored": status.upstream_ignored.load(Ordering::Relaxed),
            })
        }))
    }
}

/// One request: registers with the actor and waits for the reply, with no timeout (the
/// bug).
async fn request(id: u64, actor: mpsc::Sender<Register>) {
    let (tx, rx) = oneshot::channel();
    if actor.send(Register { id, reply: tx }).await.is_err() {
        return;
    }
    drop(actor);
    match rx.await {
        Ok(reply) => tracing::debug!(id, %reply, "S2: answered"),
        Err(_) => tracing::debug!(id, "S2: the actor dropped the request"),
    }
}

/// The actor: owns the upstream connection and the map of pending replies.
async fn actor(
    addr: SocketAddr,
    mut requests: mpsc::Receiver<Register>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let stream = tokio::select! {
        s = TcpStream::connect(addr) => match s {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("S2: cannot reach the upstream: {e}");
                return;
            }
        },
        () = stopped(&mut stop) => return,
    };
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).take(u64::MAX);
    let mut pending: HashMap<u64, oneshot::Sender<String>> = HashMap::new();
    let mut requests_open = true;
    let mut line = Vec::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            r = requests.recv(), if requests_open => match r {
                Some(Register { id, reply }) => {
                    if write.write_all(format!("{id}\n").as_bytes()).await.is_err() {
                        tracing::warn!("S2: the upstream connection broke");
                        break;
                    }
                    pending.insert(id, reply);
                }
                None => requests_open = false,
            },
            r = read_line(&mut lines, &mut line) => match r {
                Some(()) => {
                    let reply = String::from_utf8_lossy(&line);
                    let reply = reply.trim_end();
                    let id = reply.split(' ').next().and_then(|id| id.parse::<u64>().ok());
                    if let Some(sender) = id.and_then(|id| pending.remove(&id)) {
                        let _ = sender.send(reply.to_string());
                        counters.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    line.clear();
                }
                None => {
                    tracing::warn!("S2: the upstream closed the connection");
                    break;
                }
            },
        }
        counters.pending.store(pending.len(), Ordering::Relaxed);
    }
    // Dropping the map fails every waiting receiver.
    drop(pending);
    counters.pending.store(0, Ordering::Relaxed);
}

/// Resolves once the fault is switched off (or its switch is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Reads one line (at most [`MAX_LINE`] bytes) into `line`; `None` at EOF, on error or on
/// an overlong line. Cancel safe, as the actor's `select!` needs: `read_until` keeps a
/// partial line in `line` and the next call goes on appending.
async fn read_line(
    lines: &mut tokio::io::Take<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    line: &mut Vec<u8>,
) -> Option<()> {
    lines.set_limit((MAX_LINE + 1).saturating_sub(line.len()) as u64);
    match lines.read_until(b'\n', line).await {
        Ok(0) | Err(_) => None,
        Ok(_) if line.last() != Some(&b'\n') => None,
        Ok(_) => Some(()),
    }
}

/// The fake upstream (on the outside runtime): answers `id\n` with `id reply\n`, except
/// that it ignores every [`IGNORE_EVERY`]-th request. Serves one connection at a time.
async fn fake_upstream(std_listener: std::net::TcpListener, counters: Arc<Counters>) {
    let listener = match TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("S2: the upstream cannot listen: {e}");
            return;
        }
    };
    let mut received: u64 = 0;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).take(u64::MAX);
        let mut line = String::new();
        loop {
            line.clear();
            lines.set_limit(MAX_LINE as u64 + 1);
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {}
            }
            received += 1;
            counters.upstream_received.fetch_add(1, Ordering::Relaxed);
            if received.is_multiple_of(IGNORE_EVERY) {
                counters.upstream_ignored.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let answer = format!("{} reply\n", line.trim_end());
            if write.write_all(answer.as_bytes()).await.is_err() {
                break;
            }
        }
    }
}
