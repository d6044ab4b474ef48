//! Sizes and limits for [`Memory::reduce_size`](crate::Memory::reduce_size).

use std::fmt;
use std::str::FromStr;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::backend::ItemInfo;
use crate::key::{Key, grammar};

use crate::error::Error;

/// A number of bytes, parsed from joblib's size strings: `"2K"`, `"1M"`, `"10G"`, `"1T"`
/// (powers of 1024; a trailing `B` or `iB` is accepted, case does not matter), or a plain number
/// of bytes.
///
/// ```
/// use cachette_core::ByteSize;
/// assert_eq!("2K".parse::<ByteSize>().unwrap(), ByteSize(2048));
/// assert_eq!("1.5MiB".parse::<ByteSize>().unwrap(), ByteSize(1_572_864));
/// assert!("-1K".parse::<ByteSize>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            Error::InvalidArgument(format!(
                "invalid size {s:?}: expected a number of bytes or a number with a unit K, M, G or T (e.g. \"10M\")"
            ))
        };
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let t = lower
            .strip_suffix("ib")
            .or_else(|| lower.strip_suffix('b'))
            .unwrap_or(&lower);
        let (number, multiplier) = match t.chars().last() {
            Some('k') => (&t[..t.len() - 1], 1u64 << 10),
            Some('m') => (&t[..t.len() - 1], 1 << 20),
            Some('g') => (&t[..t.len() - 1], 1 << 30),
            Some('t') => (&t[..t.len() - 1], 1 << 40),
            _ => (t, 1),
        };
        let number = number.trim();
        if let Ok(n) = number.parse::<u64>() {
            return n.checked_mul(multiplier).map(ByteSize).ok_or_else(bad);
        }
        let x: f64 = number.parse().map_err(|_| bad())?;
        if !x.is_finite() || x < 0.0 || number.starts_with('-') {
            return Err(bad());
        }
        let bytes = x * multiplier as f64;
        if bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl From<u64> for ByteSize {
    fn from(n: u64) -> Self {
        ByteSize(n)
    }
}

impl ByteSize {
    /// The shortest exact size string: `"10G"` for 10 GiB, a number of bytes when no unit
    /// divides it.
    fn human(self) -> Option<String> {
        if self.0 == 0 {
            return None;
        }
        [('T', 40), ('G', 30), ('M', 20), ('K', 10)]
            .into_iter()
            .find(|(_, shift)| self.0.is_multiple_of(1u64 << shift))
            .map(|(unit, shift)| format!("{}{unit}", self.0 >> shift))
    }
}

/// Written as the shortest exact size string (`"10G"`), or a number of bytes.
impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.human() {
            Some(text) => s.serialize_str(&text),
            None => s.serialize_u64(self.0),
        }
    }
}

/// Read from a size string (`"10G"`, `"1.5MiB"`) or a number of bytes.
impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Size;
        impl serde::de::Visitor<'_> for Size {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"10G\" or \"500M\" (K = 1024), or a number of bytes")
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("expected a size, zero or more, got {n}")))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(|e: Error| E::custom(e.to_string()))
            }
        }
        d.deserialize_any(Size)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} B", self.0)
    }
}

/// Limits for [`Memory::reduce_size`](crate::Memory::reduce_size). Entries are deleted when
/// older than `age_limit`, then least recently accessed first until at most `items_limit`
/// entries and `bytes_limit` bytes remain.
///
/// ```
/// use cachette_core::SizeLimits;
/// let limits = SizeLimits::default()
///     .bytes_limit("1M").unwrap()
///     .items_limit(100)
///     .age_limit(chrono::TimeDelta::days(7));
/// # let _ = limits;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeLimits {
    /// The most bytes to keep.
    pub bytes_limit: Option<ByteSize>,
    /// The most entries to keep.
    pub items_limit: Option<usize>,
    /// The oldest last access to keep. Zero deletes everything; negative is an error.
    pub age_limit: Option<TimeDelta>,
}

impl SizeLimits {
    /// Sets the byte limit from a size string or number.
    pub fn bytes_limit(mut self, limit: impl TryIntoByteSize) -> Result<Self, Error> {
        self.bytes_limit = Some(limit.try_into_byte_size()?);
        Ok(self)
    }

    /// Sets the item limit.
    pub fn items_limit(mut self, limit: usize) -> Self {
        self.items_limit = Some(limit);
        self
    }

    /// Sets the age limit.
    pub fn age_limit(mut self, limit: TimeDelta) -> Self {
        self.age_limit = Some(limit);
        self
    }
}

/// Things that convert into a [`ByteSize`]: size strings and byte counts.
pub trait TryIntoByteSize {
    /// The conversion.
    fn try_into_byte_size(self) -> Result<ByteSize, Error>;
}

impl TryIntoByteSize for &str {
    fn try_into_byte_size(self) -> Result<ByteSize, Error> {
        self.parse()
    }
}

impl TryIntoByteSize for u64 {
    fn try_into_byte_size(self) -> Result<ByteSize, Error> {
        Ok(ByteSize(self))
    }
}

impl TryIntoByteSize for ByteSize {
    fn try_into_byte_size(self) -> Result<ByteSize, Error> {
        Ok(self)
    }
}

/// What [`Memory::reduce_size`](crate::Memory::reduce_size) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReduceReport {
    /// Entries deleted.
    pub deleted_items: usize,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// Entries kept.
    pub kept_items: usize,
    /// Bytes kept.
    pub kept_bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// Reduction planning.

pub(crate) fn check_limits(limits: &SizeLimits) -> Result<(), Error> {
    if limits.age_limit.is_some_and(|age| age < TimeDelta::zero()) {
        return Err(Error::InvalidArgument(format!(
            "age_limit must be positive or zero, got {:?}",
            limits.age_limit
        )));
    }
    Ok(())
}

/// How long a claim stays unrenewed before `reduce_size` deletes it: an hour, or three leases
/// if longer. A live claim is renewed every third of its lease.
fn claim_age_limit(lease: Duration) -> TimeDelta {
    let limit = lease.saturating_mul(3).max(Duration::from_secs(3600));
    TimeDelta::from_std(limit).unwrap_or(TimeDelta::MAX)
}

/// What `reduce_size` deletes: entries as `limits` say, and stale claims (not reported).
pub(crate) fn plan_reduction(
    items: Vec<ItemInfo>,
    limits: &SizeLimits,
    lease: Duration,
) -> (Vec<Key>, ReduceReport) {
    let stale_before = Utc::now()
        .checked_sub_signed(claim_age_limit(lease))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let (claims, items): (Vec<ItemInfo>, Vec<ItemInfo>) =
        items.into_iter().partition(|i| grammar::is_claim(&i.key));
    let stale_claims = claims
        .into_iter()
        .filter(|c| c.last_access < stale_before)
        .map(|c| c.key);
    let (mut doomed, report) = plan_entries(items, limits);
    doomed.extend(stale_claims);
    (doomed, report)
}

fn plan_entries(items: Vec<ItemInfo>, limits: &SizeLimits) -> (Vec<Key>, ReduceReport) {
    let mut entries: Vec<ItemInfo> = items
        .into_iter()
        .filter(|i| grammar::is_entry(&i.key))
        .collect();
    // An age beyond the calendar's range (a `TimeDelta` may be 292 million years) keeps all.
    let cutoff = limits.age_limit.map(|age| {
        Utc::now()
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    });
    let over = |items: usize, bytes: u128| {
        limits.items_limit.is_some_and(|n| items > n)
            || limits.bytes_limit.is_some_and(|b| bytes > u128::from(b.0))
    };
    // Listed sizes are the store's word (a sparse file announces 2^63 bytes for free): they are
    // summed in 128 bits, where no count of them can overflow.
    let total_bytes: u128 = entries.iter().map(|i| u128::from(i.size)).sum();
    // Within the count and size limits, deleting only makes the store smaller, so what goes is
    // what is too old, in any order: no sort (the usual housekeeping of a store that fits).
    // Otherwise the least recently accessed go first. Keys are unique, so the order is total:
    // an unstable sort gives the same one, quicker.
    if over(entries.len(), total_bytes) {
        entries.sort_unstable_by(|a, b| {
            a.last_access
                .cmp(&b.last_access)
                .then_with(|| a.key.cmp(&b.key))
        });
    }
    let mut kept_items = entries.len();
    let mut kept_bytes = total_bytes;
    let mut doomed = Vec::new();
    let mut report = ReduceReport::default();
    for item in entries {
        let too_old = cutoff.is_some_and(|c| item.last_access <= c);
        if !(too_old || over(kept_items, kept_bytes)) {
            continue;
        }
        kept_items -= 1;
        kept_bytes -= u128::from(item.size);
        report.deleted_items += 1;
        report.deleted_bytes = report.deleted_bytes.saturating_add(item.size);
        doomed.push(item.key);
    }
    report.kept_items = kept_items;
    report.kept_bytes = u64::try_from(kept_bytes).unwrap_or(u64::MAX);
    (doomed, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joblib_size_strings() {
        for (s, n) in [
            ("0", 0),
            ("100", 100),
            ("2K", 2048),
            ("2k", 2048),
            ("1M", 1 << 20),
            ("10G", 10 << 30),
            ("1T", 1 << 40),
            ("3KB", 3072),
            ("0.5K", 512),
        ] {
            assert_eq!(s.parse::<ByteSize>().unwrap(), ByteSize(n), "{s}");
        }
        for s in [
            "",
            "K",
            "abc",
            "-1",
            "-1K",
            "1X",
            "nanK",
            "99999999999999999999T",
        ] {
            assert!(s.parse::<ByteSize>().is_err(), "{s}");
        }
    }

    #[test]
    fn sizes_round_trip_through_config_files() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct File {
            size: ByteSize,
        }
        for (text, n, back) in [
            ("size = \"10G\"", 10 << 30, "size = \"10G\"\n"),
            ("size = \"1.5M\"", 1_572_864, "size = \"1536K\"\n"),
            ("size = 1000", 1000, "size = 1000\n"),
            ("size = 2048", 2048, "size = \"2K\"\n"),
            ("size = 0", 0, "size = 0\n"),
        ] {
            let file: File = toml::from_str(text).unwrap();
            assert_eq!(file.size, ByteSize(n), "{text}");
            assert_eq!(toml::to_string(&file).unwrap(), back);
            assert_eq!(toml::from_str::<File>(back).unwrap(), file);
        }
        for bad in ["size = \"ten\"", "size = -1", "size = 1.5"] {
            assert!(toml::from_str::<File>(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod reduction_tests {
    use super::*;
    use crate::backend::ItemInfo;
    use crate::key::Key;
    use chrono::DateTime;

    fn info(key: &str, size: u64, t: i64) -> ItemInfo {
        ItemInfo {
            key: Key::new(key).unwrap(),
            size,
            last_access: DateTime::from_timestamp(t, 0).unwrap(),
        }
    }

    const H1: &str = "00000000000000000000000000000001";
    const H2: &str = "00000000000000000000000000000002";
    const H3: &str = "00000000000000000000000000000003";

    /// Listed sizes are the store's word: two sparse files of 2^63 - 1 bytes overflowed the
    /// total (a panic in debug builds, which killed the limits thread; a wrapped total in
    /// release builds, which could fall under the byte limit and keep everything).
    #[test]
    fn sizes_that_overflow_a_sum_are_summed_exactly() {
        let huge = i64::MAX.unsigned_abs();
        let items = vec![
            info(&format!("cachette/f/{H1}"), huge, 300),
            info(&format!("cachette/f/{H2}"), huge, 100),
            info(&format!("cachette/g/{H3}"), 10, 400),
        ];
        let limits = SizeLimits::default().bytes_limit("1K").unwrap();
        let (doomed, report) = plan_entries(items, &limits);
        let names: Vec<_> = doomed.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(
            names,
            [format!("cachette/f/{H2}"), format!("cachette/f/{H1}")]
        );
        assert_eq!((report.kept_items, report.kept_bytes), (1, 10));
        assert_eq!(report.deleted_bytes, u64::MAX - 1);
    }

    /// An age limit past the calendar's range panicked; it keeps everything.
    #[test]
    fn an_age_limit_longer_than_the_calendar_keeps_all() {
        let items = vec![info(&format!("cachette/f/{H1}"), 10, 0)];
        let limits = SizeLimits::default().age_limit(TimeDelta::MAX);
        let (doomed, report) = plan_entries(items, &limits);
        assert!(doomed.is_empty());
        assert_eq!(report.kept_items, 1);
    }

    #[test]
    fn least_recently_accessed_go_first() {
        let items = vec![
            info(&format!("cachette/f/{H1}"), 10, 300),
            info(&format!("cachette/f/{H2}"), 10, 100),
            info(&format!("cachette/g/{H3}"), 10, 200),
            info("cachette/f/func_code", 5, 0),
        ];
        let (doomed, report) = plan_entries(items.clone(), &SizeLimits::default().items_limit(1));
        let names: Vec<_> = doomed.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(
            names,
            [format!("cachette/f/{H2}"), format!("cachette/g/{H3}")]
        );
        assert_eq!(report.kept_items, 1);
        let (doomed, _) = plan_entries(
            items.clone(),
            &SizeLimits::default().bytes_limit("15").unwrap(),
        );
        assert_eq!(doomed.len(), 2);
        let (doomed, _) = plan_entries(
            items.clone(),
            &SizeLimits::default().age_limit(TimeDelta::zero()),
        );
        assert_eq!(doomed.len(), 3, "age zero deletes every entry");
        // Within the count and size limits, only what is too old goes.
        let (doomed, report) = plan_entries(items.clone(), &SizeLimits::default().items_limit(3));
        assert!(doomed.is_empty());
        assert_eq!((report.kept_items, report.kept_bytes), (3, 30));
        let cut = Utc::now() - DateTime::from_timestamp(150, 0).unwrap();
        let (doomed, report) =
            plan_entries(items, &SizeLimits::default().items_limit(3).age_limit(cut));
        let names: Vec<_> = doomed.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, [format!("cachette/f/{H2}")]);
        assert_eq!(
            (
                report.kept_items,
                report.kept_bytes,
                report.deleted_items,
                report.deleted_bytes
            ),
            (2, 20, 1, 10)
        );
    }

    #[test]
    fn stale_claims_go_and_live_ones_stay() {
        let now = Utc::now().timestamp();
        let items = vec![
            info(&format!("cachette/f/{H1}"), 10, now),
            info(&format!("cachette/f/{H1}.claim"), 1, now - 7200),
            info(&format!("cachette/f/{H2}.claim"), 1, now - 60),
            info("cachette/f/other.claim", 1, 0),
        ];
        assert!(grammar::is_claim(&items[1].key) && !grammar::is_claim(&items[3].key));
        let (doomed, report) =
            plan_reduction(items, &SizeLimits::default(), Duration::from_secs(30));
        let names: Vec<_> = doomed.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, [format!("cachette/f/{H1}.claim")]);
        assert_eq!((report.deleted_items, report.kept_items), (0, 1));
    }
}
