//! [`S3Backend`]: the [`StoreBackend`] over any object_store, how it is built, and how keys map
//! to object paths. The operations themselves are in [`read`] (`get_opts`), [`write`]
//! (`put_opts`, `delete_many`) and [`list`] (`list`, `sweep`); [`listing`] lists a prefix with
//! many requests at once.

mod http;
mod list;
mod list_page;
pub(crate) mod listing;
mod read;
mod write;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cachette_core::plugin::{
    BackendError, BackendResult, Blob, Capabilities, ErrorKind, GetOptions, GetResult, ItemInfo,
    Key, Prefix, PutOptions, PutOutcome, StoreBackend, async_trait, io_handle,
};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::list::PaginatedListStore;
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore};
use tokio::runtime::Handle;

use crate::access::{AccessLog, LOG_DIR, LogLimits, MARKER_DIR};
use crate::config::{AccessTracking, MAX_LIST_CONCURRENCY, S3Config};
use crate::error::convert;
use crate::{OBJECT_STORE_SCHEME, SCHEME};
use listing::Lister;

/// The credentials of requests to an explicit endpoint when there are none (see
/// [`S3Config::access_key_id`]).
const PLACEHOLDER_CREDENTIAL: &str = "cachette-placeholder";

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// A Cachette store in an object store: an S3 bucket (built from an [`S3Config`] or an
/// `s3://` URL), or any [`ObjectStore`] (GCS, Azure, the local disk, memory) through
/// [`S3Backend::from_store`].
///
/// Items are objects named `<prefix>/<key>`; reads are recorded in access logs under
/// `<prefix>/.cachette-access/log/` (see the crate docs). Clones share the store and the
/// pending reads.
#[derive(Clone)]
pub struct S3Backend {
    store: Arc<dyn ObjectStore>,
    /// The same bucket through a client that deletes with one `DELETE` per object rather than
    /// `DeleteObjects` (object_store deletes one object with a `DeleteObjects` of one key): a
    /// `DELETE` is free on S3, a `DeleteObjects` billed as a `POST`. Used for one-key deletes,
    /// such as a claim's release. `None` for stores given to [`S3Backend::from_store`].
    single_delete: Option<Arc<dyn ObjectStore>>,
    lister: Lister,
    /// The prefix, without trailing `/`; empty for the whole bucket.
    root: String,
    scheme: &'static str,
    location: String,
    multipart: Multipart,
    /// Whether `PutMode::Create` works (cleared when the store says it does not).
    atomic_create: Arc<AtomicBool>,
    tracker: Option<Arc<AccessLog>>,
    log_limits: LogLimits,
    /// `<prefix>/.cachette-access/log`.
    log_dir: String,
    /// The `cachette-io` runtime, where access logs are written.
    runtime: Handle,
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
            .field("access_log_limits", &self.log_limits)
            .field("list_concurrency", &self.lister.concurrency)
            .field("parallel_listing", &self.lister.pages.is_some())
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
        let runtime = io_handle()?;

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
        let builder = builder
            .with_retry(config.retry_config())
            .with_http_connector(http::Connector {
                runtime: runtime.clone(),
            });
        let build = |builder: AmazonS3Builder| {
            builder.build().map_err(|e| {
                config_error(format!("cannot configure the S3 client: {e}")).with_source(e)
            })
        };
        let single_delete: Arc<dyn ObjectStore> =
            Arc::new(build(builder.clone().with_disable_bulk_delete(true))?);
        let store = Arc::new(build(builder)?);

        let granularity = (config.access_tracking == AccessTracking::Log)
            .then(|| Duration::from_secs(config.access_granularity_secs));
        let mut backend = S3Backend::new(
            store.clone(),
            Some(store),
            Prefix::new(config.prefix.clone())?,
            SCHEME,
            config.to_url(),
            granularity,
            runtime,
        )
        .with_list_concurrency(config.list_concurrency)
        .with_access_log_limits(
            Duration::from_secs(config.access_log_retention_secs),
            config.access_log_max_objects,
            config.access_log_max_bytes,
        );
        backend.multipart = Multipart {
            threshold: config.multipart_threshold,
            part_size: config.multipart_part_size,
            concurrency: config.multipart_concurrency,
        };
        backend
            .atomic_create
            .store(config.conditional_put, Ordering::Relaxed);
        backend.single_delete = Some(single_delete);
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
    ///
    /// Such a backend lists sequentially: a store that gives pages of listings (S3, GCS,
    /// Azure) lists concurrently through [`from_paginated_store`](Self::from_paginated_store).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: impl Into<String>,
    ) -> crate::Result<S3Backend> {
        S3Backend::from_parts(store, None, prefix)
    }

    /// [`from_store`](Self::from_store) for a store that also gives pages of listings
    /// ([`PaginatedListStore`]: `AmazonS3`, `GoogleCloudStorage`, `MicrosoftAzure`, or a
    /// wrapper of one), so that listings run many requests at once (see
    /// [`with_list_concurrency`](Self::with_list_concurrency)). The store must list in key
    /// order, as those do.
    pub fn from_paginated_store<S>(
        store: Arc<S>,
        prefix: impl Into<String>,
    ) -> crate::Result<S3Backend>
    where
        S: ObjectStore + PaginatedListStore,
    {
        S3Backend::from_parts(store.clone(), Some(store), prefix)
    }

    fn from_parts(
        store: Arc<dyn ObjectStore>,
        pages: Option<Arc<dyn PaginatedListStore>>,
        prefix: impl Into<String>,
    ) -> crate::Result<S3Backend> {
        let prefix = Prefix::new(prefix.into())?;
        let location = format!("{OBJECT_STORE_SCHEME}://{store}/{prefix}");
        let defaults = S3Config::default();
        Ok(S3Backend::new(
            store,
            pages,
            prefix,
            OBJECT_STORE_SCHEME,
            location,
            Some(Duration::from_secs(defaults.access_granularity_secs)),
            io_handle()?,
        )
        .with_list_concurrency(defaults.list_concurrency)
        .with_access_log_limits(
            Duration::from_secs(defaults.access_log_retention_secs),
            defaults.access_log_max_objects,
            defaults.access_log_max_bytes,
        ))
    }

    fn new(
        store: Arc<dyn ObjectStore>,
        pages: Option<Arc<dyn PaginatedListStore>>,
        prefix: Prefix,
        scheme: &'static str,
        location: String,
        granularity: Option<Duration>,
        runtime: Handle,
    ) -> S3Backend {
        let defaults = S3Config::default();
        S3Backend {
            lister: Lister {
                store: Arc::clone(&store),
                pages,
                concurrency: 1,
            },
            store,
            single_delete: None,
            root: prefix.as_str().to_owned(),
            scheme,
            location,
            multipart: Multipart {
                threshold: defaults.multipart_threshold,
                part_size: defaults.multipart_part_size,
                concurrency: defaults.multipart_concurrency,
            },
            atomic_create: Arc::new(AtomicBool::new(true)),
            tracker: None,
            log_dir: join(&join(prefix.as_str(), MARKER_DIR), LOG_DIR),
            log_limits: LogLimits {
                retention: Duration::from_secs(defaults.access_log_retention_secs),
                max_objects: defaults.access_log_max_objects,
                max_bytes: defaults.access_log_max_bytes,
            },
            runtime,
        }
        .with_access_granularity(granularity)
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

    /// Records reads in access logs, one per `granularity` at most (the period; see
    /// [`S3Config::access_granularity_secs`]); `None` records nothing
    /// ([`AccessTracking::None`]: reads recorded by other processes still count).
    pub fn with_access_granularity(mut self, granularity: Option<Duration>) -> Self {
        let runtime = self.runtime.clone();
        self.tracker = granularity.map(|g| {
            Arc::new(AccessLog::new(
                Arc::clone(&self.store),
                self.log_dir.clone(),
                g,
                runtime,
            ))
        });
        self
    }

    /// How many listing requests run at once (1 to 256; 1 lists sequentially). Only a store
    /// that gives pages of listings lists concurrently (see
    /// [`from_paginated_store`](Self::from_paginated_store)).
    pub fn with_list_concurrency(mut self, concurrency: usize) -> Self {
        self.lister.concurrency = concurrency.clamp(1, MAX_LIST_CONCURRENCY);
        self
    }

    /// How long access logs are kept, and how many of them (and bytes) a listing reads at most,
    /// the newest first (see [`S3Config::access_log_retention_secs`]).
    pub fn with_access_log_limits(
        mut self,
        retention: Duration,
        max_objects: usize,
        max_bytes: u64,
    ) -> Self {
        self.log_limits = LogLimits {
            retention: retention.max(Duration::from_secs(1)),
            max_objects,
            max_bytes,
        };
        self
    }

    /// Writes the reads this process recorded so far as an access log now, and waits for logs
    /// being written in the background. Logs are written within a period of each read anyway;
    /// this is for a process about to exit (its pending reads are lost otherwise), or a test.
    pub async fn flush_access_log(&self) {
        if let Some(tracker) = &self.tracker {
            tracker.flush().await;
        }
    }

    /// How many access logs this backend (and its clones) wrote.
    pub fn access_logs_written(&self) -> u64 {
        self.tracker.as_ref().map_or(0, |t| t.logs_written())
    }

    fn log_dir_str(&self) -> &str {
        &self.log_dir
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
                "keys under {MARKER_DIR}/ are reserved for access tracking"
            )));
        }
        Path::parse(join(&self.root, key.as_str()))
            .map_err(|e| refuse(format!("not a valid object name: {e}")))
    }

    /// The object path of a prefix; `None` for the whole store. A prefix that is no object
    /// name (a control character) is refused: listing the whole store instead would reach
    /// items outside it.
    fn prefix_path(&self, operation: &'static str, under: &str) -> BackendResult<Option<Path>> {
        let full = join(&self.root, under);
        if full.is_empty() {
            return Ok(None);
        }
        Path::parse(&full).map(Some).map_err(|e| {
            BackendError::new(
                ErrorKind::InvalidKey,
                format!("the prefix is not a valid object name: {e}"),
            )
            .with_backend(self.scheme)
            .with_operation(operation)
            .with_key(under)
        })
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
                format!("{MARKER_DIR}/ is reserved for access tracking"),
            )
            .with_backend(self.scheme)
            .with_operation(operation)
            .with_key(prefix));
        }
        Ok(())
    }

    /// The key a marker object (of older versions) records reads of.
    fn marked_key<'a>(&self, marker: &'a Path) -> Option<&'a str> {
        self.key_of(marker)?
            .strip_prefix(MARKER_DIR)?
            .strip_prefix('/')
    }

    /// Whether an object is in the access tracking folder (a log or a marker).
    fn is_tracking(&self, location: &Path) -> bool {
        self.key_of(location)
            .is_some_and(|k| k.split('/').next() == Some(MARKER_DIR))
    }

    fn error(&self, operation: &'static str, key: &str, err: object_store::Error) -> BackendError {
        convert(self.scheme, operation, key, err)
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

/// The store's side of the contract. Reads only read (a read asked to record its access adds
/// its key to this process's batch of reads, written as an access log in the background);
/// `list` writes nothing; `sweep` deletes only old access logs and the markers of older
/// versions.
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

    /// One request per read: a `HEAD` for [`GetOptions::head`], a ranged `GET` (which also
    /// gives the object's whole size) for [`GetOptions::range`], else a `GET`. Only with
    /// [`GetOptions::record_access`] is the read recorded, in memory, for the next access log.
    /// [`GetOptions::local_file`] is ignored: there are no local files.
    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        self.read(key, options).await
    }

    /// One `PUT`, or a multipart upload above the multipart threshold, for
    /// [`PutMode::Overwrite`](cachette_core::plugin::PutMode::Overwrite); a conditional `PUT`
    /// (`If-None-Match: *`) for [`PutMode::Create`](cachette_core::plugin::PutMode::Create),
    /// or a check then a `PUT` when the store has no conditional writes. The expiry is
    /// ignored (checked on read by the core).
    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.write(key, value, options).await
    }

    /// Deletes the items in batches (`DeleteObjects`, 1000 keys a request on S3). Reads of
    /// these items that this process has not logged yet are forgotten.
    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        self.delete_keys(keys).await
    }

    /// Lists the items under the prefix, many requests at once (see the crate docs), and
    /// writes nothing, not even this process's pending reads. An item's last access is the
    /// latest of its own last-modified time, the reads in the newest access logs, the markers
    /// of older versions, and this process's reads not logged yet; never later than now.
    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.list_items(prefix).await
    }

    /// Deletes the access logs older than the retention and the access markers of older
    /// versions under the prefix that are older than the retention or whose item no longer
    /// exists, and nothing else. Unfinished multipart uploads of killed writers are invisible
    /// to object_store; a lifecycle rule of the bucket (`AbortIncompleteMultipartUpload`)
    /// removes them.
    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        self.sweep_tracking(prefix).await
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
