//! Bulk fast path: recognises slices of primitive numbers by their static type
//! and exposes their memory as bytes. All `unsafe` of the crate lives here and
//! in the submodule `nd` (`ndarray` arrays, feature `ndarray`).
//!
//! The type test is `typeid::of::<T>() == TypeId::of::<Candidate>()`. Both
//! sides are compile-time constants per monomorphization, so for any `T` that
//! is not a candidate the whole test folds to `None`.

use std::any::TypeId;
use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

#[cfg(feature = "ndarray")]
mod nd;

#[cfg(feature = "ndarray")]
pub(crate) use nd::{NdPrim, nd_array};

/// A primitive slice as its in-memory bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrimSlice<'a> {
    /// The element-type code (the scalar tag of the element type).
    pub(crate) code: u8,
    /// Size of one element in bytes.
    pub(crate) elem_size: usize,
    /// Number of elements.
    pub(crate) len: usize,
    /// The elements' memory, in native byte order.
    pub(crate) native_bytes: &'a [u8],
}

mod sealed {
    pub(crate) trait Sealed {}
}

/// Primitive numbers whose memory is exactly their value: no padding, no
/// invalid bit patterns, no interior mutability.
pub(crate) trait Pod: sealed::Sealed + Copy + 'static {
    /// Element-type code written into the encoding.
    const CODE: u8;
}

macro_rules! pod {
    ($($t:ty => $code:expr),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Pod for $t {
            const CODE: u8 = $code;
        }
    )*};
}

use crate::encoding::tag;

pod! {
    u8 => tag::U8, i8 => tag::I8, u16 => tag::U16, i16 => tag::I16,
    u32 => tag::U32, i32 => tag::I32, u64 => tag::U64, i64 => tag::I64,
    u128 => tag::U128, i128 => tag::I128, f32 => tag::F32, f64 => tag::F64,
}

/// The memory of a slice of primitives.
#[inline(always)]
fn bytes_of<P: Pod>(s: &[P]) -> PrimSlice<'_> {
    // SAFETY: `P: Pod` is only implemented for primitive integers and floats,
    // which have no padding and no uninitialised bytes, so every byte of the
    // slice is initialised; `u8` has alignment 1; the byte length is
    // `size_of_val(s)`, which covers exactly the slice's memory; the returned
    // borrow has the lifetime of `s`.
    let native_bytes =
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) };
    PrimSlice {
        code: P::CODE,
        elem_size: std::mem::size_of::<P>(),
        len: s.len(),
        native_bytes,
    }
}

/// Whether `A` (maybe non-'static) has the type id of `B`.
#[inline(always)]
fn same<A: ?Sized, B: ?Sized + 'static>() -> bool {
    typeid::of::<A>() == TypeId::of::<B>()
}

/// Reinterprets `&T` as `&U`.
///
/// # Safety
/// `T` must be `U` up to lifetimes, where every lifetime inside `T` outlives
/// `'a` and `U` is covariant in the lifetimes that are shortened to `'a`.
#[inline(always)]
unsafe fn cast_ref<'a, T: ?Sized, U: 'a>(v: &'a T) -> &'a U {
    // SAFETY: guaranteed by the caller: same type, so same layout and a thin
    // pointer to the same, valid, initialised value.
    unsafe { &*(v as *const T).cast::<U>() }
}

/// Recognises `T` as one of the supported containers of `P`.
#[inline(always)]
fn match_prim<'a, T: ?Sized, P: Pod>(v: &'a T) -> Option<&'a [P]> {
    // SAFETY (all `cast_ref` calls below): `same::<T, X>()` holds, and every
    // type with the id of `X` is `X` with its lifetimes (at most one, a borrow
    // or the `Cow` lifetime) replaced. That lifetime outlives `'a` because
    // `&'a T` is well-formed, and `&'l _`, `&'l mut _` and `Cow<'l, _>` are
    // covariant in `'l`, so viewing it as `'a` is sound. We only read.
    if same::<T, Vec<P>>() {
        return Some(unsafe { cast_ref::<T, Vec<P>>(v) }.as_slice());
    }
    if same::<T, [P]>() {
        // SAFETY: `T` is `[P]`, so `v` is a fat pointer to `len` elements of
        // `P` starting at its data pointer, and `size_of_val(v)` is
        // `len * size_of::<P>()` (`P` is never zero-sized).
        let len = std::mem::size_of_val(v) / std::mem::size_of::<P>();
        return Some(unsafe { std::slice::from_raw_parts((v as *const T).cast::<P>(), len) });
    }
    if same::<T, Box<[P]>>() {
        return Some(&**unsafe { cast_ref::<T, Box<[P]>>(v) });
    }
    if same::<T, &'static [P]>() {
        return Some(*unsafe { cast_ref::<T, &'a [P]>(v) });
    }
    if same::<T, &'static Vec<P>>() {
        return Some(unsafe { cast_ref::<T, &'a Vec<P>>(v) }.as_slice());
    }
    if same::<T, &'static mut [P]>() {
        return Some(&**unsafe { cast_ref::<T, &'a mut [P]>(v) });
    }
    if same::<T, &'static mut Vec<P>>() {
        return Some(unsafe { cast_ref::<T, &'a mut Vec<P>>(v) }.as_slice());
    }
    if same::<T, Arc<[P]>>() {
        return Some(&**unsafe { cast_ref::<T, Arc<[P]>>(v) });
    }
    if same::<T, Rc<[P]>>() {
        return Some(&**unsafe { cast_ref::<T, Rc<[P]>>(v) });
    }
    if same::<T, Cow<'static, [P]>>() {
        return Some(&**unsafe { cast_ref::<T, Cow<'a, [P]>>(v) });
    }
    None
}

/// If `T` is a supported container of primitive numbers (`Vec<P>`, `[P]`,
/// `Box<[P]>`, `&[P]`, `&Vec<P>`, `&mut [P]`, `&mut Vec<P>`, `Arc<[P]>`,
/// `Rc<[P]>`, `Cow<[P]>`), its elements' memory.
#[inline(always)]
pub(crate) fn prim_slice<T: ?Sized>(v: &T) -> Option<PrimSlice<'_>> {
    macro_rules! try_types {
        ($($p:ty),*) => {$(
            if let Some(s) = match_prim::<T, $p>(v) {
                return Some(bytes_of(s));
            }
        )*};
    }
    try_types!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, f32, f64);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_containers() {
        let v: Vec<f64> = vec![1.0, 2.0, 3.0];
        let expect = prim_slice(&v).unwrap();
        assert_eq!(expect.code, tag::F64);
        assert_eq!(expect.len, 3);
        assert_eq!(expect.native_bytes.len(), 24);
        let s: &[f64] = &v;
        let b: Box<[f64]> = v.clone().into_boxed_slice();
        let a: Arc<[f64]> = Arc::from(v.as_slice());
        let r: Rc<[f64]> = Rc::from(v.as_slice());
        let c: Cow<'_, [f64]> = Cow::Borrowed(s);
        let mut m = v.clone();
        let ms: &mut [f64] = &mut m;
        for got in [
            prim_slice(s),
            prim_slice(&s),
            prim_slice(&b),
            prim_slice(&&v),
            prim_slice(&a),
            prim_slice(&r),
            prim_slice(&c),
        ] {
            let got = got.unwrap();
            assert_eq!(got.native_bytes, expect.native_bytes);
            assert_eq!(got.code, expect.code);
        }
        assert_eq!(prim_slice(&ms).unwrap().native_bytes, expect.native_bytes);
        let mut mv = v.clone();
        let mvr = &mut mv;
        assert_eq!(prim_slice(&mvr).unwrap().native_bytes, expect.native_bytes);
    }

    #[test]
    fn other_types_are_not_bulk() {
        assert!(prim_slice(&5i64).is_none());
        assert!(prim_slice(&vec![1usize, 2]).is_none());
        assert!(prim_slice(&vec![true]).is_none());
        assert!(prim_slice(&vec!["a"]).is_none());
        assert!(prim_slice(&[1u8, 2, 3]).is_none());
        assert!(prim_slice("abc").is_none());
        assert!(prim_slice(&vec![vec![1u8]]).is_none());
    }

    #[test]
    fn every_element_type() {
        assert_eq!(prim_slice(&vec![1u8]).unwrap().code, tag::U8);
        assert_eq!(prim_slice(&vec![1i8]).unwrap().code, tag::I8);
        assert_eq!(prim_slice(&vec![1u16]).unwrap().code, tag::U16);
        assert_eq!(prim_slice(&vec![1i16]).unwrap().code, tag::I16);
        assert_eq!(prim_slice(&vec![1u32]).unwrap().code, tag::U32);
        assert_eq!(prim_slice(&vec![1i32]).unwrap().code, tag::I32);
        assert_eq!(prim_slice(&vec![1u64]).unwrap().code, tag::U64);
        assert_eq!(prim_slice(&vec![1i64]).unwrap().code, tag::I64);
        assert_eq!(prim_slice(&vec![1u128]).unwrap().code, tag::U128);
        assert_eq!(prim_slice(&vec![1i128]).unwrap().code, tag::I128);
        assert_eq!(prim_slice(&vec![1f32]).unwrap().code, tag::F32);
        assert_eq!(prim_slice(&vec![1f64]).unwrap().code, tag::F64);
        let wide = vec![1u128, 2];
        let p = prim_slice(&wide).unwrap();
        assert_eq!((p.elem_size, p.len, p.native_bytes.len()), (16, 2, 32));
    }
}
