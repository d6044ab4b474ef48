//! `cachette stats`: what the calls of each function did, as every process that shares the
//! store wrote it (a read: it changes nothing), and a picture of it with `--svg`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::Serialize;

use crate::human::{self, Align};
use crate::inspect::to_json;
use crate::store::{self, Func};

/// How `stats` sorts its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum SortBy {
    /// By function name.
    Name,
    /// Most time saved first.
    #[default]
    Saved,
    /// Most calls first.
    Calls,
    /// Largest first.
    Size,
}

/// One function's row.
#[derive(Debug, Serialize)]
struct Row {
    /// Its exact name, as its callers gave it.
    name: String,
    folder: String,
    calls: u64,
    hits: u64,
    misses: u64,
    /// Calls that ran without the store (arguments that cannot be hashed, store skipped).
    uncached: u64,
    hit_ratio: Option<f64>,
    compute_secs: f64,
    saved_secs: f64,
    /// Its entries in the store now, and their size.
    entries: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct Totals {
    calls: u64,
    hits: u64,
    misses: u64,
    compute_secs: f64,
    saved_secs: f64,
}

impl Totals {
    /// The totals of `rows`. Counts read from the store may be as large as a `u64` holds:
    /// their sums saturate.
    fn of(rows: &[Row]) -> Totals {
        let sum = |count: fn(&Row) -> u64| rows.iter().map(count).fold(0, u64::saturating_add);
        Totals {
            calls: sum(|r| r.calls),
            hits: sum(|r| r.hits),
            misses: sum(|r| r.misses),
            compute_secs: rows.iter().map(|r| r.compute_secs).sum(),
            saved_secs: rows.iter().map(|r| r.saved_secs).sum(),
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    location: &'a str,
    backend: &'a str,
    /// The first day with statistics (UTC).
    since: Option<String>,
    functions: &'a [Row],
    total: Totals,
    /// Items of statistics left out as unusable.
    unusable: usize,
    truncated: bool,
}

pub(crate) fn stats(
    location: &str,
    func: Option<&str>,
    sort: SortBy,
    svg: Option<&Path>,
    json: bool,
) -> Result<String> {
    let store = store::open(location)?;
    let stored = store
        .memory
        .stored_stats()
        .with_context(|| format!("cannot read the call statistics of {}", store.location))?;
    let funcs = store::functions(&store)?;
    let by_folder: BTreeMap<&str, &Func> = funcs.iter().map(|f| (f.folder.as_str(), f)).collect();
    let mut rows: Vec<Row> = stored
        .functions
        .iter()
        .map(|f| {
            let s = &f.stats;
            let here = by_folder.get(f.folder.as_str());
            Row {
                name: if f.name.is_empty() {
                    f.folder.clone()
                } else {
                    f.name.clone()
                },
                folder: f.folder.clone(),
                calls: s.calls,
                hits: s.hits,
                misses: s.misses,
                uncached: s.calls.saturating_sub(s.hits.saturating_add(s.misses)),
                hit_ratio: s.hit_ratio(),
                compute_secs: s.compute_time.as_secs_f64(),
                saved_secs: s.time_saved.as_secs_f64(),
                entries: here.map_or(0, |f| f.entries),
                bytes: here.map_or(0, |f| f.bytes),
            }
        })
        .collect();
    if let Some(query) = func {
        let wanted = store::resolve(&funcs, query, &store.location)?;
        rows.retain(|r| r.folder == wanted.folder);
    }
    match sort {
        SortBy::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        SortBy::Saved => rows.sort_by(|a, b| b.saved_secs.total_cmp(&a.saved_secs)),
        SortBy::Calls => rows.sort_by_key(|r| std::cmp::Reverse(r.calls)),
        SortBy::Size => rows.sort_by_key(|r| std::cmp::Reverse(r.bytes)),
    }
    let total = Totals::of(&rows);
    if let Some(path) = svg {
        draw(path, &rows, &store.location)
            .with_context(|| format!("cannot draw {}", path.display()))?;
    }
    if json {
        return to_json(&Report {
            location: &store.location,
            backend: &store.backend,
            since: stored.since.map(|d| d.to_string()),
            functions: &rows,
            total,
            unusable: stored.unusable,
            truncated: stored.truncated,
        });
    }
    let mut out = format!("call statistics of {} ({})", store.location, store.backend);
    if let Some(since) = stored.since {
        out.push_str(&format!(", since {since}"));
    }
    out.push('\n');
    if rows.is_empty() {
        out.push_str("no calls recorded yet (memories write theirs every call_stats_interval_secs, and when dropped)");
        return Ok(out);
    }
    let table_rows = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.calls.to_string(),
                r.hits.to_string(),
                r.misses.to_string(),
                r.hit_ratio
                    .map_or_else(|| "-".to_owned(), |h| format!("{:.0}%", h * 100.0)),
                human::duration(r.compute_secs),
                human::duration(r.saved_secs),
                human::size(r.bytes),
            ]
        })
        .collect();
    out.push_str(&human::table(
        &[
            ("FUNCTION", Align::Left),
            ("CALLS", Align::Right),
            ("HITS", Align::Right),
            ("MISSES", Align::Right),
            ("HIT RATIO", Align::Right),
            ("COMPUTING", Align::Right),
            ("SAVED", Align::Right),
            ("SIZE", Align::Right),
        ],
        table_rows,
    ));
    out.push_str(&format!(
        "\n{} calls, {} hits, {} misses; computing {}, saved {}",
        total.calls,
        total.hits,
        total.misses,
        human::duration(total.compute_secs),
        human::duration(total.saved_secs)
    ));
    if stored.unusable > 0 {
        out.push_str(&format!(
            "\n{} unusable item(s) of statistics left out",
            stored.unusable
        ));
    }
    if stored.truncated {
        out.push_str("\nmore items of statistics than one reading takes: the oldest were read");
    }
    if let Some(path) = svg {
        out.push_str(&format!("\ndrawn in {}", path.display()));
    }
    Ok(out)
}

/// Draws two bar charts side by side: the time each function saved, and the size of its
/// entries, longest bar first (at most 30 functions).
fn draw(path: &Path, rows: &[Row], location: &str) -> Result<()> {
    use plotters::coord::ranged1d::SegmentValue;
    use plotters::prelude::*;

    const MAX_BARS: usize = 30;
    let shown: Vec<&Row> = rows.iter().take(MAX_BARS).collect();
    let height = 140 + 28 * shown.len().max(1) as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("Cachette: time saved and size per function ({location})"),
        ("sans-serif", 20),
    )?;
    let (left, right) = root.split_horizontally(660);
    let labels: Vec<String> = shown
        .iter()
        .map(|r| {
            let name: String = r.name.chars().take(40).collect();
            if name.len() < r.name.len() {
                format!("{name}…")
            } else {
                name
            }
        })
        .collect();
    let n = shown.len().max(1) as i32;
    let panel = |area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
                 caption: &str,
                 values: &[f64],
                 unit: &dyn Fn(f64) -> String,
                 label_width: u32,
                 color: RGBColor|
     -> Result<()> {
        let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(label_width)
            // A segmented range of integers covers both ends: `0..n - 1` is n bands (one row,
            // `0..0`, would be none: it gets two, the top one empty).
            .build_cartesian_2d(0.0..max * 1.1, (0..(n - 1).max(1)).into_segmented())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&|y| match y {
                // Each row's name at the middle of its band, the first row on top.
                SegmentValue::CenterOf(i) if label_width > 0 => usize::try_from(n - 1 - *i)
                    .ok()
                    .and_then(|i| labels.get(i).cloned())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .x_labels(5)
            .x_label_formatter(&|x| unit(*x))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let y = n - 1 - i as i32;
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(y)),
                        (*v, SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    };
    let saved: Vec<f64> = shown.iter().map(|r| r.saved_secs).collect();
    let sizes: Vec<f64> = shown.iter().map(|r| r.bytes as f64).collect();
    panel(
        &left,
        "time saved",
        &saved,
        &|s| human::duration(s),
        300,
        RGBColor(0x2c, 0xa0, 0x2c),
    )?;
    panel(
        &right,
        "size in the store",
        &sizes,
        &|b| human::size(b as u64),
        0,
        RGBColor(0x1f, 0x77, 0xb4),
    )?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two functions whose stored counts are past half of a `u64` (counts read from a store
    /// saturate there): their total overflowed, a panic in a debug build.
    #[test]
    fn totals_of_huge_counts_saturate() {
        let row = |name: &str| Row {
            name: name.to_owned(),
            folder: name.to_owned(),
            calls: u64::MAX - 1,
            hits: u64::MAX / 2 + 1,
            misses: u64::MAX / 2 + 1,
            uncached: 0,
            hit_ratio: None,
            compute_secs: 1.0,
            saved_secs: 2.0,
            entries: 0,
            bytes: 0,
        };
        let total = Totals::of(&[row("a"), row("b")]);
        assert_eq!(
            (total.calls, total.hits, total.misses),
            (u64::MAX, u64::MAX, u64::MAX)
        );
        assert_eq!((total.compute_secs, total.saved_secs), (2.0, 4.0));
    }
}
