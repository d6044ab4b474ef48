//! A store behind a switch: an in-memory store whose operations all fail, or hang, or refuse
//! writes, as the test sets it, counting the operations that reach it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use cachette::plugin::{
    BackendError, BackendResult, Blob, Capabilities, ErrorKind, GetOptions, GetResult,
    InMemoryBackend, ItemInfo, Key, Prefix, PutOptions, PutOutcome, StoreBackend, async_trait,
};

pub(crate) const UP: u8 = 0;
/// Every operation fails at once (connection refused).
pub(crate) const DOWN: u8 = 1;
/// Every operation waits, then times out.
pub(crate) const HUNG: u8 = 2;
/// Reads work, writes are refused.
pub(crate) const READ_ONLY: u8 = 3;

/// An in-memory store behind a switch, counting the operations that reach it.
#[derive(Debug)]
pub(crate) struct Switch {
    pub(crate) inner: InMemoryBackend,
    state: AtomicU8,
    operations: AtomicUsize,
}

impl Switch {
    pub(crate) fn new() -> Arc<Switch> {
        Arc::new(Switch {
            inner: InMemoryBackend::new(),
            state: AtomicU8::new(UP),
            operations: AtomicUsize::new(0),
        })
    }

    pub(crate) fn set(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
    }

    pub(crate) fn operations(&self) -> usize {
        self.operations.load(Ordering::SeqCst)
    }

    fn enter(&self, write: bool) -> BackendResult<()> {
        self.operations.fetch_add(1, Ordering::SeqCst);
        match self.state.load(Ordering::SeqCst) {
            DOWN => Err(BackendError::new(
                ErrorKind::Unavailable,
                format!("connection refused\n<html>{}</html>", "x".repeat(5000)),
            )),
            HUNG => {
                std::thread::sleep(Duration::from_millis(20));
                Err(BackendError::new(
                    ErrorKind::Timeout,
                    "no answer within 20ms",
                ))
            }
            READ_ONLY if write => Err(BackendError::new(
                ErrorKind::PermissionDenied,
                "read-only file system",
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl StoreBackend for Switch {
    fn scheme(&self) -> &'static str {
        "switch"
    }

    fn location(&self) -> String {
        "switch://test".into()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        self.enter(false)?;
        self.inner.get_opts(key, options).await
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.enter(true)?;
        self.inner.put_opts(key, value, options).await
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        self.enter(true)?;
        self.inner.delete_many(keys).await
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.enter(false)?;
        self.inner.list(prefix).await
    }
}
