//! Leases: the claims this process holds, renewed by one thread until they are released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use super::record::{ClaimRecord, millis, now_ms, read_claim};
use crate::backend::{BackendResult, DynBackend, PutOptions, StoreBackend, StoreBackendExt};
use crate::key::Key;
use crate::report::Reporter;
use crate::rt;

/// A claim this process holds. The process's lease thread renews it every third of its lease
/// until it is released; released, it is deleted (if it is still this process's). Dropped
/// without a release (a panic, a cancelled future), the lease thread deletes it.
#[derive(Debug)]
pub(super) struct HeldClaim(Arc<Lease>);

/// The state of a held claim, shared with the lease thread.
#[derive(Debug)]
struct Lease {
    backend: DynBackend,
    /// The backend's futures do blocking I/O.
    blocking_io: bool,
    key: Key,
    lease: Duration,
    reporter: Reporter,
    /// No more renewals: released or abandoned.
    stopped: AtomicBool,
    /// Dropped without a release: the lease thread deletes the claim.
    abandoned: AtomicBool,
    /// Held while the claim is written; what was written last.
    io: Mutex<LeaseIo>,
    /// Deleted by the write of the entry it guarded: nothing is left to release.
    released: AtomicBool,
    /// Handed to the write of the entry it guards, to delete ([`WriteRelease::key_for`]), and
    /// not released since: dropped so, the write may never end (a cancelled future), and the
    /// lease thread deletes the claim.
    writing: AtomicBool,
}

#[derive(Debug)]
struct LeaseIo {
    record: ClaimRecord,
    /// When the claim was last written (taken just before the write was sent).
    written: Instant,
    /// Renewals found the claim taken over or deleted.
    lost: bool,
}

impl HeldClaim {
    /// Holds the claim `record` written under `key` at `written` (taken just before the write
    /// was sent).
    pub(super) fn start(
        backend: DynBackend,
        blocking_io: bool,
        key: Key,
        (record, written): (ClaimRecord, Instant),
        lease: Duration,
        reporter: Reporter,
    ) -> HeldClaim {
        let held = Arc::new(Lease {
            backend,
            blocking_io,
            key,
            lease,
            reporter,
            stopped: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            io: Mutex::new(LeaseIo {
                record,
                written,
                lost: false,
            }),
            released: AtomicBool::new(false),
            writing: AtomicBool::new(false),
        });
        match lease_thread() {
            Some(thread) => thread.add(held.clone()),
            None => {
                tracing::warn!(target: "cachette", "no lease thread: the claim {} is not renewed", held.key)
            }
        }
        HeldClaim(held)
    }

    /// Stops the renewals; gives the token and when the claim was last written, once no
    /// renewal is under way.
    fn stop(&self) -> Option<(String, Instant)> {
        self.0.stopped.store(true, Ordering::SeqCst);
        forget(&self.0);
        let io = self.0.io.lock().unwrap_or_else(PoisonError::into_inner);
        (!io.lost && !self.0.released.load(Ordering::SeqCst))
            .then(|| (io.record.token.clone(), io.written))
    }

    /// The claim as the write of the entry it guards sees it.
    pub(super) fn for_write(&self) -> WriteRelease {
        WriteRelease(Some(self.0.clone()))
    }

    /// Releases the claim: deletes it, if it is still this process's.
    pub(super) fn release(self) {
        self.0.writing.store(false, Ordering::SeqCst);
        let Some((token, written)) = self.stop() else {
            return;
        };
        let lease = &self.0;
        let surely_ours = lease.surely_ours(written);
        let deleted = rt::block_on(
            lease.blocking_io,
            delete_own(&*lease.backend, &lease.key, &token, surely_ours),
        );
        if let Err(e) | Ok(Err(e)) = deleted {
            tracing::debug!(target: "cachette", "cannot delete the claim {}: {e}", lease.key);
        }
    }

    /// [`release`](Self::release), without blocking an async caller's runtime.
    pub(super) async fn release_async(self) {
        self.0.writing.store(false, Ordering::SeqCst);
        self.0.stopped.store(true, Ordering::SeqCst);
        forget(&self.0);
        // Waits for a renewal under way, without holding the lock across an await.
        let token = loop {
            let held = |io: &LeaseIo| {
                (!io.lost && !self.0.released.load(Ordering::SeqCst))
                    .then(|| (io.record.token.clone(), io.written))
            };
            let attempt = match self.0.io.try_lock() {
                Ok(io) => Some(held(&io)),
                Err(TryLockError::WouldBlock) => None,
                Err(TryLockError::Poisoned(io)) => Some(held(&io.into_inner())),
            };
            match attempt {
                Some(token) => break token,
                None => rt::pause_async(Duration::from_millis(1)).await,
            }
        };
        let Some((token, written)) = token else {
            return;
        };
        let key = self.0.key.clone();
        let surely_ours = self.0.surely_ours(written);
        let deleted = rt::offload(&self.0.backend, self.0.blocking_io, move |b| {
            Box::pin(async move { delete_own(b, &key, &token, surely_ours).await })
        })
        .await;
        if let Err(e) | Ok(Err(e)) = deleted {
            tracing::debug!(target: "cachette", "cannot delete the claim {}: {e}", self.0.key);
        }
    }
}

/// The largest entry whose write carries the deletion of its claim: a write of this size ends
/// well within the margin [`WriteRelease::key_for`] keeps.
const WRITE_RELEASE_MAX: u64 = 1 << 20;

/// The claim a leader holds, as the write of the entry it guards sees it: deleted by that write
/// (`StoreBackend::put_then_delete`) when it is surely this process's, which on a store that
/// does both in one step saves a request per miss.
#[derive(Debug, Default)]
pub(crate) struct WriteRelease(Option<Arc<Lease>>);

impl WriteRelease {
    /// The key of the claim, when the write of an entry of `len` bytes may delete it unread:
    /// a small entry, and a claim written less than a quarter of its lease ago that no renewal
    /// found lost, so that it is still this process's when the write is done. Its renewals then
    /// stop. `None` otherwise: the claim is released after the write, as usual.
    pub(crate) fn key_for(&self, len: u64) -> Option<&Key> {
        let lease = self.0.as_ref()?;
        if len > WRITE_RELEASE_MAX {
            return None;
        }
        {
            let io = lease.io.lock().unwrap_or_else(PoisonError::into_inner);
            if io.lost
                || lease.stopped.load(Ordering::SeqCst)
                || io.written.elapsed() >= lease.lease / 4
            {
                return None;
            }
            // Under the lock: a renewal waits for it, then finds the claim stopped.
            lease.stopped.store(true, Ordering::SeqCst);
            lease.writing.store(true, Ordering::SeqCst);
        }
        forget(lease);
        Some(&lease.key)
    }

    /// The write that deleted the claim succeeded: its release has nothing left to do. (A
    /// write that failed leaves the release to delete it, after the usual checks.)
    pub(crate) fn done(&self) {
        if let Some(lease) = &self.0 {
            lease.released.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        if !self.0.stopped.swap(true, Ordering::SeqCst) {
            self.0.abandoned.store(true, Ordering::SeqCst);
            if let Some(thread) = lease_thread() {
                thread.wake.notify_one();
            }
        } else if self.0.writing.swap(false, Ordering::SeqCst)
            && !self.0.released.load(Ordering::SeqCst)
        {
            // Dropped while the write that was to delete the claim ran, neither done nor
            // released: a cancelled future, whose write may never end. The lease thread (which
            // forgot the claim when the write took it) deletes it, if it is still this
            // process's, rather than leave it to the end of its lease.
            self.0.abandoned.store(true, Ordering::SeqCst);
            if let Some(thread) = lease_thread() {
                thread.abandon(self.0.clone());
            }
        }
    }
}

impl Lease {
    /// Pushes the claim's expiry forward, if it is still this process's.
    fn renew(&self) {
        let mut io = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        if io.lost || self.stopped.load(Ordering::SeqCst) {
            return;
        }
        io.record.renewals += 1;
        io.record.expires_ms = now_ms() + millis(self.lease);
        let sent = Instant::now();
        let record = &io.record;
        let renewed = rt::block_on(self.blocking_io, async {
            let current = read_claim(&*self.backend, self.key.clone()).await?;
            if !current.is_some_and(|c| record.owns(&c)) {
                return Ok(false);
            }
            let value = record.to_bytes().into();
            let options = PutOptions::with_ttl(Some(self.lease)).with_bypass_cache(true);
            self.backend
                .put_opts(&self.key, value, options)
                .await
                .map(|_| true)
        });
        match renewed {
            Ok(Ok(true)) => io.written = sent,
            Ok(Ok(false)) => {
                io.lost = true;
                self.reporter.warn(format!(
                    "the claim {} of this process was taken over or deleted while it computed (its lease ran out?): another process may compute the same result",
                    self.key
                ));
            }
            Ok(Err(e)) | Err(e) => {
                tracing::debug!(target: "cachette", "cannot renew the claim {}: {e}", self.key);
            }
        }
    }

    /// Deletes an abandoned claim, if it is still this process's.
    fn delete_abandoned(&self) {
        let io = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        if io.lost {
            return;
        }
        let token = &io.record.token;
        let deleted = rt::block_on(
            self.blocking_io,
            delete_if_owned(&*self.backend, &self.key, token),
        );
        if let Err(e) | Ok(Err(e)) = deleted {
            tracing::debug!(target: "cachette", "cannot delete the claim {}: {e}", self.key);
        }
    }

    /// Whether a claim this process wrote at `written` is surely still its own: no other
    /// process takes a claim over before its lease has run out, by the expiry it records (on
    /// the other process's clock) or by the time it saw the claim unchanged (on its own). Half
    /// a lease after the write, only a clock running half a lease ahead could have.
    fn surely_ours(&self, written: Instant) -> bool {
        written.elapsed() < self.lease / 2
    }

    fn interval(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(1))
    }
}

/// Deletes this process's claim under `key`, holding `token`: at once when it is
/// `surely_ours` (one request), else only after reading that it still holds `token`.
async fn delete_own(
    backend: &dyn StoreBackend,
    key: &Key,
    token: &str,
    surely_ours: bool,
) -> BackendResult<()> {
    if surely_ours {
        backend.delete(key).await
    } else {
        delete_if_owned(backend, key, token).await
    }
}

/// Deletes the claim under `key` if it holds `token`.
pub(super) async fn delete_if_owned(
    backend: &dyn StoreBackend,
    key: &Key,
    token: &str,
) -> BackendResult<()> {
    match read_claim(backend, key.clone()).await? {
        Some(current) if ClaimRecord::parse(&current).is_some_and(|c| c.token == token) => {
            backend.delete(key).await
        }
        _ => Ok(()),
    }
}

/// The process's lease thread: it renews every claim held, when due, and deletes abandoned
/// ones. Started on the first claim; it sleeps while there is nothing to do.
#[derive(Debug, Default)]
struct LeaseThread {
    state: Mutex<ThreadState>,
    wake: Condvar,
    /// How many times a claim added woke the thread.
    #[cfg(test)]
    woken: std::sync::atomic::AtomicU64,
}

/// How many times in a row the lease thread, holding no claim, wakes at the pace of the last
/// lease before it sleeps until a claim comes (a minute with the default lease).
const IDLE_ROUNDS: u32 = 6;

#[derive(Debug, Default)]
struct ThreadState {
    /// The claims held, with when each is due for renewal.
    leases: Vec<(Arc<Lease>, Instant)>,
    /// When the thread wakes next: a claim added with a later renewal needs no wake-up.
    wakes: Wakes,
    /// The renewal interval of the last claim added: the pace at which the thread, holding
    /// none, keeps waking for [`IDLE_ROUNDS`], so that the next claim needs no wake-up (a
    /// system call and a switch of threads on every miss).
    idle_interval: Option<Duration>,
    idle_rounds: u32,
}

#[derive(Debug, Default, Clone, Copy)]
enum Wakes {
    /// Not waiting: it looks at every claim before it waits again.
    #[default]
    Busy,
    /// Waiting until then.
    At(Instant),
    /// Waiting until woken.
    Never,
}

fn lease_thread() -> Option<&'static LeaseThread> {
    static THREAD: OnceLock<Option<&'static LeaseThread>> = OnceLock::new();
    *THREAD.get_or_init(|| {
        let thread: &'static LeaseThread = Box::leak(Box::default());
        match std::thread::Builder::new()
            .name("cachette-lease".into())
            .spawn(move || thread.run())
        {
            Ok(_) => Some(thread),
            Err(e) => {
                tracing::warn!(target: "cachette", "cannot start the thread that renews compute-once claims: {e}");
                None
            }
        }
    })
}

/// Takes a stopped lease off the lease thread's list at once, so that the thread holds on to
/// nothing of a released claim (its backend, and through it the store, is let go with the
/// memory: a store reopened at the same place is not served by the old one).
fn forget(lease: &Arc<Lease>) {
    if let Some(thread) = lease_thread() {
        thread
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .leases
            .retain(|(held, _)| !Arc::ptr_eq(held, lease));
    }
}

impl LeaseThread {
    fn add(&self, lease: Arc<Lease>) {
        let interval = lease.interval();
        let due = Instant::now() + interval;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.leases.push((lease, due));
        state.idle_interval = Some(interval);
        let wake = match state.wakes {
            Wakes::Busy => false,
            Wakes::At(at) => at > due,
            Wakes::Never => true,
        };
        drop(state);
        if wake {
            #[cfg(test)]
            self.woken.fetch_add(1, Ordering::SeqCst);
            self.wake.notify_one();
        }
    }

    /// Takes a claim to delete at once (see [`HeldClaim`]'s drop).
    fn abandon(&self, lease: Arc<Lease>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.leases.push((lease, Instant::now()));
        drop(state);
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            let mut work = Vec::new();
            let mut next: Option<Instant> = None;
            state.leases.retain_mut(|(lease, due)| {
                if lease.abandoned.load(Ordering::SeqCst) {
                    work.push((lease.clone(), true));
                    return false;
                }
                if lease.stopped.load(Ordering::SeqCst) {
                    return false;
                }
                if *due <= now {
                    work.push((lease.clone(), false));
                    *due = now + lease.interval();
                }
                next = Some(next.map_or(*due, |n| n.min(*due)));
                true
            });
            if work.is_empty() {
                let pace = match next {
                    Some(next) => {
                        state.idle_rounds = 0;
                        Some(next.saturating_duration_since(now))
                    }
                    None if state.idle_rounds < IDLE_ROUNDS => {
                        state.idle_rounds += 1;
                        state.idle_interval
                    }
                    None => None,
                };
                state = match pace {
                    Some(pace) => {
                        state.wakes = Wakes::At(now + pace);
                        self.wake
                            .wait_timeout(state, pace)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => {
                        state.wakes = Wakes::Never;
                        self.wake
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner)
                    }
                };
                state.wakes = Wakes::Busy;
                continue;
            }
            drop(state);
            for (lease, abandoned) in work {
                if abandoned {
                    lease.delete_abandoned();
                } else {
                    lease.renew();
                }
            }
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_backend::InMemoryBackend;

    fn claim(backend: &DynBackend, key: &Key, record: &ClaimRecord) {
        rt::block_on(false, backend.put(key, record.to_bytes().into()))
            .unwrap()
            .unwrap();
    }

    fn exists(backend: &DynBackend, key: &Key) -> bool {
        rt::block_on(false, backend.contains(key)).unwrap().unwrap()
    }

    /// A claim added while the lease thread waits for an earlier renewal, or keeps its idle
    /// pace, needs no wake-up (a system call and a switch of threads on every miss).
    #[test]
    fn a_claim_taken_while_the_thread_keeps_pace_wakes_nobody() {
        let thread: &'static LeaseThread = Box::leak(Box::default());
        std::thread::spawn(move || thread.run());
        let backend: DynBackend = Arc::new(InMemoryBackend::new());
        let hour = Duration::from_secs(3600);
        let lease = |n: u32| {
            Arc::new(Lease {
                backend: backend.clone(),
                blocking_io: false,
                key: Key::new(format!("cachette/f/{n}.claim")).unwrap(),
                lease: hour,
                reporter: Reporter::default(),
                stopped: AtomicBool::new(false),
                abandoned: AtomicBool::new(false),
                io: Mutex::new(LeaseIo {
                    record: ClaimRecord::new(hour),
                    written: Instant::now(),
                    lost: false,
                }),
                released: AtomicBool::new(false),
                writing: AtomicBool::new(false),
            })
        };
        let waits_until = || {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Wakes::At(at) = thread.state.lock().unwrap().wakes {
                    return at;
                }
                assert!(Instant::now() < deadline, "the lease thread never waits");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // The first claim (which wakes the thread if it waits for nothing), then the thread
        // waits for its renewal.
        thread.add(lease(0));
        waits_until();
        let woken = thread.woken.load(Ordering::SeqCst);
        // A second claim, due later: nobody is woken.
        thread.add(lease(1));
        assert_eq!(thread.woken.load(Ordering::SeqCst), woken);
        // Both released: the thread keeps waking at their pace, and a new claim wakes nobody.
        for held in &thread.state.lock().unwrap().leases {
            held.0.stopped.store(true, Ordering::SeqCst);
        }
        thread.wake.notify_one();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !thread.state.lock().unwrap().leases.is_empty() {
            assert!(Instant::now() < deadline, "released claims stay listed");
            std::thread::sleep(Duration::from_millis(1));
        }
        waits_until();
        thread.add(lease(2));
        assert_eq!(thread.woken.load(Ordering::SeqCst), woken);
    }

    /// A claim is handed to the entry's write only while surely this process's and for a
    /// small entry; deleted by the write, its release deletes nothing (another process's claim
    /// taken since stays); not deleted by a write that failed, its release deletes it.
    #[test]
    fn a_claim_goes_with_the_write_only_while_surely_ours() {
        let backend: DynBackend = Arc::new(InMemoryBackend::new());
        let key = Key::new("cachette/f/0.claim").unwrap();
        let hour = Duration::from_secs(3600);
        let start = |written: Instant, lease: Duration| {
            let mine = ClaimRecord::new(lease);
            claim(&backend, &key, &mine);
            HeldClaim::start(
                backend.clone(),
                false,
                key.clone(),
                (mine, written),
                lease,
                Reporter::new(|_| {}),
            )
        };

        let held = start(Instant::now(), hour);
        let write = held.for_write();
        assert_eq!(write.key_for(WRITE_RELEASE_MAX + 1), None, "a large entry");
        assert_eq!(write.key_for(100), Some(&key));
        // The write deleted the claim; another process claimed the key since.
        rt::block_on(false, backend.delete(&key)).unwrap().unwrap();
        claim(&backend, &key, &ClaimRecord::new(hour));
        write.done();
        held.release();
        assert!(exists(&backend, &key), "another process's claim stays");

        // A write that failed: the release deletes the claim.
        let held = start(Instant::now(), hour);
        assert_eq!(held.for_write().key_for(100), Some(&key));
        held.release();
        assert!(!exists(&backend, &key), "released after a failed write");

        // Written a third of its lease ago: released after the write, as usual.
        let lease = Duration::from_secs(60);
        let held = start(Instant::now() - lease / 3, lease);
        assert_eq!(held.for_write().key_for(100), None);
        held.release();
        assert!(!exists(&backend, &key));
    }

    /// Released within half its lease, a claim is deleted at once; later, only when it still
    /// holds this process's token, so that another process's claim stays.
    #[test]
    fn a_claim_is_deleted_blindly_only_while_surely_ours() {
        let backend: DynBackend = Arc::new(InMemoryBackend::new());
        let key = Key::new("cachette/f/0.claim").unwrap();
        let hour = Duration::from_secs(3600);
        let mine = ClaimRecord::new(hour);
        claim(&backend, &key, &mine);
        let held = HeldClaim::start(
            backend.clone(),
            false,
            key.clone(),
            (mine, Instant::now()),
            hour,
            Reporter::default(),
        );
        assert!(held.0.surely_ours(Instant::now()));
        held.release();
        assert!(!exists(&backend, &key), "released at once");

        // Written half a lease ago, and replaced by another process's claim since.
        let lease = Duration::from_millis(40);
        let mine = ClaimRecord::new(lease);
        let theirs = ClaimRecord::new(lease);
        claim(&backend, &key, &theirs);
        let held = HeldClaim::start(
            backend.clone(),
            false,
            key.clone(),
            (mine, Instant::now()),
            lease,
            Reporter::new(|_| {}),
        );
        std::thread::sleep(lease);
        assert!(!held.0.surely_ours(held.0.io.lock().unwrap().written));
        held.release();
        let left = rt::block_on(false, backend.get(&key)).unwrap().unwrap();
        assert_eq!(
            left,
            Some(theirs.to_bytes()),
            "another process's claim stays"
        );
    }
}
