//! Behaviour of the hardened key mode ([`Blake3Keyed`]): what the default
//! algorithm promises still holds (order independence, layout independence,
//! same value same digest), and the key does its job (different keys give
//! different digests; a collision built against xxh3 is not one here).

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use cachette_hashing::{
    Blake3Keyed, CanonicalHasher, Digest, HashAlgorithm, MIN_SECRET_LEN, StableHasher, Xxh3, hash,
    hash_with,
};
use serde::Serialize;

const SECRET: &str = "the secret shared by the trusted programs";

fn keyed() -> Blake3Keyed {
    Blake3Keyed::from_secret(SECRET).unwrap()
}

fn k<T: Serialize + ?Sized>(v: &T) -> Digest {
    hash_with(&keyed(), v).unwrap()
}

fn all_distinct(digests: &[Digest]) {
    for (i, a) in digests.iter().enumerate() {
        for (j, b) in digests.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "values {i} and {j} collide");
        }
    }
}

// ------------------------------------------------------------ the threat

/// Two different 4 KiB byte strings with one xxh3 digest, built in
/// microseconds from the public default secret of XXH3.
///
/// XXH3 folds each 8-byte lane `v` of a 64-byte stripe into its state as
/// `acc[i ^ 1] += v` and `acc[i] += lo32(v ^ s) * hi32(v ^ s)`, with `s` the
/// secret bytes of that lane. A lane whose low 32 bits equal those of `s`
/// adds a product of zero, so only `v` itself counts; raising the high half
/// of such a lane in one stripe and lowering it by as much in the next
/// stripe leaves every accumulator, hence the digest, unchanged.
fn xxh3_colliding_pair() -> (Vec<u8>, Vec<u8>) {
    // Bytes 16..32 of XXH3's published default secret: lane 2 of stripes 0
    // and 1 (each stripe moves 8 bytes further into the secret).
    const SECRET_16_32: [u8; 16] = [
        0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67,
        0x1f,
    ];
    let s0 = u64::from_le_bytes(SECRET_16_32[..8].try_into().unwrap());
    let s1 = u64::from_le_bytes(SECRET_16_32[8..].try_into().unwrap());
    // The encoding of a byte slice is a 10-byte header (tag, element code,
    // u64 length) then the bytes: encoding offset 16 is data offset 6 and
    // offset 64 + 16 is data offset 70. 4096 bytes of encoding in all.
    let lane = |s: u64, high: u32| (s & 0xffff_ffff) | (u64::from(high) << 32);
    let base: Vec<u8> = (0..4086u32).map(|i| (i * 13 % 256) as u8).collect();
    let build = |h0: u32, h1: u32| {
        let mut v = base.clone();
        v[6..14].copy_from_slice(&lane(s0, h0).to_le_bytes());
        v[70..78].copy_from_slice(&lane(s1, h1).to_le_bytes());
        v
    };
    (build(1000, 5000), build(1001, 4999))
}

#[test]
fn a_collision_built_against_xxh3_is_none_under_a_key() {
    let (a, b) = xxh3_colliding_pair();
    assert_ne!(a, b);
    // The attack works on the default algorithm ...
    assert_eq!(hash(a.as_slice()).unwrap(), hash(b.as_slice()).unwrap());
    assert_eq!(hash(&a).unwrap(), hash(&b).unwrap());
    // ... and gives two different keys in the hardened mode.
    assert_ne!(k(a.as_slice()), k(b.as_slice()));
    assert_ne!(k(&a), k(&b));
}

// ------------------------------------------------------------- the key

#[test]
fn different_keys_give_different_digests() {
    let algs: Vec<Blake3Keyed> = (0..16u8)
        .map(|i| Blake3Keyed::from_key([i; 32]))
        .chain(
            ["secret number one!", "secret number two!"]
                .map(|s| Blake3Keyed::from_secret(s).unwrap()),
        )
        .collect();
    let values: [fn(&dyn HashAlgorithm) -> Digest; 4] = [
        |a| hash_with(a, &5i64).unwrap(),
        |a| hash_with(a, "hello").unwrap(),
        |a| hash_with(a, &vec![1.0f64; 10_000]).unwrap(),
        |a| hash_with(a, &HashMap::from([("a", 1), ("b", 2)])).unwrap(),
    ];
    for value in &values {
        let mut digests: Vec<Digest> = algs.iter().map(|a| value(a)).collect();
        digests.push(value(&Xxh3));
        all_distinct(&digests);
    }
    // A secret is not its own key: `from_secret` derives one.
    let secret = [9u8; 32];
    assert_ne!(
        k(&1u8),
        hash_with(&Blake3Keyed::from_key(secret), &1u8).unwrap()
    );
    assert_ne!(
        hash_with(&Blake3Keyed::from_secret(secret).unwrap(), &1u8).unwrap(),
        hash_with(&Blake3Keyed::from_key(secret), &1u8).unwrap()
    );
}

#[test]
fn the_key_stays_hidden() {
    let alg = Blake3Keyed::from_key([0xAB; 32]);
    assert_eq!(alg.id(), "blake3-keyed");
    assert_ne!(alg.id(), Xxh3.id());
    assert_eq!(keyed().id(), alg.id(), "the id is the same for every key");
    for shown in [
        format!("{alg:?}"),
        format!("{:?}", alg.keyed_hasher()),
        format!("{:?}", keyed()),
    ] {
        assert!(!shown.contains("171"), "{shown}");
        assert!(!shown.to_lowercase().contains("ab, ab"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

#[test]
fn short_secrets_are_refused() {
    for len in 0..MIN_SECRET_LEN {
        let err = Blake3Keyed::from_secret(vec![b'x'; len]).unwrap_err();
        assert!(err.to_string().contains(&format!("{len} given")), "{err}");
    }
    assert!(Blake3Keyed::from_secret(vec![b'x'; MIN_SECRET_LEN]).is_ok());
}

// ------------------------------------------------- same value, same digest

#[test]
fn same_value_same_digest() {
    #[derive(Serialize, Clone)]
    struct Args {
        name: String,
        values: Vec<f64>,
        options: HashMap<String, Vec<u8>>,
        nested: Option<Box<Args>>,
    }
    let leaf = Args {
        name: "leaf".into(),
        values: vec![],
        options: HashMap::new(),
        nested: None,
    };
    let value = Args {
        name: "x".repeat(5000),
        values: (0..3000).map(f64::from).collect(),
        options: (0..300)
            .map(|i| (i.to_string(), vec![i as u8; i]))
            .collect(),
        nested: Some(Box::new(leaf)),
    };
    let d = k(&value);
    // Another instance from the same secret, a clone, another process's
    // value of the same content: one digest.
    assert_eq!(d, hash_with(&keyed().clone(), &value.clone()).unwrap());
    let shared: Arc<dyn HashAlgorithm> = Arc::new(keyed());
    assert_eq!(d, hash_with(&*shared, &value).unwrap());
    let mut concrete = CanonicalHasher::new(keyed().keyed_hasher());
    concrete.add(&value).unwrap();
    assert_eq!(d, concrete.finish());
    let boxed: Box<dyn StableHasher + Send> = keyed().hasher();
    let mut c = CanonicalHasher::new(boxed);
    c.add(&value).unwrap();
    assert_eq!(d, c.finish());
    // Any container of the same numbers, on the bulk path.
    let v: Vec<f64> = (0..10_000).map(|i| f64::from(i) * 0.5).collect();
    let s: &[f64] = &v;
    let dv = k(&v);
    assert_eq!(dv, k(s));
    assert_eq!(dv, k(&v.clone().into_boxed_slice()));
    assert_eq!(dv, k(&Arc::<[f64]>::from(s)));
    assert_eq!(dv, k(&Cow::Borrowed(s)));
    // Hashing is usable from many threads at once.
    let alg = Arc::new(keyed());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let alg = Arc::clone(&alg);
            let v = v.clone();
            std::thread::spawn(move || hash_with(&*alg, &v).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), dv);
    }
}

#[test]
fn maps_and_sets_are_order_independent() {
    let keys: Vec<String> = (0..2000).map(|i| format!("key-{i}")).collect();
    let a: HashMap<String, i64> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), i as i64))
        .collect();
    let mut b = HashMap::with_capacity_and_hasher(100_000, RandomState::new());
    for (i, key) in keys.iter().enumerate().rev() {
        b.insert(key.clone(), i as i64);
    }
    assert_ne!(
        a.keys().take(20).collect::<Vec<_>>(),
        b.keys().take(20).collect::<Vec<_>>()
    );
    assert_eq!(k(&a), k(&b));
    let sorted: BTreeMap<_, _> = a.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(k(&a), k(&sorted));
    b.insert("key-0".into(), 1);
    assert_ne!(k(&a), k(&b));

    let s1: HashSet<u64> = (0..5000).collect();
    let mut s2 = HashSet::with_capacity_and_hasher(50_000, RandomState::new());
    for i in (0..5000u64).rev() {
        s2.insert(i);
    }
    assert_eq!(k(&s1), k(&s2));
    assert_eq!(k(&s1), k(&(0..5000u64).collect::<BTreeSet<_>>()));

    // Nested: maps of sets, in both orders.
    let nested_a: HashMap<u8, HashSet<String>> = (0..20u8)
        .map(|i| (i, (0..i).map(|j| j.to_string()).collect()))
        .collect();
    let nested_b: BTreeMap<u8, BTreeSet<String>> = (0..20u8)
        .rev()
        .map(|i| (i, (0..i).rev().map(|j| j.to_string()).collect()))
        .collect();
    assert_eq!(k(&nested_a), k(&nested_b));
}

#[test]
fn the_encoding_stays_unambiguous() {
    all_distinct(&[
        k(&("ab", "c")),
        k(&("a", "bc")),
        k(&5i32),
        k(&5i64),
        k(&5u32),
        k(&None::<()>),
        k(&()),
        k(&Some(())),
        k(&vec![1u8, 2, 3]),
        k(&vec![1i8, 2, 3]),
        k(&[1u8, 2, 3]),
        k(&0.0f64),
        k(&-0.0f64),
    ]);
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_digests_do_not_depend_on_layout() {
    use ndarray::{Array2, ArrayD, IxDyn, ShapeBuilder, s};

    let values: Vec<f64> = (0..600).map(|i| f64::from(i) * 0.25).collect();
    let c_order = Array2::from_shape_vec((20, 30), values.clone()).unwrap();
    let mut f_order = Array2::<f64>::zeros((20, 30).f());
    f_order.assign(&c_order);
    let dynamic = ArrayD::from_shape_vec(IxDyn(&[20, 30]), values.clone()).unwrap();
    let transposed_twice = c_order.t().to_owned();
    let d = k(&c_order);
    assert_eq!(d, k(&f_order));
    assert_eq!(d, k(&dynamic));
    assert_eq!(d, k(&c_order.view()));
    assert_eq!(d, k(&transposed_twice.t()));
    assert_eq!(d, k(&c_order.to_shared()));
    // A strided view equals the owned copy of the same elements.
    let wide = Array2::from_shape_fn((20, 60), |(i, j)| {
        if j % 2 == 0 {
            c_order[[i, j / 2]]
        } else {
            -1.0
        }
    });
    assert_eq!(d, k(&wide.slice(s![.., ..;2])));
    // Shape and element type count.
    all_distinct(&[
        d,
        k(&c_order.t()),
        k(&c_order.clone().into_shape_with_order((30, 20)).unwrap()),
        k(&c_order.mapv(|x| x as f32)),
        k(&values),
    ]);
    // Not the xxh3 digest.
    assert_ne!(d, hash(&c_order).unwrap());
}
