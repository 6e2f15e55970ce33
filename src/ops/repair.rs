//! `repair-manifest`: rebuild the manifest of a backup that finished but whose manifest was
//! lost or damaged.
//!
//! A backup writes `checkpoint.edn` (phase `:committing`, every chunk with its checksums)
//! before its manifest, and `complete.marker` after it (then phase `:complete`). So a backup with a marker whose
//! manifest is unreadable or invalid still has everything the manifest said: the checkpoint
//! lists the chunks, `config.edn` the snapshot. Repair rebuilds the manifest from them, but
//! only after every chunk has been read, checked against the checkpoint's checksums,
//! decoded and checked for content ([`super::check`]); the repaired manifest must pass
//! [`Manifest::validate`]. Backups of the original implementation (whose checkpoint lists
//! no chunks) cannot be repaired.

use crate::chain::state;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Value};
use crate::repo::checkpoint::{Checkpoint, Phase};
use crate::repo::layout;
use crate::repo::manifest::{ChunkOrder, Manifest, FORMAT_VERSION};
use crate::repo::meta::{read_edn, read_edn_opt, write_edn};
use crate::store::Store;

use super::check::{self, ContentCheck};

const OP: &str = "repair manifest";

/// The option keys a caller of `repair-manifest` may pass (checked by
/// [`crate::options::check_keys`]).
pub const KEYS: &[&str] = &["database-id"];

/// What `repair-manifest` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// The backup id.
    pub backup_id: String,
    /// Whether a new manifest was written (false: the manifest was good already).
    pub repaired: bool,
    /// Chunks of the backup (all read and checked).
    pub chunk_count: u64,
    /// Datoms of the backup (all decoded and checked).
    pub datom_count: u64,
}

/// Given a finished backup (it has a `complete.marker`), rebuild its manifest from its
/// checkpoint and `config.edn` if the manifest is missing, unreadable or invalid; leave a
/// good manifest alone.
///
/// Errors: `NotFound` for no backup; `Conflict` for a backup that did not finish (resume
/// it instead); `Corrupt` when the checkpoint does not list the finished backup's chunks or
/// a chunk fails its checks (nothing is written then).
pub fn repair_manifest(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
) -> Result<RepairReport> {
    layout::check_segment("database-id", database_id)?;
    layout::check_segment("backup-id", backup_id)?;
    let key = |name: &str| layout::backup_file(database_id, backup_id, name);
    if store
        .list(&layout::backup_prefix(database_id, backup_id))?
        .is_empty()
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            OP,
            format!("no backup {backup_id} for database {database_id}"),
        ));
    }
    if store.size(&key(layout::COMPLETE_MARKER))?.is_none() {
        return Err(Error::new(
            ErrorKind::Conflict,
            OP,
            format!("backup {backup_id} did not finish (no complete.marker)"),
        )
        .with_hint("resume it with resume-backup, or remove it with cleanup-incomplete"));
    }
    let current = read_edn(store, &key(layout::MANIFEST))
        .and_then(|v| Manifest::from_value(&v))
        .and_then(|m| m.check(database_id, backup_id).map(|()| m));
    if let Ok(m) = current {
        return Ok(RepairReport {
            backup_id: backup_id.to_owned(),
            repaired: false,
            chunk_count: m.chunks.len() as u64,
            datom_count: m.datom_count,
        });
    }
    let unusable = |why: &str| {
        Error::corrupt(OP, format!("backup {backup_id} cannot be repaired: {why}"))
            .with_key(store.location(&key(layout::CHECKPOINT)))
    };
    let checkpoint = read_edn(store, &key(layout::CHECKPOINT))
        .ok()
        .and_then(|v| Checkpoint::from_value(&v))
        .ok_or_else(|| unusable("its checkpoint.edn is missing or unreadable"))?;
    if !matches!(checkpoint.phase, Phase::Committing | Phase::Complete)
        || checkpoint.backup_id != backup_id
        || checkpoint.database_id != database_id
        || checkpoint.chunks.is_empty()
    {
        return Err(unusable(
            "its checkpoint does not record a finished backup of this database (one written by the original implementation cannot be repaired)",
        ));
    }
    let config = read_edn_opt(store, &key(layout::CONFIG))?
        .ok_or_else(|| unusable("its config.edn is missing"))?;
    // A chain link's manifest also holds its place in the chain and its :db/noHistory
    // state, which no checkpoint records.
    let incremental =
        matches!(config.get("backup/type"), Some(Value::Keyword(n)) if &*n.name == "incremental");
    // (:db/txInstant, which Datahike marks :db/noHistory, has no state.)
    let with_state = config
        .get("schema/no-history-attrs")
        .and_then(Value::as_seq)
        .is_some_and(|s| {
            // Idents suffice: an `:attribute-refs?` database lists each attribute's id too.
            s.iter().any(|v| {
                matches!(v, Value::Keyword(n) if !state::is_tx_instant(&Attr::Keyword(n.clone()), None))
            })
        });
    if incremental || with_state {
        return Err(unusable(
            "it is an incremental backup or holds :db/noHistory state, which its checkpoint does not record; take a new full backup",
        ));
    }
    let compression = match config.get("backup/compression") {
        Some(Value::Keyword(n)) => n.name.to_string(),
        _ => "gzip".to_owned(),
    };
    let long = |k: &str| config.get(k).and_then(Value::as_long).unwrap_or(0);
    let chunks = checkpoint.chunks;
    let tx_range = chunks
        .iter()
        .filter_map(|c| c.tx_range)
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let manifest = Manifest {
        backup_id: backup_id.to_owned(),
        database_id: database_id.to_owned(),
        backup_type: "full".into(),
        format_version: FORMAT_VERSION.into(),
        encryption: None,
        created_at_ms: checkpoint.started_at_ms,
        completed_at_ms: checkpoint.updated_at_ms.max(checkpoint.started_at_ms),
        completed: true,
        datahike_version: config
            .get("datahike/version")
            .and_then(Value::as_str)
            .map(String::from),
        compression,
        history: config
            .get("backup/history?")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        order: ChunkOrder::Restore,
        datom_count: chunks.iter().map(|c| c.datom_count).sum(),
        stated_chunk_count: Some(chunks.len() as u64),
        size_bytes: chunks.iter().map(|c| c.size_bytes).sum(),
        tx_range,
        max_eid: long("stats/max-eid"),
        max_tx: long("stats/max-tx"),
        chunks,
        link: crate::repo::link::LinkMeta {
            no_history: Some(Vec::new()),
            ..Default::default()
        },
    };
    manifest.check(database_id, backup_id)?;
    // Every chunk read, checked against the checkpoint's checksums and decoded.
    let prefix = layout::backup_prefix(database_id, backup_id);
    let mut content = ContentCheck::new(&manifest, Some(&config));
    for meta in &manifest.chunks {
        let decoded = check::fetch_checked(store, &prefix, meta, None)?;
        content.chunk(meta, &decoded)?;
    }
    content.finish()?;
    write_edn(store, &key(layout::MANIFEST), &manifest.to_value())?;
    Ok(RepairReport {
        backup_id: backup_id.to_owned(),
        repaired: true,
        chunk_count: manifest.chunks.len() as u64,
        datom_count: manifest.datom_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, history};

    #[test]
    fn a_finished_backup_with_a_damaged_manifest_is_rebuilt_identically() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 600, 30), &history(30));
        let id = r.manifest.backup_id.clone();
        let mkey = layout::backup_file("db", &id, layout::MANIFEST);
        let good = mem.get(&mkey).unwrap();
        assert!(!repair_manifest(&mem, "db", &id).unwrap().repaired);
        let mut bad = good.clone();
        bad[3] = 0xFF;
        mem.put(&mkey, &bad).unwrap();
        let listed = crate::ops::list::list(&mem, "db").unwrap();
        assert!(!listed[0].completed && listed[0].marked_complete);
        let report = repair_manifest(&mem, "db", &id).unwrap();
        assert!(report.repaired);
        assert_eq!(report.datom_count, r.manifest.datom_count);
        let back = Manifest::from_value(&read_edn(&mem, &mkey).unwrap()).unwrap();
        assert_eq!(back.chunks, r.manifest.chunks);
        assert_eq!(
            (back.datom_count, back.max_eid, back.max_tx, back.tx_range),
            (
                r.manifest.datom_count,
                r.manifest.max_eid,
                r.manifest.max_tx,
                r.manifest.tx_range
            )
        );
        assert!(crate::ops::verify::verify(&mem, "db", &id, true, None)
            .unwrap()
            .success());
        assert_eq!(
            testing::restore(&store, "db", &id).unwrap(),
            testing::stored_datoms(&mem, &r)
        );
    }

    #[test]
    fn a_damaged_chunk_or_an_unfinished_backup_is_not_repaired() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 600, 30), &history(30));
        let id = r.manifest.backup_id.clone();
        let mkey = layout::backup_file("db", &id, layout::MANIFEST);
        mem.delete(&mkey).unwrap();
        let c = layout::chunk_key("db", &id, 1);
        let mut bytes = mem.get(&c).unwrap();
        bytes[20] ^= 1;
        mem.put(&c, &bytes).unwrap();
        let err = repair_manifest(&mem, "db", &id).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        assert!(err.message.contains("chunk 1 fails its SHA-256"), "{err}");
        assert_eq!(mem.size(&mkey).unwrap(), None, "nothing was written");
        mem.delete(&layout::backup_file("db", &id, layout::COMPLETE_MARKER))
            .unwrap();
        assert_eq!(
            repair_manifest(&mem, "db", &id).unwrap_err().kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            repair_manifest(&mem, "db", "nope").unwrap_err().kind,
            ErrorKind::NotFound
        );
    }
}
