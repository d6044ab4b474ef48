//! Access markers: how reads are recorded on a store that has no access time.
//!
//! A read of `key` puts an empty object at `<prefix>/.cachette-access/<key>`; the store stamps
//! it with its own clock, so its last-modified time is the time of the read. Markers are written
//! in the background on the `cachette-io` runtime, at most once per key and granularity period
//! in each process; [`AccessTracker::flush`] writes what is still pending before a listing.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::runtime::Handle;

use cachette_core::Key;

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
    /// Keys read but not recorded yet.
    pending: Mutex<BTreeSet<String>>,
    /// When each key was last recorded by this process.
    recent: Mutex<HashMap<String, Instant>>,
    /// A background flush is spawned and has not started draining yet.
    scheduled: AtomicBool,
    /// Held while markers are written, and while items are deleted, so that a marker is
    /// never written for an item this process is deleting.
    writer: tokio::sync::Mutex<()>,
    runtime: Option<Handle>,
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
        runtime: Option<Handle>,
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
            if pending.len() >= MAX_PENDING {
                tracing::debug!(target: "cachette", key = %key, "too many reads waiting to be recorded; dropping one");
                return;
            }
            pending.insert(key.as_str().to_owned());
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
            match &self.runtime {
                Some(runtime) => {
                    let me = Arc::clone(self);
                    runtime.spawn(async move {
                        me.scheduled.store(false, Ordering::Release);
                        me.flush().await;
                    });
                }
                // Without a runtime, markers wait for the next listing.
                None => self.scheduled.store(false, Ordering::Release),
            }
        }
    }

    /// Writes every pending marker, and waits for markers being written in the background.
    /// The first failure drops the markers left, and is logged: a lost marker only makes an
    /// item look less recently read.
    pub(crate) async fn flush(&self) {
        let _writing = self.writer.lock().await;
        let keys = std::mem::take(&mut *lock(&self.pending));
        if keys.is_empty() {
            return;
        }
        let store = &self.store;
        let writes = keys.into_iter().filter_map(|key| {
            let path = self.marker_path(&key)?;
            Some(async move {
                let result = store.put(&path, PutPayload::new()).await;
                (key, result)
            })
        });
        let mut results = futures::stream::iter(writes).buffer_unordered(WRITE_CONCURRENCY);
        while let Some((key, result)) = results.next().await {
            if let Err(e) = result {
                // The store is failing: do not wait for it once per marker.
                tracing::debug!(target: "cachette", key = %key, error = %e, "cannot record reads; dropping those pending");
                break;
            }
        }
    }

    /// Stops marker writes until the guard is dropped, and forgets pending reads of the keys
    /// `doomed` selects: they are about to be deleted.
    pub(crate) async fn quiesce(
        &self,
        doomed: impl Fn(&str) -> bool,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        let guard = self.writer.lock().await;
        lock(&self.pending).retain(|k| !doomed(k));
        lock(&self.recent).retain(|k, _| !doomed(k));
        guard
    }

    fn marker_path(&self, key: &str) -> Option<Path> {
        Path::parse(format!("{}/{key}", self.marker_root)).ok()
    }
}
