//! References to stored results: [`MemorizedResult`], [`NotMemorizedResult`], [`Shelved`].

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::array::MmapMode;
use crate::error::{Error, Result};
use crate::key::{Key, grammar};
use crate::memory::Memory;
use crate::reach::{Reach, finish};

/// A reference to a stored result: the store's location, the function and the argument hash.
/// It holds no value, so it is small to send to other threads, processes or machines that share
/// the store.
///
/// It implements `Serialize`/`Deserialize`, and its printed form
/// (`MemorizedResult(location="…", func="…", args_id="…")`) parses back with [`str::parse`],
/// in another process, on another machine with the same backend.
///
/// **A reference that arrives from outside is a stranger's input.** Read it in a store you
/// chose, with [`Memory::resolve`]: it is then loaded, checked (with that memory's signing key)
/// and cleared there, whatever location it names. A parsed reference opens the location it
/// names by itself only when that location was allowed with [`allow_reference_locations`];
/// otherwise [`get`](Self::get) and [`clear`](Self::clear) refuse, so that a message cannot
/// make a reader connect to a host, read or delete where it should not.
pub struct MemorizedResult<R> {
    location: String,
    func: String,
    args_id: String,
    memory: OnceLock<Memory>,
    mmap_mode: Option<MmapMode>,
    _output: PhantomData<fn() -> R>,
}

/// The locations that references from outside may open by themselves (see
/// [`allow_reference_locations`]).
static ALLOWED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Allows references parsed from messages ([`MemorizedResult`]'s printed or serialized form) to
/// open the store of these locations by themselves, as they name them (exact strings: the
/// location a memory reports, [`Memory::location`]). Without this, such a reference is read
/// through [`Memory::resolve`] only. The memory opened follows the environment
/// (`CACHETTE_SIGNING_KEY`).
pub fn allow_reference_locations<I, S>(locations: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut allowed = ALLOWED.lock().unwrap_or_else(|e| e.into_inner());
    for location in locations {
        let location = location.into();
        if !allowed.contains(&location) {
            allowed.push(location);
        }
    }
}

impl Memory {
    /// The reference `reference` (received from elsewhere, say) resolved in this memory's
    /// store: it is loaded with this memory's backend, signing key and [`MmapMode`], and
    /// cleared in this store, whatever location it names.
    ///
    /// ```
    /// use cachette_core::{MemorizedResult, Memory};
    /// let memory = Memory::from_url("memory://resolve-doc").unwrap();
    /// let f = memory.cache(|x: u32| x + 1);
    /// let printed = f.call_and_shelve(1).to_string();
    /// // Elsewhere: a message brings `printed`.
    /// let received: MemorizedResult<u32> = printed.parse().unwrap();
    /// assert_eq!(memory.resolve(&received).get().unwrap(), 2);
    /// ```
    pub fn resolve<R>(&self, reference: &MemorizedResult<R>) -> MemorizedResult<R> {
        let location = self
            .location()
            .map_or_else(|| reference.location.clone(), str::to_owned);
        MemorizedResult {
            location,
            func: reference.func.clone(),
            args_id: reference.args_id.clone(),
            memory: OnceLock::from(self.clone()),
            mmap_mode: reference.mmap_mode,
            _output: PhantomData,
        }
    }
}

impl<R> MemorizedResult<R> {
    pub(crate) fn new(memory: Memory, location: String, func: String, args_id: String) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(memory);
        MemorizedResult {
            location,
            func,
            args_id,
            memory: cell,
            mmap_mode: None,
            _output: PhantomData,
        }
    }

    /// A reference from its parts. It is not bound to a memory: see [`Memory::resolve`].
    pub fn from_parts(
        location: impl Into<String>,
        func: impl Into<String>,
        args_id: impl Into<String>,
    ) -> Self {
        MemorizedResult {
            location: location.into(),
            func: func.into(),
            args_id: args_id.into(),
            memory: OnceLock::new(),
            mmap_mode: None,
            _output: PhantomData,
        }
    }

    /// Loads the arrays of the value as `mode` says, instead of the memory's mode.
    pub fn mmap_mode(mut self, mode: MmapMode) -> Self {
        self.mmap_mode = Some(mode);
        self
    }

    /// The location of the store.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The function's folder.
    pub fn func(&self) -> &str {
        &self.func
    }

    /// The hash of the arguments.
    pub fn args_id(&self) -> &str {
        &self.args_id
    }

    /// The key of the entry, once the parts are checked: a function folder (one segment) and
    /// an argument hash (32 hex digits), so that a reference names an entry and nothing else.
    fn key(&self) -> Result<Key> {
        check_parts(&self.func, &self.args_id)?;
        Ok(grammar::entry(&self.func, &self.args_id)?)
    }

    /// The memory the result lives in: the one that made it or resolved it, or one opened from
    /// the location when references may open it (see [`allow_reference_locations`]), shared by
    /// every reference to that location in this process.
    fn memory(&self) -> Result<&Memory> {
        if let Some(m) = self.memory.get() {
            return Ok(m);
        }
        let allowed = ALLOWED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&self.location);
        if !allowed {
            return Err(Error::InvalidArgument(format!(
                "this reference names the location {:?}, which references may not open by themselves: read it with Memory::resolve in a store of your choice, or allow the location with cachette::allow_reference_locations",
                crate::report::untrusted(&self.location)
            )));
        }
        static OPENED: OnceLock<Mutex<HashMap<String, Memory>>> = OnceLock::new();
        let mut opened = OPENED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let memory = match opened.get(&self.location) {
            Some(m) => m.clone(),
            None => {
                let m = Memory::from_url(&self.location)?;
                opened.insert(self.location.clone(), m.clone());
                m
            }
        };
        drop(opened);
        Ok(self.memory.get_or_init(|| memory))
    }

    fn not_found(&self) -> Error {
        Error::NotFound {
            location: self.location.clone(),
            key: format!("{}/{}", self.func, self.args_id),
        }
    }

    /// Deletes the stored result.
    pub fn clear(&self) -> Result<()> {
        finish(self.clear_with(Reach::Blocking))
    }

    /// [`clear`](Self::clear), for async callers.
    pub async fn clear_async(&self) -> Result<()> {
        self.clear_with(Reach::Task).await
    }

    async fn clear_with(&self, reach: Reach) -> Result<()> {
        let memory = self.memory()?;
        let Some(shared) = memory.shared() else {
            return Ok(());
        };
        shared.store.delete(reach, &self.key()?).await
    }
}

impl<R: DeserializeOwned> MemorizedResult<R> {
    /// Loads the value. A result that was cleared (or never stored) gives
    /// [`Error::NotFound`]; an unreadable one gives [`Error::Entry`].
    pub fn get(&self) -> Result<R> {
        finish(self.get_with(Reach::Blocking))
    }

    /// [`get`](Self::get), for async callers.
    pub async fn get_async(&self) -> Result<R> {
        self.get_with(Reach::Task).await
    }

    /// Loads the value through the memory's entry store; its arrays are loaded as the memory's
    /// [`MmapMode`](crate::MmapMode) says.
    async fn get_with(&self, reach: Reach) -> Result<R> {
        let memory = self.memory()?;
        let shared = memory.shared().ok_or_else(|| self.not_found())?;
        let key = self.key()?;
        shared
            .store
            .load(
                reach,
                &key,
                self.mmap_mode.unwrap_or(shared.options.mmap_mode),
                shared.options.verify_maps,
            )
            .await?
            .ok_or_else(|| self.not_found())
    }
}

impl<R> Clone for MemorizedResult<R> {
    fn clone(&self) -> Self {
        MemorizedResult {
            location: self.location.clone(),
            func: self.func.clone(),
            args_id: self.args_id.clone(),
            memory: self.memory.clone(),
            mmap_mode: self.mmap_mode,
            _output: PhantomData,
        }
    }
}

/// Checks the parts of a reference: `func` a function folder (one key segment), `args_id` an
/// argument hash (32 hex digits).
fn check_parts(func: &str, args_id: &str) -> Result<()> {
    let bad = |what: &str| {
        Err(Error::InvalidArgument(format!(
            "not a reference to an entry: {what}"
        )))
    };
    if func.is_empty() || func.contains(['/', '\\', '\0']) || func == "." || func == ".." {
        return bad(&format!(
            "{:?} is not a function folder",
            crate::report::untrusted(func)
        ));
    }
    if args_id.len() != 32 || !args_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad(&format!(
            "{:?} is not an argument hash (32 hex digits)",
            crate::report::untrusted(args_id)
        ));
    }
    Ok(())
}

impl<R> PartialEq for MemorizedResult<R> {
    fn eq(&self, other: &Self) -> bool {
        (&self.location, &self.func, &self.args_id)
            == (&other.location, &other.func, &other.args_id)
    }
}

impl<R> fmt::Display for MemorizedResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MemorizedResult(location={:?}, func={:?}, args_id={:?})",
            self.location, self.func, self.args_id
        )
    }
}

impl<R> fmt::Debug for MemorizedResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<R> FromStr for MemorizedResult<R> {
    type Err = Error;

    /// Parses the printed form, `MemorizedResult(location="…", func="…", args_id="…")`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!("not a printed MemorizedResult ({why}): {s:?}"))
        };
        let body = s
            .trim()
            .strip_prefix("MemorizedResult(")
            .and_then(|b| b.strip_suffix(')'))
            .ok_or_else(|| bad("expected MemorizedResult(...)"))?;
        let mut fields: HashMap<String, String> = HashMap::new();
        let mut rest = body.trim_start();
        while !rest.is_empty() {
            let eq = rest
                .find('=')
                .ok_or_else(|| bad("expected name=\"value\""))?;
            let name = rest[..eq].trim().to_owned();
            let (value, after) =
                parse_quoted(rest[eq + 1..].trim_start()).ok_or_else(|| bad("bad quoted value"))?;
            fields.insert(name, value);
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        let mut take = |name: &str| {
            fields
                .remove(name)
                .ok_or_else(|| bad(&format!("missing {name}")))
        };
        let parsed =
            MemorizedResult::from_parts(take("location")?, take("func")?, take("args_id")?);
        parsed.key()?;
        Ok(parsed)
    }
}

/// Parses a Rust-`Debug`-quoted string at the start of `s`; gives it and what follows.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'u' => {
                    let (j, open) = chars.next()?;
                    if open != '{' {
                        return None;
                    }
                    let close = s[j..].find('}')? + j;
                    let code = u32::from_str_radix(&s[j + 1..close], 16).ok()?;
                    out.push(char::from_u32(code)?);
                    while chars.next()?.0 < close {}
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "MemorizedResult", deny_unknown_fields)]
struct Parts {
    location: String,
    func: String,
    args_id: String,
}

impl<R> Serialize for MemorizedResult<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        Parts {
            location: self.location.clone(),
            func: self.func.clone(),
            args_id: self.args_id.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de, R> Deserialize<'de> for MemorizedResult<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let parts = Parts::deserialize(deserializer)?;
        let result = MemorizedResult::from_parts(parts.location, parts.func, parts.args_id);
        result.key().map_err(serde::de::Error::custom)?;
        Ok(result)
    }
}

/// The result of `call_and_shelve` with a disabled memory (or when the result could not be
/// stored): it holds the value itself.
pub struct NotMemorizedResult<R> {
    value: Mutex<Option<R>>,
}

impl<R> NotMemorizedResult<R> {
    /// Wraps a value.
    pub fn new(value: R) -> Self {
        NotMemorizedResult {
            value: Mutex::new(Some(value)),
        }
    }

    /// Drops the value; a later [`get`](Self::get) is an error.
    pub fn clear(&self) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Takes the value out.
    pub fn into_value(self) -> Option<R> {
        self.value.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<R: Clone> NotMemorizedResult<R> {
    /// A copy of the value; [`Error::NotFound`] after [`clear`](Self::clear).
    pub fn get(&self) -> Result<R> {
        self.value
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::NotFound {
                location: "(not memorized)".into(),
                key: "(cleared value)".into(),
            })
    }
}

impl<R> fmt::Debug for NotMemorizedResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid = self.value.lock().map(|v| v.is_some()).unwrap_or(false);
        write!(f, "NotMemorizedResult(valid={valid})")
    }
}

/// What `call_and_shelve` gives: a reference to the stored result, or the value itself when
/// nothing was stored.
#[derive(Debug)]
pub enum Shelved<R> {
    /// A reference to the stored result.
    Memorized(MemorizedResult<R>),
    /// The value itself.
    NotMemorized(NotMemorizedResult<R>),
}

impl<R: DeserializeOwned + Clone> Shelved<R> {
    /// The value: loaded from the store, or copied.
    pub fn get(&self) -> Result<R> {
        match self {
            Shelved::Memorized(r) => r.get(),
            Shelved::NotMemorized(r) => r.get(),
        }
    }
}

impl<R> Shelved<R> {
    /// Deletes the stored result (or drops the held value).
    pub fn clear(&self) -> Result<()> {
        match self {
            Shelved::Memorized(r) => r.clear(),
            Shelved::NotMemorized(r) => {
                r.clear();
                Ok(())
            }
        }
    }

    /// The reference, if the result was stored.
    pub fn as_memorized(&self) -> Option<&MemorizedResult<R>> {
        match self {
            Shelved::Memorized(r) => Some(r),
            Shelved::NotMemorized(_) => None,
        }
    }
}

impl<R> fmt::Display for Shelved<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shelved::Memorized(r) => fmt::Display::fmt(r, f),
            Shelved::NotMemorized(r) => fmt::Debug::fmt(r, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_form_round_trips() {
        let r: MemorizedResult<u8> = MemorizedResult::from_parts(
            "/tmp/a \"b\"\\c é",
            "m.f",
            "0123456789abcdef0123456789abcdef",
        );
        let printed = r.to_string();
        let back: MemorizedResult<u8> = printed.parse().unwrap();
        assert!(back == r, "{printed}");
        assert!(
            "MemorizedResult(location=\"x\")"
                .parse::<MemorizedResult<u8>>()
                .is_err()
        );
        assert!("nonsense".parse::<MemorizedResult<u8>>().is_err());
        assert!(
            "MemorizedResult(location=\"x\", func=\"..\", args_id=\"y\")"
                .parse::<MemorizedResult<u8>>()
                .is_err()
        );
    }
}
