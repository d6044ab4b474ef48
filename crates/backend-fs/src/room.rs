//! The index written through its memory map (`MDB_WRITEMAP`), and the room on the device that
//! this needs.
//!
//! A commit of LMDB writes each page it changed with a system call of its own, then the meta page
//! with one more: about five `pwrite`s for a small item, most of the time a small miss takes. With
//! `MDB_WRITEMAP` a transaction writes its pages in the shared memory map, and a commit makes no
//! system call. Other processes see the pages at once (there is one page cache), and a process
//! killed loses nothing it committed: the kernel holds the pages. (A durable store keeps
//! `pwrite`: each of its commits waits for the device anyway.)
//!
//! A write through a map has one danger that a `pwrite` has not: a page of the file that has no
//! block on the device (a hole) gets one when it is first written, and when the device is full
//! (or the user's quota is), that write kills the process (`SIGBUS`) where a `pwrite` would
//! have returned an error. So no map ever covers a hole:
//! - the map is used only on file systems whose `fallocate` reserves blocks for good (ext4,
//!   XFS, tmpfs; not copy-on-write ones such as Btrfs or ZFS, where a write may still need a
//!   new block); elsewhere the index writes with `pwrite`, as LMDB does by default;
//! - the map is the size of the data file, and every block of the file is allocated: LMDB
//!   makes the file as long as the map, and `fallocate` allocates it before any write;
//! - the map grows in steps ([`grown`]): the new length is allocated first, then mapped; a
//!   device without room for it leaves the map as it is, and a write that does not fit finds
//!   the map full, which LMDB reports as an error (the item is then written as a file);
//! - LMDB never writes a page past the end of its map.
//!
//! Processes agree through a lock (`flock`) on the index's folder: the one that makes the file
//! longer holds it while it allocates and maps the new length, and one that opens the index
//! holds it while it reads the file's length, maps it and allocates it. Nobody waits for it
//! longer than [`QUIESCE_WAIT`] (a process may be stopped while it holds it). A process whose map is
//! shorter than what another committed since maps the longer file again (LMDB says
//! `MDB_MAP_RESIZED`). No process makes the file shorter.
//!
//! LMDB maps the file again only when no transaction of the process is under way: the [`Gate`]
//! counts the transactions under way, and holds new ones back while the map changes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::fd::OwnedFd;
use rustix::fs::FileType;

/// The map of a new index.
pub(crate) const INITIAL: u64 = 8 << 20;

/// The pages past the end of those in use that are read ahead, before writes take them.
pub(crate) const AHEAD: u64 = 2 << 20;

/// The least free room a map keeps before a write begins...
const HEADROOM_MIN: u64 = 4 << 20;

/// ...or this fraction of what the index holds, if more.
const HEADROOM_SHARE: u64 = 8;

/// The longest a growth waits for the transactions under way in this process to end. Past it,
/// the map stays as it is (a write that does not fit then finds it full).
#[cfg(not(test))]
const QUIESCE_WAIT: Duration = Duration::from_secs(10);
/// The longest a growth waits (shorter in this crate's tests).
#[cfg(test)]
const QUIESCE_WAIT: Duration = Duration::from_millis(500);

/// The system's page size: a map's length is a whole number of them.
pub(crate) fn os_page() -> u64 {
    rustix::param::page_size() as u64
}

/// What a map holds before a write that may add `extra` bytes: it grows when less room than this
/// would be left after it.
pub(crate) fn wanted(used: u64, extra: u64) -> u64 {
    used.saturating_add(extra)
        .saturating_add(HEADROOM_MIN.max(used / HEADROOM_SHARE))
}

/// The length a map that holds `map` bytes and must hold `wanted` grows to: by a quarter,
/// 8 MiB at least, and to a whole number of MiB; at most `most`, but never less than
/// `at_least` (the data file's length, which another process may have made longer than
/// `most`). A quarter: the file is allocated whole, so a larger step leaves more of the device
/// unused, and a smaller one maps the file again more often (each time, the pages of the map
/// are faulted in again).
pub(crate) fn grown(map: u64, wanted: u64, most: u64, at_least: u64) -> u64 {
    let step = map.saturating_add((map / 4).max(8 << 20));
    let target = wanted
        .max(step)
        .checked_next_multiple_of(1 << 20)
        .unwrap_or(!((1 << 20) - 1));
    target.min(most).max(at_least)
}

/// Whether the file system of the type `magic` (`statfs`'s, see
/// [`fs_magic`](crate::index::fs_magic)) reserves blocks with `fallocate` for good, so that a
/// write through a map of an allocated file never needs a new block.
pub(crate) fn reserves_blocks(magic: u64) -> bool {
    // ext2, ext3 and ext4 (one magic number: `fallocate` fails on files without extents, and
    // the index then writes with `pwrite`), XFS, tmpfs.
    matches!(magic & 0xFFFF_FFFF, 0xEF53 | 0x5846_5342 | 0x0102_1994)
}

/// Locks `lock` within [`QUIESCE_WAIT`], or fails.
pub(crate) fn lock_within(lock: &Mutex<()>) -> std::io::Result<std::sync::MutexGuard<'_, ()>> {
    let start = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(guard) => return Ok(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return Ok(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if start.elapsed() < QUIESCE_WAIT => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the index's map grew in another process, and the writers of this one did not let it follow",
                ));
            }
        }
    }
}

/// The index's folder, locked (`flock`) for as long as this lives: the processes using the
/// index make its data file longer, and map it, one at a time.
pub(crate) struct Locked<'d>(&'d OwnedFd);

impl<'d> Locked<'d> {
    /// Takes the lock of the folder `dir`, waiting at most [`QUIESCE_WAIT`] for the process
    /// that holds it (which holds it for a growth: a stopped or hung one would hold it for
    /// ever); then an error of kind `TimedOut`.
    pub(crate) fn new(dir: &'d OwnedFd) -> std::io::Result<Self> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            match rustix::fs::flock(dir, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Locked(dir)),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::WOULDBLOCK) if start.elapsed() < QUIESCE_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "another process has held the lock of the index's folder for more than {} ms",
                            QUIESCE_WAIT.as_millis()
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Closing the folder would release it too; it stays open for the next growth.
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// The length of the data file `data`.
pub(crate) fn length(data: &impl rustix::fd::AsFd) -> std::io::Result<u64> {
    checked_length(&rustix::fs::fstat(data)?)
}

/// The most of a data file that may have no blocks on the device when it is mapped (then
/// allocated): a new index's map, which LMDB makes the file as long as before it is allocated
/// (a process killed in between leaves it so). A file with more was made longer by another
/// program than Cachette: allocating, then mapping it, could fill the device for nothing.
pub(crate) const MOST_UNALLOCATED: u64 = INITIAL;

/// The length of the data file whose status is `st`: an error if it is not a regular file, or
/// if more than [`MOST_UNALLOCATED`] bytes of it have no blocks on the device.
pub(crate) fn checked_length(st: &rustix::fs::Stat) -> std::io::Result<u64> {
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(std::io::Error::other(
            "the index's data file is not a regular file",
        ));
    }
    // Never negative.
    #[allow(clippy::cast_sign_loss)]
    let (len, blocks) = (st.st_size as u64, st.st_blocks as u64);
    let unallocated = len.saturating_sub(blocks.saturating_mul(512));
    if unallocated > MOST_UNALLOCATED {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the index's data file is {len} bytes long, and {unallocated} of them have no blocks on the device: another program made it longer"
            ),
        ));
    }
    Ok(len)
}

/// Gives the data file `data` blocks on the device of its own for its first `len` bytes (and
/// makes it that long if it is shorter).
pub(crate) fn allocate(data: &impl rustix::fd::AsFd, len: u64) -> std::io::Result<()> {
    use rustix::fs::FallocateFlags;
    let call = |flags| loop {
        match rustix::fs::fallocate(data, flags, 0, len) {
            Err(rustix::io::Errno::INTR) => {}
            done => return done,
        }
    };
    call(FallocateFlags::empty())?;
    // Blocks shared with another file (a copy made with `cp --reflink`, on XFS) would be
    // copied on the first write, which may then find no room: unshared now. A file system
    // that shares no blocks (ext4, tmpfs) refuses the call, and has nothing to unshare.
    match call(FallocateFlags::UNSHARE_RANGE) {
        Ok(()) | Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The transactions of an environment under way in this process, and a way to hold new ones
/// back while its map changes.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Transactions under way (and ones about to begin, or to see the gate shut).
    active: AtomicUsize,
    /// New transactions wait: the map is about to change.
    shut: AtomicBool,
    /// The map could not be made again: the environment must not be used any more.
    broken: AtomicBool,
    waiting: Mutex<()>,
    opened: Condvar,
}

/// A transaction under way, as the [`Gate`] counts it: it may begin once this exists, and must
/// end before this is dropped.
#[derive(Debug)]
pub(crate) struct Entered<'g>(&'g Gate);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The gate shut: no transaction of the process is under way while this lives.
#[derive(Debug)]
pub(crate) struct Shut<'g>(&'g Gate);

impl Drop for Shut<'_> {
    fn drop(&mut self) {
        let _waiting = self
            .0
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.0.shut.store(false, Ordering::SeqCst);
        self.0.opened.notify_all();
    }
}

impl Gate {
    /// Counts a transaction about to begin: waits while the gate is shut. Fails once the
    /// environment is broken.
    pub(crate) fn enter(&self) -> std::io::Result<Entered<'_>> {
        loop {
            // Counted first, then the gate looked at: a growth that shuts it after this sees the
            // count (both sequentially consistent).
            self.active.fetch_add(1, Ordering::SeqCst);
            let entered = Entered(self);
            if !self.shut.load(Ordering::SeqCst) {
                return Ok(entered);
            }
            drop(entered);
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                // A broken environment keeps its gate shut.
                if self.broken.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other(
                        "the index's memory map could not be made again; the index is closed until the process restarts",
                    ));
                }
                if !self.shut.load(Ordering::SeqCst) {
                    break;
                }
                waiting = self
                    .opened
                    .wait(waiting)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Shuts the gate once the transactions under way end: `None` (and the gate open) if they
    /// do not end within [`QUIESCE_WAIT`]. Never call it while counted in by [`enter`](Self::enter).
    pub(crate) fn shut(&self) -> Option<Shut<'_>> {
        self.shut.store(true, Ordering::SeqCst);
        let shut = Shut(self);
        let start = Instant::now();
        let mut pause = Duration::from_micros(10);
        while self.active.load(Ordering::SeqCst) != 0 {
            if start.elapsed() > QUIESCE_WAIT {
                return None; // `shut` opens it again.
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
        Some(shut)
    }

    /// Marks the environment unusable, its map gone: the gate stays shut, and every
    /// transaction about to begin, or waiting to, fails.
    pub(crate) fn break_down(shut: Shut<'_>) {
        let gate = shut.0;
        std::mem::forget(shut);
        let _waiting = gate.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        gate.broken.store(true, Ordering::SeqCst);
        gate.opened.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_map_keeps_room_and_grows_by_half() {
        assert_eq!(wanted(0, 0), HEADROOM_MIN);
        assert_eq!(wanted(80 << 20, 1 << 20), (81 << 20) + (10 << 20));
        // Small: by 8 MiB; large: by a quarter; never past the most, but never below the file.
        assert_eq!(grown(8 << 20, 9 << 20, 1 << 40, 0), 16 << 20);
        assert_eq!(grown(1 << 30, (1 << 30) + 1, 1 << 40, 0), 5 << 28);
        assert_eq!(grown(1 << 30, 5 << 30, 1 << 40, 0), 5 << 30);
        assert_eq!(grown(8 << 20, 9 << 20, 12 << 20, 0), 12 << 20);
        assert_eq!(grown(8 << 20, 9 << 20, 12 << 20, 20 << 20), 20 << 20);
        assert_eq!(grown(u64::MAX - 5, u64::MAX, u64::MAX, 0) % (1 << 20), 0);
    }

    /// A process that holds the folder's lock (stopped, say) makes the others wait a while, not
    /// for ever.
    #[test]
    fn the_folder_lock_is_waited_for_a_while_only() {
        use rustix::fs::{Mode, OFlags};
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            rustix::fs::open(dir.path(), flags, Mode::empty()).unwrap()
        };
        // Two open file descriptions: two holders, as two processes.
        let (held, other) = (open(), open());
        let holder = Locked::new(&held).unwrap();
        let (sent, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let kind = Locked::new(&other).err().map(|e| e.kind());
            let _ = sent.send(kind);
        });
        let kind = got
            .recv_timeout(QUIESCE_WAIT * 20)
            .expect("the lock was waited for with no end");
        assert_eq!(kind, Some(std::io::ErrorKind::TimedOut));
        drop(holder);
        let again = open();
        Locked::new(&again).unwrap();
    }

    #[test]
    fn a_shut_gate_holds_transactions_back_until_it_opens() {
        let gate = Arc::new(Gate::default());
        let entered = gate.enter().unwrap();
        let shut_while_under_way = Arc::new(AtomicBool::new(false));
        let opening = Arc::new(AtomicBool::new(false));
        // Not shut while a transaction is under way...
        let shutter = {
            let (gate, shut_while_under_way, opening) = (
                Arc::clone(&gate),
                Arc::clone(&shut_while_under_way),
                Arc::clone(&opening),
            );
            std::thread::spawn(move || {
                let shut = gate.shut().unwrap();
                let under_way = gate.active.load(Ordering::SeqCst) != 0;
                shut_while_under_way.store(under_way, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                opening.store(true, Ordering::SeqCst);
                drop(shut);
            })
        };
        while !gate.shut.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(10));
        drop(entered);
        // ...and a new one waits until it opens again.
        let again = gate.enter().unwrap();
        assert!(opening.load(Ordering::SeqCst));
        shutter.join().unwrap();
        assert!(!shut_while_under_way.load(Ordering::SeqCst));
        drop(again);
        // Broken: shut for good, and every transaction fails, waiting or not.
        let shut = gate.shut().unwrap();
        let waiter = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.enter().is_err())
        };
        std::thread::sleep(Duration::from_millis(10));
        Gate::break_down(shut);
        assert!(waiter.join().unwrap());
        assert!(gate.enter().is_err());
    }
}
