//! [`MemorizedFunc`]: a memoized function, and how functions are identified.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use cachette_hashing::{CanonicalHasher, Digest};
use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::array::{self, MmapMode};
use crate::backend::{BackendResult, Blob, PutOptions, StoreBackend, StoreBackendExt};
use crate::codec;
use crate::entry::{self, HEADER_READ_HINT, Metadata};
use crate::error::{CallError, EntryError, Error};
use crate::faults::{Failed, Faults, Lenient, Strictness, store};
use crate::key::{Key, Prefix};
use crate::load::{Checked, Read};
use crate::memory::{Inner, Memory};
use crate::once::Landing;
use crate::reach::{Reach, finish};
use crate::report::{format_time, rule_ending_with};
use crate::result::{MemorizedResult, NotMemorizedResult, Shelved};
use crate::validation::Validation;

/// The longest readable form of one argument kept in metadata and verbose output.
const READABLE_ARG_LEN: usize = 200;
/// The name of the item holding a function's code identity, in its folder.
pub(crate) const FUNC_CODE: &str = "func_code";

/// The identity of a memoized function: its name (which gives its folder in the store), and
/// what says whether its code changed: a hash of its tokens (taken by the `#[memoize]` macro)
/// and/or an explicit version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncId {
    name: String,
    folder: String,
    code_hash: Option<String>,
    version: Option<String>,
    origin: String,
}

impl FuncId {
    /// An identity from a name such as `my_crate::module::function`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        FuncId {
            folder: folder_of(&name),
            origin: name.clone(),
            name,
            code_hash: None,
            version: None,
        }
    }

    /// Sets the hash of the function's code; a different hash invalidates stored results.
    pub fn with_code_hash(mut self, hash: impl Into<String>) -> Self {
        self.code_hash = Some(hash.into());
        self
    }

    /// Sets an explicit version; a different version invalidates stored results.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Sets where the function was defined, to tell two functions under one name apart.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// Identity of a callable passed to [`Memory::cache`]: its path for a function item; the
    /// enclosing function plus the call site for a closure (or a function pointer or trait
    /// object, whose type says nothing about which function it is).
    pub(crate) fn of_callable<F>(caller: &Location<'_>) -> Self {
        let type_name = std::any::type_name::<F>();
        let anonymous = type_name.contains("{{closure}}")
            || type_name.starts_with("fn(")
            || type_name.starts_with("unsafe ")
            || type_name.starts_with("extern ")
            || type_name.contains("dyn ");
        if !anonymous {
            return FuncId::new(type_name);
        }
        let file = caller
            .file()
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or(caller.file());
        let base = if type_name.contains("{{closure}}") {
            type_name.replace("::{{closure}}", "::closure")
        } else {
            "closure".to_owned()
        };
        let name = format!("{base}@{file}:{}:{}", caller.line(), caller.column());
        let origin = format!("{type_name} at {caller}");
        FuncId::new(name).with_origin(origin)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder of the function's results in the store.
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// The short name: the last segment of the path.
    pub fn short_name(&self) -> &str {
        let base = self.name.split('@').next().unwrap_or(&self.name);
        base.rsplit("::").next().unwrap_or(base)
    }

    /// What is stored in the function's `func_code` item.
    fn identity(&self) -> String {
        format!(
            "cachette function {}\ncode: {}\nversion: {}\n",
            self.name,
            self.code_hash.as_deref().unwrap_or("-"),
            self.version.as_deref().unwrap_or("-"),
        )
    }
}

/// Turns a function path into a single, readable folder name: `a::b::c` becomes `a.b.c`, and
/// anything but ASCII letters, digits and `._-@+=,` becomes `_`. Long names are cut and get a
/// hash suffix.
fn folder_of(name: &str) -> String {
    let dotted = name.replace("::", ".");
    let mut folder: String = dotted
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@+=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if folder.starts_with('.') {
        folder.insert(0, '_');
    }
    if folder.len() > 160 {
        let hash = xxhash_rust::xxh3::xxh3_64(name.as_bytes());
        folder.truncate(140);
        folder.push_str(&format!("-{hash:016x}"));
    }
    folder
}

/// Which functions are memoized under which identity in this process, to warn of collisions.
fn register_identity(memory: &Inner, id: &FuncId) {
    static SEEN: OnceLock<Mutex<HashMap<(String, String), String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let slot = (memory.location.clone(), id.folder.clone());
    if let Some(previous) = seen.insert(slot, id.origin.clone())
        && previous != id.origin
    {
        memory.reporter.warn(format!(
            "Possible name collision between functions '{}' ({previous}) and '{}' ({}): they share the cache folder '{}', and will overwrite each other's results across sessions. Give one of them another name.",
            id.name, id.name, id.origin, id.folder
        ));
    }
}

/// The stand-in for "no function" in a [`MemorizedFunc`] driven by [`MemorizedFunc::call_with`]
/// (as the `#[memoize]` macro does).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFunc;

/// Says which argument type a [`MemorizedFunc`] takes, so that calls like
/// `check_call_in_cache(&1)` infer the same type as the function's argument. Every
/// `Fn(A) -> R` takes `A`; [`NoFunc`] takes anything.
pub trait TakesArgs<A> {}

impl<A, F, O> TakesArgs<A> for F where F: Fn(A) -> O {}

impl<A> TakesArgs<A> for NoFunc {}

/// A memoized function: calls with arguments already seen load the stored result instead of
/// running the function.
///
/// Made by [`Memory::cache`] for closures and function items (call it with
/// [`eval`](Self::eval)), or by the `#[memoize]` attribute macro, which drives it through
/// [`call_with`](Self::call_with) so that the function is still called like a plain `fn`.
///
/// Arguments are hashed with the memory's hasher (any `Serialize` type, tuples for several
/// arguments); outputs are stored with the memory's codec (`Serialize + DeserializeOwned`).
/// Errors of the function (`Err` from [`call_with`](Self::call_with), or a panic) propagate and
/// are never stored. Faults of the store never fail a call: they log a warning, and the function
/// runs; in [strict mode](Self::strict), the `try_` methods ([`try_eval`](Self::try_eval),
/// [`try_call_with`](Self::try_call_with), ...) return them as errors instead. Callers that miss the same arguments at once compute them once, the others waiting for
/// the result (see [`MemoryBuilder::compute_once`](crate::MemoryBuilder::compute_once)).
pub struct MemorizedFunc<R, F = NoFunc> {
    memory: Memory,
    id: FuncId,
    arg_names: Vec<String>,
    ignore: Vec<usize>,
    validation: Option<Validation>,
    verbose: Option<u8>,
    mmap_mode: Option<MmapMode>,
    compute_once: Option<bool>,
    strict: Option<bool>,
    /// The memory generation + 1 at which the code identity was last checked; 0 when never.
    checked: AtomicU64,
    f: F,
    _output: PhantomData<fn() -> R>,
}

impl<R, F> fmt::Debug for MemorizedFunc<R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorizedFunc")
            .field("func", &self.id.name)
            .field("location", &self.memory.location())
            .field("ignore", &self.ignore)
            .field("validation", &self.validation)
            .field("mmap_mode", &self.mmap_mode)
            .field("compute_once", &self.compute_once)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

impl<R> MemorizedFunc<R, NoFunc> {
    /// A memoized function with no function of its own: results come from the closures given to
    /// [`call_with`](Self::call_with). This is what `#[memoize]` builds.
    pub fn new(memory: &Memory, id: FuncId) -> Self {
        MemorizedFunc::with_function(memory, id, NoFunc)
    }
}

impl<R, F> MemorizedFunc<R, F> {
    pub(crate) fn with_function(memory: &Memory, id: FuncId, f: F) -> Self {
        MemorizedFunc {
            memory: memory.clone(),
            id,
            arg_names: Vec::new(),
            ignore: Vec::new(),
            validation: None,
            verbose: None,
            mmap_mode: None,
            compute_once: None,
            strict: None,
            checked: AtomicU64::new(0),
            f,
            _output: PhantomData,
        }
    }

    /// Renames the function (its folder in the store). Use it to give a closure a stable
    /// identity.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        let origin = self.id.origin.clone();
        let (code, version) = (self.id.code_hash.take(), self.id.version.take());
        self.id = FuncId {
            code_hash: code,
            version,
            ..FuncId::new(name).with_origin(origin)
        };
        self
    }

    /// Sets the version of the function: stored results of other versions are discarded on
    /// first use.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.id.version = Some(version.into());
        self
    }

    /// Names the arguments (the elements of the argument tuple), for metadata, verbose output
    /// and [`ignore_names`](Self::ignore_names).
    pub fn arg_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.arg_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Leaves arguments out of the hash, by position in the argument tuple (a non-tuple
    /// argument is position 0): calls that differ only in them share a result.
    pub fn ignore(mut self, positions: impl IntoIterator<Item = usize>) -> Self {
        self.ignore.extend(positions);
        self.ignore.sort_unstable();
        self.ignore.dedup();
        self
    }

    /// Leaves arguments out of the hash, by name (see [`arg_names`](Self::arg_names)). An
    /// unknown name is reported as a warning.
    pub fn ignore_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in names {
            let name = name.as_ref();
            match self.arg_names.iter().position(|n| n == name) {
                Some(i) => self = self.ignore([i]),
                None => {
                    if let Some(inner) = &self.memory.inner {
                        inner.reporter.warn(format!(
                            "cannot ignore '{name}': '{}' has no argument of that name (known: {:?})",
                            self.id.name, self.arg_names
                        ));
                    }
                }
            }
        }
        self
    }

    /// Validates stored results before reusing them (joblib's `cache_validation_callback`;
    /// see also [`expires_after`](crate::expires_after)).
    pub fn validate(mut self, validation: impl Into<Validation>) -> Self {
        self.validation = Some(validation.into());
        self
    }

    /// Overrides the memory's verbosity for this function.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = Some(verbose);
        self
    }

    /// Overrides the memory's [`MmapMode`] for this function: how the arrays of its outputs
    /// are loaded.
    pub fn mmap_mode(mut self, mode: MmapMode) -> Self {
        if let Some(inner) = &self.memory.inner
            && mode.maps()
            && inner.compress.is_some()
        {
            inner.reporter.warn(format!(
                "compressed results cannot be memory-mapped ('{}' with mmap_mode {mode}): arrays are loaded into memory",
                self.id.name
            ));
        }
        if let Some(inner) = &self.memory.inner
            && mode == MmapMode::ReadWrite
            && !inner.local_files
        {
            inner.reporter.warn(format!(
                "{} has no local files to map ('{}' with mmap_mode r+): arrays are loaded as copy-on-write, and writes do not reach the store",
                inner.location, self.id.name
            ));
        }
        self.mmap_mode = Some(mode);
        self
    }

    /// The [`MmapMode`] the arrays of this function's outputs are loaded with.
    pub fn effective_mmap_mode(&self) -> MmapMode {
        self.mmap_mode.unwrap_or_else(|| self.memory.mmap_mode())
    }

    /// Overrides the memory's [`compute_once`](crate::MemoryBuilder::compute_once) for this
    /// function: with `true`, concurrent misses of one key compute it once, the other callers
    /// waiting for its entry; with `false`, each of them computes it.
    pub fn compute_once(mut self, on: bool) -> Self {
        self.compute_once = Some(on);
        self
    }

    /// Whether concurrent misses of one key compute it once for this function.
    pub fn computes_once(&self) -> bool {
        self.compute_once
            .unwrap_or_else(|| self.memory.compute_once())
    }

    /// Overrides the memory's [strict mode](crate::MemoryBuilder::strict) for this function:
    /// with `true`, the `try_` methods ([`try_eval`](Self::try_eval),
    /// [`try_call_with`](Self::try_call_with), ...) return the faults of the store as errors
    /// instead of warning and computing.
    pub fn strict(mut self, on: bool) -> Self {
        self.strict = Some(on);
        self
    }

    /// Whether the `try_` methods of this function return the faults of the store as errors.
    pub fn is_strict(&self) -> bool {
        self.strict.unwrap_or_else(|| self.memory.strict())
    }

    /// The identity of the function.
    pub fn id(&self) -> &FuncId {
        &self.id
    }

    /// The memory this function stores its results in.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    fn verbosity(&self, inner: &Inner) -> u8 {
        self.verbose.unwrap_or(inner.verbose)
    }

    /// Deletes every stored result of this function.
    pub fn clear(&self) -> Result<(), Error> {
        let Some(inner) = self.memory.inner.as_deref() else {
            return Ok(());
        };
        let (prefix, code_key, identity) = self.identity_job()?;
        inner.run(move |b| Box::pin(clear_function(b, prefix, code_key, identity)))?;
        Ok(())
    }

    /// [`clear`](Self::clear), for async callers.
    pub async fn clear_async(&self) -> Result<(), Error> {
        let Some(inner) = self.memory.inner.as_deref() else {
            return Ok(());
        };
        let (prefix, code_key, identity) = self.identity_job()?;
        inner
            .run_async(move |b| Box::pin(clear_function(b, prefix, code_key, identity)))
            .await?;
        Ok(())
    }

    /// Whether a call with these arguments would load a stored result, without running the
    /// function or loading the output (only the entry's metadata is read, to apply the
    /// validation). Faults of the store count as "not cached" and log a warning.
    pub fn check_call_in_cache<A>(&self, args: &A) -> bool
    where
        A: Serialize,
        F: TakesArgs<A>,
    {
        finish(self.check_cached(Reach::Blocking, args))
    }

    /// [`check_call_in_cache`](Self::check_call_in_cache), for async callers.
    pub async fn check_call_in_cache_async<A>(&self, args: &A) -> bool
    where
        A: Serialize,
        F: TakesArgs<A>,
    {
        self.check_cached(Reach::Task, args).await
    }

    /// The body of `check_call_in_cache`.
    async fn check_cached<A: Serialize>(&self, reach: Reach, args: &A) -> bool {
        let Some(inner) = self.memory.inner.as_deref() else {
            return false;
        };
        let Some(key) = self.key_or_warn(inner, args) else {
            return false;
        };
        // Results of another version of the code would not be used by a call.
        if self.check_due(inner).is_some()
            && let Ok(code_key) = self.code_key()
        {
            let stored = reach
                .run(inner, move |b| {
                    Box::pin(async move { b.get(&code_key).await })
                })
                .await;
            if self.identity_differs(stored) {
                return false;
            }
        }
        let Ok(cached) = self.check_key(reach, inner, key, Lenient).await;
        cached
    }

    /// The key of the item holding the function's code identity.
    fn code_key(&self) -> Result<Key, Error> {
        Ok(Key::new(format!("{}/{FUNC_CODE}", self.id.folder))?)
    }

    /// Whether the stored code identity (read, not changed) belongs to other code.
    fn identity_differs(&self, stored: BackendResult<Option<Bytes>>) -> bool {
        matches!(stored, Ok(Some(bytes)) if bytes != self.id.identity().as_bytes())
    }

    /// Whether the entry of `key` is stored and valid, reading only its metadata.
    async fn check_key<P: Faults>(
        &self,
        reach: Reach,
        inner: &Inner,
        key: Key,
        faults: P,
    ) -> Result<bool, P::Fault> {
        let k = key.clone();
        let found = reach
            .run(inner, move |b| Box::pin(read_metadata(b, k)))
            .await;
        self.judge_metadata(inner, &key, found, faults)
    }

    /// Whether the metadata read for `key` says its entry is stored and valid.
    fn judge_metadata<P: Faults>(
        &self,
        inner: &Inner,
        key: &Key,
        found: BackendResult<Option<Result<Metadata, EntryError>>>,
        faults: P,
    ) -> Result<bool, P::Fault> {
        match found {
            Ok(Some(Ok(meta))) => Ok(self.validation.as_ref().is_none_or(|v| v.is_valid(&meta))),
            Ok(Some(Err(source))) => {
                let warning = format!(
                    "the stored result of '{}' at {key} is unusable ({source})",
                    self.id.name
                );
                let error = Error::Entry {
                    key: key.to_string(),
                    source,
                };
                faults.fault(inner, error, warning).map(|()| false)
            }
            Ok(None) => Ok(false),
            Err(e) => {
                let warning = format!("cannot read {key} in {}: {e}", inner.location);
                faults.fault(inner, e.into(), warning).map(|()| false)
            }
        }
    }

    fn args_digest<A: Serialize + ?Sized>(&self, inner: &Inner, args: &A) -> Result<Digest, Error> {
        let mut hasher = CanonicalHasher::new(inner.hasher.hasher());
        hasher.add_args(args, &self.ignore)?;
        Ok(hasher.finish())
    }

    fn key_of(&self, digest: &Digest) -> Result<Key, Error> {
        Ok(Key::new(format!("{}/{digest}", self.id.folder))?)
    }

    fn key_or_warn<A: Serialize + ?Sized>(&self, inner: &Inner, args: &A) -> Option<Key> {
        let Ok(key) = self.key_for(inner, args, Lenient);
        key
    }

    /// The key of a call with `args`, or `None` when they cannot be hashed and the policy lets
    /// the call go on without the cache.
    fn key_for<A: Serialize + ?Sized, P: Faults>(
        &self,
        inner: &Inner,
        args: &A,
        faults: P,
    ) -> Result<Option<Key>, P::Fault> {
        match self.args_digest(inner, args).and_then(|d| self.key_of(&d)) {
            Ok(key) => Ok(Some(key)),
            Err(e) => {
                let warning = format!(
                    "cannot hash the arguments of '{}' ({e}); calling it without the cache",
                    self.id.name
                );
                faults.fault(inner, e, warning).map(|()| None)
            }
        }
    }

    fn readable_args<A: Serialize + ?Sized>(&self, args: &A) -> Vec<(String, String)> {
        let mut parts = cachette_hashing::readable_args(args, &self.ignore, READABLE_ARG_LEN);
        if !self.arg_names.is_empty() {
            for (name, _) in &mut parts {
                if let Some(real) = name
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.arg_names.get(i))
                {
                    name.clone_from(real);
                }
            }
        }
        parts
    }

    /// Whether the code identity must be checked (first use, or after `Memory::clear`).
    fn check_due(&self, inner: &Inner) -> Option<u64> {
        let generation = inner.generation.load(Ordering::Relaxed);
        if self.checked.load(Ordering::Relaxed) == generation + 1 {
            return None;
        }
        register_identity(inner, &self.id);
        let identity = self.id.identity();
        let known = inner
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.id.folder)
            .is_some_and(|stored| *stored == identity);
        if known {
            self.checked.store(generation + 1, Ordering::Relaxed);
            return None;
        }
        Some(generation)
    }

    fn checked_with<P: Faults>(
        &self,
        inner: &Inner,
        generation: u64,
        outcome: Result<Option<String>, Error>,
        faults: P,
    ) -> Result<(), P::Fault> {
        match outcome {
            Ok(changed) => {
                if let Some(previous) = changed {
                    let first = |s: &str| s.lines().nth(1).unwrap_or("").to_owned();
                    inner.reporter.warn(format!(
                        "the code of function '{}' has changed since its results were stored ({} -> {}, version {} -> {}): clearing its cache",
                        self.id.name,
                        first(&previous).trim_start_matches("code: "),
                        self.id.code_hash.as_deref().unwrap_or("-"),
                        previous.lines().nth(2).unwrap_or("").trim_start_matches("version: "),
                        self.id.version.as_deref().unwrap_or("-"),
                    ));
                }
                inner
                    .checked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(self.id.folder.clone(), self.id.identity());
                self.checked.store(generation + 1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let warning = format!(
                    "cannot check the stored code identity of '{}' in {}: {e}",
                    self.id.name, inner.location
                );
                faults.fault(inner, e, warning)
            }
        }
    }

    /// The function's folder, the key of its code identity, and that identity.
    fn identity_job(&self) -> Result<(Prefix, Key, String), Error> {
        Ok((
            Prefix::new(self.id.folder.clone())?,
            self.code_key()?,
            self.id.identity(),
        ))
    }

    /// Checks the function's code identity against the store, once per memory generation.
    async fn ensure_checked<P: Faults>(
        &self,
        reach: Reach,
        inner: &Inner,
        faults: P,
    ) -> Result<(), P::Fault> {
        let Some(generation) = self.check_due(inner) else {
            return Ok(());
        };
        let outcome = match self.identity_job() {
            Ok((prefix, key, identity)) => reach
                .run(inner, move |b| {
                    Box::pin(check_identity(b, prefix, key, identity))
                })
                .await
                .map_err(Error::from),
            Err(e) => Err(e),
        };
        self.checked_with(inner, generation, outcome, faults)
    }

    fn print_call_header(&self, inner: &Inner, args: &[(String, String)]) {
        let shown: Vec<&str> = args.iter().map(|(_, v)| v.as_str()).collect();
        inner.reporter.line("_".repeat(80));
        inner
            .reporter
            .line(format!("[Memory] Calling {}...", self.id.name));
        inner
            .reporter
            .line(format!("{}({})", self.id.short_name(), shown.join(", ")));
    }

    fn print_call_footer(&self, inner: &Inner, duration: f64) {
        inner.reporter.line(rule_ending_with(&format!(
            "{} - {}",
            self.id.short_name(),
            format_time(duration)
        )));
    }
}

impl<R, F> MemorizedFunc<R, F>
where
    R: Serialize + DeserializeOwned,
{
    /// Runs `compute(args)` unless a result for `args` is stored, in which case that result is
    /// loaded. `Err` is returned as is and never stored. This is the entry point the
    /// `#[memoize]` macro uses. Faults of the store are warnings, even in
    /// [strict mode](Self::strict): use [`try_call_with`](Self::try_call_with) to get them.
    pub fn call_with<A, E>(&self, args: A, compute: impl FnOnce(A) -> Result<R, E>) -> Result<R, E>
    where
        A: Serialize,
    {
        finish(self.lookup(Reach::Blocking, args, now(compute), Lenient)).map_err(Failed::function)
    }

    /// [`call_with`](Self::call_with), with the faults of the store as errors in
    /// [strict mode](Self::strict) ([`CallError::Store`]); the function's own errors are
    /// [`CallError::Function`]. Without strict mode, faults are warnings, as in `call_with`.
    pub fn try_call_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<R, CallError<E>>
    where
        A: Serialize,
    {
        finish(self.lookup(Reach::Blocking, args, now(compute), self.faults()))
            .map_err(CallError::from)
    }

    /// [`call_with`](Self::call_with), for async functions: the store is reached without
    /// blocking the runtime.
    pub async fn call_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<R, E>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        self.lookup(Reach::Task, args, compute, Lenient)
            .await
            .map_err(Failed::function)
    }

    /// [`try_call_with`](Self::try_call_with), for async functions.
    pub async fn try_call_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<R, CallError<E>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        self.lookup(Reach::Task, args, compute, self.faults())
            .await
            .map_err(CallError::from)
    }

    /// Runs `compute(args)` whatever is stored, stores the result, and returns it with its
    /// metadata (joblib's `MemorizedFunc.call`).
    pub fn force_call_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<(R, Metadata), E>
    where
        A: Serialize,
    {
        let stored = finish(self.force_store(Reach::Blocking, args, now(compute), Lenient));
        Ok(stored.map_err(Failed::function)?.0)
    }

    /// [`force_call_with`](Self::force_call_with), with the faults of the store as errors in
    /// [strict mode](Self::strict).
    pub fn try_force_call_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<(R, Metadata), CallError<E>>
    where
        A: Serialize,
    {
        let stored = finish(self.force_store(Reach::Blocking, args, now(compute), self.faults()));
        Ok(stored?.0)
    }

    /// [`force_call_with`](Self::force_call_with), for async functions: the store is reached
    /// without blocking the runtime.
    pub async fn force_call_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<(R, Metadata), E>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let stored = self.force_store(Reach::Task, args, compute, Lenient).await;
        Ok(stored.map_err(Failed::function)?.0)
    }

    /// [`try_force_call_with`](Self::try_force_call_with), for async functions.
    pub async fn try_force_call_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<(R, Metadata), CallError<E>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let stored = self
            .force_store(Reach::Task, args, compute, self.faults())
            .await;
        Ok(stored?.0)
    }

    /// Returns a reference to the stored result of `compute(args)`, computing and storing it
    /// first if needed (joblib's `call_and_shelve`). With a disabled memory, or when the result
    /// cannot be stored, the value itself is kept in a [`NotMemorizedResult`].
    pub fn call_and_shelve_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<Shelved<R>, E>
    where
        A: Serialize,
    {
        finish(self.shelve(Reach::Blocking, args, now(compute), Lenient)).map_err(Failed::function)
    }

    /// [`call_and_shelve_with`](Self::call_and_shelve_with), with the faults of the store as
    /// errors in [strict mode](Self::strict): then a result that cannot be stored is an error,
    /// not a [`NotMemorizedResult`].
    pub fn try_call_and_shelve_with<A, E>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Result<R, E>,
    ) -> Result<Shelved<R>, CallError<E>>
    where
        A: Serialize,
    {
        Ok(finish(self.shelve(
            Reach::Blocking,
            args,
            now(compute),
            self.faults(),
        ))?)
    }

    /// [`call_and_shelve_with`](Self::call_and_shelve_with), for async functions.
    pub async fn call_and_shelve_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<Shelved<R>, E>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        self.shelve(Reach::Task, args, compute, Lenient)
            .await
            .map_err(Failed::function)
    }

    /// [`try_call_and_shelve_with`](Self::try_call_and_shelve_with), for async functions.
    pub async fn try_call_and_shelve_with_async<A, E, Fut>(
        &self,
        args: A,
        compute: impl FnOnce(A) -> Fut,
    ) -> Result<Shelved<R>, CallError<E>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        Ok(self
            .shelve(Reach::Task, args, compute, self.faults())
            .await?)
    }

    /// The policy the `try_` methods follow.
    fn faults(&self) -> Strictness {
        Strictness {
            strict: self.is_strict(),
        }
    }

    /// The body of `call_with`: a hit loads, a miss computes (once, when asked) and stores.
    async fn lookup<A, E, Fut, P: Faults>(
        &self,
        reach: Reach,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<R, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let Some(inner) = self.memory.inner.as_deref() else {
            return compute(args).await.map_err(Failed::Function);
        };
        let Some(key) = self.key_for(inner, &args, faults).map_err(store)? else {
            return compute(args).await.map_err(Failed::Function);
        };
        self.ensure_checked(reach, inner, faults)
            .await
            .map_err(store)?;
        let started = Instant::now();
        let mode = self.effective_mmap_mode();
        let found = reach.read_entry(inner, &key, mode).await;
        let absent = matches!(found, Ok(None));
        if let Some(out) = self
            .use_stored(inner, &key, found, started, faults)
            .map_err(store)?
        {
            return Ok(out);
        }
        if !self.computes_once() {
            return self
                .miss(reach, inner, &key, mode, args, compute, faults)
                .await
                .map(|(out, _)| out);
        }
        let turn = reach.turn(&inner.once, &key, &self.id.name, absent).await;
        if turn.load_first {
            let found = reach.read_entry(inner, &key, mode).await;
            match self.use_stored(inner, &key, found, started, faults) {
                Ok(Some(out)) => {
                    reach.land(turn, Landing::Stored).await;
                    return Ok(out);
                }
                Ok(None) => {}
                Err(fault) => {
                    reach.land(turn, Landing::Failed).await;
                    return Err(store(fault));
                }
            }
        }
        let outcome = self
            .miss(reach, inner, &key, mode, args, compute, faults)
            .await;
        reach.land(turn, landing_of(&outcome)).await;
        outcome.map(|(out, _)| out)
    }

    /// Computes and stores the result of a miss; says whether it was stored.
    #[allow(clippy::too_many_arguments)] // one call's parts
    async fn miss<A, E, Fut, P: Faults>(
        &self,
        reach: Reach,
        inner: &Inner,
        key: &Key,
        mode: MmapMode,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<(R, bool), Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let readable = self.readable_args(&args);
        let (out, meta, bytes) = self
            .compute(inner, key, readable, args, compute, faults)
            .await?;
        let Some(bytes) = bytes else {
            return Ok((out, false));
        };
        if !self.put(reach, inner, key, &meta, bytes, faults).await? {
            return Ok((out, false));
        }
        if self.reloads(inner, mode) {
            let found = reach.read_entry(inner, key, mode).await;
            return Ok((self.reload(inner, key, found, out), true));
        }
        Ok((out, true))
    }

    /// The body of `call_and_shelve_with`.
    async fn shelve<A, E, Fut, P: Faults>(
        &self,
        reach: Reach,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<Shelved<R>, Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let Some(inner) = self.memory.inner.as_deref() else {
            let out = compute(args).await.map_err(Failed::Function)?;
            return Ok(Shelved::NotMemorized(NotMemorizedResult::new(out)));
        };
        if let Some(key) = self.key_for(inner, &args, faults).map_err(store)? {
            self.ensure_checked(reach, inner, faults)
                .await
                .map_err(store)?;
            let k = key.clone();
            let found = reach
                .run(inner, move |b| Box::pin(read_metadata(b, k)))
                .await;
            let absent = matches!(found, Ok(None));
            if self
                .judge_metadata(inner, &key, found, faults)
                .map_err(store)?
            {
                return Ok(Shelved::Memorized(self.reference(inner, &key)));
            }
            if self.computes_once() {
                let turn = reach.turn(&inner.once, &key, &self.id.name, absent).await;
                if turn.load_first {
                    match self.check_key(reach, inner, key.clone(), faults).await {
                        Ok(true) => {
                            reach.land(turn, Landing::Stored).await;
                            return Ok(Shelved::Memorized(self.reference(inner, &key)));
                        }
                        Ok(false) => {}
                        Err(fault) => {
                            reach.land(turn, Landing::Failed).await;
                            return Err(store(fault));
                        }
                    }
                }
                let outcome = self.force_store(reach, args, compute, faults).await;
                reach.land(turn, landing_of_store(&outcome)).await;
                return outcome.map(|stored| self.shelved(inner, stored));
            }
        }
        let stored = self.force_store(reach, args, compute, faults).await?;
        Ok(self.shelved(inner, stored))
    }

    /// What `call_and_shelve` gives after computing: a reference to the stored entry, or the
    /// value when it was not stored.
    fn shelved(
        &self,
        inner: &Inner,
        ((out, _meta), key): ((R, Metadata), Option<Key>),
    ) -> Shelved<R> {
        match key {
            Some(key) => Shelved::Memorized(self.reference(inner, &key)),
            None => Shelved::NotMemorized(NotMemorizedResult::new(out)),
        }
    }

    /// Computes and stores; gives the key when the result was stored.
    #[allow(clippy::type_complexity)] // (output, metadata) and the key of the stored entry
    async fn force_store<A, E, Fut, P: Faults>(
        &self,
        reach: Reach,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<((R, Metadata), Option<Key>), Failed<E, P::Fault>>
    where
        A: Serialize,
        Fut: Future<Output = Result<R, E>>,
    {
        let Some(inner) = self.memory.inner.as_deref() else {
            let (time, t0) = (Utc::now(), Instant::now());
            let out = compute(args).await.map_err(Failed::Function)?;
            return Ok(((out, self.unstored_metadata(None, time, t0)), None));
        };
        let Some(key) = self.key_for(inner, &args, faults).map_err(store)? else {
            let (time, t0) = (Utc::now(), Instant::now());
            let out = compute(args).await.map_err(Failed::Function)?;
            return Ok(((out, self.unstored_metadata(Some(inner), time, t0)), None));
        };
        self.ensure_checked(reach, inner, faults)
            .await
            .map_err(store)?;
        let readable = self.readable_args(&args);
        let (out, meta, bytes) = self
            .compute(inner, &key, readable, args, compute, faults)
            .await?;
        let mut stored_key = None;
        if let Some(bytes) = bytes
            && self.put(reach, inner, &key, &meta, bytes, faults).await?
        {
            stored_key = Some(key);
        }
        Ok(((out, meta), stored_key))
    }

    /// Writes an entry; says whether it was stored (a failed write goes to the policy).
    async fn put<E, P: Faults>(
        &self,
        reach: Reach,
        inner: &Inner,
        key: &Key,
        meta: &Metadata,
        bytes: Blob,
        faults: P,
    ) -> Result<bool, Failed<E, P::Fault>> {
        let ttl = self.ttl();
        let k = key.clone();
        let outcome = reach
            .run(inner, move |b| {
                Box::pin(async move {
                    b.put_opts(&k, bytes, PutOptions::with_ttl(ttl))
                        .await
                        .map(|_| ())
                })
            })
            .await;
        self.stored(inner, meta, outcome, faults).map_err(store)
    }

    /// The metadata of a call whose result is not stored (disabled memory, unhashable
    /// arguments).
    fn unstored_metadata(
        &self,
        inner: Option<&Inner>,
        time: chrono::DateTime<Utc>,
        t0: Instant,
    ) -> Metadata {
        let duration = t0.elapsed().as_secs_f64();
        match inner {
            None => Metadata::new(duration, time, Vec::new(), "", "", "", ""),
            Some(inner) => Metadata::new(
                duration,
                time,
                Vec::new(),
                &self.id.folder,
                "",
                inner.hasher.id(),
                inner.codec.id(),
            ),
        }
    }

    fn reference(&self, inner: &Inner, key: &Key) -> MemorizedResult<R> {
        MemorizedResult::new(
            self.memory.clone(),
            inner.location.clone(),
            self.id.folder.clone(),
            key.file_name().to_owned(),
        )
    }

    fn ttl(&self) -> Option<std::time::Duration> {
        self.validation.as_ref().and_then(Validation::ttl)
    }

    /// Interprets what the store gave for `key`: the output, or `None` to compute it.
    fn use_stored<P: Faults>(
        &self,
        inner: &Inner,
        key: &Key,
        found: BackendResult<Option<Read>>,
        started: Instant,
        faults: P,
    ) -> Result<Option<R>, P::Fault> {
        let read = match found {
            Ok(Some(read)) => read,
            Ok(None) => return Ok(None),
            Err(e) => {
                let warning = format!(
                    "cannot read the stored result of '{}' from {}: {e}; computing it",
                    self.id.name, inner.location
                );
                return faults.fault(inner, e.into(), warning).map(|()| None);
            }
        };
        let unusable = |source: EntryError| {
            let warning = format!(
                "the stored result of '{}' at {key} is unusable ({source}); computing it again",
                self.id.name
            );
            let error = Error::Entry {
                key: key.to_string(),
                source,
            };
            faults.fault(inner, error, warning).map(|()| None)
        };
        let entry = match Checked::parse(read, key, inner.signing.as_ref()) {
            Ok(entry) => entry,
            Err(e) => return unusable(e),
        };
        let verbose = self.verbosity(inner);
        if let Some(validation) = &self.validation {
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) => return unusable(e),
            };
            if !validation.is_valid(&meta) {
                if verbose > 0 {
                    inner.reporter.line(format!(
                        "[Memory] The stored result of {} is no longer valid: computing it again",
                        self.id.name
                    ));
                }
                return Ok(None);
            }
        }
        let out = match entry.decode::<R>(&*inner.codec, self.effective_mmap_mode()) {
            Ok(out) => out,
            Err(e) => {
                return unusable(EntryError::Decode(format!("cannot decode the output: {e}")));
            }
        };
        if verbose > 1 {
            let t = started.elapsed().as_secs_f64();
            inner.reporter.line(format!(
                "[Memory]{:>16}: Loading {} from {}/{key}",
                format_time(t),
                self.id.short_name(),
                inner.location
            ));
            inner.reporter.line(rule_ending_with(&format!(
                "{} cache loaded - {}",
                self.id.short_name(),
                format_time(t)
            )));
        }
        Ok(Some(out))
    }

    /// Runs the function, times it, and encodes the entry.
    #[allow(clippy::type_complexity)] // output, metadata and the entry to store
    async fn compute<A, E, Fut, P: Faults>(
        &self,
        inner: &Inner,
        key: &Key,
        readable: Vec<(String, String)>,
        args: A,
        compute: impl FnOnce(A) -> Fut,
        faults: P,
    ) -> Result<(R, Metadata, Option<Blob>), Failed<E, P::Fault>>
    where
        Fut: Future<Output = Result<R, E>>,
    {
        let verbose = self.verbosity(inner);
        if verbose > 0 {
            self.print_call_header(inner, &readable);
        }
        let time = Utc::now();
        let t0 = Instant::now();
        let out = compute(args).await.map_err(Failed::Function)?;
        let duration = t0.elapsed().as_secs_f64();
        let (meta, bytes) = self
            .encode(inner, key, readable, &out, duration, time, faults)
            .map_err(store)?;
        if verbose > 0 {
            self.print_call_footer(inner, duration);
        }
        Ok((out, meta, bytes))
    }

    /// The metadata of a computed output, and its entry (`None` when it cannot be
    /// serialized and the policy lets the call go on).
    #[allow(clippy::too_many_arguments)] // the parts of one entry
    fn encode<P: Faults>(
        &self,
        inner: &Inner,
        key: &Key,
        readable: Vec<(String, String)>,
        out: &R,
        duration: f64,
        time: chrono::DateTime<Utc>,
        faults: P,
    ) -> Result<(Metadata, Option<Blob>), P::Fault> {
        let meta = Metadata::new(
            duration,
            time,
            readable,
            self.id.folder.clone(),
            key.file_name(),
            inner.hasher.id(),
            inner.codec.id(),
        );
        let (structure, arrays) = array::encoding(|| {
            let mut structure = Vec::new();
            codec::encode_value(&*inner.codec, out, &mut structure).map(|()| structure)
        });
        let encoded = structure.map_err(|e| e.0).and_then(|structure| {
            entry::encode_signed(
                &meta,
                structure,
                arrays,
                inner.compress,
                inner.signing.as_ref(),
            )
        });
        match encoded {
            Ok(bytes) => Ok((meta, Some(bytes))),
            Err(e) => {
                let warning = format!(
                    "the output of '{}' cannot be serialized ({e}); it is returned but not stored",
                    self.id.name
                );
                faults
                    .fault(inner, Error::Codec(e), warning)
                    .map(|()| (meta, None))
            }
        }
    }

    /// Whether a computed output is loaded back from the store, so that the miss gives the
    /// same mapped arrays as later hits (joblib does the same when `mmap_mode` is set).
    fn reloads(&self, inner: &Inner, mode: MmapMode) -> bool {
        mode.maps() && inner.local_files && inner.compress.is_none()
    }

    /// The output loaded back from the store after a miss, or the computed one if that fails.
    /// A failure here is a warning in every mode: the output is right, only not mapped.
    fn reload(&self, inner: &Inner, key: &Key, found: BackendResult<Option<Read>>, out: R) -> R {
        let loaded = match found {
            Ok(Some(read)) => Checked::parse(read, key, inner.signing.as_ref())
                .map_err(|e| e.to_string())
                .and_then(|entry| entry.decode::<R>(&*inner.codec, self.effective_mmap_mode())),
            Ok(None) => Err("it is gone".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(mapped) => mapped,
            Err(e) => {
                inner.reporter.warn(format!(
                    "cannot map the result of '{}' just stored at {key} ({e}); returning it from memory",
                    self.id.name
                ));
                out
            }
        }
    }

    /// Whether the output was stored; a failed write goes to the policy.
    fn stored<P: Faults>(
        &self,
        inner: &Inner,
        meta: &Metadata,
        outcome: BackendResult<()>,
        faults: P,
    ) -> Result<bool, P::Fault> {
        match outcome {
            Ok(()) => Ok(true),
            Err(e) => {
                let warning = format!(
                    "cannot store the result of '{}' (args {}) in {}: {e}; it is returned but not stored",
                    self.id.name, meta.args_id, inner.location
                );
                faults.fault(inner, e.into(), warning).map(|()| false)
            }
        }
    }
}

impl<R, F> MemorizedFunc<R, F>
where
    R: Serialize + DeserializeOwned,
{
    /// Calls the function, or loads its stored result for these arguments.
    pub fn eval<A>(&self, args: A) -> R
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        let Ok(out) = self.call_with(args, |a| Ok::<R, Infallible>((self.f)(a)));
        out
    }

    /// [`eval`](Self::eval), with the faults of the store as errors in
    /// [strict mode](Self::strict).
    pub fn try_eval<A>(&self, args: A) -> Result<R, Error>
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        self.try_call_with(args, |a| Ok::<R, Infallible>((self.f)(a)))
            .map_err(CallError::into_store_error)
    }

    /// Runs the function whatever is stored, stores the result, and returns it with its
    /// metadata (joblib's `MemorizedFunc.call`).
    pub fn call<A>(&self, args: A) -> (R, Metadata)
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        let Ok(out) = self.force_call_with(args, |a| Ok::<R, Infallible>((self.f)(a)));
        out
    }

    /// [`call`](Self::call), with the faults of the store as errors in
    /// [strict mode](Self::strict).
    pub fn try_call<A>(&self, args: A) -> Result<(R, Metadata), Error>
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        self.try_force_call_with(args, |a| Ok::<R, Infallible>((self.f)(a)))
            .map_err(CallError::into_store_error)
    }

    /// Returns a reference to the stored result, computing it if needed (joblib's
    /// `call_and_shelve`).
    pub fn call_and_shelve<A>(&self, args: A) -> Shelved<R>
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        let Ok(out) = self.call_and_shelve_with(args, |a| Ok::<R, Infallible>((self.f)(a)));
        out
    }

    /// [`call_and_shelve`](Self::call_and_shelve), with the faults of the store as errors in
    /// [strict mode](Self::strict).
    pub fn try_call_and_shelve<A>(&self, args: A) -> Result<Shelved<R>, Error>
    where
        A: Serialize,
        F: Fn(A) -> R,
    {
        self.try_call_and_shelve_with(args, |a| Ok::<R, Infallible>((self.f)(a)))
            .map_err(CallError::into_store_error)
    }
}

/// A synchronous function as one returning a ready future, for the call steps shared with async
/// functions (see [`Reach`]).
fn now<A, T>(f: impl FnOnce(A) -> T) -> impl FnOnce(A) -> std::future::Ready<T> {
    move |a| std::future::ready(f(a))
}

/// How a flight lands after a miss computed and (maybe) stored its result.
fn landing_of<T, E>(outcome: &Result<(T, bool), E>) -> Landing {
    match outcome {
        Ok((_, true)) => Landing::Stored,
        Ok((_, false)) => Landing::NotStored,
        Err(_) => Landing::Failed,
    }
}

/// [`landing_of`], after `force_store`, which gives the key of the stored entry.
fn landing_of_store<T, E>(outcome: &Result<(T, Option<Key>), E>) -> Landing {
    match outcome {
        Ok((_, Some(_))) => Landing::Stored,
        Ok((_, None)) => Landing::NotStored,
        Err(_) => Landing::Failed,
    }
}

/// Compares the stored code identity of a function with `identity`; on a difference, deletes
/// the function's results. Gives the previous identity when it differed.
async fn check_identity(
    backend: &dyn StoreBackend,
    folder: Prefix,
    code_key: Key,
    identity: String,
) -> BackendResult<Option<String>> {
    match backend.get(&code_key).await? {
        Some(stored) if stored == identity.as_bytes() => Ok(None),
        Some(stored) => {
            backend.delete_prefix(&folder).await?;
            backend
                .put(&code_key, Bytes::from(identity).into())
                .await?;
            Ok(Some(String::from_utf8_lossy(&stored).into_owned()))
        }
        None => {
            backend
                .put(&code_key, Bytes::from(identity).into())
                .await?;
            Ok(None)
        }
    }
}

async fn clear_function(
    backend: &dyn StoreBackend,
    folder: Prefix,
    code_key: Key,
    identity: String,
) -> BackendResult<()> {
    backend.delete_prefix(&folder).await?;
    backend
        .put(&code_key, Bytes::from(identity).into())
        .await
}

/// Reads only the metadata of an entry (a ranged read of its head).
pub(crate) async fn read_metadata(
    backend: &dyn StoreBackend,
    key: Key,
) -> BackendResult<Option<Result<Metadata, EntryError>>> {
    let Some(head) = backend.get_range(&key, 0..HEADER_READ_HINT).await? else {
        return Ok(None);
    };
    let prefix = match entry::Prefix::parse(&head, None) {
        Ok(prefix) => prefix,
        Err(e) => return Ok(Some(Err(e))),
    };
    let end = prefix.metadata_end();
    let head = if (head.len() as u64) < end {
        match backend.get_range(&key, 0..end).await? {
            Some(h) => h,
            None => return Ok(None),
        }
    } else {
        head
    };
    Ok(Some(entry::parse_metadata(&head, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_single_readable_segments() {
        assert_eq!(folder_of("my_crate::stats::mean"), "my_crate.stats.mean");
        assert_eq!(
            folder_of("tour::main::closure@tour.rs:10:5"),
            "tour.main.closure@tour.rs_10_5"
        );
        assert!(!folder_of("a/b\\c").contains(['/', '\\']));
        assert_eq!(folder_of(".hidden"), "_.hidden");
        let long = "x".repeat(500);
        assert!(folder_of(&long).len() <= 160);
        assert_ne!(folder_of(&long), folder_of(&"x".repeat(501)));
    }

    #[test]
    fn short_names() {
        assert_eq!(FuncId::new("a::b::square").short_name(), "square");
        assert_eq!(
            FuncId::new("a::main::closure@x.rs:1:2").short_name(),
            "closure"
        );
    }
}
