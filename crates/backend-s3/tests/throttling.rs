//! Backpressure: S3 answers `503 SlowDown` when a prefix gets more requests than it serves.
//! A proxy on loopback in front of the S3 test server answers the first requests so; calls
//! must ride it out (retried with jittered exponential backoff, within bounded time), and a
//! store that keeps refusing must give a temporary `Unavailable` error in bounded time.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachette_core::Memory;
use cachette_core::plugin::{
    Bytes, DynBackend, ErrorKind, Key, Prefix, StoreBackendExt as _, block_on,
};
use support::capture_warnings;
use support::proxy::Proxy;

#[test]
fn calls_ride_out_a_burst_of_slow_downs() {
    let Some(server) = support::server() else {
        return;
    };
    let proxy = Proxy::start(&server.endpoint);
    let mut config = server.config_via(&proxy.endpoint(), "s3-slow-down");
    config.max_retries = 10;
    config.retry_init_backoff_ms = 20;
    config.retry_max_backoff_ms = 500;
    config.retry_timeout_secs = 30;
    let backend: DynBackend = Arc::new(config.build_backend().unwrap());
    let (reporter, warnings) = capture_warnings();
    let memory = Memory::builder()
        .backend(backend.clone())
        .reporter(reporter)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let square = {
        let calls = Arc::clone(&calls);
        memory
            .cache_capturing(move |x: u64| {
                calls.fetch_add(1, Ordering::SeqCst);
                x * x
            })
            .name("throttled.square")
    };
    // The first 8 requests of the four threads are refused; any one request is refused at
    // most 8 times, fewer than `max_retries`.
    proxy.throttle_next(8);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let square = &square;
            s.spawn(move || {
                for x in 0..10u64 {
                    let x = t * 100 + x % 5;
                    assert_eq!(square.eval(x), x * x);
                }
            });
        }
    });
    let took = started.elapsed();
    let seen = proxy.take();
    let throttled = seen.iter().filter(|s| s.throttled).count();
    assert_eq!(throttled, 8, "{seen:?}");
    assert!(
        warnings.lock().unwrap().is_empty(),
        "a call failed because of throttling: {:?}",
        warnings.lock().unwrap()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        20,
        "each of the 20 distinct calls computed once, stored once"
    );
    // Generous: the backoff of 8 refusals is at most 8 × 0.5 s.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    println!("40 calls with 8 refusals: {took:?}");
    memory.clear().unwrap();
    block_on(false, async move {
        backend.delete_prefix(&Prefix::root()).await
    })
    .unwrap()
    .unwrap();
}

#[test]
fn a_store_that_keeps_refusing_is_a_temporary_error_in_bounded_time() {
    let Some(server) = support::server() else {
        return;
    };
    let proxy = Proxy::start(&server.endpoint);
    let mut config = server.config_via(&proxy.endpoint(), "s3-refusing");
    config.max_retries = 100;
    config.retry_init_backoff_ms = 50;
    config.retry_max_backoff_ms = 400;
    config.retry_timeout_secs = 2;
    let backend: DynBackend = Arc::new(config.build_backend().unwrap());
    proxy.throttle_next(u64::MAX);

    let started = Instant::now();
    let key = Key::new("f/x").unwrap();
    let err = block_on(false, {
        let backend = backend.clone();
        async move { backend.get(&key).await }
    })
    .unwrap()
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary(), "{err}");
    let shown = format!("{err} / {:?}", std::error::Error::source(&err));
    assert!(shown.contains("503"), "{shown}");
    // No retry starts after `retry_timeout_secs` (2 s); the last pause is at most 0.4 s.
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let refused = proxy.take().len();
    assert!(refused > 3, "retried only {refused} times");
    println!("a GET refused every time gave up after {took:?} ({refused} requests): {err}");

    let put = block_on(false, {
        let backend = backend.clone();
        async move {
            let key = Key::new("f/y").unwrap();
            backend.put(&key, Bytes::from_static(b"v").into()).await
        }
    })
    .unwrap()
    .unwrap_err();
    assert_eq!(put.kind(), ErrorKind::Unavailable, "{put}");
    assert!(put.is_temporary());

    // A memoized call still returns its value, with a warning, in bounded time.
    let (reporter, warnings) = capture_warnings();
    let memory = Memory::builder()
        .backend(backend)
        .reporter(reporter)
        .build()
        .unwrap();
    let started = Instant::now();
    assert_eq!(memory.cache(|x: u32| x + 1).eval(1), 2);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(!warnings.lock().unwrap().is_empty());
    println!("a memoized call on a store refusing everything returned after {took:?}");
}
