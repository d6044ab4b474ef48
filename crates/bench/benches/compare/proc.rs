//! Long-lived worker processes spoken to in JSON lines: the joblib worker
//! (`xtask/bench/joblib_bench.py`) and this harness's own `--worker` mode.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::Res;

/// How long one request may take before the worker is killed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// A worker process: one JSON request per line on its stdin, one answer per line on stdout.
#[derive(Debug)]
pub(crate) struct Worker {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
}

impl Worker {
    /// Starts `program args…`; its stderr goes to ours.
    pub(crate) fn spawn(what: &str, program: &Path, args: &[&str]) -> Res<Worker> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {what} ({}): {e}", program.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Worker {
            what: what.to_owned(),
            child,
            stdin,
            lines,
        })
    }

    /// Sends a request without waiting for its answer (see [`Worker::answer`]).
    pub(crate) fn send(&mut self, request: &Value) -> Res<()> {
        let stdin = self.stdin.as_mut().ok_or("the worker's stdin is closed")?;
        writeln!(stdin, "{request}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for the answer to the last request sent; an `ok: false` answer is an error.
    pub(crate) fn answer(&mut self) -> Res<Value> {
        let line = match self.lines.recv_timeout(REQUEST_TIMEOUT) {
            Ok(line) => line?,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                return Err(format!(
                    "{} gave no answer within {}s; killed it",
                    self.what,
                    REQUEST_TIMEOUT.as_secs()
                )
                .into());
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("{} exited", self.what).into());
            }
        };
        let answer: Value = serde_json::from_str(&line)
            .map_err(|e| format!("{}: unreadable answer `{line}`: {e}", self.what))?;
        if answer["ok"] != Value::Bool(true) {
            return Err(format!("{}: {}", self.what, answer["error"]).into());
        }
        Ok(answer)
    }

    /// Sends a request and waits for its answer.
    pub(crate) fn request(&mut self, request: &Value) -> Res<Value> {
        self.send(request)?;
        self.answer()
    }

    /// Sends a request and reads the `ns` of its answer.
    pub(crate) fn timed(&mut self, request: &Value) -> Res<Duration> {
        let answer = self.request(request)?;
        let ns = answer["ns"].as_u64().ok_or("an answer without `ns`")?;
        Ok(Duration::from_nanos(ns))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{{\"op\": \"quit\"}}");
        }
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
