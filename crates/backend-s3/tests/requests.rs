//! How many requests each operation of a memory makes on S3, counted on the wire by a proxy in
//! front of the S3 test server (moto): what S3 bills, retries included. Prints the tables that
//! `docs/scale.md` shows; run it with
//!
//! ```text
//! CI=true cargo test -p cachette-s3 --test requests -- --nocapture --test-threads=1
//! ```

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use cachette_core::plugin::{Bytes, DynBackend, Prefix, StoreBackend, StoreBackendExt, block_on};
use cachette_core::{Memory, SizeLimits};
use cachette_s3::object_store::path::Path;
use cachette_s3::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use cachette_s3::{S3Backend, S3Config};
use futures::StreamExt;
use support::proxy::{Proxy, Seen, counts};

/// What a request was for, from its path.
fn target(seen: &Seen) -> &'static str {
    let path = seen.path.as_str();
    if path.contains(".cachette-access/log") {
        "access log"
    } else if path.ends_with(".claim") {
        "claim"
    } else if path.ends_with("func_code") {
        "identity"
    } else if seen.kind == "LIST" {
        "listing"
    } else if seen.kind == "DELETE batch" {
        "batch"
    } else {
        "entry"
    }
}

fn describe(seen: &[Seen]) -> String {
    let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for s in seen {
        *by.entry((s.kind, target(s))).or_insert(0) += 1;
    }
    by.iter()
        .map(|((kind, what), n)| format!("{n} {kind} ({what})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The requests of one operation, by kind, and by kind and target.
type Kinds = BTreeMap<&'static str, u64>;

#[derive(Default)]
struct Table(Vec<(String, usize, String)>);

impl Table {
    fn row(&mut self, operation: &str, seen: &[Seen]) -> Kinds {
        self.0
            .push((operation.to_owned(), seen.len(), describe(seen)));
        counts(seen)
    }

    fn print(&self) {
        println!("\n| operation | requests | which |\n| --- | ---: | --- |");
        for (op, n, which) in &self.0 {
            println!("| {op} | {n} | {which} |");
        }
        println!();
    }
}

fn kinds<const N: usize>(pairs: [(&'static str, u64); N]) -> Kinds {
    BTreeMap::from(pairs)
}

fn open(config: &S3Config, compute_once: bool) -> (Memory, Arc<S3Backend>) {
    let backend = Arc::new(config.build_backend().unwrap());
    let memory = Memory::builder()
        .backend(backend.clone() as DynBackend)
        .compute_once(compute_once)
        .claims(compute_once)
        .build()
        .unwrap();
    (memory, backend)
}

fn wipe(backend: &Arc<S3Backend>) {
    let b = backend.clone();
    block_on(false, async move {
        b.delete_prefix(&Prefix::root()).await.unwrap();
        // The access logs too.
        let all: Vec<Path> = b
            .store()
            .list(Some(&Path::parse(b.prefix()).unwrap()))
            .map(|m| m.unwrap().location)
            .collect()
            .await;
        for path in all {
            b.store().delete(&path).await.unwrap();
        }
    })
    .unwrap();
}

#[test]
fn requests_per_call() {
    let Some(server) = support::server() else {
        return;
    };
    let proxy = Proxy::start(&server.endpoint);
    let config = server.config_via(&proxy.endpoint(), "s3-requests");
    let mut table = Table::default();

    let (memory, backend) = open(&config, true);
    let f = memory.cache(|x: u64| x * 2).name("requests.f");
    proxy.take();
    f.eval(1);
    let seen = proxy.take();
    let first = table.row("first call of a function in a process (a miss)", &seen);
    f.eval(2);
    let seen = proxy.take();
    let miss = table.row("miss, compute-once with claims", &seen);
    f.eval(2);
    let seen = proxy.take();
    let hit = table.row("hit", &seen);

    let (fresh, _) = open(&config, true);
    let g = fresh.cache(|x: u64| x * 2).name("requests.f");
    proxy.take();
    g.eval(2);
    let seen = proxy.take();
    let first_hit = table.row("hit, first call of the function in a process", &seen);

    let (no_once, _) = open(&config, false);
    let h = no_once.cache(|x: u64| x * 2).name("requests.f");
    h.eval(1);
    proxy.take();
    h.eval(3);
    let seen = proxy.take();
    let miss_plain = table.row("miss, compute-once off", &seen);

    f.call_and_shelve(2);
    let seen = proxy.take();
    let shelve_hit = table.row("call_and_shelve, stored", &seen);
    f.call_and_shelve(4);
    let seen = proxy.take();
    let shelve_miss = table.row("call_and_shelve, not stored (compute-once)", &seen);
    assert!(f.check_call_in_cache(&2));
    let seen = proxy.take();
    let check_hit = table.row("check_call_in_cache, stored", &seen);
    assert!(!f.check_call_in_cache(&5));
    let seen = proxy.take();
    let check_miss = table.row("check_call_in_cache, not stored", &seen);

    // The access log of the hits above (one, whatever the number of hits).
    block_on(false, {
        let backend = backend.clone();
        async move { backend.flush_access_log().await }
    })
    .unwrap();
    let seen = proxy.take();
    let log = table.row("end of the access log period (per process)", &seen);

    memory.housekeeping().unwrap();
    let seen = proxy.take();
    let housekeeping = table.row("housekeeping (small store)", &seen);
    memory
        .reduce_size(&SizeLimits::default().items_limit(1000))
        .unwrap();
    let seen = proxy.take();
    let reduce = table.row("reduce_size, small store, nothing to delete", &seen);
    memory.clear().unwrap();
    let seen = proxy.take();
    let clear = table.row("clear (small store)", &seen);
    table.print();

    assert_eq!(hit, kinds([("GET", 1)]), "a hit is one GET");
    assert_eq!(
        first_hit,
        kinds([("GET", 1), ("GET range", 1)]),
        "the identity item is read once per process and function"
    );
    assert_eq!(miss_plain, kinds([("GET", 1), ("PUT", 1)]));
    // What the core asks for on a miss with a claim: the lookup, the claim's create, a check
    // that no other process stored the entry meanwhile, the entry, and the claim's delete
    // (within half a lease of its write, the claim is surely this process's: no read first).
    assert_eq!(
        miss,
        kinds([
            ("GET", 1),
            ("PUT if-absent", 1),
            ("HEAD", 1),
            ("PUT", 1),
            ("DELETE", 1),
        ])
    );
    assert_eq!(first.values().sum::<u64>(), miss.values().sum::<u64>() + 2);
    assert_eq!(check_hit, kinds([("GET range", 1)]));
    assert_eq!(check_miss, kinds([("GET range", 1)]));
    assert_eq!(shelve_hit, kinds([("GET range", 1)]));
    assert_eq!(shelve_miss.values().sum::<u64>(), 5);
    assert_eq!(log, kinds([("PUT", 1)]));
    // The items (1 page), the markers of older versions (1), the access logs' hour folders
    // (1) and the log of this hour (1), plus the sweep's look at the logs and the markers.
    // The access log is read with a bounded range, whatever size the object has by then.
    assert_eq!(housekeeping, kinds([("LIST", 6), ("GET range", 1)]));
    assert_eq!(reduce, kinds([("LIST", 6), ("GET range", 1)]));
    assert_eq!(
        clear,
        kinds([("LIST", 6), ("GET range", 1), ("DELETE batch", 1)])
    );
    wipe(&backend);
}

#[test]
fn hits_on_distinct_keys_take_one_log_write_per_thousand() {
    const N: u64 = 2000;
    let Some(server) = support::server() else {
        return;
    };
    let bucket = server.own_bucket("hits");
    let proxy = Proxy::start(&server.endpoint);
    let direct = bucket.config_via(&server.endpoint, "s3-hits");
    let via_proxy = direct.clone().with_endpoint(proxy.endpoint());
    let started = std::time::Instant::now();
    // The entries are computed into memory, then copied to the bucket: the fastest way to
    // store N entries on the test server.
    let (_, backend) = open(&direct, false);
    let local = Arc::new(cachette_s3::object_store::memory::InMemory::new());
    {
        let staging = S3Backend::from_store(local.clone(), backend.prefix()).unwrap();
        let writer = Memory::builder()
            .backend(Arc::new(staging) as DynBackend)
            .build()
            .unwrap();
        let f = writer.cache(|x: u64| x + 1).name("hits.f");
        for x in 0..N {
            f.eval(x);
        }
    }
    block_on(false, {
        let (local, store) = (local.clone(), backend.store().clone());
        async move {
            let all: Vec<Path> = local
                .list(None)
                .map(|m| m.unwrap().location)
                .collect()
                .await;
            futures::stream::iter(all)
                .map(|path| {
                    let (local, store) = (&local, &store);
                    async move {
                        let bytes = local.get(&path).await.unwrap().bytes().await.unwrap();
                        store.put(&path, PutPayload::from(bytes)).await.unwrap();
                    }
                })
                .buffer_unordered(16)
                .collect::<()>()
                .await
        }
    })
    .unwrap();
    println!("stored {N} entries in {:?}", started.elapsed());
    // Last-modified times have a granularity of a second on S3.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let (reader, tracked) = open(&via_proxy, true);
    let g = reader.cache(|x: u64| x + 1).name("hits.f");
    // The first call reads the function's identity item (once per process and function).
    assert_eq!(g.eval(0), 1);
    proxy.take();
    std::thread::scope(|s| {
        for t in 0..4 {
            let g = &g;
            s.spawn(move || {
                for x in (t..N).step_by(4).filter(|x| *x > 0) {
                    assert_eq!(g.eval(x), x + 1);
                }
            });
        }
    });
    let hits = proxy.take();
    println!("{N} hits done at {:?}", started.elapsed());
    assert_eq!(
        counts(&hits),
        kinds([("GET", N - 1)]),
        "{N} hits, and no write: {}",
        describe(&hits)
    );
    assert_eq!(tracked.access_logs_written(), 0);
    block_on(false, {
        let tracked = tracked.clone();
        async move { tracked.flush_access_log().await }
    })
    .unwrap();
    let writes = proxy.take();
    assert_eq!(
        counts(&writes),
        kinds([("PUT", 1)]),
        "{}",
        describe(&writes)
    );
    assert!(
        tracked.access_logs_written() * 1000 <= N,
        "more than one access log write per 1000 hits on distinct keys"
    );
    println!(
        "{N} hits on distinct keys: {} GET, {} access log PUT",
        N,
        tracked.access_logs_written()
    );

    println!("log written at {:?}", started.elapsed());
    // Another process sees the reads, through the log.
    let (other, other_backend) = open(&direct, false);
    let (items, raw) = block_on(false, {
        let b = other_backend.clone();
        async move {
            let items = b.list(&Prefix::new("cachette").unwrap()).await.unwrap();
            let raw: BTreeMap<String, _> = b
                .store()
                .list(Some(&Path::parse(b.prefix()).unwrap()))
                .map(|m| {
                    let m = m.unwrap();
                    (m.location.to_string(), m.last_modified)
                })
                .collect()
                .await;
            (items, raw)
        }
    })
    .unwrap();
    let entries: Vec<_> = items
        .iter()
        .filter(|i| {
            let name = i.key.file_name();
            name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect();
    assert_eq!(entries.len() as u64, N);
    for entry in entries {
        let written = raw[&format!("{}/{}", other_backend.prefix(), entry.key)];
        assert!(
            entry.last_access > written,
            "the read of {} is not seen by another process",
            entry.key
        );
    }
    assert_eq!(other_backend.access_logs_written(), 0);
    drop(other);
    wipe(&backend);
}

/// Writes `n` objects named as entries of one function directly, `64` at a time.
async fn raw_entries(store: &Arc<dyn ObjectStore>, root: &str, folder: &str, n: u64) {
    futures::stream::iter(0..n)
        .map(|i| {
            let path = Path::parse(format!(
                "{root}/cachette/{folder}/{:032x}",
                (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
            ))
            .unwrap();
            async move {
                store
                    .put(&path, PutPayload::from(Bytes::from_static(b"entry")))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<()>()
        .await;
}

#[test]
fn listing_costs_by_store_size() {
    const N: u64 = 2500;
    let Some(server) = support::server() else {
        return;
    };
    let bucket = server.own_bucket("list-costs");
    let proxy = Proxy::start(&server.endpoint);
    let mut table = Table::default();
    let config = bucket.config_via(&proxy.endpoint(), "s3-list-costs");
    let direct = config.clone().with_endpoint(&server.endpoint);
    block_on(false, {
        let backend = direct.build_backend().unwrap();
        async move {
            raw_entries(
                backend.store(),
                backend.prefix(),
                "costs.f-0123456789abcdef",
                N,
            )
            .await
        }
    })
    .unwrap();
    for concurrency in [1, 16] {
        let mut config = config.clone();
        config.list_concurrency = concurrency;
        let (memory, _) = open(&config, true);
        proxy.take();
        let report = memory
            .reduce_size(&SizeLimits::default().items_limit(N as usize))
            .unwrap();
        assert_eq!(report.deleted_items, 0);
        let seen = proxy.take();
        let listed = table.row(
            &format!("reduce_size, {N} entries in one function, list_concurrency = {concurrency}"),
            &seen,
        );
        // The markers of older versions and the access log folders, by the listing and the
        // sweep.
        let tracking = 4;
        if concurrency == 1 {
            // 3 pages of items.
            assert_eq!(listed["LIST"], 3 + tracking);
        } else {
            // The first page of `cachette/`, its folders, the first page of the function's
            // folder, then its 16 hex digits and the 2 ranges around them.
            assert_eq!(listed["LIST"], 3 + 16 + 2 + tracking);
        }
    }
    let (memory, backend) = open(&config, true);
    memory.clear().unwrap();
    let seen = proxy.take();
    let cleared = table.row(&format!("clear, {N} entries"), &seen);
    assert_eq!(cleared["DELETE batch"], N.div_ceil(1000));
    table.print();
    wipe(&backend);
}

/// Reads that do not ask to record their access (ranged reads, `head`, `contains`), and every
/// read with `access_tracking = "none"`, write nothing, not even at the end of the period.
#[test]
fn reads_that_record_nothing_write_nothing() {
    let Some(server) = support::server() else {
        return;
    };
    let proxy = Proxy::start(&server.endpoint);
    let tracked = server.config_via(&proxy.endpoint(), "s3-no-writes");
    let mut untracked = tracked.clone();
    untracked.access_tracking = cachette_s3::AccessTracking::None;
    let (tracked, untracked) = (
        Arc::new(tracked.build_backend().unwrap()),
        Arc::new(untracked.build_backend().unwrap()),
    );
    let key = cachette_core::plugin::Key::new("f/x").unwrap();
    block_on(false, {
        let (tracked, untracked, key) = (tracked.clone(), untracked.clone(), key.clone());
        let proxy = &proxy;
        async move {
            tracked
                .put(&key, Bytes::from_static(b"value").into())
                .await
                .unwrap();
            proxy.take();
            assert!(tracked.get_range(&key, 0..2).await.unwrap().is_some());
            assert!(tracked.head(&key).await.unwrap().is_some());
            assert!(tracked.contains(&key).await.unwrap());
            assert!(untracked.get(&key).await.unwrap().is_some());
            tracked.flush_access_log().await;
            untracked.flush_access_log().await;
            let seen = proxy.take();
            assert!(
                seen.iter()
                    .all(|s| s.kind.starts_with("GET") || s.kind == "HEAD"),
                "a read wrote: {}",
                describe(&seen)
            );
            assert_eq!(seen.len(), 4, "{}", describe(&seen));
            assert_eq!(tracked.access_logs_written(), 0);
            assert_eq!(untracked.access_logs_written(), 0);
            // A hit that records its access is written once, at the end of the period.
            assert!(tracked.get(&key).await.unwrap().is_some());
            tracked.flush_access_log().await;
            assert_eq!(tracked.access_logs_written(), 1);
        }
    })
    .unwrap();
    wipe(&tracked);
}
