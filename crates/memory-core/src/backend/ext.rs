//! [`StoreBackendExt`]: the conveniences every backend gets from the four required operations.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BackendResult, Blob, GetOptions, GetPayload, PutOptions, PutOutcome, StoreBackend};
use crate::error::{BackendError, ErrorKind};
use crate::key::{Key, Prefix};

/// Conveniences built on the required operations of [`StoreBackend`]. Implemented for every
/// backend, layers and `dyn StoreBackend` included; backends never implement it themselves, so
/// a layer cannot forget to forward one of them.
#[async_trait]
pub trait StoreBackendExt: StoreBackend {
    /// Reads a whole item and records an access. `Ok(None)` if it does not exist.
    async fn get(&self, key: &Key) -> BackendResult<Option<Bytes>> {
        bytes_of(key, self.get_opts(key, GetOptions::hit()).await?)
    }

    /// Reads the bytes of an item within `range` (clamped to its size), recording no access.
    /// `Ok(None)` if it does not exist.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> BackendResult<Option<Bytes>> {
        bytes_of(key, self.get_opts(key, GetOptions::range(range)).await?)
    }

    /// The size of an item, if it exists. Records no access.
    async fn head(&self, key: &Key) -> BackendResult<Option<u64>> {
        Ok(self
            .get_opts(key, GetOptions::head())
            .await?
            .map(|found| found.size))
    }

    /// Whether an item exists. Records no access.
    async fn contains(&self, key: &Key) -> BackendResult<bool> {
        Ok(self.head(key).await?.is_some())
    }

    /// Writes an item, replacing any previous one atomically.
    async fn put(&self, key: &Key, value: Blob) -> BackendResult<()> {
        self.put_opts(key, value, PutOptions::default()).await?;
        Ok(())
    }

    /// Writes an item only if none exists under the key; see
    /// [`Capabilities::atomic_create`](super::Capabilities::atomic_create).
    async fn put_if_absent(&self, key: &Key, value: Blob) -> BackendResult<PutOutcome> {
        self.put_opts(key, value, PutOptions::create()).await
    }

    /// Deletes an item. Deleting a missing item is not an error.
    async fn delete(&self, key: &Key) -> BackendResult<()> {
        self.delete_many(std::slice::from_ref(key)).await
    }

    /// Deletes every item [`list`](StoreBackend::list) gives under the prefix, and nothing
    /// else. Returns how many were listed for deletion.
    async fn delete_prefix(&self, prefix: &Prefix) -> BackendResult<u64> {
        let keys: Vec<Key> = self
            .list(prefix)
            .await?
            .into_iter()
            .map(|item| item.key)
            .collect();
        if !keys.is_empty() {
            self.delete_many(&keys).await?;
        }
        Ok(keys.len() as u64)
    }
}

impl<T: StoreBackend + ?Sized> StoreBackendExt for T {}

fn bytes_of(key: &Key, found: Option<super::GetResult>) -> BackendResult<Option<Bytes>> {
    let Some(found) = found else {
        return Ok(None);
    };
    match found.payload {
        GetPayload::Bytes(bytes) => Ok(Some(bytes)),
        GetPayload::File(_) => found
            .into_bytes()
            .map(Some)
            .map_err(|e| BackendError::new(ErrorKind::Other, format!("cannot read {key}: {e}"))),
    }
}
