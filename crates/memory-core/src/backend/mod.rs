//! The contract between the core and storage backends.
//!
//! A backend stores opaque items under [`Key`]s and knows nothing of functions, hashing or
//! entries. The contract is narrow, in the way of `object_store`: a backend writes four
//! operations, each with options, and everything else is built on them by
//! [`StoreBackendExt`], which every backend (and every stack of layers) gets for free.
//!
//! | required | what it does |
//! | --- | --- |
//! | [`get_opts`](StoreBackend::get_opts) | reads an item, or a range of it, or only its size; records an access when asked; gives a local file when asked and one exists, so that it can be memory-mapped |
//! | [`put_opts`](StoreBackend::put_opts) | writes an item whole, replacing one or only if none exists, with an optional expiry |
//! | [`delete_many`](StoreBackend::delete_many) | deletes items by key |
//! | [`list`](StoreBackend::list) | lists the items under a prefix, with their size and last access |
//!
//! Four more have a default that works, so a backend writes them only to do better: `sweep`
//! (leftovers of dead writers), and three shortcuts: [`get_now`](StoreBackend::get_now) (a read
//! without a future), [`put_then_delete`](StoreBackend::put_then_delete) (a write and a delete
//! in one step) and [`try_claim`](StoreBackend::try_claim) (compute-once claims held through
//! the store's own locks).
//!
//! A memory-mapped read is an ordinary [`get_opts`](StoreBackend::get_opts) with
//! [`GetOptions::local_file`]: it flows through every [layer](crate::layers) like any other
//! read, so a layer that counts, tiers or retries sees it too.

mod blob;
mod ext;
mod layer;

use std::fmt::Debug;
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::error::BackendError;
use crate::key::{Key, Prefix};

pub use blob::Blob;
pub use ext::StoreBackendExt;
pub use layer::{Layer, LayerFn};

/// The result type of backend operations.
pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// What a backend offers beyond the required operations. Every field defaults to
/// "unsupported"; a backend declares only what it really does, and the core (and layers) branch
/// on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`GetOptions::local_file`] can give a file holding exactly the item's bytes, which may be
    /// memory-mapped. A backend may still answer such a read with bytes, for items it keeps
    /// elsewhere than in files of their own (the index layout of the local disk keeps small
    /// items in an index).
    pub local_files: bool,
    /// [`PutMode::Create`] is atomic across processes and machines that share the store
    /// (otherwise it is only atomic within this process, or not at all).
    pub atomic_create: bool,
    /// [`PutOptions::ttl`] is enforced by the store itself.
    pub native_expiry: bool,
    /// [`GetOptions::range`] reads only the requested bytes.
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

/// Options of a read ([`StoreBackend::get_opts`]). The default reads the whole item, records
/// no access and gives bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    /// Only these bytes of the item (clamped to its size). `None` reads it whole.
    pub range: Option<Range<u64>>,
    /// Only whether the item exists, and its size: no bytes are read.
    pub head: bool,
    /// Record an access to the item, which [`StoreBackend::list`] reports as
    /// [`ItemInfo::last_access`] (cheaply, at whatever granularity the backend documents).
    /// Reads that only look (metadata, checks, tools) leave it off, so that they do not change
    /// the least-recently-used order.
    pub record_access: bool,
    /// Give a [`GetPayload::File`] when the backend has a local file holding exactly the
    /// item's bytes (see [`Capabilities::local_files`]), instead of reading it. Ignored with a
    /// range or `head`.
    pub local_file: bool,
    /// Read from the store of record, past any caching layer (a local tier), which neither
    /// serves nor keeps a copy. For coordination state that must be current, such as
    /// compute-once claims. Counting layers leave such operations out.
    pub bypass_cache: bool,
    /// Bytes the caller holds and expects the item to hold. A backend that can compare them
    /// with the item where it lies, without a copy (the local disk's index, in its memory map),
    /// gives back a clone of them when the two are equal, rather than a copy of the item: what
    /// the read gives is the same either way. Any backend may ignore it; ignored with a range
    /// or `head`.
    pub expected: Option<Bytes>,
}

impl GetOptions {
    /// A whole read that records an access: a hit of an entry.
    pub fn hit() -> Self {
        GetOptions {
            record_access: true,
            ..GetOptions::default()
        }
    }

    /// A read of `range` that records no access.
    pub fn range(range: Range<u64>) -> Self {
        GetOptions {
            range: Some(range),
            ..GetOptions::default()
        }
    }

    /// Only the existence and size of the item.
    pub fn head() -> Self {
        GetOptions {
            head: true,
            ..GetOptions::default()
        }
    }

    /// Sets [`record_access`](Self::record_access).
    pub fn with_record_access(mut self, on: bool) -> Self {
        self.record_access = on;
        self
    }

    /// Sets [`local_file`](Self::local_file).
    pub fn with_local_file(mut self, on: bool) -> Self {
        self.local_file = on;
        self
    }

    /// Sets [`expected`](Self::expected).
    pub fn with_expected(mut self, expected: Option<Bytes>) -> Self {
        self.expected = expected;
        self
    }

    /// Sets [`bypass_cache`](Self::bypass_cache).
    pub fn with_bypass_cache(mut self, on: bool) -> Self {
        self.bypass_cache = on;
        self
    }
}

/// A local file holding exactly an item's bytes, opened for reading; see
/// [`GetOptions::local_file`].
#[derive(Debug)]
pub struct LocalFile {
    /// The open file. Backends open it without following links and check that it is a
    /// regular file.
    pub file: File,
    /// Where it is: kept to reopen it for writing (the read-write map mode) or to name it in
    /// messages. It may stop naming this file once the item is replaced or deleted.
    pub path: PathBuf,
}

/// The bytes of a read.
#[derive(Debug)]
pub enum GetPayload {
    /// The bytes, in memory (empty for a `head` read).
    Bytes(Bytes),
    /// A local file holding the whole item (only when [`GetOptions::local_file`] asked).
    File(LocalFile),
}

/// What [`StoreBackend::get_opts`] found.
#[derive(Debug)]
pub struct GetResult {
    /// The bytes read.
    pub payload: GetPayload,
    /// The size of the whole item (not only of the range read).
    pub size: u64,
}

impl GetResult {
    /// A result holding `bytes`, the whole item.
    pub fn whole(bytes: Bytes) -> Self {
        GetResult {
            size: bytes.len() as u64,
            payload: GetPayload::Bytes(bytes),
        }
    }

    /// A result holding `bytes`, a part of an item of `size` bytes.
    pub fn part(bytes: Bytes, size: u64) -> Self {
        GetResult {
            payload: GetPayload::Bytes(bytes),
            size,
        }
    }

    /// The answer to a `head` read of an item of `size` bytes.
    pub fn head(size: u64) -> Self {
        GetResult {
            payload: GetPayload::Bytes(Bytes::new()),
            size,
        }
    }

    /// The bytes, read from the local file if the payload is one (bounded by the size the
    /// backend reported, so a file that grew is not read past it).
    pub fn into_bytes(self) -> std::io::Result<Bytes> {
        match self.payload {
            GetPayload::Bytes(bytes) => Ok(bytes),
            GetPayload::File(local) => local.read_bytes(self.size),
        }
    }
}

impl LocalFile {
    /// The file's `size` bytes (the size the backend reported, so a file that grew is not read
    /// past it), read from where the file stands: its start, as a backend gives it.
    pub(crate) fn read_bytes(&self, size: u64) -> std::io::Result<Bytes> {
        use std::io::Read;
        // The size is the store's word: asked of the system first, never an abort.
        let mut buf = crate::buffer::buffer_for(size)?;
        (&self.file).take(size).read_to_end(&mut buf)?;
        if buf.len() as u64 != size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the item's file changed while it was read",
            ));
        }
        Ok(Bytes::from(buf))
    }
}

/// How [`StoreBackend::put_opts`] treats an item that already exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutMode {
    /// Replace it, atomically: readers see the old item or the new one.
    #[default]
    Overwrite,
    /// Write only if no item exists under the key; see [`Capabilities::atomic_create`].
    Create,
}

/// Options of a write ([`StoreBackend::put_opts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// Whether an existing item is replaced.
    pub mode: PutMode,
    /// Ask the store to drop the item after this long. Backends without
    /// [`Capabilities::native_expiry`] ignore it (the core still checks expiry when reading).
    pub ttl: Option<Duration>,
    /// Write to the store of record only, past any caching layer, which keeps no copy; see
    /// [`GetOptions::bypass_cache`].
    pub bypass_cache: bool,
    /// A create ([`PutMode::Create`]) may make the item in its place and write it there, so
    /// that a reader may find it, for an instant, empty or partly written; still one writer
    /// wins. The core asks it for compute-once claims, small records whose readers take one
    /// they cannot parse for a claim being written. On a local disk it is an exclusive create
    /// and a write, where an atomic create is a temporary file, a hard link and an unlink.
    /// A backend whose creates are atomic anyway ignores it; entries never ask it.
    pub in_place: bool,
    /// The item is meant to be read through a local file ([`GetOptions::local_file`]): a
    /// backend that keeps some items elsewhere than in files of their own (the local disk's
    /// index of small items) keeps this one as a file, so that it can be mapped. The core asks
    /// it for entries that hold arrays. Other backends ignore it.
    pub local_file: bool,
}

impl PutOptions {
    /// Options with an expiry.
    pub fn with_ttl(ttl: Option<Duration>) -> Self {
        PutOptions {
            ttl,
            ..PutOptions::default()
        }
    }

    /// Options of a create-if-absent write.
    pub fn create() -> Self {
        PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        }
    }

    /// Sets [`ttl`](Self::ttl).
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets [`bypass_cache`](Self::bypass_cache).
    pub fn with_bypass_cache(mut self, on: bool) -> Self {
        self.bypass_cache = on;
        self
    }

    /// Sets [`in_place`](Self::in_place).
    pub fn with_in_place(mut self, on: bool) -> Self {
        self.in_place = on;
        self
    }

    /// Sets [`local_file`](Self::local_file).
    pub fn with_local_file(mut self, on: bool) -> Self {
        self.local_file = on;
        self
    }
}

/// What [`StoreBackend::put_opts`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The item now holds the value.
    Created,
    /// With [`PutMode::Create`]: an item already existed under the key; nothing was written.
    AlreadyExists,
}

/// One listed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInfo {
    /// The key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last read with [`GetOptions::record_access`] (or written, if never read
    /// since). Backends that cannot track reads give the modification time.
    pub last_access: DateTime<Utc>,
}

/// What [`StoreBackend::try_claim`] found.
#[derive(Debug)]
pub enum ClaimAttempt {
    /// The caller holds the claim until it drops the guard.
    Held(ClaimGuard),
    /// Another holder (in this process or another) has it.
    Busy,
}

/// A compute-once claim held through a lock of the backend's own (see
/// [`StoreBackend::try_claim`]). Dropping it releases the claim.
pub struct ClaimGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl ClaimGuard {
    /// A guard holding `held`, whose `Drop` releases the lock.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        ClaimGuard(Box::new(held))
    }
}

impl Debug for ClaimGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimGuard")
    }
}

/// A storage backend: stores opaque items under [`Key`]s and knows nothing of functions,
/// hashing or entries.
///
/// Every implementation must keep these promises; the conformance suite
/// (`cachette_core::plugin::testkit`, feature `testkit`) checks them:
///
/// - **Atomic visibility.** An item becomes visible whole or not at all, also when the writer dies
///   half-way or several writers race on one key. The last complete write wins.
/// - **A miss is a value.** Reading a missing item gives `Ok(None)`, never an error.
/// - **Prefixes match whole segments.** Listing under `a/b` covers `a/b/c`, never `a/bc`, and
///   never anything outside the prefix.
/// - **Reads only read.** A read writes nothing but the access it was asked to record;
///   listing changes nothing but what [`sweep`](Self::sweep) is documented to.
/// - **Access tracking.** A read with [`GetOptions::record_access`] records an access, which
///   [`list`](Self::list) reports as [`ItemInfo::last_access`]; least recently accessed items
///   are evicted first.
/// - **Clones share state.** Backends are used behind `Arc`; two handles built from the same
///   configuration see the same items.
///
/// The conveniences (`get`, `put`, `put_if_absent`, `contains`, `delete`, `delete_prefix`, …)
/// come from [`StoreBackendExt`]. The provided methods ([`get_now`](Self::get_now),
/// [`put_then_delete`](Self::put_then_delete), [`try_claim`](Self::try_claim),
/// [`sweep`](Self::sweep)) are shortcuts with a default that works; a layer forwards them like
/// the others.
#[async_trait]
pub trait StoreBackend: Send + Sync + Debug + 'static {
    /// The scheme of the backend (`"file"`, `"s3"`, `"redis"`, `"memory"`, …).
    fn scheme(&self) -> &'static str;

    /// Where the store is, as a URL that [`crate::Memory::from_url`] accepts (a plain path for
    /// the local disk). Printed in `MemorizedResult`s. It never holds a secret.
    fn location(&self) -> String;

    /// What the backend offers.
    fn capabilities(&self) -> Capabilities;

    /// Reads an item as `options` say. `Ok(None)` if it does not exist.
    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>>;

    /// Reads an item as [`get_opts`](Self::get_opts) would, on the caller's thread and without
    /// a future, when the backend can: its reads are plain blocking I/O, or no I/O at all.
    /// `None` when it cannot; the caller then awaits `get_opts`. Only callers that may block
    /// their thread call it (the synchronous calls of a `Memory`), and an answer must be the
    /// one `get_opts` would give, access recorded alike.
    ///
    /// It spares a hit the boxed future of every layer, which on a local store costs as much
    /// as the read itself. The default answers `None`, so a backend or a layer that does not
    /// override it is only read the usual way; a layer that overrides it does for the read
    /// what its `get_opts` does.
    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        let _ = (key, options);
        None
    }

    /// Writes an item whose bytes are the segments of `value`, in order, as `options` say.
    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome>;

    /// Deletes items, in batches where the store allows. Missing items are skipped.
    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()>;

    /// Writes an item as [`put_opts`](Self::put_opts) does and, once it is written, deletes
    /// the item `delete` (the core's compute-once claim of the entry it writes): both in one
    /// atomic step where the store can, so that other processes see the entry and the claim
    /// gone at once, for the price of one write.
    ///
    /// Gives the write's outcome. `delete` goes only after a write that succeeded (whatever
    /// its outcome); a failure to delete it is not an error of the write (it stays, and the
    /// core's claims expire). The default writes, then deletes, with the two methods; a layer
    /// that overrides it does for the write what its `put_opts` does.
    async fn put_then_delete(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
        delete: &Key,
    ) -> BackendResult<PutOutcome> {
        let outcome = self.put_opts(key, value, options).await?;
        if let Err(e) = self.delete_many(std::slice::from_ref(delete)).await {
            tracing::debug!(target: "cachette", "wrote {key}, but cannot delete {delete}: {e}");
        }
        Ok(outcome)
    }

    /// Takes the compute-once claim of the entry `key` through a lock of the backend's own,
    /// which every process sharing the store sees and which is released when its holder drops
    /// the guard or dies (so there is no lease to renew, and nothing stale to take over). Never
    /// waits: [`ClaimAttempt::Busy`] when another holder has it.
    ///
    /// `None` when the backend has no such locks; the core then takes its claims as items
    /// (`<entry key>.claim`, created only if absent, with a lease). The default answers `None`;
    /// a layer forwards it to the store that holds the entries, and claims are never counted
    /// as reads or writes. A backend that answers must answer for every handle on the store,
    /// in every process: two claims of one key never both hold.
    fn try_claim(&self, key: &Key) -> Option<BackendResult<ClaimAttempt>> {
        let _ = key;
        None
    }

    /// Lists the items under the prefix with their size and last access. It writes nothing.
    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>>;

    /// Removes what interrupted writers left under the prefix (temporary files, unpublished
    /// chunks) once they are known to be abandoned: their writer is gone, or they are older
    /// than any write takes. Never an item. Gives how many leftovers went. The default does
    /// nothing, for backends whose writes leave nothing behind.
    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        let _ = prefix;
        Ok(0)
    }
}

/// A shared, dynamically chosen backend.
pub type DynBackend = Arc<dyn StoreBackend>;
