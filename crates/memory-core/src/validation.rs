//! Cache validation: deciding whether a stored result may be reused.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::entry::Metadata;

/// How far ahead of this machine's clock the time of a stored call may be before the entry is
/// refused by every [`Validation`]: five minutes, more than the clocks of machines sharing a
/// store should differ by.
pub const MAX_CLOCK_AHEAD: TimeDelta = TimeDelta::minutes(5);

/// A validation callback over an entry's [`Metadata`]: when it returns `false`, the stored
/// result is not reused and the function runs again (joblib's `cache_validation_callback`).
///
/// ```
/// use cachette_core::{Metadata, Validation};
/// // Only reuse results of calls that took more than one second.
/// let slow_only = Validation::new(|meta: &Metadata| meta.duration > 1.0);
/// # let _ = slow_only;
/// ```
#[derive(Clone)]
pub struct Validation {
    check: Arc<dyn Fn(&Metadata) -> bool + Send + Sync>,
    ttl: Option<Duration>,
}

impl Validation {
    /// A validation from a callback.
    pub fn new(check: impl Fn(&Metadata) -> bool + Send + Sync + 'static) -> Self {
        Validation {
            check: Arc::new(check),
            ttl: None,
        }
    }

    /// Whether the entry described by `metadata` may be reused. An entry whose recorded time
    /// lies more than [`MAX_CLOCK_AHEAD`] in the future is never valid: the clock of the
    /// machine that wrote it was wrong (or its writer lied), and a callback comparing times,
    /// such as [`expires_after`], would otherwise accept it for as long as its time stays ahead.
    pub fn is_valid(&self, metadata: &Metadata) -> bool {
        if metadata.time > Utc::now() + MAX_CLOCK_AHEAD {
            tracing::debug!(target: "cachette", "an entry of {} is dated {} in the future: not valid", metadata.func, metadata.time);
            return false;
        }
        (self.check)(metadata)
    }

    /// The lifetime after which every entry is invalid, if this validation has one. Backends
    /// with native expiry (Redis) also drop such entries by themselves.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
}

impl fmt::Debug for Validation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validation")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<F> From<F> for Validation
where
    F: Fn(&Metadata) -> bool + Send + Sync + 'static,
{
    fn from(check: F) -> Self {
        Validation::new(check)
    }
}

/// A lifetime, given like `datetime.timedelta` in joblib's `expires_after`. Fields add up.
///
/// ```
/// use cachette_core::ExpiresAfter;
/// let after = ExpiresAfter { minutes: 1.0, seconds: 30.0, ..Default::default() };
/// assert_eq!(after.to_duration(), std::time::Duration::from_secs(90));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExpiresAfter {
    /// Days.
    pub days: f64,
    /// Hours.
    pub hours: f64,
    /// Minutes.
    pub minutes: f64,
    /// Seconds.
    pub seconds: f64,
    /// Milliseconds.
    pub milliseconds: f64,
    /// Microseconds.
    pub microseconds: f64,
}

impl ExpiresAfter {
    /// The total, as a duration: negative or undefined (NaN) totals become zero, and totals
    /// too long for a `Duration` (an infinite one among them) become [`Duration::MAX`].
    pub fn to_duration(&self) -> Duration {
        let secs = self.days * 86_400.0
            + self.hours * 3_600.0
            + self.minutes * 60.0
            + self.seconds
            + self.milliseconds / 1e3
            + self.microseconds / 1e6;
        if secs > 0.0 {
            Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        }
    }
}

impl From<Duration> for ExpiresAfter {
    fn from(d: Duration) -> Self {
        ExpiresAfter {
            seconds: d.as_secs_f64(),
            ..Default::default()
        }
    }
}

impl From<TimeDelta> for ExpiresAfter {
    fn from(d: TimeDelta) -> Self {
        ExpiresAfter {
            seconds: d.as_seconds_f64(),
            ..Default::default()
        }
    }
}

/// A validation that accepts entries younger than `after` (joblib's `expires_after`). On
/// backends with native expiry, entries are also written with that lifetime.
///
/// ```
/// use cachette_core::{expires_after, ExpiresAfter};
/// let half_a_second = expires_after(ExpiresAfter { seconds: 0.5, ..Default::default() });
/// let one_day = expires_after(std::time::Duration::from_secs(86_400));
/// # let _ = (half_a_second, one_day);
/// ```
///
/// A lifetime longer than a hundred years never ends: entries are accepted whatever their age,
/// and written without a native lifetime (stores refuse some longer ones).
pub fn expires_after(after: impl Into<ExpiresAfter>) -> Validation {
    let lifetime = after.into().to_duration();
    if lifetime > MAX_LIFETIME {
        return Validation {
            check: Arc::new(|_: &Metadata| true),
            ttl: None,
        };
    }
    let delta = TimeDelta::from_std(lifetime).unwrap_or(TimeDelta::MAX);
    Validation {
        check: Arc::new(move |meta: &Metadata| Utc::now() - meta.time < delta),
        ttl: Some(lifetime),
    }
}

/// The longest lifetime [`expires_after`] gives entries; a longer one never ends.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
