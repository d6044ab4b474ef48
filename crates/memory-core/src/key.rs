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
    fn prefix_matches_whole_segments() {
        let p = Prefix::new("a/b/").unwrap();
        assert!(p.matches("a/b/c"));
        assert!(!p.matches("a/bc"));
        assert!(!p.matches("a/b"));
        assert!(Prefix::root().matches("anything"));
    }
}
