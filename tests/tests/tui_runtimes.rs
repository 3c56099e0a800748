//! The TUI's HTTP source against one exporter serving two named runtimes: a source asked
//! for a runtime gets that runtime's snapshot, task dump (with the site's task list) and
//! baseline (`?runtime=NAME` on every request), and the default source gets the first runtime, which lists both (the
//! TUI then watches each runtime as a target of its own: tui/src/runtimes.rs).

use std::time::Duration;

use taskscope::Agent;
use taskscope_exporter::Exporter;
use taskscope_tui::source::{HttpSource, Source};

const SOURCE: &str = include_str!("tui_runtimes.rs");

/// `file:line:col` of the `spawn(` on the line holding `marker`.
fn site_of(marker: &str) -> String {
    let (idx, line) = SOURCE
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(marker) && !l.contains("site_of("))
        .expect("marker");
    let col = line.find("spawn(").expect("spawn on marker line") + 1;
    format!("tests/tests/tui_runtimes.rs:{}:{}", idx + 1, col)
}

fn runtime(name: &str) -> (tokio::runtime::Runtime, Agent) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    let agent = Agent::builder().runtime_name(name).install(&mut builder);
    (builder.build().unwrap(), agent)
}

#[test]
fn a_source_per_runtime_sees_only_that_runtime() {
    let (web_rt, web) = runtime("web");
    let (io_rt, io) = runtime("io");
    let exporter = Exporter::new(web)
        .runtime(io)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let url = format!("http://{}", exporter.local_addr());
    let (tx, rx) = tokio::sync::watch::channel(false);
    for _ in 0..3 {
        let mut rx = rx.clone();
        web_rt.spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }); // site: web waiters
    }
    for _ in 0..2 {
        let mut rx = rx.clone();
        io_rt.spawn(async move { rx.wait_for(|go| *go).await.map(|_| ()) }); // site: io waiters
    }
    let (web_site, io_site) = (
        site_of("// site: web waiters"),
        site_of("// site: io waiters"),
    );

    let client = reqwest::Client::new();
    let default = HttpSource::new(client.clone(), url.clone());
    let io = HttpSource::new(client, url.clone()).with_runtime("io");
    assert_eq!(io.label(), format!("{url} runtime=io"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Wait until every waiter has been polled once (parked on the channel).
        let live = |s: &taskscope::model::Snapshot, site: &str| {
            s.sites
                .iter()
                .find(|r| r.site == site)
                .map(|r| (r.live, r.polls))
        };
        let mut tries = 0;
        let (web_snap, io_snap) = loop {
            let web_snap = default.fetch().await.expect("web snapshot");
            let io_snap = io.fetch().await.expect("io snapshot");
            if (live(&web_snap, &web_site), live(&io_snap, &io_site))
                == (Some((3, 3)), Some((2, 2)))
                || tries == 500
            {
                break (web_snap, io_snap);
            }
            tries += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(web_snap.runtimes, ["web", "io"]);
        assert_eq!(web_snap.agent.runtime_name.as_deref(), Some("web"));
        assert_eq!(live(&web_snap, &web_site), Some((3, 3)));
        assert_eq!(live(&web_snap, &io_site), None);
        assert_eq!(io_snap.agent.runtime_name.as_deref(), Some("io"));
        assert_eq!(live(&io_snap, &io_site), Some((2, 2)));
        assert_eq!(live(&io_snap, &web_site), None);

        let dump = io.dump(&io_site).expect("dumps").await.expect("io dump");
        assert_eq!(dump.groups.iter().map(|g| g.count).sum::<u64>(), 2);
        assert!(dump.groups.iter().all(|g| g.site == io_site));
        // With the site's task list for the detail view (from `?tasks=N&site=SITE`): its
        // two tasks, idle, polled once, oldest first.
        let mut ids: Vec<u64> = dump
            .groups
            .iter()
            .flat_map(|g| g.task_ids.clone())
            .collect();
        ids.sort();
        assert_eq!(dump.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
        assert!(dump.tasks.iter().all(|t| t.site == io_site
            && t.state == taskscope::model::TaskState::Idle
            && t.polls == 1));
        let none = io.dump(&web_site).expect("dumps").await.expect("io dump");
        assert_eq!(none.groups.iter().map(|g| g.count).sum::<u64>(), 0);

        assert!(
            io.mark_baseline()
                .expect("baselines")
                .await
                .expect("marked")
                > 0
        );
        // A runtime the exporter does not serve is an error naming the ones it does.
        let db = HttpSource::new(reqwest::Client::new(), url.clone()).with_runtime("db");
        let err = db.fetch().await.unwrap_err().to_string();
        assert!(
            err.contains("no runtime named \"db\"; this exporter serves: web, io"),
            "{err}"
        );
    });
    tx.send(true).unwrap();
    exporter.shutdown();
}
