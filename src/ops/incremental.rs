//! The parent of an incremental backup: which backup it continues, and whether it may.
//!
//! `:incremental? true` picks the newest complete backup of the database (ours, restore
//! order); `:parent id` names one. The parent must be complete, of the same database (the
//! database id and the Datahike identity `:datahike/id` its `config.edn` records), hold
//! datoms of a database that keeps history (a current-only full backup of such a database
//! is fine), and not be ahead of the database (its basis `<=` the database's `:max-tx`).
//! Every refusal happens before anything is written.

use std::sync::Arc;

use crate::chain::resolve::{self, Link};
use crate::crypto::envelope::{self, BackupCipher, Envelope};
use crate::error::{Error, ErrorKind, Result};
use crate::model::Value;
use crate::repo::manifest::{ChunkMeta, ChunkOrder};
use crate::store::Store;

use super::backup::BackupOptions;

const OP: &str = "open incremental backup";

/// The backup an incremental continues, as the new link records it.
#[derive(Clone, Debug)]
pub struct Parent {
    /// The parent's backup id.
    pub id: String,
    /// The chain's base (the parent itself when it is a full backup).
    pub base: String,
    /// The parent's basis: the new link covers the transactions after it.
    pub after_tx: i64,
    /// The parent's folder key.
    pub prefix: String,
    /// The parent's `:db/noHistory` state chunks (`None`: not recorded).
    pub no_history: Option<Vec<ChunkMeta>>,
    /// An encrypted chain's: the parent's record and cipher (its state chunks are sealed).
    pub sealing: Option<(Envelope, Arc<BackupCipher>)>,
}

fn refuse(message: String, hint: &str) -> Error {
    Error::invalid(OP, message).with_hint(hint)
}

/// Given the store and the backup options, return the parent when the options ask for an
/// incremental (`None` for a full backup), checked as the module doc says.
///
/// Errors: `InvalidArgument` (with a hint) for a database without history, no complete
/// backup to continue, an incomplete, foreign or newer parent, or one whose
/// `:db/noHistory` state was not recorded while the database has such attributes;
/// `NotFound` for a `:parent` that does not exist; `Corrupt` when a state chunk of the
/// parent is missing or truncated.
pub fn parent_of(store: &dyn Store, opts: &BackupOptions) -> Result<Option<Parent>> {
    if !opts.incremental && opts.parent.is_none() {
        return Ok(None);
    }
    if !opts.history {
        return Err(refuse(
            "an incremental backup needs the database's history (the db keeps none, or :history? false was given): without it, retractions are lost".into(),
            "take a full backup instead",
        ));
    }
    let db = &opts.database_id;
    let link: Link = match &opts.parent {
        Some(id) => match resolve::read_link(store, db, id, OP) {
            Ok(l) => l,
            Err(e) if e.kind == ErrorKind::Conflict => {
                return Err(Error::invalid(OP, format!("the parent {id} is incomplete"))
                    .with_key(e.key.unwrap_or_default())
                    .with_hint("resume it (resume-backup) or name a complete backup as :parent"))
            }
            Err(e) => return Err(e),
        },
        None => newest_complete(store, db)?,
    };
    let m = &link.manifest;
    let id = m.backup_id.clone();
    if link.config == Value::Nil || m.order != ChunkOrder::Restore {
        return Err(refuse(
            format!("backup {id} cannot be a parent: it has no config.edn recording its database (written by the original datacamp?)"),
            "take a full backup with this version first",
        ));
    }
    if m.database_id != *db {
        return Err(refuse(
            format!(
                "backup {id} belongs to database {:?}, not {db:?}",
                m.database_id
            ),
            "name a backup of this database as :parent",
        ));
    }
    // An encrypted chain continues with the chain's key; plain and encrypted links never mix.
    let sealing = match (&m.encryption, &opts.encryption) {
        (None, None) => None,
        (Some(env), Some(spec)) => Some((env.clone(), Arc::new(spec.open(env, db, &id)?))),
        (Some(env), None) => {
            return Err(envelope::missing_key(&env.key_id, &id).with_hint(
                "an incremental of an encrypted chain is encrypted with the chain's key: pass it with :encryption",
            ))
        }
        (None, Some(_)) => {
            return Err(refuse(
                format!("backup {id} is not encrypted: an encrypted incremental cannot continue it"),
                "leave out :encryption, or start an encrypted chain with a full backup",
            ))
        }
    };
    let config = envelope::open_config(
        link.config.clone(),
        sealing.as_ref().map(|(_, c)| c.as_ref()),
    )?;
    let recorded = config.get("datahike/id").and_then(Value::as_str);
    if recorded != opts.datahike_id.as_deref() {
        return Err(refuse(
            format!(
                "backup {id} is of another Datahike database (:datahike/id {} there, {} here)",
                recorded.unwrap_or("nil"),
                opts.datahike_id.as_deref().unwrap_or("nil")
            ),
            "an incremental continues a backup of the same database; take a full backup of this one",
        ));
    }
    if m.max_tx > opts.max_tx {
        return Err(refuse(
            format!(
                "backup {id} is ahead of this database (its basis is tx {}, the database's max-tx is {})",
                m.max_tx, opts.max_tx
            ),
            "this is another database, or one restored from an older backup: take a full backup",
        ));
    }
    if m.link.no_history.is_none() && !opts.no_history_attrs.is_empty() {
        return Err(refuse(
            format!("backup {id} did not record the :db/noHistory state this database needs"),
            "take a full backup with this version first",
        ));
    }
    // The parent's state is read at the end of the walk: check it is there now.
    for meta in m.link.no_history.iter().flatten() {
        let key = crate::repo::layout::chunk_in(&link.prefix, meta);
        match store.size(&key)? {
            None => return Err(super::check::missing(meta, store.location(&key))),
            Some(n) => super::check::check_size(meta, n, || store.location(&key))?,
        }
    }
    Ok(Some(Parent {
        base: m.link.base.clone().unwrap_or_else(|| id.clone()),
        after_tx: m.max_tx,
        prefix: link.prefix.clone(),
        no_history: m.link.no_history.clone(),
        id,
        sealing,
    }))
}

/// The newest complete backup of ours (restore order) of `db`.
fn newest_complete(store: &dyn Store, db: &str) -> Result<Link> {
    for s in super::list::list(store, db)? {
        let ours = s
            .manifest
            .as_ref()
            .is_some_and(|m| m.order == ChunkOrder::Restore);
        if s.completed && ours {
            return resolve::read_link(store, db, &s.backup_id, OP);
        }
    }
    Err(refuse(
        format!("database {db} has no complete backup to continue"),
        "take a full backup first (or leave out :incremental?)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attr, Datom, Name, TX0};
    use crate::ops::backup::BackupSession;
    use crate::ops::testing::{self, history};
    use crate::repo::layout;
    use crate::repo::manifest::Manifest;
    use crate::repo::meta::read_edn;

    fn refused(store: &Arc<dyn Store>, o: BackupOptions) -> crate::error::Error {
        BackupSession::open(store.clone(), o).err().unwrap()
    }

    use std::sync::Arc;

    #[test]
    fn parents_are_checked_before_anything_is_written() {
        let (mem, store) = testing::store();
        let inc = |n: i64| {
            let mut o = testing::options("db", 600, n);
            o.incremental = true;
            o
        };
        let e = refused(&store, inc(5));
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("no complete backup"), "{e}");
        let mut with_id = testing::options("db", 600, 8);
        with_id.datahike_id = Some("dh-1".into());
        let base = testing::backup(&store, with_id.clone(), &history(8));
        let id = base.manifest.backup_id.clone();
        let cases: Vec<(BackupOptions, &str)> = vec![
            (
                BackupOptions {
                    history: false,
                    ..inc(9)
                },
                "needs the database's history",
            ),
            (
                BackupOptions {
                    datahike_id: Some("dh-1".into()),
                    ..inc(7)
                },
                "is ahead of this database",
            ),
            (inc(9), "is of another Datahike database"),
            (
                BackupOptions {
                    datahike_id: Some("dh-2".into()),
                    ..inc(9)
                },
                "is of another Datahike database",
            ),
        ];
        let before = mem.list("db/").unwrap().len();
        for (o, want) in cases {
            let e = refused(&store, o);
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
            assert!(e.message.contains(want), "{e}");
            assert!(e.hint.is_some());
        }
        assert_eq!(mem.list("db/").unwrap().len(), before, "nothing written");
        let missing = BackupOptions {
            parent: Some("nope".into()),
            ..inc(9)
        };
        assert_eq!(refused(&store, missing).kind, ErrorKind::NotFound);
        // An incomplete parent.
        mem.delete(&layout::backup_file("db", &id, layout::COMPLETE_MARKER))
            .unwrap();
        let named = BackupOptions {
            parent: Some(id.clone()),
            datahike_id: Some("dh-1".into()),
            ..inc(9)
        };
        let e = refused(&store, named.clone());
        assert!(e.message.contains("is incomplete"), "{e}");
        mem.put(
            &layout::backup_file("db", &id, layout::COMPLETE_MARKER),
            layout::COMPLETE_MARKER_BYTES,
        )
        .unwrap();
        let ok = testing::backup(&store, named, &history(9));
        assert_eq!(ok.manifest.link.parent.as_deref(), Some(id.as_str()));
        assert_eq!(ok.manifest.link.after_tx, Some(TX0 + 8));
    }

    fn kw(s: &str) -> Attr {
        Attr::Keyword(Name::parse(s))
    }

    fn d(e: i64, a: &str, v: Value, t: i64, added: bool) -> Datom {
        Datom {
            e,
            a: kw(a),
            v,
            tx: TX0 + t,
            added,
        }
    }

    fn inst(t: i64) -> Datom {
        d(TX0 + t, "db/txInstant", Value::Inst(t), t, true)
    }

    #[test]
    fn removed_no_history_values_become_retractions_in_the_first_window_tx() {
        let (mem, store) = testing::store();
        let o = |n: i64| BackupOptions {
            no_history_attrs: [kw("p/nick")].into(),
            max_tx: TX0 + n,
            ..testing::options("db", 1 << 20, n)
        };
        // At tx 2: 1 has nick n1, 2 has nick m1 (the history view shows current noHistory
        // datoms only).
        let at2 = vec![
            d(1, "p/name", Value::str("a"), 1, true),
            d(1, "p/nick", Value::str("n1"), 1, true),
            d(2, "p/nick", Value::str("m1"), 1, true),
            d(3, "p/name", Value::str("c"), 2, true),
            inst(1),
            inst(2),
        ];
        let base = testing::backup(&store, o(2), &at2);
        assert_eq!(base.manifest.link.no_history.as_ref().unwrap().len(), 1);
        // tx 3 replaced 1's nick (upsert: only the new value stays), tx 4 retracted 2's
        // nick (no trace at all), tx 5 renamed 3.
        let at5 = vec![
            d(1, "p/name", Value::str("a"), 1, true),
            d(1, "p/nick", Value::str("n2"), 3, true),
            d(3, "p/name", Value::str("c"), 2, true),
            d(3, "p/name", Value::str("c"), 5, false),
            d(3, "p/name", Value::str("c2"), 5, true),
            inst(1),
            inst(2),
            inst(3),
            inst(4),
            inst(5),
        ];
        let mut io = o(5);
        io.incremental = true;
        let r = testing::backup(&store, io, &at5);
        let got = testing::stored_datoms(&mem, &r);
        let want = vec![
            inst(3),
            d(1, "p/nick", Value::str("n1"), 3, false),
            d(2, "p/nick", Value::str("m1"), 3, false),
            d(1, "p/nick", Value::str("n2"), 3, true),
            inst(4),
            inst(5),
            d(3, "p/name", Value::str("c"), 5, false),
            d(3, "p/name", Value::str("c2"), 5, true),
        ];
        assert_eq!(got, want);
        // Its state: the current nick only.
        let m = Manifest::from_value(
            &read_edn(
                &mem,
                &layout::backup_file("db", &r.manifest.backup_id, layout::MANIFEST),
            )
            .unwrap(),
        )
        .unwrap();
        let state = m.link.no_history.unwrap();
        let prefix = layout::backup_prefix("db", &r.manifest.backup_id);
        let held: Vec<Datom> = state
            .iter()
            .flat_map(|c| {
                crate::ops::check::fetch_checked(&mem, &prefix, c, None)
                    .unwrap()
                    .datoms
            })
            .collect();
        assert_eq!(held, vec![d(1, "p/nick", Value::str("n2"), 3, true)]);
    }

    #[test]
    fn an_interrupted_incremental_resumes_to_the_same_bytes() {
        let (mem, store) = testing::store();
        let ids = testing::chain(&store, "db", &[10, 30]);
        let r = Manifest::from_value(
            &read_edn(&mem, &layout::backup_file("db", &ids[1], layout::MANIFEST)).unwrap(),
        )
        .unwrap();
        assert!(r.chunks.len() > 3);
        let before: Vec<Vec<u8>> = r
            .chunks
            .iter()
            .map(|c| mem.get(&layout::chunk_key("db", &ids[1], c.id)).unwrap())
            .collect();
        for name in [layout::MANIFEST, layout::COMPLETE_MARKER] {
            mem.delete(&layout::backup_file("db", &ids[1], name))
                .unwrap();
        }
        for c in r.chunks.iter().filter(|c| c.id >= 2) {
            mem.delete(&layout::chunk_key("db", &ids[1], c.id)).unwrap();
        }
        let mut o = testing::options("db", 600, 30);
        o.backup_id = Some(ids[1].clone());
        o.resume = true;
        // Resuming as a full backup is another backup: refused.
        let e = BackupSession::open(store.clone(), o.clone()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert!(e.message.contains(":backup/parent"), "{e}");
        o.parent = Some(ids[0].clone());
        o.incremental = true;
        let resumed = testing::backup(&store, o, &history(30));
        assert_eq!(resumed.manifest.chunks, r.chunks);
        assert_eq!(resumed.manifest.link, r.link);
        for (c, b) in r.chunks.iter().zip(&before) {
            assert_eq!(
                &mem.get(&layout::chunk_key("db", &ids[1], c.id)).unwrap(),
                b
            );
        }
    }
}
