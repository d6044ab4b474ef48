//! Reading entries back: whole reads or maps of local files, parsed and checked, then decoded
//! into outputs whose arrays view the bytes read.

use std::fs::{File, OpenOptions};
use std::io;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::array::{self, MmapMode, RegionMaps, Source};
use crate::backend::{GetPayload, GetResult, LocalFile};
use crate::codec::{self, Codec};
use crate::entry::{CodeIdentity, Entry, Expected, FLAG_ARRAYS, Metadata, Parsed, Prefix};
use crate::error::{EntryError, Error};
use crate::key::Key;
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

    /// The bytes of an entry read whole into memory; `None` for a map.
    pub(super) fn whole_bytes(&self) -> Option<&Bytes> {
        (!self.mapped && self.file.is_none()).then_some(&self.bytes)
    }
}

/// An entry whose checksums (those a load needs) were checked.
#[derive(Debug)]
pub(crate) struct Checked {
    entry: Entry,
    /// How long the call took, in seconds, as its metadata records (zero when it makes no
    /// sense).
    duration: f64,
    file: Option<File>,
    mapped: bool,
    writable: bool,
}

impl Checked {
    /// Parses and checks an entry: every checksum for an entry in memory; for a mapped entry,
    /// all but the arrays' unless `verify_arrays` (the arrays' pages are then only read when
    /// they are used).
    /// The entry must have been written for `key`, by `code` when given, with the codec
    /// `codec` when given (see [`Entry::check_written_for`]), and signed with `signing` if
    /// that is given.
    pub(crate) fn parse(
        read: Read,
        key: &Key,
        code: Option<CodeIdentity<'_>>,
        codec: Option<&str>,
        signing: Option<&SigningKey>,
        verify_arrays: bool,
    ) -> Result<Checked, EntryError> {
        let entry = if read.mapped && !verify_arrays {
            Entry::parse_head(read.bytes)?
        } else {
            Entry::parse(read.bytes)?
        };
        if let Some(signing) = signing {
            entry.verify_signature(signing)?;
        }
        let duration = entry.check_written_for(&expected(key, code, codec)?)?;
        Ok(Checked {
            entry,
            duration,
            file: read.file,
            mapped: read.mapped,
            writable: read.writable,
        })
    }

    /// The entry read whole in `read`, whose bytes are exactly those of an entry that passed
    /// [`parse`](Checked::parse) with `parsed` and `duration` for the same key, code, codec
    /// and signing key (see [`super::verified`]).
    pub(super) fn again(read: Read, parsed: &Parsed, duration: f64) -> Checked {
        Checked {
            entry: Entry::from_parsed(parsed, read.bytes),
            duration,
            file: None,
            mapped: false,
            writable: false,
        }
    }

    /// The bytes of an entry read whole into memory; `None` for a map.
    pub(super) fn whole_bytes(&self) -> Option<&[u8]> {
        (!self.mapped && self.file.is_none()).then(|| &self.entry.as_bytes()[..])
    }

    /// What the checks found, without the bytes.
    pub(super) fn parsed(&self) -> Parsed {
        self.entry.parsed()
    }

    /// The size of the entry in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.entry.size() as u64
    }

    /// How long the call took, in seconds, as the entry's metadata records.
    pub(crate) fn duration(&self) -> f64 {
        self.duration
    }

    /// The metadata.
    pub(crate) fn metadata(&self) -> Result<Metadata, EntryError> {
        self.entry.metadata()
    }

    /// Checks that the payload of the entry under `key` decompresses and lays out its arrays
    /// as announced.
    pub(crate) fn check_payload(&self, key: &Key, max_decompressed: u64) -> Result<(), Error> {
        self.entry
            .decode_payload_within(max_decompressed)
            .map(drop)
            .map_err(|source| Error::Entry {
                key: key.to_string(),
                source,
            })
    }

    /// Decodes the output of the entry under `key`; its arrays view the entry's bytes as `mode`
    /// says.
    pub(crate) fn decode<R: DeserializeOwned>(
        self,
        key: &Key,
        codec: &dyn Codec,
        mode: MmapMode,
        max_decompressed: u64,
    ) -> Result<R, Error> {
        let fail = |source: EntryError| Error::Entry {
            key: key.to_string(),
            source,
        };
        let undecodable = |e: codec::CodecError| {
            fail(EntryError::Decode(format!(
                "cannot decode the output: {}",
                e.0
            )))
        };
        if let Some(structure) = self.entry.plain_structure() {
            return codec::decode_value(codec, structure).map_err(undecodable);
        }
        let payload = self
            .entry
            .decode_payload_within(max_decompressed)
            .map_err(fail)?;
        if payload.arrays().is_empty() {
            return codec::decode_value(codec, payload.structure()).map_err(undecodable);
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
        array::decoding(source, || codec::decode_value(codec, payload.structure()))
            .map_err(undecodable)
    }
}

/// What the entry under `key` must answer for: its call, and `code` when given.
pub(super) fn expected<'a>(
    key: &'a Key,
    code: Option<CodeIdentity<'a>>,
    codec: Option<&'a str>,
) -> Result<Expected<'a>, EntryError> {
    let (func, args_id) = crate::key::grammar::split(key)
        .ok_or_else(|| EntryError::Corrupted(format!("{key} is not the key of an entry")))?;
    Ok(Expected {
        func,
        args_id,
        code,
        codec,
    })
}

/// What a read gave, ready to parse: the bytes, or a map of the local file (read whole instead
/// when it cannot be mapped).
pub(super) fn into_read(key: &Key, found: GetResult, mode: MmapMode) -> io::Result<Read> {
    let local = match found.payload {
        GetPayload::Bytes(bytes) => return Ok(Read::whole(bytes)),
        GetPayload::File(local) => local,
    };
    // A small entry is read, and mapped only if it holds arrays (which then view the map): a
    // map of a few bytes costs more than their copy.
    let read = if found.size <= READ_RATHER_THAN_MAP {
        let bytes = local.read_bytes(found.size)?;
        if !holds_arrays(&bytes) {
            return Ok(Read::whole(bytes));
        }
        Some(bytes)
    } else {
        None
    };
    match map_file(&local, found.size, mode) {
        Ok(mapped) => Ok(mapped),
        Err(e) => {
            tracing::debug!(target: "cachette", "cannot map {} ({key}): {e}; reading it instead", local.path.display());
            match read {
                Some(bytes) => Ok(Read::whole(bytes)),
                None => local.read_bytes(found.size).map(Read::whole),
            }
        }
    }
}

/// Entries of at most this many bytes are read rather than mapped unless they hold arrays.
const READ_RATHER_THAN_MAP: u64 = 64 * 1024;

/// Whether the entry's prefix says it holds arrays. A prefix that does not parse says no: the
/// read bytes then go to the checks, which tell what is wrong.
fn holds_arrays(bytes: &[u8]) -> bool {
    Prefix::parse(bytes, Some(bytes.len() as u64)).is_ok_and(|p| p.flags & FLAG_ARRAYS != 0)
}

/// Maps an entry's local file read-only, keeping it open (reopened for writing in read-write
/// mode) to map arrays' regions from.
fn map_file(local: &LocalFile, size: u64, mode: MmapMode) -> io::Result<Read> {
    let Ok(len) = usize::try_from(size) else {
        return Err(io::Error::other("the entry file is too large to map"));
    };
    if len == 0 {
        return Ok(Read::whole(Bytes::new()));
    }
    let map = crate::map::map_entry(&local.file, len)?;
    let (file, writable) = match mode {
        MmapMode::ReadWrite => match reopen_writable(local) {
            Ok(file) => (Some(file), true),
            Err(e) => {
                tracing::warn!(target: "cachette", "{} cannot be opened for writing ({e}): its arrays are mapped copy-on-write", local.path.display());
                (Some(local.file.try_clone()?), false)
            }
        },
        MmapMode::CopyOnWrite => (Some(local.file.try_clone()?), false),
        _ => (None, false),
    };
    Ok(Read {
        bytes: Bytes::from_owner(map),
        file,
        mapped: true,
        writable,
    })
}

/// Opens the file of `local` again for writing (the read-write map mode), without following a
/// link, and only if the path still names the file that was read.
fn reopen_writable(local: &LocalFile) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(&local.path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (read, again) = (local.file.metadata()?, file.metadata()?);
        if (read.dev(), read.ino()) != (again.dev(), again.ino()) || !again.is_file() {
            return Err(io::Error::other("the entry file was replaced meanwhile"));
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Bytes;
    use chrono::Utc;

    use super::{MmapMode, READ_RATHER_THAN_MAP, into_read};
    use crate::backend::{GetPayload, GetResult, LocalFile};
    use crate::entry::{Metadata, encode_parts};
    use crate::key::Key;

    /// A local file holding `bytes`, as a backend with local files gives it.
    fn local(dir: &std::path::Path, name: &str, bytes: &[u8]) -> GetResult {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        GetResult {
            payload: GetPayload::File(LocalFile {
                file: std::fs::File::open(&path).unwrap(),
                path,
            }),
            size: bytes.len() as u64,
        }
    }

    fn entry(arrays: Vec<Bytes>, structure: usize) -> Vec<u8> {
        let meta = Metadata::new(0.5, Utc::now(), vec![], "m.f", "00", "xxh3-128", "msgpack");
        encode_parts(&meta, vec![7; structure], arrays, None)
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    /// A small entry without arrays is read, not mapped, whatever the map mode; one with arrays,
    /// or a large one, is mapped.
    #[test]
    fn small_entries_are_read_unless_they_hold_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new("cachette/m.f/0").unwrap();
        for mode in [MmapMode::ReadOnly, MmapMode::CopyOnWrite] {
            let plain = entry(Vec::new(), 16);
            let read = into_read(&key, local(dir.path(), "plain", &plain), mode).unwrap();
            assert!(!read.mapped, "{mode:?}: a small entry is read");
            assert_eq!(read.bytes, plain);

            let with_arrays = entry(vec![Bytes::from(vec![1u8; 64])], 16);
            let read = into_read(&key, local(dir.path(), "arrays", &with_arrays), mode).unwrap();
            assert!(read.mapped, "{mode:?}: arrays view the map");

            let large = entry(Vec::new(), READ_RATHER_THAN_MAP as usize + 1);
            let read = into_read(&key, local(dir.path(), "large", &large), mode).unwrap();
            assert!(read.mapped, "{mode:?}: a large entry is mapped");
        }
        // Bytes that are no entry are read, and left to the checks.
        let read = into_read(&key, local(dir.path(), "junk", b"junk"), MmapMode::ReadOnly).unwrap();
        assert!(!read.mapped);
    }
}
