//! A page of a listing rid of the names object_store refuses.
//!
//! object_store parses every name of a ListObjectsV2 page with [`Path::parse`] and fails the
//! whole page on one it refuses (an empty, `.` or `..` segment, a control character): one
//! object named so by anyone who may write to the bucket would fail every listing for good.
//! [`without_refused_names`] drops those entries from the page before object_store reads it.
//! The rest of the page is kept byte for byte: the entries it keeps, the continuation token,
//! the counts (which object_store does not check).

use std::ops::Range;

use cachette_core::plugin::{Bytes, untrusted};
use object_store::path::Path;
use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde::Deserialize;

/// The most refused names of a page logged one by one (a page of a hostile server may hold
/// hundreds of thousands).
const MAX_LOGGED: usize = 16;

/// An object of a page, as object_store reads it (its other fields do not matter here).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
}

/// A folder of a page listed with a delimiter, as object_store reads it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonPrefixes {
    prefix: String,
}

/// `page` (a ListObjectsV2 answer) without its `<Contents>` and `<CommonPrefixes>` entries
/// whose name object_store's [`Path::parse`] refuses, logged at debug level (the first
/// [`MAX_LOGGED`] by name, escaped); the page as it is when it has none, or is not XML
/// (object_store then gives its own error).
pub(super) fn without_refused_names(page: Bytes) -> Bytes {
    let refused = match refused_entries(&page) {
        Some(refused) if !refused.is_empty() => refused,
        _ => return page,
    };
    let mut out = Vec::with_capacity(page.len());
    let mut at = 0;
    for entry in refused {
        out.extend_from_slice(&page[at..entry.start]);
        at = entry.end;
    }
    out.extend_from_slice(&page[at..]);
    Bytes::from(out)
}

/// Where the entries of `page` whose name object_store refuses are, in order: the entries are
/// the `<Contents>` and `<CommonPrefixes>` elements in the document's root, as object_store's
/// deserializer finds them (by local name). `None` if `page` is not well-formed XML, or
/// ends before its root does.
fn refused_entries(page: &[u8]) -> Option<Vec<Range<usize>>> {
    let mut reader = Reader::from_reader(page);
    // The XML declaration, which decides how an entry's text is read (XML 1.1 reads more
    // line breaks than 1.0): each entry is read after it, as object_store reads it.
    let mut declaration: &[u8] = b"";
    let mut depth = 0usize;
    let mut refused = Vec::new();
    let mut logged: Vec<(Kind, String)> = Vec::new();
    loop {
        let start = usize::try_from(reader.buffer_position()).ok()?;
        match reader.read_event().ok()? {
            Event::Decl(_) => {
                let end = usize::try_from(reader.buffer_position()).ok()?;
                declaration = page.get(start..end)?;
            }
            Event::Start(element) if depth == 1 => {
                let kind = Kind::of(element.local_name().as_ref());
                reader.read_to_end(element.name()).ok()?;
                let end = usize::try_from(reader.buffer_position()).ok()?;
                let Some(kind) = kind else { continue };
                let mut entry = declaration.to_vec();
                entry.extend_from_slice(page.get(start..end)?);
                if let Some(name) = kind.refused_name(&entry) {
                    if logged.len() < MAX_LOGGED {
                        logged.push((kind, name));
                    }
                    refused.push(start..end);
                }
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.checked_sub(1)?,
            // The root still open: cut short.
            Event::Eof if depth > 0 => return None,
            Event::Eof => break,
            _ => {}
        }
    }
    for (kind, name) in &logged {
        tracing::debug!(target: "cachette", name = %untrusted(name), kind = kind.what(), "skipping a listed name that object_store refuses");
    }
    if refused.len() > logged.len() {
        tracing::debug!(target: "cachette", more = refused.len() - logged.len(), "skipping more listed names that object_store refuses");
    }
    Some(refused)
}

/// The kinds of entries of a page that name something.
#[derive(Clone, Copy)]
enum Kind {
    Object,
    Folder,
}

impl Kind {
    fn of(local_name: &[u8]) -> Option<Kind> {
        match local_name {
            b"Contents" => Some(Kind::Object),
            b"CommonPrefixes" => Some(Kind::Folder),
            _ => None,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Folder => "folder",
        }
    }

    /// The name of `entry` (an element of this kind, after the page's XML declaration) read
    /// as object_store reads it, if object_store refuses it. An entry that does not read is
    /// kept: object_store fails on it as it would have.
    fn refused_name(self, entry: &[u8]) -> Option<String> {
        if let Some(name) = self.plain_name(entry) {
            return Path::parse(name).is_err().then(|| name.to_owned());
        }
        self.read_name(entry)
    }

    /// The name of `entry` when it is written plainly, without the deserializer: one element
    /// of its name's tag, whose text is printable ASCII without a space, an entity or markup,
    /// which every reader of the page reads as it is written (the names of this store's own
    /// items are written so). `None` for any other entry.
    fn plain_name(self, entry: &[u8]) -> Option<&str> {
        let tag: &[u8] = match self {
            Kind::Object => b"<Key",
            Kind::Folder => b"<Prefix",
        };
        let find = |within: &[u8], what: &[u8]| within.windows(what.len()).position(|w| w == what);
        let at = find(entry, tag)?;
        let start = at + tag.len();
        // `<Key>` itself, no other element whose tag begins so, and no second one.
        if entry.get(start) != Some(&b'>') || find(&entry[start..], tag).is_some() {
            return None;
        }
        let text = &entry[start + 1..];
        let end = text.iter().position(|&b| b == b'<')?;
        // The text ends where the element does (not at markup inside it).
        let closed = text[end..].starts_with(b"</")
            && text[end + 2..].starts_with(&tag[1..])
            && text.get(end + 1 + tag.len()) == Some(&b'>');
        if !closed {
            return None;
        }
        let text = &text[..end];
        let plain = |b: &u8| (0x21..=0x7e).contains(b) && *b != b'&';
        if text.is_empty() || !text.iter().all(plain) {
            return None;
        }
        std::str::from_utf8(text).ok()
    }

    /// The name of `entry` read by the deserializer object_store uses, if object_store
    /// refuses it. An entry that does not read is kept: object_store fails on it as it would
    /// have.
    fn read_name(self, entry: &[u8]) -> Option<String> {
        let entry = std::str::from_utf8(entry).ok()?;
        let name = match self {
            Kind::Object => quick_xml::de::from_str::<Contents>(entry).ok()?.key,
            Kind::Folder => {
                quick_xml::de::from_str::<CommonPrefixes>(entry)
                    .ok()?
                    .prefix
            }
        };
        Path::parse(&name).is_err().then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
        <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Name>bucket</Name><Prefix>p/</Prefix><KeyCount>5</KeyCount><MaxKeys>1000</MaxKeys>\
        <IsTruncated>true</IsTruncated>";
    const TAIL: &str = "<NextContinuationToken>t&amp;1</NextContinuationToken></ListBucketResult>";

    fn object(key: &str) -> String {
        format!(
            "<Contents><Key>{key}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>\
             <ETag>&quot;e&quot;</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass>\
             </Contents>"
        )
    }

    fn folder(prefix: &str) -> String {
        format!("<CommonPrefixes><Prefix>{prefix}</Prefix></CommonPrefixes>")
    }

    fn rewrite(page: &str) -> String {
        let out = without_refused_names(Bytes::copy_from_slice(page.as_bytes()));
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn refused_names_are_dropped_and_the_rest_kept_as_it_was() {
        let good = [
            object("p/cachette/f-0123456789abcdef/00ff"),
            // Escaped, and valid once unescaped: kept as written.
            object("p/cachette/R&amp;D/&lt;x&gt;&#233;"),
            object("p/cachette/a.b/..c/ d "),
            folder("p/cachette/"),
        ];
        let bad = [
            object("p/cachette/f-0123456789abcdef/a//b"),
            object("p/cachette/./b"),
            object("p/cachette/../b"),
            object("p/cachette/a&#1;b"),
            object("p/cachette/a\tb"),
            // `.` once unescaped.
            object("p/cachette/&#46;/b"),
            object("p/cachette/<![CDATA[..]]>/b"),
            folder("p/.cachette-access/log//"),
            folder("p//"),
        ];
        let page = format!(
            "{HEAD}{}{}{}{}{}{}{}{}{}{}{}{}{}{TAIL}",
            bad[0],
            good[0],
            bad[1],
            bad[2],
            good[1],
            bad[3],
            bad[4],
            bad[5],
            good[2],
            bad[6],
            bad[7],
            good[3],
            bad[8]
        );
        let expected = format!("{HEAD}{}{}{}{}{TAIL}", good[0], good[1], good[2], good[3]);
        assert_eq!(rewrite(&page), expected);
        // What object_store then reads: the good names, unescaped.
        assert!(refused_entries(expected.as_bytes()).unwrap().is_empty());
    }

    /// A name read plainly is read as the deserializer reads it.
    #[test]
    fn plain_names_are_read_as_the_deserializer_reads_them() {
        let names = [
            "p/cachette/f-0123456789abcdef/00ff",
            "p/a//b",
            "/p/a",
            "p/a/",
            "p/./b",
            "p/../b",
            "p/..c/b.",
            ".",
            "..",
            "//",
            "p/a b",
            "p/R&amp;D",
            "p/&#46;/b",
            "p/a\u{85}b",
            "p/<![CDATA[..]]>/b",
            "",
        ];
        let mut plain = 0;
        for name in names {
            for (kind, entry) in [(Kind::Object, object(name)), (Kind::Folder, folder(name))] {
                let entry = format!("<?xml version=\"1.1\"?>{entry}");
                let read = kind.read_name(entry.as_bytes());
                if let Some(found) = kind.plain_name(entry.as_bytes()) {
                    plain += 1;
                    assert_eq!(found, name);
                    assert_eq!(Path::parse(found).is_err().then(|| found.to_owned()), read);
                }
                assert_eq!(kind.refused_name(entry.as_bytes()), read, "{name}");
            }
        }
        assert_eq!(plain, 2 * 10, "the plain names are read plainly");
        // Not plain: a second name, or a tag that only begins so.
        let two = "<Contents><Key>p/a</Key><Key>p/b</Key></Contents>";
        assert_eq!(Kind::Object.plain_name(two.as_bytes()), None);
        let other = "<Contents><KeyX>p/a</KeyX><Key>p//b</Key></Contents>";
        assert_eq!(Kind::Object.plain_name(other.as_bytes()), None);
    }

    #[test]
    fn a_page_with_no_refused_name_is_passed_on_as_it_is() {
        let page = format!("{HEAD}{}{}{TAIL}", object("p/a/b"), object("p/R&amp;D"));
        let bytes = Bytes::from(page);
        let out = without_refused_names(bytes.clone());
        assert_eq!(out, bytes);
        // The same buffer, not a copy.
        assert_eq!(out.as_ptr(), bytes.as_ptr());
    }

    #[test]
    fn a_page_that_is_not_xml_is_passed_on_as_it_is() {
        for page in [
            String::new(),
            "not xml".to_owned(),
            // Cut short, or with a mismatched end: the bad entry stays, object_store fails.
            format!("{HEAD}{}", object("p/a//b")),
            format!("{HEAD}{}</Other>", object("p/a//b")),
            format!("{HEAD}<Contents><Key>p/a//b</Key>"),
        ] {
            assert_eq!(rewrite(&page), page);
        }
    }

    #[test]
    fn only_entries_of_the_root_count() {
        // Nested deeper, or an entry without a name: object_store does not read it as a name.
        let page = format!(
            "{HEAD}<Other>{}</Other><Contents><Size>1</Size></Contents><Contents/>{TAIL}",
            object("p/a//b")
        );
        assert_eq!(rewrite(&page), page);
    }

    #[test]
    fn names_are_read_by_the_page_s_xml_version() {
        // XML 1.1 reads U+0085 as a line break (a control character), 1.0 as itself.
        let key = object("p/a\u{85}b");
        let v10 = format!("<?xml version=\"1.0\"?><ListBucketResult>{key}</ListBucketResult>");
        assert_eq!(rewrite(&v10), v10);
        let v11 = format!("<?xml version=\"1.1\"?><ListBucketResult>{key}</ListBucketResult>");
        assert_eq!(
            rewrite(&v11),
            "<?xml version=\"1.1\"?><ListBucketResult></ListBucketResult>"
        );
    }
}
