//! Listing the items under a prefix, and sweeping what dead writers left: a walk of the folders
//! that never follows a link and writes nothing, but for the leftovers `sweep` removes.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::SystemTime;

use cachette_core::plugin::{BackendResult, ItemInfo, Key, Prefix};
use rustix::fs::FileType;

use crate::files::{is_leftover, last_access};
use crate::tree::{self, Fault, Info};
use crate::{FsBackend, MAX_SEGMENTS, TEMP_PREFIX, is_reserved};

impl FsBackend {
    /// Calls `visit` with each entry under `prefix` that is not a folder: the handle of its
    /// folder, its key (which may be no valid key), its name and what `fstatat` said of it.
    /// The walk ends early when `visit` breaks.
    pub(super) fn walk(
        &self,
        prefix: &Prefix,
        visit: &mut dyn FnMut(BorrowedFd<'_>, String, &str, &Info) -> ControlFlow<()>,
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
        walk_folder(dir, prefix.as_str(), folders.len(), &mut path, visit).map(drop)
    }

    pub(super) fn list_blocking(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let now = SystemTime::now();
        let mut items = Vec::new();
        self.walk(prefix, &mut |_, key, name, info| {
            if is_reserved(name) || info.kind != FileType::RegularFile {
                return ControlFlow::Continue(());
            }
            let Ok(key) = Key::new(key) else {
                return ControlFlow::Continue(()); // A name no key can have: not ours.
            };
            items.push(ItemInfo {
                key,
                size: info.size,
                last_access: last_access(info, now),
            });
            ControlFlow::Continue(())
        })
        .map_err(|fault| fault.into_backend("list", prefix))?;
        Ok(items)
    }

    pub(super) fn sweep_blocking(&self, prefix: &Prefix) -> BackendResult<u64> {
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
            ControlFlow::Continue(())
        })
        .map_err(|fault| fault.into_backend("sweep", prefix))?;
        Ok(removed)
    }
}

/// Walks the folder `dir` (at `path`, holding the keys under `key_prefix`, `depth` folders
/// below the root) and those below it, calling `visit` with every entry that is not a folder,
/// until it breaks. Folders swapped for links are skipped, never followed.
fn walk_folder(
    dir: OwnedFd,
    key_prefix: &str,
    depth: usize,
    path: &mut PathBuf,
    visit: &mut dyn FnMut(BorrowedFd<'_>, String, &str, &Info) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, Fault> {
    let entries = match tree::entries(dir.as_fd()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ControlFlow::Continue(())),
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
                return Ok(ControlFlow::Continue(())); // Removed since the folder was read.
            };
            if info.kind != FileType::Directory {
                return Ok(visit(dir.as_fd(), key, &name, &info));
            }
            if is_reserved(&name) || depth + 1 >= MAX_SEGMENTS {
                return Ok(ControlFlow::Continue(()));
            }
            match tree::open_dir(dir.as_fd(), &name, path) {
                Ok(Some(sub)) => walk_folder(sub, &key, depth + 1, path, visit),
                Ok(None) | Err(Fault::Link(_)) => Ok(ControlFlow::Continue(())),
                Err(fault) => Err(fault),
            }
        })();
        path.pop();
        if result?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}
