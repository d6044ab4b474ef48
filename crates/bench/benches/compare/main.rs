//! Cachette side by side with joblib, the `cached` crate and the raw floors, in one run.
//!
//! `cargo xtask bench` runs this harness (`cargo bench -p cachette-bench --bench compare`)
//! with the test servers up and joblib in a virtual environment.
//! Each workload runs its contenders interleaved: after a warm-up, every round takes one
//! sample of each contender, in an order rotated from round to round; the table reports the
//! median time per operation, the 10th–90th percentile spread, the ratio to Cachette and the
//! targets. It is printed, and written to `BENCHMARKS.md` with a plot of hit latency against
//! argument size (`docs/bench/hit-latency.svg`).
//!
//! The joblib contender is a long-lived Python worker (`xtask/bench/joblib_bench.py`) that
//! measures joblib's time itself, with `time.perf_counter_ns`, between Cachette's samples.
//!
//! Environment:
//! - `CACHETTE_BENCH_MODE`: `quick` (the default: fewer samples, the 1 GiB workloads at
//!   256 MiB) or `full`;
//! - `CACHETTE_BENCH_PYTHON`, `CACHETTE_BENCH_JOBLIB`: the Python with joblib and numpy, and
//!   the worker script (default: `target/bench-venv/bin/python`,
//!   `xtask/bench/joblib_bench.py`); `CACHETTE_BENCH_NO_JOBLIB=1` leaves joblib out;
//! - `CACHETTE_BENCH_ONLY`: a comma-separated list of workload ids to run (then the report
//!   goes to `target/bench-partial/` and the committed `BENCHMARKS.md` is left alone);
//! - `CACHETTE_BENCH_DIR`: where the caches go (default `target/bench-tmp`);
//! - `CACHETTE_BENCH_NO_CALLGRIND`: leave out the instruction and system-call counts of the
//!   small-entry rows (otherwise measured with `valgrind --tool=callgrind` and `strace -f -c`
//!   when they are on `PATH`, whenever `hit_int` or `miss_tiny` runs; see `callgrind.rs`);
//! - `CACHETTE_BENCH_NO_SETTLE`: begin at once, without waiting for the file system to create
//!   files at its usual speed (see `settle.rs`; the report says what the wait found);
//! - `CACHETTE_BENCH_SCALING`: run the scaling table instead of the workloads (`scaling.rs`),
//!   up to `CACHETTE_BENCH_SCALING_MAX` entries (default 1,000,000); a complete run rewrites
//!   the `## Scaling` section of `BENCHMARKS.md`, a shorter one writes to
//!   `target/bench-partial/`; the workloads' runs keep the section as it is;
//! - `CACHETTE_TEST_REDIS_URL`, `CACHETTE_TEST_S3_ENDPOINT`, `CACHETTE_TEST_S3_BUCKET`: the
//!   servers of the Redis and S3 workloads, which are skipped without them.
//!
//! Run without `--bench` (as `cargo test --benches` does), or with `CACHETTE_BENCH_MICRO` set
//! (as `cargo xtask bench --micro` does: its `cargo bench --workspace` would otherwise run this
//! harness too, and rewrite `BENCHMARKS.md`), it exits at once without measuring.

mod callgrind;
mod cases;
mod many;
mod one_cpu;
mod plot;
mod probe;
mod proc;
mod remote;
mod report;
mod scaling;
mod settle;
mod stats;
mod worker;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::proc::Worker;
use crate::stats::{Contender, Kind, Outcome, Plan, Row};

/// Errors of the harness: reported in the table, never panics in a sample.
pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The name of the Cachette rows. On the local disk, they are the files layout
/// (`?layout=files`: one file per entry, the default in a store others may write).
pub(crate) const CACHETTE: &str = "Cachette";
/// The name of the Cachette rows on the index layout of the local disk (`?layout=index`: small
/// entries in an LMDB index, the default, `layout=auto`, in a store only you may write).
pub(crate) const CACHETTE_INDEX: &str = "Cachette, index layout";
/// The name of the Cachette rows of a repeated hit from the in-process memo (of a store on
/// the files layout).
pub(crate) const CACHETTE_MEMO: &str = "Cachette, in-process memo (repeated hit)";
/// The name of the joblib rows.
pub(crate) const JOBLIB: &str = "joblib";
/// The name of the `cached` rows on disk.
pub(crate) const CACHED_REDB: &str = "cached (redb)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--worker") {
        return worker::serve();
    }
    if args.first().is_some_and(|a| a == "--probe") {
        return probe::main_with(&args[1..]);
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "compare: not measuring without --bench; run `cargo xtask bench` (or `cargo bench -p cachette-bench --bench compare`)"
        );
        return ExitCode::SUCCESS;
    }
    if std::env::var("CACHETTE_BENCH_MICRO").is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!(
            "compare: skipped with the micro-benchmarks (CACHETTE_BENCH_MICRO); `cargo xtask bench` runs it"
        );
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("compare: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sizes and sample counts of a mode.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `quick` or `full`.
    pub(crate) mode: &'static str,
    /// The size of the "1 GiB" workloads (hashing, persisting, reloading).
    pub(crate) big_bytes: usize,
    fast_rounds: usize,
    heavy_rounds: usize,
    huge_rounds: usize,
    sample_time: Duration,
}

impl Config {
    fn from_env() -> Res<Config> {
        let mode = std::env::var("CACHETTE_BENCH_MODE").unwrap_or_default();
        Ok(match mode.as_str() {
            "" | "default" | "quick" => Config {
                mode: "quick",
                big_bytes: 256 << 20,
                fast_rounds: 15,
                heavy_rounds: 5,
                huge_rounds: 3,
                sample_time: Duration::from_millis(10),
            },
            "full" => Config {
                mode: "full",
                big_bytes: 1 << 30,
                fast_rounds: 40,
                heavy_rounds: 15,
                huge_rounds: 7,
                sample_time: Duration::from_millis(50),
            },
            other => {
                return Err(format!("CACHETTE_BENCH_MODE={other}: expected quick or full").into());
            }
        })
    }

    /// Microsecond-scale operations: many calibrated samples.
    pub(crate) fn fast(&self) -> Plan {
        Plan {
            rounds: self.fast_rounds,
            sample_time: Some(self.sample_time),
            warm_up: true,
        }
    }

    /// Operations of tens to hundreds of milliseconds: one per sample.
    pub(crate) fn heavy(&self) -> Plan {
        Plan {
            rounds: self.heavy_rounds,
            sample_time: None,
            warm_up: true,
        }
    }

    /// Operations of a second or more: one per sample, fewer samples, no warm-up.
    pub(crate) fn huge(&self) -> Plan {
        Plan {
            rounds: self.huge_rounds,
            sample_time: None,
            warm_up: false,
        }
    }

    /// The size of the big workloads, as the titles show it.
    pub(crate) fn big_label(&self) -> String {
        if self.big_bytes == 1 << 30 {
            "1 GiB".into()
        } else {
            format!("{} MiB", self.big_bytes >> 20)
        }
    }
}

/// The folder of the scratch folder where ended workloads' folders wait for the end of the run.
const SPENT: &str = "spent";

/// Deletes the files of at least 1 MiB below `dir` (the outputs of large workloads), so that
/// the folders kept until the end of the run hold few bytes.
fn remove_large_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            remove_large_files(&entry.path());
        } else if kind.is_file() && entry.metadata().is_ok_and(|m| m.len() >= 1 << 20) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What the workloads share.
pub(crate) struct Ctx {
    /// Sizes and sample counts.
    pub(crate) cfg: Config,
    scratch: PathBuf,
    joblib_cmd: Result<(PathBuf, PathBuf), String>,
    joblib: RefCell<Result<Worker, String>>,
}

impl Ctx {
    /// A fresh, empty folder for workload `id`.
    pub(crate) fn workspace(&self, id: &str) -> PathBuf {
        let dir = self.scratch.join(id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a scratch folder");
        dir
    }

    /// Ends a workload: the joblib worker forgets it; its large files go, and its folder is
    /// moved aside, deleted with the rest at the end of the run. On ext4 a file made after
    /// many were deleted steps over the inodes freed in the last minutes, so deleting a
    /// workload's thousands of small files here would slow the misses of the next workloads.
    pub(crate) fn done(&self, dir: &Path) {
        if let Ok(worker) = &mut *self.joblib.borrow_mut()
            && let Err(e) = worker.request(&json!({"op": "teardown"}))
        {
            eprintln!("  joblib teardown: {e}");
        }
        remove_large_files(dir);
        let spent = self.scratch.join(SPENT);
        let name = dir.file_name().unwrap_or_default();
        let moved =
            std::fs::create_dir_all(&spent).and_then(|()| std::fs::rename(dir, spent.join(name)));
        if moved.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// The joblib contender of a workload, set up by the worker with `setup`.
    pub(crate) fn joblib(&self, mut setup: Value) -> Contender<'_> {
        let ready = match &mut *self.joblib.borrow_mut() {
            Ok(worker) => {
                setup["op"] = json!("setup");
                worker
                    .request(&setup)
                    .map_err(|e| format!("set-up failed: {e}"))
            }
            Err(why) => Err(why.clone()),
        };
        if let Err(why) = ready {
            return Contender::unavailable(JOBLIB, Kind::Joblib, why);
        }
        Contender::new(JOBLIB, Kind::Joblib, move |iters| {
            let mut guard = self.joblib.borrow_mut();
            let worker = guard.as_mut().map_err(|e| e.clone())?;
            worker.timed(&json!({"op": "sample", "iters": iters}))
        })
    }

    /// The Python and the script of a joblib worker.
    pub(crate) fn joblib_worker_cmd(&self) -> Result<(PathBuf, PathBuf), String> {
        self.joblib_cmd.clone()
    }
}

/// A target of a workload, checked on ratios measured in the same run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// Row `than` takes at least `factor` times Cachette's time.
    Faster {
        /// The slower contender.
        than: &'static str,
        /// The least ratio.
        factor: f64,
    },
    /// Cachette takes at most `factor` times the time of row `floor`.
    Within {
        /// The floor.
        floor: &'static str,
        /// The greatest ratio.
        factor: f64,
    },
    /// Cachette goes at least `fraction` of the speed of row `floor`.
    SpeedOf {
        /// The floor.
        floor: &'static str,
        /// The least fraction.
        fraction: f64,
    },
    /// Cachette's median is at most this.
    AtMost(Duration),
    /// Row `row` takes at most `factor` times the time of row `of` (another contender or a
    /// floor).
    RowWithin {
        /// The row checked.
        row: &'static str,
        /// The row it is compared with.
        of: &'static str,
        /// The greatest ratio.
        factor: f64,
    },
    /// Row `row`'s median is at most `limit`.
    RowAtMost {
        /// The row checked.
        row: &'static str,
        /// The greatest median.
        limit: Duration,
    },
}

/// One workload's rows and targets.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Its id (for `CACHETTE_BENCH_ONLY`).
    pub(crate) id: &'static str,
    /// What the table calls it.
    pub(crate) title: String,
    /// One row per contender.
    pub(crate) rows: Vec<Row>,
    /// Its targets.
    pub(crate) targets: Vec<Target>,
    /// For hit workloads, the size of the argument (a point of the plot).
    pub(crate) arg_bytes: Option<f64>,
}

impl Workload {
    /// A workload's results.
    pub(crate) fn new(id: &'static str, title: &str, rows: Vec<Row>) -> Workload {
        Workload {
            id,
            title: title.to_owned(),
            rows,
            targets: Vec::new(),
            arg_bytes: None,
        }
    }

    /// A workload none of whose contenders could run, and why.
    pub(crate) fn not_run(id: &'static str, title: &str, names: &[&str], why: &str) -> Workload {
        let rows = names
            .iter()
            .map(|name| Row {
                name: (*name).to_owned(),
                kind: match *name {
                    CACHETTE => Kind::Cachette,
                    JOBLIB => Kind::Joblib,
                    n if n.starts_with("cached") => Kind::Cached,
                    _ => Kind::Floor,
                },
                outcome: Outcome::NotRun(why.to_owned()),
            })
            .collect();
        Workload::new(id, title, rows)
    }

    /// Adds a target.
    pub(crate) fn target(mut self, target: Target) -> Workload {
        self.targets.push(target);
        self
    }

    /// Records the argument size of a hit workload.
    pub(crate) fn arg_bytes(mut self, bytes: f64) -> Workload {
        self.arg_bytes = Some(bytes);
        self
    }

    /// The median of the row named `name`, when measured.
    pub(crate) fn median(&self, name: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.name == name)?.median()
    }
}

/// The workspace root (two levels above this crate).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Finds the joblib worker's Python and script, or says why there is none.
fn joblib_cmd(root: &Path) -> Result<(PathBuf, PathBuf), String> {
    if std::env::var("CACHETTE_BENCH_NO_JOBLIB").is_ok_and(|v| !v.is_empty() && v != "0") {
        return Err("left out (CACHETTE_BENCH_NO_JOBLIB)".into());
    }
    let python = std::env::var_os("CACHETTE_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench-venv/bin/python"));
    let script = std::env::var_os("CACHETTE_BENCH_JOBLIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("xtask/bench/joblib_bench.py"));
    if !python.exists() {
        return Err(format!(
            "no Python with joblib at {} (`cargo xtask bench` creates it)",
            python.display()
        ));
    }
    if !script.exists() {
        return Err(format!("no joblib worker at {}", script.display()));
    }
    Ok((python, script))
}

/// A workload of the suite.
type Case = Box<dyn Fn(&Ctx) -> Workload>;

/// Every workload, in the order they run.
fn suite(cfg: &Config) -> Vec<(&'static str, Case)> {
    let big = cfg.big_label();
    let hash_title = format!("hash a {big} f64 array");
    let persist_title = format!("persist a {big} array output (miss)");
    let mmap_title = format!("reload a {big} array output, mmap");
    let copy_title = format!("reload a {big} array output, no mmap");
    vec![
        ("hit_int", Box::new(cases::hit_int)),
        ("hit_list", Box::new(cases::hit_list)),
        (
            "hit_1mb",
            Box::new(|ctx: &Ctx| {
                cases::hit_array(ctx, "hit_1mb", "hit, 1 MB f64 array argument", 1_000_000)
            }),
        ),
        (
            "hit_100mb",
            Box::new(|ctx: &Ctx| {
                cases::hit_array(
                    ctx,
                    "hit_100mb",
                    "hit, 100 MB f64 array argument",
                    100_000_000,
                )
            }),
        ),
        ("miss_tiny", Box::new(cases::miss_tiny)),
        (
            "miss_100mb",
            Box::new(|ctx: &Ctx| {
                cases::miss_big(ctx, "miss_100mb", "miss, 100 MB array output", 100_000_000)
            }),
        ),
        (
            "hash_array",
            Box::new(move |ctx: &Ctx| cases::hash_array(ctx, &hash_title)),
        ),
        ("hash_dict", Box::new(cases::hash_dict)),
        (
            "persist",
            Box::new(move |ctx: &Ctx| {
                cases::miss_big(ctx, "persist", &persist_title, ctx.cfg.big_bytes)
            }),
        ),
        (
            "reload_mmap",
            Box::new(move |ctx: &Ctx| cases::reload(ctx, true, &mmap_title)),
        ),
        (
            "reload_copy",
            Box::new(move |ctx: &Ctx| cases::reload(ctx, false, &copy_title)),
        ),
        ("populate", Box::new(many::populate_10k)),
        ("list", Box::new(many::list_10k)),
        (
            "reduce_half",
            Box::new(|ctx: &Ctx| many::reduce(ctx, 5_000)),
        ),
        ("reduce_all", Box::new(|ctx: &Ctx| many::reduce(ctx, 0))),
        ("concurrent", Box::new(cases::concurrent)),
        ("redis_hit", Box::new(remote::redis_hit)),
        ("s3_hit", Box::new(remote::s3_hit)),
    ]
}

fn run() -> Res<ExitCode> {
    cachette::link_backends();
    let cfg = Config::from_env()?;
    let root = workspace_root();
    let suite = suite(&cfg);
    let only: Option<Vec<String>> = std::env::var("CACHETTE_BENCH_ONLY")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    if let Some(only) = &only {
        for id in only {
            if !suite.iter().any(|(known, _)| known == id) {
                let ids: Vec<&str> = suite.iter().map(|(id, _)| *id).collect();
                return Err(
                    format!("unknown workload `{id}` (workloads: {})", ids.join(", ")).into(),
                );
            }
        }
    }
    let scratch = std::env::var_os("CACHETTE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/bench-tmp"));
    std::fs::create_dir_all(&scratch)?;
    let committed = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap_or_default();

    let settled = if flag("CACHETTE_BENCH_NO_SETTLE") {
        None
    } else {
        let settled = settle::settle(&scratch)?;
        eprintln!("compare: {}", settled.note());
        Some(settled)
    };
    if flag("CACHETTE_BENCH_SCALING") {
        return run_scaling(&root, &scratch, &committed);
    }

    let joblib_cmd = joblib_cmd(&root);
    let mut versions = report::Versions::probe(&root);
    let joblib = joblib_cmd.clone().and_then(|(python, script)| {
        let mut worker = Worker::spawn(
            "joblib worker",
            &python,
            &[script.to_str().unwrap_or_default()],
        )
        .map_err(|e| e.to_string())?;
        let hello = worker
            .request(&json!({"op": "hello"}))
            .map_err(|e| format!("the joblib worker does not answer: {e}"))?;
        versions.python = hello["python"].as_str().map(str::to_owned);
        versions.joblib = hello["joblib"].as_str().map(str::to_owned);
        versions.numpy = hello["numpy"].as_str().map(str::to_owned);
        Ok(worker)
    });
    if let Err(why) = &joblib {
        eprintln!("compare: joblib: {why}; its rows will say so");
    }
    let ctx = Ctx {
        cfg,
        scratch: scratch.clone(),
        joblib_cmd,
        joblib: RefCell::new(joblib),
    };

    let started = std::time::Instant::now();
    let mut results = Vec::new();
    for (id, case) in &suite {
        if only.as_ref().is_some_and(|o| !o.iter().any(|s| s == id)) {
            continue;
        }
        eprintln!("compare: {id} ({:.0}s)", started.elapsed().as_secs_f64());
        results.push(case(&ctx));
    }
    let mode = ctx.cfg.mode;
    let mut notes = Vec::new();
    if let Some(settled) = settled {
        notes.push(settled.note());
    }
    if ctx.cfg.big_bytes != 1 << 30 {
        notes.push(format!(
            "Quick mode: the 1 GiB workloads (hashing, persisting, reloading) ran at {}; \
             `cargo xtask bench --full` runs them at 1 GiB, with more samples.",
            ctx.cfg.big_label()
        ));
    }
    drop(ctx);
    let ran: Vec<&str> = results.iter().map(|w| w.id).collect();
    eprintln!(
        "compare: instruction counts ({:.0}s)",
        started.elapsed().as_secs_f64()
    );
    let instructions = callgrind::count(&ran, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);

    let report = report::Report::new(
        report::Machine::probe(),
        versions,
        mode,
        notes,
        results,
        instructions,
        report::scaling_section(&committed),
    )
    .after(&committed);
    if let Some(note) = report.other_machine_note() {
        eprintln!("compare: {note}");
    }
    println!("{}", report.terminal_table());
    println!("{}", report.target_lines().join("\n"));
    // A partial run leaves the committed BENCHMARKS.md alone and writes beside the build.
    let out = if only.is_some() {
        root.join("target/bench-partial")
    } else {
        root.clone()
    };
    let svg = out.join("docs/bench/hit-latency.svg");
    std::fs::create_dir_all(svg.parent().expect("a parent"))?;
    let plotted = plot::hit_latency(&svg, &report.results);
    if let Err(e) = &plotted {
        eprintln!("compare: no plot: {e}");
    }
    let md = out.join("BENCHMARKS.md");
    std::fs::write(&md, report.markdown(plotted.is_ok()))?;
    eprintln!("compare: wrote {}", md.display());
    eprintln!("compare: done in {:.0}s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// Whether a flag variable is set (non-empty, not `0`).
fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The scaling table alone (`CACHETTE_BENCH_SCALING`): a complete run rewrites the
/// `## Scaling` section of `BENCHMARKS.md` (the rest is left as it is); one stopped early by
/// `CACHETTE_BENCH_SCALING_MAX` writes `target/bench-partial/BENCHMARKS.md`.
fn run_scaling(root: &Path, scratch: &Path, committed: &str) -> Res<ExitCode> {
    let full = *scaling::SIZES.last().unwrap_or(&0);
    let max = match std::env::var("CACHETTE_BENCH_SCALING_MAX") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .replace('_', "")
            .parse::<usize>()
            .map_err(|e| format!("CACHETTE_BENCH_SCALING_MAX={v}: {e}"))?,
        _ => full,
    };
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let run_line = format!("{date}; {}", report::Machine::probe().line());
    let section = scaling::run(scratch, max, &run_line);
    let _ = std::fs::remove_dir_all(scratch);
    println!("{section}");
    let out = if max >= full {
        root.to_path_buf()
    } else {
        root.join("target/bench-partial")
    };
    std::fs::create_dir_all(&out)?;
    let md = out.join("BENCHMARKS.md");
    std::fs::write(&md, report::with_scaling(committed, &section))?;
    eprintln!("compare: wrote the scaling section of {}", md.display());
    Ok(ExitCode::SUCCESS)
}
