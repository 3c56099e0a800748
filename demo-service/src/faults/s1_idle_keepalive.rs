//! Fault `S1`: idle keep-alive connections that nothing ever closes.
//!
//! A small HTTP/1.1 server, written by hand, on a loopback port of its own: an accept loop
//! spawns one task per connection, and the task serves requests on it in a keep-alive loop
//! (read a request head, answer `200 ok`, read the next head) with no idle timeout. Clients
//! on the [`Outside`](crate::outside::Outside) runtime first make [`ORDINARY`] ordinary
//! connections (one `GET` with `Connection: close`, as a load balancer's health check does),
//! then open [`CONNECTIONS`] connections, send one `GET` each, read the answer, then hold
//! their sockets open and silent.
//!
//! The bug it mimics: a keep-alive server without an idle (read) timeout, as hyper-based
//! servers are by default and hand-rolled protocol servers often are. Every client that
//! goes quiet without closing (a NAT box that dropped the flow, a pool that keeps sockets
//! "warm", a crashed peer whose FIN never came) pins a task, a socket and its buffers
//! forever; they pile up until the file descriptor limit.
//!
//! What taskscope shows: exactly [`CONNECTIONS`] live tasks at the connection task's spawn
//! site in `accept_loop`, all idle (parked on a socket read), their `idle_seconds`
//! growing without bound, and one more per new silent connection; the "idle too long"
//! finding at that site once they have been idle past its threshold (the ordinary
//! connections show that tasks there normally end).
//!
//! Switching the fault off drops the clients (the connection tasks read EOF and end),
//! signals the connection tasks to stop (for any connection that is not one of ours), and
//! aborts the accept loop, so the count at the site returns to 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Active, Fault, FaultContext};

/// Silent connections the clients open.
pub const CONNECTIONS: usize = 50;
/// Ordinary connections (one request, then closed) made before the silent ones.
pub const ORDINARY: usize = 5;
/// Largest request head (and body) the server reads.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most connections the server keeps at once; beyond it new ones are closed at once, so the
/// fault stays bounded even if something else connects.
pub const MAX_OPEN: usize = 10_000;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
    Content-Length: 0\r\nConnection: close\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Counters for `GET /faults`.
#[derive(Default)]
struct Counters {
    /// Connection tasks alive.
    open: AtomicUsize,
    /// Connections ever accepted.
    accepted: AtomicUsize,
    /// Requests answered.
    answered: AtomicUsize,
    /// Clients that got their answer and now hold their socket silent.
    clients_silent: AtomicUsize,
}

/// The `S1` fault.
pub struct IdleKeepAlive;

impl Fault for IdleKeepAlive {
    fn name(&self) -> &'static str {
        "S1"
    }

    fn summary(&self) -> &'static str {
        "Idle keep-alive connections: one task per connection, no idle timeout, clients hold silent sockets"
    }

    fn start(&self, ctx: &FaultContext) -> anyhow::Result<Active> {
        let std_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        // Within the service runtime: the listener and its tasks are the service's.
        let listener = TcpListener::from_std(std_listener)?;
        let counters = Arc::new(Counters::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&counters), stop_rx)); // fault site: S1 accept loop
        let clients = ctx
            .outside
            .spawn(hold_silent_clients(addr, Arc::clone(&counters)));
        let status = Arc::clone(&counters);
        Ok(Active::new(move || {
            // Clients gone: every connection task reads EOF.
            clients.abort();
            let _ = stop_tx.send(true);
            server.abort();
        })
        .with_status(move || {
            serde_json::json!({
                "addr": addr.to_string(),
                "connections_open": status.open.load(Ordering::Relaxed),
                "connections_accepted": status.accepted.load(Ordering::Relaxed),
                "requests_answered": status.answered.load(Ordering::Relaxed),
                "clients_silent": status.clients_silent.load(Ordering::Relaxed),
            })
        }))
    }
}

/// Accepts connections and spawns one task per connection.
async fn accept_loop(listener: TcpListener, counters: Arc<Counters>, stop: watch::Receiver<bool>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("S1: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if counters.open.load(Ordering::Relaxed) >= MAX_OPEN {
            drop(stream);
            continue;
        }
        counters.open.fetch_add(1, Ordering::Relaxed);
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let (c, s) = (Arc::clone(&counters), stop.clone());
        tokio::spawn(connection(stream, c, s)); // fault site: S1 connection
    }
}

/// Serves one connection: HTTP/1.1 keep-alive, and (the bug) no idle timeout.
async fn connection(
    mut stream: TcpStream,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    tokio::select! {
        _ = serve(&mut stream, &counters) => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
    counters.open.fetch_sub(1, Ordering::Relaxed);
}

async fn serve(stream: &mut TcpStream, counters: &Counters) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        // Read a request head. The bug: this read waits as long as the client stays quiet.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() >= MAX_HEAD {
                let _ = stream.write_all(TOO_LARGE).await;
                return;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
            let _ = stream.write_all(BAD_REQUEST).await;
            return;
        };
        let Some((body_len, close)) = parse_head(head) else {
            let _ = stream.write_all(BAD_REQUEST).await;
            return;
        };
        if body_len > MAX_HEAD {
            let _ = stream.write_all(TOO_LARGE).await;
            return;
        }
        // Skip the body, if any.
        while buf.len() < head_end + body_len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + body_len);
        if stream.write_all(RESPONSE).await.is_err() {
            return;
        }
        counters.answered.fetch_add(1, Ordering::Relaxed);
        if close {
            return;
        }
    }
}

/// The body length and whether the client asked to close; `None` if malformed.
fn parse_head(head: &str) -> Option<(usize, bool)> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    if request_line.split(' ').count() != 3 {
        return None;
    }
    let (mut body_len, mut close) = (0, false);
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Some((body_len, close))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The clients (on the outside runtime): open [`CONNECTIONS`] connections, one request
/// each, then hold them silent until aborted.
async fn hold_silent_clients(addr: SocketAddr, counters: Arc<Counters>) {
    for i in 0..ORDINARY {
        if let Err(e) = one_request(addr, true).await {
            tracing::warn!("S1: ordinary client {i} failed: {e}");
        }
    }
    let mut held = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        match one_request(addr, false).await {
            Ok(stream) => {
                held.push(stream);
                counters.clients_silent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("S1: client {i} failed: {e}"),
        }
    }
    // Silent, forever (until the fault is switched off and this task is aborted).
    std::future::pending::<()>().await;
    drop(held);
}

/// One request on a new connection; `close` asks the server to close after answering.
async fn one_request(addr: SocketAddr, close: bool) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    let request: &[u8] = if close {
        b"GET / HTTP/1.1\r\nHost: s1\r\nUser-Agent: s1-check\r\nConnection: close\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: s1\r\nUser-Agent: s1-client\r\n\r\n"
    };
    stream.write_all(request).await?;
    // Read until the whole answer (head and its Content-Length body) is in.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            let (len, _) = parse_head(&head).unwrap_or((0, false));
            if buf.len() >= i + 4 + len {
                return Ok(stream);
            }
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("answer too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("server closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
