//! The workloads on the local disk: hits, misses, hashing, large outputs, many entries,
//! and concurrent hits. Each builds its contenders, runs them interleaved, and cleans up.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cached::{ConcurrentCached, RedbCache};
use cachette::{Array, FuncId, MemorizedFunc, Memory, MmapMode};
use memmap2::Mmap;
use serde_json::json;

use crate::probe::{
    LmdbFloor, LmdbMissFloor, PreadFloor, RedbFloor, SmallEntry, cached_call, entry_file,
    open_read, redb_cache as redb, square,
};
use crate::probe::{any_entry, files_url, temp_rename};
use crate::proc::Worker;
use crate::stats::{Contender, Kind, Sampler, run_rounds};
use crate::{CACHED_REDB, CACHETTE, CACHETTE_INDEX, CACHETTE_MEMO, Ctx, Res, Target, Workload};

/// `square`, memoized.
pub(crate) type SquareFn = MemorizedFunc<i64, fn(i64) -> i64>;

/// `square` memoized in `memory`, under the name the concurrent workers share.
pub(crate) fn square_func(memory: &Memory) -> SquareFn {
    memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square")
}

#[allow(clippy::ptr_arg)] // A memoized function of a `Vec` argument, as users write them.
fn total(values: &Vec<i64>) -> i64 {
    values.iter().sum()
}

fn first(array: &Array<f64>) -> f64 {
    array[0]
}

/// Runs `op` `iters` times and returns the time taken.
pub(crate) fn timed(iters: u64, mut op: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        op();
    }
    started.elapsed()
}

/// The bytes of a slice of `f64`.
fn f64_bytes(values: &[f64]) -> &[u8] {
    // SAFETY: f64s have no padding and any byte is a valid u8; the bytes borrow `values`.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

/// The argument arrays: `i * 0.5`, as the joblib worker's `arange(n) * 0.5`.
fn half_steps(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 0.5).collect()
}

/// The output arrays: `i * 1.0`, as the joblib worker's `arange(n) * 1.0`.
fn steps(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

/// The floor rows of a small hit.
pub(crate) const FLOOR_OPEN_READ: &str = "floor: open+read of the entry";
pub(crate) const FLOOR_PREAD: &str = "floor: pread of the entry on a file kept open";
pub(crate) const FLOOR_LMDB: &str = "floor: LMDB get (heed)";
pub(crate) const FLOOR_REDB: &str = "floor: redb get";
/// The floor rows of a tiny miss: of the files layout, and of the index layout (with its
/// promises: seen by every process, kept when the process is killed, computed once).
pub(crate) const FLOOR_TEMP_RENAME: &str = "floor: write temp, rename";
pub(crate) const FLOOR_LMDB_MISS: &str = "floor: claim lock, LMDB get + put + commit through its map (heed, MDB_WRITEMAP, no fsync), unlock";
/// The rows of a tiny miss flushed to the device before the call returns.
const CACHETTE_INDEX_DURABLE: &str = "Cachette, index layout, durable (fsync per write)";
const CACHED_REDB_DURABLE: &str = "cached (redb), durable (its default: fsync per write)";

/// A floor contender of a small hit that reads the entry with `read`, once set up.
fn floor_contender<'a, T: 'a>(
    name: &str,
    setup: Res<T>,
    mut read: impl FnMut(&mut T) -> Res<()> + 'a,
) -> Contender<'a> {
    match setup {
        Ok(mut state) => Contender::new(name, Kind::Floor, move |n| {
            let mut result = Ok(());
            let t = timed(n, || {
                if result.is_ok() {
                    result = read(&mut state);
                }
            });
            result?;
            Ok(t)
        }),
        Err(e) => Contender::unavailable(name, Kind::Floor, format!("set-up failed: {e}")),
    }
}

/// The floors of a small hit on the entry of `store` (a Cachette store with one entry), each
/// doing the least a store could do to return the entry's bytes: open and read a copy of the
/// entry file; `pread` it from a file kept open; an LMDB get (heed), in a read transaction
/// kept open, and a raw redb table get, in a read transaction of its own, of the same bytes
/// under the same key, each copied into a `Vec`.
fn small_hit_floors<'a>(store: &Path, dir: &Path) -> Vec<Contender<'a>> {
    let entry = any_entry(store).and_then(|path| {
        let copy = dir.join("entry-copy");
        std::fs::copy(&path, &copy)?;
        Ok((SmallEntry::read(&path)?, copy))
    });
    let (entry, copy) = match entry {
        Ok(v) => v,
        Err(e) => {
            let why = format!("set-up failed: {e}");
            return [FLOOR_OPEN_READ, FLOOR_PREAD, FLOOR_LMDB, FLOOR_REDB]
                .into_iter()
                .map(|name| Contender::unavailable(name, Kind::Floor, why.clone()))
                .collect();
        }
    };
    let lmdb = LmdbFloor::new(&dir.join("floor-lmdb"), &entry);
    let redb = RedbFloor::new(&dir.join("floor.redb"), &entry);
    vec![
        floor_contender(
            FLOOR_OPEN_READ,
            Ok((copy.clone(), Vec::new())),
            |(path, buf): &mut (PathBuf, Vec<u8>)| {
                let n = open_read(path, buf)?;
                black_box(&buf[..n]);
                Ok(())
            },
        ),
        floor_contender(FLOOR_PREAD, PreadFloor::new(&copy), |floor| {
            floor.read().map(drop)
        }),
        floor_contender(FLOOR_LMDB, lmdb, |floor| {
            black_box(floor.get()?);
            Ok(())
        }),
        floor_contender(FLOOR_REDB, redb, |floor| {
            black_box(floor.get()?);
            Ok(())
        }),
    ]
}

/// A memory on the files layout of the local disk (one file per entry) in `dir`: the
/// `Cachette` rows' (see [`files_url`]).
pub(crate) fn files_memory(dir: &Path) -> Memory {
    Memory::from_url(&files_url(dir)).expect("memory")
}

/// A memory on the index layout of the local disk (small entries in LMDB) in `dir`.
fn index_memory(dir: &Path) -> Memory {
    Memory::from_url(&format!("file://{}?layout=index", dir.display())).expect("memory")
}

/// A hit whose argument is a small int.
pub(crate) fn hit_int(ctx: &Ctx) -> Workload {
    let ws = ctx.workspace("hit_int");
    let memory = files_memory(&ws.join("cachette"));
    let f = square_func(&memory);
    f.eval(42);
    // The same hit with signed entries, and with hardened (keyed BLAKE3) argument keys too.
    let secret = "a signing secret for the benchmark";
    let signed = Memory::builder()
        .url(files_url(&ws.join("cachette-signed")))
        .signing_key(cachette::SigningKey::new(secret).expect("key"))
        .build()
        .expect("memory");
    let signed_f = square_func(&signed);
    signed_f.eval(42);
    let hardened = Memory::builder()
        .url(files_url(&ws.join("cachette-hardened")))
        .signing_key(cachette::SigningKey::new(secret).expect("key"))
        .hardened_keys(true)
        .build()
        .expect("memory");
    let hardened_f = square_func(&hardened);
    hardened_f.eval(42);
    // The index layout (small entries in LMDB), and the in-process memo of decoded values
    // (over the files layout).
    let index = index_memory(&ws.join("cachette-index"));
    let index_f = square_func(&index);
    index_f.eval(42);
    let memo = Memory::builder()
        .url(files_url(&ws.join("cachette-memo")))
        .memo_size("16M")
        .build()
        .expect("memory");
    let memo_f = square_func(&memo).memo();
    memo_f.eval(42);
    let mut contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, |n| {
            Ok(timed(n, || {
                black_box(f.eval(black_box(42)));
            }))
        }),
        Contender::new(CACHETTE_INDEX, Kind::Cachette, |n| {
            Ok(timed(n, || {
                black_box(index_f.eval(black_box(42)));
            }))
        }),
        Contender::new(CACHETTE_MEMO, Kind::Cachette, |n| {
            Ok(timed(n, || {
                black_box(memo_f.eval(black_box(42)));
            }))
        }),
        Contender::new("Cachette, signed", Kind::Cachette, |n| {
            Ok(timed(n, || {
                black_box(signed_f.eval(black_box(42)));
            }))
        }),
        Contender::new("Cachette, signed, hardened keys", Kind::Cachette, |n| {
            Ok(timed(n, || {
                black_box(hardened_f.eval(black_box(42)));
            }))
        }),
    ];
    contenders.push(ctx.joblib(json!({"w": "hit_int", "dir": ws.join("joblib")})));
    let cache = redb::<String, i64>(&ws, "hit_int");
    contenders.push(cached_calls(CACHED_REDB, cache, || black_box(42i64)));
    contenders.extend(small_hit_floors(&ws.join("cachette"), &ws));
    let rows = run_rounds("hit_int", contenders, ctx.cfg.fast());
    ctx.done(&ws);
    Workload::new("hit_int", "hit, int argument", rows)
        .target(Target::Faster {
            than: crate::JOBLIB,
            factor: 20.0,
        })
        .target(Target::Within {
            floor: FLOOR_OPEN_READ,
            factor: 1.5,
        })
        .target(Target::RowWithin {
            row: CACHETTE_INDEX,
            of: CACHED_REDB,
            factor: 1.0,
        })
        .target(Target::RowAtMost {
            row: CACHETTE_MEMO,
            limit: Duration::from_nanos(100),
        })
        .arg_bytes(8.0)
}

/// A hit whose argument is a list of 100 ints.
pub(crate) fn hit_list(ctx: &Ctx) -> Workload {
    let ws = ctx.workspace("hit_list");
    let memory = files_memory(&ws.join("cachette"));
    let f = memory
        .cache_capturing(total as fn(&Vec<i64>) -> i64)
        .name("bench::total");
    let arg: Vec<i64> = (0..100).collect();
    f.eval(&arg);
    let index = index_memory(&ws.join("cachette-index"));
    let index_f = index
        .cache_capturing(total as fn(&Vec<i64>) -> i64)
        .name("bench::total");
    index_f.eval(&arg);
    let mut contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, |n| {
            Ok(timed(n, || {
                black_box(f.eval(black_box(&arg)));
            }))
        }),
        Contender::new(CACHETTE_INDEX, Kind::Cachette, |n| {
            Ok(timed(n, || {
                black_box(index_f.eval(black_box(&arg)));
            }))
        }),
    ];
    contenders.push(ctx.joblib(json!({"w": "hit_list", "dir": ws.join("joblib"), "n": 100})));
    contenders.push(Contender::from_setup(
        CACHED_REDB,
        Kind::Cached,
        redb::<String, i64>(&ws, "hit_list").map(|cache| {
            let arg = &arg;
            Box::new(move |n| {
                let mut r = Ok(0);
                let t = timed(n, || {
                    // The key a `cached` user writes for a list: its Debug form.
                    r = cached_call(&cache, format!("{:?}", black_box(arg)), || total(arg));
                });
                r?;
                Ok(t)
            }) as Sampler<'_>
        }),
    ));
    contenders.extend(small_hit_floors(&ws.join("cachette"), &ws));
    let rows = run_rounds("hit_list", contenders, ctx.cfg.fast());
    ctx.done(&ws);
    Workload::new("hit_list", "hit, list of 100 ints", rows).arg_bytes(800.0)
}

/// A hit whose argument is an `f64` array of `bytes` bytes.
pub(crate) fn hit_array(ctx: &Ctx, id: &'static str, title: &str, bytes: usize) -> Workload {
    let ws = ctx.workspace(id);
    let n = bytes / 8;
    let memory = files_memory(&ws.join("cachette"));
    let f = memory
        .cache_capturing(first as fn(&Array<f64>) -> f64)
        .name("bench::first");
    let arg = Array::from(half_steps(n));
    f.eval(&arg);
    let plan = if bytes >= 10_000_000 {
        ctx.cfg.heavy()
    } else {
        ctx.cfg.fast()
    };
    let mut contenders = vec![Contender::new(CACHETTE, Kind::Cachette, |iters| {
        Ok(timed(iters, || {
            black_box(f.eval(black_box(&arg)));
        }))
    })];
    contenders.push(ctx.joblib(json!({"w": "hit_array", "dir": ws.join("joblib"), "n": n})));
    contenders.push(Contender::from_setup(
        CACHED_REDB,
        Kind::Cached,
        redb::<String, f64>(&ws, id).map(|cache| {
            let arg = &arg;
            Box::new(move |iters| {
                let mut r = Ok(0.0);
                let t = timed(iters, || {
                    // A `cached` key must be a string: the argument's xxh3-128, in hex.
                    let key = format!(
                        "{:032x}",
                        xxhash_rust::xxh3::xxh3_128(f64_bytes(black_box(arg)))
                    );
                    r = cached_call(&cache, key, || first(arg));
                });
                r?;
                Ok(t)
            }) as Sampler<'_>
        }),
    ));
    contenders.push(Contender::new(
        "floor: xxh3-128 of the argument",
        Kind::Floor,
        |iters| {
            Ok(timed(iters, || {
                black_box(xxhash_rust::xxh3::xxh3_128(f64_bytes(black_box(&arg))));
            }))
        },
    ));
    let rows = run_rounds(id, contenders, plan);
    drop(arg);
    ctx.done(&ws);
    Workload::new(id, title, rows).arg_bytes(bytes as f64)
}

/// A `cached` redb store in `dir` as `cached` builds it by default: `durable(true)`, each write
/// committed with `Durability::Immediate` (flushed to the device before it returns).
fn durable_redb_cache(dir: &Path, name: &str) -> Res<RedbCache<String, i64>> {
    Ok(RedbCache::builder(name)
        .disk_dir(dir)
        .durable(true)
        .build()?)
}

/// The `cached` contender `name` on the redb store `cache` (once made): calls of `square`
/// memoized by `cached`, each on the argument `arg` gives.
fn cached_calls<'a>(
    name: &str,
    cache: Res<RedbCache<String, i64>>,
    mut arg: impl FnMut() -> i64 + 'a,
) -> Contender<'a> {
    Contender::from_setup(
        name,
        Kind::Cached,
        cache.map(|cache| {
            Box::new(move |n| {
                let mut r = Ok(0);
                let t = timed(n, || {
                    let x = arg();
                    r = cached_call(&cache, x.to_string(), || square(x));
                });
                r?;
                Ok(t)
            }) as Sampler<'a>
        }),
    )
}

/// The `cached` contender `name` of a tiny miss, on the redb store `cache` (once made): misses
/// of `square` on new arguments.
fn cached_misses<'a>(name: &str, cache: Res<RedbCache<String, i64>>) -> Contender<'a> {
    let mut next = 1_000_000i64;
    cached_calls(name, cache, move || {
        next += 1;
        next - 1
    })
}

/// A miss whose output is a small int: hash, look up, run, encode, write.
pub(crate) fn miss_tiny(ctx: &Ctx) -> Workload {
    let ws = ctx.workspace("miss_tiny");
    let memory = files_memory(&ws.join("cachette"));
    let f = square_func(&memory);
    f.eval(0);
    let entry_bytes = any_entry(&ws.join("cachette")).and_then(|p| Ok(std::fs::read(p)?));
    let mut next = 1_000_000i64;
    let index = index_memory(&ws.join("cachette-index"));
    let index_f = square_func(&index);
    index_f.eval(0);
    let mut next_index = 1_000_000i64;
    let durable = Memory::from_url(&format!(
        "file://{}?layout=index&durable=true",
        ws.join("cachette-durable").display()
    ))
    .expect("memory");
    let durable_f = square_func(&durable);
    durable_f.eval(0);
    let mut next_durable = 1_000_000i64;
    let mut contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, move |n| {
            Ok(timed(n, || {
                black_box(f.eval(next));
                next += 1;
            }))
        }),
        Contender::new(CACHETTE_INDEX, Kind::Cachette, move |n| {
            Ok(timed(n, || {
                black_box(index_f.eval(next_index));
                next_index += 1;
            }))
        }),
        Contender::new(CACHETTE_INDEX_DURABLE, Kind::Cachette, move |n| {
            Ok(timed(n, || {
                black_box(durable_f.eval(next_durable));
                next_durable += 1;
            }))
        }),
    ];
    contenders.push(ctx.joblib(json!({"w": "miss_tiny", "dir": ws.join("joblib")})));
    contenders.push(cached_misses(
        CACHED_REDB,
        redb::<String, i64>(&ws, "miss_tiny"),
    ));
    contenders.push(cached_misses(
        CACHED_REDB_DURABLE,
        durable_redb_cache(&ws, "miss_tiny_durable"),
    ));
    let floor_dir = ws.join("floor");
    let mut k = 0u64;
    contenders.push(match entry_bytes {
        Ok(bytes) => Contender::new(FLOOR_TEMP_RENAME, Kind::Floor, move |n| {
            std::fs::create_dir_all(&floor_dir)?;
            let started = Instant::now();
            for _ in 0..n {
                k += 1;
                temp_rename(&floor_dir, &format!("{k:032x}"), &bytes)?;
            }
            Ok(started.elapsed())
        }),
        Err(e) => Contender::unavailable(FLOOR_TEMP_RENAME, Kind::Floor, e.to_string()),
    });
    let lmdb_floor = any_entry(&ws.join("cachette"))
        .and_then(|p| SmallEntry::read(&p))
        .and_then(|entry| LmdbMissFloor::new(&ws.join("floor-lmdb-miss"), &entry));
    contenders.push(match lmdb_floor {
        Ok(mut floor) => Contender::new(FLOOR_LMDB_MISS, Kind::Floor, move |n| {
            let started = Instant::now();
            for _ in 0..n {
                floor.miss()?;
            }
            Ok(started.elapsed())
        }),
        Err(e) => Contender::unavailable(FLOOR_LMDB_MISS, Kind::Floor, e.to_string()),
    });
    let rows = run_rounds("miss_tiny", contenders, ctx.cfg.fast());
    ctx.done(&ws);
    Workload::new("miss_tiny", "miss, tiny output", rows)
        .target(Target::Within {
            floor: FLOOR_TEMP_RENAME,
            factor: 1.5,
        })
        .target(Target::RowWithin {
            row: CACHETTE_INDEX,
            of: CACHED_REDB,
            factor: 1.0,
        })
}

type BigFn = MemorizedFunc<Array<f64>, Box<dyn Fn(u64) -> Array<f64> + Send + Sync>>;

/// A function of a key returning (a shared view of) `array`: computing costs nothing.
fn big_func(memory: &Memory, array: Array<f64>) -> BigFn {
    memory
        .cache_capturing(
            Box::new(move |_: u64| array.clone()) as Box<dyn Fn(u64) -> Array<f64> + Send + Sync>
        )
        .name("bench::big")
}

/// A miss whose output is an array of `bytes` bytes; each sample first empties the cache
/// (untimed), so that the disk holds one output at a time.
pub(crate) fn miss_big(ctx: &Ctx, id: &'static str, title: &str, bytes: usize) -> Workload {
    let ws = ctx.workspace(id);
    let n = bytes / 8;
    let values = steps(n);
    let memory = files_memory(&ws.join("cachette"));
    let f = big_func(&memory, Array::from(values.clone()));
    let mut key = 0u64;
    let raw = ws.join("raw.bin");
    let mut contenders = vec![Contender::new(CACHETTE, Kind::Cachette, |iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            memory.clear()?;
            key += 1;
            let started = Instant::now();
            let output = f.eval(key);
            total += started.elapsed();
            // Dropped untimed, as every contender's output.
            black_box(output.len());
        }
        Ok(total)
    })];
    let w = if id == "persist" {
        "persist"
    } else {
        "miss_big"
    };
    contenders.push(ctx.joblib(json!({"w": w, "dir": ws.join("joblib"), "n": n})));
    if id != "persist" {
        let mut cached_key = 0u64;
        let values = &values;
        contenders.push(Contender::from_setup(
            CACHED_REDB,
            Kind::Cached,
            redb::<u64, Vec<f64>>(&ws, id).map(|cache| {
                Box::new(move |iters: u64| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        cache.cache_remove(&cached_key)?;
                        cached_key += 1;
                        // The function's output is ready before the clock starts, as
                        // Cachette's (a shared view of the array) and joblib's are: the
                        // timed call moves it, it does not copy it.
                        let ready = values.clone();
                        let started = Instant::now();
                        let output = cached_call(&cache, cached_key, move || ready)?;
                        total += started.elapsed();
                        black_box(output.len());
                    }
                    Ok(total)
                }) as Sampler<'_>
            }),
        ));
    }
    contenders.push(Contender::new(
        "floor: std::fs::write",
        Kind::Floor,
        |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                match std::fs::remove_file(&raw) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
                let started = Instant::now();
                std::fs::write(&raw, f64_bytes(black_box(&values)))?;
                total += started.elapsed();
            }
            Ok(total)
        },
    ));
    let rows = run_rounds(id, contenders, ctx.cfg.heavy());
    ctx.done(&ws);
    Workload::new(id, title, rows)
}

/// Hashing a large `f64` array: Cachette's canonical hash, joblib's `hash`, raw xxh3-128.
pub(crate) fn hash_array(ctx: &Ctx, title: &str) -> Workload {
    let n = ctx.cfg.big_bytes / 8;
    let values: Vec<f64> = half_steps(n);
    let ws = ctx.workspace("hash_array");
    let contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, |iters| {
            let mut r = Ok(());
            let t = timed(iters, || {
                r = cachette::hashing::hash(black_box(&values)).map(|d| {
                    black_box(d);
                });
            });
            r?;
            Ok(t)
        }),
        ctx.joblib(json!({"w": "hash_array", "dir": ws.join("joblib"), "n": n})),
        Contender::new("floor: xxh3-128 of the bytes", Kind::Floor, |iters| {
            Ok(timed(iters, || {
                black_box(xxhash_rust::xxh3::xxh3_128(f64_bytes(black_box(&values))));
            }))
        }),
    ];
    let rows = run_rounds("hash_array", contenders, ctx.cfg.huge());
    ctx.done(&ws);
    Workload::new("hash_array", title, rows)
        .target(Target::Faster {
            than: crate::JOBLIB,
            factor: 8.0,
        })
        .target(Target::SpeedOf {
            floor: "floor: xxh3-128 of the bytes",
            fraction: 0.8,
        })
}

/// Hashing a map of 100,000 `String` → `i64`.
pub(crate) fn hash_dict(ctx: &Ctx) -> Workload {
    const N: usize = 100_000;
    let map: HashMap<String, i64> = (0..N).map(|i| (format!("key-{i}"), i as i64)).collect();
    let mut flat = Vec::new();
    for (k, v) in &map {
        flat.extend_from_slice(k.as_bytes());
        flat.extend_from_slice(&v.to_le_bytes());
    }
    let ws = ctx.workspace("hash_dict");
    let contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, |iters| {
            let mut r = Ok(());
            let t = timed(iters, || {
                r = cachette::hashing::hash(black_box(&map)).map(|d| {
                    black_box(d);
                });
            });
            r?;
            Ok(t)
        }),
        ctx.joblib(json!({"w": "hash_dict", "dir": ws.join("joblib"), "n": N})),
        Contender::new("floor: xxh3-128 of keys and values", Kind::Floor, |iters| {
            Ok(timed(iters, || {
                black_box(xxhash_rust::xxh3::xxh3_128(black_box(&flat)));
            }))
        }),
    ];
    let rows = run_rounds("hash_dict", contenders, ctx.cfg.heavy());
    ctx.done(&ws);
    Workload::new("hash_dict", "hash a dict/map of 100k str→int", rows).target(Target::Faster {
        than: crate::JOBLIB,
        factor: 8.0,
    })
}

/// Reloading a large array output: with a read-only memory map (`mmap`) or read whole.
pub(crate) fn reload(ctx: &Ctx, mmap: bool, title: &str) -> Workload {
    let id = if mmap { "reload_mmap" } else { "reload_copy" };
    let ws = ctx.workspace(id);
    let n = ctx.cfg.big_bytes / 8;
    let probe = n - 12_345;
    let store = ws.join("cachette");
    let memory = Memory::builder()
        .url(files_url(&store))
        .mmap_mode(if mmap {
            MmapMode::ReadOnly
        } else {
            MmapMode::None
        })
        // As joblib's maps, which check nothing: a store nobody else writes to. The cost of
        // the default check is measured by `cargo bench -p cachette-bench --bench arrays`.
        .verify_maps(false)
        .build()
        .expect("memory");
    let f: MemorizedFunc<Array<f64>> = MemorizedFunc::new(&memory, FuncId::new("bench.big"));
    let stored = f.call_with(1u64, |_| {
        Ok::<_, std::convert::Infallible>(Array::from(steps(n)))
    });
    drop(stored);
    let hit = |_: u64| -> Result<Array<f64>, String> { Err("a hit was expected".into()) };
    let mut contenders = vec![Contender::new(CACHETTE, Kind::Cachette, |iters| {
        let mut r = Ok(());
        let t = timed(iters, || {
            r = f.call_with(1u64, hit).map(|a| {
                black_box(a[black_box(probe)]);
            });
        });
        r?;
        Ok(t)
    })];
    contenders.push(ctx.joblib(json!({"w": id, "dir": ws.join("joblib"), "n": n, "probe": probe})));
    let entry = entry_file(
        &store
            .join("cachette")
            .join(FuncId::new("bench.big").folder()),
    );
    contenders.push(match (entry, mmap) {
        (Ok(path), true) => {
            Contender::new("floor: memmap2 map + one read", Kind::Floor, move |iters| {
                let mut r = Ok(());
                let t = timed(iters, || {
                    r = std::fs::File::open(&path).and_then(|file| {
                        // SAFETY: the harness's own file, not modified while mapped.
                        let map = unsafe { Mmap::map(&file) }?;
                        black_box(map[black_box(probe * 8)]);
                        Ok(())
                    });
                });
                r?;
                Ok(t)
            })
        }
        (Ok(path), false) => Contender::new(FLOOR_READ_MAP, Kind::Floor, move |iters| {
            let mut r = Ok(());
            let t = timed(iters, || {
                r = read_into_map(&path).map(|bytes| {
                    black_box(bytes[black_box(probe * 8)]);
                });
            });
            r?;
            Ok(t)
        }),
        (Err(e), _) => Contender::unavailable("floor", Kind::Floor, e.to_string()),
    });
    let plan = if mmap { ctx.cfg.fast() } else { ctx.cfg.huge() };
    let rows = run_rounds(id, contenders, plan);
    ctx.done(&ws);
    let w = Workload::new(id, title, rows);
    if mmap {
        w.target(Target::AtMost(Duration::from_micros(100)))
    } else {
        w
    }
}

/// The floor of a whole read of a large output into memory of its own.
const FLOOR_READ_MAP: &str = "floor: read into a fresh map (huge pages), a part per processor";

/// The least a whole read of a large file into memory of the process's own costs: its size
/// (`fstat`), an anonymous map of that size that asks for huge pages (a 4 KiB page fault per
/// page is most of the cost of filling fresh memory; `std::fs::read` takes one each), and
/// `pread`s into it, its parts (2 MiB aligned) at once on one thread per processor (up to 8,
/// a part of at least 32 MiB each): the kernel's copy and the zeroing of the new pages are most
/// of the time, and each processor takes its share. Cachette reads a large item so.
fn read_into_map(path: &Path) -> std::io::Result<memmap2::MmapMut> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    let mut map = memmap2::MmapMut::map_anon(len)?;
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get().min(8))
        .min(len / (32 << 20))
        .max(1);
    let part = len.div_ceil(threads).next_multiple_of(2 << 20).max(2 << 20);
    let file = &file;
    std::thread::scope(|scope| {
        let reads: Vec<_> = map
            .chunks_mut(part)
            .enumerate()
            .map(|(i, chunk)| scope.spawn(move || file.read_exact_at(chunk, (i * part) as u64)))
            .collect();
        reads.into_iter().try_for_each(|r| {
            r.join()
                .map_err(|_| std::io::Error::other("a reader panicked"))?
        })
    })?;
    Ok(map)
}

/// Two workers started by `start`, set up with `setup`; each sample runs `n` operations in
/// both at once and gives the mean of their times.
fn pair_sampler<'a>(start: impl Fn() -> Res<Worker>, setup: serde_json::Value) -> Res<Sampler<'a>> {
    let mut workers = [start()?, start()?];
    for w in &mut workers {
        w.request(&setup)?;
    }
    Ok(Box::new(move |n| pair_run(&mut workers, n)))
}

/// Runs `n` operations in both workers at once; the mean of their times.
fn pair_run(workers: &mut [Worker; 2], n: u64) -> Res<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let request = json!({"op": "conc_run", "n": n, "start_at_ns": now + 50_000_000});
    for w in workers.iter_mut() {
        w.send(&request)?;
    }
    let mut total = Duration::ZERO;
    for w in workers.iter_mut() {
        let answer = w.answer()?;
        total += Duration::from_nanos(answer["ns"].as_u64().ok_or("no ns")?);
    }
    Ok(total / 2)
}

/// The `cached` (redb) contender of the concurrent hits: two harness workers open the same
/// redb store in `dir`. redb locks its file for one process, so the second worker's set-up is
/// expected to fail: the row then says so, with the error the attempt gave.
fn redb_pair<'a>(exe: &Path, dir: &Path) -> Contender<'a> {
    let setup = json!({"op": "conc_setup", "kind": "cached", "dir": dir});
    let attempt = || -> Res<Result<Sampler<'a>, String>> {
        let mut first = Worker::spawn("harness worker", exe, &["--worker"])?;
        first.request(&setup)?;
        let mut second = Worker::spawn("harness worker", exe, &["--worker"])?;
        if let Err(e) = second.request(&setup) {
            return Ok(Err(format!("redb refuses a second process ({e})")));
        }
        let mut workers = [first, second];
        Ok(Ok(Box::new(move |n| pair_run(&mut workers, n))))
    };
    match attempt() {
        Ok(Ok(sampler)) => Contender::new(CACHED_REDB, Kind::Cached, sampler),
        Ok(Err(refused)) => Contender::unavailable(CACHED_REDB, Kind::Cached, refused),
        Err(e) => Contender::unavailable(CACHED_REDB, Kind::Cached, format!("set-up failed: {e}")),
    }
}

/// Hits of the same small entry from two processes at once.
pub(crate) fn concurrent(ctx: &Ctx) -> Workload {
    let ws = ctx.workspace("concurrent");
    let store = ws.join("cachette");
    square_func(&files_memory(&store)).eval(42);
    let exe = std::env::current_exe().expect("the harness's path");
    let rust_worker = || Worker::spawn("harness worker", &exe, &["--worker"]);
    let mut contenders = vec![Contender::from_setup(
        CACHETTE,
        Kind::Cachette,
        pair_sampler(
            rust_worker,
            json!({"op": "conc_setup", "kind": "cachette", "dir": store}),
        ),
    )];
    let joblib_dir = ws.join("joblib");
    contenders.push(match ctx.joblib_worker_cmd() {
        Ok((python, script)) => Contender::from_setup(
            crate::JOBLIB,
            Kind::Joblib,
            pair_sampler(
                || {
                    Worker::spawn(
                        "joblib worker",
                        &python,
                        &[script.to_str().unwrap_or_default()],
                    )
                },
                json!({"op": "conc_setup", "dir": joblib_dir}),
            ),
        ),
        Err(why) => Contender::unavailable(crate::JOBLIB, Kind::Joblib, why),
    });
    contenders.push(redb_pair(&exe, &ws.join("cached")));
    let floor = any_entry(&store).and_then(|entry| {
        let copy = ws.join("entry-copy");
        std::fs::copy(entry, &copy)?;
        Ok(copy)
    });
    contenders.push(match floor {
        Ok(path) => Contender::from_setup(
            FLOOR_OPEN_READ,
            Kind::Floor,
            pair_sampler(
                rust_worker,
                json!({"op": "conc_setup", "kind": "floor", "dir": ws, "path": path}),
            ),
        ),
        Err(e) => Contender::unavailable(FLOOR_OPEN_READ, Kind::Floor, e.to_string()),
    });
    let rows = run_rounds("concurrent", contenders, ctx.cfg.fast());
    ctx.done(&ws);
    Workload::new("concurrent", "hit, int argument, 2 processes at once", rows)
}
