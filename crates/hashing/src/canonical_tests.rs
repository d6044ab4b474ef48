//! Tests of `canonical.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use super::*;

/// A hasher that records the bytes, to test the encoding itself.
#[derive(Default)]
struct Recorder(Vec<u8>, usize);

impl StableHasher for Recorder {
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        self.1 += 1;
    }

    fn finish(&self) -> Digest {
        Digest([0; 16])
    }
}

fn encode<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut rec = Recorder::default();
    let mut c = CanonicalHasher::new(&mut rec);
    c.add(v).unwrap();
    c.finish();
    rec.0
}

#[test]
fn scalar_bytes() {
    assert_eq!(encode(&true), [tag::BOOL, 1]);
    assert_eq!(encode(&5i32), [tag::I32, 5, 0, 0, 0]);
    assert_eq!(encode(&5usize), encode(&5u64));
    assert_eq!(encode(&-1isize), encode(&-1i64));
    assert_eq!(
        encode(&1.0f32),
        [&[tag::F32][..], &1.0f32.to_bits().to_le_bytes()].concat()
    );
    assert_eq!(encode(&'é'), [tag::CHAR, 0xe9, 0, 0, 0]);
    assert_eq!(encode("ab"), [tag::STR, 2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
    assert_eq!(encode(&None::<u8>), [tag::NONE]);
    assert_eq!(encode(&Some(())), [tag::SOME, tag::UNIT]);
}

#[test]
fn bulk_bytes() {
    let v = vec![1u16, 0x0203];
    assert_eq!(
        encode(&v),
        [
            tag::PRIM_ARRAY,
            tag::U16,
            2,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            1,
            0,
            3,
            2
        ]
    );
    let w: Vec<usize> = vec![1, 2];
    assert_eq!(encode(&w)[0], tag::SEQ);
    assert_eq!(*encode(&w).last().unwrap(), tag::SEQ_END);
}

#[test]
fn large_writes_bypass_staging() {
    let v = vec![7u8; 1 << 20];
    let mut rec = Recorder::default();
    let mut c = CanonicalHasher::new(&mut rec);
    c.add(&v).unwrap();
    c.finish();
    // Header flushed, then the megabyte in one write.
    assert_eq!(rec.1, 2);
    assert_eq!(rec.0.len(), 10 + (1 << 20));
}

#[test]
fn many_small_writes_are_staged() {
    let v: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let mut rec = Recorder::default();
    let mut c = CanonicalHasher::new(&mut rec);
    c.add(&v).unwrap();
    c.finish();
    assert!(rec.1 < rec.0.len() / 4096 + 2, "{} writes", rec.1);
}

/// A small key is staged in place, leaving the thread's spare buffer alone; bytes that
/// overflow the place move to a staging buffer in order.
#[test]
fn small_keys_are_staged_in_place() {
    // Leaves a spare buffer with the thread.
    encode(&vec!["x".repeat(100); 10]);
    let spare = || {
        SPARE.with(|s| {
            let buf = s.take();
            let capacity = buf.capacity();
            s.set(buf);
            capacity
        })
    };
    assert_eq!(spare(), STAGING);
    let mut rec = Recorder::default();
    let mut c = CanonicalHasher::new(&mut rec);
    c.add(&(42i64, "short")).unwrap();
    assert_eq!(spare(), STAGING, "a small key took the spare buffer");
    c.finish();
    assert_eq!(rec.1, 1, "one write: the staged bytes at the end");

    let parts: Vec<String> = (0..40).map(|i| "y".repeat(i * 3)).collect();
    let mut rec = Recorder::default();
    let mut c = CanonicalHasher::new(&mut rec);
    for part in &parts {
        c.add(part).unwrap();
    }
    c.finish();
    let expected: Vec<u8> = parts.iter().flat_map(encode).collect();
    assert_eq!(rec.0, expected);
}

#[test]
fn set_type_names() {
    assert!(is_set_type(std::any::type_name::<HashSet<i32>>()));
    assert!(is_set_type(std::any::type_name::<&HashSet<i32>>()));
    assert!(is_set_type(std::any::type_name::<&mut BTreeSet<i32>>()));
    assert!(is_set_type(std::any::type_name::<Box<HashSet<i32>>>()));
    assert!(is_set_type(std::any::type_name::<Arc<HashSet<i32>>>()));
    assert!(is_set_type(std::any::type_name::<Rc<&BTreeSet<i32>>>()));
    assert!(is_set_type(std::any::type_name::<
        std::borrow::Cow<'_, BTreeSet<i32>>,
    >()));
    assert!(!is_set_type(std::any::type_name::<Vec<HashSet<i32>>>()));
    assert!(!is_set_type(std::any::type_name::<HashMap<i32, i32>>()));
    assert!(!is_set_type(std::any::type_name::<Vec<i32>>()));
}

#[test]
fn map_type_names() {
    use std::collections::BTreeMap;
    assert!(is_map_type(std::any::type_name::<HashMap<i32, i32>>()));
    assert!(is_map_type(std::any::type_name::<&BTreeMap<i32, i32>>()));
    assert!(is_map_type(std::any::type_name::<Arc<HashMap<i32, i32>>>()));
    assert!(!is_map_type(std::any::type_name::<Vec<HashMap<i32, i32>>>()));
    assert!(!is_map_type(std::any::type_name::<HashSet<i32>>()));
    assert!(!is_map_type(std::any::type_name::<Pairs<'_>>()));
}

#[test]
fn nested_maps_are_sorted_in_place() {
    let mut a: HashMap<String, HashMap<u32, Vec<String>>> = HashMap::new();
    let mut b = HashMap::new();
    for i in 0..50u32 {
        let inner: HashMap<u32, Vec<String>> =
            (0..i).map(|j| (j, vec![format!("{i}-{j}")])).collect();
        a.insert(format!("k{i}"), inner);
    }
    for i in (0..50u32).rev() {
        let mut inner = HashMap::with_capacity(1000);
        for j in (0..i).rev() {
            inner.insert(j, vec![format!("{i}-{j}")]);
        }
        b.insert(format!("k{i}"), inner);
    }
    assert_eq!(encode(&a), encode(&b));
    // Same bytes as a BTreeMap of BTreeMaps.
    let c: std::collections::BTreeMap<_, std::collections::BTreeMap<_, _>> = a
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|(x, y)| (*x, y.clone())).collect()))
        .collect();
    assert_eq!(encode(&a), encode(&c));
}

#[test]
fn state_is_clean_after_error() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("nope"))
        }
    }
    let mut m = HashMap::new();
    m.insert(1, Fails);
    let mut c = CanonicalHasher::new(Recorder::default());
    let err = c.add(&m).unwrap_err();
    assert!(err.to_string().contains("nope"));
    assert_eq!(c.depth, 0);
    assert!(c.arena.is_empty());
    c.add(&1u8).unwrap();
}

#[test]
fn wrong_field_count_is_an_error() {
    struct Liar;
    impl Serialize for Liar {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            let mut st = s.serialize_struct("Liar", 2)?;
            st.serialize_field("a", &1u8)?;
            st.end()
        }
    }
    let mut c = CanonicalHasher::new(Recorder::default());
    assert!(c.add(&Liar).is_err());
}

#[test]
fn digest_in_one_go_is_new_add_finish() {
    use crate::algorithm::{LazyHasher, Xxh3};
    let long = "x".repeat(10_000);
    for args in [vec!["a".to_owned()], vec!["b".to_owned(), long]] {
        let mut c = CanonicalHasher::new(LazyHasher::new(&Xxh3));
        c.add_raw(b"state");
        c.add_args(&args, &[1]).unwrap();
        let by_parts = c.finish();
        let in_one_go = CanonicalHasher::digest(LazyHasher::new(&Xxh3), |c| {
            c.add_raw(b"state");
            c.add_args(&args, &[1])
        })
        .unwrap();
        assert_eq!(in_one_go, by_parts);
    }
    let failed = CanonicalHasher::digest(LazyHasher::new(&Xxh3), |_| Err("no"));
    assert_eq!(failed, Err("no"));
}

/// Entries given in order, as a `Serialize` impl may give them: a key may come twice.
struct Pairs<'a>(&'a [(&'a str, i32)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A map that gives a key twice is another value in another order (its deserializer keeps
/// the last): `{"a": 1, "a": 2}` and `{"a": 2, "a": 1}` had one digest, so two calls whose
/// arguments deserialize differently shared a result.
#[test]
fn a_map_that_repeats_a_key_keeps_its_order() {
    let one = encode(&Pairs(&[("a", 1), ("a", 2)]));
    let other = encode(&Pairs(&[("a", 2), ("a", 1)]));
    assert_ne!(one, other);
    assert_eq!(one[0], tag::MAP_IN_ORDER);
    // Entries in the order given: the key's bytes, then the value's.
    let mut spelled = vec![tag::MAP_IN_ORDER, 2, 0, 0, 0, 0, 0, 0, 0];
    for v in [1i32, 2] {
        spelled.extend(encode("a"));
        spelled.extend(encode(&v));
    }
    assert_eq!(one, spelled);
    // A map with distinct keys still hashes whatever its order.
    assert_eq!(
        encode(&Pairs(&[("a", 1), ("b", 2)])),
        encode(&Pairs(&[("b", 2), ("a", 1)]))
    );
    assert_eq!(encode(&Pairs(&[("a", 1), ("b", 2)]))[0], tag::MAP);
    // Maps of known types have distinct keys: the same bytes, with no check.
    assert_eq!(
        encode(&HashMap::from([("a", 1), ("b", 2)])),
        encode(&Pairs(&[("b", 2), ("a", 1)]))
    );

    // Past the pairwise comparison: a repeated key among many, found by its hash.
    let mut many: Vec<(String, i32)> = (0..100).map(|i| (format!("k{i}"), i)).collect();
    let distinct: Vec<(&str, i32)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut reversed = distinct.clone();
    reversed.reverse();
    assert_eq!(encode(&Pairs(&distinct)), encode(&Pairs(&reversed)));
    many.push(("k7".into(), -1));
    let repeated: Vec<(&str, i32)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut swapped = repeated.clone();
    let last = swapped.len() - 1;
    swapped.swap(7, last);
    assert_ne!(encode(&Pairs(&repeated)), encode(&Pairs(&swapped)));
    assert_eq!(encode(&Pairs(&repeated))[0], tag::MAP_IN_ORDER);
}

/// serde's derive repeats a key when a flattened map holds a name of the struct: the two
/// structs below deserialize to different values and had one digest.
#[test]
fn a_flattened_map_that_holds_a_field_name_keeps_its_order() {
    #[derive(Serialize)]
    struct Config {
        name: &'static str,
        #[serde(flatten)]
        extra: HashMap<&'static str, &'static str>,
    }
    let one = Config {
        name: "a",
        extra: HashMap::from([("name", "b")]),
    };
    let other = Config {
        name: "b",
        extra: HashMap::from([("name", "a")]),
    };
    assert_ne!(encode(&one), encode(&other));
    // Nested in another map, as well.
    let outer = |c: Config| HashMap::from([("config", c)]);
    assert_ne!(encode(&outer(one)), encode(&outer(other)));
}
