//! The resume lock: one process at a time continues an interrupted backup. The same lock,
//! in another folder, keeps two continuous captures off one database
//! ([`ResumeLock::acquire_in`], `crate::log`).
//!
//! `lock-N.edn` in the backup folder is created only if absent (`Store::put_if_absent`: a
//! hard link on a directory, `If-None-Match: *` on S3) and carries a lease that a heartbeat
//! thread renews every third of its length. A second resumer finds a live lease and gets a
//! `Conflict`; a lease that ran out (its holder died) is taken over. Dropping the lock stops
//! the heartbeat and deletes the file.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use crate::clock::now_ms;
use crate::codec::edn;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{kw_map, Value};
use crate::repo::layout;
use crate::repo::meta::read_edn;
use crate::store::Store;

/// A held resume lock; released (deleted) on drop.
pub struct ResumeLock {
    store: Arc<dyn Store>,
    key: String,
    stop: Option<Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

fn lock_bytes(owner: &str, lease: Duration) -> Vec<u8> {
    let now = now_ms();
    let v = kw_map([
        ("lock/owner", Value::str(owner)),
        ("lock/pid", Value::Long(std::process::id() as i64)),
        ("lock/renewed-at", Value::Inst(now)),
        (
            "lock/expires-at",
            Value::Inst(now + lease.as_millis() as i64),
        ),
    ]);
    edn::write_pretty(&v).into_bytes()
}

fn expires_at(store: &dyn Store, key: &str) -> Result<Option<i64>> {
    // An unreadable lock counts as expired (0): it cannot prove a live holder.
    match read_edn(store, key) {
        Ok(v) => Ok(Some(match v.get("lock/expires-at") {
            Some(Value::Inst(ms)) => *ms,
            _ => 0,
        })),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind == ErrorKind::Corrupt => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// The lock generations present under `folder`, highest first, with their keys.
fn generations(store: &dyn Store, folder: &str) -> Result<Vec<(u64, String)>> {
    let prefix = format!("{folder}{}", layout::LOCK_PREFIX);
    let mut gens: Vec<(u64, String)> = store
        .list(&prefix)?
        .into_iter()
        .filter_map(|o| {
            let n = o
                .key
                .strip_prefix(&prefix)?
                .strip_suffix(".edn")?
                .parse()
                .ok()?;
            Some((n, o.key))
        })
        .collect();
    gens.sort_by_key(|g| std::cmp::Reverse(g.0));
    Ok(gens)
}

impl ResumeLock {
    /// Take the resume lock of a backup, or fail with `Conflict` while another process
    /// holds a live lease. With `break_lock`, a live lease is taken over too (for an
    /// operator who knows its holder is gone).
    ///
    /// Locks are generations `lock-N.edn`: taking over an expired generation N means
    /// creating N+1 with `put_if_absent`, so of two processes racing for it exactly one wins.
    pub fn acquire(
        store: Arc<dyn Store>,
        database_id: &str,
        backup_id: &str,
        lease: Duration,
        break_lock: bool,
    ) -> Result<Self> {
        let busy = Busy {
            op: "resume backup",
            what: format!("backup {backup_id} is being resumed by another process"),
        };
        let folder = layout::backup_prefix(database_id, backup_id);
        Self::acquire_in(store, &folder, &busy, lease, break_lock)
    }

    /// Take the lock whose generations live in `folder` (a key prefix ending in `/`), as
    /// [`ResumeLock::acquire`] does for a backup's folder; a live lease of another process
    /// is refused with `Conflict`, saying `busy`.
    pub fn acquire_in(
        store: Arc<dyn Store>,
        folder: &str,
        busy: &Busy,
        lease: Duration,
        break_lock: bool,
    ) -> Result<Self> {
        let owner = uuid::Uuid::new_v4().to_string();
        let gens = generations(store.as_ref(), folder)?;
        let next = match gens.first() {
            None => 0,
            Some((n, key)) => {
                let until = expires_at(store.as_ref(), key)?;
                if matches!(until, Some(t) if t > now_ms()) && !break_lock {
                    return Err(held(store.as_ref(), busy, key, until.unwrap_or(0)));
                }
                n + 1
            }
        };
        let key = layout::lock_in(folder, next);
        if !store.put_if_absent(&key, &lock_bytes(&owner, lease))? {
            return Err(held(store.as_ref(), busy, &key, 0));
        }
        for (_, old) in gens {
            store.delete(&old)?;
        }
        let (stop, stopped) = bounded::<()>(1);
        let (hb_store, hb_key) = (store.clone(), key.clone());
        let heartbeat = std::thread::spawn(move || loop {
            match stopped.recv_timeout(lease / 3) {
                Err(RecvTimeoutError::Timeout) => {
                    let _ = hb_store.put(&hb_key, &lock_bytes(&owner, lease));
                }
                _ => return,
            }
        });
        Ok(ResumeLock {
            store,
            key,
            stop: Some(stop),
            heartbeat: Some(heartbeat),
        })
    }
}

/// What a refused lock says: the operation and what holds the lock.
#[derive(Clone, Debug)]
pub struct Busy {
    /// The operation that wanted the lock (the error's op).
    pub op: &'static str,
    /// What the live holder is doing, e.g. "backup X is being resumed by another process".
    pub what: String,
}

fn held(store: &dyn Store, busy: &Busy, key: &str, until: i64) -> Error {
    let when = if until > 0 {
        format!(" (its lease runs until {until} ms since the epoch)")
    } else {
        String::new()
    };
    Error::new(ErrorKind::Conflict, busy.op, format!("{}{when}", busy.what))
    .with_key(store.location(key))
    .with_hint("wait for it to finish; if that process is gone, retry after the lease or pass :break-lock? true")
}

impl Drop for ResumeLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        let _ = self.store.delete(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn lock_of(store: &Arc<dyn Store>, lease_ms: u64, break_lock: bool) -> Result<ResumeLock> {
        ResumeLock::acquire(
            store.clone(),
            "db",
            "b1",
            Duration::from_millis(lease_ms),
            break_lock,
        )
    }

    #[test]
    fn one_holder_at_a_time_and_expired_leases_are_taken_over() {
        let mem = MemoryStore::new();
        let store: Arc<dyn Store> = Arc::new(mem.clone());
        let first = lock_of(&store, 60_000, false).unwrap();
        assert_eq!(first.key, layout::lock_key("db", "b1", 0));
        let err = lock_of(&store, 60_000, false).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Conflict);
        let broken = lock_of(&store, 60_000, true).unwrap();
        assert_eq!(broken.key, layout::lock_key("db", "b1", 1));
        assert!(
            mem.get(&layout::lock_key("db", "b1", 0)).is_err(),
            "old generation removed"
        );
        drop(broken);
        drop(first);
        assert!(
            mem.list("db/b1/").unwrap().is_empty(),
            "released locks leave nothing"
        );
        // A lease in the past (its holder died) is taken over without breaking it.
        let dead = kw_map([("lock/expires-at", Value::Inst(1))]);
        mem.put(
            &layout::lock_key("db", "b1", 4),
            edn::write(&dead).as_bytes(),
        )
        .unwrap();
        let next = lock_of(&store, 60_000, false).unwrap();
        assert_eq!(next.key, layout::lock_key("db", "b1", 5));
    }
}
