//! Keys of stored items.

use std::fmt;

use crate::error::{BackendError, ErrorKind};

/// The key of a stored item: a relative path of `/`-separated segments.
///
/// **Architecture Invariant:** a `Key` can never name something outside the store. It is not
/// empty, does not start or end with `/`, has no empty, `.` or `..` segment, and contains no NUL
/// and no backslash. Backends may map keys to paths or object names as they are.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Validates and wraps a key.
    pub fn new(key: impl Into<String>) -> Result<Self, BackendError> {
        let key = key.into();
        validate(&key, false)?;
        Ok(Key(key))
    }

    /// Joins two keys or prefixes with `/`.
    pub fn join(&self, segment: &str) -> Result<Self, BackendError> {
        Key::new(format!("{}/{}", self.0, segment))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments of the key.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Everything before the last segment (empty for a one-segment key).
    pub fn parent(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(parent, _)| parent)
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Whether the key lies under `prefix` (whole segments only).
    pub fn starts_with(&self, prefix: &Prefix) -> bool {
        prefix.matches(&self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Key {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Key::new(s)
    }
}

/// A prefix of keys, for listing and deleting. Matches whole segments only: the prefix `a/b`
/// matches `a/b/c` but not `a/bc`. The empty prefix matches every key.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Prefix(String);

impl Prefix {
    /// The prefix that matches every key.
    pub fn root() -> Self {
        Prefix(String::new())
    }

    /// Validates a prefix. A trailing `/` is allowed and ignored.
    pub fn new(prefix: impl Into<String>) -> Result<Self, BackendError> {
        let mut prefix = prefix.into();
        while prefix.ends_with('/') {
            prefix.pop();
        }
        if !prefix.is_empty() {
            validate(&prefix, true)?;
        }
        Ok(Prefix(prefix))
    }

    /// The prefix as a string, without trailing `/` (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the root prefix.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `key` lies under this prefix, on whole segments.
    pub fn matches(&self, key: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        key.len() > self.0.len() && key.starts_with(&self.0) && key.as_bytes()[self.0.len()] == b'/'
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({:?})", self.0)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&Key> for Prefix {
    fn from(key: &Key) -> Self {
        Prefix(key.0.clone())
    }
}

/// The name of the item holding a function's code identity, in its folder.
pub(crate) const IDENTITY_ITEM: &str = "func_code";
/// What is appended to an entry's key to name its compute-once claim.
pub(crate) const CLAIM_SUFFIX: &str = ".claim";
/// The length of an argument hash in hex digits: the last segment of an entry key.
const ARGS_ID_LEN: usize = 32;

/// The grammar of the core's keys: entries `<function folder>/<args id>`, their claims
/// `<entry key>.claim`, and each function's identity item `<function folder>/func_code`.
/// Everything the core reads, lists or deletes is named here.
pub(crate) mod grammar {
    use super::{ARGS_ID_LEN, CLAIM_SUFFIX, IDENTITY_ITEM, Key, Prefix};
    use crate::error::BackendError;

    /// The key of a call's entry.
    pub(crate) fn entry(folder: &str, args_id: &str) -> Result<Key, BackendError> {
        Key::new(format!("{folder}/{args_id}"))
    }

    /// The key of a function's identity item.
    pub(crate) fn identity(folder: &str) -> Result<Key, BackendError> {
        Key::new(format!("{folder}/{IDENTITY_ITEM}"))
    }

    /// The key of an entry's compute-once claim.
    pub(crate) fn claim(entry: &Key) -> Result<Key, BackendError> {
        Key::new(format!("{entry}{CLAIM_SUFFIX}"))
    }

    /// The prefix of a function's folder.
    pub(crate) fn folder(folder: &str) -> Result<Prefix, BackendError> {
        Prefix::new(folder)
    }

    /// Whether a key names a call's entry (`<function folder>/<32 hex digits>`).
    pub(crate) fn is_entry(key: &Key) -> bool {
        let mut segments = key.segments();
        let (Some(_), Some(last), None) = (segments.next(), segments.next(), segments.next())
        else {
            return false;
        };
        last.len() == ARGS_ID_LEN && last.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// Whether a key names the compute-once claim of an entry (`<entry key>.claim`).
    pub(crate) fn is_claim(key: &Key) -> bool {
        key.as_str()
            .strip_suffix(CLAIM_SUFFIX)
            .and_then(|entry| Key::new(entry).ok())
            .is_some_and(|entry| is_entry(&entry))
    }

    /// Whether a key names a function's identity item.
    pub(crate) fn is_identity(key: &Key) -> bool {
        let mut segments = key.segments();
        matches!(
            (segments.next(), segments.next(), segments.next()),
            (Some(_), Some(IDENTITY_ITEM), None)
        )
    }

    /// Whether the core wrote an item of this name: an entry, a claim or an identity item.
    pub(crate) fn is_ours(key: &Key) -> bool {
        is_entry(key) || is_claim(key) || is_identity(key)
    }

    /// Turns a function path into a single, readable folder name: `a::b::c` becomes `a.b.c`,
    /// and anything but ASCII letters, digits and `._-@+=,` becomes `_`. Long names are cut and
    /// get a hash suffix.
    pub(crate) fn folder_of(name: &str) -> String {
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
}

fn validate(key: &str, is_prefix: bool) -> Result<(), BackendError> {
    let what = if is_prefix { "prefix" } else { "key" };
    let refuse = |why: &str| {
        Err(BackendError::new(
            ErrorKind::InvalidKey,
            format!("{what} {key:?} refused: {why}"),
        ))
    };
    if key.is_empty() {
        return refuse("it is empty");
    }
    if key.contains('\0') {
        return refuse("it contains a NUL byte");
    }
    if key.contains('\\') {
        return refuse("it contains a backslash");
    }
    if key.starts_with('/') {
        return refuse("it is absolute (starts with '/')");
    }
    for segment in key.split('/') {
        match segment {
            "" => return refuse("it has an empty segment"),
            "." | ".." => return refuse("it has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes() {
        for bad in [
            "", "/abs", "a/../b", "..", ".", "a//b", "a/", "nul\0x", "a\\b",
        ] {
            let err = Key::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidKey, "{bad:?}");
        }
        for good in [
            "a",
            "a/b",
            "with space/ünïcödé",
            "x/%20#?&=+",
            "a/.hidden",
            "a/b..c",
        ] {
            Key::new(good).unwrap();
        }
    }

    #[test]
    fn parent_and_file_name_split_at_the_last_segment() {
        let k = Key::new("pkg.f/0123").unwrap();
        assert_eq!((k.parent(), k.file_name()), ("pkg.f", "0123"));
        let k = Key::new("a/b/c").unwrap();
        assert_eq!((k.parent(), k.file_name()), ("a/b", "c"));
        let k = Key::new("single").unwrap();
        assert_eq!((k.parent(), k.file_name()), ("", "single"));
    }

    #[test]
    fn the_grammar_tells_entries_claims_and_identities() {
        let entry = grammar::entry("f", &"0a".repeat(16)).unwrap();
        assert!(grammar::is_entry(&entry) && grammar::is_ours(&entry));
        let claim = grammar::claim(&entry).unwrap();
        assert!(grammar::is_claim(&claim) && !grammar::is_entry(&claim));
        assert!(grammar::is_identity(&grammar::identity("f").unwrap()));
        for foreign in [
            "notes.txt",
            "f/notes.txt",
            "src/main.rs",
            "f/other.claim",
            "a/b/c",
        ] {
            assert!(!grammar::is_ours(&Key::new(foreign).unwrap()), "{foreign}");
        }
    }

    #[test]
    fn folders_are_single_readable_segments() {
        use grammar::folder_of;
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
    fn prefix_matches_whole_segments() {
        let p = Prefix::new("a/b/").unwrap();
        assert!(p.matches("a/b/c"));
        assert!(!p.matches("a/bc"));
        assert!(!p.matches("a/b"));
        assert!(Prefix::root().matches("anything"));
    }
}
