//! The backend of the `custom_backend` example, as a user's own backend: it passes the
//! conformance suite, config files and `flatdir://` URLs select it, and a memory built on it
//! ships its configuration to a worker that sees the same entries.

#[path = "../examples/custom_backend/flat_dir.rs"]
pub mod flat_dir;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use cachette::plugin::{
    ErrorKind, GetOptions, GetPayload, Key, Prefix, StoreBackend, StoreBackendExt, testkit,
};
use cachette::{Memory, MemoryConfig, MmapMode};
use flat_dir::{FlatDirConfig, MAX_NAME_LEN, SCHEME};

/// A config file selecting the flat-folder store in `store` (hits map the items' files), with
/// `extra` lines in its section.
fn write_config(dir: &Path, store: &Path, extra: &str) -> PathBuf {
    let file = dir.join("cachette.toml");
    let text = format!(
        "mmap_mode = \"r\"\n\n[backend]\ntype = \"flatdir\"\npath = {}\n{extra}",
        toml::Value::String(store.display().to_string())
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FlatDirConfig::new(dir.path()).open().unwrap();
    testkit::run_all(Arc::new(backend)).await;
    assert!(
        file_names(dir.path()).is_empty(),
        "the suite cleans up after itself, so nothing is left: {:?}",
        file_names(dir.path())
    );
}

#[tokio::test]
async fn items_are_files_of_one_folder() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FlatDirConfig::new(dir.path()).open().unwrap();
    let short = Key::new("my_crate.load/100%").unwrap();
    let long = Key::new(format!("my_crate.load/{}", "x".repeat(MAX_NAME_LEN))).unwrap();
    for key in [&short, &long] {
        backend
            .put(key, Bytes::from_static(b"item").into())
            .await
            .unwrap();
    }
    let names = file_names(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"my_crate.load%2F100%25".to_owned()),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("%long-")), "{names:?}");

    // A short key's file holds the item alone, and may be mapped; a long key's does not.
    let file = GetOptions::default().with_local_file(true);
    let found = backend
        .get_opts(&short, file.clone())
        .await
        .unwrap()
        .unwrap();
    let GetPayload::File(local) = found.payload else {
        panic!("a short key's item is a file of its own");
    };
    assert_eq!(std::fs::read(local.path).unwrap(), b"item");
    let found = backend.get_opts(&long, file).await.unwrap().unwrap();
    assert!(
        matches!(found.payload, GetPayload::Bytes(_)),
        "a long key's file holds more"
    );
    assert_eq!(&backend.get(&long).await.unwrap().unwrap()[..], b"item");

    let mut listed: Vec<Key> = backend
        .list(&Prefix::new("my_crate.load").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    listed.sort();
    assert_eq!(listed, [short, long]);
}

/// How many times the body of [`cube`] ran.
static CALLS: AtomicUsize = AtomicUsize::new(0);

fn cube(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    x * x * x
}

#[test]
fn a_config_file_selects_it_and_a_shipped_config_sees_the_same_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = write_config(dir.path(), &store, "");

    // `Memory::from_config` also reads CACHETTE_CONFIG and CACHETTE_LOCATION, which win.
    let memory = Memory::from_config(&file).unwrap();
    let backend = memory.backend().unwrap();
    assert_eq!(
        backend.scheme(),
        SCHEME,
        "the file selects the flatdir backend (unless CACHETTE_CONFIG or CACHETTE_LOCATION is set)"
    );
    let location = format!("flatdir://{}", store.canonicalize().unwrap().display());
    assert_eq!(backend.location(), location);

    // Computed once, then loaded.
    let f = memory.cache(cube);
    assert_eq!(f.eval(3), 27);
    assert_eq!(f.eval(3), 27);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    let names = file_names(&store);
    assert!(
        names.iter().any(|n| n.ends_with("%2Ffunc_code")) && names.len() == 2,
        "one file for the function's identity, one for the call: {names:?}"
    );

    // Another memory from the same file sees the entry.
    let again = Memory::from_config(&file).unwrap();
    let g = again.cache(cube);
    assert!(g.check_call_in_cache(&3));
    assert_eq!(g.eval(3), 27);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);

    // So does a worker given the memory's configuration, as TOML.
    let shipped = memory.config().unwrap().to_toml().unwrap();
    assert!(shipped.contains("type = \"flatdir\""), "{shipped}");
    let worker = MemoryConfig::from_toml(&shipped, "shipped")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(worker.backend().unwrap().scheme(), SCHEME);
    assert_eq!(worker.backend().unwrap().location(), location);
    assert_eq!(worker.mmap_mode(), MmapMode::ReadOnly);
    let h = worker.cache(cube);
    assert!(h.check_call_in_cache(&3));
    assert_eq!(h.eval(3), 27);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);

    // And a memory on the backend's location, a `flatdir://` URL.
    let by_url = Memory::from_url(&location).unwrap();
    assert_eq!(by_url.backend().unwrap().scheme(), SCHEME);
    assert!(by_url.cache(cube).check_call_in_cache(&3));
}

#[test]
fn an_unknown_key_is_named_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), &dir.path().join("store"), "durable = true\n");
    let err = Memory::from_config(&file).unwrap_err().to_string();
    assert!(
        err.contains("durable") && err.contains(&file.display().to_string()),
        "{err}"
    );
    let err = MemoryConfig::from_file(&file).unwrap_err().to_string();
    assert!(
        err.contains("unknown field `durable`") && err.contains(&file.display().to_string()),
        "{err}"
    );
}

#[test]
fn bad_urls_are_configuration_errors() {
    for url in ["flatdir://relative/path", "flatdir:"] {
        match FlatDirConfig::from_url(url) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConfigInvalid, "{url}: {e}"),
            Ok(config) => panic!("{url} parsed as {config:?}"),
        }
    }
    let err = Memory::from_url("flatdir://relative/path")
        .unwrap_err()
        .to_string();
    assert!(err.contains("absolute"), "{err}");
}
