//! Verbose output and warnings.
//!
//! Every event goes through `tracing` (target `cachette`). joblib's human lines
//! (`[Memory] Calling …`) are produced at verbosity ≥ 1 and handed to a [`Reporter`], which by
//! default prints them on standard error. Warnings are `tracing` warnings; when no global
//! `tracing` subscriber is installed they are also printed on standard error, so they are never
//! lost.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
///
/// Warnings are rate-limited: at most [`WARNINGS_PER_WINDOW`] every ten seconds per reporter
/// (clones share the limit; a memory's clones share its reporter); those beyond go to `tracing`
/// at debug level only, and the first warning of the next window says how many were left out.
#[derive(Clone, Default)]
pub struct Reporter(Option<Sink>, Arc<Limiter>);

type Sink = Arc<dyn Fn(&Report) + Send + Sync>;

/// The most warnings a reporter passes on in one window of ten seconds.
pub const WARNINGS_PER_WINDOW: u32 = 20;
/// The window of the warnings' rate limit.
const WARNING_WINDOW: Duration = Duration::from_secs(10);

/// The rate limit of a reporter's warnings.
#[derive(Debug)]
struct Limiter {
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    passed: u32,
    left_out: u64,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::with_window(WARNING_WINDOW)
    }
}

impl Limiter {
    fn with_window(window: Duration) -> Limiter {
        Limiter {
            window,
            state: Mutex::new(Window {
                start: Instant::now(),
                passed: 0,
                left_out: 0,
            }),
        }
    }

    /// Whether a warning passes now, and how many were left out in the windows before it.
    fn admit(&self) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut left_out = 0;
        if now.duration_since(w.start) >= self.window {
            w.start = now;
            w.passed = 0;
            left_out = std::mem::take(&mut w.left_out);
        }
        if w.passed >= WARNINGS_PER_WINDOW {
            w.left_out += 1;
            return None;
        }
        w.passed += 1;
        Some(left_out)
    }
}

impl Reporter {
    /// A reporter calling `sink` for every report (lines and warnings). Warnings still go to
    /// `tracing` too.
    pub fn new(sink: impl Fn(&Report) + Send + Sync + 'static) -> Self {
        Reporter(Some(Arc::new(sink)), Arc::default())
    }

    pub(crate) fn line(&self, line: String) {
        tracing::info!(target: "cachette", "{line}");
        match &self.0 {
            Some(sink) => sink(&Report::Line(line)),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn warn(&self, message: String) {
        let Some(left_out) = self.1.admit() else {
            tracing::debug!(target: "cachette", "warning left out (rate limit): {message}");
            return;
        };
        if left_out > 0 {
            self.emit(format!(
                "{left_out} more warnings were left out (at most {WARNINGS_PER_WINDOW} every {}s)",
                self.1.window.as_secs()
            ));
        }
        self.emit(message);
    }

    fn emit(&self, message: String) {
        // Warnings quote the store (names, keys, errors of a server): each site escapes and
        // cuts what it quotes, and this is the last guard, for a quote a site missed.
        let message = printable(message);
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
pub fn untrusted_within(text: &str, max: usize) -> String {
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

/// `text` with its control characters but line breaks, and the characters that reorder text,
/// escaped: safe to print on a terminal.
fn printable(text: String) -> String {
    if !text
        .chars()
        .any(|c| (c.is_control() && c != '\n') || reorders(c))
    {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if (c.is_control() && c != '\n') || reorders(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters that change the order text is shown in (Unicode's bidirectional controls).
pub(crate) fn reorders(c: char) -> bool {
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

    #[test]
    fn warnings_never_carry_terminal_codes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reporter = Reporter::new(move |r| {
            if let Report::Warning(w) = r {
                sink.lock().unwrap().push(w.clone());
            }
        });
        reporter.warn("held by \u{1b}]0;owned\u{7} on \u{202e}x\ttwo\nlines".into());
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["held by \\u{1b}]0;owned\\u{7} on \\u{202e}x\\ttwo\nlines"]
        );
    }

    #[test]
    fn warnings_are_rate_limited_and_the_left_out_counted() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut reporter = Reporter::new(move |r| {
            if let Report::Warning(w) = r {
                sink.lock().unwrap().push(w.clone());
            }
        });
        reporter.1 = Arc::new(Limiter::with_window(Duration::from_millis(200)));
        let clone = reporter.clone();
        for i in 0..100 {
            clone.warn(format!("warning {i}"));
        }
        assert_eq!(seen.lock().unwrap().len(), WARNINGS_PER_WINDOW as usize);
        std::thread::sleep(Duration::from_millis(250));
        reporter.warn("after the window".into());
        let seen = seen.lock().unwrap();
        let n = WARNINGS_PER_WINDOW as usize;
        assert_eq!(seen.len(), n + 2, "{seen:?}");
        assert!(
            seen[n].starts_with("80 more warnings were left out"),
            "{seen:?}"
        );
        assert_eq!(seen[n + 1], "after the window");
        // Lines are never limited.
        let lines = Arc::new(Mutex::new(0));
        let count = lines.clone();
        let reporter = Reporter::new(move |r| {
            if let Report::Line(_) = r {
                *count.lock().unwrap() += 1;
            }
        });
        for _ in 0..100 {
            reporter.line("line".into());
        }
        assert_eq!(*lines.lock().unwrap(), 100);
    }
}
