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
#[allow(unsafe_code)] // Views of bytes as numbers; each function checks what it relies on.
mod cast;
mod dtype;
#[cfg(feature = "ndarray")]
mod nd;
mod serde;

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::MmapMut;

pub use dtype::{DType, Element, MmapMode};
pub(crate) use serde::{RegionMaps, Source, decoding, encoding, outside_entries};

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
            // The buffers of `Shared` and `Mapped` are checked to fit where they are built, so
            // the views always succeed.
            Data::Shared { bytes, .. } => cast::view(bytes).unwrap_or_default(),
            Data::Mapped { map, .. } => cast::view(map).unwrap_or_default(),
        }
    }

    /// The numbers, writable, if this array's storage can be written in place: memory it owns
    /// alone, or a copy-on-write or read-write map. `None` for read-only views (and for owned
    /// memory shared with a clone).
    pub fn get_mut(&mut self) -> Option<&mut [T]> {
        match &mut self.data {
            Data::Owned(v) => Arc::get_mut(v).map(Vec::as_mut_slice),
            Data::Shared { .. } => None,
            Data::Mapped { map, .. } => cast::view_mut(map),
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
            Cow::Borrowed(cast::bytes_of(slice))
        } else {
            let mut out = Vec::with_capacity(std::mem::size_of_val(slice));
            for x in slice {
                // `swap_le` is its own inverse (a byte swap or the identity).
                let le = x.swap_le();
                out.extend_from_slice(cast::bytes_of(std::slice::from_ref(&le)));
            }
            Cow::Owned(out)
        }
    }

    /// The little-endian bytes as a shared buffer, without copying when possible: what is
    /// written into an entry.
    fn shared_le_bytes(&self) -> Bytes {
        if cfg!(target_endian = "little") {
            match &self.data {
                Data::Owned(v) => return Bytes::from_owner(cast::OwnedBytes(Arc::clone(v))),
                Data::Shared { bytes, .. } => return bytes.clone(),
                Data::Mapped { .. } => {}
            }
        }
        Bytes::from(self.le_bytes().into_owned())
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

#[cfg(test)]
mod tests {
    use super::dtype::DTYPES;
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
