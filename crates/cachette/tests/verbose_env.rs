//! `CACHETTE_VERBOSE` raises the verbosity of every constructor, and a bad value is an error,
//! not ignored. A binary of its own: it writes the environment that every constructor reads.

use std::path::Path;

use cachette::{Memory, MemoryBuilder};

fn set(value: Option<&str>) {
    // SAFETY: this binary has this one test, so nothing else reads the environment meanwhile.
    unsafe {
        match value {
            Some(v) => std::env::set_var("CACHETTE_VERBOSE", v),
            None => std::env::remove_var("CACHETTE_VERBOSE"),
        }
    }
}

#[test]
fn cachette_verbose_raises_every_constructor_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quiet.toml");
    std::fs::write(
        &file,
        "verbose = 0\n[backend]\ntype = \"memory\"\nname = \"env\"\n",
    )
    .unwrap();
    set(Some("2"));
    let memories = [
        Memory::new(dir.path().join("new")).unwrap(),
        Memory::from_url("memory://env-verbose").unwrap(),
        Memory::from_config(&file).unwrap(),
        MemoryBuilder::new()
            .path(Path::new("unused"))
            .verbose(1)
            .build()
            .unwrap(),
    ];
    for memory in &memories {
        assert_eq!(memory.verbose(), 2, "{memory:?}");
    }
    // It raises, never lowers.
    let louder = MemoryBuilder::new()
        .url("memory://env-verbose")
        .verbose(5)
        .build()
        .unwrap();
    assert_eq!(louder.verbose(), 5);
    set(Some("loud"));
    let err = Memory::from_url("memory://env-verbose")
        .unwrap_err()
        .to_string();
    assert!(err.contains("CACHETTE_VERBOSE=loud"), "{err}");
    set(None);
    assert_eq!(
        Memory::from_url("memory://env-verbose").unwrap().verbose(),
        0
    );
}
