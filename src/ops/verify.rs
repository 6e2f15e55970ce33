//! `verify-backup`: is a stored backup complete and intact?
//!
//! The manifest is validated ([`Manifest::validate`], the checks restore runs), `config.edn`
//! read. Shallow: every chunk the manifest lists is present with its size and SHA-256.
//! Deep: also decoded within the manifest's limits, its id and datom count checked, and its
//! content checked against the manifest ([`super::check`], the same checks restore runs).
//! A report with problems is a result, not an error: verify fails only when the backup does
//! not exist or the store cannot be read. What verify proves, and what it cannot, is said
//! in [`super::check`].
//!
//! Logs of continuous backup ([`crate::log`]) verify like a backup whose chunks are their
//! segments: the contiguous run from the head's `after`, every gap or overlap named.
//!
//! Chains: every link's `:db/noHistory` state chunks are checked (size and SHA-256), and an
//! incremental's chain must be complete and contiguous back to its base
//! ([`crate::chain::resolve`], the first broken link named); the ancestors' chunks are
//! checked for presence and size, or fully with `deep`.

use serde::Serialize;

use crate::crypto::envelope::{self, KeySpec};
use crate::error::{Error, ErrorKind, Result};
use crate::repo::layout;
use crate::repo::manifest::Manifest;
use crate::repo::meta::{read_edn, read_edn_opt};
use crate::store::Store;

use super::check::{self, ContentCheck};

/// The option keys of `verify-backup` (checked by [`crate::options::check_keys`]).
pub const KEYS: &[&str] = &["database-id", "deep?", "encryption"];

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
    /// The backup's chain, base first (just the backup for a full one; as far as it
    /// resolves when broken).
    pub chain: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn success(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Given a backup, validate its manifest and check every chunk's presence, size and
/// SHA-256; with `deep`, also decode every chunk and check it against the manifest.
///
/// Fails (`NotFound`) when the backup does not exist; everything wrong with an existing
/// backup is reported in [`VerifyReport::problems`]. An encrypted backup's chunks are
/// checked (size, SHA-256 of the stored bytes) without its key; a deep verify opens them
/// with `key` and fails (`WrongKey`) without the right one.
pub fn verify(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
    deep: bool,
    key: Option<&KeySpec>,
) -> Result<VerifyReport> {
    // A chain's content is one stream (an incremental's attributes are declared in its
    // ancestors): deep checks run base first, with one content check carried across.
    // The chain is resolved once: for the ancestors' deep checks here and for the chain
    // checks of `verify_chain` (which reports a broken chain).
    let resolved = crate::chain::resolve::resolve(store, database_id, backup_id, "verify backup");
    let mut content = None;
    let mut ancestors = Vec::new();
    if deep {
        if let Ok(chain) = &resolved {
            for link in chain.links.iter().filter(|l| l.id() != backup_id) {
                let r = verify_one(store, database_id, link.id(), true, &mut content, key)?;
                ancestors.push((link.id().to_owned(), r.problems));
            }
        }
    }
    let mut report = verify_one(store, database_id, backup_id, deep, &mut content, key)?;
    verify_chain(store, &mut report, resolved, &ancestors, key)?;
    Ok(report)
}

/// The checks of one backup's own chunks (what [`verify`] did before chains).
fn verify_one(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
    deep: bool,
    carried: &mut Option<ContentCheck>,
    key: Option<&KeySpec>,
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
    let has = |name: &str| {
        let key = layout::backup_file(database_id, backup_id, name);
        objects.iter().any(|o| o.key == key)
    };
    // A log of continuous backup: its contiguous run of segments is its manifest, its
    // head its config; a gap, an overlap or a foreign file under segments/ is a problem.
    let log = if !has(layout::MANIFEST) && has(layout::LOG_HEAD) {
        match crate::log::read::read_listed(store, database_id, backup_id, &objects) {
            Ok(log) => Some(log),
            Err(e) if e.kind == ErrorKind::Corrupt => {
                problems.push(format!("log.edn is unreadable: {}", e.message));
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let manifest_key = layout::backup_file(database_id, backup_id, layout::MANIFEST);
    let unreadable_log = !problems.is_empty();
    let manifest = match &log {
        Some(log) => {
            problems.extend(log.problems.iter().cloned());
            Some(log.link_manifest())
        }
        None if unreadable_log => None,
        None => read_manifest(
            store,
            database_id,
            backup_id,
            &manifest_key,
            &has,
            &mut problems,
        ),
    };
    // The key is needed to decode (deep), and checked whenever one is given (a record this
    // version does not read is a problem the validation above reports).
    let readable = |m: &Manifest| m.encryption.as_ref().is_none_or(|e| e.check().is_ok());
    let cipher = match manifest.as_ref() {
        Some(m) if (deep || key.is_some()) && readable(m) => {
            envelope::resolve(m.encryption.as_ref(), key, database_id, backup_id)?
        }
        _ => None,
    };
    let config = match log
        .as_ref()
        .map_or_else(
            || {
                read_edn_opt(
                    store,
                    &layout::backup_file(database_id, backup_id, layout::CONFIG),
                )
            },
            |log| Ok(Some(log.head.to_value())),
        )
        .and_then(|c| {
            c.map(|c| envelope::open_config(c, cipher.as_deref()))
                .transpose()
        }) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("config.edn is unreadable: {}", e.message));
            None
        }
    };
    let complete = manifest.as_ref().is_some_and(|m| m.completed)
        && (log.is_some() || has(layout::COMPLETE_MARKER));
    if manifest.is_some() && !complete {
        problems.push("backup is incomplete: no complete.marker or :backup/completed false".into());
    }
    let chunks = manifest.as_ref().map_or(&[][..], |m| &m.chunks[..]);
    let presence = check::present(store, &prefix, chunks, &objects);
    if manifest.is_some() && log.is_none() {
        let extra = check::unlisted(&prefix, chunks, &objects);
        if !extra.is_empty() {
            problems.push(check::unlisted_error(&extra, store.location(&prefix)).message);
        }
    }
    // Continue the content check of the chain's earlier links, if any.
    let mut content = manifest.as_ref().map(|m| match carried.take() {
        Some(mut c) => {
            c.next_link(m, m.datom_count);
            c
        }
        None => ContentCheck::new(m, config.as_ref()),
    });
    let (mut present, mut sums_ok, mut decoded_all, mut datoms) = (true, true, true, 0u64);
    for (c, found) in chunks.iter().zip(presence) {
        let key = layout::chunk_in(&prefix, c);
        let location = || store.location(&key);
        let absent = match found {
            check::Presence::Stored(_) => None,
            check::Presence::Missing(e) => {
                present = false;
                Some(e)
            }
            check::Presence::WrongSize(e) => {
                sums_ok = false;
                Some(e)
            }
        };
        if let Some(e) = absent {
            decoded_all = false;
            problems.push(format!("{} ({})", e.message, c.key));
            continue;
        }
        let bytes = match check::fetch_stored(store, &prefix, c) {
            Ok(bytes) => bytes,
            Err(e) if matches!(e.kind, ErrorKind::Corrupt | ErrorKind::NotFound) => {
                sums_ok = false;
                decoded_all = false;
                problems.push(format!("{} ({})", e.message, c.key));
                continue;
            }
            Err(e) => return Err(e),
        };
        if deep {
            let checked =
                check::decode_checked(c, &bytes, cipher.as_deref(), location).and_then(|d| {
                    datoms += d.datoms.len() as u64;
                    match content.as_mut() {
                        Some(content) => content.chunk(c, &d),
                        None => Ok(()),
                    }
                });
            if let Err(e) = checked {
                decoded_all = false;
                problems.push(e.message);
            }
        }
    }
    if let (true, true, Some(content)) = (deep, decoded_all, content.as_mut()) {
        if let Err(e) = content.finish() {
            problems.push(e.message);
        }
    }
    *carried = content;
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
        chain: vec![backup_id.to_owned()],
    })
}

/// A backup's manifest, validated (its problems added to `problems`); `None` when missing
/// or unreadable (said in `problems`).
fn read_manifest(
    store: &dyn Store,
    database_id: &str,
    backup_id: &str,
    manifest_key: &str,
    has: &dyn Fn(&str) -> bool,
    problems: &mut Vec<String>,
) -> Option<Manifest> {
    match read_edn(store, manifest_key).and_then(|v| Manifest::from_value(&v)) {
        Ok(m) => {
            problems.extend(
                m.validate(database_id, backup_id)
                    .iter()
                    .map(|p| p.to_string()),
            );
            Some(m)
        }
        Err(e) if e.kind == ErrorKind::NotFound && !has(layout::COMPLETE_MARKER) => {
            problems.push(
                "backup is incomplete: no manifest.edn (interrupted or still running)".into(),
            );
            None
        }
        Err(e) => {
            problems.push(format!("manifest.edn is unreadable: {}", e.message));
            if has(layout::COMPLETE_MARKER) {
                problems.push(super::list::REPAIRABLE.into());
            }
            None
        }
    }
}

/// Add the chain checks of a complete backup to its report: state chunks of every link,
/// the chain's integrity (`resolved`: the backup's chain as resolved), the ancestors' chunks
/// (`deep`: the problems the deep checks of `ancestors` found, by backup id).
fn verify_chain(
    store: &dyn Store,
    report: &mut VerifyReport,
    resolved: Result<crate::chain::resolve::Chain>,
    ancestors: &[(String, Vec<String>)],
    key: Option<&KeySpec>,
) -> Result<()> {
    if !report.complete {
        return Ok(());
    }
    let (db, id) = (report.database_id.clone(), report.backup_id.clone());
    if store
        .size(&layout::backup_file(&db, &id, layout::PRUNE_TOMBSTONE))?
        .is_some()
    {
        report.complete = false;
        report
            .problems
            .push("backup is being deleted by prune-backups (prune.edn present)".into());
        return Ok(());
    }
    let chain = match resolved {
        Ok(c) => c,
        Err(e) if e.kind == ErrorKind::Corrupt => {
            report.problems.push(e.message);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    report.chain = chain.ids();
    for link in &chain.links {
        let name = |what: String| {
            if link.id() == id {
                what
            } else {
                format!("link {}: {what}", link.id())
            }
        };
        for meta in link.manifest.link.no_history.iter().flatten() {
            if let Err(e) = check::fetch_stored(store, &link.prefix, meta) {
                if e.kind != ErrorKind::Corrupt {
                    return Err(e);
                }
                report
                    .problems
                    .push(name(format!("state {} ({})", e.message, meta.key)));
            }
        }
        if link.id() == id {
            continue;
        }
        if report.deep {
            let problems = match ancestors.iter().find(|(a, _)| a == link.id()) {
                Some((_, p)) => p.clone(),
                None => verify_one(store, &db, link.id(), true, &mut None, key)?.problems,
            };
            report.problems.extend(problems.into_iter().map(&name));
            continue;
        }
        let sizes: std::collections::HashMap<String, u64> = store
            .list(&link.prefix)?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        for c in &link.manifest.chunks {
            let key = layout::chunk_in(&link.prefix, c);
            let location = || store.location(&key);
            let problem = match sizes.get(&key) {
                None => Some(check::missing(c, location())),
                Some(&n) => check::check_size(c, n, location).err(),
            };
            if let Some(e) = problem {
                report
                    .problems
                    .push(name(format!("{} ({})", e.message, c.key)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, history};

    #[test]
    fn a_deep_verify_of_a_schema_on_write_chain_checks_its_links_as_one_stream() {
        use crate::model::{Attr, Datom, Name, Value};
        // Schema-on-write: the attributes are declared (:db/ident) in the base's first
        // transaction only; the incrementals use them.
        let with_schema = |n: i64| {
            let mut d = history(n);
            for (e, ident) in [(1, "person/name"), (2, "person/friend")] {
                d.push(Datom {
                    e,
                    a: Attr::Keyword(Name::parse("db/ident")),
                    v: Value::Keyword(Name::parse(ident)),
                    tx: crate::model::TX0 + 1,
                    added: true,
                });
            }
            d.sort_by_key(|d| d.e);
            d
        };
        let (mem, store) = testing::store();
        let mut ids: Vec<String> = Vec::new();
        for n in [10, 20, 30] {
            let mut o = testing::options("db", 600, n);
            o.db_config = crate::codec::edn::parse("{:schema-flexibility :write}").unwrap();
            o.parent = ids.last().cloned();
            o.incremental = o.parent.is_some();
            ids.push(
                testing::backup(&store, o, &with_schema(n))
                    .manifest
                    .backup_id,
            );
        }
        for id in &ids {
            let r = verify(store.as_ref(), "db", id, true, None).unwrap();
            assert!(r.success(), "{id}: {:?}", r.problems);
        }
        // The check still bites: an attribute nobody declared, in the tip.
        let tip = ids.last().unwrap();
        let mut o = testing::options("db", 600, 31);
        o.db_config = crate::codec::edn::parse("{:schema-flexibility :write}").unwrap();
        o.parent = Some(tip.clone());
        o.incremental = true;
        let mut d = with_schema(31);
        d.push(Datom {
            e: 131,
            a: Attr::Keyword(Name::parse("person/undeclared")),
            v: Value::Long(1),
            tx: crate::model::TX0 + 31,
            added: true,
        });
        d.sort_by_key(|d| d.e);
        let bad = testing::backup(&store, o, &d).manifest.backup_id;
        let r = verify(store.as_ref(), "db", &bad, true, None).unwrap();
        assert!(!r.success());
        assert!(
            r.problems.iter().any(|p| p.contains(":person/undeclared")),
            "{:?}",
            r.problems
        );
        drop(mem);
    }

    #[test]
    fn good_damaged_and_incomplete_backups() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 600, 30), &history(30));
        let id = r.manifest.backup_id.clone();
        let good = verify(store.as_ref(), "db", &id, true, None).unwrap();
        assert!(good.success(), "{good:?}");
        assert_eq!(good.datoms_verified, Some(r.manifest.datom_count));
        assert_eq!(good.chunk_count, r.manifest.chunks.len() as u64);
        let c1 = layout::chunk_key("db", &id, 1);
        let bytes = mem.get(&c1).unwrap();
        let mut flipped = bytes.clone();
        flipped[25] ^= 1;
        mem.put(&c1, &flipped).unwrap();
        mem.delete(&layout::chunk_key("db", &id, 3)).unwrap();
        let bad = verify(store.as_ref(), "db", &id, false, None).unwrap();
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
        let incomplete = verify(store.as_ref(), "db", &id, true, None).unwrap();
        assert!(!incomplete.complete && !incomplete.success());
        assert_eq!(
            verify(store.as_ref(), "db", "missing", false, None)
                .unwrap_err()
                .kind,
            ErrorKind::NotFound
        );
    }
}
