//! `#[memoize]` on synchronous functions: caching, options, the generated handle, identity.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

use cachette::{MemorizedFunc, Memory, Metadata, memoize};
use common::{Reports, capture, files_url, lines, warnings};

mod common;

/// A memory of its own for each test, so that tests running in parallel do not meet.
fn memory(test: &str) -> Memory {
    Memory::from_url(&format!("memory://memoize-{test}-{}", std::process::id())).unwrap()
}

/// A memory whose reports (verbose lines and warnings) are collected.
fn reporting_memory(test: &str) -> (Memory, Reports) {
    capture(Memory::builder().url(format!("memory://memoize-{test}-{}", std::process::id())))
}

static ONCE: LazyLock<Memory> = LazyLock::new(|| memory("once"));
static ONCE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = ONCE)]
fn square(x: u64) -> u64 {
    ONCE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * x
}

#[test]
fn runs_once_per_argument() {
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(ONCE_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(square(4), 16);
    assert_eq!(square(3), 9);
    assert_eq!(square(4), 16);
    assert_eq!(ONCE_RUNS.load(Ordering::SeqCst), 2);
}

static STRS: LazyLock<Memory> = LazyLock::new(|| memory("strs"));
static STRS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = &*STRS)]
fn joined(words: &[&str], sep: &str) -> String {
    STRS_RUNS.fetch_add(1, Ordering::SeqCst);
    words.join(sep)
}

#[test]
fn borrowed_arguments_are_hashed_by_value() {
    let words = ["a".to_owned(), "b".to_owned()];
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    assert_eq!(joined(&refs, "-"), "a-b");
    assert_eq!(joined(&["a", "b"], "-"), "a-b");
    assert_eq!(STRS_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(joined(&["a", "b"], "+"), "a+b");
    assert_eq!(STRS_RUNS.load(Ordering::SeqCst), 2);
    assert!(joined::check_call_in_cache(&&["a", "b"][..], &"+"));
}

/// Not `Serialize`: it can only be an ignored argument.
struct Log(Mutex<Vec<String>>);

static IGNORE: LazyLock<Memory> = LazyLock::new(|| memory("ignore"));
static IGNORE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = IGNORE, ignore = [verbose, "log"])]
fn scaled(x: u32, verbose: bool, factor: u32, log: &Log) -> u32 {
    IGNORE_RUNS.fetch_add(1, Ordering::SeqCst);
    if verbose {
        log.0.lock().unwrap().push(format!("scaled({x}, {factor})"));
    }
    x * factor
}

#[test]
fn ignored_arguments_share_a_result() {
    let log = Log(Mutex::new(Vec::new()));
    assert_eq!(scaled(2, true, 10, &log), 20);
    assert_eq!(scaled(2, false, 10, &log), 20);
    assert_eq!(scaled(2, true, 10, &Log(Mutex::new(Vec::new()))), 20);
    assert_eq!(IGNORE_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(*log.0.lock().unwrap(), ["scaled(2, 10)"]);
    assert_eq!(scaled(2, false, 11, &log), 22);
    assert_eq!(IGNORE_RUNS.load(Ordering::SeqCst), 2);

    // The hashed tuple holds the arguments that are not ignored, and metadata names them.
    assert!(scaled::memorized().check_call_in_cache(&(2u32, 10u32)));
    assert!(scaled::check_call_in_cache(&2, &true, &10, &&log));
    let (value, meta) = scaled::call(3, false, 2, &log);
    assert_eq!(value, 6);
    assert_eq!(
        meta.input_args,
        [
            ("x".to_owned(), "3".to_owned()),
            ("factor".to_owned(), "2".to_owned())
        ]
    );
}

static RESULTS: LazyLock<Memory> = LazyLock::new(|| memory("results"));
static RESULT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = RESULTS)]
fn parse(text: &str) -> Result<u32, String> {
    RESULT_RUNS.fetch_add(1, Ordering::SeqCst);
    text.parse().map_err(|e| format!("{text:?}: {e}"))
}

static IO_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = RESULTS)]
fn io_len(text: String) -> std::io::Result<usize> {
    IO_RUNS.fetch_add(1, Ordering::SeqCst);
    if text.is_empty() {
        return Err(std::io::Error::other("empty"));
    }
    Ok(text.len())
}

static WHOLE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = RESULTS, result = false)]
fn checked_half(x: u32) -> Result<u32, String> {
    WHOLE_RUNS.fetch_add(1, Ordering::SeqCst);
    if x.is_multiple_of(2) {
        Ok(x / 2)
    } else {
        Err(format!("{x} is odd"))
    }
}

#[test]
fn results_store_only_ok() {
    assert!(parse("x").is_err());
    assert!(parse("x").is_err());
    assert_eq!(RESULT_RUNS.load(Ordering::SeqCst), 2, "Err is not stored");
    assert!(!parse::check_call_in_cache(&"x"));
    assert_eq!(parse("12"), Ok(12));
    assert_eq!(parse("12"), Ok(12));
    assert_eq!(RESULT_RUNS.load(Ordering::SeqCst), 3, "Ok is stored");
    // What is stored is the `Ok` value.
    let stored: &MemorizedFunc<u32> = parse::memorized();
    assert!(stored.check_call_in_cache(&("12",)));

    // One-argument aliases (`io::Result<T>`) are `Result`s too.
    assert!(io_len(String::new()).is_err());
    assert!(io_len(String::new()).is_err());
    assert_eq!(io_len("abc".into()).unwrap(), 3);
    assert_eq!(io_len("abc".into()).unwrap(), 3);
    assert_eq!(IO_RUNS.load(Ordering::SeqCst), 3);

    // `result = false` stores the whole `Result`, `Err` included.
    assert_eq!(checked_half(3), Err("3 is odd".to_owned()));
    assert_eq!(checked_half(3), Err("3 is odd".to_owned()));
    assert_eq!(checked_half(4), Ok(2));
    assert_eq!(checked_half(4), Ok(2));
    assert_eq!(WHOLE_RUNS.load(Ordering::SeqCst), 2);
}

#[test]
fn forced_calls_of_results() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = RESULTS)]
    fn parse_forced(text: &str) -> Result<u32, String> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        text.parse().map_err(|e| format!("{text:?}: {e}"))
    }

    let Ok((value, meta)) = parse_forced::call("7") else {
        panic!("7 parses");
    };
    assert_eq!(value, 7);
    assert_eq!(meta.input_args, [("text".to_owned(), "\"7\"".to_owned())]);
    assert!(parse_forced::check_call_in_cache(&"7"));
    assert!(parse_forced::call("7").is_ok());
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        2,
        "call runs whatever is stored"
    );
    assert!(parse_forced::call("seven").is_err());
    assert!(!parse_forced::check_call_in_cache(&"seven"));

    let shelved = parse_forced::call_and_shelve("8").unwrap();
    assert_eq!(shelved.get().unwrap(), 8);
    assert!(shelved.as_memorized().is_some());
    assert!(parse_forced::call_and_shelve("8").is_ok());
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        4,
        "call_and_shelve runs only when needed"
    );
    assert!(parse_forced::call_and_shelve("eight").is_err());
    assert!(!parse_forced::check_call_in_cache(&"eight"));
    assert_eq!(RUNS.load(Ordering::SeqCst), 5);
}

static PANICS: LazyLock<Memory> = LazyLock::new(|| memory("panics"));
static PANIC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = PANICS)]
fn fragile(x: u32) -> u32 {
    PANIC_RUNS.fetch_add(1, Ordering::SeqCst);
    assert!(x != 0, "zero is not allowed");
    100 / x
}

#[test]
fn panics_propagate_and_are_not_stored() {
    assert!(catch_unwind(|| fragile(0)).is_err());
    assert!(catch_unwind(|| fragile(0)).is_err());
    assert_eq!(PANIC_RUNS.load(Ordering::SeqCst), 2);
    assert!(!fragile::check_call_in_cache(&0));
    assert!(catch_unwind(AssertUnwindSafe(|| fragile::call(0))).is_err());
    assert_eq!(PANIC_RUNS.load(Ordering::SeqCst), 3);
    assert_eq!(fragile(5), 20);
    assert_eq!(fragile(5), 20);
    assert_eq!(PANIC_RUNS.load(Ordering::SeqCst), 4);
}

static HANDLE: LazyLock<Memory> = LazyLock::new(|| memory("handle"));
static HANDLE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = HANDLE)]
fn area(width: u32, height: u32) -> Vec<u32> {
    HANDLE_RUNS.fetch_add(1, Ordering::SeqCst);
    vec![width * height; 2]
}

#[test]
fn generated_handle() {
    let runs = || HANDLE_RUNS.load(Ordering::SeqCst);
    assert!(!area::check_call_in_cache(&2, &3));
    assert_eq!(area(2, 3), [6, 6]);
    assert!(area::check_call_in_cache(&2, &3));
    assert!(area::memorized().check_call_in_cache(&(2u32, 3u32)));
    assert!(!area::check_call_in_cache(&3, &2));

    // `call` runs whatever is stored, and stores.
    let (value, meta): (Vec<u32>, Metadata) = area::call(2, 3);
    assert_eq!(value, [6, 6]);
    assert_eq!(runs(), 2);
    assert_eq!(
        meta.input_args,
        [
            ("width".to_owned(), "2".to_owned()),
            ("height".to_owned(), "3".to_owned())
        ]
    );
    assert_eq!(meta.func, area::memorized().id().folder());
    let (_, _) = area::call(4, 5);
    assert_eq!(runs(), 3);
    assert!(area::check_call_in_cache(&4, &5));

    // `call_and_shelve` gives a reference, and runs only when nothing is stored.
    let shelved = area::call_and_shelve(4, 5);
    assert_eq!(runs(), 3);
    assert_eq!(shelved.get().unwrap(), [20, 20]);
    let fresh = area::call_and_shelve(6, 7);
    assert_eq!(runs(), 4);
    assert_eq!(fresh.get().unwrap(), [42, 42]);
    let reference = fresh.as_memorized().unwrap().to_string();
    assert!(
        reference.contains(area::memorized().id().folder()),
        "{reference}"
    );
    fresh.clear().unwrap();
    assert!(!area::check_call_in_cache(&6, &7));

    // `clear` forgets every result of the function.
    area::clear().unwrap();
    assert!(!area::check_call_in_cache(&2, &3));
    assert!(!area::check_call_in_cache(&4, &5));
    assert_eq!(area(2, 3), [6, 6]);
    assert_eq!(runs(), 5);
}

#[test]
fn identity_is_the_path() {
    let id = square::memorized().id();
    assert_eq!(id.name(), "memoize::square");
    let (readable, hash) = id.folder().rsplit_once('-').unwrap();
    assert_eq!(readable, "memoize.square");
    assert_eq!(
        hash.len(),
        16,
        "a hash of the exact name keeps folders apart"
    );
}

static NESTED: LazyLock<Memory> = LazyLock::new(|| memory("nested"));

#[memoize(memory = NESTED)]
fn twice(x: u32) -> u32 {
    x * 2
}

#[test]
fn nested_functions_are_distinct_from_module_level_ones() {
    fn helper() -> u32 {
        1000
    }

    #[memoize(memory = NESTED)]
    fn twice(x: u32) -> u32 {
        x * 3 + helper()
    }

    assert_eq!(crate::twice(5), 10);
    assert_eq!(twice(5), 1015);
    assert_eq!(crate::twice(5), 10);
    assert_eq!(twice(5), 1015);
    let outer = crate::twice::memorized().id();
    let inner = twice::memorized().id();
    assert_eq!(outer.name(), "memoize::twice");
    assert_eq!(
        inner.name(),
        "memoize::nested_functions_are_distinct_from_module_level_ones::twice"
    );
    assert_ne!(outer.folder(), inner.folder());
    twice::clear().unwrap();
    assert!(crate::twice::check_call_in_cache(&5));
    assert!(!twice::check_call_in_cache(&5));
}

#[test]
fn arguments_given_by_pattern() {
    static PATTERNS: LazyLock<Memory> = LazyLock::new(|| memory("patterns"));
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = PATTERNS)]
    fn sum((a, b): (u32, u32), mut c: u32) -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        c += a + b;
        c
    }

    assert_eq!(sum((1, 2), 3), 6);
    assert_eq!(sum((1, 2), 3), 6);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    let (_, meta) = sum::call((1, 2), 3);
    assert_eq!(
        meta.input_args,
        [
            ("arg0".to_owned(), "(1, 2)".to_owned()),
            ("c".to_owned(), "3".to_owned())
        ]
    );
}

#[test]
fn recursion_goes_through_the_cache() {
    static FIB: LazyLock<Memory> = LazyLock::new(|| memory("fib"));
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = FIB)]
    fn fib(n: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
    }

    assert_eq!(fib(40), 102_334_155);
    assert_eq!(RUNS.load(Ordering::SeqCst), 41);
}

#[test]
fn verbose_reports_calls() {
    static REPORTS: LazyLock<(Memory, Reports)> = LazyLock::new(|| reporting_memory("verbose"));

    #[memoize(memory = REPORTS.0, verbose = 2)]
    fn loud(x: u32) -> u32 {
        x + 1
    }

    #[memoize(memory = REPORTS.0)]
    fn quiet(x: u32) -> u32 {
        x + 2
    }

    assert_eq!(quiet(1), 3);
    assert_eq!(quiet(1), 3);
    assert!(REPORTS.1.lock().unwrap().is_empty());

    assert_eq!(loud(1), 2);
    assert_eq!(loud(1), 2);
    let lines = lines(&REPORTS.1);
    let name = "memoize::verbose_reports_calls::loud";
    assert!(
        lines
            .iter()
            .any(|l| *l == format!("[Memory] Calling {name}...")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l == "loud(1)"), "{lines:#?}");
    assert!(
        lines.iter().any(
            |l| l.contains("Loading loud from") && l.contains(name.replace("::", ".").as_str())
        ),
        "{lines:#?}"
    );
}

#[test]
fn validation_decides_what_is_reused() {
    static VALIDATE: LazyLock<Memory> = LazyLock::new(|| memory("validate"));
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    static ACCEPT: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = VALIDATE, validate = |_: &Metadata| ACCEPT.load(Ordering::SeqCst) > 0)]
    fn counted(x: u32) -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        x
    }

    #[memoize(memory = VALIDATE, validate = cachette::expires_after(cachette::ExpiresAfter {
        days: 1.0,
        ..Default::default()
    }))]
    fn long_lived(x: u32) -> u32 {
        RUNS.fetch_add(100, Ordering::SeqCst);
        x
    }

    assert_eq!(counted(1), 1);
    assert_eq!(counted(1), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "rejected results run again");
    assert!(!counted::check_call_in_cache(&1));
    ACCEPT.store(1, Ordering::SeqCst);
    assert!(counted::check_call_in_cache(&1));
    assert_eq!(counted(1), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);

    assert_eq!(long_lived(1), 1);
    assert_eq!(long_lived(1), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 102);
}

#[test]
fn a_changed_body_discards_old_results() {
    static CHANGES: LazyLock<(Memory, Reports)> = LazyLock::new(|| reporting_memory("changes"));
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    // Two versions of one function, as two builds of a program would have them.
    let old = {
        #[memoize(memory = CHANGES.0, name = "memoize::changing")]
        fn changing(x: u32) -> u32 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            x + 1
        }
        changing
    };
    let new = {
        #[memoize(memory = CHANGES.0, name = "memoize::changing")]
        fn changing(x: u32) -> u32 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            x + 2
        }
        changing
    };

    assert_eq!(old(1), 2);
    assert_eq!(old(1), 2);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(new(1), 3, "the old body's result is not reused");
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(new(1), 3);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    let warnings = warnings(&CHANGES.1);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("the code of function 'memoize::changing' has changed")),
        "{warnings:#?}"
    );
}

#[test]
fn a_changed_version_discards_old_results() {
    static VERSIONS: LazyLock<(Memory, Reports)> = LazyLock::new(|| reporting_memory("versions"));
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    // The same tokens: only the version tells them apart.
    let v1 = {
        #[memoize(memory = VERSIONS.0, name = "memoize::versioned", version = "1")]
        fn versioned(x: u32) -> u32 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            x
        }
        versioned
    };
    let v1_again = {
        #[memoize(memory = VERSIONS.0, name = "memoize::versioned", version = "1")]
        fn versioned(x: u32) -> u32 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            x
        }
        versioned
    };
    let v2 = {
        #[memoize(memory = VERSIONS.0, name = "memoize::versioned", version = "2")]
        fn versioned(x: u32) -> u32 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            x
        }
        versioned
    };

    assert_eq!(v1(7), 7);
    assert_eq!(v1_again(7), 7);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "same tokens, same version");
    assert_eq!(v2(7), 7);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    let warnings = warnings(&VERSIONS.1);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("has changed") && w.contains("version 1 -> 2")),
        "{warnings:#?}"
    );
}

#[test]
fn a_disabled_memory_runs_every_call() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = Memory::disabled())]
    fn plain(x: u32) -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        x
    }

    assert_eq!(plain(1), 1);
    assert_eq!(plain(1), 1);
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    assert!(!plain::check_call_in_cache(&1));
    let shelved = plain::call_and_shelve(2);
    assert!(shelved.as_memorized().is_none());
    assert_eq!(shelved.get().unwrap(), 2);
    plain::clear().unwrap();
}

#[test]
fn the_global_memory_is_the_default() {
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize]
    fn global_square(x: u32) -> u32 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        x * x
    }

    cachette::set_global(memory("global"));
    assert_eq!(global_square(3), 9);
    assert_eq!(global_square(3), 9);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(
        global_square::memorized().memory().location(),
        memory("global").location()
    );
}

#[test]
fn functions_without_arguments_or_output() {
    static UNIT: LazyLock<Memory> = LazyLock::new(|| memory("unit"));
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = UNIT)]
    fn setup() {
        RUNS.fetch_add(1, Ordering::SeqCst);
    }

    setup();
    setup();
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert!(setup::check_call_in_cache());
    let ((), _meta) = setup::call();
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[test]
fn results_persist_on_the_local_disk() {
    static DIR: LazyLock<std::path::PathBuf> = LazyLock::new(|| {
        std::env::temp_dir().join(format!("cachette-memoize-disk-{}", std::process::id()))
    });
    // The files layout, where every result is a file in its function's folder.
    static DISK: LazyLock<Memory> = LazyLock::new(|| Memory::from_url(&files_url(&DIR)).unwrap());
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    #[memoize(memory = DISK)]
    fn cube(x: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        x * x * x
    }

    assert_eq!(cube(2), 8);
    assert_eq!(cube(2), 8);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    let id = cube::memorized().id().clone();
    let folder = DIR.join("cachette").join(id.folder());
    assert!(folder.is_dir(), "{folder:?}");

    // Another memory on the same folder (as another process would open it) finds the result.
    let reopened = MemorizedFunc::<u64>::new(&Memory::from_url(&files_url(&DIR)).unwrap(), id);
    assert!(reopened.check_call_in_cache(&(2u64,)));
    assert!(!reopened.check_call_in_cache(&(3u64,)));
    std::fs::remove_dir_all(&*DIR).unwrap();
}

// The method pattern: memoize at construction, leave `self` out of the hash.

static METHODS: LazyLock<Memory> = LazyLock::new(|| memory("methods"));
static PREDICT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A model whose predictions depend on `scale` only; `calls` is bookkeeping.
struct Model {
    scale: u64,
    calls: u64,
}

#[memoize(memory = METHODS)]
fn model_predict(scale: u64, x: u64) -> u64 {
    PREDICT_RUNS.fetch_add(1, Ordering::SeqCst);
    scale * x
}

impl Model {
    fn predict(&mut self, x: u64) -> u64 {
        self.calls += 1;
        model_predict(self.scale, x)
    }
}

/// The function a `CachedModel` memoizes: `(scale, x) -> prediction`.
type Predict = fn((u64, u64)) -> u64;

/// The same model, holding a memoized function built in its constructor.
struct CachedModel {
    scale: u64,
    predict: MemorizedFunc<u64, Predict>,
}

static CONSTRUCTED_RUNS: AtomicUsize = AtomicUsize::new(0);

impl CachedModel {
    fn new(memory: &Memory, scale: u64) -> Self {
        let predict: Predict = |(scale, x)| {
            CONSTRUCTED_RUNS.fetch_add(1, Ordering::SeqCst);
            scale * x
        };
        CachedModel {
            scale,
            // A function pointer captures nothing: the state (`scale`) is an argument.
            predict: memory
                .cache_fn(predict)
                .name("memoize::CachedModel::predict")
                .arg_names(["scale", "x"]),
        }
    }

    fn predict(&self, x: u64) -> u64 {
        self.predict.eval((self.scale, x))
    }
}

#[test]
fn methods_memoize_at_construction() {
    let mut a = Model { scale: 3, calls: 0 };
    let mut b = Model { scale: 3, calls: 7 };
    assert_eq!(a.predict(2), 6);
    assert_eq!(b.predict(2), 6);
    assert_eq!(a.calls + b.calls, 9);
    assert_eq!(PREDICT_RUNS.load(Ordering::SeqCst), 1, "self is not hashed");
    let mut c = Model { scale: 4, calls: 0 };
    assert_eq!(c.predict(2), 8);
    assert_eq!(PREDICT_RUNS.load(Ordering::SeqCst), 2);

    let a = CachedModel::new(&METHODS, 3);
    let b = CachedModel::new(&METHODS, 3);
    assert_eq!(a.predict(2), 6);
    assert_eq!(b.predict(2), 6);
    assert_eq!(CONSTRUCTED_RUNS.load(Ordering::SeqCst), 1);
    assert!(b.predict.check_call_in_cache(&(3, 2)));
    assert_eq!(CachedModel::new(&METHODS, 5).predict(2), 10);
    assert_eq!(CONSTRUCTED_RUNS.load(Ordering::SeqCst), 2);
}

/// Attributes of the function stay on it.
mod attributes {
    use super::*;

    static ATTRS: LazyLock<Memory> = LazyLock::new(|| memory("attributes"));

    /// Documented, public, `must_use`: all of it stays.
    #[memoize(memory = ATTRS)]
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn many(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u32 {
        [a, b, c, d, e, f, g, h].iter().map(|&x| u32::from(x)).sum()
    }

    // A `cfg` below the macro applies to everything it generates.
    #[memoize(memory = ATTRS)]
    #[cfg(any())]
    fn never_compiled(x: NoSuchType) -> u32 {
        x
    }
}

#[test]
fn visibility_and_attributes_are_kept() {
    assert_eq!(attributes::many(1, 2, 3, 4, 5, 6, 7, 8), 36);
    assert!(attributes::many::check_call_in_cache(
        &1, &2, &3, &4, &5, &6, &7, &8
    ));
}

/// Memoizes closures written at one place of the source (this macro's call), as two builds of
/// a program would have one closure before and after an edit of its body.
macro_rules! at_one_place {
    (cache!, $memory:expr, $($closure:expr),+) => {
        ($(cachette::cache!($memory, $closure)),+)
    };
    (plain, $memory:expr, $($closure:expr),+) => {
        ($($memory.cache($closure)),+)
    };
}

#[test]
fn cache_tells_closures_apart_by_their_tokens() {
    let (memory, reports) = reporting_memory("closures");

    // `Memory::cache` names a closure after its place: these two have one name, and the
    // second, another closure, runs without the cache rather than share the first's results.
    let (a, b) = at_one_place!(plain, memory, |x: u64| x + 1, |x: u64| x + 2);
    assert_eq!(a.id().name(), b.id().name());
    assert_eq!((a.eval(1), b.eval(1), b.eval(1)), (2, 3, 3));
    assert!(a.check_call_in_cache(&1) && !b.check_call_in_cache(&1));

    // `cache!` adds the hash of the tokens: same place and name, another identity.
    let (old, new) = at_one_place!(cache!, memory, |x: u64| x + 1, |x: u64| x + 2);
    assert_eq!(old.id().name(), new.id().name());
    assert_ne!(old.id(), new.id());
    assert_eq!(old.eval(1), 2);
    assert!(old.check_call_in_cache(&1));
    assert!(
        !new.check_call_in_cache(&1),
        "the old body's result is not the new one's"
    );
    assert_eq!(new.eval(1), 3);
    assert_eq!(new.eval(1), 3);
    assert_eq!(old.eval(1), 2);
    let warnings = warnings(&reports);
    assert!(
        warnings.iter().any(|w| w.contains("has changed")),
        "{warnings:#?}"
    );

    // The same tokens hash the same wherever they are; options keep the hash.
    let same = cachette::cache!(memory, |x: u64| x + 1);
    let named = cachette::cache!(
        memory,
        |x: u64| x + 1,
        name = "memoize::plus_one",
        version = "1"
    );
    assert_eq!(named.id().name(), "memoize::plus_one");
    let hash_of = |id: &cachette::FuncId| {
        let debug = format!("{id:?}");
        let start = debug.find("code_hash").unwrap();
        debug[start..].split(',').next().unwrap().to_owned()
    };
    assert_eq!(hash_of(same.id()), hash_of(old.id()));
    assert_eq!(hash_of(named.id()), hash_of(old.id()));
    assert_ne!(hash_of(new.id()), hash_of(old.id()));
    assert_eq!(named.eval(5), 6);
}

static MEMO_URL: LazyLock<String> =
    LazyLock::new(|| format!("memory://memoize-memo-{}", std::process::id()));
static MEMO: LazyLock<Memory> = LazyLock::new(|| {
    Memory::builder()
        .url(MEMO_URL.as_str())
        .memo_size("1M")
        .build()
        .unwrap()
});
static MEMO_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = MEMO, memo)]
fn memo_double(x: u64) -> u64 {
    MEMO_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

#[test]
fn memo_keeps_outputs_in_the_process() {
    assert_eq!(memo_double(21), 42);
    // Another memory on the same store deletes the entry: this memory's memo still has it.
    Memory::from_url(MEMO_URL.as_str())
        .unwrap()
        .clear()
        .unwrap();
    assert_eq!(memo_double(21), 42);
    assert_eq!(MEMO_RUNS.load(Ordering::SeqCst), 1);
    // This memory's own clear drops it.
    MEMO.clear().unwrap();
    assert_eq!(memo_double(21), 42);
    assert_eq!(MEMO_RUNS.load(Ordering::SeqCst), 2);
}
