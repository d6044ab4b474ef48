//! Output for people: sizes, dates, ages and aligned tables.

use chrono::{DateTime, Local, Utc};
use comfy_table::{CellAlignment, Table};

/// Prints a line on stdout; a closed pipe (`cachette inspect … | head`) is not an error.
pub(crate) fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// A size in binary units with one decimal: `512 B`, `1.5 KiB`, `34.8 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Step up while the value would print as 1024.0 or more.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How long ago `then` was: `just now`, `45 s ago`, `12 min ago`, `3 h ago`, `5 d ago`.
pub(crate) fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds();
    if seconds < -60 {
        return "in the future".to_owned();
    }
    let seconds = seconds.max(0);
    match seconds {
        0..5 => "just now".to_owned(),
        5..60 => format!("{seconds} s ago"),
        60..3_600 => format!("{} min ago", seconds / 60),
        3_600..172_800 => format!("{} h ago", seconds / 3_600),
        _ => format!("{} d ago", seconds / 86_400),
    }
}

/// A date in local time, to the minute.
pub(crate) fn date(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

/// A date in local time, to the second, with the time zone.
pub(crate) fn date_precise(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// A date and how long ago it was: `2025-06-01 14:03 (3 h ago)`; `-` for none.
pub(crate) fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => format!("{} ({})", date(t), age(t, now)),
        None => "-".to_owned(),
    }
}

/// A duration in seconds, readable: `12 ms`, `3.40 s`, `2 min 5 s`, `1 h 2 min`.
pub(crate) fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return format!("{seconds} s");
    }
    if seconds < 1.0 {
        return format!("{:.0} ms", seconds * 1000.0);
    }
    if seconds < 60.0 {
        return format!("{seconds:.2} s");
    }
    let whole = seconds.round() as u64;
    if whole < 3_600 {
        return format!("{} min {} s", whole / 60, whole % 60);
    }
    format!("{} h {} min", whole / 3_600, whole % 3_600 / 60)
}

/// `n thing` or `n things`.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Which way a column's cells are aligned.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A table without borders whose columns stay aligned whatever the width of their cells
/// (display width, so that names with wide characters line up too). Columns are separated by
/// two spaces; trailing spaces are trimmed. A header of empty names is left out.
pub(crate) fn table(header: &[(&str, Align)], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    if header.iter().any(|(name, _)| !name.is_empty()) {
        table.set_header(header.iter().map(|(name, _)| *name).collect::<Vec<_>>());
    }
    table.add_rows(rows);
    let last = header.len().saturating_sub(1);
    for (i, (_, align)) in header.iter().enumerate() {
        if let Some(column) = table.column_mut(i) {
            column.set_padding((0, if i == last { 0 } else { 2 }));
            column.set_cell_alignment(match align {
                Align::Left => CellAlignment::Left,
                Align::Right => CellAlignment::Right,
            });
        }
    }
    table.trim_fmt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(36_490_000), "34.8 MiB");
        assert_eq!(size((1 << 20) - 1), "1.0 MiB");
        assert_eq!(size(10 << 30), "10.0 GiB");
        assert_eq!(size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn ages_are_short() {
        let now = Utc::now();
        assert_eq!(age(now, now), "just now");
        assert_eq!(age(now - TimeDelta::seconds(45), now), "45 s ago");
        assert_eq!(age(now - TimeDelta::minutes(12), now), "12 min ago");
        assert_eq!(age(now - TimeDelta::hours(3), now), "3 h ago");
        assert_eq!(age(now - TimeDelta::days(5), now), "5 d ago");
        assert_eq!(age(now + TimeDelta::hours(1), now), "in the future");
    }

    #[test]
    fn durations_are_readable() {
        assert_eq!(duration(0.012), "12 ms");
        assert_eq!(duration(3.4), "3.40 s");
        assert_eq!(duration(125.0), "2 min 5 s");
        assert_eq!(duration(3_720.0), "1 h 2 min");
    }

    #[test]
    fn tables_stay_aligned() {
        let long = "a".repeat(60);
        let text = table(
            &[("NAME", Align::Left), ("SIZE", Align::Right)],
            vec![vec![long.clone(), size(1 << 20)], vec!["b".into(), size(5)]],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let ends: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(ends.iter().all(|&e| e == ends[0]), "{text}");
        assert!(lines[1].starts_with(&long), "{text}");
        assert!(lines[2].ends_with("  5 B"), "{text}");
    }
}
