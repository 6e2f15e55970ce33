//! `verify-backup`: is a stored backup complete and intact?
//!
//! Shallow: every chunk the manifest lists is present with its size and SHA-256. Deep: also
//! decoded, its id and datom count checked ([`super::check`], the same checks restore
//! runs). A report with problems is a result, not an error: verify fails only when the
//! backup does not exist or the store cannot be read.

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::repo::layout;
use crate::repo::manifest::Manifest;
use crate::repo::meta::read_edn;
use crate::store::Store;

use super::check;

/// The option keys of `verify-backup` (checked by [`crate::options::check_keys`]).
pub const KEYS: &[&str] = &["database-id", "deep?"];

/// What `verify-backup` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The backup id.
    pub backup_id: String,
    /// The database id.
    pub database_id: String,
    /// Whether the backup is complete (manifest says so and the marker exists).
    pub complete: bool,
    /// Chunks the manifest lists (0 without a readable manifest).
    pub chunk_count: u64,
    /// Every listed chunk is present (false without a readable manifest).
    pub all_chunks_present: bool,
    /// Every present chunk has the listed size and SHA-256 (false without a manifest).
    pub checksums_valid: bool,
    /// Whether chunks were decoded too.
    pub deep: bool,
    /// Datoms decoded (deep verify only).
    pub datoms_verified: Option<u64>,
    /// What is wrong, one sentence each; empty for a good backup.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn success(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Given a backup, check every chunk's presence, size and SHA-256; with `deep`, also decode
/// every chunk and check its id and datom count against the manifest.
///
/// Fails (`NotFound`) when the backup does not exist; everything wrong with an existing
/// backup is reported in [`VerifyReport::problems`].
pub fn verify(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
    deep: bool,
) -> Result<VerifyReport> {
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
    let sizes: std::collections::HashMap<&str, u64> =
        objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let (mut present, mut sums_ok, mut datoms) = (true, true, 0u64);
    for c in chunks {
        let key = layout::chunk_in(&prefix, c);
        let location = || format!("{} ({})", store.location(&key), c.key);
        let Some(&size) = sizes.get(key.as_str()) else {
            present = false;
            problems.push(format!("chunk {} is missing ({})", c.id, c.key));
            continue;
        };
        let checked = check::check_size(c, size, location)
            .and_then(|()| store.get(&key))
            .and_then(|bytes| check::check_stored(c, &bytes, location).map(|()| bytes));
        let bytes = match checked {
            Ok(bytes) => bytes,
            Err(e) if e.kind == ErrorKind::Corrupt => {
                sums_ok = false;
                problems.push(format!("{} ({})", e.message, c.key));
                continue;
            }
            Err(e) => return Err(e),
        };
        if deep {
            match check::decode_checked(c, &bytes, location) {
                Ok(d) => datoms += d.datoms.len() as u64,
                Err(e) => problems.push(e.message),
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
    Ok(VerifyReport {
        backup_id: backup_id.to_owned(),
        database_id: database_id.to_owned(),
        complete,
        chunk_count: chunks.len() as u64,
        all_chunks_present: manifest.is_some() && present,
        checksums_valid: manifest.is_some() && present && sums_ok,
        deep,
        datoms_verified: deep.then_some(datoms),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, history};

    #[test]
    fn good_damaged_and_incomplete_backups() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 600, 30), &history(30));
        let id = r.manifest.backup_id.clone();
        let good = verify(store.as_ref(), "db", &id, true).unwrap();
        assert!(good.success(), "{good:?}");
        assert_eq!(good.datoms_verified, Some(r.manifest.datom_count));
        assert_eq!(good.chunk_count, r.manifest.chunks.len() as u64);
        let c1 = layout::chunk_key("db", &id, 1);
        let bytes = mem.get(&c1).unwrap();
        let mut flipped = bytes.clone();
        flipped[25] ^= 1;
        mem.put(&c1, &flipped).unwrap();
        mem.delete(&layout::chunk_key("db", &id, 3)).unwrap();
        let bad = verify(store.as_ref(), "db", &id, false).unwrap();
        assert!(!bad.success() && !bad.checksums_valid && !bad.all_chunks_present);
        assert!(
            bad.problems
                .iter()
                .any(|p| p.contains("chunk 1 fails its SHA-256")),
            "{bad:?}"
        );
        assert!(
            bad.problems
                .iter()
                .any(|p| p.contains("chunk 3 is missing")),
            "{bad:?}"
        );
        assert_eq!(bad.datoms_verified, None);
        mem.delete(&layout::backup_file("db", &id, layout::MANIFEST))
            .unwrap();
        let incomplete = verify(store.as_ref(), "db", &id, true).unwrap();
        assert!(!incomplete.complete && !incomplete.success());
        assert_eq!(
            verify(store.as_ref(), "db", "missing", false)
                .unwrap_err()
                .kind,
            ErrorKind::NotFound
        );
    }
}
