//! [`RedisBackend`]: the [`StoreBackend`] implementation, which runs each operation on the I/O
//! runtime and hands it to the module of its concern (`reader`, `writer`, `deleter`, `lister`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;

use cachette_core::plugin::{
    BackendError, BackendResult, Blob, Capabilities, ErrorKind, GetOptions, GetResult, ItemInfo,
    Key, PutMode, PutOptions, PutOutcome, RecentAccesses, StoreBackend, async_trait, block_on,
    io_handle,
};
use tokio::runtime::Handle;

use crate::SCHEME;
use crate::access;
use crate::blocking::{Blocking, BlockingPool};
use crate::config::RedisConfig;
use crate::conn::Connector;
use crate::error::{Fail, Res};
use crate::keys::Layout;
use crate::manifest::MAX_CHUNKS;

/// The Redis and Redis Cluster backend. Build it with [`RedisConfig::build_backend`], a
/// configuration file, or a URL (`redis://`, `rediss://`, `redis+cluster://`); see the crate
/// documentation for the storage layout and its guarantees.
///
/// Clones share the connection. The connection is opened by the first operation, and reopened
/// after a failure by the next one; it lives on the core's `cachette-io` runtime, so the backend
/// works from synchronous code, from any tokio runtime (either flavor) and from other executors.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

/// The state shared by the clones of a backend; the operations are methods of it, one module
/// per concern.
pub(crate) struct Inner {
    pub(crate) config: RedisConfig,
    pub(crate) location: String,
    pub(crate) layout: Layout,
    pub(crate) connector: Connector,
    /// The blocking connections of synchronous callers (single servers only).
    pub(crate) blocking: Option<BlockingPool>,
    pub(crate) io: Handle,
    /// How accesses are tracked (see [`crate::access`]).
    pub(crate) access: AtomicU8,
    /// The data keys whose access this process recorded less than a second ago.
    pub(crate) recent: RecentAccesses,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("location", &self.inner.location)
            .field("connector", &self.inner.connector)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// The backend of a configuration; [`RedisConfig::build_backend`] validates it first.
    pub(crate) fn new(config: RedisConfig) -> Result<Self, BackendError> {
        let io = io_handle()?;
        let connector = Connector::new(&config, &io)?;
        let blocking = BlockingPool::new(&config)?;
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                location: config.location(),
                layout: Layout::new(&config.prefix),
                connector,
                blocking,
                io,
                access: AtomicU8::new(access::initial(config.access_tracking)),
                recent: RecentAccesses::default(),
                config,
            }),
        })
    }

    /// The configuration of the backend.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// How many blocking connections are open (for tests and diagnostics).
    #[doc(hidden)]
    pub fn blocking_connections(&self) -> usize {
        self.inner.blocking.as_ref().map_or(0, BlockingPool::open)
    }

    /// Whether the operation being polled is a synchronous caller's: polled by the
    /// `cachette-io` runtime's `block_on` (how the core runs the operations of synchronous
    /// callers), on the caller's thread, inside the runtime's context but outside any task. A
    /// task (an async caller's operation handed to the runtime, or anything else running on
    /// its workers) never is.
    fn polled_by_blocking_caller(&self) -> bool {
        matches!(Handle::try_current(), Ok(h) if h.id() == self.inner.io.id())
            && tokio::task::try_id().is_none()
    }

    /// Runs an operation on the `cachette-io` runtime, which owns the connection: in place when
    /// already there (synchronous callers are), else as a task awaited from here.
    async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        key: Option<&(dyn fmt::Display + Sync)>,
        f: F,
    ) -> BackendResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Res<T>> + Send + 'static,
    {
        let fut = f(self.inner.clone());
        let result = match Handle::try_current() {
            Ok(handle) if handle.id() == self.inner.io.id() => fut.await,
            _ => match self.inner.io.spawn(fut).await {
                Ok(result) => result,
                Err(e) => Err(Fail::Backend(BackendError::new(
                    ErrorKind::Other,
                    format!("the Redis I/O task failed: {e}"),
                ))),
            },
        };
        result.map_err(|fail| self.fail(op, key, fail))
    }

    /// The backend error of a failed operation.
    fn fail(
        &self,
        op: &'static str,
        key: Option<&(dyn fmt::Display + Sync)>,
        fail: Fail,
    ) -> BackendError {
        let err = fail.into_backend().with_backend(SCHEME).with_operation(op);
        match key {
            Some(key) => err.with_key(key),
            None => err,
        }
    }
}

/// The name of a read with `options`, for errors.
fn read_op(options: &GetOptions) -> &'static str {
    if options.head {
        "head"
    } else if options.range.is_some() {
        "get_range"
    } else {
        "get"
    }
}

impl Inner {
    /// The largest item written or read: `max_item_size`, and no more than [`MAX_CHUNKS`]
    /// chunks of `chunk_size`.
    pub(crate) fn max_item_size(&self) -> u64 {
        self.config
            .max_item_size
            .min(self.config.chunk_size.saturating_mul(MAX_CHUNKS))
    }
}

#[async_trait]
impl StoreBackend for RedisBackend {
    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::none();
        capabilities.atomic_create = true;
        capabilities.native_expiry = true;
        capabilities.ranged_read = true;
        capabilities.blocking_io = false;
        capabilities.local_files = false;
        capabilities.max_item_size = Some(self.inner.max_item_size());
        capabilities
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        let op = read_op(&options);
        // A synchronous caller's read does its first round trip on its own thread (see
        // `crate::blocking`).
        let mut chunked = false;
        if let Some(pool) = &self.inner.blocking
            && self.polled_by_blocking_caller()
        {
            match self.inner.get_blocking(pool, key, &options) {
                Blocking::Done(result) => {
                    return result.map_err(|fail| self.fail(op, Some(key), fail));
                }
                Blocking::Chunked => chunked = true,
                Blocking::Declined => {}
            }
        }
        let k = key.clone();
        self.run(op, Some(key), |inner| async move {
            inner.get(&k, options, chunked).await
        })
        .await
    }

    /// A synchronous caller's read on a single server: its first round trip on a blocking
    /// connection of the caller's thread, with no future and no hand-off to the runtime (see
    /// `crate::blocking`); a chunked item goes on through the multiplexed connection, from
    /// where the first round trip left it. `None` when no blocking connection is free (the
    /// read then goes the asynchronous way), on a cluster, and for a synchronous caller inside a
    /// runtime (a worker of the caller's own tokio runtime is not blocked on the network here:
    /// the usual path steps aside from it first).
    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        if Handle::try_current().is_ok() {
            return None;
        }
        let pool = self.inner.blocking.as_ref()?;
        let op = read_op(options);
        match self.inner.get_blocking(pool, key, options) {
            Blocking::Done(result) => Some(result.map_err(|fail| self.fail(op, Some(key), fail))),
            Blocking::Chunked => {
                let (k, options) = (key.clone(), options.clone());
                let rest = self.run(op, Some(key), |inner| async move {
                    inner.get(&k, options, true).await
                });
                Some(block_on(false, rest).and_then(|read| read))
            }
            Blocking::Declined => None,
        }
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        let create = options.mode == PutMode::Create;
        let op = if create { "put_if_absent" } else { "put" };
        let (k, ttl) = (key.clone(), options.ttl);
        self.run(op, Some(key), |inner| async move {
            inner.put(&k, value, ttl, create).await
        })
        .await
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let keys = keys.to_vec();
        self.run("delete_many", None, |inner| async move {
            inner.delete_keys(&keys).await
        })
        .await
    }

    async fn list(&self, prefix: &cachette_core::plugin::Prefix) -> BackendResult<Vec<ItemInfo>> {
        let p = prefix.clone();
        self.run(
            "list",
            Some(prefix),
            |inner| async move { inner.list(&p).await },
        )
        .await
    }

    async fn sweep(&self, prefix: &cachette_core::plugin::Prefix) -> BackendResult<u64> {
        let p = prefix.clone();
        self.run("sweep", Some(prefix), |inner| async move {
            inner.sweep(&p).await
        })
        .await
    }
}
