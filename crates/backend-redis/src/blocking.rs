//! The blocking path: reads of synchronous callers, on the caller's thread.
//!
//! The core runs a synchronous caller's operation by blocking the caller's thread on the
//! `cachette-io` runtime (`block_on`): the future is polled on that thread, inside the
//! runtime's context but outside any task. Through the multiplexed connection, whose socket a
//! task of the runtime owns, a read would then cost two hand-offs between threads (the request
//! to that task, the answer back). A read polled that way instead takes a blocking connection
//! from a small pool and does its first round trip (the `GET`, with the access recorded, or
//! the `head` or ranged read) on the caller's thread: one write and one read of the socket, as
//! a raw synchronous `GET` does. A chunked item goes on through the multiplexed connection
//! (its chunks are read in parallel there).
//!
//! Only single servers have the blocking path: a cluster's blocking client retries a command
//! that timed out, so a hung node would cost several response timeouts. The pool holds at most
//! [`MAX_BLOCKING_CONNECTIONS`] connections, opened as concurrent synchronous callers need them;
//! a caller that finds none free, and any caller within a second of a failure to connect, takes
//! the multiplexed connection. The timeouts are those of the multiplexed connection: opening a
//! connection takes at most `connection_timeout_ms` (TLS included), each answer at most
//! `response_timeout_ms`; a connection that failed or timed out is closed, never reused.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachette_core::plugin::{BackendError, GetOptions, GetResult, Key};
use redis::{ConnectionLike, RedisResult, Value};

use crate::access;
use crate::backend::Inner;
use crate::config::{RedisConfig, invalid};
use crate::error::Res;
use crate::location::normalize;
use crate::reader::{ChunkRead, First, Shape, first_answer, first_request};
use crate::retry::{Backoff, busy_result};

/// The most blocking connections a backend keeps.
pub const MAX_BLOCKING_CONNECTIONS: usize = 8;

/// After a failure to open a blocking connection, synchronous callers take the multiplexed
/// connection for this long.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The blocking connections of a backend on a single server.
pub(crate) struct BlockingPool {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    /// Connections open: idle or in use.
    open: AtomicUsize,
    connect: Duration,
    respond: Duration,
    busy: Duration,
    /// Until when the blocking path steps aside after a failure to connect.
    resting_until: Mutex<Option<Instant>>,
}

/// What the blocking path did with a read.
pub(crate) enum Blocking {
    /// The read is done.
    Done(Res<Option<GetResult>>),
    /// The item is chunked: the read goes on asynchronously, its access already recorded.
    Chunked,
    /// No blocking connection was free: the read goes the asynchronous way.
    Declined,
}

impl BlockingPool {
    /// The pool of a validated configuration; `None` for a cluster.
    pub(crate) fn new(config: &RedisConfig) -> Result<Option<Self>, BackendError> {
        if config.cluster {
            return Ok(None);
        }
        let client = redis::Client::open(normalize(&config.urls[0]).as_str())
            .map_err(|e| invalid("cannot set up the Redis client").with_source(e))?;
        Ok(Some(BlockingPool {
            client,
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            connect: config.connection_timeout(),
            respond: config.response_timeout(),
            busy: config.retry_busy(),
            resting_until: Mutex::new(None),
        }))
    }

    /// Connections open (idle or in use).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Runs `request` on a blocking connection, retrying while the server refuses it for now;
    /// `None` when no connection is free (or the path rests after a failure to connect).
    fn run(
        &self,
        mut request: impl FnMut(&mut redis::Connection) -> RedisResult<Vec<Value>>,
    ) -> Option<RedisResult<Vec<Value>>> {
        let (mut conn, mut reused) = match self.take() {
            Taken::Idle(conn) => (conn, true),
            Taken::New(Ok(conn)) => (conn, false),
            Taken::New(Err(e)) => return Some(Err(e)),
            Taken::None => return None,
        };
        let mut backoff = Backoff::new(self.busy);
        loop {
            let result = request(&mut conn);
            if let Err(e) = &result {
                // A connection that sat idle may have been closed by the server (its
                // `timeout`) or by a proxy: try once more on a new one. (Not after a timeout:
                // the server is there but does not answer.)
                if reused && !e.is_timeout() && (e.is_connection_dropped() || e.is_io_error()) {
                    // The new connection takes the slot of the dead one, which is never
                    // given back in between: another caller cannot take it meanwhile.
                    drop(conn);
                    reused = false;
                    match self.connect() {
                        Ok(new) => {
                            conn = new;
                            continue;
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
            if busy_result(&result, false)
                && let Some(wait) = backoff.wait()
            {
                std::thread::sleep(wait);
                continue;
            }
            backoff.report(busy_result(&result, false));
            // A server's error leaves the connection in step; anything else (a timeout, a
            // broken connection, a reply that does not parse) closes it.
            let healthy = match &result {
                Ok(_) => true,
                Err(e) => {
                    e.code().is_some() && !e.is_io_error() && !e.is_timeout() && conn.is_open()
                }
            };
            if healthy && conn.is_open() {
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn);
            } else {
                self.discard(conn);
            }
            return Some(result);
        }
    }

    fn take(&self) -> Taken {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Taken::Idle(conn);
        }
        {
            let mut resting = self.resting_until.lock().unwrap_or_else(|e| e.into_inner());
            match *resting {
                Some(until) if Instant::now() < until => return Taken::None,
                Some(_) => *resting = None,
                None => {}
            }
        }
        // The slot is taken only below the bound, so the count never passes it, not even for
        // an instant (an add undone after the check would let a reader see it past).
        let slot = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < MAX_BLOCKING_CONNECTIONS).then_some(open + 1)
            });
        if slot.is_err() {
            return Taken::None;
        }
        Taken::New(self.connect())
    }

    /// Opens a connection whose slot is counted in `open`; on failure the slot is given back
    /// and the path rests.
    fn connect(&self) -> RedisResult<redis::Connection> {
        let opened = self
            .client
            .get_connection_with_timeout(self.connect)
            .and_then(|conn| {
                conn.set_read_timeout(Some(self.respond))?;
                conn.set_write_timeout(Some(self.respond))?;
                Ok(conn)
            });
        if opened.is_err() {
            self.open.fetch_sub(1, Ordering::AcqRel);
            *self.resting_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + REST_AFTER_FAILURE);
        }
        opened
    }

    fn discard(&self, conn: redis::Connection) {
        drop(conn);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Taken {
    Idle(redis::Connection),
    New(RedisResult<redis::Connection>),
    None,
}

impl Inner {
    /// The first round trip of a read on the caller's thread (see the module's docs).
    pub(crate) fn get_blocking(
        &self,
        pool: &BlockingPool,
        key: &Key,
        options: &GetOptions,
    ) -> Blocking {
        let data = self.layout.data(key);
        let shape = Shape::of(options);
        let record = if options.record_access && self.must_record(&data) {
            match self.stored_access_blocking(pool) {
                Some(Ok(stored)) => Some(access::record_cmd(stored, &data)),
                Some(Err(e)) => return Blocking::Done(Err(e)),
                None => return Blocking::Declined,
            }
        } else {
            None
        };
        let recording = record.is_some();
        let pipe = first_request(&data, &shape, record);
        let answer = pool.run(|conn| pipe.query::<Vec<Value>>(conn));
        let values = match answer {
            Some(Ok(values)) => {
                if recording {
                    self.recorded(&data);
                }
                values
            }
            Some(Err(e)) => return Blocking::Done(Err(e.into())),
            None => return Blocking::Declined,
        };
        match first_answer(&data, &shape, values, self.max_item_size()) {
            Ok(First::Read(ChunkRead::Bytes(bytes, size))) => {
                Blocking::Done(Ok(Some(shape.result(bytes, size))))
            }
            Ok(First::Read(_)) => Blocking::Done(Ok(None)),
            Ok(First::Chunked) => Blocking::Chunked,
            Err(e) => Blocking::Done(Err(e)),
        }
    }

    /// [`Inner::stored_access`] on a blocking connection; `None` when none is free.
    fn stored_access_blocking(&self, pool: &BlockingPool) -> Option<Res<bool>> {
        if let Some(stored) = self.access_decided() {
            return Some(Ok(stored));
        }
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let answer = pool.run(|conn| conn.req_command(&cmd).map(|v| vec![v]))?;
        let answer =
            answer.and_then(|mut values| values.pop().unwrap_or(Value::Nil).extract_error());
        Some(self.decide_access(answer))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// Callers that find the pool full never make the count pass the bound, not even for the
    /// instant between taking a slot and giving it back.
    #[test]
    fn a_full_pool_is_never_counted_past_its_bound() {
        let pool = BlockingPool::new(&RedisConfig::new("redis://127.0.0.1:1"))
            .unwrap()
            .unwrap();
        pool.open.store(MAX_BLOCKING_CONNECTIONS, Ordering::Relaxed);
        let done = AtomicBool::new(false);
        let seen = std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..200_000 {
                        assert!(matches!(pool.take(), Taken::None));
                    }
                    done.store(true, Ordering::Relaxed);
                });
            }
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                most = most.max(pool.open());
            }
            most
        });
        assert_eq!(seen, MAX_BLOCKING_CONNECTIONS);
    }
}
