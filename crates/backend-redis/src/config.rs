//! [`RedisConfig`]: the serializable configuration of the Redis backend, and its URLs.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cachette_core::ByteSize;
use cachette_core::plugin::{BackendConfig, BackendError, DynBackend, ErrorKind};
use serde::{Deserialize, Deserializer, Serialize};

use crate::SCHEME;
use crate::backend::RedisBackend;
use crate::location::{normalize, redact, userinfo_end};

const MIB: u64 = 1024 * 1024;

/// Default namespace: the prefix of every Redis key the backend writes.
pub const DEFAULT_PREFIX: &str = "cachette";
/// Default size above which an item is stored in chunks: 4 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * MIB;
/// The largest chunk size: Redis refuses strings above 512 MB.
pub const MAX_CHUNK_SIZE: u64 = 512 * MIB;
/// Default time allowed to open a connection: 2 s.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time allowed for an answer to one command: 5 s.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default lifetime of chunks that are being written or were just replaced: 5 min.
pub const DEFAULT_CHUNK_GRACE: Duration = Duration::from_secs(300);
/// Default largest item: 64 GiB.
pub const DEFAULT_MAX_ITEM_SIZE: u64 = 64 * 1024 * MIB;
/// Default time during which a command that the server refuses for now (`BUSY`, `LOADING`,
/// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`) is retried: 3 s.
pub const DEFAULT_RETRY_BUSY: Duration = Duration::from_secs(3);
/// The longest `retry_busy_ms` accepted: 1 min.
pub const MAX_RETRY_BUSY: Duration = Duration::from_secs(60);
/// The longest `default_ttl_secs` and `chunk_grace_secs` accepted: 100 years, as the core bounds
/// its own durations. (Redis refuses an expiry above `i64::MAX` ms, or whose end overflows.)
const MAX_EXPIRY_SECS: u64 = 100 * 365 * 24 * 3600;

/// The query parameters a URL may carry (the field names of [`RedisConfig`]).
pub(crate) const URL_PARAMS: &[&str] = &[
    "prefix",
    "chunk_size",
    "connection_timeout_ms",
    "response_timeout_ms",
    "default_ttl_secs",
    "chunk_grace_secs",
    "access_tracking",
    "max_item_size",
    "retry_busy_ms",
];

/// How the backend learns when an item was last read with `record_access` (a hit), for
/// [`reduce_size`](cachette_core::Memory::reduce_size). Other reads never count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessTracking {
    /// `idletime` unless the server evicts with an LFU `maxmemory-policy`, then `stored`. The
    /// policy is read once with `CONFIG GET` (when the server refuses that command, listing
    /// switches to `stored` as soon as `OBJECT IDLETIME` says the policy is LFU).
    #[default]
    Auto,
    /// Redis's own idle time (`OBJECT IDLETIME`, whole seconds) of the item's record, which a
    /// hit resets with a `TOUCH` sent in the same round trip as its `GET`, and which no other
    /// read uses. Unavailable under an LFU policy.
    #[serde(rename = "idletime")]
    IdleTime,
    /// A time stamp in the item's record, written by every hit in the same round trip as the
    /// read (by a tiny script). Works under every policy; costs a write per hit.
    Stored,
}

impl AccessTracking {
    /// The name used in URLs and configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTracking::Auto => "auto",
            AccessTracking::IdleTime => "idletime",
            AccessTracking::Stored => "stored",
        }
    }
}

impl FromStr for AccessTracking {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AccessTracking::Auto),
            "idletime" | "idle_time" => Ok(AccessTracking::IdleTime),
            "stored" => Ok(AccessTracking::Stored),
            _ => Err(invalid(format!(
                "access_tracking must be auto, idletime or stored, not {s:?}"
            ))),
        }
    }
}

/// Configuration of the Redis backend: what a config file's `[backend]` section with
/// `type = "redis"` holds, and what a `redis://`, `rediss://` or `redis+cluster://` URL parses
/// into.
///
/// Every field but `urls` has a default (given on each field). Unknown fields are refused, so
/// that a typo fails loudly. Passwords are part of the URLs; they are left out of `Debug`
/// output and of the backend's printed location.
///
/// ```
/// use std::time::Duration;
/// use cachette_redis::RedisConfig;
/// let config = RedisConfig::new("redis://127.0.0.1:6379/0")
///     .with_prefix("team-a")
///     .with_default_ttl(Some(Duration::from_secs(3600)));
/// assert_eq!(
///     config.to_url(),
///     "redis://127.0.0.1:6379/0?prefix=team-a&default_ttl_secs=3600"
/// );
/// assert_eq!(RedisConfig::from_url(&config.to_url()).unwrap(), config);
///
/// let cluster = RedisConfig::from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000/").unwrap();
/// assert!(cluster.cluster);
/// assert_eq!(cluster.urls, ["redis://10.0.0.1:7000/", "redis://10.0.0.2:7000/"]);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server: one `redis://[user:password@]host[:port][/db]` URL (`rediss://` for TLS); or,
    /// with `cluster`, the URLs of some nodes of the cluster (any reachable one is enough to
    /// discover the others). A config file may give a single string. Required.
    #[serde(deserialize_with = "one_or_many")]
    pub urls: Vec<String>,
    /// Whether `urls` are nodes of a Redis Cluster. Default `false`.
    pub cluster: bool,
    /// The namespace: every Redis key starts with `<prefix>:`, so that several caches (or other
    /// data) share one Redis. Not empty, no `{` or `}`. Default `"cachette"`.
    pub prefix: String,
    /// Items larger than this many bytes are stored in chunks of this size (at most 512 MiB,
    /// Redis's limit on one string). A config file may give a size string (`"4M"`). Default
    /// 4 MiB.
    #[serde(deserialize_with = "byte_size")]
    pub chunk_size: u64,
    /// How long opening a connection may take, in milliseconds. Default 2000.
    pub connection_timeout_ms: u64,
    /// How long the answer to one command may take, in milliseconds. Default 5000.
    pub response_timeout_ms: u64,
    /// An expiry, in seconds, for items written without one: at least 1, at most 100 years.
    /// Default: none (items written without an expiry stay until deleted or evicted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ttl_secs: Option<u64>,
    /// How long chunks being written, and chunks just replaced by another write, are kept, in
    /// seconds: it must exceed the time it takes to transfer the largest item. Chunks of a
    /// writer that died expire after it. At least 1, at most 100 years. Default 300.
    pub chunk_grace_secs: u64,
    /// How the last access of items is tracked. Default `auto`.
    pub access_tracking: AccessTracking,
    /// The largest item written or read, in bytes: larger writes are refused, and so are
    /// reads of items whose manifest claims more (a corrupted or forged item). Items are also
    /// limited to [`MAX_CHUNKS`](crate::MAX_CHUNKS) chunks of `chunk_size`. A config file may
    /// give a size string (`"64G"`). Default 64 GiB.
    #[serde(deserialize_with = "byte_size")]
    pub max_item_size: u64,
    /// How long, in milliseconds, a command that the server refuses for now is retried
    /// (`BUSY`: a script runs; `LOADING`: a restart; `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`,
    /// and on a cluster `MOVED`/`ASK` beyond the client's own redirections: resharding and
    /// failovers), with jittered exponential backoff, before the operation fails with a
    /// temporary error. At most 60000; 0 retries nothing. Default 3000.
    pub retry_busy_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            urls: Vec::new(),
            cluster: false,
            prefix: DEFAULT_PREFIX.to_owned(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            connection_timeout_ms: DEFAULT_CONNECTION_TIMEOUT.as_millis() as u64,
            response_timeout_ms: DEFAULT_RESPONSE_TIMEOUT.as_millis() as u64,
            default_ttl_secs: None,
            chunk_grace_secs: DEFAULT_CHUNK_GRACE.as_secs(),
            access_tracking: AccessTracking::Auto,
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            retry_busy_ms: DEFAULT_RETRY_BUSY.as_millis() as u64,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("chunk_size", &self.chunk_size)
            .field("connection_timeout_ms", &self.connection_timeout_ms)
            .field("response_timeout_ms", &self.response_timeout_ms)
            .field("default_ttl_secs", &self.default_ttl_secs)
            .field("chunk_grace_secs", &self.chunk_grace_secs)
            .field("access_tracking", &self.access_tracking)
            .field("max_item_size", &self.max_item_size)
            .field("retry_busy_ms", &self.retry_busy_ms)
            .finish()
    }
}

/// The configuration's URL without its password: [`RedisConfig::location`].
impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())
    }
}

impl RedisConfig {
    /// A single server, with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            urls: vec![url.into()],
            ..RedisConfig::default()
        }
    }

    /// A Redis Cluster reached through some of its nodes, with the defaults.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisConfig {
            urls: urls.into_iter().map(Into::into).collect(),
            cluster: true,
            ..RedisConfig::default()
        }
    }

    /// Sets the namespace (see [`RedisConfig::prefix`]).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the chunk size in bytes (see [`RedisConfig::chunk_size`]).
    pub fn with_chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Sets the connection timeout.
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout_ms = millis(timeout);
        self
    }

    /// Sets the response timeout of one command.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout_ms = millis(timeout);
        self
    }

    /// Sets the expiry of items written without one (whole seconds, rounded up).
    pub fn with_default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.default_ttl_secs = ttl.map(whole_secs);
        self
    }

    /// Sets the lifetime of chunks in transit (whole seconds, rounded up).
    pub fn with_chunk_grace(mut self, grace: Duration) -> Self {
        self.chunk_grace_secs = whole_secs(grace);
        self
    }

    /// Sets the largest item, in bytes (see [`RedisConfig::max_item_size`]).
    pub fn with_max_item_size(mut self, bytes: u64) -> Self {
        self.max_item_size = bytes;
        self
    }

    /// Sets how accesses are tracked.
    pub fn with_access_tracking(mut self, tracking: AccessTracking) -> Self {
        self.access_tracking = tracking;
        self
    }

    /// Sets how long commands refused for now are retried (see [`RedisConfig::retry_busy_ms`];
    /// whole milliseconds, `Duration::ZERO` retries nothing).
    pub fn with_retry_busy(mut self, budget: Duration) -> Self {
        self.retry_busy_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// How long commands refused for now are retried.
    pub fn retry_busy(&self) -> Duration {
        Duration::from_millis(self.retry_busy_ms)
    }

    /// The connection timeout.
    pub fn connection_timeout(&self) -> Duration {
        Duration::from_millis(self.connection_timeout_ms)
    }

    /// The response timeout.
    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }

    /// The expiry of items written without one.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.default_ttl_secs.map(Duration::from_secs)
    }

    /// The lifetime of chunks in transit.
    pub fn chunk_grace(&self) -> Duration {
        Duration::from_secs(self.chunk_grace_secs)
    }

    /// Parses a URL:
    ///
    /// - `redis://[user:password@]host[:port][/db][?param=value&…]`, `rediss://…` for TLS;
    /// - `redis+cluster://[user:password@]host:port,host:port,…[/][?param=value&…]` (and
    ///   `rediss+cluster://`) for a Redis Cluster.
    ///
    /// The parameters are the fields of [`RedisConfig`] (`prefix`, `chunk_size` (a size string
    /// such as `4M`), `connection_timeout_ms`, `response_timeout_ms`, `default_ttl_secs`,
    /// `chunk_grace_secs`, `access_tracking`, `max_item_size` (a size string),
    /// `retry_busy_ms`). A `#fragment` is kept on the server URLs (the `redis` crate reads
    /// `#insecure` on `rediss://` URLs). A password should be percent-encoded; one that is not
    /// (holding `/`, `?`, `#` or `@`) is read up to the URL's last `@` when the rest of the URL
    /// could not hold that `@`, and percent-encoded in the server URLs.
    pub fn from_url(location: &str) -> Result<Self, BackendError> {
        let (scheme, after) = location
            .split_once("://")
            .ok_or_else(|| invalid(format!("{:?} is not a Redis URL", redact(location))))?;
        // The user information first: a password that is not percent-encoded may hold `/`,
        // `?`, `#` and `@` (see `crate::location`).
        let (userinfo, rest) = match userinfo_end(after) {
            Some(at) => after.split_at(at + 1),
            None => ("", after),
        };
        let (rest, fragment) = match rest.split_once('#') {
            Some((rest, fragment)) => (rest, format!("#{fragment}")),
            None => (rest, String::new()),
        };
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut config = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "rediss" => {
                RedisConfig::new(normalize(&format!("{scheme}://{userinfo}{base}{fragment}")))
            }
            "redis+cluster" | "rediss+cluster" => {
                let node_scheme = &scheme[..scheme.len() - "+cluster".len()];
                let (hosts, path) = match base.find('/') {
                    Some(i) => base.split_at(i),
                    None => (base, ""),
                };
                let mut urls = Vec::new();
                for host in hosts.split(',') {
                    if host.is_empty() {
                        return Err(invalid(format!(
                            "{:?}: empty node in the list of cluster nodes",
                            redact(location)
                        )));
                    }
                    urls.push(normalize(&format!(
                        "{node_scheme}://{userinfo}{host}{path}{fragment}"
                    )));
                }
                RedisConfig::cluster(urls)
            }
            _ => {
                return Err(invalid(format!(
                    "{:?} is not a Redis URL (redis://, rediss://, redis+cluster://)",
                    redact(location)
                )));
            }
        };
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            config.set_param(&name, &value)?;
        }
        Ok(config)
    }

    fn set_param(&mut self, name: &str, value: &str) -> Result<(), BackendError> {
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| invalid(format!("{name} must be a whole number, not {v:?}")))
        };
        match name {
            "prefix" => self.prefix = value.to_owned(),
            "chunk_size" => {
                self.chunk_size = value
                    .parse::<ByteSize>()
                    .map_err(|e| invalid(format!("chunk_size: {e}")))?
                    .0;
            }
            "connection_timeout_ms" => self.connection_timeout_ms = number(value)?,
            "response_timeout_ms" => self.response_timeout_ms = number(value)?,
            "default_ttl_secs" => self.default_ttl_secs = Some(number(value)?),
            "chunk_grace_secs" => self.chunk_grace_secs = number(value)?,
            "access_tracking" => self.access_tracking = value.parse()?,
            "retry_busy_ms" => self.retry_busy_ms = number(value)?,
            "max_item_size" => {
                self.max_item_size = value
                    .parse::<ByteSize>()
                    .map_err(|e| invalid(format!("max_item_size: {e}")))?
                    .0;
            }
            _ => {
                return Err(invalid(format!(
                    "unknown parameter {name:?} in a Redis URL (known: {})",
                    URL_PARAMS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The URL of this configuration, which [`RedisConfig::from_url`] parses back (parameters
    /// at their default are left out). It holds the password, if the server URLs do
    /// (percent-encoded): it is for handing the configuration over, never for printing. Print
    /// [`RedisConfig::location`] (or the configuration itself: its `Display` and `Debug` forms
    /// hide the password).
    pub fn to_url(&self) -> String {
        self.url_with(normalize)
    }

    /// [`RedisConfig::to_url`] without the password: where the store is, for printing. Also
    /// the configuration's `Display` form, and the backend's location (which printed
    /// `MemorizedResult`s show).
    pub fn location(&self) -> String {
        self.url_with(redact)
    }

    fn url_with(&self, show: impl Fn(&str) -> String) -> String {
        let mut url = if self.cluster && !self.urls.is_empty() {
            cluster_url(&self.urls, &show)
        } else {
            self.urls.first().map(|u| show(u)).unwrap_or_default()
        };
        let (head, fragment) = match url.split_once('#') {
            Some((head, fragment)) => (head.to_owned(), format!("#{fragment}")),
            None => (url.clone(), String::new()),
        };
        let defaults = RedisConfig::default();
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if self.prefix != defaults.prefix {
            query.append_pair("prefix", &self.prefix);
        }
        if self.chunk_size != defaults.chunk_size {
            query.append_pair("chunk_size", &self.chunk_size.to_string());
        }
        if self.connection_timeout_ms != defaults.connection_timeout_ms {
            query.append_pair(
                "connection_timeout_ms",
                &self.connection_timeout_ms.to_string(),
            );
        }
        if self.response_timeout_ms != defaults.response_timeout_ms {
            query.append_pair("response_timeout_ms", &self.response_timeout_ms.to_string());
        }
        if let Some(ttl) = self.default_ttl_secs {
            query.append_pair("default_ttl_secs", &ttl.to_string());
        }
        if self.chunk_grace_secs != defaults.chunk_grace_secs {
            query.append_pair("chunk_grace_secs", &self.chunk_grace_secs.to_string());
        }
        if self.access_tracking != defaults.access_tracking {
            query.append_pair("access_tracking", self.access_tracking.as_str());
        }
        if self.max_item_size != defaults.max_item_size {
            query.append_pair("max_item_size", &self.max_item_size.to_string());
        }
        if self.retry_busy_ms != defaults.retry_busy_ms {
            query.append_pair("retry_busy_ms", &self.retry_busy_ms.to_string());
        }
        let query = query.finish();
        if !query.is_empty() {
            url = format!("{head}?{query}{fragment}");
        }
        url
    }

    /// Checks the configuration, as [`RedisConfig::build_backend`] does before connecting.
    pub fn validate(&self) -> Result<(), BackendError> {
        match (self.urls.len(), self.cluster) {
            (0, _) => return Err(invalid("no Redis server URL given (`urls`)")),
            (n, false) if n > 1 => {
                return Err(invalid(format!(
                    "{n} URLs given for a single Redis server: set `cluster = true` for a Redis Cluster"
                )));
            }
            _ => {}
        }
        for url in &self.urls {
            check_server_url(url)?;
        }
        if self.prefix.is_empty() {
            return Err(invalid("the key prefix must not be empty"));
        }
        if self.prefix.contains(['{', '}']) {
            return Err(invalid(format!(
                "the key prefix {:?} must not contain '{{' or '}}' (they are hash tags in Redis Cluster)",
                self.prefix
            )));
        }
        if !(1..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(invalid(format!(
                "chunk_size must be between 1 byte and 512 MiB, not {}",
                self.chunk_size
            )));
        }
        if self.connection_timeout_ms == 0 || self.response_timeout_ms == 0 {
            return Err(invalid("timeouts must be at least 1 ms"));
        }
        for (key, secs) in [
            ("chunk_grace_secs", Some(self.chunk_grace_secs)),
            ("default_ttl_secs", self.default_ttl_secs),
        ] {
            match secs {
                Some(0) => return Err(invalid(format!("{key} must be at least 1"))),
                Some(secs) if secs > MAX_EXPIRY_SECS => {
                    return Err(invalid(format!(
                        "{key} must be at most {MAX_EXPIRY_SECS} (100 years), not {secs}"
                    )));
                }
                _ => {}
            }
        }
        if self.max_item_size == 0 {
            return Err(invalid("max_item_size must be at least 1 byte"));
        }
        if self.retry_busy() > MAX_RETRY_BUSY {
            return Err(invalid(format!(
                "retry_busy_ms must be at most {} (one minute), not {}",
                MAX_RETRY_BUSY.as_millis(),
                self.retry_busy_ms
            )));
        }
        Ok(())
    }

    /// Builds the backend. No connection is opened yet: the first operation connects, so that a
    /// `Memory` can be built while Redis is down (its calls then run uncached, with a warning).
    pub fn build_backend(&self) -> Result<RedisBackend, BackendError> {
        self.validate()?;
        RedisBackend::new(self.clone())
    }
}

impl BackendConfig for RedisConfig {
    fn build(&self) -> Result<DynBackend, BackendError> {
        Ok(Arc::new(self.build_backend()?))
    }
}

fn check_server_url(url: &str) -> Result<(), BackendError> {
    let normal = normalize(url);
    let parsed = url::Url::parse(&normal)
        .map_err(|e| invalid(format!("invalid Redis server URL {:?}: {e}", redact(url))))?;
    match parsed.scheme() {
        "redis" | "rediss" => {}
        other => {
            return Err(invalid(format!(
                "invalid Redis server URL {:?}: the scheme must be redis:// or rediss://, not {other}://",
                redact(url)
            )));
        }
    }
    redis::IntoConnectionInfo::into_connection_info(normal.as_str()).map_err(|e| {
        invalid(format!("invalid Redis server URL {:?}", redact(url))).with_source(e)
    })?;
    Ok(())
}

/// `redis+cluster://user@h1:p1,h2:p2/path` from node URLs.
fn cluster_url(urls: &[String], show: &impl Fn(&str) -> String) -> String {
    let first = show(&urls[0]);
    let (scheme, rest) = first.split_once("://").unwrap_or(("redis", &first));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let userinfo = authority.rfind('@').map_or("", |i| &authority[..=i]);
    let hosts: Vec<String> = urls
        .iter()
        .map(|u| {
            let u = normalize(u);
            let rest = u.split_once("://").map_or(u.as_str(), |(_, r)| r);
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            authority
                .rfind('@')
                .map_or(authority, |i| &authority[i + 1..])
                .to_owned()
        })
        .collect();
    format!("{scheme}+cluster://{userinfo}{}{tail}", hosts.join(","))
}

/// Whole seconds, rounded up (saturating: `Duration::MAX` gives `u64::MAX`, which
/// [`RedisConfig::validate`] refuses).
fn whole_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(crate) fn invalid(message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::ConfigInvalid, message).with_backend(SCHEME)
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    })
}

fn byte_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(text) => text
            .parse::<ByteSize>()
            .map(|b| b.0)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_round_trip() {
        let url = "rediss+cluster://u:p@a:1,b:2/?prefix=x#insecure";
        let config = RedisConfig::from_url(url).unwrap();
        assert_eq!(
            config.urls,
            ["rediss://u:p@a:1/#insecure", "rediss://u:p@b:2/#insecure"]
        );
        assert_eq!(config.to_url(), url);
        assert_eq!(
            config.location(),
            "rediss+cluster://u:***@a:1,b:2/?prefix=x#insecure"
        );
    }

    /// 100 years in seconds, the longest expiry and chunk grace accepted.
    const HUNDRED_YEARS: u64 = 100 * 365 * 24 * 3600;

    /// The message of the validation error of `config`, which must be a `ConfigInvalid` one.
    fn refusal(config: &RedisConfig) -> String {
        let err = config.validate().expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::ConfigInvalid, "{err}");
        err.message().to_owned()
    }

    #[test]
    fn builder_durations_of_duration_max_are_refused_naming_the_key() {
        let base = RedisConfig::new("redis://127.0.0.1:6379/0");
        for huge in [Duration::MAX, Duration::new(u64::MAX, 1)] {
            let config = base.clone().with_default_ttl(Some(huge));
            assert_eq!(config.default_ttl_secs, Some(u64::MAX));
            let message = refusal(&config);
            assert!(
                message.contains("default_ttl_secs") && message.contains("100 years"),
                "{message}"
            );

            let config = base.clone().with_chunk_grace(huge);
            assert_eq!(config.chunk_grace_secs, u64::MAX);
            let message = refusal(&config);
            assert!(
                message.contains("chunk_grace_secs") && message.contains("100 years"),
                "{message}"
            );
        }
        // Rounded up to whole seconds, up to 100 years included.
        let config = base
            .with_default_ttl(Some(Duration::new(HUNDRED_YEARS - 1, 1)))
            .with_chunk_grace(Duration::from_secs(HUNDRED_YEARS));
        assert_eq!(config.default_ttl_secs, Some(HUNDRED_YEARS));
        assert_eq!(config.chunk_grace_secs, HUNDRED_YEARS);
        config.validate().unwrap();
    }

    #[test]
    fn expiries_above_100_years_are_refused_from_a_url() {
        for key in ["default_ttl_secs", "chunk_grace_secs"] {
            let ok = format!("redis://127.0.0.1:6379/0?{key}={HUNDRED_YEARS}");
            RedisConfig::from_url(&ok).unwrap().validate().unwrap();
            for value in [HUNDRED_YEARS + 1, 9_300_000_000_000_000, u64::MAX] {
                let url = format!("redis://127.0.0.1:6379/0?{key}={value}");
                let message = refusal(&RedisConfig::from_url(&url).unwrap());
                assert!(
                    message.contains(key) && message.contains("100 years"),
                    "{message}"
                );
                // The path a `Memory` takes: the registered URL parser, then `build`.
                let Err(err) = cachette_core::plugin::config_from_url(&url)
                    .unwrap()
                    .build()
                else {
                    panic!("{url} accepted");
                };
                assert_eq!(err.kind(), ErrorKind::ConfigInvalid, "{err}");
                assert!(err.message().contains(key), "{err}");
            }
        }
    }

    #[test]
    fn expiries_above_100_years_are_refused_from_a_config_file() {
        for key in ["default_ttl_secs", "chunk_grace_secs"] {
            let ok: RedisConfig = toml::from_str(&format!(
                "urls = \"redis://127.0.0.1/\"\n{key} = {HUNDRED_YEARS}"
            ))
            .unwrap();
            ok.validate().unwrap();
            for value in [HUNDRED_YEARS + 1, i64::MAX as u64] {
                let config: RedisConfig =
                    toml::from_str(&format!("urls = \"redis://127.0.0.1/\"\n{key} = {value}"))
                        .unwrap();
                let message = refusal(&config);
                assert!(
                    message.contains(key) && message.contains("100 years"),
                    "{message}"
                );
            }
        }
    }
}
