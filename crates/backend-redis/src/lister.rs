//! Listing and sweeping: `SCAN` of the data keys (or of this host's chunks) under a prefix, on
//! every master at once (a bounded number of them); the sizes and last accesses of the items,
//! read without writing anything, in batches sent while the scan goes on; and the removal of
//! the chunks that writers of this host left when they died.
//!
//! A listing of `n` items costs `n / SCAN_COUNT` `SCAN` pages (at least one per master) and
//! about `n / BATCH` listing scripts on a single server. On a cluster a script may only touch
//! one slot, so the items are grouped by slot as they come, and a slot's batch is sent once it
//! has gathered `BATCH` items; at the end of the scan, the slots' remaining groups are packed,
//! per master, into pipelines of at most `BATCH` items, each sent to its master as a script
//! per slot. So at most `n / BATCH + 16384` scripts, and about `n / BATCH` round trips plus one
//! per master. A script that its master refuses in such a pipeline (the slot moved meanwhile)
//! is sent again on its own, routed by its slot.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use cachette_core::plugin::{ItemInfo, Prefix, Utc};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use redis::Value;
use redis::cluster_routing::Slot;

use crate::access;
use crate::backend::Inner;
use crate::conn::Conn;
use crate::error::{Fail, Res, endless_scan, unexpected};
use crate::keys::{self, Layout};
use crate::lua;
use crate::manifest::MAX_FIELD_LEN;

/// Keys per `SCAN` page.
pub(crate) const SCAN_COUNT: usize = 1000;
/// Masters scanned at once.
pub(crate) const SCAN_PARALLELISM: usize = 4;

/// The most `SCAN` pages of one target in one scan: some 4,000 times what 10^8 keys take. A
/// scan is refused past it, as when a cursor comes back: a server whose cursors never reach 0
/// would keep a listing (and what it gathers) going for ever.
pub(crate) const MAX_SCAN_PAGES: u64 = 1 << 22;
/// Items per batch of listing probes or deletions.
pub(crate) const BATCH: usize = 256;
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
        let stored = self.stored_access(&mut conn).await?;
        let items = match self.list_with(&mut conn, prefix, stored).await {
            Err(Fail::Redis(e)) if !stored && e.to_string().contains("LFU") => {
                // The server evicts by frequency: it keeps no idle time. Use the time stamps
                // in the records from now on.
                self.switch_to_stored();
                self.list_with(&mut conn, prefix, true).await?
            }
            other => other?,
        };
        Ok(items)
    }

    /// Scans the data keys under `prefix` on every master at once, and probes them in batches
    /// while the scan goes on.
    async fn list_with(
        &self,
        conn: &mut Conn,
        prefix: &Prefix,
        stored: bool,
    ) -> Res<Vec<ItemInfo>> {
        let targets = conn.scan_targets().await?;
        let pattern = self.layout.pattern(prefix);
        let pages = scan(conn, targets, pattern, &self.layout, prefix, Walk::Data);
        let probes = batched(pages, conn.is_cluster())
            .map_ok(|(target, groups)| self.probe(conn, target, groups, stored))
            .try_buffer_unordered(BATCH_PARALLELISM);
        let now = Utc::now();
        let max_size = self.max_item_size();
        let mut items: Vec<ItemInfo> = probes
            .try_fold(Vec::new(), |mut items, probes| async move {
                items.extend(
                    probes
                        .into_iter()
                        .filter_map(|probe| self.item_of(probe, stored, now, max_size)),
                );
                Ok(items)
            })
            .await?;
        // A key may come twice from a scan (a rehash meanwhile).
        items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        items.dedup_by(|a, b| a.key == b.key);
        Ok(items)
    }

    /// What listing says of an item from its probe; `None` for an item gone meanwhile or a key
    /// that holds no item.
    fn item_of(
        &self,
        probe: Probe,
        stored: bool,
        now: cachette_core::plugin::DateTime<Utc>,
        max_size: u64,
    ) -> Option<ItemInfo> {
        let size = match probe.kind {
            1 | 2 => probe
                .size
                .as_deref()
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<u64>().ok())
                // A corrupted manifest is listed, so that it can be deleted, with a size
                // within bounds.
                .map_or(0, |size| size.min(max_size)),
            _ => return None,
        };
        let key = self.layout.key_of(probe.data.as_bytes())?;
        let last_access =
            access::last_access(stored, probe.first.as_deref(), probe.second.as_deref(), now);
        Some(ItemInfo {
            key,
            size,
            last_access,
        })
    }

    /// Runs the listing script on groups of data keys (each of one slot on a cluster): one
    /// script per group; several groups (of the master `target` serves) in one pipeline to it.
    async fn probe(
        &self,
        conn: &Conn,
        target: Option<u16>,
        mut groups: Vec<Vec<String>>,
        stored: bool,
    ) -> Res<Vec<Probe>> {
        let mut conn = conn.clone();
        let target = match target {
            Some(target) if conn.is_cluster() && groups.len() > 1 => target,
            _ => {
                let mut probes = Vec::new();
                for group in groups.drain(..) {
                    let values: Vec<Value> =
                        list_script(&group, stored).query_async(&mut conn).await?;
                    probes.extend(probes_of(group, values)?);
                }
                return Ok(probes);
            }
        };
        let mut pipe = redis::pipe();
        for group in &groups {
            pipe.add_command(list_script(group, stored));
        }
        let answers = match conn.pipeline_to_master(target, &pipe).await {
            Ok(answers) if answers.len() == groups.len() => answers.into_iter().map(Some).collect(),
            Ok(answers) => {
                return Err(unexpected("the listing pipeline", &Value::Array(answers)).into());
            }
            // Refused as a whole (the master is busy, or no longer serves `target`): each
            // script on its own.
            Err(e) if e.code().is_some() => vec![None; groups.len()],
            Err(e) => return Err(e.into()),
        };
        let mut probes = Vec::new();
        for (group, answer) in groups.into_iter().zip(answers) {
            let values = match answer {
                Some(Value::Array(values)) => values,
                // Refused (the slot moved meanwhile, the master is busy) or failed: on its own,
                // routed by its slot, with the retries of every command.
                Some(Value::ServerError(_)) | None => {
                    list_script(&group, stored).query_async(&mut conn).await?
                }
                Some(other) => return Err(unexpected("the listing script", &other).into()),
            };
            probes.extend(probes_of(group, values)?);
        }
        Ok(probes)
    }

    /// Deletes the chunks under `prefix` that writers of this host left when they died before
    /// publishing them (a crash, `kill -9`): chunks whose write id names a process of this host
    /// that is gone and that no manifest names. Chunks of writers of other hosts expire by
    /// themselves after `chunk_grace_secs`. Returns how many chunks were deleted.
    pub(crate) async fn sweep(&self, prefix: &Prefix) -> Res<u64> {
        let mut conn = self.connector.conn().await?;
        let mut writes: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let targets = conn.scan_targets().await?;
        let pattern = self.layout.chunk_pattern(prefix);
        let mut pages = scan(
            &conn,
            targets,
            pattern,
            &self.layout,
            prefix,
            Walk::OwnChunks,
        );
        while let Some((_, page)) = pages.try_next().await? {
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

/// The listing script on a batch of data keys (of one slot on a cluster).
fn list_script(batch: &[String], stored: bool) -> redis::Cmd {
    let mut cmd = lua::eval(lua::LIST, batch);
    cmd.arg(if stored { "1" } else { "0" }).arg(MAX_FIELD_LEN);
    cmd
}

/// The probes of a batch from the answer of its listing script.
fn probes_of(batch: Vec<String>, values: Vec<Value>) -> Res<Vec<Probe>> {
    if values.len() != batch.len() * 4 {
        return Err(unexpected("the listing script", &Value::Array(values)).into());
    }
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or(Value::Nil);
    Ok(batch
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
        .collect())
}

/// A page of keys, and the target of [`Conn::scan_targets`] it was read from.
type Page<K> = (Option<u16>, Vec<K>);

/// What a scan walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// The data keys of the items.
    Data,
    /// The chunks written by processes of this host (see
    /// [`owner_tag`](cachette_core::plugin::owner_tag)).
    OwnChunks,
}

/// The pages of keys of a walk under `prefix`, each with its target: `SCAN` on each target of
/// [`Conn::scan_targets`], [`SCAN_PARALLELISM`] of them at once, keeping the keys that are of
/// the walk and under the prefix.
fn scan<'a>(
    conn: &Conn,
    targets: Vec<Option<u16>>,
    pattern: String,
    layout: &'a Layout,
    prefix: &'a Prefix,
    walk: Walk,
) -> impl Stream<Item = Res<Page<String>>> + Send + 'a {
    let conn = conn.clone();
    let fetch = move |target: Option<u16>, cursor: u64| {
        let (mut conn, pattern) = (conn.clone(), pattern.clone());
        async move { Ok(conn.scan_page(target, cursor, &pattern, SCAN_COUNT).await?) }
    };
    pages(targets, fetch)
        .map_ok(move |(target, found)| {
            let keys = found
                .into_iter()
                .filter_map(|k| String::from_utf8(k).ok())
                .filter(|k| {
                    let key = match walk {
                        Walk::Data => layout.key_of(k.as_bytes()),
                        Walk::OwnChunks => layout.chunk_of(k).map(|(_, key, _)| key),
                    };
                    key.is_some_and(|key| key.starts_with(prefix))
                })
                .collect::<Vec<String>>();
            (target, keys)
        })
        .try_filter(|(_, page)| futures::future::ready(!page.is_empty()))
}

/// The pages of a scan of every target, each with its target: each target's pages one after
/// the other (a `SCAN` cursor is sequential), [`SCAN_PARALLELISM`] targets at once.
/// `fetch(target, cursor)` gives the next cursor (0 at the end) and the keys of a page.
fn pages<F, Fut>(
    targets: Vec<Option<u16>>,
    fetch: F,
) -> impl Stream<Item = Res<Page<Vec<u8>>>> + Send + 'static
where
    F: Fn(Option<u16>, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Res<(u64, Vec<Vec<u8>>)>> + Send + 'static,
{
    stream::iter(targets)
        .map(move |target| -> BoxStream<'static, Res<Page<Vec<u8>>>> {
            let fetch = fetch.clone();
            // The cursors given so far: one given again would start a loop.
            let seen = std::collections::HashSet::new();
            stream::try_unfold((Some(0u64), seen), move |(cursor, mut seen)| {
                let fetch = fetch.clone();
                async move {
                    let Some(cursor) = cursor else {
                        return Ok(None);
                    };
                    if seen.len() as u64 >= MAX_SCAN_PAGES {
                        return Err(endless_scan(&format!(
                            "it takes more than {MAX_SCAN_PAGES} pages"
                        )));
                    }
                    let (next, found) = fetch(target, cursor).await?;
                    if next != 0 && !seen.insert(next) {
                        return Err(endless_scan("it gives a cursor it gave before"));
                    }
                    Ok(Some(((target, found), ((next != 0).then_some(next), seen))))
                }
            })
            .boxed()
        })
        .flatten_unordered(SCAN_PARALLELISM)
}

/// What is probed together: the target of the pages its keys came from, and the keys in
/// groups of one slot on a cluster (one group on a single server).
type Batch = (Option<u16>, Vec<Vec<String>>);

/// Groups the data keys of pages for the listing script, as they come: in batches of
/// [`BATCH`] on a single server; by slot on a cluster, a slot's batch going once it is full,
/// and at the end the slots' remaining groups packed, per target, into batches of at most
/// [`BATCH`] keys.
fn batched<'a>(
    pages: impl Stream<Item = Res<Page<String>>> + Send + 'a,
    cluster: bool,
) -> impl Stream<Item = Res<Batch>> + Send + 'a {
    let mut pending: Vec<String> = Vec::new();
    let mut by_slot: HashMap<Slot, (Option<u16>, Vec<String>)> = HashMap::new();
    pages
        .map(Some)
        .chain(stream::once(async { None }))
        .flat_map(move |page| {
            let mut out: Vec<Res<Batch>> = Vec::new();
            match page {
                Some(Err(e)) => out.push(Err(e)),
                Some(Ok((target, keys))) if !cluster => {
                    pending.extend(keys);
                    while pending.len() >= BATCH {
                        let rest = pending.split_off(BATCH);
                        out.push(Ok((target, vec![std::mem::replace(&mut pending, rest)])));
                    }
                }
                Some(Ok((target, keys))) => {
                    for key in keys {
                        let (_, batch) = by_slot
                            .entry(Slot::for_key(&key))
                            .or_insert_with(|| (target, Vec::new()));
                        batch.push(key);
                        if batch.len() >= BATCH {
                            out.push(Ok((target, vec![std::mem::take(batch)])));
                        }
                    }
                }
                None => {
                    if !pending.is_empty() {
                        out.push(Ok((None, vec![std::mem::take(&mut pending)])));
                    }
                    let mut per_target: HashMap<Option<u16>, Vec<Vec<String>>> = HashMap::new();
                    for (_, (target, group)) in by_slot.drain() {
                        if !group.is_empty() {
                            per_target.entry(target).or_default().push(group);
                        }
                    }
                    for (target, groups) in per_target {
                        let (mut unit, mut keys) = (Vec::new(), 0);
                        for group in groups {
                            if keys + group.len() > BATCH && !unit.is_empty() {
                                out.push(Ok((target, std::mem::take(&mut unit))));
                                keys = 0;
                            }
                            keys += group.len();
                            unit.push(group);
                        }
                        if !unit.is_empty() {
                            out.push(Ok((target, unit)));
                        }
                    }
                }
            }
            stream::iter(out)
        })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    /// The masters of a cluster are scanned at once, [`SCAN_PARALLELISM`] of them, each
    /// cursor to its end.
    #[test]
    fn masters_are_scanned_concurrently() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (now, top) = (in_flight.clone(), most.clone());
        let fetch = move |target: Option<u16>, cursor: u64| {
            let (now, top) = (now.clone(), top.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                top.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                let key = format!("{}-{cursor}", target.unwrap_or(0)).into_bytes();
                Ok((if cursor < 2 { cursor + 1 } else { 0 }, vec![key]))
            }
        };
        let targets: Vec<Option<u16>> = (0..6).map(Some).collect();
        let started = Instant::now();
        let mut keys: Vec<Vec<u8>> = rt
            .block_on(
                pages(targets, fetch)
                    .map_ok(|(target, keys)| {
                        // Each page comes with the target it was read from.
                        let tag = format!("{}-", target.unwrap_or(0)).into_bytes();
                        assert!(keys.iter().all(|k| k.starts_with(&tag)), "{keys:?}");
                        keys
                    })
                    .try_concat(),
            )
            .unwrap();
        let took = started.elapsed();
        keys.sort();
        let expected: Vec<Vec<u8>> = (0..6)
            .flat_map(|t| (0..3).map(move |c| format!("{t}-{c}").into_bytes()))
            .collect();
        assert_eq!(keys, expected);
        assert_eq!(most.load(Ordering::SeqCst), SCAN_PARALLELISM);
        // 18 pages of 30 ms one after the other would take 540 ms; at most 4 at once, 180 ms.
        assert!(took < Duration::from_millis(450), "{took:?}");
    }

    /// A server whose cursor comes back (the same one, or a cycle of a few) made a scan, and
    /// the listing or sweep gathering its keys, go on for ever: it fails after the cycle.
    #[test]
    fn a_cursor_given_again_ends_the_scan_with_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for cycle in [1u64, 3] {
            let pages_asked = std::sync::Arc::new(AtomicUsize::new(0));
            let asked = pages_asked.clone();
            let fetch = move |_: Option<u16>, cursor: u64| {
                asked.fetch_add(1, Ordering::SeqCst);
                async move { Ok((cursor % cycle + 7, vec![b"k".to_vec()])) }
            };
            let result = rt.block_on(
                pages(vec![None], fetch)
                    .map_ok(|(_, keys)| keys)
                    .try_concat(),
            );
            let err = match result {
                Err(Fail::Backend(err)) => err,
                other => panic!("cycle {cycle}: {other:?}"),
            };
            assert!(err.to_string().contains("cursor it gave before"), "{err}");
            assert!(!err.is_temporary());
            assert!(pages_asked.load(Ordering::SeqCst) <= cycle as usize + 2);
        }
    }

    #[test]
    fn a_failed_page_fails_the_scan() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let fetch = |target: Option<u16>, cursor: u64| async move {
            if target == Some(1) && cursor == 1 {
                return Err(crate::error::kept_changing());
            }
            Ok((if cursor < 2 { cursor + 1 } else { 0 }, vec![b"k".to_vec()]))
        };
        let result = rt.block_on(
            pages(vec![Some(0), Some(1)], fetch)
                .map_ok(|(_, keys)| keys)
                .try_concat(),
        );
        assert!(result.is_err());
    }

    fn run_batched(cluster: bool, pages_of_keys: Vec<Page<String>>) -> Vec<Batch> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pages = stream::iter(pages_of_keys.into_iter().map(Ok));
        rt.block_on(batched(pages, cluster).try_collect()).unwrap()
    }

    #[test]
    fn single_servers_batch_pages_as_they_come() {
        let keys: Vec<String> = (0..600).map(|i| format!("ns:k{i}")).collect();
        let pages = keys.chunks(250).map(|c| (None, c.to_vec())).collect();
        let batches = run_batched(false, pages);
        let sizes: Vec<Vec<usize>> = batches
            .iter()
            .map(|(_, groups)| groups.iter().map(Vec::len).collect())
            .collect();
        assert_eq!(sizes, [[BATCH], [BATCH], [600 - 2 * BATCH]]);
        let all: Vec<String> = batches.into_iter().flat_map(|(_, g)| g.concat()).collect();
        assert_eq!(all, keys);
    }

    #[test]
    fn cluster_batches_group_slots_and_pack_the_rest_per_master() {
        // Keys of three slots (hash tags), interleaved over the pages of one master, plus
        // many lone slots on two masters.
        let mut pages = Vec::new();
        let mut keys: Vec<String> = (0..BATCH * 3 + 10)
            .map(|i| format!("{{tag{}}}:k{i}", i % 3))
            .collect();
        for page in keys.chunks(100) {
            pages.push((Some(0), page.to_vec()));
        }
        for target in [1, 2] {
            let lone: Vec<String> = (0..300).map(|i| format!("lone{target}-{i}")).collect();
            keys.extend(lone.clone());
            pages.push((Some(target), lone));
        }
        let batches = run_batched(true, pages);
        for (target, groups) in &batches {
            assert!(!groups.is_empty());
            assert!(groups.iter().map(Vec::len).sum::<usize>() <= BATCH);
            for group in groups {
                assert!(!group.is_empty());
                let slot = Slot::for_key(&group[0]);
                assert!(group.iter().all(|k| Slot::for_key(k) == slot), "{group:?}");
                let tagged = group[0].starts_with('{');
                assert_eq!(tagged, *target == Some(0), "{group:?}");
            }
        }
        // The three full slots' batches, their rests in one batch, and about 300 lone keys of
        // each of two masters in two batches each (a few slots hold two of them).
        let full = batches
            .iter()
            .filter(|(_, g)| g.len() == 1 && g[0].len() == BATCH);
        assert_eq!(full.count(), 3);
        assert!(batches.len() <= 3 + 1 + 2 * 2, "{}", batches.len());
        let mut all: Vec<String> = batches.into_iter().flat_map(|(_, g)| g.concat()).collect();
        all.sort();
        keys.sort();
        assert_eq!(all, keys, "every key once");
    }
}
