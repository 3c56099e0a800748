//! Terminal UI for taskscope: polls a service's exporter and shows live tasks per spawn
//! site.
//!
//! Laid out like tokio-console: [`state`] holds what is known (pure logic), [`view`] draws
//! it, [`source`] says where snapshots come from ([`client`] fetches them over HTTP), and
//! [`run`] ties them together in one event loop. [`files`] writes and reads snapshot
//! files and recordings, [`record`] is the flight recorder.
//!
//! Enter on a site opens its detail view: the site's counts (still refreshed) and a task
//! dump of that site, taken when the view opens and again on `r`, never on a timer (a dump
//! pauses the target's runtime for a moment).
//!
//! `l` switches the table to the instrumented locks (`taskscope::sync`), most waited-on
//! first, with the selected lock's holders, waiters and the holder sites charged with the
//! delay; `l` again, `q` or Esc goes back to the sites.
//!
//! `f` lists every finding, with the selected one's summary and evidence; Enter opens its
//! site's detail, or the locks view on its lock. `p` freezes the display (fetching goes
//! on), `+`/`-` halve or double the refresh interval, and `?` shows every key.
//!
//! `o` shows the overview; `S` and `/` sort and filter the sites. Several targets
//! ([`run_many`]) get a picker (Tab, 1-9), each fetched on its own. `s` saves the shown
//! snapshot, `R` records; [`run_file`] opens either with a time cursor (←/→).

#![warn(missing_docs)]

pub mod client;
pub mod console;
pub mod files;
pub mod record;
mod runtimes;
pub mod source;
pub mod state;
pub mod top;
pub mod view;

use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt as _;
use ratatui::DefaultTerminal;
use ratatui::layout::Rect;
use taskscope::model::{Dump, Snapshot};

use crate::client::{FETCH_TIMEOUT, FetchError};
use crate::files::{Opened, Recorder, RecordingLimits};
use crate::source::{HttpSource, Source, SourceFuture};
use crate::state::{
    App, MAX_TARGETS, Nav, ReplayFrame, ReplayKind, View, Workbench, no_color_from_env,
};

/// Target used when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:6060";

/// Default time between fetches.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(1);

/// Shortest time between fetches accepted.
pub const MIN_REFRESH: Duration = Duration::from_millis(100);

/// Longest time between fetches accepted (`-` doubles the interval up to it).
pub const MAX_REFRESH: Duration = Duration::from_secs(60);

/// What to watch and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URL of the target's exporter, e.g. `http://127.0.0.1:6060` or `127.0.0.1:6060`.
    pub url: String,
    /// Time between fetches ([`MIN_REFRESH`] to [`MAX_REFRESH`]; changed with `+`/`-`).
    pub refresh: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: DEFAULT_URL.to_string(),
            refresh: DEFAULT_REFRESH,
        }
    }
}

/// Normalises a target URL: adds `http://` when no scheme is given, strips trailing
/// slashes and a trailing `/metrics` or `/debug/taskscope/snapshot` (the exporter's base is
/// wanted). Only `http` is supported (this build has no TLS).
pub fn normalize_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim();
    anyhow::ensure!(!url.is_empty(), "the target URL is empty");
    let url = match url.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => url.to_string(),
        Some((scheme, _)) => anyhow::bail!(
            "unsupported scheme {scheme:?} in {url:?}: taskscope talks plain http to the exporter"
        ),
        None => format!("http://{url}"),
    };
    let mut url = url.trim_end_matches('/').to_string();
    // People paste the URL of an endpoint they know; the TUI wants the exporter's base.
    for endpoint in ["/debug/taskscope/snapshot", "/metrics"] {
        if let Some(base) = url.strip_suffix(endpoint) {
            url = base.trim_end_matches('/').to_string();
        }
    }
    anyhow::ensure!(
        url.len() > "http://".len(),
        "the target URL has no host: {url:?}"
    );
    Ok(url)
}

/// Runs the TUI until the user quits.
///
/// Builds its own current-thread tokio runtime, so call it from a plain thread; if called
/// from inside a tokio runtime it runs on a helper thread instead. The terminal is restored
/// on every exit path, errors and panics included.
pub fn run(config: Config) -> anyhow::Result<()> {
    let url = normalize_url(&config.url)?;
    let client = client::client_builder()?
        .timeout(FETCH_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;
    run_source(Box::new(HttpSource::new(client, url)), config.refresh)
}

/// Watches several exporters at once (`taskscope URL1 URL2 ...`): a target picker (Tab,
/// number keys) over the same views, each target fetched on its own. A bad URL is refused
/// before the terminal is touched, naming it.
pub fn run_many(urls: &[String], refresh: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(!urls.is_empty(), "no target given");
    anyhow::ensure!(
        urls.len() <= MAX_TARGETS,
        "{} targets given; taskscope watches at most {MAX_TARGETS} at once",
        urls.len()
    );
    let client = client::client_builder()?
        .timeout(FETCH_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;
    let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(urls.len());
    for url in urls {
        let url = normalize_url(url).with_context(|| format!("target {url:?}"))?;
        sources.push(Box::new(HttpSource::new(client.clone(), url)));
    }
    run_sources(sources, refresh)
}

/// Largest targets file read (see [`read_targets_file`]).
pub const MAX_TARGETS_FILE_BYTES: u64 = 64 * 1024;

/// The targets listed in a file (`taskscope --targets FILE`): one exporter URL per line;
/// blank lines and `#` comments are skipped. Each URL is checked as on the command line;
/// errors name the file and the line. At most [`MAX_TARGETS`] targets and
/// [`MAX_TARGETS_FILE_BYTES`] bytes.
pub fn read_targets_file(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use std::io::Read as _;
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
    let mut text = String::new();
    file.take(MAX_TARGETS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {name} as text"))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_TARGETS_FILE_BYTES,
        "{name} is larger than {MAX_TARGETS_FILE_BYTES} bytes: not a targets file"
    );
    let mut urls = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        anyhow::ensure!(
            !line.chars().any(char::is_control),
            "{name} line {}: control characters in {line:?}: not a URL",
            n + 1
        );
        normalize_url(line).with_context(|| format!("{name} line {}", n + 1))?;
        urls.push(line.to_string());
    }
    anyhow::ensure!(!urls.is_empty(), "{name} lists no target");
    anyhow::ensure!(
        urls.len() <= MAX_TARGETS,
        "{name} lists {} targets; taskscope watches at most {MAX_TARGETS} at once",
        urls.len()
    );
    Ok(urls)
}

/// Runs the TUI on `source` until the user quits, fetching every `refresh`; see
/// [`source`] for what a source is. Like [`run`], it builds its own current-thread
/// runtime (on a helper thread when called from inside a runtime), and the terminal is
/// restored on every exit path.
pub fn run_source(source: Box<dyn Source>, refresh: Duration) -> anyhow::Result<()> {
    run_sources(vec![source], refresh)
}

/// [`run_source`] for several sources at once, with a target picker; each is fetched
/// independently, so a dead or slow one never holds up the others.
pub fn run_sources(sources: Vec<Box<dyn Source>>, refresh: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(!sources.is_empty(), "no target given");
    anyhow::ensure!(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        "taskscope draws in a terminal, but its output is not one"
    );
    let refresh = refresh.clamp(MIN_REFRESH, MAX_REFRESH);
    let now = Instant::now();
    let no_color = no_color_from_env();
    let apps = sources
        .iter()
        .map(|source| {
            App::new(source.label(), now)
                .with_no_color(no_color)
                .with_refresh(refresh)
                .with_capabilities(source.capabilities())
        })
        .collect();
    run_on_thread(move || {
        // Made here: links hold futures that stay on the UI thread.
        let links = sources.into_iter().map(|s| Some(Link::new(s))).collect();
        run_workbench(Workbench::new(apps), links)
    })
}

/// Runs `f` here, or on a helper thread when called from inside a tokio runtime (the UI
/// builds its own).
fn run_on_thread(f: impl FnOnce() -> anyhow::Result<()> + Send) -> anyhow::Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the taskscope UI thread panicked")))
        });
    }
    f()
}

fn run_workbench(wb: Workbench, links: Vec<Option<Link>>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let _guard = TerminalGuard;
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    // The wheel scrolls the tables. Without it (some terminals refuse), keys still do.
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture);
    rt.block_on(event_loop(&mut terminal, wb, links))
    // `_guard` restores the terminal here, and also on early return or unwinding.
}

/// Opens a snapshot file or a recording (`taskscope open FILE`) in the TUI, with no live
/// target: the same views, the file and its time in the header, and for a recording a
/// time cursor (←/→). Errors (not a taskscope file, another version, damaged) come back
/// before the terminal is touched.
pub fn run_file(path: &std::path::Path) -> anyhow::Result<()> {
    let opened = files::open(path)?;
    anyhow::ensure!(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        "taskscope draws in a terminal, but its output is not one"
    );
    let app = app_for_file(&path.display().to_string(), opened, Instant::now())
        .with_no_color(no_color_from_env());
    run_on_thread(move || run_workbench(Workbench::new(vec![app]), vec![None]))
}

/// The state showing an opened file labelled `label`, at `now`: a snapshot file as one
/// frame with its saved dump, a recording as its frames with the cursor on the last one
/// (and why it was cut short, if it was, in the footer).
pub fn app_for_file(label: &str, opened: Opened, now: Instant) -> App {
    let mut app = App::new(label, now);
    match opened {
        Opened::Snapshot(saved) => {
            let saved = *saved;
            app.load_frames(
                label,
                saved.target,
                ReplayKind::Snapshot,
                vec![ReplayFrame {
                    at_unix_ms: saved.saved_at_unix_ms,
                    snapshot: saved.snapshot,
                }],
                saved.dump.map(|d| (d.site, d.dump)),
            );
        }
        Opened::Recording(recording) => {
            let frames = recording
                .frames
                .into_iter()
                .map(|f| ReplayFrame {
                    at_unix_ms: f.at_unix_ms,
                    snapshot: f.snapshot,
                })
                .collect();
            app.load_frames(
                label,
                recording.header.target,
                ReplayKind::Recording,
                frames,
                None,
            );
            if let Some(why) = recording.cut_short {
                app.set_notice(format!("recording cut short: {why}"));
            }
        }
    }
    app
}

/// Restores the terminal when dropped.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
        ratatui::restore();
    }
}

/// When to fetch: every [`App::refresh`], following it when `+`/`-` change it.
struct FetchTicker {
    interval: tokio::time::Interval,
}

impl FetchTicker {
    /// Ticks at once, then every `period`.
    fn new(period: Duration) -> Self {
        FetchTicker {
            interval: Self::interval(Duration::ZERO, period),
        }
    }

    fn interval(first: Duration, period: Duration) -> tokio::time::Interval {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    }

    /// Switches to `period` when it differs from the current one: the next tick comes
    /// `period` from now (not after the rest of an old, maybe much longer, wait).
    fn follow(&mut self, period: Duration) {
        if self.interval.period() != period {
            self.interval = Self::interval(period, period);
        }
    }

    #[cfg(test)]
    fn period(&self) -> Duration {
        self.interval.period()
    }

    async fn tick(&mut self) {
        self.interval.tick().await;
    }
}

/// One source and its requests in flight: at most one snapshot fetch, one dump and one
/// baseline each, polled next to the keyboard so that keys are never blocked. A dump
/// asked for meanwhile starts after the one in flight (the exporter would refuse a second
/// one with 429 anyway).
struct Link {
    source: Box<dyn Source>,
    fetch: Option<SourceFuture<Snapshot>>,
    dump: Option<(u64, SourceFuture<Dump>)>,
    baseline: Option<SourceFuture<u64>>,
    /// Whether the target's runtimes were looked at (see [`runtimes::expand`]).
    runtimes_expanded: bool,
}

/// A request of a [`Link`] that finished.
enum Done {
    Snapshot(Box<Result<Snapshot, FetchError>>),
    Dump(u64, Result<Dump, FetchError>),
    Baseline(Result<u64, FetchError>),
}

impl Link {
    fn new(source: Box<dyn Source>) -> Self {
        Link {
            source,
            fetch: None,
            dump: None,
            baseline: None,
            runtimes_expanded: false,
        }
    }

    /// Starts the dump and baseline `app` asks for, when none of that kind is in flight;
    /// a source that cannot do it says why, on screen.
    fn start_requests(&mut self, app: &mut App, now: Instant) {
        if self.baseline.is_none() && app.take_baseline_request() {
            match self.source.mark_baseline() {
                Ok(future) => self.baseline = Some(future),
                Err(why) => app.set_notice(format!("baseline unavailable for this source: {why}")),
            }
        }
        if self.dump.is_none()
            && let Some(request) = app.take_dump_request()
        {
            match self.source.dump(&request.site) {
                Ok(future) => self.dump = Some((request.id, future)),
                Err(why) => app.refuse_dump(request.id, &why, now),
            }
        }
    }

    /// Starts a snapshot fetch unless one is in flight.
    fn start_fetch(&mut self) {
        if self.fetch.is_none() {
            self.fetch = Some(self.source.fetch());
        }
    }

    /// The next request to finish; pending while none is in flight.
    fn poll_done(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Done> {
        if let Some(fetch) = self.fetch.as_mut()
            && let Poll::Ready(result) = fetch.as_mut().poll(cx)
        {
            self.fetch = None;
            return Poll::Ready(Done::Snapshot(Box::new(result)));
        }
        if let Some((id, dump)) = self.dump.as_mut()
            && let Poll::Ready(result) = dump.as_mut().poll(cx)
        {
            let id = *id;
            self.dump = None;
            return Poll::Ready(Done::Dump(id, result));
        }
        if let Some(baseline) = self.baseline.as_mut()
            && let Poll::Ready(result) = baseline.as_mut().poll(cx)
        {
            self.baseline = None;
            return Poll::Ready(Done::Baseline(result));
        }
        Poll::Pending
    }
}

/// Hands a finished request to the state.
fn apply_done(app: &mut App, done: Done, now: Instant) {
    match done {
        Done::Snapshot(result) => app.apply(*result, now),
        Done::Dump(id, result) => app.apply_dump(id, result, now),
        Done::Baseline(result) => app.apply_baseline(result, now),
    }
}

/// Tells the state how many rows of the current view (and of the help) fit on the screen.
fn fit_viewport(app: &mut App, size: ratatui::layout::Rect) {
    if app.help_shown() {
        let (rows, lines) = view::help_metrics(size);
        app.set_help_viewport(rows, lines);
    }
    match app.view() {
        View::Sites => app.set_viewport_rows(view::table_body_rows(size, app)),
        View::Locks => app.set_lock_viewport_rows(view::lock_table_body_rows(size, app)),
        View::Detail => {
            let (rows, lines) = view::detail_metrics(size, app);
            app.set_detail_viewport(rows, lines);
        }
        View::Findings => app.set_finding_viewport_rows(view::finding_table_body_rows(size, app)),
        View::Overview => {}
    }
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    mut wb: Workbench,
    mut links: Vec<Option<Link>>,
) -> anyhow::Result<()> {
    let mut events = EventStream::new();
    let mut ticker = FetchTicker::new(wb.app().refresh());
    // The recording in progress (`R`) and the target it records.
    let mut recorder: Option<(usize, Recorder)> = None;

    let result = loop {
        let now = Instant::now();
        for (i, link) in links.iter_mut().enumerate() {
            if let (Some(link), Some(app)) = (link.as_mut(), wb.target_mut(i)) {
                app.tick(now);
                link.start_requests(app, now);
            }
        }
        wb.app_mut().tick(now);
        wb.sync();
        ticker.follow(wb.app().refresh());
        if wb.app_mut().take_save_request() {
            save(wb.app_mut());
        }
        if wb.app_mut().take_record_toggle() {
            toggle_recording(&mut wb, &mut recorder);
        }
        let size = match terminal.size() {
            Ok(size) => size,
            Err(e) => break Err(anyhow::Error::from(e).context("cannot read the terminal size")),
        };
        let area = view::workbench_view_area(size.into(), &wb);
        fit_viewport(wb.app_mut(), area);
        if let Err(e) = terminal.draw(|frame| view::render_workbench(frame, &wb)) {
            break Err(anyhow::Error::from(e).context("cannot draw"));
        }

        let app = wb.app();
        let redraw_soon = app.notice().is_some() || app.paused_at().is_some();
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => {
                    if handle_workbench_key(&mut wb, key) == Flow::Quit {
                        break Ok(());
                    }
                }
                Some(Ok(Event::Mouse(mouse))) => handle_mouse(wb.app_mut(), mouse, area),
                // Resize (and anything else): just redraw.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    break Err(anyhow::Error::from(e).context("cannot read terminal events"))
                }
                None => break Ok(()),
            },
            _ = ticker.tick() => {
                for link in links.iter_mut().flatten() {
                    link.start_fetch();
                }
            }
            (i, done) = std::future::poll_fn(|cx| poll_links(&mut links, cx)) => {
                let mut runtimes = Vec::new();
                if let Done::Snapshot(result) = &done
                    && let Ok(snapshot) = result.as_ref()
                {
                    record_frame(&mut wb, &mut recorder, i, snapshot);
                    // Looked at once per link (see runtimes::expand).
                    if links.get(i).and_then(Option::as_ref).is_some_and(|l| !l.runtimes_expanded) {
                        runtimes.clone_from(&snapshot.runtimes);
                    }
                }
                let now = Instant::now();
                if let Some(app) = wb.target_mut(i) {
                    apply_done(app, done, now);
                }
                runtimes::expand(&mut wb, &mut links, i, &runtimes, now);
            }
            // Redraw when a footer notice expires, and to count the seconds since pausing.
            _ = tokio::time::sleep(Duration::from_millis(500)), if redraw_soon => {}
        }
    };
    // A recording still going is finished properly, so its gzip stream ends cleanly.
    if let Some((_, recorder)) = recorder {
        recorder.finish()?;
    }
    result
}

/// The next request of any target to finish, with the target's index; pending while none
/// is in flight.
fn poll_links(links: &mut [Option<Link>], cx: &mut std::task::Context<'_>) -> Poll<(usize, Done)> {
    for (i, link) in links.iter_mut().enumerate() {
        if let Some(link) = link.as_mut()
            && let Poll::Ready(done) = link.poll_done(cx)
        {
            return Poll::Ready((i, done));
        }
    }
    Poll::Pending
}

/// `s`: saves the shown snapshot (and the open site's dump) in the current directory;
/// the footer says where, or why not.
fn save(app: &mut App) {
    let text = match app.save_contents(files::unix_ms_now()) {
        None => "nothing to save yet: no snapshot has arrived".to_string(),
        Some(saved) => match files::save_snapshot(std::path::Path::new("."), &saved) {
            Ok(path) => format!("saved to {} (taskscope open FILE)", path.display()),
            Err(e) => format!("cannot save: {e}"),
        },
    };
    app.set_notice(text);
}

/// `R`: starts recording the shown target to `taskscope-<pid>-<unix time>.jsonl.gz` in
/// the current directory, or stops (and closes) the recording in progress, whichever
/// target it records.
fn toggle_recording(wb: &mut Workbench, recorder: &mut Option<(usize, Recorder)>) {
    if let Some((i, r)) = recorder.take() {
        if let Some(app) = wb.target_mut(i) {
            app.set_recording(None);
        }
        stop_recording(wb.app_mut(), r, "recording stopped");
        return;
    }
    let active = wb.active();
    let app = wb.app_mut();
    let pid = app.snapshot().map_or(0, |s| s.process.pid);
    let path = files::default_path(
        std::path::Path::new("."),
        pid,
        files::unix_ms_now(),
        "jsonl.gz",
    );
    let interval_ms = u64::try_from(app.refresh().as_millis()).unwrap_or(u64::MAX);
    match Recorder::create(&path, &app.target, interval_ms, RecordingLimits::default()) {
        Ok(r) => {
            app.set_recording(Some((path.display().to_string(), 0)));
            app.set_notice(format!("recording to {} (R stops)", path.display()));
            *recorder = Some((active, r));
        }
        Err(e) => app.set_notice(format!("cannot record: {e}")),
    }
}

fn stop_recording(app: &mut App, recorder: Recorder, why: &str) {
    let frames = recorder.frames();
    app.set_recording(None);
    app.set_notice(match recorder.finish() {
        Ok(path) => format!("{why}: {frames} frames in {}", path.display()),
        Err(e) => format!("{why}, but closing it failed: {e}"),
    });
}

/// Appends a snapshot fetched from target `index` to the recording in progress, if it
/// records that target; stops it at its cap or on a write error, saying so.
fn record_frame(
    wb: &mut Workbench,
    recorder: &mut Option<(usize, Recorder)>,
    index: usize,
    snapshot: &Snapshot,
) {
    let Some((target, r)) = recorder.as_mut() else {
        return;
    };
    if *target != index {
        return;
    }
    let why = match r.push(files::unix_ms_now(), snapshot) {
        Ok(true) => {
            let (path, frames) = (r.path().display().to_string(), r.frames());
            if let Some(app) = wb.target_mut(index) {
                app.set_recording(Some((path, frames)));
            }
            return;
        }
        Ok(false) => r.full().map_or("recording stopped".to_string(), |full| {
            format!("recording stopped: {full}")
        }),
        Err(e) => format!("recording stopped: {e}"),
    };
    if let (Some((_, r)), Some(app)) = (recorder.take(), wb.target_mut(index)) {
        stop_recording(app, r, &why);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

/// Rows moved per notch of the mouse wheel.
const WHEEL_ROWS: usize = 3;

/// The mouse wheel scrolls what the arrows move: the selection of the table shown, the
/// detail view, the help overlay. A left click on a table row selects it (the view being
/// drawn in `area`).
fn handle_mouse(app: &mut App, mouse: crossterm::event::MouseEvent, area: Rect) {
    use crossterm::event::{MouseButton, MouseEventKind};
    let nav = match mouse.kind {
        MouseEventKind::ScrollUp => Nav::Up,
        MouseEventKind::ScrollDown => Nav::Down,
        MouseEventKind::Down(MouseButton::Left) if !app.help_shown() => {
            if let Some(index) = view::table_row_at(area, app, mouse.column, mouse.row) {
                app.select_index(index);
            }
            return;
        }
        _ => return,
    };
    for _ in 0..WHEEL_ROWS {
        if app.help_shown() {
            app.scroll_help(nav);
        } else {
            app.navigate(nav);
        }
    }
}

/// Keys with several targets: Tab/Shift-Tab and 1-9 pick the shown target (unless the
/// help or the filter takes the keys); everything else goes to it.
fn handle_workbench_key(wb: &mut Workbench, key: KeyEvent) -> Flow {
    let app = wb.app();
    if key.kind != KeyEventKind::Release
        && wb.targets().len() > 1
        && !app.help_shown()
        && !app.filter_editing()
    {
        match key.code {
            KeyCode::Tab => {
                wb.next();
                return Flow::Continue;
            }
            KeyCode::BackTab => {
                wb.previous();
                return Flow::Continue;
            }
            KeyCode::Char(c @ '1'..='9') => {
                wb.select(usize::from(c as u8 - b'1'));
                return Flow::Continue;
            }
            _ => {}
        }
    }
    handle_key(wb.app_mut(), key)
}

fn handle_key(app: &mut App, key: KeyEvent) -> Flow {
    if key.kind == KeyEventKind::Release {
        return Flow::Continue;
    }
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        return Flow::Quit;
    }
    // The help overlay takes every key until it is closed; arrows scroll it.
    if app.help_shown() {
        match key.code {
            KeyCode::Char('?') | KeyCode::Esc => app.close_help(),
            KeyCode::Up | KeyCode::Char('k') => app.scroll_help(Nav::Up),
            KeyCode::Down | KeyCode::Char('j') => app.scroll_help(Nav::Down),
            KeyCode::PageUp => app.scroll_help(Nav::PageUp),
            KeyCode::PageDown => app.scroll_help(Nav::PageDown),
            KeyCode::Home | KeyCode::Char('g') => app.scroll_help(Nav::Home),
            KeyCode::End | KeyCode::Char('G') => app.scroll_help(Nav::End),
            _ => {}
        }
        return Flow::Continue;
    }
    // While the filter is typed, characters go to it; arrows still move the selection.
    if app.filter_editing() {
        match key.code {
            KeyCode::Enter => app.finish_filter(),
            KeyCode::Esc => app.clear_filter(),
            KeyCode::Backspace => app.filter_pop(),
            KeyCode::Char(c) => app.filter_push(c),
            KeyCode::Up => app.navigate(Nav::Up),
            KeyCode::Down => app.navigate(Nav::Down),
            KeyCode::PageUp => app.navigate(Nav::PageUp),
            KeyCode::PageDown => app.navigate(Nav::PageDown),
            _ => {}
        }
        return Flow::Continue;
    }
    let nav = match (app.view(), key.code) {
        (_, KeyCode::Char('?')) => {
            app.toggle_help();
            return Flow::Continue;
        }
        (_, KeyCode::Char('p')) => {
            app.toggle_pause(Instant::now());
            return Flow::Continue;
        }
        (_, KeyCode::Char('+')) => {
            app.refresh_faster();
            return Flow::Continue;
        }
        (_, KeyCode::Char('-')) => {
            app.refresh_slower();
            return Flow::Continue;
        }
        (View::Sites | View::Locks, KeyCode::Char('f')) => {
            app.open_findings();
            return Flow::Continue;
        }
        (View::Findings, KeyCode::Char('f' | 'q') | KeyCode::Esc) => {
            app.close_findings();
            return Flow::Continue;
        }
        (View::Findings, KeyCode::Enter) => {
            app.open_selected_finding();
            return Flow::Continue;
        }
        (View::Overview, KeyCode::Char('o' | 'q') | KeyCode::Esc) => {
            app.close_overview();
            return Flow::Continue;
        }
        (_, KeyCode::Char('o')) => {
            app.open_overview();
            return Flow::Continue;
        }
        (View::Sites, KeyCode::Char('S')) => {
            app.cycle_sort();
            return Flow::Continue;
        }
        (View::Sites, KeyCode::Char('/')) => {
            app.start_filter();
            return Flow::Continue;
        }
        // Esc drops a filter before it quits.
        (View::Sites, KeyCode::Esc) if !app.filter().is_empty() => {
            app.clear_filter();
            return Flow::Continue;
        }
        (View::Sites, KeyCode::Char('q') | KeyCode::Esc) => return Flow::Quit,
        (View::Sites, KeyCode::Enter) => {
            app.open_detail();
            return Flow::Continue;
        }
        (View::Sites | View::Locks, KeyCode::Char('l')) => {
            app.toggle_locks();
            return Flow::Continue;
        }
        // In the locks view q and Esc go back to the sites, like in the detail view.
        (View::Locks, KeyCode::Char('q') | KeyCode::Esc) => {
            app.close_locks();
            return Flow::Continue;
        }
        (_, KeyCode::Char('b')) => {
            app.request_baseline();
            return Flow::Continue;
        }
        (_, KeyCode::Char('s')) => {
            app.request_save();
            return Flow::Continue;
        }
        (_, KeyCode::Char('R')) => {
            app.request_record_toggle();
            return Flow::Continue;
        }
        (_, KeyCode::Left | KeyCode::Char('[')) if app.replay().is_some() => {
            app.step_frame(-1);
            return Flow::Continue;
        }
        (_, KeyCode::Right | KeyCode::Char(']')) if app.replay().is_some() => {
            app.step_frame(1);
            return Flow::Continue;
        }
        // In the detail view q goes back, like Esc; Ctrl-C still quits.
        (View::Detail, KeyCode::Char('q') | KeyCode::Esc) => {
            app.close_detail();
            return Flow::Continue;
        }
        (View::Detail, KeyCode::Char('r')) => {
            app.request_dump();
            return Flow::Continue;
        }
        (_, KeyCode::Up | KeyCode::Char('k')) => Nav::Up,
        (_, KeyCode::Down | KeyCode::Char('j')) => Nav::Down,
        (_, KeyCode::PageUp) => Nav::PageUp,
        (_, KeyCode::PageDown) => Nav::PageDown,
        (_, KeyCode::Home | KeyCode::Char('g')) => Nav::Home,
        (_, KeyCode::End | KeyCode::Char('G')) => Nav::End,
        _ => return Flow::Continue,
    };
    app.navigate(nav);
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_urls() {
        assert_eq!(
            normalize_url("127.0.0.1:6060").unwrap(),
            "http://127.0.0.1:6060"
        );
        assert_eq!(
            normalize_url("http://127.0.0.1:6060/").unwrap(),
            "http://127.0.0.1:6060"
        );
        assert_eq!(
            normalize_url(" localhost:1// ").unwrap(),
            "http://localhost:1"
        );
        assert_eq!(normalize_url("HTTP://h").unwrap(), "HTTP://h");
        assert!(normalize_url("").is_err());
        assert!(normalize_url("http://").is_err());
        assert!(normalize_url("https://h").is_err());
        assert_eq!(
            normalize_url("127.0.0.1:6060/metrics").unwrap(),
            "http://127.0.0.1:6060"
        );
        assert_eq!(
            normalize_url("http://h:1/debug/taskscope/snapshot/").unwrap(),
            "http://h:1"
        );
    }

    #[test]
    fn keys_quit_and_navigate() {
        let mut app = App::new("http://x", Instant::now());
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        assert_eq!(handle_key(&mut app, key(KeyCode::Char('q'))), Flow::Quit);
        assert_eq!(handle_key(&mut app, key(KeyCode::Esc)), Flow::Quit);
        assert_eq!(
            handle_key(
                &mut app,
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
            ),
            Flow::Quit
        );
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Char('c'))),
            Flow::Continue
        );
        assert_eq!(handle_key(&mut app, key(KeyCode::Down)), Flow::Continue);
        assert_eq!(app.selected(), 0); // no rows: clamped
        // b asks for one baseline.
        assert!(!app.take_baseline_request());
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Char('b'))),
            Flow::Continue
        );
        assert!(app.take_baseline_request());
        assert!(!app.take_baseline_request());
    }

    #[test]
    fn keys_in_the_detail_view() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        // Enter with no rows stays on the table.
        assert_eq!(handle_key(&mut app, key(KeyCode::Enter)), Flow::Continue);
        assert_eq!(app.view(), View::Sites);
        app.apply(
            Ok(Snapshot {
                sites: vec![taskscope::model::SiteRow {
                    site: "a.rs:1:1".into(),
                    live: 1,
                    ..Default::default()
                }],
                ..Snapshot::default()
            }),
            t0,
        );
        assert_eq!(handle_key(&mut app, key(KeyCode::Enter)), Flow::Continue);
        assert_eq!(app.view(), View::Detail);
        let first = app.take_dump_request().expect("dump on open");
        // q goes back instead of quitting; Esc too.
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Char('q'))),
            Flow::Continue
        );
        assert_eq!(app.view(), View::Sites);
        handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!(handle_key(&mut app, key(KeyCode::Esc)), Flow::Continue);
        assert_eq!(app.view(), View::Sites);
        // r takes a new dump once the previous one is back.
        handle_key(&mut app, key(KeyCode::Enter));
        let req = app.take_dump_request().expect("dump on open");
        assert_ne!(req.id, first.id);
        handle_key(&mut app, key(KeyCode::Char('r')));
        assert_eq!(app.take_dump_request(), None, "one at a time");
        app.apply_dump(req.id, Ok(Dump::default()), t0);
        handle_key(&mut app, key(KeyCode::Char('r')));
        assert!(app.take_dump_request().is_some());
        // Ctrl-C quits from anywhere.
        assert_eq!(
            handle_key(
                &mut app,
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
            ),
            Flow::Quit
        );
    }

    #[test]
    fn keys_in_the_locks_view() {
        use taskscope::model::LockRow;
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        let lock = |name: &str| LockRow {
            lock: name.into(),
            ..LockRow::default()
        };
        app.apply(
            Ok(Snapshot {
                sites: vec![taskscope::model::SiteRow {
                    site: "a.rs:1:1".into(),
                    live: 1,
                    ..Default::default()
                }],
                locks: vec![lock("m1"), lock("m2"), lock("m3")],
                ..Snapshot::default()
            }),
            t0,
        );
        // l opens the locks view; arrows move the lock selection, not the site one.
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Char('l'))),
            Flow::Continue
        );
        assert_eq!(app.view(), View::Locks);
        handle_key(&mut app, key(KeyCode::Down));
        handle_key(&mut app, key(KeyCode::Char('j')));
        assert_eq!(app.lock_selected(), 2);
        handle_key(&mut app, key(KeyCode::Down));
        assert_eq!(app.lock_selected(), 2, "clamped");
        handle_key(&mut app, key(KeyCode::Home));
        assert_eq!(app.selected_lock().map(|l| l.lock.as_str()), Some("m1"));
        assert_eq!(app.selected(), 0);
        // Enter does nothing here.
        handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!(app.view(), View::Locks);
        assert_eq!(app.take_dump_request(), None);
        // l again, q and Esc go back instead of quitting.
        handle_key(&mut app, key(KeyCode::Char('l')));
        assert_eq!(app.view(), View::Sites);
        for back in [KeyCode::Char('q'), KeyCode::Esc] {
            handle_key(&mut app, key(KeyCode::Char('l')));
            assert_eq!(handle_key(&mut app, key(back)), Flow::Continue);
            assert_eq!(app.view(), View::Sites);
        }
        // b still marks a baseline from the locks view; Ctrl-C still quits.
        handle_key(&mut app, key(KeyCode::Char('l')));
        handle_key(&mut app, key(KeyCode::Char('b')));
        assert!(app.take_baseline_request());
        assert_eq!(
            handle_key(
                &mut app,
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
            ),
            Flow::Quit
        );
        // l does nothing in the site detail view.
        app.close_locks();
        handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!(app.view(), View::Detail);
        handle_key(&mut app, key(KeyCode::Char('l')));
        assert_eq!(app.view(), View::Detail);
    }

    #[test]
    fn keys_for_help_pause_refresh_and_findings() {
        use taskscope::model::{Finding, FindingKind, LockRow, SiteRow};
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        app.apply(
            Ok(Snapshot {
                sites: vec![SiteRow {
                    site: "a.rs:1:1".into(),
                    live: 1,
                    ..Default::default()
                }],
                locks: vec![LockRow {
                    lock: "m".into(),
                    ..LockRow::default()
                }],
                findings: vec![
                    Finding {
                        kind: FindingKind::HotLock,
                        site: "m".into(),
                        ..Finding::default()
                    },
                    Finding {
                        kind: FindingKind::Growth,
                        site: "a.rs:1:1".into(),
                        ..Finding::default()
                    },
                ],
                ..Snapshot::default()
            }),
            t0,
        );
        // ? opens the help; it takes every key (q does not quit) until ? or Esc.
        handle_key(&mut app, key(KeyCode::Char('?')));
        assert!(app.help_shown());
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Char('q'))),
            Flow::Continue
        );
        handle_key(&mut app, key(KeyCode::Char('p')));
        assert_eq!(app.paused_at(), None, "swallowed by the help");
        handle_key(&mut app, key(KeyCode::Esc));
        assert!(!app.help_shown());
        assert_eq!(app.view(), View::Sites);
        handle_key(&mut app, key(KeyCode::Char('?')));
        handle_key(&mut app, key(KeyCode::Char('?')));
        assert!(!app.help_shown());
        // p pauses and resumes, from any view.
        handle_key(&mut app, key(KeyCode::Char('p')));
        assert!(app.paused_at().is_some());
        handle_key(&mut app, key(KeyCode::Char('p')));
        assert!(app.paused_at().is_none());
        // + halves, - doubles.
        assert_eq!(app.refresh(), DEFAULT_REFRESH);
        handle_key(&mut app, key(KeyCode::Char('+')));
        assert_eq!(app.refresh(), Duration::from_millis(500));
        handle_key(&mut app, key(KeyCode::Char('-')));
        handle_key(&mut app, key(KeyCode::Char('-')));
        assert_eq!(app.refresh(), Duration::from_secs(2));
        // f opens the findings; Enter on the hot lock opens the locks view, whose q comes
        // back to the findings; Enter on the growth opens the site's detail, likewise.
        handle_key(&mut app, key(KeyCode::Char('f')));
        assert_eq!(app.view(), View::Findings);
        handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!(app.view(), View::Locks);
        handle_key(&mut app, key(KeyCode::Char('q')));
        assert_eq!(app.view(), View::Findings);
        handle_key(&mut app, key(KeyCode::Down));
        handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!(app.view(), View::Detail);
        assert_eq!(
            app.take_dump_request().map(|r| r.site).as_deref(),
            Some("a.rs:1:1")
        );
        handle_key(&mut app, key(KeyCode::Esc));
        assert_eq!(app.view(), View::Findings);
        // f, q and Esc go back to the sites without quitting; f also opens from the locks.
        for back in [KeyCode::Char('f'), KeyCode::Char('q'), KeyCode::Esc] {
            assert_eq!(handle_key(&mut app, key(back)), Flow::Continue);
            assert_eq!(app.view(), View::Sites);
            handle_key(&mut app, key(KeyCode::Char('f')));
            assert_eq!(app.view(), View::Findings);
        }
        handle_key(&mut app, key(KeyCode::Esc));
        handle_key(&mut app, key(KeyCode::Char('l')));
        handle_key(&mut app, key(KeyCode::Char('f')));
        assert_eq!(app.view(), View::Findings);
        // Not from the detail view.
        handle_key(&mut app, key(KeyCode::Esc));
        handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!(app.view(), View::Detail);
        handle_key(&mut app, key(KeyCode::Char('f')));
        assert_eq!(app.view(), View::Detail);
    }

    #[tokio::test]
    async fn the_fetch_ticker_follows_the_refresh_interval() {
        let mut app = App::new("http://x", Instant::now()).with_refresh(MAX_REFRESH);
        let mut ticker = FetchTicker::new(app.refresh());
        // The first fetch at once, the next one a minute later.
        tokio::time::timeout(Duration::from_millis(500), ticker.tick())
            .await
            .expect("first tick at once");
        assert!(
            tokio::time::timeout(Duration::from_millis(150), ticker.tick())
                .await
                .is_err()
        );
        // + down to the shortest interval: the loop's ticker follows, and ticks soon.
        let key = KeyEvent::new(KeyCode::Char('+'), KeyModifiers::NONE);
        for _ in 0..20 {
            handle_key(&mut app, key);
        }
        assert_eq!(app.refresh(), MIN_REFRESH);
        ticker.follow(app.refresh());
        assert_eq!(ticker.period(), MIN_REFRESH);
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(2), ticker.tick())
                .await
                .expect("a tick at the new interval");
        }
        // Unchanged: following again keeps the schedule.
        ticker.follow(MIN_REFRESH);
        assert_eq!(ticker.period(), MIN_REFRESH);
    }

    /// A source with fixed answers and no dumps or baselines.
    struct FixedSource;

    impl Source for FixedSource {
        fn label(&self) -> String {
            "fixed".into()
        }
        fn capabilities(&self) -> source::Capabilities {
            source::Capabilities::file()
        }
        fn fetch(&self) -> SourceFuture<Snapshot> {
            Box::pin(async {
                Ok(Snapshot {
                    sites: vec![taskscope::model::SiteRow {
                        site: "a.rs:1:1".into(),
                        live: 3,
                        ..Default::default()
                    }],
                    ..Snapshot::default()
                })
            })
        }
    }

    #[tokio::test]
    async fn the_loop_takes_snapshots_from_a_source_and_says_what_it_cannot_do() {
        let t0 = Instant::now();
        let source = FixedSource;
        // The state knows the source's capabilities up front: no request is made.
        let mut app = App::new(source.label(), t0).with_capabilities(source.capabilities());
        let mut link = Link::new(Box::new(source));
        link.start_fetch();
        link.start_fetch(); // one at a time
        let done = std::future::poll_fn(|cx| link.poll_done(cx)).await;
        apply_done(&mut app, done, t0);
        assert_eq!(app.live_total(), 3);
        assert!(link.fetch.is_none());

        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        handle_key(&mut app, key(KeyCode::Char('b')));
        assert_eq!(
            app.notice(),
            Some(
                "baseline unavailable for this source: a saved file has no target to mark a \
                 baseline on"
            )
        );
        handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!(app.view(), View::Detail);
        assert_eq!(app.take_dump_request(), None);
        assert_eq!(
            app.detail().and_then(|d| d.error()),
            Some(
                "task dumps unavailable for this source: a saved file holds only the dump saved \
                 with it, no new ones"
            )
        );
        assert!(!app.detail().unwrap().loading());

        // A state that thinks dumps are possible still gets the source's refusal on screen.
        let mut app = App::new("fixed", t0);
        app.apply(
            Ok(Snapshot {
                sites: vec![taskscope::model::SiteRow {
                    site: "a.rs:1:1".into(),
                    live: 1,
                    ..Default::default()
                }],
                ..Snapshot::default()
            }),
            t0,
        );
        assert!(app.open_detail());
        app.request_baseline();
        link.start_requests(&mut app, t0);
        assert!(link.dump.is_none() && link.baseline.is_none());
        assert!(!app.detail().unwrap().loading());
        assert!(
            app.detail()
                .unwrap()
                .error()
                .unwrap()
                .starts_with("task dumps unavailable for this source: ")
        );
        assert!(
            app.notice()
                .unwrap()
                .starts_with("baseline unavailable for this source: ")
        );
    }

    #[test]
    fn keys_for_the_overview_sort_and_filter() {
        use crate::state::SortColumn;
        let t0 = Instant::now();
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        let mut app = App::new("http://x", t0);
        let site = |name: &str, live| taskscope::model::SiteRow {
            site: name.into(),
            live,
            ..Default::default()
        };
        app.apply(
            Ok(Snapshot {
                sites: vec![site("alpha.rs:1:1", 1), site("beta.rs:2:2", 2)],
                ..Snapshot::default()
            }),
            t0,
        );
        // o opens the overview from any view and goes back where it came from.
        handle_key(&mut app, key(KeyCode::Char('o')));
        assert_eq!(app.view(), View::Overview);
        for back in [KeyCode::Char('o'), KeyCode::Char('q'), KeyCode::Esc] {
            assert_eq!(handle_key(&mut app, key(back)), Flow::Continue);
            assert_eq!(app.view(), View::Sites);
            handle_key(&mut app, key(KeyCode::Char('o')));
        }
        handle_key(&mut app, key(KeyCode::Esc));
        handle_key(&mut app, key(KeyCode::Char('l')));
        handle_key(&mut app, key(KeyCode::Char('o')));
        handle_key(&mut app, key(KeyCode::Esc));
        assert_eq!(app.view(), View::Locks);
        handle_key(&mut app, key(KeyCode::Esc));
        // S cycles the sort column.
        handle_key(&mut app, key(KeyCode::Char('S')));
        assert_eq!(app.sort(), SortColumn::Delta);
        // / types a filter: q and S are text then; Enter keeps it, Esc drops it.
        handle_key(&mut app, key(KeyCode::Char('/')));
        assert!(app.filter_editing());
        for c in ['q', 'S', 'a'] {
            assert_eq!(handle_key(&mut app, key(KeyCode::Char(c))), Flow::Continue);
        }
        handle_key(&mut app, key(KeyCode::Backspace));
        handle_key(&mut app, key(KeyCode::Backspace));
        handle_key(&mut app, key(KeyCode::Backspace));
        handle_key(&mut app, key(KeyCode::Char('b')));
        handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!((app.filter(), app.filter_editing()), ("b", false));
        assert_eq!(app.rows().len(), 1);
        // Esc clears the filter first, and quits only after.
        assert_eq!(handle_key(&mut app, key(KeyCode::Esc)), Flow::Continue);
        assert_eq!(app.rows().len(), 2);
        assert_eq!(handle_key(&mut app, key(KeyCode::Esc)), Flow::Quit);
        handle_key(&mut app, key(KeyCode::Char('/')));
        handle_key(&mut app, key(KeyCode::Char('z')));
        handle_key(&mut app, key(KeyCode::Esc));
        assert_eq!((app.filter(), app.filter_editing()), ("", false));
    }

    /// A source whose fetches never finish, like a target that accepted the connection
    /// and went silent.
    struct SilentSource;

    impl Source for SilentSource {
        fn label(&self) -> String {
            "silent".into()
        }
        fn capabilities(&self) -> source::Capabilities {
            source::Capabilities::live_exporter()
        }
        fn fetch(&self) -> SourceFuture<Snapshot> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_silent_target_never_holds_up_the_others() {
        let mut links = vec![
            Some(Link::new(Box::new(SilentSource))),
            None,
            Some(Link::new(Box::new(FixedSource))),
        ];
        for link in links.iter_mut().flatten() {
            link.start_fetch();
        }
        let (i, done) = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| poll_links(&mut links, cx)),
        )
        .await
        .expect("the answering target's snapshot");
        assert_eq!(i, 2);
        assert!(matches!(done, Done::Snapshot(ref r) if r.is_ok()));
        // The silent one is still in flight, and still not ready.
        assert!(links[0].as_ref().unwrap().fetch.is_some());
        let pending = tokio::time::timeout(
            Duration::from_millis(50),
            std::future::poll_fn(|cx| poll_links(&mut links, cx)),
        )
        .await;
        assert!(pending.is_err());
    }

    #[test]
    fn the_wheel_scrolls_tables_the_detail_and_the_help() {
        use crossterm::event::{MouseEvent, MouseEventKind};
        let t0 = Instant::now();
        let wheel = |kind| MouseEvent {
            kind,
            column: 10,
            row: 10,
            modifiers: KeyModifiers::NONE,
        };
        let mut app = App::new("http://x", t0);
        let sites = (0..10)
            .map(|i| taskscope::model::SiteRow {
                site: format!("s{i}.rs:1:1"),
                live: 100 - i,
                ..Default::default()
            })
            .collect();
        app.apply(
            Ok(Snapshot {
                sites,
                ..Snapshot::default()
            }),
            t0,
        );
        let area = Rect::new(0, 0, 100, 40);
        handle_mouse(&mut app, wheel(MouseEventKind::ScrollDown), area);
        assert_eq!(app.selected(), 3);
        handle_mouse(&mut app, wheel(MouseEventKind::ScrollDown), area);
        handle_mouse(&mut app, wheel(MouseEventKind::ScrollDown), area);
        handle_mouse(&mut app, wheel(MouseEventKind::ScrollDown), area);
        assert_eq!(app.selected(), 9, "clamped");
        handle_mouse(&mut app, wheel(MouseEventKind::ScrollUp), area);
        assert_eq!(app.selected(), 6);
        // Moves and right clicks do nothing.
        handle_mouse(&mut app, wheel(MouseEventKind::Moved), area);
        handle_mouse(
            &mut app,
            wheel(MouseEventKind::Down(crossterm::event::MouseButton::Right)),
            area,
        );
        assert_eq!(app.selected(), 6);
        // The help overlay scrolls instead of the table.
        app.toggle_help();
        app.set_help_viewport(5, 30);
        handle_mouse(&mut app, wheel(MouseEventKind::ScrollDown), area);
        assert_eq!((app.help_scroll(), app.selected()), (3, 6));
        app.close_help();
        // The detail view scrolls its content.
        app.open_detail();
        app.set_detail_viewport(5, 40);
        handle_mouse(&mut app, wheel(MouseEventKind::ScrollDown), area);
        assert_eq!(app.detail().unwrap().scroll(), 3);
    }

    #[test]
    fn keys_pick_the_target() {
        let t0 = Instant::now();
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        let apps = (0..3)
            .map(|i| App::new(format!("http://h:{i}"), t0))
            .collect();
        let mut wb = Workbench::new(apps);
        handle_workbench_key(&mut wb, key(KeyCode::Tab));
        assert_eq!(wb.active(), 1);
        handle_workbench_key(&mut wb, key(KeyCode::BackTab));
        handle_workbench_key(&mut wb, key(KeyCode::BackTab));
        assert_eq!(wb.active(), 2);
        handle_workbench_key(&mut wb, key(KeyCode::Char('1')));
        assert_eq!(wb.active(), 0);
        handle_workbench_key(&mut wb, key(KeyCode::Char('9')));
        assert_eq!(wb.active(), 0, "no ninth target");
        // Typing a filter, digits are text.
        handle_workbench_key(&mut wb, key(KeyCode::Char('/')));
        handle_workbench_key(&mut wb, key(KeyCode::Char('2')));
        assert_eq!((wb.active(), wb.app().filter()), (0, "2"));
        handle_workbench_key(&mut wb, key(KeyCode::Enter));
        // Other keys go to the shown target only.
        handle_workbench_key(&mut wb, key(KeyCode::Char('3')));
        handle_workbench_key(&mut wb, key(KeyCode::Char('o')));
        assert_eq!(wb.app().view(), View::Overview);
        assert_eq!(wb.targets()[0].view(), View::Sites);
        assert_eq!(
            handle_workbench_key(&mut wb, key(KeyCode::Char('q'))),
            Flow::Continue
        );
        assert_eq!(
            handle_workbench_key(&mut wb, key(KeyCode::Char('q'))),
            Flow::Quit
        );
        // One target: Tab and digits do nothing.
        let mut one = Workbench::new(vec![App::new("http://h", t0)]);
        handle_workbench_key(&mut one, key(KeyCode::Tab));
        handle_workbench_key(&mut one, key(KeyCode::Char('2')));
        assert_eq!(one.active(), 0);
    }

    #[test]
    fn keys_save_record_and_step_through_a_file() {
        use crate::state::{ReplayFrame, ReplayKind};
        let t0 = Instant::now();
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        let mut live = App::new("http://x", t0);
        handle_key(&mut live, key(KeyCode::Char('s')));
        assert!(live.take_save_request());
        assert!(!live.take_save_request());
        handle_key(&mut live, key(KeyCode::Char('R')));
        assert!(live.take_record_toggle());
        // Without a file, ←/→ do nothing.
        handle_key(&mut live, key(KeyCode::Left));
        assert!(live.replay().is_none());

        let mut app = App::new("f", t0);
        let frame = |live: u64| ReplayFrame {
            at_unix_ms: live * 1000,
            snapshot: Snapshot {
                sites: vec![taskscope::model::SiteRow {
                    site: "a.rs:1:1".into(),
                    live,
                    ..Default::default()
                }],
                ..Snapshot::default()
            },
        };
        app.load_frames(
            "f",
            "http://x",
            ReplayKind::Recording,
            vec![frame(1), frame(2), frame(3)],
            None,
        );
        let cursor = |app: &App| app.replay().map(|r| r.cursor());
        assert_eq!(cursor(&app), Some(2));
        handle_key(&mut app, key(KeyCode::Left));
        handle_key(&mut app, key(KeyCode::Char('[')));
        assert_eq!((cursor(&app), app.live_total()), (Some(0), 1));
        handle_key(&mut app, key(KeyCode::Char(']')));
        handle_key(&mut app, key(KeyCode::Right));
        handle_key(&mut app, key(KeyCode::Right));
        assert_eq!((cursor(&app), app.live_total()), (Some(2), 3));
        // R on a file says there is nothing to record.
        handle_key(&mut app, key(KeyCode::Char('R')));
        assert!(!app.take_record_toggle());
        assert_eq!(
            app.notice(),
            Some("nothing to record: this is a file, not a live target")
        );
    }

    #[test]
    fn targets_files_list_urls_and_say_which_line_is_wrong() {
        let dir = std::env::temp_dir().join(format!("taskscope-targets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ok = write(
            "ok.txt",
            "# production\n127.0.0.1:6060\n\n  http://10.0.0.2:6060  # worker\n",
        );
        assert_eq!(
            read_targets_file(&ok).unwrap(),
            ["127.0.0.1:6060", "http://10.0.0.2:6060"]
        );
        let bad = write("bad.txt", "h:1\nftp://h:2\n");
        assert_eq!(
            format!("{:#}", read_targets_file(&bad).unwrap_err()),
            format!(
                "{} line 2: unsupported scheme \"ftp\" in \"ftp://h:2\": taskscope talks plain http to the exporter",
                bad.display()
            )
        );
        let empty = write("empty.txt", "# nothing yet\n");
        assert_eq!(
            read_targets_file(&empty).unwrap_err().to_string(),
            format!("{} lists no target", empty.display())
        );
        let many = write("many.txt", &"h:1\n".repeat(MAX_TARGETS + 1));
        assert!(
            read_targets_file(&many)
                .unwrap_err()
                .to_string()
                .contains("at most 32")
        );
        let big = write("big.txt", &"#".repeat(MAX_TARGETS_FILE_BYTES as usize + 1));
        assert!(
            read_targets_file(&big)
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
        let binary = write("bin.txt", "\u{0}\u{1}");
        assert_eq!(
            read_targets_file(&binary).unwrap_err().to_string(),
            format!(
                "{} line 1: control characters in \"\\0\\u{{1}}\": not a URL",
                binary.display()
            )
        );
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(
            read_targets_file(&binary)
                .unwrap_err()
                .to_string()
                .contains("as text")
        );
        assert!(read_targets_file(&dir.join("missing.txt")).is_err());
    }

    #[test]
    fn run_rejects_bad_url_before_touching_the_terminal() {
        let err = run(Config {
            url: "ftp://x".into(),
            ..Config::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("unsupported scheme"), "{err}");
    }
}
