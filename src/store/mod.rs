//! Storage backends behind one trait.
//!
//! A [`Store`] knows nothing of datoms: it stores opaque bytes under `/`-separated keys
//! relative to its root. Backends: [`dir::DirStore`] (a local directory), [`memory::MemoryStore`]
//! (tests) and
//! [`s3::S3Store`] (an S3 bucket and prefix, with [`retry`] for transient failures). Every
//! backend runs the same conformance suite (`conformance`, compiled into the library so that
//! integration tests can run it against real services; hidden from the docs).

pub mod dir;
pub mod memory;
pub mod retry;
pub mod s3;

use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result};
use crate::model::Value;

/// One stored object as a listing returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the store's root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, when the backend knows it.
    pub modified: Option<SystemTime>,
}

/// Something a killed writer left behind that [`Store::list`] does not show: a directory's
/// temporary file (`config.edn.tmp-…`), or an unfinished S3 multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// The key, relative to the store's root: the temporary's own key, or the key the
    /// upload would have created.
    pub key: String,
    /// When it was started (a temporary's modification time, an upload's initiation),
    /// when the backend knows it.
    pub started: Option<SystemTime>,
    /// What it is.
    pub kind: LeftoverKind,
}

/// The kinds of [`Leftover`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeftoverKind {
    /// A temporary file of an unfinished atomic write (directory stores).
    Temporary,
    /// An unfinished multipart upload (S3), with its id.
    Upload {
        /// The upload id.
        upload_id: String,
    },
}

/// A place that holds backups.
///
/// Contract for every implementation:
/// - `put` is atomic: a reader sees either no object or all of the new bytes, never a
///   prefix; once `put` returns, the bytes are durable.
/// - `get` of a missing key fails with [`crate::error::ErrorKind::NotFound`].
/// - `list` returns every object whose key starts with `prefix`, at any depth, sorted by
///   key, never an in-flight temporary.
/// - `list_after` returns, of what `list` would return, exactly the objects whose key sorts
///   strictly after `start_after` (byte order): "everything after X" in one listing (on S3
///   one `ListObjectsV2` from `StartAfter`, whose cost depends on what follows X only).
/// - `delete` of a missing key succeeds.
pub trait Store: Send + Sync {
    /// Store `bytes` under `key`, atomically and durably (replacing any old object).
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Return the bytes under `key`; `NotFound` if there are none. Unbounded: whatever
    /// reads a backup's contents uses [`Store::get_max`].
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Return the bytes under `key` if there are at most `max` of them: `NotFound` if there
    /// are none, `Corrupt` (naming the key and both sizes) if there are more. Everything
    /// that reads a backup goes through here, so a hostile object (a sparse terabyte file,
    /// an endless stream) is refused before it is read into memory. The default asks
    /// [`Store::size`] first and checks the length again after [`Store::get`]; a backend
    /// that can bound the read itself overrides it (the directory store reads at most
    /// `max + 1` bytes of a regular file it opened without following links).
    fn get_max(&self, key: &str, max: u64) -> Result<Vec<u8>> {
        match self.size(key)? {
            None => {
                return Err(
                    Error::new(ErrorKind::NotFound, "read object", "no such object")
                        .with_key(self.location(key)),
                )
            }
            Some(n) if n > max => return Err(too_large(self.location(key), n, max)),
            Some(_) => {}
        }
        let bytes = self.get(key)?;
        if bytes.len() as u64 > max {
            return Err(too_large(self.location(key), bytes.len() as u64, max));
        }
        Ok(bytes)
    }
    /// Return the size of the object under `key`, or `None` if there is none.
    fn size(&self, key: &str) -> Result<Option<u64>>;
    /// List the objects under `prefix` (recursive, sorted by key).
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// List the objects under `prefix` whose key sorts strictly after `start_after`
    /// (recursive, sorted by key). The default filters [`Store::list`] (for wrappers in
    /// tests); every backend lists from the start key itself.
    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = self.list(prefix)?;
        out.retain(|o| o.key.as_str() > start_after);
        Ok(out)
    }
    /// Delete the object under `key` (succeeds if it is missing).
    fn delete(&self, key: &str) -> Result<()>;
    /// Delete every object under `prefix` and whatever empty folders that leaves.
    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let objects = self.list(prefix)?;
        for o in &objects {
            self.delete(&o.key)?;
        }
        Ok(objects.len() as u64)
    }
    /// A human-readable location for `key` (a file path or an `s3://` URL).
    fn location(&self, key: &str) -> String;
    /// List the [`Leftover`]s under `prefix` (keys starting with it): what killed writers
    /// left that `list` never shows. Backends whose writes leave nothing return none.
    fn leftovers(&self, prefix: &str) -> Result<Vec<Leftover>> {
        let _ = prefix;
        Ok(Vec::new())
    }
    /// Remove one leftover (delete the temporary, abort the upload) and whatever empty
    /// folders that leaves; succeeds if it is already gone.
    fn remove_leftover(&self, leftover: &Leftover) -> Result<()> {
        let _ = leftover;
        Ok(())
    }
    /// The full object key of `key` in an object store (S3: `prefix + key`), written into
    /// manifests as the original implementation's `:chunk/s3-key`; `None` for a directory.
    fn object_key_of(&self, key: &str) -> Option<String> {
        let _ = key;
        None
    }
    /// Store `bytes` under `key` only if no object is there; return whether it was created.
    /// Atomic against concurrent callers (directory: a hard link; S3: `If-None-Match: *`).
    /// A retried request whose first attempt was executed (reply lost) finds the object it
    /// created: the backend returns `true` when the object holds exactly `bytes`, so callers
    /// make their bytes unique (an owner id) to be told apart.
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool>;
    /// Remove the temporaries a killed writer left under `prefix` (a directory's
    /// `*.tmp-*` files), whatever their age; return how many. Object stores have none
    /// (uploads are atomic).
    fn remove_temporaries(&self, prefix: &str) -> Result<u64> {
        let _ = prefix;
        Ok(0)
    }
}

/// The error for an object larger than its reader allows ([`Store::get_max`]).
pub fn too_large(location: String, size: u64, max: u64) -> Error {
    Error::corrupt(
        "read object",
        format!("it holds {size} bytes, more than the {max} it may hold"),
    )
    .with_key(location)
    .with_hint("the backup is damaged or was written by something else; it is not read")
}

/// Given a target map (`{:path "/backups"}`, or `{:bucket "b" …}` for S3, see
/// [`s3::S3Config::from_target`]), return the store it names.
///
/// Fails with `InvalidArgument` when the map names no known backend or lacks a field.
pub fn open_target(target: &Value) -> Result<Arc<dyn Store>> {
    if !matches!(target, Value::Map(_)) {
        return Err(Error::invalid(
            "open target",
            "the target must be a map such as {:path \"/backups\"}",
        ));
    }
    match target.get("path") {
        Some(Value::String(p)) if !p.trim().is_empty() => {
            crate::options::Opts::new(target, "open target")?
                .only_keys(&["path"], "directory target")?;
            Ok(Arc::new(dir::DirStore::open(p)?))
        }
        Some(_) => Err(Error::invalid(
            "open target",
            ":path must be a non-empty string",
        )),
        None if target.get("bucket").is_some() => Ok(Arc::new(s3::S3Store::open_target(target)?)),
        None => Err(Error::invalid(
            "open target",
            "the target map needs :path (a directory) or :bucket (S3)",
        )),
    }
}

#[doc(hidden)]
pub mod conformance;
