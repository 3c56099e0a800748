//! `taskscope`: watch a tokio service's tasks, per spawn site, in the terminal.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Watch live tokio tasks per spawn site, from a service's taskscope exporter.
#[derive(Debug, Parser)]
#[command(name = "taskscope", version, about)]
struct Cli {
    /// Base URL of the service's exporter (the scheme may be omitted).
    #[arg(default_value = taskscope_tui::DEFAULT_URL)]
    url: String,

    /// Milliseconds between snapshots (100 to 60000).
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    refresh: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        let cli = Cli::try_parse_from(["taskscope", "127.0.0.1:7000", "--refresh", "250"]).unwrap();
        assert_eq!((cli.url.as_str(), cli.refresh), ("127.0.0.1:7000", 250));
        assert!(Cli::try_parse_from(["taskscope", "--refresh", "50"]).is_err());
    }
}
