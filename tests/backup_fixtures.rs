//! Backups of the real-Datahike fixtures through the Rust pipeline (no JVM): the chunks,
//! decoded with our own decoder and concatenated, must equal each fixture's `:tx-order`
//! exactly (types included), with sorted runs spilled to disk and with tiny chunks.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use datacamp::backup::{BackupOptions, BackupSession};
use datacamp::format::chunk::{decode_chunk, gunzip};
use datacamp::format::fressian::Reader;
use datacamp::model::{Attr, Datom, Name, Value, TX0};
use datacamp::order::OrderSpec;
use datacamp::store::dir::DirStore;
use datacamp::store::Store;

fn fixture(name: &str) -> Value {
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

fn datoms(fx: &Value, key: &str) -> Vec<Datom> {
    fx.get(key)
        .and_then(Value::as_seq)
        .map(|s| s.iter().map(datom).collect())
        .unwrap_or_default()
}

/// Ref attributes and the txInstant attribute, read off the fixture's schema as the Clojure
/// wrapper reads them off a live db.
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

fn options(
    fx: &Value,
    chunk_size: usize,
    sort_buffer: usize,
    tmp: &std::path::Path,
) -> BackupOptions {
    let o = datacamp::format::edn::parse(&format!(
        "{{:database-id \"fx\" :chunk-size {chunk_size} :sort-buffer-bytes {sort_buffer} :parallel 2}}"
    ))
    .unwrap();
    let mut opts = BackupOptions::from_edn(&o).unwrap();
    opts.order = order_spec(fx);
    opts.tmp_dir = Some(tmp.to_path_buf());
    opts.max_eid = fx.get("max-eid").and_then(Value::as_long).unwrap();
    opts.max_tx = fx.get("max-tx").and_then(Value::as_long).unwrap();
    opts
}

fn run(name: &str, chunk_size: usize, sort_buffer: usize) -> (Vec<Datom>, usize) {
    let fx = fixture(name);
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(tmp.path().join("backups")).unwrap());
    let mut session = BackupSession::open(
        store.clone(),
        options(&fx, chunk_size, sort_buffer, tmp.path()),
    )
    .unwrap();
    let source = if fx.get("history").is_some() {
        datoms(&fx, "history")
    } else {
        datoms(&fx, "current")
    };
    for d in source {
        session.push(d).unwrap();
    }
    let result = session.finish().unwrap();
    let mut out = Vec::new();
    for c in &result.manifest.chunks {
        let key = format!("fx/{}/{}", result.manifest.backup_id, c.key);
        let stored = store.get(&key).unwrap();
        assert_eq!(datacamp::format::chunk::sha256_hex(&stored), c.checksum);
        if c.datom_count > 1 {
            assert!(
                gunzip(&stored).unwrap().len() <= chunk_size,
                "chunk {} too big",
                c.id
            );
        }
        let decoded = decode_chunk(&stored).unwrap();
        assert_eq!(decoded.id, c.id as i64);
        assert_eq!(decoded.datoms.len() as u64, c.datom_count);
        out.extend(decoded.datoms);
    }
    (out, result.manifest.chunks.len())
}

fn assert_tx_order(name: &str, chunk_size: usize, sort_buffer: usize) -> usize {
    let expected = datoms(&fixture(name), "tx-order");
    let (got, chunks) = run(name, chunk_size, sort_buffer);
    assert_eq!(got.len(), expected.len(), "{name}: datom count");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        // Debug output distinguishes every type and prints NaN equal to itself.
        assert_eq!(format!("{g:?}"), format!("{e:?}"), "{name}: datom {i}");
    }
    assert!(
        got.iter().all(|d| d.tx != TX0),
        "{name}: tx0 system datoms are left out"
    );
    chunks
}

#[test]
fn kitchen_sink_in_memory_and_spilled() {
    assert_eq!(assert_tx_order("kitchen-sink", 8 << 20, 64 << 20), 1);
    assert!(assert_tx_order("kitchen-sink", 300, 1 << 16) > 500);
}

#[test]
fn schema_on_read() {
    assert_tx_order("schema-on-read", 8 << 20, 1 << 16);
}

#[test]
fn no_history() {
    assert_tx_order("no-history", 2000, 1 << 16);
}

#[test]
fn attribute_refs() {
    assert_tx_order("attribute-refs", 8 << 20, 1 << 16);
}

#[test]
fn large_with_many_runs_and_chunks() {
    let chunks = assert_tx_order("large", 64 << 10, 1 << 20);
    assert!(chunks > 50, "{chunks} chunks");
}
