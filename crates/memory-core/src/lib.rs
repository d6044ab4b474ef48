//! The backend-agnostic core of Cachette.
//!
//! Cachette memoizes functions in a store, so that a function never runs twice for the same
//! arguments: not in the same process, not after a restart, not on another machine that shares
//! the store. This crate holds everything that does not depend on where the store is:
//!
//! - [`Memory`] and [`MemorizedFunc`]: the user-facing context and memoized functions;
//! - [`MemorizedResult`]: a reference to a stored result, to send to other processes;
//! - [`layers`] that wrap a store (a local tier, retries, statistics), stacked in the order
//!   given;
//! - swappable [codecs](Codec) for outputs and [hash algorithms](HashAlgorithm) for arguments;
//! - [`config`]: whole configurations, read from files and the environment, and shipped;
//! - [`plugin`]: the kit for backend authors (the narrow [`StoreBackend`](plugin::StoreBackend)
//!   contract, the registry, the conformance suite), so that the core builds any linked backend
//!   without depending on it.
//!
//! Most users depend on the `cachette` facade crate, which re-exports this crate and turns
//! backends on with Cargo features.
//!
//! ```
//! use cachette_core::Memory;
//!
//! let memory = Memory::from_url("memory://core-doc").unwrap();
//! let f = memory.cache(|x: u32| x + 1);
//! assert_eq!(f.eval(1), 2);
//! assert!(f.check_call_in_cache(&1));
//! ```

#![deny(unsafe_code)]

mod array;
mod backend;
mod codec;
pub mod config;
mod entry;
pub mod error;
mod faults;
mod func;
mod global;
mod host;
mod key;
pub mod layers;
mod load;
#[allow(unsafe_code)] // Memory maps of entry files; see its safety notes.
mod map;
mod memory;
mod memory_backend;
mod once;
pub mod plugin;
mod reach;
pub mod registry;
mod report;
mod result;
mod rt;
mod signing;
mod size;
#[cfg(feature = "testkit")]
mod testkit;
mod validation;

pub use array::{Array, DType, Element, MmapMode, ShapeError, Storage};
pub use cachette_hashing::{Digest, HashAlgorithm, Xxh3, hash};
pub use codec::{Codec, CodecError, MessagePack};
pub use config::MemoryConfig;
pub use entry::Metadata;
pub use error::{CallError, Error, Result};
pub use func::{FuncId, MemorizedFunc, NoFunc, TakesArgs};
pub use global::{AsMemory, global, set_global};
pub use memory::{Memory, MemoryBuilder, MemoryStats};
pub use report::{Report, Reporter};
pub use result::{MemorizedResult, NotMemorizedResult, Shelved};
pub use signing::SigningKey;
pub use size::{ByteSize, ReduceReport, SizeLimits};
pub use validation::{ExpiresAfter, Validation, expires_after};

/// What the macros expand to (not a public API).
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
