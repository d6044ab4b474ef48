//! The items whose last access a backend recorded, or saw recorded, a moment ago: a read of one
//! of them need not record it again (see [`RecentAccesses`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::stripe::{STRIPES, Striped};

/// The items whose access a backend recorded, or saw recorded, recently, with until when each
/// record counts: a read of one of them before then need not record its access again (nor look
/// at it). Stores track the least recently used items at a granularity of about a second (a
/// file's change time, Redis's idle time), so a record repeated within it tells nothing.
///
/// Keys are kept as 64-bit hashes (two keys that share one would skip each other's record
/// until it ends) and at most [`RecentAccesses::MAX`] of them, in 16 parts by hash, each behind
/// its own lock so that reads of different keys on several threads do not wait for each other:
/// a full part forgets the records that ended, or all of its records. Memory is bounded
/// whatever the reads.
#[derive(Debug, Default)]
pub struct RecentAccesses {
    /// The records in parts by the keys' hashes, each behind its own lock and on its own cache
    /// lines, so that reads of different keys on several threads do not wait for each other.
    parts: Striped<Mutex<HashMap<u64, SystemTime, foldhash::fast::FixedState>>>,
}

impl RecentAccesses {
    /// The most items kept: a sixteenth of them in each part, by their hashes, so that the
    /// 4,096 items of a busy second fit although hashes fill the parts unevenly.
    pub const MAX: usize = 8192;

    fn hash(key: &str) -> u64 {
        foldhash::fast::FixedState::default().hash_one(key)
    }

    /// Whether the access of `key` is recorded until after `now`.
    pub fn holds_at(&self, key: &str, now: SystemTime) -> bool {
        let hash = Self::hash(key);
        let until = self.lock(hash).get(&hash).copied();
        until.is_some_and(|until| now < until)
    }

    /// Whether the access of `key` is recorded until after now, by the kernel's coarse clock
    /// where there is one (read in a few nanoseconds, to within a tick of a few milliseconds).
    pub fn holds(&self, key: &str) -> bool {
        self.holds_at(key, coarse_now())
    }

    /// Notes that the access of `key` is recorded until `until` (it is `now`).
    pub fn note(&self, key: &str, until: SystemTime, now: SystemTime) {
        let hash = Self::hash(key);
        let mut map = self.lock(hash);
        if map.len() >= Self::MAX / STRIPES && !map.contains_key(&hash) {
            map.retain(|_, until| *until > now);
            if map.len() >= Self::MAX / STRIPES {
                map.clear();
            }
        }
        map.insert(hash, until);
    }

    /// The part of the records of the key whose hash is `hash`, locked.
    fn lock(
        &self,
        hash: u64,
    ) -> MutexGuard<'_, HashMap<u64, SystemTime, foldhash::fast::FixedState>> {
        self.parts
            .by_hash(hash)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many records are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.parts
            .iter()
            .map(|part| part.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// The time now by the kernel's coarse clock where there is one: read in a few nanoseconds, to
/// within a clock tick (a few milliseconds), which is plenty for records that count for a
/// second. Elsewhere, [`SystemTime::now`].
fn coarse_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(coarse_unix_nanos())
}

/// The nanoseconds since the Unix epoch by the kernel's coarse clock where there is one: read
/// in a few nanoseconds (a sixth of the precise clock), to within a clock tick (a few
/// milliseconds), which is plenty for the order of accesses. Elsewhere, or if it fails, by
/// [`SystemTime::now`]. It reads the clock through the C library, which also works where the
/// system's fast path is not mapped (under valgrind, say).
#[allow(unsafe_code)]
pub fn coarse_unix_nanos() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a `timespec` for the call to fill; the clock exists on Linux 2.6.32
        // and later, and a failure is checked.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0
            && let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec), u64::try_from(ts.tv_nsec))
            && let Some(now) = secs
                .checked_mul(1_000_000_000)
                .and_then(|n| n.checked_add(nanos))
        {
            return now;
        }
    }
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stripe::part_of_hash;

    /// `n` keys whose records fall in one part (the first).
    fn keys_of_one_part(n: usize) -> Vec<String> {
        (0..)
            .map(|i: u64| i.to_string())
            .filter(|k| part_of_hash(RecentAccesses::hash(k)) == 0)
            .take(n)
            .collect()
    }

    #[test]
    fn a_record_holds_until_it_ends_and_the_set_stays_bounded() {
        let recent = RecentAccesses::default();
        let now = SystemTime::now();
        let second = Duration::from_secs(1);
        assert!(!recent.holds_at("a", now));
        recent.note("a", now + second, now);
        assert!(recent.holds_at("a", now));
        assert!(!recent.holds_at("a", now + second));
        assert!(!recent.holds_at("b", now));
        let per_part = RecentAccesses::MAX / STRIPES;
        let keys = keys_of_one_part(per_part + 2);
        let (fill, more) = keys.split_at(per_part);
        let fill = |recent: &RecentAccesses, now: SystemTime| {
            for k in fill {
                recent.note(k, now + second, now);
            }
            assert_eq!(recent.lock(RecentAccesses::hash(&fill[0])).len(), per_part);
        };
        // A part full of live records: cleared when one more of its keys comes.
        let recent = RecentAccesses::default();
        fill(&recent, now);
        recent.note(&more[0], now + second, now);
        assert_eq!(recent.len(), 1);
        assert!(recent.holds_at(&more[0], now));
        // A part full of ended records: those are forgotten.
        let recent = RecentAccesses::default();
        fill(&recent, now - second * 2);
        recent.note(&more[1], now + second, now);
        assert_eq!(recent.len(), 1);
        // Any number of keys: at most MAX records.
        let recent = RecentAccesses::default();
        for i in 0..4 * RecentAccesses::MAX {
            recent.note(&i.to_string(), now + second, now);
        }
        assert!(recent.len() <= RecentAccesses::MAX, "{}", recent.len());
    }

    #[test]
    fn the_coarse_clock_is_within_a_tick_of_now() {
        let before = SystemTime::now();
        let coarse = coarse_now();
        let after = SystemTime::now();
        let tick = Duration::from_millis(100);
        assert!(
            coarse <= after && coarse + tick >= before,
            "{coarse:?} {before:?}"
        );
    }
}
