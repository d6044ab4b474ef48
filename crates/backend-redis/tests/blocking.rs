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
