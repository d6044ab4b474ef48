//! `FlatDirBackend`: a store of your own, written the way you would write it in your own crate.
//!
//! It keeps every item as one file in a single flat folder, named by the item's key with `%`
//! escaped as `%25` and `/` as `%2F`:
//!
//! ```text
//! store/
//! ├── custom_backend.slow_square%2Ffunc_code
//! ├── custom_backend.slow_square%2F1c9e…
//! └── %long-5be1…        a key whose escaped name is too long for a file name
//! ```
//!
//! - **Whole or nothing.** A write goes to a temporary file in the folder (`%tmp-…`), which is
//!   then renamed over the item's file: readers see the old item, the new one, or none.
//! - **Create if absent.** `put_if_absent` publishes the temporary file with a hard link, which
//!   fails when the name exists: exactly one of several racing writers wins, across processes.
//! - **Long keys.** File names are limited (255 bytes on most file systems). A key whose escaped
//!   name is longer than [`MAX_NAME_LEN`] is stored under `%long-<hash of the key>`, and the file
//!   starts with the key and a NUL byte, so that listing gives the key back and a read checks it.
//!   Such items are never given as local files to map: their file holds more than the item.
//! - **Access tracking.** A read that asks for it ([`GetOptions::record_access`]) sets the
//!   file's modification time (at most once a second; items are never modified in place), so
//!   that `reduce_size` evicts the least recently read items first. The access time would not
//!   do: the system sets it on reads of its own (`relatime`), which must not count.
//! - **Listing** scans the folder and changes nothing: the cost grows with the number of items,
//!   which is fine for a few thousand entries. **Sweeping** removes temporary files older than an
//!   hour, left by writers that died.
//!
//! Names starting with `%` followed by anything but `25` or `2F` never come from a key, so the
//! store's own files (`%tmp-…`, `%long-…`) cannot collide with items. The folder belongs to the
//! store: any other file whose name decodes to a key counts as an item (and `clear` deletes it).
//! The file system must offer hard links. Writes are not flushed to the device: after a power
//! loss an entry may be damaged, which the entry checksums detect.
//!
//! Besides `cachette`, the code uses only `serde` (with `derive`): everything a backend needs
//! comes from `cachette::plugin`, whose re-exports (`async_trait`, `bytes`, `chrono`) always
//! match the versions the library uses.

use std::fmt;
use std::fs::{self, File, FileTimes, Metadata, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cachette::plugin::{
    BackendConfig, BackendError, BackendResult, Blob, Bytes, Capabilities, DateTime, DynBackend,
    ErrorKind, GetOptions, GetPayload, GetResult, ItemInfo, Key, LocalFile, Prefix, PutMode,
    PutOptions, PutOutcome, StoreBackend, Utc, async_trait,
};
use serde::{Deserialize, Serialize};

/// The URL scheme (`flatdir:///path`) and the `type` of the backend in config files.
pub const SCHEME: &str = "flatdir";

/// The longest escaped key kept as a file name; longer keys go to `%long-…` files.
pub const MAX_NAME_LEN: usize = 200;

/// The start of temporary files' names.
const TEMP_PREFIX: &str = "%tmp-";

/// The start of the names of files holding items with long keys.
const LONG_PREFIX: &str = "%long-";

/// Temporary files older than this are leftovers of a crashed writer, removed by `sweep`.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Access times are set again only when older than this, so that a burst of hits costs one
/// update.
const ACCESS_GRANULARITY: Duration = Duration::from_secs(1);

/// Numbers temporary files, unique within the process (the process id makes them unique
/// across processes).
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// The configuration of a flat-folder store: the `[backend]` section of a config file with
/// `type = "flatdir"`, or a `flatdir:///path` URL.
///
/// ```toml
/// [backend]
/// type = "flatdir"
/// path = "/var/cache/my-pipeline"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatDirConfig {
    /// The folder of the store; created if missing. Required.
    pub path: PathBuf,
}

impl FlatDirConfig {
    /// A configuration of the store in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FlatDirConfig { path: path.into() }
    }

    /// Parses `flatdir:///absolute/path` (the path is taken as written, without
    /// percent-decoding, so that any location the backend prints parses back).
    pub fn from_url(location: &str) -> BackendResult<Self> {
        let invalid = |why: &str| {
            BackendError::new(
                ErrorKind::ConfigInvalid,
                format!("invalid {SCHEME} URL {location:?}: {why}"),
            )
            .with_backend(SCHEME)
        };
        let (scheme, path) = location
            .split_once("://")
            .ok_or_else(|| invalid("expected flatdir:///absolute/path"))?;
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(invalid("the scheme is not flatdir"));
        }
        if !path.starts_with('/') {
            return Err(invalid(
                "the path must be absolute (flatdir:///absolute/path)",
            ));
        }
        Ok(FlatDirConfig::new(path))
    }

    /// Opens the store, creating its folder if needed.
    pub fn open(&self) -> BackendResult<FlatDirBackend> {
        if self.path.as_os_str().is_empty() {
            return Err(
                BackendError::new(ErrorKind::ConfigInvalid, "`path` is empty").with_backend(SCHEME),
            );
        }
        let cannot = |e: io::Error| {
            BackendError::from_io(e, format!("cannot open the folder {}", self.path.display()))
                .with_backend(SCHEME)
                .with_operation("open")
        };
        fs::create_dir_all(&self.path).map_err(cannot)?;
        let root = fs::canonicalize(&self.path).map_err(cannot)?;
        Ok(FlatDirBackend { root })
    }
}

// What builds the backend from its configuration.
impl BackendConfig for FlatDirConfig {
    fn build(&self) -> BackendResult<DynBackend> {
        Ok(Arc::new(self.open()?))
    }
}

// The registration: `type = "flatdir"` in a `[backend]` section deserializes into a
// `FlatDirConfig`, and `flatdir:///…` URLs parse into one.
cachette::register_backend! {
    config: FlatDirConfig,
    name: SCHEME,
    schemes: [SCHEME],
    from_url: FlatDirConfig::from_url,
}

/// A store keeping each item as one file of a single folder (see the module documentation).
/// Handles opened on the same folder, in this process or others, see the same items.
#[derive(Debug)]
pub struct FlatDirBackend {
    root: PathBuf,
}

/// Where an item lives: its file, and the header that starts the file (`key` + NUL) for a long
/// key.
struct Place {
    path: PathBuf,
    header: Option<Vec<u8>>,
}

/// An item's file, opened for reading, positioned at the first byte of the item.
struct Opened {
    file: File,
    meta: Metadata,
    /// Bytes of the file before the item (the header of a long key).
    offset: u64,
    /// The item's length.
    len: u64,
}

impl FlatDirBackend {
    fn place(&self, key: &Key) -> BackendResult<Place> {
        let name = escape(key.as_str());
        if name.len() <= MAX_NAME_LEN {
            return Ok(Place {
                path: self.root.join(name),
                header: None,
            });
        }
        let digest = cachette::hash(key.as_str()).map_err(|e| {
            BackendError::new(ErrorKind::InvalidKey, format!("cannot hash the key: {e}"))
                .with_backend(SCHEME)
                .with_key(key)
        })?;
        let mut header = key.as_str().as_bytes().to_vec();
        header.push(0);
        Ok(Place {
            path: self.root.join(format!("{LONG_PREFIX}{digest}")),
            header: Some(header),
        })
    }

    /// Opens an item; `None` when it does not exist.
    fn open(&self, key: &Key, op: &'static str) -> BackendResult<Option<Opened>> {
        let place = self.place(key)?;
        let mut file = match File::open(&place.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e, op, key)),
        };
        let meta = file.metadata().map_err(|e| io_error(e, op, key))?;
        if !meta.is_file() {
            return Ok(None);
        }
        let offset = match &place.header {
            None => 0,
            Some(header) => {
                let mut found = vec![0u8; header.len()];
                let complete = match file.read_exact(&mut found) {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
                    Err(e) => return Err(io_error(e, op, key)),
                };
                if !complete || found != *header {
                    // Another key with the same hash: this key has no item.
                    return Ok(None);
                }
                header.len() as u64
            }
        };
        Ok(Some(Opened {
            len: meta.len().saturating_sub(offset),
            file,
            meta,
            offset,
        }))
    }

    /// Writes the header and the value to a new temporary file of the folder.
    fn write_temp(&self, header: Option<&[u8]>, value: &Blob) -> io::Result<PathBuf> {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .root
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let create = || OpenOptions::new().write(true).create_new(true).open(&temp);
        let mut file = match create() {
            // The folder was removed since the store was opened: make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.root)?;
                create()?
            }
            other => other?,
        };
        if let Err(e) = write_all(&mut file, header, value) {
            drop(file);
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        Ok(temp)
    }

    fn put_blocking(&self, key: &Key, value: &Blob) -> BackendResult<()> {
        let place = self.place(key)?;
        let temp = self
            .write_temp(place.header.as_deref(), value)
            .map_err(|e| io_error(e, "put", key))?;
        fs::rename(&temp, &place.path).map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error(e, "put", key)
        })
    }

    fn put_if_absent_blocking(&self, key: &Key, value: &Blob) -> BackendResult<PutOutcome> {
        let place = self.place(key)?;
        if place.path.exists() {
            return Ok(PutOutcome::AlreadyExists);
        }
        let temp = self
            .write_temp(place.header.as_deref(), value)
            .map_err(|e| io_error(e, "put_if_absent", key))?;
        // A hard link never replaces an existing name: of racing writers, one wins.
        let linked = fs::hard_link(&temp, &place.path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(PutOutcome::Created),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(io_error(e, "put_if_absent", key)),
        }
    }

    fn get_blocking(&self, key: &Key, options: &GetOptions) -> BackendResult<Option<GetResult>> {
        let Some(mut item) = self.open(key, "get")? else {
            return Ok(None);
        };
        if options.record_access {
            record_access(&item.file, &item.meta);
        }
        if options.head {
            return Ok(Some(GetResult::head(item.len)));
        }
        if let Some(range) = &options.range {
            let start = range.start.min(item.len);
            let end = range.end.clamp(start, item.len);
            let mut buf = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
            item.file
                .seek(SeekFrom::Start(item.offset + start))
                .and_then(|_| (&mut item.file).take(end - start).read_to_end(&mut buf))
                .map_err(|e| io_error(e, "get", key))?;
            return Ok(Some(GetResult::part(Bytes::from(buf), item.len)));
        }
        if options.local_file && item.offset == 0 {
            // The file holds exactly the item: the core may map it.
            let path = self.place(key)?.path;
            return Ok(Some(GetResult {
                payload: GetPayload::File(LocalFile {
                    file: item.file,
                    path,
                }),
                size: item.len,
            }));
        }
        let mut buf = Vec::with_capacity(usize::try_from(item.len).unwrap_or(0));
        item.file
            .read_to_end(&mut buf)
            .map_err(|e| io_error(e, "get", key))?;
        Ok(Some(GetResult::whole(Bytes::from(buf))))
    }

    fn delete_blocking(&self, key: &Key) -> BackendResult<()> {
        let place = self.place(key)?;
        match fs::remove_file(&place.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(e, "delete", key)),
            _ => Ok(()),
        }
    }

    /// The items under `prefix`, with their files: one scan of the folder.
    fn scan(&self, prefix: &Prefix, op: &'static str) -> BackendResult<Vec<(PathBuf, ItemInfo)>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(e, op, prefix)),
        };
        let mut items = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(e, op, prefix))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue; // Not a name this store writes.
            };
            let Ok(meta) = entry.metadata() else {
                continue; // Removed since the scan started.
            };
            if !meta.is_file() {
                continue;
            }
            let path = entry.path();
            if name.starts_with(TEMP_PREFIX) {
                continue; // A write under way, or a leftover that `sweep` removes.
            }
            let (key, offset) = if name.starts_with(LONG_PREFIX) {
                match read_header(&path) {
                    Some(key) => {
                        let offset = key.len() as u64 + 1;
                        (key, offset)
                    }
                    None => continue,
                }
            } else {
                match unescape(name) {
                    Some(key) => (key, 0),
                    None => continue, // Not a name this store writes.
                }
            };
            if !prefix.matches(&key) {
                continue;
            }
            let Ok(key) = Key::new(key) else {
                continue; // No key has this name: not an item.
            };
            let info = ItemInfo {
                key,
                size: meta.len().saturating_sub(offset),
                last_access: last_access(&meta),
            };
            items.push((path, info));
        }
        Ok(items)
    }
}

#[async_trait]
impl StoreBackend for FlatDirBackend {
    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn location(&self) -> String {
        format!("{SCHEME}://{}", self.root.display())
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = Capabilities::none();
        capabilities.local_files = true; // For short keys; see `get_blocking`.
        capabilities.atomic_create = true; // Hard links.
        capabilities.ranged_read = true; // Seek and read.
        capabilities.blocking_io = true; // Plain file I/O, done when the future is polled.
        capabilities
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        self.get_blocking(key, &options)
    }

    // The same read without a future, for synchronous callers.
    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        Some(self.get_blocking(key, options))
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        // No native expiry: the core checks `expires_after` when reading.
        match options.mode {
            PutMode::Create => self.put_if_absent_blocking(key, &value),
            _ => self.put_blocking(key, &value).map(|()| PutOutcome::Created),
        }
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

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        Ok(self
            .scan(prefix, "list")?
            .into_iter()
            .map(|(_, info)| info)
            .collect())
    }

    async fn sweep(&self, _prefix: &Prefix) -> BackendResult<u64> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error(e, "sweep", self.root.display())),
        };
        let now = SystemTime::now();
        let mut swept = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok());
            if meta.is_file()
                && age.is_some_and(|age| age > STALE_TEMP)
                && fs::remove_file(entry.path()).is_ok()
            {
                swept += 1;
            }
        }
        Ok(swept)
    }
}

/// The file name of a key: `%` as `%25`, `/` as `%2F`, everything else as it is.
fn escape(key: &str) -> String {
    let mut name = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '%' => name.push_str("%25"),
            '/' => name.push_str("%2F"),
            c => name.push(c),
        }
    }
    name
}

/// The key of a file name; `None` for a name [`escape`] never gives.
fn unescape(name: &str) -> Option<String> {
    let mut key = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('%') {
        key.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3)? {
            "25" => key.push('%'),
            "2F" => key.push('/'),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    key.push_str(rest);
    Some(key)
}

/// The key at the start of a long key's file, leaving the file's access time as it was.
fn read_header(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut header = Vec::new();
    BufReader::new(&file).read_until(0, &mut header).ok()?;
    header.pop().filter(|&nul| nul == 0)?;
    String::from_utf8(header).ok()
}

fn write_all(file: &mut File, header: Option<&[u8]>, value: &Blob) -> io::Result<()> {
    if let Some(header) = header {
        file.write_all(header)?;
    }
    for part in value.parts() {
        file.write_all(part)?;
    }
    Ok(())
}

/// Records a read: sets the file's modification time to now, unless it is already recent. Best
/// effort. The modification time, not the access time: the system changes the access time by
/// itself on reads (`relatime`), which must not count, and never the modification time.
fn record_access(file: &File, meta: &Metadata) {
    let now = SystemTime::now();
    let recent = meta
        .modified()
        .ok()
        .and_then(|at| now.duration_since(at).ok())
        .is_some_and(|age| age < ACCESS_GRANULARITY);
    if !recent {
        let _ = file.set_times(FileTimes::new().set_modified(now));
    }
}

/// When the item was last read (or written), as [`record_access`] sets it. Anyone who can
/// write the folder can set a file's modification time, on some file systems to a time outside
/// the calendar's range: it is taken between the epoch and now.
fn last_access(meta: &Metadata) -> DateTime<Utc> {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    DateTime::<Utc>::from(modified.clamp(
        SystemTime::UNIX_EPOCH,
        SystemTime::now().max(SystemTime::UNIX_EPOCH),
    ))
}

fn io_error(e: io::Error, op: &'static str, key: impl fmt::Display) -> BackendError {
    BackendError::from_io(e, format!("{op} failed"))
        .with_backend(SCHEME)
        .with_operation(op)
        .with_key(key)
}
