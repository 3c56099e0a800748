//! A saved snapshot or a recording looked at with no live target: its frames and the time
//! cursor. Moving the cursor rebuilds what is shown, histories and sparklines included,
//! from the frames up to it, exactly as if they had just been fetched.

use std::time::{Duration, Instant};

use taskscope::model::{Dump, Snapshot};

use super::{App, HISTORY_LEN};
use crate::source::Capabilities;

/// What kind of file is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKind {
    /// A snapshot saved with `s` (one frame).
    Snapshot,
    /// A recording (`taskscope record`, `R`).
    Recording,
}

/// One frame of a file: when it was received (milliseconds since the Unix epoch) and the
/// snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayFrame {
    /// When the snapshot was received (or saved), milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The snapshot.
    pub snapshot: Snapshot,
}

/// The file shown and where its time cursor is.
#[derive(Debug, Clone)]
pub struct Replay {
    kind: ReplayKind,
    /// Where the file's snapshots came from (the recorded target).
    origin: String,
    frames: Vec<ReplayFrame>,
    cursor: usize,
    /// The dump saved with a snapshot file, by site.
    saved_dump: Option<(String, Dump)>,
    /// The instant the cursor's frame was applied at: ages in the header ("restarted 5s
    /// ago") count to it, not to the wall clock.
    anchor: Instant,
}

impl Replay {
    /// What kind of file it is.
    pub fn kind(&self) -> ReplayKind {
        self.kind
    }

    /// Where the snapshots came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Index of the frame shown (0-based).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Number of frames (at least 1).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Never true: a replay has at least one frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frame shown.
    pub fn frame(&self) -> &ReplayFrame {
        &self.frames[self.cursor]
    }

    /// The instant ages count to while replaying.
    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    /// The dump saved with the file for `site`, if any.
    pub fn saved_dump(&self, site: &str) -> Option<&Dump> {
        self.saved_dump
            .as_ref()
            .filter(|(s, _)| s == site)
            .map(|(_, d)| d)
    }
}

impl App {
    /// Shows the frames of a file instead of a live target: `label` is the file (shown as
    /// the target), `origin` where its snapshots came from, `saved_dump` the site and dump
    /// saved with it. The cursor starts at the last frame (the end of a recording is
    /// usually why it is opened); capabilities become those of a file. Does nothing when
    /// `frames` is empty.
    pub fn load_frames(
        &mut self,
        label: impl Into<String>,
        origin: impl Into<String>,
        kind: ReplayKind,
        frames: Vec<ReplayFrame>,
        saved_dump: Option<(String, Dump)>,
    ) {
        if frames.is_empty() {
            return;
        }
        self.target = label.into();
        self.capabilities = Capabilities::file();
        self.replay = Some(Replay {
            kind,
            origin: origin.into(),
            cursor: frames.len() - 1,
            frames,
            saved_dump,
            anchor: self.now,
        });
        self.show_frame();
    }

    /// The file shown, when not watching a live target.
    pub fn replay(&self) -> Option<&Replay> {
        self.replay.as_ref()
    }

    /// Moves the time cursor by `by` frames (clamped), rebuilding what is shown; returns
    /// the new cursor. Does nothing without a replay.
    pub fn step_frame(&mut self, by: isize) -> Option<usize> {
        let replay = self.replay.as_mut()?;
        let from = replay.cursor;
        let cursor = from.saturating_add_signed(by).min(replay.frames.len() - 1);
        if cursor == from {
            return Some(cursor);
        }
        replay.cursor = cursor;
        if cursor == from + 1 && self.paused.is_none() {
            // One frame on: applying it to what is shown gives what a rebuild would (the
            // rings drop their oldest sample), for one frame's work instead of sixty.
            let back = replay.frames[cursor]
                .at_unix_ms
                .saturating_sub(replay.frames[from].at_unix_ms);
            // Times come from a file: a gap too large for an Instant stays at the anchor.
            let at = replay
                .anchor
                .checked_add(Duration::from_millis(back))
                .unwrap_or(replay.anchor);
            replay.anchor = at;
            let snapshot = replay.frames[cursor].snapshot.clone();
            self.apply(Ok(snapshot), at);
        } else {
            self.show_frame();
        }
        Some(cursor)
    }

    /// Rebuilds the shown data from the frames up to the cursor: the last [`HISTORY_LEN`]
    /// of them are applied in order, at instants as far apart as their wall times, so
    /// histories, sparklines, Δ columns and restarts read as they did live.
    fn show_frame(&mut self) {
        let Some(replay) = self.replay.as_mut() else {
            return;
        };
        let anchor = self.now;
        replay.anchor = anchor;
        let cursor = replay.cursor;
        let cursor_ms = replay.frames[cursor].at_unix_ms;
        let from = cursor.saturating_sub(HISTORY_LEN - 1);
        let keys = self.selection_keys();
        self.paused = None;
        self.live = super::Data::default();
        self.polls = 0;
        for i in from..=cursor {
            let Some(replay) = self.replay.as_ref() else {
                break;
            };
            let frame = &replay.frames[i];
            let back = Duration::from_millis(cursor_ms.saturating_sub(frame.at_unix_ms));
            let at = anchor.checked_sub(back).unwrap_or(anchor);
            // Frames before the cursor only feed the histories: what those read (sites,
            // process, uptime) is copied, and the table is built once, at the cursor.
            let last = i == cursor;
            let snapshot = if last {
                frame.snapshot.clone()
            } else {
                history_part(&frame.snapshot)
            };
            self.bulk = !last;
            self.apply(Ok(snapshot), at);
        }
        self.bulk = false;
        self.restore_selection(keys);
    }
}

/// The part of `snapshot` that histories, restarts and the spawn rate are computed from.
fn history_part(snapshot: &Snapshot) -> Snapshot {
    Snapshot {
        schema_version: snapshot.schema_version,
        taken_at_unix_ms: snapshot.taken_at_unix_ms,
        uptime_seconds: snapshot.uptime_seconds,
        process: snapshot.process.clone(),
        agent: snapshot.agent.clone(),
        sites: snapshot.sites.clone(),
        ..Snapshot::default()
    }
}
