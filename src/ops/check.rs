//! The checks of a stored chunk against its manifest entry: one implementation, used by
//! verify, restore and resume alike, with the same messages.
//!
//! What they prove: the stored bytes are the ones the manifest describes (size, SHA-256),
//! and they decode to the chunk the manifest names (its id and datom count). Checksums
//! detect accidents (bit rot, truncation, a lost or swapped file), not an attacker who can
//! rewrite the manifest too.

use crate::error::{Error, Result};
use crate::pipeline::chunk::{self, DecodedChunk};
use crate::repo::manifest::ChunkMeta;
use crate::store::Store;

const OP: &str = "check chunk";

/// The error for a chunk the manifest lists but the store does not hold.
pub fn missing(meta: &ChunkMeta, location: String) -> Error {
    Error::corrupt(OP, format!("chunk {} is missing", meta.id)).with_key(location)
}

/// The error for a chunk whose stored size differs from the manifest's.
pub fn wrong_size(meta: &ChunkMeta, size: u64, location: String) -> Error {
    Error::corrupt(
        OP,
        format!(
            "chunk {} has {size} bytes, the manifest says {} (truncated?)",
            meta.id, meta.size_bytes
        ),
    )
    .with_key(location)
}

/// Check a stored chunk's size (when the manifest records one) against its entry.
pub fn check_size(meta: &ChunkMeta, size: u64, location: impl FnOnce() -> String) -> Result<()> {
    if meta.size_bytes != 0 && size != meta.size_bytes {
        return Err(wrong_size(meta, size, location()));
    }
    Ok(())
}

/// Check a stored chunk's bytes: size and SHA-256 against its manifest entry.
pub fn check_stored(meta: &ChunkMeta, bytes: &[u8], location: impl Fn() -> String) -> Result<()> {
    check_size(meta, bytes.len() as u64, &location)?;
    if chunk::sha256_hex(bytes) != meta.checksum {
        return Err(
            Error::corrupt(OP, format!("chunk {} fails its SHA-256 checksum", meta.id))
                .with_key(location()),
        );
    }
    Ok(())
}

/// Decode a chunk whose bytes passed [`check_stored`], and check that it is the chunk its
/// entry names: its `:chunk/id` and (when recorded) its datom count.
pub fn decode_checked(
    meta: &ChunkMeta,
    bytes: &[u8],
    location: impl Fn() -> String,
) -> Result<DecodedChunk> {
    let decoded = chunk::decode_chunk(bytes).map_err(|e| {
        Error::corrupt(
            OP,
            format!("chunk {} does not decode: {}", meta.id, e.message),
        )
        .with_key(location())
    })?;
    if decoded.id != meta.id as i64 {
        return Err(Error::corrupt(
            OP,
            format!("chunk {} holds :chunk/id {}", meta.id, decoded.id),
        )
        .with_key(location()));
    }
    if meta.datom_count != 0 && decoded.datoms.len() as u64 != meta.datom_count {
        return Err(Error::corrupt(
            OP,
            format!(
                "chunk {} holds {} datoms, the manifest says {}",
                meta.id,
                decoded.datoms.len(),
                meta.datom_count
            ),
        )
        .with_key(location()));
    }
    Ok(decoded)
}

/// Read chunk `meta` of the backup under `prefix`, check its bytes and decode it:
/// `Corrupt` (naming the chunk and its location) when it is missing or fails a check.
pub fn fetch_checked(store: &dyn Store, prefix: &str, meta: &ChunkMeta) -> Result<DecodedChunk> {
    let bytes = fetch_stored(store, prefix, meta)?;
    let key = crate::repo::layout::chunk_in(prefix, meta);
    decode_checked(meta, &bytes, || store.location(&key))
}

/// Read chunk `meta` of the backup under `prefix` and check its size and SHA-256.
pub fn fetch_stored(store: &dyn Store, prefix: &str, meta: &ChunkMeta) -> Result<Vec<u8>> {
    let key = crate::repo::layout::chunk_in(prefix, meta);
    let location = || store.location(&key);
    let bytes = store.get(&key).map_err(|e| match e.kind {
        crate::error::ErrorKind::NotFound => missing(meta, location()),
        _ => e,
    })?;
    check_stored(meta, &bytes, location)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::{Attr, Datom, Name, Value};
    use crate::pipeline::chunk::ChunkEncoder;
    use crate::store::memory::MemoryStore;

    fn stored_chunk(id: u64, n: i64) -> (ChunkMeta, Vec<u8>) {
        let mut enc = ChunkEncoder::starting_at(1 << 20, id).unwrap();
        for e in 1..=n {
            let d = Datom {
                e,
                a: Attr::Keyword(Name::parse("x/y")),
                v: Value::Long(e),
                tx: 536870913,
                added: true,
            };
            assert!(enc.push(&d).unwrap().is_none());
        }
        let c = enc.finish().unwrap().unwrap();
        let gz = chunk::gzip(&c.fressian, 6).unwrap();
        let meta = ChunkMeta {
            id,
            key: crate::repo::layout::chunk_relative(id),
            s3_key: None,
            tx_range: c.tx_range,
            max_eid: c.max_eid,
            datom_count: c.datom_count,
            size_bytes: gz.len() as u64,
            uncompressed_bytes: c.fressian.len() as u64,
            checksum: chunk::sha256_hex(&gz),
            raw_checksum: None,
            instant_range: None,
        };
        (meta, gz)
    }

    #[test]
    fn intact_chunks_pass_and_damage_is_named() {
        let store = MemoryStore::new();
        let (meta, gz) = stored_chunk(3, 10);
        let prefix = "db/b1/";
        let key = format!("{prefix}{}", meta.key);
        let err = fetch_checked(&store, prefix, &meta).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert!(err.message.contains("chunk 3 is missing"), "{err}");
        store.put(&key, &gz).unwrap();
        assert_eq!(
            fetch_checked(&store, prefix, &meta).unwrap().datoms.len(),
            10
        );
        store.put(&key, &gz[..gz.len() - 1]).unwrap();
        let err = fetch_checked(&store, prefix, &meta).unwrap_err();
        assert!(err.message.contains("chunk 3 has"), "{err}");
        let mut flipped = gz.clone();
        flipped[20] ^= 1;
        store.put(&key, &flipped).unwrap();
        let err = fetch_checked(&store, prefix, &meta).unwrap_err();
        assert!(err.message.contains("chunk 3 fails its SHA-256"), "{err}");
        assert_eq!(
            err.key.as_deref(),
            Some("memory:db/b1/chunks/datoms-3.fressian.gz")
        );
    }

    #[test]
    fn decoded_id_and_count_must_match_the_entry() {
        let (meta, gz) = stored_chunk(2, 5);
        let wrong_id = ChunkMeta {
            id: 4,
            ..meta.clone()
        };
        let err = decode_checked(&wrong_id, &gz, String::new).unwrap_err();
        assert!(err.message.contains("chunk 4 holds :chunk/id 2"), "{err}");
        let wrong_count = ChunkMeta {
            datom_count: 6,
            ..meta.clone()
        };
        let err = decode_checked(&wrong_count, &gz, String::new).unwrap_err();
        assert!(
            err.message
                .contains("chunk 2 holds 5 datoms, the manifest says 6"),
            "{err}"
        );
        let err = decode_checked(&meta, b"not gzip", String::new).unwrap_err();
        assert!(err.message.contains("chunk 2 does not decode"), "{err}");
    }
}
