//! The exporter's HTTP server loop, with the limits a debug endpoint left on in production
//! needs: a cap on open connections, a deadline for a request's headers (slow clients
//! cannot hold connections open), a cap on header size, on the request line's length and
//! on request bodies, and a deadline for each answer.
//!
//! `axum::serve` sets none of the time limits (it gives hyper no timer), hence this loop.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tower::ServiceExt as _;

/// Connections served at once; later ones are closed at once (and logged once a minute).
pub const MAX_CONNECTIONS: usize = 64;

/// Time a client has to send a request's headers, on a new connection and between
/// requests on a kept-alive one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head (request line and headers) read.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Longest request target (path and query) accepted; longer ones get 414.
pub const MAX_URI_BYTES: usize = 4 * 1024;

/// Largest request body accepted (only `POST /debug/taskscope/baseline` is not a GET, and it
/// reads no body); larger ones get 413.
pub const MAX_BODY_BYTES: u64 = 1024;

/// Longest time one answer may take; a task dump's own timeout is at most 60 s, so this is
/// a backstop that only a stuck handler reaches. Such requests get 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(75);

/// Rejects oversized requests before any handler runs, and bounds every answer's time.
pub(crate) async fn limits(request: Request, next: Next) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return (
            StatusCode::URI_TOO_LONG,
            format!("request target of {uri_len} bytes; the limit is {MAX_URI_BYTES}\n"),
        )
            .into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if chunked || declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body too large: taskscope endpoints read no body (limit {MAX_BODY_BYTES} bytes, no chunked bodies)\n"
            ),
        )
            .into_response();
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the answer took longer than {} s and was abandoned\n",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
            .into_response(),
    }
}

/// Serves `app` on `listener` until `stop` fires (or its sender is dropped), then stops
/// accepting, lets requests in progress finish for up to a second, and returns.
pub(crate) async fn run(listener: TcpListener, app: Router, stop: oneshot::Receiver<()>) {
    let slots = std::sync::Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Connection tasks watch this: when it changes they shut down gracefully.
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut refused: u64 = 0;
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    tokio::pin!(stop);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut stop => break,
            // Reap finished connections so the set stays as small as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!("taskscope exporter cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = std::sync::Arc::clone(&slots).try_acquire_owned() else {
            refused += 1;
            let now = tokio::time::Instant::now();
            if last_refusal_log.is_none_or(|t| now - t >= Duration::from_secs(60)) {
                last_refusal_log = Some(now);
                tracing::warn!(
                    "taskscope exporter has {MAX_CONNECTIONS} connections open; closed new ones \
                     ({refused} so far)"
                );
            }
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|req: hyper::Request<Incoming>| req.map(Body::new))
                .map_err(|e: Infallible| match e {}),
        );
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES.max(8192));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            loop {
                tokio::select! {
                    // Errors here are the client's (reset, timeout, malformed request): hyper
                    // has answered what could be answered.
                    _ = conn.as_mut() => break,
                    changed = closing.changed() => {
                        conn.as_mut().graceful_shutdown();
                        if changed.is_err() {
                            // The server is gone; the graceful shutdown above is all we can do.
                            let _ = conn.as_mut().await;
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(1), drained)
        .await
        .is_err()
    {
        connections.abort_all();
    }
}
