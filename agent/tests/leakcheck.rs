//! The leak check against real runtimes: a leaking body is reported with its exact site and
//! count, a clean one passes, ignores (site, function, tasks alive before) apply, the panic
//! message names the site, and with `taskdump` the report shows where the tasks wait.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use taskscope::Agent;
use taskscope::dump::TRACING_SUPPORTED;
use taskscope::leakcheck::{LeakCheck, LeakReport};
use tokio::sync::oneshot;

const SOURCE: &str = include_str!("leakcheck.rs");

/// Short, so that each failing check costs a fraction of a second.
const GRACE: Duration = Duration::from_millis(200);

/// `(line, col)` of `pattern` on the line holding `marker`, 1-based, as in site labels.
fn position(marker: &str, pattern: &str) -> (usize, usize) {
    let (idx, line) = SOURCE
        .lines()
        .enumerate()
        // The marker's own line, not a line naming it in quotes.
        .find(|(_, l)| l.contains(marker) && !l.contains(&format!("\"{marker}\"")))
        .expect("marker");
    let col = line.find(pattern).expect("pattern on marker line") + 1;
    (idx + 1, col)
}

/// The site label of the `tokio::spawn` on the line holding `marker`.
fn site_of(marker: &str) -> String {
    let (line, col) = position(marker, "tokio::spawn(");
    format!("agent/tests/leakcheck.rs:{line}:{col}")
}

fn leak_site() -> String {
    site_of("// site: leak")
}

/// Waits until its sender is dropped or sends.
async fn wait_forever(rx: oneshot::Receiver<()>) {
    let _ = rx.await; // await: forever
}

/// Spawns `n` tasks waiting on oneshots whose senders it returns: they stay alive as long
/// as the caller keeps the senders. Call it inside a runtime.
fn leak(n: usize) -> Vec<oneshot::Sender<()>> {
    (0..n)
        .map(|_| {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(wait_forever(rx)); // site: leak
            tx
        })
        .collect()
}

/// Like [`leak`], from another site.
fn leak_elsewhere(n: usize) -> Vec<oneshot::Sender<()>> {
    (0..n)
        .map(|_| {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(wait_forever(rx)); // site: elsewhere
            tx
        })
        .collect()
}

fn runtime() -> (tokio::runtime::Runtime, Agent) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    let agent = taskscope::install(&mut builder);
    (builder.build().unwrap(), agent)
}

/// The report of a body that leaks 3 tasks at the leak site.
fn leak_three(check: LeakCheck) -> Result<Vec<oneshot::Sender<()>>, LeakReport> {
    check.grace(GRACE).try_run(async { leak(3) })
}

#[test]
fn a_leaking_body_fails_naming_the_site_and_count() {
    let site = leak_site();
    let report = leak_three(LeakCheck::new()).unwrap_err();
    assert_eq!(report.grace, GRACE);
    assert_eq!(report.total, 3);
    assert_eq!(report.sites.len(), 1, "{report}");
    let leaked = &report.sites[0];
    assert_eq!((leaked.site.as_str(), leaked.count), (site.as_str(), 3));
    assert_eq!(report.count(&site), 3);
    assert_eq!(leaked.task_ids.len(), 3);
    // Polled once when spawned, then idle through the grace period.
    assert!(leaked.idle_seconds >= 0.1, "{report:?}");

    let message = report.to_string();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0],
        "taskscope leakcheck: 3 tasks still alive after 0.2 s grace"
    );
    assert!(
        lines[1].starts_with(&format!("  3 at {site} (idle ")),
        "{message}"
    );
    if TRACING_SUPPORTED {
        assert_eq!(lines.len(), 2, "{message}");
        assert!(report.notes.is_empty(), "{:?}", report.notes);
        assert_eq!(leaked.await_points.len(), 1, "{report:#?}");
        let point = &leaked.await_points[0];
        assert_eq!(point.count, 3);
        assert!(
            point.stacks[0][0].function.contains("oneshot"),
            "{report:#?}"
        );
        // The leaf, then the first frame in the test's own file: the `rx.await` line.
        let (await_line, _) = position("// await: forever", "rx.await");
        let waiting = lines[1].split_once(", waiting at ").map(|(_, w)| w);
        assert!(
            waiting.is_some_and(|w| w.contains("tokio::sync::oneshot::Receiver")),
            "{message}"
        );
        assert!(
            lines[1].ends_with(&format!(" <- agent/tests/leakcheck.rs:{await_line}")),
            "{message}"
        );
    } else {
        assert!(leaked.await_points.is_empty());
        assert_eq!(lines.len(), 3, "{message}");
        assert!(lines[2].starts_with("  note: no await points"), "{message}");
        assert!(lines[2].contains("`taskdump` feature"), "{message}");
    }
}

#[test]
fn untraceable_waits_are_reported_too() {
    let report = LeakCheck::new()
        .grace(GRACE)
        .try_run(async {
            for _ in 0..2 {
                tokio::spawn(std::future::pending::<()>()); // site: pending
            }
        })
        .unwrap_err();
    let site = site_of("// site: pending");
    assert_eq!((report.total, report.count(&site)), (2, 2), "{report}");
    if TRACING_SUPPORTED {
        // `pending` is no tokio resource: tokio's dump has no stack for it.
        assert_eq!(report.sites[0].await_points.len(), 1, "{report:#?}");
        assert_eq!(report.sites[0].await_points[0].count, 2);
        assert!(report.sites[0].await_points[0].stacks.is_empty());
        assert!(
            report
                .to_string()
                .contains(&format!("  2 at {site} (idle ")),
            "{report}"
        );
        assert!(
            report.to_string().contains("await point not traced"),
            "{report}"
        );
    }
}

#[test]
fn joined_tasks_pass_without_waiting_out_the_grace() {
    let grace = Duration::from_secs(10);
    let started = Instant::now();
    let sum = LeakCheck::new().grace(grace).run(async {
        let tasks: Vec<_> = (0..8u64).map(|i| tokio::spawn(async move { i })).collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 28);
    // The check ends as soon as the table is empty, not after the grace period.
    assert!(started.elapsed() < grace / 2, "{:?}", started.elapsed());
}

#[test]
fn tasks_ending_within_the_grace_pass() {
    let done = LeakCheck::new()
        .grace(Duration::from_secs(3))
        .try_run(async {
            // Not joined: ends 100 ms after the body returned.
            tokio::spawn(tokio::time::sleep(Duration::from_millis(100)));
            "done"
        });
    assert_eq!(done, Ok("done"));
}

#[test]
fn ignore_site_makes_the_leak_pass() {
    let site = leak_site();
    let (line, _) = position("// site: leak", "tokio::spawn(");
    for pattern in [
        site.clone(),
        format!("agent/tests/leakcheck.rs:{line}"),
        "agent/tests/leakcheck.rs".to_string(),
        "agent/tests/".to_string(),
        "agent".to_string(),
    ] {
        let senders = leak_three(LeakCheck::new().ignore_site(pattern.as_str()));
        assert_eq!(senders.map(|s| s.len()), Ok(3), "pattern {pattern}");
    }
    // Patterns that do not select the site, at a boundary or at all.
    for pattern in [
        "agent/tests/leakcheck.rs:1".to_string(),
        format!("{site}0"),
        "agent/tests/leak".to_string(),
        "tests/leakcheck.rs".to_string(),
        String::new(),
    ] {
        let report = leak_three(LeakCheck::new().ignore_site(pattern.as_str())).unwrap_err();
        assert_eq!(
            (report.total, report.count(&site)),
            (3, 3),
            "pattern {pattern}"
        );
    }
}

#[test]
fn ignore_function_needs_frames() {
    let check = || LeakCheck::new().ignore_function("leakcheck::wait_forever");
    if TRACING_SUPPORTED {
        assert_eq!(leak_three(check()).map(|s| s.len()), Ok(3));
        // Another function does not match, nor does a prefix that stops mid-name.
        for other in ["leakcheck::leak_elsewhere", "leakcheck::wait"] {
            let report = leak_three(LeakCheck::new().ignore_function(other)).unwrap_err();
            assert_eq!(report.count(&leak_site()), 3, "{other}");
        }
    } else {
        let report = leak_three(check()).unwrap_err();
        assert_eq!(report.count(&leak_site()), 3);
        assert!(
            report.notes.iter().any(|n| n
                == "ignore_function(leakcheck::wait_forever) had no effect: this check has \
                    no frames"),
            "{:?}",
            report.notes
        );
    }
}

#[test]
fn tasks_alive_before_start_are_ignored_while_new_leaks_are_not() {
    let (rt, agent) = runtime();
    let old_site = site_of("// site: elsewhere");
    let new_site = leak_site();
    let _old = rt.block_on(async { leak_elsewhere(2) });

    let guard = LeakCheck::new().grace(GRACE).start(&agent);
    assert_eq!(guard.ignored_tasks(), 2);
    let _new = rt.block_on(async { leak(3) });
    let report = guard.verify().unwrap_err();
    assert_eq!(report.total, 3, "{report}");
    assert_eq!(report.sites.len(), 1, "{report}");
    assert_eq!(
        (report.sites[0].site.as_str(), report.sites[0].count),
        (new_site.as_str(), 3)
    );
    assert_eq!(report.count(&old_site), 0);
    assert!(!report.to_string().contains(&old_site), "{report}");

    // Without a guard, every live task counts.
    let all = LeakCheck::new().grace(GRACE).verify(&agent).unwrap_err();
    assert_eq!(
        (all.total, all.count(&new_site), all.count(&old_site)),
        (5, 3, 2),
        "{all}"
    );
    assert_eq!(all.sites[0].site, new_site, "most tasks first");

    // A guard started now, with only clean work after it, passes.
    let guard = LeakCheck::new().grace(GRACE).start(&agent);
    assert_eq!(guard.ignored_tasks(), 5);
    rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
    assert_eq!(guard.verify(), Ok(()));
}

fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(AssertUnwindSafe(f)).expect_err("no panic");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

#[test]
fn the_panic_message_names_the_site() {
    let site = leak_site();
    let message = panic_message(|| {
        LeakCheck::new().grace(GRACE).run(async { leak(3) });
    });
    assert!(
        message.starts_with("taskscope leakcheck: 3 tasks still alive after 0.2 s grace\n"),
        "{message}"
    );
    assert!(
        message.contains(&format!("\n  3 at {site} (idle ")),
        "{message}"
    );

    // The guard's panicking form says the same.
    let (rt, agent) = runtime();
    let guard = LeakCheck::new().grace(GRACE).start(&agent);
    let _senders = rt.block_on(async { leak(1) });
    let message = panic_message(|| guard.assert_no_leaks());
    assert!(
        message.starts_with("taskscope leakcheck: 1 task still alive after 0.2 s grace\n"),
        "{message}"
    );
    assert!(
        message.contains(&format!("\n  1 at {site} (idle ")),
        "{message}"
    );
}
