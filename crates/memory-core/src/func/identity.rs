//! How a memoized function is identified: [`FuncId`] (its name, folder, code hash and
//! version), and the warning of two functions sharing a folder.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::{Mutex, OnceLock};

use crate::entry::CodeIdentity;
use crate::key::grammar;
use crate::report::Reporter;

/// The identity of a memoized function: its name (which gives its folder in the store), and
/// what says whether its code changed: a hash of its tokens (taken by the `#[memoize]` macro)
/// and/or an explicit version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncId {
    pub(super) name: String,
    pub(super) folder: String,
    pub(super) code_hash: Option<String>,
    pub(super) version: Option<String>,
    pub(super) origin: String,
    /// Whether the name was made from the place where the function was memoized (a closure, a
    /// function pointer): another function memoized at that place would get the same name.
    pub(super) by_site: bool,
    /// The function memoized first at the same place in this process, when it is another one
    /// than this: the two would share results, so this one runs without the cache.
    pub(super) ambiguous: Option<String>,
}

impl FuncId {
    /// An identity from a name such as `my_crate::module::function`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        FuncId {
            folder: grammar::folder_of(&name),
            origin: name.clone(),
            name,
            code_hash: None,
            version: None,
            by_site: false,
            ambiguous: None,
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
    /// object, whose type says nothing about which function it is). `which` tells apart two
    /// callables memoized at one place (a closure's type, a pointer's address): it is not part
    /// of the name, which must be the same in every process.
    pub(crate) fn of_callable<F: ?Sized>(
        caller: &Location<'_>,
        which: &dyn std::fmt::Debug,
    ) -> Self {
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
        let origin = format!("{type_name} ({which:?}) at {caller}");
        FuncId {
            by_site: true,
            ..FuncId::new(name).with_origin(origin)
        }
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

    /// The code this function's entries must have been written by.
    pub(crate) fn code_identity(&self) -> CodeIdentity<'_> {
        CodeIdentity {
            name: &self.name,
            code: self.code_hash.as_deref(),
            version: self.version.as_deref(),
        }
    }

    /// What is stored in the function's `func_code` item. A field longer than
    /// [`MAX_IDENTITY_FIELD`] (a name of generic types, a version of kilobytes) is written as
    /// its beginning and its digest, which compares as the whole field does: the item stays
    /// within what a read of it takes (4 KiB).
    pub(crate) fn identity(&self) -> String {
        format!(
            "cachette function {}\ncode: {}\nversion: {}\n",
            bounded_field(&self.name),
            bounded_field(self.code_hash.as_deref().unwrap_or("-")),
            bounded_field(self.version.as_deref().unwrap_or("-")),
        )
    }
}

/// The longest field of an identity written as it is.
const MAX_IDENTITY_FIELD: usize = 1024;

/// `field`, or when longer than [`MAX_IDENTITY_FIELD`], its first 64 bytes (to a character) and
/// the digest of the whole.
fn bounded_field(field: &str) -> std::borrow::Cow<'_, str> {
    if field.len() <= MAX_IDENTITY_FIELD {
        return field.into();
    }
    format!(
        "{}… (xxh3 {:032x})",
        &field[..field.floor_char_boundary(64)],
        xxhash_rust::xxh3::xxh3_128(field.as_bytes())
    )
    .into()
}

/// Marks `id` ambiguous when another callable was memoized first at the same place, for a store
/// at `location`, in this process (a function pointer passed to `cache_fn`, a closure passed
/// through a helper): the name comes from that place, so both would read and write the same
/// results.
pub(super) fn register_site(location: &str, id: &mut FuncId) {
    if !id.by_site {
        return;
    }
    static FIRST: OnceLock<Mutex<HashMap<(String, String), String>>> = OnceLock::new();
    let mut first = FIRST
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let there = first
        .entry((location.to_owned(), id.folder.clone()))
        .or_insert_with(|| id.origin.clone());
    if *there != id.origin {
        id.ambiguous = Some(there.clone());
    }
}

/// Which functions are memoized under which identity in this process, to warn of collisions.
pub(super) fn register_identity(location: &str, reporter: &Reporter, id: &FuncId) {
    static SEEN: OnceLock<Mutex<HashMap<(String, String), String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let slot = (location.to_owned(), id.folder.clone());
    if let Some(previous) = seen.insert(slot, id.origin.clone())
        && previous != id.origin
    {
        reporter.warn(format!(
            "Possible name collision between functions '{}' ({previous}) and '{}' ({}): they share the cache folder '{}', and will overwrite each other's results across sessions. Give one of them another name.",
            id.name, id.name, id.origin, id.folder
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(FuncId::new("a::b::square").short_name(), "square");
        assert_eq!(
            FuncId::new("a::main::closure@x.rs:1:2").short_name(),
            "closure"
        );
    }
}
