//! Every behaviour of `Memory` and `MemorizedFunc` on the local disk.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachette::{
    Error, FuncId, MemorizedFunc, MemorizedResult, Memory, MemoryBuilder, Shelved, SizeLimits,
    expires_after,
};
use common::{Reports, capture, files_layout, lines, warnings};

#[path = "../common/mod.rs"]
mod common;
mod memo;
mod store;
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

/// A memory in a fresh temporary folder, with its reports captured.
struct Fixture {
    dir: tempfile::TempDir,
    memory: Memory,
    reports: Reports,
}

impl Fixture {
    fn new() -> Self {
        Fixture::verbose(0)
    }

    fn verbose(verbose: u8) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (memory, reports) = capturing(&dir.path().join("cache"), verbose);
        Fixture {
            dir,
            memory,
            reports,
        }
    }

    /// A memory in the files layout (one file per entry), for the tests that look at, damage
    /// or remove the files of entries.
    fn files() -> Self {
        Fixture::on(files_layout)
    }

    /// A memory that `builder` makes for the folder of the store.
    fn on(builder: impl FnOnce(&Path) -> MemoryBuilder) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (memory, reports) = capture(builder(&dir.path().join("cache")));
        Fixture {
            dir,
            memory,
            reports,
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The folder of the function `name` in the store.
    fn folder(&self, name: &str) -> PathBuf {
        self.cache_dir()
            .join("cachette")
            .join(FuncId::new(name).folder())
    }

    fn warnings(&self) -> Vec<String> {
        warnings(&self.reports)
    }

    fn lines(&self) -> Vec<String> {
        lines(&self.reports)
    }
}

fn capturing(path: &Path, verbose: u8) -> (Memory, Reports) {
    capture(Memory::builder().path(path).verbose(verbose))
}

/// A counter of how many times a function ran.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn runs_once_per_argument_even_after_a_restart() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let c = calls.clone();
    let square = fx.memory.cache_capturing(move |x: i64| {
        c.hit();
        x * x
    });
    assert_eq!(square.eval(3), 9);
    assert_eq!(square.eval(3), 9);
    assert_eq!(calls.get(), 1);
    assert_eq!(square.eval(4), 16);
    assert_eq!(calls.get(), 2);

    // A new Memory on the same folder (as after a restart) reuses the results. Closures have
    // no path of their own, so a name gives them one identity across processes.
    let again = Memory::new(fx.cache_dir()).unwrap();
    let c = calls.clone();
    let first = fx
        .memory
        .cache_capturing(move |x: i64| {
            c.hit();
            x * x
        })
        .name("tests::square");
    assert_eq!(first.eval(5), 25);
    let c = calls.clone();
    let second = again
        .cache_capturing(move |x: i64| {
            c.hit();
            x * x
        })
        .name("tests::square");
    assert_eq!(second.eval(5), 25);
    assert_eq!(
        calls.get(),
        3,
        "the second memory loaded the first one's result"
    );
    assert!(fx.warnings().is_empty(), "{:?}", fx.warnings());
}

#[test]
fn the_layout_is_a_folder_per_function_and_a_file_per_call() {
    let fx = Fixture::files();
    let f = fx.memory.cache(|x: u8| x).name("my_crate::stats::mean");
    f.eval(1);
    let folder = fx.folder("my_crate::stats::mean");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "func_code");
    assert_eq!(names[0].len(), 32);
    assert!(fx.cache_dir().join(".gitignore").exists());
}

#[test]
fn arguments_are_a_tuple_and_their_order_counts() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let c = calls.clone();
    let sub = fx.memory.cache_capturing(move |(a, b): (i32, i32)| {
        c.hit();
        a - b
    });
    assert_eq!(sub.eval((5, 2)), 3);
    assert_eq!(sub.eval((2, 5)), -3);
    assert_eq!(sub.eval((5, 2)), 3);
    assert_eq!(calls.get(), 2);
    // Rust has no keyword or default arguments: an `Option` stands for a default, and `None`
    // is a value of its own.
    let c = calls.clone();
    let with_default = fx
        .memory
        .cache_capturing(move |(x, scale): (f64, Option<f64>)| {
            c.hit();
            x * scale.unwrap_or(1.0)
        });
    assert_eq!(with_default.eval((2.0, None)), 2.0);
    assert_eq!(with_default.eval((2.0, Some(1.0))), 2.0);
    assert_eq!(calls.get(), 4);
}

#[test]
fn ignored_arguments_do_not_count() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let c = calls.clone();
    let f = fx
        .memory
        .cache_capturing(move |(x, _debug): (i32, bool)| {
            c.hit();
            x + 1
        })
        .arg_names(["x", "debug"])
        .ignore_names(["debug"]);
    assert_eq!(f.eval((1, false)), 2);
    assert_eq!(f.eval((1, true)), 2);
    assert_eq!(calls.get(), 1);
    let (_, meta) = f.call((1, true));
    assert_eq!(meta.input_args, vec![("x".to_owned(), "1".to_owned())]);
    // An unknown name is reported, not silently dropped.
    let _ = fx.memory.cache(|x: i32| x).ignore_names(["nope"]);
    assert!(
        fx.warnings()
            .iter()
            .any(|w| w.contains("cannot ignore 'nope'"))
    );
}

#[test]
fn a_changed_version_invalidates_old_results_and_says_why() {
    let fx = Fixture::files();
    let calls = Calls::default();
    let make = |version: &str| {
        let c = calls.clone();
        fx.memory
            .cache_capturing(move |x: i32| {
                c.hit();
                x * 2
            })
            .name("tests::double")
            .version(version)
    };
    let v1 = make("1");
    assert_eq!(v1.eval(1), 2);
    assert_eq!(v1.eval(2), 4);
    assert_eq!(calls.get(), 2);
    assert!(fx.warnings().is_empty());

    let v2 = make("2");
    assert!(!v2.check_call_in_cache(&1));
    assert_eq!(v2.eval(1), 2);
    assert_eq!(calls.get(), 3);
    let warnings = fx.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("has changed"), "{}", warnings[0]);
    // The results of version 1 are gone from the store, not just hidden.
    let folder = fx.folder("tests::double");
    assert_eq!(std::fs::read_dir(folder).unwrap().count(), 2); // func_code + one entry
}

#[test]
fn two_functions_under_one_name_are_reported() {
    let fx = Fixture::new();
    let f = fx.memory.cache(|x: i32| x + 1).name("tests::same");
    let g = fx.memory.cache(|x: i32| x - 1).name("tests::same");
    f.eval(1);
    g.eval(1);
    let warnings = fx.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Possible name collision")),
        "{warnings:?}"
    );
}

#[test]
fn nested_and_module_level_functions_are_distinct() {
    fn double(x: i32) -> i32 {
        x * 2
    }
    mod inner {
        pub(super) fn double(x: i32) -> i32 {
            x * 3
        }
    }
    let fx = Fixture::new();
    let a = fx.memory.cache(double);
    let b = fx.memory.cache(inner::double);
    assert_ne!(a.id().folder(), b.id().folder());
    assert_eq!(a.eval(2), 4);
    assert_eq!(b.eval(2), 6);
    assert!(fx.warnings().is_empty(), "{:?}", fx.warnings());
}

#[test]
fn errors_and_panics_propagate_and_are_not_cached() {
    let fx = Fixture::new();
    let f: MemorizedFunc<i32> = MemorizedFunc::new(&fx.memory, FuncId::new("tests::fallible"));
    let calls = Calls::default();
    let run = |x: i32| {
        let c = calls.clone();
        f.call_with(x, move |x| {
            c.hit();
            if x < 0 { Err("negative") } else { Ok(x) }
        })
    };
    assert_eq!(run(-1), Err("negative"));
    assert_eq!(run(-1), Err("negative"));
    assert_eq!(calls.get(), 2, "errors are not cached");
    assert_eq!(run(1), Ok(1));
    assert_eq!(run(1), Ok(1));
    assert_eq!(calls.get(), 3);

    let c = calls.clone();
    let boom = fx.memory.cache_capturing(move |x: i32| {
        c.hit();
        assert!(x != 7, "seven");
        x
    });
    for _ in 0..2 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boom.eval(7)));
        assert!(r.is_err());
    }
    assert_eq!(calls.get(), 5, "a panic is not cached");
}

#[test]
fn call_forces_a_run_and_gives_metadata() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let c = calls.clone();
    let f = fx
        .memory
        .cache_capturing(move |(a, b): (i32, String)| {
            c.hit();
            format!("{a}{b}")
        })
        .arg_names(["a", "b"]);
    let before = chrono::Utc::now();
    let (out, meta) = f.call((1, "x".to_owned()));
    let (out2, _) = f.call((1, "x".to_owned()));
    assert_eq!((out.as_str(), out2.as_str()), ("1x", "1x"));
    assert_eq!(calls.get(), 2);
    assert!(meta.duration >= 0.0);
    assert!(meta.time >= before - TimeDelta::seconds(1));
    assert_eq!(
        meta.input_args,
        vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "\"x\"".to_owned())
        ]
    );
    assert_eq!(meta.args_id.len(), 32);
    // The stored result is the one of the last run.
    assert_eq!(f.eval((1, "x".to_owned())), "1x");
    assert_eq!(calls.get(), 2);
}

#[test]
fn check_call_in_cache_neither_runs_nor_loads() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let c = calls.clone();
    let f = fx.memory.cache_capturing(move |x: i32| {
        c.hit();
        vec![x; 1000]
    });
    assert!(!f.check_call_in_cache(&1));
    f.eval(1);
    assert!(f.check_call_in_cache(&1));
    assert!(!f.check_call_in_cache(&2));
    assert_eq!(calls.get(), 1);
}

static PLUS_ONE_CALLS: AtomicUsize = AtomicUsize::new(0);

fn plus_one(x: i32) -> i32 {
    PLUS_ONE_CALLS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[test]
fn eval_on_memory_and_clear() {
    let fx = Fixture::files();
    let calls = || PLUS_ONE_CALLS.load(Ordering::SeqCst);
    // A function item is identified by its path, wherever it is memoized.
    assert_eq!(fx.memory.eval(plus_one, 1), 2);
    assert_eq!(fx.memory.eval(plus_one, 1), 2);
    assert_eq!(calls(), 1);
    let memo = fx.memory.cache(plus_one);
    memo.eval(1);
    assert_eq!(calls(), 1);
    // A closure is identified by where it is memoized.
    let closure_calls = Calls::default();
    for _ in 0..3 {
        let c = closure_calls.clone();
        let f = move |x: i32| {
            c.hit();
            x - 1
        };
        assert_eq!(fx.memory.cache_capturing(f).eval(1), 0);
    }
    assert_eq!(closure_calls.get(), 1);

    memo.clear().unwrap();
    assert!(!memo.check_call_in_cache(&1));
    memo.eval(1);
    assert_eq!(calls(), 2);
    fx.memory.clear().unwrap();
    assert!(!memo.check_call_in_cache(&1));
    // Checking reads and writes nothing: the cleared store stays empty.
    let left: Vec<_> = std::fs::read_dir(fx.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [".gitignore"]);
    memo.eval(1);
    assert_eq!(calls(), 3);
    assert!(fx.cache_dir().join(".gitignore").exists());
    assert!(fx.warnings().is_empty(), "{:?}", fx.warnings());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stats {
    mean: f64,
    n: usize,
}

#[test]
fn shelved_results_round_trip_through_serde_and_their_printed_form() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let c = calls.clone();
    let stats = fx.memory.cache_capturing(move |xs: Vec<f64>| {
        c.hit();
        Stats {
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            n: xs.len(),
        }
    });
    let shelved = stats.call_and_shelve(vec![1.0, 2.0, 3.0]);
    let Shelved::Memorized(result) = &shelved else {
        panic!("expected a stored result, got {shelved}");
    };
    let expected = Stats { mean: 2.0, n: 3 };
    assert_eq!(result.get().unwrap(), expected);
    // Shelving again does not run the function.
    stats.call_and_shelve(vec![1.0, 2.0, 3.0]);
    assert_eq!(calls.get(), 1);

    let printed = result.to_string();
    assert!(
        printed.starts_with("MemorizedResult(location=\""),
        "{printed}"
    );
    let parsed: MemorizedResult<Stats> = printed.parse().unwrap();
    assert_eq!(&parsed, result);
    // A reference from outside opens nothing by itself: it is resolved in a chosen memory.
    let err = parsed.get().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let parsed = fx.memory.resolve(&parsed);
    assert_eq!(parsed.get().unwrap(), expected);

    #[derive(Serialize, Deserialize)]
    struct Job {
        result: MemorizedResult<Stats>,
    }
    let text = toml::to_string(&Job {
        result: result.clone(),
    })
    .unwrap();
    let job: Job = toml::from_str(&text).unwrap();
    assert_eq!(fx.memory.resolve(&job.result).get().unwrap(), expected);

    // After clear, get is a typed error saying the value does not exist.
    result.clear().unwrap();
    let err = parsed.get().unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("may have been cleared") && message.contains("does not exist"),
        "{message}"
    );
}

#[test]
fn a_disabled_memory_calls_through() {
    let memory = Memory::disabled();
    let calls = Calls::default();
    let c = calls.clone();
    let f = memory.cache_capturing(move |x: i32| {
        c.hit();
        x
    });
    f.eval(1);
    f.eval(1);
    assert_eq!(calls.get(), 2);
    assert!(!f.check_call_in_cache(&1));
    match f.call_and_shelve(5) {
        Shelved::NotMemorized(r) => {
            assert_eq!(r.get().unwrap(), 5);
            r.clear();
            assert!(matches!(r.get(), Err(Error::NotFound { .. })));
        }
        other => panic!("expected a value held in memory, got {other}"),
    }
    memory.clear().unwrap();
    assert_eq!(
        memory
            .reduce_size(&SizeLimits::default().items_limit(0))
            .unwrap()
            .deleted_items,
        0
    );
}

#[test]
fn validation_accepts_rejects_and_expires() {
    let fx = Fixture::new();
    let calls = Calls::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let accept = fx
        .memory
        .cache_capturing(move |x: i32| {
            c.hit();
            x
        })
        .arg_names(["x"])
        .validate(move |m: &cachette::Metadata| {
            s.lock().unwrap().push(m.input_args.clone());
            true
        });
    accept.eval(1);
    accept.eval(1);
    assert_eq!(calls.get(), 1);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec![("x".to_owned(), "1".to_owned())]]
    );

    let c = calls.clone();
    let reject = fx
        .memory
        .cache_capturing(move |x: i32| {
            c.hit();
            x
        })
        .validate(|_: &cachette::Metadata| false);
    reject.eval(1);
    reject.eval(1);
    assert_eq!(calls.get(), 3);
    assert!(!reject.check_call_in_cache(&1));

    // Only slow calls are worth keeping (the seed's `cache_validation_callback` example).
    let c = calls.clone();
    let slow_only = fx
        .memory
        .cache_capturing(move |ms: u64| {
            c.hit();
            std::thread::sleep(Duration::from_millis(ms));
            ms
        })
        .validate(|m: &cachette::Metadata| m.duration > 0.05);
    slow_only.eval(0);
    slow_only.eval(0);
    slow_only.eval(100);
    slow_only.eval(100);
    assert_eq!(calls.get(), 3 + 3);

    let c = calls.clone();
    let expiring = fx
        .memory
        .cache_capturing(move |x: i32| {
            c.hit();
            x
        })
        .validate(expires_after(Duration::from_millis(300)));
    expiring.eval(1);
    expiring.eval(1);
    assert_eq!(calls.get(), 7);
    std::thread::sleep(Duration::from_millis(400));
    assert!(!expiring.check_call_in_cache(&1));
    expiring.eval(1);
    assert_eq!(calls.get(), 8);
}

#[test]
fn expires_after_takes_joblib_units() {
    let v = expires_after(cachette::ExpiresAfter {
        days: 1.0,
        hours: 2.0,
        minutes: 3.0,
        seconds: 4.0,
        milliseconds: 5.0,
        microseconds: 6.0,
    });
    let expected: u64 = ((((24 + 2) * 60 + 3) * 60 + 4) * 1_000_000) + 5_006;
    let got = v.ttl().unwrap().as_micros() as u64;
    assert!(got.abs_diff(expected) <= 1, "{got} vs {expected}");
}

/// Lifetimes too long for a clock: `Duration::MAX` panicked on the first write to an in-memory
/// store, and a total beyond a `Duration` became a lifetime of zero (nothing was reused).
#[test]
fn a_lifetime_longer_than_a_clock_never_ends() {
    let endless = cachette::ExpiresAfter {
        days: 1e15,
        ..Default::default()
    };
    assert_eq!(endless.to_duration(), Duration::MAX);
    let nothing = cachette::ExpiresAfter {
        days: f64::NAN,
        ..Default::default()
    };
    assert_eq!(nothing.to_duration(), Duration::ZERO);
    for lifetime in [
        expires_after(endless),
        expires_after(Duration::MAX),
        expires_after(Duration::from_secs(10_000_000_000_000_000_000)),
        expires_after(TimeDelta::MAX),
    ] {
        assert_eq!(
            lifetime.ttl(),
            None,
            "no native lifetime past a hundred years"
        );
        let memory = Memory::builder()
            .url(format!("memory://endless-{}", std::process::id()))
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let f = memory
            .cache_capturing(move |x: i32| {
                c.fetch_add(1, Ordering::SeqCst);
                x
            })
            .validate(lifetime);
        assert_eq!((f.eval(3), f.eval(3)), (3, 3));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the stored result is reused"
        );
        memory.clear().unwrap();
    }
}

/// A memory that compresses, with a decompression limit below its outputs: every entry it
/// wrote was refused on its next read as damaged (a warning and a recomputation, every call).
/// Such outputs are written uncompressed.
#[test]
fn outputs_larger_than_the_decompression_limit_are_stored_readable() {
    let (memory, reports) = capture(
        Memory::builder()
            .url(format!("memory://decompress-{}", std::process::id()))
            .compress(3)
            .max_decompressed_size(100),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let f = memory.cache_capturing(move |x: u8| {
        c.fetch_add(1, Ordering::SeqCst);
        vec![x; 1000]
    });
    for x in [1, 2] {
        assert_eq!(f.eval(x), vec![x; 1000]);
        assert_eq!(f.eval(x), vec![x; 1000]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "each output computed once");
    assert!(warnings(&reports).is_empty(), "{:?}", warnings(&reports));
    // A small output is still compressed, and read back.
    let small = memory.cache(|x: u8| x);
    assert_eq!((small.eval(7), small.eval(7)), (7, 7));
}

/// Two functions memoized at one place (a function pointer given to `cache_fn`, a closure
/// given to a helper without `#[track_caller]`) are named after that place: the second one
/// returned the first one's results. It now runs without the cache, with a warning; named,
/// each has its own results.
#[test]
fn two_functions_memoized_at_one_place_never_share_results() {
    static SQUARES: AtomicUsize = AtomicUsize::new(0);
    fn square(x: u64) -> u64 {
        SQUARES.fetch_add(1, Ordering::SeqCst);
        x * x
    }
    fn cube(x: u64) -> u64 {
        x * x * x
    }
    let (memory, reports) =
        capture(Memory::builder().url(format!("memory://one-place-{}", std::process::id())));
    let at_one_place = |f: fn(u64) -> u64| memory.cache_fn(f);
    assert_eq!(at_one_place(square).eval(3), 9);
    assert_eq!(at_one_place(cube).eval(3), 27, "the square's result");
    assert_eq!(at_one_place(cube).eval(3), 27);
    // The first one memoized there keeps the cache.
    assert_eq!(at_one_place(square).eval(3), 9);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 1);
    let w = warnings(&reports);
    assert!(w.iter().any(|w| w.contains("give each a name")), "{w:?}");

    fn helper<F: Fn(u64) -> u64>(memory: &Memory, f: F) -> cachette::MemorizedFunc<u64, F> {
        memory.cache(f)
    }
    assert_eq!(helper(&memory, |x: u64| x + 1).eval(3), 4);
    assert_eq!(
        helper(&memory, |x: u64| x + 2).eval(3),
        5,
        "the other closure's result"
    );

    let square = at_one_place(square).name("one_place::square");
    let cube = at_one_place(cube).name("one_place::cube");
    assert_eq!((square.eval(4), cube.eval(4)), (16, 64));
    assert!(square.check_call_in_cache(&4) && cube.check_call_in_cache(&4));
    assert_eq!((square.eval(4), cube.eval(4)), (16, 64));
}

#[test]
fn verbose_output_follows_joblib() {
    let fx = Fixture::verbose(2);
    let f = fx.memory.cache(|x: i32| x * 2).name("tests::twice");
    f.eval(21);
    let lines = fx.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[Memory] Calling tests::twice...")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("twice(21)")), "{lines:?}");
    let closing = lines
        .iter()
        .find(|l| l.ends_with("min") && l.starts_with('_'))
        .unwrap();
    assert_eq!(closing.chars().count(), 80, "{closing}");
    assert!(closing.contains("twice - 0.0s, 0.0min"), "{closing}");
    f.eval(21);
    let lines = fx.lines();
    assert!(
        lines.iter().any(|l| l.contains("Loading twice")),
        "{lines:?}"
    );

    // Verbosity 0 prints nothing.
    let quiet = Fixture::new();
    quiet.memory.cache(|x: i32| x).eval(1);
    assert!(quiet.lines().is_empty());
}
