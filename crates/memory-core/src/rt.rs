//! Bridging synchronous callers and async backends.
//!
//! Backends are async. A synchronous call (the usual case for a memoized `fn`) drives their
//! futures here:
//!
//! - backends with [`Capabilities::blocking_io`](crate::Capabilities::blocking_io) (the local
//!   disk, memory) are polled on the calling thread: no runtime, no thread hop;
//! - network backends run on a small process-wide runtime, `cachette-io` (two worker threads),
//!   which also owns their connections, so that they outlive any caller's runtime. From a plain
//!   thread the caller blocks on it; from inside a multi-thread tokio runtime it uses
//!   `block_in_place`; from inside a current-thread runtime it waits on a scoped helper thread.
//!   None of these panics.
//!
//! Async callers await network backends directly and run blocking-I/O backends on tokio's
//! blocking pool, so that a memoized `async fn` never blocks its runtime.

use std::future::Future;
use std::sync::OnceLock;

use futures::future::BoxFuture;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::backend::{BackendResult, DynBackend, StoreBackend};
use crate::error::{BackendError, ErrorKind};

static IO_RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The process-wide runtime that network backends run their I/O on.
pub fn io_runtime() -> BackendResult<&'static Runtime> {
    IO_RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("cachette-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            BackendError::new(
                ErrorKind::Unavailable,
                format!("cannot start the cachette-io runtime: {e}"),
            )
        })
}

/// A handle of [`io_runtime`], for backends that spawn connection tasks.
pub fn io_handle() -> BackendResult<Handle> {
    io_runtime().map(|rt| rt.handle().clone())
}

/// Runs a future to completion from synchronous code, wherever that code runs (see the module
/// docs). `blocking_io` says the future never waits on a reactor.
pub fn block_on<F>(blocking_io: bool, fut: F) -> BackendResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    if blocking_io {
        // Ready at its first poll (it does its I/O when polled): no executor to set up.
        return Ok(crate::reach::finish(fut));
    }
    let io = io_runtime()?;
    match Handle::try_current() {
        Err(_) => Ok(io.block_on(fut)),
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| io.block_on(fut)))
        }
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| io.block_on(fut))
                .join()
                .map_err(|_| BackendError::new(ErrorKind::Other, "the I/O helper thread panicked"))
        }),
    }
}

/// Runs a backend operation from async code without blocking the runtime: network backends are
/// awaited directly, blocking-I/O backends go to the blocking pool.
pub(crate) async fn offload<T, F>(
    backend: &DynBackend,
    blocking_io: bool,
    op: F,
) -> BackendResult<T>
where
    T: Send + 'static,
    F: for<'a> FnOnce(&'a dyn StoreBackend) -> BoxFuture<'a, T> + Send + 'static,
{
    if !blocking_io {
        return Ok(op(&**backend).await);
    }
    if Handle::try_current().is_err() {
        return Ok(op(&**backend).await);
    }
    let backend = backend.clone();
    tokio::task::spawn_blocking(move || futures::executor::block_on(op(&*backend)))
        .await
        .map_err(|e| BackendError::new(ErrorKind::Other, format!("blocking I/O task failed: {e}")))
}

/// Sleeps without blocking the caller's runtime, whatever it is: the timer runs on the
/// library's I/O runtime (or, without one, on a thread of its own).
pub(crate) async fn pause_async(duration: std::time::Duration) {
    /// Stops the timer task when the pause is abandoned.
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    match io_handle() {
        Ok(handle) => {
            let mut timer = Abort(handle.spawn(tokio::time::sleep(duration)));
            let _ = (&mut timer.0).await;
        }
        Err(_) => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                std::thread::sleep(duration);
                let _ = tx.send(());
            });
            let _ = rx.await;
        }
    }
}
