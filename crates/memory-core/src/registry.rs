//! The open registry of backends: configuration types by name, and URL schemes.
//!
//! Every backend crate registers its [`BackendConfig`] type once, with
//! [`register_backend!`](crate::register_backend): the name of its `type` in config files, the
//! URL schemes it answers to, and how a URL becomes a configuration. The core looks them up at
//! run time, so it depends on no backend crate, and a user's own backend plugs into URLs and
//! config files exactly like the built-in ones. Backend authors depend on `cachette` alone.
//!
//! ```
//! use cachette_core::plugin::{BackendConfig, BackendError, DynBackend, InMemoryBackend};
//! use serde::{Deserialize, Serialize};
//!
//! /// A store in this process's memory, under a name.
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! struct ScratchConfig {
//!     name: String,
//! }
//!
//! impl BackendConfig for ScratchConfig {
//!     fn build(&self) -> Result<DynBackend, BackendError> {
//!         Ok(std::sync::Arc::new(InMemoryBackend::named(&self.name)))
//!     }
//! }
//!
//! fn scratch_from_url(url: &str) -> Result<ScratchConfig, BackendError> {
//!     Ok(ScratchConfig { name: url.trim_start_matches("scratch://").to_owned() })
//! }
//!
//! cachette_core::register_backend! {
//!     config: ScratchConfig,
//!     name: "scratch",
//!     schemes: ["scratch"],
//!     from_url: scratch_from_url,
//! }
//!
//! let memory = cachette_core::Memory::from_url("scratch://doc").unwrap();
//! assert_eq!(memory.eval(|x: u8| x + 1, 1), 2);
//! let toml = memory.config().unwrap().to_toml().unwrap();
//! assert!(toml.contains("type = \"scratch\""), "{toml}");
//! ```

use std::any::{Any, TypeId};
use std::fmt::{self, Debug};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backend::DynBackend;
use crate::error::{BackendError, Error, Result};
use crate::memory_backend::InMemoryBackend;

/// A serializable backend configuration: what a config file's `[backend]` section holds,
/// tagged by `type` (the name it was [registered](crate::register_backend) under). Building it
/// gives the backend.
///
/// Implement it for a `Clone + Serialize + Deserialize` type; `Debug` must leave secrets out.
pub trait BackendConfig: Debug + Send + Sync + erased_serde::Serialize + CloneConfig {
    /// Builds the backend this configuration describes.
    fn build(&self) -> std::result::Result<DynBackend, BackendError>;
}

/// Copies and downcasts of [`BackendConfig`]s; implemented for every `Clone` configuration.
pub trait CloneConfig {
    /// A copy of this configuration.
    fn clone_config(&self) -> Box<dyn BackendConfig>;
    /// This configuration as `Any`, to find its registration.
    fn as_any(&self) -> &dyn Any;
}

impl<T: BackendConfig + Clone + 'static> CloneConfig for T {
    fn clone_config(&self) -> Box<dyn BackendConfig> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Clone for Box<dyn BackendConfig> {
    fn clone(&self) -> Self {
        (**self).clone_config()
    }
}

/// A registered backend; made by [`register_backend!`](crate::register_backend).
pub struct Registration {
    /// The `type` of its configuration in config files.
    pub name: &'static str,
    /// The URL schemes it answers to, without `://`.
    pub schemes: &'static [&'static str],
    from_url: fn(&str) -> std::result::Result<Box<dyn BackendConfig>, BackendError>,
    deserialize: fn(toml::Value) -> std::result::Result<Box<dyn BackendConfig>, ConfigError>,
    type_id: fn() -> TypeId,
}

impl Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("schemes", &self.schemes)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// A registration of the configuration type `C` under the `type` name `name`, answering the
    /// URL `schemes` through `from_url`. Give it to [`register`] at run time, or let
    /// [`register_backend!`](crate::register_backend) build and submit one at program start.
    pub const fn new<C: BackendConfig + DeserializeOwned + 'static>(
        name: &'static str,
        schemes: &'static [&'static str],
        from_url: fn(&str) -> std::result::Result<Box<dyn BackendConfig>, BackendError>,
    ) -> Registration {
        Registration {
            name,
            schemes,
            from_url,
            deserialize: deserialize_config::<C>,
            type_id: TypeId::of::<C>,
        }
    }
}

inventory::collect!(Registration);

/// Registers a backend: its configuration type, the `type` name of that configuration in
/// config files, the URL schemes it answers to, and the function that turns such a URL into a
/// configuration (`fn(&str) -> Result<Config, BackendError>`).
///
/// Registration happens at program start, from the crate that holds the macro call, for any
/// crate linked into the program. The configuration type implements
/// [`BackendConfig`](crate::plugin::BackendConfig), `Clone`, `Serialize` and `Deserialize`.
/// See the [registry](crate::registry) for an example.
#[macro_export]
macro_rules! register_backend {
    (
        config: $config:ty,
        name: $name:expr,
        schemes: [$($scheme:expr),* $(,)?],
        from_url: $from_url:expr $(,)?
    ) => {
        $crate::__private::inventory::submit! {
            $crate::plugin::Registration::new::<$config>(
                $name,
                &[$($scheme),*],
                |url: &str| -> ::std::result::Result<
                    ::std::boxed::Box<dyn $crate::plugin::BackendConfig>,
                    $crate::plugin::BackendError,
                > {
                    let config: $config = ($from_url)(url)?;
                    ::std::result::Result::Ok(::std::boxed::Box::new(config))
                },
            )
        }
    };
}

/// A configuration that does not deserialize: where (the path of keys inside the backend's
/// section) and why.
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub(crate) path: String,
    pub(crate) message: String,
}

fn deserialize_config<C: BackendConfig + DeserializeOwned + 'static>(
    value: toml::Value,
) -> std::result::Result<Box<dyn BackendConfig>, ConfigError> {
    let config: C = serde_path_to_error::deserialize(value).map_err(|e| ConfigError {
        path: e.path().to_string(),
        message: e.into_inner().to_string().trim_end().to_owned(),
    })?;
    Ok(Box::new(config))
}

/// Backends registered at run time, with [`register`].
static REGISTERED: std::sync::RwLock<Vec<&'static Registration>> =
    std::sync::RwLock::new(Vec::new());

/// Registers a backend at run time: for a backend crate that a program links without using any
/// of its items (it only names the backend in URLs or config files), where the static
/// registration of [`register_backend!`](crate::register_backend) may be left out by the
/// linker. Registering the same registration again does nothing.
///
/// ```
/// use cachette_core::plugin::{register, BackendConfig, BackendError, DynBackend, Registration};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize)]
/// # struct NullConfig {}
/// # impl BackendConfig for NullConfig {
/// #     fn build(&self) -> Result<DynBackend, BackendError> {
/// #         Ok(std::sync::Arc::new(cachette_core::plugin::InMemoryBackend::new()))
/// #     }
/// # }
/// pub static NULL: Registration =
///     Registration::new::<NullConfig>("null", &["null"], |_| Ok(Box::new(NullConfig {})));
///
/// register(&NULL);
/// assert!(cachette_core::Memory::from_url("null://").is_ok());
/// ```
pub fn register(registration: &'static Registration) {
    let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if !registered.iter().any(|r| std::ptr::eq(*r, registration)) {
        registered.push(registration);
    }
}

/// Every registered backend: those registered at run time first, then the static ones.
pub fn registrations() -> impl Iterator<Item = &'static Registration> {
    let runtime: Vec<&'static Registration> =
        REGISTERED.read().unwrap_or_else(|e| e.into_inner()).clone();
    runtime.into_iter().chain(inventory::iter::<Registration>)
}

fn registration_of(config: &dyn BackendConfig) -> Option<&'static Registration> {
    let id = config.as_any().type_id();
    registrations().find(|r| (r.type_id)() == id)
}

/// The `type` name a configuration was registered under.
pub fn type_name_of(config: &dyn BackendConfig) -> Option<&'static str> {
    registration_of(config).map(|r| r.name)
}

/// The Cargo feature of the `cachette` crate that brings each built-in scheme.
const FEATURES: &[(&str, &str)] = &[
    ("file", "fs"),
    ("s3", "s3"),
    ("s3a", "s3"),
    ("redis", "redis"),
    ("rediss", "redis"),
    ("redis+cluster", "redis"),
    ("rediss+cluster", "redis"),
];

/// The scheme of a location: what stands before `://`, or `"file"` for a plain path.
pub fn scheme_of(location: &str) -> &str {
    match location.find("://") {
        Some(i)
            if i > 0
                && location[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            &location[..i]
        }
        _ => "file",
    }
}

fn missing(what: &str, name: &str) -> Error {
    let hint = FEATURES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(name))
        .map(|(_, feature)| format!(": enable the `{feature}` feature of the `cachette` crate"))
        .unwrap_or_else(|| {
            let mut known: Vec<&str> = registrations()
                .flat_map(|r| {
                    if what == "scheme" {
                        r.schemes
                    } else {
                        std::slice::from_ref(&r.name)
                    }
                })
                .copied()
                .collect();
            known.sort_unstable();
            known.dedup();
            format!(" (known {what}s: {})", known.join(", "))
        });
    Error::Config(format!(
        "no backend for {what} `{name}` in this build{hint}"
    ))
}

/// A plain path that is a URL with a typo in its `://`: `redis//host`, `s3:/bucket`,
/// `redis:host`. Its would-be scheme, when that is a known one (registered, or built in behind
/// a feature). `./redis//host` and `file://…` stay paths.
fn mistyped_scheme(location: &str) -> Option<&str> {
    if location.contains("://") {
        return None;
    }
    let end = location.find([':', '/'])?;
    let (head, rest) = location.split_at(end);
    if head.is_empty() || !(rest.starts_with(':') || rest.starts_with("//")) {
        return None;
    }
    let known = FEATURES.iter().any(|(s, _)| s.eq_ignore_ascii_case(head))
        || registrations().any(|r| r.schemes.iter().any(|s| s.eq_ignore_ascii_case(head)));
    known.then_some(head)
}

/// Parses a location (a URL or a plain path) into a backend configuration, through the
/// registered schemes.
///
/// A path that looks like a URL of a known scheme with a typo (`redis//host`, `s3:/bucket`)
/// is an error, not a folder of that name; write `./redis//host` to mean the folder.
pub fn config_from_url(location: &str) -> Result<Box<dyn BackendConfig>> {
    if let Some(scheme) = mistyped_scheme(location) {
        return Err(Error::Config(format!(
            "the location {} looks like a `{scheme}://` URL with a typo; write `{scheme}://…`, \
             or `./{}` for a folder of that name",
            crate::report::untrusted_within(location, 200),
            crate::report::untrusted_within(location, 200),
        )));
    }
    let scheme = scheme_of(location);
    for registered in registrations() {
        if registered
            .schemes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
        {
            return (registered.from_url)(location).map_err(Error::Backend);
        }
    }
    Err(missing("scheme", scheme))
}

/// Builds the backend of a location (a URL or a plain path).
pub fn backend_from_url(location: &str) -> Result<DynBackend> {
    Ok(config_from_url(location)?.build()?)
}

/// Reads a backend's configuration from the table of a `[backend]` section: its `type` picks
/// the registered configuration type. Errors give the key path inside the section.
pub(crate) fn config_from_table(
    mut table: toml::Table,
) -> std::result::Result<Box<dyn BackendConfig>, ConfigError> {
    let name = match table.remove("type") {
        Some(toml::Value::String(name)) => name,
        Some(_) => {
            return Err(ConfigError {
                path: "type".into(),
                message: "expected a string, the backend's name".into(),
            });
        }
        None => {
            return Err(ConfigError {
                path: String::new(),
                message: "missing field `type`, the backend's name".into(),
            });
        }
    };
    let Some(registered) = registrations().find(|r| r.name.eq_ignore_ascii_case(&name)) else {
        return Err(ConfigError {
            path: "type".into(),
            message: missing("type", &name).to_string(),
        });
    };
    (registered.deserialize)(toml::Value::Table(table))
}

/// The fields of a configuration, for its serializer.
struct Fields<'a>(&'a dyn BackendConfig);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        erased_serde::serialize(self.0 as &dyn erased_serde::Serialize, serializer)
    }
}

/// The configuration as the table of a `[backend]` section: `type` first, then its fields.
pub(crate) fn table_of(config: &dyn BackendConfig) -> std::result::Result<toml::Table, String> {
    let name = type_name_of(config).ok_or_else(|| {
        format!("the backend configuration {config:?} is not registered (see `register_backend!`)")
    })?;
    let fields = match toml::Value::try_from(Fields(config)).map_err(|e| e.to_string())? {
        toml::Value::Table(fields) => fields,
        other => {
            return Err(format!(
                "a backend configuration is a table of keys, not {other}"
            ));
        }
    };
    let mut table = toml::Table::new();
    table.insert("type".into(), toml::Value::String(name.into()));
    table.extend(fields);
    Ok(table)
}

impl Serialize for dyn BackendConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        table_of(self)
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Box<dyn BackendConfig> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        config_from_table(table).map_err(|e| {
            if e.path.is_empty() || e.path == "." {
                serde::de::Error::custom(e.message)
            } else {
                serde::de::Error::custom(format!("key `{}`: {}", e.path, e.message))
            }
        })
    }
}

/// Configuration of the in-memory backend (`memory://name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InMemoryConfig {
    /// The name of the process-wide store; empty for a private store.
    pub name: String,
}

impl BackendConfig for InMemoryConfig {
    fn build(&self) -> std::result::Result<DynBackend, BackendError> {
        Ok(if self.name.is_empty() {
            std::sync::Arc::new(InMemoryBackend::new())
        } else {
            std::sync::Arc::new(InMemoryBackend::named(&self.name))
        })
    }
}

fn memory_from_url(location: &str) -> std::result::Result<InMemoryConfig, BackendError> {
    let rest = &location[location.find("://").map_or(0, |i| i + 3)..];
    let name = rest.trim_end_matches('/');
    Ok(InMemoryConfig {
        name: if name.is_empty() {
            "default".to_owned()
        } else {
            name.to_owned()
        },
    })
}

crate::register_backend! {
    config: InMemoryConfig,
    name: crate::memory_backend::SCHEME,
    schemes: [crate::memory_backend::SCHEME],
    from_url: memory_from_url,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme_of("/tmp/x"), "file");
        assert_eq!(scheme_of("relative/dir"), "file");
        assert_eq!(scheme_of("s3://bucket/p"), "s3");
        assert_eq!(scheme_of("memory://"), "memory");
        assert_eq!(scheme_of("redis+cluster://h:1"), "redis+cluster");
    }

    #[test]
    fn urls_with_a_typo_are_refused_not_taken_for_folders() {
        for typo in [
            "redis//host:6379",
            "redis:host",
            "s3:/bucket/prefix",
            "S3//bucket",
            "rediss+cluster:/h:1",
            "memory:/x",
            "file:/tmp/x",
        ] {
            let err = config_from_url(typo).unwrap_err().to_string();
            assert!(err.contains("typo"), "{typo}: {err}");
        }
        for path in [
            "./redis//host",
            "/tmp/redis:1",
            "s3/bucket",
            "data:2024/x",
            "redis",
            "relative/dir",
        ] {
            assert_eq!(mistyped_scheme(path), None, "{path}");
        }
    }

    #[test]
    fn memory_urls_share_items() {
        let a = backend_from_url("memory://shared-test").unwrap();
        let b = backend_from_url("memory://shared-test").unwrap();
        assert_eq!(a.location(), b.location());
    }

    #[test]
    fn unknown_scheme_names_the_feature() {
        // No backend crate is linked into the core's own tests.
        let err = config_from_url("s3://bucket/prefix")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`s3` feature"), "{err}");
        let err = config_from_url("gopher://x").unwrap_err().to_string();
        assert!(err.contains("known schemes"), "{err}");
    }

    #[test]
    fn configurations_round_trip_with_their_type_first() {
        let config: Box<dyn BackendConfig> = Box::new(InMemoryConfig { name: "t".into() });
        let table = table_of(&*config).unwrap();
        assert_eq!(table.keys().next().map(String::as_str), Some("type"));
        let back = config_from_table(table).unwrap();
        assert_eq!(type_name_of(&*back), Some("memory"));
        let bad: toml::Table = "type = \"memory\"\nname = 5".parse().unwrap();
        let err = config_from_table(bad).unwrap_err();
        assert_eq!(err.path, "name", "{err:?}");
    }
}
