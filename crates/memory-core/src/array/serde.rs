//! How arrays are serialized: out of line inside an entry (their bytes become segments of the
//! entry, the codec sees a descriptor), inline elsewhere; and how descriptors are resolved
//! against the entry being loaded.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use super::{Array, Data, Element, cast, element_count};

thread_local! {
    /// The arrays of the output being encoded into an entry, when one is.
    static SINK: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
    /// Where the arrays of the entry being loaded are, when one is.
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

/// Puts back the sink it holds when dropped, a panic included: a sink left in place would make
/// every later array of the thread serialize as an index.
struct RestoreSink(Option<Option<Vec<Bytes>>>);

impl RestoreSink {
    /// Puts `sink` in place, keeping the one it replaces.
    fn put(sink: Option<Vec<Bytes>>) -> RestoreSink {
        RestoreSink(Some(
            SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), sink)),
        ))
    }

    /// Puts back the sink replaced; gives the one in place.
    fn end(mut self) -> Option<Vec<Bytes>> {
        let previous = self.0.take().flatten();
        SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), previous))
    }
}

impl Drop for RestoreSink {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            SINK.with(|s| *s.borrow_mut() = previous);
        }
    }
}

/// Runs `encode` with arrays diverted out of line; gives its result and the arrays' bytes, in
/// the order of their descriptors.
pub(crate) fn encoding<R>(encode: impl FnOnce() -> R) -> (R, Vec<Bytes>) {
    let restore = RestoreSink::put(Some(Vec::new()));
    let result = encode();
    (result, restore.end().unwrap_or_default())
}

/// Runs `f` with arrays serialized inline, as they are outside an entry: the arguments of a
/// call hashed while an output is encoded (a memoized call made by an output's `Serialize`)
/// are hashed by their numbers, not by the place their bytes would take in the entry.
#[inline]
pub(crate) fn outside_entries<R>(f: impl FnOnce() -> R) -> R {
    // Most calls are made outside any encoding: one look, no swap.
    if SINK.with(|s| s.borrow().is_none()) {
        return f();
    }
    let restore = RestoreSink::put(None);
    let result = f();
    restore.end();
    result
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
            let map = crate::map::map_region(
                &maps.file,
                maps.payload_offset + range.start as u64,
                bytes,
                maps.shared,
            )
            .map_err(|e| format!("cannot map array #{index}: {e}"))?;
            if cfg!(target_endian = "little") && cast::fits::<T>(&map) {
                return Ok(Data::Mapped {
                    map,
                    shared: maps.shared,
                });
            }
            return Ok(Data::Owned(Arc::new(cast::copy_le(&map))));
        }
        let bytes = self.payload.slice(range);
        if cfg!(target_endian = "little") && cast::fits::<T>(&bytes) {
            Ok(Data::Shared {
                bytes,
                mapped: self.mapped,
            })
        } else {
            Ok(Data::Owned(Arc::new(cast::copy_le(&bytes))))
        }
    }
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
                        Data::Owned(Arc::new(cast::copy_le(&bytes)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(array: &Array<f64>) -> cachette_hashing::Digest {
        cachette_hashing::hash(array).unwrap()
    }

    /// Arrays hashed while an output is encoded (a memoized call made by an output's
    /// `Serialize`) hashed as the index their bytes would take in the entry: two arrays of other
    /// numbers had one key.
    #[test]
    fn arrays_hash_by_their_numbers_while_an_output_is_encoded() {
        let (one, two) = (Array::from(vec![1.0f64]), Array::from(vec![2.0f64]));
        let outside = (digest(&one), digest(&two));
        assert_ne!(outside.0, outside.1);
        let (inside, blobs) = encoding(|| outside_entries(|| (digest(&one), digest(&two))));
        assert_eq!(inside, outside);
        assert!(blobs.is_empty(), "nothing diverted by the hashing");
        // The sink is back in place after it: the output's own arrays still go out of line.
        let (_, blobs) = encoding(|| {
            outside_entries(|| digest(&one));
            rmp_serde::to_vec(&two).unwrap()
        });
        assert_eq!(blobs.len(), 1);
    }

    /// An encoding that panics left its sink in place: every later array of the thread (on a
    /// pool's thread that goes on) serialized, and hashed, as an index.
    #[test]
    fn an_encoding_that_panics_leaves_no_sink() {
        let one = Array::from(vec![1.0f64]);
        let before = digest(&one);
        let panicked = std::panic::catch_unwind(|| encoding(|| panic!("an output's Serialize")));
        assert!(panicked.is_err());
        assert_eq!(digest(&one), before);
        assert_ne!(digest(&one), digest(&Array::from(vec![2.0f64])));
    }
}
