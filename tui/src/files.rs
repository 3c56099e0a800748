//! Snapshot files (`s` in the TUI) and recordings (`taskscope record`, `R` in the TUI), and
//! opening either one (`taskscope open FILE`).
//!
//! A snapshot file is one JSON object ([`SavedSnapshot`]): the snapshot on screen and the
//! task dump of the open site, if any. A recording is gzip-compressed JSON lines: a
//! [`RecordingHeader`] line, then one [`RecordedFrame`] line per snapshot. Both carry a
//! `format` name and a format `version`, and every snapshot its own `schema_version`;
//! opening checks all three and says which one it does not understand.
//!
//! Recordings are bounded when written ([`RecordingLimits`]: frames and uncompressed bytes,
//! whichever comes first) and when read (the same caps, so a hostile file cannot exhaust
//! memory). The gzip stream is flushed after every frame, so a recorder killed mid-way
//! leaves a file whose complete frames still open.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use taskscope::model::{Dump, SCHEMA_VERSION, Snapshot};

/// `format` of a snapshot file.
pub const SNAPSHOT_FORMAT: &str = "taskscope-snapshot";

/// `format` of a recording.
pub const RECORDING_FORMAT: &str = "taskscope-recording";

/// Version of both file formats this build writes and reads. Bumped when a field changes
/// meaning or is removed.
pub const FILE_VERSION: u32 = 1;

/// Largest snapshot file opened.
pub const MAX_SNAPSHOT_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Default cap on a recording's frames (an hour at one frame a second).
pub const DEFAULT_MAX_FRAMES: usize = 3600;

/// Default cap on a recording's uncompressed size.
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// A snapshot saved with `s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSnapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// [`FILE_VERSION`] of the writer.
    pub version: u32,
    /// When it was saved, milliseconds since the Unix epoch.
    pub saved_at_unix_ms: u64,
    /// Where the snapshot came from (URL or file).
    pub target: String,
    /// The snapshot shown when saving.
    pub snapshot: Snapshot,
    /// The task dump of the site whose detail view was open, if any.
    #[serde(default)]
    pub dump: Option<SavedDump>,
}

/// A task dump saved with a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedDump {
    /// The spawn site it is of.
    pub site: String,
    /// The dump.
    pub dump: Dump,
}

impl SavedSnapshot {
    /// A snapshot file's contents, saved now.
    pub fn new(target: impl Into<String>, snapshot: Snapshot, dump: Option<SavedDump>) -> Self {
        SavedSnapshot {
            format: SNAPSHOT_FORMAT.into(),
            version: FILE_VERSION,
            saved_at_unix_ms: unix_ms_now(),
            target: target.into(),
            snapshot,
            dump,
        }
    }
}

/// The first line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// [`RECORDING_FORMAT`].
    pub format: String,
    /// [`FILE_VERSION`] of the writer.
    pub version: u32,
    /// Where the snapshots came from.
    pub target: String,
    /// When recording started, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Time asked for between frames, in milliseconds.
    pub interval_ms: u64,
    /// The caps the recorder ran with.
    pub limits: RecordingLimits,
}

/// One line of a recording after the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedFrame {
    /// When the snapshot was received, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The snapshot.
    pub snapshot: Snapshot,
}

/// Caps on a recording: it stops at whichever is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingLimits {
    /// Most frames.
    pub max_frames: usize,
    /// Most bytes of uncompressed JSON (header included).
    pub max_bytes: u64,
}

impl Default for RecordingLimits {
    fn default() -> Self {
        RecordingLimits {
            max_frames: DEFAULT_MAX_FRAMES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// A recording read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Its header.
    pub header: RecordingHeader,
    /// Its frames, oldest first (never empty).
    pub frames: Vec<RecordedFrame>,
    /// Why reading stopped before the end of the file, when it did (a recorder killed
    /// mid-frame, a cap reached): ready to show.
    pub cut_short: Option<String>,
}

/// What `taskscope open` found in a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// A snapshot saved with `s`.
    Snapshot(Box<SavedSnapshot>),
    /// A recording.
    Recording(Recording),
}

/// Why a file cannot be written or opened.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing failed.
    // Not a `source`: the message already says it, and error chains would repeat it.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
    /// Neither a snapshot file nor a recording.
    #[error(
        "{path} is not a taskscope snapshot or recording ({detail}); open files written by `s` in the TUI, `taskscope record` or `R`"
    )]
    NotTaskscope {
        /// The file.
        path: String,
        /// What was found instead.
        detail: String,
    },
    /// A format version this build does not read.
    #[error(
        "{path} is a {format} of format version {found}; this taskscope reads version {supported}"
    )]
    Version {
        /// The file.
        path: String,
        /// Which format.
        format: &'static str,
        /// The file's version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A snapshot of a newer schema than this build understands.
    #[error(
        "{path} holds a snapshot of schema v{found}; this taskscope understands up to v{supported}"
    )]
    Schema {
        /// The file.
        path: String,
        /// The snapshot's schema version.
        found: u32,
        /// The newest schema this build understands.
        supported: u32,
    },
    /// Broken contents.
    #[error("{path} is damaged: {detail}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// Too large to open.
    #[error("{path} is larger than {limit} bytes; taskscope does not open it")]
    TooLarge {
        /// The file.
        path: String,
        /// The cap.
        limit: u64,
    },
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `taskscope-<pid>-<unix seconds>.<ext>` in `dir`.
pub fn default_path(dir: &Path, pid: u32, unix_ms: u64, ext: &str) -> PathBuf {
    dir.join(format!("taskscope-{pid}-{}.{ext}", unix_ms / 1000))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |error| FileError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// Writes `saved` to `path` as JSON; refuses to overwrite an existing file.
pub fn write_snapshot(path: &Path, saved: &SavedSnapshot) -> Result<(), FileError> {
    let file = File::create_new(path).map_err(io(path))?;
    let mut out = BufWriter::new(file);
    serde_json::to_writer(&mut out, saved).map_err(|e| io(path)(e.into()))?;
    out.write_all(b"\n").map_err(io(path))?;
    out.flush().map_err(io(path))
}

/// Saves `saved` in `dir` as `taskscope-<pid>-<unix time>.json` (the pid of the snapshot's
/// process; `-2`, `-3`… appended when saved again within the same second); returns the
/// path written.
pub fn save_snapshot(dir: &Path, saved: &SavedSnapshot) -> Result<PathBuf, FileError> {
    let first = default_path(
        dir,
        saved.snapshot.process.pid,
        saved.saved_at_unix_ms,
        "json",
    );
    let mut path = first.clone();
    for n in 2..=100 {
        match write_snapshot(&path, saved) {
            Err(FileError::Io { error, .. })
                if error.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                let stem = first
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("taskscope");
                path = first.with_file_name(format!("{stem}-{n}.json"));
            }
            other => return other.map(|()| path),
        }
    }
    write_snapshot(&path, saved).map(|()| path)
}

/// Why a recorder stopped taking frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// [`RecordingLimits::max_frames`] reached.
    Frames(usize),
    /// [`RecordingLimits::max_bytes`] would be passed by the next frame.
    Bytes(u64),
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Frames(n) => write!(f, "the cap of {n} frames was reached"),
            Full::Bytes(n) => write!(f, "the cap of {n} bytes was reached"),
        }
    }
}

/// Writes a recording frame by frame, within its [`RecordingLimits`].
pub struct Recorder {
    path: PathBuf,
    out: Option<GzEncoder<BufWriter<File>>>,
    limits: RecordingLimits,
    frames: usize,
    bytes: u64,
    full: Option<Full>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .field("bytes", &self.bytes)
            .field("full", &self.full)
            .finish()
    }
}

impl Recorder {
    /// Creates the recording at `path` (not overwriting a file) and writes its header.
    pub fn create(
        path: &Path,
        target: &str,
        interval_ms: u64,
        limits: RecordingLimits,
    ) -> Result<Self, FileError> {
        let file = File::create_new(path).map_err(io(path))?;
        let mut recorder = Recorder {
            path: path.to_path_buf(),
            out: Some(GzEncoder::new(BufWriter::new(file), Compression::default())),
            limits,
            frames: 0,
            bytes: 0,
            full: None,
        };
        let header = RecordingHeader {
            format: RECORDING_FORMAT.into(),
            version: FILE_VERSION,
            target: target.into(),
            started_at_unix_ms: unix_ms_now(),
            interval_ms,
            limits,
        };
        let line = json_line(&header).map_err(io(path))?;
        recorder.write_line(&line)?;
        Ok(recorder)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Uncompressed bytes written so far, header included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Which cap stopped the recording, once one did.
    pub fn full(&self) -> Option<Full> {
        self.full
    }

    /// Appends a frame; `Ok(false)` (and nothing written) once a cap is reached, see
    /// [`Recorder::full`].
    pub fn push(&mut self, at_unix_ms: u64, snapshot: &Snapshot) -> Result<bool, FileError> {
        if self.full.is_some() {
            return Ok(false);
        }
        if self.frames >= self.limits.max_frames {
            self.full = Some(Full::Frames(self.limits.max_frames));
            return Ok(false);
        }
        #[derive(Serialize)]
        struct FrameRef<'a> {
            at_unix_ms: u64,
            snapshot: &'a Snapshot,
        }
        let line = json_line(&FrameRef {
            at_unix_ms,
            snapshot,
        })
        .map_err(io(&self.path))?;
        if self.bytes + line.len() as u64 > self.limits.max_bytes {
            self.full = Some(Full::Bytes(self.limits.max_bytes));
            return Ok(false);
        }
        self.write_line(&line)?;
        self.frames += 1;
        Ok(true)
    }

    fn write_line(&mut self, line: &[u8]) -> Result<(), FileError> {
        let path = &self.path;
        let out = self.out.as_mut().ok_or_else(|| FileError::Io {
            path: path.display().to_string(),
            error: std::io::Error::other("the recording is already finished"),
        })?;
        out.write_all(line).map_err(io(path))?;
        // A sync flush per frame: a recorder killed later leaves every frame so far
        // readable (costs a little compression).
        out.flush().map_err(io(path))?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Ends the gzip stream and closes the file; returns the path.
    pub fn finish(mut self) -> Result<PathBuf, FileError> {
        if let Some(out) = self.out.take() {
            let mut file = out.finish().map_err(io(&self.path))?;
            file.flush().map_err(io(&self.path))?;
        }
        Ok(self.path.clone())
    }
}

fn json_line<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    Ok(line)
}

/// Opens a snapshot file or a recording, telling them apart by content (gzip or JSON),
/// with the caps of [`RecordingLimits::default`].
pub fn open(path: &Path) -> Result<Opened, FileError> {
    open_with(path, RecordingLimits::default())
}

/// [`open`] with explicit caps on what is read from a recording.
pub fn open_with(path: &Path, limits: RecordingLimits) -> Result<Opened, FileError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(io(path))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(io(path))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return read_recording(&name, reader, limits).map(Opened::Recording);
    }
    let first = head.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') {
        let detail = match first {
            None => "it is empty".to_string(),
            Some(_) => "it is neither JSON nor gzip".to_string(),
        };
        return Err(FileError::NotTaskscope { path: name, detail });
    }
    let mut text = Vec::new();
    reader
        .take(MAX_SNAPSHOT_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io(path))?;
    if text.len() as u64 > MAX_SNAPSHOT_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: name,
            limit: MAX_SNAPSHOT_FILE_BYTES,
        });
    }
    read_snapshot(&name, &text).map(|s| Opened::Snapshot(Box::new(s)))
}

/// The `format` and `version` fields, read before anything else so that a file of another
/// version gets a version error rather than a field error.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

fn check_envelope(path: &str, envelope: &Envelope, want: &'static str) -> Result<(), FileError> {
    match envelope.format.as_deref() {
        Some(f) if f == want => {}
        Some(other) => {
            return Err(FileError::NotTaskscope {
                path: path.into(),
                detail: format!("its format is {other:?}, not {want:?}"),
            });
        }
        None => {
            return Err(FileError::NotTaskscope {
                path: path.into(),
                detail: "JSON without a \"format\" field".into(),
            });
        }
    }
    match envelope.version {
        Some(FILE_VERSION) => Ok(()),
        found => Err(FileError::Version {
            path: path.into(),
            format: want,
            found: found.unwrap_or(0),
            supported: FILE_VERSION,
        }),
    }
}

fn check_schema(path: &str, snapshot: &Snapshot) -> Result<(), FileError> {
    if snapshot.schema_version > SCHEMA_VERSION {
        return Err(FileError::Schema {
            path: path.into(),
            found: snapshot.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn read_snapshot(path: &str, text: &[u8]) -> Result<SavedSnapshot, FileError> {
    let damaged = |e: serde_json::Error| FileError::Damaged {
        path: path.into(),
        detail: e.to_string(),
    };
    let envelope: Envelope = serde_json::from_slice(text).map_err(|e| {
        if e.is_eof() {
            FileError::Damaged {
                path: path.into(),
                detail: format!("it ends early (truncated?): {e}"),
            }
        } else {
            FileError::NotTaskscope {
                path: path.into(),
                detail: format!("bad JSON: {e}"),
            }
        }
    })?;
    check_envelope(path, &envelope, SNAPSHOT_FORMAT)?;
    let saved: SavedSnapshot = serde_json::from_slice(text).map_err(damaged)?;
    check_schema(path, &saved.snapshot)?;
    if let Some(d) = &saved.dump
        && d.dump.schema_version > SCHEMA_VERSION
    {
        return Err(FileError::Schema {
            path: path.into(),
            found: d.dump.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(saved)
}

fn read_recording(
    path: &str,
    reader: impl BufRead,
    limits: RecordingLimits,
) -> Result<Recording, FileError> {
    // `take` bounds what is decompressed (one byte over the cap tells a cut from an end).
    let mut lines = BufReader::new(MultiGzDecoder::new(reader).take(limits.max_bytes + 1));
    let mut line = Vec::new();
    let mut read_line = |line: &mut Vec<u8>| -> Result<bool, std::io::Error> {
        line.clear();
        Ok(lines.read_until(b'\n', line)? > 0)
    };

    let damaged = |detail: String| FileError::Damaged {
        path: path.into(),
        detail,
    };
    match read_line(&mut line) {
        Ok(true) => {}
        Ok(false) => return Err(damaged("the recording is empty".into())),
        Err(e) => return Err(damaged(format!("cannot decompress its header: {e}"))),
    }
    let envelope: Envelope =
        serde_json::from_slice(&line).map_err(|e| FileError::NotTaskscope {
            path: path.into(),
            detail: format!("gzip, but its first line is not a recording header: {e}"),
        })?;
    check_envelope(path, &envelope, RECORDING_FORMAT)?;
    let header: RecordingHeader =
        serde_json::from_slice(&line).map_err(|e| damaged(format!("bad recording header: {e}")))?;
    let mut read = line.len() as u64;

    let mut frames = Vec::new();
    let mut cut_short = None;
    loop {
        if frames.len() >= limits.max_frames {
            if matches!(read_line(&mut line), Ok(true)) {
                cut_short = Some(format!(
                    "only the first {} frames were read (the cap)",
                    limits.max_frames
                ));
            }
            break;
        }
        match read_line(&mut line) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                cut_short = Some(format!(
                    "the file ends early or is damaged after frame {} ({e})",
                    frames.len()
                ));
                break;
            }
        }
        read += line.len() as u64;
        if read > limits.max_bytes {
            cut_short = Some(format!(
                "only the first {} frames were read (the cap of {} bytes)",
                frames.len(),
                limits.max_bytes
            ));
            break;
        }
        if line.last() != Some(&b'\n') {
            cut_short = Some(format!(
                "the file ends in the middle of frame {} (truncated?)",
                frames.len() + 1
            ));
            break;
        }
        match serde_json::from_slice::<RecordedFrame>(&line) {
            Ok(frame) => {
                check_schema(path, &frame.snapshot)?;
                frames.push(frame);
            }
            Err(e) => {
                cut_short = Some(format!("frame {} is damaged: {e}", frames.len() + 1));
                break;
            }
        }
    }
    if frames.is_empty() {
        return Err(damaged(match cut_short {
            Some(why) => format!("no complete frame: {why}"),
            None => "the recording has no frame".into(),
        }));
    }
    Ok(Recording {
        header,
        frames,
        cut_short,
    })
}
