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
//!
//! In front of the shared cache, each thread keeps the last small slots it found there
//! ([`FRONT`] places, slots of at most [`FRONT_MAX_WEIGHT`] bytes): a repeated hit on one of
//! them takes no lock and touches no reference count. A place of the front serves only its own
//! memo, and only while nothing was written or deleted in that memory since it was filled
//! (the epoch); a slot the shared cache evicted meanwhile may still serve from a front, as it
//! is still this code's value and nothing replaced it.

use std::any::Any;
use std::cell::RefCell;
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
    /// Unique in the process: what the places of the threads' fronts say they belong to.
    id: u64,
}

/// The places of a thread's front.
const FRONT: usize = 64;

/// The heaviest slot a front keeps: fronts hold at most `FRONT` such slots per thread beyond
/// the memo's size.
const FRONT_MAX_WEIGHT: u64 = 4096;

/// A slot in a thread's front.
struct FrontSlot {
    memo: u64,
    epoch: u64,
    key: MemoKey,
    slot: Arc<Slot>,
}

thread_local! {
    static FRONT_SLOTS: RefCell<Vec<Option<FrontSlot>>> = const { RefCell::new(Vec::new()) };
}

impl MemoKey {
    /// Its place in a front: digests are uniform.
    fn front_place(&self) -> usize {
        (self.digest[0] as usize ^ self.folder as usize) % FRONT
    }
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
        static IDS: AtomicU64 = AtomicU64::new(0);
        Memo {
            cache: Cache::with_weighter(items as usize, max_bytes, BySize),
            epoch: AtomicU64::new(0),
            max_bytes,
            id: IDS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The current epoch: take it before reading the entry whose value is then
    /// [`put`](Self::put).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The value at `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &MemoKey) -> Option<Arc<Slot>> {
        self.cache.get(key)
    }

    /// Calls `f` with the slot of `key`, if the memo holds one: from this thread's front when
    /// it holds it since the last write or delete of this memory, else from the shared cache
    /// (and the front keeps it, if it is small). `f` may run user code (a validation, a
    /// clone) that calls memoized functions again.
    pub(crate) fn with<T>(&self, key: &MemoKey, f: impl FnOnce(&Slot) -> T) -> Option<T> {
        let epoch = self.epoch();
        let place = key.front_place();
        let mut f = Some(f);
        // The front is only borrowed shared while `f` runs: `f` may read it again (a
        // memoized call inside), and only a fill, which needs it alone, is then skipped.
        let fast = FRONT_SLOTS
            .try_with(|front| {
                let front = front.try_borrow().ok()?;
                let held = front.get(place)?.as_ref()?;
                if held.memo != self.id || held.epoch != epoch || held.key != *key {
                    return None;
                }
                f.take().map(|f| f(&held.slot))
            })
            .ok()
            .flatten();
        if fast.is_some() {
            return fast;
        }
        let f = f?;
        let slot = self.cache.get(key)?;
        let out = f(&slot);
        if slot.weight <= FRONT_MAX_WEIGHT {
            let _ = FRONT_SLOTS.try_with(|front| {
                if let Ok(mut front) = front.try_borrow_mut() {
                    if front.len() < FRONT {
                        front.resize_with(FRONT, || None);
                    }
                    front[place] = Some(FrontSlot {
                        memo: self.id,
                        epoch,
                        key: *key,
                        slot,
                    });
                }
            });
        }
        Some(out)
    }

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
        self.epoch.fetch_add(1, Ordering::AcqRel);
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

    /// Drops every value of the function whose folder is `folder`, whatever entries its
    /// store still holds (a clear of the function must not leave a value whose entry was
    /// already gone).
    pub(crate) fn forget_folder(&self, folder: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let folder = folder_hash(folder);
        self.cache.retain(|key, _| key.folder != folder);
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

    /// A repeated hit is served by the thread's front, even after the shared cache let the
    /// slot go; a write or delete of the memory, another memory, or a heavy slot is not.
    #[test]
    fn the_front_serves_repeated_hits_of_its_own_memory_until_a_change() {
        let memo = Memo::new(100_000);
        let folder = "pkg.f-0123456789abcdef";
        let d = digest(0x5a);
        let place = MemoKey::new(folder_hash(folder), &d);
        memo.put(place, slot(10), memo.epoch());
        assert_eq!(memo.with(&place, |s| s.weight), Some(10));
        memo.cache.remove(&place); // As an eviction would: no change of the memory.
        assert_eq!(
            memo.with(&place, |s| s.weight),
            Some(10),
            "served by the front"
        );

        let other = Memo::new(100_000);
        assert!(
            other.with(&place, |s| s.weight).is_none(),
            "another memory's front places are not its own"
        );

        memo.put(place, slot(10), memo.epoch());
        assert!(memo.with(&place, |_| ()).is_some());
        memo.forget([&grammar::entry_of(folder, &d)]);
        assert!(
            memo.with(&place, |_| ()).is_none(),
            "a delete of the entry is seen"
        );

        let heavy = MemoKey::new(folder_hash(folder), &digest(0x77));
        memo.put(heavy, slot(FRONT_MAX_WEIGHT + 1), memo.epoch());
        assert!(memo.with(&heavy, |_| ()).is_some());
        memo.cache.remove(&heavy);
        assert!(
            memo.with(&heavy, |_| ()).is_none(),
            "a heavy slot is not kept in front"
        );
    }

    /// What runs with a slot may use the memo again (a validation or a clone calling memoized
    /// functions).
    #[test]
    fn the_memo_may_be_used_again_while_a_slot_is_in_use() {
        let memo = Memo::new(100_000);
        let a = MemoKey::new(1, &digest(1));
        let b = MemoKey::new(1, &digest(2));
        memo.put(a, slot(10), memo.epoch());
        memo.put(b, slot(20), memo.epoch());
        for _ in 0..3 {
            let inner = memo.with(&a, |_| memo.with(&b, |s| s.weight).unwrap_or(0));
            assert_eq!(inner, Some(20));
            let same = memo.with(&a, |_| memo.with(&a, |s| s.weight).unwrap_or(0));
            assert_eq!(same, Some(10));
        }
    }
}
