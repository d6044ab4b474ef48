//! The in-process memo of decoded values (`memo_size`): outputs this process loaded or
//! computed, kept decoded so that a repeated hit costs a lookup and a clone of the output.
//!
//! It is bounded in bytes (each value weighs the size of its stored entry), shared by the
//! functions of one memory, and holds only the values of functions that opt in with
//! [`MemorizedFunc::memo`](crate::MemorizedFunc::memo). A value is found by its function's
//! folder and the digest of its arguments, and used only by the same code (the function's
//! identity is kept with it). It is dropped when this memory writes or deletes its entry, and
//! entirely by a clear; a fill that races with a write or a delete is dropped too (the
//! [`epoch`](Memo::epoch)).

use std::any::Any;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cachette_hashing::Digest;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::entry::Metadata;
use crate::key::{Key, grammar};

/// A decoded output, type-erased.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// What the memo keeps of one call.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The output.
    pub(crate) value: Value,
    /// The hash of the identity (code and version) of the function that made it.
    pub(crate) code: u64,
    /// The entry's metadata, kept for functions that validate their results.
    pub(crate) meta: Option<Arc<Metadata>>,
    /// How long the call took, in seconds (the time a hit saves).
    pub(crate) stored_secs: f64,
    /// What it counts against the memo's size: the size of its entry.
    pub(crate) weight: u64,
}

/// Where a value is: the hash of its function's folder, and its arguments' digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MemoKey {
    folder: u64,
    digest: [u8; 16],
}

impl MemoKey {
    /// The place of the call with `digest` of the function whose folder hashes to `folder`
    /// (see [`folder_hash`]).
    pub(crate) fn new(folder: u64, digest: &Digest) -> MemoKey {
        MemoKey {
            folder,
            digest: digest.0,
        }
    }

    /// The place of the entry `key`, if it is an entry's key.
    fn of_entry(key: &Key) -> Option<MemoKey> {
        let (folder, digest) = grammar::split_entry(key)?;
        Some(MemoKey {
            folder: folder_hash(folder),
            digest,
        })
    }
}

/// The hash of a function's folder, as memo keys hold it.
pub(crate) fn folder_hash(folder: &str) -> u64 {
    stable_hash(folder)
}

/// A hash of `value` that is the same for every memo of the process.
pub(crate) fn stable_hash(value: &str) -> u64 {
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(value)
}

#[derive(Debug, Clone, Copy)]
struct BySize;

impl Weighter<MemoKey, Arc<Slot>> for BySize {
    fn weight(&self, _key: &MemoKey, slot: &Arc<Slot>) -> u64 {
        slot.weight.max(1)
    }
}

/// The memo of a memory; see the [module documentation](self).
pub(crate) struct Memo {
    cache: Cache<MemoKey, Arc<Slot>, BySize>,
    /// Bumped by every write and delete of this memory, and by clears: a value read before a
    /// change is not kept after it.
    epoch: AtomicU64,
    max_bytes: u64,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &self.cache.weight())
            .field("values", &self.cache.len())
            .finish()
    }
}

/// The fewest values the memo is laid out for, and the most.
const MIN_ITEMS: u64 = 16;
const MAX_ITEMS: u64 = 1 << 20;

impl Memo {
    /// A memo of at most `max_bytes` bytes of values.
    pub(crate) fn new(max_bytes: u64) -> Memo {
        // Laid out for values of 256 bytes on average; it holds more smaller ones.
        let items = (max_bytes / 256).clamp(MIN_ITEMS, MAX_ITEMS);
        Memo {
            cache: Cache::with_weighter(items as usize, max_bytes, BySize),
            epoch: AtomicU64::new(0),
            max_bytes,
        }
    }

    /// The current epoch: take it before reading the entry whose value is then
    /// [`put`](Self::put).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The value at `key`.
    pub(crate) fn get(&self, key: &MemoKey) -> Option<Arc<Slot>> {
        self.cache.get(key)
    }

    /// Keeps `slot` at `key`, unless this memory wrote or deleted anything since `epoch`
    /// (the value could be older than the store's), or the value alone is larger than the memo.
    pub(crate) fn put(&self, key: MemoKey, slot: Slot, epoch: u64) {
        if slot.weight > self.max_bytes || self.epoch() != epoch {
            return;
        }
        self.cache.insert(key, Arc::new(slot));
        // A change that came between the check and the insert may not have seen the value.
        if self.epoch() != epoch {
            self.cache.remove(&key);
        }
    }

    /// Drops the value at `key`.
    pub(crate) fn remove(&self, key: &MemoKey) {
        self.cache.remove(key);
    }

    /// Drops the values of the entries `keys` (items that are not entries are skipped).
    pub(crate) fn forget<'k>(&self, keys: impl IntoIterator<Item = &'k Key>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for key in keys {
            if let Some(key) = MemoKey::of_entry(key) {
                self.cache.remove(&key);
            }
        }
    }

    /// Drops every value.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.clear();
    }

    /// How many values it holds, and their weight in bytes.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, u64) {
        (self.cache.len(), self.cache.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(weight: u64) -> Slot {
        Slot {
            value: Arc::new(7_i32),
            code: 1,
            meta: None,
            stored_secs: 0.5,
            weight,
        }
    }

    fn digest(n: u8) -> Digest {
        Digest([n; 16])
    }

    #[test]
    fn keeps_values_within_its_size() {
        let memo = Memo::new(10_000);
        for n in 0..100 {
            memo.put(MemoKey::new(1, &digest(n)), slot(500), memo.epoch());
        }
        let (values, bytes) = memo.usage();
        assert!(bytes <= 10_000, "{bytes} bytes kept");
        assert!((10..=20).contains(&values), "{values} values kept");
        // A value larger than the whole memo is not kept.
        memo.put(MemoKey::new(1, &digest(200)), slot(10_001), memo.epoch());
        assert!(memo.get(&MemoKey::new(1, &digest(200))).is_none());
    }

    #[test]
    fn a_change_since_the_read_drops_the_fill() {
        let memo = Memo::new(10_000);
        let key = MemoKey::new(1, &digest(1));
        let epoch = memo.epoch();
        memo.forget([]);
        memo.put(key, slot(10), epoch);
        assert!(
            memo.get(&key).is_none(),
            "a value read before a write is not kept"
        );
        memo.put(key, slot(10), memo.epoch());
        assert!(memo.get(&key).is_some());
    }

    #[test]
    fn writes_and_deletes_of_an_entry_drop_its_value() {
        let memo = Memo::new(10_000);
        let folder = "pkg.f-0123456789abcdef";
        let d = digest(0xab);
        let key = grammar::entry_of(folder, &d);
        let place = MemoKey::new(folder_hash(folder), &d);
        memo.put(place, slot(10), memo.epoch());
        let other = MemoKey::new(folder_hash(folder), &digest(1));
        memo.put(other, slot(10), memo.epoch());
        memo.forget([&key]);
        assert!(memo.get(&place).is_none());
        assert!(memo.get(&other).is_some(), "other values stay");
        memo.clear();
        assert!(memo.get(&other).is_none());
    }
}
