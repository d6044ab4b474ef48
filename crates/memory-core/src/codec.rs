//! Swappable serialization of outputs.
//!
//! A [`Codec`] turns a function's output into the payload of an entry and back. It is
//! object-safe (through `erased-serde`), so a `Memory` can hold any codec chosen at run time. The
//! default is MessagePack through `rmp-serde`. Decoding is data only: loading an entry never runs
//! code.

use std::any::Any;
use std::fmt::Debug;

use rmp_serde::decode::ReadRefReader;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The error of a codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

impl CodecError {
    fn new(e: impl std::fmt::Display) -> Self {
        CodecError(e.to_string())
    }
}

/// A serialization format for outputs.
///
/// Every `'static` type is [`Any`]: the bound lets the default codec, [`MessagePack`], be
/// recognised and run without type erasure.
pub trait Codec: Any + Debug + Send + Sync {
    /// A stable id, stored in each entry's metadata (`"msgpack"`).
    fn id(&self) -> &'static str;

    /// Appends the encoding of `value` to `out`.
    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError>;

    /// Decodes `bytes` by handing a deserializer to `visit`.
    fn decode<'de>(
        &self,
        bytes: &'de [u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'de>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError>;
}

/// Encodes a value with a codec.
pub fn encode_value<T: Serialize + ?Sized>(
    codec: &dyn Codec,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    if (codec as &dyn Any).is::<MessagePack>() {
        return MessagePack::encode_typed(value, out);
    }
    codec.encode(&value as &dyn erased_serde::Serialize, out)
}

/// Decodes a value with a codec.
pub fn decode_value<T: DeserializeOwned>(codec: &dyn Codec, bytes: &[u8]) -> Result<T, CodecError> {
    if (codec as &dyn Any).is::<MessagePack>() {
        return MessagePack::decode_typed(bytes);
    }
    let mut slot: Option<T> = None;
    codec.decode(bytes, &mut |de| {
        slot = Some(erased_serde::deserialize::<T>(de)?);
        Ok(())
    })?;
    slot.ok_or_else(|| CodecError("the codec produced no value".into()))
}

/// MessagePack, through `rmp-serde`, with structs as maps (so that adding an optional field to
/// an output type does not make old entries unreadable).
///
/// Decoding refuses values nested deeper than [`MessagePack::MAX_DEPTH`]: an entry is input
/// from whoever can write the store, and a value nested a thousand deep would otherwise
/// overflow the reader's stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack;

impl MessagePack {
    /// The deepest nesting of arrays, maps and structs a decoded value may have.
    pub const MAX_DEPTH: usize = 128;

    /// The deserializer every decoding goes through, typed or erased. Reading from the borrowed
    /// slice copies each string and byte string once.
    fn deserializer(bytes: &[u8]) -> rmp_serde::Deserializer<ReadRefReader<'_, [u8]>> {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        de.set_max_depth(MessagePack::MAX_DEPTH);
        de
    }

    /// Encodes a value of a known type; [`Codec::encode`] is this for an erased one.
    fn encode_typed<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        value.serialize(&mut ser).map_err(CodecError::new)
    }

    /// [`Codec::decode`] into a known type: the same checks, without type erasure.
    fn decode_typed<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        T::deserialize(&mut Self::deserializer(bytes)).map_err(CodecError::new)
    }
}

impl Codec for MessagePack {
    fn id(&self) -> &'static str {
        "msgpack"
    }

    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        Self::encode_typed(value, out)
    }

    fn decode<'de>(
        &self,
        bytes: &'de [u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'de>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError> {
        let mut de = Self::deserializer(bytes);
        let mut erased = <dyn erased_serde::Deserializer>::erase(&mut de);
        visit(&mut erased).map_err(CodecError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Another codec's type that writes MessagePack, under the id it holds: decoded through
    /// type erasure. Under another id than `msgpack`, it is a codec that parses another's bytes,
    /// as a new release of a codec may.
    #[derive(Debug)]
    struct Erased(&'static str);

    impl Codec for Erased {
        fn id(&self) -> &'static str {
            self.0
        }

        fn encode(
            &self,
            value: &dyn erased_serde::Serialize,
            out: &mut Vec<u8>,
        ) -> Result<(), CodecError> {
            MessagePack.encode(value, out)
        }

        fn decode<'de>(
            &self,
            bytes: &'de [u8],
            visit: &mut dyn FnMut(
                &mut dyn erased_serde::Deserializer<'de>,
            ) -> Result<(), erased_serde::Error>,
        ) -> Result<(), CodecError> {
            MessagePack.decode(bytes, visit)
        }
    }

    /// A hit decoded an entry with this memory's codec whatever codec wrote it: a codec that
    /// parses another's bytes gave another value, silently. An entry of another codec is now
    /// unusable for this memory (it warns and computes again), and a `MemorizedResult` of it
    /// does not load; the writer's own memory still hits.
    #[test]
    fn an_entry_of_another_codec_is_not_decoded() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        static RUNS: AtomicUsize = AtomicUsize::new(0);
        fn double(x: i64) -> i64 {
            RUNS.fetch_add(1, Ordering::SeqCst);
            x * 2
        }
        let backend = Arc::new(crate::plugin::InMemoryBackend::new());
        let warnings = Arc::new(AtomicUsize::new(0));
        let memory = |codec: Arc<dyn Codec>| {
            let warnings = warnings.clone();
            crate::Memory::builder()
                .backend(backend.clone())
                .codec(codec)
                .reporter(crate::Reporter::new(move |_| {
                    warnings.fetch_add(1, Ordering::SeqCst);
                }))
                .build()
                .unwrap()
        };
        let ours = memory(Arc::new(MessagePack));
        let theirs = memory(Arc::new(Erased("another")));
        let f = ours.cache_fn(double).name("double");
        let g = theirs.cache_fn(double).name("double");
        assert_eq!(f.eval(21), 42);
        let crate::Shelved::Memorized(shelved) = f.call_and_shelve(21) else {
            panic!("not stored");
        };
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
        assert!(
            theirs.resolve(&shelved).get().is_err(),
            "loaded with another codec"
        );
        // A call would not use it; its metadata still reads (nothing of it needs the codec).
        assert!(!g.check_call_in_cache(&21));
        let meta = theirs
            .entry_metadata(shelved.func(), shelved.args_id())
            .unwrap()
            .expect("the metadata");
        assert_eq!(meta.codec, "msgpack");
        assert_eq!(shelved.get().unwrap(), 42);
        assert_eq!(g.eval(21), 42);
        assert_eq!(RUNS.load(Ordering::SeqCst), 2, "decoded with another codec");
        assert!(warnings.load(Ordering::SeqCst) >= 1, "no warning");
        // Its own result now: a hit for it.
        assert_eq!(g.eval(21), 42);
        assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn round_trip() {
        let value: (Vec<f64>, BTreeMap<String, Option<i64>>, String) = (
            vec![1.0, f64::NAN.copysign(-1.0), 3.5],
            [("a".to_owned(), Some(1)), ("b".to_owned(), None)].into(),
            "é".into(),
        );
        let mut out = Vec::new();
        encode_value(&MessagePack, &value, &mut out).unwrap();
        let back: (Vec<f64>, BTreeMap<String, Option<i64>>, String) =
            decode_value(&MessagePack, &out).unwrap();
        assert_eq!(back.1, value.1);
        assert_eq!(back.0[0], 1.0);
        assert!(back.0[1].is_nan());
    }

    /// A value of any depth: `N(vec![N(vec![…])])`.
    #[derive(Debug, serde::Deserialize)]
    struct Nested(#[allow(dead_code)] Vec<Nested>);

    fn nested(depth: usize) -> Vec<u8> {
        let mut bytes = vec![0x91; depth - 1]; // arrays of one element
        bytes.push(0x90); // the empty array
        bytes
    }

    #[test]
    fn nesting_is_bounded_before_the_stack_is() {
        // On a thread with the default stack of spawned threads: 1,024 levels (the depth
        // rmp-serde allows by default) would overflow it.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let ok = decode_value::<Nested>(&MessagePack, &nested(MessagePack::MAX_DEPTH - 1));
                assert!(ok.is_ok(), "{ok:?}");
                for depth in [MessagePack::MAX_DEPTH + 1, 1024, 100_000] {
                    let err = decode_value::<Nested>(&MessagePack, &nested(depth)).unwrap_err();
                    assert!(err.0.contains("depth"), "{err:?}");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// The default codec runs without type erasure: the same bytes, values and refusals as
    /// through it.
    #[test]
    fn the_typed_path_agrees_with_the_erased_one() {
        type Value = (
            i64,
            Vec<f64>,
            BTreeMap<String, Option<i64>>,
            String,
            Vec<u8>,
        );
        let value: Value = (
            -7,
            vec![1.0, 2.5],
            [("a".to_owned(), Some(1)), ("b".to_owned(), None)].into(),
            "é".into(),
            vec![0, 255],
        );
        let (mut typed, mut erased) = (Vec::new(), Vec::new());
        encode_value(&MessagePack, &value, &mut typed).unwrap();
        encode_value(&Erased("msgpack"), &value, &mut erased).unwrap();
        assert_eq!(typed, erased);
        let back: Value = decode_value(&MessagePack, &typed).unwrap();
        assert_eq!(
            back,
            decode_value::<Value>(&Erased("msgpack"), &typed).unwrap()
        );
        assert_eq!(back, value);
        for bad in [&typed[..typed.len() - 1], &[0xc1], &nested(1024)[..]] {
            let (a, b) = (
                decode_value::<Value>(&MessagePack, bad).unwrap_err(),
                decode_value::<Value>(&Erased("msgpack"), bad).unwrap_err(),
            );
            assert!(!a.0.is_empty() && !b.0.is_empty(), "{a:?} {b:?}");
        }
        let deep = nested(MessagePack::MAX_DEPTH + 1);
        assert!(
            decode_value::<Nested>(&Erased("msgpack"), &deep)
                .unwrap_err()
                .0
                .contains("depth")
        );
    }

    #[test]
    fn wrong_type_is_an_error() {
        let mut out = Vec::new();
        encode_value(&MessagePack, &"text", &mut out).unwrap();
        assert!(decode_value::<u64>(&MessagePack, &out).is_err());
        assert!(decode_value::<u64>(&MessagePack, &[0xc1]).is_err());
        out.pop();
        assert!(
            decode_value::<String>(&MessagePack, &out).is_err(),
            "truncated"
        );
    }
}
