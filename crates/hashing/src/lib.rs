//! Stable, canonical hashing of serde values: the cache keys of Cachette.
//!
//! Cachette memoizes function results in a persistent store that outlives the
//! process and may be shared between machines. A result is found again by the
//! digest of the function's arguments, so that digest has to be:
//!
//! * **canonical**: it depends on the *value*, not on how it happens to sit in
//!   memory. Maps and sets are hashed in a canonical order, so a `HashMap`
//!   gives the same digest in every process, whatever its `RandomState`,
//!   capacity or insertion order.
//! * **stable**: the same across processes, machines, pointer widths and
//!   endianness. The encoding uses only fixed-width little-endian integers and
//!   never `usize`; enum variants count by name, not by index.
//! * **unambiguous**: every value starts with a type tag and every
//!   variable-length part is length-prefixed or terminated, so `("ab", "c")`
//!   and `("a", "bc")`, `None` and `()`, `5i32` and `5i64` all differ.
//! * **fast on big numeric arrays**: `Vec<f64>` and other slices of primitive
//!   numbers are recognised by their static type and handed to the hash
//!   function as raw memory (the bulk path), at nearly the speed of hashing
//!   the bytes directly.
//!
//! # The bulk path
//!
//! These types are hashed from their memory, wherever they occur in a value
//! (top level, tuple elements, struct fields, map keys and values, `Some`
//! and newtype payloads), for `P` one of `u8 i8 u16 i16 u32 i32 u64 i64 u128
//! i128 f32 f64`:
//!
//! * `Vec<P>`, `[P]`, `Box<[P]>`, `&[P]`, `&Vec<P>`, `&mut [P]`,
//!   `&mut Vec<P>`, `Arc<[P]>`, `Rc<[P]>`, `Cow<[P]>`;
//! * with the feature **`ndarray`**: `ndarray` arrays of `P` of any
//!   dimension type `Ix0`..`Ix6` or `IxDyn`, as `Array`, `ArcArray`,
//!   `CowArray`, `ArrayView` or `ArrayViewMut`, also behind `&` or `&mut`
//!   (so `&Array2<f64>` and `ArrayView1<'_, f32>` arguments qualify). Their
//!   digest depends on the element type, the shape and the values, not on the
//!   memory layout or the kind of array. Arrays still need `Serialize` to be
//!   handed to [`hash`], so enable `ndarray`'s `serde` feature too.
//!
//! Other containers of numbers (`VecDeque<P>`, `[P; N]`, ...) are hashed
//! element by element. [`encoding`] has the exact bytes.
//!
//! Values are serialized with serde ([`serde::Serialize`]) straight into a
//! [`StableHasher`] through a small staging buffer; the encoding is never
//! built in memory as a whole. The exact bytes are specified in [`encoding`].
//!
//! # Hash algorithms
//!
//! The encoding goes into a [`HashAlgorithm`]; two come with the crate.
//!
//! * [`Xxh3`] (id `"xxh3-128"`), the default: XXH3-128 with its public
//!   default secret. Very fast, but not cryptographic: anyone can build two
//!   different values with one digest in no time. That is harmless while
//!   everyone who writes to the store is trusted.
//! * [`Blake3Keyed`] (id `"blake3-keyed"`), the **hardened key mode**:
//!   BLAKE3 in keyed mode, truncated to 128 bits, with a key derived from a
//!   secret ([`Blake3Keyed::from_secret`], BLAKE3 `derive_key` with the
//!   context [`ARGUMENT_KEY_CONTEXT`], so the secret of an HMAC signing key
//!   can be reused without the two keys being the same bytes). Use it for a
//!   store that writers you do not trust can write to: with xxh3, such a
//!   writer can store a result under the digest of arguments that another
//!   caller will pass, and that caller gets the planted result. Without the
//!   key, digests can neither be predicted nor made to collide. All programs
//!   sharing a cache must use the same secret. Its cost is small where it
//!   matters most, the argument hashed on every call: an `i64` or a short
//!   string costs about as much as with xxh3 (0.2 to 0.3 µs, most of it the
//!   canonical encoding). Bulk data pays BLAKE3's speed: a 4 KiB byte string
//!   takes about 2 µs instead of 0.45 µs, and a 100 MB array hashes at 1 to
//!   2.5 GB/s, 2.5 to 4 times slower than with xxh3 (medians of the
//!   `algorithms` group of the `hashing` benchmark on a busy 2-core x86-64
//!   machine).
//!
//! # Stability promise
//!
//! The digest of a value never changes while [`FORMAT_VERSION`] stays the
//! same. Any change of the encoding bumps it; stores record the version and the
//! [`HashAlgorithm::id`] with their entries. The golden tests pin the digests
//! of both algorithms (for [`Blake3Keyed`], under a fixed key).
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//!
//! let args = (vec![1.0_f64, 2.5, -3.0], "mean", HashMap::from([("ddof", 1)]));
//! let digest = cachette_hashing::hash(&args)?;
//! println!("{digest}");
//! assert_eq!(digest.to_hex().len(), 32);
//! assert_eq!(digest.to_hex().parse::<cachette_hashing::Digest>()?, digest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

mod algorithm;
#[allow(unsafe_code)] // Slices of numbers seen as their bytes; see its safety notes.
mod bulk;
mod canonical;
mod digest;
pub mod encoding;
mod keyed;
mod probe;
mod readable;

pub use algorithm::{HashAlgorithm, LazyHasher, StableHasher, Xxh3, Xxh3Hasher};
pub use canonical::{CanonicalHasher, HashError};
pub use digest::{Digest, ParseDigestError};
pub use keyed::{
    ARGUMENT_KEY_CONTEXT, Blake3Keyed, Blake3KeyedHasher, MIN_SECRET_LEN, ShortSecretError,
};
pub use readable::{readable, readable_args};

/// Version of the canonical encoding; bumped whenever the bytes of any value
/// change (see [`encoding`]). Version 2 changed only maps that give a key more
/// than once (tag `0x26`); every other value hashes as in version 1.
pub const FORMAT_VERSION: u32 = 2;

/// Digest of one value with the default algorithm (xxh3-128).
pub fn hash<T: serde::Serialize + ?Sized>(value: &T) -> Result<Digest, HashError> {
    let mut hasher = CanonicalHasher::new(Xxh3Hasher::default());
    hasher.add(value)?;
    Ok(hasher.finish())
}

/// Digest of one value with the given algorithm.
pub fn hash_with<T: serde::Serialize + ?Sized>(
    algorithm: &dyn HashAlgorithm,
    value: &T,
) -> Result<Digest, HashError> {
    let mut hasher = CanonicalHasher::new(LazyHasher::new(algorithm));
    hasher.add(value)?;
    Ok(hasher.finish())
}
