//! The S3 backend against a real S3 server (moto, started by `cargo xtask services start`),
//! and against object_store's in-memory store.
//!
//! Tests that need the server skip (saying so) when `CACHETTE_TEST_S3_ENDPOINT` is not set, and
//! fail under `CI=true`.

mod support;

use std::convert::Infallible;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachette_core::plugin::chrono::TimeDelta;
use cachette_core::plugin::testkit;
use cachette_core::plugin::{
    BackendConfig, Bytes, DateTime, DynBackend, ErrorKind, GetOptions, ItemInfo, Key, Prefix,
    PutOutcome, StoreBackend, StoreBackendExt, Utc, block_on,
};
use cachette_core::{FuncId, MemorizedFunc, MemorizedResult, Memory, SizeLimits};
use cachette_s3::object_store::path::Path;
use cachette_s3::object_store::{ObjectStore, ObjectStoreExt};
use cachette_s3::{LOG_DIR, MARKER_DIR, S3Backend, S3Config};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use support::{capture_warnings, server};

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

async fn raw_paths(backend: &S3Backend) -> Vec<String> {
    let prefix = Path::parse(backend.prefix()).unwrap();
    let mut paths: Vec<String> = backend
        .store()
        .list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    paths.sort();
    paths
}

/// Deletes everything a test left under its prefix (checking a call after `clear` writes the
/// function's identity again).
fn wipe(memory: &Memory) {
    let backend = memory.backend().unwrap().clone();
    block_on(false, async move {
        backend.delete_prefix(&Prefix::root()).await
    })
    .unwrap()
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The conformance suite.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_s3() {
    let Some(server) = server() else { return };
    let backend = server.config("s3-suite").build_backend().unwrap();
    let capabilities = backend.capabilities();
    assert!(capabilities.atomic_create && capabilities.ranged_read);
    assert!(!capabilities.blocking_io && !capabilities.local_files);
    testkit::run_all(Arc::new(backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_an_in_memory_object_store() {
    use cachette_s3::object_store::memory::InMemory;
    use cachette_s3::object_store::throttle::{ThrottleConfig, ThrottledStore};
    // A little latency on writes, as any real store has, so that the suite's racing readers
    // get to read while its writers write.
    let latency = ThrottleConfig {
        wait_put_per_call: Duration::from_millis(2),
        ..ThrottleConfig::default()
    };
    let store = Arc::new(ThrottledStore::new(InMemory::new(), latency));
    let backend = S3Backend::from_store(store, "some/prefix").unwrap();
    assert_eq!(backend.scheme(), cachette_s3::OBJECT_STORE_SCHEME);
    testkit::run_all(Arc::new(backend)).await;
}

// ---------------------------------------------------------------------------------------------
// Configuration.

#[derive(Debug, Serialize, Deserialize)]
struct File {
    backend: Box<dyn BackendConfig>,
}

#[test]
fn configs_round_trip_through_toml() {
    let mut config = S3Config::new("bucket")
        .with_prefix("team/cache")
        .with_region("eu-west-3")
        .with_endpoint("https://s3.example.com")
        .with_credentials("AKID", "secret")
        .with_multipart(128 << 20, 32 << 20);
    config.access_granularity_secs = 5;
    let file = File {
        backend: Box::new(config.clone()),
    };
    let text = toml::to_string(&file).unwrap();
    assert!(text.contains("type = \"s3\""), "{text}");
    let back: File = toml::from_str(&text).unwrap();
    assert_eq!(toml::to_string(&back).unwrap(), text);
    assert_eq!(format!("{:?}", back.backend), format!("{config:?}"));

    let written = "[backend]\ntype = \"s3\"\nbucket = \"b\"\nprefix = \"p\"\nallow_http = true\n";
    let parsed: File = toml::from_str(written).unwrap();
    let shown = format!("{:?}", parsed.backend);
    assert!(shown.contains("bucket: \"b\"") && shown.contains("allow_http: true"));
    assert!(
        shown.contains("multipart_threshold: 67108864"),
        "defaults: {shown}"
    );

    // The access tracking mode, and the booleans of older files.
    for (value, mode) in [
        ("\"log\"", "access_tracking: Log"),
        ("\"none\"", "access_tracking: None"),
        ("true", "access_tracking: Log"),
        ("false", "access_tracking: None"),
    ] {
        let written =
            format!("[backend]\ntype = \"s3\"\nbucket = \"b\"\naccess_tracking = {value}\n");
        let parsed: File = toml::from_str(&written).unwrap();
        assert!(format!("{:?}", parsed.backend).contains(mode), "{value}");
    }
    let bad = "[backend]\ntype = \"s3\"\nbucket = \"b\"\naccess_tracking = \"markers\"\n";
    let err = toml::from_str::<File>(bad).unwrap_err().to_string();
    assert!(err.contains("\"log\" or \"none\""), "{err}");

    let typo = "[backend]\ntype = \"s3\"\nbucket = \"b\"\nbukcet = \"c\"\n";
    let err = toml::from_str::<File>(typo).unwrap_err().to_string();
    assert!(err.contains("bukcet"), "{err}");
}

#[test]
fn urls_go_through_the_registry() {
    cachette_s3::link();
    for url in [
        "s3://bucket/a/b?endpoint=http://127.0.0.1:9&allow_http=true",
        "s3a://bucket/a/b?endpoint=http://127.0.0.1:9&allow_http=true",
    ] {
        let backend = cachette_core::registry::backend_from_url(url).unwrap();
        assert_eq!(backend.scheme(), "s3");
        assert_eq!(
            backend.location(),
            "s3://bucket/a/b?endpoint=http%3A%2F%2F127.0.0.1%3A9&allow_http=true"
        );
        let again = cachette_core::registry::backend_from_url(&backend.location()).unwrap();
        assert_eq!(again.location(), backend.location());
    }
    let err = cachette_core::registry::backend_from_url("s3://bucket/p?typo=1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown URL parameter"), "{err}");
    let err = S3Config::new("b")
        .with_prefix("a//b")
        .build_backend()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigInvalid);
}

// ---------------------------------------------------------------------------------------------
// The backend itself.

#[tokio::test(flavor = "multi_thread")]
async fn reads_go_to_one_access_log_which_is_never_listed() {
    let Some(server) = server() else { return };
    let backend = server.config("s3-logs").build_backend().unwrap();
    let root = backend.prefix().to_owned();
    for name in ["f/a", "f/b", "g/c"] {
        backend
            .put(&key(name), Bytes::from_static(b"v").into())
            .await
            .unwrap();
        backend.get(&key(name)).await.unwrap().unwrap();
    }
    let listed = backend.list(&Prefix::root()).await.unwrap();
    assert_eq!(
        names(&listed),
        ["f/a", "f/b", "g/c"],
        "access logs must not be listed"
    );
    assert_eq!(
        backend.access_logs_written(),
        0,
        "a log waits for its period"
    );
    backend.flush_access_log().await;
    assert_eq!(backend.access_logs_written(), 1, "three reads, one log");
    let raw = raw_paths(&backend).await;
    let logs: Vec<&String> = raw
        .iter()
        .filter(|p| p.starts_with(&format!("{root}/{MARKER_DIR}/{LOG_DIR}/")))
        .collect();
    assert_eq!(logs.len(), 1, "{raw:?}");
    let body = backend
        .store()
        .get(&Path::parse(logs[0]).unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with("cachette access log 1\n"), "{body}");
    for k in ["f/a", "f/b", "g/c"] {
        assert!(body.contains(&format!(" {k}\n")), "{k} is not in {body}");
    }
    let listed = backend.list(&Prefix::root()).await.unwrap();
    assert_eq!(names(&listed), ["f/a", "f/b", "g/c"]);

    backend.delete_prefix(&Prefix::root()).await.unwrap();
    assert_eq!(backend.list(&Prefix::root()).await.unwrap(), Vec::new());
    // The log stays (it is swept when it is older than the retention).
    assert_eq!(raw_paths(&backend).await.len(), 1);
    backend
        .store()
        .delete(&Path::parse(logs[0]).unwrap())
        .await
        .unwrap();

    let reserved = backend.get(&key(&format!("{MARKER_DIR}/x"))).await;
    assert_eq!(reserved.unwrap_err().kind(), ErrorKind::InvalidKey);
}

#[tokio::test(flavor = "multi_thread")]
async fn markers_of_older_versions_count_and_are_swept() {
    let Some(server) = server() else { return };
    let mut config = server.config("s3-sweep");
    config.access_log_retention_secs = 3;
    let backend = config.build_backend().unwrap();
    let root = backend.prefix().to_owned();
    let store = backend.store().clone();
    let raw_put = |name: String, bytes: &'static [u8]| {
        let path = Path::parse(format!("{root}/{name}")).unwrap();
        let store = store.clone();
        async move {
            store
                .put(&path, Bytes::from_static(bytes).into())
                .await
                .unwrap()
        }
    };
    let live = key("f/live");
    backend
        .put(&live, Bytes::from_static(b"v").into())
        .await
        .unwrap();
    let written = last_access(&backend, &live).await;
    // Last-modified times have a granularity of a second on S3.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The marker an older version wrote for a read of the live item.
    raw_put(format!("{MARKER_DIR}/f/live"), b"").await;
    assert!(
        last_access(&backend, &live).await > written,
        "a marker of an older version still counts"
    );
    // Markers of items deleted by another process while a read was being recorded.
    raw_put(format!("{MARKER_DIR}/f/gone"), b"").await;
    raw_put(format!("{MARKER_DIR}/h/gone"), b"").await;
    // Not a marker this library wrote (markers are empty): left alone.
    raw_put(format!("{MARKER_DIR}/f/foreign"), b"not empty").await;
    // An access log of an hour long gone, and one of now.
    raw_put(
        format!("{MARKER_DIR}/{LOG_DIR}/20200101T00/20200101T000000.000Z-h-1-00"),
        b"cachette access log 1\n0 f/live\n",
    )
    .await;
    let marker = |name: &str| format!("{root}/{MARKER_DIR}/{name}");
    let everything = vec![
        marker("f/foreign"),
        marker("f/gone"),
        marker("f/live"),
        marker("h/gone"),
        marker(&format!(
            "{LOG_DIR}/20200101T00/20200101T000000.000Z-h-1-00"
        )),
        format!("{root}/f/live"),
    ];
    // Listing neither lists markers nor deletes them.
    let listed = backend.list(&Prefix::root()).await.unwrap();
    assert_eq!(names(&listed), ["f/live"]);
    let mut sorted = everything.clone();
    sorted.sort();
    assert_eq!(raw_paths(&backend).await, sorted);

    // The old log is not older than the retention yet: sweeps are scoped to their prefix,
    // and delete only orphaned markers.
    assert_eq!(backend.sweep(&Prefix::new("g").unwrap()).await.unwrap(), 0);
    assert_eq!(backend.sweep(&Prefix::new("f").unwrap()).await.unwrap(), 1);
    assert!(!raw_paths(&backend).await.contains(&marker("f/gone")));
    assert_eq!(backend.sweep(&Prefix::root()).await.unwrap(), 1);
    assert!(!raw_paths(&backend).await.contains(&marker("h/gone")));
    // Past the retention, the old log goes, and the live item's marker too.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(backend.sweep(&Prefix::root()).await.unwrap(), 2);
    assert_eq!(
        raw_paths(&backend).await,
        [marker("f/foreign"), format!("{root}/f/live")]
    );
    assert_eq!(backend.sweep(&Prefix::root()).await.unwrap(), 0);
    assert!(backend.contains(&live).await.unwrap());

    let reserved = backend.sweep(&Prefix::new(MARKER_DIR).unwrap()).await;
    assert_eq!(reserved.unwrap_err().kind(), ErrorKind::InvalidKey);
    backend.delete(&live).await.unwrap();
    backend
        .store()
        .delete(&Path::parse(marker("f/foreign")).unwrap())
        .await
        .unwrap();
    assert_eq!(raw_paths(&backend).await, Vec::<String>::new());
}

/// The keys of listed items, sorted.
fn names(items: &[ItemInfo]) -> Vec<&str> {
    let mut names: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    names.sort();
    names
}

async fn last_access(backend: &S3Backend, key: &Key) -> DateTime<Utc> {
    let listed = backend.list(&Prefix::root()).await.unwrap();
    listed
        .iter()
        .find(|i| &i.key == key)
        .unwrap_or_else(|| panic!("{key} is not listed: {listed:?}"))
        .last_access
}

#[tokio::test(flavor = "multi_thread")]
async fn heads_and_ranged_reads_record_no_access() {
    let Some(server) = server() else { return };
    let mut config = server.config("s3-no-access");
    config.access_granularity_secs = 3600;
    let backend = config.build_backend().unwrap();
    let k = key("f/item");
    backend
        .put(&k, Bytes::from_static(b"0123456789").into())
        .await
        .unwrap();
    let written = last_access(&backend, &k).await;
    // Last-modified times have a granularity of a second on S3.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    assert_eq!(backend.head(&k).await.unwrap(), Some(10));
    let part = backend
        .get_opts(&k, GetOptions::range(2..5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(part.size, 10, "a ranged read gives the whole size");
    assert_eq!(part.into_bytes().unwrap(), &b"234"[..]);
    let past_the_end = backend
        .get_opts(&k, GetOptions::range(20..30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(past_the_end.size, 10);
    assert!(past_the_end.into_bytes().unwrap().is_empty());
    let empty = backend.get_opts(&k, GetOptions::range(3..3)).await.unwrap();
    assert_eq!(empty.unwrap().size, 10);
    let whole = backend
        .get_opts(&k, GetOptions::default().with_local_file(true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(whole.into_bytes().unwrap(), &b"0123456789"[..]);
    backend.flush_access_log().await;
    assert_eq!(
        last_access(&backend, &k).await,
        written,
        "reads without record_access must leave the last access alone"
    );
    assert_eq!(backend.access_logs_written(), 0);
    assert!(
        !raw_paths(&backend)
            .await
            .iter()
            .any(|p| p.contains(MARKER_DIR)),
        "no access was asked to be recorded"
    );

    // A read that asks records its access.
    let hit = backend.get_opts(&k, GetOptions::hit()).await.unwrap();
    assert_eq!(hit.unwrap().size, 10);
    backend.flush_access_log().await;
    assert!(last_access(&backend, &k).await > written);
    assert_eq!(backend.access_logs_written(), 1, "a hit is logged");
    backend.delete_prefix(&Prefix::root()).await.unwrap();
    for path in raw_paths(&backend).await {
        assert!(path.contains(LOG_DIR), "{path}");
        backend
            .store()
            .delete(&Path::parse(path).unwrap())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_sees_reads_not_logged_yet() {
    use cachette_s3::object_store::memory::InMemory;
    use cachette_s3::object_store::throttle::{ThrottleConfig, ThrottledStore};
    // Slow writes: the log of a read is still being written when the listing runs.
    let latency = ThrottleConfig {
        wait_put_per_call: Duration::from_millis(1500),
        ..ThrottleConfig::default()
    };
    let store = Arc::new(ThrottledStore::new(InMemory::new(), latency));
    let backend = S3Backend::from_store(store, "p")
        .unwrap()
        .with_access_granularity(Some(Duration::ZERO));
    let k = key("f/item");
    backend
        .put(&k, Bytes::from_static(b"v").into())
        .await
        .unwrap();
    let written = last_access(&backend, &k).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    backend.get(&k).await.unwrap().unwrap();
    let read = last_access(&backend, &k).await;
    assert!(read > written, "the read is listed at once");
    assert!(read <= Utc::now());
    let has_log = |paths: Vec<String>| paths.iter().any(|p| p.contains(MARKER_DIR));
    assert!(!has_log(raw_paths(&backend).await), "listing wrote the log");
    backend.flush_access_log().await;
    assert!(has_log(raw_paths(&backend).await));
    assert_eq!(backend.access_logs_written(), 1);
    assert!(last_access(&backend, &k).await >= read);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_written_in_the_background_once_per_period() {
    use cachette_s3::object_store::memory::InMemory;
    let backend = S3Backend::from_store(Arc::new(InMemory::new()), "p")
        .unwrap()
        .with_access_granularity(Some(Duration::from_millis(300)));
    let keys: Vec<Key> = (0..50).map(|i| key(&format!("f/{i}"))).collect();
    for k in &keys {
        backend
            .put(k, Bytes::from_static(b"v").into())
            .await
            .unwrap();
    }
    for _ in 0..3 {
        for k in &keys {
            backend.get(k).await.unwrap().unwrap();
        }
    }
    assert_eq!(backend.access_logs_written(), 0, "not before the period");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        backend.access_logs_written(),
        1,
        "150 reads of 50 keys, one log"
    );
    // Dropping the backend loses no read: the writer holds what it needs.
    backend.get(&keys[0]).await.unwrap().unwrap();
    let store = backend.store().clone();
    drop(backend);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let logs: Vec<_> = store
        .list(Some(
            &Path::parse(format!("p/{MARKER_DIR}/{LOG_DIR}")).unwrap(),
        ))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(logs.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_that_is_no_object_name_reaches_nothing() {
    use cachette_s3::object_store::memory::InMemory;
    let backend = S3Backend::from_store(Arc::new(InMemory::new()), "p").unwrap();
    let k = key("a/x");
    backend
        .put(&k, Bytes::from_static(b"v").into())
        .await
        .unwrap();
    // A name that is no object name (a control character) must never stand for the whole
    // store: such a prefix cannot even be made, so nothing reaches the backend.
    let odd = Prefix::new("a\u{1}").unwrap_err();
    assert_eq!(odd.kind(), ErrorKind::InvalidKey);
    for prefix in ["a", "a/x"] {
        let prefix = Prefix::new(prefix).unwrap();
        assert!(backend.sweep(&prefix).await.is_ok());
    }
    assert!(
        backend.contains(&k).await.unwrap(),
        "an item outside the prefix went"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_items_go_up_in_parts() {
    let Some(server) = server() else { return };
    let mut config = server.config("s3-multipart");
    config.multipart_threshold = 6 << 20;
    config.multipart_part_size = 5 << 20;
    let backend = config.build_backend().unwrap();
    let k = key("big/item");
    let value: Vec<u8> = (0..(13u32 << 20) + 1).map(|i| (i % 253) as u8).collect();
    let value = Bytes::from(value);
    backend.put(&k, value.clone().into()).await.unwrap();
    let meta = backend
        .store()
        .head(&backend.path_of(&k).unwrap())
        .await
        .unwrap();
    let etag = meta.e_tag.unwrap_or_default();
    assert!(
        etag.contains("-3"),
        "a 3-part upload has a multipart ETag, got {etag}"
    );
    assert!(backend.get(&k).await.unwrap().unwrap() == value);
    let head = backend.get_range(&k, 0..100).await.unwrap().unwrap();
    assert_eq!(&head[..], &value[..100]);
    let listed = backend.list(&Prefix::new("big").unwrap()).await.unwrap();
    assert_eq!(listed[0].size, value.len() as u64);
    backend.delete_prefix(&Prefix::root()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_an_error_not_a_miss() {
    let Some(server) = server() else { return };
    let mut config = server.config("s3-no-bucket");
    config.bucket = "cachette-no-such-bucket".to_owned();
    let backend = config.build_backend().unwrap();
    let k = key("f/x");
    for err in [
        backend.get(&k).await.unwrap_err(),
        backend.get_range(&k, 0..10).await.unwrap_err(),
        backend
            .put(&k, Bytes::from_static(b"v").into())
            .await
            .unwrap_err(),
        backend.list(&Prefix::root()).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::ConfigInvalid, "{err}");
        assert!(err.to_string().contains("does the bucket exist"), "{err}");
    }
}

/// A missing bucket meets every request: a memory's calls compute their values, and the user is
/// told once, not once a call.
#[test]
fn a_missing_bucket_is_told_once() {
    let Some(server) = server() else { return };
    cachette_s3::link();
    let url = format!(
        "s3://cachette-no-such-bucket/p?endpoint={}&allow_http=true",
        server.endpoint
    );
    let (reporter, warnings) = capture_warnings();
    let memory = Memory::builder()
        .url(url)
        .reporter(reporter)
        .build()
        .unwrap();
    let square = memory.cache_capturing(|x: u32| x * x).name("s3.told_once");
    for x in 0..12 {
        assert_eq!(square.eval(x % 3), (x % 3) * (x % 3));
    }
    testkit::the_warning_of_a_refusing_store(&warnings.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn create_without_conditional_writes_is_not_atomic_but_works() {
    let Some(server) = server() else { return };
    let mut config = server.config("s3-unconditional");
    config.conditional_put = false;
    let backend = config.build_backend().unwrap();
    assert!(!backend.capabilities().atomic_create);
    let k = key("f/x");
    let put = |v: &'static [u8]| backend.put_if_absent(&k, Bytes::from_static(v).into());
    assert_eq!(put(b"1").await.unwrap(), PutOutcome::Created);
    assert_eq!(put(b"2").await.unwrap(), PutOutcome::AlreadyExists);
    assert_eq!(backend.get(&k).await.unwrap().unwrap(), &b"1"[..]);
    backend.delete_prefix(&Prefix::root()).await.unwrap();
}

#[test]
fn an_unreachable_server_fails_fast_and_calls_still_return() {
    cachette_s3::link();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let backend: DynBackend = Arc::new(
        S3Config::new("nowhere")
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .build_backend()
            .unwrap(),
    );
    let started = Instant::now();
    let err = block_on(false, backend.get(&key("f/x")))
        .unwrap()
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary(), "{err}");
    let shown = format!("{err} / {:?}", std::error::Error::source(&err));
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");

    let (reporter, warnings) = capture_warnings();
    let memory = Memory::builder()
        .url(format!(
            "s3://nowhere/p?endpoint={endpoint}&allow_http=true"
        ))
        .reporter(reporter)
        .build()
        .unwrap();
    let calls = AtomicUsize::new(0);
    let square = memory.cache_capturing(|x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * x
    });
    let started = Instant::now();
    assert_eq!(square.eval(9), 81);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let warnings = warnings.lock().unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("unavailable")),
        "{warnings:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Memory end to end.

#[test]
fn memory_from_a_url_memoizes_once_per_argument() {
    let Some(server) = server() else { return };
    let memory = Memory::from_url(&server.url("s3-memory")).unwrap();
    assert!(memory.location().unwrap().starts_with("s3://"));
    let calls = AtomicUsize::new(0);
    let double = memory.cache_capturing(|x: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        2 * x
    });
    assert_eq!(double.eval(21), 42);
    assert_eq!(double.eval(21), 42);
    assert_eq!(double.eval(5), 10);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(double.check_call_in_cache(&21));
    assert!(!double.check_call_in_cache(&22));

    double.clear().unwrap();
    assert!(!double.check_call_in_cache(&21));
    assert_eq!(double.eval(21), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    memory.clear().unwrap();
    assert!(!double.check_call_in_cache(&21));
    let left = block_on(false, async {
        memory.backend().unwrap().list(&Prefix::root()).await
    })
    .unwrap()
    .unwrap();
    // Checking a call after `clear` writes the function's identity again, and nothing else.
    assert!(
        left.iter().all(|i| i.key.file_name() == "func_code"),
        "{left:?}"
    );
    wipe(&memory);
}

#[test]
fn reduce_size_evicts_the_least_recently_read() {
    let Some(server) = server() else { return };
    let memory = Memory::from_url(&server.url("s3-reduce")).unwrap();
    let calls = AtomicUsize::new(0);
    let f = memory
        .cache_capturing(|x: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            vec![x; 100]
        })
        .name("reduce.f");
    // Last-modified times have a granularity of a second on S3.
    for x in [1, 2, 3] {
        f.eval(x);
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(f.eval(1), vec![1; 100], "a hit, recorded as a read");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let report = memory
        .reduce_size(&SizeLimits::default().items_limit(2))
        .unwrap();
    assert_eq!(report.deleted_items, 1);
    assert!(!f.check_call_in_cache(&2), "2 is the least recently read");
    assert!(f.check_call_in_cache(&1) && f.check_call_in_cache(&3));

    let report = memory
        .reduce_size(&SizeLimits::default().age_limit(TimeDelta::zero()))
        .unwrap();
    assert_eq!(report.deleted_items, 2);
    assert!(!f.check_call_in_cache(&1) && !f.check_call_in_cache(&3));
    wipe(&memory);
}

#[test]
fn sync_callers_on_a_plain_thread() {
    let Some(server) = server() else { return };
    let memory = Memory::from_url(&server.url("s3-sync")).unwrap();
    let handle = std::thread::spawn(move || {
        let f = memory.cache(|s: String| s.to_uppercase());
        assert_eq!(f.eval("abc".to_owned()), "ABC");
        assert_eq!(f.eval("abc".to_owned()), "ABC");
        assert!(f.check_call_in_cache(&"abc".to_owned()));
        wipe(&memory);
    });
    handle.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_callers_inside_a_multi_thread_runtime() {
    let Some(server) = server() else { return };
    let memory = Memory::from_url(&server.url("s3-sync-mt")).unwrap();
    let f = memory.cache(|x: i32| -x);
    assert_eq!(f.eval(3), -3);
    assert!(f.check_call_in_cache(&3));
    wipe(&memory);
}

#[tokio::test(flavor = "current_thread")]
async fn sync_callers_inside_a_current_thread_runtime() {
    let Some(server) = server() else { return };
    let memory = Memory::from_url(&server.url("s3-sync-ct")).unwrap();
    let f = memory.cache(|x: i32| x + 1);
    assert_eq!(f.eval(3), 4);
    assert!(f.check_call_in_cache(&3));
    wipe(&memory);
}

#[tokio::test(flavor = "current_thread")]
async fn async_callers() {
    let Some(server) = server() else { return };
    let memory = Memory::from_url(&server.url("s3-async")).unwrap();
    let f: MemorizedFunc<String> = MemorizedFunc::new(&memory, FuncId::new("tests::fetch"));
    let counter = AtomicUsize::new(0);
    let calls = &counter;
    for _ in 0..2 {
        let out = f
            .call_with_async(7u32, |n| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, Infallible>(format!("item {n}"))
            })
            .await
            .unwrap();
        assert_eq!(out, "item 7");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(f.check_call_in_cache_async(&7u32).await);
    memory.clear_async().await.unwrap();
    assert!(!f.check_call_in_cache_async(&7u32).await);
    let backend = memory.backend().unwrap();
    backend.delete_prefix(&Prefix::root()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Two processes share a result through the bucket only.

const CHILD_URL: &str = "CACHETTE_S3_TEST_CHILD_URL";

#[test]
fn two_processes_share_a_result() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        cachette_s3::link();
        let memory = Memory::from_url(&url).unwrap();
        let square = memory.cache(|x: u64| x * x + 1).name("shared.square");
        let shelved = square.call_and_shelve(7);
        let result = shelved.as_memorized().expect("stored in the bucket");
        println!("RESULT {result}");
        return;
    }
    let Some(server) = server() else { return };
    let url = server.url("s3-two-processes");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "two_processes_share_a_result",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, printed)| printed))
        .unwrap_or_else(|| panic!("the child printed no result:\n{stdout}"));
    assert!(
        printed.starts_with("MemorizedResult(location=\"s3://"),
        "{printed}"
    );
    let result: MemorizedResult<u64> = printed.parse().unwrap();
    assert!(
        result.func().starts_with("shared.square-"),
        "{}",
        result.func()
    );
    // The receiver reads the reference in a store of its choosing.
    let memory = Memory::from_url(&url).unwrap();
    let result = memory.resolve(&result);
    assert_eq!(result.get().unwrap(), 50);
    memory.clear().unwrap();
    let err = result.get().unwrap_err().to_string();
    assert!(err.contains("Non-existing cache value"), "{err}");
    wipe(&memory);
}
