//! `explain`: why a call would miss. One test per cause (no entries, the nearest entry and the
//! arguments that differ, other code, another version, validation, expiry, a damaged entry, an
//! unavailable store, a hit), the `#[memoize]` handle, `Memory::explain` by name, the one
//! verbose line of a miss, and that explaining writes nothing (the items of the store and their
//! access times are the same before and after), on the local disk and on a real Redis.
//!
//! Redis comes from `CACHETTE_TEST_REDIS_URL` (`cargo xtask services start` prints it). Without
//! it the Redis test is skipped with a message, except under `CI=true`, where it fails; a
//! configured server that does not answer is a failure.

use std::sync::Arc;
use std::time::Duration;

use cachette::plugin::{DateTime, Utc, chrono::TimeDelta};
use cachette::plugin::{
    DynBackend, InMemoryBackend, Key, Prefix, StoreBackend, StoreBackendExt, block_on, testkit,
};
use cachette::redis::RedisConfig;
use cachette::{
    Cause, CodeInfo, Explanation, MAX_EXAMINED, MemorizedFunc, Memory, Metadata, expires_after,
    memoize,
};
use common::switch::{DOWN, Switch};
use common::{capture, files_layout, lines, warnings};

mod common;

fn add((x, y): (u64, u64)) -> u64 {
    x + y
}

type Add = fn((u64, u64)) -> u64;

/// `add` memoized as `tests::add` in `memory`, with its arguments named `x` and `y`.
fn added(memory: &Memory) -> MemorizedFunc<u64, Add> {
    memory
        .cache_fn(add as Add)
        .name("tests::add")
        .arg_names(["x", "y"])
}

fn only(why: &Explanation) -> &Cause {
    assert!(!why.hit, "{why}");
    assert_eq!(why.causes.len(), 1, "{why}");
    &why.causes[0]
}

fn fresh(tag: &str) -> Memory {
    Memory::from_url(&format!("memory://explain-{tag}")).unwrap()
}

#[test]
fn a_function_without_entries() {
    let memory = fresh("none");
    let why = added(&memory).explain(&(1, 2));
    assert_eq!(only(&why), &Cause::NoEntries, "{why}");
    assert_eq!(why.examined, 0);
    assert!(why.args_id.is_some());
    assert!(
        why.reason().contains("no stored result at all"),
        "{}",
        why.reason()
    );
}

#[test]
fn the_nearest_entry_and_the_arguments_that_differ() {
    let memory = fresh("nearest");
    let f = added(&memory);
    f.eval((1, 2));
    f.eval((7, 8));
    let why = f.explain(&(1, 3));
    let Cause::OtherArguments {
        nearest: Some(nearest),
    } = only(&why)
    else {
        panic!("{why}");
    };
    assert_eq!(nearest.differing.len(), 1, "{why}");
    let diff = &nearest.differing[0];
    assert_eq!(diff.name, "y");
    assert_eq!(diff.stored.as_deref(), Some("2"));
    assert_eq!(diff.call.as_deref(), Some("3"));
    assert_eq!(nearest.code.name, "tests::add");
    assert_eq!(why.examined, 2);
    assert!(!why.bounded);
    let text = why.to_string();
    assert!(text.contains("y (stored 2, this call 3)"), "{text}");
    assert!(text.contains("2 stored entries examined"), "{text}");
}

/// The stored and the current code of an explanation's `OtherCode` cause.
fn other_code(why: &Explanation) -> (&CodeInfo, &CodeInfo) {
    why.causes
        .iter()
        .find_map(|c| match c {
            Cause::OtherCode {
                stored, current, ..
            } => Some((stored, current)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{why}"))
}

#[test]
fn the_code_hash_changed() {
    let memory = fresh("code");
    added(&memory).code_hash("a1b2").eval((1, 2));
    let why = added(&memory).code_hash("c3d4").explain(&(1, 2));
    assert!(!why.hit);
    let other = other_code(&why);
    assert_eq!(other.0.code.as_deref(), Some("a1b2"));
    assert_eq!(other.1.code.as_deref(), Some("c3d4"));
    // The next call would clear the function: the identity item names the old code.
    assert!(
        why.has(|c| matches!(c, Cause::IdentityChanged { .. })),
        "{why}"
    );
    assert!(why.to_string().contains("code hash a1b2 -> c3d4"), "{why}");
    // Explaining cleared nothing: the old code still hits.
    assert!(added(&memory).code_hash("a1b2").explain(&(1, 2)).hit);
}

#[test]
fn the_version_changed() {
    let memory = fresh("version");
    added(&memory).version("1").eval((1, 2));
    let why = added(&memory).version("2").explain(&(1, 2));
    let other = other_code(&why);
    assert_eq!(other.0.version.as_deref(), Some("1"));
    assert_eq!(other.1.version.as_deref(), Some("2"));
    assert_eq!(other.0.code, other.1.code);
    assert!(why.reason().contains("version 1 -> 2"), "{}", why.reason());
}

#[test]
fn refused_by_validation() {
    let memory = fresh("validation");
    let f = added(&memory).validate(|meta: &Metadata| meta.duration > 3600.0);
    f.eval((1, 2));
    let why = f.explain(&(1, 2));
    assert!(
        matches!(only(&why), Cause::RefusedByValidation { .. }),
        "{why}"
    );
    assert!(why.reason().contains("refused by validation"));
    // Without the validation, the same entry is a hit.
    assert!(added(&memory).explain(&(1, 2)).hit);
}

#[test]
fn expired() {
    // On the local disk, which keeps expired entries (the in-memory store drops them itself).
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::from_url(dir.path().to_str().unwrap()).unwrap();
    let f = added(&memory).validate(expires_after(Duration::from_millis(20)));
    f.eval((1, 2));
    std::thread::sleep(Duration::from_millis(60));
    let why = f.explain(&(1, 2));
    let Cause::Expired {
        age_secs,
        lifetime_secs,
        ..
    } = only(&why)
    else {
        panic!("{why}");
    };
    assert!(age_secs >= lifetime_secs, "{why}");
    assert!((lifetime_secs - 0.02).abs() < 1e-9, "{why}");
    assert!(why.reason().contains("expired"), "{}", why.reason());
}

#[test]
fn a_damaged_entry() {
    let dir = tempfile::tempdir().unwrap();
    // The files layout, where the entry is a file to damage.
    let (memory, reports) = capture(files_layout(dir.path()));
    let f = added(&memory);
    f.eval((1, 2));
    let args_id = f.explain(&(1, 2)).args_id.unwrap();
    let file = std::fs::read_dir(dir.path().join("cachette"))
        .unwrap()
        .map(|e| e.unwrap().path().join(&args_id))
        .find(|p| p.exists())
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[..8].copy_from_slice(b"XXXXXXXX");
    std::fs::write(&file, bytes).unwrap();
    let why = f.explain(&(1, 2));
    let Cause::Unusable { reason, .. } = only(&why) else {
        panic!("{why}");
    };
    assert!(reason.contains("not a cachette entry"), "{reason}");
    assert!(why.reason().starts_with("miss: stored result unusable"));
    // Explaining prints nothing: the call that meets the entry warns.
    assert_eq!(warnings(&reports), Vec::<String>::new());
}

#[test]
fn a_hit() {
    let memory = fresh("hit");
    let f = added(&memory);
    f.eval((1, 2));
    let why = f.explain(&(1, 2));
    assert!(why.hit, "{why}");
    assert!(why.causes.is_empty());
    assert!(why.reason().starts_with("hit"));
    assert!(
        why.to_string().contains("would load its stored result"),
        "{why}"
    );
    assert!(f.check_call_in_cache(&(1, 2)));
}

#[test]
fn a_disabled_memory() {
    let why = added(&Memory::disabled()).explain(&(1, 2));
    assert_eq!(only(&why), &Cause::Disabled);
}

#[tokio::test(flavor = "multi_thread")]
async fn async_callers_get_the_same_explanation() {
    let memory = fresh("async");
    let f = added(&memory);
    f.eval((1, 2));
    assert!(f.explain_async(&(1, 2)).await.hit);
    let why = f.explain_async(&(1, 5)).await;
    assert!(matches!(only(&why), Cause::OtherArguments { .. }), "{why}");
}

#[test]
fn an_unreachable_store_and_an_open_breaker() {
    let store = Switch::new();
    let (memory, reports) = capture(
        Memory::builder()
            .backend(store.clone())
            .breaker(2, Duration::from_secs(600))
            .verbose(1),
    );
    let f = added(&memory);
    f.eval((1, 2));
    store.set(DOWN);
    let why = f.explain(&(1, 2));
    let Cause::StoreUnavailable { reason } = only(&why) else {
        panic!("{why}");
    };
    assert!(reason.contains("connection refused"), "{reason}");
    // Two more faults open the breaker: calls skip the store, and explain says so.
    f.eval((1, 2));
    f.eval((1, 2));
    let why = f.explain(&(1, 2));
    let Cause::StoreUnavailable { reason } = only(&why) else {
        panic!("{why}");
    };
    assert!(reason.contains("circuit breaker open"), "{reason}");
    reports.lock().unwrap().clear();
    f.eval((1, 2));
    let lines = lines(&reports);
    let skipped: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("unavailable (circuit breaker open)"))
        .collect();
    assert_eq!(skipped.len(), 1, "{lines:?}");
}

#[test]
fn explanations_examine_a_bounded_number_of_entries() {
    let memory = fresh("bounded");
    let f = added(&memory);
    for x in 0..=MAX_EXAMINED as u64 {
        f.eval((x, 0));
    }
    let why = f.explain(&(0, 1));
    assert!(why.bounded, "{why}");
    assert_eq!(why.examined, MAX_EXAMINED);
    assert!(why.to_string().contains("the function holds more"), "{why}");
}

/// The one line of a miss at verbosity 1, for each cheap reason.
#[test]
fn a_verbose_miss_says_why_in_one_line() {
    let (memory, reports) = capture(Memory::builder().url("memory://explain-verbose").verbose(1));
    let reasons = |reports: &common::Reports| {
        let all = lines(reports);
        reports.lock().unwrap().clear();
        all.into_iter()
            .filter(|l| l.starts_with("[Memory] ") && !l.starts_with("[Memory] Calling"))
            .collect::<Vec<_>>()
    };
    let f = added(&memory);
    f.eval((1, 2));
    assert_eq!(
        reasons(&reports),
        ["[Memory] No stored result of tests::add for these arguments: computing it"]
    );
    f.eval((1, 2));
    assert_eq!(reasons(&reports), Vec::<String>::new(), "a hit");
    let expiring = added(&memory).validate(expires_after(Duration::from_millis(10)));
    std::thread::sleep(Duration::from_millis(40));
    expiring.eval((1, 2));
    let said = reasons(&reports);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with("[Memory] The stored result of tests::add has expired (age "),
        "{said:?}"
    );
    let refusing = added(&memory).validate(|_: &Metadata| false);
    refusing.eval((1, 2));
    assert_eq!(
        reasons(&reports),
        [
            "[Memory] The stored result of tests::add is no longer valid (refused by validation): computing it again"
        ]
    );
}

#[memoize(memory = MACRO_MEMORY)]
fn scaled(x: u64, factor: u64) -> u64 {
    x * factor
}

static MACRO_MEMORY: std::sync::LazyLock<Memory> =
    std::sync::LazyLock::new(|| Memory::from_url("memory://explain-macro").unwrap());

#[test]
fn the_memoize_handle_explains() {
    assert_eq!(scaled(2, 3), 6);
    assert!(scaled::explain(&2, &3).hit);
    let why = scaled::explain(&2, &4);
    let Cause::OtherArguments {
        nearest: Some(nearest),
    } = only(&why)
    else {
        panic!("{why}");
    };
    assert_eq!(nearest.differing[0].name, "factor");
    assert!(why.function.ends_with("::scaled"), "{why}");
}

#[test]
fn memory_explain_by_name() {
    let memory = fresh("by-name");
    let f = added(&memory).version("2");
    f.eval((1, 2));
    f.eval((1, 5));
    let args = |x: &str, y: &str| {
        vec![
            ("x".to_owned(), x.to_owned()),
            ("y".to_owned(), y.to_owned()),
        ]
    };
    let folder = f.id().folder().to_owned();
    for name in ["tests::add", "tests.add", folder.as_str()] {
        let why = memory.explain(name, &args("1", "2")).unwrap();
        assert!(why.hit, "{name}: {why}");
        assert_eq!(why.function, "tests::add");
        assert_eq!(why.folder, folder);
    }
    let why = memory.explain("tests::add", &args("1", "3")).unwrap();
    let Cause::OtherArguments {
        nearest: Some(nearest),
    } = only(&why)
    else {
        panic!("{why}");
    };
    assert_eq!(nearest.differing[0].name, "y");
    let why = memory.explain("tests::nothing", &args("1", "2")).unwrap();
    assert_eq!(only(&why), &Cause::NoEntries);
    // An entry written by other code than the function's stored identity is not a hit, and
    // the stored code identities are listed when they disagree. A second memory on the same
    // store writes version 3 (and its identity, clearing the function); the first memory,
    // which checked version 2 already, then writes an entry of version 2.
    let other = fresh("by-name");
    added(&other).version("3").eval((4, 4));
    f.eval((1, 2));
    let why = memory.explain("tests::add", &args("4", "4")).unwrap();
    assert!(why.hit, "{why}");
    let why = memory.explain("tests::add", &args("1", "2")).unwrap();
    let Cause::OtherCode {
        stored, current, ..
    } = only(&why)
    else {
        panic!("{why}");
    };
    assert_eq!(stored.version.as_deref(), Some("2"));
    assert_eq!(current.version.as_deref(), Some("3"));
    assert_eq!(why.stored_codes.len(), 2, "{why}");
    assert!(
        why.to_string().contains("written by different code"),
        "{why}"
    );
}

/// Every item of the store with its size and last access.
fn snapshot(backend: &DynBackend) -> Vec<(String, u64, DateTime<Utc>)> {
    let mut items: Vec<_> = block_on(false, backend.list(&Prefix::root()))
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|i| (i.key.to_string(), i.size, i.last_access))
        .collect();
    items.sort();
    items
}

/// Whether two snapshots hold the same items, of the same sizes, accessed at the same times.
/// Redis gives an item's last access as the listing's time minus its idle time in whole
/// seconds: the same access reads up to a second apart, while a new access (after the two
/// seconds the test waits) moves it by two seconds or more.
fn unchanged(before: &[(String, u64, DateTime<Utc>)], after: &[(String, u64, DateTime<Utc>)]) {
    let items = |s: &[(String, u64, DateTime<Utc>)]| {
        s.iter()
            .map(|(k, n, _)| (k.clone(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(items(after), items(before), "explaining changed the store");
    for ((key, _, then), (_, _, now)) in before.iter().zip(after) {
        let moved = (*now - *then).abs();
        assert!(
            moved < TimeDelta::seconds(1),
            "explaining recorded an access of {key}: {then} -> {now}"
        );
    }
}

/// Explains every kind of call against `memory`, which holds entries of `tests::add` written
/// by version 1, and checks that nothing in the store changed.
fn explaining_writes_nothing(memory: &Memory) {
    let v1 = added(memory).version("1");
    v1.eval((1, 2));
    v1.eval((3, 4));
    let backend = memory.backend().unwrap().clone();
    // Long enough for a new access to show (see `unchanged`).
    std::thread::sleep(Duration::from_millis(2100));
    let before = snapshot(&backend);
    assert!(before.len() >= 3, "{before:?}");
    assert!(v1.explain(&(1, 2)).hit);
    assert!(!v1.explain(&(1, 9)).hit);
    // Other code: a call would clear the function; explaining must not.
    let v2 = added(memory).version("2");
    let why = v2.explain(&(1, 2));
    assert!(
        why.has(|c| matches!(c, Cause::IdentityChanged { .. })),
        "{why}"
    );
    assert!(
        memory
            .explain("tests::add", &[("x".into(), "1".into())])
            .is_ok()
    );
    unchanged(&before, &snapshot(&backend));
    // A hit does record an access: the check above would see it.
    v1.eval((1, 2));
    let after_hit = snapshot(&backend);
    let moved = before
        .iter()
        .zip(&after_hit)
        .any(|(a, b)| b.2 - a.2 >= TimeDelta::seconds(2));
    assert!(
        moved,
        "a hit recorded no access: {before:?} -> {after_hit:?}"
    );
}

#[test]
fn explaining_writes_nothing_on_the_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::from_url(dir.path().to_str().unwrap()).unwrap();
    explaining_writes_nothing(&memory);
}

#[test]
fn explaining_on_redis() {
    let Some(url) = testkit::server_from_env("CACHETTE_TEST_REDIS_URL") else {
        return;
    };
    let backend = RedisConfig::new(url.clone())
        .with_prefix(testkit::unique_root("explain"))
        .build_backend()
        .expect("a Redis backend");
    let backend: DynBackend = Arc::new(backend);
    let probe = Key::new("probe").unwrap();
    if let Err(e) = block_on(false, backend.contains(&probe)).expect("the I/O runtime") {
        panic!("CACHETTE_TEST_REDIS_URL={url} is set, but Redis does not answer: {e}");
    }
    let memory = Memory::builder().backend(backend.clone()).build().unwrap();
    explaining_writes_nothing(&memory);
    let f = added(&memory).version("1");
    let why = f.explain(&(3, 5));
    let Cause::OtherArguments {
        nearest: Some(nearest),
    } = only(&why)
    else {
        panic!("{why}");
    };
    assert_eq!(nearest.differing[0].name, "y", "{why}");
    assert_eq!(nearest.differing[0].stored.as_deref(), Some("4"));
    memory.clear().unwrap();
    assert_eq!(only(&f.explain(&(1, 2))), &Cause::NoEntries);
    block_on(false, backend.delete_prefix(&Prefix::root()))
        .unwrap()
        .unwrap();
}

/// An entry whose metadata carries terminal escapes and a right-to-left override (in its name,
/// code hash and readable arguments): the explanation quotes them escaped, in its text and its
/// fields.
#[test]
fn strangers_text_is_escaped() {
    let backend = Arc::new(InMemoryBackend::new());
    let memory = Memory::builder().backend(backend.clone()).build().unwrap();
    let f = added(&memory);
    f.eval((1, 2));
    let items = block_on(false, backend.list(&Prefix::root()))
        .unwrap()
        .unwrap();
    let key = items
        .iter()
        .map(|i| i.key.clone())
        .find(|k| !k.as_str().ends_with("func_code"))
        .unwrap();
    let bytes = block_on(false, backend.get(&key))
        .unwrap()
        .unwrap()
        .unwrap();
    let mut meta = cachette::plugin::entry::parse_metadata(&bytes, None).unwrap();
    meta.name = "\u{1b}]0;owned\u{7}\u{202e}evil".into();
    meta.code = Some("\u{1b}[31mred".into());
    meta.input_args = vec![("\u{1b}[2Jx".into(), "\u{1b}[31m1".into())];
    let mut value = Vec::new();
    cachette::plugin::entry::encode_value(&cachette::MessagePack, &0u64, &mut value).unwrap();
    let planted = cachette::plugin::entry::encode_parts(&meta, value, Vec::new(), None).unwrap();
    block_on(false, backend.put(&key, planted))
        .unwrap()
        .unwrap();
    let raw = |s: &str| s.contains('\u{1b}') || s.contains('\u{202e}') || s.contains('\u{7}');
    // The planted entry under the call's key: other code.
    let why = f.explain(&(1, 2));
    assert!(!raw(&why.to_string()), "{why:?}");
    assert!(why.to_string().contains("\\u{1b}"), "{why}");
    // The planted entry as the nearest one.
    let why = f.explain(&(5, 6));
    assert!(!raw(&why.to_string()), "{why:?}");
    let Cause::OtherArguments {
        nearest: Some(nearest),
    } = only(&why)
    else {
        panic!("{why}");
    };
    assert!(
        nearest
            .differing
            .iter()
            .all(|d| !raw(&d.name) && !d.stored.as_deref().is_some_and(raw))
    );
    assert!(!raw(&nearest.code.name));
    let by_name = memory
        .explain("tests::add", &[("x".into(), "1".into())])
        .unwrap();
    assert!(!raw(&by_name.to_string()), "{by_name:?}");
}
