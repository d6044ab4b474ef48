//! Numeric arrays in outputs: stored raw, loaded without decoding, memory-mapped on request.
//!
//! An [`Array`] is a shape and a run of numbers of one [`Element`] type. It can sit anywhere in
//! a function's output (a field of a struct, an item of a tuple or a `Vec`). When the output is
//! stored, each array's numbers are written raw, in little-endian order, at a 64-byte aligned
//! offset of the entry, straight from the array's memory (no copy, no encoding); the codec only
//! sees a small descriptor. When the output is loaded, each array views its numbers where they
//! already are:
//!
//! - in the buffer the entry was read or downloaded into (remote stores, or [`MmapMode::None`]),
//! - in a read-only memory map of the entry file ([`MmapMode::ReadOnly`]),
//! - in a private or shared map of its own region ([`MmapMode::CopyOnWrite`],
//!   [`MmapMode::ReadWrite`]).
//!
//! An array's storage decides what writing to it means. A read-only view offers no way to write
//! at all: [`Array::get_mut`] gives `None`, and [`Array::make_mut`] first copies the numbers into
//! memory the array owns, so the view itself is never written. See [`MmapMode`].
//!
//! Outside of Cachette's own encoding (for instance when an array is hashed as an argument, or
//! serialized to JSON by the user) an array serializes as its element type, its shape and its
//! numbers as little-endian bytes, so that two arrays with the same numbers but another shape or
//! element type are different values.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::ops::{Deref, Range};
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapMut, MmapOptions};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

mod sealed {
    pub trait Sealed {}
}

/// The element types an [`Array`] can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// `u8`.
    U8,
    /// `i8`.
    I8,
    /// `u16`.
    U16,
    /// `i16`.
    I16,
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `u64`.
    U64,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

const DTYPES: [DType; 10] = [
    DType::U8,
    DType::I8,
    DType::U16,
    DType::I16,
    DType::U32,
    DType::I32,
    DType::U64,
    DType::I64,
    DType::F32,
    DType::F64,
];

impl DType {
    /// The Rust name of the type (`"f64"`), which is also its stored form.
    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::U16 => "u16",
            DType::I16 => "i16",
            DType::U32 => "u32",
            DType::I32 => "i32",
            DType::U64 => "u64",
            DType::I64 => "i64",
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    /// The size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        DTYPES
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown element type {s:?}"))
    }
}

/// A number type an [`Array`] can hold: `u8`, `i8`, `u16`, `i16`, `u32`, `i32`, `u64`, `i64`,
/// `f32` and `f64`. Sealed: every bit pattern of these types is a valid value and they have no
/// padding, which is what lets arrays view stored bytes in place.
pub trait Element:
    sealed::Sealed + Copy + Default + PartialEq + fmt::Debug + Send + Sync + 'static
{
    /// The element type.
    const DTYPE: DType;

    /// The value whose little-endian representation is the native representation of `self`
    /// (the identity on little-endian targets).
    #[doc(hidden)]
    fn swap_le(self) -> Self;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            #[inline]
            fn swap_le(self) -> Self {
                <$t>::from_le_bytes(self.to_ne_bytes())
            }
        }
    )*};
}

element! {
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    u64 => U64, i64 => I64, f32 => F32, f64 => F64,
}

/// How stored arrays are loaded, as joblib's `mmap_mode`. Set on the `Memory` (builder
/// [`mmap_mode`](crate::MemoryBuilder::mmap_mode)) and overridden per function
/// ([`MemorizedFunc::mmap_mode`](crate::MemorizedFunc::mmap_mode), or `mmap_mode = ...` in
/// `#[memoize]`).
///
/// Memory maps need a local file: on the local disk every mode works as described. On stores
/// without local files (S3, Redis), arrays view the downloaded buffer in every mode: read-only
/// and copy-on-write behave as described, and read-write behaves as copy-on-write (a warning
/// says so when the mode is set on the memory or the function).
///
/// When a mode other than `None` is set, the call that computes a result (the miss) also
/// returns the loaded, mapped form of its output, as joblib does, so that both calls give the
/// same kind of array.
///
/// In configurations (serde) a mode is one of the names [`FromStr`] accepts, and is written as
/// its joblib name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum MmapMode {
    /// No map: the entry is read into memory (`"none"`). Arrays view that buffer;
    /// [`Array::make_mut`] copies an array before its first write.
    #[default]
    None,
    /// `"r"`: arrays view a read-only map of the entry file. Loading takes microseconds
    /// whatever the size, pages are read when touched and shared between processes. Nothing can
    /// write through the view: [`Array::get_mut`] is `None`.
    ReadOnly,
    /// `"c"`: each array is a private map of its region. Writes change only this process's
    /// copy of the touched pages; the stored entry is unchanged.
    CopyOnWrite,
    /// `"r+"` (or `"w+"`): each array is a shared map of its region, and writes reach the cache
    /// file. **This corrupts the cache**: later loads see the changed numbers, which no longer
    /// match the function's arguments nor the entry's checksums (a full check then rejects the
    /// entry). Use it only when that is what you want.
    ReadWrite,
}

impl MmapMode {
    /// The joblib name of the mode: `"none"`, `"r"`, `"c"` or `"r+"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MmapMode::None => "none",
            MmapMode::ReadOnly => "r",
            MmapMode::CopyOnWrite => "c",
            MmapMode::ReadWrite => "r+",
        }
    }

    /// Whether the mode maps entry files.
    pub fn maps(self) -> bool {
        self != MmapMode::None
    }
}

impl fmt::Display for MmapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<MmapMode> for &'static str {
    fn from(mode: MmapMode) -> &'static str {
        mode.as_str()
    }
}

impl TryFrom<String> for MmapMode {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for MmapMode {
    type Err = String;

    /// Accepts joblib's names (`none`, `r`, `c`, `r+`, `w+`) and the spelled-out ones
    /// (`read-only`, `copy-on-write`, `read-write`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "none" | "None" => Ok(MmapMode::None),
            "r" | "read-only" => Ok(MmapMode::ReadOnly),
            "c" | "copy-on-write" => Ok(MmapMode::CopyOnWrite),
            "r+" | "w+" | "read-write" => Ok(MmapMode::ReadWrite),
            other => Err(format!(
                "unknown mmap mode {other:?} (expected none, r, c, r+ or w+)"
            )),
        }
    }
}

/// Where an array's numbers live. See [`Array::storage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Storage {
    /// Memory the array owns (built by the user, or copied).
    Owned,
    /// A shared, read-only buffer in memory (an entry read or downloaded whole).
    Buffer,
    /// A read-only map of the entry file.
    MappedReadOnly,
    /// A private (copy-on-write) map of the array's region of the entry file.
    MappedCopyOnWrite,
    /// A shared, writable map of the array's region of the entry file.
    MappedReadWrite,
}

/// The error of building an array whose shape does not match its number of elements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shape {shape:?} holds {expected} elements, but {got} were given")]
pub struct ShapeError {
    shape: Vec<usize>,
    expected: String,
    got: usize,
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

enum Data<T: Element> {
    /// Memory the array owns; shared with clones and with an entry being written.
    Owned(Arc<Vec<T>>),
    /// Invariants: the pointer is aligned for `T`, the length is a multiple of its size, and
    /// the bytes are `T`s in native order.
    Shared { bytes: Bytes, mapped: bool },
    /// Same invariants as `Shared`.
    Mapped { map: MmapMut, shared: bool },
}

/// An n-dimensional array of numbers, in row-major order, that is stored raw and loaded in place.
/// See the [module documentation](self).
///
/// ```
/// use cachette_core::Array;
///
/// let a = Array::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap();
/// assert_eq!(a.shape(), &[2, 3]);
/// assert_eq!(a[4], 5.0);
/// assert_eq!(a.iter().sum::<f64>(), 21.0);
/// ```
pub struct Array<T: Element> {
    shape: Vec<usize>,
    data: Data<T>,
}

impl<T: Element> Array<T> {
    /// An array of the given shape over `data`, in row-major order.
    pub fn from_vec(data: Vec<T>, shape: impl Into<Vec<usize>>) -> Result<Self, ShapeError> {
        let shape = shape.into();
        match element_count(&shape) {
            Some(n) if n == data.len() => Ok(Array {
                shape,
                data: Data::Owned(Arc::new(data)),
            }),
            n => Err(ShapeError {
                expected: n.map_or_else(|| "more than usize::MAX".to_owned(), |n| n.to_string()),
                shape,
                got: data.len(),
            }),
        }
    }

    /// An array of the given shape filled with zeros.
    pub fn zeros(shape: impl Into<Vec<usize>>) -> Result<Self, ShapeError> {
        let shape = shape.into();
        let n = element_count(&shape).ok_or_else(|| ShapeError {
            shape: shape.clone(),
            expected: "more than usize::MAX".to_owned(),
            got: 0,
        })?;
        Array::from_vec(vec![T::default(); n], shape)
    }

    /// The shape: the length of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }

    /// The same numbers under another shape.
    pub fn reshape(self, shape: impl Into<Vec<usize>>) -> Result<Self, ShapeError> {
        let shape = shape.into();
        match element_count(&shape) {
            Some(n) if n == self.len() => Ok(Array {
                shape,
                data: self.data,
            }),
            n => Err(ShapeError {
                expected: n.map_or_else(|| "more than usize::MAX".to_owned(), |n| n.to_string()),
                shape,
                got: self.len(),
            }),
        }
    }

    /// The numbers, in row-major order.
    pub fn as_slice(&self) -> &[T] {
        match &self.data {
            Data::Owned(v) => v.as_slice(),
            Data::Shared { bytes, .. } => {
                // SAFETY: `bytes` is aligned for `T` and holds a whole number of `T`s in native
                // order (the invariant of `Data::Shared`, checked where it is built), every bit
                // pattern is a valid `T` (`Element` is sealed to primitive numbers), and the
                // slice borrows `self`, which keeps the buffer alive and unchanged (`Bytes` is
                // immutable).
                unsafe { cast_slice(bytes) }
            }
            Data::Mapped { map, .. } => {
                // SAFETY: as above; the map is owned by `self` and only written through
                // `&mut self`.
                unsafe { cast_slice(map) }
            }
        }
    }

    /// The numbers, writable, if this array's storage can be written in place: memory it owns
    /// alone, or a copy-on-write or read-write map. `None` for read-only views (and for owned
    /// memory shared with a clone).
    pub fn get_mut(&mut self) -> Option<&mut [T]> {
        match &mut self.data {
            Data::Owned(v) => Arc::get_mut(v).map(Vec::as_mut_slice),
            Data::Shared { .. } => None,
            Data::Mapped { map, .. } => {
                // SAFETY: the map is aligned for `T` and holds a whole number of them (the
                // invariant of `Data::Mapped`); any bytes written are valid `T`s; the borrow is
                // unique because it borrows `self` mutably.
                Some(unsafe { cast_slice_mut(map) })
            }
        }
    }

    /// The numbers, writable: copies them into memory the array owns first unless
    /// [`get_mut`](Self::get_mut) can give them in place. A read-only view is never written.
    pub fn make_mut(&mut self) -> &mut [T] {
        let in_place = match &mut self.data {
            Data::Owned(v) => Arc::get_mut(v).is_some(),
            Data::Shared { .. } => false,
            Data::Mapped { .. } => true,
        };
        if !in_place {
            self.data = Data::Owned(Arc::new(self.as_slice().to_vec()));
        }
        match self.get_mut() {
            Some(slice) => slice,
            // Unreachable: the storage was just made writable.
            None => &mut [],
        }
    }

    /// The numbers as a `Vec`, without copying when the array owns them alone.
    pub fn into_vec(self) -> Vec<T> {
        match self.data {
            Data::Owned(v) => Arc::try_unwrap(v).unwrap_or_else(|v| v.as_slice().to_vec()),
            _ => self.as_slice().to_vec(),
        }
    }

    /// Where the numbers live.
    pub fn storage(&self) -> Storage {
        match &self.data {
            Data::Owned(_) => Storage::Owned,
            Data::Shared { mapped: false, .. } => Storage::Buffer,
            Data::Shared { mapped: true, .. } => Storage::MappedReadOnly,
            Data::Mapped { shared: false, .. } => Storage::MappedCopyOnWrite,
            Data::Mapped { shared: true, .. } => Storage::MappedReadWrite,
        }
    }

    /// Whether the numbers are in a memory map of an entry file.
    pub fn is_mapped(&self) -> bool {
        matches!(
            self.storage(),
            Storage::MappedReadOnly | Storage::MappedCopyOnWrite | Storage::MappedReadWrite
        )
    }

    /// Writes the changes made through a read-write map to the file now (the system writes
    /// them back eventually anyway). Does nothing for other storages.
    pub fn flush(&self) -> std::io::Result<()> {
        match &self.data {
            Data::Mapped { map, shared: true } => map.flush(),
            _ => Ok(()),
        }
    }

    /// The numbers as little-endian bytes, shared with the array when possible.
    fn le_bytes(&self) -> Cow<'_, [u8]> {
        let slice = self.as_slice();
        if cfg!(target_endian = "little") {
            // SAFETY: a slice of primitive numbers (no padding) viewed as its bytes, for the
            // lifetime of the borrow of `self`.
            Cow::Borrowed(unsafe {
                std::slice::from_raw_parts(
                    slice.as_ptr().cast::<u8>(),
                    std::mem::size_of_val(slice),
                )
            })
        } else {
            let mut out = Vec::with_capacity(std::mem::size_of_val(slice));
            for x in slice {
                // `swap_le` is its own inverse (a byte swap or the identity).
                let le = x.swap_le();
                // SAFETY: as above, for one element.
                out.extend_from_slice(unsafe {
                    std::slice::from_raw_parts((&le as *const T).cast::<u8>(), size_of::<T>())
                });
            }
            Cow::Owned(out)
        }
    }

    /// The little-endian bytes as a shared buffer, without copying when possible: what is
    /// written into an entry.
    fn shared_le_bytes(&self) -> Bytes {
        if cfg!(target_endian = "little") {
            match &self.data {
                Data::Owned(v) => return Bytes::from_owner(OwnedBytes(Arc::clone(v))),
                Data::Shared { bytes, .. } => return bytes.clone(),
                Data::Mapped { .. } => {}
            }
        }
        Bytes::from(self.le_bytes().into_owned())
    }
}

/// Views a run of bytes as numbers.
///
/// # Safety
/// `bytes` must be aligned for `T` and hold a whole number of `T`s.
unsafe fn cast_slice<T: Element>(bytes: &[u8]) -> &[T] {
    debug_assert!(bytes.as_ptr().cast::<T>().is_aligned());
    debug_assert!(bytes.len().is_multiple_of(size_of::<T>()));
    // SAFETY: guaranteed by the caller; every bit pattern is a valid `T`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size_of::<T>()) }
}

/// Views a run of bytes as writable numbers.
///
/// # Safety
/// As [`cast_slice`].
unsafe fn cast_slice_mut<T: Element>(bytes: &mut [u8]) -> &mut [T] {
    debug_assert!(bytes.as_ptr().cast::<T>().is_aligned());
    // SAFETY: guaranteed by the caller; every bit pattern is a valid `T` and every `T` is valid
    // bytes.
    unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), bytes.len() / size_of::<T>())
    }
}

/// An owned vector of numbers seen as bytes, so that it can back a [`Bytes`] without a copy.
struct OwnedBytes<T: Element>(Arc<Vec<T>>);

impl<T: Element> AsRef<[u8]> for OwnedBytes<T> {
    fn as_ref(&self) -> &[u8] {
        let v = self.0.as_slice();
        // SAFETY: primitive numbers have no padding; the bytes live as long as `self`, and the
        // vector is never written while shared (writes go through `Arc::get_mut`, which fails
        // while this owner holds a reference).
        unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
    }
}

impl<T: Element> Deref for Array<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Element> AsRef<[T]> for Array<T> {
    fn as_ref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Element> From<Vec<T>> for Array<T> {
    /// A one-dimensional array.
    fn from(data: Vec<T>) -> Self {
        Array {
            shape: vec![data.len()],
            data: Data::Owned(Arc::new(data)),
        }
    }
}

impl<T: Element> From<&[T]> for Array<T> {
    /// A one-dimensional array holding a copy of `data`.
    fn from(data: &[T]) -> Self {
        Array::from(data.to_vec())
    }
}

impl<T: Element> Clone for Array<T> {
    /// Shares owned memory and in-memory buffers; copies the numbers of a writable map into
    /// owned memory (a map cannot be shared and stay writable).
    fn clone(&self) -> Self {
        let data = match &self.data {
            Data::Owned(v) => Data::Owned(Arc::clone(v)),
            Data::Shared { bytes, mapped } => Data::Shared {
                bytes: bytes.clone(),
                mapped: *mapped,
            },
            Data::Mapped { .. } => Data::Owned(Arc::new(self.as_slice().to_vec())),
        };
        Array {
            shape: self.shape.clone(),
            data,
        }
    }
}

impl<T: Element> PartialEq for Array<T> {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.as_slice() == other.as_slice()
    }
}

impl<T: Element> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let slice = self.as_slice();
        let mut s = f.debug_struct("Array");
        s.field("dtype", &T::DTYPE)
            .field("shape", &self.shape)
            .field("storage", &self.storage());
        if slice.len() <= SHOWN {
            s.field("data", &slice);
        } else {
            s.field("data", &format_args!("{:?}…", &slice[..SHOWN]));
        }
        s.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding and loading inside entries.

thread_local! {
    /// The arrays of the output being encoded into an entry, when one is.
    static SINK: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
    /// Where the arrays of the entry being loaded are, when one is.
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

/// Runs `encode` with arrays diverted out of line; gives its result and the arrays' bytes, in
/// the order of their descriptors.
pub(crate) fn encoding<R>(encode: impl FnOnce() -> R) -> (R, Vec<Bytes>) {
    let previous = SINK.with(|s| s.borrow_mut().replace(Vec::new()));
    let result = encode();
    let blobs = SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), previous));
    (result, blobs.unwrap_or_default())
}

/// Runs `decode` with out-of-line array descriptors resolved against `source`.
pub(crate) fn decoding<R>(source: Source, decode: impl FnOnce() -> R) -> R {
    struct Restore(Option<Source>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let _restore = Restore(SOURCE.with(|s| s.borrow_mut().replace(source)));
    decode()
}

/// The arrays of an entry being loaded.
#[derive(Debug)]
pub(crate) struct Source {
    /// The payload (decompressed if it was compressed).
    pub(crate) payload: Bytes,
    /// Each array's bytes within the payload.
    pub(crate) blobs: Vec<Range<usize>>,
    /// The payload is a read-only map of the entry file.
    pub(crate) mapped: bool,
    /// Map each array's region of this file instead (copy-on-write or read-write).
    pub(crate) map_regions: Option<RegionMaps>,
}

/// How to map arrays' regions of an entry file.
#[derive(Debug)]
pub(crate) struct RegionMaps {
    pub(crate) file: File,
    /// Where the payload starts in the file.
    pub(crate) payload_offset: u64,
    /// Shared, writable maps (read-write) rather than private ones (copy-on-write).
    pub(crate) shared: bool,
}

impl Source {
    fn array<T: Element>(&self, index: u64, len: usize) -> Result<Data<T>, String> {
        let range = usize::try_from(index)
            .ok()
            .and_then(|i| self.blobs.get(i))
            .ok_or_else(|| format!("the entry has no array #{index}"))?
            .clone();
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or_else(|| "array too large".to_owned())?;
        if range.len() != bytes {
            return Err(format!(
                "array #{index} holds {} bytes, its shape needs {bytes}",
                range.len()
            ));
        }
        if bytes == 0 {
            return Ok(Data::Owned(Arc::new(Vec::new())));
        }
        if let Some(maps) = &self.map_regions {
            let mut options = MmapOptions::new();
            options
                .offset(maps.payload_offset + range.start as u64)
                .len(bytes);
            // SAFETY: entry files are never written in place by Cachette (writes replace them by
            // renaming a new file over them), so the mapped bytes do not change under the
            // array, except through another read-write map, which `MmapMode::ReadWrite`
            // documents. Every bit pattern is a valid `T`.
            let map = unsafe {
                if maps.shared {
                    options.map_mut(&maps.file)
                } else {
                    options.map_copy(&maps.file)
                }
            }
            .map_err(|e| format!("cannot map array #{index}: {e}"))?;
            if cfg!(target_endian = "little") && map.as_ptr().cast::<T>().is_aligned() {
                return Ok(Data::Mapped {
                    map,
                    shared: maps.shared,
                });
            }
            return Ok(Data::Owned(Arc::new(copy_le(&map))));
        }
        let bytes = self.payload.slice(range);
        if cfg!(target_endian = "little") && bytes.as_ptr().cast::<T>().is_aligned() {
            Ok(Data::Shared {
                bytes,
                mapped: self.mapped,
            })
        } else {
            Ok(Data::Owned(Arc::new(copy_le(&bytes))))
        }
    }
}

/// Copies little-endian bytes into numbers.
fn copy_le<T: Element>(bytes: &[u8]) -> Vec<T> {
    let n = bytes.len() / size_of::<T>();
    let mut out = vec![T::default(); n];
    // SAFETY: `out` holds `n` initialised `T`s, which are `n * size_of::<T>()` bytes that any
    // byte values make valid `T`s; the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            out.as_mut_ptr().cast::<u8>(),
            n * size_of::<T>(),
        );
    }
    if cfg!(target_endian = "big") {
        for x in &mut out {
            *x = x.swap_le();
        }
    }
    out
}

/// Serializes `&[u8]` as bytes.
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

const STRUCT_NAME: &str = "cachette::Array";
const FIELDS: &[&str] = &["dtype", "shape", "data"];

impl<T: Element> Serialize for Array<T> {
    /// Inside an entry: the element type, the shape and the index of the array's bytes, which
    /// are written out of line. Elsewhere: the element type, the shape and the numbers as
    /// little-endian bytes.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct(STRUCT_NAME, 3)?;
        st.serialize_field("dtype", T::DTYPE.name())?;
        st.serialize_field("shape", &self.shape)?;
        let index = SINK.with(|sink| {
            sink.borrow_mut().as_mut().map(|blobs| {
                blobs.push(self.shared_le_bytes());
                (blobs.len() - 1) as u64
            })
        });
        match index {
            Some(index) => st.serialize_field("data", &index)?,
            None => st.serialize_field("data", &RawBytes(&self.le_bytes()))?,
        }
        st.end()
    }
}

/// The `data` field: inline bytes or the index of out-of-line bytes.
enum DataField {
    Inline(Vec<u8>),
    Index(u64),
}

impl<'de> Deserialize<'de> for DataField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DataField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("array bytes or the index of stored array bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DataField, E> {
                Ok(DataField::Index(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<DataField, E> {
                Ok(DataField::Inline(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<DataField, E> {
                Ok(DataField::Inline(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DataField, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(DataField::Inline(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de, T: Element> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);

        impl<T: Element> V<T> {
            fn build<E: de::Error>(
                dtype: String,
                shape: Vec<usize>,
                data: DataField,
            ) -> Result<Array<T>, E> {
                if dtype != T::DTYPE.name() {
                    return Err(E::custom(format!(
                        "stored array of {dtype}, expected an array of {}",
                        T::DTYPE
                    )));
                }
                let n = element_count(&shape)
                    .ok_or_else(|| E::custom(format!("impossible array shape {shape:?}")))?;
                let data = match data {
                    DataField::Inline(bytes) => {
                        if Some(bytes.len()) != n.checked_mul(size_of::<T>()) {
                            return Err(E::custom(format!(
                                "array of shape {shape:?} with {} bytes",
                                bytes.len()
                            )));
                        }
                        Data::Owned(Arc::new(copy_le(&bytes)))
                    }
                    DataField::Index(index) => SOURCE
                        .with(|s| match s.borrow().as_ref() {
                            Some(source) => source.array::<T>(index, n),
                            None => Err(
                                "an array stored out of line can only be loaded from its entry"
                                    .to_owned(),
                            ),
                        })
                        .map_err(E::custom)?,
                };
                Ok(Array { shape, data })
            }
        }

        impl<'de, T: Element> Visitor<'de> for V<T> {
            type Value = Array<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of {}", T::DTYPE)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Array<T>, A::Error> {
                let dtype = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let shape = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let data = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                Self::build(dtype, shape, data)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Array<T>, A::Error> {
                let (mut dtype, mut shape, mut data) = (None, None, None);
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match &*key {
                        "dtype" => dtype = Some(map.next_value()?),
                        "shape" => shape = Some(map.next_value()?),
                        "data" => data = Some(map.next_value()?),
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    }
                }
                Self::build(
                    dtype.ok_or_else(|| de::Error::missing_field("dtype"))?,
                    shape.ok_or_else(|| de::Error::missing_field("shape"))?,
                    data.ok_or_else(|| de::Error::missing_field("data"))?,
                )
            }
        }

        d.deserialize_struct(STRUCT_NAME, FIELDS, V(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// ndarray.

#[cfg(feature = "ndarray")]
mod nd {
    use super::{Array, Element};
    use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Dimension, IxDyn};

    impl<T: Element> Array<T> {
        /// The array as an `ndarray` view, without copying.
        pub fn view(&self) -> ArrayViewD<'_, T> {
            ArrayViewD::from_shape(IxDyn(&self.shape), self.as_slice())
                .expect("an array's shape always matches its length")
        }

        /// The array as a writable `ndarray` view, when [`get_mut`](Self::get_mut) allows.
        pub fn view_mut(&mut self) -> Option<ArrayViewMutD<'_, T>> {
            let shape = IxDyn(&self.shape);
            let slice = self.get_mut()?;
            Some(
                ArrayViewMutD::from_shape(shape, slice)
                    .expect("an array's shape always matches its length"),
            )
        }

        /// The array as an owned `ndarray` array (without copying when the array owns its
        /// numbers alone).
        pub fn into_ndarray(self) -> ArrayD<T> {
            let shape = IxDyn(&self.shape);
            ArrayD::from_shape_vec(shape, self.into_vec())
                .expect("an array's shape always matches its length")
        }
    }

    impl<T: Element, D: Dimension> From<ndarray::Array<T, D>> for Array<T> {
        /// Takes the numbers without copying when the array is in standard (row-major) layout,
        /// otherwise copies them in logical order.
        fn from(a: ndarray::Array<T, D>) -> Self {
            let shape = a.shape().to_vec();
            let data = if a.is_standard_layout() {
                let len = a.len();
                let (mut v, offset) = a.into_raw_vec_and_offset();
                let offset = offset.unwrap_or(0);
                if offset == 0 && v.len() == len {
                    v
                } else {
                    v.drain(offset..offset + len).collect()
                }
            } else {
                a.iter().copied().collect()
            };
            Array::from_vec(data, shape).expect("an ndarray's shape matches its length")
        }
    }

    impl<'a, T: Element, D: Dimension> From<ndarray::ArrayView<'a, T, D>> for Array<T> {
        /// Copies the numbers in logical (row-major) order.
        fn from(a: ndarray::ArrayView<'a, T, D>) -> Self {
            let shape = a.shape().to_vec();
            let data = match a.as_slice() {
                Some(s) => s.to_vec(),
                None => a.iter().copied().collect(),
            };
            Array::from_vec(data, shape).expect("an ndarray's shape matches its length")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_inline<T: Element>(a: &Array<T>) -> Array<T> {
        let mut out = Vec::new();
        crate::codec::encode_value(&crate::MessagePack, a, &mut out).unwrap();
        crate::codec::decode_value(&crate::MessagePack, &out).unwrap()
    }

    #[test]
    fn shapes_are_checked() {
        assert!(Array::from_vec(vec![1u8, 2, 3], [2, 2]).is_err());
        assert!(Array::from_vec(vec![0u8; 0], [usize::MAX, 2]).is_err());
        let a = Array::from_vec(vec![1i32; 6], [2, 3]).unwrap();
        assert_eq!(a.clone().reshape([3, 2]).unwrap().shape(), &[3, 2]);
        assert!(a.reshape([4]).is_err());
        assert_eq!(Array::<f32>::zeros([0, 5]).unwrap().len(), 0);
    }

    #[test]
    fn inline_serialization_round_trips() {
        let a = Array::from_vec((0..12).map(f64::from).collect(), [3, 4]).unwrap();
        let b = round_trip_inline(&a);
        assert_eq!(a, b);
        assert_eq!(b.storage(), Storage::Owned);
        let e: Array<u16> = Array::from(Vec::new());
        assert_eq!(round_trip_inline(&e), e);
    }

    #[test]
    fn wrong_element_type_is_an_error() {
        let a = Array::from(vec![1.0f32, 2.0]);
        let mut out = Vec::new();
        crate::codec::encode_value(&crate::MessagePack, &a, &mut out).unwrap();
        let err = crate::codec::decode_value::<Array<f64>>(&crate::MessagePack, &out).unwrap_err();
        assert!(err.0.contains("f32"), "{err}");
    }

    #[test]
    fn out_of_line_needs_a_source() {
        let a = Array::from(vec![1u64, 2, 3]);
        let (out, blobs) = encoding(|| {
            let mut out = Vec::new();
            crate::codec::encode_value(&crate::MessagePack, &(1u8, &a), &mut out).unwrap();
            out
        });
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[0].len(), 24);
        assert!(crate::codec::decode_value::<(u8, Array<u64>)>(&crate::MessagePack, &out).is_err());
        let source = Source {
            payload: blobs[0].clone(),
            blobs: std::iter::once(0..24).collect(),
            mapped: false,
            map_regions: None,
        };
        let back: (u8, Array<u64>) = decoding(source, || {
            crate::codec::decode_value(&crate::MessagePack, &out)
        })
        .unwrap();
        assert_eq!(back.1, a);
        assert_eq!(back.1.storage(), Storage::Buffer);
    }

    #[test]
    fn owned_memory_is_shared_without_copy_and_writes_copy_when_shared() {
        let mut a = Array::from(vec![1i64, 2, 3]);
        let bytes = a.shared_le_bytes();
        assert_eq!(bytes.as_ptr(), a.as_slice().as_ptr().cast::<u8>());
        assert!(a.get_mut().is_none(), "shared with an entry being written");
        drop(bytes);
        a.get_mut().unwrap()[0] = 10;
        let mut b = a.clone();
        b.make_mut()[1] = 20;
        assert_eq!(a.as_slice(), &[10, 2, 3]);
        assert_eq!(b.as_slice(), &[10, 20, 3]);
    }

    #[test]
    fn read_only_buffers_cannot_be_written_in_place() {
        let bytes = Bytes::from(vec![0u8; 16]);
        let mut a: Array<u32> = Array {
            shape: vec![4],
            data: Data::Shared {
                bytes: bytes.clone(),
                mapped: true,
            },
        };
        assert!(a.get_mut().is_none());
        a.make_mut()[0] = 7;
        assert_eq!(a.storage(), Storage::Owned);
        assert_eq!(&bytes[..], &[0u8; 16], "the view itself was never written");
    }

    #[test]
    fn mmap_modes_parse() {
        for (s, m) in [
            ("r", MmapMode::ReadOnly),
            ("c", MmapMode::CopyOnWrite),
            ("r+", MmapMode::ReadWrite),
            ("w+", MmapMode::ReadWrite),
            ("none", MmapMode::None),
            ("read-only", MmapMode::ReadOnly),
        ] {
            assert_eq!(s.parse::<MmapMode>().unwrap(), m);
        }
        assert!("rw".parse::<MmapMode>().is_err());
        assert_eq!(MmapMode::ReadOnly.to_string(), "r");
    }

    #[test]
    fn dtypes() {
        for d in DTYPES {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert_eq!(<f32 as Element>::DTYPE.size(), 4);
    }
}
