//! Drawing an [`App`] into a ratatui frame: the sites table, one site's detail view with
//! its task dump, the locks view or the findings view, and the help overlay over any of
//! them. Nothing here changes state.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

use taskscope::model::{
    DumpGroup, DumpSource, DumpTask, Evidence, Finding, Frame as StackFrame, LockHolder, LockKind,
    LockMode, LockRow, LockWaiter, RuntimeInfo, Severity, Spread, TaskRow, TaskState,
};

use crate::state::{
    App, ConnectionStatus, Detail, FindingTarget, HISTORY_LEN, Replay, ReplayKind, SortColumn,
    View, Workbench,
};

mod overview;

pub use overview::{MAX_WORKER_LINES, OVERVIEW_FOOTER};

/// Block characters used by the text sparklines, lowest to highest.
pub const SPARK_CHARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Widest sparkline column, in characters.
pub const SPARK_WIDTH: usize = 20;

/// Smallest range a sparkline is drawn against (see [`sparkline`]).
pub const SPARK_MIN_RANGE: u64 = 10;

/// The keys line at the bottom of the sites table.
pub const FOOTER: &str =
    "q quit  ↑/↓ select  Enter site & task dump  l locks  f findings  ? all keys";

/// The keys line at the bottom of the sites table while a recording is replayed.
pub const REPLAY_FOOTER: &str =
    "q quit  ←/→ frame  ↑/↓ select  Enter site  l locks  f findings  ? all keys";

/// The keys line at the bottom of the locks view.
pub const LOCKS_FOOTER: &str = "l/q/Esc back  ↑/↓ select lock  PgUp/PgDn Home/End  ? all keys";

/// The keys line at the bottom of the findings view.
pub const FINDINGS_FOOTER: &str =
    "f/q/Esc back  ↑/↓ select  Enter open its site or lock  PgUp/PgDn  ? all keys";

/// Shown in the findings view when the snapshot has no finding.
pub const NO_FINDINGS: &str = "no findings: nothing looks wrong right now";

/// The help overlay (key `?`): view, keys, what they do; one line each, every key of
/// every view.
pub const HELP: &[(&str, &str, &str)] = &[
    ("Global", "?", "this help (? or Esc closes it)"),
    ("", "p", "pause/resume the display (still fetching)"),
    ("", "+ / -", "refresh twice as often / half as often"),
    ("", "b", "mark a baseline: Δbase counts from it"),
    ("", "o", "overview: tasks, workers, pools, findings"),
    ("", "Tab / 1-9", "several targets: next target / target N"),
    ("", "s", "save the snapshot (and dump) to a file"),
    ("", "R", "start/stop recording to a file"),
    ("", "← → or [ ]", "in a recording: a frame back / forward"),
    ("", "mouse wheel", "scroll the table, detail or this help"),
    ("", "mouse click", "select the table row clicked"),
    ("", "Ctrl-C", "quit from any view"),
    ("Sites", "q / Esc", "quit"),
    ("", "↑/↓ PgUp/PgDn Home/End", "select a site (also j/k g/G)"),
    ("", "Enter", "the site's detail and task dump"),
    ("", "l", "locks view"),
    ("", "f", "findings view"),
    ("", "S", "sort by the next column (shown in title)"),
    ("", "/", "filter by text (Enter keeps, Esc clears)"),
    ("Detail", "r", "take a new task dump"),
    ("", "↑/↓ PgUp/PgDn Home/End", "scroll"),
    ("", "q / Esc", "back"),
    ("Locks", "↑/↓ PgUp/PgDn Home/End", "select a lock"),
    ("", "f", "findings view"),
    ("", "l / q / Esc", "back"),
    ("Findings", "↑/↓ PgUp/PgDn Home/End", "select a finding"),
    ("", "Enter", "its site's detail, or its lock"),
    ("", "f / q / Esc", "back"),
    ("Overview", "o / q / Esc", "back"),
];

/// Shown in the locks view when the snapshot has no instrumented lock.
pub const NO_LOCKS: &str =
    "no instrumented locks: use taskscope::sync::{Mutex, RwLock, Semaphore} to see them here";

/// Most entries of a lock's `delay_by_holder_site` shown in the locks view.
pub const TOP_HOLDER_SITES: usize = 3;

/// Most lines of one finding's sentence in the locks view's detail pane.
const MAX_LOCK_FINDING_LINES: usize = 3;

/// Most lines of the findings pane (inside its border); findings that do not fit are
/// counted on its last line.
pub const MAX_FINDING_LINES: usize = 5;

/// The keys line at the bottom of the site detail view.
pub const DETAIL_FOOTER: &str = "q/Esc back  r new dump  ↑/↓ PgUp/PgDn Home/End scroll  ? all keys";

/// [`DETAIL_FOOTER`] for a source that cannot take task dumps (a file, tokio-console).
pub const DETAIL_FOOTER_NO_DUMPS: &str = "q/Esc back  ↑/↓ PgUp/PgDn Home/End scroll  ? all keys";

/// Shown in the detail view while a dump is being taken.
pub const TAKING_DUMP: &str = "taking a dump…";

// Fixed column widths: Live, Δ60s, Spawned, Completed, Busy (s); one space between columns.
const NUM_WIDTHS: [u16; 5] = [6, 6, 8, 9, 8];
const COLUMN_GAPS: u16 = 6;
const MIN_SITE_WIDTH: u16 = 26;

/// Width of the sites table's Idle column (tasks idle past the site's threshold), shown
/// where a site of [`IDLE_MIN_SITE`] characters and a whole sparkline still fit beside it.
const IDLE_WIDTH: u16 = 6;

/// Narrowest site column kept when the Idle column is added.
const IDLE_MIN_SITE: u16 = 40;

/// Draws the whole screen: header, spawn-site table (or the site detail view, the locks
/// view or the findings view), footer; and the help overlay over it when shown.
pub fn render(frame: &mut Frame, app: &App) {
    render_in(frame, frame.area(), app);
}

/// Draws several targets: a picker line on top (every target with its identity and state,
/// the shown one in brackets), the shown target's view below. One target: just
/// [`render`].
pub fn render_workbench(frame: &mut Frame, wb: &Workbench) {
    let area = workbench_view_area(frame.area(), wb);
    if area != frame.area() {
        let picker = Rect::new(frame.area().x, frame.area().y, frame.area().width, 1);
        frame.render_widget(Paragraph::new(picker_line(wb, picker.width)), picker);
    }
    render_in(frame, area, wb.app());
}

/// The part of the screen `area` the shown target's view gets: all of it for one target,
/// all but the picker line for several.
pub fn workbench_view_area(area: Rect, wb: &Workbench) -> Rect {
    if wb.targets().len() < 2 || area.height < 2 {
        return area;
    }
    Rect::new(area.x, area.y + 1, area.width, area.height - 1)
}

/// One target in the picker: number, identity (process name and pid once known, and the
/// runtime's name when it has one, else the target's address) and state (live tasks, or
/// why not).
fn picker_entry(index: usize, app: &App) -> String {
    let who = match app.snapshot() {
        Some(s) => match s.agent.runtime_name.as_deref() {
            Some(runtime) => format!(
                "{}:{}/{}",
                clean(&s.process.name),
                s.process.pid,
                clean(runtime)
            ),
            None => format!("{}:{}", clean(&s.process.name), s.process.pid),
        },
        None => clean(
            app.target
                .trim_start_matches("http://")
                .trim_start_matches("HTTP://"),
        ),
    };
    let state = match (&app.status, app.snapshot()) {
        (ConnectionStatus::Disconnected { .. }, _) => "DOWN".to_string(),
        (ConnectionStatus::Connecting, None) => "…".to_string(),
        (_, Some(_)) => format!("{} live", app.live_total()),
        (_, None) => "-".to_string(),
    };
    let restarted = app
        .restarted_at()
        .filter(|at| app.now().saturating_duration_since(*at).as_secs() < 600)
        .map_or("", |_| " restarted");
    format!("{} {who} {state}{restarted}", index + 1)
}

/// The picker line: every target, the shown one in brackets and reversed; when they do
/// not all fit in `width`, only the shown one with its position.
fn picker_line(wb: &Workbench, width: u16) -> Line<'static> {
    let theme = Theme::new(wb.app().no_color);
    let active_style = theme
        .fg(Color::Cyan)
        .add_modifier(Modifier::BOLD | Modifier::REVERSED);
    let hint = "  Tab/1-9 switch";
    let entries: Vec<String> = wb
        .targets()
        .iter()
        .enumerate()
        .map(|(i, t)| picker_entry(i, t))
        .collect();
    let full: usize = entries.iter().map(|e| e.chars().count() + 3).sum::<usize>() + hint.len();
    let mut spans = Vec::new();
    if full <= usize::from(width) {
        for (i, e) in entries.into_iter().enumerate() {
            let down = e.ends_with("DOWN");
            if i == wb.active() {
                spans.push(Span::styled(format!("[{e}]"), active_style));
            } else if down {
                spans.push(Span::styled(format!(" {e} "), theme.fg(Color::Red)));
            } else {
                spans.push(Span::raw(format!(" {e} ")));
            }
            spans.push(Span::raw(" "));
        }
    } else {
        spans.push(Span::styled(
            format!("target {}/{} ", wb.active() + 1, wb.targets().len()),
            theme.label(),
        ));
        spans.push(Span::styled(
            format!("[{}]", entries[wb.active()]),
            active_style,
        ));
    }
    spans.push(Span::styled(hint, theme.dim()));
    Line::from(spans)
}

/// [`render`] into `area` of the frame (the rest is left alone).
pub fn render_in(frame: &mut Frame, area: Rect, app: &App) {
    match app.view() {
        View::Detail => match app.detail() {
            Some(detail) => render_detail(frame, area, app, detail),
            None => render_sites(frame, area, app),
        },
        View::Locks => render_locks(frame, area, app),
        View::Findings => render_findings_view(frame, area, app),
        View::Overview => overview::render_overview(frame, area, app),
        View::Sites => render_sites(frame, area, app),
    }
    if app.help_shown() {
        render_help(frame, area, app);
    }
}

/// The lines of the help overlay: view, keys, description, in columns.
fn help_lines(app: &App) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    HELP.iter()
        .map(|(view, keys, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{view:<9} "),
                    theme.label().add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    format!("{keys:<22}  "),
                    theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect()
}

/// Where the help overlay goes on a screen `area`: centred, at most 78 wide, as high as
/// its lines allow.
fn help_area(area: Rect) -> Rect {
    // Narrower than the box and a margin on each side: the whole width, so that the view's
    // borders do not show around the box.
    let width = if area.width < HELP_WIDTH + 4 {
        area.width
    } else {
        HELP_WIDTH
    };
    let height = area.height.min(
        u16::try_from(HELP.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2),
    );
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

/// Width of the help box.
const HELP_WIDTH: u16 = 78;

/// How many help lines fit on a screen `area`, and how many there are (for scrolling).
pub fn help_metrics(area: Rect) -> (usize, usize) {
    let rows = usize::from(help_area(area).height.saturating_sub(2)).max(1);
    (rows, HELP.len())
}

/// The help overlay, centred over the view and cleared beneath; scrolled with the arrows
/// when it does not fit (the title says so).
fn render_help(frame: &mut Frame, area: Rect, app: &App) {
    let popup = help_area(area);
    let lines = help_lines(app);
    let (rows, total) = help_metrics(area);
    let theme = Theme::new(app.no_color);
    let first = app.help_scroll().min(total.saturating_sub(rows));
    let title = if total > rows {
        format!(
            " Keys {}-{} of {total} (↑/↓ scroll, ? or Esc closes) ",
            first + 1,
            first + rows
        )
    } else {
        " Keys (? or Esc closes) ".to_string()
    };
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        title,
        theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
    ));
    let scroll = u16::try_from(first).unwrap_or(u16::MAX);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(block).scroll((scroll, 0)),
        popup,
    );
}

fn render_sites(frame: &mut Frame, area: Rect, app: &App) {
    let [header, findings, table, footer] = layout(area, app);
    render_header(frame, header, app);
    render_findings(frame, findings, app);
    render_table(frame, table, app);
    let footer_text = if app.filter_editing() {
        filter_prompt(app)
    } else if app
        .replay()
        .is_some_and(|r| r.kind() == ReplayKind::Recording)
    {
        footer_line(app, REPLAY_FOOTER)
    } else {
        footer_line(app, FOOTER)
    };
    frame.render_widget(Paragraph::new(footer_text), footer);
}

/// The footer: a notice while it lasts, else the keys.
fn footer_line(app: &App, keys: &'static str) -> Line<'static> {
    let theme = Theme::new(app.no_color);
    match app.notice() {
        Some(notice) => Line::from(Span::styled(clean(notice), theme.fg(Color::Yellow))),
        None => Line::from(Span::styled(keys, theme.dim())),
    }
}

/// The findings pane, `width` columns wide: each finding the agent's own sentence (site,
/// count, the number that crossed the line) after its severity, wrapped at words; at most
/// [`MAX_FINDING_LINES`] lines, the rest counted.
fn finding_lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    let findings = app.snapshot().map_or(&[][..], |s| &s.findings[..]);
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut shown = 0;
    for f in findings {
        let entry = finding_entry_lines(f, width, theme, usize::MAX);
        if lines.len() + entry.len() > MAX_FINDING_LINES - 1 && shown > 0 {
            break;
        }
        lines.extend(entry);
        shown += 1;
    }
    if findings.len() > shown {
        lines.push(Line::from(Span::styled(
            format!("… and {} more (f lists them all)", findings.len() - shown),
            theme.dim(),
        )));
    }
    lines
}

/// Splits `text` into lines of at most `width` characters at spaces (a longer word is cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("never empty");
        let len = last.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(String::new());
        }
        let last = lines.last_mut().expect("never empty");
        if !last.is_empty() {
            last.push(' ');
        }
        last.push_str(word);
    }
    lines
        .into_iter()
        .flat_map(|l| wrap_chars(&l, width))
        .collect()
}

/// A fixed-width tag for a severity, and its colour.
fn severity_tag(severity: Severity) -> (&'static str, Color) {
    match severity {
        Severity::Critical => ("CRIT", Color::Red),
        Severity::Warning => ("WARN", Color::Yellow),
        Severity::Info => ("info", Color::Blue),
        Severity::Unknown => ("????", Color::Gray),
    }
}

fn render_findings(frame: &mut Frame, area: Rect, app: &App) {
    if area.height == 0 {
        return;
    }
    let theme = Theme::new(app.no_color);
    let n = app.snapshot().map_or(0, |s| s.findings.len());
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        format!(" Findings ({n}) "),
        theme.fg(Color::Red).add_modifier(Modifier::BOLD),
    ));
    let width = usize::from(area.width.saturating_sub(2));
    frame.render_widget(Paragraph::new(finding_lines(app, width)).block(block), area);
}

/// The sites table's title: how many sites (of how many, with a filter), the filter and
/// the sort column: ` Spawn sites (2 of 5, filter "leak") sorted by live `.
fn table_title(app: &App) -> String {
    let shown = app.rows().len();
    let count = if app.filter().is_empty() {
        shown.to_string()
    } else {
        format!(
            "{shown} of {}, filter \"{}\"",
            app.total_sites(),
            clean(app.filter())
        )
    };
    format!(" Spawn sites ({count}) sorted by {} ", app.sort().name())
}

/// While the filter is typed: a prompt in place of the footer.
fn filter_prompt(app: &App) -> Line<'static> {
    let theme = Theme::new(app.no_color);
    Line::from(vec![
        Span::styled("/", theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)),
        Span::raw(clean(app.filter())),
        Span::styled("▏", theme.fg(Color::Yellow)),
        Span::styled("  Enter keep  Esc clear  (site contains)", theme.dim()),
    ])
}

/// Index of the row of the table shown (sites, locks or findings) at the screen cell
/// `(column, row)` when the view is drawn in `area`; `None` off the table's body or past
/// its last row (for mouse clicks).
pub fn table_row_at(area: Rect, app: &App, column: u16, row: u16) -> Option<usize> {
    let (table, offset, len) = match app.view() {
        View::Sites => (layout(area, app)[2], app.offset(), app.rows().len()),
        View::Locks => (
            locks_layout(area, app)[1],
            app.lock_offset(),
            app.locks().len(),
        ),
        View::Findings => (
            findings_layout(area, app)[1],
            app.finding_offset(),
            app.findings().len(),
        ),
        View::Detail | View::Overview => return None,
    };
    // Inside the borders, below the column titles.
    let body_top = table.y.saturating_add(2);
    let body_end = (table.y + table.height).saturating_sub(1);
    let inside = column > table.x && column < (table.x + table.width).saturating_sub(1);
    if !inside || row < body_top || row >= body_end {
        return None;
    }
    let index = offset + usize::from(row - body_top);
    (index < len).then_some(index)
}

/// How many site rows fit in the table when the screen is `area` (for paging).
pub fn table_body_rows(area: Rect, app: &App) -> usize {
    let [_, _, table, _] = layout(area, app);
    // Top and bottom border, and the column-title row.
    usize::from(table.height.saturating_sub(3))
}

fn layout(area: Rect, app: &App) -> [Rect; 4] {
    let header_height = header_lines(app, area.width.saturating_sub(2)).len() as u16 + 2;
    let findings = finding_lines(app, usize::from(area.width.saturating_sub(2))).len() as u16;
    let findings_height = if findings == 0 { 0 } else { findings + 2 };
    Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(findings_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area)
}

#[derive(Clone, Copy)]
struct Theme {
    no_color: bool,
}

impl Theme {
    fn new(no_color: bool) -> Self {
        Theme { no_color }
    }

    fn fg(self, color: Color) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(color)
        }
    }

    fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    fn label(self) -> Style {
        self.fg(Color::Cyan)
    }
}

/// The refresh interval: `250ms`, `1.0s`, `60.0s`.
fn fmt_refresh(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The connection status, the refresh interval, whether the display is paused (and since
/// when), the target, and the latest error while disconnected.
fn status_lines(app: &App) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    let bold = Modifier::BOLD;
    let label = |s: &'static str| Span::styled(s, theme.label());
    let mut lines = Vec::with_capacity(2);
    if let Some(replay) = app.replay() {
        lines.push(replay_line(app, replay));
        return lines;
    }

    // Status first: it matters most, and a long URL then only cuts itself off.
    let mut first = vec![label("Status: ")];
    let mut error_line = None;
    match &app.status {
        ConnectionStatus::Connecting => {
            first.push(Span::styled(
                "CONNECTING",
                theme.fg(Color::Yellow).add_modifier(bold),
            ));
        }
        ConnectionStatus::Connected => {
            first.push(Span::styled(
                "CONNECTED",
                theme.fg(Color::Green).add_modifier(bold),
            ));
        }
        ConnectionStatus::Disconnected { since, error } => {
            first.push(Span::styled(
                "DISCONNECTED",
                theme.fg(Color::Red).add_modifier(bold),
            ));
            match app.data_age() {
                Some(age) => first.push(Span::styled(
                    format!(" — showing data from {}s ago", age.as_secs()),
                    theme.fg(Color::Yellow),
                )),
                None => first.push(Span::raw(" — no data yet")),
            }
            let down_for = app.now().saturating_duration_since(*since);
            error_line = Some(Line::from(vec![
                label("Error"),
                Span::raw(format!(" (for {}s): ", down_for.as_secs())),
                Span::styled(clean(error), theme.fg(Color::Red)),
            ]));
        }
    }
    // Right after the status word: "CONNECTED every 1.0s".
    first.insert(
        2,
        Span::raw(format!(" every {}", fmt_refresh(app.refresh()))),
    );
    if let Some(at) = app.paused_at() {
        let ago = app.now().saturating_duration_since(at).as_secs();
        first.extend([
            Span::raw("   "),
            Span::styled(
                "PAUSED",
                theme
                    .fg(Color::Yellow)
                    .add_modifier(bold | Modifier::REVERSED),
            ),
            Span::styled(format!(" {ago}s ago"), theme.fg(Color::Yellow)),
        ]);
    }
    if let Some((path, frames)) = app.recording() {
        first.extend([
            Span::raw("   "),
            Span::styled(
                "REC",
                theme.fg(Color::Red).add_modifier(bold | Modifier::REVERSED),
            ),
            Span::raw(format!(" {frames} frames to {}", clean(path))),
        ]);
    }
    first.extend([
        Span::raw("   "),
        label("Target: "),
        Span::raw(clean(&app.target)),
    ]);
    lines.push(Line::from(first));
    lines.extend(error_line);
    lines
}

/// In place of the connection status when a file is shown: a saved snapshot and when it
/// was saved, or a recording's frame under the cursor, i/n, and its wall time; then the
/// file and where its data came from.
fn replay_line(app: &App, replay: &Replay) -> Line<'static> {
    let theme = Theme::new(app.no_color);
    let label = |s: &'static str| Span::styled(s, theme.label());
    let bold = theme.fg(Color::Magenta).add_modifier(Modifier::BOLD);
    let at = fmt_utc_datetime(replay.frame().at_unix_ms);
    let mut spans = match replay.kind() {
        ReplayKind::Snapshot => vec![
            Span::styled("SAVED SNAPSHOT", bold),
            Span::raw(format!(" of {at}")),
        ],
        ReplayKind::Recording => vec![
            Span::styled("REPLAY", bold),
            Span::raw(format!(
                " frame {}/{} at {at}",
                replay.cursor() + 1,
                replay.len()
            )),
        ],
    };
    spans.extend([
        Span::raw("   "),
        label("File: "),
        Span::raw(clean(&app.target)),
        Span::raw("   "),
        label("From: "),
        Span::raw(clean(replay.origin())),
    ]);
    Line::from(spans)
}

/// `2026-12-04 08:00:03 UTC`; a time past the year 9999 (only a damaged file has one) as
/// its raw milliseconds.
fn fmt_utc_datetime(unix_ms: u64) -> String {
    const YEAR_10000_MS: u64 = 253_402_300_800_000;
    if unix_ms >= YEAR_10000_MS {
        return format!("{unix_ms} ms after 1970");
    }
    let time = std::time::UNIX_EPOCH + Duration::from_millis(unix_ms);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
}

/// The header's lines for an inner width of `width` columns (the workers line shortens to
/// fit; see [`workers_line`]).
fn header_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    let bold = Modifier::BOLD;
    let label = |s: &'static str| Span::styled(s, theme.label());
    let mut lines = status_lines(app);

    let snap = app.snapshot();
    let dash = || "-".to_string();
    // Pid 0: a source that does not know the process (tokio-console's API says neither
    // pid nor uptime); shown as unknown rather than as zeros.
    let process = snap.map_or_else(dash, |s| match s.process.pid {
        0 => clean(&s.process.name),
        pid => format!("{} (pid {pid})", clean(&s.process.name)),
    });
    let mut uptime = snap
        .filter(|s| s.process.pid != 0)
        .map_or_else(dash, |s| fmt_uptime(s.uptime_seconds));
    if let Some(at) = app.restarted_at() {
        // Replaying, ages count to the frame shown.
        let now = app.replay().map_or(app.now(), |r| r.anchor());
        let ago = now.saturating_duration_since(at).as_secs();
        if ago < 600 {
            uptime.push_str(&format!(" (restarted {ago}s ago)"));
        }
    }
    let runtime = snap.and_then(|s| s.runtime.as_ref());
    lines.push(Line::from(vec![
        label("Process: "),
        Span::raw(process),
        Span::raw("   "),
        label("Uptime: "),
        Span::raw(uptime),
    ]));
    lines.push(workers_line(runtime, theme, width));

    let live = snap.map_or_else(dash, |_| app.live_total().to_string());
    let alive = runtime.map_or_else(dash, |r| r.alive_tasks.to_string());
    let queue = runtime.map_or_else(dash, |r| r.global_queue_depth.to_string());
    let total: Vec<u64> = app.total_history().samples().collect();
    lines.push(Line::from(vec![
        label("Live tasks: "),
        Span::styled(live, Style::default().add_modifier(bold)),
        Span::raw("   "),
        label("Runtime alive: "),
        Span::raw(alive),
        Span::raw("   "),
        label("Global queue: "),
        Span::raw(queue),
        Span::raw("   "),
        Span::styled(
            sparkline(&total, SPARK_WIDTH).trim_start().to_string(),
            theme.fg(Color::Green),
        ),
    ]));

    let mut leaks = vec![label("Findings: ")];
    match snap.map(|s| &s.findings) {
        None => leaks.push(Span::raw("-")),
        Some(f) => leaks.extend(severity_counts(f.iter().map(|x| x.severity), theme)),
    }
    if let Some(b) = snap.and_then(|s| s.baseline.as_ref()) {
        let net: i64 = b.sites.iter().map(|d| d.live_delta()).sum();
        leaks.extend([
            Span::raw("  "),
            label("Baseline: "),
            Span::raw(format!("{:.0}s ago, live {net:+}", b.age_seconds)),
        ]);
    }
    lines.push(Line::from(leaks));
    lines
}

/// `1 crit 2 warn`, each in its colour; `none` in green when there is nothing.
fn severity_counts(severities: impl Iterator<Item = Severity>, theme: Theme) -> Vec<Span<'static>> {
    let severities: Vec<Severity> = severities.collect();
    if severities.is_empty() {
        return vec![Span::styled("none", theme.fg(Color::Green))];
    }
    let mut spans = Vec::new();
    for severity in [Severity::Critical, Severity::Warning, Severity::Info] {
        let n = severities.iter().filter(|s| **s == severity).count();
        if n > 0 {
            let (tag, color) = severity_tag(severity);
            spans.push(Span::styled(
                format!("{n} {} ", tag.to_lowercase()),
                theme.fg(color).add_modifier(Modifier::BOLD),
            ));
        }
    }
    spans
}

/// Workers (and the CPUs they share), blocked workers in red, busy ratios, blocking pool,
/// in at most `width` columns: the least shortened of [`workers_line_at`]'s forms that
/// fits (the overview has every figure in full).
fn workers_line(runtime: Option<&RuntimeInfo>, theme: Theme, width: u16) -> Line<'static> {
    let mut line = workers_line_at(runtime, theme, 0);
    for level in 1..=WORKERS_LINE_LEVELS {
        if line.width() <= usize::from(width) {
            break;
        }
        line = workers_line_at(runtime, theme, level);
    }
    line
}

/// How far [`workers_line_at`] can shorten the workers line.
const WORKERS_LINE_LEVELS: u8 = 4;

/// The workers line, shortened by `level`: 0 in full; 1 with narrower gaps and busy ratios
/// as average and maximum; 2 without the blocking pool's maximum; 3 with the average busy
/// ratio only; 4 without busy ratios.
fn workers_line_at(runtime: Option<&RuntimeInfo>, theme: Theme, level: u8) -> Line<'static> {
    let label = |s: &'static str| Span::styled(s, theme.label());
    let gap = if level == 0 { "   " } else { "  " };
    let Some(r) = runtime else {
        return Line::from(vec![label("Workers: "), Span::raw("-")]);
    };
    let mut spans = vec![label("Workers: ")];
    // More workers than CPUs: they take turns (GOMAXPROCS above the container's quota).
    let oversubscribed = r.cpu_quota > 0.0 && r.workers as f64 > r.cpu_quota + 1e-9;
    let workers = if r.cpu_quota > 0.0 {
        format!("{} on {:.1} CPUs", r.workers, r.cpu_quota)
    } else {
        r.workers.to_string()
    };
    spans.push(if oversubscribed {
        Span::styled(workers, theme.fg(Color::Yellow))
    } else {
        Span::raw(workers)
    });
    spans.extend([Span::raw(gap), label("Blocked: ")]);
    if r.blocked_workers == 0 {
        spans.push(Span::styled("none", theme.fg(Color::Green)));
    } else {
        spans.push(Span::styled(
            format!(
                "{} of {} (longest {})",
                r.blocked_workers,
                r.workers,
                fmt_secs(r.longest_poll_seconds)
            ),
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if !r.worker_busy_ratio.is_empty() && level < 4 {
        spans.extend([Span::raw(gap), label("Busy: ")]);
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        let ratios = &r.worker_busy_ratio;
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        let max = ratios.iter().copied().fold(0.0, f64::max);
        if level == 0 && ratios.len() <= 8 || ratios.len() == 1 {
            let all: Vec<String> = ratios.iter().map(|x| pct(*x)).collect();
            spans.push(Span::raw(all.join(" ")));
        } else if level < 3 {
            spans.push(Span::raw(format!("avg {} max {}", pct(mean), pct(max))));
        } else {
            spans.push(Span::raw(format!("avg {}", pct(mean))));
        }
    }
    let busy = r.blocking_threads.saturating_sub(r.idle_blocking_threads);
    let max = r
        .max_blocking_threads
        .filter(|_| level < 2)
        .map_or(String::new(), |m| format!(" (max {m})"));
    let pool = format!(
        "{busy}/{} busy{max}, {} queued",
        r.blocking_threads, r.blocking_queue_depth
    );
    spans.extend([Span::raw(gap), label("Blocking: ")]);
    spans.push(if r.blocking_saturated_seconds > 0.0 {
        Span::styled(pool, theme.fg(Color::Red))
    } else {
        Span::raw(pool)
    });
    Line::from(spans)
}

fn render_header(frame: &mut Frame, area: Rect, app: &App) {
    let theme = Theme::new(app.no_color);
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        " taskscope ",
        theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
    ));
    let lines = header_lines(app, area.width.saturating_sub(2));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_table(frame: &mut Frame, area: Rect, app: &App) {
    let theme = Theme::new(app.no_color);
    let rows = app.rows();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(table_title(app));

    if rows.is_empty() {
        let msg = if !app.filter().is_empty() && app.total_sites() > 0 {
            "no site matches the filter (Esc clears it)"
        } else if app.snapshot().is_some() {
            "no spawn sites yet"
        } else {
            "waiting for the first snapshot…"
        };
        frame.render_widget(
            Paragraph::new(Span::styled(msg, theme.dim())).block(block),
            area,
        );
        return;
    }

    let inner_width = area.width.saturating_sub(2);
    let mut fixed: u16 = NUM_WIDTHS.iter().sum::<u16>() + COLUMN_GAPS;
    // The Idle column where it fits (not at 80 columns, where the site needs the room).
    let idle_column = inner_width >= fixed + IDLE_WIDTH + 1 + IDLE_MIN_SITE + SPARK_WIDTH as u16;
    if idle_column {
        fixed += IDLE_WIDTH + 1;
    }
    let spark_width = inner_width
        .saturating_sub(fixed + MIN_SITE_WIDTH)
        .min(SPARK_WIDTH as u16);
    let site_width = inner_width.saturating_sub(fixed + spark_width);

    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    let baseline = app.snapshot().and_then(|s| s.baseline.as_ref());
    // The sorted column's title is underlined (the table's title names it too).
    let sorted = |cell: Cell<'static>, column: SortColumn| {
        if app.sort() == column {
            cell.style(Style::default().add_modifier(Modifier::UNDERLINED))
        } else {
            cell
        }
    };
    let mut header = vec![
        sorted(Cell::from("Site"), SortColumn::Site),
        sorted(right("Live".into()), SortColumn::Live),
        sorted(
            right(
                if baseline.is_some() {
                    "Δbase"
                } else {
                    "Δ60s"
                }
                .into(),
            ),
            SortColumn::Delta,
        ),
    ];
    if idle_column {
        header.push(right("Idle".into()));
    }
    header.extend([
        sorted(right("Spawned".into()), SortColumn::Spawned),
        sorted(right("Completed".into()), SortColumn::Completed),
        sorted(right("Busy (s)".into()), SortColumn::Busy),
        // The sparkline's title, shortened where the column is narrower.
        Cell::from(if spark_width >= 10 {
            "Live (60s)"
        } else {
            "Live 60s"
        }),
    ]);
    let header = Row::new(header).style(theme.fg(Color::Yellow).add_modifier(Modifier::BOLD));

    let body = |i: usize| {
        let r = &rows[i];
        let site_history = app.site_history(&r.site);
        let history: Vec<u64> = site_history
            .map(|h| h.samples().collect())
            .unwrap_or_default();
        let delta = app.site_delta(r);
        // Sites with a finding are marked, with the finding's colour.
        let mark = app.site_severity(&r.site).map(severity_tag);
        let delta_style = if delta > 0 {
            theme.fg(Color::Red)
        } else {
            theme.dim()
        };
        let live_style = if r.live > 0 {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            theme.dim()
        };
        let site_cell = match mark {
            Some((_, color)) => Cell::from(Line::from(vec![
                Span::styled("! ", theme.fg(color).add_modifier(Modifier::BOLD)),
                Span::raw(truncate_left(
                    &clean(&r.site),
                    usize::from(site_width).saturating_sub(2),
                )),
            ])),
            None => Cell::from(truncate_left(&clean(&r.site), usize::from(site_width))),
        };
        let mut cells = vec![
            site_cell,
            Cell::from(Line::from(r.live.to_string()).right_aligned()).style(live_style),
            Cell::from(Line::from(fmt_delta(delta)).right_aligned()).style(delta_style),
        ];
        if idle_column {
            // Tasks idle past the site's threshold (the idle-too-long indicator's count).
            let style = if r.idle_over_threshold > 0 {
                theme.fg(Color::Red)
            } else {
                theme.dim()
            };
            cells.push(right(r.idle_over_threshold.to_string()).style(style));
        }
        cells.extend([
            right(r.spawned.to_string()),
            right(r.completed.to_string()),
            right(fmt_busy(r.busy_seconds)),
            Cell::from(sparkline(&history, usize::from(spark_width))).style(theme.fg(Color::Green)),
        ]);
        Row::new(cells)
    };

    let mut widths = vec![
        Constraint::Length(site_width),
        Constraint::Length(NUM_WIDTHS[0]),
        Constraint::Length(NUM_WIDTHS[1]),
    ];
    if idle_column {
        widths.push(Constraint::Length(IDLE_WIDTH));
    }
    widths.extend([
        Constraint::Length(NUM_WIDTHS[2]),
        Constraint::Length(NUM_WIDTHS[3]),
        Constraint::Length(NUM_WIDTHS[4]),
        Constraint::Length(spark_width),
    ]);
    render_table_rows(
        frame,
        area,
        (rows.len(), body),
        widths,
        header,
        block,
        (app.offset(), app.selected()),
    );
}

/// How many content lines the detail view shows at once, and how many it has, when the
/// screen is `area` (for scrolling). `(1, 0)` outside the detail view.
pub fn detail_metrics(area: Rect, app: &App) -> (usize, usize) {
    let Some(detail) = app.detail() else {
        return (1, 0);
    };
    let [_, body, _] = detail_layout(area, app, detail);
    let rows = usize::from(body.height.saturating_sub(2)).max(1);
    let lines = detail_lines(app, detail, usize::from(body.width.saturating_sub(2))).len();
    (rows, lines)
}

fn detail_layout(area: Rect, app: &App, detail: &Detail) -> [Rect; 3] {
    let header_height = detail_header_lines(app, detail, area).len() as u16 + 2;
    Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area)
}

fn render_detail(frame: &mut Frame, area: Rect, app: &App, detail: &Detail) {
    let theme = Theme::new(app.no_color);
    let [header, body, footer] = detail_layout(area, app, detail);

    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        " taskscope › spawn site ",
        theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(
        Paragraph::new(detail_header_lines(app, detail, area)).block(block),
        header,
    );

    let width = usize::from(body.width.saturating_sub(2));
    let rows = usize::from(body.height.saturating_sub(2));
    let lines = detail_lines(app, detail, width);
    let total = lines.len();
    let scroll = detail.scroll().min(total.saturating_sub(1));
    let title = if total > rows && rows > 0 {
        format!(
            " Task dump (lines {}-{} of {total}) ",
            scroll + 1,
            (scroll + rows).min(total)
        )
    } else {
        " Task dump ".to_string()
    };
    let shown: Vec<Line> = lines.into_iter().skip(scroll).take(rows).collect();
    frame.render_widget(
        Paragraph::new(shown).block(Block::default().borders(Borders::ALL).title(title)),
        body,
    );
    let keys = if app.capabilities().dumps.is_available() {
        DETAIL_FOOTER
    } else {
        DETAIL_FOOTER_NO_DUMPS
    };
    frame.render_widget(Paragraph::new(footer_line(app, keys)), footer);
}

/// The detail view's header on a screen `area`: connection status, the site, its counts
/// from the last snapshot (refreshed with every poll), and its findings, wrapped (at most
/// [`detail_finding_lines`] lines of them, so that the dump keeps the screen).
fn detail_header_lines(app: &App, detail: &Detail, area: Rect) -> Vec<Line<'static>> {
    let width = usize::from(area.width.saturating_sub(2));
    let max_finding_lines = detail_finding_lines(area.height);
    let theme = Theme::new(app.no_color);
    let label = |s: &'static str| Span::styled(s, theme.label());
    let mut lines = status_lines(app);
    lines.push(Line::from(vec![
        label("Site: "),
        Span::styled(
            clean(detail.site()),
            Style::default().add_modifier(Modifier::BOLD),
        ),
    ]));
    let counts = match app.site_row(detail.site()) {
        Some(r) => Line::from(vec![
            label("Live: "),
            Span::styled(
                r.live.to_string(),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw("   "),
            label("Spawned: "),
            Span::raw(r.spawned.to_string()),
            Span::raw("   "),
            label("Completed: "),
            Span::raw(r.completed.to_string()),
            Span::raw("   "),
            label("Busy: "),
            Span::raw(format!("{}s", fmt_busy(r.busy_seconds))),
        ]),
        None if app.snapshot().is_some() => Line::from(Span::styled(
            "not in the last snapshot",
            theme.fg(Color::Yellow),
        )),
        None => Line::from(Span::styled("no snapshot yet", theme.dim())),
    };
    lines.push(counts);
    // Its history: live tasks over the last samples, and their change.
    if let Some(h) = app.site_history(detail.site()) {
        let samples: Vec<u64> = h.samples().collect();
        let spark_width = samples.len().min(width.saturating_sub(35));
        lines.push(Line::from(vec![
            label("History: "),
            Span::styled(sparkline(&samples, spark_width), theme.fg(Color::Green)),
            Span::raw(format!("  {:+} in {} refreshes", h.delta(), samples.len())),
        ]));
    }
    let findings: Vec<&Finding> = app
        .snapshot()
        .into_iter()
        .flat_map(|s| &s.findings)
        .filter(|f| f.site == detail.site())
        .collect();
    let mut finding_lines = Vec::new();
    let mut shown = 0;
    for f in &findings {
        let entry = finding_entry_lines(f, width, theme, usize::MAX);
        if finding_lines.len() + entry.len() > max_finding_lines && shown > 0 {
            break;
        }
        finding_lines.extend(entry);
        shown += 1;
    }
    lines.extend(finding_lines);
    if findings.len() > shown {
        lines.push(Line::from(Span::styled(
            format!("… and {} more (f lists them all)", findings.len() - shown),
            theme.dim(),
        )));
    }
    lines
}

/// Most lines of findings in the detail view's header on a screen `height` rows high: the
/// first finding in full, and more on tall screens.
fn detail_finding_lines(height: u16) -> usize {
    if height < 30 { 3 } else { 6 }
}

/// One finding as the sites view, the detail header and the lock pane show it: its
/// severity tag, then its sentence wrapped at words into `width` columns, indented under the
/// tag; at most `max_lines` lines, the last ending in `…` when cut.
fn finding_entry_lines(
    f: &Finding,
    width: usize,
    theme: Theme,
    max_lines: usize,
) -> Vec<Line<'static>> {
    let (tag, color) = severity_tag(f.severity);
    let text_width = width.saturating_sub(5).max(20);
    let mut wrapped = wrap_words(&clean(&f.summary), text_width);
    if wrapped.len() > max_lines.max(1) {
        wrapped.truncate(max_lines.max(1));
        let last = wrapped.last_mut().expect("not empty");
        let keep = text_width.saturating_sub(1).min(last.chars().count());
        *last = last.chars().take(keep).collect::<String>() + "…";
    }
    wrapped
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let lead = if i == 0 {
                Span::styled(tag, theme.fg(color).add_modifier(Modifier::BOLD))
            } else {
                Span::raw("    ")
            };
            Line::from(vec![lead, Span::raw(" "), Span::raw(part)])
        })
        .collect()
}

/// Every content line of the detail view's dump pane, `width` columns wide (frames are
/// shortened to fit, other lines are cut by the pane).
fn detail_lines(app: &App, detail: &Detail, width: usize) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    let label = |s: &'static str| Span::styled(s, theme.label());
    let mut lines = Vec::new();

    // What is happening now: a dump in flight, or the latest failure.
    if detail.loading() {
        let mut spans = vec![Span::styled(
            TAKING_DUMP,
            theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )];
        if detail.dump().is_some() {
            spans.push(Span::styled(
                " (the previous one is shown below)",
                theme.dim(),
            ));
        }
        lines.push(Line::from(spans));
    } else if let (Some(why), None) = (app.capabilities().dumps.why_not(), detail.dump()) {
        // Nothing failed: this source cannot take dumps (a file); r would not help.
        let text = format!("no task dump: unavailable for this source: {}", clean(why));
        for part in wrap_words(&text, width) {
            lines.push(Line::from(Span::styled(part, theme.dim())));
        }
        // What the source does list of the site's tasks (tokio-console sends every task).
        let tasks: Vec<TaskLine> = app
            .snapshot()
            .into_iter()
            .flat_map(|s| &s.tasks)
            .filter(|t| t.site == detail.site())
            .map(TaskLine::from)
            .collect();
        lines.extend(task_list_lines(app, detail, &tasks, theme));
        return lines;
    } else if let Some(error) = detail.error() {
        // Errors carry the URL and the exporter's message: wrap them rather than cut them.
        // A failure's text (URLs, the exporter's message) wraps exactly at the width; a
        // source's refusal is a sentence and wraps at words.
        let parts = if app.capabilities().dumps.is_available() {
            wrap_chars(&format!("dump failed: {}", clean(error)), width)
        } else {
            wrap_words(&format!("no new dump: {}", clean(error)), width)
        };
        for part in parts {
            lines.push(Line::from(Span::styled(part, theme.fg(Color::Red))));
        }
        // A source that cannot take dumps (a file with a saved dump) never will: no "try
        // again" there.
        let hint = match (
            app.capabilities().dumps.is_available(),
            detail.dump().is_some(),
        ) {
            (true, true) => "press r to try again; the previous dump is shown below",
            (true, false) => "press r to try again",
            (false, true) => "the saved dump is shown below",
            (false, false) => "",
        };
        if !hint.is_empty() {
            lines.push(Line::from(Span::styled(hint, theme.dim())));
        }
    }

    let Some(dump) = detail.dump() else {
        if !detail.loading() && detail.error().is_none() {
            lines.push(Line::from(Span::styled(
                "no dump yet: press r to take one",
                theme.dim(),
            )));
        }
        return lines;
    };
    if !lines.is_empty() {
        lines.push(Line::default());
    }

    let mut taken = String::from("taken");
    if let Some(at) = detail.dump_received_at() {
        let ago = app.now().saturating_duration_since(at).as_secs();
        taken.push_str(&format!(" {ago}s ago"));
    }
    if dump.taken_at_unix_ms > 0 {
        taken.push_str(&format!(" at {}", fmt_utc_time(dump.taken_at_unix_ms)));
    }
    lines.push(Line::from(vec![
        label("Dump: "),
        Span::raw(format!(
            "{taken}; dump took {}, runtime paused {}",
            fmt_ms(dump.took_seconds),
            fmt_ms(dump.paused_seconds)
        )),
    ]));

    let (source, source_style) = match dump.source {
        DumpSource::Traced => ("traced (await points)", theme.fg(Color::Green)),
        DumpSource::Registry => ("registry only (no await points)", theme.fg(Color::Yellow)),
        DumpSource::Unknown => ("unknown", theme.fg(Color::Yellow)),
    };
    let mut source_line = vec![label("Source: "), Span::styled(source, source_style)];
    if !dump.complete {
        source_line.push(Span::styled(
            ", INCOMPLETE",
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    let groups: Vec<&DumpGroup> = dump
        .groups
        .iter()
        .filter(|g| g.site == detail.site())
        .collect();
    source_line.push(Span::raw(format!(
        "   {} tasks in {} group{}",
        dump.total_tasks,
        groups.len(),
        if groups.len() == 1 { "" } else { "s" }
    )));
    lines.push(Line::from(source_line));
    // Notes wrap at words under their label: the detail pane does not scroll sideways.
    for note in &dump.notes {
        for (i, part) in wrap_words(&clean(note), width.saturating_sub(6).max(10))
            .into_iter()
            .enumerate()
        {
            let head = if i == 0 { "note: " } else { "      " };
            lines.push(Line::from(vec![
                Span::styled(head, theme.fg(Color::Yellow)),
                Span::raw(part),
            ]));
        }
    }
    for b in &dump.blocked {
        lines.push(Line::from(vec![
            Span::styled(
                "blocked: ",
                theme.fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "task {} spawned at {} has been in one poll for {:.2}s",
                b.task,
                clean(&b.site),
                b.seconds
            )),
        ]));
    }
    let others = dump.groups.len() - groups.len();
    if others > 0 {
        lines.push(Line::from(Span::styled(
            format!("({others} groups of other sites not shown)"),
            theme.dim(),
        )));
    }

    if groups.is_empty() {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            "no live tasks at this site when the dump was taken",
            theme.dim(),
        )));
    }
    for g in groups {
        lines.push(Line::default());
        lines.extend(group_lines(g, width, theme));
    }
    let tasks: Vec<TaskLine> = dump
        .tasks
        .iter()
        .filter(|t| t.site == detail.site())
        .map(TaskLine::from)
        .collect();
    lines.extend(task_list_lines(app, detail, &tasks, theme));
    lines
}

/// One task of the detail view's task list.
struct TaskLine {
    id: u64,
    state: TaskState,
    age_seconds: f64,
    idle_seconds: f64,
    polls: u64,
}

impl From<&TaskRow> for TaskLine {
    fn from(t: &TaskRow) -> Self {
        TaskLine {
            id: t.id,
            state: t.state,
            age_seconds: t.age_seconds,
            idle_seconds: t.idle_seconds,
            polls: t.polls,
        }
    }
}

impl From<&DumpTask> for TaskLine {
    fn from(t: &DumpTask) -> Self {
        TaskLine {
            id: t.id,
            state: t.state,
            age_seconds: t.age_seconds,
            idle_seconds: t.idle_seconds,
            polls: t.polls,
        }
    }
}

/// The site's tasks, one a line (id, state, age, idle for, polls), oldest first, after a
/// title saying how many of the site's live tasks they are; nothing when there are none.
fn task_list_lines(
    app: &App,
    detail: &Detail,
    tasks: &[TaskLine],
    theme: Theme,
) -> Vec<Line<'static>> {
    if tasks.is_empty() {
        return Vec::new();
    }
    let live = app.site_row(detail.site()).map_or(0, |r| r.live);
    let title = if (tasks.len() as u64) < live {
        format!("Tasks: the {} oldest of {live} live", tasks.len())
    } else {
        format!("Tasks: {}, oldest first", tasks.len())
    };
    let mut lines = vec![
        Line::default(),
        Line::from(Span::styled(title, theme.label())),
        Line::from(Span::styled(
            format!(
                "  {:>10}  {:<7}  {:>9}  {:>9}  {:>7}",
                "id", "state", "age", "idle for", "polls"
            ),
            theme.dim(),
        )),
    ];
    lines.extend(tasks.iter().map(|t| {
        let state = match t.state {
            TaskState::Running => "running",
            TaskState::Idle => "idle",
            TaskState::Unknown => "?",
        };
        Line::from(format!(
            "  {:>10}  {:<7}  {:>9}  {:>9}  {:>7}",
            t.id,
            state,
            fmt_secs(t.age_seconds),
            fmt_secs(t.idle_seconds),
            t.polls
        ))
    }));
    lines
}

/// One group: `10 tasks @ site  idle min/median/max …  age max …`, then its stacks,
/// innermost frame first.
/// Where that does not fit in `width`, the idle and age figures go on a line of their own.
fn group_lines(g: &DumpGroup, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let title = Span::styled(
        format!("{} tasks @ {}", g.count, clean(&g.site)),
        theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
    );
    let ages = format!(
        "idle min/median/max {}  age max {}",
        fmt_spread(&g.idle_seconds),
        fmt_secs(g.age_seconds.max)
    );
    let mut lines = if title.width() + 2 + ages.chars().count() <= width {
        vec![Line::from(vec![title, Span::raw(format!("  {ages}"))])]
    } else {
        vec![Line::from(title), Line::from(format!("    {ages}"))]
    };
    if g.stacks.is_empty() {
        lines.push(Line::from(Span::styled(
            "    (no await point: registry only, or not traced)",
            theme.dim(),
        )));
    }
    for (i, stack) in g.stacks.iter().enumerate() {
        if i > 0 {
            lines.push(Line::from(Span::styled(
                "    -- and, awaited at the same time:",
                theme.dim(),
            )));
        }
        for f in stack {
            lines.push(frame_line(f, width, theme));
        }
    }
    lines
}

/// `    function  file:line`, the function shortened from the left when the line would be
/// wider than `width`, so that the location stays visible.
fn frame_line(f: &StackFrame, width: usize, theme: Theme) -> Line<'static> {
    const INDENT: &str = "    ";
    let location = match (f.file.is_empty(), f.line) {
        (true, _) => String::new(),
        (false, 0) => clean(&f.file),
        (false, line) => format!("{}:{line}", clean(&f.file)),
    };
    let function = clean(&f.function);
    let room = width
        .saturating_sub(INDENT.len() + 2 + location.chars().count())
        .max(12);
    let function = truncate_left(&function, room);
    let mut spans = vec![Span::raw(INDENT), Span::raw(function)];
    if !location.is_empty() {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(location, theme.dim()));
    }
    Line::from(spans)
}

// ---- The locks view ----

/// Columns of the locks table after the lock label: title and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockCol {
    Kind,
    WaitShare,
    Contended,
    Acquisitions,
    Waited,
    Holders,
    Waiters,
}

impl LockCol {
    const ALL: [LockCol; 7] = [
        LockCol::Kind,
        LockCol::WaitShare,
        LockCol::Contended,
        LockCol::Acquisitions,
        LockCol::Waited,
        LockCol::Holders,
        LockCol::Waiters,
    ];

    fn title(self) -> &'static str {
        match self {
            LockCol::Kind => "Kind",
            LockCol::WaitShare => "Wait/s",
            LockCol::Contended => "Contended",
            LockCol::Acquisitions => "Acq",
            LockCol::Waited => "Waited (s)",
            LockCol::Holders => "Holders",
            LockCol::Waiters => "Waiters",
        }
    }

    fn width(self) -> u16 {
        match self {
            LockCol::Kind => 9,
            LockCol::WaitShare => 6,
            LockCol::Contended => 9,
            LockCol::Acquisitions => 8,
            LockCol::Waited => 10,
            LockCol::Holders => 7,
            LockCol::Waiters => 7,
        }
    }
}

/// Narrowest the Lock column gets before Acq, then Kind, are left out (the detail pane
/// below the table shows both), then on very narrow screens Waited, Contended and Holders.
const MIN_LOCK_WIDTH: u16 = 26;

/// The columns that fit `inner_width`, and the width left for the lock label.
fn lock_columns(inner_width: u16) -> (Vec<LockCol>, u16) {
    let mut cols = LockCol::ALL.to_vec();
    let fixed = |cols: &[LockCol]| cols.iter().map(|c| c.width() + 1).sum::<u16>();
    for optional in [
        LockCol::Acquisitions,
        LockCol::Kind,
        LockCol::Waited,
        LockCol::Contended,
        LockCol::Holders,
    ] {
        if inner_width.saturating_sub(fixed(&cols)) >= MIN_LOCK_WIDTH {
            break;
        }
        cols.retain(|c| *c != optional);
    }
    let lock_width = inner_width.saturating_sub(fixed(&cols));
    (cols, lock_width)
}

fn kind_short(kind: LockKind) -> &'static str {
    match kind {
        LockKind::Mutex => "mutex",
        LockKind::RwLock => "rwlock",
        LockKind::Semaphore => "semaphore",
        LockKind::BlockingMutex => "blk mutex",
        LockKind::BlockingRwLock => "blk rwlock",
        LockKind::Unknown => "?",
    }
}

fn kind_long(kind: LockKind) -> &'static str {
    match kind {
        LockKind::Mutex => "mutex",
        LockKind::RwLock => "rwlock",
        LockKind::Semaphore => "semaphore",
        LockKind::BlockingMutex => "blocking mutex",
        LockKind::BlockingRwLock => "blocking rwlock",
        LockKind::Unknown => "lock of unknown kind",
    }
}

/// `exclusive`, `read`, `write`, or `3 permits`.
fn mode_text(mode: LockMode, permits: u32) -> String {
    match mode {
        LockMode::Permits => format!("{permits} permit{}", if permits == 1 { "" } else { "s" }),
        other => other.as_str().to_string(),
    }
}

fn task_text(task: Option<u64>) -> String {
    task.map_or_else(|| "no task".to_string(), |t| format!("task {t}"))
}

/// Holders (or waiters) of a lock, the unlisted ones included.
fn count_with_more(listed: usize, more: u64) -> u64 {
    (listed as u64).saturating_add(more)
}

fn fmt_share(share: f64) -> String {
    if share.is_finite() {
        format!("{share:.2}")
    } else {
        "-".into()
    }
}

/// How many lock rows fit in the locks table when the screen is `area` (for paging).
pub fn lock_table_body_rows(area: Rect, app: &App) -> usize {
    let [_, table, _, _] = locks_layout(area, app);
    usize::from(table.height.saturating_sub(3))
}

/// Header, locks table, detail pane of the selected lock, footer.
fn locks_layout(area: Rect, app: &App) -> [Rect; 4] {
    table_layout(area, locks_header_lines(app).len(), app.locks().len())
}

/// Header of `header_lines` lines, a table of `n` rows, a detail pane below it, footer.
fn table_layout(area: Rect, header_lines: usize, n: usize) -> [Rect; 4] {
    let header_height = u16::try_from(header_lines)
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let rest = area.height.saturating_sub(header_height.saturating_add(1));
    let table_height = if n == 0 {
        rest
    } else {
        // All rows when they fit in half the room; the detail pane gets the rest.
        u16::try_from(n)
            .unwrap_or(u16::MAX)
            .saturating_add(3)
            .min((rest / 2).max(4))
    };
    Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(table_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// The locks view's header: connection status, then locks, holders and waiters now, and
/// the lock findings by severity.
fn locks_header_lines(app: &App) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    let label = |s: &'static str| Span::styled(s, theme.label());
    let mut lines = status_lines(app);
    let Some(snap) = app.snapshot() else {
        lines.push(Line::from(vec![label("Locks: "), Span::raw("-")]));
        return lines;
    };
    let locks = &snap.locks;
    let holding: u64 = locks
        .iter()
        .map(|l| count_with_more(l.holders.len(), l.more_holders))
        .fold(0, u64::saturating_add);
    let waiting: u64 = locks
        .iter()
        .map(|l| count_with_more(l.waiters.len(), l.more_waiters))
        .fold(0, u64::saturating_add);
    let mut spans = vec![
        label("Locks: "),
        Span::raw(locks.len().to_string()),
        Span::raw("   "),
        label("Held: "),
        Span::raw(holding.to_string()),
        Span::raw("   "),
        label("Waiting: "),
        if waiting > 0 {
            Span::styled(
                waiting.to_string(),
                theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            )
        } else {
            Span::raw("0")
        },
        Span::raw("   "),
        label("Lock findings: "),
    ];
    let lock_findings = snap.findings.iter().filter(|f| app.is_lock_finding(f));
    spans.extend(severity_counts(lock_findings.map(|f| f.severity), theme));
    lines.push(Line::from(spans));
    lines
}

fn render_locks(frame: &mut Frame, area: Rect, app: &App) {
    let theme = Theme::new(app.no_color);
    let [header, table, detail, footer] = locks_layout(area, app);
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        " taskscope › locks ",
        theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(Paragraph::new(locks_header_lines(app)).block(block), header);
    render_locks_table(frame, table, app);
    if let Some(lock) = app.selected_lock() {
        render_lock_detail(frame, detail, app, lock);
    }
    frame.render_widget(Paragraph::new(footer_line(app, LOCKS_FOOTER)), footer);
}

fn render_locks_table(frame: &mut Frame, area: Rect, app: &App) {
    let theme = Theme::new(app.no_color);
    let locks = app.locks();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" Locks ({}) ", locks.len()));
    if locks.is_empty() {
        let msg = if app.snapshot().is_some() {
            Span::raw(NO_LOCKS)
        } else {
            Span::styled("waiting for the first snapshot…", theme.dim())
        };
        frame.render_widget(
            Paragraph::new(msg).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }

    let (cols, lock_width) = lock_columns(area.width.saturating_sub(2));
    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    let mut header = vec![Cell::from("Lock")];
    header.extend(cols.iter().map(|c| match c {
        LockCol::Kind => Cell::from(c.title()),
        _ => right(c.title().into()),
    }));
    let header = Row::new(header).style(theme.fg(Color::Yellow).add_modifier(Modifier::BOLD));

    let body = |i: usize| {
        let l = &locks[i];
        let label = clean(&l.lock);
        let lock_cell = match app.lock_severity(&l.lock).map(severity_tag) {
            Some((_, color)) => Cell::from(Line::from(vec![
                Span::styled("! ", theme.fg(color).add_modifier(Modifier::BOLD)),
                Span::raw(shorten_lock_label(
                    &label,
                    usize::from(lock_width).saturating_sub(2),
                )),
            ])),
            None => Cell::from(shorten_lock_label(&label, usize::from(lock_width))),
        };
        let holders = count_with_more(l.holders.len(), l.more_holders);
        let waiters = count_with_more(l.waiters.len(), l.more_waiters);
        let mut cells = vec![lock_cell];
        cells.extend(cols.iter().map(|c| match c {
            LockCol::Kind => Cell::from(kind_short(l.kind)),
            LockCol::WaitShare => {
                let cell = right(fmt_share(l.wait_share));
                if l.wait_share > 0.0 {
                    cell.style(Style::default().add_modifier(Modifier::BOLD))
                } else {
                    cell.style(theme.dim())
                }
            }
            LockCol::Contended => right(l.contended.to_string()),
            LockCol::Acquisitions => right(l.acquisitions.to_string()),
            LockCol::Waited => right(fmt_busy(l.wait_seconds.sum)),
            LockCol::Holders => right(holders.to_string()),
            LockCol::Waiters => {
                let cell = right(waiters.to_string());
                if waiters > 0 {
                    cell.style(theme.fg(Color::Yellow).add_modifier(Modifier::BOLD))
                } else {
                    cell.style(theme.dim())
                }
            }
        }));
        Row::new(cells)
    };

    let mut widths = vec![Constraint::Length(lock_width)];
    widths.extend(cols.iter().map(|c| Constraint::Length(c.width())));
    render_table_rows(
        frame,
        area,
        (locks.len(), body),
        widths,
        header,
        block,
        (app.lock_offset(), app.lock_selected()),
    );
}

/// A part of the lock detail pane: an optional title line and entries of one or more
/// lines each; entries that do not fit are counted in the title.
struct Section {
    /// E.g. "Waiters"; `None` for a section without a title line.
    title: Option<&'static str>,
    /// Entries in all, listed or not.
    total: u64,
    entries: Vec<Vec<Line<'static>>>,
}

/// Fits `sections` in `room` lines: every title first, then one entry of each section in
/// turn, so that no section crowds out the others. A title says how many entries its
/// section has, and how many are shown when not all are.
fn fit_sections(sections: Vec<Section>, room: usize, theme: Theme) -> Vec<Line<'static>> {
    let titles = sections.iter().filter(|s| s.title.is_some()).count();
    let mut used = titles;
    let mut shown = vec![0usize; sections.len()];
    loop {
        let mut progress = false;
        for (i, section) in sections.iter().enumerate() {
            if let Some(entry) = section.entries.get(shown[i])
                && used + entry.len() <= room
            {
                used += entry.len();
                shown[i] += 1;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    let mut lines = Vec::new();
    for (section, shown) in sections.into_iter().zip(shown) {
        if let Some(title) = section.title {
            let text = if section.total == 0 {
                format!("{title}: none")
            } else if (shown as u64) < section.total {
                format!("{title} ({}, {shown} shown):", section.total)
            } else {
                format!("{title} ({}):", section.total)
            };
            lines.push(Line::from(Span::styled(text, theme.label())));
        }
        lines.extend(section.entries.into_iter().take(shown).flatten());
    }
    lines
}

/// One holder: task, mode, how long held, how long its task has been idle, where the guard
/// was taken and where the task was spawned (on a second line when it does not fit).
fn holder_lines(h: &LockHolder, width: usize, theme: Theme) -> Vec<Line<'static>> {
    let mut spans = vec![
        Span::raw("  "),
        Span::styled(
            task_text(h.task),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  {}  held {}",
            mode_text(h.mode, h.permits),
            fmt_secs(h.held_seconds)
        )),
    ];
    if let Some(idle) = h.task_idle_seconds {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            format!("idle {}", fmt_secs(idle)),
            theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    spans.push(Span::raw("  at "));
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let site = clean(&h.site);
    spans.push(Span::raw(truncate_left(
        &site,
        width.saturating_sub(used).max(12),
    )));
    let Some(task_site) = h.task_site.as_deref().map(clean) else {
        return vec![Line::from(spans)];
    };
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let spawned = format!("  spawned at {task_site}");
    if used + spawned.chars().count() <= width {
        spans.push(Span::styled(spawned, theme.dim()));
        return vec![Line::from(spans)];
    }
    const INDENT: &str = "    spawned at ";
    let second = Line::from(Span::styled(
        format!(
            "{INDENT}{}",
            truncate_left(&task_site, width.saturating_sub(INDENT.len()).max(12))
        ),
        theme.dim(),
    ));
    vec![Line::from(spans), second]
}

/// One waiter: task, mode, how long it has waited, where it asked.
fn waiter_line(w: &LockWaiter, width: usize) -> Line<'static> {
    let mut spans = vec![
        Span::raw("  "),
        Span::styled(
            task_text(w.task),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  {}  waiting {}  at ",
            mode_text(w.mode, w.permits),
            fmt_secs(w.waiting_seconds)
        )),
    ];
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    spans.push(Span::raw(truncate_left(
        &clean(&w.site),
        width.saturating_sub(used).max(12),
    )));
    Line::from(spans)
}

/// What the detail pane shows of `lock`, `width` columns wide and at most about `rows`
/// lines: its kind and counters, its findings, holders, waiters, and the holder sites
/// charged with the most delay.
fn lock_detail_lines(app: &App, lock: &LockRow, width: usize, rows: usize) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    let mut info = format!(
        "{}  {} acquired, {} contended",
        kind_long(lock.kind),
        lock.acquisitions,
        lock.contended
    );
    let mean = |h: &taskscope::model::DelayHistogram| {
        (h.count > 0).then(|| fmt_secs(h.sum / h.count as f64))
    };
    if let Some(m) = mean(&lock.wait_seconds) {
        info.push_str(&format!("  mean wait {m}"));
    }
    if let Some(m) = mean(&lock.hold_seconds) {
        info.push_str(&format!("  mean hold {m}"));
    }
    info.push_str(&format!(
        "  {} instance{}",
        lock.instances,
        if lock.instances == 1 { "" } else { "s" }
    ));
    if !lock.created_at.is_empty() && !lock.lock.contains(&lock.created_at) {
        info.push_str(&format!("  created at {}", clean(&lock.created_at)));
    }
    let mut lines = vec![Line::from(Span::raw(info))];

    let findings: Vec<Vec<Line<'static>>> = app
        .lock_findings(&lock.lock)
        .map(|f| finding_entry_lines(f, width, theme, MAX_LOCK_FINDING_LINES))
        .collect();
    let delay = &lock.delay_by_holder_site;
    let sections = vec![
        Section {
            title: None,
            total: findings.len() as u64,
            entries: findings,
        },
        Section {
            title: Some("Holders"),
            total: count_with_more(lock.holders.len(), lock.more_holders),
            entries: lock
                .holders
                .iter()
                .map(|h| holder_lines(h, width, theme))
                .collect(),
        },
        Section {
            title: Some("Waiters"),
            total: count_with_more(lock.waiters.len(), lock.more_waiters),
            entries: lock
                .waiters
                .iter()
                .map(|w| vec![waiter_line(w, width)])
                .collect(),
        },
        Section {
            title: Some("Delay charged to holder site"),
            total: delay.len() as u64,
            entries: delay
                .iter()
                .take(TOP_HOLDER_SITES)
                .map(|d| {
                    let lead = format!(
                        "  {:>7}  {} contention{}  at ",
                        fmt_secs(d.seconds),
                        d.contentions,
                        if d.contentions == 1 { "" } else { "s" }
                    );
                    let room = width.saturating_sub(lead.chars().count()).max(12);
                    vec![Line::from(vec![
                        Span::raw(lead),
                        Span::raw(truncate_left(&clean(&d.site), room)),
                    ])]
                })
                .collect(),
        },
    ];
    lines.extend(fit_sections(sections, rows.saturating_sub(1), theme));
    lines
}

fn render_lock_detail(frame: &mut Frame, area: Rect, app: &App, lock: &LockRow) {
    if area.height == 0 {
        return;
    }
    let width = usize::from(area.width.saturating_sub(2));
    let rows = usize::from(area.height.saturating_sub(2));
    let title = format!(
        " {} ",
        truncate_left(&clean(&lock.lock), width.saturating_sub(2))
    );
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        title,
        Style::default().add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(
        Paragraph::new(lock_detail_lines(app, lock, width, rows)).block(block),
        area,
    );
}

// ---- The findings view ----

/// How many finding rows fit in the findings table when the screen is `area` (for
/// paging).
pub fn finding_table_body_rows(area: Rect, app: &App) -> usize {
    let [_, table, _, _] = findings_layout(area, app);
    usize::from(table.height.saturating_sub(3))
}

/// Header, findings table, detail pane of the selected finding, footer.
fn findings_layout(area: Rect, app: &App) -> [Rect; 4] {
    table_layout(area, findings_header_lines(app).len(), app.findings().len())
}

/// The findings view's header: connection status, then the findings by severity.
fn findings_header_lines(app: &App) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    let mut lines = status_lines(app);
    let mut spans = vec![Span::styled("Findings: ", theme.label())];
    match app.snapshot() {
        None => spans.push(Span::raw("-")),
        Some(s) => spans.extend(severity_counts(
            s.findings.iter().map(|f| f.severity),
            theme,
        )),
    }
    lines.push(Line::from(spans));
    lines
}

fn render_findings_view(frame: &mut Frame, area: Rect, app: &App) {
    let theme = Theme::new(app.no_color);
    let [header, table, detail, footer] = findings_layout(area, app);
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        " taskscope › findings ",
        theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(
        Paragraph::new(findings_header_lines(app)).block(block),
        header,
    );
    render_findings_table(frame, table, app);
    if let Some(finding) = app.selected_finding() {
        render_finding_detail(frame, detail, app, finding);
    }
    frame.render_widget(Paragraph::new(footer_line(app, FINDINGS_FOOTER)), footer);
}

/// Width of the Count column of the findings table.
const COUNT_WIDTH: u16 = 6;

fn render_findings_table(frame: &mut Frame, area: Rect, app: &App) {
    let theme = Theme::new(app.no_color);
    let findings = app.findings();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" Findings ({}) ", findings.len()));
    if findings.is_empty() {
        let msg = if app.snapshot().is_some() {
            Span::styled(NO_FINDINGS, theme.fg(Color::Green))
        } else {
            Span::styled("waiting for the first snapshot…", theme.dim())
        };
        frame.render_widget(
            Paragraph::new(msg).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }

    // Severity tag, kind (as wide as the widest here), site (the rest), count.
    let kind_width = findings
        .iter()
        .map(|f| f.kind.as_str().len())
        .max()
        .unwrap_or(0)
        .max(4) as u16;
    let site_width = area
        .width
        .saturating_sub(2)
        .saturating_sub(4 + kind_width + COUNT_WIDTH + 3);
    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    let header = Row::new([
        Cell::from("Sev"),
        Cell::from("Kind"),
        Cell::from("Site"),
        right("Count".into()),
    ])
    .style(theme.fg(Color::Yellow).add_modifier(Modifier::BOLD));
    let body = |i: usize| {
        let f = &findings[i];
        let (tag, color) = severity_tag(f.severity);
        Row::new([
            Cell::from(Span::styled(
                tag,
                theme.fg(color).add_modifier(Modifier::BOLD),
            )),
            Cell::from(f.kind.as_str()),
            Cell::from(truncate_left(&clean(&f.site), usize::from(site_width))),
            right(f.count.to_string()),
        ])
    };
    let widths = [
        Constraint::Length(4),
        Constraint::Length(kind_width),
        Constraint::Length(site_width),
        Constraint::Length(COUNT_WIDTH),
    ];
    render_table_rows(
        frame,
        area,
        (findings.len(), body),
        widths,
        header,
        block,
        (app.finding_offset(), app.finding_selected()),
    );
}

/// `text` wrapped at words to `width`, every line after `indent`, the lines after the
/// first indented two more.
fn hanging(indent: &str, text: &str, width: usize) -> Vec<String> {
    let mut parts = wrap_words(text, width.saturating_sub(indent.len())).into_iter();
    let mut lines = vec![format!("{indent}{}", parts.next().unwrap_or_default())];
    let rest = parts.collect::<Vec<_>>().join(" ");
    if !rest.is_empty() {
        let more = format!("{indent}  ");
        lines.extend(
            wrap_words(&rest, width.saturating_sub(more.len()))
                .into_iter()
                .map(|l| format!("{more}{l}")),
        );
    }
    lines
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The numbers behind a finding, one item a line: `(indent, text)`.
fn evidence_lines(evidence: &Evidence) -> Vec<(&'static str, String)> {
    const ITEM: &str = "  ";
    const SUB: &str = "    ";
    match evidence {
        Evidence::IdleTooLong {
            threshold_seconds,
            derived,
            longest_wait_seconds,
            oldest_idle_seconds,
            live,
        } => vec![
            (
                ITEM,
                format!(
                    "idle threshold {} ({})",
                    fmt_secs(*threshold_seconds),
                    if *derived {
                        "from the site's own waits"
                    } else {
                        "the agent's fixed threshold"
                    }
                ),
            ),
            (
                ITEM,
                format!(
                    "longest wait that ended in a poll {}",
                    fmt_secs(*longest_wait_seconds)
                ),
            ),
            (
                ITEM,
                format!(
                    "oldest idle {}, {live} live",
                    fmt_secs(*oldest_idle_seconds)
                ),
            ),
        ],
        Evidence::Growth {
            rate_per_second,
            window_seconds,
            floor_before,
            floor_after,
            live,
        } => vec![
            (
                ITEM,
                format!(
                    "{rate_per_second:.2} tasks/s over {}",
                    fmt_secs(*window_seconds)
                ),
            ),
            (
                ITEM,
                format!("low-water mark {floor_before} -> {floor_after}, {live} live now"),
            ),
        ],
        Evidence::LostWaker {
            task_ids,
            oldest_idle_seconds,
        } => {
            let ids: Vec<String> = task_ids.iter().map(u64::to_string).collect();
            vec![
                (ITEM, format!("tasks {}", ids.join(", "))),
                (
                    ITEM,
                    format!("oldest idle {}", fmt_secs(*oldest_idle_seconds)),
                ),
            ]
        }
        Evidence::BlockedWorker {
            worker,
            task,
            seconds,
            threshold_seconds,
        } => vec![(
            ITEM,
            format!(
                "task {task} on {} in one poll for {} (threshold {})",
                worker.map_or_else(|| "a worker".to_string(), |w| format!("worker {w}")),
                fmt_secs(*seconds),
                fmt_secs(*threshold_seconds)
            ),
        )],
        Evidence::AllWorkersBlocked { workers, seconds } => vec![(
            ITEM,
            format!(
                "all {workers} workers in a poll for at least {}",
                fmt_secs(*seconds)
            ),
        )],
        Evidence::Deadlock {
            cycle,
            blocked_behind,
        } => {
            let mut lines = Vec::new();
            for step in cycle {
                lines.push((
                    ITEM,
                    format!(
                        "{} waits {} for {} of {} at {}",
                        task_text(step.task),
                        fmt_secs(step.waiting_seconds),
                        step.wait_mode.as_str(),
                        step.waits_for,
                        step.wait_site
                    ),
                ));
                if let Some(site) = &step.task_site {
                    lines.push((SUB, format!("spawned at {site}")));
                }
                for held in &step.holds {
                    lines.push((SUB, format!("holds {held}")));
                }
            }
            lines.push((
                ITEM,
                format!(
                    "{blocked_behind} more task{} wait behind the cycle",
                    plural(*blocked_behind)
                ),
            ));
            lines
        }
        Evidence::GuardAcrossAwait {
            lock,
            guards,
            oldest_idle_seconds,
            threshold_seconds,
        } => vec![
            (ITEM, format!("lock {lock}")),
            (
                ITEM,
                format!(
                    "{guards} guard{} held by idle tasks, oldest idle {} (threshold {})",
                    plural(*guards),
                    fmt_secs(*oldest_idle_seconds),
                    fmt_secs(*threshold_seconds)
                ),
            ),
        ],
        Evidence::HotLock {
            lock,
            wait_share,
            contended,
            top_holder_sites,
        } => {
            let mut lines = vec![
                (ITEM, format!("lock {lock}")),
                (
                    ITEM,
                    format!(
                        "wait share {}, {contended} contended",
                        fmt_share(*wait_share)
                    ),
                ),
            ];
            if !top_holder_sites.is_empty() {
                lines.push((ITEM, "delay charged to holder sites:".to_string()));
            }
            for d in top_holder_sites {
                lines.push((
                    SUB,
                    format!(
                        "{}  {} contention{}  at {}",
                        fmt_secs(d.seconds),
                        d.contentions,
                        plural(d.contentions),
                        d.site
                    ),
                ));
            }
            lines
        }
        Evidence::BlockingPoolSaturated {
            threads,
            queue_depth,
            seconds,
        } => vec![(
            ITEM,
            format!(
                "all {threads} threads busy, {queue_depth} queued, for {}",
                fmt_secs(*seconds)
            ),
        )],
        Evidence::Unknown => Vec::new(),
    }
}

/// What the findings view's detail pane shows of `finding`, `width` columns wide: what
/// Enter opens, the site, the full summary, the evidence.
fn finding_detail_lines(app: &App, finding: &Finding, width: usize) -> Vec<Line<'static>> {
    let theme = Theme::new(app.no_color);
    let hint = match app.finding_target(finding) {
        FindingTarget::Site(_) => "Enter: this spawn site's detail and task dump".to_string(),
        FindingTarget::Lock(Some(lock)) => format!("Enter: the locks view on {}", clean(&lock)),
        FindingTarget::Lock(None) => "Enter: the locks view (no lock matches)".to_string(),
        FindingTarget::Nothing => "not a spawn site of the table: Enter opens nothing".to_string(),
    };
    let mut lines: Vec<Line<'static>> = wrap_words(&hint, width)
        .into_iter()
        .map(|l| Line::from(Span::styled(l, theme.dim())))
        .collect();
    for (i, part) in wrap_chars(&clean(&finding.site), width.saturating_sub(6))
        .into_iter()
        .enumerate()
    {
        let lead = if i == 0 { "Site: " } else { "      " };
        lines.push(Line::from(vec![
            Span::styled(lead, theme.label()),
            Span::raw(part),
        ]));
    }
    lines.extend(
        wrap_words(&clean(&finding.summary), width)
            .into_iter()
            .map(|l| Line::from(Span::raw(l))),
    );
    let evidence = evidence_lines(&finding.evidence);
    if evidence.is_empty() {
        lines.push(Line::from(vec![
            Span::styled("Evidence: ", theme.label()),
            Span::raw("-"),
        ]));
    } else {
        lines.push(Line::from(Span::styled("Evidence:", theme.label())));
        for (indent, text) in evidence {
            lines.extend(
                hanging(indent, &clean(&text), width)
                    .into_iter()
                    .map(|l| Line::from(Span::raw(l))),
            );
        }
    }
    lines
}

fn render_finding_detail(frame: &mut Frame, area: Rect, app: &App, finding: &Finding) {
    if area.height == 0 {
        return;
    }
    let width = usize::from(area.width.saturating_sub(2));
    let title = format!(
        " Finding {} of {} ",
        app.finding_selected() + 1,
        app.findings().len()
    );
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        title,
        Style::default().add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(
        Paragraph::new(finding_detail_lines(app, finding, width)).block(block),
        area,
    );
}

/// `text` cut into pieces of at most `width` characters (at least 20).
fn wrap_chars(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(width.max(20))
        .map(|c| c.iter().collect())
        .collect()
}

/// Milliseconds: `0.4 ms`, `12 ms`.
fn fmt_ms(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let ms = secs * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A duration for people: `250ms`, `4.5s`, `3m 05s`.
fn fmt_secs(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        "-".into()
    } else if secs < 1.0 {
        format!("{:.0}ms", secs * 1e3)
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        fmt_uptime(secs)
    }
}

fn fmt_spread(s: &Spread) -> String {
    format!(
        "{}/{}/{}",
        fmt_secs(s.min),
        fmt_secs(s.median),
        fmt_secs(s.max)
    )
}

/// Time of day of a Unix timestamp in milliseconds, as `HH:MM:SS UTC`.
fn fmt_utc_time(unix_ms: u64) -> String {
    let s = unix_ms / 1000;
    format!(
        "{:02}:{:02}:{:02} UTC",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

/// A text sparkline of `samples` (oldest first), `width` characters wide, newest at the
/// right. Scaled to the largest sample shown; columns with no samples yet are blank. When
/// there are more samples than columns, each column shows the maximum of a bucket.
pub fn sparkline(samples: &[u64], width: usize) -> String {
    if width == 0 {
        return String::new();
    }
    // Bucket size from the ring's capacity, so the time scale does not change as it fills.
    let bucket = HISTORY_LEN.div_ceil(width).max(1);
    let mut columns: Vec<u64> = samples
        .rchunks(bucket)
        .take(width)
        .map(|c| c.iter().copied().max().unwrap_or(0))
        .collect();
    columns.reverse();
    let max = columns.iter().copied().max().unwrap_or(0);
    let min = columns.iter().copied().min().unwrap_or(0);
    // A series that moves by at least SPARK_MIN_RANGE is drawn from its own minimum to its
    // maximum, so a climb from 2400 to 3000 still reads as a climb. Smaller moves are drawn
    // from 0 against at least SPARK_MIN_RANGE, so a site flickering between 0 and 2 reads
    // as flat, not as spikes.
    let (lo, hi) = if max - min >= SPARK_MIN_RANGE {
        (min, max)
    } else {
        (0, max.max(SPARK_MIN_RANGE))
    };
    let span = u128::from(hi - lo);
    let mut out = " ".repeat(width - columns.len());
    for v in columns {
        // Round to nearest of the 8 levels; u128 so that huge counts cannot overflow.
        let level = ((u128::from(v - lo) * 7 + span / 2) / span) as usize;
        out.push(SPARK_CHARS[level.min(7)]);
    }
    out
}

/// A signed change: `+12`, `-3`, `0`.
fn fmt_delta(d: i128) -> String {
    if d > 0 {
        format!("+{d}")
    } else {
        d.to_string()
    }
}

/// Seconds of uptime as `1d 02h`, `3h 04m 05s`, `4m 05s` or `5s`.
fn fmt_uptime(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let d = Duration::from_secs_f64(secs.min(1e12));
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if days > 0 {
        format!("{days}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m {sec:02}s")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

fn fmt_busy(secs: f64) -> String {
    if secs.is_finite() {
        format!("{secs:.2}")
    } else {
        "-".into()
    }
}

/// Replaces control characters (the target is not trusted) with U+FFFD.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Keeps the end of `s` (the file name and line) when it is wider than `width`.
/// A lock's label in at most `width` characters. A named lock, `sessions (src/a.rs:18:22)`,
/// keeps its name and the end of its site (`sessions (…/a.rs:18:22)`); a lock known by
/// its site only is cut from the left like a spawn site.
fn shorten_lock_label(label: &str, width: usize) -> String {
    if label.chars().count() <= width {
        return label.to_string();
    }
    if let Some((name, site)) = label.strip_suffix(')').and_then(|l| l.rsplit_once(" (")) {
        let room = width.saturating_sub(name.chars().count() + 3);
        if room >= MIN_LOCK_SITE_CHARS {
            return format!("{name} ({})", truncate_left(site, room));
        }
    }
    truncate_left(label, width)
}

/// Fewest characters of a named lock's site worth showing after its name.
const MIN_LOCK_SITE_CHARS: usize = 12;

fn truncate_left(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = s.chars().skip(n - (width - 1)).collect();
    // Cut at a path separator when that still leaves the file name: "…/serve/mod.rs:389:5"
    // reads better than "…ve/mod.rs:389:5".
    let tail = match tail.find('/') {
        Some(i) if i > 0 && tail[i..].chars().count() > 1 => tail[i..].to_string(),
        _ => tail,
    };
    format!("…{tail}")
}

/// Draws a table of `len` rows with one highlighted (selected) row, scrolled to `offset`:
/// the shape every list view shares. Only the rows that fit are built (`row(i)` for the
/// rows on screen): a table of 10k sites builds ~50 rows per frame, not 10k.
fn render_table_rows<'a>(
    frame: &mut Frame,
    area: Rect,
    (len, row): (usize, impl Fn(usize) -> Row<'a>),
    widths: impl IntoIterator<Item = Constraint>,
    header: Row<'a>,
    block: Block<'a>,
    (offset, selected): (usize, usize),
) {
    // Rows that fit: inside the borders, under the column titles (one line, no margin).
    let fit = usize::from(area.height.saturating_sub(3));
    let start = visible_start(len, fit, offset, selected);
    let end = len.min(start + fit);
    // When some rows are off screen, the bottom border says which are shown.
    let block = if start > 0 || end < len {
        block.title_bottom(Line::from(format!(" {}-{end} of {len} ", start + 1)).right_aligned())
    } else {
        block
    };
    let table = Table::new((start..end).map(row), widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_offset(0).with_selected(Some(
        selected.min(len.saturating_sub(1)).saturating_sub(start),
    ));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The first row shown of a table of `len` one-line rows where `fit` rows fit, asked to
/// start at `offset` with row `selected` selected: moved as little as keeps the selected
/// row on screen, as ratatui's `Table` moves its offset.
fn visible_start(len: usize, fit: usize, offset: usize, selected: usize) -> usize {
    let start = offset.min(len.saturating_sub(1));
    let selected = selected.min(len.saturating_sub(1));
    if fit == 0 {
        start
    } else if selected >= start + fit {
        selected + 1 - fit
    } else {
        start.min(selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_locks_keep_their_name_when_cut() {
        let label = "sessions (demo-service/src/session.rs:18:22)";
        assert_eq!(shorten_lock_label(label, 44), label);
        assert_eq!(
            shorten_lock_label(label, 34),
            "sessions (…/src/session.rs:18:22)"
        );
        // No room for a useful part of the site: cut as a site.
        assert_eq!(shorten_lock_label(label, 20), "…/session.rs:18:22)");
        assert_eq!(
            shorten_lock_label("demo-service/src/db.rs:14:20", 20),
            "…/src/db.rs:14:20"
        );
    }

    #[test]
    fn only_the_rows_on_screen_are_built_and_the_selection_stays_visible() {
        // 10 rows fit: the window starts at the offset while the selection is inside it.
        assert_eq!(visible_start(10_000, 10, 0, 0), 0);
        assert_eq!(visible_start(10_000, 10, 40, 45), 40);
        // Selection below the window: it becomes the last row shown.
        assert_eq!(visible_start(10_000, 10, 0, 25), 16);
        // Selection above it: it becomes the first row shown.
        assert_eq!(visible_start(10_000, 10, 30, 12), 12);
        // Offsets past the end are cut to the last row, as ratatui's Table does.
        assert_eq!(visible_start(3, 10, 7, 2), 2);
        assert_eq!(visible_start(3, 0, 1, 2), 1);
    }

    #[test]
    fn dates_from_files_never_panic() {
        assert_eq!(
            fmt_utc_datetime(1_700_000_000_000),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(fmt_utc_datetime(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            fmt_utc_datetime(253_402_300_799_000),
            "9999-12-31 23:59:59 UTC"
        );
        assert_eq!(
            fmt_utc_datetime(u64::MAX),
            "18446744073709551615 ms after 1970"
        );
    }

    #[test]
    fn sparkline_scales_and_pads() {
        assert_eq!(sparkline(&[], 5), "     ");
        // One column per sample when the column is as wide as the ring.
        assert_eq!(sparkline(&[0, 0], HISTORY_LEN).trim_start(), "▁▁");
        assert_eq!(sparkline(&[0, 14, 7], HISTORY_LEN).trim_start(), "▁█▅");
        // Small moves are drawn against 0..10: flat, not spikes.
        assert_eq!(sparkline(&[0, 2, 1], HISTORY_LEN).trim_start(), "▁▂▂");
        // A climb far from zero still reads as a climb.
        assert_eq!(
            sparkline(&[2400, 2700, 3000], HISTORY_LEN).trim_start(),
            "▁▅█"
        );
        // Narrow: a column covers HISTORY_LEN / width samples, so the scale is stable.
        assert_eq!(sparkline(&[0, 70], 4), "   █");
        assert_eq!(sparkline(&[1, 2, 3], 0), "");
        assert_eq!(sparkline(&[u64::MAX, 0], HISTORY_LEN).trim_start(), "█▁");
        // 60 samples into 20 columns: max of each group of 3, newest at the right.
        let samples: Vec<u64> = (0..60).map(|i| if i == 59 { 20 } else { 0 }).collect();
        let s = sparkline(&samples, 20);
        assert_eq!(s.chars().count(), 20);
        assert!(s.ends_with('█'));
        assert!(s.starts_with('▁'));
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(fmt_uptime(5.4), "5s");
        assert_eq!(fmt_uptime(3725.0), "1h 02m 05s");
        assert_eq!(fmt_uptime(f64::NAN), "-");
        assert_eq!(fmt_uptime(-1.0), "-");
        assert_eq!(fmt_busy(1.234), "1.23");
        assert_eq!(truncate_left("abcdef", 4), "…def");
        assert_eq!(
            truncate_left("axum-0.8.9/src/serve/mod.rs:389:5", 22),
            "…/serve/mod.rs:389:5"
        );
        assert_eq!(truncate_left("abc", 4), "abc");
        assert_eq!(clean("a\x1b[2Jb"), "a\u{fffd}[2Jb");
        assert_eq!(fmt_ms(0.0123), "12 ms");
        assert_eq!(fmt_ms(0.004), "4.0 ms");
        assert_eq!(fmt_secs(0.25), "250ms");
        assert_eq!(fmt_secs(125.0), "2m 05s");
        assert_eq!(fmt_utc_time(86_400_000 + 3_723_000), "01:02:03 UTC");
        assert_eq!(
            wrap_chars(&"x".repeat(45), 20),
            ["x".repeat(20), "x".repeat(20), "x".repeat(5)]
        );
    }
}
