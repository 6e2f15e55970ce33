//! The conformance suite every [`Store`] backend must pass (called from each backend's tests).

use super::{Leftover, LeftoverKind, Store};
use crate::error::ErrorKind;

/// Run every conformance check against an empty `store`; panics (test failure) on a violation.
pub fn run(store: &dyn Store) {
    put_get_round_trip(store);
    missing_keys(store);
    list_is_recursive_sorted_and_prefix_exact(store);
    overwrite_replaces(store);
    delete_prefix_removes_everything(store);
    put_if_absent_creates_once(store);
    list_after_starts_strictly_after(store);
    completed_writes_leave_no_leftovers(store);
}

fn list_after_starts_strictly_after(store: &dyn Store) {
    let names = [
        "la/log/seg/00000000000000000010-00000000000000000000",
        "la/log/seg/00000000000000000020-00000000000000000010",
        "la/log/seg/00000000000000000030-00000000000000000020",
        "la/log/seg/00000000000000000040-00000000000000000030",
    ];
    for n in names.iter().rev() {
        store.put(n, n.as_bytes()).unwrap();
    }
    store.put("la/log/zzz-outside", b"x").unwrap();
    store
        .put("lb/log/seg/00000000000000000050-x", b"other prefix")
        .unwrap();
    let keys = |prefix: &str, after: &str| -> Vec<String> {
        store
            .list_after(prefix, after)
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    // Strictly after: an exact key is left out, a key between two names starts there.
    assert_eq!(keys("la/log/seg/", names[1]), names[2..]);
    assert_eq!(
        keys("la/log/seg/", "la/log/seg/00000000000000000020-~"),
        names[2..]
    );
    assert_eq!(
        keys("la/log/seg/", "la/log/seg/00000000000000000025"),
        names[2..]
    );
    // Before the prefix: everything under it; past its end: nothing.
    assert_eq!(keys("la/log/seg/", ""), names);
    assert_eq!(keys("la/log/seg/", "a"), names);
    assert!(keys("la/log/seg/", names[3]).is_empty());
    assert!(keys("la/log/seg/", "la/log/seh").is_empty());
    // Sizes and the prefix are as `list` gives them.
    let after = store.list_after("la/", names[2]).unwrap();
    assert_eq!(
        after.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        [names[3], "la/log/zzz-outside"]
    );
    assert_eq!(after[0].size, names[3].len() as u64);
    assert!(store.list_after("nothing-here/", "").unwrap().is_empty());
}

fn completed_writes_leave_no_leftovers(store: &dyn Store) {
    store.put("lo/b1/config.edn", b"{}").unwrap();
    assert!(store.put_if_absent("lo/b1/lock-0.edn", b"l").unwrap());
    let big: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    store
        .put("lo/b1/chunks/datoms-0.fressian.gz", &big)
        .unwrap();
    assert_eq!(store.leftovers("lo/").unwrap(), Vec::<Leftover>::new());
    assert_eq!(store.leftovers("").unwrap(), Vec::<Leftover>::new());
    // Removing a leftover that is gone (or never was) succeeds, for either kind.
    for kind in [
        LeftoverKind::Temporary,
        LeftoverKind::Upload {
            upload_id: "no-such-upload".into(),
        },
    ] {
        let gone = Leftover {
            key: "lo/b1/config.edn.tmp-0123".into(),
            started: None,
            kind,
        };
        store.remove_leftover(&gone).unwrap();
    }
    assert_eq!(store.get("lo/b1/config.edn").unwrap(), b"{}");
}

fn put_if_absent_creates_once(store: &dyn Store) {
    assert!(store.put_if_absent("pia/b1/lock.edn", b"first").unwrap());
    assert!(!store.put_if_absent("pia/b1/lock.edn", b"second").unwrap());
    assert_eq!(store.get("pia/b1/lock.edn").unwrap(), b"first");
    store.delete("pia/b1/lock.edn").unwrap();
    assert!(store.put_if_absent("pia/b1/lock.edn", b"third").unwrap());
    let keys: Vec<String> = store
        .list("pia/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["pia/b1/lock.edn"], "no temporaries are visible");
}

fn put_get_round_trip(store: &dyn Store) {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    store
        .put("db/b1/chunks/datoms-0.fressian.gz", &bytes)
        .unwrap();
    assert_eq!(
        store.get("db/b1/chunks/datoms-0.fressian.gz").unwrap(),
        bytes
    );
    assert_eq!(
        store.size("db/b1/chunks/datoms-0.fressian.gz").unwrap(),
        Some(100_000)
    );
    store.put("db/b1/empty", b"").unwrap();
    assert_eq!(store.get("db/b1/empty").unwrap(), b"");
}

fn missing_keys(store: &dyn Store) {
    let err = store.get("db/nope/manifest.edn").unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(store.size("db/nope/manifest.edn").unwrap(), None);
    store.delete("db/nope/manifest.edn").unwrap();
    assert!(store.list("nothing-here/").unwrap().is_empty());
}

fn list_is_recursive_sorted_and_prefix_exact(store: &dyn Store) {
    store.put("lst/b2/manifest.edn", b"2").unwrap();
    store.put("lst/b1/manifest.edn", b"1").unwrap();
    store
        .put("lst/b1/chunks/datoms-1.fressian.gz", b"c1")
        .unwrap();
    store.put("lstx/b1/manifest.edn", b"other db").unwrap();
    let keys: Vec<String> = store
        .list("lst/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        [
            "lst/b1/chunks/datoms-1.fressian.gz",
            "lst/b1/manifest.edn",
            "lst/b2/manifest.edn"
        ]
    );
    let sizes: Vec<u64> = store
        .list("lst/b1/")
        .unwrap()
        .into_iter()
        .map(|o| o.size)
        .collect();
    assert_eq!(sizes, [2, 1]);
}

fn overwrite_replaces(store: &dyn Store) {
    store.put("ow/k", b"first version, longer").unwrap();
    store.put("ow/k", b"second").unwrap();
    assert_eq!(store.get("ow/k").unwrap(), b"second");
}

fn delete_prefix_removes_everything(store: &dyn Store) {
    store.put("del/b1/a", b"a").unwrap();
    store.put("del/b1/chunks/c", b"c").unwrap();
    store.put("del/b2/a", b"keep").unwrap();
    assert_eq!(store.delete_prefix("del/b1/").unwrap(), 2);
    assert!(store.list("del/b1/").unwrap().is_empty());
    assert_eq!(store.get("del/b2/a").unwrap(), b"keep");
}
