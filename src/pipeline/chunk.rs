//! Datom chunks: `gzip(fressian({:format/type :datom-chunk … :datoms [[e a v tx added] …]}))`.
//!
//! [`ChunkEncoder`] cuts chunks on the real encoded size: each datom is encoded into the
//! running chunk, and a datom that would push the chunk past the limit is rolled back
//! (bytes and Fressian caches) and starts the next chunk. [`decode_chunk`] reads chunks of
//! both implementations.
//!
//! Decoding trusts nothing it reads: decompression stops at [`ChunkLimits`] (the manifest's
//! uncompressed size, at most [`MAX_UNCOMPRESSED_BYTES`]), the datoms list is refused
//! beyond the manifest's datom count before it is read, the Fressian reader bounds nesting
//! and cache expansion, and all of it runs on a thread with a known stack
//! ([`DECODE_STACK_BYTES`]) rather than on the caller's, whose size nobody knows.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::codec::fressian::{self, Reader, Writer};
use crate::error::{Error, Result};
use crate::model::{Datom, Name, Value};

/// The chunk format version written into every chunk.
pub const CHUNK_FORMAT_VERSION: &str = "1.0.0";

/// Bytes reserved for the `:datoms` list's length prefix (a list code and an int).
const LIST_PREFIX_MAX: usize = 9;

/// The most encoded (uncompressed) bytes one chunk may hold, written or read: a backup
/// refuses to write a larger chunk (one datom that large), and decompression never goes
/// beyond it, whatever a manifest says.
pub const MAX_UNCOMPRESSED_BYTES: u64 = 1 << 30;

/// The most uncompressed bytes a chunk may decompress to when its manifest entry does not
/// say (the original implementation's manifests record no `:chunk/uncompressed-bytes`; its
/// chunks are far smaller).
pub const UNKNOWN_UNCOMPRESSED_BYTES: u64 = 256 << 20;

/// The most stored (compressed) bytes of one chunk: gzip of [`MAX_UNCOMPRESSED_BYTES`] at
/// level 0 (stored blocks) plus its framing.
pub const MAX_STORED_BYTES: u64 = MAX_UNCOMPRESSED_BYTES + (MAX_UNCOMPRESSED_BYTES >> 10);

/// The stack of the thread a chunk is decoded on: the Fressian reader's deepest recursion
/// ([`fressian::MAX_DEPTH`] levels) takes a fraction of it.
pub const DECODE_STACK_BYTES: usize = 4 << 20;

/// What decoding one chunk may produce, from its manifest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    /// The exact uncompressed size when the manifest records it (ours do), else `None`.
    pub uncompressed_bytes: Option<u64>,
    /// The most datoms (the manifest's count when it records one).
    pub max_datoms: Option<u64>,
}

impl ChunkLimits {
    /// No expectations beyond the hard caps.
    pub const NONE: ChunkLimits = ChunkLimits {
        uncompressed_bytes: None,
        max_datoms: None,
    };

    /// The most bytes decompression may produce.
    pub fn max_uncompressed(&self) -> u64 {
        self.uncompressed_bytes
            .unwrap_or(UNKNOWN_UNCOMPRESSED_BYTES)
            .min(MAX_UNCOMPRESSED_BYTES)
    }
}

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

    fn encoded_len(&self) -> usize {
        self.header.len() + LIST_PREFIX_MAX + self.writer.len()
    }

    fn write(&mut self, d: &Datom) -> Result<()> {
        self.writer
            .write_datom(d.e, &d.a, &d.v, d.tx, d.added)
            .map_err(|e| e.in_op(format!("encode datom {}", describe(d))))
    }

    /// Add a datom; return the chunk it completed, if adding it closed one.
    pub fn push(&mut self, d: &Datom) -> Result<Option<EncodedChunk>> {
        let mark = self.writer.mark();
        self.write(d)?;
        if self.count > 0 && self.encoded_len() > self.limit {
            self.writer.rollback(mark);
            let done = self.cut()?;
            self.write(d)?;
            self.note(d);
            return Ok(Some(done));
        }
        self.note(d);
        Ok(None)
    }

    fn note(&mut self, d: &Datom) {
        self.count += 1;
        self.max_eid = self.max_eid.max(d.e);
        self.tx_range = Some(match self.tx_range {
            Some((lo, hi)) => (lo.min(d.tx), hi.max(d.tx)),
            None => (d.tx, d.tx),
        });
    }

    fn cut(&mut self) -> Result<EncodedChunk> {
        let body = self.writer.take_output();
        let size = self.header.len() + LIST_PREFIX_MAX + body.len();
        if size as u64 > MAX_UNCOMPRESSED_BYTES {
            return Err(Error::new(
                crate::error::ErrorKind::Unsupported,
                "encode chunk",
                format!(
                    "chunk {} would hold {size} encoded bytes, more than the {MAX_UNCOMPRESSED_BYTES} a chunk may hold (a datom that large cannot be restored)",
                    self.next_id
                ),
            ));
        }
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
}

/// A short description of a datom for error messages (long values are abbreviated).
pub fn describe(d: &Datom) -> String {
    let mut v = format!("{:?}", d.v);
    if v.len() > 80 {
        let mut end = 77;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
        v.push_str("...");
    }
    format!("[{} {} {} {} {}]", d.e, d.a, v, d.tx, d.added)
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

/// Gunzip `bytes`, producing at most `max` bytes; `Corrupt` if they are not a complete
/// gzip stream or decompress to more (a decompression bomb stops at `max + 1` bytes).
pub fn gunzip(bytes: &[u8], max: u64) -> Result<Vec<u8>> {
    let op = "decompress chunk";
    let guess = (bytes.len() as u64)
        .saturating_mul(4)
        .min(max)
        .min(64 << 20);
    let mut out = Vec::with_capacity(guess as usize);
    GzDecoder::new(bytes)
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::corrupt(op, crate::error::clip(&e.to_string()).into_owned()))?;
    if out.len() as u64 > max {
        return Err(Error::corrupt(
            op,
            format!("it decompresses to more than {max} bytes"),
        ));
    }
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

/// Given the stored (gzip) bytes of a chunk and what its manifest entry allows, decode it.
///
/// `Corrupt` errors name what is wrong: not gzip, more (or other) uncompressed bytes than
/// the manifest says, not Fressian, not a datom chunk, more datoms than the manifest says,
/// or a datom that is not `[e a v tx added]`. Runs on a thread of its own with a known
/// stack ([`DECODE_STACK_BYTES`]).
pub fn decode_chunk(stored: &[u8], limits: &ChunkLimits) -> Result<DecodedChunk> {
    on_decode_stack(|| {
        let raw = gunzip(stored, limits.max_uncompressed())?;
        if let Some(n) = limits.uncompressed_bytes {
            if raw.len() as u64 != n {
                return Err(Error::corrupt(
                    "decompress chunk",
                    format!(
                        "it decompresses to {} bytes, the manifest says {n}",
                        raw.len()
                    ),
                ));
            }
        }
        decode_fressian(&raw, limits.max_datoms)
    })
}

/// Decode the Fressian bytes of a chunk (already decompressed), on a thread with a known
/// stack; at most `max_datoms` datoms.
pub fn decode_chunk_fressian(raw: &[u8], max_datoms: Option<u64>) -> Result<DecodedChunk> {
    on_decode_stack(|| decode_fressian(raw, max_datoms))
}

/// Run `f` on a new thread with a [`DECODE_STACK_BYTES`] stack and return its result.
fn on_decode_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("datacamp-decode".into())
            .stack_size(DECODE_STACK_BYTES)
            .spawn_scoped(scope, f)
            .map_err(|e| {
                Error::new(
                    crate::error::ErrorKind::Io,
                    "decode chunk",
                    format!("cannot start a decoding thread: {e}"),
                )
            })?;
        handle
            .join()
            .unwrap_or_else(|p| Err(Error::from_panic("decode chunk", p.as_ref())))
    })
}

fn decode_fressian(raw: &[u8], max_datoms: Option<u64>) -> Result<DecodedChunk> {
    let op = "decode chunk";
    let mut r = Reader::new(raw);
    let mut entries = r.begin_map().map_err(|e| e.in_op(op))?;
    let (mut id, mut kind, mut datoms) = (None, None, None);
    while r.next_item(&mut entries)? {
        let key = r.read_value()?;
        if !r.next_item(&mut entries)? {
            return Err(Error::corrupt(
                op,
                "the chunk map has a key without a value",
            ));
        }
        let is = |name: &str| matches!(&key, Value::Keyword(n) if *n == Name::parse(name));
        if is("datoms") {
            if datoms.is_some() {
                return Err(Error::corrupt(op, "the chunk has two :datoms lists"));
            }
            datoms = Some(read_datoms(&mut r, max_datoms)?);
        } else if is("chunk/id") {
            id = Some(r.read_value()?);
        } else if is("format/type") {
            kind = Some(r.read_value()?);
        } else {
            r.read_value()?;
        }
    }
    if kind != Some(Value::kw("datom-chunk")) {
        return Err(Error::corrupt(
            op,
            "not a datom chunk (:format/type is not :datom-chunk)",
        ));
    }
    let Some(Value::Long(id)) = id else {
        return Err(Error::corrupt(op, "missing :chunk/id"));
    };
    let datoms = datoms
        .ok_or_else(|| Error::corrupt(op, format!("chunk {id} has no :datoms list")))?
        .map_err(|(i, e)| Error::corrupt(op, format!("chunk {id}, datom {i}: {}", e.message)))?;
    Ok(DecodedChunk { id, datoms })
}

/// The `:datoms` list, refused as soon as it holds more than `max` datoms. A datom that does
/// not decode is reported with its index (the outer error names the chunk).
fn read_datoms(
    r: &mut Reader<'_>,
    max: Option<u64>,
) -> Result<std::result::Result<Vec<Datom>, (usize, Error)>> {
    let op = "decode chunk";
    let mut items = r
        .begin_list()
        .map_err(|e| Error::corrupt(op, format!(":datoms is not a list: {}", e.message)))?;
    let too_many = |n: u64, max: u64| {
        Error::corrupt(
            op,
            format!("the chunk holds more than the {max} datoms the manifest says ({n} at least)"),
        )
    };
    if let (Some(n), Some(max)) = (items.count(), max) {
        if n as u64 > max {
            return Err(too_many(n as u64, max));
        }
    }
    // every datom takes at least one byte: never reserve more than the input can hold
    let mut datoms = Vec::with_capacity(items.count().unwrap_or(0).min(raw_left(r)));
    while r.next_item(&mut items)? {
        if let Some(max) = max {
            if datoms.len() as u64 >= max {
                return Err(too_many(datoms.len() as u64 + 1, max));
            }
        }
        match r.read_datom() {
            Ok(d) => datoms.push(d),
            Err(e) => return Ok(Err((datoms.len(), e))),
        }
    }
    Ok(Ok(datoms))
}

fn raw_left(r: &Reader<'_>) -> usize {
    r.remaining()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::Attr;

    fn chunk_of(n: i64, v: impl Fn(i64) -> Value) -> EncodedChunk {
        let mut enc = ChunkEncoder::new(1 << 20).unwrap();
        for e in 1..=n {
            let d = Datom {
                e,
                a: Attr::Keyword(Name::parse("a/b")),
                v: v(e),
                tx: 536_870_913,
                added: true,
            };
            assert!(enc.push(&d).unwrap().is_none());
        }
        enc.finish().unwrap().unwrap()
    }

    #[test]
    fn decompression_stops_at_the_manifests_size() {
        // 64 MiB of zeros gzip to 64 KiB: a bomb for a chunk that says it has 1,000 bytes.
        let bomb = gzip(&vec![0u8; 64 << 20], 9).unwrap();
        assert!(bomb.len() < 100 << 10);
        let limits = ChunkLimits {
            uncompressed_bytes: Some(1_000),
            max_datoms: None,
        };
        let e = decode_chunk(&bomb, &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert!(e.message.contains("more than 1000 bytes"), "{e}");
        // Without a recorded size, the cap for unknown sizes applies; never beyond the hard cap.
        assert_eq!(
            ChunkLimits::NONE.max_uncompressed(),
            UNKNOWN_UNCOMPRESSED_BYTES
        );
        let huge = ChunkLimits {
            uncompressed_bytes: Some(u64::MAX),
            max_datoms: None,
        };
        assert_eq!(huge.max_uncompressed(), MAX_UNCOMPRESSED_BYTES);
        // A recorded size must be the real one.
        let c = chunk_of(3, Value::Long);
        let gz = gzip(&c.fressian, 6).unwrap();
        let exact = |n| ChunkLimits {
            uncompressed_bytes: Some(n),
            max_datoms: None,
        };
        assert!(decode_chunk(&gz, &exact(c.fressian.len() as u64)).is_ok());
        let e = decode_chunk(&gz, &exact(c.fressian.len() as u64 + 1)).unwrap_err();
        assert!(e.message.contains("the manifest says"), "{e}");
    }

    #[test]
    fn datoms_beyond_the_manifests_count_are_refused_before_they_are_read() {
        let c = chunk_of(10, Value::Long);
        let at_most = |n| decode_chunk_fressian(&c.fressian, Some(n));
        assert_eq!(at_most(10).unwrap().datoms.len(), 10);
        let e = at_most(9).unwrap_err();
        assert!(e.message.contains("more than the 9 datoms"), "{e}");
        // A list without a count up front (a closed list) is cut off at the limit too.
        let mut raw = c.fressian.clone();
        let at = raw
            .windows(2)
            .position(|w| w == [0xEC, 10])
            .expect("the :datoms list header");
        raw.splice(at..at + 2, [0xED]);
        raw.push(0xFD);
        assert_eq!(
            decode_chunk_fressian(&raw, Some(10)).unwrap().datoms.len(),
            10
        );
        assert!(decode_chunk_fressian(&raw, Some(4)).is_err());
    }

    #[test]
    fn chunks_decode_on_their_own_stack_whatever_the_callers() {
        let deep = |_| {
            let mut v = Value::Long(1);
            for _ in 0..crate::codec::MAX_DEPTH {
                v = Value::Map(vec![(Value::kw("k"), v)]);
            }
            v
        };
        let c = chunk_of(2, deep);
        let gz = gzip(&c.fressian, 6).unwrap();
        let n = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let d = decode_chunk(&gz, &ChunkLimits::NONE).unwrap();
                let n = d.datoms.len();
                std::mem::forget(d); // dropping is the caller's business, not the decoder's
                n
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(n, 2);
    }
}
