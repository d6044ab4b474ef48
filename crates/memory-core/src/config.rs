//! Whole configurations of a [`Memory`](crate::Memory): read from a TOML file, overridden by the environment,
//! and shipped between machines.
//!
//! A [`MemoryConfig`] names the store (a URL, or a `[backend]` section tagged by `type`) and the
//! memory's options. It is what a config file holds, and it implements `Serialize` and
//! `Deserialize`, so that a coordinator can send its memory's configuration to workers on other
//! machines, which build the same `Memory` from it and see the same entries.
//!
//! ```toml
//! # cachette.toml
//! verbose = 1
//! mmap_mode = "r"
//! local_tier = "/var/cache/cachette"   # optional: the local disk in front of the bucket
//!
//! [retry]                # optional: retries of transient errors of the bucket
//! max_retries = 3
//!
//! [backend]
//! type = "s3"            # the backend's scheme, first; its other keys follow
//! bucket = "team-cache"
//! prefix = "pipelines"
//! ```
//!
//! The keys of the top level are the fields of [`MemoryConfig`]; those of `[backend]` are the
//! fields of the backend's own configuration type (`FsConfig`, `S3Config`, `RedisConfig`,
//! `InMemoryConfig`, or a custom backend's), and those of `[retry]` of
//! [`RetryPolicy`]. With `type` first in `[backend]`, errors name
//! the exact key (`backend.bucket`); otherwise they name the section.
//!
//! # Precedence
//!
//! [`Memory::from_config`](crate::Memory::from_config) and [`Memory::from_env`](crate::Memory::from_env) look in this order, first match first:
//!
//! 1. `CACHETTE_CONFIG`, a config file's path, replaces the file named in code;
//! 2. `CACHETTE_LOCATION`, a URL or path, replaces the store the file names (its `location` or
//!    `[backend]`), and keeps the file's other options; without any file (`CACHETTE_CONFIG`
//!    unset and the file named in code missing) it is the whole configuration;
//! 3. the file named in code.
//!
//! `CACHETTE_SIGNING_KEY`, if set, replaces the file's `signing_key` in all of these cases.
//!
//! An empty variable counts as unset. [`MemoryConfig::from_file`] and
//! [`MemoryConfig::from_toml`] read the environment not at all.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::layers::RetryPolicy;
use crate::options::Options;
use crate::registry::{self, BackendConfig, ConfigError};
use crate::signing::Secret;

/// The environment variable that names a config file, overriding the one named in code.
pub const CONFIG_ENV: &str = "CACHETTE_CONFIG";

/// The environment variable that names the store (a URL or path), overriding a config file's.
pub const LOCATION_ENV: &str = "CACHETTE_LOCATION";

/// The environment variable that holds the secret entries are signed with, overriding a config
/// file's `signing_key` (so that the secret need not be in the file). Every memory built
/// without a signing key in code reads it: `Memory::new`, `Memory::from_url`, the builder and
/// config files alike.
pub const SIGNING_KEY_ENV: &str = "CACHETTE_SIGNING_KEY";

/// The environment variable that holds the secrets of previous signing keys, comma-separated,
/// whose signatures are still accepted while keys are rotated.
pub const PREVIOUS_SIGNING_KEYS_ENV: &str = "CACHETTE_PREVIOUS_SIGNING_KEYS";

/// The environment variable that raises the verbosity of every memory built in the process
/// (`0` to `255`, as [`MemoryBuilder::verbose`](crate::MemoryBuilder::verbose)): a memory
/// prints at the larger of its own verbosity and this one, so that a run can be made talkative
/// without a rebuild. Any other value is an error at build time, not ignored.
pub const VERBOSE_ENV: &str = "CACHETTE_VERBOSE";

/// The whole configuration of a [`Memory`](crate::Memory): its store, its layers and its
/// [`Options`]. See the [module documentation](self) for the file format and the precedence of
/// the environment.
///
/// The store is either `location` (a URL or path, as
/// [`Memory::from_url`](crate::Memory::from_url) takes) or `backend` (a backend's own
/// configuration, tagged by `type`), not both. The options' keys sit at the top level of the
/// file, beside `location`. Unknown keys are errors.
#[derive(Clone)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// `false` builds a disabled memory: every call runs, nothing is stored (default `true`).
    pub enabled: bool,
    /// The store, as a URL or a path.
    pub location: Option<String>,
    /// The store, as a backend's configuration (`type = "file"`, `"s3"`, `"redis"`,
    /// `"memory"` or a custom backend's name).
    pub backend: Option<Box<dyn BackendConfig>>,
    /// A local tier in front of the store (a path or URL), as
    /// [`MemoryBuilder::local_tier`](crate::MemoryBuilder::local_tier).
    pub local_tier: Option<String>,
    /// Retries of the store's transient errors (`max_retries`, `initial_backoff_ms`,
    /// `max_backoff_ms`), as [`MemoryBuilder::retry`](crate::MemoryBuilder::retry); next to
    /// the store, inside the local tier.
    pub retry: Option<RetryPolicy>,
    /// The secret that signs and checks entries (at least 16 bytes), as
    /// [`MemoryBuilder::signing_key`](crate::MemoryBuilder::signing_key);
    /// `CACHETTE_SIGNING_KEY` overrides it. Keep a file that holds it readable only by its
    /// users.
    pub signing_key: Option<Secret>,
    /// Secrets of previous signing keys, whose signatures are still accepted while keys are
    /// rotated (see [`SigningKey::with_previous`](crate::SigningKey::with_previous));
    /// `CACHETTE_PREVIOUS_SIGNING_KEYS` (comma-separated) overrides it.
    pub previous_signing_keys: Vec<Secret>,
    /// How the memory behaves: the other top-level keys.
    pub options: Options,
    /// Where the configuration was read from, for errors.
    pub(crate) origin: Option<String>,
}

const NO_STORE: &str =
    "no store: set `location` (a URL or path) or a `[backend]` section, or CACHETTE_LOCATION";

impl Default for MemoryConfig {
    /// Enabled, with no store yet (building it fails until one is set).
    fn default() -> Self {
        MemoryConfig {
            enabled: true,
            location: None,
            backend: None,
            local_tier: None,
            retry: None,
            signing_key: None,
            previous_signing_keys: Vec::new(),
            options: Options::default(),
            origin: None,
        }
    }
}

/// The keys of a config file that are not [`Options`].
#[derive(Serialize)]
struct Repr<'a> {
    #[serde(skip_serializing_if = "is_true")]
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: &'a Option<String>,
    #[serde(flatten)]
    options: &'a Options,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_tier: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_key: &'a Option<Secret>,
    #[serde(skip_serializing_if = "<[Secret]>::is_empty")]
    previous_signing_keys: &'a [Secret],
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: &'a Option<RetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'a (dyn BackendConfig + 'static)>,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Serialize for MemoryConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        Repr {
            enabled: self.enabled,
            location: &self.location,
            options: &self.options,
            local_tier: &self.local_tier,
            signing_key: &self.signing_key,
            previous_signing_keys: &self.previous_signing_keys,
            retry: &self.retry,
            backend: self.backend.as_deref(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MemoryConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        MemoryConfig::from_table(table).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "key `{}`: {}", self.path, self.message)
        }
    }
}

/// Takes `key` out of `table` and deserializes it; its errors name `key` (and the path of keys
/// inside it).
fn take<T: serde::de::DeserializeOwned>(
    table: &mut toml::Table,
    key: &str,
) -> std::result::Result<Option<T>, ConfigError> {
    let Some(value) = table.remove(key) else {
        return Ok(None);
    };
    serde_path_to_error::deserialize(value)
        .map(Some)
        .map_err(|e| {
            let inner = e.path().to_string();
            ConfigError {
                path: if inner.is_empty() || inner == "." {
                    key.to_owned()
                } else {
                    format!("{key}.{inner}")
                },
                message: e.into_inner().to_string().trim_end().to_owned(),
            }
        })
}

impl MemoryConfig {
    /// A configuration of the store at `location` (a URL or path), with default options.
    pub fn from_url(location: impl Into<String>) -> MemoryConfig {
        MemoryConfig {
            location: Some(location.into()),
            ..MemoryConfig::default()
        }
    }

    /// A configuration of the store `backend` describes, with default options.
    pub fn from_backend(backend: Box<dyn BackendConfig>) -> MemoryConfig {
        MemoryConfig {
            backend: Some(backend),
            ..MemoryConfig::default()
        }
    }

    /// Reads a configuration from the table of a config file; errors give the key's path.
    fn from_table(mut table: toml::Table) -> std::result::Result<MemoryConfig, ConfigError> {
        let enabled = take::<bool>(&mut table, "enabled")?.unwrap_or(true);
        let location = take::<String>(&mut table, "location")?;
        let local_tier = take::<String>(&mut table, "local_tier")?;
        let retry = take::<RetryPolicy>(&mut table, "retry")?;
        let signing_key = take::<Secret>(&mut table, "signing_key")?;
        let previous_signing_keys =
            take::<Vec<Secret>>(&mut table, "previous_signing_keys")?.unwrap_or_default();
        let backend = match table.remove("backend") {
            None => None,
            Some(toml::Value::Table(section)) => Some(
                registry::config_from_table(section).map_err(|e| ConfigError {
                    path: if e.path.is_empty() || e.path == "." {
                        "backend".to_owned()
                    } else {
                        format!("backend.{}", e.path)
                    },
                    message: e.message,
                })?,
            ),
            Some(other) => {
                return Err(ConfigError {
                    path: "backend".into(),
                    message: format!(
                        "expected a table (a `[backend]` section), found {}",
                        other.type_str()
                    ),
                });
            }
        };
        let options: Options = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError {
                path: e.path().to_string(),
                message: e.into_inner().to_string().trim_end().to_owned(),
            })?;
        Ok(MemoryConfig {
            enabled,
            location,
            backend,
            local_tier,
            retry,
            signing_key,
            previous_signing_keys,
            options,
            origin: None,
        })
    }

    /// Reads a TOML config file. The environment is not consulted: see
    /// [`MemoryConfig::load`] for that.
    ///
    /// Errors name the file and, for a bad key or value, the key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<MemoryConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
        })?;
        MemoryConfig::from_toml(&text, &path.display().to_string())
    }

    /// Parses a configuration from TOML text; `origin` (a file name, say) is named in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<MemoryConfig> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::Config(format!("{origin}: {}", e.to_string().trim_end()))
        })?;
        let config =
            MemoryConfig::from_table(table).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        Ok(MemoryConfig {
            origin: Some(origin.to_owned()),
            ..config
        })
    }

    /// The configuration `path` holds, with the environment applied as the
    /// [module documentation](self) says: `CACHETTE_CONFIG` names another file, and
    /// `CACHETTE_LOCATION` replaces the store.
    pub fn load(path: impl AsRef<Path>) -> Result<MemoryConfig> {
        if let Some(file) = env_var(CONFIG_ENV) {
            return MemoryConfig::from_file(file).map(MemoryConfig::with_location_from_env);
        }
        let path = path.as_ref();
        if !path.exists()
            && let Some(location) = env_var(LOCATION_ENV)
        {
            return Ok(MemoryConfig::from_url(location).with_location_from_env());
        }
        MemoryConfig::from_file(path).map(MemoryConfig::with_location_from_env)
    }

    /// The configuration the environment gives, if any: the file `CACHETTE_CONFIG` names (with
    /// `CACHETTE_LOCATION` replacing its store), else the store `CACHETTE_LOCATION` names, else
    /// `None`.
    pub fn from_env() -> Result<Option<MemoryConfig>> {
        if let Some(path) = env_var(CONFIG_ENV) {
            return MemoryConfig::from_file(path)
                .map(MemoryConfig::with_location_from_env)
                .map(Some);
        }
        Ok(env_var(LOCATION_ENV).map(|l| MemoryConfig::from_url(l).with_location_from_env()))
    }

    /// This configuration, with its store replaced by `CACHETTE_LOCATION` and its signing key
    /// by `CACHETTE_SIGNING_KEY`, for those that are set.
    pub fn with_location_from_env(self) -> MemoryConfig {
        let mut config = self;
        if let Some(location) = env_var(LOCATION_ENV) {
            config.location = Some(location);
            config.backend = None;
        }
        if let Some(secret) = env_var(SIGNING_KEY_ENV) {
            config.signing_key = Some(Secret(secret));
        }
        if let Some(previous) = previous_keys_from_env() {
            config.previous_signing_keys = previous;
        }
        config
    }

    /// The configuration as TOML, as a config file would hold it.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Config(format!("cannot write as TOML: {e}")))
    }

    /// The configuration of the store: its `backend`, or the one its `location` names.
    pub fn backend_config(&self) -> Result<Box<dyn BackendConfig>> {
        self.check()?;
        match (&self.backend, &self.location) {
            (Some(backend), _) => Ok(backend.clone()),
            (None, Some(location)) => registry::config_from_url(location),
            (None, None) => Err(self.error(NO_STORE)),
        }
    }

    /// Checks what the builder cannot: one store, and one at all when enabled.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if self.location.is_some() && self.backend.is_some() {
            return Err(self.error("both `location` and `[backend]` name a store: keep one"));
        }
        if self.backend.is_none() && self.location.is_none() {
            return Err(self.error(NO_STORE));
        }
        self.options.validate().map_err(|e| self.error(&e))
    }

    /// A configuration error, naming where the configuration came from.
    fn error(&self, message: &str) -> Error {
        match &self.origin {
            Some(origin) => Error::Config(format!("{origin}: {message}")),
            None => Error::Config(message.to_owned()),
        }
    }
}

impl fmt::Debug for MemoryConfig {
    /// Secrets left out: passwords in URLs, signing keys (the backend's own configuration hides
    /// its secrets in its `Debug`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConfig")
            .field("enabled", &self.enabled)
            .field(
                "location",
                &self.location.as_deref().map(crate::report::redact_url),
            )
            .field("backend", &self.backend)
            .field(
                "local_tier",
                &self.local_tier.as_deref().map(crate::report::redact_url),
            )
            .field("retry", &self.retry)
            .field("signing_key", &self.signing_key)
            .field("previous_signing_keys", &self.previous_signing_keys.len())
            .field("options", &self.options)
            .finish()
    }
}

impl fmt::Display for MemoryConfig {
    /// The configuration as TOML, with its secrets hidden: passwords in URLs, and the values of
    /// keys that name a secret (`password`, `secret`, `token`, `signing_key`, `credentials`).
    /// [`to_toml`](Self::to_toml) gives them, to ship the configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = match toml::Table::try_from(self) {
            Ok(table) => table,
            Err(e) => return write!(f, "<cannot write as TOML: {e}>"),
        };
        match toml::to_string(&redact_table(table)) {
            Ok(text) => f.write_str(&text),
            Err(e) => write!(f, "<cannot write as TOML: {e}>"),
        }
    }
}

/// `table`, with the values of keys that name a secret hidden, and the passwords of URLs.
fn redact_table(table: toml::Table) -> toml::Table {
    const SECRET_WORDS: &[&str] = &["password", "secret", "token", "signing_key", "credential"];
    table
        .into_iter()
        .map(|(key, value)| {
            let lower = key.to_ascii_lowercase();
            let value = if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                toml::Value::String("<hidden>".into())
            } else {
                redact_value(value)
            };
            (key, value)
        })
        .collect()
}

fn redact_value(value: toml::Value) -> toml::Value {
    match value {
        toml::Value::String(s) => toml::Value::String(crate::report::redact_url(&s)),
        toml::Value::Table(t) => toml::Value::Table(redact_table(t)),
        toml::Value::Array(a) => toml::Value::Array(a.into_iter().map(redact_value).collect()),
        other => other,
    }
}

/// The secrets of `CACHETTE_PREVIOUS_SIGNING_KEYS`, if set.
pub(crate) fn previous_keys_from_env() -> Option<Vec<Secret>> {
    env_var(PREVIOUS_SIGNING_KEYS_ENV).map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Secret(s.to_owned()))
            .collect()
    })
}

/// The verbosity `CACHETTE_VERBOSE` asks for, if set.
pub(crate) fn verbose_from_env() -> crate::Result<Option<u8>> {
    let Some(value) = env_var(VERBOSE_ENV) else {
        return Ok(None);
    };
    value.trim().parse::<u8>().map(Some).map_err(|_| {
        crate::Error::Config(format!(
            "{VERBOSE_ENV}={}: expected a verbosity from 0 to 255",
            crate::report::untrusted_within(&value, 100)
        ))
    })
}

/// The value of an environment variable, `None` when unset, empty or not Unicode.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::MmapMode;

    #[test]
    fn mmap_modes_read_and_write_by_their_joblib_names() {
        let c =
            MemoryConfig::from_toml("location = \"memory://x\"\nmmap_mode = \"r+\"", "t").unwrap();
        assert_eq!(c.options.mmap_mode, MmapMode::ReadWrite);
        assert!(c.to_toml().unwrap().contains("mmap_mode = \"r+\""));
        let c =
            MemoryConfig::from_toml("location = \"memory://x\"\nmmap_mode = \"read-only\"", "t")
                .unwrap();
        assert_eq!(c.options.mmap_mode, MmapMode::ReadOnly);
    }

    #[test]
    fn errors_name_the_origin_and_the_key() {
        let err = MemoryConfig::from_toml("location = \"memory://x\"\nverbos = 1\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("my.toml") && err.contains("verbos"), "{err}");
        let err =
            MemoryConfig::from_toml("location = \"memory://x\"\nverbose = \"loud\"\n", "my.toml")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("my.toml") && err.contains("key `verbose`"),
            "{err}"
        );
        let err = MemoryConfig::from_toml("mmap_mode = \"rw\"\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key `mmap_mode`") && err.contains("unknown mmap mode"),
            "{err}"
        );
        let err =
            MemoryConfig::from_toml("[backend]\ntype = \"memory\"\nnmae = \"x\"\n", "my.toml")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("nmae") && err.contains("key `backend"),
            "{err}"
        );
        let err = MemoryConfig::from_toml("[backend]\ntype = \"memory\"\nname = 5\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `backend.name`"), "{err}");
        let err = MemoryConfig::from_toml("[backend]\ntype = \"gopher\"\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gopher") && err.contains("my.toml"), "{err}");
        let err = MemoryConfig::from_toml("verbose = \n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("my.toml") && err.contains("line 1"), "{err}");
        let err = MemoryConfig::from_toml(
            "location = \"memory://\"\n[backend]\ntype = \"memory\"\n",
            "my.toml",
        )
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
        assert!(err.contains("keep one") && err.contains("my.toml"), "{err}");
    }

    #[test]
    fn compute_once_keys_have_defaults_and_ship() {
        let c = MemoryConfig::from_toml("location = \"memory://x\"", "t").unwrap();
        assert!(c.options.compute_once);
        assert_eq!(c.options.lease, std::time::Duration::from_secs(30));
        assert_eq!(c.options.wait_timeout, std::time::Duration::from_secs(600));
        assert!(!c.to_toml().unwrap().contains("compute_once"));
        let c = MemoryConfig::from_toml(
            "location = \"memory://once-cfg\"\ncompute_once = false\nlease_secs = 2\nwait_timeout_secs = 0.5\n",
            "t",
        )
        .unwrap();
        let memory = c.build().unwrap();
        assert!(!memory.compute_once());
        assert_eq!(memory.lease(), std::time::Duration::from_secs(2));
        assert_eq!(memory.wait_timeout(), std::time::Duration::from_millis(500));
        let shipped = memory.config().unwrap().to_toml().unwrap();
        assert!(shipped.contains("compute_once = false"), "{shipped}");
        assert!(shipped.contains("lease_secs = 2.0"), "{shipped}");
        assert!(shipped.contains("wait_timeout_secs = 0.5"), "{shipped}");
        for bad in [
            "lease_secs = 0",
            "lease_secs = -1",
            "wait_timeout_secs = -2",
        ] {
            let err =
                MemoryConfig::from_toml(&format!("location = \"memory://x\"\n{bad}\n"), "my.toml")
                    .and_then(|c| c.build())
                    .unwrap_err()
                    .to_string();
            let key = bad.split(' ').next().unwrap();
            assert!(err.contains("my.toml") && err.contains(key), "{err}");
        }
    }

    #[test]
    fn a_config_round_trips_through_toml() {
        let c = MemoryConfig::from_toml(
            "verbose = 2\ncompress = 3\n[backend]\ntype = \"memory\"\nname = \"ship\"\n",
            "t",
        )
        .unwrap();
        let back = MemoryConfig::from_toml(&c.to_toml().unwrap(), "again").unwrap();
        assert_eq!(back.options.verbose, 2);
        assert_eq!(back.options.compress, Some(3));
        assert_eq!(back.to_toml().unwrap(), c.to_toml().unwrap());
    }
}
