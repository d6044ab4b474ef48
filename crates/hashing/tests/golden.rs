//! Golden vectors: digests of fixed values, hard-coded.
//!
//! These digests are cache keys on disk. They must NEVER change without
//! bumping `FORMAT_VERSION` (and then regenerating this table with
//! `cargo test -p cachette-hashing --test golden -- --ignored --nocapture`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use cachette_hashing::{CanonicalHasher, Digest, FORMAT_VERSION, Xxh3Hasher, hash};
use serde::Serialize;

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Newtype(u32);

#[derive(Serialize)]
struct TupleStruct(i8, String);

#[derive(Serialize)]
struct Inner {
    name: String,
    tags: Vec<String>,
}

#[derive(Serialize)]
struct Outer {
    id: u64,
    inner: Inner,
    kind: Kind,
    maybe: Option<Box<Outer>>,
}

/// A struct whose flattened map gives one of its own names again.
#[derive(Serialize)]
struct Flattened {
    name: &'static str,
    #[serde(flatten)]
    extra: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
enum Kind {
    Unit,
    Newtype(i16),
    Tuple(u8, bool),
    Struct { a: f32, b: char },
}

#[derive(Serialize)]
struct Samples {
    label: &'static str,
    values: Vec<f64>,
}

fn d<T: Serialize + ?Sized>(v: &T) -> Digest {
    hash(v).unwrap()
}

/// The fixed list of values, each with a name.
fn cases() -> Vec<(&'static str, Digest)> {
    let hash_map: HashMap<String, i64> = (0..100)
        .map(|i| (format!("key{i}"), i64::from(i) * 7))
        .collect();
    let btree_map: BTreeMap<u8, Vec<&str>> =
        [(3, vec!["c"]), (1, vec!["a", "b"]), (2, vec![])].into();
    let hash_set: HashSet<i32> = (-50..50).collect();
    let btree_set: BTreeSet<&str> = ["x", "y", "z"].into();
    let floats: Vec<f64> = (0..1000).map(|i| f64::from(i) / 3.0).collect();
    let bytes_vec: Vec<u8> = (0..=255).collect();
    let nested = Outer {
        id: 42,
        inner: Inner {
            name: "inner".into(),
            tags: vec!["a".into(), "b".into()],
        },
        kind: Kind::Struct { a: 1.5, b: 'ß' },
        maybe: Some(Box::new(Outer {
            id: 43,
            inner: Inner {
                name: String::new(),
                tags: vec![],
            },
            kind: Kind::Tuple(7, false),
            maybe: None,
        })),
    };
    let mut raw = CanonicalHasher::new(Xxh3Hasher::default());
    raw.add_raw(b"domain");
    raw.add(&1u8).unwrap();
    let mut args = CanonicalHasher::new(Xxh3Hasher::default());
    args.add_args(&(1, "ignored", 3.0), &[1]).unwrap();

    vec![
        ("bool true", d(&true)),
        ("bool false", d(&false)),
        ("i8 -1", d(&-1i8)),
        ("i16 -300", d(&-300i16)),
        ("i32 5", d(&5i32)),
        ("i64 5", d(&5i64)),
        ("i128 min", d(&i128::MIN)),
        ("u8 255", d(&255u8)),
        ("u16 65535", d(&65535u16)),
        ("u32 5", d(&5u32)),
        ("u64 max", d(&u64::MAX)),
        ("u128 1<<100", d(&(1u128 << 100))),
        ("usize 5", d(&5usize)),
        ("f32 1.5", d(&1.5f32)),
        ("f64 0.1", d(&0.1f64)),
        ("f64 -0.0", d(&-0.0f64)),
        ("f64 NaN", d(&f64::from_bits(0x7ff8_0000_0000_0001))),
        ("f64 inf", d(&f64::INFINITY)),
        ("char é", d(&'é')),
        ("str empty", d("")),
        ("str hello", d("hello")),
        ("str unicode", d("héllo wörld ✓ 🦀")),
        ("bytes", d(&Bytes(b"\x00\x01bytes\xff"))),
        ("None", d(&None::<i32>)),
        ("Some(3)", d(&Some(3i32))),
        ("unit", d(&())),
        ("Vec<String>", d(&vec!["a".to_string(), "b".to_string()])),
        ("empty Vec<String>", d(&Vec::<String>::new())),
        ("empty Vec<f64>", d(&Vec::<f64>::new())),
        ("tuple", d(&(1u8, "two", 3.0f64))),
        ("array [u16; 3]", d(&[1u16, 2, 3])),
        ("unit struct", d(&Unit)),
        ("newtype struct", d(&Newtype(9))),
        ("tuple struct", d(&TupleStruct(-1, "x".into()))),
        ("unit variant", d(&Kind::Unit)),
        ("newtype variant", d(&Kind::Newtype(-2))),
        ("tuple variant", d(&Kind::Tuple(1, true))),
        ("struct variant", d(&Kind::Struct { a: 0.5, b: 'z' })),
        ("nested struct", d(&nested)),
        ("HashMap<String, i64>", d(&hash_map)),
        ("BTreeMap<u8, Vec<&str>>", d(&btree_map)),
        ("HashSet<i32>", d(&hash_set)),
        ("BTreeSet<&str>", d(&btree_set)),
        ("Vec<f64> bulk", d(&floats)),
        ("Vec<u8> bulk", d(&bytes_vec)),
        (
            "struct with Vec<f64>",
            d(&Samples {
                label: "s",
                values: floats.clone(),
            }),
        ),
        ("add_raw + add", raw.finish()),
        ("add_args skip [1]", args.finish()),
        (
            "map with a repeated key",
            d(&Flattened {
                name: "a",
                extra: BTreeMap::from([("name", "b")]),
            }),
        ),
    ]
}

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Expected digests, in the order of `cases()`. Never edit without bumping
/// `FORMAT_VERSION`.
const GOLDEN: &[(&str, &str)] = &[
    ("bool true", "f36568a7d6800d07a100da6abd8ce550"),
    ("bool false", "c07672ce0aac94ab5c65a1d1b7c56a4d"),
    ("i8 -1", "07eff4f8d51b58e6cf9b1a1be9009f43"),
    ("i16 -300", "583ad4fdd88a0c4855d4c748aa781c68"),
    ("i32 5", "0d8628568079f2a192e8b98c7efcda6a"),
    ("i64 5", "020af78fd3be9e7ba1fdedaf8372bee6"),
    ("i128 min", "f97dd71fb1c0618e608e1fca51382529"),
    ("u8 255", "31b69a50cccf8bcdfe269693ee9c574c"),
    ("u16 65535", "4ae824e1406eb3e0dc7bd2082e0e322b"),
    ("u32 5", "d654e52b91293d16f790c07fc86de29a"),
    ("u64 max", "199ae247b6c39e01023e1d8cba8e821e"),
    ("u128 1<<100", "8f2fdadcf6f914255a816875d373595f"),
    ("usize 5", "8cc66fdc27ee487e5d8bc5a43d555412"),
    ("f32 1.5", "02c97a703d3400d01def2ebac2ff4c49"),
    ("f64 0.1", "1b5a3091c6e09592387998ee6fa0aaaf"),
    ("f64 -0.0", "b07648b5e03fca8528a0979fefb26c67"),
    ("f64 NaN", "cdbfdfb2917b7281ab5ad7a9e83b91fc"),
    ("f64 inf", "a29ac0d578d824f6a4cb80754e381b18"),
    ("char é", "44182779f6edaebe7530589d27bdf624"),
    ("str empty", "e7330fb0916e375a28ea5e7a1a48c500"),
    ("str hello", "b70391cbc71de3bf9ee7a3c8c75977d8"),
    ("str unicode", "ee36fb42d7368a6f13f0e9352db04bfa"),
    ("bytes", "67913baa84ade9bb961b2c29d5ee4c23"),
    ("None", "06301b2e14b8fa32f39b402308574de1"),
    ("Some(3)", "cc62ade617fd86fd1a2c180b96dc880e"),
    ("unit", "ce15ca2ff6144732bae527e5280495f5"),
    ("Vec<String>", "abdc746a4ef6f4546048101f05947529"),
    ("empty Vec<String>", "e36be3a5e984bb4d1b95c69dff9ee328"),
    ("empty Vec<f64>", "63fc0fa2fb00daffe2c62daef655892b"),
    ("tuple", "d3b3830eae3292e6d1a4e4dd36cff555"),
    ("array [u16; 3]", "3569cd6a2b0683d067f9fc3cb7598734"),
    ("unit struct", "12a31b23a9ff1863e07606b5c65719d6"),
    ("newtype struct", "010be3a3221ad0f9488a74ddf8a71d0a"),
    ("tuple struct", "0ceb60e708473056c9ed0cbab3efa828"),
    ("unit variant", "b2e650ce8d0e3f3e6cb11b0f48bd4871"),
    ("newtype variant", "48162a0b920e738cebf4082331369fd1"),
    ("tuple variant", "e33fff947288b653c27acd4d41b54407"),
    ("struct variant", "d32ad84d6532a616dbe14c0e9745600b"),
    ("nested struct", "0551a74c3bb18e399a6d70dcade4c884"),
    ("HashMap<String, i64>", "090485f52b8ac26c7d98aa444a0b1b3c"),
    (
        "BTreeMap<u8, Vec<&str>>",
        "d957b023ce793cecfd929ba575239469",
    ),
    ("HashSet<i32>", "5fd1a56786a4ac3b0c719928b4943bb1"),
    ("BTreeSet<&str>", "086e288ab07c09894bf4e336c7db03f3"),
    ("Vec<f64> bulk", "3456d0b7c2647cca7be961f0b2f42341"),
    ("Vec<u8> bulk", "2a2236411b658753a3b1e5ea6cdf582c"),
    ("struct with Vec<f64>", "d00b1655ebea6c371587576cd96c8d4c"),
    ("add_raw + add", "10a9ab758d3b0bfa7931eb84d8b21731"),
    ("add_args skip [1]", "6d78809bf8c438d860ec5adb5a3880e2"),
    (
        "map with a repeated key",
        "72f433d1da78839bc166bbf4d7e98f5c",
    ),
];

#[test]
fn golden_digests_never_change() {
    assert_eq!(
        FORMAT_VERSION, 2,
        "regenerate GOLDEN for the new format version"
    );
    let got = cases();
    assert_eq!(
        got.len(),
        GOLDEN.len(),
        "case list and GOLDEN table differ in length"
    );
    for ((name, digest), (gname, ghex)) in got.iter().zip(GOLDEN) {
        assert_eq!(name, gname);
        assert_eq!(&digest.to_hex(), ghex, "digest of {name} changed");
    }
}

/// A few encodings spelled out byte by byte, hashed with plain XXH3-128.
#[test]
fn encoding_spelled_out() {
    let xxh = |bytes: &[u8]| Digest(xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes());
    assert_eq!(d(&5i32), xxh(&[0x04, 5, 0, 0, 0]));
    assert_eq!(d(&5usize), xxh(&[0x0A, 5, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(d("hi"), xxh(&[0x10, 2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']));
    assert_eq!(d(&Some(())), xxh(&[0x13, 0x14]));
    assert_eq!(d(&vec![true]), xxh(&[0x19, 0x01, 0x01, 0x1A]));
    assert_eq!(
        d(&vec![1.0f64]),
        xxh(&[
            0x22, 0x0D, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F
        ])
    );
    assert_eq!(d(&Kind::Unit), {
        let mut b = vec![0x16, 4, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(b"Kind");
        b.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(b"Unit");
        xxh(&b)
    });
    // Map entries in canonical order: sorted by xxh3_64 of the entry bytes.
    let e1 = [0x07, 1, 0x07, 10];
    let e2 = [0x07, 2, 0x07, 20];
    let (first, second) = if xxhash_rust::xxh3::xxh3_64(&e1) <= xxhash_rust::xxh3::xxh3_64(&e2) {
        (e1, e2)
    } else {
        (e2, e1)
    };
    let mut map = vec![0x1E, 2, 0, 0, 0, 0, 0, 0, 0];
    map.extend_from_slice(&first);
    map.extend_from_slice(&second);
    assert_eq!(d(&BTreeMap::from([(1u8, 10u8), (2, 20)])), xxh(&map));
}

#[test]
#[ignore = "prints the table for GOLDEN"]
fn print_golden() {
    for (name, digest) in cases() {
        println!("    ({name:?}, \"{digest}\"),");
    }
}
