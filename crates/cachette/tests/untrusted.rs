//! Strangers: a reference that arrives in a message, and a store others can write to, are
//! input that may be hostile. A reader never connects, reads or deletes where the reference
//! says without being allowed to, never accepts a forged result, never waits on a planted
//! claim for long, never lets a planted identity delete its results, and never prints a
//! secret or a stranger's terminal escapes. See docs/security.md.

#![cfg(all(feature = "fs", feature = "testkit"))]

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachette::hashing::{Digest, HashAlgorithm, StableHasher, Xxh3Hasher};
use cachette::plugin::entry::{Entry, encode_parts};
use cachette::plugin::{
    Bytes, InMemoryBackend, Key, Prefix, StoreBackend, StoreBackendExt, block_on,
};
use cachette::{
    Array, Error, MemorizedResult, Memory, MemoryBuilder, MemoryConfig, MmapMode, Shelved,
    SigningKey,
};
use common::{capture, warnings};

mod common;

const SECRET: &str = "a secret shared by the trusted writers";

fn square(x: u64) -> u64 {
    x * x
}

/// The only stored entry of `backend` under `cachette/`, its key and bytes.
fn only_entry(backend: &InMemoryBackend) -> (Key, Bytes) {
    let items = block_on(false, backend.list(&Prefix::new("cachette").unwrap()))
        .unwrap()
        .unwrap();
    let key = items
        .into_iter()
        .map(|i| i.key)
        .find(|k| {
            let name = k.file_name();
            name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .expect("an entry");
    let bytes = block_on(false, backend.get(&key))
        .unwrap()
        .unwrap()
        .unwrap();
    (key, bytes)
}

// ------------------------------------------------------------------------------------------
// 2. References from outside.

#[test]
fn a_parsed_reference_connects_nowhere_by_itself() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    for location in [
        format!("redis://127.0.0.1:{port}/0"),
        format!("s3://bucket/prefix?endpoint=http://127.0.0.1:{port}&region=x"),
    ] {
        let printed = format!(
            "MemorizedResult(location=\"{location}\", func=\"m.f-0011223344556677\", args_id=\"{}\")",
            "ab".repeat(16)
        );
        let reference: MemorizedResult<u64> = printed.parse().unwrap();
        let err = reference.get().unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.to_string().contains("Memory::resolve"), "{err}");
        assert!(matches!(reference.clear(), Err(Error::InvalidArgument(_))));
    }
    assert!(
        listener.accept().is_err(),
        "a reference from a message connected to the host it names"
    );
}

#[test]
fn a_parsed_reference_deletes_nothing_it_names() {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    std::fs::write(ssh.join("authorized_keys"), "ssh-ed25519 AAAA…").unwrap();
    let location = home.path().to_str().unwrap().to_owned();
    // Not allowed: refused whatever it names.
    let reference: MemorizedResult<u64> =
        MemorizedResult::from_parts(&location, ".ssh", "authorized_keys");
    assert!(matches!(reference.clear(), Err(Error::InvalidArgument(_))));
    // Allowed: a reference names an entry of the cachette/ namespace, and nothing else.
    cachette::allow_reference_locations([location.clone()]);
    for (func, args_id) in [
        (".ssh", "authorized_keys"),
        ("../.ssh", &"0".repeat(32)[..]),
        (".ssh/x", &"0".repeat(32)[..]),
        ("..", &"0".repeat(32)[..]),
    ] {
        let reference: MemorizedResult<u64> = MemorizedResult::from_parts(&location, func, args_id);
        assert!(reference.clear().is_err(), "{func}/{args_id}");
    }
    assert!(
        ssh.join("authorized_keys").exists(),
        "a reference deleted a file"
    );
}

#[test]
fn a_resolved_reference_uses_the_receivers_store_key_and_mode() {
    let backend = Arc::new(InMemoryBackend::new());
    let (signed, _) = capture(
        MemoryBuilder::new()
            .backend(backend.clone())
            .signing_key(SigningKey::new(SECRET).unwrap()),
    );
    let f = signed.cache(square).name("untrusted::square");
    assert_eq!(f.eval(4), 16);
    // A forger replaces the entry with an unsigned one saying 17.
    let (key, bytes) = only_entry(&backend);
    let entry = Entry::parse(bytes).unwrap();
    let mut value = Vec::new();
    cachette::plugin::entry::encode_value(&cachette::MessagePack, &17u64, &mut value).unwrap();
    let forged = encode_parts(&entry.metadata().unwrap(), value, Vec::new(), None).unwrap();
    block_on(false, backend.put(&key, forged)).unwrap().unwrap();
    // The reference of the sender names some other place; the receiver reads its own store,
    // with its own key: the forgery is refused.
    let printed = format!(
        "MemorizedResult(location=\"redis://203.0.113.9/0\", func=\"{}\", args_id=\"{}\")",
        key.parent().trim_start_matches("cachette/"),
        key.file_name()
    );
    let received: MemorizedResult<u64> = printed.parse().unwrap();
    let resolved = signed.resolve(&received);
    assert_eq!(Some(resolved.location()), signed.location());
    let err = resolved.get().unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
    assert!(matches!(resolved.clear(), Ok(())));
    assert!(resolved.get().is_err());

    // The receiver chooses how arrays load.
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new(dir.path()).unwrap();
    let ramp =
        memory.cache(|n: usize| Array::from_vec((0..n).map(|i| i as f64).collect(), [n]).unwrap());
    let Shelved::Memorized(shelved) = ramp.call_and_shelve(1000) else {
        panic!("not stored")
    };
    let received: MemorizedResult<Array<f64>> = shelved.to_string().parse().unwrap();
    assert!(!memory.resolve(&received).get().unwrap().is_mapped());
    let mapped = memory
        .resolve(&received)
        .mmap_mode(MmapMode::ReadOnly)
        .get()
        .unwrap();
    assert!(mapped.is_mapped());
    assert_eq!(mapped.as_slice()[999], 999.0);
}

#[test]
fn a_reference_shelved_behind_a_local_tier_names_the_shared_tier() {
    let shared = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let memory = MemoryBuilder::new()
        .path(shared.path())
        .local_tier(local.path().to_str().unwrap())
        .build()
        .unwrap();
    let f = memory.cache(square).name("untrusted::tiered");
    let Shelved::Memorized(shelved) = f.call_and_shelve(3) else {
        panic!("not stored")
    };
    let shared_location = Memory::new(shared.path())
        .unwrap()
        .location()
        .unwrap()
        .to_owned();
    assert_eq!(shelved.location(), shared_location);
    // On another machine, the shared tier opens it.
    let elsewhere = Memory::new(shared.path()).unwrap();
    let received: MemorizedResult<u64> = shelved.to_string().parse().unwrap();
    assert_eq!(elsewhere.resolve(&received).get().unwrap(), 9);
}

// ------------------------------------------------------------------------------------------
// 3. Signing: rotation.

#[test]
fn keys_rotate_previous_keys_are_read_new_entries_signed_with_the_new_one() {
    let backend = Arc::new(InMemoryBackend::new());
    let old = MemoryBuilder::new()
        .backend(backend.clone())
        .signing_key(SigningKey::new(SECRET).unwrap())
        .build()
        .unwrap();
    let runs = AtomicUsize::new(0);
    let count = |x: u64| {
        runs.fetch_add(1, Ordering::SeqCst);
        x + 1
    };
    assert_eq!(
        old.cache_capturing(&count).name("untrusted::rot").eval(1),
        2
    );
    let rotated = MemoryBuilder::new()
        .backend(backend.clone())
        .signing_key(SigningKey::new("the new secret of the writers").unwrap())
        .previous_signing_keys([SECRET])
        .build()
        .unwrap();
    let f = rotated.cache_capturing(&count).name("untrusted::rot");
    assert_eq!(f.eval(1), 2);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the old key's entry was read"
    );
    assert_eq!(f.eval(2), 3);
    // Without the previous key, the old entry is refused, the new one read.
    let (dropped, reports) = capture(
        MemoryBuilder::new()
            .backend(backend.clone())
            .signing_key(SigningKey::new("the new secret of the writers").unwrap()),
    );
    let f = dropped.cache_capturing(&count).name("untrusted::rot");
    assert_eq!(f.eval(2), 3);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(f.eval(1), 2);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the old key's entry was refused"
    );
    assert!(
        warnings(&reports).iter().any(|w| w.contains("signature")),
        "{:?}",
        warnings(&reports)
    );
}

// ------------------------------------------------------------------------------------------
// 4. Planted items cost bounded work.

#[test]
fn a_planted_claim_with_a_huge_lease_delays_a_caller_one_lease_at_most() {
    let backend = Arc::new(InMemoryBackend::new());
    let (memory, reports) = capture(
        MemoryBuilder::new()
            .backend(backend.clone())
            .claims(true)
            .lease(Duration::from_millis(300))
            .wait_timeout(Duration::from_secs(60)),
    );
    let f = memory.cache(square).name("untrusted::claimed");
    // Find the key of the call, then plant a claim that announces a lease of a year.
    f.eval(5);
    let (key, _) = only_entry(&backend);
    f.clear().unwrap();
    let year = 365 * 24 * 3600 * 1000u64;
    let planted = format!(
        "cachette claim 1\nhost else\u{1b}]0;owned\u{7}\u{202e}where\npid 1\ntoken planted\nlease_ms {year}\nexpires_ms {}\nrenewals 0\n",
        u64::MAX / 2
    );
    let claim = Key::new(format!("{key}.claim")).unwrap();
    block_on(false, backend.put(&claim, Bytes::from(planted).into()))
        .unwrap()
        .unwrap();
    assert_eq!(f.eval(5), 25);
    let w = warnings(&reports);
    assert!(w.iter().any(|w| w.contains("stale")), "{w:?}");
    // The planted host is quoted escaped: no terminal code reaches the user's terminal.
    assert!(
        w.iter()
            .any(|w| w.contains(r"else\u{1b}]0;owned\u{7}\u{202e}where")),
        "{w:?}"
    );
    assert!(
        !w.iter()
            .any(|w| w.contains(['\u{1b}', '\u{7}', '\u{202e}'])),
        "{w:?}"
    );
    assert!(
        !w.iter()
            .any(|w| w.contains("waited") || w.contains("timed out")),
        "the caller waited for the planted claim: {w:?}"
    );
}

/// An entry's file that announces a terabyte (a sparse file: it costs the planter nothing)
/// gives one warning and a recomputation, never an allocation that aborts the reader, and its
/// result replaces the file.
#[test]
fn a_planted_terabyte_file_is_a_warning_and_a_recomputation() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    fn counted(x: u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        x * x
    }
    let dir = tempfile::tempdir().unwrap();
    let (memory, reports) = capture(common::files_layout(dir.path()));
    let f = memory
        .cache_fn(counted as fn(u64) -> u64)
        .name("untrusted::terabyte");
    assert_eq!(f.eval(7), 49);
    let entry = common::files_named(&dir.path().join("cachette"), |name| {
        name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
    })
    .into_iter()
    .next()
    .expect("the entry's file");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&entry)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    // The file is an item too large to read, not a failing store: the call computes, its
    // result replaces the file, and the next calls read it. (Were it a store fault, nothing
    // would replace the file, every call would compute, and the fifth would open the breaker
    // for every function of the store.)
    for _ in 0..10 {
        assert_eq!(f.eval(7), 49);
    }
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "computed once more, then read"
    );
    assert!(std::fs::metadata(&entry).unwrap().len() < 1 << 20);
    assert_eq!(f.eval(8), 64);
    assert_eq!(f.eval(8), 64);
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        3,
        "another call is stored and read"
    );
    let w = warnings(&reports);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("into memory"), "{}", w[0]);
}

#[test]
fn a_planted_identity_makes_a_signing_memory_delete_nothing() {
    let backend = Arc::new(InMemoryBackend::new());
    let builder = || {
        MemoryBuilder::new()
            .backend(backend.clone())
            .signing_key(SigningKey::new(SECRET).unwrap())
    };
    let memory = builder().build().unwrap();
    let f = memory.cache(square).name("untrusted::identity");
    f.eval(6);
    let (entry, _) = only_entry(&backend);
    let identity = Key::new(format!("{}/func_code", entry.parent())).unwrap();
    let stored = block_on(false, backend.get(&identity))
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8(stored.to_vec()).unwrap();
    assert!(text.contains("\nsignature "), "{text}");
    // A stranger plants another identity, unsigned: a new memory replaces it, keeps the entry.
    let planted = "cachette function untrusted.identity\ncode 0000\nversion ";
    block_on(false, backend.put(&identity, Bytes::from(planted).into()))
        .unwrap()
        .unwrap();
    let (fresh, reports) = capture(builder());
    let f = fresh.cache(square).name("untrusted::identity");
    assert_eq!(f.eval(6), 36);
    assert!(f.check_call_in_cache(&6));
    assert!(
        block_on(false, backend.get(&entry))
            .unwrap()
            .unwrap()
            .is_some(),
        "the planted identity deleted the entry"
    );
    let w = warnings(&reports);
    assert!(w.iter().any(|w| w.contains("not signed")), "{w:?}");
    // The item vouches for this code again, signed.
    let stored = block_on(false, backend.get(&identity))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&stored).contains("\nsignature "));
}

/// A store whose index other users may write is refused by the default layout; the calls
/// compute their values, and the user is told once, not once a call.
#[test]
fn an_index_others_may_write_is_refused_with_one_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // One place that makes the function: the same function, not a name collision.
    let func = |memory: &Memory| {
        memory
            .cache_fn(square as fn(u64) -> u64)
            .name("refused::square")
    };
    func(&Memory::new(store.to_str().unwrap()).unwrap()).eval(3);
    let index = store.join(cachette::fs::INDEX_DIR);
    assert!(index.is_dir(), "the default layout made an index");
    std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (memory, reports) = capture(Memory::builder().url(store.to_str().unwrap()));
    let f = func(&memory);
    for x in 0..12 {
        assert_eq!(f.eval(x % 4), (x % 4) * (x % 4));
    }
    let warnings = warnings(&reports);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("refuses every operation")
            && warnings[0].contains("the index of this store may be written by another user"),
        "{}",
        warnings[0]
    );
}

// ------------------------------------------------------------------------------------------
// 5. Secrets and strangers' text are never printed.

#[test]
fn debug_and_display_hide_secrets() {
    let url = "redis://admin:p#ss/w@rd?x@127.0.0.1:6390/0";
    let builder = MemoryBuilder::new()
        .url(url)
        .signing_key(SigningKey::new(SECRET).unwrap());
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains("p#ss") && !shown.contains("rd?x"),
        "{shown}"
    );
    assert!(!shown.contains(SECRET), "{shown}");

    let config = MemoryConfig::from_toml(
        &format!(
            "location = \"{url}\"\nsigning_key = \"{SECRET}\"\nprevious_signing_keys = [\"an older secret, long enough\"]\n"
        ),
        "test",
    )
    .unwrap();
    for shown in [
        format!("{config:?}"),
        format!("{config:#?}"),
        config.to_string(),
    ] {
        assert!(
            !shown.contains("p#ss") && !shown.contains("rd?x"),
            "{shown}"
        );
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains("an older secret"), "{shown}");
        assert!(shown.contains("admin"), "{shown}");
    }

    // A shipped configuration leaves the keys out unless asked.
    let memory = MemoryBuilder::new()
        .url("memory://untrusted-shipping")
        .signing_key(SigningKey::new(SECRET).unwrap())
        .build()
        .unwrap();
    let shipped = memory.config().unwrap();
    assert!(shipped.signing_key.is_none());
    assert!(!shipped.to_toml().unwrap().contains(SECRET));
    assert!(
        memory
            .config_with_secrets()
            .unwrap()
            .to_toml()
            .unwrap()
            .contains(SECRET)
    );
}

#[test]
fn strangers_text_reaches_messages_escaped() {
    let backend = Arc::new(InMemoryBackend::new());
    let (memory, reports) = capture(MemoryBuilder::new().backend(backend.clone()).verbose(2));
    let f = memory.cache(square).name("untrusted::escapes");
    f.eval(8);
    let (key, bytes) = only_entry(&backend);
    // An entry written for this call by "other code" whose name carries terminal escapes
    // (a title change, a screen clear) and a right-to-left override.
    let mut meta = cachette::plugin::entry::parse_metadata(&bytes, None).unwrap();
    meta.name = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}evil".into();
    meta.code = Some("\u{1b}[31mred".into());
    let mut value = Vec::new();
    cachette::plugin::entry::encode_value(&cachette::MessagePack, &0u64, &mut value).unwrap();
    let planted = encode_parts(&meta, value, Vec::new(), None).unwrap();
    block_on(false, backend.put(&key, planted))
        .unwrap()
        .unwrap();
    assert_eq!(f.eval(8), 64);
    let lines = common::lines(&reports);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("other code") && l.contains("\\u{1b}")),
        "{lines:?}"
    );
    let mut texts = lines;
    texts.extend(warnings(&reports));
    // And through an error's message.
    let err = memory
        .entry_metadata(
            key.parent().trim_start_matches("cachette/"),
            key.file_name(),
        )
        .map(|_| ());
    texts.extend(err.err().map(|e| e.to_string()));
    for text in &texts {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202e}'),
            "unescaped: {text:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// 1. Argument keys against someone who builds collisions.

/// The first 80 bytes of XXH3's published default secret.
const XXH3_SECRET: [u8; 80] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
];

/// xxh3-128 that also records the bytes it hashes, to see where an argument lands.
#[derive(Debug, Default)]
struct Recorder(Arc<Mutex<Vec<u8>>>);

struct Recording(Arc<Mutex<Vec<u8>>>, Xxh3Hasher);

impl HashAlgorithm for Recorder {
    fn id(&self) -> &'static str {
        "xxh3-128"
    }
    fn hasher(&self) -> Box<dyn StableHasher + Send> {
        Box::new(Recording(self.0.clone(), Xxh3Hasher::default()))
    }
}

impl StableHasher for Recording {
    fn write(&mut self, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
        self.1.write(bytes);
    }
    fn finish(&self) -> Digest {
        self.1.finish()
    }
}

/// A weighted sum of the bytes: different for the two colliding arguments.
fn total(data: Vec<u8>) -> u64 {
    data.iter()
        .enumerate()
        .map(|(i, &b)| (i as u64 + 1) * u64::from(b))
        .sum()
}

/// Two different 4 KiB arguments of `total` with one xxh3-128 key: in the first block of
/// stripes, lane `l` of stripes 0 and 1 hold words whose low half equals the secret's (so the
/// multiplication of XXH3's accumulation adds zero), and whose high halves add to the same
/// sum in both arguments. Built in no time, from the published secret.
fn colliding_arguments() -> (Vec<u8>, Vec<u8>) {
    let base: Vec<u8> = (0..4096u32).map(|i| (i * 13 % 251) as u8).collect();
    let recorder = Recorder::default();
    let log = recorder.0.clone();
    let memory = MemoryBuilder::new()
        .url("memory://untrusted-recorder")
        .hasher(Arc::new(recorder))
        .build()
        .unwrap();
    memory
        .cache(total)
        .name("untrusted::total")
        .eval(base.clone());
    let stream = log.lock().unwrap().clone();
    let at = stream
        .windows(64)
        .position(|w| w == &base[..64])
        .expect("the argument's bytes in the hashed stream");
    let lane = at.div_ceil(8);
    assert!(lane < 8, "the argument starts {at} bytes into the stream");
    let word = |o: usize| u64::from_le_bytes(XXH3_SECRET[o..o + 8].try_into().unwrap());
    let (s0, s1) = (word(8 * lane), word(8 * lane + 8));
    let with = |high: u32, s: u64| (s & 0xffff_ffff) | (u64::from(high) << 32);
    let build = |h0: u32, h1: u32| {
        let mut v = base.clone();
        let (p0, p1) = (8 * lane - at, 64 + 8 * lane - at);
        v[p0..p0 + 8].copy_from_slice(&with(h0, s0).to_le_bytes());
        v[p1..p1 + 8].copy_from_slice(&with(h1, s1).to_le_bytes());
        v
    };
    (build(1000, 5000), build(1001, 4999))
}

#[test]
fn hardened_keys_keep_built_collisions_apart() {
    let (a, b) = colliding_arguments();
    assert_ne!(a, b);
    assert_ne!(total(a.clone()), total(b.clone()));
    // The default keys: one key for both, so a writer who plants `a`'s result serves it for
    // `b` (this is what hardened keys are for).
    let memory = Memory::from_url("memory://untrusted-default-keys").unwrap();
    let f = memory.cache(total).name("untrusted::total");
    assert_eq!(f.eval(a.clone()), total(a.clone()));
    assert_eq!(f.eval(b.clone()), total(a.clone()), "the built collision");
    // Hardened keys: two keys, the right results.
    let hardened = MemoryBuilder::new()
        .url("memory://untrusted-hardened-keys")
        .signing_key(SigningKey::new(SECRET).unwrap())
        .hardened_keys(true)
        .build()
        .unwrap();
    let f = hardened.cache(total).name("untrusted::total");
    assert_eq!(f.eval(a.clone()), total(a.clone()));
    assert_eq!(f.eval(b.clone()), total(b.clone()));
    assert_eq!(hardened.entries(None).unwrap().len(), 2);
    // They need a signing key, and choose the hash themselves.
    let err = MemoryBuilder::new()
        .url("memory://untrusted-hardened-unsigned")
        .hardened_keys(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("signing key"), "{err}");
    let err = MemoryBuilder::new()
        .url("memory://untrusted-hardened-hasher")
        .signing_key(SigningKey::new(SECRET).unwrap())
        .hasher(Arc::new(cachette::Xxh3))
        .hardened_keys(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("hardened_keys"), "{err}");
}
