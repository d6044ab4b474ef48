//! The process-wide default [`Memory`], used by `#[memoize]` without `memory = …`.

use std::sync::{Arc, LazyLock, OnceLock, RwLock};

use crate::memory::Memory;

static GLOBAL: RwLock<Option<Memory>> = RwLock::new(None);

/// Sets the process-wide default memory, used by `#[memoize]` functions that name none.
/// Functions already called keep the memory they started with.
pub fn set_global(memory: Memory) {
    *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Some(memory);
}

/// The process-wide default memory: the one given to [`set_global`]; else the one the
/// environment describes ([`Memory::from_env`]: the config file `CACHETTE_CONFIG` names, with
/// `CACHETTE_LOCATION` replacing its store, or the store `CACHETTE_LOCATION` names); else a
/// disabled memory, with a warning, so that calls still run.
pub fn global() -> Memory {
    if let Some(m) = GLOBAL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return m.clone();
    }
    let mut slot = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = slot.as_ref() {
        return m.clone();
    }
    let memory = match Memory::from_env() {
        Ok(Some(m)) => m,
        Err(e) => {
            tracing::warn!(target: "cachette", "the environment's memory is unusable ({e}); caching is off");
            eprintln!(
                "[cachette] WARNING: the environment's memory is unusable ({e}); caching is off"
            );
            Memory::disabled()
        }
        Ok(None) => {
            tracing::warn!(target: "cachette", "no default memory: call cachette::set_global, or set CACHETTE_CONFIG or CACHETTE_LOCATION; caching is off");
            eprintln!(
                "[cachette] WARNING: no default memory: call cachette::set_global, or set CACHETTE_CONFIG or CACHETTE_LOCATION; caching is off"
            );
            Memory::disabled()
        }
    };
    *slot = Some(memory.clone());
    memory
}

/// Things that give a [`Memory`]: what `#[memoize(memory = …)]` accepts (a `Memory`, a
/// reference, an `Arc`, a `LazyLock` or `OnceLock` static, or a function returning one of these).
pub trait AsMemory {
    /// The memory.
    fn as_memory(&self) -> &Memory;
}

impl AsMemory for Memory {
    fn as_memory(&self) -> &Memory {
        self
    }
}

impl<T: AsMemory + ?Sized> AsMemory for &T {
    fn as_memory(&self) -> &Memory {
        (**self).as_memory()
    }
}

impl<T: AsMemory + ?Sized> AsMemory for Arc<T> {
    fn as_memory(&self) -> &Memory {
        (**self).as_memory()
    }
}

impl<T: AsMemory + ?Sized> AsMemory for Box<T> {
    fn as_memory(&self) -> &Memory {
        (**self).as_memory()
    }
}

impl<T: AsMemory, F: FnOnce() -> T> AsMemory for LazyLock<T, F> {
    fn as_memory(&self) -> &Memory {
        LazyLock::force(self).as_memory()
    }
}

impl AsMemory for OnceLock<Memory> {
    fn as_memory(&self) -> &Memory {
        self.get_or_init(global)
    }
}
