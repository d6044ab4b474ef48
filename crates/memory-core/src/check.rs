//! [`Memory::check`](crate::Memory::check): a start-up probe of the store.
//!
//! It writes one small item under `cachette/_check/` (a name no function folder can take:
//! those end with a hash), reads it back, deletes it, and times each step. A store whose writes
//! fail but whose reads work is read-only; one whose reads fail too is unreachable. It deletes
//! only the item it wrote, and goes past any local tier, to the store of record.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{
    BackendResult, DynBackend, GetOptions, PutOptions, PutOutcome, StoreBackend, StoreBackendExt,
};
use crate::error::BackendError;
use crate::key::{Key, grammar};
use crate::reach::Reach;
use crate::report::untrusted_within;

/// What [`Memory::check`](crate::Memory::check) found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreCheck {
    /// Where the store is.
    pub location: String,
    /// The verdict.
    pub status: CheckStatus,
    /// How long the write took, when it succeeded.
    pub write: Option<Duration>,
    /// How long the read took, when it succeeded.
    pub read: Option<Duration>,
    /// How long the deletion took, when it succeeded.
    pub delete: Option<Duration>,
    /// The first fault, made safe to print and cut to 300 characters; `None` when all went well.
    pub error: Option<String>,
}

/// The verdict of a [`StoreCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckStatus {
    /// Written, read back intact and deleted: the store works.
    Ok,
    /// Reads work, writes fail: hits are served, results are not stored.
    ReadOnly,
    /// Neither reads nor writes work.
    Unreachable,
    /// The store answered, but wrongly: the item read back was missing or different, or it
    /// could not be deleted.
    Faulty,
}

impl CheckStatus {
    /// A short, stable name: `ok`, `read_only`, `unreachable`, `faulty`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::ReadOnly => "read_only",
            CheckStatus::Unreachable => "unreachable",
            CheckStatus::Faulty => "faulty",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most characters kept of an error.
const ERROR_LEN: usize = 300;

fn shown(e: &BackendError) -> String {
    untrusted_within(&e.to_string(), ERROR_LEN)
}

/// Runs the probe on `backend`.
pub(crate) async fn check(
    reach: Reach,
    backend: &DynBackend,
    blocking_io: bool,
    location: &str,
) -> StoreCheck {
    let mut report = StoreCheck {
        location: location.to_owned(),
        status: CheckStatus::Ok,
        write: None,
        read: None,
        delete: None,
        error: None,
    };
    let (key, payload) = match item() {
        Ok(item) => item,
        Err(e) => {
            report.status = CheckStatus::Faulty;
            report.error = Some(shown(&e));
            return report;
        }
    };
    let run = async |op: Op| {
        let started = Instant::now();
        let out = reach
            .run(backend, blocking_io, move |b| Box::pin(op.run(b)))
            .await;
        (out, started.elapsed())
    };
    let (written, took) = run(Op::Put(key.clone(), payload.clone())).await;
    match written {
        Ok(Done::Put(PutOutcome::Created)) => report.write = Some(took),
        Ok(_) => {
            // Another writer's item under this unique name: not ours to read or delete.
            report.status = CheckStatus::Faulty;
            report.error = Some(format!("{key} exists already: it is left alone"));
            return report;
        }
        Err(e) => {
            report.error = Some(shown(&e));
            let (read, took) = run(Op::Get(key)).await;
            report.status = match read {
                Ok(_) => {
                    report.read = Some(took);
                    CheckStatus::ReadOnly
                }
                Err(_) => CheckStatus::Unreachable,
            };
            return report;
        }
    }
    let (read, took) = run(Op::Get(key.clone())).await;
    match read {
        Ok(Done::Got(Some(bytes))) if bytes == payload => report.read = Some(took),
        Ok(Done::Got(Some(_))) => {
            report.status = CheckStatus::Faulty;
            report.error = Some(format!("{key} read back different bytes than written"));
        }
        Ok(_) => {
            report.status = CheckStatus::Faulty;
            report.error = Some(format!("{key} was written but is not found"));
        }
        Err(e) => {
            report.status = CheckStatus::Faulty;
            report.error = Some(shown(&e));
        }
    }
    let (deleted, took) = run(Op::Delete(key)).await;
    match deleted {
        Ok(_) => report.delete = Some(took),
        Err(e) => {
            report.status = CheckStatus::Faulty;
            report.error.get_or_insert_with(|| shown(&e));
        }
    }
    report
}

/// A name of its own for this probe, and what it writes there.
fn item() -> Result<(Key, Bytes), BackendError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let token = format!(
        "{}-{}-{nanos:x}",
        crate::host::owner_tag(),
        std::process::id()
    );
    let key = grammar::check_item(&token)?;
    let payload = Bytes::from(format!("cachette store check {token}\n"));
    Ok((key, payload))
}

/// One step of the probe.
enum Op {
    Put(Key, Bytes),
    Get(Key),
    Delete(Key),
}

enum Done {
    Put(PutOutcome),
    Got(Option<Bytes>),
    Deleted,
}

impl Op {
    async fn run(self, b: &dyn StoreBackend) -> BackendResult<Done> {
        match self {
            Op::Put(key, payload) => b
                .put_opts(
                    &key,
                    payload.into(),
                    PutOptions::create().with_bypass_cache(true),
                )
                .await
                .map(Done::Put),
            Op::Get(key) => {
                let options = GetOptions::default().with_bypass_cache(true);
                match b.get_opts(&key, options).await? {
                    None => Ok(Done::Got(None)),
                    Some(found) => found.into_bytes().map(|b| Done::Got(Some(b))).map_err(|e| {
                        BackendError::new(crate::error::ErrorKind::Other, e.to_string())
                    }),
                }
            }
            Op::Delete(key) => b.delete(&key).await.map(|()| Done::Deleted),
        }
    }
}
