//! Writes: a temporary file beside the item, renamed into place, or published by a hard link
//! for a create.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cachette_core::plugin::{
    BackendResult, Blob, ErrorKind, Key, PutMode, PutOptions, PutOutcome, owner_tag,
};

use crate::files::write_parts;
use crate::handles::WriteDir;
use crate::index::Written;
use crate::tree::{self, Fault};
use crate::{FsBackend, TEMP_COUNTER, TEMP_NAME_PART, TEMP_PREFIX, err, segments};

impl FsBackend {
    pub(super) fn put_blocking(
        &self,
        key: &Key,
        value: &Blob,
        options: &PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.put_then_delete_blocking(key, value, options, None)
    }

    /// Writes `key`; then, when the write succeeded, deletes `delete` (see
    /// `StoreBackend::put_then_delete`): in the write's own transaction when the item goes to
    /// the index, else with a delete of its own, whose failure is only traced.
    pub(super) fn put_then_delete_blocking(
        &self,
        key: &Key,
        value: &Blob,
        options: &PutOptions,
        delete: Option<&Key>,
    ) -> BackendResult<PutOutcome> {
        let mode = options.mode;
        let op = if mode == PutMode::Create {
            "put_if_absent"
        } else {
            "put"
        };
        let segments = segments(key, op)?;
        let Some((name, folders)) = segments.split_last() else {
            return Err(err(ErrorKind::InvalidKey, op, key, "the key is empty"));
        };
        let delete_after = |outcome: PutOutcome| {
            if let Some(delete) = delete
                && let Err(e) = self.delete_many_everywhere(std::slice::from_ref(delete))
            {
                tracing::debug!(target: "cachette", "wrote {key}, but cannot delete {delete}: {e}");
            }
            Ok(outcome)
        };
        if let Some(written) = self
            .index_put(key, &segments, value, options.local_file, mode, delete)
            .map_err(|fault| fault.into_backend(op, key))?
        {
            return match written {
                Written::WithDelete(outcome) => Ok(outcome),
                Written::Alone(outcome) => delete_after(outcome),
            };
        }
        // An item kept open since this process made it (only on the files layout) is another
        // file once written again.
        self.parked.forget(key);
        // On the files layout, an item to delete beside the one written (a claim beside its
        // entry) is unlinked through the folder handle the write holds: no second walk, and no
        // look for emptied folders (the folder holds the item just written).
        let beside = delete.filter(|d| {
            self.index.is_none()
                && d.parent() == key.parent()
                && crate::check_segments(d, "delete").is_ok()
        });
        let mut attempts = 0;
        loop {
            match self.try_put(key, folders, name, value, options, beside) {
                // A folder of the item was removed by a delete while this write went through it.
                Err(fault) if fault.is(io::ErrorKind::NotFound) && attempts < 4 => attempts += 1,
                Ok(outcome) if beside.is_some() => return Ok(outcome),
                Ok(outcome) => return delete_after(outcome),
                Err(fault) => return Err(fault.into_backend(op, key)),
            }
        }
    }

    /// Writes the file of `key` (whose folders are `folders` and name `name`), publishing it
    /// under the index's lock when the store has an index; then, once it is written, deletes
    /// the item `beside` of the same folder, if given (a failure to is only traced).
    pub(super) fn try_put(
        &self,
        key: &Key,
        folders: &[&str],
        name: &str,
        value: &Blob,
        options: &PutOptions,
        beside: Option<&Key>,
    ) -> Result<PutOutcome, Fault> {
        let create = options.mode == PutMode::Create;
        let path = self.path_of_key(key);
        // Written over an item this process made in place and kept open (a claim): no folder
        // to open, no item to open and check. Kept no longer whatever this write does.
        let parked = beside.and_then(|b| self.parked.take(b));
        if let Some(parked) = parked
            && let Some(beside) = beside.filter(|b| !create && b.file_name() != name)
            && self.write_over_parked(parked, beside.file_name(), name, value, &path)?
        {
            return Ok(PutOutcome::Created);
        }
        let owned_dir = self.folder_for_write(key.parent(), folders)?;
        let dir = owned_dir.as_fd();
        // Without an index, whose lock a create takes, a create asked in place is one.
        if create && options.in_place && self.index.is_none() {
            let (outcome, file) = self.create_in_place(dir, name, value, &path)?;
            delete_beside(dir, key, beside);
            if let Some(file) = file {
                self.parked.park(key, owned_dir, file, value.len());
            }
            return Ok(outcome);
        }
        if create
            && tree::stat_at(dir, name)
                .map_err(|e| Fault::io(e, &path))?
                .is_some()
        {
            return Ok(PutOutcome::AlreadyExists);
        }
        // Without an index, an item written with the deletion of another beside it (an entry
        // and its claim) is written over that one, which is then renamed into place.
        if !create
            && self.index.is_none()
            && let Some(beside) = beside.filter(|b| b.file_name() != name)
            && self.write_over(dir, beside.file_name(), name, value, &path)?
        {
            return Ok(PutOutcome::Created);
        }
        let (temp, file) = self.write_temp(dir, name, value, &path)?;
        let outcome = self.with_index_lock(key, create, || {
            if create {
                self.publish_new(dir, &temp, file, name, &path)
            } else {
                drop(file);
                tree::rename(dir, &temp, name)
                    .map(|()| PutOutcome::Created)
                    .map_err(|e| Fault::io(e, &path))
            }
        });
        if create || outcome.is_err() {
            let _ = tree::unlink(dir, &temp);
        }
        let outcome = outcome?;
        if outcome == PutOutcome::Created && self.durable {
            tree::sync_dir(dir).map_err(|e| Fault::io(e, &path))?;
        }
        delete_beside(dir, key, beside);
        Ok(outcome)
    }

    /// Creates the item `name` of `dir` (at `path`) in its place, exclusively, and writes
    /// `value` in it (see `PutOptions::in_place`): an open and a write, where a create through
    /// a temporary file also links and unlinks. A write that fails removes the item it made,
    /// unless another has taken its name meanwhile. The file made, still open, with
    /// [`PutOutcome::Created`].
    fn create_in_place(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        value: &Blob,
        path: &Path,
    ) -> Result<(PutOutcome, Option<File>), Fault> {
        let mut file = match tree::create_file(dir, name) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Ok((PutOutcome::AlreadyExists, None));
            }
            Err(e) => return Err(Fault::io(e, path)),
        };
        if let Err(e) = self.write_out(&mut file, value) {
            if tree::is_same_file(dir, name, &file) {
                let _ = tree::unlink(dir, name);
            }
            return Err(Fault::io(e, path));
        }
        if self.durable {
            tree::sync_dir(dir).map_err(|e| Fault::io(e, path))?;
        }
        Ok((PutOutcome::Created, Some(file)))
    }

    /// Writes `value` over the item `spent` of `dir`, then renames it `name` (at `path`): the
    /// write of an item that also deletes `spent`, the file of the one deleted serving as the
    /// temporary file of the one written. One file made per write instead of two, and none
    /// freed: file systems that keep the inodes freed in the last minutes aside (ext4) then
    /// have none to step over when they make the next file, which at a hundred thousand
    /// items per folder made every write ten times slower. Readers of `name` see the old item
    /// or the new one whole (the rename is atomic); readers of `spent` may see part of the
    /// new bytes before it goes, which its writer must accept (a compute-once claim is then
    /// one that cannot be parsed, waited for). `false` when `spent` is not a regular file with
    /// no other name (missing, a link, linked elsewhere): nothing is changed, and the caller
    /// writes the usual way.
    fn write_over(
        &self,
        dir: BorrowedFd<'_>,
        spent: &str,
        name: &str,
        value: &Blob,
        path: &Path,
    ) -> Result<bool, Fault> {
        let Some((file, old_len)) = tree::open_sole_file(dir, spent) else {
            return Ok(false);
        };
        self.overwrite_and_rename(dir, file, old_len, spent, name, value, path)?;
        Ok(true)
    }

    /// [`write_over`](Self::write_over) the item `spent` that this process made in place and
    /// kept open ([`Parked`]), in the folder it was made in, if that name is still this file's
    /// and its only one (a claim taken over as stale was deleted or replaced by another
    /// process): `false` otherwise, nothing changed. A folder moved meanwhile takes the item
    /// written with it, beside the claim it replaces.
    fn write_over_parked(
        &self,
        parked: ParkedFile,
        spent: &str,
        name: &str,
        value: &Blob,
        path: &Path,
    ) -> Result<bool, Fault> {
        let ParkedFile {
            dir, file, len, id, ..
        } = parked;
        if !tree::is_sole_name_of(dir.as_fd(), spent, id) {
            return Ok(false);
        }
        self.overwrite_and_rename(dir.as_fd(), file, len, spent, name, value, path)?;
        Ok(true)
    }

    /// Writes `value` over the open file `file` of `dir` named `spent` (of `old_len` bytes),
    /// then renames it `name`, the folder flushed when the store is durable; on failure,
    /// `spent` is unlinked.
    #[allow(clippy::too_many_arguments)]
    fn overwrite_and_rename(
        &self,
        dir: BorrowedFd<'_>,
        mut file: File,
        old_len: u64,
        spent: &str,
        name: &str,
        value: &Blob,
        path: &Path,
    ) -> Result<(), Fault> {
        // Only a longer old content needs cutting (a claim is shorter than an entry).
        let cut = if old_len > value.len() {
            file.set_len(value.len())
        } else {
            Ok(())
        };
        let written = cut.and_then(|()| self.write_out(&mut file, value));
        drop(file);
        let published = written.and_then(|()| tree::rename(dir, spent, name));
        if let Err(e) = published {
            // Spent either way: its writer was deleting it.
            let _ = tree::unlink(dir, spent);
            return Err(Fault::io(e, path));
        }
        if self.durable {
            tree::sync_dir(dir).map_err(|e| Fault::io(e, path))?;
        }
        Ok(())
    }

    /// Writes `value` to the new file `file`, flushed to the device when the store is durable.
    fn write_out(&self, file: &mut File, value: &Blob) -> io::Result<()> {
        write_parts(file, value)?;
        if self.durable {
            file.sync_all()?;
        }
        Ok(())
    }

    /// Writes `value` to a new temporary file in `dir`, beside the item `name` (at `path`). The
    /// temporary file's name, and the file, open.
    pub(super) fn write_temp(
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
                    if let Err(e) = self.write_out(&mut file, value) {
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
    pub(super) fn publish_new(
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
}

/// Deletes the item `beside`, of the folder `dir` where `key` was just written, if given; a
/// failure to is only traced (see `StoreBackend::put_then_delete`).
fn delete_beside(dir: BorrowedFd<'_>, key: &Key, beside: Option<&Key>) {
    if let Some(beside) = beside
        && let Err(e) = tree::unlink(dir, beside.file_name())
    {
        tracing::debug!(target: "cachette", "wrote {key}, but cannot delete {beside}: {e}");
    }
}

/// A new name for a temporary file beside the item `name`: `<prefix><owner tag>.<pid>-<n>-`
/// and the start of the item's name (see [`is_leftover`](crate::files::is_leftover)).
pub(crate) fn temp_name(name: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let end = name.floor_char_boundary(TEMP_NAME_PART);
    format!(
        "{TEMP_PREFIX}{}.{}-{n}-{}",
        owner_tag(),
        std::process::id(),
        &name[..end]
    )
}

/// The most items made in place that a store keeps open at once (two descriptors each).
const MAX_PARKED: usize = 32;

/// Items this process made in place (compute-once claims), kept open with their folder until
/// the write that replaces them (`put_then_delete`) or their deletion, so that the write opens
/// neither: at most [`MAX_PARKED`], the oldest closed first. A claim whose holder never writes
/// nor deletes it (taken over as stale) stays until pushed out.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    files: Mutex<Vec<ParkedFile>>,
}

#[derive(Debug)]
pub(crate) struct ParkedFile {
    key: Box<str>,
    /// The folder it was made in.
    dir: WriteDir,
    file: File,
    /// The bytes written in it.
    len: u64,
    /// Its device and inode.
    id: (u64, u64),
}

impl Parked {
    /// Keeps `file`, just made as the item `key` of the folder `dir` with `len` bytes.
    fn park(&self, key: &Key, dir: WriteDir, file: File, len: u64) {
        let Ok(id) = tree::identity(&file) else {
            return;
        };
        let mut files = self.lock();
        if files.len() >= MAX_PARKED {
            files.remove(0);
        }
        files.push(ParkedFile {
            key: key.as_str().into(),
            dir,
            file,
            len,
            id,
        });
    }

    /// The file kept for `key`, no longer kept.
    fn take(&self, key: &Key) -> Option<ParkedFile> {
        let mut files = self.lock();
        let at = files.iter().position(|p| *p.key == *key.as_str())?;
        Some(files.remove(at))
    }

    /// Closes the file kept for `key`, if any.
    pub(crate) fn forget(&self, key: &Key) {
        drop(self.take(key));
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ParkedFile>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
