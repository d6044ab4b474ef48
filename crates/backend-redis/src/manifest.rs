//! The manifest of a chunked item, and the bounds it must keep before any chunk is fetched.
//!
//! A manifest is a hash in the item's data key: `w` the write id of its chunks, `n` their
//! count, `s` the item's size, `c` the chunk size. It comes from the store, which is untrusted:
//! a forged or corrupted manifest (a size of a terabyte in chunks of one byte, a write id that
//! names another item's keys) is refused here, with an error, before a single chunk is read.

use crate::config::MAX_CHUNK_SIZE;
use crate::keys;

/// The most chunks an item may have, whatever the chunk size: writes that would need more are
/// refused (raise `chunk_size`), and manifests that name more are refused when read.
pub const MAX_CHUNKS: u64 = 1 << 20;

/// The longest write id accepted.
pub(crate) const MAX_ID_LEN: usize = 128;

/// The longest field of a manifest or a record transferred from the store, in bytes (the
/// longest is a write id; sizes and times are at most 20 digits).
pub(crate) const MAX_FIELD_LEN: usize = MAX_ID_LEN;

/// A manifest that passed [`Manifest::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The write id of the chunks: letters, digits and `-`, at most [`MAX_ID_LEN`].
    pub(crate) id: String,
    /// The item's size, at most the backend's largest item.
    pub(crate) size: u64,
    /// The chunk size, between 1 byte and [`MAX_CHUNK_SIZE`].
    pub(crate) chunk: u64,
    /// The chunk count: `size / chunk` rounded up, at most [`MAX_CHUNKS`].
    pub(crate) count: u64,
}

impl Manifest {
    /// Checks the fields `w`, `n`, `s` and `c` of a manifest read from the store against the
    /// bounds above and the largest item size `max_size`. The error says what is wrong.
    pub(crate) fn parse(
        id: Option<&str>,
        count: Option<&str>,
        size: Option<&str>,
        chunk: Option<&str>,
        max_size: u64,
    ) -> Result<Manifest, String> {
        let (Some(id), Some(count), Some(size), Some(chunk)) = (id, count, size, chunk) else {
            return Err("a field is missing".to_owned());
        };
        if !keys::valid_write_id(id) {
            return Err(format!(
                "the write id is not 1 to {MAX_ID_LEN} letters, digits and '-'"
            ));
        }
        // Digits only, as the scripts that follow a manifest on the server read them (`+3`
        // parses in Rust, not in Lua: the scripts would skip chunks the reader reads).
        let number = |name: &str, text: &str| {
            if text.len() > 20 || text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("the {name} {text:?} is not a number"));
            }
            text.parse::<u64>()
                .map_err(|_| format!("the {name} {text:?} is not a number"))
        };
        let (size, chunk, count) = (
            number("size", size)?,
            number("chunk size", chunk)?,
            number("chunk count", count)?,
        );
        if size > max_size {
            return Err(format!(
                "the size {size} exceeds the largest item accepted ({max_size} bytes, max_item_size)"
            ));
        }
        if !(1..=MAX_CHUNK_SIZE).contains(&chunk) {
            return Err(format!(
                "the chunk size {chunk} is not between 1 byte and {MAX_CHUNK_SIZE}"
            ));
        }
        let expected = size.div_ceil(chunk);
        if expected > MAX_CHUNKS {
            return Err(format!(
                "{size} bytes in chunks of {chunk} make {expected} chunks, more than {MAX_CHUNKS}"
            ));
        }
        if count != expected {
            return Err(format!(
                "the chunk count {count} does not match {size} bytes in chunks of {chunk}"
            ));
        }
        Ok(Manifest {
            id: id.to_owned(),
            size,
            chunk,
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 36;

    fn parse(w: &str, n: &str, s: &str, c: &str) -> Result<Manifest, String> {
        Manifest::parse(Some(w), Some(n), Some(s), Some(c), MAX)
    }

    #[test]
    fn well_formed_manifests_pass() {
        let id = keys::write_id();
        let m = parse(&id, "3", "2500", "1000").unwrap();
        assert_eq!((m.size, m.chunk, m.count), (2500, 1000, 3));
        // The write ids of older versions: 32 hexadecimal digits.
        assert!(parse(&"0a".repeat(16), "1", "5", "5").is_ok());
        assert!(parse(&id, "0", "0", "1").is_ok());
        // The largest item, in the fewest chunks allowed.
        let chunk = MAX.div_ceil(MAX_CHUNKS);
        assert!(
            parse(
                &id,
                &MAX_CHUNKS.to_string(),
                &MAX.to_string(),
                &chunk.to_string()
            )
            .is_ok()
        );
    }

    #[test]
    fn forged_manifests_are_refused() {
        let id = keys::write_id();
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            // A terabyte in chunks of one byte: refused for its size, before any chunk is read.
            (&id, "1000000000000", "1000000000000", "1", "exceeds"),
            // Within the size bound, but far too many chunks.
            (&id, "68719476736", "68719476736", "1", "more than"),
            (&id, "1", "10", "0", "chunk size"),
            (&id, "1", "10", "1073741824", "chunk size"),
            (&id, "2", "2500", "1000", "does not match"),
            (&id, "-1", "10", "10", "not a number"),
            (&id, "+1", "5", "5", "not a number"),
            (&id, "1", " 5", "5", "not a number"),
            (&id, "1", "5", "", "not a number"),
            (&id, "1", "1e3", "1000", "not a number"),
            (&id, "1", &"9".repeat(400), "1000", "not a number"),
            ("", "1", "5", "5", "write id"),
            ("../other", "1", "5", "5", "write id"),
            ("a:b", "1", "5", "5", "write id"),
            ("{x}", "1", "5", "5", "write id"),
            (&"a".repeat(MAX_ID_LEN + 1), "1", "5", "5", "write id"),
        ];
        for (w, n, s, c, why) in cases {
            let err = parse(w, n, s, c).expect_err(why);
            assert!(err.contains(why), "{w} {n} {s} {c}: {err}");
        }
        let err = Manifest::parse(Some(&id), None, Some("5"), Some("5"), MAX).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }
}
