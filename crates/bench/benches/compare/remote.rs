//! Hits on Redis and S3 against raw GETs of the same bytes, on the test servers that
//! `cargo xtask bench` starts (`CACHETTE_TEST_REDIS_URL`, `CACHETTE_TEST_S3_ENDPOINT`,
//! `CACHETTE_TEST_S3_BUCKET`).

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cached::{ConcurrentCached, RedisCache, SerializeCached};
use cachette::Memory;
use cachette::plugin::{DynBackend, Key, StoreBackendExt, block_on, io_runtime};
use cachette::redis::RedisConfig;
use cachette::s3::object_store::ObjectStoreExt;
use cachette::s3::{S3Backend, S3Config};

use crate::cases::square_func;
use crate::one_cpu::OneCpu;
use crate::probe::square;
use crate::stats::{Contender, Kind, Sampler, run_rounds};
use crate::{CACHETTE, Ctx, Res, Target, Workload};

const RAW_REDIS: &str = "floor: raw GET (redis crate)";
const RAW_REDIS_ASYNC: &str = "floor: raw GET, multiplexed async";
const CACHED_REDIS: &str = "cached (Redis)";
const RAW_S3: &str = "floor: raw GET (object_store)";

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The key of the entry of `square(42)` in `memory`, stored if needed.
fn entry_key(memory: &Memory) -> Res<Key> {
    let f = square_func(memory);
    let shelved = f.call_and_shelve_with(42i64, |x| Ok::<_, Infallible>(square(x)))?;
    let stored = shelved.as_memorized().ok_or("the entry was not stored")?;
    // Everything the core writes is under `cachette/`.
    Ok(Key::new(format!(
        "cachette/{}/{}",
        stored.func(),
        stored.args_id()
    ))?)
}

/// Runs `op` `n` times, stopping at the first error.
fn timed_fallible(n: u64, mut op: impl FnMut() -> Res<()>) -> Res<Duration> {
    let started = Instant::now();
    for _ in 0..n {
        op()?;
    }
    Ok(started.elapsed())
}

/// The process id of the Redis server at `url`, which `conn` is connected to, if it runs on
/// this machine: a loopback address, and a process of that id named `redis-server`.
fn local_server(url: &str, conn: &mut redis::Connection) -> Result<u32, String> {
    let host = url::Url::parse(url)
        .map_err(|e| e.to_string())?
        .host_str()
        .map(str::to_owned)
        .unwrap_or_default();
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1") {
        return Err(format!("the server is not on this machine ({host})"));
    }
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(conn)
        .map_err(|e| e.to_string())?;
    let pid: u32 = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or("INFO gives no process_id")?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "redis-server" {
        return Err(format!("process {pid} is not a redis-server here"));
    }
    Ok(pid)
}

/// A hit of a small entry on Redis, against `GET` of the same bytes on a plain connection.
pub(crate) fn redis_hit(ctx: &Ctx) -> Workload {
    const ID: &str = "redis_hit";
    const TITLE: &str = "Redis hit, int argument";
    let names = [CACHETTE, CACHED_REDIS, RAW_REDIS, RAW_REDIS_ASYNC];
    let Some(url) = env("CACHETTE_TEST_REDIS_URL") else {
        return Workload::not_run(ID, TITLE, &names, "CACHETTE_TEST_REDIS_URL is not set");
    };
    let prefix = format!("cachette-compare-{}", std::process::id());
    let setup = || -> Res<(Memory, DynBackend, Key)> {
        let backend: DynBackend = Arc::new(
            RedisConfig::new(url.clone())
                .with_prefix(&prefix)
                .build_backend()?,
        );
        let memory = Memory::with_backend(backend.clone());
        let key = entry_key(&memory)?;
        Ok((memory, backend, key))
    };
    let (memory, backend, key) = match setup() {
        Ok(v) => v,
        Err(e) => return Workload::not_run(ID, TITLE, &names, &format!("set-up failed: {e}")),
    };
    let f = square_func(&memory);
    let raw_key = format!("{prefix}-raw");
    let raw = || -> Res<redis::Connection> {
        let bytes = block_on(false, backend.get(&key))??.ok_or("the entry is gone")?;
        let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
        redis::cmd("SET")
            .arg(&raw_key)
            .arg(&bytes[..])
            .query::<()>(&mut conn)?;
        Ok(conn)
    };
    let mut raw_conn = raw();
    let server = match &mut raw_conn {
        Ok(conn) => local_server(&url, conn),
        Err(e) => Err(e.to_string()),
    };
    // The transport Cachette uses: a multiplexed connection driven by its I/O runtime,
    // awaited from a plain thread.
    let raw_async = || -> Res<Sampler<'_>> {
        let io = io_runtime()?;
        let client = redis::Client::open(url.as_str())?;
        let conn = io.block_on(client.get_multiplexed_async_connection())?;
        let raw_key = &raw_key;
        Ok(Box::new(move |n| {
            timed_fallible(n, || {
                let mut conn = conn.clone();
                let v: Vec<u8> = io.block_on(async move {
                    redis::cmd("GET")
                        .arg(black_box(raw_key))
                        .query_async(&mut conn)
                        .await
                })?;
                black_box(v);
                Ok(())
            })
        }))
    };
    let cached_cache = RedisCache::<i64, i64>::builder(format!("{prefix}-cached"))
        .connection_string(&url)
        .build();
    let contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, |n| {
            timed_fallible(n, || {
                black_box(f.eval(black_box(42)));
                Ok(())
            })
        }),
        Contender::from_setup(
            CACHED_REDIS,
            Kind::Cached,
            match &cached_cache {
                Ok(cache) => Ok(Box::new(|n| {
                    timed_fallible(n, || {
                        let x = black_box(42i64);
                        if let Some(v) = cache.cache_get(&x)? {
                            black_box(v);
                        } else {
                            cache.cache_set_ref(&x, &square(x))?;
                        }
                        Ok(())
                    })
                }) as Sampler<'_>),
                Err(e) => Err(e.to_string().into()),
            },
        ),
        Contender::from_setup(
            RAW_REDIS,
            Kind::Floor,
            match &mut raw_conn {
                Ok(conn) => Ok(Box::new(|n| {
                    timed_fallible(n, || {
                        let v: Vec<u8> = redis::cmd("GET").arg(black_box(&raw_key)).query(conn)?;
                        black_box(v);
                        Ok(())
                    })
                }) as Sampler<'_>),
                Err(e) => Err(e.to_string().into()),
            },
        ),
        Contender::from_setup(RAW_REDIS_ASYNC, Kind::Floor, raw_async()),
    ];
    let pinned = server.and_then(OneCpu::pin);
    let title = match &pinned {
        Ok(pinned) => format!("{TITLE} (harness and server on CPU {})", pinned.cpu),
        Err(why) => {
            eprintln!("  {ID}: the harness and the server are not on one CPU: {why}");
            format!("{TITLE} (not on one CPU: {why})")
        }
    };
    let rows = run_rounds(ID, contenders, ctx.cfg.fast());
    drop(pinned);
    let _ = memory.clear();
    if let Ok(cache) = &cached_cache {
        let _ = cache.cache_remove(&42);
    }
    if let Ok(conn) = &mut raw_conn {
        let _ = redis::cmd("DEL").arg(&raw_key).query::<()>(conn);
    }
    Workload::new(ID, &title, rows).target(Target::Within {
        floor: RAW_REDIS,
        factor: 1.3,
    })
}

/// A hit of a small entry on S3 (moto), against an `object_store` GET of the same object.
pub(crate) fn s3_hit(ctx: &Ctx) -> Workload {
    const ID: &str = "s3_hit";
    const TITLE: &str = "S3 hit, int argument";
    let names = [CACHETTE, RAW_S3];
    let Some(endpoint) = env("CACHETTE_TEST_S3_ENDPOINT") else {
        return Workload::not_run(ID, TITLE, &names, "CACHETTE_TEST_S3_ENDPOINT is not set");
    };
    let bucket = env("CACHETTE_TEST_S3_BUCKET").unwrap_or_else(|| "cachette-test".into());
    let setup = || -> Res<(Memory, Arc<S3Backend>, Key)> {
        let backend = Arc::new(
            S3Config::new(bucket)
                .with_prefix(format!("cachette-compare-{}", std::process::id()))
                .with_endpoint(endpoint)
                .with_allow_http(true)
                .build_backend()?,
        );
        let memory = Memory::with_backend(backend.clone());
        let key = entry_key(&memory)?;
        Ok((memory, backend, key))
    };
    let (memory, backend, key) = match setup() {
        Ok(v) => v,
        Err(e) => return Workload::not_run(ID, TITLE, &names, &format!("set-up failed: {e}")),
    };
    let f = square_func(&memory);
    let raw = || -> Res<Sampler<'_>> {
        let path = backend.path_of(&key)?;
        let store = backend.store().clone();
        let io = io_runtime()?;
        Ok(Box::new(move |n| {
            timed_fallible(n, || {
                let bytes = io.block_on(async { store.get(&path).await?.bytes().await })?;
                black_box(bytes.len());
                Ok(())
            })
        }))
    };
    let contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, |n| {
            timed_fallible(n, || {
                black_box(f.eval(black_box(42)));
                Ok(())
            })
        }),
        Contender::from_setup(RAW_S3, Kind::Floor, raw()),
    ];
    let rows = run_rounds(ID, contenders, ctx.cfg.fast());
    let _ = memory.clear();
    Workload::new(ID, TITLE, rows).target(Target::Within {
        floor: RAW_S3,
        factor: 1.2,
    })
}
