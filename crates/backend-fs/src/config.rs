//! The configuration of a local-disk store ([`FsConfig`]), its URLs, and its registration.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;

use cachette_core::plugin::{BackendConfig, BackendError, BackendResult, DynBackend, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::{FsBackend, SCHEME};

/// The configuration of a local-disk store (`type = "file"` in configuration files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The folder of the store. Opening the store creates nothing: the first write creates the
    /// folder if it is missing, with a `.gitignore` holding `*` in it. When the folder already
    /// exists (a project's folder, say), the `.gitignore` goes instead into each folder the
    /// store creates directly in it, never into a folder it did not create.
    pub path: PathBuf,
    /// Flush every write to the device before publishing it (slower; survives power loss).
    #[serde(default)]
    pub durable: bool,
}

impl FsConfig {
    /// A configuration for `path`, not durable.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FsConfig {
            path: path.into(),
            durable: false,
        }
    }

    /// Opens the store this configuration describes. It creates nothing, and only checks the
    /// path: a folder that cannot be created makes writes fail, not this.
    pub fn open(&self) -> BackendResult<FsBackend> {
        if self.path.as_os_str().is_empty() {
            return Err(BackendError::new(
                ErrorKind::ConfigInvalid,
                "the cache location is an empty path",
            )
            .with_backend(SCHEME));
        }
        let root = std::path::absolute(&self.path).map_err(|e| {
            BackendError::from_io(e, format!("cannot resolve {}", self.path.display()))
                .with_backend(SCHEME)
        })?;
        let root = canonical(&root);
        if let Ok(meta) = fs::metadata(&root)
            && !meta.is_dir()
        {
            tracing::warn!(
                target: "cachette",
                "cache location {} is not a folder; calls will be computed without caching",
                root.display()
            );
        }
        Ok(FsBackend {
            location: root.display().to_string(),
            root,
            durable: self.durable,
            hard_links_fail: AtomicBool::new(false),
            root_handle: RwLock::new(None),
            no_openat2: AtomicBool::new(false),
        })
    }

    /// Parses a plain path or a `file://` URL.
    pub fn from_url(location: &str) -> BackendResult<Self> {
        if !location.contains("://") {
            return Ok(FsConfig::new(location));
        }
        let invalid = |why: String| {
            BackendError::new(
                ErrorKind::ConfigInvalid,
                format!("invalid file URL {location:?}: {why}"),
            )
            .with_backend(SCHEME)
        };
        let url = url::Url::parse(location).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() != SCHEME {
            return Err(invalid(format!("the scheme is not {SCHEME:?}")));
        }
        let mut config =
            FsConfig::new(url.to_file_path().map_err(|()| {
                invalid("it names no local path (use file:///absolute/path)".into())
            })?);
        for (name, value) in url.query_pairs() {
            match &*name {
                "durable" => {
                    config.durable = value
                        .parse()
                        .map_err(|_| invalid(format!("durable={value} is not true or false")))?;
                }
                _ => return Err(invalid(format!("unknown option {name:?} (known: durable)"))),
            }
        }
        Ok(config)
    }
}

impl BackendConfig for FsConfig {
    fn build(&self) -> BackendResult<DynBackend> {
        Ok(std::sync::Arc::new(self.open()?))
    }
}

cachette_core::register_backend! {
    config: FsConfig,
    name: SCHEME,
    schemes: [SCHEME],
    from_url: FsConfig::from_url,
}

/// The canonical form of `path` (an absolute path): that of its longest existing ancestor,
/// followed by the rest. Reads only.
pub(super) fn canonical(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(mut found) = fs::canonicalize(at) {
            found.extend(rest.iter().rev());
            return found;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}
