//! Reading entries back: whole reads, memory maps of local files, and decoding outputs whose
//! arrays view the bytes read.

use std::fs::{File, OpenOptions};
use std::io;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::array::{self, MmapMode, RegionMaps, Source};
use crate::backend::{BackendResult, GetOptions, GetPayload, GetResult, LocalFile};
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
    /// the mode maps and the backend has local files, otherwise a whole read. Records the
    /// access.
    pub(crate) fn read_entry(&self, key: &Key, mode: MmapMode) -> BackendResult<Option<Read>> {
        let options = self.read_options(mode);
        let k = key.clone();
        let found = self.run(move |b| Box::pin(async move { b.get_opts(&k, options).await }))?;
        Ok(found.map(|found| into_read(key, found, mode)))
    }

    /// [`read_entry`](Self::read_entry), for async callers.
    pub(crate) async fn read_entry_async(
        &self,
        key: &Key,
        mode: MmapMode,
    ) -> BackendResult<Option<Read>> {
        let options = self.read_options(mode);
        let k = key.clone();
        let found = self
            .run_async(move |b| Box::pin(async move { b.get_opts(&k, options).await }))
            .await?;
        Ok(found.map(|found| into_read(key, found, mode)))
    }

    fn read_options(&self, mode: MmapMode) -> GetOptions {
        GetOptions::hit().with_local_file(mode.maps() && self.local_files)
    }
}

/// What a read gave, ready to parse: the bytes, or a map of the local file.
fn into_read(key: &Key, found: GetResult, mode: MmapMode) -> Read {
    match found.payload {
        GetPayload::Bytes(bytes) => Read::whole(bytes),
        GetPayload::File(local) => {
            let size = found.size;
            let path = local.path.clone();
            match map_file(local, size, mode) {
                Ok(read) => read,
                Err(e) => {
                    tracing::debug!(target: "cachette", "cannot map {} ({key}): {e}; reading it instead", path.display());
                    let retry = GetResult {
                        payload: GetPayload::File(LocalFile {
                            file: match File::open(&path) {
                                Ok(file) => file,
                                Err(_) => return Read::whole(Bytes::new()),
                            },
                            path,
                        }),
                        size,
                    };
                    retry.into_bytes().map_or_else(|_| Read::whole(Bytes::new()), Read::whole)
                }
            }
        }
    }
}

/// Maps an entry's local file read-only, keeping it open (reopened for writing in read-write
/// mode) to map arrays' regions from.
fn map_file(local: LocalFile, size: u64, mode: MmapMode) -> io::Result<Read> {
    let LocalFile { file, path } = local;
    let mut writable = false;
    let file = if mode == MmapMode::ReadWrite {
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(rw) => {
                writable = true;
                rw
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!(target: "cachette", "{} is not writable: its arrays are mapped copy-on-write", path.display());
                file
            }
            Err(e) => return Err(e),
        }
    } else {
        file
    };
    let Ok(len) = usize::try_from(size) else {
        return Err(io::Error::other("the entry file is too large to map"));
    };
    if len == 0 {
        return Ok(Read::whole(Bytes::new()));
    }
    let map = crate::map::map_entry(&file, len)?;
    let keep_file = matches!(mode, MmapMode::CopyOnWrite | MmapMode::ReadWrite);
    Ok(Read {
        bytes: Bytes::from_owner(map),
        file: keep_file.then_some(file),
        mapped: true,
        writable,
    })
}
