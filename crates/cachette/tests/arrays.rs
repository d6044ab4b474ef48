//! Arrays in outputs: raw storage, every mmap mode, corruption, compression, remote buffers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::plugin::InMemoryBackend;
use cachette::{Array, Element, Memory, MemoryBuilder, MmapMode, Storage};
use common::{capture, lines, warnings};
use serde::{Deserialize, Serialize};

mod common;

/// The entry files under a cache folder (one per stored call).
fn entry_files(root: &Path) -> Vec<PathBuf> {
    common::files_named(root, |name| {
        name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn the_entry(root: &Path) -> PathBuf {
    let files = entry_files(root);
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

fn fs_memory(dir: &Path, mode: MmapMode) -> Memory {
    Memory::builder().path(dir).mmap_mode(mode).build().unwrap()
}

fn square(x: &Array<f64>) -> Array<f64> {
    let data = x.iter().map(|v| v * v).collect();
    Array::from_vec(data, x.shape().to_vec()).unwrap()
}

fn ramp(n: usize) -> Array<f64> {
    Array::from((0..n).map(|i| i as f64).collect::<Vec<_>>())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Frame {
    name: String,
    weights: Array<f32>,
    pixels: Array<u8>,
    layers: Vec<Array<i64>>,
    pair: (Array<u16>, Array<i8>),
    extra: (Array<u32>, Array<i32>, Array<u64>, Array<i16>),
}

fn frame(seed: u8) -> Frame {
    let s = i64::from(seed);
    Frame {
        name: format!("frame {seed}"),
        weights: Array::from_vec((0..24).map(|i| i as f32 * 0.5).collect(), [2, 3, 4]).unwrap(),
        pixels: Array::from_vec((0..=255u8).map(|b| b ^ seed).collect(), [16, 16]).unwrap(),
        layers: vec![
            Array::from(vec![s, -s, i64::MAX, i64::MIN]),
            Array::from_vec(Vec::new(), [0, 3]).unwrap(),
            Array::from_vec(vec![7; 9], [3, 3]).unwrap(),
        ],
        pair: (
            Array::from(vec![u16::MAX, 1, 2]),
            Array::from_vec(vec![-1i8, 2, -3, 4], [2, 2]).unwrap(),
        ),
        extra: (
            Array::from(vec![u32::MAX, 0]),
            Array::from(vec![i32::MIN]),
            Array::from(vec![u64::MAX]),
            Array::from_vec(vec![-5i16; 6], [1, 2, 3]).unwrap(),
        ),
    }
}

fn all_arrays_storage(f: &Frame) -> Vec<Storage> {
    let mut out = vec![f.weights.storage(), f.pixels.storage()];
    out.extend(
        f.layers
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| a.storage()),
    );
    out.extend([f.pair.0.storage(), f.pair.1.storage()]);
    out.extend([
        f.extra.0.storage(),
        f.extra.1.storage(),
        f.extra.2.storage(),
        f.extra.3.storage(),
    ]);
    out
}

#[test]
fn every_element_type_and_shape_round_trips_nested() {
    for mode in [
        MmapMode::None,
        MmapMode::ReadOnly,
        MmapMode::CopyOnWrite,
        MmapMode::ReadWrite,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let memory = fs_memory(dir.path(), mode);
        let calls = AtomicUsize::new(0);
        let f = memory
            .cache_capturing(|seed: u8| {
                calls.fetch_add(1, Ordering::SeqCst);
                frame(seed)
            })
            .name("frame");
        let first = f.eval(3);
        let again = f.eval(3);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{mode}");
        assert_eq!(first, frame(3), "{mode}");
        assert_eq!(again, frame(3), "{mode}");
        let expected = match mode {
            MmapMode::None => Storage::Buffer,
            MmapMode::ReadOnly => Storage::MappedReadOnly,
            MmapMode::CopyOnWrite => Storage::MappedCopyOnWrite,
            MmapMode::ReadWrite => Storage::MappedReadWrite,
        };
        for storage in all_arrays_storage(&again) {
            assert_eq!(storage, expected, "{mode}");
        }
        // With a map, the miss gives the same kind of arrays as the hits.
        let miss_expected = if mode.maps() {
            expected
        } else {
            Storage::Owned
        };
        assert_eq!(first.weights.storage(), miss_expected, "{mode}");
    }
}

#[test]
fn mapped_loads_count_in_the_stats() {
    let dir = tempfile::tempdir().unwrap();
    let memory = fs_memory(dir.path(), MmapMode::ReadOnly);
    let f = memory.cache(square).name("square");
    let x = ramp(1000);
    f.eval(&x);
    let before = memory.stats().unwrap().store;
    assert!(f.eval(&x).is_mapped());
    let after = memory.stats().unwrap().store;
    let size = std::fs::metadata(the_entry(dir.path())).unwrap().len();
    assert_eq!(after.hits, before.hits + 1, "{after}");
    assert_eq!(after.misses, before.misses, "{after}");
    assert_eq!(after.bytes_read, before.bytes_read + size, "{after}");
    assert_eq!(after.read_latency.count, before.read_latency.count + 1);
}

#[test]
fn a_remote_hit_mapped_from_its_local_copy_counts_once() {
    let local = tempfile::tempdir().unwrap();
    let remote = format!("memory://arrays-tier-stats-{}", std::process::id());
    let tiered = |dir: &Path| {
        Memory::builder()
            .url(&remote)
            .local_tier(dir.to_str().unwrap())
            .mmap_mode(MmapMode::ReadOnly)
            .build()
            .unwrap()
    };
    let x = ramp(1000);
    let writer = tiered(&local.path().join("writer"));
    writer.cache(square).name("square").eval(&x);
    // Another machine: its local tier is empty, so the entry comes from the remote store,
    // is copied down, and the copy is mapped.
    let reader = tiered(&local.path().join("reader"));
    assert!(reader.cache(square).name("square").eval(&x).is_mapped());
    let s = reader.stats().unwrap();
    // Two reads: the function's code identity and the entry, each counted once.
    assert_eq!((s.store.hits, s.store.misses), (2, 0), "{s}");
    assert_eq!(s.tiers.unwrap().remote_hits, 2, "{s}");
}

#[test]
fn read_only_views_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let memory = fs_memory(dir.path(), MmapMode::ReadOnly);
    let f = memory.cache(square).name("square");
    let x = ramp(1000);
    let mut y = f.eval(&x);
    assert!(y.is_mapped());
    let before = std::fs::read(the_entry(dir.path())).unwrap();
    assert!(y.get_mut().is_none(), "a read-only view offers no writes");
    y.make_mut()[0] = 42.0;
    assert_eq!(y.storage(), Storage::Owned, "make_mut copied first");
    assert_eq!(y[0], 42.0);
    assert_eq!(std::fs::read(the_entry(dir.path())).unwrap(), before);
    assert_eq!(f.eval(&x)[0], 0.0);
}

#[test]
fn copy_on_write_leaves_the_cache_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let memory = fs_memory(dir.path(), MmapMode::CopyOnWrite);
    let f = memory.cache(square).name("square");
    let x = ramp(100_000);
    let mut y = f.eval(&x);
    assert_eq!(y.storage(), Storage::MappedCopyOnWrite);
    let before = std::fs::read(the_entry(dir.path())).unwrap();
    let view = y.get_mut().expect("copy-on-write maps are writable");
    view[1] = -1.0;
    view[99_999] = -2.0;
    y.flush().unwrap();
    assert_eq!((y[1], y[99_999]), (-1.0, -2.0));
    assert_eq!(std::fs::read(the_entry(dir.path())).unwrap(), before);
    let z = f.eval(&x);
    assert_eq!(
        (z[1], z[99_999]),
        (1.0, 99_998.0 * 99_998.0 + 2.0 * 99_998.0 + 1.0)
    );
}

#[test]
fn read_write_reaches_the_cache_file() {
    let dir = tempfile::tempdir().unwrap();
    let memory = fs_memory(dir.path(), MmapMode::ReadWrite);
    let f = memory.cache(square).name("square");
    let x = ramp(5000);
    let mut y = f.eval(&x);
    assert_eq!(y.storage(), Storage::MappedReadWrite);
    let before = std::fs::read(the_entry(dir.path())).unwrap();
    y.get_mut().expect("read-write maps are writable")[7] = 1234.5;
    y.flush().unwrap();
    drop(y);
    let after = std::fs::read(the_entry(dir.path())).unwrap();
    assert_ne!(after, before, "the write reached the file");
    // Mapped loads that skip the arrays' checksums see the change (this is the documented
    // corruption)...
    let unchecked = Memory::builder()
        .path(dir.path())
        .mmap_mode(MmapMode::ReadOnly)
        .verify_maps(false)
        .build()
        .unwrap();
    assert_eq!(unchecked.cache(square).name("square").eval(&x)[7], 1234.5);
    // ...and a check (a mapped load by default, or a full read) rejects the entry and computes
    // again.
    let (checked, reports) = capture(Memory::builder().path(dir.path()));
    let g = checked.cache(square).name("square");
    assert_eq!(g.eval(&x)[7], 49.0);
    assert!(
        warnings(&reports).iter().any(|w| w.contains("checksum")),
        "{:?}",
        warnings(&reports)
    );
}

#[test]
fn a_corrupted_array_is_detected_and_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, reports) = capture(Memory::builder().path(dir.path()));
    let calls = AtomicUsize::new(0);
    let f = memory
        .cache_capturing(|x: Array<f64>| {
            calls.fetch_add(1, Ordering::SeqCst);
            square(&x)
        })
        .name("square");
    let x = ramp(10_000);
    f.eval(x.clone());
    let path = the_entry(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 1000; // inside the array's numbers
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let y = f.eval(x.clone());
    assert_eq!(y, square(&x), "recomputed, not the damaged numbers");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let w = warnings(&reports);
    assert!(
        w.iter().any(|w| w.contains("array checksum mismatch")),
        "{w:?}"
    );
    assert_eq!(f.eval(x), square(&ramp(10_000)));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the new entry is used");
}

#[test]
fn a_damaged_head_is_detected_in_mapped_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, reports) = capture(
        Memory::builder()
            .path(dir.path())
            .mmap_mode(MmapMode::ReadOnly),
    );
    let calls = AtomicUsize::new(0);
    let f = memory
        .cache_capturing(|x: Array<f64>| {
            calls.fetch_add(1, Ordering::SeqCst);
            square(&x)
        })
        .name("square");
    f.eval(ramp(100));
    let path = the_entry(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let prefix_and_metadata = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
    bytes[prefix_and_metadata + 30] ^= 1; // in the structure, before the numbers
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(f.eval(ramp(100)), square(&ramp(100)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(!warnings(&reports).is_empty());
}

#[test]
fn compression_with_mmap_warns_and_loads_into_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, reports) = capture(
        Memory::builder()
            .path(dir.path())
            .compress(3)
            .mmap_mode(MmapMode::ReadOnly),
    );
    let w = warnings(&reports);
    assert!(
        w.iter().any(|w| w.contains("cannot be memory-mapped")),
        "{w:?}"
    );
    let f = memory.cache(square).name("square");
    let x = Array::from(vec![1.5f64; 200_000]);
    let first = f.eval(&x);
    let hit = f.eval(&x);
    assert_eq!(first, hit);
    assert!(!hit.is_mapped());
    assert_eq!(hit.storage(), Storage::Buffer);
    let size = std::fs::metadata(the_entry(dir.path())).unwrap().len();
    assert!(size < 200_000 * 8 / 10, "compressed to {size} bytes");
}

#[test]
fn compressed_outputs_without_arrays_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    // The files layout, whose entry file tells the stored size.
    let memory = Memory::builder()
        .url(format!("file://{}?layout=files", dir.path().display()))
        .compress(19)
        .build()
        .unwrap();
    assert_eq!(memory.compression(), Some(19));
    let f = memory.cache(|n: usize| "la".repeat(n)).name("text");
    assert_eq!(f.eval(10_000), "la".repeat(10_000));
    assert_eq!(f.eval(10_000), "la".repeat(10_000));
    let size = std::fs::metadata(the_entry(dir.path())).unwrap().len();
    assert!(size < 1_000, "compressed to {size} bytes");
}

#[test]
fn function_override_and_memorized_result_use_the_modes() {
    let dir = tempfile::tempdir().unwrap();
    let memory = fs_memory(dir.path(), MmapMode::None);
    let f = memory
        .cache(square)
        .name("square")
        .mmap_mode(MmapMode::ReadOnly);
    assert_eq!(f.effective_mmap_mode(), MmapMode::ReadOnly);
    assert!(f.eval(&ramp(10)).is_mapped());
    let shelved = f.call_and_shelve(&ramp(10));
    let reference = shelved.as_memorized().expect("stored").clone();
    // The reference loads with the memory's mode (none).
    let got = reference.get().unwrap();
    assert_eq!(got.storage(), Storage::Buffer);
    assert_eq!(got, square(&ramp(10)));
    let mapped = fs_memory(dir.path(), MmapMode::ReadOnly);
    let g = mapped.cache(square).name("square");
    let reference = g
        .call_and_shelve(&ramp(10))
        .as_memorized()
        .expect("stored")
        .clone();
    assert!(reference.get().unwrap().is_mapped());
}

#[test]
fn stores_without_files_view_the_downloaded_buffer() {
    let backend = Arc::new(InMemoryBackend::new());
    for mode in [MmapMode::None, MmapMode::ReadOnly, MmapMode::CopyOnWrite] {
        let memory = MemoryBuilder::new()
            .backend(backend.clone())
            .mmap_mode(mode)
            .build()
            .unwrap();
        let f = memory.cache(square).name("square");
        let x = ramp(4096);
        let first = f.eval(&x);
        let mut hit = f.eval(&x);
        assert_eq!(first, hit);
        assert_eq!(hit.storage(), Storage::Buffer, "{mode}");
        assert!(hit.get_mut().is_none());
        hit.make_mut()[0] = 9.0;
        assert_eq!(f.eval(&x)[0], 0.0, "the stored entry is unchanged");
    }
    // Read-write cannot reach a store without files: it warns, and behaves as copy-on-write.
    let (memory, reports) = capture(
        MemoryBuilder::new()
            .backend(backend.clone())
            .mmap_mode(MmapMode::ReadWrite),
    );
    let w = warnings(&reports);
    assert!(w.iter().any(|w| w.contains("copy-on-write")), "{w:?}");
    let f = memory.cache(square).name("square");
    let mut hit = f.eval(&ramp(4096));
    hit.make_mut()[0] = 9.0;
    assert_eq!(f.eval(&ramp(4096))[0], 0.0, "the stored entry is unchanged");
    let (memory, reports) = capture(MemoryBuilder::new().backend(backend));
    let _f = memory
        .cache(square)
        .name("square")
        .mmap_mode(MmapMode::ReadWrite);
    let w = warnings(&reports);
    assert!(
        w.iter().any(|w| w.contains("'square' with mmap_mode r+")),
        "{w:?}"
    );
}

#[test]
fn array_arguments_hash_by_type_shape_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let memory = fs_memory(dir.path(), MmapMode::None);
    let calls = AtomicUsize::new(0);
    let f = memory
        .cache_capturing(|x: Array<f64>| {
            calls.fetch_add(1, Ordering::SeqCst);
            x.len()
        })
        .name("len");
    let values: Vec<f64> = (0..6).map(f64::from).collect();
    f.eval(Array::from_vec(values.clone(), [2, 3]).unwrap());
    f.eval(Array::from_vec(values.clone(), [2, 3]).unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    f.eval(Array::from_vec(values.clone(), [3, 2]).unwrap());
    f.eval(Array::from_vec(values, [6]).unwrap());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the shape is part of the hash"
    );
    let h = |v: &dyn erased::Hash| v.digest();
    let f64s = Array::from(vec![1.0f64, 2.0]);
    let f32s = Array::from(vec![1.0f32, 2.0]);
    assert_ne!(h(&f64s), h(&f32s), "same numbers, another element type");
    assert_ne!(
        h(&vec![1.0f64, 2.0]),
        h(&vec![1.0f32, 2.0]),
        "slices and Vecs too"
    );
    assert_eq!(h(&f64s), h(&Array::from(vec![1.0f64, 2.0])));
}

#[test]
fn verbose_lines_show_arrays_by_type_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, reports) = capture(Memory::builder().path(dir.path()).verbose(2));
    let f = memory.cache(|x: Array<f32>| x.len()).name("tests::count");
    f.eval(Array::from_vec(vec![0.5f32; 12], [3, 4]).unwrap());
    let lines = lines(&reports);
    assert!(
        lines.iter().any(|l| l.contains("count(Array<f32>[3, 4])")),
        "{lines:?}"
    );
}

mod erased {
    /// Hashes values of several types through one closure.
    pub(crate) trait Hash {
        fn digest(&self) -> cachette::Digest;
    }
    impl<T: serde::Serialize> Hash for T {
        fn digest(&self) -> cachette::Digest {
            cachette::hash(self).unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn async_functions_load_mapped_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let memory = fs_memory(dir.path(), MmapMode::ReadOnly);
    let g =
        cachette::MemorizedFunc::<Array<f64>>::new(&memory, cachette::FuncId::new("async-square"));
    let x = ramp(64);
    let calls = AtomicUsize::new(0);
    let run = |x: Array<f64>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::convert::Infallible>(square(&x)) }
    };
    let first = g.call_with_async(x.clone(), run).await.unwrap();
    let hit = g.call_with_async(x.clone(), run).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(first.is_mapped() && hit.is_mapped());
    assert_eq!(hit, square(&x));
}

fn sum_generic<T: Element + Into<f64>>(a: &Array<T>) -> f64 {
    a.iter().map(|&v| v.into()).sum()
}

#[test]
fn arrays_deref_to_slices() {
    let a = Array::from_vec(vec![1u8, 2, 3, 4], [2, 2]).unwrap();
    assert_eq!(sum_generic(&a), 10.0);
    assert_eq!(a.ndim(), 2);
    assert_eq!(a.dtype(), cachette::DType::U8);
    assert_eq!(a.clone().into_vec(), vec![1, 2, 3, 4]);
    assert!(format!("{a:?}").contains("shape: [2, 2]"));
}

#[cfg(feature = "ndarray")]
mod ndarray_support {
    use super::*;
    use cachette::ndarray::{self, Array2, ShapeBuilder};

    #[test]
    fn conversions_keep_shape_and_order() {
        let a = Array2::from_shape_fn((3, 4), |(i, j)| (i * 10 + j) as f64);
        let ours = Array::from(a.clone());
        assert_eq!(ours.shape(), &[3, 4]);
        assert_eq!(ours.view(), a.view().into_dyn());
        let fortran = Array2::from_shape_fn((3, 4).f(), |(i, j)| (i * 10 + j) as f64);
        assert_eq!(
            Array::from(fortran),
            ours,
            "logical order, whatever the layout"
        );
        let t = a.t();
        assert_eq!(Array::from(t).shape(), &[4, 3]);
        assert_eq!(ours.clone().into_ndarray(), a.into_dyn());
    }

    #[test]
    fn ndarray_arguments_and_array_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let memory = fs_memory(dir.path(), MmapMode::ReadOnly);
        let calls = AtomicUsize::new(0);
        let f = memory
            .cache_capturing(|x: Array2<f64>| {
                calls.fetch_add(1, Ordering::SeqCst);
                Array::from(x.mapv(|v| v * 2.0))
            })
            .name("double");
        let x = Array2::from_shape_fn((20, 30), |(i, j)| (i + j) as f64);
        let y = f.eval(x.clone());
        let z = f.eval(x.clone());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(z.is_mapped());
        assert_eq!(z.view(), (&x * 2.0).into_dyn().view());
        assert_eq!(y, z);
        f.eval(x.clone().into_shape_with_order((30, 20)).unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "another shape");
        let fortran = Array2::from_shape_fn((20, 30).f(), |(i, j)| (i + j) as f64);
        assert_eq!(f.eval(fortran), z, "the same values in another layout hit");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let _: ndarray::ArrayViewD<'_, f64> = z.view();
    }
}

#[cfg(feature = "macros")]
mod macro_option {
    use std::sync::LazyLock;

    use super::*;
    use cachette::memoize;

    static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().unwrap());
    static PLAIN: LazyLock<Memory> =
        LazyLock::new(|| Memory::new(DIR.path().join("plain")).unwrap());
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = PLAIN, mmap_mode = "r")]
    fn by_name(n: usize) -> Array<f64> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        ramp(n)
    }

    #[memoize(memory = PLAIN, mmap_mode = MmapMode::CopyOnWrite)]
    fn by_expr(n: usize) -> (String, Array<f64>) {
        (format!("{n}"), ramp(n))
    }

    #[test]
    fn the_macro_sets_the_mode() {
        assert_eq!(
            by_name::memorized().effective_mmap_mode(),
            MmapMode::ReadOnly
        );
        let a = by_name(10);
        let b = by_name(10);
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
        assert_eq!(
            (a.storage(), b.storage()),
            (Storage::MappedReadOnly, Storage::MappedReadOnly)
        );
        let (label, mut c) = by_expr(20);
        assert_eq!(label, "20");
        assert_eq!(c.storage(), Storage::MappedCopyOnWrite);
        c.get_mut().unwrap()[0] = 5.0;
        assert_eq!(by_expr(20).1[0], 0.0);
    }
}

/// The sums a memoized `sum` gave inside the `Serialize` of [`Total`].
static SUMS: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());
/// A sum of an array's numbers.
type Sum = Box<dyn Fn(&Array<f64>) -> f64 + Send + Sync>;
/// The memoized `sum` that [`Total`]'s `Serialize` calls.
static SUM: std::sync::OnceLock<Sum> = std::sync::OnceLock::new();

/// An output whose `Serialize` makes a memoized call with an array argument.
#[derive(Debug, Deserialize)]
struct Total(f64);

impl Serialize for Total {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sum = SUM.get().expect("set by the test")(&Array::from(vec![self.0, 1.0]));
        SUMS.lock().unwrap().push(sum);
        s.serialize_f64(sum)
    }
}

/// A memoized call made while an output is encoded hashed its array arguments as the places
/// their bytes would take in the entry being written: `sum([5, 1])` had the key of
/// `sum([2, 1])` and gave 3.
#[test]
fn a_memoized_call_inside_an_outputs_serialize_hashes_its_arrays_by_their_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let memory = fs_memory(dir.path(), MmapMode::None);
    fn sum_of(x: &Array<f64>) -> f64 {
        x.iter().sum()
    }
    let sum = memory.cache(sum_of).name("sum");
    assert!(
        SUM.set(Box::new(move |x: &Array<f64>| sum.eval(x))).is_ok(),
        "set once"
    );
    let total = memory.cache(Total).name("total");
    total.eval(2.0);
    total.eval(5.0);
    assert_eq!(*SUMS.lock().unwrap(), [3.0, 6.0]);
}
