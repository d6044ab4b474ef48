//! Golden vectors of the hardened key mode ([`Blake3Keyed`]): digests of
//! fixed values under a fixed key, hard-coded.
//!
//! Like the xxh3 table in `golden.rs`, these digests are cache keys on disk
//! and must NEVER change without bumping `FORMAT_VERSION` (then regenerate
//! with `cargo test -p cachette-hashing --all-features --test golden_keyed --
//! --ignored --nocapture`).

use std::collections::{BTreeMap, HashMap};

use cachette_hashing::{
    ARGUMENT_KEY_CONTEXT, Blake3Keyed, CanonicalHasher, Digest, FORMAT_VERSION, HashAlgorithm,
    hash_with,
};
use serde::Serialize;

/// The fixed key of the table: the bytes 0, 1, ..., 31.
const KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};

/// The fixed secret of the `from_secret` rows.
const SECRET: &str = "cachette golden secret, not a real one";

fn alg() -> Blake3Keyed {
    Blake3Keyed::from_key(KEY)
}

fn d<T: Serialize + ?Sized>(v: &T) -> Digest {
    hash_with(&alg(), v).unwrap()
}

#[derive(Serialize)]
struct Inner {
    name: String,
    tags: Vec<String>,
    weights: Vec<f32>,
}

#[derive(Serialize)]
struct Outer {
    id: u64,
    inner: Inner,
    kind: Kind,
    maybe: Option<Box<Outer>>,
}

#[derive(Serialize)]
enum Kind {
    Unit,
    Tuple(u8, bool),
    Struct { a: f32, b: char },
}

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// The fixed list of values, each with a name.
fn cases() -> Vec<(&'static str, Digest)> {
    let forward: HashMap<String, i64> = (0..100)
        .map(|i| (format!("key{i}"), i64::from(i) * 7))
        .collect();
    let mut backward: HashMap<String, i64> = HashMap::with_capacity(1000);
    for i in (0..100).rev() {
        backward.insert(format!("key{i}"), i64::from(i) * 7);
    }
    let sorted: BTreeMap<String, i64> = forward.clone().into_iter().collect();
    let floats: Vec<f64> = (0..1000).map(|i| f64::from(i) / 3.0).collect();
    let ints: Vec<i32> = (-500..500).collect();
    let bytes_4k: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    let nested = Outer {
        id: 42,
        inner: Inner {
            name: "inner".into(),
            tags: vec!["a".into(), "b".into()],
            weights: vec![0.5, -1.0],
        },
        kind: Kind::Struct { a: 1.5, b: 'ß' },
        maybe: Some(Box::new(Outer {
            id: 43,
            inner: Inner {
                name: String::new(),
                tags: vec![],
                weights: vec![],
            },
            kind: Kind::Tuple(7, false),
            maybe: None,
        })),
    };
    let mut raw = CanonicalHasher::new(alg().keyed_hasher());
    raw.add_raw(b"state");
    raw.add(&1u8).unwrap();
    let mut args = CanonicalHasher::new(alg().hasher());
    args.add_args(&(1, "ignored", 3.0), &[1]).unwrap();
    let from_secret = Blake3Keyed::from_secret(SECRET).unwrap();

    vec![
        ("bool true", d(&true)),
        ("i8 -1", d(&-1i8)),
        ("i32 5", d(&5i32)),
        ("i64 5", d(&5i64)),
        ("i64 -1", d(&-1i64)),
        ("u64 max", d(&u64::MAX)),
        ("i128 min", d(&i128::MIN)),
        ("usize 5", d(&5usize)),
        ("f64 0.1", d(&0.1f64)),
        ("f64 -0.0", d(&-0.0f64)),
        ("char é", d(&'é')),
        ("str empty", d("")),
        ("str hello", d("hello")),
        ("str unicode", d("héllo wörld ✓ 🦀")),
        ("String 100 bytes", d(&"0123456789".repeat(10))),
        ("None", d(&None::<i32>)),
        ("Some(3)", d(&Some(3i32))),
        ("unit", d(&())),
        ("tuple", d(&(1u8, "two", 3.0f64))),
        ("unit variant", d(&Kind::Unit)),
        ("nested struct", d(&nested)),
        ("HashMap forward", d(&forward)),
        ("HashMap backward", d(&backward)),
        ("BTreeMap", d(&sorted)),
        ("serde bytes", d(&Bytes(b"\x00\x01bytes\xff"))),
        ("&[u8] 4 KiB bulk", d(bytes_4k.as_slice())),
        ("Vec<f64> bulk", d(&floats)),
        ("&[i32] bulk", d(ints.as_slice())),
        ("add_raw + add", raw.finish()),
        ("add_args skip [1]", args.finish()),
        ("from_secret i64 5", hash_with(&from_secret, &5i64).unwrap()),
        (
            "from_secret str hello",
            hash_with(&from_secret, "hello").unwrap(),
        ),
    ]
}

/// Expected digests, in the order of `cases()`. Never edit without bumping
/// `FORMAT_VERSION`.
const GOLDEN: &[(&str, &str)] = &[
    ("bool true", "3aa1f613ca59898de1caeccbf0fdd47f"),
    ("i8 -1", "f0521499974a9e2af1f52a345cfa8b9c"),
    ("i32 5", "35c9ba23f35beebb719a6b7941ff4897"),
    ("i64 5", "57bcc817e831a0a1b7685f0b4a7d4923"),
    ("i64 -1", "ce165ce71d3b0a92b8f783a3fc8c660b"),
    ("u64 max", "db6d668e5ecf8514c06fc91ba84e28c9"),
    ("i128 min", "209530b5c5789047b45dcb2a143b0855"),
    ("usize 5", "fa26b4f051d43077c5be5f248d143cd6"),
    ("f64 0.1", "5e672b09264b7c9eecd052d7d06e6335"),
    ("f64 -0.0", "0ba660faa060e2fb3e8cc90f54eefb2c"),
    ("char é", "773e02d68f55570aef06c55dcf51b67a"),
    ("str empty", "8fdeaab4c90bb308cbea5088e595dbc2"),
    ("str hello", "6a7c1730fc211ec44b98917738b2b3ce"),
    ("str unicode", "6794b80f7efd2ec965ca9ce146526728"),
    ("String 100 bytes", "0d32783437bc224f2665a6519547b960"),
    ("None", "e9afadd2805f138681683156cc933d58"),
    ("Some(3)", "b3bff77797f71c7875cd4a11e6916c90"),
    ("unit", "0397ab46a078f7477f4a7c2ed3983212"),
    ("tuple", "86ce376f45a50745645da1bce26abd30"),
    ("unit variant", "104852f654a11b35176a07cc21f0011b"),
    ("nested struct", "fbf45994df55af078882bb51af496629"),
    ("HashMap forward", "b1dc8fa6a9e314efca51c74469cbda36"),
    ("HashMap backward", "b1dc8fa6a9e314efca51c74469cbda36"),
    ("BTreeMap", "b1dc8fa6a9e314efca51c74469cbda36"),
    ("serde bytes", "adae421e5190abf6dcf5f28ddcf01b49"),
    ("&[u8] 4 KiB bulk", "947e957dc2d1836226023c9f8c8923b7"),
    ("Vec<f64> bulk", "d76985df230bf8490660af7b196d50de"),
    ("&[i32] bulk", "234c08f7c6120a0c6ab4faf5d9177d6c"),
    ("add_raw + add", "319712a6445f4f1679190aa3957a8c3e"),
    ("add_args skip [1]", "2240f2c8c661499ecea499bcc3d857b6"),
    ("from_secret i64 5", "7208d66073dee7e9b8f5b13dedb3ab61"),
    ("from_secret str hello", "0c7e4172de5d2b5075d2e4469168065b"),
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

#[test]
fn map_orders_share_one_golden_digest() {
    let got: HashMap<_, _> = cases().into_iter().collect();
    assert_eq!(got["HashMap forward"], got["HashMap backward"]);
    assert_eq!(got["HashMap forward"], got["BTreeMap"]);
}

/// The digest is the first 16 bytes of BLAKE3 in keyed mode over the
/// canonical encoding, with the key derived by BLAKE3 `derive_key` from the
/// secret.
#[test]
fn encoding_spelled_out() {
    let keyed = |key: &[u8; 32], bytes: &[u8]| {
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::keyed_hash(key, bytes).as_bytes()[..16]);
        Digest(out)
    };
    assert_eq!(d(&5i32), keyed(&KEY, &[0x04, 5, 0, 0, 0]));
    assert_eq!(
        d("hi"),
        keyed(&KEY, &[0x10, 2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i'])
    );
    assert_eq!(
        d(&vec![1.0f64]),
        keyed(
            &KEY,
            &[
                0x22, 0x0D, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F
            ]
        )
    );
    let derived = blake3::derive_key(ARGUMENT_KEY_CONTEXT, SECRET.as_bytes());
    assert_eq!(
        hash_with(&Blake3Keyed::from_secret(SECRET).unwrap(), &5i64).unwrap(),
        keyed(&derived, &[0x05, 5, 0, 0, 0, 0, 0, 0, 0])
    );
    // The context string is part of the format: pinned here.
    assert_eq!(ARGUMENT_KEY_CONTEXT, "cachette 2026 argument keys");
    assert_eq!(alg().id(), "blake3-keyed");
}

/// Byte strings around the sizes where the hasher stops gathering writes
/// (16 KiB in all) and BLAKE3's chunk and subtree boundaries: the digest is
/// always that of the whole encoding hashed at once.
#[test]
fn every_size_matches_the_one_shot_hash() {
    let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    for len in [
        0, 1, 1014, 1015, 4096, 16_373, 16_374, 16_375, 16_384, 20_000, 65_536, 70_000,
    ] {
        let bytes = &data[..len];
        let mut encoding = vec![0x22, 0x07];
        encoding.extend_from_slice(&(len as u64).to_le_bytes());
        encoding.extend_from_slice(bytes);
        let expected = blake3::keyed_hash(&KEY, &encoding);
        assert_eq!(d(bytes).0[..], expected.as_bytes()[..16], "{len} bytes");
        // Behind a string of the same length first, so writes split elsewhere.
        let pair = ("x".repeat(len), bytes);
        let mut encoding = vec![0x1B, 2, 0, 0, 0, 0, 0, 0, 0, 0x10];
        encoding.extend_from_slice(&(len as u64).to_le_bytes());
        encoding.extend_from_slice(pair.0.as_bytes());
        encoding.extend_from_slice(&[0x22, 0x07]);
        encoding.extend_from_slice(&(len as u64).to_le_bytes());
        encoding.extend_from_slice(bytes);
        let expected = blake3::keyed_hash(&KEY, &encoding);
        assert_eq!(
            d(&pair).0[..],
            expected.as_bytes()[..16],
            "string and {len} bytes"
        );
    }
}

#[cfg(feature = "ndarray")]
mod nd {
    use ndarray::{Array2, Array3, ArrayD, IxDyn, ShapeBuilder, s};

    use super::*;

    pub(super) fn cases() -> Vec<(&'static str, Digest)> {
        let values: Vec<f64> = (0..24).map(|i| f64::from(i) * 0.5).collect();
        let c_order = Array2::from_shape_vec((4, 6), values.clone()).unwrap();
        let f_order = {
            let mut a = Array2::<f64>::zeros((4, 6).f());
            a.assign(&c_order);
            a
        };
        let dynamic = ArrayD::from_shape_vec(IxDyn(&[4, 6]), values.clone()).unwrap();
        let big = Array2::from_shape_vec((6, 8), (0..48).collect::<Vec<i64>>()).unwrap();
        let cube = Array3::from_shape_vec((2, 3, 4), (0..24u8).collect()).unwrap();
        vec![
            ("Array2<f64> 4x6", d(&c_order)),
            ("Array2<f64> 4x6 Fortran order", d(&f_order)),
            ("ArrayD<f64> 4x6", d(&dynamic)),
            ("ArrayView2<f64> 4x6", d(&c_order.view())),
            (
                "Array2<i64> slice [1..5, ..;2]",
                d(&big.slice(s![1..5, ..;2])),
            ),
            ("Array3<u8> 2x3x4", d(&cube)),
            ("Array2<f64> transposed", d(&c_order.t())),
        ]
    }

    /// Expected digests of `cases()` with the feature `ndarray`.
    const GOLDEN_ND: &[(&str, &str)] = &[
        ("Array2<f64> 4x6", "1a561911fde321b9b161a07351b6f51a"),
        (
            "Array2<f64> 4x6 Fortran order",
            "1a561911fde321b9b161a07351b6f51a",
        ),
        ("ArrayD<f64> 4x6", "1a561911fde321b9b161a07351b6f51a"),
        ("ArrayView2<f64> 4x6", "1a561911fde321b9b161a07351b6f51a"),
        (
            "Array2<i64> slice [1..5, ..;2]",
            "f5566d0d4111469093b225f8cde6a6dc",
        ),
        ("Array3<u8> 2x3x4", "ba81d4238ac43967d4cc03e18d6595d2"),
        ("Array2<f64> transposed", "2fc0c6c78ba1c43ee640cca62ab4e8dd"),
    ];

    #[test]
    fn golden_nd_digests_never_change() {
        let got = cases();
        assert_eq!(got.len(), GOLDEN_ND.len());
        for ((name, digest), (gname, ghex)) in got.iter().zip(GOLDEN_ND) {
            assert_eq!(name, gname);
            assert_eq!(&digest.to_hex(), ghex, "digest of {name} changed");
        }
        // Layout and storage do not count.
        assert_eq!(got[0].1, got[1].1);
        assert_eq!(got[0].1, got[2].1);
        assert_eq!(got[0].1, got[3].1);
        assert_ne!(got[0].1, got[6].1);
    }
}

#[test]
#[ignore = "prints the tables for GOLDEN and GOLDEN_ND"]
fn print_golden() {
    for (name, digest) in cases() {
        println!("    ({name:?}, \"{digest}\"),");
    }
    #[cfg(feature = "ndarray")]
    {
        println!("ndarray:");
        for (name, digest) in nd::cases() {
            println!("    ({name:?}, \"{digest}\"),");
        }
    }
}
