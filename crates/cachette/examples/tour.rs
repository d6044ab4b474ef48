//! A tour of Cachette on the local disk, in the order of joblib's `Memory` documentation.
//!
//! `cargo run -p cachette --example tour`
//!
//! Every section prints what the function bodies print, so that you can see when a body runs
//! and when a stored result is loaded instead. The cache lives in a fresh temporary folder,
//! deleted at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use cachette::{
    Array, Memory, Metadata, MmapMode, Report, Reporter, Shelved, SizeLimits, expires_after,
    memoize,
};

/// The cache folder of the tour.
static CACHEDIR: LazyLock<PathBuf> =
    LazyLock::new(|| std::env::temp_dir().join(format!("cachette-tour-{}", std::process::id())));

/// The memory context of the tour: warnings are printed as part of the tour's output.
static MEMORY: LazyLock<Memory> = LazyLock::new(|| {
    Memory::builder()
        .path(&*CACHEDIR)
        .reporter(Reporter::new(print_report))
        .build()
        .expect("the tour's cache folder")
});

fn print_report(report: &Report) {
    match report {
        Report::Line(line) => println!("{line}"),
        Report::Warning(warning) => println!("WARNING: {warning}"),
        other => println!("{other:?}"),
    }
}

fn section(title: &str) {
    println!(
        "\n=== {title} {}",
        "=".repeat(74usize.saturating_sub(title.len()))
    );
}

// --- A simple example -------------------------------------------------------------------

#[memoize(memory = MEMORY)]
fn f(x: i64) -> i64 {
    println!("Running f({x})");
    x
}

fn simple_example() {
    section("A simple example");
    println!("cache folder: {}", CACHEDIR.display());
    println!("{}", f(1));
    println!("{}", f(1));
    println!("{}", f(2));
}

// --- Arrays -------------------------------------------------------------------------------

/// A Hamming window of `x` points, like `numpy.hamming`.
#[memoize(memory = MEMORY)]
fn g(x: usize) -> Vec<f64> {
    println!("A long-running calculation, with parameter {x}");
    if x == 1 {
        return vec![1.0];
    }
    (0..x)
        .map(|n| 0.54 - 0.46 * (2.0 * std::f64::consts::PI * n as f64 / (x - 1) as f64).cos())
        .collect()
}

/// The Vandermonde matrix of `x`, like `numpy.vander`.
#[memoize(memory = MEMORY)]
fn h(x: Vec<f64>) -> Vec<Vec<f64>> {
    println!("A second long-running calculation, using g(x)");
    let n = x.len();
    x.iter()
        .map(|v| (0..n).map(|p| v.powi((n - 1 - p) as i32)).collect())
        .collect()
}

fn show(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
    format!("[{}]", parts.join(", "))
}

fn arrays() {
    section("Arrays: outputs of one memoized function as inputs of another");
    let a = g(3);
    println!("{}", show(&a));
    println!("{}", show(&g(3)));
    let b = h(a.clone());
    let b2 = h(a);
    for row in &b2 {
        println!("{}", show(row));
    }
    println!("b == b2: {}", b == b2);

    // Verbose output says what runs and how long it takes.
    let verbose = Memory::builder()
        .path(CACHEDIR.join("verbose"))
        .verbose(2)
        .reporter(Reporter::new(print_report))
        .build()
        .expect("cache folder");
    let square = verbose
        .cache(|m: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
            m.iter()
                .map(|row| row.iter().map(|x| x * x).collect())
                .collect()
        })
        .name("square")
        .arg_names(["m"]);
    let m = vec![
        vec![0.0, 0.0, 1.0],
        vec![1.0, 1.0, 1.0],
        vec![4.0, 2.0, 1.0],
    ];
    println!("{:?}", square.eval(m.clone()));
    println!("{:?}", square.eval(m));
}

// --- Using memmapping --------------------------------------------------------------------

/// `numpy.square`, on Cachette's array type.
fn square(a: &Array<f64>) -> Array<f64> {
    let data = a.iter().map(|x| x * x).collect();
    Array::from_vec(data, a.shape().to_vec()).expect("same shape")
}

fn show_array(a: &Array<f64>) -> String {
    let rows: Vec<String> = a.chunks(a.shape()[1]).map(show).collect();
    format!("{:?} {}", a.storage(), rows.join(" "))
}

fn memmapping() {
    section("Using memmapping");
    // Arrays in outputs are stored raw; with mmap_mode "r" they are loaded as read-only
    // memory maps of the cache file, in microseconds whatever their size.
    let memory2 = Memory::builder()
        .path(CACHEDIR.join("cachedir2"))
        .mmap_mode(MmapMode::ReadOnly)
        .verbose(1)
        .reporter(Reporter::new(print_report))
        .build()
        .expect("cache folder");
    let square = memory2.cache(square).name("square").arg_names(["a"]);
    // np.vander(np.arange(3)).astype(float)
    let a = Array::from_vec(vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 4.0, 2.0, 1.0], [3, 3])
        .expect("a 3x3 matrix");
    // The first call computes, stores, and returns the mapped array, as later calls do.
    println!("{}", show_array(&square.eval(&a)));
    let mut res = square.eval(&a);
    println!("{}", show_array(&res));
    // A read-only view cannot be written; make_mut copies it first, and the cache is intact.
    println!("writable in place: {}", res.get_mut().is_some());
    res.make_mut()[0] = -1.0;
    println!("{}", show_array(&res));
    println!("{}", show_array(&square.eval(&a)));
}

// --- Shelving -----------------------------------------------------------------------------

fn shelving() {
    section("Shelving: references to cached values");
    let result = g::call_and_shelve(4);
    println!("{result}");
    println!("{}", show(&result.get().expect("stored")));

    // The printed form is all another process needs to read the value, in a store that
    // process chose: a reference from a message opens nothing by itself.
    if let Shelved::Memorized(reference) = &result {
        let printed = reference.to_string();
        let parsed: cachette::MemorizedResult<Vec<f64>> = printed.parse().expect("parses");
        if let Err(e) = parsed.get() {
            println!("a parsed reference on its own: {e}");
        }
        println!(
            "read back from its printed form: {}",
            show(&MEMORY.resolve(&parsed).get().expect("stored"))
        );
    }

    result.clear().expect("clear");
    match result.get() {
        Ok(v) => println!("unexpected: {}", show(&v)),
        Err(e) => println!("Error: {e}"),
    }

    // With caching disabled, the value itself is kept.
    let disabled = Memory::disabled();
    let hamming = disabled.cache(|x: usize| vec![0.5; x]);
    let kept = hamming.call_and_shelve(2);
    println!("disabled memory: {kept} -> {:?}", kept.get().expect("kept"));
}

// --- Gotchas ------------------------------------------------------------------------------

fn gotchas() {
    section("Gotchas");
    println!("* Functions are identified by their path and the hash of their code.");
    println!("  Two functions given the same name in one process are reported:");
    let func = MEMORY
        .cache(|x: i32| println!("Running func({x})"))
        .name("tour::same_name");
    let func2 = MEMORY
        .cache(|x: i32| println!("Running a different func({x})"))
        .name("tour::same_name");
    func.eval(1);
    func2.eval(1);
    println!("  func2(1) loaded the result of func(1): they share one folder. Rename one.");

    println!("* Closures are told apart by where they are memoized:");
    let my_print = |x: i32| println!("{x}");
    let f1 = MEMORY.cache(move |()| my_print(1));
    let g1 = MEMORY.cache(move |()| my_print(2));
    f1.eval(());
    f1.eval(()); // loaded
    g1.eval(());
    g1.eval(()); // loaded

    println!("* Methods: memoize a pure function and call it from the method, leaving self out.");
    let model = Model { scale: 2.0 };
    println!("  model.predict(3.0) = {}", model.predict(3.0));
    println!("  model.predict(3.0) = {}", model.predict(3.0));

    println!("* Arguments are hashed from their serde form, canonically: a HashMap hashes the");
    println!("  same whatever its iteration order, in every process and on every platform.");
    let a: HashMap<&str, i32> = [("a", 1), ("b", 2), ("c", 3)].into();
    let b: HashMap<&str, i32> = [("c", 3), ("a", 1), ("b", 2)].into();
    println!("  hash(a) = {}", cachette::hash(&a).expect("hash"));
    println!("  hash(b) = {}", cachette::hash(&b).expect("hash"));
}

#[memoize(memory = MEMORY)]
fn predict(scale: f64, x: f64) -> f64 {
    println!("  Running predict({scale}, {x})");
    scale * x
}

struct Model {
    scale: f64,
}

impl Model {
    fn predict(&self, x: f64) -> f64 {
        predict(self.scale, x)
    }
}

// --- Ignoring arguments -------------------------------------------------------------------

#[memoize(memory = MEMORY, ignore = [debug])]
fn my_func(x: i64, debug: bool) {
    let _ = debug;
    println!("Called with x = {x}");
}

fn ignoring() {
    section("Ignoring some arguments");
    my_func(0, true);
    my_func(0, false);
    my_func(0, true);
    println!("my_func was not reevaluated");
}

// --- Validation ---------------------------------------------------------------------------

/// Only reuse results that took more than 0.2 s to compute.
fn cache_validation_cb(metadata: &Metadata) -> bool {
    metadata.duration > 0.2
}

#[memoize(memory = MEMORY, validate = cache_validation_cb)]
fn slow_func(delay: f64) {
    std::thread::sleep(Duration::from_secs_f64(delay));
    println!("Called with {delay}s delay");
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(memory = MEMORY, validate = expires_after(Duration::from_millis(500)))]
fn expiring() {
    RUNS.fetch_add(1, Ordering::Relaxed);
    println!("Function run");
}

fn validation() {
    section("Custom cache validation");
    slow_func(0.0);
    slow_func(0.3);
    slow_func(0.3);
    println!("(the 0.3 s result was loaded)");
    slow_func(0.0);

    expiring();
    expiring();
    std::thread::sleep(Duration::from_millis(600));
    expiring();
    println!("(ran {} times)", RUNS.load(Ordering::Relaxed));

    println!("The callback sees the metadata of the stored call:");
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let add = MEMORY
        .cache(|(a, b): (i32, i32)| a + b)
        .arg_names(["a", "b"])
        .validate(move |m: &Metadata| {
            *s.lock().expect("lock") = Some(m.input_args.clone());
            true
        });
    add.eval((1, 2));
    add.eval((1, 2));
    println!("  input_args = {:?}", seen.lock().expect("lock").take());
}

// --- MemorizedFunc methods ----------------------------------------------------------------

#[memoize(memory = MEMORY)]
fn func(x: i64) -> i64 {
    println!("Running func({x})");
    x
}

fn memorized_func() {
    section("Useful methods of memoized functions");
    println!("{}", func(1));
    println!("check_call_in_cache(1): {}", func::check_call_in_cache(&1));
    println!("check_call_in_cache(2): {}", func::check_call_in_cache(&2));
    let (value, metadata) = func::call(1);
    println!(
        "call(1) = {value}, took {:.6}s, args {:?}",
        metadata.duration, metadata.input_args
    );
    func::clear().expect("clear");
    println!(
        "after clear, check_call_in_cache(1): {}",
        func::check_call_in_cache(&1)
    );
}

// --- Async --------------------------------------------------------------------------------

#[memoize(memory = MEMORY)]
async fn fetch(id: u32) -> String {
    println!("Fetching record {id}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    format!("record {id}")
}

fn async_functions() {
    section("Async functions");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("{}", fetch(7).await);
        println!("{}", fetch(7).await);
    });
}

// --- Faults -------------------------------------------------------------------------------

fn cube(x: u64) -> u64 {
    println!("Running cube({x})");
    x * x * x
}

/// The folder of the faults' store: on the files layout, where each result is a file of its own
/// (the default layout keeps small results in an index in a store only you may write).
fn faults_folder() -> PathBuf {
    CACHEDIR.join("faults")
}

/// A memory on the faults' store.
fn faults_memory(strict: bool) -> Memory {
    Memory::builder()
        .url(format!("file://{}?layout=files", faults_folder().display()))
        .reporter(Reporter::new(print_report))
        .strict(strict)
        .build()
        .expect("the tour's cache folder")
}

/// Overwrites the stored results of the function `name` with garbage, as a failing disk or a
/// bad copy could. (Everything Cachette writes lives in `cachette/` in the location, in a
/// folder per function.)
fn damage(name: &str) {
    let folder = faults_folder()
        .join("cachette")
        .join(cachette::FuncId::new(name).folder());
    for file in std::fs::read_dir(folder).expect("the function's folder") {
        let path = file.expect("a directory entry").path();
        if path.file_name().is_some_and(|n| n != "func_code") {
            std::fs::write(&path, b"no longer an entry").expect("damaging an entry");
        }
    }
}

fn faults() {
    section("Faults: a warning and a recomputation, or an error in strict mode");
    let memory = faults_memory(false);
    let memorized = memory.cache(cube).name("tour::cube");
    println!("{}", memorized.eval(3));
    damage("tour::cube");
    println!("{}", memorized.eval(3)); // a warning, and the body runs again
    damage("tour::cube");
    let strict = faults_memory(true);
    let memorized = strict.cache(cube).name("tour::cube");
    match memorized.try_eval(3) {
        Ok(value) => println!("{value}"),
        Err(e) => println!("strict mode, an error instead: {e}"),
    }
    let (value, _) = memorized
        .try_call(3)
        .expect("a forced call replaces the entry");
    println!("{value}, stored again; then loaded: {}", memorized.eval(3));
}

// --- Statistics ---------------------------------------------------------------------------

fn statistics() {
    section("Statistics: what each function's calls did");
    // Counted once per call, with the time spent computing and the time the hits saved (the
    // duration stored with each entry they loaded).
    for (name, stats) in MEMORY.call_stats() {
        println!("{name}: {stats}");
    }
    // Every process that shares the store writes its counts there (once per
    // call_stats_interval, and when its memory is dropped); `cachette stats` reads the sum.
    MEMORY.flush_stats().expect("statistics written");
    let stored = MEMORY.stored_stats().expect("statistics read");
    println!(
        "stored: {} functions, {} calls",
        stored.functions.len(),
        stored.functions.iter().map(|f| f.stats.calls).sum::<u64>()
    );
}

// --- Clean-up -----------------------------------------------------------------------------

fn clean_up() {
    section("Clean-up");
    let report = MEMORY
        .reduce_size(&SizeLimits::default().items_limit(3))
        .expect("reduce_size");
    println!(
        "reduce_size(items_limit=3): entries deleted: {}, kept: {}",
        report.deleted_items, report.kept_items
    );
    let report = MEMORY
        .reduce_size(&SizeLimits::default().bytes_limit("1K").expect("size"))
        .expect("reduce_size");
    println!(
        "reduce_size(bytes_limit=\"1K\"): entries deleted: {}, bytes kept: {}",
        report.deleted_items, report.kept_bytes
    );
    MEMORY.clear().expect("clear");
    println!("memory.clear(): the cache is empty");
    std::fs::remove_dir_all(&*CACHEDIR).expect("remove the cache folder");
}

fn main() {
    simple_example();
    arrays();
    memmapping();
    shelving();
    gotchas();
    ignoring();
    validation();
    memorized_func();
    async_functions();
    faults();
    statistics();
    clean_up();
}
