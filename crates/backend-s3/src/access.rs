//! Access markers: how reads are recorded on a store that has no access time.
//!
//! A read of `key` that asks to record its access puts an empty object at
//! `<prefix>/.cachette-access/<key>`; the store stamps it with its own clock, so its
//! last-modified time is the time of the read. Markers are written in the background on the
//! `cachette-io` runtime, at most once per key and granularity period in each process: a task is
//! spawned by the first read that finds no task waiting, and it holds the tracker, so dropping
//! the backend does not lose the reads still pending (the end of the process does).
//!
//! Until its marker is written, a read is kept here with the local time it happened at, and
//! [`AccessTracker::unwritten_under`] gives those reads to listings, which therefore see this
//! process's reads at once without writing anything themselves.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cachette_core::plugin::{DateTime, Key, Prefix, Utc};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::runtime::Handle;

/// The folder, under the backend's prefix, that holds access markers. Keys under it are
/// reserved.
pub const MARKER_DIR: &str = ".cachette-access";

/// At most this many reads wait to be recorded; more are dropped (and counted as not read).
const MAX_PENDING: usize = 100_000;
/// At most this many keys are remembered for throttling.
const MAX_RECENT: usize = 100_000;
/// Markers written at once.
const WRITE_CONCURRENCY: usize = 8;

/// Records reads as marker objects (see the module docs). Shared by the clones of a backend.
pub(crate) struct AccessTracker {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/.cachette-access`, or `.cachette-access` at the bucket root.
    marker_root: String,
    granularity: Duration,
    /// Keys read whose marker is not written yet, with the (local) time of the read.
    pending: Mutex<HashMap<String, DateTime<Utc>>>,
    /// When each key was last recorded by this process.
    recent: Mutex<HashMap<String, Instant>>,
    /// A background flush is spawned and has not started yet.
    scheduled: AtomicBool,
    /// Held while markers are written, and while items are deleted, so that a marker is
    /// never written for an item this process is deleting.
    writer: tokio::sync::Mutex<()>,
    runtime: Handle,
}

impl fmt::Debug for AccessTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTracker")
            .field("marker_root", &self.marker_root)
            .field("granularity", &self.granularity)
            .field("pending", &lock(&self.pending).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AccessTracker {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        marker_root: String,
        granularity: Duration,
        runtime: Handle,
    ) -> Self {
        AccessTracker {
            store,
            marker_root,
            granularity,
            pending: Mutex::default(),
            recent: Mutex::default(),
            scheduled: AtomicBool::new(false),
            writer: tokio::sync::Mutex::new(()),
            runtime,
        }
    }

    /// Notes a read of `key`; its marker is written soon, in the background.
    pub(crate) fn record(self: &Arc<Self>, key: &Key) {
        let now = Instant::now();
        let mut recent = lock(&self.recent);
        if recent
            .get(key.as_str())
            .is_some_and(|t| now.duration_since(*t) < self.granularity)
        {
            return;
        }
        {
            let mut pending = lock(&self.pending);
            if pending.len() >= MAX_PENDING && !pending.contains_key(key.as_str()) {
                tracing::debug!(target: "cachette", key = %key, "too many reads waiting to be recorded; dropping one");
                return;
            }
            pending.insert(key.as_str().to_owned(), Utc::now());
        }
        if recent.len() >= MAX_RECENT {
            recent.retain(|_, t| now.duration_since(*t) < self.granularity);
            if recent.len() >= MAX_RECENT {
                recent.clear();
            }
        }
        recent.insert(key.as_str().to_owned(), now);
        drop(recent);
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            self.runtime.spawn(async move {
                me.scheduled.store(false, Ordering::Release);
                me.flush().await;
            });
        }
    }

    /// Writes every pending marker, and waits for markers being written in the background.
    /// A read leaves the pending set once its marker is written. The first failure drops the
    /// reads being written, and is logged: a lost marker only makes an item look less recently
    /// read.
    pub(crate) async fn flush(&self) {
        let _writing = self.writer.lock().await;
        let batch: Vec<(String, DateTime<Utc>)> = lock(&self.pending)
            .iter()
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        if batch.is_empty() {
            return;
        }
        let writes: Vec<_> = batch
            .iter()
            .map(|(key, at)| {
                let store = Arc::clone(&self.store);
                let path = self.marker_path(key);
                let (key, at) = (key.clone(), *at);
                async move {
                    let result = match path {
                        Some(path) => store.put(&path, PutPayload::new()).await.map(|_| ()),
                        // Not a valid object name: nothing to write, nothing to retry.
                        None => Ok(()),
                    };
                    (key, at, result)
                }
            })
            .collect();
        let mut results = futures::stream::iter(writes).buffer_unordered(WRITE_CONCURRENCY);
        let mut failed = false;
        while let Some((key, at, result)) = results.next().await {
            if let Err(e) = &result {
                // The store is failing: do not wait for it once per marker.
                tracing::debug!(target: "cachette", key = %key, error = %e, "cannot record reads; dropping those pending");
                failed = true;
                break;
            }
            self.written(&key, at);
        }
        drop(results);
        if failed {
            for (key, at) in &batch {
                self.written(key, *at);
            }
        }
    }

    /// Forgets the read of `key` at `at`, now written (or given up); a later read of the same
    /// key stays pending.
    fn written(&self, key: &str, at: DateTime<Utc>) {
        let mut pending = lock(&self.pending);
        if pending.get(key) == Some(&at) {
            pending.remove(key);
        }
    }

    /// The reads of keys under `prefix` whose markers are not written yet, with the local time
    /// of each read.
    pub(crate) fn unwritten_under(&self, prefix: &Prefix) -> HashMap<String, DateTime<Utc>> {
        lock(&self.pending)
            .iter()
            .filter(|(k, _)| prefix.matches(k))
            .map(|(k, t)| (k.clone(), *t))
            .collect()
    }

    /// Stops marker writes until the guard is dropped, and forgets pending reads of the keys
    /// `doomed` selects: they are about to be deleted.
    pub(crate) async fn quiesce(
        &self,
        doomed: impl Fn(&str) -> bool,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        let guard = self.writer.lock().await;
        self.forget(doomed);
        guard
    }

    /// Forgets pending reads of the keys `doomed` selects (reads that raced with their
    /// deletion).
    pub(crate) fn forget(&self, doomed: impl Fn(&str) -> bool) {
        lock(&self.pending).retain(|k, _| !doomed(k));
        lock(&self.recent).retain(|k, _| !doomed(k));
    }

    fn marker_path(&self, key: &str) -> Option<Path> {
        Path::parse(format!("{}/{key}", self.marker_root)).ok()
    }
}
