//! The kill loop of the crash tests (`crash.rs` on the local disk, `crash_remote.rs` on S3 and
//! Redis): the test binary runs itself again as a child that persists a 256 MiB output in a
//! loop, and the parent kills it with SIGKILL at random moments of a persist, then looks at
//! what readers and the store see.
//!
//! Included by those test binaries with `#[path]`, not through `common/mod.rs`, which the
//! other test binaries share.

#![allow(dead_code)] // Each crash test uses its own subset.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cachette::{Array, MemorizedFunc, Memory, Metadata, Reporter, Validation};
use chrono::{DateTime, Utc};

/// Set in the child's environment: the folder of its progress file.
const CHILD_DIR: &str = "CACHETTE_CRASH_CHILD_DIR";
/// Set in the child's environment: where it stores (a path or a URL).
const CHILD_LOCATION: &str = "CACHETTE_CRASH_CHILD_LOCATION";

/// 256 MiB of `f64`.
pub(crate) const ELEMS: usize = 256 << 17;
/// How many times the child is killed.
pub(crate) const KILLS: usize = 20;
/// The child persists the outputs of the seeds `0..SEEDS`, in turn.
pub(crate) const SEEDS: u64 = 3;
/// The name of the memoized function, in the child and in readers.
const NAME: &str = "crash::big";
/// The longest wait for a child's first complete persist.
const FIRST_PERSIST: Duration = Duration::from_secs(120);
/// How often the parent looks at the child's progress.
const POLL: Duration = Duration::from_millis(10);

/// Kill loops of one test binary run one at a time: each is timed, and holds a few 256 MiB
/// buffers.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The output of `seed`: 256 MiB of `seed + 0.5`, filled by doubling copies (one `memcpy`
/// each: quick also in a debug build, unlike a loop over 32 million elements).
pub(crate) fn big(seed: u64) -> Array<f64> {
    let mut values = Vec::with_capacity(ELEMS);
    values.push(seed as f64 + 0.5);
    while values.len() < ELEMS {
        values.extend_from_within(..values.len().min(ELEMS - values.len()));
    }
    Array::from(values)
}

/// Whether `out` is the whole output of `seed`: compared in place as bytes, one MiB (one
/// `memcmp`) at a time, which is quick also in a debug build.
pub(crate) fn is_output_of(out: &Array<f64>, seed: u64) -> bool {
    let values = out.as_slice();
    // SAFETY: an `f64` is 8 initialised bytes without padding, and `u8` needs no alignment, so
    // the memory of the slice is a valid `[u8]` of its size for as long as it is borrowed.
    let bytes =
        unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values)) };
    let mut expected = (seed as f64 + 0.5).to_ne_bytes().to_vec();
    while expected.len() < 1 << 20 {
        expected.extend_from_within(..);
    }
    out.shape() == [ELEMS]
        && bytes
            .chunks(expected.len())
            .all(|chunk| chunk == &expected[..chunk.len()])
}

/// In the child (the test binary started by [`kill_loop`]), persists outputs until it is
/// killed, and never returns. Elsewhere, returns at once.
pub(crate) fn child_if_asked() {
    let (Some(dir), Some(location)) = (
        std::env::var_os(CHILD_DIR),
        std::env::var(CHILD_LOCATION).ok(),
    ) else {
        return;
    };
    // Strict: a persist that fails is an error, written to the progress file.
    let memory = Memory::builder()
        .url(location)
        .strict(true)
        .reporter(Reporter::new(|_| {}))
        .build()
        .unwrap();
    let outputs: Vec<Array<f64>> = (0..SEEDS).map(big).collect();
    let f = memory
        .cache_capturing(move |seed: u64| outputs[seed as usize].clone())
        .name(NAME);
    // A forced call writes every time. After each persist, append how long it took (ms) to
    // the progress file, or why it failed.
    for seed in (0..SEEDS).cycle() {
        let started = Instant::now();
        let persisted = f.try_call(seed);
        let ms = started.elapsed().as_millis();
        let line = match persisted {
            Ok(_) => format!("{ms}\n"),
            Err(why) => format!(
                "failed after {ms} ms: {}\n",
                why.to_string().replace('\n', " ")
            ),
        };
        let mut progress = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&dir).join("progress"))
            .unwrap();
        std::io::Write::write_all(&mut progress, line.as_bytes()).unwrap();
    }
}

/// The lines of the child's progress file.
fn progress_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("progress"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The times (ms) of the child's complete persists.
fn persists(dir: &Path) -> Vec<u64> {
    progress_lines(dir)
        .iter()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// One kill of the child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kill {
    /// The round, from 0.
    pub(crate) round: usize,
    /// The process id of the child.
    pub(crate) pid: u32,
    /// How long after a complete persist the kill came.
    pub(crate) delay: Duration,
    /// How long that persist took.
    pub(crate) took: Duration,
    /// No persist completed between that one and the kill: it landed during the next one.
    pub(crate) mid_persist: bool,
}

/// What a kill loop did.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// The kills.
    pub(crate) kills: Vec<Kill>,
    /// The times (ms) of every complete persist of every child, sorted.
    pub(crate) persists: Vec<u64>,
    /// How long the loop took, checks included.
    pub(crate) elapsed: Duration,
}

impl Summary {
    /// How many kills came before the persist under way completed, as the progress lines
    /// tell (the others came during a later one, or between two).
    pub(crate) fn mid_persist(&self) -> usize {
        self.kills.iter().filter(|k| k.mid_persist).count()
    }

    /// The median persist time, in ms.
    pub(crate) fn median_ms(&self) -> u64 {
        self.persists
            .get(self.persists.len() / 2)
            .copied()
            .unwrap_or(0)
    }

    /// The figures of the loop, on one line.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} kills, {} before the persist under way completed (progress lines), {} persists (median {} ms), {:.1} s in all",
            self.kills.len(),
            self.mid_persist(),
            self.persists.len(),
            self.median_ms(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Kills a child writer [`KILLS`] times: each round starts the test `test` of this binary as a
/// child storing at `location`, waits for its first complete persist, kills it (SIGKILL) at a
/// random moment within the time that persist took, so within the next one, and calls `after`
/// with the kill once the child is gone. Panics if a persist fails, or if a child completes
/// none in time.
pub(crate) fn kill_loop(test: &str, location: &str, mut after: impl FnMut(&Kill)) -> Summary {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut kills = Vec::new();
    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_LOCATION, location)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let done = persists(dir.path()).len();
        let deadline = Instant::now() + FIRST_PERSIST;
        let seen = loop {
            if let Some(failed) = progress_lines(dir.path())
                .iter()
                .find(|l| l.starts_with("failed"))
            {
                let _ = child.kill();
                let _ = child.wait();
                panic!("round {round}: a persist {failed}");
            }
            let now = persists(dir.path());
            if now.len() > done {
                break now;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "round {round}: the child completed no persist in {FIRST_PERSIST:?}; its progress: {:?}",
                    progress_lines(dir.path())
                );
            }
            std::thread::sleep(POLL);
        };
        let took = Duration::from_millis(seen.last().copied().unwrap_or(500).max(1));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(rng % took.as_millis() as u64);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let kill = Kill {
            round,
            pid: child.id(),
            delay,
            took,
            mid_persist: persists(dir.path()).len() == seen.len(),
        };
        after(&kill);
        kills.push(kill);
    }
    let mut persists = persists(dir.path());
    persists.sort_unstable();
    Summary {
        kills,
        persists,
        elapsed: started.elapsed(),
    }
}

/// The function readers memoize, as a type that can be named.
type Big = fn(u64) -> Array<f64>;

/// A reader of the entries the child writes.
#[derive(Debug)]
pub(crate) struct Reader {
    memory: Memory,
    f: MemorizedFunc<Array<f64>, Big>,
    /// The time of the call whose entry `f` last looked at (its validation records it).
    seen: Arc<Mutex<Option<DateTime<Utc>>>>,
    /// Load again only the entries whose call time changed since they last loaded whole.
    only_changed: bool,
    /// Per seed, the call time of the entry that last loaded whole.
    loaded: Mutex<HashMap<u64, DateTime<Utc>>>,
}

impl Reader {
    /// A reader of the store at `location` (a path or a URL).
    pub(crate) fn new(location: &str) -> Reader {
        let memory = Memory::builder()
            .url(location)
            .reporter(Reporter::new(|_| {}))
            .compute_once(false)
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(None));
        let sink = seen.clone();
        let f =
            memory
                .cache_fn(big)
                .name(NAME)
                .validate(Validation::new(move |meta: &Metadata| {
                    *sink.lock().unwrap() = Some(meta.time);
                    true
                }));
        Reader {
            memory,
            f,
            seen,
            only_changed: false,
            loaded: Mutex::default(),
        }
    }

    /// A reader whose [`check`](Self::check) loads again only the entries written since they
    /// last loaded whole, as the call time in their metadata tells: for stores whose items
    /// cannot change in place (S3 objects), where loading 256 MiB is slow.
    pub(crate) fn only_changed(mut self) -> Reader {
        self.only_changed = true;
        self
    }

    /// The memory.
    pub(crate) fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The seeds whose entries are stored.
    pub(crate) fn cached(&self) -> Vec<u64> {
        (0..SEEDS)
            .filter(|s| self.f.check_call_in_cache(s))
            .collect()
    }

    /// Checks that every entry that is stored loads whole and exact, and gives the seeds of
    /// those entries. A load never computes: an entry that is there but does not load (a
    /// damaged one reads as a miss) fails the check.
    pub(crate) fn check(&self, round: usize) -> Vec<u64> {
        let mut cached = Vec::new();
        for seed in 0..SEEDS {
            *self.seen.lock().unwrap() = None;
            if !self.f.check_call_in_cache(&seed) {
                continue;
            }
            cached.push(seed);
            let time = self.seen.lock().unwrap().take();
            let mut loaded = self.loaded.lock().unwrap();
            if self.only_changed && time.is_some() && loaded.get(&seed) == time.as_ref() {
                continue;
            }
            let out = self
                .f
                .call_with(seed, |_| Err("stored, yet it did not load"));
            match out {
                Ok(out) => assert!(
                    is_output_of(&out, seed),
                    "round {round}: a damaged entry was served for seed {seed}"
                ),
                Err(e) => panic!("round {round}, seed {seed}: {e}"),
            }
            // The time of the entry that loaded, if the load validated it, else of the one
            // looked at (the same, unless a write that the server had received whole before
            // the kill completed meanwhile: that entry is then loaded next time).
            match self.seen.lock().unwrap().take().or(time) {
                Some(t) => loaded.insert(seed, t),
                None => loaded.remove(&seed),
            };
        }
        cached
    }
}
