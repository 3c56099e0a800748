//! `taskscope dump`'s pure parts: URL building, text rendering and the `--base` diff, on
//! fixtures. The module is the binary's own source, compiled into this test.

#[allow(dead_code)] // `run` and the network code are exercised by the binary, not here
#[path = "../src/dump_cli.rs"]
mod dump_cli;

use dump_cli::{DumpArgs, GroupDelta, diff, dump_from_value, dump_url, read_dump_file};
use taskscope::model::{Dump, DumpGroup, DumpSource, DumpTask, Frame, Spread, TaskState};

fn frame(function: &str, file: &str, line: u32) -> Frame {
    Frame {
        function: function.into(),
        file: file.into(),
        line,
    }
}

fn group(site: &str, leaf: &str, count: u64) -> DumpGroup {
    DumpGroup {
        site: site.into(),
        stacks: vec![vec![
            frame(leaf, "lib.rs", 7),
            frame("app::run", "src/app.rs", 3),
        ]],
        count,
        idle_seconds: Spread {
            min: 0.5,
            median: 1.0,
            max: 2.25,
        },
        age_seconds: Spread {
            min: 1.0,
            median: 2.0,
            max: 3.0,
        },
        task_ids: vec![1, 2],
    }
}

fn dump(groups: Vec<DumpGroup>) -> Dump {
    Dump {
        schema_version: 1,
        source: DumpSource::Traced,
        complete: true,
        total_tasks: groups.iter().map(|g| g.count).sum(),
        took_seconds: 0.0021,
        paused_seconds: 0.0005,
        groups,
        ..Default::default()
    }
}

fn args(url: &str) -> DumpArgs {
    DumpArgs {
        url: url.into(),
        debug: 1,
        json: false,
        output: None,
        timeout: None,
        site: None,
        registry_only: false,
        base: None,
    }
}

#[test]
fn url_carries_the_options() {
    let mut a = args("x");
    assert_eq!(
        dump_url("http://127.0.0.1:6060", &a).unwrap(),
        "http://127.0.0.1:6060/debug/taskscope/dump?debug=1&format=json"
    );
    a.debug = 2;
    a.timeout = Some(1.5);
    a.registry_only = true;
    a.site = Some("src/a b.rs:1:2&x".into());
    assert_eq!(
        dump_url("http://h:1", &a).unwrap(),
        "http://h:1/debug/taskscope/dump?debug=2&format=json&timeout=1.5&trace=0\
         &site=src%2Fa+b.rs%3A1%3A2%26x"
    );
}

#[test]
fn groups_render_like_the_exporter() {
    let mut d = dump(vec![group(
        "src/a.rs:1:5",
        "tokio::sync::oneshot::Receiver",
        10,
    )]);
    d.notes = vec!["a note".into()];
    d.groups.push(DumpGroup {
        site: "src/b.rs:2:3".into(),
        count: 1,
        ..Default::default()
    });
    d.total_tasks = 11;
    let text = dump_cli::render_groups(&d);
    assert_eq!(
        text,
        "task dump: 11 tasks in 2 groups (traced), taken in 2.1 ms, runtime paused 0.5 ms\n\
         note: a note\n\
         \n\
         10 @ src/a.rs:1:5\tidle min/median/max 0.500/1.000/2.250s\tage 1.000/2.000/3.000s\n\
         #\ttokio::sync::oneshot::Receiver\tlib.rs:7\n\
         #\tapp::run\tsrc/app.rs:3\n\
         \n\
         1 @ src/b.rs:2:3\tidle min/median/max 0.000/0.000/0.000s\tage 0.000/0.000/0.000s\n\
         #\t(no await point: registry only, or not traced)\n\
         \n"
    );
}

#[test]
fn tasks_render_every_task() {
    let mut d = dump(vec![]);
    d.complete = false;
    d.source = DumpSource::Registry;
    d.total_tasks = 1;
    d.tasks = vec![DumpTask {
        id: 42,
        site: "src/a.rs:1:5".into(),
        state: TaskState::Running,
        age_seconds: 1.5,
        idle_seconds: 0.0,
        polls: 3,
        stacks: vec![],
    }];
    let text = dump_cli::render_tasks(&d);
    assert!(
        text.starts_with("task dump: 1 tasks in 0 groups (registry only, INCOMPLETE)"),
        "{text}"
    );
    assert!(
        text.contains(
            "task 42 [running, idle 0.000s, age 1.500s, 3 polls] spawned at src/a.rs:1:5\n\
             #\t(no await point: registry only, or not traced)\n"
        ),
        "{text}"
    );
}

#[test]
fn diff_shows_growth_first_then_drops() {
    let base = dump(vec![
        group("src/a.rs:1:5", "oneshot", 2),
        group("src/b.rs:1:5", "sleep", 5),
        group("src/c.rs:1:5", "mpsc", 4),
        group("src/gone.rs:1:5", "mpsc", 1),
    ]);
    let now = dump(vec![
        group("src/a.rs:1:5", "oneshot", 12), // +10
        group("src/b.rs:1:5", "sleep", 5),    // unchanged: left out
        group("src/c.rs:1:5", "mpsc", 1),     // -3
        group("src/new.rs:1:5", "notify", 3), // +3
        group("src/a.rs:1:5", "mpsc", 1),     // same site, other stack: +1
    ]);
    let d = diff(&base, &now);
    let summary: Vec<(&str, &str, i64)> = d
        .iter()
        .map(|g| (g.site.as_str(), g.stacks[0][0].function.as_str(), g.delta))
        .collect();
    assert_eq!(
        summary,
        [
            ("src/a.rs:1:5", "oneshot", 10),
            ("src/new.rs:1:5", "notify", 3),
            ("src/a.rs:1:5", "mpsc", 1),
            ("src/c.rs:1:5", "mpsc", -3),
            ("src/gone.rs:1:5", "mpsc", -1),
        ]
    );
    assert_eq!((d[0].base, d[0].now), (2, 12));
    assert_eq!((d[4].base, d[4].now), (1, 0));

    let text = dump_cli::render_diff(&base, &now, &d);
    assert!(
        text.starts_with(
            "task dump diff: 22 tasks now, 12 in the base (+10); 3 groups grew, 2 shrank\n\n\
             +10 @ src/a.rs:1:5\t(2 -> 12)\n\
             #\toneshot\tlib.rs:7\n"
        ),
        "{text}"
    );
    assert!(text.contains("-3 @ src/c.rs:1:5\t(4 -> 1)\n"), "{text}");
    assert!(!text.contains("src/b.rs"), "{text}");

    let json: serde_json::Value =
        serde_json::from_str(&dump_cli::diff_json(&base, &now).unwrap()).unwrap();
    assert_eq!(json["total_tasks"], 22);
    assert_eq!(json["groups"][0]["delta"], 10);
    assert_eq!(json["groups"][0]["stacks"][0][0]["function"], "oneshot");
}

#[test]
fn identical_dumps_have_no_diff() {
    let d = dump(vec![group("src/a.rs:1:5", "oneshot", 2)]);
    let deltas: Vec<GroupDelta> = diff(&d, &d);
    assert!(deltas.is_empty());
    assert_eq!(
        dump_cli::render_diff(&d, &d, &deltas),
        "task dump diff: 2 tasks now, 2 in the base (+0); 0 groups grew, 0 shrank\n\n"
    );
}

#[test]
fn base_files_are_checked() {
    let dir = std::env::temp_dir().join(format!("taskscope-dump-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    let original = dump(vec![group("src/a.rs:1:5", "oneshot", 2)]);
    std::fs::write(&good, serde_json::to_string_pretty(&original).unwrap()).unwrap();
    assert_eq!(read_dump_file(&good).unwrap(), original);

    let missing = format!(
        "{:#}",
        read_dump_file(&dir.join("missing.json")).unwrap_err()
    );
    assert!(missing.contains("cannot read the base dump"), "{missing}");
    let not_json = dir.join("text.txt");
    std::fs::write(&not_json, "task dump: 3 tasks").unwrap();
    let e = format!("{:#}", read_dump_file(&not_json).unwrap_err());
    assert!(e.contains("is not JSON"), "{e}");
    let snapshot = dir.join("snapshot.json");
    std::fs::write(&snapshot, r#"{"schema_version":1,"sites":[]}"#).unwrap();
    let e = format!("{:#}", read_dump_file(&snapshot).unwrap_err());
    assert!(e.contains("not a taskscope dump"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);

    let newer = serde_json::json!({"schema_version": 99, "groups": []});
    assert!(dump_from_value(newer).is_err());
}
