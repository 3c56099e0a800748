//! End to end: `/debug/pprof/tasks` on the demo with fault S2 (10 request tasks left
//! waiting on a oneshot reply). The profile is decoded here with prost and read by the real
//! `go tool pprof` (Debian's golang-go; `.ci/run` installs it).

mod common;

use std::io::Read as _;
use std::process::Command;

use common::{Demo, TempDir, site_of};
use prost::Message as _;
use taskscope_exporter::pprof::Profile;

const FILE: &str = "demo-service/src/faults/s2_reply_map.rs";
const IGNORED: i64 = 10;

async fn fetch(demo: &Demo, query: &str) -> reqwest::Response {
    demo.client
        .get(format!("{}/debug/pprof/tasks{query}", demo.exporter))
        .send()
        .await
        .expect("the exporter answers")
}

fn decode(gz: &[u8]) -> Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .expect("the profile is gzipped");
    Profile::decode(&raw[..]).expect("the profile is a profile.proto")
}

/// Function name of each location of a sample, leaf first.
fn functions(p: &Profile, location_ids: &[u64]) -> Vec<String> {
    location_ids
        .iter()
        .map(|id| {
            let loc = p.location.iter().find(|l| l.id == *id).expect("location");
            let f = p
                .function
                .iter()
                .find(|f| f.id == loc.line[0].function_id)
                .expect("function");
            p.string_table[f.name as usize].clone()
        })
        .collect()
}

/// Runs `go tool pprof ARGS` with a private HOME, GOCACHE and GOPATH (CI runs as root,
/// possibly without HOME); fails the test when go is missing.
fn go_pprof(scratch: &TempDir, args: &[&str]) -> String {
    let dir = |name: &str| {
        let d = scratch.0.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .env("HOME", dir("home"))
        .env("GOCACHE", dir("gocache"))
        .env("GOPATH", dir("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `go tool pprof` ({e}): this test needs Go; install it with \
                 `apt-get install -y golang-go` (.ci/run does)"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The rows of `pprof -top`: (flat, cum, name).
fn top_rows(text: &str) -> Vec<(i64, i64, String)> {
    text.lines()
        .filter_map(|line| {
            let mut rest = line.trim_start();
            let mut cols = Vec::new();
            for _ in 0..5 {
                let end = rest.find(char::is_whitespace)?;
                cols.push(&rest[..end]);
                rest = rest[end..].trim_start();
            }
            Some((
                cols[0].parse().ok()?,
                cols[3].parse().ok()?,
                rest.to_string(),
            ))
        })
        .collect()
}

#[tokio::test]
async fn pprof_tasks_profile_reads_in_go_tool_pprof() {
    let demo = Demo::start(&["--fault", "S2"]);
    let site = site_of(FILE, "// fault site: S2 request");
    demo.wait_live(&site, IGNORED as u64).await;

    let resp = fetch(&demo, "").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        resp.headers()["content-disposition"],
        "attachment; filename=\"tasks.pb.gz\""
    );
    let body = resp.bytes().await.unwrap();
    let p = decode(&body);
    let s = |i: i64| p.string_table[i as usize].as_str();
    assert_eq!(p.string_table[0], "");
    let st = &p.sample_type[0];
    assert_eq!((s(st.r#type), s(st.unit)), ("tasks", "count"));
    assert!(p.time_nanos > 0);
    let root = format!("spawned at {site}");
    let s2 = p
        .sample
        .iter()
        .find(|x| {
            let f = functions(&p, &x.location_id);
            x.value == [IGNORED]
                && f.last() == Some(&root)
                && f.first().is_some_and(|leaf| leaf.contains("oneshot"))
        })
        .unwrap_or_else(|| {
            let all: Vec<_> = p
                .sample
                .iter()
                .map(|x| (x.value.clone(), functions(&p, &x.location_id)))
                .collect();
            panic!("no sample of {IGNORED} from {root} waiting on a oneshot: {all:#?}")
        });
    let label = &s2.label[0];
    assert_eq!((s(label.key), s(label.str)), ("site", site.as_str()));

    // The real pprof reads it: per function, flat = tasks waiting right there.
    let scratch = TempDir::new("pprof");
    let path = scratch.0.join("tasks.pb.gz");
    std::fs::write(&path, &body).unwrap();
    let file = path.to_str().unwrap();
    let top = go_pprof(&scratch, &["-top", "-sample_index=0", file]);
    let rows = top_rows(&top);
    assert!(
        rows.iter()
            .any(|(_, cum, name)| *cum == IGNORED && *name == root),
        "pprof -top has no row with cum {IGNORED} for {root:?}:\n{top}"
    );
    // Other tasks of the demo wait on oneshots too; focused on the S2 site, the oneshot
    // leaf holds exactly its 10 tasks.
    let focus = format!("-focus=^{}$", root.replace('.', "\\."));
    let top = go_pprof(&scratch, &["-top", "-sample_index=0", &focus, file]);
    let rows = top_rows(&top);
    assert!(
        rows.iter()
            .any(|(flat, _, name)| *flat == IGNORED && name.contains("oneshot")),
        "pprof -top {focus} has no row with flat {IGNORED} for a oneshot leaf:\n{top}"
    );
    assert_eq!(
        rows.iter().map(|r| r.0).sum::<i64>(),
        IGNORED,
        "focused on one site, the flat counts add up to its tasks:\n{top}"
    );

    // site= keeps only that site's tasks.
    let resp = fetch(&demo, &format!("?site={site}&timeout=5")).await;
    assert_eq!(resp.status(), 200);
    let p = decode(&resp.bytes().await.unwrap());
    let values: Vec<_> = p.sample.iter().map(|x| x.value.clone()).collect();
    assert_eq!(values, [vec![IGNORED]]);

    // Registry only: no await points, the spawn site alone.
    let p = decode(&fetch(&demo, "?trace=0").await.bytes().await.unwrap());
    let s2 = p
        .sample
        .iter()
        .find(|x| functions(&p, &x.location_id) == [root.clone()])
        .expect("a registry-only sample for the S2 site");
    assert_eq!(s2.value, [IGNORED]);

    // Parameters of the text dump do not apply.
    for query in ["?debug=1", "?format=json", "?timeout=0", "?bogus=1"] {
        let resp = fetch(&demo, query).await;
        assert_eq!(resp.status(), 400, "{query}");
    }
}

/// `/debug/pprof/mutex` with fault S6 on: `go tool pprof` reads the contention profile and
/// charges the delay to the handlers' acquire site, under the session cache lock.
#[tokio::test]
async fn mutex_profile_opens_in_go_tool_pprof_with_the_hot_lock() {
    let demo = Demo::start(&[]);
    let file = "demo-service/src/faults/s6_hot_mutex.rs";
    let site = common::acquire_site(file, "// lock acquire: S6 request");
    demo.fault_on("S6").await;
    let row = demo.wait_lock("session cache", |r| r.contended >= 20).await;
    let body = demo
        .client
        .get(format!("{}/debug/pprof/mutex", demo.exporter))
        .send()
        .await
        .expect("the exporter answers");
    assert_eq!(body.status(), 200);
    let gz = body.bytes().await.unwrap();
    let p = decode(&gz);
    let types: Vec<&str> = p
        .sample_type
        .iter()
        .map(|t| p.string_table[t.r#type as usize].as_str())
        .collect();
    assert_eq!(types, ["contentions", "delay"]);
    let sample = p
        .sample
        .iter()
        .find(|s| functions(&p, &s.location_id)[0] == format!("held at {site}"))
        .unwrap_or_else(|| panic!("no sample for {site}: {p:#?}"));
    assert_eq!(
        functions(&p, &sample.location_id)[1],
        format!("lock {}", row.lock)
    );
    assert!(sample.value[0] >= 20 && sample.value[1] > 0, "{sample:?}");

    let scratch = TempDir::new("pprof-mutex");
    let path = scratch.0.join("mutex.pb.gz");
    std::fs::write(&path, &gz).unwrap();
    let top = go_pprof(
        &scratch,
        &["-top", "-sample_index=delay", path.to_str().unwrap()],
    );
    assert!(top.contains(&format!("held at {site}")), "{top}");
    assert!(top.contains("Type: delay"), "{top}");
    let bad = demo
        .client
        .get(format!("{}/debug/pprof/mutex?x=1", demo.exporter))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
