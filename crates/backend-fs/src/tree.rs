//! Operations below the store's folder that never follow a link.
//!
//! A store may live on a disk shared with other users and processes, any of which may plant a
//! symbolic link or a named pipe where a folder or an item is expected, or swap a folder for a
//! link while an operation runs. So nothing below the root is ever reached through a path:
//! every folder is opened relative to its parent's handle with `O_NOFOLLOW | O_DIRECTORY`,
//! starting from the root's handle, and every open, create, rename, link, unlink, `mkdir`,
//! `rmdir`, listing and time change happens relative to such a handle (`openat`, `mkdirat`,
//! `renameat`, `linkat`, `unlinkat`, `fstatat`), the way `std::fs::remove_dir_all` does since
//! CVE-2022-21658. A folder swapped for a link after it was opened is not followed either: the
//! handle keeps naming the folder that was opened. The root itself is opened through its path,
//! links included: it is the user's choice.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cachette_core::plugin::{BackendError, ErrorKind};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// How every folder below the root is opened: never through a link, never blocking (a named
/// pipe where a folder is expected fails with `ENOTDIR` before it could block).
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

/// How items are opened for reading: never through a link, and without blocking on a named
/// pipe (the type is checked once the entry is open).
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

/// How new files are created: exclusively, never through a link.
const CREATE_FLAGS: OFlags = OFlags::RDWR
    .union(OFlags::CREATE)
    .union(OFlags::EXCL)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A failure below the root, with the path it concerns (for messages only: it is never used to
/// reach the file).
#[derive(Debug)]
pub(crate) enum Fault {
    /// An I/O error.
    Io { error: io::Error, path: PathBuf },
    /// A symbolic link where a folder or an item was expected: refused, never followed.
    Link(PathBuf),
    /// An entry that is neither a folder nor a regular file (a named pipe, a socket, a device).
    Special { path: PathBuf, what: &'static str },
    /// A file or folder another user may write, which this store does not trust (why, and what
    /// to do).
    Untrusted { path: PathBuf, why: String },
    /// An error already told in the backend's terms.
    Backend(Box<BackendError>),
}

impl Fault {
    pub(crate) fn io(error: impl Into<io::Error>, path: impl Into<PathBuf>) -> Self {
        Fault::Io {
            error: error.into(),
            path: path.into(),
        }
    }

    /// Whether this is an I/O error of `kind`.
    pub(crate) fn is(&self, kind: io::ErrorKind) -> bool {
        matches!(self, Fault::Io { error, .. } if error.kind() == kind)
    }

    /// The error of operation `op` on `key` (a key or a prefix).
    pub(crate) fn into_backend(
        self,
        op: &'static str,
        key: impl std::fmt::Display,
    ) -> BackendError {
        let error = match self {
            Fault::Backend(error) => return *error,
            Fault::Io { error, path } => {
                BackendError::from_io(error, format!("{op} failed at {}", path.display()))
            }
            Fault::Link(path) => BackendError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{} is a symbolic link; the store never follows links below its folder",
                    path.display()
                ),
            ),
            // The refusal of the store's index: every operation meets it until the index is
            // the user's alone again (or the layout is chosen).
            Fault::Untrusted { path, why } => BackendError::new(
                ErrorKind::PermissionDenied,
                format!("{}: {why}", path.display()),
            )
            .set_whole_store(true),
            Fault::Special { path, what } => BackendError::new(
                ErrorKind::Other,
                format!(
                    "{} is a {what}, not a regular file; refused",
                    path.display()
                ),
            ),
        };
        error
            .with_backend(crate::SCHEME)
            .with_operation(op)
            .with_key(key)
    }
}

/// What `fstatat` or `fstat` said of an entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Info {
    pub(crate) kind: FileType,
    pub(crate) size: u64,
    /// The inode's change time: set by the kernel to the current time on every write, rename,
    /// link and time change, and settable by nobody on a local file system (a FUSE file system
    /// reports what it likes).
    pub(crate) ctime: SystemTime,
    pub(crate) mtime: SystemTime,
}

/// The size of the file whose status is `st` (0 if the status says a negative one).
// The field types of `struct stat` differ between platforms.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn size(st: &rustix::fs::Stat) -> u64 {
    u64::try_from(st.st_size as i64).unwrap_or(0)
}

impl Info {
    // The field types of `struct stat` differ between platforms.
    #[allow(clippy::unnecessary_cast, clippy::cast_lossless)]
    fn of(st: &rustix::fs::Stat) -> Self {
        Info {
            kind: FileType::from_raw_mode(st.st_mode as _),
            size: size(st),
            ctime: time(st.st_ctime as i64, st.st_ctime_nsec as i64),
            mtime: time(st.st_mtime as i64, st.st_mtime_nsec as i64),
        }
    }
}

pub(crate) fn time(secs: i64, nanos: i64) -> SystemTime {
    let nanos = u32::try_from(nanos.clamp(0, 999_999_999)).unwrap_or(0);
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            + Duration::from_nanos(u64::from(nanos))
    }
}

/// What a file type is called in messages.
fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "folder",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "named pipe",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of an unknown type",
    }
}

/// Opens the root folder, following links (the root is the user's choice). `None` if it does
/// not exist, or is not a folder.
pub(crate) fn open_root(root: &Path) -> Result<Option<OwnedFd>, Fault> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    match rustix::fs::open(root, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
        Err(e) => Err(Fault::io(e, root)),
    }
}

/// `fstatat` without following a link. `None` if there is no such entry.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Info>> {
    Ok(lstat_at(dir, name)?.as_ref().map(Info::of))
}

/// The whole status of the entry `name` of `dir`, not following a link; `None` if there is no
/// such entry.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens the folder `name` of `dir`; `path` names it in messages. `None` if there is no such
/// entry or it is not a folder; a link is refused.
pub(crate) fn open_dir(
    dir: BorrowedFd<'_>,
    name: &str,
    path: &Path,
) -> Result<Option<OwnedFd>, Fault> {
    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        // With O_NOFOLLOW a link fails with ELOOP on Linux, EMLINK or EFTYPE elsewhere, and
        // ENOTDIR with O_DIRECTORY on some systems: look at what is there.
        Err(e) => match stat_at(dir, name) {
            Ok(Some(info)) if info.kind == FileType::Symlink => Err(Fault::Link(path.into())),
            Ok(None) => Ok(None),
            Ok(Some(info)) if info.kind != FileType::Directory => Ok(None),
            _ => Err(Fault::io(e, path)),
        },
    }
}

/// What [`open_beneath`] found.
pub(crate) enum Beneath {
    /// The item, open for reading.
    Found(File, Info),
    /// The whole of a small item, read at once (see [`open_beneath`]'s `small`).
    Small(cachette_core::plugin::Bytes),
    /// No item: nothing there, a folder, or a missing folder on the way.
    Missing,
    /// The path needs a closer look (a link, a special file): walk it one folder at a time.
    Walk,
    /// This system cannot resolve a path in one call (no `openat2`, as before Linux 5.6 or
    /// under a sandbox that filters it): walk this path and every later one.
    Unsupported,
}

/// Opens the item at `relative` (`/`-separated, below `root`) in one call: `openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so that no link is followed on the way and nothing
/// outside `root` is reached. Linux 5.6 and later; elsewhere, and for anything but a regular
/// file or a plain miss, it says [`Beneath::Walk`].
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn open_beneath(root: BorrowedFd<'_>, relative: &str, small: bool) -> Beneath {
    use rustix::fs::ResolveFlags;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root, relative, READ_FLAGS, Mode::empty(), resolve) {
        Ok(fd) => opened(fd, small),
        Err(Errno::NOENT | Errno::NOTDIR) => Beneath::Missing,
        Err(Errno::NOSYS) => Beneath::Unsupported,
        Err(_) => Beneath::Walk,
    }
}

/// Opens the item `name` (one segment: no `/`, never `.` or `..`) of the folder `dir` as
/// [`open_beneath`] opens an item below the root: one component for the kernel to resolve, not
/// followed if it is a link ([`Beneath::Walk`] then).
pub(crate) fn open_in(dir: BorrowedFd<'_>, name: &str, small: bool) -> Beneath {
    match rustix::fs::openat(dir, name, READ_FLAGS, Mode::empty()) {
        Ok(fd) => opened(fd, small),
        Err(Errno::NOENT) => Beneath::Missing,
        Err(_) => Beneath::Walk,
    }
}

/// What [`open_beneath`] and [`open_in`] found once the entry is open as `fd`: with `small`,
/// a small item read whole.
fn opened(fd: OwnedFd, small: bool) -> Beneath {
    if small && let Some(found) = read_small_whole(&fd) {
        return found;
    }
    let Ok(st) = rustix::fs::fstat(&fd) else {
        return Beneath::Walk;
    };
    let info = Info::of(&st);
    match info.kind {
        FileType::RegularFile => Beneath::Found(File::from(fd), info),
        FileType::Directory => Beneath::Missing,
        _ => Beneath::Walk,
    }
}

/// The largest item [`open_beneath`] reads whole without asking its size.
pub(crate) const SMALL_READ: usize = 4096;

/// The whole of the item open as `fd` when it is small, read without a `fstat`: one `pread`
/// from its start that returns more than nothing and less than was asked is the whole of a
/// regular file (a read of a regular file stops short only at its end; items are never
/// written in place, so none grows meanwhile, and bytes that changed anyway fail the entry's
/// checks). A `pread` cannot read a named pipe, a socket or a terminal (`ESPIPE`), a folder
/// fails with `EISDIR`; a device cannot be linked into the store from another file system,
/// and only its owner can make one. `None` when it cannot tell (an empty or larger item, any
/// error): the caller asks for the file's type and size.
fn read_small_whole(fd: &OwnedFd) -> Option<Beneath> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); SMALL_READ];
    match rustix::io::pread(fd, &mut buf[..], 0) {
        Ok((read, _)) if !read.is_empty() && read.len() < SMALL_READ => Some(Beneath::Small(
            cachette_core::plugin::Bytes::copy_from_slice(read),
        )),
        Err(Errno::ISDIR) => Some(Beneath::Missing),
        _ => None,
    }
}

/// Whether the folder at `relative` (below `root`) surely does not exist, told in one call
/// (`openat2` as [`open_beneath`] does). `false` when it exists, when it cannot tell, and on
/// systems without `openat2`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn surely_no_folder(root: BorrowedFd<'_>, relative: &str) -> bool {
    use rustix::fs::ResolveFlags;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    matches!(
        rustix::fs::openat2(root, relative, flags, Mode::empty(), resolve),
        Err(Errno::NOENT)
    )
}

/// Opens the folder at `relative` (below `root`) in one call, as [`open_beneath`] opens an
/// item: no link followed on the way or at the end, nothing outside `root` reached. `None`
/// when it cannot (a missing folder, a link, anything but a folder, no `openat2`): the caller
/// then walks the folders one at a time.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn open_dir_beneath(root: BorrowedFd<'_>, relative: &str) -> Option<OwnedFd> {
    use rustix::fs::ResolveFlags;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    rustix::fs::openat2(root, relative, DIR_FLAGS, Mode::empty(), resolve).ok()
}

/// [`open_dir_beneath`] on systems without `openat2`: always a walk.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn open_dir_beneath(_root: BorrowedFd<'_>, _relative: &str) -> Option<OwnedFd> {
    None
}

/// [`surely_no_folder`] on systems without `openat2`: it cannot tell.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn surely_no_folder(_root: BorrowedFd<'_>, _relative: &str) -> bool {
    false
}

/// [`open_beneath`] on systems without `openat2`: always a walk.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn open_beneath(_root: BorrowedFd<'_>, _relative: &str, _small: bool) -> Beneath {
    Beneath::Unsupported
}

/// Whether the entry `name` of `dir` is the file open as `file` (same device and inode).
pub(crate) fn is_same_file(dir: BorrowedFd<'_>, name: &str, file: &File) -> bool {
    match (
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
        rustix::fs::fstat(file),
    ) {
        (Ok(named), Ok(open)) => id_of(&named) == id_of(&open),
        _ => false,
    }
}

/// The device and inode of the open file or folder `file`.
pub(crate) fn identity(file: impl AsFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(file)?;
    Ok(id_of(&st))
}

/// Whether the entry `name` of `dir` is the regular file of identity `id` (see [`identity`])
/// and its only name.
pub(crate) fn is_sole_name_of(dir: BorrowedFd<'_>, name: &str, id: (u64, u64)) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| id_of(&st) == id && is_sole_regular(&st))
}

/// Whether `st` is a regular file's with no other name (a hard link elsewhere would see a write
/// over it).
fn is_sole_regular(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile && st.st_nlink == 1
}

// The field types of `struct stat` differ between platforms.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub(crate) fn id_of(st: &rustix::fs::Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// Whether the folder open as `dir` was removed (a handle on a deleted folder sees nothing new).
pub(crate) fn is_removed(dir: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(dir).is_ok_and(|st| st.st_nlink == 0)
}

/// Opens the item `name` of `dir` for reading; `path` names it in messages. `None` if there is
/// no such entry, or it is a folder (where items are, not an item). A link, a named pipe, a
/// socket or a device is refused without blocking.
pub(crate) fn open_file(
    dir: BorrowedFd<'_>,
    name: &str,
    path: &Path,
) -> Result<Option<(File, Info)>, Fault> {
    let fd = match rustix::fs::openat(dir, name, READ_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
        // A link fails to open (ELOOP on Linux); a socket too (ENXIO).
        Err(e) => {
            return match stat_at(dir, name) {
                Ok(Some(info)) => match refusal(info.kind, path) {
                    Some(fault) => Err(fault),
                    None => Err(Fault::io(e, path)),
                },
                Ok(None) => Ok(None),
                Err(_) => Err(Fault::io(e, path)),
            };
        }
    };
    let info = rustix::fs::fstat(&fd).map_err(|e| Fault::io(e, path))?;
    let info = Info::of(&info);
    match info.kind {
        FileType::RegularFile => Ok(Some((File::from(fd), info))),
        FileType::Directory => Ok(None),
        other => Err(refusal(other, path).unwrap_or(Fault::Special {
            path: path.into(),
            what: describe(other),
        })),
    }
}

/// The refusal of an entry of type `kind` where an item is expected, if it is one.
fn refusal(kind: FileType, path: &Path) -> Option<Fault> {
    match kind {
        FileType::RegularFile | FileType::Directory => None,
        FileType::Symlink => Some(Fault::Link(path.into())),
        other => Some(Fault::Special {
            path: path.into(),
            what: describe(other),
        }),
    }
}

/// Clears `O_NONBLOCK` of a file opened for reading, before it is handed out.
pub(crate) fn make_blocking(file: &File) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(file)?;
    if flags.contains(OFlags::NONBLOCK) {
        rustix::fs::fcntl_setfl(file, flags - OFlags::NONBLOCK)?;
    }
    Ok(())
}

/// Creates the folder `name` in `dir` with `mode` (less the `umask`). Whether this call created
/// it (`false` if it existed).
pub(crate) fn make_dir(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<bool> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates the new file `name` in `dir`, open for reading and writing. Fails if the name exists
/// (as anything, a link included).
pub(crate) fn create_file(dir: BorrowedFd<'_>, name: &str) -> io::Result<File> {
    let fd = rustix::fs::openat(dir, name, CREATE_FLAGS, Mode::from_raw_mode(0o666))?;
    Ok(File::from(fd))
}

/// Renames `from` to `to`, both in `dir`, replacing `to` (a link itself, never what it names).
pub(crate) fn rename(dir: BorrowedFd<'_>, from: &str, to: &str) -> io::Result<()> {
    Ok(rustix::fs::renameat(dir, from, dir, to)?)
}

/// Links `from` as `to`, both in `dir`; fails if `to` exists.
pub(crate) fn hard_link(dir: BorrowedFd<'_>, from: &str, to: &str) -> io::Result<()> {
    Ok(rustix::fs::linkat(dir, from, dir, to, AtFlags::empty())?)
}

/// Removes the entry `name` of `dir` (a link itself, never what it names). `false` if there was
/// none.
pub(crate) fn unlink(dir: BorrowedFd<'_>, name: &str) -> io::Result<bool> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Removes the empty folder `name` of `dir`; a link is never followed (it fails with
/// `ENOTDIR`).
pub(crate) fn remove_dir(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Flushes a folder's entries to the device.
pub(crate) fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fsync(dir)?)
}

/// Sets the access time of an open file to now, leaving its modification time. The kernel sets
/// the change time to now as well (see `last_access` in the crate root).
pub(crate) fn touch(file: &File) -> io::Result<()> {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
    };
    Ok(rustix::fs::futimens(file, &times)?)
}

/// The entries of a folder, read at once: their names in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    names: String,
    /// Where each name ends in `names`, and what the folder says the entry is.
    ends: Vec<(usize, FileType)>,
}

impl Entries {
    fn push(&mut self, name: &std::ffi::CStr, kind: FileType) {
        let Ok(name) = name.to_str() else {
            return; // Not UTF-8: no key has it.
        };
        if name != "." && name != ".." {
            self.names.push_str(name);
            self.ends.push((self.names.len(), kind));
        }
    }

    /// Each name, with what the folder says the entry is ([`FileType::Unknown`] on file
    /// systems that do not say).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, FileType)> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(end, _)| end));
        starts
            .zip(&self.ends)
            .map(|(start, &(end, kind))| (self.names.get(start..end).unwrap_or_default(), kind))
    }
}

/// The entries of the folder `dir`, which must be open at its start and is read to its end
/// (without `.` and `..`; names that are not UTF-8 are left out: no key has them).
pub(crate) fn entries(dir: BorrowedFd<'_>) -> io::Result<Entries> {
    let mut out = Entries::default();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // Read in batches into a buffer on the stack, without a copy of each entry: a folder
        // of ten thousand entries costs a few system calls and the growth of one string. An
        // entry is at most 280 bytes (names are at most 255).
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut raw = rustix::fs::RawDir::new(dir, &mut buf);
        while let Some(entry) = raw.next() {
            let entry = entry?;
            out.push(entry.file_name(), entry.file_type());
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        out.push(entry.file_name(), entry.file_type());
    }
    Ok(out)
}

/// Whether the only entry of `dir` (besides `.` and `..`) is `name`. Stops reading at the
/// first other entry, so a large folder costs one read.
pub(crate) fn holds_only(dir: BorrowedFd<'_>, name: &str) -> io::Result<bool> {
    let mut found = false;
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let entry_name = entry.file_name().to_bytes();
        if entry_name == b"." || entry_name == b".." {
            continue;
        }
        if entry_name != name.as_bytes() {
            return Ok(false);
        }
        found = true;
    }
    Ok(found)
}

/// Opens the file `name` of `dir` for reading and writing, made (empty, for its owner only) if
/// missing; `path` is `dir`'s, for messages. A link or anything but a regular file is refused.
pub(crate) fn open_lock_file(dir: BorrowedFd<'_>, name: &str, path: &Path) -> Result<File, Fault> {
    let path = path.join(name);
    let flags = OFlags::RDWR
        .union(OFlags::CREATE)
        .union(OFlags::NOFOLLOW)
        .union(OFlags::NONBLOCK)
        .union(OFlags::CLOEXEC);
    let fd = match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => fd,
        Err(e) => {
            return Err(match stat_at(dir, name) {
                Ok(Some(info)) => refusal(info.kind, &path).unwrap_or(Fault::io(e, &path)),
                _ => Fault::io(e, &path),
            });
        }
    };
    let info = rustix::fs::fstat(&fd).map_err(|e| Fault::io(e, &path))?;
    match Info::of(&info).kind {
        FileType::RegularFile => Ok(File::from(fd)),
        other => Err(refusal(other, &path).unwrap_or(Fault::Special {
            path,
            what: describe(other),
        })),
    }
}

/// Opens the item `name` of `dir` for writing over it, if it is a regular file with no other
/// name (a hard link elsewhere would see the write): with its size. `None` otherwise (missing,
/// a link, anything but a regular file, or linked elsewhere); nothing is changed.
pub(crate) fn open_sole_file(dir: BorrowedFd<'_>, name: &str) -> Option<(File, u64)> {
    let flags = OFlags::WRONLY
        .union(OFlags::NOFOLLOW)
        .union(OFlags::NONBLOCK)
        .union(OFlags::CLOEXEC);
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    is_sole_regular(&st).then(|| (File::from(fd), Info::of(&st).size))
}

/// Reads a small file of `dir` whole, if it is a regular file of at most `limit` bytes.
pub(crate) fn read_small(dir: BorrowedFd<'_>, name: &str, limit: u64) -> Option<Vec<u8>> {
    let (file, info) = open_file(dir, name, Path::new(name)).ok()??;
    if info.size > limit {
        return None;
    }
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf).ok()?;
    Some(buf)
}
