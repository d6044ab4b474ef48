//! Reads (`get_opts`): a `HEAD`, a ranged `GET` or a whole `GET`, each one request (plus a
//! `HEAD` when the server refuses a range that starts past the end). A read that asks to
//! record its access adds its key to this process's next access log, in memory.

use std::ops::Range;

use cachette_core::plugin::{
    BackendError, BackendResult, Bytes, ErrorKind, GetOptions, GetResult, Key, buffer_for,
    fits_in_memory,
};
use futures::StreamExt as _;
use object_store::path::Path;
use object_store::{GetRange, ObjectStoreExt};

use super::S3Backend;
use crate::error::is_absent;

impl S3Backend {
    /// [`StoreBackend::get_opts`](cachette_core::plugin::StoreBackend::get_opts).
    pub(super) async fn read(
        &self,
        key: &Key,
        options: GetOptions,
    ) -> BackendResult<Option<GetResult>> {
        let found = if options.head {
            self.read_head(key).await?
        } else if let Some(range) = options.range {
            self.read_range(key, range).await?
        } else {
            self.read_whole(key).await?
        };
        if options.record_access
            && found.is_some()
            && let Some(tracker) = &self.tracker
        {
            tracker.record(key);
        }
        Ok(found)
    }

    /// The size of the item, from one `HEAD` request.
    async fn read_head(&self, key: &Key) -> BackendResult<Option<GetResult>> {
        let path = self.path("head", key)?;
        self.size_of("head", key, &path)
            .await
            .map(|size| size.map(GetResult::head))
    }

    /// The object's size, or `None` if it does not exist. A `HEAD` answer has no body, so a
    /// missing bucket looks like a missing object here.
    async fn size_of(
        &self,
        operation: &'static str,
        key: &Key,
        path: &Path,
    ) -> BackendResult<Option<u64>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(operation, key.as_str(), e)),
        }
    }

    /// The whole item, from one `GET`.
    async fn read_whole(&self, key: &Key) -> BackendResult<Option<GetResult>> {
        let path = self.path("get", key)?;
        let read = match self
            .store
            .get_opts(&path, object_store::GetOptions::default())
            .await
        {
            Ok(found) => collect(found).await,
            Err(e) => Err(Collect::Store(e)),
        };
        let fail = |kind, message: String| {
            BackendError::new(kind, message)
                .with_backend(self.scheme)
                .with_operation("get")
                .with_key(key)
        };
        match read {
            Ok(bytes) => Ok(Some(GetResult::whole(bytes))),
            Err(Collect::Store(e)) if is_absent(&e) => Ok(None),
            Err(Collect::Store(e)) => Err(self.error("get", key.as_str(), e)),
            Err(Collect::Longer) => Err(fail(
                ErrorKind::Other,
                "the store answered more bytes than it announced".into(),
            )),
            Err(Collect::Memory(e)) => Err(fail(ErrorKind::Other, e.to_string()).with_source(e)),
        }
    }

    /// The bytes of `range` (clamped to the item) and the item's whole size, from one ranged
    /// `GET`, whose `Content-Range` gives the size.
    async fn read_range(&self, key: &Key, range: Range<u64>) -> BackendResult<Option<GetResult>> {
        const OPERATION: &str = "get_range";
        let path = self.path(OPERATION, key)?;
        if range.start >= range.end {
            // An empty range: only whether the item exists, and its size, matter.
            let size = self.size_of(OPERATION, key, &path).await?;
            return Ok(size.map(|size| GetResult::part(Bytes::new(), size)));
        }
        let options = object_store::GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..object_store::GetOptions::default()
        };
        let read = match self.store.get_opts(&path, options).await {
            Ok(found) => {
                let size = found.meta.size;
                found.bytes().await.map(|bytes| (bytes, size))
            }
            Err(e) => Err(e),
        };
        match read {
            Ok((bytes, size)) if bytes.len() as u64 <= range.end - range.start => {
                Ok(Some(GetResult::part(bytes, size)))
            }
            Ok((bytes, _)) => Err(BackendError::new(
                ErrorKind::Other,
                format!(
                    "the store answered {} bytes for a range of {}",
                    bytes.len(),
                    range.end - range.start
                ),
            )
            .with_backend(self.scheme)
            .with_operation(OPERATION)
            .with_key(key)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e @ object_store::Error::NotFound { .. }) => {
                Err(self.error(OPERATION, key.as_str(), e))
            }
            // A range starting at or past the end is refused (416): whether the item exists,
            // and how long it is, says what to answer.
            Err(e) => match self.store.head(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Ok(meta) if meta.size <= range.start => {
                    Ok(Some(GetResult::part(Bytes::new(), meta.size)))
                }
                _ => Err(self.error(OPERATION, key.as_str(), e)),
            },
        }
    }
}

/// Why the bytes of a whole `GET` were not had.
enum Collect {
    Store(object_store::Error),
    /// The server sent more than it announced.
    Longer,
    /// The announced size cannot be held in memory.
    Memory(std::io::Error),
}

/// The bytes of a whole `GET`. The size an answer announces is the server's word: an answer
/// that announces more than this machine's memory is refused before it is read, the buffer
/// of the others is asked of the system first (an error if refused, where object_store's own
/// `bytes()` would abort the process), and no more than the announced size is taken.
async fn collect(found: object_store::GetResult) -> Result<Bytes, Collect> {
    let announced = found.range.end.saturating_sub(found.range.start);
    fits_in_memory(announced).map_err(Collect::Memory)?;
    let mut chunks = found.into_stream();
    let mut next = async || chunks.next().await.transpose().map_err(Collect::Store);
    let Some(first) = next().await? else {
        return Ok(Bytes::new());
    };
    if first.len() as u64 >= announced {
        // The whole answer in one piece: no copy.
        return if first.len() as u64 == announced {
            Ok(first)
        } else {
            Err(Collect::Longer)
        };
    }
    let mut bytes = buffer_for(announced).map_err(Collect::Memory)?;
    bytes.extend_from_slice(&first);
    while let Some(chunk) = next().await? {
        if (bytes.len() + chunk.len()) as u64 > announced {
            return Err(Collect::Longer);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}
