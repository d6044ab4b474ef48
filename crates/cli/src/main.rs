//! `cachette`: inspect, verify and prune a Cachette store from the shell.
//!
//! A store is named like in code: a folder path, or a URL (`file:///…`, `s3://bucket/prefix`,
//! `redis://host:port/db`) whose backend is enabled by this build's features, or a config file
//! (`cachette.toml`, as `Memory::from_config` reads, without the environment's overrides).
//!
//! Reads (`inspect`, `show`, `stats`, `verify`, `explain`) create and change nothing (but for
//! the reader's registration in the lock file of a local store's index); `check`
//! writes one small item of its own under `cachette/_check/` and deletes it. Deletions (`clear`,
//! `reduce-size`, `verify --delete`) print what they will delete, stop there with `--dry-run`,
//! and ask first unless `--yes` is given. `--json` prints one JSON document instead of text.
//! The exit codes are listed in [`EXIT_CODES`]; `docs/cli.md` documents it all.

#![forbid(unsafe_code)]

mod check;
mod explain;
mod fail;
mod human;
mod inspect;
mod interact;
mod prune;
mod stats;
mod store;
mod verify;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::fail::{Code, code_of};
use crate::inspect::SortBy;
use crate::prune::{Careful, Limits};

/// What the exit codes mean (in `--help`).
const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   error: the store cannot be reached or read, an invalid configuration, a failed deletion
  2   not found: the location, the function or the entry does not exist (or is ambiguous)
  3   damaged entries: `verify` found some (and did not delete them); `show` of a damaged entry
  4   not confirmed: the deletion was declined, or stdin is not a terminal and --yes is missing
  5   read-only: `check` found the store readable but not writable
  64  usage: invalid arguments";

/// Inspect, verify and prune a Cachette store.
///
/// LOCATION is a folder, a URL (file://, s3://, redis://, as the library takes) or a config file
/// such as cachette.toml. Reads change nothing in the store; deletions show what they will
/// delete and ask first.
#[derive(Debug, Parser)]
#[command(name = "cachette", version, after_help = EXIT_CODES)]
struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true, display_order = 100)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the functions of a store (entries, size, last access), or the entries of one.
    Inspect {
        /// The store: a folder, a URL or a config file.
        location: String,
        /// List the entries of this function: `a::b::f`, `a.b.f` or its folder.
        #[arg(long, value_name = "FUNC")]
        func: Option<String>,
        /// Sort the rows.
        #[arg(long, value_enum, default_value_t)]
        sort: SortBy,
    },
    /// Print the metadata of one stored call: when, how long, size, input arguments, code.
    #[command(after_help = "Examples:\n  \
        cachette show /data/cache my_crate::load 3f2a\n  \
        cachette show 'MemorizedResult(location=\"/data/cache\", func=\"…\", args_id=\"…\")'")]
    Show {
        /// A printed `MemorizedResult(...)`, or the store (then FUNC and ARGS_ID follow).
        #[arg(value_name = "RESULT|LOCATION")]
        target: String,
        /// The function: `a::b::f`, `a.b.f` or its folder.
        #[arg(requires = "args_id")]
        func: Option<String>,
        /// The arguments' hash, or its first digits (at least 4) when they name one entry.
        args_id: Option<String>,
    },
    /// Read every entry as a load would (checksums, key, signature) and report damaged ones.
    Verify {
        /// The store: a folder, a URL or a config file.
        location: String,
        /// Only this function (repeat for several): `a::b::f`, `a.b.f` or its folder.
        #[arg(long, value_name = "FUNC")]
        func: Vec<String>,
        /// Delete the damaged entries (after printing them and asking).
        #[arg(long)]
        delete: bool,
        #[command(flatten)]
        careful: Careful,
    },
    /// Calls, hits, misses, compute time and time saved per function, as every process that
    /// shares the store recorded them.
    Stats {
        /// The store: a folder, a URL or a config file.
        location: String,
        /// Only this function: `a::b::f`, `a.b.f` or its folder.
        #[arg(long, value_name = "FUNC")]
        func: Option<String>,
        /// Sort the rows.
        #[arg(long, value_enum, default_value_t)]
        sort: stats::SortBy,
        /// Also draw the time saved and the size per function as an SVG picture in FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<std::path::PathBuf>,
    },
    /// Say why a call would miss: no stored result, the nearest entry and its differing
    /// arguments, or other code.
    #[command(after_help = "Examples:\n  \
        cachette explain /data/cache my_crate::load --arg path='\"a.csv\"' --arg rows=10\n  \
        cachette explain /data/cache my_crate.load --arg path=a.csv --arg rows=10 --json")]
    Explain {
        /// The store: a folder, a URL or a config file.
        location: String,
        /// The function: `a::b::f`, `a.b.f` or its folder.
        func: String,
        /// An argument's readable form, by name, as `show` prints it (repeat for each
        /// argument); a string may be given without its quotes.
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
    },
    /// Write, read back and delete one small item under cachette/_check/, and time each step.
    Check {
        /// The store: a folder, a URL or a config file.
        location: String,
    },
    /// Delete every stored result, or those of some functions.
    Clear {
        /// The store: a folder, a URL or a config file.
        location: String,
        /// Only this function (repeat for several): `a::b::f`, `a.b.f` or its folder.
        #[arg(long, value_name = "FUNC")]
        func: Vec<String>,
        #[command(flatten)]
        careful: Careful,
    },
    /// Delete the least recently accessed entries until the store is within the limits.
    ReduceSize {
        /// The store: a folder, a URL or a config file.
        location: String,
        #[command(flatten)]
        limits: Limits,
        #[command(flatten)]
        careful: Careful,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    cachette::link_backends();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS; // --help, --version
            }
            if std::env::args_os().any(|a| a == "--json") {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or("invalid arguments");
                print_error(Code::Usage, first.trim_start_matches("error: ").to_owned());
            }
            return Code::Usage.into();
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok((output, code)) => {
            if !output.is_empty() {
                human::say(&output);
            }
            code.map_or(ExitCode::SUCCESS, ExitCode::from)
        }
        Err(e) => {
            let code = code_of(&e);
            if json {
                print_error(code, format!("{e:#}"));
            }
            eprintln!("cachette: {}", printable_error(&format!("{e:#}")));
            code.into()
        }
    }
}

/// The most lines of an error printed, and the most characters of each.
const ERROR_LINES: usize = 20;
const ERROR_LINE_LEN: usize = 1000;

/// An error's text made safe for a terminal: it may quote a store or a server (an object
/// store's error body, say), so its control characters and the characters that reorder text
/// are escaped, line by line, and its length bounded.
fn printable_error(text: &str) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .take(ERROR_LINES)
        .map(|line| cachette::plugin::untrusted_within(line, ERROR_LINE_LEN))
        .collect();
    if text.lines().nth(ERROR_LINES).is_some() {
        lines.push("…".to_owned());
    }
    lines.join("\n")
}

/// The JSON document of an error, on stdout.
fn print_error(code: Code, message: String) {
    #[derive(Serialize)]
    struct ErrorReport {
        error: ErrorBody,
    }
    #[derive(Serialize)]
    struct ErrorBody {
        code: u8,
        kind: &'static str,
        message: String,
    }
    let report = ErrorReport {
        error: ErrorBody {
            code: code.exit_code(),
            kind: code.name(),
            message,
        },
    };
    if let Ok(text) = inspect::to_json(&report) {
        human::say(&text);
    }
}

fn run(cli: Cli) -> Result<(String, Option<Code>)> {
    let json = cli.json;
    let done = |text: String| Ok((text, None));
    match cli.command {
        Command::Inspect {
            location,
            func,
            sort,
        } => done(inspect::inspect(&location, func.as_deref(), sort, json)?),
        Command::Show {
            target,
            func,
            args_id,
        } => done(inspect::show(
            &target,
            func.as_deref(),
            args_id.as_deref(),
            json,
        )?),
        Command::Verify {
            location,
            func,
            delete,
            careful,
        } => {
            if !delete && (careful.dry_run || careful.yes) {
                return Err(fail::usage("--dry-run and --yes go with --delete"));
            }
            verify::verify(&location, &func, delete, careful, json)
        }
        Command::Stats {
            location,
            func,
            sort,
            svg,
        } => done(stats::stats(
            &location,
            func.as_deref(),
            sort,
            svg.as_deref(),
            json,
        )?),
        Command::Explain {
            location,
            func,
            args,
        } => done(explain::explain(&location, &func, &args, json)?),
        Command::Check { location } => check::check(&location, json),
        Command::Clear {
            location,
            func,
            careful,
        } => done(prune::clear(&location, &func, careful, json)?),
        Command::ReduceSize {
            location,
            limits,
            careful,
        } => done(prune::reduce_size(&location, limits, careful, json)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// An error quoting a server's answer went to the terminal as it was: an escape sequence in
    /// an object store's error body (a clipboard write, a screen clear) reached the terminal.
    #[test]
    fn errors_are_printed_escaped_and_bounded() {
        let hostile = "cannot list: server said \u{1b}]52;c;aGk=\u{7}\u{1b}[2J \u{202e}txt.exe";
        let shown = printable_error(hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(!shown.contains('\u{202e}'), "{shown:?}");
        assert!(shown.contains("\\u{1b}]52"), "{shown:?}");
        // Lines stay lines; a flood of them, or a line of megabytes, is cut.
        assert_eq!(printable_error("a\nb"), "a\nb");
        let flood = "x\n".repeat(1000);
        assert!(printable_error(&flood).lines().count() <= ERROR_LINES + 1);
        assert!(printable_error(&"y".repeat(1 << 20)).len() < 2 * ERROR_LINE_LEN);
    }
}
