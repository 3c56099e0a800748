//! A fake upstream service the profile endpoint calls over real TCP (HTTP on loopback),
//! running on the [`Outside`] runtime like a separate process would.
//!
//! `GET /preferences/{id}` answers after 3 ms; for ids divisible by 10 it answers 503, so
//! some profile requests take the cancel-on-first-error path. `POST /payments/{order}`
//! (the payment provider that confirms orders) answers after 50 ms, but takes 3 s for
//! order ids divisible by 100, longer than the confirmation's timeout.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::outside::Outside;

/// Starts the upstream on a free loopback port; returns its base URL.
pub fn start(outside: &Outside) -> std::io::Result<String> {
    let std_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    outside.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("upstream cannot listen: {e}");
                return;
            }
        };
        let app = Router::new()
            .route("/preferences/{id}", get(preferences))
            .route("/payments/{order}", post(payment));
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("upstream stopped: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

async fn preferences(Path(id): Path<u64>) -> Result<String, (StatusCode, String)> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    if id.is_multiple_of(10) {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("preferences of user {id} are unavailable"),
        ));
    }
    Ok(format!(
        "{{\"theme\":\"{}\"}}",
        if id % 2 == 0 { "dark" } else { "light" }
    ))
}

async fn payment(Path(order): Path<u64>) -> &'static str {
    let slow = order.is_multiple_of(100);
    tokio::time::sleep(Duration::from_millis(if slow { 3000 } else { 50 })).await;
    "paid"
}
