//! Finding out whether a value serializes as a tuple at the top level,
//! without serializing it.

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};

/// Implements every `Serializer` method except `serialize_tuple` as
/// `Err($err)`, with `Impossible` compound types.
macro_rules! reject_all_but_tuple {
    ($err:expr) => {
        type SerializeSeq = Impossible<Self::Ok, Self::Error>;
        type SerializeTupleStruct = Impossible<Self::Ok, Self::Error>;
        type SerializeTupleVariant = Impossible<Self::Ok, Self::Error>;
        type SerializeMap = Impossible<Self::Ok, Self::Error>;
        type SerializeStruct = Impossible<Self::Ok, Self::Error>;
        type SerializeStructVariant = Impossible<Self::Ok, Self::Error>;

        fn serialize_bool(self, _: bool) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_i8(self, _: i8) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_i16(self, _: i16) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_i32(self, _: i32) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_i64(self, _: i64) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_i128(self, _: i128) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_u8(self, _: u8) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_u16(self, _: u16) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_u32(self, _: u32) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_u64(self, _: u64) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_u128(self, _: u128) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_f32(self, _: f32) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_f64(self, _: f64) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_char(self, _: char) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_str(self, _: &str) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_none(self) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_unit(self) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
            Err($err)
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Self::Error> {
            Err($err)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Self::Error> {
            Err($err)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
            Err($err)
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Self::Error> {
            Err($err)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Self::Error> {
            Err($err)
        }
    };
}

pub(crate) use reject_all_but_tuple;

/// The outcome of probing, carried as the serializer's "error" so that the
/// value's `Serialize` impl stops at its first call.
#[derive(Debug)]
enum Probe {
    Tuple,
    Other,
    Custom,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Probe {}

impl ser::Error for Probe {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Probe::Custom
    }
}

struct TupleProbe;

impl ser::Serializer for TupleProbe {
    type Ok = ();
    type Error = Probe;
    type SerializeTuple = Impossible<(), Probe>;

    reject_all_but_tuple!(Probe::Other);

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Probe> {
        Err(Probe::Tuple)
    }
}

/// Whether `value` serializes as a tuple at the top level. Costs one call of
/// its `Serialize` impl, which stops at its first serializer call.
pub(crate) fn is_top_level_tuple<T: Serialize + ?Sized>(value: &T) -> bool {
    matches!(value.serialize(TupleProbe), Err(Probe::Tuple))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes() {
        assert!(is_top_level_tuple(&(1, 2)));
        assert!(is_top_level_tuple(&(1,)));
        assert!(is_top_level_tuple(&[1u8; 3]));
        assert!(!is_top_level_tuple(&()));
        assert!(!is_top_level_tuple(&1));
        assert!(!is_top_level_tuple(&vec![1]));
        assert!(!is_top_level_tuple(&Some((1, 2))));
        assert!(!is_top_level_tuple("ab"));
    }
}
