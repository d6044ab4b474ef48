//! Listing a prefix with many requests at once.
//!
//! A listing of S3 is a sequence of pages of 1000 objects, each request waiting for the
//! previous one's continuation token: 10^8 entries are 10^5 requests in a row. To run them
//! side by side, the key space is cut into ranges listed concurrently, at most
//! `concurrency` requests in flight:
//!
//! 1. The first page of the prefix is listed. If it is the only one, that is the listing (a
//!    small store costs one request, as a sequential listing does).
//! 2. If the prefix holds folders (names with a `/` after the prefix), such as `cachette/`
//!    holding one folder per function, its folders are listed with the delimiter `/`, and each
//!    folder is listed the same way, concurrently.
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

use std::sync::Arc;

use futures::future::{BoxFuture, try_join_all};
use futures::{FutureExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use tokio::sync::Semaphore;

/// The largest character: `start-after` `<p>9\u{10FFFF}` comes after every name starting with
/// `<p>9` but the absurd ones that continue with it (kept out by the range's `skip`).
const LAST_CHAR: char = '\u{10FFFF}';
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Folders below the prefix listed by folder, at most (deeper ones are cut by characters).
const MAX_FOLDER_DEPTH: usize = 4;

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
        match &self.pages {
            Some(pages) if self.concurrency > 1 => {
                let run = Parallel {
                    pages: Arc::clone(pages),
                    permits: Semaphore::new(self.concurrency),
                    split_levels: if self.concurrency > HEX.len() { 2 } else { 1 },
                };
                let start = prefix.map(|p| format!("{p}/")).unwrap_or_default();
                run.folder(start, 0).await
            }
            _ => self.store.list(prefix).try_collect().await,
        }
    }
}

struct Parallel {
    pages: Arc<dyn PaginatedListStore>,
    permits: Semaphore,
    /// How many characters a range of names may be cut by.
    split_levels: usize,
}

/// A name's part after `prefix` (all of it if it does not start with it).
fn after<'a>(meta: &'a ObjectMeta, prefix: &str) -> &'a str {
    let name = meta.location.as_ref();
    name.strip_prefix(prefix).unwrap_or(name)
}

impl Parallel {
    /// One page: objects whose name starts with `prefix` (a string prefix, not only whole
    /// segments), after `offset`.
    async fn page(
        &self,
        prefix: &str,
        delimiter: bool,
        offset: Option<&str>,
        token: Option<String>,
    ) -> object_store::Result<PaginatedListResult> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let options = PaginatedListOptions {
            offset: offset.map(str::to_owned),
            delimiter: delimiter.then_some("/".into()),
            page_token: token,
            ..PaginatedListOptions::default()
        };
        let prefix = (!prefix.is_empty()).then_some(prefix);
        self.pages.list_paginated(prefix, options).await
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
            // Its own objects, and its folders listed concurrently.
            let mut out = Vec::new();
            let mut folders = Vec::new();
            let mut token = None;
            loop {
                let page = self.page(&folder, true, None, token).await?;
                out.extend(page.result.objects);
                folders.extend(page.result.common_prefixes);
                token = page.page_token;
                if token.is_none() {
                    break;
                }
            }
            let inner = folders
                .into_iter()
                .map(|sub| self.folder(format!("{sub}/"), depth + 1));
            for objects in try_join_all(inner).await? {
                out.extend(objects);
            }
            Ok(out)
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
            let mut token = None;
            loop {
                let page = self.page(&prefix, false, start.as_deref(), token).await?;
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
                token = page.page_token;
                if past_the_end || token.is_none() {
                    return Ok(out);
                }
            }
        }
        .boxed()
    }
}
