//! Benchmarks of the canonical hash.
//!
//! `cargo bench -p cachette-hashing` hashes a 1 GiB `Vec<f64>`; run as a test
//! (`cargo test --benches`, no `--bench` flag) the big vector is 1 MiB so the
//! run stays quick. The `algorithms` group hashes the same values with xxh3
//! and with keyed BLAKE3 (`cargo bench -p cachette-hashing -- algorithms`).

use std::collections::HashMap;
use std::sync::LazyLock;

use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use serde::Serialize;

fn main() {
    divan::main();
}

/// divan measures only when given `--bench` (as `cargo bench` does).
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// 1 GiB of `f64` when measuring, 1 MiB otherwise. Built once, outside timing.
static BIG: LazyLock<Vec<f64>> = LazyLock::new(|| {
    let bytes = if measuring() { 1 << 30 } else { 1 << 20 };
    (0..bytes / 8).map(|i| i as f64 * 0.25).collect()
});

fn as_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The raw bytes of `BIG`, for the raw-xxh3 baseline.
static BIG_BYTES: LazyLock<Vec<u8>> = LazyLock::new(|| as_bytes(&BIG));

static MAP: LazyLock<HashMap<String, i64>> = LazyLock::new(|| {
    (0..100_000)
        .map(|i| (format!("key-{i}"), i64::from(i)))
        .collect()
});

static SMALL_VEC: LazyLock<Vec<i64>> = LazyLock::new(|| (0..100).collect());

/// Ours: `hash(&Vec<f64>)`, the bulk path.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn big_vec_f64_ours(bencher: Bencher) {
    let v: &Vec<f64> = &BIG;
    bencher
        .counter(BytesCount::of_slice(v))
        .bench(|| cachette_hashing::hash(black_box(v)).unwrap());
}

/// Baseline: one-shot XXH3-128 of the same bytes.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn big_vec_f64_raw_xxh3(bencher: Bencher) {
    let b: &[u8] = &BIG_BYTES;
    bencher
        .counter(BytesCount::of_slice(b))
        .bench(|| xxhash_rust::xxh3::xxh3_128(black_box(b)));
}

/// `HashMap<String, i64>` of 100,000 entries (sorted canonically).
#[divan::bench(sample_count = 20, sample_size = 1)]
fn map_100k(bencher: Bencher) {
    let m: &HashMap<String, i64> = &MAP;
    bencher
        .counter(ItemsCount::new(m.len()))
        .bench(|| cachette_hashing::hash(black_box(m)).unwrap());
}

/// A single small argument.
#[divan::bench]
fn small_i64() -> cachette_hashing::Digest {
    cachette_hashing::hash(black_box(&42i64)).unwrap()
}

/// `Vec<i64>` of 100 items (bulk path).
#[divan::bench]
fn vec_i64_100() -> cachette_hashing::Digest {
    cachette_hashing::hash(black_box(&*SMALL_VEC)).unwrap()
}

/// A struct of scalars and a string: no bulk candidate anywhere, so the
/// type checks must cost nothing here.
#[derive(Serialize)]
struct Args {
    a: i64,
    b: f64,
    c: bool,
    name: &'static str,
}

#[divan::bench]
fn small_struct() -> cachette_hashing::Digest {
    cachette_hashing::hash(black_box(&Args {
        a: 1,
        b: 2.0,
        c: true,
        name: "name",
    }))
    .unwrap()
}

/// Baseline for `small_struct`: the same bytes fed by hand to XXH3-128.
#[divan::bench]
fn small_struct_hand_encoded() -> u128 {
    let mut b = [0u8; 96];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        b[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    let s = black_box(&Args {
        a: 1,
        b: 2.0,
        c: true,
        name: "name",
    });
    put(&[0x1F]);
    put(&4u64.to_le_bytes());
    put(b"Args");
    put(&4u64.to_le_bytes());
    put(&1u64.to_le_bytes());
    put(b"a");
    put(&[0x05]);
    put(&s.a.to_le_bytes());
    put(&1u64.to_le_bytes());
    put(b"b");
    put(&[0x0D]);
    put(&s.b.to_bits().to_le_bytes());
    put(&1u64.to_le_bytes());
    put(b"c");
    put(&[0x01, u8::from(s.c)]);
    put(&1u64.to_le_bytes());
    put(b"name");
    put(&[0x10]);
    put(&(s.name.len() as u64).to_le_bytes());
    put(s.name.as_bytes());
    xxhash_rust::xxh3::xxh3_128(&b[..n])
}

/// `Vec<(i64,)>` of 100 items: element by element, no bulk path.
#[divan::bench]
fn vec_tuple_i64_100() -> cachette_hashing::Digest {
    static V: LazyLock<Vec<(i64,)>> = LazyLock::new(|| (0..100).map(|i| (i,)).collect());
    cachette_hashing::hash(black_box(&*V)).unwrap()
}

/// The default algorithm against the hardened key mode, through
/// `hash_with(&dyn HashAlgorithm, ..)` as a memory hashes arguments.
mod algorithms {
    use std::fmt;
    use std::sync::LazyLock;

    use cachette_hashing::{Blake3Keyed, Digest, HashAlgorithm, Xxh3, hash_with};
    use divan::counter::BytesCount;
    use divan::{Bencher, black_box};

    #[derive(Clone, Copy)]
    enum Alg {
        Xxh3,
        Blake3Keyed,
    }

    const ALGS: [Alg; 2] = [Alg::Xxh3, Alg::Blake3Keyed];

    static KEYED: LazyLock<Blake3Keyed> =
        LazyLock::new(|| Blake3Keyed::from_secret("a benchmark secret, 32 bytes long").unwrap());

    impl Alg {
        fn get(self) -> &'static dyn HashAlgorithm {
            match self {
                Alg::Xxh3 => &Xxh3,
                Alg::Blake3Keyed => &*KEYED,
            }
        }
    }

    impl fmt::Display for Alg {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.get().id())
        }
    }

    /// 100 MB of `f64` when measuring, 1 MiB otherwise.
    static VEC_100MB: LazyLock<Vec<f64>> = LazyLock::new(|| {
        let bytes = if super::measuring() {
            100_000_000
        } else {
            1 << 20
        };
        (0..bytes / 8).map(|i| i as f64 * 0.25).collect()
    });

    static STRING_100: LazyLock<String> = LazyLock::new(|| "0123456789".repeat(10));

    static BYTES_4K: LazyLock<Vec<u8>> = LazyLock::new(|| (0..4096u32).map(|i| i as u8).collect());

    #[divan::bench(args = ALGS)]
    fn i64(alg: Alg) -> Digest {
        hash_with(alg.get(), black_box(&42i64)).unwrap()
    }

    #[divan::bench(args = ALGS)]
    fn string_100_bytes(bencher: Bencher, alg: Alg) {
        let s: &str = &STRING_100;
        bencher
            .counter(BytesCount::of_str(s))
            .bench(|| hash_with(alg.get(), black_box(s)).unwrap());
    }

    #[divan::bench(args = ALGS)]
    fn bytes_4k(bencher: Bencher, alg: Alg) {
        let b: &[u8] = &BYTES_4K;
        bencher
            .counter(BytesCount::of_slice(b))
            .bench(|| hash_with(alg.get(), black_box(b)).unwrap());
    }

    #[divan::bench(args = ALGS, sample_count = 10, sample_size = 1)]
    fn vec_f64_100mb(bencher: Bencher, alg: Alg) {
        let v: &Vec<f64> = &VEC_100MB;
        bencher
            .counter(BytesCount::of_slice(v))
            .bench(|| hash_with(alg.get(), black_box(v)).unwrap());
    }
}
