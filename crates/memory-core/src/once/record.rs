//! What a claim holds ([`ClaimRecord`]) and how it is read, past any local tier.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{CLAIM_MAGIC, CLAIM_READ};
use crate::backend::{BackendResult, GetOptions, StoreBackend};
use crate::key::Key;

/// Reads a claim, past any local tier.
pub(super) async fn read_claim(
    backend: &dyn StoreBackend,
    key: Key,
) -> BackendResult<Option<Bytes>> {
    let options = GetOptions::range(0..CLAIM_READ).with_bypass_cache(true);
    match backend.get_opts(&key, options).await? {
        Some(found) => found.into_bytes().map(Some).map_err(|e| {
            crate::error::BackendError::from_io(e, format!("cannot read the claim {key}"))
        }),
        None => Ok(None),
    }
}

/// What a claim holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClaimRecord {
    pub(super) host: String,
    pub(super) pid: u32,
    pub(super) token: String,
    pub(super) lease: Duration,
    /// When the lease runs out, in milliseconds since the Unix epoch.
    pub(super) expires_ms: u64,
    pub(super) renewals: u64,
}

impl ClaimRecord {
    pub(super) fn new(lease: Duration) -> ClaimRecord {
        // One system call (the process id is not cached: a forked child has its own).
        let pid = std::process::id();
        ClaimRecord {
            host: crate::host::host_name().to_owned(),
            pid,
            token: new_token(pid),
            lease,
            expires_ms: now_ms() + millis(lease),
            renewals: 0,
        }
    }

    pub(super) fn to_bytes(&self) -> Bytes {
        let mut numbers = itoa::Buffer::new();
        // Sized for a host name of 64 bytes: one allocation.
        let mut text = String::with_capacity(CLAIM_MAGIC.len() + self.token.len() + 160);
        let fields: [(&str, &str); 3] = [
            ("\nhost ", &self.host),
            ("\npid ", numbers.format(self.pid)),
            ("\ntoken ", &self.token),
        ];
        text.push_str(CLAIM_MAGIC);
        for (name, value) in fields {
            text.push_str(name);
            text.push_str(value);
        }
        for (name, value) in [
            ("\nlease_ms ", millis(self.lease)),
            ("\nexpires_ms ", self.expires_ms),
            ("\nrenewals ", self.renewals),
        ] {
            text.push_str(name);
            text.push_str(numbers.format(value));
        }
        text.push('\n');
        Bytes::from(text)
    }

    pub(super) fn parse(bytes: &[u8]) -> Option<ClaimRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != CLAIM_MAGIC {
            return None;
        }
        let fields: HashMap<&str, &str> = lines.filter_map(|l| l.split_once(' ')).collect();
        Some(ClaimRecord {
            host: (*fields.get("host")?).to_owned(),
            pid: fields.get("pid")?.parse().ok()?,
            token: (*fields.get("token")?).to_owned(),
            lease: Duration::from_millis(fields.get("lease_ms")?.parse().ok()?),
            expires_ms: fields.get("expires_ms")?.parse().ok()?,
            renewals: fields
                .get("renewals")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
        })
    }

    /// Whether the lease ran out, on this machine's clock.
    pub(super) fn expired(&self) -> bool {
        now_ms() >= self.expires_ms
    }

    /// Whether a stored claim is this one (the same token).
    pub(super) fn owns(&self, stored: &[u8]) -> bool {
        ClaimRecord::parse(stored).is_some_and(|c| c.token == self.token)
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// A token no other claim has: 128 bits from the standard library's per-process random keys,
/// the process `pid`, the time and a counter.
fn new_token(pid: u32) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut parts = [0u64; 2];
    for part in &mut parts {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(pid);
        h.write_u128(nanos);
        *part = h.finish();
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&parts[0].to_be_bytes());
    bytes[8..].copy_from_slice(&parts[1].to_be_bytes());
    cachette_hashing::Digest(bytes).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_tell_their_owner() {
        let record = ClaimRecord::new(Duration::from_secs(30));
        let bytes = record.to_bytes();
        // The format every version reads.
        let expected = format!(
            "{CLAIM_MAGIC}\nhost {}\npid {}\ntoken {}\nlease_ms 30000\nexpires_ms {}\nrenewals 0\n",
            record.host, record.pid, record.token, record.expires_ms
        );
        assert_eq!(&bytes[..], expected.as_bytes());
        let back = ClaimRecord::parse(&bytes).unwrap();
        assert_eq!(back, record);
        assert!(record.owns(&bytes));
        assert!(!ClaimRecord::new(Duration::from_secs(30)).owns(&bytes));
        assert!(!back.expired());
        assert!(ClaimRecord::parse(b"garbage").is_none());
        let old = ClaimRecord {
            expires_ms: 1,
            ..record
        };
        assert!(old.expired());
        assert_eq!(new_token(1).len(), 32);
        assert!(
            new_token(1)
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert_ne!(new_token(1), new_token(1));
    }
}
