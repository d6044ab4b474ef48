//! Redis backend: a hit of a memoized call, against a raw `redis` crate `GET` of the same bytes
//! in the same run, for a small entry, a 10 MB `String` entry and a 10 MB `Array<u8>` entry.
//!
//! `cargo bench -p cachette-redis` with `CACHETTE_TEST_REDIS_URL` set (`eval "$(cargo xtask
//! services start)"`); without it the benchmarks are skipped.
//!
//! - `hit_*`: `MemorizedFunc::eval` from a plain thread (hash the argument, `get`, check and
//!   decode the entry);
//! - `get_*`: the backend's `get` alone, driven like `Memory` drives it;
//! - `async_hit_*`: `call_with_async` from a current-thread tokio runtime;
//! - `raw_get_*`: the baseline: `GET` of the same bytes on a `redis` multiplexed connection,
//!   driven by a two-worker multi-thread runtime from the calling thread, and `raw_sync_get_*`
//!   on a blocking `redis::Connection`; `raw_sync_get_touch` adds the `TOUCH` a hit sends in
//!   the same round trip to record the access.
//!
//! Under `valgrind --tool=callgrind --toggle-collect=<helper>` (`redis::small_hit`,
//! `redis::backend_get`, `redis::raw_sync_get`, `redis::raw_sync_get_touch`) each of these
//! counts the instructions of its calls alone, on the calling thread.
//!
//! `entry_10mb` measures these for a 10 MB `String` output, which a hit decodes into a new
//! allocation (`decode_only` is that decoding alone); `array_10mb` for a 10 MB `Array<u8>`
//! output, whose bytes are stored raw and which a hit views in the buffer read (`hit`, `get`
//! and `raw_get` of its entry).

use std::convert::Infallible;
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use cachette_core::plugin::{DynBackend, Key, StoreBackendExt, block_on};
use cachette_core::{Array, Codec, MemorizedFunc, Memory, MessagePack, Storage};
use cachette_redis::RedisConfig;
use divan::black_box;
use redis::AsyncCommands;

const URL_VAR: &str = "CACHETTE_TEST_REDIS_URL";
const BIG: usize = 10_000_000;

fn main() {
    if std::env::var(URL_VAR).map_or(true, |v| v.is_empty()) {
        eprintln!(
            "SKIPPED: {URL_VAR} is not set; run `eval \"$(cargo xtask services start)\"` to benchmark against a real Redis"
        );
        return;
    }
    LazyLock::force(&FIXTURE);
    divan::main();
    let f = &*FIXTURE;
    let _ = f.memory.clear();
    let mut raw = f.raw_sync.lock().unwrap_or_else(|e| e.into_inner());
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(&f.raw_small)
        .arg(&f.raw_big)
        .arg(&f.raw_array)
        .query(&mut *raw);
}

type Func = MemorizedFunc<String, fn(u64) -> String>;
type ArrayFunc = MemorizedFunc<Array<u8>, fn(u64) -> Array<u8>>;

fn small(x: u64) -> String {
    format!("{x:0>100}")
}

fn big(x: u64) -> String {
    let digit = char::from(b'0' + (x % 10) as u8);
    std::iter::repeat_n(digit, BIG).collect()
}

/// `BIG` bytes that are not all the same (a pseudo-random sequence seeded by `x`).
fn big_array(x: u64) -> Array<u8> {
    let mut state = x ^ 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..BIG)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    Array::from(bytes)
}

/// A hit of `func` for 7; panics on a miss.
fn array_hit(func: &ArrayFunc) -> Array<u8> {
    func.call_with(7u64, |_| -> Result<Array<u8>, Infallible> {
        panic!("a hit was expected")
    })
    .expect("hit")
}

struct Fixture {
    memory: Memory,
    backend: DynBackend,
    small: Func,
    big: Func,
    array: ArrayFunc,
    small_key: Key,
    big_key: Key,
    array_key: Key,
    raw_small: String,
    raw_big: String,
    raw_array: String,
    big_entry: Bytes,
    raw_rt: tokio::runtime::Runtime,
    raw_async: redis::aio::MultiplexedConnection,
    raw_sync: Mutex<redis::Connection>,
    async_rt: tokio::runtime::Runtime,
}

/// The key of the one entry of a function (`cachette/<function folder>/<args id>`).
fn entry_key(memory: &Memory, name: &str) -> Key {
    let entry = memory
        .entries(None)
        .expect("entries")
        .into_iter()
        .find(|e| e.func.starts_with(&format!("{name}-")))
        .expect("an entry");
    Key::new(format!("cachette/{}/{}", entry.func, entry.args_id)).expect("key")
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let url = std::env::var(URL_VAR).expect("checked in main");
    let prefix = format!("bench-{}", std::process::id());
    let backend: DynBackend = std::sync::Arc::new(
        RedisConfig::new(url.clone())
            .with_prefix(&prefix)
            .build_backend()
            .expect("backend"),
    );
    let memory = Memory::with_backend(backend.clone());
    let small_fn: Func = memory
        .cache_fn(small as fn(u64) -> String)
        .name("bench.small");
    let big_fn: Func = memory.cache_fn(big as fn(u64) -> String).name("bench.big");
    assert_eq!(small_fn.eval(7), small(7));
    assert_eq!(big_fn.eval(7).len(), BIG);
    let array_fn: ArrayFunc = memory
        .cache_fn(big_array as fn(u64) -> Array<u8>)
        .name("bench.array");
    let expected = big_array(7);
    assert_eq!(array_fn.eval(7), expected);
    let loaded = array_hit(&array_fn);
    assert_eq!(loaded.storage(), Storage::Buffer);
    assert!(loaded == expected, "the loaded array differs");
    drop((loaded, expected));
    let small_key = entry_key(&memory, "bench.small");
    let big_key = entry_key(&memory, "bench.big");
    let array_key = entry_key(&memory, "bench.array");

    let client = redis::Client::open(url).expect("client");
    let mut raw_sync = client.get_connection().expect("sync connection");
    let raw_small = format!("{prefix}-raw-small");
    let raw_big = format!("{prefix}-raw-big");
    let raw_array = format!("{prefix}-raw-array");
    for (raw, key) in [
        (&raw_small, &small_key),
        (&raw_big, &big_key),
        (&raw_array, &array_key),
    ] {
        let bytes: Bytes = block_on(false, backend.get(key))
            .expect("runtime")
            .expect("get")
            .expect("entry");
        let () = redis::cmd("SET")
            .arg(raw)
            .arg(&bytes[..])
            .query(&mut raw_sync)
            .expect("SET");
    }
    let raw_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let raw_async = raw_rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("async connection");
    let async_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    eprintln!(
        "entries: small {} bytes, big {} bytes, array {} bytes (chunked above {} bytes)",
        block_on(false, backend.get(&small_key))
            .unwrap()
            .unwrap()
            .unwrap()
            .len(),
        block_on(false, backend.get(&big_key))
            .unwrap()
            .unwrap()
            .unwrap()
            .len(),
        block_on(false, backend.get(&array_key))
            .unwrap()
            .unwrap()
            .unwrap()
            .len(),
        cachette_redis::DEFAULT_CHUNK_SIZE,
    );
    let big_entry = block_on(false, backend.get(&big_key))
        .expect("runtime")
        .expect("get")
        .expect("entry");
    Fixture {
        big_entry,
        memory,
        backend,
        small: small_fn,
        big: big_fn,
        array: array_fn,
        small_key,
        big_key,
        array_key,
        raw_small,
        raw_big,
        raw_array,
        raw_rt,
        raw_async,
        raw_sync: Mutex::new(raw_sync),
        async_rt,
    }
});

#[inline(never)] // A symbol of its own, for `valgrind --toggle-collect`.
fn raw_get(key: &str) -> Vec<u8> {
    let f = &*FIXTURE;
    let mut conn = f.raw_async.clone();
    f.raw_rt
        .block_on(async move { conn.get::<_, Vec<u8>>(key).await })
        .expect("GET")
}

#[inline(never)] // A symbol of its own, for `valgrind --toggle-collect`.
fn raw_sync_get(key: &str) -> Vec<u8> {
    let f = &*FIXTURE;
    let mut conn = f.raw_sync.lock().unwrap_or_else(|e| e.into_inner());
    redis::cmd("GET").arg(key).query(&mut *conn).expect("GET")
}

/// `GET` of the value with a `TOUCH` of a second key in the same round trip: what a hit sends
/// (the access recorded with the read, `idletime` tracking).
#[inline(never)] // A symbol of its own, for `valgrind --toggle-collect`.
fn raw_sync_get_touch(key: &str) -> Vec<u8> {
    let f = &*FIXTURE;
    let mut conn = f.raw_sync.lock().unwrap_or_else(|e| e.into_inner());
    let (value,): (Vec<u8>,) = redis::pipe()
        .cmd("GET")
        .arg(key)
        .cmd("TOUCH")
        .arg(format!("{{{key}}}:s"))
        .ignore()
        .query(&mut *conn)
        .expect("GET");
    value
}

#[inline(never)] // A symbol of its own, for `valgrind --toggle-collect`.
fn backend_get(key: &Key) -> Bytes {
    let f = &*FIXTURE;
    block_on(false, f.backend.get(key))
        .expect("runtime")
        .expect("get")
        .expect("entry")
}

#[inline(never)] // A symbol of its own, for `valgrind --toggle-collect`.
fn async_hit(func: &Func) -> String {
    let f = &*FIXTURE;
    f.async_rt
        .block_on(func.call_with_async(7u64, |x| async move { Ok::<_, Infallible>(small(x)) }))
        .expect("hit")
}

/// A hit of the small entry's function.
#[inline(never)] // A symbol of its own, for `valgrind --toggle-collect`.
fn small_hit(x: u64) -> String {
    FIXTURE.small.eval(x)
}

mod small_entry {
    use super::*;

    #[divan::bench]
    fn hit() -> String {
        super::small_hit(black_box(7))
    }

    #[divan::bench]
    fn get() -> Bytes {
        backend_get(black_box(&FIXTURE.small_key))
    }

    #[divan::bench]
    fn async_hit() -> String {
        super::async_hit(&FIXTURE.small)
    }

    #[divan::bench]
    fn raw_get() -> Vec<u8> {
        super::raw_get(black_box(&FIXTURE.raw_small))
    }

    #[divan::bench]
    fn raw_sync_get() -> Vec<u8> {
        super::raw_sync_get(black_box(&FIXTURE.raw_small))
    }

    #[divan::bench]
    fn raw_sync_get_touch() -> Vec<u8> {
        super::raw_sync_get_touch(black_box(&FIXTURE.raw_small))
    }
}

mod entry_10mb {
    use super::*;

    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn hit() -> String {
        FIXTURE.big.eval(black_box(7))
    }

    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn get() -> Bytes {
        backend_get(black_box(&FIXTURE.big_key))
    }

    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn raw_get() -> Vec<u8> {
        super::raw_get(black_box(&FIXTURE.raw_big))
    }

    /// The part of a hit that is not Redis: checking and decoding the entry already read.
    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn decode_only() -> String {
        let entry =
            cachette_core::plugin::entry::Entry::parse(FIXTURE.big_entry.clone()).expect("entry");
        let mut out = None;
        MessagePack
            .decode(&entry.payload(), &mut |de| {
                out = Some(<String as serde::Deserialize>::deserialize(de)?);
                Ok(())
            })
            .expect("decode");
        out.expect("a decoded value")
    }

    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn raw_sync_get() -> Vec<u8> {
        super::raw_sync_get(black_box(&FIXTURE.raw_big))
    }
}

mod array_10mb {
    use super::*;

    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn hit() -> Array<u8> {
        super::array_hit(black_box(&FIXTURE.array))
    }

    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn get() -> Bytes {
        backend_get(black_box(&FIXTURE.array_key))
    }

    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn raw_get() -> Vec<u8> {
        super::raw_get(black_box(&FIXTURE.raw_array))
    }

    #[divan::bench(sample_count = 40, sample_size = 1)]
    fn raw_sync_get() -> Vec<u8> {
        super::raw_sync_get(black_box(&FIXTURE.raw_array))
    }
}
