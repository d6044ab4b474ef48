//! `cachette`: inspect, verify and prune a Cachette store from the shell.
//!
//! A store is named like in code: a folder path, or a URL (`file:///…`, `s3://bucket/prefix`,
//! `redis://host:port/db`) whose backend is enabled by this build's features, or a config file
//! (`cachette.toml`, as `Memory::from_config` reads, without the environment's overrides).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cachette::entry::{Entry, parse_metadata};
use cachette::{ByteSize, DynBackend, ItemInfo, Key, MemorizedResult, Memory, Prefix, SizeLimits};
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

fn backend(memory: &Memory) -> Result<&DynBackend> {
    memory.backend().context("the store is disabled")
}

/// Runs a backend operation to completion.
fn block<T: Send>(
    backend: &DynBackend,
    op: impl Future<Output = cachette::BackendResult<T>> + Send,
) -> Result<T> {
    let blocking = backend.capabilities().blocking_io;
    Ok(cachette::rt::block_on(blocking, op)??)
}

/// Whether a key names a stored call (`<function>/<32 hex digits>`).
fn is_entry(info: &ItemInfo) -> bool {
    let mut segments = info.key.segments();
    matches!(
        (segments.next(), segments.next(), segments.next()),
        (Some(_), Some(last), None) if last.len() == 32 && last.bytes().all(|b| b.is_ascii_hexdigit())
    )
}

fn list(backend: &DynBackend, prefix: &Prefix) -> Result<Vec<ItemInfo>> {
    let mut items = block(backend, backend.list(prefix))?;
    items.retain(is_entry);
    items.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(items)
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn inspect(location: &str, func: Option<&str>) -> Result<ExitCode> {
    let memory = open(location)?;
    let backend = backend(&memory)?;
    if let Some(func) = func {
        let items = list(backend, &Prefix::new(func)?)?;
        println!("{:<32}  {:>10}  last access", "args_id", "size");
        for item in &items {
            println!(
                "{:<32}  {:>10}  {}",
                item.key.file_name(),
                ByteSize(item.size).to_string(),
                when(item.last_access)
            );
        }
        println!("{} entries", items.len());
        return Ok(ExitCode::SUCCESS);
    }
    let mut by_func: BTreeMap<String, (usize, u64, DateTime<Utc>)> = BTreeMap::new();
    for item in list(backend, &Prefix::root())? {
        let func = item.key.segments().next().unwrap_or_default().to_owned();
        let slot = by_func
            .entry(func)
            .or_insert((0, 0, DateTime::<Utc>::MIN_UTC));
        slot.0 += 1;
        slot.1 += item.size;
        slot.2 = slot.2.max(item.last_access);
    }
    println!("store {}", backend.location());
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
    let backend = backend(&memory)?;
    let key = Key::new(format!("{}/{}", result.func(), result.args_id()))?;
    let Some(bytes) = block(backend, backend.get(&key))? else {
        bail!("no such entry in {}", result.location());
    };
    let meta = parse_metadata(&bytes, Some(bytes.len() as u64))?;
    println!("function  {}", meta.func);
    println!("args_id   {}", meta.args_id);
    println!("time      {}", when(meta.time));
    println!("duration  {:.3}s", meta.duration);
    println!("size      {}", ByteSize(bytes.len() as u64));
    println!("hasher    {}", meta.hasher);
    println!("codec     {}", meta.codec);
    for (name, value) in &meta.input_args {
        println!("  {name} = {value}");
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(location: &str, delete: bool) -> Result<ExitCode> {
    let memory = open(location)?;
    let backend = backend(&memory)?;
    let items = list(backend, &Prefix::root())?;
    let mut damaged = Vec::new();
    for item in &items {
        let key = item.key.clone();
        let Some(bytes) = block(backend, backend.get(&key))? else {
            continue; // Deleted meanwhile.
        };
        if let Err(e) = Entry::parse(bytes).and_then(|entry| entry.metadata()) {
            println!("damaged  {}: {e}", item.key);
            damaged.push(item.key.clone());
        }
    }
    if delete && !damaged.is_empty() {
        block(backend, backend.delete_many(&damaged))?;
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
            let backend = backend(&memory)?;
            let prefix = Prefix::new(func)?;
            let n = block(backend, backend.delete_prefix(&prefix))?;
            println!("cleared {func}: {n} items deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses "90", "90s", "15m", "12h", "7d" into a duration.
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
