//! Writes and deletes (`put_opts`, `delete_many`): single and multipart `PUT`s, conditional
//! creates, and batched deletes.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use cachette_core::plugin::{BackendResult, Blob, Key, PutMode, PutOptions, PutOutcome};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMultipartOptions, PutPayload};

use super::{MAX_PARTS, S3Backend};

impl S3Backend {
    /// [`StoreBackend::put_opts`](cachette_core::plugin::StoreBackend::put_opts).
    pub(super) async fn write(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        match options.mode {
            PutMode::Create => self.create(key, value).await,
            _ => {
                self.overwrite(key, value).await?;
                Ok(PutOutcome::Created)
            }
        }
    }

    /// Writes the item, replacing any previous one: one `PUT`, or a multipart upload above the
    /// threshold.
    async fn overwrite(&self, key: &Key, value: Blob) -> BackendResult<()> {
        let path = self.path("put", key)?;
        let result = if value.len() > self.multipart.threshold {
            self.put_multipart(&path, value).await
        } else {
            self.put_single(&path, value, object_store::PutMode::Overwrite)
                .await
        };
        result.map_err(|e| self.error("put", key.as_str(), e))
    }

    /// Writes the item only if none exists: a conditional `PUT` (`PutMode::Create`), or a check
    /// then a write on stores without conditional writes.
    async fn create(&self, key: &Key, value: Blob) -> BackendResult<PutOutcome> {
        const OPERATION: &str = "put_if_absent";
        let path = self.path(OPERATION, key)?;
        if !self.atomic_create.load(Ordering::Relaxed) {
            return self.create_unconditionally(key, &path, value).await;
        }
        match self
            .put_single(&path, value.clone(), object_store::PutMode::Create)
            .await
        {
            Ok(()) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::AlreadyExists),
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => {
                tracing::debug!(target: "cachette", store = %self.store, "no conditional writes; create-if-absent is not atomic");
                self.atomic_create.store(false, Ordering::Relaxed);
                self.create_unconditionally(key, &path, value).await
            }
            Err(e) => Err(self.error(OPERATION, key.as_str(), e)),
        }
    }

    /// Create-if-absent without a conditional write: check, then write. Not atomic.
    async fn create_unconditionally(
        &self,
        key: &Key,
        path: &Path,
        value: Blob,
    ) -> BackendResult<PutOutcome> {
        const OPERATION: &str = "put_if_absent";
        match self.store.head(path).await {
            Ok(_) => return Ok(PutOutcome::AlreadyExists),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.error(OPERATION, key.as_str(), e)),
        }
        self.put_single(path, value, object_store::PutMode::Overwrite)
            .await
            .map_err(|e| self.error(OPERATION, key.as_str(), e))?;
        Ok(PutOutcome::Created)
    }

    async fn put_single(
        &self,
        path: &Path,
        value: Blob,
        mode: object_store::PutMode,
    ) -> Result<(), object_store::Error> {
        self.store
            .put_opts(
                path,
                value.into_parts().into_iter().collect::<PutPayload>(),
                mode.into(),
            )
            .await
            .map(|_| ())
    }

    /// Uploads in parts; the object appears whole when the upload completes, and the upload
    /// is aborted on any failure.
    async fn put_multipart(&self, path: &Path, value: Blob) -> Result<(), object_store::Error> {
        let len = value.len();
        let part_size = self.multipart.part_size.max(len.div_ceil(MAX_PARTS));
        let mut upload = self
            .store
            .put_multipart_opts(path, PutMultipartOptions::default())
            .await?;
        let parts: Vec<_> = (0..len)
            .step_by(usize::try_from(part_size).unwrap_or(usize::MAX))
            .map(|start| {
                let end = (start + part_size).min(len);
                upload.put_part(PutPayload::from(value.slice(start..end)))
            })
            .collect();
        let uploaded: Result<(), object_store::Error> = futures::stream::iter(parts)
            .buffer_unordered(self.multipart.concurrency)
            .try_collect()
            .await;
        let finished = match uploaded {
            Ok(()) => upload.complete().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = finished {
            if let Err(abort) = upload.abort().await {
                tracing::debug!(target: "cachette", path = %path, error = %abort, "cannot abort a failed multipart upload");
            }
            return Err(e);
        }
        Ok(())
    }

    /// [`StoreBackend::delete_many`](cachette_core::plugin::StoreBackend::delete_many): the
    /// items, in batches. This process's pending reads of these keys are forgotten (they would
    /// only be ignored by listings). Markers of older versions are left to `sweep`.
    pub(super) async fn delete_keys(&self, keys: &[Key]) -> BackendResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let paths = keys
            .iter()
            .map(|key| self.path("delete", key))
            .collect::<BackendResult<Vec<Path>>>()?;
        let what = match keys {
            [one] => one.as_str().to_owned(),
            _ => format!("{} keys", keys.len()),
        };
        let deleted = self.delete_paths("delete", &what, paths).await;
        if let Some(tracker) = &self.tracker {
            let doomed: HashSet<&str> = keys.iter().map(Key::as_str).collect();
            tracker.forget(|k| doomed.contains(k));
        }
        deleted.map(|_| ())
    }

    /// Deletes objects: one with a `DELETE` (on a bucket opened from a configuration), more
    /// in batches (`DeleteObjects`, 1000 keys a request on S3); gives those deleted. Missing
    /// objects are skipped.
    pub(super) async fn delete_paths(
        &self,
        operation: &'static str,
        what: &str,
        paths: Vec<Path>,
    ) -> BackendResult<Vec<Path>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        if let ([path], Some(single)) = (paths.as_slice(), &self.single_delete) {
            // One `DELETE` rather than a `DeleteObjects` of one key: the same single request,
            // but a `DELETE` (free on AWS), and no XML to build or parse.
            return match single.delete(path).await {
                Ok(()) => Ok(paths),
                Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(self.error(operation, what, e)),
            };
        }
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(locations);
        let mut deleted = Vec::new();
        let mut failure = None;
        while let Some(result) = results.next().await {
            match result {
                Ok(path) => deleted.push(path),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(self.error(operation, what, e)),
            None => Ok(deleted),
        }
    }
}
