#![doc = include_str!("docs.md")]
#![forbid(unsafe_code)]

mod access;
mod backend;
mod config;
mod error;

pub use access::{LOG_DIR, MARKER_DIR};
pub use backend::S3Backend;
pub use config::{
    AccessTracking, DEFAULT_MULTIPART_PART_SIZE, DEFAULT_MULTIPART_THRESHOLD, MAX_LIST_CONCURRENCY,
    MAX_PART_SIZE, MIN_PART_SIZE, S3Config,
};
pub use object_store;

use cachette_core::plugin::BackendError;

/// The result of this crate's fallible functions.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// The URL scheme of S3 buckets, and the name of [`S3Config`] in config files.
pub const SCHEME: &str = "s3";

/// The Hadoop spelling of [`SCHEME`], accepted in URLs.
pub const SCHEME_S3A: &str = "s3a";

/// The scheme of backends over another object store ([`S3Backend::from_store`]).
pub const OBJECT_STORE_SCHEME: &str = "object-store";

cachette_core::register_backend! {
    config: S3Config,
    name: SCHEME,
    schemes: [SCHEME, SCHEME_S3A],
    from_url: S3Config::from_url,
}

/// Makes sure this crate is linked, so that its backend registration is kept.
pub fn link() {}
