//! The workloads on many entries: populating a store with 10,000 tiny entries, listing it,
//! and reducing it to a size, each against its peers and the file-system floor.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use cachette::{Memory, SizeLimits};
use serde_json::json;

use crate::cases::{square_func, timed};
use crate::probe::{any_entry, cached_call, files_url, redb_cache as redb, square, temp_rename};
use crate::stats::{Contender, Kind, run_rounds};
use crate::{CACHED_REDB, CACHETTE, CACHETTE_INDEX, Ctx, Res, Target, Workload};

/// The number of entries of the many-entries workloads.
const ENTRIES: usize = 10_000;

/// Fills `memory` with `ENTRIES` tiny entries.
fn populate(memory: &Memory) {
    let f = memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::populate");
    for x in 0..ENTRIES as i64 {
        f.eval(x);
    }
}

/// Removes a folder, ignoring a missing one.
fn remove(dir: &Path) -> Res<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// A memory on the files layout of the local disk (one file per entry) in `dir`: the
/// `Cachette` rows' (see [`files_url`]).
fn files_memory(dir: &Path) -> Res<Memory> {
    Ok(Memory::from_url(&files_url(dir))?)
}

/// A memory on the index layout of the local disk (small entries in LMDB) in `dir`.
fn index_memory(dir: &Path) -> Res<Memory> {
    Ok(Memory::from_url(&format!(
        "file://{}?layout=index",
        dir.display()
    ))?)
}

/// The folder of the function named `name` in the store at `store`
/// (`cachette/<name>-<hash of the name>`); the path it would have if there is none.
fn function_folder(store: &Path, name: &str) -> std::path::PathBuf {
    let functions = store.join("cachette");
    let prefix = format!("{name}-");
    std::fs::read_dir(&functions)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .unwrap_or_else(|| functions.join(name))
}

/// Populating a fresh store with 10,000 tiny entries.
///
/// Every sample's store stays until the workload ends: on ext4, a file made after many were
/// deleted steps over the inodes freed in the last minutes, so a store deleted between samples
/// would slow the samples after it (whichever contender they are) by its 10,000 inodes.
pub(crate) fn populate_10k(ctx: &Ctx) -> Workload {
    let ws = ctx.workspace("populate");
    let entry_bytes = {
        let probe = ws.join("probe");
        let memory = files_memory(&probe).expect("memory");
        square_func(&memory).eval(1);
        any_entry(&probe).and_then(|p| Ok(std::fs::read(p)?))
    };
    let mut run = 0;
    let base = ws.clone();
    let mut fresh = move |who: &str| {
        run += 1;
        base.join(format!("{who}-{run}"))
    };
    let mut contenders = vec![Contender::new(CACHETTE, Kind::Cachette, |iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let dir = fresh("cachette");
            let memory = files_memory(&dir)?;
            total += timed(1, || populate(&memory));
        }
        Ok(total)
    })];
    let mut index_run = 0;
    let index_base = ws.clone();
    contenders.push(Contender::new(
        CACHETTE_INDEX,
        Kind::Cachette,
        move |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                index_run += 1;
                let dir = index_base.join(format!("cachette-index-{index_run}"));
                let memory = index_memory(&dir)?;
                total += timed(1, || populate(&memory));
            }
            Ok(total)
        },
    ));
    contenders.push(ctx.joblib(json!({"w": "populate", "dir": ws.join("joblib"), "n": ENTRIES})));
    let mut cached_run = 0;
    let cached_dir = ws.join("cached");
    contenders.push(Contender::new(CACHED_REDB, Kind::Cached, move |iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            cached_run += 1;
            let dir = cached_dir.join(cached_run.to_string());
            let cache = redb::<String, i64>(&dir, "populate")?;
            let started = Instant::now();
            for x in 0..ENTRIES as i64 {
                cached_call(&cache, x.to_string(), || square(x))?;
            }
            // `durable(false)` writes are made durable by one flush at the end.
            cache.flush()?;
            total += started.elapsed();
        }
        Ok(total)
    }));
    let mut floor_run = 0;
    let floor_dir = ws.join("floor");
    contenders.push(match entry_bytes {
        Ok(bytes) => Contender::new(
            "floor: 10k × write temp, rename",
            Kind::Floor,
            move |iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    floor_run += 1;
                    let dir = floor_dir.join(floor_run.to_string());
                    std::fs::create_dir_all(&dir)?;
                    let started = Instant::now();
                    for x in 0..ENTRIES {
                        temp_rename(&dir, &format!("{x:032x}"), &bytes)?;
                    }
                    total += started.elapsed();
                }
                Ok(total)
            },
        ),
        Err(e) => Contender::unavailable(
            "floor: 10k × write temp, rename",
            Kind::Floor,
            e.to_string(),
        ),
    });
    let rows = run_rounds("populate", contenders, ctx.cfg.huge());
    ctx.done(&ws);
    Workload::new("populate", "populate 10k tiny entries (time for all)", rows).target(
        Target::RowWithin {
            row: CACHETTE_INDEX,
            of: CACHED_REDB,
            factor: 1.5,
        },
    )
}

/// Listing 10,000 entries (what `reduce_size` reads before deleting anything).
pub(crate) fn list_10k(ctx: &Ctx) -> Workload {
    let ws = ctx.workspace("list");
    let store = ws.join("cachette");
    let memory = files_memory(&store).expect("memory");
    populate(&memory);
    let index = index_memory(&ws.join("cachette-index")).expect("memory");
    populate(&index);
    let limits = SizeLimits::default().items_limit(usize::MAX);
    let folder = function_folder(&store, "bench.populate");
    let contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, |iters| {
            let mut r = Ok(());
            let t = timed(iters, || {
                r = memory.reduce_size(&limits).map(|report| {
                    black_box(report);
                });
            });
            r?;
            Ok(t)
        }),
        Contender::new(CACHETTE_INDEX, Kind::Cachette, |iters| {
            let mut r = Ok(());
            let t = timed(iters, || {
                r = index.reduce_size(&limits).map(|report| {
                    black_box(report);
                });
            });
            r?;
            Ok(t)
        }),
        ctx.joblib(json!({"w": "list", "dir": ws.join("joblib"), "n": ENTRIES})),
        Contender::new("floor: read_dir + stat", Kind::Floor, |iters| {
            let mut r: Res<()> = Ok(());
            let t = timed(iters, || {
                r = read_dir_stat(&folder).map(|total| {
                    black_box(total);
                });
            });
            r?;
            Ok(t)
        }),
    ];
    let rows = run_rounds("list", contenders, ctx.cfg.heavy());
    ctx.done(&ws);
    Workload::new(
        "list",
        "list 10k entries (reduce_size deleting nothing)",
        rows,
    )
}

/// `read_dir` and a `stat` of every file of a folder; returns their total size.
fn read_dir_stat(folder: &Path) -> Res<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(folder)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// Copies a folder tree (files and folders only).
fn copy_tree(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// `reduce_size` on 10,000 entries, down to `keep` entries; each sample first copies a
/// populated store (untimed).
pub(crate) fn reduce(ctx: &Ctx, keep: usize) -> Workload {
    let id = if keep == 0 {
        "reduce_all"
    } else {
        "reduce_half"
    };
    let ws = ctx.workspace(id);
    let template = ws.join("template");
    populate(&files_memory(&template).expect("memory"));
    let index_template = ws.join("template-index");
    populate(&index_memory(&index_template).expect("memory"));
    let work = ws.join("work");
    let limits = SizeLimits::default().items_limit(keep);
    let reduce_copy = |template: &Path, open: fn(&Path) -> Res<Memory>| -> Res<Duration> {
        remove(&work)?;
        copy_tree(template, &work)?;
        let memory = open(&work)?;
        let started = Instant::now();
        let report = memory.reduce_size(&limits)?;
        let took = started.elapsed();
        if report.deleted_items != ENTRIES - keep {
            return Err(format!("deleted {} entries", report.deleted_items).into());
        }
        Ok(took)
    };
    let contenders = vec![
        Contender::new(CACHETTE, Kind::Cachette, |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += reduce_copy(&template, files_memory)?;
            }
            Ok(total)
        }),
        Contender::new(CACHETTE_INDEX, Kind::Cachette, |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += reduce_copy(&index_template, index_memory)?;
            }
            Ok(total)
        }),
        ctx.joblib(json!({"w": id, "dir": ws.join("joblib"), "n": ENTRIES})),
        Contender::new("floor: read_dir + stat + unlink", Kind::Floor, |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                remove(&work)?;
                copy_tree(&template, &work)?;
                let folder = function_folder(&work, "bench.populate");
                let started = Instant::now();
                let mut files = Vec::new();
                for entry in std::fs::read_dir(&folder)? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    if entry.file_name().len() == 32 {
                        files.push((meta.modified()?, entry.path()));
                    }
                }
                files.sort();
                for (_, path) in &files[..files.len() - keep.min(files.len())] {
                    std::fs::remove_file(path)?;
                }
                total += started.elapsed();
            }
            Ok(total)
        }),
    ];
    let rows = run_rounds(id, contenders, ctx.cfg.huge());
    ctx.done(&ws);
    let title = if keep == 0 {
        "reduce_size deleting all of 10k"
    } else {
        "reduce_size deleting half of 10k"
    };
    Workload::new(id, title, rows).target(Target::Faster {
        than: crate::JOBLIB,
        factor: 20.0,
    })
}
