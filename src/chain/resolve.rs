//! Resolving a chain: from any backup id, its links back to the base full backup.
//!
//! A link is usable when it is complete (manifest with `:backup/completed true`, the
//! completion marker, no prune tombstone). A chain is intact when every link is usable,
//! every incremental's parent exists, belongs to the same database (database id and
//! Datahike identity), and the links are contiguous: an incremental covers the
//! transactions after exactly its parent's basis (`:backup/tx-range [after …]` with
//! `after` = the parent's `:stats/max-tx`), and names the chain's real base. The first
//! problem found ends the resolution, naming the link (`Corrupt` for a broken chain).

use std::collections::HashSet;

use crate::error::{Error, ErrorKind, Result};
use crate::model::Value;
use crate::repo::layout;
use crate::repo::manifest::Manifest;
use crate::repo::meta::{read_edn, read_edn_opt};
use crate::store::Store;

/// The longest chain followed (a guard against cycles written by hand).
pub const MAX_LINKS: usize = 100_000;

/// One backup of a chain: its manifest, its `config.edn` and where it lives.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// The manifest.
    pub manifest: Manifest,
    /// Its `config.edn` (`Nil` when missing, e.g. the original datacamp's backups).
    pub config: Value,
    /// The backup's folder key (`layout::backup_prefix`).
    pub prefix: String,
}

impl Link {
    /// The backup id.
    pub fn id(&self) -> &str {
        &self.manifest.backup_id
    }

    /// Whether this link is an incremental.
    pub fn is_incremental(&self) -> bool {
        self.manifest.backup_type == "incremental"
    }

    /// Whether this link is a log of continuous backup ([`crate::log`]; its manifest is
    /// [`crate::log::read::StoredLog::link_manifest`]).
    pub fn is_log(&self) -> bool {
        self.manifest.backup_type == "log"
    }

    /// Whether this link continues a parent (an incremental or a log).
    pub fn continues(&self) -> bool {
        self.is_incremental() || self.is_log()
    }

    /// The source database's `:datahike/id` as `config.edn` records it.
    pub fn datahike_id(&self) -> Option<&str> {
        self.config.get("datahike/id").and_then(Value::as_str)
    }
}

/// A resolved, intact chain: the base full backup first, the requested backup last.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    /// The links, base first.
    pub links: Vec<Link>,
}

impl Chain {
    /// The base (root) full backup.
    pub fn base(&self) -> &Link {
        &self.links[0]
    }

    /// The requested backup (the last link).
    pub fn tip(&self) -> &Link {
        self.links.last().expect("a chain has at least one link")
    }

    /// The backup ids, base first.
    pub fn ids(&self) -> Vec<String> {
        self.links.iter().map(|l| l.id().to_owned()).collect()
    }
}

/// Whether backup `id` of `db` is complete: manifest says so, the marker exists and no
/// prune tombstone does. Reads only sizes.
pub fn is_usable(store: &dyn Store, db: &str, id: &str, manifest: &Manifest) -> Result<bool> {
    Ok(manifest.completed
        && store
            .size(&layout::backup_file(db, id, layout::COMPLETE_MARKER))?
            .is_some()
        && store
            .size(&layout::backup_file(db, id, layout::PRUNE_TOMBSTONE))?
            .is_none())
}

/// Read log `id` as a link: its manifest is its contiguous run of segments; its config is
/// its head (which carries the keys of a `config.edn` a restore reads). A log being pruned
/// is `Conflict`; an unreadable head `Corrupt`.
fn read_log(
    store: &dyn Store,
    db: &str,
    id: &str,
    objects: &[crate::store::ObjectMeta],
    op: &str,
) -> Result<Link> {
    let tombstone = layout::backup_file(db, id, layout::PRUNE_TOMBSTONE);
    if objects.iter().any(|o| o.key == tombstone) {
        return Err(Error::new(
            ErrorKind::Conflict,
            op,
            format!("log {id} is being deleted by prune-backups"),
        )
        .with_key(store.location(&layout::backup_prefix(db, id))));
    }
    let log = crate::log::read::read_listed(store, db, id, objects)?;
    if log.head.database_id != db || log.head.log_id != id {
        return Err(Error::corrupt(
            op,
            format!("the head of log {id} names another database or log"),
        )
        .with_key(store.location(&log.prefix)));
    }
    Ok(Link {
        manifest: log.link_manifest(),
        config: log.head.to_value(),
        prefix: log.prefix,
    })
}

/// Read the link `id` of database `db`. `NotFound` when nothing is stored under it,
/// `Conflict` when it is incomplete (or being pruned); `op` names the operation.
pub fn read_link(store: &dyn Store, db: &str, id: &str, op: &str) -> Result<Link> {
    layout::check_segment("backup-id", id)?;
    let prefix = layout::backup_prefix(db, id);
    let manifest = match read_edn(store, &layout::backup_file(db, id, layout::MANIFEST)) {
        Ok(v) => Manifest::from_value(&v).map_err(|e| e.with_key(store.location(&prefix)))?,
        Err(e) if e.kind == ErrorKind::NotFound => {
            let objects = store.list(&prefix)?;
            let head = layout::backup_file(db, id, layout::LOG_HEAD);
            if objects.iter().any(|o| o.key == head) {
                return read_log(store, db, id, &objects, op);
            }
            let exists = !objects.is_empty();
            return Err(if exists {
                Error::new(
                    ErrorKind::Conflict,
                    op,
                    format!("backup {id} is incomplete (no manifest)"),
                )
                .with_hint("resume or remove it; restore only complete backups")
            } else {
                Error::new(
                    ErrorKind::NotFound,
                    op,
                    format!("no backup {id} for database {db}"),
                )
            }
            .with_key(store.location(&prefix)));
        }
        Err(e) => return Err(e),
    };
    // Chain walks use the manifest's id: it must be the one the link is stored under.
    if manifest.backup_id != id {
        return Err(Error::corrupt(
            op,
            format!(
                "the manifest of backup {id} names backup {}",
                crate::error::clip(&manifest.backup_id)
            ),
        )
        .with_key(store.location(&prefix)));
    }
    if !is_usable(store, db, id, &manifest)? {
        return Err(Error::new(
            ErrorKind::Conflict,
            op,
            format!("backup {id} is incomplete (or being deleted by prune-backups)"),
        )
        .with_key(store.location(&prefix)));
    }
    let config =
        read_edn_opt(store, &layout::backup_file(db, id, layout::CONFIG))?.unwrap_or(Value::Nil);
    Ok(Link {
        manifest,
        config,
        prefix,
    })
}

fn broken(op: &str, message: String, key: String) -> Error {
    Error::corrupt(op, format!("broken chain: {message}"))
        .with_key(key)
        .with_hint("restore an earlier backup whose chain is intact, or take a new full backup")
}

/// Given a backup id, return its chain, base first, checked as the module doc says.
///
/// Errors: `NotFound` / `Conflict` for the requested backup itself (as [`read_link`]);
/// `Corrupt` naming the link for a missing, incomplete, foreign or non-contiguous parent.
pub fn resolve(store: &dyn Store, db: &str, id: &str, op: &str) -> Result<Chain> {
    layout::check_segment("database-id", db)?;
    let mut links = vec![read_link(store, db, id, op)?];
    let mut seen = HashSet::from([id.to_owned()]);
    loop {
        let child = links.last().expect("not empty");
        if !child.continues() {
            break;
        }
        let cid = child.id().to_owned();
        let Some(parent_id) = child.manifest.link.parent.clone() else {
            return Err(broken(
                op,
                format!("{} {cid} names no parent", child.manifest.backup_type),
                store.location(&child.prefix),
            ));
        };
        if !seen.insert(parent_id.clone()) || links.len() >= MAX_LINKS {
            return Err(broken(
                op,
                format!("backup {cid}'s ancestry loops back to {parent_id}"),
                store.location(&child.prefix),
            ));
        }
        let parent = match read_link(store, db, &parent_id, op) {
            Ok(p) => p,
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Conflict) => {
                let what = if e.kind == ErrorKind::NotFound {
                    "is missing"
                } else {
                    "is incomplete"
                };
                return Err(broken(
                    op,
                    format!("backup {cid}'s parent {parent_id} {what}"),
                    store.location(&layout::backup_prefix(db, &parent_id)),
                ));
            }
            Err(e) => return Err(e),
        };
        check_pair(op, store, &parent, child)?;
        links.push(parent);
    }
    links.reverse();
    let base = links[0].id().to_owned();
    for l in links.iter().skip(1) {
        if l.manifest.link.base.as_deref() != Some(base.as_str()) {
            return Err(broken(
                op,
                format!(
                    "backup {} names base {} but its chain starts at {base}",
                    l.id(),
                    l.manifest.link.base.as_deref().unwrap_or("nil")
                ),
                store.location(&l.prefix),
            ));
        }
    }
    Ok(Chain { links })
}

/// Check that `child` continues `parent`: same database, contiguous tx ranges.
fn check_pair(op: &str, store: &dyn Store, parent: &Link, child: &Link) -> Result<()> {
    let (pid, cid) = (parent.id(), child.id());
    let key = || store.location(&child.prefix);
    if parent.manifest.database_id != child.manifest.database_id {
        return Err(broken(
            op,
            format!(
                "backup {cid}'s parent {pid} belongs to database {:?}",
                parent.manifest.database_id
            ),
            key(),
        ));
    }
    if parent.datahike_id() != child.datahike_id() {
        return Err(broken(
            op,
            format!(
                "backup {cid}'s parent {pid} is of another Datahike database (:datahike/id {} vs {})",
                parent.datahike_id().unwrap_or("nil"),
                child.datahike_id().unwrap_or("nil")
            ),
            key(),
        ));
    }
    let after = child.manifest.link.after_tx;
    if after != Some(parent.manifest.max_tx) {
        return Err(broken(
            op,
            format!(
                "backup {cid} covers the transactions after {} but its parent {pid} ends at {}",
                after.map_or("nil".into(), |t| t.to_string()),
                parent.manifest.max_tx
            ),
            key(),
        ));
    }
    Ok(())
}
