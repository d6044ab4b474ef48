//! The entry decoder against hostile bytes: a bounded mutation fuzzer, and the committed
//! corpus of the cargo-fuzz targets.
//!
//! Every input is an entry as a reader could find it in a shared store: valid entries of every
//! kind (plain, with arrays, compressed, both), then mutated (bits flipped, bytes overwritten
//! with extreme values, lengths in the prefix replaced, cut short, extended, spliced), or built
//! with valid checksums around garbage structure bytes, so that the decoder proper is reached.
//! For each input (the properties are in `fuzz_support/`, shared with `fuzz/fuzz_targets/`):
//!
//! - parsing and decoding never panic: they succeed or give an `EntryError`/codec error;
//! - they never allocate much more than the input's real size, whatever its header claims (a
//!   counting allocator measures the peak, per thread);
//! - through a `Memory`, a damaged entry is a miss: the call returns the right value, computed.
//!
//! `cargo xtask fuzz` runs the cargo-fuzz (libFuzzer) targets `decode_entry` and `load_entry`
//! for a bounded time. Their committed corpus is `tests/fuzz-corpus/<target>/` (seeds and a
//! minimised corpus, `cargo xtask fuzz --cmin` refreshes it), and every input that once made a
//! target fail is kept in `tests/fuzz-corpus/regressions/`: `cargo xtask fuzz` copies each
//! crash it finds there (from `fuzz/artifacts/<target>/`), so that it becomes a regression
//! test. Every file under `tests/fuzz-corpus/` goes through both targets' properties on every
//! `cargo test`.
//!
//! The mutation fuzzer below runs a few thousand inputs on `cargo test`, and
//! `cargo xtask fuzz --engine mutate` runs it for a bounded time (`CACHETTE_FUZZ_SECS`) or
//! count (`CACHETTE_FUZZ_ITERS`) with a seed from the clock (`CACHETTE_FUZZ_SEED` replays one).
//! A failing input is written to `target/fuzz-failures/`; move it to
//! `tests/fuzz-corpus/regressions/` to keep it as a regression test.

mod fuzz_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette_core::MessagePack;
use cachette_core::MmapMode;
use cachette_core::plugin::entry::{Entry, EntryError, Prefix, encode_parts, encode_value};
use fuzz_support::{
    Counting, MAX_DECOMPRESSED, Stage, check_decode, check_entry, metadata, output, reseal, seeds,
};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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

/// The committed corpus: the seeds and minimised corpus of each cargo-fuzz target, and the
/// inputs that once failed (`regressions/`).
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

/// Every file of the committed corpus, its subfolders included.
fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut dirs = vec![corpus_dir()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
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
    encode_value(&MessagePack, &output(false, rng.below(20)), &mut out).unwrap();
    out
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

/// Every committed corpus file goes through the properties of both cargo-fuzz targets.
#[test]
fn corpus_entries_are_refused_or_decoded_safely() {
    let stage = Stage::new(MmapMode::None, None);
    let corpus = corpus();
    assert!(corpus.len() >= 10, "the corpus is missing");
    for (path, bytes) in corpus {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_decode(&bytes);
            stage.check_load(&bytes);
        }));
        assert!(outcome.is_ok(), "corpus input {} failed", path.display());
    }
}

/// Found by this fuzzer: a valid entry of another call (or function), moved under a call's key,
/// was served as that call's result. It is refused, and the call computes.
#[test]
fn an_entry_of_another_call_is_refused() {
    let stage = Stage::new(MmapMode::None, None);
    for seed in seeds() {
        stage.check(&seed, true);
    }
    let mapped = Stage::new(MmapMode::ReadOnly, None);
    for seed in seeds() {
        mapped.check(&seed, true);
    }
}

/// `CACHETTE_FUZZ_WRITE_SEEDS=1` writes the seed entries into `tests/fuzz-corpus/<target>/`
/// (to refresh the corpus after a change of the entry format): every kind of entry for
/// `decode_entry`, and the entries a stage's memory writes, plain and compressed, for
/// `load_entry`.
#[test]
fn seeds_can_be_written_to_the_corpus() {
    let seeds = seeds();
    assert!(seeds.len() >= 10);
    let staged: Vec<Vec<u8>> = [None, Some(3)]
        .into_iter()
        .flat_map(|level| Stage::new(MmapMode::None, level).entries())
        .collect();
    assert_eq!(staged.len(), 4);
    if std::env::var_os("CACHETTE_FUZZ_WRITE_SEEDS").is_some() {
        for (target, entries) in [("decode_entry", &seeds), ("load_entry", &staged)] {
            let dir = corpus_dir().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in entries.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:02}.bin")), seed).unwrap();
            }
        }
    }
}

/// Resealing (the fuzz targets' way past the checksums) leaves a valid entry as it is, and
/// makes a damaged one pass the checksums.
#[test]
fn resealing_makes_checksums_right() {
    for seed in seeds() {
        assert_eq!(reseal(&seed).as_deref(), Some(&seed[..]));
        let mut damaged = seed.clone();
        let offset = Prefix::parse(&seed, None).unwrap().payload_offset as usize;
        if offset < seed.len() {
            damaged[seed.len() - 1] ^= 0x40;
        }
        damaged.extend_from_slice(&[0; 64]);
        assert!(Entry::parse(Bytes::from(damaged.clone())).is_err());
        let resealed = reseal(&damaged).unwrap();
        let parsed = Entry::parse(Bytes::from(resealed));
        assert!(
            parsed.is_ok()
                || matches!(parsed, Err(EntryError::Corrupted(ref why)) if why.contains("array layout")),
            "{parsed:?}"
        );
    }
    assert_eq!(reseal(b"CACHETTE"), None);
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

/// A few kilobytes of zstd that decompress to 64 MiB (a "bomb" a writer of a shared store can
/// plant) cost a reader no more than its cap: the frame announces its size, over the cap, and
/// is refused before anything is decompressed; a frame that lies about its size is refused as
/// soon as it holds more.
#[test]
fn a_compressed_bomb_costs_a_reader_at_most_its_cap() {
    // Written for a call of the stage, so that a load gets as far as decompressing it.
    let stage = Stage::new(MmapMode::None, Some(3));
    let meta = cachette_core::plugin::entry::parse_metadata(&stage.entries()[0], None).unwrap();
    let structure = vec![0u8; 64 << 20];
    let bomb = encode_parts(&meta, structure, Vec::new(), Some(19))
        .unwrap()
        .to_bytes()
        .to_vec();
    assert!(bomb.len() < 16 << 10, "{} bytes", bomb.len());
    check_entry(&bomb);
    let entry = Entry::parse(Bytes::from(bomb.clone())).unwrap();
    let (refused, peak) = fuzz_support::peak_of(|| entry.decode_payload_within(MAX_DECOMPRESSED));
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("announces 67108864 bytes"), "{err}");
    assert!(peak < 1 << 20, "allocated {peak} bytes to refuse it");
    // Through a memory with a 1 MiB cap: a warning and a recomputation, and little memory.
    let ((), peak) = fuzz_support::peak_of(|| stage.check(&bomb, true));
    assert!(peak < 8 << 20, "a load of the bomb allocated {peak} bytes");
}

#[test]
fn mutated_entries_never_panic_nor_overallocate() {
    let seeds = seeds();
    let stage = Stage::new(MmapMode::None, None);
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
