//! The only place the core maps files into memory: whole entry files (read-only) and the
//! regions of their arrays (copy-on-write or shared).
//!
//! # Safety
//!
//! A map is sound while nobody changes the file under it. Cachette never writes an entry file
//! in place: every write creates a new file and renames it over the old one, so a mapped file
//! keeps its bytes while it is mapped. What Cachette cannot prevent:
//!
//! - maps made in read-write mode write into arrays' regions, which
//!   [`MmapMode::ReadWrite`](crate::MmapMode::ReadWrite) documents as corrupting the cache;
//! - another program truncating or rewriting an entry file in place. Reading a page past the
//!   new end of a truncated file raises `SIGBUS`. The entry's head is parsed and checked from
//!   the map, and its arrays are only read when the caller uses them. docs/reliability.md says
//!   who may write a store and how to turn maps off where others may.

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapMut, MmapOptions};

/// Maps the first `len` bytes of an entry file read-only.
pub(crate) fn map_entry(file: &File, len: usize) -> io::Result<Mmap> {
    // SAFETY: see the module documentation: entry files are replaced, never written in place.
    unsafe { MmapOptions::new().len(len).map(file) }
}

/// Maps `len` bytes of an entry file from `offset`: shared and writable (`shared`, the
/// read-write mode) or private (copy-on-write).
pub(crate) fn map_region(
    file: &File,
    offset: u64,
    len: usize,
    shared: bool,
) -> io::Result<MmapMut> {
    let mut options = MmapOptions::new();
    options.offset(offset).len(len);
    // SAFETY: see the module documentation. A private map never writes the file; a shared one
    // is what the read-write mode asks for.
    unsafe {
        if shared {
            options.map_mut(file)
        } else {
            options.map_copy(file)
        }
    }
}
