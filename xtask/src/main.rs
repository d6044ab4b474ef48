//! Developer tasks for Cachette, run as `cargo xtask <command>`.
//!
//! - `cargo xtask services start|stop|status` manages local test servers
//!   (Redis, a three-node Redis Cluster and a moto S3 server) on loopback ports;
//! - `cargo xtask ci` runs every check CI runs (CI calls it through `.ci/run`);
//! - `cargo xtask bench` runs the benchmarks with the test servers up;
//! - `cargo xtask fuzz` fuzzes the entry decoder for a bounded time.
//!
//! Run `cargo xtask help` for the options.

#![deny(unsafe_code)]

mod bench;
mod ci;
mod flags;
mod fuzz;
mod services;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    match flags::parse(std::env::args().skip(1))? {
        flags::Command::Help => {
            print!("{}", flags::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Services(cmd) => services::run(cmd),
        flags::Command::Ci(ci) => ci::run(&ci),
        flags::Command::Bench(bench) => bench::run(&bench),
        flags::Command::Fuzz(fuzz) => fuzz::run(&fuzz),
    }
}

/// The workspace root (the parent of `xtask/`).
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// A `cargo` command run from the workspace root, with the same cargo that runs xtask.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root());
    cmd
}
