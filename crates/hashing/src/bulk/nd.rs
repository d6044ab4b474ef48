//! Bulk fast path for `ndarray` arrays (feature `ndarray`).
//!
//! Recognises `ArrayBase<S, D>` for every [`Pod`] element type `P`, the
//! dimensions `Ix0`..`Ix6` and `IxDyn`, and the storages `OwnedRepr<P>`
//! (`Array`), `ViewRepr<&P>` (`ArrayView`), `ViewRepr<&mut P>`
//! (`ArrayViewMut`), `OwnedArcRepr<P>` (`ArcArray`) and `CowRepr<P>`
//! (`CowArray`), each also behind `&` and `&mut`.
//!
//! The test is the one of the parent module: the `TypeId` of the value's type
//! (from `typeid`, so non-'static types work) against the `TypeId` of every
//! candidate. Only [`nd_array`] is generic over the value's type; it computes
//! that id once and hands a type-erased pointer to [`match_elem`], which is
//! generic over the element type only. Everything is `#[inline(always)]` so
//! that with optimisations the comparisons fold to constants: for a type that
//! is not a candidate nothing is left. The code after a match (shape, layout,
//! iteration) is generic over the element type and dimension only, never
//! over the value's type.
//!
//! The `unsafe` here is the pointer cast after a `TypeId` match, like
//! `cast_ref` in the parent module.

use std::any::TypeId;

use ndarray::{
    ArrayBase, ArrayRef, CowRepr, Data, Dimension, Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn,
    OwnedArcRepr, OwnedRepr, ViewRepr,
};

use super::{Pod, bytes_of};

/// An n-dimensional array of primitive numbers, type-erased.
#[derive(Clone, Copy)]
pub(crate) struct NdPrim<'a> {
    /// The element-type code (the scalar tag of the element type).
    pub(crate) code: u8,
    /// Size of one element in bytes.
    pub(crate) elem_size: usize,
    /// Length of each axis, outermost first.
    pub(crate) shape: &'a [usize],
    /// The elements.
    pub(crate) data: NdData<'a>,
}

impl std::fmt::Debug for NdPrim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdPrim")
            .field("code", &self.code)
            .field("elem_size", &self.elem_size)
            .field("shape", &self.shape)
            .field("contiguous", &matches!(self.data, NdData::Contiguous(_)))
            .finish()
    }
}

/// Where the elements of an [`NdPrim`] are.
#[derive(Clone, Copy)]
pub(crate) enum NdData<'a> {
    /// Standard (row-major, contiguous) layout: the elements' memory, in
    /// logical order and native byte order.
    Contiguous(&'a [u8]),
    /// Any other layout: the array, to be walked in logical order.
    Strided(&'a dyn Logical),
}

impl NdPrim<'_> {
    /// Hands the elements' memory, in logical (row-major) order and native
    /// byte order, to `f`, in blocks that each hold whole elements.
    pub(crate) fn for_each_block(&self, f: &mut dyn FnMut(&[u8])) {
        match self.data {
            NdData::Contiguous(bytes) => f(bytes),
            NdData::Strided(a) => a.for_each_block(f),
        }
    }
}

/// An array that can hand out its elements in logical order.
pub(crate) trait Logical {
    /// See [`NdPrim::for_each_block`].
    fn for_each_block(&self, f: &mut dyn FnMut(&[u8]));
}

impl<S, D, P> Logical for ArrayBase<S, D>
where
    S: Data<Elem = P>,
    D: Dimension,
    P: Pod,
{
    fn for_each_block(&self, f: &mut dyn FnMut(&[u8])) {
        logical_blocks::<P, D>(self, f);
    }
}

/// Elements per block when gathering a strided array.
const BLOCK: usize = 1024;

/// Walks `a` row by row (rows along the last axis, in row-major order): rows
/// that are contiguous are handed over as they are, other elements are
/// gathered into blocks.
fn logical_blocks<P: Pod, D: Dimension>(a: &ArrayRef<P, D>, f: &mut dyn FnMut(&[u8])) {
    let mut buf: Vec<P> = Vec::with_capacity(BLOCK);
    for row in a.rows() {
        if let Some(s) = row.as_slice() {
            if !buf.is_empty() {
                f(bytes_of(&buf).native_bytes);
                buf.clear();
            }
            f(bytes_of(s).native_bytes);
            continue;
        }
        for &x in row.iter() {
            if buf.len() == BLOCK {
                f(bytes_of(&buf).native_bytes);
                buf.clear();
            }
            buf.push(x);
        }
    }
    if !buf.is_empty() {
        f(bytes_of(&buf).native_bytes);
    }
}

/// The type-erased form of a recognised array.
fn erase<'a, S, D, P>(a: &'a ArrayBase<S, D>) -> NdPrim<'a>
where
    S: Data<Elem = P> + 'a,
    D: Dimension + 'a,
    P: Pod,
{
    let data = match a.as_slice() {
        Some(s) => NdData::Contiguous(bytes_of(s).native_bytes),
        None => NdData::Strided(a),
    };
    NdPrim {
        code: P::CODE,
        elem_size: std::mem::size_of::<P>(),
        shape: a.shape(),
        data,
    }
}

// ------------------------------------------------------------------ matching

/// Which candidate a type is, packed into a `u32` so that the comparisons
/// below combine into straight-line code: element code (bits 0..8), dimension
/// code (bits 8..16, see [`dim_code`]), storage (bits 16..19), behind a
/// reference (bit 19), and bit 20 always set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind(u32);

impl Kind {
    #[inline(always)]
    const fn new(elem: u8, dim: u8, storage: Storage, by_ref: bool) -> Kind {
        Kind(
            elem as u32
                | (dim as u32) << 8
                | (storage as u32) << 16
                | (by_ref as u32) << 19
                | 1 << 20,
        )
    }

    fn elem(self) -> u8 {
        self.0 as u8
    }

    fn dim(self) -> u8 {
        (self.0 >> 8) as u8
    }

    fn storage(self) -> Storage {
        match (self.0 >> 16) & 7 {
            0 => Storage::Owned,
            1 => Storage::View,
            2 => Storage::ViewMut,
            3 => Storage::Arc,
            _ => Storage::Cow,
        }
    }

    fn by_ref(self) -> bool {
        self.0 & 1 << 19 != 0
    }
}

/// The storage of a candidate array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// `OwnedRepr<P>`: `Array`.
    Owned = 0,
    /// `ViewRepr<&P>`: `ArrayView`.
    View = 1,
    /// `ViewRepr<&mut P>`: `ArrayViewMut`.
    ViewMut = 2,
    /// `OwnedArcRepr<P>`: `ArcArray`.
    Arc = 3,
    /// `CowRepr<P>`: `CowArray`.
    Cow = 4,
}

/// The dimension types, in the form `$m!(Ix0, Ix1, ...)`.
macro_rules! with_dims {
    ($m:ident) => {
        $m!(Ix0, Ix1, Ix2, Ix3, Ix4, Ix5, Ix6, IxDyn)
    };
}

/// The element types, in the form `$m!(u8, i8, ...)`.
macro_rules! with_elems {
    ($m:ident) => {
        $m!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, f32, f64)
    };
}

/// A code for the dimension type: its number of axes, or 255 for `IxDyn`.
#[inline(always)]
const fn dim_code<D: Dimension>() -> u8 {
    match D::NDIM {
        Some(n) => n as u8,
        None => u8::MAX,
    }
}

/// Something done with each candidate type; see [`candidates`].
trait Visit {
    /// Called with the id of one candidate type and what it is.
    fn visit(&mut self, id: TypeId, kind: Kind);
}

/// Calls `v` with every candidate, in straight-line code (no early exit).
///
/// Inlined completely in optimised builds, so that with [`Find`] and a
/// constant id everything folds to a constant; a plain function otherwise
/// (it is then only used once, by [`table`]).
#[cfg_attr(not(debug_assertions), inline(always))]
fn candidates<V: Visit>(v: &mut V) {
    macro_rules! elems {
        ($($p:ty),*) => {$(
            candidates_of::<V, $p>(v);
        )*};
    }
    with_elems!(elems);
}

/// [`candidates`] with element type `P`.
#[cfg_attr(not(debug_assertions), inline(always))]
fn candidates_of<V: Visit, P: Pod>(v: &mut V) {
    macro_rules! dims {
        ($($d:ty),*) => {$(
            candidates_in::<V, P, $d>(v);
        )*};
    }
    with_dims!(dims);
}

/// [`candidates`] with element type `P` and dimension `D`.
#[cfg_attr(not(debug_assertions), inline(always))]
fn candidates_in<V: Visit, P: Pod, D: Dimension + 'static>(v: &mut V) {
    macro_rules! storages {
        ($($storage:ident: $s:ty),* $(,)?) => {$(
            let kind = Kind::new(P::CODE, dim_code::<D>(), Storage::$storage, false);
            let by_ref = Kind::new(P::CODE, dim_code::<D>(), Storage::$storage, true);
            v.visit(const { TypeId::of::<ArrayBase<$s, D>>() }, kind);
            v.visit(const { TypeId::of::<&ArrayBase<$s, D>>() }, by_ref);
            v.visit(const { TypeId::of::<&mut ArrayBase<$s, D>>() }, by_ref);
        )*};
    }
    storages! {
        Owned: OwnedRepr<P>,
        View: ViewRepr<&'static P>,
        ViewMut: ViewRepr<&'static mut P>,
        Arc: OwnedArcRepr<P>,
        Cow: CowRepr<'static, P>,
    }
}

/// Looks for one type id: ORs together the kinds of the candidates whose id
/// is equal (at most one). Branch-free, so that it folds quickly.
struct Find {
    id: TypeId,
    found: u32,
}

impl Visit for Find {
    #[inline(always)]
    fn visit(&mut self, id: TypeId, kind: Kind) {
        self.found |= u32::from(id == self.id) * kind.0;
    }
}

/// Collects every candidate.
struct Collect(Vec<(TypeId, Kind)>);

impl Visit for Collect {
    fn visit(&mut self, id: TypeId, kind: Kind) {
        self.0.push((id, kind));
    }
}

/// Every candidate, sorted by type id.
fn table() -> &'static [(TypeId, Kind)] {
    static TABLE: std::sync::OnceLock<Vec<(TypeId, Kind)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut all = Collect(Vec::new());
        candidates(&mut all);
        all.0.sort_unstable_by_key(|&(id, _)| id);
        all.0
    })
}

/// The candidate with type id `id`, by comparing with each: folds to a
/// constant when `id` is one and everything is inlined.
#[inline(always)]
fn find_unrolled(id: TypeId) -> Option<Kind> {
    let mut f = Find { id, found: 0 };
    candidates(&mut f);
    (f.found != 0).then_some(Kind(f.found))
}

/// The candidate with type id `id`, by binary search in [`table`].
fn find_in_table(id: TypeId) -> Option<Kind> {
    let t = table();
    t.binary_search_by_key(&id, |&(id, _)| id)
        .ok()
        .map(|i| t[i].1)
}

/// The candidate with type id `id`.
///
/// Optimised builds (no debug assertions) compare with every candidate
/// inline: the comparisons fold, so a type that is not a candidate costs
/// nothing at run time. Unoptimised builds fold nothing, and 1440 comparisons
/// per value would be slow there, so they search a sorted table instead.
#[cfg_attr(not(debug_assertions), inline(always))]
#[cfg_attr(debug_assertions, inline(never))]
fn find(id: TypeId) -> Option<Kind> {
    if cfg!(debug_assertions) {
        find_in_table(id)
    } else {
        find_unrolled(id)
    }
}

/// The array `p` points to, of the type described by `kind`.
///
/// Not generic, and out of line: all of the per-type code is compiled once,
/// here, and not in every crate that hashes values.
///
/// # Safety
/// `p` points to a live value of the candidate type described by `kind`
/// (with its lifetimes replaced), borrowed for `'a`, and every lifetime
/// inside it outlives `'a`.
#[inline(never)]
unsafe fn convert<'a>(kind: Kind, p: *const ()) -> NdPrim<'a> {
    let p = if kind.by_ref() {
        // SAFETY: the value is a `&'l X` or `&'l mut X` for a sized `X`,
        // whose representation is a thin pointer to the `X`, valid for `'a`
        // because `'l` outlives `'a`.
        unsafe { *p.cast::<*const ()>() }
    } else {
        p
    };
    macro_rules! elems {
        ($($p:ty),*) => {$(
            if kind.elem() == <$p as Pod>::CODE {
                // SAFETY: forwarded from the caller.
                return unsafe { convert_of::<$p>(kind, p) };
            }
        )*};
    }
    with_elems!(elems);
    unreachable!("not a candidate: {kind:?}")
}

/// [`convert`] with element type `P`.
///
/// # Safety
/// As for [`convert`], with `p` pointing to the array itself.
unsafe fn convert_of<'a, P: Pod>(kind: Kind, p: *const ()) -> NdPrim<'a> {
    macro_rules! dims {
        ($($d:ty),*) => {$(
            if kind.dim() == dim_code::<$d>() {
                // SAFETY: forwarded from the caller.
                return unsafe { convert_in::<P, $d>(kind.storage(), p) };
            }
        )*};
    }
    with_dims!(dims);
    unreachable!("not a candidate: {kind:?}")
}

/// [`convert`] with element type `P` and dimension `D`.
///
/// # Safety
/// As for [`convert_of`].
unsafe fn convert_in<'a, P: Pod, D: Dimension + 'static>(
    storage: Storage,
    p: *const (),
) -> NdPrim<'a> {
    // SAFETY (every cast below): by the caller's guarantee `p` points to a
    // live `ArrayBase<S, D>` with the storage `S` named by `storage`, element
    // type `P` and its lifetime (the borrow of a view or the `Cow`, if any)
    // replaced, borrowed for `'a`; that lifetime outlives `'a`.
    // `ArrayBase<S, D>` is covariant in it (`ViewRepr<&'l P>` and
    // `ViewRepr<&'l mut P>` hold `PhantomData<&'l P>` and
    // `PhantomData<&'l mut P>`, `CowRepr<'l, P>` holds `ViewRepr<&'l P>`),
    // so viewing it as `'a` is sound. We only read.
    unsafe {
        match storage {
            Storage::Owned => erase(&*p.cast::<ArrayBase<OwnedRepr<P>, D>>()),
            Storage::View => erase(&*p.cast::<ArrayBase<ViewRepr<&'a P>, D>>()),
            Storage::ViewMut => erase(&*p.cast::<ArrayBase<ViewRepr<&'a mut P>, D>>()),
            Storage::Arc => erase(&*p.cast::<ArrayBase<OwnedArcRepr<P>, D>>()),
            Storage::Cow => erase(&*p.cast::<ArrayBase<CowRepr<'a, P>, D>>()),
        }
    }
}

/// If `T` is a supported `ndarray` array of primitive numbers (see the module
/// docs), its shape and elements.
#[inline(always)]
pub(crate) fn nd_array<T: ?Sized>(v: &T) -> Option<NdPrim<'_>> {
    let kind = find(typeid::of::<T>())?;
    // SAFETY: `v` is a `T`, the candidate described by `kind` (same type id,
    // so the same type up to lifetimes), borrowed for the lifetime of `v`,
    // which every lifetime inside `T` outlives because `&T` is well-formed.
    // Candidates are sized, so the thin pointer is the whole pointer.
    Some(unsafe { convert(kind, (v as *const T).cast::<()>()) })
}

#[cfg(test)]
mod tests {
    use ndarray::{
        ArcArray, Array, Array1, Array2, ArrayD, ArrayView, ArrayViewMut, CowArray, Dimension,
        IntoDimension, ShapeBuilder, arr0, s,
    };

    use super::*;
    use crate::encoding::tag;

    /// The logical elements of `a` as native bytes.
    fn gathered(a: &NdPrim<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        a.for_each_block(&mut |b| {
            assert_eq!(b.len() % a.elem_size, 0);
            out.extend_from_slice(b);
        });
        out
    }

    fn native(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    /// Every storage, plain and behind `&` and `&mut`, for one dimension.
    fn all_storages<D: Dimension + 'static>(shape: D) {
        let n = shape.size();
        let values: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let mut owned = Array::from_shape_vec(shape.clone(), values.clone()).unwrap();
        let expect_shape = owned.shape().to_vec();
        let expect = native(&values);
        let check = |got: Option<NdPrim<'_>>| {
            let got = got.expect("recognised");
            assert_eq!(got.code, tag::F64);
            assert_eq!(got.elem_size, 8);
            assert_eq!(got.shape, expect_shape.as_slice());
            assert!(matches!(got.data, NdData::Contiguous(_)));
            assert_eq!(gathered(&got), expect);
        };
        check(nd_array(&owned));
        check(nd_array(&&owned));
        check(nd_array(&&mut owned.clone()));
        let view: ArrayView<'_, f64, D> = owned.view();
        check(nd_array(&view));
        check(nd_array(&&view));
        check(nd_array(&&mut view.clone()));
        let arc: ArcArray<f64, D> = owned.to_shared();
        check(nd_array(&arc));
        check(nd_array(&&arc));
        let cow_view: CowArray<'_, f64, D> = CowArray::from(owned.view());
        check(nd_array(&cow_view));
        check(nd_array(&&cow_view));
        let cow_owned: CowArray<'_, f64, D> = CowArray::from(owned.clone());
        check(nd_array(&cow_owned));
        let mut copy = owned.clone();
        let mut view_mut: ArrayViewMut<'_, f64, D> = copy.view_mut();
        check(nd_array(&view_mut));
        check(nd_array(&&view_mut));
        check(nd_array(&&mut view_mut));
        let vm = &mut owned;
        check(nd_array(&vm));
    }

    #[test]
    fn every_dimension_and_storage() {
        all_storages(ndarray::Ix0());
        all_storages(ndarray::Ix1(3));
        all_storages(ndarray::Ix2(2, 3));
        all_storages(ndarray::Ix3(2, 1, 3));
        all_storages(ndarray::Ix4(1, 2, 1, 2));
        all_storages(ndarray::Ix5(2, 1, 1, 2, 1));
        all_storages(ndarray::Ix6(1, 1, 2, 1, 2, 1));
        all_storages(ndarray::IxDyn(&[2, 2, 1, 1, 1, 1, 2]));
        all_storages(ndarray::IxDyn(&[]));
    }

    #[test]
    fn every_element_type() {
        macro_rules! check {
            ($($t:ty => $code:expr),*) => {$(
                let a: Array1<$t> = Array1::from(vec![1 as $t, 2 as $t]);
                let got = nd_array(&a).unwrap();
                assert_eq!(got.code, $code);
                assert_eq!(got.elem_size, std::mem::size_of::<$t>());
                assert_eq!(gathered(&got).len(), 2 * std::mem::size_of::<$t>());
                let d: ArrayD<$t> = ArrayD::from_elem(vec![1, 2], 1 as $t);
                assert_eq!(nd_array(&d.view()).unwrap().code, $code);
            )*};
        }
        check!(
            u8 => tag::U8, i8 => tag::I8, u16 => tag::U16, i16 => tag::I16,
            u32 => tag::U32, i32 => tag::I32, u64 => tag::U64, i64 => tag::I64,
            u128 => tag::U128, i128 => tag::I128, f32 => tag::F32, f64 => tag::F64
        );
    }

    #[test]
    fn other_types_are_not_arrays() {
        assert!(nd_array(&vec![1.0f64]).is_none());
        assert!(nd_array(&1.0f64).is_none());
        assert!(nd_array(&Array1::from(vec![1usize])).is_none());
        assert!(nd_array(&Array1::from(vec![true])).is_none());
        assert!(nd_array(&Array1::from(vec!["a"])).is_none());
        assert!(nd_array(&Array1::from(vec![(1u8,)])).is_none());
        assert!(nd_array(&Array1::from(vec![Array1::from(vec![1u8])])).is_none());
        let a = Array1::from(vec![1.0f64]);
        // Two references deep is not a candidate (as for slices).
        assert!(nd_array(&&&a).is_none());
        assert!(nd_array(&Some(a.clone())).is_none());
        assert!(nd_array(&Box::new(a)).is_none());
        assert!(nd_array("abc").is_none());
        assert!(nd_array(&[1.0f64][..]).is_none());
    }

    #[test]
    fn strided_layouts_walk_in_logical_order() {
        let a = Array2::from_shape_fn((37, 41), |(i, j)| (i * 1000 + j) as f64);
        for view in [
            a.t(),
            a.slice(s![.., ..;2]),
            a.slice(s![..;-1, ..]),
            a.slice(s![.., 3..9]),
            a.slice(s![1..;3, ..;-5]),
        ] {
            let got = nd_array(&view).unwrap();
            assert!(matches!(got.data, NdData::Strided(_)), "{view:?}");
            let copy = view.as_standard_layout().into_owned();
            let expect = nd_array(&copy).unwrap();
            assert!(matches!(expect.data, NdData::Contiguous(_)));
            assert_eq!(got.shape, expect.shape);
            assert_eq!(gathered(&got), gathered(&expect));
        }
        // Fortran order, more than one block.
        let f = Array::from_shape_vec((300, 7).f(), (0..2100).map(f64::from).collect()).unwrap();
        let got = nd_array(&f).unwrap();
        assert!(matches!(got.data, NdData::Strided(_)));
        let expect: Vec<f64> = f.iter().copied().collect();
        assert_eq!(gathered(&got), native(&expect));
        // Zero-dimensional and empty arrays.
        let z = arr0(2.5f64);
        assert_eq!(nd_array(&z).unwrap().shape, &[] as &[usize]);
        assert_eq!(gathered(&nd_array(&z).unwrap()), native(&[2.5]));
        let e = Array2::<f64>::zeros((0, 3).into_dimension());
        assert_eq!(gathered(&nd_array(&e.t()).unwrap()), Vec::<u8>::new());
    }
}
