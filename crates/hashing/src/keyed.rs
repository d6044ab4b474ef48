//! The hardened key mode: BLAKE3 in keyed mode, for stores whose writers are
//! not trusted.

use std::error::Error;
use std::fmt;

use crate::{Digest, HashAlgorithm, StableHasher};

/// The BLAKE3 `derive_key` context that turns a secret into the key of
/// [`Blake3Keyed`]. Being unique to this use, it makes the key differ from
/// anything else derived from the same secret (an HMAC signing key, say).
pub const ARGUMENT_KEY_CONTEXT: &str = "cachette 2026 argument keys";

/// The shortest secret [`Blake3Keyed::from_secret`] accepts, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// BLAKE3 in keyed mode, truncated to 128 bits: the hardened algorithm for
/// argument keys, id `"blake3-keyed"`.
///
/// The default algorithm, [`Xxh3`](crate::Xxh3), is fast but not
/// cryptographic, and its secret is public: anyone can build two different
/// arguments with the same digest (two 4 KiB byte strings take no time). In
/// a store that several parties write, a writer could then plant a result
/// under a key that another caller's arguments will reach. With this
/// algorithm a digest is a keyed MAC of the canonical encoding: without the
/// key nobody can compute the digest of a value, so nobody can aim at one,
/// let alone find two values that share one.
///
/// Use it when writers of the store are not all trusted, together with
/// signed entries (a writer who holds the key can still write anything).
/// Every program that shares the cache must use the same key; a different
/// key gives different digests, so the entries of the other key are simply
/// not found.
///
/// **Cost.** A small argument (an integer, a short string) hashes about as
/// fast as with xxh3, the canonical encoding costing more than the hash;
/// bulk data goes at BLAKE3's speed, a few times slower than xxh3 (a 4 KiB
/// byte string in about 2 µs instead of 0.45 µs, large arrays at 1 to
/// 2.5 GB/s): see the crate docs and the `hashing` benchmark.
///
/// The key never leaves the value: `Debug` hides it and the
/// [`id`](HashAlgorithm::id) stored with entries is the same for every key.
///
/// ```
/// use cachette_hashing::{Blake3Keyed, HashAlgorithm, hash, hash_with};
///
/// let keyed = Blake3Keyed::from_secret("a long random secret, shared by the writers")?;
/// let digest = hash_with(&keyed, &(42_i64, "mean"))?;
/// assert_ne!(digest, hash(&(42_i64, "mean"))?);
/// assert_eq!(keyed.id(), "blake3-keyed");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A memory takes it as its hasher (`Memory::builder().hasher(Arc::new(keyed))`).
#[derive(Clone)]
pub struct Blake3Keyed {
    key: [u8; blake3::KEY_LEN],
}

impl Blake3Keyed {
    /// The algorithm keyed by `blake3::derive_key(ARGUMENT_KEY_CONTEXT,
    /// secret)`. Use a long random secret; the secret of the signing key
    /// serves well, as the derived key differs from it.
    ///
    /// # Errors
    ///
    /// [`ShortSecretError`] when `secret` has fewer than [`MIN_SECRET_LEN`]
    /// bytes.
    pub fn from_secret(secret: impl AsRef<[u8]>) -> Result<Self, ShortSecretError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(ShortSecretError { len: secret.len() });
        }
        Ok(Self::from_key(blake3::derive_key(
            ARGUMENT_KEY_CONTEXT,
            secret,
        )))
    }

    /// The algorithm with `key` used as the BLAKE3 key as it is, for a key
    /// that is already 32 uniformly random bytes used for nothing else
    /// (from a key store, say). Otherwise use [`from_secret`](Self::from_secret).
    #[must_use]
    pub const fn from_key(key: [u8; blake3::KEY_LEN]) -> Self {
        Self { key }
    }

    /// A hasher of this algorithm, without the box of
    /// [`HashAlgorithm::hasher`].
    #[must_use]
    pub fn keyed_hasher(&self) -> Blake3KeyedHasher {
        Blake3KeyedHasher {
            key: self.key,
            hasher: None,
            pending: Vec::new(),
        }
    }
}

impl fmt::Debug for Blake3Keyed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blake3Keyed(<hidden key>)")
    }
}

impl HashAlgorithm for Blake3Keyed {
    fn id(&self) -> &'static str {
        "blake3-keyed"
    }

    fn hasher(&self) -> Box<dyn StableHasher + Send> {
        Box::new(self.keyed_hasher())
    }
}

/// Streaming keyed BLAKE3 hasher. The digest is the first 16 bytes of the
/// BLAKE3 output.
///
/// Writes are gathered up to 16 KiB before they reach BLAKE3: it hashes its
/// 1 KiB chunks in parallel (SIMD) only when they come in one piece from the
/// start of a subtree, and the canonical encoding writes a value's header
/// apart from its bytes. Gathered, a 4 KiB value hashes twice as fast, and
/// a value of up to 16 KiB is hashed in one call, without building
/// BLAKE3's streaming state; past the limit the bytes go straight through,
/// uncopied.
#[derive(Clone)]
pub struct Blake3KeyedHasher {
    key: [u8; blake3::KEY_LEN],
    /// The streaming state, made once more than `COALESCE` bytes came.
    hasher: Option<Box<blake3::Hasher>>,
    /// Bytes written and not yet handed over.
    pending: Vec<u8>,
}

/// The most bytes [`Blake3KeyedHasher`] gathers before handing them over.
const COALESCE: usize = 16 * 1024;

/// The streaming state of a [`Blake3KeyedHasher`], made on first use.
fn streaming<'a>(
    hasher: &'a mut Option<Box<blake3::Hasher>>,
    key: &[u8; blake3::KEY_LEN],
) -> &'a mut blake3::Hasher {
    hasher.get_or_insert_with(|| Box::new(blake3::Hasher::new_keyed(key)))
}

impl fmt::Debug for Blake3KeyedHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blake3KeyedHasher").finish_non_exhaustive()
    }
}

impl StableHasher for Blake3KeyedHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // `pending` never holds more than `COALESCE` bytes.
        if bytes.len() <= COALESCE - self.pending.len() {
            self.pending.extend_from_slice(bytes);
            return;
        }
        let hasher = streaming(&mut self.hasher, &self.key);
        if !self.pending.is_empty() {
            hasher.update(&self.pending);
            self.pending.clear();
        }
        if bytes.len() <= COALESCE {
            self.pending.extend_from_slice(bytes);
        } else {
            hasher.update(bytes);
        }
    }

    #[inline]
    fn finish(&self) -> Digest {
        let hash = match &self.hasher {
            None => blake3::keyed_hash(&self.key, &self.pending),
            Some(h) if self.pending.is_empty() => h.finalize(),
            Some(h) => h.as_ref().clone().update(&self.pending).finalize(),
        };
        let mut out = [0; 16];
        out.copy_from_slice(&hash.as_bytes()[..16]);
        Digest(out)
    }
}

/// A secret too short to key [`Blake3Keyed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortSecretError {
    len: usize,
}

impl fmt::Display for ShortSecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a secret for keyed argument hashing needs at least {MIN_SECRET_LEN} bytes, {} given",
            self.len
        )
    }
}

impl Error for ShortSecretError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_matches_one_shot_and_truncates_the_output() {
        let key = [7u8; 32];
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let full = blake3::keyed_hash(&key, &data);
        let expected: [u8; 16] = full.as_bytes()[..16].try_into().unwrap();
        let alg = Blake3Keyed::from_key(key);
        for split in [
            0,
            1,
            63,
            64,
            65,
            1023,
            1024,
            1025,
            COALESCE - 1,
            COALESCE,
            COALESCE + 1,
            99_999,
            100_000,
        ] {
            let mut h = alg.keyed_hasher();
            h.write(&data[..split]);
            h.write(&data[split..]);
            assert_eq!(h.finish().0, expected, "split at {split}");
        }
        // Many writes of every size, gathered or not, and `finish` between.
        let mut h = alg.keyed_hasher();
        let mut at = 0;
        for (i, size) in [10, 4096, 1, COALESCE, 3, COALESCE + 7, 0, 20_000]
            .into_iter()
            .cycle()
            .enumerate()
        {
            let end = (at + size).min(data.len());
            h.write(&data[at..end]);
            at = end;
            let prefix: [u8; 16] = blake3::keyed_hash(&key, &data[..at]).as_bytes()[..16]
                .try_into()
                .unwrap();
            assert_eq!(h.finish().0, prefix, "after write {i}");
            if at == data.len() {
                break;
            }
        }
        let mut boxed = alg.hasher();
        boxed.write(&data);
        assert_eq!(boxed.finish().0, expected);
        // `finish` leaves the hasher usable.
        assert_eq!(boxed.finish().0, expected);
    }

    #[test]
    fn secrets_are_derived_and_bounded() {
        let secret = "a long enough secret";
        let derived = blake3::derive_key(ARGUMENT_KEY_CONTEXT, secret.as_bytes());
        let a = Blake3Keyed::from_secret(secret).unwrap();
        assert_eq!(a.key, derived);
        assert_ne!(&a.key[..secret.len()], secret.as_bytes());
        let err = Blake3Keyed::from_secret("too short").unwrap_err();
        assert_eq!(err, ShortSecretError { len: 9 });
        assert!(err.to_string().contains("16 bytes, 9 given"), "{err}");
        assert!(Blake3Keyed::from_secret([0u8; MIN_SECRET_LEN]).is_ok());
    }
}
