//! The conformance suite every backend runs (feature `testkit`; outside semver).
//!
//! Call [`run_all`] from a multi-threaded tokio test with a fresh backend; it works under a
//! random root prefix and deletes it at the end. Each check is also public, for backends that
//! want to run them one by one. Checks panic with a message naming the broken promise.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! let backend = Arc::new(cachette_core::plugin::InMemoryBackend::new());
//! cachette_core::plugin::testkit::run_all(backend).await;
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{
    Blob, ClaimAttempt, DynBackend, GetOptions, GetPayload, GetResult, PutOptions, PutOutcome,
    StoreBackend, StoreBackendExt,
};
use crate::key::{Key, Prefix};
use crate::rt;

/// A unique root prefix for one run.
pub fn unique_root(tag: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conformance-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The one warning a memory gave while its store refused every operation (an error of the
/// whole store opens its breaker at once): asserts that there is exactly one, and that it says
/// so. For further checks of its text.
pub fn the_warning_of_a_refusing_store(warnings: &[String]) -> &str {
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("refuses every operation"),
        "{}",
        warnings[0]
    );
    &warnings[0]
}

/// The address of a test server from the environment, or `None` to skip. Under `CI=true` a
/// missing variable fails the test instead: backends are never skipped in silence there.
pub fn server_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{var} is not set, and CI=true: start the test servers with `cargo xtask services start` (cargo xtask ci does it)"
            );
            eprintln!(
                "SKIPPED: {var} is not set; run `eval \"$(cargo xtask services start)\"` to test against a real server"
            );
            None
        }
    }
}

fn key(root: &str, rest: &str) -> Key {
    Key::new(format!("{root}/{rest}")).expect("valid test key")
}

/// `len` bytes of a pattern whose period (251) is no power of two, so a misplaced range shows.
fn pattern(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// What a read gave, comparable: the item's size and the bytes read.
fn shape(found: Option<GetResult>) -> Option<(u64, Bytes)> {
    found.map(|found| {
        let size = found.size;
        (size, found.into_bytes().expect("read the payload"))
    })
}

fn prefix(root: &str, rest: &str) -> Prefix {
    Prefix::new(format!("{root}/{rest}")).expect("valid test prefix")
}

/// Runs every check.
pub async fn run_all(backend: DynBackend) {
    let root = unique_root(backend.scheme());
    round_trip(&*backend, &root).await;
    unusual_keys(&*backend, &root).await;
    missing_is_a_value(&*backend, &root).await;
    ranged_reads(&*backend, &root).await;
    reads_now_agree(&*backend, &root).await;
    expected_bytes_change_nothing(&*backend, &root).await;
    writes_that_delete(&*backend, &root).await;
    own_claims(&*backend, &root).await;
    prefix_listing(&*backend, &root).await;
    delete_prefix_is_scoped(&*backend, &root).await;
    access_tracking(&*backend, &root).await;
    heads_and_local_files(&*backend, &root).await;
    segmented_writes(&*backend, &root).await;
    create_if_absent(backend.clone(), &root).await;
    atomic_visibility(backend.clone(), &root).await;
    large_item(&*backend, &root).await;
    backend
        .delete_prefix(&Prefix::new(root.clone()).expect("valid root"))
        .await
        .expect("cleaning up the root prefix");
    let left = backend
        .list(&Prefix::new(root).expect("valid root"))
        .await
        .expect("listing after clean-up");
    assert!(left.is_empty(), "delete_prefix left {left:?}");
}

/// Empty and small items round-trip, and replacing an item works.
pub async fn round_trip(b: &dyn StoreBackend, root: &str) {
    for (name, value) in [
        ("empty", Bytes::new()),
        ("small", Bytes::from_static(b"hello, cachette")),
        ("binary", Bytes::from((0..=255u8).collect::<Vec<_>>())),
    ] {
        let k = key(root, &format!("rt/{name}"));
        b.put(&k, value.clone().into()).await.expect("put");
        assert_eq!(
            b.get(&k).await.expect("get").as_ref(),
            Some(&value),
            "{name}"
        );
        assert!(b.contains(&k).await.expect("contains"), "{name}");
    }
    let k = key(root, "rt/small");
    b.put(&k, Bytes::from_static(b"replaced").into())
        .await
        .expect("replace");
    assert_eq!(
        b.get(&k).await.expect("get").as_deref(),
        Some(&b"replaced"[..])
    );
    b.delete(&k).await.expect("delete");
    assert_eq!(b.get(&k).await.expect("get after delete"), None);
    b.delete(&k)
        .await
        .expect("deleting a missing item is not an error");
}

/// Keys with spaces, unicode and punctuation round-trip and list back verbatim.
pub async fn unusual_keys(b: &dyn StoreBackend, root: &str) {
    let names = [
        "with space",
        "ünïcödé-日本語",
        "percent%20and+plus=&amp;",
        "hash#question?",
        "quote\"apostrophe'",
        "colon:semicolon;comma,",
        "tilde~at@dollar$",
        "dots..in.middle",
        ".leading-dot",
        "trailing-dot.",
        "brackets[](){}<>",
        "emoji-🦀",
    ];
    let long = "L".repeat(200);
    let mut all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    all.push(long);
    for name in &all {
        let k = key(root, &format!("odd/{name}"));
        let value = Bytes::from(name.clone().into_bytes());
        b.put(&k, value.clone().into())
            .await
            .unwrap_or_else(|e| panic!("put {name:?}: {e}"));
        assert_eq!(
            b.get(&k).await.expect("get").as_ref(),
            Some(&value),
            "{name:?}"
        );
    }
    let mut listed: Vec<String> = b
        .list(&prefix(root, "odd"))
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.key.file_name().to_owned())
        .collect();
    listed.sort();
    all.sort();
    assert_eq!(listed, all, "listing must give keys back verbatim");
}

/// A missing item is `Ok(None)` / `false`, never an error.
pub async fn missing_is_a_value(b: &dyn StoreBackend, root: &str) {
    let k = key(root, "missing/nothing-here");
    assert_eq!(b.get(&k).await.expect("get of a missing item"), None);
    assert_eq!(
        b.get_range(&k, 0..10)
            .await
            .expect("get_range of a missing item"),
        None
    );
    assert!(!b.contains(&k).await.expect("contains of a missing item"));
    assert!(
        b.list(&prefix(root, "missing"))
            .await
            .expect("list of an empty prefix")
            .is_empty()
    );
}

/// Ranged reads give the requested bytes, clamped to the item.
pub async fn ranged_reads(b: &dyn StoreBackend, root: &str) {
    let k = key(root, "range/item");
    let value = pattern(10_000);
    b.put(&k, Bytes::from(value.clone()).into())
        .await
        .expect("put");
    for (start, end) in [(0u64, 48u64), (100, 4196), (9_990, 20_000), (0, 10_000)] {
        let got = b
            .get_range(&k, start..end)
            .await
            .expect("get_range")
            .expect("exists");
        let s = start as usize;
        let e = (end as usize).min(value.len());
        assert_eq!(&got[..], &value[s..e], "range {start}..{end}");
    }
}

/// A read answered by [`StoreBackend::get_now`] is the one [`StoreBackend::get_opts`] gives:
/// whole, ranged, a head, or a miss.
pub async fn reads_now_agree(b: &dyn StoreBackend, root: &str) {
    let k = key(root, "now/item");
    let value = pattern(300);
    b.put(&k, Bytes::from(value).into()).await.expect("put");
    let missing = key(root, "now/missing");
    for (name, key, options) in [
        ("whole", &k, GetOptions::default()),
        ("hit", &k, GetOptions::hit()),
        ("range", &k, GetOptions::range(10..50)),
        ("head", &k, GetOptions::head()),
        ("missing", &missing, GetOptions::hit()),
    ] {
        let Some(now) = b.get_now(key, &options) else {
            continue;
        };
        let now = now.expect("get_now");
        let awaited = b.get_opts(key, options).await.expect("get_opts");
        assert_eq!(shape(now), shape(awaited), "{name}");
    }
}

/// A read with [`GetOptions::expected`] gives what the same read without it gives, whether the
/// item holds the expected bytes or others, through `get_opts` and `get_now` alike.
pub async fn expected_bytes_change_nothing(b: &dyn StoreBackend, root: &str) {
    let k = key(root, "expected/item");
    let value = pattern(300);
    b.put(&k, Bytes::from(value.clone()).into())
        .await
        .expect("put");
    let mut changed = value.clone();
    changed[150] ^= 1;
    let expectations = [
        ("the same bytes", Bytes::from(value.clone())),
        ("a changed byte", Bytes::from(changed)),
        ("fewer bytes", Bytes::from(value[..299].to_vec())),
        ("none", Bytes::new()),
    ];
    for (what, expected) in expectations {
        for (name, options) in [
            ("hit", GetOptions::hit()),
            ("range", GetOptions::range(10..50)),
            ("head", GetOptions::head()),
        ] {
            let plain = shape(b.get_opts(&k, options.clone()).await.expect("get_opts"));
            let with = options.with_expected(Some(expected.clone()));
            if let Some(now) = b.get_now(&k, &with) {
                assert_eq!(shape(now.expect("get_now")), plain, "{what}, {name}, now");
            }
            let awaited = shape(b.get_opts(&k, with).await.expect("get_opts"));
            assert_eq!(awaited, plain, "{what}, {name}");
        }
    }
}

/// A backend's own claims ([`StoreBackend::try_claim`]), if it has them: one holder per key,
/// its holder included, released when the guard is dropped, and no item written.
pub async fn own_claims(b: &dyn StoreBackend, root: &str) {
    let k = key(root, "claims/entry");
    let attempt = |k: &Key| match b.try_claim(k) {
        None => None,
        Some(Ok(attempt)) => Some(attempt),
        Some(Err(e)) => panic!("try_claim: {e}"),
    };
    let Some(first) = attempt(&k) else {
        return;
    };
    let ClaimAttempt::Held(held) = first else {
        panic!("a free claim is taken");
    };
    assert!(
        matches!(attempt(&k), Some(ClaimAttempt::Busy)),
        "a held claim is not taken again, by its holder either"
    );
    let other = attempt(&key(root, "claims/other"));
    assert!(
        matches!(other, Some(ClaimAttempt::Held(_))),
        "another key's claim is free"
    );
    drop((held, other));
    assert!(
        matches!(attempt(&k), Some(ClaimAttempt::Held(_))),
        "a dropped claim is released"
    );
    let listed = b
        .list(&prefix(root, "claims"))
        .await
        .expect("list after claims");
    assert!(listed.is_empty(), "claims wrote items: {listed:?}");
}

/// [`StoreBackend::put_then_delete`] writes its item and deletes the other; a missing item to
/// delete is no error.
pub async fn writes_that_delete(b: &dyn StoreBackend, root: &str) {
    let claim = key(root, "ptd/entry.claim");
    let entry = key(root, "ptd/entry");
    b.put(&claim, Bytes::from_static(b"claim").into())
        .await
        .expect("put");
    let outcome = b
        .put_then_delete(
            &entry,
            Bytes::from_static(b"entry").into(),
            PutOptions::default(),
            &claim,
        )
        .await
        .expect("put_then_delete");
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(
        b.get(&entry).await.expect("get").as_deref(),
        Some(&b"entry"[..])
    );
    assert_eq!(
        b.get(&claim).await.expect("get"),
        None,
        "deleted with the write"
    );
    let outcome = b
        .put_then_delete(
            &entry,
            Bytes::from_static(b"again").into(),
            PutOptions::default(),
            &claim,
        )
        .await
        .expect("put_then_delete of a missing item");
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(
        b.get(&entry).await.expect("get").as_deref(),
        Some(&b"again"[..])
    );
    b.delete(&entry).await.expect("delete");
}

/// Listing matches whole segments only and reports sizes.
pub async fn prefix_listing(b: &dyn StoreBackend, root: &str) {
    for (name, size) in [
        ("p/a/x", 1usize),
        ("p/a/y", 22),
        ("p/ab/z", 333),
        ("q/a/x", 4),
    ] {
        b.put(&key(root, name), Bytes::from(vec![7u8; size]).into())
            .await
            .expect("put");
    }
    let mut listed: Vec<(String, u64)> = b
        .list(&prefix(root, "p/a"))
        .await
        .expect("list")
        .into_iter()
        .map(|i| (i.key.as_str().to_owned(), i.size))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![(format!("{root}/p/a/x"), 1), (format!("{root}/p/a/y"), 22)],
        "prefix p/a must not match p/ab"
    );
    let all = b.list(&prefix(root, "p")).await.expect("list");
    assert_eq!(all.len(), 3);
}

/// Deleting a prefix deletes everything under it and nothing else.
pub async fn delete_prefix_is_scoped(b: &dyn StoreBackend, root: &str) {
    for name in ["d/a/x", "d/a/y/z", "d/ab/keep", "d/keep", "e/a/keep"] {
        b.put(&key(root, name), Bytes::from_static(b"v").into())
            .await
            .expect("put");
    }
    let deleted = b
        .delete_prefix(&prefix(root, "d/a"))
        .await
        .expect("delete_prefix");
    assert_eq!(deleted, 2, "delete_prefix must report what it deleted");
    for gone in ["d/a/x", "d/a/y/z"] {
        assert!(
            !b.contains(&key(root, gone)).await.expect("contains"),
            "{gone}"
        );
    }
    for kept in ["d/ab/keep", "d/keep", "e/a/keep"] {
        assert!(
            b.contains(&key(root, kept)).await.expect("contains"),
            "delete_prefix d/a deleted {kept}"
        );
    }
    b.delete_many(&[
        key(root, "d/ab/keep"),
        key(root, "d/keep"),
        key(root, "d/never"),
    ])
    .await
    .expect("delete_many");
    assert!(!b.contains(&key(root, "d/keep")).await.expect("contains"));
    assert!(b.contains(&key(root, "e/a/keep")).await.expect("contains"));
}

/// A read counts as an access: listing reports it.
pub async fn access_tracking(b: &dyn StoreBackend, root: &str) {
    let (old, new) = (key(root, "lru/old"), key(root, "lru/new"));
    b.put(&old, Bytes::from_static(b"1").into())
        .await
        .expect("put");
    b.put(&new, Bytes::from_static(b"2").into())
        .await
        .expect("put");
    // Access tracking may have a granularity of about a second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    b.get(&old).await.expect("get").expect("exists");
    let items = b.list(&prefix(root, "lru")).await.expect("list");
    let at = |k: &Key| {
        items
            .iter()
            .find(|i| &i.key == k)
            .map(|i| i.last_access)
            .expect("listed")
    };
    assert!(
        at(&old) > at(&new),
        "an item read after another was written must count as more recently accessed ({} vs {})",
        at(&old),
        at(&new)
    );
    // Reads that only look record nothing: ranged reads and `head`.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    b.get_range(&new, 0..1)
        .await
        .expect("get_range")
        .expect("exists");
    b.head(&new).await.expect("head").expect("exists");
    b.get_opts(&new, GetOptions::default())
        .await
        .expect("get_opts without record_access")
        .expect("exists");
    let items = b.list(&prefix(root, "lru")).await.expect("list");
    let at = |k: &Key| {
        items
            .iter()
            .find(|i| &i.key == k)
            .map(|i| i.last_access)
            .expect("listed")
    };
    assert!(
        at(&old) > at(&new),
        "reads without record_access must not count as accesses ({} vs {})",
        at(&old),
        at(&new)
    );
}

/// `head` gives the size without the bytes; a read that asks for a local file gets one holding
/// exactly the item when the backend has local files, and bytes otherwise.
pub async fn heads_and_local_files(b: &dyn StoreBackend, root: &str) {
    let k = key(root, "head/item");
    let value = Bytes::from(vec![5u8; 3000]);
    b.put(&k, value.clone().into()).await.expect("put");
    let head = b
        .get_opts(&k, GetOptions::head())
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.size, 3000);
    assert!(
        matches!(&head.payload, GetPayload::Bytes(bytes) if bytes.is_empty()),
        "a head read gives no bytes"
    );
    let part = b
        .get_opts(&k, GetOptions::range(10..20))
        .await
        .expect("get_range")
        .expect("exists");
    assert_eq!(part.size, 3000, "a ranged read gives the item's whole size");
    let found = b
        .get_opts(&k, GetOptions::default().with_local_file(true))
        .await
        .expect("get_opts with local_file")
        .expect("exists");
    // A backend with local files may still answer with bytes (an item it keeps elsewhere,
    // such as a small one in an index); one without never gives a file.
    let is_file = matches!(found.payload, GetPayload::File(_));
    assert!(
        !is_file || b.capabilities().local_files,
        "a local file is given only by a backend whose capabilities say it can"
    );
    assert_eq!(found.into_bytes().expect("read the file"), value);
}

/// A value given as several segments is stored as their concatenation, by `put` and by
/// `put_if_absent`, whatever the segment sizes (some cross the chunk sizes of chunked stores).
pub async fn segmented_writes(b: &dyn StoreBackend, root: &str) {
    let sizes = [48usize, 3 << 20, 1, 5 << 20, 64, 1234];
    let mut blob = Blob::new();
    let mut whole = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let part: Vec<u8> = (0..size).map(|j| (j * 7 + i * 13) as u8).collect();
        whole.extend_from_slice(&part);
        blob.push(Bytes::from(part));
    }
    let whole = Bytes::from(whole);
    let k = key(root, "segments/put");
    b.put(&k, blob.clone())
        .await
        .expect("put of a segmented value");
    let got = b.get(&k).await.expect("get").expect("exists");
    assert!(got == whole, "a segmented put came back different");
    let got = b
        .get_range(&k, 3 << 20..(3 << 20) + 100)
        .await
        .expect("get_range")
        .expect("exists");
    assert_eq!(&got[..], &whole[3 << 20..(3 << 20) + 100]);
    let k = key(root, "segments/create");
    assert_eq!(
        b.put_if_absent(&k, blob).await.expect("put_if_absent"),
        PutOutcome::Created
    );
    let got = b.get(&k).await.expect("get").expect("exists");
    assert!(
        got == whole,
        "a segmented put_if_absent came back different"
    );
}

/// Eight racers create one key: exactly one wins, and its value is what is stored.
pub async fn create_if_absent(b: DynBackend, root: &str) {
    let k = key(root, "claim/the-key");
    let winners = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..8u8 {
        let (b, k, winners) = (b.clone(), k.clone(), winners.clone());
        handles.push(std::thread::spawn(move || {
            let blocking = b.capabilities().blocking_io;
            let outcome = rt::block_on(
                blocking,
                b.put_if_absent(&k, Bytes::from(vec![i; 1000]).into()),
            )
            .expect("runtime")
            .expect("put_if_absent");
            if outcome == PutOutcome::Created {
                winners.fetch_add(1, Ordering::SeqCst);
                Some(i)
            } else {
                None
            }
        }));
    }
    let winner: Vec<u8> = handles
        .into_iter()
        .filter_map(|h| h.join().expect("racer thread"))
        .collect();
    assert_eq!(
        winners.load(Ordering::SeqCst),
        1,
        "exactly one creator must win"
    );
    let stored = b.get(&k).await.expect("get").expect("exists");
    assert_eq!(&stored[..], &vec![winner[0]; 1000][..]);
    assert_eq!(
        b.put_if_absent(&k, Bytes::from_static(b"late").into())
            .await
            .expect("put_if_absent"),
        PutOutcome::AlreadyExists
    );
}

/// Eight writers race on one key while readers read: every read is whole.
pub async fn atomic_visibility(b: DynBackend, root: &str) {
    const SIZE: usize = 256 * 1024;
    let k = key(root, "race/item");
    b.put(&k, Bytes::from(vec![0u8; SIZE]).into())
        .await
        .expect("initial put");
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (b, k, done, reads) = (b.clone(), k.clone(), done.clone(), reads.clone());
        readers.push(std::thread::spawn(move || {
            let blocking = b.capabilities().blocking_io;
            // Each reader reads at least once, however fast the writers are.
            loop {
                let got = rt::block_on(blocking, b.get(&k))
                    .expect("runtime")
                    .expect("get during the race")
                    .expect("the item never disappears while being replaced");
                assert_eq!(got.len(), SIZE, "a read saw a partial item");
                let first = got[0];
                assert!(
                    got.iter().all(|&x| x == first),
                    "a read saw a mix of two writes"
                );
                reads.fetch_add(1, Ordering::Relaxed);
                if done.load(Ordering::SeqCst) || Instant::now() >= deadline {
                    break;
                }
            }
        }));
    }
    let mut writers = Vec::new();
    for i in 1..=8u8 {
        let (b, k) = (b.clone(), k.clone());
        writers.push(std::thread::spawn(move || {
            let blocking = b.capabilities().blocking_io;
            for _ in 0..10 {
                rt::block_on(blocking, b.put(&k, Bytes::from(vec![i; SIZE]).into()))
                    .expect("runtime")
                    .expect("racing put");
            }
        }));
    }
    for w in writers {
        w.join().expect("writer thread");
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().expect("reader thread");
    }
    assert!(reads.load(Ordering::Relaxed) > 0, "readers never read");
    let last = b.get(&k).await.expect("get").expect("exists");
    assert!((1..=8).contains(&last[0]), "the last write must win");
}

/// A 64 MiB item round-trips.
pub async fn large_item(b: &dyn StoreBackend, root: &str) {
    let k = key(root, "large/64mib");
    let value: Vec<u8> = (0..64 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let value = Bytes::from(value);
    b.put(&k, value.clone().into()).await.expect("put 64 MiB");
    let got = b.get(&k).await.expect("get 64 MiB").expect("exists");
    assert!(got == value, "the 64 MiB item came back different");
    let listed = b.list(&prefix(root, "large")).await.expect("list");
    assert_eq!(listed[0].size, 64 * 1024 * 1024);
    b.delete(&k).await.expect("delete");
}
