//! The index layout: items of at most [`FsConfig::index_threshold`](crate::FsConfig) bytes in
//! an embedded LMDB environment in the folder [`INDEX_DIR`] of the store, larger ones one file
//! each as in the files layout (see the crate's documentation, "Layouts").
//!
//! The environment holds three databases:
//! - `items`, keyed by the item's key (its UTF-8 bytes): the item's bytes, unchanged; and, keyed
//!   by the item's key followed by a NUL byte (which no key holds, so the record sorts right
//!   after its item, on the same page as a rule), when it was written: a write of an item so
//!   changes one tree, not two;
//! - `times`, keyed by the item's key: when the item was last read with `record_access`, and
//!   for a key too long for a record beside it ([`MAX_KEY`] bytes) when it was written, in
//!   nanoseconds since the Unix epoch (two little-endian `u64`s, written then read). The
//!   accesses are written in batches, in this database of small records, so that a batch
//!   writes few pages. Versions before the records beside the items kept both times here.
//!   Listing takes the latest of an item's times;
//! - `folders`, the registry: the folders (keys' parents) that may hold files, each recorded
//!   by the write that publishes the first file in it, in the same transaction. A key missing
//!   from `items` whose folder is not recorded has no file either: a miss is answered from the
//!   index, with no system call. The registry is made by the first write of a process that
//!   finds none (an index made before it), from one walk of the store's folders; a store too
//!   large to walk, or one that could not be walked whole, records [`EVERYWHERE`], and then
//!   every miss looks for a file, as it did before the registry. A process that only reads an
//!   index without a registry looks for files too, and so does one that published a file the
//!   full index had no room to record (`Shared::no_room_for_folders`).
//!
//! Every write that may change which representation holds a key runs while holding LMDB's
//! write transaction, which is a lock shared by every process using the environment: a small
//! write puts the item and removes the file of the same key, a large one publishes its file and
//! removes the key from the index, and a create checks both places before writing. So writers
//! of the two representations never interleave, and a create has exactly one winner.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::ops::{ControlFlow, Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use cachette_core::plugin::{
    Blob, Bytes, ClaimAttempt, DateTime, GetOptions, GetResult, ItemInfo, Key, Prefix, PutMode,
    PutOutcome, Striped, Utc, coarse_unix_nanos,
};
use heed::types::Bytes as Raw;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, MdbError, RwTxn, WithoutTls};
use rustix::fs::FileType;

use crate::claims::{self, Claims};
use crate::readers::Readers;
use crate::room::{self, Entered, Gate};
use crate::tree::{self, Fault};
use crate::{FsBackend, has_reserved_segment, trust};

/// The folder of the environment, directly under the store's root. No key may name it.
pub const INDEX_DIR: &str = ".cachette-index";

/// Items of at most this many bytes go to the index, by default.
pub(crate) const DEFAULT_INDEX_THRESHOLD: u64 = 64 << 10;

/// The largest threshold allowed, and so the largest value the index ever holds: a longer one
/// read from it is refused as damaged.
pub(crate) const MAX_INDEX_THRESHOLD: u64 = 16 << 20;

/// The size of the memory map by default: the most the index can hold. The file is sparse and
/// grows with what it holds; only address space is reserved.
#[cfg(target_pointer_width = "64")]
pub(crate) const DEFAULT_INDEX_MAP_SIZE: u64 = 1 << 40;
/// The size of the memory map by default: the most the index can hold.
#[cfg(not(target_pointer_width = "64"))]
pub(crate) const DEFAULT_INDEX_MAP_SIZE: u64 = 1 << 30;

/// Reader slots of an environment, for all the processes using it: each read transaction under
/// way or kept (at most one per stripe of threads, see [`crate::readers`]) holds one, so this
/// bounds the reads of the store at once, across processes; the lock file holds 64 bytes per
/// slot (512 KiB).
const MAX_READERS: u32 = 8192;

/// The longest key LMDB stores (its `MDB_MAXKEYSIZE`); longer keys are files.
pub(crate) const MAX_KEY: usize = 511;

/// Recorded accesses are written once more than this many are pending in one part (one per
/// stripe of threads: at most 16,384 in all when 16 threads or more hit, about 1.5 MiB with
/// keys of 80 bytes, 9 MiB with the longest, of 511)...
const PENDING_MAX: usize = 1024;

/// ...or once the oldest pending one of a part is this old (checked when the next one of the
/// part is recorded).
const PENDING_AGE: Duration = Duration::from_secs(5);

/// The most accesses a part keeps while they wait to be written (the index's write lock held
/// by another process): beyond, accesses are not recorded.
const PENDING_HELD: usize = 4 * PENDING_MAX;

/// Keys deleted in one write transaction: a transaction has a limited number of dirty pages.
const DELETE_BATCH: usize = 8192;

/// Keys deleted in one write transaction of an index written through its map: a commit costs
/// no system call there, and the room a transaction keeps in the map for the pages it may copy
/// (see [`Adds::Records`]) stays within the free room a map has, so a batch of deletes does not
/// grow the map ahead of the pages it writes.
const MAPPED_DELETE_BATCH: usize = 1024;

/// The room a map keeps for a write of a few records (see [`Shared::write_txn`]), beyond the
/// value it writes.
const SMALL_WRITE: u64 = 64 << 10;

/// What a write transaction may add to the index, for the room its map keeps (see
/// [`Shared::write_txn`]).
#[derive(Debug, Clone, Copy)]
enum Adds {
    /// About this many bytes.
    Bytes(u64),
    /// Changes to this many small records of existing items (deletes, access times): each
    /// copies at most the pages on its way (two of them, say, once the ones above are copied),
    /// and no more pages than the index has, and adds at most a small record.
    Records(usize),
}

impl Adds {
    /// The bytes added, at most, to an index that uses `used`.
    fn bytes(self, used: u64) -> u64 {
        match self {
            Adds::Bytes(bytes) => bytes,
            Adds::Records(n) => {
                let n = n as u64;
                n.saturating_mul(8 << 10)
                    .min(used)
                    .saturating_add(n.saturating_mul(512))
            }
        }
    }
}

/// The length of a record of the `times` database.
const TIMES_LEN: usize = 16;

/// The name of the registry's database.
const FOLDERS: &str = "folders";

/// The record of the registry that says any folder may hold files. No folder has this name: no
/// key holds the reserved segment [`INDEX_DIR`].
const EVERYWHERE: &[u8] = INDEX_DIR.as_bytes();

/// The most entries the walk that makes the registry looks at: a larger store records
/// [`EVERYWHERE`].
#[cfg(not(test))]
const REGISTRY_WALK_MAX: usize = 1_000_000;
#[cfg(test)]
const REGISTRY_WALK_MAX: usize = 64;

/// The room a map makes for the registry's records, when they do not fit in its free room.
const REGISTRY_ROOM: u64 = 64 << 20;

type Db = Database<'static, Raw, Raw>;

/// The two databases of an environment that every index has.
#[derive(Debug, Clone, Copy)]
struct Dbs {
    items: Db,
    times: Db,
}

/// The key of the times record kept beside the item `k` in `items`, or `None` when `k` is too
/// long for it (then its times are in `times`).
fn times_key(k: &[u8]) -> Option<TimesKey> {
    (k.len() < MAX_KEY).then(|| {
        let mut key = TimesKey {
            bytes: [0; MAX_KEY],
            len: k.len() + 1,
        };
        key.bytes[..k.len()].copy_from_slice(k);
        key
    })
}

/// The key of a times record beside its item: the item's key and a NUL byte, on the stack.
struct TimesKey {
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl std::ops::Deref for TimesKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The item whose times record is under `k` in `items`, if `k` is such a record's key.
fn times_of(k: &[u8]) -> Option<&[u8]> {
    k.strip_suffix(&[0])
}

impl Dbs {
    /// Records when the item `k` was written: beside it when its key allows, else in `times`.
    fn put_written(&self, txn: &mut RwTxn<'_>, k: &[u8], written: u64) -> heed::Result<()> {
        let record = encode_times(written, 0);
        match times_key(k) {
            Some(tk) => self.items.put(txn, &tk, &record),
            None => self.times.put(txn, k, &record),
        }
    }

    /// Deletes the item `k` and its times; whether the item was there.
    fn delete_item(&self, txn: &mut RwTxn<'_>, k: &[u8]) -> heed::Result<bool> {
        let deleted = self.items.delete(txn, k)?;
        if let Some(tk) = times_key(k) {
            self.items.delete(txn, &tk)?;
        }
        self.times.delete(txn, k)?;
        Ok(deleted)
    }
}

/// What the registry of an environment says of folders.
#[derive(Debug, Clone, Copy)]
enum Registry {
    /// The folders that may hold files: a key whose folder is not one of them has no file.
    Folders(Db),
    /// Any folder may hold files.
    Everywhere,
}

/// Where an item is, as far as the index can tell.
#[derive(Debug)]
pub(crate) enum InIndex {
    /// In the index.
    Found(GetResult),
    /// Nowhere: neither in the index nor as a file.
    Nowhere,
    /// Not in the index: it may be a file.
    NotHere,
}

/// The index of a store: where its environment is, and the environment once opened.
pub(crate) struct Index {
    dir: PathBuf,
    threshold: u64,
    map_size: usize,
    durable: bool,
    /// Written through its memory map where the file system allows (see [`crate::room`]).
    write_map: bool,
    /// The environment, once opened for reading and writing: kept for the store's life.
    shared: OnceLock<Arc<Shared>>,
    /// The environment while it can only be opened for reading (a read-only mount, a folder
    /// the process may not write), held by [`READ_ONLY`]: a write that finds the index writable
    /// again closes it, and opens it for writing.
    read_only: Mutex<Weak<Shared>>,
    /// The default layout ([`Layout::Auto`](crate::Layout::Auto)): the index is made only in a
    /// store that only the current user can write, and read only if only that user can write it.
    private_only: bool,
    /// With `private_only`: the store's folder was found to be the current user's alone, on a
    /// local file system.
    private: AtomicBool,
    /// The store is on a network file system, its index is damaged, or (with `private_only`)
    /// other users may write the store and it has no index: the files layout is used instead.
    unusable: AtomicBool,
    /// The index was found full once (warned once).
    full: AtomicBool,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .field("threshold", &self.threshold)
            .field("map_size", &self.map_size)
            .field("private_only", &self.private_only)
            .field("open", &self.shared.get().is_some())
            .field("unusable", &self.unusable.load(Ordering::Relaxed))
            .finish()
    }
}

impl Index {
    /// The index of the store in `root`; with `private_only`, only where nobody else may write
    /// it (see the field). Nothing is opened or created.
    pub(crate) fn new(
        root: &Path,
        threshold: u64,
        map_size: usize,
        durable: bool,
        write_map: bool,
        private_only: bool,
    ) -> Self {
        // LMDB wants a multiple of the page size: a multiple of 1 MiB is one on every system.
        let map_size = map_size
            .checked_next_multiple_of(1 << 20)
            .unwrap_or(map_size & !((1 << 20) - 1));
        Index {
            dir: root.join(INDEX_DIR),
            threshold,
            map_size,
            durable,
            write_map,
            private_only,
            private: AtomicBool::new(false),
            shared: OnceLock::new(),
            read_only: Mutex::new(Weak::new()),
            unusable: AtomicBool::new(false),
            full: AtomicBool::new(false),
        }
    }
}

/// An open environment, shared by every store of this process on the same folder: LMDB must
/// not open one environment twice in a process.
struct Shared {
    env: Env<WithoutTls>,
    /// The read transactions kept between reads (see [`crate::readers`]).
    readers: Arc<Readers>,
    dbs: OnceLock<Dbs>,
    /// The registry, once known to exist.
    registry: OnceLock<Registry>,
    /// A read looked for the registry and found none (it is looked for again by a write).
    no_registry_read: AtomicBool,
    /// The registry had no room for a folder this process published a file in: its reads look
    /// for files in every folder.
    files_everywhere: AtomicBool,
    /// Commits are flushed to the device by LMDB (the environment was opened without
    /// `MDB_NOSYNC`).
    synced: bool,
    /// Opened for reading only (`MDB_RDONLY`): the process could not write the index when it
    /// opened it.
    read_only: bool,
    /// The accesses recorded and not yet written, one part per stripe of threads, each behind
    /// its own lock, so that hits on several threads rarely wait for each other, even on one key
    /// (a key read on several stripes is pending in each, and the latest time counts).
    pending: Striped<PendingPart>,
    /// The compute-once claims of this process on the environment.
    claims: Arc<Claims>,
    /// A thread is writing the pending accesses (see [`Shared::record_access`]).
    flushing: AtomicBool,
    /// Held while pending accesses are taken and written: a flush (before a listing, say) waits
    /// for one under way, whose accesses are otherwise neither pending nor written.
    writing: Mutex<()>,
    /// The last key a read of each stripe of threads found nowhere, with the commit it read
    /// (see [`Shared::still_nowhere`]).
    nowhere: Striped<Mutex<Nowhere>>,
    /// The index written through its map, and how its map grows (see [`crate::room`]);
    /// `None` when it is written with `pwrite`.
    room: Option<Room>,
    /// The transactions of this process under way, held back while the map changes.
    gate: Gate,
    /// Lookups in the databases by reads (to test those answered without one).
    #[cfg(test)]
    lookups: std::sync::atomic::AtomicUsize,
}

/// What an index written through its map keeps to make its map longer.
#[derive(Debug)]
struct Room {
    /// The index's folder, whose lock (`flock`) orders the changes of the data file's length
    /// between processes.
    dir: rustix::fd::OwnedFd,
    /// The data file (LMDB's, duplicated): only its length and its blocks are changed through
    /// it, never its bytes.
    data: std::fs::File,
    /// The longest the map grows: [`FsConfig::index_map_size`](crate::FsConfig).
    most: u64,
    /// LMDB's page size.
    page: u64,
    /// Held by each write transaction of this process from before it begins (it may wait there
    /// for the write lock of another process) until it ends, and by a change of the map, which
    /// so never waits for a writer of this process, holding reads back meanwhile.
    writer: Mutex<()>,
    /// The end of the pages read ahead (see [`Room::read_ahead`]).
    ahead: AtomicU64,
}

impl Room {
    /// Has the system read the pages past `used` (the end of the pages the index uses) into
    /// its page cache before a write that may add `adds` bytes takes them: at least
    /// [`room::AHEAD`] bytes at a time. The map is read at random (`MDB_NORDAHEAD`), so a first
    /// write to a page not read yet would wait for it (a major fault), one page at a time: a
    /// batch of deletes, which copies thousands of pages, took 10,000 of them. Best effort.
    fn read_ahead(&self, used: u64, adds: u64) {
        let want = used.saturating_add(adds.max(room::AHEAD / 2));
        let ahead = self.ahead.load(Ordering::Relaxed);
        if want <= ahead {
            return;
        }
        let from = ahead.max(used);
        let to = used.saturating_add(adds.max(room::AHEAD));
        // The system reads at most its read-ahead window a call.
        let mut at = from;
        while let Some(len) = std::num::NonZeroU64::new(to.saturating_sub(at).min(room::AHEAD)) {
            let _ = rustix::fs::fadvise(&self.data, at, Some(len), rustix::fs::Advice::WillNeed);
            at += len.get();
        }
        self.ahead.fetch_max(to, Ordering::Relaxed);
    }
}

/// A write transaction, counted by the environment's [`Gate`] until it ends.
struct Writing<'e> {
    // Dropped before the count and the lock, as fields are in their order.
    txn: RwTxn<'e>,
    _entered: Option<Entered<'e>>,
    _writer: Option<std::sync::MutexGuard<'e, ()>>,
}

impl<'e> Deref for Writing<'e> {
    type Target = RwTxn<'e>;

    fn deref(&self) -> &RwTxn<'e> {
        &self.txn
    }
}

impl<'e> DerefMut for Writing<'e> {
    fn deref_mut(&mut self) -> &mut RwTxn<'e> {
        &mut self.txn
    }
}

/// A read transaction, counted by the environment's [`Gate`] until it ends.
struct Reading<'e> {
    // Dropped before the count, as fields are in their order.
    txn: heed::RoTxn<'e, WithoutTls>,
    _entered: Option<Entered<'e>>,
}

impl<'e> Deref for Reading<'e> {
    type Target = heed::RoTxn<'e, WithoutTls>;

    fn deref(&self) -> &heed::RoTxn<'e, WithoutTls> {
        &self.txn
    }
}

/// A key found nowhere by a read, and the commit that read saw (`None`: no key yet). Kept in
/// a buffer that the next such key reuses.
#[derive(Debug, Default)]
struct Nowhere {
    key: Vec<u8>,
    txn: Option<usize>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("env", &self.env)
            .field("synced", &self.synced)
            .finish_non_exhaustive()
    }
}

/// A part of the accesses recorded in memory, with a stamp of the last one: a key and a time
/// (see [`access_stamp`]).
#[derive(Debug, Default)]
struct PendingPart {
    /// The stamp of the access this part recorded last: an access to the same key at the same
    /// time again (a run of hits within a tick of the coarse clock) changes nothing, pending or
    /// written, and is skipped without taking the lock.
    last: AtomicU64,
    accesses: Mutex<Pending>,
}

/// Accesses recorded in memory, not yet written.
#[derive(Debug, Default)]
struct Pending {
    /// Key → time of the last access (nanoseconds since the epoch).
    at: HashMap<Vec<u8>, u64, foldhash::fast::RandomState>,
    /// When the oldest of them was recorded (nanoseconds since the epoch).
    since: Option<u64>,
}

/// The stamp of an access to `key` at `now` (nanoseconds since the epoch): 40 bits of its
/// [tail tag](Key::tail_tag) (where keys of entries differ: the arguments' digest), and the
/// time in milliseconds, modulo 2^24 (about four and a half hours); never zero. Two accesses
/// with one stamp are, but for one chance in 2^40, of one key within one millisecond: skipping
/// the second leaves the key's recorded time less than a millisecond early.
fn access_stamp(key: &Key, now: u64) -> u64 {
    let tag = key.tail_tag() | (1 << 24);
    (tag & !((1 << 24) - 1)) | ((now / 1_000_000) & ((1 << 24) - 1))
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush();
        // They hold the environment open.
        self.readers.drop_kept();
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let mine = self
            .read_only
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if mine.strong_count() == 0 {
            return;
        }
        // The stores using a read-only environment are its weak references, but for the one of
        // `OPEN`: the last one closes it.
        let mut envs = READ_ONLY.lock().unwrap_or_else(PoisonError::into_inner);
        if envs.get(&self.dir).is_some_and(|env| {
            std::ptr::eq(Arc::as_ptr(env), mine.as_ptr()) && Arc::weak_count(env) <= 2
        }) {
            envs.remove(&self.dir);
        }
    }
}

/// The environments of this process opened for reading only, by the folder of their index.
/// Held here rather than by the stores, which hold weak references, so that a write that finds
/// the index writable again can close it, whatever other stores of the process on the folder
/// do (LMDB opens an environment once per process).
static READ_ONLY: LazyLock<Mutex<HashMap<PathBuf, Arc<Shared>>>> = LazyLock::new(Mutex::default);

/// The open environments of this process, by canonical path.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = LazyLock::new(Mutex::default);

impl Shared {
    /// Counts a transaction about to begin (see [`Gate`]): nothing to count when the map never
    /// changes.
    fn enter(&self) -> heed::Result<Option<Entered<'_>>> {
        match self.room {
            Some(_) => Ok(Some(self.gate.enter()?)),
            None => Ok(None),
        }
    }

    /// A write transaction that may add what `adds` says to the index, once the map has room
    /// for it and some more (see [`crate::room`]).
    fn write_txn(&self, adds: Adds) -> heed::Result<Writing<'_>> {
        self.following_growth(|| {
            self.make_room(adds)?;
            let writer = self
                .room
                .as_ref()
                .map(|room| room.writer.lock().unwrap_or_else(PoisonError::into_inner));
            let entered = self.enter()?;
            Ok(Writing {
                txn: self.env.write_txn()?,
                _entered: entered,
                _writer: writer,
            })
        })
    }

    /// A read transaction of the newest commit.
    fn read_txn(&self) -> heed::Result<Reading<'_>> {
        self.following_growth(|| {
            let entered = self.enter()?;
            Ok(Reading {
                txn: self.env.read_txn()?,
                _entered: entered,
            })
        })
    }

    /// Runs `begin`, which begins a transaction and ends what it counted when it fails, again
    /// (three times at most) once this process maps the file as long as another process made
    /// it, when that one committed past the end of this one's map (`MDB_MAP_RESIZED`).
    fn following_growth<T>(&self, mut begin: impl FnMut() -> heed::Result<T>) -> heed::Result<T> {
        let mut tries = 0;
        loop {
            match begin() {
                Err(heed::Error::Mdb(MdbError::MapResized)) if tries < 3 => {
                    tries += 1;
                    self.remap(None)?;
                }
                done => return done,
            }
        }
    }

    /// Makes the map longer if a write of `extra` bytes would leave it less free room than
    /// [`room::wanted`] asks, or if another process committed more than it maps. Never call it
    /// during a transaction of this process.
    fn make_room(&self, adds: Adds) -> heed::Result<()> {
        let Some(room) = &self.room else {
            return Ok(());
        };
        // Counted while it reads the meta page, in the map.
        let info = {
            let _entered = self.enter()?;
            self.env.info()
        };
        let used = (info.last_page_number as u64)
            .saturating_add(1)
            .saturating_mul(room.page);
        let adds = adds.bytes(used);
        let wanted = room::wanted(used, adds);
        if wanted > info.map_size as u64 {
            self.remap(Some(wanted))?;
        }
        room.read_ahead(used, adds);
        Ok(())
    }

    /// Maps the data file again: longer, to hold `wanted` bytes (allocated first), or, with
    /// `None`, as long as the file is (another process made it longer). A device without room
    /// for the new length leaves the map as it is; so does a transaction of this process that
    /// does not end within a while. Never call it during a transaction of this process.
    #[allow(unsafe_code)]
    fn remap(&self, wanted: Option<u64>) -> heed::Result<()> {
        let Some(room) = &self.room else {
            return Ok(());
        };
        // Growths wait for the writers of this process; a read that follows the map of another
        // process waits at most a while.
        let _writer = match wanted {
            Some(_) => room.writer.lock().unwrap_or_else(PoisonError::into_inner),
            None => room::lock_within(&room.writer)?,
        };
        // Read in the map, which only this function changes, under the lock just taken.
        let map = self.env.info().map_size as u64;
        // A whole number of the system's pages, as a map is.
        let target = |len: u64| {
            let len = len.next_multiple_of(room::os_page());
            match wanted {
                Some(wanted) => room::grown(map, wanted, room.most, len),
                None => len,
            }
        };
        // Nothing to do (another thread made it longer meanwhile, the map is as long as it may
        // be, no other process made the file longer): reads are not held back.
        if target(room::length(&room.data)?) <= map {
            return Ok(());
        }
        let Some(shut) = self.gate.shut() else {
            tracing::debug!(target: "cachette", "{}: the index's map was not made longer: transactions of this process did not end", self.env.path().display());
            return Ok(());
        };
        // Kept transactions are not under way, but none outlives the map it began in.
        self.readers.drop_kept();
        let _locked = match room::Locked::new(&room.dir) {
            Ok(locked) => locked,
            // A growth is left out (a write that does not fit finds the map full); a process
            // that must follow another's growth cannot read without it.
            Err(e) if e.kind() == io::ErrorKind::TimedOut && wanted.is_some() => {
                tracing::debug!(target: "cachette", "{}: {e}; the index's map was not made longer", self.env.path().display());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let len = room::length(&room.data)?;
        let longest = room.most.max(map);
        if len > longest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the index's data file is {len} bytes long, more than its map may be ({longest} bytes, index_map_size)"),
            )
            .into());
        }
        let mut target = target(len);
        // Every byte mapped has blocks: what another process made is allocated too (a no-op
        // but for what a process killed while it opened a new index left).
        if let Err(e) = room::allocate(&room.data, target) {
            tracing::debug!(target: "cachette", "{}: cannot make the index's data file {target} bytes long: {e}", self.env.path().display());
            let made = len.next_multiple_of(room::os_page());
            if made <= map {
                return Ok(());
            }
            room::allocate(&room.data, made)?;
            target = made;
        }
        if target <= map {
            return Ok(());
        }
        let Ok(target) = usize::try_from(target) else {
            return Ok(());
        };
        // SAFETY: no transaction of this process is under way: the gate is shut once every one
        // counted ended, kept read transactions were just ended, and every transaction of the
        // environment is counted (`enter` in `read_txn`, `write_txn`, and around every use of
        // the kept ones). Every byte of the new length has blocks on the device, allocated
        // above, under the lock that every process holds to make the file longer.
        if let Err(e) = unsafe { self.env.resize(target) } {
            // An invalid length (heed's check), or `EINVAL` (LMDB saw a write transaction under
            // way, none is, as said above): nothing was changed. Any other error: LMDB
            // unmapped the old map before it failed, and nothing may use the environment.
            if !matches!(&e, heed::Error::Io(e) if e.kind() == io::ErrorKind::InvalidInput) {
                Gate::break_down(shut);
            }
            return Err(e);
        }
        Ok(())
    }

    /// The databases, created if `create` (which takes the write lock once per process). `None`
    /// if they do not exist and `create` is false.
    fn dbs(&self, create: bool) -> heed::Result<Option<Dbs>> {
        if let Some(dbs) = self.dbs.get() {
            return Ok(Some(*dbs));
        }
        let opened = if create {
            let Writing {
                txn,
                _entered,
                _writer,
            } = self.write_txn(Adds::Bytes(SMALL_WRITE))?;
            self.env
                .create_databases_and_commit(txn, |opener, txn| -> heed::Result<_> {
                    let items = opener.create_database::<Raw, Raw>(txn, Some("items"))?;
                    let times = opener.create_database::<Raw, Raw>(txn, Some("times"))?;
                    Ok(CommitOrAbort::<_, ()>::Commit((items, times)))
                })?
        } else {
            let Reading { txn, _entered } = self.read_txn()?;
            self.env
                .open_databases_and_commit(txn, |opener, txn| -> heed::Result<_> {
                    let items = opener.open_database::<Raw, Raw>(txn, Some("items"))?;
                    let times = opener.open_database::<Raw, Raw>(txn, Some("times"))?;
                    Ok(match (items, times) {
                        (Some(items), Some(times)) => CommitOrAbort::Commit((items, times)),
                        _ => CommitOrAbort::Abort(()),
                    })
                })?
        };
        let CommitOrAbort::Commit((items, times)) = opened else {
            return Ok(None);
        };
        let dbs = *self.dbs.get_or_init(|| Dbs { items, times });
        Ok(Some(dbs))
    }

    /// Finds the registry if it exists, without writing. `None` if there is none.
    fn open_registry(&self) -> heed::Result<Option<Registry>> {
        let Reading { txn, _entered } = self.read_txn()?;
        let opened = self
            .env
            .open_databases_and_commit(txn, |opener, txn| -> heed::Result<_> {
                Ok(
                    match opener.open_database::<Raw, Raw>(txn, Some(FOLDERS))? {
                        Some(folders) => CommitOrAbort::Commit(folders),
                        None => CommitOrAbort::Abort(()),
                    },
                )
            })?;
        drop(_entered);
        let CommitOrAbort::Commit(folders) = opened else {
            return Ok(None);
        };
        self.known_registry(folders).map(Some)
    }

    /// Keeps the registry `folders` (which exists), as its records say.
    fn known_registry(&self, folders: Db) -> heed::Result<Registry> {
        let txn = self.read_txn()?;
        let registry = if folders.get(&txn, EVERYWHERE)?.is_some() {
            Registry::Everywhere
        } else {
            Registry::Folders(folders)
        };
        Ok(*self.registry.get_or_init(|| registry))
    }

    /// The registry's database and the folder of `key`, when the registry answers for it: it
    /// records folders, this process could write to it, and `key` has a folder (a key at the
    /// root has none to record: it is always looked for).
    fn folder_record<'k>(&self, key: &'k Key) -> Option<(Db, &'k [u8])> {
        self.folder_record_in(self.registry.get(), key)
    }

    /// [`folder_record`](Self::folder_record), with `registry` as this process knew it.
    fn folder_record_in<'k>(
        &self,
        registry: Option<&Registry>,
        key: &'k Key,
    ) -> Option<(Db, &'k [u8])> {
        let Some(Registry::Folders(folders)) = registry else {
            return None;
        };
        let folder = key.parent();
        (!self.files_everywhere.load(Ordering::Relaxed) && !folder.is_empty())
            .then_some((*folders, folder.as_bytes()))
    }

    /// Whether `key` may be a file, as the registry says (yes if it cannot answer). A key too
    /// long for the index is always a file, published without its folder recorded.
    fn may_be_file(&self, txn: &heed::RoTxn<'_>, key: &Key) -> heed::Result<bool> {
        self.may_be_file_in(txn, self.registry.get(), key)
    }

    /// [`may_be_file`](Self::may_be_file), with `registry` as this process knew it when `txn`
    /// began: a database opened since cannot be read in `txn`.
    fn may_be_file_in(
        &self,
        txn: &heed::RoTxn<'_>,
        registry: Option<&Registry>,
        key: &Key,
    ) -> heed::Result<bool> {
        if key.as_str().len() > MAX_KEY {
            return Ok(true);
        }
        let Some((folders, folder)) = self.folder_record_in(registry, key) else {
            return Ok(true);
        };
        Ok(folders.get(txn, folder)?.is_some())
    }

    /// Records the folder of `key` in the registry, in `txn`, unless it is there. Whether it
    /// recorded it.
    fn register_folder(&self, txn: &mut RwTxn<'_>, key: &Key) -> heed::Result<bool> {
        let Some((folders, folder)) = self.folder_record(key) else {
            return Ok(false);
        };
        if folders.get(txn, folder)?.is_some() {
            return Ok(false);
        }
        folders.put(txn, folder, &[])?;
        Ok(true)
    }

    /// Notes that the registry had no room for a folder this process publishes a file in: its
    /// reads then look for files in every folder (warned once).
    fn no_room_for_folders(&self, location: &str, e: &heed::Error) {
        if !self.files_everywhere.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "cachette",
                "{location}: the index is full ({e}); this process looks for files in every folder, and other processes may not see the files it writes"
            );
        }
    }

    /// Whether the read of this thread's stripe that last found a key nowhere was of `k`, and no
    /// commit was made since, by any process (the environment's last transaction, read from its
    /// meta page, with no system call and no lock): then `k` is still nowhere, as a new read
    /// would find. A compute-once miss reads its key twice, before and after taking its claim,
    /// and the second read, which only asks whether the key exists, is mostly answered so.
    /// Every change to where an item is commits: an item put or deleted, a folder recorded in
    /// the registry before its first file. A file published in a folder already recorded
    /// commits nothing, but a read of a key of that folder never finds it nowhere. A process
    /// that could not record a folder looks for files everywhere, and no longer trusts these
    /// answers. It reads the meta page in the map: call it counted in by the [`Gate`].
    fn still_nowhere(&self, k: &[u8]) -> bool {
        let Ok(last) = self.nowhere.mine().try_lock() else {
            return false;
        };
        last.key == k
            && last
                .txn
                .is_some_and(|txn| txn == self.env.info().last_txn_id)
            && !self.files_everywhere.load(Ordering::Relaxed)
    }

    /// Keeps `k` as found nowhere by a read of the commit `txn` (see
    /// [`still_nowhere`](Self::still_nowhere)).
    fn found_nowhere(&self, k: &[u8], txn: usize) {
        if let Ok(mut last) = self.nowhere.mine().try_lock() {
            last.key.clear();
            last.key.extend_from_slice(k);
            last.txn = Some(txn);
        }
    }

    /// Records an access to `key` in memory; has the pending ones written if there are many,
    /// or the oldest is old, by a thread of their own: a read never waits for the index's write
    /// lock, which another process may hold for long (stopped, or on a hung disk). While the
    /// writing waits, at most [`PENDING_HELD`] accesses a part are kept; later ones are not
    /// recorded (accesses are best effort).
    fn record_access(self: &Arc<Self>, key: &Key) {
        // The coarse clock: its resolution (a few milliseconds) is finer than the
        // least-recently-used order needs, and it costs a sixth of the precise clock.
        let now = coarse_unix_nanos();
        let part = self.pending.mine();
        let stamp = access_stamp(key, now);
        if part.last.load(Ordering::Relaxed) == stamp {
            return;
        }
        let key = key.as_str().as_bytes();
        let due = {
            let mut pending = part.accesses.lock().unwrap_or_else(PoisonError::into_inner);
            // A key read again keeps its entry: no allocation on repeated hits.
            let held = pending.at.len();
            let recorded = match pending.at.get_mut(key) {
                Some(at) => {
                    *at = now;
                    true
                }
                None if held >= PENDING_HELD => false,
                None => {
                    pending.at.insert(key.to_vec(), now);
                    true
                }
            };
            if recorded {
                part.last.store(stamp, Ordering::Relaxed);
            }
            let since = *pending.since.get_or_insert(now);
            pending.at.len() > PENDING_MAX
                || Duration::from_nanos(now.saturating_sub(since)) >= PENDING_AGE
        };
        if due {
            self.flush_in_background();
        }
    }

    /// Writes the pending accesses on a thread of its own, unless one is at it.
    fn flush_in_background(self: &Arc<Self>) {
        if self.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("cachette-index-accesses".into())
            .spawn(move || {
                shared.flush();
                shared.flushing.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            // No thread to be had: written here.
            self.flush();
            self.flushing.store(false, Ordering::Release);
        }
    }

    /// Writes the pending accesses, in one write transaction. Best effort, as in the files
    /// layout. Never call it holding a write transaction.
    fn flush(&self) {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let parts: Vec<_> = self
            .pending
            .iter()
            .map(|part| {
                let mut pending = part.accesses.lock().unwrap_or_else(PoisonError::into_inner);
                pending.since = None;
                std::mem::take(&mut pending.at)
            })
            .filter(|at| !at.is_empty())
            .collect();
        if parts.is_empty() {
            return;
        }
        let at = parts.iter().flatten();
        let Some(dbs) = self.dbs.get().copied() else {
            return;
        };
        let keys = parts.iter().map(HashMap::len).sum::<usize>();
        let written = self.write_txn(Adds::Records(keys)).and_then(|mut txn| {
            for (key, &time) in at {
                if dbs.items.get(&txn, key)?.is_none() {
                    continue; // Deleted since: not brought back.
                }
                // In `times`, whose records are small, so that this writes few pages (the write
                // time beside the item is left as it is).
                let (written, accessed) = dbs
                    .times
                    .get(&txn, key)?
                    .and_then(decode_times)
                    .unwrap_or((0, 0));
                if time > accessed {
                    dbs.times.put(&mut txn, key, &encode_times(written, time))?;
                }
            }
            self.commit(txn, false)
        });
        if let Err(e) = written {
            tracing::debug!(target: "cachette", "cannot record accesses in {}: {e}", self.env.path().display());
        }
    }

    /// Commits `txn`, flushed to the device if the store is durable and the environment does
    /// not flush its commits itself.
    fn commit(&self, txn: Writing<'_>, durable: bool) -> heed::Result<()> {
        // The environment is synced with its map, counted in by the gate till then.
        let Writing {
            txn,
            _entered,
            _writer,
        } = txn;
        txn.commit()?;
        if durable && !self.synced {
            self.env.force_sync()?;
        }
        Ok(())
    }
}

/// The environment in the folder `dir` (which exists), opened once per process; `Err` with why,
/// when its data file is cut short (see [`cut_short`]).
fn open_shared(
    dir: &Path,
    map_size: usize,
    durable: bool,
    write_map: bool,
) -> heed::Result<Result<Arc<Shared>, String>> {
    let path = std::fs::canonicalize(dir)?;
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    open.retain(|_, shared| shared.strong_count() > 0);
    if let Some(shared) = open.get(&path).and_then(Weak::upgrade) {
        return Ok(Ok(shared));
    }
    let mut read_only = false;
    let mut room = None;
    let env = match write_map {
        true => match open_mapped(&path, map_size, durable)? {
            Mapped::Opened(env, mapped) => {
                room = Some(mapped);
                env
            }
            Mapped::CutShort(why) => return Ok(Err(why)),
            Mapped::NotHere => open_waiting(&path, map_size, durable, &mut read_only)?,
        },
        false => open_waiting(&path, map_size, durable, &mut read_only)?,
    };
    if room.is_none()
        && let Some(why) = cut_short(&env)?
    {
        return Ok(Err(why));
    }
    // Reader slots of processes that died (a crash, `kill -9`) would pin old pages for ever.
    match env.clear_stale_readers() {
        Ok(0) => {}
        Ok(n) => {
            tracing::debug!(target: "cachette", "{}: cleared {n} reader slots of dead processes", path.display());
        }
        Err(e) => {
            tracing::debug!(target: "cachette", "{}: cannot check reader slots: {e}", path.display());
        }
    }
    let shared = Arc::new(Shared {
        env,
        readers: Arc::default(),
        dbs: OnceLock::new(),
        registry: OnceLock::new(),
        no_registry_read: AtomicBool::new(false),
        files_everywhere: AtomicBool::new(false),
        synced: durable,
        read_only,
        pending: Striped::default(),
        claims: Arc::default(),
        flushing: AtomicBool::new(false),
        writing: Mutex::new(()),
        nowhere: Striped::default(),
        room,
        gate: Gate::default(),
        #[cfg(test)]
        lookups: std::sync::atomic::AtomicUsize::new(0),
    });
    open.insert(path, Arc::downgrade(&shared));
    Ok(Ok(shared))
}

/// How [`open_mapped`] opened an environment.
enum Mapped {
    /// Written through its map, which covers the whole data file, allocated.
    Opened(Env<WithoutTls>, Room),
    /// Its data file is cut short (see [`cut_short`]): why.
    CutShort(String),
    /// Not on a file system that reserves blocks, or the blocks could not be had: to be opened
    /// to write with `pwrite`.
    NotHere,
}

/// Opens the environment in the folder `path` (canonical) to be written through its
/// map (see [`crate::room`]): its map as long as its data file (or [`room::INITIAL`] for a new
/// one, at most `most`), all of it allocated, holding the folder's lock.
fn open_mapped(path: &Path, most: usize, durable: bool) -> heed::Result<Mapped> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let dir = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    if !fs_magic(dir.as_fd()).is_some_and(room::reserves_blocks) {
        return Ok(Mapped::NotHere);
    }
    // Another process that holds the lock too long (stopped, hung): opened to write with
    // `pwrite`, which takes none.
    let locked = match room::Locked::new(&dir) {
        Ok(locked) => locked,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            tracing::debug!(target: "cachette", "{}: {e}; the index is written with pwrite", path.display());
            return Ok(Mapped::NotHere);
        }
        Err(e) => return Err(e.into()),
    };
    let len = match rustix::fs::statat(&dir, "data.mdb", AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => room::checked_length(&st),
        Err(rustix::io::Errno::NOENT) => Ok(0),
        Err(e) => return Err(io::Error::from(e).into()),
    };
    // Longer than its map may be, or made longer by another program: not allocated nor mapped
    // whole here, but written with `pwrite`, which reads only the pages in use.
    let len = match len {
        Ok(len) if len <= most as u64 => len,
        Ok(len) => {
            tracing::debug!(target: "cachette", "{}: the index's data file is {len} bytes long, more than index_map_size; it is written with pwrite", path.display());
            return Ok(Mapped::NotHere);
        }
        Err(e) => {
            tracing::debug!(target: "cachette", "{}: {e}; the index is written with pwrite", path.display());
            return Ok(Mapped::NotHere);
        }
    };
    if len > 0 {
        // Checked before it is mapped, which makes the file as long as the map: a file cut
        // short would be made whole with zeros. Read only: nothing is written.
        let mut read_only = true;
        let env = open_waiting(path, most, durable, &mut read_only)?;
        let why = cut_short(&env);
        env.prepare_for_closing().wait();
        if let Some(why) = why? {
            return Ok(Mapped::CutShort(why));
        }
    }
    // As long as the file (a whole number of pages: a file LMDB wrote is), so that a read,
    // which opens the environment too, does not make it longer.
    let map = match len {
        0 => room::INITIAL.min(most as u64),
        len => len.next_multiple_of(room::os_page()),
    };
    let Ok(map) = usize::try_from(map) else {
        return Ok(Mapped::NotHere);
    };
    let mut read_only = false;
    let env = match open_env_waiting(path, map, durable, &mut read_only, true) {
        Ok(env) => env,
        // Not to be written by this process: opened to be read.
        Err(heed::Error::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            return Ok(Mapped::NotHere);
        }
        Err(e) => return Err(e),
    };
    let data = env.try_clone_inner_file()?;
    let mapped = env.info().map_size as u64;
    // Blocks for every byte the map covers, before anything is written through it (a file
    // allocated already, as they mostly are, is left as it is).
    if let Err(e) = room::allocate(&data, mapped) {
        tracing::debug!(target: "cachette", "{}: cannot allocate the index's data file ({e}); it is written with pwrite", path.display());
        drop(data);
        env.prepare_for_closing().wait();
        return Ok(Mapped::NotHere);
    }
    drop(locked);
    let page = env.unnamed_database_stat().page_size as u64;
    Ok(Mapped::Opened(
        env,
        Room {
            dir,
            data,
            most: most as u64,
            page,
            writer: Mutex::new(()),
            ahead: AtomicU64::new(0),
        },
    ))
}

/// Opens the environment in the folder `path` to be written with `pwrite`, or read only when
/// `read_only` is or when this process may not write it (then sets it).
fn open_waiting(
    path: &Path,
    map_size: usize,
    durable: bool,
    read_only: &mut bool,
) -> heed::Result<Env<WithoutTls>> {
    open_env_waiting(path, map_size, durable, read_only, false)
}

/// Opens the environment in the folder `path`, written through its map if `write_map`, and
/// waits for this process's last one on the folder to be closed.
fn open_env_waiting(
    path: &Path,
    map_size: usize,
    durable: bool,
    read_only: &mut bool,
    write_map: bool,
) -> heed::Result<Env<WithoutTls>> {
    let mut tries = 0;
    loop {
        match open_env(path, map_size, durable, *read_only, write_map) {
            // A store this process may read but not write (a read-only mount, another user's
            // store): read it; writes fail, as they do in the files layout.
            Err(heed::Error::Io(e))
                if !*read_only
                    && matches!(
                        e.kind(),
                        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                    ) =>
            {
                if write_map {
                    return Err(heed::Error::Io(e));
                }
                *read_only = true;
            }
            // The last store of this process on the folder was dropped, and its environment is
            // being closed: wait for it.
            Err(heed::Error::EnvAlreadyOpened) if tries < 100 => {
                tries += 1;
                match heed::env_closing_event(path) {
                    Some(closing) => {
                        closing.wait_timeout(Duration::from_millis(100));
                    }
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            other => return other,
        }
    }
}

/// The fewest bytes of a data file: its two meta pages, of the smallest page size LMDB uses.
const MIN_DATA_LEN: u64 = 2 * 4096;

/// The status of the file `name` in the index's folder `dir` (whose path is `path`): `None` if
/// there is none, an error if it is a link or not a regular file.
fn regular_file(
    dir: BorrowedFd<'_>,
    path: &Path,
    name: &str,
) -> Result<Option<rustix::fs::Stat>, Fault> {
    let file = path.join(name);
    match tree::lstat_at(dir, name).map_err(|e| Fault::io(e, &file))? {
        None => Ok(None),
        Some(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Ok(Some(st)),
            FileType::Symlink => Err(Fault::Link(file)),
            _ => Err(Fault::Special {
                path: file,
                what: "file that is not a regular file",
            }),
        },
    }
}

/// Why the environment's data file cannot be read, if it cannot: LMDB maps the file and reads
/// the pages its last commit uses where they would be, and one past the file's end kills the
/// process (`SIGBUS`). A data file cut short (a copy that ran out of room, a hostile writer) is
/// refused before any page but the two first is read. Only the meta pages are read here.
fn cut_short(env: &Env<WithoutTls>) -> heed::Result<Option<String>> {
    let page_size = env.unnamed_database_stat().page_size as u64;
    let pages = (env.info().last_page_number as u64).saturating_add(1);
    let needed = pages.saturating_mul(page_size);
    let len = env.real_disk_size()?;
    Ok((len < needed)
        .then(|| format!("its data file holds {len} bytes, and its last commit uses {needed}")))
}

/// An open environment, as [`FsBackend::index_handles`] gives it.
enum EnvRef<'i> {
    /// The environment opened for writing, kept for the store's life: borrowed, so a hit takes
    /// no reference count.
    Kept(&'i Arc<Shared>),
    /// An environment opened for reading only, which a later write may replace.
    ReadOnly(Arc<Shared>),
}

impl EnvRef<'_> {
    /// The environment, shared.
    fn arc(&self) -> &Arc<Shared> {
        match self {
            EnvRef::Kept(shared) => shared,
            EnvRef::ReadOnly(shared) => shared,
        }
    }
}

impl std::ops::Deref for EnvRef<'_> {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        self.arc()
    }
}

/// Whether this process may now write the data file of the environment in the folder `dir` (a
/// read-only mount made writable again, a mode changed).
fn writable(dir: &Path) -> bool {
    use rustix::fs::{Access, AtFlags, CWD};
    rustix::fs::accessat(
        CWD,
        dir.join("data.mdb"),
        Access::WRITE_OK,
        AtFlags::EACCESS,
    )
    .is_ok()
}

/// Checks that the data file LMDB opened for `env` is the file `data.mdb` of the folder `dir`
/// (whose path is `path`), which was checked before it was opened by its path, and that only the
/// current user may write it.
fn same_data_file(env: &Env<WithoutTls>, dir: BorrowedFd<'_>, path: &Path) -> Result<(), Fault> {
    let data = path.join("data.mdb");
    let file = env
        .try_clone_inner_file()
        .map_err(|e| lmdb_fault(e, path))?;
    let opened = rustix::fs::fstat(&file).map_err(|e| Fault::io(e, &data))?;
    let here = tree::lstat_at(dir, "data.mdb").map_err(|e| Fault::io(e, &data))?;
    let why = if here.is_some_and(|here| tree::id_of(&here) == tree::id_of(&opened)) {
        match trust::others_may_write(trust::Subject::Open(file.as_fd()), &opened) {
            Some(why) => why,
            None => return Ok(()),
        }
    } else {
        "its folder was replaced while it was opened".to_owned()
    };
    Err(untrusted(path, "data.mdb", &why))
}

/// The refusal of the index in the folder `dir` because of its entry `what` (the folder itself
/// when empty), which another user may write, for `why`: what it is, and what to do.
fn untrusted(dir: &Path, what: &str, why: &str) -> Fault {
    Fault::Untrusted {
        path: if what.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(what)
        },
        why: format!(
            "the index of this store may be written by another user: {why}. LMDB trusts its \
             files, so the default layout does not read them; make the store yours alone, or \
             choose the layout in the store's URL or configuration: `layout=index` to trust its \
             writers, or delete the folder {} and use `layout=files`",
            dir.display()
        ),
    }
}

/// Opens the LMDB environment in the folder `path`: a large map (sparse), many reader slots,
/// read transactions that may move between threads (`MDB_NOTLS`: each takes a slot of its own,
/// under LMDB's reader lock, and is kept between reads, see [`crate::readers`]), and no flush on
/// commit unless `durable`; for reading only if `read_only`.
#[allow(unsafe_code)]
fn open_env(
    path: &Path,
    map_size: usize,
    durable: bool,
    read_only: bool,
    write_map: bool,
) -> heed::Result<Env<WithoutTls>> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options
        .map_size(map_size)
        .max_readers(MAX_READERS)
        .max_dbs(3);
    let mut flags = EnvFlags::NO_READ_AHEAD;
    if !durable {
        flags |= EnvFlags::NO_SYNC;
    }
    if read_only {
        flags |= EnvFlags::READ_ONLY;
    } else if write_map {
        flags |= EnvFlags::WRITE_MAP;
    }
    // SAFETY: heed marks opening unsafe because the memory map would be undefined behaviour if
    // the file were changed other than by LMDB, or the environment used in ways LMDB forbids.
    // - The environment lives in a folder no key can name (`INDEX_DIR` is reserved), so this
    //   crate never writes its files but through LMDB; other writers of the store are trusted
    //   (the crate's documentation says so: stores shared with untrusted writers keep the
    //   files layout).
    // - It is opened at most once per process: `open_shared` keeps one `Env` per canonical
    //   path, and heed refuses a second open.
    // - It is not on a network file system (checked with `statfs` before this call), and it
    //   keeps LMDB's own locking (no `MDB_NOLOCK`).
    // - `MDB_NOSYNC` only gives up durability across a system crash, which the crate's
    //   documentation states. A process crash never leaves a partial commit, with or without
    //   `MDB_WRITEMAP`: a transaction writes pages no commit uses, and its commit is the write
    //   of the meta page that names them.
    // - With `MDB_WRITEMAP` (`write_map`), the map never covers a hole of the file, whose
    //   first write would kill the process on a full device: `open_mapped` and
    //   `Shared::remap` allocate every byte before they map it (see `crate::room`), and the
    //   map changes only while no transaction of the process is under way (`Gate`).
    // - Values are only read through heed inside a transaction, and copied out before it ends.
    unsafe {
        options.flags(flags);
        options.open(path)
    }
}

/// The error of an LMDB call on the environment in `dir`.
fn lmdb_fault(e: heed::Error, dir: &Path) -> Fault {
    let error = match e {
        heed::Error::Io(e) => e,
        heed::Error::Mdb(MdbError::MapFull) => io::Error::new(
            io::ErrorKind::StorageFull,
            "the index is full (MDB_MAP_FULL)",
        ),
        other => io::Error::other(format!("LMDB: {other}")),
    };
    Fault::io(error, dir)
}

/// Whether an LMDB error says that the value does not fit (in the map, or in one transaction).
fn is_full(e: &heed::Error) -> bool {
    matches!(e, heed::Error::Mdb(MdbError::MapFull | MdbError::TxnFull))
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn encode_times(written: u64, accessed: u64) -> [u8; TIMES_LEN] {
    let mut record = [0u8; TIMES_LEN];
    record[..8].copy_from_slice(&written.to_le_bytes());
    record[8..].copy_from_slice(&accessed.to_le_bytes());
    record
}

/// A `times` record; `None` if it is malformed (then ignored).
fn decode_times(record: &[u8]) -> Option<(u64, u64)> {
    let record: &[u8; TIMES_LEN] = record.try_into().ok()?;
    let (written, accessed) = record.split_at(8);
    Some((
        u64::from_le_bytes(written.try_into().ok()?),
        u64::from_le_bytes(accessed.try_into().ok()?),
    ))
}

/// The name of the network (or otherwise shared) file system whose `statfs` type is `f_type`,
/// if it is one: LMDB's locking and memory map are not safe there. Linux's magic numbers.
pub(crate) fn network_fs_name(f_type: u64) -> Option<&'static str> {
    // Magic numbers are 32 bits; `f_type` is a signed word on some platforms.
    let name = match f_type & 0xFFFF_FFFF {
        0x6969 => "NFS",
        0x517B => "SMB",
        0xFF53_4D42 => "CIFS",
        0xFE53_4D42 => "SMB2",
        0x6573_5546 => "FUSE",
        0x00C3_6400 => "Ceph",
        0x5346_414F | 0x6B41_4653 => "AFS",
        0x0102_1997 => "9P",
        0x0BD0_0BD0 => "Lustre",
        0x4750_4653 => "GPFS",
        0x7375_7245 => "Coda",
        0x564C => "NCP",
        0x7461_636F => "OCFS2",
        0x0116_1970 => "GFS2",
        0x2003_0528 => "OrangeFS",
        0x1983_0326 => "BeeGFS",
        0x786F_4256 => "VirtualBox shared folder",
        0xBACB_ACBC => "VMware shared folder",
        _ => return None,
    };
    Some(name)
}

/// The type of the file system the folder `dir` is on (`statfs`'s magic number), if known.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn fs_magic(dir: BorrowedFd<'_>) -> Option<u64> {
    let st = rustix::fs::fstatfs(dir).ok()?;
    // The type of `f_type` differs between platforms.
    #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)]
    Some(st.f_type as u64)
}

/// The type of the file system the folder `dir` is on: not known on this system.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn fs_magic(_dir: BorrowedFd<'_>) -> Option<u64> {
    None
}

/// The network file system the folder `dir` is on, if it is on one.
fn network_fs(dir: BorrowedFd<'_>) -> Option<&'static str> {
    fs_magic(dir).and_then(network_fs_name)
}

impl FsBackend {
    /// The open environment and its databases. With `create`, they are created if missing
    /// (the folders too); without, `None` when the environment or its databases do not exist,
    /// and nothing is created. `None` also when the store is on a network file system, or its
    /// index is damaged.
    fn index_handles<'i>(
        &self,
        index: &'i Index,
        create: bool,
    ) -> Result<Option<(EnvRef<'i>, Dbs)>, Fault> {
        if index.unusable.load(Ordering::Relaxed) {
            return Ok(None);
        }
        // Borrowed, not cloned: a hit takes no reference count.
        let shared = match index.shared.get() {
            Some(shared) => EnvRef::Kept(shared),
            None => match self.open_index(index, create)? {
                Some(shared) => shared,
                None => return Ok(None),
            },
        };
        let fail = |e| lmdb_fault(e, &index.dir);
        let Some(dbs) = shared.dbs(create).map_err(fail)? else {
            return Ok(None);
        };
        if shared.registry.get().is_none() {
            if create {
                // Mostly a few records: room for more once they do not fit.
                let made = match self.make_registry(&shared, SMALL_WRITE) {
                    Err(e) if is_full(&e) && shared.room.is_some() => {
                        self.make_registry(&shared, REGISTRY_ROOM)
                    }
                    made => made,
                };
                match made {
                    Ok(()) => {}
                    // A full index has no room for it: misses look for files, as without one.
                    Err(e) if is_full(&e) => {}
                    Err(e) => return Err(fail(e)),
                }
            } else if !shared.no_registry_read.load(Ordering::Relaxed)
                && shared.open_registry().map_err(fail)?.is_none()
            {
                shared.no_registry_read.store(true, Ordering::Relaxed);
            }
        }
        Ok(Some((shared, dbs)))
    }

    /// Opens the environment of `index`, not yet opened for writing: `None` as
    /// [`index_handles`](Self::index_handles) says. An environment that can only be read is
    /// kept aside, and given to reads; a write (`create`) that finds the index writable again
    /// drops it and opens the environment for writing.
    fn open_index<'i>(&self, index: &'i Index, create: bool) -> Result<Option<EnvRef<'i>>, Fault> {
        let kept = index
            .read_only
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .upgrade();
        match kept {
            Some(shared) if !create || !writable(&index.dir) => {
                return Ok(Some(EnvRef::ReadOnly(shared)));
            }
            // Closed once the reads of this process at work on it end, so that it can be opened
            // for writing.
            Some(shared) => {
                READ_ONLY
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&index.dir);
                drop(shared);
            }
            None => {}
        }
        let dir = match self.open_folders(&[INDEX_DIR])? {
            Some(dir) => dir,
            None => {
                if index.private_only
                    && !index.private.load(Ordering::Relaxed)
                    && !self.may_make_index(index, create)?
                {
                    return Ok(None);
                }
                if !create {
                    return Ok(None);
                }
                self.make_folders(&[INDEX_DIR])?
            }
        };
        // LMDB opens its files by their paths, and follows links: neither may be one. (A link
        // swapped in after this check takes a writer of the index's folder, whom `layout=index`
        // trusts and the default layout refuses.)
        let data_stat = regular_file(dir.as_fd(), &index.dir, "data.mdb")?;
        regular_file(dir.as_fd(), &index.dir, "lock.mdb")?;
        match data_stat.as_ref().map(tree::size) {
            None if !create => return Ok(None),
            // An empty data file, as a process that is making the index leaves it for a moment:
            // LMDB would make a new index in it, which a read must not.
            Some(0) if !create => return Ok(None),
            // Shorter than the two pages that begin every index: damaged, never opened (LMDB
            // refuses it on every call).
            Some(len @ 1..MIN_DATA_LEN) => {
                self.forgo_index(
                    index,
                    &format!(
                        "the index is damaged (its data file holds {len} bytes, fewer than its two first pages); it is not read"
                    ),
                );
                return Ok(None);
            }
            _ => {}
        }
        if index.private_only {
            self.check_private(index, dir.as_fd(), data_stat.as_ref())?;
        }
        if let Some(name) = network_fs(dir.as_fd()) {
            let why =
                format!("the store is on a network file system ({name}), where LMDB is not safe");
            self.forgo_index(index, &why);
            return Ok(None);
        }
        let opened = match open_shared(&index.dir, index.map_size, index.durable, index.write_map) {
            // Not an index LMDB can read (its first pages are not meta pages, or of another
            // version of the format): damaged, as below.
            Err(e @ heed::Error::Mdb(MdbError::Invalid | MdbError::VersionMismatch)) => {
                Err(e.to_string())
            }
            opened => opened.map_err(|e| lmdb_fault(e, &index.dir))?,
        };
        let shared = match opened {
            Ok(shared) => shared,
            // Damaged: never read, never written over; the files layout takes its
            // place until `.cachette-index/` is deleted.
            Err(why) => {
                self.forgo_index(
                    index,
                    &format!("the index is damaged ({why}); it is not read"),
                );
                return Ok(None);
            }
        };
        if index.private_only {
            same_data_file(&shared.env, dir.as_fd(), &index.dir)?;
        }
        if shared.read_only {
            READ_ONLY
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(index.dir.clone())
                .or_insert_with(|| shared.clone());
            *index
                .read_only
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(&shared);
            return Ok(Some(EnvRef::ReadOnly(shared)));
        }
        Ok(Some(EnvRef::Kept(index.shared.get_or_init(|| shared))))
    }

    /// With the default layout, whether an index may be made in the store, which has none: only
    /// the current user may write the store's folder (made first if `create`), and it is on a
    /// local file system. Otherwise the files layout is used from now on (a store without a
    /// folder is looked at again by the next call).
    fn may_make_index(&self, index: &Index, create: bool) -> Result<bool, Fault> {
        let root = if create {
            self.make_folders(&[])?
        } else {
            match tree::open_root(&self.root)? {
                Some(root) => root,
                None => return Ok(false),
            }
        };
        let stat = rustix::fs::fstat(&root).map_err(|e| Fault::io(e, &self.root))?;
        let why = match trust::others_may_write(trust::Subject::Open(root.as_fd()), &stat) {
            Some(why) => format!("other users may write the store's folder ({why})"),
            None => match network_fs(root.as_fd()) {
                Some(name) => format!("the store is on a network file system ({name})"),
                None => {
                    index.private.store(true, Ordering::Relaxed);
                    return Ok(true);
                }
            },
        };
        if !index.unusable.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                target: "cachette",
                "{}: {why}; items are stored as files (the files layout)",
                self.location
            );
        }
        Ok(false)
    }

    /// With the default layout, refuses an index that another user may write: its folder
    /// `dir`, its data file (whose status is `data`, if it exists) and its lock file must be
    /// the current user's alone. Not the files layout instead: the index may hold the newest
    /// items of the store, and reading past it could return older ones.
    fn check_private(
        &self,
        index: &Index,
        dir: BorrowedFd<'_>,
        data: Option<&rustix::fs::Stat>,
    ) -> Result<(), Fault> {
        let stat = rustix::fs::fstat(dir).map_err(|e| Fault::io(e, &index.dir))?;
        if let Some(why) = trust::others_may_write(trust::Subject::Open(dir), &stat) {
            return Err(untrusted(&index.dir, "", &why));
        }
        if let Some(why) =
            data.and_then(|data| trust::others_may_write(trust::Subject::In(dir, "data.mdb"), data))
        {
            return Err(untrusted(&index.dir, "data.mdb", &why));
        }
        let lock = index.dir.join("lock.mdb");
        if let Some(stat) = tree::lstat_at(dir, "lock.mdb").map_err(|e| Fault::io(e, &lock))?
            && let Some(why) = trust::others_may_write(trust::Subject::In(dir, "lock.mdb"), &stat)
        {
            return Err(untrusted(&index.dir, "lock.mdb", &why));
        }
        Ok(())
    }

    /// Uses the files layout from now on, for `why`, with one warning.
    fn forgo_index(&self, index: &Index, why: &str) {
        if !index.unusable.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "cachette",
                "{}: {why}; small items are stored as files (the files layout)",
                self.location
            );
        }
    }

    /// Makes the registry of the environment of `shared`, unless another process made it: its
    /// database, and a record of every folder of the store that holds an entry that is not a
    /// folder, found by one walk, all in one write transaction (which no file is published
    /// without). A store with more than [`REGISTRY_WALK_MAX`] such entries, or one the walk
    /// cannot read whole, records [`EVERYWHERE`] instead. The map is first made to have `room`
    /// bytes free.
    fn make_registry(&self, shared: &Shared, room: u64) -> heed::Result<()> {
        let Writing {
            txn,
            _entered,
            _writer,
        } = shared.write_txn(Adds::Bytes(room))?;
        let made = shared
            .env
            .create_databases_and_commit(txn, |opener, txn| -> heed::Result<_> {
                if let Some(folders) = opener.open_database::<Raw, Raw>(txn, Some(FOLDERS))? {
                    return Ok(CommitOrAbort::<_, ()>::Commit(folders));
                }
                let folders = opener.create_database::<Raw, Raw>(txn, Some(FOLDERS))?;
                let mut seen = 0usize;
                let mut everywhere = false;
                let mut failed = None;
                let walked = self.walk(&Prefix::root(), &mut |entry| {
                    let key = entry.key;
                    if crate::is_reserved(entry.name) {
                        return Ok(ControlFlow::Continue(()));
                    }
                    seen += 1;
                    if seen > REGISTRY_WALK_MAX {
                        everywhere = true;
                        return Ok(ControlFlow::Break(()));
                    }
                    let Some((folder, _)) = key.rsplit_once('/') else {
                        return Ok(ControlFlow::Continue(())); // At the root: always looked for.
                    };
                    let recorded = folders
                        .get(txn, folder.as_bytes())
                        .map(|found| found.is_some())
                        .and_then(|known| {
                            if !known {
                                folders.put(txn, folder.as_bytes(), &[])?;
                            }
                            Ok(())
                        });
                    Ok(match recorded {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(e) => {
                            failed = Some(e);
                            ControlFlow::Break(())
                        }
                    })
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                if let Err(fault) = walked {
                    tracing::debug!(target: "cachette", "{}: cannot walk the store to record its folders ({fault:?}): every miss looks for a file", self.location);
                    everywhere = true;
                }
                if everywhere {
                    folders.put(txn, EVERYWHERE, &[])?;
                }
                Ok(CommitOrAbort::Commit(folders))
            })?;
        drop((_entered, _writer));
        if let CommitOrAbort::Commit(folders) = made {
            shared.known_registry(folders)?;
        }
        Ok(())
    }

    /// Takes the compute-once claim of `key` (see [`crate::claims`]). `None` without an index,
    /// or when the system has no open-file-description locks: claims are then items.
    pub(crate) fn index_claim(&self, key: &Key) -> Result<Option<ClaimAttempt>, Fault> {
        let Some(index) = &self.index else {
            return Ok(None);
        };
        let Some((shared, _)) = self.index_handles(index, true)? else {
            return Ok(None);
        };
        shared.claims.try_claim(
            claims::offset_of(key.as_str()),
            || self.make_folders(&[INDEX_DIR]),
            &index.dir,
        )
    }

    /// Reads `key` from the index: found, surely nowhere (the registry knows no file in its
    /// folder), or not in the index (there is no index, or the item may be a file).
    pub(crate) fn index_get(&self, key: &Key, options: &GetOptions) -> Result<InIndex, Fault> {
        let Some(index) = &self.index else {
            return Ok(InIndex::NotHere);
        };
        let k = key.as_str().as_bytes();
        if k.len() > MAX_KEY {
            return Ok(InIndex::NotHere);
        }
        let Some((shared, dbs)) = self.index_handles(index, false)? else {
            return Ok(InIndex::NotHere);
        };
        let fail = |e| lmdb_fault(e, &index.dir);
        // The registry as known now: one opened later is not read in a transaction begun before.
        let registry = shared.registry.get().copied();
        // A value longer than any the index stores, its length: the index is damaged.
        let read = || {
            // Counted from here: the meta page is read in the map.
            let _entered = shared.enter()?;
            // Only asked of a read of whether the key exists, as a compute-once miss makes once
            // it holds its claim: a hit pays nothing for it.
            if options.head && shared.still_nowhere(k) {
                return Ok(Ok(InIndex::Nowhere));
            }
            shared.readers.read(&shared.env, registry.is_some(), |txn| {
                #[cfg(test)]
                shared.lookups.fetch_add(1, Ordering::Relaxed);
                let Some(value) = dbs.items.get(txn, k)? else {
                    return Ok(Ok(if shared.may_be_file_in(txn, registry.as_ref(), key)? {
                        InIndex::NotHere
                    } else {
                        shared.found_nowhere(k, txn.id());
                        InIndex::Nowhere
                    }));
                };
                let size = value.len() as u64;
                if size > MAX_INDEX_THRESHOLD {
                    return Ok(Err(size));
                }
                Ok(Ok(InIndex::Found(if options.head {
                    GetResult::head(size)
                } else if let Some(range) = &options.range {
                    let start = range.start.min(size);
                    let end = range.end.clamp(start, size);
                    // Both are at most the length of a slice.
                    let part = value.get(start as usize..end as usize).unwrap_or_default();
                    GetResult::part(Bytes::copy_from_slice(part), size)
                } else {
                    GetResult::whole(match &options.expected {
                        // Compared where it lies: no copy.
                        Some(expected) if expected[..] == *value => expected.clone(),
                        _ => Bytes::copy_from_slice(value),
                    })
                })))
            })
        };
        // Tried once first, out of `following_growth`: a hit moves its result once less.
        let in_index = match read() {
            Err(heed::Error::Mdb(MdbError::MapResized)) => shared
                .remap(None)
                .and_then(|()| shared.following_growth(read)),
            read => read,
        }
        .map_err(fail)?
        .map_err(|size| {
                Fault::io(
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the index holds {size} bytes under {key}, more than any item it stores: it is damaged"
                        ),
                    ),
                    &index.dir,
                )
            })?;
        if options.record_access && matches!(in_index, InIndex::Found(_)) {
            shared.arc().record_access(key);
        }
        Ok(in_index)
    }

    /// Writes `key` to the index if it belongs there (a small value, a short key, not asked to be
    /// a file with `as_file`, see `PutOptions::local_file`): `None` when it does not, or the
    /// index is full or unusable, and the caller writes a file. A stored
    /// value also deletes `delete`, when given, in the same transaction (index entry and file);
    /// a create that finds the key taken leaves it to the caller.
    pub(crate) fn index_put(
        &self,
        key: &Key,
        segments: &[&str],
        value: &Blob,
        as_file: bool,
        mode: PutMode,
        delete: Option<&Key>,
    ) -> Result<Option<Written>, Fault> {
        let Some(index) = &self.index else {
            return Ok(None);
        };
        let k = key.as_str().as_bytes();
        if as_file || value.len() > index.threshold || k.len() > MAX_KEY {
            return Ok(None);
        }
        let Some((shared, dbs)) = self.index_handles(index, true)? else {
            return Ok(None);
        };
        let fail = |e| lmdb_fault(e, &index.dir);
        let full = |e: heed::Error| {
            if !index.full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "cachette",
                    "{}: the index is full ({e}); small items are stored as files",
                    self.location
                );
            }
            Ok(None)
        };
        // The write transaction is also the lock that orders this write with those of the
        // other representation, in every process.
        let mut txn = shared
            .write_txn(Adds::Bytes(value.len() + SMALL_WRITE))
            .map_err(fail)?;
        // Whether `of` surely has no file: its folder is not in the registry, or does not exist
        // (asked once: the item to delete is mostly in the same folder as `key`).
        let no_folder = std::cell::OnceCell::new();
        let no_file = |txn: &heed::RoTxn<'_>, of: &Key| -> Result<bool, Fault> {
            if !shared.may_be_file(txn, of).map_err(fail)? {
                return Ok(true);
            }
            Ok(if of.parent() == key.parent() {
                *no_folder.get_or_init(|| self.surely_no_file(key))
            } else {
                self.surely_no_file(of)
            })
        };
        let create = mode == PutMode::Create;
        if create && shared.may_be_file(&txn, key).map_err(fail)? && self.has_file(key, segments)? {
            return Ok(Some(Written::Alone(PutOutcome::AlreadyExists)));
        }
        // At most `MAX_INDEX_THRESHOLD`, checked by the configuration.
        let len = value.len() as usize;
        let fill = |space: &mut heed::ReservedSpace<'_>| {
            for part in value.parts() {
                space.write_all(part)?;
            }
            Ok(())
        };
        // A create looks for the key and puts it in one search of the tree: a key found is
        // left as it is, and the transaction, which changed nothing, is dropped.
        let put = if create {
            match dbs.items.get_or_put_reserved(&mut txn, k, len, fill) {
                Ok(Some(_)) => return Ok(Some(Written::Alone(PutOutcome::AlreadyExists))),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            dbs.items.put_reserved(&mut txn, k, len, fill)
        };
        let stored = put.and_then(|()| {
            let now = nanos(SystemTime::now());
            // Beside the item: on its page as a rule, so the write changes one tree.
            dbs.put_written(&mut txn, k, now)
        });
        match stored {
            Ok(()) => {}
            Err(e) if is_full(&e) => return full(e),
            Err(e) => return Err(fail(e)),
        }
        if mode == PutMode::Overwrite && !no_file(&txn, key)? {
            self.remove_file(key, segments)?;
        }
        if let Some(delete) = delete {
            let d = delete.as_str().as_bytes();
            let delete_file = !no_file(&txn, delete)?;
            if d.len() <= MAX_KEY {
                dbs.delete_item(&mut txn, d).map_err(fail)?;
            }
            // Not an error of the write (see `StoreBackend::put_then_delete`).
            if delete_file && let Err(e) = self.delete_many_blocking(std::slice::from_ref(delete)) {
                tracing::debug!(target: "cachette", "wrote {key}, but cannot delete {delete}: {e}");
            }
        }
        match shared.commit(txn, index.durable) {
            Ok(()) => Ok(Some(Written::WithDelete(PutOutcome::Created))),
            Err(e) if is_full(&e) => full(e),
            Err(e) => Err(fail(e)),
        }
    }

    /// Runs `publish`, which publishes the file of `key`, holding the index's write lock: with
    /// `create`, only if the index does not hold the key; the key's folder is recorded in the
    /// registry, and once the file is published, the key is removed from the index. Without an
    /// index, runs `publish` alone.
    pub(crate) fn with_index_lock(
        &self,
        key: &Key,
        create: bool,
        publish: impl FnOnce() -> Result<PutOutcome, Fault>,
    ) -> Result<PutOutcome, Fault> {
        let Some(index) = &self.index else {
            return publish();
        };
        let k = key.as_str().as_bytes();
        if k.len() > MAX_KEY {
            return publish(); // Never in the index.
        }
        let Some((shared, dbs)) = self.index_handles(index, true)? else {
            return publish();
        };
        let fail = |e| lmdb_fault(e, &index.dir);
        let (mut txn, registered) = loop {
            let mut txn = shared.write_txn(Adds::Bytes(SMALL_WRITE)).map_err(fail)?;
            if create && dbs.items.get(&txn, k).map_err(fail)?.is_some() {
                return Ok(PutOutcome::AlreadyExists);
            }
            // Recorded before the file is published, and committed with what follows: readers
            // that trust the registry look for the file once it may be there. A full index has
            // no room for the record: this process then looks for files in every folder, and
            // publishes in a transaction of its own (a failed put leaves none to go on with).
            match shared.register_folder(&mut txn, key) {
                Ok(registered) => break (txn, registered),
                Err(e) if is_full(&e) => {
                    drop(txn);
                    shared.no_room_for_folders(&self.location, &e);
                }
                Err(e) => return Err(fail(e)),
            }
        };
        let outcome = publish()?;
        let mut deleted = false;
        if outcome == PutOutcome::Created {
            deleted |= dbs.delete_item(&mut txn, k).map_err(fail)?;
        }
        if registered || deleted {
            match shared.commit(txn, index.durable) {
                Ok(()) => {}
                // The record alone did not fit: the file is published all the same.
                Err(e) if is_full(&e) && !deleted => {
                    shared.no_room_for_folders(&self.location, &e);
                }
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(outcome)
    }

    /// Whether the item `key` exists as a file.
    fn has_file(&self, key: &Key, segments: &[&str]) -> Result<bool, Fault> {
        Ok(match self.open_file_fast(key, false) {
            Some(opened) => opened.is_some(),
            None => self
                .open_file_walking(segments, &self.path_of(segments))?
                .is_some(),
        })
    }

    /// Whether the index of this store is open and in use.
    pub(crate) fn index_open(&self) -> bool {
        self.index.as_ref().is_some_and(|index| {
            index.shared.get().is_some() && !index.unusable.load(Ordering::Relaxed)
        })
    }

    /// Whether the folder of `key` surely does not exist (so neither does a file of `key`):
    /// one call through the kept root handle, which the index layout may trust (its store is
    /// not removed under a process using it).
    fn surely_no_file(&self, key: &Key) -> bool {
        let parent = key.parent();
        !parent.is_empty()
            && matches!(self.root_handle(), Ok(Some(root)) if tree::surely_no_folder(root.as_fd(), parent))
    }

    /// Removes the file of `key`, if there is one, and the folders it leaves empty.
    fn remove_file(&self, key: &Key, segments: &[&str]) -> Result<(), Fault> {
        let Some((name, folders)) = segments.split_last() else {
            return Ok(());
        };
        let Some(dir) = self.open_folders(folders)? else {
            return Ok(());
        };
        let path = self.path_of(segments);
        match tree::stat_at(dir.as_fd(), name).map_err(|e| Fault::io(e, &path))? {
            // A folder is where other items are, not this one.
            None => Ok(()),
            Some(info) if info.kind == FileType::Directory => Ok(()),
            Some(_) => self
                .delete_in(folders, &[(name, key)])
                .map_err(|e| Fault::Backend(Box::new(e))),
        }
    }

    /// Lists the items of the index under `prefix`, in key order, after writing the pending
    /// accesses.
    pub(crate) fn index_list(&self, prefix: &Prefix) -> Result<Vec<ItemInfo>, Fault> {
        let Some(index) = &self.index else {
            return Ok(Vec::new());
        };
        let Some((shared, dbs)) = self.index_handles(index, false)? else {
            return Ok(Vec::new());
        };
        shared.flush();
        let fail = |e| lmdb_fault(e, &index.dir);
        let start = if prefix.is_root() {
            Vec::new()
        } else {
            format!("{}/", prefix.as_str()).into_bytes()
        };
        let now = SystemTime::now();
        let txn = shared.read_txn().map_err(fail)?;
        let mut items = Vec::new();
        // LMDB refuses an empty key, so the root is a plain scan.
        type Scan<'t> = Box<dyn Iterator<Item = heed::Result<(&'t [u8], &'t [u8])>> + 't>;
        let scan = |db: &Db| -> Result<Scan<'_>, Fault> {
            Ok(if start.is_empty() {
                Box::new(db.iter(&txn).map_err(fail)?)
            } else {
                Box::new(db.prefix_iter(&txn, &start).map_err(fail)?)
            })
        };
        let latest = |record: &[u8]| decode_times(record).map_or(0, |(w, a)| w.max(a));
        let to_info = |(key, size, at): (Key, u64, u64)| ItemInfo {
            key,
            size,
            last_access: DateTime::<Utc>::from(
                (SystemTime::UNIX_EPOCH + Duration::from_nanos(at)).min(now),
            ),
        };
        // The item met last, its size and its time so far: its times record comes right after
        // it (its key and a NUL byte).
        let mut last: Option<(Key, u64, u64)> = None;
        // Both databases are in key order: their records are met side by side, one pass
        // over each, instead of a lookup in `times` per item.
        let mut times = scan(&dbs.times)?;
        let mut time = times.next().transpose().map_err(fail)?;
        for item in scan(&dbs.items)? {
            let (k, value) = item.map_err(fail)?;
            if let Some(of) = times_of(k) {
                // One whose item is not the one before it (deleted by an older version) is
                // ignored.
                if let Some((key, _, at)) = &mut last
                    && key.as_str().as_bytes() == of
                {
                    *at = (*at).max(latest(value));
                }
                continue;
            }
            let mut at = 0;
            while let Some((tk, record)) = time {
                let order = tk.cmp(k);
                if order.is_gt() {
                    break;
                }
                if order.is_eq() {
                    at = latest(record);
                }
                time = times.next().transpose().map_err(fail)?;
            }
            let Some(key) = std::str::from_utf8(k)
                .ok()
                .and_then(|k| Key::new(k).ok())
                .filter(|key| !has_reserved_segment(key.as_str()))
            else {
                continue; // No key of this store.
            };
            if let Some(done) = last.replace((key, value.len() as u64, at)) {
                items.push(to_info(done));
            }
        }
        items.extend(last.map(to_info));
        Ok(items)
    }

    /// Deletes `keys` from the index, and calls `files` to delete their files, holding the
    /// index's write lock (in batches of [`DELETE_BATCH`] keys, or [`MAPPED_DELETE_BATCH`]).
    /// `None` when there is no index:
    /// the caller deletes the files alone.
    pub(crate) fn index_delete(
        &self,
        keys: &[Key],
        files: &dyn Fn(&[Key]) -> Result<(), cachette_core::plugin::BackendError>,
    ) -> Option<Result<(), cachette_core::plugin::BackendError>> {
        let index = self.index.as_ref()?;
        let first = keys.first()?;
        let (shared, dbs) = match self.index_handles(index, false) {
            Ok(handles) => handles?,
            Err(fault) => return Some(Err(fault.into_backend("delete", first))),
        };
        shared.flush();
        let mut first_error = None;
        let batch = match shared.room {
            Some(_) => MAPPED_DELETE_BATCH,
            None => DELETE_BATCH,
        };
        for batch in keys.chunks(batch) {
            let Some(batch_first) = batch.first() else {
                continue;
            };
            let fail = |e| lmdb_fault(e, &index.dir).into_backend("delete", batch_first);
            let deleted = shared
                .write_txn(Adds::Records(batch.len()))
                .map_err(fail)
                .and_then(|mut txn| {
                    for key in batch {
                        let k = key.as_str().as_bytes();
                        if k.len() <= MAX_KEY {
                            dbs.delete_item(&mut txn, k).map_err(fail)?;
                        }
                    }
                    // One key whose folder does not exist has no file (a claim, mostly).
                    let files = match batch {
                        [key] if self.surely_no_file(key) => Ok(()),
                        _ => files(batch),
                    };
                    shared.commit(txn, index.durable).map_err(fail)?;
                    files
                });
            if let Err(e) = deleted {
                first_error.get_or_insert(e);
            }
        }
        Some(first_error.map_or(Ok(()), Err))
    }

    /// Writes the accesses recorded in memory.
    pub(crate) fn flush_accesses(&self) {
        if let Some(shared) = self.index.as_ref().and_then(|index| index.shared.get()) {
            shared.flush();
        }
    }
}

/// What [`FsBackend::index_put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The write, and the delete that came with it, in one transaction.
    WithDelete(PutOutcome),
    /// The write alone: the delete that came with it, if any, is the caller's.
    Alone(PutOutcome),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_stamp_tells_the_key_and_the_millisecond() {
        let key = &Key::new("cachette/m.f/0123456789abcdef0123456789abcdef").unwrap();
        let other = &Key::new("cachette/m.f/0123456789abcdef0123456789abcdee").unwrap();
        let now = 1_765_000_000_123_456_789;
        assert_eq!(access_stamp(key, now), access_stamp(key, now + 500_000));
        assert_ne!(access_stamp(key, now), access_stamp(key, now + 1_000_000));
        assert_ne!(access_stamp(key, now), access_stamp(other, now));
        // Short keys, and the first moment, have stamps too, never the empty part's zero.
        let short = &Key::new("k").unwrap();
        for (key, now) in [(short, 0), (key, 0)] {
            assert_ne!(access_stamp(key, now), 0);
        }
    }

    #[test]
    fn network_file_systems_are_recognised() {
        for (magic, name) in [
            (0x6969, "NFS"),
            (0x517B, "SMB"),
            (0xFF53_4D42, "CIFS"),
            (0xFE53_4D42, "SMB2"),
            (0x6573_5546, "FUSE"),
            (0x00C3_6400, "Ceph"),
            (0x5346_414F, "AFS"),
            (0x0102_1997, "9P"),
            (0x0BD0_0BD0, "Lustre"),
            (0x4750_4653, "GPFS"),
        ] {
            assert_eq!(network_fs_name(magic), Some(name), "{magic:#x}");
        }
        // As a sign-extended 32-bit word, as some platforms give it.
        let cifs = i64::from(0xFF53_4D42_u32 as i32) as u64;
        assert_eq!(network_fs_name(cifs), Some("CIFS"));
        // Local file systems: ext4, XFS, Btrfs, tmpfs, ZFS, overlayfs.
        for local in [
            0xEF53,
            0x5846_5342,
            0x9123_683E,
            0x0102_1994,
            0x2FC1_2FC1,
            0x794C_7630,
        ] {
            assert_eq!(network_fs_name(local), None, "{local:#x}");
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_local_folder_is_not_a_network_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let handle = std::fs::File::open(dir.path()).unwrap();
        let st = rustix::fs::fstatfs(&handle).unwrap();
        // Unless the test itself runs on one.
        #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)]
        let expected = network_fs_name(st.f_type as u64);
        assert_eq!(network_fs(handle.as_fd()), expected);
    }

    /// A read that had accesses to write wrote them itself, waiting for the index's write
    /// lock: a process stopped (or on a hung disk) while holding it stopped every hit too. The
    /// accesses are now written by a thread of their own, and the reads go on; they are written
    /// once the lock is free. Here another thread holds the lock (LMDB's lock is the same
    /// across threads and processes) until the reads are done, or for a guard's time.
    #[test]
    fn reads_never_wait_for_the_write_lock() {
        use std::sync::mpsc;
        let dir = tempfile::tempdir().unwrap();
        let b = index_store(dir.path());
        use cachette_core::plugin::{GetOptions, StoreBackend};
        let keys = put_all(&b, (0..PENDING_MAX * 2).map(|i| format!("f/k{i}")), b"1");
        let index = b.index.as_ref().unwrap();
        let shared = Arc::clone(index.shared.get().unwrap());
        let (locked, lock_taken) = mpsc::channel();
        let (reads_done, done) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let txn = shared.write_txn(Adds::Bytes(0)).unwrap();
            locked.send(()).unwrap();
            // Until the reads are done, or a guard against a hang: whichever comes first.
            let done_first = done.recv_timeout(Duration::from_secs(60)).is_ok();
            drop(txn);
            done_first
        });
        lock_taken.recv().unwrap();
        for key in &keys {
            let got = b.get_now(key, &GetOptions::hit()).unwrap().unwrap();
            assert!(got.is_some());
        }
        let _ = reads_done.send(());
        assert!(
            holder.join().unwrap(),
            "the reads waited for the write lock"
        );
        // Written once the lock is free.
        b.flush_accesses();
        let (shared, dbs) = b.index_handles(index, false).unwrap().unwrap();
        let txn = shared.env.read_txn().unwrap();
        let accessed = keys
            .iter()
            .filter(|k| {
                dbs.times
                    .get(&txn, k.as_str().as_bytes())
                    .unwrap()
                    .and_then(decode_times)
                    .is_some_and(|(_, accessed)| accessed > 0)
            })
            .count();
        assert_eq!(accessed, keys.len());
    }

    /// A key too long for the index is a file, published without its folder recorded: a write
    /// that also deletes it took the registry's word that it had no file, said it was deleted,
    /// and left it to be read.
    #[test]
    fn a_write_that_deletes_a_long_key_deletes_its_file() {
        use cachette_core::plugin::{StoreBackend, StoreBackendExt};
        let dir = tempfile::tempdir().unwrap();
        let b = index_store(dir.path());
        // A key in a folder of its own, whose folder no write records.
        let segment = "x".repeat(200);
        let long = Key::new(format!("long/{segment}/{segment}/{segment}/z")).unwrap();
        assert!(long.as_str().len() > MAX_KEY);
        let small = Key::new("f/small").unwrap();
        run(b.put(&small, b"0".to_vec().into())).unwrap();
        run(b.put(&long, b"1".to_vec().into())).unwrap();
        let options = cachette_core::plugin::PutOptions::default();
        run(b.put_then_delete(&small, b"2".to_vec().into(), options, &long)).unwrap();
        assert_eq!(
            run(b.get(&long)).unwrap(),
            None,
            "the long key is still read"
        );
        assert_eq!(run(b.get(&small)).unwrap().as_deref(), Some(&b"2"[..]));
    }

    /// A key read nowhere twice with no commit between is looked up once; a commit since (an
    /// item put in the index, a file whose folder the write records) has it looked up again,
    /// and found.
    #[test]
    fn a_key_found_nowhere_is_looked_up_again_only_after_a_commit() {
        use cachette_core::plugin::{StoreBackend, StoreBackendExt};
        let dir = tempfile::tempdir().unwrap();
        let (b, _, _) = two_items(dir.path());
        let shared = b.index.as_ref().unwrap().shared.get().unwrap().clone();
        let lookups = || shared.lookups.load(Ordering::Relaxed);
        // As a compute-once miss reads once it holds its claim.
        let found = |key: &Key| {
            b.get_now(key, &GetOptions::head())
                .unwrap()
                .unwrap()
                .map(|got| got.size)
        };
        let (small, large) = (Key::new("g/small").unwrap(), Key::new("h/large").unwrap());
        for key in [&small, &large] {
            assert_eq!(found(key), None);
            let before = lookups();
            assert_eq!(found(key), None);
            assert_eq!(
                lookups(),
                before,
                "{key}: looked up again with no commit since"
            );
        }
        // A file, in a folder the registry did not know.
        let len = DEFAULT_INDEX_THRESHOLD * 2;
        run(b.put(&large, vec![7; len as usize].into())).unwrap();
        let before = lookups();
        assert_eq!(found(&large), Some(len));
        assert_eq!(lookups(), before + 1);
        // An item of the index.
        assert_eq!(found(&small), None);
        run(b.put(&small, b"3".to_vec().into())).unwrap();
        let before = lookups();
        assert_eq!(found(&small), Some(1));
        assert_eq!(lookups(), before + 1);
    }

    #[test]
    fn damaged_records_are_refused_or_ignored() {
        use cachette_core::plugin::{StoreBackend, StoreBackendExt};
        let dir = tempfile::tempdir().unwrap();
        let (b, x, y) = two_items(dir.path());
        let index = b.index.as_ref().unwrap();
        let (shared, dbs) = b.index_handles(index, false).unwrap().unwrap();
        // Room in the map for the long value.
        shared
            .make_room(Adds::Bytes(MAX_INDEX_THRESHOLD + 1))
            .unwrap();
        let mut txn = shared.env.write_txn().unwrap();
        // Access records of the wrong length (beside the item, and apart as an older version
        // wrote them), and a value longer than any item.
        dbs.items.put(&mut txn, b"f/x\0", &[1, 2, 3]).unwrap();
        dbs.times.put(&mut txn, b"f/x", &[1, 2, 3]).unwrap();
        let long = vec![0u8; MAX_INDEX_THRESHOLD as usize + 1];
        dbs.items.put(&mut txn, b"f/y", &long).unwrap();
        txn.commit().unwrap();

        let listed = run(b.list(&Prefix::root())).unwrap();
        assert_eq!(listed.len(), 2);
        let x_at = listed.iter().find(|i| i.key == x).unwrap().last_access;
        assert_eq!(x_at, DateTime::<Utc>::from(SystemTime::UNIX_EPOCH));
        let e = run(b.get(&y)).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        // A recorded access replaces the malformed record.
        run(b.get(&x)).unwrap().unwrap();
        let listed = run(b.list(&Prefix::root())).unwrap();
        let x_at = listed.iter().find(|i| i.key == x).unwrap().last_access;
        assert!(x_at > DateTime::<Utc>::from(SystemTime::UNIX_EPOCH));
    }

    /// A write puts the item's write time beside it, in the same database (one tree changed),
    /// and nothing in `times`, where accesses go; listing and deleting see both.
    #[test]
    fn times_are_kept_beside_their_items() {
        use cachette_core::plugin::{GetOptions, StoreBackend, StoreBackendExt};
        let dir = tempfile::tempdir().unwrap();
        let b = index_store(dir.path());
        let keys = put_all(&b, (0..5).map(|i| format!("f/{i}")), b"v");
        let index = b.index.as_ref().unwrap();
        let (shared, dbs) = b.index_handles(index, false).unwrap().unwrap();
        let txn = shared.env.read_txn().unwrap();
        assert_eq!(dbs.times.len(&txn).unwrap(), 0, "nothing in `times`");
        assert_eq!(dbs.items.len(&txn).unwrap(), 10, "each item and its time");
        for key in &keys {
            let tk = times_key(key.as_str().as_bytes()).unwrap();
            let record = dbs.items.get(&txn, &tk).unwrap().and_then(decode_times);
            assert!(record.is_some_and(|(written, _)| written > 0));
        }
        drop(txn);
        // Accesses go to `times`.
        b.get_now(&keys[1], &GetOptions::hit()).unwrap().unwrap();
        b.flush_accesses();
        let txn = shared.env.read_txn().unwrap();
        let record = dbs.times.get(&txn, b"f/1").unwrap().and_then(decode_times);
        assert!(record.is_some_and(|(_, accessed)| accessed > 0));
        drop(txn);
        assert_eq!(run(b.list(&Prefix::root())).unwrap().len(), 5);
        for key in &keys[..2] {
            run(b.delete(key)).unwrap();
        }
        let txn = shared.env.read_txn().unwrap();
        assert_eq!(dbs.items.len(&txn).unwrap(), 6, "deleted with their times");
        assert_eq!(dbs.times.len(&txn).unwrap(), 0, "deleted with their times");
    }

    /// Times in `times` (accesses, and both times as older versions wrote them) are read,
    /// merged with those beside the items, and deleted with their items; a record beside no
    /// item is ignored.
    #[test]
    fn times_written_apart_by_older_versions_are_read_and_deleted() {
        use cachette_core::plugin::{StoreBackend, StoreBackendExt};
        let dir = tempfile::tempdir().unwrap();
        let (b, x, y) = two_items(dir.path());
        let index = b.index.as_ref().unwrap();
        let (shared, dbs) = b.index_handles(index, false).unwrap().unwrap();
        let second = |s: u64| s * 1_000_000_000;
        // As an older version writes: times apart only; `x` read after `y` was written.
        let mut txn = shared.env.write_txn().unwrap();
        for (k, written, accessed) in [(b"f/x", 1, 3), (b"f/y", 2, 0)] {
            dbs.items.delete(&mut txn, &times_key(k).unwrap()).unwrap();
            dbs.times
                .put(
                    &mut txn,
                    k,
                    &encode_times(second(written), second(accessed)),
                )
                .unwrap();
        }
        // A record beside an item that is gone: ignored.
        dbs.items
            .put(&mut txn, b"f/w\0", &encode_times(second(9), 0))
            .unwrap();
        txn.commit().unwrap();
        let at = |listed: &[ItemInfo], key: &Key| {
            let info = listed.iter().find(|i| &i.key == key).unwrap();
            let since = info
                .last_access
                .signed_duration_since(DateTime::<Utc>::UNIX_EPOCH);
            since.num_seconds()
        };
        let listed = run(b.list(&Prefix::root())).unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!((at(&listed, &x), at(&listed, &y)), (3, 2));
        // A later record beside the item wins.
        let mut txn = shared.env.write_txn().unwrap();
        dbs.put_written(&mut txn, b"f/y", second(4)).unwrap();
        txn.commit().unwrap();
        let listed = run(b.list(&Prefix::root())).unwrap();
        assert_eq!((at(&listed, &x), at(&listed, &y)), (3, 4));
        // Deleted with its item, wherever it is.
        run(b.delete(&x)).unwrap();
        let txn = shared.env.read_txn().unwrap();
        assert!(dbs.times.get(&txn, b"f/x").unwrap().is_none());
        assert!(dbs.items.get(&txn, b"f/x\0").unwrap().is_none());
    }

    /// A store in the index layout in `dir`, holding the items `f/x` and `f/y`.
    fn two_items(dir: &Path) -> (FsBackend, Key, Key) {
        use cachette_core::plugin::StoreBackendExt;
        let b = index_store(dir);
        let (x, y) = (Key::new("f/x").unwrap(), Key::new("f/y").unwrap());
        run(b.put(&x, b"1".to_vec().into())).unwrap();
        run(b.put(&y, b"2".to_vec().into())).unwrap();
        (b, x, y)
    }

    fn run<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
        cachette_core::plugin::block_on(true, f).unwrap()
    }

    /// Puts `value` under each key of `keys` in `b`; the keys.
    fn put_all(b: &FsBackend, keys: impl Iterator<Item = String>, value: &[u8]) -> Vec<Key> {
        use cachette_core::plugin::StoreBackendExt;
        keys.map(|key| {
            let key = Key::new(key).unwrap();
            run(b.put(&key, value.to_vec().into())).unwrap();
            key
        })
        .collect()
    }

    fn index_store(dir: &Path) -> FsBackend {
        crate::FsConfig::new(dir)
            .with_layout(crate::Layout::Index)
            .open()
            .unwrap()
    }

    fn registry_of(b: &FsBackend) -> Registry {
        let index = b.index.as_ref().unwrap();
        *index.shared.get().unwrap().registry.get().unwrap()
    }

    /// An index made before the registry (its two databases only, and a file beside it) gets
    /// one at the first write of a process, from a walk: the file is found before and after.
    #[test]
    fn an_index_without_a_registry_gets_one_from_its_files() {
        use cachette_core::plugin::StoreBackendExt;
        let dir = tempfile::tempdir().unwrap();
        let env_dir = dir.path().join(INDEX_DIR);
        std::fs::create_dir(&env_dir).unwrap();
        {
            let env = open_env(&env_dir, 1 << 24, false, false, false).unwrap();
            let txn = env.write_txn().unwrap();
            let (items, times) = env
                .create_databases_and_commit(txn, |opener, txn| -> heed::Result<_> {
                    let items = opener.create_database::<Raw, Raw>(txn, Some("items"))?;
                    let times = opener.create_database::<Raw, Raw>(txn, Some("times"))?;
                    Ok(CommitOrAbort::<_, ()>::Commit((items, times)))
                })
                .unwrap()
                .commit()
                .unwrap();
            let mut txn = env.write_txn().unwrap();
            items.put(&mut txn, b"f/small", b"1").unwrap();
            times
                .put(&mut txn, b"f/small", &encode_times(1, 0))
                .unwrap();
            txn.commit().unwrap();
            env.prepare_for_closing().wait();
        }
        std::fs::create_dir_all(dir.path().join("g/h")).unwrap();
        std::fs::write(dir.path().join("g/h/large"), b"a file").unwrap();
        let (small, large) = (Key::new("f/small").unwrap(), Key::new("g/h/large").unwrap());

        let b = index_store(dir.path());
        assert_eq!(run(b.get(&small)).unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(run(b.get(&large)).unwrap().as_deref(), Some(&b"a file"[..]));
        // Reading wrote no registry.
        assert!(
            b.index
                .as_ref()
                .unwrap()
                .shared
                .get()
                .unwrap()
                .registry
                .get()
                .is_none()
        );
        run(b.put(&Key::new("f/new").unwrap(), b"2".to_vec().into())).unwrap();
        let Registry::Folders(folders) = registry_of(&b) else {
            panic!("no registry of folders");
        };
        let shared = b.index.as_ref().unwrap().shared.get().unwrap();
        let txn = shared.env.read_txn().unwrap();
        let recorded: Vec<Vec<u8>> = folders
            .iter(&txn)
            .unwrap()
            .map(|record| record.unwrap().0.to_vec())
            .collect();
        assert_eq!(recorded, [b"g/h".to_vec()]);
        drop(txn);
        assert_eq!(run(b.get(&large)).unwrap().as_deref(), Some(&b"a file"[..]));
        assert_eq!(run(b.get(&Key::new("f/none").unwrap())).unwrap(), None);
    }

    /// A store with more files than the walk looks at records that any folder may hold files:
    /// every miss looks for one, and every file is found.
    #[test]
    fn a_store_too_large_to_walk_looks_for_files_everywhere() {
        use cachette_core::plugin::StoreBackendExt;
        let dir = tempfile::tempdir().unwrap();
        let files = crate::FsConfig::new(dir.path())
            .with_layout(crate::Layout::Files)
            .open()
            .unwrap();
        let keys: Vec<Key> = (0..REGISTRY_WALK_MAX + 10)
            .map(|i| Key::new(format!("f{}/{i}", i % 10)).unwrap())
            .collect();
        for (i, key) in keys.iter().enumerate() {
            run(files.put(key, i.to_le_bytes().to_vec().into())).unwrap();
        }
        let b = index_store(dir.path());
        run(b.put(&Key::new("new/x").unwrap(), b"1".to_vec().into())).unwrap();
        assert!(matches!(registry_of(&b), Registry::Everywhere));
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                run(b.get(key)).unwrap().as_deref(),
                Some(&i.to_le_bytes()[..])
            );
        }
        std::fs::create_dir(dir.path().join("by-hand")).unwrap();
        std::fs::write(dir.path().join("by-hand/x"), b"2").unwrap();
        let by_hand = Key::new("by-hand/x").unwrap();
        assert_eq!(run(b.get(&by_hand)).unwrap().as_deref(), Some(&b"2"[..]));
    }

    /// On a file system whose `fallocate` reserves blocks (ext4, XFS, tmpfs: the temporary
    /// folder of the machines the tests run on), the index is written through its map, which
    /// is as long as its data file, allocated whole; the map grows as items come, allocated
    /// first; with `index_write_map = false`, the index is written with `pwrite`.
    #[test]
    fn the_index_is_written_through_its_map_allocated_whole() {
        use std::os::unix::fs::MetadataExt;

        use cachette_core::plugin::StoreBackendExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = std::fs::File::open(dir.path()).unwrap();
        assert!(
            fs_magic(folder.as_fd()).is_some_and(room::reserves_blocks),
            "the tests need their temporary folder on ext4, XFS or tmpfs"
        );
        let write_map =
            |shared: &Shared| shared.env.get_flags().unwrap() & EnvFlags::WRITE_MAP.bits() != 0;
        // The map's length, once checked that it is the file's, with a block for every byte.
        let allocated = |shared: &Shared| {
            let data = shared
                .env
                .try_clone_inner_file()
                .unwrap()
                .metadata()
                .unwrap();
            assert_eq!(data.len(), shared.env.info().map_size as u64);
            assert!(data.blocks() * 512 >= data.len(), "the data file has holes");
            data.len()
        };
        let b = index_store(dir.path());
        let key = |i: usize| Key::new(format!("f/k{i}")).unwrap();
        let value = |i: usize| vec![i as u8; 20_000];
        run(b.put(&key(0), value(0).into())).unwrap();
        let shared = b.index.as_ref().unwrap().shared.get().unwrap();
        assert!(shared.room.is_some() && write_map(shared));
        let first = allocated(shared);
        assert_eq!(first, room::INITIAL);
        // 20 MB: the map grows.
        for i in 1..1000 {
            run(b.put(&key(i), value(i).into())).unwrap();
        }
        assert!(allocated(shared) > first);
        for i in 0..1000 {
            assert!(run(b.get(&key(i))).unwrap().unwrap()[..] == value(i)[..]);
        }

        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::FsConfig::new(dir.path()).with_layout(crate::Layout::Index);
        config.index_write_map = false;
        let b = config.open().unwrap();
        run(b.put(&key(0), value(0).into())).unwrap();
        let shared = b.index.as_ref().unwrap().shared.get().unwrap();
        assert!(shared.room.is_none() && !write_map(shared));
    }

    /// A delete of many keys keeps room in the map for the pages it copies, which are no more
    /// than the index has: deleting 2,000 small items from a new index does not make its data
    /// file longer (it grew from 8 to 20 MiB when each key was given two pages).
    #[test]
    fn deleting_many_small_items_leaves_the_map_as_long() {
        use cachette_core::plugin::{StoreBackend, StoreBackendExt};
        let dir = tempfile::tempdir().unwrap();
        let b = index_store(dir.path());
        let keys = put_all(&b, (0..2000).map(|i| format!("f/k{i}")), b"tiny");
        let shared = b.index.as_ref().unwrap().shared.get().unwrap();
        let before = shared.env.info().map_size;
        assert_eq!(before as u64, room::INITIAL);
        run(b.delete_many(&keys)).unwrap();
        assert!(run(b.get(&keys[0])).unwrap().is_none());
        assert_eq!(shared.env.info().map_size, before);
        assert_eq!(Adds::Records(2000).bytes(1 << 20), (1 << 20) + 2000 * 512);
        assert_eq!(Adds::Bytes(5).bytes(0), 5);
    }

    /// A full index stores small items as files, in folders the registry holds and in new
    /// ones, and finds them again: the process that could not record a folder looks for files
    /// in every folder.
    #[test]
    fn a_full_index_stores_files_in_new_folders_and_finds_them() {
        use cachette_core::plugin::StoreBackendExt;
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::FsConfig::new(dir.path()).with_layout(crate::Layout::Index);
        config.index_map_size = 1 << 20;
        let b = config.open().unwrap();
        let value = |i: usize| vec![i as u8; 1000];
        let keys: Vec<Key> = (0..3000)
            .map(|i| Key::new(format!("f{i}/x")).unwrap())
            .collect();
        for (i, key) in keys.iter().enumerate() {
            run(b.put(key, value(i).into())).unwrap();
        }
        let files = keys
            .iter()
            .filter(|key| dir.path().join(key.as_str()).exists())
            .count();
        assert!(files > 0, "the index never filled");
        let shared = b.index.as_ref().unwrap().shared.get().unwrap();
        assert!(shared.files_everywhere.load(Ordering::Relaxed));
        for (i, key) in keys.iter().enumerate() {
            let got = run(b.get(key)).unwrap().unwrap();
            assert!(got[..] == value(i)[..], "{key}");
        }
    }

    /// The data file LMDB opened must be the one of the folder that was checked: another one
    /// (a folder swapped in between) is refused, naming the swap.
    #[test]
    fn a_data_file_other_than_the_one_checked_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let env = open_env(a.path(), 1 << 20, false, false, false).unwrap();
        let folder = |dir: &Path| std::fs::File::open(dir).unwrap();
        same_data_file(&env, folder(a.path()).as_fd(), a.path()).unwrap();
        std::fs::write(b.path().join("data.mdb"), b"").unwrap();
        let fault = same_data_file(&env, folder(b.path()).as_fd(), b.path()).unwrap_err();
        let e = fault.into_backend("get", "f/x");
        assert_eq!(e.kind(), cachette_core::plugin::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("replaced"), "{e}");
    }

    #[test]
    fn times_records_are_checked() {
        assert_eq!(decode_times(&encode_times(1, 2)), Some((1, 2)));
        assert_eq!(decode_times(&[0; 15]), None);
        assert_eq!(decode_times(&[0; 17]), None);
        assert_eq!(decode_times(&[]), None);
    }
}
