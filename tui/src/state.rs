//! What the UI knows, apart from how it is drawn: connection status, the last good
//! snapshot, short histories of live counts, the selection, the site detail view with its
//! task dump, the locks and findings views' selections, the refresh interval, a paused
//! display and the help overlay. Pure logic: time comes in as arguments, nothing here does
//! I/O.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use taskscope::model::{
    Dump, Evidence, Finding, FindingKind, LockRow, Severity, SiteRow, Snapshot,
};

use crate::client::FetchError;
use crate::files::{SavedDump, SavedSnapshot};
use crate::source::{Capabilities, Capability};
use crate::{DEFAULT_REFRESH, MAX_REFRESH, MIN_REFRESH};

mod discard;
mod replay;
mod table;
mod targets;

pub use replay::{Replay, ReplayFrame, ReplayKind};
pub use table::{MAX_FILTER_CHARS, SortColumn};
pub use targets::{MAX_TARGETS, Workbench};

/// Samples kept per history ring (one per successful poll: 60 s at the default refresh).
pub const HISTORY_LEN: usize = 60;

/// Most spawn sites whose history is kept; the least recently seen are dropped beyond it.
pub const MAX_TRACKED_SITES: usize = 2048;

/// Whether the target is answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// No fetch has finished yet.
    Connecting,
    /// The last fetch succeeded.
    Connected,
    /// Fetches have been failing since `since`; `error` is the latest failure.
    Disconnected {
        /// When the current run of failures started.
        since: Instant,
        /// The latest failure, ready to show.
        error: String,
    },
}

/// A bounded ring of samples, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    samples: VecDeque<u64>,
}

impl History {
    /// Appends a sample, dropping the oldest beyond [`HISTORY_LEN`].
    pub fn push(&mut self, value: u64) {
        if self.samples.len() == HISTORY_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back(value);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = u64> + ExactSizeIterator + '_ {
        self.samples.iter().copied()
    }

    /// Number of samples held (at most [`HISTORY_LEN`]).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Newest sample minus oldest: how much the value moved over the window.
    pub fn delta(&self) -> i128 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&first), Some(&last)) => i128::from(last) - i128::from(first),
            _ => 0,
        }
    }
}

/// Whether `next` comes from another process (or agent) than `prev`.
fn is_restart(prev: &Snapshot, next: &Snapshot) -> bool {
    prev.process.pid != next.process.pid
        || prev.agent.started_unix_ms != next.agent.started_unix_ms
        || next.uptime_seconds < prev.uptime_seconds
}

#[derive(Debug, Clone)]
struct SiteHistory {
    history: History,
    /// Poll sequence number at which the site was last present in a snapshot.
    last_seen: u64,
}

/// A selection move, from a key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// One row up.
    Up,
    /// One row down.
    Down,
    /// One page up.
    PageUp,
    /// One page down.
    PageDown,
    /// First row.
    Home,
    /// Last row.
    End,
}

/// Which screen is shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum View {
    /// The table of spawn sites.
    #[default]
    Sites,
    /// One site's counts and task dump (see [`App::detail`]).
    Detail,
    /// The table of instrumented locks, with the selected lock's holders and waiters
    /// (see [`App::locks`]).
    Locks,
    /// Every finding of the snapshot, with the selected one's summary and evidence (see
    /// [`App::findings`]).
    Findings,
    /// The whole process at a glance: live tasks and spawn rate with their history,
    /// workers, queues, blocking pool, findings by severity.
    Overview,
}

/// What Enter on a finding opens (see [`App::finding_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingTarget {
    /// The detail view of this spawn site of the sites table.
    Site(String),
    /// The locks view, on this lock when one of the snapshot's locks matches the finding.
    Lock(Option<String>),
    /// Nothing: the finding's site is neither a spawn site of the table nor a lock.
    Nothing,
}

/// A dump the event loop should take: the site, and an id to hand back with the result
/// to [`App::apply_dump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpRequest {
    /// Identifies the request; results of older requests are ignored.
    pub id: u64,
    /// Spawn site label, as in [`SiteRow::site`].
    pub site: String,
}

/// The state of the site detail view.
#[derive(Debug, Clone)]
pub struct Detail {
    site: String,
    dump: Option<Dump>,
    dump_received_at: Option<Instant>,
    error: Option<String>,
    loading: bool,
    request_id: u64,
    scroll: usize,
    viewport_rows: usize,
    content_rows: usize,
}

impl Detail {
    /// The spawn site shown.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The last dump received for this site (kept while a new one is taken, or after a
    /// failed one).
    pub fn dump(&self) -> Option<&Dump> {
        self.dump.as_ref()
    }

    /// When [`Detail::dump`] arrived.
    pub fn dump_received_at(&self) -> Option<Instant> {
        self.dump_received_at
    }

    /// Why the latest dump failed, ready to show; `None` after a success.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// True while a dump is wanted or being taken.
    pub fn loading(&self) -> bool {
        self.loading
    }

    /// Index of the first content line shown.
    pub fn scroll(&self) -> usize {
        self.scroll
    }

    fn max_scroll(&self) -> usize {
        self.content_rows.saturating_sub(self.viewport_rows)
    }
}

/// Several targets watched at once, summed (see [`App::targets_summary`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetsSummary {
    /// Targets watched.
    pub targets: usize,
    /// Targets whose last fetch succeeded.
    pub answering: usize,
    /// Live tasks summed over the targets' last good snapshots.
    pub live_total: u64,
}

/// How long a footer notice stays.
pub const NOTICE_FOR: Duration = Duration::from_secs(5);

/// What the screen is drawn from: the last good snapshot and the histories up to it. The
/// live copy follows every fetch; a paused display shows a frozen copy (see
/// [`App::toggle_pause`]).
#[derive(Debug, Clone, Default)]
struct Data {
    snapshot: Option<Snapshot>,
    received_at: Option<Instant>,
    site_history: HashMap<String, SiteHistory>,
    total_history: History,
    /// Tasks spawned per second between the last two snapshots (by the agent's uptime),
    /// when both came from the same process.
    spawn_rate: Option<f64>,
    /// History of [`Data::spawn_rate`], rounded to whole tasks per second.
    spawn_rate_history: History,
    /// When a snapshot last came from a different process than the one before.
    restarted_at: Option<Instant>,
}

impl Data {
    /// Site rows of the snapshot, sorted by live count descending ([`App::apply`] sorts the
    /// snapshot's own rows in place rather than keeping a sorted copy).
    fn rows(&self) -> &[SiteRow] {
        self.snapshot.as_ref().map_or(&[], |s| &s.sites)
    }
}

/// A paused display: since when, and what it shows meanwhile.
#[derive(Debug, Clone)]
struct Paused {
    at: Instant,
    data: Data,
}

/// The items selected in the tables, by identity rather than index, to keep them selected
/// when what is shown changes.
struct SelectionKeys {
    site: Option<String>,
    lock: Option<String>,
    finding: Option<(FindingKind, String)>,
}

/// Whether the user has picked a row in each table (see `App::picked`).
#[derive(Debug, Clone, Copy, Default)]
struct Picked {
    site: bool,
    lock: bool,
    finding: bool,
}

/// `refresh` within [`MIN_REFRESH`]`..=`[`MAX_REFRESH`].
fn clamp_refresh(refresh: Duration) -> Duration {
    refresh.clamp(MIN_REFRESH, MAX_REFRESH)
}

/// The TUI's state.
#[derive(Debug, Clone)]
pub struct App {
    /// Base URL of the target's exporter, e.g. `http://127.0.0.1:6060`.
    pub target: String,
    /// Whether the target answers.
    pub status: ConnectionStatus,
    /// Draw without colours (the `NO_COLOR` convention).
    pub no_color: bool,
    /// What the source can do besides snapshots (dumps, baselines).
    capabilities: Capabilities,
    /// Follows every successful fetch.
    live: Data,
    /// While the display is paused: what it shows.
    paused: Option<Paused>,
    /// A file shown instead of a live target, with its time cursor.
    replay: Option<Replay>,
    /// `s` pressed, not yet handed to the event loop.
    save_requested: bool,
    /// `R` pressed, not yet handed to the event loop.
    record_toggle_requested: bool,
    /// The recording in progress (`R`): its file and frames so far.
    recording: Option<(String, usize)>,
    /// The sites table as shown: the shown rows, filtered and sorted (see
    /// [`App::rows`]); `None` while that is the shown rows themselves (no filter, sorted by
    /// live count), so that a snapshot's 10k rows are not copied on every arrival.
    table: Option<Vec<SiteRow>>,
    /// Column the sites table is sorted by.
    sort: SortColumn,
    /// Text the sites table is filtered by.
    filter: String,
    /// Whether keys go to the filter.
    filter_editing: bool,
    /// Where q/Esc go from the overview.
    overview_back: View,
    /// With several targets: all of them summed (the overview shows it).
    targets_summary: Option<TargetsSummary>,
    /// While replaying many frames at once: only histories are updated per frame, the
    /// table and selection once at the end.
    bulk: bool,
    now: Instant,
    /// Successful polls so far.
    polls: u64,
    /// Time between fetches.
    refresh: Duration,
    /// Whether the help overlay is shown.
    help: bool,
    /// First line of the help overlay shown, lines in it, and lines that fit.
    help_scroll: (usize, usize, usize),
    selected: usize,
    offset: usize,
    viewport_rows: usize,
    /// Which tables' selections the user has picked (moved, clicked, or jumped to from a
    /// finding). A picked row is followed when the order changes; until then the selection
    /// stays on the top row, so that Enter on a fresh screen opens what is on top (the
    /// busiest site, the worst finding) rather than whatever was there at startup.
    picked: Picked,
    view: View,
    detail: Option<Detail>,
    /// Ids handed out to dump requests so far.
    dump_requests: u64,
    /// A dump requested but not yet handed to the event loop.
    dump_to_start: Option<DumpRequest>,
    /// A baseline asked for with `b`, not yet handed to the event loop.
    baseline_requested: bool,
    /// A one-line message for the footer (e.g. "baseline marked"), and until when.
    notice: Option<(String, Instant)>,
    /// Index of the selected row in [`App::locks`].
    lock_selected: usize,
    /// Index of the first lock row shown.
    lock_offset: usize,
    lock_viewport_rows: usize,
    /// Where q/Esc go from the locks view: the sites table, or the findings view when the
    /// locks view was opened from a finding.
    locks_back: View,
    /// Likewise from the site detail view.
    detail_back: View,
    /// Index of the selected row in [`App::findings`].
    finding_selected: usize,
    /// Index of the first finding row shown.
    finding_offset: usize,
    finding_viewport_rows: usize,
}

impl App {
    /// A fresh state for `target`, connecting, at time `now`.
    pub fn new(target: impl Into<String>, now: Instant) -> Self {
        App {
            target: target.into(),
            status: ConnectionStatus::Connecting,
            no_color: false,
            capabilities: Capabilities::default(),
            live: Data::default(),
            paused: None,
            replay: None,
            save_requested: false,
            record_toggle_requested: false,
            recording: None,
            table: None,
            sort: SortColumn::default(),
            filter: String::new(),
            filter_editing: false,
            overview_back: View::Sites,
            targets_summary: None,
            bulk: false,
            now,
            polls: 0,
            refresh: DEFAULT_REFRESH,
            help: false,
            help_scroll: (0, 0, 1),
            selected: 0,
            picked: Picked::default(),
            offset: 0,
            viewport_rows: 10,
            view: View::Sites,
            detail: None,
            dump_requests: 0,
            dump_to_start: None,
            baseline_requested: false,
            notice: None,
            lock_selected: 0,
            lock_offset: 0,
            lock_viewport_rows: 5,
            locks_back: View::Sites,
            detail_back: View::Sites,
            finding_selected: 0,
            finding_offset: 0,
            finding_viewport_rows: 5,
        }
    }

    /// What the screen shows: the live data, or the frozen copy while paused.
    fn shown(&self) -> &Data {
        self.paused.as_ref().map_or(&self.live, |p| &p.data)
    }

    /// Sets what the source can do (see [`crate::source::Source::capabilities`]); a live
    /// exporter's capabilities by default.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// What the source can do besides snapshots.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Sets the time between fetches, within [`MIN_REFRESH`]`..=`[`MAX_REFRESH`].
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = clamp_refresh(refresh);
        self
    }

    /// Sets the time between fetches, within [`MIN_REFRESH`]`..=`[`MAX_REFRESH`].
    pub fn set_refresh(&mut self, refresh: Duration) {
        self.refresh = clamp_refresh(refresh);
    }

    /// Time between fetches; the event loop follows it when it changes.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// Fetches twice as often (key `+`), down to [`MIN_REFRESH`]; returns the new interval.
    pub fn refresh_faster(&mut self) -> Duration {
        self.refresh = clamp_refresh(self.refresh / 2);
        self.refresh
    }

    /// Fetches half as often (key `-`), up to [`MAX_REFRESH`]; returns the new interval.
    pub fn refresh_slower(&mut self) -> Duration {
        self.refresh = clamp_refresh(self.refresh.saturating_mul(2));
        self.refresh
    }

    /// Pauses the display at `now`, or resumes it (key `p`); returns whether it is paused
    /// afterwards. While paused, fetches go on and histories keep growing, but everything
    /// shown (tables, header, findings, histories) is the data of the moment of pausing;
    /// resuming shows the live data again, with the same items selected.
    pub fn toggle_pause(&mut self, now: Instant) -> bool {
        self.tick(now);
        if self.paused.is_some() {
            let keys = self.selection_keys();
            self.paused = None;
            self.rebuild_table();
            self.restore_selection(keys);
            false
        } else {
            self.paused = Some(Paused {
                at: self.now,
                data: self.live.clone(),
            });
            true
        }
    }

    /// When the display was paused, while it is.
    pub fn paused_at(&self) -> Option<Instant> {
        self.paused.as_ref().map(|p| p.at)
    }

    /// Shows or hides the help overlay (key `?`).
    pub fn toggle_help(&mut self) {
        self.help = !self.help;
    }

    /// Hides the help overlay.
    pub fn close_help(&mut self) {
        self.help = false;
    }

    /// Whether the help overlay is shown (over the current view).
    pub fn help_shown(&self) -> bool {
        self.help
    }

    /// Tells the state how many lines the help overlay has and how many fit, for
    /// scrolling it on small screens.
    pub fn set_help_viewport(&mut self, viewport_rows: usize, content_rows: usize) {
        let viewport_rows = viewport_rows.max(1);
        let max = content_rows.saturating_sub(viewport_rows);
        self.help_scroll = (self.help_scroll.0.min(max), content_rows, viewport_rows);
    }

    /// Scrolls the help overlay (arrows and pages while it is shown), clamped.
    pub fn scroll_help(&mut self, nav: Nav) {
        let (scroll, content, page) = self.help_scroll;
        let max = content.saturating_sub(page);
        self.help_scroll.0 = moved(scroll, nav, page).min(max);
    }

    /// First line of the help overlay shown.
    pub fn help_scroll(&self) -> usize {
        self.help_scroll.0
    }

    /// Asks for a baseline to be marked on the target (key `b`); when the source cannot
    /// mark one, says why in the footer instead.
    pub fn request_baseline(&mut self) {
        match self.capabilities.baseline.clone() {
            Capability::Available => self.baseline_requested = true,
            Capability::Unavailable(why) => {
                self.set_notice(format!("baseline unavailable for this source: {why}"))
            }
        }
    }

    /// Asks for the shown snapshot (and the open site's dump) to be saved to a file (key
    /// `s`).
    pub fn request_save(&mut self) {
        self.save_requested = true;
    }

    /// Hands a requested save to the event loop, once.
    pub fn take_save_request(&mut self) -> bool {
        std::mem::take(&mut self.save_requested)
    }

    /// What `s` saves, saved at `saved_at_unix_ms`: the snapshot shown (the frame at the
    /// cursor when replaying), where it came from, and the task dump of the site whose
    /// detail view is open, if it has one. `None` before the first snapshot.
    pub fn save_contents(&self, saved_at_unix_ms: u64) -> Option<SavedSnapshot> {
        let snapshot = self.snapshot()?.clone();
        let dump = self.detail.as_ref().and_then(|d| {
            d.dump.as_ref().map(|dump| SavedDump {
                site: d.site.clone(),
                dump: dump.clone(),
            })
        });
        let target = self
            .replay
            .as_ref()
            .map_or(self.target.as_str(), |r| r.origin());
        let mut saved = SavedSnapshot::new(target, snapshot, dump);
        saved.saved_at_unix_ms = saved_at_unix_ms;
        Some(saved)
    }

    /// Asks for recording to start or stop (key `R`); a file has nothing to record, so
    /// that is said instead.
    pub fn request_record_toggle(&mut self) {
        if self.capabilities.live {
            self.record_toggle_requested = true;
        } else {
            self.set_notice("nothing to record: this is a file, not a live target".into());
        }
    }

    /// Hands a requested start or stop of recording to the event loop, once.
    pub fn take_record_toggle(&mut self) -> bool {
        std::mem::take(&mut self.record_toggle_requested)
    }

    /// Tells the state about the recording in progress: its file and frames so far, or
    /// `None` when not recording.
    pub fn set_recording(&mut self, recording: Option<(String, usize)>) {
        self.recording = recording;
    }

    /// The recording in progress: its file and frames so far.
    pub fn recording(&self) -> Option<(&str, usize)> {
        self.recording.as_ref().map(|(p, n)| (p.as_str(), *n))
    }

    /// Shows `text` in the footer for [`NOTICE_FOR`].
    pub fn set_notice(&mut self, text: String) {
        self.notice = Some((text, self.now + NOTICE_FOR));
    }

    /// Hands a requested baseline to the event loop, once.
    pub fn take_baseline_request(&mut self) -> bool {
        std::mem::take(&mut self.baseline_requested)
    }

    /// Records how marking the baseline went, as a footer notice for a few seconds.
    pub fn apply_baseline(&mut self, result: Result<u64, FetchError>, now: Instant) {
        self.tick(now);
        let text = match result {
            Ok(_) => "baseline marked: Δbase counts from now (b marks a new one)".to_string(),
            Err(e) => format!("cannot mark a baseline: {e}"),
        };
        self.notice = Some((text, now + NOTICE_FOR));
    }

    /// The footer notice, while it lasts.
    pub fn notice(&self) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, until)| self.now < *until)
            .map(|(text, _)| text.as_str())
    }

    /// The most severe finding's severity at `site` in the last snapshot, if any.
    pub fn site_severity(&self, site: &str) -> Option<Severity> {
        self.shown()
            .snapshot
            .as_ref()?
            .findings
            .iter()
            .filter(|f| f.site == site)
            .map(|f| f.severity)
            .max_by_key(|s| s.rank())
    }

    /// Sets whether colours are disabled; see [`no_color_from_env`].
    pub fn with_no_color(mut self, no_color: bool) -> Self {
        self.no_color = no_color;
        self
    }

    /// Records the outcome of one fetch, finished at `now`.
    ///
    /// On success the snapshot replaces the previous one and every history gets a sample;
    /// on failure the last good snapshot is kept and the status becomes disconnected. While
    /// the display is paused this updates the live data only, not what is shown.
    pub fn apply(&mut self, result: Result<Snapshot, FetchError>, now: Instant) {
        self.tick(now);
        match result {
            Ok(snapshot) => {
                self.status = ConnectionStatus::Connected;
                self.live.received_at = Some(now);
                if self
                    .live
                    .snapshot
                    .as_ref()
                    .is_some_and(|prev| is_restart(prev, &snapshot))
                {
                    // A new process: its counters start again, so the old history would
                    // read as a drop. Start the history afresh and say so.
                    self.live.site_history.clear();
                    self.live.total_history = History::default();
                    self.live.spawn_rate_history = History::default();
                    self.live.restarted_at = Some(now);
                    // Never mix the old process's data with the new one's: a dump shown in
                    // the detail view was of the old process.
                    if let Some(detail) = self.detail.as_mut()
                        && detail.dump.take().is_some()
                    {
                        detail.dump_received_at = None;
                        detail.error = Some(format!(
                            "the target restarted as a new process (pid {}): its dump was of \
                             the old one; press r for a new one",
                            snapshot.process.pid
                        ));
                    }
                }
                self.record(snapshot);
            }
            Err(e) => {
                let since = match &self.status {
                    ConnectionStatus::Disconnected { since, .. } => *since,
                    _ => now,
                };
                self.status = ConnectionStatus::Disconnected {
                    since,
                    error: e.to_string(),
                };
            }
        }
    }

    /// Moves the clock used for "N seconds ago" forward (never backwards).
    pub fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// The current time, as last given to [`App::tick`] or [`App::apply`].
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The last good snapshot, kept while the target is unreachable; while the display is
    /// paused, the one of the moment of pausing (as for every accessor of shown data
    /// below).
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.shown().snapshot.as_ref()
    }

    /// When the last good snapshot arrived.
    pub fn received_at(&self) -> Option<Instant> {
        self.shown().received_at
    }

    /// When the target was last seen to restart (a new pid or agent start time).
    pub fn restarted_at(&self) -> Option<Instant> {
        self.shown().restarted_at
    }

    /// Age of the last good snapshot.
    pub fn data_age(&self) -> Option<Duration> {
        self.received_at()
            .map(|at| self.now.saturating_duration_since(at))
    }

    /// The sites table: site rows of the last good snapshot that match the filter (see
    /// [`App::filter`]), sorted by [`App::sort`] (live count descending by default).
    pub fn rows(&self) -> &[SiteRow] {
        self.table.as_deref().unwrap_or_else(|| self.shown().rows())
    }

    /// Sum of live tasks over all sites of the last good snapshot, filtered or not.
    pub fn live_total(&self) -> u64 {
        self.shown()
            .rows()
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(r.live))
    }

    /// Tells the state about every target watched, when there are several.
    pub fn set_targets_summary(&mut self, summary: Option<TargetsSummary>) {
        self.targets_summary = summary;
    }

    /// Every target watched, summed, when there are several.
    pub fn targets_summary(&self) -> Option<TargetsSummary> {
        self.targets_summary
    }

    /// Tasks spawned per second between the last two snapshots of the same process.
    pub fn spawn_rate(&self) -> Option<f64> {
        self.shown().spawn_rate
    }

    /// History of [`App::spawn_rate`] (whole tasks per second), oldest first.
    pub fn spawn_rate_history(&self) -> &History {
        &self.shown().spawn_rate_history
    }

    /// Shows the overview (key `o`); q/Esc/`o` go back to the view it was opened from
    /// (the site detail view is closed).
    pub fn open_overview(&mut self) {
        if self.view == View::Overview {
            return;
        }
        if self.view == View::Detail {
            self.close_detail();
        }
        self.overview_back = self.view;
        self.view = View::Overview;
    }

    /// Back from the overview.
    pub fn close_overview(&mut self) {
        if self.view == View::Overview {
            self.view = self.overview_back;
        }
    }

    /// Live-count history of one site, oldest first.
    pub fn site_history(&self, site: &str) -> Option<&History> {
        self.shown().site_history.get(site).map(|h| &h.history)
    }

    /// Number of sites whose history is kept (at most [`MAX_TRACKED_SITES`]), live data
    /// even while paused.
    pub fn tracked_sites(&self) -> usize {
        self.live.site_history.len()
    }

    /// History of the total live count, oldest first.
    pub fn total_history(&self) -> &History {
        &self.shown().total_history
    }

    /// Index of the selected row in [`App::rows`].
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// Index of the first row shown.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Tells the state how many table rows fit on screen, for paging and scrolling.
    pub fn set_viewport_rows(&mut self, rows: usize) {
        self.viewport_rows = rows.max(1);
        self.clamp();
    }

    /// The row of the last good snapshot for `site`, if it is there (filtered out of the
    /// table or not).
    pub fn site_row(&self, site: &str) -> Option<&SiteRow> {
        self.shown().rows().iter().find(|r| r.site == site)
    }

    /// The screen shown.
    pub fn view(&self) -> View {
        self.view
    }

    /// The site detail view's state, while it is shown.
    pub fn detail(&self) -> Option<&Detail> {
        self.detail.as_ref()
    }

    /// Opens the detail view of the selected site and asks for its dump (see
    /// [`App::take_dump_request`]). Does nothing, and returns false, when there is no row.
    /// q/Esc go back to the sites table.
    pub fn open_detail(&mut self) -> bool {
        let Some(site) = self.rows().get(self.selected).map(|r| r.site.clone()) else {
            return false;
        };
        self.view = View::Detail;
        self.detail_back = View::Sites;
        self.detail = Some(Detail {
            site: site.clone(),
            dump: None,
            dump_received_at: None,
            error: None,
            loading: false,
            request_id: 0,
            scroll: 0,
            viewport_rows: 1,
            content_rows: 0,
        });
        // A snapshot file shows the dump saved with it; elsewhere, a new one is asked for
        // (and a source without dumps says so).
        let saved = self
            .replay
            .as_ref()
            .and_then(|r| r.saved_dump(&site))
            .cloned();
        match (saved, self.detail.as_mut()) {
            // No receive time: "taken Ns ago" would count from opening the file.
            (Some(dump), Some(detail)) => detail.dump = Some(dump),
            _ => {
                self.request_dump();
            }
        }
        true
    }

    /// Back from the detail view to where it was opened from: the sites table, or the
    /// findings view. A dump still in flight is ignored when it arrives.
    pub fn close_detail(&mut self) {
        if self.view == View::Detail {
            self.view = self.detail_back;
        }
        self.detail = None;
        self.dump_to_start = None;
    }

    /// Switches between the sites table and the locks view (key `l`); does nothing in
    /// the site detail and findings views. Returns the view shown afterwards.
    pub fn toggle_locks(&mut self) -> View {
        match self.view {
            View::Sites => self.open_locks(),
            View::Locks => self.close_locks(),
            View::Detail | View::Findings | View::Overview => {}
        }
        self.view
    }

    /// Shows the locks view (the site detail view is closed); q/Esc go back to the sites
    /// table.
    pub fn open_locks(&mut self) {
        if self.view == View::Detail {
            self.close_detail();
        }
        self.view = View::Locks;
        self.locks_back = View::Sites;
        self.clamp_locks();
    }

    /// Back from the locks view to where it was opened from (the sites table, or the
    /// findings view); the lock selection is kept.
    pub fn close_locks(&mut self) {
        if self.view == View::Locks {
            self.view = self.locks_back;
        }
    }

    /// Findings of the last good snapshot, in the snapshot's order (most severe first).
    pub fn findings(&self) -> &[Finding] {
        self.snapshot().map_or(&[], |s| &s.findings[..])
    }

    /// Index of the selected row in [`App::findings`].
    pub fn finding_selected(&self) -> usize {
        self.finding_selected
    }

    /// Index of the first finding row shown.
    pub fn finding_offset(&self) -> usize {
        self.finding_offset
    }

    /// The selected finding, if there is any.
    pub fn selected_finding(&self) -> Option<&Finding> {
        self.findings().get(self.finding_selected)
    }

    /// Tells the state how many rows of the findings table fit on screen, for paging.
    pub fn set_finding_viewport_rows(&mut self, rows: usize) {
        self.finding_viewport_rows = rows.max(1);
        self.clamp_findings();
    }

    /// Shows the findings view (key `f`, from the sites table or the locks view; the site
    /// detail view is closed). q/Esc/`f` go back to the sites table.
    pub fn open_findings(&mut self) {
        if self.view == View::Detail {
            self.close_detail();
        }
        self.view = View::Findings;
        self.clamp_findings();
    }

    /// Back from the findings view to the sites table; the selection is kept.
    pub fn close_findings(&mut self) {
        if self.view == View::Findings {
            self.view = View::Sites;
        }
    }

    /// What Enter on `finding` opens: for a lock finding (see [`App::is_lock_finding`]) the
    /// locks view, on the lock it is about when one of the snapshot's locks matches (the
    /// lock named by its site first); else the detail of its site when that is a spawn
    /// site of the sites table.
    pub fn finding_target(&self, finding: &Finding) -> FindingTarget {
        if self.is_lock_finding(finding) {
            let locks = self.locks();
            let lock = locks
                .iter()
                .find(|l| l.lock == finding.site)
                .or_else(|| locks.iter().find(|l| finding_names_lock(finding, &l.lock)));
            return FindingTarget::Lock(lock.map(|l| l.lock.clone()));
        }
        if self.site_row(&finding.site).is_some() {
            return FindingTarget::Site(finding.site.clone());
        }
        FindingTarget::Nothing
    }

    /// Enter in the findings view: opens what [`App::finding_target`] says for the
    /// selected finding, as Enter on the sites table or `l` would; q/Esc there come back
    /// to the findings. When there is nothing to open, says so in the footer. Returns the
    /// view shown afterwards.
    pub fn open_selected_finding(&mut self) -> View {
        let Some(finding) = self.selected_finding() else {
            return self.view;
        };
        let site = finding.site.clone();
        match self.finding_target(finding) {
            FindingTarget::Site(site) => {
                // A filter hiding the site would leave nothing to select: drop it.
                if !self.rows().iter().any(|r| r.site == site) {
                    self.clear_filter();
                }
                if let Some(i) = self.rows().iter().position(|r| r.site == site) {
                    self.selected = i;
                    self.picked.site = true;
                    self.clamp();
                    if self.open_detail() {
                        self.detail_back = View::Findings;
                    }
                }
            }
            FindingTarget::Lock(lock) => {
                if let Some(i) =
                    lock.and_then(|lock| self.locks().iter().position(|l| l.lock == lock))
                {
                    self.lock_selected = i;
                    self.picked.lock = true;
                }
                self.open_locks();
                self.locks_back = View::Findings;
            }
            FindingTarget::Nothing => {
                self.notice = Some((
                    format!("nothing to open: {site} is not a spawn site of the table"),
                    self.now + NOTICE_FOR,
                ));
            }
        }
        self.view
    }

    fn clamp_findings(&mut self) {
        let n = self.findings().len();
        (self.finding_selected, self.finding_offset) = clamped(
            self.finding_selected,
            self.finding_offset,
            self.finding_viewport_rows,
            n,
        );
    }

    /// Lock rows of the last good snapshot, in the snapshot's order (most waited-on
    /// first).
    pub fn locks(&self) -> &[LockRow] {
        self.snapshot().map_or(&[], |s| &s.locks[..])
    }

    /// Index of the selected row in [`App::locks`].
    pub fn lock_selected(&self) -> usize {
        self.lock_selected
    }

    /// Index of the first lock row shown.
    pub fn lock_offset(&self) -> usize {
        self.lock_offset
    }

    /// The selected lock, if there is any lock.
    pub fn selected_lock(&self) -> Option<&LockRow> {
        self.locks().get(self.lock_selected)
    }

    /// Tells the state how many rows of the locks table fit on screen, for paging.
    pub fn set_lock_viewport_rows(&mut self, rows: usize) {
        self.lock_viewport_rows = rows.max(1);
        self.clamp_locks();
    }

    /// Findings of the last snapshot about the lock labelled `lock`: those whose site is
    /// the lock, or whose evidence names it (a deadlock cycle waiting for it, a guard of
    /// it held across an `.await`, a hot lock).
    pub fn lock_findings<'a>(&'a self, lock: &'a str) -> impl Iterator<Item = &'a Finding> {
        self.findings()
            .iter()
            .filter(move |f| finding_names_lock(f, lock))
    }

    /// Whether `finding` is about locks: of a lock kind, or naming a lock of the last
    /// snapshot.
    pub fn is_lock_finding(&self, finding: &Finding) -> bool {
        matches!(
            finding.kind,
            FindingKind::Deadlock | FindingKind::GuardAcrossAwait | FindingKind::HotLock
        ) || self
            .locks()
            .iter()
            .any(|l| finding_names_lock(finding, &l.lock))
    }

    /// The most severe finding's severity about the lock labelled `lock`, if any.
    pub fn lock_severity(&self, lock: &str) -> Option<Severity> {
        self.lock_findings(lock)
            .map(|f| f.severity)
            .max_by_key(|s| s.rank())
    }

    fn clamp_locks(&mut self) {
        let n = self.locks().len();
        (self.lock_selected, self.lock_offset) = clamped(
            self.lock_selected,
            self.lock_offset,
            self.lock_viewport_rows,
            n,
        );
    }

    /// Asks for a new dump of the detail view's site. Returns false when no detail view is
    /// open or a dump is already being taken (one at a time: the exporter refuses a
    /// second).
    pub fn request_dump(&mut self) -> bool {
        let Some(detail) = self.detail.as_mut() else {
            return false;
        };
        if detail.loading {
            return false;
        }
        if let Some(why) = self.capabilities.dumps.why_not() {
            detail.error = Some(format!("task dumps unavailable for this source: {why}"));
            return false;
        }
        self.dump_requests += 1;
        detail.loading = true;
        detail.request_id = self.dump_requests;
        self.dump_to_start = Some(DumpRequest {
            id: self.dump_requests,
            site: detail.site.clone(),
        });
        true
    }

    /// The dump to start now, if one was requested since the last call. The event loop
    /// calls this when no dump is in flight, and hands the result to [`App::apply_dump`].
    pub fn take_dump_request(&mut self) -> Option<DumpRequest> {
        self.dump_to_start.take()
    }

    /// Records the outcome of the dump request `id`, finished at `now`. Results of a
    /// request that is no longer current (the view was left or reopened) are dropped. On
    /// failure the previous dump, if any, is kept next to the error.
    pub fn apply_dump(&mut self, id: u64, result: Result<Dump, FetchError>, now: Instant) {
        self.tick(now);
        let Some(detail) = self.detail.as_mut() else {
            return;
        };
        if !detail.loading || detail.request_id != id {
            return;
        }
        detail.loading = false;
        match result {
            Ok(dump) => {
                detail.dump = Some(dump);
                detail.dump_received_at = Some(now);
                detail.error = None;
                detail.scroll = 0;
            }
            Err(e) => detail.error = Some(e.to_string()),
        }
    }

    /// Records that the source refused the dump request `id` (it cannot take dumps), with
    /// its reason.
    pub fn refuse_dump(&mut self, id: u64, why: &str, now: Instant) {
        self.tick(now);
        if let Some(detail) = self.detail.as_mut()
            && detail.loading
            && detail.request_id == id
        {
            detail.loading = false;
            detail.error = Some(format!("task dumps unavailable for this source: {why}"));
        }
    }

    /// Tells the state how many content lines the detail view has and how many fit on
    /// screen, for scrolling; the scroll position is clamped to them.
    pub fn set_detail_viewport(&mut self, viewport_rows: usize, content_rows: usize) {
        if let Some(detail) = self.detail.as_mut() {
            detail.viewport_rows = viewport_rows.max(1);
            detail.content_rows = content_rows;
            detail.scroll = detail.scroll.min(detail.max_scroll());
        }
    }

    /// Moves the selection in the sites, locks or findings table, or scrolls the detail
    /// view, clamped.
    /// Home goes back to following the top row.
    pub fn navigate(&mut self, nav: Nav) {
        if self.view == View::Overview {
            return;
        }
        let picked = nav != Nav::Home;
        if self.view == View::Locks {
            self.picked.lock = picked;
            self.lock_selected = moved(self.lock_selected, nav, self.lock_viewport_rows);
            self.clamp_locks();
            return;
        }
        if self.view == View::Findings {
            self.picked.finding = picked;
            self.finding_selected = moved(self.finding_selected, nav, self.finding_viewport_rows);
            self.clamp_findings();
            return;
        }
        if self.view == View::Detail {
            if let Some(detail) = self.detail.as_mut() {
                let page = detail.viewport_rows.max(1);
                let scroll = match nav {
                    Nav::Up => detail.scroll.saturating_sub(1),
                    Nav::Down => detail.scroll.saturating_add(1),
                    Nav::PageUp => detail.scroll.saturating_sub(page),
                    Nav::PageDown => detail.scroll.saturating_add(page),
                    Nav::Home => 0,
                    Nav::End => usize::MAX,
                };
                detail.scroll = scroll.min(detail.max_scroll());
            }
            return;
        }
        self.picked.site = picked;
        self.selected = moved(self.selected, nav, self.viewport_rows);
        self.clamp();
    }

    /// Selects row `index` of the table shown (sites, locks or findings; e.g. clicked),
    /// clamped; does nothing in the other views.
    pub fn select_index(&mut self, index: usize) {
        match self.view {
            View::Sites => {
                self.selected = index;
                self.picked.site = true;
                self.clamp();
            }
            View::Locks => {
                self.lock_selected = index;
                self.picked.lock = true;
                self.clamp_locks();
            }
            View::Findings => {
                self.finding_selected = index;
                self.picked.finding = true;
                self.clamp_findings();
            }
            View::Detail | View::Overview => {}
        }
    }

    fn clamp(&mut self) {
        let n = self.rows().len();
        (self.selected, self.offset) = clamped(self.selected, self.offset, self.viewport_rows, n);
    }

    /// What is selected in each table, by identity. Rows not picked by the user have no key: their selection stays where it is (the
    /// top row).
    fn selection_keys(&self) -> SelectionKeys {
        let picked = self.picked;
        SelectionKeys {
            site: picked
                .site
                .then(|| self.rows().get(self.selected).map(|r| r.site.clone()))
                .flatten(),
            lock: picked
                .lock
                .then(|| self.selected_lock().map(|l| l.lock.clone()))
                .flatten(),
            finding: picked
                .finding
                .then(|| self.selected_finding().map(|f| (f.kind, f.site.clone())))
                .flatten(),
        }
    }

    /// Selects again the items of `keys` in what is shown now, where they still are; the
    /// selections are clamped either way.
    fn restore_selection(&mut self, keys: SelectionKeys) {
        if let Some(site) = keys.site
            && let Some(i) = self.rows().iter().position(|r| r.site == site)
        {
            self.selected = i;
        }
        self.clamp();
        if let Some(lock) = keys.lock
            && let Some(i) = self.locks().iter().position(|l| l.lock == lock)
        {
            self.lock_selected = i;
        }
        self.clamp_locks();
        if let Some((kind, site)) = keys.finding
            && let Some(i) = self
                .findings()
                .iter()
                .position(|f| f.kind == kind && f.site == site)
        {
            self.finding_selected = i;
        }
        self.clamp_findings();
    }

    fn record(&mut self, mut snapshot: Snapshot) {
        self.polls += 1;
        let seq = self.polls;

        // While paused, what is shown (and so selected) does not change.
        let keys = (self.paused.is_none() && !self.bulk).then(|| self.selection_keys());
        // The snapshot's own rows are sorted (no copy): the table and histories read them.
        let rows = &mut snapshot.sites;
        rows.sort_by(|a, b| {
            b.live
                .cmp(&a.live)
                .then(b.spawned.cmp(&a.spawned))
                .then_with(|| a.site.cmp(&b.site))
        });
        let rows = &snapshot.sites;

        // Histories: every tracked site gets a sample (0 when absent) so that rings stay
        // aligned in time; new sites are tracked while there is room, busiest first.
        let mut present: HashMap<&str, (usize, u64)> = HashMap::with_capacity(rows.len());
        for (rank, row) in rows.iter().enumerate() {
            // Duplicated labels (should not happen) add up.
            let e = present.entry(row.site.as_str()).or_insert((rank, 0));
            e.1 = e.1.saturating_add(row.live);
        }
        let data = &mut self.live;
        for (site, h) in data.site_history.iter_mut() {
            match present.get(site.as_str()) {
                Some(&(_, live)) => {
                    h.history.push(live);
                    h.last_seen = seq;
                }
                None => h.history.push(0),
            }
        }
        for (site, &(rank, live)) in &present {
            if rank >= MAX_TRACKED_SITES || data.site_history.contains_key(*site) {
                continue;
            }
            let mut history = History::default();
            history.push(live);
            data.site_history.insert(
                site.to_string(),
                SiteHistory {
                    history,
                    last_seen: seq,
                },
            );
        }
        if data.site_history.len() > MAX_TRACKED_SITES {
            // Least recently seen first; among sites seen now, the least busy first.
            let mut order: Vec<(u64, std::cmp::Reverse<usize>, String)> = data
                .site_history
                .iter()
                .map(|(site, h)| {
                    let rank = present.get(site.as_str()).map_or(usize::MAX, |p| p.0);
                    (h.last_seen, std::cmp::Reverse(rank), site.clone())
                })
                .collect();
            order.sort();
            let excess = data.site_history.len() - MAX_TRACKED_SITES;
            for (_, _, site) in order.into_iter().take(excess) {
                data.site_history.remove(&site);
            }
        }

        data.total_history
            .push(rows.iter().fold(0u64, |acc, r| acc.saturating_add(r.live)));

        // Spawn rate by the agent's own clock (uptime), so that a late or replayed fetch
        // does not distort it; none across a restart (counters start again).
        let spawned = |rows: &[SiteRow]| rows.iter().fold(0u64, |a, r| a.saturating_add(r.spawned));
        data.spawn_rate = data.snapshot.as_ref().and_then(|prev| {
            let dt = snapshot.uptime_seconds - prev.uptime_seconds;
            let (now, before) = (spawned(rows), spawned(&prev.sites));
            (dt > 0.0 && now >= before && !is_restart(prev, &snapshot))
                .then(|| (now - before) as f64 / dt)
        });
        if let Some(rate) = data.spawn_rate {
            data.spawn_rate_history.push(rate.round() as u64);
        }

        // The replaced snapshot's task list (a file or tokio-console may carry up to a
        // million rows, kept so that `s` saves them) is freed off this thread: freeing a
        // million strings here would cost tens of milliseconds of a frame.
        if let Some(mut old) = data.snapshot.replace(snapshot) {
            discard::later(std::mem::take(&mut old.tasks));
        }
        if let Some(keys) = keys {
            self.rebuild_table();
            // Keep the same site, lock and finding selected when the order changes.
            self.restore_selection(keys);
        }
    }
}

/// A selection index moved by `nav` on pages of `page` rows (not yet clamped).
fn moved(selected: usize, nav: Nav, page: usize) -> usize {
    let page = page.max(1);
    match nav {
        Nav::Up => selected.saturating_sub(1),
        Nav::Down => selected.saturating_add(1),
        Nav::PageUp => selected.saturating_sub(page),
        Nav::PageDown => selected.saturating_add(page),
        Nav::Home => 0,
        Nav::End => usize::MAX,
    }
}

/// `(selected, offset)` clamped to `n` rows shown `page` at a time, the selection in view.
fn clamped(selected: usize, offset: usize, page: usize, n: usize) -> (usize, usize) {
    let selected = selected.min(n.saturating_sub(1));
    let page = page.max(1);
    let mut offset = offset;
    if selected < offset {
        offset = selected;
    } else if selected >= offset + page {
        offset = selected + 1 - page;
    }
    // Don't leave empty space below the last row when the list shrinks.
    (selected, offset.min(n.saturating_sub(page)))
}

/// Whether `finding` is about the lock labelled `lock`: its site is the lock (deadlocks,
/// hot locks), or its evidence names it.
fn finding_names_lock(finding: &Finding, lock: &str) -> bool {
    if finding.site == lock {
        return true;
    }
    match &finding.evidence {
        Evidence::Deadlock { cycle, .. } => cycle.iter().any(|step| step.waits_for == lock),
        Evidence::GuardAcrossAwait { lock: l, .. } | Evidence::HotLock { lock: l, .. } => l == lock,
        _ => false,
    }
}

/// True when the `NO_COLOR` environment variable is set and non-empty.
pub fn no_color_from_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod restart_tests {
    use super::*;

    #[test]
    fn a_new_process_restarts_the_history() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        let mut snap = Snapshot::default();
        snap.process.pid = 1;
        snap.uptime_seconds = 10.0;
        snap.sites = vec![taskscope::model::SiteRow {
            site: "a.rs:1:1".into(),
            live: 5,
            ..Default::default()
        }];
        app.apply(Ok(snap.clone()), t0);
        snap.sites[0].live = 9;
        snap.uptime_seconds = 11.0;
        app.apply(Ok(snap.clone()), t0 + Duration::from_secs(1));
        assert_eq!(app.site_history("a.rs:1:1").unwrap().delta(), 4);
        assert_eq!(app.restarted_at(), None);
        snap.process.pid = 2;
        snap.uptime_seconds = 0.5;
        snap.sites[0].live = 1;
        let t2 = t0 + Duration::from_secs(2);
        app.apply(Ok(snap), t2);
        assert_eq!(app.restarted_at(), Some(t2));
        let h = app.site_history("a.rs:1:1").unwrap();
        assert_eq!((h.len(), h.delta()), (1, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskscope::model::SCHEMA_VERSION;

    fn site(name: &str, live: u64) -> SiteRow {
        SiteRow {
            site: name.to_string(),
            live,
            spawned: live,
            ..SiteRow::default()
        }
    }

    fn snap(sites: Vec<SiteRow>) -> Snapshot {
        Snapshot {
            schema_version: SCHEMA_VERSION,
            sites,
            ..Snapshot::default()
        }
    }

    fn refused() -> FetchError {
        FetchError::ConnectionRefused {
            url: "http://127.0.0.1:1/debug/taskscope/snapshot".into(),
        }
    }

    #[test]
    fn the_selection_stays_on_top_until_a_row_is_picked_then_follows_it() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        app.apply(
            Ok(snap(vec![site("worker.rs:1:1", 5), site("leak.rs:2:2", 1)])),
            t0,
        );
        assert_eq!(
            app.rows().get(app.selected()).map(|r| r.site.as_str()),
            Some("worker.rs:1:1")
        );
        // The leak overtakes: nothing picked yet, so the top row (the leak) is selected.
        app.apply(
            Ok(snap(vec![
                site("worker.rs:1:1", 5),
                site("leak.rs:2:2", 50),
            ])),
            t0,
        );
        assert_eq!(
            app.rows().get(app.selected()).map(|r| r.site.as_str()),
            Some("leak.rs:2:2")
        );
        // Picked (moved down to worker.rs): followed when the order changes again.
        app.navigate(Nav::Down);
        app.apply(
            Ok(snap(vec![
                site("worker.rs:1:1", 99),
                site("leak.rs:2:2", 50),
            ])),
            t0,
        );
        assert_eq!(app.rows()[0].site, "worker.rs:1:1");
        app.apply(
            Ok(snap(vec![
                site("worker.rs:1:1", 1),
                site("leak.rs:2:2", 60),
            ])),
            t0,
        );
        assert_eq!(
            app.rows().get(app.selected()).map(|r| r.site.as_str()),
            Some("worker.rs:1:1")
        );
        // Home: back to following the top row.
        app.navigate(Nav::Home);
        app.apply(
            Ok(snap(vec![
                site("worker.rs:1:1", 70),
                site("leak.rs:2:2", 60),
            ])),
            t0,
        );
        assert_eq!(
            app.rows().get(app.selected()).map(|r| r.site.as_str()),
            Some("worker.rs:1:1")
        );
        app.apply(
            Ok(snap(vec![
                site("worker.rs:1:1", 7),
                site("leak.rs:2:2", 60),
            ])),
            t0,
        );
        assert_eq!(
            app.rows().get(app.selected()).map(|r| r.site.as_str()),
            Some("leak.rs:2:2")
        );
    }

    #[test]
    fn error_keeps_last_snapshot_and_marks_disconnected() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        assert_eq!(app.status, ConnectionStatus::Connecting);
        app.apply(Ok(snap(vec![site("a", 2), site("b", 5)])), t0);
        assert_eq!(app.status, ConnectionStatus::Connected);
        assert_eq!(app.rows()[0].site, "b");
        assert_eq!(app.live_total(), 7);

        let t1 = t0 + Duration::from_secs(3);
        app.apply(Err(refused()), t1);
        match &app.status {
            ConnectionStatus::Disconnected { since, error } => {
                assert_eq!(*since, t1);
                assert!(error.contains("connection refused"), "{error}");
            }
            other => panic!("expected disconnected, got {other:?}"),
        }
        assert_eq!(app.snapshot().map(|s| s.sites.len()), Some(2));
        assert_eq!(app.rows().len(), 2);
        assert_eq!(app.data_age(), Some(Duration::from_secs(3)));

        // A second failure keeps the start of the outage.
        let t2 = t1 + Duration::from_secs(1);
        app.apply(
            Err(FetchError::Timeout {
                url: "u".into(),
                seconds: 2.0,
            }),
            t2,
        );
        match &app.status {
            ConnectionStatus::Disconnected { since, error } => {
                assert_eq!(*since, t1);
                assert!(error.contains("timed out"), "{error}");
            }
            other => panic!("expected disconnected, got {other:?}"),
        }
        // Failures don't add history samples.
        assert_eq!(app.site_history("a").map(History::len), Some(1));
        assert_eq!(app.total_history().len(), 1);
    }

    #[test]
    fn recovers_to_connected() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        app.apply(Err(refused()), t0);
        assert!(matches!(app.status, ConnectionStatus::Disconnected { .. }));
        assert!(app.snapshot().is_none());
        let t1 = t0 + Duration::from_secs(1);
        app.apply(Ok(snap(vec![site("a", 1)])), t1);
        assert_eq!(app.status, ConnectionStatus::Connected);
        assert_eq!(app.received_at(), Some(t1));
        assert_eq!(app.data_age(), Some(Duration::ZERO));
    }

    #[test]
    fn task_lists_are_kept_for_saving_until_replaced() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        let mut s = snap(vec![site("a", 2000)]);
        s.tasks = (0..2000)
            .map(|id| taskscope::model::TaskRow {
                id,
                site: "a".into(),
                ..Default::default()
            })
            .collect();
        s.tasks_total = 2000;
        app.apply(Ok(s), t0);
        let shown = app.snapshot().unwrap();
        assert_eq!(shown.tasks.len(), 2000);
        assert_eq!(shown.tasks_total, 2000);
        assert_eq!(app.rows()[0].live, 2000);
        // The next snapshot replaces it (the old list is freed on the background thread).
        app.apply(Ok(snap(vec![site("a", 3)])), t0);
        assert!(app.snapshot().unwrap().tasks.is_empty());
        assert_eq!(app.rows()[0].live, 3);
    }

    #[test]
    fn history_is_bounded() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        for i in 0..200u64 {
            app.apply(Ok(snap(vec![site("a", i)])), t0 + Duration::from_millis(i));
        }
        let h = app.site_history("a").expect("tracked");
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h.samples().next(), Some(200 - HISTORY_LEN as u64));
        assert_eq!(h.samples().last(), Some(199));
        assert_eq!(app.total_history().len(), HISTORY_LEN);
    }

    #[test]
    fn absent_sites_get_zero_samples() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        app.apply(Ok(snap(vec![site("a", 3), site("b", 1)])), t0);
        app.apply(Ok(snap(vec![site("a", 4)])), t0);
        let b: Vec<u64> = app.site_history("b").unwrap().samples().collect();
        assert_eq!(b, vec![1, 0]);
    }

    #[test]
    fn tracked_sites_are_bounded_least_recently_seen_dropped() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        let first: Vec<SiteRow> = (0..MAX_TRACKED_SITES)
            .map(|i| site(&format!("old{i}"), 1))
            .collect();
        app.apply(Ok(snap(first)), t0);
        assert_eq!(app.tracked_sites(), MAX_TRACKED_SITES);

        // old0 stays visible; 10 new sites push out 10 of the others.
        let mut second = vec![site("old0", 1)];
        second.extend((0..10).map(|i| site(&format!("new{i}"), 5)));
        app.apply(Ok(snap(second)), t0);
        assert_eq!(app.tracked_sites(), MAX_TRACKED_SITES);
        assert!(app.site_history("old0").is_some());
        for i in 0..10 {
            assert!(app.site_history(&format!("new{i}")).is_some());
        }

        // A single snapshot larger than the cap tracks only the busiest sites.
        let huge: Vec<SiteRow> = (0..MAX_TRACKED_SITES as u64 + 100)
            .map(|i| site(&format!("h{i}"), i))
            .collect();
        app.apply(Ok(snap(huge)), t0);
        assert_eq!(app.tracked_sites(), MAX_TRACKED_SITES);
        assert!(
            app.site_history(&format!("h{}", MAX_TRACKED_SITES + 99))
                .is_some()
        );
        assert!(app.site_history("h0").is_none());
    }

    #[test]
    fn navigation_is_clamped_and_scrolls() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        // No rows: nothing moves, nothing panics.
        for nav in [Nav::Up, Nav::Down, Nav::PageDown, Nav::End, Nav::Home] {
            app.navigate(nav);
            assert_eq!(app.selected(), 0);
        }
        let rows: Vec<SiteRow> = (0..30u64)
            .map(|i| site(&format!("s{i:02}"), 100 - i))
            .collect();
        app.apply(Ok(snap(rows)), t0);
        app.set_viewport_rows(10);

        app.navigate(Nav::Up);
        assert_eq!(app.selected(), 0);
        app.navigate(Nav::Down);
        assert_eq!(app.selected(), 1);
        app.navigate(Nav::PageDown);
        assert_eq!(app.selected(), 11);
        assert_eq!(app.offset(), 2);
        app.navigate(Nav::End);
        assert_eq!(app.selected(), 29);
        assert_eq!(app.offset(), 20);
        app.navigate(Nav::Down);
        assert_eq!(app.selected(), 29);
        app.navigate(Nav::PageDown);
        assert_eq!(app.selected(), 29);
        app.navigate(Nav::PageUp);
        assert_eq!(app.selected(), 19);
        assert_eq!(app.offset(), 19);
        app.navigate(Nav::Home);
        assert_eq!((app.selected(), app.offset()), (0, 0));

        // Selection follows its site when the order changes, and is clamped when rows go.
        app.navigate(Nav::Down); // s01
        let mut reordered: Vec<SiteRow> = (0..30u64)
            .map(|i| site(&format!("s{i:02}"), 100 - i))
            .collect();
        reordered[1].live = 1000;
        app.apply(Ok(snap(reordered)), t0);
        assert_eq!(app.rows()[app.selected()].site, "s01");
        app.navigate(Nav::End);
        app.apply(Ok(snap(vec![site("s00", 1), site("z", 0)])), t0);
        assert_eq!(app.selected(), 1);
        assert_eq!(app.offset(), 0);
    }
}

#[cfg(test)]
mod detail_tests {
    use super::*;
    use taskscope::model::{DumpGroup, SCHEMA_VERSION};

    fn app_with_sites(t0: Instant) -> App {
        let mut app = App::new("http://x", t0);
        let sites = ["busy.rs:1:1", "quiet.rs:2:2"]
            .iter()
            .enumerate()
            .map(|(i, s)| SiteRow {
                site: s.to_string(),
                live: 10 - i as u64,
                ..SiteRow::default()
            })
            .collect();
        app.apply(
            Ok(Snapshot {
                schema_version: SCHEMA_VERSION,
                sites,
                ..Snapshot::default()
            }),
            t0,
        );
        app
    }

    fn dump(count: u64) -> Dump {
        Dump {
            schema_version: SCHEMA_VERSION,
            total_tasks: count,
            groups: vec![DumpGroup {
                site: "quiet.rs:2:2".into(),
                count,
                ..DumpGroup::default()
            }],
            ..Dump::default()
        }
    }

    #[test]
    fn enter_opens_the_selected_site_and_asks_for_one_dump() {
        let t0 = Instant::now();
        let mut empty = App::new("http://x", t0);
        assert!(!empty.open_detail(), "no rows: nothing to open");
        assert_eq!(empty.view(), View::Sites);
        assert_eq!(empty.take_dump_request(), None);

        let mut app = app_with_sites(t0);
        app.navigate(Nav::Down);
        assert!(app.open_detail());
        assert_eq!(app.view(), View::Detail);
        let detail = app.detail().expect("open");
        assert_eq!(detail.site(), "quiet.rs:2:2");
        assert!(detail.loading());
        let req = app.take_dump_request().expect("a dump is asked for");
        assert_eq!(req.site, "quiet.rs:2:2");
        assert_eq!(app.take_dump_request(), None, "handed out once");

        // r while the dump is in flight does not ask for a second one.
        assert!(!app.request_dump());
        assert_eq!(app.take_dump_request(), None);

        // Snapshots keep coming while the view is open.
        app.apply(Ok(app.snapshot().cloned().unwrap()), t0);
        assert_eq!(app.view(), View::Detail);

        let t1 = t0 + Duration::from_secs(1);
        app.apply_dump(req.id, Ok(dump(3)), t1);
        let detail = app.detail().unwrap();
        assert!(!detail.loading());
        assert_eq!(detail.dump().map(|d| d.total_tasks), Some(3));
        assert_eq!(detail.dump_received_at(), Some(t1));

        // r asks again; a failure keeps the previous dump next to the error.
        assert!(app.request_dump());
        let req2 = app.take_dump_request().unwrap();
        assert_ne!(req2.id, req.id);
        app.apply_dump(
            req2.id,
            Err(FetchError::Status {
                status: 429,
                url: "u".into(),
                detail: "another task dump is in progress".into(),
            }),
            t1,
        );
        let detail = app.detail().unwrap();
        assert!(detail.error().unwrap().contains("another task dump"));
        assert_eq!(detail.dump().map(|d| d.total_tasks), Some(3));
        assert!(!detail.loading());
        // A success clears the error.
        assert!(app.request_dump());
        let req3 = app.take_dump_request().unwrap();
        app.apply_dump(req3.id, Ok(dump(4)), t1);
        assert_eq!(app.detail().unwrap().error(), None);
    }

    #[test]
    fn esc_goes_back_and_stale_dumps_are_dropped() {
        let t0 = Instant::now();
        let mut app = app_with_sites(t0);
        assert!(app.open_detail());
        let stale = app.take_dump_request().unwrap();
        app.close_detail();
        assert_eq!(app.view(), View::Sites);
        assert!(app.detail().is_none());
        // A result for a view that was left is ignored.
        app.apply_dump(stale.id, Ok(dump(1)), t0);
        assert!(app.detail().is_none());
        // Closing drops a request not yet started.
        assert!(app.open_detail());
        app.close_detail();
        assert_eq!(app.take_dump_request(), None);

        // Reopened: the old in-flight result does not land in the new view.
        assert!(app.open_detail());
        let fresh = app.take_dump_request().unwrap();
        app.apply_dump(stale.id, Ok(dump(1)), t0);
        assert!(app.detail().unwrap().dump().is_none());
        assert!(app.detail().unwrap().loading());
        app.apply_dump(fresh.id, Ok(dump(2)), t0);
        assert_eq!(app.detail().unwrap().dump().map(|d| d.total_tasks), Some(2));
        // The table selection survives the round trip.
        app.close_detail();
        assert_eq!(app.selected(), 0);
        // Table navigation is back to moving the selection.
        app.navigate(Nav::Down);
        assert_eq!(app.selected(), 1);
    }

    #[test]
    fn detail_scroll_is_clamped() {
        let t0 = Instant::now();
        let mut app = app_with_sites(t0);
        // No detail view: the viewport call is harmless.
        app.set_detail_viewport(5, 100);
        assert!(app.open_detail());
        let d = |app: &App| app.detail().unwrap().scroll();
        // Nothing known about the content yet: no scrolling.
        app.navigate(Nav::Down);
        assert_eq!(d(&app), 0);

        app.set_detail_viewport(10, 35);
        app.navigate(Nav::Up);
        assert_eq!(d(&app), 0);
        app.navigate(Nav::Down);
        assert_eq!(d(&app), 1);
        app.navigate(Nav::PageDown);
        assert_eq!(d(&app), 11);
        app.navigate(Nav::PageDown);
        app.navigate(Nav::PageDown);
        assert_eq!(d(&app), 25, "last page: lines 25..35");
        app.navigate(Nav::Down);
        assert_eq!(d(&app), 25);
        app.navigate(Nav::PageUp);
        assert_eq!(d(&app), 15);
        app.navigate(Nav::Home);
        assert_eq!(d(&app), 0);
        app.navigate(Nav::End);
        assert_eq!(d(&app), 25);
        // Content shrinks (or the screen grows): the scroll follows.
        app.set_detail_viewport(10, 20);
        assert_eq!(d(&app), 10);
        app.set_detail_viewport(30, 20);
        assert_eq!(d(&app), 0);
        // Scrolling in the detail view leaves the table selection alone.
        assert_eq!(app.selected(), 0);
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;
    use taskscope::model::{DeadlockStep, LockRow};

    fn finding(kind: FindingKind, site: &str, evidence: Evidence) -> Finding {
        Finding {
            kind,
            severity: Severity::Warning,
            site: site.into(),
            evidence,
            ..Finding::default()
        }
    }

    #[test]
    fn lock_findings_match_the_site_or_the_evidence() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", t0);
        let lock = |name: &str| LockRow {
            lock: name.into(),
            ..LockRow::default()
        };
        let mut deadlock = finding(
            FindingKind::Deadlock,
            "a",
            Evidence::Deadlock {
                cycle: vec![DeadlockStep {
                    waits_for: "b".into(),
                    ..DeadlockStep::default()
                }],
                blocked_behind: 0,
            },
        );
        deadlock.severity = Severity::Critical;
        let guard = finding(
            FindingKind::GuardAcrossAwait,
            "src/acquire.rs:9:9",
            Evidence::GuardAcrossAwait {
                lock: "c".into(),
                guards: 1,
                oldest_idle_seconds: 2.0,
                threshold_seconds: 1.0,
            },
        );
        let leak = finding(FindingKind::IdleTooLong, "site.rs:1:1", Evidence::Unknown);
        app.apply(
            Ok(Snapshot {
                locks: vec![lock("a"), lock("b"), lock("c"), lock("d")],
                findings: vec![deadlock, guard.clone(), leak.clone()],
                ..Snapshot::default()
            }),
            t0,
        );
        assert_eq!(app.lock_severity("a"), Some(Severity::Critical), "by site");
        assert_eq!(
            app.lock_severity("b"),
            Some(Severity::Critical),
            "in the cycle"
        );
        assert_eq!(
            app.lock_severity("c"),
            Some(Severity::Warning),
            "by evidence"
        );
        assert_eq!(app.lock_severity("d"), None);
        assert_eq!(app.lock_findings("c").count(), 1);
        assert!(app.is_lock_finding(&guard));
        assert!(!app.is_lock_finding(&leak));
        // The view starts on the sites; l toggles, and does nothing in the detail view.
        assert_eq!(app.view(), View::Sites);
        assert_eq!(app.toggle_locks(), View::Locks);
        app.navigate(Nav::End);
        assert_eq!(app.selected_lock().map(|l| l.lock.as_str()), Some("d"));
        assert_eq!(app.toggle_locks(), View::Sites);
        assert_eq!(app.lock_selected(), 3, "kept for next time");
    }
}
