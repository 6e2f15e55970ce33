//! The resume lock: one process at a time continues an interrupted backup. The same lock,
//! in another folder, keeps two continuous captures off one database
//! ([`ResumeLock::acquire_in`], `crate::log`).
//!
//! `lock-N.edn` in the backup folder is created only if absent (`Store::put_if_absent`: a
//! hard link on a directory, `If-None-Match: *` on S3) and carries its owner (a random id
//! per acquisition) and a lease that a heartbeat thread renews every third of its length. A
//! second resumer finds a live lease and gets a `Conflict`; a lease that ran out (its holder
//! died) is taken over by creating generation N+1, so of two processes racing for it exactly
//! one wins. Dropping the lock stops the heartbeat and deletes the file.
//!
//! What a lock never does:
//! - **block longer than a lease this code could have written**: a lease is honoured until
//!   at most [`MAX_LEASE`] + [`CLOCK_SLACK`] after the lock object was last written (the
//!   store's clock), so a lock claiming to expire in year 9999 blocks for a day at most, and a
//!   lock written "in the future" (beyond the slack) not at all;
//! - **outlive a failed acquisition**: when creating it fails (e.g. every retry failed after
//!   an attempt was executed), whatever the attempt may have created is read back and
//!   deleted if it is ours; a lock that cannot even be read back expires with its lease;
//! - **extend or delete another owner's lock**: renewal and release read the lock first and
//!   act only while it still names this owner (a broken lock is gone or another's);
//! - **trip over a non-lock entry**: a name `lock-N.edn` that exists but is not an object
//!   (a folder) is skipped, with or without `:break-lock?`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use crate::clock::now_ms;
use crate::codec::edn;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{kw_map, Value};
use crate::repo::layout;
use crate::repo::meta::read_edn;
use crate::store::{ObjectMeta, Store};

/// The longest lease this code writes (`:lock-lease-ms` is capped to it).
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// How far the clocks of two machines (and of the store) may disagree.
pub const CLOCK_SLACK: Duration = Duration::from_secs(5 * 60);
/// Lock names tried in a row when a name is taken by something that is not a lock object.
const NAME_TRIES: u64 = 16;

/// A held resume lock; released (deleted, if still ours) on drop.
pub struct ResumeLock {
    store: Arc<dyn Store>,
    key: String,
    owner: String,
    lease: Duration,
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

/// A lock object as read back.
struct LockFile {
    /// `:lock/owner` (`None` when missing or unreadable).
    owner: Option<String>,
    /// `:lock/expires-at` as written (0 when missing or unreadable).
    expires_at_ms: i64,
}

impl LockFile {
    /// Until when the lease is honoured, given when the store last wrote the object: at
    /// most `MAX_LEASE + CLOCK_SLACK` after that, and not at all if that is in the future.
    fn honoured_until(&self, written: Option<SystemTime>, now: i64) -> i64 {
        let cap = (MAX_LEASE + CLOCK_SLACK).as_millis() as i64;
        let slack = CLOCK_SLACK.as_millis() as i64;
        let written_ms = written.map(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis().min(i64::MAX as u128) as i64,
            Err(_) => 0,
        });
        match written_ms {
            Some(w) if w > now + slack => 0,
            Some(w) => self.expires_at_ms.min(w.saturating_add(cap)),
            None => self.expires_at_ms.min(now.saturating_add(cap)),
        }
    }
}

/// Read the lock object at `key`: `None` if there is none. An unreadable one has no owner
/// and counts as expired: it cannot prove a live holder.
fn read_lock(store: &dyn Store, key: &str) -> Result<Option<LockFile>> {
    match read_edn(store, key) {
        Ok(v) => Ok(Some(LockFile {
            owner: match v.get("lock/owner") {
                Some(Value::String(s)) => Some(s.to_string()),
                _ => None,
            },
            expires_at_ms: match v.get("lock/expires-at") {
                Some(Value::Inst(ms)) => *ms,
                _ => 0,
            },
        })),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind == ErrorKind::Corrupt => Ok(Some(LockFile {
            owner: None,
            expires_at_ms: 0,
        })),
        Err(e) => Err(e),
    }
}

/// Whether the lock at `key` names `owner`.
fn is_ours(store: &dyn Store, key: &str, owner: &str) -> Result<bool> {
    Ok(read_lock(store, key)?.is_some_and(|l| l.owner.as_deref() == Some(owner)))
}

/// Delete the lock at `key` if it is `owner`'s; best effort (an error leaves it to expire).
fn release_if_ours(store: &dyn Store, key: &str, owner: &str) {
    if let Ok(true) = is_ours(store, key, owner) {
        let _ = store.delete(key);
    }
}

/// Renew `owner`'s lease at `key`: `Ok(false)` (and no write) when the lock is gone or
/// names another owner.
fn renew(store: &dyn Store, key: &str, owner: &str, lease: Duration) -> Result<bool> {
    if !is_ours(store, key, owner)? {
        return Ok(false);
    }
    // A plain PUT of whole bytes: a retry after a lost reply writes the same bytes again.
    store.put(key, &lock_bytes(owner, lease))?;
    Ok(true)
}

/// The lock generations present under `folder`, highest first, with their listings. Only
/// objects named exactly `lock-N.edn` count.
fn generations(store: &dyn Store, folder: &str) -> Result<Vec<(u64, ObjectMeta)>> {
    let prefix = format!("{folder}{}", layout::LOCK_PREFIX);
    let mut gens: Vec<(u64, ObjectMeta)> = store
        .list(&prefix)?
        .into_iter()
        .filter_map(|o| {
            let n = o
                .key
                .strip_prefix(&prefix)?
                .strip_suffix(".edn")?
                .parse()
                .ok()?;
            Some((n, o))
        })
        .collect();
    gens.sort_by_key(|g| std::cmp::Reverse(g.0));
    Ok(gens)
}

impl ResumeLock {
    /// Take the resume lock of a backup, or fail with `Conflict` while another process
    /// holds a live lease. With `break_lock`, a live lease is taken over too (for an
    /// operator who knows its holder is gone). `lease` is capped at [`MAX_LEASE`].
    ///
    /// Locks are generations `lock-N.edn`: taking over an expired generation N means
    /// creating N+1 with `put_if_absent`, so of two processes racing for it exactly one wins.
    /// A failed creation leaves no lock of ours behind.
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
        let lease = lease.min(MAX_LEASE);
        let owner = uuid::Uuid::new_v4().to_string();
        let gens = generations(store.as_ref(), folder)?;
        let mut next = 0;
        if let Some((n, meta)) = gens.first() {
            if let Some(lock) = read_lock(store.as_ref(), &meta.key)? {
                let now = now_ms();
                let until = lock.honoured_until(meta.modified, now);
                if until > now && !break_lock {
                    return Err(held(store.as_ref(), busy, &meta.key, until));
                }
            }
            next = n + 1;
        }
        let bytes = lock_bytes(&owner, lease);
        for _ in 0..NAME_TRIES {
            let key = layout::lock_in(folder, next);
            match store.put_if_absent(&key, &bytes) {
                Ok(true) => return Self::hold(store, key, owner, lease, gens),
                // Taken by something that is not an object (a folder): not a lock, skip it.
                Ok(false) if store.size(&key)?.is_none() => next += 1,
                // A competitor created it first.
                Ok(false) => {
                    let until = read_lock(store.as_ref(), &key)?.map_or(0, |l| l.expires_at_ms);
                    return Err(held(store.as_ref(), busy, &key, until));
                }
                // An attempt may have created it before the failure: take back what is ours.
                Err(e) => {
                    release_if_ours(store.as_ref(), &key, &owner);
                    return Err(e);
                }
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            busy.op,
            format!("no free lock name in {folder}"),
        )
        .with_key(store.location(folder))
        .with_hint("the folder holds entries named lock-N.edn that are not locks; remove them"))
    }

    /// Hold the lock just created at `key`: start the heartbeat, then remove the older
    /// generations (if that fails, dropping the guard releases the new lock).
    fn hold(
        store: Arc<dyn Store>,
        key: String,
        owner: String,
        lease: Duration,
        older: Vec<(u64, ObjectMeta)>,
    ) -> Result<Self> {
        let (stop, stopped) = bounded::<()>(1);
        let (hb_store, hb_key, hb_owner) = (store.clone(), key.clone(), owner.clone());
        let heartbeat = std::thread::spawn(move || loop {
            match stopped.recv_timeout(lease / 3) {
                Err(RecvTimeoutError::Timeout) => {
                    // Lost (broken by an operator): stop renewing. A failed renewal is tried
                    // again at the next beat.
                    if let Ok(false) = renew(hb_store.as_ref(), &hb_key, &hb_owner, lease) {
                        return;
                    }
                }
                _ => return,
            }
        });
        let lock = ResumeLock {
            store,
            key,
            owner,
            lease,
            stop: Some(stop),
            heartbeat: Some(heartbeat),
        };
        for (_, old) in older {
            lock.store.delete(&old.key)?;
        }
        Ok(lock)
    }

    /// The key of the lock object.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Renew the lease now (the heartbeat does this every third of it): `Ok(false)`, and
    /// nothing written, when the lock is no longer this holder's (broken by another).
    pub fn renew(&self) -> Result<bool> {
        renew(self.store.as_ref(), &self.key, &self.owner, self.lease)
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
        format!(
            " (its lease runs until {})",
            edn::write(&Value::Inst(until))
        )
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
        release_if_ours(self.store.as_ref(), &self.key, &self.owner);
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

    fn owner_at(store: &dyn Store, key: &str) -> Option<String> {
        read_lock(store, key).unwrap().and_then(|l| l.owner)
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

    #[test]
    fn a_lease_is_honoured_at_most_a_max_lease_after_it_was_written() {
        let mem = MemoryStore::new();
        let store: Arc<dyn Store> = Arc::new(mem.clone());
        let key = layout::lock_key("db", "b1", 0);
        // Year 9999, written just now: blocks, but only until a day from now.
        let forever = crate::codec::edn::parse(
            "{:lock/owner \"x\" :lock/expires-at #inst \"9999-12-31T00:00:00.000-00:00\"}",
        )
        .unwrap();
        mem.put(&key, edn::write(&forever).as_bytes()).unwrap();
        let err = lock_of(&store, 60_000, false).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(
            err.message.contains("lease runs until #inst") && !err.message.contains("9999"),
            "{err}"
        );
        // Written 25 hours ago: no longer honoured.
        let long_ago = SystemTime::now() - Duration::from_secs(25 * 3600);
        assert!(mem.set_modified(&key, long_ago));
        let taken = lock_of(&store, 60_000, false).unwrap();
        assert_eq!(taken.key, layout::lock_key("db", "b1", 1));
        drop(taken);
        // Written "in the future" (beyond the clock slack): not honoured at all.
        mem.put(&key, edn::write(&forever).as_bytes()).unwrap();
        assert!(mem.set_modified(&key, SystemTime::now() + Duration::from_secs(3600)));
        assert!(lock_of(&store, 60_000, false).is_ok());
    }

    #[test]
    fn a_folder_named_like_a_lock_never_blocks() {
        for break_lock in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(crate::store::dir::DirStore::open(tmp.path()).unwrap());
            std::fs::create_dir_all(tmp.path().join("db/b1/lock-0.edn/inside")).unwrap();
            std::fs::write(tmp.path().join("db/b1/lock-0.edn/inside/x"), b"x").unwrap();
            let lock = lock_of(&store, 60_000, break_lock).unwrap();
            assert_eq!(lock.key, layout::lock_key("db", "b1", 1));
            let err = lock_of(&store, 60_000, false).err().unwrap();
            assert_eq!(err.kind, ErrorKind::Conflict, "the real lock still counts");
            drop(lock);
            assert!(store
                .size(&layout::lock_key("db", "b1", 1))
                .unwrap()
                .is_none());
            assert!(tmp.path().join("db/b1/lock-0.edn/inside/x").exists());
        }
    }

    #[test]
    fn renewal_and_release_never_touch_another_owners_lock() {
        let mem = MemoryStore::new();
        let store: Arc<dyn Store> = Arc::new(mem.clone());
        let a = lock_of(&store, 600_000, false).unwrap();
        assert!(a.renew().unwrap());
        // B breaks A's lock; A's renewal must not bring lock-0 back.
        let b = lock_of(&store, 600_000, true).unwrap();
        assert!(!a.renew().unwrap());
        assert!(mem.get(&layout::lock_key("db", "b1", 0)).is_err());
        let b_owner = owner_at(&mem, &b.key);
        drop(b);
        // C finds no lock and creates lock-0 again: A's key, C's lock.
        let c = lock_of(&store, 600_000, false).unwrap();
        assert_eq!(c.key, a.key);
        let c_owner = owner_at(&mem, &c.key);
        assert_ne!(c_owner, b_owner);
        let before = mem.get(&c.key).unwrap();
        assert!(!a.renew().unwrap());
        assert_eq!(mem.get(&c.key).unwrap(), before, "C's lease is untouched");
        drop(a);
        assert_eq!(owner_at(&mem, &c.key), c_owner, "A's release left C's lock");
        drop(c);
        assert!(mem.list("db/").unwrap().is_empty());
    }

    /// A store whose conditional create is executed and then reported as failed, as when
    /// every reply of a retried request is lost.
    struct LostCreate(MemoryStore);

    impl Store for LostCreate {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
            self.0.put(key, bytes)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>> {
            self.0.get(key)
        }
        fn size(&self, key: &str) -> Result<Option<u64>> {
            self.0.size(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
            self.0.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.0.delete(key)
        }
        fn location(&self, key: &str) -> String {
            self.0.location(key)
        }
        fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
            self.0.put_if_absent(key, bytes)?;
            Err(Error::new(
                ErrorKind::Transient,
                "put object if absent",
                "connection closed before the reply",
            ))
        }
    }

    #[test]
    fn a_failed_create_leaves_no_lock_behind() {
        let mem = MemoryStore::new();
        let store: Arc<dyn Store> = Arc::new(LostCreate(mem.clone()));
        let err = lock_of(&store, 60_000, false).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Transient);
        assert!(mem.list("db/").unwrap().is_empty(), "nothing left behind");
        // And the next resumer (without faults) gets the lock at once.
        let next: Arc<dyn Store> = Arc::new(mem.clone());
        assert!(lock_of(&next, 60_000, false).is_ok());
    }
}
