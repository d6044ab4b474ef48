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
    /// The digest of all bytes written so far followed by `rest`: a hasher that has seen
    /// nothing yet may hash `rest` in one go.
    fn finish_with(&mut self, rest: &[u8]) -> Digest {
        if !rest.is_empty() {
            self.write(rest);
        }
        self.finish()
    }
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

    #[inline]
    fn finish_with(&mut self, rest: &[u8]) -> Digest {
        (**self).finish_with(rest)
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

    #[inline]
    fn finish_with(&mut self, rest: &[u8]) -> Digest {
        (**self).finish_with(rest)
    }
}

/// A hash algorithm: a named factory of hashers. Swappable in Memory.
pub trait HashAlgorithm: fmt::Debug + Send + Sync + 'static {
    /// Stable id stored in cache entries, e.g. "xxh3-128".
    fn id(&self) -> &'static str;
    /// A fresh hasher of this algorithm.
    fn hasher(&self) -> Box<dyn StableHasher + Send>;
    /// The digest of `bytes`, as a fresh hasher fed them would give. Override it where hashing
    /// one buffer in one go is cheaper than setting up a streaming hasher.
    fn digest(&self, bytes: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.write(bytes);
        hasher.finish()
    }
}

/// A hasher of an algorithm that sets up its streaming state only if it is fed more than one
/// buffer: a value whose whole encoding fits the staging buffer of
/// [`CanonicalHasher`](crate::CanonicalHasher) is hashed in one go with [`HashAlgorithm::digest`] (for xxh3, the
/// one-shot function, without the streaming state's set-up).
pub struct LazyHasher<'a> {
    algorithm: &'a dyn HashAlgorithm,
    started: Option<Box<dyn StableHasher + Send>>,
}

impl<'a> LazyHasher<'a> {
    /// A hasher of `algorithm` that has seen nothing yet.
    pub fn new(algorithm: &'a dyn HashAlgorithm) -> Self {
        LazyHasher {
            algorithm,
            started: None,
        }
    }

    fn started(&mut self) -> &mut Box<dyn StableHasher + Send> {
        self.started.get_or_insert_with(|| self.algorithm.hasher())
    }
}

impl fmt::Debug for LazyHasher<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyHasher")
            .field("algorithm", &self.algorithm.id())
            .field("started", &self.started.is_some())
            .finish()
    }
}

impl StableHasher for LazyHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.started().write(bytes);
    }

    fn finish(&self) -> Digest {
        match &self.started {
            Some(hasher) => hasher.finish(),
            None => self.algorithm.digest(&[]),
        }
    }

    fn finish_with(&mut self, rest: &[u8]) -> Digest {
        match &mut self.started {
            Some(hasher) => hasher.finish_with(rest),
            None => self.algorithm.digest(rest),
        }
    }
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

    fn digest(&self, bytes: &[u8]) -> Digest {
        Digest(xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes())
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

    /// A lazy hasher gives what a streaming one gives, whether it is fed one buffer (hashed in
    /// one go) or several, for both algorithms.
    #[test]
    fn lazy_hashers_match_streaming_ones() {
        let keyed =
            crate::Blake3Keyed::from_secret(b"a secret of at least 32 bytes long!!").unwrap();
        let algorithms: [&dyn HashAlgorithm; 2] = [&Xxh3, &keyed];
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        for algorithm in algorithms {
            for len in [0, 1, 16, 17, 128, 129, 240, 241, 1000, 10_000] {
                let mut streaming = algorithm.hasher();
                streaming.write(&data[..len]);
                let expected = streaming.finish();
                assert_eq!(algorithm.digest(&data[..len]), expected, "{len}");
                let mut once = LazyHasher::new(algorithm);
                assert_eq!(once.finish_with(&data[..len]), expected, "{len}");
                let mut twice = LazyHasher::new(algorithm);
                twice.write(&data[..len / 2]);
                assert_eq!(twice.finish_with(&data[len / 2..len]), expected, "{len}");
            }
        }
    }

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
