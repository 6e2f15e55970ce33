//! Reading and writing a backup's EDN metadata files (manifest, config, checkpoint, lock),
//! in one place: the same size limits, the same UTF-8 rule, the same errors, the file
//! named in every error.
//!
//! Every file is size-checked before it is read ([`max_bytes`]): a manifest or checkpoint
//! may hold up to [`crate::repo::manifest::MAX_FILE_BYTES`] (the largest backup's, with
//! room to spare), every other metadata file [`MAX_SMALL_FILE_BYTES`]. Parse errors quote
//! at most a short excerpt of the file (never a whole token of a hostile one).

use crate::codec::edn;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Value;
use crate::repo::layout;
use crate::store::Store;

/// The largest `config.edn`, lock or other small metadata file read: the source database's
/// configuration and its ref attributes (a schema of tens of thousands of attributes fits).
pub const MAX_SMALL_FILE_BYTES: u64 = 8 << 20;

/// The most bytes read of the metadata file `key` (by its file name).
pub fn max_bytes(key: &str) -> u64 {
    let name = key.rsplit('/').next().unwrap_or(key);
    if name == layout::MANIFEST || name == layout::CHECKPOINT {
        crate::repo::manifest::MAX_FILE_BYTES
    } else {
        MAX_SMALL_FILE_BYTES
    }
}

/// Given a store and a key, read and parse the EDN file there (at most [`max_bytes`]).
///
/// Errors: `NotFound` when it is missing; `Corrupt` (naming the file) when it is larger than
/// its limit, not a regular file, not UTF-8 or not valid EDN; the store's errors otherwise.
pub fn read_edn(store: &dyn Store, key: &str) -> Result<Value> {
    let bytes = store.get_max(key, max_bytes(key))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Error::corrupt("read metadata", format!("not UTF-8: {e}")).with_key(store.location(key))
    })?;
    edn::parse(text).map_err(|e| e.with_key(store.location(key)))
}

/// Like [`read_edn`], but `Ok(None)` when the file is missing.
pub fn read_edn_opt(store: &dyn Store, key: &str) -> Result<Option<Value>> {
    match read_edn(store, key) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write `v` as pretty-printed EDN under `key` (atomically, as every [`Store::put`]).
pub fn write_edn(store: &dyn Store, key: &str, v: &Value) -> Result<()> {
    store.put(key, edn::write_pretty(v).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kw_map;
    use crate::store::memory::MemoryStore;

    #[test]
    fn round_trip_missing_and_corrupt_files() {
        let store = MemoryStore::new();
        let v = kw_map([("a", Value::Long(1))]);
        write_edn(&store, "db/b/x.edn", &v).unwrap();
        assert_eq!(read_edn(&store, "db/b/x.edn").unwrap(), v);
        assert_eq!(read_edn_opt(&store, "db/b/none.edn").unwrap(), None);
        assert_eq!(
            read_edn(&store, "db/b/none.edn").unwrap_err().kind,
            ErrorKind::NotFound
        );
        store.put("db/b/bad.edn", b"{:a \xff}").unwrap();
        let err = read_edn(&store, "db/b/bad.edn").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert_eq!(err.key.as_deref(), Some("memory:db/b/bad.edn"));
        store.put("db/b/bad2.edn", b"{:a").unwrap();
        assert_eq!(
            read_edn(&store, "db/b/bad2.edn").unwrap_err().kind,
            ErrorKind::Corrupt
        );
    }
}
