//! The configuration of a local-disk store ([`FsConfig`]), its URLs, and its registration.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;

use cachette_core::plugin::{BackendConfig, BackendError, BackendResult, DynBackend, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::index::{DEFAULT_INDEX_MAP_SIZE, DEFAULT_INDEX_THRESHOLD, Index, MAX_INDEX_THRESHOLD};
use crate::{FsBackend, SCHEME};

/// How a local-disk store keeps its items (see the crate's documentation, "Layouts").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// The index layout for a store that only the current user can write, the files layout
    /// for any other (the default; see the crate's documentation, "The default layout").
    #[default]
    Auto,
    /// One file per item.
    Files,
    /// Items of at most [`FsConfig::index_threshold`] bytes in an embedded LMDB environment
    /// shared by the processes using the store, larger ones one file each as with
    /// [`Layout::Files`]. The writers of the store are trusted (see "Trust").
    Index,
}

impl Layout {
    /// The name of the layout in URLs and configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Auto => "auto",
            Layout::Files => "files",
            Layout::Index => "index",
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Layout::Auto),
            "files" => Ok(Layout::Files),
            "index" => Ok(Layout::Index),
            _ => Err(format!("unknown layout {s:?} (known: auto, files, index)")),
        }
    }
}

fn default_index_threshold() -> u64 {
    DEFAULT_INDEX_THRESHOLD
}

/// The largest memory map of an index: 64 TiB, half the address space of a process on x86-64
/// (and less on 32-bit systems).
const MAX_INDEX_MAP_SIZE: u64 = 1 << 46;

fn default_index_map_size() -> u64 {
    DEFAULT_INDEX_MAP_SIZE
}

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
    /// How items are kept: small ones in an index when only the current user can write the
    /// store ([`Layout::Auto`], the default), one file each ([`Layout::Files`]), or small ones
    /// in an index whoever may write the store ([`Layout::Index`]).
    #[serde(default)]
    pub layout: Layout,
    /// When the index is used, items of at most this many bytes go to the index (default
    /// 64 KiB, at most 16 MiB); larger ones are files.
    #[serde(default = "default_index_threshold")]
    pub index_threshold: u64,
    /// When the index is used, the size of the index's memory map in bytes, so the most the
    /// index can hold (default 1 TiB on 64-bit systems, 1 GiB on others; the file is sparse and
    /// grows with what it holds; written through the map, the map grows in steps up to this).
    /// Items that do not fit any more are written as files.
    #[serde(default = "default_index_map_size")]
    pub index_map_size: u64,
    /// When the index is used, write it through its memory map (LMDB's `MDB_WRITEMAP`) on file
    /// systems where `fallocate` reserves blocks for good: ext4, XFS and tmpfs (default `true`).
    /// A commit then makes no system call, and the data file is allocated whole, up to its
    /// map, which grows in steps. Elsewhere, with [`durable`](Self::durable) (whose commits
    /// wait for the device anyway), or with `false`, the index is written with `pwrite`. Every
    /// process using one store should agree on it.
    #[serde(default = "default_true")]
    pub index_write_map: bool,
}

fn default_true() -> bool {
    true
}

impl FsConfig {
    /// A configuration for `path`, not durable, in the default layout ([`Layout::Auto`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FsConfig {
            path: path.into(),
            durable: false,
            layout: Layout::Auto,
            index_threshold: DEFAULT_INDEX_THRESHOLD,
            index_map_size: DEFAULT_INDEX_MAP_SIZE,
            index_write_map: true,
        }
    }

    /// Sets [`layout`](Self::layout).
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets [`index_threshold`](Self::index_threshold).
    pub fn with_index_threshold(mut self, bytes: u64) -> Self {
        self.index_threshold = bytes;
        self
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
        let index = match self.layout {
            Layout::Files => None,
            Layout::Auto | Layout::Index => {
                let invalid = |why: String| {
                    BackendError::new(ErrorKind::ConfigInvalid, why).with_backend(SCHEME)
                };
                if self.index_threshold > MAX_INDEX_THRESHOLD {
                    return Err(invalid(format!(
                        "index_threshold is {} bytes; at most {MAX_INDEX_THRESHOLD} are allowed",
                        self.index_threshold
                    )));
                }
                // A map larger than the address space fails every operation of the index.
                let most = MAX_INDEX_MAP_SIZE.min(usize::MAX as u64 / 2);
                let map_size = usize::try_from(self.index_map_size)
                    .ok()
                    .filter(|&size| size >= 1 << 20 && size as u64 <= most)
                    .ok_or_else(|| {
                        invalid(format!(
                            "index_map_size is {} bytes; it must be at least 1 MiB and at most {most} (the address space it maps)",
                            self.index_map_size
                        ))
                    })?;
                Some(Index::new(
                    &root,
                    self.index_threshold,
                    map_size,
                    self.durable,
                    // A durable commit waits for the device, and a map would be flushed whole.
                    self.index_write_map && !self.durable,
                    self.layout == Layout::Auto,
                ))
            }
        };
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
            folders: crate::handles::FolderHandles::default(),
            no_openat2: AtomicBool::new(false),
            index,
            recent: cachette_core::plugin::RecentAccesses::default(),
            parked: crate::write::Parked::default(),
        })
    }

    /// Parses a plain path or a `file://` URL. A URL's query may set `durable`, `layout`,
    /// `index_threshold`, `index_map_size` and `index_write_map`:
    /// `file:///var/cache/pipeline?layout=index`.
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
                "layout" => config.layout = value.parse().map_err(invalid)?,
                "index_threshold" => {
                    config.index_threshold = value.parse().map_err(|_| {
                        invalid(format!("index_threshold={value} is not a number of bytes"))
                    })?;
                }
                "index_map_size" => {
                    config.index_map_size = value.parse().map_err(|_| {
                        invalid(format!("index_map_size={value} is not a number of bytes"))
                    })?;
                }
                "index_write_map" => {
                    config.index_write_map = value.parse().map_err(|_| {
                        invalid(format!("index_write_map={value} is not true or false"))
                    })?;
                }
                _ => {
                    return Err(invalid(format!(
                        "unknown option {name:?} (known: durable, layout, index_threshold, index_map_size, index_write_map)"
                    )));
                }
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
