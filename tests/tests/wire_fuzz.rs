//! The wire formats decoded defensively: a real snapshot and a real dump from a running
//! demo (fault S2 on, a lock, findings), then thousands of truncations, byte flips and
//! random inputs, each decoded as the TUI and CLI decode them (serde_json into the model).
//! No input may panic; cut or corrupted input must be an error or a valid value, never a
//! hang. Also: a snapshot from a newer schema version still decodes, its unknown fields and
//! enum values kept as `Unknown`.

mod common;

use common::{Demo, site_of};
use proptest::prelude::*;
use taskscope::model::{BaselineDiff, Dump, FindingKind, Snapshot};

/// Decodes `bytes` as every wire type; panics only if decoding itself panics.
fn decode_all(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Snapshot>(bytes);
    let _ = serde_json::from_slice::<Dump>(bytes);
    let _ = serde_json::from_slice::<BaselineDiff>(bytes);
}

fn samples() -> (Vec<u8>, Vec<u8>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let demo = Demo::start(&["--idle-floor", "1"]);
        let site = site_of(
            "demo-service/src/faults/s2_reply_map.rs",
            "// fault site: S2 request",
        );
        demo.fault_on("S2").await;
        demo.fault_on("S6").await;
        demo.wait_live(&site, 10).await;
        demo.wait_finding(FindingKind::IdleTooLong, &site, |_| true)
            .await;
        let snap = demo
            .client
            .get(format!(
                "{}/debug/taskscope/snapshot?tasks=100",
                demo.exporter
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let dump = demo
            .client
            .get(format!(
                "{}/debug/taskscope/dump?format=json&debug=2",
                demo.exporter
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        (snap.to_vec(), dump.to_vec())
    })
}

#[test]
fn truncated_corrupted_and_random_wire_input_never_panics() {
    let (snap, dump) = samples();
    // The real ones decode, with what they carry.
    let s: Snapshot = serde_json::from_slice(&snap).expect("a real snapshot decodes");
    assert!(!s.findings.is_empty() && !s.locks.is_empty() && s.tasks.len() > 10);
    let d: Dump = serde_json::from_slice(&dump).expect("a real dump decodes");
    assert!(d.total_tasks > 10);
    // Every prefix of both.
    for body in [&snap, &dump] {
        for cut in (0..body.len()).step_by((body.len() / 2000).max(1)) {
            decode_all(&body[..cut]);
        }
    }
    let config = ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                        which in any::<bool>())| {
        let mut body = if which { snap.clone() } else { dump.clone() };
        for (i, b) in flips {
            let at = i.index(body.len());
            body[at] = b;
        }
        decode_all(&body);
    });
    proptest!(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() },
        |(bytes in proptest::collection::vec(any::<u8>(), 0..512))| {
        decode_all(&bytes);
    });
}

#[test]
fn a_newer_agents_snapshot_still_decodes_with_unknowns_marked() {
    let json = r#"{"schema_version":99,"sites":[{"site":"a.rs:1:1","live":2,"new_field":[1,2]}],
        "findings":[{"kind":"a_kind_from_the_future","severity":"apocalyptic","site":"a.rs:1:1",
        "count":1,"summary":"s","evidence":{"kind":"future_evidence","x":1}}],
        "locks":[{"lock":"l","kind":"spinlock","source":"elsewhere"}]}"#;
    let s: Snapshot = serde_json::from_str(json).expect("decodes");
    assert_eq!(s.schema_version, 99);
    assert_eq!(s.sites[0].live, 2);
    assert_eq!(s.findings[0].kind, FindingKind::Unknown);
    assert_eq!(s.findings[0].severity, taskscope::model::Severity::Unknown);
    assert_eq!(s.locks[0].kind, taskscope::model::LockKind::Unknown);
    assert_eq!(s.locks[0].source, taskscope::model::LockSource::Unknown);
}
