//! An in-memory object store that lists in pages, in key order, as S3 does, and counts its
//! listing requests: the store of the listing tests.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette_s3::object_store::list::{
    PaginatedListOptions, PaginatedListResult, PaginatedListStore,
};
use cachette_s3::object_store::memory::InMemory;
use cachette_s3::object_store::path::Path;
use cachette_s3::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

/// An in-memory store that lists in pages of `page` names, in key order, as S3 does, and counts
/// its listing requests (those of [`ObjectStore::list`] too, by the pages S3 would give) and
/// the most in flight at once.
#[derive(Debug)]
pub(crate) struct Paged {
    pub(crate) inner: InMemory,
    pub(crate) page: usize,
    pub(crate) requests: Arc<AtomicUsize>,
    in_flight: AtomicUsize,
    pub(crate) most_in_flight: AtomicUsize,
}

impl Paged {
    pub(crate) fn new(page: usize) -> Self {
        Paged {
            inner: InMemory::new(),
            page,
            requests: Arc::new(AtomicUsize::new(0)),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        }
    }
}

impl fmt::Display for Paged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Paged({})", self.page)
    }
}

#[cachette_core::plugin::async_trait]
impl ObjectStore for Paged {
    async fn put_opts(&self, p: &Path, v: PutPayload, o: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(p, v, o).await
    }
    async fn put_multipart_opts(
        &self,
        p: &Path,
        o: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(p, o).await
    }
    async fn get_opts(&self, p: &Path, o: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(p, o).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // Counted as the pages of S3's listing, one at least.
        let (listing, page, requests) = (
            self.inner.list(prefix),
            self.page,
            Arc::clone(&self.requests),
        );
        futures::stream::once(async move {
            let all: Vec<ObjectMeta> = listing.try_collect().await?;
            requests.fetch_add(all.len().div_ceil(page).max(1), Ordering::SeqCst);
            Ok::<_, cachette_s3::object_store::Error>(futures::stream::iter(
                all.into_iter().map(Ok),
            ))
        })
        .try_flatten()
        .boxed()
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, o).await
    }
}

#[cachette_core::plugin::async_trait]
impl PaginatedListStore for Paged {
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: PaginatedListOptions,
    ) -> Result<PaginatedListResult> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        // A store of larger pages is slower to answer; small pages only let other tasks run.
        if self.page >= 10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
        let prefix = prefix.unwrap_or("");
        let mut all: Vec<ObjectMeta> = self.inner.list(None).try_collect().await?;
        all.retain(|m| m.location.as_ref().starts_with(prefix));
        all.sort_by(|a, b| a.location.cmp(&b.location));
        // Names (objects and common prefixes) in order, after the token or offset.
        let after = opts.page_token.clone().or(opts.offset.clone());
        let mut names: Vec<(String, Option<ObjectMeta>)> = Vec::new();
        for meta in all {
            let name = meta.location.as_ref().to_owned();
            let rest = &name[prefix.len()..];
            let entry = match (&opts.delimiter, rest.find('/')) {
                // A folder as S3 names it, with its `/` (and its token too).
                (Some(_), Some(slash)) => (name[..prefix.len() + slash + 1].to_owned(), None),
                _ => (name.clone(), Some(meta)),
            };
            if names
                .last()
                .is_some_and(|(n, m)| m.is_none() && *n == entry.0)
            {
                continue;
            }
            names.push(entry);
        }
        names.retain(|(n, _)| after.as_deref().is_none_or(|a| n.as_str() > a));
        let more = names.len() > self.page;
        names.truncate(self.page);
        let token = more.then(|| names.last().unwrap().0.clone());
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        for (name, meta) in names {
            match meta {
                Some(meta) => result.objects.push(meta),
                None => result
                    .common_prefixes
                    .push(Path::parse(&name[..name.len() - 1]).unwrap()),
            }
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(PaginatedListResult {
            result,
            page_token: token,
        })
    }
}
