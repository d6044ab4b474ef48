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

// The user API.
mod builder;
pub mod config;
pub mod error;
mod func;
mod global;
pub mod layers;
mod limits;
mod memory;
mod options;
pub mod plugin;
mod result;

// The engine: it never imports the user API.
mod array;
mod backend;
mod breaker;
mod buffer;
mod check;
mod codec;
mod entry;
mod host;
mod key;
#[allow(unsafe_code)] // Memory maps of entry files; see its safety notes.
mod map;
mod memory_backend;
mod once;
mod reach;
mod recent;
pub mod registry;
mod report;
mod rt;
mod signing;
mod size;
mod store;
mod stripe;
#[cfg(feature = "testkit")]
mod testkit;
mod usage;
mod validation;

pub use array::{Array, DType, Element, MmapMode, ShapeError, Storage};
pub use builder::MemoryBuilder;
pub use cachette_hashing::{Digest, HashAlgorithm, Xxh3, hash};
pub use check::{CheckStatus, StoreCheck};
pub use codec::{Codec, CodecError, MessagePack};
pub use config::MemoryConfig;
pub use entry::Metadata;
pub use error::{CallError, Error, Result};
pub use func::{ArgDifference, Cause, CodeInfo, Explanation, MAX_EXAMINED, Nearest};
pub use func::{FuncId, MemorizedFunc, NoFunc, TakesArgs};
pub use global::{AsMemory, global, set_global};
pub use memory::{EntryInfo, FunctionInfo, Memory, MemoryStats};
pub use options::Options;
pub use report::{Report, Reporter, WARNINGS_PER_WINDOW};
pub use result::{MemorizedResult, NotMemorizedResult, Shelved, allow_reference_locations};
pub use signing::SigningKey;
pub use size::{ByteSize, ReduceReport, SizeLimits};
pub use usage::{CallStats, StoredFunctionStats, StoredStats};
pub use validation::{ExpiresAfter, MAX_CLOCK_AHEAD, Validation, expires_after};

/// What the macros expand to (not a public API).
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
