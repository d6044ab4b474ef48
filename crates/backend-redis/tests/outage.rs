//! Redis stopped in the middle of a run: memoized calls still return correct values, quickly,
//! with a warning; once Redis is back the backend reconnects and caches again.
//!
//! The test starts its own `redis-server` (from `CACHETTE_TEST_REDIS_SERVER_BIN`) on a free
//! loopback port, so that stopping it disturbs no other test.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachette_core::plugin::testkit;
use cachette_core::{Memory, Report, Reporter};

#[test]
fn redis_stopped_mid_run() {
    let Some(bin) = testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN") else {
        return;
    };
    cachette_redis::link();
    let mut server = common::Server::start(&bin, &[]);
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = warnings.clone();
    let memory = Memory::builder()
        .url(format!(
            "redis://127.0.0.1:{}/0?prefix=outage&connection_timeout_ms=500&response_timeout_ms=1000",
            server.port
        ))
        // A short cool-down of the circuit breaker, so that the recovery below is quick.
        .breaker(5, Duration::from_millis(500))
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
            x * 10
        })
        .name("outage.f");
    assert_eq!(f.eval(1), 10);
    assert_eq!(f.eval(1), 10);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(warnings.lock().unwrap().is_empty(), "{warnings:?}");

    server.stop();
    for x in [1, 2, 1] {
        let started = Instant::now();
        assert_eq!(f.eval(x), x * 10, "the right value while Redis is down");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a call with Redis down took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "computed again while Redis is down"
    );
    {
        let warnings = warnings.lock().unwrap();
        // One warning per call at most (its first fault), and one when the breaker opens.
        assert!(
            warnings.iter().any(|w| w.contains("cannot")),
            "{warnings:?}"
        );
        assert!(warnings.len() <= 4, "{warnings:?}");
    }

    // Back on the same port (empty: nothing was saved): the backend reconnects.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(f.eval(5), 50);
        if f.check_call_in_cache(&5) {
            break;
        }
        assert!(Instant::now() < deadline, "the backend did not reconnect");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(f.eval(5), 50);
    assert_eq!(calls.load(Ordering::SeqCst), before, "cached again");

    // A hung server (stopped, connections open) costs the response timeout, not more.
    server.signal("STOP");
    let started = Instant::now();
    assert_eq!(f.eval(6), 60);
    let hung = started.elapsed();
    server.signal("CONT");
    assert!(
        hung < Duration::from_secs(5),
        "a call with Redis hung took {hung:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f.check_call_in_cache(&5) {
        assert!(Instant::now() < deadline, "the backend did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    memory.clear().unwrap();
}

/// A `Memory` can be built while Redis is down; calls run uncached, quickly.
#[test]
fn redis_down_from_the_start() {
    if testkit::server_from_env("CACHETTE_TEST_REDIS_SERVER_BIN").is_none() {
        return;
    }
    cachette_redis::link();
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let memory = Memory::from_url(&format!(
        "redis://127.0.0.1:{port}/0?connection_timeout_ms=500"
    ))
    .unwrap();
    let f = memory.cache(|x: u32| x + 1).name("outage.down");
    let started = Instant::now();
    assert_eq!(f.eval(1), 2);
    assert!(!f.check_call_in_cache(&1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = memory.clear().unwrap_err().to_string();
    assert!(err.contains("redis") && err.contains("temporary"), "{err}");
}
