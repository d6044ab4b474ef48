//! Backpressure: a server that refuses commands for now (`BUSY`, `TRYAGAIN`, `LOADING`,
//! `CLUSTERDOWN`, `MASTERDOWN`) costs retries inside the backend, not failed calls; a server
//! that keeps refusing them fails an operation with a temporary error once `retry_busy_ms` has
//! passed, not later.
//!
//! A proxy on loopback (`common::proxy`) stands in front of the test server and answers the
//! next commands with the refusal.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachette_core::plugin::{
    Blob, ErrorKind, GetOptions, Key, Prefix, PutOptions, StoreBackend, StoreBackendExt, block_on,
};
use cachette_core::{Memory, Report, Reporter};
use cachette_redis::RedisConfig;
use common::proxy::Proxy;

const REFUSALS: &[&str] = &[
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "LOADING Redis is loading the dataset in memory",
    "CLUSTERDOWN The cluster is down",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
];

fn proxy() -> Option<Proxy> {
    common::single_url().map(|url| Proxy::in_front_of(&url))
}

fn key(name: &str) -> Key {
    Key::new(format!("cachette/bp/{name}")).unwrap()
}

/// Every operation, from an async caller and (reads) from a synchronous one, against a server
/// that refuses the next few commands: each succeeds, and within the retry budget.
#[test]
fn refusals_for_now_are_retried_inside_the_backend() {
    let Some(proxy) = proxy() else { return };
    let budget = Duration::from_secs(3);
    let backend = RedisConfig::new(proxy.url("/0"))
        .with_prefix(common::unique_prefix("bp-retried"))
        .with_retry_busy(budget)
        .build_backend()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(backend.put(&key("a"), Blob::from(b"alpha".to_vec())))
        .unwrap();
    for reply in REFUSALS {
        let code = reply.split(' ').next().unwrap();
        let mut checked = 0;
        let mut run = |what: &str, op: &mut dyn FnMut()| {
            proxy.refuse(4, reply);
            let before = proxy.refused();
            let started = Instant::now();
            op();
            let took = started.elapsed();
            assert_eq!(proxy.refused() - before, 4, "{code} {what}: not refused");
            assert!(took < budget, "{code} {what}: took {took:?}");
            checked += 1;
        };
        run("get (async)", &mut || {
            let got = rt.block_on(backend.get(&key("a"))).expect("get");
            assert_eq!(got.as_deref(), Some(&b"alpha"[..]));
        });
        run("get (sync)", &mut || {
            let got = block_on(false, backend.get(&key("a")))
                .unwrap()
                .expect("get");
            assert_eq!(got.as_deref(), Some(&b"alpha"[..]));
        });
        run("head (sync)", &mut || {
            let got = block_on(false, backend.get_opts(&key("a"), GetOptions::head()))
                .unwrap()
                .expect("head");
            assert_eq!(got.map(|g| g.size), Some(5));
        });
        run("range (async)", &mut || {
            let got = rt
                .block_on(backend.get_range(&key("a"), 1..3))
                .expect("range");
            assert_eq!(got.as_deref(), Some(&b"lp"[..]));
        });
        run("put", &mut || {
            rt.block_on(backend.put(&key("b"), Blob::from(b"beta".to_vec())))
                .expect("put");
        });
        run("put_if_absent", &mut || {
            let outcome = rt
                .block_on(backend.put_opts(
                    &key(&format!("c-{code}")),
                    Blob::from(b"gamma".to_vec()),
                    PutOptions::create(),
                ))
                .expect("create");
            assert_eq!(outcome, cachette_core::plugin::PutOutcome::Created);
        });
        run("list", &mut || {
            let items = rt
                .block_on(backend.list(&Prefix::new("cachette/bp").unwrap()))
                .expect("list");
            assert!(items.len() >= 2, "{items:?}");
        });
        run("delete", &mut || {
            rt.block_on(backend.delete(&key("b"))).expect("delete");
        });
        assert_eq!(checked, 8);
    }
    rt.block_on(backend.delete_prefix(&Prefix::new("cachette/bp").unwrap()))
        .unwrap();
}

/// A server that keeps refusing: each operation fails with a temporary `Unavailable` error
/// after about `retry_busy_ms`, and works again once the server does.
#[test]
fn endless_refusals_end_in_a_temporary_error_within_the_budget() {
    let Some(proxy) = proxy() else { return };
    let budget = Duration::from_millis(400);
    let backend = RedisConfig::new(proxy.url("/0"))
        .with_prefix(common::unique_prefix("bp-endless"))
        .with_retry_busy(budget)
        .build_backend()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(backend.put(&key("a"), Blob::from(b"alpha".to_vec())))
        .unwrap();
    for reply in [REFUSALS[0], REFUSALS[2]] {
        proxy.refuse(u64::MAX, reply);
        let check = |what: &str,
                     result: Result<(), cachette_core::plugin::BackendError>,
                     took: Duration| {
            let err = result.expect_err(what);
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{what}: {err}");
            assert!(err.is_temporary(), "{what}: {err}");
            assert!(err.to_string().contains("retry_busy_ms"), "{what}: {err}");
            // It retried for its budget, and then stopped (a generous bound: no speed is
            // measured, only that the retries end).
            assert!(took >= budget, "{what}: gave up after {took:?}");
            assert!(
                took < budget * 3 + Duration::from_secs(2),
                "{what}: took {took:?}"
            );
        };
        let started = Instant::now();
        let r = rt.block_on(backend.get(&key("a"))).map(drop);
        check("get (async)", r, started.elapsed());
        let started = Instant::now();
        let r = block_on(false, backend.get(&key("a"))).unwrap().map(drop);
        check("get (sync)", r, started.elapsed());
        let started = Instant::now();
        let r = rt
            .block_on(backend.put(&key("a"), Blob::from(b"again".to_vec())))
            .map(drop);
        check("put", r, started.elapsed());
        let started = Instant::now();
        let r = rt
            .block_on(backend.list(&Prefix::new("cachette/bp").unwrap()))
            .map(drop);
        check("list", r, started.elapsed());
        let started = Instant::now();
        let r = rt.block_on(backend.delete(&key("a"))).map(drop);
        check("delete", r, started.elapsed());
        proxy.refuse(0, reply);
        let got = block_on(false, backend.get(&key("a"))).unwrap().unwrap();
        assert_eq!(got.as_deref(), Some(&b"alpha"[..]), "works again");
    }
    rt.block_on(backend.delete_prefix(&Prefix::new("cachette/bp").unwrap()))
        .unwrap();
}

/// Memoized calls through a throttled server: no call fails, warns or computes again because
/// of throttling alone.
#[test]
fn memoized_calls_ride_out_throttling() {
    let Some(proxy) = proxy() else { return };
    cachette_redis::link();
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = warnings.clone();
    let memory = Memory::builder()
        .url(proxy.url(&format!("/0?prefix={}", common::unique_prefix("bp-memory"))))
        .reporter(Reporter::new(move |r| {
            if let Report::Warning(w) = r {
                sink.lock().unwrap().push(w.clone());
            }
        }))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let f = memory
        .cache_capturing(move |x: u64| {
            counter.fetch_add(1, Ordering::SeqCst);
            x * 3
        })
        .name("bp.f");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for round in 0..3u64 {
        for (i, reply) in REFUSALS.iter().enumerate() {
            let x = i as u64;
            proxy.refuse(3, reply);
            assert_eq!(f.eval(x), x * 3);
            proxy.refuse(3, reply);
            let got = rt
                .block_on(f.call_with_async(x, |x| async move {
                    Ok::<_, std::convert::Infallible>(x * 3)
                }))
                .unwrap();
            assert_eq!(got, x * 3);
            proxy.refuse(3, reply);
            assert!(f.check_call_in_cache(&x), "round {round}, {reply}");
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        REFUSALS.len(),
        "computed once each"
    );
    assert!(proxy.refused() >= 3 * 3 * REFUSALS.len() as u64);
    let warnings = warnings.lock().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    memory.clear().unwrap();
}

/// On a cluster whose masters refuse the next commands, every operation still succeeds within
/// the budget; a listing's pipeline to a master that refuses some of its scripts sends them
/// again on their own.
#[test]
fn cluster_refusals_are_retried() {
    let Some(bin) =
        cachette_core::plugin::testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN")
    else {
        return;
    };
    let cluster = common::ProxiedCluster::start(&bin, 3);
    let budget = Duration::from_secs(3);
    let backend = RedisConfig::from_url(&cluster.url())
        .unwrap()
        .with_retry_busy(budget)
        .build_backend()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
    for name in &names {
        rt.block_on(backend.put(&key(name), Blob::from(name.as_bytes().to_vec())))
            .unwrap();
    }
    let prefix = Prefix::new("cachette/bp").unwrap();
    for reply in [REFUSALS[0], REFUSALS[1], REFUSALS[3]] {
        for proxy in &cluster.proxies {
            proxy.refuse(2, reply);
        }
        let before: u64 = cluster.proxies.iter().map(|p| p.refused()).sum();
        let started = Instant::now();
        let items = rt.block_on(backend.list(&prefix)).expect("list");
        assert_eq!(items.len(), names.len(), "{reply}");
        for (i, name) in names.iter().enumerate().step_by(37) {
            let got = rt.block_on(backend.get(&key(name))).expect("get");
            assert_eq!(got.as_deref(), Some(name.as_bytes()), "{reply} {i}");
        }
        assert!(started.elapsed() < budget * 2, "{reply}");
        let refused: u64 = cluster.proxies.iter().map(|p| p.refused()).sum();
        assert_eq!(refused - before, 6, "{reply}: not refused");
    }
    // Scripts of the listing pipelines refused (a busy master, a slot that moved): each sent
    // again on its own, and the listing is whole.
    for reply in [REFUSALS[0], "MOVED 3999 127.0.0.1:1"] {
        for proxy in &cluster.proxies {
            proxy.take_counts();
            proxy.refuse_only(3, "EVAL list", reply);
        }
        let items = rt.block_on(backend.list(&prefix)).expect("list");
        assert_eq!(items.len(), names.len(), "{reply}");
        for proxy in &cluster.proxies {
            assert_eq!(proxy.refused_pending(), 0, "{reply}: not refused");
        }
    }
}

/// A node of a cluster named as a single server: its `MOVED` replies are not retried (nothing
/// would change), and the error says what to do.
#[test]
fn a_cluster_node_as_a_single_server_is_reported_at_once() {
    let Some(urls) = common::cluster_urls() else {
        return;
    };
    let backend = RedisConfig::new(urls[0].clone())
        .with_retry_busy(Duration::from_secs(10))
        .build_backend()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let err = (0..50)
        .find_map(|i| rt.block_on(backend.get(&key(&format!("moved-{i}")))).err())
        .expect("a key of another node");
    assert!(started.elapsed() < Duration::from_secs(5), "retried");
    assert!(err.to_string().contains("redis+cluster://"), "{err}");
}

/// A script that ran but whose reply was lost is sent again: a client of a cluster resends a
/// command whose reply timed out. The publication of a chunked item written only if absent,
/// run a second time, found its own manifest, took it for another writer's and deleted its
/// own chunks: the item stayed, naming chunks that were gone, and read as missing until it
/// expired. Run twice, it now publishes once, and the item reads whole.
#[test]
fn a_chunked_create_published_twice_keeps_its_chunks() {
    let Some(proxy) = proxy() else { return };
    let backend = RedisConfig::new(proxy.url("/0"))
        .with_prefix(common::unique_prefix("bp-publish-twice"))
        .with_chunk_size(1024)
        .with_retry_busy(Duration::from_secs(3))
        .build_backend()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let value: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    proxy.lose_reply_only(1, "EVAL publish", REFUSALS[0]);
    let outcome = rt
        .block_on(backend.put_opts(
            &key("chunked"),
            Blob::from(value.clone()),
            PutOptions::create(),
        ))
        .expect("create");
    assert_eq!(proxy.refused(), 1, "the publication's reply was not lost");
    assert_eq!(outcome, cachette_core::plugin::PutOutcome::Created);
    let got = rt.block_on(backend.get(&key("chunked"))).expect("get");
    assert_eq!(got.as_deref(), Some(&value[..]), "the item lost its chunks");
}
