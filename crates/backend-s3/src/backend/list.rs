//! Listings (`list`, `sweep`): the items under a prefix with their last access, merged from
//! their own times, the access logs, the markers of older versions and this process's reads
//! not logged yet; and the sweep of old logs and markers.

use std::collections::HashMap;

use cachette_core::plugin::{
    BackendError, BackendResult, DateTime, ErrorKind, ItemInfo, Key, Prefix, StoreBackendExt as _,
    Utc,
};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;

use super::{MARKER_DIR, S3Backend, join, listing};
use crate::access::{LogReader, Reads, before};

/// Items checked at once by a sweep before their markers go.
const SWEEP_CONCURRENCY: usize = 16;

impl S3Backend {
    fn log_reader(&self) -> LogReader<'_> {
        LogReader {
            store: &self.store,
            pages: self.lister.pages.as_ref(),
            log_dir: self.log_dir_str(),
            limits: self.log_limits,
            concurrency: self.lister.concurrency,
        }
    }

    /// [`StoreBackend::list`](cachette_core::plugin::StoreBackend::list). Writes nothing.
    pub(super) async fn list_items(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        const OPERATION: &str = "list";
        self.check_prefix(OPERATION, prefix)?;
        // Taken before the listing: a read logged meanwhile is then in the logs, and a read
        // not logged yet is here.
        let unwritten = self
            .tracker
            .as_ref()
            .map(|tracker| tracker.unwritten_under(prefix))
            .unwrap_or_default();
        let now = Utc::now();
        let logs = async {
            self.log_reader()
                .read(|key| prefix.matches(key), now)
                .await
                .map_err(|e| self.listing_error(OPERATION, MARKER_DIR, e))
        };
        let ((items, markers), reads) =
            futures::future::try_join(self.objects_under(OPERATION, prefix), logs).await?;
        let Reads {
            last: logged,
            logs_read,
            bytes_read,
            logs_left,
        } = reads;
        if logs_left > 0 {
            tracing::debug!(target: "cachette", logs_read, bytes_read, logs_left, "read the newest access logs only (access_log_max_objects, access_log_max_bytes)");
        }
        let marked: HashMap<&str, DateTime<Utc>> = markers
            .iter()
            .filter(|m| m.size == 0)
            .filter_map(|m| Some((self.marked_key(&m.location)?, m.last_modified)))
            .collect();
        let now = Utc::now();
        let mut out = Vec::with_capacity(items.len());
        for meta in &items {
            let Some(name) = self.key_of(&meta.location) else {
                continue;
            };
            let Ok(key) = Key::new(name) else {
                tracing::debug!(target: "cachette", object = %meta.location, "skipping an object whose name is not a key");
                continue;
            };
            let reads = [marked.get(name), logged.get(name), unwritten.get(name)];
            let last_access = last_access(meta.last_modified, reads.into_iter().flatten(), now);
            out.push(ItemInfo {
                key,
                size: meta.size,
                last_access,
            });
        }
        Ok(out)
    }

    /// [`StoreBackend::sweep`](cachette_core::plugin::StoreBackend::sweep): deletes the access
    /// logs older than the retention (wherever the prefix), and the empty marker objects of
    /// older versions under the prefix that are older than the retention or whose item, checked
    /// with a `HEAD`, does not exist. Nothing else. Gives how many objects went.
    pub(super) async fn sweep_tracking(&self, prefix: &Prefix) -> BackendResult<u64> {
        const OPERATION: &str = "sweep";
        self.check_prefix(OPERATION, prefix)?;
        let now = Utc::now();
        let logs = self
            .log_reader()
            .sweep(now)
            .await
            .map_err(|e| self.listing_error(OPERATION, MARKER_DIR, e))?;
        let markers = self
            .lister
            .list(
                self.prefix_path(OPERATION, &join(MARKER_DIR, prefix.as_str()))?
                    .as_ref(),
            )
            .await
            .map_err(|e| self.listing_error(OPERATION, prefix.as_str(), e))?;
        let oldest = before(now, self.log_limits.retention);
        let candidates: Vec<(Key, Path, bool)> = markers
            .into_iter()
            .filter(|m| m.size == 0)
            .filter_map(|m| {
                let name = self.marked_key(&m.location)?;
                // Markers were only written for keys, never for reserved ones.
                let key = Key::new(name).ok()?;
                self.path(OPERATION, &key).ok()?;
                Some((key, m.location, m.last_modified < oldest))
            })
            .collect();
        // An item deleted, or written since its marker (which it then outdates), loses
        // nothing with its marker.
        let doomed: Vec<Path> = futures::stream::iter(candidates)
            .map(|(key, marker, old)| async move {
                let gone = old || !self.contains(&key).await?;
                Ok::<_, BackendError>(gone.then_some(marker))
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .try_filter_map(|doomed| async move { Ok(doomed) })
            .try_collect()
            .await?;
        let deleted = self
            .delete_paths(OPERATION, "access markers", doomed)
            .await?;
        Ok(logs + deleted.len() as u64)
    }

    /// The error of a listing: a [`listing::Refused`] one (the store's answers would make the
    /// listing endless or unbounded) is not temporary, the same answers would come again.
    fn listing_error(
        &self,
        operation: &'static str,
        key: &str,
        err: object_store::Error,
    ) -> BackendError {
        match listing::refusal(&err) {
            Some(refused) => BackendError::new(ErrorKind::Other, refused.to_string())
                .with_backend(self.scheme)
                .with_operation(operation)
                .with_key(key)
                .set_temporary(false),
            None => self.error(operation, key, err),
        }
    }

    /// Item objects under a prefix of keys, and the markers (of older versions) of those
    /// items. For the whole store, one listing gives both.
    async fn objects_under(
        &self,
        operation: &'static str,
        prefix: &Prefix,
    ) -> BackendResult<(Vec<ObjectMeta>, Vec<ObjectMeta>)> {
        let list = |path: Option<Path>| async move {
            let shown = path.as_ref().map(|p| p.to_string()).unwrap_or_default();
            self.lister
                .list(path.as_ref())
                .await
                .map_err(|e| self.listing_error(operation, &shown, e))
        };
        if prefix.is_root() {
            let all = list(self.prefix_path(operation, "")?).await?;
            let (tracking, items) = all
                .into_iter()
                .partition(|meta| self.is_tracking(&meta.location));
            return Ok((items, tracking));
        }
        let item_path = self.prefix_path(operation, prefix.as_str())?;
        let marker_path = self.prefix_path(operation, &join(MARKER_DIR, prefix.as_str()))?;
        futures::future::try_join(list(item_path), list(marker_path)).await
    }
}

/// An item's last access: the latest of its last-modified time and the times of its recorded
/// reads, but never later than `now`, so that a server clock ahead of this one does not put
/// items in the future (where an age limit would never reach them).
fn last_access<'a>(
    modified: DateTime<Utc>,
    reads: impl IntoIterator<Item = &'a DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    reads
        .into_iter()
        .fold(modified, |latest, read| latest.max(*read))
        .min(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachette_core::plugin::chrono::TimeDelta;

    #[test]
    fn the_last_access_is_the_latest_time_but_never_in_the_future() {
        let now = Utc::now();
        let ago = |secs: i64| now - TimeDelta::seconds(secs);
        assert_eq!(last_access(ago(60), [], now), ago(60));
        assert_eq!(last_access(ago(60), [&ago(10), &ago(30)], now), ago(10));
        assert_eq!(last_access(ago(10), [&ago(30)], now), ago(10));
        // A server clock an hour ahead.
        assert_eq!(last_access(ago(-3600), [], now), now);
        assert_eq!(last_access(ago(60), [&ago(-3600)], now), now);
    }

    /// A retention set by the builder, which no validation bounds, too long for the calendar
    /// (`now - retention` out of range, or the retention out of `TimeDelta`'s range).
    #[tokio::test]
    async fn a_retention_beyond_the_calendar_lists_and_sweeps() {
        use std::sync::Arc;
        use std::time::Duration;

        use cachette_core::plugin::{Bytes, StoreBackend};
        use object_store::ObjectStoreExt;
        let store = Arc::new(object_store::memory::InMemory::new());
        store
            .put(
                &Path::parse("p/cachette/f/00ff").unwrap(),
                Bytes::from_static(b"v").into(),
            )
            .await
            .unwrap();
        for retention in [Duration::from_secs(10_000_000_000_000), Duration::MAX] {
            let backend = S3Backend::from_store(store.clone(), "p")
                .unwrap()
                .with_access_log_limits(retention, 10, 1 << 20);
            let items = backend.list(&Prefix::root()).await.unwrap();
            assert_eq!(items.len(), 1, "{retention:?}");
            backend.sweep(&Prefix::root()).await.unwrap();
        }
    }
}
