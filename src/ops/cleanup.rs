//! `cleanup-incomplete`: remove what interrupted backups left behind.
//!
//! Two kinds of remains: incomplete backups (they list, see [`super::list`]), and
//! [`Leftover`]s that no listing shows — a directory's `*.tmp-*` files (a backup killed
//! while writing its first file leaves a folder holding only `config.edn.tmp-…`) and
//! unfinished S3 multipart uploads. Both are removed only when older than the cutoff.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::clock::now_ms;
use crate::error::Result;
use crate::repo::layout;
use crate::store::{LeftoverKind, Store};

use super::list::list;

/// The option keys of `cleanup-incomplete` (checked by [`crate::options::check_keys`]).
pub const KEYS: &[&str] = &["older-than-hours"];

/// What `cleanup-incomplete` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// The database id.
    pub database_id: String,
    /// Incomplete backups removed (older than the cutoff).
    pub removed: Vec<String>,
    /// Incomplete backups kept (active more recently than the cutoff).
    pub kept_incomplete: Vec<String>,
    /// Backups that finished (they have a `complete.marker`) but whose manifest is damaged:
    /// never removed, whatever their age (see [`super::list::REPAIRABLE`]).
    pub damaged: Vec<String>,
    /// Objects deleted.
    pub objects_deleted: u64,
    /// Unfinished multipart uploads aborted (S3), older than the cutoff.
    pub uploads_aborted: u64,
    /// Temporary files of unfinished writes removed (directories), older than the cutoff.
    pub temporaries_removed: u64,
    /// Leftovers (temporaries, uploads) kept: younger than the cutoff, or of unknown age.
    pub leftovers_kept: u64,
}

/// Remove the incomplete backups of `database_id` whose last activity is older than
/// `older_than` before now, then the leftovers under the database's folder started before
/// that cutoff ([`Store::leftovers`]: temporaries, unfinished uploads). Complete backups are
/// never touched (a leftover inside one is not part of it), and neither is any backup with a
/// `complete.marker` whose manifest is damaged: it is reported in [`CleanupReport::damaged`].
pub fn cleanup_incomplete(
    store: &dyn Store,
    database_id: &str,
    older_than: Duration,
) -> Result<CleanupReport> {
    let cutoff_ms = now_ms().saturating_sub(older_than.as_millis().min(i64::MAX as u128) as i64);
    let mut report = CleanupReport {
        database_id: database_id.to_owned(),
        ..CleanupReport::default()
    };
    for b in list(store, database_id)? {
        if b.completed {
            continue;
        }
        if b.marked_complete {
            report.damaged.push(b.backup_id);
            continue;
        }
        if b.updated_at_ms < cutoff_ms {
            report.objects_deleted +=
                store.delete_prefix(&layout::backup_prefix(database_id, &b.backup_id))?;
            report.removed.push(b.backup_id);
        } else {
            report.kept_incomplete.push(b.backup_id);
        }
    }
    // What no listing shows: temporaries (directories), unfinished uploads (S3).
    let cutoff = UNIX_EPOCH + Duration::from_millis(cutoff_ms.max(0) as u64);
    for leftover in store.leftovers(&layout::database_prefix(database_id))? {
        if leftover.started.is_none_or(|t| t >= cutoff) {
            report.leftovers_kept += 1;
            continue;
        }
        store.remove_leftover(&leftover)?;
        match leftover.kind {
            LeftoverKind::Temporary => report.temporaries_removed += 1,
            LeftoverKind::Upload { .. } => report.uploads_aborted += 1,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, history};

    #[test]
    fn only_incomplete_backups_past_the_cutoff_are_removed() {
        let (mem, store) = testing::store();
        let done = testing::backup(&store, testing::options("db", 1 << 20, 4), &history(4));
        let broken = testing::backup(&store, testing::options("db", 1 << 20, 5), &history(5));
        mem.delete(&layout::backup_file(
            "db",
            &broken.manifest.backup_id,
            layout::COMPLETE_MARKER,
        ))
        .unwrap();
        let kept = cleanup_incomplete(store.as_ref(), "db", Duration::from_secs(3600)).unwrap();
        assert_eq!(kept.kept_incomplete, [broken.manifest.backup_id.as_str()]);
        assert!(kept.removed.is_empty() && kept.objects_deleted == 0);
        // Age the broken backup: its files and its checkpoint's last update in 1970.
        let prefix = layout::backup_prefix("db", &broken.manifest.backup_id);
        let cp_key = format!("{prefix}{}", layout::CHECKPOINT);
        let mut cp = crate::repo::checkpoint::Checkpoint::from_value(
            &crate::repo::meta::read_edn(&mem, &cp_key).unwrap(),
        )
        .unwrap();
        cp.updated_at_ms = 1_000;
        crate::repo::meta::write_edn(&mem, &cp_key, &cp.to_value()).unwrap();
        for o in mem.list(&prefix).unwrap() {
            assert!(mem.set_modified(&o.key, UNIX_EPOCH + Duration::from_secs(1)));
        }
        let removed = cleanup_incomplete(store.as_ref(), "db", Duration::from_secs(3600)).unwrap();
        assert_eq!(removed.removed, [broken.manifest.backup_id.as_str()]);
        assert_eq!(
            removed.objects_deleted,
            4 + broken.manifest.chunks.len() as u64 - 1
        );
        let left = crate::ops::list::list(store.as_ref(), "db").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].backup_id, done.manifest.backup_id);
    }

    #[test]
    fn a_folder_holding_only_a_temporary_is_seen_and_removed_past_the_cutoff() {
        let tmp = tempfile::tempdir().unwrap();
        let shared: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(crate::store::dir::DirStore::open(tmp.path()).unwrap());
        let store = shared.as_ref();
        let done = testing::backup(&shared, testing::options("db", 1 << 20, 4), &history(4));
        // A backup killed while writing its first file: only a temporary in its folder.
        let killed = tmp.path().join("db/0194aaaa-killed");
        std::fs::create_dir_all(&killed).unwrap();
        let temp = killed.join("config.edn.tmp-5f3c");
        std::fs::write(&temp, b"{:backup/id").unwrap();
        assert_eq!(crate::ops::list::list(store, "db").unwrap().len(), 1);
        let kept = cleanup_incomplete(store, "db", Duration::from_secs(3600)).unwrap();
        assert_eq!((kept.temporaries_removed, kept.leftovers_kept), (0, 1));
        assert!(temp.exists(), "younger than the cutoff: kept");
        std::fs::File::options()
            .write(true)
            .open(&temp)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(1))
            .unwrap();
        let report = cleanup_incomplete(store, "db", Duration::from_secs(3600)).unwrap();
        assert_eq!(
            (
                report.temporaries_removed,
                report.leftovers_kept,
                report.removed.len(),
                report.objects_deleted
            ),
            (1, 0, 0, 0)
        );
        assert!(!killed.exists(), "the folder went with its only temporary");
        let listed = crate::ops::list::list(store, "db").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].backup_id, done.manifest.backup_id);
        assert!(
            crate::ops::verify::verify(store, "db", &done.manifest.backup_id, true, None)
                .unwrap()
                .success()
        );
    }

    #[test]
    fn a_finished_backup_with_a_damaged_manifest_is_never_removed() {
        let (mem, store) = testing::store();
        let b = testing::backup(&store, testing::options("db", 1 << 20, 4), &history(4));
        let id = b.manifest.backup_id.clone();
        let prefix = layout::backup_prefix("db", &id);
        mem.put(
            &format!("{prefix}{}", layout::MANIFEST),
            b"{:backup/id \xff",
        )
        .unwrap();
        for o in mem.list(&prefix).unwrap() {
            assert!(mem.set_modified(&o.key, UNIX_EPOCH + Duration::from_secs(1)));
        }
        let listed = crate::ops::list::list(store.as_ref(), "db").unwrap();
        assert!(!listed[0].completed && listed[0].marked_complete);
        assert!(listed[0]
            .problems
            .iter()
            .any(|p| p.contains("repair-manifest")));
        let report = cleanup_incomplete(store.as_ref(), "db", Duration::ZERO).unwrap();
        assert_eq!(report.damaged, [id.as_str()]);
        assert!(report.removed.is_empty() && report.objects_deleted == 0);
        assert_eq!(
            mem.list(&prefix).unwrap().len(),
            4 + b.manifest.chunks.len()
        );
    }
}
