//! Deletes: items unlinked through their folder's handle, then the folders they left empty.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use cachette_core::plugin::{BackendResult, ErrorKind, Key};
use rustix::fs::FileType;

use crate::tree::{self, Fault};
use crate::{FsBackend, GITIGNORE, err, is_ignored_by_us, segments, write_gitignore};

impl FsBackend {
    pub(super) fn delete_many_blocking(&self, keys: &[Key]) -> BackendResult<()> {
        for key in keys {
            self.parked.forget(key);
        }
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
    pub(super) fn delete_in(&self, folders: &[&str], items: &[(&str, &Key)]) -> BackendResult<()> {
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
    pub(super) fn remove_empty_folders(&self, chain: &[OwnedFd], folders: &[&str]) {
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
