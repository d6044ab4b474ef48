//! Automatic size limits: a memory built with `bytes_limit`, `items_limit` or `age_limit` keeps
//! its store within them after its writes.

use std::time::Duration;

use cachette::{Memory, MemoryConfig};
use chrono::Utc;

/// A memory on a fresh in-memory store, with the limits `limits` sets.
fn memory(
    name: &str,
    limits: impl FnOnce(cachette::MemoryBuilder) -> cachette::MemoryBuilder,
) -> Memory {
    let url = format!("memory://limits-{name}-{}", std::process::id());
    limits(Memory::builder().url(url)).build().unwrap()
}

fn block(x: u32) -> Vec<u8> {
    vec![x as u8; 1000]
}

fn square(x: u32) -> u32 {
    x * x
}

/// The bytes of all entries in the store.
fn stored_bytes(memory: &Memory) -> u64 {
    memory.entries(None).unwrap().iter().map(|e| e.size).sum()
}

#[test]
fn writes_beyond_the_bytes_limit_leave_the_store_within_it() {
    let memory = memory("bytes", |b| b.bytes_limit("10K"));
    let f = memory
        .cache_fn(block as fn(u32) -> Vec<u8>)
        .name("limits::block");
    for x in 0..40 {
        f.eval(x);
    }
    memory.wait_for_clean_up();
    let bytes = stored_bytes(&memory);
    assert!(bytes <= 10 * 1024, "{bytes} bytes kept");
    assert!(
        bytes > 5 * 1024,
        "only {bytes} bytes kept: it deleted too much"
    );
    assert!(f.check_call_in_cache(&39), "the latest entry is kept");
    assert!(!f.check_call_in_cache(&0), "the oldest entry is deleted");
}

#[test]
fn writes_beyond_the_items_limit_leave_the_store_within_it() {
    let memory = memory("items", |b| b.items_limit(5));
    let f = memory
        .cache_fn(square as fn(u32) -> u32)
        .name("limits::square");
    for x in 0..30 {
        f.eval(x);
    }
    memory.wait_for_clean_up();
    assert_eq!(memory.entries(None).unwrap().len(), 5);
    assert!(f.check_call_in_cache(&29));
    // Waiting again with nothing written since returns at once, and changes nothing.
    memory.wait_for_clean_up();
    assert_eq!(memory.entries(None).unwrap().len(), 5);
}

#[test]
fn the_recently_used_entries_survive() {
    let memory = memory("lru", |b| b.items_limit(3));
    let f = memory
        .cache_fn(square as fn(u32) -> u32)
        .name("limits::lru");
    for x in [1, 2, 3] {
        f.eval(x);
        // Each clean-up lists the store: the entries' times of access differ.
        memory.wait_for_clean_up();
    }
    assert_eq!(f.eval(1), 1); // A hit: 1 is now the most recently used, 2 the least.
    memory.wait_for_clean_up();
    f.eval(4);
    memory.wait_for_clean_up();
    assert!(
        !f.check_call_in_cache(&2),
        "the least recently used entry goes"
    );
    for x in [1, 3, 4] {
        assert!(f.check_call_in_cache(&x), "{x} is kept");
    }
}

#[test]
fn the_age_limit_deletes_old_entries_only() {
    let young = memory("age-young", |b| b.age_limit(Duration::from_secs(3600)));
    let f = young.cache_fn(square as fn(u32) -> u32).name("limits::age");
    f.eval(1);
    f.eval(2);
    young.wait_for_clean_up();
    assert_eq!(young.entries(None).unwrap().len(), 2);

    let old = memory("age-old", |b| b.age_limit(Duration::from_secs(1)));
    let f = old.cache_fn(square as fn(u32) -> u32).name("limits::age");
    f.eval(1);
    old.wait_for_clean_up();
    // Waits (without any deadline but the test's) until the entry is older than the limit.
    let written = old.entries(None).unwrap()[0].last_access;
    while Utc::now() - written <= chrono::TimeDelta::milliseconds(1100) {
        std::thread::sleep(Duration::from_millis(100));
    }
    f.eval(2); // A write brings about a clean-up.
    old.wait_for_clean_up();
    assert!(!f.check_call_in_cache(&1), "the old entry is deleted");
}

#[test]
fn limits_come_from_config_files() {
    let name = format!("limits-config-{}", std::process::id());
    let text = format!(
        "items_limit = 2\nbytes_limit = \"1G\"\nage_limit = \"7d\"\n[backend]\ntype = \"memory\"\nname = \"{name}\"\n"
    );
    let config = MemoryConfig::from_toml(&text, "limits.toml").unwrap();
    assert_eq!(config.options.items_limit, Some(2));
    assert_eq!(config.options.bytes_limit.unwrap().0, 1 << 30);
    assert_eq!(
        config.options.age_limit,
        Some(Duration::from_secs(7 * 24 * 3600))
    );
    let memory = config.build().unwrap();
    let f = memory
        .cache_fn(square as fn(u32) -> u32)
        .name("limits::config");
    for x in 0..10 {
        f.eval(x);
    }
    memory.wait_for_clean_up();
    assert_eq!(memory.entries(None).unwrap().len(), 2);

    // Written back as read; unset limits are not written at all.
    let back = memory.config().unwrap().to_toml().unwrap();
    assert!(back.contains("items_limit = 2"), "{back}");
    assert!(back.contains("bytes_limit = \"1G\""), "{back}");
    let again = MemoryConfig::from_toml(&back, "back.toml").unwrap();
    assert_eq!(again.options.age_limit, config.options.age_limit);
    let plain = MemoryConfig::from_url("memory://plain").to_toml().unwrap();
    assert!(!plain.contains("limit"), "{plain}");

    for bad in [
        "bytes_limit = \"ten\"",
        "bytes_limit = -1",
        "age_limit = \"soon\"",
        "age_limit = -5",
    ] {
        let text = format!("{bad}\n[backend]\ntype = \"memory\"\nname = \"bad\"\n");
        let err = MemoryConfig::from_toml(&text, "bad.toml").unwrap_err();
        let key = bad.split(' ').next().unwrap();
        assert!(err.to_string().contains(key), "{bad}: {err}");
    }
    assert!(
        Memory::builder()
            .url("memory://limits-bad")
            .bytes_limit("ten")
            .build()
            .is_err()
    );
}

#[cfg(feature = "fs")]
#[test]
fn foreign_files_in_the_store_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let memory = Memory::builder()
        .path(&root)
        .items_limit(1)
        .bytes_limit(1u64)
        .age_limit(Duration::ZERO)
        .build()
        .unwrap();
    let f = memory
        .cache_fn(square as fn(u32) -> u32)
        .name("limits::foreign");
    f.eval(1);
    memory.wait_for_clean_up();
    let folder = root
        .join("cachette")
        .join(cachette::FuncId::new("limits::foreign").folder());
    let foreign = [
        root.join("notes.txt"),
        root.join("cachette").join("notes.txt"),
        folder.join("notes.txt"),
        folder.join("0123456789abcdef0123456789abcdeg"),
    ];
    for path in &foreign {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not an entry").unwrap();
    }
    for x in 2..10 {
        f.eval(x);
    }
    memory.wait_for_clean_up();
    assert!(
        memory.entries(None).unwrap().is_empty(),
        "every entry is too old"
    );
    for path in &foreign {
        assert!(path.exists(), "{} was deleted", path.display());
    }
}

/// The number of threads of this process that keep size limits.
#[cfg(target_os = "linux")]
fn limit_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|task| {
            let comm = std::fs::read_to_string(task.as_ref().unwrap().path().join("comm"));
            comm.is_ok_and(|c| c.trim() == "cachette-limits")
        })
        .count()
}

/// Set in the process [`a_memory_without_limits_never_starts_the_thread`] starts.
const PROBE: &str = "CACHETTE_TEST_LIMITS_PROBE";

/// Counts the threads that keep limits, alone in its process (other tests start such threads).
#[cfg(target_os = "linux")]
#[test]
fn thread_probe() {
    if std::env::var_os(PROBE).is_none() {
        return;
    }
    let memory = memory("probe-none", |b| b);
    let f = memory
        .cache_fn(square as fn(u32) -> u32)
        .name("limits::probe");
    for x in 0..10 {
        f.eval(x);
        f.eval(x);
    }
    memory.wait_for_clean_up();
    assert_eq!(
        limit_threads(),
        0,
        "a memory without limits started a thread"
    );

    let limited = self::memory("probe-some", |b| b.items_limit(100));
    limited.wait_for_clean_up();
    assert_eq!(limit_threads(), 0, "the thread starts with the first write");
    let g = limited
        .cache_fn(square as fn(u32) -> u32)
        .name("limits::probe");
    g.eval(1);
    limited.wait_for_clean_up();
    assert_eq!(limit_threads(), 1, "a memory with limits has its thread");
}

#[cfg(target_os = "linux")]
#[test]
fn a_memory_without_limits_never_starts_the_thread() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "thread_probe", "--test-threads=1", "--nocapture"])
        .env(PROBE, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
}

/// Forwards everything to an in-memory store, but its listing panics on the thread that keeps
/// the limits: a backend's bug.
#[derive(Debug)]
struct PanickingList(cachette::plugin::InMemoryBackend);

#[cachette::plugin::async_trait]
impl cachette::plugin::StoreBackend for PanickingList {
    fn scheme(&self) -> &'static str {
        "panicking"
    }

    fn location(&self) -> String {
        "panicking://".to_owned()
    }

    fn capabilities(&self) -> cachette::plugin::Capabilities {
        self.0.capabilities()
    }

    async fn get_opts(
        &self,
        key: &cachette::plugin::Key,
        options: cachette::plugin::GetOptions,
    ) -> cachette::plugin::BackendResult<Option<cachette::plugin::GetResult>> {
        self.0.get_opts(key, options).await
    }

    async fn put_opts(
        &self,
        key: &cachette::plugin::Key,
        value: cachette::plugin::Blob,
        options: cachette::plugin::PutOptions,
    ) -> cachette::plugin::BackendResult<cachette::plugin::PutOutcome> {
        self.0.put_opts(key, value, options).await
    }

    async fn delete_many(
        &self,
        keys: &[cachette::plugin::Key],
    ) -> cachette::plugin::BackendResult<()> {
        self.0.delete_many(keys).await
    }

    async fn list(
        &self,
        prefix: &cachette::plugin::Prefix,
    ) -> cachette::plugin::BackendResult<Vec<cachette::plugin::ItemInfo>> {
        if std::thread::current().name() == Some("cachette-limits") {
            panic!("a listing that panics");
        }
        self.0.list(prefix).await
    }
}

/// A clean-up that panics (a backend's bug) ends the thread that keeps the limits, and
/// `wait_for_clean_up` returns: it waited for ever.
#[test]
fn a_clean_up_that_panics_does_not_leave_waiters_waiting() {
    let backend = std::sync::Arc::new(PanickingList(cachette::plugin::InMemoryBackend::new()));
    let memory = Memory::builder()
        .backend(backend)
        .items_limit(1)
        .build()
        .unwrap();
    let f = memory
        .cache_fn(square as fn(u32) -> u32)
        .name("limits::panicking");
    for x in 0..3 {
        assert_eq!(f.eval(x), x * x);
    }
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        memory.wait_for_clean_up();
        done.send(()).unwrap();
    });
    // Not a measure: a bound on a wait that never ended before the fix.
    waited
        .recv_timeout(Duration::from_secs(60))
        .expect("wait_for_clean_up still waits for a thread that panicked");
}
