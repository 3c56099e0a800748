//! The demo service, built inside the tests package so that `cargo test` always has a fresh
//! binary at `CARGO_BIN_EXE_taskscope-demo-e2e`.
fn main() {
    taskscope_demo::main()
}
