//! The in-process memo of decoded values (`memo_size`, `MemorizedFunc::memo`).

use super::*;

/// A memory with a memo of `size`, in a fresh folder.
fn memo_fixture(size: &str) -> Fixture {
    Fixture::on(|path| Memory::builder().path(path).memo_size(size))
}

/// A memory with a memo of `size`, in a fresh folder in the files layout (one file per entry),
/// whose entries [`remove_entries`] can delete.
fn files_memo_fixture(size: &str) -> Fixture {
    Fixture::on(|path| files_layout(path).memo_size(size))
}

/// Deletes the entries of the function `name` behind the memory's back, as another process
/// would: what is then returned without a call comes from the memo. The entries are files, so
/// the memory is in the files layout.
fn remove_entries(fx: &Fixture, name: &str) -> usize {
    let mut removed = 0;
    for file in std::fs::read_dir(fx.folder(name)).unwrap() {
        let file = file.unwrap();
        let file_name = file.file_name().into_string().unwrap();
        if file_name.len() == 32 && file_name.bytes().all(|b| b.is_ascii_hexdigit()) {
            std::fs::remove_file(file.path()).unwrap();
            removed += 1;
        }
    }
    removed
}

/// `op` memoized in `memory` under `name`, keeping its outputs in the memo, with the counter
/// of its runs.
fn counted(
    memory: &Memory,
    name: &str,
    op: fn(i64) -> i64,
) -> (MemorizedFunc<i64, impl Fn(i64) -> i64>, Calls) {
    let calls = Calls::default();
    let c = calls.clone();
    let f = memory
        .cache_capturing(move |x: i64| {
            c.hit();
            op(x)
        })
        .name(name)
        .memo();
    (f, calls)
}

#[test]
fn a_repeated_hit_comes_from_the_memo() {
    let fx = files_memo_fixture("1M");
    let (square, calls) = counted(&fx.memory, "memo_square", |x| x * x);
    assert_eq!(square.eval(3), 9);
    assert_eq!(square.eval(4), 16);
    assert_eq!(remove_entries(&fx, "memo_square"), 2);
    assert_eq!(square.eval(3), 9);
    assert_eq!(square.eval(4), 16);
    assert_eq!(calls.get(), 2, "both values came from the memo");
    let stats = square.stats();
    assert_eq!((stats.hits, stats.misses), (2, 2));

    // A function that does not ask for the memo reads the store every time.
    let calls = Calls::default();
    let c = calls.clone();
    let cube = fx
        .memory
        .cache_capturing(move |x: i64| {
            c.hit();
            x * x * x
        })
        .name("plain_cube");
    assert_eq!(cube.eval(2), 8);
    assert_eq!(remove_entries(&fx, "plain_cube"), 1);
    assert_eq!(cube.eval(2), 8);
    assert_eq!(calls.get(), 2, "without .memo() the call runs again");
}

#[test]
fn without_a_memo_size_memo_does_nothing() {
    let fx = Fixture::files();
    let (f, calls) = counted(&fx.memory, "no_memo_size", |x| x + 1);
    assert_eq!(f.eval(1), 2);
    remove_entries(&fx, "no_memo_size");
    assert_eq!(f.eval(1), 2);
    assert_eq!(calls.get(), 2);
}

#[test]
fn a_clear_drops_the_memo() {
    let fx = memo_fixture("1M");
    let (f, calls) = counted(&fx.memory, "memo_clear", |x| x + 1);
    assert_eq!(f.eval(1), 2);
    assert_eq!(f.eval(1), 2);
    assert_eq!(calls.get(), 1);
    fx.memory.clear().unwrap();
    assert_eq!(f.eval(1), 2);
    assert_eq!(calls.get(), 2, "the memory's clear reached the memo");
    f.clear().unwrap();
    assert_eq!(f.eval(1), 2);
    assert_eq!(calls.get(), 3, "the function's clear reached the memo");
}

/// A clear of the function dropped only the memo values of the entries it found in the store:
/// a value whose entry another process had already deleted was still served after the clear.
/// `clear_function` likewise.
#[test]
fn a_clear_drops_the_memo_values_whose_entries_were_gone() {
    let fx = files_memo_fixture("1M");
    let (f, calls) = counted(&fx.memory, "memo_gone", |x| x + 1);
    assert_eq!(f.eval(1), 2);
    assert_eq!(remove_entries(&fx, "memo_gone"), 1);
    f.clear().unwrap();
    assert_eq!(f.eval(1), 2);
    assert_eq!(calls.get(), 2, "a value of before the clear was served");
    assert_eq!(remove_entries(&fx, "memo_gone"), 1);
    fx.memory
        .clear_function(FuncId::new("memo_gone").folder())
        .unwrap();
    assert_eq!(f.eval(1), 2);
    assert_eq!(
        calls.get(),
        3,
        "a value of before clear_function was served"
    );
}

#[test]
fn values_of_other_code_are_not_used() {
    let fx = memo_fixture("1M");
    let calls = Calls::default();
    let make = |version: &'static str, add: i64| {
        let c = calls.clone();
        fx.memory
            .cache_capturing(move |x: i64| {
                c.hit();
                x + add
            })
            .name("memo_versions")
            .version(version)
            .memo()
    };
    let v1 = make("1", 1);
    assert_eq!(v1.eval(10), 11);
    assert_eq!(v1.eval(10), 11);
    let v2 = make("2", 2);
    assert_eq!(v2.eval(10), 12, "the new code's value, not the memo's");
    assert_eq!(calls.get(), 2);
    assert_eq!(v2.eval(10), 12);
    assert_eq!(calls.get(), 2);
}

#[test]
fn validation_runs_on_every_memo_hit() {
    let fx = files_memo_fixture("1M");
    let checks = Calls::default();
    let k = checks.clone();
    let calls = Calls::default();
    let c = calls.clone();
    let f = fx
        .memory
        .cache_capturing(move |x: i64| {
            c.hit();
            x * 2
        })
        .name("memo_validated")
        .validate(move |_meta: &cachette::Metadata| {
            k.hit();
            true
        })
        .memo();
    assert_eq!(f.eval(5), 10);
    remove_entries(&fx, "memo_validated");
    for _ in 0..3 {
        assert_eq!(f.eval(5), 10);
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(
        checks.get(),
        3,
        "the callback ran on each hit from the memo"
    );

    // An expired value is not used.
    let calls = Calls::default();
    let c = calls.clone();
    let g = fx
        .memory
        .cache_capturing(move |x: i64| {
            c.hit();
            x * 3
        })
        .name("memo_expiring")
        .validate(expires_after(TimeDelta::milliseconds(50)))
        .memo();
    assert_eq!(g.eval(5), 15);
    assert_eq!(g.eval(5), 15);
    assert_eq!(calls.get(), 1);
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(g.eval(5), 15);
    assert_eq!(calls.get(), 2, "the expired value was computed again");
}

#[test]
fn a_forced_call_replaces_the_memo_value() {
    let fx = memo_fixture("1M");
    let calls = Calls::default();
    let c = calls.clone();
    let f = fx
        .memory
        .cache_capturing(move |_x: i64| {
            c.hit();
            i64::try_from(c.get()).unwrap()
        })
        .name("memo_forced")
        .memo();
    assert_eq!(f.eval(0), 1);
    assert_eq!(f.eval(0), 1);
    let (forced, _) = f.call(0);
    assert_eq!(forced, 2);
    assert_eq!(f.eval(0), 2, "the forced value, not the memo's older one");
}

#[test]
fn values_larger_than_the_memo_are_not_kept() {
    let fx = files_memo_fixture("1K");
    let calls = Calls::default();
    let c = calls.clone();
    let f = fx
        .memory
        .cache_capturing(move |n: usize| {
            c.hit();
            vec![7u8; n]
        })
        .name("memo_large")
        .memo();
    assert_eq!(f.eval(10).len(), 10);
    assert_eq!(f.eval(4096).len(), 4096);
    assert_eq!(remove_entries(&fx, "memo_large"), 2);
    assert_eq!(f.eval(10).len(), 10);
    assert_eq!(calls.get(), 2, "the small value is kept");
    assert_eq!(f.eval(4096).len(), 4096);
    assert_eq!(calls.get(), 3, "the value larger than the memo is not");
}

#[test]
fn a_memo_size_in_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cachette.toml");
    let cache = dir.path().join("cache");
    std::fs::write(
        &config,
        format!(
            "memo_size = \"16M\"\nlocation = {:?}\n",
            cache.to_str().unwrap()
        ),
    )
    .unwrap();
    let memory = Memory::from_config(&config).unwrap();
    let (f, calls) = counted(&memory, "memo_config", |x| x - 1);
    assert_eq!(f.eval(1), 0);
    std::fs::remove_dir_all(&cache).unwrap();
    assert_eq!(f.eval(1), 0);
    assert_eq!(calls.get(), 1);
}
