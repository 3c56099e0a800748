//! The TUI and CLI send the exporter's token from the environment. The environment is the
//! process's, so the check runs in a child process of this test binary with
//! `TASKSCOPE_TOKEN` set, against a one-shot server that records the request.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

const CHILD: &str = "TASKSCOPE_TOKEN_TEST_CHILD";

/// Accepts one request and returns its header lines.
fn one_request(listener: TcpListener) -> Vec<String> {
    let (stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        headers.push(line.trim().to_string());
    }
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
    headers
}

fn request_with_client_builder() -> Vec<String> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || one_request(listener));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = taskscope_tui::client::client_builder()
            .unwrap()
            .build()
            .unwrap();
        client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
    });
    server.join().unwrap()
}

#[test]
fn the_token_in_the_environment_goes_in_every_request() {
    if std::env::var_os(CHILD).is_some() {
        let headers = request_with_client_builder();
        let auth: Vec<&String> = headers
            .iter()
            .filter(|h| h.to_ascii_lowercase().starts_with("authorization:"))
            .collect();
        assert_eq!(auth.len(), 1, "{headers:?}");
        assert_eq!(auth[0].split_once(": ").unwrap().1, "Bearer t0ken-from-env");
        println!("CHILD-OK");
        return;
    }
    let name = "the_token_in_the_environment_goes_in_every_request";
    for (key, value) in [
        ("TASKSCOPE_TOKEN", "t0ken-from-env\n".to_string()),
        ("TASKSCOPE_TOKEN_FILE", {
            let path = std::env::temp_dir().join(format!("taskscope-token-{}", std::process::id()));
            std::fs::write(&path, "t0ken-from-env\n").unwrap();
            path.display().to_string()
        }),
    ] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env_remove("TASKSCOPE_TOKEN")
            .env_remove("TASKSCOPE_TOKEN_FILE")
            .env(key, value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD-OK"),
            "with {key}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without either, no Authorization header at all.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "no_token_no_header", "--nocapture"])
        .env_remove("TASKSCOPE_TOKEN")
        .env_remove("TASKSCOPE_TOKEN_FILE")
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn no_token_no_header() {
    if std::env::var_os(CHILD).is_none() {
        return; // only meaningful with a clean environment, in the child
    }
    let headers = request_with_client_builder();
    assert!(
        headers
            .iter()
            .all(|h| !h.to_ascii_lowercase().starts_with("authorization:")),
        "{headers:?}"
    );
}
