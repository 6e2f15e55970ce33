//! Resume: finish an interrupted backup, and the status a resumer reads first.
//!
//! A resumed backup walks the same snapshot (recorded in `config.edn`), reuses every chunk
//! already stored intact, writes the rest and commits; chunk boundaries are deterministic,
//! so the result is byte-identical to an uninterrupted backup. One resumer at a time holds
//! the backup's [`ResumeLock`].

use std::sync::Arc;

use crate::clock::now_ms;
use crate::codec::edn;
use crate::crypto::envelope::{self, Envelope};
use crate::error::{clip, Error, ErrorKind, Result};
use crate::model::Value;
use crate::repo::checkpoint::{Checkpoint, Phase};
use crate::repo::layout;
use crate::repo::lock::ResumeLock;
use crate::repo::manifest::{ChunkMeta, Manifest};
use crate::repo::meta::read_edn_opt;
use crate::store::Store;

use super::backup::{BackupOptions, BackupSession};
use super::list::{summarize, BackupSummary};

/// The option keys a caller of `resume-backup` may pass: the backup's, plus the lock's
/// (checked by [`crate::options::check_keys`]). A new option is one line here.
pub const KEYS: &[&str] = &[
    "database-id",
    "chunk-size",
    "compression",
    "compression-level",
    "parallel",
    "history?",
    "sort-buffer-bytes",
    "tmp-dir",
    "break-lock?",
    "lock-lease-ms",
    "encryption",
];

/// Where a backup stands, for a resumer.
#[derive(Clone, Debug, PartialEq)]
pub enum BackupStatus {
    /// Nothing is stored under the backup id.
    Missing,
    /// The backup is complete.
    Complete {
        /// Its listing.
        summary: BackupSummary,
        /// Its `config.edn` (`Nil` when missing).
        config: Value,
    },
    /// The backup is incomplete (interrupted, or still running).
    Incomplete {
        /// Its listing (with the checkpoint's progress).
        summary: BackupSummary,
        /// Its `config.edn`: the recorded options and snapshot (`Nil` when missing).
        config: Value,
    },
}

/// Given a backup, return its [`BackupStatus`]: what `resume-backup` needs to know.
pub fn status(store: &dyn Store, database_id: &str, backup_id: &str) -> Result<BackupStatus> {
    layout::check_segment("database-id", database_id)?;
    layout::check_segment("backup-id", backup_id)?;
    let objects = store.list(&layout::backup_prefix(database_id, backup_id))?;
    if objects.is_empty() {
        return Ok(BackupStatus::Missing);
    }
    let summary = summarize(store, database_id, backup_id, &objects)?;
    let config = read_edn_opt(
        store,
        &layout::backup_file(database_id, backup_id, layout::CONFIG),
    )?
    .unwrap_or(Value::Nil);
    Ok(if summary.completed {
        BackupStatus::Complete { summary, config }
    } else {
        BackupStatus::Incomplete { summary, config }
    })
}

/// The options a resumed backup must share with the interrupted one, as `config.edn`
/// records them: one sentence per difference.
fn resume_mismatches(recorded: &Value, now: &Value) -> Vec<String> {
    const KEYS: [&str; 13] = [
        "database/id",
        "backup/history?",
        "backup/chunk-size",
        "backup/compression",
        "backup/compression-level",
        "backup/skip-tx0?",
        "schema/ref-attrs",
        "schema/tx-instant-attr",
        "stats/max-tx",
        "datahike/id",
        "backup/parent",
        "backup/after-tx",
        "schema/no-history-attrs",
    ];
    // A key an older version did not record reads as nil.
    let at = |v: &'_ Value, k: &str| v.get(k).cloned().unwrap_or(Value::Nil);
    KEYS.iter()
        .filter(|k| at(recorded, k) != at(now, k))
        .map(|k| {
            format!(
                ":{k} was {} and is now {}",
                recorded
                    .get(k)
                    .map_or("nil".into(), |v| clip(&edn::write(v)).into_owned()),
                now.get(k)
                    .map_or("nil".into(), |v| clip(&edn::write(v)).into_owned())
            )
        })
        .collect()
}

fn already_complete(backup_id: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyComplete,
        "resume backup",
        format!("backup {backup_id} is already complete"),
    )
}

/// Whether the backup is complete: its marker exists and its manifest is valid. A marker
/// with a damaged manifest is `Corrupt` (the backup finished; resuming cannot repair it).
fn is_complete(store: &dyn Store, db: &str, backup_id: &str) -> Result<bool> {
    let marker = layout::backup_file(db, backup_id, layout::COMPLETE_MARKER);
    if store.size(&marker)?.is_none() {
        return Ok(false);
    }
    let key = layout::backup_file(db, backup_id, layout::MANIFEST);
    let valid = read_edn_opt(store, &key).and_then(|v| match v {
        None => Err(Error::corrupt("resume backup", "manifest.edn is missing")),
        Some(v) => Manifest::from_value(&v)?.check(db, backup_id),
    });
    valid.map(|()| true).map_err(|e| {
        Error::corrupt(
            "resume backup",
            format!(
                "backup {backup_id} finished (it has a complete.marker) but its manifest is damaged: {}",
                e.message
            ),
        )
        .with_key(store.location(&key))
        .with_hint(super::list::REPAIRABLE)
    })
}

/// Continue the interrupted backup `opts.backup_id`: the same options and snapshot as
/// recorded in its `config.edn`, reusing every chunk already stored intact.
///
/// Errors: `NotFound` without a `config.edn`; [`ErrorKind::AlreadyComplete`] when the backup
/// is complete (also when another resumer completed it while this one waited for the
/// lock); `Conflict` for other options, another database, or a live lock of another
/// resumer.
pub(super) fn open_resumed(store: Arc<dyn Store>, opts: BackupOptions) -> Result<BackupSession> {
    let op = "resume backup";
    let backup_id = opts
        .backup_id
        .clone()
        .ok_or_else(|| Error::invalid(op, "resuming needs :backup-id"))?;
    let db = opts.database_id.clone();
    let key = |name: &str| layout::backup_file(&db, &backup_id, name);
    let recorded = read_edn_opt(store.as_ref(), &key(layout::CONFIG))?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            op,
            format!("no backup {backup_id} of {db} to resume"),
        )
    })?;
    if recorded.get("backup/id").and_then(Value::as_str) != Some(backup_id.as_str()) {
        return Err(Error::corrupt(
            op,
            format!("config.edn of backup {backup_id} does not name this backup"),
        )
        .with_key(store.location(&key(layout::CONFIG))));
    }
    if is_complete(store.as_ref(), &db, &backup_id)? {
        return Err(already_complete(&backup_id));
    }
    let lock = ResumeLock::acquire(
        store.clone(),
        &db,
        &backup_id,
        opts.lock_lease,
        opts.break_lock,
    )?;
    // Another resumer may have completed the backup between the check and the lock.
    if is_complete(store.as_ref(), &db, &backup_id)? {
        return Err(already_complete(&backup_id));
    }
    let checkpoint = read_edn_opt(store.as_ref(), &key(layout::CHECKPOINT))?
        .and_then(|v| Checkpoint::from_value(&v));
    let started_ms = checkpoint.as_ref().map_or_else(now_ms, |c| c.started_at_ms);
    let prior = checkpoint
        .map(|c| c.chunks.into_iter().map(|m| (m.id, m)).collect())
        .unwrap_or_default();
    // An encrypted backup goes on with its own data key: the key given must open it.
    let envelope = recorded
        .get("format/encryption")
        .filter(|v| **v != Value::Nil)
        .map(Envelope::from_value);
    let cipher = envelope::resolve(envelope.as_ref(), opts.encryption.as_ref(), &db, &backup_id)?;
    let recorded = envelope::open_config(recorded, cipher.as_deref())?;
    let parent = super::incremental::parent_of(store.as_ref(), &opts)?;
    let mut session = BackupSession::assemble(
        store.clone(),
        opts,
        backup_id.clone(),
        started_ms,
        prior,
        Some(lock),
        parent,
    )?;
    if let (Some(envelope), Some(cipher)) = (envelope, cipher) {
        session.set_sealing(envelope, cipher);
    }
    let mismatches = resume_mismatches(&recorded, &session.config_value());
    if !mismatches.is_empty() {
        return Err(Error::new(
            ErrorKind::Conflict,
            op,
            format!(
                "backup {backup_id} was started with other options or another database: {}",
                mismatches.join("; ")
            ),
        )
        .with_hint("resume with the options of the interrupted backup, or start a new backup"));
    }
    store.remove_temporaries(&layout::backup_prefix(&db, &backup_id))?;
    let prior: Vec<ChunkMeta> = session.prior().values().cloned().collect();
    session.write_checkpoint(Phase::Ingest, &prior, None)?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, history};

    /// A complete backup turned into an interrupted one: manifest, marker and the chunks
    /// from `from` on removed, as a killed process leaves it.
    fn interrupted(
        mem: &crate::store::memory::MemoryStore,
        r: &super::super::backup::BackupResult,
        from: u64,
    ) {
        let id = &r.manifest.backup_id;
        mem.delete(&layout::backup_file("db", id, layout::MANIFEST))
            .unwrap();
        mem.delete(&layout::backup_file("db", id, layout::COMPLETE_MARKER))
            .unwrap();
        for c in r.manifest.chunks.iter().filter(|c| c.id >= from) {
            mem.delete(&layout::chunk_key("db", id, c.id)).unwrap();
        }
    }

    fn resume_opts(id: &str) -> BackupOptions {
        let mut o = testing::options("db", 600, 30);
        o.backup_id = Some(id.into());
        o.resume = true;
        o
    }

    #[test]
    fn a_resumed_backup_is_byte_identical_and_then_already_complete() {
        let (mem, store) = testing::store();
        let datoms = history(30);
        let r = testing::backup(&store, testing::options("db", 600, 30), &datoms);
        let id = r.manifest.backup_id.clone();
        let chunks_before: Vec<Vec<u8>> = r
            .manifest
            .chunks
            .iter()
            .map(|c| mem.get(&layout::chunk_key("db", &id, c.id)).unwrap())
            .collect();
        interrupted(&mem, &r, 2);
        assert!(matches!(
            status(&mem, "db", &id).unwrap(),
            BackupStatus::Incomplete { .. }
        ));
        let resumed = testing::backup(&store, resume_opts(&id), &datoms);
        assert_eq!(resumed.manifest.chunks, r.manifest.chunks);
        for (c, before) in r.manifest.chunks.iter().zip(&chunks_before) {
            assert_eq!(
                &mem.get(&layout::chunk_key("db", &id, c.id)).unwrap(),
                before
            );
        }
        assert!(matches!(
            status(&mem, "db", &id).unwrap(),
            BackupStatus::Complete { .. }
        ));
        let again = BackupSession::open(store.clone(), resume_opts(&id))
            .err()
            .unwrap();
        assert_eq!(again.kind, ErrorKind::AlreadyComplete, "{again}");
        assert_eq!(status(&mem, "db", "nope").unwrap(), BackupStatus::Missing);
    }

    #[test]
    fn a_zstd_backup_resumes_with_zstd_and_refuses_gzip() {
        let (mem, store) = testing::store();
        let datoms = history(30);
        let zstd = |mut o: BackupOptions| {
            o.compression = crate::pipeline::chunk::Codec::Zstd;
            o.compression_level = 3;
            o
        };
        let r = testing::backup(&store, zstd(testing::options("db", 600, 30)), &datoms);
        let id = r.manifest.backup_id.clone();
        let key = |c: &crate::repo::manifest::ChunkMeta| layout::backup_file("db", &id, &c.key);
        let before: Vec<Vec<u8>> = r
            .manifest
            .chunks
            .iter()
            .map(|c| mem.get(&key(c)).unwrap())
            .collect();
        mem.delete(&layout::backup_file("db", &id, layout::MANIFEST))
            .unwrap();
        mem.delete(&layout::backup_file("db", &id, layout::COMPLETE_MARKER))
            .unwrap();
        for c in r.manifest.chunks.iter().filter(|c| c.id >= 2) {
            mem.delete(&key(c)).unwrap();
        }
        // Resuming with the default (gzip) is another option: refused, naming it.
        let err = BackupSession::open(store.clone(), resume_opts(&id))
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(
            err.message
                .contains(":backup/compression was :zstd and is now nil"),
            "{err}"
        );
        let resumed = testing::backup(&store, zstd(resume_opts(&id)), &datoms);
        assert_eq!(resumed.manifest.compression, "zstd");
        assert_eq!(resumed.manifest.chunks, r.manifest.chunks);
        for (c, b) in r.manifest.chunks.iter().zip(&before) {
            assert_eq!(
                &mem.get(&key(c)).unwrap(),
                b,
                "chunk {} byte-identical",
                c.id
            );
        }
    }

    #[test]
    fn other_options_and_a_live_lock_are_conflicts() {
        let (mem, store) = testing::store();
        let datoms = history(30);
        let r = testing::backup(&store, testing::options("db", 600, 30), &datoms);
        let id = r.manifest.backup_id.clone();
        interrupted(&mem, &r, 1);
        let mut other = resume_opts(&id);
        other.chunk_size = 700;
        let err = BackupSession::open(store.clone(), other).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(
            err.message
                .contains(":backup/chunk-size was 600 and is now 700"),
            "{err}"
        );
        let held = BackupSession::open(store.clone(), resume_opts(&id)).unwrap();
        let err = BackupSession::open(store.clone(), resume_opts(&id))
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(
            err.message.contains("being resumed by another process"),
            "{err}"
        );
        drop(held);
        let mut s = BackupSession::open(store.clone(), resume_opts(&id)).unwrap();
        for d in &datoms {
            s.push(d.clone()).unwrap();
        }
        assert_eq!(s.finish().unwrap().manifest.chunks, r.manifest.chunks);
        assert!(mem
            .list(&layout::backup_file("db", &id, layout::LOCK_PREFIX))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn what_the_checkpoint_says_about_reused_chunks_is_not_trusted() {
        let (mem, store) = testing::store();
        let datoms = history(30);
        let r = testing::backup(&store, testing::options("db", 600, 30), &datoms);
        let id = r.manifest.backup_id.clone();
        interrupted(&mem, &r, 3);
        // The checkpoint lies about chunk 0's counts, and chunk 1's stored bytes are other
        // (valid) gzip whose checksum the checkpoint was made to carry.
        let cp_key = layout::backup_file("db", &id, layout::CHECKPOINT);
        let mut cp =
            Checkpoint::from_value(&crate::repo::meta::read_edn(&mem, &cp_key).unwrap()).unwrap();
        cp.chunks[0].datom_count = 999;
        cp.chunks[0].max_eid = i64::MAX;
        let c1 = layout::chunk_key("db", &id, 1);
        let original = mem.get(&c1).unwrap();
        let other = crate::pipeline::chunk::gzip(b"something else entirely", 6).unwrap();
        mem.put(&c1, &other).unwrap();
        cp.chunks[1].checksum = crate::pipeline::chunk::sha256_hex(&other);
        crate::repo::meta::write_edn(&mem, &cp_key, &cp.to_value()).unwrap();
        let resumed = testing::backup(&store, resume_opts(&id), &datoms);
        assert_eq!(resumed.manifest.chunks, r.manifest.chunks);
        assert_eq!(resumed.manifest.datom_count, r.manifest.datom_count);
        assert_eq!(mem.get(&c1).unwrap(), original);
        assert!(crate::ops::verify::verify(&mem, "db", &id, true, None)
            .unwrap()
            .success());
    }

    #[test]
    fn a_finished_backup_with_a_damaged_manifest_is_not_resumed() {
        let (mem, store) = testing::store();
        let datoms = history(10);
        let r = testing::backup(&store, testing::options("db", 600, 10), &datoms);
        let id = r.manifest.backup_id.clone();
        mem.put(
            &layout::backup_file("db", &id, layout::MANIFEST),
            b"{:backup/id",
        )
        .unwrap();
        let err = BackupSession::open(store.clone(), resume_opts(&id))
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        assert!(err.hint.unwrap().contains("repair-manifest"));
    }
}
