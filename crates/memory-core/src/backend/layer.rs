//! [`Layer`]: what wraps a backend in another, so that stacks compose in the order given.

use std::fmt;

use super::DynBackend;
use crate::error::BackendError;

/// Wraps a backend in another that adds one concern (see [`layers`](crate::layers)), as
/// tower's `Layer` wraps a service and OpenDAL's `Operator::layer` an accessor.
///
/// [`MemoryBuilder::layer`](crate::MemoryBuilder::layer) applies layers in the order they are
/// given, each around the stack built so far: the first given sits next to the store, the last
/// given is outermost.
///
/// ```
/// use std::sync::Arc;
/// use cachette_core::layers::{RetryLayer, RetryPolicy, StatsLayer};
/// use cachette_core::Memory;
///
/// let memory = Memory::builder()
///     .url("memory://layer-doc")
///     .layer(RetryLayer::new(RetryPolicy::default())) // next to the store
///     .layer(StatsLayer::new())                       // outermost
///     .build()
///     .unwrap();
/// # let _ = memory;
/// ```
pub trait Layer: Send + Sync + fmt::Debug + 'static {
    /// Wraps `inner`.
    fn layer(&self, inner: DynBackend) -> Result<DynBackend, BackendError>;
}

/// A layer from a closure, for one-off wrappers.
pub struct LayerFn<F>(pub F);

impl<F> fmt::Debug for LayerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LayerFn")
    }
}

impl<F> Layer for LayerFn<F>
where
    F: Fn(DynBackend) -> DynBackend + Send + Sync + 'static,
{
    fn layer(&self, inner: DynBackend) -> Result<DynBackend, BackendError> {
        Ok((self.0)(inner))
    }
}
