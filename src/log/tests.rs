//! Tests of the log room against an in-memory store that can go down.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Name, Value, TX0};
use crate::ops::check;
use crate::ops::testing;
use crate::pipeline::chunk;
use crate::pipeline::order::OrderSpec;
use crate::repo::layout;
use crate::store::memory::MemoryStore;
use crate::store::{ObjectMeta, Store};

use super::read::{self, StoredLog};
use super::writer::{Appended, ErrorInfo, LogWriter, TxMark, WriterOptions};
use crate::ops::capture::{DbFacts, Plan, Session, SessionOptions};

/// A memory store whose writes and reads fail (transiently) while it is down.
#[derive(Clone, Default)]
pub struct Flaky {
    pub inner: MemoryStore,
    pub down: Arc<AtomicBool>,
    pub puts: Arc<AtomicU64>,
}

impl Flaky {
    fn check(&self, op: &str) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Transient,
                op,
                "connection refused (test)",
            ));
        }
        Ok(())
    }
}

impl Store for Flaky {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.check("put object")?;
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, bytes)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.check("get object")?;
        self.inner.get(key)
    }
    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.check("stat object")?;
        self.inner.size(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.check("list objects")?;
        self.inner.list(prefix)
    }
    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        self.check("list objects")?;
        self.inner.list_after(prefix, start_after)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.check("delete object")?;
        self.inner.delete(key)
    }
    fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.check("put object")?;
        self.inner.put_if_absent(key, bytes)
    }
}

fn kw(s: &str) -> Attr {
    Attr::Keyword(Name::parse(s))
}

/// Transaction `t` (after TX0): its txInstant and `n` names of new entities.
fn tx(t: i64, n: i64) -> (TxMark, Vec<Datom>) {
    let id = TX0 + t;
    let mut ds = vec![Datom {
        e: id,
        a: kw("db/txInstant"),
        v: Value::Inst(1_700_000_000_000 + t),
        tx: id,
        added: true,
    }];
    for i in 0..n {
        ds.push(Datom {
            e: t * 100 + i,
            a: kw("p/name"),
            v: Value::String(format!("name {t}-{i} with some padding")),
            tx: id,
            added: true,
        });
    }
    let mark = TxMark {
        before: id - 1,
        after: id,
        committed_ms: crate::clock::now_ms(),
        instant_ms: None,
        caught_up: false,
    };
    (mark, ds)
}

fn wopts(db: &str) -> WriterOptions {
    WriterOptions {
        database_id: db.into(),
        flush_interval: Duration::from_millis(20),
        tx_instant: Some(kw("db/txInstant")),
        no_history_attrs: HashSet::from([kw("p/nick")]),
        max_retry_delay: Duration::from_millis(50),
        ..WriterOptions::default()
    }
}

fn log_head(store: &dyn Store, db: &str, log: &str, after: i64) {
    let head = super::head::LogHead {
        log_id: log.into(),
        database_id: db.into(),
        parent: "base".into(),
        base: "base".into(),
        after_tx: after,
        created_at_ms: 1,
        history: true,
        datahike_id: None,
        datahike_version: None,
        db_config: Value::Nil,
        tx_instant: Some(kw("db/txInstant")),
        no_history_attrs: vec![],
        skip_tx0: false,
        reason: "test".into(),
    };
    crate::repo::meta::write_edn(
        store,
        &layout::backup_file(db, log, layout::LOG_HEAD),
        &head.to_value(),
    )
    .unwrap();
}

/// The datoms of a stored log's contiguous run, each segment checked as restore checks it.
fn log_datoms(store: &dyn Store, log: &StoredLog) -> Vec<Datom> {
    log.segments
        .iter()
        .flat_map(|s| {
            check::fetch_checked(store, &log.prefix, &s.chunk_meta(), None)
                .unwrap()
                .datoms
        })
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn appended_transactions_become_contiguous_checked_segments() {
    let store = Flaky::default();
    let arc: Arc<dyn Store> = Arc::new(store.clone());
    log_head(&store, "db", "l1", TX0);
    let w = LogWriter::start(arc.clone(), None, wopts("db"), "l1", TX0).unwrap();
    let mut want = Vec::new();
    for t in 1..=30 {
        let (m, ds) = tx(t, t % 4);
        assert_eq!(w.append_tx(&m, &ds).unwrap(), Appended::Accepted);
        want.extend(ds);
        if t % 7 == 0 {
            std::thread::sleep(Duration::from_millis(25));
            assert!(w.tick().unwrap(), "due after the flush interval");
        }
    }
    let st = w.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (st.captured_through, st.durable_through),
        (TX0 + 30, TX0 + 30)
    );
    assert_eq!(st.durable_instant_ms, Some(1_700_000_000_030));
    assert_eq!(st.lag_ms, 0);
    let log = read::read(&store, "db", "l1").unwrap();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.segments.len() as u64, st.segments_written);
    assert!(log.segments.len() >= 4, "{} segments", log.segments.len());
    assert_eq!(log.through, TX0 + 30);
    assert_eq!(log_datoms(&store, &log), want);
    assert_eq!(log.datom_count(), want.len() as u64);
    assert_eq!(
        log.instant_range(),
        Some((1_700_000_000_001, 1_700_000_000_030))
    );
    for s in &log.segments {
        let bytes = store.get(&s.key).unwrap();
        assert_eq!(chunk::sha256_hex(&bytes), s.name.sha256);
        assert!(!s.name.kind.caught_up && !s.name.kind.no_history);
    }
    // Closing writes the marker; nothing more is accepted.
    let closed = w.close(Duration::from_secs(5), "stopped").unwrap();
    assert!(closed.closed);
    let log = read::read(&store, "db", "l1").unwrap();
    assert_eq!(log.closed.as_ref().unwrap().through, TX0 + 30);
    assert_eq!(log.closed.as_ref().unwrap().segments, st.segments_written);
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    let (m, ds) = tx(31, 1);
    assert_eq!(
        w.append_tx(&m, &ds).unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
}

#[test]
fn segments_are_cut_at_transaction_boundaries_past_the_size_limit() {
    let store = MemoryStore::new();
    log_head(&store, "db", "l1", TX0);
    let mut o = wopts("db");
    o.flush_interval = Duration::from_secs(3600);
    o.max_segment_bytes = 1_024;
    let w = LogWriter::start(Arc::new(store.clone()), None, o, "l1", TX0).unwrap();
    for t in 1..=20 {
        let (m, ds) = tx(t, 10);
        w.append_tx(&m, &ds).unwrap();
    }
    w.flush(Duration::from_secs(10)).unwrap();
    let log = read::read(&store, "db", "l1").unwrap();
    assert!(log.segments.len() >= 5, "{}", log.segments.len());
    for s in &log.segments {
        let d = check::fetch_checked(&store, &log.prefix, &s.chunk_meta(), None).unwrap();
        // Whole transactions: 11 datoms each.
        assert_eq!(d.datoms.len() % 11, 0);
        assert_eq!(d.datoms.first().unwrap().tx, s.name.after + 1);
        assert_eq!(d.datoms.last().unwrap().tx, s.name.through);
    }
}

#[test]
fn gaps_and_datoms_outside_their_transaction_are_refused() {
    let store = MemoryStore::new();
    log_head(&store, "db", "l1", TX0);
    let w = LogWriter::start(Arc::new(store), None, wopts("db"), "l1", TX0).unwrap();
    let (m, ds) = tx(2, 1);
    let e = w.append_tx(&m, &ds).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("does not follow the log"), "{e}");
    let (m, mut ds) = tx(1, 1);
    ds[1].tx = TX0 + 2;
    assert!(w
        .append_tx(&m, &ds)
        .unwrap_err()
        .message
        .contains("outside"));
    // An empty transaction (no datoms) still moves the log.
    let (mut m, _) = tx(1, 0);
    m.after = TX0 + 3;
    w.append_tx(&m, &[]).unwrap();
    assert_eq!(w.captured(), TX0 + 3);
}

#[test]
fn uploads_retry_through_an_outage_and_the_status_shows_it() {
    let store = Flaky::default();
    log_head(&store, "db", "l1", TX0);
    let w = LogWriter::start(Arc::new(store.clone()), None, wopts("db"), "l1", TX0).unwrap();
    let (m, ds) = tx(1, 2);
    w.append_tx(&m, &ds).unwrap();
    w.flush(Duration::from_secs(5)).unwrap();
    store.down.store(true, Ordering::SeqCst);
    let mut want_through = TX0 + 1;
    for t in 2..=10 {
        let (m, ds) = tx(t, 2);
        w.append_tx(&m, &ds).unwrap();
        w.seal().unwrap();
        want_through = m.after;
    }
    wait_until("an upload failed", || w.status().outage_since_ms.is_some());
    let st = w.status();
    assert_eq!(st.durable_through, TX0 + 1);
    assert_eq!(st.pending_segments, 9);
    assert!(st.lag_ms >= 0);
    let err = st.last_error().unwrap();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert_eq!(err.op, "store log segment");
    store.down.store(false, Ordering::SeqCst);
    let st = w.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(st.durable_through, want_through);
    assert_eq!(st.outage_since_ms, None);
    assert_eq!(st.pending_segments, 0);
    let log = read::read(&store, "db", "l1").unwrap();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.through, want_through);
}

#[test]
fn a_full_spool_refuses_then_clears_once_the_target_took_everything() {
    let store = Flaky::default();
    log_head(&store, "db", "l1", TX0);
    let mut o = wopts("db");
    o.max_spool_bytes = 2_500;
    let w = LogWriter::start(Arc::new(store.clone()), None, o, "l1", TX0).unwrap();
    store.down.store(true, Ordering::SeqCst);
    let mut refused_at = None;
    for t in 1..=40 {
        let (m, ds) = tx(t, 3);
        match w.append_tx(&m, &ds).unwrap() {
            Appended::Accepted => w.seal().unwrap(),
            Appended::Refused => {
                refused_at = Some(t);
                break;
            }
        }
    }
    let t = refused_at.expect("the spool fills up");
    let st = w.status();
    assert!(st.spool_full && st.refusals == 1);
    assert!(st.pending_bytes <= 2_500);
    // The segment that did not fit was dropped: the log will hold everything before it.
    assert_eq!(st.captured_through, TX0 + t - 2);
    let full = |e: &ErrorInfo| e.message.contains("the spool is full");
    let spool_seq = st
        .recent_errors
        .iter()
        .find(|e| full(e))
        .expect("the refusal is reported")
        .seq;
    // The uploader goes on failing: its errors come after the refusal, which stays heard of.
    wait_until("an upload failed after the refusal", || {
        w.status()
            .recent_errors
            .iter()
            .any(|e| e.seq > spool_seq && !full(e))
    });
    let st = w.status();
    assert!(st
        .recent_errors
        .iter()
        .any(|e| e.seq == spool_seq && full(e)));
    assert!(st.recent_errors.windows(2).all(|p| p[0].seq < p[1].seq));
    store.down.store(false, Ordering::SeqCst);
    wait_until("the spool drained", || !w.status().spool_full);
    // The capture catches up from the captured point.
    let from = w.captured();
    assert_eq!(from, TX0 + t - 2);
    for t2 in (from - TX0 + 1)..=(t + 3) {
        let (m, ds) = tx(t2, 3);
        assert_eq!(w.append_tx(&m, &ds).unwrap(), Appended::Accepted);
    }
    let st = w.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(st.durable_through, TX0 + t + 3);
    let log = read::read(&store, "db", "l1").unwrap();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    let txs: Vec<i64> = log_datoms(&store, &log)
        .iter()
        .filter(|d| d.e == d.tx)
        .map(|d| d.tx - TX0)
        .collect();
    assert_eq!(
        txs,
        (1..=t + 3).collect::<Vec<_>>(),
        "every transaction once, in order"
    );
}

#[test]
fn spooled_segments_survive_a_killed_writer_and_are_stored_by_the_next_session() {
    let store = Flaky::default();
    let arc: Arc<dyn Store> = Arc::new(store.clone());
    let spool_dir = tempfile::tempdir().unwrap();
    let full = testing::backup(
        &arc,
        testing::options("db", 1 << 20, 5),
        &testing::history(5),
    );
    let base = full.manifest.backup_id.clone();
    let mut opts = session_options("db", TX0 + 5);
    opts.spool_dir = Some(spool_dir.path().to_path_buf());
    let s = Session::open(arc.clone(), opts.clone()).unwrap();
    assert_eq!(
        s.plan(),
        &Plan::Continue {
            parent: base.clone(),
            base: base.clone(),
            after: TX0 + 5
        }
    );
    let log1 = s.log_id();
    store.down.store(true, Ordering::SeqCst);
    for t in 6..=9 {
        let (m, ds) = tx(t, 2);
        s.writer().append_tx(&m, &ds).unwrap();
        s.writer().seal().unwrap();
    }
    let st = s.status();
    assert!(st.spooled && st.pending_segments == 4 && st.durable_through == TX0 + 5);
    // The process dies: nothing is closed, the lease is left behind. (Its threads live on
    // in this test: the target stays down for them, up for the next session.)
    std::mem::forget(s);
    let after_death = Flaky {
        inner: store.inner.clone(),
        ..Flaky::default()
    };
    let arc: Arc<dyn Store> = Arc::new(after_death);
    opts.break_lock = true;
    opts.db.max_tx = TX0 + 9;
    let s2 = Session::open(arc.clone(), opts).unwrap();
    assert_eq!(s2.recovered(), 4);
    assert_eq!(
        s2.plan(),
        &Plan::Continue {
            parent: log1.clone(),
            base: base.clone(),
            after: TX0 + 9
        }
    );
    let log = read::read(arc.as_ref(), "db", &log1).unwrap();
    assert_eq!(log.through, TX0 + 9);
    assert!(log.closed.is_none());
    assert!(
        walk(spool_dir.path()).is_empty(),
        "the spool is empty: {:?}",
        walk(spool_dir.path())
    );
    s2.close(Duration::from_secs(5), "stopped").unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

fn session_options(db: &str, max_tx: i64) -> SessionOptions {
    SessionOptions {
        writer: wopts(db),
        db: DbFacts {
            max_tx,
            max_eid: 0,
            history: true,
            datahike_id: None,
            datahike_version: None,
            db_config: Value::Nil,
        },
        order: OrderSpec {
            ref_attrs: HashSet::from([kw("person/friend")]),
            tx_instant: Some(kw("db/txInstant")),
            skip_tx0: false,
        },
        spool_dir: None,
        lock_lease: Duration::from_secs(30),
        lock_wait: Duration::ZERO,
        break_lock: false,
        tmp_dir: None,
        sort_buffer_bytes: 1 << 20,
    }
}

#[test]
fn one_capture_per_database_and_restarts_continue_the_chain() {
    let (mem, arc) = testing::store();
    let s = Session::open(arc.clone(), session_options("db", TX0 + 3)).unwrap();
    let Plan::NewChain { backup_id, reason } = s.plan().clone() else {
        panic!("{:?}", s.plan())
    };
    assert!(reason.contains("no backup to continue"), "{reason}");
    let e = Session::open(arc.clone(), session_options("db", TX0 + 3))
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(
        e.message.contains("is being captured by another process"),
        "{e}"
    );
    // Another database is not concerned.
    let other = Session::open(arc.clone(), session_options("other", TX0)).unwrap();
    other.close(Duration::from_secs(5), "stopped").unwrap();
    // The base backup the JVM takes for the new chain: id from the plan.
    let mut o = testing::options("db", 1 << 20, 3);
    o.backup_id = Some(backup_id.clone());
    testing::backup(&arc, o, &testing::history(3));
    let log1 = s.log_id();
    for t in 4..=6 {
        let (m, ds) = tx(t, 1);
        s.writer().append_tx(&m, &ds).unwrap();
    }
    let st = s.close(Duration::from_secs(5), "stopped").unwrap();
    assert_eq!(st.durable_through, TX0 + 6);
    wait_until("the lock is released", || {
        mem.list(&layout::capture_lock_folder("db"))
            .unwrap()
            .is_empty()
    });
    // A restart continues the log; the database moved on: a catch-up from tx 6 to 8.
    let s2 = Session::open(arc.clone(), session_options("db", TX0 + 8)).unwrap();
    assert_eq!(
        s2.plan(),
        &Plan::Continue {
            parent: log1.clone(),
            base: backup_id.clone(),
            after: TX0 + 6
        }
    );
    let history = testing::history(8);
    assert_eq!(s2.catch_up_begin(TX0 + 8, None).unwrap(), TX0 + 6);
    let mut b = crate::codec::wire::BatchBuilder::new();
    for d in &history {
        b.push(d).unwrap();
    }
    s2.catch_up_push(b.flush()).unwrap();
    let r = s2.catch_up_finish().unwrap();
    assert_eq!((r.txs, r.refused), (2, false));
    s2.writer().flush(Duration::from_secs(5)).unwrap();
    let log2 = read::read(mem_ref(&mem), "db", &s2.log_id()).unwrap();
    assert_eq!(log2.through, TX0 + 8);
    assert!(log2.segments.iter().all(|s| s.name.kind.caught_up));
    // The caught-up window is the full backup's restore order of those transactions.
    let full = testing::backup(&arc, testing::options("ref", 1 << 20, 8), &history);
    let want: Vec<Datom> = testing::stored_datoms(&mem, &full)
        .into_iter()
        .filter(|d| d.tx > TX0 + 6)
        .collect();
    assert_eq!(log_datoms(&mem, &log2), want);
    // A database without history cannot catch up: a new chain.
    s2.close(Duration::from_secs(5), "stopped").unwrap();
    let mut nh = session_options("db", TX0 + 12);
    nh.db.history = false;
    nh.lock_wait = Duration::from_secs(5);
    let s3 = Session::open(arc.clone(), nh).unwrap();
    match s3.plan() {
        Plan::NewChain { reason, .. } => {
            assert!(reason.contains("keeps no history"), "{reason}")
        }
        p => panic!("{p:?}"),
    }
    s3.close(Duration::from_secs(5), "stopped").unwrap();
}

fn mem_ref(m: &MemoryStore) -> &dyn Store {
    m
}

#[test]
fn a_new_chain_writes_both_logs_until_the_old_one_retires() {
    let (mem, arc) = testing::store();
    let full = testing::backup(
        &arc,
        testing::options("db", 1 << 20, 2),
        &testing::history(2),
    );
    let s = Session::open(arc.clone(), session_options("db", TX0 + 2)).unwrap();
    let old = s.log_id();
    for t in 3..=4 {
        let (m, ds) = tx(t, 1);
        s.writer().append_tx(&m, &ds).unwrap();
    }
    let new = s.new_chain("b2", TX0 + 4, true, "snapshot").unwrap();
    for t in 5..=7 {
        let (m, ds) = tx(t, 1);
        s.writer().append_tx(&m, &ds).unwrap();
    }
    s.retire(&old, "a new chain starts at backup b2").unwrap();
    let (m, ds) = tx(8, 1);
    s.writer().append_tx(&m, &ds).unwrap();
    s.close(Duration::from_secs(5), "stopped").unwrap();
    let o = read::read(&mem, "db", &old).unwrap();
    let n = read::read(&mem, "db", &new).unwrap();
    assert_eq!(
        (o.through, n.head.after_tx, n.through),
        (TX0 + 7, TX0 + 4, TX0 + 8)
    );
    assert_eq!(o.closed.as_ref().unwrap().through, TX0 + 7);
    assert!(o.closed.as_ref().unwrap().reason.contains("b2"));
    assert_eq!(n.closed.as_ref().unwrap().through, TX0 + 8);
    assert_eq!(n.head.parent, "b2");
    assert!(o.problems.is_empty() && n.problems.is_empty());
    // The same bytes under both logs for the transactions they share.
    let shared: Vec<Datom> = log_datoms(&mem, &o)
        .into_iter()
        .filter(|d| d.tx > TX0 + 4)
        .collect();
    let newer: Vec<Datom> = log_datoms(&mem, &n)
        .into_iter()
        .filter(|d| d.tx <= TX0 + 7)
        .collect();
    assert_eq!(shared, newer);
    let _ = full;
}

#[test]
fn logs_list_with_their_chain_and_cleanup_leaves_them_alone() {
    let (mem, arc) = testing::store();
    let full = testing::backup(
        &arc,
        testing::options("db", 1 << 20, 2),
        &testing::history(2),
    );
    let s = Session::open(arc.clone(), session_options("db", TX0 + 2)).unwrap();
    let log = s.log_id();
    for t in 3..=5 {
        let (m, ds) = tx(t, 1);
        s.writer().append_tx(&m, &ds).unwrap();
    }
    s.writer().flush(Duration::from_secs(5)).unwrap();
    // While the capture runs (its lock is in `.continuous/`), and after it stopped.
    for running in [true, false] {
        if !running {
            s.close(Duration::from_secs(5), "stopped").unwrap();
        }
        let listed = crate::ops::list::list(arc.as_ref(), "db").unwrap();
        assert_eq!(
            listed.len(),
            2,
            "the backup and the log, never the lock folder"
        );
        let l = listed.iter().find(|x| x.backup_id == log).unwrap();
        assert!(l.completed);
        let stored = l.log.as_ref().unwrap();
        assert_eq!(stored.head.parent, full.manifest.backup_id);
        assert_eq!(stored.through, TX0 + 5);
        assert_eq!(stored.closed.is_some(), !running);
        let cleaned =
            crate::ops::cleanup::cleanup_incomplete(arc.as_ref(), "db", Duration::ZERO).unwrap();
        assert!(cleaned.removed.is_empty(), "{cleaned:?}");
        assert_eq!(read::read(&mem, "db", &log).unwrap().through, TX0 + 5);
    }
}

/// A full backup of `full_txs` transactions, then a capture of transactions
/// `full_txs+1..=last` closed cleanly: `(full id, log id, every datom in tx order)`.
fn full_then_log(
    store: &Arc<dyn Store>,
    db: &str,
    full_txs: i64,
    last: i64,
) -> (String, String, Vec<Datom>) {
    let source = testing::history(full_txs);
    let full = testing::backup(store, testing::options(db, 1 << 20, 2), &source);
    let s = Session::open(store.clone(), session_options(db, TX0 + full_txs)).unwrap();
    let log = s.log_id();
    let mut all = crate::ops::testing::restore(store, db, &full.manifest.backup_id).unwrap();
    for t in full_txs + 1..=last {
        let (m, ds) = tx(t, 2);
        s.writer().append_tx(&m, &ds).unwrap();
        if t % 3 == 0 {
            s.writer().seal().unwrap();
        }
        all.extend(ds);
    }
    s.close(Duration::from_secs(5), "stopped").unwrap();
    (full.manifest.backup_id, log, all)
}

fn restore_opts(db: &str, id: &str) -> crate::ops::restore::RestoreOptions {
    crate::ops::restore::RestoreOptions {
        database_id: db.into(),
        backup_id: id.into(),
        ..Default::default()
    }
}

fn key(d: &Datom) -> (i64, i64, String, String, bool) {
    (
        d.tx,
        d.e,
        format!("{:?}", d.a),
        format!("{:?}", d.v),
        d.added,
    )
}

fn sorted(ds: &[Datom]) -> Vec<(i64, i64, String, String, bool)> {
    let mut v: Vec<_> = ds.iter().map(key).collect();
    v.sort();
    v
}

#[test]
fn a_log_restores_as_a_link_of_its_chain_latest_and_as_of_any_transaction() {
    let (_mem, store) = testing::store();
    let (full, log, all) = full_then_log(&store, "db", 2, 9);
    // The log id restores the chain through it; `latest` finds the log without an id, and
    // with the chain's base as the id.
    let by_id = testing::restore(&store, "db", &log).unwrap();
    assert_eq!(sorted(&by_id), sorted(&all));
    assert!(by_id.windows(2).all(|w| w[0].tx <= w[1].tx), "tx ascending");
    for within in ["", full.as_str()] {
        let o = crate::ops::restore::RestoreOptions {
            latest: true,
            ..restore_opts("db", within)
        };
        let (datoms, session) = testing::restore_with(&store, o).unwrap();
        assert_eq!(sorted(&datoms), sorted(&all));
        assert_eq!(session.info().manifest.backup_id, log);
    }
    // As of every transaction: exactly the prefix.
    for t in 1..=9 {
        let o = crate::ops::restore::RestoreOptions {
            as_of_tx: Some(TX0 + t),
            ..restore_opts("db", &log)
        };
        let (datoms, _) = testing::restore_with(&store, o).unwrap();
        let want: Vec<Datom> = all.iter().filter(|d| d.tx <= TX0 + t).cloned().collect();
        assert_eq!(sorted(&datoms), sorted(&want), "as of tx {t}");
    }
    // Verify: the log checks as a link (deep: every segment decoded against the chain).
    let v = crate::ops::verify::verify(store.as_ref(), "db", &log, true, None).unwrap();
    assert!(v.success(), "{v:?}");
    assert_eq!(v.chain, [full.clone(), log.clone()]);
    assert_eq!(
        v.datoms_verified,
        Some((all.len() - by_id.iter().filter(|d| d.tx <= TX0 + 2).count()) as u64)
    );
}

#[test]
fn a_gap_in_a_log_is_named_by_verify_and_ends_what_restore_reads() {
    let (mem, store) = testing::store();
    let (_full, log, all) = full_then_log(&store, "db", 2, 40);
    let stored = read::read(&mem, "db", &log).unwrap();
    assert!(
        stored.segments.len() >= 2,
        "{} segments",
        stored.segments.len()
    );
    // Lose a segment in the middle.
    let lost = &stored.segments[stored.segments.len() / 2];
    mem.delete(&lost.key).unwrap();
    let v = crate::ops::verify::verify(store.as_ref(), "db", &log, false, None).unwrap();
    assert!(!v.success());
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("gap") && p.contains(&format!("{}", lost.name.after + 1))),
        "{:?}",
        v.problems
    );
    // Restore holds what is contiguous: up to the gap, never past it.
    let restored = testing::restore(&store, "db", &log).unwrap();
    let want: Vec<Datom> = all
        .iter()
        .filter(|d| d.tx <= lost.name.after)
        .cloned()
        .collect();
    assert_eq!(sorted(&restored), sorted(&want));
}

#[test]
fn prune_keeps_logs_with_their_chain_and_deletes_them_with_it() {
    let (mem, store) = testing::store();
    let (old_full, old_log, _) = full_then_log(&store, "db", 2, 5);
    std::thread::sleep(Duration::from_millis(5)); // creation times order the backups
    let newer = testing::backup(
        &store,
        testing::options("db", 1 << 20, 6),
        &testing::history(6),
    );
    let newer = newer.manifest.backup_id;
    let s = Session::open(store.clone(), session_options("db", TX0 + 6)).unwrap();
    let new_log = s.log_id();
    let (m, ds) = tx(7, 1);
    s.writer().append_tx(&m, &ds).unwrap();
    s.close(Duration::from_secs(5), "stopped").unwrap();
    let opts = crate::ops::prune::PruneOptions {
        policy: crate::chain::retention::Policy {
            keep_last: 1,
            ..Default::default()
        },
        dry_run: false,
    };
    let r = crate::ops::prune::prune(store.as_ref(), "db", &opts).unwrap();
    let kept: Vec<&str> = r.kept.iter().map(|(id, _)| id.as_str()).collect();
    assert!(
        kept.contains(&newer.as_str()) && kept.contains(&new_log.as_str()),
        "{r:?}"
    );
    assert_eq!(
        r.deleted,
        [old_log.clone(), old_full.clone()],
        "the log first, then its base"
    );
    let left: Vec<String> = crate::ops::list::list(&mem, "db")
        .unwrap()
        .into_iter()
        .map(|s| s.backup_id)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(
        testing::restore(&store, "db", &new_log).unwrap().len(),
        testing::history(6).len() + ds.len()
    );
}

#[test]
fn a_capture_never_continues_an_encrypted_chain_with_a_plain_log() {
    let (mem, store) = testing::store();
    let mut o = testing::options("db", 1 << 20, 2);
    o.encryption = Some(crate::crypto::envelope::KeySpec::Key(Arc::new(
        crate::crypto::MasterKey::from_bytes(&[7; 32]).unwrap(),
    )));
    testing::backup(&store, o, &testing::history(2));
    // Refused whatever Datahike identity the capture's database has (an encrypted
    // backup's is sealed): a plain new chain would downgrade the database's backups.
    let mut so = session_options("db", TX0 + 2);
    so.db.datahike_id = Some("another identity".into());
    let e = Session::open(store.clone(), so).err().expect("refused");
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    let e = Session::open(store.clone(), session_options("db", TX0 + 2))
        .err()
        .expect("refused");
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("encrypted"), "{e}");
    assert!(
        mem.list("db/")
            .unwrap()
            .iter()
            .all(|o| !o.key.ends_with(layout::LOG_HEAD)),
        "no log was started"
    );
}

fn dt(e: i64, a: &str, v: Value, t: i64, added: bool) -> Datom {
    Datom {
        e,
        a: kw(a),
        v,
        tx: TX0 + t,
        added,
    }
}

fn inst(t: i64) -> Datom {
    dt(
        TX0 + t,
        "db/txInstant",
        Value::Inst(1_700_000_000_000 + t),
        t,
        true,
    )
}

#[test]
fn a_catch_up_retracts_the_no_history_values_removed_while_nobody_captured() {
    let (mem, store) = testing::store();
    // At tx 2 (the full backup): 1's nick n1, 2's nick m1 (:p/nick is :db/noHistory).
    let at2 = vec![
        dt(1, "p/name", Value::str("a"), 1, true),
        dt(1, "p/nick", Value::str("n1"), 1, true),
        dt(2, "p/nick", Value::str("m1"), 1, true),
        inst(1),
        dt(3, "p/name", Value::str("c"), 2, true),
        inst(2),
    ];
    let o = crate::ops::backup::BackupOptions {
        no_history_attrs: [kw("p/nick")].into(),
        max_tx: TX0 + 2,
        ..testing::options("db", 1 << 20, 2)
    };
    testing::backup(&store, o, &at2);
    // Captured live: tx 3 replaced 1's nick (the delta holds the retraction).
    let a = Session::open(store.clone(), session_options("db", TX0 + 2)).unwrap();
    let mark = TxMark {
        before: TX0 + 2,
        after: TX0 + 3,
        committed_ms: crate::clock::now_ms(),
        instant_ms: None,
        caught_up: false,
    };
    let tx3 = vec![
        inst(3),
        dt(1, "p/nick", Value::str("n1"), 3, false),
        dt(1, "p/nick", Value::str("n2"), 3, true),
    ];
    a.writer().append_tx(&mark, &tx3).unwrap();
    a.close(Duration::from_secs(5), "stopped").unwrap();
    // Nobody captured tx 4 (retracted 2's nick: no trace in history) and tx 5 (renamed 3).
    // The next capture catches up from the history at tx 5.
    let b = Session::open(store.clone(), session_options("db", TX0 + 5)).unwrap();
    assert_eq!(b.catch_up_begin(TX0 + 5, None).unwrap(), TX0 + 3);
    let history_at5 = vec![
        dt(1, "p/name", Value::str("a"), 1, true),
        dt(1, "p/nick", Value::str("n2"), 3, true),
        dt(3, "p/name", Value::str("c"), 2, true),
        dt(3, "p/name", Value::str("c"), 5, false),
        dt(3, "p/name", Value::str("c2"), 5, true),
        inst(1),
        inst(2),
        inst(3),
        inst(4),
        inst(5),
    ];
    let mut batch = crate::codec::wire::BatchBuilder::new();
    for d in &history_at5 {
        batch.push(d).unwrap();
    }
    b.catch_up_push(batch.flush()).unwrap();
    b.catch_up_finish().unwrap();
    let log = b.log_id();
    b.close(Duration::from_secs(5), "stopped").unwrap();
    let stored = read::read(&mem, "db", &log).unwrap();
    let caught = log_datoms(&mem, &stored);
    assert!(
        caught.contains(&dt(2, "p/nick", Value::str("m1"), 4, false)),
        "the removed nick is retracted in the window's first transaction: {caught:?}"
    );
    assert!(
        !caught
            .iter()
            .any(|d| d.e == 1 && d.a == kw("p/nick") && !d.added),
        "n2 stays"
    );
    // The chain restores to the source's current state: 1 n2, no nick for 2.
    let restored = testing::restore(&store, "db", &log).unwrap();
    let mut nicks: std::collections::BTreeMap<(i64, String), bool> = Default::default();
    for d in restored.iter().filter(|d| d.a == kw("p/nick")) {
        nicks.insert((d.e, format!("{:?}", d.v)), d.added);
    }
    let current: Vec<_> = nicks
        .into_iter()
        .filter(|(_, added)| *added)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(current, [(1, format!("{:?}", Value::str("n2")))]);
}
