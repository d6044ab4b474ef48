#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

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

/// What the `#[memoize]` macro expands to. Not a public API.
#[doc(hidden)]
pub mod __macro_support {
    pub use cachette_core::{AsMemory, FuncId, MemorizedFunc, Memory, Metadata, Shelved, global};
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
}
