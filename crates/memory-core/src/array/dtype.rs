//! The element types of arrays ([`DType`], [`Element`]) and how arrays are loaded
//! ([`MmapMode`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod sealed {
    pub trait Sealed {}
}

/// The element types an [`Array`](crate::Array) can hold.
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

pub(super) const DTYPES: [DType; 10] = [
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

/// A number type an [`Array`](crate::Array) can hold: `u8`, `i8`, `u16`, `i16`, `u32`, `i32`, `u64`, `i64`,
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
    /// [`Array::make_mut`](crate::Array::make_mut) copies an array before its first write.
    #[default]
    None,
    /// `"r"`: arrays view a read-only map of the entry file. Loading takes microseconds
    /// whatever the size, pages are read when touched and shared between processes. Nothing can
    /// write through the view: [`Array::get_mut`](crate::Array::get_mut) is `None`. (An entry of
    /// at most 64 KiB that holds no array is read, not mapped, in every mode.)
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
