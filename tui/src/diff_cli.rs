//! `taskscope baseline` and `taskscope diff`: mark a baseline on a service, and show what
//! grew per spawn site since then, or over the last minutes (`--since 60s`), from the
//! agent's own sampled history.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use taskscope::model::BaselineDiff;
use taskscope_tui::client::{fetch_diff, mark_baseline};

/// Arguments of `taskscope baseline` and `taskscope top`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct BaselineArgs {
    /// Base URL of the service's exporter (the scheme may be omitted).
    #[arg(default_value = taskscope_tui::DEFAULT_URL)]
    pub url: String,
}

/// Arguments of `taskscope diff`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct DiffArgs {
    /// Base URL of the service's exporter (the scheme may be omitted).
    #[arg(default_value = taskscope_tui::DEFAULT_URL)]
    pub url: String,

    /// Compare with the counts this long ago (e.g. 60s, 5m, 90) instead of the baseline.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,

    /// Print the difference as JSON.
    #[arg(long)]
    pub json: bool,

    /// Also list sites whose live count did not change (they still spawned tasks).
    #[arg(long)]
    pub all: bool,
}

/// `60`, `60s`, `5m`, `1h30m`, `500ms`; plain numbers are seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{text:?} is too long a duration"))?,
        Ok(_) => return Err(format!("{text:?} is not a positive duration")),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration (60s, 5m, ...): {e}"))?,
    };
    if d.is_zero() {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(d)
}

fn client() -> anyhow::Result<(tokio::runtime::Runtime, reqwest::Client)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    let client = taskscope_tui::client::client_builder()?
        .build()
        .context("cannot build the HTTP client")?;
    Ok((runtime, client))
}

/// Runs `taskscope baseline`; returns the line to print.
pub fn run_baseline(args: &BaselineArgs) -> anyhow::Result<String> {
    let url = taskscope_tui::normalize_url(&args.url)?;
    let (runtime, client) = client()?;
    let at = runtime.block_on(mark_baseline(&client, &url))?;
    Ok(format!(
        "baseline marked on {url} at {}; `taskscope diff {url}` shows what changed since\n",
        fmt_utc(at)
    ))
}

/// Runs `taskscope top` (same arguments as `baseline`: a URL); returns the text to print.
pub fn run_top(args: &BaselineArgs) -> anyhow::Result<String> {
    let url = taskscope_tui::normalize_url(&args.url)?;
    let (runtime, client) = client()?;
    let snap = runtime.block_on(taskscope_tui::client::fetch_snapshot(&client, &url))?;
    Ok(taskscope_tui::top::render(&snap))
}

/// `HH:MM:SS UTC` of a Unix time in milliseconds.
fn fmt_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Runs `taskscope diff`; returns the text (or JSON) to print.
pub fn run_diff(args: &DiffArgs) -> anyhow::Result<String> {
    let url = taskscope_tui::normalize_url(&args.url)?;
    let (runtime, client) = client()?;
    let diff = runtime.block_on(fetch_diff(&client, &url, args.since))?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&diff)? + "\n");
    }
    Ok(render(&diff, args.since, args.all))
}

/// The diff as a table: sites whose live count changed, most grown first.
pub fn render(diff: &BaselineDiff, since: Option<Duration>, all: bool) -> String {
    let what = match since {
        Some(_) => format!("over the last {:.0} s", diff.age_seconds),
        None => format!("since the baseline {:.0} s ago", diff.age_seconds),
    };
    let shown: Vec<_> = diff
        .sites
        .iter()
        .filter(|s| all || s.live_delta() != 0)
        .collect();
    let grew = diff.sites.iter().filter(|s| s.live_delta() > 0).count();
    let shrank = diff.sites.iter().filter(|s| s.live_delta() < 0).count();
    let net: i64 = diff.sites.iter().map(|s| s.live_delta()).sum();
    let mut out =
        format!("live tasks {what}: {net:+} in all; {grew} sites grew, {shrank} shrank\n");
    if shown.is_empty() {
        out.push_str("no site's live count changed\n");
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:>7} {:>15} {:>9} {:>9}  site",
        "Δlive", "live", "spawned", "completed"
    );
    for s in shown {
        let _ = writeln!(
            out,
            "{:>+7} {:>15} {:>9} {:>9}  {}",
            s.live_delta(),
            format!("{} -> {}", s.live_before, s.live_after),
            s.spawned,
            s.completed,
            s.site
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope::model::SiteDiff;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn renders_what_grew_first() {
        let diff = BaselineDiff {
            marked_at_unix_ms: 0,
            age_seconds: 60.2,
            sites: vec![
                SiteDiff {
                    site: "src/leak.rs:10:5".into(),
                    live_before: 3,
                    live_after: 63,
                    spawned: 60,
                    completed: 0,
                },
                SiteDiff {
                    site: "src/ok.rs:1:1".into(),
                    live_before: 2,
                    live_after: 2,
                    spawned: 500,
                    completed: 500,
                },
                SiteDiff {
                    site: "src/gone.rs:2:2".into(),
                    live_before: 4,
                    live_after: 1,
                    spawned: 0,
                    completed: 3,
                },
            ],
        };
        let text = render(&diff, Some(Duration::from_secs(60)), false);
        assert_eq!(
            text,
            "live tasks over the last 60 s: +57 in all; 1 sites grew, 1 shrank\n\
             \n  Δlive            live   spawned completed  site\n\
             \x20   +60         3 -> 63        60         0  src/leak.rs:10:5\n\
             \x20    -3          4 -> 1         0         3  src/gone.rs:2:2\n"
        );
        assert!(render(&diff, None, true).contains("src/ok.rs:1:1"));
        assert!(render(&diff, None, false).starts_with("live tasks since the baseline 60 s ago"));
    }
}
