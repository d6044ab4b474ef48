//! The access log format and the names of access log objects.
//!
//! An access log is a UTF-8 text object: a header line, then one line per key read, giving how
//! many milliseconds before the log was written the key was last read in that process:
//!
//! ```text
//! cachette access log 1
//! 1520 cachette/stats.mean-0f3c5d2a9b1e4f70/6b0f…(32 hex digits)
//! 0 cachette/stats.mean-0f3c5d2a9b1e4f70/0d41…
//! ```
//!
//! A read's time is the log object's last-modified time (stamped by the store's clock) minus
//! its age, so no machine's wall clock is trusted but the store's. In keys, `%`, line feeds
//! and carriage returns are written `%25`, `%0A` and `%0D`.
//!
//! Logs are named `<log dir>/<hour>/<time>-<host>-<pid>-<random>`: `<hour>` is
//! `YYYYMMDDTHH` and `<time>` `YYYYMMDDTHHMMSS.mmmZ` (UTC, by the writer's clock), so that
//! names sort by time, a listing finds the newest logs in the newest hour folders, and a sweep
//! deletes whole old hours.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use cachette_core::plugin::chrono::{NaiveDateTime, TimeDelta};
use cachette_core::plugin::{Bytes, DateTime, Utc, host_name};

/// The first line of every access log.
pub(crate) const HEADER: &str = "cachette access log 1";

/// A log holds at most this many keys; a larger batch is written as several logs.
pub(crate) const MAX_KEYS_PER_LOG: usize = 100_000;
/// A log written holds at most this many bytes (about, for the last line).
pub(crate) const MAX_WRITTEN_LOG_BYTES: usize = 8 << 20;
/// A log larger than this is not one this library wrote, and is not read.
pub(crate) const MAX_READ_LOG_BYTES: u64 = 16 << 20;
/// The longest line read (a key of 4 KiB and its age).
const MAX_LINE: usize = 4096 + 32;
/// Ages above this (400 days) are not ages this library writes; such lines are skipped.
const MAX_AGE_MS: u64 = 400 * 24 * 3600 * 1000;

/// The length of `<time>` in a log's name.
const TIME_LEN: usize = "20250101T000000.000Z".len();
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";
const HOUR_FORMAT: &str = "%Y%m%dT%H";

/// The bodies of the logs that record `reads` (key, milliseconds since its read): one unless
/// there are more than [`MAX_KEYS_PER_LOG`] keys or [`MAX_WRITTEN_LOG_BYTES`] bytes.
pub(crate) fn encode(reads: &[(String, u64)]) -> Vec<Bytes> {
    let mut logs = Vec::new();
    let mut body = String::new();
    let mut keys = 0;
    for (key, age) in reads {
        if body.is_empty() {
            body.push_str(HEADER);
            body.push('\n');
        }
        body.push_str(&age.to_string());
        body.push(' ');
        escape_into(key, &mut body);
        body.push('\n');
        keys += 1;
        if keys >= MAX_KEYS_PER_LOG || body.len() >= MAX_WRITTEN_LOG_BYTES {
            logs.push(Bytes::from(std::mem::take(&mut body)));
            keys = 0;
        }
    }
    if !body.is_empty() {
        logs.push(Bytes::from(body));
    }
    logs
}

fn escape_into(key: &str, out: &mut String) {
    for c in key.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
}

fn unescape(key: &str) -> Option<String> {
    if !key.contains('%') {
        return Some(key.to_owned());
    }
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let c = match rest.get(at + 1..at + 3)? {
            "25" => '%',
            "0A" => '\n',
            "0D" => '\r',
            _ => return None,
        };
        out.push(c);
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// What [`parse`] found in a log.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// Lines read.
    pub(crate) reads: usize,
    /// Lines skipped: not `<age> <key>`, an age out of bounds, a line too long.
    pub(crate) skipped: usize,
}

/// Reads a log, calling `read(key, age)` for each line. A body without the header is not a
/// log: nothing is read, and `None` is returned. Every length and number is bounded first: a
/// log is input from the store, which anyone with write access may have changed.
pub(crate) fn parse(body: &[u8], mut read: impl FnMut(String, Duration)) -> Option<Parsed> {
    let body = body.strip_prefix(HEADER.as_bytes())?;
    let body = body.strip_prefix(b"\n")?;
    let mut parsed = Parsed::default();
    for line in body.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let entry = (line.len() <= MAX_LINE)
            .then(|| std::str::from_utf8(line).ok())
            .flatten()
            .and_then(|line| line.split_once(' '))
            .and_then(|(age, key)| {
                let age: u64 = age.parse().ok().filter(|a| *a <= MAX_AGE_MS)?;
                Some((unescape(key).filter(|k| !k.is_empty())?, age))
            });
        match entry {
            Some((key, age)) => {
                parsed.reads += 1;
                read(key, Duration::from_millis(age));
            }
            None => parsed.skipped += 1,
        }
    }
    Some(parsed)
}

/// The folder (the hour of `at`) and name of a new log written at `at`, relative to the log
/// directory: `20250101T12/20250101T120512.345Z-build-01-4242-0f3c5d2a9b1e4f70`.
pub(crate) fn new_name(at: DateTime<Utc>) -> String {
    let host: String = host_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!(
        "{}/{}-{host}-{}-{random:016x}",
        at.format(HOUR_FORMAT),
        at.format(TIME_FORMAT),
        std::process::id()
    )
}

/// The start of the hour a log folder name stands for, if it is one (`YYYYMMDDTHH`, as this
/// library writes it: no other name stands for the same hour, so that there is at most one
/// folder an hour, whatever the store holds).
pub(crate) fn hour_of_folder(name: &str) -> Option<DateTime<Utc>> {
    if name.len() != "20250101T00".len() {
        return None;
    }
    let hour = NaiveDateTime::parse_from_str(&format!("{name}0000"), "%Y%m%dT%H%M%S")
        .ok()?
        .and_utc();
    // The parser also takes spaces for zeros (`202501 1T05`, `20250101T5 `).
    (hour.format(HOUR_FORMAT).to_string() == name).then_some(hour)
}

/// The time in the name of a log (relative to the log directory: `<hour>/<time>-…`), if the
/// name is one this library writes: its hour folder is the hour of its time.
pub(crate) fn time_of_log(name: &str) -> Option<DateTime<Utc>> {
    let (folder, file) = name.split_once('/')?;
    let hour = hour_of_folder(folder)?;
    if file.len() <= TIME_LEN || file.as_bytes()[TIME_LEN] != b'-' || file.contains('/') {
        return None;
    }
    let time = NaiveDateTime::parse_from_str(file.get(..TIME_LEN)?, TIME_FORMAT)
        .ok()?
        .and_utc();
    (time >= hour && time - hour < TimeDelta::hours(1)).then_some(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_round_trip() {
        let reads = vec![
            ("cachette/f-0123/00ff".to_owned(), 0),
            ("odd/key with spaces %41\nand\rbreaks".to_owned(), 1234),
        ];
        let logs = encode(&reads);
        assert_eq!(logs.len(), 1);
        let mut back = Vec::new();
        let parsed = parse(&logs[0], |k, age| back.push((k, age.as_millis() as u64))).unwrap();
        assert_eq!(back, reads);
        assert_eq!(
            parsed,
            Parsed {
                reads: 2,
                skipped: 0
            }
        );
    }

    #[test]
    fn large_batches_are_split() {
        let reads: Vec<(String, u64)> = (0..MAX_KEYS_PER_LOG + 10)
            .map(|i| (format!("k/{i}"), 1))
            .collect();
        let logs = encode(&reads);
        assert_eq!(logs.len(), 2);
        let mut n = 0;
        for log in &logs {
            parse(log, |_, _| n += 1).unwrap();
        }
        assert_eq!(n, reads.len());
        assert!(encode(&[]).is_empty());
    }

    #[test]
    fn bad_input_is_bounded_and_skipped() {
        assert!(parse(b"not a log\n1 a/b\n", |_, _| panic!()).is_none());
        assert!(parse(b"", |_, _| panic!()).is_none());
        let long = "x".repeat(MAX_LINE + 1);
        let body = format!(
            "{HEADER}\n1 a/b\nnope\n-1 a/c\n{} a/d\n99999999999999999999999 a/e\n5 {long}\n7 bad%zz\n8 \n\n2 a/f",
            MAX_AGE_MS + 1
        );
        let mut seen = Vec::new();
        let parsed = parse(body.as_bytes(), |k, _| seen.push(k)).unwrap();
        assert_eq!(seen, ["a/b", "a/f"]);
        assert_eq!(parsed.skipped, 7);
    }

    #[test]
    fn names_sort_by_time_and_are_recognised() {
        let at = "2025-03-04T05:06:07.089Z".parse::<DateTime<Utc>>().unwrap();
        let name = new_name(at);
        assert!(
            name.starts_with("20250304T05/20250304T050607.089Z-"),
            "{name}"
        );
        assert_eq!(time_of_log(&name), Some(at));
        let later = new_name(at + TimeDelta::milliseconds(1));
        assert!(later > name);
        assert_eq!(
            hour_of_folder("20250304T05"),
            Some("2025-03-04T05:00:00Z".parse().unwrap())
        );
        for other in [
            "202503 4T05",
            "2025 304T05",
            "20250304T5 ",
            "20250304T24",
            "2025030405",
        ] {
            assert_eq!(hour_of_folder(other), None, "{other}");
        }
        for foreign in [
            "20250304T05/notatime-x",
            "20250304T06/20250304T050607.089Z-x",
            "20250304T05/20250304T050607.089Z",
            "x/20250304T050607.089Z-x",
            "20250304T05/20250304T050607.089Z-x/y",
        ] {
            assert_eq!(time_of_log(foreign), None, "{foreign}");
        }
    }
}
