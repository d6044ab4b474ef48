//! [`MemorizedFunc`]: a memoized function.
//!
//! - `identity`: how a function is identified ([`FuncId`]);
//! - this module: the function and its options (a builder-style API);
//! - `api`: its public entry points, and [`Memory::cache`];
//! - `call`: the call pipeline, each step written once for sync and async callers;
//! - `faults`: what a call does with a fault of the store (a warning, or strict mode's error);
//! - `verbose`: joblib's human lines;
//! - `explain`: why a call would miss ([`MemorizedFunc::explain`], [`Memory::explain`]).

mod api;
mod call;
mod explain;
mod faults;
mod identity;
mod verbose;

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use crate::array::MmapMode;
use crate::memory::{Memory, Shared};
use crate::validation::Validation;

pub use explain::{ArgDifference, Cause, CodeInfo, Explanation, MAX_EXAMINED, Nearest};
pub use identity::FuncId;

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
    /// The store generation + 1 at which the code identity was last checked; 0 when never.
    checked: AtomicU64,
    /// The state hashed into every key ([`Memory::cache_with`]).
    state: Option<State>,
    /// The counters of its calls, from its first call on.
    tally: OnceLock<Arc<crate::usage::Tally>>,
    /// How it keeps its outputs in the memory's memo, when it does ([`Self::memo`]).
    memo: Option<MemoUse<R>>,
    f: F,
    _output: PhantomData<fn() -> R>,
}

/// The state of a function made by [`Memory::cache_with`].
#[derive(Debug, Clone)]
struct State {
    /// Its hash, or why it cannot be hashed.
    digest: Result<cachette_hashing::Digest, String>,
    /// Its readable form, for metadata.
    readable: String,
}

/// How a function keeps its outputs in its memory's memo of decoded values.
struct MemoUse<R> {
    /// A clone of a kept output (`None` if it is not an `R`).
    get: fn(&(dyn Any + Send + Sync)) -> Option<R>,
    /// A copy of an output, to keep.
    keep: fn(&R) -> crate::store::memo::Value,
    /// The hashes of the function's folder and of its identity, made on first use.
    place: OnceLock<(u64, u64)>,
}

impl<R> MemoUse<R> {
    /// The hashes of the folder and of the identity of `id`.
    fn place(&self, id: &FuncId) -> (u64, u64) {
        *self.place.get_or_init(|| {
            (
                crate::store::memo::folder_hash(&id.folder),
                crate::store::memo::stable_hash(&id.identity()),
            )
        })
    }
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
            .field("memo", &self.memo.is_some())
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

impl<R, F> MemorizedFunc<R, F>
where
    R: Clone + Send + Sync + 'static,
{
    /// Keeps this function's outputs decoded in the memory's memo of at most
    /// [`memo_size`](crate::MemoryBuilder::memo_size) bytes: a repeated hit is then a lookup
    /// and a clone of the output (wrap a large output in an `Arc` to make the clone cheap).
    /// Validation callbacks still run on every hit; the values of other code are never used,
    /// and this memory's writes, deletes and clears drop them. Without a `memo_size`, it does
    /// nothing. `#[memoize(memo)]` sets it.
    pub fn memo(mut self) -> Self {
        self.memo = Some(MemoUse {
            get: |value| value.downcast_ref::<R>().cloned(),
            keep: |out| std::sync::Arc::new(out.clone()),
            place: OnceLock::new(),
        });
        self
    }
}

impl<R, F> MemorizedFunc<R, F> {
    pub(crate) fn with_function(memory: &Memory, mut id: FuncId, f: F) -> Self {
        if let Some(shared) = memory.shared() {
            identity::register_site(shared.store.location(), &mut id);
        }
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
            state: None,
            tally: OnceLock::new(),
            memo: None,
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

    /// Hashes `state` into every key (see [`Memory::cache_with`]).
    fn salted(
        mut self,
        digest: Result<cachette_hashing::Digest, String>,
        readable: String,
    ) -> Self {
        self.state = Some(State { digest, readable });
        self
    }

    /// Sets the hash of the function's code: stored results of other code are discarded on
    /// first use, and never served. `#[memoize]` and `cachette::cache!` set it from the
    /// function's tokens.
    pub fn code_hash(mut self, hash: impl Into<String>) -> Self {
        self.id.code_hash = Some(hash.into());
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
                    if let Some(shared) = self.memory.shared() {
                        shared.reporter.warn(format!(
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
        if let Some(shared) = self.memory.shared()
            && mode.maps()
            && shared.store.compression().is_some()
        {
            shared.reporter.warn(format!(
                "compressed results cannot be memory-mapped ('{}' with mmap_mode {mode}): arrays are loaded into memory",
                self.id.name
            ));
        }
        if let Some(shared) = self.memory.shared()
            && mode == MmapMode::ReadWrite
            && !shared.store.capabilities().local_files
        {
            shared.reporter.warn(format!(
                "{} has no local files to map ('{}' with mmap_mode r+): arrays are loaded as copy-on-write, and writes do not reach the store",
                shared.store.location(), self.id.name
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

    /// What the calls of this function did in this process: calls, hits, misses, compute
    /// time and time saved (see [`Memory::call_stats`] for every function, and
    /// [`Memory::stored_stats`] for every process that shares the store).
    pub fn stats(&self) -> crate::CallStats {
        self.tally.get().map(|t| t.snapshot()).unwrap_or_default()
    }

    /// The counters of this function's calls in `shared`'s memory, made on its first call.
    pub(crate) fn tally(&self, shared: &Shared) -> &crate::usage::Tally {
        self.tally.get_or_init(|| shared.usage.tally(&self.id))
    }

    /// The memory this function stores its results in.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The verbosity of this function's calls.
    fn verbosity(&self, shared: &Shared) -> u8 {
        self.verbose.unwrap_or(shared.options.verbose)
    }
}
