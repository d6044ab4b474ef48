//! Compute-once claims of the index layout: byte-range locks on one file of the index's folder.
//!
//! The claim of a key is a write lock on one byte of the file [`CLAIMS_FILE`], at an offset
//! taken from a hash of the key (xxh3, so every process and version agrees on it). The locks
//! are open-file-description locks (`F_OFD_SETLK`): the kernel keeps them for every process
//! using the file, takes one in a single system call that never waits, and releases it when its
//! holder lets go or dies (`kill -9` included), so a claim needs no lease, no renewal and no
//! take-over of a stale one, and the entry's write stays one LMDB transaction.
//!
//! A lock does not exclude its own holder: every claim of this process goes through one open
//! file, so the threads of the process exclude each other with the set of offsets they hold,
//! kept next to the file (one per environment, shared by every store of the process on the
//! folder). Two keys whose hashes share their 62 low bits share a claim: one waits for the
//! other's computation, then computes its own.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use cachette_core::plugin::{ClaimAttempt, ClaimGuard};

use crate::tree::{self, Fault};

/// The file whose bytes are locked, in the index's folder.
pub(crate) const CLAIMS_FILE: &str = "claims.lock";

/// The claims of one environment in this process.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The locked file, opened by the first claim.
    file: Option<File>,
    /// The offsets this process holds.
    held: HashSet<u64, foldhash::fast::RandomState>,
}

/// The offset of the claim of `key`: 62 bits of its hash, so that the locked byte's end never
/// overflows an `off_t`.
pub(crate) fn offset_of(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes()) >> 2
}

impl Claims {
    /// Takes the claim at `offset`. `dir` gives the index's folder (at `path`), where the file
    /// is opened (and created) by the first claim. `None` when the system has no
    /// open-file-description locks.
    pub(crate) fn try_claim(
        self: &Arc<Self>,
        offset: u64,
        dir: impl FnOnce() -> Result<OwnedFd, Fault>,
        path: &Path,
    ) -> Result<Option<ClaimAttempt>, Fault> {
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            return Ok(None);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.held.contains(&offset) {
            return Ok(Some(ClaimAttempt::Busy));
        }
        let file = match &mut state.file {
            Some(file) => file,
            slot @ None => slot.insert(tree::open_lock_file(dir()?.as_fd(), CLAIMS_FILE, path)?),
        };
        match lock(file, offset, true).map_err(|e| Fault::io(e, path.join(CLAIMS_FILE)))? {
            None => Ok(None),
            Some(false) => Ok(Some(ClaimAttempt::Busy)),
            Some(true) => {
                state.held.insert(offset);
                Ok(Some(ClaimAttempt::Held(ClaimGuard::new(Held {
                    claims: self.clone(),
                    offset,
                }))))
            }
        }
    }

    /// Releases the claim at `offset`. The lock goes before the offset leaves the set: a thread
    /// of this process taking it meanwhile would otherwise lock it again (a no-op) and lose it
    /// to this release.
    fn release(&self, offset: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = &state.file
            && let Err(e) = lock(file, offset, false)
        {
            // The lock stays until the process ends; the offset stays held so that this
            // process does not take it twice.
            tracing::warn!(target: "cachette", "cannot release a compute-once claim: {e}");
            return;
        }
        state.held.remove(&offset);
    }
}

/// A claim held; dropped, released.
struct Held {
    claims: Arc<Claims>,
    offset: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.claims.release(self.offset);
    }
}

/// Locks (or unlocks) the byte at `offset` of `file` without waiting: whether it was locked
/// (`false` when another open file holds it), `None` when the system has no such locks.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn lock(file: &File, offset: u64, on: bool) -> io::Result<Option<bool>> {
    use std::os::fd::AsRawFd;
    let fd = file.as_fd();
    // SAFETY: `flock` is a plain C struct, for which all zero bytes are a valid value (and the
    // value `F_OFD_SETLK` requires of `l_pid`).
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = if on { libc::F_WRLCK } else { libc::F_UNLCK } as libc::c_short;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    // At most 2^62 - 1 (`offset_of`): it fits.
    range.l_start = offset as libc::off_t;
    range.l_len = 1;
    // SAFETY: `fd` is an open descriptor borrowed for the call, and `range` a valid `flock`
    // that outlives it; `F_OFD_SETLK` reads it and never waits.
    let done = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &raw const range) };
    if done == 0 {
        return Ok(Some(true));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) if on => Ok(Some(false)),
        // A kernel older than 3.15.
        Some(libc::EINVAL) => Ok(None),
        _ => Err(error),
    }
}

/// No open-file-description locks here: claims are items.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn lock(_file: &File, _offset: u64, _on: bool) -> io::Result<Option<bool>> {
    Ok(None)
}
