//! `taskscope`: watch a tokio service's tasks, per spawn site, in the terminal; or take a
//! task dump (`taskscope dump`).

mod diff_cli;
mod dump_cli;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Watch live tokio tasks per spawn site, from a service's taskscope exporter.
#[derive(Debug, Parser)]
#[command(
    name = "taskscope",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Base URL of the service's exporter (the scheme may be omitted); several to watch
    /// several services at once (Tab or 1-9 switch, the overview sums them)
    /// [default: http://127.0.0.1:6060]
    urls: Vec<String>,

    /// A file listing more targets, one URL per line (# comments and blank lines skipped).
    #[arg(long, value_name = "FILE")]
    targets: Option<std::path::PathBuf>,

    /// Milliseconds between snapshots (100 to 60000).
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    refresh: u64,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Take a task dump: tasks grouped by spawn site and await point (like Go's
    /// goroutine?debug=1), every task (--debug 2), JSON, or what changed since a saved dump
    /// (--base).
    Dump(dump_cli::DumpArgs),
    /// Mark a baseline on the service: later `taskscope diff` (and the TUI) show what
    /// changed per spawn site since.
    Baseline(diff_cli::BaselineArgs),
    /// What changed per spawn site since the baseline, or over the last DURATION
    /// (--since 60s): live before and after, spawned and completed in between.
    Diff(diff_cli::DiffArgs),
    /// What the runtime's workers are doing now: polls in progress (blocked workers
    /// first, with task, site and duration), busy ratios, blocking pool, scheduling delay.
    Top(diff_cli::BaselineArgs),
    /// Open a snapshot file (saved with `s` in the TUI) or a recording (`taskscope record`,
    /// `R` in the TUI) with no live target: the same views; a recording with a time cursor
    /// (←/→ step a frame).
    Open(OpenArgs),
    /// Flight recorder: write a compressed recording of the service's snapshots, one every
    /// --interval, until --duration is over, a cap is reached (--max-frames, --max-mb of
    /// uncompressed JSON, whichever comes first) or Ctrl-C. Replay it with `taskscope open`.
    Record(RecordArgs),
    /// Watch a service that runs console-subscriber (tokio-console's instrumentation)
    /// instead of the taskscope agent: the same views from console's gRPC API, or one
    /// snapshot with --once.
    Console(ConsoleArgs),
}

/// `taskscope console`.
#[derive(Debug, clap::Args)]
struct ConsoleArgs {
    /// console-subscriber's address (the scheme may be omitted).
    #[arg(default_value = taskscope_tui::console::DEFAULT_CONSOLE_URL)]
    url: String,
    /// Print one snapshot and exit, once console has sent its whole state (or after --for).
    #[arg(long)]
    once: bool,
    /// With --once: JSON (a taskscope snapshot, console's extras under "console").
    #[arg(long, requires = "once")]
    json: bool,
    /// With --once: keep reading updates this long before printing (e.g. 5s), so waits
    /// between polls are seen.
    #[arg(long = "for", value_name = "DURATION", requires = "once",
          value_parser = humantime::parse_duration)]
    watch_for: Option<Duration>,
    /// Least idle time that counts as "idle too long", seconds (as the agent's
    /// --idle-floor: each site's threshold is this or 4x its longest seen wait).
    #[arg(long, value_name = "SECS", default_value_t = 120.0,
          value_parser = positive_secs)]
    idle_floor: f64,
    /// Milliseconds between screen refreshes (100 to 60000).
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    refresh: u64,
}

/// A number of seconds, more than 0 and at most a day.
fn positive_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs > 0.0 && secs <= 86_400.0 {
        Ok(secs)
    } else {
        Err(format!("{secs} is not between 0 and 86400 seconds"))
    }
}

fn run_console(args: &ConsoleArgs) -> anyhow::Result<String> {
    let settings = taskscope::LeakSettings {
        idle_floor: Duration::from_secs_f64(args.idle_floor),
        ..taskscope::LeakSettings::default()
    };
    if args.once {
        let watch_for = args.watch_for.unwrap_or(Duration::ZERO);
        return taskscope_tui::console::run_once(&args.url, &settings, watch_for, args.json);
    }
    taskscope_tui::console::run_tui(&args.url, settings, Duration::from_millis(args.refresh))?;
    Ok(String::new())
}

/// `taskscope open`.
#[derive(Debug, clap::Args)]
struct OpenArgs {
    /// The snapshot file (.json) or recording (.jsonl.gz); told apart by content.
    file: std::path::PathBuf,
}

/// `taskscope record`.
#[derive(Debug, clap::Args)]
struct RecordArgs {
    /// Base URL of the service's exporter (the scheme may be omitted).
    #[arg(default_value = taskscope_tui::DEFAULT_URL)]
    url: String,
    /// The recording to write (gzip-compressed JSON lines, e.g. incident.jsonl.gz); an
    /// existing file is not overwritten.
    #[arg(short, long, value_name = "FILE")]
    output: std::path::PathBuf,
    /// Stop after this long (e.g. 60s, 10m); without it, at a cap or Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Time between snapshots (100ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = interval)]
    interval: Duration,
    /// Cap on frames: recording stops when it is reached.
    #[arg(long, value_name = "N", default_value_t = taskscope_tui::files::DEFAULT_MAX_FRAMES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    max_frames: usize,
    /// Cap on the recording's uncompressed size, in MiB: recording stops before passing it.
    #[arg(long, value_name = "MIB", default_value_t = taskscope_tui::files::DEFAULT_MAX_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    max_mb: u64,
}

/// A time between snapshots: 100ms to an hour.
fn interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
        Ok(d)
    } else {
        Err(format!("{text} is not between 100ms and 1h"))
    }
}

fn run_record(args: &RecordArgs) -> anyhow::Result<String> {
    let config = taskscope_tui::record::RecordConfig {
        output: args.output.clone(),
        duration: args.duration,
        interval: args.interval,
        limits: taskscope_tui::files::RecordingLimits {
            max_frames: args.max_frames,
            max_bytes: args.max_mb << 20,
        },
    };
    taskscope_tui::record::run_record(&args.url, &config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let printed = |name: &str, result: anyhow::Result<String>| match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("taskscope {name}: error: {e:#}");
            ExitCode::from(1)
        }
    };
    match &cli.command {
        Some(Command::Dump(args)) => {
            return printed("dump", dump_cli::run(args).map(|()| String::new()));
        }
        Some(Command::Baseline(args)) => return printed("baseline", diff_cli::run_baseline(args)),
        Some(Command::Diff(args)) => return printed("diff", diff_cli::run_diff(args)),
        Some(Command::Top(args)) => return printed("top", diff_cli::run_top(args)),
        Some(Command::Record(args)) => return printed("record", run_record(args)),
        Some(Command::Open(args)) => {
            return printed(
                "open",
                taskscope_tui::run_file(&args.file).map(|()| String::new()),
            );
        }
        Some(Command::Console(args)) => return printed("console", run_console(args)),
        None => {}
    }
    let result = targets(&cli)
        .and_then(|urls| taskscope_tui::run_many(&urls, Duration::from_millis(cli.refresh)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taskscope: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The targets to watch: those given, then those of --targets; the default one when
/// neither gives any.
fn targets(cli: &Cli) -> anyhow::Result<Vec<String>> {
    let mut urls = cli.urls.clone();
    if let Some(path) = &cli.targets {
        urls.extend(taskscope_tui::read_targets_file(path)?);
    }
    if urls.is_empty() {
        urls.push(taskscope_tui::DEFAULT_URL.to_string());
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["taskscope"]).unwrap();
        assert!(cli.urls.is_empty());
        assert_eq!(targets(&cli).unwrap(), ["http://127.0.0.1:6060"]);
        assert_eq!(cli.refresh, 1000);
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["taskscope", "127.0.0.1:7000", "--refresh", "250"]).unwrap();
        assert_eq!(
            (cli.urls, cli.refresh),
            (vec!["127.0.0.1:7000".to_string()], 250)
        );
        assert!(cli.command.is_none());
        // Several targets.
        let cli =
            Cli::try_parse_from(["taskscope", "h:1", "h:2", "http://h:3", "--refresh", "500"])
                .unwrap();
        assert_eq!((cli.urls.len(), cli.refresh), (3, 500));
        assert_eq!(cli.urls[2], "http://h:3");
        // A targets file adds to them; alone, it replaces the default.
        let file = std::env::temp_dir().join(format!("taskscope-cli-{}.txt", std::process::id()));
        std::fs::write(&file, "h:8 # db\n").unwrap();
        let path = file.to_str().unwrap();
        let cli = Cli::try_parse_from(["taskscope", "h:1", "--targets", path]).unwrap();
        assert_eq!(targets(&cli).unwrap(), ["h:1", "h:8"]);
        let cli = Cli::try_parse_from(["taskscope", "--targets", path]).unwrap();
        assert_eq!(targets(&cli).unwrap(), ["h:8"]);
        std::fs::remove_file(&file).unwrap();
        assert!(targets(&cli).is_err());
        assert!(cli.command.is_none());
        assert!(Cli::try_parse_from(["taskscope", "--refresh", "50"]).is_err());
    }

    #[test]
    fn dump_subcommand() {
        let cli = Cli::try_parse_from(["taskscope", "dump"]).unwrap();
        let Some(Command::Dump(args)) = cli.command else {
            panic!("expected the dump subcommand");
        };
        assert_eq!(args.url, "http://127.0.0.1:6060");
        assert_eq!(
            (args.debug, args.json, args.registry_only),
            (1, false, false)
        );
        assert_eq!(
            (args.output, args.base, args.site, args.timeout),
            (None, None, None, None)
        );

        let cli = Cli::try_parse_from([
            "taskscope",
            "dump",
            "127.0.0.1:7000",
            "--debug",
            "2",
            "--json",
            "-o",
            "d.json",
            "--timeout",
            "1.5",
            "--site",
            "src/a.rs:1:2",
            "--registry-only",
            "--base",
            "old.json",
        ])
        .unwrap();
        let Some(Command::Dump(args)) = cli.command else {
            panic!("expected the dump subcommand");
        };
        assert_eq!(args.url, "127.0.0.1:7000");
        assert_eq!((args.debug, args.json, args.registry_only), (2, true, true));
        assert_eq!(args.output.as_deref(), Some(std::path::Path::new("d.json")));
        assert_eq!(args.base.as_deref(), Some(std::path::Path::new("old.json")));
        assert_eq!(args.site.as_deref(), Some("src/a.rs:1:2"));
        assert_eq!(args.timeout, Some(1.5));
        assert!(Cli::try_parse_from(["taskscope", "dump", "--debug", "3"]).is_err());
        assert!(Cli::try_parse_from(["taskscope", "dump", "--refresh", "250"]).is_err());
    }

    #[test]
    fn diff_and_baseline_subcommands() {
        let cli = Cli::try_parse_from(["taskscope", "diff", "h:1", "--since", "90s"]).unwrap();
        let Some(Command::Diff(args)) = cli.command else {
            panic!("expected the diff subcommand");
        };
        assert_eq!(args.url, "h:1");
        assert_eq!(args.since, Some(Duration::from_secs(90)));
        let cli = Cli::try_parse_from(["taskscope", "diff"]).unwrap();
        let Some(Command::Diff(args)) = cli.command else {
            panic!("expected the diff subcommand");
        };
        assert_eq!(
            (args.url.as_str(), args.since),
            ("http://127.0.0.1:6060", None)
        );
        assert!(Cli::try_parse_from(["taskscope", "diff", "--since", "later"]).is_err());
        let cli = Cli::try_parse_from(["taskscope", "baseline"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Baseline(_))));
    }

    #[test]
    fn open_subcommand() {
        let cli =
            Cli::try_parse_from(["taskscope", "open", "taskscope-42-1700000000.json"]).unwrap();
        let Some(Command::Open(args)) = cli.command else {
            panic!("expected the open subcommand");
        };
        assert_eq!(
            args.file,
            std::path::PathBuf::from("taskscope-42-1700000000.json")
        );
        assert!(Cli::try_parse_from(["taskscope", "open"]).is_err());
    }

    #[test]
    fn record_subcommand() {
        let cli = Cli::try_parse_from(["taskscope", "record", "-o", "r.jsonl.gz"]).unwrap();
        let Some(Command::Record(args)) = cli.command else {
            panic!("expected the record subcommand");
        };
        assert_eq!(args.url, "http://127.0.0.1:6060");
        assert_eq!(args.output, std::path::PathBuf::from("r.jsonl.gz"));
        assert_eq!(
            (args.duration, args.interval, args.max_frames, args.max_mb),
            (None, Duration::from_secs(1), 3600, 512)
        );
        let cli = Cli::try_parse_from([
            "taskscope",
            "record",
            "h:1",
            "--output",
            "x.gz",
            "--duration",
            "90s",
            "--interval",
            "250ms",
            "--max-frames",
            "10",
            "--max-mb",
            "3",
        ])
        .unwrap();
        let Some(Command::Record(args)) = cli.command else {
            panic!("expected the record subcommand");
        };
        assert_eq!(args.url, "h:1");
        assert_eq!(
            (args.duration, args.interval, args.max_frames, args.max_mb),
            (
                Some(Duration::from_secs(90)),
                Duration::from_millis(250),
                10,
                3
            )
        );
        // The file is required; intervals and caps are bounded.
        assert!(Cli::try_parse_from(["taskscope", "record"]).is_err());
        for bad in [
            ["--interval", "10ms"],
            ["--interval", "2h"],
            ["--max-frames", "0"],
            ["--max-mb", "0"],
        ] {
            let mut argv = vec!["taskscope", "record", "-o", "x"];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
        // The caps are stated in --help.
        let help = Cli::command()
            .find_subcommand_mut("record")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("--max-frames <N>"), "{help}");
        assert!(help.contains("[default: 3600]"), "{help}");
        assert!(help.contains("[default: 512]"), "{help}");
    }

    #[test]
    fn console_subcommand() {
        let cli = Cli::try_parse_from(["taskscope", "console"]).unwrap();
        let Some(Command::Console(args)) = cli.command else {
            panic!("expected the console subcommand");
        };
        assert_eq!(args.url, "http://127.0.0.1:6669");
        assert_eq!((args.once, args.json, args.watch_for), (false, false, None));
        assert_eq!((args.idle_floor, args.refresh), (120.0, 1000));
        let cli = Cli::try_parse_from([
            "taskscope",
            "console",
            "h:7000",
            "--once",
            "--json",
            "--for",
            "3s",
            "--idle-floor",
            "1",
        ])
        .unwrap();
        let Some(Command::Console(args)) = cli.command else {
            panic!("expected the console subcommand");
        };
        assert_eq!(args.url, "h:7000");
        assert_eq!((args.once, args.json), (true, true));
        assert_eq!(args.watch_for, Some(Duration::from_secs(3)));
        assert_eq!(args.idle_floor, 1.0);
        // --json and --for only with --once; a floor must be positive.
        assert!(Cli::try_parse_from(["taskscope", "console", "--json"]).is_err());
        assert!(Cli::try_parse_from(["taskscope", "console", "--for", "1s"]).is_err());
        assert!(Cli::try_parse_from(["taskscope", "console", "--idle-floor", "0"]).is_err());
    }
}
