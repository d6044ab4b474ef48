//! The small-entry operations, and a probe that runs `N` of one of them in a process of its
//! own, for instruction counts under callgrind.
//!
//! The harness times these operations (`hit_int`, `hit_list`, `miss_tiny`) and counts their
//! instructions: it runs itself as `compare --probe <op> <n>` under
//! `valgrind --tool=callgrind`, with `n = 0` and with `n` operations; the difference of the two
//! totals divided by `n` is the instructions of one operation (set-up, warm-up and process
//! start are the same in both runs, so they cancel). `examples/probe.rs` builds the same probe
//! as an example, for comparing two commits by hand.
//!
//! This file is included by the example too: it uses nothing of the harness.

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cached::{ConcurrentCached, RedbCache, SerializeCached};
use cachette::Memory;
use heed::types::Bytes;
use redb::{ReadableDatabase, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors of the probe and the floors.
pub(crate) type ProbeRes<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The function every small hit and miss memoizes.
pub(crate) fn square(x: i64) -> i64 {
    x * x
}

/// A memoized call through the `cached` crate's store, as its `#[concurrent_cached]` and
/// `#[io_cached]` functions make it: `cache_get`, then on a miss the borrowed
/// `cache_set_ref` (no clone of the value).
pub(crate) fn cached_call<K, V, C>(cache: &C, key: K, compute: impl FnOnce() -> V) -> ProbeRes<V>
where
    C: ConcurrentCached<K, V> + SerializeCached<K, V>,
    <C as cached::ConcurrentCacheBase>::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(v) = cache.cache_get(&key)? {
        return Ok(v);
    }
    let v = compute();
    cache.cache_set_ref(&key, &v)?;
    Ok(v)
}

/// A `cached` redb store in `dir`, with `durable(false)` (no fsync per write, as Cachette).
pub(crate) fn redb_cache<K, V>(dir: &Path, name: &str) -> ProbeRes<RedbCache<K, V>>
where
    K: ToString + Clone,
    V: Serialize + DeserializeOwned,
{
    Ok(RedbCache::builder(name)
        .disk_dir(dir)
        .durable(false)
        .build()?)
}

/// The location URL of a store in `dir` on the files layout of the local disk (one file per
/// entry). The default layout of a folder only the current user may write, as the harness's
/// scratch folders are, is the index layout: the `Cachette` rows name the files layout, and
/// every process opening one of their stores does the same.
pub(crate) fn files_url(dir: &Path) -> String {
    format!("file://{}?layout=files", dir.display())
}

/// Writes `bytes` to a temporary file in `dir`, then renames it to `name`.
pub(crate) fn temp_rename(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!(".tmp-{name}"));
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))
}

/// The least a whole read of a small file costs: `open`, one `read` into `buf` (at least 4 KiB,
/// kept from call to call), `close`: three system calls. A read shorter than the buffer is the
/// whole file, as for any regular file on a local disk (Cachette's own small reads count on it
/// too); a file that fills the buffer is read on to its end. The bytes read are `buf[..n]`.
pub(crate) fn open_read(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    const SMALL: usize = 4096;
    if buf.len() < SMALL {
        buf.resize(SMALL, 0);
    }
    let mut file = File::open(path)?;
    let n = file.read(buf)?;
    if n < buf.len() {
        return Ok(n);
    }
    file.read_to_end(buf)?;
    Ok(buf.len())
}

/// The one entry file in a Cachette function folder.
pub(crate) fn entry_file(folder: &Path) -> ProbeRes<PathBuf> {
    std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.len() == 32))
        .ok_or_else(|| format!("no entry in {}", folder.display()).into())
}

/// The first entry file below a Cachette store.
pub(crate) fn any_entry(store: &Path) -> ProbeRes<PathBuf> {
    for folder in std::fs::read_dir(store.join("cachette"))? {
        let folder = folder?.path();
        if folder.is_dir()
            && let Ok(entry) = entry_file(&folder)
        {
            return Ok(entry);
        }
    }
    Err(format!("no entry below {}", store.display()).into())
}

/// An entry of a Cachette store: its key (function folder / argument id, as the store names
/// it) and its bytes, which the floors of a small hit store and read back.
pub(crate) struct SmallEntry {
    /// The key.
    pub(crate) key: String,
    /// The bytes of the entry file.
    pub(crate) bytes: Vec<u8>,
}

impl SmallEntry {
    /// The entry file `path` of a Cachette store.
    pub(crate) fn read(path: &Path) -> ProbeRes<SmallEntry> {
        let name = |p: Option<&Path>| -> ProbeRes<String> {
            Ok(p.and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .ok_or("an entry path without a name")?
                .to_owned())
        };
        Ok(SmallEntry {
            key: format!("{}/{}", name(path.parent())?, name(Some(path))?),
            bytes: std::fs::read(path)?,
        })
    }
}

/// The floor of a small hit without the `open`: `pread` of the whole entry from a file opened
/// once, into a buffer allocated once.
pub(crate) struct PreadFloor {
    file: File,
    buf: Vec<u8>,
}

impl PreadFloor {
    /// Opens `path` (a copy of the entry) and sizes the buffer.
    pub(crate) fn new(path: &Path) -> ProbeRes<PreadFloor> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())?;
        Ok(PreadFloor {
            file,
            buf: vec![0; len],
        })
    }

    /// One read of the whole entry.
    pub(crate) fn read(&mut self) -> ProbeRes<usize> {
        let n = self.file.read_at(&mut self.buf, 0)?;
        if n != self.buf.len() {
            return Err(format!("short read: {n} of {} bytes", self.buf.len()).into());
        }
        black_box(&self.buf);
        Ok(n)
    }
}

/// Creates the unnamed database of `env`, which stays open until the process ends, and
/// commits.
fn unnamed_database<T>(
    env: &'static heed::Env<T>,
) -> ProbeRes<heed::Database<'static, Bytes, Bytes>> {
    let wtxn = env.write_txn()?;
    Ok(env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener
                .create_database(wtxn, None)
                .map(heed::CommitOrAbort::<_, ()>::Commit)
        })?
        .unwrap_commit())
}

/// The floor of a small hit in LMDB (heed): an environment holding the entry's bytes under its
/// key; one `get` and a copy into a `Vec` per hit, in a read transaction kept open (nothing
/// writes the environment, so it always reads the newest commit: no transaction to begin).
pub(crate) struct LmdbFloor {
    rtxn: heed::RoTxn<'static, heed::WithTls>,
    db: heed::Database<'static, Bytes, Bytes>,
    key: String,
}

impl LmdbFloor {
    /// An LMDB environment in `dir` (created) holding `entry`. The environment is left open
    /// until the process ends (heed's databases borrow it; a harness run opens two).
    pub(crate) fn new(dir: &Path, entry: &SmallEntry) -> ProbeRes<LmdbFloor> {
        std::fs::create_dir_all(dir)?;
        // SAFETY: the environment is opened once in this process, and nothing else maps it.
        let env = unsafe { heed::EnvOpenOptions::new().map_size(16 << 20).open(dir)? };
        let env: &'static heed::Env = Box::leak(Box::new(env));
        let db = unnamed_database(env)?;
        let mut wtxn = env.write_txn()?;
        db.put(&mut wtxn, entry.key.as_bytes(), &entry.bytes)?;
        wtxn.commit()?;
        Ok(LmdbFloor {
            rtxn: env.read_txn()?,
            db,
            key: entry.key.clone(),
        })
    }

    /// One hit: the entry's bytes, copied out of the map.
    pub(crate) fn get(&self) -> ProbeRes<Vec<u8>> {
        let bytes = self
            .db
            .get(&self.rtxn, black_box(self.key.as_bytes()))?
            .ok_or("the LMDB entry is gone")?;
        Ok(bytes.to_vec())
    }
}

/// The floor of a tiny miss that keeps the promises of the index layout: the entry is seen by
/// every process once the call returns, kept by the system if the process is killed then, and
/// computed once. Per miss: a claim (an open-file-description lock of one byte of a file, at
/// the key's hash, as the index's claims), a write transaction that finds the key absent, puts
/// the entry's bytes and commits without fsync (LMDB through heed, flags as the index's, the
/// environment's unnamed database: no named database's record to rewrite), and the claim's
/// release. Its keys are of the store's shape (the entry's function folder, `/`, 32 hex digits
/// of a hash), so each lands at a random place of the tree, as Cachette's do.
pub(crate) struct LmdbMissFloor {
    env: &'static heed::Env<heed::WithoutTls>,
    db: heed::Database<'static, Bytes, Bytes>,
    claims: File,
    folder: String,
    value: Vec<u8>,
    key: String,
    next: u64,
}

impl LmdbMissFloor {
    /// An empty LMDB environment and a claims file in `dir` (created), storing `entry`'s bytes
    /// under keys of the folder of `entry`'s key. The environment is left open until the
    /// process ends (heed's databases borrow it).
    ///
    /// It is written through its map (`MDB_WRITEMAP`), as the index is on the file systems
    /// where the harness runs (ext4, XFS, tmpfs), and its whole data file is allocated and read
    /// into the page cache first: the floor pays neither for the blocks nor for the faults
    /// that the index pays for as it grows.
    pub(crate) fn new(dir: &Path, entry: &SmallEntry) -> ProbeRes<LmdbMissFloor> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(dir)?;
        let mut options = heed::EnvOpenOptions::new().read_txn_without_tls();
        // A map of 1 GiB: valgrind cannot reserve the index's default 1 TiB of address space.
        const MAP: usize = 1 << 30;
        options.map_size(MAP);
        // SAFETY: the environment is opened once in this process, nothing else maps or writes
        // its files, and `MDB_NOSYNC` only gives up durability across a system crash. The
        // data file is allocated whole below, before anything is written through the map.
        let env = unsafe {
            options.flags(
                heed::EnvFlags::NO_SYNC | heed::EnvFlags::NO_READ_AHEAD | heed::EnvFlags::WRITE_MAP,
            );
            options.open(dir)?
        };
        let data = env.try_clone_inner_file()?;
        let len = libc::off_t::try_from(MAP)?;
        // SAFETY: plain calls on a descriptor open for them.
        let (allocated, read) = unsafe {
            (
                libc::posix_fallocate(data.as_raw_fd(), 0, len),
                libc::posix_fadvise(data.as_raw_fd(), 0, len, libc::POSIX_FADV_WILLNEED),
            )
        };
        if allocated != 0 || read != 0 {
            return Err(
                format!("cannot allocate the floor's data file: {allocated} {read}").into(),
            );
        }
        let env: &'static heed::Env<heed::WithoutTls> = Box::leak(Box::new(env));
        let db = unnamed_database(env)?;
        let claims = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("claims"))?;
        let (folder, _) = entry
            .key
            .split_once('/')
            .ok_or("an entry key without a folder")?;
        Ok(LmdbMissFloor {
            env,
            db,
            claims,
            folder: folder.to_owned(),
            value: entry.bytes.clone(),
            key: String::new(),
            next: 0,
        })
    }

    /// One miss, of a key not stored before.
    pub(crate) fn miss(&mut self) -> ProbeRes<()> {
        use std::fmt::Write as _;
        self.next += 1;
        let id = xxhash_rust::xxh3::xxh3_128(&self.next.to_le_bytes());
        self.key.clear();
        write!(self.key, "{}/{id:032x}", self.folder)?;
        let offset = xxhash_rust::xxh3::xxh3_64(self.key.as_bytes()) >> 2;
        ofd_lock(&self.claims, offset, true)?;
        let stored = (|| -> ProbeRes<()> {
            let mut wtxn = self.env.write_txn()?;
            if self.db.get(&wtxn, self.key.as_bytes())?.is_some() {
                return Err(format!("{} is stored already", self.key).into());
            }
            self.db.put(&mut wtxn, self.key.as_bytes(), &self.value)?;
            wtxn.commit()?;
            Ok(())
        })();
        ofd_lock(&self.claims, offset, false)?;
        stored
    }
}

/// Takes (`on`) or releases the open-file-description lock of the byte at `offset` of `file`,
/// never waiting: one `fcntl`. A lock taken elsewhere is an error.
fn ofd_lock(file: &File, offset: u64, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is a plain C struct, for which all zero bytes are a valid value (and the
    // value `F_OFD_SETLK` requires of `l_pid`).
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = if on { libc::F_WRLCK } else { libc::F_UNLCK } as libc::c_short;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    range.l_start = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
    range.l_len = 1;
    // SAFETY: the descriptor is open for the call, and `range` a valid `flock` that outlives
    // it; `F_OFD_SETLK` reads it and never waits.
    let done = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &raw const range) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The table of the redb floor.
const REDB_TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("entries");

/// The floor of a small hit in redb, without the `cached` layer: a database file holding the
/// entry's bytes under its key; one read transaction, one table `get` and a copy into a `Vec`
/// per hit.
pub(crate) struct RedbFloor {
    db: redb::Database,
    key: String,
}

impl RedbFloor {
    /// A redb database `path` (created) holding `entry`.
    pub(crate) fn new(path: &Path, entry: &SmallEntry) -> ProbeRes<RedbFloor> {
        let db = redb::Database::create(path)?;
        let wtxn = db.begin_write()?;
        wtxn.open_table(REDB_TABLE)?
            .insert(entry.key.as_str(), entry.bytes.as_slice())?;
        wtxn.commit()?;
        Ok(RedbFloor {
            db,
            key: entry.key.clone(),
        })
    }

    /// One hit: the entry's bytes, copied out of the table.
    pub(crate) fn get(&self) -> ProbeRes<Vec<u8>> {
        let rtxn = self.db.begin_read()?;
        let table = rtxn.open_table(REDB_TABLE)?;
        let value = table
            .get(black_box(self.key.as_str()))?
            .ok_or("the redb entry is gone")?;
        Ok(value.value().to_vec())
    }
}

/// The operations the probe runs: `(name, what it is, hit or miss)`.
pub(crate) const OPS: &[(&str, &str, bool)] = &[
    ("hit", "Cachette hit of square(42), files layout", true),
    ("cached-hit", "cached (redb) hit of square(42)", true),
    ("floor-open-read", "open + read of the entry", true),
    (
        "floor-pread",
        "pread of the entry on a file kept open",
        true,
    ),
    ("floor-lmdb", "LMDB get (heed) of the entry", true),
    ("floor-redb", "redb get of the entry", true),
    (
        "index-hit",
        "Cachette hit of square(42), index layout",
        true,
    ),
    (
        "index-hit-spread",
        "Cachette hits of square(x), index layout, x over 1,000 values in turn",
        true,
    ),
    (
        "hit-folders",
        "Cachette hits of square(42) of 17 functions in turn (one folder each), files layout",
        true,
    ),
    (
        "memo-hit",
        "Cachette repeated hit of square(42) from the in-process memo, files layout",
        true,
    ),
    (
        "miss",
        "Cachette miss of square(x), files layout, new x each time",
        false,
    ),
    (
        "index-miss",
        "Cachette miss of square(x), index layout, new x each time",
        false,
    ),
    ("cached-miss", "cached (redb) miss, new x each time", false),
    (
        "floor-lmdb-miss",
        "claim lock, LMDB get + put + commit through its map (heed, MDB_WRITEMAP, no fsync), unlock, new key each time",
        false,
    ),
    (
        "floor-temp-rename",
        "write temp, rename of the entry",
        false,
    ),
];

/// The arguments `index-hit-spread` hits in turn: more than a store keeps checked entries of,
/// so that no hit is of the entry checked last in its place.
const SPREAD: i64 = 1_000;

/// Operations run before the counted ones, in both the `n = 0` run and the `n` run.
const WARM_UP: u64 = 20;

/// Runs `n` operations `op` (see [`OPS`]) in a fresh folder below `scratch`, after the same
/// set-up and warm-up whatever `n`; removes the folder.
pub(crate) fn run(op: &str, n: u64, scratch: &Path) -> ProbeRes<()> {
    let dir = scratch.join(format!("probe-{op}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run_in(op, n, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(op: &str, n: u64, dir: &Path) -> ProbeRes<()> {
    let store = dir.join("cachette");
    let memory = Memory::from_url(&files_url(&store))?;
    let f = memory
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square");
    f.eval(42);
    let entry_path = any_entry(&store)?;
    let entry = SmallEntry::read(&entry_path)?;
    let copy = dir.join("entry-copy");
    std::fs::write(&copy, &entry.bytes)?;
    // Runs the warm-up, then the `n` counted operations, of `step` (given its index).
    let repeat = |step: &mut dyn FnMut(u64) -> ProbeRes<()>| -> ProbeRes<()> {
        for i in 0..WARM_UP + n {
            step(i)?;
        }
        Ok(())
    };
    // The index layout, with a map of 1 GiB: valgrind cannot reserve the default 1 TiB of
    // address space (the map's size changes nothing else).
    let index = Memory::from_url(&format!(
        "file://{}?layout=index&index_map_size=1073741824",
        dir.join("cachette-index").display()
    ))?;
    let index_f = index
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square");
    let memo = Memory::builder()
        .url(files_url(&dir.join("cachette-memo")))
        .memo_size("16M")
        .build()?;
    let memo_f = memo
        .cache_fn(square as fn(i64) -> i64)
        .name("bench::square")
        .memo();
    match op {
        "index-hit" => {
            index_f.eval(42);
            repeat(&mut |_| {
                black_box(index_f.eval(black_box(42)));
                Ok(())
            })
        }
        "index-hit-spread" => {
            for x in 0..SPREAD {
                index_f.eval(x);
            }
            repeat(&mut |i| {
                black_box(index_f.eval(black_box((i % SPREAD as u64) as i64)));
                Ok(())
            })
        }
        "index-miss" => repeat(&mut |i| {
            black_box(index_f.eval(black_box(1_000_000 + i as i64)));
            Ok(())
        }),
        "memo-hit" => {
            memo_f.eval(42);
            repeat(&mut |_| {
                black_box(memo_f.eval(black_box(42)));
                Ok(())
            })
        }
        "hit" => repeat(&mut |_| {
            black_box(f.eval(black_box(42)));
            Ok(())
        }),
        "hit-folders" => {
            // One more function, so one more folder, than a store keeps handles on.
            let fs: Vec<_> = (0..17)
                .map(|i| {
                    memory
                        .cache_fn(square as fn(i64) -> i64)
                        .name(format!("bench::square{i}"))
                })
                .collect();
            for f in &fs {
                f.eval(42);
            }
            repeat(&mut |i| {
                black_box(fs[i as usize % fs.len()].eval(black_box(42)));
                Ok(())
            })
        }
        "miss" => repeat(&mut |i| {
            black_box(f.eval(black_box(1_000_000 + i as i64)));
            Ok(())
        }),
        "cached-hit" => {
            let cache = redb_cache::<String, i64>(dir, "probe")?;
            cached_call(&cache, 42.to_string(), || square(42))?;
            repeat(&mut |_| {
                let x = black_box(42i64);
                black_box(cached_call(&cache, x.to_string(), || square(x))?);
                Ok(())
            })
        }
        "cached-miss" => {
            let cache = redb_cache::<String, i64>(dir, "probe")?;
            repeat(&mut |i| {
                let x = black_box(1_000_000 + i as i64);
                black_box(cached_call(&cache, x.to_string(), || square(x))?);
                Ok(())
            })
        }
        "floor-open-read" => {
            let mut buf = Vec::new();
            repeat(&mut |_| {
                let n = open_read(&copy, &mut buf)?;
                black_box(&buf[..n]);
                Ok(())
            })
        }
        "floor-pread" => {
            let mut floor = PreadFloor::new(&copy)?;
            repeat(&mut |_| floor.read().map(drop))
        }
        "floor-lmdb" => {
            let floor = LmdbFloor::new(&dir.join("lmdb"), &entry)?;
            repeat(&mut |_| {
                black_box(floor.get()?);
                Ok(())
            })
        }
        "floor-redb" => {
            let floor = RedbFloor::new(&dir.join("floor.redb"), &entry)?;
            repeat(&mut |_| {
                black_box(floor.get()?);
                Ok(())
            })
        }
        "floor-lmdb-miss" => {
            let mut floor = LmdbMissFloor::new(&dir.join("lmdb-miss"), &entry)?;
            repeat(&mut |_| floor.miss())
        }
        "floor-temp-rename" => {
            let out = dir.join("floor");
            std::fs::create_dir_all(&out)?;
            repeat(&mut |i| Ok(temp_rename(&out, &format!("{i:032x}"), &entry.bytes)?))
        }
        other => {
            let names: Vec<&str> = OPS.iter().map(|(name, _, _)| *name).collect();
            Err(format!("unknown probe `{other}` (probes: {})", names.join(", ")).into())
        }
    }
}

/// `<op> <n> [folder]`: runs the probe; the folder defaults to the system's temporary one.
pub(crate) fn main_with(args: &[String]) -> std::process::ExitCode {
    let op = args.first().map_or("hit", String::as_str);
    let n = match args.get(1).map(|a| a.parse::<u64>()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("probe: the count {:?}: {e}", args[1]);
            return std::process::ExitCode::FAILURE;
        }
    };
    let scratch = args.get(2).map_or_else(std::env::temp_dir, PathBuf::from);
    match run(op, n, &scratch) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe: {op}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
