//! Layers: backends that wrap other backends to add one concern each.
//!
//! A layer implements [`StoreBackend`](crate::StoreBackend) over any
//! [`DynBackend`](crate::DynBackend), so layers stack on each other and on any backend, and the
//! core cannot tell a stack from a plain backend. Backends themselves stay simple: they never
//! retry, never count, never tier.
//!
//! | layer | for |
//! | --- | --- |
//! | [`Retry`] | retries operations that fail with a transient error (`Unavailable`, `Timeout`), with exponential backoff and jitter as its [`RetryPolicy`] says; anything else fails at once. |
//! | [`Stats`] | counts operations, hits, misses, bytes and latency, read through a [`StatsHandle`] as [`BackendStats`]; emits one tracing event per operation (target `cachette::stats`, level debug). |
//!
//! `Retry` belongs around a network backend; `Stats` inside it counts every attempt, failed
//! ones included, and outside it the operations asked for, each once.

#[cfg(test)]
mod flaky;
mod retry;
mod stats;

pub use retry::{Retry, RetryPolicy};
pub use stats::{BackendStats, Latency, Stats, StatsHandle};
