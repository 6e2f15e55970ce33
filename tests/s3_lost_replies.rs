//! "Executed, reply lost" on every S3 request the core retries, against moto through the
//! fault proxy (`support::proxy::LostReply`): the proxy forwards the request, lets the
//! server execute it, then closes the connection without a byte of the answer, so the
//! client's retry meets the first attempt's effect. Every operation must end exactly as it
//! does without the fault (compared with a run without faults), and leave nothing behind.
//!
//! Each case asserts how many replies its rules withheld (a rule that never fired would
//! prove nothing) and prints it: `lost replies: <case>: n`.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use datacamp::model::{Attr, Datom, Name, Value};
use datacamp::ops::backup::{BackupOptions, BackupResult, BackupSession};
use datacamp::ops::cleanup::{cleanup_incomplete, CleanupReport};
use datacamp::ops::restore::{RestoreOptions, RestoreSession};
use datacamp::ops::{list, verify};
use datacamp::pipeline::chunk::sha256_hex;
use datacamp::repo::lock::ResumeLock;
use datacamp::repo::manifest::{ChunkMeta, Manifest};
use datacamp::repo::meta::read_edn;
use datacamp::runtime::block_on;
use datacamp::store::s3::S3Store;
use datacamp::store::Store;
use datacamp::{Error, ErrorKind};
use support::fixtures::{fixture, options, source_datoms};
use support::proxy::{Answer, FaultProxy, Faults, LostReply};

/// Few, fast retries: every lost reply costs one retry.
const RETRY: &str = ":max-retries 4 :retry-base-ms 5 :retry-max-ms 50 :timeout-ms 20000";
/// Chunk size for the kitchen-sink fixture: a handful of chunks.
const CHUNK: usize = 8192;
/// Multipart settings: objects of 5 MiB and more go up in 5 MiB parts.
const MULTIPART: &str = ":multipart-threshold 5242880 :part-size 5242880 :upload-concurrency 2";

/// moto, a bucket, and two stores on it: `direct` (no proxy, for setting up and reading
/// back) and `faulty` (through the fault proxy).
struct Rig {
    _server: Arc<support::MotoServer>,
    direct: Arc<S3Store>,
    proxy: FaultProxy,
    faulty: Arc<dyn Store>,
}

fn rig(bucket: &str, extra: &str) -> Rig {
    let server = support::moto();
    let direct = Arc::new(support::bucket(&server, bucket, extra));
    let proxy = FaultProxy::start(server.addr, Faults::default(), 15);
    let faulty: Arc<dyn Store> = Arc::new(support::store(
        &proxy.endpoint(),
        bucket,
        &format!("{RETRY} {extra}"),
    ));
    Rig {
        _server: server,
        direct,
        proxy,
        faulty,
    }
}

impl Rig {
    fn direct(&self) -> Arc<dyn Store> {
        self.direct.clone()
    }

    /// Arm `rules` (their counts start at 0).
    fn lose(&self, rules: Vec<LostReply>) {
        self.proxy.set_faults(Faults {
            lost_replies: rules,
            ..Faults::default()
        });
    }

    /// Check that each rule withheld exactly `want[i]` replies; report and return the sum.
    fn lost(&self, case: &str, want: &[u64]) -> u64 {
        let got = self.proxy.lost_by_rule();
        eprintln!("lost replies: {case}: {got:?}");
        assert_eq!(got, want, "{case}: replies withheld per rule");
        got.iter().sum()
    }

    /// The request lines the proxy saw that start with `method` and contain `pattern`.
    fn requests(&self, method: &str, pattern: &str) -> usize {
        self.proxy
            .request_lines()
            .iter()
            .filter(|l| l.starts_with(&format!("{method} ")) && l.contains(pattern))
            .count()
    }
}

fn kitchen_sink() -> &'static Value {
    static FX: OnceLock<Value> = OnceLock::new();
    FX.get_or_init(|| fixture("kitchen-sink"))
}

fn backup_opts(db: &str, tmp: &std::path::Path) -> BackupOptions {
    options(kitchen_sink(), db, CHUNK, tmp)
}

fn run_backup(store: &Arc<dyn Store>, opts: BackupOptions) -> datacamp::Result<BackupResult> {
    let mut s = BackupSession::open(store.clone(), opts)?;
    for d in source_datoms(kitchen_sink()) {
        s.push(d)?;
    }
    s.finish()
}

fn backup(store: &Arc<dyn Store>, db: &str) -> datacamp::Result<BackupResult> {
    let tmp = tempfile::tempdir().unwrap();
    run_backup(store, backup_opts(db, tmp.path()))
}

fn resume(store: &Arc<dyn Store>, db: &str, id: &str) -> datacamp::Result<BackupResult> {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = backup_opts(db, tmp.path());
    opts.backup_id = Some(id.to_owned());
    opts.resume = true;
    run_backup(store, opts)
}

/// What a backup left in the store, comparable across backups (ids and times left out).
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Every object under the backup's folder, relative to it.
    names: Vec<String>,
    /// The manifest's chunk entries (without the full S3 key, which names the backup).
    chunks: Vec<ChunkMeta>,
    /// SHA-256 of every stored chunk, by chunk id.
    stored: BTreeMap<u64, String>,
    /// Unfinished multipart uploads under the backup's folder.
    uploads: usize,
    /// Lists as complete, and verifies deeply.
    complete: bool,
    verified: Option<u64>,
}

fn outcome(direct: &S3Store, db: &str, id: &str) -> Outcome {
    let prefix = format!("{db}/{id}/");
    let names = direct
        .list(&prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.key[prefix.len()..].to_owned())
        .collect();
    let manifest =
        Manifest::from_value(&read_edn(direct, &format!("{prefix}manifest.edn")).unwrap()).unwrap();
    let stored = manifest
        .chunks
        .iter()
        .map(|c| {
            let bytes = direct.get(&format!("{prefix}{}", c.key)).unwrap();
            (c.id, sha256_hex(&bytes))
        })
        .collect();
    let chunks = manifest
        .chunks
        .into_iter()
        .map(|c| ChunkMeta { s3_key: None, ..c })
        .collect();
    let full = direct.object_key(&prefix);
    let uploads = support::uploads(direct)
        .iter()
        .filter(|(k, _)| k.starts_with(&full))
        .count();
    let complete = list::list(direct, db)
        .unwrap()
        .iter()
        .any(|b| b.backup_id == id && b.completed);
    let report = verify::verify(direct, db, id, true, None).unwrap();
    Outcome {
        names,
        chunks,
        stored,
        uploads,
        complete,
        verified: report
            .success()
            .then_some(report.datoms_verified.unwrap_or(0)),
    }
}

fn locks(direct: &S3Store, db: &str, id: &str) -> Vec<String> {
    direct
        .list(&format!("{db}/{id}/lock-"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Turn a complete backup into one killed after its first `keep` chunks: manifest, marker
/// and the later chunks removed.
fn interrupt(direct: &S3Store, db: &str, id: &str, keep: u64) {
    let prefix = format!("{db}/{id}/");
    direct.delete(&format!("{prefix}manifest.edn")).unwrap();
    direct.delete(&format!("{prefix}complete.marker")).unwrap();
    for o in direct.list(&format!("{prefix}chunks/")).unwrap() {
        let name = o.key.rsplit("datoms-").next().unwrap();
        let chunk: u64 = name.split('.').next().unwrap().parse().unwrap();
        if chunk >= keep {
            direct.delete(&o.key).unwrap();
        }
    }
}

/// A lock as a process that died long ago left it: another owner, a lease in the past.
fn dead_lock(direct: &S3Store, db: &str, id: &str, n: u64) {
    let edn =
        "{:lock/owner \"dead-process\" :lock/expires-at #inst \"2001-01-01T00:00:00.000-00:00\"}";
    direct
        .put(&format!("{db}/{id}/lock-{n}.edn"), edn.as_bytes())
        .unwrap();
}

/// A backup of the fixture written without faults: its id and outcome.
fn direct_backup(rig: &Rig, db: &str) -> (String, Outcome) {
    let r = backup(&rig.direct(), db).unwrap();
    let id = r.manifest.backup_id;
    let o = outcome(&rig.direct, db, &id);
    (id, o)
}

#[test]
fn a_backup_ends_as_without_the_fault_whichever_put_or_list_loses_its_reply() {
    let rig = rig("lost-backup", "");
    let (_, reference) = direct_backup(&rig, "ref");
    assert!(reference.chunks.len() >= 4, "{reference:?}");
    assert!(reference.complete && reference.verified.is_some());
    let cases: Vec<(&str, Vec<LostReply>)> = vec![
        (
            "list (new backup's folder)",
            vec![LostReply::nth("GET", "list-type=2", 1)],
        ),
        (
            "put config.edn",
            vec![LostReply::nth("PUT", "/config.edn", 1)],
        ),
        (
            "put checkpoint.edn",
            vec![LostReply::nth("PUT", "/checkpoint.edn", 2)],
        ),
        (
            "put chunk",
            vec![LostReply::nth("PUT", "/chunks/datoms-1.fressian.gz", 1)],
        ),
        (
            "put manifest.edn",
            vec![LostReply::nth("PUT", "/manifest.edn", 1)],
        ),
        (
            "put complete.marker",
            vec![LostReply::nth("PUT", "/complete.marker", 1)],
        ),
        (
            "every put, once each",
            vec![
                LostReply::nth("PUT", "/config.edn", 1),
                LostReply::nth("PUT", "/chunks/datoms-0.fressian.gz", 1),
                LostReply::nth("PUT", "/checkpoint.edn", 3),
                LostReply::nth("PUT", "/manifest.edn", 1),
                LostReply::nth("PUT", "/complete.marker", 1),
            ],
        ),
    ];
    let mut total = 0;
    for (i, (case, rules)) in cases.into_iter().enumerate() {
        let want = vec![1; rules.len()];
        rig.lose(rules);
        let db = format!("b{i}");
        let r = backup(&rig.faulty, &db).unwrap_or_else(|e| panic!("{case}: {e}"));
        total += rig.lost(case, &want);
        assert_eq!(
            outcome(&rig.direct, &db, &r.manifest.backup_id),
            reference,
            "{case}"
        );
        let listed = list::list(rig.direct.as_ref(), &db).unwrap();
        assert_eq!(listed.len(), 1, "{case}: one backup, nothing else");
    }
    eprintln!("lost replies: backup total: {total}");
}

/// Datoms of about 1 MiB each (hex of noise, incompressible at level 0), so that 5 of them
/// make a chunk of more than 5 MiB: a multipart upload.
fn big_datoms() -> Vec<Datom> {
    let body = Attr::Keyword(Name::parse("doc/body"));
    (1..=12)
        .map(|e| Datom {
            e,
            a: body.clone(),
            v: Value::String(hex::encode(support::noise(512 * 1024, e as u64))),
            tx: 536_870_913,
            added: true,
        })
        .collect()
}

fn big_backup(store: &Arc<dyn Store>, db: &str) -> datacamp::Result<BackupResult> {
    let tmp = tempfile::tempdir().unwrap();
    let o = datacamp::codec::edn::parse(&format!(
        "{{:database-id \"{db}\" :chunk-size 6291456 :compression-level 0 :parallel 2 :tmp-dir {:?}}}",
        tmp.path().display().to_string()
    ))
    .unwrap();
    let mut s = BackupSession::open(store.clone(), BackupOptions::from_edn(&o).unwrap())?;
    for d in big_datoms() {
        s.push(d)?;
    }
    s.finish()
}

#[test]
fn multipart_create_part_and_complete_survive_lost_replies() {
    let rig = rig("lost-multipart", MULTIPART);
    let r = big_backup(&rig.direct(), "ref").unwrap();
    let reference = outcome(&rig.direct, "ref", &r.manifest.backup_id);
    let multipart: Vec<&ChunkMeta> = reference
        .chunks
        .iter()
        .filter(|c| c.size_bytes >= 5 << 20)
        .collect();
    assert!(multipart.len() >= 2, "{:?}", reference.chunks);
    let cases: Vec<(&str, Vec<LostReply>)> = vec![
        (
            "create multipart upload",
            vec![LostReply::nth("POST", "?uploads", 1)],
        ),
        (
            "upload part",
            vec![LostReply::nth("PUT", "partNumber=2&", 1)],
        ),
        (
            "complete multipart upload",
            vec![LostReply::nth("POST", "uploadId=", 1)],
        ),
        (
            "create, part and complete",
            vec![
                LostReply::nth("POST", "?uploads", 2),
                LostReply::nth("PUT", "partNumber=1&", 1),
                LostReply::nth("POST", "uploadId=", 2),
            ],
        ),
    ];
    let mut total = 0;
    for (i, (case, rules)) in cases.into_iter().enumerate() {
        let want = vec![1; rules.len()];
        rig.lose(rules);
        let db = format!("m{i}");
        let r = big_backup(&rig.faulty, &db).unwrap_or_else(|e| panic!("{case}: {e}"));
        total += rig.lost(case, &want);
        let got = outcome(&rig.direct, &db, &r.manifest.backup_id);
        assert_eq!(got, reference, "{case}");
        eprintln!(
            "{case}: {} completes, {} HEADs of chunks",
            rig.requests("POST", "uploadId="),
            rig.requests("HEAD", "/chunks/")
        );
        assert_eq!(
            support::uploads(&rig.direct)
                .iter()
                .filter(|(k, _)| k.contains(&format!("/{db}/")))
                .count(),
            0,
            "{case}: no upload left behind (the lost create's included)"
        );
    }
    eprintln!("lost replies: multipart total: {total}");
}

#[test]
fn a_retried_complete_answered_no_such_upload_is_checked_by_size_and_etag() {
    let rig = rig("lost-complete", MULTIPART);
    let key = "db/b1/chunks/datoms-0.fressian.gz";
    let no_such_upload = |nth| Answer {
        rule: LostReply::nth("POST", "uploadId=", nth),
        status: "404 Not Found",
        code: "NoSuchUpload",
    };
    // The complete is executed and its reply lost; the retry is answered as some
    // S3-compatible stores answer it (moto, like AWS, would answer 200 again).
    rig.proxy.set_faults(Faults {
        lost_replies: vec![LostReply::nth("POST", "uploadId=", 1)],
        answers: vec![no_such_upload(2)],
        ..Faults::default()
    });
    let bytes = support::noise((11 << 20) + 7, 21);
    rig.faulty.put(key, &bytes).unwrap();
    rig.lost(
        "complete multipart upload, retry answered NoSuchUpload",
        &[1],
    );
    assert_eq!(rig.proxy.answered_by_rule(), [1]);
    assert_eq!(rig.requests("HEAD", key), 1, "the object was checked");
    assert!(rig.direct.get(key).unwrap() == bytes);
    assert!(support::uploads(&rig.direct).is_empty());

    // Same size, other bytes, and the complete never reached the server (500, then
    // NoSuchUpload): the object found is the old one, whose ETag is not ours. An error; the
    // upload is aborted and the old object stays.
    rig.proxy.set_faults(Faults {
        answers: vec![
            Answer {
                rule: LostReply::nth("POST", "uploadId=", 1),
                status: "500 Internal Server Error",
                code: "InternalError",
            },
            no_such_upload(2),
        ],
        ..Faults::default()
    });
    let other = support::noise((11 << 20) + 7, 22);
    let err = rig.faulty.put(key, &other).unwrap_err();
    assert_eq!(rig.proxy.answered_by_rule(), [1, 1]);
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(err.code(), Some("NoSuchUpload"), "{err}");
    assert_eq!(rig.requests("HEAD", key), 2, "the object was checked again");
    assert!(
        rig.direct.get(key).unwrap() == bytes,
        "the old object stays"
    );
    assert!(
        support::uploads(&rig.direct).is_empty(),
        "the upload was aborted"
    );
}

#[test]
fn a_lost_abort_reply_still_aborts_and_reports_the_real_failure() {
    let rig = rig("lost-abort", MULTIPART);
    rig.proxy.set_faults(Faults {
        deny_matching: Some("partNumber=2&".into()),
        lost_replies: vec![LostReply::nth("DELETE", "uploadId=", 1)],
        ..Faults::default()
    });
    let key = "db/b1/chunks/datoms-0.fressian.gz";
    let err = rig
        .faulty
        .put(key, &support::noise(11 << 20, 3))
        .unwrap_err();
    let n = rig.lost("abort multipart upload", &[1]);
    assert_eq!(n, 1);
    assert_eq!(err.kind, ErrorKind::Denied, "{err}");
    assert!(
        !err.message.contains("aborting"),
        "the abort succeeded: {err}"
    );
    assert_eq!(
        rig.requests("DELETE", "uploadId="),
        2,
        "the abort was retried"
    );
    assert!(support::uploads(&rig.direct).is_empty());
    assert_eq!(rig.direct.size(key).unwrap(), None);
}

/// The datoms a restore hands out, each in its `Debug` form (so that NaN equals NaN).
fn restored(store: &Arc<dyn Store>, db: &str, id: &str, verify_first: bool) -> Vec<String> {
    let opts = RestoreOptions {
        database_id: db.into(),
        backup_id: id.into(),
        verify_first,
        ..RestoreOptions::default()
    };
    let mut session = RestoreSession::open(store.clone(), opts).unwrap();
    let out = session.read_to_end().unwrap();
    out.iter().map(|d: &Datom| format!("{d:?}")).collect()
}

#[test]
fn restore_verify_and_list_read_the_same_through_lost_replies() {
    let rig = rig("lost-reads", "");
    let (id, _) = direct_backup(&rig, "db");
    let expected = restored(&rig.direct(), "db", &id, false);
    assert!(expected.len() > 500, "{}", expected.len());
    let mut total = 0;
    for (case, verify_first, rules) in [
        (
            "restore: get manifest, list, get chunks",
            false,
            vec![
                LostReply::nth("GET", "/manifest.edn", 1),
                LostReply::nth("GET", "list-type=2", 1),
                LostReply::nth("GET", "/chunks/datoms-0.fressian.gz", 1),
                LostReply::nth("GET", "/chunks/datoms-3.fressian.gz", 1),
            ],
        ),
        (
            "restore verify-first: head marker, get chunks twice",
            true,
            vec![
                LostReply::nth("HEAD", "/complete.marker", 1),
                LostReply::nth("GET", "/chunks/datoms-1.fressian.gz", 1),
                LostReply::nth("GET", "/chunks/datoms-1.fressian.gz", 3),
            ],
        ),
    ] {
        let want = vec![1; rules.len()];
        rig.lose(rules);
        let got = restored(&rig.faulty, "db", &id, verify_first);
        assert!(got == expected, "{case}: the restored datoms differ");
        total += rig.lost(case, &want);
    }

    let direct_report = verify::verify(rig.direct.as_ref(), "db", &id, true, None).unwrap();
    assert!(direct_report.success());
    rig.lose(vec![
        LostReply::nth("GET", "list-type=2", 1),
        LostReply::nth("GET", "/manifest.edn", 1),
        LostReply::nth("GET", "/chunks/datoms-2.fressian.gz", 1),
    ]);
    let report = verify::verify(rig.faulty.as_ref(), "db", &id, true, None).unwrap();
    total += rig.lost("verify: list, get manifest, get chunk", &[1, 1, 1]);
    assert_eq!(report, direct_report);

    let direct_list = list::list(rig.direct.as_ref(), "db").unwrap();
    rig.lose(vec![
        LostReply::nth("GET", "list-type=2", 1),
        LostReply::nth("GET", "/manifest.edn", 1),
    ]);
    let listed = list::list(rig.faulty.as_ref(), "db").unwrap();
    total += rig.lost("list-backups: list, get manifest", &[1, 1]);
    assert_eq!(listed, direct_list);
    eprintln!("lost replies: reads total: {total}");
}

#[test]
fn a_listing_of_two_pages_survives_a_lost_second_page() {
    let rig = rig("lost-pages", "");
    let keys: Vec<String> = (0..1100)
        .map(|i| format!("pg/b{}/chunks/datoms-{i}.fressian.gz", i % 2))
        .collect();
    std::thread::scope(|scope| {
        for part in keys.chunks(200) {
            let direct = rig.direct.clone();
            scope.spawn(move || {
                for k in part {
                    direct.put(k, b"x").unwrap();
                }
            });
        }
    });
    let expected = rig.direct.list("pg/").unwrap();
    rig.lose(vec![
        LostReply::nth("GET", "list-type=2", 2),
        LostReply::nth("GET", "continuation-token=", 2),
    ]);
    let listed = rig.faulty.list("pg/").unwrap();
    rig.lost("list: second page twice", &[1, 1]);
    assert_eq!(listed.len(), 1100);
    assert_eq!(listed, expected);
}

#[test]
fn resume_ends_as_without_the_fault_whichever_request_loses_its_reply() {
    let rig = rig("lost-resume", "");
    let (_, reference) = direct_backup(&rig, "ref");
    let cases: Vec<(&str, bool, Vec<LostReply>)> = vec![
        // The case: the lock was created, the reply lost, the retry got 412.
        (
            "lock create",
            false,
            vec![LostReply::nth("PUT", "/lock-0.edn", 1)],
        ),
        (
            "lock create after a dead holder, and the dead lock's delete",
            true,
            vec![
                LostReply::nth("PUT", "/lock-1.edn", 1),
                LostReply::nth("DELETE", "/lock-0.edn", 1),
            ],
        ),
        (
            "lock release",
            false,
            vec![LostReply::nth("DELETE", "/lock-0.edn", 1)],
        ),
        (
            "lock read and listing",
            true,
            vec![
                LostReply::nth("GET", "/lock-0.edn", 1),
                LostReply::nth("GET", "%2Flock-", 1),
            ],
        ),
        (
            "get a stored chunk",
            false,
            vec![LostReply::nth("GET", "/chunks/datoms-0.fressian.gz", 1)],
        ),
        (
            "put checkpoint",
            false,
            vec![LostReply::nth("PUT", "/checkpoint.edn", 1)],
        ),
        (
            "put a chunk",
            false,
            vec![LostReply::nth("PUT", "/chunks/datoms-3.fressian.gz", 1)],
        ),
        (
            "put manifest",
            false,
            vec![LostReply::nth("PUT", "/manifest.edn", 1)],
        ),
    ];
    let mut total = 0;
    for (i, (case, dead_holder, rules)) in cases.into_iter().enumerate() {
        let db = format!("r{i}");
        let (id, _) = direct_backup(&rig, &db);
        interrupt(&rig.direct, &db, &id, 2);
        if dead_holder {
            dead_lock(&rig.direct, &db, &id, 0);
        }
        let want = vec![1; rules.len()];
        rig.lose(rules);
        let r = resume(&rig.faulty, &db, &id).unwrap_or_else(|e| panic!("{case}: {e}"));
        total += rig.lost(case, &want);
        assert_eq!(r.manifest.backup_id, id);
        assert_eq!(outcome(&rig.direct, &db, &id), reference, "{case}");
        assert!(
            locks(&rig.direct, &db, &id).is_empty(),
            "{case}: no lock left"
        );
        // And the backup is done: an immediate second resume says so (it used to conflict).
        let again = resume(&rig.direct(), &db, &id).err().unwrap();
        assert_eq!(again.kind, ErrorKind::AlreadyComplete, "{case}: {again}");
    }
    eprintln!("lost replies: resume total: {total}");
}

#[test]
fn a_lock_create_that_keeps_failing_leaves_no_lock_and_the_next_resume_runs() {
    let rig = rig("lost-lock-gives-up", "");
    let (_, reference) = direct_backup(&rig, "ref");
    let (id, _) = direct_backup(&rig, "db");
    interrupt(&rig.direct, "db", &id, 1);
    // Every reply to the lock's create is lost: executed once, then 412 after 412.
    rig.lose(vec![LostReply::every("PUT", "/lock-0.edn")]);
    let err: Error = resume(&rig.faulty, "db", &id).err().unwrap();
    let n = rig.lost("lock create, every reply", &[5]);
    assert_eq!(n, 5, "1 attempt + 4 retries");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(
        err.to_string().contains("gave up on put object if absent"),
        "{err}"
    );
    assert!(
        locks(&rig.direct, "db", &id).is_empty(),
        "the lock the first attempt created was taken back"
    );
    // No faults: the next resume takes the lock at once and finishes the backup.
    rig.lose(Vec::new());
    resume(&rig.faulty, "db", &id).unwrap();
    assert_eq!(outcome(&rig.direct, "db", &id), reference);
    assert!(locks(&rig.direct, "db", &id).is_empty());
}

#[test]
fn lock_renewal_and_release_survive_lost_replies_and_spare_a_live_competitor() {
    let rig = rig("lost-lock", "");
    let (_, reference) = direct_backup(&rig, "ref");
    let (id, _) = direct_backup(&rig, "db");
    interrupt(&rig.direct, "db", &id, 2);
    let lease = Duration::from_secs(600);

    // Renewal: the read of the lock and the PUT of the new lease each lose a reply.
    rig.lose(vec![
        LostReply::nth("GET", "/lock-0.edn", 1),
        LostReply::nth("PUT", "/lock-0.edn", 2), // the first PUT is the create
    ]);
    let lock = ResumeLock::acquire(rig.faulty.clone(), "db", &id, lease, false).unwrap();
    let before = read_edn(rig.direct.as_ref(), lock.key()).unwrap();
    assert!(lock.renew().unwrap(), "still ours");
    rig.lost("lock renewal: read, put", &[1, 1]);
    let after = read_edn(rig.direct.as_ref(), lock.key()).unwrap();
    assert_eq!(after.get("lock/owner"), before.get("lock/owner"));
    assert!(
        matches!((after.get("lock/expires-at"), before.get("lock/expires-at")),
                 (Some(Value::Inst(a)), Some(Value::Inst(b))) if a >= b),
        "{after:?}"
    );

    // A live competitor (this lock) holds the backup: a resume through lost replies on the
    // lock listing and read is refused, and leaves the competitor's lock untouched.
    rig.lose(vec![
        LostReply::nth("GET", "%2Flock-", 1),
        LostReply::nth("GET", "/lock-0.edn", 1),
    ]);
    let held = read_edn(rig.direct.as_ref(), lock.key()).unwrap();
    let err = resume(&rig.faulty, "db", &id).err().unwrap();
    rig.lost("resume against a live competitor: list, read", &[1, 1]);
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(read_edn(rig.direct.as_ref(), lock.key()).unwrap(), held);
    assert_eq!(locks(&rig.direct, "db", &id), [lock.key().to_owned()]);

    // Release: the read before the delete and the delete each lose a reply.
    rig.lose(vec![
        LostReply::nth("GET", "/lock-0.edn", 1),
        LostReply::nth("DELETE", "/lock-0.edn", 1),
    ]);
    drop(lock);
    rig.lost("lock release: read, delete", &[1, 1]);
    assert!(locks(&rig.direct, "db", &id).is_empty());

    // The competitor gone, the resume runs.
    rig.lose(vec![LostReply::nth("PUT", "/lock-0.edn", 1)]);
    resume(&rig.faulty, "db", &id).unwrap();
    rig.lost("resume after the competitor: lock create", &[1]);
    assert_eq!(outcome(&rig.direct, "db", &id), reference);
    assert!(locks(&rig.direct, "db", &id).is_empty());
}

#[test]
fn two_racing_resumers_losing_replies_have_exactly_one_winner() {
    let rig = rig("lost-race", "");
    let (_, reference) = direct_backup(&rig, "ref");
    // A second resumer through its own proxy; both see the same latency, so that both
    // list the dead lock and both send the create of lock-1.
    let other_proxy = FaultProxy::start(rig._server.addr, Faults::default(), 16);
    let other: Arc<dyn Store> =
        Arc::new(support::store(&other_proxy.endpoint(), "lost-race", RETRY));
    let rules = || Faults {
        lost_replies: vec![LostReply::nth("PUT", "/lock-1.edn", 1)],
        latency: Duration::from_millis(20),
        ..Faults::default()
    };
    let mut total = 0;
    for round in 0..4 {
        let db = format!("race{round}");
        let (id, _) = direct_backup(&rig, &db);
        interrupt(&rig.direct, &db, &id, 1);
        dead_lock(&rig.direct, &db, &id, 0);
        // Each resumer's create of lock-1 is executed and its reply lost: both retries get
        // 412, and each must tell by the lock's content whether the create was its own.
        rig.proxy.set_faults(rules());
        other_proxy.set_faults(rules());
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| resume(&rig.faulty, &db, &id));
            let b = scope.spawn(|| resume(&other, &db, &id));
            (a.join().unwrap(), b.join().unwrap())
        });
        let lost = rig.proxy.lost_by_rule()[0] + other_proxy.lost_by_rule()[0];
        total += lost;
        let outcome_of = |r: &datacamp::Result<BackupResult>| match r {
            Ok(_) => "resumed",
            Err(e) if e.kind == ErrorKind::Conflict => "conflict",
            Err(e) if e.kind == ErrorKind::AlreadyComplete => "already complete",
            Err(e) => panic!("round {round}: unexpected {e}"),
        };
        let (oa, ob) = (outcome_of(&a), outcome_of(&b));
        eprintln!("lost replies: race round {round}: {lost}, first {oa}, second {ob}");
        assert_eq!(
            [oa, ob].iter().filter(|o| **o == "resumed").count(),
            1,
            "round {round}: exactly one winner ({oa}, {ob})"
        );
        assert_eq!(outcome(&rig.direct, &db, &id), reference, "round {round}");
        assert!(locks(&rig.direct, &db, &id).is_empty(), "round {round}");
    }
    eprintln!("lost replies: race total: {total}");
    assert!(total >= 4, "creates raced and lost their replies: {total}");
}

fn cleanup_setup(rig: &Rig, db: &str) -> (String, String) {
    let (done, _) = direct_backup(rig, db);
    let (broken, _) = direct_backup(rig, db);
    interrupt(&rig.direct, db, &broken, 2);
    for key in [
        format!("{db}/{broken}/chunks/datoms-7.fressian.gz"),
        format!("{db}/0194dead-first-file/config.edn"),
    ] {
        block_on(
            rig.direct
                .client()
                .create_multipart_upload()
                .bucket(&rig.direct.config().bucket)
                .key(rig.direct.object_key(&key))
                .send(),
        )
        .unwrap()
        .unwrap();
    }
    (done, broken)
}

#[test]
fn cleanup_ends_as_without_the_fault_through_lost_deletes_aborts_and_listings() {
    let rig = rig("lost-cleanup", "");
    let (_, broken) = cleanup_setup(&rig, "plain");
    let expected = cleanup_incomplete(rig.direct.as_ref(), "plain", Duration::ZERO).unwrap();
    assert_eq!(expected.removed, [broken]);
    assert_eq!(expected.uploads_aborted, 2, "{expected:?}");

    let (done, broken) = cleanup_setup(&rig, "faulty");
    let done_before = outcome(&rig.direct, "faulty", &done);
    rig.lose(vec![
        LostReply::nth("GET", "list-type=2", 1),
        LostReply::nth("POST", "?delete", 1),
        LostReply::nth("GET", "?uploads", 1),
        LostReply::nth("DELETE", "uploadId=", 1),
    ]);
    let report = cleanup_incomplete(rig.faulty.as_ref(), "faulty", Duration::ZERO).unwrap();
    rig.lost(
        "cleanup: list, delete objects, list uploads, abort",
        &[1, 1, 1, 1],
    );
    let want = CleanupReport {
        database_id: "faulty".into(),
        removed: vec![broken.clone()],
        ..expected
    };
    assert_eq!(report, want);
    assert!(rig
        .direct
        .list(&format!("faulty/{broken}/"))
        .unwrap()
        .is_empty());
    assert!(support::uploads(&rig.direct)
        .iter()
        .all(|(k, _)| !k.contains("/faulty/")));
    assert_eq!(outcome(&rig.direct, "faulty", &done), done_before);
}
