//! The layers over real backends: the local disk (`cachette::fs`) in front of Redis
//! (`cachette::redis`), with the remote tier counted by a `Stats` layer.
//!
//! Redis comes from `CACHETTE_TEST_REDIS_URL` (`cargo xtask services start` prints it). Without
//! it the tests are skipped with a message, except under `CI=true`, where they fail; a
//! configured server that does not answer is a failure.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::fs::{FsBackend, FsConfig, Layout};
use cachette::layers::{Stats, StatsHandle, TierCounters, Tiered};
use cachette::plugin::{DynBackend, Key, Prefix, StoreBackend, StoreBackendExt, block_on, testkit};
use cachette::redis::RedisConfig;
use cachette::{Array, Memory, MmapMode};

const REDIS_URL: &str = "CACHETTE_TEST_REDIS_URL";

/// A Redis backend in a fresh namespace, deleted when dropped.
struct Namespace {
    redis: DynBackend,
}

impl Namespace {
    /// The test server, or `None` to skip (never under `CI=true`).
    fn open(tag: &str) -> Option<Namespace> {
        let url = testkit::server_from_env(REDIS_URL)?;
        let redis = RedisConfig::new(url.clone())
            .with_prefix(testkit::unique_root(tag))
            .build_backend()
            .expect("a Redis backend");
        let redis: DynBackend = Arc::new(redis);
        // A configured server that does not answer is a failure, as in the Redis crate's tests.
        let probe = Key::new("probe").unwrap();
        if let Err(e) = block_on(false, redis.contains(&probe)).expect("the I/O runtime") {
            panic!("{REDIS_URL}={url} is set, but Redis does not answer: {e}");
        }
        Some(Namespace { redis })
    }

    /// The local disk at `dir` in front of this namespace, whose operations are counted.
    fn tiered(&self, dir: &Path) -> (Arc<Tiered>, StatsHandle) {
        let stats = Stats::new(self.redis.clone());
        let handle = stats.handle();
        let local = Arc::new(files_store(dir));
        (Arc::new(Tiered::new(local, Arc::new(stats))), handle)
    }
}

/// A local-disk store in the files layout (one file per item), whose files the tests look at.
fn files_store(dir: &Path) -> FsBackend {
    FsConfig::new(dir)
        .with_layout(Layout::Files)
        .open()
        .expect("a local store")
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let cleared = block_on(false, self.redis.delete_prefix(&Prefix::root()));
        if !matches!(cleared, Ok(Ok(_))) {
            eprintln!("cannot clear the test namespace: {cleared:?}");
        }
    }
}

/// The keys and sizes a store holds, sorted.
fn items(store: &dyn StoreBackend) -> Vec<(String, u64)> {
    let mut items: Vec<(String, u64)> = block_on(false, store.list(&Prefix::root()))
        .expect("the I/O runtime")
        .expect("list")
        .into_iter()
        .map(|i| (i.key.to_string(), i.size))
        .collect();
    items.sort();
    items
}

/// The key of the one stored call (not the function's `func_code` item).
fn entry_key(items: &[(String, u64)]) -> Key {
    let entries: Vec<&String> = items
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !k.ends_with("/func_code"))
        .collect();
    assert_eq!(entries.len(), 1, "{items:?}");
    Key::new(entries[0].as_str()).unwrap()
}

static SQUARES: AtomicUsize = AtomicUsize::new(0);

fn square(x: u64) -> u64 {
    SQUARES.fetch_add(1, Ordering::SeqCst);
    x * x
}

#[test]
fn disk_in_front_of_redis_writes_through_backfills_then_serves_locally() {
    let Some(ns) = Namespace::open("tiered") else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // The first call computes and writes through to both tiers.
    let (tiered, remote) = ns.tiered(dir_a.path());
    let memory = Memory::with_backend(tiered.clone());
    assert_eq!(memory.cache(square).eval(12), 144);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 1);
    let stored = items(&*ns.redis);
    let entry = entry_key(&stored);
    assert_eq!(
        items(&files_store(dir_a.path())),
        stored,
        "the local tier holds what Redis holds"
    );
    assert_eq!(remote.snapshot().hits, 0);
    assert_eq!(remote.snapshot().puts, 2, "func_code and the entry");
    assert_eq!(tiered.counters().misses, 2);

    // A fresh, empty local tier in front of the same Redis: hits from the remote tier, and
    // backfills.
    let (tiered, remote) = ns.tiered(dir_b.path());
    let memory = Memory::with_backend(tiered.clone());
    let f = memory.cache(square);
    assert!(
        !dir_b.path().join(entry.as_str()).exists(),
        "not in the new local tier yet"
    );
    assert_eq!(f.eval(12), 144);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 1, "served from Redis");
    let counters = tiered.counters();
    assert_eq!(
        counters,
        TierCounters {
            remote_hits: 2,
            backfills: 1,
            ..TierCounters::default()
        },
        "func_code and the entry came from Redis; the entry was copied down (the identity \
         item, read with a ranged read, was not)"
    );
    assert!(
        items(&files_store(dir_b.path()))
            .iter()
            .any(|(key, _)| key == entry.as_str()),
        "backfilled"
    );
    assert!(dir_b.path().join(entry.as_str()).is_file());
    let before = remote.snapshot();
    assert_eq!((before.hits, before.misses, before.puts), (2, 0, 0));

    // The next call is served by the local tier: no new get reaches Redis.
    assert_eq!(f.eval(12), 144);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 1);
    let after = remote.snapshot();
    assert_eq!(
        (after.hits, after.misses, after.puts),
        (before.hits, before.misses, before.puts)
    );
    assert_eq!(
        tiered.counters(),
        TierCounters {
            local_hits: 1,
            ..counters
        }
    );

    // Clearing reaches both tiers.
    memory.clear().unwrap();
    assert!(items(&*ns.redis).is_empty());
    assert!(items(&files_store(dir_b.path())).is_empty());
}

static RAMPS: AtomicUsize = AtomicUsize::new(0);

fn ramp(n: u64) -> Array<f64> {
    RAMPS.fetch_add(1, Ordering::SeqCst);
    Array::from((0..n).map(|i| (i * i) as f64).collect::<Vec<_>>())
}

/// With a mapping `MmapMode`, an entry only in Redis is read whole and backfilled, and the
/// load maps the local copy at once, as every later hit does.
#[test]
fn mapped_loads_use_the_backfilled_local_file() {
    let Some(ns) = Namespace::open("mmap") else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mapping = |tiered: &Arc<Tiered>| {
        Memory::builder()
            .backend(tiered.clone())
            .mmap_mode(MmapMode::ReadOnly)
            .build()
            .unwrap()
    };

    let (tiered, _) = ns.tiered(dir_a.path());
    let first = mapping(&tiered).cache(ramp).eval(1000);
    assert_eq!(RAMPS.load(Ordering::SeqCst), 1);
    assert!(first.is_mapped(), "reloaded from the local copy");

    let (tiered, remote) = ns.tiered(dir_b.path());
    let memory = mapping(&tiered);
    let f = memory.cache(ramp);
    let fetched = f.eval(1000);
    assert_eq!(RAMPS.load(Ordering::SeqCst), 1, "served from Redis");
    assert!(
        fetched.is_mapped(),
        "read from Redis, copied down, then mapped"
    );
    assert_eq!(tiered.counters().backfills, 1, "the entry was copied down");
    let before = remote.snapshot();

    let mapped = f.eval(1000);
    assert!(mapped.is_mapped(), "the backfilled file is mapped");
    assert_eq!(mapped.as_slice(), first.as_slice());
    assert_eq!(RAMPS.load(Ordering::SeqCst), 1);
    let after = remote.snapshot();
    assert_eq!((after.hits, after.misses), (before.hits, before.misses));
}
