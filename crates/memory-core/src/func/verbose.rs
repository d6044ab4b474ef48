//! joblib's human lines, printed at verbosity 1 (computations) and 2 (loads), and the warning
//! of a changed function.

use super::FuncId;
use crate::key::Key;
use crate::report::{Reporter, format_time, rule_ending_with};

/// `[Memory] Calling f...` and the call with its arguments.
pub(super) fn call_header(reporter: &Reporter, id: &FuncId, args: &[(String, String)]) {
    let shown: Vec<&str> = args.iter().map(|(_, v)| v.as_str()).collect();
    reporter.line("_".repeat(80));
    reporter.line(format!("[Memory] Calling {}...", id.name));
    reporter.line(format!("{}({})", id.short_name(), shown.join(", ")));
}

/// The closing line of a computation, with its duration.
pub(super) fn call_footer(reporter: &Reporter, id: &FuncId, duration: f64) {
    reporter.line(rule_ending_with(&format!(
        "{} - {}",
        id.short_name(),
        format_time(duration)
    )));
}

/// The lines of a load.
pub(super) fn loaded(reporter: &Reporter, id: &FuncId, location: &str, key: &Key, secs: f64) {
    reporter.line(format!(
        "[Memory]{:>16}: Loading {} from {location}/{key}",
        format_time(secs),
        id.short_name(),
    ));
    reporter.line(rule_ending_with(&format!(
        "{} cache loaded - {}",
        id.short_name(),
        format_time(secs)
    )));
}

/// A stored result the validation callback refused: expired (older than the lifetime of
/// `expires_after`), or refused.
pub(super) fn no_longer_valid(
    reporter: &Reporter,
    id: &FuncId,
    validation: Option<&crate::validation::Validation>,
    meta: &crate::entry::Metadata,
) {
    let why = match validation.map(|v| super::explain::refusal(v, meta, "")) {
        Some(super::Cause::Expired {
            age_secs,
            lifetime_secs,
            ..
        }) => format!("has expired (age {age_secs:.1}s, lifetime {lifetime_secs:.1}s)"),
        _ => "is no longer valid (refused by validation)".to_owned(),
    };
    reporter.line(format!(
        "[Memory] The stored result of {} {why}: computing it again",
        id.name
    ));
}

/// A miss with nothing stored under the call's key (the cheap reason: no listing).
pub(super) fn not_stored(reporter: &Reporter, id: &FuncId) {
    reporter.line(format!(
        "[Memory] No stored result of {} for these arguments: computing it",
        id.name
    ));
}

/// A call that skips the store (its circuit breaker is open).
pub(super) fn store_skipped(reporter: &Reporter, id: &FuncId, location: &str) {
    reporter.line(format!(
        "[Memory] The store {} is unavailable (circuit breaker open): computing {} without it",
        crate::report::redact_url(location),
        id.name
    ));
}

/// The warning of a function whose stored identity item was not signed with the memory's key:
/// replaced, and nothing deleted.
pub(super) fn untrusted_identity(reporter: &Reporter, id: &FuncId) {
    reporter.warn(format!(
        "the stored code identity of function '{}' is not signed with this memory's key: replaced with this code's, and no result deleted",
        id.name
    ));
}

/// The warning of a function whose code changed since its results were stored.
pub(super) fn code_changed(reporter: &Reporter, id: &FuncId, previous: &str) {
    let line = |n: usize, label: &str| {
        previous
            .lines()
            .nth(n)
            .unwrap_or("")
            .trim_start_matches(label)
            .to_owned()
    };
    let line = |n: usize, label: &str| crate::report::untrusted(&line(n, label));
    reporter.warn(format!(
        "the code of function '{}' has changed since its results were stored ({} -> {}, version {} -> {}): clearing its cache",
        id.name,
        line(1, "code: "),
        id.code_hash.as_deref().unwrap_or("-"),
        line(2, "version: "),
        id.version.as_deref().unwrap_or("-"),
    ));
}

/// A stored result of other code than the caller's (another version running on the same store,
/// or an entry left by an older version).
pub(super) fn other_code(reporter: &Reporter, id: &FuncId, why: &crate::error::Error) {
    reporter.line(format!(
        "[Memory] The stored result of {} was computed by other code ({why}): computing it again",
        id.name
    ));
}
