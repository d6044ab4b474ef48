//! `cachette`: inspect, verify and prune a Cachette store from the shell.
//!
//! A store is named like in code: a folder path, or a URL (`file:///…`, `s3://bucket/prefix`,
//! `redis://host:port/db`) whose backend is enabled by this build's features, or a config file
//! (`cachette.toml`, as `Memory::from_config` reads, without the environment's overrides).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cachette::{ByteSize, EntryInfo, MemorizedResult, Memory, SizeLimits};
use chrono::{DateTime, TimeDelta, Utc};
use clap::{Parser, Subcommand};

/// Inspect, verify and prune a Cachette store.
#[derive(Debug, Parser)]
#[command(name = "cachette", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the memoized functions of a store: entries, size, last access.
    Inspect {
        /// The store: a folder, a URL or a config file (`*.toml`).
        location: String,
        /// List the entries of this function (its folder name) instead.
        #[arg(long)]
        func: Option<String>,
    },
    /// Prints the metadata of a stored call (duration, time, input arguments).
    Show {
        /// A printed `MemorizedResult(location="…", func="…", args_id="…")`.
        result: String,
    },
    /// Reads every entry and checks its checksums; reports damaged entries.
    Verify {
        /// The store: a folder, a URL or a config file (`*.toml`).
        location: String,
        /// Delete the damaged entries.
        #[arg(long)]
        delete: bool,
    },
    /// Deletes every stored result, or those of one function.
    Clear {
        /// The store: a folder, a URL or a config file (`*.toml`).
        location: String,
        /// Only this function (its folder name).
        #[arg(long)]
        func: Option<String>,
    },
    /// Deletes least recently accessed entries until the store is within the limits.
    ReduceSize {
        /// The store: a folder, a URL or a config file (`*.toml`).
        location: String,
        /// The most bytes to keep: "500M", "10G" (K = 1024) or a number of bytes.
        #[arg(long)]
        bytes_limit: Option<ByteSize>,
        /// The most entries to keep.
        #[arg(long)]
        items_limit: Option<usize>,
        /// Delete entries not accessed for this long: "30s", "15m", "12h", "7d".
        #[arg(long, value_parser = parse_age)]
        age_limit: Option<TimeDelta>,
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
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cachette: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Inspect { location, func } => inspect(&location, func.as_deref()),
        Command::Show { result } => show(&result),
        Command::Verify { location, delete } => verify(&location, delete),
        Command::Clear { location, func } => clear(&location, func.as_deref()),
        Command::ReduceSize {
            location,
            bytes_limit,
            items_limit,
            age_limit,
        } => {
            let limits = SizeLimits {
                bytes_limit,
                items_limit,
                age_limit,
            };
            if limits == SizeLimits::default() {
                bail!("give at least one of --bytes-limit, --items-limit, --age-limit");
            }
            let memory = open(&location)?;
            let report = memory.reduce_size(&limits)?;
            println!(
                "deleted {} entries ({}), kept {} entries ({})",
                report.deleted_items,
                ByteSize(report.deleted_bytes),
                report.kept_items,
                ByteSize(report.kept_bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The store a location names: a config file (a path ending in `.toml`) or a URL or folder.
fn open(location: &str) -> Result<Memory> {
    if location.ends_with(".toml") && std::path::Path::new(location).is_file() {
        return cachette::MemoryConfig::from_file(location)
            .and_then(|config| config.build())
            .with_context(|| format!("cannot open the store of {location}"));
    }
    Memory::from_url(location).with_context(|| format!("cannot open the store {location:?}"))
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn inspect(location: &str, func: Option<&str>) -> Result<ExitCode> {
    let memory = open(location)?;
    if let Some(func) = func {
        let items = memory.entries(Some(func))?;
        println!("{:<32}  {:>10}  last access", "args_id", "size");
        for item in &items {
            println!(
                "{:<32}  {:>10}  {}",
                item.args_id,
                ByteSize(item.size).to_string(),
                when(item.last_access)
            );
        }
        println!("{} entries", items.len());
        return Ok(ExitCode::SUCCESS);
    }
    let mut by_func: BTreeMap<String, (usize, u64, DateTime<Utc>)> = BTreeMap::new();
    for item in memory.entries(None)? {
        let slot = by_func
            .entry(item.func.clone())
            .or_insert((0, 0, DateTime::<Utc>::MIN_UTC));
        slot.0 += 1;
        slot.1 += item.size;
        slot.2 = slot.2.max(item.last_access);
    }
    println!("store {}", memory.location().unwrap_or(location));
    println!(
        "{:<50}  {:>8}  {:>10}  last access",
        "function", "entries", "size"
    );
    let (mut entries, mut bytes) = (0, 0);
    for (func, (n, size, last)) in &by_func {
        println!(
            "{func:<50}  {n:>8}  {:>10}  {}",
            ByteSize(*size).to_string(),
            when(*last)
        );
        entries += n;
        bytes += size;
    }
    println!(
        "{} functions, {entries} entries, {}",
        by_func.len(),
        ByteSize(bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn show(printed: &str) -> Result<ExitCode> {
    let result: MemorizedResult<()> = printed
        .trim()
        .parse()
        .context("expected MemorizedResult(location=\"…\", func=\"…\", args_id=\"…\")")?;
    let memory = open(result.location())?;
    let Some(meta) = memory.entry_metadata(result.func(), result.args_id())? else {
        bail!("no such entry in {}", result.location());
    };
    let size = memory
        .entries(Some(result.func()))?
        .into_iter()
        .find(|e| e.args_id == result.args_id())
        .map(|e| e.size);
    println!("function  {}", meta.func);
    println!("args_id   {}", meta.args_id);
    println!("time      {}", when(meta.time));
    println!("duration  {:.3}s", meta.duration);
    if let Some(size) = size {
        println!("size      {}", ByteSize(size));
    }
    println!("hasher    {}", meta.hasher);
    println!("codec     {}", meta.codec);
    for (name, value) in &meta.input_args {
        println!("  {name} = {value}");
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(location: &str, delete: bool) -> Result<ExitCode> {
    let memory = open(location)?;
    let items: Vec<EntryInfo> = memory.entries(None)?;
    let mut damaged = Vec::new();
    for item in &items {
        match memory.verify_entry(&item.func, &item.args_id) {
            Ok(_) => {}
            Err(e @ cachette::Error::Entry { .. }) => {
                println!("damaged  {}: {e}", item.key());
                damaged.push(item);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", item.key())),
        }
    }
    if delete && !damaged.is_empty() {
        for item in &damaged {
            memory.delete_entry(&item.func, &item.args_id)?;
        }
        println!("deleted {} damaged entries", damaged.len());
    }
    println!("{} entries checked, {} damaged", items.len(), damaged.len());
    Ok(if damaged.is_empty() || delete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn clear(location: &str, func: Option<&str>) -> Result<ExitCode> {
    let memory = open(location)?;
    match func {
        None => {
            memory.clear()?;
            println!("cleared {}", memory.location().unwrap_or(location));
        }
        Some(func) => {
            let n = memory.clear_function(func)?;
            println!("cleared {func}: {n} items deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_age(text: &str) -> Result<TimeDelta, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not an age like 30s, 15m, 12h or 7d"))?;
    match unit {
        "s" => Ok(TimeDelta::seconds(n)),
        "m" => Ok(TimeDelta::minutes(n)),
        "h" => Ok(TimeDelta::hours(n)),
        "d" => Ok(TimeDelta::days(n)),
        _ => Err(format!(
            "unknown unit {unit:?} in {text:?} (use s, m, h or d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("90"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_age("7d"), Ok(TimeDelta::days(7)));
        assert!(parse_age("-1d").is_err());
        assert!(parse_age("3w").is_err());
    }
}
