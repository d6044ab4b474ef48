//! The entry decoder against hostile bytes: a bounded mutation fuzzer.
//!
//! Every input is an entry as a reader could find it in a shared store: valid entries of every
//! kind (plain, with arrays, compressed, both), then mutated (bits flipped, bytes overwritten
//! with extreme values, lengths in the prefix replaced, cut short, extended, spliced), or built
//! with valid checksums around garbage structure bytes, so that the decoder proper is reached.
//! For each input:
//!
//! - parsing and decoding never panic: they succeed or give an `EntryError`/codec error;
//! - they never allocate much more than the input's real size, whatever its header claims (a
//!   counting allocator measures the peak, per thread);
//! - through a `Memory`, a damaged entry is a miss: the call returns the right value, computed.
//!
//! `cargo test` runs a few thousand inputs. `cargo xtask fuzz` runs it for a bounded time
//! (`CACHETTE_FUZZ_SECS`) or count (`CACHETTE_FUZZ_ITERS`) with a seed from the clock
//! (`CACHETTE_FUZZ_SEED` replays one). A failing input is written to
//! `target/fuzz-failures/`; move it to `tests/fuzz-corpus/` to keep it as a regression test:
//! every file there is checked on every run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette_core::codec::{self, MessagePack};
use cachette_core::entry::{Entry, Metadata, encode_parts};
use cachette_core::{Array, InMemoryBackend, Key, Memory, MmapMode, StoreBackend, rt};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ counting allocator

/// The system allocator, counting each thread's live bytes and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(n: usize) {
    // `try_with`: the thread's counters may be gone while it exits.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + n;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn sub(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n)));
}

// SAFETY: forwards to the system allocator; the counters are thread-local cells that never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size);
        sub(layout.size());
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and gives the most bytes it had allocated at once (on this thread).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get).saturating_sub(base))
}

// ------------------------------------------------------------------ random numbers

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

// ------------------------------------------------------------------ the inputs

/// The output type of the seeds: something of everything the codec meets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Output {
    name: String,
    values: Vec<i64>,
    nested: Vec<(u8, Option<String>)>,
    array: Option<Array<f64>>,
}

fn output(with_array: bool, n: usize) -> Output {
    Output {
        name: "fuzz".repeat(n % 7 + 1),
        values: (0..n as i64).collect(),
        nested: vec![(1, Some("x".into())), (2, None)],
        array: with_array.then(|| Array::from((0..n).map(|i| i as f64).collect::<Vec<_>>())),
    }
}

fn metadata() -> Metadata {
    Metadata::new(
        0.5,
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        vec![("x".into(), "1".into())],
        "fuzz.f",
        "00000000000000000000000000000001",
        "xxh3-128",
        "msgpack",
    )
}

/// Valid entries of every kind, as stored by a memory (through a real `Memory` so that the
/// arrays are laid out as in production).
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (compress, arrays, n) in [
        (None, false, 3),
        (None, true, 5),
        (Some(3), false, 40),
        (Some(3), true, 9),
        (None, true, 0),
        (None, false, 300),
    ] {
        let backend = Arc::new(InMemoryBackend::new());
        let mut builder = Memory::builder().backend(backend.clone());
        if let Some(level) = compress {
            builder = builder.compress(level);
        }
        let memory = builder.build().unwrap();
        let f = memory
            .cache(move |k: usize| output(arrays, k))
            .name("fuzz::seed");
        f.eval(n);
        let items = rt::block_on(false, backend.list(&cachette_core::Prefix::root()))
            .unwrap()
            .unwrap();
        for item in items {
            if item.key.as_str().ends_with("func_code") {
                continue;
            }
            let bytes = rt::block_on(false, backend.get(&item.key))
                .unwrap()
                .unwrap()
                .unwrap();
            out.push(bytes.to_vec());
        }
    }
    // Hand-built entries: codec garbage with valid checksums.
    for structure in [
        vec![],
        vec![0xc1],
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        vec![0x92; 64],
    ] {
        out.push(
            encode_parts(&metadata(), structure, Vec::new(), None)
                .unwrap()
                .to_bytes()
                .to_vec(),
        );
    }
    out
}

/// The inputs kept under `tests/fuzz-corpus/`.
fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Overwrites 8 bytes at `at` (if they fit) with `v`, little-endian.
fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    if let Some(slot) = bytes.get_mut(at..at + 8) {
        slot.copy_from_slice(&v.to_le_bytes());
    }
}

/// One random mutation of `input`.
fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut b = input.to_vec();
    let extremes = [
        0u64,
        1,
        0x7f,
        0xff,
        u32::MAX as u64,
        u64::MAX,
        1 << 40,
        1 << 62,
    ];
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        match rng.below(10) {
            0 | 1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            2 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = [0u8, 0xff, 0x7f, 0x80, 0xc1, 0xdc, 0xdd][rng.below(7)];
            }
            3 => {
                // A length or offset of the prefix, or of an array layout, replaced.
                let at = [12, 16, 40, 48, 56, 64, 72, 80, 96, 128][rng.below(10)];
                put_u64(&mut b, at, extremes[rng.below(extremes.len())]);
            }
            4 => {
                let keep = rng.below(b.len() + 1);
                b.truncate(keep);
            }
            5 => {
                let n = rng.below(200);
                b.extend((0..n).map(|_| rng.next() as u8));
            }
            6 if !others.is_empty() => {
                // Splice the tail of another input.
                let other = &others[rng.below(others.len())];
                let at = rng.below(b.len() + 1);
                let from = rng.below(other.len() + 1);
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
            7 if b.len() > 8 => {
                // Duplicate a run of bytes in place.
                let i = rng.below(b.len() - 8);
                let run = b[i..i + 8].to_vec();
                let j = rng.below(b.len() - 8);
                b[j..j + 8].copy_from_slice(&run);
            }
            _ => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
        }
    }
    b
}

/// Codec garbage wrapped in a valid entry, so that decoding proper is reached.
fn garbage_entry(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let valid = codec_bytes(rng);
    let structure = mutate(rng, &valid, seeds);
    let arrays = if rng.below(3) == 0 {
        vec![Bytes::from(vec![rng.next() as u8; rng.below(100)])]
    } else {
        Vec::new()
    };
    let level = (rng.below(4) == 0).then_some(1);
    encode_parts(&metadata(), structure, arrays, level)
        .map(|blob| blob.to_bytes().to_vec())
        .unwrap_or_default()
}

/// The codec's encoding of a seed output.
fn codec_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_value(&MessagePack, &output(false, rng.below(20)), &mut out).unwrap();
    out
}

// ------------------------------------------------------------------ the checks

/// The most a decode of `input` may allocate at once: a few times its size (a copy of the
/// payload, a decoded value no larger than the bytes it came from, growth of vectors) plus a
/// fixed allowance. Decompressed payloads are what they are, bounded by the same factor of the
/// decompressed size, which the check measures too.
fn allowance(input: usize) -> usize {
    8 * input + (4 << 20)
}

/// Parses and decodes `input` every way a reader does; panics only through the checks.
fn check_entry(input: &[u8]) {
    let (decompressed, peak) = peak_of(|| {
        let mut decompressed = 0;
        for full in [true, false] {
            let bytes = Bytes::copy_from_slice(input);
            let parsed = if full {
                Entry::parse(bytes)
            } else {
                Entry::parse_head(bytes)
            };
            let Ok(entry) = parsed else { continue };
            let _ = entry.metadata();
            if let Ok(payload) = entry.decode_payload() {
                decompressed = decompressed.max(payload.bytes().len());
                let _ = codec::decode_value::<Output>(&MessagePack, payload.structure());
                let _ = codec::decode_value::<Vec<u64>>(&MessagePack, payload.structure());
                let _ = codec::decode_value::<String>(&MessagePack, payload.structure());
                let _ = codec::decode_value::<Array<f64>>(&MessagePack, payload.structure());
            }
        }
        decompressed
    });
    let limit = allowance(input.len().max(decompressed));
    assert!(
        peak <= limit,
        "decoding a {}-byte entry ({decompressed} bytes decompressed) allocated {peak} bytes at once",
        input.len()
    );
}

/// Stores `input` in place of a real entry and calls the function: the call never panics, and
/// for a damaged real entry gives the right value, loaded or computed.
struct Stage {
    backend: Arc<InMemoryBackend>,
    memory: Memory,
    key: Key,
}

impl Stage {
    fn new(mode: MmapMode) -> Stage {
        let backend = Arc::new(InMemoryBackend::new());
        let memory = Memory::builder()
            .backend(backend.clone())
            .mmap_mode(mode)
            .reporter(cachette_core::Reporter::new(|_| {}))
            .build()
            .unwrap();
        let f = memory.cache(|k: usize| output(true, k)).name("fuzz::stage");
        let cachette_core::Shelved::Memorized(shelved) = f.call_and_shelve(7) else {
            panic!("not stored");
        };
        let key = Key::new(format!("{}/{}", shelved.func(), shelved.args_id())).unwrap();
        Stage {
            backend,
            memory,
            key,
        }
    }

    /// With `exact`, the call must give the right value (the input is a damaged real entry).
    fn check(&self, input: &[u8], exact: bool) {
        rt::block_on(
            false,
            self.backend.put(
                &self.key,
                Bytes::copy_from_slice(input).into(),
                &Default::default(),
            ),
        )
        .unwrap()
        .unwrap();
        let f = self
            .memory
            .cache(|k: usize| output(true, k))
            .name("fuzz::stage");
        let got = f.eval(7);
        if exact {
            assert_eq!(got, output(true, 7), "a damaged entry gave a wrong value");
        }
    }
}

/// How many inputs, and for how long at most.
fn budget() -> (u64, Duration) {
    let iters = std::env::var("CACHETTE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            20_000
        } else {
            200_000
        });
    let secs = std::env::var("CACHETTE_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    (iters, Duration::from_secs(secs))
}

/// Keeps a failing input for replay, and says where.
fn keep_failure(input: &[u8], seed: u64, i: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("seed-{seed}-input-{i}.bin"));
    let _ = std::fs::write(&path, input);
    path
}

#[test]
fn corpus_entries_are_refused_or_decoded_safely() {
    let stage = Stage::new(MmapMode::None);
    for (path, bytes) in corpus() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_entry(&bytes);
            stage.check(&bytes, false);
        }));
        assert!(outcome.is_ok(), "corpus input {} failed", path.display());
    }
}

/// Found by this fuzzer: a valid entry of another call (or function), moved under a call's key,
/// was served as that call's result. It is refused, and the call computes.
#[test]
fn an_entry_of_another_call_is_refused() {
    let stage = Stage::new(MmapMode::None);
    for seed in seeds() {
        stage.check(&seed, true);
    }
    let mapped = Stage::new(MmapMode::ReadOnly);
    for seed in seeds() {
        mapped.check(&seed, true);
    }
}

/// `CACHETTE_FUZZ_WRITE_SEEDS=1` writes the seed entries into `tests/fuzz-corpus/` (to refresh
/// the corpus after a change of the entry format).
#[test]
fn seeds_can_be_written_to_the_corpus() {
    let seeds = seeds();
    assert!(seeds.len() >= 10);
    if std::env::var_os("CACHETTE_FUZZ_WRITE_SEEDS").is_some() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}.bin")), seed).unwrap();
        }
    }
}

#[test]
fn headers_that_claim_huge_sizes_allocate_nothing_of_the_sort() {
    let seeds = seeds();
    for seed in &seeds {
        for (at, v) in [
            (12, u32::MAX as u64),
            (16, u64::MAX),
            (16, 1 << 40),
            (40, u32::MAX as u64),
        ] {
            let mut b = seed.clone();
            put_u64(&mut b, at, v);
            if at == 12 || at == 40 {
                // 4-byte fields: keep the neighbour intact.
                b[at + 4..at + 8].copy_from_slice(&seed[at + 4..at + 8]);
            }
            check_entry(&b);
        }
    }
}

#[test]
fn mutated_entries_never_panic_nor_overallocate() {
    let seeds = seeds();
    let stage = Stage::new(MmapMode::None);
    let (iters, time) = budget();
    let seed = std::env::var("CACHETTE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            if std::env::var_os("CACHETTE_FUZZ_SECS").is_some() {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            } else {
                0x5eed_cafe_f00d_0001
            }
        });
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut done = 0u64;
    for i in 0..iters {
        if started.elapsed() > time {
            break;
        }
        // Forged entries (valid checksums around garbage) reach the decoder proper; only a
        // signature could tell them from real ones, so through a memory they must merely not
        // panic. Damaged real entries must give the right value.
        let forged = rng.below(4) == 0;
        let input = if forged {
            garbage_entry(&mut rng, &seeds)
        } else {
            let base = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, base, &seeds)
        };
        let through_memory = rng.below(8) == 0;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_entry(&input);
            if through_memory {
                stage.check(&input, !forged);
            }
        }));
        if let Err(e) = outcome {
            let path = keep_failure(&input, seed, i);
            std::panic::resume_unwind(Box::new(format!(
                "input {i} of seed {seed} failed ({:?}); kept at {}",
                e.downcast_ref::<String>()
                    .map(String::as_str)
                    .or(e.downcast_ref::<&str>().copied())
                    .unwrap_or("panic"),
                path.display()
            )));
        }
        done += 1;
    }
    println!(
        "fuzz: {done} inputs in {:.1?} (seed {seed}, {} seeds)",
        started.elapsed(),
        seeds.len()
    );
    assert!(done >= iters.min(100), "too few inputs tried: {done}");
}
