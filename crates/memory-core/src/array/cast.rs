//! The only place arrays look at bytes as numbers and numbers as bytes. Each function is safe
//! to call: it checks what its `unsafe` block relies on, or relies only on what [`Element`]
//! guarantees (primitive numbers, sealed: no padding, every bit pattern valid).

use std::sync::Arc;

use super::Element;

/// Views bytes as numbers: `None` unless they are aligned for `T` and hold a whole number of
/// them.
pub(super) fn view<T: Element>(bytes: &[u8]) -> Option<&[T]> {
    if !bytes.as_ptr().cast::<T>().is_aligned() || !bytes.len().is_multiple_of(size_of::<T>()) {
        return None;
    }
    // SAFETY: aligned and a whole number of `T`s (checked above); every bit pattern is a valid
    // `T` (`Element` is sealed to primitive numbers); the slice borrows `bytes`.
    Some(unsafe {
        std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size_of::<T>())
    })
}

/// Views bytes as writable numbers: `None` unless aligned for `T` and a whole number of them.
pub(super) fn view_mut<T: Element>(bytes: &mut [u8]) -> Option<&mut [T]> {
    if !bytes.as_ptr().cast::<T>().is_aligned() || !bytes.len().is_multiple_of(size_of::<T>()) {
        return None;
    }
    // SAFETY: as in `view`; every `T` written is valid bytes, and the borrow is unique.
    Some(unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), bytes.len() / size_of::<T>())
    })
}

/// Whether bytes can be viewed as `T`s in place (see [`view`]).
pub(super) fn fits<T: Element>(bytes: &[u8]) -> bool {
    bytes.as_ptr().cast::<T>().is_aligned() && bytes.len().is_multiple_of(size_of::<T>())
}

/// Numbers seen as their bytes, in native order.
pub(super) fn bytes_of<T: Element>(numbers: &[T]) -> &[u8] {
    // SAFETY: primitive numbers have no padding; the bytes borrow `numbers`.
    unsafe {
        std::slice::from_raw_parts(
            numbers.as_ptr().cast::<u8>(),
            std::mem::size_of_val(numbers),
        )
    }
}

/// Copies little-endian bytes into numbers (a trailing partial number is left out).
pub(super) fn copy_le<T: Element>(bytes: &[u8]) -> Vec<T> {
    let n = bytes.len() / size_of::<T>();
    let mut out = vec![T::default(); n];
    // SAFETY: `out` holds `n` initialised `T`s, which are `n * size_of::<T>()` bytes that any
    // byte values make valid `T`s; the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            out.as_mut_ptr().cast::<u8>(),
            n * size_of::<T>(),
        );
    }
    if cfg!(target_endian = "big") {
        for x in &mut out {
            *x = x.swap_le();
        }
    }
    out
}

/// An owned vector of numbers seen as bytes, so that it can back a [`bytes::Bytes`] without a
/// copy.
pub(super) struct OwnedBytes<T: Element>(pub(super) Arc<Vec<T>>);

impl<T: Element> AsRef<[u8]> for OwnedBytes<T> {
    fn as_ref(&self) -> &[u8] {
        // The vector is never written while shared: writes go through `Arc::get_mut`, which
        // fails while this owner holds a reference.
        bytes_of(self.0.as_slice())
    }
}
