//! The backend-agnostic core of Cachette.
//!
//! Cachette memoizes functions in a store, so that a function never runs twice for the same
//! arguments: not in the same process, not after a restart, not on another machine that shares
//! the store. This crate holds everything that does not depend on where the store is:
//!
//! - [`Memory`] and [`MemorizedFunc`]: the user-facing context and memoized functions;
//! - [`StoreBackend`]: the small contract a storage backend implements, with an
//!   [`InMemoryBackend`] as reference implementation and the conformance suite in [`testkit`]
//!   (feature `testkit`);
//! - the [entry format](entry): one item per cached call, checksummed, with its metadata;
//! - swappable [codecs](codec) for outputs and hash algorithms for arguments;
//! - the [registry] of backends by URL scheme and configuration type, which lets the core build
//!   any linked backend without depending on it.
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

pub mod array;
pub mod backend;
pub mod codec;
pub mod config;
pub mod entry;
pub mod error;
mod faults;
pub mod func;
pub mod global;
mod host;
pub mod key;
pub mod layers;
mod load;
pub mod memory;
pub mod memory_backend;
mod once;
mod reach;
pub mod registry;
pub mod report;
pub mod result;
pub mod rt;
pub mod signing;
pub mod size;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod validation;

pub use array::{Array, DType, Element, MmapMode, ShapeError, Storage};
pub use backend::{
    BackendResult, Blob, Capabilities, DynBackend, ItemInfo, PutOptions, PutOutcome, StoreBackend,
};
pub use cachette_hashing::{Digest, HashAlgorithm, Xxh3, hash};
pub use codec::{Codec, MessagePack};
pub use config::MemoryConfig;
pub use entry::Metadata;
pub use error::{BackendError, CallError, EntryError, Error, ErrorKind, Result};
pub use func::{FuncId, MemorizedFunc, NoFunc, TakesArgs};
pub use global::{AsMemory, global, set_global};
pub use host::{host_name, owner_tag, writer_is_gone};
pub use key::{Key, Prefix};
pub use memory::{Memory, MemoryBuilder, MemoryStats};
pub use memory_backend::InMemoryBackend;
pub use registry::{BackendConfig, BackendScheme, InMemoryConfig};
pub use report::{Report, Reporter};
pub use result::{MemorizedResult, NotMemorizedResult, Shelved};
pub use signing::SigningKey;
pub use size::{ByteSize, ReduceReport, SizeLimits};
pub use validation::{ExpiresAfter, Validation, expires_after};

/// Re-exports for backend crates and the `#[memoize]` macro (not for direct use).
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use inventory;
    pub use typetag;
}
