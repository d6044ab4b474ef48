//! Writes: whole values in one step, chunked items in chunks published by a script, replacing
//! an item (`Overwrite`) or only creating one (`Create`), with an expiry when asked.

use std::time::Duration;

use cachette_core::plugin::{BackendError, Blob, ErrorKind, Key, PutOutcome};
use futures::{StreamExt, TryStreamExt, stream};
use redis::RedisError;

use crate::access::now_ms;
use crate::backend::Inner;
use crate::conn::Conn;
use crate::error::Res;
use crate::keys;
use crate::lua;
use crate::manifest::MAX_CHUNKS;
use crate::reader::CHUNK_PARALLELISM;

impl Inner {
    /// The expiry of a write in milliseconds: its own, else the default one.
    fn ttl_ms(&self, ttl: Option<Duration>) -> Option<u64> {
        ttl.or_else(|| self.config.default_ttl())
            .map(|t| u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
            .map(|ms| ms.max(1))
    }

    /// The lifetime of chunks in transit, in milliseconds.
    fn grace_ms(&self) -> u64 {
        self.config.chunk_grace_secs.saturating_mul(1000)
    }

    /// Writes an item: replacing any item under the key, or (`create`) only when none exists.
    pub(crate) async fn put(
        &self,
        key: &Key,
        value: Blob,
        ttl: Option<Duration>,
        create: bool,
    ) -> Res<PutOutcome> {
        let size = value.len();
        let max = self.max_item_size();
        if size > max {
            return Err(BackendError::new(
                ErrorKind::TooLarge,
                format!(
                    "the item of {size} bytes is larger than the largest the backend stores ({max} bytes: max_item_size, or {MAX_CHUNKS} chunks of chunk_size)"
                ),
            )
            .into());
        }
        let data = self.layout.data(key);
        let ttl = self.ttl_ms(ttl);
        let mut conn = self.connector.conn().await?;
        if size > self.config.chunk_size {
            return self.put_chunked(&mut conn, &data, value, ttl, create).await;
        }
        let value = value.to_bytes();
        if create {
            return self.create_whole(&mut conn, &data, &value, ttl).await;
        }
        // One script: retire the chunks of a chunked item it replaces, write the value and the
        // record.
        lua::eval(lua::WRITE, &[data.as_str(), keys::record(&data).as_str()])
            .arg(&value[..])
            .arg(value.len())
            .arg(ttl.unwrap_or(0))
            .arg(now_ms())
            .arg(self.grace_ms())
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(PutOutcome::Created)
    }

    /// `SET NX` (with `PX` for an expiry, so that a crashed holder's claim goes away) and the
    /// record, in one script.
    async fn create_whole(
        &self,
        conn: &mut Conn,
        data: &str,
        value: &[u8],
        ttl: Option<u64>,
    ) -> Res<PutOutcome> {
        let created: i64 = lua::eval(lua::CREATE, &[data, keys::record(data).as_str()])
            .arg(value)
            .arg(value.len())
            .arg(ttl.unwrap_or(0))
            .arg(now_ms())
            .query_async(conn)
            .await?;
        Ok(if created == 1 {
            PutOutcome::Created
        } else {
            PutOutcome::AlreadyExists
        })
    }

    /// Writes the chunks (with the grace expiry), then publishes them with the manifest.
    async fn put_chunked(
        &self,
        conn: &mut Conn,
        data: &str,
        value: Blob,
        ttl: Option<u64>,
        create: bool,
    ) -> Res<PutOutcome> {
        if create {
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
            for batch in chunks.chunks(1000) {
                let _ = redis::cmd("UNLINK")
                    .arg(batch)
                    .query_async::<()>(conn)
                    .await;
            }
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
            .arg(if create { "1" } else { "0" })
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
}
