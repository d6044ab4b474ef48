//! The table (terminal and Markdown), the targets, the machine and the versions.

use std::path::Path;
use std::process::Command;

use crate::callgrind::Counted;
use crate::stats::{CALIBRATION_TOLERANCE, Outcome};
use crate::{CACHETTE, Target, Workload};

/// The machine the run measured.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    cpu: String,
    cores: usize,
    memory: String,
    os: String,
}

impl Machine {
    /// Reads `/proc` and `/etc/os-release`.
    pub(crate) fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(
                || std::env::consts::ARCH.to_owned(),
                |(_, v)| v.trim().to_owned(),
            );
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or_else(
                || "unknown".to_owned(),
                |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
            );
        let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let name = release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map_or(std::env::consts::OS, |v| v.trim_matches('"'));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            os: format!("{name}, Linux {}", kernel.trim()),
        }
    }
}

impl Machine {
    /// The machine in one line, for sections measured apart from the main table.
    pub(crate) fn line(&self) -> String {
        format!(
            "{}, {} cores, {}, {}",
            self.cpu, self.cores, self.memory, self.os
        )
    }
}

/// The versions of everything measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Versions {
    rustc: Option<String>,
    cachette: String,
    cached: Option<String>,
    /// The joblib worker's Python.
    pub(crate) python: Option<String>,
    /// joblib.
    pub(crate) joblib: Option<String>,
    /// numpy.
    pub(crate) numpy: Option<String>,
}

impl Versions {
    /// The Rust side's versions: `rustc --version`, and Cachette's and `cached`'s in
    /// `Cargo.lock` (this harness is a crate of its own, whose version is not Cachette's).
    pub(crate) fn probe(root: &Path) -> Versions {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let rustc = Command::new(rustc)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
        let locked = |name: &str| {
            let line = format!("name = \"{name}\"\n");
            lock.split("[[package]]")
                .find(|p| p.contains(&line))
                .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
                .map(|v| v.trim_matches('"').to_owned())
        };
        Versions {
            rustc,
            // The workspace's version (the crates share it) when `Cargo.lock` cannot be read.
            cachette: locked("cachette").unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            cached: locked("cached"),
            ..Versions::default()
        }
    }
}

/// A target's verdict.
#[derive(Debug, Clone)]
enum Verdict {
    Met(String),
    Missed(String),
    Unchecked(String),
}

/// A target checked against one workload's rows.
#[derive(Debug, Clone)]
struct Checked {
    /// The row the verdict is shown on.
    row: String,
    /// What the target asks, beside that row.
    text: String,
    /// What the target asks, on its own.
    long: String,
    verdict: Verdict,
}

impl Checked {
    fn cell(&self) -> String {
        match &self.verdict {
            Verdict::Met(v) => format!("{}: met ({v})", self.text),
            Verdict::Missed(v) => format!("{}: MISSED ({v})", self.text),
            Verdict::Unchecked(why) => format!("{}: not checked ({why})", self.text),
        }
    }
}

/// A ratio as the table prints it.
fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        // Two significant digits.
        let digits = (1.0 - r.log10().floor()).clamp(2.0, 9.0) as usize;
        format!("{r:.digits$}×")
    }
}

/// Nanoseconds as the table prints them.
pub(crate) fn duration(ns: f64) -> String {
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// A floor's row name without its `floor: ` tag.
fn floor_name(row: &str) -> &str {
    row.strip_prefix("floor: ").unwrap_or(row)
}

fn check(w: &Workload, target: &Target) -> Checked {
    let c = w.median(CACHETTE);
    let missing = |name: &str| Verdict::Unchecked(format!("{name} not measured"));
    match *target {
        Target::Faster { than, factor } => {
            let verdict = match (c, w.median(than)) {
                (Some(c), Some(o)) if o / c >= factor => Verdict::Met(ratio(o / c)),
                (Some(c), Some(o)) => Verdict::Missed(format!("{} < {factor}×", ratio(o / c))),
                (None, _) => missing(CACHETTE),
                (_, None) => missing(than),
            };
            Checked {
                row: than.to_owned(),
                text: format!("Cachette ≥ {factor}× faster"),
                long: format!("Cachette ≥ {factor}× faster than {than}"),
                verdict,
            }
        }
        Target::Within { floor, factor } => {
            let verdict = match (c, w.median(floor)) {
                (Some(c), Some(f)) if c / f <= factor => Verdict::Met(ratio(c / f)),
                (Some(c), Some(f)) => Verdict::Missed(format!("{} > {factor}×", ratio(c / f))),
                (None, _) => missing(CACHETTE),
                (_, None) => missing(floor),
            };
            Checked {
                row: floor.to_owned(),
                text: format!("Cachette ≤ {factor}× this floor"),
                long: format!("Cachette ≤ {factor}× the floor ({})", floor_name(floor)),
                verdict,
            }
        }
        Target::SpeedOf { floor, fraction } => {
            let verdict = match (c, w.median(floor)) {
                (Some(c), Some(f)) if f / c >= fraction => Verdict::Met(ratio(f / c)),
                (Some(c), Some(f)) => Verdict::Missed(format!("{} < {fraction}×", ratio(f / c))),
                (None, _) => missing(CACHETTE),
                (_, None) => missing(floor),
            };
            Checked {
                row: floor.to_owned(),
                text: format!("Cachette ≥ {fraction}× this speed"),
                long: format!(
                    "Cachette ≥ {fraction}× the speed of the floor ({})",
                    floor_name(floor)
                ),
                verdict,
            }
        }
        Target::AtMost(limit) => {
            let limit_ns = limit.as_nanos() as f64;
            let verdict = match c {
                Some(c) if c <= limit_ns => Verdict::Met(duration(c)),
                Some(c) => Verdict::Missed(format!("{} > {}", duration(c), duration(limit_ns))),
                None => missing(CACHETTE),
            };
            Checked {
                row: CACHETTE.to_owned(),
                text: format!("≤ {}", duration(limit_ns)),
                long: format!("Cachette ≤ {}", duration(limit_ns)),
                verdict,
            }
        }
        Target::RowWithin { row, of, factor } => {
            let verdict = match (w.median(row), w.median(of)) {
                (Some(r), Some(o)) if r / o <= factor => Verdict::Met(ratio(r / o)),
                (Some(r), Some(o)) => Verdict::Missed(format!("{} > {factor}×", ratio(r / o))),
                (None, _) => missing(row),
                (_, None) => missing(of),
            };
            Checked {
                row: row.to_owned(),
                text: format!("≤ {factor}× {}", floor_name(of)),
                long: format!("{row} ≤ {factor}× {}", floor_name(of)),
                verdict,
            }
        }
        Target::RowAtMost { row, limit } => {
            let limit_ns = limit.as_nanos() as f64;
            let verdict = match w.median(row) {
                Some(r) if r <= limit_ns => Verdict::Met(duration(r)),
                Some(r) => Verdict::Missed(format!("{} > {}", duration(r), duration(limit_ns))),
                None => missing(row),
            };
            Checked {
                row: row.to_owned(),
                text: format!("≤ {}", duration(limit_ns)),
                long: format!("{row} ≤ {}", duration(limit_ns)),
                verdict,
            }
        }
    }
}

/// One line of the table, as text cells.
struct Line {
    workload: String,
    id: &'static str,
    contender: String,
    median: String,
    spread: String,
    ratio: String,
    samples: String,
    target: String,
}

/// The run's results and what it ran on.
#[derive(Debug)]
pub(crate) struct Report {
    machine: Machine,
    versions: Versions,
    mode: &'static str,
    date: String,
    notes: Vec<String>,
    /// The workloads' results.
    pub(crate) results: Vec<Workload>,
    /// Instructions per operation of the small-entry rows.
    instructions: Vec<Counted>,
    /// The `## Scaling` section, kept from the previous `BENCHMARKS.md` or new.
    scaling: Option<String>,
    /// The date and CPU of the previous run, when it was on another CPU.
    other_machine: Option<(String, String)>,
}

impl Report {
    /// A report of `results`, dated now.
    pub(crate) fn new(
        machine: Machine,
        versions: Versions,
        mode: &'static str,
        notes: Vec<String>,
        results: Vec<Workload>,
        instructions: Vec<Counted>,
        scaling: Option<String>,
    ) -> Report {
        Report {
            machine,
            versions,
            mode,
            notes,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            results,
            instructions,
            scaling,
            other_machine: None,
        }
    }

    /// The report, noting whether the run of `previous` (the committed `BENCHMARKS.md`) was
    /// on another CPU: times, and targets that compare with other software, move between
    /// machines.
    pub(crate) fn after(mut self, previous: &str) -> Report {
        let field = |name: &str| {
            let prefix = format!("| {name} | ");
            let run = previous
                .split("\n## ")
                .find(|part| part.starts_with("The run"))?;
            run.lines()
                .find_map(|line| line.strip_prefix(&prefix)?.strip_suffix(" |"))
                .map(str::to_owned)
        };
        self.other_machine = match (field("date"), field("CPU")) {
            (Some(date), Some(cpu)) if cpu != self.machine.cpu => Some((date, cpu)),
            _ => None,
        };
        self
    }

    /// The warning that the previous run was on another CPU, if it was.
    pub(crate) fn other_machine_note(&self) -> Option<String> {
        let (date, cpu) = self.other_machine.as_ref()?;
        Some(format!(
            "**Another machine.** The run before this one ({date}) was on another CPU ({cpu}). \
             Times, and the targets that compare Cachette with other software, move between \
             machines (the price of a system call above all): compare the rows of this run with \
             each other, not with that run's."
        ))
    }

    /// The note under the table naming the rows whose median is off their calibration, if
    /// any.
    fn drift_note(&self) -> Option<String> {
        let mut rows = Vec::new();
        for w in &self.results {
            for r in &w.rows {
                if let Outcome::Measured(s) = &r.outcome
                    && let (Some(drift), Some(cal)) = (s.calibration_drift(), s.calibrated)
                {
                    rows.push(format!(
                        "{} (`{}`), {}: median {}, calibration {}/op ({})",
                        w.title,
                        w.id,
                        r.name,
                        duration(s.median),
                        duration(cal),
                        ratio(drift)
                    ));
                }
            }
        }
        (!rows.is_empty()).then(|| {
            format!(
                "Off their calibration (the median per operation is more than \
                 {CALIBRATION_TOLERANCE}× away from what the warm-up measured when it set the \
                 operations per sample, so the samples did not last what was planned; to be read \
                 with care): {}.",
                rows.join("; ")
            )
        })
    }

    /// The instruction counts as table lines: workload, contender, median, instructions,
    /// system calls, operations counted.
    fn instruction_lines(&self) -> Vec<[String; 6]> {
        self.instructions
            .iter()
            .map(|c| {
                let w = self.results.iter().find(|w| w.id == c.workload);
                let median = w
                    .and_then(|w| w.rows.iter().find(|r| r.name == c.row))
                    .map_or_else(String::new, |r| match &r.outcome {
                        Outcome::Measured(s) => duration(s.median),
                        Outcome::NotRun(_) => "not run".into(),
                    });
                let instructions = match &c.per_op {
                    Ok(n) => thousands(n.round() as i64),
                    Err(why) => format!("not measured ({why})"),
                };
                let syscalls = match &c.syscalls {
                    // A difference of two counts: a tenth either side of zero is none.
                    Ok(n) if n.abs() < 0.1 => "0".to_owned(),
                    Ok(n) => format!("{n:.1}"),
                    Err(why) => format!("not measured ({why})"),
                };
                [
                    w.map_or_else(
                        || c.workload.to_owned(),
                        |w| format!("{} (`{}`)", w.title, w.id),
                    ),
                    c.row.to_owned(),
                    median,
                    instructions,
                    syscalls,
                    thousands(c.ops as i64),
                ]
            })
            .collect()
    }

    fn lines(&self) -> Vec<Line> {
        let mut lines = Vec::new();
        for w in &self.results {
            let checked: Vec<Checked> = w.targets.iter().map(|t| check(w, t)).collect();
            let base = w.median(CACHETTE);
            for (i, row) in w.rows.iter().enumerate() {
                let target = checked
                    .iter()
                    .filter(|c| c.row == row.name)
                    .map(Checked::cell)
                    .collect::<Vec<_>>()
                    .join("; ");
                lines.push(Line {
                    id: if i == 0 { w.id } else { "" },
                    workload: if i == 0 {
                        w.title.clone()
                    } else {
                        String::new()
                    },
                    contender: row.name.clone(),
                    median: match &row.outcome {
                        Outcome::Measured(s) => duration(s.median),
                        Outcome::NotRun(why) => format!("not run: {why}"),
                    },
                    spread: match &row.outcome {
                        Outcome::Measured(s) => {
                            format!("{} – {}", duration(s.p10), duration(s.p90))
                        }
                        Outcome::NotRun(_) => String::new(),
                    },
                    ratio: match (row.median(), base) {
                        (Some(m), Some(b)) => ratio(m / b),
                        _ => String::new(),
                    },
                    samples: match &row.outcome {
                        Outcome::Measured(s) => match (s.calibration_drift(), s.calibrated) {
                            (Some(drift), Some(cal)) => format!(
                                "{} × {} (off its calibration: {}/op, {})",
                                s.samples,
                                s.iters,
                                duration(cal),
                                ratio(drift)
                            ),
                            _ => format!("{} × {}", s.samples, s.iters),
                        },
                        Outcome::NotRun(_) => String::new(),
                    },
                    target,
                });
            }
        }
        lines
    }

    /// The table for the terminal.
    pub(crate) fn terminal_table(&self) -> String {
        let head = Line {
            workload: "workload".into(),
            id: "",
            contender: "contender".into(),
            median: "median".into(),
            spread: "p10 – p90".into(),
            ratio: "÷ Cachette".into(),
            samples: "samples".into(),
            target: "target".into(),
        };
        let lines = self.lines();
        let cells = |l: &Line| {
            [
                l.workload.clone(),
                l.contender.clone(),
                l.median.clone(),
                l.spread.clone(),
                l.ratio.clone(),
                l.target.clone(),
            ]
        };
        let mut widths = [0usize; 6];
        for l in std::iter::once(&head).chain(&lines) {
            for (w, c) in widths.iter_mut().zip(cells(l)) {
                // "not run" reasons and targets may be long: they do not widen the columns.
                *w = (*w).max(c.chars().count().min(44));
            }
        }
        let render = |l: &Line| {
            let cells = cells(l);
            let mut out = String::new();
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w.saturating_sub(c.chars().count());
                if i == 2 || i == 4 {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(c);
                } else {
                    out.push_str(c);
                    if i + 1 < cells.len() {
                        out.push_str(&" ".repeat(pad));
                    }
                }
                if i + 1 < cells.len() {
                    out.push_str("  ");
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = format!(
            "Cachette side by side ({} mode; {}): median time per operation, p10–p90 over samples, \
             time ÷ Cachette's\n\n",
            self.mode, self.date
        );
        out.push_str(&render(&head));
        out.push('\n');
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
        out.push('\n');
        for (i, l) in lines.iter().enumerate() {
            if i > 0 && !l.workload.is_empty() {
                out.push('\n');
            }
            out.push_str(&render(l));
            out.push('\n');
        }
        for note in &self.notes {
            out.push_str(&format!("\n{note}\n"));
        }
        if let Some(note) = self.drift_note() {
            out.push_str(&format!("\n{note}\n"));
        }
        if !self.instructions.is_empty() {
            out.push_str("\nInstructions and system calls per operation (callgrind, strace):\n");
            for [w, c, m, i, s, _] in self.instruction_lines() {
                out.push_str(&format!("  {w:<34} {c:<46} {m:>10}  {i:>8}  {s}\n"));
            }
        }
        out
    }

    /// One line per target, met or missed.
    pub(crate) fn target_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for w in &self.results {
            for t in &w.targets {
                let c = check(w, t);
                let (mark, detail) = match &c.verdict {
                    Verdict::Met(v) => ("met", v.clone()),
                    Verdict::Missed(v) => ("MISSED", v.clone()),
                    Verdict::Unchecked(v) => ("not checked", v.clone()),
                };
                out.push(format!("{} — {}: {mark} ({detail})", w.title, c.long));
            }
        }
        out
    }

    /// `BENCHMARKS.md`.
    pub(crate) fn markdown(&self, with_plot: bool) -> String {
        let v = &self.versions;
        let or_none = |s: &Option<String>| s.clone().unwrap_or_else(|| "not run".into());
        let mut md = String::new();
        md.push_str("# Benchmarks\n\n");
        md.push_str(
            "Cachette side by side with joblib's `Memory`, the `cached` crate and the raw work \
             neither can avoid (the floors), measured in one run of `cargo xtask bench`. This \
             file is regenerated by every run: every figure in it was measured in the run \
             described below.\n\n",
        );
        md.push_str("## The run\n\n| | |\n| --- | --- |\n");
        let m = &self.machine;
        for (k, val) in [
            ("date", self.date.clone()),
            (
                "mode",
                format!(
                    "{} (`cargo xtask bench{}`)",
                    self.mode,
                    if self.mode == "full" { " --full" } else { "" }
                ),
            ),
            ("CPU", m.cpu.clone()),
            ("cores", m.cores.to_string()),
            ("memory", m.memory.clone()),
            ("OS", m.os.clone()),
            ("rustc", or_none(&v.rustc)),
            ("cachette", v.cachette.clone()),
            ("cached", or_none(&v.cached)),
            ("Python", or_none(&v.python)),
            ("joblib", or_none(&v.joblib)),
            ("numpy", or_none(&v.numpy)),
        ] {
            md.push_str(&format!("| {k} | {val} |\n"));
        }
        if let Some(note) = self.other_machine_note() {
            md.push_str(&format!("\n{note}\n"));
        }
        md.push_str("\n## Results\n\n");
        md.push_str(
            "Median time per operation; the spread is the 10th to 90th percentile over the \
             samples; `÷ Cachette` is the contender's median divided by Cachette's (above 1: \
             slower than Cachette); samples are rounds × operations per sample. On the local \
             disk, the `Cachette` rows are the files layout (`?layout=files`: one file per entry, \
             the default in a store others may write), and the `Cachette, index layout` rows are \
             the index layout (`?layout=index`: small entries in an LMDB index, the default, \
             `layout=auto`, in a store only you may write).\n\n",
        );
        md.push_str(
            "| workload | contender | median | p10 – p90 | ÷ Cachette | samples | target |\n\
             | --- | --- | ---: | ---: | ---: | ---: | --- |\n",
        );
        for l in self.lines() {
            let esc = |s: &str| s.replace('|', "\\|");
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                if l.id.is_empty() {
                    String::new()
                } else {
                    format!("{} (`{}`)", esc(&l.workload), l.id)
                },
                esc(&l.contender),
                esc(&l.median),
                esc(&l.spread),
                esc(&l.ratio),
                esc(&l.samples),
                esc(&l.target)
            ));
        }
        for note in &self.notes {
            md.push_str(&format!("\n{note}\n"));
        }
        if let Some(note) = self.drift_note() {
            md.push_str(&format!("\n{note}\n"));
        }
        md.push_str(
            "\n### Instructions and system calls per operation\n\n\
             User-space instructions of one operation, counted by callgrind, and its system calls, \
             counted by strace, each in a process of its own (see How it is measured), beside the \
             median time of the same row above.\n\n",
        );
        let counted = self.instruction_lines();
        if counted.is_empty() {
            md.push_str("Not measured in this run (neither `hit_int` nor `miss_tiny` ran).\n");
        } else {
            md.push_str(
                "| workload | contender | median | instructions/op | system calls/op | operations counted |\n\
                 | --- | --- | ---: | ---: | ---: | ---: |\n",
            );
            for [w, c, m, i, s, n] in counted {
                md.push_str(&format!("| {w} | {c} | {m} | {i} | {s} | {n} |\n"));
            }
        }
        md.push_str("\n## Targets\n\n");
        for line in self.target_lines() {
            md.push_str(&format!("- {line}\n"));
        }
        if with_plot {
            md.push_str(
                "\n## Hit latency against argument size\n\n\
                 ![Median hit latency of Cachette and joblib against the size of the argument]\
                 (docs/bench/hit-latency.svg)\n",
            );
        }
        md.push('\n');
        md.push_str(
            self.scaling
                .as_deref()
                .unwrap_or(SCALING_NOT_RUN)
                .trim_end(),
        );
        md.push('\n');
        md.push_str(METHOD);
        md
    }
}

/// The `## Scaling` section before any `--scaling` run.
const SCALING_NOT_RUN: &str = "## Scaling

Not measured yet: `cargo xtask bench --scaling` measures it (stores of 1k to 1M entries; it
takes over ten minutes, so the default run leaves it out).
";

/// The `## Scaling` section of a `BENCHMARKS.md` (up to the next `## ` heading), if any.
pub(crate) fn scaling_section(md: &str) -> Option<String> {
    let start = md.find("\n## Scaling\n")? + 1;
    let rest = &md[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    Some(rest[..end].to_owned())
}

/// `md` with its `## Scaling` section replaced by `section` (or `section` added before
/// `## How it is measured`, or at the end).
pub(crate) fn with_scaling(md: &str, section: &str) -> String {
    let section = format!("{}\n", section.trim_end());
    if let Some(old) = scaling_section(md) {
        return md.replacen(&old, &format!("{section}\n"), 1);
    }
    match md.find("\n## How it is measured\n") {
        Some(i) => format!("{}\n{section}{}", &md[..i], &md[i..]),
        None => format!("{}\n\n{section}", md.trim_end()),
    }
}

/// An integer with thin separators of thousands: `12,345`.
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// How the figures are taken, for `BENCHMARKS.md`.
const METHOD: &str = "
## How it is measured

- **One command**: `cargo xtask bench` starts Redis and an S3 server (moto) on 127.0.0.1,
  creates `target/bench-venv` with `joblib` and `numpy` from PyPI when missing, and runs the
  harness `crates/bench/benches/compare` (`--full` for the full sizes and more samples;
  `--only id,…` for some workloads; `--micro` for the per-crate divan micro-benchmarks;
  `--scaling` for the scaling table alone).
- **Interleaved**: within a workload, each round takes one sample of every contender, in an
  order rotated from round to round, so that a slow period of the machine touches all of them.
  A warm-up, which also sets the operations per sample, is not counted: it grows the count
  until a sample lasts a quarter of the planned time, then checks the count with a sample of
  that many operations (estimating again while that sample is more than 1.5× off the planned
  time), and the rounds use the count it settled on. A row whose median is more than 2×
  away from the time per operation of that checking sample says so in its samples cell
  (`off its calibration`).
- **joblib** runs in a long-lived Python worker that the harness drives over a pipe; it times
  joblib's calls itself with `time.perf_counter_ns`, so neither the interpreter's start-up nor
  the pipe is counted.
- **Same inputs**: the int 42; the list `0..100`; `f64` arrays of `i * 0.5` (numpy
  `arange(n) * 0.5`); the map of `\"key-i\" → i` for 100,000 keys; array outputs of `i * 1.0`.
  Every contender has its own fresh cache folder on the same file system; the folders are
  kept until the end of the run (their files of 1 MiB or more deleted when their workload
  ends), not deleted between samples or between workloads: on ext4, a file made after many
  were deleted steps over the inodes freed in the last minutes, so a store deleted between the
  samples of `populate`, or a workload's stores deleted before the next workload's misses,
  would slow the samples after it. For the same reason, the run begins by creating 2,048
  files in fresh folders and timing the last 256, and waits (at most 5½ minutes) while they
  take more than 100 µs each, as they do in the minutes after many deletions made before the
  run (a build, a test run, an earlier run's clean-up); the notes after the table say what it
  found.
- **Same work outside the clock**: what a memoized function returns is ready before a timed
  miss starts, for every contender: Cachette's function returns a shared view of the prepared
  array, joblib's the prepared array, and `cached`'s gets its own copy of it made before the
  clock starts (the timed call moves it). The outputs are dropped after the clock stops.
- **Layouts of the local disk**: every Cachette store of a local-disk workload names its
  layout in its location URL, since the run's folders are ones only the current user may
  write, where the default layout (`layout=auto`) is the index layout. The `Cachette` rows,
  and the rows made from them (signed entries, hardened keys, the in-process memo, the two
  processes of the concurrent hits), use `file://<folder>?layout=files`; the
  `Cachette, index layout` rows use `file://<folder>?layout=index`.
- **`cached`** (its redb disk store and its Redis store) is used as its `#[io_cached]` and
  `#[concurrent_cached]` functions use it: `cache_get`, then on a miss `cache_set_ref` (the
  borrowed set its macros call for these stores: the value is serialized, not cloned). Its
  keys are strings, so a key is the argument's `to_string()`, a list's `Debug` form, or an
  array's xxh3-128 in hex. Its redb store is built with `durable(false)` (no fsync per write,
  like Cachette); populating ends with one `flush`. The two do not keep the same promise,
  though: redb keeps such commits in the process's memory until a durable one (its miss makes
  no write to the file: see the system calls below), so a process that is killed loses them,
  while Cachette's commits without fsync are in the system's page cache, which survives the
  process (only a system crash loses them). The tiny miss also has both stores durable, each
  write flushed to the device before the call returns: `cached`'s redb store as `cached`
  builds it by default (`durable(true)`: `Durability::Immediate`), and Cachette's index
  layout with `durable=true` in its URL.
- **Floors**: the least a contender could do for the same result, with nothing of a cache
  around it. For a small hit, four of them, each returning the entry's bytes (the bytes of
  Cachette's entry file on the files layout, under its key `function-folder/argument-id`):
  `open`, one `read` of a copy of the entry file into a buffer of 4 KiB kept from call to call
  (a shorter read is the whole file) and `close`, three system calls; `pread` (`FileExt::read_at`) of that
  file kept open, into a buffer allocated once (no `open`, no allocation: the least a file
  store could do); an LMDB get through heed (one `get` and a copy into a `Vec`, in a read
  transaction kept open: nothing writes the floor's environment, so no transaction need
  begin); and a `redb` table get without the `cached` layer (one read transaction, the table
  opened, one `get`, a copy into a `Vec`). For a tiny miss, two: write-temp-then-rename (the
  files layout's), and the least work that keeps the index layout's promises (the entry seen
  by every process once the call returns, kept when the process is killed, computed once):
  the open-file-description lock of a claim, an LMDB write transaction (heed, no fsync, the
  environment's unnamed database) that finds the key absent, puts the entry's bytes and
  commits, then the unlock; written through its map (`MDB_WRITEMAP`), as the index is on the
  file systems where it runs, with its whole data file (1 GiB) allocated and read into the page
  cache beforehand, so that it pays neither for blocks nor for page faults; its keys have the store's shape (the entry's function folder and
  32 hex digits of a hash), so each lands at a random place of the tree. Then xxh3-128
  over the argument's bytes for a large argument, `std::fs::write` of the output, `pread`s of it
  into a fresh anonymous map of its size that asks for huge pages (`MADV_HUGEPAGE`: a 4 KiB page
  fault per page is most of what `std::fs::read` costs on fresh memory), a part per processor
  read at once (the copy and the zeroing of new pages are per processor), a memmap2 map plus one read for a mapped reload, `read_dir` + `stat` (+ `unlink`) for
  listing and deleting, a `GET` on a plain `redis::Connection`, and an `object_store` `GET` of
  the same object.
- **Instructions per operation**: for the small hit (`hit_int`: Cachette on each layout and
  from its in-process memo, `cached` (redb) and the four floors) and the tiny miss
  (`miss_tiny`: Cachette on each layout, `cached` (redb) and the two floors), the
  harness runs itself as a probe (`--probe <op> <n>`, the code in `benches/compare/probe.rs`;
  `examples/probe.rs` builds it alone) under `valgrind --tool=callgrind`, once with no
  operation and once with 2,000 hits or 200 misses, after the same set-up and 20 warm-up
  operations; one operation is the difference of the two totals (callgrind's `Collected`: the
  user-space instructions of the whole process; the kernel's work in system calls is not
  counted) divided by the number of operations. Without valgrind on `PATH` the column says
  `not measured`. The system calls are counted the same way (two runs, the difference over the
  operations) under `strace -f -c`, every thread of the process included (a Redis or S3 call
  would count its network calls; these rows make none). A valgrind that does not know the
  `openat2` system call (3.19 does not), with which the local disk opens a folder or an item
  below the store's folder in one call, makes the files layout walk there one `openat` at a
  time instead, where it keeps no handle on the item's folder: the counts (not the times) of
  such an operation then include that walk. The rows above keep one (their folder's first
  write made it).
- **Misses and large outputs**: each sample first empties the contender's cache (untimed), so
  that every timed call is a real miss and the disk holds one large output at a time.
- **reduce_size**: each sample starts from a copy (untimed) of a store of 10,000 entries.
- **Concurrent hits**: two processes of each contender (two harness workers, two Python
  workers) start their hits at the same instant; the figure is the mean time per hit. For
  `cached` (redb), the run tries it: a first harness worker opens the redb store, a second
  one opens the same file; redb locks its file for one process, and the row shows the error
  that attempt gave (`not run: redb refuses a second process (…)`).
- **Scaling** (`cargo xtask bench --scaling`, not part of the default run): stores of 1k, 10k,
  100k and 1M tiny entries of one memoized `i64 → i64` function, populated by calls, for each
  store location (`file://<folder>?layout=files` and `file://<folder>?layout=index`; a location
  the local-disk backend refuses shows its error). For each: populating (time for all), the
  inodes and disk used, listing every entry (`reduce_size` with a limit that deletes nothing),
  the median of 2,000 hits on random existing keys, `reduce_size` deleting 10%, and the median
  of 200 misses. Each store is removed before the next one. `--scaling-max N` stops at N
  entries and writes to `target/bench-partial/`.
- Rows that could not run say why (`not run: …`) instead of showing a figure.
";
