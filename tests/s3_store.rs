//! The S3 backend against a real S3 server: moto on loopback, started by these tests
//! (`scripts/s3-test-server`; the venv comes from `bin/setup`). Faults come from our own
//! proxy between client and server (`support::proxy`). No mocks of the S3 client.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datacamp::ops::backup::BackupSession;
use datacamp::ops::{cleanup, list, verify};
use datacamp::runtime::block_on;
use datacamp::store::s3::S3Store;
use datacamp::store::{conformance, LeftoverKind, Store};
use datacamp::ErrorKind;
use support::fixtures::{fixture, options, source_datoms};
use support::proxy::{FaultProxy, Faults};

const MIB: usize = 1 << 20;

fn raw_keys(store: &S3Store) -> Vec<String> {
    let out = block_on(
        store
            .client()
            .list_objects_v2()
            .bucket(&store.config().bucket)
            .send(),
    )
    .unwrap()
    .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
}

fn keys(objects: Vec<datacamp::store::ObjectMeta>) -> Vec<String> {
    objects.into_iter().map(|o| o.key).collect()
}

#[test]
fn conformance_suite_passes_on_moto_under_two_prefixes() {
    let s = support::moto();
    let direct = support::bucket(&s, "conformance", "");
    // Opened as the JNI layer opens targets, with the default prefix.
    let first =
        datacamp::store::open_target(&support::target(&s.endpoint, "conformance", "")).unwrap();
    conformance::run(first.as_ref());
    let second = support::store(&s.endpoint, "conformance", ":prefix \"/team-b\"");
    conformance::run(&second);
    assert_eq!(
        first.location("db/b1/manifest.edn"),
        "s3://conformance/datahike-backups/db/b1/manifest.edn"
    );
    assert_eq!(second.location("x"), "s3://conformance/team-b/x");
    // Every object sits under one of the two prefixes, and each store sees only its own.
    let raw = raw_keys(&direct);
    let mine = first.list("").unwrap().len();
    let theirs = second.list("").unwrap().len();
    assert_eq!(mine, theirs);
    assert_eq!(raw.len(), mine + theirs);
    assert_eq!(
        raw.iter()
            .filter(|k| k.starts_with("datahike-backups/"))
            .count(),
        mine
    );
    assert_eq!(
        raw.iter().filter(|k| k.starts_with("team-b/")).count(),
        theirs
    );
}

#[test]
fn listing_and_deleting_page_past_1000_keys() {
    let s = support::moto();
    support::bucket(&s, "pagination", "");
    let proxy = FaultProxy::start(s.addr, Faults::default(), 1);
    let store = support::store(&proxy.endpoint(), "pagination", "");
    let expected: Vec<String> = (0..1234)
        .map(|i| format!("big/b{}/chunks/datoms-{i}.fressian.gz", i % 3))
        .collect();
    std::thread::scope(|scope| {
        for part in expected.chunks(160) {
            let store = &store;
            scope.spawn(move || {
                for k in part {
                    store.put(k, k.as_bytes()).unwrap();
                }
            });
        }
    });
    store.put("big2/b0/manifest.edn", b"neighbour").unwrap();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();

    let pages_before = proxy.stats().list_pages;
    let listed = store.list("big/").unwrap();
    assert_eq!(
        proxy.stats().list_pages - pages_before,
        2,
        "1,234 keys take two pages"
    );
    assert_eq!(listed.len(), 1234);
    assert!(listed.iter().all(|o| o.size == o.key.len() as u64));
    assert_eq!(keys(listed), expected_sorted);

    let backups = list::list(&store, "big").unwrap();
    let mut ids: Vec<&str> = backups.iter().map(|b| b.backup_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["b0", "b1", "b2"]);
    assert!(backups.iter().all(|b| !b.completed));

    let deletes_before = proxy
        .request_lines()
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("?delete"))
        .count();
    assert_eq!(store.delete_prefix("big/").unwrap(), 1234);
    let deletes = proxy
        .request_lines()
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("?delete"))
        .count()
        - deletes_before;
    assert_eq!(deletes, 2, "DeleteObjects in batches of 1,000");
    assert!(store.list("big/").unwrap().is_empty());
    assert_eq!(keys(store.list("big").unwrap()), ["big2/b0/manifest.edn"]);
}

#[test]
fn large_objects_go_up_as_concurrent_multipart_uploads_and_read_back_identical() {
    let s = support::moto();
    support::bucket(&s, "multipart", "");
    let proxy = FaultProxy::start(s.addr, Faults::default(), 2);
    let store = support::store(
        &proxy.endpoint(),
        "multipart",
        ":multipart-threshold 6291456 :part-size 5242880 :upload-concurrency 3 \
         :sse :aes256 :storage-class :standard-ia",
    );
    let key = "db/b1/chunks/datoms-0.fressian.gz";
    let big = support::noise(12 * MIB + 12_345, 7);
    store.put(key, &big).unwrap();
    assert_eq!(proxy.stats().upload_parts, 3);
    let got = store.get(key).unwrap();
    assert!(got == big, "read back {} bytes, differing", got.len());
    assert_eq!(store.size(key).unwrap(), Some(big.len() as u64));
    let object = store.object_key(key);
    let head = block_on(
        store
            .client()
            .head_object()
            .bucket("multipart")
            .key(&object)
            .send(),
    )
    .unwrap()
    .unwrap();
    let etag = head.e_tag().unwrap().trim_matches('"').to_owned();
    assert!(etag.ends_with("-3"), "a 3-part upload's ETag, got {etag}");
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );

    // At the threshold: multipart (2 parts); below it: one PutObject, with the options.
    let at = support::noise(6 * MIB, 8);
    store.put("db/b1/at", &at).unwrap();
    assert_eq!(proxy.stats().upload_parts, 5);
    let small = support::noise(6 * MIB - 1, 9);
    store.put("db/b1/small", &small).unwrap();
    assert_eq!(proxy.stats().upload_parts, 5);
    assert!(store.get("db/b1/at").unwrap() == at);
    assert!(store.get("db/b1/small").unwrap() == small);
    let head = block_on(
        store
            .client()
            .head_object()
            .bucket("multipart")
            .key(store.object_key("db/b1/small"))
            .send(),
    )
    .unwrap()
    .unwrap();
    assert!(!head.e_tag().unwrap().contains('-'));
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    assert_eq!(
        head.storage_class().map(|s| s.as_str()),
        Some("STANDARD_IA")
    );
    assert!(support::uploads(&store).is_empty());
}

#[test]
fn a_failed_multipart_upload_is_aborted() {
    let s = support::moto();
    let direct = support::bucket(&s, "multipart-abort", "");
    let proxy = FaultProxy::start(
        s.addr,
        Faults {
            deny_matching: Some("partNumber=2&".into()),
            ..Faults::default()
        },
        3,
    );
    let store = support::store(
        &proxy.endpoint(),
        "multipart-abort",
        ":multipart-threshold 5242880 :part-size 5242880 :upload-concurrency 1",
    );
    let key = "db/b1/chunks/datoms-0.fressian.gz";
    let err = store.put(key, &support::noise(11 * MIB, 10)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied, "{err}");
    assert_eq!(err.op, "upload part");
    assert_eq!(
        err.key.as_deref(),
        Some("s3://multipart-abort/datahike-backups/db/b1/chunks/datoms-0.fressian.gz")
    );
    assert_eq!(proxy.stats().denied, 1, "a denial is not retried");
    let aborts = proxy
        .request_lines()
        .iter()
        .filter(|l| l.starts_with("DELETE ") && l.contains("uploadId="))
        .count();
    assert_eq!(aborts, 1);
    assert!(support::uploads(&direct).is_empty());
    assert_eq!(direct.size(key).unwrap(), None);
}

#[test]
fn a_backup_through_a_faulty_network_completes_and_verifies() {
    let s = support::moto();
    support::bucket(&s, "faults", "");
    let faults = Faults {
        slowdown: 0.05,
        internal_error: 0.04,
        drop_before: 0.04,
        drop_mid: 0.03,
        stall: 0.02,
        stall_for: Duration::from_millis(300),
        hang: 0.02,
        hang_for: Duration::from_millis(2500),
        ..Faults::default()
    };
    let proxy = FaultProxy::start(s.addr, faults, 20_251_126);
    let retry = ":max-retries 12 :retry-base-ms 5 :retry-max-ms 200 :timeout-ms 1000";
    let store: Arc<dyn Store> = Arc::new(support::store(&proxy.endpoint(), "faults", retry));

    let fx = fixture("kitchen-sink");
    let tmp = tempfile::tempdir().unwrap();
    let mut session =
        BackupSession::open(store.clone(), options(&fx, "fx", 2048, tmp.path())).unwrap();
    for d in source_datoms(&fx) {
        session.push(d).unwrap();
    }
    let result = session.finish().unwrap();
    let id = result.manifest.backup_id.clone();
    assert!(
        result.manifest.chunks.len() > 20,
        "{} chunks",
        result.manifest.chunks.len()
    );

    // Multipart uploads under the same faults.
    let multipart = support::store(
        &proxy.endpoint(),
        "faults",
        &format!("{retry} :multipart-threshold 5242880 :part-size 5242880"),
    );
    let big = support::noise(16 * MIB + 1, 11);
    multipart.put("fx/extra/big", &big).unwrap();
    assert!(multipart.get("fx/extra/big").unwrap() == big);
    multipart.delete("fx/extra/big").unwrap();

    let report = verify::verify(store.as_ref(), "fx", &id, true, None).unwrap();
    assert!(report.success(), "{report:?}");
    assert_eq!(report.datoms_verified, Some(result.manifest.datom_count));
    let listed = list::list(store.as_ref(), "fx").unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].completed);

    let st = proxy.stats();
    eprintln!("fault proxy: {st:?}");
    assert!(st.requests > 150, "{st:?}");
    assert!(
        st.faults() * 10 >= st.requests,
        "about a fifth of requests faulted: {st:?}"
    );
    for (what, n) in [
        ("slowdowns", st.slowdowns),
        ("internal errors", st.internal_errors),
        ("drops before", st.drops_before),
        ("drops mid-answer", st.drops_mid),
        ("stalls", st.stalls),
        ("hangs", st.hangs),
    ] {
        assert!(n > 0, "no {what}: {st:?}");
    }
}

#[test]
fn with_the_server_gone_a_backup_fails_within_seconds_and_nothing_lists_complete() {
    let s = support::moto();
    let direct = support::bucket(&s, "gone", "");
    let mut proxy = FaultProxy::start(s.addr, Faults::default(), 4);
    let store: Arc<dyn Store> = Arc::new(support::store(
        &proxy.endpoint(),
        "gone",
        ":max-retries 3 :retry-base-ms 10 :retry-max-ms 100 :connect-timeout-ms 1000 :timeout-ms 2000",
    ));
    let fx = fixture("kitchen-sink");
    let tmp = tempfile::tempdir().unwrap();
    let mut session =
        BackupSession::open(store.clone(), options(&fx, "fx", 4096, tmp.path())).unwrap();
    let id = session.backup_id().to_owned();
    for d in source_datoms(&fx) {
        session.push(d).unwrap();
    }
    proxy.vanish();
    let started = Instant::now();
    let err = session.finish().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("gave up on put object after 4 attempts"),
        "{text}"
    );
    assert!(
        text.contains(&format!("s3://gone/datahike-backups/fx/{id}/")),
        "{text}"
    );
    assert!(err.hint.is_some());

    // Read directly from the server: the backup is there and incomplete.
    let listed = list::list(&direct, "fx").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].backup_id, id);
    assert!(!listed[0].completed);
    let names: Vec<String> = keys(direct.list(&format!("fx/{id}/")).unwrap());
    assert!(
        !names
            .iter()
            .any(|k| k.ends_with("/manifest.edn") || k.ends_with("/complete.marker")),
        "{names:?}"
    );

    // A new backup cannot even start.
    let started = Instant::now();
    let err = BackupSession::open(store, options(&fx, "fx", 4096, tmp.path()))
        .err()
        .expect("no server, no backup");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("connection failed"), "{err}");
}

#[test]
fn permanent_failures_fail_fast_without_retries_and_name_no_secret() {
    let s = support::moto();
    let proxy = FaultProxy::start(s.addr, Faults::default(), 5);
    let secret = "wJalrXUtnFEMI-not-a-real-secret";
    // Default retry policy (8 attempts): a retried failure would take seconds.
    let store = support::store(
        &proxy.endpoint(),
        "no-such-bucket",
        &format!(":access-key-id \"AKIDTEST\" :secret-access-key \"{secret}\" :session-token \"tok-secret\""),
    );
    let started = Instant::now();
    let err = store.put("db/b1/config.edn", b"{}").unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(err.op, "put object");
    assert_eq!(
        err.key.as_deref(),
        Some("s3://no-such-bucket/datahike-backups/db/b1/config.edn")
    );
    assert!(err.message.starts_with("NoSuchBucket"), "{err}");
    assert!(err
        .hint
        .as_deref()
        .unwrap()
        .contains("bucket does not exist"));
    assert_eq!(proxy.stats().requests, 1);
    let err = store.list("db/").unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(proxy.stats().requests, 2);

    proxy.set_faults(Faults {
        deny_matching: Some(String::new()),
        ..Faults::default()
    });
    let started = Instant::now();
    let err = store.get("db/b1/config.edn").unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind, ErrorKind::Denied, "{err}");
    assert_eq!(err.kind.keyword(), "access-denied");
    assert!(err.message.starts_with("AccessDenied"), "{err}");
    assert!(err.hint.as_deref().unwrap().contains("credentials"));
    assert_eq!(proxy.stats().requests, 3);
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        format!("{:?}", store.config()),
    ] {
        assert!(
            !shown.contains(secret) && !shown.contains("tok-secret"),
            "{shown}"
        );
    }
}

#[test]
fn stale_multipart_uploads_are_aborted_under_the_prefix_only() {
    let s = support::moto();
    let store = support::bucket(&s, "stale", "");
    for key in [
        "datahike-backups/db1/b1/chunks/datoms-0.fressian.gz",
        "datahike-backups/db1/b2/chunks/datoms-3.fressian.gz",
        "datahike-backups/db10/b1/chunks/datoms-0.fressian.gz",
        "elsewhere/db1/b1/chunks/datoms-0.fressian.gz",
    ] {
        block_on(
            store
                .client()
                .create_multipart_upload()
                .bucket("stale")
                .key(key)
                .send(),
        )
        .unwrap()
        .unwrap();
    }
    assert_eq!(support::uploads(&store).len(), 4);
    let mut found: Vec<String> = store
        .leftovers("db1/")
        .unwrap()
        .into_iter()
        .map(|l| {
            assert!(matches!(l.kind, LeftoverKind::Upload { .. }), "{l:?}");
            l.key
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "db1/b1/chunks/datoms-0.fressian.gz",
            "db1/b2/chunks/datoms-3.fressian.gz"
        ]
    );
    // moto reports every upload as initiated on 2010-11-10: kept by a 20-year cutoff.
    let twenty_years = Duration::from_secs(20 * 365 * 86_400);
    let report = cleanup::cleanup_incomplete(&store, "db1", twenty_years).unwrap();
    assert_eq!((report.uploads_aborted, report.leftovers_kept), (0, 2));
    assert_eq!(support::uploads(&store).len(), 4);

    let report = cleanup::cleanup_incomplete(&store, "db1", Duration::ZERO).unwrap();
    assert_eq!(
        (report.uploads_aborted, report.leftovers_kept),
        (2, 0),
        "{report:?}"
    );
    let mut left: Vec<String> = support::uploads(&store)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "datahike-backups/db10/b1/chunks/datoms-0.fressian.gz",
            "elsewhere/db1/b1/chunks/datoms-0.fressian.gz"
        ]
    );
}
