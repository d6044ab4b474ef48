//! Entries already checked: a read that gives exactly the bytes of an entry checked before,
//! for the same key and code, reuses what that check found instead of checking again.
//!
//! The checks of a read ([`Checked::parse`]) are a function of the bytes read and of what they
//! must answer for: the key, the code, and the store's codec and signing key. So bytes equal to
//! bytes that passed them, read for the same key and code from the same store, pass them again,
//! with the same outcome. Equality is the whole test: the bytes are compared whole (a `memcmp`,
//! a small part of the checksums' cost), so a changed entry, damaged or rewritten, is checked
//! anew. Nothing is taken on trust for being read from the same place, or soon after.
//!
//! A read that has an entry kept for its key and code passes the kept bytes to the backend
//! ([`GetOptions::expected`](crate::backend::GetOptions::expected)): one that can compare them
//! where the item lies (the local disk's index, in its memory map) gives them back, rather than
//! a copy, when they are equal. Then the read copies nothing and compares once.
//!
//! Only entries read whole into memory, of at most [`MAX_LEN`] bytes, are kept: a copy of their
//! bytes, in one of [`PLACES`] places chosen by the key. An entry is kept when it is checked for
//! the second time in a row in its place (its key the last one read there), so that reads that
//! never come back to a key copy nothing; it is kept until another is. So the store keeps at
//! most about 1 MiB for this, and no buffer of the backend.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::entry::{CodeIdentity, Parsed};
use crate::key::Key;

/// The places: one entry each.
pub(crate) const PLACES: usize = 256;

/// The longest entry kept, in bytes: larger ones are checked at every read.
pub(crate) const MAX_LEN: usize = 4096;

/// A place: the last key read there, and the entry kept there. The tags let most reads that
/// find nothing to reuse, or keep nothing, take no lock.
#[derive(Default)]
struct Place {
    /// The [tag](Spot) of the last key read in this place.
    last: AtomicU64,
    /// The [tag](Spot) of the kept entry's key (zero with none): a hint, the entry under the lock
    /// is what is compared.
    kept_tag: AtomicU64,
    kept: Mutex<Option<Box<Kept>>>,
}

/// An entry that passed the checks of a read.
struct Kept {
    /// The [tag](Spot) of `key`, compared first.
    tag: u64,
    key: String,
    /// The code it was read for, if any: its name, code and version.
    code: Option<(String, Option<String>, Option<String>)>,
    /// A copy of the bytes that were checked, and what the checks found.
    known: Arc<Known>,
}

impl Kept {
    fn new(tag: u64, key: &Key, code: Option<CodeIdentity<'_>>, known: Arc<Known>) -> Kept {
        Kept {
            tag,
            key: key.as_str().to_owned(),
            code: code.map(|c| {
                let owned = |s: Option<&str>| s.map(str::to_owned);
                (c.name.to_owned(), owned(c.code), owned(c.version))
            }),
            known,
        }
    }

    /// Whether this entry was kept for `key` and `code`.
    fn is_for(&self, tag: u64, key: &Key, code: Option<CodeIdentity<'_>>) -> bool {
        if self.tag != tag || self.key != key.as_str() {
            return false;
        }
        match (&self.code, code) {
            (None, None) => true,
            (Some((name, hash, version)), Some(code)) => {
                name == code.name
                    && hash.as_deref() == code.code
                    && version.as_deref() == code.version
            }
            _ => false,
        }
    }
}

/// The entries a store checked last; see the [module documentation](self).
pub(crate) struct Verified {
    places: Box<[Place]>,
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("places", &self.places.len())
            .finish_non_exhaustive()
    }
}

impl Default for Verified {
    fn default() -> Verified {
        Verified {
            places: (0..PLACES).map(|_| Place::default()).collect(),
        }
    }
}

/// Whether an entry of `len` bytes may be kept.
fn keeps(len: usize) -> bool {
    len <= MAX_LEN
}

/// Where the entries of a key are looked for and kept: its tag ([`Key::tail_tag`]: the
/// arguments' digest in an entry's key; other keys only share tags and places more often), and
/// its place, the tag's top bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spot {
    tag: u64,
    place: usize,
}

impl Spot {
    /// The spot of `key`.
    pub(crate) fn of(key: &Key) -> Spot {
        let tag = key.tail_tag();
        // `PLACES` is a power of two.
        let place = (tag >> (64 - PLACES.trailing_zeros())) as usize;
        Spot { tag, place }
    }
}

/// An entry kept for a key and code: its bytes, and what the checks found in them. Shared, so
/// that a read takes it with one reference count.
#[derive(Debug)]
pub(crate) struct Known {
    /// The bytes that passed the checks.
    pub(crate) bytes: Bytes,
    parsed: Parsed,
    duration: f64,
}

impl Known {
    /// What the checks found in `bytes`, if they are exactly the bytes of this entry: the
    /// parse and the duration.
    pub(crate) fn reuse(&self, bytes: &Bytes) -> Option<(&Parsed, f64)> {
        // A backend that compared them gives back the same bytes.
        let same = (bytes.as_ptr() == self.bytes.as_ptr() && bytes.len() == self.bytes.len())
            || *bytes == self.bytes;
        same.then_some((&self.parsed, self.duration))
    }
}

impl Verified {
    /// The entry kept for `key` and `code`, if any: a read that gives exactly its bytes need
    /// not check them again (see [`Known::reuse`]).
    pub(crate) fn find(
        &self,
        spot: Spot,
        key: &Key,
        code: Option<CodeIdentity<'_>>,
    ) -> Option<Arc<Known>> {
        let Spot { tag, place } = spot;
        let place = &self.places[place];
        if place.kept_tag.load(Ordering::Relaxed) != tag {
            return None;
        }
        let kept = place.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = kept.as_deref()?;
        kept.is_for(tag, key, code).then(|| Arc::clone(&kept.known))
    }

    /// Tells that `bytes`, read for `key` and `code`, passed the checks with `parsed` and
    /// `duration`: they are kept if `key` is the last key read in its place.
    pub(crate) fn checked(
        &self,
        spot: Spot,
        bytes: &[u8],
        key: &Key,
        code: Option<CodeIdentity<'_>>,
        parsed: impl FnOnce() -> Parsed,
        duration: f64,
    ) {
        if !keeps(bytes.len()) {
            return;
        }
        let Spot { tag, place } = spot;
        let place = &self.places[place];
        if place.last.swap(tag, Ordering::Relaxed) != tag {
            return;
        }
        let known = Arc::new(Known {
            bytes: Bytes::copy_from_slice(bytes),
            parsed: parsed(),
            duration,
        });
        let kept = Box::new(Kept::new(tag, key, code, known));
        *place.kept.lock().unwrap_or_else(PoisonError::into_inner) = Some(kept);
        place.kept_tag.store(tag, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::Utc;

    use super::{MAX_LEN, Spot, Verified};
    use crate::entry::{CodeIdentity, Entry, Metadata, Parsed, encode_parts};
    use crate::key::Key;

    fn entry(output: u8) -> (Bytes, Parsed) {
        let meta = Metadata::new(0.5, Utc::now(), vec![], "m.f", "00", "xxh3-128", "msgpack");
        let bytes = encode_parts(&meta, vec![output; 16], Vec::new(), None)
            .unwrap()
            .to_bytes();
        let parsed = Entry::parse(bytes.clone()).unwrap().parsed();
        (bytes, parsed)
    }

    const CODE: CodeIdentity<'static> = CodeIdentity {
        name: "m.f",
        code: Some("c0de"),
        version: None,
    };

    /// Checks `bytes` as read for `key` and `code`, as a read does: reuses them if kept, else
    /// tells they passed the checks. Whether they were reused.
    fn read(v: &Verified, bytes: &Bytes, key: &Key, code: Option<CodeIdentity<'_>>) -> bool {
        let spot = Spot::of(key);
        let parsed = entry(0).1;
        if reused(v, bytes, key, code) {
            return true;
        }
        v.checked(spot, bytes, key, code, || parsed, 0.5);
        false
    }

    /// Whether `bytes` read for `key` and `code` are those of the entry kept for them.
    fn reused(v: &Verified, bytes: &Bytes, key: &Key, code: Option<CodeIdentity<'_>>) -> bool {
        v.find(Spot::of(key), key, code)
            .is_some_and(|known| known.reuse(bytes).is_some())
    }

    #[test]
    fn an_entry_is_reused_from_its_third_read_in_a_row() {
        let v = Verified::default();
        let key = Key::new("cachette/m.f/0123456789abcdef0123456789abcdef").unwrap();
        let (bytes, _) = entry(1);
        let reads: Vec<bool> = (0..4).map(|_| read(&v, &bytes, &key, Some(CODE))).collect();
        assert_eq!(reads, [false, false, true, true]);
    }

    #[test]
    fn only_the_same_bytes_for_the_same_key_and_code_are_reused() {
        let v = Verified::default();
        let key = Key::new("cachette/m.f/0123456789abcdef0123456789abcdef").unwrap();
        let (bytes, _) = entry(1);
        for _ in 0..2 {
            read(&v, &bytes, &key, Some(CODE));
        }
        assert!(reused(&v, &bytes, &key, Some(CODE)));
        // Equal bytes elsewhere in memory.
        assert!(reused(&v, &Bytes::from(bytes.to_vec()), &key, Some(CODE)));
        // One byte changed, anywhere.
        for at in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut changed = bytes.to_vec();
            changed[at] ^= 1;
            let changed = Bytes::from(changed);
            assert!(!reused(&v, &changed, &key, Some(CODE)), "byte {at}");
        }
        // Cut short, even sharing the kept bytes' memory.
        let kept = v
            .find(Spot::of(&key), &key, Some(CODE))
            .unwrap()
            .bytes
            .clone();
        assert!(!reused(&v, &kept.slice(..kept.len() - 1), &key, Some(CODE)));
        // Other code, or none.
        let other = CodeIdentity {
            version: Some("2"),
            ..CODE
        };
        assert!(!reused(&v, &bytes, &key, Some(other)));
        assert!(!reused(&v, &bytes, &key, None));
        // Another key with the same place and tag: the key itself is compared.
        let same_tail = Key::new("cachette/m.g/0123456789abcdef0123456789abcdef").unwrap();
        assert!(!reused(&v, &bytes, &same_tail, Some(CODE)));
    }

    #[test]
    fn reads_of_keys_in_turn_keep_nothing() {
        let v = Verified::default();
        let (bytes, _) = entry(1);
        // Two keys of one place, read in turn.
        let key = |n: u32| Key::new(format!("cachette/m.f/{n:032x}")).unwrap();
        let a = key(0);
        let b = (1..)
            .map(key)
            .find(|b| Spot::of(b).place == Spot::of(&a).place)
            .unwrap();
        for _ in 0..4 {
            assert!(!read(&v, &bytes, &a, None));
            assert!(!read(&v, &bytes, &b, None));
        }
        let place = &v.places[Spot::of(&a).place];
        assert!(place.kept.lock().unwrap().is_none());
    }

    #[test]
    fn large_entries_are_not_kept() {
        let v = Verified::default();
        let key = Key::new("cachette/m.f/0123456789abcdef0123456789abcdef").unwrap();
        let large = Bytes::from(vec![7u8; MAX_LEN + 1]);
        for _ in 0..3 {
            assert!(!read(&v, &large, &key, None));
        }
    }
}
