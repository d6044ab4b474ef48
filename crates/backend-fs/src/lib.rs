//! The local-disk backend of Cachette.
//!
//! A cache location is a folder a person can read: one folder per memoized function, named from
//! its module path and name, and inside it one file per cached call, named by the hash of the
//! arguments:
//!
//! ```text
//! cache/
//! ├── .gitignore
//! └── my_crate.pipeline.load/
//!     ├── func_code
//!     ├── 3f0c55d2e1b6a9f08d7c4e21a5b3c6d7
//!     └── 9a1e…
//! ```
//!
//! # Guarantees
//! - **Whole or nothing.** A write goes to a temporary file in the item's own folder, which is
//!   then renamed into place. A reader sees the old item, the new item, or no item, never part of
//!   one, whatever the number of threads and processes writing the same key.
//! - **Atomic create.** [`StoreBackend::put_if_absent`] publishes the temporary file with a hard
//!   link, which fails if the name exists: exactly one racer wins.
//! - **Confined keys.** Keys are validated by [`Key`]: empty segments, `.`, `..`, absolute paths,
//!   backslashes and NUL bytes are refused with a clear error, so no key names a file outside the
//!   location. Names starting with `.cachette-tmp-` are reserved for temporary files.
//! - **Access tracking.** Reading an item sets its access time (at most once a second per item),
//!   so least-recently-used clean-up works on `relatime` and `noatime` mounts too.
//! - **Memory mapping.** [`StoreBackend::local_path`] gives the path of an item, so large arrays
//!   can be memory-mapped instead of read.
//!
//! Writes are not flushed to the device unless [`FsConfig::durable`] is set: after a power loss
//! an entry may be missing or damaged, which the entry checksum detects (the call is then
//! recomputed).
//!
//! # Configuration
//! A plain path or a `file://` URL selects this backend:
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("cache");
//! use cachette_core::registry::backend_from_url;
//!
//! cachette_fs::link();
//! let backend = backend_from_url(path.to_str().unwrap()).unwrap();
//! assert_eq!(backend.scheme(), "file");
//! ```
//!
//! In a configuration file, the type is `file`:
//!
//! ```toml
//! type = "file"
//! path = "/var/cache/pipeline"
//! durable = false
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use cachette_core::backend::{
    BackendResult, Blob, Capabilities, ItemInfo, PutOptions, PutOutcome, StoreBackend,
};
use cachette_core::registry::{BackendConfig, BackendScheme};
use cachette_core::{BackendError, DynBackend, ErrorKind, Key, Prefix};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The URL scheme of this backend.
pub const SCHEME: &str = "file";

/// The prefix of temporary files; keys may not use it.
const TEMP_PREFIX: &str = ".cachette-tmp-";

/// Temporary files older than this are leftovers of a crashed writer, removed by `list`.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Access times are refreshed when older than this, so a burst of hits costs one update.
const ACCESS_GRANULARITY: Duration = Duration::from_secs(1);

const GITIGNORE: &str = ".gitignore";
const GITIGNORE_TEXT: &str = "# Created by cachette: this folder is a cache.\n*\n";

/// Makes sure this crate is linked, so that its URL scheme and configuration type are
/// registered. The `cachette` facade calls it; call it yourself if you depend on this crate
/// directly and only reach it through URLs or configuration files.
pub fn link() {}

/// A store in a folder of the local disk.
#[derive(Debug)]
pub struct FsBackend {
    root: PathBuf,
    location: String,
    durable: bool,
    counter: AtomicU64,
    hard_links_fail: AtomicBool,
}

impl FsBackend {
    /// A store in `path`, created if missing, with a `.gitignore` in it.
    ///
    /// A location that cannot be created is not an error here: it is logged, and every write
    /// fails with the reason, so memoized calls still return their values (uncached).
    pub fn new(path: impl AsRef<Path>) -> BackendResult<Self> {
        FsConfig::new(path.as_ref()).open()
    }

    /// The folder of the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &Key) -> BackendResult<PathBuf> {
        let mut path = self.root.clone();
        for segment in key.segments() {
            if segment.starts_with(TEMP_PREFIX) {
                return Err(err(
                    ErrorKind::InvalidKey,
                    "key",
                    key,
                    format!("names starting with {TEMP_PREFIX:?} are reserved"),
                ));
            }
            path.push(segment);
        }
        if key.as_str() == GITIGNORE {
            return Err(err(
                ErrorKind::InvalidKey,
                "key",
                key,
                "\".gitignore\" at the top of the location is reserved",
            ));
        }
        Ok(path)
    }

    fn dir_of_prefix(&self, prefix: &Prefix) -> PathBuf {
        let mut path = self.root.clone();
        if !prefix.is_root() {
            path.extend(prefix.as_str().split('/'));
        }
        path
    }

    fn temp_path(&self, path: &Path) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("item");
        path.with_file_name(format!(
            "{TEMP_PREFIX}{}.{}-{n}-{name}",
            cachette_core::owner_tag(),
            std::process::id()
        ))
    }

    /// Writes `value` to a new temporary file beside `path`, creating folders as needed.
    fn write_temp(&self, path: &Path, value: &Blob) -> io::Result<PathBuf> {
        let temp = self.temp_path(path);
        let mut file = match create_new(&temp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                create_new(&temp)?
            }
            other => other?,
        };
        let written = write_parts(&mut file, value).and_then(|()| {
            if self.durable {
                file.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        Ok(temp)
    }

    fn sync_parent(&self, path: &Path) -> io::Result<()> {
        if self.durable
            && let Some(parent) = path.parent()
        {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    fn put_blocking(&self, key: &Key, value: &Blob) -> BackendResult<()> {
        let path = self.path_of(key)?;
        let temp = self
            .write_temp(&path, value)
            .map_err(|e| io_err(e, "put", key))?;
        if let Err(e) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(io_err(e, "put", key));
        }
        self.sync_parent(&path).map_err(|e| io_err(e, "put", key))
    }

    fn put_if_absent_blocking(&self, key: &Key, value: &Blob) -> BackendResult<PutOutcome> {
        let path = self.path_of(key)?;
        if path.exists() {
            return Ok(PutOutcome::AlreadyExists);
        }
        let temp = self
            .write_temp(&path, value)
            .map_err(|e| io_err(e, "put_if_absent", key))?;
        let outcome = self.publish_new(&temp, &path);
        let _ = fs::remove_file(&temp);
        let outcome = outcome.map_err(|e| io_err(e, "put_if_absent", key))?;
        if outcome == PutOutcome::Created {
            self.sync_parent(&path)
                .map_err(|e| io_err(e, "put_if_absent", key))?;
        }
        Ok(outcome)
    }

    /// Links `temp` to `path` unless `path` exists. On file systems without hard links, falls
    /// back to creating `path` exclusively and copying: still one winner, but a reader may then
    /// see a partly written item, which the entry checksum rejects.
    fn publish_new(&self, temp: &Path, path: &Path) -> io::Result<PutOutcome> {
        if !self.hard_links_fail.load(Ordering::Relaxed) {
            match fs::hard_link(temp, path) {
                Ok(()) => return Ok(PutOutcome::Created),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Ok(PutOutcome::AlreadyExists);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    tracing::warn!(
                        target: "cachette",
                        "{}: hard links are not available ({e}); atomic creation falls back to exclusive create",
                        self.location
                    );
                    self.hard_links_fail.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let mut out = match create_new(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(PutOutcome::AlreadyExists);
            }
            Err(e) => return Err(e),
        };
        let copied = File::open(temp).and_then(|mut input| io::copy(&mut input, &mut out));
        if let Err(e) = copied {
            drop(out);
            let _ = fs::remove_file(path);
            return Err(e);
        }
        Ok(PutOutcome::Created)
    }

    /// Opens an item for reading; `None` when it does not exist (or is a folder).
    fn open_item(&self, key: &Key, op: &'static str) -> BackendResult<Option<(File, u64)>> {
        let path = self.path_of(key)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(io_err(e, op, key)),
        };
        let meta = file.metadata().map_err(|e| io_err(e, op, key))?;
        if !meta.is_file() {
            return Ok(None);
        }
        touch(&file, &meta);
        Ok(Some((file, meta.len())))
    }

    fn get_blocking(&self, key: &Key) -> BackendResult<Option<Bytes>> {
        let Some((mut file, len)) = self.open_item(key, "get")? else {
            return Ok(None);
        };
        read_whole(&mut file, len)
            .map(Some)
            .map_err(|e| io_err(e, "get", key))
    }

    fn get_range_blocking(&self, key: &Key, range: Range<u64>) -> BackendResult<Option<Bytes>> {
        let Some((mut file, len)) = self.open_item(key, "get_range")? else {
            return Ok(None);
        };
        let start = range.start.min(len);
        let end = range.end.clamp(start, len);
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| read_full(&mut file, &mut buf))
            .map(|n| buf.truncate(n))
            .map_err(|e| io_err(e, "get_range", key))?;
        Ok(Some(Bytes::from(buf)))
    }

    fn delete_blocking(&self, key: &Key) -> BackendResult<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) if path.is_dir() => Err(io_err(e, "delete", key)
                .with_source(io::Error::other("the key names a folder, not an item"))),
            Err(e) => Err(io_err(e, "delete", key)),
        }
    }

    fn delete_prefix_blocking(&self, prefix: &Prefix) -> BackendResult<u64> {
        let dir = self.dir_of_prefix(prefix);
        let mut deleted = 0u64;
        let mut first_error = None;
        if prefix.is_root() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if is_missing(&e) => return Ok(0),
                Err(e) => return Err(io_err(e, "delete_prefix", prefix)),
            };
            for entry in entries.flatten() {
                if entry.file_name() == GITIGNORE {
                    continue;
                }
                remove_tree(&entry.path(), &mut deleted, &mut first_error);
            }
        } else {
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => remove_tree(&dir, &mut deleted, &mut first_error),
                Ok(_) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(io_err(e, "delete_prefix", prefix)),
            }
        }
        match first_error {
            Some(e) => Err(io_err(e, "delete_prefix", prefix)),
            None => Ok(deleted),
        }
    }

    fn list_blocking(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let dir = self.dir_of_prefix(prefix);
        let mut items = Vec::new();
        let mut stack = vec![(dir, prefix.as_str().to_owned())];
        let now = SystemTime::now();
        while let Some((dir, key_prefix)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(io_err(e, "list", prefix)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(e, "list", prefix))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else {
                    continue; // Removed since the listing started.
                };
                if name.starts_with(TEMP_PREFIX) {
                    if meta.is_file() && is_leftover(name, age(&meta, now)) {
                        let _ = fs::remove_file(entry.path());
                    }
                    continue;
                }
                if key_prefix.is_empty() && name == GITIGNORE {
                    continue;
                }
                let key = if key_prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{key_prefix}/{name}")
                };
                if meta.is_dir() {
                    stack.push((entry.path(), key));
                } else if meta.is_file() {
                    let Ok(key) = Key::new(key) else {
                        continue; // A name no key can have: not ours.
                    };
                    items.push(ItemInfo {
                        key,
                        size: meta.len(),
                        last_access: last_access(&meta),
                    });
                }
            }
        }
        Ok(items)
    }
}

#[async_trait]
impl StoreBackend for FsBackend {
    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::none();
        caps.local_path = true;
        caps.atomic_create = true;
        caps.ranged_read = true;
        caps.blocking_io = true;
        caps
    }

    async fn get(&self, key: &Key) -> BackendResult<Option<Bytes>> {
        self.get_blocking(key)
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> BackendResult<Option<Bytes>> {
        self.get_range_blocking(key, range)
    }

    async fn touch(&self, key: &Key) -> BackendResult<()> {
        self.open_item(key, "touch").map(drop)
    }

    async fn put(&self, key: &Key, value: Blob, _options: &PutOptions) -> BackendResult<()> {
        self.put_blocking(key, &value)
    }

    async fn put_if_absent(
        &self,
        key: &Key,
        value: Blob,
        _options: &PutOptions,
    ) -> BackendResult<PutOutcome> {
        self.put_if_absent_blocking(key, &value)
    }

    async fn contains(&self, key: &Key) -> BackendResult<bool> {
        let path = self.path_of(key)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(io_err(e, "contains", key)),
        }
    }

    async fn delete(&self, key: &Key) -> BackendResult<()> {
        self.delete_blocking(key)
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let mut first_error = None;
        for key in keys {
            if let Err(e) = self.delete_blocking(key) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn delete_prefix(&self, prefix: &Prefix) -> BackendResult<u64> {
        self.delete_prefix_blocking(prefix)
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        self.list_blocking(prefix)
    }

    fn local_path(&self, key: &Key) -> Option<PathBuf> {
        self.path_of(key).ok()
    }
}

/// The configuration of a local-disk store (`type = "file"` in configuration files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The folder of the store; created if missing.
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

    /// Opens the store this configuration describes.
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
        if let Err(e) = prepare(&root) {
            tracing::warn!(
                target: "cachette",
                "cache location {} is not usable ({e}); calls will be computed without caching",
                root.display()
            );
        }
        let root = fs::canonicalize(&root).unwrap_or(root);
        Ok(FsBackend {
            location: root.display().to_string(),
            root,
            durable: self.durable,
            counter: AtomicU64::new(0),
            hard_links_fail: AtomicBool::new(false),
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

#[typetag::serde(name = "file")]
impl BackendConfig for FsConfig {
    fn build(&self) -> BackendResult<DynBackend> {
        Ok(std::sync::Arc::new(self.open()?))
    }

    fn clone_config(&self) -> Box<dyn BackendConfig> {
        Box::new(self.clone())
    }
}

fn from_url(location: &str) -> BackendResult<Box<dyn BackendConfig>> {
    Ok(Box::new(FsConfig::from_url(location)?))
}

cachette_core::__private::inventory::submit! {
    BackendScheme { scheme: SCHEME, from_url }
}

/// Creates the location and its `.gitignore`.
fn prepare(root: &Path) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let gitignore = root.join(GITIGNORE);
    if !gitignore.exists() {
        match create_new(&gitignore) {
            Ok(mut file) => file.write_all(GITIGNORE_TEXT.as_bytes())?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Files at least this large are read into memory that is backed by huge pages where the
/// system offers them (see [`read_whole`]).
const LARGE_READ: u64 = 32 << 20;

/// Reads a whole file of `len` bytes (as its metadata said).
///
/// A large file is read into an anonymous memory map advised to use transparent huge pages:
/// faulting in and zeroing 2 MiB pages instead of 4 KiB ones reads a gigabyte from the page
/// cache in about a third of the time `std::fs::read` takes. If the file's length is not `len` after all, it is read again
/// the plain way. A small file is read in one `read` of `len` bytes.
fn read_whole(file: &mut File, len: u64) -> io::Result<Bytes> {
    if len >= LARGE_READ
        && let Ok(size) = usize::try_from(len)
        && let Ok(mut map) = memmap2::MmapMut::map_anon(size)
    {
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let n = read_full(file, &mut map)?;
        let mut probe = [0u8; 1];
        if n == size && file.read(&mut probe)? == 0 {
            return Ok(Bytes::from_owner(map));
        }
        file.seek(SeekFrom::Start(0))?;
    }
    if len < LARGE_READ
        && let Ok(size) = usize::try_from(len)
    {
        // Items are never written in place (a write renames a new file over the old one), so
        // the length the metadata gave is the length to read: no size probe, no read to EOF.
        // A file that changed anyway gives bytes whose entry checks fail.
        let mut buf = vec![0u8; size];
        let n = read_full(file, &mut buf)?;
        buf.truncate(n);
        return Ok(Bytes::from(buf));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    file.read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Removes a file or a folder tree, counting removed items (temporary files excepted).
fn remove_tree(path: &Path, deleted: &mut u64, first_error: &mut Option<io::Error>) {
    let is_temp = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(TEMP_PREFIX))
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if is_missing(&e) => return,
        Err(e) => {
            first_error.get_or_insert(e);
            return;
        }
    };
    if meta.is_dir() {
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                remove_tree(&entry.path(), deleted, first_error);
            }
        }
        match fs::remove_dir(path) {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            // A writer created something meanwhile: its item survives, which is correct.
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    } else {
        match fs::remove_file(path) {
            Ok(()) => {
                if !is_temp(path) {
                    *deleted += 1;
                }
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
}

/// Writes the segments of a value one after the other, without gathering them first.
fn write_parts(file: &mut File, value: &Blob) -> io::Result<()> {
    for part in value.parts() {
        file.write_all(part)?;
    }
    Ok(())
}

/// Records a read: sets the access time to now unless it is already recent. Best effort (a
/// store shared between users may not allow it).
fn touch(file: &File, meta: &fs::Metadata) {
    let now = SystemTime::now();
    let recent = meta
        .accessed()
        .ok()
        .and_then(|at| now.duration_since(at).ok())
        .is_some_and(|d| d < ACCESS_GRANULARITY);
    if !recent {
        let times = fs::FileTimes::new().set_accessed(now);
        if let Err(e) = file.set_times(times) {
            tracing::debug!(target: "cachette", "cannot record an access: {e}");
        }
    }
}

/// The later of the access and modification times.
fn last_access(meta: &fs::Metadata) -> DateTime<Utc> {
    let modified = meta.modified().ok();
    let accessed = meta.accessed().ok();
    let at = match (modified, accessed) {
        (Some(m), Some(a)) => m.max(a),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => SystemTime::UNIX_EPOCH,
    };
    DateTime::<Utc>::from(at)
}

/// A temporary file left by a writer that will never rename it: one of this host whose process
/// is gone (a crash, `kill -9`), or any older than [`STALE_TEMP`].
fn is_leftover(name: &str, age: Duration) -> bool {
    if age > STALE_TEMP {
        return true;
    }
    // `<prefix><owner tag>.<pid>-<n>-<name>` (see `cachette_core::owner_tag`)
    let owner = name[TEMP_PREFIX.len()..].split('-').next().unwrap_or("");
    let Some((host, pid)) = owner.split_once('.') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    cachette_core::writer_is_gone(host, pid)
}

fn age(meta: &fs::Metadata, now: SystemTime) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .unwrap_or_default()
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn io_err(e: io::Error, op: &'static str, key: impl std::fmt::Display) -> BackendError {
    BackendError::from_io(e, format!("{op} failed"))
        .with_backend(SCHEME)
        .with_operation(op)
        .with_key(key)
}

fn err(
    kind: ErrorKind,
    op: &'static str,
    key: impl std::fmt::Display,
    message: impl Into<String>,
) -> BackendError {
    BackendError::new(kind, message)
        .with_backend(SCHEME)
        .with_operation(op)
        .with_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LARGE_READ` and a bit more, in a pattern that shows misplaced bytes.
    fn large_bytes() -> Vec<u8> {
        let n = usize::try_from(LARGE_READ).unwrap() + 12_345;
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn large_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let bytes = large_bytes();
        fs::write(&path, &bytes).unwrap();
        let len = bytes.len() as u64;
        let read = read_whole(&mut File::open(&path).unwrap(), len).unwrap();
        assert!(read[..] == bytes[..]);
        // The metadata said more, or less, than the file holds: read the plain way.
        for wrong in [len + 10, len - 10, LARGE_READ] {
            let read = read_whole(&mut File::open(&path).unwrap(), wrong).unwrap();
            assert!(read[..] == bytes[..], "length given: {wrong}");
        }
        // Small files: the length given is trusted (items are never written in place).
        fs::write(&path, b"small").unwrap();
        let read = read_whole(&mut File::open(&path).unwrap(), 3).unwrap();
        assert_eq!(&read[..], b"sma");
        let read = read_whole(&mut File::open(&path).unwrap(), 5).unwrap();
        assert_eq!(&read[..], b"small");
    }
}
