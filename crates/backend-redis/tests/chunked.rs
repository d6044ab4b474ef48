//! Items larger than the chunk size: ranged reads across chunk boundaries, racing overwrites
//! that never yield mixed data, and the life cycle of chunks.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachette_core::plugin::{
    GetOptions, Key, Prefix, PutOutcome, StoreBackend, StoreBackendExt, block_on,
};
use cachette_redis::RedisBackend;

const CHUNK: u64 = 1000;

fn pattern(size: usize) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| (i.wrapping_mul(7) % 251) as u8)
            .collect::<Vec<_>>(),
    )
}

fn prefix_of(backend: &RedisBackend) -> String {
    backend.config().prefix.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_cross_chunk_boundaries() {
    for (kind, b) in common::both("ranges", |c| c.with_chunk_size(CHUNK)) {
        let key = Key::new("f/ranged").unwrap();
        let value = pattern(10_500);
        b.put(&key, value.clone().into()).await.unwrap();
        assert_eq!(b.get(&key).await.unwrap().as_ref(), Some(&value), "{kind}");
        for (start, end) in [
            (0u64, 1000u64),
            (0, 1),
            (999, 1001),
            (1000, 2000),
            (1500, 4500),
            (2999, 7001),
            (9999, 20_000),
            (10_499, 10_500),
            (0, 10_500),
            (0, u64::MAX),
        ] {
            let got = b.get_range(&key, start..end).await.unwrap().unwrap();
            let e = (end as usize).min(value.len());
            assert_eq!(
                &got[..],
                &value[start as usize..e],
                "{kind}: {start}..{end}"
            );
        }
        for empty in [10_500u64..10_600, 20_000..30_000, 5..5] {
            let got = b.get_range(&key, empty.clone()).await.unwrap();
            assert_eq!(got, Some(Bytes::new()), "{kind}: {empty:?}");
        }
        let listed = b.list(&Prefix::new("f").unwrap()).await.unwrap();
        assert_eq!(listed.len(), 1, "{kind}");
        assert_eq!(listed[0].size, 10_500, "{kind}");
        // Exactly one item's worth of chunks: 11.
        let mut raw = common::Raw::of(&b).await;
        let chunks = raw
            .keys(&format!("{{{}:f/ranged}}:c:*", prefix_of(&b)))
            .await;
        assert_eq!(chunks.len(), 11, "{kind}: {chunks:?}");
        b.delete(&key).await.unwrap();
        assert_eq!(b.get(&key).await.unwrap(), None);
        let chunks = raw.keys(&format!("{{{}:f/ranged}}*", prefix_of(&b))).await;
        assert!(chunks.is_empty(), "{kind}: delete left {chunks:?}");
    }
}

/// Writers replace a chunked item over and over while readers read it whole and in ranges:
/// every read is one write's bytes, never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_never_mix() {
    const SIZE: usize = 16 * 1024;
    for (kind, b) in common::both("race", |c| {
        c.with_chunk_size(1024)
            .with_chunk_grace(Duration::from_secs(2))
    }) {
        let b = Arc::new(b);
        let key = Key::new("race/item").unwrap();
        b.put(&key, Bytes::from(vec![0u8; SIZE]).into())
            .await
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut readers = Vec::new();
        for r in 0..3 {
            let (b, key, done, reads) = (b.clone(), key.clone(), done.clone(), reads.clone());
            readers.push(std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let got = if r == 0 {
                        block_on(false, b.get_range(&key, 1000..9000))
                    } else {
                        block_on(false, b.get(&key))
                    }
                    .unwrap()
                    .expect("read during the race")
                    .expect("the item never disappears while being replaced");
                    let len = if r == 0 { 8000 } else { SIZE };
                    assert_eq!(got.len(), len, "{kind}: partial read");
                    assert!(
                        got.iter().all(|&x| x == got[0]),
                        "{kind}: a read mixed two writes"
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let mut writers = Vec::new();
        for w in 1..=4u8 {
            let (b, key) = (b.clone(), key.clone());
            writers.push(std::thread::spawn(move || {
                for _ in 0..25 {
                    block_on(false, b.put(&key, Bytes::from(vec![w; SIZE]).into()))
                        .unwrap()
                        .expect("racing put");
                }
            }));
        }
        for w in writers {
            w.join().expect("writer");
        }
        done.store(true, Ordering::SeqCst);
        for r in readers {
            r.join().expect("reader");
        }
        assert!(
            reads.load(Ordering::Relaxed) > 0,
            "{kind}: readers never read"
        );
        let last = b.get(&key).await.unwrap().unwrap();
        assert!((1..=4).contains(&last[0]));
        // Replaced chunks expire after the grace period: only the last write's stay.
        let mut raw = common::Raw::of(&b).await;
        let pattern = format!("{{{}:race/item}}:c:*", prefix_of(&b));
        let settle = Instant::now() + Duration::from_secs(10);
        loop {
            let left = raw.keys(&pattern).await.len();
            if left == SIZE / 1024 {
                break;
            }
            assert!(Instant::now() < settle, "{kind}: {left} chunks left");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        b.delete_prefix(&Prefix::root()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_if_absent_and_size_changes() {
    for (kind, b) in common::both("sizes", |c| {
        c.with_chunk_size(CHUNK)
            .with_chunk_grace(Duration::from_secs(1))
    }) {
        let key = Key::new("s/item").unwrap();
        let big = pattern(5000);
        assert_eq!(
            b.put_if_absent(&key, big.clone().into()).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            b.put_if_absent(&key, pattern(3000).into()).await.unwrap(),
            PutOutcome::AlreadyExists,
            "{kind}"
        );
        assert_eq!(
            b.put_if_absent(&key, Bytes::from_static(b"small").into())
                .await
                .unwrap(),
            PutOutcome::AlreadyExists,
            "{kind}"
        );
        assert_eq!(b.get(&key).await.unwrap().as_ref(), Some(&big));
        // Chunked → whole → chunked → deleted: always the last write, no chunk left behind.
        b.put(&key, Bytes::from_static(b"small").into())
            .await
            .unwrap();
        assert_eq!(
            b.get(&key).await.unwrap().as_deref(),
            Some(&b"small"[..]),
            "{kind}"
        );
        assert_eq!(
            b.get_range(&key, 1..3).await.unwrap().as_deref(),
            Some(&b"ma"[..])
        );
        let bigger = pattern(7777);
        b.put(&key, bigger.clone().into()).await.unwrap();
        assert_eq!(b.get(&key).await.unwrap().as_ref(), Some(&bigger), "{kind}");
        let listed = b.list(&Prefix::new("s").unwrap()).await.unwrap();
        assert_eq!(listed[0].size, 7777, "{kind}");
        let mut raw = common::Raw::of(&b).await;
        let pattern = format!("{{{}:s/item}}:c:*", prefix_of(&b));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(raw.keys(&pattern).await.len(), 8, "{kind}");
        assert_eq!(b.delete_prefix(&Prefix::root()).await.unwrap(), 1);
        assert!(raw.keys(&pattern).await.is_empty(), "{kind}");
    }
}

/// A writer that died before publishing leaves chunks only: nothing is visible, and the
/// chunks expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_chunks_are_invisible() {
    for (kind, b) in common::both("orphans", |c| c.with_chunk_size(CHUNK)) {
        let mut raw = common::Raw::of(&b).await;
        let chunk = format!("{{{}:o/item}}:c:deadbeef:0", prefix_of(&b));
        raw.query::<()>(redis::cmd("SET").arg(&chunk).arg("x").arg("PX").arg(1000))
            .await;
        let key = Key::new("o/item").unwrap();
        assert_eq!(b.get(&key).await.unwrap(), None, "{kind}");
        assert!(!b.contains(&key).await.unwrap());
        assert!(b.list(&Prefix::root()).await.unwrap().is_empty(), "{kind}");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(raw.keys(&chunk).await.is_empty());
    }
}

/// Listing writes nothing; sweeping removes at once the chunks of a writer of this host that
/// died before publishing them, and nothing else: not the chunks of a published item whose
/// writer is gone, of a writer still running, of a writer of another host, nor of items outside
/// the swept prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_removes_the_chunks_of_dead_writers() {
    for (kind, b) in common::both("sweep", |c| c.with_chunk_size(CHUNK)) {
        let ns = prefix_of(&b);
        let mut raw = common::Raw::of(&b).await;
        // The write ids of this process name its host: learn them from a real chunked write.
        let probe = Key::new("s/probe").unwrap();
        b.put(&probe, pattern(2500).into()).await.unwrap();
        let own: String = raw
            .query(redis::cmd("HGET").arg(format!("{ns}:s/probe")).arg("w"))
            .await;
        let (tag, rest) = own.split_once('-').unwrap();
        assert!(
            rest.starts_with(&format!("{}-", std::process::id())),
            "{own}"
        );
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let id =
            |tag: &str, pid: u32, n: u8| format!("{tag}-{pid}-{}", format!("{n:x}").repeat(32));
        // Chunks in transit, as a writer leaves them (with the grace expiry).
        let orphan = |item: &str, id: &str, i: u64| format!("{{{ns}:{item}}}:c:{id}:{i}");
        let leftovers = [
            ("s/dead", id(tag, dead, 1)),
            ("u/dead", id(tag, dead, 2)),
            ("s/live", id(tag, std::process::id(), 3)),
            ("s/elsewhere", id("0000beef", dead, 4)),
        ];
        for (item, id) in &leftovers {
            for i in 0..3 {
                raw.query::<()>(
                    redis::cmd("SET")
                        .arg(orphan(item, id, i))
                        .arg("x")
                        .arg("PX")
                        .arg(60_000),
                )
                .await;
            }
        }
        // A published item whose writer is gone.
        let published = id(tag, dead, 5);
        let value = pattern(1500);
        for (i, part) in value.chunks(CHUNK as usize).enumerate() {
            raw.query::<()>(
                redis::cmd("SET")
                    .arg(orphan("s/published", &published, i as u64))
                    .arg(part),
            )
            .await;
        }
        raw.query::<()>(redis::cmd("HSET").arg(format!("{ns}:s/published")).arg(&[
            "w",
            &published,
            "n",
            "2",
            "s",
            "1500",
            "c",
            &CHUNK.to_string(),
        ]))
        .await;
        let chunks = |item: &str| format!("{{{ns}:{item}}}:c:*");

        // Listing sees the published items only, and deletes nothing.
        let listed = b.list(&Prefix::new("s").unwrap()).await.unwrap();
        let mut keys: Vec<&str> = listed.iter().map(|i| i.key.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["s/probe", "s/published"], "{kind}");
        assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 2, "{kind}");
        for (item, _) in &leftovers {
            assert_eq!(raw.keys(&chunks(item)).await.len(), 3, "{kind}: {item}");
        }

        // Sweeping `s` removes the dead writer's chunks there only.
        assert_eq!(
            b.sweep(&Prefix::new("s").unwrap()).await.unwrap(),
            3,
            "{kind}"
        );
        assert!(raw.keys(&chunks("s/dead")).await.is_empty(), "{kind}");
        assert_eq!(raw.keys(&chunks("u/dead")).await.len(), 3, "{kind}");
        assert_eq!(raw.keys(&chunks("s/live")).await.len(), 3, "{kind}");
        assert_eq!(raw.keys(&chunks("s/elsewhere")).await.len(), 3, "{kind}");
        assert_eq!(raw.keys(&chunks("s/published")).await.len(), 2, "{kind}");
        let key = Key::new("s/published").unwrap();
        assert_eq!(b.get(&key).await.unwrap(), Some(value), "{kind}");
        // Sweeping everything removes the rest, and nothing else.
        assert_eq!(b.sweep(&Prefix::root()).await.unwrap(), 3, "{kind}");
        assert!(raw.keys(&chunks("u/dead")).await.is_empty(), "{kind}");
        assert_eq!(raw.keys(&chunks("s/live")).await.len(), 3, "{kind}");
        assert_eq!(raw.keys(&chunks("s/elsewhere")).await.len(), 3, "{kind}");
        assert_eq!(raw.keys(&chunks("s/published")).await.len(), 2, "{kind}");
        assert_eq!(b.sweep(&Prefix::root()).await.unwrap(), 0, "{kind}");
        assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 2, "{kind}");

        b.delete_prefix(&Prefix::root()).await.unwrap();
        for (item, _) in &leftovers {
            for chunk in raw.keys(&chunks(item)).await {
                raw.query::<()>(redis::cmd("UNLINK").arg(chunk)).await;
            }
        }
    }
}

/// Waits for a backend operation, generously: a forged manifest must fail it at once, never
/// keep it sending commands for ever.
async fn soon<T>(what: &str, op: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), op)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish: it follows a forged manifest"))
}

/// A forged or corrupted manifest is refused with a clear error before any chunk is read (a
/// terabyte in chunks of one byte must not make a read send GETs for ever), by whole reads,
/// ranged reads and `head`. Such an item is still listed, with a size within bounds, and can be
/// replaced and deleted, without the scripts following its manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_manifests_fail_fast() {
    for (kind, b) in common::both("forged", |c| c.with_chunk_size(CHUNK)) {
        let ns = prefix_of(&b);
        let mut raw = common::Raw::of(&b).await;
        let tera = "1000000000000";
        let id = "0".repeat(32);
        let long_id = "a".repeat(10_000);
        let cases: &[(&str, [&str; 8], &str)] = &[
            (
                "tera",
                ["w", &id, "n", tera, "s", tera, "c", "1"],
                "exceeds the largest item",
            ),
            (
                "many",
                ["w", &id, "n", "10000000", "s", "10000000", "c", "1"],
                "chunks, more than",
            ),
            (
                "count",
                ["w", &id, "n", "7", "s", "2500", "c", "1000"],
                "does not match",
            ),
            (
                "chunk0",
                ["w", &id, "n", "1", "s", "10", "c", "0"],
                "chunk size",
            ),
            (
                "nan",
                ["w", &id, "n", "1", "s", "ten", "c", "10"],
                "not a number",
            ),
            (
                "foreign-id",
                ["w", "x}:c:y", "n", "1", "s", "10", "c", "10"],
                "write id",
            ),
            (
                "long-id",
                ["w", &long_id, "n", "1", "s", "10", "c", "10"],
                "too long",
            ),
            // A hash with none of the fields: a miss, silently, and for ever.
            (
                "fieldless",
                ["x", "1", "y", "2", "z", "3", "q", "4"],
                "field is missing",
            ),
            (
                "signed",
                ["w", &id, "n", "+1", "s", "10", "c", "10"],
                "not a number",
            ),
        ];
        for (name, fields, _) in cases {
            raw.query::<()>(
                redis::cmd("HSET")
                    .arg(format!("{ns}:f/{name}"))
                    .arg(&fields[..]),
            )
            .await;
        }
        for (name, _, why) in cases {
            let key = Key::new(format!("f/{name}")).unwrap();
            for (read, options) in [
                ("get", GetOptions::hit()),
                ("get_range", GetOptions::range(0..10)),
                ("head", GetOptions::head()),
            ] {
                let err = soon(read, b.get_opts(&key, options))
                    .await
                    .expect_err(&format!("{kind}: {read} of a forged manifest ({name})"));
                let text = err.to_string();
                assert!(
                    text.contains("corrupted") && text.contains(why),
                    "{kind}: {read} {name}: {text}"
                );
            }
        }
        // A key of another Redis type in the namespace is not an item.
        let list_key = format!("{ns}:f/list");
        raw.query::<()>(redis::cmd("RPUSH").arg(&list_key).arg("x"))
            .await;
        let err = soon("get", b.get(&Key::new("f/list").unwrap()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupted"), "{kind}: {err}");

        let listed = soon("list", b.list(&Prefix::new("f").unwrap()))
            .await
            .unwrap();
        assert_eq!(listed.len(), cases.len(), "{kind}: {listed:?}");
        let max = b.capabilities().max_item_size.unwrap();
        assert!(listed.iter().all(|i| i.size <= max), "{kind}: {listed:?}");

        // A write replaces a forged item; deleting removes the others.
        let tera_key = Key::new("f/tera").unwrap();
        soon("put", b.put(&tera_key, pattern(50).into()))
            .await
            .unwrap();
        assert_eq!(b.get(&tera_key).await.unwrap(), Some(pattern(50)), "{kind}");
        soon(
            "put",
            b.put(&Key::new("f/many").unwrap(), pattern(2500).into()),
        )
        .await
        .unwrap();
        let deleted = soon("delete_prefix", b.delete_prefix(&Prefix::new("f").unwrap()))
            .await
            .unwrap();
        assert_eq!(deleted, cases.len() as u64, "{kind}");
        let left = raw.keys(&format!("{ns}:f/*")).await;
        assert_eq!(left, std::slice::from_ref(&list_key), "{kind}");
        raw.query::<()>(redis::cmd("UNLINK").arg(&list_key)).await;
    }
}

/// A manifest may name at most 1,048,576 chunks, and one that names that many is well-formed:
/// the scripts that follow a manifest (deleting, replacing) must still do no more work than the
/// chunks that exist, so that ~100 bytes planted under many keys cannot make one atomic script
/// send millions of commands (and block the server for every client). A chunk planted far
/// beyond the first missing one shows it: the scripts stop before it, and leave it untouched
/// (no `UNLINK`, no expiry). The chunks that exist before the gap still go with the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_size_forged_manifests_bound_the_scripts() {
    for (kind, b) in common::both("bounded", |c| {
        c.with_chunk_size(CHUNK)
            .with_chunk_grace(Duration::from_secs(600))
    }) {
        let ns = prefix_of(&b);
        let mut raw = common::Raw::of(&b).await;
        let id = "0".repeat(32);
        let n = cachette_redis::MAX_CHUNKS;
        let consistent = (n * CHUNK).to_string();
        let (n, chunk) = (n.to_string(), CHUNK.to_string());
        // (name, size, chunk size, chunks planted from 0, how it is removed)
        let cases: &[(&str, &str, &str, u64, &str)] = &[
            ("bytes-del", &n, "1", 0, "delete"),
            ("bytes-put", &n, "1", 0, "put"),
            ("bytes-big", &n, "1", 0, "put chunked"),
            ("bytes-pre", &n, "1", 0, "delete_prefix"),
            ("kilo-del", &consistent, &chunk, 3, "delete"),
            ("kilo-put", &consistent, &chunk, 3, "put"),
            ("kilo-big", &consistent, &chunk, 3, "put chunked"),
            ("kilo-pre", &consistent, &chunk, 3, "delete_prefix"),
        ];
        let chunk_key = |name: &str, i: u64| format!("{{{ns}:g/{name}}}:c:{id}:{i}");
        const FAR: u64 = 100_000;
        for (name, size, c, planted, _) in cases {
            raw.query::<()>(
                redis::cmd("HSET")
                    .arg(format!("{ns}:g/{name}"))
                    .arg(&["w", &id, "n", &n, "s", size, "c", c]),
            )
            .await;
            for i in (0..*planted).chain([FAR]) {
                raw.query::<()>(redis::cmd("SET").arg(chunk_key(name, i)).arg("sentinel"))
                    .await;
            }
        }
        for (name, _, _, _, how) in cases {
            let key = Key::new(format!("g/{name}")).unwrap();
            match *how {
                "delete" => soon("delete", b.delete(&key)).await.unwrap(),
                "put" => soon("put", b.put(&key, pattern(50).into()))
                    .await
                    .map(|_| ())
                    .unwrap(),
                "put chunked" => soon("put", b.put(&key, pattern(2500).into()))
                    .await
                    .map(|_| ())
                    .unwrap(),
                _ => {}
            }
        }
        let pre = cases.iter().filter(|c| c.4 == "delete_prefix").count();
        let deleted = soon("delete_prefix", b.delete_prefix(&Prefix::new("g").unwrap()))
            .await
            .unwrap();
        // The replaced items are deleted too, with the planted ones.
        assert_eq!(deleted, (pre + 4) as u64, "{kind}");
        for (name, _, _, planted, how) in cases {
            let far: Option<String> = raw.query(redis::cmd("GET").arg(chunk_key(name, FAR))).await;
            assert_eq!(
                far.as_deref(),
                Some("sentinel"),
                "{kind}: {how} of {name} walked its manifest to chunk {FAR}"
            );
            let ttl: i64 = raw
                .query(redis::cmd("PTTL").arg(chunk_key(name, FAR)))
                .await;
            assert_eq!(
                ttl, -1,
                "{kind}: {how} of {name} set an expiry on chunk {FAR}"
            );
            for i in 0..*planted {
                let gone: i64 = raw
                    .query(redis::cmd("EXISTS").arg(chunk_key(name, i)))
                    .await;
                if how.starts_with("delete") {
                    assert_eq!(gone, 0, "{kind}: {how} of {name} left chunk {i}");
                } else {
                    let ttl: i64 = raw.query(redis::cmd("PTTL").arg(chunk_key(name, i))).await;
                    assert!(ttl > 0, "{kind}: {how} of {name} did not retire chunk {i}");
                }
            }
        }
        for (name, _, _, planted, _) in cases {
            for i in (0..*planted).chain([FAR]) {
                raw.query::<()>(redis::cmd("UNLINK").arg(chunk_key(name, i)))
                    .await;
            }
        }
        assert!(raw.keys(&format!("*{ns}:g/*")).await.is_empty(), "{kind}");
    }
}

/// Writes larger than the largest item are refused, before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_above_the_limit_are_refused() {
    for (kind, b) in common::both("limit", |c| {
        c.with_chunk_size(CHUNK).with_max_item_size(5000)
    }) {
        assert_eq!(b.capabilities().max_item_size, Some(5000));
        let key = Key::new("l/big").unwrap();
        let err = b.put(&key, pattern(5001).into()).await.unwrap_err();
        assert_eq!(
            err.kind(),
            cachette_core::plugin::ErrorKind::TooLarge,
            "{kind}: {err}"
        );
        assert_eq!(b.get(&key).await.unwrap(), None, "{kind}");
        b.put(&key, pattern(5000).into()).await.unwrap();
        assert_eq!(b.get(&key).await.unwrap(), Some(pattern(5000)), "{kind}");
        b.delete(&key).await.unwrap();
        // A whole value above the limit, written by someone else: refused by every read,
        // as a manifest of that size is (it was read and returned whole).
        let mut raw = common::Raw::of(&b).await;
        raw.query::<()>(
            redis::cmd("SET")
                .arg(format!("{}:l/big", prefix_of(&b)))
                .arg(&pattern(6000)[..]),
        )
        .await;
        for (read, options) in [
            ("get", GetOptions::hit()),
            ("get_range", GetOptions::range(0..10)),
            ("head", GetOptions::head()),
        ] {
            let err = b
                .get_opts(&key, options)
                .await
                .expect_err(&format!("{kind}: {read} of a value above the limit"));
            assert!(err.to_string().contains("exceeds"), "{kind} {read}: {err}");
        }
        let err = cachette_core::plugin::block_on(false, b.get(&key))
            .unwrap()
            .expect_err("a synchronous get of a value above the limit");
        assert!(err.to_string().contains("exceeds"), "{kind}: {err}");
        b.delete(&key).await.unwrap();
    }
    // No more than `MAX_CHUNKS` chunks, whatever `max_item_size` says.
    if let Some(b) = common::single("limit-chunks", |c| c.with_chunk_size(1)) {
        assert_eq!(
            b.capabilities().max_item_size,
            Some(cachette_redis::MAX_CHUNKS)
        );
    }
}
