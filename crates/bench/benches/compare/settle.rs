//! Waiting, before the workloads run, until the file system creates files at its usual speed.
//!
//! On ext4, the kernel's inode allocator steps over the inodes freed in the last minutes
//! (`recently_deleted` in `fs/ext4/ialloc.c`: up to 5 minutes while their inode table block
//! is dirty). After many deletions (a build, a test run, the clean-up of an earlier run),
//! creating a file takes 0.5–1 ms instead of tens of microseconds, for Cachette and its floors
//! alike, and every row that creates files measures that instead of the code. The first files
//! are fast: a file takes the first free inode of its folder's block group that was not freed
//! recently, and each creation checks every recently freed one before it, so creations slow
//! down as they go through a region of inodes freed in the minutes before (a new file also
//! dirties its inode table block, which keeps the freed inodes beside it recent for 5 minutes
//! more). So the harness first creates as many files as a workload does, in fresh folders of
//! its scratch folder, times the last of them, and waits while they are slow, for a bounded
//! time. The report says what it found.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Res;

/// A median creation slower than this is the slow path (tens of microseconds is usual, the
/// slow path takes hundreds).
pub(crate) const SLOW: Duration = Duration::from_micros(100);
/// Fresh folders per check.
const FOLDERS: usize = 8;
/// Files created in each folder, each with a few bytes written.
const FILES: usize = 256;
/// The files whose creation is timed: the last ones of a check.
const TIMED: usize = 256;
/// The pause between two checks.
const PAUSE: Duration = Duration::from_secs(30);
/// The longest wait: the window of `recently_deleted`, and a check more.
const MAX_WAIT: Duration = Duration::from_secs(330);

/// What the checks found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settled {
    /// The median time to create one of the last [`TIMED`] files, at the last check.
    pub(crate) create: Duration,
    /// How long the harness waited.
    pub(crate) waited: Duration,
}

impl Settled {
    /// Whether file creation was at its usual speed when the workloads began.
    pub(crate) fn settled(&self) -> bool {
        self.create <= SLOW
    }

    /// The line of the report.
    pub(crate) fn note(&self) -> String {
        let create = self.create.as_secs_f64() * 1e6;
        let waited = self.waited.as_secs();
        if self.settled() {
            format!(
                "File creation, timed before the workloads: {create:.0} µs per file (the median \
                 of the last {TIMED} of {total} made in {FOLDERS} fresh folders), after waiting \
                 {waited} s for inodes freed in the minutes before to age (ext4 steps over them \
                 while creating files; see `settle.rs`).",
                total = FOLDERS * FILES
            )
        } else {
            format!(
                "File creation was still slow when the workloads began ({create:.0} µs per file, \
                 the median of the last {TIMED} of {total} made in {FOLDERS} fresh folders, \
                 after waiting {waited} s): the rows that create files measure the file \
                 system's slow path (see `settle.rs`).",
                total = FOLDERS * FILES
            )
        }
    }
}

/// Times file creations in fresh folders of `scratch` until they are at their usual speed in
/// each, or [`MAX_WAIT`] has passed. The folders are left for the run's clean-up: deleting them
/// would slow the next creations down.
pub(crate) fn settle(scratch: &Path) -> Res<Settled> {
    let started = Instant::now();
    let mut check = 0;
    loop {
        let mut times = Vec::with_capacity(FOLDERS * FILES);
        for folder in 0..FOLDERS {
            let dir = scratch.join(format!("settle-{check}-{folder}"));
            std::fs::create_dir_all(&dir)?;
            create_files(&dir, &mut times)?;
        }
        let mut last = times.split_off(times.len().saturating_sub(TIMED));
        last.sort_unstable();
        let create = last.get(last.len() / 2).copied().unwrap_or_default();
        let waited = started.elapsed();
        let settled = Settled { create, waited };
        if settled.settled() || waited + PAUSE > MAX_WAIT {
            return Ok(settled);
        }
        eprintln!(
            "compare: creating a file takes {:.0} µs (more than {} µs: inodes freed in the last minutes); waiting {} s",
            create.as_secs_f64() * 1e6,
            SLOW.as_micros(),
            PAUSE.as_secs()
        );
        std::thread::sleep(PAUSE);
        check += 1;
    }
}

/// Creates [`FILES`] files in `dir`, each with a few bytes written, and adds the time each
/// took to `times`.
fn create_files(dir: &Path, times: &mut Vec<Duration>) -> Res<()> {
    for i in 0..FILES {
        let path = dir.join(format!("f{i}"));
        let t = Instant::now();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(b"settle")?;
        drop(file);
        times.push(t.elapsed());
    }
    Ok(())
}
