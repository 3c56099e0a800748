//! The help overlay (`?`), pausing the display (`p`) and the refresh interval (`+`/`-`),
//! rendered into a `TestBackend` (NO_COLOR) and read back as text. The keys themselves
//! are mapped to these calls in `lib.rs` (and tested there).

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use taskscope::model::{ProcessInfo, SCHEMA_VERSION, SiteRow, Snapshot};
use taskscope_tui::state::{App, View};
use taskscope_tui::{MAX_REFRESH, MIN_REFRESH, view};

const SITE: &str = "demo-service/src/main.rs:77:9";

fn snapshot(live: u64) -> Snapshot {
    Snapshot {
        schema_version: SCHEMA_VERSION,
        uptime_seconds: 30.0,
        process: ProcessInfo {
            pid: 7,
            name: "demo".into(),
        },
        sites: vec![SiteRow {
            site: SITE.into(),
            live,
            spawned: live,
            ..SiteRow::default()
        }],
        ..Snapshot::default()
    }
}

fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::render(f, app)).unwrap();
    let buf = terminal.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

/// A line's text without the pane's borders and trailing blanks.
fn inner(line: &str) -> &str {
    line.trim_start_matches('│')
        .trim_end_matches(|c: char| c == '│' || c.is_whitespace())
}

fn has_line(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| inner(l) == want)
}

/// The words of the first line containing `needle`.
fn row_words(lines: &[String], needle: &str) -> Vec<String> {
    let line = lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"));
    inner(line).split_whitespace().map(str::to_string).collect()
}

fn app_at(t0: Instant) -> App {
    let mut app = App::new("http://127.0.0.1:6060", t0).with_no_color(true);
    app.apply(Ok(snapshot(5)), t0);
    app
}

/// Every line of the help overlay, in order.
const HELP_TEXT: &[&str] = &[
    "Global    ?                       this help (? or Esc closes it)",
    "          p                       pause/resume the display (still fetching)",
    "          + / -                   refresh twice as often / half as often",
    "          b                       mark a baseline: Δbase counts from it",
    "          o                       overview: tasks, workers, pools, findings",
    "          Tab / 1-9               several targets: next target / target N",
    "          s                       save the snapshot (and dump) to a file",
    "          R                       start/stop recording to a file",
    "          ← → or [ ]              in a recording: a frame back / forward",
    "          mouse wheel             scroll the table, detail or this help",
    "          mouse click             select the table row clicked",
    "          Ctrl-C                  quit from any view",
    "Sites     q / Esc                 quit",
    "          ↑/↓ PgUp/PgDn Home/End  select a site (also j/k g/G)",
    "          Enter                   the site's detail and task dump",
    "          l                       locks view",
    "          f                       findings view",
    "          S                       sort by the next column (shown in title)",
    "          /                       filter by text (Enter keeps, Esc clears)",
    "Detail    r                       take a new task dump",
    "          ↑/↓ PgUp/PgDn Home/End  scroll",
    "          q / Esc                 back",
    "Locks     ↑/↓ PgUp/PgDn Home/End  select a lock",
    "          f                       findings view",
    "          l / q / Esc             back",
    "Findings  ↑/↓ PgUp/PgDn Home/End  select a finding",
    "          Enter                   its site's detail, or its lock",
    "          f / q / Esc             back",
    "Overview  o / q / Esc             back",
];

#[test]
fn help_lists_every_key_of_every_view() {
    let t0 = Instant::now();
    let mut app = app_at(t0);
    app.toggle_help();
    assert!(app.help_shown());
    let n = HELP_TEXT.len();
    // On a tall 80-column screen: a box as wide as the screen (no view border peeks out
    // beside it), centred, one line per key.
    let lines = screen(&app, 80, 60);
    let text = lines.join("\n");
    let top = (60 - (n + 2)) / 2;
    let boxed = |lines: &[String], y: usize| -> String {
        let chars: Vec<char> = lines[y].chars().collect();
        chars.iter().collect()
    };
    assert!(
        boxed(&lines, top).starts_with("┌ Keys (? or Esc closes) ─"),
        "{text}"
    );
    assert!(boxed(&lines, top + n + 1).starts_with("└───"), "{text}");
    let help: Vec<String> = (top + 1..=top + n)
        .map(|y| inner(&boxed(&lines, y)).to_string())
        .collect();
    assert_eq!(help, HELP_TEXT, "{text}");
    // The view stays underneath, its footer pointing at the help.
    assert_eq!(inner(&lines[59]), view::FOOTER, "{text}");
    assert!(view::FOOTER.contains("? all keys"));

    // In 80x24 the box fills the screen and scrolls: the title says which lines are shown.
    let fit = |app: &mut App| {
        let (rows, lines) = view::help_metrics(ratatui::layout::Rect::new(0, 0, 80, 24));
        app.set_help_viewport(rows, lines);
        screen(app, 80, 24)
    };
    let rows = 22;
    let lines = fit(&mut app);
    let title = if n > rows {
        format!("┌ Keys 1-{rows} of {n} (↑/↓ scroll, ? or Esc closes) ─")
    } else {
        "┌ Keys (? or Esc closes) ─".to_string()
    };
    assert!(boxed(&lines, 0).starts_with(&title), "{lines:#?}");
    assert_eq!(inner(&boxed(&lines, 1)), HELP_TEXT[0]);
    app.scroll_help(taskscope_tui::state::Nav::End);
    let lines = fit(&mut app);
    assert_eq!(inner(&boxed(&lines, 22)), HELP_TEXT[n - 1], "{lines:#?}");

    // Over another view too; closed, the view is back as it was.
    app.open_findings();
    let text = screen(&app, 80, 60).join("\n");
    assert!(text.contains("this help (? or Esc closes it)"), "{text}");
    app.close_help();
    assert!(!app.help_shown());
    assert_eq!(app.view(), View::Findings);
    let text = screen(&app, 80, 24).join("\n");
    assert!(!text.contains("Keys (? or Esc closes)"), "{text}");
    assert!(text.contains("taskscope › findings"), "{text}");
}

#[test]
fn every_footer_fits_80_columns_and_points_at_the_help() {
    for footer in [
        view::FOOTER,
        view::DETAIL_FOOTER,
        view::DETAIL_FOOTER_NO_DUMPS,
        view::REPLAY_FOOTER,
        view::LOCKS_FOOTER,
        view::FINDINGS_FOOTER,
        view::OVERVIEW_FOOTER,
    ] {
        assert!(footer.chars().count() <= 80, "{footer}");
        assert!(footer.ends_with("? all keys"), "{footer}");
    }
    for (v, keys, what) in view::HELP {
        let line = format!("{v:<9} {keys:<22}  {what}");
        assert!(line.chars().count() <= 76, "{line}");
    }
}

#[test]
fn pause_freezes_the_display_while_fetching_goes_on() {
    let t0 = Instant::now();
    let mut app = app_at(t0);
    let live = |lines: &[String]| row_words(lines, "Live tasks:")[2].clone();
    let lines = screen(&app, 100, 24);
    assert_eq!(live(&lines), "5");
    assert!(
        has_line(
            &lines,
            "Status: CONNECTED every 1.0s   Target: http://127.0.0.1:6060"
        ),
        "{lines:#?}"
    );

    assert!(app.toggle_pause(t0 + Duration::from_secs(1)));
    // A new snapshot arrives, and time passes: the screen keeps the old one.
    app.apply(Ok(snapshot(9)), t0 + Duration::from_secs(2));
    app.tick(t0 + Duration::from_secs(4));
    let lines = screen(&app, 100, 24);
    let text = lines.join("\n");
    assert_eq!(live(&lines), "5", "{text}");
    assert_eq!(row_words(&lines, SITE)[1], "5", "{text}");
    assert!(
        has_line(
            &lines,
            "Status: CONNECTED every 1.0s   PAUSED 3s ago   Target: http://127.0.0.1:6060"
        ),
        "{text}"
    );
    assert_eq!(app.rows()[0].live, 5);
    assert_eq!(app.total_history().len(), 1, "the shown history is frozen");
    // It fits 80 columns (the URL, last on the line, is what gets cut).
    let small = screen(&app, 80, 24);
    assert!(
        inner(&small[1]).starts_with("Status: CONNECTED every 1.0s   PAUSED 3s ago   Target: "),
        "{small:#?}"
    );

    // Resumed: the new snapshot, and the history gathered meanwhile.
    assert!(!app.toggle_pause(t0 + Duration::from_secs(5)));
    assert_eq!(app.paused_at(), None);
    let lines = screen(&app, 100, 24);
    let text = lines.join("\n");
    assert_eq!(live(&lines), "9", "{text}");
    assert_eq!(row_words(&lines, SITE)[1], "9", "{text}");
    assert!(!text.contains("PAUSED"), "{text}");
    assert_eq!(app.total_history().len(), 2);
    assert_eq!(app.site_history(SITE).map(|h| h.len()), Some(2));
}

#[test]
fn paused_views_show_the_frozen_snapshot() {
    let t0 = Instant::now();
    let mut app = app_at(t0);
    app.toggle_pause(t0);
    app.apply(Ok(snapshot(9)), t0);
    // The detail view's counts, too.
    assert!(app.open_detail());
    let text = screen(&app, 100, 24).join("\n");
    assert!(text.contains("Live: 5   Spawned: 5"), "{text}");
    assert!(text.contains("PAUSED 0s ago"), "{text}");
    // A target that goes away while paused still shows as disconnected.
    app.apply(
        Err(taskscope_tui::client::FetchError::ConnectionRefused {
            url: "http://127.0.0.1:6060/debug/taskscope/snapshot".into(),
        }),
        t0 + Duration::from_secs(2),
    );
    let text = screen(&app, 120, 24).join("\n");
    assert!(
        text.contains("Status: DISCONNECTED every 1.0s — showing data from 2s ago   PAUSED 2s ago"),
        "{text}"
    );
    app.toggle_pause(t0 + Duration::from_secs(2));
    let text = screen(&app, 120, 24).join("\n");
    assert!(text.contains("Live: 9   Spawned: 9"), "{text}");
}

#[test]
fn plus_and_minus_halve_and_double_the_interval_within_bounds() {
    let t0 = Instant::now();
    let mut app = app_at(t0);
    let status = |app: &App| inner(&screen(app, 100, 24)[1]).to_string();
    assert_eq!(app.refresh(), Duration::from_secs(1));
    assert!(status(&app).starts_with("Status: CONNECTED every 1.0s   Target: "));

    // + halves, down to 100 ms and no further.
    let mut shown = Vec::new();
    for _ in 0..5 {
        app.refresh_faster();
        shown.push(status(&app));
    }
    let every: Vec<&str> = shown
        .iter()
        .map(|s| s.split("   ").next().unwrap())
        .collect();
    assert_eq!(
        every,
        [
            "Status: CONNECTED every 500ms",
            "Status: CONNECTED every 250ms",
            "Status: CONNECTED every 125ms",
            "Status: CONNECTED every 100ms",
            "Status: CONNECTED every 100ms",
        ]
    );
    assert_eq!(app.refresh(), MIN_REFRESH);

    // - doubles, up to 60 s and no further.
    let mut steps = Vec::new();
    for _ in 0..11 {
        steps.push(app.refresh_slower().as_millis());
    }
    assert_eq!(
        steps,
        [
            200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000
        ]
    );
    assert_eq!(app.refresh(), MAX_REFRESH);
    assert!(status(&app).starts_with("Status: CONNECTED every 60.0s   Target: "));
    app.refresh_faster();
    assert!(status(&app).starts_with("Status: CONNECTED every 30.0s   Target: "));

    // The configured interval is held to the same bounds.
    let app = App::new("http://x", t0).with_refresh(Duration::from_millis(1));
    assert_eq!(app.refresh(), MIN_REFRESH);
    let app = App::new("http://x", t0).with_refresh(Duration::from_secs(3600));
    assert_eq!(app.refresh(), MAX_REFRESH);
}
