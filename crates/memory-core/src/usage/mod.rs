//! Statistics per function: what its calls did.
//!
//! Every call of a memoized function counts once, whatever it asked of the store: a hit (its
//! output was loaded; the time saved is the duration stored with the entry), a miss (the
//! function ran), or a call that ran without the store (arguments that cannot be hashed, the
//! circuit breaker open). A call counts with three atomic additions on counters of its own
//! function ([`Tally`]); nothing is written on the hot path.
//!
//! The counts are persisted in the store ([`stored`]), so that `cachette stats` shows them
//! across processes and machines: at most once per interval, off the caller's thread, each
//! memory writes one item of the counts of all its functions for the day, and the first memory
//! to write after a day has closed sums that day's items into one.

pub(crate) mod stored;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::func::FuncId;
use crate::memory::Shared;

pub use stored::{StoredFunctionStats, StoredStats};

/// What the calls of one function did: see [`MemorizedFunc::stats`](crate::MemorizedFunc::stats)
/// and [`Memory::call_stats`](crate::Memory::call_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallStats {
    /// Every call: hits, misses, and calls that ran without the store.
    pub calls: u64,
    /// Calls that loaded their output from the store.
    pub hits: u64,
    /// Calls that ran the function and stored (or tried to store) its output.
    pub misses: u64,
    /// The time spent running the function, misses and calls without the store alike.
    pub compute_time: Duration,
    /// The time the hits saved: the sum of the durations stored with the entries they loaded.
    pub time_saved: Duration,
}

impl CallStats {
    /// The share of calls that were hits; `None` before any call.
    pub fn hit_ratio(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.hits as f64 / self.calls as f64)
    }

    /// Adds `other`'s counts to these, saturating.
    pub fn add(&mut self, other: &CallStats) {
        self.calls = self.calls.saturating_add(other.calls);
        self.hits = self.hits.saturating_add(other.hits);
        self.misses = self.misses.saturating_add(other.misses);
        self.compute_time = self.compute_time.saturating_add(other.compute_time);
        self.time_saved = self.time_saved.saturating_add(other.time_saved);
    }

    /// These counts less `earlier`'s (counts only grow), saturating at zero.
    pub(crate) fn since(&self, earlier: &CallStats) -> CallStats {
        CallStats {
            calls: self.calls.saturating_sub(earlier.calls),
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            compute_time: self.compute_time.saturating_sub(earlier.compute_time),
            time_saved: self.time_saved.saturating_sub(earlier.time_saved),
        }
    }
}

impl fmt::Display for CallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: u64, one: &'static str, many: &'static str| if n == 1 { one } else { many };
        write!(
            f,
            "{} {}: {} {}, {} {}; computing {:.3}s, saved {:.3}s",
            self.calls,
            plural(self.calls, "call", "calls"),
            self.hits,
            plural(self.hits, "hit", "hits"),
            self.misses,
            plural(self.misses, "miss", "misses"),
            self.compute_time.as_secs_f64(),
            self.time_saved.as_secs_f64(),
        )
    }
}

/// The counters of one function in one memory.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    calls: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    compute_nanos: AtomicU64,
    saved_nanos: AtomicU64,
}

/// Nanoseconds of a duration, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Tally {
    /// A hit of an entry that took `stored_secs` to compute (as its metadata says: a value of
    /// the store, so anything not finite and positive counts as nothing).
    pub(crate) fn hit(&self, stored_secs: f64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.hits.fetch_add(1, Ordering::Relaxed);
        let saved = Duration::try_from_secs_f64(stored_secs).unwrap_or(Duration::ZERO);
        self.saved_nanos.fetch_add(nanos(saved), Ordering::Relaxed);
    }

    /// A miss whose computation took `took`.
    pub(crate) fn miss(&self, took: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.compute_nanos.fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// A call that ran without the store and took `took`.
    pub(crate) fn uncached(&self, took: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.compute_nanos.fetch_add(nanos(took), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CallStats {
        CallStats {
            calls: self.calls.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            compute_time: Duration::from_nanos(self.compute_nanos.load(Ordering::Relaxed)),
            time_saved: Duration::from_nanos(self.saved_nanos.load(Ordering::Relaxed)),
        }
    }
}

/// One function's counters in a memory, with its exact name.
#[derive(Debug)]
struct Counted {
    name: String,
    tally: Arc<Tally>,
}

/// The call statistics of a memory: the counters of its functions, and their persistence.
#[derive(Debug)]
pub(crate) struct Usage {
    /// By function folder.
    functions: Mutex<BTreeMap<String, Counted>>,
    /// How often the counts are written to the store; `None`: never.
    interval: Option<Duration>,
    /// When this memory was built: the origin of `next_flush`.
    epoch: Instant,
    /// Nanoseconds after `epoch` when a write of the counts is next due.
    next_flush: AtomicU64,
    /// A write of the counts is under way.
    flushing: AtomicBool,
    /// What was written, and where.
    pub(crate) written: Mutex<stored::Written>,
}

impl Usage {
    pub(crate) fn new(interval: Option<Duration>) -> Usage {
        let first = interval.map_or(u64::MAX, nanos);
        Usage {
            functions: Mutex::new(BTreeMap::new()),
            interval,
            epoch: Instant::now(),
            next_flush: AtomicU64::new(first),
            flushing: AtomicBool::new(false),
            written: Mutex::new(stored::Written::new()),
        }
    }

    /// The counters of the function `id`, made on its first call.
    pub(crate) fn tally(&self, id: &FuncId) -> Arc<Tally> {
        let mut functions = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let counted = functions
            .entry(id.folder().to_owned())
            .or_insert_with(|| Counted {
                name: id.name().to_owned(),
                tally: Arc::default(),
            });
        counted.tally.clone()
    }

    /// The counts of every function called so far, by exact name.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, (String, CallStats)> {
        let functions = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        functions
            .iter()
            .map(|(folder, c)| (folder.clone(), (c.name.clone(), c.tally.snapshot())))
            .collect()
    }

    /// The counts of every function, summed.
    pub(crate) fn total(&self) -> CallStats {
        let functions = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut total = CallStats::default();
        for counted in functions.values() {
            total.add(&counted.tally.snapshot());
        }
        total
    }

    /// After a call was counted: starts a write of the counts on a thread of its own when one
    /// is due (one load and one comparison when none is).
    pub(crate) fn counted(&self, shared: &Option<Arc<Shared>>) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = nanos(self.epoch.elapsed());
        if now < self.next_flush.load(Ordering::Relaxed) {
            return;
        }
        if self.flushing.swap(true, Ordering::Acquire) {
            return;
        }
        self.next_flush
            .store(now.saturating_add(nanos(interval)), Ordering::Relaxed);
        let Some(shared) = shared.clone() else {
            self.flushing.store(false, Ordering::Release);
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("cachette-stats".into())
            .spawn(move || {
                stored::flush_in_background(&shared);
                shared.usage.flushing.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.flushing.store(false, Ordering::Release);
        }
    }

    /// Whether the counts are written to the store.
    pub(crate) fn persists(&self) -> bool {
        self.interval.is_some()
    }
}
