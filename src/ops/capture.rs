//! A continuous capture session: what `start-continuous-backup` opens and the JVM drives
//! (the operation; the log's own machinery — segment writer, spool, catch-up, reading —
//! lives in [`crate::log`]).
//!
//! Opening ([`Session::open`]):
//! 1. take the capture lock of the database (`{database-id}/.continuous/`, the lease lock
//!    of [`crate::repo::lock`]; waiting at most `lock_wait` for an expired lease);
//! 2. store what an earlier, killed session left in the spool, when it continues its log;
//! 3. find where the database's chains end ([`crate::log::tip`]) and decide ([`Plan`]):
//!    continue the furthest chain of this database (a new log whose parent is that end,
//!    catching up the transactions since, when the database keeps history), or start a new
//!    chain (the JVM takes a full backup with the id the plan names; the new log follows
//!    it) — when there is no chain, when it is of another database or ahead of it, or when
//!    the transactions since cannot be caught up (no history);
//! 4. write the new log's head and start its [`LogWriter`].
//!
//! Every session writes a log of its own: a log is written by one session only, and a
//! restart continues the chain with a new log.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::codec::wire::{self, Batch};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Value};
use crate::options::Opts;
use crate::pipeline::order::OrderSpec;
use crate::repo::layout;
use crate::repo::lock::{Busy, ResumeLock};
use crate::repo::meta::write_edn;
use crate::store::Store;

use crate::log::catchup::{CatchUp, CatchUpOptions, CatchUpReport};
use crate::log::head::LogHead;
use crate::log::read;
use crate::log::spool::Spool;
use crate::log::tip::{self, Links};
use crate::log::writer::{
    apply_no_history, record_no_history, Appended, LogWriter, NoHistoryDelta, Status, TxMark,
    WriterOptions,
};

const OP: &str = "start continuous backup";

/// How long closing waits for the capture lock's release (a target that is down).
const UNLOCK_WAIT: Duration = Duration::from_secs(10);

/// The option keys a caller of `start-continuous-backup` may pass (checked by
/// [`crate::options::check_keys`] before anything starts). The Clojure API handles the
/// capture thread's own (`:on-error`, `:snapshot-every`, `:queue-size`, `:batch-size`,
/// `:stop-timeout-ms`, `:shutdown-timeout-ms`) and computes the database facts; the base
/// backups of new chains take the backup options.
pub const KEYS: &[&str] = &[
    "database-id",
    "flush-interval-ms",
    "max-segment-bytes",
    "spool-dir",
    "max-spool-bytes",
    "on-error",
    "snapshot-every",
    "queue-size",
    "batch-size",
    "stop-timeout-ms",
    "shutdown-timeout-ms",
    "lock-lease-ms",
    "lock-wait-ms",
    "break-lock?",
    "chunk-size",
    "parallel",
    "compression-level",
    "sort-buffer-bytes",
    "tmp-dir",
];

/// What the capture knows about the database when it starts.
#[derive(Clone, Debug)]
pub struct DbFacts {
    /// `:max-tx` of the database value the capture starts from.
    pub max_tx: i64,
    /// `:max-eid` of it.
    pub max_eid: i64,
    /// Whether the database keeps history.
    pub history: bool,
    /// Its `:datahike/id`.
    pub datahike_id: Option<String>,
    /// Its Datahike version.
    pub datahike_version: Option<String>,
    /// Its configuration (without store details).
    pub db_config: Value,
}

/// Everything a session needs, validated.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// The writer's options (database id, flush interval, segment and spool limits…).
    pub writer: WriterOptions,
    /// The database.
    pub db: DbFacts,
    /// The schema as the restore order sees it (for catch-ups).
    pub order: OrderSpec,
    /// Where sealed segments wait (`None`: in memory).
    pub spool_dir: Option<PathBuf>,
    /// The capture lock's lease.
    pub lock_lease: Duration,
    /// How long to wait for a lease another process holds to run out.
    pub lock_wait: Duration,
    /// Take over a live lease.
    pub break_lock: bool,
    /// Where catch-ups spill sorted runs.
    pub tmp_dir: Option<PathBuf>,
    /// Bytes a catch-up sorts in memory.
    pub sort_buffer_bytes: usize,
}

fn attr_of(v: &Value) -> Result<Attr> {
    match v {
        Value::Keyword(n) => Ok(Attr::Keyword(n.clone())),
        Value::Long(id) => Ok(Attr::Id(*id)),
        other => Err(Error::invalid(
            OP,
            format!("an attribute must be a keyword or an id, got {other:?}"),
        )),
    }
}

/// Parse the schema facts the restore order needs (`:ref-attrs`, `:tx-instant-attr`,
/// `:skip-tx0?`) from an options map.
pub fn order_spec(v: &Value) -> Result<OrderSpec> {
    let o = Opts::new(v, OP)?;
    Ok(OrderSpec {
        ref_attrs: o
            .seq("ref-attrs")?
            .iter()
            .map(attr_of)
            .collect::<Result<_>>()?,
        tx_instant: o.get("tx-instant-attr").map(attr_of).transpose()?,
        skip_tx0: o.bool("skip-tx0?", false)?,
    })
}

impl SessionOptions {
    /// Parse the options map the Clojure API sends (see the README for each key).
    pub fn from_edn(v: &Value) -> Result<Self> {
        let o = Opts::new(v, OP)?;
        let d = WriterOptions::default();
        let database_id = o.required_string("database-id")?.to_owned();
        layout::check_segment("database-id", &database_id)?;
        let attrs = |k: &str| -> Result<HashSet<Attr>> { o.seq(k)?.iter().map(attr_of).collect() };
        let tx_instant = o.get("tx-instant-attr").map(attr_of).transpose()?;
        let writer = WriterOptions {
            database_id,
            flush_interval: Duration::from_millis(o.long_in(
                "flush-interval-ms",
                d.flush_interval.as_millis() as i64,
                1,
                3_600_000,
            )? as u64),
            max_segment_bytes: o.long_in(
                "max-segment-bytes",
                d.max_segment_bytes as i64,
                1024,
                1 << 30,
            )? as usize,
            compression_level: o.long_in("compression-level", 6, 0, 9)? as u32,
            max_spool_bytes: o.long_in(
                "max-spool-bytes",
                if o.string("spool-dir")?.is_some() {
                    1 << 30
                } else {
                    d.max_spool_bytes as i64
                },
                1024,
                1 << 50,
            )? as u64,
            tx_instant,
            no_history_attrs: attrs("no-history-attrs")?,
            max_retry_delay: Duration::from_millis(o.long_in(
                "max-retry-delay-ms",
                d.max_retry_delay.as_millis() as i64,
                10,
                600_000,
            )? as u64),
        };
        Ok(SessionOptions {
            db: DbFacts {
                max_tx: o
                    .long("max-tx")?
                    .ok_or_else(|| Error::invalid(OP, ":max-tx is required"))?,
                max_eid: o.long("max-eid")?.unwrap_or(0),
                history: o.bool("history?", true)?,
                datahike_id: o.string("datahike-id")?.map(String::from),
                datahike_version: o.string("datahike-version")?.map(String::from),
                db_config: o.get("db-config").cloned().unwrap_or(Value::Nil),
            },
            order: order_spec(v)?,
            spool_dir: o.string("spool-dir")?.map(PathBuf::from),
            lock_lease: Duration::from_millis(o.long_in(
                "lock-lease-ms",
                30_000,
                1_000,
                86_400_000,
            )? as u64),
            lock_wait: Duration::from_millis(o.long_in("lock-wait-ms", 0, 0, 86_400_000)? as u64),
            break_lock: o.bool("break-lock?", false)?,
            tmp_dir: o.string("tmp-dir")?.map(PathBuf::from),
            sort_buffer_bytes: o.long_in("sort-buffer-bytes", 64 << 20, 1 << 16, 1 << 40)? as usize,
            writer,
        })
    }
}

/// How a session starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The new log continues `parent` (a backup or a log of the chain of `base`) after
    /// `after`; when `after` is below the database's `:max-tx`, the capture catches up.
    Continue {
        /// The link continued.
        parent: String,
        /// The chain's base full backup.
        base: String,
        /// The parent's end.
        after: i64,
    },
    /// A new chain: the JVM takes a full backup with id `backup_id` of the database value
    /// the capture started from; the new log follows it.
    NewChain {
        /// The id the base full backup must get.
        backup_id: String,
        /// Why no chain is continued.
        reason: String,
    },
}

/// The live side's attribute table, datom buffer, and the datoms of a transaction whose
/// mark has not arrived yet (it spans two pushes).
#[derive(Default)]
struct Live {
    attrs: Vec<Attr>,
    scratch: Vec<Datom>,
    carry: Vec<Datom>,
}

/// An open capture session.
pub struct Session {
    store: Arc<dyn Store>,
    opts: SessionOptions,
    writer: LogWriter,
    plan: Plan,
    log_id: Mutex<String>,
    recovered: u64,
    live: Mutex<Live>,
    catch_up: Mutex<Option<CatchUp>>,
    catch_ups: Mutex<Vec<CatchUpReport>>,
    lock: Mutex<Option<ResumeLock>>,
    /// Where the writer's `:db/noHistory` delta starts (see [`NoHistoryBase`]).
    no_history_base: Mutex<NoHistoryBase>,
}

/// The `:db/noHistory` values current where the writer's delta starts
/// ([`LogWriter::no_history_delta`]): read, or to be read from a link of the chain (the
/// end a capture continues, or a new chain's full backup, once it is complete).
enum NoHistoryBase {
    /// Read.
    Known(Vec<Datom>),
    /// At the end of this link's chain.
    Link(String),
}

/// The `:db/noHistory` datoms (of `attrs`) current at the end of link `id`'s chain: the
/// state the chain's last backup recorded ([`crate::chain::state`]), then every log
/// after it (only its segments that hold such datoms are read).
pub fn no_history_at(
    store: &dyn Store,
    db: &str,
    id: &str,
    attrs: &HashSet<Attr>,
) -> Result<Vec<Datom>> {
    let chain = crate::chain::resolve::resolve(store, db, id, "read the :db/noHistory state")?;
    let at = chain.links.iter().rposition(|l| !l.is_log()).unwrap_or(0);
    let backup = &chain.links[at];
    let Some(chunks) = &backup.manifest.link.no_history else {
        return Err(Error::new(
            ErrorKind::Conflict,
            OP,
            format!(
                "backup {} recorded no :db/noHistory state, which a catch-up of this database needs",
                backup.id()
            ),
        )
        .with_hint("take a full backup with this version, then start the capture again"));
    };
    // The recorded state, then the logs' changes, as one delta over nothing.
    let mut delta = NoHistoryDelta::new();
    let mut apply = |datoms: Vec<Datom>| -> Result<()> {
        let ours: Vec<Datom> = datoms
            .into_iter()
            .filter(|d| attrs.contains(&d.a))
            .collect();
        record_no_history(&mut delta, &ours)
    };
    for meta in chunks {
        apply(super::check::fetch_checked(store, &backup.prefix, meta, None)?.datoms)?;
    }
    for log in &chain.links[at + 1..] {
        for meta in &log.manifest.chunks {
            let file = meta.key.rsplit('/').next().unwrap_or_default();
            if crate::log::name::SegmentName::parse(file).is_some_and(|n| n.kind.no_history) {
                apply(super::check::fetch_checked(store, &log.prefix, meta, None)?.datoms)?;
            }
        }
    }
    apply_no_history(Vec::new(), &delta)
}

fn lock_of<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Take the capture lock, waiting at most `wait` for a live lease to run out.
fn take_lock(store: &Arc<dyn Store>, opts: &SessionOptions) -> Result<ResumeLock> {
    let db = &opts.writer.database_id;
    let busy = Busy {
        op: OP,
        what: format!("database {db} is being captured by another process"),
    };
    let folder = layout::capture_lock_folder(db);
    let deadline = Instant::now() + opts.lock_wait;
    loop {
        match ResumeLock::acquire_in(
            store.clone(),
            &folder,
            &busy,
            opts.lock_lease,
            opts.break_lock,
        ) {
            Err(e) if e.kind == ErrorKind::Conflict && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Store what an earlier session of this database left in the spool, where it continues
/// its log without gap; forget what the log already holds. Returns the segments stored.
fn recover_spool(store: &dyn Store, spool: &Spool, db: &str) -> Result<u64> {
    let mut stored = 0;
    for (log_id, segments) in spool.leftovers(db)? {
        let mut end = match read::read(store, db, &log_id) {
            Ok(log) => Some(log.through),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        for s in segments {
            match end {
                Some(t) if s.name.after == t => {
                    let bytes = spool.get(&s.key)?;
                    if crate::pipeline::chunk::sha256_hex(&bytes) == s.name.sha256 {
                        store.put(&s.key, &bytes)?;
                        stored += 1;
                        end = Some(s.name.through);
                    }
                }
                _ => {}
            }
            // Stored now, already held, or unusable (a gap, a damaged file): not needed.
            spool.delete(&s.key)?;
        }
    }
    Ok(stored)
}

impl Session {
    /// Open a session (see the module doc).
    ///
    /// Errors: `Conflict` when another process captures the database; the store's errors
    /// (the target must be reachable to find where the chain ends).
    pub fn open(store: Arc<dyn Store>, opts: SessionOptions) -> Result<Session> {
        let lock = take_lock(&store, &opts)?;
        let db = opts.writer.database_id.clone();
        let spool = opts.spool_dir.as_ref().map(Spool::open).transpose()?;
        let recovered = match &spool {
            Some(s) => recover_spool(store.as_ref(), s, &db)?,
            None => 0,
        };
        let facts = &opts.db;
        let mut links = Links::read(store.as_ref(), &db)?;
        let ends = links.ends();
        let end = tip::newest(&ends, facts.datahike_id.as_deref(), facts.max_tx);
        // Logs are not sealed yet: a database whose backups are encrypted must not get plain
        // ones (a chain never mixes them, and a new plain chain would downgrade it). Any
        // encrypted chain counts: an encrypted backup's Datahike identity is sealed, so
        // whether it is this database's cannot be told without its key.
        if let Some(e) = ends.iter().find(|e| e.encrypted) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                OP,
                format!(
                    "backups of database {db} are encrypted (the chain of {}), and continuous capture writes plain logs",
                    e.id
                ),
            )
            .with_hint("continuous capture of encrypted backups is not supported yet: capture under another :database-id, or take encrypted incremental backups instead"));
        }
        let plan = match end {
            None => Plan::NewChain {
                backup_id: uuid::Uuid::now_v7().to_string(),
                reason: if ends.is_empty() {
                    format!("database {db} has no backup to continue")
                } else {
                    format!("no backup of database {db} belongs to this Datahike database (its :datahike/id) at or before its tx {}", facts.max_tx)
                },
            },
            Some(e) if e.through < facts.max_tx && !facts.history => Plan::NewChain {
                backup_id: uuid::Uuid::now_v7().to_string(),
                reason: format!(
                    "the database keeps no history, so the transactions after tx {} ({} of {}) cannot be caught up: a new chain starts with a full backup",
                    e.through, e.id, facts.max_tx
                ),
            },
            Some(e) => Plan::Continue {
                parent: e.id.clone(),
                base: e.base.clone(),
                after: e.through,
            },
        };
        let (parent, base, after, reason) = match &plan {
            Plan::Continue {
                parent,
                base,
                after,
            } => (
                parent.clone(),
                base.clone(),
                *after,
                format!("continues {parent} after tx {after}"),
            ),
            Plan::NewChain { backup_id, reason } => (
                backup_id.clone(),
                backup_id.clone(),
                facts.max_tx,
                format!("a new chain with full backup {backup_id}: {reason}"),
            ),
        };
        let log_id = new_log(&store, &opts, &parent, &base, after, &reason)?;
        let writer = LogWriter::start(store.clone(), spool, opts.writer.clone(), &log_id, after)?;
        Ok(Session {
            store,
            writer,
            plan,
            log_id: Mutex::new(log_id),
            recovered,
            live: Mutex::new(Live::default()),
            catch_up: Mutex::new(None),
            catch_ups: Mutex::new(Vec::new()),
            lock: Mutex::new(Some(lock)),
            no_history_base: Mutex::new(NoHistoryBase::Link(parent)),
            opts,
        })
    }

    /// How the session started.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The log new segments go to (the newest one).
    pub fn log_id(&self) -> String {
        lock_of(&self.log_id).clone()
    }

    /// Segments an earlier session left in the spool that were stored at open.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    /// The writer.
    pub fn writer(&self) -> &LogWriter {
        &self.writer
    }

    /// The catch-ups run so far.
    pub fn catch_ups(&self) -> Vec<CatchUpReport> {
        lock_of(&self.catch_ups).clone()
    }

    /// Append live transactions: one batch of columns from the JVM and, in order, the marks
    /// of the transactions it completes, each with its number of datoms. A transaction may
    /// span pushes: the datoms after the last mark's wait for the next push, whose first
    /// mark counts them too. Stops at the first refused transaction (the rest are dropped).
    pub fn push(&self, batch: &Batch, marks: &[(TxMark, usize)]) -> Result<Appended> {
        let mut live = lock_of(&self.live);
        let Live {
            attrs,
            scratch,
            carry,
        } = &mut *live;
        wire::decode_attrs(&batch.new_attrs, attrs)?;
        scratch.clear();
        scratch.append(carry);
        wire::decode_batch(&batch.columns(), attrs, scratch)?;
        let total: usize = marks.iter().map(|(_, n)| n).sum();
        if total > scratch.len() {
            scratch.clear();
            return Err(Error::invalid(
                "push transactions",
                format!(
                    "the marks count {total} datoms, the pushes hold {}",
                    scratch.len()
                ),
            ));
        }
        let mut at = 0;
        for (mark, n) in marks {
            if self.writer.append_tx(mark, &scratch[at..at + n])? == Appended::Refused {
                scratch.clear();
                return Ok(Appended::Refused);
            }
            at += n;
        }
        carry.extend(scratch.drain(at..));
        Ok(Appended::Accepted)
    }

    /// Forget the datoms of a transaction whose mark never came (the capture dropped it).
    pub fn drop_partial(&self) {
        lock_of(&self.live).carry.clear();
    }

    /// Begin a catch-up of the transactions after the log's end through `through` (the
    /// `:max-tx` of the database value whose history the JVM then pushes).
    pub fn catch_up_begin(&self, through: i64, order: Option<OrderSpec>) -> Result<i64> {
        // A catch-up follows whatever the live side dropped, a transaction cut short too.
        self.drop_partial();
        let after = self.writer.captured();
        if through < after {
            return Err(Error::invalid(
                "catch up",
                format!("the database is at tx {through}, the log already holds tx {after}"),
            ));
        }
        let tmp = self.opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let attrs = self.opts.writer.no_history_attrs.clone();
        let no_history_at_after = if attrs.is_empty() {
            Vec::new()
        } else {
            let mut base = lock_of(&self.no_history_base);
            if let NoHistoryBase::Link(id) = &*base {
                let db = &self.opts.writer.database_id;
                *base = NoHistoryBase::Known(no_history_at(self.store.as_ref(), db, id, &attrs)?);
            }
            let NoHistoryBase::Known(datoms) = &*base else {
                unreachable!("read above")
            };
            apply_no_history(datoms.clone(), &self.writer.no_history_delta()?)?
        };
        let c = CatchUp::new(CatchUpOptions {
            after,
            through,
            order: order.unwrap_or_else(|| self.opts.order.clone()),
            tmp_dir: tmp,
            sort_buffer_bytes: self.opts.sort_buffer_bytes,
            no_history_attrs: attrs,
            no_history_at_after,
        })?;
        *lock_of(&self.catch_up) = Some(c);
        Ok(after)
    }

    /// Push one batch of the catch-up's history walk.
    pub fn catch_up_push(&self, batch: Batch) -> Result<()> {
        lock_of(&self.catch_up)
            .as_mut()
            .ok_or_else(|| Error::invalid("catch up", "no catch-up is running"))?
            .push_batch(batch)
    }

    /// Finish the catch-up: its transactions are appended to the log.
    pub fn catch_up_finish(&self) -> Result<CatchUpReport> {
        let c = lock_of(&self.catch_up)
            .take()
            .ok_or_else(|| Error::invalid("catch up", "no catch-up is running"))?;
        let report = c.finish(&self.writer)?;
        lock_of(&self.catch_ups).push(report);
        Ok(report)
    }

    /// Drop a catch-up in progress (its spill files go with it).
    pub fn catch_up_abort(&self) {
        lock_of(&self.catch_up).take();
    }

    /// Start a new chain's log: its head names `backup_id` as parent and base and its
    /// segments start after `after`. With `dual`, `after` must be the captured point and
    /// the current log goes on taking segments until [`Session::retire`]; without, the
    /// current logs are retired (`reason`) and the capture moves on to `after`.
    pub fn new_chain(
        &self,
        backup_id: &str,
        after: i64,
        dual: bool,
        reason: &str,
    ) -> Result<String> {
        layout::check_segment("backup-id", backup_id)?;
        if !dual {
            self.drop_partial();
            for l in self.writer.status().logs {
                self.writer.retire_log(&l, reason)?;
            }
            self.writer.jump(after)?;
            // The delta starts again at the new chain's full backup.
            *lock_of(&self.no_history_base) = NoHistoryBase::Link(backup_id.to_owned());
        }
        let log_id = new_log(
            &self.store,
            &self.opts,
            backup_id,
            backup_id,
            after,
            &format!("a new chain with full backup {backup_id}: {reason}"),
        )?;
        self.writer.add_log(&log_id, after)?;
        *lock_of(&self.log_id) = log_id.clone();
        Ok(log_id)
    }

    /// Stop sending segments to `log_id` and close it once it holds everything captured.
    pub fn retire(&self, log_id: &str, reason: &str) -> Result<()> {
        self.writer.retire_log(log_id, reason)
    }

    /// The writer's status.
    pub fn status(&self) -> Status {
        self.writer.status()
    }

    /// Close: flush (at most `timeout`), close the logs, release the lock.
    pub fn close(&self, timeout: Duration, reason: &str) -> Result<Status> {
        self.catch_up_abort();
        let status = self.writer.close(timeout, reason);
        // Releasing deletes the lock file: a start right after this stop must find it gone.
        // When the target is down that may hang in its retries, so it runs on a thread of
        // its own, waited for at most `UNLOCK_WAIT` (then the lease runs out anyway).
        if let Some(lock) = lock_of(&self.lock).take() {
            let (done, released) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("datacamp-log-unlock".into())
                .spawn(move || {
                    drop(lock);
                    let _ = done.send(());
                });
            if spawned.is_ok() {
                let _ = released.recv_timeout(UNLOCK_WAIT);
            }
        }
        status
    }
}

/// Write a new log's head; return its id.
fn new_log(
    store: &Arc<dyn Store>,
    opts: &SessionOptions,
    parent: &str,
    base: &str,
    after: i64,
    reason: &str,
) -> Result<String> {
    let log_id = uuid::Uuid::now_v7().to_string();
    let f = &opts.db;
    let mut nh: Vec<Attr> = opts.writer.no_history_attrs.iter().cloned().collect();
    nh.sort_by_key(|a| a.to_string());
    let head = LogHead {
        log_id: log_id.clone(),
        database_id: opts.writer.database_id.clone(),
        parent: parent.to_owned(),
        base: base.to_owned(),
        after_tx: after,
        created_at_ms: now_ms(),
        history: f.history,
        datahike_id: f.datahike_id.clone(),
        datahike_version: f.datahike_version.clone(),
        db_config: f.db_config.clone(),
        tx_instant: opts.order.tx_instant.clone(),
        no_history_attrs: nh,
        skip_tx0: opts.order.skip_tx0,
        reason: reason.to_owned(),
    };
    write_edn(
        store.as_ref(),
        &layout::backup_file(&opts.writer.database_id, &log_id, layout::LOG_HEAD),
        &head.to_value(),
    )?;
    Ok(log_id)
}
