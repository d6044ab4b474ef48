//! [`CanonicalHasher`]: a serde `Serializer` that streams the canonical
//! encoding (see [`crate::encoding`]) into a [`StableHasher`].
//!
//! The file is longer than 800 lines on purpose: it is one serializer, every method of serde's
//! data model (a few lines each) and the compound serializers they hand out, sharing one staging
//! buffer and one set of rules; cut in two, each half would need the other to be read.

use std::cell::Cell;
use std::fmt;

use serde::Serialize;
use serde::ser;

use crate::algorithm::StableHasher;
use crate::bulk::{self, PrimSlice};
use crate::digest::Digest;
use crate::encoding::tag;
use crate::probe;

/// Capacity of the staging buffer between the encoder and the hasher.
const STAGING: usize = 8 * 1024;
/// Writes at least this long skip the staging buffer.
const DIRECT: usize = 2 * 1024;

/// A value could not be hashed: its `Serialize` impl failed, or it broke the
/// serde contract (e.g. announced a wrong number of struct fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashError(String);

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot hash value: {}", self.0)
    }
}

impl std::error::Error for HashError {}

impl ser::Error for HashError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        HashError(msg.to_string())
    }
}

/// Bytes staged in place before any staging buffer is taken: most keys (a few numbers and
/// short strings) fit, and are hashed without touching the thread's spare buffer.
const HEAD: usize = 128;

/// The hasher plus the staging buffer in front of it: the first [`HEAD`] bytes in place, then,
/// once they overflow, a buffer of [`STAGING`] bytes (the thread's spare one).
struct Staging<H> {
    hasher: H,
    head: [u8; HEAD],
    head_len: usize,
    /// Without capacity until the head overflows.
    buf: Vec<u8>,
}

thread_local! {
    /// A staging buffer kept between the hashes of a thread, so that hashing a key allocates
    /// nothing once the thread hashed one.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty staging buffer of [`STAGING`] bytes: the thread's spare one, or a new one.
fn staging_buffer() -> Vec<u8> {
    let mut buf = SPARE.try_with(Cell::take).unwrap_or_default();
    if buf.capacity() < STAGING {
        return Vec::with_capacity(STAGING);
    }
    buf.clear();
    buf
}

impl<H> Drop for Staging<H> {
    fn drop(&mut self) {
        if self.buf.capacity() == 0 {
            return; // The head held everything: no buffer to give back.
        }
        let buf = std::mem::take(&mut self.buf);
        // Only buffers of the usual size are kept: one that grew stays with nobody.
        if buf.capacity() == STAGING {
            let _ = SPARE.try_with(|spare| spare.set(buf));
        }
    }
}

impl<H: StableHasher> Staging<H> {
    fn new(hasher: H) -> Self {
        Staging {
            hasher,
            head: [0; HEAD],
            head_len: 0,
            buf: Vec::new(),
        }
    }

    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        if self.buf.capacity() == 0
            && let Some(head) = self
                .head
                .get_mut(self.head_len..self.head_len + bytes.len())
        {
            head.copy_from_slice(bytes);
            self.head_len += bytes.len();
        } else if bytes.len() < DIRECT && bytes.len() <= self.buf.capacity() - self.buf.len() {
            self.buf.extend_from_slice(bytes);
        } else {
            self.put_slow(bytes);
        }
    }

    #[inline(never)]
    fn put_slow(&mut self, bytes: &[u8]) {
        if self.buf.capacity() == 0 {
            // The head overflows: the staged bytes move to a staging buffer.
            self.buf = staging_buffer();
            self.buf.extend_from_slice(&self.head[..self.head_len]);
            self.head_len = 0;
        }
        self.put_staged(bytes);
    }

    /// The bytes staged so far (none of them hashed yet when the head still holds them).
    fn staged(&self) -> &[u8] {
        if self.buf.capacity() == 0 {
            &self.head[..self.head_len]
        } else {
            &self.buf
        }
    }

    /// Hashes what is staged, and gives the digest.
    fn finish(&mut self) -> Digest {
        if self.buf.capacity() == 0 {
            self.hasher.finish_with(&self.head[..self.head_len])
        } else {
            self.hasher.finish_with(&self.buf)
        }
    }

    /// Puts `bytes` once the staging buffer is taken.
    fn put_staged(&mut self, bytes: &[u8]) {
        if bytes.len() < DIRECT && bytes.len() <= self.buf.capacity() - self.buf.len() {
            self.buf.extend_from_slice(bytes);
            return;
        }
        self.flush();
        if bytes.len() >= DIRECT {
            self.hasher.write(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.hasher.write(&self.buf);
            self.buf.clear();
        }
    }
}

/// One encoded map entry or set element in the arena.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    start: usize,
    /// Where the key of a map entry ends (the end of a set element).
    key_end: usize,
    end: usize,
}

/// What a collection of entries in canonical order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Set,
    /// A map of a type whose keys are distinct.
    Map,
    /// A map that may give a key twice.
    AnyMap,
}

/// Bookkeeping of one map or set being encoded.
#[derive(Debug, Clone, Copy)]
struct Unordered {
    /// Arena offset where this collection's entries begin.
    start: usize,
    /// Index in `entries` where this collection's entries begin.
    base: usize,
}

/// Streams canonical encodings of serde values into a hasher.
///
/// Values added one after the other are simply concatenated; the encoding is
/// prefix-free, so the sequence of values is unambiguous. If [`add`] or
/// [`add_args`] returns an error, the bytes already streamed stay in the
/// hasher: discard it.
///
/// [`add`]: CanonicalHasher::add
/// [`add_args`]: CanonicalHasher::add_args
pub struct CanonicalHasher<H: StableHasher> {
    out: Staging<H>,
    /// Scratch space where map entries and set elements are encoded before
    /// they are sorted.
    arena: Vec<u8>,
    /// Entries of all maps and sets being encoded, innermost last.
    entries: Vec<Entry>,
    /// Number of maps and sets being encoded; while non-zero, output goes to
    /// the arena.
    depth: usize,
}

impl<H: StableHasher> fmt::Debug for CanonicalHasher<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanonicalHasher")
            .field("staged_bytes", &self.out.staged().len())
            .finish_non_exhaustive()
    }
}

impl<H: StableHasher> CanonicalHasher<H> {
    /// A canonical hasher writing into `hasher`.
    pub fn new(hasher: H) -> Self {
        CanonicalHasher {
            out: Staging::new(hasher),
            arena: Vec::new(),
            entries: Vec::new(),
            depth: 0,
        }
    }

    /// Appends the canonical encoding of one value.
    pub fn add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        let result = self.encode(value);
        self.recover(result)
    }

    /// Appends a length-prefixed raw byte string (used for argument names and
    /// domain tags). Its tag differs from those of `str` and `bytes` values.
    pub fn add_raw(&mut self, bytes: &[u8]) {
        self.put_header(tag::RAW, bytes.len());
        self.put(bytes);
    }

    /// Like `add`, but if the value serializes as a tuple at the top level,
    /// the elements whose index is in `skip` are left out (positional ignore
    /// for closures taking a tuple). A non-tuple value is element 0.
    ///
    /// A left-out element is encoded as a "skipped" marker, so positions of
    /// the other elements still count. With an empty `skip` this is `add`.
    pub fn add_args<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        skip: &[usize],
    ) -> Result<(), HashError> {
        if skip.is_empty() {
            return self.add(value);
        }
        let result = if probe::is_top_level_tuple(value) {
            value.serialize(Ser {
                c: self,
                type_name: "",
                skip: Some(skip),
            })
        } else if skip.contains(&0) {
            self.put(&[tag::SKIPPED]);
            Ok(())
        } else {
            self.encode(value)
        };
        self.recover(result)
    }

    /// The digest of everything added so far (with the staging buffer as the last input).
    pub fn finish(mut self) -> Digest {
        self.out.finish()
    }

    /// The digest of what `fill` adds to a new canonical hasher writing into `hasher` (or its
    /// error). The same as [`new`](Self::new), the additions, then [`finish`](Self::finish),
    /// without moving the hasher (and its staged bytes) into `finish`: the quicker way when the
    /// input is small.
    #[inline]
    pub fn digest<E>(
        hasher: H,
        fill: impl FnOnce(&mut Self) -> Result<(), E>,
    ) -> Result<Digest, E> {
        let mut this = Self::new(hasher);
        fill(&mut this)?;
        Ok(this.out.finish())
    }

    /// After a failed `add`, forget any half-encoded map or set.
    fn recover(&mut self, result: Result<(), HashError>) -> Result<(), HashError> {
        if result.is_err() {
            self.depth = 0;
            self.arena.clear();
            self.entries.clear();
        }
        result
    }

    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        if self.depth == 0 {
            self.out.put(bytes);
        } else {
            self.arena.extend_from_slice(bytes);
        }
    }

    /// A tag followed by a `u64` LE length or count.
    #[inline(always)]
    fn put_header(&mut self, tag: u8, len: usize) {
        let mut b = [0u8; 9];
        b[0] = tag;
        b[1..].copy_from_slice(&(len as u64).to_le_bytes());
        self.put(&b);
    }

    /// A tag followed by a fixed-size little-endian scalar (at most 16 bytes).
    #[inline(always)]
    fn put_scalar(&mut self, tag: u8, le_bytes: &[u8]) {
        let mut b = [0u8; 17];
        b[0] = tag;
        b[1..=le_bytes.len()].copy_from_slice(le_bytes);
        self.put(&b[..=le_bytes.len()]);
    }

    /// A length-prefixed name.
    #[inline(always)]
    fn put_name(&mut self, name: &str) {
        self.put(&(name.len() as u64).to_le_bytes());
        self.put(name.as_bytes());
    }

    fn put_prim(&mut self, p: PrimSlice<'_>) {
        let mut head = [0u8; 10];
        head[0] = tag::PRIM_ARRAY;
        head[1] = p.code;
        head[2..].copy_from_slice(&(p.len as u64).to_le_bytes());
        self.put(&head);
        self.put_elements(p.native_bytes, p.elem_size);
    }

    /// Elements of `elem_size` bytes each, given in native byte order, written
    /// as little-endian.
    #[inline]
    fn put_elements(&mut self, native_bytes: &[u8], elem_size: usize) {
        #[cfg(target_endian = "little")]
        {
            let _ = elem_size;
            self.put(native_bytes);
        }
        #[cfg(target_endian = "big")]
        {
            // Convert each element to little-endian, a block at a time.
            let mut block = [0u8; 1024];
            for chunk in native_bytes.chunks(block.len()) {
                let out = &mut block[..chunk.len()];
                for (dst, src) in out
                    .chunks_exact_mut(elem_size)
                    .zip(chunk.chunks_exact(elem_size))
                {
                    dst.copy_from_slice(src);
                    dst.reverse();
                }
                self.put(out);
            }
        }
    }

    /// An `ndarray` array: header with the shape, then the elements in
    /// logical (row-major) order.
    #[cfg(feature = "ndarray")]
    fn put_nd(&mut self, a: bulk::NdPrim<'_>) {
        self.put(&[tag::ND_ARRAY, a.code]);
        self.put(&(a.shape.len() as u64).to_le_bytes());
        for &n in a.shape {
            self.put(&(n as u64).to_le_bytes());
        }
        a.for_each_block(&mut |bytes| self.put_elements(bytes, a.elem_size));
    }

    /// Encodes one value handed to the encoder as `&T`: bulk path for numeric
    /// slices (and `ndarray` arrays with the `ndarray` feature), otherwise serde with `T`'s type name remembered.
    #[inline]
    fn encode<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        if let Some(p) = bulk::prim_slice(value) {
            self.put_prim(p);
            return Ok(());
        }
        #[cfg(feature = "ndarray")]
        if let Some(a) = bulk::nd_array(value) {
            self.put_nd(a);
            return Ok(());
        }
        value.serialize(Ser {
            c: self,
            type_name: std::any::type_name::<T>(),
            skip: None,
        })
    }

    fn begin_unordered(&mut self) -> Unordered {
        self.depth += 1;
        Unordered {
            start: self.arena.len(),
            base: self.entries.len(),
        }
    }

    /// Records the entry encoded in the arena from `start` to its end, its key ending at
    /// `key_end`.
    #[inline]
    fn push_entry(&mut self, start: usize, key_end: usize) {
        let end = self.arena.len();
        let hash = xxhash_rust::xxh3::xxh3_64(&self.arena[start..end]);
        self.entries.push(Entry {
            hash,
            start,
            key_end,
            end,
        });
    }

    /// Sorts the entries of a finished map or set and writes the collection.
    fn end_unordered(&mut self, kind: Collection, u: Unordered) {
        let CanonicalHasher {
            out,
            arena,
            entries,
            depth,
        } = self;
        let list = &mut entries[u.base..];
        // A map that gives a key twice (a `#[serde(flatten)]` field beside a field of the same
        // name, say) is a different value in another order, as its deserializer keeps the last
        // one: its entries stay in the order given, under their own tag.
        let tag = if kind == Collection::AnyMap && repeated_key(arena, list) {
            tag::MAP_IN_ORDER
        } else {
            list.sort_unstable_by(|a, b| {
                a.hash
                    .cmp(&b.hash)
                    .then_with(|| arena[a.start..a.end].cmp(&arena[b.start..b.end]))
            });
            match kind {
                Collection::Set => tag::SET,
                Collection::Map | Collection::AnyMap => tag::MAP,
            }
        };
        let mut head = [0u8; 9];
        head[0] = tag;
        head[1..].copy_from_slice(&(list.len() as u64).to_le_bytes());
        *depth -= 1;
        if *depth == 0 {
            out.put(&head);
            for e in list.iter() {
                out.put(&arena[e.start..e.end]);
            }
            arena.truncate(u.start);
        } else {
            // Nested in another map or set: build the sorted form after the
            // unsorted entries, then move it over them.
            let mid = arena.len();
            arena.extend_from_slice(&head);
            for e in list.iter() {
                arena.extend_from_within(e.start..e.end);
            }
            let sorted_len = arena.len() - mid;
            arena.copy_within(mid.., u.start);
            arena.truncate(u.start + sorted_len);
        }
        entries.truncate(u.base);
    }
}

/// Whether two of the map entries `list` have the same key.
fn repeated_key(arena: &[u8], list: &[Entry]) -> bool {
    let key = |e: &Entry| &arena[e.start..e.key_end];
    // The usual map is small: compared pair by pair, with no allocation.
    const PAIRWISE: usize = 16;
    if list.len() <= PAIRWISE {
        return list
            .iter()
            .enumerate()
            .any(|(i, a)| list[..i].iter().any(|b| key(a) == key(b)));
    }
    let mut keys: Vec<(u64, &[u8])> = list
        .iter()
        .map(|e| (xxhash_rust::xxh3::xxh3_64(key(e)), key(e)))
        .collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// Type names (prefixes) that serialize as a seq but are sets.
const SET_TYPES: [&str; 3] = [
    "std::collections::hash::set::HashSet<",
    "hashbrown::set::HashSet<",
    "alloc::collections::btree::set::BTreeSet<",
];

/// Smart pointers whose `Serialize` forwards to the pointee.
const WRAPPERS: [&str; 4] = [
    "alloc::boxed::Box<",
    "alloc::rc::Rc<",
    "alloc::sync::Arc<",
    "alloc::borrow::Cow<",
];

/// Maps whose keys are distinct: their entries need no check for a repeated key.
const MAP_TYPES: [&str; 5] = [
    "std::collections::hash::map::HashMap<",
    "hashbrown::map::HashMap<",
    "alloc::collections::btree::map::BTreeMap<",
    "indexmap::map::IndexMap<",
    "serde_json::map::Map",
];

/// Whether a type name (from `std::any::type_name`) names a set, possibly
/// behind references and smart pointers.
fn is_set_type(name: &str) -> bool {
    let name = pointee(name);
    SET_TYPES.iter().any(|p| name.starts_with(p))
}

/// Whether a type name names a map whose keys are distinct, possibly behind
/// references and smart pointers.
fn is_map_type(name: &str) -> bool {
    let name = pointee(name);
    MAP_TYPES.iter().any(|p| name.starts_with(p))
}

/// A type name without the references and smart pointers around it.
fn pointee(mut name: &str) -> &str {
    'strip: loop {
        if let Some(rest) = name.strip_prefix('&') {
            name = rest.strip_prefix("mut ").unwrap_or(rest);
            continue;
        }
        // A lifetime argument, as in `Cow<'_, T>` or `&'a T`.
        if name.starts_with('\'')
            && let Some((_, rest)) = name.split_once([',', ' '])
        {
            name = rest.trim_start();
            continue;
        }
        for w in WRAPPERS {
            if let Some(rest) = name.strip_prefix(w) {
                name = rest;
                continue 'strip;
            }
        }
        break;
    }
    name
}

/// The serializer for one value.
struct Ser<'a, H: StableHasher> {
    c: &'a mut CanonicalHasher<H>,
    /// `type_name` of the static type handed to the encoder for this value.
    type_name: &'static str,
    /// Top-level tuple elements to leave out (`add_args`).
    skip: Option<&'a [usize]>,
}

/// Tuples, structs and their variants: fixed element count.
struct Compound<'a, H: StableHasher> {
    c: &'a mut CanonicalHasher<H>,
    declared: usize,
    count: usize,
    skip: Option<&'a [usize]>,
    kind: &'static str,
}

impl<H: StableHasher> Compound<'_, H> {
    fn end(self) -> Result<(), HashError> {
        if self.count == self.declared {
            Ok(())
        } else {
            Err(HashError(format!(
                "{} announced {} fields but serialized {}",
                self.kind, self.declared, self.count
            )))
        }
    }

    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        let index = self.count;
        self.count += 1;
        if self.skip.is_some_and(|s| s.contains(&index)) {
            self.c.put(&[tag::SKIPPED]);
            Ok(())
        } else {
            self.c.encode(value)
        }
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        self.count += 1;
        self.c.put_name(key);
        self.c.encode(value)
    }
}

/// Sequences; sets are unordered.
struct Seq<'a, H: StableHasher> {
    c: &'a mut CanonicalHasher<H>,
    set: Option<Unordered>,
}

/// Maps: entries are encoded into the arena, then sorted.
struct Map<'a, H: StableHasher> {
    c: &'a mut CanonicalHasher<H>,
    u: Unordered,
    entry_start: usize,
    /// A map of a known type, or one that may give a key twice.
    kind: Collection,
}

macro_rules! scalar {
    ($($method:ident: $t:ty => $tag:expr;)*) => {$(
        #[inline]
        fn $method(self, v: $t) -> Result<(), HashError> {
            self.c.put_scalar($tag, &v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl<'a, H: StableHasher> ser::Serializer for Ser<'a, H> {
    type Ok = ();
    type Error = HashError;
    type SerializeSeq = Seq<'a, H>;
    type SerializeTuple = Compound<'a, H>;
    type SerializeTupleStruct = Compound<'a, H>;
    type SerializeTupleVariant = Compound<'a, H>;
    type SerializeMap = Map<'a, H>;
    type SerializeStruct = Compound<'a, H>;
    type SerializeStructVariant = Compound<'a, H>;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), HashError> {
        self.c.put(&[tag::BOOL, u8::from(v)]);
        Ok(())
    }

    scalar! {
        serialize_i8: i8 => tag::I8;
        serialize_i16: i16 => tag::I16;
        serialize_i32: i32 => tag::I32;
        serialize_i64: i64 => tag::I64;
        serialize_i128: i128 => tag::I128;
        serialize_u8: u8 => tag::U8;
        serialize_u16: u16 => tag::U16;
        serialize_u32: u32 => tag::U32;
        serialize_u64: u64 => tag::U64;
        serialize_u128: u128 => tag::U128;
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), HashError> {
        self.c.put_scalar(tag::F32, &v.to_bits().to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), HashError> {
        self.c.put_scalar(tag::F64, &v.to_bits().to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_char(self, v: char) -> Result<(), HashError> {
        self.c.put_scalar(tag::CHAR, &u32::from(v).to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), HashError> {
        self.c.put_header(tag::STR, v.len());
        self.c.put(v.as_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), HashError> {
        self.c.put_header(tag::BYTES, v.len());
        self.c.put(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), HashError> {
        self.c.put(&[tag::NONE]);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), HashError> {
        self.c.put(&[tag::SOME]);
        self.c.encode(value)
    }

    fn serialize_unit(self) -> Result<(), HashError> {
        self.c.put(&[tag::UNIT]);
        Ok(())
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<(), HashError> {
        self.c.put(&[tag::UNIT_STRUCT]);
        self.c.put_name(name);
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        _variant_index: u32,
        variant: &'static str,
    ) -> Result<(), HashError> {
        self.c.put(&[tag::UNIT_VARIANT]);
        self.c.put_name(name);
        self.c.put_name(variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        self.c.put(&[tag::NEWTYPE_STRUCT]);
        self.c.put_name(name);
        self.c.encode(value)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _variant_index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        self.c.put(&[tag::NEWTYPE_VARIANT]);
        self.c.put_name(name);
        self.c.put_name(variant);
        self.c.encode(value)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a, H>, HashError> {
        let set = if is_set_type(self.type_name) {
            Some(self.c.begin_unordered())
        } else {
            self.c.put(&[tag::SEQ]);
            None
        };
        Ok(Seq { c: self.c, set })
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, H>, HashError> {
        self.c.put_header(tag::TUPLE, len);
        Ok(Compound {
            c: self.c,
            declared: len,
            count: 0,
            skip: self.skip,
            kind: "tuple",
        })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, H>, HashError> {
        self.c.put(&[tag::TUPLE_STRUCT]);
        self.c.put_name(name);
        self.c.put(&(len as u64).to_le_bytes());
        Ok(Compound {
            c: self.c,
            declared: len,
            count: 0,
            skip: None,
            kind: name,
        })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _variant_index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, H>, HashError> {
        self.c.put(&[tag::TUPLE_VARIANT]);
        self.c.put_name(name);
        self.c.put_name(variant);
        self.c.put(&(len as u64).to_le_bytes());
        Ok(Compound {
            c: self.c,
            declared: len,
            count: 0,
            skip: None,
            kind: variant,
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'a, H>, HashError> {
        let u = self.c.begin_unordered();
        Ok(Map {
            c: self.c,
            u,
            entry_start: u.start,
            kind: if is_map_type(self.type_name) {
                Collection::Map
            } else {
                Collection::AnyMap
            },
        })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, H>, HashError> {
        self.c.put(&[tag::STRUCT]);
        self.c.put_name(name);
        self.c.put(&(len as u64).to_le_bytes());
        Ok(Compound {
            c: self.c,
            declared: len,
            count: 0,
            skip: None,
            kind: name,
        })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        _variant_index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, H>, HashError> {
        self.c.put(&[tag::STRUCT_VARIANT]);
        self.c.put_name(name);
        self.c.put_name(variant);
        self.c.put(&(len as u64).to_le_bytes());
        Ok(Compound {
            c: self.c,
            declared: len,
            count: 0,
            skip: None,
            kind: variant,
        })
    }
}

impl<H: StableHasher> ser::SerializeSeq for Seq<'_, H> {
    type Ok = ();
    type Error = HashError;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        if self.set.is_some() {
            let start = self.c.arena.len();
            self.c.encode(value)?;
            let end = self.c.arena.len();
            self.c.push_entry(start, end);
            Ok(())
        } else {
            self.c.encode(value)
        }
    }

    fn end(self) -> Result<(), HashError> {
        match self.set {
            Some(u) => self.c.end_unordered(Collection::Set, u),
            None => self.c.put(&[tag::SEQ_END]),
        }
        Ok(())
    }
}

impl<H: StableHasher> ser::SerializeTuple for Compound<'_, H> {
    type Ok = ();
    type Error = HashError;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        self.element(value)
    }

    fn end(self) -> Result<(), HashError> {
        Compound::end(self)
    }
}

impl<H: StableHasher> ser::SerializeTupleStruct for Compound<'_, H> {
    type Ok = ();
    type Error = HashError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        self.element(value)
    }

    fn end(self) -> Result<(), HashError> {
        Compound::end(self)
    }
}

impl<H: StableHasher> ser::SerializeTupleVariant for Compound<'_, H> {
    type Ok = ();
    type Error = HashError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        self.element(value)
    }

    fn end(self) -> Result<(), HashError> {
        Compound::end(self)
    }
}

impl<H: StableHasher> ser::SerializeStruct for Compound<'_, H> {
    type Ok = ();
    type Error = HashError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), HashError> {
        Compound::end(self)
    }
}

impl<H: StableHasher> ser::SerializeStructVariant for Compound<'_, H> {
    type Ok = ();
    type Error = HashError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), HashError> {
        Compound::end(self)
    }
}

impl<H: StableHasher> ser::SerializeMap for Map<'_, H> {
    type Ok = ();
    type Error = HashError;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), HashError> {
        self.entry_start = self.c.arena.len();
        self.c.encode(key)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        let key_end = self.c.arena.len();
        self.c.encode(value)?;
        self.c.push_entry(self.entry_start, key_end);
        Ok(())
    }

    fn end(self) -> Result<(), HashError> {
        self.c.end_unordered(self.kind, self.u);
        Ok(())
    }
}

#[cfg(test)]
#[path = "canonical_tests.rs"]
mod tests;
