//! The locks part of a snapshot: one row per lock identity with its counters, holders and
//! waiters, and the lock findings (deadlocks, guards held across `.await`, hot locks).
//! Runs on the reader's thread; the locks themselves only record (see [`crate::sync`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::panic::Location;
use std::sync::Arc;
use std::time::Instant;

use crate::Inner;
use crate::clock::Seconds;
use crate::model::{
    DeadlockStep, Evidence, Finding, FindingKind, HolderDelay, LockHolder, LockKind, LockMode,
    LockRow, LockWaiter, Severity,
};
use crate::sync::state::{self, Class, Instance, class_label, registry};

/// Holders and waiters listed per lock row; the rest are counted.
const MAX_LISTED: usize = 100;

/// A guard whose task has been idle this long is "held across an await".
pub const GUARD_IDLE_THRESHOLD: f64 = 1.0;

/// Every wait of a cycle must be this old to be reported: a cycle that resolves (a waiter
/// granted but not yet polled) is gone by then.
pub const DEADLOCK_MIN_WAIT: f64 = 1.0;

/// Waiting share (seconds of waiting per second) from which a lock is hot.
pub const HOT_LOCK_SHARE: f64 = 0.5;

/// A lock as the wait-for graph sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct GraphLock {
    pub(crate) label: String,
    pub(crate) kind: LockKind,
    /// (task, acquire site, mode)
    pub(crate) holders: Vec<(u64, String, LockMode)>,
    /// (task, queue order, site, mode, seconds waited)
    pub(crate) waiters: Vec<(u64, u64, String, LockMode, f64)>,
}

/// One step of a cycle, by index: the waiting task, the lock, the waiter's index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Step {
    pub(crate) task: u64,
    pub(crate) lock: usize,
    pub(crate) waiter: usize,
}

/// The tasks a waiter waits for: a mutex's holder; for a fair RwLock, a writer waits for
/// every holder, a reader for a writing holder and for writers queued ahead of it.
/// Semaphores are left out: any holder's release may free a waiter, so a cycle through one
/// is not certain.
fn waits_for(lock: &GraphLock, waiter: usize) -> Vec<u64> {
    let (_, seq, _, mode, _) = lock.waiters[waiter];
    match lock.kind {
        LockKind::Mutex | LockKind::BlockingMutex => {
            lock.holders.iter().map(|(t, ..)| *t).collect()
        }
        LockKind::RwLock | LockKind::BlockingRwLock => {
            let mut v: Vec<u64> = lock
                .holders
                .iter()
                .filter(|(_, _, m)| mode == LockMode::Write || *m == LockMode::Write)
                .map(|(t, ..)| *t)
                .collect();
            if mode == LockMode::Read {
                v.extend(
                    lock.waiters
                        .iter()
                        .filter(|(_, s, _, m, _)| *s < seq && *m == LockMode::Write)
                        .map(|(t, ..)| *t),
                );
            }
            v
        }
        _ => Vec::new(),
    }
}

/// Cycles in the wait-for graph whose every wait is at least `min_wait` seconds old, each
/// once, starting at its smallest task id. Tasks outside any task (id 0) are left out.
pub(crate) fn cycles(locks: &[GraphLock], min_wait: f64) -> Vec<Vec<Step>> {
    // task -> (step, tasks it waits for)
    let mut out: HashMap<u64, Vec<(Step, u64)>> = HashMap::new();
    for (li, lock) in locks.iter().enumerate() {
        for (wi, w) in lock.waiters.iter().enumerate() {
            if w.0 == 0 || w.4 < min_wait {
                continue;
            }
            let step = Step {
                task: w.0,
                lock: li,
                waiter: wi,
            };
            for to in waits_for(lock, wi) {
                if to != 0 {
                    out.entry(w.0).or_default().push((step, to));
                }
            }
        }
    }
    let mut found: Vec<Vec<Step>> = Vec::new();
    let mut seen: HashSet<Vec<u64>> = HashSet::new();
    let mut starts: Vec<u64> = out.keys().copied().collect();
    starts.sort_unstable();
    for start in starts {
        // Depth-first from `start`, only through larger ids, so each cycle is found from
        // its smallest task.
        let mut path: Vec<Step> = Vec::new();
        let mut on_path: HashSet<u64> = HashSet::new();
        dfs(
            start,
            start,
            &out,
            &mut path,
            &mut on_path,
            &mut found,
            &mut seen,
        );
    }
    found
}

fn dfs(
    start: u64,
    task: u64,
    out: &HashMap<u64, Vec<(Step, u64)>>,
    path: &mut Vec<Step>,
    on_path: &mut HashSet<u64>,
    found: &mut Vec<Vec<Step>>,
    seen: &mut HashSet<Vec<u64>>,
) {
    if found.len() >= 16 || path.len() > 64 {
        return;
    }
    on_path.insert(task);
    for &(step, to) in out.get(&task).map_or(&[][..], |v| &v[..]) {
        path.push(step);
        if to == start {
            let key: Vec<u64> = path.iter().map(|s| s.task).collect();
            if seen.insert(key) {
                found.push(path.clone());
            }
        } else if to > start && !on_path.contains(&to) {
            dfs(start, to, out, path, on_path, found, seen);
        }
        path.pop();
    }
    on_path.remove(&task);
}

fn label_of(l: Option<&'static Location<'static>>) -> String {
    l.map_or_else(|| "(other)".to_string(), crate::site::label)
}

/// What a snapshot reports of the locks.
pub(crate) fn read(
    inner: &Inner,
    running: &HashSet<u64>,
    secs: &Seconds,
) -> (Vec<LockRow>, Vec<Finding>) {
    let reg = registry();
    let now = Instant::now();
    let coarse_now = state::coarse_now();
    let classes = reg.classes();
    let index: HashMap<*const Class, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (Arc::as_ptr(c), i))
        .collect();
    let mut rows: Vec<LockRow> = classes.iter().map(|c| row_of(c)).collect();
    let mut waiting_now: Vec<Vec<f64>> = vec![Vec::new(); classes.len()];
    let task_site = |task: u64| {
        (task != 0)
            .then(|| inner.tasks.get(task))
            .flatten()
            .map(|slot| inner.sites.label(slot.site).to_string())
    };
    let task_idle = |task: u64| {
        if task == 0 || running.contains(&task) {
            return None;
        }
        inner
            .tasks
            .get(task)
            .map(|slot| secs.since(slot.last_poll.max(slot.spawned)))
    };
    let mut graph: Vec<GraphLock> = Vec::new();
    let mut graph_rows: Vec<usize> = Vec::new();
    let mut instances: Vec<Arc<Instance>> = reg.busy_instances();
    instances.sort_by_key(|i| i.id);
    for inst in &instances {
        let Some(&r) = index.get(&Arc::as_ptr(&inst.class)) else {
            continue;
        };
        let holders = inst.holders();
        let waiters = inst.waiters();
        let row = &mut rows[r];
        row.more_holders += inst
            .extra_holders
            .load(std::sync::atomic::Ordering::Relaxed);
        for h in &holders {
            if row.holders.len() >= MAX_LISTED {
                row.more_holders += 1;
                continue;
            }
            row.holders.push(LockHolder {
                instance: inst.id,
                task: (h.task != 0).then_some(h.task),
                task_site: task_site(h.task),
                site: label_of(h.site),
                mode: h.mode,
                permits: h.permits,
                held_seconds: round(coarse_now.saturating_sub(h.since) as f64 * 1e-9),
                task_idle_seconds: task_idle(h.task).map(round),
            });
        }
        for w in &waiters {
            let waited = now.duration_since(w.since).as_secs_f64();
            waiting_now[r].push(waited);
            if row.waiters.len() >= MAX_LISTED {
                row.more_waiters += 1;
                continue;
            }
            row.waiters.push(LockWaiter {
                instance: inst.id,
                task: (w.task != 0).then_some(w.task),
                task_site: task_site(w.task),
                site: crate::site::label(w.site),
                mode: w.mode,
                permits: w.permits,
                waiting_seconds: round(waited),
            });
        }
        graph.push(GraphLock {
            label: row.lock.clone(),
            kind: inst.class.kind,
            holders: holders
                .iter()
                .map(|h| (h.task, label_of(h.site), h.mode))
                .collect(),
            waiters: waiters
                .iter()
                .map(|w| {
                    (
                        w.task,
                        w.seq,
                        crate::site::label(w.site),
                        w.mode,
                        now.duration_since(w.since).as_secs_f64(),
                    )
                })
                .collect(),
        });
        graph_rows.push(r);
    }
    for (i, c) in classes.iter().enumerate() {
        rows[i].wait_share = round(c.wait_share(now, &waiting_now[i]));
        rows[i]
            .waiters
            .sort_by(|a, b| b.waiting_seconds.total_cmp(&a.waiting_seconds));
    }

    #[cfg(feature = "tokio-resources")]
    if let Some(table) = inner.tokio_resources.get() {
        rows.extend(tokio_rows(table, &task_site, &task_idle, now));
    }
    let mut findings = deadlock_findings(&graph, &task_site);
    findings.extend(guard_findings(&rows));
    findings.extend(hot_findings(&rows));
    rows.sort_by(|a, b| {
        b.wait_share
            .total_cmp(&a.wait_share)
            .then(b.wait_seconds.sum.total_cmp(&a.wait_seconds.sum))
            .then_with(|| a.lock.cmp(&b.lock))
    });
    (rows, findings)
}

/// Rows for tokio's own locks, one per type and creation site.
#[cfg(feature = "tokio-resources")]
fn tokio_rows(
    table: &crate::tokio_sync::Table,
    task_site: &dyn Fn(u64) -> Option<String>,
    task_idle: &dyn Fn(u64) -> Option<f64>,
    now: Instant,
) -> Vec<LockRow> {
    use crate::model::LockSource;
    let state = table.lock();
    let mut rows: Vec<LockRow> = Vec::new();
    let mut index: HashMap<(LockKind, String), usize> = HashMap::new();
    let mut ids: Vec<&u64> = state.resources.keys().collect();
    ids.sort_unstable();
    for id in ids {
        let r = &state.resources[id];
        let i = *index
            .entry((r.kind, r.created_at.clone()))
            .or_insert_with(|| {
                let ty = match r.kind {
                    LockKind::RwLock => "RwLock",
                    LockKind::Semaphore => "Semaphore",
                    _ => "Mutex",
                };
                rows.push(LockRow {
                    lock: format!("tokio::sync::{ty} ({})", r.created_at),
                    kind: r.kind,
                    created_at: r.created_at.clone(),
                    source: LockSource::TokioTracing,
                    ..LockRow::default()
                });
                rows.len() - 1
            });
        let row = &mut rows[i];
        row.instances += 1;
        row.acquisitions += r.acquisitions;
        row.contended += r.contended;
        if r.kind == LockKind::Semaphore {
            row.permits_available =
                Some(row.permits_available.unwrap_or(0) + r.permits.unwrap_or(0));
        }
        let mode = match r.kind {
            LockKind::RwLock if r.write_locked => LockMode::Write,
            LockKind::RwLock => LockMode::Read,
            LockKind::Semaphore => LockMode::Permits,
            _ => LockMode::Exclusive,
        };
        for &t in &r.holders {
            if row.holders.len() >= MAX_LISTED {
                row.more_holders += 1;
                continue;
            }
            row.holders.push(LockHolder {
                instance: *id,
                task: (t != 0).then_some(t),
                task_site: task_site(t),
                site: "(not reported by tokio)".into(),
                mode,
                permits: 1,
                held_seconds: 0.0,
                task_idle_seconds: task_idle(t).map(round),
            });
        }
    }
    let mut ops: Vec<_> = state
        .ops
        .values()
        .filter(|o| o.pending && !o.ready)
        .collect();
    ops.sort_by_key(|o| o.since);
    for op in ops {
        let Some(r) = state.resources.get(&op.resource) else {
            continue;
        };
        let Some(&i) = index.get(&(r.kind, r.created_at.clone())) else {
            continue;
        };
        let row = &mut rows[i];
        if row.waiters.len() >= MAX_LISTED {
            row.more_waiters += 1;
            continue;
        }
        let source = op.source.to_ascii_lowercase();
        row.waiters.push(LockWaiter {
            instance: op.resource,
            task: (op.task != 0).then_some(op.task),
            task_site: task_site(op.task),
            site: op.source.clone(),
            mode: if source.contains("read") {
                LockMode::Read
            } else if source.contains("write") {
                LockMode::Write
            } else if source.contains("acquire") {
                LockMode::Permits
            } else {
                LockMode::Exclusive
            },
            permits: 1,
            waiting_seconds: round(now.duration_since(op.since).as_secs_f64()),
        });
    }
    rows
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn row_of(c: &Class) -> LockRow {
    let mut delay: Vec<HolderDelay> = state::lock(&c.delay)
        .iter()
        .map(|d| HolderDelay {
            site: label_of(d.site),
            seconds: round(d.ns as f64 * 1e-9),
            contentions: d.contentions,
        })
        .collect();
    delay.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    use std::sync::atomic::Ordering::Relaxed;
    LockRow {
        lock: class_label(c),
        kind: c.kind,
        created_at: c.created_at.map(crate::site::label).unwrap_or_default(),
        name: c.name.clone(),
        instances: c.instances.load(Relaxed),
        acquisitions: c.acquisitions.load(Relaxed),
        contended: c.contended.load(Relaxed),
        wait_seconds: c.wait.read(),
        hold_seconds: c.hold.read(),
        delay_by_holder_site: delay,
        ..LockRow::default()
    }
}

fn deadlock_findings(
    graph: &[GraphLock],
    task_site: &dyn Fn(u64) -> Option<String>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for cycle in cycles(graph, DEADLOCK_MIN_WAIT) {
        let tasks: BTreeSet<u64> = cycle.iter().map(|s| s.task).collect();
        let locks: BTreeSet<usize> = cycle.iter().map(|s| s.lock).collect();
        let steps: Vec<DeadlockStep> = cycle
            .iter()
            .map(|s| {
                let lock = &graph[s.lock];
                let w = &lock.waiters[s.waiter];
                let holds: Vec<String> = locks
                    .iter()
                    .flat_map(|&li| {
                        graph[li].holders.iter().filter(|(t, ..)| *t == s.task).map(
                            move |(_, site, mode)| {
                                format!("{} of {} at {site}", mode.as_str(), graph[li].label)
                            },
                        )
                    })
                    .collect();
                DeadlockStep {
                    task: Some(s.task),
                    task_site: task_site(s.task),
                    waits_for: lock.label.clone(),
                    wait_site: w.2.clone(),
                    wait_mode: w.3,
                    waiting_seconds: round(w.4),
                    holds,
                }
            })
            .collect();
        let blocked_behind = locks
            .iter()
            .flat_map(|&li| graph[li].waiters.iter())
            .filter(|w| !tasks.contains(&w.0))
            .count() as u64;
        let spawned = |s: &DeadlockStep| {
            s.task_site
                .as_deref()
                .map_or(String::new(), |site| format!(" (spawned at {site})"))
        };
        let summary = if steps.len() == 1 {
            let s = &steps[0];
            format!(
                "deadlock: task {}{} waits for {} of {} at {}, which it already holds ({}): it \
                 can never proceed; {blocked_behind} more tasks wait behind it",
                s.task.unwrap_or(0),
                spawned(s),
                s.wait_mode.as_str(),
                s.waits_for,
                s.wait_site,
                s.holds.join("; ")
            )
        } else {
            let parts: Vec<String> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let next = &steps[(i + 1) % steps.len()];
                    format!(
                        "task {}{} holds {} and waits for {} of {} at {} behind task {}",
                        s.task.unwrap_or(0),
                        spawned(s),
                        if s.holds.is_empty() {
                            "nothing on these locks".to_string()
                        } else {
                            s.holds.join(", ")
                        },
                        s.wait_mode.as_str(),
                        s.waits_for,
                        s.wait_site,
                        next.task.unwrap_or(0)
                    )
                })
                .collect();
            format!(
                "deadlock of {} tasks: {}; none can proceed; {blocked_behind} more tasks wait \
                 behind them",
                steps.len(),
                parts.join("; ")
            )
        };
        findings.push(Finding {
            kind: FindingKind::Deadlock,
            severity: Severity::Critical,
            site: steps[0].waits_for.clone(),
            count: steps.len() as u64,
            summary,
            fragment: "tasks in a lock cycle".into(),
            evidence: Evidence::Deadlock {
                cycle: steps,
                blocked_behind,
            },
        });
    }
    findings
}

fn guard_findings(rows: &[LockRow]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for row in rows {
        // Per acquire site: guards whose task is idle past the threshold.
        let mut by_site: Vec<(String, u64, f64)> = Vec::new();
        for h in &row.holders {
            let Some(idle) = h.task_idle_seconds.filter(|i| *i >= GUARD_IDLE_THRESHOLD) else {
                continue;
            };
            match by_site.iter_mut().find(|(s, ..)| *s == h.site) {
                Some(e) => {
                    e.1 += 1;
                    e.2 = e.2.max(idle);
                }
                None => by_site.push((h.site.clone(), 1, idle)),
            }
        }
        let waiters = row.waiters.len() as u64 + row.more_waiters;
        for (site, guards, oldest) in by_site {
            findings.push(Finding {
                kind: FindingKind::GuardAcrossAwait,
                // Harmful when someone waits for the lock meanwhile.
                severity: if waiters > 0 {
                    Severity::Warning
                } else {
                    Severity::Info
                },
                site: site.clone(),
                count: guards,
                summary: format!(
                    "{guards} guards of {} taken at {site} are held by tasks idle for more than \
                     {GUARD_IDLE_THRESHOLD:.1} s (longest {oldest:.1} s): held across an .await; \
                     {waiters} tasks wait for the lock",
                    row.lock
                ),
                fragment: "guards held across .await".into(),
                evidence: Evidence::GuardAcrossAwait {
                    lock: row.lock.clone(),
                    guards,
                    oldest_idle_seconds: round(oldest),
                    threshold_seconds: GUARD_IDLE_THRESHOLD,
                },
            });
        }
    }
    findings
}

fn hot_findings(rows: &[LockRow]) -> Vec<Finding> {
    rows.iter()
        .filter(|r| r.wait_share >= HOT_LOCK_SHARE)
        .map(|r| {
            let top: Vec<HolderDelay> = r.delay_by_holder_site.iter().take(3).cloned().collect();
            let culprit = top.first().map_or(String::new(), |d| {
                format!("; most delay while held from {}", d.site)
            });
            Finding {
                kind: FindingKind::HotLock,
                severity: Severity::Warning,
                site: r.lock.clone(),
                count: r.waiters.len() as u64 + r.more_waiters,
                summary: format!(
                    "tasks spend {:.2} s per second waiting for {} ({} contended acquisitions \
                     so far){culprit}",
                    r.wait_share, r.lock, r.contended
                ),
                fragment: "tasks waiting for a hot lock".into(),
                evidence: Evidence::HotLock {
                    lock: r.lock.clone(),
                    wait_share: r.wait_share,
                    contended: r.contended,
                    top_holder_sites: top,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(t: u64, mode: LockMode) -> (u64, String, LockMode) {
        (t, format!("h{t}"), mode)
    }

    fn waiter(t: u64, seq: u64, mode: LockMode, secs: f64) -> (u64, u64, String, LockMode, f64) {
        (t, seq, format!("w{t}"), mode, secs)
    }

    fn tasks(c: &[Step]) -> Vec<u64> {
        c.iter().map(|s| s.task).collect()
    }

    #[test]
    fn a_task_waiting_for_a_mutex_it_holds_is_a_cycle_of_one() {
        let locks = vec![GraphLock {
            label: "m".into(),
            kind: LockKind::Mutex,
            holders: vec![holder(7, LockMode::Exclusive)],
            waiters: vec![
                waiter(7, 0, LockMode::Exclusive, 2.0),
                waiter(8, 1, LockMode::Exclusive, 2.0),
            ],
        }];
        let c = cycles(&locks, 1.0);
        assert_eq!(c.len(), 1);
        assert_eq!(tasks(&c[0]), [7]);
    }

    #[test]
    fn recursive_read_behind_a_queued_writer_is_a_cycle_of_two() {
        // Task 1 holds read and asks for read again; task 2 queued for write in between.
        let locks = vec![GraphLock {
            label: "rw".into(),
            kind: LockKind::RwLock,
            holders: vec![holder(1, LockMode::Read)],
            waiters: vec![
                waiter(2, 0, LockMode::Write, 3.0),
                waiter(1, 1, LockMode::Read, 3.0),
            ],
        }];
        let c = cycles(&locks, 1.0);
        assert_eq!(c.len(), 1);
        assert_eq!(tasks(&c[0]), [1, 2]);
        // Without the writer queued ahead, the second read is granted: no cycle.
        let mut fine = locks.clone();
        fine[0].waiters[0].1 = 5;
        assert!(cycles(&fine, 1.0).is_empty());
    }

    #[test]
    fn two_mutexes_taken_in_opposite_orders() {
        let locks = vec![
            GraphLock {
                label: "a".into(),
                kind: LockKind::Mutex,
                holders: vec![holder(10, LockMode::Exclusive)],
                waiters: vec![waiter(20, 0, LockMode::Exclusive, 1.5)],
            },
            GraphLock {
                label: "b".into(),
                kind: LockKind::Mutex,
                holders: vec![holder(20, LockMode::Exclusive)],
                waiters: vec![waiter(10, 0, LockMode::Exclusive, 1.5)],
            },
        ];
        let c = cycles(&locks, 1.0);
        assert_eq!(c.len(), 1);
        assert_eq!(tasks(&c[0]), [10, 20]);
        // Young waits are not reported yet.
        assert!(cycles(&locks, 2.0).is_empty());
    }

    #[test]
    fn no_false_cycle_when_a_waiter_is_about_to_be_granted() {
        // The holder released (slot cleared) and the lock went to task 2, which has not yet
        // been polled to record itself as holder: it is still listed as waiting, for no one.
        // Task 1 meanwhile waits on another lock task 2 will release.
        let locks = vec![
            GraphLock {
                label: "a".into(),
                kind: LockKind::Mutex,
                holders: vec![],
                waiters: vec![waiter(2, 0, LockMode::Exclusive, 5.0)],
            },
            GraphLock {
                label: "b".into(),
                kind: LockKind::Mutex,
                holders: vec![holder(2, LockMode::Exclusive)],
                waiters: vec![waiter(1, 0, LockMode::Exclusive, 5.0)],
            },
        ];
        assert!(cycles(&locks, 1.0).is_empty());
        // A granted writer queued ahead of a reader: the reader waits for it, it waits for
        // no one.
        let rw = vec![GraphLock {
            label: "rw".into(),
            kind: LockKind::RwLock,
            holders: vec![],
            waiters: vec![
                waiter(3, 0, LockMode::Write, 5.0),
                waiter(4, 1, LockMode::Read, 5.0),
            ],
        }];
        assert!(cycles(&rw, 1.0).is_empty());
    }

    #[test]
    fn semaphores_and_tasks_outside_tasks_make_no_cycle() {
        let locks = vec![GraphLock {
            label: "s".into(),
            kind: LockKind::Semaphore,
            holders: vec![holder(1, LockMode::Permits)],
            waiters: vec![waiter(1, 0, LockMode::Permits, 5.0)],
        }];
        assert!(cycles(&locks, 1.0).is_empty());
        let outside = vec![GraphLock {
            label: "m".into(),
            kind: LockKind::Mutex,
            holders: vec![holder(0, LockMode::Exclusive)],
            waiters: vec![waiter(0, 0, LockMode::Exclusive, 5.0)],
        }];
        assert!(cycles(&outside, 1.0).is_empty());
    }
}
