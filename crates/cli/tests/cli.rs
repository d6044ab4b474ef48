//! The `cachette` command on real stores: the local disk always; S3 (moto) and Redis when
//! `CACHETTE_TEST_S3_ENDPOINT` and `CACHETTE_TEST_REDIS_URL` are set (under `CI=true` they must
//! be). Every remote store lives under a prefix of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use assert_cmd::Command;
use cachette::plugin::{Bytes, Key, StoreBackendExt, block_on, testkit};
use cachette::{FuncId, Memory, Shelved};
use predicates::prelude::*;
use serde_json::Value;

/// The command; its stdin is a pipe (never a terminal), as in CI, cron or a script.
fn cachette(args: &[&str]) -> Command {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("cachette");
    cmd.args(args).env_remove("CACHETTE_SIGNING_KEY");
    cmd
}

/// Runs the command, expects `code`, and gives its stdout.
fn run(args: &[&str], code: i32) -> String {
    let out = cachette(args).output().expect("run cachette");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "cachette {args:?}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs the command with `--json`, expects `code`, and parses its one document.
fn json(args: &[&str], code: i32) -> Value {
    let mut with = args.to_vec();
    with.push("--json");
    let out = run(&with, code);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// A store of one backend, filled by [`fill`].
struct TestStore {
    /// What the command is given.
    location: String,
    memory: Memory,
    /// The folder of a local store.
    dir: Option<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

fn local() -> TestStore {
    local_at(|dir| dir.to_str().unwrap().to_owned())
}

/// A store on the local disk in the files layout (one file per entry), for the tests that look
/// at or damage the files of entries.
fn local_files() -> TestStore {
    local_at(|dir| format!("file://{}?layout=files", dir.display()))
}

/// A store on the local disk in a fresh folder, given to the command as `location` names it.
fn local_at(location: fn(&Path) -> String) -> TestStore {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let location = location(&dir);
    TestStore {
        memory: Memory::from_url(&location).unwrap(),
        location,
        dir: Some(dir),
        _tmp: Some(tmp),
    }
}

fn remote(url: String) -> TestStore {
    TestStore {
        memory: Memory::from_url(&url).unwrap(),
        location: url,
        dir: None,
        _tmp: None,
    }
}

fn s3() -> Option<TestStore> {
    if cfg!(not(feature = "s3")) {
        eprintln!("SKIPPED: S3 stores: this build has no `s3` feature (test with --features full)");
        return None;
    }
    let endpoint = testkit::server_from_env("CACHETTE_TEST_S3_ENDPOINT")?;
    let bucket = std::env::var("CACHETTE_TEST_S3_BUCKET").unwrap_or("cachette-test".into());
    let prefix = testkit::unique_root("cli");
    Some(remote(format!(
        "s3://{bucket}/{prefix}?endpoint={endpoint}&allow_http=true"
    )))
}

fn redis() -> Option<TestStore> {
    if cfg!(not(feature = "redis")) {
        eprintln!(
            "SKIPPED: Redis stores: this build has no `redis` feature (test with --features full)"
        );
        return None;
    }
    let server = testkit::server_from_env("CACHETTE_TEST_REDIS_URL")?;
    let prefix = testkit::unique_root("cli");
    Some(remote(format!("{server}?prefix={prefix}")))
}

/// Every store this run can reach.
fn stores() -> Vec<TestStore> {
    stores_with(local())
}

/// Every store this run can reach, with `local` for the local disk.
fn stores_with(local: TestStore) -> Vec<TestStore> {
    let mut stores = vec![local];
    stores.extend(s3());
    stores.extend(redis());
    stores
}

const LOAD: &str = "pipeline::load";
const FIT: &str = "pipeline::fit";

/// Five entries of `pipeline::load` (100 KiB each), two of `pipeline::fit` (version "2");
/// gives the reference to `fit(7)`.
fn fill(store: &TestStore) -> cachette::MemorizedResult<u32> {
    let load = store
        .memory
        .cache(|x: u32| vec![x as u8; 100 * 1024])
        .name(LOAD);
    let fit = store.memory.cache(|x: u32| x + 1).name(FIT).version("2");
    for x in 0..5 {
        load.eval(x);
    }
    fit.eval(1);
    let Shelved::Memorized(shelved) = fit.call_and_shelve(7) else {
        panic!("not stored");
    };
    shelved
}

fn folder(name: &str) -> String {
    FuncId::new(name).folder().to_owned()
}

fn entry_count(store: &TestStore) -> usize {
    store.memory.entries(None).unwrap().len()
}

/// Flips the last byte of one entry: by hand in the file on the local disk, through the
/// backend elsewhere.
fn damage(store: &TestStore, func: &str, args_id: &str) {
    let key = format!("cachette/{}/{args_id}", folder(func));
    match &store.dir {
        Some(dir) => {
            let path = dir.join(&key);
            let mut bytes = std::fs::read(&path).unwrap();
            let n = bytes.len();
            bytes[n - 1] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        }
        None => {
            let backend = store.memory.backend().unwrap().clone();
            let key = Key::new(key).unwrap();
            let bytes = block_on(false, backend.get(&key))
                .unwrap()
                .unwrap()
                .unwrap();
            let mut bytes = bytes.to_vec();
            let n = bytes.len();
            bytes[n - 1] ^= 0xff;
            block_on(false, backend.put(&key, Bytes::from(bytes).into()))
                .unwrap()
                .unwrap();
        }
    }
}

/// Every file under `dir`, with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let meta = std::fs::symlink_metadata(&d).unwrap();
        files.insert(d.clone(), (meta.len(), meta.modified().unwrap()));
        if meta.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    files
}

// ------------------------------------------------------------------------------------------
// Every backend.

#[test]
fn inspect_lists_functions_with_names_sizes_and_ages() {
    for store in stores() {
        let loc = store.location.as_str();
        fill(&store);
        let text = run(&["inspect", loc], 0);
        assert!(text.contains(LOAD) && text.contains(FIT), "{text}");
        assert!(
            text.contains("2 functions, 7 entries"),
            "{loc}: totals\n{text}"
        );
        // 5 × 100 KiB and a little more: a human size, not a byte count.
        assert!(text.contains(" KiB"), "{text}");
        assert!(!text.contains("512000"), "{text}");
        assert!(
            text.contains("(just now)") || text.contains(" ago)"),
            "{text}"
        );

        let doc = json(&["inspect", loc], 0);
        assert_eq!(doc["total"]["functions"], 2);
        assert_eq!(doc["total"]["entries"], 7);
        let funcs = doc["functions"].as_array().unwrap();
        let load = funcs.iter().find(|f| f["name"] == LOAD).unwrap();
        assert_eq!(load["folder"], folder(LOAD).as_str());
        assert_eq!(load["entries"], 5);
        assert!(load["bytes"].as_u64().unwrap() >= 5 * 100 * 1024);
        assert!(load["last_access"].is_string());
    }
}

#[test]
fn reads_record_no_access() {
    let listing = |store: &TestStore| {
        let mut entries: Vec<_> = store
            .memory
            .entries(None)
            .unwrap()
            .into_iter()
            .map(|e| (e.key(), e.size, e.last_access))
            .collect();
        entries.sort();
        entries
    };
    let stores = stores();
    let filled: Vec<_> = stores.iter().map(|s| (fill(s), listing(s))).collect();
    // Longer than the coarsest clock of a store: Redis keeps idle times in whole seconds,
    // so its last accesses are known to a second either way.
    std::thread::sleep(std::time::Duration::from_secs(3));
    for (store, (shelved, before)) in stores.iter().zip(filled) {
        let loc = store.location.as_str();
        run(&["inspect", loc], 0);
        run(&["inspect", loc, "--func", FIT], 0);
        run(&["show", loc, FIT, shelved.args_id()], 0);
        run(&["verify", loc], 0);
        run(&["verify", loc, "--delete", "--dry-run"], 0);
        run(&["clear", loc, "--dry-run"], 0);
        run(&["reduce-size", loc, "--items-limit", "0", "--dry-run"], 0);
        run(&["stats", loc], 0);
        let after = listing(store);
        assert_eq!(before.len(), after.len(), "{loc}");
        for (b, a) in before.iter().zip(&after) {
            assert_eq!((&b.0, b.1), (&a.0, a.1), "{loc}");
            let moved = (a.2 - b.2).num_milliseconds().abs();
            assert!(
                moved < 1500,
                "{loc}: a read recorded an access: {b:?} -> {a:?}"
            );
        }
    }
}

/// Every item under `cachette/`, with its size.
fn all_items(store: &TestStore) -> Vec<(String, u64)> {
    let backend = store.memory.backend().unwrap();
    let prefix = cachette::plugin::Prefix::new("cachette").unwrap();
    let mut items: Vec<_> = block_on(false, backend.list(&prefix))
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|i| (i.key.to_string(), i.size))
        .collect();
    items.sort();
    items
}

#[test]
fn stats_agrees_with_the_true_counts_and_draws_them() {
    for store in stores() {
        let loc = store.location.as_str();
        fill(&store);
        let load = store
            .memory
            .cache(|x: u32| vec![x as u8; 100 * 1024])
            .name(LOAD);
        for x in 0..5 {
            load.eval(x); // five hits
        }
        store.memory.flush_stats().unwrap();
        let before = all_items(&store);
        let doc = json(&["stats", loc], 0);
        let functions = doc["functions"].as_array().unwrap();
        assert_eq!(functions.len(), 2, "{doc:#}");
        let row = |name: &str| {
            functions
                .iter()
                .find(|f| f["name"] == name)
                .unwrap_or_else(|| panic!("{name} missing: {doc:#}"))
        };
        let load_row = row(LOAD);
        assert_eq!(load_row["calls"], 10, "{loc}: {doc:#}");
        assert_eq!(load_row["hits"], 5, "{loc}");
        assert_eq!(load_row["misses"], 5, "{loc}");
        assert_eq!(load_row["entries"], 5, "{loc}");
        assert_eq!(row(FIT)["calls"], 2, "{loc}");
        assert_eq!(row(FIT)["misses"], 2, "{loc}");
        assert_eq!(doc["total"]["calls"], 12, "{loc}");

        let text = run(&["stats", loc, "--func", "pipeline.load"], 0);
        assert!(text.contains(LOAD) && !text.contains(FIT), "{text}");
        assert!(text.contains("50%"), "the hit ratio: {text}");

        let tmp = tempfile::tempdir().unwrap();
        let svg = tmp.path().join("stats.svg");
        run(&["stats", loc, "--svg", svg.to_str().unwrap()], 0);
        let picture = std::fs::read_to_string(&svg).unwrap();
        assert!(picture.starts_with("<svg"), "{picture}");
        assert!(
            picture.contains(LOAD) && picture.contains("time saved"),
            "{loc}"
        );
        // One function: one bar, named.
        run(
            &["stats", loc, "--func", FIT, "--svg", svg.to_str().unwrap()],
            0,
        );
        let picture = std::fs::read_to_string(&svg).unwrap();
        assert!(picture.contains(FIT) && !picture.contains(LOAD), "{loc}");

        assert_eq!(all_items(&store), before, "{loc}: `stats` wrote or deleted");
        run(&["stats", loc, "--func", "pipeline::nope"], 2);
    }
}

#[test]
fn functions_answer_to_every_form_of_their_name() {
    for store in stores() {
        let loc = store.location.as_str();
        fill(&store);
        let f = folder(LOAD);
        let readable = f.rsplit_once('-').unwrap().0.to_owned();
        for name in [LOAD, "pipeline.load", f.as_str(), readable.as_str()] {
            let doc = json(&["inspect", loc, "--func", name], 0);
            assert_eq!(doc["function"]["name"], LOAD, "{name}");
            assert_eq!(doc["entries"].as_array().unwrap().len(), 5, "{name}");
            let text = run(&["inspect", loc, "--func", name], 0);
            assert!(text.contains("5 entries"), "{name}: {text}");
        }
    }
}

#[test]
fn a_near_miss_says_did_you_mean_and_fails() {
    for store in stores() {
        let loc = store.location.as_str();
        fill(&store);
        for args in [
            vec!["inspect", loc, "--func", "pipeline::laod"],
            vec!["clear", loc, "--func", "pipeline.laod", "--yes"],
            vec!["verify", loc, "--func", "pipeline::laod"],
            vec!["show", loc, "pipeline::laod", "0123"],
        ] {
            cachette(&args).assert().code(2).stderr(
                predicate::str::contains("no function `pipeline")
                    .and(predicate::str::contains("did you mean `pipeline::load`?")),
            );
        }
        let doc = json(&["inspect", loc, "--func", "nothing_like_it"], 2);
        assert_eq!(doc["error"]["kind"], "not_found");
        assert_eq!(entry_count(&store), 7, "nothing deleted");
    }
}

#[test]
fn explain_says_why_a_call_would_miss() {
    for store in stores() {
        let loc = store.location.as_str();
        fill(&store);
        // `fit` holds the calls with 1 and 7 (its argument is unnamed: `0`).
        let doc = json(&["explain", loc, FIT, "--arg", "0=7"], 0);
        assert_eq!(doc["hit"], true, "{loc}: {doc}");
        assert_eq!(doc["function"], FIT);
        assert_eq!(doc["examined"], 2);
        let doc = json(&["explain", loc, "pipeline.fit", "--arg", "0=8"], 0);
        assert_eq!(doc["hit"], false, "{loc}: {doc}");
        let cause = &doc["causes"][0];
        assert_eq!(cause["cause"], "other_arguments", "{doc}");
        let differing = &cause["nearest"]["differing"][0];
        assert_eq!(differing["name"], "0", "{doc}");
        assert_eq!(differing["call"], "8", "{doc}");
        assert_eq!(cause["nearest"]["code"]["version"], "2", "{doc}");
        let text = run(&["explain", loc, FIT, "--arg", "0=8"], 0);
        assert!(
            text.contains("would miss: no stored result for these arguments; the nearest"),
            "{text}"
        );
        assert!(text.contains("0 (stored "), "{text}");
        assert!(text.contains(", this call 8)"), "{text}");
        let text = run(&["explain", loc, LOAD, "--arg", "0=3"], 0);
        assert!(text.contains("would load its stored result"), "{text}");
        cachette(&["explain", loc, "pipeline::laod", "--arg", "0=1"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("did you mean `pipeline::load`?"));
        let doc = json(&["explain", loc, FIT, "--arg", "novalue"], 64);
        assert_eq!(doc["error"]["kind"], "usage");
    }
}

#[test]
fn show_prints_the_metadata_of_an_entry() {
    for store in stores() {
        let loc = store.location.as_str();
        let shelved = fill(&store);
        let id = shelved.args_id().to_owned();
        for func in [FIT, "pipeline.fit"] {
            let text = run(&["show", loc, func, &id], 0);
            for expected in [
                "function     pipeline::fit",
                &format!("args id      {id}"),
                "version      2",
                "0 = 7",
                "duration",
                "hasher",
                "codec",
                "code",
            ] {
                assert!(text.contains(expected), "{expected:?} in\n{text}");
            }
        }
        // A unique prefix of the arguments' hash is enough.
        let doc = json(&["show", loc, FIT, &id[..8]], 0);
        assert_eq!(doc["function"], FIT);
        assert_eq!(doc["args_id"], id.as_str());
        assert_eq!(doc["version"], "2");
        assert_eq!(doc["input_args"][0]["name"], "0");
        assert_eq!(doc["input_args"][0]["value"], "7");
        assert!(doc["bytes"].as_u64().unwrap() > 0);
        assert!(doc["time"].is_string() && doc["duration_seconds"].is_number());
        // The printed reference works where the location needs nothing more than itself.
        if store.dir.is_some() {
            let text = run(&["show", &shelved.to_string()], 0);
            assert!(text.contains("function     pipeline::fit"), "{text}");
        }
        let missing = "f".repeat(32);
        cachette(&["show", loc, FIT, &missing])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("no entry"));
    }
}

#[test]
fn verify_finds_a_damaged_entry_and_deletes_it_when_asked() {
    // On the local disk, the entry is damaged in its file.
    for store in stores_with(local_files()) {
        let loc = store.location.as_str();
        let shelved = fill(&store);
        assert!(run(&["verify", loc], 0).contains("checked 7 entries"));
        damage(&store, FIT, shelved.args_id());

        let text = run(&["verify", loc], 3);
        assert!(text.contains("1 damaged"), "{text}");
        assert!(text.contains(shelved.args_id()), "{text}");
        let doc = json(&["verify", loc], 3);
        assert_eq!(doc["checked"], 7);
        assert_eq!(doc["intact"], 6);
        assert_eq!(doc["damaged"][0]["function"], FIT);
        assert_eq!(doc["damaged"][0]["args_id"], shelved.args_id());
        assert!(doc["damaged"][0]["error"].as_str().unwrap().len() > 3);
        // Only the functions asked for.
        assert_eq!(
            json(&["verify", loc, "--func", "pipeline.load"], 0)["checked"],
            5
        );

        // Printed, not deleted: with --dry-run, or without a terminal to ask.
        let text = run(&["verify", loc, "--delete", "--dry-run"], 3);
        assert!(text.contains("will delete 1 entry"), "{text}");
        cachette(&["verify", loc, "--delete"])
            .assert()
            .code(4)
            .stderr(predicate::str::contains("--yes"));
        assert_eq!(entry_count(&store), 7);

        let doc = json(&["verify", loc, "--delete", "--yes"], 0);
        assert_eq!(doc["deleted"]["entries"], 1);
        assert_eq!(entry_count(&store), 6);
        assert!(run(&["verify", loc], 0).contains("all intact"));
    }
}

#[test]
fn clear_prints_asks_and_deletes() {
    for store in stores() {
        let loc = store.location.as_str();
        fill(&store);
        // A dry run prints the plan and deletes nothing.
        let text = run(&["clear", loc, "--func", "pipeline.fit", "--dry-run"], 0);
        assert!(text.contains("pipeline::fit"), "{text}");
        assert!(text.contains("2 entries"), "{text}");
        assert!(text.contains("dry run: nothing deleted"), "{text}");
        let doc = json(&["clear", loc, "--dry-run"], 0);
        assert_eq!(doc["dry_run"], true);
        assert_eq!(doc["plan"]["entries"], 7);
        assert!(doc["deleted"].is_null());
        assert_eq!(entry_count(&store), 7);

        // No terminal, no --yes: refused.
        cachette(&["clear", loc])
            .assert()
            .code(4)
            .stdout(predicate::str::contains("will delete"))
            .stderr(predicate::str::contains("refusing to delete"));
        assert_eq!(entry_count(&store), 7);

        let text = run(&["clear", loc, "--func", FIT, "--yes"], 0);
        assert!(text.contains("deleted 2 entries"), "{text}");
        assert_eq!(entry_count(&store), 5);
        let doc = json(&["clear", loc, "-y"], 0);
        assert_eq!(doc["deleted"]["entries"], 5);
        assert_eq!(doc["all"], true);
        assert_eq!(entry_count(&store), 0);
        assert!(run(&["inspect", loc], 0).contains("0 functions, 0 entries"));
        assert!(run(&["clear", loc], 0).contains("nothing to delete"));
    }
}

#[test]
fn reduce_size_prints_asks_and_deletes() {
    for store in stores() {
        let loc = store.location.as_str();
        fill(&store);
        cachette(&["reduce-size", loc]).assert().code(64);
        for age in ["1w", "1h30m", "1 day", "90s", "7d", "3600"] {
            let doc = json(&["reduce-size", loc, "--age-limit", age, "--dry-run"], 0);
            assert_eq!(doc["plan"]["entries"], 0, "{age}");
            assert_eq!(doc["kept"]["entries"], 7, "{age}");
        }
        let doc = json(
            &["reduce-size", loc, "--age-limit", "1h30m", "--dry-run"],
            0,
        );
        assert_eq!(doc["limits"]["age_limit_seconds"], 5400);
        cachette(&["reduce-size", loc, "--age-limit", "3 fortnights"])
            .assert()
            .code(64)
            .stderr(predicate::str::contains("not a duration"));

        let text = run(&["reduce-size", loc, "--items-limit", "2", "--dry-run"], 0);
        assert!(text.contains("total: 5 entries"), "{text}");
        assert!(text.contains("keeping 2 entries"), "{text}");
        cachette(&["reduce-size", loc, "--items-limit", "2"])
            .assert()
            .code(4);
        assert_eq!(entry_count(&store), 7);

        let doc = json(&["reduce-size", loc, "--items-limit", "2", "--yes"], 0);
        assert_eq!(doc["deleted"]["entries"], 5);
        assert_eq!(doc["kept"]["entries"], 2);
        assert_eq!(entry_count(&store), 2);
        assert!(
            run(&["reduce-size", loc, "--bytes-limit", "10G"], 0).contains("nothing to delete")
        );
        // An age of zero: nothing was accessed after now.
        run(&["reduce-size", loc, "--age-limit", "0s", "--yes"], 0);
        assert_eq!(entry_count(&store), 0);
    }
}

// ------------------------------------------------------------------------------------------
// The local disk.

#[test]
fn a_location_that_does_not_exist_is_not_found_and_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("typo");
    let toml = tmp.path().join("nope.toml");
    let file_url = format!("file://{}", missing.display());
    for location in [
        missing.to_str().unwrap(),
        toml.to_str().unwrap(),
        file_url.as_str(),
    ] {
        for args in [
            vec!["inspect", location],
            vec!["verify", location],
            vec!["clear", location, "--yes"],
            vec!["reduce-size", location, "--items-limit", "1", "--yes"],
            vec!["show", location, "f", "0123"],
        ] {
            cachette(&args)
                .assert()
                .code(2)
                .stderr(predicate::str::contains("no such file or folder"));
        }
        let doc = json(&["inspect", location], 2);
        assert_eq!(doc["error"]["code"], 2);
    }
    // A config file naming a folder that does not exist.
    let config = tmp.path().join("cachette.toml");
    std::fs::write(
        &config,
        format!("location = {:?}\n", missing.to_str().unwrap()),
    )
    .unwrap();
    cachette(&["inspect", config.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no such file or folder"));
    assert!(!missing.exists() && !toml.exists());
    // A folder that exists but holds no store: empty, with a note.
    cachette(&["inspect", tmp.path().to_str().unwrap()])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("0 functions, 0 entries"))
        .stderr(predicate::str::contains("nothing is stored in"));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the config file: {left:?}");
}

#[test]
fn reads_change_nothing() {
    // The files layout, whose files only writes change.
    let store = local_files();
    let loc = store.location.as_str();
    let shelved = fill(&store);
    let dir = store.dir.clone().unwrap();
    let before = snapshot(&dir);
    std::thread::sleep(std::time::Duration::from_millis(20));
    run(&["inspect", loc], 0);
    run(&["inspect", loc, "--func", LOAD, "--sort", "access"], 0);
    run(&["show", &shelved.to_string()], 0);
    run(&["show", loc, FIT, shelved.args_id()], 0);
    run(&["verify", loc], 0);
    run(&["explain", loc, FIT, "--arg", "0=7"], 0);
    run(&["explain", loc, FIT, "--arg", "0=9"], 0);
    run(&["clear", loc, "--dry-run"], 0);
    run(&["reduce-size", loc, "--items-limit", "0", "--dry-run"], 0);
    run(&["verify", loc, "--delete", "--dry-run"], 0);
    assert_eq!(before, snapshot(&dir), "a read wrote to the store");
}

#[test]
fn show_of_an_entry_with_damaged_metadata_is_3() {
    // The files layout, where the entry is a file to damage.
    let store = local_files();
    let loc = store.location.as_str();
    let shelved = fill(&store);
    let path =
        store
            .dir
            .as_ref()
            .unwrap()
            .join(format!("cachette/{}/{}", folder(FIT), shelved.args_id()));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[60] ^= 0xff; // inside the metadata
    std::fs::write(&path, bytes).unwrap();
    cachette(&["show", loc, FIT, shelved.args_id()])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("is damaged"));
    assert_eq!(
        json(&["show", loc, FIT, shelved.args_id()], 3)["error"]["kind"],
        "damaged"
    );
}

#[test]
fn verify_checks_signatures_with_the_key_of_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("signed");
    let key = "a secret of at least sixteen bytes";
    let memory = Memory::builder()
        .path(&dir)
        .signing_key(cachette::SigningKey::new(key).unwrap())
        .build()
        .unwrap();
    memory.cache(|x: u32| x + 1).name(FIT).eval(1);
    let loc = dir.to_str().unwrap();
    // Without a key, signatures are not checked; with the right one they pass.
    run(&["verify", loc], 0);
    cachette(&["verify", loc])
        .env("CACHETTE_SIGNING_KEY", key)
        .assert()
        .code(0);
    let out = cachette(&["verify", loc, "--json"])
        .env("CACHETTE_SIGNING_KEY", "another secret, just as long")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The function's identity item is signed with the writer's key too: under another key its
    // name is not taken on trust, and the damaged entry is named by its folder.
    assert_eq!(doc["damaged"][0]["function"], Value::Null, "{doc}");
    assert!(
        doc["damaged"][0]["folder"]
            .as_str()
            .is_some_and(|f| f.starts_with("pipeline.fit-")),
        "{doc}"
    );
}

#[test]
fn tables_stay_aligned_with_long_names() {
    let store = local();
    let loc = store.location.as_str();
    let long = format!("my_crate::{}", "deeply_nested_module_name::");
    let long = format!("{long}{}", "f".repeat(60 - long.len()));
    assert_eq!(long.len(), 60);
    store
        .memory
        .cache(|x: u8| vec![x; 1_150_000])
        .name(long.as_str())
        .eval(1);
    store.memory.cache(|x: u32| x).name("f").eval(1);
    let text = run(&["inspect", loc], 0);
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("FUNCTION"))
        .expect(&text);
    let rows = &lines[header..header + 3];
    // The right edge of SIZE, a right-aligned column, is the same on every row.
    let edge = rows[0].find("SIZE").unwrap() + "SIZE".len();
    for row in rows {
        let unit = row[..edge].trim_end();
        assert_eq!(unit.len(), edge, "{row:?} in\n{text}");
        assert!(
            unit.ends_with("MiB") || unit.ends_with(" B") || unit.ends_with("SIZE"),
            "{row:?}"
        );
    }
    assert!(rows.iter().any(|r| r.starts_with(&long)), "{text}");
    assert!(text.contains("1.1 MiB"), "{text}");
}

#[test]
fn a_config_file_names_the_store() {
    let store = local();
    fill(&store);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("cachette.toml");
    std::fs::write(
        &config,
        format!("[backend]\ntype = \"file\"\npath = {:?}\n", store.location),
    )
    .unwrap();
    let text = run(&["inspect", config.to_str().unwrap()], 0);
    assert!(text.contains("2 functions, 7 entries"), "{text}");
    // reduce-size without limits takes those of the config file, and wants some.
    run(&["reduce-size", &store.location, "--yes"], 64);
    std::fs::write(
        &config,
        format!(
            "items_limit = 3\n[backend]\ntype = \"file\"\npath = {:?}\n",
            store.location
        ),
    )
    .unwrap();
    let doc = json(&["reduce-size", config.to_str().unwrap(), "--yes"], 0);
    assert_eq!(doc["limits"]["items_limit"], 3, "{doc:#}");
    assert_eq!(entry_count(&store), 3);
    // A bad file is an error that names it and the key.
    std::fs::write(&config, "[backend]\ntype = \"file\"\npaht = \"x\"\n").unwrap();
    cachette(&["inspect", config.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cachette.toml").and(predicate::str::contains("paht")));
}

#[test]
fn usage_errors_are_64_and_help_is_0() {
    cachette(&["inspect"]).assert().code(64);
    cachette(&["frobnicate", "x"]).assert().code(64);
    cachette(&["verify", "x", "--yes"]).assert().code(64);
    cachette(&["show", "not a result"]).assert().code(64);
    cachette(&["reduce-size", "x", "--bytes-limit", "lots"])
        .assert()
        .code(64);
    let doc = json(&["reduce-size", "x", "--age-limit", "3x"], 64);
    assert_eq!(doc["error"]["kind"], "usage");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("3x"),
        "{doc}"
    );
    cachette(&["--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Exit codes:"));
}

#[test]
fn unknown_schemes_name_the_feature() {
    cachette(&["inspect", "gopher://nowhere"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no backend for scheme `gopher`"));
}

#[test]
fn check_writes_reads_and_deletes_one_item() {
    // On the local disk, in the files layout: the index layout keeps the index that the
    // write made (`.cachette-index/`).
    for store in stores_with(local_files()) {
        let location = store.location.as_str();
        if let Some(dir) = &store.dir {
            // Like the other commands, it creates no store where there is none.
            json(&["check", location], 2);
            assert!(!dir.exists());
            std::fs::create_dir_all(dir).unwrap();
        }
        let doc = json(&["check", location], 0);
        assert_eq!(doc["status"], "ok", "{doc}");
        for step in ["write_ms", "read_ms", "delete_ms"] {
            assert!(doc[step].as_f64().is_some(), "{step}: {doc}");
        }
        assert!(doc["error"].is_null(), "{doc}");
        cachette(&["check", location])
            .assert()
            .code(0)
            .stdout(predicate::str::contains(
                "ok: written, read back and deleted",
            ));
        // Nothing is left behind, not even in the store's namespace.
        assert_eq!(
            store.memory.entries(None).unwrap().len(),
            0,
            "{location}: no entries"
        );
        if let Some(dir) = &store.dir {
            let files: Vec<_> = walk_files(dir);
            assert!(files.is_empty(), "{location}: {files:?}");
        }
    }
}

/// The files under `dir`, at any depth.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in read {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn check_reports_unreachable_and_read_only_stores() {
    if cfg!(feature = "redis") {
        // Nothing listens on port 1.
        let out = cachette(&["check", "redis://127.0.0.1:1/0", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            doc["status"] == "unreachable" || doc["error"]["code"] == 1,
            "{doc}"
        );
    } else {
        eprintln!("SKIPPED: an unreachable Redis: this build has no `redis` feature");
    }
    // A read-only folder: a tmpfs mounted read-only (root ignores file modes).
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "SKIPPED: a read-only store: cannot mount a tmpfs here (it needs the right to mount)"
        );
        return;
    }
    let doc = json(&["check", mnt.to_str().unwrap()], 5);
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(doc["status"], "read_only", "{doc}");
    assert!(doc["read_ms"].as_f64().is_some(), "{doc}");
    assert!(doc["write_ms"].is_null(), "{doc}");
}

/// A store of small entries on the default layout keeps them in its index, with no `cachette/`
/// folder: it is not said to be empty.
#[test]
fn a_store_of_small_entries_in_its_index_is_not_empty() {
    let store = local();
    let f = store.memory.cache(|x: u32| x + 1).name("pipeline::small");
    assert_eq!(f.eval(1), 2);
    let dir = store.dir.clone().unwrap();
    assert!(
        !dir.join("cachette").exists(),
        "small entries are in the index"
    );
    assert!(dir.join(".cachette-index").exists());
    cachette(&["inspect", &store.location])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("1 entr"))
        .stderr(predicate::str::contains("nothing is stored").not());
}
