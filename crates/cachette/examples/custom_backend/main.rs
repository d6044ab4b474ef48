//! A backend of your own, chosen by a config file like the built-in ones.
//!
//! `cargo run -p cachette --example custom_backend`
//!
//! `flat_dir.rs` is a complete store (`FlatDirBackend`: one file per item in a single folder),
//! registered under the config type and URL scheme `flatdir`. This program writes a config file
//! that selects it, builds a `Memory` from the file, memoizes a function, shows the hit, opens
//! the same store from its `flatdir://` URL, and prints the configuration a worker would
//! receive. Everything happens in a temporary folder, deleted at the end.
//!
//! `Memory::from_config` applies the environment: with `CACHETTE_CONFIG` or
//! `CACHETTE_LOCATION` set, they win over the file written here.

pub mod flat_dir;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachette::{Memory, MemoryConfig};

/// How many times the body of `slow_square` ran.
static CALLS: AtomicUsize = AtomicUsize::new(0);

fn slow_square(x: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    println!("    (running slow_square({x}))");
    std::thread::sleep(std::time::Duration::from_millis(200));
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");

    // 1. A config file that names the backend by its `type`. With `mmap_mode = "r"`, hits map
    //    the item's file (a read asking for a local file) instead of reading it.
    let config_file = dir.path().join("cachette.toml");
    let text = format!(
        "mmap_mode = \"r\"\n\n[backend]\ntype = \"{}\"\npath = {}\n",
        flat_dir::SCHEME,
        toml::Value::String(store.display().to_string()),
    );
    std::fs::write(&config_file, &text)?;
    println!("== {}\n{text}", config_file.display());

    // 2. The memory, built from the file.
    let memory = Memory::from_config(&config_file)?;
    let backend = memory.backend().ok_or("the memory is disabled")?;
    println!(
        "== Memory::from_config: backend `{}` at {}",
        backend.scheme(),
        backend.location()
    );
    let capabilities = backend.capabilities();
    println!(
        "   capabilities: local_files={} atomic_create={} native_expiry={} ranged_read={} blocking_io={}\n",
        capabilities.local_files,
        capabilities.atomic_create,
        capabilities.native_expiry,
        capabilities.ranged_read,
        capabilities.blocking_io
    );

    // 3. A memoized function: the first call runs the body, the second loads the result.
    let square = memory.cache(slow_square);
    println!("== Memoizing slow_square");
    println!("  slow_square(12) = {}", square.eval(12));
    println!("  slow_square(12) = {}  (loaded)", square.eval(12));
    println!("  the body ran {} time(s)\n", CALLS.load(Ordering::SeqCst));
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);

    println!("== Files in {}", store.display());
    list_files(&store)?;

    // 4. The same store from its URL, in a new memory.
    let url = backend.location();
    let by_url = Memory::from_url(&url)?;
    let in_cache = by_url.cache(slow_square).check_call_in_cache(&12);
    println!("\n== Memory::from_url({url:?})");
    println!("  slow_square(12) in cache: {in_cache}");
    println!(
        "  slow_square(12) = {}  (loaded)",
        by_url.cache(slow_square).eval(12)
    );
    assert!(in_cache);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);

    // 5. What a coordinator sends to its workers: they build the same memory from it.
    let shipped = memory
        .config()
        .ok_or("no configuration to ship")?
        .to_toml()?;
    println!("\n== memory.config().to_toml()\n{shipped}");
    let worker = MemoryConfig::from_toml(&shipped, "shipped configuration")?.build()?;
    println!(
        "== A worker's memory from it: slow_square(12) in cache: {}",
        worker.cache(slow_square).check_call_in_cache(&12)
    );
    Ok(())
}

/// Prints the names of the files of a folder, sorted.
fn list_files(dir: &Path) -> std::io::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        println!("  {name}");
    }
    Ok(())
}
