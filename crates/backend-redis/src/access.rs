//! Access tracking: how a read with `record_access` is recorded, and how listing turns what it
//! finds into each item's last access.
//!
//! - **`idletime`**: the access is the idle time of the item's *record* (`{data}:s`), which
//!   Redis keeps for every key and which `OBJECT IDLETIME` reads without resetting it. Only
//!   writes and reads with `record_access` (a `TOUCH` of the record, sent with the read) reset
//!   it: every other read (ranged reads, `head`, reads without `record_access`) uses only the
//!   data key and the chunks, and listing reads no record, so none of them counts as an access.
//!   (Redis resets the idle time of any key a command reads, and Redis 7.0 has no read that
//!   leaves it alone: hence the record, which only recorded reads touch, rather than the data
//!   key, which every read touches.)
//! - **`stored`**: Redis keeps no idle time under an LFU `maxmemory-policy`; a read with
//!   `record_access` then writes the time in the record's `a` field, by a tiny script sent
//!   with the read. Times are the clients' clocks; a time in the future is taken as now, one
//!   that does not parse is ignored.
//! - **`auto`** reads `maxmemory-policy` once and picks `stored` for an LFU policy.
//!
//! Either way an access is known to about a second (Redis's idle times count seconds), so a
//! process records the access of an item at most once per [`RECORD_HOLDS`]: a read of an item
//! whose access it recorded less than that ago sends its `GET` alone.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use cachette_core::plugin::{DateTime, Utc, chrono::TimeDelta};
use redis::{Cmd, Value};

use crate::backend::Inner;
use crate::config::AccessTracking;
use crate::conn::Conn;
use crate::error::Res;
use crate::keys;
use crate::lua;

/// How long an access this process recorded counts for it: its reads of the item within it
/// record none.
pub(crate) const RECORD_HOLDS: Duration = Duration::from_secs(1);

const UNDECIDED: u8 = 0;
const IDLETIME: u8 = 1;
const STORED: u8 = 2;

/// The tracking state of a new backend.
pub(crate) fn initial(tracking: AccessTracking) -> u8 {
    match tracking {
        AccessTracking::IdleTime => IDLETIME,
        AccessTracking::Stored => STORED,
        _ => UNDECIDED,
    }
}

impl Inner {
    /// Whether a read of `data` with `record_access` must record it: not when this process
    /// recorded its access less than [`RECORD_HOLDS`] ago.
    pub(crate) fn must_record(&self, data: &str) -> bool {
        !self.recent.holds(data)
    }

    /// Notes that the access of `data` was just recorded (its read's round trip, which sent the
    /// record, was answered).
    pub(crate) fn recorded(&self, data: &str) {
        let now = SystemTime::now();
        self.recent.note(data, now + RECORD_HOLDS, now);
    }

    /// Whether accesses are stored in the records (else Redis's idle time of the records is
    /// used). Decided once, from the server's eviction policy, when the configuration says
    /// `auto`. Fails only when the server cannot be reached.
    pub(crate) async fn stored_access(&self, conn: &mut Conn) -> Res<bool> {
        if let Some(stored) = self.access_decided() {
            return Ok(stored);
        }
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let answer = conn.any_node(cmd).await;
        self.decide_access(answer)
    }

    /// Whether accesses are stored, if that is decided.
    pub(crate) fn access_decided(&self) -> Option<bool> {
        match self.access.load(Ordering::Relaxed) {
            IDLETIME => Some(false),
            STORED => Some(true),
            _ => None,
        }
    }

    /// Decides how accesses are tracked from the answer to `CONFIG GET maxmemory-policy`.
    pub(crate) fn decide_access(&self, answer: redis::RedisResult<Value>) -> Res<bool> {
        let decided = match answer {
            Ok(answer) => {
                let lfu = strings_of(&answer).iter().any(|s| s.contains("lfu"));
                if lfu { STORED } else { IDLETIME }
            }
            // A server that refuses CONFIG (managed services often do): idle times until
            // `OBJECT IDLETIME` says the policy is LFU (see `list`).
            Err(e) if !e.is_io_error() && !e.is_timeout() && !e.is_unrecoverable_error() => {
                IDLETIME
            }
            Err(e) => return Err(e.into()),
        };
        // Another task may have switched to stored access meanwhile; never switch back.
        let _ =
            self.access
                .compare_exchange(UNDECIDED, decided, Ordering::Relaxed, Ordering::Relaxed);
        Ok(self.access.load(Ordering::Relaxed) == STORED)
    }

    /// The server evicts by frequency and keeps no idle time: store accesses from now on.
    pub(crate) fn switch_to_stored(&self) {
        self.access.store(STORED, Ordering::Relaxed);
    }
}

/// The command that records an access to the item in `data`, sent with the read: a `TOUCH` of
/// its record, or (`stored`) the script that writes the time into the record.
pub(crate) fn record_cmd(stored: bool, data: &str) -> Cmd {
    let record = keys::record(data);
    if stored {
        let mut cmd = lua::eval(lua::TOUCH, &[data, record.as_str()]);
        cmd.arg(now_ms());
        cmd
    } else {
        let mut cmd = redis::cmd("TOUCH");
        cmd.arg(record);
        cmd
    }
}

/// The last access of a listed item from what the listing script found (see
/// [`lua::LIST`]): with idle times, the record's, else (the record is gone) the data key's;
/// with stored times, the record's time stamp, never later than `now`. An item with neither
/// counts as never accessed.
pub(crate) fn last_access(
    stored: bool,
    first: Option<&[u8]>,
    second: Option<&[u8]>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let number =
        |v: Option<&[u8]>| -> Option<i64> { std::str::from_utf8(v?).ok()?.trim().parse().ok() };
    let at = if stored {
        number(first)
            .and_then(DateTime::from_timestamp_millis)
            .map(|at| at.min(now))
    } else {
        number(first)
            .or_else(|| number(second))
            .and_then(|idle| TimeDelta::try_seconds(idle.max(0)))
            .and_then(|idle| now.checked_sub_signed(idle))
    };
    at.unwrap_or(DateTime::UNIX_EPOCH)
}

/// The bytes of a string or integer answer, for [`last_access`] and sizes.
pub(crate) fn text_of(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

/// Every string in an answer (for `CONFIG GET`, an array in RESP2 and a map in RESP3).
fn strings_of(value: &Value) -> Vec<String> {
    match value {
        Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        Value::SimpleString(s) => vec![s.clone()],
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(strings_of).collect(),
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| strings_of(k).into_iter().chain(strings_of(v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_are_clamped_and_checked() {
        let now = Utc::now();
        let ms = |t: DateTime<Utc>| t.timestamp_millis().to_string().into_bytes();
        let past = now - TimeDelta::hours(1);
        let at = last_access(true, Some(&ms(past)), None, now);
        assert_eq!(at.timestamp_millis(), past.timestamp_millis());
        // A time in the future (a client's clock ahead, or forged) is now, not later.
        let future = now + TimeDelta::days(365);
        assert_eq!(last_access(true, Some(&ms(future)), None, now), now);
        assert_eq!(
            last_access(true, Some(i64::MAX.to_string().as_bytes()), None, now),
            DateTime::UNIX_EPOCH,
            "out of chrono's range: ignored"
        );
        for junk in [&b"soon"[..], b"", b"12abc", b"\xff"] {
            assert_eq!(
                last_access(true, Some(junk), None, now),
                DateTime::UNIX_EPOCH,
                "{junk:?}"
            );
        }
        assert_eq!(last_access(true, None, None, now), DateTime::UNIX_EPOCH);
    }

    #[test]
    fn idle_times_prefer_the_record() {
        let now = Utc::now();
        assert_eq!(
            last_access(false, Some(b"10"), Some(b"1000"), now),
            now - TimeDelta::seconds(10)
        );
        assert_eq!(
            last_access(false, None, Some(b"1000"), now),
            now - TimeDelta::seconds(1000)
        );
        assert_eq!(last_access(false, Some(b"-5"), None, now), now);
        assert_eq!(
            last_access(false, Some(i64::MAX.to_string().as_bytes()), None, now),
            DateTime::UNIX_EPOCH
        );
        assert_eq!(last_access(false, None, None, now), DateTime::UNIX_EPOCH);
    }
}
