//! Backpressure: the replies by which Redis refuses a command *for now* (`BUSY`, `LOADING`,
//! `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, and on a cluster `MOVED`/`ASK` that outlast the
//! client's own redirections) are retried here, with jittered exponential backoff, for at most
//! `retry_busy_ms` in all; then the refusal is returned as a temporary error
//! (`ErrorKind::Unavailable`) for the caller's fault policy.
//!
//! Retrying is safe: a refused command was not run. The backend also sends nothing that would
//! be wrong to run twice when a pipeline is refused part-way (its pipelines are reads and
//! idempotent writes of an item's record), so a pipeline with one refused reply is sent again
//! whole.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use redis::{RedisError, Value};

/// The first wait after a refusal.
const FIRST_WAIT: Duration = Duration::from_millis(10);
/// The longest single wait.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Whether a server error code is a refusal for now. `MOVED` and `ASK` count on a cluster
/// only (on a single server they mean it is a cluster node: retrying cannot help).
pub(crate) fn busy_code(code: &str, cluster: bool) -> bool {
    matches!(
        code,
        "BUSY" | "LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN"
    ) || (cluster && matches!(code, "MOVED" | "ASK"))
}

/// Whether an error is (or, for a pipeline or a transaction, holds) a refusal for now.
pub(crate) fn is_busy(err: &RedisError, cluster: bool) -> bool {
    if err.code().is_some_and(|code| busy_code(code, cluster)) {
        return true;
    }
    err.clone()
        .into_server_errors()
        .is_some_and(|errors| errors.iter().any(|(_, e)| busy_code(e.code(), cluster)))
}

/// Whether a reply is, or holds, a refusal for now (pipelines whose errors are kept as
/// values).
pub(crate) fn busy_value(value: &Value, cluster: bool) -> bool {
    match value {
        Value::ServerError(e) => busy_code(e.code(), cluster),
        Value::Array(items) => items.iter().any(|v| busy_value(v, cluster)),
        _ => false,
    }
}

/// Whether a result is a refusal for now, or holds one.
pub(crate) fn busy_result<T: AsValues>(result: &Result<T, RedisError>, cluster: bool) -> bool {
    match result {
        Err(e) => is_busy(e, cluster),
        Ok(v) => v.values().iter().any(|v| busy_value(v, cluster)),
    }
}

/// Replies that may hold refusals.
pub(crate) trait AsValues {
    fn values(&self) -> &[Value];
}

impl AsValues for Value {
    fn values(&self) -> &[Value] {
        std::slice::from_ref(self)
    }
}

impl AsValues for Vec<Value> {
    fn values(&self) -> &[Value] {
        self
    }
}

/// The waits of one command's retries: jittered, doubling from [`FIRST_WAIT`] up to
/// [`MAX_WAIT`], and none once `budget` has passed since the first refusal.
#[derive(Debug)]
pub(crate) struct Backoff {
    budget: Duration,
    deadline: Option<Instant>,
    next: Duration,
    /// Refusals met so far.
    pub(crate) refusals: u32,
}

impl Backoff {
    pub(crate) fn new(budget: Duration) -> Self {
        Backoff {
            budget,
            deadline: None,
            next: FIRST_WAIT,
            refusals: 0,
        }
    }

    /// How long to wait before the next attempt after a refusal, or `None` when the budget is
    /// spent (the refusal is then returned).
    pub(crate) fn wait(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let deadline = *self.deadline.get_or_insert(now + self.budget);
        self.refusals += 1;
        let left = deadline
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())?;
        let base = self.next;
        self.next = (self.next * 2).min(MAX_WAIT);
        // Full jitter over the upper half: between base/2 and base.
        let half = base / 2;
        let jitter = Duration::from_nanos(random() % (half.as_nanos() as u64 + 1));
        Some((half + jitter).min(left))
    }

    /// Logs a refusal that was overcome, or the one returned.
    pub(crate) fn report(&self, gave_up: bool) {
        if self.refusals == 0 {
            return;
        }
        if gave_up {
            tracing::debug!(
                target: "cachette",
                "redis: the server refused a command {} times for now (busy, loading, failing over, resharding); gave up after {} ms",
                self.refusals,
                self.budget.as_millis()
            );
        } else {
            tracing::trace!(
                target: "cachette",
                "redis: the server refused a command {} times for now before running it",
                self.refusals
            );
        }
    }
}

/// A random number: the std hasher's keys are random per process and per `RandomState`.
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_recognised() {
        for code in ["BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN"] {
            assert!(busy_code(code, false) && busy_code(code, true), "{code}");
        }
        for code in ["MOVED", "ASK"] {
            assert!(!busy_code(code, false) && busy_code(code, true), "{code}");
        }
        for code in ["ERR", "WRONGTYPE", "OOM", "NOSCRIPT", "BUSYKEY", "NOAUTH"] {
            assert!(!busy_code(code, true), "{code}");
        }
        let parse = |reply: &[u8]| redis::parse_redis_value(reply).unwrap();
        let busy = parse(b"-BUSY Redis is busy running a script.\r\n");
        assert!(busy_value(&busy, false));
        let loading = parse(b"-LOADING Redis is loading the dataset in memory\r\n");
        assert!(busy_value(&loading, false));
        let err = loading.clone().extract_error().unwrap_err();
        assert!(is_busy(&err, false), "{err:?}");
        let wrong = parse(b"-WRONGTYPE Operation against a key holding the wrong kind\r\n");
        assert!(!busy_value(&wrong, true));
        assert!(busy_value(
            &Value::Array(vec![Value::Nil, busy.clone()]),
            false
        ));
        assert!(busy_result::<Vec<Value>>(
            &Ok(vec![Value::Okay, busy]),
            false
        ));
        assert!(!busy_result::<Vec<Value>>(
            &Ok(vec![Value::Okay, wrong]),
            false
        ));
    }

    #[test]
    fn waits_grow_and_stop_at_the_budget() {
        let mut backoff = Backoff::new(Duration::from_millis(300));
        let mut total = Duration::ZERO;
        let mut waits = Vec::new();
        while let Some(wait) = backoff.wait() {
            assert!(wait <= MAX_WAIT);
            total += wait;
            waits.push(wait);
            std::thread::sleep(wait);
            assert!(waits.len() < 100, "{waits:?}");
        }
        assert!(
            waits[0] <= FIRST_WAIT && waits[0] >= FIRST_WAIT / 2,
            "{waits:?}"
        );
        assert!(total <= Duration::from_millis(300), "{waits:?}");
        assert!(total >= Duration::from_millis(150), "{waits:?}");
        let mut none = Backoff::new(Duration::ZERO);
        assert_eq!(none.wait(), None);
    }
}
