//! Claims: how one process tells the others sharing a store that it computes a key.
//!
//! A claim is a small item next to the entry, `<entry key>.claim`, created only if absent,
//! naming its owner and the end of its lease (see the [module documentation](super)). Every
//! operation on claims passes `bypass_cache`, so that a local tier neither serves nor keeps
//! them and statistics leave them out.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::lease::{HeldClaim, WriteRelease};
use super::record::{ClaimRecord, millis, now_ms, read_claim};
use super::{FIRST_POLL, MAX_POLL, Once};
use crate::backend::{
    BackendResult, ClaimAttempt, ClaimGuard, GetOptions, PutOptions, PutOutcome, StoreBackend,
    StoreBackendExt,
};
use crate::error::ErrorKind;
use crate::key::{Key, grammar};
use crate::reach::Reach;

/// A claim this process holds.
#[derive(Debug)]
pub(super) enum Holding {
    /// An item, renewed by the lease thread until it is released.
    Item(HeldClaim),
    /// A lock of the backend's own ([`StoreBackend::try_claim`]), released when dropped.
    Lock(ClaimGuard),
}

impl Holding {
    /// The claim as the write of the entry it guards sees it: a lock has nothing for the write
    /// to delete.
    pub(super) fn for_write(&self) -> WriteRelease {
        match self {
            Holding::Item(claim) => claim.for_write(),
            Holding::Lock(_) => WriteRelease::default(),
        }
    }

    /// Releases the claim.
    pub(super) fn release(self) {
        match self {
            Holding::Item(claim) => claim.release(),
            Holding::Lock(guard) => drop(guard),
        }
    }

    /// [`release`](Self::release), without blocking an async caller's runtime.
    pub(super) async fn release_async(self) {
        match self {
            Holding::Item(claim) => claim.release_async().await,
            Holding::Lock(guard) => drop(guard),
        }
    }
}

/// How the claim of a flight's leader went.
pub(super) enum Claimed {
    /// This process holds the claim.
    Held(Holding),
    /// No claim (none on this backend, or the store failed): compute.
    Unclaimed,
    /// The holder released its claim and its entry is there: load it.
    Released,
    /// Waited `wait_timeout` for the holder: compute anyway.
    TimedOut,
}

impl Once {
    /// Whether claims are taken: they are asked for, and the store creates items atomically
    /// across processes.
    fn claims_on(&self) -> bool {
        self.claims && !self.no_claims.load(Ordering::Relaxed) && self.atomic_create
    }

    /// Runs one operation of the store, as `reach` says.
    async fn call<T, F>(&self, reach: Reach, op: F) -> BackendResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a dyn StoreBackend) -> BoxFuture<'a, BackendResult<T>> + Send + 'static,
    {
        reach.run(&self.backend, self.blocking_io, op).await
    }

    /// Whether the entry is in the shared store (past any local tier, not counted by the
    /// statistics, not an access).
    async fn exists(&self, reach: Reach, key: &Key) -> bool {
        let head = GetOptions::head().with_bypass_cache(true);
        // A caller that may block asks on its thread when the backend can answer so: no key
        // copied, no future boxed (see `StoreBackend::get_now`).
        if reach == Reach::Blocking
            && let Some(found) = self.backend.get_now(key, &head)
        {
            return found.is_ok_and(|found| found.is_some());
        }
        let key = key.clone();
        self.call(reach, move |b| {
            Box::pin(async move { Ok(b.get_opts(&key, head).await?.is_some()) })
        })
        .await
        .unwrap_or(false)
    }

    async fn read_claim(&self, reach: Reach, claim_key: &Key) -> BackendResult<Option<Bytes>> {
        let k = claim_key.clone();
        self.call(reach, move |b| Box::pin(read_claim(b, k))).await
    }

    /// Takes the claim of `key` for a flight's leader, waiting while another process holds it.
    /// Also says whether the entry exists (checked once the claim is taken, since a holder may
    /// have stored it and released its claim between the caller's miss and the claim).
    pub(super) async fn claim(
        &self,
        key: &Key,
        deadline: Instant,
        reach: Reach,
        func: super::Asker<'_>,
    ) -> (Claimed, bool) {
        if self.claims
            && !self.no_claims.load(Ordering::Relaxed)
            && let Some(first) = self.try_lock(reach, key).await
        {
            return self.lock(key, deadline, reach, func, first).await;
        }
        if !self.claims_on() {
            return (Claimed::Unclaimed, self.exists(reach, key).await);
        }
        let Ok(claim_key) = grammar::claim(key) else {
            return (Claimed::Unclaimed, self.exists(reach, key).await);
        };
        let mut record = ClaimRecord::new(self.lease);
        // The bytes of the other process's claim last seen, and since when they are unchanged.
        let mut seen: Option<(Bytes, Instant)> = None;
        let mut poll = FIRST_POLL;
        loop {
            record.expires_ms = now_ms() + millis(self.lease);
            let sent = Instant::now();
            let (k, value, lease) = (claim_key.clone(), record.to_bytes(), self.lease);
            let created = self
                .call(reach, move |b| {
                    Box::pin(async move {
                        // Made in place: a reader that finds it half written waits for it
                        // as for any claim it cannot parse.
                        let options = PutOptions::create()
                            .ttl(Some(lease))
                            .with_bypass_cache(true)
                            .with_in_place(true);
                        b.put_opts(&k, value.into(), options).await
                    })
                })
                .await;
            match created {
                Ok(PutOutcome::Created) => {
                    return self.hold(reach, key, claim_key, (record, sent)).await;
                }
                Ok(PutOutcome::AlreadyExists) => {}
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    tracing::debug!(target: "cachette", "{}: no create-if-absent ({e}); compute-once works within this process only", self.location);
                    self.no_claims.store(true, Ordering::Relaxed);
                    return (Claimed::Unclaimed, self.exists(reach, key).await);
                }
                Err(e) => {
                    self.cannot_claim(func, key, &e.to_string());
                    return (Claimed::Unclaimed, self.exists(reach, key).await);
                }
            }
            // Another process holds the claim: wait until it goes or goes stale.
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return (Claimed::TimedOut, false);
                }
                let bytes = match self.read_claim(reach, &claim_key).await {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => {
                        if self.exists(reach, key).await {
                            return (Claimed::Released, true);
                        }
                        break; // Released without an entry: its holder failed. Take it.
                    }
                    Err(e) => {
                        self.cannot_claim(func, key, &e.to_string());
                        return (Claimed::Unclaimed, self.exists(reach, key).await);
                    }
                };
                let holder = ClaimRecord::parse(&bytes);
                if holder.as_ref().is_some_and(|h| h.token == record.token) {
                    // Ours: a create that succeeded although its answer was lost (and retried).
                    return self.hold(reach, key, claim_key, (record, sent)).await;
                }
                let since = match &seen {
                    Some((seen_bytes, since)) if *seen_bytes == bytes => *since,
                    _ => {
                        seen = Some((bytes.clone(), now));
                        now
                    }
                };
                // The holder's lease, at most this memory's: a claim planted with a lease of a
                // year is stale after one of ours, not after the whole wait.
                let lease = holder
                    .as_ref()
                    .map_or(self.lease, |h| h.lease.min(self.lease));
                let expired = holder.as_ref().is_some_and(ClaimRecord::expired);
                if expired || now.duration_since(since) > lease {
                    self.take_over(reach, func, &claim_key, &bytes, holder.as_ref())
                        .await;
                    seen = None;
                    break;
                }
                reach.pause(poll.min(deadline - now)).await;
                poll = (poll * 2).min(MAX_POLL);
            }
        }
    }

    /// The backend's own claim of `key` ([`StoreBackend::try_claim`]), taken where the store's
    /// blocking work goes: off an async caller's runtime (the first claim may open the store's
    /// lock file, or its index).
    async fn try_lock(&self, reach: Reach, key: &Key) -> Option<BackendResult<ClaimAttempt>> {
        if reach == Reach::Blocking || !self.blocking_io {
            return self.backend.try_claim(key);
        }
        let k = key.clone();
        self.call(reach, move |b| Box::pin(async move { Ok(b.try_claim(&k)) }))
            .await
            .unwrap_or_else(|e| Some(Err(e)))
    }

    /// [`claim`](Self::claim) through the backend's own locks, `first` being the first
    /// attempt: polls a lock held by another until it is released (by its holder, or by the
    /// system when its holder dies), or the wait times out.
    async fn lock(
        &self,
        key: &Key,
        deadline: Instant,
        reach: Reach,
        func: super::Asker<'_>,
        first: BackendResult<ClaimAttempt>,
    ) -> (Claimed, bool) {
        let mut attempt = first;
        let mut poll = FIRST_POLL;
        let mut waited = false;
        loop {
            match attempt {
                Ok(ClaimAttempt::Held(guard)) => {
                    let exists = self.exists(reach, key).await;
                    if waited && exists {
                        // Its holder stored it and let go: load it, holding nothing.
                        return (Claimed::Released, true);
                    }
                    return (Claimed::Held(Holding::Lock(guard)), exists);
                }
                Ok(ClaimAttempt::Busy) => {}
                Err(e) => {
                    self.cannot_claim(func, key, &e.to_string());
                    return (Claimed::Unclaimed, self.exists(reach, key).await);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return (Claimed::TimedOut, false);
            }
            reach.pause(poll.min(deadline - now)).await;
            poll = (poll * 2).min(MAX_POLL);
            waited = true;
            let Some(again) = self.try_lock(reach, key).await else {
                return (Claimed::Unclaimed, self.exists(reach, key).await);
            };
            attempt = again;
        }
    }

    /// Deletes a stale claim, if it still holds the bytes seen stale (a claim renewed or taken
    /// over meanwhile is left alone).
    async fn take_over(
        &self,
        reach: Reach,
        func: super::Asker<'_>,
        claim_key: &Key,
        stale: &Bytes,
        holder: Option<&ClaimRecord>,
    ) {
        if !matches!(self.read_claim(reach, claim_key).await, Ok(Some(again)) if again == *stale) {
            return;
        }
        let owner = holder.map_or_else(
            || "an unreadable owner".to_owned(),
            |h| {
                let host = crate::report::untrusted_within(&h.host, 100);
                format!("process {} on {host}", h.pid)
            },
        );
        self.reporter.warn(format!(
            "the claim on computing '{func}' ({claim_key}) held by {owner} is stale (its lease ran out): taking it over"
        ));
        let k = claim_key.clone();
        if let Err(e) = self
            .call(reach, move |b| Box::pin(async move { b.delete(&k).await }))
            .await
        {
            tracing::debug!(target: "cachette", "cannot delete the stale claim {claim_key}: {e}");
        }
    }

    /// Starts renewing a claim just created (the record, and when its write was sent), and
    /// says whether the entry exists: another process may have claimed, computed, stored and
    /// released it between the caller's miss and this claim (with many processes and quick
    /// computations, it happens), and compute-once means once.
    async fn hold(
        &self,
        reach: Reach,
        key: &Key,
        claim_key: Key,
        written: (ClaimRecord, Instant),
    ) -> (Claimed, bool) {
        let claim = HeldClaim::start(
            self.backend.clone(),
            self.blocking_io,
            claim_key,
            written,
            self.lease,
            self.reporter.clone(),
        );
        (
            Claimed::Held(Holding::Item(claim)),
            self.exists(reach, key).await,
        )
    }
}
