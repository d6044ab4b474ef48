//! The open registry of backends: configurations by `typetag` name, and URL schemes.
//!
//! Every backend crate registers a [`BackendConfig`] implementation under its scheme with
//! `#[typetag::serde(name = "…")]`, and a URL parser with `inventory::submit!` of a
//! [`BackendScheme`]. The core looks both up at run time, so it depends on no backend crate, and
//! a user's own backend plugs into URLs and config files exactly like the built-in ones.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

use crate::backend::DynBackend;
use crate::error::{BackendError, Error, Result};
use crate::memory_backend::InMemoryBackend;

/// A serializable backend configuration: what a config file's `[backend]` section holds,
/// tagged by `type` (the backend's scheme). Building it gives the backend.
#[typetag::serde(tag = "type")]
pub trait BackendConfig: Debug + Send + Sync {
    /// Builds the backend this configuration describes.
    fn build(&self) -> std::result::Result<DynBackend, BackendError>;

    /// A copy of this configuration.
    fn clone_config(&self) -> Box<dyn BackendConfig>;
}

impl Clone for Box<dyn BackendConfig> {
    fn clone(&self) -> Self {
        self.clone_config()
    }
}

/// A URL scheme a backend answers to, registered with `inventory::submit!`.
#[derive(Debug)]
pub struct BackendScheme {
    /// The scheme, without `://` (`"file"`, `"s3"`, …).
    pub scheme: &'static str,
    /// Parses a whole location (URL, or a plain path for `"file"`) into a configuration.
    pub from_url: fn(&str) -> std::result::Result<Box<dyn BackendConfig>, BackendError>,
}

inventory::collect!(BackendScheme);

/// The Cargo feature of the `cachette` crate that brings each built-in scheme.
const FEATURES: &[(&str, &str)] = &[
    ("file", "fs"),
    ("s3", "s3"),
    ("s3a", "s3"),
    ("redis", "redis"),
    ("rediss", "redis"),
    ("redis+cluster", "redis"),
    ("rediss+cluster", "redis"),
];

/// The scheme of a location: what stands before `://`, or `"file"` for a plain path.
pub fn scheme_of(location: &str) -> &str {
    match location.find("://") {
        Some(i)
            if i > 0
                && location[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            &location[..i]
        }
        _ => "file",
    }
}

/// Parses a location (a URL or a plain path) into a backend configuration, through the
/// registered schemes.
pub fn config_from_url(location: &str) -> Result<Box<dyn BackendConfig>> {
    let scheme = scheme_of(location);
    for registered in inventory::iter::<BackendScheme> {
        if registered.scheme.eq_ignore_ascii_case(scheme) {
            return (registered.from_url)(location).map_err(Error::Backend);
        }
    }
    let hint = FEATURES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(scheme))
        .map(|(_, feature)| format!(": enable the `{feature}` feature of the `cachette` crate"))
        .unwrap_or_else(|| {
            let mut known: Vec<&str> = inventory::iter::<BackendScheme>
                .into_iter()
                .map(|s| s.scheme)
                .collect();
            known.sort_unstable();
            format!(" (known schemes: {})", known.join(", "))
        });
    Err(Error::Config(format!(
        "no backend for scheme `{scheme}` in this build{hint}"
    )))
}

/// Builds the backend of a location (a URL or a plain path).
pub fn backend_from_url(location: &str) -> Result<DynBackend> {
    Ok(config_from_url(location)?.build()?)
}

/// Configuration of the in-memory backend (`memory://name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InMemoryConfig {
    /// The name of the process-wide store; empty for a private store.
    pub name: String,
}

#[typetag::serde(name = "memory")]
impl BackendConfig for InMemoryConfig {
    fn build(&self) -> std::result::Result<DynBackend, BackendError> {
        Ok(if self.name.is_empty() {
            std::sync::Arc::new(InMemoryBackend::new())
        } else {
            std::sync::Arc::new(InMemoryBackend::named(&self.name))
        })
    }

    fn clone_config(&self) -> Box<dyn BackendConfig> {
        Box::new(self.clone())
    }
}

fn memory_from_url(location: &str) -> std::result::Result<Box<dyn BackendConfig>, BackendError> {
    let rest = &location[location.find("://").map_or(0, |i| i + 3)..];
    let name = rest.trim_end_matches('/');
    Ok(Box::new(InMemoryConfig {
        name: if name.is_empty() {
            "default".to_owned()
        } else {
            name.to_owned()
        },
    }))
}

inventory::submit! {
    BackendScheme { scheme: crate::memory_backend::SCHEME, from_url: memory_from_url }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme_of("/tmp/x"), "file");
        assert_eq!(scheme_of("relative/dir"), "file");
        assert_eq!(scheme_of("s3://bucket/p"), "s3");
        assert_eq!(scheme_of("memory://"), "memory");
        assert_eq!(scheme_of("redis+cluster://h:1"), "redis+cluster");
    }

    #[test]
    fn memory_urls_share_items() {
        let a = backend_from_url("memory://shared-test").unwrap();
        let b = backend_from_url("memory://shared-test").unwrap();
        assert_eq!(a.location(), b.location());
    }

    #[test]
    fn unknown_scheme_names_the_feature() {
        // No backend crate is linked into the core's own tests.
        let err = config_from_url("s3://bucket/prefix")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`s3` feature"), "{err}");
        let err = config_from_url("gopher://x").unwrap_err().to_string();
        assert!(err.contains("known schemes"), "{err}");
    }
}
