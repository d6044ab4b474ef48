//! The scaling table (`cargo xtask bench --scaling`): stores of 1k, 10k, 100k and 1M tiny
//! entries (int → int results of one memoized function), for each store layout, measuring a
//! small hit, a tiny miss, listing every entry, `reduce_size` deleting 10%, populating, and
//! the inodes and disk the store uses; for the index layout, also the floor of its hit: an
//! LMDB get (heed) of a random item of the store's own environment.
//!
//! A layout is the location URL a `Memory` is opened on: `file://<folder>?layout=files` (the
//! files layout, the default in a store others may write) and `file://<folder>?layout=index`
//! (the index layout, the default in a store only the current user may write, as the
//! harness's scratch folder). A location the backend refuses gives a `not run: <error>` row,
//! with the backend's error.
//!
//! Environment: `CACHETTE_BENCH_SCALING_MAX` stops at that many entries (a quick run:
//! `--scaling-max 10000`); the stores go below the harness's scratch folder, one at a time,
//! each removed before the next size.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachette::{Memory, SizeLimits};

use crate::Res;
use crate::probe::files_url;
use crate::report::{duration, thousands};

/// The store sizes, in entries.
pub(crate) const SIZES: &[usize] = &[1_000, 10_000, 100_000, 1_000_000];
/// Hits timed per size, on random existing keys.
const HITS: usize = 2_000;
/// Misses timed per size, on new keys.
const MISSES: usize = 200;
/// Disk reserved per entry when checking for room (an entry file, its block and its share
/// of the folder), and what stays free besides.
const BYTES_PER_ENTRY: u64 = 16 << 10;
const SPARE_BYTES: u64 = 2 << 30;

/// Calls of the memoized function (a hit does not call it).
static CALLS: AtomicU64 = AtomicU64::new(0);

/// The memoized function: `x * x`, counting its calls.
fn square_counted(x: i64) -> i64 {
    CALLS.fetch_add(1, Ordering::Relaxed);
    x.wrapping_mul(x)
}

/// The location URL of a store in a folder.
type UrlOf = fn(&Path) -> String;

/// The layouts compared: their name, and the location URL of a store in `folder`.
fn layouts() -> Vec<(&'static str, UrlOf)> {
    vec![
        ("files", files_url),
        ("index", |folder| {
            format!("file://{}?layout=index", folder.display())
        }),
    ]
}

/// One store size's figures.
#[derive(Debug, Clone)]
struct Point {
    populate: Duration,
    hit_ns: f64,
    /// The LMDB floor of a hit (index layout only), or why not measured.
    floor_hit_ns: Option<Result<f64, String>>,
    miss_ns: f64,
    list: Duration,
    reduce: Duration,
    inodes: u64,
    disk_bytes: u64,
}

/// A layout's results: per size, its figures or why not.
struct LayoutRun {
    name: &'static str,
    url_form: String,
    points: Vec<(usize, Result<Point, String>)>,
}

/// A small xorshift generator: random keys, the same in every run.
struct Keys(u64);

impl Keys {
    fn below(&mut self, n: usize) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as i64
    }
}

/// The median of nanosecond times.
fn median(mut ns: Vec<f64>) -> f64 {
    ns.sort_by(f64::total_cmp);
    let mid = ns.len() / 2;
    if ns.len().is_multiple_of(2) {
        (ns[mid - 1] + ns[mid]) / 2.0
    } else {
        ns[mid]
    }
}

/// Files and folders below `root` (itself included), and the disk they take.
fn usage(root: &Path) -> Res<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut inodes = 0;
    let mut bytes = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = std::fs::symlink_metadata(&dir)?;
        inodes += 1;
        bytes += meta.blocks() * 512;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                let meta = entry.metadata()?;
                inodes += 1;
                bytes += meta.blocks() * 512;
            }
        }
    }
    Ok((inodes, bytes))
}

/// Free bytes and free inodes of the file system holding `dir` (`df`), when it can tell.
fn free_space(dir: &Path) -> Option<(u64, u64)> {
    let out = Command::new("df")
        .args(["--output=avail,iavail", "-B1"])
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.lines().nth(1)?.split_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Measures one store of `n` entries at `url` (a folder `folder` that does not exist yet).
fn measure(url: &str, folder: &Path, n: usize) -> Result<Point, String> {
    if let Some((bytes, inodes)) = free_space(folder.parent().unwrap_or(folder)) {
        let needed = n as u64 * BYTES_PER_ENTRY + SPARE_BYTES;
        if bytes < needed || inodes < 2 * n as u64 + 100_000 {
            return Err(format!(
                "not enough free disk ({} free, {} inodes; {} needed)",
                thousands(bytes as i64),
                thousands(inodes as i64),
                thousands(needed as i64)
            ));
        }
    }
    let memory = Memory::from_url(url).map_err(|e| e.to_string())?;
    let f = memory
        .cache_fn(square_counted as fn(i64) -> i64)
        .name("bench::scaling");
    let point = || -> Res<Point> {
        let calls = CALLS.load(Ordering::Relaxed);
        let started = Instant::now();
        for x in 0..n as i64 {
            black_box(f.eval(x));
        }
        let populate = started.elapsed();
        if CALLS.load(Ordering::Relaxed) - calls != n as u64 {
            return Err("populating did not call the function once per entry".into());
        }
        let (inodes, disk_bytes) = usage(folder)?;

        let nothing = SizeLimits::default().items_limit(usize::MAX);
        let rounds = if n >= 1_000_000 { 1 } else { 3 };
        let mut lists = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let report = memory.reduce_size(&nothing)?;
            lists.push(started.elapsed().as_nanos() as f64);
            if report.deleted_items != 0 || report.kept_items != n {
                return Err(format!(
                    "listing: {} kept, {} deleted of {n}",
                    report.kept_items, report.deleted_items
                )
                .into());
            }
        }

        let mut keys = Keys(0x9E37_79B9_7F4A_7C15);
        let calls = CALLS.load(Ordering::Relaxed);
        let mut hits = Vec::with_capacity(HITS);
        for _ in 0..HITS {
            let x = keys.below(n);
            let started = Instant::now();
            let y = f.eval(black_box(x));
            hits.push(started.elapsed().as_nanos() as f64);
            if y != x.wrapping_mul(x) {
                return Err(format!("square({x}) gave {y}").into());
            }
        }
        if CALLS.load(Ordering::Relaxed) != calls {
            return Err("a hit called the function".into());
        }

        let keep = n - n / 10;
        let started = Instant::now();
        let report = memory.reduce_size(&SizeLimits::default().items_limit(keep))?;
        let reduce = started.elapsed();
        if report.deleted_items != n / 10 {
            return Err(format!(
                "reduce_size deleted {} entries of {n}, not {}",
                report.deleted_items,
                n / 10
            )
            .into());
        }

        let mut misses = Vec::with_capacity(MISSES);
        for i in 0..MISSES as i64 {
            let started = Instant::now();
            black_box(f.eval(black_box(n as i64 + i)));
            misses.push(started.elapsed().as_nanos() as f64);
        }
        if CALLS.load(Ordering::Relaxed) != calls + MISSES as u64 {
            return Err("a miss did not call the function".into());
        }
        Ok(Point {
            populate,
            hit_ns: median(hits),
            floor_hit_ns: None,
            miss_ns: median(misses),
            list: Duration::from_nanos(median(lists) as u64),
            reduce,
            inodes,
            disk_bytes,
        })
    };
    let point = point();
    drop((f, memory));
    let mut point = point.map_err(|e| e.to_string())?;
    if url.contains("layout=index") {
        point.floor_hit_ns = Some(lmdb_floor(folder).map_err(|e| e.to_string()));
    }
    Ok(point)
}

/// The floor of a hit on the index layout: the median of [`HITS`] LMDB gets through heed (a
/// `get` and a copy into a `Vec`, in one read transaction kept open for all of them), each
/// timed alone, of random items of the store's own environment, opened once the store's memory
/// is dropped; each key is copied to a buffer of its own before its get is timed.
fn lmdb_floor(folder: &Path) -> Res<f64> {
    use heed::types::Bytes;
    let dir = folder.join(".cachette-index");
    // SAFETY: the store's memory is dropped, so nothing else in this process maps the
    // environment, and no other process uses it.
    let env = unsafe {
        heed::EnvOpenOptions::new()
            .max_dbs(2)
            .map_size(1 << 40)
            .open(&dir)?
    };
    let opened = env.open_databases_and_commit(env.read_txn()?, |opener, txn| {
        Ok::<_, heed::Error>(
            match opener.open_database::<Bytes, Bytes>(txn, Some("items"))? {
                Some(items) => heed::CommitOrAbort::Commit(items),
                None => heed::CommitOrAbort::Abort(()),
            },
        )
    })?;
    let heed::CommitOrAbort::Commit(items) = opened else {
        return Err("no items database".into());
    };
    let rtxn = env.read_txn()?;
    let keys = items
        .iter(&rtxn)?
        .map(|item| item.map(|(k, _)| k.to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    drop(rtxn);
    if keys.is_empty() {
        return Err("no items".into());
    }
    let mut pick = Keys(0x2545_F491_4F6C_DD1D);
    let mut gets = Vec::with_capacity(HITS);
    // Nothing writes the environment: one read transaction reads the newest commit throughout.
    let rtxn = env.read_txn()?;
    let mut key = Vec::new();
    for _ in 0..HITS {
        // Copied first, untimed: a caller's key is at hand, as a hit's is (it hashes the
        // arguments and writes the key), not a cache miss away in a table of a million keys.
        key.clear();
        key.extend_from_slice(&keys[pick.below(keys.len()) as usize]);
        let started = Instant::now();
        let value = items.get(&rtxn, black_box(&key[..]))?.map(<[u8]>::to_vec);
        gets.push(started.elapsed().as_nanos() as f64);
        if value.is_none() {
            return Err("an item listed is gone".into());
        }
        black_box(value);
    }
    drop(rtxn);
    drop(env.prepare_for_closing());
    Ok(median(gets))
}

/// Runs every layout at every size up to `max` entries, in `scratch`; the `## Scaling`
/// section of `BENCHMARKS.md`.
pub(crate) fn run(scratch: &Path, max: usize, run_line: &str) -> String {
    let sizes: Vec<usize> = SIZES.iter().copied().filter(|&n| n <= max).collect();
    let mut runs = Vec::new();
    let started = Instant::now();
    for (name, url_of) in layouts() {
        let mut points = Vec::new();
        for &n in &sizes {
            // The same folder for every size (emptied in between): a location the backend
            // refuses gives the same error at every size, shown once.
            let folder = scratch.join(format!("scaling-{name}"));
            let _ = std::fs::remove_dir_all(&folder);
            let url = url_of(&folder);
            eprintln!(
                "scaling: {name}, {} entries ({:.0}s)",
                thousands(n as i64),
                started.elapsed().as_secs_f64()
            );
            let point = measure(&url, &folder, n);
            match &point {
                Ok(p) => eprintln!(
                    "  populate {}, hit {}, miss {}, list {}, reduce 10% {}, {} inodes",
                    duration(p.populate.as_nanos() as f64),
                    duration(p.hit_ns),
                    duration(p.miss_ns),
                    duration(p.list.as_nanos() as f64),
                    duration(p.reduce.as_nanos() as f64),
                    thousands(p.inodes as i64)
                ),
                Err(e) => eprintln!("  not run: {e}"),
            }
            let removing = Instant::now();
            if let Err(e) = std::fs::remove_dir_all(&folder)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("  could not remove {}: {e}", folder.display());
            }
            eprintln!("  removed in {:.1}s", removing.elapsed().as_secs_f64());
            points.push((n, point));
        }
        runs.push(LayoutRun {
            name,
            url_form: url_of(Path::new("<folder>")),
            points,
        });
    }
    markdown(&runs, &sizes, max, run_line)
}

/// A size as a column heading: `1k`, `1M`.
fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Bytes as the table shows them.
fn bytes_label(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn markdown(runs: &[LayoutRun], sizes: &[usize], max: usize, run_line: &str) -> String {
    let mut md = String::from("## Scaling\n\n");
    md.push_str(&format!(
        "Measured by `cargo xtask bench --scaling{}` ({run_line}). Each store names its layout \
         in its location URL: the files layout (`?layout=files`: one file per entry, the \
         default in a store others may write) and the index layout (`?layout=index`: small \
         entries in an LMDB index, the default, `layout=auto`, in a store only you may write). \
         One memoized `i64 → i64` function; a store of N tiny entries is populated by N calls \
         (a miss each), then: the inodes and disk it uses (files and folders below the store's \
         folder, the folder included), listing every entry (`reduce_size` with a limit that \
         deletes nothing; median of 3, 1 at 1M), the median of {} hits on random existing keys \
         (each timed alone), `reduce_size` deleting 10% of the entries, and the median of {} \
         misses on new keys. For the index layout, the floor of its hit: the median of as many \
         LMDB gets through heed (a `get` and a copy, in one read transaction kept open for all \
         of them, as a reader keeps it while nothing is written), each timed alone, of \
         random items of the store's own environment, opened once the memory is dropped (its \
         pages were walked once, as the listing walked the memory's), each key copied to a \
         buffer of its own before its get is timed (a hit's key is at hand too: it is written \
         from the arguments' hash). Each store is removed before the next size.\n",
        if max < *SIZES.last().unwrap_or(&0) {
            format!(" --scaling-max {max}")
        } else {
            String::new()
        },
        thousands(HITS as i64),
        thousands(MISSES as i64),
    ));
    if sizes.len() < SIZES.len() {
        let left: Vec<String> = SIZES
            .iter()
            .filter(|n| !sizes.contains(n))
            .map(|&n| size_label(n))
            .collect();
        md.push_str(&format!(
            "\nPartial run, stopped at {} entries (`--scaling-max {max}`): left out {}.\n",
            thousands(max as i64),
            left.join(", ")
        ));
    }
    for run in runs {
        md.push_str(&format!(
            "\n### {} layout (`{}`)\n\n",
            run.name, run.url_form
        ));
        let errors: Vec<&String> = run
            .points
            .iter()
            .filter_map(|(_, p)| p.as_ref().err())
            .collect();
        if !errors.is_empty()
            && errors.len() == run.points.len()
            && errors.iter().all(|e| *e == errors[0])
        {
            md.push_str(&format!("not run: {}\n", errors[0].replace('|', "\\|")));
            continue;
        }
        md.push_str("| entries |");
        for (n, _) in &run.points {
            md.push_str(&format!(" {} |", size_label(*n)));
        }
        md.push_str("\n| --- |");
        for _ in &run.points {
            md.push_str(" ---: |");
        }
        md.push('\n');
        type Cell = fn(&Point, usize) -> String;
        let rows: [(&str, Cell); 9] = [
            ("populate (N misses)", |p, _| {
                duration(p.populate.as_nanos() as f64)
            }),
            ("populate, per entry", |p, n| {
                duration(p.populate.as_nanos() as f64 / n as f64)
            }),
            ("hit (median)", |p, _| duration(p.hit_ns)),
            (
                "hit floor: LMDB get (heed) of a random item",
                |p, _| match &p.floor_hit_ns {
                    None => "—".to_owned(),
                    Some(Ok(ns)) => duration(*ns),
                    Some(Err(e)) => format!("not measured: {}", e.replace('|', "\\|")),
                },
            ),
            ("miss (median)", |p, _| duration(p.miss_ns)),
            (
                "list all entries",
                |p, _| duration(p.list.as_nanos() as f64),
            ),
            ("reduce_size deleting 10%", |p, _| {
                duration(p.reduce.as_nanos() as f64)
            }),
            ("inodes used", |p, _| thousands(p.inodes as i64)),
            ("disk used", |p, _| bytes_label(p.disk_bytes)),
        ];
        for (label, cell) in rows {
            md.push_str(&format!("| {label} |"));
            for (n, point) in &run.points {
                let text = match point {
                    Ok(p) => cell(p, *n),
                    Err(e) => format!("not run: {}", e.replace('|', "\\|")),
                };
                md.push_str(&format!(" {text} |"));
            }
            md.push('\n');
        }
    }
    md
}
