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

/// A string read from a store or a message, made safe to print: control characters (terminal
/// escape codes among them) and the invisible characters that reorder text (bidirectional
/// overrides) escaped, and cut to 300 characters.
pub fn untrusted(text: &str) -> String {
    untrusted_within(text, 300)
}

/// The most characters of a warning about a fault of the store (before escapes): room for a
/// function's name, the location, the key and the error's kind and first words, never a whole
/// error body from a server.
pub(crate) const WARNING_LEN: usize = 500;

/// [`untrusted`], cut to `max` characters.
pub(crate) fn untrusted_within(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 8));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() || reorders(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters that change the order text is shown in (Unicode's bidirectional controls).
fn reorders(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A location (a URL or a path) made safe to print: the password of its user information, if
/// any, hidden. Whatever stands between `://` and the last `@` before the path is user
/// information, so a password holding an unescaped `/`, `#`, `?` or `@` is hidden whole.
pub(crate) fn redact_url(location: &str) -> String {
    let Some(start) = location.find("://").map(|i| i + 3) else {
        return location.to_owned();
    };
    let rest = &location[start..];
    let Some(at) = rest.rfind('@') else {
        return location.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
    let shown = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        "***".to_owned()
    };
    format!("{}{shown}{}", &location[..start], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_whatever_they_hold() {
        for (url, shown) in [
            ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
            (
                "redis://alice:p#ss/w@rd?x@host/2",
                "redis://alice:***@host/2",
            ),
            ("rediss://token@host", "rediss://***@host"),
            ("s3://bucket/prefix", "s3://bucket/prefix"),
            ("/var/cache/with@sign", "/var/cache/with@sign"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("s3cret"));
        }
        assert_eq!(untrusted("a\u{1b}[31mred"), "a\\u{1b}[31mred");
    }
}
