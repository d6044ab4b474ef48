//! Listings (`list`, `sweep`): the items under a prefix with their last access, merged from
//! their own times and their access markers', and the sweep of markers whose item is gone.

use std::collections::{HashMap, HashSet};

use cachette_core::plugin::{
    BackendResult, DateTime, ItemInfo, Key, Prefix, StoreBackendExt as _, Utc,
};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;

use super::{MARKER_DIR, S3Backend, join};

/// Items checked at once by a sweep before their markers go.
const SWEEP_CONCURRENCY: usize = 16;

impl S3Backend {
    /// [`StoreBackend::list`](cachette_core::plugin::StoreBackend::list). Writes nothing.
    pub(super) async fn list_items(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.check_prefix("list", prefix)?;
        // Taken before the listing: a marker written meanwhile is then in the listing, and a
        // read whose marker is not written yet is here.
        let unwritten = self
            .tracker
            .as_ref()
            .map(|tracker| tracker.unwritten_under(prefix))
            .unwrap_or_default();
        let (items, markers) = self.objects_under("list", prefix).await?;
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
            let reads = [marked.get(name), unwritten.get(name)];
            let last_access = last_access(meta.last_modified, reads.into_iter().flatten(), now);
            out.push(ItemInfo {
                key,
                size: meta.size,
                last_access,
            });
        }
        Ok(out)
    }

    /// [`StoreBackend::sweep`](cachette_core::plugin::StoreBackend::sweep): deletes the empty
    /// marker objects (what this backend writes) under the prefix whose item is not listed and,
    /// checked again with a `HEAD`, still does not exist. Gives how many went.
    pub(super) async fn sweep_markers(&self, prefix: &Prefix) -> BackendResult<u64> {
        const OPERATION: &str = "sweep";
        self.check_prefix(OPERATION, prefix)?;
        let (items, markers) = self.objects_under(OPERATION, prefix).await?;
        let live: HashSet<&str> = items
            .iter()
            .filter_map(|m| self.key_of(&m.location))
            .collect();
        let candidates: Vec<(Key, Path)> = markers
            .iter()
            .filter(|m| m.size == 0)
            .filter_map(|m| {
                let name = self.marked_key(&m.location)?;
                if live.contains(name) {
                    return None;
                }
                // Markers are only written for keys, never for reserved ones.
                let key = Key::new(name).ok()?;
                self.path(OPERATION, &key).ok()?;
                Some((key, m.location.clone()))
            })
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        // An item written since the listing keeps its marker.
        let orphans: Vec<Path> = futures::stream::iter(candidates)
            .map(|(key, marker)| async move {
                Ok::<_, cachette_core::plugin::BackendError>(
                    (!self.contains(&key).await?).then_some(marker),
                )
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .try_filter_map(|orphan| async move { Ok(orphan) })
            .try_collect()
            .await?;
        let deleted = self
            .delete_paths(OPERATION, "orphaned access markers", orphans)
            .await?;
        Ok(deleted.len() as u64)
    }

    async fn list_objects(
        &self,
        operation: &'static str,
        path: Option<Path>,
    ) -> BackendResult<Vec<ObjectMeta>> {
        let shown = path.as_ref().map(|p| p.to_string()).unwrap_or_default();
        self.store
            .list(path.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.error(operation, &shown, e))
    }

    /// Item and marker objects under a prefix of keys. For the whole store, one listing
    /// gives both.
    async fn objects_under(
        &self,
        operation: &'static str,
        prefix: &Prefix,
    ) -> BackendResult<(Vec<ObjectMeta>, Vec<ObjectMeta>)> {
        if prefix.is_root() {
            let all = self
                .list_objects(operation, self.prefix_path(operation, "")?)
                .await?;
            let (markers, items) = all
                .into_iter()
                .partition(|meta| self.is_marker(&meta.location));
            return Ok((items, markers));
        }
        let item_path = self.prefix_path(operation, prefix.as_str())?;
        let marker_path = self.prefix_path(operation, &join(MARKER_DIR, prefix.as_str()))?;
        futures::future::try_join(
            self.list_objects(operation, item_path),
            self.list_objects(operation, marker_path),
        )
        .await
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
}
