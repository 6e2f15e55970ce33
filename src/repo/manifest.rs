//! The backup manifest (`manifest.edn`): the commit point of a backup.
//!
//! Keys follow the original Clojure datacamp so that each implementation lists, verifies
//! and restores the other's backups; extra keys (history flag, chunk order, uncompressed
//! sizes) are ignored by the original.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{kw_map, Value};

/// The manifest format version we write.
pub const FORMAT_VERSION: &str = "1.0.0";

/// How the datoms of a backup are ordered across its chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChunkOrder {
    /// Restore order (tx ascending, see `order.rs`): chunks stream straight into Datahike.
    Restore,
    /// Slices of the current db's EAVT index (the original implementation): needs a sort.
    Eavt,
}

impl ChunkOrder {
    /// The name lists and restores report for a backup of this order: `datacamp-native`
    /// (ours, restore order) or `datacamp-original` (the original implementation's EAVT).
    pub fn format_name(self) -> &'static str {
        match self {
            ChunkOrder::Restore => "datacamp-native",
            ChunkOrder::Eavt => "datacamp-original",
        }
    }
}

/// One chunk's entry in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChunkMeta {
    /// Chunk number, from 0.
    pub id: u64,
    /// Path relative to the backup folder (`chunks/datoms-N.fressian.gz`).
    pub key: String,
    /// The full object key in an object store (S3), which the original implementation
    /// reads from `:chunk/s3-key`; `None` for a directory (then `key` is written there).
    pub s3_key: Option<String>,
    /// Smallest and largest tx of its datoms (`None` for an empty chunk).
    pub tx_range: Option<(i64, i64)>,
    /// Largest entity id among its datoms.
    pub max_eid: i64,
    /// Number of datoms.
    pub datom_count: u64,
    /// Size of the stored (compressed) bytes.
    pub size_bytes: u64,
    /// Size of the encoded Fressian before compression (0 when unknown).
    pub uncompressed_bytes: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub checksum: String,
    /// SHA-256 of the encoded bytes before compression (lets a resumed backup check that
    /// it would write the same chunk without compressing it again).
    pub raw_checksum: Option<String>,
}

/// A backup's manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    /// The backup id (a UUID string for ours, `yyyyMMdd-HHmmss-xxxxxx` for the original's).
    pub backup_id: String,
    /// The database id.
    pub database_id: String,
    /// `:full` for now.
    pub backup_type: String,
    /// When the backup started, epoch millis.
    pub created_at_ms: i64,
    /// When the backup completed, epoch millis.
    pub completed_at_ms: i64,
    /// Whether the backup completed (the original writes `true` only).
    pub completed: bool,
    /// The Datahike version of the source, if known.
    pub datahike_version: Option<String>,
    /// Compression of the chunks (`gzip`).
    pub compression: String,
    /// Whether history datoms (retractions, retracted values) are included.
    pub history: bool,
    /// How datoms are ordered across chunks.
    pub order: ChunkOrder,
    /// Total datoms.
    pub datom_count: u64,
    /// Total stored bytes of the chunks.
    pub size_bytes: u64,
    /// Smallest and largest tx over all chunks.
    pub tx_range: Option<(i64, i64)>,
    /// The source database's `:max-eid`.
    pub max_eid: i64,
    /// The source database's `:max-tx`.
    pub max_tx: i64,
    /// The chunks, by id.
    pub chunks: Vec<ChunkMeta>,
}

fn tx_range_value(r: Option<(i64, i64)>) -> Value {
    match r {
        Some((a, b)) => Value::Vector(vec![Value::Long(a), Value::Long(b)]),
        None => Value::Vector(vec![Value::Nil, Value::Nil]),
    }
}

fn tx_range_of(v: Option<&Value>) -> Option<(i64, i64)> {
    let items = v?.as_seq()?;
    match items {
        [Value::Long(a), Value::Long(b)] => Some((*a, *b)),
        _ => None,
    }
}

fn opt_str(s: &Option<String>) -> Value {
    s.as_deref().map_or(Value::Nil, Value::str)
}

impl ChunkMeta {
    /// Return the chunk entry as the manifest's EDN map.
    pub fn to_value(&self) -> Value {
        kw_map([
            ("chunk/id", Value::Long(self.id as i64)),
            ("chunk/key", Value::str(&self.key)),
            (
                "chunk/s3-key",
                Value::str(self.s3_key.as_deref().unwrap_or(&self.key)),
            ),
            ("chunk/s3-etag", Value::Nil),
            ("chunk/tx-range", tx_range_value(self.tx_range)),
            ("chunk/max-eid", Value::Long(self.max_eid)),
            ("chunk/datom-count", Value::Long(self.datom_count as i64)),
            ("chunk/size-bytes", Value::Long(self.size_bytes as i64)),
            (
                "chunk/uncompressed-bytes",
                Value::Long(self.uncompressed_bytes as i64),
            ),
            ("chunk/checksum", Value::str(&self.checksum)),
            (
                "chunk/raw-checksum",
                self.raw_checksum.as_deref().map_or(Value::Nil, Value::str),
            ),
        ])
    }

    /// Parse a manifest chunk entry (ours or the original's).
    pub fn from_value(v: &Value) -> Result<Self> {
        let op = "read manifest chunk entry";
        let id = req_long(v, "chunk/id", op)?;
        let s3_key = v
            .get("chunk/s3-key")
            .and_then(Value::as_str)
            .map(String::from);
        let key = match (v.get("chunk/key"), &s3_key) {
            (Some(Value::String(k)), _) => k.clone(),
            // The original writes the full object key for S3: keep the part below the backup.
            (_, Some(k)) => k
                .rfind("chunks/")
                .map_or_else(|| k.clone(), |i| k[i..].to_owned()),
            _ => crate::repo::layout::chunk_relative(id as u64),
        };
        let s3_key = s3_key.filter(|k| *k != key);
        Ok(ChunkMeta {
            id: id as u64,
            key,
            s3_key,
            tx_range: tx_range_of(v.get("chunk/tx-range")),
            max_eid: v.get("chunk/max-eid").and_then(Value::as_long).unwrap_or(0),
            datom_count: v
                .get("chunk/datom-count")
                .and_then(Value::as_long)
                .unwrap_or(0) as u64,
            size_bytes: v
                .get("chunk/size-bytes")
                .and_then(Value::as_long)
                .unwrap_or(0) as u64,
            uncompressed_bytes: v
                .get("chunk/uncompressed-bytes")
                .and_then(Value::as_long)
                .unwrap_or(0) as u64,
            checksum: v
                .get("chunk/checksum")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::corrupt(op, format!("chunk {id} has no :chunk/checksum")))?
                .to_owned(),
            raw_checksum: v
                .get("chunk/raw-checksum")
                .and_then(Value::as_str)
                .map(String::from),
        })
    }
}

fn req_long(v: &Value, key: &str, op: &str) -> Result<i64> {
    v.get(key)
        .and_then(Value::as_long)
        .ok_or_else(|| Error::corrupt(op, format!("missing or non-integer :{key}")))
}

fn kw_name(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Keyword(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

impl Manifest {
    /// Return the manifest as an EDN map with the original implementation's keys.
    pub fn to_value(&self) -> Value {
        let duration_ms = self.completed_at_ms - self.created_at_ms;
        kw_map([
            ("backup/id", Value::str(&self.backup_id)),
            ("backup/type", Value::kw(&self.backup_type)),
            ("backup/created-at", Value::Inst(self.created_at_ms)),
            ("backup/completed", Value::Bool(self.completed)),
            ("backup/version", Value::str(FORMAT_VERSION)),
            ("backup/history?", Value::Bool(self.history)),
            ("database/id", Value::str(&self.database_id)),
            ("database/branch", Value::kw("db")),
            ("datahike/version", opt_str(&self.datahike_version)),
            ("format/version", Value::str(FORMAT_VERSION)),
            ("format/compression", Value::kw(&self.compression)),
            ("format/encryption", Value::Nil),
            ("format/serialization", Value::kw("fressian")),
            (
                "format/chunk-order",
                Value::kw(match self.order {
                    ChunkOrder::Restore => "restore",
                    ChunkOrder::Eavt => "eavt",
                }),
            ),
            ("stats/datom-count", Value::Long(self.datom_count as i64)),
            ("stats/chunk-count", Value::Long(self.chunks.len() as i64)),
            ("stats/size-bytes", Value::Long(self.size_bytes as i64)),
            ("stats/tx-range", tx_range_value(self.tx_range)),
            ("stats/max-eid", Value::Long(self.max_eid)),
            ("stats/max-tx", Value::Long(self.max_tx)),
            (
                "timing",
                kw_map([
                    ("backup-started", Value::Inst(self.created_at_ms)),
                    ("backup-completed", Value::Inst(self.completed_at_ms)),
                    ("duration-ms", Value::Long(duration_ms)),
                ]),
            ),
            (
                "chunks",
                Value::Vector(self.chunks.iter().map(ChunkMeta::to_value).collect()),
            ),
        ])
    }

    /// Parse a manifest written by us or by the original implementation.
    pub fn from_value(v: &Value) -> Result<Self> {
        let op = "read manifest";
        if !matches!(v, Value::Map(_)) {
            return Err(Error::corrupt(op, "the manifest is not a map"));
        }
        let backup_id = match v.get("backup/id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Uuid(u)) => uuid::Uuid::from_u128(*u).to_string(),
            _ => return Err(Error::corrupt(op, "missing :backup/id")),
        };
        let chunks = match v.get("chunks") {
            Some(c) => c
                .as_seq()
                .ok_or_else(|| Error::corrupt(op, ":chunks is not a vector"))?
                .iter()
                .map(ChunkMeta::from_value)
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let created_at_ms = match v.get("backup/created-at") {
            Some(Value::Inst(ms)) => *ms,
            _ => 0,
        };
        let completed_at_ms = match v.get("timing").and_then(|t| t.get("backup-completed")) {
            Some(Value::Inst(ms)) => *ms,
            _ => created_at_ms,
        };
        let order = match kw_name(v.get("format/chunk-order")).as_deref() {
            Some("restore") => ChunkOrder::Restore,
            _ => ChunkOrder::Eavt,
        };
        Ok(Manifest {
            backup_id,
            database_id: v
                .get("database/id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            backup_type: kw_name(v.get("backup/type")).unwrap_or_else(|| "full".into()),
            created_at_ms,
            completed_at_ms,
            completed: v
                .get("backup/completed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            datahike_version: v
                .get("datahike/version")
                .and_then(Value::as_str)
                .map(String::from),
            compression: kw_name(v.get("format/compression")).unwrap_or_else(|| "gzip".into()),
            history: v
                .get("backup/history?")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            order,
            datom_count: req_long(v, "stats/datom-count", op)? as u64,
            size_bytes: v
                .get("stats/size-bytes")
                .and_then(Value::as_long)
                .unwrap_or(0) as u64,
            tx_range: tx_range_of(v.get("stats/tx-range")),
            max_eid: v.get("stats/max-eid").and_then(Value::as_long).unwrap_or(0),
            max_tx: v.get("stats/max-tx").and_then(Value::as_long).unwrap_or(0),
            chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::edn;

    fn sample() -> Manifest {
        Manifest {
            backup_id: "0194-abc".into(),
            database_id: "prod".into(),
            backup_type: "full".into(),
            created_at_ms: 1_700_000_000_000,
            completed_at_ms: 1_700_000_001_234,
            completed: true,
            datahike_version: Some("0.6.1613".into()),
            compression: "gzip".into(),
            history: true,
            order: ChunkOrder::Restore,
            datom_count: 12,
            size_bytes: 300,
            tx_range: Some((536870913, 536870920)),
            max_eid: 44,
            max_tx: 536870920,
            chunks: vec![ChunkMeta {
                id: 0,
                key: "chunks/datoms-0.fressian.gz".into(),
                s3_key: None,
                tx_range: Some((536870913, 536870920)),
                max_eid: 44,
                datom_count: 12,
                size_bytes: 300,
                uncompressed_bytes: 900,
                checksum: "ab".repeat(32),
                raw_checksum: Some("cd".repeat(32)),
            }],
        }
    }

    #[test]
    fn our_manifest_round_trips_through_edn() {
        let m = sample();
        let text = edn::write_pretty(&m.to_value());
        assert_eq!(
            Manifest::from_value(&edn::parse(&text).unwrap()).unwrap(),
            m
        );
        // The original implementation reads :chunk/s3-key; for a directory it is the
        // chunk path relative to the backup folder.
        let v = m.to_value();
        let chunk = &v.get("chunks").unwrap().as_seq().unwrap()[0];
        assert_eq!(
            chunk.get("chunk/s3-key"),
            Some(&Value::str("chunks/datoms-0.fressian.gz"))
        );
    }

    #[test]
    fn the_original_implementations_manifest_parses() {
        let text = r#"{:backup/id "20250115-103000-a1b2c3" :backup/type :full
            :backup/created-at #inst "2025-01-15T10:30:00.000-00:00" :backup/completed true
            :database/id "kitchen-sink" :format/compression :gzip :stats/datom-count 4
            :stats/tx-range [nil nil] :stats/max-eid 536870942 :stats/max-tx 536870942
            :chunks [#:chunk{:id 0 :tx-range [536870913 536870942] :max-eid 536870942
                             :datom-count 4 :size-bytes 99 :checksum "00"
                             :s3-key "backups/kitchen-sink/x/chunks/datoms-0.fressian.gz"}]}"#;
        let m = Manifest::from_value(&edn::parse(text).unwrap()).unwrap();
        assert_eq!(m.order, ChunkOrder::Eavt);
        assert_eq!(m.tx_range, None);
        assert_eq!(m.chunks[0].key, "chunks/datoms-0.fressian.gz");
        assert_eq!(
            m.chunks[0].s3_key.as_deref(),
            Some("backups/kitchen-sink/x/chunks/datoms-0.fressian.gz")
        );
        assert!(!m.history);
    }
}
