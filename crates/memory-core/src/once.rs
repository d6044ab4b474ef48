//! Compute-once: when several callers miss the same key at once, one computes and the others
//! wait for its entry, then load it.
//!
//! Two levels, both entered only after a miss, so that hits cost nothing:
//!
//! - **In a process**, a map of the keys being computed ([`Once::flights`]): the first caller to
//!   miss a key leads its *flight*; later callers of the key (threads or async tasks) follow it
//!   and wait until it lands.
//! - **Across processes and machines**, a *claim*: a small item next to the entry, under
//!   `<entry key>.claim`, created with [`StoreBackend::put_if_absent`] (a hard link on the local
//!   disk, a conditional `PUT` on S3, `SET NX PX` on Redis). It names its owner (host, process,
//!   a random token) and holds a lease: an expiry time, pushed forward by the process's lease
//!   thread every third of the lease while the computation runs, and the lease itself. A flight's
//!   leader takes the claim; when another process holds it, the leader polls it (20 ms, doubling
//!   up to 500 ms) until it goes, then loads the entry, or takes the claim over when the entry is
//!   not there (its holder failed) or when the claim is stale (its holder died): its expiry has
//!   passed on this machine's clock, or its bytes have not changed for a whole lease of the
//!   holder, as timed here. A stale claim is deleted (if it still holds the bytes seen stale)
//!   and created again; one contender wins.
//!
//! The claim text (UTF-8 lines, `key value`):
//!
//! ```text
//! cachette claim 1
//! host build-01
//! pid 4242
//! token 0f3c…(32 hex digits)
//! lease_ms 30000
//! expires_ms 1767225600000
//! renewals 3
//! ```
//!
//! Claims live in the shared store itself: with a local tier, in the remote tier (bypassing
//! the local copy), and outside the [`Stats`](crate::layers::Stats) counters, which count what
//! the memory asks for entries. They are taken by default when the memory opened its store (a
//! path, a URL, a configuration), and only when asked for on a backend given as an object,
//! whose layers the memory cannot see past. On a backend without
//! [`Capabilities::atomic_create`](crate::Capabilities::atomic_create), there are no claims:
//! callers are deduplicated within a process only.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::{self, BoxFuture};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Notify;

use crate::backend::{
    BackendResult, DynBackend, PutOptions, PutOutcome, StoreBackend, StoreBackendExt,
};
use crate::error::ErrorKind;
use crate::key::Key;
use crate::report::{Reporter, format_time};
use crate::rt;

/// The default lease of a claim.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The default longest wait for another caller's entry.
pub(crate) const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(600);
/// What is appended to an entry's key to name its claim.
pub(crate) const CLAIM_SUFFIX: &str = ".claim";
/// The first pause between two looks at another process's claim.
const FIRST_POLL: Duration = Duration::from_millis(20);
/// The longest pause between two looks at another process's claim.
const MAX_POLL: Duration = Duration::from_millis(500);
/// How many bytes of a claim are read (a claim is about 150).
const CLAIM_READ: u64 = 4096;
/// The first line of a claim.
const CLAIM_MAGIC: &str = "cachette claim 1";

/// How a flight ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Landing {
    /// The entry is stored: followers load it.
    Stored,
    /// The output was computed but could not be stored: followers compute their own (waiting
    /// would not help).
    NotStored,
    /// The computation failed (an `Err`, a panic, a cancelled future): nothing is stored, and
    /// one follower takes over.
    Failed,
}

/// One key being computed in this process.
#[derive(Debug, Default)]
struct Flight {
    /// Led by an async caller (which a synchronous caller blocking a current-thread runtime
    /// could starve).
    async_leader: bool,
    landing: Mutex<Option<Landing>>,
    /// Wakes synchronous followers.
    landed: Condvar,
    /// Wakes async followers.
    notify: Notify,
}

impl Flight {
    fn landing(&self) -> Option<Landing> {
        *self.landing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn land(&self, landing: Landing) {
        *self.landing.lock().unwrap_or_else(PoisonError::into_inner) = Some(landing);
        self.landed.notify_all();
        self.notify.notify_waiters();
    }

    /// Blocks until the flight lands, or until `deadline` (`None`).
    fn wait(&self, deadline: Instant) -> Option<Landing> {
        let mut landing = self.landing.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(landing) = *landing {
                return Some(landing);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            landing = self
                .landed
                .wait_timeout(landing, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// [`wait`](Self::wait), for async callers: the runtime is never blocked.
    async fn wait_async(&self, deadline: Instant) -> Option<Landing> {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if let Some(landing) = self.landing() {
                return Some(landing);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let timer = pin!(pause_async(deadline - now));
            future::select(notified, timer).await;
        }
    }
}

/// Sleeps without blocking the caller's runtime, whatever it is: the timer runs on the
/// library's I/O runtime.
async fn pause_async(duration: Duration) {
    /// Stops the timer task when the pause is abandoned.
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    match rt::io_handle() {
        Ok(handle) => {
            let mut timer = Abort(handle.spawn(tokio::time::sleep(duration)));
            let _ = (&mut timer.0).await;
        }
        Err(_) => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                std::thread::sleep(duration);
                let _ = tx.send(());
            });
            let _ = rx.await;
        }
    }
}

/// The compute-once state of a memory: its settings, the flights of this process, and the store
/// that holds claims.
pub(crate) struct Once {
    /// Whether functions compute once unless they say otherwise.
    pub(crate) enabled: bool,
    /// The lease of the claims taken.
    pub(crate) lease: Duration,
    /// The longest wait for another caller's entry, after which a caller computes anyway.
    pub(crate) wait_timeout: Duration,
    /// Whether claims are taken, to compute once across processes too.
    pub(crate) claims: bool,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
    /// Where claims are taken: the shared store (the remote tier with a local tier), without
    /// the statistics layer.
    shared: DynBackend,
    reporter: Reporter,
    /// `put_if_absent` turned out to be unsupported: no claims any more.
    no_claims: AtomicBool,
}

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Once")
            .field("enabled", &self.enabled)
            .field("lease", &self.lease)
            .field("wait_timeout", &self.wait_timeout)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// What a caller that missed does next; see [`Once::turn`].
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    /// Set when this caller leads the key's flight: land it when done.
    lead: Option<Lead<'a>>,
    /// An entry was stored meanwhile (or may have been): load it before computing.
    pub(crate) load_first: bool,
}

impl Turn<'_> {
    /// Says how the computation ended: releases the claim, then wakes the followers.
    pub(crate) fn land(self, landing: Landing) {
        if let Some(mut lead) = self.lead {
            if let Some(claim) = lead.claim.take() {
                claim.release();
            }
            lead.finish(landing);
        }
    }

    /// [`land`](Self::land), for async callers.
    pub(crate) async fn land_async(self, landing: Landing) {
        if let Some(mut lead) = self.lead {
            if let Some(claim) = lead.claim.take() {
                claim.release_async().await;
            }
            lead.finish(landing);
        }
    }
}

/// The leader of a flight. Dropped without landing (a panic, a cancelled future), it lands as
/// [`Landing::Failed`].
#[derive(Debug)]
struct Lead<'a> {
    once: &'a Once,
    key: Key,
    flight: Arc<Flight>,
    claim: Option<HeldClaim>,
    /// Led by an async caller: a drop must not block.
    is_async: bool,
    landed: bool,
}

impl Lead<'_> {
    fn finish(&mut self, landing: Landing) {
        self.landed = true;
        {
            let mut flights = self
                .once
                .flights
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if flights
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(&self.key);
            }
        }
        self.flight.land(landing);
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        if let Some(claim) = self.claim.take() {
            if self.is_async {
                drop(claim); // Released by its thread, in the background.
            } else {
                claim.release();
            }
        }
        self.finish(Landing::Failed);
    }
}

enum Joined {
    Lead(Arc<Flight>),
    Follow(Arc<Flight>),
}

/// How the claim of a flight's leader went.
enum Claimed {
    /// This process holds the claim.
    Held(HeldClaim),
    /// No claim (none on this backend, or the store failed): compute.
    Unclaimed,
    /// The holder released its claim and its entry is there: load it.
    Released,
    /// Waited `wait_timeout` for the holder: compute anyway.
    TimedOut,
}

/// How a caller drives the store's futures while claiming.
#[derive(Debug, Clone, Copy)]
enum Drive {
    /// Inside [`rt::block_on`] on the caller's thread; `true` when the futures do blocking I/O
    /// (pauses then sleep the thread).
    Blocking(bool),
    /// In an async caller's task: blocking-I/O backends go to the blocking pool.
    Task,
}

impl Once {
    pub(crate) fn new(
        enabled: bool,
        claims: bool,
        lease: Duration,
        wait_timeout: Duration,
        shared: DynBackend,
        reporter: Reporter,
    ) -> Once {
        Once {
            enabled,
            lease,
            wait_timeout,
            claims,
            flights: Mutex::default(),
            shared,
            reporter,
            no_claims: AtomicBool::new(false),
        }
    }

    fn join(&self, key: &Key, is_async: bool) -> Joined {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        match flights.get(key) {
            Some(flight) => Joined::Follow(flight.clone()),
            None => {
                let flight = Arc::new(Flight {
                    async_leader: is_async,
                    ..Flight::default()
                });
                flights.insert(key.clone(), flight.clone());
                Joined::Lead(flight)
            }
        }
    }

    /// After a miss of `key` (of the function `func`): waits, as long as another caller
    /// computes it, and says what to do next: load the entry, or compute (leading the key's
    /// flight, and holding its claim when the store takes claims). `absent` says that the miss
    /// found no entry (rather than one it could not use): only then does an entry found once
    /// the claim is taken tell of another caller's result.
    pub(crate) fn turn(&self, key: &Key, func: &str, absent: bool) -> Turn<'_> {
        // Waiting blocks the thread: inside a multi-thread runtime, let its other tasks move.
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.turn_blocking(key, func, absent, false))
            }
            Ok(_) => self.turn_blocking(key, func, absent, true),
            Err(_) => self.turn_blocking(key, func, absent, false),
        }
    }

    /// [`turn`](Self::turn) on a thread that may block; `current_thread` when that thread runs
    /// a current-thread runtime, whose async callers cannot land their flights while it waits.
    fn turn_blocking(&self, key: &Key, func: &str, absent: bool, current_thread: bool) -> Turn<'_> {
        let started = Instant::now();
        let deadline = started + self.wait_timeout;
        loop {
            match self.join(key, false) {
                Joined::Lead(flight) => {
                    let lead = self.lead(key, flight, false);
                    let blocking = self.shared.capabilities().blocking_io;
                    let claimed = rt::block_on(
                        blocking,
                        self.claim(key, deadline, Drive::Blocking(blocking), func),
                    );
                    let (claimed, exists) = claimed.unwrap_or_else(|e| {
                        self.cannot_claim(func, key, &e.to_string());
                        (Claimed::Unclaimed, false)
                    });
                    return self.leader_turn(lead, claimed, exists && absent, func, key, started);
                }
                Joined::Follow(flight) if current_thread && flight.async_leader => {
                    return Turn {
                        lead: None,
                        load_first: false,
                    };
                }
                Joined::Follow(flight) => match flight.wait(deadline) {
                    Some(Landing::Failed) => continue,
                    landed => return self.follower_turn(landed, func, key, started),
                },
            }
        }
    }

    /// [`turn`](Self::turn), for async callers: the runtime is never blocked.
    pub(crate) async fn turn_async(&self, key: &Key, func: &str, absent: bool) -> Turn<'_> {
        let started = Instant::now();
        let deadline = started + self.wait_timeout;
        loop {
            match self.join(key, true) {
                Joined::Lead(flight) => {
                    let lead = self.lead(key, flight, true);
                    let (claimed, exists) = self.claim(key, deadline, Drive::Task, func).await;
                    return self.leader_turn(lead, claimed, exists && absent, func, key, started);
                }
                Joined::Follow(flight) => match flight.wait_async(deadline).await {
                    Some(Landing::Failed) => continue,
                    landed => return self.follower_turn(landed, func, key, started),
                },
            }
        }
    }

    fn lead(&self, key: &Key, flight: Arc<Flight>, is_async: bool) -> Lead<'_> {
        Lead {
            once: self,
            key: key.clone(),
            flight,
            claim: None,
            is_async,
            landed: false,
        }
    }

    fn leader_turn<'a>(
        &self,
        mut lead: Lead<'a>,
        claimed: Claimed,
        exists: bool,
        func: &str,
        key: &Key,
        started: Instant,
    ) -> Turn<'a> {
        let load_first = match claimed {
            Claimed::Held(claim) => {
                lead.claim = Some(claim);
                exists
            }
            Claimed::Unclaimed => exists,
            Claimed::Released => true,
            Claimed::TimedOut => {
                self.timed_out(func, key, started);
                false
            }
        };
        Turn {
            lead: Some(lead),
            load_first,
        }
    }

    fn follower_turn(
        &self,
        landed: Option<Landing>,
        func: &str,
        key: &Key,
        started: Instant,
    ) -> Turn<'static> {
        let load_first = match landed {
            Some(Landing::Stored) => true,
            Some(Landing::NotStored | Landing::Failed) => false,
            None => {
                self.timed_out(func, key, started);
                false
            }
        };
        Turn {
            lead: None,
            load_first,
        }
    }

    fn timed_out(&self, func: &str, key: &Key, started: Instant) {
        self.reporter.warn(format!(
            "waited {} for another caller to compute '{func}' ({key}), the wait_timeout: computing it here too",
            format_time(started.elapsed().as_secs_f64())
        ));
    }

    fn cannot_claim(&self, func: &str, key: &Key, why: &str) {
        self.reporter.warn(format!(
            "cannot claim the computation of '{func}' ({key}) in {}: {why}; computing it without waiting for other processes",
            self.shared.location()
        ));
    }

    /// Whether claims are taken: they are asked for, and the store creates items atomically
    /// across processes.
    fn claims_on(&self) -> bool {
        self.claims
            && !self.no_claims.load(Ordering::Relaxed)
            && self.shared.capabilities().atomic_create
    }

    /// Runs one operation of the shared store, as `drive` says.
    async fn call<T, F>(&self, drive: Drive, op: F) -> BackendResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a dyn StoreBackend) -> BoxFuture<'a, BackendResult<T>> + Send + 'static,
    {
        match drive {
            Drive::Blocking(_) => op(&*self.shared).await,
            Drive::Task => rt::offload(&self.shared, op).await?,
        }
    }

    async fn pause(&self, drive: Drive, duration: Duration) {
        match drive {
            Drive::Blocking(true) => std::thread::sleep(duration),
            Drive::Blocking(false) => tokio::time::sleep(duration).await,
            Drive::Task => pause_async(duration).await,
        }
    }

    /// Whether the entry is in the shared store (not counted by the statistics, not an access).
    async fn exists(&self, drive: Drive, key: &Key) -> bool {
        let key = key.clone();
        self.call(drive, move |b| {
            Box::pin(async move { b.contains(&key).await })
        })
        .await
        .unwrap_or(false)
    }

    async fn read_claim(&self, drive: Drive, claim_key: &Key) -> BackendResult<Option<Bytes>> {
        let k = claim_key.clone();
        self.call(drive, move |b| {
            Box::pin(async move { b.get_range(&k, 0..CLAIM_READ).await })
        })
        .await
    }

    /// Takes the claim of `key` for a flight's leader, waiting while another process holds it.
    /// Also says whether the entry exists (checked once the claim is taken, since a holder may
    /// have stored it and released its claim between the caller's miss and the claim).
    async fn claim(
        &self,
        key: &Key,
        deadline: Instant,
        drive: Drive,
        func: &str,
    ) -> (Claimed, bool) {
        if !self.claims_on() {
            return (Claimed::Unclaimed, self.exists(drive, key).await);
        }
        let Ok(claim_key) = Key::new(format!("{key}{CLAIM_SUFFIX}")) else {
            return (Claimed::Unclaimed, self.exists(drive, key).await);
        };
        let mut record = ClaimRecord::new(self.lease);
        // The bytes of the other process's claim last seen, and since when they are unchanged.
        let mut seen: Option<(Bytes, Instant)> = None;
        let mut poll = FIRST_POLL;
        loop {
            record.expires_ms = now_ms() + millis(self.lease);
            let (k, value, lease) = (claim_key.clone(), record.to_bytes(), self.lease);
            let created = self
                .call(drive, move |b| {
                    Box::pin(async move {
                        b.put_opts(&k, value.into(), PutOptions::create().ttl(Some(lease)))
                            .await
                    })
                })
                .await;
            match created {
                Ok(PutOutcome::Created) => return self.hold(drive, key, claim_key, record).await,
                Ok(PutOutcome::AlreadyExists) => {}
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    tracing::debug!(target: "cachette", "{}: no put_if_absent ({e}); compute-once works within this process only", self.shared.location());
                    self.no_claims.store(true, Ordering::Relaxed);
                    return (Claimed::Unclaimed, self.exists(drive, key).await);
                }
                Err(e) => {
                    self.cannot_claim(func, key, &e.to_string());
                    return (Claimed::Unclaimed, self.exists(drive, key).await);
                }
            }
            // Another process holds the claim: wait until it goes or goes stale.
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return (Claimed::TimedOut, false);
                }
                let bytes = match self.read_claim(drive, &claim_key).await {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => {
                        if self.exists(drive, key).await {
                            return (Claimed::Released, true);
                        }
                        break; // Released without an entry: its holder failed. Take it.
                    }
                    Err(e) => {
                        self.cannot_claim(func, key, &e.to_string());
                        return (Claimed::Unclaimed, self.exists(drive, key).await);
                    }
                };
                let holder = ClaimRecord::parse(&bytes);
                if holder.as_ref().is_some_and(|h| h.token == record.token) {
                    // Ours: a create that succeeded although its answer was lost (and retried).
                    return self.hold(drive, key, claim_key, record).await;
                }
                let since = match &seen {
                    Some((seen_bytes, since)) if *seen_bytes == bytes => *since,
                    _ => {
                        seen = Some((bytes.clone(), now));
                        now
                    }
                };
                let lease = holder.as_ref().map_or(self.lease, |h| h.lease);
                let expired = holder.as_ref().is_some_and(ClaimRecord::expired);
                if expired || now.duration_since(since) > lease {
                    self.take_over(drive, func, &claim_key, &bytes, holder.as_ref())
                        .await;
                    seen = None;
                    break;
                }
                self.pause(drive, poll.min(deadline - now)).await;
                poll = (poll * 2).min(MAX_POLL);
            }
        }
    }

    /// Deletes a stale claim, if it still holds the bytes seen stale (a claim renewed or taken
    /// over meanwhile is left alone).
    async fn take_over(
        &self,
        drive: Drive,
        func: &str,
        claim_key: &Key,
        stale: &Bytes,
        holder: Option<&ClaimRecord>,
    ) {
        if !matches!(self.read_claim(drive, claim_key).await, Ok(Some(again)) if again == *stale) {
            return;
        }
        let owner = holder.map_or_else(
            || "an unreadable owner".to_owned(),
            |h| format!("process {} on {}", h.pid, h.host),
        );
        self.reporter.warn(format!(
            "the claim on computing '{func}' ({claim_key}) held by {owner} is stale (its lease ran out): taking it over"
        ));
        let k = claim_key.clone();
        if let Err(e) = self
            .call(drive, move |b| Box::pin(async move { b.delete(&k).await }))
            .await
        {
            tracing::debug!(target: "cachette", "cannot delete the stale claim {claim_key}: {e}");
        }
    }

    /// Starts renewing a claim just created.
    async fn hold(
        &self,
        drive: Drive,
        key: &Key,
        claim_key: Key,
        record: ClaimRecord,
    ) -> (Claimed, bool) {
        let claim = HeldClaim::start(
            self.shared.clone(),
            claim_key,
            record,
            self.lease,
            self.reporter.clone(),
        );
        (Claimed::Held(claim), self.exists(drive, key).await)
    }
}

/// A claim this process holds. The process's lease thread renews it every third of its lease
/// until it is released; released, it is deleted (if it is still this process's). Dropped
/// without a release (a panic, a cancelled future), the lease thread deletes it.
#[derive(Debug)]
struct HeldClaim(Arc<Lease>);

/// The state of a held claim, shared with the lease thread.
#[derive(Debug)]
struct Lease {
    backend: DynBackend,
    key: Key,
    lease: Duration,
    reporter: Reporter,
    /// No more renewals: released or abandoned.
    stopped: AtomicBool,
    /// Dropped without a release: the lease thread deletes the claim.
    abandoned: AtomicBool,
    /// Held while the claim is written; what was written last.
    io: Mutex<LeaseIo>,
}

#[derive(Debug)]
struct LeaseIo {
    record: ClaimRecord,
    /// Renewals found the claim taken over or deleted.
    lost: bool,
}

impl HeldClaim {
    fn start(
        backend: DynBackend,
        key: Key,
        record: ClaimRecord,
        lease: Duration,
        reporter: Reporter,
    ) -> HeldClaim {
        let held = Arc::new(Lease {
            backend,
            key,
            lease,
            reporter,
            stopped: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            io: Mutex::new(LeaseIo {
                record,
                lost: false,
            }),
        });
        match lease_thread() {
            Some(thread) => thread.add(held.clone()),
            None => {
                tracing::warn!(target: "cachette", "no lease thread: the claim {} is not renewed", held.key)
            }
        }
        HeldClaim(held)
    }

    /// Stops the renewals; gives the token once no renewal is under way.
    fn stop(&self) -> Option<String> {
        self.0.stopped.store(true, Ordering::SeqCst);
        let io = self.0.io.lock().unwrap_or_else(PoisonError::into_inner);
        (!io.lost).then(|| io.record.token.clone())
    }

    /// Releases the claim: deletes it, if it is still this process's.
    fn release(self) {
        let Some(token) = self.stop() else { return };
        let lease = &self.0;
        let blocking = lease.backend.capabilities().blocking_io;
        let deleted = rt::block_on(
            blocking,
            delete_if_owned(&*lease.backend, &lease.key, &token),
        );
        if let Err(e) | Ok(Err(e)) = deleted {
            tracing::debug!(target: "cachette", "cannot delete the claim {}: {e}", lease.key);
        }
    }

    /// [`release`](Self::release), without blocking an async caller's runtime.
    async fn release_async(self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        // Waits for a renewal under way, without holding the lock across an await.
        let token = loop {
            let attempt = match self.0.io.try_lock() {
                Ok(io) => Some((!io.lost).then(|| io.record.token.clone())),
                Err(TryLockError::WouldBlock) => None,
                Err(TryLockError::Poisoned(io)) => {
                    let io = io.into_inner();
                    Some((!io.lost).then(|| io.record.token.clone()))
                }
            };
            match attempt {
                Some(token) => break token,
                None => pause_async(Duration::from_millis(1)).await,
            }
        };
        let Some(token) = token else { return };
        let key = self.0.key.clone();
        let deleted = rt::offload(&self.0.backend, move |b| {
            Box::pin(async move { delete_if_owned(b, &key, &token).await })
        })
        .await;
        if let Err(e) | Ok(Err(e)) = deleted {
            tracing::debug!(target: "cachette", "cannot delete the claim {}: {e}", self.0.key);
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
        let record = &io.record;
        let blocking = self.backend.capabilities().blocking_io;
        let renewed = rt::block_on(blocking, async {
            let current = self.backend.get_range(&self.key, 0..CLAIM_READ).await?;
            if !current.is_some_and(|c| record.owns(&c)) {
                return Ok(false);
            }
            let value = record.to_bytes().into();
            let options = PutOptions::with_ttl(Some(self.lease));
            self.backend
                .put_opts(&self.key, value, options)
                .await
                .map(|_| true)
        });
        match renewed {
            Ok(Ok(true)) => {}
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
        let blocking = self.backend.capabilities().blocking_io;
        let token = &io.record.token;
        let deleted = rt::block_on(blocking, delete_if_owned(&*self.backend, &self.key, token));
        if let Err(e) | Ok(Err(e)) = deleted {
            tracing::debug!(target: "cachette", "cannot delete the claim {}: {e}", self.key);
        }
    }

    fn interval(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(1))
    }
}

/// Deletes the claim under `key` if it holds `token`.
async fn delete_if_owned(backend: &dyn StoreBackend, key: &Key, token: &str) -> BackendResult<()> {
    match backend.get_range(key, 0..CLAIM_READ).await? {
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
    /// The claims held, with when each is due for renewal.
    leases: Mutex<Vec<(Arc<Lease>, Instant)>>,
    wake: Condvar,
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

impl LeaseThread {
    fn add(&self, lease: Arc<Lease>) {
        let due = Instant::now() + lease.interval();
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((lease, due));
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            let mut work = Vec::new();
            let mut next: Option<Instant> = None;
            leases.retain_mut(|(lease, due)| {
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
                leases = match next {
                    Some(next) => {
                        self.wake
                            .wait_timeout(leases, next.saturating_duration_since(now))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => self
                        .wake
                        .wait(leases)
                        .unwrap_or_else(PoisonError::into_inner),
                };
                continue;
            }
            drop(leases);
            for (lease, abandoned) in work {
                if abandoned {
                    lease.delete_abandoned();
                } else {
                    lease.renew();
                }
            }
            leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What a claim holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClaimRecord {
    host: String,
    pid: u32,
    token: String,
    lease: Duration,
    /// When the lease runs out, in milliseconds since the Unix epoch.
    expires_ms: u64,
    renewals: u64,
}

impl ClaimRecord {
    fn new(lease: Duration) -> ClaimRecord {
        ClaimRecord {
            host: crate::host::host_name().to_owned(),
            pid: std::process::id(),
            token: new_token(),
            lease,
            expires_ms: now_ms() + millis(lease),
            renewals: 0,
        }
    }

    fn to_bytes(&self) -> Bytes {
        Bytes::from(format!(
            "{CLAIM_MAGIC}\nhost {}\npid {}\ntoken {}\nlease_ms {}\nexpires_ms {}\nrenewals {}\n",
            self.host,
            self.pid,
            self.token,
            millis(self.lease),
            self.expires_ms,
            self.renewals
        ))
    }

    fn parse(bytes: &[u8]) -> Option<ClaimRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != CLAIM_MAGIC {
            return None;
        }
        let fields: HashMap<&str, &str> = lines.filter_map(|l| l.split_once(' ')).collect();
        Some(ClaimRecord {
            host: (*fields.get("host")?).to_owned(),
            pid: fields.get("pid")?.parse().ok()?,
            token: (*fields.get("token")?).to_owned(),
            lease: Duration::from_millis(fields.get("lease_ms")?.parse().ok()?),
            expires_ms: fields.get("expires_ms")?.parse().ok()?,
            renewals: fields
                .get("renewals")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
        })
    }

    /// Whether the lease ran out, on this machine's clock.
    fn expired(&self) -> bool {
        now_ms() >= self.expires_ms
    }

    /// Whether a stored claim is this one (the same token).
    fn owns(&self, stored: &[u8]) -> bool {
        ClaimRecord::parse(stored).is_some_and(|c| c.token == self.token)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// A token no other claim has: 128 bits from the standard library's per-process random keys,
/// the process, the time and a counter.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut parts = [0u64; 2];
    for part in &mut parts {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        h.write_u128(nanos);
        *part = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_tell_their_owner() {
        let record = ClaimRecord::new(Duration::from_secs(30));
        let bytes = record.to_bytes();
        let back = ClaimRecord::parse(&bytes).unwrap();
        assert_eq!(back, record);
        assert!(record.owns(&bytes));
        assert!(!ClaimRecord::new(Duration::from_secs(30)).owns(&bytes));
        assert!(!back.expired());
        assert!(ClaimRecord::parse(b"garbage").is_none());
        let old = ClaimRecord {
            expires_ms: 1,
            ..record
        };
        assert!(old.expired());
        assert_eq!(new_token().len(), 32);
        assert_ne!(new_token(), new_token());
    }
}
