//! `fetch_snapshot` and `fetch_dump` against a hand-written HTTP/1.1 server on a local
//! port.

use std::time::Duration;

use taskscope::model::SCHEMA_VERSION;
use taskscope_tui::client::{
    FetchError, fetch_dump, fetch_dump_with, fetch_snapshot, fetch_snapshot_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one connection: reads the request head, then writes `response` (or nothing when
/// `None`, holding the connection open) and closes. Returns the base URL.
async fn serve_once(response: Option<Vec<u8>>) -> String {
    serve_once_at("/debug/taskscope/snapshot", response).await
}

/// [`serve_once`] for a request of `target` (path and query, as sent).
async fn serve_once_at(target: &'static str, response: Option<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            req.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&req);
        assert!(
            head.starts_with(&format!("GET {target} HTTP/1.1\r\n")),
            "{head}"
        );
        match response {
            Some(bytes) => {
                sock.write_all(&bytes).await.unwrap();
                sock.shutdown().await.ok();
            }
            None => tokio::time::sleep(Duration::from_secs(30)).await,
        }
    });
    format!("http://{addr}")
}

fn http(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn valid_json_is_ok() {
    let body = format!(
        r#"{{"schema_version":{SCHEMA_VERSION},"uptime_seconds":12.5,
            "process":{{"pid":42,"name":"demo"}},
            "runtime":{{"workers":4,"alive_tasks":9,"global_queue_depth":1,"worker_busy_seconds":[0.5,0.25]}},
            "sites":[{{"site":"src/main.rs:10:5","live":3,"spawned":5,"completed":2,"polls":7,"busy_seconds":0.125}}],
            "future_field":"ignored"}}"#
    );
    let url = serve_once(Some(http("200 OK", "application/json", &body))).await;
    // A trailing slash on the base URL is fine.
    let snap = fetch_snapshot(&client(), &format!("{url}/"))
        .await
        .expect("ok");
    assert_eq!(snap.process.pid, 42);
    assert_eq!(snap.process.name, "demo");
    assert_eq!(snap.runtime.as_ref().map(|r| r.workers), Some(4));
    assert_eq!(snap.sites.len(), 1);
    assert_eq!(snap.sites[0].live, 3);
    assert_eq!(snap.sites[0].busy_seconds, 0.125);
}

#[tokio::test]
async fn garbage_body_is_a_json_error() {
    let url = serve_once(Some(http("200 OK", "text/html", "<html>hello</html>"))).await;
    let err = fetch_snapshot(&client(), &url).await.unwrap_err();
    assert!(matches!(err, FetchError::BadJson { .. }), "{err:?}");
    assert!(err.to_string().contains("JSON"), "{err}");
}

#[tokio::test]
async fn http_500_is_an_error() {
    let url = serve_once(Some(http(
        "500 Internal Server Error",
        "text/plain",
        "agent exploded\n",
    )))
    .await;
    let err = fetch_snapshot(&client(), &url).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 500, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("500"), "{msg}");
    assert!(msg.contains("agent exploded"), "{msg}");
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = fetch_snapshot(&client(), &format!("http://{addr}"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::ConnectionRefused { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn newer_schema_is_rejected() {
    let url = serve_once(Some(http(
        "200 OK",
        "application/json",
        r#"{"schema_version":999,"sites":[]}"#,
    )))
    .await;
    let err = fetch_snapshot(&client(), &url).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "version mismatch: {url}/debug/taskscope/snapshot sends schema v999, this \
             taskscope reads up to v{SCHEMA_VERSION} (upgrade taskscope)"
        )
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    let url = serve_once(None).await;
    let started = std::time::Instant::now();
    let err = fetch_snapshot_with(&client(), &url, Duration::from_millis(200), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let big = format!(r#"{{"schema_version":1,"pad":"{}"}}"#, "x".repeat(4096));
    // Declared length over the cap.
    let url = serve_once(Some(http("200 OK", "application/json", &big))).await;
    let err = fetch_snapshot_with(&client(), &url, Duration::from_secs(2), 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("too large"), "{err}");

    // No declared length (read until close): the cap applies while streaming.
    let raw = format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{big}").into_bytes();
    let url = serve_once(Some(raw)).await;
    let err = fetch_snapshot_with(&client(), &url, Duration::from_secs(2), 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
}

const DUMP_TARGET: &str =
    "/debug/taskscope/dump?format=json&site=demo-service%2Fsrc%2Ffaults%2Fs2.rs%3A89%3A13";
const DUMP_SITE: &str = "demo-service/src/faults/s2.rs:89:13";

#[tokio::test]
async fn dump_json_is_ok() {
    let body = format!(
        r#"{{"schema_version":{SCHEMA_VERSION},"taken_at_unix_ms":5,"took_seconds":0.012,
            "paused_seconds":0.004,"source":"traced","complete":true,"notes":["n"],
            "total_tasks":10,"groups":[{{"site":"{DUMP_SITE}","count":10,
              "stacks":[[{{"function":"tokio::sync::oneshot::Receiver<T>","file":"oneshot.rs","line":7}}]],
              "idle_seconds":{{"min":1.0,"median":2.0,"max":3.0}},"task_ids":[1,2]}}],
            "future_field":1}}"#
    );
    let url = serve_once_at(DUMP_TARGET, Some(http("200 OK", "application/json", &body))).await;
    let dump = fetch_dump(&client(), &format!("{url}/"), DUMP_SITE)
        .await
        .expect("ok");
    assert_eq!(dump.source, taskscope::model::DumpSource::Traced);
    assert_eq!(dump.total_tasks, 10);
    assert_eq!(dump.notes, vec!["n".to_string()]);
    assert_eq!(dump.groups.len(), 1);
    let g = &dump.groups[0];
    assert_eq!((g.site.as_str(), g.count), (DUMP_SITE, 10));
    assert_eq!(g.stacks[0][0].function, "tokio::sync::oneshot::Receiver<T>");
    assert_eq!(g.stacks[0][0].line, 7);
    assert_eq!(g.idle_seconds.median, 2.0);
}

#[tokio::test]
async fn dump_busy_429_carries_the_message() {
    let url = serve_once_at(
        DUMP_TARGET,
        Some(http(
            "429 Too Many Requests",
            "text/plain",
            "another task dump is in progress; try again when it is done\n",
        )),
    )
    .await;
    let err = fetch_dump(&client(), &url, DUMP_SITE).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 429, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("429"), "{msg}");
    assert!(
        msg.contains("another task dump is in progress; try again when it is done"),
        "{msg}"
    );
}

#[tokio::test]
async fn dump_garbage_is_a_json_error() {
    let url = serve_once_at(
        DUMP_TARGET,
        Some(http(
            "200 OK",
            "text/plain",
            "task dump: 3 tasks in 1 groups",
        )),
    )
    .await;
    let err = fetch_dump(&client(), &url, DUMP_SITE).await.unwrap_err();
    assert!(matches!(err, FetchError::BadJson { .. }), "{err:?}");
    assert!(err.to_string().contains("JSON"), "{err}");
    assert!(err.to_string().contains("/debug/taskscope/dump"), "{err}");
}

#[tokio::test]
async fn dump_newer_schema_refused_port_and_timeout() {
    let url = serve_once_at(
        DUMP_TARGET,
        Some(http(
            "200 OK",
            "application/json",
            r#"{"schema_version":999}"#,
        )),
    )
    .await;
    let err = fetch_dump(&client(), &url, DUMP_SITE).await.unwrap_err();
    assert!(
        matches!(err, FetchError::UnsupportedSchema { found: 999, .. }),
        "{err:?}"
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = fetch_dump(&client(), &format!("http://{addr}"), DUMP_SITE)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::ConnectionRefused { .. }),
        "{err:?}"
    );

    let url = serve_once_at(DUMP_TARGET, None).await;
    let err = fetch_dump_with(
        &client(),
        &url,
        DUMP_SITE,
        Duration::from_millis(200),
        1 << 20,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
}
