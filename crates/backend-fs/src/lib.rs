//! The local-disk backend of Cachette.
//!
//! A cache location is a folder a person can read: one folder per memoized function, named from
//! its module path and name, and inside it one file per cached call, named by the hash of the
//! arguments:
//!
//! ```text
//! cache/
//! ├── .gitignore
//! └── my_crate.pipeline.load/
//!     ├── func_code
//!     ├── 3f0c55d2e1b6a9f08d7c4e21a5b3c6d7
//!     └── 9a1e…
//! ```
//!
//! # Guarantees
//! - **Whole or nothing.** A write goes to a temporary file in the item's own folder, which is
//!   then renamed into place. A reader sees the old item, the new item, or no item, never part of
//!   one, whatever the number of threads and processes writing the same key.
//! - **Atomic create.** [`PutMode::Create`] publishes the temporary file with a hard link, which
//!   fails if the name exists: exactly one racer wins.
//! - **Confined keys.** Keys are validated by [`Key`]: empty segments, `.`, `..`, absolute paths,
//!   backslashes and NUL bytes are refused with a clear error, so no key names a file outside the
//!   location. Segments named `.gitignore` or starting with `.cachette-tmp-` are reserved, and
//!   keys have at most 64 segments.
//! - **No links followed.** Below the store's folder, every file and folder is reached relative
//!   to a folder handle opened without following links, so a symbolic link planted in the store
//!   (or swapped for a folder while an operation runs) is never followed: a read, write or delete
//!   that meets one fails with [`ErrorKind::PermissionDenied`], naming it. The store's folder
//!   itself may be a link.
//! - **Regular files only.** An item is a regular file. A named pipe, socket or device where an
//!   item is expected is refused with an error, without blocking; listings leave them out.
//! - **Reads only read.** Opening a store creates nothing; reading, listing and sweeping a store
//!   whose folder does not exist find nothing and create nothing. The folders are made by the
//!   first write, with a `.gitignore` (see [`FsConfig::path`]).
//! - **Deletes delete what they are given.** [`StoreBackend::delete_many`] removes the items
//!   named and then the folders they leave empty, nothing else (not the temporary files of
//!   writers at work in the same folder).
//! - **Access tracking.** A read with [`GetOptions::record_access`] sets the item's access time
//!   (at most once a second per item), so least-recently-used clean-up works on `relatime` and
//!   `noatime` mounts too. Listings report the inode's change time, which nobody can set to the
//!   future (see [`ItemInfo::last_access`]).
//! - **Memory mapping.** [`GetOptions::local_file`] gives the open file of an item, so large
//!   arrays can be memory-mapped instead of read.
//!
//! Writes are not flushed to the device unless [`FsConfig::durable`] is set: after a power loss
//! an entry may be missing or damaged, which the entry checksum detects (the call is then
//! recomputed).
//!
//! The backend needs a Unix-like system (it relies on `openat` and `O_NOFOLLOW`).
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
//! In a configuration file, the type is `file`:
//!
//! ```toml
//! type = "file"
//! path = "/var/cache/pipeline"
//! durable = false
//! ```

#![forbid(unsafe_code)]

#[cfg(not(unix))]
compile_error!("cachette-fs needs a Unix-like system (it relies on openat and O_NOFOLLOW)");

mod tree;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use cachette_core::plugin::{
    BackendConfig, BackendError, BackendResult, Blob, Bytes, Capabilities, DateTime, DynBackend,
    ErrorKind, GetOptions, GetPayload, GetResult, ItemInfo, Key, LocalFile, Prefix, PutMode,
    PutOptions, PutOutcome, StoreBackend, Utc, async_trait, owner_tag, writer_is_gone,
};
use rustix::fs::FileType;
use serde::{Deserialize, Serialize};

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
        let mut path = self.root.clone();
        path.extend(segments);
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

    /// Opens the item `key` for reading in one call, through the kept root handle. `None` to
    /// walk the folders instead (see [`open_file_walking`](Self::open_file_walking)).
    fn open_file_fast(&self, key: &Key) -> Option<Option<(File, Info)>> {
        if self.no_openat2.load(Ordering::Relaxed) {
            return None;
        }
        for _ in 0..2 {
            let root = match self.root_handle() {
                Ok(Some(root)) => root,
                Ok(None) => return Some(None),
                Err(_) => return None,
            };
            match tree::open_beneath(root.as_fd(), key.as_str()) {
                tree::Beneath::Found(file, info) => return Some(Some((file, info))),
                // A miss, unless the kept folder was removed (and maybe made again) meanwhile.
                tree::Beneath::Missing if self.root_was_removed(&root) => continue,
                tree::Beneath::Missing => return Some(None),
                tree::Beneath::Walk => {
                    if !cfg!(any(target_os = "linux", target_os = "android")) {
                        self.no_openat2.store(true, Ordering::Relaxed);
                    }
                    return None;
                }
            }
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
            let created = tree::make_dir(dir.as_fd(), name).map_err(|e| Fault::io(e, &path))?;
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

    fn put_blocking(&self, key: &Key, value: &Blob, mode: PutMode) -> BackendResult<PutOutcome> {
        let op = if mode == PutMode::Create {
            "put_if_absent"
        } else {
            "put"
        };
        let segments = segments(key, op)?;
        let Some((name, folders)) = segments.split_last() else {
            return Err(err(ErrorKind::InvalidKey, op, key, "the key is empty"));
        };
        let mut attempts = 0;
        loop {
            match self.try_put(folders, name, value, mode) {
                // A folder of the item was removed by a delete while this write went through it.
                Err(fault) if fault.is(io::ErrorKind::NotFound) && attempts < 4 => attempts += 1,
                other => return other.map_err(|fault| fault.into_backend(op, key)),
            }
        }
    }

    fn try_put(
        &self,
        folders: &[&str],
        name: &str,
        value: &Blob,
        mode: PutMode,
    ) -> Result<PutOutcome, Fault> {
        let dir = self.make_folders(folders)?;
        let dir = dir.as_fd();
        let mut path = self.path_of(folders);
        path.push(name);
        let create = mode == PutMode::Create;
        if create
            && tree::stat_at(dir, name)
                .map_err(|e| Fault::io(e, &path))?
                .is_some()
        {
            return Ok(PutOutcome::AlreadyExists);
        }
        let (temp, file) = self.write_temp(dir, name, value, &path)?;
        let outcome = if create {
            self.publish_new(dir, &temp, file, name, &path)
        } else {
            drop(file);
            tree::rename(dir, &temp, name)
                .map(|()| PutOutcome::Created)
                .map_err(|e| Fault::io(e, &path))
        };
        if create || outcome.is_err() {
            let _ = tree::unlink(dir, &temp);
        }
        let outcome = outcome?;
        if outcome == PutOutcome::Created && self.durable {
            tree::sync_dir(dir).map_err(|e| Fault::io(e, &path))?;
        }
        Ok(outcome)
    }

    /// Writes `value` to a new temporary file in `dir`, beside the item `name` (at `path`). The
    /// temporary file's name, and the file, open.
    fn write_temp(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        value: &Blob,
        path: &Path,
    ) -> Result<(String, File), Fault> {
        for _ in 0..8 {
            let temp = temp_name(name);
            let temp_path = path.with_file_name(&temp);
            match tree::create_file(dir, &temp) {
                Ok(mut file) => {
                    let written = write_parts(&mut file, value).and_then(|()| {
                        if self.durable {
                            file.sync_all()
                        } else {
                            Ok(())
                        }
                    });
                    if let Err(e) = written {
                        drop(file);
                        let _ = tree::unlink(dir, &temp);
                        return Err(Fault::io(e, temp_path));
                    }
                    return Ok((temp, file));
                }
                // Left by a process of the same id, long gone: take another name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Fault::io(e, temp_path)),
            }
        }
        Err(Fault::io(
            io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary file name"),
            path,
        ))
    }

    /// Links the temporary file `temp` as `name` unless `name` exists. On file systems without
    /// hard links, falls back to creating `name` exclusively and copying: still one winner, but
    /// a reader may then see a partly written item, which the entry checksum rejects.
    fn publish_new(
        &self,
        dir: BorrowedFd<'_>,
        temp: &str,
        mut file: File,
        name: &str,
        path: &Path,
    ) -> Result<PutOutcome, Fault> {
        if !self.hard_links_fail.load(Ordering::Relaxed) {
            match tree::hard_link(dir, temp, name) {
                Ok(()) => return Ok(PutOutcome::Created),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Ok(PutOutcome::AlreadyExists);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    tracing::warn!(
                        target: "cachette",
                        "{}: hard links are not available ({e}); atomic creation falls back to exclusive create",
                        self.location
                    );
                    self.hard_links_fail.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(Fault::io(e, path)),
            }
        }
        let mut out = match tree::create_file(dir, name) {
            Ok(out) => out,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(PutOutcome::AlreadyExists);
            }
            Err(e) => return Err(Fault::io(e, path)),
        };
        let copied = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| io::copy(&mut file, &mut out))
            .and_then(|_| if self.durable { out.sync_all() } else { Ok(()) });
        if let Err(e) = copied {
            drop(out);
            let _ = tree::unlink(dir, name);
            return Err(Fault::io(e, path));
        }
        Ok(PutOutcome::Created)
    }

    fn get_blocking(&self, key: &Key, options: &GetOptions) -> BackendResult<Option<GetResult>> {
        let op = if options.head {
            "head"
        } else if options.range.is_some() {
            "get_range"
        } else {
            "get"
        };
        let segments = segments(key, op)?;
        let fail = |fault: Fault| fault.into_backend(op, key);
        let path = self.path_of(&segments);
        let opened = match self.open_file_fast(key) {
            Some(opened) => opened,
            None => self.open_file_walking(&segments, &path).map_err(fail)?,
        };
        let Some((mut file, info)) = opened else {
            return Ok(None);
        };
        if options.record_access {
            record_access(&file, &info);
        }
        let size = info.size;
        if options.head {
            return Ok(Some(GetResult::head(size)));
        }
        if let Some(range) = &options.range {
            let bytes = read_range(&file, range, size).map_err(|e| fail(Fault::io(e, &path)))?;
            return Ok(Some(GetResult::part(bytes, size)));
        }
        if options.local_file {
            tree::make_blocking(&file).map_err(|e| fail(Fault::io(e, &path)))?;
            return Ok(Some(GetResult {
                payload: GetPayload::File(LocalFile { file, path }),
                size,
            }));
        }
        let bytes = read_whole(&mut file, size).map_err(|e| fail(Fault::io(e, &path)))?;
        Ok(Some(GetResult::whole(bytes)))
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

    fn delete_many_blocking(&self, keys: &[Key]) -> BackendResult<()> {
        let mut first_error = None;
        // Items by folder, so that each folder is opened once and emptied folders are removed
        // once all its items are gone.
        let mut folders: BTreeMap<Vec<&str>, Vec<(&str, &Key)>> = BTreeMap::new();
        for key in keys {
            match segments(key, "delete") {
                Ok(segments) => {
                    if let Some((name, path)) = segments.split_last() {
                        folders.entry(path.to_vec()).or_default().push((name, key));
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        for (folder, items) in &folders {
            if let Err(e) = self.delete_in(folder, items) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes the items `items` of the folder `folders`, then the folders left empty.
    fn delete_in(&self, folders: &[&str], items: &[(&str, &Key)]) -> BackendResult<()> {
        let Some(&(_, first_key)) = items.first() else {
            return Ok(());
        };
        let fail = |fault: Fault| fault.into_backend("delete", first_key);
        // The handles of the root and of each folder, kept to remove emptied folders relative
        // to their parent's handle.
        let Some(root) = tree::open_root(&self.root).map_err(fail)? else {
            return Ok(());
        };
        let mut chain = vec![root];
        let mut path = self.root.clone();
        for name in folders {
            path.push(name);
            let next = match chain.last() {
                Some(parent) => tree::open_dir(parent.as_fd(), name, &path).map_err(fail)?,
                None => None,
            };
            match next {
                Some(dir) => chain.push(dir),
                None => return Ok(()),
            }
        }
        let mut first_error = None;
        if let Some(dir) = chain.last() {
            let dir = dir.as_fd();
            for &(name, key) in items {
                if let Err(e) = tree::unlink(dir, name) {
                    let item = path.join(name);
                    let folder = matches!(tree::stat_at(dir, name), Ok(Some(info)) if info.kind == FileType::Directory);
                    let error = if folder {
                        err(
                            ErrorKind::Other,
                            "delete",
                            key,
                            format!("{} is a folder, not an item", item.display()),
                        )
                    } else {
                        Fault::io(e, item).into_backend("delete", key)
                    };
                    first_error.get_or_insert(error);
                }
            }
        }
        self.remove_empty_folders(&chain, folders);
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the folders of `folders` left empty, deepest first, each relative to its
    /// parent's handle in `chain` (the root's first). Stops at the first that is not empty (or
    /// is no longer a folder: `rmdir` never follows a link). Never the root.
    fn remove_empty_folders(&self, chain: &[OwnedFd], folders: &[&str]) {
        for depth in (0..folders.len()).rev() {
            let (Some(parent), name) = (chain.get(depth), folders[depth]) else {
                return;
            };
            match tree::remove_dir(parent.as_fd(), name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e)
                    if depth == 0
                        && matches!(
                            e.kind(),
                            io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                        ) =>
                {
                    if let Some(folder) = chain.get(1) {
                        remove_ignored_folder(parent.as_fd(), name, folder.as_fd());
                    }
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Calls `visit` with each entry under `prefix` that is not a folder: the handle of its
    /// folder, its key (which may be no valid key), its name and what `fstatat` said of it.
    fn walk(
        &self,
        prefix: &Prefix,
        visit: &mut dyn FnMut(BorrowedFd<'_>, String, &str, &Info),
    ) -> Result<(), Fault> {
        let folders: Vec<&str> = if prefix.is_root() {
            Vec::new()
        } else {
            prefix.as_str().split('/').collect()
        };
        // No key lies deeper, nor under a reserved name.
        if folders.len() >= MAX_SEGMENTS || folders.iter().any(|s| is_reserved(s)) {
            return Ok(());
        }
        let Some(dir) = self.open_folders(&folders)? else {
            return Ok(());
        };
        let mut path = self.path_of(&folders);
        walk_folder(dir, prefix.as_str(), folders.len(), &mut path, visit)
    }

    fn list_blocking(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let now = SystemTime::now();
        let mut items = Vec::new();
        self.walk(prefix, &mut |_, key, name, info| {
            if is_reserved(name) || info.kind != FileType::RegularFile {
                return;
            }
            let Ok(key) = Key::new(key) else {
                return; // A name no key can have: not ours.
            };
            items.push(ItemInfo {
                key,
                size: info.size,
                last_access: last_access(info, now),
            });
        })
        .map_err(|fault| fault.into_backend("list", prefix))?;
        Ok(items)
    }

    fn sweep_blocking(&self, prefix: &Prefix) -> BackendResult<u64> {
        let now = SystemTime::now();
        let mut removed = 0u64;
        self.walk(prefix, &mut |dir, _, name, info| {
            let age = now.duration_since(info.mtime).unwrap_or_default();
            if info.kind == FileType::RegularFile
                && name.starts_with(TEMP_PREFIX)
                && is_leftover(name, age)
                && matches!(tree::unlink(dir, name), Ok(true))
            {
                removed += 1;
            }
        })
        .map_err(|fault| fault.into_backend("sweep", prefix))?;
        Ok(removed)
    }
}

/// Walks the folder `dir` (at `path`, holding the keys under `key_prefix`, `depth` folders
/// below the root) and those below it, calling `visit` with every entry that is not a folder.
/// Folders swapped for links are skipped, never followed.
fn walk_folder(
    dir: OwnedFd,
    key_prefix: &str,
    depth: usize,
    path: &mut PathBuf,
    visit: &mut dyn FnMut(BorrowedFd<'_>, String, &str, &Info),
) -> Result<(), Fault> {
    let entries = match tree::entries(dir.as_fd()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Fault::io(e, &*path)),
    };
    for name in entries {
        let key = if key_prefix.is_empty() {
            name.clone()
        } else {
            format!("{key_prefix}/{name}")
        };
        path.push(&name);
        let result = (|| {
            let Some(info) = tree::stat_at(dir.as_fd(), &name).map_err(|e| Fault::io(e, &*path))?
            else {
                return Ok(()); // Removed since the folder was read.
            };
            if info.kind != FileType::Directory {
                visit(dir.as_fd(), key, &name, &info);
                return Ok(());
            }
            if is_reserved(&name) || depth + 1 >= MAX_SEGMENTS {
                return Ok(());
            }
            match tree::open_dir(dir.as_fd(), &name, path) {
                Ok(Some(sub)) => walk_folder(sub, &key, depth + 1, path, visit),
                Ok(None) | Err(Fault::Link(_)) => Ok(()),
                Err(fault) => Err(fault),
            }
        })();
        path.pop();
        result?;
    }
    Ok(())
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

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.put_blocking(key, &value, options.mode)
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        self.delete_many_blocking(keys)
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.list_blocking(prefix)
    }

    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        self.sweep_blocking(prefix)
    }
}

/// The configuration of a local-disk store (`type = "file"` in configuration files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The folder of the store. Opening the store creates nothing: the first write creates the
    /// folder if it is missing, with a `.gitignore` holding `*` in it. When the folder already
    /// exists (a project's folder, say), the `.gitignore` goes instead into each folder the
    /// store creates directly in it, never into a folder it did not create.
    pub path: PathBuf,
    /// Flush every write to the device before publishing it (slower; survives power loss).
    #[serde(default)]
    pub durable: bool,
}

impl FsConfig {
    /// A configuration for `path`, not durable.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FsConfig {
            path: path.into(),
            durable: false,
        }
    }

    /// Opens the store this configuration describes. It creates nothing, and only checks the
    /// path: a folder that cannot be created makes writes fail, not this.
    pub fn open(&self) -> BackendResult<FsBackend> {
        if self.path.as_os_str().is_empty() {
            return Err(BackendError::new(
                ErrorKind::ConfigInvalid,
                "the cache location is an empty path",
            )
            .with_backend(SCHEME));
        }
        let root = std::path::absolute(&self.path).map_err(|e| {
            BackendError::from_io(e, format!("cannot resolve {}", self.path.display()))
                .with_backend(SCHEME)
        })?;
        let root = canonical(&root);
        if let Ok(meta) = fs::metadata(&root)
            && !meta.is_dir()
        {
            tracing::warn!(
                target: "cachette",
                "cache location {} is not a folder; calls will be computed without caching",
                root.display()
            );
        }
        Ok(FsBackend {
            location: root.display().to_string(),
            root,
            durable: self.durable,
            hard_links_fail: AtomicBool::new(false),
            root_handle: RwLock::new(None),
            no_openat2: AtomicBool::new(false),
        })
    }

    /// Parses a plain path or a `file://` URL.
    pub fn from_url(location: &str) -> BackendResult<Self> {
        if !location.contains("://") {
            return Ok(FsConfig::new(location));
        }
        let invalid = |why: String| {
            BackendError::new(
                ErrorKind::ConfigInvalid,
                format!("invalid file URL {location:?}: {why}"),
            )
            .with_backend(SCHEME)
        };
        let url = url::Url::parse(location).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() != SCHEME {
            return Err(invalid(format!("the scheme is not {SCHEME:?}")));
        }
        let mut config =
            FsConfig::new(url.to_file_path().map_err(|()| {
                invalid("it names no local path (use file:///absolute/path)".into())
            })?);
        for (name, value) in url.query_pairs() {
            match &*name {
                "durable" => {
                    config.durable = value
                        .parse()
                        .map_err(|_| invalid(format!("durable={value} is not true or false")))?;
                }
                _ => return Err(invalid(format!("unknown option {name:?} (known: durable)"))),
            }
        }
        Ok(config)
    }
}

impl BackendConfig for FsConfig {
    fn build(&self) -> BackendResult<DynBackend> {
        Ok(std::sync::Arc::new(self.open()?))
    }
}

cachette_core::register_backend! {
    config: FsConfig,
    name: SCHEME,
    schemes: [SCHEME],
    from_url: FsConfig::from_url,
}

/// The canonical form of `path` (an absolute path): that of its longest existing ancestor,
/// followed by the rest. Reads only.
fn canonical(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(mut found) = fs::canonicalize(at) {
            found.extend(rest.iter().rev());
            return found;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// The segments of a key, checked for reserved names and depth.
fn segments<'k>(key: &'k Key, op: &'static str) -> BackendResult<Vec<&'k str>> {
    let segments: Vec<&str> = key.segments().collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(err(
            ErrorKind::InvalidKey,
            op,
            key,
            format!("keys have at most {MAX_SEGMENTS} segments"),
        ));
    }
    for segment in &segments {
        if segment.starts_with(TEMP_PREFIX) {
            return Err(err(
                ErrorKind::InvalidKey,
                op,
                key,
                format!("names starting with {TEMP_PREFIX:?} are reserved"),
            ));
        }
        if *segment == GITIGNORE {
            return Err(err(
                ErrorKind::InvalidKey,
                op,
                key,
                format!("the name {GITIGNORE:?} is reserved"),
            ));
        }
    }
    Ok(segments)
}

/// Whether no key may have a segment named so.
fn is_reserved(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) || name == GITIGNORE
}

/// A new name for a temporary file beside the item `name`: `<prefix><owner tag>.<pid>-<n>-`
/// and the start of the item's name (see [`is_leftover`]).
fn temp_name(name: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut end = name.len().min(TEMP_NAME_PART);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{TEMP_PREFIX}{}.{}-{n}-{}",
        owner_tag(),
        std::process::id(),
        &name[..end]
    )
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

/// Removes the folder `name` of `root` (open as `folder`) if all it holds is the `.gitignore`
/// the store wrote in it. If a writer puts something in it meanwhile, the folder stays, and
/// gets its `.gitignore` back.
fn remove_ignored_folder(root: BorrowedFd<'_>, name: &str, folder: BorrowedFd<'_>) {
    let only_gitignore = tree::holds_only(folder, GITIGNORE).unwrap_or(false);
    if !only_gitignore || !is_ignored_by_us(folder) || tree::unlink(folder, GITIGNORE).is_err() {
        return;
    }
    match tree::remove_dir(root, name) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => {
            let _ = write_gitignore(folder);
        }
    }
}

/// Files at least this large are read into memory that is backed by huge pages where the
/// system offers them (see [`read_whole`]).
const LARGE_READ: u64 = 32 << 20;

/// Reads a whole file of `len` bytes (as its metadata said).
///
/// A large file is read into an anonymous memory map advised to use transparent huge pages:
/// faulting in and zeroing 2 MiB pages instead of 4 KiB ones reads a gigabyte from the page
/// cache in about a third of the time `std::fs::read` takes. If the file's length is not `len`
/// after all, it is read again the plain way. A small file is read in one `read` of `len`
/// bytes.
fn read_whole(file: &mut File, len: u64) -> io::Result<Bytes> {
    if len >= LARGE_READ
        && let Ok(size) = usize::try_from(len)
        && let Ok(mut map) = memmap2::MmapMut::map_anon(size)
    {
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let n = read_full(file, &mut map)?;
        let mut probe = [0u8; 1];
        if n == size && file.read(&mut probe)? == 0 {
            return Ok(Bytes::from_owner(map));
        }
        file.seek(SeekFrom::Start(0))?;
    }
    if len < LARGE_READ
        && let Ok(size) = usize::try_from(len)
    {
        // Items are never written in place (a write renames a new file over the old one), so
        // the length the metadata gave is the length to read: no size probe, no read to EOF.
        // A file that changed anyway gives bytes whose entry checks fail.
        let mut buf = vec![0u8; size];
        let n = read_full(file, &mut buf)?;
        buf.truncate(n);
        return Ok(Bytes::from(buf));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    file.read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads the bytes of `range` (clamped to `len`, the file's size) of a file.
fn read_range(file: &File, range: &Range<u64>, len: u64) -> io::Result<Bytes> {
    let start = range.start.min(len);
    let end = range.end.clamp(start, len);
    let size = usize::try_from(end - start)
        .map_err(|_| io::Error::new(io::ErrorKind::FileTooLarge, "the range is too large"))?;
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        match file.read_at(&mut buf[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

/// Writes the segments of a value one after the other, without gathering them first.
fn write_parts(file: &mut File, value: &Blob) -> io::Result<()> {
    for part in value.parts() {
        file.write_all(part)?;
    }
    Ok(())
}

/// Records a read: sets the access time to now, unless the item was written or its access
/// recorded less than [`ACCESS_GRANULARITY`] ago (by its change time, see [`last_access`]).
/// Best effort (a store shared between users may not allow it).
fn record_access(file: &File, info: &Info) {
    let recent = SystemTime::now()
        .duration_since(info.ctime)
        .is_ok_and(|d| d < ACCESS_GRANULARITY);
    if !recent && let Err(e) = tree::touch(file) {
        tracing::debug!(target: "cachette", "cannot record an access: {e}");
    }
}

/// When an item was last written or read with `record_access`: the inode's change time,
/// clamped to `now`.
///
/// Not the access or modification time: anybody who may write to the store can set those to
/// any date (`touch -d`, `utimensat`), and an item whose times lie in the future would look
/// recently used for ever and never be evicted. The change time cannot be set: the kernel sets
/// it to the current time on every write, rename, link and time change, so it follows every
/// write (the temporary file is written, then renamed or linked into place) and every recorded
/// access (which sets the access time, and with it the change time). Clamping to now covers a
/// clock that went back, or another machine's clock on a network file system.
fn last_access(info: &Info, now: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(info.ctime.min(now))
}

/// A temporary file left by a writer that will never rename it: one of this host whose process
/// is gone (a crash, `kill -9`), or any older than [`STALE_TEMP`].
fn is_leftover(name: &str, age: Duration) -> bool {
    if age > STALE_TEMP {
        return true;
    }
    // `<prefix><owner tag>.<pid>-<n>-<name>` (see `temp_name`)
    let owner = name[TEMP_PREFIX.len()..].split('-').next().unwrap_or("");
    let Some((tag, pid)) = owner.split_once('.') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    writer_is_gone(tag, pid)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `LARGE_READ` and a bit more, in a pattern that shows misplaced bytes.
    fn large_bytes() -> Vec<u8> {
        let n = usize::try_from(LARGE_READ).unwrap() + 12_345;
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn large_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let bytes = large_bytes();
        fs::write(&path, &bytes).unwrap();
        let len = bytes.len() as u64;
        let read = read_whole(&mut File::open(&path).unwrap(), len).unwrap();
        assert!(read[..] == bytes[..]);
        // The metadata said more, or less, than the file holds: read the plain way.
        for wrong in [len + 10, len - 10, LARGE_READ] {
            let read = read_whole(&mut File::open(&path).unwrap(), wrong).unwrap();
            assert!(read[..] == bytes[..], "length given: {wrong}");
        }
        // Small files: the length given is trusted (items are never written in place).
        fs::write(&path, b"small").unwrap();
        let read = read_whole(&mut File::open(&path).unwrap(), 3).unwrap();
        assert_eq!(&read[..], b"sma");
        let read = read_whole(&mut File::open(&path).unwrap(), 5).unwrap();
        assert_eq!(&read[..], b"small");
    }

    #[test]
    fn ranges_are_clamped_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"0123456789").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(&read_range(&file, &(2..5), 10).unwrap()[..], b"234");
        assert_eq!(&read_range(&file, &(8..50), 10).unwrap()[..], b"89");
        assert!(read_range(&file, &(20..30), 10).unwrap().is_empty());
        let reversed = Range { start: 5, end: 2 };
        assert!(read_range(&file, &reversed, 10).unwrap().is_empty());
    }

    #[test]
    fn temporary_names_record_their_writer_and_stay_short() {
        let long = "é".repeat(120);
        let name = temp_name(&long);
        assert!(name.len() <= TEMP_PREFIX.len() + 8 + 1 + 10 + 1 + 20 + 1 + TEMP_NAME_PART);
        assert!(is_reserved(&name));
        // A live writer (this process), recent: not a leftover; old: a leftover.
        assert!(!is_leftover(&name, Duration::ZERO));
        assert!(is_leftover(&name, STALE_TEMP + Duration::from_secs(1)));
        // Another host's writer is never taken for gone; names not of this form neither.
        assert!(!is_leftover(".cachette-tmp-00000000.1-0-x", Duration::ZERO));
        assert!(!is_leftover(".cachette-tmp-garbage", Duration::ZERO));
    }

    #[test]
    fn canonical_paths_of_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(canonical(&dir.path().join("a/b")), base.join("a/b"));
        assert_eq!(canonical(dir.path()), base);
        assert!(!dir.path().join("a").exists(), "canonical creates nothing");
    }
}
