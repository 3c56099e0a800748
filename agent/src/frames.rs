//! Turning tokio's raw backtraces into the few frames a reader needs: where a task waits.
//!
//! A backtrace from a task dump runs from the leaf future tokio traced (innermost) out to
//! the task's root. It starts inside tokio's tracing machinery and, between the user's
//! frames, passes through `core`'s and tokio's plumbing. What is kept, innermost first:
//! the first tokio frame outside the runtime's internals (the leaf the task waits on,
//! e.g. `tokio::sync::oneshot::Receiver<T>::poll`), then every frame outside tokio, `core`,
//! `std` and `alloc` (the user's code and libraries such as hyper), up to the task root.

use tokio::runtime::dump::Backtrace;

use crate::model::Frame;
use crate::site::display_path;

/// The frames of one backtrace worth showing, innermost first.
pub(crate) fn clean(backtrace: &Backtrace) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::new();
    // The innermost tokio run's latest (outermost so far) frame, until user code shows.
    let mut leaf: Option<Frame> = None;
    for frame in backtrace.frames() {
        for symbol in frame.symbols() {
            let Some(name) = symbol.name_demangled() else {
                continue;
            };
            let name = strip_hash(name);
            if is_task_root(&name) {
                out.extend(leaf.take());
                return out;
            }
            if is_machinery(&name) || is_std(&name) {
                continue;
            }
            let frame = Frame {
                file: symbol
                    .filename()
                    .map(|p| display_path(&p.to_string_lossy()))
                    .unwrap_or_default(),
                line: symbol.lineno().unwrap_or(0),
                function: name,
            };
            if is_tokio(&frame.function) {
                if out.is_empty() {
                    leaf = Some(frame);
                }
                // Tokio frames between user frames are plumbing: skipped.
                continue;
            }
            out.extend(leaf.take());
            // Inlined frames can repeat one another; keep one.
            if out.last() != Some(&frame) {
                out.push(frame);
            }
        }
    }
    out.extend(leaf);
    out
}

/// `foo::bar::h0123456789abcdef` → `foo::bar`.
fn strip_hash(name: &str) -> String {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head.to_string()
        }
        _ => name.to_string(),
    }
}

/// The frame where tokio enters the task's future: everything beyond is the scheduler.
fn is_task_root(name: &str) -> bool {
    name.contains("tokio::runtime::task::trace::Root")
        || name.contains("tokio::runtime::task::core::Core")
        || name.contains("tokio::runtime::task::harness")
}

/// Frames of the tracing itself.
fn is_machinery(name: &str) -> bool {
    name.starts_with("backtrace::")
        || name.contains("tokio::runtime::task::trace")
        || name.contains("tokio::runtime::dump")
        || name.contains("tokio::runtime::context")
        || name.contains("tokio::runtime::coop")
        || name.contains("tokio::task::coop")
}

fn is_tokio(name: &str) -> bool {
    name.starts_with("tokio::") || name.starts_with("<tokio::")
}

fn is_std(name: &str) -> bool {
    [
        "core::", "<core::", "std::", "<std::", "alloc::", "<alloc::",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stripped() {
        assert_eq!(strip_hash("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(strip_hash("a::hash"), "a::hash");
    }
}
