//! `Memory` on the local disk (the files layout: one file per entry), against the raw
//! file-system work it cannot avoid, measured in the same run:
//! `cargo bench -p cachette-bench --bench memory` (or `cargo xtask bench --micro`).
//!
//! - `hit_i64` vs `baseline_open_read_100b`: a cache hit of `f(i64)`;
//! - `hit_i64_memo` vs `baseline_hashmap_get`: a repeated hit from the in-process memo
//!   (`memo_size`, `.memo()`), against a `HashMap` lookup behind a lock;
//! - `miss_tiny` vs `baseline_temp_rename_tiny`: a miss with a tiny output;
//! - `populate_10k` vs `baseline_populate_10k`: 10,000 tiny entries;
//! - `list_10k` vs `baseline_readdir_stat_10k`: the listing `reduce_size` does;
//! - `reduce_size_delete_10k`: deleting all 10,000 entries.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use cachette::{MemorizedFunc, Memory, SizeLimits};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
    // Fixtures live in statics, which are never dropped: remove their files here.
    let _ = std::fs::remove_dir_all(scratch());
}

/// The folder of this run's files, under the system's temporary folder.
fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cachette-bench-memory-{}", std::process::id()))
}

/// A new temporary folder in [`scratch`].
fn tempdir() -> tempfile::TempDir {
    let root = scratch();
    std::fs::create_dir_all(&root).expect("scratch folder");
    tempfile::tempdir_in(root).expect("tempdir")
}

/// The location URL of a store in `dir` on the files layout of the local disk (one file per
/// entry), which these benchmarks measure. The default layout of a folder only the current
/// user may write, as a temporary one, is the index layout: the benchmarks name theirs.
fn files_url(dir: &Path) -> String {
    format!("file://{}?layout=files", dir.display())
}

/// A memory on the files layout in `dir`.
fn files_memory(dir: &Path) -> Memory {
    Memory::from_url(&files_url(dir)).expect("memory")
}

/// The folder of the function named `name` in the store at `cache`
/// (`cachette/<name>-<hash of the name>`).
fn function_folder(cache: &Path, name: &str) -> PathBuf {
    let prefix = format!("{name}-");
    std::fs::read_dir(cache.join("cachette"))
        .expect("the store's functions")
        .map(|e| e.expect("a function").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .expect("the function's folder")
}

const N: i64 = 10_000;

fn square(x: i64) -> i64 {
    x * x
}

type Square = MemorizedFunc<i64, fn(i64) -> i64>;

struct Hot {
    _dir: tempfile::TempDir,
    f: Square,
    raw_file: PathBuf,
    raw_dir: PathBuf,
    entry_bytes: Vec<u8>,
}

static HOT: LazyLock<Hot> = LazyLock::new(|| {
    let dir = tempdir();
    let memory = files_memory(&dir.path().join("cache"));
    let f = memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square");
    f.eval(42);
    // The raw baselines use files of the size of a real entry.
    let folder = function_folder(&dir.path().join("cache"), "bench.square");
    let entry = std::fs::read_dir(&folder)
        .expect("folder")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n.len() == 32))
        .expect("an entry");
    let entry_bytes = std::fs::read(entry).expect("read");
    let raw_file = dir.path().join("raw.bin");
    std::fs::write(&raw_file, [7u8; 100]).expect("write");
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir).expect("mkdir");
    Hot {
        _dir: dir,
        f,
        raw_file,
        raw_dir,
        entry_bytes,
    }
});

/// A hit of `f(i64)`.
#[divan::bench]
fn hit_i64() -> i64 {
    HOT.f.eval(black_box(42))
}

static INDEX: LazyLock<(tempfile::TempDir, Square)> = LazyLock::new(|| {
    let dir = tempdir();
    let url = format!("file://{}?layout=index", dir.path().join("cache").display());
    let memory = Memory::from_url(&url).expect("memory");
    let f = memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square_index");
    for x in 0..1000 {
        f.eval(x);
    }
    (dir, f)
});

/// A hit of `f(i64)` on the index layout (the default), on 1,000 keys in turn, from 1 and from
/// 2 threads at once: hits on several threads take no lock and add to no counter in common
/// (the time is per hit of one thread; 2 threads on 2 cores should take as long as 1).
#[divan::bench(threads = [1, 2], sample_count = 50, sample_size = 2000)]
fn hit_i64_index_threads(bencher: Bencher) {
    thread_local! {
        /// This thread's next key: the threads share nothing but the memory.
        static NEXT: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
    }
    let f = &INDEX.1;
    bencher.bench(|| {
        let x = NEXT.with(|next| {
            let x = next.get();
            next.set((x + 7) % 1000);
            x
        });
        f.eval(black_box(x))
    });
}

static MAPPED: LazyLock<(tempfile::TempDir, Square)> = LazyLock::new(|| {
    let dir = tempdir();
    let memory = Memory::builder()
        .url(files_url(&dir.path().join("cache")))
        .mmap_mode(cachette::MmapMode::ReadOnly)
        .build()
        .expect("memory");
    let f = memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square_mapped");
    f.eval(42);
    (dir, f)
});

/// A hit of `f(i64)` in a memory with `mmap_mode = "r"`: its entry holds no array.
#[divan::bench]
fn hit_i64_mmap_r() -> i64 {
    MAPPED.1.eval(black_box(42))
}

static MEMO: LazyLock<(tempfile::TempDir, Square)> = LazyLock::new(|| {
    let dir = tempdir();
    let memory = Memory::builder()
        .url(files_url(&dir.path().join("cache")))
        .memo_size("16M")
        .build()
        .expect("memory");
    let f = memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square_memo")
        .memo();
    f.eval(42);
    (dir, f)
});

/// A repeated hit of `f(i64)` from the in-process memo.
#[divan::bench]
fn hit_i64_memo() -> i64 {
    MEMO.1.eval(black_box(42))
}

static MAP: LazyLock<std::sync::RwLock<std::collections::HashMap<i64, i64>>> =
    LazyLock::new(|| std::sync::RwLock::new([(42, 42 * 42)].into_iter().collect()));

/// Baseline: a lookup in a `HashMap` behind a read lock, the least an in-process memo does.
#[divan::bench]
fn baseline_hashmap_get() -> Option<i64> {
    MAP.read().expect("lock").get(&black_box(42)).copied()
}

/// Baseline: `File::open` and read of a 100-byte file.
#[divan::bench]
fn baseline_open_read_100b() -> Vec<u8> {
    let mut file = std::fs::File::open(black_box(&HOT.raw_file)).expect("open");
    let mut buf = Vec::with_capacity(128);
    file.read_to_end(&mut buf).expect("read");
    buf
}

static NEXT: AtomicI64 = AtomicI64::new(1_000_000);

/// A miss of `f(i64)` with a tiny output: hash, look up, run, encode, write.
#[divan::bench]
fn miss_tiny() -> i64 {
    HOT.f.eval(NEXT.fetch_add(1, Ordering::Relaxed))
}

static RAW: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a temporary file in `dir` and renames it to `name`.
fn temp_rename(dir: &Path, name: &str, bytes: &[u8]) {
    let n = RAW.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".tmp-{n}"));
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .expect("create");
    file.write_all(bytes).expect("write");
    drop(file);
    std::fs::rename(&temp, dir.join(name)).expect("rename");
}

/// Baseline: one temp-then-rename write of an entry's bytes.
#[divan::bench]
fn baseline_temp_rename_tiny() {
    let n = RAW.fetch_add(1, Ordering::Relaxed);
    temp_rename(&HOT.raw_dir, &format!("{n:032x}"), &HOT.entry_bytes);
}

fn fresh_memory() -> (tempfile::TempDir, Memory) {
    let dir = tempdir();
    let memory = files_memory(&dir.path().join("cache"));
    (dir, memory)
}

fn populate(memory: &Memory) {
    let f = memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::populate");
    for x in 0..N {
        f.eval(x);
    }
}

/// 10,000 misses with tiny outputs.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn populate_10k(bencher: Bencher) {
    bencher
        .with_inputs(fresh_memory)
        .bench_local_values(|(dir, memory)| {
            populate(&memory);
            (dir, memory)
        });
}

/// Baseline: 10,000 temp-then-rename writes of an entry's bytes into one folder.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn baseline_populate_10k(bencher: Bencher) {
    let bytes = HOT.entry_bytes.clone();
    bencher.with_inputs(tempdir).bench_local_values(|dir| {
        for x in 0..N {
            temp_rename(dir.path(), &format!("{x:032x}"), &bytes);
        }
        dir
    });
}

static POPULATED: LazyLock<(tempfile::TempDir, Memory)> = LazyLock::new(|| {
    let (dir, memory) = fresh_memory();
    populate(&memory);
    (dir, memory)
});

/// The listing of `reduce_size` over 10,000 entries (limits that delete nothing).
#[divan::bench(sample_count = 10, sample_size = 1)]
fn list_10k() -> cachette::ReduceReport {
    let limits = SizeLimits::default().items_limit(usize::MAX);
    POPULATED.1.reduce_size(&limits).expect("reduce_size")
}

/// Baseline: `read_dir` plus a `stat` of every file of the same folder.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn baseline_readdir_stat_10k() -> u64 {
    let folder = function_folder(&POPULATED.0.path().join("cache"), "bench.populate");
    let mut total = 0;
    for entry in std::fs::read_dir(folder).expect("read_dir") {
        total += entry.expect("entry").metadata().expect("stat").len();
    }
    total
}

/// `reduce_size` deleting all 10,000 entries.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn reduce_size_delete_10k(bencher: Bencher) {
    bencher
        .with_inputs(|| {
            let (dir, memory) = fresh_memory();
            populate(&memory);
            (dir, memory)
        })
        .bench_local_values(|(dir, memory)| {
            let report = memory
                .reduce_size(&SizeLimits::default().items_limit(0))
                .expect("reduce_size");
            assert_eq!(report.deleted_items, N as usize);
            (dir, memory)
        });
}
