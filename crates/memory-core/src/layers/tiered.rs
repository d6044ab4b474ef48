//! A local tier in front of a remote one: [`Tiered`].

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::backend::{
    BackendResult, Blob, Capabilities, DynBackend, ItemInfo, PutOptions, PutOutcome, StoreBackend,
};
use crate::key::{Key, Prefix};

/// A local tier (usually the local disk) in front of a remote one (S3, Redis, ...).
///
/// The remote tier is authoritative: it decides what exists, what is listed and whether a
/// write succeeded. The local tier is a copy of part of it that is faster to read and can be
/// memory-mapped. Errors of the local tier never fail an operation that the remote tier can
/// serve alone; they are logged with `tracing::warn!` (target `cachette`).
///
/// - **`get`**: the local tier first; on a local miss, the remote one. A remote hit is written
///   to the local tier (a *backfill*, with `put_if_absent`, so that it never replaces a newer
///   local write) before it is returned; a failed backfill is logged and counted, never an
///   error of the read. A local error is logged, and the read falls back to the remote tier.
/// - **`get_range`**: the local tier if it has the item, else the remote one, without backfill
///   (a part of an item is not the item).
/// - **`put` / `put_if_absent`**: write-through. The remote tier first; its error is the
///   operation's error, and for `put_if_absent` its outcome decides. Then the local tier: a
///   failure there is a warning, after which any local copy is deleted (best effort) so that an
///   older value is not served. When the remote `put_if_absent` finds the item already there,
///   the local copy, if any, is dropped: the remote value may differ, and the next `get` fetches
///   and backfills it.
/// - **`delete`, `delete_many`, `delete_prefix`**: the remote tier, then the local one. An error
///   of either fails the operation (a local copy left behind would be served); `delete_prefix`
///   returns the remote tier's count.
/// - **`list`**: the remote tier's items and sizes. An item read from the local tier was read
///   all the same, so its last access is the later of the two tiers' (when the local listing
///   fails, the remote's alone, with a warning). Items only in the local tier are not listed.
/// - **`contains`**: the local tier, then the remote one. **`touch`**: both (local errors are
///   ignored).
/// - **`local_path`**: the local tier's path of the item, when the item is there. The core maps
///   that file instead of calling `get`, and takes a missing file for a miss; so an item not
///   yet backfilled gives `None`, its load goes through `get`, which backfills it, and later
///   loads map the local copy.
/// - **`capabilities`**: the remote tier's, except `local_path` (the local tier's) and
///   `blocking_io` (only when both tiers do blocking I/O, since one operation may use both).
///   **`scheme`** is the remote tier's; **`location`** is `"<local> in front of <remote>"`.
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
/// use cachette_core::{InMemoryBackend, Key, PutOptions, StoreBackend};
///
/// let (local, remote) = (Arc::new(InMemoryBackend::new()), Arc::new(InMemoryBackend::new()));
/// let key = Key::new("f/k").unwrap();
/// remote.put(&key, Bytes::from_static(b"v").into(), &PutOptions::default()).await.unwrap();
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
    counters: Counters,
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
            counters: Counters::default(),
        }
    }

    /// The counters now.
    pub fn counters(&self) -> TierCounters {
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

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads from the local tier; `None` when it has nothing or fails (with a warning).
    fn local_read(
        &self,
        operation: &str,
        key: &Key,
        result: BackendResult<Option<Bytes>>,
    ) -> Option<Bytes> {
        match result {
            Ok(Some(bytes)) => {
                Self::count(&self.counters.local_hits);
                Some(bytes)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(
                    target: "cachette",
                    "{}: local {operation} of {key} failed ({e}); reading the remote tier",
                    self.local.location()
                );
                None
            }
        }
    }

    /// Copies an item read from the remote tier to the local one.
    async fn backfill(&self, key: &Key, value: &Bytes) {
        match self
            .local
            .put_if_absent(key, value.clone().into(), &PutOptions::default())
            .await
        {
            Ok(PutOutcome::Created) => Self::count(&self.counters.backfills),
            // Written meanwhile, through this layer: that copy is as new as ours.
            Ok(PutOutcome::AlreadyExists) => {}
            Err(e) => {
                Self::count(&self.counters.backfill_errors);
                tracing::warn!(
                    target: "cachette",
                    "{}: cannot copy {key} from the remote tier ({e}); it will be read remotely again",
                    self.local.location()
                );
            }
        }
    }

    /// Writes an item the remote tier accepted to the local tier; on failure, drops the local
    /// copy, so that an older value is not served.
    async fn write_local(&self, key: &Key, value: Blob, options: &PutOptions) {
        let Err(e) = self.local.put(key, value, options).await else {
            return;
        };
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

    fn location(&self) -> String {
        format!(
            "{} in front of {}",
            self.local.location(),
            self.remote.location()
        )
    }

    fn capabilities(&self) -> Capabilities {
        let local = self.local.capabilities();
        let remote = self.remote.capabilities();
        Capabilities {
            local_path: local.local_path,
            blocking_io: local.blocking_io && remote.blocking_io,
            ..remote
        }
    }

    async fn get(&self, key: &Key) -> BackendResult<Option<Bytes>> {
        let local = self.local.get(key).await;
        if let Some(bytes) = self.local_read("get", key, local) {
            return Ok(Some(bytes));
        }
        match self.remote.get(key).await? {
            Some(bytes) => {
                Self::count(&self.counters.remote_hits);
                self.backfill(key, &bytes).await;
                Ok(Some(bytes))
            }
            None => {
                Self::count(&self.counters.misses);
                Ok(None)
            }
        }
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> BackendResult<Option<Bytes>> {
        let local = self.local.get_range(key, range.clone()).await;
        if let Some(bytes) = self.local_read("get_range", key, local) {
            return Ok(Some(bytes));
        }
        let found = self.remote.get_range(key, range).await?;
        Self::count(if found.is_some() {
            &self.counters.remote_hits
        } else {
            &self.counters.misses
        });
        Ok(found)
    }

    async fn touch(&self, key: &Key) -> BackendResult<()> {
        if let Err(e) = self.local.touch(key).await {
            tracing::debug!(target: "cachette", "{}: local touch of {key} failed: {e}", self.local.location());
        }
        self.remote.touch(key).await
    }

    async fn put(&self, key: &Key, value: Blob, options: &PutOptions) -> BackendResult<()> {
        self.remote.put(key, value.clone(), options).await?;
        self.write_local(key, value, options).await;
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &Key,
        value: Blob,
        options: &PutOptions,
    ) -> BackendResult<PutOutcome> {
        let outcome = self
            .remote
            .put_if_absent(key, value.clone(), options)
            .await?;
        match outcome {
            // The remote tier had no item: any local copy is older, and replaced.
            PutOutcome::Created => self.write_local(key, value, options).await,
            PutOutcome::AlreadyExists => self.drop_local(key).await,
        }
        Ok(outcome)
    }

    async fn contains(&self, key: &Key) -> BackendResult<bool> {
        match self.local.contains(key).await {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                target: "cachette",
                "{}: local contains of {key} failed ({e}); asking the remote tier",
                self.local.location()
            ),
        }
        self.remote.contains(key).await
    }

    async fn delete(&self, key: &Key) -> BackendResult<()> {
        let remote = self.remote.delete(key).await;
        let local = self.local.delete(key).await;
        both(remote, local)
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let remote = self.remote.delete_many(keys).await;
        let local = self.local.delete_many(keys).await;
        both(remote, local)
    }

    async fn delete_prefix(&self, prefix: &Prefix) -> BackendResult<u64> {
        let remote = self.remote.delete_prefix(prefix).await;
        let local = self.local.delete_prefix(prefix).await;
        both(remote, local)
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let mut items = self.remote.list(prefix).await?;
        match self.local.list(prefix).await {
            Ok(local) if !local.is_empty() => {
                let accessed: HashMap<Key, _> = local
                    .into_iter()
                    .map(|item| (item.key, item.last_access))
                    .collect();
                for item in &mut items {
                    if let Some(&at) = accessed.get(&item.key) {
                        item.last_access = item.last_access.max(at);
                    }
                }
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

    fn local_path(&self, key: &Key) -> Option<PathBuf> {
        if !self.local.capabilities().local_path {
            return None;
        }
        self.local.local_path(key).filter(|path| path.is_file())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ErrorKind;
    use crate::layers::flaky::Flaky;
    use crate::layers::stats::{Stats, StatsHandle};
    use crate::memory_backend::InMemoryBackend;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(fut)
    }

    fn opts() -> PutOptions {
        PutOptions::default()
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
        run(s
            .remote
            .put(&k, Bytes::from_static(b"remote").into(), &opts()))
        .unwrap();

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
        run(s
            .remote
            .put(&k, Bytes::from_static(b"0123456789").into(), &opts()))
        .unwrap();
        let part = run(s.tiered.get_range(&k, 2..5)).unwrap();
        assert_eq!(part.as_deref(), Some(&b"234"[..]));
        assert!(!run(s.local.contains(&k)).unwrap(), "no partial backfill");
        assert_eq!(s.tiered.counters().remote_hits, 1);

        run(s
            .local
            .put(&k, Bytes::from_static(b"abcdefghij").into(), &opts()))
        .unwrap();
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
        run(s.tiered.put(&k, Bytes::from_static(b"v1").into(), &ttl)).unwrap();
        assert_eq!(run(s.local.get(&k)).unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(run(s.remote.get(&k)).unwrap().as_deref(), Some(&b"v1"[..]));

        let k2 = key("f/k2");
        let created = run(s
            .tiered
            .put_if_absent(&k2, Bytes::from_static(b"new").into(), &opts()))
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
        run(s
            .remote
            .put(&k, Bytes::from_static(b"remote").into(), &opts()))
        .unwrap();
        run(s
            .local
            .put(&k, Bytes::from_static(b"stale").into(), &opts()))
        .unwrap();
        let outcome = run(s
            .tiered
            .put_if_absent(&k, Bytes::from_static(b"mine").into(), &opts()))
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
        run(local.put(&k, Bytes::from_static(b"old").into(), &opts())).unwrap();
        run(tiered.put(&k, Bytes::from_static(b"v").into(), &opts())).unwrap();
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
            run(tiered.put_if_absent(&k2, Bytes::from_static(b"w").into(), &opts())).unwrap(),
            PutOutcome::Created
        );
        assert!(run(tiered.contains(&k2)).unwrap());
        // The injected faults were met: one put, one put_if_absent per read, one put for k2.
        assert_eq!(flaky.calls(), 4);
    }

    #[test]
    fn local_read_errors_fall_back_to_the_remote() {
        let local = Arc::new(InMemoryBackend::new());
        let flaky = Arc::new(Flaky::new(local, ErrorKind::Unavailable));
        let remote = Arc::new(InMemoryBackend::new());
        let tiered = Tiered::new(flaky.clone(), remote.clone());
        let k = key("f/k");
        run(remote.put(&k, Bytes::from_static(b"v").into(), &opts())).unwrap();
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
        let err = run(tiered.put(&k, Bytes::from_static(b"v").into(), &opts())).unwrap_err();
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
            run(s
                .tiered
                .put(&key(k), Bytes::from_static(b"v").into(), &opts()))
            .unwrap();
        }
        // A local-only copy is deleted too; the count is the remote tier's.
        run(s
            .local
            .put(&key("f/local"), Bytes::from_static(b"v").into(), &opts()))
        .unwrap();
        run(s.tiered.delete(&key("f/a"))).unwrap();
        run(s.tiered.delete_many(&[key("f/b")])).unwrap();
        assert_eq!(
            run(s.tiered.delete_prefix(&Prefix::new("f").unwrap())).unwrap(),
            1
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
    fn listing_is_the_remote_one_with_local_accesses() {
        let s = setup();
        run(s
            .tiered
            .put(&key("f/a"), Bytes::from_static(b"abc").into(), &opts()))
        .unwrap();
        run(s
            .remote
            .put(&key("f/b"), Bytes::from_static(b"b").into(), &opts()))
        .unwrap();
        run(s
            .local
            .put(&key("f/local"), Bytes::from_static(b"l").into(), &opts()))
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        run(s.tiered.get(&key("f/a"))).unwrap();
        let mut items = run(s.tiered.list(&Prefix::root())).unwrap();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        let names: Vec<(&str, u64)> = items.iter().map(|i| (i.key.as_str(), i.size)).collect();
        assert_eq!(names, [("f/a", 3), ("f/b", 1)]);
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
            format!("{} in front of {}", s.local.location(), s.remote.location())
        );
        let caps = s.tiered.capabilities();
        assert_eq!(caps, s.remote.capabilities());
        assert_eq!(s.tiered.local_path(&key("f/k")), None);

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
