//! A store shared between processes, users, machines and versions of a program: Cachette deletes
//! only what it wrote and never returns a wrong result, whatever the store holds. One test (or
//! more) per defect of that promise, on every backend where it applies.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use cachette::plugin::{
    Bytes, InMemoryBackend, Key, Prefix, StoreBackend, StoreBackendExt, block_on, testkit,
};
use cachette::{
    Array, Error, MemorizedResult, Memory, MmapMode, Shelved, SigningKey, expires_after,
};

/// Foreign files and folders in a location, as a project folder holds them.
const FOREIGN: &[&str] = &["notes.txt", "src/main.rs", ".git/HEAD", "data/0123.csv"];

fn plant_foreign(root: &Path) {
    for name in FOREIGN {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, name.as_bytes()).unwrap();
    }
}

fn assert_foreign_intact(root: &Path) {
    for name in FOREIGN {
        assert_eq!(
            std::fs::read(root.join(name)).unwrap(),
            name.as_bytes(),
            "{name} must survive"
        );
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// The files below `dir`, relative to it, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The entry file of the one call of `f` in `root`.
fn entry_file(root: &Path, folder: &str) -> PathBuf {
    let dir = root.join("cachette").join(folder);
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().len() == 32)
        .unwrap_or_else(|| panic!("no entry in {}", dir.display()))
}

// ------------------------------------------------------------------------------------------
// 1. Clearing deletes only what Cachette wrote.

#[test]
fn clear_keeps_foreign_files_of_a_project_folder() {
    let dir = tempfile::tempdir().unwrap();
    plant_foreign(dir.path());
    // The files layout, where results are files in cachette/.
    let memory = Memory::from_url(&common::files_url(dir.path())).unwrap();
    let f = memory.cache(square).name("shared::square");
    f.eval(3);
    assert!(
        dir.path().join("cachette").is_dir(),
        "results live in cachette/"
    );
    f.clear().unwrap();
    memory.clear().unwrap();
    memory
        .reduce_size(&cachette::SizeLimits::default().items_limit(0))
        .unwrap();
    assert_foreign_intact(dir.path());
    assert!(
        !dir.path().join(".gitignore").exists(),
        "no .gitignore in a folder the store did not create"
    );
}

#[test]
fn clear_keeps_foreign_objects_of_a_bucket_with_an_empty_prefix() {
    let Some(endpoint) = testkit::server_from_env("CACHETTE_TEST_S3_ENDPOINT") else {
        return;
    };
    let bucket = std::env::var("CACHETTE_TEST_S3_BUCKET").unwrap_or("cachette-test".into());
    let url = format!("s3://{bucket}?endpoint={endpoint}&allow_http=true");
    let memory = Memory::from_url(&url).unwrap();
    let backend = memory.backend().unwrap().clone();
    let id = "a".repeat(32);
    let tag = testkit::unique_root("foreign");
    let foreign: Vec<Key> = [
        format!("{tag}/notes.txt"),
        format!("{tag}/images/{id}"),
        format!("{tag}/func_code"),
    ]
    .iter()
    .map(|k| Key::new(k).unwrap())
    .collect();
    for key in &foreign {
        block_on(
            false,
            backend.put(key, Bytes::from_static(b"theirs").into()),
        )
        .unwrap()
        .unwrap();
    }
    let f = memory.cache(square).name(format!("shared::{tag}"));
    f.eval(4);
    memory.clear().unwrap();
    for key in &foreign {
        let kept = block_on(false, backend.get(key)).unwrap().unwrap();
        assert_eq!(kept.as_deref(), Some(&b"theirs"[..]), "{key} must survive");
    }
    block_on(false, backend.delete_many(&foreign))
        .unwrap()
        .unwrap();
}

#[test]
fn clear_keeps_foreign_keys_of_a_redis_prefix() {
    let Some(server) = testkit::server_from_env("CACHETTE_TEST_REDIS_URL") else {
        return;
    };
    let prefix = testkit::unique_root("foreign");
    let memory = Memory::from_url(&format!("{server}?prefix={prefix}")).unwrap();
    let backend = memory.backend().unwrap().clone();
    let foreign = Key::new(format!("sessions/{}", "b".repeat(32))).unwrap();
    block_on(
        false,
        backend.put(&foreign, Bytes::from_static(b"theirs").into()),
    )
    .unwrap()
    .unwrap();
    memory.cache(square).name("shared::redis").eval(5);
    memory.clear().unwrap();
    let kept = block_on(false, backend.get(&foreign)).unwrap().unwrap();
    assert_eq!(kept.as_deref(), Some(&b"theirs"[..]));
    block_on(false, backend.delete(&foreign)).unwrap().unwrap();
}

// ------------------------------------------------------------------------------------------
// 2. Links are never followed.

#[test]
fn a_function_folder_planted_as_a_link_receives_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let memory = Memory::new(dir.path().join("store")).unwrap();
    let f = memory.cache(square).name("shared::linked");
    let folder = f.id().folder().to_owned();
    std::fs::create_dir_all(dir.path().join("store/cachette")).unwrap();
    std::os::unix::fs::symlink(
        outside.path(),
        dir.path().join("store/cachette").join(&folder),
    )
    .unwrap();
    let (memory, reports) = common::capture(Memory::builder().path(dir.path().join("store")));
    let f = memory.cache(square).name("shared::linked");
    assert_eq!(f.eval(6), 36, "still computed");
    assert_eq!(f.eval(6), 36);
    assert!(
        files_below(outside.path()).is_empty(),
        "nothing written through the link: {:?}",
        files_below(outside.path())
    );
    let warnings = common::warnings(&reports);
    assert!(
        warnings.iter().any(|w| w.contains("symbolic link")),
        "{warnings:?}"
    );
}

// ------------------------------------------------------------------------------------------
// 3. Reads never write.

#[test]
fn reading_a_location_that_does_not_exist_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let memory = Memory::new(&missing).unwrap();
    let f = memory.cache(square).name("shared::read");
    assert!(!f.check_call_in_cache(&2));
    assert!(memory.entries(None).unwrap().is_empty());
    // References open the locations they name only when those are allowed.
    let repo = dir.path().join("repo");
    cachette::allow_reference_locations([missing.to_str().unwrap(), repo.to_str().unwrap()]);
    let reference: MemorizedResult<u64> =
        MemorizedResult::from_parts(missing.to_str().unwrap(), f.id().folder(), "0".repeat(32));
    assert!(matches!(reference.get(), Err(Error::NotFound { .. })));
    assert!(!missing.exists(), "a read created the location");
    // In a repository root: no `.gitignore` appears.
    std::fs::create_dir(&repo).unwrap();
    let reference: MemorizedResult<u64> =
        MemorizedResult::from_parts(repo.to_str().unwrap(), f.id().folder(), "0".repeat(32));
    assert!(reference.get().is_err());
    assert!(files_below(&repo).is_empty(), "{:?}", files_below(&repo));
}

/// The change time of a file (what the local disk reports as its last access).
fn ctime(path: &Path) -> SystemTime {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    SystemTime::UNIX_EPOCH + Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32)
}

#[test]
fn checks_shelving_and_verifying_record_no_access() {
    let dir = tempfile::tempdir().unwrap();
    // The files layout, where an entry is a file whose times record its accesses.
    let memory = Memory::from_url(&common::files_url(dir.path())).unwrap();
    let f = memory.cache(square).name("shared::access");
    f.eval(7);
    let file = entry_file(dir.path(), f.id().folder());
    let before = ctime(&file);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(f.check_call_in_cache(&7));
    assert!(matches!(f.call_and_shelve(7), Shelved::Memorized(_)));
    let entries = memory.entries(None).unwrap();
    assert!(
        memory
            .verify_entry(&entries[0].func, &entries[0].args_id)
            .unwrap()
    );
    memory
        .entry_metadata(&entries[0].func, &entries[0].args_id)
        .unwrap();
    assert_eq!(
        ctime(&file),
        before,
        "a read that only looks recorded an access"
    );
    f.eval(7);
    assert!(ctime(&file) > before, "a hit records its access");
}

// ------------------------------------------------------------------------------------------
// 4. Closures: state is part of the key.

#[test]
fn closures_built_with_other_state_do_not_share_results() {
    let memory = Memory::from_url("memory://shared-state").unwrap();
    // One place in the source, so one function, built with two states.
    let scaled = |k: u64| memory.cache_with(k, |k: &u64, x: u64| x * k);
    for k in [1u64, 100] {
        assert_eq!(scaled(k).eval(3), 3 * k, "k = {k}");
    }
    assert!(
        scaled(1).check_call_in_cache(&3),
        "the same state shares its results"
    );
    assert!(!scaled(2).check_call_in_cache(&3));
}

// ------------------------------------------------------------------------------------------
// 5, 6, 8. Each entry names the code that wrote it.

/// Versions 1 and 2 of one function, with their call counts.
struct Versions {
    runs: [Arc<AtomicUsize>; 2],
}

impl Versions {
    fn new() -> Self {
        Versions {
            runs: [Arc::default(), Arc::default()],
        }
    }

    /// Version `v` (1 or 2) of `answer`, on `memory`: it returns `v`.
    fn func(&self, memory: &Memory, v: u64) -> impl Fn(u64) -> u64 + use<> {
        let runs = self.runs[v as usize - 1].clone();
        let f = memory
            .cache_capturing(move |_: u64| {
                runs.fetch_add(1, Ordering::SeqCst);
                v
            })
            .name("shared::answer")
            .version(v.to_string());
        move |x| f.eval(x)
    }
}

fn version_checks(url: &str) {
    let memory = Memory::from_url(url).unwrap();
    let v = Versions::new();
    let (one, two) = (
        v.func(&memory, 1),
        v.func(&Memory::from_url(url).unwrap(), 2),
    );
    assert_eq!(one(0), 1);
    // Version 2 runs meanwhile (another process): it takes over the folder and stores.
    assert_eq!(two(0), 2);
    // The running version 1 must not serve version 2's result, nor version 2 version 1's.
    for _ in 0..2 {
        assert_eq!(one(0), 1);
        assert_eq!(two(0), 2);
    }
    memory.clear().unwrap();
}

#[test]
fn two_versions_running_at_once_never_serve_each_others_results() {
    version_checks("memory://shared-versions");
    let dir = tempfile::tempdir().unwrap();
    version_checks(dir.path().to_str().unwrap());
    if let Some(server) = testkit::server_from_env("CACHETTE_TEST_REDIS_URL") {
        version_checks(&format!(
            "{server}?prefix={}",
            testkit::unique_root("versions")
        ));
    }
}

#[test]
fn a_missing_identity_item_does_not_vouch_for_stored_results() {
    let backend = Arc::new(InMemoryBackend::new());
    let memory = Memory::with_backend(backend.clone());
    let v = Versions::new();
    assert_eq!(v.func(&memory, 1)(0), 1);
    // The identity item goes (deleted, evicted, or an invalidation that failed half-way).
    let identity = block_on(true, backend.list(&Prefix::new("cachette").unwrap()))
        .unwrap()
        .unwrap()
        .into_iter()
        .find(|i| i.key.as_str().ends_with("/func_code"))
        .unwrap()
        .key;
    block_on(true, backend.delete(&identity)).unwrap().unwrap();
    // A process of version 2 adopts the folder: version 1's result is not its result.
    let fresh = Memory::with_backend(backend.clone());
    assert_eq!(v.func(&fresh, 2)(0), 2);
}

#[test]
fn a_signed_entry_of_old_code_copied_back_is_not_served() {
    let backend = Arc::new(InMemoryBackend::new());
    let signed = || {
        Memory::builder()
            .backend(backend.clone())
            .signing_key(SigningKey::new("a secret shared by the team").unwrap())
            .build()
            .unwrap()
    };
    let v = Versions::new();
    assert_eq!(v.func(&signed(), 1)(0), 1);
    let items = || {
        block_on(true, backend.list(&Prefix::new("cachette").unwrap()))
            .unwrap()
            .unwrap()
    };
    let entry = items()
        .into_iter()
        .find(|i| !i.key.as_str().ends_with("/func_code"))
        .unwrap()
        .key;
    let old = block_on(true, backend.get(&entry))
        .unwrap()
        .unwrap()
        .unwrap();
    // Version 2: invalidates, then the old signed entry is copied back.
    let two = v.func(&signed(), 2);
    assert_eq!(two(1), 2);
    block_on(true, backend.put(&entry, old.into()))
        .unwrap()
        .unwrap();
    assert_eq!(
        two(0),
        2,
        "version 1's signed entry was served to version 2"
    );
}

// ------------------------------------------------------------------------------------------
// 7. Names that read alike never share a folder, in any process.

#[test]
fn names_that_read_alike_never_share_results() {
    let dir = tempfile::tempdir().unwrap();
    for (a, b) in [
        ("model/v1", "model_v1"),
        ("stats::mean", "stats.mean"),
        ("résumé", "r_sum_"),
    ] {
        // Two processes: each memory is new, so no collision warning could help.
        let first = Memory::new(dir.path()).unwrap();
        assert_eq!(
            first
                .cache_with(1u64, |s: &u64, _x: u64| *s)
                .name(a)
                .eval(0),
            1
        );
        let second = Memory::new(dir.path()).unwrap();
        assert_eq!(
            second
                .cache_with(2u64, |s: &u64, _x: u64| *s)
                .name(b)
                .eval(0),
            2
        );
        assert_ne!(
            first.cache(square).name(a).id().folder(),
            second.cache(square).name(b).id().folder()
        );
    }
}

// ------------------------------------------------------------------------------------------
// 9. Mapped arrays are checked.

fn ramp(n: usize) -> Array<f64> {
    Array::from_vec((0..n).map(|i| i as f64).collect(), [n]).unwrap()
}

fn ramp_of(n: usize) -> Array<f64> {
    ramp(n)
}

#[test]
fn flipped_bits_in_a_mapped_array_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let build = |strict: bool| {
        common::capture(
            Memory::builder()
                .path(dir.path())
                .mmap_mode(MmapMode::ReadOnly)
                .strict(strict),
        )
    };
    let (memory, _) = build(false);
    let f = memory.cache(ramp_of).name("shared::ramp");
    f.eval(10_000);
    let file = entry_file(dir.path(), f.id().folder());
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 1000; // Inside the array.
    bytes[at] ^= 0x40;
    // Written as a new file renamed over the entry, as a writer of the store would.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, &file).unwrap();

    let (memory, reports) = build(false);
    let f = memory.cache(ramp_of).name("shared::ramp");
    assert!(f.eval(10_000) == ramp(10_000), "a damaged array was served");
    assert!(
        common::warnings(&reports)
            .iter()
            .any(|w| w.contains("checksum")),
        "{:?}",
        common::warnings(&reports)
    );
    // Damage it again; strict mode gives an error, never `Ok(wrong)`.
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let (memory, _) = build(true);
    let f = memory.cache(ramp_of).name("shared::ramp");
    match f.try_eval(10_000) {
        Err(_) => {}
        Ok(a) => assert!(a == ramp(10_000), "strict mode returned a damaged array"),
    }
}

// ------------------------------------------------------------------------------------------
// 10. Checks and shelving check what they answer for.

#[test]
fn checks_and_shelving_refuse_damaged_swapped_and_truncated_entries() {
    let backend = Arc::new(InMemoryBackend::new());
    let memory = Memory::with_backend(backend.clone());
    let f = memory.cache(square).name("shared::checked");
    let key_of = |x: u64, known: &[Key]| {
        f.eval(x);
        memory
            .entries(None)
            .unwrap()
            .into_iter()
            .map(|e| Key::new(format!("cachette/{}", e.key())).unwrap())
            .find(|k| !known.contains(k))
            .unwrap()
    };
    let two = key_of(2, &[]);
    let three = key_of(3, std::slice::from_ref(&two));
    let get = |k: &Key| block_on(true, backend.get(k)).unwrap().unwrap().unwrap();
    let put = |k: &Key, b: &[u8]| {
        block_on(true, backend.put(k, Bytes::copy_from_slice(b).into()))
            .unwrap()
            .unwrap()
    };
    let (of_two, of_three) = (get(&two), get(&three));
    let shelved_loads = |x: u64| match f.call_and_shelve(x) {
        Shelved::Memorized(r) => assert_eq!(r.get().unwrap(), x * x),
        Shelved::NotMemorized(_) => panic!("not stored"),
    };
    // Swapped: each entry under the other's key.
    put(&two, &of_three);
    put(&three, &of_two);
    assert!(!f.check_call_in_cache(&2) && !f.check_call_in_cache(&3));
    shelved_loads(2);
    shelved_loads(3);
    // Truncated.
    put(&two, &of_two[..of_two.len() - 1]);
    assert!(!f.check_call_in_cache(&2));
    shelved_loads(2);
    // A bit of the metadata flipped.
    let mut flipped = of_two.to_vec();
    flipped[60] ^= 1;
    put(&two, &flipped);
    assert!(!f.check_call_in_cache(&2));
    shelved_loads(2);
}

#[test]
fn with_signing_checks_refuse_unsigned_entries() {
    let backend = Arc::new(InMemoryBackend::new());
    let plain = Memory::with_backend(backend.clone());
    plain.cache(square).name("shared::sig").eval(4);
    let signed = Memory::builder()
        .backend(backend.clone())
        .signing_key(SigningKey::new("a secret shared by the team").unwrap())
        .build()
        .unwrap();
    let f = signed.cache(square).name("shared::sig");
    assert!(
        !f.check_call_in_cache(&4),
        "an unsigned entry counts as cached"
    );
    assert!(matches!(f.call_and_shelve(4), Shelved::Memorized(_)));
    assert!(f.check_call_in_cache(&4), "stored again, signed");
}

// ------------------------------------------------------------------------------------------
// 11. Times in the future.

#[test]
fn an_entry_dated_years_ahead_does_not_pass_expiry() {
    let backend = Arc::new(InMemoryBackend::new());
    let memory = Memory::with_backend(backend.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = {
        let runs = runs.clone();
        move |x: u64| {
            runs.fetch_add(1, Ordering::SeqCst);
            x
        }
    };
    let f = memory
        .cache_capturing(counted)
        .name("shared::skew")
        .validate(expires_after(Duration::from_secs(60)));
    f.eval(1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A writer whose clock is 10 years ahead: its entry, forged here with such a time.
    let entries = memory.entries(None).unwrap();
    let key = Key::new(format!("cachette/{}", entries[0].key())).unwrap();
    let stored = block_on(true, backend.get(&key)).unwrap().unwrap().unwrap();
    let entry = cachette::plugin::entry::Entry::parse(stored).unwrap();
    let mut meta = entry.metadata().unwrap();
    meta.time = chrono::Utc::now() + chrono::TimeDelta::days(3650);
    let payload = entry.payload().to_vec();
    let forged = cachette::plugin::entry::encode_parts(&meta, payload, Vec::new(), None).unwrap();
    block_on(true, backend.put(&key, forged)).unwrap().unwrap();
    assert_eq!(f.eval(1), 1);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "an entry from the future passed expires_after"
    );
}

#[test]
fn a_file_dated_in_the_future_is_neither_recent_nor_immortal() {
    let dir = tempfile::tempdir().unwrap();
    // The files layout, where an entry is a file whose times can be set.
    let memory = Memory::from_url(&common::files_url(dir.path())).unwrap();
    let f = memory.cache(square).name("shared::future");
    f.eval(1);
    f.eval(2);
    let file = entry_file(dir.path(), f.id().folder());
    let ahead = SystemTime::now() + Duration::from_secs(10 * 365 * 86400);
    let handle = std::fs::File::options().write(true).open(&file).unwrap();
    handle
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(ahead)
                .set_modified(ahead),
        )
        .unwrap();
    for entry in memory.entries(None).unwrap() {
        assert!(
            entry.last_access <= chrono::Utc::now(),
            "listed in the future: {entry:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(1100));
    let report = memory
        .reduce_size(&cachette::SizeLimits::default().age_limit(chrono::TimeDelta::seconds(1)))
        .unwrap();
    assert_eq!(
        report.kept_items, 0,
        "an entry dated ahead survived an age limit"
    );
}

// ------------------------------------------------------------------------------------------
// 12. Clearing leaves live writers alone.

#[test]
fn clear_leaves_the_files_of_live_writers_alone() {
    let dir = tempfile::tempdir().unwrap();
    // The files layout, where writers write temporary files in the function's folder.
    let memory = Memory::from_url(&common::files_url(dir.path())).unwrap();
    let f = memory.cache(square).name("shared::live");
    f.eval(1);
    let folder = dir.path().join("cachette").join(f.id().folder());
    // A write under way in this process: its temporary file.
    let temp = folder.join(format!(
        ".cachette-tmp-{}.{}-0-x",
        cachette::plugin::owner_tag(),
        std::process::id()
    ));
    std::fs::write(&temp, b"partial").unwrap();
    memory.clear().unwrap();
    assert!(temp.exists(), "a live writer's temporary file was deleted");
    let _ = std::fs::remove_file(&temp);
}

/// The default layout reads no index that another user may write (LMDB trusts its files): the
/// calls on such a store are computed, with a warning that says why, never loaded from it; the
/// index layout, asked for, trusts its writers and reads it.
#[test]
fn an_index_others_may_write_is_not_read_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let calls = AtomicUsize::new(0);
    let counted = |x: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        x * x
    };
    {
        let memory = Memory::new(dir.path()).unwrap();
        assert_eq!(memory.cache_capturing(&counted).name("ss::sq").eval(3), 9);
    }
    let data = dir.path().join(".cachette-index/data.mdb");
    assert!(data.is_file(), "the default layout made an index");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o646)).unwrap();
    let (memory, reports) = common::capture(Memory::builder().path(dir.path()));
    let f = memory.cache_capturing(&counted).name("ss::sq");
    assert_eq!(f.eval(3), 9);
    assert_eq!(f.eval(3), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "computed, not loaded");
    let w = common::warnings(&reports);
    assert!(w.iter().any(|w| w.contains("another user")), "{w:?}");
    // Asked for, the index layout reads it.
    let trusting = Memory::from_url(&format!("file://{}?layout=index", dir.path().display()));
    let f = trusting.unwrap().cache_capturing(&counted).name("ss::sq");
    assert_eq!(f.eval(3), 9);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "loaded");
}

/// A function whose identity is longer than the 4 KiB a read of its identity item takes (a
/// version string of kilobytes here; a name of many generic types does it too): the identity
/// read back was cut, differed from the function's, and each new process took it for a code
/// change and deleted all its results. Its long fields are now written as their beginning and
/// digest, and a second memory on the store hits.
#[test]
fn a_function_with_a_long_identity_keeps_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let version = "v".repeat(5000);
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let memory = || {
        let reports = reports.clone();
        Memory::builder()
            .path(dir.path())
            .reporter(cachette::Reporter::new(move |r| {
                reports.lock().unwrap().push(format!("{r:?}"))
            }))
            .build()
            .unwrap()
    };
    for process in 0..2 {
        let runs = runs.clone();
        let f = memory()
            .cache_capturing(move |x: u64| {
                runs.fetch_add(1, Ordering::SeqCst);
                x + 1
            })
            .name("shared::long")
            .version(&version);
        assert_eq!(f.eval(1), 2, "process {process}");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "{:?}",
        reports.lock().unwrap()
    );
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
}
