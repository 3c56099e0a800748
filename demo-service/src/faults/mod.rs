//! Faults the demo can exhibit on purpose, one module each, so that every taskscope feature
//! has something real to diagnose.

pub mod report_leak;
