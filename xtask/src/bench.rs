//! `cargo xtask bench`: the benchmarks, with the test servers up.
//!
//! For now this is `cargo bench --workspace --all-features`; a richer harness will
//! plug in here (e.g. choose bench targets or sample counts from `flags.mode`).

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::flags::BenchFlags;
use crate::services;

/// `cargo xtask bench [--quick|--full] [--skip-services] [args…]`.
pub(crate) fn run(flags: &BenchFlags) -> Result<ExitCode> {
    // Dropping the guard stops the servers if this run started them.
    let guard = if flags.skip_services {
        None
    } else {
        Some(services::ensure(false)?)
    };

    let mut cmd = crate::cargo();
    cmd.args(["bench", "--workspace", "--all-features"])
        .args(&flags.args)
        .env("CACHETTE_BENCH_MODE", flags.mode.as_str());
    if let Some(services) = &guard {
        cmd.envs(services.env().iter().map(|(k, v)| (k, v)));
    }
    eprintln!(
        "$ cargo bench --workspace --all-features {}    (CACHETTE_BENCH_MODE={})",
        flags.args.join(" "),
        flags.mode.as_str()
    );
    let status = cmd.status().context("running cargo bench")?;
    drop(guard);
    if status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("bench: `cargo bench` failed ({status})");
        Ok(ExitCode::FAILURE)
    }
}
