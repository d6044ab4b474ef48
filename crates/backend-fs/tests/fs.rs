//! The local-disk backend in the files layout against the conformance suite, plus its own
//! promises.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use cachette_core::plugin::{
    BackendConfig, Bytes, ErrorKind, GetOptions, GetPayload, Key, Prefix, PutOptions, PutOutcome,
    StoreBackend, StoreBackendExt, backend_from_url, config_from_url, owner_tag, testkit,
};
use cachette_fs::{FsBackend, FsConfig, Layout};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    testkit::run_all(Arc::new(files_store(dir.path()))).await;
}

/// The configuration of a store in `path` in the files layout, the one these tests are about
/// (the index layout has its own tests).
fn files_config(path: &Path) -> FsConfig {
    FsConfig::new(path).with_layout(Layout::Files)
}

/// A store in `path` in the files layout.
fn files_store(path: impl AsRef<Path>) -> FsBackend {
    files_config(path.as_ref()).open().unwrap()
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn value(v: &'static [u8]) -> cachette_core::plugin::Blob {
    Bytes::from_static(v).into()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn layout_is_readable_and_ignored_by_git() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let b = files_store(&root);
    assert!(!root.exists(), "opening a store creates nothing");

    b.put(&key("my_crate.load/0123abcd"), value(b"v"))
        .await
        .unwrap();
    // The write created the root: its .gitignore covers everything, folders need none.
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l == "*"), "{gitignore}");
    assert_eq!(names(&root.join("my_crate.load")), ["0123abcd"]);
    assert_eq!(
        std::fs::read(root.join("my_crate.load").join("0123abcd")).unwrap(),
        b"v"
    );
    let found = b
        .get_opts(
            &key("my_crate.load/0123abcd"),
            GetOptions::default().with_local_file(true),
        )
        .await
        .unwrap()
        .unwrap();
    let GetPayload::File(local) = found.payload else {
        panic!("a local file was asked for");
    };
    assert_eq!(
        local.path,
        root.canonicalize().unwrap().join("my_crate.load/0123abcd")
    );
    assert!(local.file.metadata().unwrap().is_file());
    // The .gitignore is not an item, and survives clearing everything.
    let listed = b.list(&Prefix::root()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(b.delete_prefix(&Prefix::root()).await.unwrap(), 1);
    assert_eq!(names(&root), [".gitignore"], "emptied folders are removed");
}

#[tokio::test]
async fn an_existing_folder_gets_a_gitignore_only_in_the_folders_made_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("existing")).unwrap();
    std::fs::write(project.join("README"), b"mine").unwrap();
    let b = files_store(&project);

    b.put(&key("f/x"), value(b"1")).await.unwrap();
    b.put(&key("f/sub/y"), value(b"2")).await.unwrap();
    b.put(&key("existing/z"), value(b"3")).await.unwrap();
    assert!(
        !project.join(".gitignore").exists(),
        "an existing folder is never given a .gitignore"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("f/.gitignore")).unwrap(),
        "# Created by cachette: this folder is a cache.\n*\n"
    );
    assert!(!project.join("f/sub/.gitignore").exists());
    assert!(!project.join("existing/.gitignore").exists());

    let mut listed: Vec<String> = b
        .list(&Prefix::root())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key.to_string())
        .collect();
    listed.sort();
    // Every regular file is an item (the README too); the .gitignore is not.
    assert_eq!(listed, ["README", "existing/z", "f/sub/y", "f/x"]);

    // A key that names a folder is no item: not found, and not deleted.
    assert_eq!(b.get(&key("existing")).await.unwrap(), None);
    let e = b.delete(&key("existing")).await.unwrap_err();
    assert!(e.to_string().contains("is a folder"), "{e}");
    assert!(project.join("existing/z").exists());

    // Deleting the items of a folder the store made removes it, its .gitignore included.
    b.delete_many(&[key("f/x"), key("f/sub/y")]).await.unwrap();
    assert!(!project.join("f").exists());
    assert_eq!(std::fs::read(project.join("README")).unwrap(), b"mine");
    assert!(project.exists());

    // A .gitignore that is not the store's own keeps its folder.
    b.put(&key("g/x"), value(b"1")).await.unwrap();
    std::fs::write(project.join("g/.gitignore"), b"*\n!keep\n").unwrap();
    b.delete(&key("g/x")).await.unwrap();
    assert_eq!(names(&project.join("g")), [".gitignore"]);
}

#[tokio::test]
async fn reads_never_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/cache");
    // The default layout and the files layout.
    for b in [FsBackend::new(&root).unwrap(), files_store(&root)] {
        let k = key("f/x");
        assert_eq!(b.get(&k).await.unwrap(), None);
        assert_eq!(b.head(&k).await.unwrap(), None);
        assert_eq!(b.get_range(&k, 0..4).await.unwrap(), None);
        assert!(!b.contains(&k).await.unwrap());
        assert!(
            b.get_opts(&k, GetOptions::hit().with_local_file(true))
                .await
                .unwrap()
                .is_none()
        );
        assert!(b.list(&Prefix::root()).await.unwrap().is_empty());
        assert!(b.list(&Prefix::new("f").unwrap()).await.unwrap().is_empty());
        assert_eq!(b.sweep(&Prefix::root()).await.unwrap(), 0);
        b.delete(&k).await.unwrap();
        assert_eq!(b.delete_prefix(&Prefix::root()).await.unwrap(), 0);
    }
    let built = FsConfig::new(&root).build().unwrap();
    assert!(built.list(&Prefix::root()).await.unwrap().is_empty());
    assert!(!dir.path().join("a").exists(), "a read created a folder");

    // An existing store: reading a function that has no folder creates none.
    std::fs::create_dir_all(&root).unwrap();
    for b in [FsBackend::new(&root).unwrap(), files_store(&root)] {
        assert_eq!(b.get(&key("f/x")).await.unwrap(), None);
        assert!(
            b.list(&Prefix::new("f/g").unwrap())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(names(&root).is_empty(), "{:?}", names(&root));
    }
}

#[test]
fn keys_cannot_escape_the_location() {
    for bad in [
        "../outside",
        "a/../../b",
        "/etc/passwd",
        "a\0b",
        "a\\b",
        "",
        "a//b",
        "./a",
    ] {
        let e = Key::new(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidKey, "{bad:?}");
        assert!(e.to_string().contains("refused"), "{e}");
    }
}

#[tokio::test]
async fn reserved_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = files_store(dir.path());
    b.put(&key("f/x"), value(b"v")).await.unwrap();
    let deep = vec!["d"; 65].join("/");
    for bad in [
        ".gitignore",
        "f/.gitignore",
        ".gitignore/x",
        "f/.cachette-tmp-1-2-x",
        ".cachette-index",
        "f.g/.cachette-index/x",
        &deep,
    ] {
        let e = b.put(&key(bad), value(b"v")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidKey, "{bad}: {e}");
        let e = b.get(&key(bad)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidKey, "{bad}: {e}");
        let e = b.delete(&key(bad)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidKey, "{bad}: {e}");
    }
    // Names that only resemble reserved ones are fine.
    for fine in [
        "f/a.gitignore",
        "f/.gitignore.x",
        "f.cachette-index/x",
        ".f/x",
    ] {
        b.put(&key(fine), value(b"v")).await.unwrap();
        assert!(b.get(&key(fine)).await.unwrap().is_some(), "{fine}");
    }
    // 64 segments are fine, and listed.
    let deepest = vec!["d"; 64].join("/");
    b.put(&key(&deepest), value(b"v")).await.unwrap();
    let listed = b.list(&Prefix::new("d").unwrap()).await.unwrap();
    assert_eq!(listed.len(), 1);
    // The real .gitignores are untouched.
    assert!(!dir.path().join(".gitignore").exists());
    assert!(
        std::fs::read_to_string(dir.path().join("f/.gitignore"))
            .unwrap()
            .contains('*')
    );
}

/// The name of a temporary file of writer `pid` of host `tag`.
fn temp_name(tag: &str, pid: u32, item: &str) -> String {
    format!(".cachette-tmp-{tag}.{pid}-0-{item}")
}

/// The process id of a process that has finished.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[tokio::test]
async fn list_writes_nothing_and_sweep_removes_only_abandoned_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let b = files_store(dir.path());
    b.put(&key("f/item"), value(b"v")).await.unwrap();
    let folder = dir.path().join("f");
    let dead = folder.join(temp_name(owner_tag(), dead_pid(), "item"));
    let live = folder.join(temp_name(owner_tag(), std::process::id(), "item"));
    let other_host = folder.join(temp_name("00000000", 1, "item"));
    let old = folder.join(temp_name("00000000", 2, "item"));
    for path in [&dead, &live, &other_host, &old] {
        std::fs::write(path, b"partial").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();

    let listed = b.list(&Prefix::new("f").unwrap()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key.as_str(), "f/item");
    for path in [&dead, &live, &other_host, &old] {
        assert!(path.exists(), "list removed {}", path.display());
    }

    // Elsewhere: nothing to sweep.
    assert_eq!(b.sweep(&Prefix::new("g").unwrap()).await.unwrap(), 0);
    assert!(dead.exists());
    // A writer of this host that is gone, and a temporary file older than an hour, are
    // leftovers; a live writer's and another host's recent one are not.
    assert_eq!(b.sweep(&Prefix::root()).await.unwrap(), 2);
    assert!(!dead.exists());
    assert!(!old.exists());
    assert!(live.exists());
    assert!(other_host.exists());
    assert_eq!(
        b.get(&key("f/item")).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

/// A folder whose entries take many reads of the folder (long names, thousands of them) is
/// listed whole, nested folders included, and swept there too.
#[tokio::test]
async fn large_folders_are_listed_and_swept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let b = files_store(dir.path());
    let long = "n".repeat(200);
    let mut keys: Vec<String> = (0..1500).map(|i| format!("f/{long}{i:04}")).collect();
    keys.push(format!("f/g/{long}"));
    keys.push("h".to_owned());
    for k in &keys {
        b.put(&key(k), value(b"v")).await.unwrap();
    }
    let dead = dir
        .path()
        .join("f/g")
        .join(temp_name(owner_tag(), dead_pid(), "item"));
    std::fs::write(&dead, b"partial").unwrap();

    let mut listed: Vec<String> = b
        .list(&Prefix::root())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key.as_str().to_owned())
        .collect();
    listed.sort();
    keys.sort();
    assert_eq!(listed, keys);
    assert_eq!(b.sweep(&Prefix::new("f").unwrap()).await.unwrap(), 1);
    assert!(!dead.exists());
    assert_eq!(b.list(&Prefix::new("f/g").unwrap()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn delete_many_spares_the_temporary_files_of_live_writers() {
    let dir = tempfile::tempdir().unwrap();
    let b = files_store(dir.path());
    for k in ["f/a", "f/b", "g/c"] {
        b.put(&key(k), value(b"v")).await.unwrap();
    }
    // A writer of this process is half-way through writing f/new.
    let temp = dir
        .path()
        .join("f")
        .join(temp_name(owner_tag(), std::process::id(), "new"));
    std::fs::write(&temp, b"new value").unwrap();

    let keys: Vec<Key> = b
        .list(&Prefix::root())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(keys.len(), 3);
    b.delete_many(&keys).await.unwrap();
    assert!(temp.exists(), "delete_many removed a live writer's file");
    assert!(!dir.path().join("g").exists(), "an emptied folder stays");
    // The writer publishes its item.
    std::fs::rename(&temp, dir.path().join("f/new")).unwrap();
    assert_eq!(
        b.get(&key("f/new")).await.unwrap().as_deref(),
        Some(&b"new value"[..])
    );
    assert!(dir.path().exists(), "the root is never removed");
}

fn assert_link_refused(e: &cachette_core::plugin::BackendError, path: &Path) {
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let text = e.to_string();
    assert!(text.contains("symbolic link"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[tokio::test]
async fn a_folder_planted_as_a_link_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x"), b"secret").unwrap();
    let root = root.canonicalize().unwrap();
    symlink(&outside, root.join("f")).unwrap();
    let b = files_store(&root);
    let link = root.join("f");

    for put in [
        b.put(&key("f/y"), value(b"v"))
            .await
            .map(|()| PutOutcome::Created),
        b.put_if_absent(&key("f/y"), value(b"v")).await,
        b.put(&key("f/sub/y"), value(b"v"))
            .await
            .map(|()| PutOutcome::Created),
    ] {
        assert_link_refused(&put.unwrap_err(), &link);
    }
    assert_eq!(names(&outside), ["x"], "a write went through the link");

    assert_link_refused(&b.get(&key("f/x")).await.unwrap_err(), &link);
    assert_link_refused(&b.head(&key("f/x")).await.unwrap_err(), &link);
    assert_link_refused(&b.delete(&key("f/x")).await.unwrap_err(), &link);
    assert_link_refused(
        &b.list(&Prefix::new("f").unwrap()).await.unwrap_err(),
        &link,
    );
    // Listing the whole store skips the link; sweeping it removes nothing through it.
    assert!(b.list(&Prefix::root()).await.unwrap().is_empty());
    std::fs::write(outside.join(temp_name(owner_tag(), dead_pid(), "x")), b"").unwrap();
    assert_eq!(b.sweep(&Prefix::root()).await.unwrap(), 0);
    assert_eq!(names(&outside).len(), 2);
    assert_eq!(std::fs::read(outside.join("x")).unwrap(), b"secret");

    // A link deeper down, and a link where an item is expected.
    b.put(&key("g/item"), value(b"v")).await.unwrap();
    symlink(&outside, root.join("g/sub")).unwrap();
    symlink(outside.join("x"), root.join("g/x")).unwrap();
    assert_link_refused(
        &b.put(&key("g/sub/x"), value(b"v")).await.unwrap_err(),
        &root.join("g/sub"),
    );
    assert_link_refused(&b.get(&key("g/x")).await.unwrap_err(), &root.join("g/x"));
    assert_link_refused(
        &b.get_opts(&key("g/x"), GetOptions::hit().with_local_file(true))
            .await
            .unwrap_err(),
        &root.join("g/x"),
    );
    let listed = b.list(&Prefix::new("g").unwrap()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Deleting the key removes the link, not what it names.
    b.delete(&key("g/x")).await.unwrap();
    assert!(root.join("g/item").exists());
    assert_eq!(std::fs::read(outside.join("x")).unwrap(), b"secret");
    // The store's own folder may be a link.
    let alias = dir.path().join("alias");
    symlink(&root, &alias).unwrap();
    let through = files_store(&alias);
    assert_eq!(
        through.get(&key("g/item")).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_swapped_for_a_link_during_delete_many_deletes_nothing_outside() {
    const ITEMS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    for i in 0..ITEMS {
        std::fs::write(outside.join(format!("k{i}")), b"keep").unwrap();
    }
    let b = files_store(&root);
    let keys: Vec<Key> = (0..ITEMS).map(|i| key(&format!("f/sub/k{i}"))).collect();
    b.put(&key("f/anchor"), value(b"v")).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, sub, outside) = (stop.clone(), root.join("f/sub"), outside.clone());
        let real = root.join("f/sub.real");
        std::thread::spawn(move || {
            let mut swaps = 0;
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if std::fs::rename(&sub, &real).is_ok() {
                    let _ = symlink(&outside, &sub);
                    std::thread::yield_now();
                    let _ = std::fs::remove_file(&sub);
                    let _ = std::fs::rename(&real, &sub);
                    swaps += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            swaps
        })
    };
    for _ in 0..40 {
        for k in &keys {
            // A write may meet the link too, and is refused: fine.
            let _ = b.put(k, value(b"v")).await;
        }
        // Errors are expected when the link is met; deleting outside never.
        let _ = b.delete_many(&keys).await;
        assert_eq!(
            names(&outside).len(),
            ITEMS,
            "delete_many deleted outside the store"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the folder was never swapped");
    for i in 0..ITEMS {
        assert_eq!(
            std::fs::read(outside.join(format!("k{i}"))).unwrap(),
            b"keep"
        );
    }
    assert!(root.join("f/anchor").exists());
}

/// Makes a named pipe at `path`.
fn make_fifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
}

#[tokio::test]
async fn a_named_pipe_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(files_store(dir.path()));
    b.put(&key("f/item"), value(b"v")).await.unwrap();
    let pipe = dir.path().join("f/pipe");
    make_fifo(&pipe);

    let (tx, rx) = std::sync::mpsc::channel();
    let reader = b.clone();
    std::thread::spawn(move || {
        let k = key("f/pipe");
        let results = cachette_core::plugin::block_on(true, async {
            vec![
                reader.get(&k).await.map(|_| ()),
                reader.head(&k).await.map(|_| ()),
                reader.get_range(&k, 0..1).await.map(|_| ()),
                reader
                    .get_opts(&k, GetOptions::default().with_local_file(true))
                    .await
                    .map(|_| ()),
                reader.contains(&k).await.map(|_| ()),
            ]
        })
        .unwrap();
        let _ = tx.send(results);
    });
    let results = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a read of a named pipe blocked");
    for result in results {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Other, "{e}");
        assert!(e.to_string().contains("named pipe"), "{e}");
        assert!(e.to_string().contains(&pipe.display().to_string()), "{e}");
    }
    let listed = b.list(&Prefix::root()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
}

/// Reads whole, with and without an access to record, around the size read in one call
/// without asking the file's size (4096 bytes), and of an item swapped behind the backend's
/// back once its access was recorded (the read that follows asks nothing of the file first).
#[tokio::test]
async fn small_reads_see_what_is_there_now() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(files_store(dir.path()));
    let k = key("f/x");
    let path = dir.path().join("f/x");
    for len in [0usize, 1, 300, 4095, 4096, 4097, 100_000] {
        let v: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        b.put(&k, Bytes::from(v.clone()).into()).await.unwrap();
        for options in [GetOptions::hit(), GetOptions::hit(), GetOptions::default()] {
            let got = b.get_opts(&k, options).await.unwrap().unwrap();
            assert_eq!(got.into_bytes().unwrap(), v, "{len} bytes");
        }
        // Written again behind the backend's back, shorter: the new bytes, none of the old.
        std::fs::write(&path, b"new").unwrap();
        let got = b.get_opts(&k, GetOptions::hit()).await.unwrap().unwrap();
        assert_eq!(got.into_bytes().unwrap(), &b"new"[..], "{len} bytes");
    }

    // A folder is no item.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(b.get_opts(&k, GetOptions::hit()).await.unwrap().is_none());
    std::fs::remove_dir(&path).unwrap();

    // A link is refused, never followed.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    symlink(outside.path().join("secret"), &path).unwrap();
    let e = b.get_opts(&k, GetOptions::hit()).await.unwrap_err();
    assert_link_refused(&e, &path);
    std::fs::remove_file(&path).unwrap();

    // A named pipe, with a writer at the other end or none, is refused without blocking.
    make_fifo(&path);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = b.clone();
    let fifo = path.clone();
    std::thread::spawn(move || {
        let k = key("f/x");
        let alone =
            cachette_core::plugin::block_on(true, reader.get_opts(&k, GetOptions::hit())).unwrap();
        let writer = rustix::fs::open(
            &fifo,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NONBLOCK,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        rustix::io::write(&writer, b"fed").unwrap();
        let fed =
            cachette_core::plugin::block_on(true, reader.get_opts(&k, GetOptions::hit())).unwrap();
        let _ = tx.send([alone.map(|_| ()), fed.map(|_| ())]);
    });
    let results = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a read of a named pipe blocked");
    for result in results {
        let e = result.unwrap_err();
        assert!(e.to_string().contains("named pipe"), "{e}");
    }
}

#[tokio::test]
async fn access_times_set_in_the_future_are_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let b = files_store(dir.path());
    b.put(&key("f/x"), value(b"v")).await.unwrap();
    let ten_years = SystemTime::now() + Duration::from_secs(10 * 365 * 24 * 3600);
    let times = std::fs::FileTimes::new()
        .set_accessed(ten_years)
        .set_modified(ten_years);
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("f/x"))
        .unwrap()
        .set_times(times)
        .unwrap();
    let listed = b.list(&Prefix::root()).await.unwrap();
    let now = chrono_now();
    assert!(
        listed[0].last_access <= now,
        "an item is listed as accessed in the future: {}",
        listed[0].last_access
    );
    // A recorded read still counts.
    b.get(&key("f/x")).await.unwrap().unwrap();
    let listed = b.list(&Prefix::root()).await.unwrap();
    assert!(listed[0].last_access <= chrono_now());
}

/// A store below `dir` that flushes its writes to the device, and one that does not, each
/// with whether it does.
fn durable_or_not(dir: &Path) -> [(bool, FsBackend); 2] {
    [false, true].map(|durable| {
        let mut config = files_config(&dir.join(format!("durable-{durable}")));
        config.durable = durable;
        (durable, config.open().unwrap())
    })
}

fn chrono_now() -> cachette_core::plugin::DateTime<cachette_core::plugin::Utc> {
    cachette_core::plugin::Utc::now()
}

#[tokio::test]
async fn create_if_absent_keeps_the_first_value() {
    let dir = tempfile::tempdir().unwrap();
    for (_, b) in durable_or_not(dir.path()) {
        let k = key("f/x");
        assert_eq!(
            b.put_if_absent(&k, value(b"1")).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            b.put_if_absent(&k, value(b"2")).await.unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(&b.get(&k).await.unwrap().unwrap()[..], b"1");
        b.put(&k, value(b"3")).await.unwrap();
        assert_eq!(&b.get(&k).await.unwrap().unwrap()[..], b"3");
        // No temporary file is left behind.
        assert_eq!(names(&b.root().join("f")), ["x"]);
    }
}

/// Writes open their folder in one call through the handle on the store's folder that reads
/// keep; once that folder is removed and made again, writes land in the new one, never in the
/// removed folder the handle still names.
#[tokio::test]
async fn writes_follow_a_store_folder_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let b = files_store(&root);
    b.put(&key("f/a"), value(b"1")).await.unwrap();
    assert_eq!(&b.get(&key("f/a")).await.unwrap().unwrap()[..], b"1");
    b.put(&key("f/b"), value(b"2")).await.unwrap();
    assert_eq!(names(&root.join("f")), ["a", "b"]);
    // Made again empty, then with the item's folder already there.
    for folder_too in [false, true] {
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::create_dir(&root).unwrap();
        if folder_too {
            std::fs::create_dir(root.join("f")).unwrap();
        }
        b.put(&key("f/c"), value(b"3")).await.unwrap();
        assert_eq!(std::fs::read(root.join("f/c")).unwrap(), b"3");
        assert_eq!(&b.get(&key("f/c")).await.unwrap().unwrap()[..], b"3");
    }
}

/// `put_then_delete` deletes the item beside the one it wrote (a claim beside its entry), one
/// that is missing without an error, and one in another folder too.
#[tokio::test]
async fn writes_delete_the_item_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let b = files_store(dir.path().join("cache"));
    let put = |k: &'static str, delete: &'static str| {
        let b = &b;
        async move {
            b.put_then_delete(&key(k), value(b"v"), Default::default(), &key(delete))
                .await
                .unwrap()
        }
    };
    b.put(&key("f/x.claim"), value(b"claim")).await.unwrap();
    assert_eq!(put("f/x", "f/x.claim").await, PutOutcome::Created);
    assert_eq!(names(&b.root().join("f")), ["x"]);
    assert_eq!(put("f/y", "f/y.claim").await, PutOutcome::Created);
    b.put(&key("g/z.claim"), value(b"claim")).await.unwrap();
    assert_eq!(put("f/z", "g/z.claim").await, PutOutcome::Created);
    assert_eq!(names(&b.root().join("f")), ["x", "y", "z"]);
    assert!(
        !b.root().join("g").exists(),
        "the emptied folder is removed"
    );
    // A folder where the item to delete is expected is left, and the write stands.
    std::fs::create_dir(b.root().join("f/w.claim")).unwrap();
    assert_eq!(put("f/w", "f/w.claim").await, PutOutcome::Created);
    assert!(b.root().join("f/w.claim").is_dir());
    assert_eq!(&b.get(&key("f/w")).await.unwrap().unwrap()[..], b"v");
}

/// A write that deletes an item beside it (an entry and its claim) takes that item's file:
/// written over, then renamed into place, so no file is made for it and none freed. An item
/// that is not a file of its own (linked elsewhere, a link) is never written through: the
/// write then goes the usual way, and the item's name goes.
#[tokio::test]
async fn writes_take_the_file_of_the_item_they_delete() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    for (durable, b) in durable_or_not(dir.path()) {
        let root = b.root().to_path_buf();
        let long_claim = vec![b'c'; 500];
        b.put(&key("f/x.claim"), Bytes::from(long_claim).into())
            .await
            .unwrap();
        let inode = std::fs::metadata(root.join("f/x.claim")).unwrap().ino();
        let outcome = b
            .put_then_delete(
                &key("f/x"),
                value(b"entry"),
                Default::default(),
                &key("f/x.claim"),
            )
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Created);
        assert_eq!(names(&root.join("f")), ["x"]);
        assert_eq!(std::fs::metadata(root.join("f/x")).unwrap().ino(), inode);
        assert_eq!(
            std::fs::read(root.join("f/x")).unwrap(),
            b"entry",
            "cut to its length"
        );

        // Linked elsewhere: the other name keeps its bytes.
        b.put(&key("f/y.claim"), value(b"claim")).await.unwrap();
        let elsewhere = dir.path().join(format!("elsewhere-{durable}"));
        std::fs::hard_link(root.join("f/y.claim"), &elsewhere).unwrap();
        b.put_then_delete(
            &key("f/y"),
            value(b"entry"),
            Default::default(),
            &key("f/y.claim"),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"claim");
        assert_eq!(std::fs::read(root.join("f/y")).unwrap(), b"entry");
        assert!(!root.join("f/y.claim").exists());

        // A symbolic link: never followed, its target unchanged.
        let target = dir.path().join(format!("target-{durable}"));
        std::fs::write(&target, b"target").unwrap();
        symlink(&target, root.join("f/z.claim")).unwrap();
        b.put_then_delete(
            &key("f/z"),
            value(b"entry"),
            Default::default(),
            &key("f/z.claim"),
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"target");
        assert_eq!(std::fs::read(root.join("f/z")).unwrap(), b"entry");
        assert_eq!(names(&root.join("f")), ["x", "y", "z"]);

        // Missing: the usual write.
        b.put_then_delete(
            &key("f/w"),
            value(b"entry"),
            Default::default(),
            &key("f/w.claim"),
        )
        .await
        .unwrap();
        assert_eq!(names(&root.join("f")), ["w", "x", "y", "z"]);
        // The item itself: never written over in place (a reader could see part of it).
        let inode = std::fs::metadata(root.join("f/w")).unwrap().ino();
        b.put_then_delete(
            &key("f/w"),
            value(b"again"),
            Default::default(),
            &key("f/w"),
        )
        .await
        .unwrap();
        if let Ok(meta) = std::fs::metadata(root.join("f/w")) {
            assert_ne!(meta.ino(), inode, "written through a temporary file");
        }
    }
}

/// The descriptors this process has open on files and folders in `dir` (other tests run in the
/// same process).
fn open_descriptors(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// An item made in place (a claim) is kept open until the write that deletes it takes its file
/// (no folder or item opened again), but only while its name is still that file's alone: one
/// replaced, rewritten, deleted or linked elsewhere behind the store's back is not written
/// through. At most a few dozen are kept open.
#[tokio::test]
async fn claims_made_in_place_are_taken_by_their_entry_while_they_are_theirs() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    for (durable, b) in durable_or_not(dir.path()) {
        let root = b.root().to_path_buf();
        let f = root.join("f");
        let in_place = PutOptions::create().with_in_place(true);
        let claim = |name: &'static str| {
            let b = &b;
            let in_place = in_place.clone();
            async move {
                let k = key(&format!("f/{name}.claim"));
                let made = b.put_opts(&k, value(b"claim"), in_place).await.unwrap();
                assert_eq!(made, PutOutcome::Created);
                std::fs::metadata(b.root().join(k.as_str())).unwrap().ino()
            }
        };
        let write = |name: &'static str, bytes: &'static [u8]| {
            let b = &b;
            async move {
                let k = key(&format!("f/{name}"));
                let claim = key(&format!("f/{name}.claim"));
                b.put_then_delete(&k, value(bytes), Default::default(), &claim)
                    .await
                    .unwrap()
            }
        };

        // Taken: the entry is the claim's file.
        let inode = claim("a").await;
        assert_eq!(write("a", b"entry a").await, PutOutcome::Created);
        assert_eq!(std::fs::read(f.join("a")).unwrap(), b"entry a");
        assert_eq!(std::fs::metadata(f.join("a")).unwrap().ino(), inode);
        assert_eq!(names(&f), ["a"]);

        // Replaced by another writer (a claim taken over): its file, not the one kept open,
        // becomes the entry, with the entry's bytes.
        claim("b").await;
        std::fs::remove_file(f.join("b.claim")).unwrap();
        std::fs::write(f.join("b.claim"), b"another process's claim, longer").unwrap();
        write("b", b"entry b").await;
        assert_eq!(std::fs::read(f.join("b")).unwrap(), b"entry b");

        // Rewritten through the store (a renewal), or deleted: the usual write.
        claim("c").await;
        b.put(&key("f/c.claim"), value(b"renewed claim, longer"))
            .await
            .unwrap();
        write("c", b"entry c").await;
        assert_eq!(std::fs::read(f.join("c")).unwrap(), b"entry c");
        claim("d").await;
        b.delete(&key("f/d.claim")).await.unwrap();
        write("d", b"entry d").await;
        assert_eq!(std::fs::read(f.join("d")).unwrap(), b"entry d");
        assert_eq!(names(&f), ["a", "b", "c", "d"]);

        // Linked elsewhere: the other name keeps its bytes.
        claim("e").await;
        let elsewhere = dir.path().join(format!("claim-elsewhere-{durable}"));
        std::fs::hard_link(f.join("e.claim"), &elsewhere).unwrap();
        write("e", b"entry e").await;
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"claim");
        assert_eq!(std::fs::read(f.join("e")).unwrap(), b"entry e");
        assert_eq!(names(&f), ["a", "b", "c", "d", "e"]);
    }

    // Bounded: a hundred claims left open keep a few dozen descriptors, and their deletion
    // closes them.
    let bounded = dir.path().join("bounded");
    let b = files_store(&bounded);
    let in_place = PutOptions::create().with_in_place(true);
    // The handles that reads and writes keep, on the store's folder and on the item's, opened
    // first (a write in a folder the store has just made keeps the folder's, and the next one
    // checks it through the root's).
    b.put(&key("f/first"), value(b"v")).await.unwrap();
    b.put(&key("f/second"), value(b"v")).await.unwrap();
    b.get(&key("f/first")).await.unwrap().unwrap();
    let before = open_descriptors(&bounded);
    let claims: Vec<Key> = (0..100).map(|i| key(&format!("f/{i}.claim"))).collect();
    for k in &claims {
        b.put_opts(k, value(b"claim"), in_place.clone())
            .await
            .unwrap();
    }
    let open = open_descriptors(&bounded);
    assert!(open <= before + 2 * 32, "{before} descriptors, then {open}");
    b.delete_many(&claims).await.unwrap();
    assert_eq!(
        open_descriptors(&bounded),
        before,
        "closed with their claims"
    );
}

/// A create asked in place (as compute-once claims are) is made where the item goes, and
/// keeps the semantics of a create: the first value stays, later ones find it, and nothing
/// else is left in the folder, durable or not.
#[tokio::test]
async fn creates_in_place_keep_the_first_value() {
    let dir = tempfile::tempdir().unwrap();
    for (_, b) in durable_or_not(dir.path()) {
        let in_place = PutOptions::create().with_in_place(true);
        let k = key("f/x.claim");
        let value = |v: &'static [u8]| -> cachette_core::plugin::Blob {
            [Bytes::from_static(&v[..1]), Bytes::from_static(&v[1..])]
                .into_iter()
                .collect()
        };
        assert_eq!(
            b.put_opts(&k, value(b"first"), in_place.clone())
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            b.put_opts(&k, value(b"second"), in_place.clone())
                .await
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(&b.get(&k).await.unwrap().unwrap()[..], b"first");
        assert_eq!(names(&b.root().join("f")), ["x.claim"]);
        // Made in place with an item to delete beside it: both done.
        assert_eq!(
            b.put_then_delete(&key("f/w.claim"), value(b"w"), in_place.clone(), &k)
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(names(&b.root().join("f")), ["w.claim"]);
        b.put_opts(&k, value(b"first"), in_place.clone())
            .await
            .unwrap();
        // A link where the item goes is an existing item: never written through.
        symlink(dir.path().join("elsewhere"), b.root().join("f/y.claim")).unwrap();
        assert_eq!(
            b.put_opts(&key("f/y.claim"), value(b"v"), in_place.clone())
                .await
                .unwrap(),
            PutOutcome::AlreadyExists
        );
        assert!(!dir.path().join("elsewhere").exists());
    }
}

#[tokio::test]
async fn an_unusable_location_fails_writes_not_construction() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    for root in [file.join("cache"), file.clone()] {
        let b = FsBackend::new(&root).unwrap();
        let k = key("f/x");
        assert_eq!(b.get(&k).await.unwrap(), None);
        let e = b.put(&k, value(b"v")).await.unwrap_err();
        assert_eq!(e.operation(), "put");
        assert!(b.list(&Prefix::root()).await.unwrap().is_empty());
    }
}

#[test]
fn urls_and_paths() {
    cachette_fs::link();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("via-url");
    let url = format!("file://{}?durable=true", path.display());
    let config = FsConfig::from_url(&url).unwrap();
    assert_eq!(
        config,
        FsConfig {
            durable: true,
            ..FsConfig::new(path.clone())
        }
    );
    assert_eq!(
        FsConfig::from_url("relative/cache").unwrap(),
        FsConfig::new("relative/cache")
    );
    for bad in [
        "file://?durable=yes",
        &format!("file://{}?colour=red", path.display()),
    ] {
        let e = FsConfig::from_url(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConfigInvalid, "{bad}: {e}");
    }
    let backend = backend_from_url(&url).unwrap();
    assert_eq!(backend.scheme(), "file");
    assert!(!path.exists(), "building a backend creates nothing");
    assert!(config_from_url(path.to_str().unwrap()).is_ok());
}

#[test]
fn configuration_files_name_the_type() {
    cachette_fs::link();
    let text = "type = \"file\"\npath = \"/var/cache/x\"\n";
    let config: Box<dyn BackendConfig> = toml::from_str(text).unwrap();
    let back = toml::to_string(&config).unwrap();
    assert!(
        back.contains("type = \"file\"") && back.contains("durable = false"),
        "{back}"
    );
    let unknown: Result<Box<dyn BackendConfig>, _> =
        toml::from_str("type = \"file\"\npath = \"/x\"\ncolour = 1\n");
    assert!(unknown.is_err());
}

/// A file's size is the store's word: a sparse file that announces a terabyte is an error to
/// read, whole or in part, and never a buffer the system cannot give (which would abort).
#[tokio::test]
async fn a_file_larger_than_memory_is_an_error_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let b = files_store(dir.path());
    let k = key("f/x");
    b.put(&k, value(b"v")).await.unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("f/x"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let err = b.get(&k).await.expect_err("a terabyte read");
    assert!(err.to_string().contains("into memory"), "{err}");
    let range = GetOptions::range(0..u64::MAX);
    let err = b.get_opts(&k, range).await.expect_err("a terabyte range");
    assert!(err.to_string().contains("into memory"), "{err}");
    // Its size, and a small range, are still answered.
    let head = b.get_opts(&k, GetOptions::head()).await.unwrap().unwrap();
    assert_eq!(head.size, 1 << 40);
    let start = b
        .get_opts(&k, GetOptions::range(0..1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(start.size, 1 << 40);
    // Given as an open file, it is an error to read into memory too (the core does so when a
    // map fails).
    let local = GetOptions::default().with_local_file(true);
    let file = b.get_opts(&k, local).await.unwrap().unwrap();
    let err = file.into_bytes().expect_err("a terabyte file");
    assert!(err.to_string().contains("into memory"), "{err}");
}
