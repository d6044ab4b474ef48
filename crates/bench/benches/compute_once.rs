//! What compute-once costs: `cargo bench -p cachette-bench --bench compute_once`.
//!
//! - `hit_compute_once_on` vs `hit_compute_once_off`: a hit of `f(i64)` on the local disk (the
//!   files layout), with compute-once on (the default) and off; compute-once acts only after a
//!   miss, so the two should not differ (see `main` for the one thing that does: a second
//!   thread);
//! - `miss_compute_once_on` vs `miss_compute_once_off`: a miss with a tiny output, where
//!   compute-once takes, renews and deletes a claim file.

use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};

use cachette::{MemorizedFunc, Memory};
use divan::black_box;

fn main() {
    // Both memories are made (and their first result stored) before measuring: the first claim
    // starts the process's lease thread, and a process with a second thread allocates a little
    // more slowly (glibc's allocator then takes its locks). Measured in the same state, the two
    // benchmarks compare the hit paths alone.
    LazyLock::force(&ON);
    LazyLock::force(&OFF);
    divan::main();
}

fn square(x: i64) -> i64 {
    x * x
}

type Square = MemorizedFunc<i64, fn(i64) -> i64>;

/// The location URL of a store in `dir` on the files layout of the local disk (one file per
/// entry), which these benchmarks measure. The default layout of a folder only the current
/// user may write, as a temporary one, is the index layout: the benchmarks name theirs.
fn files_url(dir: &Path) -> String {
    format!("file://{}?layout=files", dir.display())
}

struct Hot {
    _dir: tempfile::TempDir,
    f: Square,
}

fn hot(compute_once: bool) -> Hot {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = Memory::builder()
        .url(files_url(&dir.path().join("cache")))
        .compute_once(compute_once)
        .build()
        .expect("memory");
    let f = memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square");
    assert_eq!(f.computes_once(), compute_once);
    f.eval(42);
    Hot { _dir: dir, f }
}

static ON: LazyLock<Hot> = LazyLock::new(|| hot(true));
static OFF: LazyLock<Hot> = LazyLock::new(|| hot(false));

/// A hit of `f(i64)`, compute-once on.
#[divan::bench(sample_count = 2000, sample_size = 10)]
fn hit_compute_once_on() -> i64 {
    ON.f.eval(black_box(42))
}

/// A hit of `f(i64)`, compute-once off.
#[divan::bench(sample_count = 2000, sample_size = 10)]
fn hit_compute_once_off() -> i64 {
    OFF.f.eval(black_box(42))
}

static NEXT: AtomicI64 = AtomicI64::new(1_000_000);

/// A miss of `f(i64)` with a tiny output, compute-once on.
#[divan::bench(sample_count = 500)]
fn miss_compute_once_on() -> i64 {
    ON.f.eval(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A miss of `f(i64)` with a tiny output, compute-once off.
#[divan::bench(sample_count = 500)]
fn miss_compute_once_off() -> i64 {
    OFF.f.eval(NEXT.fetch_add(1, Ordering::Relaxed))
}
