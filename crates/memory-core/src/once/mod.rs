//! Compute-once: when several callers miss the same key at once, one computes and the others
//! wait for its entry, then load it.
//!
//! Two levels, both entered only after a miss, so that hits cost nothing:
//!
//! - **In a process**, a map of the keys being computed (`Once::flights`): the first caller to
//!   miss a key leads its *flight*; later callers of the key (threads or async tasks) follow it
//!   and wait until it lands.
//! - **Across processes and machines**, a *claim*: a small item next to the entry, under
//!   `<entry key>.claim`, created with a create-if-absent write (a hard link on the local
//!   disk, a conditional `PUT` on S3, `SET NX PX` on Redis). It names its owner (host, process,
//!   a random token) and holds a lease: an expiry time, pushed forward by the process's lease
//!   thread every third of the lease while the computation runs, and the lease itself. A flight's
//!   leader takes the claim; when another process holds it, the leader polls it (20 ms, doubling
//!   up to 500 ms) until it goes, then loads the entry, or takes the claim over when the entry is
//!   not there (its holder failed) or when the claim is stale (its holder died): its expiry has
//!   passed on this machine's clock, or its bytes have not changed for a whole lease of the
//!   holder (at most this memory's own lease, whatever the claim announces), as timed here. A
//!   stale claim is deleted (if it still holds the bytes seen stale) and created again; one
//!   contender wins. Once it holds the claim, a leader looks for the entry again: another
//!   process may have stored it between the miss and the claim. Its holder releases a claim
//!   by deleting it: at once within half a lease of its last write (no one takes a claim over
//!   before its lease has run out), else only after reading that it still holds its token.
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
//! A backend with locks of its own that every process sees, and that the system releases when
//! their holder dies, holds the claims instead
//! ([`try_claim`](crate::backend::StoreBackend::try_claim): the local disk's index layout): the
//! leader takes the key's lock without waiting, or polls it as it would a claim, until it is
//! released; then it loads the entry if it appeared, or computes. No lease, no renewal, nothing
//! stale to take over, and nothing for the entry's write to delete.
//!
//! Claims live in the shared store itself: every operation on them passes `bypass_cache`, so a
//! local tier sends them to the remote tier without keeping a copy, and the
//! [`Stats`](crate::layers::Stats) counters, which count what the memory asks for entries,
//! leave them out. They are taken by default when the memory opened its store (a path, a URL,
//! a configuration), and only when asked for on a backend given as an object. On a backend
//! without [`Capabilities::atomic_create`](crate::plugin::Capabilities::atomic_create), there are
//! no claims: callers are deduplicated within a process only.
//!
//! Three parts: `flight` (in this process), `claim` (across processes) and `lease` (renewing
//! the claims held).

mod claim;
mod flight;
mod lease;
mod record;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::backend::DynBackend;
use crate::key::Key;
use crate::reach::{Reach, finish};
use crate::report::{Reporter, format_time};
use claim::{Claimed, Holding};
use flight::Flight;
pub(crate) use lease::WriteRelease;

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
    /// Hashed by foldhash, seeded at random per process: SipHash, the standard map's, cost a
    /// miss some 900 instructions more over its long keys.
    flights: Mutex<HashMap<Key, Arc<Flight>, foldhash::fast::RandomState>>,
    /// Where claims are taken: the memory's backend stack (claims bypass its caches).
    backend: DynBackend,
    /// The stack's futures do blocking I/O.
    blocking_io: bool,
    /// The stack creates items atomically across processes.
    atomic_create: bool,
    /// The store's location, for messages.
    location: String,
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
    /// The claim this caller holds, as the write of the entry sees it (none when it holds no
    /// claim).
    pub(crate) fn write_release(&self) -> WriteRelease {
        self.lead
            .as_ref()
            .and_then(|lead| lead.claim.as_ref())
            .map_or_else(WriteRelease::default, Holding::for_write)
    }

    /// Says how the computation ended: releases the claim, then wakes the followers.
    pub(crate) async fn land(self, reach: Reach, landing: Landing) {
        match reach {
            Reach::Blocking => self.land_now(landing),
            Reach::Task => self.land_async(landing).await,
        }
    }

    /// [`land`](Self::land) for a caller that blocks its thread.
    fn land_now(self, landing: Landing) {
        if let Some(mut lead) = self.lead {
            if let Some(claim) = lead.claim.take() {
                claim.release();
            }
            lead.finish(landing);
        }
    }

    /// [`land`](Self::land), for async callers.
    async fn land_async(self, landing: Landing) {
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
    claim: Option<Holding>,
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

impl Once {
    pub(crate) fn new(
        enabled: bool,
        claims: bool,
        lease: Duration,
        wait_timeout: Duration,
        backend: DynBackend,
        reporter: Reporter,
    ) -> Once {
        let capabilities = backend.capabilities();
        Once {
            enabled,
            lease,
            wait_timeout,
            claims,
            flights: Mutex::default(),
            location: backend.location(),
            blocking_io: capabilities.blocking_io,
            atomic_create: capabilities.atomic_create,
            backend,
            reporter,
            no_claims: AtomicBool::new(false),
        }
    }

    fn join(&self, key: &Key, is_async: bool) -> Joined {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        match flights.get(key) {
            Some(flight) => Joined::Follow(flight.clone()),
            None => {
                let flight = Arc::new(Flight::new(is_async));
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
    pub(crate) async fn turn(
        &self,
        reach: Reach,
        key: &Key,
        func: Asker<'_>,
        absent: bool,
    ) -> Turn<'_> {
        match reach {
            Reach::Blocking => self.turn_now(key, func, absent),
            Reach::Task => self.turn_async(key, func, absent).await,
        }
    }

    /// [`turn`](Self::turn) for a caller that blocks its thread.
    fn turn_now(&self, key: &Key, func: Asker<'_>, absent: bool) -> Turn<'_> {
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
    fn turn_blocking(
        &self,
        key: &Key,
        func: Asker<'_>,
        absent: bool,
        current_thread: bool,
    ) -> Turn<'_> {
        let started = Instant::now();
        let deadline = started + self.wait_timeout;
        loop {
            match self.join(key, false) {
                Joined::Lead(flight) => {
                    let lead = self.lead(key, flight, false);
                    let (claimed, exists) =
                        finish(self.claim(key, deadline, Reach::Blocking, func));
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
    async fn turn_async(&self, key: &Key, func: Asker<'_>, absent: bool) -> Turn<'_> {
        let started = Instant::now();
        let deadline = started + self.wait_timeout;
        loop {
            match self.join(key, true) {
                Joined::Lead(flight) => {
                    let lead = self.lead(key, flight, true);
                    let (claimed, exists) = self.claim(key, deadline, Reach::Task, func).await;
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
        func: Asker<'_>,
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
        func: Asker<'_>,
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

    fn timed_out(&self, func: Asker<'_>, key: &Key, started: Instant) {
        self.reporter.warn(format!(
            "waited {} for another caller to compute '{func}' ({key}), the wait_timeout: computing it here too",
            format_time(started.elapsed().as_secs_f64())
        ));
    }

    fn cannot_claim(&self, func: Asker<'_>, key: &Key, why: &str) {
        let warning = format!(
            "cannot claim the computation of '{func}' ({key}) in {}: {why}; computing it without waiting for other processes",
            self.location
        );
        // The call warned already (the store failed it before): one warning per call.
        if func.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(target: "cachette", "{warning}");
        } else {
            self.reporter.warn(crate::report::untrusted_within(
                &warning,
                crate::report::WARNING_LEN,
            ));
        }
    }
}

/// The function a caller of [`Once::turn`] computes, and whether that call printed a warning
/// already (it prints at most one).
#[derive(Clone, Copy)]
pub(crate) struct Asker<'a> {
    pub(crate) name: &'a str,
    pub(crate) warned: &'a std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for Asker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
