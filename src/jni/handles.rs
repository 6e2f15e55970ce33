//! Native sessions owned by the JVM, addressed by opaque `long` handles.
//!
//! Handles index a registry instead of being raw pointers: a stale, freed or forged
//! handle yields an error, never undefined behaviour. Each session sits behind its own
//! mutex, so a session used from two threads is serialised rather than corrupted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use once_cell::sync::Lazy;

use crate::error::{Error, Result};

/// A registry of sessions of one type.
pub struct Registry<T> {
    name: &'static str,
    next: AtomicI64,
    slots: Lazy<Mutex<HashMap<i64, Arc<Mutex<T>>>>>,
}

impl<T> Registry<T> {
    /// An empty registry; `name` appears in error messages.
    pub const fn new(name: &'static str) -> Self {
        Registry {
            name,
            next: AtomicI64::new(1),
            slots: Lazy::new(Default::default),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<Mutex<T>>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register `value`; return its handle (never 0).
    pub fn insert(&self, value: T) -> i64 {
        let handle = self.next.fetch_add(1, Ordering::Relaxed);
        self.slots().insert(handle, Arc::new(Mutex::new(value)));
        handle
    }

    /// Run `f` on the session behind `handle`.
    pub fn with<R>(&self, handle: i64, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let slot = self
            .slots()
            .get(&handle)
            .cloned()
            .ok_or_else(|| self.gone(handle))?;
        let mut guard = slot.lock().map_err(|_| {
            Error::internal(self.name, "session is unusable after an earlier panic")
        })?;
        f(&mut guard)
    }

    /// Remove the session behind `handle` and return it (None if already removed).
    pub fn remove(&self, handle: i64) -> Option<Arc<Mutex<T>>> {
        self.slots().remove(&handle)
    }

    fn gone(&self, handle: i64) -> Error {
        Error::invalid(
            self.name,
            format!("no open session with handle {handle} (closed already?)"),
        )
    }
}
