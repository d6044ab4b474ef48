//! A local tier in front of a remote one: [`Tiered`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::backend::{
    BackendResult, Blob, Capabilities, ClaimAttempt, DynBackend, GetOptions, GetPayload, GetResult,
    ItemInfo, Layer, PutMode, PutOptions, PutOutcome, StoreBackend, StoreBackendExt,
};
use crate::error::{BackendError, ErrorKind};
use crate::key::{Key, Prefix};

/// A local tier (usually the local disk) in front of a remote one (S3, Redis, ...).
///
/// The remote tier is authoritative: it decides what exists, what is listed and whether a
/// write succeeded. The local tier is a copy of part of it that is faster to read and can be
/// memory-mapped. Errors of the local tier never fail an operation that the remote tier can
/// serve alone; they are logged with `tracing::warn!` (target `cachette`).
///
/// - **Whole reads**: the local tier first; on a local miss, the remote one. A remote hit is
///   written to the local tier (a *backfill*, with `put_if_absent`, so that it never replaces a
///   newer local write) before it is returned; a failed backfill is logged and counted, never an
///   error of the read. A local error is logged, and the read falls back to the remote tier.
///   An access is recorded where the item was read.
/// - **Reads asking for a local file** ([`GetOptions::local_file`], to map it): the local
///   tier's file when it has the item; after a remote hit, the file of the copy just made, so
///   that the first hit of a remote entry is mapped like the later ones.
/// - **Ranged and `head` reads**: the local tier if it has the item, else the remote one,
///   without backfill (a part of an item is not the item).
/// - **Writes**: write-through. The remote tier first; its error is the operation's error, and
///   for [`PutMode::Create`] its outcome decides. Then the local tier: a failure there is a
///   warning, after which any local copy is deleted (best effort) so that an older value is not
///   served. When the remote create finds the item already there, the local copy, if any, is
///   dropped: the remote value may differ, and the next read fetches and backfills it.
/// - **Operations with `bypass_cache`** (compute-once claims) go to the remote tier alone.
/// - **`delete_many`**: the remote tier, then the local one. An error of either fails the
///   operation (a local copy left behind would be served).
/// - **`list`**: the remote tier's items and sizes. An item read from the local tier was read
///   all the same, so its last access is the later of the two tiers' (when the local listing
///   fails, the remote's alone, with a warning). Items only in the local tier (copies of items
///   another machine deleted) are listed too, so that a clear or a reduction reaches them.
///   **`sweep`**: both tiers.
/// - **`capabilities`**: the remote tier's, except `local_files` (the local tier's) and
///   `blocking_io` (only when both tiers do blocking I/O, since one operation may use both).
///   **`scheme`** and **`location`** are the remote tier's (a `MemorizedResult` shelved behind a
///   local tier names the shared store, and parses on another machine).
/// - **TTLs** in [`PutOptions`] go to both tiers as given. A backfilled copy has none (the
///   remote tier does not say how long its item has left); the core checks expiry when it
///   reads.
///
/// What the tiers cannot know of each other: another process deleting or replacing an item in
/// the remote tier leaves this process's local copy in place, and it is served until it is
/// deleted through this layer. Concurrent writers of one key may leave the tiers holding
/// different writes (each holds a whole one). For a cache of deterministic results, both are
/// harmless; use a remote tier alone where they are not.
///
/// [`counters`](Tiered::counters) tells where reads were served from.
///
/// ```
/// # futures::executor::block_on(async {
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use cachette_core::layers::Tiered;
/// use cachette_core::plugin::{InMemoryBackend, Key, StoreBackendExt};
///
/// let (local, remote) = (Arc::new(InMemoryBackend::new()), Arc::new(InMemoryBackend::new()));
/// let key = Key::new("f/k").unwrap();
/// remote.put(&key, Bytes::from_static(b"v").into()).await.unwrap();
///
/// let tiered = Tiered::new(local.clone(), remote);
/// tiered.get(&key).await.unwrap(); // from the remote tier, then copied to the local one
/// tiered.get(&key).await.unwrap(); // from the local tier
/// let c = tiered.counters();
/// assert_eq!((c.remote_hits, c.backfills, c.local_hits), (1, 1, 1));
/// assert!(local.contains(&key).await.unwrap());
/// # });
/// ```
#[derive(Debug)]
pub struct Tiered {
    local: DynBackend,
    remote: DynBackend,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    local_hits: AtomicU64,
    remote_hits: AtomicU64,
    misses: AtomicU64,
    backfills: AtomicU64,
    backfill_errors: AtomicU64,
}

/// Where the reads of a [`Tiered`] backend were served from (`get` and `get_range`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TierCounters {
    /// Reads served by the local tier.
    pub local_hits: u64,
    /// Reads served by the remote tier.
    pub remote_hits: u64,
    /// Reads that found the item in neither tier.
    pub misses: u64,
    /// Items copied to the local tier after a remote hit.
    pub backfills: u64,
    /// Copies to the local tier that failed.
    pub backfill_errors: u64,
}

impl Tiered {
    /// `local` in front of `remote`.
    pub fn new(local: DynBackend, remote: DynBackend) -> Tiered {
        Tiered {
            local,
            remote,
            counters: Arc::default(),
        }
    }

    /// The counters now.
    pub fn counters(&self) -> TierCounters {
        self.handle().snapshot()
    }

    /// A handle on the counters, to read them while the layer is in use elsewhere.
    pub fn handle(&self) -> TierHandle {
        TierHandle {
            counters: self.counters.clone(),
        }
    }
}

/// A handle on the counters of a [`Tiered`] layer. Clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct TierHandle {
    counters: Arc<Counters>,
}

impl TierHandle {
    /// The counters now.
    pub fn snapshot(&self) -> TierCounters {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TierCounters {
            local_hits: load(&c.local_hits),
            remote_hits: load(&c.remote_hits),
            misses: load(&c.misses),
            backfills: load(&c.backfills),
            backfill_errors: load(&c.backfill_errors),
        }
    }
}

/// The [`Layer`] of [`Tiered`]: puts a local tier, opened from a location (a path or URL),
/// in front of the stack built so far.
#[derive(Debug, Clone)]
pub struct TieredLayer {
    location: String,
    handle: TierHandle,
}

impl TieredLayer {
    /// A local tier at `location`.
    pub fn new(location: impl Into<String>) -> TieredLayer {
        TieredLayer {
            location: location.into(),
            handle: TierHandle::default(),
        }
    }

    /// The location of the local tier.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A handle on the counters of the tier this layer builds.
    pub fn handle(&self) -> TierHandle {
        self.handle.clone()
    }
}

impl Layer for TieredLayer {
    fn layer(&self, inner: DynBackend) -> Result<DynBackend, BackendError> {
        let local = crate::registry::backend_from_url(&self.location).map_err(|e| {
            BackendError::new(
                ErrorKind::ConfigInvalid,
                format!("cannot open the local tier {}: {e}", self.location),
            )
        })?;
        Ok(Arc::new(Tiered {
            local,
            remote: inner,
            counters: self.handle.counters.clone(),
        }))
    }
}

impl Tiered {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads from the local tier; `None` when it has nothing or fails (with a warning).
    fn local_read(&self, key: &Key, result: BackendResult<Option<GetResult>>) -> Option<GetResult> {
        match result {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(
                    target: "cachette",
                    "{}: local read of {key} failed ({e}); reading the remote tier",
                    self.local.location()
                );
                None
            }
        }
    }

    /// Copies an item read from the remote tier to the local one; as a file of its own if
    /// `as_file` (the read asked for a local file, see [`PutOptions::local_file`]).
    async fn backfill(&self, key: &Key, value: &Bytes, as_file: bool) -> bool {
        let options = PutOptions::create().with_local_file(as_file);
        match self
            .local
            .put_opts(key, value.clone().into(), options)
            .await
        {
            Ok(PutOutcome::Created) => {
                Self::count(&self.counters.backfills);
                true
            }
            // Written meanwhile, through this layer: that copy is as new as ours.
            Ok(PutOutcome::AlreadyExists) => true,
            Err(e) => {
                Self::count(&self.counters.backfill_errors);
                tracing::warn!(
                    target: "cachette",
                    "{}: cannot copy {key} from the remote tier ({e}); it will be read remotely again",
                    self.local.location()
                );
                false
            }
        }
    }

    /// Writes an item the remote tier accepted to the local tier; on failure, drops the local
    /// copy, so that an older value is not served.
    async fn write_local(&self, key: &Key, value: Blob, options: PutOptions, delete: Option<&Key>) {
        let options = PutOptions {
            mode: PutMode::Overwrite,
            ..options
        };
        let written = match delete {
            Some(delete) => {
                self.local
                    .put_then_delete(key, value, options, delete)
                    .await
            }
            None => self.local.put_opts(key, value, options).await,
        };
        let Err(e) = written else {
            return;
        };
        if let Some(delete) = delete {
            self.drop_local(delete).await;
        }
        let dropped = match self.local.delete(key).await {
            Ok(()) => String::new(),
            Err(e) => format!("; deleting its older local copy failed too ({e})"),
        };
        tracing::warn!(
            target: "cachette",
            "{}: cannot write {key} to the local tier ({e}); it is stored in the remote tier only{dropped}",
            self.local.location()
        );
    }

    /// Drops the local copy of an item whose remote value may differ.
    async fn drop_local(&self, key: &Key) {
        if let Err(e) = self.local.delete(key).await {
            tracing::warn!(
                target: "cachette",
                "{}: cannot drop the local copy of {key} ({e}); it may differ from the remote one",
                self.local.location()
            );
        }
    }
}

/// The remote tier's result, or else the local tier's error.
fn both<T>(remote: BackendResult<T>, local: BackendResult<impl Sized>) -> BackendResult<T> {
    let value = remote?;
    local.map(|_| value)
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl StoreBackend for Tiered {
    fn scheme(&self) -> &'static str {
        self.remote.scheme()
    }

    /// The remote tier's: the shared store, which a reference shelved here names, so that it
    /// parses on another machine (the local tier is this machine's copy).
    fn location(&self) -> String {
        self.remote.location()
    }

    fn capabilities(&self) -> Capabilities {
        let local = self.local.capabilities();
        let remote = self.remote.capabilities();
        Capabilities {
            local_files: local.local_files,
            blocking_io: local.blocking_io && remote.blocking_io,
            ..remote
        }
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        if options.bypass_cache {
            return self.remote.get_opts(key, options).await;
        }
        let local = self.local.get_opts(key, options.clone()).await;
        if let Some(found) = self.local_read(key, local) {
            if !options.head {
                Self::count(&self.counters.local_hits);
            }
            return Ok(Some(found));
        }
        let whole = options.range.is_none() && !options.head;
        let remote_options = GetOptions {
            local_file: false,
            ..options.clone()
        };
        let Some(found) = self.remote.get_opts(key, remote_options).await? else {
            if !options.head {
                Self::count(&self.counters.misses);
            }
            return Ok(None);
        };
        if options.head {
            return Ok(Some(found));
        }
        Self::count(&self.counters.remote_hits);
        if !whole {
            // A part of an item is not the item: no copy.
            return Ok(Some(found));
        }
        let bytes = match found.payload {
            GetPayload::Bytes(bytes) => bytes,
            GetPayload::File(_) => found.into_bytes().map_err(|e| {
                BackendError::new(ErrorKind::Other, format!("cannot read {key}: {e}"))
            })?,
        };
        let copied = self.backfill(key, &bytes, options.local_file).await;
        if copied && options.local_file && self.local.capabilities().local_files {
            // Give the local copy, as later reads will: it can be mapped.
            let local_options = GetOptions::default().with_local_file(true);
            if let Ok(Some(copy)) = self.local.get_opts(key, local_options).await
                && copy.size == bytes.len() as u64
            {
                return Ok(Some(copy));
            }
        }
        Ok(Some(GetResult::whole(bytes)))
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        if options.bypass_cache {
            return self.remote.put_opts(key, value, options).await;
        }
        let outcome = self
            .remote
            .put_opts(key, value.clone(), options.clone())
            .await?;
        match outcome {
            // The remote tier stored it: any local copy is older, and replaced.
            PutOutcome::Created => self.write_local(key, value, options, None).await,
            PutOutcome::AlreadyExists => self.drop_local(key).await,
        }
        Ok(outcome)
    }

    /// A hit of the local tier, without a future; anything else (a local miss or error, a
    /// read for the store of record) is read the usual way.
    /// Claims are shared: the remote tier's.
    fn try_claim(&self, key: &Key) -> Option<BackendResult<ClaimAttempt>> {
        self.remote.try_claim(key)
    }

    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        if options.bypass_cache {
            return self.remote.get_now(key, options);
        }
        let found = self.local.get_now(key, options)?.ok().flatten()?;
        if !options.head {
            Self::count(&self.counters.local_hits);
        }
        Some(Ok(Some(found)))
    }

    /// As `put_opts`, the remote tier's write deleting `delete` there, the local one's
    /// deleting its copy, if any.
    async fn put_then_delete(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
        delete: &Key,
    ) -> BackendResult<PutOutcome> {
        if options.bypass_cache {
            return self
                .remote
                .put_then_delete(key, value, options, delete)
                .await;
        }
        let outcome = self
            .remote
            .put_then_delete(key, value.clone(), options.clone(), delete)
            .await?;
        match outcome {
            PutOutcome::Created => {
                self.write_local(key, value, options, Some(delete)).await;
            }
            PutOutcome::AlreadyExists => {
                self.drop_local(key).await;
                self.drop_local(delete).await;
            }
        }
        Ok(outcome)
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let remote = self.remote.delete_many(keys).await;
        let local = self.local.delete_many(keys).await;
        both(remote, local)
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let mut items = self.remote.list(prefix).await?;
        match self.local.list(prefix).await {
            Ok(local) if !local.is_empty() => {
                let mut local: HashMap<Key, ItemInfo> = local
                    .into_iter()
                    .map(|item| (item.key.clone(), item))
                    .collect();
                for item in &mut items {
                    if let Some(copy) = local.remove(&item.key) {
                        item.last_access = item.last_access.max(copy.last_access);
                    }
                }
                // Copies whose remote item is gone (another machine deleted it): listed, so
                // that a clear or a reduction reaches them too.
                items.extend(local.into_values());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                target: "cachette",
                "{}: local listing of {prefix} failed ({e}); access times are the remote tier's",
                self.local.location()
            ),
        }
        Ok(items)
    }

    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        let remote = self.remote.sweep(prefix).await;
        let local = self.local.sweep(prefix).await;
        let n = local.as_ref().map_or(0, |n| *n);
        both(remote, local).map(|remote| remote + n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::StoreBackendExt;
    use crate::error::ErrorKind;
    use crate::layers::flaky::Flaky;
    use crate::layers::stats::{Stats, StatsHandle};
    use crate::memory_backend::InMemoryBackend;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(fut)
    }

    /// Two in-memory tiers, the remote one counted.
    struct Setup {
        local: Arc<InMemoryBackend>,
        remote: Arc<InMemoryBackend>,
        remote_stats: StatsHandle,
        tiered: Tiered,
    }

    fn setup() -> Setup {
        let local = Arc::new(InMemoryBackend::new());
        let remote = Arc::new(InMemoryBackend::new());
        let stats = Stats::new(remote.clone());
        let remote_stats = stats.handle();
        let tiered = Tiered::new(local.clone(), Arc::new(stats));
        Setup {
            local,
            remote,
            remote_stats,
            tiered,
        }
    }

    #[test]
    fn remote_hits_are_backfilled_then_served_locally() {
        let s = setup();
        let k = key("f/k");
        run(s.remote.put(&k, Bytes::from_static(b"remote").into())).unwrap();

        let first = run(s.tiered.get(&k)).unwrap();
        assert_eq!(first.as_deref(), Some(&b"remote"[..]));
        assert_eq!(
            s.tiered.counters(),
            TierCounters {
                remote_hits: 1,
                backfills: 1,
                ..TierCounters::default()
            }
        );
        assert_eq!(
            run(s.local.get(&k)).unwrap().as_deref(),
            Some(&b"remote"[..])
        );

        for _ in 0..3 {
            let again = run(s.tiered.get(&k)).unwrap();
            assert_eq!(again.as_deref(), Some(&b"remote"[..]));
        }
        assert_eq!(
            s.tiered.counters(),
            TierCounters {
                local_hits: 3,
                remote_hits: 1,
                backfills: 1,
                ..TierCounters::default()
            }
        );
        let remote = s.remote_stats.snapshot();
        assert_eq!((remote.hits, remote.misses), (1, 0), "one remote get");

        assert_eq!(run(s.tiered.get(&key("f/none"))).unwrap(), None);
        assert_eq!(s.tiered.counters().misses, 1);
    }

    #[test]
    fn ranged_reads_prefer_the_local_tier_and_do_not_backfill() {
        let s = setup();
        let k = key("f/k");
        run(s.remote.put(&k, Bytes::from_static(b"0123456789").into())).unwrap();
        let part = run(s.tiered.get_range(&k, 2..5)).unwrap();
        assert_eq!(part.as_deref(), Some(&b"234"[..]));
        assert!(!run(s.local.contains(&k)).unwrap(), "no partial backfill");
        assert_eq!(s.tiered.counters().remote_hits, 1);

        run(s.local.put(&k, Bytes::from_static(b"abcdefghij").into())).unwrap();
        let part = run(s.tiered.get_range(&k, 2..5)).unwrap();
        assert_eq!(part.as_deref(), Some(&b"cde"[..]));
        assert_eq!(s.tiered.counters().local_hits, 1);
        assert_eq!(s.remote_stats.snapshot().hits, 1);
    }

    #[test]
    fn writes_go_through_to_both_tiers() {
        let s = setup();
        let k = key("f/k");
        let ttl = PutOptions::with_ttl(Some(std::time::Duration::from_secs(3600)));
        run(s.tiered.put_opts(&k, Bytes::from_static(b"v1").into(), ttl)).unwrap();
        assert_eq!(run(s.local.get(&k)).unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(run(s.remote.get(&k)).unwrap().as_deref(), Some(&b"v1"[..]));

        let k2 = key("f/k2");
        let created = run(s
            .tiered
            .put_if_absent(&k2, Bytes::from_static(b"new").into()))
        .unwrap();
        assert_eq!(created, PutOutcome::Created);
        assert_eq!(run(s.local.get(&k2)).unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(
            run(s.remote.get(&k2)).unwrap().as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(s.remote_stats.snapshot().puts, 2);
    }

    #[test]
    fn already_existing_remote_items_drop_the_local_copy() {
        let s = setup();
        let k = key("f/k");
        run(s.remote.put(&k, Bytes::from_static(b"remote").into())).unwrap();
        run(s.local.put(&k, Bytes::from_static(b"stale").into())).unwrap();
        let outcome = run(s
            .tiered
            .put_if_absent(&k, Bytes::from_static(b"mine").into()))
        .unwrap();
        assert_eq!(outcome, PutOutcome::AlreadyExists);
        assert!(
            !run(s.local.contains(&k)).unwrap(),
            "the stale copy is gone"
        );
        assert_eq!(
            run(s.tiered.get(&k)).unwrap().as_deref(),
            Some(&b"remote"[..])
        );
        assert_eq!(
            run(s.local.get(&k)).unwrap().as_deref(),
            Some(&b"remote"[..])
        );
    }

    #[test]
    fn a_failing_local_tier_still_serves_and_stores_through_the_remote() {
        let local = Arc::new(InMemoryBackend::new());
        let flaky = Arc::new(Flaky::new(local.clone(), ErrorKind::PermissionDenied));
        flaky.only(&["put", "put_if_absent"]);
        flaky.fail_next(u32::MAX);
        let remote = Arc::new(InMemoryBackend::new());
        let tiered = Tiered::new(flaky.clone(), remote.clone());
        let k = key("f/k");

        // An older local copy is not served after a failed write-through.
        run(local.put(&k, Bytes::from_static(b"old").into())).unwrap();
        run(tiered.put(&k, Bytes::from_static(b"v").into())).unwrap();
        assert_eq!(run(remote.get(&k)).unwrap().as_deref(), Some(&b"v"[..]));
        assert!(!run(local.contains(&k)).unwrap());

        for _ in 0..2 {
            assert_eq!(run(tiered.get(&k)).unwrap().as_deref(), Some(&b"v"[..]));
        }
        assert_eq!(
            tiered.counters(),
            TierCounters {
                remote_hits: 2,
                backfill_errors: 2,
                ..TierCounters::default()
            }
        );
        let k2 = key("f/k2");
        assert_eq!(
            run(tiered.put_if_absent(&k2, Bytes::from_static(b"w").into())).unwrap(),
            PutOutcome::Created
        );
        assert!(run(tiered.contains(&k2)).unwrap());
        // The injected faults were met: one put, one put_if_absent per read, one put for k2.
        assert_eq!(flaky.calls(), 4);
    }

    #[test]
    fn local_hits_are_read_now_and_writes_delete_in_both_tiers() {
        let s = setup();
        let k = key("f/k");
        run(s.remote.put(&k, Bytes::from_static(b"v").into())).unwrap();
        let hit = GetOptions::hit();
        assert!(
            s.tiered.get_now(&k, &hit).is_none(),
            "a remote hit is awaited"
        );
        assert_eq!(run(s.tiered.get(&k)).unwrap().as_deref(), Some(&b"v"[..]));
        let now = s.tiered.get_now(&k, &hit).unwrap().unwrap().unwrap();
        assert_eq!(now.into_bytes().unwrap(), Bytes::from_static(b"v"));
        assert_eq!(s.tiered.counters().local_hits, 1);

        // The item to delete, with a copy in each tier, goes from both.
        let entry = key("f/e");
        let options = PutOptions::default();
        run(s
            .tiered
            .put_then_delete(&entry, Bytes::from_static(b"e").into(), options, &k))
        .unwrap();
        assert!(!run(s.remote.contains(&k)).unwrap());
        assert!(!run(s.local.contains(&k)).unwrap());
        assert!(run(s.remote.contains(&entry)).unwrap());
        assert!(run(s.local.contains(&entry)).unwrap());
    }

    #[test]
    fn local_read_errors_fall_back_to_the_remote() {
        let local = Arc::new(InMemoryBackend::new());
        let flaky = Arc::new(Flaky::new(local, ErrorKind::Unavailable));
        let remote = Arc::new(InMemoryBackend::new());
        let tiered = Tiered::new(flaky.clone(), remote.clone());
        let k = key("f/k");
        run(remote.put(&k, Bytes::from_static(b"v").into())).unwrap();
        flaky.only(&["get", "get_range", "contains"]);
        flaky.fail_next(u32::MAX);
        assert_eq!(run(tiered.get(&k)).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(
            run(tiered.get_range(&k, 0..1)).unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert!(run(tiered.contains(&k)).unwrap());
        assert_eq!(tiered.counters().remote_hits, 2);
    }

    #[test]
    fn remote_errors_fail_the_operation() {
        let local = Arc::new(InMemoryBackend::new());
        let flaky = Arc::new(Flaky::new(
            Arc::new(InMemoryBackend::new()),
            ErrorKind::Timeout,
        ));
        let tiered = Tiered::new(local.clone(), flaky.clone());
        let k = key("f/k");
        flaky.fail_next(u32::MAX);
        let err = run(tiered.put(&k, Bytes::from_static(b"v").into())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(
            !run(local.contains(&k)).unwrap(),
            "not written locally either"
        );
        assert_eq!(run(tiered.get(&k)).unwrap_err().kind(), ErrorKind::Timeout);
        assert!(run(tiered.delete(&k)).is_err());
    }

    #[test]
    fn deletes_reach_both_tiers() {
        let s = setup();
        for k in ["f/a", "f/b", "f/c", "g/d"] {
            run(s.tiered.put(&key(k), Bytes::from_static(b"v").into())).unwrap();
        }
        // A local-only copy is listed, and deleted too.
        run(s
            .local
            .put(&key("f/local"), Bytes::from_static(b"v").into()))
        .unwrap();
        run(s.tiered.delete(&key("f/a"))).unwrap();
        run(s.tiered.delete_many(&[key("f/b")])).unwrap();
        assert_eq!(
            run(s.tiered.delete_prefix(&Prefix::new("f").unwrap())).unwrap(),
            2
        );
        for tier in [&s.local, &s.remote] {
            let left: Vec<String> = run(tier.list(&Prefix::root()))
                .unwrap()
                .into_iter()
                .map(|i| i.key.to_string())
                .collect();
            assert_eq!(left, ["g/d"]);
        }
    }

    #[test]
    fn listing_is_the_remote_one_with_local_accesses_and_copies() {
        let s = setup();
        run(s.tiered.put(&key("f/a"), Bytes::from_static(b"abc").into())).unwrap();
        run(s.remote.put(&key("f/b"), Bytes::from_static(b"b").into())).unwrap();
        run(s
            .local
            .put(&key("f/local"), Bytes::from_static(b"l").into()))
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        run(s.tiered.get(&key("f/a"))).unwrap();
        let mut items = run(s.tiered.list(&Prefix::root())).unwrap();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        let names: Vec<(&str, u64)> = items.iter().map(|i| (i.key.as_str(), i.size)).collect();
        // `f/local` is a copy whose remote item is gone: listed, so that a clear reaches it.
        assert_eq!(names, [("f/a", 3), ("f/b", 1), ("f/local", 1)]);
        let remote = run(s.remote.list(&Prefix::new("f").unwrap())).unwrap();
        let remote_a = remote
            .iter()
            .find(|i| i.key.as_str() == "f/a")
            .unwrap()
            .last_access;
        assert!(items[0].last_access > remote_a, "the local read counts");
    }

    #[test]
    fn describes_both_tiers() {
        let s = setup();
        assert_eq!(s.tiered.scheme(), "memory");
        let location = s.tiered.location();
        assert_eq!(
            location,
            s.remote.location(),
            "the shared store: what a reference shelved here names"
        );
        let caps = s.tiered.capabilities();
        assert_eq!(caps, s.remote.capabilities());
        let file = GetOptions::default().with_local_file(true);
        run(s.tiered.put(&key("f/k"), Bytes::from_static(b"v").into())).unwrap();
        let found = run(s.tiered.get_opts(&key("f/k"), file)).unwrap().unwrap();
        assert!(
            matches!(found.payload, GetPayload::Bytes(_)),
            "no local files in memory tiers"
        );

        let network = Arc::new(Flaky::new(
            Arc::new(InMemoryBackend::new()),
            ErrorKind::Other,
        ));
        network.network();
        let tiered = Tiered::new(s.local.clone(), network);
        assert!(!tiered.capabilities().blocking_io);
    }

    #[cfg(feature = "testkit")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance() {
        let tiered = Tiered::new(
            Arc::new(InMemoryBackend::new()),
            Arc::new(InMemoryBackend::new()),
        );
        crate::testkit::run_all(Arc::new(tiered)).await;
    }
}
