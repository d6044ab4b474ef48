//! Reading entries back: whole reads, memory maps of local files, and decoding outputs whose
//! arrays view the bytes read.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memmap2::MmapOptions;
use serde::de::DeserializeOwned;

use crate::array::{self, MmapMode, RegionMaps, Source};
use crate::backend::BackendResult;
use crate::codec::{self, Codec};
use crate::entry::{Entry, Metadata};
use crate::error::EntryError;
use crate::key::Key;
use crate::memory::Inner;
use crate::signing::SigningKey;

/// An entry as read from the store.
#[derive(Debug)]
pub(crate) struct Read {
    bytes: Bytes,
    /// The entry file, kept open to map arrays' regions from (copy-on-write and read-write).
    file: Option<File>,
    /// `bytes` is a read-only map of the entry file.
    mapped: bool,
    /// `file` is open for writing.
    writable: bool,
}

impl Read {
    /// An entry read whole into memory.
    pub(crate) fn whole(bytes: Bytes) -> Read {
        Read {
            bytes,
            file: None,
            mapped: false,
            writable: false,
        }
    }
}

/// An entry whose checksums (those a load needs) were checked.
#[derive(Debug)]
pub(crate) struct Checked {
    entry: Entry,
    file: Option<File>,
    mapped: bool,
    writable: bool,
}

impl Checked {
    /// Parses and checks an entry: every checksum for an entry in memory; all but the arrays'
    /// for a mapped entry, whose pages are then only read when the arrays are used.
    /// The entry must have been written for `key` (see [`Entry::check_written_for`]), and
    /// signed with `signing` if that is given.
    pub(crate) fn parse(
        read: Read,
        key: &Key,
        signing: Option<&SigningKey>,
    ) -> Result<Checked, EntryError> {
        let entry = if read.mapped {
            Entry::parse_head(read.bytes)?
        } else {
            Entry::parse(read.bytes)?
        };
        if let Some(signing) = signing {
            entry.verify_signature(signing)?;
        }
        entry.check_written_for(key.parent(), key.file_name())?;
        Ok(Checked {
            entry,
            file: read.file,
            mapped: read.mapped,
            writable: read.writable,
        })
    }

    /// The metadata.
    pub(crate) fn metadata(&self) -> Result<Metadata, EntryError> {
        self.entry.metadata()
    }

    /// Decodes the output; its arrays view the entry's bytes as `mode` says.
    pub(crate) fn decode<R: DeserializeOwned>(
        self,
        codec: &dyn Codec,
        mode: MmapMode,
    ) -> Result<R, String> {
        let payload = self.entry.decode_payload().map_err(|e| e.to_string())?;
        if payload.arrays().is_empty() {
            return codec::decode_value(codec, payload.structure()).map_err(|e| e.0);
        }
        let compressed = self.entry.is_compressed();
        let map_regions = match (mode, self.file) {
            (MmapMode::CopyOnWrite | MmapMode::ReadWrite, Some(file)) if !compressed => {
                Some(RegionMaps {
                    file,
                    payload_offset: u64::from(self.entry.prefix().payload_offset),
                    shared: mode == MmapMode::ReadWrite && self.writable,
                })
            }
            _ => None,
        };
        let source = Source {
            payload: payload.bytes().clone(),
            blobs: payload.arrays().to_vec(),
            mapped: self.mapped && !compressed,
            map_regions,
        };
        array::decoding(source, || codec::decode_value(codec, payload.structure())).map_err(|e| e.0)
    }
}

impl Inner {
    /// Reads the entry under `key` for a load in `mode`: a memory map of its local file when
    /// the mode maps and the backend has local files, otherwise a whole read.
    pub(crate) fn read_entry(&self, key: &Key, mode: MmapMode) -> BackendResult<Option<Read>> {
        if let Some(mapped) = self.map_counted(key, mode) {
            return Ok(mapped);
        }
        let found = self.get(key)?;
        Ok(self.remap(key, mode, found))
    }

    /// After a whole read found the entry although mapping did not: a layered store (a local
    /// tier in front of a remote one) has just copied it to its local tier, so map that copy,
    /// as later hits will. Otherwise the bytes read.
    fn remap(&self, key: &Key, mode: MmapMode, found: Option<Bytes>) -> Option<Read> {
        let bytes = found?;
        if mode.maps()
            && self.local_files
            && let Some(Some(mapped)) = self.map_entry(key, mode)
        {
            return Some(mapped);
        }
        Some(Read::whole(bytes))
    }

    /// [`read_entry`](Self::read_entry), for async callers.
    pub(crate) async fn read_entry_async(
        &self,
        key: &Key,
        mode: MmapMode,
    ) -> BackendResult<Option<Read>> {
        if let Some(mapped) = self.map_counted(key, mode) {
            return Ok(mapped);
        }
        let k = key.clone();
        let found = self
            .run_async(move |b| Box::pin(async move { b.get(&k).await }))
            .await?;
        Ok(self.remap(key, mode, found))
    }

    /// [`map_entry`](Self::map_entry), counted in the memory's statistics as the hit it is: a
    /// map bypasses the `Stats` layer, which counts whole reads (so the map of a copy that a
    /// whole read has just made, in [`remap`](Self::remap), is not counted again).
    fn map_counted(&self, key: &Key, mode: MmapMode) -> Option<Option<Read>> {
        let started = self.stats.as_ref().map(|_| Instant::now());
        let mapped = self.map_entry(key, mode);
        if let (Some(stats), Some(started), Some(Some(read))) = (&self.stats, started, &mapped) {
            stats.mapped_hit(key, read.bytes.len() as u64, started.elapsed());
        }
        mapped
    }

    /// Maps the entry's local file, if the mode and the backend allow and the file is there;
    /// `None` to read it whole through the backend instead. Records the access, as a read
    /// would.
    fn map_entry(&self, key: &Key, mode: MmapMode) -> Option<Option<Read>> {
        if !mode.maps() || !self.local_files {
            return None;
        }
        let path = self.backend.local_path(key)?;
        match map_file(&path, mode) {
            Ok(None) => None,
            Ok(Some(read)) => {
                if self.due_for_touch(key) {
                    let k = key.clone();
                    if let Err(e) = self.run(move |b| Box::pin(async move { b.touch(&k).await })) {
                        tracing::debug!(target: "cachette", "cannot record an access to {key}: {e}");
                    }
                }
                Some(Some(read))
            }
            Err(e) => {
                tracing::debug!(target: "cachette", "cannot map {}: {e}; reading it instead", path.display());
                None
            }
        }
    }
}

/// How often a mapped entry's access is recorded, at most. Access times rank entries for
/// [`Memory::reduce_size`](crate::Memory::reduce_size); a second is finer than any use of them,
/// and it spares repeated hits of a mapped entry a second visit to the file.
const TOUCH_INTERVAL: Duration = Duration::from_secs(1);

/// Entries remembered as recently touched, at most (older ones are forgotten first).
const TOUCHED_CAPACITY: usize = 4096;

impl Inner {
    /// Whether the access to `key`, loaded by mapping, is to be recorded now: not when it was
    /// in the last [`TOUCH_INTERVAL`].
    fn due_for_touch(&self, key: &Key) -> bool {
        let now = Instant::now();
        let mut touched = self
            .touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if touched
            .get(key)
            .is_some_and(|&at| now.duration_since(at) < TOUCH_INTERVAL)
        {
            return false;
        }
        if touched.len() >= TOUCHED_CAPACITY {
            touched.retain(|_, at| now.duration_since(*at) < TOUCH_INTERVAL);
            if touched.len() >= TOUCHED_CAPACITY {
                touched.clear();
            }
        }
        touched.insert(key.clone(), now);
        true
    }
}

/// Maps an entry file read-only, keeping it open (for writing too in read-write mode) to map
/// arrays' regions from. `None` when it does not exist.
fn map_file(path: &Path, mode: MmapMode) -> io::Result<Option<Read>> {
    let open = |write: bool| OpenOptions::new().read(true).write(write).open(path);
    let mut writable = mode == MmapMode::ReadWrite;
    let file = match open(writable) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if mode == MmapMode::ReadWrite && e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::warn!(target: "cachette", "{} is not writable: its arrays are mapped copy-on-write", path.display());
            writable = false;
            match open(false) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let Ok(len) = usize::try_from(meta.len()) else {
        return Err(io::Error::other("the entry file is too large to map"));
    };
    if len == 0 {
        return Ok(Some(Read::whole(Bytes::new())));
    }
    // SAFETY: entry files are never written in place by Cachette: a write creates a new file
    // and renames it over the old one, so the mapped file keeps its bytes while mapped. (Maps
    // made in read-write mode write into arrays' regions, which `MmapMode::ReadWrite` documents
    // as corrupting the cache; the checksums of the head this map is parsed from stay intact.)
    let map = unsafe { MmapOptions::new().len(len).map(&file) }?;
    let keep_file = matches!(mode, MmapMode::CopyOnWrite | MmapMode::ReadWrite);
    Ok(Some(Read {
        bytes: Bytes::from_owner(map),
        file: keep_file.then_some(file),
        mapped: true,
        writable,
    }))
}
