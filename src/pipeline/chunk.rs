//! Datom chunks: `gzip(fressian({:format/type :datom-chunk … :datoms [[e a v tx added] …]}))`.
//!
//! [`ChunkEncoder`] cuts chunks on the real encoded size: each datom is encoded into the
//! running chunk, and a datom that would push the chunk past the limit is rolled back
//! (bytes and Fressian caches) and starts the next chunk. [`decode_chunk`] reads chunks of
//! both implementations.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::codec::fressian::{self, Reader, Writer};
use crate::error::{Error, Result};
use crate::model::{Attr, Datom, Value};

/// The chunk format version written into every chunk.
pub const CHUNK_FORMAT_VERSION: &str = "1.0.0";

/// Bytes reserved for the `:datoms` list's length prefix (a list code and an int).
const LIST_PREFIX_MAX: usize = 9;

/// One encoded (not yet compressed) chunk and what the manifest says about it.
#[derive(Debug)]
pub struct EncodedChunk {
    /// Chunk number, from 0.
    pub id: u64,
    /// The Fressian bytes of the whole chunk map.
    pub fressian: Vec<u8>,
    /// Number of datoms.
    pub datom_count: u64,
    /// Smallest and largest tx.
    pub tx_range: Option<(i64, i64)>,
    /// Largest entity id.
    pub max_eid: i64,
}

/// Cuts a stream of datoms into chunks of at most `limit` encoded bytes.
///
/// A chunk always holds at least one datom, so a single datom larger than the limit makes
/// a chunk of its own.
pub struct ChunkEncoder {
    limit: usize,
    next_id: u64,
    writer: Writer,
    header: Vec<u8>,
    count: u64,
    tx_range: Option<(i64, i64)>,
    max_eid: i64,
}

fn chunk_header(writer: &mut Writer, id: u64) -> Result<Vec<u8>> {
    writer.write_map_header(5)?;
    for (k, v) in [
        ("format/type", Value::kw("datom-chunk")),
        ("format/version", Value::str(CHUNK_FORMAT_VERSION)),
        ("format/serialization", Value::kw("fressian")),
        ("chunk/id", Value::Long(id as i64)),
    ] {
        writer.write_value(&Value::kw(k))?;
        writer.write_value(&v)?;
    }
    writer.write_value(&Value::kw("datoms"))?;
    Ok(writer.take_output())
}

impl ChunkEncoder {
    /// Given the size limit in bytes (> 0), return an encoder whose first chunk is number 0.
    pub fn new(limit: usize) -> Result<Self> {
        Self::starting_at(limit, 0)
    }

    /// Like [`ChunkEncoder::new`], numbering chunks from `first_id`.
    pub fn starting_at(limit: usize, first_id: u64) -> Result<Self> {
        let mut writer = Writer::new();
        let header = chunk_header(&mut writer, first_id)?;
        Ok(ChunkEncoder {
            limit,
            next_id: first_id,
            writer,
            header,
            count: 0,
            tx_range: None,
            max_eid: 0,
        })
    }

    /// The encoded size the open chunk would have if it were cut now (an upper bound by
    /// at most the few bytes of the list header).
    pub fn encoded_len(&self) -> usize {
        self.header.len() + LIST_PREFIX_MAX + self.writer.len()
    }

    /// The number of datoms in the open chunk.
    pub fn datom_count(&self) -> u64 {
        self.count
    }

    fn write(&mut self, e: i64, a: &Attr, v: &Value, tx: i64, added: bool) -> Result<()> {
        self.writer.write_datom(e, a, v, tx, added).map_err(|err| {
            err.in_op(format!(
                "encode datom {}",
                describe_parts(e, a, v, tx, added)
            ))
        })
    }

    /// Add a datom; return the chunk it completed, if adding it closed one.
    pub fn push(&mut self, d: &Datom) -> Result<Option<EncodedChunk>> {
        self.push_parts(d.e, &d.a, &d.v, d.tx, d.added)
    }

    /// As [`ChunkEncoder::push`], for a datom given by its parts (no [`Datom`] needed).
    pub fn push_parts(
        &mut self,
        e: i64,
        a: &Attr,
        v: &Value,
        tx: i64,
        added: bool,
    ) -> Result<Option<EncodedChunk>> {
        let mark = self.writer.mark();
        self.write(e, a, v, tx, added)?;
        if self.count > 0 && self.encoded_len() > self.limit {
            self.writer.rollback(mark);
            let done = self.cut()?;
            self.write(e, a, v, tx, added)?;
            self.note(e, tx);
            return Ok(Some(done));
        }
        self.note(e, tx);
        Ok(None)
    }

    fn note(&mut self, e: i64, tx: i64) {
        self.count += 1;
        self.max_eid = self.max_eid.max(e);
        self.tx_range = Some(match self.tx_range {
            Some((lo, hi)) => (lo.min(tx), hi.max(tx)),
            None => (tx, tx),
        });
    }

    fn cut(&mut self) -> Result<EncodedChunk> {
        let body = self.writer.take_output();
        let mut bytes = Vec::with_capacity(self.header.len() + LIST_PREFIX_MAX + body.len());
        bytes.extend_from_slice(&self.header);
        fressian::list_header(self.count as usize, &mut bytes);
        bytes.extend_from_slice(&body);
        let chunk = EncodedChunk {
            id: self.next_id,
            fressian: bytes,
            datom_count: self.count,
            tx_range: self.tx_range,
            max_eid: self.max_eid,
        };
        self.next_id += 1;
        self.writer = Writer::new();
        self.header = chunk_header(&mut self.writer, self.next_id)?;
        self.count = 0;
        self.tx_range = None;
        self.max_eid = 0;
        Ok(chunk)
    }

    /// Return the last, partial chunk (`None` if it holds no datom).
    pub fn finish(mut self) -> Result<Option<EncodedChunk>> {
        if self.count == 0 {
            return Ok(None);
        }
        self.cut().map(Some)
    }

    /// Return the open chunk even when it holds no datom (a log segment that covers
    /// transactions without datoms still needs its object).
    pub fn finish_always(mut self) -> Result<EncodedChunk> {
        self.cut()
    }
}

/// A short description of a datom for error messages (long values are abbreviated).
pub fn describe(d: &Datom) -> String {
    describe_parts(d.e, &d.a, &d.v, d.tx, d.added)
}

/// As [`describe`], for a datom given by its parts.
pub fn describe_parts(e: i64, a: &Attr, v: &Value, tx: i64, added: bool) -> String {
    let mut v = format!("{v:?}");
    if v.len() > 80 {
        let mut end = 77;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
        v.push_str("...");
    }
    format!("[{e} {a} {v} {tx} {added}]")
}

// ---------------------------------------------------------------------------------------
// Codecs (#14): gzip, the default and the original datacamp's format, and zstd, opt-in.
// `compress` and `decompress` dispatch; `gzip`/`gunzip` below are the gzip halves.
// ---------------------------------------------------------------------------------------

/// Every chunk compression this version writes and reads, by its manifest name
/// (`:format/compression`): the one list that options and manifest validation consult.
pub const COMPRESSIONS: &[&str] = &["gzip", "zstd"];

/// A chunk compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Gzip (RFC 1952), levels 0–9: the default, readable by the original datacamp.
    Gzip,
    /// Zstandard (RFC 8878), levels 1–19: opt-in, faster and smaller; only this
    /// implementation (from this version on) reads it.
    Zstd,
}

impl Codec {
    /// Given a manifest name (one of [`COMPRESSIONS`]), return the codec.
    pub fn from_name(name: &str) -> Option<Codec> {
        match name {
            "gzip" => Some(Codec::Gzip),
            "zstd" => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// The manifest name (`:format/compression`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// The chunk file extension after `.fressian.`.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Gzip => "gz",
            Codec::Zstd => "zst",
        }
    }

    /// The default level (gzip 6, as the original; zstd 3, zstd's own default).
    pub fn default_level(self) -> u32 {
        match self {
            Codec::Gzip => 6,
            Codec::Zstd => 3,
        }
    }

    /// The accepted levels, inclusive.
    pub fn levels(self) -> (u32, u32) {
        match self {
            Codec::Gzip => (0, 9),
            Codec::Zstd => (1, 19),
        }
    }
}

/// The first bytes of a zstd frame (RFC 8878 §3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// The first bytes of a gzip member (RFC 1952 §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

/// Compress a chunk's Fressian `bytes` with `codec` at `level` (within [`Codec::levels`]).
pub fn compress(bytes: &[u8], codec: Codec, level: u32) -> Result<Vec<u8>> {
    match codec {
        Codec::Gzip => gzip(bytes, level),
        Codec::Zstd => {
            // With the frame's content checksum (XXH64), as the `zstd` tool writes it.
            let mut c = zstd::bulk::Compressor::new(level as i32)
                .and_then(|mut c| {
                    c.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))?;
                    Ok(c)
                })
                .map_err(|e| Error::internal("compress chunk", e.to_string()))?;
            c.compress(bytes)
                .map_err(|e| Error::internal("compress chunk", e.to_string()))
        }
    }
}

/// Decompress a stored chunk, gzip or zstd as its first bytes say; `Corrupt` if they are
/// neither, or not a complete stream.
pub fn decompress(stored: &[u8]) -> Result<Vec<u8>> {
    if stored.starts_with(&ZSTD_MAGIC) {
        unzstd(stored)
    } else if stored.starts_with(&GZIP_MAGIC) {
        gunzip(stored)
    } else {
        Err(Error::corrupt(
            "decompress chunk",
            "neither gzip nor zstd (unknown leading bytes)",
        ))
    }
}

/// Decompress a zstd stream (one or more frames); `Corrupt` if it is not complete.
pub fn unzstd(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    zstd::stream::read::Decoder::with_buffer(bytes)
        .and_then(|mut d| d.read_to_end(&mut out))
        .map_err(|e| Error::corrupt("decompress chunk", format!("zstd: {e}")))?;
    Ok(out)
}

/// Gzip `bytes` at `level` (0–9).
pub fn gzip(bytes: &[u8], level: u32) -> Result<Vec<u8>> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::new(level),
    );
    enc.write_all(bytes)
        .and_then(|_| enc.finish())
        .map_err(|e| Error::internal("compress chunk", e.to_string()))
}

/// Gunzip `bytes`; `Corrupt` if they are not a complete gzip stream.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| Error::corrupt("decompress chunk", e.to_string()))?;
    Ok(out)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A decoded chunk.
#[derive(Debug, PartialEq)]
pub struct DecodedChunk {
    /// The `:chunk/id` inside the chunk.
    pub id: i64,
    /// The datoms, in stored order.
    pub datoms: Vec<Datom>,
}

/// Given the stored (gzip or zstd) bytes of a chunk, decode it.
///
/// `Corrupt` errors name what is wrong: neither gzip nor zstd, not Fressian, not a datom
/// chunk, or a datom that is not `[e a v tx added]`.
pub fn decode_chunk(stored: &[u8]) -> Result<DecodedChunk> {
    let raw = decompress(stored)?;
    decode_chunk_fressian(&raw)
}

/// Decode the Fressian bytes of a chunk (already decompressed).
pub fn decode_chunk_fressian(raw: &[u8]) -> Result<DecodedChunk> {
    let op = "decode chunk";
    let value = Reader::new(raw).read_value()?;
    if value.get("format/type") != Some(&Value::kw("datom-chunk")) {
        return Err(Error::corrupt(
            op,
            "not a datom chunk (:format/type is not :datom-chunk)",
        ));
    }
    let id = value
        .get("chunk/id")
        .and_then(Value::as_long)
        .ok_or_else(|| Error::corrupt(op, "missing :chunk/id"))?;
    let Some(Value::Vector(items)) = take(value, "datoms") else {
        return Err(Error::corrupt(
            op,
            format!("chunk {id} has no :datoms list"),
        ));
    };
    let datoms = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            datom_of(item).map_err(|m| Error::corrupt(op, format!("chunk {id}, datom {i}: {m}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DecodedChunk { id, datoms })
}

fn take(value: Value, key: &str) -> Option<Value> {
    let Value::Map(entries) = value else {
        return None;
    };
    let want = Value::kw(key);
    entries
        .into_iter()
        .find_map(|(k, v)| (k == want).then_some(v))
}

fn datom_of(item: Value) -> std::result::Result<Datom, String> {
    let Value::Vector(parts) = item else {
        return Err("not a list".into());
    };
    let [e, a, v, tx, added]: [Value; 5] = parts
        .try_into()
        .map_err(|p: Vec<Value>| format!("has {} elements, not 5", p.len()))?;
    let a = match a {
        Value::Keyword(n) => Attr::Keyword(n),
        Value::Long(id) => Attr::Id(id),
        other => return Err(format!("attribute {other:?} is neither keyword nor id")),
    };
    match (e, tx, added) {
        (Value::Long(e), Value::Long(tx), Value::Bool(added)) => Ok(Datom { e, a, v, tx, added }),
        (e, tx, added) => Err(format!("bad e/tx/added: {e:?} {tx:?} {added:?}")),
    }
}

#[cfg(test)]
mod encoder_tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::Name;

    fn datom(e: i64, tx: i64, text: &str) -> Datom {
        Datom {
            e,
            a: Attr::Keyword(Name::parse("doc/text")),
            v: Value::String(text.to_owned()),
            tx,
            added: true,
        }
    }

    #[test]
    fn chunks_are_cut_on_the_encoded_size_and_decode_back() {
        let datoms: Vec<Datom> = (0..500)
            .map(|i| datom(i + 1, 536870913 + i / 10, &"x".repeat((i % 37) as usize)))
            .collect();
        let limit = 2_000;
        let mut enc = ChunkEncoder::new(limit).unwrap();
        let mut chunks = Vec::new();
        for d in &datoms {
            chunks.extend(enc.push(d).unwrap());
        }
        chunks.extend(enc.finish().unwrap());
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        let mut back = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.id, i as u64);
            assert!(
                c.fressian.len() <= limit,
                "chunk {i}: {} bytes",
                c.fressian.len()
            );
            let decoded = decode_chunk(&gzip(&c.fressian, 6).unwrap()).unwrap();
            assert_eq!(decoded.id, c.id as i64);
            assert_eq!(decoded.datoms.len() as u64, c.datom_count);
            let txs = decoded.datoms.iter().map(|d| d.tx);
            assert_eq!(
                c.tx_range,
                Some((txs.clone().min().unwrap(), txs.max().unwrap()))
            );
            assert_eq!(c.max_eid, decoded.datoms.iter().map(|d| d.e).max().unwrap());
            back.extend(decoded.datoms);
        }
        assert_eq!(back, datoms);
    }

    #[test]
    fn a_datom_larger_than_the_limit_is_a_chunk_of_its_own() {
        let mut enc = ChunkEncoder::starting_at(100, 7).unwrap();
        assert!(enc.push(&datom(1, 536870913, "small")).unwrap().is_none());
        let first = enc
            .push(&datom(2, 536870913, &"big".repeat(100)))
            .unwrap()
            .unwrap();
        assert_eq!((first.id, first.datom_count), (7, 1));
        let second = enc.push(&datom(3, 536870913, "after")).unwrap().unwrap();
        assert_eq!((second.id, second.datom_count), (8, 1));
        assert!(second.fressian.len() > 100);
        let last = enc.finish().unwrap().unwrap();
        assert_eq!((last.id, last.datom_count), (9, 1));
        assert!(ChunkEncoder::new(100).unwrap().finish().unwrap().is_none());
    }

    #[test]
    fn malformed_chunks_are_corrupt() {
        assert_eq!(
            decode_chunk(b"not gzip").unwrap_err().kind,
            ErrorKind::Corrupt
        );
        let not_a_chunk =
            gzip(&crate::codec::fressian::encode(&Value::Long(5)).unwrap(), 6).unwrap();
        let err = decode_chunk(&not_a_chunk).unwrap_err();
        assert!(err.message.contains("not a datom chunk"), "{err}");
        assert_eq!(sha256_hex(b"abc").len(), 64);
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;
    use crate::model::Name;

    fn chunk_bytes() -> Vec<u8> {
        let mut enc = ChunkEncoder::new(1 << 20).unwrap();
        for e in 1..=500 {
            let d = Datom {
                e,
                a: Attr::Keyword(Name::parse("person/bio")),
                v: Value::String(format!("bio number {} of many, repeated", e % 17)),
                tx: 536_870_913 + e % 3,
                added: e % 5 != 0,
            };
            assert!(enc.push(&d).unwrap().is_none());
        }
        enc.finish().unwrap().unwrap().fressian
    }

    #[test]
    fn every_codec_round_trips_and_is_told_by_its_leading_bytes() {
        let raw = chunk_bytes();
        let want = decode_chunk_fressian(&raw).unwrap();
        assert_eq!(want.datoms.len(), 500);
        for name in COMPRESSIONS {
            let codec = Codec::from_name(name).unwrap();
            assert_eq!(codec.name(), *name);
            let (lo, hi) = codec.levels();
            for level in [lo, codec.default_level(), hi] {
                let stored = compress(&raw, codec, level).unwrap();
                assert!(stored.len() < raw.len() || level == 0, "{name} {level}");
                assert_eq!(decompress(&stored).unwrap(), raw, "{name} {level}");
                assert_eq!(decode_chunk(&stored).unwrap(), want, "{name} {level}");
            }
        }
        assert_eq!(Codec::from_name("lz4"), None);
    }

    #[test]
    fn damaged_streams_are_corrupt() {
        let raw = chunk_bytes();
        for codec in [Codec::Gzip, Codec::Zstd] {
            let stored = compress(&raw, codec, codec.default_level()).unwrap();
            let cut = &stored[..stored.len() - 7];
            let err = decompress(cut).unwrap_err();
            assert_eq!(
                err.kind,
                crate::error::ErrorKind::Corrupt,
                "{codec:?}: {err}"
            );
            let mut flipped = stored.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0x55;
            assert!(decode_chunk(&flipped).is_err(), "{codec:?}");
        }
        let err = decompress(b"plain bytes").unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Corrupt);
        assert!(err.message.contains("neither gzip nor zstd"), "{err}");
        assert!(decompress(&[]).is_err());
    }
}
