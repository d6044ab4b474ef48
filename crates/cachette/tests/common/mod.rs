//! Helpers shared by the facade's test binaries.

#[allow(dead_code)] // Not every test binary uses the switch.
pub(crate) mod switch;

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
