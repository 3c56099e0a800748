//! goleak for tokio tests (in progress).
