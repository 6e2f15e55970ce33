//! The backup manifest (`manifest.edn`): the commit point of a backup.
//!
//! Keys follow the original Clojure datacamp so that each implementation lists, verifies
//! and restores the other's backups; extra keys (history flag, chunk order, uncompressed
//! sizes) are ignored by the original.
//!
//! A manifest is input from outside the process: [`Manifest::from_value`] refuses wrong
//! types and negative counts, and [`Manifest::validate`] is the one check of its
//! consistency (chunk ids `0..n-1` in order, totals equal to the sums, a known format,
//! type, compression and encryption record, the backup and database ids asked for) that list,
//! verify, restore and resume all run.

use std::fmt;

use serde::Serialize;

use crate::crypto::envelope::Envelope;
use crate::error::{clip, Error, ErrorKind, Result};
use crate::model::{kw_map, Value};
use crate::pipeline::chunk::MAX_STORED_BYTES;
use crate::repo::link::LinkMeta;

/// The manifest format version we write.
pub const FORMAT_VERSION: &str = "1.0.0";

/// The `:format/version`s this version reads (a manifest without one is read as 1.0.0).
pub const ACCEPTED_FORMAT_VERSIONS: &[&str] = &[FORMAT_VERSION];

/// The `:backup/type`s this version lists as complete and restores; a backup of another
/// type (a newer version's `:incremental`, …) is refused, never restored as a full one.
/// Add a type here when it is supported.
pub const ACCEPTED_TYPES: &[&str] = &["full", "incremental"];

/// The `:format/compression`s this version reads.
pub const ACCEPTED_COMPRESSIONS: &[&str] = crate::pipeline::chunk::COMPRESSIONS;

/// The most chunks one backup may have: a backup refuses to write more (raise
/// `:chunk-size`), a manifest listing more is refused. 20,000 chunks of the default 8 MiB
/// are 160 GB of encoded datoms, far beyond any Datahike database.
pub const MAX_CHUNKS: usize = 20_000;

/// The largest `manifest.edn` or `checkpoint.edn` read: one entry of [`MAX_CHUNKS`] takes at
/// most about 1.6 KiB pretty-printed (an S3 object key of 1,024 bytes included), plus the
/// top-level keys.
pub const MAX_FILE_BYTES: u64 = (64 << 10) + MAX_CHUNKS as u64 * 1_600;

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
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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
    /// Smallest and largest `:db/txInstant` (epoch ms) of the transactions that start in
    /// this chunk (`None` when none does): lets a point-in-time restore by instant find
    /// its chunk without reading the others.
    pub instant_range: Option<(i64, i64)>,
}

/// A backup's manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    /// The backup id (a UUID string for ours, `yyyyMMdd-HHmmss-xxxxxx` for the original's).
    pub backup_id: String,
    /// The database id.
    pub database_id: String,
    /// `full` or `incremental` (see [`ACCEPTED_TYPES`] and [`crate::repo::link`]).
    pub backup_type: String,
    /// `:format/version` (`"1.0.0"` when missing; see [`ACCEPTED_FORMAT_VERSIONS`]).
    pub format_version: String,
    /// `:format/encryption` when it is not nil: how the chunks are encrypted (validated by
    /// [`Manifest::validate`]; see [`crate::crypto::envelope`]).
    pub encryption: Option<Envelope>,
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
    /// `:stats/chunk-count` as written (`None` when missing); must equal `chunks.len()`.
    pub stated_chunk_count: Option<u64>,
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
    /// The backup's place in its chain (parent, base, tx and instant ranges, state).
    pub link: LinkMeta,
}

fn tx_range_value(r: Option<(i64, i64)>) -> Value {
    match r {
        Some((a, b)) => Value::Vector(vec![Value::Long(a), Value::Long(b)]),
        None => Value::Vector(vec![Value::Nil, Value::Nil]),
    }
}

/// `[min max]`, or `None` for a missing or `[nil nil]` range; anything else is `Corrupt`.
fn tx_range_of(v: Option<&Value>, op: &str) -> Result<Option<(i64, i64)>> {
    match v.map(|v| (v, v.as_seq())) {
        None | Some((Value::Nil, _)) => Ok(None),
        Some((_, Some([Value::Long(a), Value::Long(b)]))) => Ok(Some((*a, *b))),
        Some((_, Some([Value::Nil, Value::Nil]))) => Ok(None),
        Some(_) => Err(Error::corrupt(op, "a :tx-range is not [min max]")),
    }
}

/// An optional integer (nil or missing: `None`); another type is `Corrupt`.
fn opt_long(v: &Value, key: &str, op: &str) -> Result<Option<i64>> {
    match v.get(key) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Long(n)) => Ok(Some(*n)),
        Some(_) => Err(Error::corrupt(op, format!(":{key} is not an integer"))),
    }
}

/// An optional count or size (0 when missing); negative or not an integer is `Corrupt`.
fn opt_count(v: &Value, key: &str, op: &str, chunk: i64) -> Result<u64> {
    match opt_long(v, key, op)? {
        None => Ok(0),
        Some(n) if n >= 0 => Ok(n as u64),
        Some(n) => Err(Error::corrupt(
            op,
            format!("chunk {chunk}: :{key} is negative ({n})"),
        )),
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
            (
                "chunk/instant-range",
                crate::repo::link::instant_range_value(self.instant_range),
            ),
        ])
    }

    /// Parse a manifest chunk entry (ours or the original's): `Corrupt` for a missing id or
    /// checksum, a negative id, count or size, or a value of the wrong type.
    pub fn from_value(v: &Value) -> Result<Self> {
        let op = "read manifest chunk entry";
        if !matches!(v, Value::Map(_)) {
            return Err(Error::corrupt(op, "a chunk entry is not a map"));
        }
        let id = req_long(v, "chunk/id", op)?;
        if id < 0 {
            return Err(Error::corrupt(op, format!("chunk id {id} is negative")));
        }
        let count = |key: &str| opt_count(v, key, op, id);
        let s3_key = v
            .get("chunk/s3-key")
            .and_then(Value::as_str)
            .map(String::from);
        let key = match (v.get("chunk/key"), &s3_key) {
            (Some(Value::String(k)), _) => k.clone(),
            (Some(other), _) if *other != Value::Nil => {
                return Err(Error::corrupt(
                    op,
                    format!("chunk {id}: :chunk/key is not a string"),
                ))
            }
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
            tx_range: tx_range_of(v.get("chunk/tx-range"), op)?,
            max_eid: opt_long(v, "chunk/max-eid", op)?.unwrap_or(0),
            datom_count: count("chunk/datom-count")?,
            size_bytes: count("chunk/size-bytes")?,
            uncompressed_bytes: count("chunk/uncompressed-bytes")?,
            checksum: v
                .get("chunk/checksum")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::corrupt(op, format!("chunk {id} has no :chunk/checksum")))?
                .to_owned(),
            raw_checksum: v
                .get("chunk/raw-checksum")
                .and_then(Value::as_str)
                .map(String::from),
            instant_range: crate::repo::link::range_of(v.get("chunk/instant-range")),
        })
    }
}

fn req_long(v: &Value, key: &str, op: &str) -> Result<i64> {
    v.get(key)
        .and_then(Value::as_long)
        .ok_or_else(|| Error::corrupt(op, format!("missing or non-integer :{key}")))
}

fn nonneg(n: i64, key: &str, op: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::corrupt(op, format!(":{key} is negative ({n})")))
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
        let mut v = kw_map([
            ("backup/id", Value::str(&self.backup_id)),
            ("backup/type", Value::kw(&self.backup_type)),
            ("backup/created-at", Value::Inst(self.created_at_ms)),
            ("backup/completed", Value::Bool(self.completed)),
            ("backup/version", Value::str(FORMAT_VERSION)),
            ("backup/history?", Value::Bool(self.history)),
            ("database/id", Value::str(&self.database_id)),
            ("database/branch", Value::kw("db")),
            ("datahike/version", opt_str(&self.datahike_version)),
            ("format/version", Value::str(&self.format_version)),
            ("format/compression", Value::kw(&self.compression)),
            (
                "format/encryption",
                self.encryption
                    .as_ref()
                    .map_or(Value::Nil, Envelope::to_value),
            ),
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
        ]);
        if let Value::Map(entries) = &mut v {
            let link = self.link.entries(self.max_tx);
            entries.extend(link.into_iter().map(|(k, x)| (Value::kw(k), x)));
        }
        v
    }

    /// Parse a manifest written by us or by the original implementation: `Corrupt` when it
    /// is not a map, lacks its id or datom count, holds a negative count or a value of the
    /// wrong type. Consistency is [`Manifest::validate`]'s.
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
            Some(c) => {
                let items = c
                    .as_seq()
                    .ok_or_else(|| Error::corrupt(op, ":chunks is not a vector"))?;
                if items.len() > MAX_CHUNKS {
                    return Err(Error::corrupt(
                        op,
                        format!(
                            "it lists {} chunks, more than the {MAX_CHUNKS} a backup may have",
                            items.len()
                        ),
                    ));
                }
                items
                    .iter()
                    .map(ChunkMeta::from_value)
                    .collect::<Result<Vec<_>>>()?
            }
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
        let text = |key: &str, default: &str| match v.get(key) {
            None | Some(Value::Nil) => default.to_owned(),
            Some(Value::Keyword(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => crate::codec::edn::write(other),
        };
        let encryption = match v.get("format/encryption") {
            None | Some(Value::Nil) => None,
            Some(e) => Some(Envelope::from_value(e)),
        };
        let stats = |key: &str| -> Result<u64> {
            match opt_long(v, key, op)? {
                None => Ok(0),
                Some(n) => nonneg(n, key, op),
            }
        };
        Ok(Manifest {
            backup_id,
            database_id: match v.get("database/id") {
                None | Some(Value::Nil) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(Error::corrupt(op, ":database/id is not a string")),
            },
            backup_type: text("backup/type", "full"),
            format_version: text("format/version", FORMAT_VERSION),
            encryption,
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
            compression: text("format/compression", "gzip"),
            history: v
                .get("backup/history?")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            order,
            datom_count: nonneg(
                req_long(v, "stats/datom-count", op)?,
                "stats/datom-count",
                op,
            )?,
            stated_chunk_count: match opt_long(v, "stats/chunk-count", op)? {
                None => None,
                Some(n) => Some(nonneg(n, "stats/chunk-count", op)?),
            },
            size_bytes: stats("stats/size-bytes")?,
            tx_range: tx_range_of(v.get("stats/tx-range"), op)?,
            max_eid: opt_long(v, "stats/max-eid", op)?.unwrap_or(0),
            max_tx: opt_long(v, "stats/max-tx", op)?.unwrap_or(0),
            chunks,
            link: LinkMeta::from_manifest(v)?,
        })
    }

    /// Check the manifest's consistency and that it is the one asked for: the one
    /// validation list, verify, restore and resume run. Returns every problem found (empty
    /// for a good manifest): the backup and database ids are the folder's, the format
    /// version, type, compression and encryption record are known and well-formed, chunk ids are
    /// `0..n-1` in order with their standard keys, checksums are SHA-256 hex, sizes within
    /// the limits, `:stats/chunk-count`, `:stats/datom-count` and `:stats/size-bytes` equal
    /// the sums over the chunks, and tx ranges are ordered (and, for our restore-order
    /// backups, ascending from chunk to chunk).
    pub fn validate(&self, database_id: &str, backup_id: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.backup_id != backup_id {
            out.push(Problem::WrongBackupId {
                found: clip(&self.backup_id).into_owned(),
            });
        }
        if !self.database_id.is_empty() && self.database_id != database_id {
            out.push(Problem::WrongDatabaseId {
                found: clip(&self.database_id).into_owned(),
            });
        }
        if !ACCEPTED_FORMAT_VERSIONS.contains(&self.format_version.as_str()) {
            out.push(Problem::UnknownFormatVersion(
                clip(&self.format_version).into_owned(),
            ));
        }
        if !ACCEPTED_TYPES.contains(&self.backup_type.as_str()) {
            out.push(Problem::UnsupportedType(
                clip(&self.backup_type).into_owned(),
            ));
        }
        if !ACCEPTED_COMPRESSIONS.contains(&self.compression.as_str()) {
            out.push(Problem::UnsupportedCompression(
                clip(&self.compression).into_owned(),
            ));
        }
        if let Some(e) = &self.encryption {
            if !e.known_algorithm() {
                out.push(Problem::Encrypted(clip(&e.algorithm).into_owned()));
            } else if let Some(p) = e.problem() {
                out.push(Problem::Encryption(p));
            }
        }
        if let Some(n) = self.stated_chunk_count {
            if n != self.chunks.len() as u64 {
                out.push(Problem::ChunkCount {
                    stated: n,
                    listed: self.chunks.len() as u64,
                });
            }
        }
        let mut datoms = 0u64;
        let mut bytes = 0u64;
        let mut prev_range: Option<(i64, i64)> = None;
        // Chunk files are named by their codec (`.gz`, `.zst`); an unknown compression is
        // reported on its own above, its chunks then judged by the gzip name.
        let extension = crate::pipeline::chunk::Codec::from_name(&self.compression)
            .unwrap_or(crate::pipeline::chunk::Codec::Gzip)
            .extension();
        for (i, c) in self.chunks.iter().enumerate() {
            datoms = datoms.saturating_add(c.datom_count);
            bytes = bytes.saturating_add(c.size_bytes);
            if c.id != i as u64 {
                out.push(Problem::ChunkOrder {
                    position: i as u64,
                    id: c.id,
                });
                continue;
            }
            if c.key != crate::repo::layout::chunk_relative_ext(c.id, extension) {
                out.push(Problem::ChunkKey {
                    id: c.id,
                    key: clip(&c.key).into_owned(),
                });
            }
            if c.checksum.len() != 64
                || !c
                    .checksum
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                out.push(Problem::ChunkChecksum { id: c.id });
            }
            if c.size_bytes > MAX_STORED_BYTES
                || c.uncompressed_bytes > crate::pipeline::chunk::MAX_UNCOMPRESSED_BYTES
            {
                out.push(Problem::ChunkTooLarge { id: c.id });
            }
            if let Some((lo, hi)) = c.tx_range {
                let out_of_stats = self.tx_range.is_some_and(|(a, b)| lo < a || hi > b);
                let behind = self.order == ChunkOrder::Restore
                    && prev_range.is_some_and(|(_, prev_hi)| lo < prev_hi);
                if lo > hi || out_of_stats || behind || (self.max_tx > 0 && hi > self.max_tx) {
                    out.push(Problem::ChunkTxRange { id: c.id });
                }
                prev_range = Some((lo, hi));
            }
        }
        let union = self
            .chunks
            .iter()
            .filter_map(|c| c.tx_range)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        if let (Some(stated), Some(union)) = (self.tx_range, union) {
            if stated != union {
                out.push(Problem::TxRangeTotal { stated, union });
            }
        }
        let counted = self.chunks.iter().all(|c| c.datom_count > 0) || self.chunks.is_empty();
        if counted && datoms != self.datom_count {
            out.push(Problem::DatomTotal {
                stated: self.datom_count,
                sum: datoms,
            });
        }
        let sized = self.chunks.iter().all(|c| c.size_bytes > 0);
        if sized && self.size_bytes != 0 && bytes != self.size_bytes {
            out.push(Problem::SizeTotal {
                stated: self.size_bytes,
                sum: bytes,
            });
        }
        out
    }

    /// [`Manifest::validate`] as one error (the first problem and how many more), or `Ok`.
    pub fn check(&self, database_id: &str, backup_id: &str) -> Result<()> {
        let problems = self.validate(database_id, backup_id);
        match problems.first() {
            None => Ok(()),
            Some(first) => {
                let more = match problems.len() - 1 {
                    0 => String::new(),
                    n => format!(" (and {n} more problem{})", if n == 1 { "" } else { "s" }),
                };
                Err(
                    Error::new(first.kind(), "check manifest", format!("{first}{more}"))
                        .with_hint(first.hint()),
                )
            }
        }
    }
}

/// What [`Manifest::validate`] finds wrong with a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `:backup/id` is not the id of the folder the manifest was read from.
    WrongBackupId {
        /// The id the manifest names (abbreviated).
        found: String,
    },
    /// `:database/id` is not the database the backup was asked for.
    WrongDatabaseId {
        /// The id the manifest names (abbreviated).
        found: String,
    },
    /// A `:format/version` this version does not know.
    UnknownFormatVersion(String),
    /// A `:backup/type` this version does not restore ([`ACCEPTED_TYPES`]).
    UnsupportedType(String),
    /// A `:format/compression` this version does not read ([`ACCEPTED_COMPRESSIONS`]).
    UnsupportedCompression(String),
    /// `:format/encryption` names an algorithm this version does not read.
    Encrypted(String),
    /// `:format/encryption` is not a well-formed record (key id, wrapped key, KDF).
    Encryption(String),
    /// `:stats/chunk-count` is not the number of chunks listed.
    ChunkCount {
        /// What `:stats/chunk-count` says.
        stated: u64,
        /// How many chunks are listed.
        listed: u64,
    },
    /// The chunk at `position` has id `id`: ids must be `0..n-1` in order (no gap, no
    /// repeat, no swap).
    ChunkOrder {
        /// Position in `:chunks`.
        position: u64,
        /// The id found there.
        id: u64,
    },
    /// A chunk's key is not `chunks/datoms-{id}.fressian.gz`.
    ChunkKey {
        /// The chunk.
        id: u64,
        /// Its key (abbreviated).
        key: String,
    },
    /// A chunk's checksum is not 64 lowercase hex digits.
    ChunkChecksum {
        /// The chunk.
        id: u64,
    },
    /// A chunk's stored or uncompressed size is beyond what a chunk may hold.
    ChunkTooLarge {
        /// The chunk.
        id: u64,
    },
    /// A chunk's tx range is reversed, outside the backup's, or (restore order) behind the
    /// previous chunk's.
    ChunkTxRange {
        /// The chunk.
        id: u64,
    },
    /// `:stats/tx-range` is not the union of the chunks' tx ranges.
    TxRangeTotal {
        /// What `:stats/tx-range` says.
        stated: (i64, i64),
        /// The union of the chunks' ranges.
        union: (i64, i64),
    },
    /// `:stats/datom-count` is not the sum of the chunks' datom counts.
    DatomTotal {
        /// What `:stats/datom-count` says.
        stated: u64,
        /// The sum over the chunks.
        sum: u64,
    },
    /// `:stats/size-bytes` is not the sum of the chunks' sizes.
    SizeTotal {
        /// What `:stats/size-bytes` says.
        stated: u64,
        /// The sum over the chunks.
        sum: u64,
    },
}

impl Problem {
    /// The error kind a restore fails with for this problem: `Unsupported` for a backup
    /// this version cannot read (type, version, compression, encryption), `Corrupt` for the
    /// rest.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Problem::UnknownFormatVersion(_)
            | Problem::UnsupportedType(_)
            | Problem::UnsupportedCompression(_)
            | Problem::Encrypted(_) => ErrorKind::Unsupported,
            _ => ErrorKind::Corrupt,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self.kind() {
            ErrorKind::Unsupported => {
                "the backup was written by a newer or different datacamp; read it with that version"
            }
            _ => "the manifest is damaged or was edited; restore another backup (the chunks' checkpoint may allow a repair)",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::WrongBackupId { found } => write!(
                f,
                "the manifest names backup {found:?}, not the backup in whose folder it is"
            ),
            Problem::WrongDatabaseId { found } => {
                write!(f, "the manifest names database {found:?}, not the one asked for")
            }
            Problem::UnknownFormatVersion(v) => {
                write!(f, ":format/version {v:?} is not one this version reads")
            }
            Problem::UnsupportedType(t) => write!(
                f,
                ":backup/type :{t} is not supported (supported: {})",
                ACCEPTED_TYPES.join(", ")
            ),
            Problem::UnsupportedCompression(c) => {
                write!(
                    f,
                    ":format/compression :{c} is not supported (only :{})",
                    ACCEPTED_COMPRESSIONS.join(", :")
                )
            }
            Problem::Encrypted(e) => write!(
                f,
                ":format/encryption {e:?} is not an encryption this version reads (it reads {{:algorithm {:?} :key-id … :wrapped-key …}})",
                crate::crypto::ALGORITHM
            ),
            Problem::Encryption(p) => write!(f, ":format/encryption {p}"),
            Problem::ChunkCount { stated, listed } => write!(
                f,
                ":stats/chunk-count is {stated} but {listed} chunks are listed"
            ),
            Problem::ChunkOrder { position, id } => write!(
                f,
                "the chunk at position {position} has id {id}: chunk ids must be 0, 1, 2, … in order"
            ),
            Problem::ChunkKey { id, key } => {
                write!(f, "chunk {id} has the key {key:?}, not its standard key")
            }
            Problem::ChunkChecksum { id } => {
                write!(f, "chunk {id}'s :chunk/checksum is not a SHA-256 in hex")
            }
            Problem::ChunkTooLarge { id } => {
                write!(f, "chunk {id} is larger than a chunk may be")
            }
            Problem::ChunkTxRange { id } => write!(
                f,
                "chunk {id}'s :chunk/tx-range is reversed, outside the backup's, or out of order"
            ),
            Problem::TxRangeTotal { stated, union } => write!(
                f,
                ":stats/tx-range is [{} {}] but the chunks' tx ranges span [{} {}] (a chunk dropped?)",
                stated.0, stated.1, union.0, union.1
            ),
            Problem::DatomTotal { stated, sum } => write!(
                f,
                ":stats/datom-count is {stated} but the chunks' datom counts add up to {sum}"
            ),
            Problem::SizeTotal { stated, sum } => write!(
                f,
                ":stats/size-bytes is {stated} but the chunks' sizes add up to {sum}"
            ),
        }
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
            format_version: FORMAT_VERSION.into(),
            encryption: None,
            created_at_ms: 1_700_000_000_000,
            completed_at_ms: 1_700_000_001_234,
            completed: true,
            datahike_version: Some("0.6.1613".into()),
            compression: "gzip".into(),
            history: true,
            order: ChunkOrder::Restore,
            datom_count: 12,
            stated_chunk_count: Some(1),
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
                instant_range: Some((1_700_000_000_000, 1_700_000_000_500)),
            }],
            link: LinkMeta::default(),
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

    #[test]
    fn a_good_manifest_has_no_problems_and_every_inconsistency_is_named() {
        let mut m = sample();
        assert_eq!(m.validate("prod", "0194-abc"), []);
        let second = ChunkMeta {
            id: 1,
            key: "chunks/datoms-1.fressian.gz".into(),
            tx_range: Some((536870920, 536870920)),
            ..m.chunks[0].clone()
        };
        m.chunks.push(second);
        m.stated_chunk_count = Some(2);
        m.datom_count = 24;
        m.size_bytes = 600;
        assert_eq!(m.validate("prod", "0194-abc"), []);
        let problems = |f: &dyn Fn(&mut Manifest)| {
            let mut bad = m.clone();
            f(&mut bad);
            bad.validate("prod", "0194-abc")
        };
        assert_eq!(
            problems(&|m| m.chunks.swap(0, 1)),
            [
                Problem::ChunkOrder { position: 0, id: 1 },
                Problem::ChunkOrder { position: 1, id: 0 }
            ]
        );
        assert!(problems(&|m| {
            let c = m.chunks[0].clone();
            m.chunks[1] = c;
        })
        .contains(&Problem::ChunkOrder { position: 1, id: 0 }));
        assert_eq!(
            problems(&|m| {
                m.chunks.pop();
                m.datom_count = 12;
                m.size_bytes = 300;
            }),
            [Problem::ChunkCount {
                stated: 2,
                listed: 1
            }]
        );
        assert_eq!(
            problems(&|m| m.datom_count = 25),
            [Problem::DatomTotal {
                stated: 25,
                sum: 24
            }]
        );
        assert_eq!(
            problems(&|m| m.size_bytes = 1),
            [Problem::SizeTotal {
                stated: 1,
                sum: 600
            }]
        );
        assert_eq!(
            problems(&|m| m.chunks[1].key = "chunks/datoms-0.fressian.gz".into()),
            [Problem::ChunkKey {
                id: 1,
                key: "chunks/datoms-0.fressian.gz".into()
            }]
        );
        assert_eq!(
            problems(&|m| m.chunks[1].checksum = "zz".into()),
            [Problem::ChunkChecksum { id: 1 }]
        );
        assert_eq!(
            problems(&|m| m.chunks[1].tx_range = Some((536870913, 536870913))),
            [Problem::ChunkTxRange { id: 1 }],
            "restore order: ranges ascend"
        );
        assert_eq!(
            problems(&|m| m.chunks[1].uncompressed_bytes = u64::MAX),
            [Problem::ChunkTooLarge { id: 1 }]
        );
        let unsupported = problems(&|m| {
            m.format_version = "99.0.0".into();
            m.backup_type = "differential".into();
            m.compression = "lz4".into();
            m.encryption = Some(Envelope::from_value(&Value::kw("aes-gcm")));
        });
        assert_eq!(unsupported.len(), 4, "{unsupported:?}");
        assert!(unsupported
            .iter()
            .all(|p| p.kind() == ErrorKind::Unsupported));
        assert_eq!(
            m.validate("prod", "../../evil"),
            [Problem::WrongBackupId {
                found: "0194-abc".into()
            }]
        );
        assert_eq!(
            m.validate("other", "0194-abc"),
            [Problem::WrongDatabaseId {
                found: "prod".into()
            }]
        );
        let err = m.check("prod", "x").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt);
    }

    #[test]
    fn negative_counts_and_wrong_types_do_not_parse() {
        let base = edn::write(&sample().to_value());
        for (from, to) in [
            (":stats/datom-count 12", ":stats/datom-count -12"),
            (":chunk/id 0", ":chunk/id -1"),
            (":chunk/datom-count 12", ":chunk/datom-count -1"),
            (":chunk/size-bytes 300", ":chunk/size-bytes \"300\""),
            (":stats/max-tx 536870920", ":stats/max-tx 1.5"),
            (
                ":chunk/tx-range [536870913 536870920]",
                ":chunk/tx-range [1 2 3]",
            ),
        ] {
            assert!(base.contains(from), "{from}");
            let v = edn::parse(&base.replace(from, to)).unwrap();
            let err = Manifest::from_value(&v).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Corrupt, "{to}");
            assert!(!err.message.contains("18446744073709551615"), "{err}");
        }
        let v = edn::parse(&base.replace(":chunk/id 0", ":chunk/id -1")).unwrap();
        assert!(Manifest::from_value(&v)
            .unwrap_err()
            .message
            .contains("chunk id -1 is negative"));
    }
}
