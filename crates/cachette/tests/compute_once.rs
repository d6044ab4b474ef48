//! Compute-once under concurrency: callers that miss the same key at once compute it once,
//! across threads, async tasks, memories sharing a store, and processes; claims of dead
//! holders are taken over; waiting is bounded; errors are not cached.
//!
//! The tests across processes re-execute this binary as children (the environment variable
//! `CACHETTE_ONCE_CHILD` names the child's role). The stress test runs 4 processes × 4 threads ×
//! 200 calls over 50 keys; `CACHETTE_STRESS=full` runs the full 8 × 4 × 1,000. The S3 and Redis
//! variants use the test servers (`cargo xtask services start`): without them they are skipped
//! with a message, and under `CI=true` they fail.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachette::plugin::StoreBackendExt;
use cachette::plugin::{Key, block_on};
use cachette::{FuncId, MemorizedFunc, Memory, MemoryBuilder, Shelved};
use common::{Reports, capture, files_layout, files_url, warnings};

mod common;

const CHILD: &str = "CACHETTE_ONCE_CHILD";
const CHILD_URL: &str = "CACHETTE_ONCE_URL";
const CHILD_DIR: &str = "CACHETTE_ONCE_DIR";
const CHILD_SHAPE: &str = "CACHETTE_ONCE_SHAPE";

/// A counter of computations.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// 8 callers at once (threads past a barrier) of `f(7)`; the values they got.
fn eight_threads<F>(f: &F) -> Vec<u64>
where
    F: Fn(u64) -> u64 + Sync,
{
    let barrier = Barrier::new(8);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    f(7)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A slow function memoized in `memory`, and its counter.
fn slow(
    memory: &Memory,
    name: &str,
) -> (
    MemorizedFunc<u64, impl Fn(u64) -> u64 + Send + Sync + use<>>,
    Calls,
) {
    let calls = Calls::default();
    let c = calls.clone();
    let f = memory
        .cache_capturing(move |x: u64| {
            c.hit();
            std::thread::sleep(Duration::from_millis(200));
            x * 3
        })
        .name(name);
    (f, calls)
}

#[test]
fn threads_missing_one_key_compute_it_once() {
    let dir = tempfile::tempdir().unwrap();
    // The files layout, whose claims are files beside the entries.
    let (memory, reports) = capture(files_layout(dir.path()));
    assert!(memory.compute_once() && memory.claims());
    // A backend given as an object takes claims only when asked to.
    let object = || Arc::new(cachette::plugin::InMemoryBackend::new());
    assert!(!Memory::with_backend(object()).claims());
    let asked = Memory::builder().backend(object()).claims(true);
    assert!(asked.build().unwrap().claims());
    let (f, calls) = slow(&memory, "once::threads");
    assert_eq!(eight_threads(&|x| f.eval(x)), vec![21; 8]);
    assert_eq!(calls.get(), 1, "one computation, seven loads");
    assert!(warnings(&reports).is_empty(), "{:?}", warnings(&reports));
    let folder = dir.path().join("cachette").join(f.id().folder());
    let names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".claim")),
        "the claim is deleted once the entry is stored: {names:?}"
    );

    // Off for the memory: every caller computes.
    let off = files_layout(dir.path())
        .compute_once(false)
        .build()
        .unwrap();
    assert!(!off.compute_once());
    let (g, calls) = slow(&off, "once::threads-off");
    assert_eq!(eight_threads(&|x| g.eval(x)), vec![21; 8]);
    assert!(calls.get() > 1, "{} computations", calls.get());

    // On again for one function of that memory.
    let (h, calls) = slow(&off, "once::threads-on");
    let h = h.compute_once(true);
    assert!(h.computes_once());
    assert_eq!(eight_threads(&|x| h.eval(x)), vec![21; 8]);
    assert_eq!(calls.get(), 1);
}

/// 8 async tasks at once (past a barrier) calling `f(7)` of the function `name`, compute-once
/// on or off; how many computations ran.
async fn eight_tasks(memory: &Memory, name: &str, once: bool) -> usize {
    let f = Arc::new(MemorizedFunc::<u64>::new(memory, FuncId::new(name)).compute_once(once));
    eight_tasks_of(&[f]).await
}

/// Eight async tasks calling the functions `funcs` in turn on one key; the computations.
async fn eight_tasks_of(funcs: &[Arc<MemorizedFunc<u64>>]) -> usize {
    let calls = Calls::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (f, calls, barrier) = (
                funcs[i % funcs.len()].clone(),
                calls.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                f.call_with_async(7u64, |x| async move {
                    calls.hit();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, Infallible>(x * 3)
                })
                .await
                .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 21);
    }
    calls.get()
}

#[tokio::test(flavor = "current_thread")]
async fn async_tasks_on_one_thread_compute_once() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new(dir.path()).unwrap();
    assert_eq!(eight_tasks(&memory, "once::one-thread", true).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_tasks_missing_one_key_compute_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new(dir.path()).unwrap();
    assert_eq!(eight_tasks(&memory, "once::tasks", true).await, 1);
    let off = eight_tasks(&memory, "once::tasks-off", false).await;
    assert!(off > 1, "{off} computations");

    // Synchronous calls from async tasks: waiting moves the worker's other tasks elsewhere.
    let (f, calls) = slow(&memory, "once::sync-in-tasks");
    let f = Arc::new(f);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.eval(7) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 21);
    }
    assert_eq!(calls.get(), 1);
}

/// Async callers of two memories on one index-layout store: the claims are the store's locks,
/// taken off the runtime, and the key is computed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_tasks_of_two_memories_share_the_index_claims() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}?layout=index", dir.path().display());
    let (a, b) = (
        Memory::from_url(&url).unwrap(),
        Memory::from_url(&url).unwrap(),
    );
    let name = FuncId::new("once::index-tasks");
    let funcs = [
        Arc::new(MemorizedFunc::<u64>::new(&a, name.clone())),
        Arc::new(MemorizedFunc::<u64>::new(&b, name)),
    ];
    assert_eq!(eight_tasks_of(&funcs).await, 1);
}

#[test]
fn a_failed_computation_is_not_cached_and_a_waiter_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new(dir.path()).unwrap();
    let f = MemorizedFunc::<u64>::new(&memory, FuncId::new("once::fails-first"));
    let calls = Calls::default();
    let barrier = Barrier::new(8);
    let outcomes: Vec<Result<u64, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    f.call_with(7u64, |x| {
                        let n = calls.hit();
                        std::thread::sleep(Duration::from_millis(200));
                        if n == 0 {
                            Err("the first computation fails".to_owned())
                        } else {
                            Ok(x * 3)
                        }
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(
        errors, 1,
        "the error goes to its own caller only: {outcomes:?}"
    );
    assert!(outcomes.iter().flatten().all(|&v| v == 21), "{outcomes:?}");
    assert_eq!(calls.get(), 2, "the failed computation, then one waiter's");
    assert!(f.check_call_in_cache(&7u64));
    let again = f.call_with(7u64, |_| Err::<u64, String>("not called".into()));
    assert_eq!(again, Ok(21), "the stored value is the successful one");
}

/// A miss's claim on the local disk, kept open from its create for the entry that replaces it,
/// is taken by that entry, or deleted with the computation that failed: after a hundred misses
/// none is left in the store, nor open in the process.
#[test]
fn misses_leave_no_claim_behind_stored_or_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::fs::canonicalize(dir.path()).unwrap();
    // The files layout, whose claims are files.
    let memory = Memory::from_url(&files_url(&store)).unwrap();
    let f = MemorizedFunc::<u64>::new(&memory, FuncId::new("once::leaves-nothing"));
    for x in 0..100u64 {
        let out = f.call_with(x, |x| {
            if x % 10 == 0 {
                Err("this one fails".to_owned())
            } else {
                Ok(x * 2)
            }
        });
        assert_eq!(out.is_ok(), x % 10 != 0, "{x}: {out:?}");
    }
    let claims = common::files_named(&store, |name| name.ends_with(".claim"));
    assert_eq!(claims, Vec::<PathBuf>::new());
    let open = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(&store))
        .count();
    assert!(open < 8, "{open} descriptors open in the store");
}

/// Two memories on one folder stand for two processes: they share claims, not flights. In the
/// files layout, whose claims are items.
#[test]
fn memories_sharing_a_store_wait_for_each_others_claims() {
    let dir = tempfile::tempdir().unwrap();
    share_claims(&files_url(dir.path()));
}

/// As above, in the index layout, whose claims are locks.
#[test]
fn memories_sharing_a_store_wait_for_each_others_claims_index_layout() {
    let dir = tempfile::tempdir().unwrap();
    share_claims(&format!("file://{}?layout=index", dir.path().display()));
}

fn share_claims(url: &str) {
    let (a, b) = (
        Memory::from_url(url).unwrap(),
        Memory::from_url(url).unwrap(),
    );
    let name = FuncId::new("once::shared");
    let (fa, fb) = (
        MemorizedFunc::<u64>::new(&a, name.clone()),
        MemorizedFunc::<u64>::new(&b, name),
    );
    for fails in [false, true] {
        let x = u64::from(fails);
        let calls = Calls::default();
        let (started_tx, started) = std::sync::mpsc::channel();
        let (first, second) = std::thread::scope(|s| {
            let first = s.spawn(|| {
                fa.call_with(x, |x| {
                    calls.hit();
                    started_tx.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                    if fails { Err("failed") } else { Ok(x + 100) }
                })
            });
            // The first memory holds the claim while it computes.
            started.recv().unwrap();
            let second = fb.call_with(x, |x| {
                calls.hit();
                Ok::<u64, &str>(x + 100)
            });
            (first.join().unwrap(), second)
        });
        assert_eq!(second, Ok(x + 100));
        if fails {
            assert_eq!(first, Err("failed"));
            assert_eq!(calls.get(), 2, "the waiter took over");
        } else {
            assert_eq!(first, Ok(x + 100));
            assert_eq!(calls.get(), 1, "the waiter loaded the entry");
        }
    }
}

/// A holder computing for several leases renews its claim: the other memory waits for it and
/// does not take over.
#[test]
fn a_live_holder_renews_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let lease = Duration::from_millis(300);
    let open = || capture(Memory::builder().path(dir.path()).lease(lease));
    let ((a, _), (b, reports)) = (open(), open());
    assert_eq!(a.lease(), lease);
    let name = FuncId::new("once::renewed");
    let (fa, fb) = (
        MemorizedFunc::<u64>::new(&a, name.clone()),
        MemorizedFunc::<u64>::new(&b, name),
    );
    let calls = Calls::default();
    let (started_tx, started) = std::sync::mpsc::channel();
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| {
            fa.call_with(1u64, |x| {
                calls.hit();
                started_tx.send(()).unwrap();
                std::thread::sleep(lease * 4);
                Ok::<u64, Infallible>(x + 1)
            })
        });
        started.recv().unwrap();
        let second = fb.call_with(1u64, |x| {
            calls.hit();
            Ok::<u64, Infallible>(x + 1)
        });
        (first.join().unwrap(), second)
    });
    assert_eq!((first, second), (Ok(2), Ok(2)));
    assert_eq!(calls.get(), 1, "the waiter loaded the holder's entry");
    assert!(warnings(&reports).is_empty(), "{:?}", warnings(&reports));
}

/// The args id of `f(x)` for a function named `name` (the same in every store).
fn args_id(name: &str, x: u64) -> String {
    let scratch = Memory::with_backend(Arc::new(cachette::plugin::InMemoryBackend::new()));
    let f = MemorizedFunc::<u64>::new(&scratch, FuncId::new(name));
    match f.call_and_shelve_with(x, Ok::<_, Infallible>).unwrap() {
        Shelved::Memorized(r) => r.args_id().to_owned(),
        Shelved::NotMemorized(_) => panic!("not stored"),
    }
}

/// Writes the claim of another process by hand, as the documented format says.
fn write_claim(memory: &Memory, name: &str, x: u64, lease_ms: u64, expires_ms: u64) -> Key {
    let folder = FuncId::new(name).folder().to_owned();
    let key = Key::new(format!("cachette/{folder}/{}.claim", args_id(name, x))).unwrap();
    let text = format!(
        "cachette claim 1\nhost elsewhere\npid 999999\ntoken 0123456789abcdef0123456789abcdef\nlease_ms {lease_ms}\nexpires_ms {expires_ms}\nrenewals 0\n"
    );
    let backend = memory.backend().unwrap().clone();
    let k = key.clone();
    block_on(false, async move {
        backend.put(&k, Bytes::from(text).into()).await
    })
    .unwrap()
    .unwrap();
    key
}

fn contains(memory: &Memory, key: &Key) -> bool {
    let backend = memory.backend().unwrap().clone();
    let k = key.clone();
    block_on(false, async move { backend.contains(&k).await })
        .unwrap()
        .unwrap()
}

#[test]
fn stale_claims_of_dead_holders_are_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    // The files layout, whose claims are items (in the index layout they are locks).
    let (memory, reports) = capture(files_layout(dir.path()));
    let calls = Calls::default();
    let c = calls.clone();
    let f = memory
        .cache_capturing(move |x: u64| {
            c.hit();
            x + 1
        })
        .name("once::stale");
    // A claim whose lease ran out.
    let claim = write_claim(&memory, "once::stale", 1, 30_000, now_ms() - 1_000);
    assert_eq!(f.eval(1), 2);
    // A claim whose expiry lies ahead (a clock ahead of ours) but that nobody renews: stale
    // once unchanged for its whole lease.
    let claim_2 = write_claim(&memory, "once::stale", 2, 300, now_ms() + 3_600_000);
    assert_eq!(f.eval(2), 3);
    assert_eq!(calls.get(), 2);
    assert!(!contains(&memory, &claim) && !contains(&memory, &claim_2));
    let stale = warnings(&reports)
        .into_iter()
        .filter(|w| w.contains("stale") && w.contains("process 999999 on elsewhere"))
        .count();
    assert_eq!(stale, 2, "{:?}", warnings(&reports));
}

#[test]
fn waiting_is_bounded_by_the_wait_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // The files layout, whose claims are items (in the index layout they are locks).
    let (memory, reports) =
        capture(files_layout(dir.path()).wait_timeout(Duration::from_millis(300)));
    assert_eq!(memory.wait_timeout(), Duration::from_millis(300));
    let calls = Calls::default();
    let c = calls.clone();
    let f = memory
        .cache_capturing(move |x: u64| {
            c.hit();
            x + 1
        })
        .name("once::timeout");
    // A live claim that never completes: renewed, as far as its expiry says.
    write_claim(&memory, "once::timeout", 1, 3_600_000, now_ms() + 3_600_000);
    assert_eq!(f.eval(1), 2);
    assert_eq!(calls.get(), 1);
    let w = warnings(&reports);
    assert!(
        w.iter()
            .any(|w| w.contains("wait_timeout") && w.contains("once::timeout")),
        "{w:?}"
    );
    assert_eq!(f.eval(1), 2, "the result was stored");
    assert_eq!(calls.get(), 1);
}

#[test]
fn claims_are_not_entries() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new(dir.path()).unwrap();
    let f = memory.cache(|x: u64| x).name("once::listing");
    f.eval(1);
    let claim = write_claim(&memory, "once::listing", 2, 3_600_000, now_ms() + 3_600_000);
    let report = memory
        .reduce_size(&cachette::SizeLimits::default().items_limit(0))
        .unwrap();
    assert_eq!((report.deleted_items, report.kept_items), (1, 0));
    assert!(contains(&memory, &claim), "a live claim is left alone");
    memory.clear().unwrap();
    assert!(!contains(&memory, &claim), "clear deletes claims");
}

/// A store whose writes of entries (not of claims, nor of a function's identity item) hang
/// until `resume`: a request lost in the network, as a store whose futures do not block
/// (`blocking_io: false`) may lose one.
#[derive(Debug, Default)]
struct StalledEntryWrites {
    inner: cachette::plugin::InMemoryBackend,
    entered: std::sync::atomic::AtomicBool,
    resume: std::sync::atomic::AtomicBool,
}

impl StalledEntryWrites {
    async fn stall(&self, key: &cachette::plugin::Key) {
        let name = key.file_name();
        if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return;
        }
        self.entered.store(true, Ordering::SeqCst);
        while !self.resume.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cachette::plugin::async_trait]
impl cachette::plugin::StoreBackend for StalledEntryWrites {
    fn scheme(&self) -> &'static str {
        "stalled"
    }

    fn location(&self) -> String {
        "stalled://test".into()
    }

    fn capabilities(&self) -> cachette::plugin::Capabilities {
        let mut capabilities = self.inner.capabilities();
        capabilities.blocking_io = false;
        capabilities
    }

    async fn get_opts(
        &self,
        key: &Key,
        options: cachette::plugin::GetOptions,
    ) -> cachette::plugin::BackendResult<Option<cachette::plugin::GetResult>> {
        self.inner.get_opts(key, options).await
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: cachette::plugin::Blob,
        options: cachette::plugin::PutOptions,
    ) -> cachette::plugin::BackendResult<cachette::plugin::PutOutcome> {
        self.stall(key).await;
        self.inner.put_opts(key, value, options).await
    }

    async fn put_then_delete(
        &self,
        key: &Key,
        value: cachette::plugin::Blob,
        options: cachette::plugin::PutOptions,
        delete: &Key,
    ) -> cachette::plugin::BackendResult<cachette::plugin::PutOutcome> {
        self.stall(key).await;
        self.inner
            .put_then_delete(key, value, options, delete)
            .await
    }

    async fn delete_many(&self, keys: &[Key]) -> cachette::plugin::BackendResult<()> {
        self.inner.delete_many(keys).await
    }

    async fn list(
        &self,
        prefix: &cachette::plugin::Prefix,
    ) -> cachette::plugin::BackendResult<Vec<cachette::plugin::ItemInfo>> {
        self.inner.list(prefix).await
    }
}

/// A task cancelled while it writes its entry (with the deletion of its claim) leaves no claim
/// behind: the lease thread deletes it at once, where it was left to the end of its lease
/// (here an hour, during which every other caller of the key would wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_while_writing_its_entry_leaves_no_claim() {
    use cachette::plugin::StoreBackend as _;
    let store = Arc::new(StalledEntryWrites::default());
    let memory = Memory::builder()
        .backend(store.clone())
        .claims(true)
        .lease(Duration::from_secs(3600))
        .build()
        .unwrap();
    let name = "once::cancelled";
    let f = Arc::new(MemorizedFunc::<u64>::new(&memory, FuncId::new(name)));
    let task = tokio::spawn({
        let f = f.clone();
        async move {
            f.call_with_async(7u64, |x| async move { Ok::<_, Infallible>(x * 3) })
                .await
        }
    });
    let started = Instant::now();
    while !store.entered.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the entry was never written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let claim = Key::new(format!(
        "cachette/{}/{}.claim",
        FuncId::new(name).folder(),
        args_id(name, 7)
    ))
    .unwrap();
    let backend = memory.backend().unwrap().clone();
    let listed = store
        .inner
        .list(&cachette::plugin::Prefix::root())
        .await
        .unwrap();
    assert!(
        backend.contains(&claim).await.unwrap(),
        "the claim {claim} is held: {listed:?}"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let deleted = Instant::now();
    while backend.contains(&claim).await.unwrap() {
        assert!(
            deleted.elapsed() < Duration::from_secs(60),
            "the claim of a cancelled task was left to its lease"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.resume.store(true, Ordering::SeqCst);
}

// Across processes.

/// Runs this binary's test `test` as a child process with `role` and the environment `env`.
fn spawn_child(test: &str, role: &str, env: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

/// Kills a child process when dropped (a failing test leaves none behind).
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs this process's child role, if it is a child. Returns whether it was one.
fn run_child() -> bool {
    cachette::link_backends();
    let Ok(role) = std::env::var(CHILD) else {
        return false;
    };
    let url = std::env::var(CHILD_URL).unwrap();
    let dir = PathBuf::from(std::env::var(CHILD_DIR).unwrap());
    match role.as_str() {
        "stress" => stress_child(&url, &dir),
        "hold" => hold_child(&url, &dir),
        other => panic!("unknown child role {other}"),
    }
    true
}

/// The output of the stress function for key `k`: enough numbers to notice a damaged load.
fn stress_value(k: u64) -> Vec<u64> {
    (0..64).map(|i| k * 1_000_003 + i).collect()
}

struct Shape {
    processes: usize,
    threads: usize,
    calls: usize,
    keys: u64,
}

fn stress_shape() -> Shape {
    if std::env::var("CACHETTE_STRESS").is_ok_and(|v| v == "full") {
        Shape {
            processes: 8,
            threads: 4,
            calls: 1_000,
            keys: 50,
        }
    } else {
        Shape {
            processes: 4,
            threads: 4,
            calls: 200,
            keys: 50,
        }
    }
}

/// A child of the stress test: threads calling the stress function on random keys; each
/// computation leaves a file in `dir/computed`. Prints what it saw.
fn stress_child(url: &str, dir: &Path) {
    let shape: Vec<u64> = std::env::var(CHILD_SHAPE)
        .unwrap()
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    let (threads, calls, keys) = (shape[0] as usize, shape[1] as usize, shape[2]);
    let (memory, reports): (Memory, Reports) = capture(MemoryBuilder::new().url(url));
    let computed = dir.join("computed");
    let seq = AtomicU64::new(0);
    let f = memory
        .cache_capturing(|k: u64| {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            let name = format!("k{k}-{}-{n}", std::process::id());
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(computed.join(name))
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
            stress_value(k)
        })
        .name("once::stress");
    let go = dir.join("go");
    let waited = Instant::now();
    while !go.exists() {
        assert!(waited.elapsed() < Duration::from_secs(120), "no go");
        std::thread::sleep(Duration::from_millis(2));
    }
    let t0 = Instant::now();
    let wrong = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (f, wrong) = (&f, &wrong);
            s.spawn(move || {
                let mut state = ((u64::from(std::process::id()) << 8) | t as u64) * 2 + 1;
                for _ in 0..calls {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let k = state % keys;
                    if f.eval(k) != stress_value(k) {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let w = warnings(&reports);
    println!(
        "ONCE-CHILD calls={} wrong={} warnings={} secs={:.3} first-warning={:?}",
        threads * calls,
        wrong.load(Ordering::Relaxed),
        w.len(),
        t0.elapsed().as_secs_f64(),
        w.first()
    );
}

/// Stress across processes on the store at `url`: every key computed exactly once, every
/// load correct, no warning.
fn stress(test: &str, url: &str) {
    let shape = stress_shape();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("computed")).unwrap();
    let env = [
        (CHILD_URL, url.to_owned()),
        (CHILD_DIR, dir.path().to_str().unwrap().to_owned()),
        (
            CHILD_SHAPE,
            format!("{},{},{}", shape.threads, shape.calls, shape.keys),
        ),
    ];
    let children: Vec<Reaped> = (0..shape.processes)
        .map(|_| Reaped(Some(spawn_child(test, "stress", &env))))
        .collect();
    let t0 = Instant::now();
    std::fs::write(dir.path().join("go"), b"").unwrap();
    let mut total = 0usize;
    for mut child in children {
        let output = child.0.take().unwrap().wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "a child failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.find("ONCE-CHILD").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("no report: {stdout}"));
        let field = |name: &str| -> usize {
            line.split(' ')
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(field("wrong"), 0, "{line}");
        assert_eq!(field("warnings"), 0, "{line}");
        total += field("calls");
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut per_key: BTreeMap<u64, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path().join("computed")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let k = name[1..name.find('-').unwrap()].parse().unwrap();
        *per_key.entry(k).or_default() += 1;
    }
    let computations: usize = per_key.values().sum();
    eprintln!(
        "stress {test}: {} processes x {} threads x {} calls over {} keys: {total} calls in {secs:.2} s ({:.0} calls/s); {computations} computations for {} keys",
        shape.processes,
        shape.threads,
        shape.calls,
        shape.keys,
        total as f64 / secs,
        per_key.len()
    );
    let repeated: Vec<_> = per_key.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "keys computed more than once: {repeated:?}"
    );
    assert_eq!(per_key.len() as u64, shape.keys, "every key was computed");
}

#[test]
fn stress_local_disk() {
    if run_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The files layout (the index layout has a test of its own below).
    stress("stress_local_disk", &files_url(dir.path()));
}

#[test]
fn stress_local_disk_index_layout() {
    if run_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}?layout=index", dir.path().display());
    stress("stress_local_disk_index_layout", &url);
    assert!(
        dir.path()
            .join(".cachette-index")
            .join("data.mdb")
            .is_file()
    );
}

/// A child holding a claim: its computation never ends (the parent kills it).
fn hold_child(url: &str, dir: &Path) {
    let memory = Memory::builder()
        .url(url)
        .lease(Duration::from_secs(2))
        .build()
        .unwrap();
    let f = memory
        .cache_capturing(|x: u64| {
            std::fs::write(dir.join("started"), b"").unwrap();
            std::thread::sleep(Duration::from_secs(120));
            x
        })
        .name("once::lease");
    f.eval(7);
}

/// A process holding a claim is killed mid-computation: a waiter in this process takes over
/// (once the lease runs out, for a claim that is an item), and completes the call. Gives the
/// waiter's warnings.
fn killed_holder(test: &str, url: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (CHILD_URL, url.to_owned()),
        (CHILD_DIR, dir.path().to_str().unwrap().to_owned()),
    ];
    let mut child = Reaped(Some(spawn_child(test, "hold", &env)));
    let t0 = Instant::now();
    while !dir.path().join("started").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the child never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (memory, reports) = capture(Memory::builder().url(url).lease(Duration::from_secs(2)));
    let calls = Calls::default();
    let c = calls.clone();
    let f = memory
        .cache_capturing(move |x: u64| {
            c.hit();
            x * 10
        })
        .name("once::lease");
    let value = std::thread::scope(|s| {
        let waiter = s.spawn(|| f.eval(7));
        // The waiter finds the child's live claim; then the child dies.
        std::thread::sleep(Duration::from_millis(300));
        let mut holder = child.0.take().unwrap();
        holder.kill().unwrap();
        holder.wait().unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(value, 70);
    assert_eq!(calls.get(), 1, "the waiter computed it");
    assert_eq!(f.eval(7), 70);
    assert_eq!(calls.get(), 1, "and stored it");
    memory.clear().unwrap();
    warnings(&reports)
}

#[test]
fn a_killed_holder_is_taken_over_local_disk() {
    if run_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The files layout, whose claims are items that go stale once their lease runs out.
    let warned = killed_holder(
        "a_killed_holder_is_taken_over_local_disk",
        &files_url(dir.path()),
    );
    assert!(warned.iter().any(|w| w.contains("stale")), "{warned:?}");
}

#[test]
fn a_killed_holder_is_taken_over_local_disk_index_layout() {
    if run_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}?layout=index", dir.path().display());
    let warned = killed_holder(
        "a_killed_holder_is_taken_over_local_disk_index_layout",
        &url,
    );
    // Its claim was a lock, released by the system when the holder died: nothing went stale.
    assert!(warned.is_empty(), "{warned:?}");
}

#[cfg(all(feature = "s3", feature = "testkit"))]
fn s3_url() -> Option<String> {
    let endpoint = cachette::plugin::testkit::server_from_env("CACHETTE_TEST_S3_ENDPOINT")?;
    let bucket =
        std::env::var("CACHETTE_TEST_S3_BUCKET").unwrap_or_else(|_| "cachette-test".to_owned());
    Some(format!(
        "s3://{bucket}/{}?endpoint={endpoint}&allow_http=true",
        cachette::plugin::testkit::unique_root("s3")
    ))
}

#[cfg(all(feature = "redis", feature = "testkit"))]
fn redis_url() -> Option<String> {
    let server = cachette::plugin::testkit::server_from_env("CACHETTE_TEST_REDIS_URL")?;
    Some(format!(
        "{server}?prefix={}",
        cachette::plugin::testkit::unique_root("redis")
    ))
}

/// Deletes what a test left under a server's prefix.
#[cfg(all(any(feature = "s3", feature = "redis"), feature = "testkit"))]
fn clear(url: &str) {
    Memory::from_url(url).unwrap().clear().unwrap();
}

#[cfg(all(feature = "s3", feature = "testkit"))]
#[test]
fn stress_s3() {
    if run_child() {
        return;
    }
    let Some(url) = s3_url() else { return };
    stress("stress_s3", &url);
    clear(&url);
}

#[cfg(all(feature = "redis", feature = "testkit"))]
#[test]
fn stress_redis() {
    if run_child() {
        return;
    }
    let Some(url) = redis_url() else { return };
    stress("stress_redis", &url);
    clear(&url);
}

#[cfg(all(feature = "s3", feature = "testkit"))]
#[test]
fn a_killed_holder_is_taken_over_s3() {
    if run_child() {
        return;
    }
    let Some(url) = s3_url() else { return };
    killed_holder("a_killed_holder_is_taken_over_s3", &url);
}

#[cfg(all(feature = "redis", feature = "testkit"))]
#[test]
fn a_killed_holder_is_taken_over_redis() {
    if run_child() {
        return;
    }
    let Some(url) = redis_url() else { return };
    killed_holder("a_killed_holder_is_taken_over_redis", &url);
}
