//! Behavioural tests of the canonical hash: order independence, ambiguity
//! cases, the bulk path, argument skipping, readable forms and `Digest`.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachette_hashing::{
    CanonicalHasher, Digest, HashAlgorithm, StableHasher, Xxh3, Xxh3Hasher, hash, hash_with,
    readable, readable_args,
};
use serde::{Deserialize, Serialize};

fn h<T: Serialize + ?Sized>(v: &T) -> Digest {
    hash(v).unwrap()
}

fn all_distinct(digests: &[Digest]) {
    for (i, a) in digests.iter().enumerate() {
        for (j, b) in digests.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "values {i} and {j} collide");
        }
    }
}

// ---------------------------------------------------------------- maps & sets

#[test]
fn hashmap_is_order_independent() {
    let keys: Vec<String> = (0..2000).map(|i| format!("key-{i}")).collect();
    let mut a = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        a.insert(k.clone(), i as i64);
    }
    let mut b = HashMap::with_capacity_and_hasher(100_000, RandomState::new());
    for (i, k) in keys.iter().enumerate().rev() {
        b.insert(k.clone(), i as i64);
    }
    let mut c: HashMap<String, i64> = HashMap::with_hasher(RandomState::new());
    for (i, k) in keys
        .iter()
        .enumerate()
        .step_by(2)
        .chain(keys.iter().enumerate().skip(1).step_by(2))
    {
        c.insert(k.clone(), i as i64);
    }
    // Make sure the iteration orders really differ, so the test means something.
    let order_a: Vec<_> = a.keys().take(20).collect();
    let order_b: Vec<_> = b.keys().take(20).collect();
    assert_ne!(order_a, order_b);
    assert_eq!(h(&a), h(&b));
    assert_eq!(h(&a), h(&c));
    let sorted: BTreeMap<_, _> = a.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(h(&a), h(&sorted));

    b.insert("key-0".into(), 1);
    assert_ne!(h(&a), h(&b));
}

#[test]
fn hashset_is_order_independent() {
    let a: HashSet<u64> = (0..5000).collect();
    let mut b = HashSet::with_capacity_and_hasher(50_000, RandomState::new());
    for i in (0..5000u64).rev() {
        b.insert(i);
    }
    assert_ne!(
        a.iter().take(20).collect::<Vec<_>>(),
        b.iter().take(20).collect::<Vec<_>>()
    );
    assert_eq!(h(&a), h(&b));
    let bt: BTreeSet<u64> = (0..5000).collect();
    assert_eq!(h(&a), h(&bt));
    // Behind references and smart pointers too.
    assert_eq!(h(&a), h(&&b));
    assert_eq!(h(&a), h(&Box::new(b.clone())));
    assert_eq!(h(&a), h(&Arc::new(b.clone())));
    assert_eq!(h(&a), h(&Cow::<HashSet<u64>>::Borrowed(&b)));
    // A set is not the sequence of its elements, nor a map.
    let v: Vec<u64> = bt.iter().copied().collect();
    assert_ne!(h(&bt), h(&v));
    let as_seq: Vec<u64> = bt.iter().copied().collect::<Vec<_>>();
    assert_ne!(h(&bt), h(&as_seq));
}

#[test]
fn nested_sets_and_maps_are_canonical() {
    #[derive(Serialize)]
    struct Holder {
        tags: HashSet<String>,
        by_name: HashMap<String, HashSet<i32>>,
        maybe: Option<HashSet<u8>>,
        list: Vec<HashSet<u8>>,
    }
    let make = |rev: bool| {
        let mut names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
        if rev {
            names.reverse();
        }
        let mut by_name = HashMap::with_hasher(RandomState::new());
        for (i, n) in names.iter().enumerate() {
            let mut s = HashSet::with_hasher(RandomState::new());
            let len = n[1..].parse::<i32>().unwrap();
            for j in 0..len {
                s.insert(if rev { len - 1 - j } else { j } * 3);
            }
            let _ = i;
            by_name.insert(n.clone(), s);
        }
        let mut tags = HashSet::with_hasher(RandomState::new());
        tags.extend(names.iter().cloned());
        let small: HashSet<u8> = if rev {
            (0..50).rev().collect()
        } else {
            (0..50).collect()
        };
        Holder {
            tags: tags.into_iter().collect(),
            by_name: by_name
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            maybe: Some(small.clone()),
            list: vec![small.clone(), small],
        }
    };
    assert_eq!(h(&make(false)), h(&make(true)));
}

#[test]
fn maps_differ_from_sets_and_seqs() {
    let m: BTreeMap<u8, ()> = [(1, ()), (2, ())].into();
    let s: BTreeSet<u8> = [1, 2].into();
    let pairs: Vec<(u8, ())> = vec![(1, ()), (2, ())];
    all_distinct(&[h(&m), h(&s), h(&pairs)]);
}

// ------------------------------------------------------------ ambiguity cases

#[test]
fn string_boundaries_matter() {
    assert_ne!(h(&("ab", "c")), h(&("a", "bc")));
    assert_ne!(h(&vec!["ab", "c"]), h(&vec!["a", "bc"]));
    assert_ne!(h(&(vec![1u8, 2], vec![3u8])), h(&(vec![1u8], vec![2u8, 3])));
    assert_ne!(h(""), h(&()));
}

#[test]
fn empty_things_differ() {
    all_distinct(&[
        h(&None::<()>),
        h(&()),
        h(&Vec::<i32>::new()),
        h(&Vec::<String>::new()),
        h(&Vec::<i64>::new()),
        h(&Some(())),
        h(&Some(None::<()>)),
        h(""),
        h(&BTreeMap::<u8, u8>::new()),
        h(&BTreeSet::<u8>::new()),
        h(&((),)),
        h(&serde_bytes_like(&[])),
    ]);
}

/// A value that serializes through `serialize_bytes`.
fn serde_bytes_like(b: &[u8]) -> impl Serialize + '_ {
    struct Bytes<'a>(&'a [u8]);
    impl Serialize for Bytes<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    Bytes(b)
}

#[test]
fn integer_widths_and_signs_differ() {
    all_distinct(&[
        h(&5i8),
        h(&5i16),
        h(&5i32),
        h(&5i64),
        h(&5i128),
        h(&5u8),
        h(&5u16),
        h(&5u32),
        h(&5u64),
        h(&5u128),
        h(&5.0f32),
        h(&5.0f64),
        h(&'5'),
        h("5"),
    ]);
    // usize and isize are u64 and i64 on every platform.
    assert_eq!(h(&5usize), h(&5u64));
    assert_eq!(h(&-5isize), h(&-5i64));
}

#[test]
fn floats_by_bits() {
    assert_ne!(h(&0.0f64), h(&-0.0f64));
    assert_eq!(h(&f64::NAN), h(&f64::NAN));
    assert_ne!(h(&f64::NAN), h(&f64::from_bits(f64::NAN.to_bits() | 1)));
}

mod v1 {
    #[derive(serde::Serialize)]
    pub(crate) struct Point {
        pub(crate) x: i32,
        pub(crate) y: i32,
    }
    #[derive(serde::Serialize)]
    pub(crate) enum Shape {
        Circle(f64),
        Square(f64),
    }
    #[derive(serde::Serialize)]
    pub(crate) struct Samples {
        pub(crate) values: Vec<f64>,
    }
}
mod renamed_field {
    #[derive(serde::Serialize)]
    pub(crate) struct Point {
        pub(crate) x: i32,
        pub(crate) z: i32,
    }
}
mod renamed_struct {
    #[derive(serde::Serialize)]
    pub(crate) struct Pointe {
        pub(crate) x: i32,
        pub(crate) y: i32,
    }
}
mod reordered_variants {
    #[derive(serde::Serialize)]
    pub(crate) enum Shape {
        Square(f64),
        Circle(f64),
    }
}
mod renamed_variant {
    #[derive(serde::Serialize)]
    pub(crate) enum Shape {
        Round(f64),
        Square(f64),
    }
}
mod boxed_samples {
    #[derive(serde::Serialize)]
    pub(crate) struct Samples {
        pub(crate) values: Box<[f64]>,
    }
}

#[test]
fn names_count_and_variant_indices_do_not() {
    let p = h(&v1::Point { x: 1, y: 2 });
    assert_ne!(p, h(&renamed_field::Point { x: 1, z: 2 }));
    assert_ne!(p, h(&renamed_struct::Pointe { x: 1, y: 2 }));
    assert_ne!(p, h(&(1i32, 2i32)));
    let c = h(&v1::Shape::Circle(1.0));
    assert_eq!(c, h(&reordered_variants::Shape::Circle(1.0)));
    assert_ne!(c, h(&renamed_variant::Shape::Round(1.0)));
    assert_ne!(c, h(&v1::Shape::Square(1.0)));
    assert_eq!(
        h(&v1::Shape::Square(1.0)),
        h(&reordered_variants::Shape::Square(1.0))
    );
    assert_eq!(
        h(&v1::Shape::Square(1.0)),
        h(&renamed_variant::Shape::Square(1.0))
    );
    // The bulk field is the same whatever its container.
    assert_eq!(
        h(&v1::Samples {
            values: vec![1.0, 2.0]
        }),
        h(&boxed_samples::Samples {
            values: vec![1.0, 2.0].into_boxed_slice()
        })
    );
}

// ------------------------------------------------------------------ bulk path

#[test]
fn bulk_containers_agree() {
    let v: Vec<f64> = (0..10_000).map(|i| f64::from(i) * 0.5).collect();
    let d = h(&v);
    let s: &[f64] = &v;
    assert_eq!(d, h(s));
    assert_eq!(d, h(&s));
    assert_eq!(d, h(&v.clone().into_boxed_slice()));
    assert_eq!(d, h(&Arc::<[f64]>::from(s)));
    assert_eq!(d, h(&Rc::<[f64]>::from(s)));
    assert_eq!(d, h(&Cow::Borrowed(s)));
    assert_eq!(d, h(&&v));
    assert_eq!(h(&Some(v.clone())), h(&Some(s)));
    assert_eq!(h(&(1u8, &v)), h(&(1u8, s)));
    let mut m = v.clone();
    let ms: &mut [f64] = &mut m;
    assert_eq!(d, h(&ms));
}

#[test]
fn bulk_element_type_counts() {
    let f: Vec<f32> = vec![1.0, -2.5, f32::NAN];
    let u: Vec<u32> = f.iter().map(|x| x.to_bits()).collect();
    let i: Vec<i32> = u.iter().map(|&x| x as i32).collect();
    all_distinct(&[h(&f), h(&u), h(&i)]);
    let bytes: Vec<u8> = vec![1, 2, 3];
    let signed: Vec<i8> = vec![1, 2, 3];
    all_distinct(&[h(&bytes), h(&signed), h(&serde_bytes_like(&bytes))]);
}

#[test]
fn bulk_large_vector() {
    let n = 10 * 1024 * 1024 / 8;
    let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let d = h(&v);
    assert_eq!(d, h(&v.clone()));
    let mut w = v.clone();
    w[n / 2] += 1e-9;
    assert_ne!(d, h(&w));
    let mut w = v.clone();
    w[n - 1] = -w[n - 1];
    assert_ne!(d, h(&w));
}

// ------------------------------------------------------------------ add_args

#[test]
fn add_args_skips_positions() {
    let digest = |v: &dyn erased::Hashable, skip: &[usize]| v.digest(skip);
    let a = digest(&(1, true), &[1]);
    let b = digest(&(1, false), &[1]);
    let c = digest(&(1, false), &[]);
    assert_eq!(a, b);
    assert_ne!(b, c);
    // No skip is the same as `add`.
    assert_eq!(c, h(&(1, false)));
    // Skipping keeps positions: (x, skipped) is not (x,).
    assert_ne!(digest(&(1, true), &[1]), digest(&(1,), &[]));
    // A non-tuple value is element 0.
    assert_eq!(digest(&5u8, &[1]), h(&5u8));
    assert_eq!(digest(&5u8, &[0]), digest(&6u8, &[0]));
    assert_ne!(digest(&5u8, &[0]), h(&5u8));
    // Only the top-level tuple is split.
    assert_ne!(digest(&((1, 2), 3), &[1]), digest(&((1, 9), 3), &[1]));
    assert_eq!(digest(&((1, 2), 3), &[1]), digest(&((1, 2), 4), &[1]));
}

/// Lets the test above pass values of different types through one closure.
mod erased {
    use super::*;
    pub(crate) trait Hashable {
        fn digest(&self, skip: &[usize]) -> Digest;
    }
    impl<T: Serialize> Hashable for T {
        fn digest(&self, skip: &[usize]) -> Digest {
            let mut c = CanonicalHasher::new(Xxh3Hasher::default());
            c.add_args(self, skip).unwrap();
            c.finish()
        }
    }
}

#[test]
fn add_raw_is_distinct_from_values() {
    let mut a = CanonicalHasher::new(Xxh3Hasher::default());
    a.add_raw(b"name");
    let mut b = CanonicalHasher::new(Xxh3Hasher::default());
    b.add("name").unwrap();
    let mut c = CanonicalHasher::new(Xxh3Hasher::default());
    c.add_raw(b"na");
    c.add_raw(b"me");
    all_distinct(&[a.finish(), b.finish(), c.finish()]);
}

// ------------------------------------------------------------- hashers

#[test]
fn boxed_dyn_hasher_matches_concrete() {
    #[derive(Serialize)]
    struct Mixed {
        name: String,
        values: Vec<f64>,
        map: HashMap<String, Vec<u8>>,
    }
    let value = Mixed {
        name: "x".repeat(5000),
        values: (0..3000).map(f64::from).collect(),
        map: (0..300)
            .map(|i| (i.to_string(), vec![i as u8; i]))
            .collect(),
    };
    let mut concrete = CanonicalHasher::new(Xxh3Hasher::default());
    concrete.add(&value).unwrap();
    let concrete = concrete.finish();
    assert_eq!(hash_with(&Xxh3, &value).unwrap(), concrete);
    assert_eq!(h(&value), concrete);
    let mut inner = Xxh3Hasher::default();
    let mut by_ref = CanonicalHasher::new(&mut inner);
    by_ref.add(&value).unwrap();
    assert_eq!(by_ref.finish(), concrete);
    let boxed: Box<dyn StableHasher + Send> = Xxh3.hasher();
    let mut c = CanonicalHasher::new(boxed);
    c.add(&value).unwrap();
    assert_eq!(c.finish(), concrete);
}

#[test]
fn errors_are_reported() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no way"))
        }
    }
    let err = hash(&(1, Fails)).unwrap_err();
    assert!(err.to_string().contains("no way"), "{err}");
    let _: &dyn std::error::Error = &err;
}

// ------------------------------------------------------------------ readable

#[derive(Serialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Meters(f64);

#[derive(Serialize)]
struct Pair(u8, u8);

#[derive(Serialize)]
enum E {
    A,
    B(i32),
    C(i32, String),
    D { a: bool },
}

#[test]
fn readable_small_values() {
    assert_eq!(readable(&3, 80), "3");
    assert_eq!(readable(&-3i128, 80), "-3");
    assert_eq!(readable(&true, 80), "true");
    assert_eq!(readable(&1.0f64, 80), "1.0");
    assert_eq!(readable(&'c', 80), "'c'");
    assert_eq!(readable("text", 80), "\"text\"");
    assert_eq!(readable("a\"b\n", 80), "\"a\\\"b\\n\"");
    assert_eq!(readable(&vec![1.0, 2.0], 80), "[1.0, 2.0]");
    assert_eq!(readable(&Point { x: 1, y: 2 }, 80), "Point { x: 1, y: 2 }");
    assert_eq!(readable(&Some(3), 80), "Some(3)");
    assert_eq!(readable(&None::<i32>, 80), "None");
    assert_eq!(readable(&(), 80), "()");
    assert_eq!(readable(&(1,), 80), "(1,)");
    assert_eq!(readable(&(1, "a"), 80), "(1, \"a\")");
    assert_eq!(readable(&BTreeMap::from([("a", 1)]), 80), "{\"a\": 1}");
    assert_eq!(readable(&Unit, 80), "Unit");
    assert_eq!(readable(&Meters(2.5), 80), "Meters(2.5)");
    assert_eq!(readable(&Pair(1, 2), 80), "Pair(1, 2)");
    assert_eq!(readable(&E::A, 80), "A");
    assert_eq!(readable(&E::B(1), 80), "B(1)");
    assert_eq!(readable(&E::C(1, "x".into()), 80), "C(1, \"x\")");
    assert_eq!(readable(&E::D { a: true }, 80), "D { a: true }");
    assert_eq!(readable(&serde_bytes_like(&[1, 2]), 80), "[1, 2]");
}

/// Serializes like the core crate's `cachette::Array`.
fn array_like<'a>(dtype: &'a str, shape: &'a [usize], data: &'a [u8]) -> impl Serialize + 'a {
    struct A<'a>(&'a str, &'a [usize], &'a [u8]);
    impl Serialize for A<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            let mut st = s.serialize_struct("cachette::Array", 3)?;
            st.serialize_field("dtype", self.0)?;
            st.serialize_field("shape", self.1)?;
            st.serialize_field("data", &serde_bytes_like(self.2))?;
            st.end()
        }
    }
    A(dtype, shape, data)
}

#[test]
fn readable_arrays_show_type_and_shape_only() {
    let data = vec![7u8; 72];
    assert_eq!(
        readable(&array_like("f64", &[3, 3], &data), 80),
        "Array<f64>[3, 3]"
    );
    assert_eq!(
        readable(&(1, array_like("u8", &[72], &data)), 80),
        "(1, Array<u8>[72])"
    );
    assert_eq!(readable(&array_like("f32", &[], &[]), 80), "Array<f32>[]");
    assert_eq!(readable(&array_like("f64", &[3, 3], &data), 8), "Array<f…");
}

#[test]
fn readable_truncates() {
    assert_eq!(readable(&vec![1.0, 2.0, 3.0], 10), "[1.0, 2.0…");
    assert_eq!(readable(&vec![1.0, 2.0, 3.0], 15), "[1.0, 2.0, 3.0]");
    assert_eq!(readable(&vec![1.0, 2.0, 3.0], 14), "[1.0, 2.0, 3.…");
    assert_eq!(readable("ééééé", 4), "\"éé…");
    assert_eq!(readable(&12345, 0), "");
    assert_eq!(readable(&12345, 1), "…");
    for max in 0..40 {
        let s = readable(&Point { x: 123, y: -456 }, max);
        assert!(s.chars().count() <= max, "{s:?} longer than {max}");
    }
}

#[test]
fn readable_is_fast_on_huge_values() {
    let huge = vec![0.0f64; 100_000_000];
    let long = "x".repeat(50_000_000);
    let start = Instant::now();
    let s = readable(&huge, 40);
    assert_eq!(s.chars().count(), 40);
    assert!(s.starts_with("[0.0, 0.0"));
    assert!(s.ends_with('…'));
    let t = readable(&long, 10);
    assert_eq!(t, "\"xxxxxxxx…");
    let b = readable(&serde_bytes_like(long.as_bytes()), 10);
    assert_eq!(b, "[120, 120…");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn readable_reports_unserializable() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("broken"))
        }
    }
    assert_eq!(readable(&Fails, 80), "<unserializable: broken>");
    assert_eq!(readable(&vec![Fails], 80), "<unserializable: broken>");
    assert_eq!(readable(&Fails, 10), "<unserial…");
}

#[test]
fn readable_args_splits_tuples() {
    let args = (1, "two", vec![3.0]);
    assert_eq!(
        readable_args(&args, &[], 80),
        vec![
            ("0".to_owned(), "1".to_owned()),
            ("1".to_owned(), "\"two\"".to_owned()),
            ("2".to_owned(), "[3.0]".to_owned()),
        ]
    );
    assert_eq!(
        readable_args(&args, &[1], 80),
        vec![
            ("0".to_owned(), "1".to_owned()),
            ("2".to_owned(), "[3.0]".to_owned())
        ]
    );
    assert_eq!(
        readable_args(&42, &[], 80),
        vec![("0".to_owned(), "42".to_owned())]
    );
    assert_eq!(readable_args(&42, &[0], 80), vec![]);
    assert_eq!(
        readable_args(&Point { x: 1, y: 2 }, &[], 8),
        vec![("0".to_owned(), "Point {…".to_owned())]
    );
    assert_eq!(
        readable_args(&("long string",), &[], 5),
        vec![("0".to_owned(), "\"lon…".to_owned())]
    );
}

// -------------------------------------------------------------------- Digest

#[test]
fn digest_text_and_serde_round_trip() {
    let d = h(&"some value");
    let hex = d.to_string();
    assert_eq!(hex.len(), 32);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(hex, d.to_hex());
    assert_eq!(hex.parse::<Digest>().unwrap(), d);
    assert_eq!(format!("{d:?}"), format!("Digest({hex})"));
    assert_eq!(d.as_bytes(), &d.0);
    assert!("xyz".parse::<Digest>().is_err());
    let err = "zz".repeat(16).parse::<Digest>().unwrap_err();
    let _: &dyn std::error::Error = &err;

    // Serializes as the hex string.
    assert_eq!(h(&d), h(&hex));
    assert_eq!(readable(&d, 80), format!("\"{hex}\""));
    let de = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(&hex);
    assert_eq!(Digest::deserialize(de).unwrap(), d);
    let bad = serde::de::value::StrDeserializer::<serde::de::value::Error>::new("nope");
    assert!(Digest::deserialize(bad).is_err());
}
