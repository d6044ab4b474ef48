//! The circuit breaker: a store that keeps failing is skipped for a while.
//!
//! Every operation the entry store runs reports its outcome here. After
//! [`breaker_threshold`](crate::Options::breaker_threshold) faults of the store in a row the
//! breaker opens, with one warning: calls then compute and return their value without reading or
//! writing the store (strict calls get a temporary error instead), so an unreachable or hung
//! store no longer costs its timeout, and a warning, on every call. Once
//! [`breaker_cooldown`](crate::Options::breaker_cooldown) has passed, one call goes to the store
//! (the others keep skipping it for another cool-down); its first successful operation closes
//! the breaker, with one line, and a fault keeps it open. A timeout opens it at once: a hung
//! store costs its timeout once, not `breaker_threshold` times. So does an error of the whole
//! store ([`BackendError::is_whole_store`]): it is told once. A call whose store operation
//! failed this way does not go back to the store either: it computes its value without it.
//!
//! On the hot path (closed breaker) a call costs one atomic load, and each store operation
//! one or two more.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{BackendError, ErrorKind};
use crate::report::{Reporter, redact_url};

/// Whether a call may use the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// The breaker is closed: use the store.
    Closed,
    /// The cool-down is over and this call tries the store.
    Probe,
    /// The breaker is open: skip the store for about this long.
    Open(Duration),
}

/// The circuit breaker of one memory's store; see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Faults in a row that open it; 0 turns it off.
    threshold: u32,
    cooldown: Duration,
    /// The origin of the times below.
    epoch: Instant,
    /// Faults of the store since its last success.
    faults: AtomicU32,
    /// 0 while closed; else when the store may be tried again, in nanoseconds after `epoch`
    /// (plus one, so that it is never 0).
    retry_at: AtomicU64,
    reporter: Reporter,
    location: String,
}

impl Breaker {
    pub(crate) fn new(
        threshold: u32,
        cooldown: Duration,
        reporter: Reporter,
        location: &str,
    ) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            epoch: Instant::now(),
            faults: AtomicU32::new(0),
            retry_at: AtomicU64::new(0),
            reporter,
            location: redact_url(location),
        }
    }

    /// Nanoseconds since `epoch`, plus one.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn deadline(&self) -> u64 {
        let cooldown = u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX);
        self.now().saturating_add(cooldown)
    }

    /// Whether a call may use the store now.
    pub(crate) fn gate(&self) -> Gate {
        let at = self.retry_at.load(Ordering::Acquire);
        if at == 0 {
            return Gate::Closed;
        }
        let now = self.now();
        if now < at {
            return Gate::Open(Duration::from_nanos(at - now));
        }
        // The cool-down is over: this call tries the store, the others wait another one.
        match self.retry_at.compare_exchange(
            at,
            self.deadline(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                tracing::debug!(target: "cachette", "trying {} again", self.location);
                Gate::Probe
            }
            Err(0) => Gate::Closed,
            Err(_) => Gate::Open(self.cooldown),
        }
    }

    /// Whether the breaker is open (the store is being skipped).
    pub(crate) fn is_open(&self) -> bool {
        self.retry_at.load(Ordering::Acquire) != 0
    }

    /// The store answered.
    pub(crate) fn success(&self) {
        if self.faults.load(Ordering::Relaxed) != 0 {
            self.faults.store(0, Ordering::Relaxed);
        }
        if self.retry_at.load(Ordering::Acquire) != 0
            && self.retry_at.swap(0, Ordering::AcqRel) != 0
        {
            self.reporter.line(format!(
                "[cachette] {} answers again: calls use it again",
                self.location
            ));
        }
    }

    /// The store failed with `error`. A timeout opens the breaker at once: the store was given
    /// its whole timeout already, and a hung store would cost it again on every call. So does
    /// an error the store gives every operation ([`BackendError::is_whole_store`]): the next
    /// calls would only meet it again, each with a warning.
    pub(crate) fn fault(&self, error: &BackendError) {
        if self.threshold == 0 || !is_store_fault(error) {
            return;
        }
        let faults = self
            .faults
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let at_once = error.kind() == ErrorKind::Timeout || error.is_whole_store();
        if faults < self.threshold && !at_once {
            return;
        }
        if self.retry_at.load(Ordering::Acquire) != 0 {
            // Still failing after the cool-down (the probe re-armed it): stays open, quietly.
            return;
        }
        if self
            .retry_at
            .compare_exchange(0, self.deadline(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let cooldown = self.cooldown.as_secs_f64();
            if faults < self.threshold && error.is_whole_store() {
                // The one warning the user gets of it: the error as whole as the reporter's
                // bound on a warning's length allows, last, since it says why and what to do.
                self.reporter.warn(format!(
                    "{} refuses every operation; calls compute their values without it, and try it again every {cooldown}s: {}",
                    self.location,
                    crate::report::untrusted_within(&error.to_string(), crate::report::WARNING_LEN),
                ));
                return;
            }
            let failed = if faults >= self.threshold {
                format!("failed {faults} times in a row")
            } else {
                "timed out".to_owned()
            };
            self.reporter.warn(format!(
                "{} {failed} (last: {}); calls skip it for {cooldown}s, computing their values without storing them",
                self.location,
                crate::report::untrusted_within(&error.to_string(), 160),
            ));
        }
    }

    /// The error of a strict call while the breaker is open: temporary.
    pub(crate) fn open_error(&self, retry_in: Duration) -> BackendError {
        BackendError::new(
            ErrorKind::Unavailable,
            format!(
                "{} is skipped after {} faults in a row (circuit breaker open); it is tried again in {:.1}s",
                self.location,
                self.threshold,
                retry_in.as_secs_f64()
            ),
        )
        .set_temporary(true)
    }
}

/// Whether an error says something about the store as a whole (it is down, slow, refusing or
/// full), as opposed to one key or one item.
pub(crate) fn is_store_fault(error: &BackendError) -> bool {
    !matches!(
        error.kind(),
        ErrorKind::InvalidKey | ErrorKind::Unsupported | ErrorKind::TooLarge
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::report::Report;

    fn breaker(threshold: u32, cooldown: Duration) -> (Breaker, Arc<Mutex<Vec<Report>>>) {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let reporter = Reporter::new(move |r| sink.lock().unwrap().push(r.clone()));
        (
            Breaker::new(threshold, cooldown, reporter, "redis://u:secret@host/"),
            reports,
        )
    }

    fn down() -> BackendError {
        BackendError::new(ErrorKind::Unavailable, "connection refused")
    }

    #[test]
    fn opens_after_the_threshold_and_closes_on_success() {
        let (b, reports) = breaker(3, Duration::ZERO);
        b.fault(&down());
        b.fault(&down());
        assert_eq!(b.gate(), Gate::Closed);
        b.fault(&down());
        assert!(b.is_open());
        b.fault(&down());
        let warnings = reports.lock().unwrap().clone();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let Report::Warning(w) = &warnings[0] else {
            panic!("{warnings:?}")
        };
        assert!(w.contains("3 times") && !w.contains("secret"), "{w}");
        // Cool-down 0: the next call probes, the one after skips until the probe's outcome.
        assert_eq!(b.gate(), Gate::Probe);
        b.success();
        assert_eq!(b.gate(), Gate::Closed);
        assert_eq!(reports.lock().unwrap().len(), 2);
    }

    /// An error the store gives every operation opens the breaker at its first occurrence,
    /// with one warning that says so; the same kind of error about one item does not.
    #[test]
    fn an_error_of_the_whole_store_opens_it_at_once() {
        let refused =
            || BackendError::new(ErrorKind::PermissionDenied, "the index is not yours alone");
        let (b, reports) = breaker(5, Duration::from_secs(3600));
        b.fault(&refused());
        assert_eq!(
            b.gate(),
            Gate::Closed,
            "an item's refusal counts as one fault"
        );
        b.fault(&refused().set_whole_store(true));
        assert!(matches!(b.gate(), Gate::Open(_)));
        b.fault(&refused().set_whole_store(true));
        let warnings = reports.lock().unwrap().clone();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let Report::Warning(w) = &warnings[0] else {
            panic!("{warnings:?}")
        };
        assert!(w.contains("refuses every operation"), "{w}");
    }

    #[test]
    fn one_probe_per_cool_down_and_key_faults_do_not_count() {
        let (b, _) = breaker(1, Duration::from_secs(3600));
        b.fault(&BackendError::new(ErrorKind::InvalidKey, "bad key"));
        assert_eq!(b.gate(), Gate::Closed);
        b.fault(&down());
        assert!(matches!(b.gate(), Gate::Open(_)));
        let off = breaker(0, Duration::ZERO).0;
        for _ in 0..10 {
            off.fault(&down());
        }
        assert_eq!(off.gate(), Gate::Closed);
    }
}
