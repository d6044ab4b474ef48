//! Who writes: this machine's name, and a tag that lets a process tell whether a writer of this
//! host is still running. Compute-once claims record the host name; backends put the owner tag
//! and the writer's process id in the names of what they write before publishing it (temporary
//! files, chunks), so that a listing sweeps at once what writers of this host left when they
//! died.

use std::sync::OnceLock;

/// The name of this machine, as compute-once claims record their owner: `/proc/sys/kernel/
/// hostname`, `/etc/hostname`, `HOSTNAME` or `COMPUTERNAME`, whitespace replaced by `_`;
/// `"unknown"` when none is set.
pub fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let from_file = |path: &str| std::fs::read_to_string(path).ok();
        from_file("/proc/sys/kernel/hostname")
            .or_else(|| from_file("/etc/hostname"))
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .map(|h| h.trim().replace(char::is_whitespace, "_"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    })
}

/// A short tag (8 hex digits) of this host, of its current boot and of its process-id
/// namespace. Processes with the same tag see the same process ids, so they can tell by a
/// writer's process id whether it is still running (see [`writer_is_gone`]). Containers that
/// share a host name have their own process-id namespaces, and so other tags; machines that
/// share a host name (and the first namespace, whose name is the same on every Linux host) have
/// their own boot ids, and so other tags too.
pub fn owner_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let pid_namespace = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let owner = format!("{}\n{pid_namespace}\n{}", host_name(), boot.trim());
        format!(
            "{:08x}",
            xxhash_rust::xxh3::xxh3_64(owner.as_bytes()) as u32
        )
    })
}

/// Whether the writer with this [`owner_tag`] and process id is a process of this host that is
/// gone (a crash, `kill -9`), other than this one: what it left unpublished never will be.
/// Writers of other hosts are never taken for gone, nor any where the process table cannot be
/// asked (outside Unix).
pub fn writer_is_gone(tag: &str, pid: u32) -> bool {
    tag == owner_tag() && pid != std::process::id() && !process_alive(pid)
}

/// Whether a process of this host is running (on Unix; elsewhere, assume it is). The system is
/// asked with a null signal, which also answers for processes of other users: `/proc` hides
/// them when it is mounted with `hidepid`. No process has the id 0 or one past `pid_t`'s range,
/// and no signal is sent to a group.
#[allow(unsafe_code)]
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 sends nothing; the call only checks that the process exists and
        // whether this one may signal it.
        if unsafe { libc::kill(pid, 0) } == 0 {
            return true;
        }
        // `EPERM`: it exists, and belongs to another user. `ESRCH`: there is no such process.
        std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_child_is_gone_and_this_process_is_not() {
        let tag = owner_tag();
        assert_eq!(tag.len(), 8);
        assert!(!writer_is_gone(tag, std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(writer_is_gone(tag, pid), cfg!(target_os = "linux"));
        assert!(!writer_is_gone("00000000", pid), "another host's writer");
        // Ids no process has: gone, and no signal goes to a process group.
        assert!(!process_alive(0) && !process_alive(u32::MAX) && !process_alive(1 << 31));
        assert!(process_alive(1), "the first process");
        assert!(!host_name().is_empty());
    }
}
