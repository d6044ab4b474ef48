//! How the keys of the store map onto Redis keys.
//!
//! An item under the key `k`, in the namespace `ns`, lives in:
//!
//! - `ns:<k escaped>`: the *data key*, a string holding the whole value, or a hash holding the
//!   manifest of a chunked value;
//! - `{ns:<k escaped>}:s`: its *record*, a hash with the size (`s`) and the last access in
//!   milliseconds (`a`);
//! - `{ns:<k escaped>}:c:<write id>:<n>`: the chunks of a chunked value. A write id names the
//!   process that wrote the chunks (see [`write_id`]).
//!
//! The escaping leaves no `{`, `}` or `:` in the escaped key, and namespaces hold no braces, so
//! the data key has no hash tag (Redis Cluster hashes it whole) and the hash tag of the record and
//! the chunks is exactly the data key: all of an item's keys live in one cluster slot, which makes
//! multi-key commands, transactions and scripts on one item legal on a cluster.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use cachette_core::plugin::{Key, Prefix, owner_tag, writer_is_gone};

use crate::manifest::MAX_ID_LEN;

/// The characters escaped in keys, as `%XX`: the escape character itself, the hash-tag braces and
/// the namespace separator.
const ESCAPED: &[char] = &['%', '{', '}', ':'];

/// Escapes a key so that it holds no `{`, `}` or `:`.
pub(crate) fn escape(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    escape_into(key, &mut out);
    out
}

/// Appends `key` escaped to `out`.
fn escape_into(key: &str, out: &mut String) {
    // The keys of the core's grammar hold none of these: no escaping, one copy.
    if !key.bytes().any(|b| matches!(b, b'%' | b'{' | b'}' | b':')) {
        out.push_str(key);
        return;
    }
    for c in key.chars() {
        if ESCAPED.contains(&c) {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// Reverses [`escape`]; `None` for text that [`escape`] cannot have produced.
pub(crate) fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(i) = rest.find(ESCAPED) {
        if rest.as_bytes()[i] != b'%' {
            return None;
        }
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3)?;
        let c = char::from(u8::from_str_radix(hex, 16).ok()?);
        // Only what `escape` writes: an escaped character, in upper-case hexadecimal.
        if !ESCAPED.contains(&c) || hex != format!("{:02X}", c as u32) {
            return None;
        }
        out.push(c);
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Escapes the glob metacharacters of `SCAN … MATCH` patterns.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Redis keys of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// `ns:`, the start of every data key.
    head: String,
}

impl Layout {
    /// The layout of a namespace (validated by the configuration: not empty, no braces).
    pub(crate) fn new(namespace: &str) -> Self {
        Layout {
            head: format!("{namespace}:"),
        }
    }

    /// The data key of an item.
    pub(crate) fn data(&self, key: &Key) -> String {
        let mut data = String::with_capacity(self.head.len() + key.as_str().len() + 8);
        data.push_str(&self.head);
        escape_into(key.as_str(), &mut data);
        data
    }

    /// The `SCAN` pattern matching the data keys under a prefix (and maybe a few more, which
    /// [`Layout::key_of`] and [`Prefix::matches`] weed out).
    pub(crate) fn pattern(&self, prefix: &Prefix) -> String {
        if prefix.is_root() {
            format!("{}*", glob_escape(&self.head))
        } else {
            format!(
                "{}{}/*",
                glob_escape(&self.head),
                glob_escape(&escape(prefix.as_str()))
            )
        }
    }

    /// The key of a data key of this namespace; `None` for any other Redis key (records, chunks,
    /// other namespaces, foreign keys).
    pub(crate) fn key_of(&self, redis_key: &[u8]) -> Option<Key> {
        let text = std::str::from_utf8(redis_key).ok()?;
        let escaped = text.strip_prefix(&self.head)?;
        // A `:` left means a nested namespace (`ns:other:…`): escaped keys have none.
        Key::new(unescape(escaped)?).ok()
    }

    /// The `SCAN` pattern matching the chunks written by processes of this host (see
    /// [`owner_tag`]) of the items under a prefix (and maybe a few more, which
    /// [`Layout::chunk_of`] weeds out).
    pub(crate) fn chunk_pattern(&self, prefix: &Prefix) -> String {
        let items = if prefix.is_root() {
            String::new()
        } else {
            format!("{}/", glob_escape(&escape(prefix.as_str())))
        };
        format!(
            "{{{}{items}*}}:c:{}-*",
            glob_escape(&self.head),
            glob_escape(owner_tag())
        )
    }

    /// The data key, the item's key and the write id of a chunk of this namespace; `None` for
    /// any other Redis key.
    pub(crate) fn chunk_of<'k>(&self, redis_key: &'k str) -> Option<(&'k str, Key, &'k str)> {
        // Escaped keys hold no `}`: the first one closes the hash tag.
        let (data, rest) = redis_key.strip_prefix('{')?.split_once("}:c:")?;
        let key = self.key_of(data.as_bytes())?;
        let (id, index) = rest.rsplit_once(':')?;
        // A chunk's index as a writer spells it: decimal digits, no sign, no leading zero.
        let canonical = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        if !canonical {
            return None;
        }
        index.parse::<u64>().ok()?;
        if !valid_write_id(id) {
            return None;
        }
        Some((data, key, id))
    }
}

/// The record of an item: its size and last access.
pub(crate) fn record(data: &str) -> String {
    let mut record = String::with_capacity(data.len() + 4);
    record.push('{');
    record.push_str(data);
    record.push_str("}:s");
    record
}

/// Chunk `index` of the write `write_id` of an item.
pub(crate) fn chunk(data: &str, write_id: &str, index: u64) -> String {
    format!("{{{data}}}:c:{write_id}:{index}")
}

/// A fresh identifier of one write: `<owner tag>-<process id>-<128 random bits>`, unique across
/// processes and machines (the std hasher's keys are random per process). The owner tag and the
/// process id say who writes the chunks, so that a listing on the same host removes the chunks
/// of a writer that died before publishing them ([`written_by_dead_process`]).
pub(crate) fn write_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let state = std::collections::hash_map::RandomState::new();
    let half = |salt: u8| {
        let mut h = state.build_hasher();
        h.write_u8(salt);
        h.write_u64(n);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.finish()
    };
    format!(
        "{}-{}-{:016x}{:016x}",
        owner_tag(),
        std::process::id(),
        half(1),
        half(2)
    )
}

/// Whether the write `id` is of a process of this host (and process-id namespace) that is gone,
/// other than this one: its chunks will never be published. Write ids of other hosts, and of
/// older versions (128 bits only), are never taken for dead.
pub(crate) fn written_by_dead_process(id: &str) -> bool {
    let mut fields = id.splitn(3, '-');
    let (Some(tag), Some(pid), Some(_)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    writer_is_gone(tag, pid)
}

/// Whether `id` may be a write id: 1 to [`MAX_ID_LEN`] ASCII letters, digits and `-` (what
/// [`write_id`] makes, and the 32 hexadecimal digits of older versions). Ids read from the store
/// are checked with it before they are used in key names, so that a forged one cannot name the
/// keys of another item.
pub(crate) fn valid_write_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        for key in [
            "plain/key",
            "brackets[](){}<>",
            "percent%20and+plus=&amp;",
            "colon:semicolon;comma,",
            "%7B",
            "ünïcödé-日本語/🦀",
        ] {
            let e = escape(key);
            assert!(!e.contains(['{', '}', ':']), "{e}");
            assert_eq!(unescape(&e).as_deref(), Some(key));
        }
        assert_eq!(unescape("a:b"), None);
        assert_eq!(unescape("a%zz"), None);
        assert_eq!(
            unescape("a%41"),
            None,
            "only escaped characters are escaped"
        );
        assert_eq!(unescape("a%2"), None);
    }

    #[test]
    fn patterns_escape_globs() {
        let layout = Layout::new("ns*");
        let p = Prefix::new("a?/b[1]").unwrap();
        assert_eq!(layout.pattern(&p), r"ns\*:a\?/b\[1\]/*");
        assert_eq!(layout.pattern(&Prefix::root()), r"ns\*:*");
    }

    #[test]
    fn data_keys_parse_back() {
        let layout = Layout::new("app:cache");
        let key = Key::new("f/x:{y}").unwrap();
        let data = layout.data(&key);
        assert_eq!(data, "app:cache:f/x%3A%7By%7D");
        assert_eq!(layout.key_of(data.as_bytes()), Some(key));
        assert_eq!(layout.key_of(b"app:cache:nested:f/x"), None);
        assert_eq!(layout.key_of(b"{app:cache:f/x}:s"), None);
        assert_eq!(Layout::new("app").key_of(data.as_bytes()), None);
    }

    #[test]
    fn item_keys_share_a_slot() {
        use redis::cluster_routing::Slot;
        let data = Layout::new("ns").data(&Key::new("f/0123").unwrap());
        let slot = Slot::for_key(&data);
        assert_eq!(Slot::for_key(record(&data)), slot);
        assert_eq!(Slot::for_key(chunk(&data, &write_id(), 7)), slot);
    }

    #[test]
    fn write_ids_differ_and_name_their_writer() {
        let a = write_id();
        assert_eq!(
            a.len(),
            8 + 1 + std::process::id().to_string().len() + 1 + 32
        );
        assert!(!a.contains([':', '{', '}']), "{a}");
        assert_ne!(a, write_id());
        // This process is alive.
        assert!(!written_by_dead_process(&a));
        // A process of this host that is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = format!("{}-{pid}-{}", owner_tag(), "0".repeat(32));
        assert!(written_by_dead_process(&dead) == cfg!(target_os = "linux"));
        // Another host, and the form of older versions: never taken for dead.
        assert!(!written_by_dead_process(&format!(
            "00000000-{pid}-{}",
            "0".repeat(32)
        )));
        assert!(!written_by_dead_process(&"0".repeat(32)));
        assert!(!written_by_dead_process("deadbeef"));
        assert!(valid_write_id(&a) && valid_write_id(&"0".repeat(32)));
        for bad in ["", "a:b", "a}b", "a b", "ü", &"a".repeat(MAX_ID_LEN + 1)] {
            assert!(!valid_write_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn chunks_parse_back() {
        let layout = Layout::new("ns");
        let key = Key::new("f/x:{y}").unwrap();
        let data = layout.data(&key);
        let id = write_id();
        let name = chunk(&data, &id, 12);
        assert_eq!(
            layout.chunk_of(&name),
            Some((data.as_str(), key, id.as_str()))
        );
        assert_eq!(layout.chunk_of(&record(&data)), None);
        assert_eq!(layout.chunk_of(&data), None);
        assert_eq!(Layout::new("other").chunk_of(&name), None);
        assert_eq!(layout.chunk_of("{ns:f/x}:c:id:notanumber"), None);
        assert_eq!(layout.chunk_of("{ns:f/x}:c:bad id:0"), None);
        // Indices no writer spells: a sign, a leading zero, nothing.
        for index in ["+1", "01", "", "1 "] {
            let odd = format!("{{{data}}}:c:{id}:{index}");
            assert_eq!(layout.chunk_of(&odd), None, "{odd}");
        }
        let first = chunk(&data, &id, 0);
        assert!(layout.chunk_of(&first).is_some(), "{first}");
        let tag = owner_tag();
        assert_eq!(
            layout.chunk_pattern(&Prefix::root()),
            format!("{{ns:*}}:c:{tag}-*")
        );
        assert_eq!(
            layout.chunk_pattern(&Prefix::new("f:g").unwrap()),
            format!("{{ns:f%3Ag/*}}:c:{tag}-*")
        );
    }
}
