//! `cargo xtask fuzz`: the entry decoder's mutation fuzzer, for a bounded time.
//!
//! The fuzzer is the test `crates/memory-core/tests/fuzz_entries.rs`: run here in a release
//! build with a time budget and a seed from the clock (or the one given), it feeds as many
//! damaged, truncated, spliced and forged entries as the time allows.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::flags::FuzzFlags;

/// `cargo xtask fuzz [--secs N] [--seed S]`.
pub(crate) fn run(flags: &FuzzFlags) -> Result<ExitCode> {
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
