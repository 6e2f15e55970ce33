//! Fressian codec, byte-compatible with `clojure.data.fressian` 1.0.0 on fressian 0.6.6.
//!
//! [`Writer`] produces exactly the bytes of `(clojure.data.fressian/write x)` (default
//! handlers, no footer) for every [`Value`] except [`Value::List`], which data.fressian cannot
//! tell from a vector: a list is written as the tagged struct [`LIST_TAG`] with one component,
//! the plain list. `clojure.data.fressian/read` returns that as an `org.fressian.TaggedObject`
//! (tag `"list"`, value a one-element `Object[]` holding a `java.util.List`).
//!
//! [`Reader`] decodes everything data.fressian writes with default handlers. Plain fressian
//! lists become [`Value::Vector`], the list tag becomes [`Value::List`].
//!
//! Format facts that matter for byte equality (all checked against the jar):
//! * strings are written per UTF-16 code unit in 1–3 bytes (supplementary characters become two
//!   3-byte surrogates) and cut into `STRING_CHUNK`s of at most 65,536 bytes, never inside a
//!   code unit (possibly between the two surrogates of a pair);
//! * keyword/symbol namespace and name are written with the priority cache; the empty string,
//!   `nil`, booleans and 1–2 byte integers are never cached;
//! * `char`, `ratio` and the list tag have no shortcut code and go through the struct cache;
//! * NaN is written with its canonical bits (`Double.doubleToLongBits`), `-0.0` as `DOUBLE_0`;
//! * maps are `MAP` + a counted list of `k v k v …`, sets `SET` + a counted list.

use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Name, Value};

/// The struct tag under which a [`Value::List`] is written (one component: the plain list).
pub const LIST_TAG: &str = "list";

/// The deepest nesting of collections, structs and cache entries that [`Reader`] accepts
/// before failing with [`ErrorKind::Corrupt`]. A value at the codecs' depth limit
/// ([`super::MAX_DEPTH`]) takes at most two levels per collection (a tag or struct and
/// its list) plus a chunk's own four (map, entries, `:datoms`, the datom): what a backup
/// writes, a restore reads. The reader recurses once per level (about 800 bytes of stack
/// each in a release build); chunks are decoded on a thread with a known stack
/// (`pipeline::chunk`), never on a caller's.
pub const MAX_DEPTH: usize = 2 * super::MAX_DEPTH + 16;

/// How far priority-cache references may expand a value beyond the input's size: a cache
/// reference of one byte copies the whole cached value, so nested references ("billion
/// laughs") could otherwise turn a few hundred bytes into gigabytes. What
/// `clojure.data.fressian` writes caches only keyword and symbol names, which the reader
/// shares instead of copying; this allowance is for other writers.
pub const EXPANSION_ALLOWANCE: usize = 1 << 20;

/// Fressian byte codes (org.fressian.impl.Codes).
mod code {
    pub const PRIORITY_CACHE_PACKED_START: u8 = 0x80;
    pub const STRUCT_CACHE_PACKED_START: u8 = 0xA0;
    pub const LONG_ARRAY: u8 = 0xB0;
    pub const DOUBLE_ARRAY: u8 = 0xB1;
    pub const BOOLEAN_ARRAY: u8 = 0xB2;
    pub const INT_ARRAY: u8 = 0xB3;
    pub const FLOAT_ARRAY: u8 = 0xB4;
    pub const OBJECT_ARRAY: u8 = 0xB5;
    pub const MAP: u8 = 0xC0;
    pub const SET: u8 = 0xC1;
    pub const UUID: u8 = 0xC3;
    pub const REGEX: u8 = 0xC4;
    pub const URI: u8 = 0xC5;
    pub const BIGINT: u8 = 0xC6;
    pub const BIGDEC: u8 = 0xC7;
    pub const INST: u8 = 0xC8;
    pub const SYM: u8 = 0xC9;
    pub const KEY: u8 = 0xCA;
    pub const GET_PRIORITY_CACHE: u8 = 0xCC;
    pub const PUT_PRIORITY_CACHE: u8 = 0xCD;
    pub const FOOTER: u8 = 0xCF;
    pub const BYTES_PACKED_LENGTH_START: u8 = 0xD0;
    pub const BYTES_CHUNK: u8 = 0xD8;
    pub const BYTES: u8 = 0xD9;
    pub const STRING_PACKED_LENGTH_START: u8 = 0xDA;
    pub const STRING_CHUNK: u8 = 0xE2;
    pub const STRING: u8 = 0xE3;
    pub const LIST_PACKED_LENGTH_START: u8 = 0xE4;
    pub const LIST: u8 = 0xEC;
    pub const BEGIN_CLOSED_LIST: u8 = 0xED;
    pub const BEGIN_OPEN_LIST: u8 = 0xEE;
    pub const STRUCTTYPE: u8 = 0xEF;
    pub const STRUCT: u8 = 0xF0;
    pub const TRUE: u8 = 0xF5;
    pub const FALSE: u8 = 0xF6;
    pub const NULL: u8 = 0xF7;
    pub const INT: u8 = 0xF8;
    pub const FLOAT: u8 = 0xF9;
    pub const DOUBLE: u8 = 0xFA;
    pub const DOUBLE_0: u8 = 0xFB;
    pub const DOUBLE_1: u8 = 0xFC;
    pub const END_COLLECTION: u8 = 0xFD;
    pub const RESET_CACHES: u8 = 0xFE;
}

/// Packed-length and chunk limits (org.fressian.impl.Ranges).
const PACKED_LENGTH_END: usize = 8;
const PRIORITY_CACHE_PACKED_END: usize = 32;
const STRUCT_CACHE_PACKED_END: usize = 16;
const BYTE_CHUNK_SIZE: usize = 65_535;
/// `FressianWriter.writeString`'s buffer never exceeds this many bytes per chunk.
const STRING_CHUNK_BYTES: usize = 65_536;

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// The struct tags this writer can emit without a shortcut code (they use the struct cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StructTag {
    Char,
    Ratio,
    List,
}

impl StructTag {
    fn name(self) -> &'static str {
        match self {
            StructTag::Char => "char",
            StructTag::Ratio => "ratio",
            StructTag::List => LIST_TAG,
        }
    }

    fn fields(self) -> i64 {
        match self {
            StructTag::Char | StructTag::List => 1,
            StructTag::Ratio => 2,
        }
    }
}

/// A saved writer state: output length and both cache sizes (see [`Writer::mark`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Absolute output position (bytes already taken + bytes buffered).
    pos: usize,
    priority: usize,
    structs: usize,
}

/// A streaming Fressian writer with the priority and struct caches of one
/// `org.fressian.FressianWriter` (i.e. of one `clojure.data.fressian/write` call).
///
/// Every `write_*` method appends to an internal buffer. Writing values one after another into
/// the same writer shares the caches, exactly as one Java writer would. The only failure is a
/// string, byte array or collection longer than Fressian's `int` counts allow (more than
/// 2^31-1 bytes or items): [`ErrorKind::Unsupported`], and the writer is left as it was before
/// the call.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    /// Bytes handed out by [`Writer::take_output`] so far.
    taken: usize,
    priority: StrCache,
    structs: Vec<StructTag>,
    scratch: Vec<u8>,
    /// Set when a length beyond `i32::MAX` was met; checked at the end of a public write.
    oversize: Option<usize>,
}

fn oversize_error(len: usize) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "encode fressian",
        format!("a string, byte array or collection of {len} bytes/items exceeds fressian's limit of 2^31-1"),
    )
}

impl Writer {
    /// Return a new writer with empty output and empty caches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Return a new writer whose output buffer has room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Writer {
            out: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Forget output and caches (the state of a fresh writer), keeping the allocations.
    pub fn reset(&mut self) {
        self.out.clear();
        self.taken = 0;
        self.priority.truncate(0);
        self.structs.clear();
        self.oversize = None;
    }

    /// Return the number of bytes buffered (written since creation or the last
    /// [`Writer::take_output`]).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Return whether no byte is buffered.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Return the buffered bytes.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Remove and return the buffered bytes; the caches are kept, so later values still
    /// refer to cache entries made by earlier ones (the stream continues).
    pub fn take_output(&mut self) -> Vec<u8> {
        self.taken += self.out.len();
        let cap = self.out.capacity();
        std::mem::replace(&mut self.out, Vec::with_capacity(cap))
    }

    /// Return the current state (output position and cache sizes) for [`Writer::rollback`].
    pub fn mark(&self) -> Mark {
        Mark {
            pos: self.taken + self.out.len(),
            priority: self.priority.len(),
            structs: self.structs.len(),
        }
    }

    /// Restore the output length and both caches to their state at `mark`, as if nothing had
    /// been written since. Bytes already removed by [`Writer::take_output`] cannot be recalled:
    /// a mark older than the last `take_output` must not be used (debug builds assert; release
    /// builds clear the buffer and restore the caches).
    pub fn rollback(&mut self, mark: Mark) {
        debug_assert!(mark.pos >= self.taken, "mark predates take_output");
        let keep = mark.pos.saturating_sub(self.taken);
        if keep < self.out.len() {
            self.out.truncate(keep);
        }
        self.priority.truncate(mark.priority);
        self.structs.truncate(mark.structs);
    }

    /// Write `v` exactly as `clojure.data.fressian/write` writes the corresponding Clojure value
    /// ([`Value::List`]: the [`LIST_TAG`] struct around a plain list). Fails only on a length
    /// beyond 2^31-1 (see the type docs), leaving the writer unchanged.
    pub fn write_value(&mut self, v: &Value) -> Result<()> {
        let mark = self.mark();
        self.put_value(v);
        self.finish(mark)
    }

    /// End a public write: on an over-long length, roll back to `mark` and fail.
    fn finish(&mut self, mark: Mark) -> Result<()> {
        match self.oversize.take() {
            None => Ok(()),
            Some(len) => {
                self.rollback(mark);
                Err(oversize_error(len))
            }
        }
    }

    #[inline]
    fn check_len(&mut self, len: usize) {
        if len > i32::MAX as usize {
            self.oversize = Some(len);
        }
    }

    fn put_value(&mut self, v: &Value) {
        match v {
            Value::Nil => self.out.push(code::NULL),
            Value::Bool(b) => self.out.push(if *b { code::TRUE } else { code::FALSE }),
            Value::Long(n) => write_int(&mut self.out, *n),
            Value::Double(d) => write_double(&mut self.out, *d),
            Value::Float(f) => {
                let bits = if f.is_nan() { 0x7fc0_0000 } else { f.to_bits() };
                self.out.push(code::FLOAT);
                self.out.extend_from_slice(&bits.to_be_bytes());
            }
            Value::String(s) => self.write_string(s),
            Value::Keyword(n) => self.write_named(code::KEY, n),
            Value::Symbol(n) => self.write_named(code::SYM, n),
            Value::Char(c) => {
                self.write_struct_tag(StructTag::Char);
                write_int(&mut self.out, i64::from(*c));
            }
            Value::Inst(ms) => {
                self.out.push(code::INST);
                write_int(&mut self.out, *ms);
            }
            Value::Uuid(u) => {
                self.out.push(code::UUID);
                write_bytes(&mut self.out, &u.to_be_bytes());
            }
            Value::BigInt(b) => {
                self.out.push(code::BIGINT);
                write_bytes(&mut self.out, minimal_twos_complement(b));
            }
            Value::BigDec { unscaled, scale } => {
                self.out.push(code::BIGDEC);
                write_bytes(&mut self.out, minimal_twos_complement(unscaled));
                write_int(&mut self.out, i64::from(*scale));
            }
            Value::Ratio { num, den } => {
                self.write_struct_tag(StructTag::Ratio);
                self.out.push(code::BIGINT);
                write_bytes(&mut self.out, minimal_twos_complement(num));
                self.out.push(code::BIGINT);
                write_bytes(&mut self.out, minimal_twos_complement(den));
            }
            Value::Bytes(b) => {
                self.check_len(b.len());
                write_bytes(&mut self.out, b);
            }
            Value::Vector(items) => self.write_items(items),
            Value::List(items) => {
                self.write_struct_tag(StructTag::List);
                self.write_items(items);
            }
            Value::Set(items) => {
                self.out.push(code::SET);
                self.write_items(items);
            }
            Value::Map(entries) => {
                self.put_map_header(entries.len());
                for (k, v) in entries {
                    self.put_value(k);
                    self.put_value(v);
                }
            }
        }
    }

    /// Write the datom `[e a v tx added]` with the same bytes as the 5-element
    /// [`Value::Vector`] of it, without building that vector. Fails only as
    /// [`Writer::write_value`] does (for `v`), leaving the writer unchanged.
    pub fn write_datom(&mut self, e: i64, a: &Attr, v: &Value, tx: i64, added: bool) -> Result<()> {
        let mark = self.mark();
        self.out.push(code::LIST_PACKED_LENGTH_START + 5);
        write_int(&mut self.out, e);
        match a {
            Attr::Keyword(n) => self.write_named(code::KEY, n),
            Attr::Id(id) => write_int(&mut self.out, *id),
        }
        self.put_value(v);
        write_int(&mut self.out, tx);
        self.out.push(if added { code::TRUE } else { code::FALSE });
        self.finish(mark)
    }

    /// Write the start of a map of `entries` key/value pairs (`MAP` and the length of the list
    /// of `2 * entries` items); the caller then writes key, value, key, value, …. Fails only if
    /// `2 * entries` exceeds 2^31-1.
    pub fn write_map_header(&mut self, entries: usize) -> Result<()> {
        let mark = self.mark();
        self.put_map_header(entries);
        self.finish(mark)
    }

    /// Write the length prefix of a plain fressian list of `count` items (see [`list_header`]);
    /// the caller then writes the items. Fails only if `count` exceeds 2^31-1.
    pub fn write_list_header(&mut self, count: usize) -> Result<()> {
        if count > i32::MAX as usize {
            return Err(oversize_error(count));
        }
        list_header(count, &mut self.out);
        Ok(())
    }

    fn put_map_header(&mut self, entries: usize) {
        self.check_len(entries.saturating_mul(2));
        self.out.push(code::MAP);
        list_header(entries.saturating_mul(2), &mut self.out);
    }

    fn write_items(&mut self, items: &[Value]) {
        self.check_len(items.len());
        list_header(items.len(), &mut self.out);
        for item in items {
            self.put_value(item);
        }
    }

    /// Keyword or symbol: shortcut code, then namespace and name with the priority cache.
    fn write_named(&mut self, tag_code: u8, n: &Name) {
        self.out.push(tag_code);
        match &n.ns {
            Some(ns) => self.write_cached_str(ns),
            None => self.out.push(code::NULL),
        }
        self.write_cached_str(&n.name);
    }

    /// `writeObject(s, true)` for a string.
    fn write_cached_str(&mut self, s: &str) {
        if s.is_empty() {
            // shouldSkipCache: the empty string is never cached
            self.out.push(code::STRING_PACKED_LENGTH_START);
            return;
        }
        match self.priority.get_or_insert(s) {
            Some(index) if index < PRIORITY_CACHE_PACKED_END => {
                self.out
                    .push(code::PRIORITY_CACHE_PACKED_START + index as u8);
            }
            Some(index) => {
                self.out.push(code::GET_PRIORITY_CACHE);
                write_int(&mut self.out, index as i64);
            }
            None => {
                self.out.push(code::PUT_PRIORITY_CACHE);
                self.write_string(s);
            }
        }
    }

    /// `FressianWriter.writeTag` for a tag without a shortcut code.
    fn write_struct_tag(&mut self, tag: StructTag) {
        match self.structs.iter().position(|t| *t == tag) {
            Some(index) if index < STRUCT_CACHE_PACKED_END => {
                self.out.push(code::STRUCT_CACHE_PACKED_START + index as u8);
            }
            Some(index) => {
                self.out.push(code::STRUCT);
                write_int(&mut self.out, index as i64);
            }
            None => {
                self.structs.push(tag);
                self.out.push(code::STRUCTTYPE);
                self.write_string(tag.name());
                write_int(&mut self.out, tag.fields());
            }
        }
    }

    /// `FressianWriter.writeString`: UTF-16 code units in 1–3 bytes, chunks of ≤ 65,536 bytes.
    fn write_string(&mut self, s: &str) {
        let bytes = s.as_bytes();
        self.check_len(bytes.len());
        // Without supplementary characters the encoding is the UTF-8 bytes themselves.
        if bytes.len() <= STRING_CHUNK_BYTES && !bytes.iter().any(|&b| b >= 0xF0) {
            string_header(&mut self.out, bytes.len(), true);
            self.out.extend_from_slice(bytes);
            return;
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let mut units = [0u16; 2];
        for ch in s.chars() {
            for &unit in ch.encode_utf16(&mut units).iter() {
                let size = utf16_unit_size(unit);
                if buf.len() + size > STRING_CHUNK_BYTES {
                    string_header(&mut self.out, buf.len(), false);
                    self.out.extend_from_slice(&buf);
                    buf.clear();
                }
                push_utf16_unit(&mut buf, unit);
            }
        }
        string_header(&mut self.out, buf.len(), true);
        self.out.extend_from_slice(&buf);
        self.scratch = buf;
    }
}

/// Write the length prefix of a plain fressian list of `count` items into `out`
/// (`LIST_PACKED_LENGTH_START + count` below 8, else `LIST` and the count). Touches no cache.
/// `count` must not exceed `i32::MAX` (Java could not read a larger count back).
pub fn list_header(count: usize, out: &mut Vec<u8>) {
    if count < PACKED_LENGTH_END {
        out.push(code::LIST_PACKED_LENGTH_START + count as u8);
    } else {
        out.push(code::LIST);
        write_int(out, count as i64);
    }
}

/// Return the bytes of `(clojure.data.fressian/write v)` (a fresh writer, no footer); fails
/// only as [`Writer::write_value`] does.
pub fn encode(v: &Value) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.write_value(v)?;
    Ok(w.take_output())
}

/// Decode the single value that makes up all of `bytes`. Trailing bytes are
/// [`ErrorKind::Corrupt`], except a fressian footer, which is [`ErrorKind::Unsupported`].
pub fn decode(bytes: &[u8]) -> Result<Value> {
    let mut r = Reader::new(bytes);
    let v = r.read_value()?;
    if r.position() != bytes.len() {
        if bytes[r.position()..].starts_with(&[code::FOOTER; 4]) {
            return Err(unsupported(
                r.position(),
                "fressian footers are not supported",
            ));
        }
        return Err(corrupt(
            r.position(),
            format!("{} trailing bytes", bytes.len() - r.position()),
        ));
    }
    Ok(v)
}

/// What copying `v` out of the priority cache costs: one per value plus the bytes of its
/// strings, names, byte arrays and numbers. Iterative (no recursion over deep values).
fn weight(v: &Value) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        let own = match v {
            Value::String(s) => s.len(),
            Value::Keyword(n) | Value::Symbol(n) => {
                n.name.len() + n.ns.as_ref().map_or(0, |s| s.len())
            }
            Value::BigInt(b) | Value::Bytes(b) => b.len(),
            Value::BigDec { unscaled, .. } => unscaled.len(),
            Value::Ratio { num, den } => num.len() + den.len(),
            Value::Vector(items) | Value::List(items) | Value::Set(items) => {
                stack.extend(items.iter());
                0
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    stack.push(k);
                    stack.push(v);
                }
                0
            }
            _ => 0,
        };
        total = total.saturating_add(1 + own);
    }
    total
}

/// The items of a list being read one at a time ([`Reader::begin_list`],
/// [`Reader::begin_map`], [`Reader::next_item`]).
#[derive(Debug)]
pub struct ListItems {
    /// Items left (`None`: until `END_COLLECTION`, or the end of input for an open list).
    left: Option<usize>,
    open: bool,
    /// Nesting levels to leave at the end.
    levels: usize,
    done: bool,
}

impl ListItems {
    /// The number of items the list declares up front, if it is a counted list.
    pub fn count(&self) -> Option<usize> {
        self.left
    }
}

/// `FressianWriter.internalWriteInt`.
fn write_int(out: &mut Vec<u8>, i: i64) {
    let be = i.to_be_bytes();
    let lz = if i < 0 { !i } else { i }.leading_zeros();
    match lz {
        0..=14 => {
            out.push(code::INT);
            out.extend_from_slice(&be);
        }
        15..=22 => {
            out.push((0x7E + (i >> 48)) as u8);
            out.extend_from_slice(&be[2..]);
        }
        23..=30 => {
            out.push((0x7A + (i >> 40)) as u8);
            out.extend_from_slice(&be[3..]);
        }
        31..=38 => {
            out.push((0x76 + (i >> 32)) as u8);
            out.extend_from_slice(&be[4..]);
        }
        39..=44 => {
            out.push((0x72 + (i >> 24)) as u8);
            out.extend_from_slice(&be[5..]);
        }
        45..=51 => {
            out.push((0x68 + (i >> 16)) as u8);
            out.extend_from_slice(&be[6..]);
        }
        52..=57 => {
            out.push((0x50 + (i >> 8)) as u8);
            out.push(be[7]);
        }
        _ => {
            if i < -1 {
                out.push((0x50 + (i >> 8)) as u8);
            }
            out.push(be[7]);
        }
    }
}

/// `FressianWriter.writeDouble` (`-0.0 == 0.0`; NaN bits canonical as `doubleToLongBits`).
fn write_double(out: &mut Vec<u8>, d: f64) {
    if d == 0.0 {
        out.push(code::DOUBLE_0);
    } else if d == 1.0 {
        out.push(code::DOUBLE_1);
    } else {
        let bits = if d.is_nan() {
            0x7ff8_0000_0000_0000
        } else {
            d.to_bits()
        };
        out.push(code::DOUBLE);
        out.extend_from_slice(&bits.to_be_bytes());
    }
}

/// `FressianWriter.writeBytes`: packed below 8, else chunks of 65,535 and a final `BYTES`.
fn write_bytes(out: &mut Vec<u8>, mut b: &[u8]) {
    if b.len() < PACKED_LENGTH_END {
        out.push(code::BYTES_PACKED_LENGTH_START + b.len() as u8);
        out.extend_from_slice(b);
        return;
    }
    while b.len() > BYTE_CHUNK_SIZE {
        out.push(code::BYTES_CHUNK);
        write_int(out, BYTE_CHUNK_SIZE as i64);
        out.extend_from_slice(&b[..BYTE_CHUNK_SIZE]);
        b = &b[BYTE_CHUNK_SIZE..];
    }
    out.push(code::BYTES);
    write_int(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// The prefix of one string chunk of `len` bytes (`last`: no more chunks follow).
fn string_header(out: &mut Vec<u8>, len: usize, last: bool) {
    if len < PACKED_LENGTH_END {
        out.push(code::STRING_PACKED_LENGTH_START + len as u8);
    } else {
        out.push(if last {
            code::STRING
        } else {
            code::STRING_CHUNK
        });
        write_int(out, len as i64);
    }
}

fn utf16_unit_size(unit: u16) -> usize {
    if unit <= 0x7F {
        1
    } else if unit <= 0x7FF {
        2
    } else {
        3
    }
}

fn push_utf16_unit(buf: &mut Vec<u8>, unit: u16) {
    if unit <= 0x7F {
        buf.push(unit as u8);
    } else if unit <= 0x7FF {
        buf.push(0xC0 | (unit >> 6 & 0x1F) as u8);
        buf.push(0x80 | (unit & 0x3F) as u8);
    } else {
        buf.push(0xE0 | (unit >> 12 & 0x0F) as u8);
        buf.push(0x80 | (unit >> 6 & 0x3F) as u8);
        buf.push(0x80 | (unit & 0x3F) as u8);
    }
}

/// The bytes `java.math.BigInteger#toByteArray` gives for the number `b` encodes (redundant
/// sign bytes dropped; empty means zero).
fn minimal_twos_complement(b: &[u8]) -> &[u8] {
    if b.is_empty() {
        return &[0];
    }
    let mut i = 0;
    while i + 1 < b.len()
        && ((b[i] == 0x00 && b[i + 1] < 0x80) || (b[i] == 0xFF && b[i + 1] >= 0x80))
    {
        i += 1;
    }
    &b[i..]
}

/// The writer's priority cache: strings → insertion index, truncatable to any earlier size.
///
/// Open addressing with linear probing over `slots` (0 = empty, else index + 1). Entries are
/// only ever removed newest-first, which restores the exact earlier table, so no tombstones.
#[derive(Debug, Default)]
struct StrCache {
    entries: Vec<(u64, Box<str>)>,
    slots: Vec<u32>,
}

impl StrCache {
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Return `Some(index)` of `s` if cached, else cache it (next index) and return `None`.
    fn get_or_insert(&mut self, s: &str) -> Option<usize> {
        let hash = hash_str(s);
        if self.slots.is_empty() {
            self.slots = vec![0; 64];
        }
        let mask = self.slots.len() - 1;
        let mut i = (hash as usize) & mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                break;
            }
            let (h, key) = &self.entries[slot as usize - 1];
            if *h == hash && **key == *s {
                return Some(slot as usize - 1);
            }
            i = (i + 1) & mask;
        }
        self.entries.push((hash, s.into()));
        self.slots[i] = self.entries.len() as u32;
        if self.entries.len() * 2 > self.slots.len() {
            self.grow();
        }
        None
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        self.slots.clear();
        self.slots.resize(size, 0);
        let mask = size - 1;
        for (n, (hash, _)) in self.entries.iter().enumerate() {
            let mut i = (*hash as usize) & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = n as u32 + 1;
        }
    }

    /// Drop every entry with index `>= n`.
    fn truncate(&mut self, n: usize) {
        if n == 0 {
            self.entries.clear();
            self.slots.iter_mut().for_each(|s| *s = 0);
            return;
        }
        let mask = self.slots.len().wrapping_sub(1);
        while self.entries.len() > n {
            let index = self.entries.len();
            let (hash, _) = self.entries.pop().expect("len > n >= 0");
            let mut i = (hash as usize) & mask;
            while self.slots[i] as usize != index {
                i = (i + 1) & mask;
            }
            self.slots[i] = 0;
        }
    }
}

/// FxHash-style string hash, finished with a multiply-xorshift so low bits are mixed.
fn hash_str(s: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = s.len() as u64;
    let mut chunks = s.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut tail = 0u64;
    for (n, &b) in chunks.remainder().iter().enumerate() {
        tail |= u64::from(b) << (8 * n);
    }
    h = (h.rotate_left(5) ^ tail).wrapping_mul(K);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// Tags the reader knows (data.fressian's read handlers + fressian's extended handlers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Key,
    Sym,
    Char,
    Ratio,
    BigInt,
    BigDec,
    Inst,
    Uuid,
    Set,
    Map,
    List,
    Byte,
    IntArray,
    LongArray,
    FloatArray,
    DoubleArray,
    BooleanArray,
    ObjectArray,
    /// A tag whose value type is outside [`Value`] (regex, uri, record, anything else).
    Unsupported,
}

impl Tag {
    fn from_name(name: &str) -> Tag {
        match name {
            "key" => Tag::Key,
            "sym" => Tag::Sym,
            "char" => Tag::Char,
            "ratio" => Tag::Ratio,
            "bigint" => Tag::BigInt,
            "bigdec" => Tag::BigDec,
            "inst" => Tag::Inst,
            "uuid" => Tag::Uuid,
            "set" => Tag::Set,
            "map" => Tag::Map,
            LIST_TAG => Tag::List,
            "byte" => Tag::Byte,
            "int[]" => Tag::IntArray,
            "long[]" => Tag::LongArray,
            "float[]" => Tag::FloatArray,
            "double[]" => Tag::DoubleArray,
            "boolean[]" => Tag::BooleanArray,
            "Object[]" => Tag::ObjectArray,
            _ => Tag::Unsupported,
        }
    }
}

#[derive(Clone, Debug)]
struct StructType {
    tag: Tag,
    /// The tag as written, for error messages about unsupported tags (shared: a struct
    /// reference of one byte never copies it).
    name: std::sync::Arc<str>,
}

/// A Fressian reader over a byte slice, with the priority and struct caches of one
/// `org.fressian.FressianReader`.
///
/// Reading values one after another shares the caches (one stream). Every malformed input
/// yields an [`ErrorKind::Corrupt`] error naming the byte offset; a well-formed value of a type
/// [`Value`] cannot hold (regex, uri, record, unknown tag) yields [`ErrorKind::Unsupported`].
/// Nesting deeper than [`MAX_DEPTH`] is treated as corrupt, and so are cache references
/// that would copy more than the input's size plus [`EXPANSION_ALLOWANCE`] (counted in
/// values and bytes). The reader never panics; after an error its position and caches are
/// unspecified, so stop reading.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// `None` while the value being cached is still being read.
    priority: Vec<Option<Value>>,
    /// The [`weight`] of each priority-cache entry (what copying it costs).
    weights: Vec<usize>,
    /// What cache references have copied so far, and the most they may copy.
    expanded: usize,
    expansion_budget: usize,
    /// Keywords/symbols read through priority-cache references: `(namespace index or
    /// [`NO_NAMESPACE`], name index)` → the name, shared by every repeat.
    names: HashMap<(usize, usize), Name, foldhash::fast::FixedState>,
    structs: Vec<StructType>,
    depth: usize,
    /// How many times the caches were reset (what [`AttrIds`] learnt before is void).
    resets: u64,
}

/// A chunk's attributes as [`Reader::read_datom_parts`] numbers them: ids from 0 in order
/// of first appearance, each attribute once.
#[derive(Debug, Default)]
pub struct AttrIds {
    /// By the cache references a repeated keyword is written with (struct, namespace or
    /// [`NO_NAMESPACE`], name), valid while the caches are those of reset `epoch`.
    by_refs: HashMap<(usize, usize, usize), u32, foldhash::fast::FixedState>,
    epoch: u64,
    by_attr: HashMap<Attr, u32, foldhash::fast::FixedState>,
    attrs: Vec<Attr>,
}

impl AttrIds {
    /// Return the attributes in id order.
    pub fn attrs(&self) -> &[Attr] {
        &self.attrs
    }

    /// Return the attributes in id order, consuming the table.
    pub fn into_attrs(self) -> Vec<Attr> {
        self.attrs
    }

    fn intern(&mut self, a: Attr) -> u32 {
        if let Some(&id) = self.by_attr.get(&a) {
            return id;
        }
        let id = self.attrs.len() as u32;
        self.by_attr.insert(a.clone(), id);
        self.attrs.push(a);
        id
    }
}

/// A datom as [`Reader::read_datom_parts`] reads it: its attribute by id in an [`AttrIds`].
#[derive(Clone, Debug, PartialEq)]
pub struct DatomParts {
    /// The entity id.
    pub e: i64,
    /// The attribute's id in the reader's [`AttrIds`].
    pub a: u32,
    /// The value.
    pub v: Value,
    /// The transaction id.
    pub tx: i64,
    /// Assertion (`true`) or retraction.
    pub added: bool,
}

impl DatomParts {
    /// The datom, its attribute taken from `attrs` (the table its `a` indexes).
    pub fn into_datom(self, attrs: &[Attr]) -> Datom {
        Datom {
            e: self.e,
            a: attrs[self.a as usize].clone(),
            v: self.v,
            tx: self.tx,
            added: self.added,
        }
    }
}

/// The namespace index of a name without namespace in [`Reader`]'s name cache.
const NO_NAMESPACE: usize = usize::MAX;

fn corrupt(pos: usize, msg: impl std::fmt::Display) -> Error {
    Error::corrupt("decode fressian", format!("{msg} at byte {pos}"))
}

fn unsupported(pos: usize, msg: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "decode fressian",
        format!("{msg} at byte {pos}"),
    )
}

impl<'a> Reader<'a> {
    /// Return a reader positioned at the start of `buf`, caches empty.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            priority: Vec::new(),
            weights: Vec::new(),
            expanded: 0,
            expansion_budget: buf.len().saturating_add(EXPANSION_ALLOWANCE),
            names: HashMap::default(),
            structs: Vec::new(),
            depth: 0,
            resets: 0,
        }
    }

    /// Return the offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Return the number of bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Return whether every byte has been read.
    pub fn is_at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Read the next value (`clojure.data.fressian/read` semantics, see the type docs).
    pub fn read_value(&mut self) -> Result<Value> {
        let code = self.next_code()?;
        self.read_with(code)
    }

    /// Start reading a plain list item by item (counted, closed or open): call
    /// [`Reader::next_item`] before each item. Lets a caller refuse a list before reading
    /// it whole (a chunk's datoms beyond the manifest's count).
    pub fn begin_list(&mut self) -> Result<ListItems> {
        let at = self.pos;
        let code = self.next_code()?;
        let (left, open) = match code {
            code::LIST_PACKED_LENGTH_START..=0xEB => (
                Some(usize::from(code - code::LIST_PACKED_LENGTH_START)),
                false,
            ),
            code::LIST => (Some(self.read_count()?), false),
            code::BEGIN_CLOSED_LIST => (None, false),
            code::BEGIN_OPEN_LIST => (None, true),
            c => return Err(corrupt(at, format!("expected a list, got code 0x{c:02X}"))),
        };
        self.enter(at)?;
        Ok(ListItems {
            left,
            open,
            levels: 1,
            done: false,
        })
    }

    /// Start reading a map (`MAP` and its list of keys and values) item by item: keys and
    /// values alternate, each announced by [`Reader::next_item`].
    pub fn begin_map(&mut self) -> Result<ListItems> {
        let at = self.pos;
        match self.next_code()? {
            code::MAP => {}
            c => return Err(corrupt(at, format!("expected a map, got code 0x{c:02X}"))),
        }
        self.enter(at)?;
        let mut items = self.begin_list()?;
        if items.left.is_some_and(|n| n % 2 != 0) {
            return Err(corrupt(at, "map: odd number of keys and values"));
        }
        items.levels += 1;
        Ok(items)
    }

    /// Whether another item of `items` follows. At the end it consumes the closing code
    /// (if any), leaves the list and returns false, as it does on every later call.
    pub fn next_item(&mut self, items: &mut ListItems) -> Result<bool> {
        if items.done {
            return Ok(false);
        }
        let more = match &mut items.left {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None if items.open && self.is_at_end() => false,
            None if self.buf.get(self.pos) == Some(&code::END_COLLECTION) => {
                self.pos += 1;
                false
            }
            None if self.is_at_end() => {
                return Err(corrupt(self.pos, "unexpected end of input in a list"))
            }
            None => true,
        };
        if !more {
            items.done = true;
            self.depth -= items.levels;
        }
        Ok(more)
    }

    /// Read the next value, which must be a datom `[e a v tx added]` (a 5-item list with
    /// integer `e`/`tx`, keyword or integer `a`, boolean `added`).
    pub fn read_datom(&mut self) -> Result<Datom> {
        let start = self.pos;
        let code = self.next_code()?;
        if code == code::LIST_PACKED_LENGTH_START + 5 {
            let (e, a, v, tx, added) =
                self.read_packed_datom(start, |r| match r.read_value()? {
                    Value::Keyword(n) => Ok(Attr::Keyword(n)),
                    Value::Long(id) => Ok(Attr::Id(id)),
                    _ => Err(corrupt(
                        start,
                        "datom attribute is not a keyword or integer",
                    )),
                })?;
            return Ok(Datom { e, a, v, tx, added });
        }
        match self.read_with(code)? {
            Value::Vector(items) if items.len() == 5 => {
                let mut it = items.into_iter();
                let mut next = || it.next().unwrap_or(Value::Nil);
                let (e, a, v, tx, added) = (next(), next(), next(), next(), next());
                match (e, a, tx, added) {
                    (Value::Long(e), a, Value::Long(tx), Value::Bool(added)) => {
                        let a = match a {
                            Value::Keyword(n) => Attr::Keyword(n),
                            Value::Long(id) => Attr::Id(id),
                            _ => {
                                return Err(corrupt(
                                    start,
                                    "datom attribute is not a keyword or integer",
                                ))
                            }
                        };
                        Ok(Datom { e, a, v, tx, added })
                    }
                    _ => Err(corrupt(start, "malformed datom")),
                }
            }
            _ => Err(corrupt(start, "expected a datom (a list of 5 items)")),
        }
    }

    /// As [`Reader::read_datom`], with the attribute as an id in `ids` (which must be used
    /// with this reader only): a keyword repeated through the caches is looked up by its
    /// cache references, not decoded and cloned again.
    pub fn read_datom_parts(&mut self, ids: &mut AttrIds) -> Result<DatomParts> {
        let start = self.pos;
        let code = self.next_code()?;
        if code == code::LIST_PACKED_LENGTH_START + 5 {
            let (e, a, v, tx, added) =
                self.read_packed_datom(start, |r| r.read_attr_id(start, ids))?;
            return Ok(DatomParts { e, a, v, tx, added });
        }
        self.pos = start;
        let d = self.read_datom()?;
        Ok(DatomParts {
            e: d.e,
            a: ids.intern(d.a),
            v: d.v,
            tx: d.tx,
            added: d.added,
        })
    }

    /// The items of a datom written as a packed 5-item list (its code at `start` read),
    /// the attribute read by `attr`.
    fn read_packed_datom<A>(
        &mut self,
        start: usize,
        attr: impl FnOnce(&mut Self) -> Result<A>,
    ) -> Result<(i64, A, Value, i64, bool)> {
        self.enter(start)?;
        let e = self.read_long()?;
        let a = attr(self)?;
        let v = self.read_value()?;
        let tx = self.read_long()?;
        let added = match self.read_value()? {
            Value::Bool(b) => b,
            _ => return Err(corrupt(start, "datom added flag is not a boolean")),
        };
        self.depth -= 1;
        Ok((e, a, v, tx, added))
    }

    /// A datom's attribute, as an id in `ids`.
    fn read_attr_id(&mut self, at: usize, ids: &mut AttrIds) -> Result<u32> {
        if ids.epoch != self.resets {
            ids.by_refs.clear();
            ids.epoch = self.resets;
        }
        let refs = self.keyword_refs();
        if let Some((key, end)) = refs {
            if let Some(&id) = ids.by_refs.get(&key) {
                self.pos = end;
                return Ok(id);
            }
        }
        let a = match self.read_value()? {
            Value::Keyword(n) => Attr::Keyword(n),
            Value::Long(id) => Attr::Id(id),
            _ => return Err(corrupt(at, "datom attribute is not a keyword or integer")),
        };
        let id = ids.intern(a);
        // The same references read later mean the same keyword (the caches only grow).
        if let Some((key, end)) = refs {
            if self.pos == end && ids.epoch == self.resets {
                ids.by_refs.insert(key, id);
            }
        }
        Ok(id)
    }

    /// If the next value is a keyword written as references only (the `KEY` code, or a
    /// packed struct reference to a keyword struct, then packed priority-cache references
    /// to its namespace — or nil — and name), those references and where they end.
    fn keyword_refs(&self) -> Option<((usize, usize, usize), usize)> {
        let packed = |c: u8, start: u8, n: usize| {
            (c >= start && usize::from(c - start) < n).then(|| usize::from(c - start))
        };
        let mut p = self.pos;
        let st = match *self.buf.get(p)? {
            code::KEY => usize::MAX,
            c => {
                let st = packed(c, code::STRUCT_CACHE_PACKED_START, STRUCT_CACHE_PACKED_END)?;
                if self.structs.get(st)?.tag != Tag::Key {
                    return None;
                }
                st
            }
        };
        p += 1;
        let ns = match *self.buf.get(p)? {
            code::NULL => NO_NAMESPACE,
            c => packed(
                c,
                code::PRIORITY_CACHE_PACKED_START,
                PRIORITY_CACHE_PACKED_END,
            )?,
        };
        p += 1;
        let name = packed(
            *self.buf.get(p)?,
            code::PRIORITY_CACHE_PACKED_START,
            PRIORITY_CACHE_PACKED_END,
        )?;
        Some(((st, ns, name), p + 1))
    }

    fn enter(&mut self, at: usize) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(corrupt(at, format!("nesting deeper than {MAX_DEPTH}")));
        }
        self.depth += 1;
        Ok(())
    }

    #[inline]
    fn next_code(&mut self) -> Result<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(corrupt(self.pos, "unexpected end of input")),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() - self.pos {
            return Err(corrupt(
                self.pos,
                format!(
                    "need {n} bytes, {} left (truncated)",
                    self.buf.len() - self.pos
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Unsigned big-endian integer of `n` (≤ 8) bytes.
    #[inline]
    fn raw_uint(&mut self, n: usize) -> Result<u64> {
        let s = self.take(n)?;
        Ok(s.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Decode an integer starting with `code`, or any value that is an integer (`readInt`).
    fn read_int_with(&mut self, code: u8) -> Result<i64> {
        let c = i64::from(code);
        Ok(match code {
            0x00..=0x3F => c,
            0xFF => -1,
            0x40..=0x5F => ((c - 0x50) << 8) | self.raw_uint(1)? as i64,
            0x60..=0x6F => ((c - 0x68) << 16) | self.raw_uint(2)? as i64,
            0x70..=0x73 => ((c - 0x72) << 24) | self.raw_uint(3)? as i64,
            0x74..=0x77 => ((c - 0x76) << 32) | self.raw_uint(4)? as i64,
            0x78..=0x7B => ((c - 0x7A) << 40) | self.raw_uint(5)? as i64,
            0x7C..=0x7F => ((c - 0x7E) << 48) | self.raw_uint(6)? as i64,
            code::INT => i64::from_be_bytes(self.take_array::<8>()?),
            _ => {
                let at = self.pos - 1;
                self.enter(at)?;
                let v = self.read_with(code)?;
                self.depth -= 1;
                match v {
                    Value::Long(n) => n,
                    _ => return Err(corrupt(at, "expected an integer")),
                }
            }
        })
    }

    fn read_long(&mut self) -> Result<i64> {
        let code = self.next_code()?;
        self.read_int_with(code)
    }

    /// `readCount`: an integer in `0..=i32::MAX`.
    fn read_count(&mut self) -> Result<usize> {
        let at = self.pos;
        let n = self.read_long()?;
        if !(0..=i64::from(i32::MAX)).contains(&n) {
            return Err(corrupt(at, format!("invalid length {n}")));
        }
        Ok(n as usize)
    }

    /// Decode the value starting with `code` (already consumed). Hot codes are handled here
    /// with a small stack frame (this function is on every level of recursion).
    fn read_with(&mut self, code: u8) -> Result<Value> {
        match code {
            0x00..=0x3F => Ok(Value::Long(i64::from(code))),
            0x40..=0x7F | 0xFF | code::INT => self.read_int_with(code).map(Value::Long),
            code::PRIORITY_CACHE_PACKED_START..=0x9F => self.cached(
                self.pos - 1,
                usize::from(code - code::PRIORITY_CACHE_PACKED_START),
            ),
            code::STRING_PACKED_LENGTH_START..=0xE1 => self
                .read_string_body(usize::from(code - code::STRING_PACKED_LENGTH_START))
                .map(Value::String),
            code::LIST_PACKED_LENGTH_START..=0xEB => self
                .read_counted_items(
                    self.pos - 1,
                    usize::from(code - code::LIST_PACKED_LENGTH_START),
                )
                .map(Value::Vector),
            code::TRUE => Ok(Value::Bool(true)),
            code::FALSE => Ok(Value::Bool(false)),
            code::NULL => Ok(Value::Nil),
            code::DOUBLE_0 => Ok(Value::Double(0.0)),
            code::DOUBLE_1 => Ok(Value::Double(1.0)),
            _ => self.read_rare(code),
        }
    }

    /// The codes [`Reader::read_with`] leaves out; every arm is a single call so the frame
    /// stays small in unoptimized builds too.
    #[inline(never)]
    fn read_rare(&mut self, code: u8) -> Result<Value> {
        let at = self.pos - 1;
        match code {
            code::STRUCT_CACHE_PACKED_START..=0xAF => {
                self.read_cached_struct(at, usize::from(code - code::STRUCT_CACHE_PACKED_START))
            }
            code::LONG_ARRAY => self.read_struct(at, Tag::LongArray, "long[]"),
            code::DOUBLE_ARRAY => self.read_struct(at, Tag::DoubleArray, "double[]"),
            code::BOOLEAN_ARRAY => self.read_struct(at, Tag::BooleanArray, "boolean[]"),
            code::INT_ARRAY => self.read_struct(at, Tag::IntArray, "int[]"),
            code::FLOAT_ARRAY => self.read_struct(at, Tag::FloatArray, "float[]"),
            code::OBJECT_ARRAY => self.read_struct(at, Tag::ObjectArray, "Object[]"),
            code::MAP => self.read_struct(at, Tag::Map, "map"),
            code::SET => self.read_struct(at, Tag::Set, "set"),
            code::UUID => self.read_struct(at, Tag::Uuid, "uuid"),
            code::REGEX => self.read_struct(at, Tag::Unsupported, "regex"),
            code::URI => self.read_struct(at, Tag::Unsupported, "uri"),
            code::BIGINT => self.read_struct(at, Tag::BigInt, "bigint"),
            code::BIGDEC => self.read_struct(at, Tag::BigDec, "bigdec"),
            code::INST => self.read_struct(at, Tag::Inst, "inst"),
            code::SYM => self.read_struct(at, Tag::Sym, "sym"),
            code::KEY => self.read_struct(at, Tag::Key, "key"),
            code::GET_PRIORITY_CACHE => self.read_get_cache(at),
            code::PUT_PRIORITY_CACHE => self.read_put_cache(at),
            code::FOOTER => Err(unsupported(at, "fressian footers are not supported")),
            code::BYTES_PACKED_LENGTH_START..=0xD7 => self
                .read_bytes_body(usize::from(code - code::BYTES_PACKED_LENGTH_START))
                .map(Value::Bytes),
            code::BYTES => self.read_counted_bytes().map(Value::Bytes),
            code::BYTES_CHUNK => self.read_chunked_bytes().map(Value::Bytes),
            code::STRING => self.read_counted_string().map(Value::String),
            code::STRING_CHUNK => self.read_chunked_string().map(Value::String),
            code::LIST => self.read_list_counted(at).map(Value::Vector),
            code::BEGIN_CLOSED_LIST => self.read_terminated_items(at, false).map(Value::Vector),
            code::BEGIN_OPEN_LIST => self.read_terminated_items(at, true).map(Value::Vector),
            code::STRUCTTYPE => self.read_structtype(at),
            code::STRUCT => self.read_struct_ref(at),
            code::FLOAT => self.read_float(),
            code::DOUBLE => self.read_double(),
            code::RESET_CACHES => self.read_after_reset(at),
            _ => Err(corrupt(at, format!("unexpected code 0x{code:02X}"))),
        }
    }

    fn read_float(&mut self) -> Result<Value> {
        let b = self.take_array::<4>()?;
        Ok(Value::Float(f32::from_bits(u32::from_be_bytes(b))))
    }

    fn read_double(&mut self) -> Result<Value> {
        let b = self.take_array::<8>()?;
        Ok(Value::Double(f64::from_bits(u64::from_be_bytes(b))))
    }

    fn read_bytes_body(&mut self, n: usize) -> Result<Vec<u8>> {
        Ok(self.take(n)?.to_vec())
    }

    fn read_counted_bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.read_count()?;
        self.read_bytes_body(n)
    }

    fn read_counted_string(&mut self) -> Result<String> {
        let n = self.read_count()?;
        self.read_string_body(n)
    }

    fn read_list_counted(&mut self, at: usize) -> Result<Vec<Value>> {
        let n = self.read_count()?;
        self.read_counted_items(at, n)
    }

    /// A cache or struct index: an integer in `0..=i32::MAX`.
    fn read_index(&mut self, at: usize, what: &str) -> Result<usize> {
        let n = self.read_long()?;
        if !(0..=i64::from(i32::MAX)).contains(&n) {
            return Err(corrupt(at, format!("invalid {what} index {n}")));
        }
        Ok(n as usize)
    }

    /// Count `cost` against the expansion budget.
    fn expand(&mut self, at: usize, cost: usize) -> Result<()> {
        self.expanded = self.expanded.saturating_add(cost);
        if self.expanded > self.expansion_budget {
            return Err(corrupt(
                at,
                format!(
                    "priority-cache references copy more than {} values and bytes from {} bytes of input (a decompression bomb?)",
                    self.expansion_budget,
                    self.buf.len()
                ),
            ));
        }
        Ok(())
    }

    fn read_get_cache(&mut self, at: usize) -> Result<Value> {
        let index = self.read_index(at, "priority cache")?;
        self.cached(at, index)
    }

    fn read_put_cache(&mut self, at: usize) -> Result<Value> {
        self.enter(at)?;
        let index = self.priority.len();
        self.priority.push(None);
        self.weights.push(0);
        let v = self.read_value()?;
        if let Some(slot) = self.priority.get_mut(index) {
            *slot = Some(v.clone());
            self.weights[index] = weight(&v);
        }
        self.depth -= 1;
        Ok(v)
    }

    fn read_after_reset(&mut self, at: usize) -> Result<Value> {
        self.enter(at)?;
        self.resets += 1;
        self.priority.clear();
        self.weights.clear();
        self.names.clear();
        self.structs.clear();
        let v = self.read_value()?;
        self.depth -= 1;
        Ok(v)
    }

    fn read_struct_ref(&mut self, at: usize) -> Result<Value> {
        let index = self.read_index(at, "struct cache")?;
        self.read_cached_struct(at, index)
    }

    fn read_structtype(&mut self, at: usize) -> Result<Value> {
        self.enter(at)?;
        let tag = self.read_value()?;
        let fields_at = self.pos;
        let fields = self.read_long()?;
        if i32::try_from(fields).is_err() {
            return Err(corrupt(fields_at, format!("invalid field count {fields}")));
        }
        self.depth -= 1;
        let st = match tag {
            Value::String(s) => StructType {
                tag: Tag::from_name(&s),
                name: s.into(),
            },
            _ => StructType {
                tag: Tag::Unsupported,
                name: "(a tag that is not a string)".into(),
            },
        };
        let (tag, name) = (st.tag, st.name.clone());
        self.structs.push(st);
        self.read_struct(at, tag, &name)
    }

    fn cached(&mut self, at: usize, index: usize) -> Result<Value> {
        if let (Some(Some(_)), Some(&cost)) = (self.priority.get(index), self.weights.get(index)) {
            self.expand(at, cost)?;
        }
        match self.priority.get(index) {
            Some(Some(v)) => Ok(v.clone()),
            Some(None) => Err(corrupt(at, "circular reference in the priority cache")),
            None => Err(corrupt(
                at,
                format!("priority cache index {index} beyond its end"),
            )),
        }
    }

    fn read_cached_struct(&mut self, at: usize, index: usize) -> Result<Value> {
        match self.structs.get(index) {
            Some(st) => {
                let (tag, name) = (st.tag, st.name.clone());
                self.read_struct(at, tag, &name)
            }
            None => Err(corrupt(
                at,
                format!("struct cache index {index} beyond its end"),
            )),
        }
    }

    fn read_counted_items(&mut self, at: usize, n: usize) -> Result<Vec<Value>> {
        self.enter(at)?;
        // every item takes at least one byte: never reserve more than the input can hold
        let mut items = Vec::with_capacity(n.min(self.buf.len() - self.pos));
        for _ in 0..n {
            items.push(self.read_value()?);
        }
        self.depth -= 1;
        Ok(items)
    }

    /// Closed list (until `END_COLLECTION`) or open list (until it or the end of input).
    fn read_terminated_items(&mut self, at: usize, open: bool) -> Result<Vec<Value>> {
        self.enter(at)?;
        let mut items = Vec::new();
        loop {
            if open && self.is_at_end() {
                break;
            }
            let code = self.next_code()?;
            if code == code::END_COLLECTION {
                break;
            }
            items.push(self.read_with(code)?);
        }
        self.depth -= 1;
        Ok(items)
    }

    /// Read the next value, which must be a plain list; return its items.
    fn read_list_items(&mut self, at: usize, what: &str) -> Result<Vec<Value>> {
        match self.read_value()? {
            Value::Vector(items) => Ok(items),
            _ => Err(corrupt(at, format!("{what}: expected a list"))),
        }
    }

    fn read_struct(&mut self, at: usize, tag: Tag, name: &str) -> Result<Value> {
        self.enter(at)?;
        let v = match tag {
            Tag::Key => self.read_name(at).map(Value::Keyword),
            Tag::Sym => self.read_name(at).map(Value::Symbol),
            Tag::Char => self.read_char(at),
            Tag::Byte => self.read_byte(at),
            Tag::Ratio => self.read_ratio(at),
            Tag::BigInt => self.read_bigint_bytes(at).map(Value::BigInt),
            Tag::BigDec => self.read_bigdec(at),
            Tag::Inst => self.read_long().map(Value::Inst),
            Tag::Uuid => self.read_uuid(at),
            Tag::Set => self.read_list_items(at, "set").map(Value::Set),
            Tag::List => self.read_list_items(at, "list").map(Value::List),
            Tag::Map => self.read_map_entries(at).map(Value::Map),
            Tag::IntArray
            | Tag::LongArray
            | Tag::FloatArray
            | Tag::DoubleArray
            | Tag::BooleanArray
            | Tag::ObjectArray => self.read_array(at, tag, name),
            Tag::Unsupported => Err(unsupported(
                at,
                format!(
                    "tagged value {} has no Datacamp representation",
                    crate::error::excerpt(name)
                ),
            )),
        }?;
        self.depth -= 1;
        Ok(v)
    }

    /// Keyword/symbol payload: namespace (string or nil) and name (string).
    fn read_name(&mut self, at: usize) -> Result<Name> {
        let start = self.pos;
        if let Some(n) = self.read_cached_name()? {
            return Ok(n);
        }
        self.pos = start;
        let ns = match self.read_value()? {
            Value::Nil => None,
            Value::String(s) => Some(s.into()),
            _ => return Err(corrupt(at, "keyword/symbol namespace is not a string")),
        };
        let name = match self.read_value()? {
            Value::String(s) => s.into(),
            _ => return Err(corrupt(at, "keyword/symbol name is not a string")),
        };
        Ok(Name { ns, name })
    }

    /// The fast path of [`Reader::read_name`]: when the namespace (or nil) and the name are
    /// references to the priority cache — every repeat of a keyword after its first — return
    /// the name decoded for that pair before, shared. `None` (position unspecified) when the
    /// payload is anything else; the caller then reads it the general way.
    fn read_cached_name(&mut self) -> Result<Option<Name>> {
        let ns = if self.buf.get(self.pos) == Some(&code::NULL) {
            self.pos += 1;
            NO_NAMESPACE
        } else {
            match self.take_cache_ref()? {
                Some(i) => i,
                None => return Ok(None),
            }
        };
        let Some(name) = self.take_cache_ref()? else {
            return Ok(None);
        };
        if let Some(n) = self.names.get(&(ns, name)) {
            return Ok(Some(n.clone()));
        }
        let ns_str = match ns {
            NO_NAMESPACE => None,
            i => match self.cached_str(i) {
                Some(s) => Some(s),
                None => return Ok(None),
            },
        };
        let Some(name_str) = self.cached_str(name) else {
            return Ok(None);
        };
        let cost = 1 + name_str.len() + ns_str.map_or(0, str::len);
        let n = Name {
            ns: ns_str.map(Into::into),
            name: name_str.into(),
        };
        self.expand(self.pos, cost)?;
        self.names.insert((ns, name), n.clone());
        Ok(Some(n))
    }

    /// If the next code refers to a priority-cache entry, consume it; return the index.
    fn take_cache_ref(&mut self) -> Result<Option<usize>> {
        let at = self.pos;
        match self.buf.get(at) {
            Some(&c) if (code::PRIORITY_CACHE_PACKED_START..=0x9F).contains(&c) => {
                self.pos += 1;
                Ok(Some(usize::from(c - code::PRIORITY_CACHE_PACKED_START)))
            }
            Some(&code::GET_PRIORITY_CACHE) => {
                self.pos += 1;
                self.read_index(at, "priority cache").map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The string in priority-cache entry `index`, if it holds one.
    fn cached_str(&self, index: usize) -> Option<&str> {
        match self.priority.get(index) {
            Some(Some(Value::String(s))) => Some(s),
            _ => None,
        }
    }

    fn read_char(&mut self, at: usize) -> Result<Value> {
        match self.read_value()? {
            Value::Long(n) if (0..=0xFFFF).contains(&n) => Ok(Value::Char(n as u16)),
            _ => Err(corrupt(at, "char: expected an integer 0..65535")),
        }
    }

    fn read_byte(&mut self, at: usize) -> Result<Value> {
        match self.read_value()? {
            Value::Long(n) if (-128..=127).contains(&n) => Ok(Value::Long(n)),
            _ => Err(corrupt(at, "byte: expected an integer -128..127")),
        }
    }

    fn read_ratio(&mut self, at: usize) -> Result<Value> {
        let num = self.read_bigint_like(at)?;
        let den = self.read_bigint_like(at)?;
        // No Clojure ratio has a zero denominator (`(/ 1 0)` throws): reading one would
        // only fail later, inside the restore.
        if den.iter().all(|&b| b == 0) {
            return Err(corrupt(at, "ratio with a zero denominator"));
        }
        Ok(Value::Ratio { num, den })
    }

    fn read_bigdec(&mut self, at: usize) -> Result<Value> {
        let unscaled = self.read_bigint_bytes(at)?;
        let scale_at = self.pos;
        let scale = self.read_long()?;
        let scale = i32::try_from(scale)
            .map_err(|_| corrupt(scale_at, format!("bigdec scale {scale} out of range")))?;
        Ok(Value::BigDec { unscaled, scale })
    }

    fn read_uuid(&mut self, at: usize) -> Result<Value> {
        match self.read_value()? {
            Value::Bytes(b) if b.len() == 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b);
                Ok(Value::Uuid(u128::from_be_bytes(a)))
            }
            _ => Err(corrupt(at, "uuid: expected 16 bytes")),
        }
    }

    /// `int[]`, `long[]`, … : a count, then that many elements of the array's type; read as a
    /// vector.
    fn read_array(&mut self, at: usize, tag: Tag, name: &str) -> Result<Value> {
        let n = self.read_count()?;
        let mut items = Vec::with_capacity(n.min(self.buf.len() - self.pos));
        for _ in 0..n {
            let v = self.read_value()?;
            let ok = match (&v, tag) {
                (Value::Long(x), Tag::IntArray) => i32::try_from(*x).is_ok(),
                (Value::Long(_), Tag::LongArray)
                | (Value::Float(_), Tag::FloatArray)
                | (Value::Double(_), Tag::DoubleArray)
                | (Value::Bool(_), Tag::BooleanArray)
                | (_, Tag::ObjectArray) => true,
                _ => false,
            };
            if !ok {
                return Err(corrupt(at, format!("{name}: element of the wrong type")));
            }
            items.push(v);
        }
        Ok(Value::Vector(items))
    }

    /// The map component: a list of `k v k v …`, read straight into pairs when it is a
    /// counted or closed list.
    fn read_map_entries(&mut self, at: usize) -> Result<Vec<(Value, Value)>> {
        let list_at = self.pos;
        let code = self.next_code()?;
        let n = match code {
            code::LIST_PACKED_LENGTH_START..=0xEB => {
                Some(usize::from(code - code::LIST_PACKED_LENGTH_START))
            }
            code::LIST => Some(self.read_count()?),
            _ => None,
        };
        if let Some(n) = n {
            if n % 2 != 0 {
                return Err(corrupt(list_at, "map: odd number of keys and values"));
            }
            self.enter(list_at)?;
            let mut entries = Vec::with_capacity((n / 2).min(self.buf.len() - self.pos));
            for _ in 0..n / 2 {
                let k = self.read_value()?;
                let v = self.read_value()?;
                entries.push((k, v));
            }
            self.depth -= 1;
            return Ok(entries);
        }
        let items = match self.read_with(code)? {
            Value::Vector(items) => items,
            _ => return Err(corrupt(at, "map: expected a list")),
        };
        if items.len() % 2 != 0 {
            return Err(corrupt(list_at, "map: odd number of keys and values"));
        }
        let mut entries = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        Ok(entries)
    }

    /// A `bigint` payload: non-empty bytes, returned in minimal two's complement.
    fn read_bigint_bytes(&mut self, at: usize) -> Result<Vec<u8>> {
        match self.read_value()? {
            Value::Bytes(b) if !b.is_empty() => {
                let min = minimal_twos_complement(&b);
                if min.len() == b.len() {
                    Ok(b)
                } else {
                    Ok(min.to_vec())
                }
            }
            _ => Err(corrupt(at, "bigint: expected non-empty bytes")),
        }
    }

    /// A ratio part (`clojure.core/biginteger` of what was read): a bigint or an integer.
    fn read_bigint_like(&mut self, at: usize) -> Result<Vec<u8>> {
        match self.read_value()? {
            Value::BigInt(b) => Ok(b),
            Value::Long(n) => Ok(minimal_twos_complement(&n.to_be_bytes()).to_vec()),
            _ => Err(corrupt(at, "ratio: expected integers")),
        }
    }

    fn read_chunked_bytes(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let n = self.read_count()?;
            out.extend_from_slice(self.take(n)?);
            let at = self.pos;
            match self.next_code()? {
                code::BYTES_CHUNK => continue,
                code::BYTES => {
                    let n = self.read_count()?;
                    out.extend_from_slice(self.take(n)?);
                    return Ok(out);
                }
                c => {
                    return Err(corrupt(
                        at,
                        format!("expected more chunked bytes, got code 0x{c:02X}"),
                    ))
                }
            }
        }
    }

    fn read_string_body(&mut self, n: usize) -> Result<String> {
        let at = self.pos;
        let bytes = self.take(n)?;
        let mut s = String::with_capacity(n);
        let mut pending = None;
        decode_chunk(&mut s, &mut pending, bytes, at)?;
        if pending.is_some() {
            return Err(corrupt(at, "string ends in an unpaired surrogate"));
        }
        Ok(s)
    }

    fn read_chunked_string(&mut self) -> Result<String> {
        let start = self.pos;
        let mut s = String::new();
        let mut pending = None;
        let mut n = self.read_count()?;
        let mut last = false;
        loop {
            let at = self.pos;
            let bytes = self.take(n)?;
            decode_chunk(&mut s, &mut pending, bytes, at)?;
            if last {
                break;
            }
            let code_at = self.pos;
            let code = self.next_code()?;
            n = match code {
                code::STRING_PACKED_LENGTH_START..=0xE1 => {
                    last = true;
                    usize::from(code - code::STRING_PACKED_LENGTH_START)
                }
                code::STRING => {
                    last = true;
                    self.read_count()?
                }
                code::STRING_CHUNK => self.read_count()?,
                c => {
                    return Err(corrupt(
                        code_at,
                        format!("expected more chunked string, got code 0x{c:02X}"),
                    ))
                }
            };
        }
        if pending.is_some() {
            return Err(corrupt(start, "string ends in an unpaired surrogate"));
        }
        Ok(s)
    }
}

/// Append one string chunk (fressian's per-UTF-16-unit encoding) to `out`. A high surrogate
/// at the end of a chunk is left in `pending` for the next chunk.
fn decode_chunk(
    out: &mut String,
    pending: &mut Option<u16>,
    bytes: &[u8],
    at: usize,
) -> Result<()> {
    // Fast path: standard UTF-8 without 4-byte sequences is exactly fressian's encoding.
    if pending.is_none() {
        if let Ok(s) = std::str::from_utf8(bytes) {
            if s.is_ascii() || !bytes.iter().any(|&b| b >= 0xF0) {
                out.push_str(s);
                return Ok(());
            }
        }
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let cont = |k: usize| -> Result<u16> {
            match bytes.get(i + k) {
                Some(&c) if c & 0xC0 == 0x80 => Ok(u16::from(c & 0x3F)),
                _ => Err(corrupt(at + i, "invalid string encoding")),
            }
        };
        let unit = match b >> 4 {
            0..=7 => {
                i += 1;
                u16::from(b)
            }
            12 | 13 => {
                let u = (u16::from(b & 0x1F) << 6) | cont(1)?;
                i += 2;
                u
            }
            14 => {
                let u = (u16::from(b & 0x0F) << 12) | (cont(1)? << 6) | cont(2)?;
                i += 3;
                u
            }
            _ => return Err(corrupt(at + i, format!("invalid string byte 0x{b:02X}"))),
        };
        match (*pending, unit) {
            (Some(hi), 0xDC00..=0xDFFF) => {
                let c = 0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                *pending = None;
            }
            (Some(_), _) => return Err(corrupt(at + i, "unpaired high surrogate in string")),
            (None, 0xD800..=0xDBFF) => *pending = Some(unit),
            (None, 0xDC00..=0xDFFF) => {
                return Err(corrupt(at + i, "unpaired low surrogate in string"))
            }
            (None, u) => {
                out.push(char::from_u32(u32::from(u)).unwrap_or(char::REPLACEMENT_CHARACTER))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "fressian_tests.rs"]
mod tests;
