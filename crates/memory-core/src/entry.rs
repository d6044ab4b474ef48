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
//! 48+H        zero padding up to O (up to O - 32 in a signed entry)
//! O-32   32   in a signed entry only: its signature (see below)
//!  O      P   payload: the output, encoded by the codec named in the metadata
//! ```
//!
//! The total length must be exactly `O + P`. A truncated, corrupted or foreign item is detected
//! and reported as such; nothing is decoded from it. The payload starts at an aligned offset so
//! that arrays inside it can be memory-mapped in place. Reading the metadata only needs the first
//! `O` bytes (one ranged read on object stores).
//!
//! Without flags, the payload is the codec's encoding of the output. Two flags change that:
//!
//! - [`FLAG_ARRAYS`]: the output holds [`Array`](crate::Array)s, whose numbers are stored out of
//!   line, raw, where they can be mapped:
//!
//!   ```text
//!   offset size
//!    0      8    structure length S (u64)
//!    8      8    array count N (u64)
//!   16      8    block count M (u64)
//!   24      S    structure: the output, encoded by the codec, arrays replaced by descriptors
//!           16N  per array: its offset from the payload start (a multiple of 64), its length
//!           8M   xxh3-64 of each 16 MiB block of each array (with its zero padding), in order
//!                zero padding up to a multiple of 64: the head of the payload ends here
//!                each array's bytes (little-endian numbers), zero-padded to a multiple of 64
//!   ```
//!
//!   The payload checksum of the prefix covers the head only; each array is covered by its
//!   block checksums. A full check ([`Entry::parse`]) verifies them all; a memory-mapped load
//!   ([`Entry::parse_head`]) verifies the head and leaves the arrays' pages untouched.
//! - [`FLAG_ZSTD`]: the payload is a zstd frame holding the payload that the other flags
//!   describe, and the payload checksum covers the compressed bytes. The frame's window is at
//!   most 2 MiB ([`ZSTD_WINDOW_LOG_MAX`]): a decoder allocates the window a frame header
//!   announces before it decodes anything, so a reader refuses larger ones rather than let a
//!   few bytes make it allocate up to 128 MiB.
//! - [`FLAG_SIGNED`]: the 32 bytes before the payload hold an HMAC-SHA256, with the key of
//!   the memory that wrote it, of every other byte of the entry (see
//!   [`SigningKey`]). Readers without a key ignore it; readers with one
//!   refuse entries that are not signed with it ([`Entry::verify_signature`]).

use std::ops::Range;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

use crate::backend::Blob;
use crate::error::EntryError;
use crate::signing::{SIGNATURE_LEN, SigningKey};

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

/// Flag: the output's arrays are stored out of line (see the module documentation).
pub const FLAG_ARRAYS: u16 = 1;
/// Flag: the payload is compressed with zstd.
pub const FLAG_ZSTD: u16 = 2;
/// Flag: the entry is signed (see the module documentation).
pub const FLAG_SIGNED: u16 = 4;
const KNOWN_FLAGS: u16 = FLAG_ARRAYS | FLAG_ZSTD | FLAG_SIGNED;
/// Arrays are checksummed in blocks of this many bytes.
pub const ARRAY_BLOCK: usize = 16 << 20;
/// The base-2 logarithm of the largest zstd window (back-reference distance) of a compressed
/// payload: 2 MiB, the window of zstd's default level for large inputs. Writers compress with
/// it at most, readers refuse frames that announce a larger one.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 21;
const HEAD_FIXED: usize = 24;
static ZEROS: [u8; PAYLOAD_ALIGN] = [0; PAYLOAD_ALIGN];

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

/// Encodes an entry from the codec's encoding of the output (`structure`) and the bytes of the
/// output's arrays, in the order of their descriptors. The arrays are not copied: they become
/// segments of the returned [`Blob`]. With `zstd_level`, the payload is compressed (and the
/// arrays copied into the compressed frame).
pub fn encode_parts(
    metadata: &Metadata,
    structure: Vec<u8>,
    arrays: Vec<Bytes>,
    zstd_level: Option<i32>,
) -> Result<Blob, String> {
    encode_signed(metadata, structure, arrays, zstd_level, None)
}

/// [`encode_parts`], signed with `key` if one is given ([`FLAG_SIGNED`]).
pub fn encode_signed(
    metadata: &Metadata,
    structure: Vec<u8>,
    arrays: Vec<Bytes>,
    zstd_level: Option<i32>,
    key: Option<&SigningKey>,
) -> Result<Blob, String> {
    let mut flags = 0u16;
    if key.is_some() {
        flags |= FLAG_SIGNED;
    }
    let (mut payload, mut checksum) = if arrays.is_empty() {
        let checksum = xxhash_rust::xxh3::xxh3_64(&structure);
        (Blob::from(structure), checksum)
    } else {
        flags |= FLAG_ARRAYS;
        array_payload(&structure, arrays)?
    };
    if let Some(level) = zstd_level {
        flags |= FLAG_ZSTD;
        let capacity = usize::try_from(payload.len() / 2).unwrap_or(0);
        let mut encoder = zstd::stream::Encoder::new(Vec::with_capacity(capacity), level)
            .map_err(|e| format!("cannot start compressing: {e}"))?;
        encoder
            .set_pledged_src_size(Some(payload.len()))
            .map_err(|e| format!("cannot compress: {e}"))?;
        encoder
            .window_log(ZSTD_WINDOW_LOG_MAX)
            .map_err(|e| format!("cannot compress: {e}"))?;
        for part in payload.parts() {
            std::io::Write::write_all(&mut encoder, part)
                .map_err(|e| format!("cannot compress: {e}"))?;
        }
        let compressed = encoder
            .finish()
            .map_err(|e| format!("cannot compress: {e}"))?;
        checksum = xxhash_rust::xxh3::xxh3_64(&compressed);
        payload = Blob::from(compressed);
    }
    let header = rmp_serde::to_vec_named(metadata).map_err(|e| e.to_string())?;
    let header_len = u32::try_from(header.len()).map_err(|_| "metadata too large".to_owned())?;
    let signature_len = if key.is_some() { SIGNATURE_LEN } else { 0 };
    let payload_offset =
        (PREFIX_LEN + header.len() + signature_len).next_multiple_of(PAYLOAD_ALIGN);
    let payload_offset_u32 =
        u32::try_from(payload_offset).map_err(|_| "metadata too large".to_owned())?;
    let mut head = Vec::with_capacity(payload_offset);
    head.extend_from_slice(&[0; PREFIX_LEN]);
    head.extend_from_slice(&header);
    head.resize(payload_offset, 0);
    head[0..8].copy_from_slice(MAGIC);
    head[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    head[10..12].copy_from_slice(&flags.to_le_bytes());
    head[12..16].copy_from_slice(&header_len.to_le_bytes());
    head[16..24].copy_from_slice(&payload.len().to_le_bytes());
    head[32..40].copy_from_slice(&checksum.to_le_bytes());
    head[40..44].copy_from_slice(&payload_offset_u32.to_le_bytes());
    let header_checksum = header_checksum(&head[..PREFIX_LEN], &header);
    head[24..32].copy_from_slice(&header_checksum.to_le_bytes());
    if let Some(key) = key {
        let at = payload_offset - SIGNATURE_LEN;
        let signature =
            key.sign(std::iter::once(&head[..at]).chain(payload.parts().iter().map(|p| &p[..])));
        head[at..payload_offset].copy_from_slice(&signature);
    }
    let mut entry = Blob::from(head);
    for part in payload.into_parts() {
        entry.push(part);
    }
    Ok(entry)
}

/// Lays out a payload with out-of-line arrays; gives it and the checksum of its head.
fn array_payload(structure: &[u8], arrays: Vec<Bytes>) -> Result<(Blob, u64), String> {
    let n = arrays.len();
    let blocks: usize = arrays
        .iter()
        .map(|a| {
            a.len()
                .next_multiple_of(PAYLOAD_ALIGN)
                .div_ceil(ARRAY_BLOCK)
        })
        .sum();
    let head_len = HEAD_FIXED + structure.len() + 16 * n + 8 * blocks;
    let mut head = Vec::with_capacity(head_len.next_multiple_of(PAYLOAD_ALIGN));
    head.extend_from_slice(&(structure.len() as u64).to_le_bytes());
    head.extend_from_slice(&(n as u64).to_le_bytes());
    head.extend_from_slice(&(blocks as u64).to_le_bytes());
    head.extend_from_slice(structure);
    let mut at = head_len.next_multiple_of(PAYLOAD_ALIGN) as u64;
    for a in &arrays {
        head.extend_from_slice(&at.to_le_bytes());
        head.extend_from_slice(&(a.len() as u64).to_le_bytes());
        at += a.len().next_multiple_of(PAYLOAD_ALIGN) as u64;
    }
    for a in &arrays {
        for sum in block_checksums(a) {
            head.extend_from_slice(&sum.to_le_bytes());
        }
    }
    head.resize(head_len.next_multiple_of(PAYLOAD_ALIGN), 0);
    let checksum = xxhash_rust::xxh3::xxh3_64(&head);
    let mut payload = Blob::from(head);
    for a in arrays {
        let pad = a.len().next_multiple_of(PAYLOAD_ALIGN) - a.len();
        payload.push(a);
        payload.push(Bytes::from_static(&ZEROS[..pad]));
    }
    Ok((payload, checksum))
}

/// The checksums of an array's blocks, over its bytes followed by its zero padding. Blocks are
/// hashed on several threads when there are many.
fn block_checksums(array: &[u8]) -> Vec<u64> {
    let padded = array.len().next_multiple_of(PAYLOAD_ALIGN);
    let starts: Vec<usize> = (0..padded).step_by(ARRAY_BLOCK).collect();
    let sum_of = |&start: &usize| {
        let end = (start + ARRAY_BLOCK).min(padded);
        let mut h = Xxh3Default::new();
        h.update(&array[start.min(array.len())..end.min(array.len())]);
        let zeros = end - end.min(array.len()).max(start);
        h.update(&ZEROS[..zeros]);
        h.digest()
    };
    parallel_map(&starts, sum_of)
}

/// Maps `f` over `items`, on up to as many threads as there are cores when there are several
/// items.
fn parallel_map<T: Sync, R: Send + Default + Clone>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let mut out = vec![R::default(); items.len()];
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (ins, outs) in items.chunks(chunk).zip(out.chunks_mut(chunk)) {
            let f = &f;
            scope.spawn(move || {
                for (i, o) in ins.iter().zip(outs) {
                    *o = f(i);
                }
            });
        }
    });
    out
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
        let room = if prefix.flags & FLAG_SIGNED != 0 {
            SIGNATURE_LEN as u64
        } else {
            0
        };
        if offset < header_end + room || offset % PAYLOAD_ALIGN as u64 != 0 || u32_at(44) != 0 {
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

    /// Whether the entry is signed ([`FLAG_SIGNED`]).
    pub fn is_signed(&self) -> bool {
        self.flags & FLAG_SIGNED != 0
    }

    fn signature_len(&self) -> usize {
        if self.is_signed() { SIGNATURE_LEN } else { 0 }
    }

    fn check_header<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], EntryError> {
        let end = PREFIX_LEN + self.header_len as usize;
        if bytes.len() < end {
            return Err(EntryError::Truncated("metadata cut short".into()));
        }
        let header = &bytes[PREFIX_LEN..end];
        let padding_end = (self.payload_offset as usize - self.signature_len()).min(bytes.len());
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
    /// The layout of an uncompressed payload with arrays.
    layout: Option<Layout>,
}

/// Where the parts of a payload with out-of-line arrays are, relative to the payload.
#[derive(Debug, Clone)]
struct Layout {
    structure: Range<usize>,
    arrays: Vec<Range<usize>>,
    /// Where the block checksums are.
    blocks: Range<usize>,
}

impl Layout {
    /// Reads and bounds-checks the head of a payload with arrays. Never allocates more than
    /// the array count, which is bounded by the payload's real size.
    fn parse(payload: &[u8]) -> Result<Layout, EntryError> {
        let bad = |why: &str| EntryError::Corrupted(format!("array layout: {why}"));
        let u64_at = |o: usize| -> Result<u64, EntryError> {
            payload
                .get(o..o + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| EntryError::Truncated("array layout cut short".into()))
        };
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| bad("too large"));
        let (s, n, m) = (
            to_usize(u64_at(0)?)?,
            to_usize(u64_at(8)?)?,
            to_usize(u64_at(16)?)?,
        );
        let head_len = n
            .checked_mul(16)
            .and_then(|t| m.checked_mul(8).and_then(|b| b.checked_add(t)))
            .and_then(|t| t.checked_add(HEAD_FIXED))
            .and_then(|t| t.checked_add(s))
            .filter(|&t| t <= payload.len())
            .ok_or_else(|| bad("the head is longer than the payload"))?;
        let structure = HEAD_FIXED..HEAD_FIXED + s;
        let table = structure.end;
        let blocks = table + 16 * n..head_len;
        let mut arrays = Vec::with_capacity(n);
        let mut next = head_len.next_multiple_of(PAYLOAD_ALIGN);
        let mut block_count = 0usize;
        for i in 0..n {
            let start = to_usize(u64_at(table + 16 * i)?)?;
            let len = to_usize(u64_at(table + 16 * i + 8)?)?;
            let padded = len
                .checked_next_multiple_of(PAYLOAD_ALIGN)
                .ok_or_else(|| bad("array too long"))?;
            if start != next || start.checked_add(padded).is_none_or(|e| e > payload.len()) {
                return Err(bad("arrays out of place"));
            }
            arrays.push(start..start + len);
            next = start + padded;
            block_count += padded.div_ceil(ARRAY_BLOCK);
        }
        if next != payload.len() {
            return Err(bad("the payload does not end with the last array"));
        }
        if block_count != m {
            return Err(bad("wrong number of block checksums"));
        }
        Ok(Layout {
            structure,
            arrays,
            blocks,
        })
    }

    /// Checks every array against its block checksums.
    fn verify_arrays(&self, payload: &[u8]) -> Result<(), EntryError> {
        let mut jobs = Vec::new();
        for array in &self.arrays {
            let padded = array.len().next_multiple_of(PAYLOAD_ALIGN);
            for start in (0..padded).step_by(ARRAY_BLOCK) {
                let end = (start + ARRAY_BLOCK).min(padded);
                jobs.push(array.start + start..array.start + end);
            }
        }
        let sums = parallel_map(&jobs, |r| xxhash_rust::xxh3::xxh3_64(&payload[r.clone()]));
        let stored = payload[self.blocks.clone()].chunks_exact(8);
        for (sum, stored) in sums.into_iter().zip(stored) {
            if stored != sum.to_le_bytes() {
                return Err(EntryError::Corrupted("array checksum mismatch".into()));
            }
        }
        Ok(())
    }
}

/// The decoded payload of an entry: the codec's part, and where each out-of-line array is.
#[derive(Debug, Clone)]
pub struct Payload {
    bytes: Bytes,
    structure: Range<usize>,
    arrays: Vec<Range<usize>>,
}

impl Payload {
    /// The bytes the codec decodes.
    pub fn structure(&self) -> &[u8] {
        &self.bytes[self.structure.clone()]
    }

    /// The payload (decompressed) that arrays view.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Where each out-of-line array's bytes are within [`bytes`](Self::bytes).
    pub fn arrays(&self) -> &[Range<usize>] {
        &self.arrays
    }
}

impl Entry {
    /// Parses a whole entry and checks every checksum, arrays included. Never allocates more
    /// than the entry's array count.
    pub fn parse(bytes: Bytes) -> Result<Entry, EntryError> {
        let entry = Entry::parse_head(bytes)?;
        if let Some(layout) = &entry.layout {
            layout.verify_arrays(&entry.bytes[entry.prefix.payload_offset as usize..])?;
        }
        Ok(entry)
    }

    /// Parses a whole entry and checks every checksum except those of out-of-line arrays, so
    /// that the arrays' pages of a memory-mapped entry are not read. See
    /// [`MmapMode`](crate::MmapMode).
    pub fn parse_head(bytes: Bytes) -> Result<Entry, EntryError> {
        let prefix = Prefix::parse(&bytes, Some(bytes.len() as u64))?;
        prefix.check_header(&bytes)?;
        let payload = &bytes[prefix.payload_offset as usize..];
        let (layout, checked) = if prefix.flags & FLAG_ZSTD == 0 && prefix.flags & FLAG_ARRAYS != 0
        {
            let layout = Layout::parse(payload)?;
            let head_end = layout.arrays.first().map_or(payload.len(), |a| a.start);
            (Some(layout), &payload[..head_end])
        } else {
            (None, payload)
        };
        if xxhash_rust::xxh3::xxh3_64(checked) != prefix.payload_checksum {
            return Err(EntryError::Corrupted("payload checksum mismatch".into()));
        }
        Ok(Entry {
            prefix,
            bytes,
            layout,
        })
    }

    /// Checks that the entry was written for the call `args_id` of the function whose folder is
    /// `func`, as its metadata records: an entry moved or copied under another call's key (by
    /// a tool, a person, or a hostile writer of a shared store) is refused, not served as that
    /// call's result. Decodes only those two fields, without allocating.
    pub fn check_written_for(&self, func: &str, args_id: &str) -> Result<(), EntryError> {
        #[derive(Deserialize)]
        struct Ids<'a> {
            #[serde(borrow)]
            func: &'a str,
            #[serde(borrow)]
            args_id: &'a str,
        }
        let header = &self.bytes[PREFIX_LEN..PREFIX_LEN + self.prefix.header_len as usize];
        let ids: Ids<'_> = rmp_serde::from_slice(header)
            .map_err(|e| EntryError::Decode(format!("metadata: {e}")))?;
        if ids.func != func || ids.args_id != args_id {
            return Err(EntryError::Corrupted(format!(
                "written for {}/{}, found under {func}/{args_id}",
                ids.func, ids.args_id
            )));
        }
        Ok(())
    }

    /// Checks that the entry is signed with `key` ([`FLAG_SIGNED`]): every byte of it is read.
    pub fn verify_signature(&self, key: &SigningKey) -> Result<(), EntryError> {
        if !self.prefix.is_signed() {
            return Err(EntryError::BadSignature("the entry is not signed".into()));
        }
        let offset = self.prefix.payload_offset as usize;
        let at = offset - SIGNATURE_LEN;
        let bytes = &self.bytes[..];
        if key.verify([&bytes[..at], &bytes[offset..]], &bytes[at..offset]) {
            Ok(())
        } else {
            Err(EntryError::BadSignature(
                "the entry is not signed with this memory's key".into(),
            ))
        }
    }

    /// The metadata.
    pub fn metadata(&self) -> Result<Metadata, EntryError> {
        decode_metadata(&self.bytes[PREFIX_LEN..PREFIX_LEN + self.prefix.header_len as usize])
    }

    /// The payload as stored (compressed if it is), sharing the entry's buffer.
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(self.prefix.payload_offset as usize..)
    }

    /// The payload, decompressed if needed, with its arrays located.
    pub fn decode_payload(&self) -> Result<Payload, EntryError> {
        let stored = self.payload();
        let (bytes, layout) = if self.prefix.flags & FLAG_ZSTD != 0 {
            let bytes = Bytes::from(decompress(&stored)?);
            let layout = if self.prefix.flags & FLAG_ARRAYS != 0 {
                Some(Layout::parse(&bytes)?)
            } else {
                None
            };
            (bytes, layout)
        } else {
            (stored, self.layout.clone())
        };
        Ok(match layout {
            Some(layout) => Payload {
                bytes,
                structure: layout.structure,
                arrays: layout.arrays,
            },
            None => Payload {
                structure: 0..bytes.len(),
                bytes,
                arrays: Vec::new(),
            },
        })
    }

    /// Whether the payload is compressed.
    pub fn is_compressed(&self) -> bool {
        self.prefix.flags & FLAG_ZSTD != 0
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

/// Decompresses a payload, refusing frames whose window is larger than
/// [`ZSTD_WINDOW_LOG_MAX`] allows. Allocates the window (at most 2 MiB) and the output as it
/// grows, whatever size the frame header announces.
fn decompress(stored: &[u8]) -> Result<Vec<u8>, EntryError> {
    let fail = |e: std::io::Error| EntryError::Corrupted(format!("cannot decompress: {e}"));
    let mut decoder = zstd::stream::read::Decoder::with_buffer(stored).map_err(fail)?;
    decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(fail)?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut decoder, &mut out).map_err(fail)?;
    Ok(out)
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
        let bytes = encode_parts(&meta, b"payload!".to_vec(), Vec::new(), None).unwrap();
        (meta, bytes.to_bytes().to_vec())
    }

    fn with_arrays(zstd: Option<i32>) -> (Metadata, Vec<u8>) {
        let (meta, _) = sample();
        let arrays = vec![
            Bytes::from((0..100u8).collect::<Vec<_>>()),
            Bytes::new(),
            Bytes::from(vec![9u8; 64]),
        ];
        let blob = encode_parts(&meta, b"structure".to_vec(), arrays, zstd).unwrap();
        (meta, blob.to_bytes().to_vec())
    }

    #[test]
    fn arrays_are_aligned_and_located() {
        for zstd in [None, Some(3)] {
            let (meta, bytes) = with_arrays(zstd);
            let entry = Entry::parse(Bytes::from(bytes)).unwrap();
            assert_eq!(entry.metadata().unwrap(), meta);
            assert_eq!(entry.is_compressed(), zstd.is_some());
            let payload = entry.decode_payload().unwrap();
            assert_eq!(payload.structure(), b"structure");
            let arrays = payload.arrays();
            assert_eq!(arrays.len(), 3);
            assert_eq!(
                &payload.bytes()[arrays[0].clone()],
                &(0..100u8).collect::<Vec<_>>()[..]
            );
            assert!(arrays[1].is_empty());
            assert_eq!(&payload.bytes()[arrays[2].clone()], &[9u8; 64][..]);
            for a in arrays {
                assert_eq!(a.start % PAYLOAD_ALIGN, 0);
            }
        }
    }

    #[test]
    fn every_bit_flip_in_an_entry_with_arrays_is_detected() {
        for zstd in [None, Some(1)] {
            let (_, bytes) = with_arrays(zstd);
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x10;
                assert!(
                    Entry::parse(Bytes::from(b)).is_err(),
                    "flip at byte {i} went unnoticed"
                );
            }
            for len in 0..bytes.len() {
                assert!(Entry::parse(Bytes::copy_from_slice(&bytes[..len])).is_err());
            }
        }
    }

    #[test]
    fn head_only_parsing_skips_array_bytes() {
        let (_, mut bytes) = with_arrays(None);
        let prefix = Prefix::parse(&bytes, None).unwrap();
        let entry = Entry::parse_head(Bytes::from(bytes.clone())).unwrap();
        let first = entry.decode_payload().unwrap().arrays()[0].start;
        bytes[prefix.payload_offset as usize + first] ^= 1;
        assert!(Entry::parse_head(Bytes::from(bytes.clone())).is_ok());
        assert!(matches!(
            Entry::parse(Bytes::from(bytes)).unwrap_err(),
            EntryError::Corrupted(_)
        ));
    }

    #[test]
    fn large_arrays_are_checked_block_by_block() {
        let (meta, _) = sample();
        let big = Bytes::from(vec![3u8; ARRAY_BLOCK * 2 + 5]);
        let blob = encode_parts(&meta, Vec::new(), vec![big], None).unwrap();
        assert!(blob.parts().len() > 2, "the array is a segment of its own");
        let mut bytes = blob.to_bytes().to_vec();
        assert!(Entry::parse(Bytes::from(bytes.clone())).is_ok());
        let last = bytes.len() - 70;
        bytes[last] = 4;
        assert!(Entry::parse(Bytes::from(bytes)).is_err());
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
    fn large_compressed_payloads_fit_the_window() {
        let (meta, _) = sample();
        // Larger than the window, compressible but not trivially, at a level whose own window
        // would be larger.
        let payload: Vec<u8> = (0..3u32 << 20).map(|i| (i / 7 % 251) as u8).collect();
        let blob = encode_parts(&meta, payload.clone(), Vec::new(), Some(9)).unwrap();
        let entry = Entry::parse(blob.to_bytes()).unwrap();
        assert_eq!(entry.decode_payload().unwrap().structure(), &payload[..]);
    }

    #[test]
    fn a_frame_announcing_a_large_window_is_refused_before_allocating_it() {
        let (meta, _) = sample();
        // A zstd frame header announcing a 128 MiB window and a 1 GiB content, then one RLE
        // block of 100 bytes.
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x88];
        frame.extend_from_slice(&(1u64 << 30).to_le_bytes());
        frame.extend_from_slice(&[0x23, 0x03, 0x00, 0x41]);
        let mut bytes = encode_parts(&meta, frame, Vec::new(), None)
            .unwrap()
            .to_bytes()
            .to_vec();
        bytes[10..12].copy_from_slice(&FLAG_ZSTD.to_le_bytes());
        let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let sum = header_checksum(
            &bytes[..PREFIX_LEN],
            &bytes[PREFIX_LEN..PREFIX_LEN + header_len],
        );
        bytes[24..32].copy_from_slice(&sum.to_le_bytes());
        let entry = Entry::parse(Bytes::from(bytes)).unwrap();
        let err = entry.decode_payload().unwrap_err();
        assert!(
            matches!(&err, EntryError::Corrupted(why) if why.contains("decompress")),
            "{err:?}"
        );
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
