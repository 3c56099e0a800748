//! Installing the agent: once per runtime, and no effect on runtimes it was not installed on.

use std::time::Duration;

use taskscope::{Agent, InstallError};

#[test]
fn installing_one_agent_twice_is_an_error_and_counts_stay_single() {
    let agent = Agent::builder().build();
    let mut first = tokio::runtime::Builder::new_multi_thread();
    first.worker_threads(1).enable_all();
    agent.install(&mut first).unwrap();
    let mut second = tokio::runtime::Builder::new_multi_thread();
    second.worker_threads(1).enable_all();
    assert_eq!(
        agent.install(&mut second),
        Err(InstallError::AlreadyInstalled)
    );
    // Also on the same builder again.
    assert_eq!(
        agent.install(&mut first),
        Err(InstallError::AlreadyInstalled)
    );
    assert_eq!(
        InstallError::AlreadyInstalled.to_string(),
        "this taskscope agent is installed on a runtime already; build one agent per runtime"
    );

    let watched = first.build().unwrap();
    let other = second.build().unwrap();
    watched.block_on(async {
        for _ in 0..3 {
            tokio::spawn(async {}).await.unwrap();
        }
    });
    other.block_on(async {
        for _ in 0..4 {
            tokio::spawn(async {}).await.unwrap();
        }
    });
    drop((watched, other));
    let snap = agent.snapshot();
    let spawned: u64 = snap.sites.iter().map(|s| s.spawned).sum();
    assert_eq!(
        spawned, 3,
        "only the watched runtime's tasks: {:?}",
        snap.sites
    );
}

#[test]
fn a_second_agent_on_the_same_builder_replaces_the_first() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    let first = taskscope::install(&mut builder);
    let second = taskscope::install(&mut builder);
    let rt = builder.build().unwrap();
    rt.block_on(async {
        for _ in 0..2 {
            tokio::spawn(async {}).await.unwrap();
        }
    });
    drop(rt);
    let total = |a: &Agent| a.snapshot().sites.iter().map(|s| s.spawned).sum::<u64>();
    assert_eq!((total(&first), total(&second)), (0, 2));
}

#[test]
fn caps_are_reported_with_what_they_turned_away() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    let agent = Agent::builder().site_capacity(2).install(&mut builder);
    let rt = builder.build().unwrap();
    rt.block_on(async {
        // Five distinct sites against a cap of two (the agent's own scheduling probe has a
        // place of its own): three sites' tasks land in the overflow row.
        tokio::spawn(async {}).await.unwrap();
        tokio::spawn(async {}).await.unwrap();
        tokio::spawn(async {}).await.unwrap();
        tokio::spawn(async {}).await.unwrap();
        tokio::spawn(async {}).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    });
    drop(rt);
    let snap = agent.snapshot();
    let sites = snap
        .agent
        .caps
        .iter()
        .find(|c| c.cap == "sites")
        .expect("sites cap listed");
    assert_eq!((sites.capacity, sites.used, sites.dropped), (2, 2, 3));
    assert_eq!(snap.agent.overflow_spawned, 3);
    let locks = snap
        .agent
        .caps
        .iter()
        .find(|c| c.cap == "lock_classes")
        .expect("lock_classes cap listed");
    assert_eq!(locks.capacity, 256);
}
