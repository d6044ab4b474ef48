//! A probe for whole-process measurements: `N` hits (or `N` misses) of a memoized
//! `i64 -> i64` on the local disk, in a fresh folder, after one call that stores the entry.
//!
//! ```text
//! cargo build --release -p cachette-bench --example hit_probe
//! valgrind --tool=callgrind target/release/examples/hit_probe hit 0
//! valgrind --tool=callgrind target/release/examples/hit_probe hit 2000
//! ```
//!
//! The instructions of one hit are the difference of the two totals divided by 2,000 (`miss`
//! with 0 and 200 for a miss). Built at two commits, the same probe compares them; timed as a
//! whole process (`hit 200000`, interleaved runs), it gives their time ratio.

use cachette::Memory;

fn square(x: i64) -> i64 {
    x * x
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("hit", String::as_str).to_owned();
    let n: i64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("cachette-probe-{}", std::process::id()));
    let memory = Memory::new(&dir).expect("a memory in the temporary folder");
    let f = memory.cache(square).name("probe::square");
    f.eval(42);
    let mut sum = 0i64;
    if what == "hit" {
        for _ in 0..n {
            sum = sum.wrapping_add(f.eval(std::hint::black_box(42)));
        }
    } else {
        for i in 0..n {
            sum = sum.wrapping_add(f.eval(std::hint::black_box(1000 + i)));
        }
    }
    std::hint::black_box(sum);
    let _ = std::fs::remove_dir_all(&dir);
}
