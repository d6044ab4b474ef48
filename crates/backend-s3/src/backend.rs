//! [`S3Backend`]: the [`StoreBackend`] over any object_store, and how it is built.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cachette_core::{
    BackendError, BackendResult, Blob, Capabilities, ErrorKind, ItemInfo, Key, Prefix, PutOptions,
    PutOutcome, StoreBackend, rt,
};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::client::SpawnedReqwestConnector;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutMultipartOptions, PutPayload, RetryConfig,
};

use crate::access::{AccessTracker, MARKER_DIR};
use crate::config::S3Config;
use crate::error::{convert, is_absent};
use crate::{OBJECT_STORE_SCHEME, SCHEME};

/// The credentials of requests to an explicit endpoint when there are none (see
/// [`S3Config::access_key_id`]).
const PLACEHOLDER_CREDENTIAL: &str = "cachette-placeholder";

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// A Cachette store in an object store: an S3 bucket (built from an [`S3Config`] or an
/// `s3://` URL), or any [`ObjectStore`] (GCS, Azure, the local disk, memory) through
/// [`S3Backend::from_store`].
///
/// Items are objects named `<prefix>/<key>`; reads are recorded in access markers under
/// `<prefix>/.cachette-access/` (see the crate docs). Clones share the store and the pending
/// markers.
#[derive(Clone)]
pub struct S3Backend {
    store: Arc<dyn ObjectStore>,
    /// The prefix, without trailing `/`; empty for the whole bucket.
    root: String,
    scheme: &'static str,
    location: String,
    multipart: Multipart,
    /// Whether `PutMode::Create` works (cleared when the store says it does not).
    atomic_create: Arc<AtomicBool>,
    tracker: Option<Arc<AccessTracker>>,
}

#[derive(Debug, Clone, Copy)]
struct Multipart {
    threshold: u64,
    part_size: u64,
    concurrency: usize,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.root)
            .field("location", &self.location)
            .field("multipart", &self.multipart)
            .field("atomic_create", &self.atomic_create.load(Ordering::Relaxed))
            .field("access_tracking", &self.tracker)
            .finish()
    }
}

fn config_error(message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::ConfigInvalid, message).with_backend(SCHEME)
}

impl S3Backend {
    /// Builds the S3 client a configuration describes. Settings left out of `config` come
    /// from the `AWS_*` environment (see [`S3Config`]). The client's I/O runs on the
    /// `cachette-io` runtime, so the backend works from any caller, sync or async.
    pub fn from_config(config: &S3Config) -> crate::Result<S3Backend> {
        config.validate()?;
        // reqwest is built without a default TLS provider; ring serves every client in the
        // process. Another provider installed first is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = rt::io_handle()?;

        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if config.allow_http {
            builder = builder.with_allow_http(true);
        }
        if config.virtual_hosted_style {
            builder = builder.with_virtual_hosted_style_request(true);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        if config.skip_signature {
            builder = builder.with_skip_signature(true);
        } else if has_endpoint(&builder) && !has_credentials(&builder) {
            builder = builder
                .with_access_key_id(PLACEHOLDER_CREDENTIAL)
                .with_secret_access_key(PLACEHOLDER_CREDENTIAL);
        }
        if !config.conditional_put {
            builder = builder.with_conditional_put(S3ConditionalPut::Disabled);
        }
        let timeouts = [
            (ClientConfigKey::ConnectTimeout, config.connect_timeout_secs),
            (ClientConfigKey::Timeout, config.request_timeout_secs),
            (ClientConfigKey::ReadTimeout, config.read_timeout_secs),
        ];
        for (key, secs) in timeouts {
            if secs > 0 {
                builder = builder.with_config(AmazonS3ConfigKey::Client(key), format!("{secs}s"));
            }
        }
        let retry = RetryConfig {
            max_retries: config.max_retries,
            retry_timeout: Duration::from_secs(config.retry_timeout_secs),
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
        };
        let store = builder
            .with_retry(retry)
            .with_http_connector(SpawnedReqwestConnector::new(runtime.clone()))
            .build()
            .map_err(|e| {
                config_error(format!("cannot configure the S3 client: {e}")).with_source(e)
            })?;

        let granularity = config
            .access_tracking
            .then(|| Duration::from_secs(config.access_granularity_secs));
        let mut backend = S3Backend::new(
            Arc::new(store),
            Prefix::new(config.prefix.clone())?,
            SCHEME,
            config.to_url(),
            granularity,
            Some(runtime),
        );
        backend.multipart = Multipart {
            threshold: config.multipart_threshold,
            part_size: config.multipart_part_size,
            concurrency: config.multipart_concurrency,
        };
        backend
            .atomic_create
            .store(config.conditional_put, Ordering::Relaxed);
        Ok(backend)
    }

    /// A backend over any object store, with items under `prefix` (`""` for the whole store).
    ///
    /// Its location is `object-store://<store>/<prefix>`, which no other process can open: give
    /// a URL that names the same store with [`with_location`](Self::with_location) when results
    /// are shared. Create-if-absent uses `PutMode::Create`; a store without it gets a check
    /// followed by a write, and [`Capabilities::atomic_create`] turns false.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cachette_core::Memory;
    /// use cachette_s3::S3Backend;
    ///
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// let backend = S3Backend::from_store(store, "team/cache").unwrap();
    /// let memory = Memory::with_backend(Arc::new(backend));
    /// let double = memory.cache(|x: u32| 2 * x);
    /// assert_eq!(double.eval(21), 42);
    /// assert!(double.check_call_in_cache(&21));
    /// ```
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: impl Into<String>,
    ) -> crate::Result<S3Backend> {
        let prefix = Prefix::new(prefix.into())?;
        let location = format!("{OBJECT_STORE_SCHEME}://{store}/{prefix}");
        let defaults = S3Config::default();
        Ok(S3Backend::new(
            store,
            prefix,
            OBJECT_STORE_SCHEME,
            location,
            Some(Duration::from_secs(defaults.access_granularity_secs)),
            rt::io_handle().ok(),
        ))
    }

    fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Prefix,
        scheme: &'static str,
        location: String,
        granularity: Option<Duration>,
        runtime: Option<tokio::runtime::Handle>,
    ) -> S3Backend {
        let root = prefix.as_str().to_owned();
        let defaults = S3Config::default();
        let tracker = granularity.map(|g| {
            Arc::new(AccessTracker::new(
                Arc::clone(&store),
                join(&root, MARKER_DIR),
                g,
                runtime,
            ))
        });
        S3Backend {
            store,
            root,
            scheme,
            location,
            multipart: Multipart {
                threshold: defaults.multipart_threshold,
                part_size: defaults.multipart_part_size,
                concurrency: defaults.multipart_concurrency,
            },
            atomic_create: Arc::new(AtomicBool::new(true)),
            tracker,
        }
    }

    /// Sets the location reported by [`StoreBackend::location`] (and printed in
    /// `MemorizedResult`s): a URL that opens the same store in another process.
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = location.into();
        self
    }

    /// Uploads items larger than `threshold` bytes in parts of `part_size` bytes (at least
    /// 1 byte; S3 wants 5 MiB), `concurrency` parts at a time.
    pub fn with_multipart(mut self, threshold: u64, part_size: u64, concurrency: usize) -> Self {
        self.multipart = Multipart {
            threshold,
            part_size: part_size.max(1),
            concurrency: concurrency.max(1),
        };
        self
    }

    /// Records reads at most once per `granularity` per key and process; `None` stops
    /// recording reads (markers written by others still count).
    pub fn with_access_granularity(mut self, granularity: Option<Duration>) -> Self {
        let runtime = rt::io_handle().ok();
        self.tracker = granularity.map(|g| {
            Arc::new(AccessTracker::new(
                Arc::clone(&self.store),
                join(&self.root, MARKER_DIR),
                g,
                runtime,
            ))
        });
        self
    }

    /// The object store, for direct access.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The prefix of the items (empty for the whole store).
    pub fn prefix(&self) -> &str {
        &self.root
    }

    /// The object path of an item.
    pub fn path_of(&self, key: &Key) -> crate::Result<Path> {
        self.path("path", key)
    }

    fn path(&self, operation: &'static str, key: &Key) -> Result<Path, BackendError> {
        let refuse = |why: String| {
            BackendError::new(ErrorKind::InvalidKey, why)
                .with_backend(self.scheme)
                .with_operation(operation)
                .with_key(key)
        };
        if key.segments().next() == Some(MARKER_DIR) {
            return Err(refuse(format!(
                "keys under {MARKER_DIR}/ are reserved for access markers"
            )));
        }
        Path::parse(join(&self.root, key.as_str()))
            .map_err(|e| refuse(format!("not a valid object name: {e}")))
    }

    fn marker_path(&self, key: &str) -> Option<Path> {
        Path::parse(join(&join(&self.root, MARKER_DIR), key)).ok()
    }

    /// The object path of a prefix; `None` for the whole store.
    fn prefix_path(&self, under: &str) -> Option<Path> {
        let full = join(&self.root, under);
        if full.is_empty() {
            None
        } else {
            Path::parse(full).ok()
        }
    }

    /// The key of an object: its path without the backend's prefix.
    fn key_of<'a>(&self, location: &'a Path) -> Option<&'a str> {
        let path = location.as_ref();
        if self.root.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(self.root.as_str())?.strip_prefix('/')
        }
    }

    fn check_prefix(&self, operation: &'static str, prefix: &Prefix) -> BackendResult<()> {
        if prefix.as_str().split('/').next() == Some(MARKER_DIR) {
            return Err(BackendError::new(
                ErrorKind::InvalidKey,
                format!("{MARKER_DIR}/ is reserved for access markers"),
            )
            .with_backend(self.scheme)
            .with_operation(operation)
            .with_key(prefix));
        }
        Ok(())
    }

    fn error(&self, operation: &'static str, key: &str, err: object_store::Error) -> BackendError {
        convert(self.scheme, operation, key, err)
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
            let all = self.list_objects(operation, self.prefix_path("")).await?;
            let (markers, items) = all.into_iter().partition(|meta| {
                self.key_of(&meta.location)
                    .is_some_and(|k| k.split('/').next() == Some(MARKER_DIR))
            });
            return Ok((items, markers));
        }
        futures::future::try_join(
            self.list_objects(operation, self.prefix_path(prefix.as_str())),
            self.list_objects(
                operation,
                self.prefix_path(&join(MARKER_DIR, prefix.as_str())),
            ),
        )
        .await
    }

    /// The key a marker object records reads of.
    fn marked_key<'a>(&self, marker: &'a Path) -> Option<&'a str> {
        self.key_of(marker)?
            .strip_prefix(MARKER_DIR)?
            .strip_prefix('/')
    }

    /// Deletes objects in batches; gives those deleted. Missing objects are skipped.
    async fn delete_paths(
        &self,
        operation: &'static str,
        what: &str,
        paths: Vec<Path>,
    ) -> BackendResult<Vec<Path>> {
        if paths.is_empty() {
            return Ok(Vec::new());
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

    async fn put_single(
        &self,
        path: &Path,
        value: Blob,
        mode: PutMode,
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

    /// Create-if-absent without a conditional write: check, then write. Not atomic.
    async fn put_if_absent_unconditional(
        &self,
        key: &Key,
        path: &Path,
        value: Blob,
    ) -> BackendResult<PutOutcome> {
        match self.store.head(path).await {
            Ok(_) => return Ok(PutOutcome::AlreadyExists),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.error("put_if_absent", key.as_str(), e)),
        }
        self.put_single(path, value, PutMode::Overwrite)
            .await
            .map_err(|e| self.error("put_if_absent", key.as_str(), e))?;
        Ok(PutOutcome::Created)
    }
}

/// `a/b`, or just one of them when the other is empty.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}/{b}"),
    }
}

fn has_endpoint(builder: &AmazonS3Builder) -> bool {
    [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint]
        .iter()
        .any(|k| builder.get_config_value(k).is_some_and(|v| !v.is_empty()))
}

fn has_credentials(builder: &AmazonS3Builder) -> bool {
    [
        AmazonS3ConfigKey::AccessKeyId,
        AmazonS3ConfigKey::WebIdentityTokenFile,
        AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
        AmazonS3ConfigKey::ContainerCredentialsFullUri,
    ]
    .iter()
    .any(|k| builder.get_config_value(k).is_some_and(|v| !v.is_empty()))
}

#[async_trait]
impl StoreBackend for S3Backend {
    fn scheme(&self) -> &'static str {
        self.scheme
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::none();
        caps.atomic_create = self.atomic_create.load(Ordering::Relaxed);
        caps.ranged_read = true;
        caps
    }

    async fn get(&self, key: &Key) -> BackendResult<Option<Bytes>> {
        let path = self.path("get", key)?;
        let read = match self.store.get_opts(&path, GetOptions::default()).await {
            Ok(found) => found.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(self.error("get", key.as_str(), e)),
        };
        if let Some(tracker) = &self.tracker {
            tracker.record(key);
        }
        Ok(Some(bytes))
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> BackendResult<Option<Bytes>> {
        let path = self.path("get_range", key)?;
        if range.start < range.end {
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..GetOptions::default()
            };
            let read = match self.store.get_opts(&path, options).await {
                Ok(found) => found.bytes().await,
                Err(e) => Err(e),
            };
            match read {
                Ok(bytes) => return Ok(Some(bytes)),
                Err(e) if is_absent(&e) => return Ok(None),
                Err(e @ object_store::Error::NotFound { .. }) => {
                    return Err(self.error("get_range", key.as_str(), e));
                }
                // A range starting at or past the end is refused (416): whether the item
                // exists, and how long it is, says what to answer.
                Err(e) => {
                    return match self.store.head(&path).await {
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Ok(meta) if meta.size <= range.start => Ok(Some(Bytes::new())),
                        _ => Err(self.error("get_range", key.as_str(), e)),
                    };
                }
            }
        }
        // An empty range: only whether the item exists matters.
        match self.store.head(&path).await {
            Ok(_) => Ok(Some(Bytes::new())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("get_range", key.as_str(), e)),
        }
    }

    async fn touch(&self, key: &Key) -> BackendResult<()> {
        let path = self.path("touch", key)?;
        if let Some(tracker) = &self.tracker {
            match self.store.head(&path).await {
                Ok(_) => tracker.record(key),
                Err(e) if is_absent(&e) => {}
                Err(e) => return Err(self.error("touch", key.as_str(), e)),
            }
        }
        Ok(())
    }

    async fn put(&self, key: &Key, value: Blob, _options: &PutOptions) -> BackendResult<()> {
        let path = self.path("put", key)?;
        let result = if value.len() > self.multipart.threshold {
            self.put_multipart(&path, value).await
        } else {
            self.put_single(&path, value, PutMode::Overwrite).await
        };
        result.map_err(|e| self.error("put", key.as_str(), e))
    }

    async fn put_if_absent(
        &self,
        key: &Key,
        value: Blob,
        _options: &PutOptions,
    ) -> BackendResult<PutOutcome> {
        let path = self.path("put_if_absent", key)?;
        if !self.atomic_create.load(Ordering::Relaxed) {
            return self.put_if_absent_unconditional(key, &path, value).await;
        }
        match self.put_single(&path, value.clone(), PutMode::Create).await {
            Ok(()) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::AlreadyExists),
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => {
                tracing::debug!(target: "cachette", store = %self.store, "no conditional writes; create-if-absent is not atomic");
                self.atomic_create.store(false, Ordering::Relaxed);
                self.put_if_absent_unconditional(key, &path, value).await
            }
            Err(e) => Err(self.error("put_if_absent", key.as_str(), e)),
        }
    }

    async fn contains(&self, key: &Key) -> BackendResult<bool> {
        let path = self.path("contains", key)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("contains", key.as_str(), e)),
        }
    }

    async fn delete(&self, key: &Key) -> BackendResult<()> {
        self.delete_many(std::slice::from_ref(key)).await
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let mut paths = Vec::with_capacity(2 * keys.len());
        for key in keys {
            paths.push(self.path("delete", key)?);
            paths.extend(self.marker_path(key.as_str()));
        }
        let doomed: HashSet<&str> = keys.iter().map(Key::as_str).collect();
        let _quiet = match &self.tracker {
            Some(t) => Some(t.quiesce(|k| doomed.contains(k)).await),
            None => None,
        };
        let what = match keys {
            [one] => one.as_str().to_owned(),
            _ => format!("{} keys", keys.len()),
        };
        self.delete_paths("delete", &what, paths).await?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &Prefix) -> BackendResult<u64> {
        self.check_prefix("delete_prefix", prefix)?;
        let _quiet = match &self.tracker {
            Some(t) => Some(t.quiesce(|k| prefix.matches(k)).await),
            None => None,
        };
        let (items, markers) = self.objects_under("delete_prefix", prefix).await?;
        let paths = items
            .into_iter()
            .chain(markers)
            .map(|meta| meta.location)
            .collect();
        let deleted = self
            .delete_paths("delete_prefix", prefix.as_str(), paths)
            .await?;
        Ok(deleted
            .iter()
            .filter(|p| {
                self.key_of(p)
                    .is_some_and(|k| k.split('/').next() != Some(MARKER_DIR))
            })
            .count() as u64)
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.check_prefix("list", prefix)?;
        if let Some(tracker) = &self.tracker {
            tracker.flush().await;
        }
        let (items, markers) = self.objects_under("list", prefix).await?;
        let mut reads: HashMap<&str, (DateTime<Utc>, &Path)> = markers
            .iter()
            .filter_map(|m| {
                Some((
                    self.marked_key(&m.location)?,
                    (m.last_modified, &m.location),
                ))
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for meta in &items {
            let Some(name) = self.key_of(&meta.location) else {
                continue;
            };
            let Ok(key) = Key::new(name) else {
                tracing::debug!(target: "cachette", object = %meta.location, "skipping an object whose name is not a key");
                continue;
            };
            let read = reads.remove(name).map(|(t, _)| t);
            out.push(ItemInfo {
                key,
                size: meta.size,
                last_access: read.map_or(meta.last_modified, |t| t.max(meta.last_modified)),
            });
        }
        // Markers left are orphans: their item was deleted while a read was being recorded.
        let orphans: Vec<Path> = reads.into_values().map(|(_, p)| p.clone()).collect();
        if !orphans.is_empty()
            && let Err(e) = self
                .delete_paths("list", "orphaned access markers", orphans)
                .await
        {
            tracing::debug!(target: "cachette", error = %e, "cannot delete orphaned access markers");
        }
        Ok(out)
    }

    fn local_path(&self, _key: &Key) -> Option<PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins() {
        assert_eq!(join("", "a/b"), "a/b");
        assert_eq!(join("p", ""), "p");
        assert_eq!(join("p/q", "a"), "p/q/a");
    }
}
