//! Opening the store a location names, and finding functions in it by name.

use std::path::Path;

use anyhow::{Context, Result};
use cachette::{FuncId, FunctionInfo, Memory, MemoryConfig, SigningKey};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::fail::{Code, fail, not_found};

/// The folder of the location where the library keeps everything it writes.
#[cfg(feature = "fs")]
const NAMESPACE: &str = "cachette";

/// An open store.
pub(crate) struct Store {
    pub(crate) memory: Memory,
    /// Where it is, as the library names it (a path for the local disk, else a URL).
    pub(crate) location: String,
    /// The backend's scheme: `file`, `s3`, `redis`, ...
    pub(crate) backend: String,
}

/// Opens the store of a location: a folder, a URL (`file://`, `s3://`, `redis://`, ...) or a
/// config file (any file; `*.toml` by convention). Creates nothing: a location that does not
/// exist is a [`Code::NotFound`] error.
///
/// The store is opened without a config file's local tier (reading through it would copy
/// entries into the tier) and with `verbose = 0`. `CACHETTE_SIGNING_KEY`, when set, checks the
/// signatures of entries, as the library's readers with that key do.
pub(crate) fn open(location: &str) -> Result<Store> {
    let mut config = if location.contains("://") {
        MemoryConfig::from_url(location)
    } else {
        let path = Path::new(location);
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_found(format!("{location}: no such file or folder")));
            }
            Err(e) => return Err(fail(Code::Error, format!("cannot read {location}: {e}"))),
            Ok(meta) if meta.is_file() => MemoryConfig::from_file(path)
                .with_context(|| format!("cannot read the config file {location}"))?,
            Ok(_) => MemoryConfig::from_url(location),
        }
    };
    config.enabled = true;
    config.local_tier = None;
    config.options.verbose = 0;
    let mut builder = config
        .builder()
        .with_context(|| format!("cannot open the store of {location}"))?;
    if let Some(secret) = std::env::var(cachette::config::SIGNING_KEY_ENV)
        .ok()
        .filter(|s| !s.is_empty())
    {
        let key = SigningKey::new(secret).with_context(|| {
            format!("{} is not a usable key", cachette::config::SIGNING_KEY_ENV)
        })?;
        builder = builder.signing_key(key);
    }
    let memory = builder
        .build()
        .with_context(|| format!("cannot open the store {location:?}"))?;
    let backend = memory
        .backend()
        .map_or_else(String::new, |b| b.scheme().to_owned());
    let opened = memory.location().unwrap_or(location).to_owned();
    // A `file://` URL or a config file may name a folder that does not exist either.
    #[cfg(feature = "fs")]
    if backend == "file" {
        use cachette::fs::INDEX_DIR;
        let root = Path::new(&opened);
        if !root.exists() {
            return Err(not_found(format!(
                "{opened}: no such file or folder (the store of {location})"
            )));
        }
        // Small items may live in the store's index alone (the index layout), with no folder.
        if !root.join(NAMESPACE).exists() && !root.join(INDEX_DIR).exists() {
            eprintln!(
                "cachette: note: nothing is stored in {opened} (it has no {NAMESPACE}/ folder, nor an index)"
            );
        }
    }
    Ok(Store {
        memory,
        location: opened,
        backend,
    })
}

/// A function of the store, for output.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Func {
    /// Its exact name (`my_crate::stats::mean`), `null` when its identity item is missing.
    pub(crate) name: Option<String>,
    /// Its folder in the store.
    pub(crate) folder: String,
    pub(crate) entries: usize,
    pub(crate) bytes: u64,
    pub(crate) last_access: Option<DateTime<Utc>>,
}

impl Func {
    /// The name to show: the exact name, else the folder.
    pub(crate) fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.folder)
    }
}

impl From<FunctionInfo> for Func {
    fn from(info: FunctionInfo) -> Func {
        Func {
            name: info.name,
            folder: info.folder,
            entries: info.entries,
            bytes: info.bytes,
            last_access: info.last_access,
        }
    }
}

/// The functions of the store, sorted by name.
pub(crate) fn functions(store: &Store) -> Result<Vec<Func>> {
    let mut funcs: Vec<Func> = store
        .memory
        .functions()
        .with_context(|| format!("cannot list {}", store.location))?
        .into_iter()
        .map(Func::from)
        .collect();
    funcs.sort_by(|a, b| a.label().cmp(b.label()).then(a.folder.cmp(&b.folder)));
    Ok(funcs)
}

/// `a::b::f` as `a.b.f`.
fn dotted(name: &str) -> String {
    name.replace("::", ".")
}

/// The readable part of a folder: the folder without its `-` and 16 hex digits.
fn readable(folder: &str) -> &str {
    match folder.rsplit_once('-') {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => folder,
    }
}

/// The function `query` names: its exact name, its name with `::` and `.` exchanged, its
/// folder, or the readable part of its folder. An unknown name is a [`Code::NotFound`] error
/// that suggests the nearest one; a name that several functions answer to is one that lists
/// them.
pub(crate) fn resolve<'a>(funcs: &'a [Func], query: &str, location: &str) -> Result<&'a Func> {
    if let Some(f) = funcs.iter().find(|f| f.name.as_deref() == Some(query)) {
        return Ok(f);
    }
    if let Some(f) = funcs.iter().find(|f| f.folder == query) {
        return Ok(f);
    }
    let wanted = dotted(query);
    let sanitized = FuncId::new(query).folder().to_owned();
    let sanitized = readable(&sanitized);
    let matches: Vec<&Func> = funcs
        .iter()
        .filter(|f| {
            f.name.as_deref().is_some_and(|n| dotted(n) == wanted)
                || readable(&f.folder) == wanted
                || readable(&f.folder) == sanitized
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(not_found(unknown(funcs, query, location))),
        many => Err(not_found(format!(
            "`{query}` names several functions: {}; give the folder to pick one",
            many.iter()
                .map(|f| format!("`{}` (folder {})", f.label(), f.folder))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The message for a function that is not in the store, with the nearest name if one is near.
fn unknown(funcs: &[Func], query: &str, location: &str) -> String {
    let mut message = format!("no function `{query}` in {location}");
    match suggest(funcs, query) {
        Some(near) => message.push_str(&format!("; did you mean `{near}`?")),
        None if funcs.is_empty() => message.push_str(" (it holds no function)"),
        None => message.push_str(&format!(
            " (`cachette inspect {location}` lists its {} functions)",
            funcs.len()
        )),
    }
    message
}

/// The function whose name is nearest to `query` (edit distance, ignoring `::` against `.`),
/// or whose name ends with it (`mean` for `stats::mean`).
pub(crate) fn suggest<'a>(funcs: &'a [Func], query: &str) -> Option<&'a str> {
    let wanted = dotted(query);
    let bound = (wanted.chars().count() / 3).max(2);
    let nearest = funcs
        .iter()
        .map(|f| {
            let by_name = f
                .name
                .as_deref()
                .map_or(usize::MAX, |n| strsim::levenshtein(&dotted(n), &wanted));
            let by_folder = strsim::levenshtein(readable(&f.folder), &wanted)
                .min(strsim::levenshtein(&f.folder, query));
            (by_name.min(by_folder), f)
        })
        .filter(|(d, _)| *d <= bound)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f.label());
    nearest.or_else(|| {
        let tail = format!(".{wanted}");
        funcs
            .iter()
            .find(|f| {
                f.name
                    .as_deref()
                    .is_some_and(|n| dotted(n).ends_with(&tail))
            })
            .map(Func::label)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func(name: &str) -> Func {
        Func {
            name: Some(name.to_owned()),
            folder: FuncId::new(name).folder().to_owned(),
            entries: 1,
            bytes: 1,
            last_access: None,
        }
    }

    #[test]
    fn names_in_every_form() {
        let funcs = vec![func("my_crate::stats::mean"), func("pipeline::load")];
        let mean = &funcs[0];
        for query in [
            "my_crate::stats::mean",
            "my_crate.stats.mean",
            mean.folder.as_str(),
            readable(&mean.folder),
        ] {
            let found = resolve(&funcs, query, "here").unwrap();
            assert_eq!(found.folder, mean.folder, "{query}");
        }
    }

    #[test]
    fn exact_names_win_over_lookalikes() {
        let funcs = vec![func("a::b"), func("a.b")];
        assert_eq!(resolve(&funcs, "a::b", "x").unwrap().label(), "a::b");
        assert_eq!(resolve(&funcs, "a.b", "x").unwrap().label(), "a.b");
        let err = resolve(&funcs, "a_b", "x").unwrap_err();
        assert_eq!(crate::fail::code_of(&err), Code::NotFound);
    }

    #[test]
    fn near_misses_get_a_suggestion() {
        let funcs = vec![func("my_crate::stats::mean"), func("pipeline::load")];
        let err = resolve(&funcs, "my_crate::stats::maen", "here").unwrap_err();
        assert_eq!(crate::fail::code_of(&err), Code::NotFound);
        assert!(
            err.to_string().contains(
                "no function `my_crate::stats::maen` in here; did you mean `my_crate::stats::mean`?"
            ),
            "{err}"
        );
        assert_eq!(suggest(&funcs, "mean"), Some("my_crate::stats::mean"));
        assert_eq!(suggest(&funcs, "pipeline.laod"), Some("pipeline::load"));
        assert_eq!(suggest(&funcs, "something_else_entirely"), None);
    }

    #[test]
    fn folders_lose_their_hash_only() {
        assert_eq!(readable("a.b-0123456789abcdef"), "a.b");
        assert_eq!(readable("a-b"), "a-b");
        assert_eq!(readable("plain"), "plain");
    }
}
