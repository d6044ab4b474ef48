//! Errors: what goes wrong inside an operation, and Redis errors as [`BackendError`]s.

use cachette_core::plugin::{BackendError, ErrorKind};
use redis::{RedisError, ServerErrorKind};

use crate::SCHEME;

/// What went wrong inside an operation, before it is turned into a [`BackendError`].
#[derive(Debug)]
pub(crate) enum Fail {
    Redis(RedisError),
    Backend(BackendError),
}

impl From<RedisError> for Fail {
    fn from(e: RedisError) -> Self {
        Fail::Redis(e)
    }
}

impl From<redis::ParsingError> for Fail {
    fn from(e: redis::ParsingError) -> Self {
        Fail::Redis(e.into())
    }
}

impl From<BackendError> for Fail {
    fn from(e: BackendError) -> Self {
        Fail::Backend(e)
    }
}

impl Fail {
    /// The backend error of this failure.
    pub(crate) fn into_backend(self) -> BackendError {
        match self {
            Fail::Redis(e) => from_redis(e),
            Fail::Backend(e) => e,
        }
    }
}

/// The result of the steps of an operation.
pub(crate) type Res<T> = Result<T, Fail>;

/// The item was replaced again and again while being read (a temporary error).
pub(crate) fn kept_changing() -> Fail {
    Fail::Backend(
        BackendError::new(
            ErrorKind::Other,
            "the item was replaced again and again while being read",
        )
        .set_temporary(true),
    )
}

/// The data key of an item holds something that is not an item: a manifest that breaks its
/// bounds, or a Redis type the backend never writes.
pub(crate) fn corrupted(data: &str, why: &str) -> Fail {
    Fail::Backend(
        BackendError::new(
            ErrorKind::Other,
            format!("the stored item {data} is corrupted: {why}; it was not read"),
        )
        .with_backend(SCHEME),
    )
}

/// A scan that would not end, for `why`: not temporary, since a scan started again would get
/// the same answers.
pub(crate) fn endless_scan(why: &str) -> Fail {
    Fail::Backend(
        BackendError::new(
            ErrorKind::Other,
            format!("the server's SCAN does not end: {why}; the listing is given up"),
        )
        .with_backend(SCHEME),
    )
}

/// Maps a Redis error to a backend error of the right kind: connection problems and timeouts
/// are temporary, so that a retry layer may retry them; a wrong password or a full server are
/// not.
pub(crate) fn from_redis(err: RedisError) -> BackendError {
    if crate::retry::is_busy(&err, true) {
        // `MOVED` and `ASK` are retried on a cluster only: on a single server they mean that
        // the URL names a node of a cluster.
        let message = if crate::retry::is_busy(&err, false) {
            "the Redis server kept refusing the command for now (busy, loading, failing over or resharding) for longer than retry_busy_ms"
        } else {
            "the Redis server sent the command to another node: a cluster kept resharding for longer than retry_busy_ms, or a cluster node is configured as a single server (use a redis+cluster:// URL)"
        };
        return BackendError::new(ErrorKind::Unavailable, message)
            .with_backend(SCHEME)
            .with_source(err)
            .set_temporary(true);
    }
    let kind = kind_of(&err);
    // A wrong password meets every command: the memory is told once (a `NOPERM` of the
    // server's access lists may concern some keys or commands only, and is not marked).
    let whole_store = matches!(err.kind(), redis::ErrorKind::AuthenticationFailed)
        || matches!(err.code(), Some("NOAUTH" | "WRONGPASS"));
    let message = match kind {
        ErrorKind::Unavailable => "the Redis server cannot be reached",
        ErrorKind::Timeout => "the Redis server did not answer in time",
        ErrorKind::PermissionDenied => "the Redis server refused access",
        ErrorKind::StorageFull => "the Redis server is out of memory",
        ErrorKind::ConfigInvalid => "the Redis connection is misconfigured",
        _ => "Redis command failed",
    };
    BackendError::new(kind, message)
        .with_backend(SCHEME)
        .with_source(err)
        .set_whole_store(whole_store)
}

fn kind_of(err: &RedisError) -> ErrorKind {
    use redis::ErrorKind as K;
    if err.is_timeout() {
        return ErrorKind::Timeout;
    }
    // A TLS certificate the client does not trust comes as an I/O error, but retrying cannot
    // help: it is a configuration problem. (rustls's error is not reachable as a source through
    // the I/O error, so its message is what identifies it.)
    if err.is_io_error() && err.to_string().contains("certificate") {
        return ErrorKind::ConfigInvalid;
    }
    if err.is_connection_refusal() || err.is_connection_dropped() || err.is_io_error() {
        return ErrorKind::Unavailable;
    }
    match err.kind() {
        K::AuthenticationFailed | K::Server(ServerErrorKind::NoPerm) => ErrorKind::PermissionDenied,
        K::InvalidClientConfig => ErrorKind::ConfigInvalid,
        K::ClusterConnectionNotFound
        | K::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => ErrorKind::Unavailable,
        _ => match err.code() {
            Some("OOM") => ErrorKind::StorageFull,
            Some("NOAUTH" | "WRONGPASS") => ErrorKind::PermissionDenied,
            Some("BUSY") => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        },
    }
}

/// Whether the server answered `WRONGTYPE`: the data key holds a manifest (a hash) where a
/// string was expected, or the other way round.
pub(crate) fn is_wrong_type(err: &RedisError) -> bool {
    err.code() == Some("WRONGTYPE")
}

/// An error about an unexpected answer of the server.
pub(crate) fn unexpected(what: &str, value: &redis::Value) -> BackendError {
    BackendError::new(
        ErrorKind::Other,
        format!(
            "unexpected answer of the Redis server to {what}: {}",
            describe(value)
        ),
    )
    .with_backend(SCHEME)
}

/// A short description of a value, for messages (values may be megabytes long).
fn describe(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(b) => format!("a string of {} bytes", b.len()),
        redis::Value::Array(a) => format!("an array of {} elements", a.len()),
        other => {
            let text = format!("{other:?}");
            text.chars().take(200).collect()
        }
    }
}
