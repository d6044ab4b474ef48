//! `cachette clear` and `cachette reduce-size`, and what every deleting command shares: print
//! the plan, stop on `--dry-run`, ask, then delete.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use cachette::{ByteSize, EntryInfo, SizeLimits};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::fail::usage;
use crate::human::{self, Align};
use crate::interact::{self, Progress};
use crate::store::{self, Func, Store};

/// The flags of every command that deletes.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub(crate) struct Careful {
    /// Print what would be deleted, and delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Delete without asking (needed when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

/// What a deleting command will delete, by function.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Plan {
    pub(crate) functions: Vec<Func>,
    pub(crate) entries: usize,
    pub(crate) bytes: u64,
}

impl Plan {
    /// The plan of deleting `entries`, with the names of `funcs`.
    pub(crate) fn of_entries<'a>(
        funcs: &[Func],
        entries: impl IntoIterator<Item = &'a EntryInfo>,
    ) -> Plan {
        let mut by_folder: BTreeMap<&str, Func> = BTreeMap::new();
        let mut plan = Plan::default();
        for e in entries {
            plan.entries += 1;
            plan.bytes = plan.bytes.saturating_add(e.size);
            let func = by_folder.entry(&e.func).or_insert_with(|| Func {
                name: funcs
                    .iter()
                    .find(|f| f.folder == e.func)
                    .and_then(|f| f.name.clone()),
                folder: e.func.clone(),
                entries: 0,
                bytes: 0,
                last_access: None,
            });
            func.entries += 1;
            func.bytes = func.bytes.saturating_add(e.size);
            func.last_access = func.last_access.max(Some(e.last_access));
        }
        plan.functions = by_folder.into_values().collect();
        plan.functions.sort_by(|a, b| a.label().cmp(b.label()));
        plan
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// `7 entries (34.8 MiB) of 2 functions`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{} ({}) of {}",
            human::count(self.entries, "entry", "entries"),
            human::size(self.bytes),
            human::count(self.functions.len(), "function", "functions")
        )
    }

    /// The plan as a table, one function a row.
    pub(crate) fn table(&self) -> String {
        let now = Utc::now();
        human::table(
            &[
                ("FUNCTION", Align::Left),
                ("ENTRIES", Align::Right),
                ("SIZE", Align::Right),
                ("LAST ACCESS", Align::Left),
            ],
            self.functions
                .iter()
                .map(|f| {
                    vec![
                        f.label().to_owned(),
                        f.entries.to_string(),
                        human::size(f.bytes),
                        human::when(f.last_access, now),
                    ]
                })
                .collect(),
        )
    }
}

/// What was deleted.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Deleted {
    pub(crate) entries: usize,
    pub(crate) bytes: u64,
}

/// Stops on `--dry-run` (`Ok(false)`), else asks (or takes `--yes`) before the deletion: an
/// error when it is not confirmed. `Ok(true)` to go ahead.
pub(crate) fn go_ahead(careful: Careful, question: &str, json: bool) -> Result<bool> {
    if careful.dry_run {
        if !json {
            human::say("dry run: nothing deleted");
        }
        return Ok(false);
    }
    interact::confirm(question, careful.yes)?;
    Ok(true)
}

#[derive(Serialize)]
struct ClearReport<'a> {
    location: &'a str,
    backend: &'a str,
    /// Every function of the store (`clear` without `--func`).
    all: bool,
    dry_run: bool,
    plan: &'a Plan,
    deleted: Option<Deleted>,
}

pub(crate) fn clear(
    location: &str,
    queries: &[String],
    careful: Careful,
    json: bool,
) -> Result<String> {
    let store = store::open(location)?;
    let funcs = store::functions(&store)?;
    let all = queries.is_empty();
    let mut selected: Vec<Func> = Vec::new();
    if all {
        selected.clone_from(&funcs);
    } else {
        for query in queries {
            let func = store::resolve(&funcs, query, &store.location)?;
            if !selected.iter().any(|f| f.folder == func.folder) {
                selected.push(func.clone());
            }
        }
    }
    let plan = Plan {
        entries: selected.iter().map(|f| f.entries).sum(),
        bytes: selected
            .iter()
            .map(|f| f.bytes)
            .fold(0, u64::saturating_add),
        functions: selected,
    };
    let report = |deleted| ClearReport {
        location: &store.location,
        backend: &store.backend,
        all,
        dry_run: careful.dry_run,
        plan: &plan,
        deleted,
    };
    if plan.is_empty() {
        return if json {
            crate::inspect::to_json(&report(None))
        } else {
            Ok(format!(
                "nothing to delete: {} holds no function",
                store.location
            ))
        };
    }
    if !json {
        human::say(&format!("will delete from {}:", store.location));
        human::say(&plan.table());
        human::say(&format!("total: {}", plan.summary()));
    }
    let question = format!("Delete {} from {}?", plan.summary(), store.location);
    if !go_ahead(careful, &question, json)? {
        return if json {
            crate::inspect::to_json(&report(None))
        } else {
            Ok(String::new())
        };
    }
    let progress = Progress::new(plan.entries as u64, "clearing", json);
    let cleared = interact::each_weighted(
        &plan.functions,
        &progress,
        |f| f.entries as u64,
        |f| {
            store
                .memory
                .clear_function(&f.folder)
                .with_context(|| format!("cannot clear `{}`", f.label()))
        },
    );
    progress.finish();
    cleared?;
    if all {
        // What was written meanwhile, and the leftovers of interrupted writers.
        store
            .memory
            .clear()
            .with_context(|| format!("cannot clear {}", store.location))?;
    }
    let deleted = Deleted {
        entries: plan.entries,
        bytes: plan.bytes,
    };
    if json {
        crate::inspect::to_json(&report(Some(deleted)))
    } else {
        Ok(format!("deleted {}", plan.summary()))
    }
}

/// `--age-limit`: a bare number of seconds, or a duration as `humantime` reads it: `90s`,
/// `15m`, `1h30m`, `1 day`, `7d`, `1w` (and `ms`, `min`, `hours`, `weeks`, `M` for months,
/// `y` for years).
pub(crate) fn parse_age(text: &str) -> Result<TimeDelta, String> {
    let t = text.trim();
    let std = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = t
            .parse()
            .map_err(|_| format!("{text:?} is too many seconds"))?;
        std::time::Duration::from_secs(seconds)
    } else {
        humantime::parse_duration(t).map_err(|e| {
            format!("{text:?} is not a duration like 90s, 15m, 1h30m, 1 day, 7d or 1w ({e})")
        })?
    };
    TimeDelta::from_std(std).map_err(|_| format!("{text:?} is too long a duration"))
}

/// The limits of `reduce-size`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub(crate) struct Limits {
    /// The most bytes to keep: "500M", "10G", "1.5GiB" (K = 1024) or a number of bytes.
    #[arg(long, value_name = "SIZE")]
    pub(crate) bytes_limit: Option<ByteSize>,
    /// The most entries to keep.
    #[arg(long, value_name = "N")]
    pub(crate) items_limit: Option<usize>,
    /// Delete entries not accessed for this long: "90s", "15m", "1h30m", "1 day", "7d", "1w".
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    pub(crate) age_limit: Option<TimeDelta>,
}

#[derive(Serialize)]
struct LimitsReport {
    bytes_limit: Option<u64>,
    items_limit: Option<usize>,
    age_limit_seconds: Option<i64>,
}

#[derive(Serialize)]
struct ReduceReport<'a> {
    location: &'a str,
    backend: &'a str,
    limits: LimitsReport,
    dry_run: bool,
    plan: &'a Plan,
    kept: Deleted,
    deleted: Option<Deleted>,
}

/// The entries `limits` delete, as the library's `reduce_size` chooses them: those last
/// accessed longer ago than the age limit, then the least recently accessed until at most the
/// item and byte limits remain. Also gives what is kept.
fn plan_reduction(mut entries: Vec<EntryInfo>, limits: &SizeLimits) -> (Vec<EntryInfo>, Deleted) {
    entries.sort_by(|a, b| {
        a.last_access
            .cmp(&b.last_access)
            .then_with(|| a.func.cmp(&b.func))
            .then_with(|| a.args_id.cmp(&b.args_id))
    });
    let mut kept_entries = entries.len();
    // Listed sizes are the store's word: summed in 128 bits, where they cannot overflow.
    let mut kept_bytes: u128 = entries.iter().map(|e| u128::from(e.size)).sum();
    let cutoff: Option<DateTime<Utc>> = limits.age_limit.map(|age| {
        Utc::now()
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    });
    let mut doomed = Vec::new();
    for entry in entries {
        let too_old = cutoff.is_some_and(|c| entry.last_access <= c);
        let too_many = limits.items_limit.is_some_and(|n| kept_entries > n);
        let too_big = limits
            .bytes_limit
            .is_some_and(|b| kept_bytes > u128::from(b.0));
        if too_old || too_many || too_big {
            kept_entries -= 1;
            kept_bytes -= u128::from(entry.size);
            doomed.push(entry);
        }
    }
    let kept = Deleted {
        entries: kept_entries,
        bytes: u64::try_from(kept_bytes).unwrap_or(u64::MAX),
    };
    (doomed, kept)
}

pub(crate) fn reduce_size(
    location: &str,
    limits: Limits,
    careful: Careful,
    json: bool,
) -> Result<String> {
    let given = SizeLimits {
        bytes_limit: limits.bytes_limit,
        items_limit: limits.items_limit,
        age_limit: limits.age_limit,
    };
    let store = store::open(location)?;
    // Without limits on the command line, those of the config file that names the store.
    let limits = if given == SizeLimits::default() {
        store.memory.options().size_limits().ok_or_else(|| {
            usage(
                "give at least one of --bytes-limit, --items-limit, --age-limit (or a config file that sets bytes_limit, items_limit or age_limit)",
            )
        })?
    } else {
        given
    };
    let funcs = store::functions(&store)?;
    let entries = list(&store, None)?;
    let (doomed, kept) = plan_reduction(entries, &limits);
    let plan = Plan::of_entries(&funcs, &doomed);
    let report = |deleted| ReduceReport {
        location: &store.location,
        backend: &store.backend,
        limits: LimitsReport {
            bytes_limit: limits.bytes_limit.map(|b| b.0),
            items_limit: limits.items_limit,
            age_limit_seconds: limits.age_limit.map(|a| a.num_seconds()),
        },
        dry_run: careful.dry_run,
        plan: &plan,
        kept,
        deleted,
    };
    let keeping = format!(
        "{} ({})",
        human::count(kept.entries, "entry", "entries"),
        human::size(kept.bytes)
    );
    if plan.is_empty() {
        return if json {
            crate::inspect::to_json(&report(None))
        } else {
            Ok(format!(
                "nothing to delete: {} is within the limits ({keeping})",
                store.location
            ))
        };
    }
    if !json {
        human::say(&format!("will delete from {}:", store.location));
        human::say(&plan.table());
        human::say(&format!("total: {}; keeping {keeping}", plan.summary()));
    }
    let question = format!("Delete {} from {}?", plan.summary(), store.location);
    if !go_ahead(careful, &question, json)? {
        return if json {
            crate::inspect::to_json(&report(None))
        } else {
            Ok(String::new())
        };
    }
    let progress = Progress::new(doomed.len() as u64, "deleting", json);
    let deleted = interact::each(&doomed, &progress, |e| {
        store
            .memory
            .delete_entry(&e.func, &e.args_id)
            .with_context(|| format!("cannot delete {}", e.key()))
    });
    progress.finish();
    deleted?;
    // No entry is over the limits any more: this only sweeps the leftovers of interrupted
    // writers and the compute-once claims nobody renewed.
    store
        .memory
        .reduce_size(&SizeLimits::default())
        .with_context(|| format!("cannot sweep {}", store.location))?;
    let deleted = Deleted {
        entries: plan.entries,
        bytes: plan.bytes,
    };
    if json {
        crate::inspect::to_json(&report(Some(deleted)))
    } else {
        Ok(format!("deleted {}; kept {keeping}", plan.summary()))
    }
}

/// The entries of one function's folder, or of the whole store.
pub(crate) fn list(store: &Store, folder: Option<&str>) -> Result<Vec<EntryInfo>> {
    store
        .memory
        .entries(folder)
        .with_context(|| format!("cannot list {}", store.location))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_every_form() {
        let minutes = |m| Ok(TimeDelta::minutes(m));
        assert_eq!(parse_age("90"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_age("90s"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_age("1h30m"), minutes(90));
        assert_eq!(parse_age("1 day"), Ok(TimeDelta::days(1)));
        assert_eq!(parse_age("7d"), Ok(TimeDelta::days(7)));
        assert_eq!(parse_age("1w"), Ok(TimeDelta::weeks(1)));
        assert_eq!(parse_age("3 weeks"), Ok(TimeDelta::weeks(3)));
        assert_eq!(parse_age(" 15m "), minutes(15));
        assert_eq!(parse_age("0"), Ok(TimeDelta::zero()));
        for bad in ["", "-1d", "3 fortnights", "d", "1.5.2h"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
