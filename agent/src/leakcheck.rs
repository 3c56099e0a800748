//! goleak for tokio: fail a test when tasks it spawned are still alive at its end.
//!
//! [`LeakCheck::run`] runs a test body on a fresh instrumented runtime (multi-thread, 2
//! workers, `enable_all`, with an [`Agent`] installed), returns the body's output, and then
//! checks the agent's live-task table: tasks still alive after a short grace period (default
//! [`DEFAULT_GRACE`], polled every few milliseconds, so a clean test ends at once) fail the
//! test with a message naming each leaked spawn site, how many tasks it left behind and,
//! when the build has task dumps (feature `taskdump`), where they wait:
//!
//! ```text
//! taskscope leakcheck: 3 tasks still alive after 1.0 s grace
//!   3 at src/jobs.rs:40:9 (idle 1.0 s), waiting at tokio::sync::oneshot::Receiver<T>::poll <- src/jobs.rs:41
//! ```
//!
//! A passing check returns the body's output:
//!
//! ```
//! use std::time::Duration;
//! use taskscope::leakcheck::LeakCheck;
//!
//! let sum = LeakCheck::new().grace(Duration::from_millis(200)).run(async {
//!     let tasks: Vec<_> = (0..3u64).map(|i| tokio::spawn(async move { i })).collect();
//!     let mut sum = 0;
//!     for t in tasks {
//!         sum += t.await.unwrap();
//!     }
//!     sum
//! });
//! assert_eq!(sum, 3);
//! ```
//!
//! A leak panics in [`LeakCheck::run`]; [`LeakCheck::try_run`] returns it as a
//! [`LeakReport`] instead:
//!
//! ```
//! use std::time::Duration;
//! use taskscope::leakcheck::LeakCheck;
//!
//! let report = LeakCheck::new()
//!     .grace(Duration::from_millis(100))
//!     .try_run(async {
//!         for _ in 0..2 {
//!             tokio::spawn(std::future::pending::<()>()); // never ends
//!         }
//!     })
//!     .unwrap_err();
//! assert_eq!(report.total, 2);
//! assert_eq!(report.sites.len(), 1);
//! assert_eq!(report.sites[0].count, 2);
//! assert!(report.to_string().starts_with("taskscope leakcheck: 2 tasks still alive"));
//! ```
//!
//! ```should_panic
//! # use std::time::Duration;
//! # use taskscope::leakcheck::LeakCheck;
//! LeakCheck::new()
//!     .grace(Duration::from_millis(100))
//!     .run(async {
//!         tokio::spawn(std::future::pending::<()>());
//!     }); // panics: "taskscope leakcheck: 1 task still alive after 0.1 s grace ..."
//! ```
//!
//! # With `#[tokio::test]`
//!
//! `#[tokio::test]` builds its own runtime, which cannot take the agent's hooks. Write a
//! plain `#[test]` and hand the body to [`LeakCheck::run`] instead:
//!
//! ```no_run
//! # use taskscope::leakcheck::LeakCheck;
//! # async fn serve_one_request() {}
//! #[test]
//! fn handler_does_not_leak() {
//!     LeakCheck::new().run(async {
//!         serve_one_request().await; // the former #[tokio::test] body
//!     });
//! }
//! ```
//!
//! Or build the runtime with the agent yourself and check it with [`LeakCheck::start`]
//! (which, like goleak's `IgnoreCurrent`, ignores the tasks alive when it is called) or
//! [`LeakCheck::verify`]. Call either from outside the instrumented runtime (after
//! `block_on` returned), while that runtime is still alive:
//!
//! ```
//! use std::time::Duration;
//! use taskscope::leakcheck::LeakCheck;
//!
//! let mut builder = tokio::runtime::Builder::new_multi_thread();
//! builder.worker_threads(2).enable_all();
//! let agent = taskscope::install(&mut builder);
//! let rt = builder.build().unwrap();
//!
//! // A background task that lives for the whole test: alive before the check starts.
//! rt.spawn(std::future::pending::<()>());
//! let guard = LeakCheck::new().grace(Duration::from_millis(100)).start(&agent);
//! rt.block_on(async { tokio::spawn(async {}).await.unwrap() });
//! guard.verify().unwrap(); // the background task is not reported
//! ```
//!
//! # Ignoring tasks
//!
//! - [`LeakCheck::ignore_site`]: tasks whose spawn-site label (as in
//!   [`model::SiteRow::site`](crate::model::SiteRow::site), `path:line:col`) equals the
//!   pattern, or starts with it at a `/` or `:` boundary: `src/x.rs:10:5` is that one site,
//!   `src/x.rs:10` every site on line 10, `src/x.rs` every site in the file, `src/net/` or
//!   `hyper-1.8.1` every site under that folder or crate.
//! - [`LeakCheck::ignore_function`]: tasks with a frame of that function anywhere in their
//!   dump stacks. Needs frames, i.e. the `taskdump` feature (Linux): without it, nothing is
//!   ignored this way and the report says so.
//! - [`LeakCheck::start`]: tasks alive before the check started (goleak's `IgnoreCurrent`).
//!
//! Tasks spawned with `spawn_blocking`, or on a `LocalSet`, are not tracked by the agent and
//! never reported.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::dump::TRACING_SUPPORTED;
use crate::model::{Dump, DumpSource, Frame, TaskRow};
use crate::{Agent, DumpOptions, SnapshotOptions};

/// Default time the check waits for tasks to end before reporting them: 1 s.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);

/// Default time between two looks at the agent's live tasks during the grace period: 5 ms.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// With [`LeakCheck::ignore_function`] and frames available, how often the grace loop takes
/// a task dump to see whether the tasks still alive are all ignored ones.
const DUMP_INTERVAL: Duration = Duration::from_millis(100);

/// How long the check waits for one task dump.
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Worker threads of the runtime [`LeakCheck::run`] builds.
const RUN_WORKERS: usize = 2;

/// A leak check's settings: grace period and what to ignore. Build one with
/// [`LeakCheck::new`], then [`run`](LeakCheck::run) a test body,
/// [`start`](LeakCheck::start) a check on an agent of your own, or
/// [`verify`](LeakCheck::verify) an agent now.
#[derive(Debug, Clone)]
pub struct LeakCheck {
    grace: Duration,
    poll_interval: Duration,
    ignore_sites: Vec<String>,
    ignore_functions: Vec<String>,
}

impl Default for LeakCheck {
    fn default() -> Self {
        LeakCheck::new()
    }
}

impl LeakCheck {
    /// A check with the default grace ([`DEFAULT_GRACE`]) that ignores nothing.
    pub fn new() -> Self {
        LeakCheck {
            grace: DEFAULT_GRACE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            ignore_sites: Vec::new(),
            ignore_functions: Vec::new(),
        }
    }

    /// How long tasks may take to end after the body returned before they count as leaked
    /// (default [`DEFAULT_GRACE`]). The check ends as soon as none is left, so a clean test
    /// does not wait for it.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Time between two looks at the live tasks during the grace period (default
    /// [`DEFAULT_POLL_INTERVAL`], at least 1 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Ignores tasks spawned at sites matching `pattern`: a site label (`path:line:col`, as
    /// in [`model::SiteRow::site`](crate::model::SiteRow::site)) equal to it, or starting
    /// with it at a `/` or `:` boundary. `"src/x.rs:10:5"` matches that site only,
    /// `"src/x.rs:10"` every site on line 10, `"src/x.rs"` every site in the file,
    /// `"src/net/"` or `"src/net"` every site under the folder. An empty pattern matches
    /// nothing. May be called several times.
    pub fn ignore_site(mut self, pattern: impl Into<String>) -> Self {
        self.ignore_sites.push(pattern.into());
        self
    }

    /// Ignores tasks with a frame of function `name` anywhere in their dump stacks, like
    /// goleak's `IgnoreAnyFunction`. A frame matches when its function (demangled, hash
    /// removed, a leading `<` dropped) equals `name` or continues it with `::`, `<`, `>` or a
    /// space: `"my_crate::worker::run"` matches `my_crate::worker::run::{{closure}}`.
    ///
    /// Frames come from tokio's task dumps: only builds with taskscope's `taskdump` feature
    /// (Linux) have them. Without frames nothing is ignored this way, and the report carries
    /// a note saying so. May be called several times.
    pub fn ignore_function(mut self, name: impl Into<String>) -> Self {
        self.ignore_functions.push(name.into());
        self
    }

    /// Runs `body` on a new multi-thread runtime (2 workers, `enable_all`) with an agent
    /// installed, then checks that every task it spawned ended within the grace period, and
    /// returns the body's output.
    ///
    /// Call it from a plain `#[test]`, not from inside a tokio runtime (tokio refuses to
    /// block a thread that drives a runtime).
    ///
    /// # Panics
    ///
    /// When tasks are still alive after the grace period, with the [`LeakReport`] as the
    /// message; when `body` panics; when the runtime cannot be built (the OS refused its
    /// threads), or when called from within a tokio runtime.
    pub fn run<F: Future>(self, body: F) -> F::Output {
        match self.try_run(body) {
            Ok(out) => out,
            Err(report) => panic!("{report}"),
        }
    }

    /// Like [`LeakCheck::run`], but returns the leaks as a [`LeakReport`] instead of
    /// panicking. The body's output is dropped when it leaked.
    ///
    /// # Panics
    ///
    /// When `body` panics, when the runtime cannot be built (the OS refused its threads), or
    /// when called from within a tokio runtime.
    pub fn try_run<F: Future>(self, body: F) -> Result<F::Output, LeakReport> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(RUN_WORKERS).enable_all();
        let agent = crate::install(&mut builder);
        let runtime = match builder.build() {
            Ok(runtime) => runtime,
            Err(e) => panic!("taskscope leakcheck: cannot build the test runtime: {e}"),
        };
        let out = runtime.block_on(body);
        // The dump needs the instrumented runtime alive: check before dropping it.
        let result = check(&agent, &HashSet::new(), &self);
        // Leaked tasks are dropped here; one stuck in a poll does not hold the test forever.
        runtime.shutdown_timeout(Duration::from_secs(1));
        result.map(|()| out)
    }

    /// Starts a check on an agent you installed yourself: remembers the tasks alive now
    /// (goleak's `IgnoreCurrent`), so that [`LeakGuard::verify`] reports only tasks spawned
    /// after this call.
    pub fn start(self, agent: &Agent) -> LeakGuard {
        let baseline = live_tasks(agent).into_iter().map(|t| t.id).collect();
        LeakGuard {
            agent: agent.clone(),
            check: self,
            baseline,
        }
    }

    /// Checks every live task of `agent` (after the grace period), not only those of one
    /// test; see [`LeakCheck::start`] to ignore the ones alive before.
    ///
    /// Blocks the calling thread for up to the grace period (plus a task dump when tasks
    /// are left). Call it from outside the instrumented runtime while that runtime is still
    /// alive: from a worker of its own runtime the check would block that worker.
    pub fn verify(&self, agent: &Agent) -> Result<(), LeakReport> {
        check(agent, &HashSet::new(), self)
    }

    /// Like [`LeakCheck::verify`], but panics with the report on a leak.
    ///
    /// # Panics
    ///
    /// When tasks are still alive after the grace period.
    pub fn assert_no_leaks(&self, agent: &Agent) {
        if let Err(report) = self.verify(agent) {
            panic!("{report}");
        }
    }
}

/// A check started by [`LeakCheck::start`]: ignores the tasks that were alive then.
#[derive(Debug)]
pub struct LeakGuard {
    agent: Agent,
    check: LeakCheck,
    baseline: HashSet<u64>,
}

impl LeakGuard {
    /// How many live tasks the guard ignores (those alive when it was started).
    pub fn ignored_tasks(&self) -> usize {
        self.baseline.len()
    }

    /// Checks that every task spawned since [`LeakCheck::start`] ended within the grace
    /// period. Blocks like [`LeakCheck::verify`]; call it from outside the instrumented
    /// runtime while that runtime is still alive.
    pub fn verify(self) -> Result<(), LeakReport> {
        check(&self.agent, &self.baseline, &self.check)
    }

    /// Like [`LeakGuard::verify`], but panics with the report on a leak.
    ///
    /// # Panics
    ///
    /// When tasks are still alive after the grace period.
    pub fn assert_no_leaks(self) {
        if let Err(report) = self.verify() {
            panic!("{report}");
        }
    }
}

/// Tasks still alive after the grace period, by spawn site. Its `Display` is the failure
/// message: one line per site with its count, idle time and, when traced, await point.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LeakReport {
    /// The grace period the tasks were given.
    pub grace: Duration,
    /// Leaked tasks in all.
    pub total: u64,
    /// One entry per spawn site, most tasks first (then by site).
    pub sites: Vec<LeakedSite>,
    /// Plain sentences about the report: why await points are missing, ignores that
    /// could not apply.
    pub notes: Vec<String>,
}

impl LeakReport {
    /// Leaked tasks spawned at `site` (exact label); 0 when none.
    pub fn count(&self, site: &str) -> u64 {
        self.sites
            .iter()
            .find(|s| s.site == site)
            .map_or(0, |s| s.count)
    }
}

/// The leaked tasks of one spawn site.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LeakedSite {
    /// Spawn site label, `path:line:col` (see [`crate::site::display_path`]).
    pub site: String,
    /// How many tasks spawned here are still alive.
    pub count: u64,
    /// The longest time one of them has gone without a poll, seconds.
    pub idle_seconds: f64,
    /// Their tokio task ids, ascending.
    pub task_ids: Vec<u64>,
    /// Where they wait, most tasks first; empty without frames (no `taskdump` feature, or
    /// the dump fell back to the registry: see [`LeakReport::notes`]).
    pub await_points: Vec<AwaitPoint>,
}

/// Leaked tasks of one site waiting at the same frames.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AwaitPoint {
    /// How many tasks wait here.
    pub count: u64,
    /// One stack per leaf future awaited, innermost frame first, as in
    /// [`model::DumpGroup::stacks`](crate::model::DumpGroup::stacks); empty when tokio's
    /// dump could not trace them (a future that is not a tokio resource, e.g.
    /// `std::future::pending`).
    pub stacks: Vec<Vec<Frame>>,
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "taskscope leakcheck: {} {} still alive after {:.1} s grace",
            self.total,
            if self.total == 1 { "task" } else { "tasks" },
            self.grace.as_secs_f64()
        )?;
        for site in &self.sites {
            write!(
                f,
                "\n  {} at {} (idle {:.1} s)",
                site.count, site.site, site.idle_seconds
            )?;
            let file = site_file(&site.site);
            match site.await_points.as_slice() {
                [] => {}
                [one] => write!(f, ", {}", describe(&one.stacks, file))?,
                several => {
                    for point in several {
                        write!(f, "\n    {} {}", point.count, describe(&point.stacks, file))?;
                    }
                }
            }
        }
        for note in &self.notes {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LeakReport {}

/// "waiting at <leaf> <- <user file:line>" for one await point, stacks joined by "; ".
fn describe(stacks: &[Vec<Frame>], site_file: &str) -> String {
    let parts: Vec<String> = stacks
        .iter()
        .filter_map(|stack| describe_stack(stack, site_file))
        .collect();
    if parts.is_empty() {
        "await point not traced".to_string()
    } else {
        format!("waiting at {}", parts.join("; "))
    }
}

fn describe_stack(stack: &[Frame], site_file: &str) -> Option<String> {
    let leaf = stack.first()?;
    let rest = stack.get(1..).unwrap_or_default();
    let user = rest
        .iter()
        .find(|fr| fr.file == site_file && fr.line > 0)
        .or_else(|| {
            rest.iter()
                .find(|fr| !fr.file.is_empty() && !is_dependency(&fr.file))
        });
    Some(match user {
        Some(u) => format!("{} <- {}:{}", leaf.function, u.file, u.line),
        None if !leaf.file.is_empty() => {
            format!("{} ({}:{})", leaf.function, leaf.file, leaf.line)
        }
        None => leaf.function.clone(),
    })
}

/// The file part of a `path:line:col` label.
fn site_file(site: &str) -> &str {
    site.rsplitn(3, ':').nth(2).unwrap_or(site)
}

/// A frame file shortened from the cargo registry (`crate-1.2.3/...`) or the standard
/// library (`library/...`): not the user's code.
fn is_dependency(file: &str) -> bool {
    let first = file.split('/').next().unwrap_or_default();
    if first == "library" {
        return true;
    }
    first
        .rsplit_once('-')
        .is_some_and(|(_, version)| version.starts_with(|c: char| c.is_ascii_digit()))
}

/// Whether `pattern` selects the site label `site` (see [`LeakCheck::ignore_site`]).
fn site_matches(pattern: &str, site: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    match site.strip_prefix(pattern) {
        Some("") => true,
        Some(rest) => pattern.ends_with(['/', ':']) || rest.starts_with(['/', ':']),
        None => false,
    }
}

/// Whether `pattern` names the function of `frame` (see [`LeakCheck::ignore_function`]).
fn function_matches(pattern: &str, function: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let function = function.strip_prefix('<').unwrap_or(function);
    match function.strip_prefix(pattern) {
        Some("") => true,
        Some(rest) => rest.starts_with("::") || rest.starts_with(['<', '>', ' ']),
        None => false,
    }
}

fn live_tasks(agent: &Agent) -> Vec<TaskRow> {
    agent
        .snapshot_with(&SnapshotOptions {
            max_tasks: usize::MAX,
            ..SnapshotOptions::default()
        })
        .tasks
}

/// A task that may be a leak: not in the baseline, not at an ignored site.
struct Suspect {
    id: u64,
    site: String,
    idle_seconds: f64,
    stacks: Vec<Vec<Frame>>,
}

/// The grace loop: look at the live tasks every poll interval until none is left (pass) or
/// the grace period is over (then report what a task dump says is left).
fn check(agent: &Agent, baseline: &HashSet<u64>, opts: &LeakCheck) -> Result<(), LeakReport> {
    let started = Instant::now();
    let filter_functions = !opts.ignore_functions.is_empty() && TRACING_SUPPORTED;
    let mut last_dump: Option<Instant> = None;
    loop {
        let suspects: Vec<Suspect> = live_tasks(agent)
            .into_iter()
            .filter(|t| !baseline.contains(&t.id) && !ignored_site(opts, &t.site))
            .map(|t| Suspect {
                id: t.id,
                site: t.site,
                idle_seconds: t.idle_seconds,
                stacks: Vec::new(),
            })
            .collect();
        if suspects.is_empty() {
            return Ok(());
        }
        let expired = started.elapsed() >= opts.grace;
        let dump_due = filter_functions && last_dump.is_none_or(|t| t.elapsed() >= DUMP_INTERVAL);
        if expired || dump_due {
            last_dump = Some(Instant::now());
            let report = report_from_dump(agent, baseline, opts, suspects);
            if report.total == 0 {
                return Ok(());
            }
            if expired {
                return Err(report);
            }
        }
        let left = opts.grace.saturating_sub(started.elapsed());
        std::thread::sleep(opts.poll_interval.min(left).max(Duration::from_millis(1)));
    }
}

/// Takes a task dump (for await points and function ignores) and builds the report from
/// it; falls back to the snapshot's `suspects` when no dump can be had.
fn report_from_dump(
    agent: &Agent,
    baseline: &HashSet<u64>,
    opts: &LeakCheck,
    suspects: Vec<Suspect>,
) -> LeakReport {
    let mut notes = Vec::new();
    let (suspects, traced) = match take_dump(agent) {
        Ok(dump) => {
            let traced = dump.source == DumpSource::Traced;
            if TRACING_SUPPORTED && !traced {
                notes.extend(dump.notes.iter().cloned());
            }
            let from_dump = dump
                .tasks
                .into_iter()
                .filter(|t| !baseline.contains(&t.id) && !ignored_site(opts, &t.site))
                .map(|t| Suspect {
                    id: t.id,
                    site: t.site,
                    idle_seconds: t.idle_seconds,
                    stacks: t.stacks,
                })
                .collect();
            (from_dump, traced)
        }
        Err(why) => {
            notes.push(format!("no task dump, so no await points: {why}"));
            (suspects, false)
        }
    };
    if !TRACING_SUPPORTED {
        notes.push(
            "no await points: build with taskscope's `taskdump` feature (Linux) to see where \
             the tasks wait"
                .to_string(),
        );
    }
    let suspects: Vec<Suspect> = if traced {
        suspects
            .into_iter()
            .filter(|s| !ignored_function(opts, &s.stacks))
            .collect()
    } else {
        if !opts.ignore_functions.is_empty() {
            notes.push(format!(
                "ignore_function({}) had no effect: this check has no frames",
                opts.ignore_functions.join(", ")
            ));
        }
        suspects
    };
    build_report(opts.grace, suspects, traced, notes)
}

fn ignored_site(opts: &LeakCheck, site: &str) -> bool {
    opts.ignore_sites.iter().any(|p| site_matches(p, site))
}

fn ignored_function(opts: &LeakCheck, stacks: &[Vec<Frame>]) -> bool {
    opts.ignore_functions.iter().any(|p| {
        stacks
            .iter()
            .flatten()
            .any(|frame| function_matches(p, &frame.function))
    })
}

/// Groups suspects by site, then by stacks.
fn build_report(
    grace: Duration,
    suspects: Vec<Suspect>,
    traced: bool,
    notes: Vec<String>,
) -> LeakReport {
    let total = suspects.len() as u64;
    let mut by_site: BTreeMap<String, Vec<Suspect>> = BTreeMap::new();
    for s in suspects {
        by_site.entry(s.site.clone()).or_default().push(s);
    }
    let mut sites: Vec<LeakedSite> = by_site
        .into_iter()
        .map(|(site, members)| {
            let mut task_ids: Vec<u64> = members.iter().map(|m| m.id).collect();
            task_ids.sort_unstable();
            let idle_seconds = members.iter().map(|m| m.idle_seconds).fold(0.0, f64::max);
            let await_points = if traced {
                let mut points: BTreeMap<Vec<Vec<Frame>>, u64> = BTreeMap::new();
                for m in members {
                    *points.entry(m.stacks).or_default() += 1;
                }
                let mut points: Vec<AwaitPoint> = points
                    .into_iter()
                    .map(|(stacks, count)| AwaitPoint { count, stacks })
                    .collect();
                points.sort_by_key(|p| std::cmp::Reverse(p.count));
                points
            } else {
                Vec::new()
            };
            LeakedSite {
                count: task_ids.len() as u64,
                site,
                idle_seconds,
                task_ids,
                await_points,
            }
        })
        .collect();
    sites.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.site.cmp(&b.site)));
    LeakReport {
        grace,
        total,
        sites,
        notes,
    }
}

/// A task dump of every live task, taken on a small current-thread runtime of its own on a
/// scoped thread: works whether or not the caller is inside a tokio runtime.
fn take_dump(agent: &Agent) -> Result<Dump, String> {
    let options = DumpOptions {
        tasks: true,
        timeout: DUMP_TIMEOUT,
        ..DumpOptions::default()
    };
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("taskscope-leakcheck".into())
            .spawn_scoped(scope, || {
                let reader = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot build a runtime for the dump: {e}"))?;
                reader
                    .block_on(agent.dump(&options))
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("cannot start a thread for the dump: {e}"))?;
        worker
            .join()
            .unwrap_or_else(|_| Err("the dump thread panicked".to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_match_exactly_or_at_a_boundary() {
        let site = "src/x.rs:10:5";
        assert!(site_matches("src/x.rs:10:5", site));
        assert!(site_matches("src/x.rs:10", site));
        assert!(site_matches("src/x.rs", site));
        assert!(site_matches("src/", site));
        assert!(site_matches("src", site));
        assert!(!site_matches("src/x.rs:1", site));
        assert!(!site_matches("src/x.r", site));
        assert!(!site_matches("sr", site));
        assert!(!site_matches("", site));
        assert!(!site_matches("src/x.rs:10:50", site));
    }

    #[test]
    fn functions_match_whole_path_segments() {
        let f = "my_crate::worker::run::{{closure}}";
        assert!(function_matches("my_crate::worker::run", f));
        assert!(function_matches("my_crate::worker", f));
        assert!(!function_matches("my_crate::work", f));
        assert!(!function_matches("", f));
        let m = "<my_crate::Conn as core::future::Future>::poll";
        assert!(function_matches("my_crate::Conn", m));
        assert!(!function_matches("my_crate::Con", m));
    }

    #[test]
    fn dependencies_are_told_from_user_files() {
        assert!(is_dependency("axum-0.8.9/src/serve/mod.rs"));
        assert!(is_dependency("library/core/src/future/mod.rs"));
        assert!(!is_dependency("demo-service/src/app.rs"));
        assert!(!is_dependency("src/main.rs"));
    }

    fn frame(function: &str, file: &str, line: u32) -> Frame {
        Frame {
            function: function.into(),
            file: file.into(),
            line,
        }
    }

    #[test]
    fn the_message_names_sites_counts_and_await_points() {
        let stack = vec![
            frame(
                "tokio::sync::oneshot::Receiver<T>::poll",
                "tokio-1/src/x.rs",
                1,
            ),
            frame("dep::f", "dep-0.1.0/src/lib.rs", 3),
            frame("app::job::{{closure}}", "src/job.rs", 21),
        ];
        let suspects = (0..3)
            .map(|i| Suspect {
                id: 10 - i,
                site: if i < 2 {
                    "src/job.rs:20:9"
                } else {
                    "src/b.rs:1:1"
                }
                .into(),
                idle_seconds: 0.5 + i as f64 * 0.3,
                stacks: if i < 2 {
                    vec![stack.clone()]
                } else {
                    Vec::new()
                },
            })
            .collect();
        let report = build_report(Duration::from_secs(1), suspects, true, Vec::new());
        assert_eq!(report.count("src/job.rs:20:9"), 2);
        assert_eq!(report.count("src/b.rs:1:1"), 1);
        assert_eq!(report.sites[0].task_ids, vec![9, 10]);
        assert_eq!(
            report.to_string(),
            "taskscope leakcheck: 3 tasks still alive after 1.0 s grace\n  \
             2 at src/job.rs:20:9 (idle 0.8 s), waiting at \
             tokio::sync::oneshot::Receiver<T>::poll <- src/job.rs:21\n  \
             1 at src/b.rs:1:1 (idle 1.1 s), await point not traced"
        );
    }
}
