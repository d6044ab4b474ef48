//! The SVG plot of hit latency against argument size, for Cachette and joblib.

use std::path::Path;

use plotters::prelude::*;

use crate::stats::Kind;
use crate::{Res, Workload};

/// A line of the plot: its name, its color and its points (bytes, µs).
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

/// Draws the median hit latency of each hit workload (those with an argument size) for
/// Cachette and joblib, on log–log axes. Only measured points are drawn.
pub(crate) fn hit_latency(path: &Path, results: &[Workload]) -> Res<()> {
    let series: Vec<Series> = [
        ("Cachette", Kind::Cachette, RGBColor(0xd6, 0x27, 0x28)),
        ("joblib", Kind::Joblib, RGBColor(0x1f, 0x77, 0xb4)),
    ]
    .into_iter()
    .map(|(name, kind, color)| {
        let points = results
            .iter()
            .filter_map(|w| {
                let bytes = w.arg_bytes?;
                let row = w.rows.iter().find(|r| r.kind == kind)?;
                Some((bytes, row.median()? / 1e3))
            })
            .collect();
        (name, color, points)
    })
    .collect();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.2.iter().copied()).collect();
    if all.is_empty() {
        return Err("no hit latency was measured".into());
    }
    let (x_min, x_max) = all.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (y_min, y_max) = all.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });

    let root = SVGBackend::new(path, (860, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Hit latency against argument size (median)",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x_min / 2.0..x_max * 2.0).log_scale(),
            (y_min / 2.0..y_max * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("argument size (bytes)")
        .y_desc("hit latency")
        .x_label_formatter(&|x| bytes_label(*x))
        .y_label_formatter(&|y| time_label(*y))
        .draw()?;
    for (name, color, points) in &series {
        if points.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `1e6` as `1 MB`, and so on.
fn bytes_label(bytes: f64) -> String {
    if bytes >= 1e9 {
        format!("{} GB", bytes / 1e9)
    } else if bytes >= 1e6 {
        format!("{} MB", bytes / 1e6)
    } else if bytes >= 1e3 {
        format!("{} kB", bytes / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// `1500` µs as `1.5 ms`, and so on.
fn time_label(micros: f64) -> String {
    if micros >= 1e6 {
        format!("{} s", micros / 1e6)
    } else if micros >= 1e3 {
        format!("{} ms", micros / 1e3)
    } else {
        format!("{micros} µs")
    }
}
