//! A probe for whole-process measurements: `N` operations of one kind on a small entry (a
//! Cachette hit or miss of a memoized `i64 -> i64`, the same through `cached`'s redb store,
//! or one of the floors), in a fresh folder, after a set-up and warm-up that do not depend on
//! `N`. It is the probe the side-by-side harness runs under callgrind
//! (`benches/compare/probe.rs`, included here), built as an example.
//!
//! ```text
//! cargo build --release -p cachette-bench --example probe
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/probe hit 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/probe hit 2000
//! ```
//!
//! The instructions of one hit are the difference of the two totals (callgrind's
//! `Collected`) divided by 2,000 (`miss` with 0 and 200 for a miss). The operations: `hit`,
//! `hit-folders`, `miss` and `memo-hit` (the files layout), `index-hit` and `index-miss` (the index layout),
//! `cached-hit`, `cached-miss`, `floor-open-read`, `floor-pread`, `floor-lmdb`, `floor-redb`,
//! `floor-temp-rename`; an optional third argument is the folder to work in
//! (default: the system's temporary folder). Built at two commits, the same probe compares
//! them; timed as a whole process (`hit 200000`, interleaved runs), it gives their time ratio.

#[path = "../benches/compare/probe.rs"]
mod probe;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    probe::main_with(&args)
}
