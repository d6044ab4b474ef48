//! Deployments: every URL and config-file form builds the right backend, the environment
//! overrides files in the documented order, errors name the key and the file, and a memory's
//! configuration ships to a worker that sees the same entries.
//!
//! S3 and Redis forms run against the test servers (`cargo xtask services start`); without them
//! they are skipped with a message, and under `CI=true` they fail.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::plugin::testkit;
use cachette::{Memory, MemoryConfig, MmapMode};

/// Held by every test of this binary that reads the environment (`from_config`, `from_env`),
/// and by the one that writes it, so that they never overlap.
static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    ENV.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A memory's backend scheme and location.
fn store_of(memory: &Memory) -> (&'static str, String) {
    let backend = memory.backend().expect("an enabled memory");
    (backend.scheme(), backend.location())
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn local_disk_and_memory_forms() {
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let plain = cache.to_str().unwrap().to_owned();
    for memory in [
        Memory::from_url(&plain).unwrap(),
        Memory::from_url(&format!("file://{plain}")).unwrap(),
        Memory::from_config(write(
            dir.path(),
            "a.toml",
            &format!("location = {plain:?}\n"),
        ))
        .unwrap(),
        Memory::from_config(write(
            dir.path(),
            "b.toml",
            &format!("[backend]\ntype = \"file\"\npath = {plain:?}\n"),
        ))
        .unwrap(),
    ] {
        let (scheme, location) = store_of(&memory);
        assert_eq!(scheme, "file");
        assert!(location.contains("cache"), "{location}");
    }
    for memory in [
        Memory::from_url("memory://cfg-test").unwrap(),
        Memory::from_config(write(
            dir.path(),
            "m.toml",
            "verbose = 1\nmmap_mode = \"r\"\ncompress = 3\n[backend]\ntype = \"memory\"\nname = \"cfg-test\"\n",
        ))
        .unwrap(),
    ] {
        assert_eq!(store_of(&memory).0, "memory");
    }
    let m = Memory::from_config(dir.path().join("m.toml")).unwrap();
    assert_eq!(m.verbose(), 1);
    assert_eq!(m.mmap_mode(), MmapMode::ReadOnly);
    assert_eq!(m.compression(), Some(3));
    let off = Memory::from_config(write(dir.path(), "off.toml", "enabled = false\n")).unwrap();
    assert!(!off.is_enabled());
}

#[test]
fn errors_name_the_key_and_the_file() {
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown.toml",
            "location = \"memory://\"\nverbosity = 2\n",
            "verbosity",
        ),
        (
            "value.toml",
            "location = \"memory://\"\nverbose = -1\n",
            "key `verbose`",
        ),
        (
            "mode.toml",
            "location = \"memory://\"\nmmap_mode = \"x\"\n",
            "key `mmap_mode`",
        ),
        (
            "fs.toml",
            "[backend]\ntype = \"file\"\npath = \"/tmp/x\"\ndurable = \"yes\"\n",
            "key `backend.durable`",
        ),
        (
            "fs-unknown.toml",
            "[backend]\ntype = \"file\"\npath = \"/tmp/x\"\ndurabel = true\n",
            "durabel",
        ),
        ("none.toml", "verbose = 1\n", "no store"),
        ("syntax.toml", "location = \n", "line 1"),
    ];
    for (name, text, expected) in cases {
        let path = write(dir.path(), name, text);
        let err = Memory::from_config(&path).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
    }
    let err = Memory::from_config(dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.toml"), "{err}");
    #[cfg(not(feature = "s3"))]
    {
        let path = write(dir.path(), "s3.toml", "location = \"s3://bucket/p\"\n");
        let err = Memory::from_config(&path).unwrap_err().to_string();
        assert!(err.contains("`s3` feature"), "{err}");
    }
}

/// The one test that sets environment variables (tests of this binary run in parallel; no
/// other one reads them).
#[test]
fn the_environment_overrides_files_in_the_documented_order() {
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let file_a = write(
        dir.path(),
        "a.toml",
        "verbose = 2\n[backend]\ntype = \"memory\"\nname = \"from-a\"\n",
    );
    let file_b = write(
        dir.path(),
        "b.toml",
        "verbose = 3\n[backend]\ntype = \"memory\"\nname = \"from-b\"\n",
    );
    let set = |name: &str, value: Option<&Path>| {
        // SAFETY: no other test of this binary reads or writes the environment.
        unsafe {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    };
    set("CACHETTE_CONFIG", None);
    set("CACHETTE_LOCATION", None);
    // 3. The file named in code.
    let m = Memory::from_config(&file_a).unwrap();
    assert_eq!(store_of(&m).1, "memory://from-a");
    assert!(Memory::from_env().unwrap().is_none());
    // 1. CACHETTE_CONFIG replaces it.
    set("CACHETTE_CONFIG", Some(&file_b));
    let m = Memory::from_config(&file_a).unwrap();
    assert_eq!(store_of(&m).1, "memory://from-b");
    assert_eq!(m.verbose(), 3);
    assert_eq!(
        store_of(&Memory::from_env().unwrap().unwrap()).1,
        "memory://from-b"
    );
    // 2. CACHETTE_LOCATION replaces the store, and keeps the file's options.
    set("CACHETTE_LOCATION", Some(Path::new("memory://from-env")));
    let m = Memory::from_config(&file_a).unwrap();
    assert_eq!(store_of(&m).1, "memory://from-env");
    assert_eq!(m.verbose(), 3, "the options of CACHETTE_CONFIG's file");
    set("CACHETTE_CONFIG", None);
    let m = Memory::from_config(&file_a).unwrap();
    assert_eq!(store_of(&m).1, "memory://from-env");
    assert_eq!(m.verbose(), 2, "the options of the file named in code");
    let m = Memory::from_env().unwrap().unwrap();
    assert_eq!(store_of(&m).1, "memory://from-env");
    assert_eq!(m.verbose(), 0);
    // Without any file, CACHETTE_LOCATION is the whole configuration.
    let m = Memory::from_config(dir.path().join("not-shipped.toml")).unwrap();
    assert_eq!(store_of(&m).1, "memory://from-env");
    // An empty variable counts as unset; a bad one is an error naming it.
    set("CACHETTE_LOCATION", Some(Path::new("")));
    assert_eq!(
        store_of(&Memory::from_config(&file_a).unwrap()).1,
        "memory://from-a"
    );
    set("CACHETTE_CONFIG", Some(&dir.path().join("nope.toml")));
    let err = Memory::from_config(&file_a).unwrap_err().to_string();
    assert!(err.contains("nope.toml"), "{err}");
    set("CACHETTE_CONFIG", None);
    set("CACHETTE_LOCATION", None);
    // CACHETTE_SIGNING_KEY replaces the file's key, or gives one.
    set(
        "CACHETTE_SIGNING_KEY",
        Some(Path::new("a secret from the environment")),
    );
    let signed = Memory::from_config(&file_a).unwrap();
    // Every constructor reads it.
    for memory in [
        Memory::new(dir.path().join("env-new")).unwrap(),
        Memory::from_url("memory://env-url").unwrap(),
        cachette::MemoryBuilder::new()
            .url("memory://env-builder")
            .build()
            .unwrap(),
    ] {
        let shipped = memory.config_with_secrets().unwrap();
        assert_eq!(
            shipped.signing_key.as_ref().map(|s| s.0.as_str()),
            Some("a secret from the environment"),
            "{memory:?}"
        );
    }
    // The shipped config leaves the key out unless asked for it.
    assert!(signed.config().unwrap().signing_key.is_none());
    let shipped = signed.config_with_secrets().unwrap();
    assert_eq!(
        shipped.signing_key.as_ref().map(|s| s.0.as_str()),
        Some("a secret from the environment")
    );
    set("CACHETTE_SIGNING_KEY", None);
    assert!(
        Memory::from_config(&file_a)
            .unwrap()
            .config_with_secrets()
            .unwrap()
            .signing_key
            .is_none()
    );
}

/// A URL with a typo in its `://` is an error, not a folder of that name created beside the
/// program.
#[test]
fn urls_with_a_typo_are_errors_not_folders() {
    // `from_config` reads the environment, which another test of this binary writes.
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    for typo in ["redis//127.0.0.1:6379", "s3:/bucket/prefix", "redis:host"] {
        let err = Memory::from_url(typo).unwrap_err().to_string();
        assert!(err.contains("typo"), "{typo}: {err}");
        let file = write(dir.path(), "typo.toml", &format!("location = {typo:?}\n"));
        let err = Memory::from_config(&file).unwrap_err().to_string();
        assert!(err.contains("typo"), "{typo}: {err}");
    }
    assert!(!cwd.join("redis").exists() && !cwd.join("s3:").exists());
    // The folder of that name is still reachable as a path.
    let folder = dir.path().join("redis//host");
    let memory = Memory::new(&folder).unwrap();
    assert_eq!(memory.cache(|x: i64| x + 1).eval(1), 2);
}

/// A coordinator's memory, shipped as its configuration, gives a worker the same entries.
fn ship_and_share(memory: &Memory) {
    let calls = AtomicUsize::new(0);
    let square = |x: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * x
    };
    let f = memory.cache_capturing(&square).name("cfg::square");
    assert_eq!(f.eval(12), 144);
    let shipped = memory
        .config()
        .expect("a memory built from a config")
        .to_toml()
        .unwrap();
    // The worker, elsewhere: only the text travels.
    let worker = MemoryConfig::from_toml(&shipped, "shipped")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(store_of(&worker), store_of(memory));
    assert_eq!(worker.verbose(), memory.verbose());
    let g = worker.cache_capturing(&square).name("cfg::square");
    assert!(g.check_call_in_cache(&12), "{shipped}");
    assert_eq!(g.eval(12), 144);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the worker loaded, not computed"
    );
    memory.clear().unwrap();
}

#[test]
fn configurations_ship_to_workers() {
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ship.toml",
        &format!(
            "verbose = 0\nmmap_mode = \"c\"\n[backend]\ntype = \"file\"\npath = {:?}\n",
            dir.path().join("cache").to_str().unwrap()
        ),
    );
    let memory = Memory::from_config(&file).unwrap();
    ship_and_share(&memory);
    assert_eq!(
        memory.config().unwrap().options.mmap_mode,
        MmapMode::CopyOnWrite
    );
    ship_and_share(&Memory::from_url(dir.path().join("other").to_str().unwrap()).unwrap());
    // A memory on a backend object has no configuration to ship.
    assert!(
        Memory::with_backend(std::sync::Arc::new(cachette::plugin::InMemoryBackend::new()))
            .config()
            .is_none()
    );
}

#[cfg(feature = "s3")]
#[test]
fn s3_forms() {
    let _env = env_lock();
    let Some(endpoint) = testkit::server_from_env("CACHETTE_TEST_S3_ENDPOINT") else {
        return;
    };
    let bucket =
        std::env::var("CACHETTE_TEST_S3_BUCKET").unwrap_or_else(|_| "cachette-test".to_owned());
    let prefix = testkit::unique_root("s3");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/{prefix}?endpoint={endpoint}&allow_http=true");
    let file = write(
        dir.path(),
        "s3.toml",
        &format!(
            "[backend]\ntype = \"s3\"\nbucket = {bucket:?}\nprefix = {prefix:?}\nendpoint = {endpoint:?}\nallow_http = true\n"
        ),
    );
    let by_url = Memory::from_url(&url).unwrap();
    let by_file = Memory::from_config(&file).unwrap();
    for m in [&by_url, &by_file] {
        let (scheme, location) = store_of(m);
        assert_eq!(scheme, "s3");
        assert!(
            location.contains(&bucket) && location.contains(&prefix),
            "{location}"
        );
    }
    ship_and_share(&by_file);
    ship_and_share(&by_url);
}

#[cfg(feature = "redis")]
#[test]
fn redis_forms() {
    let _env = env_lock();
    let Some(server) = testkit::server_from_env("CACHETTE_TEST_REDIS_URL") else {
        return;
    };
    let prefix = testkit::unique_root("redis");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{server}?prefix={prefix}");
    let file = write(
        dir.path(),
        "redis.toml",
        &format!("[backend]\ntype = \"redis\"\nurls = [{server:?}]\nprefix = {prefix:?}\n"),
    );
    let by_url = Memory::from_url(&url).unwrap();
    let by_file = Memory::from_config(&file).unwrap();
    for m in [&by_url, &by_file] {
        let (scheme, location) = store_of(m);
        assert_eq!(scheme, "redis");
        assert!(location.contains(&prefix), "{location}");
    }
    ship_and_share(&by_file);
    ship_and_share(&by_url);
}

/// A config file puts the local disk in front of Redis, with retries: the first memory computes
/// and writes through; a second one, on an empty local folder, loads from Redis and copies the
/// entry down; its next hit is local. `Memory::stats` counts it all.
#[cfg(feature = "redis")]
#[test]
fn a_local_tier_from_a_config_file() {
    let _env = env_lock();
    let Some(server) = testkit::server_from_env("CACHETTE_TEST_REDIS_URL") else {
        return;
    };
    let prefix = testkit::unique_root("tier");
    let dir = tempfile::tempdir().unwrap();
    let config = |local: &str| {
        format!(
            "location = \"{server}?prefix={prefix}\"\nlocal_tier = {:?}\n[retry]\nmax_retries = 2\ninitial_backoff_ms = 10\n",
            dir.path().join(local).to_str().unwrap()
        )
    };
    let first = Memory::from_config(write(dir.path(), "first.toml", &config("local-1"))).unwrap();
    let calls = AtomicUsize::new(0);
    let square = |x: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * x
    };
    assert_eq!(first.cache_capturing(&square).name("cfg::tier").eval(7), 49);
    let stats = first.stats().unwrap();
    assert_eq!(
        stats.store.puts, 2,
        "the entry and the function's identity: {stats}"
    );
    let tiers = stats.tiers.unwrap();
    assert_eq!(tiers.local_hits + tiers.remote_hits, 0, "{stats}");

    let second = Memory::from_config(write(dir.path(), "second.toml", &config("local-2"))).unwrap();
    let shipped = second.config().unwrap();
    assert_eq!(shipped.retry.as_ref().unwrap().max_retries, 2);
    assert!(shipped.local_tier.as_ref().unwrap().ends_with("local-2"));
    let f = second.cache_capturing(&square).name("cfg::tier");
    assert_eq!(f.eval(7), 49);
    let after_first = second.stats().unwrap().tiers.unwrap();
    assert!(after_first.remote_hits >= 1, "{after_first:?}");
    assert!(after_first.backfills >= 1, "{after_first:?}");
    assert_eq!(f.eval(7), 49);
    let after_second = second.stats().unwrap().tiers.unwrap();
    assert_eq!(
        after_second.remote_hits, after_first.remote_hits,
        "the second hit did not reach Redis"
    );
    assert!(after_second.local_hits > after_first.local_hits);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "computed once in all");
    let shown = second.stats().unwrap().to_string();
    assert!(shown.contains("local hits"), "{shown}");
    second.clear().unwrap();
}

#[test]
fn stats_count_what_the_memory_asked_and_can_be_turned_off() {
    let _env = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new(dir.path()).unwrap();
    let f = memory.cache(|x: u32| x + 1).name("cfg::stats");
    f.eval(1);
    f.eval(1);
    f.eval(2);
    let s = memory.stats().unwrap();
    // Misses: the function's identity (not stored yet), then calls 1 and 2; the hit: call 1.
    assert_eq!((s.store.hits, s.store.misses), (1, 3), "{s}");
    assert_eq!(s.store.puts, 3, "the identity and two entries: {s}");
    assert!(s.store.bytes_written > 0 && s.store.bytes_read > 0, "{s}");
    assert!(s.tiers.is_none());
    memory.reset_stats();
    assert_eq!(memory.stats().unwrap().store.hits, 0);
    let quiet = Memory::builder()
        .path(dir.path())
        .stats(false)
        .build()
        .unwrap();
    assert!(quiet.stats().is_none());
    assert!(!quiet.config().unwrap().options.stats);
    assert!(Memory::disabled().stats().is_none());
}
