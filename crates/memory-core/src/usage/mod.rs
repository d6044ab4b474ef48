//! Statistics per function: what its calls did.
//!
//! Every call of a memoized function counts once, whatever it asked of the store: a hit (its
//! output was loaded; the time saved is the duration stored with the entry), a miss (the
//! function ran), or a call that ran without the store (arguments that cannot be hashed, the
//! circuit breaker open). A call counts on counters of its own function and thread
//! ([`Tally`]: a load and a store each, no read-modify-write shared between threads) and, a
//! miss or one hit in 64, reads the clock; nothing is written on the hot path.
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
use thread_local::ThreadLocal;

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

/// The counters of one function in one memory: one set per thread that called it, which only
/// that thread writes (a count is a load and a store, no read-modify-write shared with other
/// threads); a snapshot sums them. The counters of a thread that ended stay, and a thread that
/// starts later may carry them on: sums are unchanged.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: ThreadLocal<Counts>,
    /// The same counts, through the `metrics` facade.
    #[cfg(feature = "metrics")]
    exported: Option<exported::Exported>,
}

/// The statistics through the [`metrics`] facade (feature `metrics`), registered with the
/// recorder installed when a function is first called:
///
/// - `cachette_calls_total` (counter; labels `function`, and `outcome`: `hit`, `miss` or
///   `uncached`);
/// - `cachette_compute_seconds` (histogram, label `function`): how long each computation took;
/// - `cachette_saved_seconds` (histogram, label `function`): for each hit, the stored duration
///   of the entry it loaded; its sum is the time saved.
#[cfg(feature = "metrics")]
mod exported {
    use metrics::{Counter, Histogram, counter, histogram};

    #[derive(Debug)]
    pub(super) struct Exported {
        pub(super) hits: Counter,
        pub(super) misses: Counter,
        pub(super) uncached: Counter,
        pub(super) compute: Histogram,
        pub(super) saved: Histogram,
    }

    impl Exported {
        pub(super) fn new(function: &str) -> Exported {
            let calls = |outcome: &'static str| counter!("cachette_calls_total", "function" => function.to_owned(), "outcome" => outcome);
            Exported {
                hits: calls("hit"),
                misses: calls("miss"),
                uncached: calls("uncached"),
                compute: histogram!("cachette_compute_seconds", "function" => function.to_owned()),
                saved: histogram!("cachette_saved_seconds", "function" => function.to_owned()),
            }
        }
    }
}

/// The counts of one function by one thread.
#[derive(Debug, Default)]
struct Counts {
    hits: AtomicU64,
    misses: AtomicU64,
    /// Calls that ran without the store (every call is a hit, a miss or one of these).
    uncached: AtomicU64,
    compute_nanos: AtomicU64,
    saved_nanos: AtomicU64,
}

/// Adds `n` to a counter only this thread writes, saturating (a planted entry may say it took
/// a hundred years); gives what it held.
fn bump(counter: &AtomicU64, n: u64) -> u64 {
    let before = counter.load(Ordering::Relaxed);
    counter.store(before.saturating_add(n), Ordering::Relaxed);
    before
}

/// A run of hits looks whether a write of the counts is due once every this many hits (a miss
/// always looks): a hit reads no clock.
const HITS_PER_CHECK: u64 = 64;

/// The nanoseconds a hit of an entry that took `stored_secs` saves: none unless it is finite
/// and positive, saturating (a float-to-integer cast, which costs a hit a few instructions where
/// a checked `Duration` costs dozens).
fn saved_nanos(stored_secs: f64) -> u64 {
    if stored_secs.is_finite() && stored_secs > 0.0 {
        (stored_secs * 1e9) as u64
    } else {
        0
    }
}

/// Nanoseconds of a duration, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Tally {
    /// The counters of the function `name`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn new(name: &str) -> Tally {
        Tally {
            #[cfg(feature = "metrics")]
            exported: Some(exported::Exported::new(name)),
            ..Tally::default()
        }
    }

    /// A hit of an entry that took `stored_secs` to compute (as its metadata says: a value of
    /// the store, so anything not finite and positive counts as nothing). Says whether the
    /// caller should see if a write of the counts is due ([`Usage::counted`]): on the first
    /// hit and every [`HITS_PER_CHECK`] hits after it, so that a run of hits reads no clock.
    pub(crate) fn hit(&self, stored_secs: f64) -> bool {
        let counts = self.counts.get_or_default();
        let before = bump(&counts.hits, 1);
        let saved = saved_nanos(stored_secs);
        if saved != 0 {
            bump(&counts.saved_nanos, saved);
        }
        #[cfg(feature = "metrics")]
        if let Some(exported) = &self.exported {
            exported.hits.increment(1);
            exported
                .saved
                .record(Duration::from_nanos(saved).as_secs_f64());
        }
        before.is_multiple_of(HITS_PER_CHECK)
    }

    /// A miss whose computation took `took`.
    pub(crate) fn miss(&self, took: Duration) {
        let counts = self.counts.get_or_default();
        bump(&counts.misses, 1);
        bump(&counts.compute_nanos, nanos(took));
        #[cfg(feature = "metrics")]
        if let Some(exported) = &self.exported {
            exported.misses.increment(1);
            exported.compute.record(took.as_secs_f64());
        }
    }

    /// A call that ran without the store and took `took`.
    pub(crate) fn uncached(&self, took: Duration) {
        let counts = self.counts.get_or_default();
        bump(&counts.uncached, 1);
        bump(&counts.compute_nanos, nanos(took));
        #[cfg(feature = "metrics")]
        if let Some(exported) = &self.exported {
            exported.uncached.increment(1);
            exported.compute.record(took.as_secs_f64());
        }
    }

    pub(crate) fn snapshot(&self) -> CallStats {
        let mut sum = [0u64; 5];
        for counts in self.counts.iter() {
            let values = [
                &counts.hits,
                &counts.misses,
                &counts.uncached,
                &counts.compute_nanos,
                &counts.saved_nanos,
            ]
            .map(|c| c.load(Ordering::Relaxed));
            for (total, value) in sum.iter_mut().zip(values) {
                *total = total.saturating_add(value);
            }
        }
        let [hits, misses, uncached, compute_nanos, saved_nanos] = sum;
        CallStats {
            calls: hits.saturating_add(misses).saturating_add(uncached),
            hits,
            misses,
            compute_time: Duration::from_nanos(compute_nanos),
            time_saved: Duration::from_nanos(saved_nanos),
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
                tally: Arc::new(Tally::new(id.name())),
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

#[cfg(all(test, feature = "metrics"))]
mod metrics_tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    use crate::Memory;

    /// Counter totals and histogram sums, by metric name and labels.
    #[derive(Debug, Default)]
    struct Seen(Mutex<BTreeMap<String, f64>>);

    struct Handle(Arc<Seen>, String);

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            *self.0.0.lock().unwrap().entry(self.1.clone()).or_default() += value as f64;
        }
        fn absolute(&self, value: u64) {
            self.0
                .0
                .lock()
                .unwrap()
                .insert(self.1.clone(), value as f64);
        }
    }

    impl HistogramFn for Handle {
        fn record(&self, value: f64) {
            *self.0.0.lock().unwrap().entry(self.1.clone()).or_default() += value;
        }
    }

    struct Collect(Arc<Seen>);

    fn name(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Collect {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Handle(self.0.clone(), name(key))))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Handle(self.0.clone(), name(key))))
        }
    }

    #[test]
    fn calls_are_exported_through_the_metrics_facade() {
        let seen = Arc::new(Seen::default());
        let recorder = Collect(seen.clone());
        let memory = Memory::from_url("memory://usage-metrics").unwrap();
        metrics::with_local_recorder(&recorder, || {
            let f = memory
                .cache(|x: u64| {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    x
                })
                .name("probe");
            f.eval(1);
            f.eval(1);
            f.eval(1);
        });
        let seen = seen.0.lock().unwrap();
        assert_eq!(
            seen.get("cachette_calls_total{function=probe,outcome=hit}"),
            Some(&2.0),
            "{seen:?}"
        );
        assert_eq!(
            seen.get("cachette_calls_total{function=probe,outcome=miss}"),
            Some(&1.0)
        );
        let computed = seen["cachette_compute_seconds{function=probe}"];
        let saved = seen["cachette_saved_seconds{function=probe}"];
        assert!(computed >= 0.002, "{seen:?}");
        assert!((saved - 2.0 * computed).abs() < 1e-6, "{seen:?}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{HITS_PER_CHECK, Tally};

    #[test]
    fn every_call_counts_once() {
        let tally = Tally::default();
        tally.hit(0.5);
        tally.hit(f64::NAN);
        tally.hit(f64::INFINITY);
        tally.hit(-1.0);
        tally.miss(Duration::from_millis(3));
        tally.uncached(Duration::from_millis(2));
        let stats = tally.snapshot();
        assert_eq!(
            (stats.calls, stats.hits, stats.misses),
            (6, 4, 1),
            "{stats:?}"
        );
        assert_eq!(stats.time_saved, Duration::from_millis(500));
        assert_eq!(stats.compute_time, Duration::from_millis(5));
    }

    /// A planted entry may say it took a hundred years: the time saved saturates, it never
    /// wraps to less than one hit saved.
    #[test]
    fn time_saved_saturates() {
        let tally = Tally::default();
        tally.hit(1e10);
        let once = tally.snapshot().time_saved;
        tally.hit(1e10);
        let twice = tally.snapshot().time_saved;
        assert!(twice >= once, "{twice:?} < {once:?}");
        assert_eq!(twice, Duration::from_nanos(u64::MAX));
        // Counts of several threads saturate as well.
        std::thread::scope(|scope| {
            scope.spawn(|| tally.hit(1e10));
        });
        assert_eq!(tally.snapshot().time_saved, Duration::from_nanos(u64::MAX));
    }

    /// The counts of every thread are summed, those of threads that ended included.
    #[test]
    fn counts_of_all_threads_are_summed() {
        let tally = Tally::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        tally.hit(0.001);
                    }
                    tally.miss(Duration::from_millis(1));
                });
            }
        });
        tally.hit(0.0);
        let stats = tally.snapshot();
        assert_eq!((stats.calls, stats.hits, stats.misses), (405, 401, 4));
        assert_eq!(stats.time_saved, Duration::from_millis(400));
        assert_eq!(stats.compute_time, Duration::from_millis(4));
    }

    #[test]
    fn a_run_of_hits_looks_for_a_due_write_once_every_so_many() {
        let tally = Tally::default();
        let looks: Vec<u64> = (0..3 * HITS_PER_CHECK).filter(|_| tally.hit(0.0)).collect();
        assert_eq!(looks, [0, HITS_PER_CHECK, 2 * HITS_PER_CHECK]);
    }
}
