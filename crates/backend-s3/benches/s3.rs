//! What a hit costs on S3, next to a raw object_store GET of the same object in the same run.
//!
//! Needs a server: `CACHETTE_TEST_S3_ENDPOINT` (and optionally `CACHETTE_TEST_S3_BUCKET`), as
//! set by `eval "$(cargo xtask services start)"`. Without it, the benchmarks are skipped.
//!
//! - `small`: a 1 KiB result. `memory_hit` is a whole memoized call that loads it (one GET,
//!   checksum, decoding); `backend_get` is the backend's read; `raw_get` is
//!   `ObjectStore::get` of the same object.
//! - `large`: the same for a 100 MB `String` result, plus `memory_hit_without_network`, the
//!   same hit from an in-memory store (what checking and decoding the entry costs).
//! - `large_array`: the same for a 100 MB `Array<u8>` result, whose bytes are stored raw and
//!   which a hit views in the downloaded buffer (no decoding, no copy): `memory_hit`,
//!   `backend_get`, `raw_get` of its entry, and `memory_hit_without_network`.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use cachette_core::plugin::{Key, StoreBackendExt, block_on, io_runtime};
use cachette_core::{Array, FuncId, MemorizedFunc, Memory, Storage};
use cachette_s3::object_store::ObjectStoreExt;
use cachette_s3::object_store::path::Path;
use cachette_s3::{S3Backend, S3Config};
use divan::Bencher;

const SMALL: usize = 1024;
const LARGE: usize = 100_000_000;

struct Entry<R = String> {
    func: MemorizedFunc<R>,
    arg: usize,
    key: Key,
    path: Path,
}

struct Fixture {
    backend: Arc<S3Backend>,
    memory: Memory,
    small: Entry,
    large: Entry,
    /// The large entry in an in-memory store: the cost of a hit without the network.
    large_local: MemorizedFunc<String>,
    large_array: Entry<Array<u8>>,
    /// The large array entry in an in-memory store.
    large_array_local: MemorizedFunc<Array<u8>>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get().expect("set up in main")
}

fn value(len: usize) -> String {
    "cachette ".chars().cycle().take(len).collect()
}

/// `len` bytes that are not all the same (a pseudo-random sequence).
fn array_value(len: usize) -> Array<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    Array::from(bytes)
}

fn entry<R>(
    memory: &Memory,
    backend: &S3Backend,
    name: &str,
    len: usize,
    make: fn(usize) -> R,
) -> Entry<R>
where
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    let func: MemorizedFunc<R> = MemorizedFunc::new(memory, FuncId::new(name));
    let shelved = func
        .call_and_shelve_with(len, |n| Ok::<_, Infallible>(make(n)))
        .unwrap();
    let stored = shelved.as_memorized().expect("stored in the bucket");
    let key = Key::new(format!("{}/{}", stored.func(), stored.args_id())).unwrap();
    let path = backend.path_of(&key).unwrap();
    Entry {
        func,
        arg: len,
        key,
        path,
    }
}

fn setup(endpoint: String) -> Fixture {
    let bucket =
        std::env::var("CACHETTE_TEST_S3_BUCKET").unwrap_or_else(|_| "cachette-test".to_owned());
    let prefix = format!("bench-{}", std::process::id());
    let backend = Arc::new(
        S3Config::new(bucket)
            .with_prefix(prefix)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .build_backend()
            .expect("an S3 backend"),
    );
    let memory = Memory::with_backend(backend.clone());
    let small = entry(&memory, &backend, "bench.small", SMALL, value);
    let large = entry(&memory, &backend, "bench.large", LARGE, value);
    let large_array = entry(&memory, &backend, "bench.large_array", LARGE, array_value);
    let expected = array_value(LARGE);
    check_array_hit(&large_array.func, &expected);
    let local = Memory::from_url("memory://cachette-s3-bench").expect("the in-memory store");
    let large_local = MemorizedFunc::new(&local, FuncId::new("bench.large"));
    large_local
        .call_with(LARGE, |n| Ok::<_, Infallible>(value(n)))
        .unwrap();
    let large_array_local = MemorizedFunc::new(&local, FuncId::new("bench.large_array"));
    large_array_local
        .call_with(LARGE, |n| Ok::<_, Infallible>(array_value(n)))
        .unwrap();
    check_array_hit(&large_array_local, &expected);
    Fixture {
        backend,
        memory,
        small,
        large,
        large_local,
        large_array,
        large_array_local,
    }
}

/// A hit of `func` gives an array equal to `expected` that views the buffer read.
fn check_array_hit(func: &MemorizedFunc<Array<u8>>, expected: &Array<u8>) {
    let loaded = func
        .call_with(LARGE, |_| -> Result<Array<u8>, Infallible> {
            panic!("a hit was expected")
        })
        .unwrap();
    assert_eq!(loaded.storage(), Storage::Buffer);
    assert!(loaded == *expected, "the loaded array differs");
}

fn memory_hit<R>(bencher: Bencher, entry: &'static Entry<R>)
where
    R: serde::Serialize + serde::de::DeserializeOwned + AsRef<[u8]>,
{
    bencher.bench(|| {
        let out = entry
            .func
            .call_with(entry.arg, |_| -> Result<R, Infallible> {
                panic!("a hit was expected")
            })
            .unwrap();
        assert_eq!(out.as_ref().len(), entry.arg);
    });
}

fn backend_get<R>(bencher: Bencher, entry: &'static Entry<R>) {
    let backend = &fixture().backend;
    bencher.bench(|| {
        block_on(false, backend.get(&entry.key))
            .unwrap()
            .unwrap()
            .expect("stored")
            .len()
    });
}

fn raw_get<R>(bencher: Bencher, entry: &'static Entry<R>) {
    let store = fixture().backend.store();
    let io = io_runtime().unwrap();
    bencher.bench(|| {
        io.block_on(async { store.get(&entry.path).await.unwrap().bytes().await.unwrap() })
            .len()
    });
}

mod small {
    use super::*;

    #[divan::bench(sample_count = 200)]
    fn memory_hit(bencher: Bencher) {
        super::memory_hit(bencher, &fixture().small);
    }

    #[divan::bench(sample_count = 200)]
    fn backend_get(bencher: Bencher) {
        super::backend_get(bencher, &fixture().small);
    }

    #[divan::bench(sample_count = 200)]
    fn raw_get(bencher: Bencher) {
        super::raw_get(bencher, &fixture().small);
    }
}

mod large {
    use super::*;

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn memory_hit(bencher: Bencher) {
        super::memory_hit(bencher, &fixture().large);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn backend_get(bencher: Bencher) {
        super::backend_get(bencher, &fixture().large);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn raw_get(bencher: Bencher) {
        super::raw_get(bencher, &fixture().large);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn memory_hit_without_network(bencher: Bencher) {
        let func = &fixture().large_local;
        bencher.bench(|| {
            func.call_with(LARGE, |_| -> Result<String, Infallible> {
                panic!("a hit was expected")
            })
            .unwrap()
            .len()
        });
    }
}

mod large_array {
    use super::*;

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn memory_hit(bencher: Bencher) {
        super::memory_hit(bencher, &fixture().large_array);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn backend_get(bencher: Bencher) {
        super::backend_get(bencher, &fixture().large_array);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn raw_get(bencher: Bencher) {
        super::raw_get(bencher, &fixture().large_array);
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn memory_hit_without_network(bencher: Bencher) {
        let func = &fixture().large_array_local;
        bencher.bench(|| {
            func.call_with(LARGE, |_| -> Result<Array<u8>, Infallible> {
                panic!("a hit was expected")
            })
            .unwrap()
            .len()
        });
    }
}

fn main() {
    let Some(endpoint) = std::env::var("CACHETTE_TEST_S3_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "SKIPPED: CACHETTE_TEST_S3_ENDPOINT is not set; run `eval \"$(cargo xtask services start)\"` to benchmark against a real server"
        );
        return;
    };
    cachette_s3::link();
    let _ = FIXTURE.set(setup(endpoint));
    divan::main();
    if let Some(fixture) = FIXTURE.get()
        && let Err(e) = fixture.memory.clear()
    {
        eprintln!("cannot clean the benchmark prefix up: {e}");
    }
}
