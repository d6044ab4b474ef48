//! Why a call would miss: [`MemorizedFunc::explain`] and [`Memory::explain`].
//!
//! An explanation reads metadata only (never an output), records no access and writes
//! nothing: no identity item, no claim, no deletion. It does not run the identity check of a
//! call (which may clear a function); it only says that the next call would. The store is
//! untrusted: at most [`MAX_EXAMINED`] entries are examined, in listing order, and every text
//! read from the store is escaped ([`untrusted`]) before it goes into an [`Explanation`].

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::Ordering;

use chrono::Utc;
use serde::Serialize;

use super::call::{Call, READABLE_ARG_LEN};
use super::{MemorizedFunc, TakesArgs};
use crate::breaker::Gate;
use crate::entry::Metadata;
use crate::error::{Error, Result};
use crate::key::{Key, grammar};
use crate::memory::{Memory, Shared};
use crate::reach::{Reach, finish};
use crate::report::untrusted;
use crate::store::StoredIdentity;
use crate::validation::Validation;

/// The most stored entries an explanation examines (reads the metadata of), in listing order:
/// a store is untrusted, and may hold any number of them.
pub const MAX_EXAMINED: usize = 1_000;

/// The most arguments of an examined entry kept, and the longest name or readable form kept
/// (in bytes): a header of a store may hold millions of arguments of megabytes, and an
/// explanation keeps [`MAX_EXAMINED`] of them at once. This library writes readable forms of
/// at most [`READABLE_ARG_LEN`] characters, which fit.
const MAX_EXAMINED_ARGS: usize = 64;
const MAX_EXAMINED_ARG_LEN: usize = 4 * READABLE_ARG_LEN + 8;

/// `meta` with its arguments bounded as [`MAX_EXAMINED_ARGS`] and [`MAX_EXAMINED_ARG_LEN`] say.
fn bounded_args(mut meta: Metadata) -> Metadata {
    fn cut(text: &mut String) {
        if text.len() > MAX_EXAMINED_ARG_LEN {
            text.truncate(text.floor_char_boundary(MAX_EXAMINED_ARG_LEN));
            text.push('…');
        }
    }
    meta.input_args.truncate(MAX_EXAMINED_ARGS);
    for (name, value) in &mut meta.input_args {
        cut(name);
        cut(value);
    }
    meta.input_args.shrink_to_fit();
    meta
}

/// Why a call would load a stored result or not, as [`MemorizedFunc::explain`] and
/// [`Memory::explain`] find it: whether it is a hit, and if not, the causes.
///
/// `Display` prints one readable paragraph; [`reason`](Self::reason) gives one line. Every
/// text read from the store is escaped (control characters, bidirectional overrides) and cut
/// short, so that an explanation is safe to print.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The function's name (as the caller or the store names it).
    pub function: String,
    /// Its folder in the store.
    pub folder: String,
    /// Where the store is (a URL or a path; empty for a disabled memory).
    pub location: String,
    /// The hash of the arguments, when the caller's arguments could be hashed.
    pub args_id: Option<String>,
    /// Whether a call would load a stored result.
    pub hit: bool,
    /// Why it would not (empty for a hit).
    pub causes: Vec<Cause>,
    /// How many stored entries of the function were examined (their metadata read).
    pub examined: usize,
    /// Whether the function holds more entries than [`MAX_EXAMINED`], of which only the
    /// first were examined.
    pub bounded: bool,
    /// How many of the examined entries could not be read (damaged, other signature, ...).
    pub unreadable: usize,
    /// The code identities of the examined entries when they disagree (by
    /// [`Memory::explain`], which does not know the caller's code).
    pub stored_codes: Vec<CodeInfo>,
}

/// One cause of a miss, as an [`Explanation`] names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// The memory is disabled: nothing is stored, every call runs.
    Disabled,
    /// The store cannot be used: its circuit breaker is open, or it does not answer.
    StoreUnavailable {
        /// What the store said, or why calls skip it.
        reason: String,
    },
    /// The arguments cannot be hashed: calls run without the cache.
    UnhashableArguments {
        /// Why.
        reason: String,
    },
    /// The function has no stored entry at all.
    NoEntries,
    /// No entry is stored for these arguments, but other arguments' are.
    OtherArguments {
        /// The stored entry nearest to the call (fewest differing arguments), when one of the
        /// examined entries could be read.
        nearest: Option<Nearest>,
    },
    /// The entry of these arguments was computed by other code: another code hash, version or
    /// name than the caller's (or, for [`Memory::explain`], than the function's stored code
    /// identity).
    OtherCode {
        /// The entry's arguments' hash.
        args_id: String,
        /// The code that wrote the entry.
        stored: CodeInfo,
        /// The code that reads it.
        current: CodeInfo,
    },
    /// The function's stored code identity names other code: the next call deletes every
    /// stored result of the function, then computes.
    IdentityChanged {
        /// The code identity stored in the function's folder.
        stored: CodeInfo,
        /// The caller's.
        current: CodeInfo,
    },
    /// The validation callback refused the entry.
    RefusedByValidation {
        /// The entry's arguments' hash.
        args_id: String,
    },
    /// The entry is older than the lifetime of [`expires_after`](crate::expires_after).
    Expired {
        /// The entry's arguments' hash.
        args_id: String,
        /// Its age, in seconds.
        age_secs: f64,
        /// The lifetime, in seconds.
        lifetime_secs: f64,
    },
    /// The entry cannot be used: damaged, not signed with this memory's key, or written with
    /// another hasher or codec. A call warns and computes again.
    Unusable {
        /// The entry's arguments' hash.
        args_id: String,
        /// Why.
        reason: String,
    },
}

/// The code that wrote an entry, or that a function's identity item names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct CodeInfo {
    /// The function's exact name.
    pub name: String,
    /// The hash of its code, if known.
    pub code: Option<String>,
    /// Its version, if it has one.
    pub version: Option<String>,
}

/// The stored entry nearest to a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Nearest {
    /// Its arguments' hash.
    pub args_id: String,
    /// The arguments that differ, by name.
    pub differing: Vec<ArgDifference>,
    /// The code that wrote it.
    pub code: CodeInfo,
}

/// An argument whose readable form differs between a stored entry and a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ArgDifference {
    /// The argument's name.
    pub name: String,
    /// Its readable form in the stored entry (`None`: the entry has no such argument).
    pub stored: Option<String>,
    /// Its readable form in this call (`None`: the call has no such argument).
    pub call: Option<String>,
}

impl CodeInfo {
    fn of(meta: &Metadata) -> CodeInfo {
        CodeInfo {
            name: untrusted(&meta.name),
            code: meta.code.as_deref().map(untrusted),
            version: meta.version.as_deref().map(untrusted),
        }
    }

    fn of_func(id: &super::FuncId) -> CodeInfo {
        CodeInfo {
            name: id.name.clone(),
            code: id.code_hash.clone(),
            version: id.version.clone(),
        }
    }

    /// The code identity an identity item holds (`cachette function <name>`, `code: ..`,
    /// `version: ..`, `-` for none).
    fn of_identity(stored: &str) -> CodeInfo {
        let mut lines = stored.lines();
        let name = lines
            .next()
            .and_then(|l| l.strip_prefix("cachette function "))
            .unwrap_or("");
        let mut field = |label: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(label))
                .filter(|v| *v != "-")
                .map(untrusted)
        };
        let code = field("code: ");
        let version = field("version: ");
        CodeInfo {
            name: untrusted(name),
            code,
            version,
        }
    }

    /// What differs from `other`: `code hash a -> b`, `version x -> y`, `name m -> n`.
    fn changes_to(&self, other: &CodeInfo) -> String {
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".to_owned());
        let mut parts = Vec::new();
        if self.name != other.name {
            parts.push(format!("name {} -> {}", self.name, other.name));
        }
        if self.code != other.code {
            parts.push(format!(
                "code hash {} -> {}",
                show(&self.code),
                show(&other.code)
            ));
        }
        if self.version != other.version {
            parts.push(format!(
                "version {} -> {}",
                show(&self.version),
                show(&other.version)
            ));
        }
        parts.join(", ")
    }
}

impl fmt::Display for CodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' (code hash {}, version {})",
            self.name,
            self.code.as_deref().unwrap_or("-"),
            self.version.as_deref().unwrap_or("-")
        )
    }
}

impl fmt::Display for ArgDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".to_owned());
        write!(
            f,
            "{} (stored {}, this call {})",
            self.name,
            show(&self.stored),
            show(&self.call)
        )
    }
}

impl Cause {
    /// The cause in a few words, on one line.
    pub fn summary(&self) -> String {
        match self {
            Cause::Disabled => "the memory is disabled: nothing is stored".to_owned(),
            Cause::StoreUnavailable { reason } => format!("the store is unavailable ({reason})"),
            Cause::UnhashableArguments { reason } => {
                format!("the arguments cannot be hashed ({reason})")
            }
            Cause::NoEntries => "the function has no stored result at all".to_owned(),
            Cause::OtherArguments { nearest: None } => {
                "no stored result for these arguments".to_owned()
            }
            Cause::OtherArguments {
                nearest: Some(nearest),
            } if nearest.differing.is_empty() => format!(
                "no stored result for these arguments; the nearest (args {}) has the same readable arguments but another hash (readable forms are cut to {READABLE_ARG_LEN} characters, or the hasher or the state differs)",
                nearest.args_id
            ),
            Cause::OtherArguments {
                nearest: Some(nearest),
            } => {
                let differing: Vec<String> =
                    nearest.differing.iter().map(ToString::to_string).collect();
                format!(
                    "no stored result for these arguments; the nearest (args {}) differs in {}",
                    nearest.args_id,
                    differing.join(", ")
                )
            }
            Cause::OtherCode {
                stored, current, ..
            } => format!(
                "stored result of other code ({})",
                stored.changes_to(current)
            ),
            Cause::IdentityChanged { stored, current } => format!(
                "the function's code changed since its results were stored ({}): the next call clears them",
                stored.changes_to(current)
            ),
            Cause::RefusedByValidation { .. } => "refused by validation".to_owned(),
            Cause::Expired {
                age_secs,
                lifetime_secs,
                ..
            } => format!("expired (age {age_secs:.1}s, lifetime {lifetime_secs:.1}s)"),
            Cause::Unusable { reason, .. } => format!("stored result unusable ({reason})"),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

impl Explanation {
    fn new(function: &str, folder: &str, location: &str) -> Explanation {
        Explanation {
            function: function.to_owned(),
            folder: folder.to_owned(),
            location: location.to_owned(),
            args_id: None,
            hit: false,
            causes: Vec::new(),
            examined: 0,
            bounded: false,
            unreadable: 0,
            stored_codes: Vec::new(),
        }
    }

    /// The verdict on one line: `hit`, or the first cause (and how many more there are).
    pub fn reason(&self) -> String {
        if self.hit {
            return "hit: a stored result would be loaded".to_owned();
        }
        match self.causes.as_slice() {
            [] => "miss".to_owned(),
            [one] => format!("miss: {}", one.summary()),
            [first, rest @ ..] => format!(
                "miss: {} (and {} more cause{})",
                first.summary(),
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        }
    }

    /// Whether one of the causes satisfies `pred`:
    /// `why.has(|c| matches!(c, Cause::Expired { .. }))`.
    pub fn has(&self, pred: impl Fn(&Cause) -> bool) -> bool {
        self.causes.iter().any(pred)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "A call of '{}'", self.function)?;
        if let Some(id) = &self.args_id {
            write!(f, " (args {id})")?;
        }
        if !self.location.is_empty() {
            write!(f, " in {}", self.location)?;
        }
        if self.hit {
            write!(f, " would load its stored result.")?;
        } else {
            write!(f, " would miss: ")?;
            let causes: Vec<String> = self.causes.iter().map(Cause::summary).collect();
            write!(f, "{}.", causes.join("; "))?;
        }
        if self.examined > 0 {
            write!(
                f,
                " {} stored entr{} examined",
                self.examined,
                if self.examined == 1 { "y" } else { "ies" }
            )?;
            if self.bounded {
                write!(
                    f,
                    " (the first {MAX_EXAMINED} in listing order: the function holds more)"
                )?;
            }
            if self.unreadable > 0 {
                write!(f, ", {} of them unreadable", self.unreadable)?;
            }
            write!(f, ".")?;
        }
        if !self.stored_codes.is_empty() {
            let codes: Vec<String> = self.stored_codes.iter().map(ToString::to_string).collect();
            write!(
                f,
                " Its stored entries were written by different code: {}.",
                codes.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Why a validation refuses `meta`: expired, with its age and the lifetime, or refused.
pub(super) fn refusal(validation: &Validation, meta: &Metadata, args_id: &str) -> Cause {
    if let Some(lifetime) = validation.ttl() {
        let age = (Utc::now() - meta.time).as_seconds_f64();
        if age >= lifetime.as_secs_f64() {
            return Cause::Expired {
                args_id: args_id.to_owned(),
                age_secs: age,
                lifetime_secs: lifetime.as_secs_f64(),
            };
        }
    }
    Cause::RefusedByValidation {
        args_id: args_id.to_owned(),
    }
}

/// The arguments whose readable forms differ between `stored` and `call`, by name (the call's
/// order first, then the names only the entry has).
fn differing(stored: &[(String, String)], call: &[(String, String)]) -> Vec<ArgDifference> {
    let find = |args: &[(String, String)], name: &str| {
        args.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    let mut out = Vec::new();
    for (name, value) in call {
        let stored_value = find(stored, name);
        if !stored_value
            .as_deref()
            .is_some_and(|s| same_value(s, value))
        {
            out.push(ArgDifference {
                name: untrusted(name),
                stored: stored_value.as_deref().map(untrusted),
                call: Some(untrusted(value)),
            });
        }
    }
    for (name, value) in stored {
        if find(call, name).is_none() {
            out.push(ArgDifference {
                name: untrusted(name),
                stored: Some(untrusted(value)),
                call: None,
            });
        }
    }
    out
}

/// Whether a stored readable form is the given one: equal, or the given text is the unquoted
/// form of a stored string (`abc` for `"abc"`).
fn same_value(stored: &str, given: &str) -> bool {
    stored == given || stored == format!("{given:?}")
}

/// The entries of `folder` examined by an explanation: the first [`MAX_EXAMINED`] of the
/// listing, each with its metadata (read without an access, or why it cannot be read).
struct Examined {
    entries: Vec<(String, std::result::Result<Metadata, Error>)>,
    bounded: bool,
}

impl Examined {
    async fn read(shared: &Shared, reach: Reach, folder: &str) -> Result<Examined> {
        let store = &shared.store;
        let listed = store.entries(reach, &grammar::folder(folder)?).await?;
        let bounded = listed.len() > MAX_EXAMINED;
        let mut entries = Vec::with_capacity(listed.len().min(MAX_EXAMINED));
        for item in listed.into_iter().take(MAX_EXAMINED) {
            let Some((_, args_id)) = grammar::split(&item.key) else {
                continue;
            };
            let args_id = args_id.to_owned();
            match store.metadata(reach, &item.key, None).await {
                Ok(Some(meta)) => entries.push((args_id, Ok(bounded_args(meta)))),
                Ok(None) => {} // deleted meanwhile
                Err(e) => entries.push((args_id, Err(e))),
            }
        }
        Ok(Examined { entries, bounded })
    }

    fn readable(&self) -> impl Iterator<Item = (&str, &Metadata)> {
        self.entries
            .iter()
            .filter_map(|(id, meta)| meta.as_ref().ok().map(|m| (id.as_str(), m)))
    }

    fn unreadable(&self) -> usize {
        self.entries.iter().filter(|(_, m)| m.is_err()).count()
    }

    /// The readable entry nearest to `call` (fewest differing arguments; on a tie, one written
    /// by `prefer`, then the first listed).
    fn nearest(&self, call: &[(String, String)], prefer: Option<&CodeInfo>) -> Option<Nearest> {
        self.readable()
            .map(|(args_id, meta)| {
                let code = CodeInfo::of(meta);
                let other = prefer.is_some_and(|p| *p != code);
                let diff = differing(&meta.input_args, call);
                ((diff.len(), other), args_id, diff, code)
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, args_id, differing, code)| Nearest {
                args_id: untrusted(args_id),
                differing,
                code,
            })
    }

    /// The distinct code identities of the readable entries.
    fn codes(&self) -> BTreeSet<CodeInfo> {
        self.readable().map(|(_, m)| CodeInfo::of(m)).collect()
    }

    fn record(&self, explanation: &mut Explanation) {
        explanation.examined = self.entries.len();
        explanation.bounded = self.bounded;
        explanation.unreadable = self.unreadable();
    }
}

/// The error of a read as a cause: the store's fault, or an unusable entry.
fn read_fault(error: &Error, args_id: &str) -> Cause {
    match error {
        Error::Entry { source, .. } => Cause::Unusable {
            args_id: args_id.to_owned(),
            reason: untrusted(&source.to_string()),
        },
        other => Cause::StoreUnavailable {
            reason: untrusted(&other.to_string()),
        },
    }
}

impl<R, F> Call<'_, R, F> {
    /// The body of [`MemorizedFunc::explain`]: reads metadata only, writes nothing.
    async fn explain<A: Serialize + ?Sized>(&self, args: &A) -> Explanation {
        let id = &self.func.id;
        let store = &self.shared.store;
        let mut out = Explanation::new(&id.name, &id.folder, store.location());
        if let Gate::Open(retry_in) = store.breaker().gate() {
            let error = store.breaker().open_error(retry_in);
            out.causes.push(Cause::StoreUnavailable {
                reason: error.to_string(),
            });
            return out;
        }
        let digest = match self.digest(args) {
            Ok(digest) => digest,
            Err(e) => {
                out.causes.push(Cause::UnhashableArguments {
                    reason: e.to_string(),
                });
                return out;
            }
        };
        let key = grammar::entry_of(&id.folder, &digest);
        let args_id = key.file_name().to_owned();
        out.args_id = Some(args_id.clone());
        let current = CodeInfo::of_func(id);
        // What the next call's identity check would do (read, not run: it may clear).
        match self.identity_change(&current).await {
            Ok(Some(stored)) => out.causes.push(Cause::IdentityChanged {
                stored,
                current: current.clone(),
            }),
            Ok(None) => {}
            Err(e) => {
                out.causes.push(read_fault(&e, &args_id));
                return out;
            }
        }
        match store.metadata(self.reach, &key, None).await {
            Ok(Some(meta)) => self.judge(&meta, &args_id, &current, &mut out),
            Ok(None) => {
                let call = self.readable_args(args);
                if let Err(e) = self.nearest(&call, &current, &mut out).await {
                    out.causes.push(read_fault(&e, &args_id));
                }
            }
            Err(e) => out.causes.push(read_fault(&e, &args_id)),
        }
        out.hit = out.causes.is_empty();
        out
    }

    /// The code identity stored for the function when the next call's identity check would
    /// find it changed (and clear the function).
    async fn identity_change(&self, current: &CodeInfo) -> Result<Option<CodeInfo>> {
        let id = &self.func.id;
        let store = &self.shared.store;
        let identity = id.identity();
        let due = self.func.checked.load(Ordering::Relaxed) != store.generation() + 1
            && !store.identity_known(&id.folder, &identity);
        if !due {
            return Ok(None);
        }
        match store.stored_identity(self.reach, &id.folder).await? {
            Some(StoredIdentity::Trusted(stored)) if stored != identity => {
                let stored = CodeInfo::of_identity(&stored);
                Ok((stored != *current).then_some(stored))
            }
            _ => Ok(None),
        }
    }

    /// Judges the entry of the call's own key by its metadata.
    fn judge(&self, meta: &Metadata, args_id: &str, current: &CodeInfo, out: &mut Explanation) {
        let stored = CodeInfo::of(meta);
        let id = &self.func.id;
        let other_code =
            meta.name != id.name || meta.code != id.code_hash || meta.version != id.version;
        if other_code {
            out.causes.push(Cause::OtherCode {
                args_id: args_id.to_owned(),
                stored,
                current: current.clone(),
            });
            return;
        }
        let formats = [
            ("codec", &meta.codec, self.shared.store.codec().id()),
            ("hasher", &meta.hasher, self.shared.hasher.id()),
        ];
        for (what, stored, ours) in formats {
            if stored != ours {
                out.causes.push(Cause::Unusable {
                    args_id: args_id.to_owned(),
                    reason: format!(
                        "written with the {what} {}, this memory's is {ours}",
                        untrusted(stored)
                    ),
                });
                return;
            }
        }
        if let Some(validation) = &self.func.validation
            && !validation.is_valid(meta)
        {
            out.causes.push(refusal(validation, meta, args_id));
        }
    }

    /// The cause of a call whose key holds nothing: no entry at all, or the nearest entry.
    async fn nearest(
        &self,
        call: &[(String, String)],
        current: &CodeInfo,
        out: &mut Explanation,
    ) -> Result<()> {
        let examined = Examined::read(self.shared, self.reach, &self.func.id.folder).await?;
        examined.record(out);
        if examined.entries.is_empty() {
            out.causes.push(Cause::NoEntries);
        } else {
            out.causes.push(Cause::OtherArguments {
                nearest: examined.nearest(call, Some(current)),
            });
        }
        Ok(())
    }
}

impl<R, F> MemorizedFunc<R, F> {
    /// Why a call with these arguments would load a stored result or not: a hit, or the
    /// causes of the miss (no stored result of the function at all; the stored entry nearest
    /// to the call and the arguments that differ, by name; other code; the function's code
    /// changed; the validation or the expiry; an unusable entry; the store unavailable).
    ///
    /// Reads metadata only, never an output (so an entry whose output is damaged may still
    /// be called a hit), records no access and writes nothing; the function's code identity
    /// check is not run (the explanation says when the next call would clear the function).
    /// When the call's entry is absent, at most [`MAX_EXAMINED`] of the function's entries are
    /// examined, in listing order.
    ///
    /// ```
    /// use cachette_core::{Cause, Memory};
    /// let memory = Memory::from_url("memory://explain-doc").unwrap();
    /// let f = memory.cache(|(x, y): (u32, u32)| x + y).arg_names(["x", "y"]);
    /// assert!(f.explain(&(1, 2)).has(|c| matches!(c, Cause::NoEntries)));
    /// f.eval((1, 2));
    /// assert!(f.explain(&(1, 2)).hit);
    /// let why = f.explain(&(1, 3));
    /// let Some(Cause::OtherArguments { nearest: Some(nearest) }) = why.causes.first() else {
    ///     panic!("{why}");
    /// };
    /// assert_eq!(nearest.differing[0].name, "y");
    /// println!("{why}");
    /// ```
    pub fn explain<A>(&self, args: &A) -> Explanation
    where
        A: Serialize,
        F: TakesArgs<A>,
    {
        match self.context(Reach::Blocking) {
            Some(call) => finish(call.explain(args)),
            None => self.disabled_explanation(),
        }
    }

    /// [`explain`](Self::explain), for async callers.
    pub async fn explain_async<A>(&self, args: &A) -> Explanation
    where
        A: Serialize,
        F: TakesArgs<A>,
    {
        match self.context(Reach::Task) {
            Some(call) => call.explain(args).await,
            None => self.disabled_explanation(),
        }
    }

    fn disabled_explanation(&self) -> Explanation {
        let mut out = Explanation::new(&self.id.name, &self.id.folder, "");
        out.causes.push(Cause::Disabled);
        out
    }
}

impl Memory {
    /// Why a call of the function `func` with these arguments would load a stored result or
    /// not, judged from the store alone: `func` is its exact name (`a::b::f`), its name with
    /// `.` for `::` (`a.b.f`), or its folder; `args` are the readable forms of the arguments
    /// by name, as the entries' metadata keeps them (`Metadata::input_args`; a string may be
    /// given without its quotes).
    ///
    /// A hit is an entry whose readable arguments are these, written by the code that the
    /// function's stored code identity names (when it has one). The caller's code and
    /// validation are unknown here: when the entries were written by different code, the
    /// explanation lists their identities ([`Explanation::stored_codes`]). Readable forms are
    /// cut to 200 characters: longer arguments can look equal and still differ.
    ///
    /// Reads the listing of the function and the metadata of at most [`MAX_EXAMINED`] of its
    /// entries (in listing order), records no access and writes nothing. An unknown function
    /// is explained as [`Cause::NoEntries`]; errors are the store's faults.
    pub fn explain(&self, func: &str, args: &[(String, String)]) -> Result<Explanation> {
        finish(self.explain_with(Reach::Blocking, func, args))
    }

    /// [`explain`](Self::explain), for async callers.
    pub async fn explain_async(
        &self,
        func: &str,
        args: &[(String, String)],
    ) -> Result<Explanation> {
        self.explain_with(Reach::Task, func, args).await
    }

    async fn explain_with(
        &self,
        reach: Reach,
        func: &str,
        args: &[(String, String)],
    ) -> Result<Explanation> {
        let Some(shared) = self.shared() else {
            let mut out = Explanation::new(func, &grammar::folder_of(func), "");
            out.causes.push(Cause::Disabled);
            return Ok(out);
        };
        let store = &shared.store;
        let (folder, examined) = resolve(shared, reach, func).await?;
        let identity = match store.stored_identity(reach, &folder).await? {
            Some(StoredIdentity::Trusted(stored)) => Some(CodeInfo::of_identity(&stored)),
            _ => None,
        };
        let name = identity
            .as_ref()
            .map_or_else(|| untrusted(func), |i| i.name.clone());
        let mut out = Explanation::new(&name, &folder, store.location());
        examined.record(&mut out);
        let codes = examined.codes();
        if codes.len() > 1 {
            out.stored_codes = codes.into_iter().collect();
        }
        if examined.entries.is_empty() {
            out.causes.push(Cause::NoEntries);
            return Ok(out);
        }
        let matching = examined
            .readable()
            .find(|(_, meta)| differing(&meta.input_args, args).is_empty());
        match matching {
            Some((args_id, meta)) => {
                out.args_id = Some(untrusted(args_id));
                let stored = CodeInfo::of(meta);
                match identity {
                    Some(current) if current != stored => out.causes.push(Cause::OtherCode {
                        args_id: untrusted(args_id),
                        stored,
                        current,
                    }),
                    _ => {}
                }
            }
            None => out.causes.push(Cause::OtherArguments {
                nearest: examined.nearest(args, identity.as_ref()),
            }),
        }
        out.hit = out.causes.is_empty();
        Ok(out)
    }
}

/// The folder `query` names (an exact name, a dotted name or a folder) and its examined
/// entries: the first of the candidate folders that holds entries or a code identity.
async fn resolve(shared: &Shared, reach: Reach, query: &str) -> Result<(String, Examined)> {
    let mut candidates = vec![grammar::folder_of(query)];
    let colons = query.replace('.', "::");
    if colons != query {
        candidates.push(grammar::folder_of(&colons));
    }
    if grammar::folder(query).is_ok() && Key::new(format!("x/{query}")).is_ok() {
        // A folder (`<readable>-<16 hex digits>`) is tried first: the CLI passes folders.
        let folder_like = query
            .rsplit_once('-')
            .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if folder_like {
            candidates.insert(0, query.to_owned());
        } else {
            candidates.push(query.to_owned());
        }
    }
    let mut seen = BTreeSet::new();
    candidates.retain(|c| seen.insert(c.clone()));
    for folder in &candidates {
        let examined = Examined::read(shared, reach, folder).await?;
        if !examined.entries.is_empty()
            || shared.store.stored_identity(reach, folder).await?.is_some()
        {
            return Ok((folder.clone(), examined));
        }
    }
    let folder = candidates.swap_remove(0);
    Ok((
        folder,
        Examined {
            entries: Vec::new(),
            bounded: false,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn differences_are_named() {
        let stored = args(&[("x", "1"), ("name", "\"a\""), ("old", "2")]);
        let call = args(&[("x", "1"), ("name", "b"), ("new", "3")]);
        let diff = differing(&stored, &call);
        let names: Vec<&str> = diff.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["name", "new", "old"]);
        assert_eq!(diff[0].stored.as_deref(), Some("\"a\""));
        assert_eq!(diff[1].stored, None);
        assert_eq!(diff[2].call, None);
        // A string may be given without its quotes.
        assert!(differing(&stored[..2], &args(&[("x", "1"), ("name", "a")])).is_empty());
    }

    #[test]
    fn identity_items_read_back() {
        let info = CodeInfo::of_identity("cachette function a::f\ncode: 12ab\nversion: -\n");
        assert_eq!(info.name, "a::f");
        assert_eq!(info.code.as_deref(), Some("12ab"));
        assert_eq!(info.version, None);
        let current = CodeInfo {
            name: "a::f".into(),
            code: Some("34cd".into()),
            version: Some("2".into()),
        };
        assert_eq!(
            info.changes_to(&current),
            "code hash 12ab -> 34cd, version - -> 2"
        );
    }

    #[test]
    fn store_text_is_escaped() {
        let stored = args(&[("x\u{1b}[31m", "\u{202e}1")]);
        let diff = differing(&stored, &[]);
        assert!(!diff[0].name.contains('\u{1b}'), "{:?}", diff[0].name);
        assert!(!diff[0].stored.as_deref().unwrap().contains('\u{202e}'));
    }

    /// An examined entry kept every argument its header held, whole: a store's header of
    /// 16 MiB holds millions, and an explanation keeps a thousand entries at once. Their
    /// number and length are now bounded, and a readable form this library writes is kept
    /// whole.
    #[test]
    fn examined_arguments_are_bounded() {
        let mut meta = Metadata::new(1.0, Utc::now(), Vec::new(), "f", "a", "h", "c");
        meta.input_args = (0..100_000)
            .map(|i| (format!("x{i}"), "é".repeat(10_000)))
            .collect();
        meta.input_args[0].1 = "y".repeat(4 * READABLE_ARG_LEN);
        let meta = bounded_args(meta);
        assert_eq!(meta.input_args.len(), MAX_EXAMINED_ARGS);
        assert_eq!(meta.input_args[0].1.len(), 4 * READABLE_ARG_LEN, "cut");
        assert!(meta.input_args.iter().all(
            |(n, v)| n.len() <= MAX_EXAMINED_ARG_LEN + 3 && v.len() <= MAX_EXAMINED_ARG_LEN + 3
        ));
        assert!(meta.input_args[1].1.ends_with('…'));
    }
}
