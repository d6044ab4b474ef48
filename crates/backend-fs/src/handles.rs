//! Handles on the folders of recently read items. A read of an item in one of them opens the
//! item by its name in the folder: one component for the kernel to resolve, as the least an
//! open costs, instead of its whole path below the root (about 0.15 µs of a 1 µs open).
//!
//! A kept handle goes on naming the folder it was opened on, wherever that goes, so a read
//! that finds nothing through it checks that the handle is still the folder at its path below
//! the root (the same device and inode); a handle on a folder that was removed, or renamed and
//! replaced, is forgotten, and the read goes through the root. A read that finds its item
//! through a handle needs no check: items are never written in place, and any item in the
//! folder the handle names passes the same entry checks as one reached by its path.
//!
//! At most [`MAX_FOLDERS`] handles are kept per store (open files are a bounded resource of
//! the process): a store that reads from more folders than that forgets them all and starts
//! over.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::tree;

/// The most folder handles a store keeps.
pub(crate) const MAX_FOLDERS: usize = 16;

/// A kept handle on a folder, with the folder's device and inode.
#[derive(Debug)]
pub(crate) struct Folder {
    pub(crate) handle: OwnedFd,
    id: (u64, u64),
}

/// Handles on folders of the store, by their path below its root (`/`-separated), the most
/// recently kept or found first: a few, compared by their paths (most reads are in the folder
/// of the read before), not hashed.
#[derive(Debug, Default)]
pub(crate) struct FolderHandles {
    kept: Mutex<Vec<(Box<str>, Arc<Folder>)>>,
}

impl FolderHandles {
    /// The handle kept on `folder`, if any.
    pub(crate) fn get(&self, folder: &str) -> Option<Arc<Folder>> {
        let mut kept = self.lock();
        let at = kept.iter().position(|(path, _)| **path == *folder)?;
        if at > 0 {
            kept[..=at].rotate_right(1);
        }
        Some(kept[0].1.clone())
    }

    /// Keeps `handle` on `folder`, forgetting every handle kept when there are already
    /// [`MAX_FOLDERS`] of them.
    pub(crate) fn keep(&self, folder: &str, handle: OwnedFd) {
        let Ok(st) = rustix::fs::fstat(&handle) else {
            return;
        };
        let kept_folder = Arc::new(Folder {
            handle,
            id: tree::id_of(&st),
        });
        let mut kept = self.lock();
        kept.retain(|(path, _)| **path != *folder);
        if kept.len() >= MAX_FOLDERS {
            kept.clear();
        }
        kept.insert(0, (folder.into(), kept_folder));
    }

    /// Forgets the handle on `folder` if it is still `handle`.
    pub(crate) fn forget(&self, folder: &str, handle: &Arc<Folder>) {
        self.lock()
            .retain(|(path, kept)| **path != *folder || !Arc::ptr_eq(kept, handle));
    }

    /// How many handles are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Box<str>, Arc<Folder>)>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `kept` is still the folder at `folder` below the root open as `root`: the entry
/// there, not followed if a link, is a folder of the same device and inode (one `statat`).
pub(crate) fn is_current(root: BorrowedFd<'_>, folder: &str, kept: &Folder) -> bool {
    matches!(tree::lstat_at(root, folder), Ok(Some(there))
        if tree::id_of(&there) == kept.id
            && rustix::fs::FileType::from_raw_mode(there.st_mode as _)
                == rustix::fs::FileType::Directory)
}

#[cfg(test)]
mod tests {
    use cachette_core::plugin::{Blob, Bytes, Key, StoreBackendExt, block_on};

    use crate::{FsBackend, FsConfig, Layout};

    fn store(root: &std::path::Path) -> FsBackend {
        FsConfig::new(root)
            .with_layout(Layout::Files)
            .open()
            .unwrap()
    }

    fn put(b: &FsBackend, key: &str, bytes: &[u8]) {
        let blob: Blob = Bytes::copy_from_slice(bytes).into();
        block_on(true, b.put(&Key::new(key).unwrap(), blob))
            .unwrap()
            .unwrap();
    }

    fn get(b: &FsBackend, key: &str) -> Option<Vec<u8>> {
        block_on(true, b.get(&Key::new(key).unwrap()))
            .unwrap()
            .unwrap()
            .map(|bytes| bytes.to_vec())
    }

    /// Reads keep a handle on their item's folder, at most `MAX_FOLDERS` of them, and read
    /// through it; a miss through it is a miss.
    #[test]
    fn reads_go_through_kept_folder_handles() {
        let dir = tempfile::tempdir().unwrap();
        let b = store(dir.path());
        put(&b, "f/a", b"a");
        put(&b, "f/b", b"b");
        assert_eq!(get(&b, "f/a").as_deref(), Some(&b"a"[..]));
        assert!(b.folders.get("f").is_some());
        assert_eq!(get(&b, "f/b").as_deref(), Some(&b"b"[..]));
        assert_eq!(get(&b, "f/c"), None);
        assert!(b.folders.get("f").is_some(), "a plain miss keeps it");
        for i in 0..super::MAX_FOLDERS + 3 {
            put(&b, &format!("g{i}/x"), b"x");
            assert_eq!(get(&b, &format!("g{i}/x")).as_deref(), Some(&b"x"[..]));
            assert!(b.folders.len() <= super::MAX_FOLDERS);
        }
    }

    /// A folder removed and made again, or renamed away and replaced, behind a kept handle: the
    /// read finds the item now at its path, and keeps a handle on the new folder.
    #[test]
    fn a_kept_handle_on_a_folder_replaced_since_is_not_trusted_with_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let reader = store(dir.path());
        let writer = store(dir.path());
        put(&writer, "f/a", b"old");
        assert_eq!(get(&reader, "f/a").as_deref(), Some(&b"old"[..]));
        let kept = reader.folders.get("f").unwrap();
        // Removed and made again.
        std::fs::remove_dir_all(dir.path().join("f")).unwrap();
        put(&writer, "f/b", b"new");
        assert_eq!(get(&reader, "f/b").as_deref(), Some(&b"new"[..]));
        let again = reader.folders.get("f").unwrap();
        assert!(!std::sync::Arc::ptr_eq(&kept, &again));
        // Renamed away (still there, elsewhere) and replaced.
        std::fs::rename(dir.path().join("f"), dir.path().join("f-old")).unwrap();
        put(&writer, "f/c", b"newer");
        assert_eq!(get(&reader, "f/c").as_deref(), Some(&b"newer"[..]));
        assert_eq!(
            get(&reader, "f/b"),
            None,
            "not read from the folder renamed away"
        );
    }
}
