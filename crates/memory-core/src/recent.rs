//! The items whose last access a backend recorded, or saw recorded, a moment ago: a read of one
//! of them need not record it again (see [`RecentAccesses`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

/// The items whose access a backend recorded, or saw recorded, recently, with until when each
/// record counts: a read of one of them before then need not record its access again (nor look
/// at it). Stores track the least recently used items at a granularity of about a second (a
/// file's change time, Redis's idle time), so a record repeated within it tells nothing.
///
/// Keys are kept as 64-bit hashes (two keys that share one would skip each other's record
/// until it ends) and at most [`RecentAccesses::MAX`] of them: a full set forgets the records
/// that ended, or all of them. Memory is bounded whatever the reads.
#[derive(Debug, Default)]
pub struct RecentAccesses {
    until: Mutex<HashMap<u64, SystemTime, foldhash::fast::FixedState>>,
}

impl RecentAccesses {
    /// The most items kept.
    pub const MAX: usize = 4096;

    fn hash(key: &str) -> u64 {
        foldhash::fast::FixedState::default().hash_one(key)
    }

    /// Whether the access of `key` is recorded until after `now`.
    pub fn holds_at(&self, key: &str, now: SystemTime) -> bool {
        let hash = Self::hash(key);
        let until = self.lock().get(&hash).copied();
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
        let mut map = self.lock();
        if map.len() >= Self::MAX && !map.contains_key(&hash) {
            map.retain(|_, until| *until > now);
            if map.len() >= Self::MAX {
                map.clear();
            }
        }
        map.insert(hash, until);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, SystemTime, foldhash::fast::FixedState>> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
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
        let fill = |recent: &RecentAccesses| {
            for i in 0..RecentAccesses::MAX - 1 {
                recent.note(&i.to_string(), now + second, now);
            }
            assert_eq!(recent.lock().len(), RecentAccesses::MAX);
        };
        // Full of live records: cleared when one more comes.
        fill(&recent);
        recent.note("c", now + second, now);
        assert_eq!(recent.lock().len(), 1);
        assert!(recent.holds_at("c", now));
        // Full of ended records: those are forgotten.
        let recent = RecentAccesses::default();
        recent.note("a", now + second * 3, now);
        fill(&recent);
        let later = now + second * 2;
        recent.note("d", later + second, later);
        assert_eq!(recent.lock().len(), 2);
        assert!(recent.holds_at("a", later) && recent.holds_at("d", later));
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
