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

    /// The code this function's entries must have been written by.
    pub(crate) fn code_identity(&self) -> CodeIdentity<'_> {
        CodeIdentity {
            name: &self.name,
            code: self.code_hash.as_deref(),
            version: self.version.as_deref(),
        }
    }

    /// What is stored in the function's `func_code` item.
    pub(crate) fn identity(&self) -> String {
        format!(
            "cachette function {}\ncode: {}\nversion: {}\n",
            self.name,
            self.code_hash.as_deref().unwrap_or("-"),
            self.version.as_deref().unwrap_or("-"),
        )
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
