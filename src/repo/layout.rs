//! Every file / object key of a backup, built in one place.
//!
//! ```text
//! {database-id}/{backup-id}/manifest.edn        the commit point (written after all chunks)
//! {database-id}/{backup-id}/config.edn          the source database's configuration
//! {database-id}/{backup-id}/checkpoint.edn      progress, rewritten as chunks land
//! {database-id}/{backup-id}/chunks/datoms-N.fressian.gz
//! {database-id}/{backup-id}/complete.marker     written last
//! {database-id}/{backup-id}/lock-N.edn          the resume lock (only while a resume runs)
//! {database-id}/{backup-id}/state/no-history-N.fressian.gz   chain state: current
//!                                               :db/noHistory datoms at the basis
//! {database-id}/{backup-id}/prune.edn           tombstone: the backup is being deleted
//!
//! {database-id}/{log-id}/log.edn                the head of a continuous-backup log: its
//!                                               place in the chain (written first, once)
//! {database-id}/{log-id}/segments/{name}        the log's segments (`crate::log::name`)
//! {database-id}/{log-id}/closed.edn             written when its capture stopped cleanly
//! {database-id}/.continuous/lock-N.edn          the capture lock (one capture per database)
//! ```
//! Folder names starting with `.` are reserved: they are never backups or logs.
//! Keys are relative to the target's root (a directory, or an S3 prefix) and use `/`.

use crate::error::{Error, Result};

/// File name of the manifest.
pub const MANIFEST: &str = "manifest.edn";
/// File name of the configuration snapshot.
pub const CONFIG: &str = "config.edn";
/// File name of the checkpoint.
pub const CHECKPOINT: &str = "checkpoint.edn";
/// File name of the completion marker.
pub const COMPLETE_MARKER: &str = "complete.marker";
/// Contents of the completion marker (as the original implementation writes it).
pub const COMPLETE_MARKER_BYTES: &[u8] = b"complete";

/// Given a database id, check it is a safe single path segment.
///
/// Rejects empty ids, `.`/`..`, ids containing `/`, `\\`, NUL, control characters or
/// invisible formatting characters (bidirectional controls, zero-width characters: a name
/// must read as what it is), and ids longer than 200 bytes: an id must never escape the
/// target directory.
pub fn check_segment(what: &str, id: &str) -> Result<()> {
    let bad = id.is_empty()
        || id == "."
        || id == ".."
        || id.len() > 200
        || id
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control() || crate::error::is_format_char(c));
    if bad {
        return Err(Error::invalid(
            "check arguments",
            format!("{what} {} is not a valid name", crate::error::excerpt(id)),
        )
        .with_hint(format!(
            "a {what} must be a non-empty single path segment of at most 200 bytes, without '/', '\\', control or invisible formatting characters"
        )));
    }
    Ok(())
}

/// Check that `key` is a safe relative key: non-empty, no leading `/`, no empty, `.` or
/// `..` segment (so it can never leave a store's root).
pub fn check_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        return Err(Error::invalid("resolve key", format!("unsafe key {key:?}")));
    }
    Ok(())
}

/// The folder of one database's backups: `{database-id}/`.
pub fn database_prefix(database_id: &str) -> String {
    format!("{database_id}/")
}

/// The folder of one backup: `{database-id}/{backup-id}/`.
pub fn backup_prefix(database_id: &str, backup_id: &str) -> String {
    format!("{database_id}/{backup_id}/")
}

/// The key of a file directly inside a backup's folder.
pub fn backup_file(database_id: &str, backup_id: &str, name: &str) -> String {
    format!("{database_id}/{backup_id}/{name}")
}

/// A chunk's path relative to its backup folder (what `:chunk/key` holds), gzip.
pub fn chunk_relative(chunk_id: u64) -> String {
    chunk_relative_ext(chunk_id, "gz")
}

/// A chunk's path relative to its backup folder for a compression's file extension
/// (`gz`, `zst`).
pub fn chunk_relative_ext(chunk_id: u64, extension: &str) -> String {
    format!("chunks/datoms-{chunk_id}.fressian.{extension}")
}

/// A chunk's key relative to the target root.
pub fn chunk_key(database_id: &str, backup_id: &str, chunk_id: u64) -> String {
    backup_file(database_id, backup_id, &chunk_relative(chunk_id))
}

/// The key of a manifest's chunk in the backup folder `prefix` (from [`backup_prefix`]).
pub fn chunk_in(prefix: &str, meta: &crate::repo::manifest::ChunkMeta) -> String {
    key_in(prefix, &meta.key)
}

/// The key of `relative` (a path inside a backup's folder, as manifests record it) in the
/// backup folder `prefix` (from [`backup_prefix`]).
pub fn key_in(prefix: &str, relative: &str) -> String {
    format!("{prefix}{relative}")
}

/// A chain state chunk's path relative to its backup folder (the current `:db/noHistory`
/// datoms at the basis, chunk `n`; see `crate::chain::state`).
pub fn no_history_state_relative(n: u64) -> String {
    format!("state/no-history-{n}.fressian.gz")
}

/// File name of the tombstone `prune-backups` writes before it deletes a backup: a backup
/// holding it is being deleted (it lists as incomplete and never restores).
pub const PRUNE_TOMBSTONE: &str = "prune.edn";

/// File name prefix of the resume lock's generations inside a backup's folder
/// (`lock-N.edn`).
pub const LOCK_PREFIX: &str = "lock-";

/// The key of resume lock generation `n` of a backup.
pub fn lock_key(database_id: &str, backup_id: &str, n: u64) -> String {
    lock_in(&backup_prefix(database_id, backup_id), n)
}

/// The key of lock generation `n` in `folder` (a key prefix ending in `/`).
pub fn lock_in(folder: &str, n: u64) -> String {
    format!("{folder}{LOCK_PREFIX}{n}.edn")
}

/// Given a key under `{database-id}/`, return the backup (or log) id it belongs to, if
/// any; keys in reserved folders (names starting with `.`) belong to none.
pub fn backup_id_of<'a>(database_id: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(database_id)?.strip_prefix('/')?;
    let (id, _) = rest.split_once('/')?;
    (!id.is_empty() && !id.starts_with('.')).then_some(id)
}

/// File name of a log's head (its chain link), in the log's folder.
pub const LOG_HEAD: &str = "log.edn";
/// File name of the marker a log gets when its capture stopped cleanly.
pub const LOG_CLOSED: &str = "closed.edn";

/// The folder of a log's segments: `{database-id}/{log-id}/segments/`.
pub fn log_segments_prefix(database_id: &str, log_id: &str) -> String {
    format!("{database_id}/{log_id}/segments/")
}

/// The key of a log segment (its file name from `crate::log::name`).
pub fn log_segment_key(database_id: &str, log_id: &str, file_name: &str) -> String {
    format!("{}{file_name}", log_segments_prefix(database_id, log_id))
}

/// The folder of the capture lock of a database: `{database-id}/.continuous/`.
pub fn capture_lock_folder(database_id: &str) -> String {
    format!("{database_id}/.continuous/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_original_layout() {
        assert_eq!(
            chunk_key("prod", "b1", 7),
            "prod/b1/chunks/datoms-7.fressian.gz"
        );
        assert_eq!(backup_file("prod", "b1", MANIFEST), "prod/b1/manifest.edn");
        assert_eq!(backup_id_of("prod", "prod/b1/chunks/x"), Some("b1"));
        assert_eq!(backup_id_of("prod", "production/b1/x"), None);
        assert_eq!(backup_id_of("prod", "prod/manifest.edn"), None);
        assert_eq!(backup_id_of("prod", "prod/.continuous/lock-0.edn"), None);
        assert_eq!(
            log_segment_key("prod", "l1", "x.fressian.gz"),
            "prod/l1/segments/x.fressian.gz"
        );
        assert_eq!(capture_lock_folder("prod"), "prod/.continuous/");
    }

    #[test]
    fn unsafe_segments_are_rejected() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a\u{0}b",
            "a\nb",
            "a\u{202E}b",
            "\u{200B}",
            "a\u{2066}b",
            "a\u{1b}[31m",
        ] {
            assert!(check_segment("database-id", bad).is_err(), "{bad:?}");
        }
        for good in ["prod", "my-db_1", "ü", "a.b"] {
            assert!(check_segment("database-id", good).is_ok(), "{good:?}");
        }
    }
}
