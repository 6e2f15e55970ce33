//! Failures while writing: a store that runs out of space mid-backup, a target that cannot
//! be created. The backup must fail with a clear error and never list as complete.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datacamp::codec::edn;
use datacamp::error::{Error, ErrorKind, Result};
use datacamp::model::{Attr, Datom, Name, Value};
use datacamp::ops::backup::{BackupOptions, BackupSession};
use datacamp::ops::{list, verify};
use datacamp::store::dir::DirStore;
use datacamp::store::{ObjectMeta, Store};

/// A directory store with a byte budget: writes past it fail as a full disk would.
struct FullDisk {
    inner: DirStore,
    left: AtomicU64,
}

impl Store for FullDisk {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let n = bytes.len() as u64;
        if self
            .left
            .fetch_sub(n.min(self.left.load(Ordering::SeqCst)), Ordering::SeqCst)
            < n
        {
            let io =
                std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
            return Err(Error::io("write file", self.inner.location(key), io));
        }
        self.inner.put(key, bytes)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.inner.get(key)
    }
    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.inner.size(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list_after(prefix, start_after)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }
    fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.inner.put_if_absent(key, bytes)
    }
}

fn datoms(n: i64) -> impl Iterator<Item = Datom> {
    let name = Attr::Keyword(Name::parse("item/name"));
    (1..=n).map(move |e| Datom {
        e,
        a: name.clone(),
        v: Value::String(format!("item number {e} with some padding to fill chunks")),
        tx: 536_870_913,
        added: true,
    })
}

fn options(tmp: &std::path::Path) -> BackupOptions {
    let o = edn::parse(&format!(
        "{{:database-id \"db\" :chunk-size 4096 :parallel 2 :tmp-dir {:?}}}",
        tmp.display().to_string()
    ))
    .unwrap();
    BackupOptions::from_edn(&o).unwrap()
}

#[test]
fn a_full_disk_fails_the_backup_clearly_and_leaves_it_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(FullDisk {
        inner: DirStore::open(tmp.path().join("b")).unwrap(),
        left: AtomicU64::new(60_000),
    });
    let mut session = BackupSession::open(store.clone(), options(tmp.path())).unwrap();
    for d in datoms(20_000) {
        session.push(d).unwrap();
    }
    let err = session.finish().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(
        err.hint
            .as_deref()
            .unwrap_or("")
            .contains("free disk space"),
        "{err}"
    );
    let listed = list::list(store.as_ref(), "db").unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        !listed[0].completed,
        "a failed backup never lists as complete"
    );
    let report = verify::verify(store.as_ref(), "db", &listed[0].backup_id, false, None).unwrap();
    assert!(!report.success(), "{report:?}");
}

#[test]
fn a_target_that_cannot_be_a_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = DirStore::open(file.join("backups")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Io, "{err}");
    assert!(
        err.to_string().contains("not-a-dir"),
        "the error names the path: {err}"
    );
}
