//! Per-thread stripes: counters and records that many threads update, split so that threads
//! rarely touch the same one.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// How many stripes [`thread_stripe`] spreads threads over.
pub const STRIPES: usize = 16;

/// The next stripe given to a thread.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, once given.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, below [`STRIPES`]: given to threads in turn on their first call, so
/// that up to [`STRIPES`] threads each have their own. A [`Striped`] value gives each stripe a
/// part of its own.
pub fn thread_stripe() -> usize {
    STRIPE.with(|stripe| {
        let given = stripe.get();
        if given < STRIPES {
            return given;
        }
        let new = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        stripe.set(new);
        new
    })
}

/// A value in [`STRIPES`] parts, each alone on its cache lines, so that threads updating
/// different parts neither wait for each other (when a part is behind a lock) nor move a cache
/// line between processors. A part is chosen by thread ([`mine`](Self::mine)) for records any
/// part may hold, or by hash ([`by_hash`](Self::by_hash)) for records of one key.
#[derive(Debug)]
pub struct Striped<T> {
    parts: [CachePadded<T>; STRIPES],
}

impl<T: Default> Default for Striped<T> {
    fn default() -> Striped<T> {
        Striped {
            parts: std::array::from_fn(|_| CachePadded::default()),
        }
    }
}

impl<T> Striped<T> {
    /// The part of this thread's stripe ([`thread_stripe`]).
    pub fn mine(&self) -> &T {
        &self.parts[thread_stripe()]
    }

    /// The part of the key whose hash is `hash`: chosen by its top 4 bits.
    pub fn by_hash(&self, hash: u64) -> &T {
        &self.parts[part_of_hash(hash)]
    }

    /// Every part.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.parts.iter().map(|part| &**part)
    }
}

/// The part of a key whose hash is `hash`: its top 4 bits.
pub(crate) fn part_of_hash(hash: u64) -> usize {
    (hash >> 60) as usize % STRIPES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_stripe_and_threads_take_turns() {
        let mine = thread_stripe();
        assert!(mine < STRIPES);
        assert_eq!(thread_stripe(), mine);
        let others: Vec<usize> = (0..4 * STRIPES)
            .map(|_| std::thread::spawn(thread_stripe).join().unwrap())
            .collect();
        // Other tests' threads may take turns in between; the stripes given are all valid, and
        // spread.
        assert!(others.iter().all(|&s| s < STRIPES));
        let mut distinct = others.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() >= 4, "{others:?}");
    }
}
