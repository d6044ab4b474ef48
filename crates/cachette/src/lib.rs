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

/// What the `#[memoize]` macro expands to. Not a public API.
#[doc(hidden)]
pub mod __macro_support {
    pub use cachette_core::{
        AsMemory, CallError, Error, FuncId, MemorizedFunc, Memory, Metadata, MmapMode, Shelved,
        global,
    };
    pub use std::convert::Infallible;
    pub use std::sync::OnceLock;

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

    /// What a hashed argument of a `#[memoize]` function must be.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a hashed argument of a #[memoize] function: it must implement `Serialize`",
        label = "not `Serialize`",
        note = "arguments are hashed through `serde::Serialize`; leave this one out of the hash with `#[memoize(ignore = [name])]` if the result does not depend on it"
    )]
    pub trait Argument {}

    impl<T: serde::Serialize + ?Sized> Argument for T {}

    /// What the stored output of a `#[memoize]` function must be.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be the output of a #[memoize] function: it must implement `Serialize` and `DeserializeOwned`",
        label = "not `Serialize + DeserializeOwned`",
        note = "outputs are stored through `serde`; a `Result<T, E>` stores only `T`"
    )]
    pub trait Output {}

    impl<T: serde::Serialize + serde::de::DeserializeOwned> Output for T {}

    /// Checks, at compile time, that `T` can be a hashed argument.
    #[inline(always)]
    pub fn check_argument<T: Argument + ?Sized>() {}

    /// Checks, at compile time, that `T` can be stored.
    #[inline(always)]
    pub fn check_output<T: Output>() {}
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
}
