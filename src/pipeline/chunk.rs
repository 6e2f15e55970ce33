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

use std::io::Read;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use crate::codec::fressian::{self, AttrIds, DatomParts, Reader, Writer};
use crate::error::{Error, Result};
use crate::model::{Attr, Datom, Name, Value};

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

/// Decompress a stored chunk, gzip or zstd as its first bytes say, producing at most `max`
/// bytes; `Corrupt` if they are neither, not a complete stream, or decompress to more.
pub fn decompress(stored: &[u8], max: u64) -> Result<Vec<u8>> {
    if stored.starts_with(&ZSTD_MAGIC) {
        unzstd(stored, max)
    } else if stored.starts_with(&GZIP_MAGIC) {
        gunzip(stored, max)
    } else {
        Err(Error::corrupt(
            "decompress chunk",
            "neither gzip nor zstd (unknown leading bytes)",
        ))
    }
}

/// Decompress a zstd stream (one or more frames), producing at most `max` bytes; `Corrupt`
/// if it is not complete or decompresses to more.
pub fn unzstd(bytes: &[u8], max: u64) -> Result<Vec<u8>> {
    bounded_read("zstd", max, bytes.len(), |out| {
        zstd::stream::read::Decoder::with_buffer(bytes)
            .and_then(|d| d.take(max.saturating_add(1)).read_to_end(out))
    })
}

/// Gzip `bytes` at `level` (0–9) as one gzip member, with libdeflate (whole-buffer: a
/// chunk is in memory anyway). At the same level it takes about 0.8x zlib's time and
/// writes about 1% fewer bytes (BENCHMARKS.md); any gzip reader reads it.
pub fn gzip(bytes: &[u8], level: u32) -> Result<Vec<u8>> {
    let level = libdeflater::CompressionLvl::new(level as i32)
        .map_err(|e| Error::internal("compress chunk", format!("gzip level {level}: {e:?}")))?;
    let mut c = libdeflater::Compressor::new(level);
    let mut out = vec![0u8; c.gzip_compress_bound(bytes.len())];
    let n = c
        .gzip_compress(bytes, &mut out)
        .map_err(|e| Error::internal("compress chunk", format!("gzip: {e:?}")))?;
    out.truncate(n);
    Ok(out)
}

/// Gunzip `bytes`, producing at most `max` bytes; `Corrupt` if they are not a complete
/// gzip stream or decompress to more (a decompression bomb stops at `max + 1` bytes).
pub fn gunzip(bytes: &[u8], max: u64) -> Result<Vec<u8>> {
    if let Some(out) = gunzip_whole(bytes, max) {
        return Ok(out);
    }
    // Whatever libdeflate did not take (a size over `max`, a broken stream, more than one
    // member) is decided, and any refusal worded, by the streaming reader.
    bounded_read("gzip", max, bytes.len(), |out| {
        GzDecoder::new(bytes)
            .take(max.saturating_add(1))
            .read_to_end(out)
    })
}

/// The fast path of [`gunzip`]: libdeflate into a buffer of the member's recorded size
/// (ISIZE, its last 4 bytes), taken only when that size is within `max` and libdeflate
/// reads one whole, intact member (it checks CRC-32 and ISIZE) that fills it exactly;
/// `None` otherwise.
fn gunzip_whole(bytes: &[u8], max: u64) -> Option<Vec<u8>> {
    let trailer: [u8; 4] = bytes.get(bytes.len().checked_sub(4)?..)?.try_into().ok()?;
    let size = u64::from(u32::from_le_bytes(trailer));
    if size > max {
        return None;
    }
    let mut out = vec![0u8; usize::try_from(size).ok()?];
    let n = libdeflater::Decompressor::new()
        .gzip_decompress(bytes, &mut out)
        .ok()?;
    (n == out.len()).then_some(out)
}

/// Run a decompressor `read` (which reads at most `max + 1` bytes into its buffer) and
/// refuse (`Corrupt`) a broken stream or one that decompresses to more than `max` bytes.
fn bounded_read(
    codec: &str,
    max: u64,
    stored_len: usize,
    read: impl FnOnce(&mut Vec<u8>) -> std::io::Result<usize>,
) -> Result<Vec<u8>> {
    let op = "decompress chunk";
    let guess = (stored_len as u64).saturating_mul(4).min(max).min(64 << 20);
    let mut out = Vec::with_capacity(guess as usize);
    read(&mut out).map_err(|e| {
        Error::corrupt(
            op,
            format!("{codec}: {}", crate::error::clip(&e.to_string())),
        )
    })?;
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

/// Given the stored (gzip or zstd) bytes of a chunk and what its manifest entry allows,
/// decode it.
///
/// `Corrupt` errors name what is wrong: neither gzip nor zstd, more (or other) uncompressed bytes than
/// the manifest says, not Fressian, not a datom chunk, more datoms than the manifest says,
/// or a datom that is not `[e a v tx added]`. Runs on a thread of its own with a known
/// stack ([`DECODE_STACK_BYTES`]) unless this is a thread from [`spawn_decoder`].
pub fn decode_chunk(stored: &[u8], limits: &ChunkLimits) -> Result<DecodedChunk> {
    let mut datoms = Vec::new();
    let id = decode_chunk_into(stored, limits, &mut collect_into(&mut datoms))?.id;
    Ok(DecodedChunk { id, datoms })
}

/// The sink of [`decode_chunk_into`]: each datom, with the chunk's attributes so far (its
/// `a` indexes them).
pub type DatomSink<'a> = dyn FnMut(DatomParts, &[Attr]) + Send + 'a;

/// A [`DatomSink`] that collects whole datoms into `datoms`.
pub fn collect_into(datoms: &mut Vec<Datom>) -> impl FnMut(DatomParts, &[Attr]) + Send + '_ {
    move |p, attrs| datoms.push(p.into_datom(attrs))
}

/// What [`decode_chunk_into`] found besides the datoms.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkHeader {
    /// The `:chunk/id` inside the chunk.
    pub id: i64,
    /// How many datoms went to the sink.
    pub datoms: u64,
    /// The chunk's attributes, which the datoms' `a` index.
    pub attrs: Vec<Attr>,
}

/// As [`decode_chunk`], handing each datom to `sink` as it is read instead of collecting
/// them (no chunk-sized vector), its attribute as an id in the chunk's table (each
/// attribute decoded once). On error, the sink may have had some of the datoms.
pub fn decode_chunk_into(
    stored: &[u8],
    limits: &ChunkLimits,
    sink: &mut DatomSink<'_>,
) -> Result<ChunkHeader> {
    on_decode_stack(|| {
        let raw = decompress(stored, limits.max_uncompressed())?;
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
        decode_fressian(&raw, limits.max_datoms, sink)
    })
}

/// Decode the Fressian bytes of a chunk (already decompressed), on a thread with a known
/// stack; at most `max_datoms` datoms.
pub fn decode_chunk_fressian(raw: &[u8], max_datoms: Option<u64>) -> Result<DecodedChunk> {
    let mut datoms = Vec::new();
    let id =
        on_decode_stack(|| decode_fressian(raw, max_datoms, &mut collect_into(&mut datoms)))?.id;
    Ok(DecodedChunk { id, datoms })
}

thread_local! {
    /// This thread was started by [`spawn_decoder`]: its stack is [`DECODE_STACK_BYTES`].
    static ON_DECODE_STACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Start a thread named `name` with a [`DECODE_STACK_BYTES`] stack running `f`: chunks it
/// decodes are decoded on it, with no thread of their own (so what a chunk's decoding
/// allocates is also freed by the thread that allocated it).
pub fn spawn_decoder<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(DECODE_STACK_BYTES)
        .spawn(move || {
            ON_DECODE_STACK.with(|on| on.set(true));
            f()
        })
}

/// Run `f` with a [`DECODE_STACK_BYTES`] stack: here on a thread from [`spawn_decoder`],
/// else on a new thread; return its result.
fn on_decode_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if ON_DECODE_STACK.with(|on| on.get()) {
        return f();
    }
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

fn decode_fressian(
    raw: &[u8],
    max_datoms: Option<u64>,
    sink: &mut DatomSink<'_>,
) -> Result<ChunkHeader> {
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
            datoms = Some(read_datoms(&mut r, max_datoms, sink)?);
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
    let (datoms, attrs) = datoms
        .ok_or_else(|| Error::corrupt(op, format!("chunk {id} has no :datoms list")))?
        .map_err(|(i, e)| Error::corrupt(op, format!("chunk {id}, datom {i}: {}", e.message)))?;
    Ok(ChunkHeader { id, datoms, attrs })
}

/// The `:datoms` list, each datom handed to `sink`, refused as soon as it holds more than
/// `max` datoms. A datom that does not decode is reported with its index (the outer error
/// names the chunk); the datoms after it are not read.
#[allow(clippy::type_complexity)]
fn read_datoms(
    r: &mut Reader<'_>,
    max: Option<u64>,
    sink: &mut DatomSink<'_>,
) -> Result<std::result::Result<(u64, Vec<Attr>), (u64, Error)>> {
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
    let mut n = 0u64;
    let mut ids = AttrIds::default();
    while r.next_item(&mut items)? {
        if let Some(max) = max {
            if n >= max {
                return Err(too_many(n + 1, max));
            }
        }
        match r.read_datom_parts(&mut ids) {
            Ok(p) => sink(p, ids.attrs()),
            Err(e) => return Ok(Err((n, e))),
        }
        n += 1;
    }
    Ok(Ok((n, ids.into_attrs())))
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
    fn gzip_at_every_level_is_one_member_another_inflater_reads_back() {
        // A chunk's worth of Fressian with repeats, as chunks have.
        let c = chunk_of(20_000, |e| Value::str(&format!("value {}", e % 977)));
        let mut sizes = Vec::new();
        for level in 0..=9 {
            let gz = gzip(&c.fressian, level).unwrap();
            assert_eq!(&gz[..2], &GZIP_MAGIC);
            // zlib-rs through flate2 (not libdeflate, which wrote it), one member exactly:
            // nothing may follow it.
            let mut rest = &gz[..];
            let mut out = Vec::new();
            flate2::bufread::GzDecoder::new(&mut rest)
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, c.fressian, "level {level}");
            assert!(
                rest.is_empty(),
                "level {level}: {} bytes after the member",
                rest.len()
            );
            sizes.push(gz.len());
        }
        // Level 0 stores, the others compress; 9 is no larger than 1.
        assert!(sizes[0] > c.fressian.len(), "{sizes:?}");
        assert!(sizes[1] < c.fressian.len() / 3, "{sizes:?}");
        assert!(sizes[9] <= sizes[1], "{sizes:?}");
        assert!(gzip(&c.fressian, 13).is_err());
    }

    #[test]
    fn gunzip_takes_libdeflate_only_for_an_intact_member_within_the_limit() {
        let c = chunk_of(5_000, |e| Value::Long(e * 7));
        let gz = gzip(&c.fressian, 6).unwrap();
        let n = c.fressian.len() as u64;
        assert_eq!(gunzip_whole(&gz, n).as_deref(), Some(&c.fressian[..]));
        // Over the limit, or broken: left to the streaming reader, which refuses them.
        assert_eq!(gunzip_whole(&gz, n - 1), None);
        assert!(gunzip(&gz, n - 1)
            .unwrap_err()
            .message
            .contains("more than"));
        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x10;
        assert_eq!(gunzip_whole(&flipped, n), None);
        assert_eq!(gunzip(&flipped, n).unwrap_err().kind, ErrorKind::Corrupt);
        // A trailer whose size is not the member's.
        let mut lying = gz.clone();
        let at = lying.len() - 4;
        lying[at..].copy_from_slice(&((n as u32) + 1).to_le_bytes());
        assert_eq!(gunzip_whole(&lying, n + 1), None);
        assert!(gunzip(&lying, n + 1).is_err());
        assert_eq!(gunzip_whole(&gz[..3], n), None);
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
            let decoded = decode_chunk(&gzip(&c.fressian, 6).unwrap(), &ChunkLimits::NONE).unwrap();
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
            decode_chunk(b"not gzip", &ChunkLimits::NONE)
                .unwrap_err()
                .kind,
            ErrorKind::Corrupt
        );
        let not_a_chunk =
            gzip(&crate::codec::fressian::encode(&Value::Long(5)).unwrap(), 6).unwrap();
        let err = decode_chunk(&not_a_chunk, &ChunkLimits::NONE).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
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
        let want = decode_chunk_fressian(&raw, None).unwrap();
        assert_eq!(want.datoms.len(), 500);
        for name in COMPRESSIONS {
            let codec = Codec::from_name(name).unwrap();
            assert_eq!(codec.name(), *name);
            let (lo, hi) = codec.levels();
            for level in [lo, codec.default_level(), hi] {
                let stored = compress(&raw, codec, level).unwrap();
                assert!(stored.len() < raw.len() || level == 0, "{name} {level}");
                assert_eq!(
                    decompress(&stored, MAX_UNCOMPRESSED_BYTES).unwrap(),
                    raw,
                    "{name} {level}"
                );
                assert_eq!(
                    decode_chunk(&stored, &ChunkLimits::NONE).unwrap(),
                    want,
                    "{name} {level}"
                );
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
            let err = decompress(cut, MAX_UNCOMPRESSED_BYTES).unwrap_err();
            assert_eq!(
                err.kind,
                crate::error::ErrorKind::Corrupt,
                "{codec:?}: {err}"
            );
            let mut flipped = stored.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0x55;
            assert!(
                decode_chunk(&flipped, &ChunkLimits::NONE).is_err(),
                "{codec:?}"
            );
        }
        let err = decompress(b"plain bytes", MAX_UNCOMPRESSED_BYTES).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Corrupt);
        assert!(err.message.contains("neither gzip nor zstd"), "{err}");
        assert!(decompress(&[], MAX_UNCOMPRESSED_BYTES).is_err());
    }
}
