//! Listing a prefix with many requests at once, and bounding what a listing costs.
//!
//! A listing of S3 is a sequence of pages of 1000 objects, each request waiting for the
//! previous one's continuation token: 10^8 entries are 10^5 requests in a row. To run them
//! side by side, the key space is cut into ranges listed concurrently, at most
//! `concurrency` requests in flight:
//!
//! 1. The first page of the prefix is listed. If it is the only one, that is the listing (a
//!    small store costs one request, as a sequential listing does).
//! 2. If the prefix holds folders (names with a `/` after the prefix), such as `cachette/`
//!    holding one folder per function, its folders are listed with the delimiter `/`. They are
//!    then listed as one range, from the first folder to the last, without the delimiter;
//!    when that range takes more than one page, the folder its page ends in is listed the same
//!    way as the prefix (step 1), and the folders after it as two ranges, each half of them,
//!    concurrently, each cut again the same way. A large folder thus gets a listing of its
//!    own, and a stranger's thousands of one-object folders cost what a listing of them one
//!    after the other costs (a few times it at most), not one request each.
//! 3. Otherwise (a function's folder, whose entries are named by 32 hex digits), the prefix is
//!    cut by the first character after it: the 16 hex digits are listed as 16 prefixes, and
//!    three ranges listed with `start-after` cover the names starting with anything else
//!    (below `0`, between `9` and `a`, above `f`). With `concurrency` above 16, each hex
//!    prefix that holds more than one page is cut again by its next digit.
//!
//! Every object under the prefix is in exactly one range, whatever its name; the cuts only
//! decide how the work is shared. The ranges assume that listings come in key order (UTF-8
//! binary order), as S3 general purpose buckets, GCS and Azure give them; S3 Express directory
//! buckets do not, and need `list_concurrency = 1`.
//!
//! The store is untrusted: its answers drive these loops, and none may make a listing endless
//! or unbounded. An empty continuation token ends a listing (as object_store's own listings
//! read it); a token the listing already got, or (listing in parallel, where key order is
//! assumed) a page whose names are all at or before those of the pages before it, fails the
//! listing; and a listing fails once it has asked for [`MAX_LISTING_PAGES`] pages or received
//! [`MAX_LISTING_NAMES`] names. Such failures are [`Refused`] errors, which are not temporary.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::{BoxFuture, try_join_all};
use futures::stream::BoxStream;
use futures::{FutureExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta, ObjectStore};
use tokio::sync::Semaphore;

/// The largest character: `start-after` `<p>9\u{10FFFF}` comes after every name starting with
/// `<p>9` but the absurd ones that continue with it (kept out by the range's `skip`).
const LAST_CHAR: char = '\u{10FFFF}';
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Folders below the prefix listed by folder, at most (deeper ones are cut by characters).
const MAX_FOLDER_DEPTH: usize = 4;
/// The most pages one listing asks for: 2^20 (1,048,576), four times what a sequential listing
/// of [`MAX_LISTING_NAMES`] names in pages of 1000 takes, which leaves room for the requests a
/// parallel listing adds.
const MAX_LISTING_PAGES: u64 = 1 << 20;
/// The most names (objects and folders) one listing receives: 2^28 (268,435,456), more than
/// any store a process can hold the listing of in memory.
const MAX_LISTING_NAMES: u64 = 1 << 28;

/// What one listing may cost, at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pages: u64,
    names: u64,
}

const LIMITS: Limits = Limits {
    pages: MAX_LISTING_PAGES,
    names: MAX_LISTING_NAMES,
};

/// Why a listing was given up: the store's answers would make it endless, or larger than any
/// listing this backend makes. Not temporary: the same answers would come again.
#[derive(Debug)]
pub(crate) struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(message: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: "listing",
        source: Box::new(Refused(message.into())),
    }
}

/// The [`Refused`] error `err` is, if it is one.
pub(crate) fn refusal(err: &object_store::Error) -> Option<&Refused> {
    match err {
        object_store::Error::Generic { source, .. } => source.downcast_ref::<Refused>(),
        _ => None,
    }
}

fn too_many_names(most: u64) -> object_store::Error {
    refused(format!(
        "the store's listing gives more than {most} names: given up"
    ))
}

/// How a backend lists: one sequential listing, or many requests at once.
#[derive(Clone)]
pub(crate) struct Lister {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The store's pages, when it gives them: needed to list by character prefixes and
    /// ranges.
    pub(crate) pages: Option<Arc<dyn PaginatedListStore>>,
    /// Listing requests in flight, at most; 1 lists sequentially.
    pub(crate) concurrency: usize,
}

impl Lister {
    /// Every object under `prefix` (`None`: the whole store).
    pub(crate) async fn list(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<Vec<ObjectMeta>> {
        self.list_within(prefix, LIMITS).await
    }

    async fn list_within(
        &self,
        prefix: Option<&Path>,
        limits: Limits,
    ) -> object_store::Result<Vec<ObjectMeta>> {
        let Some(pages) = &self.pages else {
            // object_store's own listing: its pages and tokens are out of sight, and only the
            // names can be counted.
            return at_most(self.store.list(prefix), limits.names).await;
        };
        let run = Run::new(pages, self.concurrency, limits);
        let start = prefix.map(|p| format!("{p}/")).unwrap_or_default();
        if self.concurrency > 1 {
            run.folder(start, 0).await
        } else {
            Ok(run.sequential(&start, false).await?.objects)
        }
    }
}

/// What one listing of the access logs (the hour folders of the log folder, or the logs of one
/// hour) may receive beyond the logs a listing reads: about a million, some 300 logs a second
/// for an hour. A folder holding more is refused, and its listing fails; the bound is what a
/// store that gives names without end can make one listing hold.
const LOG_LISTING_SLACK: u64 = 1 << 20;

/// The limits of one listing of the access logs, which reads at most `max_objects` logs:
/// `max_objects` names and [`LOG_LISTING_SLACK`] more, and a page per name (and one), which an
/// honest listing never exceeds, each of its pages holding a name.
pub(crate) fn log_listing_limits(max_objects: usize) -> Limits {
    let names = (max_objects as u64).saturating_add(LOG_LISTING_SLACK);
    Limits {
        pages: names.saturating_add(1),
        names,
    }
}

/// The objects directly under `prefix` and its folders (`delimiter`), or every object under
/// it, one page after another within `limits`, through the store's pages when it gives them
/// (`pages`): a token given again fails the listing, as in [`Lister::list`]. Without pages,
/// object_store's own listing, bounded by its names only: failing past `limits.names` of them
/// (with the delimiter, once it is done).
pub(crate) async fn list_one(
    store: &dyn ObjectStore,
    pages: Option<&Arc<dyn PaginatedListStore>>,
    prefix: &Path,
    delimiter: bool,
    limits: Limits,
) -> object_store::Result<ListResult> {
    let Some(pages) = pages else {
        if delimiter {
            let listed = store.list_with_delimiter(Some(prefix)).await?;
            let names = (listed.objects.len() + listed.common_prefixes.len()) as u64;
            if names > limits.names {
                return Err(too_many_names(limits.names));
            }
            return Ok(listed);
        }
        return Ok(ListResult {
            common_prefixes: Vec::new(),
            objects: at_most(store.list(Some(prefix)), limits.names).await?,
            extensions: Default::default(),
        });
    };
    Run::new(pages, 1, limits)
        .sequential(&format!("{prefix}/"), delimiter)
        .await
}

/// The objects of `listing`, failing past `most` of them.
async fn at_most(
    mut listing: BoxStream<'_, object_store::Result<ObjectMeta>>,
    most: u64,
) -> object_store::Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    while let Some(meta) = listing.try_next().await? {
        if out.len() as u64 >= most {
            return Err(too_many_names(most));
        }
        out.push(meta);
    }
    Ok(out)
}

/// One listing through the store's pages.
struct Run {
    pages: Arc<dyn PaginatedListStore>,
    permits: Semaphore,
    /// How many characters a range of names may be cut by.
    split_levels: usize,
    limits: Limits,
    pages_asked: AtomicU64,
    names_received: AtomicU64,
}

/// A name's part after `prefix` (all of it if it does not start with it).
fn after<'a>(meta: &'a ObjectMeta, prefix: &str) -> &'a str {
    let name = meta.location.as_ref();
    name.strip_prefix(prefix).unwrap_or(name)
}

/// The largest name of a page: of its objects, and of its folders as S3 names them (with
/// their `/`, which object_store drops, and which puts a folder `<a>/` after an object `<a>!`).
fn highest(page: &PaginatedListResult) -> Option<String> {
    let objects = page
        .result
        .objects
        .iter()
        .map(|meta| meta.location.as_ref());
    let object = objects.max().map(str::to_owned);
    let folders = page.result.common_prefixes.iter().map(|p| format!("{p}/"));
    object.into_iter().chain(folders).max()
}

/// The pages of one listing request after another, by their continuation tokens: each must
/// take the listing forward.
struct Pager {
    /// Whether the store lists in key order: each page must then hold a name past those of
    /// the pages before it.
    ordered: bool,
    /// The tokens received, by their hashes.
    tokens: HashSet<u64>,
    hasher: RandomState,
    /// The largest name received.
    highest: Option<String>,
}

impl Pager {
    fn new(ordered: bool) -> Pager {
        Pager {
            ordered,
            tokens: HashSet::new(),
            hasher: RandomState::new(),
            highest: None,
        }
    }

    /// The token of the page after `page`: `None` if `page` is the last one.
    fn next(&mut self, page: &PaginatedListResult) -> object_store::Result<Option<String>> {
        let Some(token) = &page.page_token else {
            return Ok(None);
        };
        if !self.tokens.insert(self.hasher.hash_one(token)) {
            return Err(refused(
                "the store's listing does not end: it gives a continuation token it gave before",
            ));
        }
        if self.ordered
            && let Some(highest) = highest(page)
        {
            if self
                .highest
                .as_deref()
                .is_some_and(|before| highest.as_str() <= before)
            {
                return Err(refused(
                    "the store's listing does not move forward: a page holds no name past those \
                     of the pages before it (a parallel listing needs listings in key order; \
                     S3 Express directory buckets need list_concurrency = 1)",
                ));
            }
            self.highest = Some(highest);
        }
        Ok(Some(token.clone()))
    }
}

/// The folders of a folder, as its listing with the delimiter `/` gave them.
struct Level {
    /// The folder (ending with `/`, or empty for the whole store).
    parent: String,
    /// Its folders, sorted, each ending with `/`.
    folders: Vec<String>,
    /// By folder: whether `parent` also holds an object named as the folder without its `/`.
    /// A listing without the delimiter cannot tell that object from the folder's own object of
    /// the same name (the S3 key `<folder>/`, which object_store names without its `/`), and
    /// leaves it to the listing of `parent`'s own objects.
    shadowed: Vec<bool>,
}

impl Level {
    /// The folder that holds `name`, if it is one of these.
    fn owner(&self, name: &str) -> Option<usize> {
        let rest = name.strip_prefix(self.parent.as_str())?;
        match rest.find('/') {
            Some(slash) => self.find(&name[..self.parent.len() + slash + 1]),
            None => {
                let folder = self.find(&format!("{name}/"))?;
                (!self.shadowed[folder]).then_some(folder)
            }
        }
    }

    fn find(&self, folder: &str) -> Option<usize> {
        self.folders
            .binary_search_by(|f| f.as_str().cmp(folder))
            .ok()
    }
}

impl Run {
    /// A listing through `pages`, with up to `concurrency` requests at once, within `limits`.
    fn new(pages: &Arc<dyn PaginatedListStore>, concurrency: usize, limits: Limits) -> Run {
        Run {
            pages: Arc::clone(pages),
            permits: Semaphore::new(concurrency),
            split_levels: if concurrency > HEX.len() { 2 } else { 1 },
            limits,
            pages_asked: AtomicU64::new(0),
            names_received: AtomicU64::new(0),
        }
    }

    /// One page: objects whose name starts with `prefix` (a string prefix, not only whole
    /// segments), after `offset`. Counted against the listing's [`Limits`]; an empty token is
    /// none.
    async fn page(
        &self,
        prefix: &str,
        delimiter: bool,
        offset: Option<&str>,
        token: Option<String>,
    ) -> object_store::Result<PaginatedListResult> {
        let most = self.limits.pages;
        if self.pages_asked.fetch_add(1, Ordering::Relaxed) >= most {
            return Err(refused(format!(
                "the store's listing takes more than {most} requests: given up"
            )));
        }
        let mut page = {
            let _permit = self.permits.acquire().await.expect("never closed");
            let options = PaginatedListOptions {
                offset: offset.map(str::to_owned),
                delimiter: delimiter.then_some("/".into()),
                page_token: token,
                ..PaginatedListOptions::default()
            };
            let prefix = (!prefix.is_empty()).then_some(prefix);
            self.pages.list_paginated(prefix, options).await?
        };
        let names = (page.result.objects.len() + page.result.common_prefixes.len()) as u64;
        let received = self.names_received.fetch_add(names, Ordering::Relaxed);
        if received.saturating_add(names) > self.limits.names {
            return Err(too_many_names(self.limits.names));
        }
        if page.page_token.as_deref() == Some("") {
            page.page_token = None;
        }
        Ok(page)
    }

    /// Everything under `prefix` (with `delimiter`: the objects directly under it and its
    /// folders), one page after another.
    async fn sequential(&self, prefix: &str, delimiter: bool) -> object_store::Result<ListResult> {
        let mut out = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        // S3 Express directory buckets do not list in key order.
        let mut pager = Pager::new(false);
        let mut token = None;
        loop {
            let page = self.page(prefix, delimiter, None, token).await?;
            token = pager.next(&page)?;
            out.objects.extend(page.result.objects);
            out.common_prefixes.extend(page.result.common_prefixes);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Everything under `folder` (a prefix ending with `/`, or empty for the whole store).
    fn folder(
        &self,
        folder: String,
        depth: usize,
    ) -> BoxFuture<'_, object_store::Result<Vec<ObjectMeta>>> {
        async move {
            let first = self.page(&folder, false, None, None).await?;
            if first.page_token.is_none() {
                return Ok(first.result.objects);
            }
            let nested = first
                .result
                .objects
                .iter()
                .any(|meta| after(meta, &folder).contains('/'));
            if !nested || depth >= MAX_FOLDER_DEPTH {
                return self.split(folder, first.result.objects, 0).await;
            }
            // Its own objects, and its folders.
            let mut out = Vec::new();
            let mut folders = Vec::new();
            let mut pager = Pager::new(true);
            let mut token = None;
            loop {
                let page = self.page(&folder, true, None, token).await?;
                token = pager.next(&page)?;
                out.extend(page.result.objects);
                // Folders of this one only, one segment below it.
                let within = |sub: &String| {
                    sub.strip_prefix(folder.as_str()).is_some_and(|rest| {
                        rest.len() > 1 && rest.find('/') == Some(rest.len() - 1)
                    })
                };
                let subs = page.result.common_prefixes.into_iter();
                folders.extend(subs.map(|sub| format!("{sub}/")).filter(within));
                if token.is_none() {
                    break;
                }
            }
            folders.sort_unstable();
            folders.dedup();
            let shadowed = {
                let own: HashSet<&str> = out.iter().map(|meta| meta.location.as_ref()).collect();
                folders
                    .iter()
                    .map(|f| own.contains(&f[..f.len() - 1]))
                    .collect()
            };
            let count = folders.len();
            let level = Arc::new(Level {
                parent: folder,
                folders,
                shadowed,
            });
            out.extend(self.folders(level, 0..count, depth + 1).await?);
            Ok(out)
        }
        .boxed()
    }

    /// Everything under the folders `range` of `level`: one folder is listed as a folder,
    /// more as a [`group`](Self::group).
    fn folders(
        &self,
        level: Arc<Level>,
        range: Range<usize>,
        depth: usize,
    ) -> BoxFuture<'_, object_store::Result<Vec<ObjectMeta>>> {
        match range.len() {
            0 => futures::future::ready(Ok(Vec::new())).boxed(),
            1 => self.folder(level.folders[range.start].clone(), depth),
            _ => self.group(level, range, depth),
        }
    }

    /// Everything under the folders `range` of `level` (two or more), listed as one range of
    /// names until a page stops within it: the folders before the one that page ends in are
    /// then done, that one is listed as a folder, and the folders after it as two halves (see
    /// the module docs). Each page that stops within the range thus splits it; a range of
    /// small folders costs what listing them one after the other costs, give or take a page
    /// per split.
    fn group(
        &self,
        level: Arc<Level>,
        range: Range<usize>,
        depth: usize,
    ) -> BoxFuture<'_, object_store::Result<Vec<ObjectMeta>>> {
        async move {
            let first = &level.folders[range.start];
            // Before every name of the first folder `<name>/`, and after the names of the
            // folders before it but those starting with `<name>.\u{10FFFF}`.
            let offset = format!("{}.{LAST_CHAR}", &first[..first.len() - 1]);
            // Names from there on are another range's.
            let end = level.folders.get(range.end);
            let mut mine: Vec<(usize, ObjectMeta)> = Vec::new();
            let mut pager = Pager::new(true);
            let mut token = None;
            loop {
                let page = self
                    .page(&level.parent, false, Some(&offset), token)
                    .await?;
                token = pager.next(&page)?;
                let last = highest(&page);
                let mut past_the_end = false;
                for meta in page.result.objects {
                    let name = meta.location.as_ref();
                    if end.is_some_and(|end| name >= end.as_str()) {
                        past_the_end = true;
                        continue;
                    }
                    // The parent's own objects between its folders were listed with them.
                    if let Some(folder) = level.owner(name).filter(|f| range.contains(f)) {
                        mine.push((folder, meta));
                    }
                }
                if token.is_none() || past_the_end {
                    return Ok(mine.into_iter().map(|(_, meta)| meta).collect());
                }
                let Some(last) = last else {
                    continue;
                };
                // The folders that start at or before the page's last name.
                let reached = range.start
                    + level.folders[range.clone()].partition_point(|f| f.as_str() <= last.as_str());
                if reached == range.start {
                    // Not yet at the first folder.
                    continue;
                }
                // The folder the page ends in goes on after it; those before it are done.
                let partial = level.owner(&last) == Some(reached - 1);
                let done = if partial { reached - 1 } else { reached };
                let mut out: Vec<ObjectMeta> = mine
                    .into_iter()
                    .filter(|(folder, _)| *folder < done)
                    .map(|(_, meta)| meta)
                    .collect();
                let mut rest = Vec::new();
                let mut from = done;
                if partial {
                    rest.push(self.folder(level.folders[done].clone(), depth));
                    from += 1;
                }
                let middle = from + (range.end - from) / 2;
                rest.push(self.folders(Arc::clone(&level), from..middle, depth));
                rest.push(self.folders(Arc::clone(&level), middle..range.end, depth));
                for objects in try_join_all(rest).await? {
                    out.extend(objects);
                }
                return Ok(out);
            }
        }
        .boxed()
    }
    /// Everything whose name starts with `prefix`, known to take more than one page, `first`
    /// being its first page: cut by the next character (see the module docs).
    fn split(
        &self,
        prefix: String,
        first: Vec<ObjectMeta>,
        level: usize,
    ) -> BoxFuture<'_, object_store::Result<Vec<ObjectMeta>>> {
        async move {
            let below = format!("{prefix}0");
            let last = first
                .iter()
                .map(|meta| meta.location.as_ref().to_owned())
                .max()
                .unwrap_or_default();
            // Names below `<prefix>0` are at the start of the first page, or follow it.
            let mut out: Vec<ObjectMeta> = first
                .into_iter()
                .filter(|meta| meta.location.as_ref() < below.as_str())
                .collect();
            let mut ranges: Vec<BoxFuture<'_, object_store::Result<Vec<ObjectMeta>>>> = Vec::new();
            if last < below {
                ranges.push(self.range(prefix.clone(), Some(last), Some(below), None));
            }
            for digit in HEX {
                let sub = format!("{prefix}{}", *digit as char);
                ranges.push(if level + 1 < self.split_levels {
                    self.cut(sub, level + 1)
                } else {
                    self.range(sub, None, None, None)
                });
            }
            // Between `9` and `a`, and above `f`.
            ranges.push(self.range(
                prefix.clone(),
                Some(format!("{prefix}9{LAST_CHAR}")),
                Some(format!("{prefix}a")),
                Some(format!("{prefix}9")),
            ));
            ranges.push(self.range(
                prefix.clone(),
                Some(format!("{prefix}f{LAST_CHAR}")),
                None,
                Some(format!("{prefix}f")),
            ));
            for objects in try_join_all(ranges).await? {
                out.extend(objects);
            }
            Ok(out)
        }
        .boxed()
    }

    /// Everything whose name starts with `prefix`: its first page, then, when there is more,
    /// cut again by the next character.
    fn cut(
        &self,
        prefix: String,
        level: usize,
    ) -> BoxFuture<'_, object_store::Result<Vec<ObjectMeta>>> {
        async move {
            let first = self.page(&prefix, false, None, None).await?;
            if first.page_token.is_none() {
                return Ok(first.result.objects);
            }
            self.split(prefix, first.result.objects, level).await
        }
        .boxed()
    }

    /// The names starting with `prefix`, after `start` and below `end`, but those starting
    /// with `skip`: one page after another.
    fn range(
        &self,
        prefix: String,
        start: Option<String>,
        end: Option<String>,
        skip: Option<String>,
    ) -> BoxFuture<'_, object_store::Result<Vec<ObjectMeta>>> {
        async move {
            let mut out = Vec::new();
            let mut pager = Pager::new(true);
            let mut token = None;
            loop {
                let page = self.page(&prefix, false, start.as_deref(), token).await?;
                token = pager.next(&page)?;
                let mut past_the_end = false;
                for meta in page.result.objects {
                    let name = meta.location.as_ref();
                    if end.as_deref().is_some_and(|end| name >= end) {
                        past_the_end = true;
                        continue;
                    }
                    if skip.as_deref().is_some_and(|skip| name.starts_with(skip)) {
                        continue;
                    }
                    out.push(meta);
                }
                if past_the_end || token.is_none() {
                    return Ok(out);
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    /// A store whose listings never end: each page holds `per_page` names past those of the
    /// page before, and a new token.
    #[derive(Debug, Default)]
    struct Endless {
        per_page: usize,
        requests: AtomicUsize,
    }

    #[cachette_core::plugin::async_trait]
    impl PaginatedListStore for Endless {
        async fn list_paginated(
            &self,
            prefix: Option<&str>,
            _: PaginatedListOptions,
        ) -> object_store::Result<PaginatedListResult> {
            let n = self.requests.fetch_add(1, Ordering::SeqCst);
            let objects = (0..self.per_page)
                .map(|i| ObjectMeta {
                    location: Path::from(format!("{}{n:08}-{i:04}", prefix.unwrap_or_default())),
                    last_modified: Default::default(),
                    size: 1,
                    e_tag: None,
                    version: None,
                })
                .collect();
            Ok(PaginatedListResult {
                result: ListResult {
                    common_prefixes: Vec::new(),
                    objects,
                    extensions: Default::default(),
                },
                page_token: Some(format!("t{n}")),
            })
        }
    }

    fn lister(pages: Arc<Endless>, concurrency: usize) -> Lister {
        Lister {
            store: Arc::new(InMemory::new()),
            pages: Some(pages),
            concurrency,
        }
    }

    /// Pages that move forward, with new tokens, forever: the listing gives up at its limits,
    /// having asked no more pages than they allow.
    #[tokio::test]
    async fn an_endless_listing_ends_at_its_limits() {
        for concurrency in [1, 16, 64] {
            for per_page in [0, 1] {
                let pages = Arc::new(Endless {
                    per_page,
                    ..Endless::default()
                });
                let limits = Limits {
                    pages: 50,
                    names: 1000,
                };
                let err = lister(Arc::clone(&pages), concurrency)
                    .list_within(None, limits)
                    .await
                    .expect_err("an endless listing");
                assert!(refusal(&err).is_some(), "{err}");
                assert!(err.to_string().contains("more than 50 requests"), "{err}");
                let asked = pages.requests.load(Ordering::SeqCst);
                assert!(asked <= 50, "{concurrency}: {asked} requests");
            }
            let pages = Arc::new(Endless {
                per_page: 10,
                ..Endless::default()
            });
            let limits = Limits {
                pages: 1000,
                names: 95,
            };
            let err = lister(Arc::clone(&pages), concurrency)
                .list_within(None, limits)
                .await
                .expect_err("an endless listing");
            assert!(err.to_string().contains("more than 95 names"), "{err}");
            assert!(pages.requests.load(Ordering::SeqCst) <= 10 + concurrency);
        }
    }

    /// A store listed through object_store's own listing (no pages) is bounded by its names.
    #[tokio::test]
    async fn a_listing_without_pages_ends_at_its_names() {
        let store = Arc::new(InMemory::new());
        for i in 0..20 {
            let path = Path::from(format!("p/{i:02}"));
            store
                .put(&path, PutPayload::from_static(b"v"))
                .await
                .unwrap();
        }
        let lister = Lister {
            store,
            pages: None,
            concurrency: 16,
        };
        let limits = |names| Limits { pages: 1, names };
        assert_eq!(
            lister.list_within(None, limits(20)).await.unwrap().len(),
            20
        );
        let err = lister.list_within(None, limits(19)).await.unwrap_err();
        assert!(refusal(&err).is_some(), "{err}");
    }
}
