//! Hash functions: the [`StableHasher`] and [`HashAlgorithm`] traits and the
//! default xxh3-128 implementation (the keyed BLAKE3 one is in `keyed.rs`).

use std::fmt;

use crate::Digest;

/// A streaming hash function with a 128-bit output.
///
/// The output must depend only on the concatenation of the bytes written, not
/// on how they were split between calls to [`write`](StableHasher::write).
pub trait StableHasher {
    /// Feeds bytes into the hash.
    fn write(&mut self, bytes: &[u8]);
    /// The digest of all bytes written so far (the hasher stays usable).
    fn finish(&self) -> Digest;
}

impl<H: StableHasher + ?Sized> StableHasher for Box<H> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        (**self).write(bytes);
    }

    #[inline]
    fn finish(&self) -> Digest {
        (**self).finish()
    }
}

impl<H: StableHasher + ?Sized> StableHasher for &mut H {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        (**self).write(bytes);
    }

    #[inline]
    fn finish(&self) -> Digest {
        (**self).finish()
    }
}

/// A hash algorithm: a named factory of hashers. Swappable in Memory.
pub trait HashAlgorithm: fmt::Debug + Send + Sync + 'static {
    /// Stable id stored in cache entries, e.g. "xxh3-128".
    fn id(&self) -> &'static str;
    /// A fresh hasher of this algorithm.
    fn hasher(&self) -> Box<dyn StableHasher + Send>;
}

/// XXH3 with 128-bit output, seed 0 and the default secret: the default
/// algorithm, id `"xxh3-128"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Xxh3;

impl HashAlgorithm for Xxh3 {
    fn id(&self) -> &'static str {
        "xxh3-128"
    }

    fn hasher(&self) -> Box<dyn StableHasher + Send> {
        Box::new(Xxh3Hasher::default())
    }
}

/// Streaming XXH3-128 hasher. The digest is the little-endian bytes of the
/// 128-bit hash value.
#[derive(Clone, Default)]
pub struct Xxh3Hasher(xxhash_rust::xxh3::Xxh3Default);

impl Xxh3Hasher {
    /// A hasher with no input yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for Xxh3Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Xxh3Hasher").finish_non_exhaustive()
    }
}

impl StableHasher for Xxh3Hasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    #[inline]
    fn finish(&self) -> Digest {
        Digest(self.0.digest128().to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_matches_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let expected = xxhash_rust::xxh3::xxh3_128(&data).to_le_bytes();
        for split in [0, 1, 17, 255, 256, 257, 4096, 99_999, 100_000] {
            let mut h = Xxh3Hasher::new();
            h.write(&data[..split]);
            h.write(&data[split..]);
            assert_eq!(h.finish().0, expected, "split at {split}");
        }
        let mut boxed = Xxh3.hasher();
        boxed.write(&data);
        assert_eq!(boxed.finish().0, expected);
        assert_eq!(Xxh3.id(), "xxh3-128");
    }
}
