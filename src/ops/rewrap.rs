//! `rewrap-backup-keys`: rotate the user key of a database's encrypted backups.
//!
//! Every backup keeps its random data key; only the data key's wrapping changes (old key →
//! new key), in `manifest.edn` and in `config.edn`, so no chunk is read or rewritten. Each
//! file is rewritten atomically ([`write_edn`], as every [`Store::put`]) and judged on its
//! own: a file already wrapped by the new key is left alone, so a rotation interrupted at
//! any point (a killed process) is finished by running it again with the same keys.

use std::collections::HashMap;

use serde::Serialize;

use crate::crypto::envelope::{Envelope, KeySpec};
use crate::crypto::{wrong_key, KdfParams};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::model::Value;
use crate::repo::layout;
use crate::repo::meta::{read_edn_opt, write_edn};
use crate::store::Store;

const OP: &str = "rewrap backup keys";

/// The option keys of `rewrap-backup-keys`.
pub const KEYS: &[&str] = &["old-key", "new-key"];

/// What a rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RewrapReport {
    /// The new key's id.
    pub key_id: String,
    /// Backups whose data key is now wrapped by the new key (this run rewrote a file);
    /// each list sorted by id.
    pub rewrapped: Vec<String>,
    /// Backups already wrapped by the new key (nothing to do).
    pub already: Vec<String>,
    /// Backups that are not encrypted (left alone).
    pub plain: Vec<String>,
}

/// Given a store, a database and the old and new keys, re-wrap the data key of every
/// encrypted backup of the database (complete or not). Every file is read and judged
/// first: one wrapped by neither key stops the rotation (`WrongKey`, naming the file)
/// before anything is changed; files already wrapped by the new key stay as they are (a
/// new passphrase keeps the parameters it was first used with: one key id).
pub fn rewrap(
    store: &dyn Store,
    database_id: &str,
    old: &KeySpec,
    new: &KeySpec,
) -> Result<RewrapReport> {
    layout::check_segment("database-id", database_id)?;
    // Key ids of a passphrase depend on the recorded parameters: derived once per set.
    let mut memo: HashMap<(bool, String), Option<String>> = HashMap::new();
    let mut id_of =
        |spec: &KeySpec, is_new: bool, kdf: Option<&KdfParams>| -> Result<Option<String>> {
            let k = (is_new, format!("{kdf:?}"));
            if let Some(v) = memo.get(&k) {
                return Ok(v.clone());
            }
            let v = spec.key_id_with(kdf)?;
            memo.insert(k, v.clone());
            Ok(v)
        };
    struct File {
        backup_id: String,
        key: String,
        value: Value,
        envelope: Envelope,
        done: bool,
    }
    let mut files: Vec<File> = Vec::new();
    let mut plain = Vec::new();
    for s in super::list::list(store, database_id)? {
        let mut encrypted = false;
        for name in [layout::MANIFEST, layout::CONFIG] {
            let key = layout::backup_file(database_id, &s.backup_id, name);
            let Some(value) = read_edn_opt(store, &key)? else {
                continue;
            };
            let Some(envelope) = value
                .get("format/encryption")
                .filter(|e| **e != Value::Nil)
                .map(Envelope::from_value)
            else {
                continue;
            };
            encrypted = true;
            envelope
                .check()
                .map_err(|e| e.with_key(store.location(&key)))?;
            let kdf = envelope.kdf.as_ref();
            let done = id_of(new, true, kdf)?.as_deref() == Some(&envelope.key_id);
            if !done && id_of(old, false, kdf)?.as_deref() != Some(&envelope.key_id) {
                let given = id_of(old, false, kdf)?.unwrap_or_else(|| "a passphrase".into());
                return Err(wrong_key(&envelope.key_id, &given)
                    .in_op(OP)
                    .with_key(store.location(&key)));
            }
            files.push(File {
                backup_id: s.backup_id.clone(),
                key,
                value,
                envelope,
                done,
            });
        }
        if !encrypted {
            plain.push(s.backup_id);
        }
    }
    let new_kdf = match new {
        KeySpec::Key(_) => None,
        KeySpec::Passphrase(_) => match files.iter().find(|f| f.done) {
            Some(f) => f.envelope.kdf.clone(),
            None => Some(KdfParams::generate()?),
        },
    };
    let mut report = RewrapReport {
        key_id: new
            .key_id_with(new_kdf.as_ref())?
            .ok_or_else(|| Error::internal(OP, "the new key has no id"))?,
        plain,
        ..RewrapReport::default()
    };
    for mut f in files {
        if f.done {
            if !report.rewrapped.contains(&f.backup_id) && !report.already.contains(&f.backup_id) {
                report.already.push(f.backup_id);
            }
            continue;
        }
        let next = old.rewrap(
            &f.envelope,
            new,
            new_kdf.as_ref(),
            database_id,
            &f.backup_id,
        )?;
        if let Value::Map(entries) = &mut f.value {
            for (k, val) in entries.iter_mut() {
                if matches!(k, Value::Keyword(n) if n.to_string() == "format/encryption") {
                    *val = next.to_value();
                }
            }
        }
        write_edn(store, &f.key, &f.value)?;
        failpoint::hit("rewrap-file-written");
        report.already.retain(|id| *id != f.backup_id);
        if !report.rewrapped.contains(&f.backup_id) {
            report.rewrapped.push(f.backup_id);
        }
    }
    for ids in [
        &mut report.rewrapped,
        &mut report.already,
        &mut report.plain,
    ] {
        ids.sort();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::MasterKey;
    use crate::error::ErrorKind;
    use crate::ops::restore::RestoreOptions;
    use crate::ops::testing::{self, history};

    fn spec(b: u8) -> KeySpec {
        KeySpec::Key(Arc::new(MasterKey::from_bytes(&[b; 32]).unwrap()))
    }

    fn backup(store: &Arc<dyn Store>, id: &str, key: Option<KeySpec>) {
        let mut o = testing::options("db", 600, 20);
        o.backup_id = Some(id.into());
        o.encryption = key;
        testing::backup(store, o, &history(20));
    }

    fn restore(store: &Arc<dyn Store>, id: &str, key: KeySpec) -> Result<usize> {
        let o = RestoreOptions {
            database_id: "db".into(),
            backup_id: id.into(),
            verify_first: true,
            encryption: Some(key),
            ..RestoreOptions::default()
        };
        testing::restore_with(store, o).map(|(d, _)| d.len())
    }

    #[test]
    fn a_rotation_rewraps_metadata_only_and_can_be_run_again_after_a_crash() {
        let (mem, store) = testing::store();
        backup(&store, "b1", Some(spec(1)));
        backup(&store, "b2", Some(spec(1)));
        backup(&store, "p1", None);
        let chunks_before: Vec<(String, Vec<u8>)> = mem
            .list("db/")
            .unwrap()
            .into_iter()
            .filter(|o| o.key.contains("/chunks/"))
            .map(|o| (o.key.clone(), mem.get(&o.key).unwrap()))
            .collect();
        let n = restore(&store, "b1", spec(1)).unwrap();
        // A rotation killed after b1's manifest was rewritten: b1's config and b2 still old.
        let manifest = layout::backup_file("db", "b1", layout::MANIFEST);
        let config = layout::backup_file("db", "b1", layout::CONFIG);
        let old_config = mem.get(&config).unwrap();
        let r = rewrap(store.as_ref(), "db", &spec(1), &spec(2)).unwrap();
        assert_eq!(r.rewrapped, ["b1", "b2"]);
        assert_eq!(r.plain, ["p1"]);
        mem.put(&config, &old_config).unwrap();
        let half = rewrap(store.as_ref(), "db", &spec(1), &spec(2)).unwrap();
        assert_eq!(half.rewrapped, ["b1"], "the file left behind is finished");
        assert_eq!(half.already, ["b2"]);
        let again = rewrap(store.as_ref(), "db", &spec(1), &spec(2)).unwrap();
        assert!(again.rewrapped.is_empty());
        assert_eq!(again.already, ["b1", "b2"]);
        for (key, bytes) in &chunks_before {
            assert_eq!(&mem.get(key).unwrap(), bytes, "{key} was rewritten");
        }
        assert_eq!(restore(&store, "b1", spec(2)).unwrap(), n);
        assert_eq!(restore(&store, "b2", spec(2)).unwrap(), n);
        assert_eq!(
            restore(&store, "b1", spec(1)).unwrap_err().kind,
            ErrorKind::WrongKey
        );
        assert!(String::from_utf8(mem.get(&manifest).unwrap())
            .unwrap()
            .contains(&r.key_id));
        // A third key stops the rotation before anything is changed.
        let before = mem.get(&manifest).unwrap();
        let e = rewrap(store.as_ref(), "db", &spec(3), &spec(4)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongKey);
        assert_eq!(mem.get(&manifest).unwrap(), before);
        // To a passphrase and back.
        let pass = KeySpec::Passphrase(Arc::new(zeroize::Zeroizing::new(b"new words".to_vec())));
        let r = rewrap(store.as_ref(), "db", &spec(2), &pass).unwrap();
        assert_eq!(r.rewrapped, ["b1", "b2"]);
        assert_eq!(restore(&store, "b2", pass.clone()).unwrap(), n);
        let again = rewrap(store.as_ref(), "db", &spec(2), &pass).unwrap();
        assert_eq!(
            again.already,
            ["b1", "b2"],
            "a passphrase keeps its parameters"
        );
        assert_eq!(again.key_id, r.key_id);
        rewrap(store.as_ref(), "db", &pass, &spec(5)).unwrap();
        assert_eq!(restore(&store, "b1", spec(5)).unwrap(), n);
    }
}
