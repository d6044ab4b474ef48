//! Mapping object_store errors to [`BackendError`]s.

use std::error::Error as StdError;

use cachette_core::plugin::{BackendError, ErrorKind};
use object_store::client::{HttpError, HttpErrorKind};

/// Converts an object_store error into a [`BackendError`] with its kind, the temporary bit, and
/// the backend, operation and key as context.
pub(crate) fn convert(
    scheme: &'static str,
    operation: &'static str,
    key: &str,
    err: object_store::Error,
) -> BackendError {
    let (kind, temporary) = classify(&err);
    // A missing bucket, or credentials the store does not know, meet every request: the
    // memory is told once. (A request refused by the bucket's policy may concern some keys
    // only, and is not marked.)
    let refused = refused_credentials(&err);
    let whole_store = is_missing_bucket(&err) || refused.is_some();
    // An expired or invalid token comes with a 400: a refusal all the same.
    let kind = if refused.is_some() {
        ErrorKind::PermissionDenied
    } else {
        kind
    };
    let message = match refused {
        Some(code) => format!(
            "the store does not accept the credentials ({code}): check the access key, the secret and the session token"
        ),
        None => describe(kind).to_owned(),
    };
    BackendError::new(kind, message)
        .with_backend(scheme)
        .with_operation(operation)
        .with_key(key)
        .with_source(err)
        .set_temporary(temporary)
        .set_whole_store(whole_store)
}

/// The S3 error codes of a request whose credentials are refused, whatever it asks: the key
/// is unknown, the session token is invalid or expired. (`SignatureDoesNotMatch` is not one:
/// servers also give it for one key whose path the client and the server encode apart.)
const CREDENTIAL_CODES: [&str; 5] = [
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
];

/// Whether the error says the store does not accept the credentials (for any request), and
/// how: an unauthenticated request, or a refusal with one of the [`CREDENTIAL_CODES`].
fn refused_credentials(err: &object_store::Error) -> Option<&'static str> {
    use object_store::Error as E;
    match err {
        E::Unauthenticated { .. } => Some("unauthenticated"),
        E::PermissionDenied { .. } | E::Generic { .. } => answer_code(err, &CREDENTIAL_CODES),
        _ => None,
    }
}

/// Whether the error says the bucket does not exist: a `NotFound` whose answer gives the code
/// `NoSuchBucket` (and not a missing object whose path holds that word).
fn is_missing_bucket(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
        && answer_code(err, &["NoSuchBucket"]).is_some()
}

/// The first of `codes` that the answer to the failed request gives as its S3 error code.
///
/// The code is in the answer's body, which the messages of the error's chain quote; a chain is
/// a few errors deep, and the walk is bounded all the same. It is looked for as the body gives
/// it, `<Code>…</Code>`, after the status: the messages also quote the object's path, which may
/// hold any word (a function named `ExpiredToken` or `NoSuchBucket`), and which they name
/// before the status. (A key the body quotes is escaped: `<` is `&lt;` there.)
fn answer_code(err: &object_store::Error, codes: &[&'static str]) -> Option<&'static str> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
    for _ in 0..16 {
        let e = cause?;
        let message = e.to_string();
        // The answer's body comes after its status; the path is named before it.
        if let Some((_, text)) = message.rsplit_once(STATUS_MARK) {
            let quoted = |code: &str| {
                text.match_indices(code).any(|(at, _)| {
                    text[..at].ends_with("<Code>") && text[at + code.len()..].starts_with("</Code>")
                })
            };
            if let Some(code) = codes.iter().copied().find(|code| quoted(code)) {
                return Some(code);
            }
        }
        cause = e.source();
    }
    None
}

fn describe(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidKey => "the object store refused the key",
        ErrorKind::Unsupported => "the object store does not support this operation",
        ErrorKind::ConfigInvalid => {
            "not found: does the bucket exist? (check the bucket name, region and endpoint)"
        }
        ErrorKind::PermissionDenied => {
            "access refused (check the credentials and the bucket policy)"
        }
        ErrorKind::Unavailable => "the object store cannot be reached or failed",
        ErrorKind::Timeout => "the object store did not answer in time",
        ErrorKind::TooLarge => "the object store refused the item as too large",
        ErrorKind::StorageFull => "the object store is full",
        _ => "the object store failed",
    }
}

/// The kind of an error and whether a retry may succeed.
pub(crate) fn classify(err: &object_store::Error) -> (ErrorKind, bool) {
    use object_store::Error as E;
    match err {
        E::InvalidPath { .. } => (ErrorKind::InvalidKey, false),
        E::NotSupported { .. } | E::NotImplemented { .. } => (ErrorKind::Unsupported, false),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            (ErrorKind::PermissionDenied, false)
        }
        E::UnknownConfigurationKey { .. } => (ErrorKind::ConfigInvalid, false),
        // Operations that expect no object report a missing one only when the bucket (or
        // container) itself is missing.
        E::NotFound { .. } => (ErrorKind::ConfigInvalid, false),
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => {
            (ErrorKind::Other, false)
        }
        E::JoinError { .. } => (ErrorKind::Other, true),
        E::Generic { source, .. } => classify_source(source.as_ref()),
        _ => (ErrorKind::Other, false),
    }
}

/// Classifies the source of a generic error: a network fault by its [`HttpError`] kind, a
/// server answer by its status code; anything else is taken as a temporary fault.
fn classify_source(source: &(dyn StdError + Send + Sync + 'static)) -> (ErrorKind, bool) {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(source);
    while let Some(e) = cause {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Timeout => (ErrorKind::Timeout, true),
                HttpErrorKind::Decode => (ErrorKind::Other, true),
                _ => (ErrorKind::Unavailable, true),
            };
        }
        cause = e.source();
    }
    let text = source.to_string();
    match status_in(&text) {
        Some(408) => (ErrorKind::Timeout, true),
        // A listing of a bucket that does not exist.
        Some(404) => (ErrorKind::ConfigInvalid, false),
        Some(413) => (ErrorKind::TooLarge, false),
        Some(429) => (ErrorKind::Unavailable, true),
        Some(507) => (ErrorKind::StorageFull, true),
        Some(500..=599) => (ErrorKind::Unavailable, true),
        Some(400..=499) => (ErrorKind::Other, false),
        _ if text.contains("EntityTooLarge") => (ErrorKind::TooLarge, false),
        _ => (ErrorKind::Other, true),
    }
}

/// Whether an error says that the object is absent (and not the whole bucket).
pub(crate) fn is_absent(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. }) && !is_missing_bucket(err)
}

/// What object_store's message of a failed request puts before the status, which the
/// answer's body follows.
const STATUS_MARK: &str = "status code: ";

/// The HTTP status code in object_store's message of a failed request
/// (`… Server returned non-2xx status code: 503 Service Unavailable: …`).
pub(crate) fn status_in(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once(STATUS_MARK)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: message.to_owned().into(),
        }
    }

    #[test]
    fn kinds() {
        let cases = [
            (
                generic("Server returned non-2xx status code: 503 Service Unavailable: x"),
                ErrorKind::Unavailable,
                true,
            ),
            (
                generic("Server returned non-2xx status code: 400 Bad Request: x"),
                ErrorKind::Other,
                false,
            ),
            (generic("something odd"), ErrorKind::Other, true),
            (
                object_store::Error::PermissionDenied {
                    path: "p".into(),
                    source: "no".into(),
                },
                ErrorKind::PermissionDenied,
                false,
            ),
            (
                object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(HttpError::new(
                        HttpErrorKind::Connect,
                        std::io::Error::other("refused"),
                    )),
                },
                ErrorKind::Unavailable,
                true,
            ),
        ];
        for (err, kind, temporary) in cases {
            let text = err.to_string();
            assert_eq!(classify(&err), (kind, temporary), "{text}");
            let converted = convert("s3", "get", "a/b", err);
            assert_eq!(converted.kind(), kind);
            assert_eq!(converted.is_temporary(), temporary);
            assert!(converted.to_string().starts_with("s3 get \"a/b\": "));
        }
    }

    #[test]
    fn refused_credentials_concern_the_whole_store_and_a_policy_does_not() {
        let denied = |body: &str| object_store::Error::PermissionDenied {
            path: "p".into(),
            source: format!("Server returned non-2xx status code: 403 Forbidden: {body}").into(),
        };
        let whole = |err| convert("s3", "get", "a/b", err).is_whole_store();
        for code in CREDENTIAL_CODES {
            let body = format!("<Error><Code>{code}</Code></Error>");
            let err = convert("s3", "get", "a/b", denied(&body));
            assert!(err.is_whole_store(), "{code}");
            assert_eq!(err.kind(), ErrorKind::PermissionDenied);
            let told = format!("does not accept the credentials ({code})");
            assert!(err.to_string().contains(&told), "{err}");
        }
        assert!(whole(object_store::Error::Unauthenticated {
            path: "p".into(),
            source: "no".into(),
        }));
        assert!(!whole(denied("<Error><Code>AccessDenied</Code></Error>")));
        // A path that holds a code, even as the body gives it, is not the code.
        assert!(!whole(object_store::Error::PermissionDenied {
            path: "p/cachette/<Code>ExpiredToken</Code>-1f/func_code".into(),
            source: "Error performing GET p/cachette/<Code>ExpiredToken</Code>-1f/func_code - \
                     Server returned non-2xx status code: 403 Forbidden: \
                     <Error><Code>AccessDenied</Code></Error>"
                .into(),
        }));
        // Nor is a signature that does not match, which may concern one key's path.
        assert!(!whole(denied(
            "<Error><Code>SignatureDoesNotMatch</Code></Error>"
        )));
        // An expired token comes with a 400, as a generic error: a refusal all the same.
        let expired = convert(
            "s3",
            "get",
            "a/b",
            generic(
                "Server returned non-2xx status code: 400 Bad Request: \
                 <Error><Code>ExpiredToken</Code></Error>",
            ),
        );
        assert!(expired.is_whole_store());
        assert_eq!(expired.kind(), ErrorKind::PermissionDenied);
        assert!(!whole(generic(
            "Server returned non-2xx status code: 503 Service Unavailable: x"
        )));
    }

    /// A miss on a key whose path holds `NoSuchBucket` (a function named so) is a miss, not a
    /// missing bucket; the code `NoSuchBucket` in the answer is one.
    #[test]
    fn a_missing_bucket_is_told_by_its_code_not_by_a_path() {
        let not_found = |path: &str, body: &str| object_store::Error::NotFound {
            path: path.to_owned(),
            source: format!(
                "Error performing GET http://s3/b/{path} in 2ms - \
                 Server returned non-2xx status code: 404 Not Found: {body}"
            )
            .into(),
        };
        let path = "p/cachette/NoSuchBucket-1f/func_code";
        let miss = not_found(
            path,
            "<Error><Code>NoSuchKey</Code><Key>p/cachette/NoSuchBucket-1f/func_code</Key></Error>",
        );
        assert!(is_absent(&miss), "{miss}");
        assert!(!convert("s3", "get", "a/b", miss).is_whole_store());
        // Nor does a path holding the code as the body gives it make one.
        let tricky = "p/cachette/<Code>NoSuchBucket</Code>/x";
        let miss = not_found(
            tricky,
            "<Error><Code>NoSuchKey</Code><Key>p/cachette/&lt;Code&gt;NoSuchBucket\
             &lt;/Code&gt;/x</Key></Error>",
        );
        assert!(is_absent(&miss), "{miss}");
        for path in [path, "p/cachette/f-1f/00ff"] {
            let missing = not_found(
                path,
                "<Error><Code>NoSuchBucket</Code><BucketName>b</BucketName></Error>",
            );
            assert!(!is_absent(&missing), "{missing}");
            let err = convert("s3", "get", "a/b", missing);
            assert!(err.is_whole_store());
            assert_eq!(err.kind(), ErrorKind::ConfigInvalid);
            assert!(err.to_string().contains("does the bucket exist"), "{err}");
        }
    }
}
