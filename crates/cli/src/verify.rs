//! `cachette verify`: read every entry as a load would, and report (or delete) damaged ones.

use anyhow::{Context, Result};
use cachette::{EntryInfo, Error};
use serde::Serialize;

use crate::fail::Code;
use crate::human::{self, Align};
use crate::interact::{self, Progress};
use crate::prune::{self, Careful, Deleted, Plan};
use crate::store::{self, Func};

/// What reading an entry found.
enum Outcome {
    Intact,
    /// Deleted between the listing and the read.
    Gone,
    Damaged(String),
}

#[derive(Serialize)]
struct Damaged {
    function: Option<String>,
    folder: String,
    args_id: String,
    bytes: u64,
    error: String,
}

#[derive(Serialize)]
struct VerifyReport<'a> {
    location: &'a str,
    backend: &'a str,
    checked: usize,
    bytes: u64,
    intact: usize,
    gone: usize,
    damaged: Vec<Damaged>,
    /// Whether `--delete` was given.
    delete: bool,
    dry_run: bool,
    deleted: Option<Deleted>,
}

pub(crate) fn verify(
    location: &str,
    queries: &[String],
    delete: bool,
    careful: Careful,
    json: bool,
) -> Result<(String, Option<Code>)> {
    let store = store::open(location)?;
    let funcs = store::functions(&store)?;
    let entries: Vec<EntryInfo> = if queries.is_empty() {
        prune::list(&store, None)?
    } else {
        let mut folders: Vec<&Func> = Vec::new();
        for query in queries {
            let func = store::resolve(&funcs, query, &store.location)?;
            if !folders.iter().any(|f| f.folder == func.folder) {
                folders.push(func);
            }
        }
        let mut entries = Vec::new();
        for func in folders {
            entries.extend(prune::list(&store, Some(&func.folder))?);
        }
        entries
    };
    let progress = Progress::new(entries.len() as u64, "verifying", json);
    let outcomes = interact::each(&entries, &progress, |e| {
        match store.memory.verify_entry(&e.func, &e.args_id) {
            Ok(true) => Ok(Outcome::Intact),
            Ok(false) => Ok(Outcome::Gone),
            Err(Error::Entry { source, .. }) => Ok(Outcome::Damaged(source.to_string())),
            Err(e) => Err(anyhow::Error::new(e)),
        }
        .with_context(|| format!("cannot read {}", e.key()))
    });
    progress.finish();
    let outcomes = outcomes?;
    let name_of = |folder: &str| {
        funcs
            .iter()
            .find(|f| f.folder == folder)
            .and_then(|f| f.name.clone())
    };
    let mut damaged_entries = Vec::new();
    let mut damaged = Vec::new();
    let (mut intact, mut gone) = (0, 0);
    for (entry, outcome) in entries.iter().zip(outcomes) {
        match outcome {
            Outcome::Intact => intact += 1,
            Outcome::Gone => gone += 1,
            Outcome::Damaged(error) => {
                damaged.push(Damaged {
                    function: name_of(&entry.func),
                    folder: entry.func.clone(),
                    args_id: entry.args_id.clone(),
                    bytes: entry.size,
                    error,
                });
                damaged_entries.push(entry);
            }
        }
    }
    let mut report = VerifyReport {
        location: &store.location,
        backend: &store.backend,
        checked: entries.len(),
        bytes: entries.iter().map(|e| e.size).fold(0, u64::saturating_add),
        intact,
        gone,
        damaged,
        delete,
        dry_run: delete && careful.dry_run,
        deleted: None,
    };
    let damaged_bytes = report
        .damaged
        .iter()
        .map(|d| d.bytes)
        .fold(0, u64::saturating_add);
    let mut text = format!(
        "checked {} ({}) in {}: ",
        human::count(report.checked, "entry", "entries"),
        human::size(report.bytes),
        store.location
    );
    if report.damaged.is_empty() {
        text.push_str("all intact");
    } else {
        text.push_str(&format!(
            "{} damaged ({})",
            report.damaged.len(),
            human::size(damaged_bytes)
        ));
    }
    if gone > 0 {
        text.push_str(&format!(", {gone} deleted meanwhile"));
    }
    if !json && !report.damaged.is_empty() {
        human::say(&human::table(
            &[
                ("DAMAGED", Align::Left),
                ("ARGS ID", Align::Left),
                ("SIZE", Align::Right),
                ("PROBLEM", Align::Left),
            ],
            report
                .damaged
                .iter()
                .map(|d| {
                    vec![
                        d.function.clone().unwrap_or_else(|| d.folder.clone()),
                        d.args_id.clone(),
                        human::size(d.bytes),
                        d.error.clone(),
                    ]
                })
                .collect(),
        ));
    }
    if report.damaged.is_empty() || !delete {
        let code = if report.damaged.is_empty() {
            None
        } else {
            Some(Code::Damaged)
        };
        return finish(&report, text, json, code);
    }
    let plan = Plan::of_entries(&funcs, damaged_entries.iter().copied());
    if !json {
        human::say(&text);
        human::say(&format!("will delete {}", plan.summary()));
    }
    let question = format!("Delete {} damaged from {}?", plan.summary(), store.location);
    if !prune::go_ahead(careful, &question, json)? {
        return finish(&report, String::new(), json, Some(Code::Damaged));
    }
    let progress = Progress::new(damaged_entries.len() as u64, "deleting", json);
    let deleted = interact::each(&damaged_entries, &progress, |e| {
        store
            .memory
            .delete_entry(&e.func, &e.args_id)
            .with_context(|| format!("cannot delete {}", e.key()))
    });
    progress.finish();
    deleted?;
    report.deleted = Some(Deleted {
        entries: plan.entries,
        bytes: plan.bytes,
    });
    finish(
        &report,
        format!("deleted {} damaged", plan.summary()),
        json,
        None,
    )
}

fn finish(
    report: &VerifyReport<'_>,
    text: String,
    json: bool,
    code: Option<Code>,
) -> Result<(String, Option<Code>)> {
    let out = if json {
        crate::inspect::to_json(report)?
    } else {
        text
    };
    Ok((out, code))
}
