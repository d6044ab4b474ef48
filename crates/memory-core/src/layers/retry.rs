//! Retrying transient failures: [`Retry`] and its [`RetryPolicy`].

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::backend::{
    BackendResult, Blob, Capabilities, ClaimAttempt, DynBackend, GetOptions, GetResult, ItemInfo,
    Layer, PutOptions, PutOutcome, StoreBackend,
};
use crate::error::BackendError;
use crate::key::{Key, Prefix};
use crate::rt;

/// How [`Retry`] retries: how many times, and how long it waits in between.
///
/// The wait before the `n`-th retry is a random duration between zero and
/// `min(max_backoff_ms, initial_backoff_ms × 2ⁿ⁻¹)` milliseconds ("full jitter"), so that
/// clients that failed together do not come back together. No wait is longer than an hour,
/// whatever the policy says.
///
/// In a configuration file (every field optional; unknown fields are refused):
///
/// ```toml
/// max_retries = 3
/// initial_backoff_ms = 50
/// max_backoff_ms = 2000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// How many times a failed operation is tried again (so at most `max_retries + 1` attempts).
    /// Default 3; 0 turns retrying off.
    pub max_retries: u32,
    /// The bound of the first wait, in milliseconds; it doubles with each retry. Default 50.
    pub initial_backoff_ms: u64,
    /// The largest bound of a wait, in milliseconds. Default 2000.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff_ms: 50,
            max_backoff_ms: 2000,
        }
    }
}

impl RetryPolicy {
    /// The longest wait before retry number `retry` (1 for the first retry).
    fn bound(&self, retry: u32) -> Duration {
        let doubled = self.initial_backoff_ms.saturating_mul(
            1u64.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u64::MAX),
        );
        Duration::from_millis(doubled.min(self.max_backoff_ms).min(MAX_BACKOFF_MS))
    }
}

/// The longest wait between two attempts: an hour.
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// Retries operations that fail with a transient error ([`ErrorKind::is_usually_temporary`]:
/// `Unavailable`, `Timeout`), and only those.
///
/// - An error is retried when its kind is transient and the backend did not mark it permanent
///   ([`BackendError::is_temporary`]). Anything else (`PermissionDenied`, `InvalidKey`,
///   `TooLarge`, …) returns at once, after one attempt.
/// - After `max_retries` retries the last error is returned, marked permanent, so that another
///   retrying layer around this one does not multiply the attempts.
/// - Waits follow the [`RetryPolicy`]: exponential backoff with full jitter. Each retry is
///   logged at debug level (target `cachette`) with the attempt number and the error.
/// - Waiting works wherever the operation runs: for a backend with
///   [`Capabilities::blocking_io`] the calling thread sleeps (its futures run synchronously
///   anyway); for other backends the wait is a timer on the core's I/O runtime
///   ([`rt::io_runtime`]), awaited from whatever runtime (or none) polls the operation.
/// - Every operation is retried, writes included: a [`Blob`] is a cheap clone of shared
///   buffers, so it can be sent again. Two consequences of retrying writes: a `put_if_absent`
///   whose first attempt created the item but whose answer was lost reports
///   [`PutOutcome::AlreadyExists`] on the retry.
///
/// [`ErrorKind::is_usually_temporary`]: crate::error::ErrorKind::is_usually_temporary
#[derive(Debug)]
pub struct Retry {
    inner: DynBackend,
    policy: RetryPolicy,
}

/// The [`Layer`] of [`Retry`].
#[derive(Debug, Clone, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// Retries as `policy` says.
    pub fn new(policy: RetryPolicy) -> RetryLayer {
        RetryLayer { policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl Layer for RetryLayer {
    fn layer(&self, inner: DynBackend) -> Result<DynBackend, BackendError> {
        Ok(std::sync::Arc::new(Retry::new(inner, self.policy.clone())))
    }
}

impl Retry {
    /// Wraps `inner`, retrying as `policy` says.
    pub fn new(inner: DynBackend, policy: RetryPolicy) -> Retry {
        Retry { inner, policy }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        target: &(dyn fmt::Display + Sync),
        mut attempt: F,
    ) -> BackendResult<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = BackendResult<T>> + Send,
    {
        let mut retries = 0u32;
        loop {
            let err = match attempt().await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if !is_transient(&err) {
                return Err(err);
            }
            if retries >= self.policy.max_retries {
                return Err(err.set_temporary(false));
            }
            retries += 1;
            let delay = jitter(self.policy.bound(retries));
            tracing::debug!(
                target: "cachette",
                "{} {operation} {target}: attempt {retries} of {} failed ({err}); retrying in {delay:?}",
                self.inner.scheme(),
                self.policy.max_retries.saturating_add(1),
            );
            self.pause(delay).await;
        }
    }

    /// Waits `delay` in a way that works where the inner backend's futures run.
    async fn pause(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        if !self.inner.capabilities().blocking_io
            && let Ok(io) = rt::io_handle()
            // The timer is made inside the task: a timer belongs to the runtime it is made on,
            // and the caller's runtime (if any) may have none.
            && io
                .spawn(async move { tokio::time::sleep(delay).await })
                .await
                .is_ok()
        {
            return;
        }
        std::thread::sleep(delay);
    }
}

/// Whether a retry may succeed: a transient kind the backend did not mark permanent.
fn is_transient(err: &BackendError) -> bool {
    err.kind().is_usually_temporary() && err.is_temporary()
}

/// A random duration between zero and `bound` (both included).
fn jitter(bound: Duration) -> Duration {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let random = RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    let scaled = (u128::from(random) * (u128::from(nanos) + 1)) >> 64;
    Duration::from_nanos(u64::try_from(scaled).unwrap_or(nanos))
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl StoreBackend for Retry {
    fn scheme(&self) -> &'static str {
        self.inner.scheme()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        self.run("get", key, || self.inner.get_opts(key, options.clone()))
            .await
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.run("put", key, || {
            self.inner.put_opts(key, value.clone(), options.clone())
        })
        .await
    }

    /// One attempt without a future; a transient error leaves the read to `get_opts`, which
    /// retries it (a read may be repeated).
    /// A claim that fails is not retried: the core then computes without one.
    fn try_claim(&self, key: &Key) -> Option<BackendResult<ClaimAttempt>> {
        self.inner.try_claim(key)
    }

    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        match self.inner.get_now(key, options)? {
            Err(err) if is_transient(&err) => None,
            answer => Some(answer),
        }
    }

    async fn put_then_delete(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
        delete: &Key,
    ) -> BackendResult<PutOutcome> {
        self.run("put", key, || {
            self.inner
                .put_then_delete(key, value.clone(), options.clone(), delete)
        })
        .await
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let count = Keys(keys.len());
        self.run("delete_many", &count, || self.inner.delete_many(keys))
            .await
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.run("list", prefix, || self.inner.list(prefix)).await
    }

    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        self.run("sweep", prefix, || self.inner.sweep(prefix)).await
    }
}

/// How a batch of keys is named in logs.
struct Keys(usize);

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({} keys)", self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::StoreBackendExt;
    use crate::error::ErrorKind;
    use crate::layers::flaky::Flaky;
    use crate::memory_backend::InMemoryBackend;
    use bytes::Bytes;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff_ms: 1,
            max_backoff_ms: 1,
        }
    }

    fn key() -> Key {
        Key::new("f/k").unwrap()
    }

    /// An in-memory store holding `f/k`, behind a fault injector.
    fn failing(kind: ErrorKind, failures: u32) -> Arc<Flaky> {
        let store = InMemoryBackend::new();
        futures::executor::block_on(store.put(&key(), Bytes::from_static(b"v").into())).unwrap();
        let flaky = Arc::new(Flaky::new(Arc::new(store), kind));
        flaky.fail_next(failures);
        flaky
    }

    #[test]
    fn policy_defaults_and_config() {
        let policy = RetryPolicy::default();
        assert_eq!(
            (
                policy.max_retries,
                policy.initial_backoff_ms,
                policy.max_backoff_ms
            ),
            (3, 50, 2000)
        );
        let parsed: RetryPolicy = toml::from_str("max_retries = 5").unwrap();
        assert_eq!(
            parsed,
            RetryPolicy {
                max_retries: 5,
                ..RetryPolicy::default()
            }
        );
        assert!(toml::from_str::<RetryPolicy>("max_retry = 5").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let bounds: Vec<u128> = (1..=8).map(|n| policy.bound(n).as_millis()).collect();
        assert_eq!(bounds, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(policy.bound(200), Duration::from_millis(2000));
        // A policy of waits for ever waits an hour at most.
        let endless = RetryPolicy {
            max_retries: u32::MAX,
            initial_backoff_ms: u64::MAX,
            max_backoff_ms: u64::MAX,
        };
        for n in [1, 2, 64, u32::MAX] {
            assert_eq!(endless.bound(n), Duration::from_secs(3600), "{n}");
        }
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(5)) <= Duration::from_millis(5));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        for kind in [ErrorKind::Unavailable, ErrorKind::Timeout] {
            let flaky = failing(kind, 2);
            let retry = Retry::new(flaky.clone(), fast());
            let got = futures::executor::block_on(retry.get(&key())).unwrap();
            assert_eq!(got.as_deref(), Some(&b"v"[..]), "{kind}");
            assert_eq!(flaky.calls(), 3, "{kind}");
        }
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        for kind in [
            ErrorKind::PermissionDenied,
            ErrorKind::InvalidKey,
            ErrorKind::TooLarge,
            ErrorKind::Other,
        ] {
            let flaky = failing(kind, 1);
            let retry = Retry::new(flaky.clone(), fast());
            let err = futures::executor::block_on(retry.get(&key())).unwrap_err();
            assert_eq!(err.kind(), kind);
            assert_eq!(flaky.calls(), 1, "{kind}");
        }
    }

    #[test]
    fn transient_errors_marked_permanent_are_not_retried() {
        let flaky = failing(ErrorKind::Unavailable, 1);
        flaky.mark_permanent();
        let retry = Retry::new(flaky.clone(), fast());
        let err = futures::executor::block_on(retry.get(&key())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(flaky.calls(), 1);
    }

    #[test]
    fn retries_are_bounded() {
        let flaky = failing(ErrorKind::Timeout, 10);
        let retry = Retry::new(flaky.clone(), fast());
        let err = futures::executor::block_on(retry.get(&key())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(!err.is_temporary(), "the final error is marked permanent");
        assert_eq!(flaky.calls(), 4);

        let flaky = failing(ErrorKind::Timeout, 10);
        let none = RetryPolicy {
            max_retries: 0,
            ..fast()
        };
        let retry = Retry::new(flaky.clone(), none);
        futures::executor::block_on(retry.get(&key())).unwrap_err();
        assert_eq!(flaky.calls(), 1);
    }

    #[test]
    fn writes_are_resent_whole() {
        let flaky = failing(ErrorKind::Unavailable, 2);
        flaky.only(&["put", "put_if_absent"]);
        let retry = Retry::new(flaky.clone(), fast());
        let value: Blob = [Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]
            .into_iter()
            .collect();
        let k = Key::new("f/new").unwrap();
        futures::executor::block_on(retry.put(&k, value.clone())).unwrap();
        assert_eq!(flaky.calls(), 3);
        let got = futures::executor::block_on(retry.get(&k)).unwrap();
        assert_eq!(got.as_deref(), Some(&b"abcd"[..]));

        flaky.fail_next(1);
        let k = Key::new("f/created").unwrap();
        let outcome = futures::executor::block_on(retry.put_if_absent(&k, value)).unwrap();
        assert_eq!(outcome, PutOutcome::Created);
        assert_eq!(flaky.calls(), 5);
    }

    /// A network backend's retries wait on the I/O runtime's timer: from a plain thread through
    /// `rt::block_on`, and from a runtime that has no timer of its own.
    #[test]
    fn waits_work_from_sync_and_async_callers() {
        let flaky = failing(ErrorKind::Unavailable, 2);
        flaky.network();
        let retry: DynBackend = Arc::new(Retry::new(flaky.clone(), fast()));
        assert!(!retry.capabilities().blocking_io);
        let got = rt::block_on(false, retry.get(&key())).unwrap().unwrap();
        assert_eq!(got.as_deref(), Some(&b"v"[..]));
        assert_eq!(flaky.calls(), 3);

        flaky.fail_next(2);
        let no_timer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = no_timer.block_on(retry.get(&key())).unwrap();
        assert_eq!(got.as_deref(), Some(&b"v"[..]));
        assert_eq!(flaky.calls(), 6);
    }

    #[cfg(feature = "testkit")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance() {
        let retry = Retry::new(Arc::new(InMemoryBackend::new()), RetryPolicy::default());
        crate::testkit::run_all(Arc::new(retry)).await;
    }
}
