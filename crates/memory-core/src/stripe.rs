//! Per-thread stripes: counters and records that many threads update, split so that threads
//! rarely touch the same one.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many stripes [`thread_stripe`] spreads threads over.
pub const STRIPES: usize = 16;

/// The next stripe given to a thread.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, once given.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, below [`STRIPES`]: given to threads in turn on their first call, so
/// that up to [`STRIPES`] threads each have their own. A structure striped by it (one part per
/// stripe, each on its own cache lines and behind its own lock if it needs one) lets threads
/// update it without waiting for each other or moving a cache line between processors.
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
