//! Access tracking: how reads are recorded on a store that has no access time.
//!
//! Each process batches the keys it reads (those of reads that ask to record their access) in
//! memory, and writes them as one *access log* object per period under
//! `<prefix>/.cachette-access/log/` (see [`log`] for the format and names). A log is written
//! in the background on the `cachette-io` runtime, one period after the first read of its
//! batch; a batch that outgrows one log ([`log::MAX_KEYS_PER_LOG`] keys) is written at once. So
//! a process writes at most one log per period, plus one per 100,000 distinct keys read, and a
//! hit itself waits for nothing but its `GET`.
//!
//! Listings merge the newest logs (bounded: [`LogLimits`]) into last-access times, and this
//! process's reads not written yet from memory ([`AccessLog::unwritten_under`]). Sweeps delete
//! logs older than the retention.
//!
//! Older versions wrote one empty *marker* object per key, `<prefix>/.cachette-access/<key>`;
//! listings still read them and sweeps delete them (see `backend/list.rs`).

pub(crate) mod log;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cachette_core::plugin::chrono::TimeDelta;
use cachette_core::plugin::{Bytes, DateTime, Key, Prefix, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::list::PaginatedListStore;
use object_store::path::Path;
use object_store::{GetResult, ListResult, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::backend::listing;

/// The folder, under the backend's prefix, that holds access logs (and the markers of older
/// versions). Keys under it are reserved.
pub const MARKER_DIR: &str = ".cachette-access";

/// The folder of access logs, under [`MARKER_DIR`].
pub const LOG_DIR: &str = "log";

/// How far ahead of this machine's clock an hour folder of logs may be and still be listed: a
/// writer whose clock is a little ahead names its logs by an hour still to come here. A later
/// folder is no writer's (or one whose clock is wrong): it is neither listed nor read, so
/// objects planted under hours to come cost no request and do not pass for the newest logs.
const FUTURE_FOLDERS: TimeDelta = TimeDelta::hours(1);

/// A sweep lists at most this many hour folders older than the retention (the newest of them
/// first), so that folders planted in the past do not make each sweep one request per folder.
/// A store left unswept for longer than this many hours is cleaned over several sweeps.
const MAX_SWEPT_FOLDERS: usize = 1_000;

/// At most this many distinct keys wait to be written; reads of more are dropped (and those
/// items look less recently read).
const MAX_PENDING: usize = 4 * log::MAX_KEYS_PER_LOG;

/// How much of the access logs a listing reads, and how long logs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogLimits {
    /// Logs older than this are not read, and sweeps delete them.
    pub(crate) retention: Duration,
    /// A listing reads at most this many logs, the newest first.
    pub(crate) max_objects: usize,
    /// A listing reads at most this many bytes of logs, the newest first.
    pub(crate) max_bytes: u64,
}

/// The reads of this process not written yet.
#[derive(Default)]
struct Pending {
    /// Key → when this process last read it.
    reads: HashMap<String, Instant>,
    /// The first read of the batch: the batch is written one period after it.
    since: Option<Instant>,
}

/// Records reads in access logs (see the module docs). Shared by the clones of a backend.
pub(crate) struct AccessLog {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/.cachette-access/log`.
    log_dir: String,
    period: Duration,
    pending: Mutex<Pending>,
    /// A background writer is running (or about to).
    scheduled: AtomicBool,
    /// Wakes the background writer early: its batch is full.
    full: Notify,
    /// Held while logs are written.
    writer: tokio::sync::Mutex<()>,
    /// Logs written by this process.
    written: AtomicU64,
    runtime: Handle,
}

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("log_dir", &self.log_dir)
            .field("period", &self.period)
            .field("pending", &lock(&self.pending).reads.len())
            .field("written", &self.written.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AccessLog {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        log_dir: String,
        period: Duration,
        runtime: Handle,
    ) -> Self {
        AccessLog {
            store,
            log_dir,
            period,
            pending: Mutex::default(),
            scheduled: AtomicBool::new(false),
            full: Notify::new(),
            writer: tokio::sync::Mutex::new(()),
            written: AtomicU64::new(0),
            runtime,
        }
    }

    /// Notes a read of `key`: an insertion in a map, nothing more. The background writer
    /// writes it within a period.
    pub(crate) fn record(self: &Arc<Self>, key: &Key) {
        let now = Instant::now();
        let full = {
            let mut pending = lock(&self.pending);
            let count = pending.reads.len();
            match pending.reads.get_mut(key.as_str()) {
                Some(at) => *at = now,
                None if count >= MAX_PENDING => {
                    tracing::debug!(target: "cachette", key = %key, "too many reads waiting to be logged; dropping one");
                    return;
                }
                None => {
                    pending.reads.insert(key.as_str().to_owned(), now);
                }
            }
            pending.since.get_or_insert(now);
            pending.reads.len() >= log::MAX_KEYS_PER_LOG
        };
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            self.runtime.spawn(async move { me.run().await });
        } else if full {
            self.full.notify_one();
        }
    }

    /// The background writer: writes the batch one period after its first read (or at once
    /// when it is full), until nothing is pending. It holds the tracker, so that dropping the
    /// backend loses no read (the end of the process does).
    async fn run(self: Arc<Self>) {
        loop {
            let due = {
                let pending = lock(&self.pending);
                let full = pending.reads.len() >= log::MAX_KEYS_PER_LOG;
                match pending.since {
                    Some(since) if !full => Some(due_after(since, self.period)),
                    _ => None,
                }
            };
            match due {
                Some(Some(due)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => {}
                        _ = self.full.notified() => {}
                    }
                }
                // A period beyond the clock's range never ends: the batch is written when it
                // is full (or flushed).
                Some(None) => self.full.notified().await,
                None => {}
            }
            self.flush().await;
            self.scheduled.store(false, Ordering::Release);
            let more = lock(&self.pending).since.is_some();
            if !more || self.scheduled.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }

    /// Writes every pending read now (one log, or more for a large batch), and waits for logs
    /// being written in the background. A failure drops the reads being written, and is
    /// logged: a lost read only makes an item look less recently read.
    pub(crate) async fn flush(&self) {
        let _writing = self.writer.lock().await;
        let batch: Vec<(String, Instant)> = lock(&self.pending)
            .reads
            .iter()
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        if batch.is_empty() {
            return;
        }
        let now = Instant::now();
        let reads: Vec<(String, u64)> = batch
            .iter()
            .map(|(k, t)| {
                let age = now.saturating_duration_since(*t).as_millis();
                (k.clone(), u64::try_from(age).unwrap_or(u64::MAX))
            })
            .collect();
        for body in log::encode(&reads) {
            let name = log::new_name(Utc::now());
            let result = match Path::parse(format!("{}/{name}", self.log_dir)) {
                Ok(path) => self
                    .store
                    .put(&path, PutPayload::from(body))
                    .await
                    .map(|_| ()),
                Err(e) => Err(object_store::Error::from(e)),
            };
            match result {
                Ok(()) => {
                    self.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(target: "cachette", error = %e, reads = reads.len(), "cannot write an access log; dropping the reads it held");
                    break;
                }
            }
        }
        // Reads of the same keys made meanwhile stay pending.
        let mut pending = lock(&self.pending);
        for (key, at) in &batch {
            if pending.reads.get(key) == Some(at) {
                pending.reads.remove(key);
            }
        }
        pending.since = pending.reads.values().min().copied();
    }

    /// How many access logs this process wrote.
    pub(crate) fn logs_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The reads of keys under `prefix` not written yet, with their time on this machine's
    /// clock.
    pub(crate) fn unwritten_under(&self, prefix: &Prefix) -> HashMap<String, DateTime<Utc>> {
        let (now, wall) = (Instant::now(), Utc::now());
        lock(&self.pending)
            .reads
            .iter()
            .filter(|(k, _)| prefix.matches(k))
            .map(|(k, t)| (k.clone(), before(wall, now.saturating_duration_since(*t))))
            .collect()
    }

    /// Forgets pending reads of the keys `doomed` selects: they are being deleted.
    pub(crate) fn forget(&self, doomed: impl Fn(&str) -> bool) {
        let mut pending = lock(&self.pending);
        pending.reads.retain(|k, _| !doomed(k));
        if pending.reads.is_empty() {
            pending.since = None;
        }
    }
}

/// When a batch begun at `since` is due: one `period` later, or `None` when that is beyond the
/// clock's range (a period no configuration allows, but a builder may set).
fn due_after(since: Instant, period: Duration) -> Option<Instant> {
    since.checked_add(period)
}

/// `at - d`, or the earliest time there is when that is out of range: a retention or an age
/// too long for the calendar reaches back to the beginning of time, and never panics.
pub(crate) fn before(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The body of `found`, read until it ends or holds at least `limit` bytes: a store that answers
/// more than it was asked is not read to its end.
async fn read_at_most(found: GetResult, limit: u64) -> object_store::Result<Bytes> {
    let mut chunks = found.into_stream();
    let mut body: Vec<Bytes> = Vec::new();
    let mut len: u64 = 0;
    while len < limit {
        let Some(chunk) = chunks.try_next().await? else {
            break;
        };
        len = len.saturating_add(chunk.len() as u64);
        body.push(chunk);
    }
    Ok(match body.len() {
        1 => body.remove(0),
        _ => Bytes::from(body.concat()),
    })
}

/// Where access logs are, and how to read them.
pub(crate) struct LogReader<'a> {
    pub(crate) store: &'a Arc<dyn ObjectStore>,
    /// The store's pages, when it gives them: listings then go one page after another, each
    /// checked (see [`listing::list_one`]).
    pub(crate) pages: Option<&'a Arc<dyn PaginatedListStore>>,
    /// `<prefix>/.cachette-access/log`.
    pub(crate) log_dir: &'a str,
    pub(crate) limits: LogLimits,
    /// Logs read at once.
    pub(crate) concurrency: usize,
}

/// What [`LogReader::read`] found: the last read of each key, and what it read.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    pub(crate) last: HashMap<String, DateTime<Utc>>,
    pub(crate) logs_read: usize,
    pub(crate) bytes_read: u64,
    /// Logs within the retention left unread by the limits.
    pub(crate) logs_left: usize,
}

impl LogReader<'_> {
    fn dir(&self) -> object_store::Result<Path> {
        Ok(Path::parse(self.log_dir)?)
    }

    /// One listing of the log folder (`delimiter`: its hour folders) or of an hour folder,
    /// bounded by the limits of the logs: the store's answers cannot make it endless.
    async fn list(&self, prefix: &Path, delimiter: bool) -> object_store::Result<ListResult> {
        let limits = listing::log_listing_limits(self.limits.max_objects);
        listing::list_one(self.store.as_ref(), self.pages, prefix, delimiter, limits).await
    }

    /// The hour folders of the log directory, newest first, with their start; not those later
    /// than `now` by more than [`FUTURE_FOLDERS`]. Folder names are canonical
    /// ([`log::hour_of_folder`]): one folder an hour at most.
    async fn hours(&self, now: DateTime<Utc>) -> object_store::Result<Vec<(DateTime<Utc>, Path)>> {
        let latest = now
            .checked_add_signed(FUTURE_FOLDERS)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let listed = self.list(&self.dir()?, true).await?;
        let mut hours: Vec<(DateTime<Utc>, Path)> = listed
            .common_prefixes
            .into_iter()
            .filter_map(|p| Some((log::hour_of_folder(p.filename()?)?, p)))
            .filter(|(hour, _)| *hour <= latest)
            .collect();
        hours.sort_by_key(|h| std::cmp::Reverse(h.0));
        Ok(hours)
    }

    /// The name of a log relative to the log directory, and its time, if this library wrote it.
    fn log_time(&self, meta: &ObjectMeta) -> Option<DateTime<Utc>> {
        let name = meta
            .location
            .as_ref()
            .strip_prefix(self.log_dir)?
            .strip_prefix('/')?;
        log::time_of_log(name)
    }

    /// The last read of each key `wanted` selects, from the newest logs within the limits: logs
    /// are listed hour folder by hour folder, newest first, until [`LogLimits`] are reached,
    /// then read `concurrency` at a time. A read's time is its log's last-modified time (the
    /// store's clock) minus its age, never later than `now`.
    ///
    /// The store is untrusted, and every cost is bounded: folders of hours to come are skipped
    /// and names are canonical, so a listing lists at most one folder per hour of the retention
    /// (plus three); each log is read only up to one byte past its listed size (a longer one is
    /// skipped), so the bytes received are at most `max_bytes` plus one per log.
    pub(crate) async fn read(
        &self,
        wanted: impl Fn(&str) -> bool,
        now: DateTime<Utc>,
    ) -> object_store::Result<Reads> {
        let oldest = before(now, self.limits.retention);
        let mut chosen: Vec<ObjectMeta> = Vec::new();
        let mut reads = Reads::default();
        // The bytes of the logs chosen, by their listed sizes.
        let mut planned: u64 = 0;
        for (hour, folder) in self.hours(now).await? {
            if hour + TimeDelta::hours(1) < oldest {
                break;
            }
            let mut logs: Vec<ObjectMeta> = self.list(&folder, false).await?.objects;
            logs.retain(|meta| {
                self.log_time(meta).is_some()
                    && meta.size > 0
                    && meta.size <= log::MAX_READ_LOG_BYTES
                    && meta.last_modified >= oldest
            });
            logs.sort_by(|a, b| b.location.cmp(&a.location));
            for meta in logs {
                let fits = chosen.len() < self.limits.max_objects
                    && planned.saturating_add(meta.size) <= self.limits.max_bytes;
                if fits {
                    planned += meta.size;
                    chosen.push(meta);
                } else {
                    reads.logs_left += 1;
                }
            }
            if chosen.len() >= self.limits.max_objects {
                break;
            }
        }
        let mut bodies = futures::stream::iter(chosen)
            .map(|meta| async move {
                // The listing's size is the store's word, and a log may be replaced between
                // the listing and this read: never more than one byte past the size listed
                // (which is at most `MAX_READ_LOG_BYTES`), so that a longer body is seen, and
                // skipped, without being read.
                let limit = meta.size + 1;
                let bounded = object_store::GetOptions {
                    range: Some(object_store::GetRange::Bounded(0..limit)),
                    ..Default::default()
                };
                match self.store.get_opts(&meta.location, bounded).await {
                    Ok(found) => read_at_most(found, limit).await.map(|b| Some((meta, b))),
                    // Swept meanwhile.
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.concurrency.max(1));
        while let Some((meta, body)) = bodies.try_next().await?.flatten() {
            // What was received counts, not what was listed.
            reads.bytes_read = reads.bytes_read.saturating_add(body.len() as u64);
            // The store may answer more than it listed.
            if body.len() as u64 > meta.size {
                tracing::debug!(target: "cachette", log = %meta.location, listed = meta.size, "an access log longer than listed; ignored");
                continue;
            }
            let written = meta.last_modified;
            let parsed = log::parse(&body, |key, age| {
                if !wanted(&key) {
                    return;
                }
                let at = before(written, age).min(now);
                reads
                    .last
                    .entry(key)
                    .and_modify(|t| *t = (*t).max(at))
                    .or_insert(at);
            });
            match parsed {
                Some(parsed) if parsed.skipped > 0 => {
                    tracing::debug!(target: "cachette", log = %meta.location, skipped = parsed.skipped, "skipped lines of an access log");
                }
                Some(_) => {}
                None => {
                    tracing::debug!(target: "cachette", log = %meta.location, "not an access log; ignored");
                }
            }
            reads.logs_read += 1;
        }
        Ok(reads)
    }

    /// Deletes the logs this library wrote that are older than the retention (by their
    /// last-modified time, in hour folders that ended before the retention began), listing at
    /// most [`MAX_SWEPT_FOLDERS`] folders, the newest first. Gives how many went.
    pub(crate) async fn sweep(&self, now: DateTime<Utc>) -> object_store::Result<u64> {
        let oldest = before(now, self.limits.retention);
        let mut old: Vec<Path> = Vec::new();
        let folders = self.hours(now).await?.into_iter();
        let old_folders = folders.filter(|(hour, _)| *hour + TimeDelta::hours(1) < oldest);
        for (_, folder) in old_folders.take(MAX_SWEPT_FOLDERS) {
            let logs = self.list(&folder, false).await?.objects;
            old.extend(
                logs.into_iter()
                    .filter(|meta| self.log_time(meta).is_some() && meta.last_modified < oldest)
                    .map(|meta| meta.location),
            );
        }
        if old.is_empty() {
            return Ok(0);
        }
        let locations = futures::stream::iter(old.into_iter().map(Ok)).boxed();
        let mut deleted = 0;
        let mut results = self.store.delete_stream(locations);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_saturates() {
        let now = Utc::now();
        assert_eq!(
            before(now, Duration::from_secs(60)),
            now - TimeDelta::seconds(60)
        );
        assert_eq!(before(now, Duration::ZERO), now);
        // `TimeDelta::MAX` is in range of `TimeDelta` but not of `now - it`.
        let too_long = TimeDelta::MAX.to_std().unwrap();
        for d in [too_long, Duration::from_secs(u64::MAX), Duration::MAX] {
            assert_eq!(before(now, d), DateTime::<Utc>::MIN_UTC, "{d:?}");
        }
        assert_eq!(
            before(DateTime::<Utc>::MIN_UTC, Duration::from_secs(1)),
            DateTime::<Utc>::MIN_UTC
        );
    }

    #[test]
    fn due_after_does_not_overflow() {
        let now = Instant::now();
        assert_eq!(
            due_after(now, Duration::from_secs(60)),
            Some(now + Duration::from_secs(60))
        );
        assert_eq!(due_after(now, Duration::MAX), None);
        assert_eq!(due_after(now, Duration::from_secs(u64::MAX)), None);
    }

    /// A store that anyone may write: an in-memory store that counts the folders listed and
    /// the bytes it serves, and may list every object with a size of its own.
    mod hostile {
        use std::fmt;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
        use std::time::Duration;

        use cachette_core::plugin::{Bytes, DateTime, Utc};
        use futures::StreamExt;
        use futures::stream::BoxStream;
        use object_store::memory::InMemory;
        use object_store::path::Path;
        use object_store::{
            CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
            ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
            Result,
        };

        use super::super::{LogLimits, LogReader, MAX_SWEPT_FOLDERS, log};
        use cachette_core::plugin::chrono::TimeDelta;

        const DIR: &str = "p/.cachette-access/log";

        #[derive(Debug, Default)]
        struct Watched {
            inner: InMemory,
            /// The size every object is listed with, if not its own.
            listed_size: Option<u64>,
            lists: AtomicUsize,
            served: AtomicU64,
        }

        impl fmt::Display for Watched {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Watched")
            }
        }

        #[cachette_core::plugin::async_trait]
        impl ObjectStore for Watched {
            async fn put_opts(&self, p: &Path, v: PutPayload, o: PutOptions) -> Result<PutResult> {
                self.inner.put_opts(p, v, o).await
            }
            async fn put_multipart_opts(
                &self,
                p: &Path,
                o: PutMultipartOptions,
            ) -> Result<Box<dyn MultipartUpload>> {
                self.inner.put_multipart_opts(p, o).await
            }
            async fn get_opts(&self, p: &Path, o: GetOptions) -> Result<GetResult> {
                let found = self.inner.get_opts(p, o).await?;
                self.served
                    .fetch_add(found.range.end - found.range.start, Ordering::SeqCst);
                Ok(found)
            }
            fn delete_stream(
                &self,
                locations: BoxStream<'static, Result<Path>>,
            ) -> BoxStream<'static, Result<Path>> {
                self.inner.delete_stream(locations)
            }
            fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
                self.lists.fetch_add(1, Ordering::SeqCst);
                let size = self.listed_size;
                self.inner
                    .list(prefix)
                    .map(move |meta| {
                        meta.map(|mut meta| {
                            meta.size = size.unwrap_or(meta.size);
                            meta
                        })
                    })
                    .boxed()
            }
            async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
                self.inner.list_with_delimiter(prefix).await
            }
            async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> Result<()> {
                self.inner.copy_opts(from, to, o).await
            }
        }

        async fn put(store: &Watched, name: &str, body: Bytes) {
            let path = Path::parse(format!("{DIR}/{name}")).unwrap();
            store.inner.put(&path, body.into()).await.unwrap();
        }

        fn log_of(keys: &[&str]) -> Bytes {
            let reads: Vec<(String, u64)> = keys.iter().map(|k| (k.to_string(), 0)).collect();
            log::encode(&reads).remove(0)
        }

        fn hour(at: DateTime<Utc>) -> String {
            at.format("%Y%m%dT%H").to_string()
        }

        fn reader(
            store: &Arc<dyn ObjectStore>,
            max_objects: usize,
            max_bytes: u64,
        ) -> LogReader<'_> {
            LogReader {
                store,
                pages: None,
                log_dir: DIR,
                limits: LogLimits {
                    retention: Duration::from_secs(24 * 3600),
                    max_objects,
                    max_bytes,
                },
                concurrency: 4,
            }
        }

        /// Objects planted under hours to come (junk, and logs named as this library names
        /// them) cost no request and do not take the place of the newest logs.
        #[tokio::test]
        async fn folders_of_hours_to_come_are_neither_listed_nor_read() {
            let watched = Arc::new(Watched::default());
            let now = Utc::now();
            put(&watched, &log::new_name(now), log_of(&["a/real"])).await;
            let far = "2098-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
            for i in 0..10 {
                let at = far + TimeDelta::hours(i);
                put(&watched, &log::new_name(at), log_of(&["a/planted"])).await;
            }
            for i in 0..50 {
                let at = far + TimeDelta::days(400) + TimeDelta::hours(i);
                put(
                    &watched,
                    &format!("{}/junk", hour(at)),
                    Bytes::from_static(b"x"),
                )
                .await;
            }
            // Two hours ahead: more than a clock ahead of this one.
            let ahead = now + TimeDelta::hours(2);
            put(&watched, &log::new_name(ahead), log_of(&["a/ahead"])).await;
            let store: Arc<dyn ObjectStore> = watched.clone();
            let reads = reader(&store, 3, 1 << 20)
                .read(|_| true, now)
                .await
                .unwrap();
            assert!(reads.last.contains_key("a/real"), "{reads:?}");
            assert!(!reads.last.contains_key("a/planted"), "{reads:?}");
            assert!(!reads.last.contains_key("a/ahead"), "{reads:?}");
            // The folder of this hour only.
            assert_eq!(watched.lists.load(Ordering::SeqCst), 1);
            // A sweep lists none of them either, and deletes nothing.
            assert_eq!(reader(&store, 3, 1 << 20).sweep(now).await.unwrap(), 0);
            assert_eq!(watched.lists.load(Ordering::SeqCst), 1);
        }

        /// Folders planted in the past make a sweep list at most `MAX_SWEPT_FOLDERS` folders,
        /// and the newest old logs still go.
        #[tokio::test]
        async fn a_sweep_lists_a_bounded_number_of_old_folders() {
            let watched = Arc::new(Watched::default());
            let now = Utc::now();
            let old = now - TimeDelta::hours(1);
            put(&watched, &log::new_name(old), log_of(&["a/old"])).await;
            let past = "1990-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
            for i in 0..MAX_SWEPT_FOLDERS as i64 + 10 {
                let at = past + TimeDelta::hours(i);
                put(
                    &watched,
                    &format!("{}/junk", hour(at)),
                    Bytes::from_static(b"x"),
                )
                .await;
            }
            let store: Arc<dyn ObjectStore> = watched.clone();
            // Two days later, with a retention of one: the log is old.
            let later = now + TimeDelta::days(2);
            assert_eq!(reader(&store, 3, 1 << 20).sweep(later).await.unwrap(), 1);
            assert_eq!(watched.lists.load(Ordering::SeqCst), MAX_SWEPT_FOLDERS);
        }

        /// The bytes a listing receives are bounded by `max_bytes` (plus one a log), whatever
        /// sizes the store lists: a log listed as one byte and holding a quarter of a MiB is
        /// read no further than two bytes, and skipped.
        #[tokio::test]
        async fn logs_are_read_no_further_than_their_listed_size() {
            let keys: Vec<String> = (0..10_000).map(|i| format!("a/key-{i:08}")).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let body = log_of(&keys);
            assert!(body.len() > 100_000);
            let now = Utc::now();
            for listed_size in [None, Some(1)] {
                let watched = Arc::new(Watched {
                    listed_size,
                    ..Watched::default()
                });
                for i in 0..8 {
                    let at = now - TimeDelta::milliseconds(i);
                    put(&watched, &log::new_name(at), body.clone()).await;
                }
                let store: Arc<dyn ObjectStore> = watched.clone();
                let max_bytes = 16 * body.len() as u64;
                let reads = reader(&store, 8, max_bytes)
                    .read(|_| true, now)
                    .await
                    .unwrap();
                let served = watched.served.load(Ordering::SeqCst);
                assert_eq!(reads.bytes_read, served);
                match listed_size {
                    None => {
                        assert_eq!(reads.logs_read, 8);
                        assert_eq!(reads.last.len(), keys.len());
                        assert_eq!(served, 8 * body.len() as u64);
                    }
                    Some(_) => {
                        assert_eq!(reads.logs_read, 0);
                        assert!(reads.last.is_empty());
                        // One byte past the one listed, a log.
                        assert_eq!(served, 8 * 2);
                    }
                }
            }
        }
    }
}
