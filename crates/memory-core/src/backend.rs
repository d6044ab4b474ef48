//! The contract between the core and storage backends.

use std::fmt::Debug;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::error::BackendError;
use crate::key::{Key, Prefix};

/// The result type of backend operations.
pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// What a backend offers beyond the required operations. Every field defaults to
/// "unsupported"; a backend declares only what it really does, and the core (and layers) branch
/// on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`StoreBackend::local_path`] gives a file that may be memory-mapped.
    pub local_path: bool,
    /// [`StoreBackend::put_if_absent`] is atomic across processes and machines that share the
    /// store (otherwise it is only atomic within this process, or not at all).
    pub atomic_create: bool,
    /// [`PutOptions::ttl`] is enforced by the store itself.
    pub native_expiry: bool,
    /// [`StoreBackend::get_range`] reads only the requested bytes.
    pub ranged_read: bool,
    /// The backend's futures do their I/O synchronously when polled and are never pending.
    /// Synchronous callers poll them directly; async callers run them on a blocking thread, so
    /// that the runtime is never blocked.
    pub blocking_io: bool,
    /// The largest item the backend stores, if it has a limit.
    pub max_item_size: Option<u64>,
}

impl Capabilities {
    /// Capabilities with every field unsupported.
    pub fn none() -> Self {
        Capabilities::default()
    }
}

/// Options of a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// Ask the store to drop the item after this long. Backends without
    /// [`Capabilities::native_expiry`] ignore it (the core still checks expiry when reading).
    pub ttl: Option<Duration>,
}

impl PutOptions {
    /// Options with an expiry.
    pub fn with_ttl(ttl: Option<Duration>) -> Self {
        PutOptions { ttl }
    }
}

/// What [`StoreBackend::put_if_absent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The item did not exist and now holds the value.
    Created,
    /// An item already existed under the key; nothing was written.
    AlreadyExists,
}

/// The bytes of an item to write, as one or more segments that are stored one after the other.
///
/// Large outputs are written without being gathered into one buffer first: an entry is its
/// metadata followed by the output's arrays, each still in the memory where the function left
/// it. Backends that need a single buffer call [`Blob::to_bytes`], which copies only when there
/// are several segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob {
    parts: Vec<Bytes>,
    len: u64,
}

impl Blob {
    /// An empty blob.
    pub fn new() -> Self {
        Blob::default()
    }

    /// Appends a segment (empty segments are dropped).
    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.len += part.len() as u64;
            self.parts.push(part);
        }
    }

    /// The total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the blob holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments, in order (none of them empty).
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The segments, in order (none of them empty).
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// The bytes as one buffer: shared when the blob has at most one segment, otherwise copied
    /// into a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => {
                let mut buf = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
                for part in parts {
                    buf.extend_from_slice(part);
                }
                Bytes::from(buf)
            }
        }
    }

    /// The bytes within `range` (clamped to the length), shared when they lie within one
    /// segment, otherwise copied.
    pub fn slice(&self, range: Range<u64>) -> Bytes {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        let mut out: Option<Vec<u8>> = None;
        let mut at = 0u64;
        for part in &self.parts {
            let part_end = at + part.len() as u64;
            if part_end > start && at < end {
                let from = (start.max(at) - at) as usize;
                let to = (end.min(part_end) - at) as usize;
                if out.is_none() && at <= start && end <= part_end {
                    return part.slice(from..to);
                }
                out.get_or_insert_with(|| Vec::with_capacity((end - start) as usize))
                    .extend_from_slice(&part[from..to]);
            }
            at = part_end;
        }
        out.map(Bytes::from).unwrap_or_default()
    }
}

impl From<Bytes> for Blob {
    fn from(bytes: Bytes) -> Self {
        let mut blob = Blob::new();
        blob.push(bytes);
        blob
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Blob::from(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for Blob {
    fn from(bytes: &'static [u8]) -> Self {
        Blob::from(Bytes::from_static(bytes))
    }
}

impl FromIterator<Bytes> for Blob {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Self {
        let mut blob = Blob::new();
        for part in iter {
            blob.push(part);
        }
        blob
    }
}

/// One listed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInfo {
    /// The key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last read through the library (or written, if never read since). Backends
    /// that cannot track reads give the modification time.
    pub last_access: DateTime<Utc>,
}

/// A storage backend: stores opaque items under [`Key`]s and knows nothing of functions,
/// hashing or entries.
///
/// Every implementation must keep these promises; the conformance suite
/// (`cachette_core::testkit`, feature `testkit`) checks them:
///
/// - **Atomic visibility.** An item becomes visible whole or not at all, also when the writer dies
///   half-way or several writers race on one key. The last complete write wins.
/// - **A miss is a value.** Reading a missing item gives `Ok(None)`, never an error.
/// - **Prefixes match whole segments.** Listing or deleting under `a/b` covers `a/b/c`, never
///   `a/bc`, and never anything outside the prefix.
/// - **Access tracking.** [`get`](Self::get) records an access (cheaply, and at whatever
///   granularity the backend documents), which [`list`](Self::list) reports as
///   [`ItemInfo::last_access`]; least recently accessed items are evicted first.
/// - **Clones share state.** Backends are used behind `Arc`; two handles built from the same
///   configuration see the same items.
///
/// There are no default methods: a wrapper (a layer) must forward every one of them, so it
/// cannot silently run a default instead of the inner backend's behaviour.
#[async_trait]
pub trait StoreBackend: Send + Sync + Debug + 'static {
    /// The scheme of the backend (`"fs"`, `"s3"`, `"redis"`, `"memory"`, …).
    fn scheme(&self) -> &'static str;

    /// Where the store is, as a URL that [`crate::Memory::from_url`] accepts (a plain path for
    /// the local disk). Printed in `MemorizedResult`s.
    fn location(&self) -> String;

    /// What the backend offers.
    fn capabilities(&self) -> Capabilities;

    /// Reads an item. `Ok(None)` if it does not exist. Records an access.
    async fn get(&self, key: &Key) -> BackendResult<Option<Bytes>>;

    /// Reads the bytes of an item within `range` (clamped to its size). `Ok(None)` if it does not
    /// exist. Does not record an access.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> BackendResult<Option<Bytes>>;

    /// Records an access to an item without reading it (the core calls it when it maps the
    /// item's [`local_path`](Self::local_path) instead of calling [`get`](Self::get)). A missing
    /// item is not an error.
    async fn touch(&self, key: &Key) -> BackendResult<()>;

    /// Writes an item, replacing any previous one atomically. The item's bytes are the
    /// segments of `value`, in order.
    async fn put(&self, key: &Key, value: Blob, options: &PutOptions) -> BackendResult<()>;

    /// Writes an item only if none exists under the key. See [`Capabilities::atomic_create`].
    async fn put_if_absent(
        &self,
        key: &Key,
        value: Blob,
        options: &PutOptions,
    ) -> BackendResult<PutOutcome>;

    /// Whether an item exists. Does not record an access.
    async fn contains(&self, key: &Key) -> BackendResult<bool>;

    /// Deletes an item. Deleting a missing item is not an error.
    async fn delete(&self, key: &Key) -> BackendResult<()>;

    /// Deletes several items, in batches where the store allows. Missing items are skipped.
    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()>;

    /// Deletes every item under the prefix (every item for the root prefix), and nothing else.
    /// Returns how many items were deleted.
    async fn delete_prefix(&self, prefix: &Prefix) -> BackendResult<u64>;

    /// Lists the items under the prefix with their size and last access.
    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>>;

    /// A local file holding exactly the item's bytes, for memory-mapping, if the backend has one
    /// (see [`Capabilities::local_path`]). The path may stop being valid when the item is
    /// replaced or deleted.
    fn local_path(&self, key: &Key) -> Option<PathBuf>;
}

/// A shared, dynamically chosen backend.
pub type DynBackend = Arc<dyn StoreBackend>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_segments_and_slices() {
        let blob: Blob = [
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"h"),
        ]
        .into_iter()
        .collect();
        assert_eq!(blob.len(), 8);
        assert_eq!(blob.parts().len(), 3);
        assert_eq!(&blob.to_bytes()[..], b"abcdefgh");
        assert_eq!(&blob.slice(0..3)[..], b"abc");
        assert_eq!(&blob.slice(4..6)[..], b"ef");
        assert_eq!(&blob.slice(2..8)[..], b"cdefgh");
        assert_eq!(&blob.slice(6..100)[..], b"gh");
        assert!(blob.slice(9..12).is_empty());
        assert!(Blob::new().to_bytes().is_empty());
    }
}
