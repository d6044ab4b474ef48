//! Sizes and limits for [`Memory::reduce_size`](crate::Memory::reduce_size).

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;

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
}
