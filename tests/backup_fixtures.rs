//! Backups of the real-Datahike fixtures through the Rust pipeline (no JVM): the chunks,
//! decoded with our own decoder and concatenated, must equal each fixture's `:tx-order`
//! exactly (types included), with sorted runs spilled to disk and with tiny chunks.

#[allow(dead_code)]
#[path = "support/fixtures.rs"]
mod fixtures;

use std::sync::Arc;

use datacamp::model::{Datom, TX0};
use datacamp::ops::backup::BackupSession;
use datacamp::pipeline::chunk::{decode_chunk, gunzip, ChunkLimits};
use datacamp::store::dir::DirStore;
use datacamp::store::Store;
use fixtures::{datoms, fixture, options_sorting_in, source_datoms};

fn run(name: &str, chunk_size: usize, sort_buffer: usize) -> (Vec<Datom>, usize) {
    let fx = fixture(name);
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DirStore::open(tmp.path().join("backups")).unwrap());
    let opts = options_sorting_in(&fx, "fx", chunk_size, sort_buffer, tmp.path());
    let mut session = BackupSession::open(store.clone(), opts).unwrap();
    for d in source_datoms(&fx) {
        session.push(d).unwrap();
    }
    let result = session.finish().unwrap();
    let mut out = Vec::new();
    for c in &result.manifest.chunks {
        let key = format!("fx/{}/{}", result.manifest.backup_id, c.key);
        let stored = store.get(&key).unwrap();
        assert_eq!(datacamp::pipeline::chunk::sha256_hex(&stored), c.checksum);
        if c.datom_count > 1 {
            assert!(
                gunzip(&stored, u64::MAX).unwrap().len() <= chunk_size,
                "chunk {} too big",
                c.id
            );
        }
        let decoded = decode_chunk(&stored, &ChunkLimits::NONE).unwrap();
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
