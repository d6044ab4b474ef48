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

/// The smallest memory limit of this process's control groups, from its own up to the root
/// of each hierarchy, wherever the hierarchies are mounted (`/proc/self/mountinfo`; the usual
/// mount points if it cannot be read).
#[cfg(target_os = "linux")]
fn cgroup_limit() -> u64 {
    let Ok(groups) = std::fs::read_to_string("/proc/self/cgroup") else {
        return u64::MAX;
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    cgroup_limit_in(&groups, &mounts, |path| std::fs::read_to_string(path).ok())
}

/// A control-group hierarchy mounted at `point`, showing the group `root` of the hierarchy
/// at its top (not `/` in a container without its own cgroup namespace).
#[cfg(target_os = "linux")]
struct CgroupMount {
    root: String,
    point: std::path::PathBuf,
    /// cgroup v2, or v1's memory controller.
    v2: bool,
}

/// The control-group hierarchies in `mountinfo` (`/proc/self/mountinfo`'s text): cgroup v2,
/// and cgroup v1 with the memory controller. At most 4,096 lines are read.
#[cfg(target_os = "linux")]
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines().take(4096) {
        // `<id> <parent> <major:minor> <root> <point> <options> [optional...] - <type>
        // <source> <super options>`
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = mount.split(' ').skip(3);
        let (Some(root), Some(point)) = (fields.next(), fields.next()) else {
            continue;
        };
        let mut fs = fs.split(' ');
        let v2 = match (fs.next(), fs.nth(1)) {
            (Some("cgroup2"), _) => true,
            (Some("cgroup"), Some(options)) if options.split(',').any(|o| o == "memory") => false,
            _ => continue,
        };
        mounts.push(CgroupMount {
            root: unescape(root),
            point: unescape(point).into(),
            v2,
        });
    }
    mounts
}

/// A path of `mountinfo`, whose spaces, tabs, newlines and backslashes are octal escapes.
#[cfg(target_os = "linux")]
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], code) {
            (b'\\', Some(code)) => {
                out.push(code);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// [`cgroup_limit`] from the texts of `/proc/self/cgroup` and `/proc/self/mountinfo`, reading
/// files with `read`.
#[cfg(target_os = "linux")]
fn cgroup_limit_in(
    groups: &str,
    mountinfo: &str,
    read: impl Fn(&std::path::Path) -> Option<String>,
) -> u64 {
    let mut mounts = cgroup_mounts(mountinfo);
    if mounts.is_empty() {
        mounts = ["/sys/fs/cgroup", "/sys/fs/cgroup/memory"]
            .into_iter()
            .zip([true, false])
            .map(|(point, v2)| CgroupMount {
                root: "/".into(),
                point: point.into(),
                v2,
            })
            .collect();
    }
    let mut limit = u64::MAX;
    for line in groups.lines().take(64) {
        // `0::<path>` (v2), or `<id>:<controllers>:<path>` (v1).
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (v2, file) = if controllers.is_empty() {
            (true, "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (false, "memory.limit_in_bytes")
        } else {
            continue;
        };
        // A group outside this process's cgroup namespace (`/../x`) cannot be found from here.
        if path.split('/').any(|part| part == "..") {
            continue;
        }
        let path: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
        for mount in mounts.iter().filter(|mount| mount.v2 == v2).take(16) {
            // The mount shows the groups under its root only.
            let root: Vec<&str> = mount.root.split('/').filter(|p| !p.is_empty()).collect();
            let Some(below) = path.strip_prefix(root.as_slice()) else {
                continue;
            };
            let mut dir = mount.point.clone();
            dir.extend(below);
            for _ in 0..64 {
                let set = read(&dir.join(file)).and_then(|text| text.trim().parse::<u64>().ok());
                if let Some(set) = set {
                    limit = limit.min(set);
                }
                if dir == mount.point || !dir.pop() {
                    break;
                }
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

    /// Files of a made-up system: path → text.
    #[cfg(target_os = "linux")]
    fn files(set: &[(&str, &str)]) -> impl Fn(&std::path::Path) -> Option<String> + use<> {
        let set: std::collections::HashMap<std::path::PathBuf, String> = set
            .iter()
            .map(|(path, text)| (path.into(), text.to_string()))
            .collect();
        move |path| set.get(path).cloned()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_control_group_mounted_at_an_unusual_place_is_found() {
        // cgroup v2 at a place of the system's choosing, with a space in its name.
        let mounts = "30 1 0:26 / /run/my\\040groups rw,nosuid shared:4 - cgroup2 cgroup2 rw\n\
                      31 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        let read = files(&[
            ("/run/my groups/user.slice/memory.max", "max\n"),
            ("/run/my groups/user.slice/job/memory.max", "1048576000\n"),
            ("/sys/fs/cgroup/user.slice/job/memory.max", "5\n"),
        ]);
        assert_eq!(
            cgroup_limit_in("0::/user.slice/job\n", mounts, &read),
            1_048_576_000
        );
        // No hierarchy in the mount table: the usual mount points.
        assert_eq!(cgroup_limit_in("0::/user.slice/job\n", "", &read), 5);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_v1_mount_that_shows_its_group_at_the_top_is_read_from_its_top() {
        // A container without its own cgroup namespace: the group is `/docker/abc`, and the
        // mount shows that group at its top, with an unrelated group's limit further up.
        let mounts = "40 30 0:35 /docker/abc /cg/memory ro - cgroup cgroup rw,memory\n\
                      41 30 0:36 / /cg/cpu ro - cgroup cgroup rw,cpu,cpuacct\n";
        let read = files(&[
            ("/cg/memory/memory.limit_in_bytes", "536870912\n"),
            ("/cg/cpu/docker/abc/memory.limit_in_bytes", "5\n"),
        ]);
        let groups = "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n";
        assert_eq!(cgroup_limit_in(groups, mounts, &read), 536_870_912);
        // A group outside the mount's root is not read from it.
        assert_eq!(
            cgroup_limit_in("4:memory:/other\n", mounts, &read),
            u64::MAX
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape("/bad\\9zz"), "/bad\\9zz");
    }
}
