//! [`RedisBackend`]: the [`StoreBackend`] implementation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cachette_core::{
    BackendError, BackendResult, Blob, Capabilities, ErrorKind, ItemInfo, Key, Prefix, PutOptions,
    PutOutcome, StoreBackend,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use redis::cluster_routing::Slot;
use redis::{RedisError, Value};
use tokio::runtime::Handle;

use crate::SCHEME;
use crate::config::{AccessTracking, RedisConfig};
use crate::conn::{Conn, Connector};
use crate::error::{from_redis, is_wrong_type, unexpected};
use crate::keys::{self, Layout};
use crate::lua;

/// How many times a read starts over when the item is replaced under its feet.
const READ_ATTEMPTS: usize = 8;
/// Chunks transferred at once for one item.
const CHUNK_PARALLELISM: usize = 4;
/// Keys per `SCAN` page.
const SCAN_COUNT: usize = 1000;
/// Items per batch of listing probes or deletions.
const BATCH: usize = 256;
/// Batches in flight at once.
const BATCH_PARALLELISM: usize = 8;

const ACCESS_UNDECIDED: u8 = 0;
const ACCESS_IDLETIME: u8 = 1;
const ACCESS_STORED: u8 = 2;

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

struct Inner {
    config: RedisConfig,
    location: String,
    layout: Layout,
    connector: Connector,
    io: Handle,
    access: AtomicU8,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("location", &self.inner.location)
            .field("connector", &self.inner.connector)
            .finish_non_exhaustive()
    }
}

/// What went wrong inside an operation, before it is turned into a [`BackendError`].
enum Fail {
    Redis(RedisError),
    Backend(BackendError),
}

impl From<RedisError> for Fail {
    fn from(e: RedisError) -> Self {
        Fail::Redis(e)
    }
}

impl From<redis::ParsingError> for Fail {
    fn from(e: redis::ParsingError) -> Self {
        Fail::Redis(e.into())
    }
}

impl From<BackendError> for Fail {
    fn from(e: BackendError) -> Self {
        Fail::Backend(e)
    }
}

type Res<T> = Result<T, Fail>;

/// What reading a chunked item gave.
enum ChunkRead {
    Bytes(Bytes),
    Missing,
    /// The item was replaced while being read: read it again.
    Changed,
}

/// The manifest of a chunked item.
struct Manifest {
    id: String,
    size: u64,
    chunk: u64,
}

enum Lookup<T> {
    Found(T),
    Missing,
    /// The data key holds a whole value now.
    Changed,
}

impl RedisBackend {
    /// The backend of a configuration; [`RedisConfig::build_backend`] validates it first.
    pub(crate) fn new(config: RedisConfig) -> Result<Self, BackendError> {
        let io = cachette_core::rt::io_handle()?;
        let connector = Connector::new(&config, &io)?;
        let access = match config.access_tracking {
            AccessTracking::IdleTime => ACCESS_IDLETIME,
            AccessTracking::Stored => ACCESS_STORED,
            _ => ACCESS_UNDECIDED,
        };
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                location: config.location(),
                layout: Layout::new(&config.prefix),
                connector,
                io,
                access: AtomicU8::new(access),
                config,
            }),
        })
    }

    /// The configuration of the backend.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Runs an operation on the `cachette-io` runtime, which owns the connection: in place when
    /// already there (synchronous callers are), else as a task awaited from here.
    async fn run<T, F, Fut>(&self, op: &'static str, key: Option<&Key>, f: F) -> BackendResult<T>
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
        result.map_err(|fail| {
            let err = match fail {
                Fail::Redis(e) => from_redis(e),
                Fail::Backend(e) => e,
            };
            let err = err.with_backend(SCHEME).with_operation(op);
            match key {
                Some(key) => err.with_key(key),
                None => err,
            }
        })
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
        capabilities.max_item_size = None;
        capabilities
    }

    async fn get(&self, key: &Key) -> BackendResult<Option<Bytes>> {
        let k = key.clone();
        self.run("get", Some(key), |inner| async move { inner.get(&k).await })
            .await
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> BackendResult<Option<Bytes>> {
        let k = key.clone();
        self.run("get_range", Some(key), |inner| async move {
            inner.get_range(&k, range).await
        })
        .await
    }

    async fn touch(&self, key: &Key) -> BackendResult<()> {
        let k = key.clone();
        self.run(
            "touch",
            Some(key),
            |inner| async move { inner.touch(&k).await },
        )
        .await
    }

    async fn put(&self, key: &Key, value: Blob, options: &PutOptions) -> BackendResult<()> {
        let (k, ttl) = (key.clone(), options.ttl);
        self.run("put", Some(key), |inner| async move {
            inner.put(&k, value, ttl, false).await.map(|_| ())
        })
        .await
    }

    async fn put_if_absent(
        &self,
        key: &Key,
        value: Blob,
        options: &PutOptions,
    ) -> BackendResult<PutOutcome> {
        let (k, ttl) = (key.clone(), options.ttl);
        self.run("put_if_absent", Some(key), |inner| async move {
            inner.put(&k, value, ttl, true).await
        })
        .await
    }

    async fn contains(&self, key: &Key) -> BackendResult<bool> {
        let k = key.clone();
        self.run("contains", Some(key), |inner| async move {
            let data = inner.layout.data(&k);
            let mut conn = inner.connector.conn().await?;
            let n: i64 = redis::cmd("EXISTS")
                .arg(&data)
                .query_async(&mut conn)
                .await?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete(&self, key: &Key) -> BackendResult<()> {
        let k = key.clone();
        self.run("delete", Some(key), |inner| async move {
            let mut conn = inner.connector.conn().await?;
            inner
                .delete_data(&mut conn, vec![inner.layout.data(&k)])
                .await
                .map(|_| ())
        })
        .await
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let keys = keys.to_vec();
        self.run("delete_many", None, |inner| async move {
            let mut conn = inner.connector.conn().await?;
            let data = keys.iter().map(|k| inner.layout.data(k)).collect();
            inner.delete_data(&mut conn, data).await.map(|_| ())
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &Prefix) -> BackendResult<u64> {
        let p = prefix.clone();
        self.run("delete_prefix", None, |inner| async move {
            inner.delete_prefix(&p).await
        })
        .await
        .map_err(|e| e.with_key(prefix))
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let p = prefix.clone();
        self.run("list", None, |inner| async move { inner.list(&p).await })
            .await
            .map_err(|e| e.with_key(prefix))
    }

    fn local_path(&self, _key: &Key) -> Option<PathBuf> {
        None
    }
}

impl Inner {
    fn ttl(&self, ttl: Option<Duration>) -> Option<u64> {
        ttl.or_else(|| self.config.default_ttl())
            .map(|t| u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
            .map(|ms| ms.max(1))
    }

    fn grace_ms(&self) -> u64 {
        self.config.chunk_grace_secs.saturating_mul(1000)
    }

    /// Whether reads record their time in the item's record (else Redis's idle time is used).
    /// Decided once, from the server's eviction policy, when the configuration says `auto`.
    /// Fails only when the server cannot be reached.
    async fn stored_access(&self, conn: &mut Conn) -> Res<bool> {
        match self.access.load(Ordering::Relaxed) {
            ACCESS_IDLETIME => return Ok(false),
            ACCESS_STORED => return Ok(true),
            _ => {}
        }
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let decided = match conn.any_node(cmd).await {
            Ok(answer) => {
                let lfu = strings_of(&answer).iter().any(|s| s.contains("lfu"));
                if lfu { ACCESS_STORED } else { ACCESS_IDLETIME }
            }
            // A server that refuses CONFIG (managed services often do): idle times until
            // `OBJECT IDLETIME` says the policy is LFU (see `list`).
            Err(e) if !e.is_io_error() && !e.is_timeout() && !e.is_unrecoverable_error() => {
                ACCESS_IDLETIME
            }
            Err(e) => return Err(e.into()),
        };
        // Another task may have switched to stored access meanwhile; never switch back.
        let _ = self.access.compare_exchange(
            ACCESS_UNDECIDED,
            decided,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        Ok(self.access.load(Ordering::Relaxed) == ACCESS_STORED)
    }

    /// Records an access: in the item's record under stored access, else by resetting Redis's
    /// idle time (`TOUCH`).
    async fn touch(&self, key: &Key) -> Res<()> {
        let data = self.layout.data(key);
        let mut conn = self.connector.conn().await?;
        if self.stored_access(&mut conn).await? {
            let record = keys::record(&data);
            lua::eval(lua::TOUCH, &[&data, &record])
                .arg(now_ms())
                .query_async::<i64>(&mut conn)
                .await?;
        } else {
            redis::cmd("TOUCH")
                .arg(&data)
                .query_async::<i64>(&mut conn)
                .await?;
        }
        Ok(())
    }

    async fn get(&self, key: &Key) -> Res<Option<Bytes>> {
        let data = self.layout.data(key);
        let mut conn = self.connector.conn().await?;
        let stored = self.stored_access(&mut conn).await?;
        for _ in 0..READ_ATTEMPTS {
            let answer = if stored {
                let record = keys::record(&data);
                let mut pipe = redis::pipe();
                pipe.ignore_errors()
                    .cmd("GET")
                    .arg(&data)
                    .add_command(
                        lua::eval(lua::TOUCH, &[&data, &record])
                            .arg(now_ms())
                            .clone(),
                    )
                    .ignore();
                let values: Vec<Value> = pipe.query_async(&mut conn).await?;
                values
                    .into_iter()
                    .next()
                    .unwrap_or(Value::Nil)
                    .extract_error()
            } else {
                redis::cmd("GET")
                    .arg(&data)
                    .query_async::<Value>(&mut conn)
                    .await
            };
            match answer {
                Ok(Value::Nil) => return Ok(None),
                Ok(Value::BulkString(bytes)) => return Ok(Some(Bytes::from(bytes))),
                Ok(other) => return Err(unexpected("GET", &other).into()),
                Err(e) if is_wrong_type(&e) => {
                    match self.read_chunked(&mut conn, &data, None).await? {
                        ChunkRead::Bytes(bytes) => return Ok(Some(bytes)),
                        ChunkRead::Missing => return Ok(None),
                        ChunkRead::Changed => continue,
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(kept_changing())
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Res<Option<Bytes>> {
        let data = self.layout.data(key);
        let mut conn = self.connector.conn().await?;
        let empty = range.end <= range.start;
        for _ in 0..READ_ATTEMPTS {
            let mut pipe = redis::pipe();
            pipe.atomic().ignore_errors().cmd("EXISTS").arg(&data);
            if !empty {
                pipe.cmd("GETRANGE")
                    .arg(&data)
                    .arg(to_i64(range.start))
                    .arg(to_i64(range.end - 1));
            }
            let mut values: Vec<Value> = pipe.query_async(&mut conn).await?;
            let ranged = if empty { None } else { values.pop() };
            match values.pop().map(Value::extract_error) {
                Some(Ok(Value::Int(0))) => return Ok(None),
                Some(Ok(Value::Int(_))) => {}
                Some(Ok(other)) => return Err(unexpected("EXISTS", &other).into()),
                Some(Err(e)) => return Err(e.into()),
                None => return Err(unexpected("EXISTS", &Value::Nil).into()),
            }
            let Some(ranged) = ranged else {
                return Ok(Some(Bytes::new()));
            };
            match ranged.extract_error() {
                Ok(Value::BulkString(bytes)) => return Ok(Some(Bytes::from(bytes))),
                Ok(Value::Nil) => return Ok(Some(Bytes::new())),
                Ok(other) => return Err(unexpected("GETRANGE", &other).into()),
                Err(e) if is_wrong_type(&e) => {
                    match self
                        .read_chunked(&mut conn, &data, Some(range.clone()))
                        .await?
                    {
                        ChunkRead::Bytes(bytes) => return Ok(Some(bytes)),
                        ChunkRead::Missing => return Ok(None),
                        ChunkRead::Changed => continue,
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(kept_changing())
    }

    async fn manifest(&self, conn: &mut Conn, data: &str) -> Res<Lookup<Manifest>> {
        let fields: Vec<Option<String>> = match redis::cmd("HMGET")
            .arg(data)
            .arg(&["w", "s", "c"])
            .query_async(conn)
            .await
        {
            Ok(fields) => fields,
            Err(e) if is_wrong_type(&e) => return Ok(Lookup::Changed),
            Err(e) => return Err(e.into()),
        };
        match fields.as_slice() {
            [None, None, None] => Ok(Lookup::Missing),
            [Some(id), Some(size), Some(chunk)] => {
                match (size.parse::<u64>(), chunk.parse::<u64>()) {
                    (Ok(size), Ok(chunk)) if chunk > 0 => Ok(Lookup::Found(Manifest {
                        id: id.clone(),
                        size,
                        chunk,
                    })),
                    _ => Err(corrupt_manifest(data)),
                }
            }
            _ => Err(corrupt_manifest(data)),
        }
    }

    /// Reads a chunked item, or the `range` of it. All chunks read belong to the write the
    /// manifest names (their keys hold its write id); a chunk missing means the item was
    /// replaced or deleted meanwhile, or lost a chunk to eviction.
    async fn read_chunked(
        &self,
        conn: &mut Conn,
        data: &str,
        range: Option<Range<u64>>,
    ) -> Res<ChunkRead> {
        let manifest = match self.manifest(conn, data).await? {
            Lookup::Found(m) => m,
            Lookup::Missing => return Ok(ChunkRead::Missing),
            Lookup::Changed => return Ok(ChunkRead::Changed),
        };
        let size = manifest.size;
        let (start, end) = match &range {
            Some(r) => {
                let start = r.start.min(size);
                (start, r.end.clamp(start, size))
            }
            None => (0, size),
        };
        if start == end {
            return Ok(ChunkRead::Bytes(Bytes::new()));
        }
        let c = manifest.chunk;
        let reads = (start / c..=(end - 1) / c).map(|i| {
            let base = i * c;
            let chunk_len = c.min(size - base);
            let lo = start.max(base) - base;
            let hi = end.min(base + chunk_len) - base;
            let key = keys::chunk(data, &manifest.id, i);
            let mut conn = conn.clone();
            async move {
                let bytes: Option<Vec<u8>> = if lo == 0 && hi == chunk_len {
                    redis::cmd("GET").arg(&key).query_async(&mut conn).await?
                } else {
                    Some(
                        redis::cmd("GETRANGE")
                            .arg(&key)
                            .arg(lo)
                            .arg(hi - 1)
                            .query_async(&mut conn)
                            .await?,
                    )
                };
                Ok::<_, RedisError>(bytes.filter(|b| b.len() as u64 == hi - lo))
            }
        });
        let parts: Vec<Option<Vec<u8>>> = stream::iter(reads)
            .buffered(CHUNK_PARALLELISM)
            .try_collect()
            .await?;
        if parts.iter().any(Option::is_none) {
            return match self.manifest(conn, data).await? {
                Lookup::Found(now) if now.id == manifest.id => {
                    tracing::warn!(
                        target: "cachette",
                        "redis: item {data} lost a chunk (evicted?); it is treated as missing"
                    );
                    Ok(ChunkRead::Missing)
                }
                Lookup::Missing => Ok(ChunkRead::Missing),
                _ => Ok(ChunkRead::Changed),
            };
        }
        let mut parts = parts.into_iter().flatten();
        if (start / c) == (end - 1) / c {
            return Ok(ChunkRead::Bytes(Bytes::from(
                parts.next().unwrap_or_default(),
            )));
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for part in parts {
            out.extend_from_slice(&part);
        }
        Ok(ChunkRead::Bytes(out.freeze()))
    }

    async fn put(
        &self,
        key: &Key,
        value: Blob,
        ttl: Option<Duration>,
        only_if_absent: bool,
    ) -> Res<PutOutcome> {
        let data = self.layout.data(key);
        let ttl = self.ttl(ttl);
        let mut conn = self.connector.conn().await?;
        if value.len() > self.config.chunk_size {
            return self
                .put_chunked(&mut conn, &data, value, ttl, only_if_absent)
                .await;
        }
        let value = value.to_bytes();
        let record = keys::record(&data);
        let len = value.len();
        if only_if_absent {
            let mut set = redis::cmd("SET");
            set.arg(&data).arg(&value[..]).arg("NX");
            if let Some(ms) = ttl {
                set.arg("PX").arg(ms);
            }
            let created = match set.query_async::<Value>(&mut conn).await? {
                Value::Nil => false,
                Value::Okay => true,
                Value::SimpleString(s) if s == "OK" => true,
                other => return Err(unexpected("SET NX", &other).into()),
            };
            if !created {
                return Ok(PutOutcome::AlreadyExists);
            }
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(&record)
                .arg("s")
                .arg(len)
                .arg("a")
                .arg(now_ms())
                .ignore();
            match ttl {
                Some(ms) => pipe.cmd("PEXPIRE").arg(&record).arg(ms).ignore(),
                None => pipe.cmd("PERSIST").arg(&record).ignore(),
            };
            // The item is created whatever happens to its record: listing falls back to the
            // data key without it.
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::debug!(target: "cachette", "redis: cannot write the record of {data}: {e}");
            }
            return Ok(PutOutcome::Created);
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .ignore_errors()
            .cmd("HMGET")
            .arg(&data)
            .arg("w")
            .arg("n")
            .cmd("SET")
            .arg(&data)
            .arg(&value[..]);
        if let Some(ms) = ttl {
            pipe.arg("PX").arg(ms);
        }
        pipe.cmd("HSET")
            .arg(&record)
            .arg("s")
            .arg(len)
            .arg("a")
            .arg(now_ms());
        match ttl {
            Some(ms) => pipe.cmd("PEXPIRE").arg(&record).arg(ms),
            None => pipe.cmd("PERSIST").arg(&record),
        };
        let mut values: Vec<Value> = pipe.query_async(&mut conn).await?;
        for value in values.iter_mut().skip(1) {
            std::mem::take(value).extract_error()?;
        }
        // The value replaced a chunked item: retire its chunks.
        if let Some(Value::Array(old)) = values.into_iter().next()
            && let [Value::BulkString(id), Value::BulkString(n)] = old.as_slice()
        {
            let id = String::from_utf8_lossy(id);
            let n: u64 = String::from_utf8_lossy(n).parse().unwrap_or(0);
            self.retire_chunks(&mut conn, &data, &id, n).await;
        }
        Ok(PutOutcome::Created)
    }

    /// Lets the chunks of a replaced write expire after the grace period.
    async fn retire_chunks(&self, conn: &mut Conn, data: &str, id: &str, n: u64) {
        let mut pipe = redis::pipe();
        for i in 0..n {
            pipe.cmd("PEXPIRE")
                .arg(keys::chunk(data, id, i))
                .arg(self.grace_ms())
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(conn).await {
            tracing::debug!(target: "cachette", "redis: cannot retire the chunks of {data}: {e}");
        }
    }

    async fn put_chunked(
        &self,
        conn: &mut Conn,
        data: &str,
        value: Blob,
        ttl: Option<u64>,
        only_if_absent: bool,
    ) -> Res<PutOutcome> {
        if only_if_absent {
            let exists: i64 = redis::cmd("EXISTS").arg(data).query_async(conn).await?;
            if exists > 0 {
                return Ok(PutOutcome::AlreadyExists);
            }
        }
        let id = keys::write_id();
        let size = value.len();
        let c = self.config.chunk_size;
        let n = size.div_ceil(c);
        let grace = self.grace_ms();
        let writes = (0..n).map(|i| {
            let part = value.slice(i * c..((i + 1) * c).min(size));
            let key = keys::chunk(data, &id, i);
            let mut conn = conn.clone();
            async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&part[..])
                    .arg("PX")
                    .arg(grace)
                    .query_async::<()>(&mut conn)
                    .await
            }
        });
        let written: Result<Vec<()>, RedisError> = stream::iter(writes)
            .buffer_unordered(CHUNK_PARALLELISM)
            .try_collect()
            .await;
        if let Err(e) = written {
            let chunks: Vec<String> = (0..n).map(|i| keys::chunk(data, &id, i)).collect();
            let _ = redis::cmd("UNLINK")
                .arg(&chunks)
                .query_async::<()>(conn)
                .await;
            return Err(e.into());
        }
        let record = keys::record(data);
        let published: i64 = lua::eval(lua::PUBLISH, &[data, record.as_str()])
            .arg(&id)
            .arg(n)
            .arg(size)
            .arg(c)
            .arg(ttl.unwrap_or(0))
            .arg(now_ms())
            .arg(if only_if_absent { "1" } else { "0" })
            .arg(grace)
            .query_async(conn)
            .await?;
        match published {
            1 => Ok(PutOutcome::Created),
            0 => Ok(PutOutcome::AlreadyExists),
            _ => Err(BackendError::new(
                ErrorKind::Timeout,
                format!(
                    "the chunks of the item expired before it was complete: writing it took longer than chunk_grace_secs ({} s)",
                    self.config.chunk_grace_secs
                ),
            )
            .into()),
        }
    }

    /// Deletes items by data key; gives how many existed. On a cluster, one script per slot.
    async fn delete_data(&self, conn: &mut Conn, data: Vec<String>) -> Res<u64> {
        let batches = batches(conn.is_cluster(), data);
        let deletes = batches.into_iter().map(|batch| {
            let mut conn = conn.clone();
            async move {
                lua::eval(lua::DELETE, &batch)
                    .query_async::<u64>(&mut conn)
                    .await
            }
        });
        let counts: Vec<u64> = stream::iter(deletes)
            .buffer_unordered(BATCH_PARALLELISM)
            .try_collect()
            .await?;
        Ok(counts.into_iter().sum())
    }

    async fn delete_prefix(&self, prefix: &Prefix) -> Res<u64> {
        let mut conn = self.connector.conn().await?;
        let mut scanner = Scanner::new(self, &mut conn, prefix, Walk::Data).await?;
        let mut deleted = 0;
        while let Some(data) = scanner.next_page(&mut conn).await? {
            deleted += self.delete_data(&mut conn, data).await?;
        }
        Ok(deleted)
    }

    async fn list(&self, prefix: &Prefix) -> Res<Vec<ItemInfo>> {
        let mut conn = self.connector.conn().await?;
        match self.sweep_dead_writes(&mut conn, prefix).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(target: "cachette", "redis: deleted {n} chunks of writers that died");
            }
            Err(fail) => {
                let why = match fail {
                    Fail::Redis(e) => e.to_string(),
                    Fail::Backend(e) => e.to_string(),
                };
                tracing::debug!(target: "cachette", "redis: cannot sweep the chunks of writers that died: {why}");
            }
        }
        let mut all = BTreeSet::new();
        let mut scanner = Scanner::new(self, &mut conn, prefix, Walk::Data).await?;
        while let Some(data) = scanner.next_page(&mut conn).await? {
            all.extend(data);
        }
        let stored = self.stored_access(&mut conn).await?;
        let now = Utc::now();
        let probes = batches(conn.is_cluster(), all.into_iter().collect())
            .into_iter()
            .map(|batch| {
                let mut conn = conn.clone();
                async move {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    for data in &batch {
                        if stored {
                            pipe.cmd("EXISTS").arg(data);
                        } else {
                            pipe.cmd("OBJECT").arg("IDLETIME").arg(data);
                        }
                        pipe.cmd("HMGET").arg(keys::record(data)).arg("s").arg("a");
                    }
                    let values: Vec<Value> = pipe.query_async(&mut conn).await?;
                    Ok::<_, Fail>((batch, values))
                }
            });
        let answers: Vec<(Vec<String>, Vec<Value>)> = stream::iter(probes)
            .buffer_unordered(BATCH_PARALLELISM)
            .try_collect()
            .await?;
        let mut items = Vec::new();
        for (batch, values) in answers {
            let mut values = values.into_iter();
            for data in batch {
                let (Some(probe), Some(record)) = (values.next(), values.next()) else {
                    return Err(unexpected("the listing pipeline", &Value::Nil).into());
                };
                let idle = match probe.extract_error() {
                    Ok(Value::Nil | Value::Int(0)) if stored => continue,
                    Ok(Value::Nil) => continue,
                    Ok(Value::Int(_)) if stored => None,
                    Ok(Value::Int(seconds)) => Some(seconds),
                    Ok(other) => return Err(unexpected("OBJECT IDLETIME", &other).into()),
                    Err(e) if e.to_string().contains("LFU") => {
                        // The server evicts by frequency: it keeps no idle time. Use the time
                        // stamps in the records from now on.
                        self.access.store(ACCESS_STORED, Ordering::Relaxed);
                        None
                    }
                    Err(e) => return Err(e.into()),
                };
                let (size, accessed) = record_fields(record);
                let last_access = match (idle, accessed) {
                    (Some(seconds), _) => now - TimeDelta::seconds(seconds),
                    (None, Some(ms)) => DateTime::from_timestamp_millis(ms).unwrap_or_default(),
                    (None, None) => DateTime::UNIX_EPOCH,
                };
                let size = match size {
                    Some(size) => size,
                    None => match self.size_fallback(&mut conn, &data, last_access).await? {
                        Some(size) => size,
                        None => continue,
                    },
                };
                let Some(key) = self.layout.key_of(data.as_bytes()) else {
                    continue;
                };
                items.push(ItemInfo {
                    key,
                    size,
                    last_access,
                });
            }
        }
        Ok(items)
    }

    /// Deletes the chunks under `prefix` that writers of this host left when they died before
    /// publishing them (a crash, `kill -9`): chunks whose write id names a process of this host
    /// that is gone and that no manifest names. Chunks of writers of other hosts expire by
    /// themselves after `chunk_grace_secs`. Returns how many chunks were deleted.
    async fn sweep_dead_writes(&self, conn: &mut Conn, prefix: &Prefix) -> Res<u64> {
        let mut writes: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut scanner = Scanner::new(self, conn, prefix, Walk::OwnChunks).await?;
        while let Some(page) = scanner.next_page(conn).await? {
            for chunk in page {
                let Some((data, _, id)) = self.layout.chunk_of(&chunk) else {
                    continue;
                };
                let write = (data.to_owned(), id.to_owned());
                writes.entry(write).or_default().push(chunk);
            }
        }
        let sweeps = writes
            .into_iter()
            .filter(|((_, id), _)| keys::written_by_dead_process(id))
            .map(|((data, id), chunks)| {
                let mut conn = conn.clone();
                let mut keys = Vec::with_capacity(chunks.len() + 1);
                keys.push(data);
                keys.extend(chunks);
                async move {
                    lua::eval(lua::SWEEP, &keys)
                        .arg(id)
                        .query_async::<u64>(&mut conn)
                        .await
                }
            });
        let deleted: Vec<u64> = stream::iter(sweeps)
            .buffer_unordered(BATCH_PARALLELISM)
            .try_collect()
            .await?;
        Ok(deleted.into_iter().sum())
    }

    /// The size of an item whose record is missing (evicted, or its writer died between the
    /// two steps of a create-if-absent), read from the data key, which counts as an access of
    /// it; the record is written again so that this happens once.
    async fn size_fallback(
        &self,
        conn: &mut Conn,
        data: &str,
        last_access: DateTime<Utc>,
    ) -> Res<Option<u64>> {
        let size = match redis::cmd("STRLEN")
            .arg(data)
            .query_async::<u64>(conn)
            .await
        {
            Ok(size) => size,
            Err(e) if is_wrong_type(&e) => {
                match redis::cmd("HGET")
                    .arg(data)
                    .arg("s")
                    .query_async::<Option<u64>>(conn)
                    .await?
                {
                    Some(size) => size,
                    None => return Ok(None),
                }
            }
            Err(e) => return Err(e.into()),
        };
        // Gone meanwhile (`STRLEN` gives 0 for a missing key): not listed, no record made.
        let exists: i64 = lua::eval(lua::REPAIR, &[data, keys::record(data).as_str()])
            .arg(size)
            .arg(last_access.timestamp_millis())
            .query_async(conn)
            .await?;
        if exists == 0 {
            return Ok(None);
        }
        Ok(Some(size))
    }
}

/// What a [`Scanner`] walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// The data keys of the items.
    Data,
    /// The chunks written by processes of this host (see [`owner_tag`](cachette_core::owner_tag)).
    OwnChunks,
}

/// Walks the data keys (or chunks) under a prefix, one `SCAN` page at a time, on every master.
struct Scanner<'a> {
    layout: &'a Layout,
    prefix: &'a Prefix,
    walk: Walk,
    pattern: String,
    /// Masters not scanned yet.
    targets: Vec<Option<u16>>,
    /// The master being scanned and the cursor there.
    current: Option<(Option<u16>, u64)>,
}

impl<'a> Scanner<'a> {
    async fn new(inner: &'a Inner, conn: &mut Conn, prefix: &'a Prefix, walk: Walk) -> Res<Self> {
        let pattern = match walk {
            Walk::Data => inner.layout.pattern(prefix),
            Walk::OwnChunks => inner.layout.chunk_pattern(prefix),
        };
        Ok(Scanner {
            layout: &inner.layout,
            prefix,
            walk,
            pattern,
            targets: conn.scan_targets().await?,
            current: None,
        })
    }

    /// The next non-empty page of keys, or `None` at the end.
    async fn next_page(&mut self, conn: &mut Conn) -> Res<Option<Vec<String>>> {
        loop {
            let (target, cursor) = match self.current.take() {
                Some(current) => current,
                None => match self.targets.pop() {
                    Some(target) => (target, 0),
                    None => return Ok(None),
                },
            };
            let (next, found) = conn
                .scan_page(target, cursor, &self.pattern, SCAN_COUNT)
                .await?;
            if next != 0 {
                self.current = Some((target, next));
            }
            let data: Vec<String> = found
                .into_iter()
                .filter_map(|k| String::from_utf8(k).ok())
                .filter(|k| {
                    let key = match self.walk {
                        Walk::Data => self.layout.key_of(k.as_bytes()),
                        Walk::OwnChunks => self.layout.chunk_of(k).map(|(_, key, _)| key),
                    };
                    key.is_some_and(|key| key.starts_with(self.prefix))
                })
                .collect();
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
    }
}

/// Groups data keys for multi-key commands: by slot on a cluster, in batches everywhere.
fn batches(cluster: bool, data: Vec<String>) -> Vec<Vec<String>> {
    if !cluster {
        return data.chunks(BATCH).map(<[String]>::to_vec).collect();
    }
    let mut by_slot: HashMap<Slot, Vec<String>> = HashMap::new();
    for d in data {
        by_slot.entry(Slot::for_key(&d)).or_default().push(d);
    }
    by_slot
        .into_values()
        .flat_map(|keys| {
            keys.chunks(BATCH)
                .map(<[String]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The size and last access (ms) in a record's `HMGET s a` answer.
fn record_fields(record: Value) -> (Option<u64>, Option<i64>) {
    let Ok(Value::Array(fields)) = record.extract_error() else {
        return (None, None);
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok().map(str::to_owned),
        _ => None,
    };
    (
        text(fields.first()).and_then(|s| s.parse().ok()),
        text(fields.get(1)).and_then(|s| s.parse().ok()),
    )
}

/// Every string in an answer (for `CONFIG GET`, an array in RESP2 and a map in RESP3).
fn strings_of(value: &Value) -> Vec<String> {
    match value {
        Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        Value::SimpleString(s) => vec![s.clone()],
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(strings_of).collect(),
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| strings_of(k).into_iter().chain(strings_of(v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn kept_changing() -> Fail {
    Fail::Backend(
        BackendError::new(
            ErrorKind::Other,
            "the item was replaced again and again while being read",
        )
        .set_temporary(true),
    )
}

fn corrupt_manifest(data: &str) -> Fail {
    Fail::Backend(BackendError::new(
        ErrorKind::Other,
        format!("the manifest of the chunked item {data} is corrupted"),
    ))
}
