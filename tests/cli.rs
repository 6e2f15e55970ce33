//! The `datacamp` binary, run as an operator runs it, against a directory and against a
//! real S3 server (moto): every command in its human, `--json` and `--edn` forms, checked
//! against what the library says about the same backups (and against the fixture's datoms),
//! and the documented exit codes (0 ok, 1 problems found, 2 usage or access error).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use datacamp::codec::edn;
use datacamp::model::{Datom, Value};
use datacamp::ops::backup::{BackupResult, BackupSession};
use datacamp::ops::list;
use datacamp::repo::layout;
use datacamp::store::dir::DirStore;
use datacamp::store::Store;
use serde_json::Value as Json;
use support::fixtures::{datoms, fixture, options, source_datoms};

const BIN: &str = env!("CARGO_BIN_EXE_datacamp");

/// Run the binary with `args` and a clean AWS environment plus `env`, HOME in `home`.
fn run_with(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k == "DATACAMP_TARGET" {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("run datacamp")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn json(o: &Output) -> Json {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// A backup of the kitchen-sink fixture in small chunks; returns the result and the
/// datoms in stored (restore) order.
fn backup(store: Arc<dyn Store>, db: &str, tmp: &Path) -> (BackupResult, Vec<Datom>) {
    let fx = fixture("kitchen-sink");
    let mut s = BackupSession::open(store, options(&fx, db, 20_000, tmp)).unwrap();
    for d in source_datoms(&fx) {
        s.push(d).unwrap();
    }
    (s.finish().unwrap(), datoms(&fx, "tx-order"))
}

/// The txInstants (epoch millis) of the first and last transaction of `datoms`.
fn instant_range(datoms: &[Datom]) -> (i64, i64) {
    let instants: Vec<i64> = datoms
        .iter()
        .filter(|d| d.e == d.tx && d.a.to_string() == ":db/txInstant")
        .map(|d| match d.v {
            Value::Inst(ms) => ms,
            _ => panic!("txInstant {:?}", d.v),
        })
        .collect();
    (instants[0], *instants.last().unwrap())
}

/// `cat` in both line formats prints exactly `expected`.
fn check_cat(home: &Path, base: &[&str], db: &str, id: &str, expected: &[Datom]) {
    let edn_out = run_with(home, &[], &[base, &["cat", db, id]].concat());
    assert_eq!(code(&edn_out), 0, "{}", stderr(&edn_out));
    let text = stdout(&edn_out);
    assert_eq!(text.lines().count(), expected.len());
    for (i, (line, d)) in text.lines().zip(expected).enumerate() {
        // Each line is the datom's EDN (which, like Clojure's printer, writes a Float as a
        // double) and reads back.
        assert_eq!(line, edn::write(&d.to_value()), "datom {i}");
        assert!(edn::parse(line).is_ok(), "{line}");
    }

    let json_out = run_with(
        home,
        &[],
        &[base, &["cat", db, id, "--format", "json"]].concat(),
    );
    assert_eq!(code(&json_out), 0, "{}", stderr(&json_out));
    let text = stdout(&json_out);
    assert_eq!(text.lines().count(), expected.len());
    for (line, d) in text.lines().zip(expected) {
        let j: Json = serde_json::from_str(line).unwrap();
        assert_eq!(j["e"], d.e);
        assert_eq!(j["tx"], d.tx);
        assert_eq!(j["added"], d.added);
        assert_eq!(j["a"], d.a.to_string());
        // Exact JSON where JSON has the value, else its EDN text.
        match (&d.v, &j["v"]) {
            (Value::String(s), Json::String(t)) => assert_eq!(s, t),
            (Value::Long(n), Json::Number(m)) => assert_eq!(Some(*n), m.as_i64()),
            (Value::Bool(b), Json::Bool(c)) => assert_eq!(b, c),
            (v, Json::Object(o)) => {
                let text = o["edn"].as_str().unwrap();
                assert_eq!(
                    format!("{:?}", edn::parse(text).unwrap()),
                    format!("{v:?}"),
                    "{line}"
                );
            }
            (Value::Double(x), Json::Number(m)) => assert_eq!(Some(*x), m.as_f64()),
            (Value::Float(x), Json::Number(m)) => assert_eq!(Some(f64::from(*x)), m.as_f64()),
            (Value::Vector(_), Json::Array(_)) => {}
            (v, j) => panic!("{v:?} rendered as {j}"),
        }
    }
}

#[test]
fn directory_target_every_command_both_forms_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let root = tmp.path().join("backups");
    let store: Arc<dyn Store> = Arc::new(DirStore::open(&root).unwrap());
    let (r, expected) = backup(store.clone(), "ks", tmp.path());
    let id = r.manifest.backup_id.clone();
    let m = &r.manifest;
    assert!(m.chunks.len() > 3, "several chunks");
    let root_s = root.to_str().unwrap();
    let base = ["--target", root_s];

    // list: human, JSON, EDN — the same facts as the library's listing.
    let human = run_with(&home, &[], &[&base[..], &["list", "ks"]].concat());
    assert_eq!(code(&human), 0, "{}", stderr(&human));
    let h = stdout(&human);
    assert!(h.starts_with("BACKUP ID"), "{h}");
    assert!(h.contains(&id) && h.contains("complete"), "{h}");
    assert!(
        h.contains(&format!("{}", m.datom_count / 1000)),
        "datom count shown: {h}"
    );
    let j = json(&run_with(
        &home,
        &[],
        &[&base[..], &["--json", "list", "ks"]].concat(),
    ));
    let listing = list::list(store.as_ref(), "ks").unwrap()[0].listing();
    assert_eq!(j, serde_json::to_value(vec![listing]).unwrap());
    assert_eq!(j[0]["backup_id"], id.as_str());
    assert_eq!(j[0]["datom_count"], m.datom_count);
    assert_eq!(j[0]["chunk_count"], m.chunks.len());
    let e = run_with(&home, &[], &[&base[..], &["--edn", "list", "ks"]].concat());
    let v = edn::parse(&stdout(&e)).unwrap();
    assert_eq!(
        v,
        datacamp::jni::convert::summaries(&list::list(store.as_ref(), "ks").unwrap())
    );

    // verify: shallow and deep, JSON and human.
    let v = run_with(
        &home,
        &[],
        &[&base[..], &["--json", "verify", "ks", &id]].concat(),
    );
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    let vj = json(&v);
    assert_eq!(vj["success"], true);
    assert_eq!(vj["chunk_count"], m.chunks.len());
    assert_eq!(vj["datoms_verified"], Json::Null);
    let deep = json(&run_with(
        &home,
        &[],
        &[&base[..], &["--json", "verify", "ks", &id, "--deep"]].concat(),
    ));
    assert_eq!(deep["datoms_verified"], m.datom_count);
    let hv = run_with(&home, &[], &[&base[..], &["verify", "ks", &id]].concat());
    assert!(stdout(&hv).starts_with("OK: backup"), "{}", stdout(&hv));

    // inspect: the manifest, the tx and time range, the chain.
    let i = run_with(
        &home,
        &[],
        &[&base[..], &["--json", "inspect", "ks", &id]].concat(),
    );
    assert_eq!(code(&i), 0, "{}", stderr(&i));
    let ij = json(&i);
    assert_eq!(ij["complete"], true);
    assert_eq!(
        ij["manifest"],
        serde_json::to_value(&r.manifest).unwrap(),
        "the manifest as stored"
    );
    let (t0, t1) = instant_range(&expected);
    assert_eq!(ij["time_range"], serde_json::json!([t0, t1]));
    assert_eq!(ij["chain"][0]["backup_id"], id.as_str());
    let hi = stdout(&run_with(
        &home,
        &[],
        &[&base[..], &["inspect", "ks", &id]].concat(),
    ));
    let (a, b) = m.tx_range.unwrap();
    assert!(hi.contains(&format!("{a}–{b}")), "{hi}");
    assert!(
        hi.contains("CHUNK") && hi.contains("chunks/datoms-3.fressian.gz"),
        "{hi}"
    );

    // cat: every datom in stored order, both line formats; one chunk alone.
    check_cat(&home, &base, "ks", &id, &expected);
    let n = m.chunks[2].datom_count as usize;
    let start: usize = m.chunks[..2].iter().map(|c| c.datom_count as usize).sum();
    let one = run_with(
        &home,
        &[],
        &[&base[..], &["cat", "ks", &id, "--chunk", "2"]].concat(),
    );
    let want: Vec<String> = expected[start..start + n]
        .iter()
        .map(|d| edn::write(&d.to_value()))
        .collect();
    assert_eq!(
        stdout(&one).lines().collect::<Vec<_>>(),
        want,
        "chunk 2's datoms"
    );
    let missing_chunk = run_with(
        &home,
        &[],
        &[&base[..], &["cat", "ks", &id, "--chunk", "999"]].concat(),
    );
    assert_eq!(code(&missing_chunk), 2);

    // Usage and access errors: exit 2, with a JSON error object under --json.
    let none = run_with(
        &home,
        &[],
        &[&base[..], &["--json", "verify", "ks", "no-such-backup"]].concat(),
    );
    assert_eq!(code(&none), 2);
    assert_eq!(json(&none)["error"]["kind"], "not-found");
    assert_eq!(code(&run_with(&home, &[], &["list", "ks"])), 2, "no target");
    assert_eq!(
        code(&run_with(&home, &[], &[&base[..], &["list"]].concat())),
        2
    );
    assert_eq!(
        code(&run_with(
            &home,
            &[],
            &[&base[..], &["frobnicate"]].concat()
        )),
        2
    );
    let gone = tmp.path().join("nowhere");
    let o = run_with(&home, &[], &["-t", gone.to_str().unwrap(), "list", "ks"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!gone.exists(), "a read-only tool creates no directory");
    let bad_db = run_with(&home, &[], &[&base[..], &["list", "../etc"]].concat());
    assert_eq!(code(&bad_db), 2, "{}", stderr(&bad_db));
    assert_eq!(code(&run_with(&home, &[], &["--help"])), 0);
    assert!(stdout(&run_with(&home, &[], &["--help"])).contains("Exit codes:"));

    // A damaged chunk: verify and cat find the problem (exit 1).
    let key = layout::chunk_key("ks", &id, 1);
    let good = store.get(&key).unwrap();
    let mut bad = good.clone();
    bad[40] ^= 0x10;
    store.put(&key, &bad).unwrap();
    let v = run_with(
        &home,
        &[],
        &[&base[..], &["--json", "verify", "ks", &id]].concat(),
    );
    assert_eq!(code(&v), 1);
    let vj = json(&v);
    assert_eq!(vj["success"], false);
    assert!(
        vj["problems"][0]
            .as_str()
            .unwrap()
            .contains("chunk 1 fails its SHA-256"),
        "{vj}"
    );
    let hv = run_with(&home, &[], &[&base[..], &["verify", "ks", &id]].concat());
    assert_eq!(code(&hv), 1);
    assert!(stdout(&hv).starts_with("PROBLEMS"), "{}", stdout(&hv));
    let c = run_with(
        &home,
        &[],
        &[&base[..], &["--json", "cat", "ks", &id]].concat(),
    );
    assert_eq!(code(&c), 1);
    assert!(
        stderr(&c).contains("chunk 1 fails its SHA-256"),
        "{}",
        stderr(&c)
    );
    store.put(&key, &good).unwrap();

    // An interrupted backup: listed as incomplete, inspect says so (exit 1), and
    // cleanup-incomplete removes it once it is older than the cutoff.
    let (r2, _) = backup(store.clone(), "ks", tmp.path());
    let id2 = r2.manifest.backup_id.clone();
    store
        .delete(&layout::backup_file("ks", &id2, layout::MANIFEST))
        .unwrap();
    store
        .delete(&layout::backup_file("ks", &id2, layout::COMPLETE_MARKER))
        .unwrap();
    let l = json(&run_with(
        &home,
        &[],
        &[&base[..], &["--json", "list", "ks"]].concat(),
    ));
    let entry = l
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backup_id"] == id2.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["completed"], false);
    assert_eq!(
        entry["progress"]["phase"], "complete",
        "its last checkpoint"
    );
    assert!(stdout(&run_with(
        &home,
        &[],
        &[&base[..], &["list", "ks"]].concat()
    ))
    .contains("INCOMPLETE"));
    assert_eq!(
        code(&run_with(
            &home,
            &[],
            &[&base[..], &["inspect", "ks", &id2]].concat()
        )),
        1
    );
    let kept = json(&run_with(
        &home,
        &[],
        &[
            &base[..],
            &["--json", "cleanup-incomplete", "ks", "--older-than", "1h"],
        ]
        .concat(),
    ));
    assert_eq!(kept["kept_incomplete"], serde_json::json!([id2]));
    assert_eq!(kept["removed"], serde_json::json!([]));
    let c = run_with(
        &home,
        &[],
        &[
            &base[..],
            &["--json", "cleanup-incomplete", "ks", "--older-than", "0s"],
        ]
        .concat(),
    );
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    assert_eq!(json(&c)["removed"], serde_json::json!([id2]));
    assert!(!root.join("ks").join(&id2).exists());
    assert!(root.join("ks").join(&id).join(layout::MANIFEST).exists());
    assert_eq!(
        code(&run_with(
            &home,
            &[],
            &[
                &base[..],
                &["cleanup-incomplete", "ks", "--older-than", "soon"]
            ]
            .concat()
        )),
        2
    );
}

#[test]
fn s3_target_with_endpoint_region_and_profile() {
    let server = support::moto();
    let bucket = "cli-target";
    let s3 = support::bucket(&server, bucket, ":prefix \"team/\"");
    let store: Arc<dyn Store> = Arc::new(s3);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let (r, expected) = backup(store.clone(), "ks", tmp.path());
    let id = r.manifest.backup_id.clone();
    let url = format!("s3://{bucket}/team/");
    let base = [
        "--target",
        url.as_str(),
        "--endpoint",
        server.endpoint.as_str(),
        "--region",
        "us-east-1",
    ];
    let keys = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];

    // Credentials from the environment (the provider chain).
    let l = run_with(
        home,
        &keys,
        &[&base[..], &["--json", "list", "ks"]].concat(),
    );
    assert_eq!(code(&l), 0, "{}", stderr(&l));
    let listing = list::list(store.as_ref(), "ks").unwrap()[0].listing();
    assert_eq!(json(&l), serde_json::to_value(vec![listing]).unwrap());
    let v = run_with(
        home,
        &keys,
        &[&base[..], &["--json", "verify", "ks", &id, "--deep"]].concat(),
    );
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert_eq!(json(&v)["datoms_verified"], r.manifest.datom_count);
    let c = run_with(home, &keys, &[&base[..], &["cat", "ks", &id]].concat());
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    assert_eq!(stdout(&c).lines().count(), expected.len());

    // Credentials and region from a profile in the shared files, chosen with --profile.
    std::fs::write(
        home.join("aws-credentials"),
        "[ops]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    std::fs::write(
        home.join("aws-config"),
        "[profile ops]\nregion = us-east-1\n",
    )
    .unwrap();
    let by_profile = [
        "--target",
        url.as_str(),
        "--endpoint",
        server.endpoint.as_str(),
        "--profile",
        "ops",
    ];
    let p = run_with(
        home,
        &[],
        &[&by_profile[..], &["--json", "verify", "ks", &id]].concat(),
    );
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    assert_eq!(json(&p)["success"], true);
    let h = run_with(
        home,
        &[],
        &[&by_profile[..], &["inspect", "ks", &id]].concat(),
    );
    assert_eq!(code(&h), 0, "{}", stderr(&h));
    assert!(stdout(&h).contains(&id));

    // Another prefix holds nothing; a missing bucket is an access error.
    let elsewhere = format!("s3://{bucket}/");
    let e = run_with(
        home,
        &keys,
        &[
            "--target",
            &elsewhere,
            "--endpoint",
            &server.endpoint,
            "--region",
            "us-east-1",
            "list",
            "ks",
        ],
    );
    assert_eq!(code(&e), 0);
    assert!(
        stdout(&e).contains("try s3://cli-target/datahike-backups/"),
        "{}",
        stdout(&e)
    );
    let missing = run_with(
        home,
        &keys,
        &[
            "--target",
            "s3://no-such-bucket-here/",
            "--endpoint",
            &server.endpoint,
            "--region",
            "us-east-1",
            "--json",
            "list",
            "ks",
        ],
    );
    assert_eq!(code(&missing), 2, "{}", stderr(&missing));
    assert!(json(&missing)["error"]["kind"].is_string());
    // --endpoint with a directory target is a usage error.
    assert_eq!(
        code(&run_with(
            home,
            &[],
            &[
                "-t",
                tmp.path().to_str().unwrap(),
                "--endpoint",
                "localhost:1",
                "list",
                "ks"
            ]
        )),
        2
    );
}

#[test]
fn prune_is_a_dry_run_unless_applied_and_keeps_what_the_policy_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let root = tmp.path().join("backups");
    let store: Arc<dyn Store> = Arc::new(DirStore::open(&root).unwrap());
    for _ in 0..3 {
        backup(store.clone(), "ks", tmp.path());
    }
    let ids = |s: &Arc<dyn Store>| -> Vec<String> {
        list::list(s.as_ref(), "ks")
            .unwrap()
            .into_iter()
            .map(|b| b.backup_id)
            .collect()
    };
    let before = ids(&store); // newest first
    assert_eq!(before.len(), 3);
    let root_s = root.to_str().unwrap();
    let base = ["--target", root_s];

    // No rule: a usage error, nothing deleted.
    let none = run_with(&home, &[], &[&base[..], &["prune", "ks"]].concat());
    assert_eq!(code(&none), 2, "{}", stdout(&none));
    assert!(stderr(&none).contains("--keep-last"), "{}", stderr(&none));

    // A dry run names what it would delete and deletes nothing.
    let dry = run_with(
        &home,
        &[],
        &[&base[..], &["--json", "prune", "ks", "--keep-last", "1"]].concat(),
    );
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let j = json(&dry);
    assert_eq!(j["dry_run"], Json::Bool(true));
    assert_eq!(j["kept"][0][0], Json::String(before[0].clone()));
    assert_eq!(j["kept"][0][1][0], Json::String("last".into()));
    let mut would: Vec<String> = j["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    would.sort();
    let mut older = before[1..].to_vec();
    older.sort();
    assert_eq!(would, older);
    assert_eq!(ids(&store), before, "a dry run deletes nothing");

    // --apply deletes them; the human report says so; the newest still verifies.
    let applied = run_with(
        &home,
        &[],
        &[&base[..], &["prune", "ks", "--keep-last", "1", "--apply"]].concat(),
    );
    assert_eq!(code(&applied), 0, "{}", stderr(&applied));
    let h = stdout(&applied);
    assert!(h.contains("deleted 2"), "{h}");
    assert_eq!(ids(&store), vec![before[0].clone()]);
    let v = run_with(
        &home,
        &[],
        &[&base[..], &["verify", "ks", &before[0], "--deep"]].concat(),
    );
    assert_eq!(code(&v), 0, "{}", stdout(&v));

    // EDN: the map the Clojure API's prune-backups returns.
    let e = run_with(
        &home,
        &[],
        &[&base[..], &["--edn", "prune", "ks", "--keep-last", "1"]].concat(),
    );
    let m = edn::parse(&stdout(&e)).unwrap();
    assert_eq!(m.get("dry-run?"), Some(&Value::Bool(true)));
    assert_eq!(m.get("deleted"), Some(&Value::Vector(vec![])));
}

#[test]
fn verify_deep_of_an_encrypted_backup_takes_the_key_from_a_file_or_the_environment() {
    use base64::Engine;
    use datacamp::crypto::envelope::KeySpec;
    use datacamp::crypto::MasterKey;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let root = tmp.path().join("backups");
    let store: Arc<dyn Store> = Arc::new(DirStore::open(&root).unwrap());
    let key = [7u8; 32];
    let fx = fixture("kitchen-sink");
    let mut o = options(&fx, "ks", 20_000, tmp.path());
    o.encryption = Some(KeySpec::Key(Arc::new(MasterKey::from_bytes(&key).unwrap())));
    let mut s = BackupSession::open(store.clone(), o).unwrap();
    for d in source_datoms(&fx) {
        s.push(d).unwrap();
    }
    let r = s.finish().unwrap();
    let id = r.manifest.backup_id.clone();
    let root_s = root.to_str().unwrap();
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, key).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    let verify = |env: &[(&str, &str)], extra: &[&str]| {
        run_with(
            &home,
            env,
            &[
                &["--target", root_s, "--json", "verify", "ks", &id, "--deep"][..],
                extra,
            ]
            .concat(),
        )
    };
    // Without a key: an error that says a key is needed (exit 2), no report.
    let none = verify(&[], &[]);
    assert_eq!(code(&none), 2, "{}", stdout(&none));
    assert_eq!(
        json(&none)["error"]["kind"],
        Json::String("wrong-key".into())
    );
    // With the key from a file, or from the environment: every chunk decrypted and decoded.
    for (env, extra) in [
        (vec![], vec!["--key-file", key_file.to_str().unwrap()]),
        (vec![("DC_KEY", b64.as_str())], vec!["--key-env", "DC_KEY"]),
    ] {
        let ok = verify(&env, &extra);
        assert_eq!(code(&ok), 0, "{} {}", stdout(&ok), stderr(&ok));
        let j = json(&ok);
        assert_eq!(j["success"], Json::Bool(true));
        assert_eq!(
            j["datoms_verified"],
            Json::from(r.manifest.datom_count),
            "{j}"
        );
    }
    // A wrong key: refused, naming no key material.
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, [8u8; 32]).unwrap();
    let bad = verify(&[], &["--key-file", wrong.to_str().unwrap()]);
    assert_eq!(code(&bad), 2);
    assert_eq!(
        json(&bad)["error"]["kind"],
        Json::String("wrong-key".into())
    );
    assert!(!stdout(&bad).contains(&b64) && !stderr(&bad).contains(&b64));
    // inspect needs no key (metadata only); cat does, and decrypts with it.
    let i = run_with(
        &home,
        &[],
        &["--target", root_s, "--json", "inspect", "ks", &id],
    );
    assert_eq!(code(&i), 0, "{}", stdout(&i));
    assert_eq!(json(&i)["backup_id"], Json::String(id.clone()));
    let c = run_with(
        &home,
        &[],
        &["--target", root_s, "--json", "cat", "ks", &id],
    );
    assert_eq!(code(&c), 2);
    assert_eq!(json(&c)["error"]["kind"], Json::String("wrong-key".into()));
    let cat = |extra: &[&str]| {
        run_with(
            &home,
            &[],
            &[&["--target", root_s, "cat", "ks", &id][..], extra].concat(),
        )
    };
    let bad = cat(&["--key-file", wrong.to_str().unwrap()]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    let c = cat(&["--key-file", key_file.to_str().unwrap()]);
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    // Every datom, decrypted: the chunks' datoms as a restore reads them, line for line.
    let restored = restore_datoms(&store, "ks", &id, &key);
    let text = stdout(&c);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines.len() as u64, r.manifest.datom_count);
    let want: Vec<String> = restored.iter().map(|d| edn::write(&d.to_value())).collect();
    assert_eq!(lines, want.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Every datom of backup `id`, read as a restore reads them (with `key`).
fn restore_datoms(
    store: &Arc<dyn Store>,
    db: &str,
    id: &str,
    key: &[u8; 32],
) -> Vec<datacamp::model::Datom> {
    use datacamp::crypto::envelope::KeySpec;
    use datacamp::crypto::MasterKey;
    use datacamp::ops::restore::{RestoreOptions, RestoreSession};
    let opts = RestoreOptions {
        database_id: db.into(),
        backup_id: id.into(),
        encryption: Some(KeySpec::Key(Arc::new(MasterKey::from_bytes(key).unwrap()))),
        ..RestoreOptions::default()
    };
    let mut session = RestoreSession::open(store.clone(), opts).unwrap();
    session.read_to_end().unwrap()
}
