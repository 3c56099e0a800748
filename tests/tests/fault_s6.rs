//! End to end: fault `S6` (a hot mutex, every request holds it for 5 ms) in the demo as a
//! real process; the handlers taskscope counts and the contention the fault reports.

mod common;

use std::time::{Duration, Instant};

use common::{Demo, acquire_site, site_of};
use taskscope::model::{Evidence, FindingKind, Severity};

const FILE: &str = "demo-service/src/faults/s6_hot_mutex.rs";
const HANDLERS: usize = 8;

#[tokio::test]
async fn hot_mutex_keeps_every_handler_alive_and_waiting() {
    let demo = Demo::start(&[]);
    let request = site_of(FILE, "// fault site: S6 request");
    demo.fault_on("S6").await;
    demo.wait_live(&request, HANDLERS as u64).await;

    let snap = demo.snapshot().await;
    let handlers: Vec<_> = snap.tasks.iter().filter(|t| t.site == request).collect();
    assert_eq!(handlers.len(), HANDLERS, "{handlers:?}");
    let row = snap
        .sites
        .iter()
        .find(|s| s.site == request)
        .unwrap_or_else(|| panic!("no row for {request}: {:?}", snap.sites));
    assert_eq!(
        (row.live, row.spawned, row.completed),
        (HANDLERS as u64, HANDLERS as u64, 0)
    );

    // Contention: acquisitions keep coming, and handlers wait for the lock.
    let first = wait_status(&demo, |s| {
        s["acquisitions"].as_u64().unwrap() >= HANDLERS as u64 * 2
            && s["wait_seconds_total"].as_f64().unwrap() > 0.0
            && s["contended_acquisitions"].as_u64().unwrap() > 0
    })
    .await;
    let acquisitions = first["acquisitions"].as_u64().unwrap();
    let wait_total = first["wait_seconds_total"].as_f64().unwrap();
    wait_status(&demo, |s| {
        s["acquisitions"].as_u64().unwrap() > acquisitions
            && s["wait_seconds_total"].as_f64().unwrap() > wait_total
    })
    .await;
    demo.wait_live(&request, HANDLERS as u64).await;

    // taskscope's own view of the lock: contended acquisitions, waits charged to the
    // handlers' acquire site (they hold it while others wait), and a hot-lock finding.
    let site = acquire_site(FILE, "// lock acquire: S6 request");
    let row = demo
        .wait_lock("session cache", |r| r.contended > 10 && r.wait_share >= 0.5)
        .await;
    assert!(row.acquisitions >= row.contended, "{row:#?}");
    assert_eq!(
        row.wait_seconds.count,
        row.contended.min(row.wait_seconds.count)
    );
    assert!(row.wait_seconds.sum > 0.0);
    assert_eq!(row.delay_by_holder_site[0].site, site, "{row:#?}");
    assert!(row.delay_by_holder_site[0].contentions > 0);
    // Every holder is a handler at that site.
    assert!(
        row.holders
            .iter()
            .all(|h| h.site == site && h.task_site.as_deref() == Some(request.as_str()))
    );
    let f = demo
        .wait_finding(FindingKind::HotLock, &row.lock, |_| true)
        .await;
    assert_eq!(f.severity, Severity::Warning);
    let Evidence::HotLock {
        top_holder_sites,
        wait_share,
        ..
    } = &f.evidence
    else {
        panic!("{f:#?}");
    };
    assert_eq!(top_holder_sites[0].site, site);
    assert!(*wait_share >= 0.5, "{f:#?}");
    let text = demo.metrics().await;
    assert!(
        text.contains(&format!(
            "taskscope_lock_contended_total{{lock=\"{}\"}}",
            row.lock
        )),
        "no contention metric for {}",
        row.lock
    );

    demo.fault_off("S6").await;
    demo.wait_live(&request, 0).await;
}

/// Polls the status of `S6` in `GET /faults` until `ok` holds (at most 20 s).
async fn wait_status(demo: &Demo, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = fault_status(demo, "S6").await;
        if ok(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "S6 status stayed at {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `status` of fault `name` in `GET /faults`.
async fn fault_status(demo: &Demo, name: &str) -> serde_json::Value {
    let (code, body) = demo.get("/faults").await;
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no fault {name} in {body}"))["status"]
        .clone()
}
