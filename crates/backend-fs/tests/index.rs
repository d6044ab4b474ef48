//! The index layout of the local-disk backend: small items in an LMDB environment, large ones
//! files. The conformance suite, and the layout's own promises.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachette_core::plugin::{
    BackendConfig, Blob, Bytes, ClaimAttempt, DynBackend, ErrorKind, GetOptions, GetPayload, Key,
    Prefix, PutOptions, PutOutcome, StoreBackend, StoreBackendExt, backend_from_url, block_on,
    testkit,
};
use cachette_fs::{FsBackend, FsConfig, Layout};

/// Set in a child's environment: what it does, and where (see [`child_if_asked`]).
const CHILD: &str = "CACHETTE_INDEX_TEST_CHILD";

fn config(path: &Path) -> FsConfig {
    FsConfig::new(path).with_layout(Layout::Index)
}

fn open(path: &Path) -> FsBackend {
    config(path).open().unwrap()
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn blob(bytes: Vec<u8>) -> Blob {
    Bytes::from(bytes).into()
}

/// The paths of every entry below `root` that is not a folder, relative to it, sorted.
fn files_under(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// What the index layout keeps in a root that existed (a temporary folder): the environment,
/// and the `.gitignore` of the folder the store made in it.
const IN_EXISTING_ROOT: [&str; 3] = [
    ".cachette-index/.gitignore",
    ".cachette-index/data.mdb",
    ".cachette-index/lock.mdb",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_with_the_default_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let b: DynBackend = Arc::new(open(dir.path()));
    let root = testkit::unique_root("index");
    testkit::run_all(b.clone()).await;
    // Small items are read, never mapped; larger ones are files to map.
    heads_and_local_files(&*b, &root).await;
    let root = Prefix::new(root).unwrap();
    b.delete_prefix(&root).await.unwrap();
    assert!(b.list(&root).await.unwrap().is_empty());
    // The suite took claims: their lock file stays, empty.
    let mut expected = IN_EXISTING_ROOT.to_vec();
    expected.insert(1, ".cachette-index/claims.lock");
    assert_eq!(files_under(dir.path()), expected);
    let claims = dir.path().join(".cachette-index/claims.lock");
    assert_eq!(std::fs::metadata(claims).unwrap().len(), 0);
}

/// `head` and ranges of an index item; a local file is given for a file item only.
async fn heads_and_local_files(b: &dyn StoreBackend, root: &str) {
    let small = key(&format!("{root}/head/small"));
    let value = Bytes::from(vec![5u8; 3000]);
    b.put(&small, value.clone().into()).await.unwrap();
    let head = b
        .get_opts(&small, GetOptions::head())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.size, 3000);
    assert!(matches!(&head.payload, GetPayload::Bytes(bytes) if bytes.is_empty()));
    let part = b
        .get_opts(&small, GetOptions::range(10..20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(part.size, 3000);
    assert_eq!(part.into_bytes().unwrap(), value.slice(10..20));
    let found = b
        .get_opts(&small, GetOptions::default().with_local_file(true))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(found.payload, GetPayload::Bytes(_)),
        "an index item is read"
    );
    assert_eq!(found.into_bytes().unwrap(), value);

    let large = key(&format!("{root}/head/large"));
    let value = Bytes::from(vec![6u8; 100_000]);
    b.put(&large, value.clone().into()).await.unwrap();
    let found = b
        .get_opts(&large, GetOptions::default().with_local_file(true))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(found.payload, GetPayload::File(_)),
        "a large item is a file"
    );
    assert_eq!(found.into_bytes().unwrap(), value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_with_both_representations_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let b = config(dir.path()).with_index_threshold(16).open().unwrap();
    testkit::run_all(Arc::new(b)).await;
}

/// A write that deletes another item deletes it wherever it is, the write and the item in
/// the index or as files, and leaves no file behind.
#[tokio::test]
async fn writes_delete_items_in_either_representation() {
    let dir = tempfile::tempdir().unwrap();
    let b = config(dir.path()).with_index_threshold(16).open().unwrap();
    let (small, large) = (vec![1u8; 8], vec![2u8; 100]);
    for (entry_bytes, claim_bytes) in [
        (&small, &small),
        (&small, &large),
        (&large, &small),
        (&large, &large),
    ] {
        let entry = key("f/entry");
        let claim = key("f/entry.claim");
        b.put(&claim, blob(claim_bytes.clone())).await.unwrap();
        let outcome = b
            .put_then_delete(
                &entry,
                blob(entry_bytes.clone()),
                PutOptions::default(),
                &claim,
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Created);
        assert_eq!(
            b.get(&entry).await.unwrap().as_deref(),
            Some(&entry_bytes[..])
        );
        assert_eq!(b.get(&claim).await.unwrap(), None);
        let listed: Vec<String> = b
            .list(&Prefix::root())
            .await
            .unwrap()
            .into_iter()
            .map(|item| item.key.as_str().to_owned())
            .collect();
        assert_eq!(listed, ["f/entry"]);
        b.delete(&entry).await.unwrap();
    }
    assert_eq!(files_under(dir.path()), IN_EXISTING_ROOT);
}

#[tokio::test]
async fn small_items_are_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    for i in 0..1000u32 {
        b.put(
            &key(&format!("f.{}/{i:04}", i % 7)),
            blob(i.to_le_bytes().to_vec()),
        )
        .await
        .unwrap();
    }
    let mut expected = IN_EXISTING_ROOT.to_vec();
    assert_eq!(
        files_under(dir.path()),
        expected,
        "a small item made a file"
    );
    for i in 0..1000u32 {
        let got = b.get(&key(&format!("f.{}/{i:04}", i % 7))).await.unwrap();
        assert_eq!(got.as_deref(), Some(&i.to_le_bytes()[..]));
    }
    assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 1000);
    let listed = b.list(&Prefix::new("f.3").unwrap()).await.unwrap();
    assert_eq!(listed.len(), (0..1000).filter(|i| i % 7 == 3).count());
    assert!(listed.iter().all(|item| item.size == 4));

    // A large item is a file, as in the files layout.
    b.put(&key("g/big"), blob(vec![1; 200_000])).await.unwrap();
    expected.extend(["g/.gitignore", "g/big"]);
    expected.sort();
    assert_eq!(files_under(dir.path()), expected);
    assert_eq!(
        std::fs::read(dir.path().join("g/big")).unwrap(),
        vec![1; 200_000]
    );
}

#[tokio::test]
async fn opening_and_reading_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/cache");
    let b = open(&root);
    let k = key("f/x");
    assert_eq!(b.get(&k).await.unwrap(), None);
    assert_eq!(b.head(&k).await.unwrap(), None);
    assert_eq!(b.get_range(&k, 0..4).await.unwrap(), None);
    assert!(
        b.get_opts(&k, GetOptions::hit().with_local_file(true))
            .await
            .unwrap()
            .is_none()
    );
    assert!(b.list(&Prefix::root()).await.unwrap().is_empty());
    assert_eq!(b.sweep(&Prefix::root()).await.unwrap(), 0);
    b.delete(&k).await.unwrap();
    assert!(!dir.path().join("a").exists(), "a read created a folder");

    // A store of files, without an index: read, listed, and still without an index.
    FsConfig::new(&root)
        .with_layout(Layout::Files)
        .open()
        .unwrap()
        .put(&k, blob(b"v".to_vec()))
        .await
        .unwrap();
    let b = open(&root);
    assert_eq!(
        b.get_opts(&k, GetOptions::hit())
            .await
            .unwrap()
            .unwrap()
            .into_bytes()
            .unwrap(),
        &b"v"[..]
    );
    assert_eq!(b.get(&key("f/missing")).await.unwrap(), None);
    assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 1);
    assert!(
        !root.join(".cachette-index").exists(),
        "a read created the index"
    );
    // The first write of a small item creates it.
    b.put(&key("f/y"), blob(b"w".to_vec())).await.unwrap();
    assert_eq!(
        files_under(&root),
        [
            ".cachette-index/data.mdb",
            ".cachette-index/lock.mdb",
            ".gitignore",
            "f/x"
        ],
        "the root the store made is ignored by git as a whole"
    );
    assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 2);

    // An index folder without an environment in it (it was removed): a miss, and nothing made.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(bare.join(".cachette-index")).unwrap();
    let b = open(&bare);
    assert_eq!(b.get(&k).await.unwrap(), None);
    assert!(b.list(&Prefix::root()).await.unwrap().is_empty());
    assert!(files_under(&bare).is_empty(), "{:?}", files_under(&bare));
}

#[tokio::test]
async fn replacing_across_representations_reads_the_last_value() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let k = key("f/x");
    let file = dir.path().join("f/x");
    for round in 0..3u8 {
        let small = vec![round; 100];
        let large = vec![round + 100; 100_000];
        b.put(&k, blob(small.clone())).await.unwrap();
        assert_eq!(b.get(&k).await.unwrap().unwrap(), small);
        assert!(!file.exists(), "the file of the replaced item stays");
        b.put(&k, blob(large.clone())).await.unwrap();
        assert_eq!(b.get(&k).await.unwrap().unwrap(), large);
        assert!(file.exists());
        let listed = b.list(&Prefix::root()).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].size, 100_000);
    }
    b.put(&k, blob(vec![7; 10])).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap().unwrap(), vec![7; 10]);
    assert!(!dir.path().join("f").exists(), "the emptied folder stays");
    // A create finds the item in either place.
    assert_eq!(
        b.put_if_absent(&k, blob(vec![8; 10])).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        b.put_if_absent(&k, blob(vec![8; 100_000])).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    b.put(&k, blob(vec![9; 100_000])).await.unwrap();
    assert_eq!(
        b.put_if_absent(&k, blob(vec![8; 10])).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(b.get(&k).await.unwrap().unwrap(), vec![9; 100_000]);
    // Deleting removes it from both places.
    b.delete(&k).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap(), None);
    assert_eq!(
        b.put_if_absent(&k, blob(vec![8; 10])).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(b.get(&k).await.unwrap().unwrap(), vec![8; 10]);
}

#[tokio::test]
async fn long_keys_are_files_and_reserved_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let long = format!(
        "f/{}/{}/{}",
        "a".repeat(200),
        "b".repeat(200),
        "c".repeat(200)
    );
    b.put(&key(&long), blob(b"v".to_vec())).await.unwrap();
    assert!(
        dir.path().join(&long).exists(),
        "a key longer than LMDB's limit is a file"
    );
    assert_eq!(
        b.get(&key(&long)).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        b.put_if_absent(&key(&long), blob(b"w".to_vec()))
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 1);

    b.put(&key("g/x"), blob(b"v".to_vec())).await.unwrap();
    for layout in [Layout::Index, Layout::Files] {
        let b = FsConfig::new(dir.path())
            .with_layout(layout)
            .open()
            .unwrap();
        for bad in [
            ".cachette-index",
            ".cachette-index/data.mdb",
            "f/.cachette-index",
        ] {
            let e = b.put(&key(bad), blob(b"v".to_vec())).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidKey, "{bad}: {e}");
            let e = b.get(&key(bad)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidKey, "{bad}: {e}");
        }
        // The index's folder is never listed, nor swept, nor cleared.
        let listed: Vec<String> = b
            .list(&Prefix::root())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.key.to_string())
            .collect();
        assert_eq!(
            listed.len(),
            if layout == Layout::Index { 2 } else { 1 },
            "{listed:?}"
        );
        assert!(listed.iter().all(|k| !k.contains(".cachette-index")));
        assert!(
            b.list(&Prefix::new(".cachette-index").unwrap())
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(b.sweep(&Prefix::root()).await.unwrap(), 0);
    }
    let b = open(dir.path());
    b.delete_prefix(&Prefix::root()).await.unwrap();
    assert_eq!(files_under(dir.path()), IN_EXISTING_ROOT);
}

/// A miss is answered by the index when the registry knows no file in the key's folder: a file
/// put there by hand is not looked for, until a file is written through the store in that
/// folder. Then misses there look for files, in this process and in a new store on the folder.
#[tokio::test]
async fn misses_in_folders_without_files_look_for_none() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put(&key("f/a"), blob(vec![1; 10])).await.unwrap();
    std::fs::create_dir(dir.path().join("f")).unwrap();
    std::fs::write(dir.path().join("f/by-hand"), b"not written by the store").unwrap();
    assert_eq!(b.get(&key("f/by-hand")).await.unwrap(), None);
    assert_eq!(
        b.put_if_absent(&key("f/by-hand"), blob(vec![2; 10]))
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        b.get(&key("f/by-hand")).await.unwrap().unwrap(),
        vec![2; 10]
    );
    std::fs::write(dir.path().join("f/other"), b"by hand").unwrap();

    // A file written through the store records its folder.
    b.put(&key("f/large"), blob(vec![3; 100_000]))
        .await
        .unwrap();
    assert_eq!(
        b.get(&key("f/other")).await.unwrap().as_deref(),
        Some(&b"by hand"[..])
    );
    drop(b);
    let again = open(dir.path());
    assert_eq!(
        again.get(&key("f/other")).await.unwrap().as_deref(),
        Some(&b"by hand"[..])
    );
    assert_eq!(
        again.get(&key("f/large")).await.unwrap().unwrap(),
        vec![3; 100_000]
    );
    // Reserved names are refused by a miss as before.
    let e = again.get(&key("g/.cachette-index")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidKey, "{e}");
}

/// A store written with the files layout, then opened with the index layout: its files are
/// read before the index exists, and after, once the first write made the registry from the
/// folders that hold them.
#[tokio::test]
async fn files_written_before_the_index_are_found_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = FsConfig::new(dir.path())
        .with_layout(Layout::Files)
        .open()
        .unwrap();
    let written: Vec<(Key, Vec<u8>)> = [
        ("f/small", 10),
        ("f/large", 100_000),
        ("g/h/deep", 20),
        ("root-level", 30),
    ]
    .into_iter()
    .map(|(k, len)| (key(k), vec![len as u8; len]))
    .collect();
    for (k, v) in &written {
        files.put(k, blob(v.clone())).await.unwrap();
    }
    let b = open(dir.path());
    for (k, v) in &written {
        assert_eq!(b.get(k).await.unwrap().as_deref(), Some(&v[..]), "{k}");
    }
    b.put(&key("new/one"), blob(vec![4; 10])).await.unwrap();
    for (k, v) in &written {
        assert_eq!(b.get(k).await.unwrap().as_deref(), Some(&v[..]), "{k}");
    }
    assert_eq!(b.get(&key("new/two")).await.unwrap(), None);
}

/// A listing gives every item once: those of the index, the large ones in files, and a key
/// found in both places (a writer stopped between the two steps of a replacement) as the index
/// has it.
#[tokio::test]
async fn listings_give_a_key_in_both_places_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    for name in ["f/a", "f/m", "f/z", "g/b"] {
        b.put(&key(name), blob(vec![1; 10])).await.unwrap();
    }
    for name in ["f/large", "h/large"] {
        b.put(&key(name), blob(vec![2; 100_000])).await.unwrap();
    }
    // A file of the same key beside the index's record.
    std::fs::write(dir.path().join("f/m"), vec![3; 50]).unwrap();
    let mut listed: Vec<(String, u64)> = b
        .list(&Prefix::root())
        .await
        .unwrap()
        .into_iter()
        .map(|item| (item.key.as_str().to_owned(), item.size))
        .collect();
    listed.sort();
    let expected: Vec<(String, u64)> = [
        ("f/a", 10),
        ("f/large", 100_000),
        ("f/m", 10),
        ("f/z", 10),
        ("g/b", 10),
        ("h/large", 100_000),
    ]
    .into_iter()
    .map(|(k, size)| (k.to_owned(), size))
    .collect();
    assert_eq!(listed, expected);
}

/// A listing gives each item its own time, under any prefix: items written in the reverse of
/// their keys' order are listed with times in that order.
#[tokio::test]
async fn listings_give_each_item_its_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let names: Vec<String> = ["f", "f2", "g"]
        .iter()
        .flat_map(|folder| (0..12).map(move |i| format!("{folder}/{i:02}")))
        .collect();
    for name in names.iter().rev() {
        b.put(&key(name), blob(name.as_bytes().to_vec()))
            .await
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    for prefix in [
        Prefix::root(),
        Prefix::new("f").unwrap(),
        Prefix::new("g").unwrap(),
    ] {
        let mut listed = b.list(&prefix).await.unwrap();
        listed.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        assert!(!listed.is_empty());
        for pair in listed.windows(2) {
            assert!(
                pair[0].last_access > pair[1].last_access,
                "{} listed at {}, {} at {}",
                pair[0].key,
                pair[0].last_access,
                pair[1].key,
                pair[1].last_access
            );
        }
    }
}

#[tokio::test]
async fn accesses_are_recorded_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let (x, y) = (key("f/x"), key("f/y"));
    b.put(&x, blob(b"1".to_vec())).await.unwrap();
    b.put(&y, blob(b"2".to_vec())).await.unwrap();
    let at = |items: &[cachette_core::plugin::ItemInfo], k: &Key| {
        items.iter().find(|i| &i.key == k).unwrap().last_access
    };
    let written = b.list(&Prefix::root()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Reads that only look change nothing.
    b.get_opts(&x, GetOptions::default())
        .await
        .unwrap()
        .unwrap();
    b.head(&x).await.unwrap().unwrap();
    b.get_range(&x, 0..1).await.unwrap().unwrap();
    let listed = b.list(&Prefix::root()).await.unwrap();
    assert_eq!(at(&listed, &x), at(&written, &x));

    // A hit is recorded (in memory, written by `list`), at the time of the coarse clock, which
    // lags by at most its tick (a few milliseconds; 10 at most on Linux): 50 leaves a margin.
    let tick = cachette_core::plugin::chrono::TimeDelta::milliseconds(50);
    let before = cachette_core::plugin::Utc::now() - tick;
    b.get(&x).await.unwrap().unwrap();
    let listed = b.list(&Prefix::root()).await.unwrap();
    assert!(at(&listed, &x) >= before, "{} < {before}", at(&listed, &x));
    assert!(at(&listed, &x) > at(&listed, &y));
    assert_eq!(at(&listed, &y), at(&written, &y));
    assert!(at(&listed, &x) <= cachette_core::plugin::Utc::now());

    // Many hits: one write for many of them, and the latest counts.
    for _ in 0..3000 {
        b.get(&y).await.unwrap().unwrap();
    }
    let last = cachette_core::plugin::Utc::now() - tick;
    b.get(&x).await.unwrap().unwrap();
    drop(b);
    // Dropping the store wrote what was pending: another store sees it.
    let b = open(dir.path());
    let listed = b.list(&Prefix::root()).await.unwrap();
    assert!(at(&listed, &x) >= last);
    assert!(at(&listed, &y) > at(&written, &y));
    // A deleted item is not brought back by a pending access.
    b.get(&y).await.unwrap().unwrap();
    b.delete(&y).await.unwrap();
    assert_eq!(b.list(&Prefix::root()).await.unwrap().len(), 1);
    assert_eq!(b.get(&y).await.unwrap(), None);
}

/// Runs a future of the local disk, which never waits on a reactor.
fn run<F: std::future::Future + Send>(fut: F) -> F::Output
where
    F::Output: Send,
{
    cachette_core::plugin::block_on(true, fut).unwrap()
}

/// Hits on one key from several threads are pending apart (each thread in its stripe): the
/// latest is the one written.
#[test]
fn the_latest_access_of_a_key_from_several_threads_counts() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(open(dir.path()));
    let x = key("f/x");
    run(b.put(&x, blob(b"1".to_vec()))).unwrap();
    let read_on_a_thread = |b: &Arc<FsBackend>| {
        let (b, x) = (b.clone(), x.clone());
        std::thread::spawn(move || run(b.get(&x)).unwrap().unwrap())
            .join()
            .unwrap();
    };
    // More threads than stripes, so that at least two share one.
    for _ in 0..cachette_core::plugin::STRIPES + 1 {
        read_on_a_thread(&b);
    }
    std::thread::sleep(Duration::from_millis(50));
    let tick = cachette_core::plugin::chrono::TimeDelta::milliseconds(50);
    let last = cachette_core::plugin::Utc::now() - tick;
    read_on_a_thread(&b);
    let listed = run(b.list(&Prefix::root())).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].last_access >= last,
        "{} < {last}",
        listed[0].last_access
    );
}

/// Threads that read one key over and over (each keeping its read transaction) while another
/// writes it again and again never read a value older than one they or the writer saw done.
#[test]
fn reads_on_many_threads_never_go_back_while_a_writer_writes() {
    use std::sync::atomic::{AtomicU64, Ordering};
    const WRITES: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(open(dir.path()));
    let x = key("f/x");
    run(b.put(&x, blob(0u64.to_le_bytes().to_vec()))).unwrap();
    // The last value whose write is done, and whether the writer is done (or gave up).
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    /// Says the writer is done however it ends, so that no reader waits for ever.
    struct Finished<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let read = |b: &FsBackend| -> u64 {
        let value = run(b.get(&x)).unwrap().unwrap();
        u64::from_le_bytes(value[..].try_into().unwrap())
    };
    std::thread::scope(|scope| {
        for _ in 0..cachette_core::plugin::STRIPES + 2 {
            let (b, done, finished) = (&b, &done, &finished);
            scope.spawn(move || {
                let mut last = 0;
                loop {
                    let over = finished.load(Ordering::Acquire);
                    let floor = done.load(Ordering::Acquire);
                    let value = read(b);
                    assert!(value >= floor, "read {value} after {floor} was written");
                    assert!(value >= last, "read {value} after {last}");
                    last = value;
                    if over {
                        break;
                    }
                }
            });
        }
        let _finished = Finished(&finished);
        for v in 1..=WRITES {
            run(b.put(&x, blob(v.to_le_bytes().to_vec()))).unwrap();
            done.store(v, Ordering::Release);
        }
    });
    assert_eq!(read(&b), WRITES);
}

#[tokio::test]
async fn stores_on_one_folder_share_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    a.put(&key("f/x"), blob(b"1".to_vec())).await.unwrap();
    assert_eq!(
        b.get(&key("f/x")).await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    drop(a);
    b.put(&key("f/y"), blob(b"2".to_vec())).await.unwrap();
    drop(b);
    // Opened and closed again and again, from several threads at once.
    let path = dir.path().to_path_buf();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let b = open(&path);
                    let k = key(&format!("t{t}/{i}"));
                    block_on(true, b.put(&k, blob(vec![t; 10])))
                        .unwrap()
                        .unwrap();
                    let got = block_on(true, b.get(&key("f/y"))).unwrap().unwrap();
                    assert_eq!(got.as_deref(), Some(&b"2"[..]));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The same folder through another path.
    let alias = dir.path().with_extension("alias");
    std::os::unix::fs::symlink(dir.path(), &alias).unwrap();
    let c = open(&alias);
    assert_eq!(c.list(&Prefix::root()).await.unwrap().len(), 102);
    std::fs::remove_file(&alias).unwrap();
}

#[test]
fn create_is_exactly_once_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(open(dir.path()));
    for round in 0..30 {
        let k = key(&format!("claim/{round}"));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let racers: Vec<_> = (0..8u8)
            .map(|i| {
                let (b, k, barrier) = (b.clone(), k.clone(), barrier.clone());
                std::thread::spawn(move || {
                    // Half the racers write a small item, half a large one.
                    let size = if i % 2 == 0 { 100 } else { 100_000 };
                    barrier.wait();
                    let outcome = block_on(true, b.put_if_absent(&k, blob(vec![i; size])))
                        .unwrap()
                        .unwrap();
                    (outcome == PutOutcome::Created).then_some((i, size))
                })
            })
            .collect();
        let winners: Vec<(u8, usize)> = racers
            .into_iter()
            .filter_map(|r| r.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (i, size) = winners[0];
        let stored = block_on(true, b.get(&k)).unwrap().unwrap().unwrap();
        assert!(
            stored == vec![i; size],
            "round {round}: the winner's value is not stored"
        );
    }
}

/// In a child (the test binary started again by a test below), does what [`CHILD`] says and
/// returns true; elsewhere returns false at once.
fn child_if_asked() -> bool {
    let Ok(task) = std::env::var(CHILD) else {
        return false;
    };
    let mut parts = task.splitn(3, ':');
    let (what, id, dir) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let dir = PathBuf::from(dir);
    let id: u8 = id.parse().unwrap();
    let b = open(&dir.join("store"));
    match what {
        "race" => {
            while !dir.join("go").exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut out = String::new();
            for k in 0..40 {
                let size = if (k + usize::from(id)) % 2 == 0 {
                    50
                } else {
                    80_000
                };
                let outcome = block_on(
                    true,
                    b.put_if_absent(&key(&format!("race/{k}")), blob(vec![id; size])),
                )
                .unwrap()
                .unwrap();
                if outcome == PutOutcome::Created {
                    out.push_str(&format!("{k} {size}\n"));
                }
            }
            std::fs::write(dir.join(format!("won-{id}")), out).unwrap();
        }
        "write" => {
            // Writes self-checking items until killed.
            std::fs::write(dir.join("started"), b"").unwrap();
            for i in 0u64.. {
                let k = key(&format!("k/{}", i % 64));
                let len = SIZES[(i as usize * 7919) % SIZES.len()];
                let value = checked_value(len, i as u8);
                let result = match i % 11 {
                    0 => block_on(true, b.delete(&k))
                        .unwrap()
                        .map(|()| PutOutcome::Created),
                    1 => block_on(true, b.put_if_absent(&k, value)).unwrap(),
                    _ => block_on(true, b.put(&k, value))
                        .unwrap()
                        .map(|()| PutOutcome::Created),
                };
                result.unwrap();
                if i % 16 == 0 {
                    block_on(true, b.get(&key(&format!("k/{}", i % 5))))
                        .unwrap()
                        .unwrap();
                }
            }
        }
        "claim" => {
            // Holds the claim of `claimed/1` until killed.
            let Some(Ok(ClaimAttempt::Held(_guard))) = b.try_claim(&key("claimed/1")) else {
                panic!("the child could not claim");
            };
            std::fs::write(dir.join("started"), b"").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        "misses" => {
            // Misses in a folder with no file, then finds what the parent wrote there.
            block_on(true, b.put(&key("own/x"), blob(vec![1; 10])))
                .unwrap()
                .unwrap();
            for i in 0..8 {
                let found = block_on(true, b.get(&key(&format!("fresh/{i}")))).unwrap();
                assert_eq!(found.unwrap(), None);
            }
            std::fs::write(dir.join("ready"), b"").unwrap();
            while !dir.join("go").exists() {
                std::thread::sleep(Duration::from_millis(1));
            }
            for i in 0..8usize {
                let found = block_on(true, b.get(&key(&format!("fresh/{i}"))))
                    .unwrap()
                    .unwrap();
                let size = if i % 2 == 0 { 10 } else { 100_000 };
                assert!(
                    found.as_deref() == Some(&vec![i as u8; size][..]),
                    "fresh/{i}: not what the parent wrote ({:?} bytes)",
                    found.map(|f| f.len())
                );
            }
        }
        "overwrite" => {
            // Writes over the parent's small item, then says so.
            block_on(true, b.put(&key("seen/x"), blob(vec![2; 10])))
                .unwrap()
                .unwrap();
            std::fs::write(dir.join("written"), b"").unwrap();
        }
        "grow" => {
            // Writes enough to make the index's map grow, several times.
            for i in 0..GROWN {
                block_on(true, b.put(&key(&format!("grown/{i}")), grown_value(i)))
                    .unwrap()
                    .unwrap();
            }
        }
        "fill" => {
            // Writes until the device is full, then reads back what was written: a write
            // through the index's map to a page with no block would kill the process instead.
            let value = |i: usize| vec![(i % 251) as u8; 20_000];
            let (mut written, mut refused) = (Vec::new(), 0);
            for i in 0..2_000 {
                match block_on(true, b.put(&key(&format!("fill/{i}")), blob(value(i)))).unwrap() {
                    Ok(()) => written.push(i),
                    Err(_) => refused += 1,
                }
                if refused >= 50 {
                    break;
                }
            }
            assert!(refused >= 50, "the device never filled");
            assert!(written.len() >= 100, "only {} items written", written.len());
            for &i in &written {
                let got = block_on(true, b.get(&key(&format!("fill/{i}"))))
                    .unwrap()
                    .unwrap();
                assert!(got.as_deref() == Some(&value(i)[..]), "fill/{i}");
            }
            println!("written {}, refused {refused}", written.len());
        }
        "umask" => {
            // Writes one small item with a `umask` that lets the group write new folders.
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o002));
            block_on(true, b.put(&key("f/x"), blob(b"small".to_vec())))
                .unwrap()
                .unwrap();
        }
        other => panic!("unknown child task {other}"),
    }
    true
}

/// Items of [`grown_value`] that a writer writes to make the index's map grow: 18 MB, more
/// than twice the map of a new index.
const GROWN: usize = 600;

/// The bytes of the item `i` of those that make the index's map grow.
fn grown_bytes(i: usize) -> Vec<u8> {
    vec![(i % 251) as u8; 30_000]
}

/// The item `i` of those that make the index's map grow.
fn grown_value(i: usize) -> Blob {
    blob(grown_bytes(i))
}

/// Fails unless every byte of the index's data file below `store` has blocks on the device.
fn assert_allocated(store: &Path) {
    use std::os::unix::fs::MetadataExt;
    let data = std::fs::metadata(store.join(".cachette-index/data.mdb")).unwrap();
    assert!(
        data.blocks() * 512 >= data.len(),
        "the data file has holes: {} bytes, {} blocks",
        data.len(),
        data.blocks()
    );
}

/// The sizes of the items the killed child writes: small (index) and large (files) ones.
const SIZES: [usize; 7] = [4, 10, 1000, 60_000, 65_536, 70_000, 300_000];

/// `len` bytes (at least 4): the length, then `fill` repeated.
fn checked_value(len: usize, fill: u8) -> Blob {
    let mut bytes = vec![fill; len];
    bytes[..4].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    blob(bytes)
}

/// Whether `bytes` are a whole value of [`checked_value`].
fn is_whole(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize == bytes.len()
        && SIZES.contains(&bytes.len())
        && bytes[4..]
            .iter()
            .all(|&b| b == bytes.get(4).copied().unwrap_or(0))
}

#[test]
fn child_task() {
    // Run by the tests below in a child process; does nothing as a test of its own.
    child_if_asked();
}

fn spawn_child(task: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_task", "--nocapture", "--test-threads=1"])
        .env(CHILD, task)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (at most a minute) until `child` makes the file `marker`; fails if it ends first.
fn wait_for_child(child: &mut std::process::Child, marker: &Path) {
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the child never made {}",
            marker.display()
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the child ended before making {}: {status}",
                marker.display()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn create_is_exactly_once_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4)
        .map(|id| spawn_child(&format!("race:{id}:{}", dir.path().display())))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.path().join("go"), b"").unwrap();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let mut winners: HashMap<usize, Vec<(u8, usize)>> = HashMap::new();
    for id in 0..4u8 {
        let won = std::fs::read_to_string(dir.path().join(format!("won-{id}"))).unwrap();
        for line in won.lines() {
            let (k, size) = line.split_once(' ').unwrap();
            winners
                .entry(k.parse().unwrap())
                .or_default()
                .push((id, size.parse().unwrap()));
        }
    }
    let b = open(&dir.path().join("store"));
    for k in 0..40 {
        let won = winners.get(&k).cloned().unwrap_or_default();
        assert_eq!(won.len(), 1, "race/{k}: {won:?}");
        let (id, size) = won[0];
        let stored = block_on(true, b.get(&key(&format!("race/{k}"))))
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            stored == vec![id; size],
            "race/{k}: the winner's value is not stored"
        );
    }
}

/// Two processes write at once, each making the index's map grow: each reads what the other
/// wrote past the end of its own map, and the data file never has a hole (a write through the
/// map to one would kill the process on a full device).
#[test]
fn the_map_grows_in_two_processes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let b = open(&store);
    block_on(true, b.put(&key("mine/first"), blob(vec![7; 10])))
        .unwrap()
        .unwrap();
    let mut child = spawn_child(&format!("grow:0:{}", dir.path().display()));
    for i in 0..GROWN {
        block_on(true, b.put(&key(&format!("mine/{i}")), grown_value(i)))
            .unwrap()
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    for i in 0..GROWN {
        for k in [format!("mine/{i}"), format!("grown/{i}")] {
            let got = block_on(true, b.get(&key(&k))).unwrap().unwrap().unwrap();
            assert!(got == grown_bytes(i), "{k}: not what was written");
        }
    }
    assert_eq!(
        block_on(true, b.get(&key("mine/first")))
            .unwrap()
            .unwrap()
            .as_deref(),
        Some(&[7u8; 10][..])
    );
    assert!(files_under(&store).iter().all(|f| f.starts_with(".")));
    assert_allocated(&store);
}

/// A data file that another program made longer (sparse: the blocks of the new length are not
/// allocated) is neither allocated nor mapped whole: the process that opens it writes with
/// `pwrite`, and its items are read and written as before. (It was allocated whole, whatever
/// its length: a file of a terabyte would have filled the device.)
#[test]
fn a_data_file_made_longer_by_another_program_is_not_allocated() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        block_on(true, b.put(&key("f/a"), blob(vec![1; 100])))
            .unwrap()
            .unwrap();
    }
    let data = dir.path().join(".cachette-index/data.mdb");
    let file = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len + (256 << 20)).unwrap();
    drop(file);
    let b = open(dir.path());
    assert_eq!(
        block_on(true, b.get(&key("f/a")))
            .unwrap()
            .unwrap()
            .as_deref(),
        Some(&[1u8; 100][..])
    );
    block_on(true, b.put(&key("f/b"), blob(vec![2; 100])))
        .unwrap()
        .unwrap();
    assert_eq!(
        block_on(true, b.get(&key("f/b")))
            .unwrap()
            .unwrap()
            .as_deref(),
        Some(&[2u8; 100][..])
    );
    let allocated = std::fs::metadata(&data).unwrap().blocks() * 512;
    assert!(
        allocated < 64 << 20,
        "{allocated} bytes of the data file were allocated"
    );
}

/// Reads on several threads go on, each finding what was written, while writes on others make
/// the index's map grow (which changes only while no transaction is under way).
#[test]
fn the_map_grows_while_other_threads_read() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(open(dir.path()));
    for i in 0..50u8 {
        block_on(true, b.put(&key(&format!("small/{i}")), blob(vec![i; 100])))
            .unwrap()
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (b, stop, reads) = (Arc::clone(&b), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..50u8 {
                        let got = block_on(true, b.get(&key(&format!("small/{i}"))))
                            .unwrap()
                            .unwrap();
                        assert_eq!(got.as_deref(), Some(&[i; 100][..]));
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                for i in (w..GROWN).step_by(2) {
                    block_on(true, b.put(&key(&format!("grown/{i}")), grown_value(i)))
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) >= 50);
    for i in 0..GROWN {
        let got = block_on(true, b.get(&key(&format!("grown/{i}"))))
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(got == grown_bytes(i), "grown/{i}");
    }
    assert!(files_under(dir.path()).iter().all(|f| f.starts_with(".")));
    assert_allocated(dir.path());
}

/// On a full device, writes fail with an error, and the process goes on: the index written
/// through its map never writes to a page without a block (which would kill it with
/// `SIGBUS`). Runs in a child with a private mount of a tmpfs of 12 MiB, which takes the
/// superuser (`unshare`); under `CI=true` it must be able to.
#[test]
fn a_full_device_fails_writes_and_kills_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let test = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs -o size=12m tmpfs '{}' && exec '{}' --exact child_task --nocapture --test-threads=1",
        mount.display(),
        test.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env(CHILD, format!("fill:0:{}", mount.display()))
        .output();
    let can_mount = out.as_ref().is_ok_and(|out| {
        !String::from_utf8_lossy(&out.stderr).contains("mount")
            || String::from_utf8_lossy(&out.stdout).contains("written")
    });
    if !can_mount && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("skipped: this test mounts a tmpfs, which takes the superuser and unshare");
        return;
    }
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("written"),
        "the child failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process that missed keys in a folder with no file, its registry open, finds the files
/// another process writes there afterwards.
#[test]
fn files_written_by_another_process_are_found_after_misses() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(&format!("misses:0:{}", dir.path().display()));
    wait_for_child(&mut child, &dir.path().join("ready"));
    let b = open(&dir.path().join("store"));
    for i in 0..8usize {
        let size = if i % 2 == 0 { 10 } else { 100_000 };
        block_on(
            true,
            b.put(&key(&format!("fresh/{i}")), blob(vec![i as u8; size])),
        )
        .unwrap()
        .unwrap();
    }
    std::fs::write(dir.path().join("go"), b"").unwrap();
    assert!(child.wait().unwrap().success());
}

/// A process reading an item over and over (its read transaction kept between reads) reads the
/// value another process writes over it as soon as that write is done.
#[test]
fn reads_see_another_process_write_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(&dir.path().join("store"));
    let k = key("seen/x");
    block_on(true, b.put(&k, blob(vec![1; 10])))
        .unwrap()
        .unwrap();
    let read = || block_on(true, b.get(&k)).unwrap().unwrap().unwrap();
    assert_eq!(read(), vec![1; 10]);
    let mut child = spawn_child(&format!("overwrite:0:{}", dir.path().display()));
    let written = dir.path().join("written");
    let start = Instant::now();
    loop {
        // Whether the write was done before this read began.
        let done = written.exists();
        let value = read();
        if done {
            assert_eq!(
                value,
                vec![2; 10],
                "a read after the write found the old value"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the child never wrote"
        );
    }
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_writer_killed_at_any_moment_leaves_whole_items() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..8 {
        let _ = std::fs::remove_file(dir.path().join("started"));
        let mut child = spawn_child(&format!("write:0:{}", dir.path().display()));
        wait_for_child(&mut child, &dir.path().join("started"));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(50 + rng % 400));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child stopped by itself: {status}"
        );

        let b = open(&store);
        let listed = block_on(true, b.list(&Prefix::root())).unwrap().unwrap();
        assert!(!listed.is_empty(), "round {round}: nothing was written");
        for i in 0..64 {
            let k = key(&format!("k/{i}"));
            if let Some(bytes) = block_on(true, b.get(&k)).unwrap().unwrap() {
                assert!(
                    is_whole(&bytes),
                    "round {round}: k/{i} is damaged ({} bytes)",
                    bytes.len()
                );
            }
        }
        for item in &listed {
            let bytes = block_on(true, b.get(&item.key)).unwrap().unwrap().unwrap();
            assert_eq!(bytes.len() as u64, item.size, "round {round}: {}", item.key);
        }
        // New writes work.
        for len in [10, 300_000] {
            let k = key(&format!("after/{round}-{len}"));
            block_on(true, b.put(&k, checked_value(len, 3)))
                .unwrap()
                .unwrap();
            assert!(is_whole(
                &block_on(true, b.get(&k)).unwrap().unwrap().unwrap()
            ));
        }
    }
}

#[test]
fn configuration() {
    cachette_fs::link();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("via-url");
    let url = format!("file://{}?layout=index&index_threshold=16", path.display());
    let config = FsConfig::from_url(&url).unwrap();
    assert_eq!(
        config,
        FsConfig::new(&path)
            .with_layout(Layout::Index)
            .with_index_threshold(16)
    );
    assert_eq!(
        FsConfig::new(&path).layout,
        Layout::Auto,
        "auto is the default"
    );
    assert_eq!(
        FsConfig::from_url(&format!("file://{}?layout=files", path.display()))
            .unwrap()
            .layout,
        Layout::Files
    );
    let backend = backend_from_url(&url).unwrap();
    assert_eq!(backend.scheme(), "file");
    assert!(!path.exists(), "building a backend creates nothing");
    assert!(
        FsConfig::new(&path).index_write_map,
        "written through the map by default"
    );
    let no_map = format!("file://{}?index_write_map=false", path.display());
    assert!(!FsConfig::from_url(&no_map).unwrap().index_write_map);
    for bad in [
        format!("file://{}?layout=tree", path.display()),
        format!("file://{}?index_threshold=lots", path.display()),
        format!("file://{}?index_write_map=maybe", path.display()),
    ] {
        let e = FsConfig::from_url(&bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConfigInvalid, "{bad}: {e}");
    }
    let e = config
        .clone()
        .with_index_threshold(1 << 30)
        .open()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConfigInvalid, "{e}");
    // A map larger than the address space was accepted, and every operation of the index
    // then failed (`ENOMEM`).
    for bad in [u64::MAX, 1 << 50] {
        let url = format!("file://{}?index_map_size={bad}", path.display());
        let e = FsConfig::from_url(&url).unwrap().open().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConfigInvalid, "{bad}: {e}");
        assert!(e.to_string().contains("index_map_size"), "{e}");
    }

    let text = "type = \"file\"\npath = \"/var/cache/x\"\nlayout = \"index\"\n";
    let config: Box<dyn BackendConfig> = toml::from_str(text).unwrap();
    let back = toml::to_string(&config).unwrap();
    assert!(back.contains("layout = \"index\""), "{back}");
    let parsed: FsConfig =
        toml::from_str("path = \"/x\"\nlayout = \"index\"\nindex_threshold = 1024\n").unwrap();
    assert_eq!(
        parsed,
        FsConfig::new("/x")
            .with_layout(Layout::Index)
            .with_index_threshold(1024)
    );
    let bad: Result<FsConfig, _> = toml::from_str("path = \"/x\"\nlayout = \"tree\"\n");
    assert!(bad.is_err());
}

fn is_held(attempt: Option<cachette_core::plugin::BackendResult<ClaimAttempt>>) -> bool {
    match attempt {
        Some(Ok(ClaimAttempt::Held(_))) => true,
        Some(Ok(ClaimAttempt::Busy)) => false,
        other => panic!("no claim: {other:?}"),
    }
}

/// Claims of the index layout are locks: one holder per key among the handles and threads of
/// a process, released when dropped, and nothing written that a listing shows.
#[test]
fn claims_exclude_each_other_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()), open(dir.path()));
    let k = key("claimed/1");
    let Some(Ok(ClaimAttempt::Held(held))) = a.try_claim(&k) else {
        panic!("the first claim holds");
    };
    assert!(!is_held(a.try_claim(&k)), "not twice, even by its holder");
    assert!(!is_held(b.try_claim(&k)), "nor by another store");
    std::thread::scope(|s| {
        assert!(!s.spawn(|| is_held(b.try_claim(&k))).join().unwrap());
    });
    assert!(
        is_held(b.try_claim(&key("claimed/2"))),
        "another key is free"
    );
    drop(held);
    let Some(Ok(ClaimAttempt::Held(again))) = b.try_claim(&k) else {
        panic!("released when dropped");
    };
    assert!(!is_held(a.try_claim(&k)));
    drop(again);
    let listed = block_on(true, b.list(&Prefix::root())).unwrap().unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    // The files layout has no such locks: its claims are items.
    let files = FsConfig::new(dir.path().join("files"))
        .with_layout(Layout::Files)
        .open()
        .unwrap();
    assert!(files.try_claim(&k).is_none());
}

/// A claim held by a process is seen by the others, and released by its death (`kill -9`),
/// with no lease to run out.
#[test]
fn a_killed_holder_releases_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(&format!("claim:0:{}", dir.path().display()));
    wait_for_child(&mut child, &dir.path().join("started"));
    let b = open(&dir.path().join("store"));
    let k = key("claimed/1");
    assert!(!is_held(b.try_claim(&k)), "the child holds it");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(is_held(b.try_claim(&k)), "its death released it");
}

/// The lock file is never reached through a link.
#[test]
fn claims_refuse_a_linked_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    block_on(true, b.put(&key("a/b"), blob(vec![1; 8])))
        .unwrap()
        .unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, b"").unwrap();
    std::os::unix::fs::symlink(
        &target,
        dir.path().join(".cachette-index").join("claims.lock"),
    )
    .unwrap();
    let fresh = open(dir.path());
    match fresh.try_claim(&key("a/b")) {
        Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}"),
        other => panic!("a link was followed: {other:?}"),
    }
}

/// LMDB opens the index's files by their paths and follows links: a planted `lock.mdb` link
/// made the first read of a store truncate and write the file it named, outside the store.
/// Neither file is opened when it is a link, in any layout.
#[test]
fn the_index_files_are_never_reached_through_links() {
    for (linked, other) in [("lock.mdb", "data.mdb"), ("data.mdb", "lock.mdb")] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let index = store.join(".cachette-index");
        std::fs::create_dir_all(&index).unwrap();
        std::fs::write(index.join(other), b"").unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, index.join(linked)).unwrap();
        for config in [config(&store), FsConfig::new(&store)] {
            let b = config.open().unwrap();
            let refused = |e: cachette_core::plugin::BackendError| {
                assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
            };
            block_on(true, async {
                b.get(&key("f/x"))
                    .await
                    .map(|_| ())
                    .map_err(refused)
                    .unwrap_err();
                b.list(&Prefix::root())
                    .await
                    .map(|_| ())
                    .map_err(refused)
                    .unwrap_err();
                b.put(&key("f/y"), blob(vec![1; 8]))
                    .await
                    .map(|_| ())
                    .map_err(refused)
                    .unwrap_err();
            })
            .unwrap();
            assert_eq!(std::fs::read(&victim).unwrap(), b"keep", "{linked}");
        }
    }
}

/// A data file that is empty (as a process making the index leaves it for a moment), shorter
/// than an index's two first pages (a copy that ran out of room) or no index at all: a read
/// made a new index in the empty one, and the others failed every call. Now a read writes neither; a write
/// makes the empty one an index, and takes the files layout beside the short one.
#[test]
fn a_read_never_makes_an_empty_data_file_an_index() {
    for layout in [Layout::Index, Layout::Auto] {
        for len in [0, 100, 8191, 3 * 4096] {
            let dir = tempfile::tempdir().unwrap();
            let index = dir.path().join(".cachette-index");
            std::fs::create_dir(&index).unwrap();
            let data = index.join("data.mdb");
            std::fs::File::create(&data).unwrap().set_len(len).unwrap();
            let b = FsConfig::new(dir.path())
                .with_layout(layout)
                .open()
                .unwrap();
            block_on(true, async {
                assert_eq!(b.get(&key("f/x")).await.unwrap(), None);
                assert!(b.list(&Prefix::root()).await.unwrap().is_empty());
            })
            .unwrap();
            assert_eq!(std::fs::metadata(&data).unwrap().len(), len, "a read wrote");
            block_on(true, b.put(&key("f/x"), blob(vec![3; 8])))
                .unwrap()
                .unwrap();
            let got = block_on(true, b.get(&key("f/x"))).unwrap().unwrap();
            assert_eq!(got.as_deref(), Some(&[3u8; 8][..]));
            let as_file = dir.path().join("f/x").is_file();
            assert_eq!(as_file, len != 0, "{layout:?} {len}");
            if len != 0 {
                assert_eq!(std::fs::metadata(&data).unwrap().len(), len, "written over");
            }
        }
    }
}

/// An index whose data file was cut short (a copy that ran out of room) is refused when a
/// process opens it, not read past its end (which kills the process with `SIGBUS`): reads find
/// nothing, writes go to files, and the index's files are left as they are.
#[test]
fn an_index_cut_short_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<Key> = (0..3000).map(|i| key(&format!("f/{i:05}"))).collect();
    {
        let b = open(dir.path());
        for k in &keys {
            block_on(true, b.put(k, blob(vec![7; 300])))
                .unwrap()
                .unwrap();
        }
    }
    // Far shorter than the pages in use (about 1 MB), whatever room the file has past them.
    let data = dir.path().join(".cachette-index/data.mdb");
    let len = 64 << 10;
    assert!(std::fs::metadata(&data).unwrap().len() > 16 * len);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len)
        .unwrap();

    let b = open(dir.path());
    for k in keys.iter().rev() {
        assert_eq!(block_on(true, b.get(k)).unwrap().unwrap(), None, "{k}");
    }
    let k = key("f/new");
    block_on(true, b.put(&k, blob(vec![1; 10])))
        .unwrap()
        .unwrap();
    assert_eq!(
        block_on(true, b.get(&k)).unwrap().unwrap().as_deref(),
        Some(&[1u8; 10][..])
    );
    assert!(dir.path().join("f/new").is_file(), "stored as a file");
    assert_eq!(
        std::fs::metadata(&data).unwrap().len(),
        len,
        "left as it was"
    );
}

/// The default layout ([`Layout::Auto`]) keeps small items in an index in a store only its user
/// may write, with the index's folder writable by that user alone.
#[test]
fn the_default_layout_indexes_a_store_that_is_yours_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let b = FsConfig::new(&root).open().unwrap();
    block_on(true, async {
        b.put(&key("f/x"), blob(b"small".to_vec())).await.unwrap();
        let got = b.get(&key("f/x")).await.unwrap().unwrap();
        assert_eq!(&got[..], b"small");
    })
    .unwrap();
    assert!(root.join(".cachette-index/data.mdb").is_file());
    assert!(!root.join("f/x").exists(), "a small item is no file");
    let mode = std::fs::metadata(root.join(".cachette-index"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o022, 0, "{mode:o}");
}

/// The index's folder is writable by its owner only whatever the `umask`, where the store's own
/// folder follows it (a process of its own: the `umask` is the process's).
#[test]
fn the_index_folder_is_its_owners_alone_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let status = spawn_child(&format!("umask:0:{}", dir.path().display()))
        .wait()
        .unwrap();
    assert!(status.success());
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let store = dir.path().join("store");
    assert_eq!(mode(&store), 0o775, "the store's folder follows the umask");
    assert_eq!(mode(&store.join(".cachette-index")), 0o755);
}

/// A store that other users may write keeps the files layout by default: no index is made.
#[test]
fn the_default_layout_keeps_files_where_others_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o757)).unwrap();
    let b = FsConfig::new(&root).open().unwrap();
    block_on(true, async {
        b.put(&key("f/x"), blob(b"small".to_vec())).await.unwrap();
        b.put(&key("f/y"), blob(b"small".to_vec())).await.unwrap();
        assert_eq!(&b.get(&key("f/x")).await.unwrap().unwrap()[..], b"small");
    })
    .unwrap();
    assert!(!root.join(".cachette-index").exists());
    assert!(root.join("f/x").is_file() && root.join("f/y").is_file());
}

/// A store in `dir` with an index that holds `f/x` (`small`): its folder and its index's.
fn store_with_an_index(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("store");
    block_on(true, async {
        open(&root)
            .put(&key("f/x"), blob(b"small".to_vec()))
            .await
            .unwrap();
    })
    .unwrap();
    let index = root.join(".cachette-index");
    (root, index)
}

/// The default layout never reads an index that another user may write: every operation on the
/// store is an error that says why (a read past it could return an item it replaced). The
/// index layout, asked for, trusts it.
#[test]
fn the_default_layout_does_not_read_an_index_others_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (root, index) = store_with_an_index(dir.path());
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let refused = |what: &str| {
        let b = FsConfig::new(&root).open().unwrap();
        block_on(true, async {
            let e = b.get(&key("f/x")).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{what}: {e}");
            assert!(e.to_string().contains("another user"), "{what}: {e}");
            let e = b.put(&key("f/z"), blob(b"z".to_vec())).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{what}: {e}");
            assert!(b.list(&Prefix::root()).await.is_err(), "{what}");
            // Asked for, the index layout reads it.
            let got = open(&root).get(&key("f/x")).await.unwrap().unwrap();
            assert_eq!(&got[..], b"small", "{what}");
        })
        .unwrap();
    };
    set(&index.join("data.mdb"), 0o646);
    refused("data.mdb writable by others");
    set(&index.join("data.mdb"), 0o600);
    set(&index.join("lock.mdb"), 0o606);
    refused("lock.mdb writable by others");
    set(&index.join("lock.mdb"), 0o600);
    set(&index, 0o757);
    refused("its folder writable by others");
    set(&index, 0o755);
    // Another owner (only the superuser can give a file away).
    if std::os::unix::fs::chown(index.join("data.mdb"), Some(4242), None).is_ok() {
        refused("data.mdb of another user");
        std::os::unix::fs::chown(index.join("data.mdb"), Some(0), None).unwrap();
    }
    let b = FsConfig::new(&root).open().unwrap();
    block_on(true, async {
        let got = b.get(&key("f/x")).await.unwrap().unwrap();
        assert_eq!(&got[..], b"small", "yours alone again");
    })
    .unwrap();
}

/// Gives `path` a POSIX access ACL that lets user 4242 write it (read, write and search for
/// the owner and the owning group, nothing for others): its mode's group bits become the
/// mask, which allows writing.
fn let_another_user_write(path: &Path) {
    const ANY: u32 = u32::MAX;
    let mut value = 2u32.to_le_bytes().to_vec();
    // Owner, user 4242, owning group, mask, others: tag, permissions, id.
    for (tag, perm, id) in [
        (0x01u16, 7u16, ANY),
        (0x02, 7, 4242),
        (0x04, 7, ANY),
        (0x10, 7, ANY),
        (0x20, 0, ANY),
    ] {
        value.extend(tag.to_le_bytes());
        value.extend(perm.to_le_bytes());
        value.extend(id.to_le_bytes());
    }
    rustix::fs::setxattr(
        path,
        "system.posix_acl_access",
        &value,
        rustix::fs::XattrFlags::empty(),
    )
    .expect("this file system keeps POSIX ACLs");
}

/// Whether the default layout makes an index in a store whose folder its owning group may
/// write (mode 0770): it does when that group is the user's private group.
fn group_writable_store_gets_an_index(root: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(root).unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o770)).unwrap();
    let b = FsConfig::new(root).open().unwrap();
    block_on(true, async {
        b.put(&key("f/x"), blob(b"small".to_vec())).await.unwrap();
    })
    .unwrap();
    root.join(".cachette-index").exists()
}

/// A store whose access control list lets another user write it keeps the files layout by
/// default, though its mode alone would make it the user's (a group-writable folder of the
/// user's private group): a lab's shared folder with a default ACL gives one to every store
/// made in it.
#[test]
fn the_default_layout_keeps_files_where_an_acl_lets_others_write() {
    let dir = tempfile::tempdir().unwrap();
    if !group_writable_store_gets_an_index(&dir.path().join("mine")) {
        eprintln!(
            "skipped: this user has no private group, so a group-writable store has no index anyway"
        );
        return;
    }
    let root = dir.path().join("acl");
    std::fs::create_dir(&root).unwrap();
    let_another_user_write(&root);
    let b = FsConfig::new(&root).open().unwrap();
    block_on(true, async {
        b.put(&key("f/x"), blob(b"small".to_vec())).await.unwrap();
        assert_eq!(&b.get(&key("f/x")).await.unwrap().unwrap()[..], b"small");
    })
    .unwrap();
    assert!(!root.join(".cachette-index").exists());
    assert!(root.join("f/x").is_file());
}

/// The default layout refuses an index whose folder or files have an access control list that
/// lets another user write them, as it refuses one their mode lets others write.
#[test]
fn the_default_layout_does_not_read_an_index_an_acl_lets_others_write() {
    let dir = tempfile::tempdir().unwrap();
    let (root, index) = store_with_an_index(dir.path());
    for what in ["data.mdb", "lock.mdb", ""] {
        let path = if what.is_empty() {
            index.clone()
        } else {
            index.join(what)
        };
        let saved = std::fs::metadata(&path).unwrap().permissions();
        let_another_user_write(&path);
        let b = FsConfig::new(&root).open().unwrap();
        block_on(true, async {
            let e = b.get(&key("f/x")).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{what}: {e}");
            assert!(e.to_string().contains("user 4242"), "{what}: {e}");
        })
        .unwrap();
        drop(b);
        rustix::fs::removexattr(&path, "system.posix_acl_access").unwrap();
        std::fs::set_permissions(&path, saved).unwrap();
    }
    let b = FsConfig::new(&root).open().unwrap();
    block_on(true, async {
        let got = b.get(&key("f/x")).await.unwrap().unwrap();
        assert_eq!(&got[..], b"small", "yours alone again");
    })
    .unwrap();
}

/// An item written for a local file (`PutOptions::local_file`, entries that hold arrays) is a
/// file however small, so that it can be mapped; it replaces the index's item of its key.
#[test]
fn an_item_for_a_local_file_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let b = open(&root);
    let k = key("f/arrays");
    block_on(true, async {
        b.put(&k, blob(b"in the index".to_vec())).await.unwrap();
        assert!(!root.join("f/arrays").exists());
        let options = PutOptions::default().with_local_file(true);
        b.put_opts(&k, blob(b"a file".to_vec()), options)
            .await
            .unwrap();
        assert_eq!(std::fs::read(root.join("f/arrays")).unwrap(), b"a file");
        let found = b
            .get_opts(&k, GetOptions::default().with_local_file(true))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(found.payload, GetPayload::File(_)));
        assert_eq!(&b.get(&k).await.unwrap().unwrap()[..], b"a file");
    })
    .unwrap();
}
