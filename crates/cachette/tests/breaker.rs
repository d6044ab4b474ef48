//! A failing store costs little: after a few faults in a row the circuit breaker skips the
//! store (calls still return their values), one call tries it again after the cool-down, and
//! each call warns at most once. `Memory::check` tells a working store from a read-only and
//! an unreachable one.
//!
//! The store here is an in-memory one behind a switch that makes every operation fail, or hang
//! (sleep, then time out, as a client with a timeout sees a hung server), and counts the
//! operations that reach it. Counts are asserted, never times.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::plugin::{ErrorKind, Prefix, StoreBackend};
use cachette::{CheckStatus, Memory};
use common::switch::{DOWN, HUNG, READ_ONLY, Switch, UP};
use common::{Reports, capture, lines, warnings};

mod common;

/// A memory on `store` with the breaker as given, and its reports.
fn memory(
    store: &Arc<Switch>,
    threshold: u32,
    cooldown: Duration,
    strict: bool,
) -> (Memory, Reports) {
    capture(
        Memory::builder()
            .backend(store.clone())
            .breaker(threshold, cooldown)
            .strict(strict),
    )
}

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn a_dead_store_is_skipped_after_a_few_faults_and_calls_still_return() {
    for state in [DOWN, HUNG] {
        let store = Switch::new();
        store.set(state);
        let (memory, reports) = memory(&store, 5, Duration::from_secs(3600), false);
        let f = memory.cache_fn(double);
        for x in 0..100 {
            assert_eq!(f.eval(x), x * 2);
        }
        let operations = store.operations();
        eprintln!(
            "state {state}: {operations} operations, {} warnings for 100 calls",
            warnings(&reports).len()
        );
        // Each call stops at its first fault of the store; the breaker opens after 5 faults
        // (at the first timeout), then calls skip the store.
        let most = if state == HUNG { 1 } else { 5 };
        assert_eq!(
            operations, most,
            "100 calls on a failing store reached it {operations} times"
        );
        // One warning per faulty call; the call that opens the breaker says only that.
        let warnings = warnings(&reports);
        assert_eq!(
            warnings.len(),
            most,
            "{} warnings: {warnings:#?}",
            warnings.len()
        );
        let opened = if state == HUNG {
            "timed out"
        } else {
            "in a row"
        };
        assert_eq!(
            warnings.iter().filter(|w| w.contains(opened)).count(),
            1,
            "one warning says the breaker opened: {warnings:#?}"
        );
    }
}

/// A hung store costs its timeout once: the first operation that times out opens the breaker,
/// and neither that call nor the next ones go back to the store.
#[test]
fn a_hung_store_costs_its_timeout_once() {
    let store = Switch::new();
    let (memory, reports) = memory(&store, 5, Duration::from_secs(3600), false);
    let f = memory.cache_fn(double);
    assert_eq!(f.eval(1), 2); // the identity is checked while the store answers
    let before = store.operations();
    store.set(HUNG);
    for x in 0..100 {
        assert_eq!(f.eval(x), x * 2);
    }
    assert_eq!(
        store.operations() - before,
        1,
        "100 calls on a hung store waited for it more than once"
    );
    let stats = f.stats();
    assert_eq!(stats.calls, 101, "{stats}");
    let warnings = warnings(&reports);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("timed out"), "{warnings:#?}");
}

#[test]
fn the_breaker_closes_once_the_store_answers_again() {
    let store = Switch::new();
    store.set(DOWN);
    let (memory, reports) = memory(&store, 2, Duration::from_millis(300), false);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    fn plus_one(x: u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x + 1
    }
    let calls = &CALLS;
    let f = memory.cache_fn(plus_one);
    for _ in 0..20 {
        assert_eq!(f.eval(1), 2);
    }
    let skipped_from = store.operations();
    assert!(skipped_from <= 6, "{skipped_from} operations");
    store.set(UP);
    // The cool-down runs out; the next call tries the store, stores its result and closes the
    // breaker; the one after is a hit.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(f.eval(1), 2);
    let computed = calls.load(Ordering::SeqCst);
    assert_eq!(f.eval(1), 2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        computed,
        "a hit after recovery"
    );
    assert!(store.operations() > skipped_from);
    let again: Vec<String> = lines(&reports)
        .into_iter()
        .filter(|l| l.contains("answers again"))
        .collect();
    assert_eq!(again.len(), 1, "{:#?}", reports.lock().unwrap());
}

#[test]
fn strict_calls_fail_fast_with_a_temporary_error_while_open() {
    let store = Switch::new();
    store.set(DOWN);
    let (memory, _reports) = memory(&store, 3, Duration::from_secs(3600), true);
    let f = memory.cache_fn(double);
    let mut errors = Vec::new();
    for x in 0..50 {
        match f.try_eval(x) {
            Err(e) => errors.push(e),
            other => panic!("{other:?}"),
        }
    }
    assert!(store.operations() <= 3, "{} operations", store.operations());
    let last = errors.last().unwrap();
    let cachette::Error::Backend(e) = last else {
        panic!("{last:?}")
    };
    assert!(
        e.is_temporary() && e.kind() == ErrorKind::Unavailable,
        "{e}"
    );
    assert!(e.to_string().contains("circuit breaker"), "{e}");
}

#[test]
fn a_faulty_call_warns_once_and_briefly() {
    let store = Switch::new();
    store.set(DOWN);
    // Without the breaker, every call meets the store's fault, once: a call that met it does
    // not go back to the store.
    let (memory, reports) = memory(&store, 0, Duration::from_secs(30), false);
    let f = memory.cache_fn(double);
    for x in 0..10 {
        assert_eq!(f.eval(x), x * 2);
    }
    assert_eq!(store.operations(), 10, "each call tried the store once");
    let warnings = warnings(&reports);
    assert_eq!(warnings.len(), 10, "one per call: {warnings:#?}");
    for w in &warnings {
        // 500 characters of the message, escapes (`\n` for a newline) and the ellipsis.
        assert!(w.chars().count() <= 520, "{} characters: {w}", w.len());
        assert!(!w.contains('\n'), "control characters escaped: {w}");
    }
}

#[test]
fn check_tells_working_read_only_and_unreachable_stores_apart() {
    let store = Switch::new();
    let (memory, _) = memory(&store, 5, Duration::from_secs(30), false);
    let check = memory.check().unwrap();
    assert_eq!(check.status, CheckStatus::Ok, "{check:?}");
    assert!(check.write.is_some() && check.read.is_some() && check.delete.is_some());
    assert!(check.error.is_none());
    // It deleted what it wrote, and nothing else.
    let left = cachette::plugin::block_on(true, store.inner.list(&Prefix::root()))
        .unwrap()
        .unwrap();
    assert!(left.is_empty(), "{left:?}");

    store.set(READ_ONLY);
    let check = memory.check().unwrap();
    assert_eq!(check.status, CheckStatus::ReadOnly, "{check:?}");
    assert!(check.write.is_none() && check.read.is_some());
    assert!(check.error.unwrap().contains("read-only"));

    for state in [DOWN, HUNG] {
        store.set(state);
        let check = memory.check().unwrap();
        assert_eq!(check.status, CheckStatus::Unreachable, "{check:?}");
        let error = check.error.unwrap();
        assert!(error.chars().count() <= 320, "{error}");
    }
    assert!(Memory::disabled().check().is_err());
}

/// `call_and_shelve` on a hung store costs its timeout once too: the call that met it does
/// not go on to look for the entry, claim or write.
#[test]
fn a_hung_store_costs_shelving_calls_its_timeout_once() {
    let store = Switch::new();
    let (memory, _reports) = memory(&store, 5, Duration::from_secs(3600), false);
    let f = memory.cache_fn(double);
    assert_eq!(f.eval(1), 2); // the identity is checked while the store answers
    memory.clear().unwrap(); // the next call checks the identity again
    let before = store.operations();
    store.set(HUNG);
    for x in 0..100 {
        assert!(matches!(
            f.call_and_shelve(x),
            cachette::Shelved::NotMemorized(_)
        ));
    }
    assert_eq!(
        store.operations() - before,
        1,
        "100 shelving calls on a hung store waited for it more than once"
    );
}

/// A server that accepts connections and never answers, on 127.0.0.1: a hung Redis or S3 as
/// a client sees it. It counts the connections it accepted.
#[cfg(any(feature = "redis", feature = "s3"))]
struct Hung {
    port: u16,
    connections: Arc<AtomicUsize>,
}

#[cfg(any(feature = "redis", feature = "s3"))]
impl Hung {
    fn start() -> Hung {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded: a test opens a handful of connections at most.
            for stream in listener.incoming().take(64) {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Hung { port, connections }
    }
}

/// 100 calls against a hung server: the first waits for its timeout, the others skip the
/// store at once. The figure asked is ≤ 2 × (one timeout + 100 computations); here the counts
/// that make it: one call reaches the server, the 99 others never do.
#[cfg(any(feature = "redis", feature = "s3"))]
fn hung_server_costs_one_timeout(url: &str, server: &Hung) {
    let (memory, reports) = capture(Memory::builder().url(url));
    let f = memory.cache_fn(|x: u64| {
        std::thread::sleep(Duration::from_millis(2));
        x * 2
    });
    let started = std::time::Instant::now();
    for x in 0..100 {
        assert_eq!(f.eval(x), x * 2);
    }
    let took = started.elapsed();
    let store = memory.stats().unwrap().store;
    eprintln!(
        "{url}: 100 calls in {took:?}, {} store errors, {} connections",
        store.errors,
        server.connections.load(Ordering::SeqCst)
    );
    assert_eq!(store.errors, 1, "one operation timed out: {store}");
    assert_eq!(f.stats().calls, 100);
    let warnings = warnings(&reports);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("timed out"), "{warnings:#?}");
}

#[cfg(feature = "redis")]
#[test]
fn a_hung_redis_costs_its_timeout_once() {
    let server = Hung::start();
    let url = format!(
        "redis://127.0.0.1:{}/0?connection_timeout_ms=300&response_timeout_ms=300",
        server.port
    );
    hung_server_costs_one_timeout(&url, &server);
}

#[cfg(feature = "s3")]
#[test]
fn a_hung_s3_costs_its_timeout_once() {
    let server = Hung::start();
    let url = format!(
        "s3://bucket/prefix?endpoint=http://127.0.0.1:{}&allow_http=true&request_timeout_secs=1&max_retries=0",
        server.port
    );
    hung_server_costs_one_timeout(&url, &server);
}
