//! Counting what a backend does: [`Stats`], read through a [`StatsHandle`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

use crate::backend::{
    BackendResult, Blob, Capabilities, ClaimAttempt, DynBackend, GetOptions, GetPayload, GetResult,
    ItemInfo, Layer, PutMode, PutOptions, PutOutcome, StoreBackend,
};
use crate::error::BackendError;
use crate::key::{Key, Prefix};
use crate::stripe::Striped;

/// The name a read is counted and traced under.
fn read_op(options: &GetOptions) -> &'static str {
    match (&options.range, options.local_file) {
        (Some(_), _) => "get_range",
        (None, true) => "get_file",
        (None, false) => "get",
    }
}

/// The name a write is counted and traced under.
fn put_op(options: &PutOptions) -> &'static str {
    match options.mode {
        PutMode::Create => "put_if_absent",
        _ => "put",
    }
}

/// The tracing target of the per-operation events.
const TARGET: &str = "cachette::stats";

/// Counts a backend's operations, hits, misses, bytes and latency, and emits one tracing event
/// per operation (target `cachette::stats`, level debug).
///
/// What is counted:
///
/// - reads (whole, ranged, or of a local file to map): a found item is a hit (its returned
///   bytes count as read; a local file counts its whole size), `Ok(None)` a miss; both count in
///   the read latency. The reads of a backend that does its I/O when polled
///   ([`Capabilities::blocking_io`], the local disk) are all timed for the first 64 of each
///   stripe of threads (one thread each, up to 16), then one in 16 at random: they take less
///   than a microsecond, and the clock would add a tenth to each. The latency's `count` says
///   how many were timed, and its mean and maximum are theirs;
/// - writes: a put and its bytes written when it succeeds (a create that finds the item already
///   there writes nothing and counts only in the write latency);
/// - `delete_many` counts one deletion per key;
/// - every `Err`, of any operation, counts as an error.
///
/// Operations with `bypass_cache` (compute-once claims, which coordinate callers rather than
/// store results) are not counted. `head` reads, listings and sweeps count only their errors.
///
/// The counters are atomics shared by every [`StatsHandle`] of the layer, so reading them never
/// slows the operations down; each thread adds to those of its stripe (one of 16, alone on
/// their cache lines), and a snapshot sums them, so that operations on several threads rarely
/// contend for a counter. A snapshot reads each counter on its own: taken while operations
/// run, it may count an operation in one field and not yet in another.
///
/// ```
/// # futures::executor::block_on(async {
/// use std::sync::Arc;
/// use cachette_core::layers::Stats;
/// use cachette_core::plugin::{InMemoryBackend, Key, StoreBackendExt};
///
/// let stats = Stats::new(Arc::new(InMemoryBackend::new()));
/// let handle = stats.handle();
/// stats.get(&Key::new("f/missing").unwrap()).await.unwrap();
/// assert_eq!(handle.snapshot().misses, 1);
/// println!("{}", handle.snapshot());
/// # });
/// ```
#[derive(Debug)]
pub struct Stats {
    inner: DynBackend,
    handle: StatsHandle,
    /// Whether reads are timed one in [`READ_SAMPLE`] (after the first ones): those of a backend
    /// that does its I/O when polled (the local disk), which answers in less than a
    /// microsecond, where the two clock reads of a timing (about 50 ns) would be a tenth of the
    /// read.
    sample_reads: bool,
}

/// A backend that does its I/O when polled has one read in this many timed, at random, after
/// the first [`READ_SAMPLE_FIRST`] of each stripe of threads.
const READ_SAMPLE: u64 = 16;
/// The reads of a layer each stripe of threads times before it times one in [`READ_SAMPLE`].
const READ_SAMPLE_FIRST: u64 = 64;

/// Whether a read after the first ones is timed: one in [`READ_SAMPLE`], at random, so that
/// reads that come in a cycle (two keys in turn, two memories in turn) are all sampled alike.
fn sampled_at_random() -> bool {
    fastrand::u64(..READ_SAMPLE) == 0
}

/// Whether this read is one of the first [`READ_SAMPLE_FIRST`] of its layer on the stripe of
/// counters `c`, which are all timed. A load and a store of the stripe's count: threads that
/// share a stripe may miscount a read, which only moves the end of the first ones.
fn first_reads(c: &Counters) -> bool {
    let seen = &c.reads_seen;
    let n = seen.load(Ordering::Relaxed);
    if n >= READ_SAMPLE_FIRST {
        return false;
    }
    seen.store(n + 1, Ordering::Relaxed);
    true
}

impl Stats {
    /// Wraps `inner`, with counters at zero.
    pub fn new(inner: DynBackend) -> Stats {
        Stats::with_handle(inner, StatsHandle::default())
    }

    /// Wraps `inner`, counting in `handle`'s counters.
    fn with_handle(inner: DynBackend, handle: StatsHandle) -> Stats {
        let sample_reads = inner.capabilities().blocking_io;
        Stats {
            inner,
            handle,
            sample_reads,
        }
    }

    /// When a read starts: now if it is timed (every read of a backend that waits, one in
    /// [`READ_SAMPLE`] of one that does not, and every read while the per-operation events are
    /// on, since they give its time).
    fn read_started(&self, c: &Counters) -> Option<Instant> {
        let timed = !self.sample_reads
            || first_reads(c)
            || sampled_at_random()
            || tracing::enabled!(target: TARGET, tracing::Level::DEBUG);
        timed.then(Instant::now)
    }

    /// A handle on the counters, to read or reset them while the layer is in use elsewhere.
    pub fn handle(&self) -> StatsHandle {
        self.handle.clone()
    }

    /// This thread's counters (its stripe's).
    fn counters(&self) -> &Counters {
        self.handle.counters.mine()
    }

    /// Counts the outcome of a read in `c` and emits its event. Takes the result by reference:
    /// a read's result is moved through every layer, and this one need not move it twice.
    fn read(
        &self,
        c: &Counters,
        op: &'static str,
        key: &Key,
        started: Option<Instant>,
        result: &BackendResult<Option<GetResult>>,
    ) {
        let elapsed = started.map(|started| started.elapsed());
        if let Some(elapsed) = elapsed {
            c.read_latency.record(elapsed);
        }
        let (outcome, bytes) = match result {
            Ok(Some(found)) => {
                let len = match &found.payload {
                    GetPayload::Bytes(bytes) => bytes.len() as u64,
                    GetPayload::File(_) => found.size,
                };
                c.hits.fetch_add(1, Ordering::Relaxed);
                c.bytes_read.fetch_add(len, Ordering::Relaxed);
                ("hit", len)
            }
            Ok(None) => {
                c.misses.fetch_add(1, Ordering::Relaxed);
                ("miss", 0)
            }
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                ("error", 0)
            }
        };
        tracing::debug!(
            target: TARGET,
            backend = self.inner.scheme(),
            op,
            key = %key,
            outcome,
            bytes,
            elapsed_us = elapsed.map(micros),
        );
    }

    /// Counts the outcome of a write of `len` bytes (`stored` says whether a success stored
    /// them) and emits its event.
    fn write<T>(
        &self,
        op: &'static str,
        key: &Key,
        len: u64,
        started: Instant,
        result: BackendResult<T>,
        stored: impl FnOnce(&T) -> bool,
    ) -> BackendResult<T> {
        let elapsed = started.elapsed();
        let c = self.counters();
        c.write_latency.record(elapsed);
        let outcome = match &result {
            Ok(value) if stored(value) => {
                c.puts.fetch_add(1, Ordering::Relaxed);
                c.bytes_written.fetch_add(len, Ordering::Relaxed);
                "written"
            }
            Ok(_) => "exists",
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                "error"
            }
        };
        tracing::debug!(
            target: TARGET,
            backend = self.inner.scheme(),
            op,
            key = %key,
            outcome,
            bytes = len,
            elapsed_us = micros(elapsed),
        );
        result
    }

    /// Counts an error, if `result` is one, and emits the event of any other operation.
    fn other<T>(
        &self,
        op: &'static str,
        target: &dyn fmt::Display,
        started: Instant,
        result: BackendResult<T>,
    ) -> BackendResult<T> {
        let outcome = if result.is_ok() {
            "ok"
        } else {
            self.counters().errors.fetch_add(1, Ordering::Relaxed);
            "error"
        };
        tracing::debug!(
            target: TARGET,
            backend = self.inner.scheme(),
            op,
            key = %target,
            outcome,
            elapsed_us = micros(started.elapsed()),
        );
        result
    }

    fn deleted(&self, n: u64) {
        self.counters().deletes.fetch_add(n, Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl StoreBackend for Stats {
    fn scheme(&self) -> &'static str {
        self.inner.scheme()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        if options.bypass_cache {
            return self.inner.get_opts(key, options).await;
        }
        if options.head {
            let started = Instant::now();
            let result = self.inner.get_opts(key, options).await;
            return self.other("head", key, started, result);
        }
        // This thread's counters: a read of a task that moves to another thread meanwhile
        // still counts in them, which a snapshot sums all the same.
        let c = self.counters();
        let started = self.read_started(c);
        let op = read_op(&options);
        let result = self.inner.get_opts(key, options).await;
        self.read(c, op, key, started, &result);
        result
    }

    /// Claims are not entries: not counted.
    fn try_claim(&self, key: &Key) -> Option<BackendResult<ClaimAttempt>> {
        self.inner.try_claim(key)
    }

    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        if options.bypass_cache {
            return self.inner.get_now(key, options);
        }
        if options.head {
            let started = Instant::now();
            let result = self.inner.get_now(key, options)?;
            return Some(self.other("head", key, started, result));
        }
        let c = self.counters();
        let started = self.read_started(c);
        let result = self.inner.get_now(key, options)?;
        self.read(c, read_op(options), key, started, &result);
        Some(result)
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        if options.bypass_cache {
            return self.inner.put_opts(key, value, options).await;
        }
        let len = value.len();
        let op = put_op(&options);
        let started = Instant::now();
        let result = self.inner.put_opts(key, value, options).await;
        self.write(op, key, len, started, result, |outcome| {
            *outcome == PutOutcome::Created
        })
    }

    async fn put_then_delete(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
        delete: &Key,
    ) -> BackendResult<PutOutcome> {
        if options.bypass_cache {
            return self
                .inner
                .put_then_delete(key, value, options, delete)
                .await;
        }
        let len = value.len();
        let op = put_op(&options);
        let started = Instant::now();
        let result = self
            .inner
            .put_then_delete(key, value, options, delete)
            .await;
        if result.is_ok() {
            self.deleted(1);
        }
        self.write(op, key, len, started, result, |outcome| {
            *outcome == PutOutcome::Created
        })
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let started = Instant::now();
        let result = self.inner.delete_many(keys).await;
        if result.is_ok() {
            self.deleted(keys.len() as u64);
        }
        self.other("delete_many", &KeyCount(keys.len()), started, result)
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let started = Instant::now();
        let result = self.inner.list(prefix).await;
        self.other("list", prefix, started, result)
    }

    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        let started = Instant::now();
        let result = self.inner.sweep(prefix).await;
        self.other("sweep", prefix, started, result)
    }
}

/// "(N keys)", written only when a trace asks for it.
struct KeyCount(usize);

impl fmt::Display for KeyCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({} keys)", self.0)
    }
}

/// The [`Layer`] of [`Stats`]: counts what the stack built so far is asked.
#[derive(Debug, Clone, Default)]
pub struct StatsLayer {
    handle: StatsHandle,
}

impl StatsLayer {
    /// A layer with counters at zero.
    pub fn new() -> StatsLayer {
        StatsLayer::default()
    }

    /// A handle on the counters of the layer it builds.
    pub fn handle(&self) -> StatsHandle {
        self.handle.clone()
    }
}

impl Layer for StatsLayer {
    fn layer(&self, inner: DynBackend) -> Result<DynBackend, BackendError> {
        Ok(Arc::new(Stats::with_handle(inner, self.handle.clone())))
    }
}

/// A handle on the counters of a [`Stats`] layer. Clones are cheap and share the counters.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle {
    /// The counters of each stripe of threads, summed by a snapshot: an operation adds to its
    /// thread's, so that operations on several threads rarely contend for a counter.
    counters: Arc<Striped<Counters>>,
}

impl StatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> BackendStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut sum = BackendStats::default();
        for c in self.counters.iter() {
            sum.hits += load(&c.hits);
            sum.misses += load(&c.misses);
            sum.bytes_read += load(&c.bytes_read);
            sum.puts += load(&c.puts);
            sum.bytes_written += load(&c.bytes_written);
            sum.deletes += load(&c.deletes);
            sum.errors += load(&c.errors);
            sum.read_latency.add(c.read_latency.snapshot());
            sum.write_latency.add(c.write_latency.snapshot());
        }
        sum
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        for c in self.counters.iter() {
            for a in [
                &c.reads_seen,
                &c.hits,
                &c.misses,
                &c.bytes_read,
                &c.puts,
                &c.bytes_written,
                &c.deletes,
                &c.errors,
            ] {
                a.store(0, Ordering::Relaxed);
            }
            c.read_latency.reset();
            c.write_latency.reset();
        }
    }
}

/// The counters of a stripe of threads.
#[derive(Debug, Default)]
struct Counters {
    /// The reads of the stripe, up to [`READ_SAMPLE_FIRST`]: the first ones, all timed.
    reads_seen: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_read: AtomicU64,
    puts: AtomicU64,
    bytes_written: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
    read_latency: LatencyCounters,
    write_latency: LatencyCounters,
}

#[derive(Debug, Default)]
struct LatencyCounters {
    count: AtomicU64,
    total_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl LatencyCounters {
    fn record(&self, elapsed: Duration) {
        let n = nanos(elapsed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_nanos.fetch_add(n, Ordering::Relaxed);
        // Most reads are no slower than the slowest so far: a load, not a locked exchange.
        if n > self.max_nanos.load(Ordering::Relaxed) {
            self.max_nanos.fetch_max(n, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> Latency {
        Latency {
            count: self.count.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.total_nanos.load(Ordering::Relaxed)),
            max: Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed)),
        }
    }

    fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.total_nanos.store(0, Ordering::Relaxed);
        self.max_nanos.store(0, Ordering::Relaxed);
    }
}

/// What a [`Stats`] layer counted (see its docs for what each operation adds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BackendStats {
    /// Reads (`get`, `get_range`) that found the item.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Bytes returned by reads.
    pub bytes_read: u64,
    /// Writes (`put`, `put_if_absent`) that stored an item.
    pub puts: u64,
    /// Bytes those writes stored.
    pub bytes_written: u64,
    /// Items deleted, or asked to be deleted.
    pub deletes: u64,
    /// Operations of any kind that returned an error.
    pub errors: u64,
    /// Time spent in reads: in every read, or in a sample of them for a backend that does its
    /// I/O when polled (see [`Stats`]).
    pub read_latency: Latency,
    /// Time spent in writes.
    pub write_latency: Latency,
}

impl BackendStats {
    /// The share of reads that were hits, if there were reads.
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        #[allow(clippy::cast_precision_loss)] // A ratio for people to read.
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }
}

impl fmt::Display for BackendStats {
    /// One line: `3 hits, 1 miss (75% hits), 12.0 KiB read; 2 puts, 8.0 KiB written; 0
    /// deletes; 0 errors; reads 1.2ms mean, 3.1ms max; writes 2ms mean, 2ms max`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{}, {}",
            plural(self.hits, "hit", "hits"),
            plural(self.misses, "miss", "misses")
        )?;
        if let Some(ratio) = self.hit_ratio() {
            write!(f, " ({:.0}% hits)", ratio * 100.0)?;
        }
        write!(
            f,
            ", {} read; {}, {} written; {}; {}",
            Size(self.bytes_read),
            plural(self.puts, "put", "puts"),
            Size(self.bytes_written),
            plural(self.deletes, "delete", "deletes"),
            plural(self.errors, "error", "errors"),
        )?;
        write!(
            f,
            "; reads {}; writes {}",
            self.read_latency, self.write_latency
        )
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.0 GiB`.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        #[allow(clippy::cast_precision_loss)] // A size for people to read.
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

/// The latency of a kind of operation: how many, how long in total, the longest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Operations timed (reads of the local disk are sampled: see [`Stats`]).
    pub count: u64,
    /// Their total duration.
    pub total: Duration,
    /// The longest of them.
    pub max: Duration,
}

impl Latency {
    /// Adds the operations of `other`.
    fn add(&mut self, other: Latency) {
        self.count += other.count;
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The mean duration, if any operation was timed.
    pub fn mean(&self) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let mean = self.total.as_nanos() / u128::from(self.count);
        Some(Duration::from_nanos(
            u64::try_from(mean).unwrap_or(u64::MAX),
        ))
    }
}

impl fmt::Display for Latency {
    /// `1.2ms mean, 3.1ms max` (`none` when nothing was timed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mean() {
            None => f.write_str("none"),
            Some(mean) => write!(f, "{mean:?} mean, {:?} max", self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StoreBackendExt;
    use crate::error::ErrorKind;
    use crate::layers::flaky::Flaky;
    use crate::memory_backend::InMemoryBackend;
    use bytes::Bytes;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(fut)
    }

    #[test]
    fn counts_reads_writes_deletes_and_errors() {
        let flaky = Arc::new(Flaky::new(
            Arc::new(InMemoryBackend::new()),
            ErrorKind::Unavailable,
        ));
        let stats = Stats::new(flaky.clone());
        let handle = stats.handle();
        let ten: Blob = [Bytes::from_static(b"0123"), Bytes::from_static(b"456789")]
            .into_iter()
            .collect();

        run(stats.put(&key("f/a"), ten.clone())).unwrap();
        assert_eq!(
            run(stats.put_if_absent(&key("f/b"), Bytes::from_static(b"xyz").into())).unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            run(stats.put_if_absent(&key("f/a"), ten)).unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(run(stats.get(&key("f/a"))).unwrap().unwrap().len(), 10);
        assert_eq!(
            run(stats.get_range(&key("f/a"), 2..5))
                .unwrap()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(run(stats.get(&key("f/missing"))).unwrap(), None);
        assert_eq!(run(stats.get_range(&key("f/missing"), 0..1)).unwrap(), None);
        assert!(run(stats.contains(&key("f/b"))).unwrap());
        flaky.fail_next(3);
        run(stats.get(&key("f/a"))).unwrap_err();
        run(stats.put(&key("f/c"), Bytes::from_static(b"c").into())).unwrap_err();
        run(stats.list(&Prefix::root())).unwrap_err();
        run(stats.delete(&key("f/b"))).unwrap();
        run(stats.delete_many(&[key("f/x"), key("f/y")])).unwrap();
        assert_eq!(
            run(stats.delete_prefix(&Prefix::new("f").unwrap())).unwrap(),
            1
        );

        let s = handle.snapshot();
        assert_eq!(
            s,
            BackendStats {
                hits: 2,
                misses: 2,
                bytes_read: 13,
                puts: 2,
                bytes_written: 13,
                deletes: 4,
                errors: 3,
                read_latency: Latency {
                    count: 5,
                    ..s.read_latency
                },
                write_latency: Latency {
                    count: 4,
                    ..s.write_latency
                },
            }
        );
        assert!(s.read_latency.max <= s.read_latency.total);
        assert!(s.read_latency.mean().unwrap() <= s.read_latency.max);
        assert_eq!(s.hit_ratio(), Some(0.5));

        let other = stats.handle();
        other.reset();
        assert_eq!(handle.snapshot(), BackendStats::default());
        assert_eq!(handle.snapshot().read_latency.mean(), None);
    }

    #[test]
    fn counts_from_many_threads() {
        let stats = Arc::new(Stats::new(Arc::new(InMemoryBackend::new())));
        run(stats.put(&key("f/a"), Bytes::from_static(b"abcd").into())).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        run(stats.get(&key("f/a"))).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = stats.handle().snapshot();
        assert_eq!((s.hits, s.bytes_read), (1000, 4000));
        // The first 64 reads of each stripe (the 4 threads have 1 to 4 between them, with the
        // threads of other tests), then one in 16 at random (11.6 expected of 186).
        let timed = s.read_latency.count;
        assert!((64..=4 * 64 + 4 * 40).contains(&timed), "{timed}");
        // A reset clears the counters of every stripe.
        stats.handle().reset();
        assert_eq!(stats.handle().snapshot(), BackendStats::default());
        run(stats.get(&key("f/a"))).unwrap();
        assert_eq!(stats.handle().snapshot().hits, 1);
    }

    /// Reads `n` times on a thread of its own (whose sample starts afresh), half of them
    /// through `get_now` if the backend answers it, and gives the latency's count.
    fn timed_reads(network: bool, n: usize) -> u64 {
        let backend: DynBackend = if network {
            let flaky = Arc::new(Flaky::new(
                Arc::new(InMemoryBackend::new()),
                ErrorKind::Unavailable,
            ));
            flaky.network();
            flaky
        } else {
            Arc::new(InMemoryBackend::new())
        };
        let stats = Arc::new(Stats::new(backend));
        run(stats.put(&key("f/a"), Bytes::from_static(b"abcd").into())).unwrap();
        let reader = stats.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                let k = key(if i % 2 == 0 { "f/a" } else { "f/b" });
                let now = (i % 4 >= 2)
                    .then(|| reader.get_now(&k, &GetOptions::default()))
                    .flatten();
                match now {
                    Some(read) => drop(read.unwrap()),
                    None => drop(run(reader.get(&k)).unwrap()),
                }
            }
        })
        .join()
        .unwrap();
        let s = stats.handle().snapshot();
        assert_eq!(s.hits + s.misses, n as u64);
        s.read_latency.count
    }

    #[test]
    fn reads_of_a_backend_that_waits_are_all_timed() {
        assert_eq!(timed_reads(true, 1000), 1000);
    }

    #[test]
    fn reads_of_a_backend_that_never_waits_are_sampled() {
        assert_eq!(timed_reads(false, 10), 10);
        assert_eq!(timed_reads(false, 64), 64);
        // Then one in 16 at random: 58.5 expected of 936, with a deviation of 7.4.
        let timed = timed_reads(false, 1000);
        assert!((64 + 20..=64 + 110).contains(&timed), "{timed}");
    }

    /// Reads that come in a cycle are sampled alike: two layers read in turn on one thread are
    /// both timed after their first reads.
    #[test]
    fn layers_read_in_turn_are_both_sampled() {
        let layers = [(); 2].map(|()| Stats::new(Arc::new(InMemoryBackend::new())));
        let k = key("f/a");
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..1000 {
                    for layer in &layers {
                        layer.get_now(&k, &GetOptions::default()).unwrap().unwrap();
                    }
                }
            });
        });
        for layer in &layers {
            let timed = layer.handle().snapshot().read_latency.count;
            assert!((64 + 20..=64 + 110).contains(&timed), "{timed}");
        }
    }

    #[test]
    fn display_is_one_readable_line() {
        let s = BackendStats {
            hits: 3,
            misses: 1,
            bytes_read: 3 * 1024 + 512,
            puts: 1,
            bytes_written: 100,
            deletes: 0,
            errors: 1,
            read_latency: Latency {
                count: 4,
                total: Duration::from_millis(8),
                max: Duration::from_millis(5),
            },
            write_latency: Latency::default(),
        };
        assert_eq!(
            s.to_string(),
            "3 hits, 1 miss (75% hits), 3.5 KiB read; 1 put, 100 B written; 0 deletes; 1 error; \
             reads 2ms mean, 5ms max; writes none"
        );
        assert!(!BackendStats::default().to_string().contains('\n'));
    }

    #[cfg(feature = "testkit")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance() {
        let stats = Stats::new(Arc::new(InMemoryBackend::new()));
        let handle = stats.handle();
        crate::testkit::run_all(Arc::new(stats)).await;
        let s = handle.snapshot();
        assert_eq!(s.errors, 0);
        assert!(s.hits > 0 && s.misses > 0 && s.puts > 0 && s.deletes > 0);
    }
}
