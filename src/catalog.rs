//! Operations on stored backups: list, verify, clean up incomplete ones.
//!
//! They read only the store (never the database) and understand backups written by the
//! original Clojure datacamp as well as ours.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{chunk, edn};
use crate::layout;
use crate::manifest::Manifest;
use crate::model::{kw_map, Value};
use crate::store::{ObjectMeta, Store};

/// One backup as `list-backups` shows it.
#[derive(Clone, Debug, PartialEq)]
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
}

impl BackupSummary {
    /// The map `list-backups` returns for this backup.
    pub fn to_value(&self) -> Value {
        let m = self.manifest.as_ref();
        let cp = self.checkpoint.as_ref();
        let mut entries = vec![
            ("backup-id", Value::str(&self.backup_id)),
            (
                "type",
                Value::kw(m.map_or("full", |m| m.backup_type.as_str())),
            ),
            ("created-at", Value::Inst(self.created_at_ms)),
            ("completed?", Value::Bool(self.completed)),
            (
                "datom-count",
                Value::Long(
                    m.map_or_else(|| cp.map_or(0, |c| c.datoms_stored), |m| m.datom_count) as i64,
                ),
            ),
            (
                "size-bytes",
                Value::Long(m.map_or(self.stored_bytes, |m| m.size_bytes) as i64),
            ),
            (
                "chunk-count",
                Value::Long(
                    m.map_or_else(|| cp.map_or(0, |c| c.chunks.len()), |m| m.chunks.len()) as i64,
                ),
            ),
            ("updated-at", Value::Inst(self.updated_at_ms)),
        ];
        if let Some(m) = m {
            entries.push(("history?", Value::Bool(m.history)));
            entries.push((
                "format",
                Value::kw(match m.order {
                    crate::manifest::ChunkOrder::Restore => "datacamp-native",
                    crate::manifest::ChunkOrder::Eavt => "datacamp-original",
                }),
            ));
        }
        if !self.completed {
            let progress = kw_map([
                ("phase", cp.map_or(Value::Nil, |c| Value::kw(phase_name(c)))),
                (
                    "chunks-stored",
                    Value::Long(cp.map_or(0, |c| c.chunks.len()) as i64),
                ),
                (
                    "datoms-received",
                    Value::Long(cp.map_or(0, |c| c.datoms_received) as i64),
                ),
                (
                    "error",
                    cp.and_then(|c| c.error.as_deref())
                        .map_or(Value::Nil, Value::str),
                ),
            ]);
            entries.push(("progress", progress));
        }
        kw_map(entries)
    }
}

fn phase_name(c: &Checkpoint) -> &'static str {
    use crate::checkpoint::Phase::*;
    match c.phase {
        Ingest => "ingest",
        Writing => "writing",
        Committing => "committing",
        Aborted => "aborted",
    }
}

fn millis(o: &ObjectMeta) -> i64 {
    o.modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

fn read_edn(store: &dyn Store, key: &str) -> Result<Value> {
    let bytes = store.get(key)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Error::corrupt("read metadata", e.to_string()).with_key(store.location(key))
    })?;
    edn::parse(text).map_err(|e| e.with_key(store.location(key)))
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

fn summarize(
    store: &dyn Store,
    db: &str,
    id: &str,
    objects: &[ObjectMeta],
) -> Result<BackupSummary> {
    let has = |name: &str| {
        let key = layout::backup_file(db, id, name);
        objects.iter().any(|o| o.key == key)
    };
    // An unreadable manifest or checkpoint makes the backup incomplete, not the listing fail.
    let manifest = if has(layout::MANIFEST) {
        read_edn(store, &layout::backup_file(db, id, layout::MANIFEST))
            .and_then(|v| Manifest::from_value(&v))
            .ok()
    } else {
        None
    };
    let checkpoint = if manifest.is_none() && has(layout::CHECKPOINT) {
        read_edn(store, &layout::backup_file(db, id, layout::CHECKPOINT))
            .ok()
            .and_then(|v| Checkpoint::from_value(&v))
    } else {
        None
    };
    let completed = manifest.as_ref().is_some_and(|m| m.completed) && has(layout::COMPLETE_MARKER);
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
    })
}

/// Given a backup, check every chunk's presence, size and SHA-256; with `deep`, also decode
/// every chunk and check its id and datom count against the manifest. Returns the report map
/// (`:success` false with `:problems` for a bad or incomplete backup); fails only when the
/// backup does not exist or the store cannot be read.
pub fn verify(store: &dyn Store, database_id: &str, backup_id: &str, deep: bool) -> Result<Value> {
    layout::check_segment("database-id", database_id)?;
    layout::check_segment("backup-id", backup_id)?;
    let prefix = layout::backup_prefix(database_id, backup_id);
    let objects = store.list(&prefix)?;
    if objects.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            "verify backup",
            format!("no backup {backup_id} for database {database_id}"),
        )
        .with_key(store.location(&prefix)));
    }
    let mut problems: Vec<String> = Vec::new();
    let manifest_key = layout::backup_file(database_id, backup_id, layout::MANIFEST);
    let manifest = match read_edn(store, &manifest_key).and_then(|v| Manifest::from_value(&v)) {
        Ok(m) => Some(m),
        Err(e) if e.kind == ErrorKind::NotFound => {
            problems.push(
                "backup is incomplete: no manifest.edn (interrupted or still running)".into(),
            );
            None
        }
        Err(e) => {
            problems.push(format!("manifest.edn is unreadable: {e}"));
            None
        }
    };
    let marker = layout::backup_file(database_id, backup_id, layout::COMPLETE_MARKER);
    let complete =
        manifest.as_ref().is_some_and(|m| m.completed) && objects.iter().any(|o| o.key == marker);
    if manifest.is_some() && !complete {
        problems.push("backup is incomplete: no complete.marker or :backup/completed false".into());
    }
    let chunks = manifest.as_ref().map_or(&[][..], |m| &m.chunks[..]);
    let (mut present, mut sums_ok, mut datoms) = (true, true, 0u64);
    for c in chunks {
        let key = format!("{prefix}{}", c.key);
        let Some(obj) = objects.iter().find(|o| o.key == key) else {
            present = false;
            problems.push(format!("chunk {} is missing ({})", c.id, c.key));
            continue;
        };
        if c.size_bytes != 0 && obj.size != c.size_bytes {
            sums_ok = false;
            problems.push(format!(
                "chunk {} has {} bytes, the manifest says {}",
                c.id, obj.size, c.size_bytes
            ));
            continue;
        }
        let bytes = store.get(&key)?;
        if chunk::sha256_hex(&bytes) != c.checksum {
            sums_ok = false;
            problems.push(format!(
                "chunk {} fails its SHA-256 checksum ({})",
                c.id, c.key
            ));
            continue;
        }
        if deep {
            match chunk::decode_chunk(&bytes) {
                Ok(d) if d.id != c.id as i64 => {
                    problems.push(format!("chunk {} holds :chunk/id {}", c.id, d.id))
                }
                Ok(d) if c.datom_count != 0 && d.datoms.len() as u64 != c.datom_count => problems
                    .push(format!(
                        "chunk {} holds {} datoms, the manifest says {}",
                        c.id,
                        d.datoms.len(),
                        c.datom_count
                    )),
                Ok(d) => datoms += d.datoms.len() as u64,
                Err(e) => problems.push(format!("chunk {} does not decode: {e}", c.id)),
            }
        }
    }
    if let Some(m) = &manifest {
        let sum: u64 = chunks.iter().map(|c| c.datom_count).sum();
        if sum != m.datom_count {
            problems.push(format!(
                "chunk datom counts add up to {sum}, :stats/datom-count is {}",
                m.datom_count
            ));
        }
        if deep && present && sums_ok && datoms != m.datom_count {
            problems.push(format!(
                "chunks decode to {datoms} datoms, the manifest says {}",
                m.datom_count
            ));
        }
    }
    let mut report = vec![
        ("success", Value::Bool(problems.is_empty())),
        ("backup-id", Value::str(backup_id)),
        ("database-id", Value::str(database_id)),
        ("complete?", Value::Bool(complete)),
        ("chunk-count", Value::Long(chunks.len() as i64)),
        (
            "all-chunks-present",
            Value::Bool(manifest.is_some() && present),
        ),
        (
            "checksums-valid",
            Value::Bool(manifest.is_some() && present && sums_ok),
        ),
        ("deep?", Value::Bool(deep)),
    ];
    if deep {
        report.push(("datoms-verified", Value::Long(datoms as i64)));
    }
    report.push((
        "problems",
        Value::Vector(problems.iter().map(|p| Value::str(p)).collect()),
    ));
    Ok(kw_map(report))
}

/// Remove the incomplete backups of `database_id` whose last activity is older than
/// `cutoff_ms` (epoch millis), and abort the unfinished uploads under the database's prefix
/// started before it ([`Store::abort_stale_uploads`]). Complete backups are never touched.
/// Returns `{:removed [ids] :kept-incomplete [ids] :objects-deleted n :uploads-aborted n}`.
pub fn cleanup_incomplete(store: &dyn Store, database_id: &str, cutoff_ms: i64) -> Result<Value> {
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    let mut objects = 0;
    for b in list(store, database_id)? {
        if b.completed {
            continue;
        }
        if b.updated_at_ms < cutoff_ms {
            objects += store.delete_prefix(&layout::backup_prefix(database_id, &b.backup_id))?;
            removed.push(Value::str(&b.backup_id));
        } else {
            kept.push(Value::str(&b.backup_id));
        }
    }
    // Multipart uploads that a killed backup left unfinished (S3; 0 for directories).
    let uploads = store.abort_stale_uploads(
        &layout::database_prefix(database_id),
        UNIX_EPOCH + std::time::Duration::from_millis(cutoff_ms.max(0) as u64),
    )?;
    Ok(kw_map([
        ("database-id", Value::str(database_id)),
        ("removed", Value::Vector(removed)),
        ("kept-incomplete", Value::Vector(kept)),
        ("objects-deleted", Value::Long(objects as i64)),
        ("uploads-aborted", Value::Long(uploads as i64)),
    ]))
}

/// Given a list of summaries, return the EDN vector `list-backups` returns.
pub fn list_value(summaries: &[BackupSummary]) -> Value {
    Value::Vector(summaries.iter().map(BackupSummary::to_value).collect())
}

/// Given a backup, return `{:state :complete|:incomplete|:missing :config … :progress …}`:
/// what `resume-backup` needs to know (the recorded options and snapshot in `:config`).
pub fn status(store: &dyn Store, database_id: &str, backup_id: &str) -> Result<Value> {
    layout::check_segment("database-id", database_id)?;
    layout::check_segment("backup-id", backup_id)?;
    let objects = store.list(&layout::backup_prefix(database_id, backup_id))?;
    if objects.is_empty() {
        return Ok(kw_map([("state", Value::kw("missing"))]));
    }
    let summary = summarize(store, database_id, backup_id, &objects)?;
    let config = match read_edn(
        store,
        &layout::backup_file(database_id, backup_id, layout::CONFIG),
    ) {
        Ok(v) => v,
        Err(e) if e.kind == ErrorKind::NotFound => Value::Nil,
        Err(e) => return Err(e),
    };
    let mut v = summary.to_value();
    if let Value::Map(entries) = &mut v {
        let state = if summary.completed {
            "complete"
        } else {
            "incomplete"
        };
        entries.push((Value::kw("state"), Value::kw(state)));
        entries.push((Value::kw("config"), config));
    }
    Ok(v)
}
