//! Short human-readable forms of values, for logs and cache listings.

use std::fmt::{self, Write as _};

use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::probe::reject_all_but_tuple;

/// The ellipsis that marks truncated output.
const ELLIPSIS: char = '…';

/// Why formatting stopped.
#[derive(Debug)]
enum Stop {
    /// The output reached its length limit.
    Full,
    /// The value's `Serialize` impl failed.
    Custom(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Full => f.write_str("output full"),
            Stop::Custom(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Stop::Custom(msg.to_string())
    }
}

/// Output limited to `max` chars; writing past the limit fails with
/// [`Stop::Full`].
struct Out {
    s: String,
    chars: usize,
    max: usize,
    full: bool,
}

impl Out {
    fn new(max: usize) -> Self {
        Out {
            s: String::new(),
            chars: 0,
            max,
            full: false,
        }
    }

    /// Chars that can still be written.
    fn room(&self) -> usize {
        self.max - self.chars
    }

    fn push(&mut self, t: &str) -> Result<(), Stop> {
        if self.full {
            return Err(Stop::Full);
        }
        let room = self.room();
        if t.len() <= room {
            // At most `t.len()` chars, so all of them fit.
            self.s.push_str(t);
            self.chars += t.chars().count();
            return Ok(());
        }
        for (n, (i, _)) in t.char_indices().enumerate() {
            if n == room {
                self.s.push_str(&t[..i]);
                self.chars += n;
                self.full = true;
                return Err(Stop::Full);
            }
        }
        self.s.push_str(t);
        self.chars += t.chars().count();
        Ok(())
    }

    fn push_fmt(&mut self, args: fmt::Arguments<'_>) -> Result<(), Stop> {
        // The only error source is `write_str` hitting the limit.
        self.write_fmt(args).map_err(|_| Stop::Full)
    }

    /// The text, with the ellipsis if it was cut.
    fn finish(self) -> String {
        if !self.full {
            return self.s;
        }
        if self.max == 0 {
            return String::new();
        }
        let mut s = self.s;
        if let Some((i, _)) = s.char_indices().nth(self.max - 1) {
            s.truncate(i);
        }
        s.push(ELLIPSIS);
        s
    }
}

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s).map_err(|_| fmt::Error)
    }
}

/// `text` cut to `max_len` chars, with the ellipsis if cut.
fn limited(text: &str, max_len: usize) -> String {
    let mut out = Out::new(max_len);
    let _ = out.push(text);
    out.finish()
}

/// A short human-readable form of a value (Rust-debug-like: `3`, `"text"`,
/// `[1.0, 2.0, …]`, `Point { x: 1, y: 2 }`, `Some(3)`, `{"a": 1}`,
/// `Variant(1, 2)`), at most `max_len` chars, truncated with "…".
///
/// Serialization stops as soon as the limit is reached, so a huge value costs
/// `O(max_len)`. Never panics; if the value's `Serialize` impl fails, returns
/// `"<unserializable: msg>"` (also limited to `max_len` chars).
///
/// ```
/// # use serde::Serialize;
/// #[derive(Serialize)]
/// struct Point { x: i32, y: i32 }
/// assert_eq!(cachette_hashing::readable(&Point { x: 1, y: 2 }, 80), "Point { x: 1, y: 2 }");
/// assert_eq!(cachette_hashing::readable(&vec![1.0, 2.0, 3.0], 10), "[1.0, 2.0…");
/// ```
pub fn readable<T: Serialize + ?Sized>(value: &T, max_len: usize) -> String {
    let mut out = Out::new(max_len);
    match value.serialize(Fmt { out: &mut out }) {
        Ok(()) | Err(Stop::Full) => out.finish(),
        Err(Stop::Custom(msg)) => unserializable(&msg, max_len),
    }
}

fn unserializable(msg: &str, max_len: usize) -> String {
    limited(&format!("<unserializable: {msg}>"), max_len)
}

/// Readable form split into positional arguments: a top-level tuple gives one
/// `("0", ..)`, `("1", ..)` entry per element not in `skip`; any other value
/// gives a single `("0", ..)` entry (none if `skip` holds 0, as in
/// [`CanonicalHasher::add_args`](crate::CanonicalHasher::add_args)). Each
/// entry's text is limited to `max_len` chars.
pub fn readable_args<T: Serialize + ?Sized>(
    value: &T,
    skip: &[usize],
    max_len: usize,
) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let result = value.serialize(Splitter {
        parts: &mut parts,
        skip,
        max_len,
    });
    match result {
        Ok(()) => parts,
        Err(Split::NotTuple) if skip.contains(&0) => Vec::new(),
        Err(Split::NotTuple) => vec![("0".to_owned(), readable(value, max_len))],
        Err(Split::Custom(msg)) => vec![("0".to_owned(), unserializable(&msg, max_len))],
    }
}

/// The readable-form serializer.
struct Fmt<'a> {
    out: &'a mut Out,
}

/// The state of a compound value being formatted.
struct FmtCompound<'a> {
    out: &'a mut Out,
    count: usize,
    close: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Seq,
    Tuple,
    Map,
    Struct,
    /// `cachette::Array` (from the core crate): written `Array<f64>[3, 3]`,
    /// without its bytes.
    Array,
}

/// The serde name of the core crate's array type, whose fields are `dtype`
/// (a string), `shape` and `data` (the bytes).
const ARRAY_STRUCT: &str = "cachette::Array";

impl FmtCompound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        if self.count > 0 {
            self.out.push(", ")?;
        }
        self.count += 1;
        value.serialize(Fmt {
            out: &mut *self.out,
        })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Stop> {
        if self.kind == Kind::Array {
            return match key {
                "dtype" => {
                    let mut name = Out::new(32);
                    // A dtype name longer than the scratch space is cut.
                    let _ = value.serialize(Fmt { out: &mut name });
                    self.out.push("<")?;
                    self.out.push(name.s.trim_matches('"'))?;
                    self.out.push(">")
                }
                "shape" => value.serialize(Fmt {
                    out: &mut *self.out,
                }),
                _ => Ok(()),
            };
        }
        self.out.push(if self.count == 0 { " { " } else { ", " })?;
        self.count += 1;
        self.out.push(key)?;
        self.out.push(": ")?;
        value.serialize(Fmt {
            out: &mut *self.out,
        })
    }

    fn end(self) -> Result<(), Stop> {
        match self.kind {
            Kind::Tuple if self.count == 1 => self.out.push(",)"),
            Kind::Struct if self.count == 0 => Ok(()),
            Kind::Array => Ok(()),
            _ => self.out.push(self.close),
        }
    }
}

macro_rules! display {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, v: $t) -> Result<(), Stop> {
            self.out.push_fmt(format_args!("{v}"))
        }
    )*};
}

macro_rules! debug {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, v: $t) -> Result<(), Stop> {
            self.out.push_fmt(format_args!("{v:?}"))
        }
    )*};
}

impl<'a> ser::Serializer for Fmt<'a> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = FmtCompound<'a>;
    type SerializeTuple = FmtCompound<'a>;
    type SerializeTupleStruct = FmtCompound<'a>;
    type SerializeTupleVariant = FmtCompound<'a>;
    type SerializeMap = FmtCompound<'a>;
    type SerializeStruct = FmtCompound<'a>;
    type SerializeStructVariant = FmtCompound<'a>;

    display!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128
    );

    debug!(serialize_f32: f32, serialize_f64: f64, serialize_char: char);

    fn serialize_str(self, v: &str) -> Result<(), Stop> {
        // Debug-escaping never shortens text, so the first `room + 1` chars
        // are enough to either fit or overflow; this keeps a huge string
        // O(max_len).
        let room = self.out.room();
        let cut = v.char_indices().nth(room + 1).map_or(v.len(), |(i, _)| i);
        self.out.push_fmt(format_args!("{:?}", &v[..cut]))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Stop> {
        self.out.push("[")?;
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(", ")?;
            }
            self.out.push_fmt(format_args!("{b}"))?;
        }
        self.out.push("]")
    }

    fn serialize_none(self) -> Result<(), Stop> {
        self.out.push("None")
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Stop> {
        self.out.push("Some(")?;
        value.serialize(Fmt {
            out: &mut *self.out,
        })?;
        self.out.push(")")
    }

    fn serialize_unit(self) -> Result<(), Stop> {
        self.out.push("()")
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Stop> {
        self.out.push(name)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _variant_index: u32,
        variant: &'static str,
    ) -> Result<(), Stop> {
        self.out.push(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.out.push(name)?;
        self.out.push("(")?;
        value.serialize(Fmt {
            out: &mut *self.out,
        })?;
        self.out.push(")")
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _variant_index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.serialize_newtype_struct(variant, value)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<FmtCompound<'a>, Stop> {
        self.out.push("[")?;
        Ok(FmtCompound {
            out: self.out,
            count: 0,
            close: "]",
            kind: Kind::Seq,
        })
    }

    fn serialize_tuple(self, _len: usize) -> Result<FmtCompound<'a>, Stop> {
        self.out.push("(")?;
        Ok(FmtCompound {
            out: self.out,
            count: 0,
            close: ")",
            kind: Kind::Tuple,
        })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<FmtCompound<'a>, Stop> {
        self.out.push(name)?;
        self.out.push("(")?;
        Ok(FmtCompound {
            out: self.out,
            count: 0,
            close: ")",
            kind: Kind::Seq,
        })
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _variant_index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<FmtCompound<'a>, Stop> {
        self.serialize_tuple_struct(variant, len)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<FmtCompound<'a>, Stop> {
        self.out.push("{")?;
        Ok(FmtCompound {
            out: self.out,
            count: 0,
            close: "}",
            kind: Kind::Map,
        })
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<FmtCompound<'a>, Stop> {
        if name == ARRAY_STRUCT {
            self.out.push("Array")?;
            return Ok(FmtCompound {
                out: self.out,
                count: 0,
                close: "",
                kind: Kind::Array,
            });
        }
        self.out.push(name)?;
        Ok(FmtCompound {
            out: self.out,
            count: 0,
            close: " }",
            kind: Kind::Struct,
        })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _variant_index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<FmtCompound<'a>, Stop> {
        self.serialize_struct(variant, len)
    }
}

impl ser::SerializeSeq for FmtCompound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.element(value)
    }

    fn end(self) -> Result<(), Stop> {
        FmtCompound::end(self)
    }
}

impl ser::SerializeTuple for FmtCompound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.element(value)
    }

    fn end(self) -> Result<(), Stop> {
        FmtCompound::end(self)
    }
}

impl ser::SerializeTupleStruct for FmtCompound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.element(value)
    }

    fn end(self) -> Result<(), Stop> {
        FmtCompound::end(self)
    }
}

impl ser::SerializeTupleVariant for FmtCompound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.element(value)
    }

    fn end(self) -> Result<(), Stop> {
        FmtCompound::end(self)
    }
}

impl ser::SerializeMap for FmtCompound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Stop> {
        self.element(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        self.out.push(": ")?;
        value.serialize(Fmt {
            out: &mut *self.out,
        })
    }

    fn end(self) -> Result<(), Stop> {
        FmtCompound::end(self)
    }
}

impl ser::SerializeStruct for FmtCompound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Stop> {
        FmtCompound::end(self)
    }
}

impl ser::SerializeStructVariant for FmtCompound<'_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Stop> {
        FmtCompound::end(self)
    }
}

/// Why splitting into arguments stopped.
#[derive(Debug)]
enum Split {
    NotTuple,
    Custom(String),
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Split::NotTuple => f.write_str("not a tuple"),
            Split::Custom(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Split {}

impl ser::Error for Split {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Split::Custom(msg.to_string())
    }
}

/// Serializer that accepts only a tuple and formats each element apart.
struct Splitter<'a> {
    parts: &'a mut Vec<(String, String)>,
    skip: &'a [usize],
    max_len: usize,
}

impl<'a> ser::Serializer for Splitter<'a> {
    type Ok = ();
    type Error = Split;
    type SerializeTuple = SplitTuple<'a>;

    reject_all_but_tuple!(Split::NotTuple);

    fn serialize_tuple(self, _len: usize) -> Result<SplitTuple<'a>, Split> {
        Ok(SplitTuple {
            parts: self.parts,
            skip: self.skip,
            max_len: self.max_len,
            index: 0,
        })
    }
}

/// The elements of the top-level tuple, each formatted on its own.
struct SplitTuple<'a> {
    parts: &'a mut Vec<(String, String)>,
    skip: &'a [usize],
    max_len: usize,
    index: usize,
}

impl ser::SerializeTuple for SplitTuple<'_> {
    type Ok = ();
    type Error = Split;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Split> {
        let index = self.index;
        self.index += 1;
        if !self.skip.contains(&index) {
            self.parts
                .push((index.to_string(), readable(value, self.max_len)));
        }
        Ok(())
    }

    fn end(self) -> Result<(), Split> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_limits() {
        let mut o = Out::new(3);
        assert!(o.push("ab").is_ok());
        assert!(o.push("cd").is_err());
        assert_eq!(o.finish(), "ab…");
        let mut o = Out::new(3);
        assert!(o.push("abc").is_ok());
        assert_eq!(o.finish(), "abc");
        let mut o = Out::new(0);
        assert!(o.push("a").is_err());
        assert_eq!(o.finish(), "");
        let mut o = Out::new(2);
        assert!(o.push("ééé").is_err());
        assert_eq!(o.finish(), "é…");
    }
}
