//! Writes `sites.rs`: a function with 10 000 distinct spawn call sites (100 lines of 100
//! calls), so the read-side benchmark can give the agent 1k or 10k real sites. A site is a
//! `file:line:column` (the `Location` of the spawn), so each call needs its own column.

use std::fmt::Write;

/// Distinct call sites generated.
const SITES: usize = 10_000;
const PER_LINE: usize = 100;

fn main() {
    let mut code = String::from(
        "/// Spawns one idle task from each of the first `n` of the generated call sites\n\
         /// (at most 10 000), each awaiting a oneshot whose sender goes into `keep`.\n\
         #[rustfmt::skip]\n\
         pub fn spawn_from_sites(n: usize, keep: &mut Vec<tokio::sync::oneshot::Sender<()>>) {\n\
         let l = &mut n.min(SITE_COUNT);\n",
    );
    for line in 0..SITES / PER_LINE {
        let _ = line;
        for _ in 0..PER_LINE {
            code.push_str("s(keep,l);");
        }
        code.push('\n');
    }
    code.push_str("}\n");
    let _ = writeln!(
        code,
        "/// How many call sites [`spawn_from_sites`] has.\npub const SITE_COUNT: usize = {SITES};"
    );
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("sites.rs");
    std::fs::write(out, code).expect("write sites.rs");
    println!("cargo::rerun-if-changed=build.rs");
}
