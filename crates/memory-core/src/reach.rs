//! How a call reaches the store: by blocking its thread, or by awaiting in its task.
//!
//! The steps of a call (lookup, miss, shelving, forced runs), the entry store's operations and
//! compute-once's claims are written once, as async functions taking a [`Reach`]. Synchronous
//! methods run them with [`Reach::Blocking`], whose store operations block the calling thread
//! (through [`rt::block_on`]) and so never leave the future pending; [`finish`] then completes
//! them on the caller's thread. Async methods await them with [`Reach::Task`], whose operations
//! never block the runtime. A store operation goes `MemorizedFunc` → `EntryStore` → `rt`.
//!
//! One step has a synchronous twin: a blocking lookup is begun without a future as far as its
//! first read, when its backend answers now (`Call::begin_now`), so that a small hit makes none.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::backend::{BackendResult, DynBackend, StoreBackend};
use crate::rt;

/// How a call reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The caller's thread blocks on each operation (synchronous methods).
    Blocking,
    /// The caller's task awaits each operation (async methods).
    Task,
}

impl Reach {
    /// Runs one operation of `backend` (whose futures do blocking I/O when `blocking_io`): on
    /// this thread, or without blocking the caller's runtime.
    pub(crate) async fn run<T, F>(
        self,
        backend: &DynBackend,
        blocking_io: bool,
        op: F,
    ) -> BackendResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a dyn StoreBackend) -> BoxFuture<'a, BackendResult<T>> + Send + 'static,
    {
        match self {
            Reach::Blocking => rt::block_on(blocking_io, op(&**backend))?,
            Reach::Task => rt::offload(backend, blocking_io, op).await?,
        }
    }

    /// Sleeps: the thread for a blocking caller, the task (never the runtime) for an async one.
    pub(crate) async fn pause(self, duration: Duration) {
        match self {
            Reach::Blocking => std::thread::sleep(duration),
            Reach::Task => rt::pause_async(duration).await,
        }
    }
}

/// Completes, on this thread, a future driven with [`Reach::Blocking`]. Such a future does not
/// wait on any reactor, so its first poll completes it; should it ever be pending, the thread
/// parks until it is woken.
pub(crate) fn finish<F: Future>(future: F) -> F::Output {
    finish_pinned(pin!(future))
}

/// [`finish`] of a future pinned where its caller made it: a call's lookup is a large future,
/// and moving it into [`finish`] cost a hit more than a hundred instructions of copying.
pub(crate) fn finish_pinned<F: Future>(mut future: Pin<&mut F>) -> F::Output {
    #[cfg(test)]
    FINISHED.set(FINISHED.get() + 1);
    if let Poll::Ready(out) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return out;
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
thread_local! {
    /// The futures [`finish_pinned`] completed on this thread.
    pub(crate) static FINISHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_completes_ready_and_woken_futures() {
        assert_eq!(finish(async { 7 }), 7);
        // A future pending once, woken from another thread.
        let (tx, rx) = futures::channel::oneshot::channel();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(5).unwrap();
        });
        assert_eq!(finish(rx), Ok(5));
        waker.join().unwrap();
    }
}
