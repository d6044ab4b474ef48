//! An in-memory backend: the reference implementation of the contract, and `memory://`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::backend::{
    BackendResult, Blob, Capabilities, GetOptions, GetResult, ItemInfo, PutMode, PutOptions,
    PutOutcome, StoreBackend,
};
use crate::key::{Key, Prefix};

/// The scheme of the in-memory backend.
pub(crate) const SCHEME: &str = "memory";

#[derive(Debug)]
struct Item {
    value: Bytes,
    /// Microseconds since the Unix epoch.
    last_access: AtomicI64,
    expires_at: Option<Instant>,
}

impl Item {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

type Items = Arc<RwLock<BTreeMap<String, Item>>>;

/// Items kept in this process's memory. Clones share the items; [`InMemoryBackend::named`]
/// gives the same items for the same name anywhere in the process (that is what `memory://name`
/// URLs resolve to). Expiry is enforced on read.
#[derive(Debug, Clone)]
pub struct InMemoryBackend {
    name: String,
    items: Items,
}

impl Default for InMemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryBackend {
    /// A new, private, empty store.
    pub fn new() -> Self {
        static NEXT: AtomicI64 = AtomicI64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        InMemoryBackend {
            name: format!("anonymous-{}-{n}", std::process::id()),
            items: Items::default(),
        }
    }

    /// The store registered under `name` in this process, created empty on first use.
    pub fn named(name: &str) -> Self {
        static NAMED: OnceLock<Mutex<HashMap<String, Items>>> = OnceLock::new();
        let mut map = NAMED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let items = map.entry(name.to_owned()).or_default().clone();
        InMemoryBackend {
            name: name.to_owned(),
            items,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Item>> {
        self.items.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Item>> {
        self.items.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A read of `key` as `options` say (`get_opts` and `get_now` alike).
    fn read_item(&self, key: &Key, options: &GetOptions) -> Option<GetResult> {
        let map = self.read();
        let item = map.get(key.as_str()).filter(|i| i.live(Instant::now()))?;
        if options.record_access {
            item.last_access
                .store(Utc::now().timestamp_micros(), Ordering::Relaxed);
        }
        let len = item.value.len() as u64;
        if options.head {
            return Some(GetResult::head(len));
        }
        Some(match &options.range {
            None => GetResult::whole(item.value.clone()),
            Some(range) => {
                let start = range.start.min(len) as usize;
                let end = range.end.clamp(range.start.min(len), len) as usize;
                GetResult::part(item.value.slice(start..end), len)
            }
        })
    }

    fn new_item(value: Bytes, options: &PutOptions) -> Item {
        Item {
            value,
            last_access: AtomicI64::new(Utc::now().timestamp_micros()),
            // A lifetime past the clock's range never ends.
            expires_at: options.ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
        }
    }

    fn keys_under(map: &BTreeMap<String, Item>, prefix: &Prefix) -> Vec<String> {
        map.range(prefix.as_str().to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix.as_str()))
            .filter(|(k, _)| prefix.matches(k))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[async_trait]
impl StoreBackend for InMemoryBackend {
    fn scheme(&self) -> &'static str {
        SCHEME
    }

    fn location(&self) -> String {
        format!("memory://{}", self.name)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_create: true,
            native_expiry: true,
            ranged_read: true,
            blocking_io: true,
            ..Capabilities::none()
        }
    }

    async fn get_opts(&self, key: &Key, options: GetOptions) -> BackendResult<Option<GetResult>> {
        Ok(self.read_item(key, &options))
    }

    fn get_now(&self, key: &Key, options: &GetOptions) -> Option<BackendResult<Option<GetResult>>> {
        Some(Ok(self.read_item(key, options)))
    }

    async fn put_opts(
        &self,
        key: &Key,
        value: Blob,
        options: PutOptions,
    ) -> BackendResult<PutOutcome> {
        let value = value.to_bytes();
        let mut map = self.write();
        if options.mode == PutMode::Create
            && map
                .get(key.as_str())
                .is_some_and(|i| i.live(Instant::now()))
        {
            return Ok(PutOutcome::AlreadyExists);
        }
        map.insert(key.as_str().to_owned(), Self::new_item(value, &options));
        Ok(PutOutcome::Created)
    }

    async fn delete_many(&self, keys: &[Key]) -> BackendResult<()> {
        let mut map = self.write();
        for key in keys {
            map.remove(key.as_str());
        }
        Ok(())
    }

    /// Drops the items under `prefix` whose expiry passed: they are neither read nor listed,
    /// and would otherwise stay in memory until overwritten.
    async fn sweep(&self, prefix: &Prefix) -> BackendResult<u64> {
        let mut map = self.write();
        let now = Instant::now();
        let expired: Vec<String> = Self::keys_under(&map, prefix)
            .into_iter()
            .filter(|k| !map[k].live(now))
            .collect();
        for key in &expired {
            map.remove(key);
        }
        Ok(expired.len() as u64)
    }

    async fn list(&self, prefix: &Prefix) -> BackendResult<Vec<ItemInfo>> {
        let map = self.read();
        let now = Instant::now();
        let mut out = Vec::new();
        for key in Self::keys_under(&map, prefix) {
            let item = &map[&key];
            if !item.live(now) {
                continue;
            }
            let micros = item.last_access.load(Ordering::Relaxed);
            out.push(ItemInfo {
                key: Key::new(key)?,
                size: item.value.len() as u64,
                last_access: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}
