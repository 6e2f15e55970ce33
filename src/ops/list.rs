//! `list-backups`: every backup of a database, complete or not, newest first, and the logs
//! of continuous backup ([`crate::log`]) with their chains.
//!
//! Reads only the store, never the database; understands backups written by the original
//! Clojure datacamp as well as ours. Every manifest is validated ([`Manifest::validate`]):
//! a backup whose manifest is unreadable or fails validation lists as not completed, with
//! its problems; it never makes the listing fail.
//! A log of continuous backup lists as complete: what it holds is its contiguous run of
//! segments (its problems, if any, are listed with it).

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::error::Result;
use crate::repo::checkpoint::{Checkpoint, Phase};
use crate::repo::layout;
use crate::repo::manifest::Manifest;
use crate::repo::meta::read_edn;
use crate::store::{ObjectMeta, Store};

/// One backup as the store holds it: what `list-backups` reads.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackupSummary {
    /// The backup id.
    pub backup_id: String,
    /// Whether the backup is complete (manifest says so and the marker exists).
    pub completed: bool,
    /// The manifest, when there is one.
    pub manifest: Option<Manifest>,
    /// The checkpoint, for backups without a manifest.
    pub checkpoint: Option<Checkpoint>,
    /// Creation time (manifest, else checkpoint, else oldest file), epoch millis.
    pub created_at_ms: i64,
    /// Last activity (newest file or checkpoint update), epoch millis.
    pub updated_at_ms: i64,
    /// Bytes stored under the backup's folder.
    pub stored_bytes: u64,
    /// What is wrong with its manifest (unreadable, or [`Manifest::validate`]'s problems);
    /// empty for a good or a merely incomplete backup.
    pub problems: Vec<String>,
    /// Whether it has a `complete.marker`: it finished, whatever its manifest says now
    /// (`cleanup-incomplete` never removes such a backup).
    pub marked_complete: bool,
    /// For a log of continuous backup: the log as stored (then `manifest` and
    /// `checkpoint` are `None`).
    #[serde(skip)]
    pub log: Option<Box<crate::log::read::StoredLog>>,
    /// `prune-backups` is deleting it (its tombstone is present): never complete.
    pub pruning: bool,
}

/// What list and verify say about a backup whose manifest is damaged although it has a
/// `complete.marker`.
pub const REPAIRABLE: &str =
    "the backup has a complete.marker (it finished), so cleanup-incomplete never removes it; \
its checkpoint.edn holds every chunk's checksum: repair-manifest rebuilds the manifest from it";

/// One backup as `list-backups` shows it (the Clojure API's map, the CLI's row): the
/// manifest's facts, or the checkpoint's progress for a backup without a manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listing {
    /// The backup id.
    pub backup_id: String,
    /// `full`, `incremental` (the manifest's `:backup/type`) or `log`.
    #[serde(rename = "type")]
    pub backup_type: String,
    /// Creation time, epoch millis.
    pub created_at_ms: i64,
    /// Whether the backup is complete.
    pub completed: bool,
    /// Datoms (the manifest's, else those in stored chunks).
    pub datom_count: u64,
    /// Stored bytes (the manifest's chunk bytes, else every file of the backup).
    pub size_bytes: u64,
    /// Chunks (the manifest's, else those stored so far).
    pub chunk_count: u64,
    /// Last activity, epoch millis.
    pub updated_at_ms: i64,
    /// Whether history is included (only known from a manifest).
    pub history: Option<bool>,
    /// `datacamp-native` or `datacamp-original` (only known from a manifest).
    pub format: Option<&'static str>,
    /// The source database's `:max-tx` at the backup (only known from a manifest).
    pub max_tx: Option<i64>,
    /// Its place in its chain (only known from a manifest).
    pub chain: Option<ChainFacts>,
    /// `prune-backups` is deleting it.
    pub pruning: bool,
    /// What is wrong with its manifest (see [`BackupSummary::problems`]).
    pub problems: Vec<String>,
    /// For an incomplete backup: how far it got.
    pub progress: Option<Progress>,
    /// For a log of continuous backup: what only a log has.
    pub log: Option<LogFacts>,
}

/// What `list-backups` shows of a log besides its place in the chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogFacts {
    /// Its contiguous segments.
    pub segment_count: u64,
    /// Its capture stopped cleanly (`closed.edn`).
    pub closed: bool,
    /// Why the log starts where it does.
    pub reason: String,
}

/// A backup's place in its chain, from its manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainFacts {
    /// The backup an incremental continues (`None` for a full backup).
    pub parent: Option<String>,
    /// The full backup at the chain's root (`None` for a full backup).
    pub base: Option<String>,
    /// An incremental holds the transactions after this one.
    pub after_tx: Option<i64>,
    /// Smallest and largest tx of its datoms.
    pub tx_range: Option<(i64, i64)>,
    /// Smallest and largest `:db/txInstant` (epoch ms) of its transactions.
    pub instant_range: Option<(i64, i64)>,
}

/// How far an incomplete backup got, from its checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Progress {
    /// The checkpoint's phase (`None` without a readable checkpoint).
    pub phase: Option<Phase>,
    /// Chunks stored.
    pub chunks_stored: u64,
    /// Datoms received from the database.
    pub datoms_received: u64,
    /// The error that stopped it, if recorded.
    pub error: Option<String>,
}

impl BackupSummary {
    /// The listing of this backup.
    pub fn listing(&self) -> Listing {
        if let Some(log) = &self.log {
            return self.log_listing(log);
        }
        let m = self.manifest.as_ref();
        let cp = self.checkpoint.as_ref();
        Listing {
            backup_id: self.backup_id.clone(),
            backup_type: m.map_or("full", |m| m.backup_type.as_str()).to_owned(),
            created_at_ms: self.created_at_ms,
            completed: self.completed,
            datom_count: m.map_or_else(|| cp.map_or(0, |c| c.datoms_stored), |m| m.datom_count),
            size_bytes: m.map_or(self.stored_bytes, |m| m.size_bytes),
            chunk_count: m.map_or_else(|| cp.map_or(0, |c| c.chunks.len()), |m| m.chunks.len())
                as u64,
            updated_at_ms: self.updated_at_ms,
            history: m.map(|m| m.history),
            format: m.map(|m| m.order.format_name()),
            max_tx: m.map(|m| m.max_tx),
            chain: m.map(|m| ChainFacts {
                parent: m.link.parent.clone(),
                base: m.link.base.clone(),
                after_tx: m.link.after_tx,
                tx_range: m.tx_range,
                instant_range: m.link.instant_range,
            }),
            pruning: self.pruning,
            problems: self.problems.clone(),
            progress: (!self.completed).then(|| Progress {
                phase: cp.map(|c| c.phase),
                chunks_stored: cp.map_or(0, |c| c.chunks.len()) as u64,
                datoms_received: cp.map_or(0, |c| c.datoms_received),
                error: cp.and_then(|c| c.error.clone()),
            }),
            log: None,
        }
    }

    fn log_listing(&self, log: &crate::log::read::StoredLog) -> Listing {
        let h = &log.head;
        Listing {
            backup_id: self.backup_id.clone(),
            backup_type: "log".to_owned(),
            created_at_ms: self.created_at_ms,
            completed: self.completed,
            datom_count: log.datom_count(),
            size_bytes: log.segment_bytes(),
            chunk_count: log.segments.len() as u64,
            updated_at_ms: self.updated_at_ms,
            history: Some(h.history),
            format: None,
            max_tx: Some(log.through),
            chain: Some(ChainFacts {
                parent: Some(h.parent.clone()),
                base: Some(h.base.clone()),
                after_tx: Some(h.after_tx),
                tx_range: (!log.segments.is_empty()).then_some((h.after_tx + 1, log.through)),
                instant_range: log.instant_range(),
            }),
            pruning: self.pruning,
            problems: log.problems.clone(),
            progress: None,
            log: Some(LogFacts {
                segment_count: log.segments.len() as u64,
                closed: log.closed.is_some(),
                reason: h.reason.clone(),
            }),
        }
    }
}

fn millis(o: &ObjectMeta) -> i64 {
    o.modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// Given a store and a database id, return its backups, newest first, incomplete included.
pub fn list(store: &dyn Store, database_id: &str) -> Result<Vec<BackupSummary>> {
    layout::check_segment("database-id", database_id)?;
    let mut by_backup: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for o in store.list(&layout::database_prefix(database_id))? {
        if let Some(id) = layout::backup_id_of(database_id, &o.key) {
            by_backup.entry(id.to_owned()).or_default().push(o);
        }
    }
    let mut out = Vec::with_capacity(by_backup.len());
    for (id, objects) in by_backup {
        out.push(summarize(store, database_id, &id, &objects)?);
    }
    out.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| b.backup_id.cmp(&a.backup_id))
    });
    Ok(out)
}

pub(crate) fn summarize(
    store: &dyn Store,
    db: &str,
    id: &str,
    objects: &[ObjectMeta],
) -> Result<BackupSummary> {
    let has = |name: &str| {
        let key = layout::backup_file(db, id, name);
        objects.iter().any(|o| o.key == key)
    };
    if has(layout::LOG_HEAD) {
        if let Ok(log) = crate::log::read::read_listed(store, db, id, objects) {
            let pruning = has(layout::PRUNE_TOMBSTONE);
            return Ok(BackupSummary {
                backup_id: id.to_owned(),
                completed: !pruning,
                manifest: None,
                checkpoint: None,
                created_at_ms: log.head.created_at_ms,
                updated_at_ms: log.updated_at_ms.max(log.head.created_at_ms),
                stored_bytes: log.stored_bytes,
                problems: Vec::new(),
                marked_complete: true,
                log: Some(Box::new(log)),
                pruning,
            });
        }
    }
    // An unreadable or invalid manifest makes the backup not completed, not the listing fail.
    let marked_complete = has(layout::COMPLETE_MARKER);
    let mut problems = Vec::new();
    // A finished backup's manifest is read even when the listing does not show it (a link
    // or a FIFO in its place), so that the problem is named.
    let manifest = if has(layout::MANIFEST) || marked_complete {
        match read_edn(store, &layout::backup_file(db, id, layout::MANIFEST))
            .and_then(|v| Manifest::from_value(&v))
        {
            Ok(m) => {
                problems.extend(m.validate(db, id).iter().map(|p| p.to_string()));
                Some(m)
            }
            Err(e) if e.kind == crate::error::ErrorKind::NotFound => {
                problems.push("manifest.edn is missing".into());
                None
            }
            Err(e) => {
                problems.push(format!("manifest.edn is unreadable: {}", e.message));
                None
            }
        }
    } else {
        None
    };
    if marked_complete && manifest.is_none() {
        problems.push(REPAIRABLE.into());
    }
    let checkpoint = if manifest.is_none() && has(layout::CHECKPOINT) {
        read_edn(store, &layout::backup_file(db, id, layout::CHECKPOINT))
            .ok()
            .and_then(|v| Checkpoint::from_value(&v))
    } else {
        None
    };
    let pruning = has(layout::PRUNE_TOMBSTONE);
    let completed = manifest.as_ref().is_some_and(|m| m.completed)
        && marked_complete
        && problems.is_empty()
        && !pruning;
    let oldest = objects.iter().map(millis).min().unwrap_or(0);
    let newest = objects.iter().map(millis).max().unwrap_or(0);
    let created_at_ms = manifest
        .as_ref()
        .map(|m| m.created_at_ms)
        .or_else(|| checkpoint.as_ref().map(|c| c.started_at_ms))
        .unwrap_or(oldest);
    let updated_at_ms = newest.max(checkpoint.as_ref().map_or(0, |c| c.updated_at_ms));
    Ok(BackupSummary {
        backup_id: id.to_owned(),
        completed,
        manifest,
        checkpoint,
        created_at_ms,
        updated_at_ms,
        stored_bytes: objects.iter().map(|o| o.size).sum(),
        problems,
        marked_complete,
        log: None,
        pruning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, history};

    #[test]
    fn complete_and_incomplete_backups_list_newest_first() {
        let (mem, store) = testing::store();
        let a = testing::backup(&store, testing::options("db", 1 << 20, 5), &history(5));
        let b = testing::backup(&store, testing::options("db", 1 << 20, 6), &history(6));
        testing::backup(&store, testing::options("other", 1 << 20, 2), &history(2));
        // b loses its manifest: incomplete, with its checkpoint's progress.
        mem.delete(&layout::backup_file(
            "db",
            &b.manifest.backup_id,
            layout::MANIFEST,
        ))
        .unwrap();
        let listed = list(store.as_ref(), "db").unwrap();
        let ids: Vec<&str> = listed.iter().map(|s| s.backup_id.as_str()).collect();
        assert_eq!(
            ids,
            [b.manifest.backup_id.as_str(), a.manifest.backup_id.as_str()]
        );
        assert!(!listed[0].completed && listed[0].checkpoint.is_some());
        assert!(listed[1].completed);
        assert_eq!(
            listed[1].manifest.as_ref().unwrap().datom_count,
            a.manifest.datom_count
        );
        // An unreadable manifest makes the backup incomplete, not the listing fail.
        mem.put(
            &layout::backup_file("db", &a.manifest.backup_id, layout::MANIFEST),
            b"{:backup/id",
        )
        .unwrap();
        let listed = list(store.as_ref(), "db").unwrap();
        assert!(listed.iter().all(|s| !s.completed));
        assert!(list(store.as_ref(), "../x").is_err());
    }
}
