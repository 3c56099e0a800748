//! Panics inside tasks are counted per spawn site, the agent's other counts stay exact, and
//! the panic hook set before the agent still runs. One test in its own binary: the panic
//! hook is process-wide.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SOURCE: &str = include_str!("panics.rs");

/// `file:line:col` of the `tokio::spawn` on the line carrying `marker`.
fn site_of(marker: &str) -> String {
    let (idx, line) = SOURCE
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker) && !l.contains("site_of("))
        .unwrap_or_else(|| panic!("marker {marker} not found"));
    let col = line.find("tokio::spawn(").expect("spawn on marker line") + 1;
    format!("agent/tests/panics.rs:{}:{}", idx + 1, col)
}

#[test]
fn panics_are_counted_per_site_and_the_previous_hook_still_runs() {
    // The service's own hook, set before the agent: it must keep running.
    let seen_by_service_hook = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&seen_by_service_hook);
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::Relaxed);
        eprintln!("service hook: {info}");
    }));

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = taskscope::install(&mut builder);
    let rt = builder.build().unwrap();

    let outcomes = rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..5u32 {
            let task = async move {
                tokio::task::yield_now().await;
                assert!(i % 2 == 1, "task {i} fails");
                i
            };
            handles.push(tokio::spawn(task)); // site: sometimes panics
        }
        let quiet = tokio::spawn(async { 7 }); // site: never panics
        let mut outcomes = Vec::new();
        for h in handles {
            outcomes.push(h.await.map_err(|e| e.is_panic()));
        }
        outcomes.push(quiet.await.map_err(|e| e.is_panic()));
        outcomes
    });
    assert_eq!(
        outcomes,
        vec![Err(true), Ok(1), Err(true), Ok(3), Err(true), Ok(7)]
    );
    // A panic outside any task is not charged to a site.
    let _ = std::panic::catch_unwind(|| panic!("plain thread panic"));

    // The terminate hook runs just after the JoinHandle wakes; wait for the counts to settle.
    let site = site_of("// site: sometimes panics");
    let quiet_site = site_of("// site: never panics");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let row = loop {
        let snap = agent.snapshot();
        let row = snap.sites.iter().find(|s| s.site == site).cloned();
        if let Some(row) = row.filter(|r| r.completed == 5) {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counts never settled: {snap:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        (row.spawned, row.completed, row.live, row.panicked),
        (5, 5, 0, 3)
    );
    let snap = agent.snapshot();
    let quiet = snap.sites.iter().find(|s| s.site == quiet_site).unwrap();
    assert_eq!((quiet.spawned, quiet.panicked), (1, 0));
    assert!(snap.agent.panic_counting);
    // Three task panics and the plain one went through the service's hook.
    assert_eq!(seen_by_service_hook.load(Ordering::Relaxed), 4);
    // No worker is left looking "in a poll" by the panicking polls.
    assert!(
        snap.polls_in_progress.is_empty(),
        "{:?}",
        snap.polls_in_progress
    );
}
