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

/// The scaling table's options, taken out of the arguments `cargo bench` would get.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scaling {
    /// `--scaling`: run the scaling table instead of the workloads.
    on: bool,
    /// `--scaling-max N`: stop at stores of `N` entries.
    max: Option<u64>,
}

/// Takes `--scaling` and `--scaling-max N` (or `--scaling-max=N`) out of `args`, up to a
/// `--` (what follows it is `cargo bench`'s). `--scaling-max` implies `--scaling`.
fn take_scaling(args: &[String]) -> Result<(Scaling, Vec<String>)> {
    let mut scaling = Scaling::default();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let max = match arg.as_str() {
            "--" => {
                rest.push(arg.clone());
                rest.extend(it.by_ref().cloned());
                break;
            }
            "--scaling" => {
                scaling.on = true;
                continue;
            }
            "--scaling-max" => it
                .next()
                .context("`--scaling-max` needs a number of entries")?,
            s if s.starts_with("--scaling-max=") => &s["--scaling-max=".len()..],
            _ => {
                rest.push(arg.clone());
                continue;
            }
        };
        let n = max
            .replace('_', "")
            .parse::<u64>()
            .with_context(|| format!("`--scaling-max {max}`: not a number of entries"))?;
        scaling.on = true;
        scaling.max = Some(n);
    }
    Ok((scaling, rest))
}

/// `cargo xtask bench [--quick|--full] [--only ids] [--no-joblib] [--micro]
/// [--skip-services] [--scaling [--scaling-max N]] [args…]`.
///
/// `--scaling` runs the scaling table alone (`crates/bench/benches/compare/scaling.rs`):
/// stores of 1k to 1M tiny entries, for each store layout; it rewrites the `## Scaling`
/// section of `BENCHMARKS.md`. `--scaling-max N` stops at `N` entries (a quick check) and
/// writes to `target/bench-partial/` instead. It needs neither joblib nor the test servers.
pub(crate) fn run(flags: &BenchFlags) -> Result<ExitCode> {
    let (scaling, args) = take_scaling(&flags.args)?;
    ensure!(
        !(scaling.on && flags.micro),
        "`--scaling` and `--micro` are exclusive"
    );
    // The virtual environment first: a PyPI failure should not wait for the servers.
    let python = if flags.micro || flags.no_joblib || scaling.on {
        None
    } else {
        Some(ensure_venv()?)
    };
    // Dropping the guard stops the servers if this run started them.
    let guard = if flags.skip_services || scaling.on {
        None
    } else {
        Some(services::ensure(false)?)
    };

    let mut cmd = crate::cargo();
    let line = if flags.micro {
        // The side-by-side harness is a bench target of the workspace too: it steps aside.
        cmd.args(["bench", "--workspace", "--all-features"])
            .args(&args)
            .env("CACHETTE_BENCH_MODE", flags.mode.as_str())
            .env("CACHETTE_BENCH_MICRO", "1");
        format!(
            "cargo bench --workspace --all-features {}    (CACHETTE_BENCH_MODE={}, CACHETTE_BENCH_MICRO=1)",
            args.join(" "),
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
            .args(&args)
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
        if scaling.on {
            cmd.env("CACHETTE_BENCH_SCALING", "1");
        } else {
            cmd.env_remove("CACHETTE_BENCH_SCALING");
        }
        match scaling.max {
            Some(max) => cmd.env("CACHETTE_BENCH_SCALING_MAX", max.to_string()),
            None => cmd.env_remove("CACHETTE_BENCH_SCALING_MAX"),
        };
        format!(
            "cargo bench -p cachette-bench --bench compare {}    (CACHETTE_BENCH_MODE={mode}{}{})",
            args.join(" "),
            if scaling.on {
                ", CACHETTE_BENCH_SCALING=1"
            } else {
                ""
            },
            scaling
                .max
                .map(|m| format!(", CACHETTE_BENCH_SCALING_MAX={m}"))
                .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scaling_flags_are_taken_out_of_cargo_bench_arguments() {
        let (s, rest) = take_scaling(&strings(&["--scaling", "--bench", "x"])).unwrap();
        assert_eq!(
            s,
            Scaling {
                on: true,
                max: None
            }
        );
        assert_eq!(rest, ["--bench", "x"]);
        let (s, rest) = take_scaling(&strings(&["--scaling-max", "10_000"])).unwrap();
        assert_eq!(
            s,
            Scaling {
                on: true,
                max: Some(10_000)
            }
        );
        assert!(rest.is_empty());
        let (s, _) = take_scaling(&strings(&["--scaling-max=1000"])).unwrap();
        assert_eq!(s.max, Some(1000));
        let (s, rest) = take_scaling(&strings(&["--", "--scaling"])).unwrap();
        assert_eq!(s, Scaling::default());
        assert_eq!(rest, ["--", "--scaling"]);
        assert!(take_scaling(&strings(&["--scaling-max"])).is_err());
        assert!(take_scaling(&strings(&["--scaling-max", "many"])).is_err());
    }
}
