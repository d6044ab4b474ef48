//! The local-disk backend of Cachette.
//!
//! A cache location is a folder a person can read. The core keeps everything in its folder
//! `cachette/`: one folder per memoized function, named from its module path and name (and a
//! hash of the exact name), and inside it one file per cached call, named by the hash of the
//! arguments. That is the files layout; by default, small items of a store that only you may
//! write live in an index instead, in the folder `.cachette-index/` (see [Layouts](#layouts)):
//!
//! ```text
//! cache/
//! ├── .gitignore
//! └── cachette/
//!     └── my_crate.pipeline.load-5be1c0d2a4f87e19/
//!         ├── func_code
//!         ├── 3f0c55d2e1b6a9f08d7c4e21a5b3c6d7
//!         └── 9a1e…
//! ```
//!
//! # Guarantees
//! - **Whole or nothing.** A write goes to a temporary file in the item's own folder, which is
//!   then renamed into place (a write that deletes an item beside it, as an entry its claim,
//!   takes that item's file for its temporary one, when it has no other name). A reader sees the old item, the new item, or no item, never part of
//!   one, whatever the number of threads and processes writing the same key; the exception is
//!   a create asked `in_place` (compute-once claims), an exclusive create written where the
//!   item goes, which a reader may find half written. (In the index layout, a small item is
//!   written in one LMDB transaction: see [Layouts](#layouts).)
//! - **Atomic create.** [`PutMode::Create`](cachette_core::plugin::PutMode::Create) publishes the temporary file with a hard link, which
//!   fails if the name exists: exactly one racer wins.
//! - **Confined keys.** Keys are validated by [`Key`]: empty segments, `.`, `..`, absolute paths,
//!   backslashes and NUL bytes are refused with a clear error, so no key names a file outside the
//!   location. Segments named `.gitignore` or `.cachette-index`, or starting with
//!   `.cachette-tmp-`, are reserved, and keys have at most 64 segments.
//! - **No links followed.** Below the store's folder, every file and folder is reached relative
//!   to a folder handle opened without following links, so a symbolic link planted in the store
//!   (or swapped for a folder while an operation runs) is never followed: a read, write or delete
//!   that meets one fails with [`ErrorKind::PermissionDenied`], naming it. The store's folder
//!   itself may be a link.
//! - **Regular files only.** An item is a regular file. A named pipe, socket or device where an
//!   item is expected is refused with an error, without blocking; listings leave them out.
//! - **Reads only read.** Opening a store creates nothing; reading, listing and sweeping a store
//!   whose folder does not exist find nothing and create nothing. The folders are made by the
//!   first write, with a `.gitignore` (see [`FsConfig::path`]). (In the index layout, listing
//!   also writes the accesses that earlier reads were asked to record.)
//! - **Deletes delete what they are given.** [`StoreBackend::delete_many`] removes the items
//!   named and then the folders they leave empty, nothing else (not the temporary files of
//!   writers at work in the same folder).
//! - **Access tracking.** A read with [`GetOptions::record_access`] sets the item's access time
//!   (at most once a second per item), so least-recently-used clean-up works on `relatime` and
//!   `noatime` mounts too; a small item whose access was recorded in the last second (as the
//!   process knows) is read in three system calls: open, `pread`, close. Listings report the
//!   inode's change time, which nobody can set to the future (see [`ItemInfo::last_access`]).
//!   The index layout records accesses in batches.
//! - **Memory mapping.** [`GetOptions::local_file`] gives the open file of an item, so large
//!   arrays can be memory-mapped instead of read (in the index layout, of an item stored as a
//!   file; a small item in the index is read).
//!
//! Writes are not flushed to the device unless [`FsConfig::durable`] is set: after a power loss
//! an entry may be missing or damaged, which the entry checksum detects (the call is then
//! recomputed).
//!
//! The backend needs a Unix-like system (it relies on `openat` and `O_NOFOLLOW`).
//!
//! # Layouts
//! [`FsConfig::layout`] chooses how items are kept. Every guarantee above holds for both.
//!
//! - **Files** ([`Layout::Files`]): one file per item, as shown above.
//! - **Index** ([`Layout::Index`]): items of at most [`FsConfig::index_threshold`] bytes
//!   (64 KiB by default) live in an embedded [LMDB](http://www.lmdb.tech/doc/) environment
//!   shared by every process using the store; larger items are one file each, exactly as in
//!   the files layout, and so are items written with
//!   [`PutOptions::local_file`](cachette_core::plugin::PutOptions::local_file) (the entries
//!   that hold arrays), so arrays are still memory-mapped through
//!   [`GetOptions::local_file`]. Item bytes are stored unchanged. A store of many small items
//!   then costs two files instead of one per item, and a hit costs no system call.
//! - **Auto** ([`Layout::Auto`], the default): the index layout for a store that only you
//!   may write, the files layout for one that other users may write (below).
//!
//! # The default layout
//! LMDB trusts its files (see "Trust" below), and a store is untrusted input: so the default
//! layout uses an index only where nobody but the current user (and the superuser) may write
//! it. "May write" is read from the folders' and files' owners and modes; a folder that its
//! group may write counts as the user's alone when that group is the user's *private group*
//! (the scheme of Debian, Ubuntu and Fedora, whose `umask` of 002 makes new folders group
//! writable): named like the user, primary group of nobody else and with no other member in
//! `/etc/passwd` and `/etc/group`. Where the group bits allow writing, the POSIX access control
//! list is read too: one that lets another user or group write (or that cannot be read) makes
//! the folder or file not the user's alone.
//! - **Made** by the first write of a small item, in a store whose folder belongs to the
//!   current user (or the superuser), may not be written by others, and is on a local file system. In any other
//!   store no index is made, and items are files: a store shared by several users, one in a
//!   folder open to all, one on a network file system. So all the processes of a shared store
//!   use the same layout.
//! - **Read** only if its folder `.cachette-index/` and its files `data.mdb` and `lock.mdb`
//!   belong to the current user (or the superuser) and may not be written by others. The folder is checked through
//!   the handle the store opened, and the data file LMDB opened is checked to be that folder's.
//!   An index that fails the check is not read, nor is the store read past it as files (the
//!   index may hold the newest items): every operation on the store fails with an error that
//!   says why and what to do; the memoized calls are then computed, uncached. Another user's
//!   store, then, is an error by default: set `layout=index` to trust its writers, or
//!   `layout=files` on a store without an index.
//! - **Permissions.** The index's folder is made writable by its owner only, whatever the
//!   `umask`, and LMDB makes its files readable and writable by their owner only.
//!
//! The default is the index layout in a store of your own because it beats the files layout
//! on every small-entry figure of the benchmarks (see `BENCHMARKS.md`): a hit with no system
//! call, a store of a million small items in two files, listings in a fraction of the time.
//!
//! In the index layout:
//! - **Where.** The environment is the folder `.cachette-index/` directly under the store's
//!   folder (`data.mdb`, `lock.mdb`). No key may name it: a segment named `.cachette-index` is
//!   refused like `.gitignore`, and listings, sweeps and clears leave the folder alone. The
//!   first write creates it; opening, reading and listing a store without one create nothing
//!   and find only the files. (Reading a store that has one uses LMDB's lock file,
//!   `lock.mdb`, to register as a reader, and creates it if it is missing.) Neither file is
//!   opened when it is a link, in either layout. An empty `data.mdb` is no index to a read
//!   (a write makes it one); one shorter than two pages, or that LMDB cannot read, is
//!   damaged: never read nor written over, the files layout takes its place.
//! - **Reads** look in the index first (one read transaction), then for a file. An item in
//!   the index is read into memory, never mapped: [`GetOptions::local_file`] gives its bytes.
//!   Ranged and `head` reads work on both. A read transaction takes one of LMDB's reader
//!   slots in `lock.mdb`; 8192 reads, across the processes using the store, may run at once.
//!   Each stripe of threads keeps the read transaction of its last read, and the next read uses
//!   it when no commit has been made since (it then sees what a new one would), so a run of hits
//!   takes no lock and begins no transaction. A kept transaction pins its snapshot: the pages
//!   later commits free are not reused while it lives, so a thread of the process drops them
//!   about 20 ms after a read kept one. An index the process
//!   may not write (a read-only mount) is opened for reading: its items are read, and writes
//!   fail; the first write after it becomes writable closes it and opens it for writing.
//! - **Writes** of a small item put it in the index in one write transaction and remove a
//!   file of the same key; a large item is written as a file, then removed from the index.
//!   LMDB's write transaction is a lock shared by all the processes using the store, and every
//!   write that may move a key between the two places runs holding it, so readers see the old
//!   or the new item, and [`PutMode::Create`](cachette_core::plugin::PutMode::Create) checks
//!   both places and writes while holding it: exactly one racer wins, across processes. A small
//!   item that does not fit in the index ([`FsConfig::index_map_size`], 1 TiB by default) and
//!   keys longer than LMDB's 511 bytes are written as files instead.
//! - **Written through the map.** On ext4, XFS and tmpfs, file systems whose `fallocate`
//!   reserves blocks for good, the index is written through its memory map (LMDB's
//!   `MDB_WRITEMAP`): a commit makes no system call, where a `pwrite` of each page it changed
//!   and of the meta page took most of a small miss. A write through a map to a page with no
//!   block yet kills the process (`SIGBUS`) when the device is full, so no map covers one: the
//!   data file is allocated whole (`fallocate`, and blocks shared with a copy unshared) before
//!   it is mapped, and the map is as long as the file. The map grows in steps (by a quarter,
//!   8 MiB at least, up to [`FsConfig::index_map_size`]) before a write that would leave it
//!   less free room than 4 MiB or an eighth of what it holds: the new length is allocated first, and a device
//!   without room for it leaves the map as it is (an item that does not fit is then written as
//!   a file, which fails with a clear error on a full device). The processes of a store take
//!   turns to grow it with a lock (`flock`) on `.cachette-index/`, and one whose map is
//!   shorter than what another committed maps the longer file again. A map changes only while
//!   no transaction of the process is under way: reads wait for it (once per step). So the
//!   data file is as long as its map, all of it allocated (8 MiB for a new index), rather than
//!   as long as the pages in use. Elsewhere, in a durable store (whose commits wait for the
//!   device anyway), or with [`FsConfig::index_write_map`] off, the index is written with
//!   `pwrite`, LMDB's default. Every process using a store should agree
//!   on it (they do by default: the file system decides).
//! - **Access tracking** is batched: a read with [`GetOptions::record_access`] records the
//!   access in memory, in the part of its stripe of threads (16 parts, each behind its own
//!   lock), and the pending accesses are written in one write transaction when a part holds
//!   more than 1024, when the oldest of a part is five seconds old (checked on the next access
//!   recorded in that part), and before a listing or a delete, and when the last store of the
//!   process on the folder is dropped. Listings report for an index item the later of its write and its
//!   last recorded access. Another process sees an access once it is written; accesses pending
//!   in a process that crashes are lost (the items then look older than they are).
//! - **Durability.** With [`FsConfig::durable`], every commit is flushed to the device. Without
//!   it, commits are not flushed (LMDB's `MDB_NOSYNC`): a process that crashes or is killed
//!   (`kill -9`) never loses a committed item nor leaves a partial one, since committed pages
//!   are in the system's cache; but a *system* crash (power loss, kernel panic) may lose the
//!   latest items, and, as LMDB's documentation warns, may corrupt the whole index on file
//!   systems that do not keep the order of writes. The index is a cache: if LMDB then
//!   refuses to open it, delete the folder `.cachette-index/` (the items in it are computed
//!   again). Use `durable` if that is not acceptable.
//! - **Compute-once claims** ([`StoreBackend::try_claim`]) are locks, not items: a write lock on
//!   one byte of `.cachette-index/claims.lock`, at an offset from the key's hash, taken with
//!   `F_OFD_SETLK` (Linux), which never waits and which the kernel releases when the holder
//!   lets go or dies, `kill -9` included. So a miss writes its entry in one transaction, and a
//!   waiter takes over a dead holder's claim as soon as it looks again, with no lease to wait
//!   for. The file stays empty. Elsewhere than on Linux, claims are items as in the files
//!   layout.
//! - **Network file systems.** LMDB's locks and shared memory map are not safe on NFS, SMB,
//!   CIFS, FUSE, Ceph, AFS, 9P, Lustre, GPFS and the like. When the store's folder is on one
//!   (detected with `statfs` on Linux), the store uses the files layout: the default layout
//!   makes no index there, and an index found there is not used, with one warning.
//! - **Trust.** LMDB trusts its files: a damaged or hostile `data.mdb` or `lock.mdb` can make it
//!   read out of bounds, which the checks of this crate cannot prevent. The layout asked for
//!   ([`Layout::Index`]) trusts the store's writers (yours, your team's); the default layout
//!   reads only an index nobody else may write (above). A data file shorter than its last
//!   commit needs is refused before LMDB reads it, values longer than any item the index
//!   stores, and malformed access records, are refused or ignored, never a panic.
//! - **Processes.** All the processes using a store should use the same layout: the files
//!   layout does not look in the index. (The default layout decides from the store itself, so
//!   its processes agree.) A process must not use a store opened before a
//!   `fork()` in the child (LMDB's rule); `fork()` then `exec()` is fine.
//!
//! # Configuration
//! A plain path or a `file://` URL selects this backend:
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("cache");
//! use cachette_core::plugin::backend_from_url;
//!
//! cachette_fs::link();
//! let backend = backend_from_url(path.to_str().unwrap()).unwrap();
//! assert_eq!(backend.scheme(), "file");
//! assert!(!path.exists(), "the folder is made by the first write");
//! ```
//!
//! The query of a URL sets the options, the layout for one (`auto`, the default, `files` or
//! `index`):
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("cache");
//! use cachette_core::plugin::{StoreBackendExt, backend_from_url};
//! use cachette_fs::{FsConfig, Layout};
//!
//! cachette_fs::link();
//! let url = format!("file://{}?layout=index", path.display());
//! let config = FsConfig::from_url(&url).unwrap();
//! assert_eq!(config.layout, Layout::Index);
//! assert_eq!(config.index_threshold, 64 << 10);
//!
//! let backend = backend_from_url(&url).unwrap();
//! assert!(!path.exists(), "the folder is made by the first write");
//! # cachette_core::plugin::block_on(true, async {
//! let key = cachette_core::plugin::Key::new("f/x").unwrap();
//! backend.put(&key, b"small".to_vec().into()).await.unwrap();
//! assert!(path.join(".cachette-index/data.mdb").exists());
//! assert!(!path.join("f/x").exists(), "a small item is no file");
//! # }).unwrap();
//! ```
//!
//! In a configuration file, the type is `file`:
//!
//! ```toml
//! type = "file"
//! path = "/var/cache/pipeline"
//! durable = false
//! # "auto" (the default), "files" or "index"; then optional, in bytes:
//! layout = "index"
//! index_threshold = 65536
//! ```

#![deny(unsafe_code)]

#[cfg(not(unix))]
compile_error!("cachette-fs needs a Unix-like system (it relies on openat and O_NOFOLLOW)");

mod claims;
mod config;
mod delete;
mod files;
mod handles;
mod index;
mod list;
mod readers;
mod room;
mod tree;
mod trust;
mod write;

pub use config::{FsConfig, Layout};
/// The folder of a store's index (the index layout's LMDB environment), directly under its
/// root: a store that has one may hold small items and no other folder.
pub use index::INDEX_DIR;

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use cachette_core::plugin::{
    BackendError, BackendResult, Blob, Bytes, Capabilities, ClaimAttempt, ErrorKind, GetOptions,
    GetPayload, GetResult, ItemInfo, Key, LocalFile, Prefix, PutOptions, PutOutcome, StoreBackend,
    async_trait,
};

use files::{read_range, read_whole, record_access};
use index::InIndex;
use tree::{Fault, Info};

/// The URL scheme of this backend.
pub const SCHEME: &str = "file";

/// The prefix of temporary files; keys may not use it.
const TEMP_PREFIX: &str = ".cachette-tmp-";

/// At most this many bytes of an item's name go into the name of its temporary file, which
/// must stay within the 255 bytes file systems allow.
const TEMP_NAME_PART: usize = 64;

/// Temporary files older than this are leftovers of a crashed writer, removed by `sweep`.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Access times are refreshed when older than this, so a burst of hits costs one update.
const ACCESS_GRANULARITY: Duration = Duration::from_secs(1);

/// The most segments a key may have: listings go no deeper, so no item is written where a
/// listing would not find it.
const MAX_SEGMENTS: usize = 64;

const GITIGNORE: &str = ".gitignore";
const GITIGNORE_TEXT: &str = "# Created by cachette: this folder is a cache.\n*\n";

/// Makes sure this crate is linked, so that its URL scheme and configuration type are
/// registered. The `cachette` facade calls it; call it yourself if you depend on this crate
/// directly and only reach it through URLs or configuration files.
pub fn link() {}

/// Numbers temporary files, process-wide: two stores on one folder never pick the same name.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A store in a folder of the local disk.
#[derive(Debug)]
pub struct FsBackend {
    root: PathBuf,
    location: String,
    durable: bool,
    hard_links_fail: AtomicBool,
    /// A handle on the root folder, kept for reads: with it, a read opens its item in one call
    /// (see [`tree::open_beneath`]). Dropped and opened again when the folder was removed.
    root_handle: RwLock<Option<Arc<OwnedFd>>>,
    /// `openat2` is not available here: reads walk the folders.
    no_openat2: AtomicBool,
    /// Handles on the folders of recently read and written items (see [`handles`]).
    folders: handles::FolderHandles,
    /// The index of small items, with [`Layout::Index`].
    index: Option<index::Index>,
    /// The items whose access was recorded less than a second ago, as this process knows.
    recent: cachette_core::plugin::RecentAccesses,
    /// The items this process made in place, kept open for the write that replaces them.
    parked: write::Parked,
}

/// An item [`FsBackend::open_file_fast`] found.
enum Opened {
    /// Open for reading.
    File(File, Info),
    /// Read whole (a small item).
    Small(Bytes),
}

impl Drop for FsBackend {
    fn drop(&mut self) {
        self.flush_accesses();
    }
}

impl FsBackend {
    /// A store in `path`. Nothing is created until the first write (see [`FsConfig::path`]).
    ///
    /// A location that cannot be created is not an error here: every write fails with the
    /// reason, so memoized calls still return their values (uncached).
    pub fn new(path: impl AsRef<Path>) -> BackendResult<Self> {
        FsConfig::new(path.as_ref()).open()
    }

    /// The folder of the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of an entry (for messages and [`LocalFile::path`]; never used to reach it).
    fn path_of(&self, segments: &[&str]) -> PathBuf {
        let len = segments.iter().map(|s| s.len() + 1).sum::<usize>();
        let mut path = PathBuf::with_capacity(self.root.as_os_str().len() + len);
        path.push(&self.root);
        path.extend(segments);
        path
    }

    /// The path of the file of `key` (whose segments were checked).
    fn path_of_key(&self, key: &Key) -> PathBuf {
        let mut path = PathBuf::with_capacity(self.root.as_os_str().len() + key.as_str().len() + 1);
        path.push(&self.root);
        path.extend(key.segments());
        path
    }

    /// The kept handle on the root folder, opened if needed; `None` when the root does not
    /// exist.
    fn root_handle(&self) -> Result<Option<Arc<OwnedFd>>, Fault> {
        if let Some(root) = self
            .root_handle
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return Ok(Some(root.clone()));
        }
        let Some(root) = tree::open_root(&self.root)? else {
            return Ok(None);
        };
        let root = Arc::new(root);
        *self
            .root_handle
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(root.clone());
        Ok(Some(root))
    }

    /// Forgets the kept root handle if its folder was removed; whether it was.
    fn root_was_removed(&self, root: &OwnedFd) -> bool {
        if !tree::is_removed(root.as_fd()) {
            return false;
        }
        let mut kept = self
            .root_handle
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if kept.as_deref().is_some_and(|k| std::ptr::eq(k, root)) {
            *kept = None;
        }
        true
    }

    /// Opens the item `key` for reading in one call: by its name through the kept handle on its
    /// folder (see [`handles`]), else through the kept root handle, keeping a handle on its
    /// folder for the next reads; with `small`, reads a small item whole instead (see
    /// [`tree::open_beneath`]). `None` to walk the folders instead (see
    /// [`open_file_walking`](Self::open_file_walking)).
    fn open_file_fast(&self, key: &Key, small: bool) -> Option<Option<Opened>> {
        if self.no_openat2.load(Ordering::Relaxed) {
            return None;
        }
        let parent = key.as_str().rsplit_once('/');
        if let Some((folder, name)) = parent
            && let Some(handle) = self.folders.get(folder)
        {
            match tree::open_in(handle.handle.as_fd(), name, small) {
                tree::Beneath::Found(file, info) => return Some(Some(Opened::File(file, info))),
                tree::Beneath::Small(bytes) => return Some(Some(Opened::Small(bytes))),
                tree::Beneath::Missing
                    if matches!(self.root_handle(), Ok(Some(root))
                        if handles::is_current(root.as_fd(), folder, &handle)) =>
                {
                    return Some(None);
                }
                // Removed, replaced, or something to look at closer: through the root.
                _ => self.folders.forget(folder, &handle),
            }
        }
        for _ in 0..2 {
            let root = match self.root_handle() {
                Ok(Some(root)) => root,
                Ok(None) => return Some(None),
                Err(_) => return None,
            };
            let found = match tree::open_beneath(root.as_fd(), key.as_str(), small) {
                tree::Beneath::Found(file, info) => Opened::File(file, info),
                tree::Beneath::Small(bytes) => Opened::Small(bytes),
                // A miss, unless the kept folder was removed (and maybe made again) meanwhile;
                // a store whose index is open is not removed under the process using it (the
                // documented way is `clear`), so its misses take no second look.
                tree::Beneath::Missing if !self.index_open() && self.root_was_removed(&root) => {
                    continue;
                }
                tree::Beneath::Missing => return Some(None),
                tree::Beneath::Walk => return None,
                tree::Beneath::Unsupported => {
                    self.no_openat2.store(true, Ordering::Relaxed);
                    return None;
                }
            };
            // The next reads in this folder open their item in it, if a handle on it may be
            // kept (asked before one is opened: see `handles`).
            if let Some((folder, _)) = parent
                && self.folders.has_room()
                && let Some(handle) = tree::open_dir_beneath(root.as_fd(), folder)
            {
                self.folders.keep(folder, handle);
            }
            return Some(Some(found));
        }
        None
    }

    /// Opens the folders `folders` below the root, none through a link. `None` if one is
    /// missing (or the root is).
    fn open_folders(&self, folders: &[&str]) -> Result<Option<OwnedFd>, Fault> {
        let Some(mut dir) = tree::open_root(&self.root)? else {
            return Ok(None);
        };
        let mut path = self.root.clone();
        for name in folders {
            path.push(name);
            match tree::open_dir(dir.as_fd(), name, &path)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// The folder `relative` below the root (its folders `folders`), for a write in it:
    /// through the handle kept on it while it is still the folder at that path (one `lstat`,
    /// see [`handles`]), else opened in one call through the kept root handle (see
    /// [`tree::open_dir_beneath`]), or made (see [`make_folders`](Self::make_folders)), and
    /// kept for the next reads and writes when there is room. A root removed meanwhile holds
    /// nothing, so its kept handle finds no folder here, and the folders are made from the
    /// root opened again through its path.
    fn folder_for_write(
        &self,
        relative: &str,
        folders: &[&str],
    ) -> Result<handles::WriteDir, Fault> {
        let fast = !relative.is_empty() && !self.no_openat2.load(Ordering::Relaxed);
        let root = if fast {
            self.root_handle().ok().flatten()
        } else {
            None
        };
        let opened = match &root {
            Some(root) => {
                if let Some(kept) = self.folders.get(relative) {
                    if handles::is_current(root.as_fd(), relative, &kept) {
                        return Ok(handles::WriteDir::Kept(kept));
                    }
                    self.folders.forget(relative, &kept);
                }
                tree::open_dir_beneath(root.as_fd(), relative)
            }
            None => None,
        };
        let opened = match opened {
            Some(opened) => opened,
            None => self.make_folders(folders)?,
        };
        if !fast || !self.folders.has_room() {
            return Ok(handles::WriteDir::Own(opened));
        }
        Ok(match self.folders.keep_shared(relative, opened) {
            Ok(kept) => handles::WriteDir::Kept(kept),
            Err(opened) => handles::WriteDir::Own(opened),
        })
    }

    /// Opens the folders `folders` below the root, creating those that are missing (and the
    /// root), with a `.gitignore` where it belongs.
    fn make_folders(&self, folders: &[&str]) -> Result<OwnedFd, Fault> {
        let (mut dir, root_created) = match tree::open_root(&self.root)? {
            Some(root) => (root, false),
            None => self.make_root()?,
        };
        let mut path = self.root.clone();
        for (depth, name) in folders.iter().enumerate() {
            path.push(name);
            if let Some(next) = tree::open_dir(dir.as_fd(), name, &path)? {
                dir = next;
                continue;
            }
            // The index's folder is writable by its owner only, whatever the `umask` (see
            // "The default layout").
            let mode = if depth == 0 && *name == index::INDEX_DIR {
                0o755
            } else {
                0o777
            };
            let created =
                tree::make_dir(dir.as_fd(), name, mode).map_err(|e| Fault::io(e, &path))?;
            if created && self.durable {
                tree::sync_dir(dir.as_fd()).map_err(|e| Fault::io(e, &path))?;
            }
            let next = tree::open_dir(dir.as_fd(), name, &path)?.ok_or_else(|| {
                if created {
                    // Removed at once by a delete that found it empty: the write starts over.
                    Fault::io(io::ErrorKind::NotFound, &path)
                } else {
                    Fault::io(
                        io::Error::new(io::ErrorKind::NotADirectory, "not a folder"),
                        &path,
                    )
                }
            })?;
            // The root that this write did not create may be anybody's folder (a project's):
            // it is left alone, and each folder made in it is ignored by git instead, unless
            // the root already holds this store's `.gitignore`.
            if created
                && depth == 0
                && !root_created
                && !is_ignored_by_us(dir.as_fd())
                && let Err(e) = write_gitignore(next.as_fd())
            {
                tracing::debug!(target: "cachette", "cannot write {}: {e}", path.join(GITIGNORE).display());
            }
            dir = next;
        }
        Ok(dir)
    }

    /// Creates the root folder (and its parents), with a `.gitignore` if this call created it.
    /// Its handle, and whether this call created it.
    fn make_root(&self) -> Result<(OwnedFd, bool), Fault> {
        let parent = self.root.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            fs::create_dir_all(parent).map_err(|e| Fault::io(e, parent))?;
        }
        let created = match fs::create_dir(&self.root) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(Fault::io(e, &self.root)),
        };
        let root = tree::open_root(&self.root)?.ok_or_else(|| {
            Fault::io(
                io::Error::new(io::ErrorKind::NotADirectory, "not a folder"),
                &self.root,
            )
        })?;
        if created {
            if let Err(e) = write_gitignore(root.as_fd()) {
                tracing::debug!(target: "cachette", "cannot write {}: {e}", self.root.join(GITIGNORE).display());
            }
            if self.durable
                && let Some(parent) = parent
            {
                File::open(parent)
                    .and_then(|p| p.sync_all())
                    .map_err(|e| Fault::io(e, parent))?;
            }
        }
        Ok((root, created))
    }

    fn get_blocking(&self, key: &Key, options: &GetOptions) -> BackendResult<Option<GetResult>> {
        let op = if options.head {
            "head"
        } else if options.range.is_some() {
            "get_range"
        } else {
            "get"
        };
        let fail = |fault: Fault| fault.into_backend(op, key);
        // The key's segments are checked without being collected, and its path is made only
        // for an error, a local file or a walk from the root: a read allocates nothing here
        // but the bytes it returns. The index holds no key that fails the check (its writes
        // are checked), so they are checked once the index did not have the key, before any
        // answer of a miss.
        let in_index = self.index_get(key, options).map_err(fail)?;
        if let InIndex::Found(found) = in_index {
            return Ok(Some(found));
        }
        check_segments(key, op)?;
        if let InIndex::Nowhere = in_index {
            return Ok(None);
        }
        let path = || self.path_of_key(key);
        // A whole read of a small item whose access needs no record now is open, read, close:
        // no `fstat` for its size, its type or its change time.
        let whole = !options.head && options.range.is_none() && !options.local_file;
        let small = whole && (!options.record_access || self.recent.holds(key.as_str()));
        let opened = match self.open_file_fast(key, small) {
            Some(Some(Opened::Small(bytes))) => return Ok(Some(GetResult::whole(bytes))),
            Some(Some(Opened::File(file, info))) => Some((file, info)),
            Some(None) => None,
            None => {
                let segments: Vec<&str> = key.segments().collect();
                self.open_file_walking(&segments, &path()).map_err(fail)?
            }
        };
        let Some((mut file, info)) = opened else {
            return Ok(None);
        };
        if options.record_access {
            record_access(&file, &info, &self.recent, key.as_str());
        }
        let size = info.size;
        if options.head {
            return Ok(Some(GetResult::head(size)));
        }
        if let Some(range) = &options.range {
            let bytes = read_range(&file, range, size).map_err(|e| fail(Fault::io(e, path())))?;
            return Ok(Some(GetResult::part(bytes, size)));
        }
        if options.local_file {
            tree::make_blocking(&file).map_err(|e| fail(Fault::io(e, path())))?;
            return Ok(Some(GetResult {
                payload: GetPayload::File(LocalFile { file, path: path() }),
                size,
            }));
        }
        let bytes = read_whole(&mut file, size).map_err(|e| fail(Fault::io(e, path())))?;
        Ok(Some(GetResult::whole(bytes)))
    }

    /// Deletes `keys` from the index and as files.
    fn delete_many_everywhere(&self, keys: &[Key]) -> BackendResult<()> {
        match self.index_delete(keys, &|keys| self.delete_many_blocking(keys)) {
            Some(deleted) => deleted,
            None => self.delete_many_blocking(keys),
        }
    }

    /// Opens the item whose key has `segments` for reading, one folder at a time from the root.
    fn open_file_walking(
        &self,
        segments: &[&str],
        path: &Path,
    ) -> Result<Option<(File, Info)>, Fault> {
        let Some((name, folders)) = segments.split_last() else {
            return Ok(None);
        };
        let Some(dir) = self.open_folders(folders)? else {
            return Ok(None);
        };
        tree::open_file(dir.as_fd(), name, path)
    }
}

#[async_trait]
impl StoreBackend for FsBackend {
    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::none();
        caps.local_files = true;
        caps.atomic_create = true;
        caps.ranged_read = true;
        caps.blocking_io = true;
        caps
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        self.get_blocking(key, &options)
    }

    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        Some(self.get_blocking(key, options))
    }

    /// In the index layout, a lock on one byte of a file of the index (see "Layouts").
    fn try_claim(&self, key: &Key) -> Option<BackendResult<ClaimAttempt>> {
        self.index_claim(key)
            .map_err(|fault| fault.into_backend("claim", key))
            .transpose()
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.put_blocking(key, &value, &options)
    }

    async fn put_then_delete(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
        delete: &Key,
    ) -> BackendResult<PutOutcome> {
        self.put_then_delete_blocking(key, &value, &options, Some(delete))
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        self.delete_many_everywhere(keys)
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let mut items = self
            .index_list(prefix)
            .map_err(|fault| fault.into_backend("list", prefix))?;
        let files = self.list_blocking(prefix)?;
        if items.is_empty() {
            return Ok(files);
        }
        // A key in both places is read from the index (a writer was stopped between the two
        // steps of a replacement): it is listed once. The index lists in key order, and the
        // files are the few large items: each is looked for there, and no index key is hashed
        // or copied.
        let only_files: Vec<ItemInfo> = files
            .into_iter()
            .filter(|file| {
                items
                    .binary_search_by(|item| item.key.cmp(&file.key))
                    .is_err()
            })
            .collect();
        items.extend(only_files);
        Ok(items)
    }

    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        self.sweep_blocking(prefix)
    }
}

/// The segments of a key, checked for reserved names and depth.
fn segments<'k>(key: &'k Key, op: &'static str) -> BackendResult<Vec<&'k str>> {
    check_segments(key, op)?;
    Ok(key.segments().collect())
}

/// Checks the segments of `key` as [`segments`] does, without collecting them: at most
/// [`MAX_SEGMENTS`], none reserved. Every reserved name starts with a dot, so only the
/// segments that do are compared.
fn check_segments(key: &Key, op: &'static str) -> BackendResult<()> {
    let bytes = key.as_str().as_bytes();
    // A key has no empty segment: one of more than MAX_SEGMENTS segments is longer than this.
    if bytes.len() > 2 * MAX_SEGMENTS && memchr::memchr_iter(b'/', bytes).count() >= MAX_SEGMENTS {
        return Err(err(
            ErrorKind::InvalidKey,
            op,
            key,
            format!("keys have at most {MAX_SEGMENTS} segments"),
        ));
    }
    for dot in memchr::memchr_iter(b'.', bytes) {
        if dot > 0 && bytes[dot - 1] != b'/' {
            continue;
        }
        let rest = &key.as_str()[dot..];
        let segment = rest.split_once('/').map_or(rest, |(segment, _)| segment);
        let reserved = if segment == INDEX_DIR || segment == GITIGNORE {
            format!("the name {segment:?} is reserved")
        } else if segment.starts_with(TEMP_PREFIX) {
            format!("names starting with {TEMP_PREFIX:?} are reserved")
        } else {
            continue;
        };
        return Err(err(ErrorKind::InvalidKey, op, key, reserved));
    }
    Ok(())
}

/// Whether no key may have a segment named so.
fn is_reserved(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) || name == GITIGNORE || name == INDEX_DIR
}

/// Whether a segment of `key` is a reserved name. They all start with `.`, so a key with no
/// segment that does (the usual one) is cleared in one pass over its bytes, without an early
/// exit, and only a suspect one is split.
fn has_reserved_segment(key: &str) -> bool {
    let bytes = key.as_bytes();
    let dotted = bytes.first() == Some(&b'.')
        || bytes
            .iter()
            .zip(bytes.get(1..).unwrap_or_default())
            .fold(false, |any, (&a, &b)| any | ((a == b'/') & (b == b'.')));
    dotted && key.split('/').any(is_reserved)
}

/// Writes the `.gitignore` of a folder the store created, unless one is there.
fn write_gitignore(dir: BorrowedFd<'_>) -> io::Result<()> {
    match tree::create_file(dir, GITIGNORE) {
        Ok(mut file) => file.write_all(GITIGNORE_TEXT.as_bytes()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the folder holds the `.gitignore` this store writes.
fn is_ignored_by_us(dir: BorrowedFd<'_>) -> bool {
    tree::read_small(dir, GITIGNORE, 4096).is_some_and(|text| text == GITIGNORE_TEXT.as_bytes())
}

fn err(
    kind: ErrorKind,
    op: &'static str,
    key: impl std::fmt::Display,
    message: impl Into<String>,
) -> BackendError {
    BackendError::new(kind, message)
        .with_backend(SCHEME)
        .with_operation(op)
        .with_key(key)
}
