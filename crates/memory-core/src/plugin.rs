//! The kit for backend authors: everything a storage backend needs, in one place.
//!
//! A backend depends on `cachette` (or `cachette-core`) alone: the trait, its options and
//! results, keys, errors, capabilities, the registry and its macro, the I/O runtime, the
//! conformance suite (feature `testkit`), and the crates that appear in the trait's signatures
//! (`async_trait`, `bytes`, `chrono`), re-exported so that their versions always match.
//!
//! ```
//! use cachette_core::plugin::*;
//!
//! /// A store that holds nothing.
//! #[derive(Debug)]
//! struct Void;
//!
//! #[async_trait]
//! impl StoreBackend for Void {
//!     fn scheme(&self) -> &'static str { "void" }
//!     fn location(&self) -> String { "void://".into() }
//!     fn capabilities(&self) -> Capabilities { Capabilities::none() }
//!     async fn get_opts(&self, _: &Key, _: GetOptions) -> BackendResult<Option<GetResult>> {
//!         Ok(None)
//!     }
//!     async fn put_opts(&self, _: &Key, _: Blob, _: PutOptions) -> BackendResult<PutOutcome> {
//!         Ok(PutOutcome::Created)
//!     }
//!     async fn delete_many(&self, _: &[Key]) -> BackendResult<()> { Ok(()) }
//!     async fn list(&self, _: &Prefix) -> BackendResult<Vec<ItemInfo>> { Ok(Vec::new()) }
//! }
//! ```
//!
//! Register the backend's configuration type and URL schemes with
//! [`register_backend!`](crate::register_backend) (see the [registry](crate::registry)), and run
//! the conformance suite, [`testkit::run_all`], against it in its tests.

pub use async_trait::async_trait;
pub use bytes::{self, Bytes};
pub use chrono::{self, DateTime, Utc};

pub use crate::backend::{
    BackendResult, Blob, Capabilities, ClaimAttempt, ClaimGuard, DynBackend, GetOptions,
    GetPayload, GetResult, ItemInfo, Layer, LayerFn, LocalFile, PutMode, PutOptions, PutOutcome,
    StoreBackend, StoreBackendExt,
};
pub use crate::buffer::{buffer_for, fits_in_memory, memory_limit, reserve};
pub use crate::error::{BackendError, BoxError, ErrorKind};
pub use crate::host::{host_name, owner_tag, writer_is_gone};
pub use crate::key::{Key, Prefix};
pub use crate::memory_backend::InMemoryBackend;
pub use crate::recent::{RecentAccesses, coarse_unix_nanos};
pub use crate::register_backend;
pub use crate::registry::{
    BackendConfig, CloneConfig, InMemoryConfig, Registration, backend_from_url, config_from_url,
    register, registrations, scheme_of,
};
pub use crate::report::{untrusted, untrusted_within};
pub use crate::rt::{block_on, io_handle, io_runtime};
pub use crate::stripe::{STRIPES, Striped, thread_stripe};

/// The entry format: what the core stores in each item, and the codec helpers that read and
/// write payloads (for tools and fuzzers).
pub mod entry {
    pub use crate::codec::{decode_value, encode_value};
    pub use crate::entry::*;
    pub use crate::error::EntryError;
}

/// The conformance suite every backend runs (feature `testkit`; outside semver).
#[cfg(feature = "testkit")]
pub mod testkit {
    pub use crate::testkit::*;
}
