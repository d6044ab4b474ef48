//! Listing the items under a prefix, and sweeping what dead writers left: a walk of the folders
//! that never follows a link and writes nothing, but for the leftovers `sweep` removes.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cachette_core::plugin::{BackendResult, ItemInfo, Key, Prefix};
use rustix::fs::FileType;

use crate::files::{is_leftover, last_access};
use crate::tree::{self, Fault, Info};
use crate::{FsBackend, MAX_SEGMENTS, TEMP_PREFIX, is_reserved};

impl FsBackend {
    /// Calls `visit` with each entry under `prefix` that is not a folder (see [`Walked`]). The
    /// walk ends early when `visit` breaks, and fails when it does.
    pub(super) fn walk(
        &self,
        prefix: &Prefix,
        visit: &mut dyn FnMut(&Walked<'_>) -> Result<ControlFlow<()>, Fault>,
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
        let mut key = prefix.as_str().to_owned();
        walk_folder(dir, &mut key, folders.len(), &mut path, visit).map(drop)
    }

    pub(super) fn list_blocking(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let now = SystemTime::now();
        let mut items = Vec::new();
        self.walk(prefix, &mut |entry| {
            if is_reserved(entry.name) || !entry.may_be_file() {
                return Ok(ControlFlow::Continue(()));
            }
            let Some(info) = entry.info()? else {
                return Ok(ControlFlow::Continue(())); // Removed since the folder was read.
            };
            if info.kind != FileType::RegularFile {
                return Ok(ControlFlow::Continue(()));
            }
            let Ok(key) = Key::new(entry.key) else {
                return Ok(ControlFlow::Continue(())); // A name no key can have: not ours.
            };
            items.push(ItemInfo {
                key,
                size: info.size,
                last_access: last_access(&info, now),
            });
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|fault| fault.into_backend("list", prefix))?;
        Ok(items)
    }

    pub(super) fn sweep_blocking(&self, prefix: &Prefix) -> BackendResult<u64> {
        let now = SystemTime::now();
        let mut removed = 0u64;
        self.walk(prefix, &mut |entry| {
            // Only temporary files are looked at closer: the others cost no system call.
            if !entry.name.starts_with(TEMP_PREFIX) || !entry.may_be_file() {
                return Ok(ControlFlow::Continue(()));
            }
            let Some(info) = entry.info()? else {
                return Ok(ControlFlow::Continue(()));
            };
            let age = now.duration_since(info.mtime).unwrap_or_default();
            if info.kind == FileType::RegularFile
                && is_leftover(entry.name, age)
                && matches!(tree::unlink(entry.dir, entry.name), Ok(true))
            {
                removed += 1;
            }
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|fault| fault.into_backend("sweep", prefix))?;
        Ok(removed)
    }
}

/// An entry met by a walk, which is not a folder.
pub(super) struct Walked<'a> {
    /// Its folder.
    pub(super) dir: BorrowedFd<'a>,
    /// Its key (which may be no valid key).
    pub(super) key: &'a str,
    pub(super) name: &'a str,
    /// What it is, as its folder says (as `fstatat` says where the file system does not).
    kind: FileType,
    /// What `fstatat` said of it, when the walk had to ask (the folder did not say).
    stat: Option<Info>,
    /// Its folder's path, for messages.
    folder: &'a Path,
}

impl Walked<'_> {
    /// Whether it may be a regular file: it was one when the folder was read.
    pub(super) fn may_be_file(&self) -> bool {
        self.kind == FileType::RegularFile
    }

    /// What `fstatat` says of it (asked once per entry); `None` when it was removed since the
    /// folder was read.
    pub(super) fn info(&self) -> Result<Option<Info>, Fault> {
        if let Some(info) = self.stat {
            return Ok(Some(info));
        }
        stat(self.dir, self.name, self.folder)
    }
}

/// What `fstatat` says of the entry `name` of `dir` (at `folder`); `None` when there is none.
fn stat(dir: BorrowedFd<'_>, name: &str, folder: &Path) -> Result<Option<Info>, Fault> {
    tree::stat_at(dir, name).map_err(|e| Fault::io(e, folder.join(name)))
}

/// Walks the folder `dir` (at `path`, holding the keys under `key`, `depth` folders below the
/// root) and those below it, calling `visit` with every entry that is not a folder, until it
/// breaks. Folders swapped for links are skipped, never followed. An entry is looked at with
/// `fstatat` only when its folder does not say whether it is a folder, or `visit` asks.
/// `key` and `path` are given back as they came.
fn walk_folder(
    dir: OwnedFd,
    key: &mut String,
    depth: usize,
    path: &mut PathBuf,
    visit: &mut dyn FnMut(&Walked<'_>) -> Result<ControlFlow<()>, Fault>,
) -> Result<ControlFlow<()>, Fault> {
    let entries = match tree::entries(dir.as_fd()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ControlFlow::Continue(())),
        Err(e) => return Err(Fault::io(e, &*path)),
    };
    let key_len = key.len();
    for (name, mut kind) in entries.iter() {
        if key_len > 0 {
            key.push('/');
        }
        key.push_str(name);
        let result = (|| {
            let mut asked = None;
            if kind == FileType::Unknown {
                let Some(info) = stat(dir.as_fd(), name, path)? else {
                    return Ok(ControlFlow::Continue(())); // Removed since the folder was read.
                };
                kind = info.kind;
                asked = Some(info);
            }
            if kind != FileType::Directory {
                let entry = Walked {
                    dir: dir.as_fd(),
                    key,
                    name,
                    kind,
                    stat: asked,
                    folder: path,
                };
                return visit(&entry);
            }
            if is_reserved(name) || depth + 1 >= MAX_SEGMENTS {
                return Ok(ControlFlow::Continue(()));
            }
            path.push(name);
            let walked = match tree::open_dir(dir.as_fd(), name, path) {
                Ok(Some(sub)) => walk_folder(sub, key, depth + 1, path, visit),
                Ok(None) | Err(Fault::Link(_)) => Ok(ControlFlow::Continue(())),
                Err(fault) => Err(fault),
            };
            path.pop();
            walked
        })();
        key.truncate(key_len);
        if result?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}
