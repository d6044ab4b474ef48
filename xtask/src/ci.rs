//! `cargo xtask ci`: every check CI runs, in order, failing fast.

use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::flags::CiFlags;
use crate::services;

/// The steps, in the order they run.
pub(crate) const STEPS: &[&str] = &[
    "services", "fmt", "clippy", "features", "tree", "test", "doc", "tour",
];

/// The facade crate, whose features are checked one by one.
const FACADE_MANIFEST: &str = "crates/cachette/Cargo.toml";

/// The feature sets of the facade crate checked one by one (lib only, to keep it cheap): none,
/// each feature its manifest declares alone (a new backend's feature is checked without being
/// named here), and `full`.
fn feature_sets() -> Result<Vec<Vec<String>>> {
    let manifest = std::fs::read_to_string(crate::project_root().join(FACADE_MANIFEST))
        .with_context(|| format!("reading {FACADE_MANIFEST}"))?;
    let mut sets = vec![vec!["--no-default-features".to_owned()]];
    let mut in_features = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_features = line == "[features]";
            continue;
        }
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if in_features && !name.starts_with('#') && !matches!(name, "default" | "full") {
            sets.push(vec![
                "--no-default-features".to_owned(),
                "--features".to_owned(),
                name.to_owned(),
            ]);
        }
    }
    ensure!(sets.len() > 1, "no features found in {FACADE_MANIFEST}");
    sets.push(vec!["--features".to_owned(), "full".to_owned()]);
    Ok(sets)
}

/// Crates that must not be in the default build of `cachette` (no network stack).
/// Matched against `"{crate name} "`, so `redis ` means a crate name ending in `redis`.
const FORBIDDEN_IN_DEFAULT: &[&str] = &[
    "reqwest",
    "hyper",
    "object_store",
    "redis ",
    "rustls",
    "aws-",
];

const TOUR: &str = "crates/cachette/examples/tour.rs";

enum Outcome {
    Passed,
    Failed,
    Skipped(String),
}

struct Row {
    name: &'static str,
    outcome: Outcome,
    secs: f64,
}

struct Runner<'a> {
    flags: &'a CiFlags,
    rows: Vec<Row>,
    failed: bool,
    index: usize,
    total: usize,
}

impl Runner<'_> {
    fn wants(&self, name: &str) -> bool {
        self.flags.only.is_empty() || self.flags.only.iter().any(|s| s == name)
    }

    fn step(&mut self, name: &'static str, what: &str, f: impl FnOnce() -> Result<()>) {
        if self.failed && !self.flags.keep_going {
            self.skip(name, "an earlier step failed".into());
            return;
        }
        self.index += 1;
        eprintln!("\n==> ci [{}/{}] {name}: {what}", self.index, self.total);
        let started = Instant::now();
        let result = f();
        let secs = started.elapsed().as_secs_f64();
        let outcome = match result {
            Ok(()) => {
                eprintln!("==> ci [{name}] ok ({secs:.1}s)");
                Outcome::Passed
            }
            Err(err) => {
                eprintln!("==> ci [{name}] FAILED after {secs:.1}s: {err:#}");
                self.failed = true;
                Outcome::Failed
            }
        };
        self.rows.push(Row {
            name,
            outcome,
            secs,
        });
    }

    fn skip(&mut self, name: &'static str, reason: String) {
        eprintln!("\n==> ci {name}: skipped ({reason})");
        self.rows.push(Row {
            name,
            outcome: Outcome::Skipped(reason),
            secs: 0.0,
        });
    }
}

/// `cargo xtask ci`.
pub(crate) fn run(flags: &CiFlags) -> Result<ExitCode> {
    let started = Instant::now();
    let mut r = Runner {
        flags,
        rows: Vec::new(),
        failed: false,
        index: 0,
        total: 0,
    };
    // Services run when asked for, or when the tests (which need them) run.
    let want_services = r.wants("services") || r.wants("test");
    r.total = STEPS
        .iter()
        .filter(|s| match **s {
            "services" => want_services && !flags.skip_services,
            "tour" => r.wants("tour") && crate::project_root().join(TOUR).exists(),
            s => r.wants(s),
        })
        .count();

    report_free_disk();
    let mut guard: Option<services::Services> = None;
    let mut env: Vec<(String, String)> = Vec::new();
    if want_services {
        if flags.skip_services {
            r.skip(
                "services",
                "--skip-services: tests needing servers skip, or fail under CI=true".into(),
            );
        } else {
            r.step("services", "start Redis, Redis Cluster and moto S3", || {
                let services = services::ensure(false)?;
                env = services.env().to_vec();
                guard = Some(services);
                Ok(())
            });
        }
    }
    if r.wants("fmt") {
        r.step("fmt", "formatting", || {
            cargo(&["fmt", "--all", "--", "--check"], &[])
        });
    }
    if r.wants("clippy") {
        // `--all-targets` compiles every bench target too (the divan micro-benchmarks and the
        // side-by-side harness `crates/bench/benches/compare`) without running them.
        r.step("clippy", "lints, whole workspace, all features", || {
            cargo(
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ],
                &[],
            )
        });
    }
    if r.wants("features") {
        r.step(
            "features",
            "feature matrix of `cachette` (lib)",
            feature_matrix,
        );
    }
    if r.wants("tree") {
        r.step(
            "tree",
            "default `cachette` pulls no network stack",
            default_tree,
        );
    }
    if r.wants("test") {
        r.step("test", "tests and doc tests, all features", || {
            let mut test_env = env.clone();
            test_env.push(("RUST_BACKTRACE".into(), "1".into()));
            cargo(
                &["test", "--workspace", "--all-features", "--no-fail-fast"],
                &test_env,
            )
        });
    }
    if r.wants("doc") {
        r.step("doc", "rustdoc with -D warnings", || {
            cargo(
                &["doc", "--workspace", "--no-deps", "--all-features"],
                &[("RUSTDOCFLAGS".into(), "-D warnings".into())],
            )
        });
    }
    if r.wants("tour") {
        if crate::project_root().join(TOUR).exists() {
            r.step("tour", "the README's example", || {
                cargo(&["run", "-p", "cachette", "--example", "tour"], &env)
            });
        } else {
            r.skip("tour", format!("{TOUR} does not exist yet"));
        }
    }

    // Stops the servers if this run started them.
    drop(guard);

    eprintln!("\n==> ci summary ({:.1}s)", started.elapsed().as_secs_f64());
    let (mut passed, mut failed) = (0, 0);
    for row in &r.rows {
        let status = match &row.outcome {
            Outcome::Passed => {
                passed += 1;
                "ok".to_owned()
            }
            Outcome::Failed => {
                failed += 1;
                "FAILED".to_owned()
            }
            Outcome::Skipped(why) => format!("skipped ({why})"),
        };
        eprintln!("  {:<9} {:>7.1}s  {status}", row.name, row.secs);
    }
    println!("ci: {passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the free space of the disk that holds the workspace, so that a build that runs out of
/// it says so at the top of the log. Where `df` is missing, prints nothing.
fn report_free_disk() {
    let out = std::process::Command::new("df")
        .args(["-h", "--output=avail,target"])
        .arg(crate::project_root())
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = out
        && out.status.success()
        && let Some(line) = String::from_utf8_lossy(&out.stdout).lines().nth(1)
    {
        let mut fields = line.split_whitespace();
        if let (Some(avail), Some(mount)) = (fields.next(), fields.next()) {
            eprintln!("==> ci: {avail} free on {mount}");
        }
    }
}

/// Runs `cargo <args>` from the workspace root with extra environment variables.
fn cargo(args: &[&str], env: &[(String, String)]) -> Result<()> {
    let line = format!("cargo {}", args.join(" "));
    let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    if keys.is_empty() {
        eprintln!("$ {line}");
    } else {
        eprintln!("$ {line}    (with {})", keys.join(", "));
    }
    let mut cmd = crate::cargo();
    // A CI build is built once and thrown away: incremental state would only double the disk it
    // takes (4 GB of 14 GB for the tests) and the time spent writing it.
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        cmd.env("CARGO_INCREMENTAL", "0");
    }
    let status = cmd
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .with_context(|| format!("running `{line}`"))?;
    ensure!(status.success(), "`{line}` failed ({status})");
    Ok(())
}

fn feature_matrix() -> Result<()> {
    let mut failed = Vec::new();
    for set in feature_sets()? {
        let mut args = vec!["clippy", "-p", "cachette"];
        args.extend(set.iter().map(String::as_str));
        args.extend_from_slice(&["--", "-D", "warnings"]);
        if let Err(err) = cargo(&args, &[]) {
            eprintln!("    {err:#}");
            failed.push(set.join(" "));
        }
    }
    if !failed.is_empty() {
        bail!("clippy failed for: {}", failed.join("; "));
    }
    Ok(())
}

fn default_tree() -> Result<()> {
    let args = ["tree", "-p", "cachette", "-e", "normal", "--prefix", "none"];
    eprintln!("$ cargo {}", args.join(" "));
    let out = crate::cargo()
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo tree")?;
    ensure!(out.status.success(), "`cargo tree` failed ({})", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut offending: Vec<&str> = text
        .lines()
        .filter(|line| {
            let name = format!("{} ", line.split_whitespace().next().unwrap_or(""));
            FORBIDDEN_IN_DEFAULT.iter().any(|bad| name.contains(bad))
        })
        .collect();
    offending.sort_unstable();
    offending.dedup();
    if !offending.is_empty() {
        bail!(
            "the default build of `cachette` pulls a network stack:\n  {}",
            offending.join("\n  ")
        );
    }
    eprintln!(
        "    {} crates in the default tree, none of: {}",
        text.lines().count(),
        FORBIDDEN_IN_DEFAULT.join(", ")
    );
    Ok(())
}
