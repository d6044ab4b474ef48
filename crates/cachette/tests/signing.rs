//! Signed entries: a memory with a signing key signs what it writes and refuses what is not
//! signed with its key, with a warning, computing the result again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::Array;
use cachette::plugin::entry::{Entry, encode_parts};
use cachette::plugin::{InMemoryBackend, block_on};
use cachette::plugin::{Key, StoreBackendExt};
use cachette::{Memory, MemoryBuilder, MmapMode, Shelved, SigningKey};
use common::{capture, warnings};

mod common;

fn key(secret: &str) -> SigningKey {
    SigningKey::new(secret).unwrap()
}

/// A memory over `backend`, signing with `secret` if given, and its warnings.
fn memory(backend: &Arc<InMemoryBackend>, secret: Option<&str>) -> (Memory, common::Reports) {
    let mut builder = MemoryBuilder::new().backend(backend.clone());
    if let Some(secret) = secret {
        builder = builder.signing_key(key(secret));
    }
    capture(builder)
}

fn stored(backend: &InMemoryBackend, key: &Key) -> Entry {
    let bytes = block_on(false, backend.get(key)).unwrap().unwrap().unwrap();
    Entry::parse(bytes).unwrap()
}

#[test]
fn signed_entries_load_only_with_their_key() {
    let backend = Arc::new(InMemoryBackend::new());
    let calls = AtomicUsize::new(0);
    let f = |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * 2
    };
    let (alice, _) = memory(&backend, Some("alice's long secret"));
    let Shelved::Memorized(shelved) = alice.cache_capturing(&f).name("s::f").call_and_shelve(21)
    else {
        panic!("not stored");
    };
    let entry_key = Key::new(format!("cachette/{}/{}", shelved.func(), shelved.args_id())).unwrap();
    let entry = stored(&backend, &entry_key);
    assert!(entry.prefix().is_signed());
    assert!(entry.verify_signature(&key("alice's long secret")).is_ok());
    assert!(
        entry
            .verify_signature(&key("mallory's long secret"))
            .is_err()
    );

    // The same key: a hit.
    assert_eq!(alice.cache_capturing(&f).name("s::f").eval(21), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // No key: signatures are not checked, the entry loads.
    let (plain, reports) = memory(&backend, None);
    assert_eq!(plain.cache_capturing(&f).name("s::f").eval(21), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let w = warnings(&reports);
    assert!(!w.iter().any(|w| w.contains("signature")), "{w:?}");
    // Another key: refused with a warning, computed, and stored signed with that key.
    let (bob, reports) = memory(&backend, Some("bob's long secret!!"));
    assert_eq!(bob.cache_capturing(&f).name("s::f").eval(21), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let w = warnings(&reports);
    assert!(w.iter().any(|w| w.contains("signature")), "{w:?}");
    assert!(
        stored(&backend, &entry_key)
            .verify_signature(&key("bob's long secret!!"))
            .is_ok()
    );
    // The shelved reference of alice now fails to load it, saying why.
    let err = shelved.get().unwrap_err().to_string();
    assert!(err.contains("signature"), "{err}");
}

#[test]
fn unsigned_and_forged_entries_are_refused() {
    let backend = Arc::new(InMemoryBackend::new());
    let calls = AtomicUsize::new(0);
    let f = |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        x + 1
    };
    // Written without a key.
    let (plain, _) = memory(&backend, None);
    let Shelved::Memorized(shelved) = plain.cache_capturing(&f).name("s::g").call_and_shelve(1)
    else {
        panic!("not stored");
    };
    let entry_key = Key::new(format!("cachette/{}/{}", shelved.func(), shelved.args_id())).unwrap();
    let (signed, reports) = memory(&backend, Some("a long enough secret"));
    assert_eq!(signed.cache_capturing(&f).name("s::g").eval(1), 2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the unsigned entry was refused"
    );
    assert!(warnings(&reports).iter().any(|w| w.contains("not signed")));

    // A forgery: a valid entry (good checksums, the right call in its metadata) with another
    // value, written by someone without the key.
    let genuine = stored(&backend, &entry_key);
    let meta = genuine.metadata().unwrap();
    let mut structure = Vec::new();
    cachette::plugin::entry::encode_value(&cachette::MessagePack, &666u32, &mut structure).unwrap();
    let forged = encode_parts(&meta, structure, Vec::new(), None).unwrap();
    block_on(false, backend.put(&entry_key, forged.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(
        plain.cache_capturing(&f).name("s::g").eval(1),
        666,
        "without a key it is believed"
    );
    assert_eq!(
        signed.cache_capturing(&f).name("s::g").eval(1),
        2,
        "with the key it is refused"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn signed_arrays_load_into_memory_whatever_the_mode_and_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let calls = AtomicUsize::new(0);
    let ramp = |n: usize| {
        calls.fetch_add(1, Ordering::SeqCst);
        Array::from((0..n).map(|i| i as f64).collect::<Vec<_>>())
    };
    for (mode, compress) in [(MmapMode::ReadOnly, 0), (MmapMode::None, 3)] {
        let build = |secret: &str| {
            Memory::builder()
                .path(dir.path())
                .mmap_mode(mode)
                .compress(compress)
                .signing_key(key(secret))
                .reporter(cachette::Reporter::new(|_| {}))
                .build()
                .unwrap()
        };
        let run = |memory: &Memory| memory.cache_capturing(&ramp).name("s::ramp").eval(100_000);
        let before = calls.load(Ordering::SeqCst);
        let memory = build("the first long secret");
        let first = run(&memory);
        let hit = run(&memory);
        assert_eq!(first, hit);
        // A map would read the arrays' bytes after their signature was checked: signed
        // entries are loaded into memory.
        assert!(!hit.is_mapped(), "{mode}");
        assert_eq!(calls.load(Ordering::SeqCst), before + 1, "a hit, {mode}");
        // Another key refuses the entry, mapped or not.
        assert_eq!(run(&build("the other long secret")), first);
        assert_eq!(calls.load(Ordering::SeqCst), before + 2, "refused, {mode}");
        memory.clear().unwrap();
    }
}

#[test]
fn keys_come_from_config_files_and_ship_with_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signed.toml");
    std::fs::write(
        &file,
        "signing_key = \"a secret of the team, long\"\n[backend]\ntype = \"memory\"\nname = \"signed-config\"\n",
    )
    .unwrap();
    let config = cachette::MemoryConfig::from_file(&file).unwrap();
    assert!(
        !format!("{config:?}").contains("team"),
        "Debug hides the secret"
    );
    let memory = config.build().unwrap();
    let f = memory.cache(|x: u8| x).name("s::id");
    f.eval(1);
    let worker =
        cachette::MemoryConfig::from_toml(&memory.config().unwrap().to_toml().unwrap(), "shipped")
            .unwrap()
            .build()
            .unwrap();
    assert!(
        worker
            .cache(|x: u8| x)
            .name("s::id")
            .check_call_in_cache(&1)
    );
    std::fs::write(&file, "signing_key = \"short\"\nlocation = \"memory://\"\n").unwrap();
    let err = cachette::MemoryConfig::from_file(&file)
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16 bytes"), "{err}");
}
