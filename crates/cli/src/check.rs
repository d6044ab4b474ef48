//! `cachette check`: write, read back and delete one small item, and say how the store did.

use std::time::Duration;

use anyhow::{Context, Result};
use cachette::{CheckStatus, StoreCheck};
use serde::Serialize;

use crate::fail::Code;
use crate::store;

#[derive(Serialize)]
struct CheckReport<'a> {
    location: &'a str,
    backend: &'a str,
    /// `ok`, `read_only`, `unreachable` or `faulty`.
    status: &'static str,
    write_ms: Option<f64>,
    read_ms: Option<f64>,
    delete_ms: Option<f64>,
    error: Option<&'a str>,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0)
}

/// The exit code of a verdict: 0 when the store works.
fn code_of(status: CheckStatus) -> Option<Code> {
    match status {
        CheckStatus::Ok => None,
        CheckStatus::ReadOnly => Some(Code::ReadOnly),
        _ => Some(Code::Error),
    }
}

pub(crate) fn check(location: &str, json: bool) -> Result<(String, Option<Code>)> {
    let store = store::open(location)?;
    let check: StoreCheck = store
        .memory
        .check()
        .with_context(|| format!("cannot check {}", store.location))?;
    let report = CheckReport {
        location: &store.location,
        backend: &store.backend,
        status: check.status.as_str(),
        write_ms: ms(check.write),
        read_ms: ms(check.read),
        delete_ms: ms(check.delete),
        error: check.error.as_deref(),
    };
    let text = if json {
        crate::inspect::to_json(&report)?
    } else {
        human(&report, check.status)
    };
    Ok((text, code_of(check.status)))
}

fn human(report: &CheckReport<'_>, status: CheckStatus) -> String {
    let step = |name: &str, took: Option<f64>| match took {
        Some(ms) => format!("  {name:<7} {ms:.1} ms"),
        None => format!("  {name:<7} -"),
    };
    let verdict = match status {
        CheckStatus::Ok => "ok: written, read back and deleted",
        CheckStatus::ReadOnly => {
            "read-only: reads work, writes fail (hits are served, results are not stored)"
        }
        CheckStatus::Unreachable => "unreachable: neither reads nor writes work",
        _ => "faulty: the store answered wrongly",
    };
    let mut lines = vec![
        format!("{} ({})", report.location, report.backend),
        format!("  status  {verdict}"),
        step("write", report.write_ms),
        step("read", report.read_ms),
        step("delete", report.delete_ms),
    ];
    if let Some(error) = report.error {
        lines.push(format!("  error   {error}"));
    }
    lines.join("\n")
}
