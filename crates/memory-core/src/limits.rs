//! Automatic size limits: a memory built with `bytes_limit`, `items_limit` or `age_limit` keeps
//! its store within them after its writes, off the callers' threads.
//!
//! Each such memory has a [`Keeper`]. A write of an entry adds its size to two counters (one
//! atomic addition each, and a comparison: the whole cost on the write path). A clean-up, the
//! backend-agnostic [`EntryStore::reduce`](crate::store::EntryStore::reduce) with the memory's
//! limits, is due when
//!
//! - entries were written since the last one, and `limits_interval` has passed since it ended
//!   (at most one clean-up per interval; the first write of a memory makes one due at once), or
//! - the bytes (entries) written since the last one reach a tenth of the byte (item) limit,
//!   whatever the interval, so that a burst of writes overshoots the limit by a tenth at most
//!   (plus what is written while a clean-up runs).
//!
//! Clean-ups run on a thread of the memory (`cachette-limits`, started by its first write), one
//! at a time; a write never waits for one. The thread holds the memory's shared state weakly
//! while it waits, so dropping the last clone of a [`Memory`] ends it; a clean-up under way
//! finishes first, and never delays the exit of the process (the thread is detached). A failing
//! clean-up gives one warning, then none until one succeeds again.
//!
//! What a clean-up deletes is what `reduce_size` deletes: entries, least recently accessed
//! first, and claims of compute-once left unrenewed for an hour (a live writer renews its claims
//! every third of its lease). Its sweep removes only temporary files of writers that are gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::memory::{Memory, Shared};
use crate::reach::{Reach, finish};
use crate::size::SizeLimits;

/// What share of a limit written since the last clean-up makes the next one due at once.
const TRIGGER_DIVISOR: u64 = 10;

/// Keeps the store of a memory within its limits; see the [module documentation](self).
pub(crate) struct Keeper {
    limits: SizeLimits,
    interval: Duration,
    /// Bytes written since the last clean-up that make the next one due at once.
    byte_trigger: u64,
    /// Entries written since the last clean-up that make the next one due at once.
    item_trigger: u64,
    core: Arc<Core>,
    shared: Weak<Shared>,
}

/// What the writers, the waiters and the keeper's thread share.
#[derive(Debug, Default)]
struct Core {
    /// Bytes of the entries written since the last clean-up began.
    bytes: AtomicU64,
    /// Entries written since the last clean-up began.
    items: AtomicU64,
    state: Mutex<State>,
    /// Wakes the keeper's thread.
    wake: Condvar,
    /// Wakes the callers of [`Memory::wait_for_clean_up`] when a clean-up ends.
    idle: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The thread was started (or could not be).
    started: bool,
    /// The thread is there to run clean-ups.
    alive: bool,
    /// A clean-up is due at once.
    requested: bool,
    /// A clean-up is under way.
    running: bool,
    /// The memory is gone: the thread ends.
    closed: bool,
    /// When the last clean-up ended.
    last_run: Option<Instant>,
    /// How many clean-ups began.
    begun: u64,
    /// How many clean-ups ended.
    ended: u64,
}

impl State {
    /// Whether a clean-up is due now: asked for, or writes since the last one and the interval
    /// over.
    fn due(&self, dirty: bool, interval: Duration) -> bool {
        self.requested || (dirty && self.last_run.is_none_or(|t| t.elapsed() >= interval))
    }
}

impl Keeper {
    /// A keeper of `limits` for the memory whose shared state `shared` will be; `None` without
    /// any limit.
    pub(crate) fn new(
        limits: Option<SizeLimits>,
        interval: Duration,
        shared: &Weak<Shared>,
    ) -> Option<Keeper> {
        let limits = limits?;
        let trigger = |limit: u64| (limit / TRIGGER_DIVISOR).max(1);
        Some(Keeper {
            limits,
            interval,
            byte_trigger: limits.bytes_limit.map_or(u64::MAX, |b| trigger(b.0)),
            item_trigger: limits
                .items_limit
                .map_or(u64::MAX, |n| trigger(u64::try_from(n).unwrap_or(u64::MAX))),
            core: Arc::default(),
            shared: shared.clone(),
        })
    }

    /// Counts an entry of `bytes` just written; wakes the keeper's thread on the first write
    /// since the last clean-up, and asks for a clean-up when a trigger is reached.
    pub(crate) fn wrote(&self, bytes: u64) {
        let items = self.core.items.fetch_add(1, Ordering::Relaxed) + 1;
        let before = self.core.bytes.fetch_add(bytes, Ordering::Relaxed);
        // Exactly one writer crosses each trigger.
        let crossed = (before < self.byte_trigger
            && before.saturating_add(bytes) >= self.byte_trigger)
            || items == self.item_trigger;
        if items == 1 || crossed {
            self.signal(crossed);
        }
    }

    /// Wakes the keeper's thread (starting it on first use), asking for a clean-up now when
    /// `now`.
    fn signal(&self, now: bool) {
        let mut state = self.core.lock();
        if now {
            state.requested = true;
        }
        if !state.started {
            state.started = true;
            state.alive = self.start();
        }
        drop(state);
        self.core.wake.notify_one();
    }

    /// Starts the keeper's thread; says whether it runs.
    fn start(&self) -> bool {
        let core = self.core.clone();
        let shared = self.shared.clone();
        let (limits, interval) = (self.limits, self.interval);
        let started = std::thread::Builder::new()
            .name("cachette-limits".into())
            .spawn(move || core.run(&shared, &limits, interval));
        match started {
            Ok(_) => true,
            Err(e) => {
                if let Some(shared) = self.shared.upgrade() {
                    shared.reporter.warn(format!(
                        "cannot start the thread that keeps {} within its size limits ({e}): the limits are not kept",
                        shared.store.location()
                    ));
                }
                false
            }
        }
    }

    /// Waits until a clean-up that saw every write counted so far has ended; see
    /// [`Memory::wait_for_clean_up`].
    fn wait_idle(&self) {
        let mut state = self.core.lock();
        if !state.started || !state.alive || state.closed {
            return;
        }
        let dirty = self.core.items.load(Ordering::Relaxed) > 0;
        // The clean-up under way saw every write counted before it began, and none was since:
        // it is enough. Otherwise the next one to begin is needed.
        let target = if dirty || state.requested {
            state.requested = true;
            self.core.wake.notify_one();
            state.begun + 1
        } else if state.running {
            state.begun
        } else {
            return;
        };
        while state.ended < target && state.alive && !state.closed {
            state = self
                .core
                .idle
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.core.lock().closed = true;
        self.core.wake.notify_one();
        self.core.idle.notify_all();
    }
}

/// Marks the keeper's thread ended when dropped.
struct Ends<'a>(&'a Core);

impl Drop for Ends<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.alive = false;
        state.running = false;
        drop(state);
        self.0.idle.notify_all();
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keeper's thread: waits for a clean-up to be due, runs it, and again, until the
    /// memory is gone.
    fn run(&self, shared: &Weak<Shared>, limits: &SizeLimits, interval: Duration) {
        // However the thread ends (a panic of a backend's listing included), it says so, and
        // the callers of `wait_for_clean_up` stop waiting for it.
        let _ends = Ends(self);
        let mut failing = false;
        while self.next(interval) {
            let Some(memory) = shared.upgrade() else {
                break;
            };
            let started = Instant::now();
            let done = finish(
                memory
                    .store
                    .reduce(Reach::Blocking, limits, memory.options.lease),
            );
            match done {
                Ok(report) => {
                    failing = false;
                    tracing::debug!(
                        target: "cachette",
                        "kept {} within its limits in {:?}: deleted {} entries ({} bytes), kept {} ({} bytes)",
                        memory.store.location(),
                        started.elapsed(),
                        report.deleted_items,
                        report.deleted_bytes,
                        report.kept_items,
                        report.kept_bytes,
                    );
                }
                Err(e) if failing => {
                    tracing::debug!(target: "cachette", "the clean-up of {} failed again: {e}", memory.store.location());
                }
                Err(e) => {
                    failing = true;
                    memory.reporter.warn(format!(
                        "cannot keep {} within its size limits: {e}; it may grow past them until a clean-up succeeds (no further warning until then)",
                        memory.store.location()
                    ));
                }
            }
            // The last clone of the memory may go here, on this thread: not under the lock.
            drop(memory);
            let mut state = self.lock();
            state.running = false;
            state.ended += 1;
            state.last_run = Some(Instant::now());
            drop(state);
            self.idle.notify_all();
        }
    }

    /// Waits until a clean-up is due and marks it under way (`true`), or until the memory is
    /// gone (`false`).
    fn next(&self, interval: Duration) -> bool {
        let mut state = self.lock();
        loop {
            if state.closed {
                return false;
            }
            let dirty = self.items.load(Ordering::Relaxed) > 0;
            if state.due(dirty, interval) {
                break;
            }
            state = match state.last_run {
                Some(last) if dirty => {
                    let left = (last + interval).saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                _ => self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
        state.requested = false;
        state.running = true;
        state.begun += 1;
        // What is written from now on counts towards the next clean-up: this one lists the
        // store after these swaps, so it sees every write counted so far.
        self.items.swap(0, Ordering::Relaxed);
        self.bytes.swap(0, Ordering::Relaxed);
        true
    }
}

impl Memory {
    /// Waits until the store is within the memory's [size limits](crate::MemoryBuilder::bytes_limit)
    /// as of the writes made so far: when entries were written since the last automatic
    /// clean-up began, asks the memory's clean-up thread for one at once (whatever the
    /// [interval](crate::MemoryBuilder::limits_interval)) and waits for it to end; otherwise
    /// waits for the clean-up under way, if any. Returns at once without limits, or when
    /// nothing was written since the last clean-up. What other threads write meanwhile may be
    /// left for the next clean-up.
    ///
    /// Writes never wait for a clean-up; this is for a job that should leave the store within
    /// its limits before it ends, and for tests. It blocks the thread: from async code, call it
    /// through `spawn_blocking`. A failing clean-up ends the wait too (with its one warning).
    ///
    /// ```
    /// use cachette_core::Memory;
    /// let memory = Memory::builder().url("memory://wait-doc").items_limit(2).build()?;
    /// for x in 0..5u32 {
    ///     memory.eval(|x: u32| x + 1, x);
    /// }
    /// memory.wait_for_clean_up();
    /// assert_eq!(memory.entries(None)?.len(), 2);
    /// # Ok::<(), cachette_core::Error>(())
    /// ```
    pub fn wait_for_clean_up(&self) {
        if let Some(keeper) = self.shared().and_then(|s| s.limits.as_ref()) {
            keeper.wait_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBuilder;

    fn square(x: u64) -> u64 {
        x * x
    }

    #[test]
    fn dropping_the_memory_ends_its_thread() {
        let memory = MemoryBuilder::new()
            .url(format!("memory://limits-drop-{}", std::process::id()))
            .items_limit(2)
            .build()
            .unwrap();
        let f = memory
            .cache_fn(square as fn(u64) -> u64)
            .name("limits::square");
        for x in 0..5 {
            f.eval(x);
        }
        memory.wait_for_clean_up();
        let keeper = memory.shared().unwrap().limits.as_ref().unwrap();
        let core = keeper.core.clone();
        assert!(core.lock().alive, "the first write started the thread");
        assert!(memory.entries(None).unwrap().len() <= 2);
        drop((f, memory));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut state = core.lock();
        while state.alive {
            assert!(Instant::now() < deadline, "the thread is still there");
            state = core
                .idle
                .wait_timeout(state, Duration::from_secs(1))
                .unwrap()
                .0;
        }
        assert!(state.closed && !state.alive);
    }

    #[test]
    fn no_limits_no_keeper() {
        let memory = Memory::from_url("memory://limits-none").unwrap();
        assert!(memory.shared().unwrap().limits.is_none());
        memory.wait_for_clean_up();
    }
}
