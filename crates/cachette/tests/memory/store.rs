//! The store under a memory: size reduction, damaged and foreign entries, unwritable
//! locations, and concurrent threads and processes.

use super::*;

#[test]
fn reduce_size_by_items_deletes_the_least_recently_accessed_first() {
    let fx = Fixture::new();
    let f = fx.memory.cache(|x: i32| vec![x; 100]).name("tests::lru");
    for x in [1, 2, 3] {
        f.eval(x);
        // File times have a granularity of a few milliseconds.
        std::thread::sleep(Duration::from_millis(50));
    }
    // Access is tracked with a granularity of about a second.
    std::thread::sleep(Duration::from_millis(1500));
    f.eval(1); // 1 is now the most recently used, 2 the least.
    let report = fx
        .memory
        .reduce_size(&SizeLimits::default().items_limit(2))
        .unwrap();
    assert_eq!(report.deleted_items, 1);
    assert_eq!(report.kept_items, 2);
    assert!(!f.check_call_in_cache(&2));
    assert!(f.check_call_in_cache(&1));
    assert!(f.check_call_in_cache(&3));
}

#[test]
fn reduce_size_by_bytes_takes_size_strings() {
    let fx = Fixture::new();
    let f = fx.memory.cache(|x: u8| vec![x; 1000]).name("tests::bytes");
    for x in 0..10 {
        f.eval(x);
    }
    let limits = SizeLimits::default().bytes_limit("2K").unwrap();
    let report = fx.memory.reduce_size(&limits).unwrap();
    assert!(report.kept_bytes <= 2048, "{report:?}");
    assert!(report.kept_items >= 1, "{report:?}");
    assert_eq!(report.kept_items + report.deleted_items, 10);
    assert!(SizeLimits::default().bytes_limit("ten").is_err());
    assert_eq!(
        "10G".parse::<cachette::ByteSize>().unwrap().0,
        10 * 1024 * 1024 * 1024
    );
}

#[test]
fn reduce_size_by_age() {
    let fx = Fixture::new();
    let f = fx.memory.cache(|x: i32| x).name("tests::age");
    f.eval(1);
    f.eval(2);
    let keep_all = fx
        .memory
        .reduce_size(&SizeLimits::default().age_limit(TimeDelta::hours(1)))
        .unwrap();
    assert_eq!(keep_all.deleted_items, 0);
    let negative = fx
        .memory
        .reduce_size(&SizeLimits::default().age_limit(TimeDelta::seconds(-1)));
    assert!(
        matches!(negative, Err(Error::InvalidArgument(_))),
        "{negative:?}"
    );
    let zero = fx
        .memory
        .reduce_size(&SizeLimits::default().age_limit(TimeDelta::zero()))
        .unwrap();
    assert_eq!(zero.deleted_items, 2);
    assert!(!f.check_call_in_cache(&1));
}

/// The path of the single entry of a function.
fn only_entry(folder: &Path) -> PathBuf {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().len() == 32)
        .unwrap()
}

/// `x.to_string()` memoized as `name` in `fx`, and its calls.
fn counted_to_string(fx: &Fixture, name: &str) -> (Calls, impl Fn(i32) -> String) {
    let calls = Calls::default();
    let c = calls.clone();
    let f = fx
        .memory
        .cache_capturing(move |x: i32| {
            c.hit();
            x.to_string()
        })
        .name(name);
    (calls, move |x| f.eval(x))
}

/// Rewrites the only entry in `folder` with `change` made to its bytes.
fn rewrite_entry(folder: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let entry = only_entry(folder);
    let mut bytes = std::fs::read(&entry).unwrap();
    change(&mut bytes);
    std::fs::write(&entry, bytes).unwrap();
}

/// That `fx` warned once, of an unusable entry (`what` names the case).
fn assert_one_unusable_warning(fx: &Fixture, what: &str) {
    let warnings = fx.warnings();
    assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
    assert!(warnings[0].contains("unusable"), "{what}: {}", warnings[0]);
}

/// A way to damage the bytes of an entry, by name.
type Damage = (&'static str, fn(&mut Vec<u8>));

#[test]
fn damaged_entries_are_reported_once_and_recomputed() {
    let damages: [Damage; 4] = [
        ("truncated", |b| b.truncate(b.len() - 3)),
        ("bit flip", |b| {
            let n = b.len() - 1;
            b[n] ^= 1;
        }),
        ("foreign", |b| *b = b"\x80\x04\x95 a pickle, say".to_vec()),
        ("empty", |b| b.clear()),
    ];
    for (what, damage) in damages {
        let fx = Fixture::files();
        let (calls, f) = counted_to_string(&fx, "tests::damaged");
        f(1);
        rewrite_entry(&fx.folder("tests::damaged"), damage);

        assert_eq!(f(1), "1", "{what}");
        assert_eq!(calls.get(), 2, "{what}: recomputed");
        assert_one_unusable_warning(&fx, what);
        // The recomputed result replaced the damaged one.
        assert_eq!(f(1), "1");
        assert_eq!(calls.get(), 2, "{what}");
    }
}

/// A hit reuses the checks of an entry it read before only when it reads exactly the same
/// bytes: an entry damaged, or replaced by another call's, after many hits is refused.
#[test]
fn an_entry_hit_many_times_is_still_checked_at_every_hit() {
    /// A change of the bytes of an entry, given another entry's bytes, by name.
    type Change = (&'static str, fn(&mut Vec<u8>, &[u8]));
    let changes: [Change; 3] = [
        ("bit flip in the metadata", |b, _| b[60] ^= 1),
        ("bit flip in the output", |b, _| {
            let n = b.len() - 1;
            b[n] ^= 1;
        }),
        ("another call's entry", |b, other| *b = other.to_vec()),
    ];
    for (what, change) in changes {
        let fx = Fixture::files();
        let (calls, f) = counted_to_string(&fx, "tests::hit_often");
        f(2);
        let other = std::fs::read(only_entry(&fx.folder("tests::hit_often"))).unwrap();
        std::fs::remove_file(only_entry(&fx.folder("tests::hit_often"))).unwrap();
        for _ in 0..5 {
            assert_eq!(f(1), "1");
        }
        assert_eq!(calls.get(), 2, "{what}");
        rewrite_entry(&fx.folder("tests::hit_often"), |b| change(b, &other));

        assert_eq!(f(1), "1", "{what}");
        assert_eq!(calls.get(), 3, "{what}: recomputed");
        assert_one_unusable_warning(&fx, what);
    }
}

#[test]
fn an_output_of_another_type_is_recomputed() {
    let fx = Fixture::new();
    fx.memory.cache(|x: i32| x).name("tests::retyped").eval(1);
    let (calls, f) = counted_to_string(&fx, "tests::retyped");
    assert_eq!(f(1), "1");
    assert_eq!(calls.get(), 1);
    assert!(fx.warnings().iter().any(|w| w.contains("cannot decode")));
}

#[test]
fn an_unwritable_location_still_returns_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"in the way").unwrap();
    let (memory, reports) = capturing(&file.join("cache"), 0);
    let calls = Calls::default();
    let c = calls.clone();
    let f = memory.cache_capturing(move |x: i32| {
        c.hit();
        x + 1
    });
    assert_eq!(f.eval(1), 2);
    assert_eq!(f.eval(1), 2);
    assert_eq!(calls.get(), 2);
    let warnings = warnings(&reports);
    // One warning per call: its first fault (here the identity item cannot be written).
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings.iter().all(|w| w.contains("a-file")),
        "{warnings:?}"
    );
    assert!(matches!(f.call_and_shelve(3), Shelved::NotMemorized(_)));
}

struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not today"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unserializable)
    }
}

#[test]
fn an_output_that_cannot_be_serialized_is_returned_and_reported() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let c = calls.clone();
    let f = fx.memory.cache_capturing(move |_: i32| {
        c.hit();
        Unserializable
    });
    f.eval(1);
    f.eval(1);
    assert_eq!(calls.get(), 2);
    assert!(
        fx.warnings()
            .iter()
            .any(|w| w.contains("cannot be serialized")),
        "{:?}",
        fx.warnings()
    );
}

#[test]
fn concurrent_threads_never_see_a_partial_entry() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let c = calls.clone();
    let f = Arc::new(
        fx.memory
            .cache_capturing(move |x: u32| {
                c.hit();
                std::thread::sleep(Duration::from_millis(5));
                vec![x; 50_000]
            })
            .name("tests::threads"),
    );
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let f = f.clone();
            s.spawn(move || {
                for i in 0..40u32 {
                    let x = (i + t) % 5;
                    if i % 7 == 0 {
                        assert_eq!(f.call(x).0, vec![x; 50_000]);
                    } else {
                        assert_eq!(f.eval(x), vec![x; 50_000]);
                    }
                }
            });
        }
    });
    assert!(fx.warnings().is_empty(), "{:?}", fx.warnings());
}

const CHILD_ENV: &str = "CACHETTE_TEST_CHILD_LOCATION";

/// The body of the child processes of `concurrent_processes_never_see_a_partial_entry`; does
/// nothing in a normal test run.
#[test]
fn child_process_worker() {
    let Ok(location) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (memory, reports) = capturing(Path::new(&location), 0);
    let f = memory
        .cache(|x: u32| vec![x; 100_000])
        .name("tests::processes");
    for i in 0..60u32 {
        let x = i % 4;
        let out = if i % 5 == 0 { f.call(x).0 } else { f.eval(x) };
        assert_eq!(out, vec![x; 100_000]);
    }
    let warnings = warnings(&reports);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn concurrent_processes_never_see_a_partial_entry() {
    let fx = Fixture::new();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "store::child_process_worker",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, fx.cache_dir())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the child ran no test"
        );
    }
    // The parent reads what the children wrote.
    let f = fx
        .memory
        .cache(|_: u32| -> Vec<u32> { panic!("must be loaded") })
        .name("tests::processes");
    assert_eq!(f.eval(3), vec![3; 100_000]);
}

#[tokio::test(flavor = "current_thread")]
async fn async_calls_on_a_current_thread_runtime() {
    async_calls().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_on_a_multi_thread_runtime() {
    async_calls().await;
}

async fn async_calls() {
    let fx = Fixture::new();
    let f: MemorizedFunc<u64> = MemorizedFunc::new(&fx.memory, FuncId::new("tests::fetch"));
    let calls = Calls::default();
    for _ in 0..3 {
        let c = calls.clone();
        let out = f
            .call_with_async(10u64, |x| async move {
                c.hit();
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, Infallible>(x * 10)
            })
            .await
            .unwrap();
        assert_eq!(out, 100);
    }
    assert_eq!(calls.get(), 1);
    assert!(f.check_call_in_cache_async(&10u64).await);
    f.clear_async().await.unwrap();
    assert!(!f.check_call_in_cache_async(&10u64).await);
    fx.memory.clear_async().await.unwrap();
    // A synchronous call from inside the runtime works too.
    assert_eq!(fx.memory.cache(|x: u8| x).eval(1), 1);
}

/// A store of the index layout removed once its memory is dropped, and made again at the same
/// path, starts empty: the process does not keep the removed index open.
#[test]
fn an_index_store_removed_and_made_again_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("cache");
    let url = format!("file://{}?layout=index", folder.display());
    let calls = Calls::default();
    for round in 0..3 {
        let memory = Memory::from_url(&url).unwrap();
        let c = calls.clone();
        let f = memory
            .cache_capturing(move |x: i64| {
                c.hit();
                x + 1
            })
            .name("index_again");
        for x in 0..10 {
            assert_eq!(f.eval(x), x + 1);
        }
        assert_eq!(
            calls.get(),
            10 * (round + 1),
            "round {round}: every call ran"
        );
        drop(f);
        drop(memory);
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
