//! The entry format: one stored item per cached call.
//!
//! ```text
//! offset size
//!  0      8   magic  b"CACHETTE"
//!  8      2   format version (u16, little-endian), currently 1
//! 10      2   flags (u16); unknown bits are refused
//! 12      4   header length H (u32), at most 16 MiB ([`MAX_HEADER_LEN`])
//! 16      8   payload length P (u64)
//! 24      8   header checksum: xxh3-64 of bytes 0..24, 40..48 and the header
//! 32      8   payload checksum: xxh3-64 of the payload
//! 40      4   payload offset O (u32): the first multiple of 64 from 48 + H (from 48 + H + 32
//!             in a signed entry)
//! 44      4   reserved, zero
//! 48      H   header: the metadata, MessagePack
//! 48+H        zero padding up to O (up to O - 32 in a signed entry)
//! O-32   32   in a signed entry only: its signature (see below)
//!  O      P   payload: the output, encoded by the codec named in the metadata
//! ```
//!
//! The total length must be exactly `O + P`. A truncated, corrupted or foreign item is detected
//! and reported as such; nothing is decoded from it. The payload starts at an aligned offset so
//! that arrays inside it can be memory-mapped in place. Reading the metadata only needs the first
//! `O` bytes (one ranged read on object stores).
//!
//! Without flags, the payload is the codec's encoding of the output. Two flags change that:
//!
//! - [`FLAG_ARRAYS`]: the output holds [`Array`](crate::Array)s, whose numbers are stored out of
//!   line, raw, where they can be mapped:
//!
//!   ```text
//!   offset size
//!    0      8    structure length S (u64)
//!    8      8    array count N (u64)
//!   16      8    block count M (u64)
//!   24      S    structure: the output, encoded by the codec, arrays replaced by descriptors
//!           16N  per array: its offset from the payload start (a multiple of 64), its length
//!           8M   xxh3-64 of each 16 MiB block of each array (with its zero padding), in order
//!                zero padding up to a multiple of 64: the head of the payload ends here
//!                each array's bytes (little-endian numbers), zero-padded to a multiple of 64
//!   ```
//!
//!   The payload checksum of the prefix covers the head only; each array is covered by its
//!   block checksums. A full check ([`Entry::parse`]) verifies them all; a memory-mapped load
//!   ([`Entry::parse_head`]) verifies the head and leaves the arrays' pages untouched.
//! - [`FLAG_ZSTD`]: the payload is a zstd frame holding the payload that the other flags
//!   describe, and the payload checksum covers the compressed bytes. The frame's window is at
//!   most 2 MiB ([`ZSTD_WINDOW_LOG_MAX`]): a decoder allocates the window a frame header
//!   announces before it decodes anything, so a reader refuses larger ones rather than let a
//!   few bytes make it allocate up to 128 MiB. The frame header announces the decompressed
//!   size; a reader refuses frames that do not, that announce more than its cap
//!   ([`DEFAULT_MAX_DECOMPRESSED`] unless configured), or that hold another size.
//! - [`FLAG_SIGNED`]: the 32 bytes before the payload hold an HMAC-SHA256, with the key of
//!   the memory that wrote it, of every other byte of the entry (see
//!   [`SigningKey`]). Readers without a key ignore it; readers with one
//!   refuse entries that are not signed with it ([`Entry::verify_signature`]).

mod encode;
mod parse;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

use crate::error::EntryError;

pub(crate) use encode::encode_within;
pub use encode::{encode_parts, encode_signed};
pub(crate) use parse::Parsed;
pub use parse::{Entry, Payload, Prefix, parse_metadata};

/// The first bytes of every entry.
pub const MAGIC: &[u8; 8] = b"CACHETTE";
/// The entry format version this library writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The size of the fixed prefix before the header.
pub const PREFIX_LEN: usize = 48;
/// Alignment of the payload within the entry.
pub const PAYLOAD_ALIGN: usize = 64;
/// A read of this many bytes holds the metadata of nearly every entry.
pub const HEADER_READ_HINT: u64 = 4096;
/// The longest metadata header, 16 MiB: writers refuse to write a longer one, and readers
/// refuse an entry that announces one before they read it (a metadata-only read reads the
/// first `O` bytes, and `H` is the store's word). An honest header is a few KiB: the readable
/// arguments are cut to 200 characters each.
pub const MAX_HEADER_LEN: u32 = 16 << 20;

/// Flag: the output's arrays are stored out of line (see the module documentation).
pub const FLAG_ARRAYS: u16 = 1;
/// Flag: the payload is compressed with zstd.
pub const FLAG_ZSTD: u16 = 2;
/// Flag: the entry is signed (see the module documentation).
pub const FLAG_SIGNED: u16 = 4;
const KNOWN_FLAGS: u16 = FLAG_ARRAYS | FLAG_ZSTD | FLAG_SIGNED;
/// Arrays are checksummed in blocks of this many bytes.
pub const ARRAY_BLOCK: usize = 16 << 20;
/// The base-2 logarithm of the largest zstd window (back-reference distance) of a compressed
/// payload: 2 MiB, the window of zstd's default level for large inputs. Writers compress with
/// it at most, readers refuse frames that announce a larger one.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 21;
/// The most a compressed payload may decompress to unless a memory says otherwise
/// (`max_decompressed_size`): 4 GiB.
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 4 << 30;
const HEAD_FIXED: usize = 24;
static ZEROS: [u8; PAYLOAD_ALIGN] = [0; PAYLOAD_ALIGN];

/// The metadata of a cached call, stored in its entry.
///
/// Written in the order of its fields: those a load checks (`func`, `args_id`, `name`, `code`,
/// `version`), `duration` and `codec` come first, so that a load reads them and stops there
/// (entries of earlier versions have `codec` last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The id of the function (its folder in the store).
    pub func: String,
    /// The hash of the arguments.
    pub args_id: String,
    /// The exact name of the function whose call this is (empty in entries of old versions).
    #[serde(default)]
    pub name: String,
    /// The hash of the function's code when its results were stored, if known.
    #[serde(default)]
    pub code: Option<String>,
    /// The function's version when its results were stored, if it has one.
    #[serde(default)]
    pub version: Option<String>,
    /// How long the call took, in seconds.
    pub duration: f64,
    /// The id of the output codec.
    pub codec: String,
    /// When the call was made.
    #[serde(serialize_with = "serialize_time")]
    pub time: DateTime<Utc>,
    /// A readable form of each input argument, by name, in order. Ignored arguments are left out.
    pub input_args: Vec<(String, String)>,
    /// The id of the argument hasher.
    pub hasher: String,
}

/// A [`Metadata`] whose text is borrowed: it serializes to the same bytes (the same fields,
/// in the same order), so that a miss writes its entry's metadata without copying the
/// function's identity, the key's name and the ids into strings of their own.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct MetadataRef<'a> {
    pub(crate) func: &'a str,
    pub(crate) args_id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) code: Option<&'a str>,
    pub(crate) version: Option<&'a str>,
    pub(crate) duration: f64,
    pub(crate) codec: &'a str,
    #[serde(serialize_with = "serialize_time")]
    pub(crate) time: DateTime<Utc>,
    pub(crate) input_args: &'a [(String, String)],
    pub(crate) hasher: &'a str,
}

impl MetadataRef<'_> {
    /// Appends the metadata's encoding to `out`: the bytes of `rmp_serde`'s `write_named` (a
    /// map of the fields by name, in their order), written with `rmp`'s functions, which
    /// spares every miss the serializer's machinery. A time `rmp_serde` would write otherwise
    /// (a year outside 0–9999) goes through `rmp_serde`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let mut text = [0u8; TIME_TEXT_LEN];
        let written = match time_text(&self.time, &mut text) {
            Some(time) => self.write_fields(time, out),
            None => return rmp_serde::encode::write_named(out, self).map_err(|e| e.to_string()),
        };
        written.map_err(|e| e.to_string())
    }

    fn write_fields(
        &self,
        time: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), rmp::encode::ValueWriteError> {
        use rmp::encode::{
            ValueWriteError, write_array_len, write_f64, write_map_len, write_nil, write_str,
        };
        let text = |out: &mut Vec<u8>, name: &str, value: Option<&str>| {
            write_str(out, name)?;
            match value {
                Some(value) => write_str(out, value),
                None => write_nil(out).map_err(ValueWriteError::InvalidMarkerWrite),
            }
        };
        // A count that does not fit is refused, as `rmp_serde` refuses it.
        let count = |n: usize| {
            u32::try_from(n).map_err(|_| {
                ValueWriteError::InvalidDataWrite(std::io::Error::other("too many arguments"))
            })
        };
        write_map_len(out, 10)?;
        text(out, "func", Some(self.func))?;
        text(out, "args_id", Some(self.args_id))?;
        text(out, "name", Some(self.name))?;
        text(out, "code", self.code)?;
        text(out, "version", self.version)?;
        write_str(out, "duration")?;
        write_f64(out, self.duration)?;
        text(out, "codec", Some(self.codec))?;
        text(out, "time", Some(time))?;
        write_str(out, "input_args")?;
        write_array_len(out, count(self.input_args.len())?)?;
        for (name, value) in self.input_args {
            write_array_len(out, 2)?;
            write_str(out, name)?;
            write_str(out, value)?;
        }
        text(out, "hasher", Some(self.hasher))
    }

    /// The metadata, owned.
    pub(crate) fn to_owned(self) -> Metadata {
        Metadata {
            func: self.func.to_owned(),
            args_id: self.args_id.to_owned(),
            name: self.name.to_owned(),
            code: self.code.map(str::to_owned),
            version: self.version.map(str::to_owned),
            duration: self.duration,
            codec: self.codec.to_owned(),
            time: self.time,
            input_args: self.input_args.to_vec(),
            hasher: self.hasher.to_owned(),
        }
    }
}

impl Metadata {
    /// This metadata, borrowed.
    pub(crate) fn borrowed(&self) -> MetadataRef<'_> {
        MetadataRef {
            func: &self.func,
            args_id: &self.args_id,
            name: &self.name,
            code: self.code.as_deref(),
            version: self.version.as_deref(),
            duration: self.duration,
            codec: &self.codec,
            time: self.time,
            input_args: &self.input_args,
            hasher: &self.hasher,
        }
    }
}

/// Serializes `time` as chrono does (RFC 3339 in UTC with `Z`, and the fraction of a second
/// in 0, 3, 6 or 9 digits, as `SecondsFormat::AutoSi`), written on the stack: chrono's own
/// goes through a `String` grown three times. Years outside 0–9999 take chrono's way.
fn serialize_time<S: serde::Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; TIME_TEXT_LEN];
    match time_text(time, &mut text) {
        Some(text) => serializer.serialize_str(text),
        None => time.serialize(serializer),
    }
}

/// The longest text of [`time_text`].
const TIME_TEXT_LEN: usize = 30;

/// `time` as chrono serializes it (see [`serialize_time`]), written in `text`; `None` for a
/// year outside 0–9999, which chrono writes otherwise.
fn time_text<'t>(time: &DateTime<Utc>, text: &'t mut [u8; TIME_TEXT_LEN]) -> Option<&'t str> {
    use chrono::{Datelike, Timelike};
    // The fields read from the naive time once: each accessor of a `DateTime` applies its
    // offset again.
    let naive = time.naive_utc();
    let (date, clock) = (naive.date(), naive.time());
    let year = u32::try_from(date.year())
        .ok()
        .filter(|year| *year <= 9999)?;
    let (mut second, mut nano) = (clock.second(), clock.nanosecond());
    // A leap second, as chrono writes it.
    if nano >= 1_000_000_000 {
        second += 1;
        nano -= 1_000_000_000;
    }
    // Two decimal digits of a value below 100, from `at`.
    let mut two = |at: usize, value: u32| {
        text[at] = b'0' + (value / 10 % 10) as u8;
        text[at + 1] = b'0' + (value % 10) as u8;
    };
    two(0, year / 100);
    two(2, year % 100);
    two(5, date.month());
    two(8, date.day());
    two(11, clock.hour());
    two(14, clock.minute());
    two(17, second);
    let (mut fraction, digits) = if nano == 0 {
        (0, 0)
    } else if nano % 1_000_000 == 0 {
        (nano / 1_000_000, 3)
    } else if nano % 1_000 == 0 {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    for digit in text[20..20 + digits].iter_mut().rev() {
        *digit = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    text[4] = b'-';
    text[7] = b'-';
    text[10] = b'T';
    text[13] = b':';
    text[16] = b':';
    let mut len = 19;
    if digits > 0 {
        text[19] = b'.';
        len = 20 + digits;
    }
    text[len] = b'Z';
    std::str::from_utf8(&text[..=len]).ok()
}

/// The code an entry must have been written by: the exact name, code hash and version of a
/// function. An entry of other code is a miss for it, whatever the function's folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeIdentity<'a> {
    /// The function's exact name.
    pub name: &'a str,
    /// The hash of its code, if known.
    pub code: Option<&'a str>,
    /// Its version, if it has one.
    pub version: Option<&'a str>,
}

/// What an entry must answer for: the call (the function's folder and the arguments' hash)
/// and, when the reader knows it, the code that computed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The function's folder.
    pub func: &'a str,
    /// The arguments' hash.
    pub args_id: &'a str,
    /// The code, when the reader knows which code it runs.
    pub code: Option<CodeIdentity<'a>>,
    /// The id of the codec that will decode the output, when it will be decoded: an output
    /// written with another codec may decode into another value.
    pub codec: Option<&'a str>,
}

/// The fields of a header that say what an entry answers for, decoded without allocating.
struct Answers<'a> {
    func: &'a str,
    args_id: &'a str,
    name: &'a str,
    code: Option<&'a str>,
    version: Option<&'a str>,
    /// How long the call took, in seconds (a value of the store: see [`Answers::duration`]).
    duration: f64,
    /// The id of the codec of the output (`None` when the header has none).
    codec: Option<&'a str>,
}

/// The keys of [`Answers`], in the order [`Metadata`] writes them.
const ANSWER_KEYS: [&str; 6] = ["func", "args_id", "name", "code", "version", "duration"];

/// The six leading fields of a header as [`Metadata`] writes them, as bytes: read with
/// MessagePack's primitives, without decoding the rest of the header (the arguments' readable
/// forms, the time), nor checking that the texts are UTF-8 (see [`Leading::answers`]).
struct Leading<'a> {
    func: &'a [u8],
    args_id: &'a [u8],
    name: &'a [u8],
    code: Option<&'a [u8]>,
    version: Option<&'a [u8]>,
    duration: f64,
    /// The codec, when asked for.
    codec: Option<&'a [u8]>,
}

impl<'a> Leading<'a> {
    /// The leading fields of a header that begins with the six keys of an answer, in the order
    /// [`Metadata`] writes them; `None` for any other header (of an older version, or not
    /// written by this library), which [`from_header`] then decodes whole. The rest of the
    /// header is covered by its checksum and decoded by whoever reads the whole metadata, who
    /// refuses a key seen twice.
    /// With `codec`, the codec's id is read too: next, or in entries of earlier versions past
    /// the time, the arguments and the hasher.
    fn parse(header: &'a [u8], codec: bool) -> Option<Leading<'a>> {
        /// Takes the key `want` (as its MessagePack bytes: a fixstr, which is how every writer
        /// of this library spells a short key; another spelling makes the header decoded whole).
        fn key(rest: &mut &[u8], want: &[u8]) -> Option<()> {
            *rest = rest.strip_prefix(want)?;
            Some(())
        }
        /// The length of the MessagePack string at the start of `rest` (any of its four
        /// forms), and what follows its marker.
        fn str_len(rest: &[u8]) -> Option<(usize, &[u8])> {
            let (&marker, after) = rest.split_first()?;
            match marker {
                0xa0..=0xbf => Some((usize::from(marker & 0x1f), after)),
                0xd9 => {
                    let (&len, after) = after.split_first()?;
                    Some((usize::from(len), after))
                }
                0xda => {
                    let (len, after) = after.split_first_chunk::<2>()?;
                    Some((usize::from(u16::from_be_bytes(*len)), after))
                }
                0xdb => {
                    let (len, after) = after.split_first_chunk::<4>()?;
                    Some((usize::try_from(u32::from_be_bytes(*len)).ok()?, after))
                }
                _ => None,
            }
        }
        fn text<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
            let (len, after) = str_len(rest)?;
            let (value, after) = after.split_at_checked(len)?;
            *rest = after;
            Some(value)
        }
        fn optional<'a>(rest: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
            if let Some((&NIL, after)) = rest.split_first() {
                *rest = after;
                return Some(None);
            }
            text(rest).map(Some)
        }
        const NIL: u8 = 0xc0;
        const F64: u8 = 0xcb;
        let mut rest = header;
        let len = rmp::decode::read_map_len(&mut rest).ok()?;
        if (len as usize) < ANSWER_KEYS.len() {
            return None;
        }
        key(&mut rest, b"\xa4func")?;
        let func = text(&mut rest)?;
        key(&mut rest, b"\xa7args_id")?;
        let args_id = text(&mut rest)?;
        key(&mut rest, b"\xa4name")?;
        let name = text(&mut rest)?;
        key(&mut rest, b"\xa4code")?;
        let code = optional(&mut rest)?;
        key(&mut rest, b"\xa7version")?;
        let version = optional(&mut rest)?;
        key(&mut rest, b"\xa8duration")?;
        let (&F64, after) = rest.split_first()? else {
            return None;
        };
        let (duration, after) = after.split_first_chunk::<8>()?;
        rest = after;
        let mut leading = Leading {
            func,
            args_id,
            name,
            code,
            version,
            duration: f64::from_be_bytes(*duration),
            codec: None,
        };
        if !codec {
            return Some(leading);
        }
        // The codec next; in entries of earlier versions, last: after the time, the
        // arguments' readable forms (pairs of texts, each taking bytes of the header: as many
        // as it holds, at most) and the hasher, skipped.
        if key(&mut rest, b"\xa5codec").is_none() {
            key(&mut rest, b"\xa4time")?;
            text(&mut rest)?;
            key(&mut rest, b"\xaainput_args")?;
            for _ in 0..rmp::decode::read_array_len(&mut rest).ok()? {
                if rmp::decode::read_array_len(&mut rest).ok()? != 2 {
                    return None;
                }
                text(&mut rest)?;
                text(&mut rest)?;
            }
            key(&mut rest, b"\xa6hasher")?;
            text(&mut rest)?;
            key(&mut rest, b"\xa5codec")?;
        }
        leading.codec = Some(text(&mut rest)?);
        Some(leading)
    }

    /// Whether the fields are, byte for byte, those `expected` asks for: then they are its
    /// texts, UTF-8 included, and the entry answers for it (the usual case of a load, checked
    /// without a UTF-8 pass).
    fn matches(&self, expected: &Expected<'_>) -> bool {
        let same =
            |stored: Option<&[u8]>, wanted: Option<&str>| stored == wanted.map(str::as_bytes);
        self.func == expected.func.as_bytes()
            && self.args_id == expected.args_id.as_bytes()
            && expected
                .codec
                .is_none_or(|codec| self.codec == Some(codec.as_bytes()))
            && expected.code.as_ref().is_none_or(|code| {
                self.name == code.name.as_bytes()
                    && same(self.code, code.code)
                    && same(self.version, code.version)
            })
    }

    /// The fields as texts; `None` if one is not UTF-8.
    fn answers(&self) -> Option<Answers<'a>> {
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).ok();
        let optional = |bytes: Option<&'a [u8]>| match bytes {
            Some(bytes) => text(bytes).map(Some),
            None => Some(None),
        };
        Some(Answers {
            func: text(self.func)?,
            args_id: text(self.args_id)?,
            name: text(self.name)?,
            code: optional(self.code)?,
            version: optional(self.version)?,
            duration: self.duration,
            codec: optional(self.codec)?,
        })
    }
}

impl<'de> Deserialize<'de> for Answers<'de> {
    /// Reads the six keys of an answer from the header's map, whatever their order, and skips
    /// the others. A key seen twice is an error, as for [`Metadata`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};

        struct AnswersVisitor;

        impl<'de> Visitor<'de> for AnswersVisitor {
            type Value = Answers<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the metadata map of an entry")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Answers<'de>, A::Error> {
                let mut func: Option<&'de str> = None;
                let mut args_id: Option<&'de str> = None;
                let mut name: Option<&'de str> = None;
                let mut code: Option<Option<&'de str>> = None;
                let mut version: Option<Option<&'de str>> = None;
                let mut duration: Option<f64> = None;
                let mut codec: Option<&'de str> = None;
                while let Some(key) = map.next_key::<&'de str>()? {
                    macro_rules! once {
                        ($slot:ident) => {{
                            if $slot.is_some() {
                                return Err(A::Error::duplicate_field(stringify!($slot)));
                            }
                            $slot = Some(map.next_value()?);
                        }};
                    }
                    match key {
                        "func" => once!(func),
                        "args_id" => once!(args_id),
                        "name" => once!(name),
                        "code" => once!(code),
                        "version" => once!(version),
                        "duration" => once!(duration),
                        "codec" => once!(codec),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Answers {
                    func: func.ok_or_else(|| A::Error::missing_field("func"))?,
                    args_id: args_id.ok_or_else(|| A::Error::missing_field("args_id"))?,
                    name: name.unwrap_or(""),
                    code: code.flatten(),
                    version: version.flatten(),
                    duration: duration.unwrap_or(0.0),
                    codec,
                })
            }
        }

        d.deserialize_map(AnswersVisitor)
    }
}

impl Answers<'_> {
    /// The duration of the call, when it is one (finite, zero or more); zero otherwise.
    fn duration(&self) -> f64 {
        call_duration(self.duration)
    }

    fn check(&self, expected: &Expected<'_>) -> Result<(), EntryError> {
        if self.func != expected.func || self.args_id != expected.args_id {
            return Err(EntryError::Corrupted(format!(
                "written for {}/{}, found under {}/{}",
                self.func, self.args_id, expected.func, expected.args_id
            )));
        }
        if let Some(codec) = expected.codec
            && self.codec != Some(codec)
        {
            return Err(EntryError::Decode(format!(
                "written with the codec {}, this memory's is {codec}",
                self.codec.unwrap_or("-")
            )));
        }
        if let Some(code) = &expected.code
            && (self.name != code.name || self.code != code.code || self.version != code.version)
        {
            let show = |o: Option<&str>| o.unwrap_or("-").to_owned();
            return Err(EntryError::OtherCode(format!(
                "written by '{}' (code {}, version {}), read by '{}' (code {}, version {})",
                self.name,
                show(self.code),
                show(self.version),
                code.name,
                show(code.code),
                show(code.version)
            )));
        }
        Ok(())
    }
}

/// Checks that the metadata header `header` (MessagePack) answers for `expected`; gives the
/// duration of the call it records (zero when it records none that makes sense).
fn check_answers(header: &[u8], expected: &Expected<'_>) -> Result<f64, EntryError> {
    let leading = Leading::parse(header, expected.codec.is_some());
    let answers = match &leading {
        Some(leading) if leading.matches(expected) => {
            return Ok(call_duration(leading.duration));
        }
        Some(leading) => leading.answers(),
        None => None,
    };
    let answers = match answers {
        Some(answers) => answers,
        None => from_header::<Answers<'_>>(header)?,
    };
    answers.check(expected)?;
    Ok(answers.duration())
}

/// A recorded duration when it is one (finite, zero or more); zero otherwise.
fn call_duration(secs: f64) -> f64 {
    if secs.is_finite() && secs >= 0.0 {
        secs
    } else {
        0.0
    }
}

/// The deepest nesting a metadata header may have; a header is a map of scalars and of
/// lists of pairs, three deep.
const METADATA_MAX_DEPTH: usize = 8;

/// Decodes a metadata header with its nesting bounded ([`METADATA_MAX_DEPTH`]).
fn from_header<'de, T: Deserialize<'de>>(header: &'de [u8]) -> Result<T, EntryError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(header);
    de.set_max_depth(METADATA_MAX_DEPTH);
    T::deserialize(&mut de).map_err(|e| EntryError::Decode(format!("metadata: {e}")))
}

impl Metadata {
    /// Records the code that computed the call (see [`CodeIdentity`]).
    pub fn with_code(mut self, code: CodeIdentity<'_>) -> Self {
        self.name = code.name.to_owned();
        self.code = code.code.map(str::to_owned);
        self.version = code.version.map(str::to_owned);
        self
    }

    /// Checks that this metadata answers for `expected`: the call, and the code when given.
    pub fn check(&self, expected: &Expected<'_>) -> Result<(), EntryError> {
        let meta = self.borrowed();
        Answers {
            func: meta.func,
            args_id: meta.args_id,
            name: meta.name,
            code: meta.code,
            version: meta.version,
            duration: meta.duration,
            codec: Some(meta.codec),
        }
        .check(expected)
    }

    /// A new metadata record.
    pub fn new(
        duration: f64,
        time: DateTime<Utc>,
        input_args: Vec<(String, String)>,
        func: impl Into<String>,
        args_id: impl Into<String>,
        hasher: impl Into<String>,
        codec: impl Into<String>,
    ) -> Self {
        Metadata {
            duration,
            time,
            input_args,
            func: func.into(),
            args_id: args_id.into(),
            hasher: hasher.into(),
            codec: codec.into(),
            name: String::new(),
            code: None,
            version: None,
        }
    }

    /// The readable form of the argument `name`, if recorded.
    pub fn input_arg(&self, name: &str) -> Option<&str> {
        self.input_args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How long the call took.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.duration).unwrap_or_default()
    }
}

fn header_checksum(prefix: &[u8], header: &[u8]) -> u64 {
    // The usual header is a few hundred bytes: hashed in one shot from a copy on the stack,
    // which gives the same value as the streaming hasher and skips its set-up.
    const ONE_SHOT: usize = 512;
    if header.len() <= ONE_SHOT - 32 {
        let mut buf = [0u8; ONE_SHOT];
        buf[..24].copy_from_slice(&prefix[0..24]);
        buf[24..32].copy_from_slice(&prefix[40..48]);
        buf[32..32 + header.len()].copy_from_slice(header);
        return xxhash_rust::xxh3::xxh3_64(&buf[..32 + header.len()]);
    }
    let mut h = Xxh3Default::new();
    h.update(&prefix[0..24]);
    h.update(&prefix[40..48]);
    h.update(header);
    h.digest()
}

/// Maps `f` over `items`, on up to as many threads as there are cores when there are several
/// items. A chunk the system gives no thread for is mapped on this one.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    let map = move |ins: &[T]| ins.iter().map(f).collect::<Vec<R>>();
    std::thread::scope(|scope| {
        let spawned: Vec<_> = items
            .chunks(chunk)
            .map(|ins| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || map(ins))
                    .map_err(|_| ins)
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for chunk in spawned {
            match chunk {
                Ok(thread) => match thread.join() {
                    Ok(mapped) => out.extend(mapped),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(ins) => out.extend(map(ins)),
            }
        }
        out
    })
}

fn decode_metadata(header: &[u8]) -> Result<Metadata, EntryError> {
    from_header(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A miss writes the borrowed metadata with `rmp`'s functions: its bytes are those
    /// `rmp_serde` gives the owned one, whatever fields are set and however long, and it reads
    /// back as the owned one.
    #[test]
    fn borrowed_metadata_is_written_as_the_owned_one() {
        let time = "2026-12-06T09:41:07.123456Z"
            .parse::<DateTime<Utc>>()
            .unwrap();
        let args = vec![
            ("x".to_owned(), "1".to_owned()),
            ("name".to_owned(), "'ab'".to_owned()),
        ];
        let bare = Metadata::new(0.25, time, Vec::new(), "m/f", "0f", "xxh3-128", "msgpack");
        let full = Metadata::new(1.5, time, args, "m/f", "0f", "xxh3-128", "msgpack").with_code(
            CodeIdentity {
                name: "m::f",
                code: Some("c0de"),
                version: Some("2"),
            },
        );
        // Strings of each of msgpack's lengths, many arguments, each kind of time.
        let long = |n: usize| "f".repeat(n);
        let many = (0..70_000)
            .map(|i| (i.to_string(), long(i % 40)))
            .collect::<Vec<_>>();
        let mut wide = Metadata::new(
            f64::MAX,
            "2026-12-06T09:41:07Z".parse().unwrap(),
            many,
            long(40),
            long(300),
            long(70_000),
            long(31),
        );
        wide.name = long(32);
        wide.code = Some(long(255));
        wide.version = Some(long(256));
        let mut times = ["2026-12-06T09:41:07.5Z", "0001-01-01T00:00:00.000000001Z"]
            .map(|t| Metadata::new(0.0, t.parse().unwrap(), Vec::new(), "m/f", "0f", "", ""))
            .to_vec();
        // A year chrono writes with a sign: the encoder takes `rmp_serde`'s way.
        let far = DateTime::<Utc>::MAX_UTC;
        times.push(Metadata::new(-0.0, far, Vec::new(), "m/f", "0f", "h", "c"));
        for meta in [bare, full, wide].into_iter().chain(times) {
            let owned = rmp_serde::encode::to_vec_named(&meta).unwrap();
            let borrowed = rmp_serde::encode::to_vec_named(&meta.borrowed()).unwrap();
            assert_eq!(owned, borrowed);
            let mut written = Vec::new();
            meta.borrowed().write_to(&mut written).unwrap();
            assert!(owned == written, "{} differs", meta.time);
            assert_eq!(meta.borrowed().to_owned(), meta);
            let read: Metadata = rmp_serde::from_slice(&written).unwrap();
            assert_eq!(read, meta);
        }
    }

    /// The mapped values come back in the order of the items, however they were shared out.
    #[test]
    fn parallel_map_keeps_the_order_of_the_items() {
        for n in [0, 1, 2, 3, 17, 1000] {
            let items: Vec<u64> = (0..n).collect();
            let mapped = parallel_map(&items, |i| i * 3);
            assert_eq!(
                mapped,
                items.iter().map(|i| i * 3).collect::<Vec<_>>(),
                "{n}"
            );
        }
    }

    /// Times are written exactly as chrono writes them, on the stack or not.
    #[test]
    fn times_are_written_as_chrono_writes_them() {
        use chrono::{NaiveDate, TimeZone};
        let mut times = Vec::new();
        for (y, mo, d) in [
            (0, 1, 1),
            (1970, 1, 1),
            (2026, 12, 3),
            (9999, 12, 31),
            (10000, 1, 1),
            (-1, 6, 15),
        ] {
            let date = NaiveDate::from_ymd_opt(y, mo, d).unwrap();
            for nano in [
                0,
                1,
                999,
                1_000,
                120_000,
                1_000_000,
                7_000_000,
                123_456_789,
                999_999_999,
                1_000_000_000,
                1_500_000_000,
                1_999_999_999,
            ] {
                let second = if nano >= 1_000_000_000 { 59 } else { 7 };
                let at = date.and_hms_nano_opt(23, 59, second, nano).unwrap();
                times.push(Utc.from_utc_datetime(&at));
            }
        }
        times.push(Utc::now());
        for time in times {
            let mut ours = Vec::new();
            serialize_time(&time, &mut rmp_serde::Serializer::new(&mut ours)).unwrap();
            assert_eq!(ours, rmp_serde::to_vec(&time).unwrap(), "{time:?}");
        }
    }

    #[test]
    fn the_header_checksum_is_the_same_in_one_shot_and_streamed() {
        let prefix: Vec<u8> = (0..PREFIX_LEN as u8).collect();
        for len in [0, 1, 100, 479, 480, 481, 512, 5000] {
            let header: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut h = Xxh3Default::new();
            h.update(&prefix[0..24]);
            h.update(&prefix[40..48]);
            h.update(&header);
            assert_eq!(header_checksum(&prefix, &header), h.digest(), "{len}");
        }
    }

    fn sample() -> (Metadata, Vec<u8>) {
        let meta = Metadata::new(
            0.5,
            Utc::now(),
            vec![("x".into(), "1".into())],
            "m.f",
            "00",
            "xxh3-128",
            "msgpack",
        );
        let bytes = encode_parts(&meta, b"payload!".to_vec(), Vec::new(), None).unwrap();
        (meta, bytes.to_bytes().to_vec())
    }

    fn with_arrays(zstd: Option<i32>) -> (Metadata, Vec<u8>) {
        let (meta, _) = sample();
        let arrays = vec![
            Bytes::from((0..100u8).collect::<Vec<_>>()),
            Bytes::new(),
            Bytes::from(vec![9u8; 64]),
        ];
        let blob = encode_parts(&meta, b"structure".to_vec(), arrays, zstd).unwrap();
        (meta, blob.to_bytes().to_vec())
    }

    #[test]
    fn arrays_are_aligned_and_located() {
        for zstd in [None, Some(3)] {
            let (meta, bytes) = with_arrays(zstd);
            let entry = Entry::parse(Bytes::from(bytes)).unwrap();
            assert_eq!(entry.metadata().unwrap(), meta);
            assert_eq!(entry.is_compressed(), zstd.is_some());
            let payload = entry.decode_payload().unwrap();
            assert_eq!(payload.structure(), b"structure");
            let arrays = payload.arrays();
            assert_eq!(arrays.len(), 3);
            assert_eq!(
                &payload.bytes()[arrays[0].clone()],
                &(0..100u8).collect::<Vec<_>>()[..]
            );
            assert!(arrays[1].is_empty());
            assert_eq!(&payload.bytes()[arrays[2].clone()], &[9u8; 64][..]);
            for a in arrays {
                assert_eq!(a.start % PAYLOAD_ALIGN, 0);
            }
        }
    }

    #[test]
    fn every_bit_flip_in_an_entry_with_arrays_is_detected() {
        for zstd in [None, Some(1)] {
            let (_, bytes) = with_arrays(zstd);
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x10;
                assert!(
                    Entry::parse(Bytes::from(b)).is_err(),
                    "flip at byte {i} went unnoticed"
                );
            }
            for len in 0..bytes.len() {
                assert!(Entry::parse(Bytes::copy_from_slice(&bytes[..len])).is_err());
            }
        }
    }

    #[test]
    fn head_only_parsing_skips_array_bytes() {
        let (_, mut bytes) = with_arrays(None);
        let prefix = Prefix::parse(&bytes, None).unwrap();
        let entry = Entry::parse_head(Bytes::from(bytes.clone())).unwrap();
        let first = entry.decode_payload().unwrap().arrays()[0].start;
        bytes[prefix.payload_offset as usize + first] ^= 1;
        assert!(Entry::parse_head(Bytes::from(bytes.clone())).is_ok());
        assert!(matches!(
            Entry::parse(Bytes::from(bytes)).unwrap_err(),
            EntryError::Corrupted(_)
        ));
    }

    #[test]
    fn large_arrays_are_checked_block_by_block() {
        let (meta, _) = sample();
        let big = Bytes::from(vec![3u8; ARRAY_BLOCK * 2 + 5]);
        let blob = encode_parts(&meta, Vec::new(), vec![big], None).unwrap();
        assert!(blob.parts().len() > 2, "the array is a segment of its own");
        let mut bytes = blob.to_bytes().to_vec();
        assert!(Entry::parse(Bytes::from(bytes.clone())).is_ok());
        let last = bytes.len() - 70;
        bytes[last] = 4;
        assert!(Entry::parse(Bytes::from(bytes)).is_err());
    }

    #[test]
    fn round_trip_and_alignment() {
        let (meta, bytes) = sample();
        let entry = Entry::parse(Bytes::from(bytes)).unwrap();
        assert_eq!(entry.metadata().unwrap(), meta);
        assert_eq!(&entry.payload()[..], b"payload!");
        assert_eq!(entry.prefix().payload_offset as usize % PAYLOAD_ALIGN, 0);
    }

    #[test]
    fn every_truncation_is_detected() {
        let (_, bytes) = sample();
        for len in 0..bytes.len() {
            let err = Entry::parse(Bytes::copy_from_slice(&bytes[..len])).unwrap_err();
            assert!(
                matches!(err, EntryError::Truncated(_) | EntryError::Foreign),
                "len {len}: {err:?}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let (_, bytes) = sample();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let res = Entry::parse(Bytes::from(b));
                assert!(res.is_err(), "flip at byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn foreign_and_trailing_garbage() {
        assert_eq!(
            Entry::parse(Bytes::from_static(
                b"\x89PNG\r\n\x1a\n-------------------------------------------------------"
            ))
            .unwrap_err(),
            EntryError::Foreign
        );
        let (_, mut bytes) = sample();
        bytes.push(0);
        assert!(matches!(
            Entry::parse(Bytes::from(bytes)).unwrap_err(),
            EntryError::Corrupted(_)
        ));
    }

    /// A prefix may announce metadata of up to 4 GiB, or a payload that far, consistent with
    /// the item's size (a sparse file costs nothing): refused before anything past it is read.
    #[test]
    fn metadata_longer_than_the_bound_is_refused_from_the_prefix() {
        let (_, bytes) = sample();
        for (header_len, refused) in [(MAX_HEADER_LEN, false), (MAX_HEADER_LEN + 1, true)] {
            let mut prefix = bytes[..PREFIX_LEN].to_vec();
            let offset = (PREFIX_LEN + header_len as usize).next_multiple_of(PAYLOAD_ALIGN);
            prefix[12..16].copy_from_slice(&header_len.to_le_bytes());
            prefix[40..44].copy_from_slice(&u32::try_from(offset).unwrap().to_le_bytes());
            let total = offset as u64 + 8;
            let parsed = Prefix::parse(&prefix, Some(total));
            assert_eq!(parsed.is_err(), refused, "{header_len}: {parsed:?}");
        }
        let (mut meta, _) = sample();
        meta.input_args = vec![("x".into(), "1".repeat(MAX_HEADER_LEN as usize))];
        let err = encode_parts(&meta, b"payload!".to_vec(), Vec::new(), None).unwrap_err();
        assert!(err.contains("metadata"), "{err}");
        // A short header with a payload placed 4 GiB further: the padding would be read too.
        let mut prefix = bytes[..PREFIX_LEN].to_vec();
        let far = u32::MAX - 63;
        prefix[40..44].copy_from_slice(&far.to_le_bytes());
        let parsed = Prefix::parse(&prefix, Some(u64::from(far) + 8));
        assert!(parsed.is_err(), "{parsed:?}");
    }

    #[test]
    fn huge_announced_lengths_do_not_allocate() {
        let (_, mut bytes) = sample();
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Entry::parse(Bytes::from(bytes)).is_err());
    }

    #[test]
    fn large_compressed_payloads_fit_the_window() {
        let (meta, _) = sample();
        // Larger than the window, compressible but not trivially, at a level whose own window
        // would be larger.
        let payload: Vec<u8> = (0..3u32 << 20).map(|i| (i / 7 % 251) as u8).collect();
        let blob = encode_parts(&meta, payload.clone(), Vec::new(), Some(9)).unwrap();
        let entry = Entry::parse(blob.to_bytes()).unwrap();
        assert_eq!(entry.decode_payload().unwrap().structure(), &payload[..]);
    }

    #[test]
    fn a_frame_announcing_a_large_window_is_refused_before_allocating_it() {
        let (meta, _) = sample();
        // A zstd frame header announcing a 128 MiB window and a 1 GiB content, then one RLE
        // block of 100 bytes.
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x88];
        frame.extend_from_slice(&(1u64 << 30).to_le_bytes());
        frame.extend_from_slice(&[0x23, 0x03, 0x00, 0x41]);
        let mut bytes = encode_parts(&meta, frame, Vec::new(), None)
            .unwrap()
            .to_bytes()
            .to_vec();
        bytes[10..12].copy_from_slice(&FLAG_ZSTD.to_le_bytes());
        let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let sum = header_checksum(
            &bytes[..PREFIX_LEN],
            &bytes[PREFIX_LEN..PREFIX_LEN + header_len],
        );
        bytes[24..32].copy_from_slice(&sum.to_le_bytes());
        let entry = Entry::parse(Bytes::from(bytes)).unwrap();
        let err = entry.decode_payload().unwrap_err();
        assert!(
            matches!(&err, EntryError::Corrupted(why) if why.contains("decompress")),
            "{err:?}"
        );
    }

    #[test]
    fn metadata_from_head_only() {
        let (meta, bytes) = sample();
        let prefix = Prefix::parse(&bytes, None).unwrap();
        let head = &bytes[..prefix.metadata_end() as usize];
        assert_eq!(
            parse_metadata(head, Some(bytes.len() as u64)).unwrap(),
            meta
        );
    }

    fn expected<'a>(meta: &'a Metadata) -> Expected<'a> {
        Expected {
            func: &meta.func,
            args_id: &meta.args_id,
            code: Some(CodeIdentity {
                name: &meta.name,
                code: meta.code.as_deref(),
                version: meta.version.as_deref(),
            }),
            codec: None,
        }
    }

    /// The sample's metadata, recording the code `m::f` of hash `c0de`.
    fn coded_sample() -> Metadata {
        sample().0.with_code(CodeIdentity {
            name: "m::f",
            code: Some("c0de"),
            version: None,
        })
    }

    /// A MessagePack map that announces 10 entries (a header's) and holds `pairs`, each a key
    /// and its value already encoded.
    fn map_of(pairs: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut map = vec![0x8a];
        for (key, value) in pairs {
            map.extend(rmp_serde::to_vec(key).unwrap());
            map.extend(value);
        }
        map
    }

    /// An entry written with another codec was decoded with this memory's: a codec that could
    /// read its bytes gave another value. A load that names its codec refuses it, on the fast
    /// path and on headers decoded whole, and takes one of its own.
    #[test]
    fn a_load_refuses_an_entry_of_another_codec() {
        let meta = coded_sample();
        let header = rmp_serde::to_vec_named(&meta).unwrap();
        let ours = Expected {
            codec: Some(&meta.codec),
            ..expected(&meta)
        };
        let theirs = Expected {
            codec: Some("another-codec"),
            ..expected(&meta)
        };
        assert!(Leading::parse(&header, true).is_some(), "the fast path");
        assert_eq!(check_answers(&header, &ours).unwrap(), 0.5);
        let err = check_answers(&header, &theirs).unwrap_err();
        assert!(err.to_string().contains("another-codec"), "{err}");
        assert!(meta.check(&theirs).is_err() && meta.check(&ours).is_ok());
        // Entries of the previous version have the codec last: read on the fast path too.
        #[derive(Serialize)]
        struct Previous<'a> {
            func: &'a str,
            args_id: &'a str,
            name: &'a str,
            code: Option<&'a str>,
            version: Option<&'a str>,
            duration: f64,
            time: &'a str,
            input_args: &'a [(String, String)],
            hasher: &'a str,
            codec: &'a str,
        }
        let previous = rmp_serde::to_vec_named(&Previous {
            func: &meta.func,
            args_id: &meta.args_id,
            name: &meta.name,
            code: meta.code.as_deref(),
            version: meta.version.as_deref(),
            duration: meta.duration,
            time: "2026-01-01T00:00:00Z",
            input_args: &meta.input_args,
            hasher: &meta.hasher,
            codec: &meta.codec,
        })
        .unwrap();
        assert!(Leading::parse(&previous, true).is_some(), "the fast path");
        assert_eq!(check_answers(&previous, &ours).unwrap(), 0.5);
        assert!(check_answers(&previous, &theirs).is_err());
        // A header decoded whole (its keys in another order) is checked the same way.
        let reordered = map_of(&[
            ("codec", rmp_serde::to_vec(&meta.codec).unwrap()),
            ("func", rmp_serde::to_vec(&meta.func).unwrap()),
            ("args_id", rmp_serde::to_vec(&meta.args_id).unwrap()),
            ("name", rmp_serde::to_vec(&meta.name).unwrap()),
            ("code", rmp_serde::to_vec(&meta.code).unwrap()),
            ("version", rmp_serde::to_vec(&meta.version).unwrap()),
            ("duration", rmp_serde::to_vec(&meta.duration).unwrap()),
            ("time", rmp_serde::to_vec(&"2026-01-01T00:00:00Z").unwrap()),
            ("input_args", rmp_serde::to_vec(&meta.input_args).unwrap()),
            ("hasher", rmp_serde::to_vec(&meta.hasher).unwrap()),
        ]);
        assert!(Leading::parse(&reordered, true).is_none());
        assert_eq!(check_answers(&reordered, &ours).unwrap(), 0.5);
        assert!(check_answers(&reordered, &theirs).is_err());
    }

    /// A load reads the six fields it checks and stops: what follows them in the header is
    /// never decoded (here, a map announcing more entries than the bytes hold).
    #[test]
    fn answers_stop_after_the_fields_a_load_checks() {
        let meta = coded_sample();
        let full = rmp_serde::to_vec_named(&meta).unwrap();
        assert_eq!(check_answers(&full, &expected(&meta)).unwrap(), 0.5);
        // The same six fields, in a map that announces 10 entries and holds 6.
        let cut = map_of(&[
            ("func", rmp_serde::to_vec(&meta.func).unwrap()),
            ("args_id", rmp_serde::to_vec(&meta.args_id).unwrap()),
            ("name", rmp_serde::to_vec(&meta.name).unwrap()),
            ("code", rmp_serde::to_vec(&meta.code).unwrap()),
            ("version", rmp_serde::to_vec(&meta.version).unwrap()),
            ("duration", rmp_serde::to_vec(&meta.duration).unwrap()),
        ]);
        assert_eq!(check_answers(&cut, &expected(&meta)).unwrap(), 0.5);
    }

    /// Every spelling MessagePack has for a string is read: values in any of the four forms
    /// are taken in place, and a key spelled otherwise than as a short string makes the header
    /// decoded whole, with the same answer.
    #[test]
    fn answers_read_every_spelling_of_a_string() {
        let meta = coded_sample();
        let spell = |text: &str, form: u8| -> Vec<u8> {
            let len = text.len();
            let mut out = match form {
                0 => vec![0xa0 | u8::try_from(len).unwrap()],
                1 => vec![0xd9, u8::try_from(len).unwrap()],
                2 => [&[0xda][..], &u16::try_from(len).unwrap().to_be_bytes()].concat(),
                _ => [&[0xdb][..], &u32::try_from(len).unwrap().to_be_bytes()].concat(),
            };
            out.extend(text.as_bytes());
            out
        };
        for (key_form, value_form) in [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (3, 2)] {
            let mut header = vec![0x86];
            for (key, value) in [
                ("func", Some(meta.func.as_str())),
                ("args_id", Some(meta.args_id.as_str())),
                ("name", Some(meta.name.as_str())),
                ("code", meta.code.as_deref()),
                ("version", None),
            ] {
                header.extend(spell(key, key_form));
                match value {
                    Some(value) => header.extend(spell(value, value_form)),
                    None => header.push(0xc0),
                }
            }
            header.extend(spell("duration", key_form));
            header.extend(rmp_serde::to_vec(&0.5f64).unwrap());
            assert_eq!(
                Leading::parse(&header, false).is_some(),
                key_form == 0,
                "keys {key_form}, values {value_form}"
            );
            assert_eq!(
                check_answers(&header, &expected(&meta)).unwrap(),
                0.5,
                "keys {key_form}, values {value_form}"
            );
        }
    }

    /// Headers of older versions, whose fields come in another order, are read to their end;
    /// a key seen twice is refused, as the whole metadata refuses it.
    #[test]
    fn answers_of_old_headers_and_duplicate_keys() {
        #[derive(Serialize)]
        struct Old<'a> {
            duration: f64,
            time: DateTime<Utc>,
            input_args: Vec<(String, String)>,
            func: &'a str,
            args_id: &'a str,
            hasher: &'a str,
            codec: &'a str,
            name: &'a str,
            code: Option<&'a str>,
            version: Option<&'a str>,
        }
        let (meta, _) = sample();
        let old = Old {
            duration: 2.5,
            time: meta.time,
            input_args: meta.input_args.clone(),
            func: &meta.func,
            args_id: &meta.args_id,
            hasher: &meta.hasher,
            codec: &meta.codec,
            name: &meta.name,
            code: None,
            version: None,
        };
        let header = rmp_serde::to_vec_named(&old).unwrap();
        assert_eq!(check_answers(&header, &expected(&meta)).unwrap(), 2.5);
        assert_eq!(from_header::<Metadata>(&header).unwrap().duration, 2.5);

        let mut twice = vec![0x82];
        for func in ["m.f", "other.g"] {
            twice.extend(rmp_serde::to_vec("func").unwrap());
            twice.extend(rmp_serde::to_vec(func).unwrap());
        }
        let err = check_answers(&twice, &expected(&meta)).unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }
}
