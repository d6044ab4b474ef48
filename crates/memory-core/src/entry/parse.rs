//! Reading entries: every length and checksum is checked before anything is decoded.

use std::ops::Range;

use bytes::Bytes;

use super::{
    ARRAY_BLOCK, DEFAULT_MAX_DECOMPRESSED, Expected, FLAG_ARRAYS, FLAG_SIGNED, FLAG_ZSTD,
    FORMAT_VERSION, HEAD_FIXED, KNOWN_FLAGS, MAGIC, MAX_HEADER_LEN, Metadata, PAYLOAD_ALIGN,
    PREFIX_LEN, ZEROS, ZSTD_WINDOW_LOG_MAX, check_answers, decode_metadata, header_checksum,
    parallel_map,
};
use crate::error::EntryError;
use crate::signing::{SIGNATURE_LEN, SigningKey};

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
        if prefix.header_len > MAX_HEADER_LEN {
            return Err(EntryError::Corrupted(format!(
                "metadata of {} bytes, more than the {MAX_HEADER_LEN} a writer makes",
                prefix.header_len
            )));
        }
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
        // The payload starts at the first aligned offset after the header (and signature), as
        // writers place it: the padding before it is shorter than one alignment, so that the
        // metadata's bound also bounds a metadata-only read (the first `O` bytes).
        if offset != (header_end + room).next_multiple_of(PAYLOAD_ALIGN as u64) || u32_at(44) != 0 {
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
        // Compared with zeros a vector at a time (`memcmp`): an honest entry's padding is
        // shorter than one `ZEROS`.
        let zero = |part: &[u8]| part == &ZEROS[..part.len()];
        if !bytes[end..padding_end].chunks(ZEROS.len()).all(zero) {
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
    /// The layout of an uncompressed payload with arrays: boxed, so that an entry without
    /// arrays, the common small one, is cheap to move.
    layout: Option<Box<Layout>>,
}

/// What parsing an entry found, without its bytes: an [`Entry`] again, given the same bytes.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    prefix: Prefix,
    layout: Option<Box<Layout>>,
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
    /// The size of the whole entry in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Parses a whole entry and checks every checksum, arrays included. Never allocates more
    /// than the entry's array count.
    pub fn parse(bytes: Bytes) -> Result<Entry, EntryError> {
        let entry = Entry::parse_head(bytes)?;
        if let Some(layout) = &entry.layout {
            layout.verify_arrays(&entry.bytes[entry.prefix.payload_offset as usize..])?;
        }
        Ok(entry)
    }

    /// What parsing this entry found, without its bytes.
    pub(crate) fn parsed(&self) -> Parsed {
        Parsed {
            prefix: self.prefix,
            layout: self.layout.clone(),
        }
    }

    /// The entry `parsed` was found in, given its bytes again: `bytes` must be exactly the
    /// bytes that were parsed (nothing is checked).
    pub(crate) fn from_parsed(parsed: &Parsed, bytes: Bytes) -> Entry {
        Entry {
            prefix: parsed.prefix,
            bytes,
            layout: parsed.layout.clone(),
        }
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
            (Some(Box::new(layout)), &payload[..head_end])
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

    /// Checks that the entry answers for `expected`, as its metadata records: an entry moved or
    /// copied under another call's key (by a tool, a person, or a hostile writer of a shared
    /// store) is refused, not served as that call's result, and an entry of other code is
    /// [`EntryError::OtherCode`]. Decodes only those fields and the call's duration, which it
    /// gives (in seconds; zero when the metadata records none that makes sense), without
    /// allocating.
    pub fn check_written_for(&self, expected: &Expected<'_>) -> Result<f64, EntryError> {
        let header = &self.bytes[PREFIX_LEN..PREFIX_LEN + self.prefix.header_len as usize];
        check_answers(header, expected)
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

    /// The structure of a payload that is neither compressed nor holds arrays, borrowed from
    /// the entry (a decode of it needs no copy and no shared handle on the bytes); `None` for
    /// any other payload, which [`decode_payload_within`](Entry::decode_payload_within) gives.
    pub fn plain_structure(&self) -> Option<&[u8]> {
        (self.prefix.flags & (FLAG_ZSTD | FLAG_ARRAYS) == 0)
            .then(|| &self.bytes[self.prefix.payload_offset as usize..])
    }

    /// The payload, decompressed if needed, with its arrays located. A compressed payload may
    /// decompress to at most [`DEFAULT_MAX_DECOMPRESSED`] bytes; see
    /// [`decode_payload_within`](Entry::decode_payload_within).
    pub fn decode_payload(&self) -> Result<Payload, EntryError> {
        self.decode_payload_within(DEFAULT_MAX_DECOMPRESSED)
    }

    /// The payload, decompressed if needed, with its arrays located. A compressed payload must
    /// announce its size in its zstd frame header, and decompress to exactly that many bytes,
    /// at most `max_decompressed`: a hostile entry of a few kilobytes cannot make a reader
    /// allocate more.
    pub fn decode_payload_within(&self, max_decompressed: u64) -> Result<Payload, EntryError> {
        let stored = self.payload();
        let (bytes, layout) = if self.prefix.flags & FLAG_ZSTD != 0 {
            let bytes = Bytes::from(decompress(&stored, max_decompressed)?);
            let layout = if self.prefix.flags & FLAG_ARRAYS != 0 {
                Some(Layout::parse(&bytes)?)
            } else {
                None
            };
            (bytes, layout)
        } else {
            (stored, self.layout.as_deref().cloned())
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

/// Decompresses a payload. The frame must announce its decompressed size (every writer
/// pledges it), that size must be at most `max`, and the frame must decompress to exactly that
/// size; frames whose window is larger than [`ZSTD_WINDOW_LOG_MAX`] allows are refused.
/// Allocates the window (at most 2 MiB) and the output as it grows, never more than the
/// announced size, whatever the frame holds.
fn decompress(stored: &[u8], max: u64) -> Result<Vec<u8>, EntryError> {
    use std::io::Read as _;
    let fail = |e: std::io::Error| EntryError::Corrupted(format!("cannot decompress: {e}"));
    let announced = match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(size)) => size,
        Ok(None) => {
            return Err(EntryError::Corrupted(
                "the compressed payload does not announce its size".into(),
            ));
        }
        Err(_) => return Err(EntryError::Corrupted("not a zstd frame".into())),
    };
    if announced > max {
        return Err(EntryError::Corrupted(format!(
            "the compressed payload announces {announced} bytes, more than the {max} a read \
             may decompress (`max_decompressed_size`)"
        )));
    }
    let mut decoder = zstd::stream::read::Decoder::with_buffer(stored).map_err(fail)?;
    decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(fail)?;
    // Grow with what is really there: the announcement is only an upper bound here.
    let start = usize::try_from(announced.min(stored.len() as u64 * 4)).unwrap_or(0);
    let mut out = Vec::with_capacity(start);
    decoder
        .take(announced.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(fail)?;
    if out.len() as u64 != announced {
        let held = if out.len() as u64 > announced {
            "more".to_owned()
        } else {
            out.len().to_string()
        };
        return Err(EntryError::Corrupted(format!(
            "the compressed payload announces {announced} bytes and holds {held}"
        )));
    }
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
