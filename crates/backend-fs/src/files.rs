//! Reading and writing open files: whole reads (large ones into huge pages), ranges, segmented
//! writes, and the times an item was last written or read.

use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime};

use cachette_core::plugin::{
    Blob, Bytes, DateTime, RecentAccesses, Utc, buffer_for, fits_in_memory, writer_is_gone,
};

use crate::tree::{self, Info};
use crate::{ACCESS_GRANULARITY, STALE_TEMP, TEMP_PREFIX};

/// Files at least this large are read into memory that is backed by huge pages where the
/// system offers them (see [`read_whole`]).
pub(super) const LARGE_READ: u64 = 32 << 20;

/// Reads a whole file of `len` bytes (as its metadata said).
///
/// A large file is read into an anonymous memory map advised to use transparent huge pages:
/// faulting in and zeroing 2 MiB pages instead of 4 KiB ones reads a gigabyte from the page
/// cache in about a third of the time `std::fs::read` takes. Its parts are read at once on as
/// many threads as the system has processors, up to [`MAX_READERS`], a part of at least
/// [`LARGE_READ`] each: the kernel's copy and the zeroing of the new pages are most of the
/// time, and each processor does its part. If the file's length is not `len` after all, it is
/// read again the plain way. A small file is read in one `read` of `len` bytes.
pub(super) fn read_whole(file: &mut File, len: u64) -> io::Result<Bytes> {
    if len >= LARGE_READ
        && fits_in_memory(len).is_ok()
        && let Ok(size) = usize::try_from(len)
        && let Ok(mut map) = memmap2::MmapMut::map_anon(size)
    {
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let mut probe = [0u8; 1];
        if read_parts(file, &mut map, readers_for(size))? && file.read_at(&mut probe, len)? == 0 {
            return Ok(Bytes::from_owner(map));
        }
        file.seek(SeekFrom::Start(0))?;
    }
    if len < LARGE_READ
        && let Ok(size) = usize::try_from(len)
    {
        // Items are never written in place (a write renames a new file over the old one), so
        // the length the metadata gave is the length to read: no size probe, no read to EOF.
        // A file that changed anyway gives bytes whose entry checks fail.
        let mut buf = vec![0u8; size];
        let n = read_full(file, &mut buf)?;
        buf.truncate(n);
        return Ok(Bytes::from(buf));
    }
    // Large, or a file whose length changed: read to its end, one byte past `len` at most.
    let mut buf = buffer_for(len.saturating_add(1))?;
    file.take(len.saturating_add(1)).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// The most threads that read the parts of one large file.
const MAX_READERS: usize = 8;

/// The threads that read a large file of `len` bytes: one per processor, up to
/// [`MAX_READERS`], each reading at least [`LARGE_READ`] bytes.
fn readers_for(len: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_READERS)
        .min(len / LARGE_READ as usize)
        .max(1)
}

/// Reads `buf.len()` bytes from the start of `file` into `buf`, in at most `threads` parts
/// read at once (see [`read_whole`]): whether the file held that many (`false` too when the
/// system gave no thread for a part).
fn read_parts(file: &File, buf: &mut [u8], threads: usize) -> io::Result<bool> {
    /// Parts start on a 2 MiB boundary of the buffer: in a map the kernel places on a huge-page
    /// boundary (Linux 6.7 and later do so for large anonymous maps), each huge page is faulted
    /// in by one thread.
    const ALIGN: usize = 2 << 20;
    let part = buf
        .len()
        .div_ceil(threads.max(1))
        .next_multiple_of(ALIGN)
        .max(ALIGN);
    let threads = buf.len().div_ceil(part);
    // `read_exact_at` retries interrupted reads; a file that ends before the part does is
    // `UnexpectedEof`.
    let read_part = |(i, chunk): (usize, &mut [u8])| -> io::Result<bool> {
        match file.read_exact_at(chunk, (i * part) as u64) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    };
    if threads <= 1 {
        return read_part((0, buf));
    }
    let both = |a: io::Result<bool>, b: io::Result<bool>| match (a, b) {
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        (Ok(a), Ok(b)) => Ok(a && b),
    };
    std::thread::scope(|scope| {
        let mut parts = buf.chunks_mut(part).enumerate();
        let first = parts.next();
        let mut whole = Ok(true);
        let mut others = Vec::new();
        for p in parts {
            match std::thread::Builder::new().spawn_scoped(scope, move || read_part(p)) {
                Ok(other) => others.push(other),
                // No thread to be had: the part is not read, and the caller reads the file
                // the plain way (no more parts are started).
                Err(_) => {
                    whole = Ok(false);
                    break;
                }
            }
        }
        if matches!(whole, Ok(true)) {
            whole = both(whole, first.map_or(Ok(true), read_part));
        }
        for other in others {
            let read = other
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a reading thread panicked")));
            whole = both(whole, read);
        }
        whole
    })
}

pub(super) fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads the bytes of `range` (clamped to `len`, the file's size) of a file.
pub(super) fn read_range(file: &File, range: &Range<u64>, len: u64) -> io::Result<Bytes> {
    let start = range.start.min(len);
    let end = range.end.clamp(start, len);
    let mut buf = buffer_for(end - start)?;
    // Addressable: `buffer_for` checked it.
    let size = usize::try_from(end - start).unwrap_or(0);
    buf.resize(size, 0);
    let mut filled = 0;
    while filled < size {
        match file.read_at(&mut buf[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

/// Writes the segments of a value one after the other from the start of `file`, without
/// gathering them first. Positional (`pwritev`): a file written before (a claim kept open
/// and written over) needs no seek.
pub(super) fn write_parts(file: &mut File, value: &Blob) -> io::Result<()> {
    // The segments go out together, up to this many per system call (an entry is usually a
    // header and a payload: one `pwritev` where a `write` per segment took two).
    const GATHER: usize = 16;
    let mut offset = 0u64;
    for group in value.parts().chunks(GATHER) {
        let mut slices = [IoSlice::new(&[]); GATHER];
        for (slice, part) in slices.iter_mut().zip(group) {
            *slice = IoSlice::new(part);
        }
        let mut pending = &mut slices[..group.len()];
        while !pending.is_empty() {
            match rustix::io::pwritev(&*file, pending, offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    offset += written as u64;
                    IoSlice::advance_slices(&mut pending, written);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Records a read: sets the access time to now, unless the item was written or its access
/// recorded less than [`ACCESS_GRANULARITY`] ago (by its change time, see [`last_access`]).
/// Best effort (a store shared between users may not allow it). Notes in `recent` until when
/// the record holds, so that the next reads of `key` need not look (see [`RecentAccesses`]).
pub(super) fn record_access(file: &File, info: &Info, recent: &RecentAccesses, key: &str) {
    let now = SystemTime::now();
    let changed = info.ctime.min(now);
    let held_since = if now
        .duration_since(changed)
        .is_ok_and(|d| d < ACCESS_GRANULARITY)
    {
        changed
    } else {
        match tree::touch(file) {
            Ok(()) => now,
            Err(e) => {
                tracing::debug!(target: "cachette", "cannot record an access: {e}");
                return;
            }
        }
    };
    recent.note(key, held_since + ACCESS_GRANULARITY, now);
}

/// When an item was last written or read with `record_access`: the inode's change time,
/// clamped to `now`.
///
/// Not the access or modification time: anybody who may write to the store can set those to
/// any date (`touch -d`, `utimensat`), and an item whose times lie in the future would look
/// recently used for ever and never be evicted. The change time cannot be set: the kernel sets
/// it to the current time on every write, rename, link and time change, so it follows every
/// write (the temporary file is written, then renamed or linked into place) and every recorded
/// access (which sets the access time, and with it the change time). Clamping to now covers a
/// clock that went back, or another machine's clock on a network file system; clamping to the
/// epoch covers a file system that reports a time of its files' choosing (a FUSE mount of an
/// object store), which could be out of the calendar's range.
pub(super) fn last_access(info: &Info, now: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(info.ctime.min(now).max(SystemTime::UNIX_EPOCH))
}

/// A temporary file left by a writer that will never rename it: one of this host whose process
/// is gone (a crash, `kill -9`), or any older than [`STALE_TEMP`].
pub(super) fn is_leftover(name: &str, age: Duration) -> bool {
    if age > STALE_TEMP {
        return true;
    }
    // `<prefix><owner tag>.<pid>-<n>-<name>` (see `temp_name`)
    let owner = name[TEMP_PREFIX.len()..].split('-').next().unwrap_or("");
    let Some((tag, pid)) = owner.split_once('.') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    writer_is_gone(tag, pid)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::config::canonical;
    use crate::write::temp_name;
    use crate::{TEMP_NAME_PART, TEMP_PREFIX, has_reserved_segment, is_reserved};

    /// A file system that reports a change time of its files' choosing (a FUSE mount) could
    /// report one outside the calendar's range: listing panicked on it.
    #[test]
    fn a_change_time_out_of_range_is_an_old_access() {
        let now = SystemTime::now();
        let file = |ctime| Info {
            kind: rustix::fs::FileType::RegularFile,
            size: 0,
            ctime,
            mtime: SystemTime::UNIX_EPOCH,
        };
        let epoch = DateTime::<Utc>::from(SystemTime::UNIX_EPOCH);
        for secs in [i64::MIN, -(1 << 62), -1] {
            let at = last_access(&file(tree::time(secs, 0)), now);
            assert_eq!(at, epoch, "{secs}");
        }
        let at = last_access(&file(tree::time(i64::MAX, 999_999_999)), now);
        assert_eq!(at, DateTime::<Utc>::from(now));
    }

    /// `LARGE_READ` and a bit more, in a pattern that shows misplaced bytes.
    fn large_bytes() -> Vec<u8> {
        let n = usize::try_from(LARGE_READ).unwrap() + 12_345;
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn large_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let bytes = large_bytes();
        fs::write(&path, &bytes).unwrap();
        let len = bytes.len() as u64;
        let read = read_whole(&mut File::open(&path).unwrap(), len).unwrap();
        assert!(read[..] == bytes[..]);
        // The metadata said more, or less, than the file holds: read the plain way, to the
        // end of the file but never more than one byte past the length given (a file that
        // grows while it is read is not read for ever; the byte past shows it is longer).
        for wrong in [len + 10, len - 10, LARGE_READ] {
            let read = read_whole(&mut File::open(&path).unwrap(), wrong).unwrap();
            let expected = &bytes[..bytes.len().min(usize::try_from(wrong).unwrap() + 1)];
            assert!(read[..] == *expected, "length given: {wrong}");
        }
        // Small files: the length given is trusted (items are never written in place).
        fs::write(&path, b"small").unwrap();
        let read = read_whole(&mut File::open(&path).unwrap(), 3).unwrap();
        assert_eq!(&read[..], b"sma");
        let read = read_whole(&mut File::open(&path).unwrap(), 5).unwrap();
        assert_eq!(&read[..], b"small");
    }

    /// A file read in parts at once is read whole, each part where it belongs; a file shorter
    /// than the buffer is reported so, whichever part comes short.
    #[test]
    fn parts_are_read_at_once_each_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parts");
        let len = (5 << 20) + 123;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        for threads in [1, 2, 3, 8] {
            let mut buf = vec![0u8; len];
            assert!(read_parts(&file, &mut buf, threads).unwrap(), "{threads}");
            assert!(buf == bytes, "{threads} threads");
            // One byte more than the file, or a part more: the last part comes short.
            for extra in [1, 3 << 20] {
                let mut buf = vec![0u8; len + extra];
                assert!(!read_parts(&file, &mut buf, threads).unwrap());
            }
        }
        assert_eq!(readers_for(1), 1);
        assert!(readers_for(usize::MAX) <= MAX_READERS);
    }

    /// Segments are written in order, gathered by system call, however many there are.
    #[test]
    fn segments_are_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for count in [1usize, 2, 16, 17, 40] {
            let parts: Vec<Bytes> = (0..count)
                .map(|i| Bytes::from(vec![(i % 251) as u8; 1 + i * 7]))
                .collect();
            let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            let path = dir.path().join(format!("parts-{count}"));
            let mut file = File::create(&path).unwrap();
            write_parts(&mut file, &parts.into_iter().collect()).unwrap();
            drop(file);
            assert_eq!(fs::read(&path).unwrap(), expected, "{count} segments");
        }
    }

    #[test]
    fn ranges_are_clamped_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"0123456789").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(&read_range(&file, &(2..5), 10).unwrap()[..], b"234");
        assert_eq!(&read_range(&file, &(8..50), 10).unwrap()[..], b"89");
        assert!(read_range(&file, &(20..30), 10).unwrap().is_empty());
        let reversed = Range { start: 5, end: 2 };
        assert!(read_range(&file, &reversed, 10).unwrap().is_empty());
    }

    #[test]
    fn reserved_segments_are_found_wherever_they_are() {
        for key in [
            ".gitignore",
            "a/.gitignore",
            ".cachette-index/data.mdb",
            "a/b/.cachette-tmp-x",
            "a/.hidden/.cachette-index",
        ] {
            assert!(has_reserved_segment(key), "{key}");
        }
        for key in [
            "a/b",
            "a/.hidden",
            ".hidden/b",
            "a/b.gitignore",
            "x.cachette-index/y",
        ] {
            assert!(!has_reserved_segment(key), "{key}");
        }
    }

    #[test]
    fn temporary_names_record_their_writer_and_stay_short() {
        let long = "é".repeat(120);
        let name = temp_name(&long);
        assert!(name.len() <= TEMP_PREFIX.len() + 8 + 1 + 10 + 1 + 20 + 1 + TEMP_NAME_PART);
        assert!(is_reserved(&name));
        // A live writer (this process), recent: not a leftover; old: a leftover.
        assert!(!is_leftover(&name, Duration::ZERO));
        assert!(is_leftover(&name, STALE_TEMP + Duration::from_secs(1)));
        // Another host's writer is never taken for gone; names not of this form neither.
        assert!(!is_leftover(".cachette-tmp-00000000.1-0-x", Duration::ZERO));
        assert!(!is_leftover(".cachette-tmp-garbage", Duration::ZERO));
    }

    #[test]
    fn canonical_paths_of_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(canonical(&dir.path().join("a/b")), base.join("a/b"));
        assert_eq!(canonical(dir.path()), base);
        assert!(!dir.path().join("a").exists(), "canonical creates nothing");
    }
}
