//! Listing and sweeping: `SCAN` of the data keys (or of this host's chunks) under a prefix, on
//! every master; the sizes and last accesses of the items, read without writing anything; and
//! the removal of the chunks that writers of this host left when they died.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cachette_core::plugin::{ItemInfo, Prefix, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use redis::Value;
use redis::cluster_routing::Slot;

use crate::access;
use crate::backend::Inner;
use crate::conn::Conn;
use crate::error::{Fail, Res, unexpected};
use crate::keys::{self, Layout};
use crate::lua;
use crate::manifest::MAX_FIELD_LEN;

/// Keys per `SCAN` page.
const SCAN_COUNT: usize = 1000;
/// Items per batch of listing probes or deletions.
const BATCH: usize = 256;
/// Batches in flight at once.
pub(crate) const BATCH_PARALLELISM: usize = 8;

/// What one item's listing probe found: its kind, size and access probes (see [`lua::LIST`]).
struct Probe {
    data: String,
    kind: i64,
    size: Option<Vec<u8>>,
    first: Option<Vec<u8>>,
    second: Option<Vec<u8>>,
}

impl Inner {
    /// Lists the items under `prefix` with their size and last access. Writes nothing.
    pub(crate) async fn list(&self, prefix: &Prefix) -> Res<Vec<ItemInfo>> {
        let mut conn = self.connector.conn().await?;
        let mut all = BTreeSet::new();
        let mut scanner = Scanner::new(self, &mut conn, prefix, Walk::Data).await?;
        while let Some(data) = scanner.next_page(&mut conn).await? {
            all.extend(data);
        }
        let data: Vec<String> = all.into_iter().collect();
        let mut stored = self.stored_access(&mut conn).await?;
        let probes = match self.probe(&conn, &data, stored).await {
            Err(Fail::Redis(e)) if !stored && e.to_string().contains("LFU") => {
                // The server evicts by frequency: it keeps no idle time. Use the time stamps
                // in the records from now on.
                self.switch_to_stored();
                stored = true;
                self.probe(&conn, &data, stored).await?
            }
            other => other?,
        };
        let now = Utc::now();
        let max_size = self.max_item_size();
        let mut items = Vec::with_capacity(probes.len());
        for probe in probes {
            let size = match probe.kind {
                0 => continue,
                1 | 2 => probe
                    .size
                    .as_deref()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    // A corrupted manifest is listed, so that it can be deleted, with a size
                    // within bounds.
                    .map_or(0, |size| size.min(max_size)),
                _ => continue,
            };
            let Some(key) = self.layout.key_of(probe.data.as_bytes()) else {
                continue;
            };
            let last_access =
                access::last_access(stored, probe.first.as_deref(), probe.second.as_deref(), now);
            items.push(ItemInfo {
                key,
                size,
                last_access,
            });
        }
        Ok(items)
    }

    /// Runs the listing script on the data keys, in batches (per slot on a cluster).
    async fn probe(&self, conn: &Conn, data: &[String], stored: bool) -> Res<Vec<Probe>> {
        let runs = batches(conn.is_cluster(), data.to_vec())
            .into_iter()
            .map(|batch| {
                let mut conn = conn.clone();
                async move {
                    let values: Vec<Value> = lua::eval(lua::LIST, &batch)
                        .arg(if stored { "1" } else { "0" })
                        .arg(MAX_FIELD_LEN)
                        .query_async(&mut conn)
                        .await?;
                    if values.len() != batch.len() * 4 {
                        return Err(unexpected("the listing script", &Value::Array(values)).into());
                    }
                    let mut values = values.into_iter();
                    let mut next = || values.next().unwrap_or(Value::Nil);
                    let probes: Vec<Probe> = batch
                        .into_iter()
                        .map(|data| {
                            let kind = match next() {
                                Value::Int(kind) => kind,
                                _ => 3,
                            };
                            let (size, first, second) = (next(), next(), next());
                            Probe {
                                data,
                                kind,
                                size: access::text_of(&size),
                                first: access::text_of(&first),
                                second: access::text_of(&second),
                            }
                        })
                        .collect();
                    Ok::<_, Fail>(probes)
                }
            });
        let answers: Vec<Vec<Probe>> = stream::iter(runs)
            .buffer_unordered(BATCH_PARALLELISM)
            .try_collect()
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// Deletes the chunks under `prefix` that writers of this host left when they died before
    /// publishing them (a crash, `kill -9`): chunks whose write id names a process of this host
    /// that is gone and that no manifest names. Chunks of writers of other hosts expire by
    /// themselves after `chunk_grace_secs`. Returns how many chunks were deleted.
    pub(crate) async fn sweep(&self, prefix: &Prefix) -> Res<u64> {
        let mut conn = self.connector.conn().await?;
        let mut writes: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut scanner = Scanner::new(self, &mut conn, prefix, Walk::OwnChunks).await?;
        while let Some(page) = scanner.next_page(&mut conn).await? {
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
            .flat_map(|((data, id), chunks)| {
                // A bounded number of keys per script.
                chunks
                    .chunks(BATCH)
                    .map(|part| {
                        let mut keys = Vec::with_capacity(part.len() + 1);
                        keys.push(data.clone());
                        keys.extend_from_slice(part);
                        (keys, id.clone())
                    })
                    .collect::<Vec<_>>()
            })
            .map(|(keys, id)| {
                let mut conn = conn.clone();
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
        let deleted = deleted.into_iter().sum();
        if deleted > 0 {
            tracing::debug!(target: "cachette", "redis: deleted {deleted} chunks of writers that died");
        }
        Ok(deleted)
    }
}

/// What a [`Scanner`] walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// The data keys of the items.
    Data,
    /// The chunks written by processes of this host (see
    /// [`owner_tag`](cachette_core::plugin::owner_tag)).
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
pub(crate) fn batches(cluster: bool, data: Vec<String>) -> Vec<Vec<String>> {
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
