//! End to end: SIGTERM stops the demo gracefully, background work and faults included,
//! with exit status 0 and its temporary data directory removed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::DEMO;

#[test]
fn sigterm_exits_zero_with_faults_on() {
    let mut child = Command::new(DEMO)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--exporter-addr",
            "127.0.0.1:0",
            "--workers",
            "2",
        ])
        .args(["--fault", "leak", "--fault", "S3", "--load", "50"])
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        out.next()
            .unwrap()
            .unwrap()
            .starts_with("service listening on ")
    );
    assert!(
        out.next()
            .unwrap()
            .unwrap()
            .starts_with("taskscope exporter on ")
    );
    let data_dir = std::env::temp_dir().join(format!("taskscope-demo-{}", child.id()));
    assert!(
        data_dir.join("demo.sqlite").exists(),
        "{}",
        data_dir.display()
    );
    std::thread::sleep(Duration::from_millis(500));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!data_dir.exists(), "temporary data dir left behind");
}
