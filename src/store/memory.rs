//! An in-memory [`Store`], for tests of the layers above the stores (as object_store's
//! `memory.rs` and rustic's in-memory backend): a sorted map from key to bytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result};
use crate::store::{ObjectMeta, Store};

/// Key → (bytes, modification time).
type Objects = BTreeMap<String, (Vec<u8>, SystemTime)>;

/// A store that keeps every object in memory; clones share the same objects.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<Objects>>,
}

impl MemoryStore {
    /// Return an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set the modification time of `key` (tests that age objects); false if it is missing.
    pub fn set_modified(&self, key: &str, when: SystemTime) -> bool {
        match self.objects().get_mut(key) {
            Some(entry) => {
                entry.1 = when;
                true
            }
            None => false,
        }
    }
}

impl Store for MemoryStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        crate::repo::layout::check_key(key)?;
        self.objects()
            .insert(key.to_owned(), (bytes.to_vec(), SystemTime::now()));
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        crate::repo::layout::check_key(key)?;
        self.objects()
            .get(key)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| {
                Error::new(ErrorKind::NotFound, "get object", "no such object")
                    .with_key(self.location(key))
            })
    }

    fn get_max(&self, key: &str, max: u64) -> Result<Vec<u8>> {
        let bytes = self.get(key)?;
        if bytes.len() as u64 > max {
            return Err(crate::store::too_large(
                self.location(key),
                bytes.len() as u64,
                max,
            ));
        }
        Ok(bytes)
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        crate::repo::layout::check_key(key)?;
        Ok(self.objects().get(key).map(|(b, _)| b.len() as u64))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .objects()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (b, t))| ObjectMeta {
                key: k.clone(),
                size: b.len() as u64,
                modified: Some(*t),
            })
            .collect())
    }

    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        use std::ops::Bound::{Excluded, Included};
        let from = if start_after >= prefix {
            Excluded(start_after.to_owned())
        } else {
            Included(prefix.to_owned())
        };
        Ok(self
            .objects()
            .range((from, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (b, t))| ObjectMeta {
                key: k.clone(),
                size: b.len() as u64,
                modified: Some(*t),
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        crate::repo::layout::check_key(key)?;
        self.objects().remove(key);
        Ok(())
    }

    fn location(&self, key: &str) -> String {
        format!("memory:{key}")
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        crate::repo::layout::check_key(key)?;
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Ok(false);
        }
        objects.insert(key.to_owned(), (bytes.to_vec(), SystemTime::now()));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        crate::store::conformance::run(&MemoryStore::new());
    }
}
