//! `taskscope`: watch a tokio service's tasks, per spawn site, in the terminal; or take a
//! task dump (`taskscope dump`).

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
    /// Base URL of the service's exporter (the scheme may be omitted).
    #[arg(default_value = taskscope_tui::DEFAULT_URL)]
    url: String,

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Dump(args)) = &cli.command {
        return match dump_cli::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("taskscope dump: error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let config = taskscope_tui::Config {
        url: cli.url,
        refresh: Duration::from_millis(cli.refresh),
    };
    match taskscope_tui::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taskscope: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["taskscope"]).unwrap();
        assert_eq!(cli.url, "http://127.0.0.1:6060");
        assert_eq!(cli.refresh, 1000);
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["taskscope", "127.0.0.1:7000", "--refresh", "250"]).unwrap();
        assert_eq!((cli.url.as_str(), cli.refresh), ("127.0.0.1:7000", 250));
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
}
