//! Reads: whole items, ranges of them and their sizes (`head`), of whole values and of chunked
//! items, recording an access only when asked.
//!
//! A read starts on the data key. A whole value answers there; a manifest (`WRONGTYPE` on a
//! string command, or its type) sends the read to the chunks, after the manifest is checked
//! against its bounds ([`Manifest::parse`]). A chunk missing means the item was replaced or
//! deleted meanwhile (the read starts over, up to [`READ_ATTEMPTS`] times) or lost a chunk to
//! eviction (it reads as missing).

use std::ops::Range;

use cachette_core::plugin::{Bytes, GetOptions, GetResult, Key, bytes::BytesMut};
use futures::{StreamExt, TryStreamExt, stream};
use redis::{Cmd, Pipeline, RedisError, Value};

use crate::access;
use crate::backend::Inner;
use crate::conn::Conn;
use crate::error::{Fail, Res, corrupted, is_wrong_type, kept_changing, unexpected};
use crate::keys;
use crate::lua;
use crate::manifest::{MAX_FIELD_LEN, Manifest};

/// How many times a read starts over when the item is replaced under its feet.
const READ_ATTEMPTS: usize = 8;
/// Chunks transferred at once for one item.
pub(crate) const CHUNK_PARALLELISM: usize = 4;

/// What reading an item gave.
pub(crate) enum ChunkRead {
    /// The bytes read, and the item's whole size.
    Bytes(Bytes, u64),
    Missing,
    /// The item was replaced while being read: read it again.
    Changed,
}

/// What reading a manifest gave.
enum Lookup {
    Found(Manifest),
    Missing,
    /// The data key holds a whole value now.
    Changed,
}

/// Why a chunk read stopped.
enum ChunkFail {
    Redis(RedisError),
    /// A chunk is missing or shorter than the manifest says.
    Short,
}

/// What a read asks for.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    Whole,
    Head,
    Range(Range<u64>),
}

impl Shape {
    pub(crate) fn of(options: &GetOptions) -> Shape {
        if options.head {
            Shape::Head
        } else if let Some(range) = &options.range {
            Shape::Range(range.clone())
        } else {
            Shape::Whole
        }
    }

    /// The result of a read of this shape.
    pub(crate) fn result(&self, bytes: Bytes, size: u64) -> GetResult {
        match self {
            Shape::Whole => GetResult::whole(bytes),
            Shape::Head => GetResult::head(size),
            Shape::Range(_) => GetResult::part(bytes, size),
        }
    }
}

/// What the first round trip of a read gave.
pub(crate) enum First {
    /// The item, whole, in part or its size; or that it is missing.
    Read(ChunkRead),
    /// The data key holds a manifest: the item is chunked.
    Chunked,
}

/// The first round trip of a read, which answers it unless the item is chunked: a `GET` for a
/// whole read; the [`lua::PROBE`] script (the type and length of the data key, and for a
/// ranged read the bytes) otherwise. With `record`, the access is recorded in the same round
/// trip.
pub(crate) fn first_request(data: &str, shape: &Shape, record: Option<Cmd>) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    match shape {
        Shape::Whole => {
            pipe.cmd("GET").arg(data);
        }
        Shape::Head => {
            pipe.add_command(lua::eval(lua::PROBE, &[data]));
        }
        Shape::Range(range) => {
            let mut probe = lua::eval(lua::PROBE, &[data]);
            if range.end > range.start {
                probe.arg(to_i64(range.start)).arg(to_i64(range.end - 1));
            }
            pipe.add_command(probe);
        }
    }
    if let Some(record) = record {
        pipe.add_command(record).ignore();
    }
    pipe
}

/// Reads the answer to [`first_request`]. A value larger than `max_size` (`max_item_size`)
/// is refused, as a manifest of such a size is: Redis bounds what a `GET` transfers (512 MiB
/// by default), the backend what it accepts.
pub(crate) fn first_answer(
    data: &str,
    shape: &Shape,
    values: Vec<Value>,
    max_size: u64,
) -> Res<First> {
    let mut values = values.into_iter();
    let first = match shape {
        Shape::Whole => match values.next().map(Value::extract_error) {
            None | Some(Ok(Value::Nil)) => Ok(First::Read(ChunkRead::Missing)),
            Some(Ok(Value::BulkString(bytes))) => {
                let size = bytes.len() as u64;
                Ok(First::Read(ChunkRead::Bytes(Bytes::from(bytes), size)))
            }
            Some(Ok(other)) => Err(unexpected("GET", &other).into()),
            Some(Err(e)) if is_wrong_type(&e) => Ok(First::Chunked),
            Some(Err(e)) => Err(e.into()),
        },
        Shape::Head | Shape::Range(_) => {
            let fields = match values.next().map(Value::extract_error) {
                Some(Ok(Value::Array(fields))) if (1..=3).contains(&fields.len()) => fields,
                Some(Ok(other)) => return Err(unexpected("the probe script", &other).into()),
                Some(Err(e)) => return Err(e.into()),
                None => return Err(unexpected("the probe script", &Value::Nil).into()),
            };
            let mut fields = fields.into_iter();
            let (kind, len) = (fields.next(), fields.next());
            match type_name(kind)?.as_str() {
                "none" => Ok(First::Read(ChunkRead::Missing)),
                "string" => {
                    let size = match len {
                        Some(Value::Int(len)) => u64::try_from(len)
                            .map_err(|_| unexpected("STRLEN", &Value::Int(len)))?,
                        Some(other) => return Err(unexpected("STRLEN", &other).into()),
                        None => return Err(unexpected("STRLEN", &Value::Nil).into()),
                    };
                    let bytes = match shape {
                        Shape::Range(range) if range.end > range.start => match fields.next() {
                            Some(Value::BulkString(bytes)) => Bytes::from(bytes),
                            Some(Value::Nil) => Bytes::new(),
                            Some(other) => return Err(unexpected("GETRANGE", &other).into()),
                            None => return Err(unexpected("GETRANGE", &Value::Nil).into()),
                        },
                        _ => Bytes::new(),
                    };
                    Ok(First::Read(ChunkRead::Bytes(bytes, size)))
                }
                "hash" => Ok(First::Chunked),
                other => Err(corrupted(data, &format!("the key holds a {other}"))),
            }
        }
    }?;
    // A whole value, as a `GET` gives it or as the probe script measures it.
    if let First::Read(ChunkRead::Bytes(_, size)) = &first
        && *size > max_size
    {
        return Err(corrupted(
            data,
            &format!(
                "its value of {size} bytes exceeds the largest item accepted ({max_size} bytes, max_item_size)"
            ),
        ));
    }
    Ok(first)
}

impl Inner {
    /// Reads as `options` say; see [`GetOptions`]. With `chunked`, the item is known to be
    /// chunked and its access (if asked) already recorded: the read starts on its manifest.
    pub(crate) async fn get(
        &self,
        key: &Key,
        options: GetOptions,
        chunked: bool,
    ) -> Res<Option<GetResult>> {
        let data = self.layout.data(key);
        let shape = Shape::of(&options);
        let mut conn = self.connector.conn().await?;
        // The access is recorded once, by the first attempt's round trip.
        let mut record = if options.record_access && !chunked && self.must_record(&data) {
            let stored = self.stored_access(&mut conn).await?;
            Some(access::record_cmd(stored, &data))
        } else {
            None
        };
        let mut skip_first = chunked;
        for _ in 0..READ_ATTEMPTS {
            let first = if std::mem::take(&mut skip_first) {
                First::Chunked
            } else {
                let recording = record.is_some();
                let values: Vec<Value> = first_request(&data, &shape, record.take())
                    .query_async(&mut conn)
                    .await?;
                if recording {
                    self.recorded(&data);
                }
                first_answer(&data, &shape, values, self.max_item_size())?
            };
            let step = match first {
                First::Read(step) => step,
                First::Chunked => self.chunked(&mut conn, &data, &shape).await?,
            };
            match step {
                ChunkRead::Bytes(bytes, size) => return Ok(Some(shape.result(bytes, size))),
                ChunkRead::Missing => return Ok(None),
                ChunkRead::Changed => continue,
            }
        }
        Err(kept_changing())
    }

    /// The read of a chunked item: its manifest's size for `head`, else its chunks.
    async fn chunked(&self, conn: &mut Conn, data: &str, shape: &Shape) -> Res<ChunkRead> {
        match shape {
            Shape::Head => Ok(match self.manifest(conn, data).await? {
                Lookup::Found(m) => ChunkRead::Bytes(Bytes::new(), m.size),
                Lookup::Missing => ChunkRead::Missing,
                Lookup::Changed => ChunkRead::Changed,
            }),
            Shape::Whole => self.read_chunked(conn, data, None).await,
            Shape::Range(range) => self.read_chunked(conn, data, Some(range.clone())).await,
        }
    }

    /// Reads and checks the manifest in the data key (see [`lua::MANIFEST`]).
    async fn manifest(&self, conn: &mut Conn, data: &str) -> Res<Lookup> {
        let answer: Value = lua::eval(lua::MANIFEST, &[data])
            .arg(MAX_FIELD_LEN)
            .query_async(conn)
            .await?;
        let fields = match answer {
            Value::Int(0) => return Ok(Lookup::Missing),
            Value::Int(1) => return Ok(Lookup::Changed),
            Value::Int(_) => {
                return Err(corrupted(
                    data,
                    "the key holds neither a value nor a manifest, or a field is too long",
                ));
            }
            Value::Array(fields) if fields.len() == 4 => fields,
            other => return Err(unexpected("the manifest script", &other).into()),
        };
        let text: Vec<Option<String>> = fields
            .iter()
            .map(|v| access::text_of(v).and_then(|b| String::from_utf8(b).ok()))
            .collect();
        // A hash without the fields of a manifest (or whose fields are not text) is not one
        // this library wrote: refused, with the error of the field missing.
        Manifest::parse(
            text[0].as_deref(),
            text[1].as_deref(),
            text[2].as_deref(),
            text[3].as_deref(),
            self.max_item_size(),
        )
        .map(Lookup::Found)
        .map_err(|why| corrupted(data, &format!("its manifest is invalid ({why})")))
    }

    /// Reads a chunked item, or the `range` of it. All chunks read belong to the write the
    /// manifest names (their keys hold its write id). Each chunk read is bounded by the length
    /// the manifest gives it, and the read stops at the first chunk that is missing or short.
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
            return Ok(ChunkRead::Bytes(Bytes::new(), size));
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
                let bytes: Vec<u8> = redis::cmd("GETRANGE")
                    .arg(&key)
                    .arg(lo)
                    .arg(hi - 1)
                    .query_async(&mut conn)
                    .await
                    .map_err(ChunkFail::Redis)?;
                // `GETRANGE` gives an empty string for a missing key; chunks are never empty.
                if bytes.len() as u64 != hi - lo {
                    return Err(ChunkFail::Short);
                }
                Ok(bytes)
            }
        });
        let parts: Result<Vec<Vec<u8>>, ChunkFail> = stream::iter(reads)
            .buffered(CHUNK_PARALLELISM)
            .try_collect()
            .await;
        let parts = match parts {
            Ok(parts) => parts,
            Err(ChunkFail::Redis(e)) => return Err(Fail::Redis(e)),
            Err(ChunkFail::Short) => {
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
        };
        if parts.len() == 1 {
            let part = parts.into_iter().next().unwrap_or_default();
            return Ok(ChunkRead::Bytes(Bytes::from(part), size));
        }
        let mut out = BytesMut::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            out.extend_from_slice(&part);
        }
        Ok(ChunkRead::Bytes(out.freeze(), size))
    }
}

/// The answer to `TYPE`.
fn type_name(answer: Option<Value>) -> Res<String> {
    match answer.map(Value::extract_error) {
        Some(Ok(Value::SimpleString(kind))) => Ok(kind),
        Some(Ok(Value::BulkString(kind))) => Ok(String::from_utf8_lossy(&kind).into_owned()),
        Some(Ok(Value::Okay)) => Ok("OK".to_owned()),
        Some(Ok(other)) => Err(unexpected("TYPE", &other).into()),
        Some(Err(e)) => Err(e.into()),
        None => Err(unexpected("TYPE", &Value::Nil).into()),
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
