//! Looking into a stored backup without restoring it: its metadata files, a summary of
//! what it holds (`inspect`), and its chunks' datoms (`cat`). Used by the operator CLI and
//! by the Clojure API's `datacamp.metadata`; reads only the store.
//!
//! Every chunk read here passes the same check as verify and restore ([`super::check`]):
//! a damaged chunk is an error naming it, never silently wrong datoms.

use std::sync::Arc;

use serde::Serialize;

use crate::crypto::envelope::{self, BackupCipher, KeySpec};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Name, Value};
use crate::pipeline::chunk::DecodedChunk;
use crate::repo::checkpoint::Checkpoint;
use crate::repo::layout;
use crate::repo::manifest::{ChunkMeta, ChunkOrder, Manifest};
use crate::repo::meta::{read_edn, read_edn_opt};
use crate::store::Store;

use super::check;
use super::list::{summarize, BackupSummary};
use crate::store::ObjectMeta;

/// The largest metadata file (manifest, config, checkpoint) read: 64 MiB, far above what a
/// backup writes (a manifest entry is ~400 bytes per chunk).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// Given a store and a key relative to its root, read and parse the EDN file there.
///
/// Errors: `NotFound` when it is missing; `Corrupt` (naming the file) when it is larger
/// than [`MAX_METADATA_BYTES`], not UTF-8 or not EDN; the store's errors otherwise.
pub fn read_metadata(store: &dyn Store, key: &str) -> Result<Value> {
    let op = "read metadata";
    match store.size(key)? {
        None => {
            Err(Error::new(ErrorKind::NotFound, op, "no such file").with_key(store.location(key)))
        }
        Some(n) if n > MAX_METADATA_BYTES => Err(Error::corrupt(
            op,
            format!(
                "the file has {n} bytes, more than a metadata file may have ({MAX_METADATA_BYTES})"
            ),
        )
        .with_key(store.location(key))),
        Some(_) => read_edn(store, key),
    }
}

/// Given a backup and the name of one of its metadata files (`manifest.edn`,
/// `config.edn`, `checkpoint.edn`), read and parse it ([`read_metadata`]).
pub fn read_backup_file(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
    name: &str,
) -> Result<Value> {
    layout::check_segment("database-id", database_id)?;
    layout::check_segment("backup-id", backup_id)?;
    if ![layout::MANIFEST, layout::CONFIG, layout::CHECKPOINT].contains(&name) {
        return Err(Error::invalid(
            "read metadata",
            format!("{name:?} is not a metadata file of a backup"),
        )
        .with_hint("one of manifest.edn, config.edn, checkpoint.edn"));
    }
    read_metadata(store, &layout::backup_file(database_id, backup_id, name))
}

/// One backup of a chain, as [`Inspection::chain`] lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainLink {
    /// The backup id.
    pub backup_id: String,
    /// `full` (or, once backups form chains, the link's type).
    pub backup_type: String,
    /// The transactions it covers.
    pub tx_range: Option<(i64, i64)>,
}

/// What `inspect` found about one backup.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspection {
    /// The database id.
    pub database_id: String,
    /// The backup id.
    pub backup_id: String,
    /// Whether the backup is complete (manifest says so and the marker exists).
    pub complete: bool,
    /// The manifest, when there is a readable one.
    pub manifest: Option<Manifest>,
    /// Why the manifest could not be read, when it exists but is unreadable.
    pub manifest_error: Option<String>,
    /// The checkpoint, when there is a readable one.
    pub checkpoint: Option<Checkpoint>,
    /// Files (objects) stored under the backup.
    pub objects: u64,
    /// Bytes stored under the backup.
    pub stored_bytes: u64,
    /// The `:db/txInstant` of its first and last transaction (epoch millis), for backups
    /// in restore order whose transactions carry one; read from the first and last chunks.
    pub time_range: Option<(i64, i64)>,
    /// The backups this one needs for a restore, base first, itself last. A full backup is
    /// a chain of one.
    pub chain: Vec<ChainLink>,
}

/// Given a backup, return what its metadata says about it (see [`Inspection`]); reads the
/// manifest, the checkpoint, `config.edn`, and (for the time range) the first and last
/// chunks, each checked like verify checks it.
///
/// Fails (`NotFound`) when nothing is stored under the backup id; a damaged first or last
/// chunk fails with its `Corrupt` error.
pub fn inspect(store: &dyn Store, database_id: &str, backup_id: &str) -> Result<Inspection> {
    let (objects, summary) = stored(store, database_id, backup_id)?;
    let manifest_error = if summary.manifest.is_none()
        && objects
            .iter()
            .any(|o| o.key == layout::backup_file(database_id, backup_id, layout::MANIFEST))
    {
        read_backup_file(store, database_id, backup_id, layout::MANIFEST)
            .and_then(|v| Manifest::from_value(&v))
            .err()
            .map(|e| e.to_string())
    } else {
        None
    };
    let checkpoint = match summary.checkpoint {
        Some(c) => Some(c),
        None => read_edn_opt(
            store,
            &layout::backup_file(database_id, backup_id, layout::CHECKPOINT),
        )
        .ok()
        .flatten()
        .and_then(|v| Checkpoint::from_value(&v)),
    };
    let prefix = layout::backup_prefix(database_id, backup_id);
    let time_range = match &summary.manifest {
        // (An encrypted backup's chunks need its key: no time range read from them.)
        Some(m)
            if m.order == ChunkOrder::Restore && !m.chunks.is_empty() && m.encryption.is_none() =>
        {
            let config = read_edn_opt(
                store,
                &layout::backup_file(database_id, backup_id, layout::CONFIG),
            )
            .ok()
            .flatten();
            time_range(store, &prefix, m, &tx_instant_attr(config.as_ref()))?
        }
        _ => None,
    };
    Ok(Inspection {
        database_id: database_id.to_owned(),
        backup_id: backup_id.to_owned(),
        complete: summary.completed,
        chain: summary.manifest.as_ref().map(chain).unwrap_or_default(),
        manifest: summary.manifest,
        manifest_error,
        checkpoint,
        objects: objects.len() as u64,
        stored_bytes: summary.stored_bytes,
        time_range,
    })
}

/// The objects of a backup and its summary; `NotFound` when nothing is stored.
fn stored(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
) -> Result<(Vec<ObjectMeta>, BackupSummary)> {
    layout::check_segment("database-id", database_id)?;
    layout::check_segment("backup-id", backup_id)?;
    let prefix = layout::backup_prefix(database_id, backup_id);
    let objects = store.list(&prefix)?;
    if objects.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            "inspect backup",
            format!("no backup {backup_id} for database {database_id}"),
        )
        .with_key(store.location(&prefix)));
    }
    let mut summary = summarize(store, database_id, backup_id, &objects)?;
    // A log of continuous backup: its segments are its chunks.
    if let Some(log) = &summary.log {
        summary.manifest = Some(log.link_manifest());
    }
    Ok((objects, summary))
}

/// Given a backup, return the chunks that can be read ([`read_chunk`]): the manifest's,
/// else (an incomplete backup) those its checkpoint records as stored. Reads only metadata;
/// `NotFound` when nothing is stored under the backup id.
pub fn chunks(store: &dyn Store, database_id: &str, backup_id: &str) -> Result<Vec<ChunkMeta>> {
    let (_, summary) = stored(store, database_id, backup_id)?;
    Ok(match (summary.manifest, summary.checkpoint) {
        (Some(m), _) => m.chunks,
        (None, Some(c)) => c.chunks,
        (None, None) => Vec::new(),
    })
}

/// The chain of `manifest`'s backup, base first.
///
/// Hook for chained (incremental) backups: a manifest that names its parent extends this
/// walk (read the parent's manifest, prepend it, until a full backup), and a broken link
/// ends the chain with an error. Today every backup is full: a chain of one.
fn chain(manifest: &Manifest) -> Vec<ChainLink> {
    vec![ChainLink {
        backup_id: manifest.backup_id.clone(),
        backup_type: manifest.backup_type.clone(),
        tx_range: manifest.tx_range,
    }]
}

/// The attribute under which the backup's datoms carry `:db/txInstant`, from `config.edn`
/// (`:schema/tx-instant-attr`: the keyword, or its id in `:attribute-refs? true` dbs).
fn tx_instant_attr(config: Option<&Value>) -> Attr {
    match config.and_then(|c| c.get("schema/tx-instant-attr")) {
        Some(Value::Long(id)) => Attr::Id(*id),
        Some(Value::Keyword(n)) => Attr::Keyword(n.clone()),
        _ => Attr::Keyword(Name::new(Some("db"), "txInstant")),
    }
}

fn instant_of(d: &Datom, attr: &Attr) -> Option<i64> {
    match (&d.v, d.added && d.e == d.tx && d.a == *attr) {
        (Value::Inst(ms), true) => Some(*ms),
        _ => None,
    }
}

/// In restore order every transaction starts with its txInstant datom: the first one is
/// in the first chunk, the last one in the last chunk or the one before (a transaction
/// spanning chunks). `None` when the transactions carry none (`:keep-history? false`).
fn time_range(
    store: &dyn Store,
    prefix: &str,
    m: &Manifest,
    attr: &Attr,
) -> Result<Option<(i64, i64)>> {
    let first = check::fetch_checked(store, prefix, &m.chunks[0], None)?;
    let Some(start) = first.datoms.iter().find_map(|d| instant_of(d, attr)) else {
        return Ok(None);
    };
    let last = |datoms: &[Datom]| datoms.iter().rev().find_map(|d| instant_of(d, attr));
    for meta in m.chunks.iter().rev().take(2) {
        let end = if meta.id == m.chunks[0].id {
            last(&first.datoms)
        } else {
            last(&check::fetch_checked(store, prefix, meta, None)?.datoms)
        };
        if let Some(end) = end {
            return Ok(Some((start, end)));
        }
    }
    Ok(None)
}

/// The chunks of a backup that `cat` can read: the manifest's, else (an incomplete
/// backup) those its checkpoint records as stored.
pub fn readable_chunks(inspection: &Inspection) -> Vec<ChunkMeta> {
    match (&inspection.manifest, &inspection.checkpoint) {
        (Some(m), _) => m.chunks.clone(),
        (None, Some(c)) => c.chunks.clone(),
        (None, None) => Vec::new(),
    }
}

/// Read one chunk of a backup, checked (size, SHA-256, id and datom count) and decoded.
pub fn read_chunk(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
    meta: &ChunkMeta,
    cipher: Option<&BackupCipher>,
) -> Result<DecodedChunk> {
    check::fetch_checked(
        store,
        &layout::backup_prefix(database_id, backup_id),
        meta,
        cipher,
    )
}

/// Given a backup and the key given (if any), return the cipher its chunks are read with
/// ([`read_chunk`]): `None` for a plain backup read without a key; the errors of
/// [`envelope::resolve`] otherwise (`WrongKey` for an encrypted backup read without its
/// key or with another, `InvalidArgument` for a plain one read with a key).
pub fn cipher(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
    key: Option<&KeySpec>,
) -> Result<Option<Arc<BackupCipher>>> {
    let (_, summary) = stored(store, database_id, backup_id)?;
    let encryption = summary
        .manifest
        .as_ref()
        .and_then(|m| m.encryption.as_ref());
    envelope::resolve(encryption, key, database_id, backup_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, history};

    #[test]
    fn inspect_reports_the_manifest_time_range_and_chain() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 600, 30), &history(30));
        let id = r.manifest.backup_id.clone();
        let i = inspect(store.as_ref(), "db", &id).unwrap();
        assert!(i.complete);
        assert_eq!(i.manifest.as_ref(), Some(&r.manifest));
        assert_eq!(
            i.checkpoint.as_ref().map(|c| c.phase),
            Some(crate::repo::checkpoint::Phase::Complete)
        );
        // history(30): tx t has txInstant 1_700_000_000_000 + t.
        assert_eq!(i.time_range, Some((1_700_000_000_001, 1_700_000_000_030)));
        assert_eq!(i.chain.len(), 1);
        assert_eq!(i.chain[0].tx_range, r.manifest.tx_range);
        let all: Vec<Datom> = readable_chunks(&i)
            .iter()
            .flat_map(|c| {
                read_chunk(store.as_ref(), "db", &id, c, None)
                    .unwrap()
                    .datoms
            })
            .collect();
        assert_eq!(all, testing::stored_datoms(&mem, &r));
        // A damaged chunk is an error naming it, not wrong datoms.
        let key = layout::chunk_key("db", &id, 1);
        let mut bytes = mem.get(&key).unwrap();
        bytes[20] ^= 1;
        mem.put(&key, &bytes).unwrap();
        let err = read_chunk(store.as_ref(), "db", &id, &r.manifest.chunks[1], None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert_eq!(
            inspect(store.as_ref(), "db", "none").unwrap_err().kind,
            ErrorKind::NotFound
        );
    }

    #[test]
    fn metadata_files_are_read_size_limited() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 600, 5), &history(5));
        let id = r.manifest.backup_id.clone();
        let v = read_backup_file(store.as_ref(), "db", &id, layout::MANIFEST).unwrap();
        assert_eq!(Manifest::from_value(&v).unwrap(), r.manifest);
        let err = read_backup_file(store.as_ref(), "db", &id, "chunks/x").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        let err = read_metadata(store.as_ref(), "db/nothing.edn").unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        mem.put("db/big.edn", &vec![b' '; MAX_METADATA_BYTES as usize + 1])
            .unwrap();
        let err = read_metadata(store.as_ref(), "db/big.edn").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert!(err.message.contains("more than a metadata file"), "{err}");
    }
}
