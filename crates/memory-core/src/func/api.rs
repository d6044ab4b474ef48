//! The public entry points of a memoized function, and [`Memory::cache`].

use std::convert::Infallible;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{Begun, Call, Stored, unstored_metadata};
use std::sync::atomic::AtomicBool;

use super::faults::{Failed, Faults, Lenient, Strictness, store};
use super::{FuncId, MemorizedFunc, TakesArgs};
use crate::entry::Metadata;
use crate::error::{CallError, Error, Result};
use crate::memory::Memory;
use crate::reach::{Reach, finish, finish_pinned};
use crate::result::{NotMemorizedResult, Shelved};

/// The message of the compile-time refusal of closures that capture values.
macro_rules! captures_refused {
    () => {
        "this closure captures values (or is a reference or a pointer to a function), and what it captures would not be part of the cache key: pass them as arguments, or use `Memory::cache_with(state, f)` to make them part of the key, or `Memory::cache_capturing(f)` if they cannot change the result (a counter, a logger); pass a function itself, not a reference to it"
    };
}

impl Memory {
    /// Memoizes a function or closure taking one argument (use a tuple for several). Call it
    /// with [`MemorizedFunc::eval`].
    ///
    /// A function item is identified by its path (`my_crate::module::name`). A closure is
    /// identified by its enclosing function and the place of this call in the source: an edit
    /// of its body that keeps it at the same place is not seen. Give it a stable name with
    /// [`MemorizedFunc::name`] and a [`MemorizedFunc::version`] that you change with its body,
    /// or write it with the `cachette::cache!` macro, which hashes its tokens.
    ///
    /// A closure that captures values does not compile here: what it captures is not part of
    /// the key, so a closure built with `k = 1` and then with `k = 100` would share results.
    /// Pass such values as arguments, or use [`cache_with`](Self::cache_with) (they become
    /// part of the key) or [`cache_capturing`](Self::cache_capturing) (they cannot change the
    /// result).
    ///
    /// ```compile_fail
    /// # let memory = cachette_core::Memory::disabled();
    /// let k = 100;
    /// let scaled = memory.cache(|x: u64| x * k); // refused: `k` would not be in the key
    /// ```
    #[track_caller]
    pub fn cache<A, R, F>(&self, f: F) -> MemorizedFunc<R, F>
    where
        F: Fn(A) -> R,
    {
        const { assert!(size_of::<F>() == 0, captures_refused!()) };
        let id = FuncId::of_callable::<F>(std::panic::Location::caller(), &typeid::of::<F>());
        MemorizedFunc::with_function(self, id, f)
    }

    /// Memoizes a function of `state` and one argument: the state is hashed into every key, as
    /// joblib hashes the bound arguments of a `functools.partial`, so functions built with
    /// different states never share results.
    ///
    /// ```
    /// # let memory = cachette_core::Memory::from_url("memory://cache-with-doc").unwrap();
    /// let by_1 = memory.cache_with(1u64, |k: &u64, x: u64| x * k);
    /// let by_100 = memory.cache_with(100u64, |k: &u64, x: u64| x * k);
    /// assert_eq!(by_1.eval(7), 7);
    /// assert_eq!(by_100.eval(7), 700);
    /// ```
    #[track_caller]
    pub fn cache_with<S, A, R, F>(&self, state: S, f: F) -> MemorizedFunc<R, impl Fn(A) -> R>
    where
        S: Serialize,
        F: Fn(&S, A) -> R,
    {
        const { assert!(size_of::<F>() == 0, captures_refused!()) };
        let id = FuncId::of_callable::<F>(std::panic::Location::caller(), &typeid::of::<F>());
        // With the memory's own algorithm: keyed, with hardened keys.
        let salt = match self.shared() {
            Some(shared) => cachette_hashing::hash_with(&*shared.hasher, &state),
            None => cachette_hashing::hash(&state),
        }
        .map_err(|e| e.to_string());
        let readable = cachette_hashing::readable(&state, super::call::READABLE_ARG_LEN);
        MemorizedFunc::with_function(self, id, move |a: A| f(&state, a)).salted(salt, readable)
    }

    /// Memoizes a function pointer: it captures nothing, and its type can be named, for a
    /// struct that holds the memoized function (`MemorizedFunc<R, fn(A) -> R>`). It is
    /// identified like a closure, by where this is called, not by the function it points to:
    /// give it a name with [`MemorizedFunc::name`] when this place memoizes more than one
    /// function. (A second function memoized at one place in a process runs without the
    /// cache, with a warning; in two processes, unnamed, they would share results.)
    #[track_caller]
    pub fn cache_fn<A, R>(&self, f: fn(A) -> R) -> MemorizedFunc<R, fn(A) -> R> {
        let which = f as *const ();
        let id = FuncId::of_callable::<fn(A) -> R>(std::panic::Location::caller(), &which);
        MemorizedFunc::with_function(self, id, f)
    }

    /// Memoizes a closure whose captured values cannot change its result (a counter of calls,
    /// a logger, a progress bar): they are not part of the key. The caller answers for that;
    /// a capture that changes the result makes calls return each other's results.
    #[track_caller]
    pub fn cache_capturing<A, R, F>(&self, f: F) -> MemorizedFunc<R, F>
    where
        F: Fn(A) -> R,
    {
        let id = FuncId::of_callable::<F>(std::panic::Location::caller(), &typeid::of::<F>());
        MemorizedFunc::with_function(self, id, f)
    }

    /// Runs `f(args)` in the context of this memory: the function runs only if its result is
    /// not stored yet (joblib's `Memory.eval`). `f` captures nothing (see
    /// [`cache`](Self::cache)).
    #[track_caller]
    pub fn eval<A, R, F>(&self, f: F, args: A) -> R
    where
        F: Fn(A) -> R,
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        const { assert!(size_of::<F>() == 0, captures_refused!()) };
        let id = FuncId::of_callable::<F>(std::panic::Location::caller(), &typeid::of::<F>());
        MemorizedFunc::with_function(self, id, f).eval(args)
    }

    /// [`eval`](Self::eval), with the faults of the store as errors in
    /// [strict mode](crate::MemoryBuilder::strict).
    #[track_caller]
    pub fn try_eval<A, R, F>(&self, f: F, args: A) -> Result<R>
    where
        F: Fn(A) -> R,
        A: Serialize,
        R: Serialize + DeserializeOwned,
    {
        const { assert!(size_of::<F>() == 0, captures_refused!()) };
        let id = FuncId::of_callable::<F>(std::panic::Location::caller(), &typeid::of::<F>());
        MemorizedFunc::with_function(self, id, f).try_eval(args)
    }
}

impl<R, F> MemorizedFunc<R, F> {
    /// The context of a call reaching the store as `reach` says; `None` for a disabled memory.
    pub(super) fn context(&self, reach: Reach) -> Option<Call<'_, R, F>> {
        self.memory.shared().map(|shared| Call {
            func: self,
            shared,
            reach,
            warned: AtomicBool::new(false),
            gave_up: AtomicBool::new(false),
            memo_ticket: None,
        })
    }

    /// The policy the `try_` methods follow.
    fn faults(&self) -> Strictness {
        Strictness {
            strict: self.is_strict(),
        }
    }

    /// Deletes every stored result of this function.
    pub fn clear(&self) -> Result<(), Error> {
        match self.context(Reach::Blocking) {
            Some(call) => finish(call.clear()),
            None => Ok(()),
        }
    }

    /// [`clear`](Self::clear), for async callers.
    pub async fn clear_async(&self) -> Result<(), Error> {
        match self.context(Reach::Task) {
            Some(call) => call.clear().await,
            None => Ok(()),
        }
    }

    /// Whether a call with these arguments would load a stored result, without running the
    /// function or loading the output (only the entry's metadata is read, to apply the
    /// validation). Faults of the store count as "not cached" and log a warning.
    pub fn check_call_in_cache<A>(&self, args: &A) -> bool
    where
        A: Serialize,
        F: TakesArgs<A>,
    {
        match self.context(Reach::Blocking) {
            Some(call) => finish(call.check_cached(args)),
            None => false,
        }
    }

    /// [`check_call_in_cache`](Self::check_call_in_cache), for async callers.
    pub async fn check_call_in_cache_async<A>(&self, args: &A) -> bool
    where
        A: Serialize,
        F: TakesArgs<A>,
    {
        match self.context(Reach::Task) {
            Some(call) => call.check_cached(args).await,
            None => false,
        }
    }
}

impl<R, F> MemorizedFunc<R, F>
where
    R: Serialize + DeserializeOwned,
{
    /// Calls the function, or loads its stored result for these arguments.
    pub fn eval<A>(&self, args: A) -> R
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        let Ok(out) = self.call_with(args, |a| Ok::<R, Infallible>((self.f)(a)));
        out
    }

    /// [`eval`](Self::eval), with the faults of the store as errors in
    /// [strict mode](Self::strict).
    pub fn try_eval<A>(&self, args: A) -> Result<R, Error>
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        self.try_call_with(args, |a| Ok::<R, Infallible>((self.f)(a)))
            .map_err(CallError::into_store_error)
    }

    /// Runs the function whatever is stored, stores the result, and returns it with its
    /// metadata (joblib's `MemorizedFunc.call`).
    pub fn call<A>(&self, args: A) -> (R, Metadata)
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        let Ok(out) = self.force_call_with(args, |a| Ok::<R, Infallible>((self.f)(a)));
        out
    }

    /// [`call`](Self::call), with the faults of the store as errors in
    /// [strict mode](Self::strict).
    pub fn try_call<A>(&self, args: A) -> Result<(R, Metadata), Error>
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        self.try_force_call_with(args, |a| Ok::<R, Infallible>((self.f)(a)))
            .map_err(CallError::into_store_error)
    }

    /// Returns a reference to the stored result, computing it if needed (joblib's
    /// `call_and_shelve`).
    pub fn call_and_shelve<A>(&self, args: A) -> Shelved<R>
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        let Ok(out) = self.call_and_shelve_with(args, |a| Ok::<R, Infallible>((self.f)(a)));
        out
    }

    /// [`call_and_shelve`](Self::call_and_shelve), with the faults of the store as errors in
    /// [strict mode](Self::strict).
    pub fn try_call_and_shelve<A>(&self, args: A) -> Result<Shelved<R>, Error>
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        self.try_call_and_shelve_with(args, |a| Ok::<R, Infallible>((self.f)(a)))
            .map_err(CallError::into_store_error)
    }

    /// Runs `compute(args)` unless a result for `args` is stored, in which case that result is
    /// loaded. `Err` is returned as is and never stored. This is the entry point the
    /// `#[memoize]` macro uses. Faults of the store are warnings, even in
    /// [strict mode](Self::strict): use [`try_call_with`](Self::try_call_with) to get them.
    pub fn call_with<A, E>(&self, args: A, compute: impl FnOnce(A) -> Result<R, E>) -> Result<R, E>
    where
        A: Serialize,
    {
        self.lookup_blocking(args, compute, Lenient)
            .map_err(Failed::function)
    }

    /// [`call_with`](Self::call_with), with the faults of the store as errors in
    /// [strict mode](Self::strict) ([`CallError::Store`]); the function's own errors are
    /// [`CallError::Function`]. Without strict mode, faults are warnings, as in `call_with`.
    pub fn try_call_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<R, CallError<E>>
    where
        A: Serialize,
    {
        self.lookup_blocking(args, compute, self.faults())
            .map_err(CallError::from)
    }

    /// [`call_with`](Self::call_with), for async functions: the store is reached without
    /// blocking the runtime.
    pub async fn call_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<R, E>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        self.lookup(Reach::Task, args, compute, Lenient)
            .await
            .map_err(Failed::function)
    }

    /// [`try_call_with`](Self::try_call_with), for async functions.
    pub async fn try_call_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<R, CallError<E>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        self.lookup(Reach::Task, args, compute, self.faults())
            .await
            .map_err(CallError::from)
    }

    /// Runs `compute(args)` whatever is stored, stores the result, and returns it with its
    /// metadata (joblib's `MemorizedFunc.call`).
    pub fn force_call_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<(R, Metadata), E>
    where
        A: Serialize,
    {
        let stored = finish(self.force_store(Reach::Blocking, args, now(compute), Lenient));
        Ok(stored.map_err(Failed::function)?.0)
    }

    /// [`force_call_with`](Self::force_call_with), with the faults of the store as errors in
    /// [strict mode](Self::strict).
    pub fn try_force_call_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<(R, Metadata), CallError<E>>
    where
        A: Serialize,
    {
        let stored = finish(self.force_store(Reach::Blocking, args, now(compute), self.faults()));
        Ok(stored?.0)
    }

    /// [`force_call_with`](Self::force_call_with), for async functions: the store is reached
    /// without blocking the runtime.
    pub async fn force_call_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<(R, Metadata), E>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let stored = self.force_store(Reach::Task, args, compute, Lenient).await;
        Ok(stored.map_err(Failed::function)?.0)
    }

    /// [`try_force_call_with`](Self::try_force_call_with), for async functions.
    pub async fn try_force_call_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<(R, Metadata), CallError<E>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let stored = self
            .force_store(Reach::Task, args, compute, self.faults())
            .await;
        Ok(stored?.0)
    }

    /// Returns a reference to the stored result of `compute(args)`, computing and storing it
    /// first if needed (joblib's `call_and_shelve`). With a disabled memory, or when the result
    /// cannot be stored, the value itself is kept in a [`NotMemorizedResult`].
    pub fn call_and_shelve_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<Shelved<R>, E>
    where
        A: Serialize,
    {
        finish(self.shelve(Reach::Blocking, args, now(compute), Lenient)).map_err(Failed::function)
    }

    /// [`call_and_shelve_with`](Self::call_and_shelve_with), with the faults of the store as
    /// errors in [strict mode](Self::strict): then a result that cannot be stored is an error,
    /// not a [`NotMemorizedResult`].
    pub fn try_call_and_shelve_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<Shelved<R>, CallError<E>>
    where
        A: Serialize,
    {
        Ok(finish(self.shelve(
            Reach::Blocking,
            args,
            now(compute),
            self.faults(),
        ))?)
    }

    /// [`call_and_shelve_with`](Self::call_and_shelve_with), for async functions.
    pub async fn call_and_shelve_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<Shelved<R>, E>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        self.shelve(Reach::Task, args, compute, Lenient)
            .await
            .map_err(Failed::function)
    }

    /// [`try_call_and_shelve_with`](Self::try_call_and_shelve_with), for async functions.
    pub async fn try_call_and_shelve_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<Shelved<R>, CallError<E>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        Ok(self
            .shelve(Reach::Task, args, compute, self.faults())
            .await?)
    }

    /// A call's lookup, or the function alone with a disabled memory.
    async fn lookup<A, E, Fut, P: Faults>(
        &self,
        reach: Reach,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<R, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        match self.context(reach) {
            Some(mut call) => match call.digest_or_memo(&args) {
                ControlFlow::Break(out) => Ok(out),
                ControlFlow::Continue(digest) => call.lookup(digest, args, compute, faults).await,
            },
            None => compute(args).await.map_err(Failed::Function),
        }
    }

    /// [`lookup`](Self::lookup) for synchronous callers: a value from the memo is returned
    /// before any future is made.
    fn lookup_blocking<A, E, P: Faults>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
        faults: P,
    ) -> Result<R, Failed<E, P::Fault>>
    where
        A: Serialize,
    {
        let Some(mut call) = self.context(Reach::Blocking) else {
            return compute(args).map_err(Failed::Function);
        };
        match call.digest_or_memo(&args) {
            ControlFlow::Break(out) => Ok(out),
            ControlFlow::Continue(digest) => Self::look_up_now(call, digest, args, compute, faults),
        }
    }

    /// The lookup of a synchronous call the memo did not answer, completed on this thread: begun
    /// without a future ([`Call::begin_now`]), which answers a hit, then, if need be, as the
    /// future of the rest. That future is large: it is pinned in this function's frame, where
    /// it is made (never moved), and a frame of its own keeps the memo's answer from setting up
    /// room for it.
    #[inline(never)]
    fn look_up_now<A, E, P: Faults>(
        call: Call<'_, R, F>,
        digest: Result<cachette_hashing::Digest, Error>,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
        faults: P,
    ) -> Result<R, Failed<E, P::Fault>>
    where
        A: Serialize,
    {
        match call.begin_now(digest, faults).map_err(store)? {
            Begun::Hit(out) => Ok(out),
            Begun::Missed { key, absent } => finish_pinned(pin!(call.after_miss(
                key,
                absent,
                None,
                args,
                now(compute),
                faults
            ))),
            Begun::Later(digest) => {
                finish_pinned(pin!(call.lookup(digest, args, now(compute), faults)))
            }
        }
    }

    /// A call's forced run, or the function alone with a disabled memory.
    async fn force_store<A, E, Fut, P: Faults>(
        &self,
        reach: Reach,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<Stored<R>, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        match self.context(reach) {
            Some(call) => call.force_store(args, compute, faults).await,
            None => {
                let (time, t0) = (chrono::Utc::now(), std::time::Instant::now());
                let out = compute(args).await.map_err(Failed::Function)?;
                let meta = unstored_metadata::<R, F>(None, time, t0);
                Ok(((out, meta), None))
            }
        }
    }

    /// A call's shelving, or the value itself with a disabled memory.
    async fn shelve<A, E, Fut, P: Faults>(
        &self,
        reach: Reach,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<Shelved<R>, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        match self.context(reach) {
            Some(call) => call.shelve(args, compute, faults).await,
            None => {
                let out = compute(args).await.map_err(Failed::Function)?;
                Ok(Shelved::NotMemorized(NotMemorizedResult::new(out)))
            }
        }
    }
}

/// A synchronous function as one returning a ready future, for the call steps shared with async
/// functions (see [`Reach`]).
fn now<A, T>(f: impl FnOnce(A) -> T) -> impl FnOnce(A) -> std::future::Ready<T> {
    move |a| std::future::ready(f(a))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::Memory;
    use crate::reach::FINISHED;

    /// The futures completed on this thread while `f` runs.
    fn futures_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = FINISHED.get();
        let out = f();
        (out, FINISHED.get() - before)
    }

    #[test]
    fn a_blocking_hit_makes_no_future_and_a_miss_goes_on_from_its_read() {
        let memory = Memory::builder().url("memory://begin-now").build().unwrap();
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let f = memory
            .cache(|x: i64| {
                CALLS.fetch_add(1, Ordering::Relaxed);
                x * x
            })
            .name("square");
        // The first call checks the function's identity: the whole lookup runs as a future.
        let (out, futures) = futures_of(|| f.eval(3));
        assert_eq!(out, 9);
        assert!(futures > 0);
        // A miss goes on as a future, from what its read found.
        let (out, futures) = futures_of(|| f.eval(4));
        assert_eq!(out, 16);
        assert!(futures > 0);
        // A hit makes none.
        let (out, futures) = futures_of(|| f.eval(4));
        assert_eq!((out, futures), (16, 0));
        assert_eq!(CALLS.load(Ordering::Relaxed), 2);
        // After a clear, the identity is checked again, by the whole lookup.
        memory.clear().unwrap();
        let (out, futures) = futures_of(|| f.eval(4));
        assert_eq!(out, 16);
        assert!(futures > 0);
        assert_eq!(CALLS.load(Ordering::Relaxed), 3);
    }
}
