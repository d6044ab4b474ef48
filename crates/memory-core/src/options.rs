//! [`Options`]: how a memory behaves, once, for the config file, the builder and the memory.
//!
//! A config file's top-level keys (other than the store and its layers) are the fields of
//! `Options`; [`MemoryBuilder`](crate::MemoryBuilder)'s setters set them; a
//! [`Memory`](crate::Memory) keeps them, validated once when it is built, and ships them back in
//! [`Memory::config`](crate::Memory::config). A new option is a field here (with its default and
//! its documentation), a setter on the builder, and the code that uses it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::array::MmapMode;
use crate::entry::DEFAULT_MAX_DECOMPRESSED;
use crate::size::{ByteSize, SizeLimits};

/// The default lease of a compute-once claim.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The default longest wait for another caller's result.
pub(crate) const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(600);
/// The default shortest time between two automatic clean-ups of the size limits.
pub(crate) const DEFAULT_LIMITS_INTERVAL: Duration = Duration::from_secs(60);
/// The default time between two writes of the call statistics to the store.
pub(crate) const DEFAULT_CALL_STATS_INTERVAL: Duration = Duration::from_secs(300);
/// The default number of store faults in a row that open the circuit breaker.
pub(crate) const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// The default time the circuit breaker stays open.
pub(crate) const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// How a [`Memory`](crate::Memory) behaves: every option but its store and layers. Each field
/// is a key of a config file, with the default given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Options {
    /// Verbosity (`verbose`, default 0): 0 is silent, 1 prints joblib's lines for each
    /// computation, 2 and more also for each load. See
    /// [`MemoryBuilder::verbose`](crate::MemoryBuilder::verbose).
    #[serde(skip_serializing_if = "is_zero")]
    pub verbose: u8,
    /// How arrays of outputs are loaded (`mmap_mode`: `"none"`, `"r"`, `"c"`, `"r+"` or `"w+"`,
    /// default none). See [`MemoryBuilder::mmap_mode`](crate::MemoryBuilder::mmap_mode).
    #[serde(skip_serializing_if = "is_no_map")]
    pub mmap_mode: MmapMode,
    /// The zstd level outputs are compressed with (`compress`, default none; 0 is none). See
    /// [`MemoryBuilder::compress`](crate::MemoryBuilder::compress).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<i32>,
    /// Whether the store's operations are counted for
    /// [`Memory::stats`](crate::Memory::stats) (`stats`, default `true`).
    #[serde(skip_serializing_if = "is_true")]
    pub stats: bool,
    /// Whether concurrent misses of one key compute it once (`compute_once`, default `true`).
    /// See [`MemoryBuilder::compute_once`](crate::MemoryBuilder::compute_once).
    #[serde(skip_serializing_if = "is_true")]
    pub compute_once: bool,
    /// Whether a memory-mapped load checks its arrays against their block checksums
    /// (`verify_maps`, default `true`). Checking reads every page of the arrays once (185 ms
    /// for 1 GiB from the page cache on a shared 2-core machine), which a map otherwise defers to
    /// the first use. Turn it off only for a store nobody else writes to. Strict mode checks
    /// whatever this says. See [`MemoryBuilder::verify_maps`](crate::MemoryBuilder::verify_maps).
    #[serde(skip_serializing_if = "is_true")]
    pub verify_maps: bool,
    /// Whether compute-once takes claims in the store, to work across processes (not a config
    /// key: the default follows how the store was given). See
    /// [`MemoryBuilder::claims`](crate::MemoryBuilder::claims).
    #[serde(skip)]
    pub claims: Option<bool>,
    /// Whether the `try_` methods return faults of the store as errors (`strict`, default
    /// `false`). See [`MemoryBuilder::strict`](crate::MemoryBuilder::strict).
    #[serde(skip_serializing_if = "is_false")]
    pub strict: bool,
    /// The lease of compute-once claims (`lease_secs`, in seconds, default 30). See
    /// [`MemoryBuilder::lease`](crate::MemoryBuilder::lease).
    #[serde(
        rename = "lease_secs",
        with = "seconds",
        skip_serializing_if = "is_default_lease"
    )]
    pub lease: Duration,
    /// How long a caller waits for another one's result before computing it anyway
    /// (`wait_timeout_secs`, in seconds, default 600). See
    /// [`MemoryBuilder::wait_timeout`](crate::MemoryBuilder::wait_timeout).
    #[serde(
        rename = "wait_timeout_secs",
        with = "seconds",
        skip_serializing_if = "is_default_wait_timeout"
    )]
    pub wait_timeout: Duration,
    /// The most bytes a compressed entry may decompress to (`max_decompressed_size`, default
    /// 4 GiB). A larger entry is refused as damaged, so a hostile entry of a few kilobytes
    /// cannot make a reader allocate gigabytes; a larger output is written uncompressed. See
    /// [`MemoryBuilder::max_decompressed_size`](crate::MemoryBuilder::max_decompressed_size).
    #[serde(skip_serializing_if = "is_default_max_decompressed")]
    pub max_decompressed_size: u64,
    /// Whether argument keys come from keyed BLAKE3, keyed from the signing key
    /// (`hardened_keys`, default `false`), for stores that people the memory does not trust
    /// can write to. See [`MemoryBuilder::hardened_keys`](crate::MemoryBuilder::hardened_keys).
    #[serde(skip_serializing_if = "is_false")]
    pub hardened_keys: bool,
    /// The most bytes of entries the store keeps (`bytes_limit`: `"10G"`, `"500M"`, `"1.5GiB"`
    /// with K = 1024, or a number of bytes; default none). Kept after writes, least recently
    /// accessed entries first. See [`MemoryBuilder::bytes_limit`](crate::MemoryBuilder::bytes_limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_limit: Option<ByteSize>,
    /// The most entries the store keeps (`items_limit`, default none). See
    /// [`MemoryBuilder::items_limit`](crate::MemoryBuilder::items_limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items_limit: Option<usize>,
    /// How long an entry is kept after its last access (`age_limit`: `"90s"`, `"15m"`,
    /// `"1h30m"`, `"7d"`, `"1w"`, or a number of seconds; default none). See
    /// [`MemoryBuilder::age_limit`](crate::MemoryBuilder::age_limit).
    #[serde(with = "age", skip_serializing_if = "Option::is_none")]
    pub age_limit: Option<Duration>,
    /// The most bytes of decoded values this process keeps in memory for the functions that
    /// ask for it (`memo_size`: a size as for `bytes_limit`; default none, no memo). See
    /// [`MemoryBuilder::memo_size`](crate::MemoryBuilder::memo_size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo_size: Option<ByteSize>,
    /// The shortest time between two automatic clean-ups of the limits above, unless a tenth
    /// of a limit was written since the last one (`limits_interval_secs`, in seconds, default
    /// 60). See [`MemoryBuilder::limits_interval`](crate::MemoryBuilder::limits_interval).
    #[serde(
        rename = "limits_interval_secs",
        with = "seconds",
        skip_serializing_if = "is_default_limits_interval"
    )]
    pub limits_interval: Duration,
    /// The shortest time between two writes of the call statistics to the store
    /// (`call_stats_interval_secs`, in seconds, default 300; 0 keeps them in the process). See
    /// [`MemoryBuilder::call_stats_interval`](crate::MemoryBuilder::call_stats_interval).
    #[serde(
        rename = "call_stats_interval_secs",
        with = "seconds",
        skip_serializing_if = "is_default_call_stats_interval"
    )]
    pub call_stats_interval: Duration,
    /// How many store faults in a row open the circuit breaker (`breaker_threshold`, default
    /// 5; 0 turns it off). While it is open, calls skip the store: they compute and return
    /// their value without reading or writing it. See
    /// [`MemoryBuilder::breaker`](crate::MemoryBuilder::breaker).
    #[serde(skip_serializing_if = "is_default_breaker_threshold")]
    pub breaker_threshold: u32,
    /// How long the circuit breaker stays open before one call tries the store again
    /// (`breaker_cooldown_secs`, in seconds, default 30). See
    /// [`MemoryBuilder::breaker`](crate::MemoryBuilder::breaker).
    #[serde(
        rename = "breaker_cooldown_secs",
        with = "seconds",
        skip_serializing_if = "is_default_breaker_cooldown"
    )]
    pub breaker_cooldown: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verbose: 0,
            mmap_mode: MmapMode::None,
            compress: None,
            stats: true,
            compute_once: true,
            verify_maps: true,
            claims: None,
            strict: false,
            lease: DEFAULT_LEASE,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            max_decompressed_size: DEFAULT_MAX_DECOMPRESSED,
            hardened_keys: false,
            bytes_limit: None,
            items_limit: None,
            age_limit: None,
            memo_size: None,
            limits_interval: DEFAULT_LIMITS_INTERVAL,
            call_stats_interval: DEFAULT_CALL_STATS_INTERVAL,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
        }
    }
}

/// The longest duration an option may have: a hundred years, longer than any wait, lease or
/// interval needs, and short enough that no clock's arithmetic overflows with it.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Options {
    /// Checks the options; gives the first problem, naming its config key.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (key, duration) in [
            ("lease_secs", self.lease),
            ("wait_timeout_secs", self.wait_timeout),
            ("limits_interval_secs", self.limits_interval),
            ("call_stats_interval_secs", self.call_stats_interval),
            ("breaker_cooldown_secs", self.breaker_cooldown),
        ] {
            if duration > MAX_DURATION {
                return Err(format!(
                    "key `{key}`: {} s is longer than a hundred years",
                    duration.as_secs()
                ));
            }
        }
        if self.lease.is_zero() {
            return Err(
                "key `lease_secs`: the lease of compute-once claims must be longer than zero"
                    .into(),
            );
        }
        if self
            .age_limit
            .is_some_and(|age| chrono::TimeDelta::from_std(age).is_err())
        {
            return Err("key `age_limit`: the age limit is too long".into());
        }
        Ok(())
    }

    /// The size limits the memory keeps after its writes (see
    /// [`MemoryBuilder::bytes_limit`](crate::MemoryBuilder::bytes_limit)), `None` without any:
    /// what [`Memory::reduce_size`](crate::Memory::reduce_size) takes.
    pub fn size_limits(&self) -> Option<SizeLimits> {
        if self.bytes_limit.is_none() && self.items_limit.is_none() && self.age_limit.is_none() {
            return None;
        }
        Some(SizeLimits {
            bytes_limit: self.bytes_limit,
            items_limit: self.items_limit,
            age_limit: self
                .age_limit
                .map(|age| chrono::TimeDelta::from_std(age).unwrap_or(chrono::TimeDelta::MAX)),
        })
    }

    /// The zstd level to compress with, clamped to the levels zstd knows; `None` for none.
    pub(crate) fn compression(&self) -> Option<i32> {
        let range = zstd::compression_level_range();
        self.compress
            .filter(|&level| level != 0)
            .map(|level| level.clamp(*range.start(), *range.end()))
    }
}

/// A duration as a number of seconds (a float), zero or more.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected a number of seconds, zero or more, got {secs}"
            ))
        })
    }
}

/// A duration as people write it: a number of seconds, or `humantime`'s form (`"90s"`,
/// `"15m"`, `"1h30m"`, `"1 day"`, `"7d"`, `"1w"`). Written back in `humantime`'s form.
mod age {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(Age).map(Some)
    }

    struct Age;

    const EXPECTED: &str = "a duration like \"90s\", \"15m\", \"1h30m\", \"7d\" or \"1w\", or a number of seconds, zero or more";

    impl Visitor<'_> for Age {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("expected {EXPECTED}, got {secs}")))
        }

        fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(secs)
                .map_err(|_| E::custom(format!("expected {EXPECTED}, got {secs}")))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            let t = text.trim();
            if let Ok(secs) = t.parse::<u64>() {
                return Ok(Duration::from_secs(secs));
            }
            humantime::parse_duration(t)
                .map_err(|e| E::custom(format!("expected {EXPECTED}, got {text:?} ({e})")))
        }
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

fn is_no_map(mode: &MmapMode) -> bool {
    !mode.maps()
}

fn is_default_lease(d: &Duration) -> bool {
    *d == DEFAULT_LEASE
}

fn is_default_wait_timeout(d: &Duration) -> bool {
    *d == DEFAULT_WAIT_TIMEOUT
}

fn is_default_max_decompressed(n: &u64) -> bool {
    *n == DEFAULT_MAX_DECOMPRESSED
}

fn is_default_limits_interval(d: &Duration) -> bool {
    *d == DEFAULT_LIMITS_INTERVAL
}

fn is_default_call_stats_interval(d: &Duration) -> bool {
    *d == DEFAULT_CALL_STATS_INTERVAL
}

fn is_default_breaker_threshold(n: &u32) -> bool {
    *n == DEFAULT_BREAKER_THRESHOLD
}

fn is_default_breaker_cooldown(d: &Duration) -> bool {
    *d == DEFAULT_BREAKER_COOLDOWN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_left_out_and_values_round_trip() {
        assert_eq!(toml::to_string(&Options::default()).unwrap(), "");
        let options = Options {
            verbose: 2,
            lease: Duration::from_millis(2500),
            ..Options::default()
        };
        let text = toml::to_string(&options).unwrap();
        assert_eq!(text, "verbose = 2\nlease_secs = 2.5\n");
        assert_eq!(toml::from_str::<Options>(&text).unwrap(), options);
        let bad = toml::from_str::<Options>("wait_timeout_secs = -1").unwrap_err();
        assert!(bad.to_string().contains("zero or more"), "{bad}");
        let zero = Options {
            lease: Duration::ZERO,
            ..Options::default()
        };
        assert!(zero.validate().unwrap_err().contains("lease_secs"));
        // A wait of 1e19 s panicked when its deadline was computed.
        let long = Options {
            wait_timeout: Duration::from_secs(10_000_000_000_000_000_000),
            ..Options::default()
        };
        assert!(long.validate().unwrap_err().contains("wait_timeout_secs"));
        let text = "breaker_cooldown_secs = 1e12";
        let far: Options = toml::from_str(text).unwrap();
        assert!(
            far.validate()
                .unwrap_err()
                .contains("breaker_cooldown_secs")
        );
    }

    #[test]
    fn breaker_keys_load_and_default_to_on() {
        let defaults = Options::default();
        assert_eq!(defaults.breaker_threshold, 5);
        assert_eq!(defaults.breaker_cooldown, Duration::from_secs(30));
        // A file without the keys (written before them) loads with the defaults.
        assert_eq!(
            toml::from_str::<Options>("verbose = 1")
                .unwrap()
                .breaker_threshold,
            5
        );
        let off: Options =
            toml::from_str("breaker_threshold = 0\nbreaker_cooldown_secs = 2.5").unwrap();
        assert_eq!(off.breaker_threshold, 0);
        assert_eq!(off.breaker_cooldown, Duration::from_millis(2500));
        let text = toml::to_string(&off).unwrap();
        assert_eq!(text, "breaker_threshold = 0\nbreaker_cooldown_secs = 2.5\n");
    }
}
