//! Local-disk backend: reading and writing small items, against the same work done with
//! `std::fs` directly in the same run.
//!
//! `cargo bench -p cachette-fs` (or `cargo xtask bench`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cachette_core::plugin::{Bytes, Key, StoreBackendExt};
use cachette_fs::FsBackend;
use divan::black_box;

fn main() {
    divan::main();
    // Fixtures live in statics, which are never dropped: remove their files here.
    let _ = std::fs::remove_dir_all(scratch());
}

/// The folder of this run's files, under the system's temporary folder.
fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cachette-bench-fs-{}", std::process::id()))
}

/// A new temporary folder in [`scratch`].
fn tempdir() -> tempfile::TempDir {
    let root = scratch();
    std::fs::create_dir_all(&root).expect("scratch folder");
    tempfile::tempdir_in(root).expect("tempdir")
}

const ITEM: [u8; 100] = [7; 100];

struct Fixture {
    _dir: tempfile::TempDir,
    backend: FsBackend,
    key: Key,
    raw: PathBuf,
    rt: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempdir();
    let backend = FsBackend::new(dir.path().join("store")).expect("backend");
    let key = Key::new("bench.func/0123456789abcdef0123456789abcdef").expect("key");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(backend.put(&key, Bytes::from_static(&ITEM).into()))
        .expect("put");
    let raw = dir.path().join("raw.bin");
    std::fs::write(&raw, ITEM).expect("write");
    Fixture {
        _dir: dir,
        backend,
        key,
        raw,
        rt,
    }
});

/// `get` of a 100-byte item.
#[divan::bench]
fn get_100b() -> Bytes {
    let f = &*FIXTURE;
    f.rt.block_on(f.backend.get(black_box(&f.key)))
        .unwrap()
        .unwrap()
}

/// Baseline: `File::open` and read of a 100-byte file.
#[divan::bench]
fn baseline_open_read_100b() -> Vec<u8> {
    let f = &*FIXTURE;
    let mut file = std::fs::File::open(black_box(&f.raw)).unwrap();
    let mut buf = Vec::with_capacity(101);
    file.read_to_end(&mut buf).unwrap();
    buf
}

static N: AtomicU64 = AtomicU64::new(0);

/// `put` of a 100-byte item under a new key.
#[divan::bench]
fn put_100b() {
    let f = &*FIXTURE;
    let key = Key::new(format!("bench.put/{}", N.fetch_add(1, Ordering::Relaxed))).unwrap();
    f.rt.block_on(f.backend.put(&key, Bytes::from_static(&ITEM).into()))
        .unwrap();
}

/// Baseline: write a temporary file and rename it into place.
#[divan::bench]
fn baseline_temp_rename_100b() {
    let f = &*FIXTURE;
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = f.raw.with_file_name("raw-put");
    std::fs::create_dir_all(&dir).unwrap();
    let temp = dir.join(format!(".tmp-{n}"));
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .unwrap();
    file.write_all(&ITEM).unwrap();
    drop(file);
    std::fs::rename(&temp, dir.join(n.to_string())).unwrap();
}
