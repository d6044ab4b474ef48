//! `ndarray` arrays as values to hash (feature `ndarray`): the bulk path, its
//! exact bytes, and what the digest depends on.

use cachette_hashing::{Digest, hash};
use ndarray::{Array, Array1, Array2, ArrayD, ArrayView2, IxDyn, ShapeBuilder, array, s};
use serde::Serialize;

fn h<T: Serialize + ?Sized>(v: &T) -> Digest {
    hash(v).unwrap()
}

fn all_distinct(ds: &[Digest]) {
    for (i, a) in ds.iter().enumerate() {
        for b in &ds[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

/// The digest of a byte stream, as `hash` computes it for an encoded value.
fn digest_of_encoding(bytes: &[u8]) -> Digest {
    let d = xxhash_rust::xxh3::xxh3_128(bytes);
    // Digests hold the 128-bit value in little-endian byte order.
    format!("{:032x}", d.swap_bytes()).parse().unwrap()
}

#[test]
fn the_encoding_is_the_documented_one() {
    // Anchor: a bulk `Vec<f64>` (tag 0x22) through the same helper.
    let v = vec![1.5f64, -2.0];
    let mut enc = vec![0x22, 0x0D];
    enc.extend_from_slice(&2u64.to_le_bytes());
    for x in &v {
        enc.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(h(&v), digest_of_encoding(&enc));

    // A 2x3 i32 array: tag 0x25, element code, axes, each axis, the elements.
    let a: Array2<i32> = array![[1, 2, 3], [4, 5, 6]];
    let mut enc = vec![0x25, 0x04];
    enc.extend_from_slice(&2u64.to_le_bytes());
    enc.extend_from_slice(&2u64.to_le_bytes());
    enc.extend_from_slice(&3u64.to_le_bytes());
    for x in 1..=6i32 {
        enc.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(h(&a), digest_of_encoding(&enc));
}

#[test]
fn shape_and_element_type_count() {
    let values: Vec<f64> = (0..6).map(f64::from).collect();
    let a23 = Array2::from_shape_vec((2, 3), values.clone()).unwrap();
    let a32 = Array2::from_shape_vec((3, 2), values.clone()).unwrap();
    let a6 = Array1::from(values.clone());
    let a16 = Array2::from_shape_vec((1, 6), values.clone()).unwrap();
    let f32s = a23.mapv(|x| x as f32);
    let i64s = a23.mapv(|x| x as i64);
    all_distinct(&[
        h(&a23),
        h(&a32),
        h(&a6),
        h(&a16),
        h(&f32s),
        h(&i64s),
        h(&values),
    ]);
    // Empty arrays of different shapes differ too.
    all_distinct(&[
        h(&Array2::<f64>::zeros((0, 3))),
        h(&Array2::<f64>::zeros((3, 0))),
        h(&Array1::<f64>::zeros(0)),
    ]);
}

#[test]
fn storage_dimension_type_and_layout_do_not_count() {
    let a = Array2::from_shape_fn((40, 30), |(i, j)| (i * 100 + j) as f64);
    let d = h(&a);
    assert_eq!(d, h(&a.view()));
    assert_eq!(d, h(&&a));
    assert_eq!(d, h(&a.to_shared()));
    assert_eq!(d, h(&ndarray::CowArray::from(a.view())));
    assert_eq!(d, h(&a.clone().into_dyn()));
    assert_eq!(
        d,
        h(&a.clone().into_shape_with_order(IxDyn(&[40, 30])).unwrap())
    );
    // Fortran order, same logical values.
    let f = Array::from_shape_vec((40, 30).f(), a.t().iter().copied().collect()).unwrap();
    assert_eq!(f, a);
    assert_eq!(d, h(&f));
    // A transposed view equals its standard-layout copy.
    let t: ArrayView2<'_, f64> = a.t();
    assert_eq!(h(&t), h(&t.as_standard_layout().into_owned()));
    // A strided slice equals its copy, and differs from the whole.
    let sl = a.slice(s![1..;3, ..;-2]);
    assert_eq!(h(&sl), h(&sl.to_owned()));
    assert_ne!(h(&sl), d);
    // Values count.
    let mut b = a.clone();
    b[[39, 29]] += 1.0;
    assert_ne!(h(&b), d);
}

#[derive(Serialize)]
struct Args<'a> {
    name: &'a str,
    weights: Array2<f32>,
    bias: Option<Array1<f32>>,
}

#[test]
fn arrays_inside_values_take_the_bulk_path() {
    let w = Array2::from_shape_fn((3, 4), |(i, j)| (i + j) as f32);
    let x = Args {
        name: "layer",
        weights: w.clone(),
        bias: Some(Array1::zeros(4)),
    };
    let y = Args {
        name: "layer",
        weights: w
            .clone()
            .reversed_axes()
            .as_standard_layout()
            .reversed_axes()
            .to_owned(),
        bias: Some(Array1::zeros(4)),
    };
    assert_eq!(h(&x), h(&y));
    let z = Args {
        name: "layer",
        weights: w.into_shape_with_order((4, 3)).unwrap(),
        bias: Some(Array1::zeros(4)),
    };
    assert_ne!(h(&x), h(&z));
    // Tuples of arrays, as memoized arguments are.
    let a = Array1::from(vec![1u8, 2, 3]);
    let b: ArrayD<u8> = ArrayD::from_elem(vec![1, 3], 1);
    assert_eq!(h(&(&a, &b)), h(&(a.view(), b.view())));
    assert_ne!(h(&(&a, &b)), h(&(&b, &a)));
}

#[test]
fn large_arrays_hash_like_their_memory() {
    // 8 MiB in standard layout: the bulk path hands the memory over as a
    // whole; the result is the documented encoding.
    let n = 1 << 20;
    let a = Array1::from_iter((0..n).map(|i| i as f64 * 0.5));
    let mut enc = vec![0x25, 0x0D];
    enc.extend_from_slice(&1u64.to_le_bytes());
    enc.extend_from_slice(&(n as u64).to_le_bytes());
    for x in &a {
        enc.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(h(&a), digest_of_encoding(&enc));
}

#[test]
fn golden_digests_never_change() {
    // Cache keys on disk: these must not change without bumping
    // FORMAT_VERSION.
    let a: Array2<f64> = array![[1.0, 2.0], [3.0, 4.5]];
    let b: ArrayD<u16> = ArrayD::from_shape_vec(vec![2, 1, 2], vec![1, 2, 3, 4]).unwrap();
    let z = ndarray::arr0(7i8);
    let got = [h(&a).to_hex(), h(&b).to_hex(), h(&z).to_hex()];
    assert_eq!(
        got,
        [
            "c591b0338902890ccf454ff2bad33840",
            "2b45ec12091955da294c4b5b78058aee",
            "72e8b085171d54e668b16b79a3ac72f8",
        ]
    );
}
