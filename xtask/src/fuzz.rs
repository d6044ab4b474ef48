//! `cargo xtask fuzz`: the entry decoder under cargo-fuzz (libFuzzer), for a bounded time.
//!
//! Each target of `fuzz/fuzz_targets/` (a crate of its own, outside the workspace) runs for
//! `--secs` seconds, built with AddressSanitizer, coverage instrumentation and debug assertions.
//! The targets check the properties of `crates/memory-core/tests/fuzz_support/`:
//!
//! - `decode_entry`: parsing and decoding never panic and never allocate much more than the
//!   entry's real size (a counting global allocator), on the input and on the input with valid
//!   checksums;
//! - `load_entry`: through a `Memory` over an `InMemoryBackend`, an entry a load must refuse is
//!   a miss and the call gives the right value.
//!
//! cargo-fuzz passes nightly flags (`-Zsanitizer=address`) to rustc; `RUSTC_BOOTSTRAP=1` lets
//! the stable toolchain accept them. cargo-fuzz is installed (`cargo install cargo-fuzz
//! --locked`) when missing.
//!
//! Corpora: libFuzzer adds what it finds to the working corpus `fuzz/corpus/<target>/` (not
//! committed), and reads the committed one, `crates/memory-core/tests/fuzz-corpus/<target>/`,
//! and the regression inputs, `crates/memory-core/tests/fuzz-corpus/regressions/`. `--cmin`
//! merges the working corpus into the committed one and minimises it (`cargo fuzz cmin`): the
//! fewest files with the same coverage.
//!
//! Crashes: libFuzzer stops at the first failing input of a target and writes it to
//! `fuzz/artifacts/<target>/` (`crash-*`, `oom-*`, `timeout-*`, `leak-*`). This command copies
//! each one written during the run to `crates/memory-core/tests/fuzz-corpus/regressions/` as
//! `<target>-<name>`, says so, and fails. The test `fuzz_entries` runs every file under
//! `tests/fuzz-corpus/` through both targets' properties, so `cargo test` fails until the
//! decoder is fixed, and keeps the input as a regression test after. Reproduce one with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run --debug-assertions --target-dir fuzz/target <target>
//! <file>`.
//!
//! `--engine mutate` runs the hand-written mutation fuzzer instead: the test
//! `crates/memory-core/tests/fuzz_entries.rs` in a release build, with a time budget and a seed
//! from the clock (or the one given).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::flags::{FuzzEngine, FuzzFlags};

/// The committed corpus, relative to the workspace root.
const CORPUS: &str = "crates/memory-core/tests/fuzz-corpus";
/// The folder of the committed corpus that keeps failing inputs.
const REGRESSIONS: &str = "regressions";
/// The prefixes libFuzzer names failing inputs with.
const ARTIFACTS: &[&str] = &["crash-", "oom-", "timeout-", "leak-"];

/// `cargo xtask fuzz [--secs N] [--target T] [--seed S] [--engine E] ...`.
pub(crate) fn run(flags: &FuzzFlags) -> Result<ExitCode> {
    match flags.engine {
        FuzzEngine::CargoFuzz => run_cargo_fuzz(flags),
        FuzzEngine::Mutate => run_mutate(flags),
    }
}

/// The hand-written mutation fuzzer of `fuzz_entries.rs`.
fn run_mutate(flags: &FuzzFlags) -> Result<ExitCode> {
    let mut cmd = crate::cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "cachette-core",
        "--test",
        "fuzz_entries",
        "--",
        "--nocapture",
    ])
    .env("CACHETTE_FUZZ_SECS", flags.secs.to_string())
    .env("CACHETTE_FUZZ_ITERS", u64::MAX.to_string());
    if let Some(seed) = flags.seed {
        cmd.env("CACHETTE_FUZZ_SEED", seed.to_string());
    }
    eprintln!(
        "$ cargo test --release -p cachette-core --test fuzz_entries    (CACHETTE_FUZZ_SECS={})",
        flags.secs
    );
    let status = cmd.status().context("running the fuzzer")?;
    if status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("fuzz: a failing input was found (see above and target/fuzz-failures/)");
        Ok(ExitCode::FAILURE)
    }
}

/// What one target's run gave.
struct Outcome {
    target: String,
    /// libFuzzer's final statistics (`stat::name: value`).
    stats: Vec<(String, String)>,
    /// Failing inputs, as copied into the regression corpus.
    failures: Vec<PathBuf>,
    /// The run failed without a failing input (a build error, a tool error).
    error: Option<String>,
}

impl Outcome {
    fn stat(&self, name: &str) -> Option<&str> {
        self.stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn run_cargo_fuzz(flags: &FuzzFlags) -> Result<ExitCode> {
    let root = crate::project_root();
    let targets = select_targets(&root, &flags.targets)?;
    ensure_cargo_fuzz()?;
    let mut outcomes = Vec::new();
    if flags.secs > 0 {
        for target in &targets {
            outcomes.push(fuzz_target(&root, target, flags)?);
        }
    }
    let mut failed = false;
    if flags.cmin {
        for target in &targets {
            failed |= !minimise(&root, target, flags)?;
        }
    }
    if !outcomes.is_empty() {
        eprintln!("\nfuzz: {} s per target", flags.secs);
    }
    for o in &outcomes {
        let runs = o.stat("stat::number_of_executed_units").unwrap_or("?");
        let rate = o.stat("stat::average_exec_per_sec").unwrap_or("?");
        let new = o.stat("stat::new_units_added").unwrap_or("?");
        let rss = o.stat("stat::peak_rss_mb").unwrap_or("?");
        eprintln!(
            "  {:<14} {runs:>10} executions ({rate}/s), {new} new inputs, peak RSS {rss} MB",
            o.target
        );
        for path in &o.failures {
            failed = true;
            eprintln!("  {:<14} FAILED: kept as {}", "", shown(&root, path));
        }
        if let Some(error) = &o.error {
            failed = true;
            eprintln!("  {:<14} ERROR: {error}", "");
        }
    }
    if outcomes.iter().any(|o| !o.failures.is_empty()) {
        eprintln!(
            "\nfuzz: failing inputs are regression tests now: `cargo test -p cachette-core --test \
             fuzz_entries` fails until the decoder is fixed. Reproduce one with\n  \
             RUSTC_BOOTSTRAP=1 cargo fuzz run --debug-assertions --target-dir fuzz/target \
             <target> <file>"
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The targets of `fuzz/fuzz_targets/`, or those asked for (which must be among them).
fn select_targets(root: &Path, wanted: &[String]) -> Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut all: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    all.sort();
    if wanted.is_empty() {
        return Ok(all);
    }
    for t in wanted {
        if !all.contains(t) {
            bail!("unknown fuzz target `{t}` (targets: {})", all.join(", "));
        }
    }
    Ok(wanted.to_vec())
}

/// Installs cargo-fuzz if `cargo fuzz` is not there.
fn ensure_cargo_fuzz() -> Result<()> {
    let found = crate::cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(());
    }
    eprintln!("$ cargo install cargo-fuzz --locked");
    let status = crate::cargo()
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("cannot install cargo-fuzz");
    }
    Ok(())
}

/// `cargo fuzz <sub>` with the build options every run shares, from the workspace root.
fn cargo_fuzz(sub: &str, target: &str, flags: &FuzzFlags) -> (Command, String) {
    let args = [
        "fuzz",
        sub,
        "--sanitizer",
        &flags.sanitizer,
        "--debug-assertions",
        "--target-dir",
        "fuzz/target",
        target,
    ];
    let mut cmd = crate::cargo();
    // cargo-fuzz passes `-Z` flags to rustc (the sanitizer, coverage options).
    cmd.args(args).env("RUSTC_BOOTSTRAP", "1");
    (cmd, format!("RUSTC_BOOTSTRAP=1 cargo {}", args.join(" ")))
}

/// The folders of the committed corpus a target reads: its own and the regressions.
fn committed(root: &Path, target: &str) -> Vec<PathBuf> {
    [target, REGRESSIONS]
        .iter()
        .map(|d| root.join(CORPUS).join(d))
        .filter(|d| d.is_dir())
        .collect()
}

/// Runs one target for the time given; keeps what it found.
fn fuzz_target(root: &Path, target: &str, flags: &FuzzFlags) -> Result<Outcome> {
    let working = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&working).with_context(|| format!("creating {}", working.display()))?;
    let (mut cmd, mut shown_cmd) = cargo_fuzz("run", target, flags);
    let mut corpora = vec![working];
    corpora.extend(committed(root, target));
    for dir in &corpora {
        cmd.arg(dir);
        shown_cmd.push(' ');
        shown_cmd.push_str(&shown(root, dir));
    }
    let mut options = vec![
        format!("-max_total_time={}", flags.secs),
        // A decode allocates a few times its input (at most 4 KiB) and what a compressed
        // payload really holds; one allocation over 64 MB means that a header was trusted
        // (zstd's own allocations, which the targets' counting allocator does not see,
        // included). libFuzzer reports it as `oom-*`.
        "-rss_limit_mb=2048".to_owned(),
        "-malloc_limit_mb=64".to_owned(),
        "-timeout=10".to_owned(),
        "-print_final_stats=1".to_owned(),
    ];
    if let Some(seed) = flags.seed {
        options.push(format!("-seed={seed}"));
    }
    cmd.arg("--").args(&options);
    eprintln!("\n$ {shown_cmd} -- {}", options.join(" "));

    let started = SystemTime::now();
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo fuzz")?;
    let mut stats = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let mut out = std::io::stderr().lock();
        for line in BufReader::new(stderr).split(b'\n') {
            let line = line.context("reading cargo fuzz's output")?;
            let _ = out.write_all(&line);
            let _ = out.write_all(b"\n");
            let text = String::from_utf8_lossy(&line);
            if let Some((name, value)) = text.trim().split_once(": ")
                && name.starts_with("stat::")
            {
                stats.push((name.to_owned(), value.trim().to_owned()));
            }
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    let failures = keep_failures(root, target, started)?;
    let error = (!status.success() && failures.is_empty())
        .then(|| format!("cargo fuzz run {target} failed ({status}), see above"));
    Ok(Outcome {
        target: target.to_owned(),
        stats,
        failures,
        error,
    })
}

/// Copies the failing inputs libFuzzer wrote since `since` into the regression corpus; gives
/// where.
fn keep_failures(root: &Path, target: &str, since: SystemTime) -> Result<Vec<PathBuf>> {
    let artifacts = root.join("fuzz/artifacts").join(target);
    let Ok(entries) = std::fs::read_dir(&artifacts) else {
        return Ok(Vec::new());
    };
    let regressions = root.join(CORPUS).join(REGRESSIONS);
    let mut kept = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let recent = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if !recent || !ARTIFACTS.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        std::fs::create_dir_all(&regressions)
            .with_context(|| format!("creating {}", regressions.display()))?;
        let to = regressions.join(format!("{target}-{name}"));
        std::fs::copy(entry.path(), &to)
            .with_context(|| format!("copying {} to {}", name, to.display()))?;
        eprintln!(
            "fuzz: {target}: failing input {} kept as {}",
            shown(root, &entry.path()),
            shown(root, &to)
        );
        kept.push(to);
    }
    kept.sort();
    Ok(kept)
}

/// Minimises a target's committed corpus together with its working corpus: copies the
/// working corpus in, then `cargo fuzz cmin` keeps the smallest set of files with the same
/// coverage. Gives whether it worked.
fn minimise(root: &Path, target: &str, flags: &FuzzFlags) -> Result<bool> {
    let corpus = root.join(CORPUS).join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let before = count_files(&corpus);
    let working = root.join("fuzz/corpus").join(target);
    let mut added = 0;
    if let Ok(entries) = std::fs::read_dir(&working) {
        for entry in entries.filter_map(|e| e.ok()) {
            let to = corpus.join(entry.file_name());
            if entry.path().is_file() && !to.exists() {
                std::fs::copy(entry.path(), &to)
                    .with_context(|| format!("copying {}", entry.path().display()))?;
                added += 1;
            }
        }
    }
    let (mut cmd, shown_cmd) = cargo_fuzz("cmin", target, flags);
    // The fewest files that run every edge (a greedy set cover), not every count of runs of
    // each: a few hundred files rather than thousands (the working corpus keeps those).
    let options = ["-use_counters=0", "-set_cover_merge=1"];
    cmd.arg(&corpus).arg("--").args(options);
    eprintln!(
        "\n$ {shown_cmd} {} -- {}    ({before} committed files and {added} from {})",
        shown(root, &corpus),
        options.join(" "),
        shown(root, &working)
    );
    let status = cmd.status().context("running cargo fuzz cmin")?;
    if !status.success() || count_files(&corpus) == 0 {
        eprintln!("fuzz: cargo fuzz cmin {target} failed ({status})");
        return Ok(false);
    }
    eprintln!(
        "fuzz: {target}: committed corpus {before} -> {} files ({} bytes)",
        count_files(&corpus),
        dir_size(&corpus)
    );
    Ok(true)
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |e| e.filter_map(|e| e.ok()).count())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |e| {
        e.filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// `path` relative to the workspace root, for messages.
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
