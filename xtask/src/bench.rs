//! `cargo xtask bench`: Cachette side by side with joblib, the `cached` crate and the raw
//! floors, with the test servers up; or, with `--micro`, every crate's divan benchmarks.
//!
//! The side-by-side harness is the `compare` bench target of the unpublished `cachette-bench`
//! crate (`crates/bench/benches/compare`). It drives a joblib worker
//! (`xtask/bench/joblib_bench.py`) run by the Python of a virtual environment created here,
//! `target/bench-venv`, with `joblib` and `numpy` from PyPI.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::flags::{BenchFlags, BenchMode};
use crate::services;

/// The Python packages the joblib worker imports.
const PACKAGES: &[&str] = &["joblib", "numpy"];
/// How long creating the virtual environment and installing the packages may take.
const VENV_TIMEOUT: Duration = Duration::from_secs(300);
const PIP_TIMEOUT: Duration = Duration::from_secs(900);
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// `cargo xtask bench [--quick|--full] [--only ids] [--no-joblib] [--micro]
/// [--skip-services] [args…]`.
pub(crate) fn run(flags: &BenchFlags) -> Result<ExitCode> {
    // The virtual environment first: a PyPI failure should not wait for the servers.
    let python = if flags.micro || flags.no_joblib {
        None
    } else {
        Some(ensure_venv()?)
    };
    // Dropping the guard stops the servers if this run started them.
    let guard = if flags.skip_services {
        None
    } else {
        Some(services::ensure(false)?)
    };

    let mut cmd = crate::cargo();
    let line = if flags.micro {
        // The side-by-side harness is a bench target of the workspace too: it steps aside.
        cmd.args(["bench", "--workspace", "--all-features"])
            .args(&flags.args)
            .env("CACHETTE_BENCH_MODE", flags.mode.as_str())
            .env("CACHETTE_BENCH_MICRO", "1");
        format!(
            "cargo bench --workspace --all-features {}    (CACHETTE_BENCH_MODE={}, CACHETTE_BENCH_MICRO=1)",
            flags.args.join(" "),
            flags.mode.as_str()
        )
    } else {
        cmd.env_remove("CACHETTE_BENCH_MICRO");
        let mode = match flags.mode {
            BenchMode::Full => "full",
            BenchMode::Quick | BenchMode::Default => "quick",
        };
        let root = crate::project_root();
        cmd.args(["bench", "-p", "cachette-bench", "--bench", "compare"])
            .args(&flags.args)
            .env("CACHETTE_BENCH_MODE", mode)
            .env("CACHETTE_BENCH_DIR", root.join("target").join("bench-tmp"))
            .env("CACHETTE_BENCH_ONLY", flags.only.join(","))
            .env(
                "CACHETTE_BENCH_JOBLIB",
                root.join("xtask").join("bench").join("joblib_bench.py"),
            );
        match &python {
            Some(python) => cmd
                .env("CACHETTE_BENCH_PYTHON", python)
                .env_remove("CACHETTE_BENCH_NO_JOBLIB"),
            None => cmd.env("CACHETTE_BENCH_NO_JOBLIB", "1"),
        };
        format!(
            "cargo bench -p cachette-bench --bench compare {}    (CACHETTE_BENCH_MODE={mode})",
            flags.args.join(" ")
        )
    };
    if let Some(services) = &guard {
        cmd.envs(services.env().iter().map(|(k, v)| (k, v)));
    }
    eprintln!("$ {line}");
    let status = cmd.status().context("running cargo bench")?;
    drop(guard);
    if status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("bench: `cargo bench` failed ({status})");
        Ok(ExitCode::FAILURE)
    }
}

/// Makes sure `target/bench-venv` has joblib and numpy; returns its Python.
fn ensure_venv() -> Result<PathBuf> {
    let venv = crate::project_root().join("target").join("bench-venv");
    let python = venv.join("bin").join("python");
    if imports_ok(&python) {
        return Ok(python);
    }
    if !python.exists() {
        eprintln!(
            "bench: creating the Python virtual environment {}",
            venv.display()
        );
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(&venv);
        let created = services::run_bounded(&mut create, VENV_TIMEOUT, "python3 -m venv")
            .is_ok_and(|s| s.success());
        ensure!(
            created && python.exists(),
            "`python3 -m venv {}` failed: install Python 3 with its venv module (Debian: \
             `apt-get install python3-venv`), or run `cargo xtask bench --no-joblib`",
            venv.display()
        );
    }
    eprintln!(
        "bench: installing {} from PyPI into {}",
        PACKAGES.join(" and "),
        venv.display()
    );
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .args(["--timeout", "30", "--retries", "2"])
    .args(PACKAGES)
    .stdout(Stdio::from(std::io::stderr()));
    let installed =
        services::run_bounded(&mut pip, PIP_TIMEOUT, "pip install").is_ok_and(|s| s.success());
    if !installed || !imports_ok(&python) {
        bail!(
            "could not install {} from PyPI into {} (is PyPI reachable from this machine?); \
             `cargo xtask bench --no-joblib` benchmarks without joblib",
            PACKAGES.join(" and "),
            venv.display()
        );
    }
    Ok(python)
}

/// Whether `python` imports joblib and numpy.
fn imports_ok(python: &Path) -> bool {
    if !python.exists() {
        return false;
    }
    let mut cmd = Command::new(python);
    cmd.args(["-c", "import joblib, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    services::run_bounded(&mut cmd, IMPORT_TIMEOUT, "python").is_ok_and(|s| s.success())
}
