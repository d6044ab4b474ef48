//! Hand-written command-line parsing (no extra crates).

use anyhow::{Result, bail};

pub(crate) const USAGE: &str = "\
Usage: cargo xtask <command> [options]

Commands:
  services start     Install (if missing) and start Redis, a 3-node Redis Cluster and a
                     moto S3 server on free 127.0.0.1 ports; reuse them if already running.
                     Prints `export KEY=VALUE` lines:  eval \"$(cargo xtask services start)\"
                     Also writes target/cachette-services/env and .../pids.
  services stop      Stop them (SIGTERM, then SIGKILL) and remove their temp dirs.
  services status    Show whether they are running and answering (exit 1 if not).

  ci [options]       Run every check CI runs, in order:
                       services fmt clippy features tree test doc tour
                     --skip-services     do not start the test servers (quick local run)
                     --only <step,...>   run only these steps (repeatable)
                     --keep-going        run the remaining steps after a failure

  bench [options] [-- args...]
                     Cachette side by side with joblib, the `cached` crate and the raw
                     floors, in one run (crates/bench/benches/compare): starts the test
                     servers, creates target/bench-venv with joblib and numpy from PyPI when
                     missing, prints the table, and rewrites BENCHMARKS.md and
                     docs/bench/hit-latency.svg.
                     --quick             the default: a few minutes, fewer samples, the
                                         1 GiB workloads at 256 MiB (the table says so)
                     --full              every workload at full size, more samples
                                         (both set CACHETTE_BENCH_MODE=quick|full)
                     --only <id,...>     run only these workloads (repeatable); the report
                                         then goes to target/bench-partial/, and
                                         BENCHMARKS.md is left as it was
                     --no-joblib         leave joblib out (no virtual environment needed)
                     --micro             run the per-crate divan micro-benchmarks instead:
                                         `cargo bench --workspace --all-features` (with
                                         CACHETTE_BENCH_MICRO=1, which the side-by-side
                                         harness reads to step aside)
                     --skip-services     do not start the test servers (the Redis and S3
                                         workloads then say `not run`)
                     --scaling           the scaling table instead (1k to 1M tiny entries,
                                         both local-disk layouts; over ten minutes): rewrites
                                         the Scaling section of BENCHMARKS.md
                     --scaling-max <N>   with --scaling, stop at N entries (the report then
                                         goes to target/bench-partial/)
                     Other arguments (and everything after `--`) go to `cargo bench`.

  fuzz [options]      Fuzz the entry decoder for a bounded time with cargo-fuzz (libFuzzer,
                     coverage-guided, AddressSanitizer): each target of fuzz/fuzz_targets/
                     runs N seconds; installs cargo-fuzz if missing; needs no nightly
                     (RUSTC_BOOTSTRAP=1 is set for it). Targets: decode_entry (parse and
                     decode, allocation bound) and load_entry (through a Memory: a damaged
                     entry is a miss and the call gives the right value). Prints the
                     executions per target. The working corpus is fuzz/corpus/<target>/;
                     the committed one crates/memory-core/tests/fuzz-corpus/<target>/. A
                     crash (fuzz/artifacts/<target>/) is copied to
                     crates/memory-core/tests/fuzz-corpus/regressions/, which every
                     `cargo test` checks: it stays a regression test once fixed.
                     --secs N            seconds per target (default 60)
                     --target T          only this target (repeatable)
                     --seed S            libFuzzer's seed, to replay a run
                     --sanitizer S       address (default) or none
                     --cmin              then minimise the committed corpus of each target
                                         with what the run found (`cargo fuzz cmin`);
                                         with --secs 0, minimise only
                     --engine mutate     the hand-written mutation fuzzer instead
                                         (crates/memory-core/tests/fuzz_entries.rs, release
                                         build; failing inputs go to target/fuzz-failures/)

  help               This message.
";

/// A parsed command line.
#[derive(Debug)]
pub(crate) enum Command {
    Help,
    Services(ServicesCmd),
    Ci(CiFlags),
    Bench(BenchFlags),
    Fuzz(FuzzFlags),
}

/// `cargo xtask fuzz` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FuzzFlags {
    /// How long to fuzz (each target, with cargo-fuzz).
    pub(crate) secs: u64,
    /// The random seed, to replay a run.
    pub(crate) seed: Option<u64>,
    /// The fuzzer.
    pub(crate) engine: FuzzEngine,
    /// cargo-fuzz targets to run; empty means all.
    pub(crate) targets: Vec<String>,
    /// The sanitizer cargo-fuzz builds with.
    pub(crate) sanitizer: String,
    /// Minimise the committed corpus afterwards.
    pub(crate) cmin: bool,
}

impl Default for FuzzFlags {
    fn default() -> Self {
        FuzzFlags {
            secs: 60,
            seed: None,
            engine: FuzzEngine::CargoFuzz,
            targets: Vec::new(),
            sanitizer: "address".to_owned(),
            cmin: false,
        }
    }
}

/// Which fuzzer `cargo xtask fuzz` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FuzzEngine {
    /// cargo-fuzz (libFuzzer), coverage-guided.
    CargoFuzz,
    /// The hand-written mutation fuzzer of `fuzz_entries.rs`.
    Mutate,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum ServicesCmd {
    Start,
    Stop,
    Status,
}

#[derive(Debug, Default)]
pub(crate) struct CiFlags {
    pub(crate) skip_services: bool,
    pub(crate) keep_going: bool,
    /// Step names to run; empty means all.
    pub(crate) only: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum BenchMode {
    #[default]
    Default,
    Quick,
    Full,
}

impl BenchMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BenchMode::Default => "default",
            BenchMode::Quick => "quick",
            BenchMode::Full => "full",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct BenchFlags {
    pub(crate) mode: BenchMode,
    pub(crate) skip_services: bool,
    /// Run the divan micro-benchmarks of every crate instead of the side-by-side harness.
    pub(crate) micro: bool,
    /// Leave joblib out of the side-by-side harness.
    pub(crate) no_joblib: bool,
    /// Workload ids to run; empty means all.
    pub(crate) only: Vec<String>,
    /// Passed verbatim to `cargo bench`.
    pub(crate) args: Vec<String>,
}

pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Command> {
    let mut args = args.into_iter();
    let Some(cmd) = args.next() else {
        return Ok(Command::Help);
    };
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "services" => parse_services(&rest),
        "ci" => parse_ci(rest).map(Command::Ci),
        "bench" => parse_bench(rest).map(Command::Bench),
        "fuzz" => parse_fuzz(&rest).map(Command::Fuzz),
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn parse_services(rest: &[String]) -> Result<Command> {
    let sub = match rest {
        [s] if s == "start" => ServicesCmd::Start,
        [s] if s == "stop" => ServicesCmd::Stop,
        [s] if s == "status" => ServicesCmd::Status,
        [] => bail!("`services` needs a subcommand: start, stop or status"),
        _ => bail!(
            "unexpected arguments to `services`: {}\n(expected start, stop or status)",
            rest.join(" ")
        ),
    };
    Ok(Command::Services(sub))
}

fn parse_ci(rest: Vec<String>) -> Result<CiFlags> {
    let mut flags = CiFlags::default();
    let mut it = rest.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--skip-services" => flags.skip_services = true,
            "--keep-going" => flags.keep_going = true,
            "--only" => match it.next() {
                Some(v) => push_steps(&mut flags.only, &v)?,
                None => bail!("`--only` needs a step name"),
            },
            s if s.starts_with("--only=") => push_steps(&mut flags.only, &s["--only=".len()..])?,
            other => bail!("unknown option to `ci`: `{other}`\n\n{USAGE}"),
        }
    }
    Ok(flags)
}

fn push_steps(only: &mut Vec<String>, list: &str) -> Result<()> {
    for step in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !crate::ci::STEPS.contains(&step) {
            bail!(
                "unknown ci step `{step}` (steps: {})",
                crate::ci::STEPS.join(", ")
            );
        }
        only.push(step.to_owned());
    }
    Ok(())
}

fn parse_fuzz(rest: &[String]) -> Result<FuzzFlags> {
    let mut flags = FuzzFlags::default();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            match it.next() {
                Some(v) => Ok(v.clone()),
                None => bail!("`{name}` needs a value"),
            }
        };
        let number = |name: &str, v: String| -> Result<u64> {
            v.parse()
                .map_err(|_| anyhow::anyhow!("`{name} {v}`: not a number"))
        };
        match arg.as_str() {
            "--secs" => flags.secs = number("--secs", value("--secs")?)?,
            "--seed" => flags.seed = Some(number("--seed", value("--seed")?)?),
            "--target" => flags.targets.push(value("--target")?),
            "--sanitizer" => {
                let s = value("--sanitizer")?;
                if !["address", "none"].contains(&s.as_str()) {
                    bail!("`--sanitizer {s}`: address or none");
                }
                flags.sanitizer = s;
            }
            "--cmin" => flags.cmin = true,
            "--engine" => {
                flags.engine = match value("--engine")?.as_str() {
                    "cargo-fuzz" => FuzzEngine::CargoFuzz,
                    "mutate" => FuzzEngine::Mutate,
                    other => bail!("`--engine {other}`: cargo-fuzz or mutate"),
                }
            }
            other => bail!("unknown option `{other}` for fuzz\n\n{USAGE}"),
        }
    }
    if flags.engine == FuzzEngine::Mutate
        && (!flags.targets.is_empty() || flags.cmin || flags.sanitizer != "address")
    {
        bail!("`--target`, `--sanitizer` and `--cmin` are for the cargo-fuzz engine");
    }
    Ok(flags)
}

fn parse_bench(rest: Vec<String>) -> Result<BenchFlags> {
    let mut flags = BenchFlags::default();
    let mut it = rest.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" | "--full" => {
                let mode = if arg == "--quick" {
                    BenchMode::Quick
                } else {
                    BenchMode::Full
                };
                if flags.mode != BenchMode::Default && flags.mode != mode {
                    bail!("`--quick` and `--full` are exclusive");
                }
                flags.mode = mode;
            }
            "--skip-services" => flags.skip_services = true,
            "--micro" => flags.micro = true,
            "--no-joblib" => flags.no_joblib = true,
            "--only" => match it.next() {
                Some(v) => push_ids(&mut flags.only, &v),
                None => bail!("`--only` needs a workload id"),
            },
            s if s.starts_with("--only=") => push_ids(&mut flags.only, &s["--only=".len()..]),
            "--" => {
                flags.args.push(arg);
                flags.args.extend(it.by_ref());
            }
            _ => flags.args.push(arg),
        }
    }
    Ok(flags)
}

fn push_ids(only: &mut Vec<String>, list: &str) {
    only.extend(
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_commands() {
        assert!(matches!(p(&[]), Ok(Command::Help)));
        assert!(matches!(
            p(&["services", "start"]),
            Ok(Command::Services(ServicesCmd::Start))
        ));
        assert!(p(&["services"]).is_err());
        assert!(p(&["nope"]).is_err());
        let Ok(Command::Ci(ci)) = p(&["ci", "--skip-services", "--only", "fmt,clippy"]) else {
            panic!("ci flags")
        };
        assert!(ci.skip_services);
        assert_eq!(ci.only, ["fmt", "clippy"]);
        assert!(p(&["ci", "--only", "bogus"]).is_err());
        let Ok(Command::Fuzz(f)) = p(&["fuzz", "--secs", "5", "--seed", "7"]) else {
            panic!("fuzz flags")
        };
        assert_eq!((f.secs, f.seed), (5, Some(7)));
        assert_eq!(f.engine, FuzzEngine::CargoFuzz);
        assert!(matches!(p(&["fuzz"]), Ok(Command::Fuzz(f)) if f == FuzzFlags::default()));
        let Ok(Command::Fuzz(f)) = p(&[
            "fuzz",
            "--target",
            "decode_entry",
            "--sanitizer",
            "none",
            "--cmin",
        ]) else {
            panic!("fuzz flags")
        };
        assert_eq!(f.targets, ["decode_entry"]);
        assert_eq!(f.sanitizer, "none");
        assert!(f.cmin);
        let Ok(Command::Fuzz(f)) = p(&["fuzz", "--engine", "mutate"]) else {
            panic!("fuzz flags")
        };
        assert_eq!(f.engine, FuzzEngine::Mutate);
        assert!(p(&["fuzz", "--engine", "mutate", "--cmin"]).is_err());
        assert!(p(&["fuzz", "--engine", "afl"]).is_err());
        assert!(p(&["fuzz", "--sanitizer", "memory"]).is_err());
        assert!(p(&["fuzz", "--secs"]).is_err());
        assert!(p(&["fuzz", "--secs", "x"]).is_err());
        let Ok(Command::Bench(b)) = p(&["bench", "--quick", "--bench", "x", "--", "--full"]) else {
            panic!("bench flags")
        };
        assert_eq!(b.mode, BenchMode::Quick);
        assert_eq!(b.args, ["--bench", "x", "--", "--full"]);
        let Ok(Command::Bench(b)) =
            p(&["bench", "--full", "--only", "hit_int,s3_hit", "--no-joblib"])
        else {
            panic!("bench flags")
        };
        assert_eq!(b.mode, BenchMode::Full);
        assert_eq!(b.only, ["hit_int", "s3_hit"]);
        assert!(b.no_joblib && !b.micro);
        assert!(p(&["bench", "--quick", "--full"]).is_err());
        assert!(p(&["bench", "--only"]).is_err());
    }
}
