//! `Memory` end to end over Redis: from plain threads, from both tokio runtime flavors, on a
//! single server and on a cluster.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachette_core::{Memory, Report, Reporter, SizeLimits, expires_after};

fn urls() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(url) = common::single_url() {
        out.push((
            "single",
            format!("{url}?prefix={}", common::unique_prefix("memory")),
        ));
    }
    if let Some(urls) = common::cluster_urls() {
        out.push((
            "cluster",
            format!(
                "{}?prefix={}",
                common::cluster_url(&urls),
                common::unique_prefix("memory")
            ),
        ));
    }
    out
}

fn memory(url: &str) -> (Memory, Arc<Mutex<Vec<String>>>) {
    cachette_redis::link();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let sink = warnings.clone();
    let memory = Memory::builder()
        .url(url)
        .reporter(Reporter::new(move |r| {
            if let Report::Warning(w) = r {
                sink.lock().unwrap().push(w.clone());
            }
        }))
        .build()
        .expect("memory");
    (memory, warnings)
}

/// From a plain thread, with no runtime: each argument is computed once; check, clear and
/// reduce_size behave.
#[test]
fn sync_calls_without_a_runtime() {
    for (kind, url) in urls() {
        let (memory, warnings) = memory(&url);
        assert_eq!(memory.location(), Some(url.as_str()));
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let double = memory
            .cache_capturing(move |x: u64| {
                counter.fetch_add(1, Ordering::SeqCst);
                x * 2
            })
            .name("tests.double");
        assert_eq!(double.eval(21), 42);
        assert_eq!(double.eval(21), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{kind}: computed once");
        assert!(double.check_call_in_cache(&21), "{kind}");
        assert!(!double.check_call_in_cache(&22), "{kind}");
        assert_eq!(double.eval(22), 44);
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        memory.clear().unwrap();
        assert!(!double.check_call_in_cache(&21), "{kind}: cleared");
        assert_eq!(double.eval(21), 42);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "{kind}: recomputed after clear"
        );
        double.clear().unwrap();
        assert!(!double.check_call_in_cache(&21));
        memory.clear().unwrap();
        assert!(warnings.lock().unwrap().is_empty(), "{kind}: {warnings:?}");
    }
}

/// `reduce_size` deletes the least recently *read* entries first.
#[test]
fn reduce_size_follows_reads() {
    for (kind, url) in urls() {
        let (memory, warnings) = memory(&url);
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let f = memory
            .cache_capturing(move |x: u32| {
                counter.fetch_add(1, Ordering::SeqCst);
                vec![x; 100]
            })
            .name("tests.lru");
        // Written at t = 0, 1.5 and 3 s; entry 1 read again at 4.5 s.
        f.eval(1);
        std::thread::sleep(Duration::from_millis(1500));
        f.eval(2);
        std::thread::sleep(Duration::from_millis(1500));
        f.eval(3);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(f.eval(1), vec![1; 100]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let report = memory
            .reduce_size(&SizeLimits::default().items_limit(2))
            .unwrap();
        assert_eq!(report.deleted_items, 1, "{kind}: {report:?}");
        assert_eq!(report.kept_items, 2);
        assert!(
            f.check_call_in_cache(&1),
            "{kind}: the entry read last is kept"
        );
        assert!(
            !f.check_call_in_cache(&2),
            "{kind}: the oldest read goes first"
        );
        assert!(f.check_call_in_cache(&3), "{kind}");
        let report = memory
            .reduce_size(&SizeLimits::default().age_limit(chrono::TimeDelta::zero()))
            .unwrap();
        assert_eq!(report.deleted_items, 2, "{kind}");
        memory.clear().unwrap();
        assert!(warnings.lock().unwrap().is_empty(), "{kind}: {warnings:?}");
    }
}

/// `expires_after` also gives the entries a native expiry.
#[test]
fn expires_after_expires_in_redis() {
    for (kind, url) in urls() {
        let (memory, _) = memory(&url);
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let f = memory
            .cache_capturing(move |x: u8| {
                counter.fetch_add(1, Ordering::SeqCst);
                x
            })
            .name("tests.expiring")
            .validate(expires_after(Duration::from_millis(1200)));
        f.eval(1);
        f.eval(1);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{kind}");
        let backend = memory.backend().unwrap().clone();
        let folder = cachette_core::FuncId::new("tests.expiring")
            .folder()
            .to_owned();
        let prefix = cachette_core::plugin::Prefix::new(format!("cachette/{folder}")).unwrap();
        let entries = cachette_core::plugin::block_on(false, backend.list(&prefix))
            .unwrap()
            .unwrap();
        assert_eq!(entries.len(), 2, "{kind}: the entry and func_code");
        std::thread::sleep(Duration::from_millis(1400));
        let entries = cachette_core::plugin::block_on(false, backend.list(&prefix))
            .unwrap()
            .unwrap();
        assert_eq!(
            entries.len(),
            1,
            "{kind}: Redis dropped the entry: {entries:?}"
        );
        f.eval(1);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{kind}");
        memory.clear().unwrap();
    }
}

async fn async_calls() {
    for (kind, url) in urls() {
        let (memory, warnings) = memory(&url);
        let calls = Arc::new(AtomicUsize::new(0));
        let f = memory.cache(|x: u64| x * 3).name("tests.triple");
        for _ in 0..3 {
            let counter = calls.clone();
            let out = f
                .call_with_async(7u64, |x| async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok::<_, Infallible>(x * 3)
                })
                .await
                .unwrap();
            assert_eq!(out, 21);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{kind}: computed once");
        assert!(f.check_call_in_cache_async(&7).await, "{kind}");
        assert!(!f.check_call_in_cache_async(&8).await);
        // The synchronous API from inside the runtime neither blocks it nor panics.
        assert_eq!(f.eval(7), 21);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        memory.clear_async().await.unwrap();
        assert!(!f.check_call_in_cache_async(&7).await, "{kind}");
        assert!(warnings.lock().unwrap().is_empty(), "{kind}: {warnings:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn async_calls_current_thread() {
    async_calls().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_multi_thread() {
    async_calls().await;
}

/// A current-thread runtime that ends does not take the connection with it: the connection
/// belongs to the `cachette-io` runtime.
#[test]
fn runtimes_come_and_go() {
    for (kind, url) in urls() {
        let (memory, warnings) = memory(&url);
        let f = memory.cache(|x: u64| x + 1).name("tests.runtimes");
        for round in 0..3u64 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let out = rt
                .block_on(f.call_with_async(round, |x| async move { Ok::<_, Infallible>(x + 1) }))
                .unwrap();
            assert_eq!(out, round + 1);
            drop(rt);
            assert!(f.check_call_in_cache(&round), "{kind}");
        }
        memory.clear().unwrap();
        assert!(warnings.lock().unwrap().is_empty(), "{kind}: {warnings:?}");
    }
}
