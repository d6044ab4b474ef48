//! [`Blob`]: the bytes of an item to write, in segments.

use std::ops::Range;

use bytes::Bytes;

/// The bytes of an item to write, as one or more segments that are stored one after the other.
///
/// Large outputs are written without being gathered into one buffer first: an entry is its
/// metadata followed by the output's arrays, each still in the memory where the function left
/// it. Backends that need a single buffer call [`Blob::to_bytes`], which copies only when there
/// are several segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob {
    parts: Vec<Bytes>,
    len: u64,
}

impl Blob {
    /// An empty blob.
    pub fn new() -> Self {
        Blob::default()
    }

    /// Appends a segment (empty segments are dropped).
    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.len += part.len() as u64;
            self.parts.push(part);
        }
    }

    /// The total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the blob holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments, in order (none of them empty).
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The segments, in order (none of them empty).
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// The bytes as one buffer: shared when the blob has at most one segment, otherwise copied
    /// into a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => {
                let mut buf = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
                for part in parts {
                    buf.extend_from_slice(part);
                }
                Bytes::from(buf)
            }
        }
    }

    /// The bytes within `range` (clamped to the length), shared when they lie within one
    /// segment, otherwise copied.
    pub fn slice(&self, range: Range<u64>) -> Bytes {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        let mut out: Option<Vec<u8>> = None;
        let mut at = 0u64;
        for part in &self.parts {
            let part_end = at + part.len() as u64;
            if part_end > start && at < end {
                let from = (start.max(at) - at) as usize;
                let to = (end.min(part_end) - at) as usize;
                if out.is_none() && at <= start && end <= part_end {
                    return part.slice(from..to);
                }
                out.get_or_insert_with(|| Vec::with_capacity((end - start) as usize))
                    .extend_from_slice(&part[from..to]);
            }
            at = part_end;
        }
        out.map(Bytes::from).unwrap_or_default()
    }
}

impl From<Bytes> for Blob {
    fn from(bytes: Bytes) -> Self {
        let mut blob = Blob::new();
        blob.push(bytes);
        blob
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Blob::from(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for Blob {
    fn from(bytes: &'static [u8]) -> Self {
        Blob::from(Bytes::from_static(bytes))
    }
}

impl FromIterator<Bytes> for Blob {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Self {
        let mut blob = Blob::new();
        for part in iter {
            blob.push(part);
        }
        blob
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_segments_and_slices() {
        let blob: Blob = [
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"h"),
        ]
        .into_iter()
        .collect();
        assert_eq!(blob.len(), 8);
        assert_eq!(blob.parts().len(), 3);
        assert_eq!(&blob.to_bytes()[..], b"abcdefgh");
        assert_eq!(&blob.slice(0..3)[..], b"abc");
        assert_eq!(&blob.slice(4..6)[..], b"ef");
        assert_eq!(&blob.slice(2..8)[..], b"cdefgh");
        assert_eq!(&blob.slice(6..100)[..], b"gh");
        assert!(blob.slice(9..12).is_empty());
        assert!(Blob::new().to_bytes().is_empty());
    }
}
