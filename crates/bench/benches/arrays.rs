//! Large arrays on the local disk (the files layout), against the raw work they cannot avoid,
//! measured in the same run: `cargo bench -p cachette-bench --bench arrays` (or
//! `cargo xtask bench --micro`).
//!
//! - `load_1gib_mmap_r` vs `baseline_map_read_one`: a hit whose output is a 1 GiB `f64` array,
//!   loaded with read-only mmap, then one element read; the baseline maps the same file with
//!   memmap2 and reads the same element;
//! - `load_1gib_no_mmap` vs `baseline_fs_read_1gib`: the same hit without mmap, against
//!   `std::fs::read` of the entry file;
//! - `persist_1gib` vs `baseline_fs_write_1gib`: a miss that computes (a clone, so nothing) and
//!   stores a 1 GiB array output in a new entry, against `std::fs::write` of 1 GiB to a new file;
//!   before each run (untimed) both remove what the previous run wrote, so that neither writes
//!   while the last gigabyte is still waiting in the page cache;
//! - `hit_100mb_vec_arg`, `hit_100mb_array_arg` vs `baseline_xxh3_100mb`: a hit whose argument
//!   is a 100 MB `f64` vector (or `Array`), against xxh3-128 over the same 100 MB;
//! - `hit_100mb_ndarray_arg`: the same with an `ndarray::Array2<f64>` argument.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use cachette::{Array, MemorizedFunc, Memory, MmapMode};
use divan::{Bencher, black_box};
use memmap2::Mmap;

fn main() {
    divan::main();
    // Fixtures live in statics, which are never dropped: remove their files here.
    let _ = std::fs::remove_dir_all(scratch());
}

/// The folder of this run's files, under the system's temporary folder.
fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cachette-bench-arrays-{}", std::process::id()))
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

const GIB_ELEMS: usize = 1 << 27; // 2^27 f64 = 1 GiB
const PROBE: usize = 98_765_432;
const ARG_ELEMS: usize = 100_000_000 / 8;

type Big = MemorizedFunc<Array<f64>, Box<dyn Fn(u64) -> Array<f64> + Send + Sync>>;

struct Fixture {
    dir: tempfile::TempDir,
    mapped: Big,
    checked: Big,
    unmapped: Big,
    entry: PathBuf,
    raw_bytes: Vec<u8>,
}

fn big(memory: &Memory, array: Array<f64>) -> Big {
    memory
        .cache_capturing(
            Box::new(move |_: u64| array.clone()) as Box<dyn Fn(u64) -> Array<f64> + Send + Sync>
        )
        .name("bench::big")
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempdir();
    let array = Array::from((0..GIB_ELEMS).map(|i| i as f64).collect::<Vec<_>>());
    let cache = dir.path().join("cache");
    // A store nobody else writes to: maps skip the arrays' checksums (`verify_maps(false)`),
    // the constant-time load; `checked` keeps the default, which reads every page once.
    let mapped_memory = Memory::builder()
        .url(files_url(&cache))
        .mmap_mode(MmapMode::ReadOnly)
        .verify_maps(false)
        .build()
        .expect("memory");
    let mapped = big(&mapped_memory, array.clone());
    mapped.eval(1);
    let checked_memory = Memory::builder()
        .url(files_url(&cache))
        .mmap_mode(MmapMode::ReadOnly)
        .build()
        .expect("memory");
    let checked = big(&checked_memory, array.clone());
    let unmapped = big(&files_memory(&cache), array);
    let folder = cachette::FuncId::new("bench::big").folder().to_owned();
    let entry = std::fs::read_dir(cache.join("cachette").join(folder))
        .expect("folder")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n.len() == 32))
        .expect("an entry");
    let raw_bytes = vec![1u8; GIB_ELEMS * 8];
    Fixture {
        dir,
        mapped,
        checked,
        unmapped,
        entry,
        raw_bytes,
    }
});

/// A hit of a 1 GiB array output with read-only mmap, then one element read.
#[divan::bench(sample_count = 200)]
fn load_1gib_mmap_r() -> f64 {
    let a = FIXTURE.mapped.eval(black_box(1));
    a[black_box(PROBE)]
}

/// The same hit in a store others may write to (the default): the arrays' block checksums are
/// checked, which reads every page of the map once.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn load_1gib_mmap_r_checked() -> f64 {
    let a = FIXTURE.checked.eval(black_box(1));
    a[black_box(PROBE)]
}

/// Baseline: open the entry file, map it with memmap2, read one element.
#[divan::bench(sample_count = 200)]
fn baseline_map_read_one() -> u8 {
    let file = std::fs::File::open(black_box(&FIXTURE.entry)).expect("open");
    // SAFETY: the benchmark's own file, not modified while mapped.
    let map = unsafe { Mmap::map(&file) }.expect("map");
    map[black_box(PROBE * 8)]
}

/// A hit of a 1 GiB array output without mmap (read whole and checked).
#[divan::bench(sample_count = 10, sample_size = 1)]
fn load_1gib_no_mmap() -> f64 {
    let a = FIXTURE.unmapped.eval(black_box(1));
    a[black_box(PROBE)]
}

/// Baseline: `std::fs::read` of the entry file.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn baseline_fs_read_1gib() -> usize {
    std::fs::read(black_box(&FIXTURE.entry))
        .expect("read")
        .len()
}

/// A miss: computing (nothing: a clone) and storing a 1 GiB array output in a new entry.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn persist_1gib(bencher: Bencher<'_, '_>) {
    let (memory, func) = &*PERSIST;
    bencher
        .with_inputs(|| memory.clear().expect("clear"))
        .bench_local_values(|()| func.call(black_box(1)).0.len());
}

/// Its own cache, emptied before each run of `persist_1gib`.
static PERSIST: LazyLock<(Memory, Big)> = LazyLock::new(|| {
    let array = Array::from((0..GIB_ELEMS).map(|i| i as f64).collect::<Vec<_>>());
    let memory = files_memory(&FIXTURE.dir.path().join("persist"));
    let func = big(&memory, array);
    (memory, func)
});

/// Baseline: `std::fs::write` of 1 GiB to a new file.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn baseline_fs_write_1gib(bencher: Bencher<'_, '_>) {
    let path = FIXTURE.dir.path().join("raw-write.bin");
    bencher
        .with_inputs(|| {
            let _ = std::fs::remove_file(&path);
        })
        .bench_local_values(|()| {
            std::fs::write(&path, black_box(&FIXTURE.raw_bytes)).expect("write")
        });
}

struct Args {
    _dir: tempfile::TempDir,
    vec_arg: Vec<f64>,
    array_arg: Array<f64>,
    by_vec: MemorizedFunc<f64, fn(&Vec<f64>) -> f64>,
    by_array: MemorizedFunc<f64, fn(&Array<f64>) -> f64>,
}

#[allow(clippy::ptr_arg)] // A memoized function of a `Vec` argument, as users write them.
fn first_of_vec(x: &Vec<f64>) -> f64 {
    x[0]
}

fn first_of_array(x: &Array<f64>) -> f64 {
    x[0]
}

static ARGS: LazyLock<Args> = LazyLock::new(|| {
    let dir = tempdir();
    let memory = files_memory(dir.path());
    let vec_arg: Vec<f64> = (0..ARG_ELEMS).map(|i| i as f64 * 0.5).collect();
    let array_arg = Array::from(vec_arg.clone());
    let by_vec = memory
        .cache_capturing(first_of_vec as fn(&Vec<f64>) -> f64)
        .name("bench::first_of_vec");
    let by_array = memory
        .cache_capturing(first_of_array as fn(&Array<f64>) -> f64)
        .name("bench::first_of_array");
    by_vec.eval(&vec_arg);
    by_array.eval(&array_arg);
    Args {
        _dir: dir,
        vec_arg,
        array_arg,
        by_vec,
        by_array,
    }
});

/// A hit whose argument is a 100 MB `Vec<f64>`.
#[divan::bench(sample_count = 40, sample_size = 1)]
fn hit_100mb_vec_arg() -> f64 {
    ARGS.by_vec.eval(black_box(&ARGS.vec_arg))
}

/// A hit whose argument is a 100 MB `Array<f64>`.
#[divan::bench(sample_count = 40, sample_size = 1)]
fn hit_100mb_array_arg() -> f64 {
    ARGS.by_array.eval(black_box(&ARGS.array_arg))
}

/// A hit whose argument is a 100 MB `ndarray::Array2<f64>` (12 500 × 1 000).
#[divan::bench(sample_count = 40, sample_size = 1)]
fn hit_100mb_ndarray_arg() -> f64 {
    NDARRAY.by_ndarray.eval(black_box(&NDARRAY.arg))
}

struct NdArgs {
    _dir: tempfile::TempDir,
    arg: cachette::ndarray::Array2<f64>,
    by_ndarray: MemorizedFunc<f64, fn(&cachette::ndarray::Array2<f64>) -> f64>,
}

fn first_of_ndarray(x: &cachette::ndarray::Array2<f64>) -> f64 {
    x[[0, 0]]
}

static NDARRAY: LazyLock<NdArgs> = LazyLock::new(|| {
    let dir = tempdir();
    let memory = files_memory(dir.path());
    let arg =
        cachette::ndarray::Array2::from_shape_vec((ARG_ELEMS / 1000, 1000), ARGS.vec_arg.clone())
            .expect("shape");
    let by_ndarray = memory
        .cache_capturing(first_of_ndarray as fn(&cachette::ndarray::Array2<f64>) -> f64)
        .name("bench::first_of_ndarray");
    by_ndarray.eval(&arg);
    NdArgs {
        _dir: dir,
        arg,
        by_ndarray,
    }
});

/// Baseline: xxh3-128 over the same 100 MB.
#[divan::bench(sample_count = 40, sample_size = 1)]
fn baseline_xxh3_100mb() -> u128 {
    let v = &ARGS.vec_arg;
    // SAFETY: f64s have no padding; the bytes borrow `v`.
    let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 8) };
    xxhash_rust::xxh3::xxh3_128(black_box(bytes))
}
