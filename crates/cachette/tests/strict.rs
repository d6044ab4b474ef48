//! Strict mode: the `try_` methods return the faults of the store as errors, instead of warning
//! and computing; without it (the default), and in the infallible methods, faults stay warnings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use cachette::plugin::{InMemoryBackend, Key, Prefix, block_on};
use cachette::plugin::{StoreBackend, StoreBackendExt};
use cachette::{CallError, Error, Memory, MemoryBuilder, MemoryConfig, memoize};
use common::{capture, files_layout, warnings};
use serde::{Serialize, Serializer};

mod common;

/// A memory over `backend`, strict or not, and its reports.
fn memory(backend: &Arc<InMemoryBackend>, strict: bool) -> (Memory, common::Reports) {
    capture(MemoryBuilder::new().backend(backend.clone()).strict(strict))
}

/// Overwrites every entry of the function folder `folder` with bytes that are no entry.
fn damage(backend: &InMemoryBackend, name: &str) -> usize {
    let folder = cachette::FuncId::new(name).folder().to_owned();
    let prefix = Prefix::new(format!("cachette/{folder}")).unwrap();
    let items = block_on(false, backend.list(&prefix)).unwrap().unwrap();
    let mut damaged = 0;
    for item in items {
        if item.key.file_name() == "func_code" {
            continue;
        }
        let garbage = Bytes::from_static(b"not an entry at all, just some bytes");
        block_on(false, backend.put(&item.key, garbage.into()))
            .unwrap()
            .unwrap();
        damaged += 1;
    }
    damaged
}

#[test]
fn a_damaged_entry_is_an_error_only_in_strict_mode() {
    let backend = Arc::new(InMemoryBackend::new());
    let calls = AtomicUsize::new(0);
    let square = |x: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * x
    };
    let (lenient, reports) = memory(&backend, false);
    let f = lenient.cache_capturing(&square).name("strict::square");
    assert!(!f.is_strict());
    assert_eq!(f.try_eval(7).unwrap(), 49);
    assert_eq!(damage(&backend, "strict::square"), 1);

    // Not strict: a warning, and the value, computed again and stored again.
    assert_eq!(f.try_eval(7).unwrap(), 49);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let w = warnings(&reports);
    assert!(w.iter().any(|w| w.contains("unusable")), "{w:?}");

    // Strict: the damaged entry is the caller's error, naming the key; nothing runs.
    damage(&backend, "strict::square");
    let (strict, reports) = memory(&backend, true);
    assert!(strict.strict());
    let f = strict.cache_capturing(&square).name("strict::square");
    let err = f.try_eval(7).unwrap_err();
    assert!(matches!(err, Error::Entry { .. }), "{err:?}");
    assert!(err.to_string().contains("strict.square-"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "nothing computed");
    let w = warnings(&reports);
    assert!(
        !w.iter().any(|w| w.contains("unusable")),
        "an error, not a warning: {w:?}"
    );
    // The same with the forced and shelving variants: they read no entry, so they succeed
    // and replace it.
    assert_eq!(f.try_call(7).unwrap().0, 49);
    assert_eq!(f.try_eval(7).unwrap(), 49, "a hit again");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // The infallible methods cannot fail: in strict mode too they warn and compute.
    damage(&backend, "strict::square");
    assert_eq!(f.eval(7), 49);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(
        warnings(&reports).iter().any(|w| w.contains("unusable")),
        "{:?}",
        warnings(&reports)
    );

    // A function can leave strict mode.
    damage(&backend, "strict::square");
    let f = strict
        .cache_capturing(&square)
        .name("strict::square")
        .strict(false);
    assert_eq!(f.try_eval(7).unwrap(), 49);
    // And `try_call_and_shelve` reads the metadata, which is damaged too.
    damage(&backend, "strict::square");
    let f = f.strict(true);
    let err = f.try_call_and_shelve(7).unwrap_err();
    assert!(matches!(err, Error::Entry { .. }), "{err:?}");
}

/// A value whose serialization always fails.
#[derive(Debug, PartialEq)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("never stored"))
    }
}

#[test]
fn an_output_that_cannot_be_stored_is_an_error_in_strict_mode() {
    let backend = Arc::new(InMemoryBackend::new());
    let (lenient, reports) = memory(&backend, false);
    let f = lenient.cache(|_: u8| Unserializable).name("strict::unser");
    assert_eq!(f.try_eval(1).unwrap(), Unserializable);
    assert!(
        warnings(&reports)
            .iter()
            .any(|w| w.contains("cannot be serialized")),
        "{:?}",
        warnings(&reports)
    );
    let (strict, _) = memory(&backend, true);
    let f = strict.cache(|_: u8| Unserializable).name("strict::unser");
    let err = f.try_eval(1).unwrap_err();
    assert!(matches!(err, Error::Codec(_)), "{err:?}");
    assert!(err.to_string().contains("refuses"), "{err}");
    let err = f.try_call_and_shelve(1).unwrap_err();
    assert!(matches!(err, Error::Codec(_)), "{err:?}");
}

#[test]
fn a_store_that_cannot_be_written_is_an_error_in_strict_mode() {
    let dir = tempfile::tempdir().unwrap();
    let calls = AtomicUsize::new(0);
    let double = |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * 2
    };
    // The files layout, where the function's folder holds its entries.
    let (strict, _) = capture(files_layout(dir.path()).strict(true));
    let f = strict.cache_capturing(&double).name("strict::double");
    assert_eq!(f.try_eval(1).unwrap(), 2);
    // The function's folder becomes a file: every read and write of it fails.
    let folder = dir
        .path()
        .join("cachette")
        .join(cachette::FuncId::new("strict::double").folder());
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::write(&folder, b"in the way").unwrap();
    let strict = strict.clone(); // the code identity was checked: reads fail first
    let f = strict.cache_capturing(&double).name("strict::double");
    let err = f.try_eval(2).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    // Not strict: the value, with a warning.
    let (lenient, reports) = capture(files_layout(dir.path()));
    let f = lenient.cache_capturing(&double).name("strict::double");
    assert_eq!(f.try_eval(2).unwrap(), 4);
    assert_eq!(f.eval(3), 6);
    assert!(!warnings(&reports).is_empty());
}

#[test]
fn the_functions_own_errors_stay_apart_and_are_not_stored() {
    let backend = Arc::new(InMemoryBackend::new());
    let (strict, _) = memory(&backend, true);
    let f = strict.cache(|x: i32| x).name("strict::checked");
    let calls = AtomicUsize::new(0);
    let checked = |x: i32| {
        calls.fetch_add(1, Ordering::SeqCst);
        if x < 0 { Err("negative") } else { Ok(x) }
    };
    match f.try_call_with(-1, checked) {
        Err(CallError::Function(e)) => assert_eq!(e, "negative"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.try_call_with(-1, checked),
        Err(CallError::Function(_))
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "an error is not stored");
    assert_eq!(f.try_call_with(5, checked).unwrap(), 5);
    assert_eq!(f.try_call_with(5, checked).unwrap(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // A store error converts into an error type that can hold it.
    damage(&backend, "strict::checked");
    let boxed = |x: i32| -> Result<i32, BoxError> { Ok(x) };
    let err: BoxError = f
        .try_call_with(5, boxed)
        .map_err(CallError::into_inner)
        .unwrap_err();
    assert!(err.to_string().contains("strict.checked-"), "{err}");
}

#[test]
fn strict_mode_comes_from_the_config_and_ships_with_it() {
    let config = MemoryConfig::from_toml(
        "location = \"memory://strict-config\"\nstrict = true\n",
        "strict.toml",
    )
    .unwrap();
    assert!(config.options.strict);
    let memory = Memory::builder().config(config).build().unwrap();
    assert!(memory.strict());
    let shipped = memory.config().unwrap().to_toml().unwrap();
    assert!(shipped.contains("strict = true"), "{shipped}");
    let default =
        MemoryConfig::from_toml("location = \"memory://strict-default\"\n", "d.toml").unwrap();
    assert!(!default.options.strict);
    assert!(!default.to_toml().unwrap().contains("strict ="));
    assert!(!Memory::disabled().strict());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_are_strict_too() {
    let backend = Arc::new(InMemoryBackend::new());
    let (strict, _) = memory(&backend, true);
    let f = strict.cache(|x: u32| x).name("strict::fetch");
    let fetch = |x: u32| async move { Ok::<u32, std::io::Error>(x + 1) };
    assert_eq!(f.try_call_with_async(1, fetch).await.unwrap(), 2);
    damage(&backend, "strict::fetch");
    let err = f.try_call_with_async(1, fetch).await.unwrap_err();
    assert!(
        matches!(err, CallError::Store(Error::Entry { .. })),
        "{err:?}"
    );
    assert_eq!(f.call_with_async(1, fetch).await.unwrap(), 2, "lenient");
    damage(&backend, "strict::fetch");
    let err = f
        .try_call_and_shelve_with_async(1, fetch)
        .await
        .unwrap_err();
    assert!(err.store_error().is_some(), "{err:?}");
    let (value, _) = f.try_force_call_with_async(1, fetch).await.unwrap();
    assert_eq!(value, 2);
}

static MACRO_BACKEND: std::sync::LazyLock<Arc<InMemoryBackend>> =
    std::sync::LazyLock::new(|| Arc::new(InMemoryBackend::new()));
static MACRO_MEMORY: std::sync::LazyLock<Memory> = std::sync::LazyLock::new(|| {
    MemoryBuilder::new()
        .backend(MACRO_BACKEND.clone())
        .build()
        .unwrap()
});

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[memoize(memory = MACRO_MEMORY, strict, name = "strict::halve")]
fn halve(x: u32) -> Result<u32, BoxError> {
    if x % 2 == 1 {
        return Err(format!("{x} is odd").into());
    }
    Ok(x / 2)
}

#[memoize(memory = MACRO_MEMORY, name = "strict::halve_leniently", compute_once = false)]
fn halve_leniently(x: u32) -> Result<u32, BoxError> {
    Ok(x / 2)
}

#[test]
fn memoize_strict_returns_faults_as_the_functions_error() {
    assert!(halve::memorized().is_strict());
    assert!(!halve_leniently::memorized().is_strict());
    assert!(!halve_leniently::memorized().computes_once());
    assert_eq!(halve(8).unwrap(), 4);
    assert_eq!(halve(3).unwrap_err().to_string(), "3 is odd");
    assert_eq!(halve_leniently(8).unwrap(), 4);
    damage(&MACRO_BACKEND, "strict::halve");
    damage(&MACRO_BACKEND, "strict::halve_leniently");
    let err = halve(8).unwrap_err();
    assert!(err.to_string().contains("strict.halve-"), "{err}");
    assert_eq!(halve_leniently(8).unwrap(), 4, "lenient: computed again");
    // The forced call replaces the damaged entry; then it loads again.
    assert_eq!(halve::call(8).unwrap().0, 4);
    assert_eq!(halve(8).unwrap(), 4);
    assert!(matches!(
        halve::call_and_shelve(8).unwrap(),
        cachette::Shelved::Memorized(_)
    ));
    let folder = cachette::FuncId::new("strict::halve").folder().to_owned();
    let key = Key::new(format!("cachette/{folder}/func_code")).unwrap();
    assert!(
        block_on(false, MACRO_BACKEND.get(&key))
            .unwrap()
            .unwrap()
            .is_some()
    );
}
