//! The real-Datahike fixtures (`tests/fixtures/*.fressian`) as datoms and backup options,
//! read as `tests/backup_fixtures.rs` reads them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use datacamp::codec::fressian::Reader;
use datacamp::model::{Attr, Datom, Name, Value};
use datacamp::ops::backup::BackupOptions;
use datacamp::pipeline::order::OrderSpec;

/// The fixture `name` as a value.
pub fn fixture(name: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}.fressian"));
    let bytes = std::fs::read(&path).unwrap();
    Reader::new(&bytes).read_value().unwrap()
}

fn datom(v: &Value) -> Datom {
    let p = v.as_seq().expect("datom is a list");
    let a = match &p[1] {
        Value::Keyword(n) => Attr::Keyword(n.clone()),
        Value::Long(id) => Attr::Id(*id),
        other => panic!("attr {other:?}"),
    };
    Datom {
        e: p[0].as_long().unwrap(),
        a,
        v: p[2].clone(),
        tx: p[3].as_long().unwrap(),
        added: p[4].as_bool().unwrap(),
    }
}

/// The datoms under `key` (`"history"`, `"current"`, `"tx-order"`) of a fixture.
pub fn datoms(fx: &Value, key: &str) -> Vec<Datom> {
    fx.get(key)
        .and_then(Value::as_seq)
        .map(|s| s.iter().map(datom).collect())
        .unwrap_or_default()
}

/// The datoms a backup of the fixture receives (history if it has one), in EAVT order.
pub fn source_datoms(fx: &Value) -> Vec<Datom> {
    let key = if fx.get("history").is_some() {
        "history"
    } else {
        "current"
    };
    datoms(fx, key)
}

fn order_spec(fx: &Value) -> OrderSpec {
    let attribute_refs =
        fx.get("config").and_then(|c| c.get("attribute-refs?")) == Some(&Value::Bool(true));
    let Some(Value::Map(schema)) = fx.get("schema") else {
        panic!("no schema")
    };
    let mut ref_attrs = HashSet::new();
    let mut tx_instant = Some(Attr::Keyword(Name::parse("db/txInstant")));
    for (k, v) in schema {
        let Value::Keyword(ident) = k else { continue };
        if v.get("db/valueType") == Some(&Value::kw("db.type/ref")) {
            ref_attrs.insert(Attr::Keyword(ident.clone()));
            if let Some(id) = v.get("db/id").and_then(Value::as_long) {
                ref_attrs.insert(Attr::Id(id));
            }
        }
        if attribute_refs && ident.to_string() == "db/txInstant" {
            tx_instant = v.get("db/id").and_then(Value::as_long).map(Attr::Id);
        }
    }
    OrderSpec {
        ref_attrs,
        tx_instant,
        skip_tx0: attribute_refs,
    }
}

/// Backup options for the fixture: database id `db`, chunks of `chunk_size` bytes, sorted
/// runs spilled to `tmp`.
pub fn options(fx: &Value, db: &str, chunk_size: usize, tmp: &Path) -> BackupOptions {
    options_sorting_in(fx, db, chunk_size, 64 << 20, tmp)
}

/// Like [`options`], with a sort buffer of `sort_buffer` bytes (small ones force spills).
pub fn options_sorting_in(
    fx: &Value,
    db: &str,
    chunk_size: usize,
    sort_buffer: usize,
    tmp: &Path,
) -> BackupOptions {
    let o = datacamp::codec::edn::parse(&format!(
        "{{:database-id \"{db}\" :chunk-size {chunk_size} :sort-buffer-bytes {sort_buffer} :parallel 2}}"
    ))
    .unwrap();
    let mut opts = BackupOptions::from_edn(&o).unwrap();
    opts.order = order_spec(fx);
    opts.tmp_dir = Some(tmp.to_path_buf());
    opts.max_eid = fx.get("max-eid").and_then(Value::as_long).unwrap();
    opts.max_tx = fx.get("max-tx").and_then(Value::as_long).unwrap();
    opts
}
