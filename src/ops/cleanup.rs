//! `cleanup-incomplete`: remove what interrupted backups left behind.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::clock::now_ms;
use crate::error::Result;
use crate::repo::layout;
use crate::store::Store;

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
    /// Objects deleted.
    pub objects_deleted: u64,
    /// Unfinished multipart uploads aborted (S3).
    pub uploads_aborted: u64,
}

/// Remove the incomplete backups of `database_id` whose last activity is older than
/// `older_than` before now, and abort the unfinished uploads under the database's prefix
/// started before that cutoff ([`Store::abort_stale_uploads`]). Complete backups are never
/// touched.
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
        if b.updated_at_ms < cutoff_ms {
            report.objects_deleted +=
                store.delete_prefix(&layout::backup_prefix(database_id, &b.backup_id))?;
            report.removed.push(b.backup_id);
        } else {
            report.kept_incomplete.push(b.backup_id);
        }
    }
    // Multipart uploads that a killed backup left unfinished (S3; 0 for directories).
    report.uploads_aborted = store.abort_stale_uploads(
        &layout::database_prefix(database_id),
        UNIX_EPOCH + Duration::from_millis(cutoff_ms.max(0) as u64),
    )?;
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
}
