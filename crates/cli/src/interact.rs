//! Talking to the person at the terminal: confirmations and progress bars; and running the
//! per-entry work of long commands on a few threads.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fail::{Code, fail};

/// Asks before deleting. `--yes` answers for the person; without a terminal on stdin there is
/// nobody to ask, so the deletion is refused rather than guessed.
pub(crate) fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(fail(
            Code::NotConfirmed,
            "refusing to delete without confirmation: standard input is not a terminal; \
             pass --yes to delete, or --dry-run to only print what would be deleted",
        ));
    }
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{question} [y/N] ");
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(fail(Code::NotConfirmed, "not confirmed: nothing deleted")),
    }
}

/// A progress bar on stderr for work that takes long: shown from the start for more than
/// [`Progress::MANY`] items, or once a second has passed; never when `quiet` (JSON output) or
/// when stderr is not a terminal.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
}

impl Progress {
    /// Work on more items than this shows its bar at once.
    pub(crate) const MANY: u64 = 100;

    pub(crate) fn new(total: u64, what: &str, quiet: bool) -> Progress {
        let start = Instant::now();
        if quiet || !std::io::stderr().is_terminal() {
            return Progress { bar: None, start };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        if total > Self::MANY {
            Self::show(&bar);
        }
        Progress {
            bar: Some(bar),
            start,
        }
    }

    pub(crate) fn inc(&self, n: u64) {
        let Some(bar) = &self.bar else { return };
        bar.inc(n);
        if bar.is_hidden() && self.start.elapsed() > Duration::from_secs(1) {
            Self::show(bar);
        }
    }

    fn show(bar: &ProgressBar) {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        // Keeps the elapsed time moving while one long step (a big function) runs.
        bar.enable_steady_tick(Duration::from_millis(200));
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// How many threads read or delete entries at once: stores answer over the network, where a
/// few requests in flight go much faster than one.
const THREADS: usize = 4;

/// `work` on each item, on a few threads, in order; the first error (in item order) stops it.
/// Each item done moves `progress` by one; the caller finishes it.
pub(crate) fn each<T: Sync, R: Send>(
    items: &[T],
    progress: &Progress,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    each_weighted(items, progress, |_| 1, work)
}

/// [`each`], where an item done moves `progress` by its `weight`.
pub(crate) fn each_weighted<T: Sync, R: Send>(
    items: &[T],
    progress: &Progress,
    weight: impl Fn(&T) -> u64 + Sync,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..THREADS.min(items.len()) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    progress.inc(weight(item));
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    for slot in results {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(result) => out.push(result?),
            // Skipped after an error, which comes earlier or later in the order.
            None => continue,
        }
    }
    if out.len() < items.len() {
        anyhow::bail!("stopped after an error");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_keeps_the_order_and_stops_at_errors() {
        let items: Vec<u32> = (0..50).collect();
        let quiet = Progress::new(50, "test", true);
        assert_eq!(each(&items, &quiet, |x| Ok(x * 2)).unwrap()[49], 98);
        let err = each(&items, &quiet, |&x| {
            if x == 7 {
                anyhow::bail!("seven")
            }
            Ok(x)
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "seven");
        assert!(each(&[] as &[u32], &quiet, |x| Ok(*x)).unwrap().is_empty());
    }
}
