//! The call pipeline: key, identity check, lookup, compute-once, miss, shelving.
//!
//! Each step is written once, as an async method of [`Call`], the context of one call (the
//! function, its memory's shared state, how the store is reached). Synchronous methods run the
//! steps with [`Reach::Blocking`] and complete them with [`finish`](crate::reach::finish);
//! async methods await them with [`Reach::Task`]. Faults go to the call's policy
//! ([`Faults`]); the entry store reports them as [`Error`]s and prints nothing.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use cachette_hashing::{CanonicalHasher, Digest, LazyHasher};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::faults::{Failed, Faults, Lenient, store};
use super::identity::register_identity;
use super::{MemorizedFunc, verbose};
use crate::array::MmapMode;
use crate::backend::Blob;
use crate::breaker::Gate;
use crate::entry::{CodeIdentity, Metadata, MetadataRef};
use crate::error::{EntryError, Error};
use crate::key::{Key, grammar};
use crate::memory::Shared;
use crate::once::{Asker, Landing, WriteRelease};
use crate::reach::Reach;
use crate::report::{WARNING_LEN, untrusted_within};
use crate::result::{MemorizedResult, NotMemorizedResult, Shelved};
use crate::store::memo::{MemoKey, Slot};
use crate::store::{EntryStore, IdentityCheck, StoredIdentity};
use crate::validation::Validation;

/// The longest readable form of one argument kept in metadata and verbose output.
pub(super) const READABLE_ARG_LEN: usize = 200;

/// One call of a memoized function: what every step needs.
pub(super) struct Call<'a, R, F> {
    pub(super) func: &'a MemorizedFunc<R, F>,
    pub(super) shared: &'a Shared,
    pub(super) reach: Reach,
    /// Whether the call printed a warning already: a call prints at most one.
    pub(super) warned: AtomicBool,
    /// Whether the store as a whole failed this call (down, hung, refusing): the call does not
    /// go back to it, and computes its value without it.
    pub(super) gave_up: AtomicBool,
    /// Where the call's output goes in the memo, and the memo's epoch before the store was
    /// read: set by [`memo_hit`](Self::memo_hit) when the function keeps its outputs there.
    pub(super) memo_ticket: Option<(MemoKey, u64)>,
}

/// A computed output, its metadata, and its entry (`None` when it cannot be serialized and the
/// policy lets the call go on).
struct Computed<R> {
    out: R,
    /// How long the call took, in seconds.
    duration: f64,
    /// When the call was made.
    time: DateTime<Utc>,
    /// The readable form of its arguments.
    readable: Vec<(String, String)>,
    entry: Option<Blob>,
}

/// What a forced run gives: the output with its metadata, and the key of its entry when it was
/// stored.
pub(super) type Stored<R> = ((R, Metadata), Option<Key>);

impl<R, F> Call<'_, R, F> {
    fn store(&self) -> &EntryStore {
        &self.shared.store
    }

    fn name(&self) -> &str {
        &self.func.id.name
    }

    /// Hands a fault to the policy, with its warning cut to [`WARNING_LEN`] characters and
    /// made safe to print: a call warns at most once, later faults of the same call are only
    /// logged at debug level (in strict mode the first fault ends the call anyway).
    /// A fault of the store as a whole also ends the call's use of the store; if the breaker
    /// opened on it, with a warning of its own (or was open, and warned already), the call says
    /// nothing more.
    fn fault<P: Faults>(&self, faults: P, error: Error, warning: String) -> Result<(), P::Fault> {
        let store_fault = matches!(&error, Error::Backend(e) if crate::breaker::is_store_fault(e));
        if store_fault {
            self.gave_up.store(true, Ordering::Relaxed);
        }
        let breaker_warned = store_fault && self.store().breaker().is_open();
        if !faults.is_strict() && (self.warned.swap(true, Ordering::Relaxed) || breaker_warned) {
            tracing::debug!(target: "cachette", "{}", untrusted_within(&warning, WARNING_LEN));
            return Ok(());
        }
        faults.fault(
            &self.shared.reporter,
            error,
            untrusted_within(&warning, WARNING_LEN),
        )
    }

    /// Prints a warning, unless the call printed one already.
    fn warn(&self, warning: String) {
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(target: "cachette", "{}", untrusted_within(&warning, WARNING_LEN));
        } else {
            self.shared
                .reporter
                .warn(untrusted_within(&warning, WARNING_LEN));
        }
    }

    /// Whether the call may use the store: not while the circuit breaker is open, when it
    /// computes its value without the store (strict calls fail with a temporary error).
    fn store_usable<P: Faults>(&self, faults: P) -> Result<bool, P::Fault> {
        match self.store().breaker().gate() {
            Gate::Closed | Gate::Probe => Ok(true),
            Gate::Open(retry_in) if faults.is_strict() => {
                let error = Error::Backend(self.store().breaker().open_error(retry_in));
                let warning = error.to_string();
                faults
                    .fault(&self.shared.reporter, error, warning)
                    .map(|()| false)
            }
            Gate::Open(_) => Ok(false),
        }
    }

    fn verbosity(&self) -> u8 {
        self.func.verbosity(self.shared)
    }

    /// Whether the store as a whole failed this call: it does not go back to it.
    fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Relaxed)
    }

    /// Counts a hit of an entry whose call took `stored_secs`.
    fn count_hit(&self, stored_secs: f64) {
        if self.func.tally(self.shared).hit(stored_secs) {
            self.shared.usage.counted(&self.func.memory.shared);
        }
    }

    /// Counts a miss whose computation took `took`.
    fn count_miss(&self, took: std::time::Duration) {
        self.func.tally(self.shared).miss(took);
        self.shared.usage.counted(&self.func.memory.shared);
    }

    /// Runs the function without the store, and counts the call.
    async fn uncached<A, O, Fut: Future<Output = O>>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> O {
        let t0 = Instant::now();
        let out = compute(args).await;
        self.func.tally(self.shared).uncached(t0.elapsed());
        self.shared.usage.counted(&self.func.memory.shared);
        out
    }

    /// The key of a call with `args`, or `None` when they cannot be hashed and the policy lets
    /// the call go on without the cache.
    pub(super) fn key<A: Serialize + ?Sized, P: Faults>(
        &self,
        args: &A,
        faults: P,
    ) -> Result<Option<Key>, P::Fault> {
        self.key_of(self.digest(args), faults)
    }

    /// The key of a call whose arguments hash to `digest`, or `None` as for
    /// [`key`](Self::key).
    fn key_of<P: Faults>(
        &self,
        digest: Result<Digest, Error>,
        faults: P,
    ) -> Result<Option<Key>, P::Fault> {
        let key = digest.map(|d| grammar::entry_of(&self.func.id.folder, &d));
        match key {
            Ok(key) => Ok(Some(key)),
            Err(e) => {
                let warning = format!(
                    "cannot hash the arguments of '{}' ({e}); calling it without the cache",
                    self.name()
                );
                self.fault(faults, e, warning).map(|()| None)
            }
        }
    }

    pub(super) fn digest<A: Serialize + ?Sized>(&self, args: &A) -> Result<Digest, Error> {
        // A hash of the code tells the two apart in their entries (`cachette::cache!`).
        if let Some(first) = &self.func.id.ambiguous
            && self.func.id.code_hash.is_none()
        {
            return Err(Error::InvalidArgument(format!(
                "'{}' is named after the place it was memoized at, where another function was memoized first in this process ({first}): they would share results, so it runs without the cache; give each a name with `.name()`",
                self.func.id.name
            )));
        }
        let state = self
            .func
            .state
            .as_ref()
            .map(|state| state.digest.as_ref())
            .transpose()
            .map_err(|e| {
                Error::InvalidArgument(format!("the state of the function cannot be hashed: {e}"))
            })?;
        let hasher = LazyHasher::new(&*self.shared.hasher);
        let digest = crate::array::outside_entries(|| {
            CanonicalHasher::digest(hasher, |hasher| {
                if let Some(state) = state {
                    hasher.add_raw(b"state");
                    hasher.add_raw(state.as_bytes());
                }
                hasher.add_args(args, &self.func.ignore)
            })
        });
        Ok(digest?)
    }

    /// The readable form of each argument, by name.
    pub(super) fn readable_args<A: Serialize + ?Sized>(&self, args: &A) -> Vec<(String, String)> {
        let mut parts = cachette_hashing::readable_args(args, &self.func.ignore, READABLE_ARG_LEN);
        if let Some(state) = &self.func.state {
            parts.insert(0, ("state".to_owned(), state.readable.clone()));
        }
        if !self.func.arg_names.is_empty() {
            for (name, _) in &mut parts {
                if let Some(real) = name
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.func.arg_names.get(i))
                {
                    name.clone_from(real);
                }
            }
        }
        parts
    }

    /// The generation of the store when the function's code identity must be checked (first
    /// use, or after a clear), `None` when it was checked already.
    fn check_due(&self) -> Option<u64> {
        let generation = self.store().generation();
        if self.func.checked.load(Ordering::Relaxed) == generation + 1 {
            return None;
        }
        register_identity(
            self.store().location(),
            &self.shared.reporter,
            &self.func.id,
        );
        if self
            .store()
            .identity_known(&self.func.id.folder, &self.func.id.identity())
        {
            self.func.checked.store(generation + 1, Ordering::Relaxed);
            return None;
        }
        Some(generation)
    }

    /// Checks the function's code identity against the store, once per store generation; a
    /// changed identity clears the function's results, with a warning.
    pub(super) async fn ensure_checked<P: Faults>(&self, faults: P) -> Result<(), P::Fault> {
        let Some(generation) = self.check_due() else {
            return Ok(());
        };
        let id = &self.func.id;
        let checked = self
            .store()
            .check_identity(self.reach, &id.folder, &id.identity())
            .await;
        match checked {
            Ok(check) => {
                match check {
                    IdentityCheck::Changed { previous } => {
                        verbose::code_changed(&self.shared.reporter, id, &previous);
                    }
                    IdentityCheck::Untrusted => {
                        verbose::untrusted_identity(&self.shared.reporter, id);
                    }
                    IdentityCheck::Same | IdentityCheck::New => {}
                }
                self.func.checked.store(generation + 1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let warning = format!(
                    "cannot check the stored code identity of '{}' in {}: {e}",
                    id.name,
                    self.store().location()
                );
                self.fault(faults, e, warning)
            }
        }
    }

    /// Whether the code identity stored belongs to other code (read, not changed): results of
    /// another version of the code would not be used by a call.
    async fn identity_differs(&self) -> bool {
        if self.check_due().is_none() {
            return false;
        }
        let stored = self
            .store()
            .stored_identity(self.reach, &self.func.id.folder)
            .await;
        match stored {
            Ok(Some(StoredIdentity::Trusted(stored))) => stored != self.func.id.identity(),
            // An item this memory does not trust vouches for nothing, and is replaced by the
            // next call; entries still name the code that wrote them.
            _ => false,
        }
    }

    /// Whether the entry of `key` is stored and valid, reading only its metadata.
    async fn check_key<P: Faults>(&self, key: &Key, faults: P) -> Result<Found, P::Fault> {
        let code = Some(self.func.id.code_identity());
        match self.store().metadata(self.reach, key, code).await {
            Ok(Some(meta)) if self.valid(&meta) => Ok(Found::Usable(meta.duration)),
            Ok(Some(_)) => Ok(Found::Unusable),
            Ok(None) => Ok(Found::Absent),
            Err(e) if is_other_code(&e) => Ok(Found::Unusable),
            Err(e) => {
                let warning = match &e {
                    Error::Entry { source, .. } => format!(
                        "the stored result of '{}' at {key} is unusable ({source})",
                        self.name()
                    ),
                    other => format!("cannot read {key} in {}: {other}", self.store().location()),
                };
                self.fault(faults, e, warning).map(|()| Found::Unusable)
            }
        }
    }

    /// Whether the validation callback, if any, accepts an entry's metadata.
    fn valid(&self, meta: &Metadata) -> bool {
        self.func
            .validation
            .as_ref()
            .is_none_or(|v| v.is_valid(meta))
    }

    fn ttl(&self) -> Option<std::time::Duration> {
        self.func.validation.as_ref().and_then(Validation::ttl)
    }

    fn reference(&self, key: &Key) -> MemorizedResult<R> {
        MemorizedResult::new(
            self.func.memory.clone(),
            self.store().location().to_owned(),
            self.func.id.folder.clone(),
            key.file_name().to_owned(),
        )
    }

    /// Writes an entry; says whether it was stored (a failed write goes to the policy). A call
    /// that gave up on the store writes nothing.
    async fn save<P: Faults>(
        &self,
        key: &Key,
        entry: Blob,
        faults: P,
        claim: &WriteRelease,
    ) -> Result<bool, P::Fault> {
        if self.gave_up() {
            return Ok(false);
        }
        let bytes = entry.len();
        let claim_key = claim.key_for(bytes);
        let saved = self
            .store()
            .save(self.reach, key, entry, self.ttl(), claim_key)
            .await;
        match saved {
            Ok(()) => {
                if claim_key.is_some() {
                    claim.done();
                }
                if let Some(limits) = &self.shared.limits {
                    limits.wrote(bytes);
                }
                Ok(true)
            }
            Err(e) => {
                let warning = format!(
                    "cannot store the result of '{}' (args {}) in {}: {e}; it is returned but not stored",
                    self.name(),
                    key.file_name(),
                    self.store().location()
                );
                self.fault(faults, e, warning).map(|()| false)
            }
        }
    }

    /// Runs the compute-once protocol around a miss of `key` (`absent`: no entry was found, as
    /// opposed to an unusable one): waits while another caller computes the key, then `probe`s
    /// the store for its result, or `run`s the computation (which says whether it stored its
    /// output) and lands the key's flight so that waiting callers follow.
    async fn once<T, E, S>(
        &self,
        key: &Key,
        absent: bool,
        probe: impl AsyncFnOnce() -> Result<Option<T>, S>,
        run: impl AsyncFnOnce(WriteRelease) -> Result<(T, bool), Failed<E, S>>,
    ) -> Result<T, Failed<E, S>> {
        let once = &self.shared.once;
        let asker = Asker {
            name: self.name(),
            warned: &self.warned,
        };
        let turn = once.turn(self.reach, key, asker, absent).await;
        if turn.load_first {
            match probe().await {
                Ok(Some(found)) => {
                    turn.land(self.reach, Landing::Stored).await;
                    return Ok(found);
                }
                Ok(None) => {}
                Err(fault) => {
                    turn.land(self.reach, Landing::Failed).await;
                    return Err(store(fault));
                }
            }
        }
        let outcome = run(turn.write_release()).await;
        let landing = match &outcome {
            Ok((_, true)) => Landing::Stored,
            Ok((_, false)) => Landing::NotStored,
            Err(_) => Landing::Failed,
        };
        turn.land(self.reach, landing).await;
        outcome.map(|(found, _)| found)
    }

    /// Whether concurrent misses of this function compute once.
    fn computes_once(&self) -> bool {
        self.func
            .compute_once
            .unwrap_or(self.shared.options.compute_once)
    }

    /// Deletes every stored result of the function.
    pub(super) async fn clear(&self) -> Result<(), Error> {
        let id = &self.func.id;
        self.store()
            .reset_function(self.reach, &id.folder, &id.identity())
            .await
    }

    /// The body of `check_call_in_cache`.
    pub(super) async fn check_cached<A: Serialize>(&self, args: &A) -> bool {
        let Ok(usable) = self.store_usable(Lenient);
        let Ok(key) = self.key(args, Lenient);
        let (true, Some(key)) = (usable, key) else {
            return false;
        };
        if self.identity_differs().await {
            return false;
        }
        let Ok(cached) = self.check_key(&key, Lenient).await;
        matches!(cached, Found::Usable(_))
    }
}

impl<R, F> Call<'_, R, F>
where
    R: Serialize + DeserializeOwned,
{
    /// The digest of `args`, unless the memo answers the call ([`memo_hit`](Self::memo_hit)):
    /// what a lookup does first, before any future is made.
    pub(super) fn digest_or_memo<A: Serialize>(
        &mut self,
        args: &A,
    ) -> ControlFlow<R, Result<Digest, Error>> {
        let digest = self.digest(args);
        if let Ok(digest) = &digest
            && let Some(out) = self.memo_hit(digest)
        {
            return ControlFlow::Break(out);
        }
        ControlFlow::Continue(digest)
    }

    /// The output of the call with `digest` from the memo, if the function keeps its outputs
    /// there and the memo holds a valid one of this code. Sets the call's
    /// [`memo_ticket`](Self::memo_ticket) so that a load or a miss fills the memo.
    fn memo_hit(&mut self, digest: &Digest) -> Option<R> {
        let (shared, func) = (self.shared, self.func);
        let (memo, uses) = (shared.store.memo()?, func.memo.as_ref()?);
        if shared.store.maps(func.effective_mmap_mode()) {
            return None;
        }
        let (folder, code) = uses.place(&func.id);
        let place = MemoKey::new(folder, digest);
        self.memo_ticket = Some((place, memo.epoch()));
        // Values are kept once the function's identity was checked; a clear asks again.
        if self.func.checked.load(Ordering::Relaxed) != self.store().generation() + 1 {
            return None;
        }
        // `None`: no value of this code; `Some(None)`: one that fails validation (or is not an
        // output of this type), dropped.
        let found = memo.with(&place, |slot| {
            if slot.code != code {
                return None;
            }
            if let Some(validation) = &self.func.validation
                && !slot
                    .meta
                    .as_deref()
                    .is_some_and(|meta| validation.is_valid(meta))
            {
                return Some(None);
            }
            Some((uses.get)(&*slot.value).map(|out| (out, slot.stored_secs)))
        })??;
        let Some((out, stored_secs)) = found else {
            memo.remove(&place);
            return None;
        };
        self.count_hit(stored_secs);
        if self.verbosity() > 1 {
            let key = grammar::entry_of(&self.func.id.folder, digest);
            verbose::loaded(
                &self.shared.reporter,
                &self.func.id,
                self.store().location(),
                &key,
                0.0,
            );
        }
        Some(out)
    }

    /// Keeps a copy of `out` in the memo at `place`, unless this memory wrote or deleted
    /// anything since `epoch`.
    fn keep(
        &self,
        out: &R,
        place: MemoKey,
        epoch: u64,
        meta: Option<Metadata>,
        stored_secs: f64,
        weight: u64,
    ) {
        let (Some(memo), Some(uses)) = (self.store().memo(), self.func.memo.as_ref()) else {
            return;
        };
        let slot = Slot {
            value: (uses.keep)(out),
            code: uses.place(&self.func.id).1,
            meta: meta.map(Arc::new),
            stored_secs,
            weight,
        };
        memo.put(place, slot, epoch);
    }

    /// Interprets what a load found under `key` ([`load`](Self::load)): the output, or `None`
    /// to compute it, and whether nothing was stored (as opposed to an unusable entry). A load
    /// is reported, with the time since `started`, when that is given.
    fn use_stored<P: Faults>(
        &self,
        key: &Key,
        found: Result<Option<crate::store::Checked>, Error>,
        mode: MmapMode,
        started: Option<Instant>,
        faults: P,
    ) -> Result<(Option<R>, bool), P::Fault> {
        let unusable = |e: Error| {
            let warning = match &e {
                Error::Entry { source, .. } => format!(
                    "the stored result of '{}' at {key} is unusable ({source}); computing it again",
                    self.name()
                ),
                other => format!(
                    "cannot read the stored result of '{}' from {}: {other}; computing it",
                    self.name(),
                    self.store().location()
                ),
            };
            self.fault(faults, e, warning).map(|()| (None, false))
        };
        let entry = match found {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok((None, true)),
            Err(e) if is_other_code(&e) => {
                if self.verbosity() > 0 {
                    verbose::other_code(&self.shared.reporter, &self.func.id, &e);
                }
                return Ok((None, false));
            }
            Err(e) => return unusable(e),
        };
        let mut validated = None;
        if self.func.validation.is_some() {
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(source) => {
                    return unusable(Error::Entry {
                        key: key.to_string(),
                        source,
                    });
                }
            };
            if !self.valid(&meta) {
                if self.verbosity() > 0 {
                    let validation = self.func.validation.as_ref();
                    verbose::no_longer_valid(
                        &self.shared.reporter,
                        &self.func.id,
                        validation,
                        &meta,
                    );
                }
                return Ok((None, false));
            }
            validated = Some(meta);
        }
        let stored_secs = entry.duration();
        let weight = entry.len();
        let out = match entry.decode::<R>(
            key,
            self.store().codec(),
            mode,
            self.store().max_decompressed(),
        ) {
            Ok(out) => out,
            Err(e) => return unusable(e),
        };
        if let Some((place, epoch)) = self.memo_ticket {
            self.keep(&out, place, epoch, validated, stored_secs, weight);
        }
        self.count_hit(stored_secs);
        if let Some(started) = started {
            verbose::loaded(
                &self.shared.reporter,
                &self.func.id,
                self.store().location(),
                key,
                started.elapsed().as_secs_f64(),
            );
        }
        Ok((Some(out), false))
    }

    /// Loads the output stored under `key`, if usable; `absent` tells whether nothing was found
    /// (as opposed to an unusable entry).
    async fn load<P: Faults>(
        &self,
        key: &Key,
        mode: MmapMode,
        started: Option<Instant>,
        faults: P,
    ) -> Result<(Option<R>, bool), P::Fault> {
        let (code, verify) = self.read_for(faults);
        let found = self.store().read(self.reach, key, mode, code, verify).await;
        self.use_stored(key, found, mode, started, faults)
    }

    /// What a load reads for: the function's code, and whether a mapped entry's arrays are
    /// checked against their block checksums.
    #[inline]
    fn read_for<P: Faults>(&self, faults: P) -> (Option<CodeIdentity<'_>>, bool) {
        let verify = self.shared.options.verify_maps || faults.is_strict();
        (Some(self.func.id.code_identity()), verify)
    }

    /// Runs the function, times it, and encodes the entry.
    async fn compute<A, E, Fut, P: Faults>(
        &self,
        key: &Key,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<Computed<R>, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let readable = self.readable_args(&args);
        let verbosity = self.verbosity();
        if verbosity > 0 {
            verbose::call_header(&self.shared.reporter, &self.func.id, &readable);
        }
        let time = Utc::now();
        let t0 = Instant::now();
        let out = compute(args).await;
        let took = t0.elapsed();
        self.count_miss(took);
        let out = out.map_err(Failed::Function)?;
        let duration = took.as_secs_f64();
        let meta = self.metadata(key, duration, time, &readable);
        let entry = match self.store().encode(&meta, &out) {
            Ok(entry) => Some(entry),
            Err(e) => {
                let warning = format!(
                    "the output of '{}' cannot be serialized ({e}); it is returned but not stored",
                    self.name()
                );
                self.fault(faults, e, warning).map_err(store)?;
                None
            }
        };
        if verbosity > 0 {
            verbose::call_footer(&self.shared.reporter, &self.func.id, duration);
        }
        Ok(Computed {
            out,
            duration,
            time,
            readable,
            entry,
        })
    }

    /// The metadata of a call of `key` made at `time`, which took `duration` seconds.
    fn metadata<'a>(
        &'a self,
        key: &'a Key,
        duration: f64,
        time: DateTime<Utc>,
        readable: &'a [(String, String)],
    ) -> MetadataRef<'a> {
        let code = self.func.id.code_identity();
        MetadataRef {
            func: &self.func.id.folder,
            args_id: key.file_name(),
            name: code.name,
            code: code.code,
            version: code.version,
            duration,
            codec: self.store().codec().id(),
            time,
            input_args: readable,
            hasher: self.shared.hasher.id(),
        }
    }

    /// The output loaded back from the store after a miss, so that the miss gives the same
    /// mapped arrays as later hits (joblib does the same when `mmap_mode` is set), or the
    /// computed one if that fails. A failure here is a warning in every mode: the output is
    /// right, only not mapped.
    async fn reload(&self, key: &Key, mode: MmapMode, out: R) -> R {
        let code = Some(self.func.id.code_identity());
        // The bytes were written just now, by this call: nothing to check in the arrays.
        let loaded = match self.store().read(self.reach, key, mode, code, false).await {
            Ok(Some(entry)) => entry.decode::<R>(
                key,
                self.store().codec(),
                mode,
                self.store().max_decompressed(),
            ),
            Ok(None) => Err(Error::InvalidArgument("it is gone".into())),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(mapped) => mapped,
            Err(e) => {
                self.warn(format!(
                    "cannot map the result of '{}' just stored at {key} ({e}); returning it from memory",
                    self.name()
                ));
                out
            }
        }
    }

    /// Computes and stores the result of a miss; says whether it was stored.
    async fn miss<A, E, Fut, P: Faults>(
        &self,
        key: &Key,
        mode: MmapMode,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
        claim: WriteRelease,
    ) -> Result<(R, bool), Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let computed = self.compute(key, args, compute, faults).await?;
        let out = computed.out;
        let Some(entry) = computed.entry else {
            return Ok((out, false));
        };
        let weight = entry.len();
        if !self.save(key, entry, faults, &claim).await.map_err(store)? {
            return Ok((out, false));
        }
        if self.store().maps(mode) {
            return Ok((self.reload(key, mode, out).await, true));
        }
        if let (Some((place, _)), Some(memo)) = (self.memo_ticket, self.store().memo()) {
            // The epoch after this call's own write: a later write or delete drops the value.
            // The memo keeps the metadata of a value only for a validation callback.
            let (duration, time) = (computed.duration, computed.time);
            let meta = self.func.validation.is_some().then(|| {
                self.metadata(key, duration, time, &computed.readable)
                    .to_owned()
            });
            self.keep(&out, place, memo.epoch(), meta, duration, weight);
        }
        Ok((out, true))
    }

    /// The body of `call_with` for arguments that hash to `digest`, after
    /// [`memo_hit`](Self::memo_hit): a hit loads, a miss computes (once, when asked) and
    /// stores.
    pub(super) async fn lookup<A, E, Fut, P: Faults>(
        &self,
        digest: Result<Digest, Error>,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<R, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let mode = self.func.effective_mmap_mode();
        let usable = self.store_usable(faults).map_err(store)?;
        let key = self.key_of(digest, faults).map_err(store)?;
        let (true, Some(key)) = (usable, key) else {
            if !usable && self.verbosity() > 0 {
                verbose::store_skipped(
                    &self.shared.reporter,
                    &self.func.id,
                    self.store().location(),
                );
            }
            return self.uncached(args, compute).await.map_err(Failed::Function);
        };
        self.ensure_checked(faults).await.map_err(store)?;
        if self.gave_up() {
            return self.uncached(args, compute).await.map_err(Failed::Function);
        }
        // Only a verbose memory reports how long a load took: a hit reads no clock for it.
        let started = (self.verbosity() > 1).then(Instant::now);
        let (found, absent) = self
            .load(&key, mode, started, faults)
            .await
            .map_err(store)?;
        if let Some(out) = found {
            grammar::recycle(key);
            return Ok(out);
        }
        self.after_miss(key, absent, started, args, compute, faults)
            .await
    }

    /// The lookup of a blocking call, as far as its first read, done on this thread without a
    /// future when none of its steps has to wait: a hit, or a miss to go on with
    /// ([`after_miss`](Self::after_miss)). A lookup whose function's identity is due to be
    /// checked, whose store is skipped or gave up, whose load is reported, or whose backend
    /// cannot answer now is left to [`lookup`](Self::lookup), from its start.
    pub(super) fn begin_now<P: Faults>(
        &self,
        digest: Result<Digest, Error>,
        faults: P,
    ) -> Result<Begun<R>, P::Fault> {
        let Ok(d) = &digest else {
            return Ok(Begun::Later(digest));
        };
        if self.reach != Reach::Blocking
            || self.store().breaker().is_open()
            || self.check_due().is_some()
            || self.gave_up()
            || self.verbosity() > 1
        {
            return Ok(Begun::Later(digest));
        }
        let key = grammar::entry_of(&self.func.id.folder, d);
        let mode = self.func.effective_mmap_mode();
        let (code, verify) = self.read_for(faults);
        let Some(found) = self.store().read_now(&key, mode, code, verify) else {
            grammar::recycle(key);
            return Ok(Begun::Later(digest));
        };
        Ok(match self.use_stored(&key, found, mode, None, faults)? {
            (Some(out), _) => {
                grammar::recycle(key);
                Begun::Hit(out)
            }
            (None, absent) => Begun::Missed { key, absent },
        })
    }

    /// The rest of a lookup that found no usable entry under `key` (`absent`: none at all):
    /// computes, once when asked, and stores. `started` as for [`load`](Self::load).
    pub(super) async fn after_miss<A, E, Fut, P: Faults>(
        &self,
        key: Key,
        absent: bool,
        started: Option<Instant>,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<R, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        if self.gave_up() {
            return self.uncached(args, compute).await.map_err(Failed::Function);
        }
        if absent && self.verbosity() > 0 {
            verbose::not_stored(&self.shared.reporter, &self.func.id);
        }
        let mode = self.func.effective_mmap_mode();
        // The miss's state lives in a box of its own: the lookup's future, which every hit
        // builds and moves, stays small.
        if !self.computes_once() {
            return Box::pin(self.miss(&key, mode, args, compute, faults, WriteRelease::default()))
                .await
                .map(|(out, _)| out);
        }
        Box::pin(self.once(
            &key,
            absent,
            async || Ok(self.load(&key, mode, started, faults).await?.0),
            async |claim| self.miss(&key, mode, args, compute, faults, claim).await,
        ))
        .await
    }

    /// Computes and stores whatever is stored; gives the key when the result was stored.
    pub(super) async fn force_store<A, E, Fut, P: Faults>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<Stored<R>, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let usable = self.store_usable(faults).map_err(store)?;
        let key = self.key(&args, faults).map_err(store)?;
        let (true, Some(key)) = (usable, key) else {
            let (time, t0) = (Utc::now(), Instant::now());
            let out = self
                .uncached(args, compute)
                .await
                .map_err(Failed::Function)?;
            let meta = unstored_metadata(Some(self), time, t0);
            return Ok(((out, meta), None));
        };
        self.ensure_checked(faults).await.map_err(store)?;
        self.store_computed(&key, args, compute, faults, WriteRelease::default())
            .await
    }

    /// Computes the result of `key` and stores it.
    async fn store_computed<A, E, Fut, P: Faults>(
        &self,
        key: &Key,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
        claim: WriteRelease,
    ) -> Result<Stored<R>, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let computed = self.compute(key, args, compute, faults).await?;
        let mut stored = None;
        if let Some(entry) = computed.entry
            && self.save(key, entry, faults, &claim).await.map_err(store)?
        {
            stored = Some(key.clone());
        }
        let (duration, time) = (computed.duration, computed.time);
        let meta = self.metadata(key, duration, time, &computed.readable);
        Ok(((computed.out, meta.to_owned()), stored))
    }

    /// The body of `call_and_shelve_with`.
    pub(super) async fn shelve<A, E, Fut, P: Faults>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<Shelved<R>, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let usable = self.store_usable(faults).map_err(store)?;
        let mut key = self.key(&args, faults).map_err(store)?.filter(|_| usable);
        if key.is_some() {
            self.ensure_checked(faults).await.map_err(store)?;
            key = key.filter(|_| !self.gave_up());
        }
        let Some(key) = key else {
            let out = self
                .uncached(args, compute)
                .await
                .map_err(Failed::Function)?;
            return Ok(Shelved::NotMemorized(NotMemorizedResult::new(out)));
        };
        let checked = self.check_key(&key, faults).await.map_err(store)?;
        if let Found::Usable(stored_secs) = checked {
            self.count_hit(stored_secs);
            return Ok(Shelved::Memorized(self.reference(&key)));
        }
        let shelved = |stored: Stored<R>| match stored {
            (_, Some(key)) => Shelved::Memorized(self.reference(&key)),
            ((out, _), None) => Shelved::NotMemorized(NotMemorizedResult::new(out)),
        };
        if !self.computes_once() {
            let stored = self
                .store_computed(&key, args, compute, faults, WriteRelease::default())
                .await?;
            return Ok(shelved(stored));
        }
        self.once(
            &key,
            checked == Found::Absent,
            async || match self.check_key(&key, faults).await? {
                Found::Usable(stored_secs) => {
                    self.count_hit(stored_secs);
                    Ok(Some(Shelved::Memorized(self.reference(&key))))
                }
                Found::Absent | Found::Unusable => Ok(None),
            },
            async |claim| {
                let stored = self
                    .store_computed(&key, args, compute, faults, claim)
                    .await?;
                let was_stored = stored.1.is_some();
                Ok((shelved(stored), was_stored))
            },
        )
        .await
    }
}

/// What a look at an entry's metadata found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Found {
    /// No entry.
    Absent,
    /// An entry the call cannot use (damaged, of other code, refused by validation).
    Unusable,
    /// A usable entry, whose call took this many seconds.
    Usable(f64),
}

/// Whether a read found an entry of other code than the caller's: a miss for it, not a fault.
fn is_other_code(e: &Error) -> bool {
    matches!(
        e,
        Error::Entry {
            source: EntryError::OtherCode(_),
            ..
        }
    )
}

/// The metadata of a call whose result is not stored (a disabled memory, arguments that cannot
/// be hashed).
pub(super) fn unstored_metadata<R, F>(
    call: Option<&Call<'_, R, F>>,
    time: DateTime<Utc>,
    t0: Instant,
) -> Metadata {
    let duration = t0.elapsed().as_secs_f64();
    match call {
        None => Metadata::new(duration, time, Vec::new(), "", "", "", ""),
        Some(call) => Metadata::new(
            duration,
            time,
            Vec::new(),
            &call.func.id.folder,
            "",
            call.shared.hasher.id(),
            call.store().codec().id(),
        ),
    }
}

/// How a blocking lookup begun without a future went ([`Call::begin_now`]).
pub(super) enum Begun<R> {
    /// The stored output.
    Hit(R),
    /// No usable entry is stored under `key`; `absent`: none at all.
    Missed { key: Key, absent: bool },
    /// A step has to wait, or is rare: the whole lookup runs, from the arguments' digest.
    Later(Result<Digest, Error>),
}
