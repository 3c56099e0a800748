//! A task dump as a pprof profile (`profile.proto`, gzipped), like Go's
//! `/debug/pprof/goroutine`: one sample per dump group, valued by its task count, with the
//! group's first stack leaf first and the spawn site as the root frame, so `go tool pprof`
//! and every pprof viewer can show where tasks wait.
//!
//! The messages are declared here with `prost` derives, field numbers as in
//! `github.com/google/pprof/proto/profile.proto`; fields this exporter never sets are kept
//! so decoding a profile from elsewhere loses nothing that matters.

use std::collections::HashMap;
use std::io::Write as _;

use taskscope::model::{Dump, DumpSource, LockRow};

/// `perftools.profiles.Profile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each sample value means.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Mapped binaries.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Locations referenced by samples.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referenced by locations.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string of the profile; index 0 is "".
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Regexp (string index) of frames to drop.
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// Regexp (string index) of frames to keep.
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// When the profile was taken, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long taking it took.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What `period` counts.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Events between samples.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form comments (string indices).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// Index (string index of its type) of the sample type shown by default.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// `perftools.profiles.ValueType`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    /// String index, e.g. "tasks".
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// String index, e.g. "count".
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// `perftools.profiles.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Location ids, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per sample type.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// `perftools.profiles.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// String index of the key.
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String index of the value (or 0).
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value (when `str` is 0).
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// String index of `num`'s unit.
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// `perftools.profiles.Mapping`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    /// Unique nonzero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Start address.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// End address.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// Offset in the file.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// String index of the binary's name.
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// String index of the build id.
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Locations are symbolized.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// Locations have file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// Locations have line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// Locations have inlined frames.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// `perftools.profiles.Location`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// Unique nonzero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Its mapping (0: none).
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// Instruction address (0: unknown).
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Source lines, innermost (inlined) first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Several functions were folded here by the linker.
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// `perftools.profiles.Line`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// Id of the function.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Line number (0: unknown).
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Column number (0: unknown).
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// `perftools.profiles.Function`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    /// Unique nonzero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// String index of the name shown.
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// String index of the raw (mangled) name.
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// String index of the source file.
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function.
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// Name of the root frame standing for a spawn site.
pub fn spawn_function_name(site: &str) -> String {
    format!("spawned at {site}")
}

/// `path:line:col` split into path, line and column; the whole label and zeros when it
/// has no such form (the overflow row).
fn split_site(site: &str) -> (&str, i64, i64) {
    let mut parts = site.rsplitn(3, ':');
    let (col, line, path) = (parts.next(), parts.next(), parts.next());
    match (
        path,
        line.and_then(|l| l.parse().ok()),
        col.and_then(|c| c.parse().ok()),
    ) {
        (Some(path), Some(line), Some(col)) => (path, line, col),
        _ => (site, 0, 0),
    }
}

/// Builds a profile with deduplicated strings, functions and locations.
#[derive(Default)]
struct Builder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64), u64>,
    locations: HashMap<(u64, i64, i64), u64>,
}

impl Builder {
    fn new() -> Self {
        let mut b = Builder::default();
        b.string("");
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn location(&mut self, function: &str, file: &str, line: i64, column: i64) -> u64 {
        let (name, filename) = (self.string(function), self.string(file));
        let next_function = self.profile.function.len() as u64 + 1;
        let function_id = *self
            .functions
            .entry((name, filename))
            .or_insert(next_function);
        if function_id == next_function {
            self.profile.function.push(Function {
                id: function_id,
                name,
                // Left empty on purpose: pprof takes a name that equals its system name
                // for a raw symbol and strips `<...>` from it, which turns
                // `<tokio::sync::oneshot::Receiver<T> as Future>::poll` into `::poll`.
                system_name: 0,
                filename,
                start_line: 0,
            });
        }
        let next_location = self.profile.location.len() as u64 + 1;
        let location_id = *self
            .locations
            .entry((function_id, line, column))
            .or_insert(next_location);
        if location_id == next_location {
            self.profile.location.push(Location {
                id: location_id,
                mapping_id: 1,
                address: 0,
                line: vec![Line {
                    function_id,
                    line,
                    column,
                }],
                is_folded: false,
            });
        }
        location_id
    }
}

/// The dump as a pprof profile.
pub fn profile(dump: &Dump) -> Profile {
    let mut b = Builder::new();
    let tasks = b.string("tasks");
    let count = b.string("count");
    b.profile.sample_type = vec![ValueType {
        r#type: tasks,
        unit: count,
    }];
    b.profile.period_type = Some(ValueType {
        r#type: tasks,
        unit: count,
    });
    b.profile.period = 1;
    b.profile.time_nanos = (dump.taken_at_unix_ms as i64).saturating_mul(1_000_000);
    b.profile.duration_nanos = (dump.took_seconds * 1e9) as i64;
    let binary = b.string("taskscope");
    b.profile.mapping = vec![Mapping {
        id: 1,
        filename: binary,
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        ..Default::default()
    }];
    let source = match dump.source {
        DumpSource::Traced => "traced",
        DumpSource::Registry => "registry only (no await points)",
        DumpSource::Unknown => "unknown source",
    };
    let mut comments = vec![format!(
        "taskscope task dump: {} tasks in {} groups, {source}{}",
        dump.total_tasks,
        dump.groups.len(),
        if dump.complete { "" } else { ", INCOMPLETE" }
    )];
    comments.extend(dump.notes.iter().cloned());
    b.profile.comment = comments.iter().map(|c| b.string(c)).collect();
    let site_key = b.string("site");
    let multi = dump.groups.iter().any(|g| g.stacks.len() > 1);
    if multi {
        // Go's goroutines have one stack; a task under `join!`/`select!` waits at several.
        let note = b.string(
            "tasks waiting on several futures at once (join!, select!) appear once per \
             future: sample totals can exceed the task count",
        );
        b.profile.comment.push(note);
    }
    for g in &dump.groups {
        let (path, line, col) = split_site(&g.site);
        let root = b.location(&spawn_function_name(&g.site), path, line, col);
        let site = b.string(&g.site);
        // One sample per distinct stack of the group (registry-only groups have none: the
        // spawn site alone).
        let no_stack: [Vec<taskscope::model::Frame>; 1] = [Vec::new()];
        let stacks = if g.stacks.is_empty() {
            &no_stack[..]
        } else {
            &g.stacks[..]
        };
        for stack in stacks {
            let mut location_id: Vec<u64> = stack
                .iter()
                .map(|f| b.location(&f.function, &f.file, i64::from(f.line), 0))
                .collect();
            location_id.push(root);
            b.profile.sample.push(Sample {
                location_id,
                value: vec![i64::try_from(g.count).unwrap_or(i64::MAX)],
                label: vec![Label {
                    key: site_key,
                    str: site,
                    ..Default::default()
                }],
            });
        }
    }
    b.profile
}

/// The dump as a gzipped `profile.proto`, as `/debug/pprof/tasks` serves it.
pub fn encode_gzip(dump: &Dump) -> std::io::Result<Vec<u8>> {
    gzip(&profile(dump))
}

fn gzip(profile: &Profile) -> std::io::Result<Vec<u8>> {
    use prost::Message as _;
    let raw = profile.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw)?;
    gz.finish()
}

/// Name of the root frame standing for a lock.
pub fn lock_function_name(lock: &str) -> String {
    format!("lock {lock}")
}

/// Name of the frame standing for the acquire site that held a lock while others waited.
pub fn holder_function_name(site: &str) -> String {
    format!("held at {site}")
}

/// The locks' contention as a pprof profile, like Go's `/debug/pprof/mutex`: two values
/// per sample, `contentions/count` and `delay/nanoseconds`, one sample per (lock, holder
/// acquire site) with the holder's site as the leaf and the lock as the root. Cumulative
/// since the agent started; `-base` an earlier profile for an interval.
pub fn mutex_profile(locks: &[LockRow], taken_at_unix_ms: u64) -> Profile {
    let mut b = Builder::new();
    let contentions = b.string("contentions");
    let count = b.string("count");
    let delay = b.string("delay");
    let nanoseconds = b.string("nanoseconds");
    b.profile.sample_type = vec![
        ValueType {
            r#type: contentions,
            unit: count,
        },
        ValueType {
            r#type: delay,
            unit: nanoseconds,
        },
    ];
    b.profile.default_sample_type = delay;
    b.profile.period_type = Some(ValueType {
        r#type: contentions,
        unit: count,
    });
    b.profile.period = 1;
    b.profile.time_nanos = (taken_at_unix_ms as i64).saturating_mul(1_000_000);
    let binary = b.string("taskscope");
    b.profile.mapping = vec![Mapping {
        id: 1,
        filename: binary,
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        ..Default::default()
    }];
    let comment = b.string(
        "taskscope lock contention: waits of taskscope::sync locks charged to the acquire          site that held the lock meanwhile, since the agent started",
    );
    b.profile.comment = vec![comment];
    let lock_key = b.string("lock");
    for lock in locks {
        let (path, line, col) = split_site(&lock.created_at);
        let root = b.location(&lock_function_name(&lock.lock), path, line, col);
        let lock_label = b.string(&lock.lock);
        for d in &lock.delay_by_holder_site {
            let (hpath, hline, hcol) = split_site(&d.site);
            let leaf = b.location(&holder_function_name(&d.site), hpath, hline, hcol);
            b.profile.sample.push(Sample {
                location_id: vec![leaf, root],
                value: vec![
                    i64::try_from(d.contentions).unwrap_or(i64::MAX),
                    (d.seconds * 1e9) as i64,
                ],
                label: vec![Label {
                    key: lock_key,
                    str: lock_label,
                    ..Default::default()
                }],
            });
        }
    }
    b.profile
}

/// [`mutex_profile`] gzipped, as `/debug/pprof/mutex` serves it.
pub fn encode_mutex_gzip(locks: &[LockRow], taken_at_unix_ms: u64) -> std::io::Result<Vec<u8>> {
    gzip(&mutex_profile(locks, taken_at_unix_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use std::io::Read as _;
    use taskscope::model::{DumpGroup, Frame};

    fn frame(function: &str, file: &str, line: u32) -> Frame {
        Frame {
            function: function.into(),
            file: file.into(),
            line,
        }
    }

    fn fixture() -> Dump {
        let recv = frame("tokio::sync::oneshot::Receiver::poll", "oneshot.rs", 10);
        Dump {
            taken_at_unix_ms: 1_700_000_000_000,
            took_seconds: 0.002,
            source: DumpSource::Traced,
            complete: true,
            total_tasks: 13,
            groups: vec![
                DumpGroup {
                    site: "src/a.rs:12:5".into(),
                    stacks: vec![vec![recv.clone(), frame("app::handler", "src/a.rs", 20)]],
                    count: 10,
                    ..Default::default()
                },
                DumpGroup {
                    site: "src/b.rs:3:9".into(),
                    stacks: vec![vec![recv, frame("app::other", "src/b.rs", 7)]],
                    count: 2,
                    ..Default::default()
                },
                DumpGroup {
                    site: "(overflow)".into(),
                    count: 1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn round_trip() {
        let gz = encode_gzip(&fixture()).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        let p = Profile::decode(&raw[..]).unwrap();
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(p.string_table[0], "");
        let mut sorted = p.string_table.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), p.string_table.len(), "strings are unique");
        assert_eq!(p.sample_type.len(), 1);
        assert_eq!(
            (s(p.sample_type[0].r#type), s(p.sample_type[0].unit)),
            ("tasks", "count")
        );
        let period = p.period_type.as_ref().unwrap();
        assert_eq!((s(period.r#type), s(period.unit)), ("tasks", "count"));
        assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);
        assert_eq!(p.sample.len(), 3);
        assert_eq!(
            p.sample.iter().map(|x| x.value.clone()).collect::<Vec<_>>(),
            [vec![10], vec![2], vec![1]]
        );
        let function_of = |loc: u64| {
            let l = p.location.iter().find(|l| l.id == loc).unwrap();
            let f = p
                .function
                .iter()
                .find(|f| f.id == l.line[0].function_id)
                .unwrap();
            (s(f.name), s(f.filename), l.line[0].line)
        };
        let first = &p.sample[0];
        assert_eq!(first.location_id.len(), 3);
        assert_eq!(
            function_of(first.location_id[0]),
            ("tokio::sync::oneshot::Receiver::poll", "oneshot.rs", 10)
        );
        assert_eq!(
            function_of(first.location_id[1]),
            ("app::handler", "src/a.rs", 20)
        );
        assert_eq!(
            function_of(first.location_id[2]),
            ("spawned at src/a.rs:12:5", "src/a.rs", 12)
        );
        // The shared leaf is one location.
        assert_eq!(p.sample[1].location_id[0], first.location_id[0]);
        assert_eq!(p.location.len(), 6);
        assert_eq!(p.function.len(), 6);
        assert_eq!(
            function_of(p.sample[2].location_id[0]),
            ("spawned at (overflow)", "(overflow)", 0)
        );
        assert_eq!(p.sample[2].location_id.len(), 1);
        let label = &first.label[0];
        assert_eq!((s(label.key), s(label.str)), ("site", "src/a.rs:12:5"));
        assert!(s(p.comment[0]).contains("13 tasks in 3 groups"));
    }

    #[test]
    fn a_group_waiting_on_two_futures_gives_a_sample_per_stack() {
        let mut dump = fixture();
        dump.groups[0].stacks.push(vec![
            frame("tokio::time::Sleep::poll", "sleep.rs", 5),
            frame("app::handler", "src/a.rs", 21),
        ]);
        let p = profile(&dump);
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(p.sample.len(), 4);
        let at_a: Vec<_> = p
            .sample
            .iter()
            .filter(|x| s(x.label[0].str) == "src/a.rs:12:5")
            .collect();
        assert_eq!(at_a.len(), 2);
        assert!(at_a.iter().all(|x| x.value == [10]));
        // Same root (the spawn site), different leaves.
        assert_eq!(at_a[0].location_id.last(), at_a[1].location_id.last());
        assert_ne!(at_a[0].location_id[0], at_a[1].location_id[0]);
        assert!(p.comment.iter().any(|c| s(*c).contains("once per future")));
    }

    #[test]
    fn sites_split() {
        assert_eq!(split_site("a/b.rs:3:14"), ("a/b.rs", 3, 14));
        assert_eq!(split_site("C:x.rs:3:14"), ("C:x.rs", 3, 14));
        assert_eq!(split_site("(overflow)"), ("(overflow)", 0, 0));
        assert_eq!(split_site("x:y:z"), ("x:y:z", 0, 0));
    }
}
