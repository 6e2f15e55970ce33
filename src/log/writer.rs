//! The segment writer of a continuous capture: transactions in, durable segments out.
//!
//! ```text
//! capture thread ── append_tx ──► open segment (ChunkEncoder, in memory)
//!                 ── tick ───────►   sealed when `flush_interval` has passed since its
//!                                     first transaction, or at a transaction boundary past
//!                                     `max_segment_bytes`: seal_bytes (gzip) + SHA-256 + name
//!                                         │ spool (fsynced) or memory; ≤ max_spool_bytes
//!                                         ▼
//!                        uploader thread: pending segments, oldest first ──► Store::put
//!                                         into every active log ──► durable point advances
//! ```
//! The durable point advances only after a segment is stored (in every log it goes to),
//! strictly in order. A failed upload is retried with backoff until it succeeds or the
//! writer is closed; the error and the start of the outage show in [`Status`].
//!
//! When the waiting segments would exceed `max_spool_bytes`, the writer refuses: the segment
//! being sealed and everything appended after it are dropped, every later append answers
//! [`Appended::Refused`], and once the target took every waiting segment the capture must
//! catch up from [`Status::captured_through`] (what the log holds, with what waits). Nothing
//! is lost: the transactions dropped are still in the database.
//!
//! Transactions must be appended contiguously: each [`TxMark::before`] is the previous
//! one's [`TxMark::after`] (a gap is refused: it is the capture's job to catch up first).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;
use crate::model::{Attr, Datom, Value};
use crate::pipeline::chunk::{self, ChunkEncoder};
use crate::repo::layout;
use crate::repo::meta::write_edn;
use crate::store::Store;

use super::head::Closed;
use super::name::{Kind, SegmentName};
use super::spool::Spool;

/// How many of its most recent errors a writer keeps for [`Status::recent_errors`].
pub const RECENT_ERRORS: usize = 32;

/// How a writer behaves. [`Default`] holds the documented defaults.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// The database id.
    pub database_id: String,
    /// A segment is sealed this long after its first transaction was appended.
    pub flush_interval: Duration,
    /// A segment is sealed at the first transaction boundary past this many encoded bytes.
    pub max_segment_bytes: usize,
    /// Gzip level of the segments.
    pub compression_level: u32,
    /// Bytes of sealed segments that may wait for the target (spool or memory).
    pub max_spool_bytes: u64,
    /// The `:db/txInstant` attribute (to read each transaction's instant).
    pub tx_instant: Option<Attr>,
    /// The `:db/noHistory` attributes (segments holding them are marked).
    pub no_history_attrs: HashSet<Attr>,
    /// The longest wait between two upload attempts of a failing segment.
    pub max_retry_delay: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            database_id: String::new(),
            flush_interval: Duration::from_millis(1000),
            max_segment_bytes: 8 << 20,
            compression_level: 6,
            max_spool_bytes: 64 << 20,
            tx_instant: None,
            no_history_attrs: HashSet::new(),
            max_retry_delay: Duration::from_secs(2),
        }
    }
}

/// What the capture says about one transaction it appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxMark {
    /// The `:max-tx` before it (the previous transaction's `after`).
    pub before: i64,
    /// The `:max-tx` after it (its transaction id, for a transaction of `d/transact`).
    pub after: i64,
    /// When the capture saw it committed, epoch ms (for the lag).
    pub committed_ms: i64,
    /// Its `:db/txInstant`, epoch ms, when known.
    pub instant_ms: Option<i64>,
    /// It was caught up from the history, not seen live.
    pub caught_up: bool,
}

/// The outcome of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The transactions are in the open segment.
    Accepted,
    /// The spool is full: nothing was taken; once [`Status::spool_full`] clears, catch up
    /// from [`Status::captured_through`].
    Refused,
}

/// The last error of the writer, as status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorInfo {
    /// Counts errors: a new number means a new error.
    pub seq: u64,
    /// The error's kind.
    pub kind: ErrorKind,
    /// The operation.
    pub op: String,
    /// The message.
    pub message: String,
    /// The key concerned.
    pub key: Option<String>,
    /// A hint.
    pub hint: Option<String>,
    /// When it happened, epoch ms.
    pub at_ms: i64,
}

/// What the writer reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The database id.
    pub database_id: String,
    /// The logs new segments go to (two while a new chain's base backup runs).
    pub logs: Vec<String>,
    /// The last transaction appended and not dropped (what the log will hold).
    pub captured_through: i64,
    /// The last transaction stored in the target: the durable point.
    pub durable_through: i64,
    /// The `:db/txInstant` of the durable point, when known.
    pub durable_instant_ms: Option<i64>,
    /// How long the oldest transaction not yet durable has waited, ms (0: none waits).
    pub lag_ms: i64,
    /// Sealed segments waiting for the target.
    pub pending_segments: u64,
    /// Their bytes.
    pub pending_bytes: u64,
    /// Whether they wait on disk (a spool directory) rather than in memory.
    pub spooled: bool,
    /// Transactions appended so far.
    pub txs_captured: u64,
    /// Segments stored.
    pub segments_written: u64,
    /// Bytes of segments stored.
    pub bytes_written: u64,
    /// Datoms in segments stored.
    pub datoms_written: u64,
    /// Refusing appends because the spool is full.
    pub spool_full: bool,
    /// Times the spool filled up.
    pub refusals: u64,
    /// The most recent errors, oldest first (at most [`RECENT_ERRORS`]): a reader that looks
    /// now and then hears of each one by its `seq`, not only of the last.
    pub recent_errors: Vec<ErrorInfo>,
    /// Since when uploads fail (epoch ms), while they do.
    pub outage_since_ms: Option<i64>,
    /// Closed: no more appends.
    pub closed: bool,
}

impl Status {
    /// The last error, if any (the newest of [`Status::recent_errors`]).
    pub fn last_error(&self) -> Option<&ErrorInfo> {
        self.recent_errors.last()
    }
}

/// A segment being filled by the capture.
struct Open {
    enc: ChunkEncoder,
    /// Its datoms of `:db/noHistory` attributes (applied to the state when it is sealed).
    no_history: Vec<Datom>,
    after: i64,
    through: i64,
    instants: Option<(i64, i64)>,
    kind: Kind,
    first_commit_ms: i64,
    opened: Instant,
}

/// A sealed segment on its way to the target.
struct Sealed {
    name: SegmentName,
    /// The stored bytes; `None` when they wait in the spool.
    bytes: Option<Arc<Vec<u8>>>,
    size: u64,
    /// The logs it goes to, and how many of them hold it already.
    logs: Vec<String>,
    done: usize,
    first_commit_ms: i64,
    last_instant: Option<i64>,
}

/// A log to close once the durable point reaches `through`.
struct Closing {
    log: String,
    through: i64,
    reason: String,
}

/// State shared with the uploader.
struct St {
    logs: Vec<String>,
    segments_per_log: std::collections::HashMap<String, u64>,
    captured: i64,
    open_since_commit_ms: Option<i64>,
    pending: VecDeque<Sealed>,
    pending_bytes: u64,
    refusing: bool,
    refusals: u64,
    durable: i64,
    durable_instant: Option<i64>,
    txs_captured: u64,
    segments_written: u64,
    bytes_written: u64,
    datoms_written: u64,
    error_seq: u64,
    recent_errors: VecDeque<ErrorInfo>,
    outage_since: Option<i64>,
    attempts: u32,
    retry_at: Option<Instant>,
    closing: Vec<Closing>,
    /// No more segments will be sealed: the uploader exits when pending is empty.
    draining: bool,
    /// Give up: the uploader exits at once.
    abandon: bool,
    closed: bool,
}

struct Shared {
    store: Arc<dyn Store>,
    spool: Option<Spool>,
    opts: WriterOptions,
    st: Mutex<St>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, st: &mut St, e: &Error) {
        st.error_seq += 1;
        if st.recent_errors.len() == RECENT_ERRORS {
            st.recent_errors.pop_front();
        }
        st.recent_errors.push_back(ErrorInfo {
            seq: st.error_seq,
            kind: e.kind,
            op: e.op.clone(),
            message: e.message.clone(),
            key: e.key.clone(),
            hint: e.hint.clone(),
            at_ms: now_ms(),
        });
    }
}

/// The capture's side: the open segment.
struct Front {
    open: Option<Open>,
    captured: i64,
    /// What the sealed segments changed of the `:db/noHistory` values since the writer
    /// started (or jumped), by `[e a v]`: asserted (`Some`) or removed (`None`).
    no_history: NoHistoryDelta,
}

/// Changes to the current `:db/noHistory` values, by `[e a v]` ([`crate::codec::eav`]):
/// `Some(datom)` made current, `None` removed.
pub type NoHistoryDelta = HashMap<Arc<[u8]>, Option<Datom>>;

/// Record datoms of `:db/noHistory` attributes in a delta (an assertion makes a value
/// current, a retraction removes it).
pub fn record_no_history(delta: &mut NoHistoryDelta, datoms: &[Datom]) -> Result<()> {
    for d in datoms {
        let key = crate::codec::eav::state_key(d)?;
        delta.insert(key, d.added.then(|| d.clone()));
    }
    Ok(())
}

/// The current `:db/noHistory` datoms: `base` (the values current where the delta starts)
/// with `delta` applied.
pub fn apply_no_history(base: Vec<Datom>, delta: &NoHistoryDelta) -> Result<Vec<Datom>> {
    let mut state: HashMap<Arc<[u8]>, Datom> = HashMap::with_capacity(base.len());
    for d in base {
        state.insert(crate::codec::eav::state_key(&d)?, d);
    }
    for (k, v) in delta {
        match v {
            Some(d) => state.insert(k.clone(), d.clone()),
            None => state.remove(k),
        };
    }
    Ok(state.into_values().collect())
}

/// A running writer (see the module doc). Cheap to share: every method takes `&self`.
pub struct LogWriter {
    shared: Arc<Shared>,
    front: Mutex<Front>,
    uploader: Mutex<Option<JoinHandle<()>>>,
}

/// Turn a segment's encoded bytes into its stored bytes: the one place a segment's bytes
/// change form before they are stored (gzip now; sealing with a data key slots in here).
pub fn seal_bytes(encoded: &[u8], level: u32) -> Result<Vec<u8>> {
    chunk::gzip(encoded, level)
}

impl LogWriter {
    /// Start a writer that appends to `log_id`, whose segments start after `after` (its
    /// head must be stored already), with the segments of an earlier session of the same
    /// log already accounted for by the caller. `spool`: where sealed segments wait.
    pub fn start(
        store: Arc<dyn Store>,
        spool: Option<Spool>,
        opts: WriterOptions,
        log_id: &str,
        after: i64,
    ) -> Result<Self> {
        layout::check_segment("database-id", &opts.database_id)?;
        let st = St {
            logs: vec![log_id.to_owned()],
            segments_per_log: Default::default(),
            captured: after,
            open_since_commit_ms: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            refusing: false,
            refusals: 0,
            durable: after,
            durable_instant: None,
            txs_captured: 0,
            segments_written: 0,
            bytes_written: 0,
            datoms_written: 0,
            error_seq: 0,
            recent_errors: VecDeque::new(),
            outage_since: None,
            attempts: 0,
            retry_at: None,
            closing: Vec::new(),
            draining: false,
            abandon: false,
            closed: false,
        };
        let shared = Arc::new(Shared {
            store,
            spool,
            opts,
            st: Mutex::new(st),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let uploader = std::thread::Builder::new()
            .name("datacamp-log-upload".into())
            .spawn(move || upload_loop(&s))
            .map_err(|e| Error::io("start the log uploader", "datacamp-log-upload", e))?;
        Ok(LogWriter {
            shared,
            front: Mutex::new(Front {
                open: None,
                captured: after,
                no_history: NoHistoryDelta::new(),
            }),
            uploader: Mutex::new(Some(uploader)),
        })
    }

    fn front(&self) -> MutexGuard<'_, Front> {
        self.front.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The options the writer runs with.
    pub fn options(&self) -> &WriterOptions {
        &self.shared.opts
    }

    /// Append one transaction: its mark and its datoms in restore order (every datom's tx
    /// in `(mark.before, mark.after]`). Seals the open segment when it passed
    /// `max_segment_bytes`.
    ///
    /// Errors: `InvalidArgument` when the mark does not follow the last one (a gap) or a
    /// datom lies outside it; `Unsupported` for a value that cannot be encoded; errors of
    /// sealing (spool I/O). After an error the transaction is not in the log.
    pub fn append_tx(&self, mark: &TxMark, datoms: &[Datom]) -> Result<Appended> {
        let mut front = self.front();
        {
            let st = self.shared.lock();
            if st.refusing {
                return Ok(Appended::Refused);
            }
            if st.draining || st.closed {
                return Err(Error::invalid("append to log", "the log writer is closed"));
            }
        }
        if mark.before != front.captured || mark.after <= mark.before {
            return Err(Error::invalid(
                "append to log",
                format!(
                    "transaction ({}, {}] does not follow the log, which holds everything through tx {}",
                    mark.before, mark.after, front.captured
                ),
            )
            .with_hint("a capture must catch up the transactions in between first"));
        }
        if let Some(d) = datoms
            .iter()
            .find(|d| d.tx <= mark.before || d.tx > mark.after)
        {
            return Err(Error::invalid(
                "append to log",
                format!(
                    "datom {} lies outside its transaction ({}, {}]",
                    chunk::describe(d),
                    mark.before,
                    mark.after
                ),
            ));
        }
        let opts = &self.shared.opts;
        let captured = front.captured;
        let first = front.open.is_none();
        let open = front.open.get_or_insert_with(|| Open {
            enc: ChunkEncoder::starting_at(usize::MAX, captured as u64)
                .expect("an encoder without limit"),
            no_history: Vec::new(),
            after: captured,
            through: captured,
            instants: None,
            kind: Kind::default(),
            first_commit_ms: mark.committed_ms,
            opened: Instant::now(),
        });
        let mut no_history = false;
        let mut instant = mark.instant_ms;
        let mut failed = None;
        for d in datoms {
            if opts.no_history_attrs.contains(&d.a) {
                no_history = true;
                open.no_history.push(d.clone());
            }
            if let (Some(a), Value::Inst(ms)) = (&opts.tx_instant, &d.v) {
                if d.added && d.e == d.tx && d.a == *a {
                    instant = Some(*ms);
                }
            }
            if let Err(e) = open.enc.push(d) {
                failed = Some(e);
                break;
            }
        }
        if let Some(e) = failed {
            // The open segment may hold part of this transaction: drop it whole, so the
            // log ends at its start; the capture catches up from there.
            let after = open.after;
            front.open = None;
            front.captured = after;
            let mut st = self.shared.lock();
            st.captured = after;
            st.open_since_commit_ms = None;
            return Err(e.in_op("append to log"));
        }
        open.through = mark.after;
        open.kind.caught_up |= mark.caught_up;
        open.kind.no_history |= no_history;
        if let Some(ms) = instant {
            open.instants = Some(open.instants.map_or((ms, ms), |(a, _)| (a, ms)));
        }
        let full = open.enc.encoded_len() >= opts.max_segment_bytes;
        front.captured = mark.after;
        {
            let mut st = self.shared.lock();
            st.captured = mark.after;
            st.txs_captured += 1;
            if first {
                st.open_since_commit_ms = Some(mark.committed_ms);
            }
        }
        if full {
            self.seal_locked(&mut front)?;
        }
        Ok(Appended::Accepted)
    }

    /// Seal the open segment if `flush_interval` has passed since its first transaction.
    /// Returns whether one was sealed.
    pub fn tick(&self) -> Result<bool> {
        let mut front = self.front();
        let due = front
            .open
            .as_ref()
            .is_some_and(|o| o.opened.elapsed() >= self.shared.opts.flush_interval);
        if due {
            self.seal_locked(&mut front)?;
        }
        Ok(due)
    }

    /// Seal the open segment now, if there is one.
    pub fn seal(&self) -> Result<()> {
        let mut front = self.front();
        self.seal_locked(&mut front)
    }

    /// The time until the open segment is due (`None`: no open segment).
    pub fn due_in(&self) -> Option<Duration> {
        let front = self.front();
        front.open.as_ref().map(|o| {
            self.shared
                .opts
                .flush_interval
                .saturating_sub(o.opened.elapsed())
        })
    }

    fn seal_locked(&self, front: &mut Front) -> Result<()> {
        let Some(open) = front.open.take() else {
            return Ok(());
        };
        let shared = &self.shared;
        let opts = &shared.opts;
        let encoded = open.enc.finish_always()?;
        let stored = seal_bytes(&encoded.fressian, opts.compression_level)?;
        let name = SegmentName {
            through: open.through,
            after: open.after,
            datoms: encoded.datom_count,
            instants: open.instants,
            kind: open.kind,
            sha256: chunk::sha256_hex(&stored),
        };
        let size = stored.len() as u64;
        let (logs, over) = {
            let mut st = shared.lock();
            st.open_since_commit_ms = None;
            // A segment alone larger than the limit still goes when nothing waits: else the
            // capture could never move on.
            let over = !st.pending.is_empty() && st.pending_bytes + size > opts.max_spool_bytes;
            if over {
                st.refusing = true;
                st.refusals += 1;
                st.captured = open.after;
                let e = Error::new(
                    ErrorKind::Transient,
                    "capture",
                    format!(
                        "the spool is full ({} bytes in {} segments wait for the target, :max-spool-bytes is {}): capture paused at tx {}",
                        st.pending_bytes,
                        st.pending.len(),
                        opts.max_spool_bytes,
                        open.after
                    ),
                )
                .with_hint("nothing is lost: once the target took the waiting segments, the capture catches up from the database");
                shared.record(&mut st, &e);
            }
            (st.logs.clone(), over)
        };
        if over {
            front.captured = open.after;
            return Ok(());
        }
        // The segment goes on: its :db/noHistory datoms are part of the state now.
        record_no_history(&mut front.no_history, &open.no_history)?;
        let file = name.file_name();
        let bytes = match &shared.spool {
            Some(spool) => {
                let key = layout::log_segment_key(&opts.database_id, &logs[0], &file);
                match spool.put(&key, &stored) {
                    Ok(()) => None,
                    Err(e) => {
                        // A failing spool (disk full…) must not lose the segment: it waits
                        // in memory instead, within the same byte limit.
                        let mut st = shared.lock();
                        shared.record(&mut st, &e.in_op("spool log segment"));
                        Some(Arc::new(stored))
                    }
                }
            }
            None => Some(Arc::new(stored)),
        };
        failpoint::hit("log-sealed");
        let mut st = shared.lock();
        st.pending_bytes += size;
        st.pending.push_back(Sealed {
            last_instant: name.instants.map(|r| r.1),
            name,
            bytes,
            size,
            logs,
            done: 0,
            first_commit_ms: open.first_commit_ms,
        });
        shared.cv.notify_all();
        Ok(())
    }

    /// Start sending new segments to `log_id` too (its head is stored, its `after` is the
    /// current captured point): the open segment is sealed first.
    pub fn add_log(&self, log_id: &str, after: i64) -> Result<()> {
        let mut front = self.front();
        self.seal_locked(&mut front)?;
        if after != front.captured {
            return Err(Error::invalid(
                "add log",
                format!(
                    "log {log_id} starts after tx {after}, the capture is at tx {}",
                    front.captured
                ),
            ));
        }
        let mut st = self.shared.lock();
        if !st.logs.iter().any(|l| l == log_id) {
            st.logs.push(log_id.to_owned());
        }
        Ok(())
    }

    /// Stop sending new segments to `log_id`; once it holds everything captured so far its
    /// `closed.edn` is written with `reason`. The open segment is sealed first.
    pub fn retire_log(&self, log_id: &str, reason: &str) -> Result<()> {
        let mut front = self.front();
        self.seal_locked(&mut front)?;
        let mut st = self.shared.lock();
        st.logs.retain(|l| l != log_id);
        st.closing.push(Closing {
            log: log_id.to_owned(),
            through: front.captured,
            reason: reason.to_owned(),
        });
        self.shared.cv.notify_all();
        Ok(())
    }

    /// Move the captured point to `tx` (a new chain that starts at a later transaction,
    /// after every log was retired): the next appended transaction must follow `tx`.
    pub fn jump(&self, tx: i64) -> Result<()> {
        let mut front = self.front();
        self.seal_locked(&mut front)?;
        let mut st = self.shared.lock();
        if !st.logs.is_empty() {
            return Err(Error::invalid(
                "move the capture",
                format!("logs {:?} still take segments", st.logs),
            ));
        }
        if st.refusing && st.pending.is_empty() {
            st.refusing = false;
        }
        front.captured = tx;
        st.captured = tx;
        front.no_history.clear();
        Ok(())
    }

    /// What the log changed of the `:db/noHistory` values since the writer started (or
    /// jumped to a new chain), through the captured point (what a catch-up needs, with
    /// the values current at that start: [`apply_no_history`]).
    pub fn no_history_delta(&self) -> Result<NoHistoryDelta> {
        let front = self.front();
        let mut delta = front.no_history.clone();
        if let Some(open) = &front.open {
            record_no_history(&mut delta, &open.no_history)?;
        }
        Ok(delta)
    }

    /// The last transaction appended (and not dropped).
    pub fn captured(&self) -> i64 {
        self.front().captured
    }

    /// The writer's status.
    pub fn status(&self) -> Status {
        let shared = &self.shared;
        let st = shared.lock();
        let oldest = st
            .pending
            .front()
            .map(|s| s.first_commit_ms)
            .into_iter()
            .chain(st.open_since_commit_ms)
            .min();
        Status {
            database_id: shared.opts.database_id.clone(),
            logs: st.logs.clone(),
            captured_through: st.captured,
            durable_through: st.durable,
            durable_instant_ms: st.durable_instant,
            lag_ms: oldest.map_or(0, |t| (now_ms() - t).max(0)),
            pending_segments: st.pending.len() as u64,
            pending_bytes: st.pending_bytes,
            spooled: shared.spool.is_some(),
            txs_captured: st.txs_captured,
            segments_written: st.segments_written,
            bytes_written: st.bytes_written,
            datoms_written: st.datoms_written,
            spool_full: st.refusing,
            refusals: st.refusals,
            recent_errors: st.recent_errors.iter().cloned().collect(),
            outage_since_ms: st.outage_since,
            closed: st.closed,
        }
    }

    /// Record an error of the capture (shown in the status like the writer's own).
    pub fn report_error(&self, e: &Error) {
        let mut st = self.shared.lock();
        self.shared.record(&mut st, e);
    }

    /// Seal the open segment and wait until everything sealed is durable, at most
    /// `timeout`; return the status (its `captured_through == durable_through` when all is
    /// stored).
    pub fn flush(&self, timeout: Duration) -> Result<Status> {
        self.seal()?;
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while !st.pending.is_empty() && !st.abandon {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(st);
        Ok(self.status())
    }

    /// Close: seal, wait at most `timeout` for every segment to be stored, then write
    /// `closed.edn` into each log when everything is, stop the uploader and return the
    /// final status. Segments still waiting stay in the spool (if any) for the next
    /// capture; without a spool they are dropped and the next capture catches up.
    pub fn close(&self, timeout: Duration, reason: &str) -> Result<Status> {
        let sealed = self.seal();
        let deadline = Instant::now() + timeout;
        {
            let mut st = self.shared.lock();
            st.draining = true;
            self.shared.cv.notify_all();
            while !st.pending.is_empty() && !st.abandon {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st = self
                    .shared
                    .cv
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let all = st.pending.is_empty() && sealed.is_ok();
            if all {
                let through = st.durable;
                let logs = st.logs.clone();
                for l in logs {
                    st.closing.push(Closing {
                        log: l,
                        through,
                        reason: reason.to_owned(),
                    });
                }
                st.logs.clear();
            }
            st.abandon = true;
            st.closed = true;
            self.shared.cv.notify_all();
        }
        // The uploader exits after its current attempt; only wait for it when it is idle
        // (a hanging upload must not hold the caller past its timeout).
        if let Some(h) = self
            .uploader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let start = Instant::now();
            while !h.is_finished() && start.elapsed() < left.max(Duration::from_millis(200)) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        write_closings(&self.shared);
        sealed?;
        Ok(self.status())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.abandon = true;
        st.closed = true;
        self.shared.cv.notify_all();
    }
}

/// Write `closed.edn` for every retiring log the durable point has reached.
fn write_closings(shared: &Shared) {
    let due: Vec<Closing> = {
        let mut st = shared.lock();
        let durable = st.durable;
        let (due, keep): (Vec<Closing>, Vec<Closing>) =
            st.closing.drain(..).partition(|c| c.through <= durable);
        st.closing = keep;
        due
    };
    for c in due {
        let segments = shared
            .lock()
            .segments_per_log
            .get(&c.log)
            .copied()
            .unwrap_or(0);
        let marker = Closed {
            through: c.through,
            closed_at_ms: now_ms(),
            segments,
            reason: c.reason.clone(),
        };
        let key = layout::backup_file(&shared.opts.database_id, &c.log, layout::LOG_CLOSED);
        if let Err(e) = write_edn(shared.store.as_ref(), &key, &marker.to_value()) {
            let mut st = shared.lock();
            shared.record(&mut st, &e);
        }
    }
}

/// What the uploader does next.
struct Job {
    file: String,
    bytes: Option<Arc<Vec<u8>>>,
    spool_key: String,
    logs: Vec<String>,
}

fn upload_loop(shared: &Shared) {
    let db = shared.opts.database_id.clone();
    loop {
        let job = {
            let mut st = shared.lock();
            loop {
                if st.abandon {
                    return;
                }
                if let Some(front) = st.pending.front() {
                    let wait = st
                        .retry_at
                        .map(|t| t.saturating_duration_since(Instant::now()));
                    match wait {
                        Some(w) if !w.is_zero() => {
                            st = shared
                                .cv
                                .wait_timeout(st, w)
                                .unwrap_or_else(|p| p.into_inner())
                                .0;
                            continue;
                        }
                        _ => {
                            let file = front.name.file_name();
                            break Job {
                                spool_key: layout::log_segment_key(&db, &front.logs[0], &file),
                                file,
                                bytes: front.bytes.clone(),
                                logs: front.logs[front.done..].to_vec(),
                            };
                        }
                    }
                }
                if st.draining {
                    drop(st);
                    write_closings(shared);
                    return;
                }
                st = shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut done = 0;
        let result = upload(shared, &db, &job, &mut done);
        let mut st = shared.lock();
        match result {
            Ok(()) => {
                let Some(seg) = st.pending.pop_front() else {
                    continue;
                };
                st.pending_bytes -= seg.size;
                st.durable = seg.name.through;
                if seg.last_instant.is_some() {
                    st.durable_instant = seg.last_instant;
                }
                st.segments_written += 1;
                st.bytes_written += seg.size;
                st.datoms_written += seg.name.datoms;
                for l in &seg.logs {
                    *st.segments_per_log.entry(l.clone()).or_default() += 1;
                }
                st.outage_since = None;
                st.attempts = 0;
                st.retry_at = None;
                if st.refusing && st.pending.is_empty() {
                    st.refusing = false;
                }
                shared.cv.notify_all();
                let closing = !st.closing.is_empty();
                drop(st);
                if let Some(spool) = &shared.spool {
                    let _ = spool.delete(&job.spool_key);
                }
                if closing {
                    write_closings(shared);
                }
            }
            Err(e) => {
                if let Some(seg) = st.pending.front_mut() {
                    seg.done += done;
                }
                st.outage_since.get_or_insert(now_ms());
                st.attempts += 1;
                let delay = backoff(st.attempts, shared.opts.max_retry_delay);
                st.retry_at = Some(Instant::now() + delay);
                shared.record(&mut st, &e);
                shared.cv.notify_all();
            }
        }
    }
}

/// Store one segment into each of `job.logs`, counting in `done` the logs that hold it.
fn upload(shared: &Shared, db: &str, job: &Job, done: &mut usize) -> Result<()> {
    let bytes = match &job.bytes {
        Some(b) => b.clone(),
        None => match &shared.spool {
            Some(spool) => Arc::new(spool.get(&job.spool_key)?),
            None => return Err(Error::internal("upload segment", "no bytes and no spool")),
        },
    };
    for log in &job.logs {
        let key = layout::log_segment_key(db, log, &job.file);
        shared
            .store
            .put(&key, &bytes)
            .map_err(|e| e.in_op("store log segment"))?;
        *done += 1;
        failpoint::hit("log-segment-stored");
    }
    Ok(())
}

/// The wait before upload attempt `n + 1`: 200 ms doubling, capped.
fn backoff(attempts: u32, cap: Duration) -> Duration {
    let ms = 200u64.saturating_mul(1u64 << attempts.min(16).saturating_sub(1));
    Duration::from_millis(ms).min(cap)
}
