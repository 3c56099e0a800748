//! Task dumps: every live task with the spawn site the registry knows and, with tokio's
//! task dump, the frames where it waits; grouped like Go's `goroutine?debug=1`.
//!
//! tokio's `Handle::dump` pauses the workers and re-polls every task, so a dump is taken
//! only on request, one at a time, under a timeout, and never while a worker is stuck in a
//! long poll: tokio then returns a partial dump and leaves the other workers stuck on an
//! internal barrier (tokio #7478). In those cases, and in builds without the `taskdump`
//! feature, the answer comes from the registry alone and says so.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Inner;
use crate::clock::Seconds;
use crate::model::{
    BlockedPoll, Dump, DumpGroup, DumpSource, DumpTask, Frame, SCHEMA_VERSION, Spread, TaskState,
};
use crate::tasks::TaskSlot;

/// Settings of one dump.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Trace tasks with tokio's task dump (when the build supports it); `false` answers from
    /// the registry only, which never pauses the runtime.
    pub trace: bool,
    /// Give up on tokio's dump after this long and answer from the registry.
    pub timeout: Duration,
    /// A poll running longer than this means a blocked worker: no traced dump then.
    pub blocked_threshold: Duration,
    /// List every task (like `debug=2`), not only the groups.
    pub tasks: bool,
    /// Only tasks spawned at this site.
    pub site: Option<String>,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            trace: true,
            timeout: Duration::from_secs(5),
            blocked_threshold: Duration::from_millis(100),
            tasks: false,
            site: None,
        }
    }
}

/// Why no dump could be taken at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DumpError {
    /// Another dump is in progress (or a timed-out one has not finished yet).
    #[error("another task dump is in progress; try again when it is done")]
    Busy,
}

/// Most tasks a dump lists one by one (`tasks: true`, `debug=2`); groups count every task.
pub const MAX_DUMP_TASKS: usize = 100_000;

/// Whether this build can trace tasks.
pub const TRACING_SUPPORTED: bool = cfg!(all(feature = "taskdump", target_os = "linux"));

/// A task as the dump sees it: the registry's facts, plus its stacks when traced, as an
/// index into the dump's table of distinct stacks (so grouping compares integers, and a
/// million entries stay small).
struct Entry {
    id: u64,
    slot: TaskSlot,
    running: bool,
    /// Index into [`Stacks::distinct`]; [`NO_STACKS`] when not traced.
    stacks: u32,
}

/// Index of the empty stack set: untraced tasks.
const NO_STACKS: u32 = 0;

/// The distinct stack sets of a dump, interned.
struct Stacks {
    distinct: Vec<Vec<Vec<Frame>>>,
    index: HashMap<Vec<Vec<Frame>>, u32>,
}

impl Stacks {
    fn new() -> Self {
        Stacks {
            distinct: vec![Vec::new()],
            index: HashMap::new(),
        }
    }

    fn intern(&mut self, stacks: Vec<Vec<Frame>>) -> u32 {
        if stacks.is_empty() {
            return NO_STACKS;
        }
        if let Some(&i) = self.index.get(&stacks) {
            return i;
        }
        let i = self.distinct.len() as u32;
        self.distinct.push(stacks.clone());
        self.index.insert(stacks, i);
        i
    }

    fn get(&self, i: u32) -> &Vec<Vec<Frame>> {
        &self.distinct[i as usize]
    }
}

pub(crate) async fn take(
    inner: &Arc<Inner>,
    runtime: Option<tokio::runtime::Handle>,
    options: &DumpOptions,
) -> Result<Dump, DumpError> {
    let started = Instant::now();
    // One at a time. A dump that timed out keeps the lock until tokio's dump really ends.
    let Ok(guard) = Arc::clone(&inner.dump_lock).try_lock_owned() else {
        return Err(DumpError::Busy);
    };
    let secs = inner.clock.calibrate();
    let blocked = blocked_polls(inner, &secs, options.blocked_threshold);
    let mut notes = Vec::new();
    let mut source = DumpSource::Registry;
    let mut complete = true;
    let mut paused = 0.0;
    let mut traces: HashMap<u64, Vec<Vec<Frame>>> = HashMap::new();

    if !options.trace {
        notes.push("registry only, as asked: spawn sites, states and ages, no await points".into());
    } else if !TRACING_SUPPORTED {
        notes.push(
            "registry only: this build has no task dumps (enable taskscope's `taskdump` \
             feature, Linux only) for await points"
                .into(),
        );
    } else if let Some(b) = blocked.first() {
        complete = false;
        notes.push(format!(
            "registry only: task {} (spawned at {}) has been in one poll for {:.1} s, \
             blocking its worker; a task dump now could stall the runtime (tokio #7478), so \
             none was taken",
            b.task, b.site, b.seconds
        ));
    } else if let Some(handle) = runtime {
        match trace(inner, handle, options.timeout, guard).await {
            Traced::Done {
                traces: t,
                paused: p,
            } => {
                traces = t;
                paused = p;
                source = DumpSource::Traced;
            }
            Traced::TimedOut => {
                complete = false;
                notes.push(format!(
                    "registry only: tokio's task dump did not finish within {:.1} s (a worker \
                     may be blocked); it goes on in the background and later dumps are \
                     refused until it ends",
                    options.timeout.as_secs_f64()
                ));
            }
        }
    } else {
        notes.push("registry only: the runtime has not polled a task yet".into());
    }

    relativize(inner, &mut traces);
    let running: HashSet<u64> = inner.lanes.in_progress().iter().map(|p| p.task).collect();
    let mut stacks = Stacks::new();
    let probe = inner.starvation.probe_site();
    let mut entries: Vec<Entry> = inner
        .tasks
        .collect_sized(live_hint(inner))
        .into_iter()
        // The agent's own probe task is not the service's.
        .filter(|(_, slot)| Some(slot.site) != probe)
        .map(|(id, slot)| Entry {
            id,
            running: running.contains(&id),
            // Skip hashing a million ids when nothing was traced.
            stacks: match traces.is_empty() {
                true => NO_STACKS,
                false => traces.remove(&id).map_or(NO_STACKS, |s| stacks.intern(s)),
            },
            slot,
        })
        .collect();
    if source == DumpSource::Traced {
        let untraced = entries
            .iter()
            .filter(|e| e.stacks == NO_STACKS && !e.running)
            .count();
        if untraced > 0 {
            notes.push(format!(
                "{untraced} tasks have no stack: spawned during the dump, or waiting on \
                 something tokio's dump cannot trace"
            ));
        }
    }
    if let Some(site) = &options.site {
        entries.retain(|e| inner.sites.label(e.slot.site) == site);
    }
    let secs = inner.clock.calibrate();
    let groups = groups(inner, &entries, &stacks, &secs);
    let tasks = if options.tasks {
        if entries.len() > MAX_DUMP_TASKS {
            notes.push(format!(
                "{} tasks listed of {} (the oldest; at most {MAX_DUMP_TASKS} per dump); the \
                 groups count them all",
                MAX_DUMP_TASKS,
                entries.len()
            ));
        }
        task_rows(inner, &mut entries, &stacks, &secs)
    } else {
        Vec::new()
    };
    Ok(Dump {
        schema_version: SCHEMA_VERSION,
        taken_at_unix_ms: crate::unix_ms(),
        took_seconds: started.elapsed().as_secs_f64(),
        paused_seconds: paused,
        source,
        complete,
        notes,
        blocked,
        total_tasks: entries.len() as u64,
        groups,
        tasks,
    })
}

/// Debug info names the service's own files by absolute path, while spawn sites name them
/// relative to the workspace, as rustc was given them. Where an absolute frame path ends
/// with a relative spawn-site file, the part before is the build's root: strip it from
/// every frame, so frames and sites read alike and do not depend on the build machine.
fn relativize(inner: &Inner, traces: &mut HashMap<u64, Vec<Vec<Frame>>>) {
    let site_files: HashSet<String> = (0..inner.sites.len() as u32)
        .filter_map(|s| {
            let label = inner.sites.label(s);
            let file = label.rsplitn(3, ':').nth(2)?;
            (!file.starts_with('/')).then(|| file.to_string())
        })
        .collect();
    let mut roots: HashSet<String> = HashSet::new();
    let frames = || traces.values().flatten().flatten();
    for f in frames() {
        if !f.file.starts_with('/') {
            continue;
        }
        for site_file in &site_files {
            if let Some(root) = f.file.strip_suffix(site_file.as_str())
                && root.ends_with('/')
            {
                roots.insert(root.to_string());
            }
        }
    }
    if roots.is_empty() {
        return;
    }
    for f in traces.values_mut().flatten().flatten() {
        if let Some(rest) = roots.iter().find_map(|r| f.file.strip_prefix(r.as_str())) {
            f.file = rest.to_string();
        }
    }
}

/// About how many tasks are live (from the site counters): room to collect them in one
/// allocation.
fn live_hint(inner: &Inner) -> usize {
    (0..=inner.sites.overflow())
        .map(|s| {
            let t = inner.lanes.totals(s);
            t.spawned.saturating_sub(t.completed) as usize
        })
        .sum::<usize>()
        + 1024
}

/// Polls in progress longer than `threshold`, longest first.
fn blocked_polls(inner: &Inner, secs: &Seconds, threshold: Duration) -> Vec<BlockedPoll> {
    let mut blocked: Vec<BlockedPoll> = inner
        .lanes
        .in_progress()
        .into_iter()
        .map(|p| (p, secs.since(p.started)))
        .filter(|(_, seconds)| *seconds > threshold.as_secs_f64())
        .map(|(p, seconds)| BlockedPoll {
            task: p.task,
            site: inner.tasks.get(p.task).map_or_else(
                || "(unknown)".to_string(),
                |slot| inner.sites.label(slot.site).to_string(),
            ),
            seconds,
        })
        .collect();
    blocked.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    blocked
}

#[cfg_attr(not(all(feature = "taskdump", target_os = "linux")), allow(dead_code))]
enum Traced {
    Done {
        traces: HashMap<u64, Vec<Vec<Frame>>>,
        paused: f64,
    },
    TimedOut,
}

/// Shortest time after a dump during which the traced tasks' polls are taken for the
/// spurious ones tokio's dump leaves behind.
#[cfg_attr(not(all(feature = "taskdump", target_os = "linux")), allow(dead_code))]
const SPURIOUS_POLL_GRACE: Duration = Duration::from_millis(200);

#[cfg(all(feature = "taskdump", target_os = "linux"))]
async fn trace(
    inner: &Arc<Inner>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
    guard: tokio::sync::OwnedMutexGuard<()>,
) -> Traced {
    use crate::tasks::id_to_u64;

    // The dump re-polls every task without hooks, then wakes it: its next poll is the
    // dump's. Mark them all now (the spurious polls may start before `dump()` returns).
    inner.tasks.skip_next_polls();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // On a task of its own, holding the lock, so that a dump that outlives our timeout
    // still finishes (tokio's dump thread cannot be stopped) before the next one starts.
    tokio::spawn(async move {
        let t0 = Instant::now();
        let dump = handle.dump().await;
        let _ = tx.send((dump, t0.elapsed()));
        drop(guard);
    });
    let Ok(Ok((dump, paused))) = tokio::time::timeout(timeout, rx).await else {
        inner
            .tasks
            .unskip_except(&HashSet::new(), inner.clock.now());
        return Traced::TimedOut;
    };
    let traced: HashSet<u64> = dump.tasks().iter().map(|t| id_to_u64(t.id())).collect();
    // The traced tasks' spurious polls run as soon as the workers resume, about as long as
    // tracing them took: until then (and at least SPURIOUS_POLL_GRACE) their polls are the
    // dump's.
    let window = SPURIOUS_POLL_GRACE.max(paused * 2);
    let until = inner
        .clock
        .now()
        .saturating_add(u64::try_from(window.as_nanos()).unwrap_or(u64::MAX));
    inner.tasks.unskip_except(&traced, until);
    // Resolving symbols parses debug info: keep it off the caller's runtime threads.
    let traces = tokio::task::spawn_blocking(move || {
        dump.tasks()
            .iter()
            .map(|t| {
                let mut stacks: Vec<Vec<Frame>> = t
                    .trace()
                    .resolve_backtraces()
                    .iter()
                    .map(crate::frames::clean)
                    .filter(|s| !s.is_empty())
                    .collect();
                // `select!` polls its branches in random order: sort, so that tasks waiting
                // on the same futures group together.
                stacks.sort();
                (id_to_u64(t.id()), stacks)
            })
            .collect::<HashMap<_, _>>()
    })
    .await
    .unwrap_or_default();
    Traced::Done {
        traces,
        paused: paused.as_secs_f64(),
    }
}

#[cfg(not(all(feature = "taskdump", target_os = "linux")))]
async fn trace(
    _inner: &Arc<Inner>,
    _handle: tokio::runtime::Handle,
    _timeout: Duration,
    _guard: tokio::sync::OwnedMutexGuard<()>,
) -> Traced {
    unreachable!("trace() is only called when TRACING_SUPPORTED")
}

/// Groups entries by (site, stacks): bucketed by site first (an index, no hashing), then
/// each site's tasks sorted by stacks only when they differ. A registry-only dump of a
/// million tasks is one pass plus a median per site.
fn groups(inner: &Inner, entries: &[Entry], stacks: &Stacks, secs: &Seconds) -> Vec<DumpGroup> {
    let mut by_site: Vec<Vec<&Entry>> = Vec::new();
    for e in entries {
        let s = e.slot.site as usize;
        if by_site.len() <= s {
            by_site.resize_with(s + 1, Vec::new);
        }
        by_site[s].push(e);
    }
    let mut groups = Vec::new();
    for mut members in by_site.into_iter().filter(|m| !m.is_empty()) {
        if members.iter().any(|e| e.stacks != members[0].stacks) {
            members.sort_by_key(|e| e.stacks);
        }
        for group in members.chunk_by_mut(|a, b| a.stacks == b.stacks) {
            groups.push(group_of(inner, group, stacks, secs));
        }
    }
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.site.cmp(&b.site))
            .then_with(|| a.stacks.cmp(&b.stacks))
    });
    groups
}

/// One group from its members (same site, same stacks). One pass over the members keeps
/// the oldest few ids and the coarse readings behind ages and idle times; medians come from
/// a selection on integers, not a sort.
fn group_of(inner: &Inner, members: &mut [&Entry], stacks: &Stacks, secs: &Seconds) -> DumpGroup {
    const IDS: usize = 10;
    // (spawned, id) of the oldest members, kept sorted; tiny, so insertion is cheap.
    let mut oldest: Vec<(u64, u64)> = Vec::with_capacity(IDS + 1);
    let mut spawned = Vec::with_capacity(members.len());
    // The reading idle time counts from; u64::MAX while running (idle 0).
    let mut idle_from = Vec::with_capacity(members.len());
    for e in members.iter() {
        let key = (e.slot.spawned, e.id);
        if oldest.len() < IDS || key < oldest[IDS - 1] {
            let at = oldest.partition_point(|k| *k < key);
            oldest.insert(at, key);
            oldest.truncate(IDS);
        }
        spawned.push(e.slot.spawned);
        idle_from.push(if e.running {
            u64::MAX
        } else {
            e.slot.last_poll.max(e.slot.spawned)
        });
    }
    let idle = |reading: u64| {
        if reading == u64::MAX {
            0.0
        } else {
            secs.since(reading)
        }
    };
    // Later readings are shorter durations: the spread's min comes from the max reading.
    let (first, median, last) = select_spread(&mut idle_from);
    let idle_seconds = Spread {
        min: idle(last),
        median: idle(median),
        max: idle(first),
    };
    let (first, median, last) = select_spread(&mut spawned);
    let age_seconds = Spread {
        min: secs.since(last),
        median: secs.since(median),
        max: secs.since(first),
    };
    DumpGroup {
        site: inner.sites.label(members[0].slot.site).to_string(),
        stacks: stacks.get(members[0].stacks).clone(),
        count: members.len() as u64,
        idle_seconds,
        age_seconds,
        task_ids: oldest.into_iter().map(|(_, id)| id).collect(),
    }
}

/// Smallest, median and largest of a non-empty set, without sorting it.
fn select_spread(v: &mut [u64]) -> (u64, u64, u64) {
    let mid = v.len() / 2;
    let (below, median, above) = v.select_nth_unstable(mid);
    let median = *median;
    (
        below.iter().copied().min().unwrap_or(median),
        median,
        above.iter().copied().max().unwrap_or(median),
    )
}

fn task_rows(
    inner: &Inner,
    entries: &mut [Entry],
    stacks: &Stacks,
    secs: &Seconds,
) -> Vec<DumpTask> {
    entries.sort_by_key(|e| (e.slot.spawned, e.id));
    entries
        .iter_mut()
        .take(MAX_DUMP_TASKS)
        .map(|e| DumpTask {
            id: e.id,
            site: inner.sites.label(e.slot.site).to_string(),
            state: if e.running {
                TaskState::Running
            } else {
                TaskState::Idle
            },
            age_seconds: secs.since(e.slot.spawned),
            idle_seconds: idle(e, secs),
            polls: u64::from(e.slot.polls),
            stacks: stacks.get(e.stacks).clone(),
        })
        .collect()
}

fn idle(e: &Entry, secs: &Seconds) -> f64 {
    if e.running {
        0.0
    } else {
        secs.since(e.slot.last_poll.max(e.slot.spawned))
    }
}
