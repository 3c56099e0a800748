//! The exporter's request limits over raw TCP: oversized requests get 4xx with a message,
//! slow clients are cut off, and a flood of idle connections cannot lock others out for
//! longer than the header deadline, nor grow without bound.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use taskscope_exporter::serve::{
    HEADER_READ_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_URI_BYTES,
};
use taskscope_exporter::{Exporter, ExporterHandle};

fn exporter() -> (tokio::runtime::Runtime, ExporterHandle) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    let agent = taskscope::install(&mut builder);
    let rt = builder.build().unwrap();
    let exporter = Exporter::new(agent)
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    (rt, exporter)
}

/// Sends `request` as is and reads the answer until the server closes (or 20 s pass).
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_and_body(answer: &str) -> (u16, &str) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

#[test]
fn oversized_requests_get_4xx_with_a_message() {
    let (_rt, exporter) = exporter();
    let addr = exporter.local_addr();

    let long = format!("/metrics?{}", "a".repeat(MAX_URI_BYTES));
    let answer = raw(
        addr,
        format!("GET {long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(
        status_and_body(&answer),
        (
            414,
            format!(
                "request target of {} bytes; the limit is {MAX_URI_BYTES}\n",
                long.len()
            )
            .as_str()
        )
    );

    let body = "x".repeat(MAX_BODY_BYTES as usize + 1);
    let answer = raw(
        addr,
        format!(
            "POST /debug/taskscope/baseline HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(
        status_and_body(&answer),
        (
            413,
            "request body too large: taskscope endpoints read no body (limit 1024 bytes, no \
             chunked bodies)\n"
        )
    );

    // Headers beyond the head limit: hyper answers 431 and closes.
    let big_header = format!("X-Big: {}\r\n", "b".repeat(20 * 1024));
    let answer = raw(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{big_header}\r\n").as_bytes(),
    );
    assert_eq!(status_and_body(&answer).0, 431, "{answer}");

    // Garbage instead of HTTP: 400 and closed, the exporter still serves.
    let answer = raw(addr, b"\x16\x03\x01 not http at all\r\n\r\n");
    assert_eq!(status_and_body(&answer).0, 400, "{answer}");
    let answer = raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_and_body(&answer).0, 200);
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_capped() {
    let (_rt, exporter) = exporter();
    let addr = exporter.local_addr();

    // Fill every connection slot with clients that send half a request line and stall.
    let stalled: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metr").unwrap();
            s
        })
        .collect();
    // Give the server time to accept them all.
    std::thread::sleep(Duration::from_millis(500));

    // One more: closed at once, without an answer.
    let mut extra = TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a connection beyond the cap is closed unanswered");

    // The stalled clients are cut off after the header deadline...
    let started = Instant::now();
    for mut s in stalled {
        s.set_read_timeout(Some(HEADER_READ_TIMEOUT * 3)).unwrap();
        let mut out = Vec::new();
        let read = s.read_to_end(&mut out);
        assert!(
            read.is_ok(),
            "closed by the server, not by our timeout: {read:?}"
        );
    }
    assert!(
        started.elapsed() < HEADER_READ_TIMEOUT * 3,
        "stalled connections closed by the header deadline"
    );
    // ...and the exporter serves again.
    let answer = raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_and_body(&answer).0, 200);
}
