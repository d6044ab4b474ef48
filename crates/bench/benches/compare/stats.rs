//! Samples, their summaries, and the interleaved rounds that take them.

use std::time::Duration;

use crate::Res;

/// Who a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The library benchmarked.
    Cachette,
    /// joblib's `Memory`, in the Python worker.
    Joblib,
    /// The `cached` crate.
    Cached,
    /// The raw work a contender cannot avoid.
    Floor,
}

/// Takes one sample: runs `iters` operations and returns their total time (untimed
/// preparation, such as emptying a cache before a miss, is left out by the sampler).
pub(crate) type Sampler<'a> = Box<dyn FnMut(u64) -> Res<Duration> + 'a>;

/// A contender of a workload, ready to be sampled or unavailable in this run.
pub(crate) struct Contender<'a> {
    /// The name shown in the table.
    pub(crate) name: String,
    /// Who it is.
    pub(crate) kind: Kind,
    /// How to sample it, or why it cannot be.
    pub(crate) sampler: Result<Sampler<'a>, String>,
}

impl<'a> Contender<'a> {
    /// A contender that can be sampled.
    pub(crate) fn new(
        name: impl Into<String>,
        kind: Kind,
        sampler: impl FnMut(u64) -> Res<Duration> + 'a,
    ) -> Self {
        Contender {
            name: name.into(),
            kind,
            sampler: Ok(Box::new(sampler)),
        }
    }

    /// A contender from a set-up that may have failed.
    pub(crate) fn from_setup(name: impl Into<String>, kind: Kind, setup: Res<Sampler<'a>>) -> Self {
        Contender {
            name: name.into(),
            kind,
            sampler: setup.map_err(|e| format!("set-up failed: {e}")),
        }
    }

    /// A contender that is not part of this run, and why.
    pub(crate) fn unavailable(name: impl Into<String>, kind: Kind, why: impl Into<String>) -> Self {
        Contender {
            name: name.into(),
            kind,
            sampler: Err(why.into()),
        }
    }
}

/// The distribution of a contender's samples, in nanoseconds per operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    /// The median.
    pub(crate) median: f64,
    /// The 10th percentile.
    pub(crate) p10: f64,
    /// The 90th percentile.
    pub(crate) p90: f64,
    /// How many samples.
    pub(crate) samples: usize,
    /// Operations per sample.
    pub(crate) iters: u64,
    /// The time per operation of the calibration's last sample (the one that set `iters`),
    /// when calibrated.
    pub(crate) calibrated: Option<f64>,
}

impl Summary {
    /// Summarizes per-operation times (at least one).
    pub(crate) fn of(mut per_op: Vec<f64>, iters: u64, calibrated: Option<f64>) -> Summary {
        per_op.sort_by(f64::total_cmp);
        Summary {
            median: quantile(&per_op, 0.5),
            p10: quantile(&per_op, 0.1),
            p90: quantile(&per_op, 0.9),
            samples: per_op.len(),
            iters,
            calibrated,
        }
    }

    /// The median over the calibration's time per operation, when that is off by more than
    /// [`CALIBRATION_TOLERANCE`] either way: the samples did not last what the calibration
    /// planned, and the rounds measured something the warm-up did not see.
    pub(crate) fn calibration_drift(&self) -> Option<f64> {
        let ratio = self.median / self.calibrated?;
        (!(1.0 / CALIBRATION_TOLERANCE..=CALIBRATION_TOLERANCE).contains(&ratio)).then_some(ratio)
    }
}

/// How far (as a factor) the median may be from the calibration's time per operation before
/// the table points it out.
pub(crate) const CALIBRATION_TOLERANCE: f64 = 2.0;

/// The `q` quantile of sorted values, interpolated linearly.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// What a contender's rounds gave.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Its samples.
    Measured(Summary),
    /// Not measured in this run, and why.
    NotRun(String),
}

/// One row of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The contender's name.
    pub(crate) name: String,
    /// Who it is.
    pub(crate) kind: Kind,
    /// Its result.
    pub(crate) outcome: Outcome,
}

impl Row {
    /// The median time per operation, in nanoseconds, when measured.
    pub(crate) fn median(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Measured(s) => Some(s.median),
            Outcome::NotRun(_) => None,
        }
    }
}

/// How many samples to take, and how long each should be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Rounds: each contender takes one sample per round.
    pub(crate) rounds: usize,
    /// With `Some(t)`, each contender's operations per sample are calibrated so that a
    /// sample lasts about `t`; with `None`, a sample is one operation.
    pub(crate) sample_time: Option<Duration>,
    /// Whether an untimed sample comes first (always, when calibrating).
    pub(crate) warm_up: bool,
}

/// The most operations in one sample.
const MAX_ITERS: u64 = 1_000_000;

/// How a contender was calibrated: operations per sample, and the time per operation of the
/// sample that confirmed them.
#[derive(Debug, Clone, Copy)]
struct Calibration {
    iters: u64,
    per_op_ns: f64,
}

/// Finds how many operations make a sample of about `target` (untimed warm-up included):
/// grows the count until a sample lasts a quarter of `target`, then checks the estimate with
/// a sample of that many operations, estimating again (up to a few times) while that sample is
/// not within a factor 1.5 of `target`: a slow first operation (a connection being set up, a
/// cold cache) does not set the count for the whole run. The count returned is the one the
/// rounds use, and the time per operation of its confirming sample is kept with the results.
fn calibrate(sampler: &mut Sampler<'_>, target: Duration) -> Res<Calibration> {
    let mut iters = 1u64;
    let estimate = |iters: u64, took: Duration| -> u64 {
        let scale = target.as_secs_f64() / took.max(Duration::from_nanos(1)).as_secs_f64();
        ((iters as f64 * scale).round() as u64).clamp(1, MAX_ITERS)
    };
    loop {
        let took = sampler(iters)?.max(Duration::from_nanos(1));
        if took * 4 >= target || iters >= MAX_ITERS {
            iters = estimate(iters, took);
            break;
        }
        let grow = (target.as_secs_f64() / 4.0 / took.as_secs_f64()).ceil() as u64;
        iters = (iters * grow.clamp(2, 1000)).min(MAX_ITERS);
    }
    let mut checks = 0;
    loop {
        let took = sampler(iters)?.max(Duration::from_nanos(1));
        let per_op_ns = took.as_nanos() as f64 / iters as f64;
        let ratio = took.as_secs_f64() / target.as_secs_f64();
        checks += 1;
        let next = estimate(iters, took);
        if (1.0 / 1.5..=1.5).contains(&ratio) || checks >= 4 || next == iters {
            return Ok(Calibration { iters, per_op_ns });
        }
        iters = next;
    }
}

/// Runs the contenders interleaved: after a warm-up (which also calibrates) when the plan
/// asks for one, each round takes one sample of every contender, in an order rotated from
/// round to round. A contender whose sample fails is dropped from the later rounds and
/// reported as not run.
pub(crate) fn run_rounds(workload: &str, contenders: Vec<Contender<'_>>, plan: Plan) -> Vec<Row> {
    struct Live<'a> {
        sampler: Sampler<'a>,
        iters: u64,
        calibrated: Option<f64>,
        per_op: Vec<f64>,
    }
    let mut rows = Vec::new();
    let mut live: Vec<Option<Live<'_>>> = Vec::new();
    let mut failures: Vec<Option<String>> = Vec::new();
    for c in contenders {
        rows.push(Row {
            name: c.name.clone(),
            kind: c.kind,
            outcome: Outcome::NotRun(String::new()),
        });
        match c.sampler {
            Ok(mut sampler) => {
                let warm = match plan.sample_time {
                    Some(target) => {
                        calibrate(&mut sampler, target).map(|c| (c.iters, Some(c.per_op_ns)))
                    }
                    None if plan.warm_up => sampler(1).map(|_| (1, None)),
                    None => Ok((1, None)),
                };
                match warm {
                    Ok((iters, calibrated)) => {
                        live.push(Some(Live {
                            sampler,
                            iters,
                            calibrated,
                            per_op: Vec::new(),
                        }));
                        failures.push(None);
                    }
                    Err(e) => {
                        eprintln!("  {workload}: {}: warm-up failed: {e}", c.name);
                        live.push(None);
                        failures.push(Some(format!("failed: {e}")));
                    }
                }
            }
            Err(why) => {
                live.push(None);
                failures.push(Some(why));
            }
        }
    }
    let n = live.len();
    for round in 0..plan.rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let Some(l) = &mut live[i] else { continue };
            match (l.sampler)(l.iters) {
                Ok(took) => l.per_op.push(took.as_nanos() as f64 / l.iters as f64),
                Err(e) => {
                    eprintln!("  {workload}: {}: sample failed: {e}", rows[i].name);
                    failures[i] = Some(format!("failed: {e}"));
                    live[i] = None;
                }
            }
        }
    }
    for (i, row) in rows.iter_mut().enumerate() {
        row.outcome = match (live[i].take(), failures[i].take()) {
            (Some(l), _) if !l.per_op.is_empty() => {
                Outcome::Measured(Summary::of(l.per_op, l.iters, l.calibrated))
            }
            (_, Some(why)) => Outcome::NotRun(why),
            _ => Outcome::NotRun("no sample taken".into()),
        };
    }
    rows
}
