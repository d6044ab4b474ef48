//! The harness's own worker mode (`compare --worker`), for the concurrent-hits workload: two
//! such processes hit the same Cachette store (or read the same file, for the floor) at once.
//!
//! It speaks the joblib worker's protocol: `conc_setup` (`dir`, `kind`: `cachette` (the store
//! in `dir`, opened on the files layout, as the harness made it), `cached` (the `cached`
//! crate's redb store in `dir`) or `floor`, `path` for the floor), then `conc_run` (`n`,
//! `start_at_ns`): wait for that wall-clock instant, run `n` operations, answer their time in
//! `ns`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cached::RedbCache;
use cachette::Memory;
use serde_json::{Value, json};

use crate::Res;
use crate::cases::{SquareFn, square_func};
use crate::probe::{cached_call, files_url, open_read, redb_cache, square};

/// What this worker does on `conc_run`.
enum Task {
    None,
    Hit(Box<SquareFn>),
    Cached(Box<RedbCache<String, i64>>),
    Read(PathBuf),
}

/// Serves requests on stdin until `quit` or end of input.
pub(crate) fn serve() -> ExitCode {
    let mut task = Task::None;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(req) if req["op"] == "quit" => break,
            Ok(req) => handle(&mut task, &req),
            Err(e) => Err(e.into()),
        };
        let mut answer = answer.unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}));
        answer["ok"] = json!(answer.get("error").is_none());
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn handle(task: &mut Task, req: &Value) -> Res<Value> {
    match req["op"].as_str() {
        Some("conc_setup") => {
            let dir = req["dir"].as_str().ok_or("no dir")?;
            *task = match req["kind"].as_str() {
                Some("cachette") => {
                    let f = square_func(&Memory::from_url(&files_url(Path::new(dir)))?);
                    f.eval(42);
                    Task::Hit(Box::new(f))
                }
                Some("cached") => {
                    let cache = redb_cache::<String, i64>(dir.as_ref(), "concurrent")?;
                    cached_call(&cache, 42.to_string(), || square(42))?;
                    Task::Cached(Box::new(cache))
                }
                Some("floor") => Task::Read(PathBuf::from(req["path"].as_str().ok_or("no path")?)),
                other => return Err(format!("unknown kind {other:?}").into()),
            };
            Ok(json!({}))
        }
        Some("conc_run") => {
            let n = req["n"].as_u64().ok_or("no n")?;
            let start_at = req["start_at_ns"].as_u64().ok_or("no start_at_ns")?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
            if start_at > now {
                std::thread::sleep(std::time::Duration::from_nanos(start_at - now));
            }
            let started = Instant::now();
            match task {
                Task::Hit(f) => {
                    for _ in 0..n {
                        std::hint::black_box(f.eval(std::hint::black_box(42)));
                    }
                }
                Task::Cached(cache) => {
                    for _ in 0..n {
                        let x = std::hint::black_box(42i64);
                        std::hint::black_box(cached_call(&**cache, x.to_string(), || square(x))?);
                    }
                }
                Task::Read(path) => {
                    let mut buf = Vec::new();
                    for _ in 0..n {
                        let read = open_read(path, &mut buf)?;
                        std::hint::black_box(&buf[..read]);
                    }
                }
                Task::None => return Err("conc_run before conc_setup".into()),
            }
            Ok(json!({"ns": started.elapsed().as_nanos() as u64}))
        }
        other => Err(format!("unknown op {other:?}").into()),
    }
}
