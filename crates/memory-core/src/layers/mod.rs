//! Layers: backends that wrap other backends to add one concern each.
//!
//! A layer implements [`StoreBackend`](crate::plugin::StoreBackend) over any
//! [`DynBackend`](crate::plugin::DynBackend), so layers stack on each other and on any backend,
//! and the core cannot tell a stack from a plain backend: every read, memory-mapped ones
//! included, passes through every layer. Backends themselves stay simple: they never retry,
//! never count, never tier. Each layer has a [`Layer`] (`RetryLayer`, `TieredLayer`,
//! `StatsLayer`) that [`MemoryBuilder::layer`](crate::MemoryBuilder::layer) stacks in the
//! order given, the first next to the store.
//!
//! | layer | for |
//! | --- | --- |
//! | [`Tiered`] | a local tier (usually the local disk) in front of a remote one (S3, Redis, …): reads are served locally when they can be, remote hits are copied to the local tier, writes go through to both. [`Tiered::counters`] tells where reads were served from. |
//! | [`Retry`] | retries operations that fail with a transient error (`Unavailable`, `Timeout`), with exponential backoff and jitter as its [`RetryPolicy`] says; anything else fails at once. |
//! | [`Stats`] | counts operations, hits, misses, bytes and latency, read through a [`StatsHandle`] as [`BackendStats`]; emits one tracing event per operation (target `cachette::stats`, level debug). |
//!
//! # Stacking
//!
//! Each layer is built from the backend it wraps, innermost first. The usual stack for a shared
//! remote store with a local copy is:
//!
//! ```text
//! Tiered
//! ├── local:  the local disk
//! └── remote: Retry
//!             └── Stats
//!                 └── the remote store
//! ```
//!
//! - **`Retry` around the remote tier only**: the network fails in passing, while the local
//!   disk's failures (permissions, a full disk) last, and `Tiered` already falls back to the
//!   remote tier when the local one fails.
//! - **`Stats` inside `Retry`** counts every attempt, failed ones included, so a flaky network
//!   shows in `errors`; **outside `Retry`** it counts the operations the layers above asked for,
//!   each once. Around the remote tier it shows what reached the network (a local hit does
//!   not); around the whole `Tiered` stack, what the core asked for.
//! - Stack retrying once: `Retry` marks the errors it gives up on as permanent, so another
//!   `Retry` around it would not multiply the attempts, but would not help either.
//!
//! ```
//! use std::sync::Arc;
//! use cachette_core::layers::{Retry, RetryPolicy, Stats, Tiered};
//! use cachette_core::Memory;
//! use cachette_core::plugin::InMemoryBackend;
//!
//! // Stand-ins: the local disk and a remote store would be `cachette::fs` and
//! // `cachette::redis` (or `cachette::s3`) backends.
//! let local = Arc::new(InMemoryBackend::new());
//! let remote = Arc::new(InMemoryBackend::new());
//!
//! let stats = Stats::new(remote);
//! let network = stats.handle();
//! let remote = Arc::new(Retry::new(Arc::new(stats), RetryPolicy::default()));
//! let memory = Memory::with_backend(Arc::new(Tiered::new(local, remote)));
//!
//! let square = memory.cache(|x: u64| x * x);
//! assert_eq!(square.eval(12), 144); // computed, written to both tiers
//! assert_eq!(square.eval(12), 144); // served by the local tier
//! assert_eq!(network.snapshot().hits, 0);
//! println!("remote: {}", network.snapshot());
//! ```

#[cfg(test)]
mod flaky;
mod retry;
mod stats;
mod tiered;

pub use crate::backend::{Layer, LayerFn};
pub use retry::{Retry, RetryLayer, RetryPolicy};
pub use stats::{BackendStats, Latency, Stats, StatsHandle, StatsLayer};
pub use tiered::{TierCounters, TierHandle, Tiered, TieredLayer};
