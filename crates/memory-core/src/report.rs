//! Verbose output and warnings.
//!
//! Every event goes through `tracing` (target `cachette`). joblib's human lines
//! (`[Memory] Calling …`) are produced at verbosity ≥ 1 and handed to a [`Reporter`], which by
//! default prints them on standard error. Warnings are `tracing` warnings; when no global
//! `tracing` subscriber is installed they are also printed on standard error, so they are never
//! lost.

use std::fmt;
use std::sync::Arc;

/// What the library reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// A line of joblib-style verbose output.
    Line(String),
    /// A warning: something went wrong, the call still returns a correct value.
    Warning(String),
}

/// Where reports go. The default prints lines on standard error and sends warnings to
/// `tracing`.
#[derive(Clone, Default)]
pub struct Reporter(Option<Sink>);

type Sink = Arc<dyn Fn(&Report) + Send + Sync>;

impl Reporter {
    /// A reporter calling `sink` for every report (lines and warnings). Warnings still go to
    /// `tracing` too.
    pub fn new(sink: impl Fn(&Report) + Send + Sync + 'static) -> Self {
        Reporter(Some(Arc::new(sink)))
    }

    pub(crate) fn line(&self, line: String) {
        tracing::info!(target: "cachette", "{line}");
        match &self.0 {
            Some(sink) => sink(&Report::Line(line)),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn warn(&self, message: String) {
        tracing::warn!(target: "cachette", "{message}");
        match &self.0 {
            Some(sink) => sink(&Report::Warning(message)),
            None => {
                if !tracing::dispatcher::has_been_set() {
                    eprintln!("[cachette] WARNING: {message}");
                }
            }
        }
    }
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Reporter(custom)"
        } else {
            "Reporter(stderr)"
        })
    }
}

/// joblib's `format_time`: `"1.2s, 0.0min"`.
pub(crate) fn format_time(seconds: f64) -> String {
    format!("{seconds:.1}s, {:.1}min", seconds / 60.0)
}

/// A line of `_` ending with `message`, 80 columns wide (joblib's closing line).
pub(crate) fn rule_ending_with(message: &str) -> String {
    let width = message.chars().count();
    format!("{}{message}", "_".repeat(80usize.saturating_sub(width)))
}
