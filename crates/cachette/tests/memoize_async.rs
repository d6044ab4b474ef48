//! `#[memoize]` on `async fn`s, under both tokio runtime flavors.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::{Memory, memoize};

fn memory(test: &str) -> Memory {
    Memory::from_url(&format!(
        "memory://memoize-async-{test}-{}",
        std::process::id()
    ))
    .unwrap()
}

static MULTI: LazyLock<Memory> = LazyLock::new(|| memory("multi"));
static MULTI_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = MULTI)]
async fn slow_double(x: u64) -> u64 {
    MULTI_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    x * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_functions_run_once_per_argument_multi_thread() {
    assert!(!slow_double::check_call_in_cache(&21).await);
    assert_eq!(slow_double(21).await, 42);
    assert_eq!(slow_double(21).await, 42);
    assert_eq!(MULTI_RUNS.load(Ordering::SeqCst), 1);
    assert!(slow_double::check_call_in_cache(&21).await);

    // The memoized future is `Send`: it can be spawned.
    let spawned = tokio::spawn(slow_double(21)).await.unwrap();
    assert_eq!(spawned, 42);
    let other = tokio::spawn(slow_double(5)).await.unwrap();
    assert_eq!(other, 10);
    assert_eq!(MULTI_RUNS.load(Ordering::SeqCst), 2);

    slow_double::clear().await.unwrap();
    assert!(!slow_double::check_call_in_cache(&21).await);
    assert!(
        !slow_double::memorized()
            .check_call_in_cache_async(&(5u64,))
            .await
    );
    assert_eq!(slow_double(21).await, 42);
    assert_eq!(MULTI_RUNS.load(Ordering::SeqCst), 3);
}

static CURRENT: LazyLock<Memory> = LazyLock::new(|| memory("current"));
static CURRENT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = CURRENT, ignore = [label])]
async fn parse_async(text: String, label: &str) -> Result<u32, String> {
    CURRENT_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    text.parse().map_err(|e| format!("{label}: {text:?}: {e}"))
}

#[tokio::test(flavor = "current_thread")]
async fn async_results_store_only_ok_current_thread() {
    assert_eq!(parse_async("12".into(), "a").await, Ok(12));
    assert_eq!(parse_async("12".into(), "b").await, Ok(12));
    assert_eq!(CURRENT_RUNS.load(Ordering::SeqCst), 1);
    assert!(parse_async("x".into(), "a").await.is_err());
    assert!(parse_async("x".into(), "a").await.is_err());
    assert_eq!(CURRENT_RUNS.load(Ordering::SeqCst), 3, "Err is not stored");
    assert!(parse_async::check_call_in_cache(&"12".into(), &"any").await);
    assert!(!parse_async::check_call_in_cache(&"x".into(), &"any").await);

    // Other tasks keep running while a memoized call is in flight.
    let ticker = tokio::spawn(async {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        7
    });
    assert_eq!(parse_async("13".into(), "c").await, Ok(13));
    assert_eq!(ticker.await.unwrap(), 7);
}

#[test]
fn async_functions_run_on_any_executor() {
    static PLAIN: LazyLock<Memory> = LazyLock::new(|| memory("plain"));
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = PLAIN)]
    async fn add_one(x: u32) -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        x + 1
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(add_one(1)), 2);
    assert_eq!(runtime.block_on(add_one(1)), 2);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn async_functions_on_the_local_disk_current_thread() {
    static DIR: LazyLock<std::path::PathBuf> = LazyLock::new(|| {
        std::env::temp_dir().join(format!(
            "cachette-memoize-async-disk-{}",
            std::process::id()
        ))
    });
    static DISK: LazyLock<Memory> = LazyLock::new(|| Memory::new(&*DIR).unwrap());
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = DISK)]
    async fn lines(n: usize) -> Vec<String> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        (0..n).map(|i| format!("line {i}")).collect()
    }

    assert_eq!(lines(3).await.len(), 3);
    assert_eq!(lines(3).await, ["line 0", "line 1", "line 2"]);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert!(lines::check_call_in_cache(&3).await);
    lines::clear().await.unwrap();
    assert!(!lines::check_call_in_cache(&3).await);
    std::fs::remove_dir_all(&*DIR).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_forced_calls_and_shelving() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static MEMORY: LazyLock<Memory> = LazyLock::new(|| memory("forced"));

    #[memoize(memory = MEMORY)]
    async fn triple(x: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        x * 3
    }

    #[memoize(memory = MEMORY)]
    async fn checked(x: i64) -> Result<i64, String> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        if x < 0 {
            Err(format!("{x} is negative"))
        } else {
            Ok(x)
        }
    }

    let (value, metadata) = triple::call(2).await;
    assert_eq!(value, 6);
    assert_eq!(metadata.input_args, [("x".to_owned(), "2".to_owned())]);
    assert_eq!(triple::call(2).await.0, 6);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "call always runs the body");
    assert_eq!(triple(2).await, 6);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "and stores its result");

    let shelved = triple::call_and_shelve(5).await;
    assert!(
        matches!(shelved, cachette::Shelved::Memorized(_)),
        "{shelved}"
    );
    assert_eq!(shelved.get().unwrap(), 15);
    triple::call_and_shelve(5).await;
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);

    assert_eq!(checked::call(-1).await.unwrap_err(), "-1 is negative");
    assert!(!checked::check_call_in_cache(&-1).await);
    let shelved = checked::call_and_shelve(4).await.unwrap();
    assert_eq!(shelved.get().unwrap(), 4);
    assert!(checked::check_call_in_cache(&4).await);
}
