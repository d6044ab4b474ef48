//! Buffers for bytes a store announces: a file's size, an answer's length. A store's word on a
//! length may be anything (a sparse file announces a terabyte for free), and a buffer the
//! system refuses aborts the process, so a backend asks here first.

use std::io;
use std::sync::OnceLock;

/// This machine's physical memory, in bytes (`u64::MAX` if the system does not say): no read
/// into memory can be larger.
pub fn physical_memory() -> u64 {
    static MEMORY: OnceLock<u64> = OnceLock::new();
    *MEMORY.get_or_init(|| {
        #[cfg(unix)]
        {
            // SAFETY: `sysconf` only reads the system's configuration.
            #[allow(unsafe_code)]
            let (pages, page) = unsafe {
                (
                    libc::sysconf(libc::_SC_PHYS_PAGES),
                    libc::sysconf(libc::_SC_PAGESIZE),
                )
            };
            if let (Ok(pages), Ok(page)) = (u64::try_from(pages), u64::try_from(page))
                && pages > 0
                && page > 0
            {
                return pages.saturating_mul(page);
            }
        }
        u64::MAX
    })
}

/// An empty buffer with room for `len` bytes, or an error ([`io::ErrorKind::OutOfMemory`])
/// that says why they cannot be had: more than this machine's memory, more than can be
/// addressed, or refused by the system.
pub fn buffer_for(len: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reserve(&mut buf, len)?;
    Ok(buf)
}

/// Makes room in `buf` for `more` bytes, or says why they cannot be had (see [`buffer_for`]).
pub fn reserve(buf: &mut Vec<u8>, more: u64) -> io::Result<()> {
    let len = (buf.len() as u64).saturating_add(more);
    fits_in_memory(len)?;
    let more = usize::try_from(more).map_err(|_| too_large(len, "more than can be addressed"))?;
    buf.try_reserve_exact(more)
        .map_err(|_| too_large(len, "the system refused the memory"))
}

/// Whether `len` bytes may be read into memory: no more than this machine's memory.
pub fn fits_in_memory(len: u64) -> io::Result<()> {
    let memory = physical_memory();
    if len > memory {
        return Err(too_large(
            len,
            &format!("more than this machine's memory ({memory} bytes)"),
        ));
    }
    Ok(())
}

fn too_large(len: u64, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("cannot read {len} bytes into memory: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_the_machine_has_is_an_error() {
        assert!(physical_memory() > 1 << 20);
        let err = buffer_for(u64::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        assert!(err.to_string().contains("machine's memory"), "{err}");
        let buf = buffer_for(4096).unwrap();
        assert!(buf.is_empty() && buf.capacity() >= 4096);
        let mut grown = vec![1u8; 10];
        reserve(&mut grown, 100).unwrap();
        assert!(grown.capacity() >= 110);
        assert!(reserve(&mut grown, physical_memory()).is_err());
        assert!(fits_in_memory(1 << 20).is_ok() && fits_in_memory(u64::MAX).is_err());
    }
}
