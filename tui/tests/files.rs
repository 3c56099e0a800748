//! Snapshot files and recordings: written, opened, and the same data back; damaged,
//! foreign and future files give a clear error and never a panic; caps are kept.

use std::io::Write as _;
use std::path::PathBuf;

use taskscope::model::{Dump, DumpGroup, ProcessInfo, SCHEMA_VERSION, SiteRow, Snapshot, TaskRow};
use taskscope_tui::files::{
    self, FILE_VERSION, FileError, Opened, Recorder, RecordingLimits, SavedDump, SavedSnapshot,
};

/// A fresh directory of its own under the system's temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskscope-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn snapshot(live: u64) -> Snapshot {
    Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at_unix_ms: 1_700_000_000_000 + live,
        uptime_seconds: 12.5,
        process: ProcessInfo {
            pid: 4242,
            name: "demo-service".into(),
        },
        sites: vec![SiteRow {
            site: "demo-service/src/faults/leak.rs:42:5".into(),
            live,
            spawned: live + 3,
            busy_seconds: 0.25,
            ..SiteRow::default()
        }],
        tasks: vec![TaskRow {
            id: 7,
            site: "demo-service/src/faults/leak.rs:42:5".into(),
            age_seconds: 3.0,
            ..TaskRow::default()
        }],
        ..Snapshot::default()
    }
}

fn dump() -> Dump {
    Dump {
        schema_version: SCHEMA_VERSION,
        total_tasks: 7,
        groups: vec![DumpGroup {
            site: "demo-service/src/faults/leak.rs:42:5".into(),
            count: 7,
            ..DumpGroup::default()
        }],
        ..Dump::default()
    }
}

#[test]
fn a_saved_snapshot_opens_as_the_same_snapshot_and_dump() {
    let dir = scratch("snapshot");
    let saved = SavedSnapshot {
        saved_at_unix_ms: 1_700_000_123_456,
        ..SavedSnapshot::new(
            "http://127.0.0.1:6060",
            snapshot(7),
            Some(SavedDump {
                site: "demo-service/src/faults/leak.rs:42:5".into(),
                dump: dump(),
            }),
        )
    };
    let path = files::save_snapshot(&dir, &saved).unwrap();
    assert_eq!(path, dir.join("taskscope-4242-1700000123.json"));
    // Saving again in the same second does not overwrite it.
    let second = files::save_snapshot(&dir, &saved).unwrap();
    assert_eq!(second, dir.join("taskscope-4242-1700000123-2.json"));

    match files::open(&path).unwrap() {
        Opened::Snapshot(back) => assert_eq!(*back, saved),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[test]
fn a_recording_opens_with_every_frame_in_order() {
    let dir = scratch("recording");
    let path = dir.join("rec.jsonl.gz");
    let mut rec = Recorder::create(&path, "http://h:1", 1000, RecordingLimits::default()).unwrap();
    for i in 0..5u64 {
        assert!(
            rec.push(1_700_000_000_000 + i * 1000, &snapshot(i))
                .unwrap()
        );
    }
    assert_eq!(rec.frames(), 5);
    rec.finish().unwrap();

    let Opened::Recording(back) = files::open(&path).unwrap() else {
        panic!("expected a recording");
    };
    assert_eq!(back.header.target, "http://h:1");
    assert_eq!(back.header.version, FILE_VERSION);
    assert_eq!(back.header.interval_ms, 1000);
    assert_eq!(back.cut_short, None);
    assert_eq!(back.frames.len(), 5);
    for (i, frame) in back.frames.iter().enumerate() {
        assert_eq!(frame.at_unix_ms, 1_700_000_000_000 + i as u64 * 1000);
        assert_eq!(frame.snapshot, snapshot(i as u64));
    }
}

#[test]
fn the_recorder_stops_at_its_frame_and_byte_caps() {
    let dir = scratch("caps");
    let path = dir.join("frames.jsonl.gz");
    let limits = RecordingLimits {
        max_frames: 3,
        max_bytes: 1 << 20,
    };
    let mut rec = Recorder::create(&path, "u", 1000, limits).unwrap();
    let pushed: Vec<bool> = (0..5).map(|i| rec.push(i, &snapshot(i)).unwrap()).collect();
    assert_eq!(pushed, [true, true, true, false, false]);
    assert_eq!(rec.full(), Some(files::Full::Frames(3)));
    rec.finish().unwrap();
    let Opened::Recording(back) = files::open(&path).unwrap() else {
        panic!("expected a recording");
    };
    assert_eq!(back.frames.len(), 3);

    // Bytes: the header plus two frames fit, the third does not.
    let path = dir.join("bytes.jsonl.gz");
    let frame_len = serde_json::to_vec(&serde_json::json!({
        "at_unix_ms": 0u64,
        "snapshot": snapshot(0),
    }))
    .unwrap()
    .len() as u64
        + 1;
    let rec = Recorder::create(
        &path,
        "u",
        1000,
        RecordingLimits {
            max_frames: 100,
            max_bytes: 1,
        },
    )
    .unwrap();
    let header = rec.bytes();
    drop(rec);
    std::fs::remove_file(&path).unwrap();
    let limits = RecordingLimits {
        max_frames: 100,
        max_bytes: header + 2 * frame_len + frame_len / 2,
    };
    let mut rec = Recorder::create(&path, "u", 1000, limits).unwrap();
    let pushed: Vec<bool> = (0..3).map(|_| rec.push(0, &snapshot(0)).unwrap()).collect();
    assert_eq!(pushed, [true, true, false]);
    assert_eq!(rec.full(), Some(files::Full::Bytes(limits.max_bytes)));
    assert!(rec.bytes() <= limits.max_bytes);
    rec.finish().unwrap();

    // Reading has the same caps: a long recording opened with a 2-frame cap says so.
    let path = dir.join("long.jsonl.gz");
    let mut rec = Recorder::create(&path, "u", 1000, RecordingLimits::default()).unwrap();
    for i in 0..4 {
        rec.push(i, &snapshot(i)).unwrap();
    }
    rec.finish().unwrap();
    let Opened::Recording(back) = files::open_with(
        &path,
        RecordingLimits {
            max_frames: 2,
            max_bytes: 1 << 20,
        },
    )
    .unwrap() else {
        panic!("expected a recording");
    };
    assert_eq!(back.frames.len(), 2);
    assert_eq!(
        back.cut_short.as_deref(),
        Some("only the first 2 frames were read (the cap)")
    );
}

#[test]
fn a_recording_cut_mid_way_opens_its_complete_frames() {
    let dir = scratch("killed");
    let path = dir.join("killed.jsonl.gz");
    let mut rec = Recorder::create(&path, "u", 1000, RecordingLimits::default()).unwrap();
    for i in 0..3 {
        rec.push(i, &snapshot(i)).unwrap();
    }
    // Not finished, as if the recorder had been killed (dropping would end the gzip
    // stream): the frames were flushed anyway.
    std::mem::forget(rec);
    let bytes = std::fs::read(&path).unwrap();
    let Opened::Recording(back) = files::open(&path).unwrap() else {
        panic!("expected a recording");
    };
    assert_eq!(back.frames.len(), 3);
    assert!(
        back.cut_short
            .as_deref()
            .is_some_and(|w| w.starts_with("the file ends early or is damaged after frame 3")),
        "{:?}",
        back.cut_short
    );

    // Every prefix of a finished recording: frames or a clear error, never a panic.
    let path = dir.join("whole.jsonl.gz");
    let mut rec = Recorder::create(&path, "u", 1000, RecordingLimits::default()).unwrap();
    for i in 0..3 {
        rec.push(i, &snapshot(i)).unwrap();
    }
    rec.finish().unwrap();
    let whole = std::fs::read(&path).unwrap();
    assert!(whole.len() > bytes.len() / 2);
    let cut = dir.join("cut.jsonl.gz");
    for len in 0..whole.len() {
        std::fs::write(&cut, &whole[..len]).unwrap();
        match files::open(&cut) {
            Ok(Opened::Recording(r)) => assert!(!r.frames.is_empty() && r.frames.len() <= 3),
            Ok(other) => panic!("prefix {len}: {other:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.starts_with(&cut.display().to_string()), "{text}");
            }
        }
    }
}

#[test]
fn damaged_foreign_and_future_files_are_refused_clearly() {
    let dir = scratch("bad");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let err = |path: &PathBuf| files::open(path).unwrap_err().to_string();

    let p = write("empty.json", b"");
    assert_eq!(
        err(&p),
        format!(
            "{} is not a taskscope snapshot or recording (it is empty); open files written by `s` in the TUI, `taskscope record` or `R`",
            p.display()
        )
    );
    let p = write("garbage.bin", b"\x00\x01garbage");
    assert!(
        err(&p).contains("(it is neither JSON nor gzip)"),
        "{}",
        err(&p)
    );
    let p = write("other.json", br#"{"hello": 1}"#);
    assert!(
        err(&p).contains("(JSON without a \"format\" field)"),
        "{}",
        err(&p)
    );
    let p = write(
        "recording-as-json.json",
        br#"{"format": "taskscope-recording", "version": 1}"#,
    );
    assert!(
        err(&p).contains("its format is \"taskscope-recording\", not \"taskscope-snapshot\""),
        "{}",
        err(&p)
    );

    // A newer file format, and a snapshot of a newer schema.
    let mut saved = SavedSnapshot::new("u", snapshot(1), None);
    saved.version = FILE_VERSION + 1;
    let p = write("v2.json", &serde_json::to_vec(&saved).unwrap());
    assert_eq!(
        err(&p),
        format!(
            "{} is a taskscope-snapshot of format version {}; this taskscope reads version {FILE_VERSION}",
            p.display(),
            FILE_VERSION + 1
        )
    );
    let mut saved = SavedSnapshot::new("u", snapshot(1), None);
    saved.snapshot.schema_version = SCHEMA_VERSION + 1;
    let p = write("schema.json", &serde_json::to_vec(&saved).unwrap());
    assert_eq!(
        err(&p),
        format!(
            "{} holds a snapshot of schema v{}; this taskscope understands up to v{SCHEMA_VERSION}",
            p.display(),
            SCHEMA_VERSION + 1
        )
    );

    // A truncated snapshot file.
    let whole = serde_json::to_vec(&SavedSnapshot::new("u", snapshot(1), None)).unwrap();
    let p = write("cut.json", &whole[..whole.len() / 2]);
    assert!(
        err(&p).starts_with(&format!(
            "{} is damaged: it ends early (truncated?)",
            p.display()
        )),
        "{}",
        err(&p)
    );
    for len in 0..whole.len() {
        let p = write("prefix.json", &whole[..len]);
        assert!(files::open(&p).is_err(), "prefix {len} opened");
    }

    // gzip that is not a recording, and a recording of a newer format version.
    let gz = |text: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let p = write("logs.gz", &gz("just some log lines\n"));
    assert!(
        err(&p).contains("gzip, but its first line is not a recording header"),
        "{}",
        err(&p)
    );
    let p = write(
        "rec-v9.jsonl.gz",
        &gz(r#"{"format":"taskscope-recording","version":9}"#),
    );
    assert_eq!(
        err(&p),
        format!(
            "{} is a taskscope-recording of format version 9; this taskscope reads version {FILE_VERSION}",
            p.display()
        )
    );
    let p = write("header-only.jsonl.gz", &{
        let dir2 = scratch("header-only");
        let path = dir2.join("h.jsonl.gz");
        Recorder::create(&path, "u", 1000, RecordingLimits::default())
            .unwrap()
            .finish()
            .unwrap();
        std::fs::read(path).unwrap()
    });
    assert_eq!(
        err(&p),
        format!("{} is damaged: the recording has no frame", p.display())
    );
    let missing = dir.join("missing.json");
    let e = files::open(&missing).unwrap_err();
    assert!(matches!(e, FileError::Io { .. }));
    // Said once, also through an error chain.
    assert_eq!(
        format!("{:#}", anyhow::Error::from(e)),
        format!(
            "{}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[test]
fn every_corrupted_byte_of_a_recording_opens_or_is_refused_without_panic() {
    let dir = scratch("flips");
    let path = dir.join("r.jsonl.gz");
    let mut rec = Recorder::create(&path, "u", 1000, RecordingLimits::default()).unwrap();
    for i in 0..3 {
        rec.push(i, &snapshot(i)).unwrap();
    }
    rec.finish().unwrap();
    let whole = std::fs::read(&path).unwrap();
    let bad = dir.join("bad.jsonl.gz");
    let (mut opened, mut refused) = (0, 0);
    for i in 0..whole.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bytes = whole.clone();
            bytes[i] ^= flip;
            std::fs::write(&bad, &bytes).unwrap();
            match files::open(&bad) {
                Ok(Opened::Recording(r)) => {
                    assert!((1..=3).contains(&r.frames.len()));
                    opened += 1;
                }
                Ok(Opened::Snapshot(_)) => panic!("byte {i}: a recording read as a snapshot"),
                Err(e) => {
                    assert!(e.to_string().starts_with(&bad.display().to_string()), "{e}");
                    refused += 1;
                }
            }
        }
    }
    // Both outcomes happen: flips in the gzip header's optional fields go unnoticed.
    assert!(
        opened > 0 && refused > 0,
        "{opened} opened, {refused} refused"
    );
}
