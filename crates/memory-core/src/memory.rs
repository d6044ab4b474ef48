//! [`Memory`]: a context for lazy evaluation, over any backend.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cachette_hashing::{HashAlgorithm, Xxh3};
use chrono::{TimeDelta, Utc};
use futures::future::BoxFuture;

use crate::array::MmapMode;
use crate::backend::{BackendResult, DynBackend, ItemInfo, StoreBackend, StoreBackendExt};
use crate::codec::{Codec, MessagePack};
use crate::config::MemoryConfig;
use crate::error::{Error, Result};
use crate::func::{FuncId, MemorizedFunc};
use crate::key::{Key, Prefix};
use crate::layers::{BackendStats, Retry, RetryPolicy, Stats, StatsHandle, TierCounters, Tiered};
use crate::once::{CLAIM_SUFFIX, DEFAULT_LEASE, DEFAULT_WAIT_TIMEOUT, Once};
use crate::registry::{self, BackendConfig};
use crate::report::Reporter;
use crate::rt;
use crate::signing::SigningKey;
use crate::size::{ReduceReport, SizeLimits};

/// A context for lazy evaluation: it memoizes functions' results in a store, so that a
/// function never runs twice for the same arguments, in this process or any other that shares
/// the store.
///
/// `Memory` is cheap to clone (clones share the backend and settings). A disabled `Memory`
/// ([`Memory::disabled`], joblib's `Memory(None)`) runs every call straight through.
///
/// ```
/// use cachette_core::Memory;
/// let memory = Memory::from_url("memory://doc-example").unwrap();
/// let square = memory.cache(|x: i64| x * x);
/// assert_eq!(square.eval(4), 16); // computed
/// assert_eq!(square.eval(4), 16); // loaded
/// ```
#[derive(Clone)]
pub struct Memory {
    pub(crate) inner: Option<Arc<Inner>>,
}

pub(crate) struct Inner {
    pub(crate) backend: DynBackend,
    pub(crate) location: String,
    pub(crate) blocking_io: bool,
    pub(crate) verbose: u8,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) hasher: Arc<dyn HashAlgorithm>,
    pub(crate) reporter: Reporter,
    /// Functions whose code identity was checked against the store, by folder.
    pub(crate) checked: Mutex<HashMap<String, String>>,
    /// Bumped by [`Memory::clear`], so that functions check their identity again.
    pub(crate) generation: AtomicU64,
    /// How arrays of outputs are loaded, unless a function says otherwise.
    pub(crate) mmap_mode: MmapMode,
    /// The zstd level outputs are compressed with, if they are.
    pub(crate) compress: Option<i32>,
    /// The backend has local files that can be mapped.
    pub(crate) local_files: bool,
    /// When each entry loaded by mapping its file last had its access recorded.
    pub(crate) touched: Mutex<HashMap<Key, std::time::Instant>>,
    /// The configuration of the backend, when it was built from one (a URL or a config).
    pub(crate) store: Option<Box<dyn BackendConfig>>,
    /// The location of the local tier in front of the store, if any.
    pub(crate) local_tier: Option<String>,
    /// How the store's operations are retried, if they are.
    pub(crate) retry: Option<RetryPolicy>,
    /// The counters of the store's operations, unless turned off.
    pub(crate) stats: Option<StatsHandle>,
    /// The tiers, with a local tier.
    pub(crate) tiered: Option<Arc<Tiered>>,
    /// The key entries are signed and checked with, if any.
    pub(crate) signing: Option<SigningKey>,
    /// Compute-once: its settings, the keys being computed in this process, and the claims.
    pub(crate) once: Once,
    /// The `try_` methods return faults of the store as errors.
    pub(crate) strict: bool,
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Memory(disabled)"),
            Some(inner) => f
                .debug_struct("Memory")
                .field("location", &inner.location)
                .field("backend", &inner.backend)
                .field("verbose", &inner.verbose)
                .field("codec", &inner.codec.id())
                .field("hasher", &inner.hasher.id())
                .field("mmap_mode", &inner.mmap_mode)
                .field("compress", &inner.compress)
                .field("compute_once", &inner.once.enabled)
                .field("strict", &inner.strict)
                .finish(),
        }
    }
}

impl Memory {
    /// A `Memory` on the local disk at `path` (created if missing). Needs the local-disk
    /// backend (the `fs` feature of `cachette`, on by default).
    pub fn new(path: impl AsRef<Path>) -> Result<Memory> {
        let path = path.as_ref();
        let location = path.to_str().ok_or_else(|| {
            Error::InvalidArgument(format!("the path {path:?} is not valid UTF-8"))
        })?;
        if registry::scheme_of(location) != "file" {
            return Err(Error::InvalidArgument(format!(
                "{location:?} looks like a URL: use Memory::from_url"
            )));
        }
        Memory::from_url(location)
    }

    /// A `Memory` on the store a URL names: `file:///path` or a plain path, `s3://bucket/prefix`,
    /// `redis://host:port/db`, `memory://name`, or any scheme a linked backend registers.
    pub fn from_url(url: &str) -> Result<Memory> {
        MemoryBuilder::new().url(url).build()
    }

    /// A `Memory` on a backend built in code.
    pub fn with_backend(backend: DynBackend) -> Memory {
        MemoryBuilder::new()
            .backend(backend)
            .build()
            .unwrap_or_else(|_| Memory::disabled())
    }

    /// A builder, for options.
    pub fn builder() -> MemoryBuilder {
        MemoryBuilder::new()
    }

    /// A disabled `Memory`: every call runs the function, nothing is stored.
    pub fn disabled() -> Memory {
        Memory { inner: None }
    }

    /// Whether results are stored.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The location of the store, as a URL (a path for the local disk); `None` when disabled.
    pub fn location(&self) -> Option<&str> {
        self.inner.as_ref().map(|i| i.location.as_str())
    }

    /// The configuration that rebuilds this memory elsewhere (its store and options), to ship
    /// to workers on other machines; see [`MemoryConfig`]. `None` for a memory on a backend
    /// given as an object (`with_backend`), which has no configuration to give. A disabled
    /// memory gives a disabled configuration.
    pub fn config(&self) -> Option<MemoryConfig> {
        let Some(inner) = &self.inner else {
            return Some(MemoryConfig {
                enabled: false,
                ..MemoryConfig::default()
            });
        };
        let store = inner.store.as_ref()?;
        let mut config = MemoryConfig::from_backend(store.clone());
        config.verbose = inner.verbose;
        config.mmap_mode = inner.mmap_mode;
        config.compress = inner.compress;
        config.local_tier.clone_from(&inner.local_tier);
        config.retry.clone_from(&inner.retry);
        config.stats = inner.stats.is_some();
        config.signing_key = inner.signing.as_ref().map(|k| k.secret().clone());
        config.compute_once = inner.once.enabled;
        config.strict = inner.strict;
        config.lease_secs = inner.once.lease.as_secs_f64();
        config.wait_timeout_secs = inner.once.wait_timeout.as_secs_f64();
        Some(config)
    }

    /// What the memory asked of its store so far: hits, misses, bytes, latency; and, with a
    /// local tier, where reads were served from. `None` when disabled or built with
    /// [`stats(false)`](MemoryBuilder::stats).
    pub fn stats(&self) -> Option<MemoryStats> {
        let inner = self.inner.as_ref()?;
        Some(MemoryStats {
            store: inner.stats.as_ref()?.snapshot(),
            tiers: inner.tiered.as_ref().map(|t| t.counters()),
        })
    }

    /// Sets the counters of [`stats`](Self::stats) back to zero (not the tiers').
    pub fn reset_stats(&self) {
        if let Some(stats) = self.inner.as_ref().and_then(|i| i.stats.as_ref()) {
            stats.reset();
        }
    }

    /// The backend; `None` when disabled.
    pub fn backend(&self) -> Option<&DynBackend> {
        self.inner.as_ref().map(|i| &i.backend)
    }

    /// The verbosity.
    pub fn verbose(&self) -> u8 {
        self.inner.as_ref().map_or(0, |i| i.verbose)
    }

    /// How arrays of outputs are loaded, unless a function says otherwise.
    pub fn mmap_mode(&self) -> MmapMode {
        self.inner.as_ref().map_or(MmapMode::None, |i| i.mmap_mode)
    }

    /// The zstd level outputs are compressed with, if they are.
    pub fn compression(&self) -> Option<i32> {
        self.inner.as_ref().and_then(|i| i.compress)
    }

    /// Whether functions compute once under concurrency unless they say otherwise; see
    /// [`MemoryBuilder::compute_once`]. `false` when disabled.
    pub fn compute_once(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.once.enabled)
    }

    /// Whether compute-once takes claims in the store, to work across processes; see
    /// [`MemoryBuilder::claims`].
    pub fn claims(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.once.claims)
    }

    /// The lease of the claims this memory takes; see [`MemoryBuilder::lease`].
    pub fn lease(&self) -> Duration {
        self.inner.as_ref().map_or(DEFAULT_LEASE, |i| i.once.lease)
    }

    /// How long a caller waits for another one's result before computing it anyway; see
    /// [`MemoryBuilder::wait_timeout`].
    pub fn wait_timeout(&self) -> Duration {
        self.inner
            .as_ref()
            .map_or(DEFAULT_WAIT_TIMEOUT, |i| i.once.wait_timeout)
    }

    /// Whether the fallible methods of its functions return faults of the store as errors
    /// (see [`MemoryBuilder::strict`]). `false` when disabled.
    pub fn strict(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.strict)
    }

    /// Memoizes a function or closure taking one argument (use a tuple for several). Call it
    /// with [`MemorizedFunc::eval`].
    ///
    /// A function item is identified by its path (`my_crate::module::name`). A closure is
    /// identified by its enclosing function and the place of this call in the source; give it a
    /// stable name with [`MemorizedFunc::name`] and a [`MemorizedFunc::version`] that you change
    /// when its body changes.
    #[track_caller]
    pub fn cache<A, R, F>(&self, f: F) -> MemorizedFunc<R, F>
    where
        F: Fn(A) -> R,
    {
        let id = FuncId::of_callable::<F>(std::panic::Location::caller());
        MemorizedFunc::with_function(self, id, f)
    }

    /// Runs `f(args)` in the context of this memory: the function runs only if its result is
    /// not stored yet (joblib's `Memory.eval`).
    #[track_caller]
    pub fn eval<A, R, F>(&self, f: F, args: A) -> R
    where
        F: Fn(A) -> R,
        A: serde::Serialize,
        R: serde::Serialize + serde::de::DeserializeOwned,
    {
        let id = FuncId::of_callable::<F>(std::panic::Location::caller());
        MemorizedFunc::with_function(self, id, f).eval(args)
    }

    /// [`eval`](Self::eval), with the faults of the store as errors in
    /// [strict mode](MemoryBuilder::strict).
    #[track_caller]
    pub fn try_eval<A, R, F>(&self, f: F, args: A) -> Result<R>
    where
        F: Fn(A) -> R,
        A: serde::Serialize,
        R: serde::Serialize + serde::de::DeserializeOwned,
    {
        let id = FuncId::of_callable::<F>(std::panic::Location::caller());
        MemorizedFunc::with_function(self, id, f).try_eval(args)
    }

    /// Sweeps what interrupted writers left behind, without touching any entry: on the local
    /// disk, the temporary files of processes of this host that are gone (killed mid-write) and
    /// any older than an hour. Listing the store does it, so [`reduce_size`](Self::reduce_size)
    /// and [`clear`](Self::clear) do it too. Returns how many entries the store holds.
    pub fn housekeeping(&self) -> Result<usize> {
        let Some(inner) = &self.inner else {
            return Ok(0);
        };
        let items = inner.run(|b| Box::pin(async move { b.list(&Prefix::root()).await }))?;
        Ok(items.len())
    }

    /// Deletes every stored result of every function.
    pub fn clear(&self) -> Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        inner.reporter_line_clear();
        inner.run(|b| Box::pin(async move { b.delete_prefix(&Prefix::root()).await }))?;
        inner.forget_checks();
        Ok(())
    }

    /// [`clear`](Self::clear), for async callers.
    pub async fn clear_async(&self) -> Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        inner.reporter_line_clear();
        inner
            .run_async(|b| Box::pin(async move { b.delete_prefix(&Prefix::root()).await }))
            .await?;
        inner.forget_checks();
        Ok(())
    }

    /// Deletes stored results until the store is within `limits`: first entries last accessed
    /// longer ago than the age limit, then least recently accessed entries until at most the
    /// item and byte limits remain. Access is tracked by the library on every hit, not by the
    /// file system's atime.
    ///
    /// It also deletes the claims of [compute-once](MemoryBuilder::compute_once) that nobody
    /// renewed for an hour (and three leases), left by processes that died; they are not
    /// counted in the report.
    pub fn reduce_size(&self, limits: &SizeLimits) -> Result<ReduceReport> {
        let Some(inner) = &self.inner else {
            return Ok(ReduceReport::default());
        };
        check_limits(limits)?;
        let items = inner.run(|b| Box::pin(async move { b.list(&Prefix::root()).await }))?;
        let (doomed, report) = plan_reduction(items, limits, inner.once.lease);
        if !doomed.is_empty() {
            inner.run(move |b| Box::pin(async move { b.delete_many(&doomed).await }))?;
        }
        Ok(report)
    }

    /// [`reduce_size`](Self::reduce_size), for async callers.
    pub async fn reduce_size_async(&self, limits: &SizeLimits) -> Result<ReduceReport> {
        let Some(inner) = &self.inner else {
            return Ok(ReduceReport::default());
        };
        check_limits(limits)?;
        let items = inner
            .run_async(|b| Box::pin(async move { b.list(&Prefix::root()).await }))
            .await?;
        let (doomed, report) = plan_reduction(items, limits, inner.once.lease);
        if !doomed.is_empty() {
            inner
                .run_async(move |b| Box::pin(async move { b.delete_many(&doomed).await }))
                .await?;
        }
        Ok(report)
    }
}

fn check_limits(limits: &SizeLimits) -> Result<()> {
    if limits.age_limit.is_some_and(|age| age < TimeDelta::zero()) {
        return Err(Error::InvalidArgument(format!(
            "age_limit must be positive or zero, got {:?}",
            limits.age_limit
        )));
    }
    Ok(())
}

/// Whether a key names a cached call's entry (`<function folder>/<32 hex digits>`).
pub(crate) fn is_entry_key(key: &Key) -> bool {
    let mut segments = key.segments();
    let (Some(_), Some(last), None) = (segments.next(), segments.next(), segments.next()) else {
        return false;
    };
    last.len() == 32 && last.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a key names the compute-once claim of an entry (`<entry key>.claim`).
fn is_claim_key(key: &Key) -> bool {
    key.as_str()
        .strip_suffix(CLAIM_SUFFIX)
        .and_then(|entry| Key::new(entry).ok())
        .is_some_and(|entry| is_entry_key(&entry))
}

/// How long a claim stays unrenewed before `reduce_size` deletes it: an hour, or three leases
/// if longer. A live claim is renewed every third of its lease.
fn claim_age_limit(lease: Duration) -> TimeDelta {
    let limit = lease.saturating_mul(3).max(Duration::from_secs(3600));
    TimeDelta::from_std(limit).unwrap_or(TimeDelta::MAX)
}

/// What `reduce_size` deletes: entries as `limits` say, and stale claims (not reported).
fn plan_reduction(
    items: Vec<ItemInfo>,
    limits: &SizeLimits,
    lease: Duration,
) -> (Vec<Key>, ReduceReport) {
    let stale_before = Utc::now()
        .checked_sub_signed(claim_age_limit(lease))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let (claims, items): (Vec<ItemInfo>, Vec<ItemInfo>) =
        items.into_iter().partition(|i| is_claim_key(&i.key));
    let stale_claims = claims
        .into_iter()
        .filter(|c| c.last_access < stale_before)
        .map(|c| c.key);
    let (mut doomed, report) = plan_entries(items, limits);
    doomed.extend(stale_claims);
    (doomed, report)
}

fn plan_entries(items: Vec<ItemInfo>, limits: &SizeLimits) -> (Vec<Key>, ReduceReport) {
    let mut entries: Vec<ItemInfo> = items.into_iter().filter(|i| is_entry_key(&i.key)).collect();
    entries.sort_by(|a, b| {
        a.last_access
            .cmp(&b.last_access)
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut kept_items = entries.len();
    let mut kept_bytes: u64 = entries.iter().map(|i| i.size).sum();
    let cutoff = limits.age_limit.map(|age| Utc::now() - age);
    let mut doomed = Vec::new();
    let mut report = ReduceReport::default();
    for item in entries {
        let too_old = cutoff.is_some_and(|c| item.last_access <= c);
        let too_many = limits.items_limit.is_some_and(|n| kept_items > n);
        let too_big = limits.bytes_limit.is_some_and(|b| kept_bytes > b.0);
        if !(too_old || too_many || too_big) {
            continue;
        }
        kept_items -= 1;
        kept_bytes -= item.size;
        report.deleted_items += 1;
        report.deleted_bytes += item.size;
        doomed.push(item.key);
    }
    report.kept_items = kept_items;
    report.kept_bytes = kept_bytes;
    (doomed, report)
}

impl Inner {
    /// Runs a backend operation from synchronous code.
    pub(crate) fn run<T, F>(&self, op: F) -> BackendResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a dyn StoreBackend) -> BoxFuture<'a, BackendResult<T>> + Send + 'static,
    {
        rt::block_on(self.blocking_io, op(&*self.backend))?
    }

    /// Runs a backend operation from async code, never blocking the runtime.
    pub(crate) async fn run_async<T, F>(&self, op: F) -> BackendResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a dyn StoreBackend) -> BoxFuture<'a, BackendResult<T>> + Send + 'static,
    {
        rt::offload(&self.backend, op).await?
    }

    pub(crate) fn get(&self, key: &Key) -> BackendResult<Option<Bytes>> {
        let key = key.clone();
        self.run(move |b| Box::pin(async move { b.get(&key).await }))
    }

    fn reporter_line_clear(&self) {
        if self.verbose > 0 {
            self.reporter.line(format!(
                "[Memory(location={})]: Flushing completely the cache",
                self.location
            ));
        }
    }

    fn forget_checks(&self) {
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

/// Options of a [`Memory`], and how it is built.
///
/// ```
/// use cachette_core::Memory;
/// let memory = Memory::builder().url("memory://builder-doc").verbose(1).build().unwrap();
/// assert_eq!(memory.verbose(), 1);
/// ```
#[derive(Debug, Default)]
pub struct MemoryBuilder {
    backend: Option<DynBackend>,
    url: Option<String>,
    disabled: bool,
    verbose: u8,
    codec: Option<Arc<dyn Codec>>,
    hasher: Option<Arc<dyn HashAlgorithm>>,
    reporter: Reporter,
    mmap_mode: MmapMode,
    compress: Option<i32>,
    store: Option<Box<dyn BackendConfig>>,
    local_tier: Option<String>,
    retry: Option<RetryPolicy>,
    no_stats: bool,
    signing: Option<SigningKey>,
    signing_secret: Option<String>,
    no_compute_once: bool,
    strict: bool,
    claims: Option<bool>,
    lease: Option<Duration>,
    wait_timeout: Option<Duration>,
    /// An option of a configuration that is not valid, reported by `build`.
    invalid: Option<String>,
}

impl MemoryBuilder {
    /// A builder with the defaults: verbosity 0, MessagePack outputs, xxh3-128 argument hashes.
    pub fn new() -> Self {
        MemoryBuilder::default()
    }

    /// Stores on the local disk at `path`.
    pub fn path(self, path: impl AsRef<Path>) -> Self {
        let location = path.as_ref().to_string_lossy().into_owned();
        self.url(location)
    }

    /// Stores where the URL says (see [`Memory::from_url`]).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Stores in the backend `config` describes; the memory's [`Memory::config`] then gives a
    /// configuration that rebuilds it elsewhere.
    pub fn backend_config(mut self, config: Box<dyn BackendConfig>) -> Self {
        self.store = Some(config);
        self
    }

    /// Takes the store and the options of `config` (see [`MemoryConfig`]); options set on
    /// the builder afterwards win.
    pub fn config(mut self, config: MemoryConfig) -> Self {
        self.verbose = config.verbose;
        self.mmap_mode = config.mmap_mode;
        self.compress = config.compress.filter(|&level| level != 0);
        self.disabled = !config.enabled;
        self.store = config.backend;
        self.url = config.location;
        self.local_tier = config.local_tier;
        self.retry = config.retry;
        self.no_stats = !config.stats;
        self.no_compute_once = !config.compute_once;
        self.strict = config.strict;
        let seconds = |key: &str, secs: f64| match Duration::try_from_secs_f64(secs) {
            Ok(d) => Ok(d),
            Err(_) => Err(format!(
                "`{key}` must be a number of seconds, zero or more, not {secs}"
            )),
        };
        match seconds("lease_secs", config.lease_secs).and_then(|lease| {
            Ok((
                lease,
                seconds("wait_timeout_secs", config.wait_timeout_secs)?,
            ))
        }) {
            Ok((lease, wait_timeout)) => {
                self.lease = Some(lease);
                self.wait_timeout = Some(wait_timeout);
            }
            Err(e) => self.invalid = Some(e),
        }
        self.signing_secret = config.signing_key.map(|s| s.0);
        self
    }

    /// Signs every entry written with `key`, and refuses (with a warning, then computes again)
    /// every entry read that is not signed with it. See [`SigningKey`].
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing = Some(key);
        self.signing_secret = None;
        self
    }

    /// Puts a local tier in front of the store: a location (a path, or any URL; usually the
    /// local disk) that keeps a copy of the entries read or written, so that hits are served
    /// locally and, on the local disk, arrays can be memory-mapped. Reads that miss locally go
    /// to the store and are copied down; writes go to both. See [`Tiered`].
    pub fn local_tier(mut self, location: impl Into<String>) -> Self {
        self.local_tier = Some(location.into());
        self
    }

    /// Retries the store's operations that fail with a transient error (unreachable, timed
    /// out), as `policy` says; see [`Retry`]. With a local tier, only the store behind it is
    /// retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Whether to count the store's operations for [`Memory::stats`] and emit a tracing event
    /// for each (target `cachette::stats`, level debug). On by default; counting costs a few
    /// atomic additions per operation.
    pub fn stats(mut self, on: bool) -> Self {
        self.no_stats = !on;
        self
    }

    /// Whether concurrent misses of one key compute it once (on by default). When several
    /// callers miss the same key at once, one computes and the others wait for its entry, then
    /// load it: threads and async tasks of this process, and other processes and machines that
    /// share the store. Hits cost nothing more: all of it happens after a miss. Functions can
    /// override it ([`MemorizedFunc::compute_once`]).
    ///
    /// - **In a process**, the first caller to miss a key computes it; the others wait (async
    ///   callers without blocking their runtime), then load its entry.
    /// - **Across processes** (see [`claims`](Self::claims)), that caller also takes a
    ///   *claim*: an item `<entry key>.claim` created only if absent (a hard link on the local
    ///   disk, a conditional `PUT` on S3, `SET NX` on Redis), naming its owner and the end of
    ///   its [lease](Self::lease), renewed every third of the lease while it computes and
    ///   deleted once the entry is stored. Callers of other processes wait while the claim is
    ///   there, then load the entry. If the claim's holder dies, its lease runs out (on this
    ///   machine's clock, or when its claim has not changed for a whole lease) and one waiter
    ///   takes it over. Claims are not entries: [`Memory::reduce_size`] and listings leave
    ///   them out, and [`Memory::clear`] deletes them.
    /// - **Waiting is bounded** by [`wait_timeout`](Self::wait_timeout): after it, the caller
    ///   computes anyway and a warning says so.
    /// - **Errors are not cached**: an `Err` or a panic goes to its own caller only; the next
    ///   waiter then takes over and computes (so a transient error costs one more computation,
    ///   and an error that repeats reaches each caller in turn). When the output cannot be
    ///   stored, the waiters of the process compute their own at once.
    ///
    /// Forced runs ([`MemorizedFunc::call`], `force_call_with`) never wait.
    pub fn compute_once(mut self, on: bool) -> Self {
        self.no_compute_once = !on;
        self
    }

    /// Strict mode (off by default): the fallible methods of memoized functions
    /// ([`MemorizedFunc::try_eval`], [`try_call_with`](MemorizedFunc::try_call_with), and the
    /// other `try_` methods) return the faults of the store as errors
    /// ([`CallError::Store`](crate::CallError::Store)) instead of warning and computing.
    ///
    /// The faults are: the store cannot be read or written (down, timed out, full, permission
    /// denied), a stored entry is unusable (damaged, forged or unsigned with
    /// [signing](Self::signing_key) on, undecodable), the code identity cannot be checked, and
    /// the arguments or the output cannot be hashed or serialized. A write that fails after
    /// the function ran drops its output: the error is what the caller gets.
    ///
    /// What stays a warning in strict mode: claims of [compute-once](Self::compute_once)
    /// that cannot be taken (the call computes without waiting), the wait timeout, and a result
    /// stored but not mapped back. The infallible methods (`eval`, `call_with`, ...) cannot
    /// return an error, so they warn and compute in every mode. Functions can override it
    /// ([`MemorizedFunc::strict`]); `#[memoize(strict)]` makes a function returning a
    /// `Result` strict.
    pub fn strict(mut self, on: bool) -> Self {
        self.strict = on;
        self
    }

    /// Whether [compute-once](Self::compute_once) also works across processes and machines,
    /// through claims in the store. On by default when the memory opens its store (a path, a
    /// URL, a configuration): claims then go to the shared store itself, behind a
    /// [local tier](Self::local_tier), and are not counted by [`Memory::stats`]. Off by default
    /// for a backend given as an object ([`backend`](Self::backend),
    /// [`Memory::with_backend`]): the memory cannot see past its layers, so claims would go
    /// through them (counted by their statistics, copied to their local tier); turn them on
    /// when other processes share that backend.
    ///
    /// On a backend without
    /// [`Capabilities::atomic_create`](crate::Capabilities::atomic_create) (an S3-like store
    /// without conditional writes, some custom backends) there are no claims whatever this
    /// says: callers are deduplicated within each process only.
    pub fn claims(mut self, on: bool) -> Self {
        self.claims = Some(on);
        self
    }

    /// The lease of a claim (see [`compute_once`](Self::compute_once)): how long other
    /// processes wait for a holder that stopped renewing it (it died) before one of them takes
    /// over. Renewed every third of it. The default is 30 seconds. The clocks of machines that
    /// share a store should agree to within a third of it: a clock ahead by more takes live
    /// claims for stale, and its process computes results that are being computed.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The longest a caller waits for another one computing the same result (see
    /// [`compute_once`](Self::compute_once)) before it computes the result itself, with a
    /// warning. The default is 10 minutes.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = Some(timeout);
        self
    }

    /// Stores in `backend`.
    pub fn backend(mut self, backend: DynBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Builds a disabled `Memory` (joblib's `Memory(None)`).
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// Verbosity: 0 is silent, 1 prints joblib's lines for each computation, 2 and more also
    /// for each load.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }

    /// The codec of outputs.
    pub fn codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = Some(codec);
        self
    }

    /// The hash algorithm of arguments.
    pub fn hasher(mut self, hasher: Arc<dyn HashAlgorithm>) -> Self {
        self.hasher = Some(hasher);
        self
    }

    /// Where verbose lines and warnings go.
    pub fn reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = reporter;
        self
    }

    /// How the [`Array`](crate::Array)s of outputs are loaded (joblib's `mmap_mode`); see
    /// [`MmapMode`]. Functions can override it. The default is [`MmapMode::None`].
    pub fn mmap_mode(mut self, mode: MmapMode) -> Self {
        self.mmap_mode = mode;
        self
    }

    /// Compresses outputs with zstd at `level` (joblib's `compress`). `0` turns compression off
    /// (the default); `1` to `22` trade speed for size (`3` is a good default), and negative
    /// levels favour speed further. Compressed outputs cannot be memory-mapped: with an
    /// [`mmap_mode`](Self::mmap_mode) set too, a warning says so and arrays are loaded into
    /// memory.
    pub fn compress(mut self, level: i32) -> Self {
        self.compress = (level != 0).then_some(level);
        self
    }

    /// Builds the `Memory`, creating the backend if a URL or path was given.
    pub fn build(self) -> Result<Memory> {
        if self.disabled {
            return Ok(Memory::disabled());
        }
        let signing = match self.signing_secret {
            Some(secret) => Some(SigningKey::new(secret)?),
            None => self.signing,
        };
        if let Some(invalid) = self.invalid {
            return Err(Error::Config(invalid));
        }
        let lease = self.lease.unwrap_or(DEFAULT_LEASE);
        if lease.is_zero() {
            return Err(Error::InvalidArgument(
                "the lease of compute-once claims must be longer than zero".into(),
            ));
        }
        let (backend, store) = match (self.backend, self.store, self.url) {
            (Some(b), _, _) => (b, None),
            (None, Some(config), _) => (config.build()?, Some(config)),
            (None, None, Some(url)) => {
                let config = registry::config_from_url(&url)?;
                (config.build()?, Some(config))
            }
            (None, None, None) => {
                return Err(Error::InvalidArgument(
                    "a Memory needs a location: give a path, a URL or a backend, or build a disabled Memory".into(),
                ));
            }
        };
        let mut backend = backend;
        if let Some(policy) = &self.retry {
            backend = Arc::new(Retry::new(backend, policy.clone()));
        }
        // Claims are shared state: they go to the shared store, behind any local tier.
        let shared = backend.clone();
        let claims = self.claims.unwrap_or(store.is_some());
        let mut tiered = None;
        if let Some(local) = &self.local_tier {
            let local = registry::backend_from_url(local)?;
            let tiers = Arc::new(Tiered::new(local, backend));
            tiered = Some(tiers.clone());
            backend = tiers;
        }
        let mut stats = None;
        if !self.no_stats {
            let layer = Stats::new(backend);
            stats = Some(layer.handle());
            backend = Arc::new(layer);
        }
        let location = backend.location();
        let capabilities = backend.capabilities();
        let blocking_io = capabilities.blocking_io;
        let compress = self.compress.map(|level| {
            level.clamp(
                *zstd::compression_level_range().start(),
                *zstd::compression_level_range().end(),
            )
        });
        if self.mmap_mode == MmapMode::ReadWrite && !capabilities.local_files {
            self.reporter.warn(format!(
                "{location} has no local files to map (mmap_mode r+): arrays are loaded as copy-on-write, and writes do not reach the store"
            ));
        }
        if compress.is_some() && self.mmap_mode.maps() {
            self.reporter.warn(format!(
                "compressed results cannot be memory-mapped (mmap_mode {} with compression): arrays are loaded into memory",
                self.mmap_mode
            ));
        }
        Ok(Memory {
            inner: Some(Arc::new(Inner {
                backend,
                location,
                blocking_io,
                verbose: self.verbose,
                codec: self.codec.unwrap_or_else(|| Arc::new(MessagePack)),
                hasher: self.hasher.unwrap_or_else(|| Arc::new(Xxh3)),
                reporter: self.reporter.clone(),
                checked: Mutex::default(),
                generation: AtomicU64::new(0),
                mmap_mode: self.mmap_mode,
                compress,
                local_files: capabilities.local_files,
                touched: Mutex::default(),
                store,
                local_tier: self.local_tier,
                retry: self.retry,
                stats,
                tiered,
                signing,
                once: Once::new(
                    !self.no_compute_once,
                    claims,
                    lease,
                    self.wait_timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT),
                    shared,
                    self.reporter.clone(),
                ),
                strict: self.strict,
            })),
        })
    }
}

/// A memory's statistics; see [`Memory::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// The operations the memory asked of its store (through every layer).
    pub store: BackendStats,
    /// With a local tier: reads served locally, from the store behind it, and copies made.
    pub tiers: Option<TierCounters>,
}

impl fmt::Display for MemoryStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.store)?;
        if let Some(t) = &self.tiers {
            write!(
                f,
                "; tiers: {} local hits, {} remote hits, {} copied down",
                t.local_hits, t.remote_hits, t.backfills
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn info(key: &str, size: u64, t: i64) -> ItemInfo {
        ItemInfo {
            key: Key::new(key).unwrap(),
            size,
            last_access: DateTime::from_timestamp(t, 0).unwrap(),
        }
    }

    const H1: &str = "00000000000000000000000000000001";
    const H2: &str = "00000000000000000000000000000002";
    const H3: &str = "00000000000000000000000000000003";

    #[test]
    fn least_recently_accessed_go_first() {
        let items = vec![
            info(&format!("f/{H1}"), 10, 300),
            info(&format!("f/{H2}"), 10, 100),
            info(&format!("g/{H3}"), 10, 200),
            info("f/func_code", 5, 0),
        ];
        let (doomed, report) = plan_entries(items.clone(), &SizeLimits::default().items_limit(1));
        let names: Vec<_> = doomed.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, [format!("f/{H2}"), format!("g/{H3}")]);
        assert_eq!(report.kept_items, 1);
        let (doomed, _) = plan_entries(
            items.clone(),
            &SizeLimits::default().bytes_limit("15").unwrap(),
        );
        assert_eq!(doomed.len(), 2);
        let (doomed, _) = plan_entries(items, &SizeLimits::default().age_limit(TimeDelta::zero()));
        assert_eq!(doomed.len(), 3, "age zero deletes every entry");
    }

    #[test]
    fn stale_claims_go_and_live_ones_stay() {
        let now = Utc::now().timestamp();
        let items = vec![
            info(&format!("f/{H1}"), 10, now),
            info(&format!("f/{H1}.claim"), 1, now - 7200),
            info(&format!("f/{H2}.claim"), 1, now - 60),
            info("f/other.claim", 1, 0),
        ];
        assert!(is_claim_key(&items[1].key) && !is_claim_key(&items[3].key));
        let (doomed, report) =
            plan_reduction(items, &SizeLimits::default(), Duration::from_secs(30));
        let names: Vec<_> = doomed.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, [format!("f/{H1}.claim")]);
        assert_eq!((report.deleted_items, report.kept_items), (0, 1));
    }
}
