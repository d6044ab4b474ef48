//! Helpers shared by the facade's test binaries.

#[allow(dead_code)] // Not every test binary uses the switch.
pub(crate) mod switch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cachette::{Memory, MemoryBuilder, Report, Reporter};

/// The reports (verbose lines and warnings) a memory sent.
pub(crate) type Reports = Arc<Mutex<Vec<Report>>>;

/// Builds a memory whose reports are collected.
pub(crate) fn capture(builder: MemoryBuilder) -> (Memory, Reports) {
    let reports = Reports::default();
    let sink = reports.clone();
    let memory = builder
        .reporter(Reporter::new(move |r| sink.lock().unwrap().push(r.clone())))
        .build()
        .unwrap();
    (memory, reports)
}

/// The URL of a store on the local disk at `dir` in the files layout (one file per item), for
/// tests that look at, damage or time the files of entries (small entries are no files in the
/// default layout).
#[allow(dead_code)] // Not every test binary looks at files.
pub(crate) fn files_url(dir: &Path) -> String {
    format!("file://{}?layout=files", dir.display())
}

/// A builder of a memory on the local disk at `dir` in the files layout (see [`files_url`]).
#[allow(dead_code)] // Not every test binary looks at files.
pub(crate) fn files_layout(dir: &Path) -> MemoryBuilder {
    Memory::builder().url(files_url(dir))
}

/// The warnings among `reports`.
pub(crate) fn warnings(reports: &Mutex<Vec<Report>>) -> Vec<String> {
    collect(reports, |r| match r {
        Report::Warning(w) => Some(w.clone()),
        _ => None,
    })
}

/// The verbose lines among `reports`.
#[allow(dead_code)] // Not every test binary looks at lines.
pub(crate) fn lines(reports: &Mutex<Vec<Report>>) -> Vec<String> {
    collect(reports, |r| match r {
        Report::Line(l) => Some(l.clone()),
        _ => None,
    })
}

fn collect(reports: &Mutex<Vec<Report>>, pick: impl Fn(&Report) -> Option<String>) -> Vec<String> {
    reports.lock().unwrap().iter().filter_map(pick).collect()
}

/// The files anywhere below `root` whose names `keep` accepts, sorted.
#[allow(dead_code)] // Not every test binary looks at files.
pub(crate) fn files_named(root: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if keep(&path.file_name().unwrap().to_string_lossy()) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
