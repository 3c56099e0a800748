//! Mapping console-subscriber updates onto taskscope's model, from hand-built updates shaped
//! like console-subscriber 0.5 sends them: exact counts per site, idle ages, lost wakers,
//! task removal, locks, and what happens with incomplete or inconsistent input.

use std::time::Duration;

use console_api as api;
use console_api::field::{Name, Value};
use console_api::instrument::Update;
use taskscope::LeakSettings;
use taskscope::model::{Evidence, FindingKind, LockKind, LockMode, Severity, TaskState};
use taskscope_tui::console::to_model::{report, snapshot};
use taskscope_tui::console::tracker::{MAX_TASKS, Tracker};

/// The service's clock at `secs` (a fixed origin: nothing depends on this machine's time).
fn ts(secs: f64) -> prost_types::Timestamp {
    let base = 1_700_000_000i64;
    prost_types::Timestamp {
        seconds: base + secs.floor() as i64,
        nanos: ((secs - secs.floor()) * 1e9).round() as i32,
    }
}

fn field(name: &str, value: Value) -> api::Field {
    api::Field {
        name: Some(Name::StrName(name.into())),
        value: Some(value),
        metadata_id: Some(api::MetaId { id: 1 }),
    }
}

fn loc(file: &str, line: u32, col: u32) -> Option<api::Location> {
    Some(api::Location {
        file: Some(file.into()),
        module_path: None,
        line: Some(line),
        column: Some(col),
    })
}

/// A task as console announces it: its span id, tokio's id in `task.id`, its location.
fn task(console_id: u64, tokio_id: u64, file: &str, line: u32, col: u32) -> api::tasks::Task {
    api::tasks::Task {
        id: Some(api::Id { id: console_id }),
        metadata: Some(api::MetaId { id: 1 }),
        kind: api::tasks::task::Kind::Spawn as i32,
        fields: vec![
            field("kind", Value::StrVal("task".into())),
            field("task.id", Value::U64Val(tokio_id)),
        ],
        parents: vec![],
        location: loc(file, line, col),
    }
}

/// Stats of a task: spawned at `created`, `polls` polls, the latest from `start` to `end`
/// (`end` None while running), `wakers` alive, woken last at `wake`.
#[derive(Clone, Copy, Default)]
struct S {
    created: f64,
    polls: u64,
    start: Option<f64>,
    end: Option<f64>,
    first: Option<f64>,
    wakers: u64,
    wake: Option<f64>,
    dropped: Option<f64>,
    self_wakes: u64,
}

fn stats(s: S) -> api::tasks::Stats {
    api::tasks::Stats {
        created_at: Some(ts(s.created)),
        dropped_at: s.dropped.map(ts),
        wakes: u64::from(s.wake.is_some()),
        waker_clones: s.wakers + 5,
        waker_drops: 5,
        last_wake: s.wake.map(ts),
        poll_stats: Some(api::PollStats {
            polls: s.polls,
            first_poll: s.first.or(s.start).map(ts),
            last_poll_started: s.start.map(ts),
            last_poll_ended: s.end.map(ts),
            busy_time: Some(prost_types::Duration {
                seconds: 0,
                nanos: 1_000_000 * s.polls as i32,
            }),
        }),
        self_wakes: s.self_wakes,
        scheduled_time: None,
    }
}

fn update(now: f64, new_tasks: Vec<api::tasks::Task>, st: Vec<(u64, S)>) -> Update {
    Update {
        now: Some(ts(now)),
        task_update: Some(api::tasks::TaskUpdate {
            new_tasks,
            stats_update: st.into_iter().map(|(id, s)| (id, stats(s))).collect(),
            dropped_events: 0,
        }),
        resource_update: None,
        async_op_update: None,
        new_metadata: None,
    }
}

/// An idle task polled once, `polls` times, its latest poll from `start` to `start+0.001`.
fn idle(created: f64, start: f64, wakers: u64) -> S {
    S {
        created,
        polls: 1,
        start: Some(start),
        end: Some(start + 0.001),
        first: Some(start),
        wakers,
        ..S::default()
    }
}

fn settings(idle_floor_secs: u64) -> LeakSettings {
    LeakSettings {
        idle_floor: Duration::from_secs(idle_floor_secs),
        ..LeakSettings::default()
    }
}

const URL: &str = "http://127.0.0.1:6669";

#[test]
fn counts_per_site_and_ended_tasks_are_removed() {
    let mut t = Tracker::new();
    // First update: console's whole state: 3 tasks at a.rs, 2 at b.rs, one of b's
    // already ended (console keeps ended tasks for an hour and sends them too).
    t.apply(update(
        10.0,
        vec![
            task(101, 1, "src/a.rs", 10, 5),
            task(102, 2, "src/a.rs", 10, 5),
            task(103, 3, "src/a.rs", 10, 5),
            task(201, 4, "src/b.rs", 20, 9),
            task(202, 5, "src/b.rs", 20, 9),
        ],
        vec![
            (101, idle(1.0, 1.0, 1)),
            (102, idle(1.0, 1.0, 1)),
            (103, idle(1.0, 1.0, 1)),
            (201, idle(2.0, 2.0, 1)),
            (
                202,
                S {
                    dropped: Some(3.0),
                    ..idle(2.0, 2.0, 0)
                },
            ),
        ],
    ));
    let snap = snapshot(&t, &settings(120), URL);
    let rows: Vec<_> = snap
        .sites
        .iter()
        .map(|r| (r.site.as_str(), r.live, r.spawned, r.completed))
        .collect();
    assert_eq!(
        rows,
        [("src/a.rs:10:5", 3, 3, 0), ("src/b.rs:20:9", 1, 2, 1)]
    );
    assert_eq!(t.tasks.len(), 4, "the ended task is not kept");
    assert_eq!(snap.tasks_total, 4);

    // Next update: one of a's ends, a new one at b.rs starts.
    t.apply(update(
        11.0,
        vec![task(203, 6, "src/b.rs", 20, 9)],
        vec![
            (
                102,
                S {
                    polls: 2,
                    start: Some(10.5),
                    end: Some(10.6),
                    dropped: Some(10.6),
                    ..idle(1.0, 1.0, 0)
                },
            ),
            (203, idle(10.8, 10.8, 1)),
        ],
    ));
    let snap = snapshot(&t, &settings(120), URL);
    let rows: Vec<_> = snap
        .sites
        .iter()
        .map(|r| (r.site.as_str(), r.live, r.spawned, r.completed))
        .collect();
    assert_eq!(
        rows,
        [("src/a.rs:10:5", 2, 3, 1), ("src/b.rs:20:9", 2, 3, 1)]
    );
    assert!(!t.tasks.contains_key(&102));
    // Task rows carry tokio's ids, oldest first.
    let ids: Vec<u64> = snap.tasks.iter().map(|t| t.id).collect();
    assert_eq!(ids, [1, 3, 4, 6]);
    // The polls of the ended task stay in its site's count: 1 + 1 live, 2 ended.
    assert_eq!(snap.sites[0].polls, 4);
}

#[test]
fn idle_ages_and_running_tasks() {
    let mut t = Tracker::new();
    t.apply(update(
        100.0,
        vec![
            task(1, 11, "src/x.rs", 1, 1),
            task(2, 12, "src/x.rs", 1, 1),
            task(3, 13, "src/x.rs", 1, 1),
        ],
        vec![
            // Spawned at 80, last polled at 90: idle 10 s, age 20 s.
            (1, idle(80.0, 90.0, 1)),
            // In a poll since 99.5.
            (
                2,
                S {
                    created: 95.0,
                    polls: 3,
                    start: Some(99.5),
                    end: Some(99.0),
                    first: Some(95.0),
                    wakers: 1,
                    ..S::default()
                },
            ),
            // Never polled: idle since spawn.
            (
                3,
                S {
                    created: 97.0,
                    ..S::default()
                },
            ),
        ],
    ));
    let snap = snapshot(&t, &settings(120), URL);
    let rows: Vec<_> = snap
        .tasks
        .iter()
        .map(|r| (r.id, r.state, r.age_seconds, r.idle_seconds, r.polls))
        .collect();
    assert_eq!(
        rows,
        [
            (11, TaskState::Idle, 20.0, 10.0, 1),
            (12, TaskState::Running, 5.0, 0.0, 3),
            (13, TaskState::Idle, 3.0, 3.0, 0),
        ]
    );
    assert_eq!(snap.sites[0].oldest_idle_seconds, 10.0);
    // Ages follow console's clock: a later update with nothing new ages them.
    t.apply(update(105.0, vec![], vec![]));
    let snap = snapshot(&t, &settings(120), URL);
    assert_eq!(snap.tasks[0].idle_seconds, 15.0);
    assert_eq!(snap.tasks[0].age_seconds, 25.0);
}

#[test]
fn lost_wakers_are_idle_tasks_with_no_waker_left() {
    let mut t = Tracker::new();
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(task(i, 100 + i, "src/gate.rs", 7, 13));
    }
    t.apply(update(
        50.0,
        tasks,
        vec![
            // Lost: idle 10 s, no waker.
            (0, idle(30.0, 40.0, 0)),
            (1, idle(30.0, 45.0, 0)),
            // Holds its waker: idle, not lost.
            (2, idle(30.0, 40.0, 1)),
            // No waker, but woken since its poll: in a run queue.
            (
                3,
                S {
                    wake: Some(46.0),
                    ..idle(30.0, 40.0, 0)
                },
            ),
            // No waker for only half a second: maybe between two wakers.
            (4, idle(30.0, 49.5, 0)),
            // Never polled: runnable, not lost.
            (
                5,
                S {
                    created: 30.0,
                    ..S::default()
                },
            ),
        ],
    ));
    let r = report(&t, &settings(120), URL);
    let lost: Vec<_> = r
        .snapshot
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::LostWaker)
        .collect();
    assert_eq!(lost.len(), 1, "{:#?}", r.snapshot.findings);
    let f = lost[0];
    assert_eq!(
        (f.site.as_str(), f.count, f.severity),
        ("src/gate.rs:7:13", 2, Severity::Critical)
    );
    assert_eq!(
        f.evidence,
        Evidence::LostWaker {
            task_ids: vec![100, 101],
            oldest_idle_seconds: 10.0
        }
    );
    assert!(
        f.summary
            .starts_with("2 tasks spawned at src/gate.rs:7:13 have lost their waker")
    );
    // The idle ones without a waker, past the minimum or not, are counted in the extras.
    assert_eq!(r.console.sites[0].idle_without_waker, 3);
    let wakers: Vec<(u64, i64)> = r.console.tasks.iter().map(|t| (t.id, t.wakers)).collect();
    assert_eq!(wakers.len(), 6);
    assert!(wakers.contains(&(102, 1)) && wakers.contains(&(100, 0)));
    // No site with completed tasks: no idle-too-long finding, whatever the floor.
    let r = report(&t, &settings(1), URL);
    assert!(
        r.snapshot
            .findings
            .iter()
            .all(|f| f.kind == FindingKind::LostWaker)
    );
}

#[test]
fn idle_too_long_uses_the_agents_rule() {
    let mut t = Tracker::new();
    t.apply(update(
        0.5,
        vec![
            task(1, 1, "src/req.rs", 3, 9),
            task(2, 2, "src/req.rs", 3, 9),
            task(3, 3, "src/req.rs", 3, 9),
        ],
        vec![
            (
                1,
                S {
                    created: 0.0,
                    ..S::default()
                },
            ),
            (
                2,
                S {
                    created: 0.0,
                    ..S::default()
                },
            ),
            (
                3,
                S {
                    created: 0.0,
                    ..S::default()
                },
            ),
        ],
    ));
    // One poll each since the last update: the first-poll delays (0.1 s) are waits seen.
    t.apply(update(
        1.0,
        vec![],
        vec![
            (
                1,
                S {
                    first: Some(0.1),
                    ..idle(0.0, 0.1, 1)
                },
            ),
            (
                2,
                S {
                    first: Some(0.1),
                    ..idle(0.0, 0.1, 1)
                },
            ),
            (
                3,
                S {
                    dropped: Some(0.2),
                    first: Some(0.1),
                    ..idle(0.0, 0.1, 0)
                },
            ),
        ],
    ));
    t.apply(update(9.0, vec![], vec![]));
    let snap = snapshot(&t, &settings(2), URL);
    let row = &snap.sites[0];
    assert_eq!((row.live, row.completed), (2, 1));
    assert_eq!(row.longest_wait_seconds, 0.1);
    assert_eq!(row.first_poll_delay_max_seconds, 0.1);
    // max(floor 2 s, 4 x 0.1 s) = 2 s; both live tasks idle 8.9 s.
    assert_eq!(
        (row.idle_threshold_seconds, row.idle_over_threshold),
        (2.0, 2)
    );
    let f = &snap.findings[0];
    assert_eq!(
        (f.kind, f.count, f.severity),
        (FindingKind::IdleTooLong, 2, Severity::Warning)
    );
    assert_eq!(
        f.evidence,
        Evidence::IdleTooLong {
            threshold_seconds: 2.0,
            derived: true,
            longest_wait_seconds: 0.1,
            oldest_idle_seconds: 8.9,
            live: 2
        }
    );
    // With the default floor (120 s) nothing is flagged yet.
    assert!(
        snapshot(&t, &LeakSettings::default(), URL)
            .findings
            .is_empty()
    );
}

#[test]
fn mutex_waiters_and_held_state_become_a_lock_row() {
    let mut t = Tracker::new();
    let mut u = update(
        20.0,
        vec![task(7, 70, "src/w.rs", 4, 4), task(8, 80, "src/w.rs", 4, 4)],
        vec![(7, idle(1.0, 12.0, 1)), (8, idle(1.0, 12.0, 1))],
    );
    u.resource_update = Some(api::resources::ResourceUpdate {
        new_resources: vec![
            api::resources::Resource {
                id: Some(api::Id { id: 500 }),
                metadata: None,
                concrete_type: "Mutex".into(),
                kind: None,
                location: loc("src/pool.rs", 30, 17),
                parent_resource_id: None,
                is_internal: false,
            },
            // The Mutex's internal semaphore and a timer: not lock rows.
            api::resources::Resource {
                id: Some(api::Id { id: 501 }),
                concrete_type: "Semaphore".into(),
                location: loc("src/pool.rs", 30, 17),
                is_internal: true,
                ..Default::default()
            },
            api::resources::Resource {
                id: Some(api::Id { id: 502 }),
                concrete_type: "Sleep".into(),
                location: loc("src/t.rs", 1, 1),
                ..Default::default()
            },
        ],
        stats_update: [(
            500,
            api::resources::Stats {
                created_at: Some(ts(0.0)),
                dropped_at: None,
                attributes: vec![api::Attribute {
                    field: Some(field("locked", Value::BoolVal(true))),
                    unit: None,
                }],
            },
        )]
        .into(),
        new_poll_ops: vec![],
        dropped_events: 0,
    });
    u.async_op_update = Some(api::async_ops::AsyncOpUpdate {
        new_async_ops: vec![api::async_ops::AsyncOp {
            id: Some(api::Id { id: 900 }),
            metadata: None,
            source: "Mutex::lock".into(),
            parent_async_op_id: None,
            resource_id: Some(api::Id { id: 500 }),
        }],
        stats_update: [(
            900,
            api::async_ops::Stats {
                created_at: Some(ts(12.0)),
                dropped_at: None,
                task_id: Some(api::Id { id: 8 }),
                poll_stats: None,
                attributes: vec![],
            },
        )]
        .into(),
        dropped_events: 0,
    });
    t.apply(u);
    let snap = snapshot(&t, &settings(120), URL);
    assert_eq!(snap.locks.len(), 1, "{:#?}", snap.locks);
    let l = &snap.locks[0];
    assert_eq!(
        (l.lock.as_str(), l.kind, l.instances, l.more_holders),
        ("src/pool.rs:30:17", LockKind::Mutex, 1, 1)
    );
    assert!(l.holders.is_empty(), "console does not say who holds it");
    assert_eq!(l.waiters.len(), 1);
    let w = &l.waiters[0];
    assert_eq!(
        (w.task, w.task_site.as_deref(), w.mode, w.waiting_seconds),
        (Some(80), Some("src/w.rs:4:4"), LockMode::Exclusive, 8.0)
    );

    // The lock op finishes and the mutex is released and then dropped.
    let mut u = update(21.0, vec![], vec![]);
    u.async_op_update = Some(api::async_ops::AsyncOpUpdate {
        stats_update: [(
            900,
            api::async_ops::Stats {
                dropped_at: Some(ts(20.5)),
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    });
    t.apply(u);
    assert!(
        snapshot(&t, &settings(120), URL).locks[0]
            .waiters
            .is_empty()
    );
    let mut u = update(22.0, vec![], vec![]);
    u.resource_update = Some(api::resources::ResourceUpdate {
        stats_update: [(
            500,
            api::resources::Stats {
                dropped_at: Some(ts(21.5)),
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    });
    t.apply(u);
    assert!(snapshot(&t, &settings(120), URL).locks.is_empty());
}

#[test]
fn fields_named_by_index_registry_paths_and_blocking_tasks() {
    let mut t = Tracker::new();
    let mut u = update(5.0, vec![], vec![]);
    u.new_metadata = Some(api::RegisterMetadata {
        metadata: vec![api::register_metadata::NewMetadata {
            id: Some(api::MetaId { id: 9 }),
            metadata: Some(api::Metadata {
                name: "runtime.spawn".into(),
                field_names: vec!["kind".into(), "task.name".into(), "task.id".into()],
                ..Default::default()
            }),
        }],
    });
    let by_index = |i: u64, value: Value| api::Field {
        name: Some(Name::NameIdx(i)),
        value: Some(value),
        metadata_id: Some(api::MetaId { id: 9 }),
    };
    let mut named = task(
        1,
        0,
        "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hyper-1.0.0/src/x.rs",
        5,
        6,
    );
    named.fields = vec![
        by_index(0, Value::StrVal("task".into())),
        by_index(1, Value::DebugVal("\"conn\"".into())),
        by_index(2, Value::U64Val(42)),
    ];
    let mut blocking = task(2, 43, "src/b.rs", 1, 1);
    blocking
        .fields
        .push(field("kind", Value::StrVal("blocking".into())));
    let mut block_on = task(4, 45, "src/main.rs", 9, 9);
    block_on
        .fields
        .push(field("kind", Value::StrVal("block_on".into())));
    let mut blocking_kind = task(3, 44, "src/b.rs", 1, 1);
    blocking_kind.kind = api::tasks::task::Kind::Blocking as i32;
    u.task_update = Some(api::tasks::TaskUpdate {
        new_tasks: vec![named, blocking, blocking_kind, block_on],
        stats_update: [
            (1, stats(idle(1.0, 2.0, 1))),
            // Stats for a task never announced: ignored.
            (77, stats(idle(1.0, 2.0, 1))),
        ]
        .into(),
        dropped_events: 3,
    });
    t.apply(u);
    let r = report(&t, &settings(120), URL);
    assert_eq!(r.snapshot.sites.len(), 1);
    assert_eq!(r.snapshot.sites[0].site, "hyper-1.0.0/src/x.rs:5:6");
    assert_eq!(r.snapshot.tasks[0].id, 42);
    assert_eq!(r.console.tasks[0].name.as_deref(), Some("conn"));
    assert_eq!(r.console.blocking_tasks, 3);
    assert_eq!(r.console.dropped_events, [3, 0, 0]);
    assert_eq!(t.unknown_stats, 1);
    // The JSON is a snapshot, with console's extras beside it.
    let json = serde_json::to_string(&r).unwrap();
    let back: taskscope::model::Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r.snapshot);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["console"]["tasks"][0]["name"], "conn");
}

#[test]
fn empty_and_garbage_updates_do_not_panic() {
    let mut t = Tracker::new();
    t.apply(Update::default());
    let snap = snapshot(&t, &settings(120), URL);
    assert!(snap.sites.is_empty() && snap.tasks.is_empty());
    // Missing ids, missing location, timestamps out of range, waker drops beyond clones.
    let mut weird = task(5, 5, "", 0, 0);
    weird.location = None;
    let no_id = api::tasks::Task {
        id: None,
        ..task(6, 6, "src/a.rs", 1, 1)
    };
    let mut s = stats(idle(1.0, 2.0, 0));
    s.waker_drops = 1_000;
    s.created_at = Some(prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: -5,
    });
    t.apply(Update {
        now: Some(prost_types::Timestamp {
            seconds: i64::MIN,
            nanos: i32::MAX,
        }),
        task_update: Some(api::tasks::TaskUpdate {
            new_tasks: vec![weird, no_id],
            stats_update: [(5, s)].into(),
            dropped_events: u64::MAX,
        }),
        ..Update::default()
    });
    let r = report(&t, &settings(120), URL);
    assert_eq!(r.snapshot.sites[0].site, "(unknown location)");
    assert_eq!(r.snapshot.sites[0].live, 1);
    assert_eq!(r.snapshot.tasks[0].age_seconds, 0.0);
}

#[test]
fn tasks_beyond_the_cap_are_counted_not_kept() {
    let mut t = Tracker::new();
    let n = MAX_TASKS as u64 + 10;
    let tasks: Vec<_> = (0..n).map(|i| task(i, i, "src/storm.rs", 1, 1)).collect();
    t.apply(update(1.0, tasks, vec![]));
    assert_eq!(t.tasks.len(), MAX_TASKS);
    assert_eq!(t.tasks_turned_away, 10);
    let snap = snapshot(&t, &settings(120), URL);
    assert_eq!(snap.sites[0].live, MAX_TASKS as u64);
    let cap = snap
        .agent
        .caps
        .iter()
        .find(|c| c.cap == "console_tasks")
        .unwrap();
    assert_eq!((cap.used, cap.dropped), (MAX_TASKS as u64, 10));
    assert_eq!(snap.tasks.len(), 100_000, "the listing is capped");
    assert_eq!(snap.tasks_total, MAX_TASKS as u64);
}

#[test]
fn a_site_whose_live_count_keeps_rising_is_reported_as_growth() {
    let mut t = Tracker::new();
    // One task more every second at one site for 70 s, none ending; a second site spawns
    // and ends one task a second (busy, not growing).
    let mut id = 0;
    for sec in 0..=70u64 {
        let now = sec as f64;
        id += 1;
        let mut new = vec![task(id, id, "src/leaky.rs", 7, 9)];
        let mut st = vec![(id, idle(now, now, 1))];
        id += 1;
        new.push(task(id, id, "src/busy.rs", 3, 5));
        let mut done = idle(now, now, 1);
        done.dropped = Some(now + 0.5);
        st.push((id, done));
        t.apply(update(now + 0.9, new, st));
    }
    let snap = snapshot(&t, &settings(120), "http://console");
    let growth: Vec<_> = snap
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Growth)
        .collect();
    assert_eq!(growth.len(), 1, "{:?}", snap.findings);
    let g = growth[0];
    assert_eq!(
        (g.site.as_str(), g.severity),
        ("src/leaky.rs:7:9", Severity::Warning)
    );
    // Over the 60 s window (samples with 11 to 71 live) the low-water mark of the second
    // half (41) is 30 above the first half's (11): the same evidence the agent gives.
    assert_eq!(g.count, 30);
    match &g.evidence {
        Evidence::Growth {
            rate_per_second,
            floor_before,
            floor_after,
            live,
            ..
        } => {
            assert_eq!((*floor_before, *floor_after, *live), (11, 41, 71));
            assert!((rate_per_second - 1.0).abs() < 1e-6, "{rate_per_second}");
        }
        other => panic!("unexpected evidence {other:?}"),
    }
    let leaky = snap
        .sites
        .iter()
        .find(|s| s.site == "src/leaky.rs:7:9")
        .unwrap();
    assert_eq!(leaky.live, 71);
    assert!((leaky.live_trend_per_second - 1.0).abs() < 1e-6);
}
