//! Writing entries: the prefix, the signed metadata, the payload and its arrays, as segments.

use bytes::Bytes;
use xxhash_rust::xxh3::Xxh3Default;

use super::{
    ARRAY_BLOCK, FLAG_ARRAYS, FLAG_SIGNED, FLAG_ZSTD, FORMAT_VERSION, HEAD_FIXED, MAGIC,
    MAX_HEADER_LEN, Metadata, MetadataRef, PAYLOAD_ALIGN, PREFIX_LEN, ZEROS, ZSTD_WINDOW_LOG_MAX,
    header_checksum, parallel_map,
};
use crate::backend::Blob;
use crate::signing::{SIGNATURE_LEN, SigningKey};

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

/// The capacity the head of an entry is made with: room for the prefix, the metadata of a
/// call with a few short arguments, a signature and the padding, so that writing the metadata
/// seldom grows it.
const HEAD_CAPACITY: usize = 512;

/// [`encode_parts`], signed with `key` if one is given ([`FLAG_SIGNED`]).
pub fn encode_signed(
    metadata: &Metadata,
    structure: Vec<u8>,
    arrays: Vec<Bytes>,
    zstd_level: Option<i32>,
    key: Option<&SigningKey>,
) -> Result<Blob, String> {
    encode_within(
        &metadata.borrowed(),
        structure,
        arrays,
        zstd_level,
        key,
        u64::MAX,
    )
}

/// [`encode_signed`], compressed only if the payload is at most `max_decompressed` bytes: a
/// reader refuses to decompress more (`max_decompressed_size`), so a larger payload is written
/// as it is, and stays readable.
pub(crate) fn encode_within(
    metadata: &MetadataRef<'_>,
    structure: Vec<u8>,
    arrays: Vec<Bytes>,
    zstd_level: Option<i32>,
    key: Option<&SigningKey>,
    max_decompressed: u64,
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
    if let Some(level) = zstd_level.filter(|_| payload.len() <= max_decompressed) {
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
    // The metadata is written in place after the prefix, in a buffer that most headers fit.
    let mut head = Vec::with_capacity(HEAD_CAPACITY);
    head.extend_from_slice(&[0; PREFIX_LEN]);
    metadata.write_to(&mut head)?;
    let header_end = head.len();
    let header_len = u32::try_from(header_end - PREFIX_LEN)
        .ok()
        .filter(|len| *len <= MAX_HEADER_LEN)
        .ok_or_else(|| format!("metadata of more than {MAX_HEADER_LEN} bytes"))?;
    let signature_len = if key.is_some() { SIGNATURE_LEN } else { 0 };
    let payload_offset = (header_end + signature_len).next_multiple_of(PAYLOAD_ALIGN);
    let payload_offset_u32 =
        u32::try_from(payload_offset).map_err(|_| "metadata too large".to_owned())?;
    head.resize(payload_offset, 0);
    head[0..8].copy_from_slice(MAGIC);
    head[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    head[10..12].copy_from_slice(&flags.to_le_bytes());
    head[12..16].copy_from_slice(&header_len.to_le_bytes());
    head[16..24].copy_from_slice(&payload.len().to_le_bytes());
    head[32..40].copy_from_slice(&checksum.to_le_bytes());
    head[40..44].copy_from_slice(&payload_offset_u32.to_le_bytes());
    let (prefix, header) = head.split_at(PREFIX_LEN);
    let header_checksum = header_checksum(prefix, &header[..header_end - PREFIX_LEN]);
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
