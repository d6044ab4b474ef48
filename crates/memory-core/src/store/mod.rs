//! The entry store: what the core keeps in a backend, behind a few typed operations.
//!
//! Between [`MemorizedFunc`](crate::MemorizedFunc) and the backend stack sits one
//! [`EntryStore`] per memory. It owns everything about entries:
//!
//! - **reading** ([`read`](EntryStore::read)): one `get_opts` (a map of the local file when the
//!   mode maps and the stack has local files, else the bytes), then parsing, checking (checksums,
//!   the key the entry was written for, the signature) and, in [`Checked::decode`], decoding;
//!   bytes equal to those of the entry checked last for the same key and code reuse what their
//!   checks found ([`verified`]);
//!   [`metadata`](EntryStore::metadata) does the same for an entry's head only, recording no
//!   access;
//! - **writing** ([`encode`](EntryStore::encode), [`save`](EntryStore::save));
//! - **the identity item** of each function ([`check_identity`](EntryStore::check_identity),
//!   [`reset_function`](EntryStore::reset_function)), checked once per memory generation;
//! - **the whole store**: listing its entries, [`clear`](EntryStore::clear),
//!   [`reduce`](EntryStore::reduce) (planned in [`size`](crate::size)) and
//!   [`housekeeping`](EntryStore::housekeeping).
//!
//! **Architecture Invariant:** this is the only read path of entries. Calls, shelved results
//! and the `cachette` command all read through it, so every check applies to every reader.
//! It knows nothing of policies: faults come back as [`Error`]s, and the caller decides whether
//! they are warnings or errors, and what to print.

mod identity;
pub(crate) mod memo;
mod read;
mod verified;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::array::{self, MmapMode};
use crate::backend::{
    BackendResult, Blob, Capabilities, DynBackend, GetOptions, GetResult, ItemInfo, PutOptions,
    StoreBackendExt,
};
use crate::breaker::Breaker;
use crate::codec::{self, Codec};
use crate::entry::{self, CodeIdentity, HEADER_READ_HINT, Metadata, MetadataRef};
use crate::error::{BackendError, EntryError, Error};
use crate::key::{Key, Prefix, grammar};
use crate::reach::Reach;
use crate::report::Reporter;
use crate::signing::SigningKey;
use crate::size::{ReduceReport, SizeLimits, check_limits, plan_reduction};

pub(crate) use identity::{IdentityCheck, StoredIdentity, name_of_identity};
pub(crate) use read::Checked;

/// The entry store of a memory; see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct EntryStore {
    backend: DynBackend,
    location: String,
    capabilities: Capabilities,
    codec: Arc<dyn Codec>,
    signing: Option<SigningKey>,
    compress: Option<i32>,
    /// The most a compressed entry may decompress to.
    max_decompressed: u64,
    identities: identity::Checks,
    /// Skips a store that keeps failing; told the outcome of every operation.
    breaker: Breaker,
    /// The decoded values of this process's hits and misses, with `memo_size`.
    memo: Option<memo::Memo>,
    /// The entries checked last, whose bytes a read need not check again.
    verified: verified::Verified,
}

/// What a read knows before it asks the backend: the spot of its key, and the entry checked
/// last there for its key and code, if any.
struct ReadPlan {
    spot: verified::Spot,
    known: Option<Arc<verified::Known>>,
}

impl EntryStore {
    pub(crate) fn new(
        backend: DynBackend,
        codec: Arc<dyn Codec>,
        signing: Option<SigningKey>,
        compress: Option<i32>,
        max_decompressed: u64,
    ) -> EntryStore {
        EntryStore {
            location: backend.location(),
            capabilities: backend.capabilities(),
            backend,
            codec,
            signing,
            compress,
            max_decompressed,
            identities: identity::Checks::default(),
            breaker: Breaker::new(0, Duration::ZERO, Reporter::default(), ""),
            memo: None,
            verified: verified::Verified::default(),
        }
    }

    /// The store with a memo of decoded values of at most `max_bytes` bytes.
    pub(crate) fn with_memo(mut self, max_bytes: u64) -> EntryStore {
        self.memo = (max_bytes > 0).then(|| memo::Memo::new(max_bytes));
        self
    }

    /// The memo of decoded values, with one.
    pub(crate) fn memo(&self) -> Option<&memo::Memo> {
        self.memo.as_ref()
    }

    /// The store with `breaker` told the outcome of its operations.
    pub(crate) fn with_breaker(mut self, breaker: Breaker) -> EntryStore {
        self.breaker = breaker;
        self
    }

    /// The circuit breaker of the store.
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The backend stack.
    pub(crate) fn backend(&self) -> &DynBackend {
        &self.backend
    }

    /// Where the store is, as a URL (a path for the local disk).
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    /// What the backend stack offers.
    pub(crate) fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The codec of outputs.
    pub(crate) fn codec(&self) -> &dyn Codec {
        &*self.codec
    }

    /// The most a compressed entry may decompress to.
    pub(crate) fn max_decompressed(&self) -> u64 {
        self.max_decompressed
    }

    /// The key entries are signed and checked with.
    pub(crate) fn signing(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// The zstd level outputs are compressed with.
    pub(crate) fn compression(&self) -> Option<i32> {
        self.compress
    }

    /// Whether a load in `mode` maps the entry's local file: never for compressed entries, and
    /// never with a signing key (the signature is checked on bytes read, and a map would read
    /// them again later, when they may have changed).
    pub(crate) fn maps(&self, mode: MmapMode) -> bool {
        mode.maps()
            && self.capabilities.local_files
            && self.compress.is_none()
            && self.signing.is_none()
    }

    /// Runs one backend operation as `reach` says.
    async fn run<T, F>(&self, reach: Reach, op: F) -> BackendResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(
                &'a dyn crate::backend::StoreBackend,
            ) -> futures::future::BoxFuture<'a, BackendResult<T>>
            + Send
            + 'static,
    {
        let outcome = reach
            .run(&self.backend, self.capabilities.blocking_io, op)
            .await;
        match &outcome {
            Ok(_) => self.breaker.success(),
            Err(e) => self.breaker.fault(e),
        }
        outcome
    }

    /// Reads and checks the entry under `key`, for a load in `mode`, as written by `code` when
    /// given: `Ok(None)` when there is none. Records the access. A mapped entry's arrays are
    /// checked against their block checksums when `verify_arrays`.
    pub(crate) async fn read(
        &self,
        reach: Reach,
        key: &Key,
        mode: MmapMode,
        code: Option<CodeIdentity<'_>>,
        verify_arrays: bool,
    ) -> Result<Option<Checked>, Error> {
        let (plan, options) = self.read_plan(key, mode, code);
        let found = self.get(reach, key, options).await?;
        self.read_checked(key, found, mode, code, verify_arrays, &plan)
    }

    /// [`read`](Self::read) with [`Reach::Blocking`], done on this thread without a future
    /// when the backend answers now ([`get_now`](crate::backend::StoreBackend::get_now)):
    /// `None` when it does not, and nothing was read.
    pub(crate) fn read_now(
        &self,
        key: &Key,
        mode: MmapMode,
        code: Option<CodeIdentity<'_>>,
        verify_arrays: bool,
    ) -> Option<Result<Option<Checked>, Error>> {
        let (plan, options) = self.read_plan(key, mode, code);
        let found = self.get_now(key, &options)?;
        Some(
            found.and_then(|found| self.read_checked(key, found, mode, code, verify_arrays, &plan)),
        )
    }

    /// What a read of `key` knows before it asks the backend, and what it asks.
    fn read_plan(
        &self,
        key: &Key,
        mode: MmapMode,
        code: Option<CodeIdentity<'_>>,
    ) -> (ReadPlan, GetOptions) {
        let spot = verified::Spot::of(key);
        let known = self.verified.find(spot, key, code);
        let options = GetOptions::hit()
            .with_local_file(self.maps(mode))
            .with_expected(known.as_ref().map(|known| known.bytes.clone()));
        (ReadPlan { spot, known }, options)
    }

    /// Checks what a read of `key` found (see [`read`](Self::read)).
    fn read_checked(
        &self,
        key: &Key,
        found: Option<GetResult>,
        mode: MmapMode,
        code: Option<CodeIdentity<'_>>,
        verify_arrays: bool,
        plan: &ReadPlan,
    ) -> Result<Option<Checked>, Error> {
        let Some(found) = found else {
            return Ok(None);
        };
        let read = read::into_read(key, found, mode)
            .map_err(|e| BackendError::from_io(e, format!("cannot read {key}")))?;
        if let Some(known) = &plan.known
            && let Some(bytes) = read.whole_bytes()
            && let Some((parsed, duration)) = known.reuse(bytes)
        {
            return Ok(Some(Checked::again(read, parsed, duration)));
        }
        let codec = Some(self.codec().id());
        let checked = Checked::parse(read, key, code, codec, self.signing.as_ref(), verify_arrays)
            .map_err(|source| entry_error(key, source))?;
        if let Some(bytes) = checked.whole_bytes() {
            let parsed = || checked.parsed();
            self.verified
                .checked(plan.spot, bytes, key, code, parsed, checked.duration());
        }
        Ok(Some(checked))
    }

    /// One read of the item under `key`.
    async fn get(
        &self,
        reach: Reach,
        key: &Key,
        options: GetOptions,
    ) -> Result<Option<GetResult>, Error> {
        if reach == Reach::Blocking
            && let Some(found) = self.get_now(key, &options)
        {
            return found;
        }
        let k = key.clone();
        let found = self
            .run(reach, move |b| {
                Box::pin(async move { b.get_opts(&k, options).await })
            })
            .await?;
        Ok(found)
    }

    /// One read of the item under `key` done on this thread, if the backend answers now.
    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<Result<Option<GetResult>, Error>> {
        let found = self.backend.get_now(key, options)?;
        match &found {
            Ok(_) => self.breaker.success(),
            Err(e) => self.breaker.fault(e),
        }
        Some(found.map_err(Error::from))
    }

    /// What a read of `key` gave, in memory.
    fn bytes_of(key: &Key, found: GetResult) -> Result<bytes::Bytes, Error> {
        let bytes = found
            .into_bytes()
            .map_err(|e| BackendError::from_io(e, format!("cannot read {key}")))?;
        Ok(bytes)
    }

    /// The whole item under `key`, read into memory, recording no access.
    async fn read_whole(&self, reach: Reach, key: &Key) -> Result<Option<bytes::Bytes>, Error> {
        match self.get(reach, key, GetOptions::default()).await? {
            Some(found) => Self::bytes_of(key, found).map(Some),
            None => Ok(None),
        }
    }

    /// Checks the entry under `key` as a load would (every checksum, arrays included, the key it
    /// was written for, the signature, and that its payload decompresses), without decoding
    /// the output or recording an access. `Ok(false)` when there is none.
    pub(crate) async fn verify(&self, reach: Reach, key: &Key) -> Result<bool, Error> {
        let Some(bytes) = self.read_whole(reach, key).await? else {
            return Ok(false);
        };
        // Whatever codec wrote it: a check of the entry, not of what a load would decode.
        let checked = Checked::parse(
            read::Read::whole(bytes),
            key,
            None,
            None,
            self.signing.as_ref(),
            true,
        )
        .map_err(|source| entry_error(key, source))?;
        checked.check_payload(key, self.max_decompressed)?;
        Ok(true)
    }

    /// Reads, checks and decodes the output stored under `key`; its arrays are loaded as `mode`
    /// says. `Ok(None)` when there is none.
    pub(crate) async fn load<R: DeserializeOwned>(
        &self,
        reach: Reach,
        key: &Key,
        mode: MmapMode,
        verify_arrays: bool,
    ) -> Result<Option<R>, Error> {
        match self.read(reach, key, mode, None, verify_arrays).await? {
            Some(entry) => entry
                .decode(key, self.codec(), mode, self.max_decompressed)
                .map(Some),
            None => Ok(None),
        }
    }

    /// The codec a metadata read checks: this memory's when it checks for a call (`code`
    /// given: would the call decode the output?), none when it only reads the metadata.
    fn codec_for(&self, code: Option<CodeIdentity<'_>>) -> Option<&'static str> {
        code.is_some().then(|| self.codec().id())
    }

    /// Reads and checks the metadata of the entry under `key`, recording no access: that it
    /// answers for its key (and `code` when given, with this memory's codec), its length and the checksum of its head;
    /// with a signing key, its signature, which takes a read of the whole entry. Without one,
    /// two ranged reads at most. `Ok(None)` when there is none.
    pub(crate) async fn metadata(
        &self,
        reach: Reach,
        key: &Key,
        code: Option<CodeIdentity<'_>>,
    ) -> Result<Option<Metadata>, Error> {
        if self.signing.is_some() {
            return self.metadata_signed(reach, key, code).await;
        }
        let k = key.clone();
        let found = self
            .run(reach, move |b| {
                Box::pin(async move { read_head(b, k).await })
            })
            .await?;
        let Some((head, size)) = found else {
            return Ok(None);
        };
        let checked = entry::parse_metadata(&head, Some(size)).and_then(|meta| {
            meta.check(&read::expected(key, code, self.codec_for(code))?)?;
            Ok(meta)
        });
        checked.map(Some).map_err(|source| entry_error(key, source))
    }

    /// [`metadata`](Self::metadata) with a signing key: the whole entry is read (no access is
    /// recorded) and its signature checked.
    async fn metadata_signed(
        &self,
        reach: Reach,
        key: &Key,
        code: Option<CodeIdentity<'_>>,
    ) -> Result<Option<Metadata>, Error> {
        let Some(bytes) = self.read_whole(reach, key).await? else {
            return Ok(None);
        };
        Checked::parse(
            read::Read::whole(bytes),
            key,
            code,
            self.codec_for(code),
            self.signing.as_ref(),
            true,
        )
        .and_then(|checked| checked.metadata())
        .map(Some)
        .map_err(|source| entry_error(key, source))
    }

    /// The entry of an output: its metadata, then its payload, signed and compressed as the
    /// store says.
    pub(crate) fn encode<R: Serialize>(
        &self,
        metadata: &MetadataRef<'_>,
        out: &R,
    ) -> Result<Blob, Error> {
        let (structure, arrays) = array::encoding(|| {
            // Room for a small output without growing.
            let mut structure = Vec::with_capacity(64);
            codec::encode_value(self.codec(), out, &mut structure).map(|()| structure)
        });
        let structure = structure.map_err(|e| Error::Codec(e.0))?;
        entry::encode_within(
            metadata,
            structure,
            arrays,
            self.compress,
            self.signing.as_ref(),
            self.max_decompressed,
        )
        .map_err(Error::Codec)
    }

    /// Writes an entry, replacing any previous one; with `claim`, deletes that compute-once claim
    /// with the write (see `StoreBackend::put_then_delete`).
    pub(crate) async fn save(
        &self,
        reach: Reach,
        key: &Key,
        entry: Blob,
        ttl: Option<Duration>,
        claim: Option<&Key>,
    ) -> Result<(), Error> {
        if let Some(memo) = &self.memo {
            memo.forget([key]);
        }
        let k = key.clone();
        let claim = claim.cloned();
        // An entry that holds arrays is kept in a file of its own where the backend can, so that
        // its arrays can be mapped whatever its size.
        let arrays = entry.parts().first().is_some_and(|head| {
            entry::Prefix::parse(head, Some(entry.len()))
                .is_ok_and(|prefix| prefix.flags & entry::FLAG_ARRAYS != 0)
        });
        self.run(reach, move |b| {
            Box::pin(async move {
                let options = PutOptions::with_ttl(ttl).with_local_file(arrays);
                match &claim {
                    Some(claim) => b.put_then_delete(&k, entry, options, claim).await,
                    None => b.put_opts(&k, entry, options).await,
                }
            })
        })
        .await?;
        Ok(())
    }

    /// Deletes the entry under `key`.
    pub(crate) async fn delete(&self, reach: Reach, key: &Key) -> Result<(), Error> {
        if let Some(memo) = &self.memo {
            memo.forget([key]);
        }
        let k = key.clone();
        self.run(reach, move |b| Box::pin(async move { b.delete(&k).await }))
            .await?;
        Ok(())
    }

    /// The items the core wrote under `prefix` (entries, claims and identity items).
    pub(crate) async fn items(
        &self,
        reach: Reach,
        prefix: &Prefix,
    ) -> Result<Vec<ItemInfo>, Error> {
        let p = prefix.clone();
        let mut items = self
            .run(reach, move |b| Box::pin(async move { b.list(&p).await }))
            .await?;
        items.retain(|item| grammar::is_ours(&item.key));
        Ok(items)
    }

    /// The entries under `prefix`, sorted by key.
    pub(crate) async fn entries(
        &self,
        reach: Reach,
        prefix: &Prefix,
    ) -> Result<Vec<ItemInfo>, Error> {
        let mut items = self.items(reach, prefix).await?;
        items.retain(|item| grammar::is_entry(&item.key));
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    /// Reads a whole item of the core other than an entry, from the store of record (past any
    /// caching layer), if it is at most `max_len` bytes long: `Ok(None)` when there is none;
    /// a longer item is an error, and is not read past `max_len`.
    pub(crate) async fn read_item(
        &self,
        reach: Reach,
        key: &Key,
        max_len: u64,
    ) -> Result<Option<bytes::Bytes>, Error> {
        let options = GetOptions::range(0..max_len + 1).with_bypass_cache(true);
        let Some(found) = self.get(reach, key, options).await? else {
            return Ok(None);
        };
        let bytes = Self::bytes_of(key, found)?;
        if bytes.len() as u64 > max_len {
            return Err(Error::InvalidArgument(format!(
                "{key} is longer than {max_len} bytes"
            )));
        }
        Ok(Some(bytes))
    }

    /// Writes an item of the core other than an entry (no time to live), to the store of
    /// record (past any caching layer): over what is there, or only where nothing is with
    /// `create`. Says whether it was written.
    pub(crate) async fn put_item(
        &self,
        reach: Reach,
        key: &Key,
        item: Blob,
        create: bool,
    ) -> Result<bool, Error> {
        let k = key.clone();
        let options = if create {
            PutOptions::create()
        } else {
            PutOptions::default()
        }
        .with_bypass_cache(true);
        let outcome = self
            .run(reach, move |b| {
                Box::pin(async move { b.put_opts(&k, item, options).await })
            })
            .await?;
        Ok(outcome == crate::backend::PutOutcome::Created)
    }

    /// Deletes `keys`.
    pub(crate) async fn delete_keys(&self, reach: Reach, keys: Vec<Key>) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        if let Some(memo) = &self.memo {
            memo.forget(&keys);
        }
        self.run(reach, move |b| {
            Box::pin(async move { b.delete_many(&keys).await })
        })
        .await?;
        Ok(())
    }

    /// Deletes every item the core wrote under `prefix` (the whole store for the root), and
    /// nothing else: files or objects that are not entries, claims or identity items stay.
    /// Gives how many items were deleted.
    pub(crate) async fn delete_ours(&self, reach: Reach, prefix: &Prefix) -> Result<u64, Error> {
        let keys: Vec<Key> = self
            .items(reach, prefix)
            .await?
            .into_iter()
            .map(|item| item.key)
            .collect();
        let n = keys.len() as u64;
        self.delete_keys(reach, keys).await?;
        Ok(n)
    }

    /// Drops the decoded values the memo holds of the function whose folder is `folder`.
    pub(crate) fn forget_memo_of(&self, folder: &str) {
        if let Some(memo) = &self.memo {
            memo.forget_folder(folder);
        }
    }

    /// Deletes every entry of every function; functions check their identity again afterwards.
    pub(crate) async fn clear(&self, reach: Reach) -> Result<(), Error> {
        let swept = self.sweep(reach).await;
        if let Some(memo) = &self.memo {
            memo.clear();
        }
        self.delete_ours(reach, &grammar::root()).await?;
        self.identities.forget();
        swept
    }

    /// Removes what interrupted writers left behind; see
    /// [`StoreBackend::sweep`](crate::backend::StoreBackend::sweep).
    async fn sweep(&self, reach: Reach) -> Result<(), Error> {
        self.run(reach, |b| {
            Box::pin(async move { b.sweep(&grammar::root()).await })
        })
        .await?;
        Ok(())
    }

    /// Sweeps leftovers of interrupted writers; gives how many entries the store holds.
    pub(crate) async fn housekeeping(&self, reach: Reach) -> Result<usize, Error> {
        self.sweep(reach).await?;
        Ok(self.entries(reach, &grammar::root()).await?.len())
    }

    /// Deletes entries until the store is within `limits`, and claims left unrenewed (see
    /// [`plan_reduction`]).
    pub(crate) async fn reduce(
        &self,
        reach: Reach,
        limits: &SizeLimits,
        lease: Duration,
    ) -> Result<ReduceReport, Error> {
        check_limits(limits)?;
        self.sweep(reach).await?;
        let items = self.items(reach, &grammar::root()).await?;
        let (doomed, report) = plan_reduction(items, limits, lease);
        self.delete_keys(reach, doomed).await?;
        Ok(report)
    }
}

/// The error of an unusable entry.
fn entry_error(key: &Key, source: EntryError) -> Error {
    Error::Entry {
        key: key.to_string(),
        source,
    }
}

/// Reads the head of the item under `key` (prefix and metadata) with ranged reads, and its
/// whole size. `None` when it does not exist.
async fn read_head(
    backend: &dyn crate::backend::StoreBackend,
    key: Key,
) -> BackendResult<Option<(bytes::Bytes, u64)>> {
    let Some(found) = backend
        .get_opts(&key, GetOptions::range(0..HEADER_READ_HINT))
        .await?
    else {
        return Ok(None);
    };
    let size = found.size;
    let head = found
        .into_bytes()
        .map_err(|e| BackendError::from_io(e, format!("cannot read {key}")))?;
    let end = match entry::Prefix::parse(&head, Some(size)) {
        Ok(prefix) => prefix.metadata_end(),
        // Let the parser report what is wrong with it.
        Err(_) => return Ok(Some((head, size))),
    };
    if (head.len() as u64) >= end {
        return Ok(Some((head, size)));
    }
    match backend.get_range(&key, 0..end).await? {
        Some(head) => Ok(Some((head, size))),
        None => Ok(None),
    }
}
