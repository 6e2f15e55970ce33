//! Encrypted backups end to end through the operations: round trips (memory and directory
//! stores), wrong and missing keys, tampered, moved and copied chunks, an edited wrapped
//! key, and no key material in anything written.

use std::sync::Arc;

use base64::Engine as _;

use crate::crypto::envelope::KeySpec;
use crate::crypto::MasterKey;
use crate::error::ErrorKind;
use crate::model::Datom;
use crate::repo::layout;
use crate::repo::manifest::Manifest;
use crate::repo::meta::{read_edn, write_edn};
use crate::store::Store;

use super::backup::BackupResult;
use super::restore::{RestoreOptions, RestoreSession};
use super::testing::{self, history};

const KEY: [u8; 32] = [0x5a; 32];
const OTHER: [u8; 32] = [0x33; 32];

fn spec(bytes: &[u8; 32]) -> KeySpec {
    KeySpec::Key(Arc::new(MasterKey::from_bytes(bytes).unwrap()))
}

fn encrypted_backup(store: &Arc<dyn Store>, id: &str, key: &[u8; 32]) -> BackupResult {
    let mut o = testing::options("db", 600, 30);
    o.backup_id = Some(id.into());
    o.encryption = Some(spec(key));
    testing::backup(store, o, &history(30))
}

fn restore_opts(id: &str, key: Option<&[u8; 32]>) -> RestoreOptions {
    RestoreOptions {
        database_id: "db".into(),
        backup_id: id.into(),
        verify_first: true,
        encryption: key.map(spec),
        ..RestoreOptions::default()
    }
}

fn restore(store: &Arc<dyn Store>, id: &str, key: Option<&[u8; 32]>) -> crate::Result<Vec<Datom>> {
    testing::restore_with(store, restore_opts(id, key)).map(|(d, _)| d)
}

/// The datoms a plain backup of the same history restores to.
fn plain_datoms() -> Vec<Datom> {
    let (_, store) = testing::store();
    let r = testing::backup(&store, testing::options("db", 600, 30), &history(30));
    testing::restore(&store, "db", &r.manifest.backup_id).unwrap()
}

fn manifest(store: &dyn Store, id: &str) -> Manifest {
    Manifest::from_value(
        &read_edn(store, &layout::backup_file("db", id, layout::MANIFEST)).unwrap(),
    )
    .unwrap()
}

/// Rewrite the manifest as an attacker who can write the bucket would: chunk entries'
/// sizes and checksums made to match the bytes now stored.
fn rehash(store: &dyn Store, id: &str) {
    let mut m = manifest(store, id);
    for c in &mut m.chunks {
        let bytes = store.get(&layout::chunk_key("db", id, c.id)).unwrap();
        c.size_bytes = bytes.len() as u64;
        c.checksum = crate::pipeline::chunk::sha256_hex(&bytes);
    }
    m.size_bytes = m.chunks.iter().map(|c| c.size_bytes).sum();
    write_edn(
        store,
        &layout::backup_file("db", id, layout::MANIFEST),
        &m.to_value(),
    )
    .unwrap();
}

fn refused(store: &Arc<dyn Store>, id: &str, key: Option<&[u8; 32]>) -> crate::Error {
    // Nothing is handed out: the session does not even open (verify-first).
    match RestoreSession::open(store.clone(), restore_opts(id, key)) {
        Ok(_) => panic!("backup {id} was restored"),
        Err(e) => e,
    }
}

#[test]
fn an_encrypted_backup_restores_datom_for_datom_and_stores_no_plaintext() {
    let (mem, store) = testing::store();
    let r = encrypted_backup(&store, "b1", &KEY);
    let m = manifest(&mem, "b1");
    let env = m
        .encryption
        .clone()
        .expect("the manifest records the encryption");
    assert_eq!(env.algorithm, "aes-256-gcm");
    assert_eq!(env.key_id, MasterKey::from_bytes(&KEY).unwrap().key_id());
    assert!(m.chunks.len() > 3, "{} chunks", m.chunks.len());
    for c in &m.chunks {
        let bytes = mem.get(&layout::chunk_key("db", "b1", c.id)).unwrap();
        assert_eq!(&bytes[..4], crate::crypto::MAGIC);
        assert_eq!(c.checksum, crate::pipeline::chunk::sha256_hex(&bytes));
        assert_eq!(c.size_bytes, bytes.len() as u64);
    }
    // The schema facts are sealed in config.edn; the names of attributes appear nowhere.
    for o in mem.list("db/b1/").unwrap() {
        let bytes = mem.get(&o.key).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("person/friend"),
            "{} holds a schema fact",
            o.key
        );
        assert!(!text.contains("renamed in"), "{} holds a value", o.key);
    }
    let datoms = restore(&store, "b1", Some(&KEY)).unwrap();
    assert_eq!(datoms.len() as u64, r.manifest.datom_count);
    assert_eq!(datoms, plain_datoms());
    // The restore reports the source's configuration (opened from config.edn).
    let s = RestoreSession::open(store.clone(), restore_opts("b1", Some(&KEY))).unwrap();
    assert_eq!(s.info().manifest.encryption, Some(env));
    // Plain verify needs no key; deep verify does.
    let v = super::verify::verify(&mem, "db", "b1", false, None).unwrap();
    assert!(v.success(), "{:?}", v.problems);
    let v = super::verify::verify(&mem, "db", "b1", true, Some(&spec(&KEY))).unwrap();
    assert!(v.success(), "{:?}", v.problems);
    assert_eq!(v.datoms_verified, Some(r.manifest.datom_count));
    let e = super::verify::verify(&mem, "db", "b1", true, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongKey);
}

#[test]
fn a_wrong_or_missing_key_is_refused_naming_the_key_ids() {
    let (_, store) = testing::store();
    encrypted_backup(&store, "b1", &KEY);
    let (want, got) = (
        MasterKey::from_bytes(&KEY).unwrap().key_id().to_owned(),
        MasterKey::from_bytes(&OTHER).unwrap().key_id().to_owned(),
    );
    let e = refused(&store, "b1", Some(&OTHER));
    assert_eq!(e.kind, ErrorKind::WrongKey);
    assert!(e.message.contains(&want) && e.message.contains(&got), "{e}");
    let e = refused(&store, "b1", None);
    assert_eq!(e.kind, ErrorKind::WrongKey);
    assert!(
        e.message.contains(&want) && e.message.contains("no key"),
        "{e}"
    );
    assert!(e.hint.unwrap().contains(":encryption"));
    // A plain backup read with a key is refused (it proves nothing about who wrote it).
    let r = testing::backup(&store, testing::options("db", 600, 30), &history(30));
    let e = refused(&store, &r.manifest.backup_id, Some(&KEY));
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
}

#[test]
fn tampered_moved_and_copied_chunks_are_corrupt_and_named() {
    let (mem, store) = testing::store();
    encrypted_backup(&store, "b1", &KEY);
    encrypted_backup(&store, "b2", &KEY);
    let chunk = |id: &str, n: u64| layout::chunk_key("db", id, n);
    let original = |n: u64| mem.get(&chunk("b1", n)).unwrap();
    let (c1, c2) = (original(1), original(2));
    let expect_corrupt = |what: &str, n: u64| {
        let e = refused(&store, "b1", Some(&KEY));
        assert_eq!(e.kind, ErrorKind::Corrupt, "{what}: {e}");
        assert!(
            e.message.contains(&format!("chunk {n} does not decrypt")),
            "{what}: {e}"
        );
        assert!(e.key.unwrap().ends_with(&format!("datoms-{n}.fressian.gz")));
    };
    // A flipped byte whose checksum the attacker also fixed.
    let mut flipped = c1.clone();
    flipped[40] ^= 1;
    mem.put(&chunk("b1", 1), &flipped).unwrap();
    rehash(&mem, "b1");
    expect_corrupt("flipped", 1);
    // A flipped byte alone fails the SHA-256 first.
    mem.put(&chunk("b1", 1), &c1).unwrap();
    let mut again = c1.clone();
    again[41] ^= 1;
    mem.put(&chunk("b1", 1), &again).unwrap();
    let e = refused(&store, "b1", Some(&KEY));
    assert!(e.message.contains("fails its SHA-256"), "{e}");
    // Truncated (the tag cut off), checksums fixed.
    mem.put(&chunk("b1", 1), &c1[..c1.len() - 1]).unwrap();
    rehash(&mem, "b1");
    expect_corrupt("truncated", 1);
    // Chunks 1 and 2 swapped.
    mem.put(&chunk("b1", 1), &c2).unwrap();
    mem.put(&chunk("b1", 2), &c1).unwrap();
    rehash(&mem, "b1");
    expect_corrupt("swapped", 1);
    // Chunk 1 of another backup under the same key.
    mem.put(&chunk("b1", 1), &mem.get(&chunk("b2", 1)).unwrap())
        .unwrap();
    mem.put(&chunk("b1", 2), &c2).unwrap();
    rehash(&mem, "b1");
    expect_corrupt("copied from b2", 1);
    // Restored: the backup reads again.
    mem.put(&chunk("b1", 1), &c1).unwrap();
    rehash(&mem, "b1");
    assert_eq!(restore(&store, "b1", Some(&KEY)).unwrap(), plain_datoms());
}

#[test]
fn an_edited_or_transplanted_wrapped_key_is_refused() {
    let (mem, store) = testing::store();
    encrypted_backup(&store, "b1", &KEY);
    encrypted_backup(&store, "b2", &KEY);
    let key = layout::backup_file("db", "b1", layout::MANIFEST);
    let good = mem.get(&key).unwrap();
    let mut m = manifest(&mem, "b1");
    let env = m.encryption.as_mut().unwrap();
    let mut sealed = base64::engine::general_purpose::STANDARD
        .decode(&env.wrapped_key)
        .unwrap();
    sealed[30] ^= 1;
    env.wrapped_key = base64::engine::general_purpose::STANDARD.encode(&sealed);
    write_edn(&mem, &key, &m.to_value()).unwrap();
    let e = refused(&store, "b1", Some(&KEY));
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    assert!(e.message.contains("wrapped data key"), "{e}");
    // b2's wrapped key in b1's manifest: bound to b2, it does not open for b1.
    let mut m = manifest(&mem, "b1");
    m.encryption = manifest(&mem, "b2").encryption;
    write_edn(&mem, &key, &m.to_value()).unwrap();
    assert_eq!(refused(&store, "b1", Some(&KEY)).kind, ErrorKind::Corrupt);
    // A malformed record is refused by the manifest validation.
    let mut m = manifest(&mem, "b1");
    m.encryption.as_mut().unwrap().key_id = "dck1-not-hex".into();
    write_edn(&mem, &key, &m.to_value()).unwrap();
    let e = refused(&store, "b1", Some(&KEY));
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    assert!(e.message.contains(":key-id"), "{e}");
    mem.put(&key, &good).unwrap();
    assert_eq!(restore(&store, "b1", Some(&KEY)).unwrap(), plain_datoms());
}

#[test]
fn an_interrupted_encrypted_backup_resumes_with_its_own_data_key() {
    let (mem, store) = testing::store();
    let r = encrypted_backup(&store, "b1", &KEY);
    let stored: Vec<Vec<u8>> = r
        .manifest
        .chunks
        .iter()
        .map(|c| mem.get(&layout::chunk_key("db", "b1", c.id)).unwrap())
        .collect();
    // As a killed process leaves it: no manifest, no marker, the chunks from 2 on gone.
    mem.delete(&layout::backup_file("db", "b1", layout::MANIFEST))
        .unwrap();
    mem.delete(&layout::backup_file("db", "b1", layout::COMPLETE_MARKER))
        .unwrap();
    for c in r.manifest.chunks.iter().filter(|c| c.id >= 2) {
        mem.delete(&layout::chunk_key("db", "b1", c.id)).unwrap();
    }
    let resume = |key: Option<&[u8; 32]>| {
        let mut o = testing::options("db", 600, 30);
        o.backup_id = Some("b1".into());
        o.resume = true;
        o.encryption = key.map(spec);
        super::backup::BackupSession::open(store.clone(), o)
    };
    assert_eq!(
        resume(None).err().expect("refused").kind,
        ErrorKind::WrongKey
    );
    assert_eq!(
        resume(Some(&OTHER)).err().expect("refused").kind,
        ErrorKind::WrongKey
    );
    let Ok(mut s) = resume(Some(&KEY)) else {
        panic!("the key opens the backup")
    };
    for d in history(30) {
        s.push(d).unwrap();
    }
    let done = s.finish().unwrap();
    assert_eq!(done.manifest.encryption, r.manifest.encryption);
    // The chunks kept are reused as they were; all of them open under the one data key.
    for (c, before) in done.manifest.chunks.iter().zip(&stored).take(2) {
        assert_eq!(
            &mem.get(&layout::chunk_key("db", "b1", c.id)).unwrap(),
            before
        );
    }
    assert_eq!(restore(&store, "b1", Some(&KEY)).unwrap(), plain_datoms());
}

#[test]
fn a_directory_backup_round_trips_and_no_file_holds_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::dir::DirStore::open(tmp.path()).unwrap());
    let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
    // Through the options map, as the Clojure API sends it.
    let edn = format!("{{:database-id \"db\" :encryption {{:key \"{b64}\"}}}}");
    let mut o =
        super::backup::BackupOptions::from_edn(&crate::codec::edn::parse(&edn).unwrap()).unwrap();
    let t = testing::options("db", 600, 30);
    (o.chunk_size, o.order, o.max_eid, o.max_tx) = (t.chunk_size, t.order, t.max_eid, t.max_tx);
    let r = testing::backup(&store, o, &history(30));
    let id = r.manifest.backup_id.clone();
    let ropts = RestoreOptions {
        verify_first: true,
        ..RestoreOptions::from_edn(
            &crate::codec::edn::parse(&format!(
                "{{:database-id \"db\" :backup-id \"{id}\" :encryption {{:key \"{b64}\"}}}}"
            ))
            .unwrap(),
        )
        .unwrap()
    };
    let (datoms, _) = testing::restore_with(&store, ropts).unwrap();
    assert_eq!(datoms, plain_datoms());
    let hex = hex::encode(KEY);
    let mut files = 0;
    let mut stack = vec![tmp.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes).to_lowercase();
            assert!(!text.contains(&hex), "{path:?} holds the key in hex");
            assert!(
                !text.contains(&b64.to_lowercase()),
                "{path:?} holds the key in base64"
            );
            assert!(
                !bytes.windows(32).any(|w| w == KEY),
                "{path:?} holds the key"
            );
        }
    }
    assert!(files >= 4 + r.manifest.chunks.len());
}

mod chains {
    use super::*;
    use crate::model::{Attr, Name, Value, TX0};
    use crate::ops::backup::BackupOptions;

    fn d(e: i64, a: &str, v: Value, t: i64, added: bool) -> Datom {
        Datom {
            e,
            a: Attr::Keyword(Name::parse(a)),
            v,
            tx: TX0 + t,
            added,
        }
    }

    fn inst(t: i64) -> Datom {
        d(TX0 + t, "db/txInstant", Value::Inst(t), t, true)
    }

    fn at(n: i64) -> Vec<Datom> {
        let mut v = vec![
            d(1, "p/name", Value::str("a"), 1, true),
            d(
                1,
                "p/nick",
                Value::str(if n >= 3 { "n2" } else { "n1" }),
                if n >= 3 { 3 } else { 1 },
                true,
            ),
            d(3, "p/name", Value::str("c"), 2, true),
        ];
        v.extend((1..=n).map(inst));
        v.sort_by_key(|x| (x.e, x.a.to_string(), x.tx));
        v
    }

    fn opts(n: i64, id: &str, parent: Option<&str>, key: Option<KeySpec>) -> BackupOptions {
        BackupOptions {
            no_history_attrs: [Attr::Keyword(Name::parse("p/nick"))].into(),
            max_tx: TX0 + n,
            backup_id: Some(id.into()),
            parent: parent.map(String::from),
            incremental: parent.is_some(),
            encryption: key,
            ..testing::options("db", 1 << 20, n)
        }
    }

    fn chain_restore(
        store: &Arc<dyn Store>,
        id: &str,
        key: Option<KeySpec>,
        as_of_tx: Option<i64>,
    ) -> crate::Result<Vec<Datom>> {
        let o = RestoreOptions {
            database_id: "db".into(),
            backup_id: id.into(),
            verify_first: true,
            encryption: key,
            as_of_tx,
            ..RestoreOptions::default()
        };
        testing::restore_with(store, o).map(|(d, _)| d)
    }

    #[test]
    fn an_encrypted_chain_continues_with_its_key_and_restores_to_any_point() {
        let passphrase =
            || KeySpec::Passphrase(Arc::new(zeroize::Zeroizing::new(b"chain words".to_vec())));
        for key in [spec(&KEY), passphrase()] {
            let (mem, store) = testing::store();
            let (_, plain) = testing::store();
            testing::backup(&store, opts(2, "b1", None, Some(key.clone())), &at(2));
            testing::backup(&store, opts(5, "b2", Some("b1"), Some(key.clone())), &at(5));
            testing::backup(&plain, opts(2, "b1", None, None), &at(2));
            testing::backup(&plain, opts(5, "b2", Some("b1"), None), &at(5));
            let (m1, m2) = (manifest(&mem, "b1"), manifest(&mem, "b2"));
            let (e1, e2) = (m1.encryption.unwrap(), m2.encryption.unwrap());
            assert_eq!(e1.key_id, e2.key_id, "one key for the chain");
            assert_ne!(e1.wrapped_key, e2.wrapped_key, "a data key per backup");
            for state in m2.link.no_history.iter().flatten() {
                let bytes = mem.get(&layout::chunk_in("db/b2/", state)).unwrap();
                assert_eq!(&bytes[..4], crate::crypto::MAGIC, "state chunks are sealed");
            }
            let want = chain_restore(&plain, "b2", None, None).unwrap();
            assert!(!want.is_empty());
            assert_eq!(
                chain_restore(&store, "b2", Some(key.clone()), None).unwrap(),
                want
            );
            let want3 = chain_restore(&plain, "b2", None, Some(TX0 + 3)).unwrap();
            assert!(want3.len() < want.len());
            assert_eq!(
                chain_restore(&store, "b2", Some(key.clone()), Some(TX0 + 3)).unwrap(),
                want3
            );
            let e = chain_restore(&store, "b2", None, None).unwrap_err();
            assert_eq!(e.kind, ErrorKind::WrongKey, "{e}");
            let e = chain_restore(&store, "b2", Some(spec(&OTHER)), None).unwrap_err();
            assert_eq!(e.kind, ErrorKind::WrongKey, "{e}");
        }
    }

    #[test]
    fn plain_and_encrypted_links_never_mix() {
        let (_, store) = testing::store();
        testing::backup(&store, opts(2, "e1", None, Some(spec(&KEY))), &at(2));
        testing::backup(&store, opts(2, "p1", None, None), &at(2));
        let open = |o: BackupOptions| {
            crate::ops::backup::BackupSession::open(store.clone(), o).map(|_| ())
        };
        let e = open(opts(5, "x1", Some("e1"), None)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongKey, "{e}");
        assert!(e.hint.unwrap().contains(":encryption"));
        let e = open(opts(5, "x2", Some("e1"), Some(spec(&OTHER)))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongKey, "{e}");
        let e = open(opts(5, "x3", Some("p1"), Some(spec(&KEY)))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
        // Nothing was written for the refused links.
        for id in ["x1", "x2", "x3"] {
            assert!(store.list(&format!("db/{id}/")).unwrap().is_empty(), "{id}");
        }
        // A chain whose plain link was replaced by an encrypted one (or the reverse) does
        // not restore either way.
        testing::backup(&store, opts(5, "p2", Some("p1"), None), &at(5));
        let m = manifest(store.as_ref(), "e1").to_value();
        let mut forged = Manifest::from_value(&m).unwrap();
        forged.backup_id = "p1".into();
        let key = layout::backup_file("db", "p1", layout::MANIFEST);
        let good = store.get(&key).unwrap();
        write_edn(store.as_ref(), &key, &forged.to_value()).unwrap();
        assert!(chain_restore(&store, "p2", None, None).is_err());
        assert!(chain_restore(&store, "p2", Some(spec(&KEY)), None).is_err());
        store.put(&key, &good).unwrap();
        assert!(chain_restore(&store, "p2", None, None).is_ok());
    }
}
