//! Continuous-backup logs on a real S3 server (moto on loopback) through the fault proxy:
//! an outage (the proxy refusing connections) while transactions go on, and "everything
//! after tx t" as one listing from a start key.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datacamp::log::read;
use datacamp::log::writer::{Appended, LogWriter, TxMark, WriterOptions};
use datacamp::model::{Attr, Datom, Name, Value, TX0};
use datacamp::ops::check;
use datacamp::repo::layout;
use datacamp::repo::meta::write_edn;
use datacamp::store::Store;
use datacamp::ErrorKind;
use support::proxy::{FaultProxy, Faults};

fn kw(s: &str) -> Attr {
    Attr::Keyword(Name::parse(s))
}

fn tx(t: i64) -> (TxMark, Vec<Datom>) {
    let id = TX0 + t;
    let ds = vec![
        Datom {
            e: id,
            a: kw("db/txInstant"),
            v: Value::Inst(1_700_000_000_000 + t),
            tx: id,
            added: true,
        },
        Datom {
            e: t,
            a: kw("p/name"),
            v: Value::String(format!("person {t}")),
            tx: id,
            added: true,
        },
    ];
    let mark = TxMark {
        before: id - 1,
        after: id,
        committed_ms: datacamp::clock::now_ms(),
        instant_ms: None,
        caught_up: false,
    };
    (mark, ds)
}

fn head(store: &dyn Store, log: &str) {
    let h = datacamp::log::head::LogHead {
        log_id: log.into(),
        database_id: "db".into(),
        parent: "base".into(),
        base: "base".into(),
        after_tx: TX0,
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
    write_edn(
        store,
        &layout::backup_file("db", log, layout::LOG_HEAD),
        &h.to_value(),
    )
    .unwrap();
}

fn options() -> WriterOptions {
    WriterOptions {
        database_id: "db".into(),
        flush_interval: Duration::from_millis(100),
        tx_instant: Some(kw("db/txInstant")),
        no_history_attrs: HashSet::new(),
        max_retry_delay: Duration::from_millis(500),
        ..WriterOptions::default()
    }
}

#[test]
fn an_outage_delays_segments_and_loses_none() {
    let s = support::moto();
    support::bucket(&s, "log-outage", "");
    let proxy = FaultProxy::start(s.addr, Faults::default(), 7);
    // Few attempts per upload: the writer's own retries take over and show the outage.
    let store: Arc<dyn Store> = Arc::new(support::store(
        &proxy.endpoint(),
        "log-outage",
        ":max-retries 1 :retry-base-ms 10 :timeout-ms 2000 :connect-timeout-ms 500",
    ));
    head(store.as_ref(), "l1");
    let w = LogWriter::start(store.clone(), None, options(), "l1", TX0).unwrap();
    let mut t = 0;
    let append = |w: &LogWriter, t: &mut i64, until: Instant| {
        while Instant::now() < until {
            *t += 1;
            let (m, ds) = tx(*t);
            assert_eq!(w.append_tx(&m, &ds).unwrap(), Appended::Accepted);
            w.tick().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    append(&w, &mut t, Instant::now() + Duration::from_millis(600));
    let before = w.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(before.durable_through, TX0 + t);
    proxy.set_refusing(true);
    let down = Instant::now();
    append(&w, &mut t, down + Duration::from_secs(3));
    let during = w.status();
    assert!(during.outage_since_ms.is_some(), "{during:?}");
    assert!(during.pending_segments > 5, "{during:?}");
    assert!(during.lag_ms >= 2_000, "{during:?}");
    assert!(during.durable_through < during.captured_through);
    let err = during.last_error().cloned().unwrap();
    assert_eq!(err.kind, ErrorKind::Transient, "{err:?}");
    proxy.set_refusing(false);
    append(&w, &mut t, Instant::now() + Duration::from_millis(300));
    let after = w.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(after.durable_through, TX0 + t);
    assert_eq!((after.outage_since_ms, after.pending_segments), (None, 0));
    let log = read::read(store.as_ref(), "db", "l1").unwrap();
    assert!(log.problems.is_empty(), "{:?}", log.problems);
    assert_eq!(log.through, TX0 + t);
    let names: Vec<i64> = log
        .segments
        .iter()
        .flat_map(|seg| {
            check::fetch_checked(store.as_ref(), &log.prefix, &seg.chunk_meta(), None)
                .unwrap()
                .datoms
        })
        .filter(|d| d.a == kw("p/name"))
        .map(|d| d.e)
        .collect();
    assert_eq!(
        names,
        (1..=t).collect::<Vec<_>>(),
        "every transaction once, in order"
    );
    w.close(Duration::from_secs(10), "stopped").unwrap();
}

#[test]
fn everything_after_a_transaction_is_one_listing() {
    let s = support::moto();
    support::bucket(&s, "log-listing", "");
    let proxy = FaultProxy::start(s.addr, Faults::default(), 8);
    let store: Arc<dyn Store> = Arc::new(support::store(&proxy.endpoint(), "log-listing", ""));
    head(store.as_ref(), "l1");
    let mut o = options();
    o.flush_interval = Duration::from_secs(3600);
    let w = LogWriter::start(store.clone(), None, o, "l1", TX0).unwrap();
    // 1,050 one-transaction segments: more than one listing page of 1,000.
    for t in 1..=1_050 {
        let (m, ds) = tx(t);
        w.append_tx(&m, &ds).unwrap();
        w.seal().unwrap();
    }
    assert_eq!(
        w.flush(Duration::from_secs(120)).unwrap().durable_through,
        TX0 + 1_050
    );
    let pages = || proxy.stats().list_pages;
    let p0 = pages();
    let all = read::read(store.as_ref(), "db", "l1").unwrap();
    assert_eq!(all.segments.len(), 1_050);
    assert!(
        pages() - p0 >= 2,
        "a whole log takes {} pages",
        pages() - p0
    );
    let p1 = pages();
    let tail = read::segments_after(store.as_ref(), "db", "l1", TX0 + 1_000).unwrap();
    assert_eq!(pages() - p1, 1, "one listing page from the start key");
    let after: Vec<i64> = tail.iter().map(|s| s.name.after - TX0).collect();
    assert_eq!(after, (1_000..1_050).collect::<Vec<_>>());
    let lines = proxy.request_lines();
    assert!(
        lines.iter().rev().any(|l| l.contains("start-after=")),
        "S3's StartAfter is used"
    );
    w.close(Duration::from_secs(10), "stopped").unwrap();
}
