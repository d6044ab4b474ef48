//! Call statistics per function: counted once per call (not per store operation), with the
//! compute time and the time saved, persisted in the store so that every process sharing it
//! sees the sum, and never a write per hit.
//!
//! The S3 and Redis tests need the servers of `cargo xtask services start`; without them they
//! skip, and under `CI=true` they fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachette::Memory;

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(5));
    x * x
}

fn on_disk(dir: &std::path::Path) -> Memory {
    Memory::builder().path(dir).build().unwrap()
}

/// Eight hits and one miss of a function show as 9 calls, 8 hits, 1 miss, however many store
/// operations they made; the time saved is the stored duration of the entry, 8 times.
#[test]
fn calls_are_counted_once_each_with_the_time_they_saved() {
    let dir = tempfile::tempdir().unwrap();
    let memory = on_disk(dir.path());
    let f = memory.cache_fn(slow_square).name("slow_square");
    for _ in 0..9 {
        assert_eq!(f.eval(7), 49);
    }
    let stats = f.stats();
    assert_eq!(
        (stats.calls, stats.hits, stats.misses),
        (9, 8, 1),
        "{stats}"
    );
    assert!(stats.compute_time >= Duration::from_millis(5), "{stats}");
    let entry = &memory.entries(None).unwrap()[0];
    let stored = memory
        .entry_metadata(&entry.func, &entry.args_id)
        .unwrap()
        .unwrap()
        .duration;
    let expected = Duration::from_secs_f64(stored) * 8;
    let error = stats.time_saved.abs_diff(expected);
    assert!(
        error <= Duration::from_micros(1),
        "{stats} vs 8 × {stored}s"
    );

    let memory_stats = memory.stats().unwrap();
    assert_eq!(memory_stats.calls, stats);
    assert!(
        memory_stats.store.hits + memory_stats.store.misses > 9,
        "the store answered more reads than there were calls: {memory_stats}"
    );
    assert!(
        memory_stats
            .to_string()
            .starts_with("9 calls: 8 hits, 1 miss")
    );
    let by_name = memory.call_stats();
    assert_eq!(by_name.get("slow_square"), Some(&stats));
}

/// A value whose serialization fails: its calls cannot be keyed.
struct Unhashable;

impl serde::Serialize for Unhashable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not today"))
    }
}

/// Calls that run without the store (arguments that cannot be hashed) count as calls, neither
/// hits nor misses, with their compute time; `check_call_in_cache` is not a call.
#[test]
fn calls_without_the_store_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::builder()
        .path(dir.path())
        .reporter(cachette::Reporter::new(|_| {}))
        .build()
        .unwrap();
    let f = memory.cache(|_: Unhashable| 1_u64).name("unhashable");
    f.eval(Unhashable);
    f.eval(Unhashable);
    assert!(!f.check_call_in_cache(&Unhashable));
    let stats = f.stats();
    assert_eq!(
        (stats.calls, stats.hits, stats.misses),
        (2, 0, 0),
        "{stats}"
    );
}

/// Memories on one store (processes, machines) each write their counts; any of them reads the
/// sum. The last clone of a memory writes its counts when dropped.
#[test]
fn stored_statistics_sum_every_memory_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let first = on_disk(dir.path());
    let second = on_disk(dir.path());
    let f1 = first.cache_fn(slow_square).name("slow_square");
    let f2 = second.cache_fn(slow_square).name("slow_square");
    f1.eval(1); // miss
    f1.eval(1); // hit
    f2.eval(1); // hit (stored by the first)
    f2.eval(2); // miss
    first.flush_stats().unwrap();
    second.flush_stats().unwrap();
    // A third one calls, and is dropped without flushing.
    {
        let third = on_disk(dir.path());
        let f3 = third.cache_fn(slow_square).name("slow_square");
        f3.eval(2); // hit
        f3.eval(3); // miss
    }
    let reader = on_disk(dir.path());
    let stored = reader.stored_stats().unwrap();
    assert_eq!(stored.functions.len(), 1, "{stored:?}");
    let s = stored.functions[0].stats;
    assert_eq!(stored.functions[0].name, "slow_square");
    assert_eq!((s.calls, s.hits, s.misses), (6, 3, 3), "{s}");
    assert_eq!(stored.unusable, 0);

    // Writing again without new calls changes nothing; new calls replace the writer's item.
    first.flush_stats().unwrap();
    f1.eval(2);
    first.flush_stats().unwrap();
    let s = reader.stored_stats().unwrap().functions[0].stats;
    assert_eq!((s.calls, s.hits, s.misses), (7, 4, 3), "{s}");

    // Clearing the store clears its statistics too.
    reader.clear().unwrap();
    assert!(reader.stored_stats().unwrap().functions.is_empty());
}

/// Hits write nothing: the counts are written at most once per interval, not per call.
#[test]
fn hits_do_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let memory = on_disk(dir.path());
    let f = memory.cache(|x: u64| x + 1).name("inc");
    f.eval(1);
    memory.reset_stats();
    for _ in 0..1000 {
        f.eval(1);
    }
    let store = memory.stats().unwrap().store;
    assert_eq!(store.puts, 0, "{store}");
    assert_eq!(store.deletes, 0, "{store}");
    assert_eq!(f.stats().hits, 1000);
}

/// With an interval, a memory writes its counts by itself, off the callers' threads.
#[test]
fn counts_are_written_in_the_background_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::builder()
        .path(dir.path())
        .call_stats_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let calls = AtomicUsize::new(0);
    let f = memory
        .cache_capturing(|x: u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            x
        })
        .name("id");
    let reader = Memory::builder()
        .path(dir.path())
        .call_stats_interval(Duration::ZERO)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        f.eval(5);
        let stored = reader.stored_stats().unwrap();
        if let Some(s) = stored.functions.first()
            && s.stats.calls >= 2
        {
            assert_eq!(s.stats.misses, 1);
            break;
        }
        assert!(Instant::now() < deadline, "nothing was written: {stored:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// An interval of zero keeps the statistics in the process: nothing is written.
#[test]
fn an_interval_of_zero_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let memory = Memory::builder()
            .path(dir.path())
            .call_stats_interval(Duration::ZERO)
            .build()
            .unwrap();
        let f = memory.cache(|x: u64| x).name("id");
        f.eval(1);
        f.eval(1);
        memory.flush_stats().unwrap();
        assert_eq!(f.stats().calls, 2);
    }
    let reader = on_disk(dir.path());
    assert!(reader.stored_stats().unwrap().functions.is_empty());
}

/// On the remote stores, through the same items.
#[cfg(all(any(feature = "s3", feature = "redis"), feature = "testkit"))]
fn shared_between_memories(url: &str) {
    let first = Memory::from_url(url).unwrap();
    let second = Memory::from_url(url).unwrap();
    let f1 = first.cache_fn(slow_square).name("square");
    let f2 = second.cache_fn(slow_square).name("square");
    f1.eval(1);
    f2.eval(1);
    f2.eval(1);
    first.flush_stats().unwrap();
    second.flush_stats().unwrap();
    let s = first.stored_stats().unwrap();
    assert_eq!(s.functions.len(), 1, "{s:?}");
    let s = s.functions[0].stats;
    assert_eq!((s.calls, s.hits, s.misses), (3, 2, 1), "{s}");
    first.clear().unwrap();
    assert!(first.stored_stats().unwrap().functions.is_empty());
}

#[cfg(all(feature = "redis", feature = "testkit"))]
#[test]
fn stored_statistics_on_redis() {
    let Some(server) = cachette::plugin::testkit::server_from_env("CACHETTE_TEST_REDIS_URL") else {
        return;
    };
    let url = format!(
        "{server}?prefix={}",
        cachette::plugin::testkit::unique_root("stats")
    );
    shared_between_memories(&url);
}

#[cfg(all(feature = "s3", feature = "testkit"))]
#[test]
fn stored_statistics_on_s3() {
    let Some(endpoint) = cachette::plugin::testkit::server_from_env("CACHETTE_TEST_S3_ENDPOINT")
    else {
        return;
    };
    let bucket =
        std::env::var("CACHETTE_TEST_S3_BUCKET").unwrap_or_else(|_| "cachette-test".to_owned());
    let url = format!(
        "s3://{bucket}/{}?endpoint={endpoint}&allow_http=true",
        cachette::plugin::testkit::unique_root("stats")
    );
    shared_between_memories(&url);
}
