//! The canonical encoding, byte by byte (format version 1).
//!
//! [`CanonicalHasher`](crate::CanonicalHasher) streams this encoding of a
//! serde value into a [`StableHasher`](crate::StableHasher); the digest is the
//! hash of these bytes. The encoding is never materialised as a whole: it goes
//! through a small staging buffer, and large strings, byte strings and numeric
//! arrays go straight to the hasher.
//!
//! Every change to these bytes changes digests, so it must come with a bump of
//! [`FORMAT_VERSION`](crate::FORMAT_VERSION).
//!
//! # Conventions
//!
//! * Every value starts with a one-byte **tag**. Together with the fixed sizes,
//!   length prefixes and end tags below this makes the encoding prefix-free:
//!   a sequence of encoded values can be split back into values in exactly one
//!   way, so `("ab", "c")` and `("a", "bc")` differ.
//! * All integers are fixed-width little-endian. Nothing in the encoding has
//!   the width of `usize`: serde hands `usize`/`isize` over as `u64`/`i64`,
//!   and all lengths and counts are `u64` LE. The digest therefore does not
//!   depend on the pointer width or the endianness of the machine.
//! * `name` below means a length-prefixed string: `u64` LE byte length, then
//!   the UTF-8 bytes. Type names, field names and variant names are names.
//! * Enum variants are identified by their **name**, never their index, so
//!   reordering the variants of an enum does not change digests (renaming one
//!   does).
//!
//! # Values
//!
//! | serde call | bytes |
//! |---|---|
//! | `bool` | `0x01`, then `0x00` or `0x01` |
//! | `i8`, `i16`, `i32`, `i64`, `i128` | `0x02`..`0x06`, then the value, 1/2/4/8/16 bytes LE |
//! | `u8`, `u16`, `u32`, `u64`, `u128` | `0x07`..`0x0B`, then the value, 1/2/4/8/16 bytes LE |
//! | `f32`, `f64` | `0x0C` / `0x0D`, then `to_bits()` as 4/8 bytes LE (no NaN canonicalisation: `-0.0 != 0.0`, NaN payloads count) |
//! | `char` | `0x0E`, then the scalar value as `u32` LE |
//! | `str` | `0x10`, `u64` LE byte length, UTF-8 bytes |
//! | `bytes` | `0x11`, `u64` LE length, the bytes |
//! | `None` | `0x12` |
//! | `Some(v)` | `0x13`, `v` |
//! | `()` | `0x14` |
//! | unit struct | `0x15`, name |
//! | unit variant | `0x16`, enum name, variant name |
//! | newtype struct | `0x17`, name, value |
//! | newtype variant | `0x18`, enum name, variant name, value |
//! | seq | `0x19`, each element, then `0x1A` (end) |
//! | tuple | `0x1B`, `u64` LE length, each element |
//! | tuple struct | `0x1C`, name, `u64` LE length, each field |
//! | tuple variant | `0x1D`, enum name, variant name, `u64` LE length, each field |
//! | map | `0x1E`, `u64` LE entry count, the entries in canonical order (below); an entry is the key's encoding followed by the value's |
//! | map giving a key more than once | `0x26`, `u64` LE entry count, the entries in the order given |
//! | struct | `0x1F`, name, `u64` LE field count, then per field: field name, value |
//! | struct variant | `0x20`, enum name, variant name, `u64` LE field count, then per field: field name, value |
//! | set | `0x21`, `u64` LE element count, the element encodings in canonical order |
//! | numeric array (bulk) | `0x22`, element code (the scalar tag of the element type, `0x02`..`0x0D`), `u64` LE element count, the elements as LE bytes |
//! | skipped argument | `0x23` (only from [`add_args`](crate::CanonicalHasher::add_args)) |
//! | raw bytes | `0x24`, `u64` LE length, the bytes (only from [`add_raw`](crate::CanonicalHasher::add_raw)) |
//! | n-dimensional numeric array (bulk, feature `ndarray`) | `0x25`, element code (as for `0x22`), `u64` LE number of axes, each axis length as `u64` LE (outermost first), the elements as LE bytes in row-major order |
//!
//! Struct and tuple lengths are the lengths announced to the serializer; a
//! `Serialize` impl whose announced length differs from the number of
//! elements it then serializes is rejected with a [`HashError`](crate::HashError)
//! (serde's derive always announces the right count, also with
//! `skip_serializing_if`).
//!
//! # Maps and sets: order-independent
//!
//! Iteration order of a `HashMap` differs between processes, so maps are
//! encoded in a canonical order: each entry is first encoded (recursively
//! canonical, so nested maps are sorted too) into a scratch arena; entries
//! are sorted by the `xxh3_64` of their bytes, ties broken by comparing the
//! bytes; then the header and the entries are written in that order. A
//! `HashMap` and a `BTreeMap` with the same entries hash the same.
//!
//! A map that gives one key twice is no map: its deserializer keeps one of the
//! values, so the order of its entries is part of its value. serde's derive
//! makes such maps from a `#[serde(flatten)]` field beside a field of the same
//! name (a struct with a flattened `HashMap` of extra settings that holds one
//! of the struct's own names, say). Its entries are written in the order given,
//! with tag `0x26`: `{"a": 1, "a": 2}` and `{"a": 2, "a": 1}` differ. The
//! check costs a comparison of the keys; maps whose type guarantees distinct
//! keys (`HashMap`, `hashbrown::HashMap`, `BTreeMap`, `IndexMap`,
//! `serde_json::Map`, recognised by their static type as sets are) skip it.
//!
//! serde hands sets over as plain sequences, so they are recognised by the
//! static type of the value handed to the encoder
//! ([`std::any::type_name`], after stripping `&`, `&mut`, `Box`, `Rc`,
//! `Arc` and `Cow`): `std::collections::HashSet`, `hashbrown::HashSet` and
//! `std::collections::BTreeSet` are encoded as sets, in canonical order like
//! map entries. **Limitation:** a set that reaches the serializer only from
//! inside a hand-written `Serialize` impl that calls `serialize_seq` itself
//! (or forwards `self.0.serialize(serializer)` from a wrapper type that is not
//! a `Box`/`Rc`/`Arc`/`Cow`/reference) is seen as an ordinary, order-sensitive
//! sequence. Wrapping it in a field, a newtype struct (`serialize_newtype_struct`)
//! or an `Option` is fine.
//!
//! # Numeric arrays: the bulk path
//!
//! Wherever the encoder is handed a value (top level, elements, fields, map
//! keys and values, `Some` and newtype payloads), it checks the value's static
//! type before serializing it. `Vec<P>`, `[P]`, `Box<[P]>`, `&[P]`,
//! `&Vec<P>`, `&mut [P]`, `&mut Vec<P>`, `Arc<[P]>`, `Rc<[P]>` and
//! `Cow<[P]>` for `P` in `u8 i8 u16 i16 u32 i32 u64 i64 u128 i128 f32 f64` are
//! written as one numeric array (tag `0x22`): the same content gives the same
//! bytes whatever the container, and on little-endian machines the slice's
//! memory is handed to the hasher as-is. Element types are part of the
//! encoding: a `Vec<f32>` and a `Vec<u32>` with the same bits differ.
//!
//! A numeric slice that does not reach the encoder as one of those types (for
//! example through a wrapper's hand-written impl, or `serde_bytes`) is
//! encoded element by element as a seq, or as `bytes`, and hashes
//! differently from the bulk form of the same numbers. Arrays `[P; N]` are
//! serde tuples and always use the tuple encoding.
//!
//! # `ndarray` arrays (feature `ndarray`)
//!
//! With the crate feature `ndarray`, `ndarray` arrays of the same element
//! types take the bulk path too: `Array`, `ArcArray`, `CowArray`,
//! `ArrayView` and `ArrayViewMut` (`ArrayBase` with the storages
//! `OwnedRepr`, `OwnedArcRepr`, `CowRepr`, `ViewRepr<&P>` and
//! `ViewRepr<&mut P>`), of dimension `Ix0` to `Ix6` or `IxDyn`, also as `&`
//! or `&mut` references. They are written with tag `0x25`: the element code,
//! the number of axes, the length of each axis, then the elements in logical
//! row-major (C) order. The element count is the product of the axis lengths
//! (1 for zero axes), so the form is prefix-free.
//!
//! The digest depends on the element type, the shape and the values only:
//! not on the storage (owned, shared, view, copy-on-write), not on the
//! dimension type (an `Array2` and an `ArrayD` of the same shape hash the
//! same) and not on the memory layout (strides, Fortran order, slicing). An
//! array in standard layout is handed to the hasher as its memory (on
//! little-endian machines); any other layout is walked in logical order.
//! Shape and element type count: the same six numbers as `2x3`, `3x2` or
//! `6` give three digests, as do `f32` and `f64` arrays of the same
//! numbers. A one-dimensional array and a `Vec` of the same numbers differ
//! (tags `0x25` and `0x22`).
//!
//! Without the feature, an array (with `ndarray`'s own `serde` feature) is
//! hashed through its `Serialize` impl, which gives other digests: a store
//! shared by programs must be written with the feature set the same way in
//! all of them.
//!
//! # Other serializer settings
//!
//! The encoder reports `is_human_readable() == false`, so types with a compact
//! form (addresses, UUIDs, ...) use it.

/// Tag bytes.
pub(crate) mod tag {
    pub(crate) const BOOL: u8 = 0x01;
    pub(crate) const I8: u8 = 0x02;
    pub(crate) const I16: u8 = 0x03;
    pub(crate) const I32: u8 = 0x04;
    pub(crate) const I64: u8 = 0x05;
    pub(crate) const I128: u8 = 0x06;
    pub(crate) const U8: u8 = 0x07;
    pub(crate) const U16: u8 = 0x08;
    pub(crate) const U32: u8 = 0x09;
    pub(crate) const U64: u8 = 0x0A;
    pub(crate) const U128: u8 = 0x0B;
    pub(crate) const F32: u8 = 0x0C;
    pub(crate) const F64: u8 = 0x0D;
    pub(crate) const CHAR: u8 = 0x0E;
    pub(crate) const STR: u8 = 0x10;
    pub(crate) const BYTES: u8 = 0x11;
    pub(crate) const NONE: u8 = 0x12;
    pub(crate) const SOME: u8 = 0x13;
    pub(crate) const UNIT: u8 = 0x14;
    pub(crate) const UNIT_STRUCT: u8 = 0x15;
    pub(crate) const UNIT_VARIANT: u8 = 0x16;
    pub(crate) const NEWTYPE_STRUCT: u8 = 0x17;
    pub(crate) const NEWTYPE_VARIANT: u8 = 0x18;
    pub(crate) const SEQ: u8 = 0x19;
    pub(crate) const SEQ_END: u8 = 0x1A;
    pub(crate) const TUPLE: u8 = 0x1B;
    pub(crate) const TUPLE_STRUCT: u8 = 0x1C;
    pub(crate) const TUPLE_VARIANT: u8 = 0x1D;
    pub(crate) const MAP: u8 = 0x1E;
    pub(crate) const STRUCT: u8 = 0x1F;
    pub(crate) const STRUCT_VARIANT: u8 = 0x20;
    pub(crate) const SET: u8 = 0x21;
    pub(crate) const PRIM_ARRAY: u8 = 0x22;
    pub(crate) const SKIPPED: u8 = 0x23;
    pub(crate) const RAW: u8 = 0x24;
    #[cfg(feature = "ndarray")]
    pub(crate) const ND_ARRAY: u8 = 0x25;
    pub(crate) const MAP_IN_ORDER: u8 = 0x26;
}
