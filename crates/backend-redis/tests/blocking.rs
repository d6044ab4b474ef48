//! The blocking path: a synchronous caller's read on a single server does its first round trip
//! on a blocking connection of its own thread; async callers never open one; the pool stays
//! within `MAX_BLOCKING_CONNECTIONS`; a connection that the server closed is replaced.

mod common;

use std::sync::Arc;

use cachette_core::plugin::{Blob, GetOptions, Key, StoreBackend, StoreBackendExt, block_on};
use cachette_redis::{MAX_BLOCKING_CONNECTIONS, RedisConfig};

fn key(name: &str) -> Key {
    Key::new(format!("cachette/blocking/{name}")).unwrap()
}

#[test]
fn synchronous_reads_use_blocking_connections_within_bounds() {
    let Some(bin) =
        cachette_core::plugin::testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN")
    else {
        return;
    };
    let mut server = common::Server::start(&bin, &[]);
    let backend = Arc::new(
        RedisConfig::new(server.url(""))
            .with_chunk_size(16)
            .build_backend()
            .unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let big: Vec<u8> = (0..100u8).collect();
    rt.block_on(backend.put(&key("small"), Blob::from(b"value".to_vec())))
        .unwrap();
    rt.block_on(backend.put(&key("big"), Blob::from(big.clone())))
        .unwrap();
    // Async callers go through the multiplexed connection.
    let got = rt.block_on(backend.get(&key("small"))).unwrap();
    assert_eq!(got.as_deref(), Some(&b"value"[..]));
    assert_eq!(backend.blocking_connections(), 0);

    // A synchronous caller: one blocking connection, reused; chunked items read whole.
    for _ in 0..3 {
        let got = block_on(false, backend.get(&key("small")))
            .unwrap()
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"value"[..]));
        let got = block_on(false, backend.get(&key("big"))).unwrap().unwrap();
        assert_eq!(got.as_deref(), Some(&big[..]));
        let head = block_on(false, backend.get_opts(&key("big"), GetOptions::head()))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(head.size, 100);
        let missing = block_on(false, backend.get(&key("missing")))
            .unwrap()
            .unwrap();
        assert!(missing.is_none());
    }
    assert_eq!(backend.blocking_connections(), 1);

    // Many synchronous callers at once: never more than the bound.
    let threads: Vec<_> = (0..3 * MAX_BLOCKING_CONNECTIONS)
        .map(|_| {
            let backend = backend.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let got = block_on(false, backend.get(&key("small")))
                        .unwrap()
                        .unwrap();
                    assert_eq!(got.as_deref(), Some(&b"value"[..]));
                    assert!(backend.blocking_connections() <= MAX_BLOCKING_CONNECTIONS);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(backend.blocking_connections() <= MAX_BLOCKING_CONNECTIONS);

    // The server restarts (empty): the idle connections are dead; the next synchronous read
    // replaces one and answers, without an error.
    server.stop();
    server.restart();
    let got = block_on(false, backend.get(&key("small")))
        .unwrap()
        .unwrap();
    assert!(got.is_none());
    assert!(backend.blocking_connections() >= 1);
}

/// A synchronous caller's read is answered by `get_now`, on its own thread and without a
/// future: whole, as a hit, a head, a range, a chunked item (whose rest is read from where the
/// first round trip left it) and a missing one, as `get_opts` answers them.
#[test]
fn synchronous_reads_are_answered_without_a_future() {
    let Some(bin) =
        cachette_core::plugin::testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN")
    else {
        return;
    };
    let server = common::Server::start(&bin, &[]);
    let backend = RedisConfig::new(server.url(""))
        .with_chunk_size(16)
        .build_backend()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let big: Vec<u8> = (0..100u8).collect();
    rt.block_on(backend.put(&key("now-small"), Blob::from(b"value".to_vec())))
        .unwrap();
    rt.block_on(backend.put(&key("now-big"), Blob::from(big.clone())))
        .unwrap();
    let read = |name: &str, options: GetOptions| {
        let now = backend
            .get_now(&key(name), &options)
            .expect("a single server answers synchronous reads now")
            .unwrap()
            .map(|found| (found.size, found.into_bytes().unwrap()));
        let awaited = rt
            .block_on(backend.get_opts(&key(name), options))
            .unwrap()
            .map(|found| (found.size, found.into_bytes().unwrap()));
        assert_eq!(now, awaited, "{name}");
        now
    };
    let (size, bytes) = read("now-small", GetOptions::hit()).unwrap();
    assert_eq!((size, &bytes[..]), (5, &b"value"[..]));
    let (size, bytes) = read("now-big", GetOptions::hit()).unwrap();
    assert_eq!((size, &bytes[..]), (100, &big[..]));
    let (size, bytes) = read("now-big", GetOptions::range(10..20)).unwrap();
    assert_eq!((size, &bytes[..]), (100, &big[10..20]));
    let (size, bytes) = read("now-small", GetOptions::head()).unwrap();
    assert_eq!((size, bytes.len()), (5, 0));
    assert!(read("now-missing", GetOptions::hit()).is_none());
    assert_eq!(backend.blocking_connections(), 1);
    // Inside a runtime, the read takes the usual way, which steps aside from the runtime's
    // worker before it blocks.
    let _inside = rt.enter();
    assert!(
        backend
            .get_now(&key("now-small"), &GetOptions::hit())
            .is_none()
    );
}
