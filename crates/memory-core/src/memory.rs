//! [`Memory`]: a context for lazy evaluation, over any backend.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cachette_hashing::HashAlgorithm;
use chrono::{DateTime, Utc};

use crate::array::MmapMode;
use crate::backend::DynBackend;
use crate::config::MemoryConfig;
use crate::entry::Metadata;
use crate::error::{Error, Result};
use crate::key::grammar;
use crate::layers::{BackendStats, RetryPolicy, StatsHandle, TierCounters, TierHandle};
use crate::once::Once;
use crate::options::Options;
use crate::reach::{Reach, finish};
use crate::registry::BackendConfig;
use crate::report::Reporter;
use crate::signing::SigningKey;
use crate::size::{ReduceReport, SizeLimits};
use crate::store::{EntryStore, StoredIdentity};
use crate::usage::{CallStats, StoredStats};

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
    pub(crate) shared: Option<Arc<Shared>>,
}

/// What the clones of an enabled [`Memory`] share.
pub(crate) struct Shared {
    /// The entries, in the backend stack.
    pub(crate) store: EntryStore,
    /// The options, validated.
    pub(crate) options: Options,
    /// Compute-once: the flights of this process and the claims.
    pub(crate) once: Once,
    pub(crate) reporter: Reporter,
    pub(crate) hasher: Arc<dyn HashAlgorithm>,
    /// The counters of the statistics layer, unless turned off.
    pub(crate) stats: Option<StatsHandle>,
    /// The counters of the local tier, with one.
    pub(crate) tiers: Option<TierHandle>,
    /// How the store was built, when a configuration can rebuild it.
    pub(crate) origin: Option<Origin>,
    /// Keeps the store within the size limits of the options, if any.
    pub(crate) limits: Option<crate::limits::Keeper>,
    /// The call statistics of its functions.
    pub(crate) usage: crate::usage::Usage,
}

impl Drop for Shared {
    fn drop(&mut self) {
        crate::usage::stored::flush_at_drop(self);
    }
}

/// The configuration of a store and its layers, as [`Memory::config`] ships it.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) backend: Box<dyn BackendConfig>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) local_tier: Option<String>,
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shared {
            None => f.write_str("Memory(disabled)"),
            Some(shared) => f
                .debug_struct("Memory")
                .field("location", &shared.store.location())
                .field("backend", shared.store.backend())
                .field("codec", &shared.store.codec().id())
                .field("hasher", &shared.hasher.id())
                .field("options", &shared.options)
                .field("signed", &shared.store.signing().is_some())
                .finish(),
        }
    }
}

impl Memory {
    /// A disabled `Memory`: every call runs the function, nothing is stored.
    pub fn disabled() -> Memory {
        Memory { shared: None }
    }

    /// Whether results are stored.
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// The location of the store, as a URL (a path for the local disk); `None` when disabled.
    pub fn location(&self) -> Option<&str> {
        self.shared.as_ref().map(|s| s.store.location())
    }

    /// The options; the defaults when disabled.
    pub fn options(&self) -> Options {
        self.shared
            .as_ref()
            .map_or_else(Options::default, |s| s.options.clone())
    }

    /// The configuration that rebuilds this memory elsewhere (its store, layers and options),
    /// to ship to workers on other machines; see [`MemoryConfig`]. `None` for a memory on a
    /// backend given as an object ([`Memory::with_backend`]) or with layers a configuration
    /// cannot describe, which have no configuration to give. A disabled memory gives a
    /// disabled configuration.
    ///
    /// The signing key is left out: workers take theirs from their environment
    /// (`CACHETTE_SIGNING_KEY`), or use [`config_with_secrets`](Self::config_with_secrets).
    pub fn config(&self) -> Option<MemoryConfig> {
        let mut config = self.config_with_secrets()?;
        config.signing_key = None;
        config.previous_signing_keys.clear();
        Some(config)
    }

    /// [`config`](Self::config), with the signing key and the previous keys: for a channel as
    /// private as the keys themselves.
    pub fn config_with_secrets(&self) -> Option<MemoryConfig> {
        let Some(shared) = &self.shared else {
            return Some(MemoryConfig {
                enabled: false,
                ..MemoryConfig::default()
            });
        };
        let origin = shared.origin.as_ref()?;
        let mut config = MemoryConfig::from_backend(origin.backend.clone());
        config.options = shared.options.clone();
        config.local_tier.clone_from(&origin.local_tier);
        config.retry.clone_from(&origin.retry);
        config.signing_key = shared.store.signing().map(|k| k.secret().clone());
        config.previous_signing_keys = shared
            .store
            .signing()
            .map(SigningKey::previous_secrets)
            .unwrap_or_default();
        Some(config)
    }

    /// What the memory asked of its store so far: hits, misses, bytes, latency; and, with a
    /// local tier, where reads were served from. `None` when disabled or built with
    /// [`stats(false)`](crate::MemoryBuilder::stats).
    pub fn stats(&self) -> Option<MemoryStats> {
        let shared = self.shared.as_ref()?;
        Some(MemoryStats {
            calls: shared.usage.total(),
            store: shared.stats.as_ref()?.snapshot(),
            tiers: shared.tiers.as_ref().map(TierHandle::snapshot),
        })
    }

    /// What the calls of each function of this memory did in this process, by exact name:
    /// calls, hits, misses, compute time and time saved, counted once per call (not per store
    /// operation). Empty when disabled. [`stored_stats`](Self::stored_stats) gives the counts
    /// of every process that shares the store.
    pub fn call_stats(&self) -> BTreeMap<String, CallStats> {
        let Some(shared) = &self.shared else {
            return BTreeMap::new();
        };
        let mut by_name = BTreeMap::new();
        for (name, stats) in shared.usage.snapshot().into_values() {
            by_name
                .entry(name)
                .or_insert_with(CallStats::default)
                .add(&stats);
        }
        by_name
    }

    /// The call statistics every process that shares the store wrote there, summed by
    /// function: what `cachette stats` shows. Memories write theirs at most once per
    /// [`call_stats_interval`](crate::MemoryBuilder::call_stats_interval) and when their last
    /// clone is dropped; [`flush_stats`](Self::flush_stats) writes this memory's at once.
    /// Reads only: it writes and deletes nothing.
    pub fn stored_stats(&self) -> Result<StoredStats> {
        let Some(shared) = &self.shared else {
            return Ok(StoredStats::default());
        };
        finish(crate::usage::stored::read_all(shared, Reach::Blocking))
    }

    /// Writes this memory's call statistics to the store now (when they changed since the
    /// last write), as it does by itself once per
    /// [`call_stats_interval`](crate::MemoryBuilder::call_stats_interval): for a process that
    /// keeps its memory in a `static` (as `#[memoize]`'s global memory), which is never
    /// dropped, before it ends. Nothing to do when the interval is zero, or when disabled.
    pub fn flush_stats(&self) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        crate::usage::stored::flush(shared)
    }

    /// Sets the counters of [`stats`](Self::stats) back to zero (not the tiers').
    pub fn reset_stats(&self) {
        if let Some(stats) = self.shared.as_ref().and_then(|s| s.stats.as_ref()) {
            stats.reset();
        }
    }

    /// The backend stack; `None` when disabled.
    pub fn backend(&self) -> Option<&DynBackend> {
        self.shared.as_ref().map(|s| s.store.backend())
    }

    /// The verbosity.
    pub fn verbose(&self) -> u8 {
        self.shared.as_ref().map_or(0, |s| s.options.verbose)
    }

    /// How arrays of outputs are loaded, unless a function says otherwise.
    pub fn mmap_mode(&self) -> MmapMode {
        self.shared
            .as_ref()
            .map_or(MmapMode::None, |s| s.options.mmap_mode)
    }

    /// The zstd level outputs are compressed with, if they are.
    pub fn compression(&self) -> Option<i32> {
        self.shared.as_ref().and_then(|s| s.store.compression())
    }

    /// Whether functions compute once under concurrency unless they say otherwise; see
    /// [`MemoryBuilder::compute_once`](crate::MemoryBuilder::compute_once). `false` when
    /// disabled.
    pub fn compute_once(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.once.enabled)
    }

    /// Whether compute-once takes claims in the store, to work across processes; see
    /// [`MemoryBuilder::claims`](crate::MemoryBuilder::claims).
    pub fn claims(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.once.claims)
    }

    /// The lease of the claims this memory takes; see
    /// [`MemoryBuilder::lease`](crate::MemoryBuilder::lease).
    pub fn lease(&self) -> Duration {
        self.shared
            .as_ref()
            .map_or_else(|| Options::default().lease, |s| s.options.lease)
    }

    /// How long a caller waits for another one's result before computing it anyway; see
    /// [`MemoryBuilder::wait_timeout`](crate::MemoryBuilder::wait_timeout).
    pub fn wait_timeout(&self) -> Duration {
        self.shared.as_ref().map_or_else(
            || Options::default().wait_timeout,
            |s| s.options.wait_timeout,
        )
    }

    /// Whether the fallible methods of its functions return faults of the store as errors
    /// (see [`MemoryBuilder::strict`](crate::MemoryBuilder::strict)). `false` when disabled.
    pub fn strict(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.options.strict)
    }

    /// The key entries are signed and checked with, if any.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.shared.as_ref().and_then(|s| s.store.signing())
    }

    /// Sweeps what interrupted writers left behind, without touching any entry: on the local
    /// disk, the temporary files of processes of this host that are gone (killed mid-write) and
    /// any older than an hour. [`reduce_size`](Self::reduce_size) and [`clear`](Self::clear)
    /// do it too. Returns how many entries the store holds.
    pub fn housekeeping(&self) -> Result<usize> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        finish(shared.store.housekeeping(Reach::Blocking))
    }

    /// Probes the store: writes one small item under `cachette/_check/`, reads it back and
    /// deletes it, timing each step, as a start-up check. Past any local tier, to the store
    /// itself. It deletes only the item it wrote. A store that cannot be written but can be
    /// read is [`CheckStatus::ReadOnly`](crate::CheckStatus::ReadOnly); one that answers
    /// neither is [`Unreachable`](crate::CheckStatus::Unreachable). The verdict is in the
    /// [`StoreCheck`](crate::StoreCheck): faults of the store are not errors here. The
    /// circuit breaker (see [`MemoryBuilder::breaker`](crate::MemoryBuilder::breaker)) does not
    /// stop the check. An error only for a disabled memory, which has no store.
    ///
    /// ```
    /// use cachette_core::{CheckStatus, Memory};
    /// let memory = Memory::from_url("memory://check-doc").unwrap();
    /// let check = memory.check().unwrap();
    /// assert_eq!(check.status, CheckStatus::Ok);
    /// ```
    pub fn check(&self) -> Result<crate::StoreCheck> {
        finish(self.check_with(Reach::Blocking))
    }

    /// [`check`](Self::check), for async callers.
    pub async fn check_async(&self) -> Result<crate::StoreCheck> {
        self.check_with(Reach::Task).await
    }

    async fn check_with(&self, reach: Reach) -> Result<crate::StoreCheck> {
        let Some(shared) = &self.shared else {
            return Err(Error::InvalidArgument(
                "a disabled memory has no store to check".into(),
            ));
        };
        let store = &shared.store;
        Ok(crate::check::check(
            reach,
            store.backend(),
            store.capabilities().blocking_io,
            &crate::report::redact_url(store.location()),
        )
        .await)
    }

    /// Deletes every stored result of every function (and the claims and identity items that
    /// go with them). Nothing else in the location is touched.
    pub fn clear(&self) -> Result<()> {
        finish(self.clear_with(Reach::Blocking))
    }

    /// [`clear`](Self::clear), for async callers.
    pub async fn clear_async(&self) -> Result<()> {
        self.clear_with(Reach::Task).await
    }

    async fn clear_with(&self, reach: Reach) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        if shared.options.verbose > 0 {
            shared.reporter.line(format!(
                "[Memory(location={})]: Flushing completely the cache",
                shared.store.location()
            ));
        }
        shared.store.clear(reach).await
    }

    /// Deletes stored results until the store is within `limits`: first entries last accessed
    /// longer ago than the age limit, then least recently accessed entries until at most the
    /// item and byte limits remain. Access is tracked by the library on every hit, not by the
    /// file system's atime.
    ///
    /// It also deletes the claims of [compute-once](crate::MemoryBuilder::compute_once) that
    /// nobody renewed for an hour (and three leases), left by processes that died; they are not
    /// counted in the report.
    pub fn reduce_size(&self, limits: &SizeLimits) -> Result<ReduceReport> {
        finish(self.reduce_with(Reach::Blocking, limits))
    }

    /// [`reduce_size`](Self::reduce_size), for async callers.
    pub async fn reduce_size_async(&self, limits: &SizeLimits) -> Result<ReduceReport> {
        self.reduce_with(Reach::Task, limits).await
    }

    async fn reduce_with(&self, reach: Reach, limits: &SizeLimits) -> Result<ReduceReport> {
        let Some(shared) = &self.shared else {
            return Ok(ReduceReport::default());
        };
        shared
            .store
            .reduce(reach, limits, shared.options.lease)
            .await
    }

    /// The store's entries, sorted by function and arguments: every function's, or those of
    /// the function whose folder is `func`. Reads nothing but the listing, and records no access.
    pub fn entries(&self, func: Option<&str>) -> Result<Vec<EntryInfo>> {
        let Some(shared) = &self.shared else {
            return Ok(Vec::new());
        };
        let prefix = match func {
            Some(folder) => grammar::folder(folder)?,
            None => grammar::root(),
        };
        let items = finish(shared.store.entries(Reach::Blocking, &prefix))?;
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let (func, args_id) = grammar::split(&item.key)?;
                Some(EntryInfo {
                    func: func.to_owned(),
                    args_id: args_id.to_owned(),
                    size: item.size,
                    last_access: item.last_access,
                })
            })
            .collect())
    }

    /// The functions with results in the store, by folder, with their exact names (read from
    /// their identity items), how many entries they hold, how many bytes, and their last
    /// access. Records no access.
    pub fn functions(&self) -> Result<Vec<FunctionInfo>> {
        let Some(shared) = &self.shared else {
            return Ok(Vec::new());
        };
        let items = finish(shared.store.items(Reach::Blocking, &grammar::root()))?;
        let mut by_folder: std::collections::BTreeMap<String, FunctionInfo> = Default::default();
        for item in &items {
            let Some((folder, _)) = grammar::split(&item.key) else {
                continue;
            };
            let info = by_folder
                .entry(folder.to_owned())
                .or_insert_with(|| FunctionInfo {
                    folder: folder.to_owned(),
                    name: None,
                    entries: 0,
                    bytes: 0,
                    last_access: None,
                });
            if grammar::is_entry(&item.key) {
                info.entries += 1;
                info.bytes = info.bytes.saturating_add(item.size);
                info.last_access = info.last_access.max(Some(item.last_access));
            }
        }
        for info in by_folder.values_mut() {
            if let Ok(Some(StoredIdentity::Trusted(stored))) =
                finish(shared.store.stored_identity(Reach::Blocking, &info.folder))
            {
                info.name =
                    crate::store::name_of_identity(stored.as_bytes()).map(crate::report::untrusted);
            }
        }
        Ok(by_folder.into_values().collect())
    }

    /// The metadata of one entry, read and checked (no access is recorded); `Ok(None)` when
    /// there is no such entry.
    pub fn entry_metadata(&self, func: &str, args_id: &str) -> Result<Option<Metadata>> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let key = grammar::entry(func, args_id)?;
        finish(shared.store.metadata(Reach::Blocking, &key, None))
    }

    /// Checks one entry as a load would, without decoding the output or recording an access:
    /// every checksum, the key it was written for, and the signature when the memory signs.
    /// `Ok(false)` when there is no such entry; an unusable entry is an
    /// [`Error::Entry`](crate::Error::Entry).
    pub fn verify_entry(&self, func: &str, args_id: &str) -> Result<bool> {
        let Some(shared) = &self.shared else {
            return Ok(false);
        };
        let key = grammar::entry(func, args_id)?;
        finish(shared.store.verify(Reach::Blocking, &key))
    }

    /// Deletes one entry.
    pub fn delete_entry(&self, func: &str, args_id: &str) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let key = grammar::entry(func, args_id)?;
        finish(shared.store.delete(Reach::Blocking, &key))
    }

    /// Deletes every entry of the function whose folder is `func` (and its claims and identity
    /// item); gives how many items went.
    pub fn clear_function(&self, func: &str) -> Result<u64> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let prefix = grammar::folder(func)?;
        shared.store.forget_memo_of(func);
        finish(shared.store.delete_ours(Reach::Blocking, &prefix))
    }

    /// The shared state, or `None` when disabled.
    pub(crate) fn shared(&self) -> Option<&Shared> {
        self.shared.as_deref()
    }
}

/// A function with results in the store, as [`Memory::functions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionInfo {
    /// Its folder in the store (see [`FuncId::folder`](crate::FuncId::folder)).
    pub folder: String,
    /// Its exact name, as its identity item records it (`None` without one).
    pub name: Option<String>,
    /// How many entries it holds.
    pub entries: usize,
    /// Their size in bytes.
    pub bytes: u64,
    /// The last access to any of them.
    pub last_access: Option<DateTime<Utc>>,
}

/// One stored entry, as [`Memory::entries`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The function's folder.
    pub func: String,
    /// The hash of the arguments.
    pub args_id: String,
    /// The entry's size in bytes.
    pub size: u64,
    /// When it was last read by a call (or written, if never read since).
    pub last_access: DateTime<Utc>,
}

impl EntryInfo {
    /// The entry's key in the store, `<func>/<args_id>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.func, self.args_id)
    }
}

/// A memory's statistics; see [`Memory::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// What the calls of the memory's functions did, summed over its functions: one count per
    /// call (see [`Memory::call_stats`] for each function).
    pub calls: CallStats,
    /// The operations the memory asked of its store (through every layer): a hit of a
    /// function reads the store once or more, so these are not counts of calls.
    pub store: BackendStats,
    /// With a local tier: reads served locally, from the store behind it, and copies made.
    pub tiers: Option<TierCounters>,
}

impl fmt::Display for MemoryStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; store: {}", self.calls, self.store)?;
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
