//! Crash safety on the local disk, in both layouts: a writer killed with SIGKILL at random
//! moments during a 256 MiB persist never leaves a partial entry visible, and housekeeping
//! removes what it left.
//!
//! The test re-runs its own binary as the child (see `common/crash.rs`); the child persists one
//! large output in a loop until it is killed.

#[path = "common/crash.rs"]
mod crash;

use std::path::{Path, PathBuf};

/// Temporary files under `dir`, anywhere.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".cachette-tmp-")
            {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn a_writer_killed_mid_persist_leaves_no_partial_entry() {
    crash::child_if_asked();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}?layout=files", dir.path().display());
    kill_and_check(
        "a_writer_killed_mid_persist_leaves_no_partial_entry",
        dir.path(),
        &url,
        "local disk, files layout",
    );
}

/// The same on the index layout: the 256 MiB outputs are files, published (and taken out of
/// the index) while the writer holds the index's write lock, and the identity and statistics
/// items live in the index; a writer killed holding that lock must not block the next one.
#[test]
fn a_writer_killed_mid_persist_leaves_the_index_layout_whole() {
    crash::child_if_asked();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}?layout=index", dir.path().display());
    kill_and_check(
        "a_writer_killed_mid_persist_leaves_the_index_layout_whole",
        dir.path(),
        &url,
        "local disk, index layout",
    );
    assert!(
        dir.path()
            .join(".cachette-index")
            .join("data.mdb")
            .is_file(),
        "the store has an index"
    );
}

/// Kills a writer of `location` (in the folder `dir`) at random moments, and checks that every
/// read gets a whole entry or a miss, and that housekeeping removes what the writers left.
fn kill_and_check(test: &str, dir: &Path, location: &str, what: &str) {
    let reader = crash::Reader::new(location);
    let mut killed_with_leftovers = 0;
    let summary = crash::kill_loop(test, location, |kill| {
        if !temp_files(dir).is_empty() {
            killed_with_leftovers += 1;
        }
        // Every read gets the whole entry or a miss.
        reader.check(kill.round);
    });
    // Housekeeping removes what the killed writers left, and no entry.
    let before = reader.cached();
    reader.memory().housekeeping().unwrap();
    assert!(temp_files(dir).is_empty(), "left: {:?}", temp_files(dir));
    let after = reader.check(crash::KILLS);
    assert_eq!(before, after);
    println!(
        "{what}: {}; {killed_with_leftovers} left a temporary file; entries kept: {after:?}",
        summary.line()
    );
    assert!(
        summary.persists.len() >= crash::KILLS,
        "the child never got to write"
    );
    assert!(killed_with_leftovers > 0, "no kill landed during a write");
}

/// The comparison the crash tests rely on tells a whole output from any other.
#[test]
fn outputs_compare_whole() {
    let out = crash::big(1);
    assert!(crash::is_output_of(&out, 1));
    assert!(!crash::is_output_of(&out, 0));
    let mut changed = out.into_vec();
    changed[crash::ELEMS - 1] = 0.0;
    assert!(!crash::is_output_of(
        &cachette::Array::from(changed.clone()),
        1
    ));
    changed.truncate(crash::ELEMS - 1);
    changed.push(1.5);
    assert!(crash::is_output_of(
        &cachette::Array::from(changed.clone()),
        1
    ));
    changed.pop();
    assert!(!crash::is_output_of(&cachette::Array::from(changed), 1));
}
