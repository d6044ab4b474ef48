//! Redis and Redis Cluster backend for Cachette.
//!
//! Redis is where teams share hot caches across many workers: every process that memoizes into
//! the same Redis (and namespace) reuses the others' results. This crate implements
//! [`StoreBackend`](cachette_core::plugin::StoreBackend) over the `redis` crate: async, one
//! auto-reconnecting multiplexed connection (or a cluster connection), binary values, a key
//! prefix, chunking of large items, native expiry and an atomic create-if-absent.
//!
//! Most users turn it on with the `redis` feature of the `cachette` crate and name the store by
//! URL:
//!
//! ```no_run
//! # fn main() -> Result<(), cachette_core::Error> {
//! cachette_redis::link();
//! let memory = cachette_core::Memory::from_url("redis://127.0.0.1:6379/0?prefix=my-team")?;
//! let square = memory.cache(|x: u64| x * x);
//! assert_eq!(square.eval(12), 144);
//! # Ok(())
//! # }
//! ```
//!
//! # URLs
//!
//! - `redis://[user:password@]host[:port][/db][?param=value&…]`: a single server;
//! - `rediss://…`: the same over TLS (rustls with the ring provider, the system's root
//!   certificates; `#insecure` at the end skips certificate checks);
//! - `redis+cluster://[user:password@]host:port,host:port,…[/][?param=value&…]` (and
//!   `rediss+cluster://`): a Redis Cluster, reached through any of the listed nodes.
//!
//! The parameters are the fields of [`RedisConfig`] below, e.g.
//! `redis://cache.internal:6379/2?prefix=team-a&chunk_size=8M&default_ttl_secs=86400`.
//!
//! # Configuration
//!
//! In a configuration file the backend is a `[backend]` section with `type = "redis"`
//! ([`RedisConfig`], unknown fields refused):
//!
//! ```toml
//! [backend]
//! type = "redis"
//! urls = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]  # or one string
//! cluster = true                  # default false
//! prefix = "team-a"               # default "cachette": every key starts with "team-a:"
//! chunk_size = "4M"               # default 4 MiB: larger items are chunked
//! connection_timeout_ms = 2000    # default 2 s
//! response_timeout_ms = 5000      # default 5 s per command
//! default_ttl_secs = 86400        # default none: expiry of items written without one
//! chunk_grace_secs = 300          # default 5 min: lifetime of chunks in transit
//! access_tracking = "auto"        # or "idletime", "stored"
//! max_item_size = "64G"          # default 64 GiB: the largest item written or read
//! retry_busy_ms = 3000            # default 3 s: how long refusals for now are retried
//! ```
//!
//! A dead server fails an operation within the connection timeout (at once when the connection
//! is refused), and a hung one within the response timeout: a memoized call then warns and runs
//! the function, it never waits minutes. The next operation connects again. (A cluster gets the
//! two timeouts together for its first connection, which discovers the slot map.)
//!
//! # Backpressure
//!
//! A server that refuses a command *for now* (`BUSY`: a script runs; `LOADING`: a restart;
//! `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, and on a cluster `MOVED`/`ASK` beyond the client's
//! own redirections: resharding and failovers) did not run it: the backend sends it again after
//! a jittered, doubling wait (10 ms up to 500 ms), for at most `retry_busy_ms` in all (3 s by
//! default, at most 1 min, 0 for none). Then the operation fails with a temporary
//! `Unavailable` error, which a memoized call reports as a warning before running the function.
//! Every command of the backend is safe to send twice (reads, idempotent writes of an item's
//! record, scripts that check before they write), so a pipeline that met a refusal is sent
//! again whole.
//!
//! # Storage layout
//!
//! An item under the key `k` lives in the *data key* `<prefix>:<k>` (with `%`, `{`, `}` and `:`
//! escaped as `%XX` in `k`), plus a small *record* hash `{<prefix>:<k>}:s` holding its size and
//! (with `stored` access tracking) its last access. The braces are a hash tag: the record and
//! the chunks of an item live in the cluster slot of its data key, so one item's keys may be used
//! together in a transaction or a script on a cluster.
//!
//! - **Small items** (up to `chunk_size`, the common case) are one Redis string: a hit is one
//!   round trip (`GET`, and the access recorded in the same round trip). A write is one script
//!   (`SET`, with `PX` when the item has an expiry, and the record).
//! - **Large items** are cut into chunks of `chunk_size` bytes, stored under
//!   `{<prefix>:<k>}:c:<write id>:<n>` with a fresh write id per write, which names the writer
//!   (a tag of its host, its process id) and holds 128 random bits. The chunks are
//!   written first, with a temporary expiry (`chunk_grace_secs`); then one script checks they are
//!   all there, makes them permanent (or gives them the item's expiry) and publishes the
//!   *manifest* (a hash in the data key: write id, chunk count, size, chunk size) last. A reader
//!   gets the data key: `WRONGTYPE` on a string `GET` says it is a manifest; it then reads the
//!   chunks the manifest names, in parallel, and ranged reads fetch only the chunks they overlap
//!   (`GETRANGE` inside them). `head` and ranged reads start with one read-only script that
//!   returns the type and length of the data key (and the bytes of a whole value's range): one
//!   command, and no `MULTI`/`EXEC` transaction, which the `redis` crate cannot unwind when the
//!   server refuses the `MULTI` itself (it panics).
//!
//! # The store is untrusted
//!
//! Whatever is read from Redis is checked before it is used. A manifest is refused, with an
//! error and before any chunk is fetched, unless its size is at most `max_item_size`, its chunk
//! size is between 1 byte and 512 MiB, its chunk count matches the two and is at most
//! [`MAX_CHUNKS`], and its write id is at most 128 letters, digits and `-` (so that it names only
//! the item's own chunks). Each chunk read is bounded by the length the manifest gives it, and a
//! read stops at the first missing chunk. Fields of manifests and records are transferred only
//! when short; an access time that does not parse is ignored, and one in the future is taken as
//! now. The scripts that follow a manifest to its chunks (deleting, replacing) apply the same
//! bounds on the server and stop at the first chunk that does not exist, so a forged manifest
//! costs a script one command per chunk actually there (plus one), not one per chunk it names,
//! and cannot keep Redis busy.
//!
//! # Consistency
//!
//! - A reader sees an item whole or not at all: a small item is one string written by one
//!   command; a large item is invisible until its manifest is published, and a manifest only
//!   names chunks of its own write, so a reader never mixes two writes. When a write replaces a
//!   large item, the replaced chunks are not deleted but expire after `chunk_grace_secs`, so
//!   readers that fetched the old manifest finish reading it; a reader that still misses a
//!   chunk (the item was deleted, or the grace passed) reads the manifest again and starts over
//!   (up to 8 times, then it fails with a temporary error), or reports the item missing when it
//!   was deleted or lost a chunk.
//! - The last complete write wins. A writer that dies half-way leaves chunks that expire by
//!   themselves after `chunk_grace_secs`; it must therefore be longer than the transfer of the
//!   largest item. [`sweep`](cachette_core::plugin::StoreBackend::sweep)
//!   (`Memory::housekeeping`) removes at once the chunks that no manifest names and whose writer
//!   was a process of the same host (and process-id namespace) that is gone.
//! - `PutMode::Create` is `SET NX` (with `PX` for an expiry, so that a crashed holder's claim
//!   goes away) and the record, in one script, for small items, and the same check inside the
//!   publishing script for large ones: exactly one of several racing creators wins, across
//!   processes and machines.
//! - Deleting removes the data key, the record and the chunks in one script.
//!
//! # Listing, deleting, sweeping
//!
//! `list` walks the data keys with `SCAN … MATCH <prefix>:<escaped key prefix>/* COUNT 1000`
//! (glob characters escaped; on a cluster, on every master, four masters at once), and while
//! the scan goes on reads the items' sizes and last accesses with a read-only script per batch
//! of 256 items, eight batches at once. On a cluster a script touches one slot, so a batch
//! holds the keys of one master and goes to it as one pipeline of a script per slot (a script
//! refused there, as when its slot moved meanwhile, is sent again on its own). It writes
//! nothing. No command is sent per item: `OBJECT IDLETIME` runs inside the script. A scan
//! ends: a server that gives a cursor it gave before, or more than 2^22 pages on one master,
//! fails it with an error that is not temporary.
//! `delete_many` deletes in batches with a script that `UNLINK`s the keys, batched per slot on a
//! cluster. `sweep` walks the chunks written from this host under the prefix the same way, and
//! deletes those of dead writers (see above), one script per write that checks the item's
//! manifest first. Only keys of the backend's namespace are ever touched, so several caches, or
//! other data, can share one Redis.
//!
//! # Access tracking
//!
//! [`Memory::reduce_size`](cachette_core::Memory::reduce_size) deletes the least recently read
//! entries first, so the backend reports when each item was last read with
//! `GetOptions::record_access` (a hit). Other reads (ranged reads, `head`, reads without
//! `record_access`) and listings do not count.
//!
//! - **`idletime`**: Redis keeps, for every key, the time of its last access, with a resolution
//!   of one second, and `OBJECT IDLETIME` reads it without resetting it. Every command that reads
//!   a key resets it, and Redis 7.0 has no read that does not, so the backend measures the idle
//!   time of the item's *record*, which only writes and recorded reads use: a hit sends a
//!   `TOUCH` of the record with its `GET`, in the same round trip, and the last access is
//!   *now − idle time of the record*. Reads without `record_access` read the data key and the
//!   chunks only (resetting their idle times, which only Redis's own eviction looks at), and
//!   listing reads no record. An item whose record is gone (evicted, or its creator died
//!   between the two steps of a create) is reported with the idle time of its data key, which
//!   every read resets.
//! - **`stored`**: Redis keeps no idle time when `maxmemory-policy` is an LFU policy
//!   (`allkeys-lfu`, `volatile-lfu`); `OBJECT IDLETIME` then fails. The time of each recorded
//!   read is then written into the item's record by a tiny script sent in the same round trip
//!   as the `GET` (time stamps come from the clients' clocks, so keep them in sync; one in the
//!   future counts as now). An item without a time counts as never read.
//! - **`auto`** (the default) reads `maxmemory-policy` once with `CONFIG GET` and picks
//!   `stored` for an LFU policy, `idletime` otherwise; a server that refuses `CONFIG` gets
//!   `idletime` until a listing meets the LFU error, and `stored` from then on.
//!
//! Either way, a process records the access of an item at most once a second (a
//! [`RecentAccesses`](cachette_core::plugin::RecentAccesses) of the data keys it recorded):
//! idle times count whole seconds, so a second record within it would tell nothing, and a
//! repeated hit sends its `GET` alone.
//!
//! # Expiry and eviction
//!
//! - `PutOptions::ttl` (set by `Memory` when a function has
//!   [`expires_after`](cachette_core::expires_after)) becomes `PX` on the data key and the same
//!   expiry on the record and the chunks: Redis drops expired entries by itself, besides the
//!   core's own check when reading. `default_ttl_secs` gives every other write an expiry too
//!   (including the functions' `func_code` items, which the core writes again when missing).
//! - Under memory pressure Redis evicts keys by its `maxmemory-policy`. With an `allkeys-*`
//!   policy any key may go: an evicted data key is a miss; an evicted record only costs the
//!   fallback above; an evicted chunk makes its item read as missing (the next write replaces
//!   it). With a `volatile-*` policy only items with an expiry can be evicted; with
//!   `noeviction` writes fail with an out-of-memory error (a warning, the call still returns),
//!   and `reduce_size` is how the cache is kept within bounds.
//!
//! # Runtime
//!
//! Connections are created on, and driven by, the core's `cachette-io` runtime
//! ([`io_runtime`](cachette_core::plugin::io_runtime)). Synchronous callers run operations
//! there directly; async callers on another runtime hand each operation to it as a task. So the
//! backend works from plain threads, from both tokio runtime flavors and from other executors,
//! and a caller's runtime shutting down never breaks the connection.
//!
//! The multiplexed connection's socket is driven by a task of that runtime, so a synchronous
//! caller's command through it costs two hand-offs between threads (the request to that task,
//! the answer back). On a single server, the first round trip of a synchronous caller's read
//! (the `GET` with its access recorded, or the probe of `head` and ranged reads) therefore goes
//! through a blocking connection on the caller's own thread, as a plain synchronous `GET`
//! would. The backend answers such a read in
//! [`get_now`](cachette_core::plugin::StoreBackend::get_now) when the caller runs outside any
//! runtime, so such a hit builds no future and is never handed to the runtime; a chunked item
//! goes on through the multiplexed connection. The blocking connections
//! are opened as concurrent synchronous callers need them, at most
//! [`MAX_BLOCKING_CONNECTIONS`] per backend (a caller that finds none free takes the
//! multiplexed connection), with the same timeouts; one that failed or timed out is closed.
//! A process with one synchronous thread thus holds two connections to Redis. A cluster has
//! no blocking path (the blocking cluster client retries a command that timed out, so a hung
//! node would cost several response timeouts).
//!
//! # Capabilities
//!
//! `atomic_create`, `native_expiry` and `ranged_read`; no `local_files`, not `blocking_io`;
//! `max_item_size` is `max_item_size` (64 GiB by default), or [`MAX_CHUNKS`] chunks of
//! `chunk_size` if that is less.
//!
//! # Source layout
//!
//! `backend` (the `StoreBackend` implementation, dispatching), `reader`, `writer`, `deleter`,
//! `lister` (listing and sweeping), `access` (access tracking), `manifest` (the bounds of
//! chunked items), `keys` (Redis key names), `lua` (the scripts), `conn` (connections, with
//! the retries of `retry`), `blocking` (synchronous callers' reads), `config`, `location`
//! (passwords in URLs) and `error`.

#![forbid(unsafe_code)]

mod access;
mod backend;
mod blocking;
mod config;
mod conn;
mod deleter;
mod error;
mod keys;
mod lister;
mod location;
mod lua;
mod manifest;
mod reader;
mod retry;
mod writer;

pub use backend::RedisBackend;
pub use blocking::MAX_BLOCKING_CONNECTIONS;
pub use config::{
    AccessTracking, DEFAULT_CHUNK_GRACE, DEFAULT_CHUNK_SIZE, DEFAULT_CONNECTION_TIMEOUT,
    DEFAULT_MAX_ITEM_SIZE, DEFAULT_PREFIX, DEFAULT_RESPONSE_TIMEOUT, DEFAULT_RETRY_BUSY,
    MAX_CHUNK_SIZE, MAX_RETRY_BUSY, RedisConfig,
};
pub use manifest::MAX_CHUNKS;

/// The scheme of the backend, as reported by
/// [`StoreBackend::scheme`](cachette_core::plugin::StoreBackend::scheme), used in errors, and the
/// `type` of its configuration in config files.
pub const SCHEME: &str = "redis";

/// The URL schemes this backend answers to.
pub const URL_SCHEMES: &[&str] = &["redis", "rediss", "redis+cluster", "rediss+cluster"];

/// The result type of this crate.
pub type Result<T, E = cachette_core::plugin::BackendError> = std::result::Result<T, E>;

cachette_core::register_backend! {
    config: RedisConfig,
    name: SCHEME,
    schemes: ["redis", "rediss", "redis+cluster", "rediss+cluster"],
    from_url: RedisConfig::from_url,
}

/// Makes sure this crate is linked, so that its backend registration is kept.
pub fn link() {}

#[cfg(test)]
mod tests {
    #[test]
    fn registered_schemes_are_the_url_schemes() {
        let registration = cachette_core::plugin::registrations()
            .find(|r| r.name == super::SCHEME)
            .expect("registered");
        assert_eq!(registration.schemes, super::URL_SCHEMES);
    }
}
