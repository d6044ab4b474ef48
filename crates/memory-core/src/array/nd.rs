//! Conversions between [`Array`] and `ndarray` arrays (feature `ndarray`).

use super::{Array, Element};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Dimension, IxDyn};

impl<T: Element> Array<T> {
    /// The array as an `ndarray` view, without copying.
    pub fn view(&self) -> ArrayViewD<'_, T> {
        ArrayViewD::from_shape(IxDyn(&self.shape), self.as_slice())
            .expect("an array's shape always matches its length")
    }

    /// The array as a writable `ndarray` view, when [`get_mut`](Self::get_mut) allows.
    pub fn view_mut(&mut self) -> Option<ArrayViewMutD<'_, T>> {
        let shape = IxDyn(&self.shape);
        let slice = self.get_mut()?;
        Some(
            ArrayViewMutD::from_shape(shape, slice)
                .expect("an array's shape always matches its length"),
        )
    }

    /// The array as an owned `ndarray` array (without copying when the array owns its
    /// numbers alone).
    pub fn into_ndarray(self) -> ArrayD<T> {
        let shape = IxDyn(&self.shape);
        ArrayD::from_shape_vec(shape, self.into_vec())
            .expect("an array's shape always matches its length")
    }
}

impl<T: Element, D: Dimension> From<ndarray::Array<T, D>> for Array<T> {
    /// Takes the numbers without copying when the array is in standard (row-major) layout,
    /// otherwise copies them in logical order.
    fn from(a: ndarray::Array<T, D>) -> Self {
        let shape = a.shape().to_vec();
        let data = if a.is_standard_layout() {
            let len = a.len();
            let (mut v, offset) = a.into_raw_vec_and_offset();
            let offset = offset.unwrap_or(0);
            if offset == 0 && v.len() == len {
                v
            } else {
                v.drain(offset..offset + len).collect()
            }
        } else {
            a.iter().copied().collect()
        };
        Array::from_vec(data, shape).expect("an ndarray's shape matches its length")
    }
}

impl<'a, T: Element, D: Dimension> From<ndarray::ArrayView<'a, T, D>> for Array<T> {
    /// Copies the numbers in logical (row-major) order.
    fn from(a: ndarray::ArrayView<'a, T, D>) -> Self {
        let shape = a.shape().to_vec();
        let data = match a.as_slice() {
            Some(s) => s.to_vec(),
            None => a.iter().copied().collect(),
        };
        Array::from_vec(data, shape).expect("an ndarray's shape matches its length")
    }
}
