//! The entry format: one stored item per cached call.
//!
//! ```text
//! offset size
//!  0      8   magic  b"CACHETTE"
//!  8      2   format version (u16, little-endian), currently 1
//! 10      2   flags (u16); unknown bits are refused
//! 12      4   header length H (u32)
//! 16      8   payload length P (u64)
//! 24      8   header checksum: xxh3-64 of bytes 0..24, 40..48 and the header
//! 32      8   payload checksum: xxh3-64 of the payload
//! 40      4   payload offset O (u32), a multiple of 64, at least 48 + H
//! 44      4   reserved, zero
//! 48      H   header: the metadata, MessagePack
//! 48+H        zero padding up to O
//!  O      P   payload: the output, encoded by the codec named in the metadata
//! ```
//!
//! The total length must be exactly `O + P`. A truncated, corrupted or foreign item is detected
//! and reported as such; nothing is decoded from it. The payload starts at an aligned offset so
//! that arrays inside it can be memory-mapped in place. Reading the metadata only needs the first
//! `O` bytes (one ranged read on object stores).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

use crate::error::EntryError;

/// The first bytes of every entry.
pub const MAGIC: &[u8; 8] = b"CACHETTE";
/// The entry format version this library writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The size of the fixed prefix before the header.
pub const PREFIX_LEN: usize = 48;
/// Alignment of the payload within the entry.
pub const PAYLOAD_ALIGN: usize = 64;
/// A read of this many bytes holds the metadata of nearly every entry.
pub const HEADER_READ_HINT: u64 = 4096;

const KNOWN_FLAGS: u16 = 0;

/// The metadata of a cached call, stored in its entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// How long the call took, in seconds.
    pub duration: f64,
    /// When the call was made.
    pub time: DateTime<Utc>,
    /// A readable form of each input argument, by name, in order. Ignored arguments are left out.
    pub input_args: Vec<(String, String)>,
    /// The id of the function (its folder in the store).
    pub func: String,
    /// The hash of the arguments.
    pub args_id: String,
    /// The id of the argument hasher.
    pub hasher: String,
    /// The id of the output codec.
    pub codec: String,
}

impl Metadata {
    /// A new metadata record.
    pub fn new(
        duration: f64,
        time: DateTime<Utc>,
        input_args: Vec<(String, String)>,
        func: impl Into<String>,
        args_id: impl Into<String>,
        hasher: impl Into<String>,
        codec: impl Into<String>,
    ) -> Self {
        Metadata {
            duration,
            time,
            input_args,
            func: func.into(),
            args_id: args_id.into(),
            hasher: hasher.into(),
            codec: codec.into(),
        }
    }

    /// The readable form of the argument `name`, if recorded.
    pub fn input_arg(&self, name: &str) -> Option<&str> {
        self.input_args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How long the call took.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.duration).unwrap_or_default()
    }
}

/// Encodes an entry: the metadata, then the payload that `write_payload` appends to the buffer
/// (so that the payload is never copied).
pub fn encode<E>(
    metadata: &Metadata,
    write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E>
where
    E: From<String>,
{
    let header = rmp_serde::to_vec_named(metadata).map_err(|e| E::from(e.to_string()))?;
    let header_len =
        u32::try_from(header.len()).map_err(|_| E::from("metadata too large".to_owned()))?;
    let payload_offset = (PREFIX_LEN + header.len()).next_multiple_of(PAYLOAD_ALIGN);
    let payload_offset_u32 =
        u32::try_from(payload_offset).map_err(|_| E::from("metadata too large".to_owned()))?;
    let mut buf = Vec::with_capacity(payload_offset + 256);
    buf.extend_from_slice(&[0; PREFIX_LEN]);
    buf.extend_from_slice(&header);
    buf.resize(payload_offset, 0);
    write_payload(&mut buf)?;
    let payload_len = (buf.len() - payload_offset) as u64;
    let payload_checksum = xxhash_rust::xxh3::xxh3_64(&buf[payload_offset..]);

    buf[0..8].copy_from_slice(MAGIC);
    buf[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf[10..12].copy_from_slice(&0u16.to_le_bytes());
    buf[12..16].copy_from_slice(&header_len.to_le_bytes());
    buf[16..24].copy_from_slice(&payload_len.to_le_bytes());
    buf[32..40].copy_from_slice(&payload_checksum.to_le_bytes());
    buf[40..44].copy_from_slice(&payload_offset_u32.to_le_bytes());
    buf[44..48].copy_from_slice(&0u32.to_le_bytes());
    let header_checksum = header_checksum(&buf[..PREFIX_LEN], &header);
    buf[24..32].copy_from_slice(&header_checksum.to_le_bytes());
    Ok(buf)
}

fn header_checksum(prefix: &[u8], header: &[u8]) -> u64 {
    let mut h = Xxh3Default::new();
    h.update(&prefix[0..24]);
    h.update(&prefix[40..48]);
    h.update(header);
    h.digest()
}

/// The parsed fixed prefix of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// Flags.
    pub flags: u16,
    /// Length of the metadata header.
    pub header_len: u32,
    /// Length of the payload.
    pub payload_len: u64,
    /// Offset of the payload.
    pub payload_offset: u32,
    header_checksum: u64,
    payload_checksum: u64,
}

impl Prefix {
    /// Parses and checks the fixed prefix. `total_len` is the item's real size, if known.
    pub fn parse(bytes: &[u8], total_len: Option<u64>) -> Result<Prefix, EntryError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
                return Err(EntryError::Truncated(format!(
                    "{} bytes, shorter than the magic",
                    bytes.len()
                )));
            }
            return Err(EntryError::Foreign);
        }
        if bytes.len() < PREFIX_LEN {
            return Err(EntryError::Truncated(format!(
                "{} bytes, shorter than the {PREFIX_LEN}-byte prefix",
                bytes.len()
            )));
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
        let version = u16_at(8);
        if version != FORMAT_VERSION {
            return Err(EntryError::UnsupportedVersion(version));
        }
        let prefix = Prefix {
            flags: u16_at(10),
            header_len: u32_at(12),
            payload_len: u64_at(16),
            header_checksum: u64_at(24),
            payload_checksum: u64_at(32),
            payload_offset: u32_at(40),
        };
        if prefix.flags & !KNOWN_FLAGS != 0 {
            return Err(EntryError::Corrupted(format!(
                "unknown flags {:#x}",
                prefix.flags
            )));
        }
        let header_end = PREFIX_LEN as u64 + u64::from(prefix.header_len);
        let offset = u64::from(prefix.payload_offset);
        if offset < header_end || offset % PAYLOAD_ALIGN as u64 != 0 || u32_at(44) != 0 {
            return Err(EntryError::Corrupted("inconsistent prefix".into()));
        }
        if let Some(total) = total_len {
            let expected = offset.checked_add(prefix.payload_len);
            if expected.is_none_or(|e| e > total) {
                return Err(EntryError::Truncated(format!(
                    "{total} bytes, the header announces {}",
                    expected.map_or_else(|| "more".to_owned(), |e| e.to_string())
                )));
            }
            if expected != Some(total) {
                return Err(EntryError::Corrupted(format!(
                    "{total} bytes, the header announces {}",
                    offset + prefix.payload_len
                )));
            }
        }
        Ok(prefix)
    }

    /// How many bytes from the start hold the prefix and the metadata.
    pub fn metadata_end(&self) -> u64 {
        u64::from(self.payload_offset)
    }

    /// The total size of the entry.
    pub fn total_len(&self) -> u64 {
        u64::from(self.payload_offset) + self.payload_len
    }

    fn check_header<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], EntryError> {
        let end = PREFIX_LEN + self.header_len as usize;
        if bytes.len() < end {
            return Err(EntryError::Truncated("metadata cut short".into()));
        }
        let header = &bytes[PREFIX_LEN..end];
        let padding_end = (self.payload_offset as usize).min(bytes.len());
        if bytes[end..padding_end].iter().any(|&b| b != 0) {
            return Err(EntryError::Corrupted("non-zero padding".into()));
        }
        if header_checksum(&bytes[..PREFIX_LEN], header) != self.header_checksum {
            return Err(EntryError::Corrupted("metadata checksum mismatch".into()));
        }
        Ok(header)
    }
}

/// A parsed, checked entry.
#[derive(Debug, Clone)]
pub struct Entry {
    prefix: Prefix,
    bytes: Bytes,
}

impl Entry {
    /// Parses a whole entry and checks both checksums. Never allocates.
    pub fn parse(bytes: Bytes) -> Result<Entry, EntryError> {
        let prefix = Prefix::parse(&bytes, Some(bytes.len() as u64))?;
        prefix.check_header(&bytes)?;
        let payload = &bytes[prefix.payload_offset as usize..];
        if xxhash_rust::xxh3::xxh3_64(payload) != prefix.payload_checksum {
            return Err(EntryError::Corrupted("payload checksum mismatch".into()));
        }
        Ok(Entry { prefix, bytes })
    }

    /// The metadata.
    pub fn metadata(&self) -> Result<Metadata, EntryError> {
        decode_metadata(&self.bytes[PREFIX_LEN..PREFIX_LEN + self.prefix.header_len as usize])
    }

    /// The payload, sharing the entry's buffer.
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(self.prefix.payload_offset as usize..)
    }

    /// The fixed prefix.
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// The whole entry.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Parses the metadata from the first bytes of an entry (at least [`Prefix::metadata_end`]
/// of them), checking the header checksum but not the payload. `total_len` is the item's
/// real size, if known.
pub fn parse_metadata(head: &[u8], total_len: Option<u64>) -> Result<Metadata, EntryError> {
    let prefix = Prefix::parse(head, total_len)?;
    let header = prefix.check_header(head)?;
    decode_metadata(header)
}

fn decode_metadata(header: &[u8]) -> Result<Metadata, EntryError> {
    rmp_serde::from_slice(header).map_err(|e| EntryError::Decode(format!("metadata: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Metadata, Vec<u8>) {
        let meta = Metadata::new(
            0.5,
            Utc::now(),
            vec![("x".into(), "1".into())],
            "m.f",
            "00",
            "xxh3-128",
            "msgpack",
        );
        let bytes = encode::<String>(&meta, |buf| {
            buf.extend_from_slice(b"payload!");
            Ok(())
        })
        .unwrap();
        (meta, bytes)
    }

    #[test]
    fn round_trip_and_alignment() {
        let (meta, bytes) = sample();
        let entry = Entry::parse(Bytes::from(bytes)).unwrap();
        assert_eq!(entry.metadata().unwrap(), meta);
        assert_eq!(&entry.payload()[..], b"payload!");
        assert_eq!(entry.prefix().payload_offset as usize % PAYLOAD_ALIGN, 0);
    }

    #[test]
    fn every_truncation_is_detected() {
        let (_, bytes) = sample();
        for len in 0..bytes.len() {
            let err = Entry::parse(Bytes::copy_from_slice(&bytes[..len])).unwrap_err();
            assert!(
                matches!(err, EntryError::Truncated(_) | EntryError::Foreign),
                "len {len}: {err:?}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let (_, bytes) = sample();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let res = Entry::parse(Bytes::from(b));
                assert!(res.is_err(), "flip at byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn foreign_and_trailing_garbage() {
        assert_eq!(
            Entry::parse(Bytes::from_static(
                b"\x89PNG\r\n\x1a\n-------------------------------------------------------"
            ))
            .unwrap_err(),
            EntryError::Foreign
        );
        let (_, mut bytes) = sample();
        bytes.push(0);
        assert!(matches!(
            Entry::parse(Bytes::from(bytes)).unwrap_err(),
            EntryError::Corrupted(_)
        ));
    }

    #[test]
    fn huge_announced_lengths_do_not_allocate() {
        let (_, mut bytes) = sample();
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Entry::parse(Bytes::from(bytes)).is_err());
    }

    #[test]
    fn metadata_from_head_only() {
        let (meta, bytes) = sample();
        let prefix = Prefix::parse(&bytes, None).unwrap();
        let head = &bytes[..prefix.metadata_end() as usize];
        assert_eq!(
            parse_metadata(head, Some(bytes.len() as u64)).unwrap(),
            meta
        );
    }
}
