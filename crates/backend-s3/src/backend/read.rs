//! Reads (`get_opts`): a `HEAD`, a ranged `GET` or a whole `GET`, each one request (plus a
//! `HEAD` when the server refuses a range that starts past the end). A read that asks to
//! record its access adds its key to this process's next access log, in memory.

use std::ops::Range;

use cachette_core::plugin::{
    BackendError, BackendResult, Bytes, ErrorKind, GetOptions, GetResult, Key, buffer_for,
    fits_in_memory, reserve,
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
        match read {
            Ok(bytes) => Ok(Some(GetResult::whole(bytes))),
            Err(Collect::Store(e)) if is_absent(&e) => Ok(None),
            Err(e) => Err(self.collect_error("get", key, e)),
        }
    }

    /// The error of a `GET` whose bytes were not had.
    fn collect_error(&self, operation: &'static str, key: &Key, e: Collect) -> BackendError {
        let fail = |kind, message: String| {
            BackendError::new(kind, message)
                .with_backend(self.scheme)
                .with_operation(operation)
                .with_key(key)
        };
        match e {
            Collect::Store(e) => self.error(operation, key.as_str(), e),
            Collect::Length { announced, got } => fail(
                ErrorKind::Other,
                format!("the store announced {announced} bytes and answered {got}"),
            ),
            // An item too large to read here, not a failing store.
            Collect::Memory(e) => fail(
                ErrorKind::TooLarge,
                "the answer is too large to read".into(),
            )
            .with_source(e),
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
            // object_store checked that the answered range is the one asked for, clamped to
            // the size the answer gives; `collect` checks the bytes against it.
            Ok(found) => {
                let size = found.meta.size;
                collect(found).await.map(|bytes| (bytes, size))
            }
            Err(e) => Err(Collect::Store(e)),
        };
        let read = match read {
            Ok((bytes, size)) => return Ok(Some(GetResult::part(bytes, size))),
            Err(Collect::Store(e)) => e,
            Err(e) => return Err(self.collect_error(OPERATION, key, e)),
        };
        match read {
            e if is_absent(&e) => Ok(None),
            e @ object_store::Error::NotFound { .. } => Err(self.error(OPERATION, key.as_str(), e)),
            // A range starting at or past the end is refused (416): whether the item exists,
            // and how long it is, says what to answer.
            e => match self.store.head(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Ok(meta) if meta.size <= range.start => {
                    Ok(Some(GetResult::part(Bytes::new(), meta.size)))
                }
                _ => Err(self.error(OPERATION, key.as_str(), e)),
            },
        }
    }
}

/// At most this many bytes are reserved for an answer before they arrive.
const MAX_RESERVED: u64 = 8 << 20;

/// Why the bytes of a `GET` were not had.
enum Collect {
    Store(object_store::Error),
    /// The answer held more, or fewer, bytes than it announced.
    Length {
        announced: u64,
        got: u64,
    },
    /// The announced size cannot be held in memory.
    Memory(std::io::Error),
}

/// The bytes of a `GET`, whole or ranged. The size an answer announces is the server's word:
/// - an answer that announces more than this process may use is refused before it is read;
/// - for the others, at most [`MAX_RESERVED`] is reserved before bytes arrive, and the buffer
///   grows with them (twice as large each time, up to the announced size), each growth asked
///   of the system first;
/// - an answer of more, or fewer, bytes than it announced is an error.
///
/// object_store's own `bytes()` reserves the announced size at once, and a size a server
/// makes up then panics (more than can be addressed) or aborts (more than the system gives).
async fn collect(found: object_store::GetResult) -> Result<Bytes, Collect> {
    let announced = found.range.end.saturating_sub(found.range.start);
    fits_in_memory(announced).map_err(Collect::Memory)?;
    let mut chunks = found.into_stream();
    // Empty pieces (an HTTP/2 frame that only ends the stream) are no bytes at all.
    let mut next = async || loop {
        match chunks.next().await.transpose().map_err(Collect::Store)? {
            Some(chunk) if chunk.is_empty() => {}
            chunk => return Ok(chunk),
        }
    };
    let wrong = |got: usize| Collect::Length {
        announced,
        got: got as u64,
    };
    let Some(first) = next().await? else {
        return if announced == 0 {
            Ok(Bytes::new())
        } else {
            Err(wrong(0))
        };
    };
    if first.len() as u64 >= announced {
        // The whole answer in one piece: no copy.
        return match next().await? {
            None if first.len() as u64 == announced => Ok(first),
            more => Err(wrong(first.len() + more.map_or(0, |m| m.len()))),
        };
    }
    let mut bytes = buffer_for(announced.min(MAX_RESERVED)).map_err(Collect::Memory)?;
    bytes.extend_from_slice(&first);
    while let Some(chunk) = next().await? {
        let len = bytes.len() + chunk.len();
        if len as u64 > announced {
            return Err(wrong(len));
        }
        if len > bytes.capacity() {
            let target = (bytes.capacity() as u64 * 2).max(len as u64).min(announced);
            let more = target - bytes.len() as u64;
            reserve(&mut bytes, more).map_err(Collect::Memory)?;
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != announced {
        return Err(wrong(bytes.len()));
    }
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use cachette_core::plugin::Utc;
    use futures::StreamExt as _;
    use object_store::{GetResultPayload, ObjectMeta};

    use super::*;

    /// What `collect` makes of an answer that announces `announced` bytes and sends `pieces`:
    /// its bytes, or `Err(())`.
    fn collected(announced: u64, pieces: &[&[u8]]) -> Result<Vec<u8>, ()> {
        let pieces: Vec<object_store::Result<Bytes>> = pieces
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        let found = object_store::GetResult {
            payload: GetResultPayload::Stream(futures::stream::iter(pieces).boxed()),
            meta: ObjectMeta {
                location: Path::from("x"),
                last_modified: Utc::now(),
                size: announced,
                e_tag: None,
                version: None,
            },
            range: 0..announced,
            attributes: Default::default(),
            extensions: Default::default(),
        };
        match futures::executor::block_on(collect(found)) {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(Collect::Length { .. }) => Err(()),
            Err(_) => panic!("not a length error"),
        }
    }

    #[test]
    fn an_answer_is_taken_at_its_announced_length_only() {
        let ok: [(u64, &[&[u8]]); 6] = [
            (0, &[]),
            (0, &[b""]),
            (3, &[b"abc"]),
            // An empty last piece (an HTTP/2 frame that only ends the stream) is no byte.
            (3, &[b"abc", b""]),
            (5, &[b"ab", b"", b"cde"]),
            (5, &[b"a", b"b", b"c", b"d", b"e"]),
        ];
        for (announced, pieces) in ok {
            assert_eq!(collected(announced, pieces).unwrap(), pieces.concat());
        }
        let wrong: [(u64, &[&[u8]]); 6] = [
            (3, &[]),
            (3, &[b"ab"]),
            (3, &[b"abcd"]),
            (3, &[b"abc", b"d"]),
            (3, &[b"a", b"bcd"]),
            (0, &[b"a"]),
        ];
        for (announced, pieces) in wrong {
            assert!(
                collected(announced, pieces).is_err(),
                "{announced} {pieces:?}"
            );
        }
        // Past the first reservation: the buffer grows with what arrives.
        let piece = vec![7u8; 3 << 20];
        let pieces = [&piece[..]; 5];
        let got = collected(15 << 20, &pieces).unwrap();
        assert!(got.len() == 15 << 20 && got.iter().all(|&b| b == 7));
    }
}
