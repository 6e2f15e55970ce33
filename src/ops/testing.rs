//! Test support for the operations: a small synthetic history database, backups of it into
//! a [`MemoryStore`], and reading a stored backup back.

use std::collections::HashSet;
use std::sync::Arc;

use crate::model::{Attr, Datom, Name, Value, TX0};
use crate::pipeline::order::OrderSpec;
use crate::store::memory::MemoryStore;
use crate::store::Store;

use super::backup::{BackupOptions, BackupResult, BackupSession};
use super::restore::{RestoreOptions, RestoreSession};

fn kw(s: &str) -> Attr {
    Attr::Keyword(Name::parse(s))
}

/// A history database in EAVT order: `txs` transactions after tx0, each asserting one new
/// person (name, a ref to the previous person) and, from the third on, replacing the name
/// of the person two transactions back (a retraction plus an assertion).
pub fn history(txs: i64) -> Vec<Datom> {
    let mut out = Vec::new();
    for t in 1..=txs {
        let tx = TX0 + t;
        out.push(Datom {
            e: tx,
            a: kw("db/txInstant"),
            v: Value::Inst(1_700_000_000_000 + t),
            tx,
            added: true,
        });
        let e = 100 + t;
        out.push(Datom {
            e,
            a: kw("person/name"),
            v: Value::String(format!("p{t}")),
            tx,
            added: true,
        });
        if t > 1 {
            out.push(Datom {
                e,
                a: kw("person/friend"),
                v: Value::Long(e - 1),
                tx,
                added: true,
            });
        }
        if t > 2 {
            let old = 100 + t - 2;
            out.push(Datom {
                e: old,
                a: kw("person/name"),
                v: Value::String(format!("p{}", t - 2)),
                tx,
                added: false,
            });
            out.push(Datom {
                e: old,
                a: kw("person/name"),
                v: Value::String(format!("renamed in {t}")),
                tx,
                added: true,
            });
        }
    }
    out.sort_by(|a, b| {
        (a.e, a.a.to_string(), format!("{:?}", a.v), a.tx, a.added).cmp(&(
            b.e,
            b.a.to_string(),
            format!("{:?}", b.v),
            b.tx,
            b.added,
        ))
    });
    out
}

/// Backup options for [`history`]: database `db`, chunks of `chunk_size` bytes.
pub fn options(db: &str, chunk_size: usize, txs: i64) -> BackupOptions {
    BackupOptions {
        database_id: db.into(),
        chunk_size,
        order: OrderSpec {
            ref_attrs: HashSet::from([kw("person/friend")]),
            tx_instant: Some(kw("db/txInstant")),
            skip_tx0: false,
        },
        max_eid: 100 + txs,
        max_tx: TX0 + txs,
        ..BackupOptions::default()
    }
}

/// A memory store as the trait object the operations take.
pub fn store() -> (MemoryStore, Arc<dyn Store>) {
    let m = MemoryStore::new();
    let s: Arc<dyn Store> = Arc::new(m.clone());
    (m, s)
}

/// A chain in `store`: a full backup of `history(txs[0])`, then one incremental per
/// further entry, each continuing the previous; returns the ids, base first. Ids ascend.
pub fn chain(store: &Arc<dyn Store>, db: &str, txs: &[i64]) -> Vec<String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut ids: Vec<String> = Vec::new();
    for &n in txs {
        let mut o = options(db, 600, n);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        o.backup_id = Some(format!("b{k:06}"));
        o.parent = ids.last().cloned();
        o.incremental = o.parent.is_some();
        ids.push(backup(store, o, &history(n)).manifest.backup_id);
    }
    ids
}

/// Back `datoms` up with `opts` into `store`.
pub fn backup(store: &Arc<dyn Store>, opts: BackupOptions, datoms: &[Datom]) -> BackupResult {
    let mut s = BackupSession::open(store.clone(), opts).unwrap();
    for d in datoms {
        s.push(d.clone()).unwrap();
    }
    s.finish().unwrap()
}

/// Restore backup `id` of `db` from `store`: every datom handed out, in order.
pub fn restore(store: &Arc<dyn Store>, db: &str, id: &str) -> crate::Result<Vec<Datom>> {
    let opts = RestoreOptions {
        database_id: db.into(),
        backup_id: id.into(),
        ..RestoreOptions::default()
    };
    restore_with(store, opts).map(|(datoms, _)| datoms)
}

/// Restore with `opts`: every datom handed out, and the session at its end.
pub fn restore_with(
    store: &Arc<dyn Store>,
    opts: RestoreOptions,
) -> crate::Result<(Vec<Datom>, RestoreSession)> {
    let mut session = RestoreSession::open(store.clone(), opts)?;
    let out = session.read_to_end()?;
    Ok((out, session))
}

/// A store that counts the bytes of chunks read through `get` (what a restore reads).
pub struct CountingStore {
    /// The store read from.
    pub inner: MemoryStore,
    /// Bytes of chunks returned by `get` so far.
    pub read: std::sync::atomic::AtomicU64,
}

impl Store for CountingStore {
    fn put(&self, key: &str, bytes: &[u8]) -> crate::Result<()> {
        self.inner.put(key, bytes)
    }
    fn get(&self, key: &str) -> crate::Result<Vec<u8>> {
        let b = self.inner.get(key)?;
        if key.contains("/chunks/") {
            self.read
                .fetch_add(b.len() as u64, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(b)
    }
    fn size(&self, key: &str) -> crate::Result<Option<u64>> {
        self.inner.size(key)
    }
    fn list(&self, prefix: &str) -> crate::Result<Vec<crate::store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> crate::Result<()> {
        self.inner.delete(key)
    }
    fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> crate::Result<bool> {
        self.inner.put_if_absent(key, bytes)
    }
}

/// The datoms of a stored backup, decoded chunk by chunk in manifest order.
pub fn stored_datoms(store: &dyn Store, r: &BackupResult) -> Vec<Datom> {
    let prefix = crate::repo::layout::backup_prefix(&r.manifest.database_id, &r.manifest.backup_id);
    r.manifest
        .chunks
        .iter()
        .flat_map(|c| {
            super::check::fetch_checked(store, &prefix, c, None)
                .unwrap()
                .datoms
        })
        .collect()
}
