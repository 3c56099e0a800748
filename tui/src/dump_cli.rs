//! `taskscope dump`: takes a task dump from a service's exporter and prints it as text
//! (Go's `goroutine?debug=1|2`), as JSON, or as the difference from a dump saved earlier
//! (like `pprof -base`).
//!
//! The dump is always fetched as JSON (`/debug/taskscope/dump?format=json`) and rendered
//! here, the same way the exporter renders its text form, so that `--base` can compare
//! groups. The functions that do not touch the network are public for tests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use taskscope::model::{Dump, DumpSource, Frame, SCHEMA_VERSION, Spread, TaskState};
use taskscope_tui::client::{DUMP_FETCH_TIMEOUT, decode_dump, fetch_body};

/// Path of the exporter's dump endpoint.
pub const DUMP_PATH: &str = "/debug/taskscope/dump";

/// Largest dump body accepted (256 MiB).
const MAX_BODY: usize = 256 * 1024 * 1024;

/// The exporter's own trace timeout when none is asked for.
const DEFAULT_TRACE_TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `taskscope dump`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct DumpArgs {
    /// Base URL of the service's exporter (the scheme may be omitted).
    #[arg(default_value = taskscope_tui::DEFAULT_URL)]
    pub url: String,

    /// 1: groups of tasks by spawn site and await point; 2: every task.
    #[arg(long, value_name = "1|2", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=2))]
    pub debug: u8,

    /// Print the dump as JSON (with --base: the differences as JSON).
    #[arg(long)]
    pub json: bool,

    /// Write to FILE instead of standard output (the JSON with --json, else the text).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Seconds the exporter may spend tracing tasks before it answers from its registry
    /// alone (0.1 to 60; the exporter's default is 5).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,

    /// Only tasks spawned at SITE (`file:line:col`, as the TUI and /metrics show it).
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,

    /// Do not trace tasks (no await points, and the runtime is never paused).
    #[arg(long)]
    pub registry_only: bool,

    /// A JSON dump saved earlier (`taskscope dump --json -o FILE`): print only the groups
    /// whose task count changed since, grown first.
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
}

/// The dump URL for `args`, from an already normalised exporter base URL.
pub fn dump_url(base_url: &str, args: &DumpArgs) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(&format!("{base_url}{DUMP_PATH}"))
        .with_context(|| format!("{base_url:?} is not a valid URL"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("debug", &args.debug.to_string());
        q.append_pair("format", "json");
        if let Some(t) = args.timeout {
            q.append_pair("timeout", &t.to_string());
        }
        if args.registry_only {
            q.append_pair("trace", "0");
        }
        if let Some(site) = &args.site {
            q.append_pair("site", site);
        }
    }
    Ok(url.to_string())
}

/// Runs `taskscope dump`: fetch, render, print or write. Errors are fit to show as is.
pub fn run(args: &DumpArgs) -> anyhow::Result<()> {
    if let Some(t) = args.timeout {
        anyhow::ensure!(
            (0.1..=60.0).contains(&t),
            "--timeout {t} is out of range: 0.1 to 60 seconds"
        );
    }
    // Read the base first: a bad file should not cost the service a dump.
    let base = args.base.as_deref().map(read_dump_file).transpose()?;
    let mut base_url = taskscope_tui::normalize_url(&args.url)?;
    // The dump's own URL, pasted, means its exporter too.
    if let Some(base) = base_url.strip_suffix(DUMP_PATH) {
        base_url = base.trim_end_matches('/').to_string();
    }
    let url = dump_url(&base_url, args)?;
    // The exporter answers within its trace timeout (5 s unless --timeout), falling back
    // to its registry; the margin covers rendering and sending a large dump.
    let http_timeout = args.timeout.map_or(DUMP_FETCH_TIMEOUT, |t| {
        Duration::from_secs_f64(t) + (DUMP_FETCH_TIMEOUT - DEFAULT_TRACE_TIMEOUT)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    let client = taskscope_tui::client::client_builder()?
        .build()
        .context("cannot build an HTTP client")?;
    // Every failure (refused, timed out, cut off, not JSON, not a dump, newer schema, an
    // HTTP error with the exporter's message) is one line naming the URL and the cause.
    let body = runtime.block_on(fetch_body(&client, &url, http_timeout, MAX_BODY))?;
    let now = decode_dump(&url, &body)?;
    let out = match (&base, args.json) {
        (Some(base), false) => render_diff(base, &now, &diff(base, &now)),
        (Some(base), true) => diff_json(base, &now)?,
        // The exporter's JSON as it came (fields this build does not know included).
        (None, true) => {
            let value: serde_json::Value = serde_json::from_slice(&body)?;
            serde_json::to_string_pretty(&value)? + "\n"
        }
        (None, false) if args.debug == 2 => render_tasks(&now),
        (None, false) => render_groups(&now),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &out)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "taskscope dump: {} tasks in {} groups written to {}",
                now.total_tasks,
                now.groups.len(),
                path.display()
            );
        }
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush());
        }
    }
    Ok(())
}

/// Decodes a dump from JSON, refusing what is not one (a snapshot, say) and dumps from a
/// newer schema.
pub fn dump_from_value(value: serde_json::Value) -> anyhow::Result<Dump> {
    anyhow::ensure!(
        value.get("groups").is_some_and(|g| g.is_array()),
        "it has no \"groups\" list"
    );
    let dump: Dump = serde_json::from_value(value)?;
    anyhow::ensure!(
        dump.schema_version <= SCHEMA_VERSION,
        "its schema version {} is newer than this taskscope ({SCHEMA_VERSION})",
        dump.schema_version
    );
    Ok(dump)
}

/// Reads a JSON dump saved with `taskscope dump --json -o FILE`.
pub fn read_dump_file(path: &Path) -> anyhow::Result<Dump> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the base dump {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the base dump {} is not JSON (save one with `taskscope dump --json -o FILE`)",
            path.display()
        )
    })?;
    dump_from_value(value).with_context(|| {
        format!(
            "the base dump {} is not a taskscope dump (save one with `taskscope dump --json -o FILE`)",
            path.display()
        )
    })
}

/// The dump's header: what it is, how complete, how long it took.
fn header(out: &mut String, dump: &Dump) {
    let source = match dump.source {
        DumpSource::Traced => "traced",
        DumpSource::Registry => "registry only",
        DumpSource::Unknown => "unknown source",
    };
    let _ = writeln!(
        out,
        "task dump: {} tasks in {} groups ({source}{}), taken in {:.1} ms, runtime paused {:.1} ms",
        dump.total_tasks,
        dump.groups.len(),
        if dump.complete { "" } else { ", INCOMPLETE" },
        dump.took_seconds * 1e3,
        dump.paused_seconds * 1e3,
    );
    for note in &dump.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for b in &dump.blocked {
        let _ = writeln!(
            out,
            "blocked: task {} spawned at {} has been in one poll for {:.2} s",
            b.task, b.site, b.seconds
        );
    }
    out.push('\n');
}

fn stacks(out: &mut String, stacks: &[Vec<Frame>]) {
    if stacks.is_empty() {
        out.push_str("#\t(no await point: registry only, or not traced)\n");
    }
    for (i, stack) in stacks.iter().enumerate() {
        if i > 0 {
            out.push_str("#\t-- and, awaited at the same time:\n");
        }
        for f in stack {
            let _ = writeln!(out, "#\t{}\t{}:{}", f.function, f.file, f.line);
        }
    }
}

fn spread(s: &Spread) -> String {
    format!("{:.3}/{:.3}/{:.3}s", s.min, s.median, s.max)
}

/// Text of `--debug 1`: one block per group, as the dump lists them (largest first); the
/// same text as the exporter's `/debug/taskscope/dump?debug=1`.
pub fn render_groups(dump: &Dump) -> String {
    let mut out = String::new();
    header(&mut out, dump);
    for g in &dump.groups {
        let _ = writeln!(
            out,
            "{} @ {}\tidle min/median/max {}\tage {}",
            g.count,
            g.site,
            spread(&g.idle_seconds),
            spread(&g.age_seconds)
        );
        stacks(&mut out, &g.stacks);
        out.push('\n');
    }
    out
}

/// Text of `--debug 2`: every task, oldest first; the same text as the exporter's
/// `/debug/taskscope/dump?debug=2`.
pub fn render_tasks(dump: &Dump) -> String {
    let mut out = String::new();
    header(&mut out, dump);
    for t in &dump.tasks {
        let state = match t.state {
            TaskState::Running => "running",
            TaskState::Idle => "idle",
            TaskState::Unknown => "unknown",
        };
        let _ = writeln!(
            out,
            "task {} [{state}, idle {:.3}s, age {:.3}s, {} polls] spawned at {}",
            t.id, t.idle_seconds, t.age_seconds, t.polls, t.site
        );
        stacks(&mut out, &t.stacks);
        out.push('\n');
    }
    out
}

/// How one group (spawn site + stacks) changed between two dumps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupDelta {
    /// Spawn site.
    pub site: String,
    /// Where the tasks wait, innermost frame first.
    pub stacks: Vec<Vec<Frame>>,
    /// Tasks in the base dump.
    pub base: u64,
    /// Tasks now.
    pub now: u64,
    /// `now - base`.
    pub delta: i64,
}

/// Groups whose count changed from `base` to `now`, keyed by site and stacks: grown first
/// (largest growth first), then shrunk (largest drop first); unchanged groups are left out.
pub fn diff(base: &Dump, now: &Dump) -> Vec<GroupDelta> {
    type Key = (String, Vec<Vec<Frame>>);
    let mut counts: HashMap<Key, (u64, u64)> = HashMap::new();
    let mut order: Vec<Key> = Vec::new();
    for (dump, is_now) in [(now, true), (base, false)] {
        for g in &dump.groups {
            let key = (g.site.clone(), g.stacks.clone());
            let entry = counts.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (0, 0)
            });
            if is_now {
                entry.1 += g.count;
            } else {
                entry.0 += g.count;
            }
        }
    }
    let mut deltas: Vec<GroupDelta> = order
        .into_iter()
        .filter_map(|key| {
            let (b, n) = counts[&key];
            let delta = signed(n).saturating_sub(signed(b));
            (delta != 0).then_some(GroupDelta {
                site: key.0,
                stacks: key.1,
                base: b,
                now: n,
                delta,
            })
        })
        .collect();
    deltas.sort_by(|a, b| {
        (a.delta < 0)
            .cmp(&(b.delta < 0))
            .then(b.delta.unsigned_abs().cmp(&a.delta.unsigned_abs()))
            .then_with(|| a.site.cmp(&b.site))
    });
    deltas
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Text of `--base`: a header with the totals, then one block per changed group, with a
/// signed count (`+3 @ site`).
pub fn render_diff(base: &Dump, now: &Dump, deltas: &[GroupDelta]) -> String {
    let mut out = String::new();
    let total = signed(now.total_tasks).saturating_sub(signed(base.total_tasks));
    let grown = deltas.iter().filter(|d| d.delta > 0).count();
    let _ = writeln!(
        out,
        "task dump diff: {} tasks now, {} in the base ({total:+}); {grown} groups grew, {} shrank",
        now.total_tasks,
        base.total_tasks,
        deltas.len() - grown
    );
    if base.source != now.source {
        out.push_str(
            "note: one dump is traced and the other is not: their groups differ in stacks\n",
        );
    }
    out.push('\n');
    for d in deltas {
        let _ = writeln!(out, "{:+} @ {}\t({} -> {})", d.delta, d.site, d.base, d.now);
        stacks(&mut out, &d.stacks);
        out.push('\n');
    }
    out
}

/// `--json --base`: the totals and the changed groups as JSON.
pub fn diff_json(base: &Dump, now: &Dump) -> anyhow::Result<String> {
    let value = serde_json::json!({
        "base_total_tasks": base.total_tasks,
        "total_tasks": now.total_tasks,
        "groups": diff(base, now),
    });
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}
