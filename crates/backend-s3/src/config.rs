//! [`S3Config`]: the serializable configuration of the S3 backend, and its `s3://` URLs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cachette_core::ByteSize;
use cachette_core::plugin::{BackendConfig, BackendError, DynBackend, ErrorKind, Prefix};
use serde::{Deserialize, Serialize};

use crate::SCHEME;
use crate::backend::S3Backend;

/// Default size above which an item is uploaded in parts: 64 MiB.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 64 * MIB;
/// Default size of one uploaded part: 16 MiB.
pub const DEFAULT_MULTIPART_PART_SIZE: u64 = 16 * MIB;
/// The smallest part S3 accepts (except for the last part of an upload): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part S3 accepts: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;

const MIB: u64 = 1024 * 1024;

/// Configuration of the S3 backend: what a config file's `[backend]` section with
/// `type = "s3"` holds, and what an `s3://bucket/prefix?…` URL parses into.
///
/// Every field but `bucket` has a default (given on each field). Unknown fields are refused, so
/// that a typo fails loudly. Credentials left out are taken from the environment (`AWS_*`
/// variables, web identity, container or instance credentials), like every other setting
/// object_store reads from `AWS_*`; a value set here wins over the environment.
///
/// ```
/// use cachette_s3::S3Config;
/// let config = S3Config::new("my-bucket")
///     .with_prefix("team/cache")
///     .with_endpoint("http://127.0.0.1:9000")
///     .with_allow_http(true);
/// assert_eq!(
///     config.to_url(),
///     "s3://my-bucket/team/cache?endpoint=http%3A%2F%2F127.0.0.1%3A9000&allow_http=true"
/// );
/// assert_eq!(S3Config::from_url(&config.to_url()).unwrap(), config);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket. Required.
    pub bucket: String,
    /// The key prefix every item is stored under, as `/`-separated segments; empty (the
    /// default) for the whole bucket.
    pub prefix: String,
    /// The region. Default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The endpoint of an S3-compatible server (`http://127.0.0.1:9000`). Default:
    /// `AWS_ENDPOINT`, else AWS itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Allow plain-HTTP endpoints. Default `false` (or `AWS_ALLOW_HTTP`).
    pub allow_http: bool,
    /// Address the bucket as `https://bucket.endpoint/key` rather than
    /// `https://endpoint/bucket/key`. Default `false` (path style), which is what most
    /// S3-compatible servers expect.
    pub virtual_hosted_style: bool,
    /// The access key id. Default: `AWS_ACCESS_KEY_ID`. With an `endpoint` and no credentials
    /// anywhere (neither here nor in the environment), requests are signed with placeholder
    /// credentials, which local S3-compatible servers used for tests accept; other servers
    /// answer "access denied".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The secret access key. Default: `AWS_SECRET_ACCESS_KEY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// The session token of temporary credentials. Default: `AWS_SESSION_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// Send unsigned requests, for anonymous access to public buckets. Default `false`.
    pub skip_signature: bool,
    /// Use conditional requests (`If-None-Match: *`) for atomic create-if-absent. Default
    /// `true`. Turn it off for S3-compatible servers that reject them; create-if-absent then
    /// falls back to a check followed by a write, which is not atomic.
    pub conditional_put: bool,
    /// Items larger than this many bytes are uploaded in parts. Default 64 MiB.
    pub multipart_threshold: u64,
    /// The size of one uploaded part, in bytes, from 5 MiB to 5 GiB. Default 16 MiB. It grows
    /// for huge items, so that an upload never has more than 10 000 parts.
    pub multipart_part_size: u64,
    /// How many parts of one item are uploaded at once. Default 8.
    pub multipart_concurrency: usize,
    /// Seconds allowed to connect to the server (1 s to 100 years). Default 3.
    pub connect_timeout_secs: u64,
    /// Seconds allowed for one whole request, body included (1 s to 100
    /// years). Default 300.
    pub request_timeout_secs: u64,
    /// Seconds a transfer may stall before it fails (at most 100 years); 0 for no limit.
    /// Default 30.
    pub read_timeout_secs: u64,
    /// How many times a failed request (a connection error, a timeout of a safe request, a 5xx
    /// answer such as S3's `503 SlowDown`, a 429 or a 408) is retried, with jittered
    /// exponential backoff. Default 5.
    pub max_retries: usize,
    /// No retry starts later than this many seconds after the first attempt (at most 100
    /// years). Default 10.
    pub retry_timeout_secs: u64,
    /// The first pause before a retry, in milliseconds (at least 1). Each next pause is drawn at
    /// random between this and twice the previous one ("decorrelated jitter"). Default 100.
    pub retry_init_backoff_ms: u64,
    /// The longest pause before a retry, in milliseconds (at least `retry_init_backoff_ms`, at
    /// most 3600000: one hour). Default 3000.
    pub retry_max_backoff_ms: u64,
    /// How `reduce_size` learns which entries were read last (see the crate docs): `"log"`
    /// (the default) batches the reads of each process into access logs, written at most once
    /// per `access_granularity_secs`; `"none"` writes nothing, and an item's last access is its
    /// last write (reads recorded by other processes still count). `true` and `false` are
    /// accepted for `"log"` and `"none"`.
    pub access_tracking: AccessTracking,
    /// The period of the access logs: each process writes at most one access log per this many
    /// seconds (more only when its batch outgrows one log), and records one key's reads at most
    /// once per period (at most 100 years). 0 writes the reads of each hit soon after it.
    /// Default 60.
    pub access_granularity_secs: u64,
    /// Access logs older than this many seconds are deleted by `sweep` (which `reduce_size`,
    /// `clear` and housekeeping run), and not read by listings: reads older than this are
    /// forgotten. From 1 s to 100 years. Default 604800 (7 days).
    pub access_log_retention_secs: u64,
    /// A listing reads at most this many access logs, the newest first. Default 10000.
    pub access_log_max_objects: usize,
    /// A listing reads at most this many bytes of access logs, the newest first. Default
    /// 268435456 (256 MiB).
    pub access_log_max_bytes: u64,
    /// How many listing requests run at once (1 to 256): listings split a large prefix by the
    /// first hex digit of the entries' names (see the crate docs). 1 lists everything in one
    /// sequential listing. Default 16.
    pub list_concurrency: usize,
}

/// How reads are recorded for `reduce_size` (see [`S3Config::access_tracking`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AccessTracking {
    /// Each process batches the keys it reads and writes them in one access log object per
    /// period; listings merge the logs.
    #[default]
    Log,
    /// Nothing is written: an item's last access is its last write, or a read recorded by
    /// another process.
    None,
}

impl AccessTracking {
    /// The name of the mode in config files and URLs: `"log"` or `"none"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTracking::Log => "log",
            AccessTracking::None => "none",
        }
    }
}

impl fmt::Display for AccessTracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AccessTracking {
    type Err = BackendError;

    /// `log` or `none`; also `true`/`false` (and `1`/`0`, `yes`/`no`, `on`/`off`), the values
    /// of the older boolean setting.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "log" => Ok(AccessTracking::Log),
            "none" => Ok(AccessTracking::None),
            other => match parse_bool("access_tracking", other) {
                Ok(true) => Ok(AccessTracking::Log),
                Ok(false) => Ok(AccessTracking::None),
                Err(_) => Err(invalid(format!(
                    "access_tracking={s:?}: expected \"log\" or \"none\""
                ))),
            },
        }
    }
}

impl Serialize for AccessTracking {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AccessTracking {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = AccessTracking;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"log\" or \"none\" (or a boolean)")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<AccessTracking, E> {
                Ok(if v {
                    AccessTracking::Log
                } else {
                    AccessTracking::None
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AccessTracking, E> {
                match v {
                    "log" => Ok(AccessTracking::Log),
                    "none" => Ok(AccessTracking::None),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            allow_http: false,
            virtual_hosted_style: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            skip_signature: false,
            conditional_put: true,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            multipart_part_size: DEFAULT_MULTIPART_PART_SIZE,
            multipart_concurrency: 8,
            connect_timeout_secs: 3,
            request_timeout_secs: 300,
            read_timeout_secs: 30,
            max_retries: 5,
            retry_timeout_secs: 10,
            retry_init_backoff_ms: 100,
            retry_max_backoff_ms: 3000,
            access_tracking: AccessTracking::Log,
            access_granularity_secs: 60,
            access_log_retention_secs: 7 * 24 * 3600,
            access_log_max_objects: 10_000,
            access_log_max_bytes: 256 * MIB,
            list_concurrency: 16,
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_deref().map(without_userinfo))
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &secret(&self.secret_access_key))
            .field("session_token", &secret(&self.session_token))
            .field("skip_signature", &self.skip_signature)
            .field("conditional_put", &self.conditional_put)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("multipart_part_size", &self.multipart_part_size)
            .field("multipart_concurrency", &self.multipart_concurrency)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("read_timeout_secs", &self.read_timeout_secs)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout_secs", &self.retry_timeout_secs)
            .field("retry_init_backoff_ms", &self.retry_init_backoff_ms)
            .field("retry_max_backoff_ms", &self.retry_max_backoff_ms)
            .field("access_tracking", &self.access_tracking)
            .field("access_granularity_secs", &self.access_granularity_secs)
            .field("access_log_retention_secs", &self.access_log_retention_secs)
            .field("access_log_max_objects", &self.access_log_max_objects)
            .field("access_log_max_bytes", &self.access_log_max_bytes)
            .field("list_concurrency", &self.list_concurrency)
            .finish()
    }
}

fn invalid(message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::ConfigInvalid, message).with_backend(SCHEME)
}

impl S3Config {
    /// A configuration of `bucket` with every other field at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            ..S3Config::default()
        }
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the endpoint of an S3-compatible server.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Allows (or not) plain-HTTP endpoints.
    pub fn with_allow_http(mut self, allow_http: bool) -> Self {
        self.allow_http = allow_http;
        self
    }

    /// Sets static credentials.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret_access_key.into());
        self
    }

    /// Sets the multipart threshold and part size, in bytes.
    pub fn with_multipart(mut self, threshold: u64, part_size: u64) -> Self {
        self.multipart_threshold = threshold;
        self.multipart_part_size = part_size;
        self
    }

    /// The retries of the S3 client: `max_retries`, `retry_timeout_secs` and the backoff
    /// between `retry_init_backoff_ms` and `retry_max_backoff_ms` (object_store's
    /// [`RetryConfig`](object_store::RetryConfig), which retries 5xx, 429 and 408 answers and
    /// connection errors with decorrelated jitter).
    pub fn retry_config(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: Duration::from_secs(self.retry_timeout_secs),
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(self.retry_init_backoff_ms.max(1)),
                max_backoff: Duration::from_millis(
                    self.retry_max_backoff_ms
                        .max(self.retry_init_backoff_ms.max(1)),
                ),
                base: 2.0,
            },
        }
    }

    /// Builds the backend (see [`S3Backend::from_config`]).
    pub fn build_backend(&self) -> crate::Result<S3Backend> {
        S3Backend::from_config(self)
    }

    /// Checks the values that do not need the environment. [`S3Backend::from_config`] calls
    /// it; bad values are reported there, not by the setters.
    pub fn validate(&self) -> crate::Result<()> {
        if self.bucket.is_empty() {
            return Err(invalid("the bucket is missing"));
        }
        if !self
            .bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            return Err(invalid(format!(
                "{:?} is not a valid bucket name (letters, digits, '-', '.' and '_' only)",
                self.bucket
            )));
        }
        Prefix::new(self.prefix.clone())
            .map_err(|e| invalid(format!("invalid prefix: {}", e.message())))?;
        if let Some(endpoint) = &self.endpoint {
            let shown = without_userinfo(endpoint);
            let refuse_credentials = || {
                invalid(format!(
                    "the endpoint {shown:?} holds credentials (user:password@); they do not belong in an endpoint, which is printed: use access_key_id and secret_access_key, or the AWS_* environment"
                ))
            };
            if shown != *endpoint {
                return Err(refuse_credentials());
            }
            let url = url::Url::parse(endpoint)
                .map_err(|e| invalid(format!("invalid endpoint {shown:?}: {e}")))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(refuse_credentials());
            }
            let endpoint = &shown;
            match url.scheme() {
                "https" => {}
                "http" if self.allow_http || env_allows_http() => {}
                "http" => {
                    return Err(invalid(format!(
                        "the endpoint {endpoint:?} is plain HTTP: set allow_http (`allow_http=true` in a URL) to use it"
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "the endpoint {endpoint:?} must be http:// or https://, not {other}://"
                    )));
                }
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(invalid(
                "access_key_id and secret_access_key must be given together",
            ));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.multipart_part_size) {
            return Err(invalid(format!(
                "multipart_part_size must be between 5 MiB and 5 GiB, got {} bytes",
                self.multipart_part_size
            )));
        }
        if self.multipart_concurrency == 0 {
            return Err(invalid("multipart_concurrency must be at least 1"));
        }
        if self.connect_timeout_secs == 0 || self.request_timeout_secs == 0 {
            return Err(invalid(
                "connect_timeout_secs and request_timeout_secs must be at least 1",
            ));
        }
        // Longer durations overflow the clocks they are added to (and mean nothing anyway).
        for (key, secs) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("read_timeout_secs", self.read_timeout_secs),
            ("retry_timeout_secs", self.retry_timeout_secs),
            ("access_granularity_secs", self.access_granularity_secs),
            ("access_log_retention_secs", self.access_log_retention_secs),
        ] {
            if secs > MAX_DURATION_SECS {
                return Err(invalid(format!(
                    "{key} must be at most {MAX_DURATION_SECS} (100 years), got {secs}"
                )));
            }
        }
        if self.retry_init_backoff_ms == 0 || self.retry_max_backoff_ms < self.retry_init_backoff_ms
        {
            return Err(invalid(format!(
                "retry_init_backoff_ms must be at least 1 and at most retry_max_backoff_ms, got {} and {}",
                self.retry_init_backoff_ms, self.retry_max_backoff_ms
            )));
        }
        if self.retry_max_backoff_ms > MAX_BACKOFF_MS {
            return Err(invalid(format!(
                "retry_max_backoff_ms must be at most {MAX_BACKOFF_MS} (one hour), got {}",
                self.retry_max_backoff_ms
            )));
        }
        if !(1..=MAX_LIST_CONCURRENCY).contains(&self.list_concurrency) {
            return Err(invalid(format!(
                "list_concurrency must be between 1 and {MAX_LIST_CONCURRENCY}, got {}",
                self.list_concurrency
            )));
        }
        if self.access_log_retention_secs == 0 {
            return Err(invalid("access_log_retention_secs must be at least 1"));
        }
        Ok(())
    }

    /// Parses `s3://bucket/prefix?key=value&…` (or `s3a://`). The query takes the fields of
    /// this struct by name, except credentials, which do not belong in a URL:
    /// `endpoint`, `region`, `allow_http`, `virtual_hosted_style`, `skip_signature`,
    /// `conditional_put`, `multipart_threshold` and `multipart_part_size` (bytes, or sizes
    /// like `64M`), `multipart_concurrency`, `connect_timeout_secs`, `request_timeout_secs`,
    /// `read_timeout_secs`, `max_retries`, `retry_timeout_secs`, `retry_init_backoff_ms`,
    /// `retry_max_backoff_ms`, `access_tracking` (`log` or `none`), `access_granularity_secs`,
    /// `access_log_retention_secs`, `access_log_max_objects`, `access_log_max_bytes` (bytes or
    /// a size), `list_concurrency`. Percent-escapes in the prefix are decoded.
    ///
    /// Errors never repeat credentials: a URL is shown without its `user:password@` part and
    /// without its query.
    pub fn from_url(input: &str) -> crate::Result<S3Config> {
        // What error messages show of the URL.
        let shown = shown_url(input);
        let location = shown.as_str();
        let url = url::Url::parse(input)
            .map_err(|e| invalid(format!("cannot parse {location:?} as a URL: {e}")))?;
        if !matches!(url.scheme(), "s3" | "s3a") {
            return Err(invalid(format!(
                "{location:?} is not an s3:// or s3a:// URL"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials do not belong in a URL: use the AWS_* environment or a config file",
            ));
        }
        if url.port().is_some() {
            return Err(invalid(format!(
                "{location:?} has a port: give the server as `?endpoint=http://host:port`"
            )));
        }
        if url.fragment().is_some() {
            return Err(invalid(format!(
                "{location:?} has a fragment ('#'); escape it as %23 in a prefix"
            )));
        }
        let bucket = url.host_str().unwrap_or_default();
        if bucket.is_empty() {
            return Err(invalid(format!("{location:?} names no bucket")));
        }
        let mut config = S3Config::new(bucket);
        config.prefix = percent_decode(url.path().trim_matches('/'))?;
        for (key, value) in url.query_pairs() {
            config.set(&key, &value)?;
        }
        config.validate()?;
        Ok(config)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), BackendError> {
        let flag = |v: &str| parse_bool(key, v);
        let number = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| invalid(format!("{key}={v:?}: expected a whole number")))
        };
        let size = |v: &str| {
            v.parse::<ByteSize>()
                .map(|b| b.0)
                .map_err(|e| invalid(format!("{key}={v:?}: {e}")))
        };
        match key {
            "endpoint" => self.endpoint = Some(value.to_owned()),
            "region" => self.region = Some(value.to_owned()),
            "allow_http" => self.allow_http = flag(value)?,
            "virtual_hosted_style" => self.virtual_hosted_style = flag(value)?,
            "skip_signature" => self.skip_signature = flag(value)?,
            "conditional_put" => self.conditional_put = flag(value)?,
            "multipart_threshold" => self.multipart_threshold = size(value)?,
            "multipart_part_size" => self.multipart_part_size = size(value)?,
            "multipart_concurrency" => self.multipart_concurrency = number(value)? as usize,
            "connect_timeout_secs" => self.connect_timeout_secs = number(value)?,
            "request_timeout_secs" => self.request_timeout_secs = number(value)?,
            "read_timeout_secs" => self.read_timeout_secs = number(value)?,
            "max_retries" => self.max_retries = number(value)? as usize,
            "retry_timeout_secs" => self.retry_timeout_secs = number(value)?,
            "retry_init_backoff_ms" => self.retry_init_backoff_ms = number(value)?,
            "retry_max_backoff_ms" => self.retry_max_backoff_ms = number(value)?,
            "access_tracking" => self.access_tracking = value.parse()?,
            "access_granularity_secs" => self.access_granularity_secs = number(value)?,
            "access_log_retention_secs" => self.access_log_retention_secs = number(value)?,
            "access_log_max_objects" => self.access_log_max_objects = number(value)? as usize,
            "access_log_max_bytes" => self.access_log_max_bytes = size(value)?,
            "list_concurrency" => self.list_concurrency = number(value)? as usize,
            "access_key_id" | "secret_access_key" | "session_token" => {
                return Err(invalid(format!(
                    "{key} does not belong in a URL (URLs are printed): use the AWS_* environment or a config file"
                )));
            }
            other => {
                return Err(invalid(format!(
                    "unknown URL parameter {other:?} (known: endpoint, region, allow_http, virtual_hosted_style, skip_signature, conditional_put, multipart_threshold, multipart_part_size, multipart_concurrency, connect_timeout_secs, request_timeout_secs, read_timeout_secs, max_retries, retry_timeout_secs, retry_init_backoff_ms, retry_max_backoff_ms, access_tracking, access_granularity_secs, access_log_retention_secs, access_log_max_objects, access_log_max_bytes, list_concurrency)"
                )));
            }
        }
        Ok(())
    }

    /// The URL of the store: `s3://bucket/prefix`, with the settings that say where the items
    /// are and how to reach them (`endpoint`, `region`, `allow_http`, `virtual_hosted_style`,
    /// `skip_signature`) as query parameters. Never holds credentials. [`S3Config::from_url`]
    /// parses it back; it is what `MemorizedResult`s print. An endpoint's `user:password@`
    /// part (which [`validate`](Self::validate) refuses) is left out.
    pub fn to_url(&self) -> String {
        let mut url = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            url.push('/');
            url.push_str(&percent_encode_path(self.prefix.trim_matches('/')));
        }
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(endpoint) = &self.endpoint {
            query.append_pair("endpoint", &without_userinfo(endpoint));
        }
        if let Some(region) = &self.region {
            query.append_pair("region", region);
        }
        if self.allow_http {
            query.append_pair("allow_http", "true");
        }
        if self.virtual_hosted_style {
            query.append_pair("virtual_hosted_style", "true");
        }
        if self.skip_signature {
            query.append_pair("skip_signature", "true");
        }
        let query = query.finish();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        url
    }
}

/// The most listing requests in flight that [`S3Config::list_concurrency`] allows.
pub const MAX_LIST_CONCURRENCY: usize = 256;

/// The longest duration a `*_secs` setting may give: 100 years, as for the core's options.
const MAX_DURATION_SECS: u64 = 100 * 365 * 24 * 3600;

/// The longest pause before a retry that [`S3Config::retry_max_backoff_ms`] allows: one hour.
const MAX_BACKOFF_MS: u64 = 3600 * 1000;

/// A URL without the `user:password@` part of its authority, as it may be shown: everything
/// before the last `@` ahead of the query is replaced by `***`. Secret keys hold `/` and `+`,
/// which end an authority for a URL parser, so the cut does not trust the parser (a path
/// holding `@` is cut too: this is only for showing).
pub(crate) fn without_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// A URL as error messages show it: without `user:password@`, and with its query (which may
/// hold credentials given by mistake) and fragment cut to `?…` and `#…`.
fn shown_url(url: &str) -> String {
    let url = without_userinfo(url);
    let (base, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?…"),
        None => (url.as_str(), ""),
    };
    match base.split_once('#') {
        Some((base, _)) => format!("{base}#…{query}"),
        None => format!("{base}{query}"),
    }
}

fn env_allows_http() -> bool {
    std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| parse_bool("AWS_ALLOW_HTTP", &v).unwrap_or(false))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, BackendError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(format!("{key}={value:?}: expected true or false"))),
    }
}

/// Escapes every byte of a prefix but unreserved characters and `/`.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, BackendError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("bad percent-escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{s:?} does not decode to UTF-8")))
}

impl BackendConfig for S3Config {
    fn build(&self) -> Result<DynBackend, BackendError> {
        Ok(Arc::new(S3Backend::from_config(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let c = S3Config::from_url(
            "s3://bucket/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-3&allow_http=true&multipart_threshold=8M",
        )
        .unwrap();
        assert_eq!(c.bucket, "bucket");
        assert_eq!(c.prefix, "a/b");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.region.as_deref(), Some("eu-west-3"));
        assert!(c.allow_http);
        assert_eq!(c.multipart_threshold, 8 * MIB);
        let root = S3Config::from_url("s3a://bucket").unwrap();
        assert_eq!(root.prefix, "");
        assert_eq!(root, S3Config::new("bucket"));
    }

    #[test]
    fn refuses_bad_urls() {
        for (url, why) in [
            ("s3:///prefix", "no bucket"),
            ("gs://bucket/p", "not an s3"),
            ("s3://bucket/p?nope=1", "unknown URL parameter"),
            ("s3://bucket/p?access_key_id=x", "does not belong"),
            ("s3://key:secret@bucket/p", "credentials"),
            ("s3://bucket/p?endpoint=http://h:1", "allow_http"),
            ("s3://bucket/a//b", "invalid prefix"),
            ("s3://bucket/p?allow_http=maybe", "true or false"),
            ("s3://bucket/p?multipart_part_size=1M", "5 MiB"),
        ] {
            if url.ends_with("endpoint=http://h:1") && env_allows_http() {
                continue;
            }
            let err = S3Config::from_url(url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConfigInvalid, "{url}");
            assert!(err.to_string().contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn urls_round_trip() {
        let mut c = S3Config::new("b")
            .with_prefix("odd prefix/with%percent/#hash?q&é")
            .with_endpoint("http://127.0.0.1:9000/?x=1&y=2")
            .with_region("us-west-2")
            .with_allow_http(true);
        c.virtual_hosted_style = true;
        c.skip_signature = true;
        let url = c.to_url();
        assert!(!url.contains(' '), "{url}");
        assert_eq!(S3Config::from_url(&url).unwrap(), c, "{url}");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = S3Config::new("b")
            .with_credentials("AKIDEXAMPLE", "very-secret")
            .with_endpoint("https://user:pass/word@s3.example.com/x");
        c.session_token = Some("token-secret".to_owned());
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        for secret in ["very-secret", "token-secret", "pass/word"] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(!c.to_url().contains(secret));
        }
        assert!(shown.contains("https://***@s3.example.com/x"), "{shown}");
    }

    #[test]
    fn shown_urls_leave_credentials_out() {
        for (url, shown) in [
            ("s3://bucket/p", "s3://bucket/p"),
            ("s3://k:s/ec+ret@bucket/p", "s3://***@bucket/p"),
            ("s3://bucket/p?secret_access_key=x", "s3://bucket/p?…"),
            ("s3://k:s@bucket/p?q=1#f", "s3://***@bucket/p?…"),
            ("s3://bucket/p#frag", "s3://bucket/p#…"),
            ("k:s@host", "***@host"),
        ] {
            assert_eq!(shown_url(url), shown, "{url}");
        }
        assert_eq!(without_userinfo("http://h:1/p?a=b@c"), "http://h:1/p?a=b@c");
    }

    #[test]
    fn new_settings_parse_from_urls() {
        let c = S3Config::from_url(
            "s3://b/p?access_tracking=none&list_concurrency=64&retry_init_backoff_ms=50&retry_max_backoff_ms=800&access_log_retention_secs=3600&access_log_max_objects=10&access_log_max_bytes=1M",
        )
        .unwrap();
        assert_eq!(c.access_tracking, AccessTracking::None);
        assert_eq!(c.list_concurrency, 64);
        assert_eq!((c.retry_init_backoff_ms, c.retry_max_backoff_ms), (50, 800));
        assert_eq!(c.access_log_retention_secs, 3600);
        assert_eq!(
            (c.access_log_max_objects, c.access_log_max_bytes),
            (10, MIB)
        );
        for (value, mode) in [
            ("log", AccessTracking::Log),
            ("true", AccessTracking::Log),
            ("false", AccessTracking::None),
        ] {
            let c = S3Config::from_url(&format!("s3://b/p?access_tracking={value}")).unwrap();
            assert_eq!(c.access_tracking, mode);
        }
        for (url, why) in [
            ("s3://b/p?access_tracking=markers", "\"log\" or \"none\""),
            ("s3://b/p?list_concurrency=0", "list_concurrency"),
            ("s3://b/p?list_concurrency=257", "list_concurrency"),
            ("s3://b/p?retry_init_backoff_ms=0", "retry_init_backoff_ms"),
            (
                "s3://b/p?retry_init_backoff_ms=900&retry_max_backoff_ms=800",
                "at most",
            ),
            ("s3://b/p?access_log_retention_secs=0", "retention"),
        ] {
            let err = S3Config::from_url(url).unwrap_err();
            assert!(err.to_string().contains(why), "{url}: {err}");
        }
        let retry = S3Config::new("b").retry_config();
        assert_eq!(retry.max_retries, 5);
        assert_eq!(retry.retry_timeout, Duration::from_secs(10));
        assert_eq!(retry.backoff.max_backoff, Duration::from_secs(3));
    }

    #[test]
    fn refuses_durations_beyond_a_hundred_years() {
        let hundred_years = 100 * 365 * 24 * 3600;
        type Field = fn(&mut S3Config) -> &mut u64;
        let fields: [(&str, Field); 6] = [
            ("connect_timeout_secs", |c| &mut c.connect_timeout_secs),
            ("request_timeout_secs", |c| &mut c.request_timeout_secs),
            ("read_timeout_secs", |c| &mut c.read_timeout_secs),
            ("retry_timeout_secs", |c| &mut c.retry_timeout_secs),
            ("access_granularity_secs", |c| {
                &mut c.access_granularity_secs
            }),
            ("access_log_retention_secs", |c| {
                &mut c.access_log_retention_secs
            }),
        ];
        for (key, field) in fields {
            let mut c = S3Config::new("b");
            *field(&mut c) = hundred_years;
            c.validate().unwrap();
            for value in [hundred_years + 1, i64::MAX as u64, u64::MAX] {
                *field(&mut c) = value;
                let err = c.validate().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::ConfigInvalid, "{key}={value}");
                let shown = err.to_string();
                assert!(
                    shown.contains(key) && shown.contains("100 years"),
                    "{shown}"
                );
                let url = format!("s3://b/p?{key}={value}");
                let err = S3Config::from_url(&url).unwrap_err();
                assert!(err.to_string().contains(key), "{url}: {err}");
            }
        }
        let err = S3Config::from_url("s3://b/p?access_log_retention_secs=18446744073709551615")
            .unwrap_err();
        assert!(
            err.to_string().contains("access_log_retention_secs"),
            "{err}"
        );
    }

    #[test]
    fn refuses_backoffs_beyond_an_hour() {
        let mut c = S3Config::new("b");
        c.retry_max_backoff_ms = 3_600_000;
        c.validate().unwrap();
        for (init, max) in [
            (100, 3_600_001),
            (3_600_001, 3_600_001),
            (100, u64::MAX),
            (u64::MAX, u64::MAX),
        ] {
            c.retry_init_backoff_ms = init;
            c.retry_max_backoff_ms = max;
            let err = c.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConfigInvalid);
            let shown = err.to_string();
            assert!(
                shown.contains("retry_max_backoff_ms") && shown.contains("one hour"),
                "{init}, {max}: {shown}"
            );
        }
        let err = S3Config::from_url("s3://b/p?retry_max_backoff_ms=3600001").unwrap_err();
        assert!(err.to_string().contains("retry_max_backoff_ms"), "{err}");
    }
}
