//! Crash safety on the local disk: a writer killed with SIGKILL at random moments during a
//! 256 MiB persist never leaves a partial entry visible, and housekeeping removes what it left.
//!
//! The test re-runs its own binary as the child (selected by an environment variable); the
//! child persists one large output in a loop until it is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cachette::{Array, Memory};

const CHILD_ENV: &str = "CACHETTE_CRASH_CHILD_DIR";
/// 256 MiB of `f64`, as the reliability issue asks (smaller in debug builds of dependencies
/// would not change what is tested: the kill lands inside a write of many pages either way).
const ELEMS: usize = 256 << 17;
const KILLS: usize = 20;

fn big(seed: u64) -> Array<f64> {
    Array::from(vec![seed as f64 + 0.5; ELEMS])
}

fn memory(dir: &Path) -> Memory {
    Memory::builder()
        .path(dir)
        .reporter(cachette::Reporter::new(|_| {}))
        .build()
        .unwrap()
}

/// The child: persists the output of `seed` again and again (a forced call writes every
/// time), and after each persist appends how long it took (ms) to `progress`.
fn child(dir: &Path) {
    let memory = memory(dir);
    let outputs: Vec<Array<f64>> = (0..3).map(big).collect();
    let f = memory
        .cache(move |seed: u64| outputs[seed as usize].clone())
        .name("crash::big");
    let mut seed = 0u64;
    loop {
        let started = std::time::Instant::now();
        let _ = f.call(seed % 3);
        let line = format!("{}\n", started.elapsed().as_millis());
        let mut progress = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("progress"))
            .unwrap();
        std::io::Write::write_all(&mut progress, line.as_bytes()).unwrap();
        seed += 1;
    }
}

/// The persist times the child reported.
fn progress(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("progress"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

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
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut killed_with_leftovers = 0;
    let reader = memory(dir.path());
    let f = reader.cache(big).name("crash::big");
    let cached = |seed: &u64| f.check_call_in_cache(seed);
    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_writer_killed_mid_persist_leaves_no_partial_entry",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Once the child has persisted once (bounded wait), kill it at a random moment of a
        // later persist.
        let done = progress(dir.path()).len();
        for _ in 0..600 {
            if progress(dir.path()).len() > done {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let took = progress(dir.path()).last().copied().unwrap_or(500).max(1);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % took));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if !temp_files(dir.path()).is_empty() {
            killed_with_leftovers += 1;
        }
        // Every read gets the whole entry or a miss: a hit is the exact output.
        for seed in 0..3 {
            if cached(&seed) {
                let loaded = f.eval(seed);
                assert!(
                    loaded == big(seed),
                    "round {round}: a damaged entry was served"
                );
            }
        }
    }
    // Housekeeping removes what the killed writers left, and no entry.
    let before: Vec<u64> = (0..3).filter(|s| cached(s)).collect();
    reader.housekeeping().unwrap();
    assert!(
        temp_files(dir.path()).is_empty(),
        "left: {:?}",
        temp_files(dir.path())
    );
    let after: Vec<u64> = (0..3).filter(|s| cached(s)).collect();
    assert_eq!(before, after);
    let persists = progress(dir.path());
    println!(
        "{KILLS} kills, {killed_with_leftovers} left a temporary file, {} persists \
         (median {} ms), entries kept: {after:?}",
        persists.len(),
        persists.get(persists.len() / 2).copied().unwrap_or(0)
    );
    assert!(persists.len() >= KILLS, "the child never got to write");
    assert!(killed_with_leftovers > 0, "no kill landed during a write");
}
