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
        memchr::memrchr(b'/', self.0.as_bytes()).map_or("", |at| &self.0[..at])
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        memchr::memrchr(b'/', self.0.as_bytes()).map_or(&self.0, |at| &self.0[at + 1..])
    }

    /// Whether the key lies under `prefix` (whole segments only).
    pub fn starts_with(&self, prefix: &Prefix) -> bool {
        prefix.matches(&self.0)
    }

    /// A mix of the key's last eight bytes (of all of it, when shorter), with no hash of the
    /// whole: the keys of one function's entries differ there (the arguments' digest), other
    /// keys that end alike share it. For choosing a place, or telling a key seen just before,
    /// where the key itself is compared after, or a rare confusion is harmless.
    pub fn tail_tag(&self) -> u64 {
        let bytes = self.0.as_bytes();
        let word = match bytes.last_chunk::<8>() {
            Some(last) => u64::from_le_bytes(*last),
            None => bytes.iter().fold(0, |word, &b| (word << 8) | u64::from(b)),
        };
        word.wrapping_mul(0x9E37_79B9_7F4A_7C15)
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

/// The folder of the store, under the location, that holds everything the core writes.
pub(crate) const NAMESPACE: &str = "cachette";
/// The name of the item holding a function's code identity, in its folder.
pub(crate) const IDENTITY_ITEM: &str = "func_code";
/// The folder of the items of [`Memory::check`](crate::Memory::check).
const CHECK_FOLDER: &str = "_check";
/// The folder of the persisted call statistics ([`crate::usage`]).
const STATS_FOLDER: &str = "_stats";
/// The name of the item that sums a closed day of call statistics.
pub(crate) const STATS_DAY_ITEM: &str = "all";
/// What is appended to an entry's key to name its compute-once claim.
pub(crate) const CLAIM_SUFFIX: &str = ".claim";
/// The length of an argument hash in hex digits: the last segment of an entry key.
const ARGS_ID_LEN: usize = 32;
/// The longest readable part of a function's folder name.
const FOLDER_READABLE_LEN: usize = 120;

/// The grammar of the core's keys. Everything the core writes lives in the folder
/// [`NAMESPACE`] of the location, as joblib keeps its cache in a `joblib` folder, so that the
/// location may hold anything else: entries `cachette/<function folder>/<args id>`, their
/// claims `<entry key>.claim`, and each function's identity item
/// `cachette/<function folder>/func_code`. Everything the core reads, lists or deletes is
/// named here, and [`is_ours`] tells its names from any other.
pub(crate) mod grammar {
    use super::{
        ARGS_ID_LEN, CHECK_FOLDER, CLAIM_SUFFIX, FOLDER_READABLE_LEN, IDENTITY_ITEM, Key,
        NAMESPACE, Prefix, STATS_DAY_ITEM, STATS_FOLDER,
    };
    use crate::error::BackendError;

    /// The prefix of everything the core writes.
    pub(crate) fn root() -> Prefix {
        Prefix(NAMESPACE.to_owned())
    }

    /// The key of a call's entry.
    pub(crate) fn entry(folder: &str, args_id: &str) -> Result<Key, BackendError> {
        Key::new(format!("{NAMESPACE}/{folder}/{args_id}"))
    }

    /// The key of a call's entry from the digest of its arguments, built without a second
    /// look: `folder` comes from [`folder_of`] (ASCII letters, digits, `._-@+=,`, never `.` or
    /// `..`, never empty), and 32 hex digits are a valid segment, so the key is valid by
    /// construction. This is the key of every call; [`entry`] is for names read from outside.
    #[allow(unsafe_code)]
    pub(crate) fn entry_of(folder: &str, digest: &cachette_hashing::Digest) -> Key {
        /// The two hex digits of every byte: one load per byte.
        const HEX_PAIRS: [[u8; 2]; 256] = {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut pairs = [[0u8; 2]; 256];
            let mut byte = 0;
            while byte < 256 {
                pairs[byte] = [HEX[byte >> 4], HEX[byte & 0x0f]];
                byte += 1;
            }
            pairs
        };
        // The buffer of the thread's last entry key whose call ended in a hit ([`recycle`]):
        // a hit then allocates no key.
        let mut key = SPARE.take();
        key.clear();
        key.reserve(NAMESPACE.len() + folder.len() + 2 + ARGS_ID_LEN);
        key.push_str(NAMESPACE);
        key.push('/');
        key.push_str(folder);
        key.push('/');
        let mut hex = [0u8; ARGS_ID_LEN];
        for (pair, &byte) in hex.chunks_exact_mut(2).zip(digest.as_bytes()) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
        }
        debug_assert!(hex.is_ascii());
        // SAFETY: every byte of `hex` is an ASCII hex digit of `HEX_PAIRS`, so the whole is
        // UTF-8. (Validating it took a sixth of the key's making, on every call.)
        key.push_str(unsafe { std::str::from_utf8_unchecked(&hex) });
        debug_assert!(super::validate(&key, false).is_ok(), "{key:?}");
        Key(key)
    }

    thread_local! {
        /// A buffer for the next entry key of this thread: the last one given back.
        static SPARE: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
    }

    /// Gives `key`'s buffer back for the next entry key of this thread (see [`entry_of`]).
    /// Only a buffer of at most a few hundred bytes is kept.
    pub(crate) fn recycle(key: Key) {
        if key.0.capacity() <= 512 {
            SPARE.set(key.0);
        }
    }

    /// The key of a function's identity item.
    pub(crate) fn identity(folder: &str) -> Result<Key, BackendError> {
        Key::new(format!("{NAMESPACE}/{folder}/{IDENTITY_ITEM}"))
    }

    /// The key of the item [`Memory::check`](crate::Memory::check) writes and deletes:
    /// `cachette/_check/<token>`. No function folder is `_check` (theirs end with a hash), so
    /// it is never an entry, a claim or an identity item.
    pub(crate) fn check_item(token: &str) -> Result<Key, BackendError> {
        Key::new(format!("{NAMESPACE}/{CHECK_FOLDER}/{token}"))
    }

    /// The folder of the persisted call statistics: `cachette/_stats`. No function folder is
    /// `_stats` (theirs end with a hash).
    pub(crate) fn stats_root() -> Prefix {
        Prefix(format!("{NAMESPACE}/{STATS_FOLDER}"))
    }

    /// The key of one item of call statistics: `cachette/_stats/<day>/<name>`, where `day` is
    /// a date (`2026-12-02`) and `name` a writer's name or [`STATS_DAY_ITEM`].
    pub(crate) fn stats_item(day: &str, name: &str) -> Result<Key, BackendError> {
        Key::new(format!("{NAMESPACE}/{STATS_FOLDER}/{day}/{name}"))
    }

    /// The day and the name of an item of call statistics; `None` for any other key, and for
    /// names that no writer gives (a day that is not a date, a name of other characters than
    /// letters, digits and `-`, or longer than 64).
    pub(crate) fn split_stats(key: &Key) -> Option<(chrono::NaiveDate, &str)> {
        let mut segments = key.segments();
        let (Some(NAMESPACE), Some(STATS_FOLDER), Some(day), Some(name), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return None;
        };
        let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let well_formed = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        well_formed.then_some((day, name))
    }

    /// Whether a key names an item of call statistics.
    pub(crate) fn is_stats(key: &Key) -> bool {
        split_stats(key).is_some()
    }

    /// Whether an item of call statistics sums a whole day.
    pub(crate) fn is_stats_day(name: &str) -> bool {
        name == STATS_DAY_ITEM
    }

    /// The key of an entry's compute-once claim.
    pub(crate) fn claim(entry: &Key) -> Result<Key, BackendError> {
        let mut key = String::with_capacity(entry.0.len() + CLAIM_SUFFIX.len());
        key.push_str(&entry.0);
        key.push_str(CLAIM_SUFFIX);
        Key::new(key)
    }

    /// The prefix of a function's folder.
    pub(crate) fn folder(folder: &str) -> Result<Prefix, BackendError> {
        if folder.contains('/') {
            return Err(BackendError::new(
                crate::error::ErrorKind::InvalidKey,
                format!("{folder:?} is not a function folder: it holds a '/'"),
            ));
        }
        Prefix::new(format!("{NAMESPACE}/{folder}"))
    }

    /// The function folder and the last segment of a key of the core: `("f", "0123…")` for
    /// `cachette/f/0123…`. `None` for any other key.
    pub(crate) fn split(key: &Key) -> Option<(&str, &str)> {
        // A key has no empty segment (see `validate`), so two cuts tell the whole shape.
        let rest = key.0.strip_prefix(NAMESPACE)?.strip_prefix('/')?;
        let cut = memchr::memchr(b'/', rest.as_bytes())?;
        // Both parts are cut at an ASCII `/`, so on character boundaries.
        let (folder, last) = (rest.get(..cut)?, rest.get(cut + 1..)?);
        memchr::memchr(b'/', last.as_bytes())
            .is_none()
            .then_some((folder, last))
    }

    fn is_args_id(name: &str) -> bool {
        // Without an early exit, the 32 bytes are checked a vector at a time (listings ask it
        // of every item, several times).
        <&[u8; ARGS_ID_LEN]>::try_from(name.as_bytes())
            .is_ok_and(|id| id.iter().fold(true, |ok, b| ok & b.is_ascii_hexdigit()))
    }

    /// Whether a key names a call's entry (`cachette/<function folder>/<32 hex digits>`).
    pub(crate) fn is_entry(key: &Key) -> bool {
        split(key).is_some_and(|(_, last)| is_args_id(last))
    }

    /// The function folder and the argument digest of an entry's key; `None` for any other key.
    pub(crate) fn split_entry(key: &Key) -> Option<(&str, [u8; 16])> {
        let (folder, last) = split(key)?;
        let digest: cachette_hashing::Digest = last.parse().ok()?;
        Some((folder, digest.0))
    }

    /// Whether a key names the compute-once claim of an entry (`<entry key>.claim`).
    pub(crate) fn is_claim(key: &Key) -> bool {
        split(key).is_some_and(|(_, last)| last.strip_suffix(CLAIM_SUFFIX).is_some_and(is_args_id))
    }

    /// Whether a key names a function's identity item.
    pub(crate) fn is_identity(key: &Key) -> bool {
        split(key).is_some_and(|(_, last)| last == IDENTITY_ITEM)
    }

    /// Whether the core wrote an item of this name: an entry, a claim, an identity item or an
    /// item of call statistics.
    pub(crate) fn is_ours(key: &Key) -> bool {
        is_entry(key) || is_claim(key) || is_identity(key) || is_stats(key)
    }

    /// The folder of a function's results: a readable form of its name (`a::b::c` as `a.b.c`,
    /// anything but ASCII letters, digits and `._-@+=,` as `_`, cut to 120 characters), then
    /// `-` and 16 hex digits of a hash of the exact name. The hash makes the mapping injective:
    /// `model/v1` and `model_v1`, `stats::mean` and `stats.mean`, `résumé` and `r_sum_` read
    /// alike and still get folders of their own.
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
            .take(FOLDER_READABLE_LEN)
            .collect();
        if folder.starts_with('.') {
            folder.insert(0, '_');
        }
        let hash = xxhash_rust::xxh3::xxh3_64(name.as_bytes());
        format!("{folder}-{hash:016x}")
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
    // The usual key is printable ASCII without a backslash: one pass over its bytes (with no
    // early exit, so that it runs a vector at a time) answers the three checks below.
    let printable = key
        .bytes()
        .fold(true, |ok, b| ok & (b' '..=b'~').contains(&b) & (b != b'\\'));
    if !printable && key.contains('\0') {
        return refuse("it contains a NUL byte");
    }
    if !printable && key.chars().any(char::is_control) {
        // Keys are printed in messages; no item Cachette writes has one.
        return refuse("it contains a control character");
    }
    if !printable && key.chars().any(crate::report::reorders) {
        // A folder name is printed as it is: it must not reorder what it is printed in.
        return refuse("it contains a character that reorders text (a bidirectional control)");
    }
    if !printable && key.contains('\\') {
        return refuse("it contains a backslash");
    }
    if key.starts_with('/') {
        return refuse("it is absolute (starts with '/')");
    }
    // An empty, `.` or `..` segment shows as a `/` at the end, or a `/` or `.` after a `/` or
    // at the start: one pass over the pairs of bytes (again without an early exit) clears the
    // usual key, and only a suspect one is split.
    let bytes = key.as_bytes();
    let suspect = bytes.first() == Some(&b'.')
        || bytes.last() == Some(&b'/')
        || bytes
            .iter()
            .zip(bytes.get(1..).unwrap_or_default())
            .fold(false, |any, (&a, &b)| {
                any | ((a == b'/') & ((b == b'/') | (b == b'.')))
            });
    if suspect {
        for segment in key.split('/') {
            match segment {
                "" => return refuse("it has an empty segment"),
                "." | ".." => return refuse("it has a '.' or '..' segment"),
                _ => {}
            }
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
            "",
            "/abs",
            "a/../b",
            "..",
            ".",
            "a//b",
            "a/",
            "./a",
            "../a",
            "a/.",
            "a/..",
            "a/./b",
            "é/../b",
            "//",
            "nul\0x",
            "a\\b",
            "tab\tx",
            "del\x7f",
            "c1\u{85}x",
            "é\\x",
            "f/exe.\u{202e}txt",
            "\u{2066}f/x",
            "f\u{200f}/x",
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
            ".hidden/a",
            "...",
            "a/..b/.c.",
            "a/b..c",
            "tilde~/and more",
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
    fn entry_keys_from_digests_are_the_checked_ones() {
        for name in ["", ".", "..", "a::b", "a/b", "ünï code", &"x".repeat(300)] {
            let folder = grammar::folder_of(name);
            let digest = cachette_hashing::Digest([0xa5; 16]);
            let fast = grammar::entry_of(&folder, &digest);
            assert_eq!(fast, grammar::entry(&folder, &digest.to_hex()).unwrap());
            assert!(grammar::is_entry(&fast));
        }
    }

    #[test]
    fn the_grammar_tells_entries_claims_and_identities() {
        let entry = grammar::entry("f", &"0a".repeat(16)).unwrap();
        assert!(grammar::is_entry(&entry) && grammar::is_ours(&entry));
        let claim = grammar::claim(&entry).unwrap();
        assert!(grammar::is_claim(&claim) && !grammar::is_entry(&claim));
        assert!(grammar::is_identity(&grammar::identity("f").unwrap()));
        assert_eq!(
            grammar::split_entry(&entry),
            Some(("f", [0x0a; 16])),
            "an entry's key gives its folder and digest back"
        );
        for foreign in [
            "notes.txt",
            "f/notes.txt",
            "src/main.rs",
            "f/other.claim",
            "a/b/c",
            "cachette",
            "cachette/f",
            "cachettes/f/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a",
            "cachette/f/0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a/x",
        ] {
            assert!(!grammar::is_ours(&Key::new(foreign).unwrap()), "{foreign}");
        }
    }

    #[test]
    fn folders_are_single_readable_segments_and_never_shared() {
        use grammar::folder_of;
        assert!(folder_of("my_crate::stats::mean").starts_with("my_crate.stats.mean-"));
        assert!(
            folder_of("tour::main::closure@tour.rs:10:5")
                .starts_with("tour.main.closure@tour.rs_10_5-")
        );
        assert!(!folder_of("a/b\\c").contains(['/', '\\']));
        assert!(folder_of(".hidden").starts_with("_.hidden-"));
        let long = "x".repeat(500);
        assert!(folder_of(&long).len() <= 140);
        assert_ne!(folder_of(&long), folder_of(&"x".repeat(501)));
        for (a, b) in [
            ("model/v1", "model_v1"),
            ("stats::mean", "stats.mean"),
            ("résumé", "r_sum_"),
        ] {
            assert_ne!(folder_of(a), folder_of(b), "{a} and {b}");
        }
        assert_eq!(folder_of("a::b"), folder_of("a::b"), "stable");
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
