//! [`MemoryBuilder`]: options of a [`Memory`], its store and its layers, and how it is built.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cachette_hashing::{Blake3Keyed, HashAlgorithm, Xxh3};

use crate::array::MmapMode;
use crate::backend::{DynBackend, Layer};
use crate::codec::{Codec, MessagePack};
use crate::config::MemoryConfig;
use crate::error::{Error, Result};
use crate::layers::{RetryLayer, RetryPolicy, StatsLayer, TierHandle, TieredLayer};
use crate::memory::{Memory, Origin, Shared};
use crate::once::Once;
use crate::options::Options;
use crate::registry::{self, BackendConfig};
use crate::report::Reporter;
use crate::signing::SigningKey;
use crate::size::{SizeLimits, TryIntoByteSize, check_limits};
use crate::store::EntryStore;

impl Memory {
    /// A `Memory` on the local disk at `path` (created on the first write). Needs the
    /// local-disk backend (the `fs` feature of `cachette`, on by default).
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

    /// A `Memory` from a TOML config file, with the environment applied (`CACHETTE_CONFIG`
    /// names another file, `CACHETTE_LOCATION` replaces the store; see [`crate::config`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let file = dir.path().join("cachette.toml");
    /// # std::fs::write(&file, "verbose = 0\n[backend]\ntype = \"memory\"\nname = \"doc\"\n")?;
    /// use cachette_core::Memory;
    ///
    /// let memory = Memory::from_config(&file)?;
    /// assert_eq!(memory.eval(|x: u32| x + 1, 41), 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_config(path: impl AsRef<Path>) -> Result<Memory> {
        MemoryConfig::load(path)?.build()
    }

    /// A `Memory` from the environment alone: the file `CACHETTE_CONFIG` names, else the store
    /// `CACHETTE_LOCATION` names. `Ok(None)` when neither is set.
    pub fn from_env() -> Result<Option<Memory>> {
        MemoryConfig::from_env()?.map(|c| c.build()).transpose()
    }
}

impl MemoryConfig {
    /// A builder holding this configuration, for options that only code can give (a reporter,
    /// a codec, a hash algorithm).
    pub fn builder(&self) -> Result<MemoryBuilder> {
        self.check()?;
        Ok(Memory::builder().config(self.clone()))
    }

    /// Builds the `Memory` this configuration describes.
    pub fn build(&self) -> Result<Memory> {
        self.builder()?.build()
    }
}

/// Where the store of a memory comes from.
#[derive(Default)]
enum StoreSource {
    #[default]
    None,
    /// A URL or path.
    Url(String),
    /// A backend's configuration.
    Config(Box<dyn BackendConfig>),
    /// A backend built in code.
    Backend(DynBackend),
}

impl fmt::Debug for StoreSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSource::None => f.write_str("None"),
            StoreSource::Url(url) => write!(f, "Url({:?})", crate::report::redact_url(url)),
            StoreSource::Config(config) => write!(f, "Config({config:?})"),
            StoreSource::Backend(backend) => write!(f, "Backend({backend:?})"),
        }
    }
}

/// A layer given to the builder.
#[derive(Debug, Clone)]
enum LayerSpec {
    Retry(RetryLayer),
    Tiered(TieredLayer),
    Custom(Arc<dyn Layer>),
}

/// Options of a [`Memory`], its store and its layers, and how it is built.
///
/// ```
/// use cachette_core::Memory;
/// let memory = Memory::builder().url("memory://builder-doc").verbose(1).build().unwrap();
/// assert_eq!(memory.verbose(), 1);
/// ```
#[derive(Default)]
pub struct MemoryBuilder {
    store: StoreSource,
    options: Options,
    layers: Vec<LayerSpec>,
    disabled: bool,
    codec: Option<Arc<dyn Codec>>,
    hasher: Option<Arc<dyn HashAlgorithm>>,
    reporter: Reporter,
    signing: Option<SigningKey>,
    signing_secret: Option<String>,
    previous_secrets: Option<Vec<String>>,
    /// The first invalid limit given to a setter, reported by `build`.
    invalid_limit: Option<Error>,
}

impl fmt::Debug for MemoryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBuilder")
            .field("store", &self.store)
            .field("options", &self.options)
            .field("layers", &self.layers)
            .field("disabled", &self.disabled)
            .field(
                "signing",
                &(self.signing.is_some() || self.signing_secret.is_some()),
            )
            .finish_non_exhaustive()
    }
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
        self.store = StoreSource::Url(url.into());
        self
    }

    /// Stores in the backend `config` describes; the memory's [`Memory::config`] then gives a
    /// configuration that rebuilds it elsewhere.
    pub fn backend_config(mut self, config: Box<dyn BackendConfig>) -> Self {
        self.store = StoreSource::Config(config);
        self
    }

    /// Stores in `backend`.
    pub fn backend(mut self, backend: DynBackend) -> Self {
        self.store = StoreSource::Backend(backend);
        self
    }

    /// Takes the store, the layers and the options of `config` (see [`MemoryConfig`]):
    /// `[retry]` next to the store, then `local_tier`. Options set on the builder afterwards
    /// win.
    pub fn config(mut self, config: MemoryConfig) -> Self {
        self.disabled = !config.enabled;
        self.store = match (config.backend, config.location) {
            (Some(backend), _) => StoreSource::Config(backend),
            (None, Some(url)) => StoreSource::Url(url),
            (None, None) => StoreSource::None,
        };
        self.options = config.options;
        self.layers.clear();
        if let Some(policy) = config.retry {
            self = self.retry(policy);
        }
        if let Some(local) = config.local_tier {
            self = self.local_tier(local);
        }
        self.signing_secret = config.signing_key.map(|s| s.0);
        self.signing = None;
        self.previous_secrets = (!config.previous_signing_keys.is_empty()).then(|| {
            config
                .previous_signing_keys
                .into_iter()
                .map(|s| s.0)
                .collect()
        });
        self
    }

    /// Sets every option at once (see [`Options`]).
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Wraps the stack built so far in `layer`: layers apply in the order given, the first next
    /// to the store, the last outermost (see [`Layer`]). The statistics of
    /// [`stats`](Self::stats) sit outside every layer.
    pub fn layer(mut self, layer: impl Layer) -> Self {
        self.layers.push(LayerSpec::Custom(Arc::new(layer)));
        self
    }

    /// Signs every entry written with `key`, and refuses (with a warning, then computes again)
    /// every entry read that is not signed with it. See [`SigningKey`].
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing = Some(key);
        self.signing_secret = None;
        self
    }

    /// Also accepts entries signed with these previous keys' secrets while keys are rotated
    /// (see [`SigningKey::with_previous`]); `CACHETTE_PREVIOUS_SIGNING_KEYS` gives them when
    /// this is not called.
    pub fn previous_signing_keys<I, S>(mut self, secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.previous_secrets = Some(secrets.into_iter().map(Into::into).collect());
        self
    }

    /// Puts a local tier in front of the store: a location (a path, or any URL; usually the
    /// local disk) that keeps a copy of the entries read or written, so that hits are served
    /// locally and, on the local disk, arrays can be memory-mapped. Reads that miss locally go
    /// to the store and are copied down; writes go to both. See [`Tiered`](crate::layers::Tiered). It is a
    /// [`TieredLayer`] around the stack built so far (see [`layer`](Self::layer)).
    pub fn local_tier(mut self, location: impl Into<String>) -> Self {
        self.layers
            .push(LayerSpec::Tiered(TieredLayer::new(location.into())));
        self
    }

    /// Retries the store's operations that fail with a transient error (unreachable, timed
    /// out), as `policy` says; see [`Retry`](crate::layers::Retry). It is a [`RetryLayer`] around the stack built so far (see
    /// [`layer`](Self::layer)): give it before [`local_tier`](Self::local_tier) to retry only
    /// the store behind the tier, as a config file does.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.layers.push(LayerSpec::Retry(RetryLayer::new(policy)));
        self
    }

    /// Whether to count the store's operations for [`Memory::stats`] and emit a tracing event
    /// for each (target `cachette::stats`, level debug). On by default; counting costs a few
    /// atomic additions per operation.
    pub fn stats(mut self, on: bool) -> Self {
        self.options.stats = on;
        self
    }

    /// Whether concurrent misses of one key compute it once (on by default). When several
    /// callers miss the same key at once, one computes and the others wait for its entry, then
    /// load it: threads and async tasks of this process, and other processes and machines that
    /// share the store. Hits cost nothing more: all of it happens after a miss. Functions can
    /// override it ([`MemorizedFunc::compute_once`](crate::MemorizedFunc::compute_once)).
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
    /// Forced runs ([`MemorizedFunc::call`](crate::MemorizedFunc::call), `force_call_with`) never wait.
    pub fn compute_once(mut self, on: bool) -> Self {
        self.options.compute_once = on;
        self
    }

    /// Whether a memory-mapped load checks its arrays against their block checksums (on by
    /// default). A map defers reading an array's pages to their first use, so an array
    /// damaged on disk (a bit flip, another program's write) would otherwise be served as it
    /// is; checking reads every page once when the entry is loaded, about a tenth of a second
    /// per gigabyte from the page cache. Turn it off only for a store nobody else writes to.
    /// Strict mode checks whatever this says, and with a [signing key](Self::signing_key)
    /// entries are never mapped: their signature covers bytes that a map would read later.
    pub fn verify_maps(mut self, on: bool) -> Self {
        self.options.verify_maps = on;
        self
    }

    /// Hardened argument keys (off by default), for a store that people this memory does not
    /// trust can write to. The default keys (xxh3-128) are fast and collide only by accident,
    /// but not against someone who builds a collision on purpose: two different arguments
    /// with one key can be built in no time, and a writer of the store could then make one
    /// caller's result be served for another's arguments. With hardened keys, argument keys
    /// come from BLAKE3 in keyed mode, keyed from the [signing key](Self::signing_key)
    /// (required), so nobody without the key can build a collision.
    ///
    /// It costs little on small arguments (about as much as xxh3 for a number, a third more
    /// for a short string) and about three times xxh3's time on large ones (1 to 3 GB/s
    /// instead of 3 to 4). All entries of a memory change keys when it is turned on, and when
    /// the signing key changes (the previous keys sign nothing new): the store then starts
    /// afresh. Config key `hardened_keys`.
    pub fn hardened_keys(mut self, on: bool) -> Self {
        self.options.hardened_keys = on;
        self
    }

    /// The most bytes a compressed entry may decompress to when it is read (4 GiB by
    /// default). Every compressed entry announces its size; one that announces more, or holds
    /// another size than it announces, is refused as damaged (a warning and a recomputation),
    /// so an entry of a few kilobytes written by someone else cannot make this memory
    /// allocate gigabytes. This memory writes an output larger than the limit uncompressed,
    /// so that it stays readable; raise the limit for outputs larger than 4 GiB that should be
    /// compressed.
    pub fn max_decompressed_size(mut self, bytes: u64) -> Self {
        self.options.max_decompressed_size = bytes;
        self
    }

    /// Strict mode (off by default): the fallible methods of memoized functions
    /// ([`MemorizedFunc::try_eval`](crate::MemorizedFunc::try_eval), [`try_call_with`](crate::MemorizedFunc::try_call_with), and the
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
    /// ([`MemorizedFunc::strict`](crate::MemorizedFunc::strict)); `#[memoize(strict)]` makes a function returning a
    /// `Result` strict.
    pub fn strict(mut self, on: bool) -> Self {
        self.options.strict = on;
        self
    }

    /// Whether [compute-once](Self::compute_once) also works across processes and machines,
    /// through claims in the store. On by default when the memory opens its store (a path, a
    /// URL, a configuration): claims then go to the shared store itself, behind a
    /// [local tier](Self::local_tier), and are not counted by [`Memory::stats`]. Off by default
    /// for a backend given as an object ([`backend`](Self::backend),
    /// [`Memory::with_backend`]): turn them on when other processes share that backend.
    ///
    /// On a backend without
    /// [`Capabilities::atomic_create`](crate::plugin::Capabilities::atomic_create) (an S3-like store
    /// without conditional writes, some custom backends) there are no claims whatever this
    /// says: callers are deduplicated within each process only.
    pub fn claims(mut self, on: bool) -> Self {
        self.options.claims = Some(on);
        self
    }

    /// The lease of a claim (see [`compute_once`](Self::compute_once)): how long other
    /// processes wait for a holder that stopped renewing it (it died) before one of them takes
    /// over. Renewed every third of it. The default is 30 seconds. The clocks of machines that
    /// share a store should agree to within a third of it: a clock ahead by more takes live
    /// claims for stale, and its process computes results that are being computed.
    ///
    /// A claim in the store that announces a longer lease than this one counts as this long:
    /// a claim planted with a lease of a year makes callers wait one lease, not the whole
    /// [`wait_timeout`](Self::wait_timeout). Processes that share a store should therefore use
    /// leases within a factor of three of each other (a holder renews every third of its own
    /// lease); a longer one is taken over by the others, which then compute too.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.options.lease = lease;
        self
    }

    /// The longest a caller waits for another one computing the same result (see
    /// [`compute_once`](Self::compute_once)) before it computes the result itself, with a
    /// warning. The default is 10 minutes.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.options.wait_timeout = timeout;
        self
    }

    /// Keeps the store within `limit` bytes of entries (a size string such as `"10G"`,
    /// `"500M"` or `"1.5GiB"`, K = 1024, or a number of bytes), as
    /// [`Memory::reduce_size`] would, automatically after writes: least recently accessed
    /// entries go first. Config key `bytes_limit`. An invalid size makes
    /// [`build`](Self::build) fail.
    ///
    /// Clean-ups run on a thread of the memory, never on the caller's: at most one per
    /// [`limits_interval`](Self::limits_interval) while entries are written, and one at once
    /// whenever a tenth of a limit was written since the last, so that a burst overshoots a
    /// limit by about a tenth of it. Each clean-up lists the store (what `reduce_size` does), and
    /// deletes only entries, never a claim held by a live writer or its temporary files. Each
    /// process keeps the limits after its own writes; processes sharing a store each do it.
    /// See [`Memory::wait_for_clean_up`].
    ///
    /// ```
    /// use cachette_core::Memory;
    /// let memory = Memory::builder()
    ///     .url("memory://limits-doc")
    ///     .bytes_limit("10M")
    ///     .items_limit(10_000)
    ///     .age_limit(std::time::Duration::from_secs(7 * 24 * 3600))
    ///     .build()
    ///     .unwrap();
    /// # let _ = memory;
    /// ```
    pub fn bytes_limit(mut self, limit: impl TryIntoByteSize) -> Self {
        match limit.try_into_byte_size() {
            Ok(limit) => self.options.bytes_limit = Some(limit),
            Err(e) => {
                self.invalid_limit.get_or_insert(e);
            }
        }
        self
    }

    /// Keeps the decoded outputs of this process's hits and misses in memory, at most `size`
    /// bytes of them (a size string such as `"64M"`, or a number of bytes), for the functions
    /// that ask for it with [`MemorizedFunc::memo`](crate::MemorizedFunc::memo): a repeated
    /// hit is then a lookup and a clone of the output, without reading the store. Config key
    /// `memo_size`; default none (no memo). An invalid size makes [`build`](Self::build) fail.
    ///
    /// Each value counts the size of its stored entry; the least useful go first when the memo
    /// is full. Values are used only by the code that made them, their validation callback
    /// (such as [`expires_after`](crate::expires_after)) runs on every hit, and this memory's
    /// writes, deletes and clears drop them. Another memory's or process's writes and deletes
    /// are not seen: a value stays until this memory evicts it. Outputs loaded with a memory map
    /// ([`MmapMode`](crate::MmapMode) other than `None`) are not kept.
    ///
    /// ```
    /// use cachette_core::Memory;
    /// let memory = Memory::builder()
    ///     .url("memory://memo-doc")
    ///     .memo_size("64M")
    ///     .build()
    ///     .unwrap();
    /// let square = memory.cache(|x: u64| x * x).memo();
    /// assert_eq!(square.eval(12), 144); // computed and stored
    /// assert_eq!(square.eval(12), 144); // from the memo
    /// ```
    pub fn memo_size(mut self, size: impl TryIntoByteSize) -> Self {
        match size.try_into_byte_size() {
            Ok(size) => self.options.memo_size = Some(size),
            Err(e) => {
                self.invalid_limit.get_or_insert(e);
            }
        }
        self
    }

    /// Keeps at most `limit` entries in the store, automatically after writes, least recently
    /// accessed first; see [`bytes_limit`](Self::bytes_limit). Config key `items_limit`.
    pub fn items_limit(mut self, limit: usize) -> Self {
        self.options.items_limit = Some(limit);
        self
    }

    /// Deletes entries not accessed for `limit`, automatically after writes; see
    /// [`bytes_limit`](Self::bytes_limit). Config key `age_limit` (`"7d"`, `"12h"`, or a
    /// number of seconds). Entries age while nothing is written, but are only deleted by a
    /// clean-up, which writes bring about.
    pub fn age_limit(mut self, limit: Duration) -> Self {
        self.options.age_limit = Some(limit);
        self
    }

    /// Sets the three limits from one [`SizeLimits`], as [`Memory::reduce_size`] takes them
    /// (limits it leaves unset are unset here too). A negative age limit makes
    /// [`build`](Self::build) fail.
    pub fn limits(mut self, limits: SizeLimits) -> Self {
        if let Err(e) = check_limits(&limits) {
            self.invalid_limit.get_or_insert(e);
        }
        self.options.bytes_limit = limits.bytes_limit;
        self.options.items_limit = limits.items_limit;
        self.options.age_limit = limits.age_limit.and_then(|age| age.to_std().ok());
        self
    }

    /// The shortest time between two automatic clean-ups of the size limits (60 seconds by
    /// default), unless a tenth of a limit was written since the last one; see
    /// [`bytes_limit`](Self::bytes_limit). Zero checks after every write (one clean-up at a
    /// time still). Config key `limits_interval_secs`.
    pub fn limits_interval(mut self, interval: Duration) -> Self {
        self.options.limits_interval = interval;
        self
    }

    /// The shortest time between two writes of the call statistics (see
    /// [`Memory::call_stats`]) to the store, where `cachette stats` and
    /// [`Memory::stored_stats`] read them across processes: 300 seconds by default. Each
    /// memory writes one small item at most once per interval, off the callers' threads, and
    /// once more when its last clone is dropped. Zero keeps the statistics in the process.
    /// Config key `call_stats_interval_secs`.
    pub fn call_stats_interval(mut self, interval: Duration) -> Self {
        self.options.call_stats_interval = interval;
        self
    }

    /// The circuit breaker: after `threshold` faults of the store in a row (5 by default),
    /// calls skip the store for `cooldown` (30 seconds by default), computing and returning
    /// their values without reading or writing it, so that an unreachable or hung store does
    /// not cost its timeout on every call. One warning says when it opens, one line when it
    /// closes. After the cool-down one call tries the store again (the others keep skipping
    /// it); its first successful operation closes the breaker. While it is open, strict calls
    /// (see [`strict`](Self::strict)) fail with a temporary
    /// [`ErrorKind::Unavailable`](crate::error::ErrorKind::Unavailable) error instead.
    /// Faults about one key or item (an invalid key, an item too large) do not count.
    /// A `threshold` of 0 turns the breaker off. Config keys `breaker_threshold` and
    /// `breaker_cooldown_secs`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cachette_core::Memory;
    /// let memory = Memory::builder()
    ///     .url("memory://breaker-doc")
    ///     .breaker(3, Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// # let _ = memory;
    /// ```
    pub fn breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.options.breaker_threshold = threshold;
        self.options.breaker_cooldown = cooldown;
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
        self.options.verbose = verbose;
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
        self.options.mmap_mode = mode;
        self
    }

    /// Compresses outputs with zstd at `level` (joblib's `compress`). `0` turns compression off
    /// (the default); `1` to `22` trade speed for size (`3` is a good default), and negative
    /// levels favour speed further. Compressed outputs cannot be memory-mapped: with an
    /// [`mmap_mode`](Self::mmap_mode) set too, a warning says so and arrays are loaded into
    /// memory.
    pub fn compress(mut self, level: i32) -> Self {
        self.options.compress = (level != 0).then_some(level);
        self
    }

    /// Builds the `Memory`, creating the backend if a URL or path was given, and stacking the
    /// layers in the order given.
    pub fn build(self) -> Result<Memory> {
        if self.disabled {
            return Ok(Memory::disabled());
        }
        if let Some(e) = self.invalid_limit {
            return Err(e);
        }
        self.options.validate().map_err(Error::Config)?;
        // The one place that reads the environment's signing keys, for every constructor.
        let signing = match (self.signing_secret, self.signing) {
            (Some(secret), _) => Some(SigningKey::new(secret)?),
            (None, Some(key)) => Some(key),
            (None, None) => crate::config::env_var(crate::config::SIGNING_KEY_ENV)
                .map(SigningKey::new)
                .transpose()?,
        };
        let previous = self.previous_secrets.or_else(|| {
            crate::config::previous_keys_from_env()
                .map(|keys| keys.into_iter().map(|s| s.0).collect())
        });
        let signing = match (signing, previous) {
            (Some(key), Some(previous)) => Some(key.with_previous(previous)?),
            (key, _) => key,
        };
        let hasher = argument_hasher(&self.options, self.hasher, signing.as_ref())?;
        let (mut backend, config, opened) = match self.store {
            StoreSource::Backend(backend) => (backend, None, false),
            StoreSource::Config(config) => (config.build()?, Some(config), true),
            StoreSource::Url(url) => {
                let config = registry::config_from_url(&url)?;
                (config.build()?, Some(config), true)
            }
            StoreSource::None => {
                return Err(Error::InvalidArgument(
                    "a Memory needs a location: give a path, a URL or a backend, or build a disabled Memory".into(),
                ));
            }
        };
        let mut tiers: Option<TierHandle> = None;
        for spec in &self.layers {
            let layer: &dyn Layer = match spec {
                LayerSpec::Retry(layer) => layer,
                LayerSpec::Tiered(layer) => {
                    tiers.get_or_insert_with(|| layer.handle());
                    layer
                }
                LayerSpec::Custom(layer) => &**layer,
            };
            backend = layer.layer(backend)?;
        }
        let mut stats = None;
        if self.options.stats {
            let layer = StatsLayer::new();
            stats = Some(layer.handle());
            backend = layer.layer(backend)?;
        }
        let origin = config.and_then(|backend| origin_of(backend, &self.layers));
        let mut options = self.options;
        if let Some(verbose) = crate::config::verbose_from_env()? {
            options.verbose = options.verbose.max(verbose);
        }
        let capabilities = backend.capabilities();
        let location = backend.location();
        let compress = options.compression();
        if options.mmap_mode == MmapMode::ReadWrite && !capabilities.local_files {
            self.reporter.warn(format!(
                "{location} has no local files to map (mmap_mode r+): arrays are loaded as copy-on-write, and writes do not reach the store"
            ));
        }
        if signing.is_some() && options.mmap_mode.maps() {
            self.reporter.warn(format!(
                "signed results are not memory-mapped (mmap_mode {} with a signing key): arrays are loaded into memory once their signature is checked",
                options.mmap_mode
            ));
        }
        if compress.is_some() && options.mmap_mode.maps() {
            self.reporter.warn(format!(
                "compressed results cannot be memory-mapped (mmap_mode {} with compression): arrays are loaded into memory",
                options.mmap_mode
            ));
        }
        let once = Once::new(
            options.compute_once,
            options.claims.unwrap_or(opened),
            options.lease,
            options.wait_timeout,
            backend.clone(),
            self.reporter.clone(),
        );
        let store = EntryStore::new(
            backend,
            self.codec.unwrap_or_else(|| Arc::new(MessagePack)),
            signing,
            compress,
            options.max_decompressed_size,
        )
        .with_breaker(crate::breaker::Breaker::new(
            options.breaker_threshold,
            options.breaker_cooldown,
            self.reporter.clone(),
            &location,
        ))
        .with_memo(options.memo_size.map_or(0, |size| size.0));
        let limits = options.size_limits();
        let interval = options.limits_interval;
        let call_stats_interval =
            Some(options.call_stats_interval).filter(|interval| !interval.is_zero());
        Ok(Memory {
            shared: Some(Arc::new_cyclic(|me| Shared {
                store,
                options,
                once,
                reporter: self.reporter,
                hasher,
                stats,
                tiers,
                origin,
                limits: crate::limits::Keeper::new(limits, interval, me),
                usage: crate::usage::Usage::new(call_stats_interval),
            })),
        })
    }
}

/// The algorithm of argument keys: the one given, keyed BLAKE3 from the signing key with
/// hardened keys, else xxh3-128.
fn argument_hasher(
    options: &Options,
    given: Option<Arc<dyn HashAlgorithm>>,
    signing: Option<&SigningKey>,
) -> Result<Arc<dyn HashAlgorithm>> {
    if !options.hardened_keys {
        return Ok(given.unwrap_or_else(|| Arc::new(Xxh3)));
    }
    if given.is_some() {
        return Err(Error::Config(
            "hardened_keys chooses the hash of arguments: give no hasher with it".into(),
        ));
    }
    let key = signing.ok_or_else(|| {
        Error::Config(
            "hardened_keys needs a signing key (signing_key, or CACHETTE_SIGNING_KEY): argument keys are keyed from it".into(),
        )
    })?;
    let keyed = Blake3Keyed::from_secret(&key.secret().0)
        .map_err(|e| Error::Config(format!("hardened_keys: {e}")))?;
    Ok(Arc::new(keyed))
}

/// The configuration that rebuilds a store built from `backend` with `layers`: only layers a
/// config file describes, in its order (retries next to the store, then the local tier).
fn origin_of(backend: Box<dyn BackendConfig>, layers: &[LayerSpec]) -> Option<Origin> {
    let mut origin = Origin {
        backend,
        retry: None,
        local_tier: None,
    };
    for spec in layers {
        match spec {
            LayerSpec::Retry(layer) if origin.retry.is_none() && origin.local_tier.is_none() => {
                origin.retry = Some(layer.policy().clone());
            }
            LayerSpec::Tiered(layer) if origin.local_tier.is_none() => {
                origin.local_tier = Some(layer.location().to_owned());
            }
            _ => return None,
        }
    }
    Some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_stack_in_the_order_given() {
        let memory = Memory::builder()
            .url("memory://builder-layers")
            .retry(RetryPolicy::default())
            .local_tier("memory://builder-layers-local")
            .build()
            .unwrap();
        let shipped = memory.config().unwrap();
        assert!(shipped.retry.is_some() && shipped.local_tier.is_some());
        // A tier first and retries around it: no configuration says that.
        let memory = Memory::builder()
            .url("memory://builder-layers")
            .local_tier("memory://builder-layers-local")
            .retry(RetryPolicy::default())
            .build()
            .unwrap();
        assert!(memory.config().is_none());
        assert_eq!(
            memory.location(),
            Some("memory://builder-layers"),
            "the shared store"
        );
    }
}
