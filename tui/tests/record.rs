//! The flight recorder (`taskscope record`) against a scripted source: frames in order,
//! caps, duration, interruption, failed fetches, and a target that never answers.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use taskscope::model::{SCHEMA_VERSION, SiteRow, Snapshot};
use taskscope_tui::client::FetchError;
use taskscope_tui::files::{self, Full, Opened, RecordingLimits};
use taskscope_tui::record::{RecordConfig, Stopped, record};
use taskscope_tui::source::{Capabilities, Source, SourceFuture};

/// Answers fetch n with a snapshot whose site has n live tasks, except the fetches listed
/// in `fail`, which are refused.
struct Scripted {
    fetches: Cell<u64>,
    fail: Vec<u64>,
}

// The recorder uses the source from one thread; `Source` wants `Send` for the TUI's
// helper thread, which a `Cell` is (it is only not `Sync`).
impl Source for Scripted {
    fn label(&self) -> String {
        "http://scripted:1".into()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::live_exporter()
    }
    fn fetch(&self) -> SourceFuture<Snapshot> {
        let n = self.fetches.get() + 1;
        self.fetches.set(n);
        let fail = self.fail.contains(&n);
        Box::pin(async move {
            if fail {
                return Err(FetchError::ConnectionRefused {
                    url: "http://scripted:1/debug/taskscope/snapshot".into(),
                });
            }
            Ok(Snapshot {
                schema_version: SCHEMA_VERSION,
                sites: vec![SiteRow {
                    site: "a.rs:1:1".into(),
                    live: n,
                    ..SiteRow::default()
                }],
                ..Snapshot::default()
            })
        })
    }
}

fn scripted(fail: &[u64]) -> Scripted {
    Scripted {
        fetches: Cell::new(0),
        fail: fail.to_vec(),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskscope-record-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(output: PathBuf, max_frames: usize) -> RecordConfig {
    RecordConfig {
        output,
        duration: None,
        interval: Duration::from_millis(5),
        limits: RecordingLimits {
            max_frames,
            max_bytes: 1 << 20,
        },
    }
}

fn lives(path: &std::path::Path) -> Vec<u64> {
    let Opened::Recording(r) = files::open(path).unwrap() else {
        panic!("expected a recording");
    };
    r.frames.iter().map(|f| f.snapshot.sites[0].live).collect()
}

#[tokio::test]
async fn records_frames_until_the_frame_cap_skipping_failed_fetches() {
    let dir = scratch("cap");
    let source = scripted(&[3]);
    let mut errors = Vec::new();
    let summary = record(
        &source,
        &config(dir.join("r.jsonl.gz"), 5),
        std::future::pending(),
        |e| errors.push(e.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(summary.frames, 5);
    assert_eq!(summary.failed, 1);
    assert_eq!(summary.stopped, Stopped::Full(Full::Frames(5)));
    assert_eq!(
        errors,
        ["connection refused by http://scripted:1/debug/taskscope/snapshot"]
    );
    // Fetch 3 failed; fetch 7 found the recording full.
    assert_eq!(lives(&summary.path), [1, 2, 4, 5, 6]);
    let Opened::Recording(r) = files::open(&summary.path).unwrap() else {
        panic!("expected a recording");
    };
    assert_eq!(r.header.target, "http://scripted:1");
    assert_eq!(r.header.interval_ms, 5);
}

#[tokio::test]
async fn stops_at_the_duration_or_when_interrupted() {
    let dir = scratch("stop");
    let mut cfg = config(dir.join("d.jsonl.gz"), 100);
    cfg.interval = Duration::from_secs(3600);
    cfg.duration = Some(Duration::from_millis(20));
    let summary = record(&scripted(&[]), &cfg, std::future::pending(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        summary.stopped,
        Stopped::Duration(Duration::from_millis(20))
    );
    assert_eq!(lives(&summary.path), [1]);

    let cfg = config(dir.join("i.jsonl.gz"), 100);
    let summary = record(&scripted(&[]), &cfg, std::future::ready(()), |_| {})
        .await
        .unwrap();
    assert_eq!(summary.stopped, Stopped::Interrupted);
    assert_eq!(lives(&summary.path), [1]);
    // The file is not overwritten by a second run.
    let err = record(&scripted(&[]), &cfg, std::future::ready(()), |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("i.jsonl.gz"), "{err}");
    assert_eq!(lives(&cfg.output), [1]);
}

#[tokio::test]
async fn a_target_that_never_answers_leaves_no_file() {
    let dir = scratch("dead");
    let cfg = config(dir.join("dead.jsonl.gz"), 10);
    let err = record(&scripted(&[1]), &cfg, std::future::pending(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "nothing recorded from http://scripted:1: connection refused by http://scripted:1/debug/taskscope/snapshot"
    );
    assert!(!cfg.output.exists());
}
