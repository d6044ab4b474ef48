//! The two shortcuts of the backend contract, taken by the core:
//!
//! - a synchronous hit is read with `StoreBackend::get_now` when every layer down to the store
//!   answers it, without awaiting `get_opts`; a backend or a layer that does not answer it is
//!   read the usual way; either way the hit is counted and the output is the stored one;
//! - the write of a small entry computed under a compute-once claim deletes the claim with
//!   `StoreBackend::put_then_delete`, instead of a delete of its own; a large entry's claim is
//!   deleted after its write, as before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cachette::Memory;
use cachette::plugin::{
    BackendResult, Blob, Capabilities, DynBackend, GetOptions, GetResult, InMemoryBackend,
    ItemInfo, Key, Prefix, PutOptions, PutOutcome, StoreBackend, async_trait, block_on,
};

/// Forwards everything to `inner`, counting the reads of entries (those that record an
/// access) by the way they came; answers `get_now` only when `now`.
#[derive(Debug)]
struct Counting {
    inner: DynBackend,
    now: bool,
    awaited: AtomicUsize,
    answered_now: AtomicUsize,
    /// The items deleted along with a write.
    deleted_with_writes: Mutex<Vec<String>>,
    /// The items deleted by `delete_many`.
    deleted_alone: Mutex<Vec<String>>,
}

impl Counting {
    fn new(now: bool) -> Arc<Counting> {
        Arc::new(Counting {
            inner: Arc::new(InMemoryBackend::new()),
            now,
            awaited: AtomicUsize::new(0),
            answered_now: AtomicUsize::new(0),
            deleted_with_writes: Mutex::default(),
            deleted_alone: Mutex::default(),
        })
    }
}

#[async_trait]
impl StoreBackend for Counting {
    fn scheme(&self) -> &'static str {
        "counting"
    }

    fn location(&self) -> String {
        "counting://".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        if options.record_access {
            self.awaited.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.get_opts(key, options).await
    }

    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        if !self.now {
            return None;
        }
        let found = self.inner.get_now(key, options)?;
        if options.record_access {
            self.answered_now.fetch_add(1, Ordering::Relaxed);
        }
        Some(found)
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.inner.put_opts(key, value, options).await
    }

    async fn put_then_delete(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
        delete: &Key,
    ) -> BackendResult<PutOutcome> {
        let outcome = self
            .inner
            .put_then_delete(key, value, options, delete)
            .await?;
        let mut deleted = self.deleted_with_writes.lock().unwrap();
        deleted.push(delete.as_str().to_owned());
        Ok(outcome)
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        self.deleted_alone
            .lock()
            .unwrap()
            .extend(keys.iter().map(|key| key.as_str().to_owned()));
        self.inner.delete_many(keys).await
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.inner.list(prefix).await
    }
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn synchronous_hits_are_read_now_when_the_store_answers_now() {
    for now in [true, false] {
        let store = Counting::new(now);
        let memory = Memory::builder()
            .backend(store.clone())
            .build()
            .expect("a memory");
        let f = memory.cache_fn(square);
        assert_eq!(f.eval(7), 49);
        let before = memory.stats().expect("stats").store.hits;
        for _ in 0..3 {
            assert_eq!(f.eval(7), 49);
        }
        let stats = memory.stats().expect("stats");
        assert_eq!(stats.calls.hits, 3, "now: {now}");
        assert_eq!(
            stats.store.hits - before,
            3,
            "counted by the stats layer; now: {now}"
        );
        let (awaited, answered_now) = (
            store.awaited.load(Ordering::Relaxed),
            store.answered_now.load(Ordering::Relaxed),
        );
        if now {
            assert_eq!(
                (awaited, answered_now),
                (0, 4),
                "the miss's lookup and 3 hits"
            );
        } else {
            assert_eq!((awaited, answered_now), (4, 0));
        }
    }
}

#[tokio::test]
async fn asynchronous_hits_await_the_store() {
    let store = Counting::new(true);
    let memory = Memory::builder()
        .backend(store.clone())
        .build()
        .expect("a memory");
    let f = memory.cache_fn(square);
    for _ in 0..2 {
        let got = f
            .call_with_async(
                8,
                |x| async move { Ok::<_, std::convert::Infallible>(x * x) },
            )
            .await;
        assert_eq!(got, Ok(64));
    }
    assert_eq!(store.answered_now.load(Ordering::Relaxed), 0);
    assert_eq!(store.awaited.load(Ordering::Relaxed), 2);
}

/// The claims a store holds.
fn claims(store: &Counting) -> Vec<String> {
    let items = block_on(false, store.list(&Prefix::root()))
        .expect("the I/O runtime")
        .expect("a listing");
    items
        .into_iter()
        .map(|item| item.key.as_str().to_owned())
        .filter(|key| key.ends_with(".claim"))
        .collect()
}

#[test]
fn a_small_entry_deletes_its_claim_with_its_write() {
    let store = Counting::new(true);
    let memory = Memory::builder()
        .backend(store.clone())
        .claims(true)
        .build()
        .expect("a memory");
    assert!(memory.compute_once() && memory.claims());
    let f = memory.cache_fn(square);
    assert_eq!(f.eval(5), 25);
    let with_writes = store.deleted_with_writes.lock().unwrap().clone();
    assert_eq!(with_writes.len(), 1, "{with_writes:?}");
    assert!(with_writes[0].ends_with(".claim"), "{with_writes:?}");
    let alone = store.deleted_alone.lock().unwrap().clone();
    assert!(alone.is_empty(), "the claim was deleted again: {alone:?}");
    assert!(claims(&store).is_empty());
    assert_eq!(f.eval(5), 25);

    // An async caller's miss too.
    let got = block_on(
        false,
        f.call_with_async(
            6,
            |x| async move { Ok::<_, std::convert::Infallible>(x * x) },
        ),
    )
    .expect("the I/O runtime");
    assert_eq!(got, Ok(36));
    assert_eq!(store.deleted_with_writes.lock().unwrap().len(), 2);
    assert!(store.deleted_alone.lock().unwrap().is_empty());
    assert!(claims(&store).is_empty());
}

#[test]
fn a_large_entry_deletes_its_claim_after_its_write() {
    let store = Counting::new(true);
    let memory = Memory::builder()
        .backend(store.clone())
        .claims(true)
        .build()
        .expect("a memory");
    let f = memory.cache_fn(|n: usize| vec![7u8; n]);
    let big = 2 << 20;
    assert_eq!(f.eval(big).len(), big);
    assert!(store.deleted_with_writes.lock().unwrap().is_empty());
    let alone = store.deleted_alone.lock().unwrap().clone();
    assert_eq!(alone.len(), 1, "{alone:?}");
    assert!(alone[0].ends_with(".claim"), "{alone:?}");
    assert!(claims(&store).is_empty());
}
