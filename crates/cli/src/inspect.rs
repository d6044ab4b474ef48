//! `cachette inspect` and `cachette show`: reads that change nothing.

use anyhow::{Context, Result};
use cachette::plugin::untrusted;
use cachette::{Error, MemorizedResult};
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use serde::Serialize;

use crate::fail::{Code, fail, not_found, usage};
use crate::human::{self, Align};
use crate::store::{self, Func, Store};

/// How `inspect` sorts its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum SortBy {
    /// By function name, then arguments' hash.
    #[default]
    Name,
    /// Largest first.
    Size,
    /// Most entries first (functions; entries sort by name).
    Entries,
    /// Most recently accessed first.
    Access,
}

#[derive(Serialize)]
struct Totals {
    functions: usize,
    entries: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct StoreReport<'a> {
    location: &'a str,
    backend: &'a str,
    functions: &'a [Func],
    total: Totals,
}

#[derive(Serialize)]
struct Entry {
    args_id: String,
    bytes: u64,
    last_access: DateTime<Utc>,
}

#[derive(Serialize)]
struct FunctionReport<'a> {
    location: &'a str,
    backend: &'a str,
    function: &'a Func,
    entries: Vec<Entry>,
}

pub(crate) fn inspect(
    location: &str,
    func: Option<&str>,
    sort: SortBy,
    json: bool,
) -> Result<String> {
    let store = store::open(location)?;
    let mut funcs = store::functions(&store)?;
    if let Some(query) = func {
        let func = store::resolve(&funcs, query, &store.location)?;
        return inspect_function(&store, func, sort, json);
    }
    match sort {
        SortBy::Name => {}
        SortBy::Size => funcs.sort_by_key(|f| std::cmp::Reverse(f.bytes)),
        SortBy::Entries => funcs.sort_by_key(|f| std::cmp::Reverse(f.entries)),
        SortBy::Access => funcs.sort_by_key(|f| std::cmp::Reverse(f.last_access)),
    }
    let total = Totals {
        functions: funcs.len(),
        entries: funcs.iter().map(|f| f.entries).sum(),
        bytes: funcs.iter().map(|f| f.bytes).fold(0, u64::saturating_add),
    };
    if json {
        return to_json(&StoreReport {
            location: &store.location,
            backend: &store.backend,
            functions: &funcs,
            total,
        });
    }
    let now = Utc::now();
    let mut out = format!("store {} ({})\n", store.location, store.backend);
    if !funcs.is_empty() {
        let rows = funcs
            .iter()
            .map(|f| {
                vec![
                    f.label().to_owned(),
                    f.entries.to_string(),
                    human::size(f.bytes),
                    human::when(f.last_access, now),
                ]
            })
            .collect();
        out.push_str(&human::table(
            &[
                ("FUNCTION", Align::Left),
                ("ENTRIES", Align::Right),
                ("SIZE", Align::Right),
                ("LAST ACCESS", Align::Left),
            ],
            rows,
        ));
        out.push('\n');
    }
    out.push_str(&format!(
        "{}, {}, {}",
        human::count(total.functions, "function", "functions"),
        human::count(total.entries, "entry", "entries"),
        human::size(total.bytes)
    ));
    Ok(out)
}

fn inspect_function(store: &Store, func: &Func, sort: SortBy, json: bool) -> Result<String> {
    let mut entries: Vec<Entry> = store
        .memory
        .entries(Some(&func.folder))
        .with_context(|| format!("cannot list {}", store.location))?
        .into_iter()
        .map(|e| Entry {
            args_id: e.args_id,
            bytes: e.size,
            last_access: e.last_access,
        })
        .collect();
    match sort {
        SortBy::Name | SortBy::Entries => {}
        SortBy::Size => entries.sort_by_key(|e| std::cmp::Reverse(e.bytes)),
        SortBy::Access => entries.sort_by_key(|e| std::cmp::Reverse(e.last_access)),
    }
    if json {
        return to_json(&FunctionReport {
            location: &store.location,
            backend: &store.backend,
            function: func,
            entries,
        });
    }
    let now = Utc::now();
    let mut out = format!(
        "function {} (folder {}) in {}\n",
        func.label(),
        func.folder,
        store.location
    );
    if !entries.is_empty() {
        let rows = entries
            .iter()
            .map(|e| {
                vec![
                    e.args_id.clone(),
                    human::size(e.bytes),
                    human::when(Some(e.last_access), now),
                ]
            })
            .collect();
        out.push_str(&human::table(
            &[
                ("ARGS ID", Align::Left),
                ("SIZE", Align::Right),
                ("LAST ACCESS", Align::Left),
            ],
            rows,
        ));
        out.push('\n');
    }
    out.push_str(&format!(
        "{}, {}",
        human::count(entries.len(), "entry", "entries"),
        human::size(entries.iter().map(|e| e.bytes).fold(0, u64::saturating_add))
    ));
    Ok(out)
}

#[derive(Serialize)]
struct Argument {
    name: String,
    value: String,
}

#[derive(Serialize)]
struct ShowReport {
    location: String,
    function: Option<String>,
    folder: String,
    args_id: String,
    time: DateTime<Utc>,
    duration_seconds: f64,
    bytes: u64,
    last_access: DateTime<Utc>,
    input_args: Vec<Argument>,
    hasher: String,
    codec: String,
    code: Option<String>,
    version: Option<String>,
    memorized_result: String,
}

/// What `show` is given: a printed `MemorizedResult(...)`, or a location, a function and an
/// arguments' hash.
pub(crate) fn show(
    first: &str,
    func: Option<&str>,
    args_id: Option<&str>,
    json: bool,
) -> Result<String> {
    let (location, func, args_id) = match (func, args_id) {
        (Some(func), Some(args_id)) => (first.to_owned(), func.to_owned(), args_id.to_owned()),
        (None, None) => {
            let result: MemorizedResult<()> = first.trim().parse().map_err(|e| {
                usage(format!(
                    "{e}: give a printed MemorizedResult(location=\"…\", func=\"…\", args_id=\"…\"), \
                     or a location, a function and an arguments' hash"
                ))
            })?;
            (
                result.location().to_owned(),
                result.func().to_owned(),
                result.args_id().to_owned(),
            )
        }
        _ => {
            return Err(usage(
                "give LOCATION FUNC ARGS_ID, or one MemorizedResult(...)",
            ));
        }
    };
    let store = store::open(&location)?;
    let funcs = store::functions(&store)?;
    let func = store::resolve(&funcs, &func, &store.location)?;
    let entries = store
        .memory
        .entries(Some(&func.folder))
        .with_context(|| format!("cannot list {}", store.location))?;
    let args_id = args_id.to_ascii_lowercase();
    let entry = match entries.iter().find(|e| e.args_id == args_id) {
        Some(e) => e,
        None => {
            let starting: Vec<_> = entries
                .iter()
                .filter(|e| args_id.len() >= 4 && e.args_id.starts_with(&args_id))
                .collect();
            match starting.as_slice() {
                [one] => *one,
                [] => {
                    return Err(not_found(format!(
                        "no entry {args_id} of `{}` in {}",
                        func.label(),
                        store.location
                    )));
                }
                many => {
                    return Err(not_found(format!(
                        "{args_id} starts {} entries of `{}`: give more digits",
                        many.len(),
                        func.label()
                    )));
                }
            }
        }
    };
    let meta = match store.memory.entry_metadata(&func.folder, &entry.args_id) {
        Ok(Some(meta)) => meta,
        Ok(None) => {
            return Err(not_found(format!(
                "the entry {} of `{}` is gone (deleted meanwhile)",
                entry.args_id,
                func.label()
            )));
        }
        Err(Error::Entry { source, .. }) => {
            return Err(fail(
                Code::Damaged,
                format!(
                    "the entry {} of `{}` is damaged: {source}",
                    entry.args_id,
                    func.label()
                ),
            ));
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot read the entry {}", entry.args_id))
            );
        }
    };
    let report = ShowReport {
        memorized_result: MemorizedResult::<()>::from_parts(
            store.location.clone(),
            func.folder.clone(),
            entry.args_id.clone(),
        )
        .to_string(),
        location: store.location.clone(),
        function: if meta.name.is_empty() {
            func.name.clone()
        } else {
            Some(meta.name.clone())
        },
        folder: func.folder.clone(),
        args_id: entry.args_id.clone(),
        time: meta.time,
        duration_seconds: meta.duration,
        bytes: entry.size,
        last_access: entry.last_access,
        input_args: meta
            .input_args
            .iter()
            .map(|(name, value)| Argument {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        hasher: meta.hasher.clone(),
        codec: meta.codec.clone(),
        code: meta.code.clone(),
        version: meta.version.clone(),
    };
    if json {
        return to_json(&report);
    }
    // What an entry holds is a stranger's text: escaped before it reaches the terminal.
    let now = Utc::now();
    let none = || "-".to_owned();
    let rows = vec![
        (
            "function",
            report.function.as_deref().map_or_else(none, untrusted),
        ),
        ("folder", report.folder.clone()),
        ("args id", report.args_id.clone()),
        (
            "computed",
            format!(
                "{} ({})",
                human::date_precise(report.time),
                human::age(report.time, now)
            ),
        ),
        ("duration", human::duration(report.duration_seconds)),
        ("size", human::size(report.bytes)),
        ("last access", human::when(Some(report.last_access), now)),
        ("hasher", untrusted(&report.hasher)),
        ("codec", untrusted(&report.codec)),
        ("code", report.code.as_deref().map_or_else(none, untrusted)),
        (
            "version",
            report.version.as_deref().map_or_else(none, untrusted),
        ),
        ("location", report.location.clone()),
    ];
    let mut out = human::table(
        &[("", Align::Left), ("", Align::Left)],
        rows.into_iter()
            .map(|(k, v)| vec![k.to_owned(), v])
            .collect(),
    );
    out.push_str("\ninput arguments:");
    if report.input_args.is_empty() {
        out.push_str(" none");
    }
    for arg in &report.input_args {
        out.push_str(&format!(
            "\n  {} = {}",
            untrusted(&arg.name),
            untrusted(&arg.value)
        ));
    }
    Ok(out)
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}
