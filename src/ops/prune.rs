//! `prune-backups`: delete the complete backups a retention policy does not keep, never one
//! that a kept (or incomplete) backup depends on ([`crate::chain::retention`] decides).
//!
//! Crash safety: a backup is deleted by first writing its tombstone (`prune.edn`), then
//! removing its completion marker and manifest (from then on nothing lists, verifies or
//! restores it as complete), then its other files, the tombstone last. Backups are deleted
//! dependents first, so at every moment every complete backup's chain is intact. A prune
//! killed halfway leaves a tombstoned, incomplete backup: the next run finishes it (and
//! `cleanup-incomplete` would remove it too). A dry run (the default) only reports.

use crate::chain::retention::{self, Decision, Entry, Policy, Reason};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::model::{kw_map, Value};
use crate::options::Opts;
use crate::repo::layout;
use crate::repo::meta::{read_edn_opt, write_edn};
use crate::store::Store;

use super::list::list;

const OP: &str = "prune backups";

/// The option keys a caller of `prune-backups` may pass (checked by
/// [`crate::options::check_keys`]). A new option is one line here.
pub const KEYS: &[&str] = &[
    "keep-last",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "dry-run?",
];

/// What to keep, and whether to delete for real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneOptions {
    /// The retention policy (at least one rule must be on).
    pub policy: Policy,
    /// Only report what would be deleted (the default).
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            policy: Policy::default(),
            dry_run: true,
        }
    }
}

impl PruneOptions {
    /// Parse `{:keep-last n :keep-daily n :keep-weekly n :keep-monthly n :dry-run? b}`.
    /// `InvalidArgument` when no rule is given or a count is not a non-negative integer.
    pub fn from_edn(v: &Value) -> Result<Self> {
        let o = Opts::new(v, OP)?;
        let n = |k: &str| o.long_in(k, 0, 0, 1_000_000).map(|x| x as u32);
        let policy = Policy {
            keep_last: n("keep-last")?,
            keep_daily: n("keep-daily")?,
            keep_weekly: n("keep-weekly")?,
            keep_monthly: n("keep-monthly")?,
        };
        if policy.is_empty() {
            return Err(Error::invalid(
                OP,
                "give at least one of :keep-last, :keep-daily, :keep-weekly, :keep-monthly",
            )
            .with_hint("a policy that keeps nothing would delete every backup"));
        }
        Ok(PruneOptions {
            policy,
            dry_run: o.bool("dry-run?", true)?,
        })
    }
}

/// What `prune-backups` did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// The database id.
    pub database_id: String,
    /// Nothing was deleted.
    pub dry_run: bool,
    /// The backups kept and why, newest first.
    pub kept: Vec<(String, Vec<Reason>)>,
    /// The backups deleted (would be, in a dry run), in deletion order.
    pub deleted: Vec<String>,
    /// Backups an interrupted prune had begun to delete, finished now.
    pub finished: Vec<String>,
    /// Tombstoned backups something depends on, still intact: their tombstone was removed.
    pub rescued: Vec<String>,
    /// Incomplete backups, untouched.
    pub incomplete: Vec<String>,
    /// Objects deleted.
    pub objects_deleted: u64,
}

/// Apply `opts` to the backups of `database_id` (see the module doc).
pub fn prune(store: &dyn Store, database_id: &str, opts: &PruneOptions) -> Result<PruneReport> {
    let mut entries = Vec::new();
    let mut intact = std::collections::HashSet::new();
    for s in list(store, database_id)? {
        let parent = match (&s.manifest, s.completed) {
            _ if s.log.is_some() => s.log.as_ref().map(|l| l.head.parent.clone()),
            (Some(m), true) => m.link.parent.clone(),
            _ => read_edn_opt(
                store,
                &layout::backup_file(database_id, &s.backup_id, layout::CONFIG),
            )
            .ok()
            .flatten()
            .and_then(|c| {
                c.get("backup/parent")
                    .and_then(Value::as_str)
                    .map(String::from)
            }),
        };
        if s.pruning
            && s.manifest.as_ref().is_some_and(|m| m.completed)
            && store
                .size(&layout::backup_file(
                    database_id,
                    &s.backup_id,
                    layout::COMPLETE_MARKER,
                ))?
                .is_some()
        {
            intact.insert(s.backup_id.clone());
        }
        entries.push(Entry {
            id: s.backup_id,
            created_ms: s.created_at_ms,
            parent,
            complete: s.completed,
            pruning: s.pruning,
            log: s.log.is_some(),
        });
    }
    let Decision {
        keep,
        delete,
        finish,
        incomplete,
    } = retention::decide(&opts.policy, &entries);
    let pruning: Vec<&str> = entries
        .iter()
        .filter(|e| e.pruning)
        .map(|e| e.id.as_str())
        .collect();
    let rescue: Vec<String> = keep
        .iter()
        .filter(|(id, _)| pruning.contains(&id.as_str()) && intact.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    let mut report = PruneReport {
        database_id: database_id.to_owned(),
        dry_run: opts.dry_run,
        kept: keep,
        deleted: delete,
        finished: finish,
        rescued: rescue,
        incomplete,
        objects_deleted: 0,
    };
    if opts.dry_run {
        return Ok(report);
    }
    for id in &report.rescued {
        store.delete(&layout::backup_file(
            database_id,
            id,
            layout::PRUNE_TOMBSTONE,
        ))?;
    }
    for id in report.finished.iter().chain(&report.deleted) {
        report.objects_deleted += delete_backup(store, database_id, id)?;
    }
    Ok(report)
}

/// Delete one backup crash-safely (tombstone, marker, manifest, the rest, the tombstone);
/// return the number of objects deleted.
fn delete_backup(store: &dyn Store, db: &str, id: &str) -> Result<u64> {
    let prefix = layout::backup_prefix(db, id);
    let file = |name: &str| layout::backup_file(db, id, name);
    let tombstone = file(layout::PRUNE_TOMBSTONE);
    if store.size(&tombstone)?.is_none() {
        write_edn(
            store,
            &tombstone,
            &kw_map([
                ("prune/backup-id", Value::str(id)),
                ("prune/started-at", Value::Inst(now_ms())),
            ]),
        )?;
    }
    failpoint::hit("prune-tombstoned");
    let mut deleted = 0;
    for name in [layout::COMPLETE_MARKER, layout::MANIFEST] {
        if store.size(&file(name))?.is_some() {
            store.delete(&file(name))?;
            deleted += 1;
            failpoint::hit("prune-object-deleted");
        }
    }
    for o in store.list(&prefix)? {
        if o.key != tombstone {
            store.delete(&o.key)?;
            deleted += 1;
            failpoint::hit("prune-object-deleted");
        }
    }
    Ok(deleted + store.delete_prefix(&prefix)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing;

    fn policy(last: u32) -> PruneOptions {
        PruneOptions {
            policy: Policy {
                keep_last: last,
                ..Policy::default()
            },
            dry_run: false,
        }
    }

    #[test]
    fn options_need_a_rule_and_default_to_a_dry_run() {
        let parse = |s: &str| PruneOptions::from_edn(&crate::codec::edn::parse(s).unwrap());
        assert!(parse("{}").is_err());
        assert!(parse("{:keep-last -1}").is_err());
        let o = parse("{:keep-daily 7}").unwrap();
        assert!(o.dry_run);
        assert_eq!(o.policy.keep_daily, 7);
        assert!(!parse("{:keep-last 1 :dry-run? false}").unwrap().dry_run);
    }

    #[test]
    fn a_dry_run_deletes_nothing_and_a_real_one_keeps_what_is_needed() {
        let (mem, store) = testing::store();
        let chain = testing::chain(&store, "db", &[10, 14, 18]);
        let other = testing::chain(&store, "db", &[20, 22]);
        let before = mem.list("db/").unwrap();
        let dry = prune(
            store.as_ref(),
            "db",
            &PruneOptions {
                dry_run: true,
                ..policy(1)
            },
        )
        .unwrap();
        assert_eq!(mem.list("db/").unwrap(), before);
        assert_eq!(dry.deleted, [chain[2].as_str(), &chain[1], &chain[0]]);
        let kept: Vec<&str> = dry.kept.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(kept, [other[1].as_str(), &other[0]]);
        let done = prune(store.as_ref(), "db", &policy(1)).unwrap();
        assert_eq!(done.deleted, dry.deleted);
        assert!(done.objects_deleted > 6);
        let left: Vec<String> = crate::ops::list::list(store.as_ref(), "db")
            .unwrap()
            .into_iter()
            .map(|s| s.backup_id)
            .collect();
        assert_eq!(left, [other[1].clone(), other[0].clone()]);
        assert!(mem
            .list(&layout::backup_prefix("db", &chain[0]))
            .unwrap()
            .is_empty());
        // The kept chain still restores whole.
        assert!(testing::restore(&store, "db", &other[1]).is_ok());
    }

    #[test]
    fn an_interrupted_deletion_is_finished_by_the_next_run() {
        let (mem, store) = testing::store();
        let old = testing::chain(&store, "db", &[10, 12]);
        let new = testing::chain(&store, "db", &[15]);
        // A prune killed after the tombstone and the marker of old[1]: it lists as pruning.
        let id = &old[1];
        write_edn(
            &mem,
            &layout::backup_file("db", id, layout::PRUNE_TOMBSTONE),
            &Value::Nil,
        )
        .unwrap();
        mem.delete(&layout::backup_file("db", id, layout::COMPLETE_MARKER))
            .unwrap();
        let listed = crate::ops::list::list(store.as_ref(), "db").unwrap();
        assert!(listed
            .iter()
            .any(|s| s.backup_id == *id && s.pruning && !s.completed));
        let v = crate::ops::verify::verify(store.as_ref(), "db", id, false, None).unwrap();
        assert!(!v.complete && !v.success(), "{v:?}");
        // Killed right after the tombstone: the marker is still there, but no more complete.
        let other = &old[0];
        write_edn(
            &mem,
            &layout::backup_file("db", other, layout::PRUNE_TOMBSTONE),
            &Value::Nil,
        )
        .unwrap();
        let v = crate::ops::verify::verify(store.as_ref(), "db", other, false, None).unwrap();
        assert!(!v.complete && !v.success(), "{v:?}");
        assert!(v.problems[0].contains("being deleted"), "{v:?}");
        mem.delete(&layout::backup_file("db", other, layout::PRUNE_TOMBSTONE))
            .unwrap();
        assert_eq!(
            testing::restore(&store, "db", id).unwrap_err().kind,
            crate::error::ErrorKind::Conflict
        );
        let r = prune(store.as_ref(), "db", &policy(1)).unwrap();
        assert_eq!(r.finished, std::slice::from_ref(id));
        assert_eq!(r.deleted, [old[0].clone()]);
        let left: Vec<String> = crate::ops::list::list(store.as_ref(), "db")
            .unwrap()
            .into_iter()
            .map(|s| s.backup_id)
            .collect();
        assert_eq!(left, new);
        // Re-running changes nothing.
        let again = prune(store.as_ref(), "db", &policy(1)).unwrap();
        assert!(again.deleted.is_empty() && again.finished.is_empty());
    }
}
