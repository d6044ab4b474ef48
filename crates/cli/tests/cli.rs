//! The `cachette` command on a real local-disk store.

use std::process::{Command, Output};

use cachette::{Memory, Shelved};

fn cachette(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachette"))
        .args(args)
        .output()
        .expect("run cachette")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cachette failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn inspect_show_verify_reduce_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("cache");
    let loc = location.to_str().unwrap();
    let memory = Memory::new(&location).unwrap();
    let f = memory.cache(|x: u32| vec![x; 100]).name("pipeline::load");
    let g = memory.cache(|x: u32| x + 1).name("pipeline::fit");
    for x in 0..5 {
        f.eval(x);
    }
    g.eval(1);
    let Shelved::Memorized(shelved) = g.call_and_shelve(7) else {
        panic!("not stored");
    };

    let listing = stdout(&cachette(&["inspect", loc]));
    assert!(
        listing.contains("pipeline.load") && listing.contains("pipeline.fit"),
        "{listing}"
    );
    assert!(listing.contains("2 functions, 7 entries"), "{listing}");
    let entries = stdout(&cachette(&["inspect", loc, "--func", "pipeline.load"]));
    assert!(entries.contains("5 entries"), "{entries}");

    let shown = stdout(&cachette(&["show", &shelved.to_string()]));
    assert!(shown.contains("function  pipeline.fit"), "{shown}");
    assert!(shown.contains("0 = 7"), "{shown}");

    assert!(stdout(&cachette(&["verify", loc])).contains("7 entries checked, 0 damaged"));
    // Damage one entry: verify reports it with exit code 2, then deletes it.
    let folder = location.join("pipeline.load");
    let victim = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().len() == 32)
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let out = cachette(&["verify", loc]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 damaged"));
    assert!(stdout(&cachette(&["verify", loc, "--delete"])).contains("deleted 1 damaged"));
    assert!(!victim.exists());

    let reduced = stdout(&cachette(&["reduce-size", loc, "--items-limit", "2"]));
    assert!(reduced.contains("deleted 4 entries"), "{reduced}");
    assert!(!cachette(&["reduce-size", loc]).status.success());
    assert!(
        !cachette(&["reduce-size", loc, "--age-limit", "3 weeks"])
            .status
            .success()
    );

    stdout(&cachette(&["clear", loc, "--func", "pipeline.fit"]));
    assert!(!g.check_call_in_cache(&1));
    stdout(&cachette(&["clear", loc]));
    assert!(stdout(&cachette(&["inspect", loc])).contains("0 functions, 0 entries"));
    assert!(location.join(".gitignore").exists());
}

#[test]
fn unknown_schemes_name_the_feature() {
    let out = cachette(&["inspect", "gopher://nowhere"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no backend for scheme `gopher`"), "{err}");
}

#[test]
fn a_config_file_names_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("cache");
    let memory = Memory::new(&location).unwrap();
    let f = memory.cache(|x: u32| x * 3).name("pipeline::triple");
    f.eval(1);
    f.eval(2);
    let config = dir.path().join("cachette.toml");
    std::fs::write(
        &config,
        format!(
            "[backend]\ntype = \"file\"\npath = {:?}\n",
            location.to_str().unwrap()
        ),
    )
    .unwrap();
    let listing = stdout(&cachette(&["inspect", config.to_str().unwrap()]));
    assert!(listing.contains("1 functions, 2 entries"), "{listing}");
    // A bad file is an error that names it and the key.
    std::fs::write(&config, "[backend]\ntype = \"file\"\npaht = \"x\"\n").unwrap();
    let out = cachette(&["inspect", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cachette.toml") && err.contains("paht"),
        "{err}"
    );
}
