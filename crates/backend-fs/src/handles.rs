//! Handles on the folders of recently read and written items. A read of an item in one of them
//! opens the item by its name in the folder: one component for the kernel to resolve, as the
//! least an open costs, instead of its whole path below the root (about 0.15 µs of a 1 µs open).
//! A write in one of them checks that the handle is still the folder at its path (one `lstat`,
//! as a read's miss does) and writes through it, instead of opening the folder and closing it
//! again (an `openat2` and a `close`, about 2.6 µs on the machine of BENCHMARKS.md, where the
//! whole miss of a tiny entry takes about 50 µs).
//!
//! A kept handle goes on naming the folder it was opened on, wherever that goes, so a read
//! that finds nothing through it checks that the handle is still the folder at its path below
//! the root (the same device and inode); a handle on a folder that was removed, or renamed and
//! replaced, is forgotten, and the read goes through the root. A read that finds its item
//! through a handle needs no check: items are never written in place, and any item in the
//! folder the handle names passes the same entry checks as one reached by its path.
//!
//! At most [`MAX_FOLDERS`] handles are kept per store (open files are a bounded resource of
//! the process). When they are all kept, a read in another folder takes the handle of the
//! least recently used one only if that one has gone unused for the last [`IDLE_READS`] reads
//! of the store; otherwise it reads through the root, as without handles, and keeps none. A
//! store that reads from more folders than that, in turn, keeps the handles it has instead of
//! opening and closing one on every read; one whose reads move to other folders moves its
//! handles with them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::tree;

/// The most folder handles a store keeps.
pub(crate) const MAX_FOLDERS: usize = 16;

/// The reads of a store (through [`FolderHandles::get`]) after which a handle not used by any
/// of them may be let go for another folder's.
pub(crate) const IDLE_READS: u64 = 4 * MAX_FOLDERS as u64;

/// A kept handle on a folder, with the folder's device and inode.
#[derive(Debug)]
pub(crate) struct Folder {
    pub(crate) handle: OwnedFd,
    id: (u64, u64),
}

/// A folder open for a write: a handle kept on it, or one of the write's own.
#[derive(Debug)]
pub(crate) enum WriteDir {
    /// A kept handle (see [`FolderHandles`]), still the folder at its path when the write began.
    Kept(Arc<Folder>),
    /// Opened for this write alone.
    Own(OwnedFd),
}

impl AsFd for WriteDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            WriteDir::Kept(folder) => folder.handle.as_fd(),
            WriteDir::Own(handle) => handle.as_fd(),
        }
    }
}

/// Handles on folders of the store, by their path below its root (`/`-separated), the most
/// recently kept or found first: a few, compared by their paths (most reads are in the folder
/// of the read before), not hashed.
#[derive(Debug, Default)]
pub(crate) struct FolderHandles {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The reads so far: the clock of [`Slot::used`].
    reads: u64,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    path: Box<str>,
    folder: Arc<Folder>,
    /// The value of [`Kept::reads`] when it was last kept or found.
    used: u64,
}

impl Kept {
    /// Whether a handle on another folder may be kept: there is room, or the least recently
    /// used handle has been idle for [`IDLE_READS`] reads.
    fn has_room(&self) -> bool {
        self.slots.len() < MAX_FOLDERS
            || self
                .slots
                .last()
                .is_some_and(|lru| self.reads.wrapping_sub(lru.used) >= IDLE_READS)
    }
}

impl FolderHandles {
    /// The handle kept on `folder`, if any. Counts as a read of the store.
    pub(crate) fn get(&self, folder: &str) -> Option<Arc<Folder>> {
        let mut kept = self.lock();
        kept.reads = kept.reads.wrapping_add(1);
        let reads = kept.reads;
        let at = kept.slots.iter().position(|slot| *slot.path == *folder)?;
        if at > 0 {
            kept.slots[..=at].rotate_right(1);
        }
        let slot = &mut kept.slots[0];
        slot.used = reads;
        Some(slot.folder.clone())
    }

    /// Whether [`keep`](Self::keep) would keep a handle on another folder now: ask before
    /// opening one.
    pub(crate) fn has_room(&self) -> bool {
        self.lock().has_room()
    }

    /// Keeps `handle` on `folder`, in place of the least recently used handle if there are
    /// already [`MAX_FOLDERS`] of them and it is idle; else closes it.
    pub(crate) fn keep(&self, folder: &str, handle: OwnedFd) {
        let _ = self.keep_shared(folder, handle);
    }

    /// [`keep`](Self::keep), also giving the handle, kept or not: `Err` with the handle when
    /// its identity cannot be read (it is then not kept).
    pub(crate) fn keep_shared(
        &self,
        folder: &str,
        handle: OwnedFd,
    ) -> Result<Arc<Folder>, OwnedFd> {
        let Ok(id) = tree::identity(&handle) else {
            return Err(handle);
        };
        let kept_folder = Arc::new(Folder { handle, id });
        let mut kept = self.lock();
        kept.slots.retain(|slot| *slot.path != *folder);
        if !kept.has_room() {
            return Ok(kept_folder);
        }
        if kept.slots.len() >= MAX_FOLDERS {
            kept.slots.pop();
        }
        let used = kept.reads;
        kept.slots.insert(
            0,
            Slot {
                path: folder.into(),
                folder: kept_folder.clone(),
                used,
            },
        );
        Ok(kept_folder)
    }

    /// Forgets the handle on `folder` if it is still `handle`.
    pub(crate) fn forget(&self, folder: &str, handle: &Arc<Folder>) {
        self.lock()
            .slots
            .retain(|slot| *slot.path != *folder || !Arc::ptr_eq(&slot.folder, handle));
    }

    /// How many handles are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().slots.len()
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
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
    use cachette_core::plugin::{
        Blob, Bytes, Key, PutOptions, PutOutcome, StoreBackend, StoreBackendExt, block_on,
    };

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

    /// Reads in turn from one folder more than handles are kept for: the handles kept stay
    /// kept (none is opened and closed on every read), and the extra folder's reads go
    /// through the root. Once reads move to other folders, the idle handles go to them.
    #[test]
    fn reads_in_more_folders_than_handles_keep_the_handles_they_have() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let b = store(dir.path());
        let folders = super::MAX_FOLDERS + 1;
        for i in 0..folders {
            put(&b, &format!("g{i}/x"), b"x");
        }
        let read = |i: usize| assert_eq!(get(&b, &format!("g{i}/x")).as_deref(), Some(&b"x"[..]));
        for i in 0..super::MAX_FOLDERS {
            read(i);
        }
        let first: Vec<_> = (0..super::MAX_FOLDERS)
            .map(|i| b.folders.get(&format!("g{i}")).unwrap())
            .collect();
        for _ in 0..8 {
            for i in 0..folders {
                read(i);
            }
        }
        assert_eq!(b.folders.len(), super::MAX_FOLDERS);
        assert!(b.folders.get(&format!("g{}", folders - 1)).is_none());
        for (i, handle) in first.iter().enumerate() {
            let now = b.folders.get(&format!("g{i}")).unwrap();
            assert!(Arc::ptr_eq(handle, &now), "g{i} was let go");
        }
        // Only the extra folder is read from now on: its reads soon take an idle handle.
        let extra = folders - 1;
        let mut reads = 0;
        while b.folders.get(&format!("g{extra}")).is_none() {
            read(extra);
            reads += 1;
            assert!(reads <= 2 * super::IDLE_READS, "never kept");
        }
        assert_eq!(b.folders.len(), super::MAX_FOLDERS);
    }

    /// Writes keep a handle on their item's folder too, and write through it while it is the
    /// folder at its path; once that folder is renamed away and replaced, or removed and made
    /// again, they write in the folder now at the path, never in the one the handle names.
    #[test]
    fn writes_go_through_kept_folder_handles_while_they_name_the_folder_at_their_path() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let b = store(dir.path());
        put(&b, "f/a", b"a");
        let kept = b
            .folders
            .get("f")
            .expect("a write keeps a handle on its folder");
        put(&b, "f/b", b"b");
        let again = b.folders.get("f").unwrap();
        assert!(
            Arc::ptr_eq(&kept, &again),
            "the write went through the kept handle"
        );
        assert_eq!(get(&b, "f/b").as_deref(), Some(&b"b"[..]));
        // Renamed away (still there, elsewhere) and replaced.
        std::fs::rename(dir.path().join("f"), dir.path().join("f-old")).unwrap();
        std::fs::create_dir(dir.path().join("f")).unwrap();
        put(&b, "f/c", b"c");
        assert_eq!(std::fs::read(dir.path().join("f/c")).unwrap(), b"c");
        assert!(
            !dir.path().join("f-old/c").exists(),
            "written in the folder renamed away"
        );
        let replaced = b.folders.get("f").unwrap();
        assert!(!Arc::ptr_eq(&kept, &replaced));
        // Removed, then made again by the write itself.
        std::fs::remove_dir_all(dir.path().join("f")).unwrap();
        put(&b, "f/d", b"d");
        assert_eq!(std::fs::read(dir.path().join("f/d")).unwrap(), b"d");
        assert_eq!(get(&b, "f/d").as_deref(), Some(&b"d"[..]));
        // A claim made in place through a kept handle, then written over by its entry.
        let claim = Key::new("f/e.claim").unwrap();
        let made = block_on(
            true,
            b.put_opts(
                &claim,
                Bytes::from_static(b"claim").into(),
                PutOptions::create().with_in_place(true),
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(made, PutOutcome::Created);
        block_on(
            true,
            b.put_then_delete(
                &Key::new("f/e").unwrap(),
                Bytes::from_static(b"e").into(),
                Default::default(),
                &claim,
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("f/e")).unwrap(), b"e");
        assert!(!dir.path().join("f/e.claim").exists());
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
