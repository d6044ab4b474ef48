#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

pub use cachette_core::*;

/// Stable hashing of arguments (`cachette-hashing`).
pub use cachette_hashing as hashing;

/// The local-disk backend (feature `fs`, on by default).
#[cfg(feature = "fs")]
pub use cachette_fs as fs;

/// The S3 and object-store backend (feature `s3`).
#[cfg(feature = "s3")]
pub use cachette_s3 as s3;

/// The Redis backend (feature `redis`).
#[cfg(feature = "redis")]
pub use cachette_redis as redis;

/// Memoizes a function: see the crate documentation.
#[cfg(feature = "macros")]
pub use cachette_macros::memoize;

/// Memoizes a closure, identified by the hash of its tokens: see the crate documentation.
#[cfg(feature = "macros")]
pub use cachette_macros::cache;

/// The `ndarray` crate that [`Array`] converts to and from (feature `ndarray`).
#[cfg(feature = "ndarray")]
pub use ndarray;

/// The URL schemes of the backends enabled in this build (Cargo features `fs`, `s3`, `redis`),
/// besides the in-process `memory` scheme of the core.
///
/// Calling it also makes sure the enabled backend crates are linked, so that their URL schemes
/// and configuration types are registered: programs that only name backends in URLs or
/// configuration files call it once at start-up (`Memory::new` and the `#[memoize]` macro do
/// not need it).
pub fn link_backends() -> &'static [&'static str] {
    __macro_support::link_backends();
    &[
        #[cfg(feature = "fs")]
        "file",
        #[cfg(feature = "s3")]
        "s3",
        #[cfg(feature = "redis")]
        "redis",
    ]
}

/// What the `#[memoize]` and `cache!` macros expand to. Not a public API.
#[doc(hidden)]
pub mod __macro_support {
    pub use cachette_core::{
        AsMemory, CallError, Error, Explanation, FuncId, MemorizedFunc, Memory, Metadata, MmapMode,
        Shelved, global,
    };
    pub use std::convert::Infallible;
    pub use std::sync::OnceLock;

    use std::any::Any;

    /// Links the enabled backends, so that their URL schemes and configuration types are
    /// registered.
    pub fn link_backends() {
        #[cfg(feature = "fs")]
        cachette_fs::link();
        #[cfg(feature = "s3")]
        cachette_s3::link();
        #[cfg(feature = "redis")]
        cachette_redis::link();
    }

    // The checks below are the only places where a type that cannot be hashed or stored is
    // reported: one error per cause, on the type at fault (`<T as Argument>::check()`, spanned
    // on the argument's type). `do_not_recommend` keeps the error on the check's own message
    // instead of the list of every `Serialize` type. The calls of the `MemorizedFunc` go
    // through `dispatch`, which adds no error of its own.

    /// What a hashed argument of a `#[memoize]` function must be.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a hashed argument of a #[memoize] function: it must implement `Serialize`",
        label = "not `Serialize`",
        note = "arguments are hashed through `serde::Serialize`; leave this one out of the hash with `#[memoize(ignore = [name])]` if the result does not depend on it"
    )]
    pub trait Argument {
        /// Compiles when `Self` can be hashed.
        #[inline(always)]
        fn check() {}
    }

    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + ?Sized> Argument for T {}

    /// What the receiver of a `#[memoize]` method must be, unless it is ignored.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be hashed as the `self` of a #[memoize] method: it must implement `Serialize`",
        label = "not `Serialize`",
        note = "`self` is hashed with the arguments; leave it out with `#[memoize(ignore = [self])]` if the result does not depend on it, or hash what the result depends on with `#[memoize(key = ..)]`"
    )]
    pub trait Receiver {
        /// Compiles when `Self` can be hashed.
        #[inline(always)]
        fn check() {}
    }

    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + ?Sized> Receiver for T {}

    /// What the value of `#[memoize(key = ..)]` must be.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be the key of a #[memoize] function: it must implement `Serialize`",
        label = "not `Serialize`",
        note = "the value of `key = ..` is hashed instead of the arguments"
    )]
    pub trait Key {
        /// Compiles when the key can be hashed.
        #[inline(always)]
        fn check(&self) {}
    }

    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + ?Sized> Key for T {}

    /// What the stored output of a `#[memoize]` function must be.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be the output of a #[memoize] function: it must implement `Serialize` and `DeserializeOwned`",
        label = "not `Serialize + DeserializeOwned`",
        note = "outputs are stored through `serde`; a `Result<T, E>` stores only `T`"
    )]
    pub trait Output {
        /// Compiles when `Self` can be stored.
        #[inline(always)]
        fn check() {}
    }

    #[diagnostic::do_not_recommend]
    impl<T: serde::Serialize + serde::de::DeserializeOwned> Output for T {}

    /// The `static` of a memoized method: its `MemorizedFunc`, type-erased.
    pub type MethodCell = OnceLock<Box<dyn Any + Send + Sync>>;

    /// The `MemorizedFunc` of a memoized method, built on first use: a `static` inside a method
    /// cannot name `Self` (nor an output type that does), so it holds the function type-erased.
    pub fn method_func<R: 'static>(
        cell: &'static MethodCell,
        init: impl FnOnce() -> MemorizedFunc<R>,
    ) -> &'static MemorizedFunc<R> {
        match cell.get_or_init(|| Box::new(init())).downcast_ref() {
            Some(func) => func,
            // Each method has its own `static`, which only ever holds a `MemorizedFunc<R>`.
            None => unreachable!("the cell of a memoized method holds another type"),
        }
    }

    pub mod dispatch {
        //! The calls of a `MemorizedFunc` made by the generated code, dispatched by autoref:
        //! `(&&Gate::new(func, &args)).call_with(args, ..)` reaches `MemorizedFunc::call_with`
        //! when the arguments are `Serialize` and the output `Serialize + DeserializeOwned`
        //! (`Ready`), and otherwise a stand-in (`Unready`) that type-checks whatever the types.
        //!
        //! The stand-in never runs: the arguments and the output are exactly the types the
        //! checks `Argument`, `Receiver`, `Key` and `Output` test, so when it is chosen, one of
        //! them has failed and the program does not compile. It keeps a missing `Serialize` to
        //! the one error of its check, instead of one more per generated call.

        use std::fmt;
        use std::future::Future;
        use std::marker::PhantomData;

        use cachette_core::{CallError, Explanation, MemorizedFunc, Metadata, Shelved};
        use serde::Serialize;
        use serde::de::DeserializeOwned;

        /// A memoized function and the type of the arguments it is called with.
        pub struct Gate<'f, R, A> {
            func: &'f MemorizedFunc<R>,
            args: PhantomData<fn(A)>,
        }

        impl<'f, R, A> Gate<'f, R, A> {
            /// The gate of `func` for arguments of the type of `args` (only the type is used).
            #[inline(always)]
            pub fn new(func: &'f MemorizedFunc<R>, args: &A) -> Self {
                let _ = args;
                Gate {
                    func,
                    args: PhantomData,
                }
            }
        }

        impl<R, A> fmt::Debug for Gate<'_, R, A> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple("Gate").field(self.func).finish()
            }
        }

        const UNREACHABLE: &str = "a #[memoize] function whose arguments or output cannot be hashed or stored does not compile";

        /// Declares the methods of `Ready` (which call the `MemorizedFunc`) and of `Unready`
        /// (which never run), from one list of signatures.
        macro_rules! gate {
            ($(
                $kind:ident fn $name:ident<$($g:ident),*>(&self, $($arg:ident: $ty:ty),*) -> $ret:ty
                $(where $bounded:ty: $bound:path)?;
            )*) => {
                /// The calls, when the arguments and the output are serde types.
                pub trait Ready<R, A> {
                    $(
                        #[allow(missing_docs)]
                        fn $name<$($g),*>(&self, $($arg: $ty),*) -> $ret $(where $bounded: $bound)?;
                    )*
                }

                impl<R, A> Ready<R, A> for &Gate<'_, R, A>
                where
                    R: Serialize + DeserializeOwned,
                    A: Serialize,
                {
                    $(
                        #[inline(always)]
                        fn $name<$($g),*>(&self, $($arg: $ty),*) -> $ret $(where $bounded: $bound)? {
                            self.func.$name($($arg),*)
                        }
                    )*
                }

                /// The stand-ins, when they are not (never called: see the module).
                pub trait Unready<R, A> {
                    $(
                        #[allow(missing_docs)]
                        fn $name<$($g),*>(&self, $($arg: $ty),*) -> $ret $(where $bounded: $bound)?;
                    )*
                }

                impl<R, A> Unready<R, A> for Gate<'_, R, A> {
                    $(
                        fn $name<$($g),*>(&self, $($arg: $ty),*) -> $ret $(where $bounded: $bound)? {
                            let _ = ($($arg,)*);
                            stand_in!($kind)
                        }
                    )*
                }
            };
        }

        macro_rules! stand_in {
            (sync) => {
                unreachable!("{UNREACHABLE}")
            };
            (future) => {
                async { unreachable!("{UNREACHABLE}") }
            };
        }

        gate! {
            sync fn call_with<E>(&self, args: A, compute: impl FnOnce(A) -> Result<R, E>) -> Result<R, E>;
            sync fn try_call_with<E>(&self, args: A, compute: impl FnOnce(A) -> Result<R, E>) -> Result<R, CallError<E>>;
            sync fn force_call_with<E>(&self, args: A, compute: impl FnOnce(A) -> Result<R, E>) -> Result<(R, Metadata), E>;
            sync fn try_force_call_with<E>(&self, args: A, compute: impl FnOnce(A) -> Result<R, E>) -> Result<(R, Metadata), CallError<E>>;
            sync fn call_and_shelve_with<E>(&self, args: A, compute: impl FnOnce(A) -> Result<R, E>) -> Result<Shelved<R>, E>;
            sync fn try_call_and_shelve_with<E>(&self, args: A, compute: impl FnOnce(A) -> Result<R, E>) -> Result<Shelved<R>, CallError<E>>;
            sync fn check_call_in_cache<>(&self, args: &A) -> bool;
            sync fn explain<>(&self, args: &A) -> Explanation;
            future fn call_with_async<E, Fut>(&self, args: A, compute: impl FnOnce(A) -> Fut) -> impl Future<Output = Result<R, E>>
                where Fut: Future<Output = Result<R, E>>;
            future fn try_call_with_async<E, Fut>(&self, args: A, compute: impl FnOnce(A) -> Fut) -> impl Future<Output = Result<R, CallError<E>>>
                where Fut: Future<Output = Result<R, E>>;
            future fn force_call_with_async<E, Fut>(&self, args: A, compute: impl FnOnce(A) -> Fut) -> impl Future<Output = Result<(R, Metadata), E>>
                where Fut: Future<Output = Result<R, E>>;
            future fn try_force_call_with_async<E, Fut>(&self, args: A, compute: impl FnOnce(A) -> Fut) -> impl Future<Output = Result<(R, Metadata), CallError<E>>>
                where Fut: Future<Output = Result<R, E>>;
            future fn call_and_shelve_with_async<E, Fut>(&self, args: A, compute: impl FnOnce(A) -> Fut) -> impl Future<Output = Result<Shelved<R>, E>>
                where Fut: Future<Output = Result<R, E>>;
            future fn try_call_and_shelve_with_async<E, Fut>(&self, args: A, compute: impl FnOnce(A) -> Fut) -> impl Future<Output = Result<Shelved<R>, CallError<E>>>
                where Fut: Future<Output = Result<R, E>>;
            future fn check_call_in_cache_async<>(&self, args: &A) -> impl Future<Output = bool>;
            future fn explain_async<>(&self, args: &A) -> impl Future<Output = Explanation>;
        }
    }
}

/// The guides under `docs/`: their Rust samples compile (and most run) as doc tests.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../../../docs/backends/local-disk.md")]
    mod local_disk {}
    #[doc = include_str!("../../../docs/backends/in-memory.md")]
    mod in_memory {}
    #[cfg(feature = "s3")]
    #[doc = include_str!("../../../docs/backends/s3.md")]
    mod s3 {}
    #[cfg(feature = "redis")]
    #[doc = include_str!("../../../docs/backends/redis.md")]
    mod redis {}
    #[cfg(feature = "macros")]
    #[doc = include_str!("../../../docs/deployment.md")]
    mod deployment {}
    #[doc = include_str!("../../../docs/layers.md")]
    mod layers {}
    #[doc = include_str!("../../../docs/reliability.md")]
    mod reliability {}
    #[cfg(feature = "fs")]
    #[doc = include_str!("../../../docs/statistics.md")]
    mod statistics {}
    #[doc = include_str!("../../../docs/explain.md")]
    mod explain {}
}
