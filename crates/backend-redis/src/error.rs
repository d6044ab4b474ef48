//! Redis errors as [`BackendError`]s.

use cachette_core::{BackendError, ErrorKind};
use redis::{RedisError, ServerErrorKind};

use crate::SCHEME;

/// Maps a Redis error to a backend error of the right kind: connection problems and timeouts
/// are temporary, so that a retry layer may retry them; a wrong password or a full server are
/// not.
pub(crate) fn from_redis(err: RedisError) -> BackendError {
    let kind = kind_of(&err);
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
