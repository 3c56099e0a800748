//! End to end: the demo with console-subscriber on (`--console-subscriber ADDR`), read
//! through console's gRPC API the way `taskscope console --once --json` reads it (the same
//! library call). Fault S2's ignored requests show at their spawn site with the scenario's
//! count, idle, and not as lost wakers (their senders live in the reply map); fault
//! `lostwaker`'s gate strands 9 of its 10 waiters with no waker, reported as lost. Neither
//! needs taskscope's own lost-waker layer: console's waker counts are enough.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, site_of};
use taskscope::LeakSettings;
use taskscope::model::{Evidence, FindingKind, Severity, TaskState};
use taskscope_tui::console::ConsoleReport;

const S2_FILE: &str = "demo-service/src/faults/s2_reply_map.rs";
const GATE_FILE: &str = "demo-service/src/faults/lost_waker.rs";
const REQUESTS: u64 = 30;
const IGNORED: u64 = 10;
const WAITERS: u64 = 10;

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn lost_at(r: &ConsoleReport, site: &str) -> Option<u64> {
    r.snapshot
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::LostWaker && f.site == site)
        .map(|f| f.count)
}

fn idle_too_long_at(r: &ConsoleReport, site: &str) -> Option<u64> {
    r.snapshot
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::IdleTooLong && f.site == site)
        .map(|f| f.count)
}

#[tokio::test]
async fn console_shows_s2_idle_not_lost_and_the_gate_waiters_lost() {
    let addr = free_addr();
    let url = format!("http://{addr}");
    let demo = Demo::start(&["--console-subscriber", &addr, "--idle-floor", "1"]);
    let s2 = site_of(S2_FILE, "// fault site: S2 request");
    let gate = site_of(GATE_FILE, "// fault site: lost waker");
    demo.fault_on("S2").await;
    demo.fault_on("lostwaker").await;
    // The agent's view, for comparison: the same counts at the same sites.
    demo.wait_live(&s2, IGNORED).await;
    demo.wait_live(&gate, WAITERS).await;

    let settings = LeakSettings {
        idle_floor: Duration::from_secs(1),
        ..LeakSettings::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let last = taskscope_tui::console::once(&url, &settings, Duration::ZERO).await;
        if let Ok(r) = &last
            && idle_too_long_at(r, &s2) == Some(IGNORED)
            && lost_at(r, &gate) == Some(WAITERS - 1)
        {
            break last.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "console never showed S2 and the gate settled: {:#?}",
            last.map(|r| (r.snapshot.sites, r.snapshot.findings))
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let snap = &report.snapshot;

    // S2: the scenario's count, every one idle, none lost.
    let row = snap
        .sites
        .iter()
        .find(|r| r.site == s2)
        .unwrap_or_else(|| panic!("no row for {s2}: {:#?}", snap.sites));
    assert_eq!(
        (row.live, row.spawned, row.completed),
        (IGNORED, REQUESTS, REQUESTS - IGNORED)
    );
    assert_eq!(row.idle_over_threshold, IGNORED);
    let waiting: Vec<_> = snap.tasks.iter().filter(|t| t.site == s2).collect();
    assert_eq!(waiting.len() as u64, IGNORED);
    assert!(
        waiting
            .iter()
            .all(|t| t.state == TaskState::Idle && t.idle_seconds > 1.0),
        "{waiting:#?}"
    );
    assert_eq!(lost_at(&report, &s2), None);
    let extra = report.console.sites.iter().find(|x| x.site == s2).unwrap();
    assert_eq!(extra.idle_without_waker, 0, "their oneshot holds a waker");
    // console's task ids are tokio's: the agent's snapshot lists the same tasks.
    let mut ids: Vec<u64> = waiting.iter().map(|t| t.id).collect();
    ids.sort();
    let mut agent_ids: Vec<u64> = demo
        .snapshot()
        .await
        .tasks
        .iter()
        .filter(|t| t.site == s2)
        .map(|t| t.id)
        .collect();
    agent_ids.sort();
    assert_eq!(ids, agent_ids);

    // The gate: 9 of 10 waiters lost their waker; the tenth holds the only one.
    let f = snap
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::LostWaker && f.site == gate)
        .unwrap();
    assert_eq!((f.count, f.severity), (WAITERS - 1, Severity::Critical));
    let Evidence::LostWaker { task_ids, .. } = &f.evidence else {
        panic!("lost-waker evidence expected: {f:#?}");
    };
    assert_eq!(task_ids.len() as u64, WAITERS - 1);
    let gate_row = snap.sites.iter().find(|r| r.site == gate).unwrap();
    assert_eq!(gate_row.live, WAITERS);
    // Nothing else is claimed lost.
    let lost: Vec<(&str, u64)> = snap
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::LostWaker)
        .map(|f| (f.site.as_str(), f.count))
        .collect();
    assert_eq!(lost, [(gate.as_str(), WAITERS - 1)]);

    // The JSON `--once --json` prints decodes as a taskscope snapshot.
    let json = serde_json::to_string(&report).unwrap();
    let back: taskscope::model::Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, snap);

    // Off: the waiters go away from console's view too.
    demo.fault_off("S2").await;
    demo.fault_off("lostwaker").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = taskscope_tui::console::once(&url, &settings, Duration::ZERO)
            .await
            .unwrap();
        let live = |site: &str| {
            r.snapshot
                .sites
                .iter()
                .find(|x| x.site == site)
                .map_or(0, |x| x.live)
        };
        if live(&s2) == 0 && live(&gate) == 0 {
            assert_eq!(lost_at(&r, &gate), None);
            break;
        }
        assert!(Instant::now() < deadline, "the fault tasks stayed live");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
