//! A fault injector for the layers' tests: wraps a backend and fails chosen operations on
//! demand, counting the calls it sees. It injects faults into the layer under test; it is not a
//! stand-in for a real backend.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use async_trait::async_trait;

use crate::backend::{
    BackendResult, Blob, Capabilities, ClaimAttempt, DynBackend, GetOptions, GetResult, ItemInfo,
    PutMode, PutOptions, PutOutcome, StoreBackend,
};
use crate::error::{BackendError, ErrorKind};
use crate::key::{Key, Prefix};

/// Fails the next [`fail_next`](Flaky::fail_next) calls of the selected operations with `kind`.
#[derive(Debug)]
pub(crate) struct Flaky {
    inner: DynBackend,
    kind: ErrorKind,
    /// How many of the next selected calls fail; `u32::MAX` for all of them.
    fail_next: AtomicU32,
    /// Calls of the selected operations so far.
    calls: AtomicU32,
    /// The operations affected; every one when empty.
    only: Mutex<Vec<&'static str>>,
    permanent: AtomicBool,
    network: AtomicBool,
}

impl Flaky {
    /// Forwards everything to `inner` until told to fail.
    pub(crate) fn new(inner: DynBackend, kind: ErrorKind) -> Flaky {
        Flaky {
            inner,
            kind,
            fail_next: AtomicU32::new(0),
            calls: AtomicU32::new(0),
            only: Mutex::new(Vec::new()),
            permanent: AtomicBool::new(false),
            network: AtomicBool::new(false),
        }
    }

    /// Fails the next `n` selected calls (`u32::MAX`: every one from now on).
    pub(crate) fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Affects only these operations (and counts only their calls).
    pub(crate) fn only(&self, operations: &[&'static str]) {
        *self.only.lock().unwrap() = operations.to_vec();
    }

    /// Marks the injected errors permanent, whatever their kind.
    pub(crate) fn mark_permanent(&self) {
        self.permanent.store(true, Ordering::SeqCst);
    }

    /// Declares the backend a network one (not [`Capabilities::blocking_io`]).
    pub(crate) fn network(&self) {
        self.network.store(true, Ordering::SeqCst);
    }

    /// Calls of the selected operations so far.
    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn inject(&self, operation: &'static str) -> BackendResult<()> {
        let only = self.only.lock().unwrap();
        if !only.is_empty() && !only.contains(&operation) {
            return Ok(());
        }
        drop(only);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if !failing {
            return Ok(());
        }
        let mut err = BackendError::new(self.kind, "injected fault")
            .with_backend("flaky")
            .with_operation(operation);
        if self.permanent.load(Ordering::SeqCst) {
            err = err.set_temporary(false);
        }
        Err(err)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl StoreBackend for Flaky {
    fn scheme(&self) -> &'static str {
        self.inner.scheme()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        if self.network.load(Ordering::SeqCst) {
            caps.blocking_io = false;
        }
        caps
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        self.inject(if options.head {
            "contains"
        } else if options.range.is_some() {
            "get_range"
        } else {
            "get"
        })?;
        self.inner.get_opts(key, options).await
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.inject(match options.mode {
            PutMode::Create => "put_if_absent",
            _ => "put",
        })?;
        self.inner.put_opts(key, value, options).await
    }

    /// Claims through the inner store's locks, with the faults of a create.
    fn try_claim(&self, key: &Key) -> Option<BackendResult<ClaimAttempt>> {
        let attempt = self.inner.try_claim(key)?;
        Some(self.inject("put_if_absent").and(attempt))
    }

    /// Reads the usual way, where faults are injected.
    fn get_now(
        &self,
        _key: &Key,
        _options: &GetOptions,
    ) -> Option<BackendResult<Option<GetResult>>> {
        None
    }

    async fn put_then_delete(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
        delete: &Key,
    ) -> BackendResult<PutOutcome> {
        self.inject(match options.mode {
            PutMode::Create => "put_if_absent",
            _ => "put",
        })?;
        self.inner
            .put_then_delete(key, value, options, delete)
            .await
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        self.inject("delete_many")?;
        self.inner.delete_many(keys).await
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.inject("list")?;
        self.inner.list(prefix).await
    }

    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        self.inject("sweep")?;
        self.inner.sweep(prefix).await
    }
}
