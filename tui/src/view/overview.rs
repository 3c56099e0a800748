//! The overview (key `o`): the whole process at a glance. Live tasks and spawn rate with
//! their history, the runtime's workers (busy ratio each, against the CPU quota), the
//! global queue, the blocking pool, and the open findings by severity and kind.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use taskscope::model::{RuntimeInfo, Severity};

use super::{
    SPARK_WIDTH, Theme, clean, fmt_secs, footer_line, severity_counts, severity_tag, sparkline,
    status_lines,
};
use crate::state::App;

/// The keys line at the bottom of the overview.
pub const OVERVIEW_FOOTER: &str = "o/q/Esc back  s save  R record  p pause  ? all keys";

/// Width of a worker's busy bar.
const BAR_WIDTH: usize = 20;

/// Workers listed one per line at most; more are summarised (mean, max, busiest).
pub const MAX_WORKER_LINES: usize = 8;

/// `██████░░░░` for a ratio in 0..=1 (clamped), `width` cells.
fn bar(ratio: f64, width: usize) -> String {
    let ratio = if ratio.is_finite() {
        ratio.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let full = (ratio * width as f64).round() as usize;
    format!("{}{}", "█".repeat(full), "░".repeat(width - full))
}

fn pct(x: f64) -> String {
    format!("{:>3.0}%", x * 100.0)
}

/// The tasks section: live total (summed over targets when there are several) and spawn
/// rate, each with its sparkline; what the runtime counts as alive; the global queue.
fn task_lines(app: &App, theme: Theme) -> Vec<Line<'static>> {
    let label = |s: &'static str| Span::styled(s, theme.label());
    let snap = app.snapshot();
    let runtime = snap.and_then(|s| s.runtime.as_ref());
    let dash = || "-".to_string();
    let spark = |samples: Vec<u64>| {
        Span::styled(
            sparkline(&samples, SPARK_WIDTH).trim_start().to_string(),
            theme.fg(Color::Green),
        )
    };
    let live = snap.map_or_else(dash, |_| app.live_total().to_string());
    let rate = app.spawn_rate().map_or_else(dash, |r| format!("{r:.1}/s"));
    let mut lines = vec![
        Line::from(vec![
            label("Live tasks   "),
            Span::styled(
                format!("{live:>10}"),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw("  "),
            spark(app.total_history().samples().collect()),
        ]),
        Line::from(vec![
            label("Spawn rate   "),
            Span::raw(format!("{rate:>10}")),
            Span::raw("  "),
            spark(app.spawn_rate_history().samples().collect()),
        ]),
        Line::from(vec![
            label("Runtime alive"),
            Span::raw(format!(
                "{:>10}",
                runtime.map_or_else(dash, |r| r.alive_tasks.to_string())
            )),
            Span::raw("   "),
            label("Global queue "),
            Span::raw(runtime.map_or_else(dash, |r| r.global_queue_depth.to_string())),
            Span::raw("   "),
            label("Sites "),
            Span::raw(snap.map_or_else(dash, |s| s.sites.len().to_string())),
        ]),
    ];
    if let Some(targets) = app.targets_summary() {
        lines.insert(
            1,
            Line::from(vec![
                label("  all targets"),
                Span::raw(format!("{:>10}", targets.live_total)),
                Span::raw(format!(
                    "  over {} targets ({} answering)",
                    targets.targets, targets.answering
                )),
            ]),
        );
    }
    lines
}

/// One line per worker (busy bar and ratio, blocked ones marked), or a summary when there
/// are many; then the blocking pool.
fn worker_lines(runtime: Option<&RuntimeInfo>, theme: Theme) -> Vec<Line<'static>> {
    let label = |s: &'static str| Span::styled(s, theme.label());
    let Some(r) = runtime else {
        return vec![Line::from(Span::styled(
            "no runtime facts yet (the runtime has not polled a task)",
            theme.dim(),
        ))];
    };
    let mut lines = Vec::new();
    let ratios = &r.worker_busy_ratio;
    if ratios.len() <= MAX_WORKER_LINES {
        for (i, ratio) in ratios.iter().enumerate() {
            lines.push(Line::from(vec![
                label("worker "),
                Span::raw(format!("{i:<3}")),
                Span::styled(bar(*ratio, BAR_WIDTH), theme.fg(Color::Green)),
                Span::raw(format!(" {}", pct(*ratio))),
            ]));
        }
    } else {
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        let (busiest, max) = ratios
            .iter()
            .copied()
            .enumerate()
            .fold((0, 0.0), |acc, (i, x)| if x > acc.1 { (i, x) } else { acc });
        lines.push(Line::from(vec![
            label("mean      "),
            Span::styled(bar(mean, BAR_WIDTH), theme.fg(Color::Green)),
            Span::raw(format!(" {}", pct(mean))),
        ]));
        lines.push(Line::from(vec![
            label("busiest   "),
            Span::styled(bar(max, BAR_WIDTH), theme.fg(Color::Green)),
            Span::raw(format!(" {} (worker {busiest})", pct(max))),
        ]));
    }
    if r.blocked_workers > 0 {
        lines.push(Line::from(Span::styled(
            format!(
                "{} of {} workers blocked (longest poll {})",
                r.blocked_workers,
                r.workers,
                fmt_secs(r.longest_poll_seconds)
            ),
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        )));
    }
    let busy = r.blocking_threads.saturating_sub(r.idle_blocking_threads);
    let max = r
        .max_blocking_threads
        .map_or(String::new(), |m| format!(" (max {m})"));
    let pool = format!(
        "{busy}/{} busy{max}, {} queued",
        r.blocking_threads, r.blocking_queue_depth
    );
    lines.push(Line::from(vec![
        label("Blocking pool "),
        if r.blocking_saturated_seconds > 0.0 {
            Span::styled(pool, theme.fg(Color::Red))
        } else {
            Span::raw(pool)
        },
    ]));
    lines
}

/// The workers section's title: how many, and the CPUs the process may use.
fn workers_title(runtime: Option<&RuntimeInfo>) -> String {
    match runtime {
        None => " Workers ".into(),
        // The CPUs the process may use: its cgroup quota, else the CPUs it may run on.
        Some(r) if r.cpu_quota > 0.0 => {
            let oversubscribed = r.workers as f64 > r.cpu_quota + 1e-9;
            format!(
                " Workers: {} on {:.1} CPUs{} ",
                r.workers,
                r.cpu_quota,
                if oversubscribed {
                    " (more workers than CPUs: they take turns)"
                } else {
                    ""
                }
            )
        }
        Some(r) => format!(" Workers: {} ", r.workers),
    }
}

/// Open findings by severity, then by kind (most first).
fn finding_lines(app: &App, theme: Theme) -> Vec<Line<'static>> {
    let label = |s: &'static str| Span::styled(s, theme.label());
    let findings = app.findings();
    let mut lines = vec![Line::from({
        let mut spans = vec![label("By severity: ")];
        spans.extend(severity_counts(findings.iter().map(|f| f.severity), theme));
        spans
    })];
    if findings.is_empty() {
        return lines;
    }
    let mut kinds: Vec<(&'static str, usize, Severity)> = Vec::new();
    for f in findings {
        match kinds.iter_mut().find(|k| k.0 == f.kind.as_str()) {
            Some(k) => {
                k.1 += 1;
                if f.severity.rank() > k.2.rank() {
                    k.2 = f.severity;
                }
            }
            None => kinds.push((f.kind.as_str(), 1, f.severity)),
        }
    }
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut spans = vec![label("By kind:     ")];
    for (kind, n, severity) in kinds {
        spans.push(Span::styled(
            format!("{kind} {n}  "),
            theme.fg(severity_tag(severity).1),
        ));
    }
    lines.push(Line::from(spans));
    lines
}

/// Draws the overview.
pub(super) fn render_overview(frame: &mut Frame, area: Rect, app: &App) {
    let theme = Theme::new(app.no_color);
    let title = |s: String| Span::styled(s, theme.fg(Color::Cyan).add_modifier(Modifier::BOLD));
    let mut header = status_lines(app);
    let snap = app.snapshot();
    header.push(Line::from(vec![
        Span::styled("Process: ", theme.label()),
        Span::raw(snap.map_or_else(
            || "-".to_string(),
            |s| format!("{} (pid {})", clean(&s.process.name), s.process.pid),
        )),
    ]));
    let tasks = task_lines(app, theme);
    let runtime = snap.and_then(|s| s.runtime.as_ref());
    let workers = worker_lines(runtime, theme);
    let findings = finding_lines(app, theme);
    let h = |lines: &[Line]| {
        u16::try_from(lines.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2)
    };
    let [head, tasks_area, workers_area, findings_area, _, footer] = Layout::vertical([
        Constraint::Length(h(&header)),
        Constraint::Length(h(&tasks)),
        Constraint::Length(h(&workers)),
        Constraint::Length(h(&findings)),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let block = |t: String| Block::default().borders(Borders::ALL).title(title(t));
    frame.render_widget(
        Paragraph::new(header).block(block(" taskscope › overview ".into())),
        head,
    );
    frame.render_widget(
        Paragraph::new(tasks).block(block(" Tasks ".into())),
        tasks_area,
    );
    frame.render_widget(
        Paragraph::new(workers).block(block(workers_title(runtime))),
        workers_area,
    );
    frame.render_widget(
        Paragraph::new(findings).block(block(format!(" Findings ({}) ", app.findings().len()))),
        findings_area,
    );
    frame.render_widget(Paragraph::new(footer_line(app, OVERVIEW_FOOTER)), footer);
}
