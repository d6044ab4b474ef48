//! Instruction counts of the small-entry operations, next to their times: the harness runs
//! itself as a probe (`compare --probe <op> <n>`, see `probe.rs`) under
//! `valgrind --tool=callgrind`, once with no operation and once with `n`; one operation is
//! the difference of the two totals (callgrind's `Collected`, user-space instructions of the
//! whole process) divided by `n`. System calls are counted the same way, under `strace -f -c`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cases::{
    FLOOR_LMDB, FLOOR_LMDB_MISS, FLOOR_OPEN_READ, FLOOR_PREAD, FLOOR_REDB, FLOOR_TEMP_RENAME,
};
use crate::{CACHED_REDB, CACHETTE, CACHETTE_INDEX, CACHETTE_MEMO, Res};

/// Hits counted per run (one run with none, one with these).
const HITS: u64 = 2_000;
/// Misses counted per run.
const MISSES: u64 = 200;

/// The operations counted: `(workload, row, probe operation)`. The `Cachette` rows (`hit`,
/// `miss`) and the in-process memo's are the files layout, the `Cachette, index layout` rows
/// (`index-hit`, `index-miss`) the index layout, as in the timed rows.
const COUNTED: &[(&str, &str, &str)] = &[
    ("hit_int", CACHETTE, "hit"),
    ("hit_int", CACHETTE_INDEX, "index-hit"),
    ("hit_int", CACHETTE_MEMO, "memo-hit"),
    ("hit_int", CACHED_REDB, "cached-hit"),
    ("hit_int", FLOOR_OPEN_READ, "floor-open-read"),
    ("hit_int", FLOOR_PREAD, "floor-pread"),
    ("hit_int", FLOOR_LMDB, "floor-lmdb"),
    ("hit_int", FLOOR_REDB, "floor-redb"),
    ("miss_tiny", CACHETTE, "miss"),
    ("miss_tiny", CACHETTE_INDEX, "index-miss"),
    ("miss_tiny", CACHED_REDB, "cached-miss"),
    ("miss_tiny", FLOOR_TEMP_RENAME, "floor-temp-rename"),
    ("miss_tiny", FLOOR_LMDB_MISS, "floor-lmdb-miss"),
];

/// A count of one operation under a tool: the tool, the harness, the scratch folder, the
/// operation and how many.
type Measure = fn(&Path, &Path, &Path, &str, u64) -> Res<f64>;

/// The instruction count of one row.
#[derive(Debug, Clone)]
pub(crate) struct Counted {
    /// The workload id.
    pub(crate) workload: &'static str,
    /// The row's contender.
    pub(crate) row: &'static str,
    /// Operations per counted run.
    pub(crate) ops: u64,
    /// Instructions per operation, or why not measured.
    pub(crate) per_op: Result<f64, String>,
    /// System calls per operation (all threads of the process), or why not measured.
    pub(crate) syscalls: Result<f64, String>,
}

/// The program `name` on `PATH`, if any.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Counts the rows of `workloads` (ids) that have counted operations, running the probe in
/// `scratch`. Without valgrind (or with `CACHETTE_BENCH_NO_CALLGRIND` set), every row says
/// why it was not measured.
pub(crate) fn count(workloads: &[&str], scratch: &Path) -> Vec<Counted> {
    let skip =
        if std::env::var("CACHETTE_BENCH_NO_CALLGRIND").is_ok_and(|v| !v.is_empty() && v != "0") {
            Some("left out (CACHETTE_BENCH_NO_CALLGRIND)".to_owned())
        } else {
            None
        };
    let (valgrind, strace) = (on_path("valgrind"), on_path("strace"));
    let exe = std::env::current_exe();
    // One count of `op` by the tool `name` at `tool` (`measure` given the tool and the
    // harness), or why there is none.
    let by = |name: &str, tool: &Option<PathBuf>, op: &str, ops: u64, measure: Measure| {
        let counted = match (&skip, tool, &exe) {
            (Some(why), _, _) => Err(why.clone()),
            (None, None, _) => Err(format!("{name} is not on PATH")),
            (None, Some(_), Err(e)) => Err(format!("no harness path: {e}")),
            (None, Some(tool), Ok(exe)) => {
                eprintln!("  {name}: {op} (0 and {ops})");
                measure(tool, exe, scratch, op, ops).map_err(|e| e.to_string())
            }
        };
        if let Err(e) = &counted {
            eprintln!("  {name}: {op}: {e}");
        }
        counted
    };
    let mut out = Vec::new();
    for &(workload, row, op) in COUNTED {
        if !workloads.contains(&workload) {
            continue;
        }
        let ops = if workload == "hit_int" { HITS } else { MISSES };
        let per_op = by("valgrind", &valgrind, op, ops, per_op);
        let syscalls = by("strace", &strace, op, ops, syscalls_per_op);
        out.push(Counted {
            workload,
            row,
            ops,
            per_op,
            syscalls,
        });
    }
    out
}

/// Instructions of one operation `op`: the totals of `n` and of 0 operations, apart, over `n`.
fn per_op(valgrind: &Path, exe: &Path, scratch: &Path, op: &str, n: u64) -> Res<f64> {
    let none = total(valgrind, exe, scratch, op, 0)?;
    let some = total(valgrind, exe, scratch, op, n)?;
    Ok((some as f64 - none as f64) / n as f64)
}

/// The instructions callgrind collected in a probe process running `n` operations `op`.
fn total(valgrind: &Path, exe: &Path, scratch: &Path, op: &str, n: u64) -> Res<u64> {
    let output = Command::new(valgrind)
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(["--probe", op, &n.to_string()])
        .arg(scratch)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(format!("the probe failed ({}): {}", output.status, tail.join(" / ")).into());
    }
    stderr
        .lines()
        .find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, v)| v.trim().to_owned())
        })
        .ok_or("no `Collected` line in callgrind's output")?
        .parse::<u64>()
        .map_err(|e| format!("callgrind's `Collected`: {e}").into())
}

/// System calls of one operation `op`: the totals of `n` and of 0 operations, apart, over `n`.
fn syscalls_per_op(strace: &Path, exe: &Path, scratch: &Path, op: &str, n: u64) -> Res<f64> {
    let none = syscalls(strace, exe, scratch, op, 0)?;
    let some = syscalls(strace, exe, scratch, op, n)?;
    Ok((some as f64 - none as f64) / n as f64)
}

/// The system calls `strace -f -c` counted in a probe process (all its threads) running `n`
/// operations `op`.
fn syscalls(strace: &Path, exe: &Path, scratch: &Path, op: &str, n: u64) -> Res<u64> {
    let summary = scratch.join(format!("strace-{op}-{n}-{}.txt", std::process::id()));
    let output = Command::new(strace)
        .args(["-f", "-c", "-o"])
        .arg(&summary)
        .arg(exe)
        .args(["--probe", op, &n.to_string()])
        .arg(scratch)
        .output()?;
    let text = std::fs::read_to_string(&summary);
    let _ = std::fs::remove_file(&summary);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(format!("the probe failed ({}): {}", output.status, tail.join(" / ")).into());
    }
    total_calls(&text?).ok_or_else(|| "no `total` line in strace's summary".into())
}

/// The `calls` column of the `total` line of a `strace -c` summary (`% time`, `seconds`,
/// `usecs/call`, `calls`, then `errors` when there were some, and `total`).
fn total_calls(summary: &str) -> Option<u64> {
    let line = summary
        .lines()
        .find(|l| l.split_whitespace().last() == Some("total"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
