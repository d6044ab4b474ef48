//! Errors of the core and of backends.
//!
//! Backends report failures as [`BackendError`]: one struct with an [`ErrorKind`], the backend's
//! scheme, the operation, the key, a message, an optional source and a temporary/permanent bit.
//! A retry layer reads the bit; a miss is never an error (`Ok(None)`).

use std::fmt;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a backend operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The key is not acceptable to the backend (escapes the location, empty, NUL, …).
    InvalidKey,
    /// The backend does not offer this operation (see [`Capabilities`](crate::plugin::Capabilities)).
    Unsupported,
    /// The backend's configuration is wrong (bad URL, missing bucket, …).
    ConfigInvalid,
    /// The backend refused access.
    PermissionDenied,
    /// The store is full (disk full, quota, out of memory on the server).
    StorageFull,
    /// The backend cannot be reached or is not answering.
    Unavailable,
    /// The operation timed out.
    Timeout,
    /// The item is larger than the backend accepts.
    TooLarge,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// A short, stable name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidKey => "invalid key",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::ConfigInvalid => "invalid configuration",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::StorageFull => "storage full",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Other => "error",
        }
    }

    /// Whether errors of this kind are usually transient (worth a retry).
    pub fn is_usually_temporary(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of a storage backend. One pointer wide: every result of a backend operation
/// carries room for it, and is moved through each layer of a read.
#[derive(Debug)]
pub struct BackendError(Box<Details>);

/// What a [`BackendError`] says.
#[derive(Debug)]
struct Details {
    kind: ErrorKind,
    message: String,
    backend: &'static str,
    operation: &'static str,
    key: Option<String>,
    temporary: bool,
    whole_store: bool,
    source: Option<BoxError>,
}

impl BackendError {
    /// A new error of `kind` with a message. Temporary if the kind usually is.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BackendError(Box::new(Details {
            kind,
            message: message.into(),
            backend: "",
            operation: "",
            key: None,
            temporary: kind.is_usually_temporary(),
            whole_store: false,
            source: None,
        }))
    }

    /// Sets the backend scheme (`"fs"`, `"s3"`, `"redis"`, …).
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.0.backend = backend;
        self
    }

    /// Sets the operation (`"get"`, `"put"`, …).
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.0.operation = operation;
        self
    }

    /// Sets the key the operation was about.
    pub fn with_key(mut self, key: impl fmt::Display) -> Self {
        self.0.key = Some(key.to_string());
        self
    }

    /// Sets the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// Marks the error as temporary (a retry may succeed) or permanent.
    pub fn set_temporary(mut self, temporary: bool) -> Self {
        self.0.temporary = temporary;
        self
    }

    /// Marks the error as one the store gives every operation for now, whatever its key (a
    /// store the backend refuses to use as it is configured, such as a local index that other
    /// users may write): the memory's circuit breaker then opens at its first such error, with
    /// one warning, instead of after `breaker_threshold` of them. Not for errors about one item
    /// (another user's file that this one may not read), which would make the memory skip a
    /// store whose other items it can use.
    pub fn set_whole_store(mut self, whole_store: bool) -> Self {
        self.0.whole_store = whole_store;
        self
    }

    /// Whether the store gives this error to every operation for now (see
    /// [`set_whole_store`](Self::set_whole_store)).
    pub fn is_whole_store(&self) -> bool {
        self.0.whole_store
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whether a retry may succeed.
    pub fn is_temporary(&self) -> bool {
        self.0.temporary
    }

    /// The backend scheme, if set.
    pub fn backend(&self) -> &'static str {
        self.0.backend
    }

    /// The operation, if set.
    pub fn operation(&self) -> &'static str {
        self.0.operation
    }

    /// The key, if set.
    pub fn key(&self) -> Option<&str> {
        self.0.key.as_deref()
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Builds an error from an I/O error, mapping its kind.
    pub fn from_io(err: std::io::Error, message: impl Into<String>) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::PermissionDenied | Io::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
            Io::StorageFull | Io::QuotaExceeded => ErrorKind::StorageFull,
            Io::TimedOut => ErrorKind::Timeout,
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::NetworkDown
            | Io::Interrupted
            | Io::WouldBlock => ErrorKind::Unavailable,
            Io::FileTooLarge => ErrorKind::TooLarge,
            Io::InvalidFilename => ErrorKind::InvalidKey,
            _ => ErrorKind::Other,
        };
        BackendError::new(kind, message).with_source(err)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.backend.is_empty() {
            write!(f, "{}", self.0.backend)?;
            if !self.0.operation.is_empty() {
                write!(f, " {}", self.0.operation)?;
            }
            if let Some(key) = &self.0.key {
                write!(f, " {key:?}")?;
            }
            f.write_str(": ")?;
        }
        write!(f, "{}: {}", self.0.kind, self.0.message)?;
        if let Some(source) = &self.0.source {
            write!(f, ": {source}")?;
        }
        if self.0.temporary {
            f.write_str(" (temporary)")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Why a stored entry could not be read. The messages quote what the entry holds, escaped
/// (control characters, terminal escapes among them, are shown as escapes) and cut short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The item does not start with the entry magic: it is not a Cachette entry.
    #[error("not a cachette entry (bad magic)")]
    Foreign,
    /// The entry was written by a format version this library does not read.
    #[error("unsupported entry format version {0}")]
    UnsupportedVersion(u16),
    /// The item is shorter than its header says.
    #[error("truncated entry: {}", crate::report::untrusted_within(.0, 1000))]
    Truncated(String),
    /// A checksum does not match.
    #[error("corrupted entry: {}", crate::report::untrusted_within(.0, 1000))]
    Corrupted(String),
    /// The entry was signed with another key, or not signed while signing is required.
    #[error("entry signature refused: {}", crate::report::untrusted_within(.0, 1000))]
    BadSignature(String),
    /// The metadata or payload could not be decoded.
    #[error("cannot decode entry: {}", crate::report::untrusted_within(.0, 1000))]
    Decode(String),
    /// The entry was written by other code than the reader's (another name, code hash or
    /// version of the function): for that reader it is a miss, not damage.
    #[error("entry of other code: {}", crate::report::untrusted_within(.0, 1000))]
    OtherCode(String),
}

/// The error type of the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A backend operation failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A stored entry is unreadable.
    #[error("{key}: {source}")]
    Entry {
        /// The key of the entry.
        key: String,
        /// What is wrong with it.
        #[source]
        source: EntryError,
    },
    /// A value could not be serialized or deserialized.
    #[error("serialization: {0}")]
    Codec(String),
    /// Hashing an argument failed.
    #[error("hashing an argument: {0}")]
    Hash(#[from] cachette_hashing::HashError),
    /// A shelved result does not exist (any more).
    #[error(
        "Non-existing cache value (may have been cleared).\nItem {key} does not exist in {location}"
    )]
    NotFound {
        /// The location of the store.
        location: String,
        /// The key of the missing entry.
        key: String,
    },
    /// An argument given to the library is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A configuration (URL, config file, environment) is invalid.
    #[error("configuration: {0}")]
    Config(String),
}

/// A `Result` whose error defaults to the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a fallible call (`try_call_with` and the other `try_` methods of
/// [`MemorizedFunc`](crate::MemorizedFunc)) failed: its function returned an error, or, in
/// [strict mode](crate::MemoryBuilder::strict), the store failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The function returned this error. It is not stored.
    #[error(transparent)]
    Function(E),
    /// The store failed (strict mode only): it could not be read or written, an entry was
    /// unusable, or the arguments or the output could not be hashed or serialized. The
    /// function's output, if it was computed, is dropped.
    #[error("the cache failed: {0}")]
    Store(#[source] Error),
}

impl<E> CallError<E> {
    /// The function's error as it is, and a store error converted into `E`: for functions
    /// whose error type can hold a [`Error`] (`anyhow::Error`, `Box<dyn Error>`, or a type with
    /// `From<cachette::Error>`).
    pub fn into_inner(self) -> E
    where
        E: From<Error>,
    {
        match self {
            CallError::Function(e) => e,
            CallError::Store(e) => E::from(e),
        }
    }

    /// The store's error, if that is why the call failed.
    pub fn store_error(&self) -> Option<&Error> {
        match self {
            CallError::Function(_) => None,
            CallError::Store(e) => Some(e),
        }
    }
}

impl CallError<std::convert::Infallible> {
    /// The store's error of a call whose function cannot fail.
    pub fn into_store_error(self) -> Error {
        match self {
            CallError::Function(never) => match never {},
            CallError::Store(e) => e,
        }
    }
}
