//! The local-disk backend against the conformance suite, plus its own promises.

use std::sync::Arc;

use bytes::Bytes;
use cachette_core::registry::{BackendConfig, backend_from_url, config_from_url};
use cachette_core::{ErrorKind, Key, PutOptions, PutOutcome, StoreBackend, testkit};
use cachette_fs::{FsBackend, FsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    testkit::run_all(Arc::new(FsBackend::new(dir.path()).unwrap())).await;
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

#[tokio::test]
async fn layout_is_readable_and_ignored_by_git() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let b = FsBackend::new(&root).unwrap();
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l == "*"), "{gitignore}");

    b.put(
        &key("my_crate.load/0123abcd"),
        Bytes::from_static(b"v").into(),
        &PutOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(root.join("my_crate.load").join("0123abcd")).unwrap(),
        b"v"
    );
    assert_eq!(
        b.local_path(&key("my_crate.load/0123abcd")).unwrap(),
        root.canonicalize().unwrap().join("my_crate.load/0123abcd")
    );
    // The .gitignore is not an item, and survives clearing everything.
    let listed = b.list(&cachette_core::Prefix::root()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        b.delete_prefix(&cachette_core::Prefix::root())
            .await
            .unwrap(),
        1
    );
    assert!(root.join(".gitignore").exists());
    assert!(!root.join("my_crate.load").exists());
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
    let b = FsBackend::new(dir.path()).unwrap();
    for bad in [".gitignore", "f/.cachette-tmp-1-2-x"] {
        let e = b
            .put(
                &key(bad),
                Bytes::from_static(b"v").into(),
                &PutOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidKey, "{bad}: {e}");
    }
    // The real .gitignore is untouched.
    assert!(
        std::fs::read_to_string(dir.path().join(".gitignore"))
            .unwrap()
            .contains('*')
    );
}

#[tokio::test]
async fn temporary_files_are_never_items() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::new(dir.path()).unwrap();
    b.put(
        &key("f/item"),
        Bytes::from_static(b"v").into(),
        &PutOptions::default(),
    )
    .await
    .unwrap();
    // A writer that crashed left this behind.
    let leftover = dir.path().join("f/.cachette-tmp-999-0-item");
    std::fs::write(&leftover, b"partial").unwrap();
    let listed = b
        .list(&cachette_core::Prefix::new("f").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key.as_str(), "f/item");
    // A recent temporary file is left alone (a writer may be using it); an old one is removed.
    assert!(leftover.exists());
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_modified(old)
        .unwrap();
    b.list(&cachette_core::Prefix::new("f").unwrap())
        .await
        .unwrap();
    assert!(!leftover.exists());
}

#[tokio::test]
async fn create_if_absent_keeps_the_first_value() {
    let dir = tempfile::tempdir().unwrap();
    let b = FsBackend::new(dir.path()).unwrap();
    let k = key("f/x");
    let opts = PutOptions::default();
    assert_eq!(
        b.put_if_absent(&k, Bytes::from_static(b"1").into(), &opts)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        b.put_if_absent(&k, Bytes::from_static(b"2").into(), &opts)
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(&b.get(&k).await.unwrap().unwrap()[..], b"1");
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("f"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("x")]);
}

#[tokio::test]
async fn an_unusable_location_fails_writes_not_construction() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let b = FsBackend::new(file.join("cache")).unwrap();
    let k = key("f/x");
    assert_eq!(b.get(&k).await.unwrap(), None);
    let e = b
        .put(&k, Bytes::from_static(b"v").into(), &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.operation(), "put");
    assert!(
        b.list(&cachette_core::Prefix::root())
            .await
            .unwrap()
            .is_empty()
    );
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
            path: path.clone(),
            durable: true
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
    assert!(path.join(".gitignore").exists());
    assert!(config_from_url(path.to_str().unwrap()).is_ok());
}

#[test]
fn configuration_files_name_the_type() {
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
