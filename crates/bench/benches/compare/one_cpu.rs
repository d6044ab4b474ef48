//! One CPU for the rounds of a workload whose contenders talk to a server on this machine.
//!
//! On a virtual machine whose idle CPUs halt, a request that wakes the server on another CPU
//! waits for the host to run that CPU again, and its reply waits as long to wake the client:
//! a Redis `GET` on loopback took 70 µs that way here, against 12 µs with client and server
//! on one CPU (a context switch each way). Which of the two a sample gets depends on where the
//! scheduler happens to place the server, so samples of the same contender differed by 6× and
//! none agreed with its calibration. With the harness's threads and the server's main thread
//! on one CPU, every contender pays the same context switches, every sample.

/// While alive, every thread of this process and the server's main thread run on one CPU;
/// their CPUs before are given back when it is dropped.
pub(crate) struct OneCpu {
    /// Each thread moved, with the CPUs it had.
    #[cfg(target_os = "linux")]
    saved: Vec<(libc::pid_t, libc::cpu_set_t)>,
    /// The CPUs of the thread that pinned them, given to threads started meanwhile.
    #[cfg(target_os = "linux")]
    original: libc::cpu_set_t,
    /// The CPU they share.
    pub(crate) cpu: usize,
}

#[cfg(target_os = "linux")]
impl OneCpu {
    /// Moves the threads of this process and the thread `server` (a process's id is its main
    /// thread's) to the first CPU that both this thread and the server may use.
    pub(crate) fn pin(server: u32) -> Result<OneCpu, String> {
        let server = libc::pid_t::try_from(server).map_err(|e| e.to_string())?;
        let mine = affinity(0)?;
        let theirs = affinity(server)?;
        let cpu = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE, the size of the sets.
            .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &mine) && libc::CPU_ISSET(cpu, &theirs) })
            .ok_or("no CPU that both may use")?;
        // SAFETY: a zeroed `cpu_set_t` is an empty set; `cpu` is below CPU_SETSIZE.
        let one = unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            one
        };
        let mut pinned = OneCpu {
            saved: Vec::new(),
            original: mine,
            cpu,
        };
        let mut ids = threads()?;
        ids.push(server);
        for id in ids {
            let before = match affinity(id) {
                Ok(set) => set,
                // A thread that ended meanwhile.
                Err(_) if id != server => continue,
                Err(e) => return Err(e),
            };
            set_affinity(id, &one)?;
            pinned.saved.push((id, before));
        }
        Ok(pinned)
    }
}

#[cfg(target_os = "linux")]
impl Drop for OneCpu {
    fn drop(&mut self) {
        // Threads this process started meanwhile inherited the one CPU: they get the CPUs
        // of the thread that pinned them.
        for id in threads().unwrap_or_default() {
            if !self.saved.iter().any(|(saved, _)| *saved == id) {
                let _ = set_affinity(id, &self.original);
            }
        }
        for (id, before) in self.saved.drain(..).rev() {
            // A thread that has ended since has nothing to give back.
            let _ = set_affinity(id, &before);
        }
    }
}

/// The threads of this process.
#[cfg(target_os = "linux")]
fn threads() -> Result<Vec<libc::pid_t>, String> {
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|e| e.to_string())?;
    Ok(tasks
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// The CPUs thread `id` may use (0: the calling thread).
#[cfg(target_os = "linux")]
fn affinity(id: libc::pid_t) -> Result<libc::cpu_set_t, String> {
    // SAFETY: a zeroed `cpu_set_t` is a valid set, filled by the call, whose size is given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(id, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(format!(
                "the CPUs of thread {id}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(set)
    }
}

#[cfg(target_os = "linux")]
fn set_affinity(id: libc::pid_t, set: &libc::cpu_set_t) -> Result<(), String> {
    // SAFETY: `set` is a valid set of the size given.
    if unsafe { libc::sched_setaffinity(id, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
        return Err(format!(
            "moving thread {id}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
impl OneCpu {
    /// Not done on this system.
    pub(crate) fn pin(_server: u32) -> Result<OneCpu, String> {
        Err("CPU affinity is set on Linux only".into())
    }
}
