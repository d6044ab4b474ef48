//! Buffers for bytes a store announces: a file's size, an answer's length. A store's word on a
//! length may be anything (a sparse file announces a terabyte for free), and a buffer the
//! system refuses aborts the process, so a backend asks here first.

use std::io;
use std::sync::OnceLock;

/// The most memory this process may use, in bytes: the machine's physical memory, or less if
/// its control group (cgroup v2 `memory.max` or v1 `memory.limit_in_bytes`, of its own group
/// and the groups above it, at their usual mount points) or its address-space limit
/// (`RLIMIT_AS`) says so; `u64::MAX` if the system says nothing. No read into memory can be
/// larger.
pub fn memory_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let mut limit = u64::MAX;
        #[cfg(unix)]
        {
            limit = limit.min(physical_memory()).min(address_space_limit());
        }
        #[cfg(target_os = "linux")]
        {
            limit = limit.min(cgroup_limit());
        }
        limit
    })
}

/// An empty buffer with room for `len` bytes, or an error ([`io::ErrorKind::FileTooLarge`])
/// that says why they cannot be had: more than [`memory_limit`], more than can be addressed,
/// or refused by the system.
pub fn buffer_for(len: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reserve(&mut buf, len)?;
    Ok(buf)
}

/// Makes room in `buf` for exactly `more` more bytes, or says why they cannot be had (see
/// [`buffer_for`]). A buffer that grows as bytes arrive should grow geometrically, up to the
/// length it expects.
pub fn reserve(buf: &mut Vec<u8>, more: u64) -> io::Result<()> {
    let len = (buf.len() as u64).saturating_add(more);
    fits_in_memory(len)?;
    let more = usize::try_from(more).map_err(|_| too_large(len, "more than can be addressed"))?;
    buf.try_reserve_exact(more)
        .map_err(|_| too_large(len, "the system refused the memory"))
}

/// Whether `len` bytes may be read into memory: no more than [`memory_limit`]. The error's
/// kind is [`io::ErrorKind::FileTooLarge`]: an item too large to read, not a failing store.
pub fn fits_in_memory(len: u64) -> io::Result<()> {
    let limit = memory_limit();
    if len > limit {
        return Err(too_large(
            len,
            &format!("more than this process may use ({limit} bytes)"),
        ));
    }
    Ok(())
}

fn too_large(len: u64, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("cannot read {len} bytes into memory: {why}"),
    )
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn physical_memory() -> u64 {
    // SAFETY: `sysconf` only reads the system's configuration.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(page)) {
        (Ok(pages), Ok(page)) if pages > 0 && page > 0 => pages.saturating_mul(page),
        _ => u64::MAX,
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn address_space_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the limit into the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) };
    if read != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    // `rlim_t` is not `u64` on every system.
    #[allow(clippy::useless_conversion)]
    u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX)
}

/// The smallest memory limit of this process's control groups, from its own up to the root,
/// where the hierarchies are usually mounted (`/sys/fs/cgroup` for v2,
/// `/sys/fs/cgroup/memory` for v1's memory controller).
#[cfg(target_os = "linux")]
fn cgroup_limit() -> u64 {
    let Ok(groups) = std::fs::read_to_string("/proc/self/cgroup") else {
        return u64::MAX;
    };
    let mut limit = u64::MAX;
    for line in groups.lines().take(64) {
        // `0::<path>` (v2), or `<id>:<controllers>:<path>` (v1).
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (root, file) = if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
        } else {
            continue;
        };
        // A group outside this process's cgroup namespace (`/../x`) cannot be found from here.
        if path.split('/').any(|part| part == "..") {
            continue;
        }
        let mut dir = std::path::PathBuf::from(root);
        dir.extend(path.split('/').filter(|part| !part.is_empty()));
        for _ in 0..64 {
            let set = std::fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok());
            if let Some(set) = set {
                limit = limit.min(set);
            }
            if dir.as_os_str().len() <= root.len() || !dir.pop() {
                break;
            }
        }
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_the_process_may_use_is_an_error() {
        assert!(memory_limit() > 1 << 20);
        let err = buffer_for(u64::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("may use"), "{err}");
        let buf = buffer_for(4096).unwrap();
        assert!(buf.is_empty() && buf.capacity() >= 4096);
        let mut grown = vec![1u8; 10];
        reserve(&mut grown, 100).unwrap();
        assert!(grown.capacity() >= 110);
        assert!(reserve(&mut grown, memory_limit()).is_err());
        assert!(fits_in_memory(1 << 20).is_ok() && fits_in_memory(u64::MAX).is_err());
    }
}
