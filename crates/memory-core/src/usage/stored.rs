//! The call statistics in the store.
//!
//! Each memory writes the counts of its functions for the current day (UTC) into one item of
//! its own, `cachette/_stats/<day>/<writer>`, replacing it at each write; a write is due at
//! most once per interval (`call_stats_interval_secs`), and one more when the last clone of the
//! memory goes. Counts made since the previous write go to the day of the write. Nobody else
//! writes a writer's item, so concurrent writers never lose each other's counts.
//!
//! A day is closed an hour after it ended. The first memory that writes after that sums the
//! day's items into `cachette/_stats/<day>/all`, written only where none is (the first sum
//! wins, and it is made from a listing taken before any item of the day was deleted), then
//! deletes the day's writer items. A reader takes a day's sum when there is one, and the
//! writers' items otherwise: the store holds one item per closed day, plus one per writer for
//! the open ones. A writer whose clock runs more than an hour late may have its last counts of
//! a day written after the day was summed: they are not counted.
//!
//! Items are read as untrusted input: at most [`MAX_ITEM_BYTES`] each, [`MAX_FUNCTIONS`]
//! functions each, [`MAX_ITEMS_READ`] items per reading, names cut and escaped. Statistics are
//! not signed: anyone who can write the store can change them (they never change a result).

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::CallStats;
use crate::error::Error;
use crate::key::{Key, STATS_DAY_ITEM, grammar};
use crate::memory::Shared;
use crate::reach::{Reach, finish};

/// The format of an item.
const FORMAT: &str = "cachette-stats/1";
/// The longest item read.
pub(crate) const MAX_ITEM_BYTES: u64 = 4 << 20;
/// The most functions an item may hold.
const MAX_FUNCTIONS: usize = 10_000;
/// The longest function name or folder kept from an item.
const MAX_NAME_LEN: usize = 300;
/// The most items one reading (or one day's sum) reads.
const MAX_ITEMS_READ: usize = 100_000;
/// How long after its end a day is closed.
const GRACE: Duration = Duration::from_secs(3600);
/// The most days one write sums.
const MAX_DAYS_PER_PASS: usize = 7;

/// One item: the counts of one writer (or of a whole day) for one day.
#[derive(Debug, Serialize, Deserialize)]
struct Item {
    format: String,
    /// The writer's name, or [`STATS_DAY_ITEM`].
    writer: String,
    /// When it was written.
    written: DateTime<Utc>,
    /// By function folder.
    functions: BTreeMap<String, Counts>,
}

/// The counts of one function in an item.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counts {
    name: String,
    calls: u64,
    hits: u64,
    misses: u64,
    compute_nanos: u64,
    saved_nanos: u64,
}

impl Counts {
    fn new(name: &str, stats: &CallStats) -> Counts {
        Counts {
            name: name.to_owned(),
            calls: stats.calls,
            hits: stats.hits,
            misses: stats.misses,
            compute_nanos: super::nanos(stats.compute_time),
            saved_nanos: super::nanos(stats.time_saved),
        }
    }

    fn stats(&self) -> CallStats {
        CallStats {
            calls: self.calls,
            hits: self.hits,
            misses: self.misses,
            compute_time: Duration::from_nanos(self.compute_nanos),
            time_saved: Duration::from_nanos(self.saved_nanos),
        }
    }
}

impl Item {
    fn encode(&self) -> Result<Bytes, Error> {
        rmp_serde::to_vec_named(self)
            .map(Bytes::from)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode call statistics: {e}")))
    }

    /// Decodes an item read from the store, within the bounds of the module.
    fn decode(bytes: &[u8]) -> Result<Item, String> {
        if bytes.len() as u64 > MAX_ITEM_BYTES {
            return Err(format!("longer than {MAX_ITEM_BYTES} bytes"));
        }
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        de.set_max_depth(4);
        let item = Item::deserialize(&mut de).map_err(|e| e.to_string())?;
        if item.format != FORMAT {
            return Err(format!(
                "format {:?}, not {FORMAT:?}",
                crate::report::untrusted_within(&item.format, 40)
            ));
        }
        if item.functions.len() > MAX_FUNCTIONS {
            return Err(format!("more than {MAX_FUNCTIONS} functions"));
        }
        Ok(item)
    }
}

/// What a memory wrote of its counts.
#[derive(Debug)]
pub(crate) struct Written {
    /// The name of this memory's items.
    writer: String,
    /// The day of the item being written.
    day: Option<NaiveDate>,
    /// The counts when that item began, by folder.
    base: BTreeMap<String, CallStats>,
    /// The counts last written, by folder.
    last: BTreeMap<String, CallStats>,
    /// The day closed days were last summed on.
    summed_on: Option<NaiveDate>,
    /// The last write failed (and said so).
    failing: bool,
}

impl Written {
    pub(crate) fn new() -> Written {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Written {
            writer: format!(
                "{}-{:x}-{:x}-{nanos:x}",
                crate::host::owner_tag(),
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            ),
            day: None,
            base: BTreeMap::new(),
            last: BTreeMap::new(),
            summed_on: None,
            failing: false,
        }
    }
}

fn day_name(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// Writes the counts of `shared`'s functions when they changed since the last write, then
/// sums the closed days not summed yet (once a day per memory). Writes nothing when nothing
/// changed; reads and deletes only items of call statistics.
/// It blocks the thread (as [`Reach::Blocking`]).
pub(crate) fn flush(shared: &Shared) -> Result<(), Error> {
    flush_at(shared, Utc::now())
}

/// [`flush`] at the time `now`.
fn flush_at(shared: &Shared, now: DateTime<Utc>) -> Result<(), Error> {
    let reach = Reach::Blocking;
    if !shared.usage.persists() {
        return Ok(());
    }
    let today = now.date_naive();
    // One write at a time: a background write and `flush_stats` take turns.
    let mut written = shared
        .usage
        .written
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let counts = shared.usage.snapshot();
    if written.day != Some(today) {
        written.base = written.last.clone();
        written.day = Some(today);
    }
    let changed = counts
        .iter()
        .any(|(folder, (_, stats))| written.last.get(folder) != Some(stats));
    if changed {
        let mut item = Item {
            format: FORMAT.to_owned(),
            writer: written.writer.clone(),
            written: now,
            functions: BTreeMap::new(),
        };
        for (folder, (name, stats)) in &counts {
            let base = written.base.get(folder).copied().unwrap_or_default();
            let today_counts = stats.since(&base);
            if today_counts.calls > 0 {
                item.functions
                    .insert(folder.clone(), Counts::new(name, &today_counts));
            }
        }
        let key = grammar::stats_item(&day_name(today), &written.writer)?;
        finish(
            shared
                .store
                .put_item(reach, &key, item.encode()?.into(), false),
        )?;
        written.last = counts
            .into_iter()
            .map(|(folder, (_, stats))| (folder, stats))
            .collect();
        // Only a memory that writes statistics sums closed days: one that only reads the
        // store (`cachette`, a worker that never calls) writes nothing.
        if written.summed_on != Some(today) {
            written.summed_on = Some(today);
            finish(sum_closed_days(shared, reach, now))?;
        }
    }
    Ok(())
}

/// [`flush`] on the thread a due write started: a failure warns once, until a write succeeds.
pub(crate) fn flush_in_background(shared: &Shared) {
    let outcome = flush(shared);
    let mut written = shared
        .usage
        .written
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match outcome {
        Ok(()) => written.failing = false,
        Err(e) if !written.failing => {
            written.failing = true;
            shared.reporter.warn(format!(
                "cannot write the call statistics to {}: {e}",
                shared.store.location()
            ));
        }
        Err(e) => tracing::debug!(target: "cachette", "cannot write the call statistics: {e}"),
    }
}

/// The items of call statistics, by day: the day's sum, if any, and the writers' items.
#[derive(Debug, Default)]
struct Day {
    sum: Option<Key>,
    writers: Vec<Key>,
}

/// Lists the items of call statistics, by day (at most [`MAX_ITEMS_READ`] items).
async fn days(shared: &Shared, reach: Reach) -> Result<(BTreeMap<NaiveDate, Day>, bool), Error> {
    let items = shared.store.items(reach, &grammar::stats_root()).await?;
    let truncated = items.len() > MAX_ITEMS_READ;
    let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    for item in items.into_iter().take(MAX_ITEMS_READ) {
        let Some((day, name)) = grammar::split_stats(&item.key) else {
            continue;
        };
        let is_sum = grammar::is_stats_day(name);
        let entry = days.entry(day).or_default();
        if is_sum {
            entry.sum = Some(item.key);
        } else {
            entry.writers.push(item.key);
        }
    }
    Ok((days, truncated))
}

/// Reads and decodes one item; `Ok(None)` when it is gone.
async fn read(shared: &Shared, reach: Reach, key: &Key) -> Result<Option<Item>, Error> {
    let Some(bytes) = shared.store.read_item(reach, key, MAX_ITEM_BYTES).await? else {
        return Ok(None);
    };
    Item::decode(&bytes)
        .map(Some)
        .map_err(|why| Error::InvalidArgument(format!("{key} is not usable: {why}")))
}

/// Sums of counts by function folder, with the function's name.
type Sums = BTreeMap<String, (String, CallStats)>;

/// Adds an item's counts to `into`, by folder (the first name given for a folder stays).
fn add_item(into: &mut Sums, item: Item) {
    for (folder, counts) in item.functions {
        let (name, stats) = into.entry(folder).or_default();
        if name.is_empty() {
            name.clone_from(&counts.name);
        }
        stats.add(&counts.stats());
    }
}

/// Sums each closed day that has writer items into its day item (unless one is there), then
/// deletes them; at most [`MAX_DAYS_PER_PASS`] days.
async fn sum_closed_days(shared: &Shared, reach: Reach, now: DateTime<Utc>) -> Result<(), Error> {
    let (days, _) = days(shared, reach).await?;
    let closed = days.into_iter().filter(|(day, items)| {
        let end = day
            .succ_opt()
            .and_then(|next| next.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        let grace = chrono::TimeDelta::from_std(GRACE).unwrap_or(chrono::TimeDelta::MAX);
        !items.writers.is_empty() && end.is_some_and(|end| now >= end + grace)
    });
    for (day, items) in closed.take(MAX_DAYS_PER_PASS) {
        if items.sum.is_none() {
            let mut functions = Sums::new();
            for key in &items.writers {
                match read(shared, reach, key).await {
                    Ok(Some(item)) => add_item(&mut functions, item),
                    Ok(None) => {}
                    Err(Error::InvalidArgument(why)) => {
                        tracing::debug!(target: "cachette", "call statistics left out: {why}");
                    }
                    Err(e) => return Err(e),
                }
            }
            let sum = Item {
                format: FORMAT.to_owned(),
                writer: STATS_DAY_ITEM.to_owned(),
                written: now,
                functions: functions
                    .into_iter()
                    .filter(|(_, (_, stats))| stats.calls > 0)
                    .map(|(folder, (name, stats))| (folder, Counts::new(&name, &stats)))
                    .collect(),
            };
            let key = grammar::stats_item(&day_name(day), STATS_DAY_ITEM)?;
            // The first sum of the day wins; a later one may have missed deleted items.
            shared
                .store
                .put_item(reach, &key, sum.encode()?.into(), true)
                .await?;
        }
        shared.store.delete_keys(reach, items.writers).await?;
    }
    Ok(())
}

/// The call statistics stored by every process that shares a store; see
/// [`Memory::stored_stats`](crate::Memory::stored_stats).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoredStats {
    /// By function, in folder order.
    pub functions: Vec<StoredFunctionStats>,
    /// The first day with statistics (UTC).
    pub since: Option<NaiveDate>,
    /// How many items were read.
    pub items_read: usize,
    /// Items that could not be used (damaged, too long, of another format), left out.
    pub unusable: usize,
    /// More items than one reading takes (100,000) were listed: the oldest were read.
    pub truncated: bool,
}

/// The stored call statistics of one function; see [`StoredStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoredFunctionStats {
    /// Its folder in the store.
    pub folder: String,
    /// Its exact name, as its writers gave it (escaped, cut to 300 characters).
    pub name: String,
    /// Its counts, summed over every writer and day.
    pub stats: CallStats,
}

/// Reads the stored call statistics. Reads only; writes and deletes nothing.
pub(crate) async fn read_all(shared: &Shared, reach: Reach) -> Result<StoredStats, Error> {
    let (days, truncated) = days(shared, reach).await?;
    let mut functions = Sums::new();
    let mut report = StoredStats {
        truncated,
        since: days.keys().next().copied(),
        ..StoredStats::default()
    };
    for day in days.into_values() {
        let keys = match day.sum {
            Some(sum) => vec![sum],
            None => day.writers,
        };
        for key in keys {
            match read(shared, reach, &key).await {
                Ok(Some(item)) => {
                    report.items_read += 1;
                    add_item(&mut functions, item);
                }
                Ok(None) => {}
                Err(Error::InvalidArgument(_)) => report.unusable += 1,
                Err(e) => return Err(e),
            }
        }
    }
    report.functions = functions
        .into_iter()
        .map(|(folder, (name, stats))| StoredFunctionStats {
            folder: crate::report::untrusted_within(&folder, MAX_NAME_LEN),
            name: crate::report::untrusted_within(&name, MAX_NAME_LEN),
            stats,
        })
        .collect();
    Ok(report)
}

/// Writes the counts when the last clone of a memory goes, unless the circuit breaker is open.
pub(crate) fn flush_at_drop(shared: &Shared) {
    if !shared.usage.persists() || shared.store.breaker().is_open() {
        return;
    }
    flush_in_background(shared);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Memory;
    use crate::backend::StoreBackendExt;

    fn memory(name: &str) -> Memory {
        Memory::builder()
            .url(format!("memory://usage-{name}"))
            .build()
            .unwrap()
    }

    fn stats_keys(memory: &Memory) -> Vec<String> {
        let backend = memory.backend().unwrap();
        let items = finish(backend.list(&grammar::stats_root())).unwrap();
        let mut keys: Vec<String> = items.into_iter().map(|i| i.key.to_string()).collect();
        keys.sort();
        keys
    }

    fn square(memory: &Memory, x: i64) -> i64 {
        memory.cache(|x: i64| x * x).name("square").eval(x)
    }

    #[test]
    fn closed_days_are_summed_once_and_their_writer_items_deleted() {
        let memory = memory("days");
        let shared = memory.shared().unwrap();
        // At noon of each day: a day is closed an hour after it ends, so times counted back
        // from now would leave the day before open in the first hour of a day.
        let noon = Utc::now()
            .date_naive()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc();
        let days_ago = |n: i64| noon - chrono::TimeDelta::days(n);
        // Two writers on a day three days ago, one two days ago.
        let other = Memory::builder()
            .url("memory://usage-days")
            .build()
            .unwrap();
        square(&memory, 1);
        square(&memory, 1);
        flush_at(shared, days_ago(3)).unwrap();
        square(&other, 2);
        flush_at(other.shared().unwrap(), days_ago(3)).unwrap();
        square(&memory, 3);
        // This write sums the day three days ago (closed), not two days ago (its own, open
        // for it when written).
        let mut written = shared.usage.written.lock().unwrap();
        written.summed_on = None;
        drop(written);
        flush_at(shared, days_ago(2)).unwrap();
        let keys = stats_keys(&memory);
        let day3 = day_name(days_ago(3).date_naive());
        let day2 = day_name(days_ago(2).date_naive());
        assert!(
            keys.contains(&format!("cachette/_stats/{day3}/all")),
            "{keys:?}"
        );
        assert_eq!(
            keys.iter().filter(|k| k.contains(&day3)).count(),
            1,
            "the writer items of a summed day are deleted: {keys:?}"
        );
        assert_eq!(keys.iter().filter(|k| k.contains(&day2)).count(), 1);
        let stored = finish(read_all(shared, Reach::Blocking)).unwrap();
        let total: u64 = stored.functions.iter().map(|f| f.stats.calls).sum();
        assert_eq!(total, 4, "{stored:?}");
        let hits: u64 = stored.functions.iter().map(|f| f.stats.hits).sum();
        assert_eq!(hits, 1);
        assert_eq!(stored.since, Some(days_ago(3).date_naive()));
    }

    #[test]
    fn a_sum_already_there_is_kept_and_leftovers_are_not_counted_twice() {
        let memory = memory("leftovers");
        let shared = memory.shared().unwrap();
        let old = Utc::now() - chrono::TimeDelta::days(5);
        square(&memory, 1);
        flush_at(shared, old).unwrap();
        let day = day_name(old.date_naive());
        // A sum written by another memory (of one call), and this memory's item of that day
        // left behind: readers take the sum only.
        let sum = Item {
            format: FORMAT.to_owned(),
            writer: STATS_DAY_ITEM.to_owned(),
            written: old,
            functions: BTreeMap::from([(
                "other-0000000000000000".to_owned(),
                Counts {
                    name: "other".into(),
                    calls: 1,
                    ..Counts::default()
                },
            )]),
        };
        let backend = memory.backend().unwrap();
        let key = grammar::stats_item(&day, STATS_DAY_ITEM).unwrap();
        finish(backend.put(&key, sum.encode().unwrap().into())).unwrap();
        let stored = finish(read_all(shared, Reach::Blocking)).unwrap();
        assert_eq!(stored.functions.len(), 1);
        assert_eq!(stored.functions[0].name, "other");
        // The next day's first write deletes the leftover, keeps the sum.
        square(&memory, 2);
        flush_at(shared, Utc::now()).unwrap();
        let keys = stats_keys(&memory);
        assert_eq!(
            keys.iter().filter(|k| k.contains(&day)).count(),
            1,
            "{keys:?}"
        );
        let stored = finish(read_all(shared, Reach::Blocking)).unwrap();
        let calls: u64 = stored.functions.iter().map(|f| f.stats.calls).sum();
        assert_eq!(calls, 2, "the sum's call and today's: {stored:?}");
    }

    #[test]
    fn hostile_items_are_left_out_not_trusted() {
        let memory = memory("hostile");
        let shared = memory.shared().unwrap();
        let backend = memory.backend().unwrap();
        let day = day_name(Utc::now().date_naive());
        let garbage = grammar::stats_item(&day, "garbage").unwrap();
        finish(backend.put(&garbage, vec![0xc1; 64].into())).unwrap();
        let huge = grammar::stats_item(&day, "huge").unwrap();
        let too_long = vec![0u8; usize::try_from(MAX_ITEM_BYTES).unwrap() + 10];
        finish(backend.put(&huge, too_long.into())).unwrap();
        let many = Item {
            format: FORMAT.to_owned(),
            writer: "many".into(),
            written: Utc::now(),
            functions: (0..=MAX_FUNCTIONS)
                .map(|i| (format!("f{i}"), Counts::default()))
                .collect(),
        };
        let many_key = grammar::stats_item(&day, "many").unwrap();
        finish(backend.put(&many_key, many.encode().unwrap().into())).unwrap();
        let saturating = Item {
            format: FORMAT.to_owned(),
            writer: "max".into(),
            written: Utc::now(),
            functions: BTreeMap::from([(
                "f".to_owned(),
                Counts {
                    name: "evil\u{1b}[31m".into(),
                    calls: u64::MAX,
                    hits: u64::MAX,
                    compute_nanos: u64::MAX,
                    ..Counts::default()
                },
            )]),
        };
        for name in ["max1", "max2"] {
            let key = grammar::stats_item(&day, name).unwrap();
            finish(backend.put(&key, saturating.encode().unwrap().into())).unwrap();
        }
        let stored = finish(read_all(shared, Reach::Blocking)).unwrap();
        assert_eq!(stored.unusable, 3, "{stored:?}");
        assert_eq!(stored.functions.len(), 1);
        assert_eq!(stored.functions[0].stats.calls, u64::MAX, "sums saturate");
        assert!(
            !stored.functions[0].name.contains('\u{1b}'),
            "names are escaped"
        );
    }

    #[test]
    fn a_memory_that_only_reads_writes_nothing() {
        let memory = memory("reader");
        let shared = memory.shared().unwrap();
        let old = Utc::now() - chrono::TimeDelta::days(4);
        let writer = Memory::builder()
            .url("memory://usage-reader")
            .build()
            .unwrap();
        square(&writer, 1);
        flush_at(writer.shared().unwrap(), old).unwrap();
        let before = stats_keys(&memory);
        finish(read_all(shared, Reach::Blocking)).unwrap();
        memory.flush_stats().unwrap();
        drop(memory);
        let reader = Memory::builder()
            .url("memory://usage-reader")
            .build()
            .unwrap();
        assert_eq!(stats_keys(&reader), before, "no call, no write, no sum");
    }
}
