//! The JVM ↔ Rust batch format: how datoms cross JNI as columns.
//!
//! One JNI call carries one batch of N datoms as primitive arrays (never one call per datom,
//! never JSON):
//!
//! | column      | Java type   | meaning                                                      |
//! |-------------|-------------|--------------------------------------------------------------|
//! | `e`         | `long[N]`   | entity ids                                                   |
//! | `a`         | `int[N]`    | attribute ids: indexes into the session's attribute table    |
//! | `tx`        | `long[N]`   | transaction ids (always positive)                            |
//! | `added`     | `boolean[N]`| assertion (`true`) or retraction                             |
//! | `vtag`      | `byte[N]`   | the value's type tag (table below)                           |
//! | `vnum`      | `long[N]`   | the payload of scalar tags; 0 for the others                 |
//! | `vbytes`    | `byte[]`    | the payloads of non-scalar tags, concatenated in datom order |
//! | `new_attrs` | `byte[]`    | attributes first used in this batch: tagged values (KEYWORD or LONG), appended to the table in order |
//!
//! Scalar tags (payload in `vnum`): NIL, TRUE, FALSE, LONG (the long), DOUBLE
//! (`Double.doubleToRawLongBits`), FLOAT (`Float.floatToRawIntBits`, as a long),
//! INST (epoch millis), CHAR (the char's code unit).
//! Every other tag's payload is in `vbytes`, in the *tagged encoding* below without its
//! leading tag byte. Inside collections every element is written tagged (tag byte first,
//! scalars included). All integers in `vbytes` are little-endian.
//!
//! | tag | name    | payload after the tag byte                                     |
//! |-----|---------|----------------------------------------------------------------|
//! | 0   | NIL     | –                                                              |
//! | 1   | TRUE    | –                                                              |
//! | 2   | FALSE   | –                                                              |
//! | 3   | LONG    | i64                                                            |
//! | 4   | DOUBLE  | u64 raw bits                                                   |
//! | 5   | FLOAT   | u32 raw bits                                                   |
//! | 6   | STRING  | u32 byte length, UTF-8 bytes                                   |
//! | 7   | KEYWORD | i32 ns length (-1: no namespace), ns UTF-8, u32 length, name   |
//! | 8   | SYMBOL  | as KEYWORD                                                     |
//! | 9   | INST    | i64 epoch millis                                               |
//! | 10  | UUID    | u64 most significant bits, u64 least significant bits          |
//! | 11  | BIGINT  | u32 length, two's-complement big-endian bytes                  |
//! | 12  | BIGDEC  | i32 scale, u32 length, unscaled two's-complement bytes         |
//! | 13  | RATIO   | u32 length, numerator bytes, u32 length, denominator bytes     |
//! | 14  | CHAR    | u16 code unit                                                  |
//! | 15  | BYTES   | u32 length, bytes                                              |
//! | 16  | VECTOR  | u32 count, count tagged elements                               |
//! | 17  | LIST    | u32 count, count tagged elements                               |
//! | 18  | SET     | u32 count, count tagged elements                               |
//! | 19  | MAP     | u32 entry count, then key, value, key, value … (tagged)        |
//!
//! The same tagged encoding serves the spill files of the external sort and the batches
//! handed back to the JVM on restore.

use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Name, Value};

/// Tag `NIL`.
pub const TAG_NIL: u8 = 0;
/// Tag `TRUE`.
pub const TAG_TRUE: u8 = 1;
/// Tag `FALSE`.
pub const TAG_FALSE: u8 = 2;
/// Tag `LONG`.
pub const TAG_LONG: u8 = 3;
/// Tag `DOUBLE`.
pub const TAG_DOUBLE: u8 = 4;
/// Tag `FLOAT`.
pub const TAG_FLOAT: u8 = 5;
/// Tag `STRING`.
pub const TAG_STRING: u8 = 6;
/// Tag `KEYWORD`.
pub const TAG_KEYWORD: u8 = 7;
/// Tag `SYMBOL`.
pub const TAG_SYMBOL: u8 = 8;
/// Tag `INST`.
pub const TAG_INST: u8 = 9;
/// Tag `UUID`.
pub const TAG_UUID: u8 = 10;
/// Tag `BIGINT`.
pub const TAG_BIGINT: u8 = 11;
/// Tag `BIGDEC`.
pub const TAG_BIGDEC: u8 = 12;
/// Tag `RATIO`.
pub const TAG_RATIO: u8 = 13;
/// Tag `CHAR`.
pub const TAG_CHAR: u8 = 14;
/// Tag `BYTES`.
pub const TAG_BYTES: u8 = 15;
/// Tag `VECTOR`.
pub const TAG_VECTOR: u8 = 16;
/// Tag `LIST`.
pub const TAG_LIST: u8 = 17;
/// Tag `SET`.
pub const TAG_SET: u8 = 18;
/// Tag `MAP`.
pub const TAG_MAP: u8 = 19;

/// The deepest nesting of collections that [`encode_value`] writes and [`decode_value`]
/// accepts (the elements of a top-level collection are at depth 1; a collection at depth
/// `MAX_DEPTH` is rejected). Deeper values are rejected ([`ErrorKind::Unsupported`] on
/// encode, [`ErrorKind::Corrupt`] on decode). The codec itself is iterative; the limit keeps
/// the recursive `Drop`, `Clone`, `PartialEq` and `Debug` of [`Value`] well within any
/// thread's stack (JNI threads included).
pub const MAX_DEPTH: usize = 256;

const DECODE_OP: &str = "decode value";
const ENCODE_OP: &str = "encode value";

fn corrupt(message: impl Into<String>) -> Error {
    Error::corrupt(DECODE_OP, message)
}

fn truncated() -> Error {
    corrupt("input ends inside a value")
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// Given a value, append its tagged encoding (tag byte, then payload) to `out`.
///
/// Errors ([`ErrorKind::Unsupported`]): a string, byte array or collection longer than
/// `u32::MAX`, or nesting deeper than [`MAX_DEPTH`]. On error `out` is left as it was.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    let r = encode_tagged(v, out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn unsupported(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unsupported, ENCODE_OP, message)
}

fn len_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| unsupported(format!("{what} of length {n} exceeds u32::MAX")))
}

fn put_len_bytes(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<()> {
    out.extend_from_slice(&len_u32(bytes.len(), what)?.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_name(out: &mut Vec<u8>, n: &Name) -> Result<()> {
    match &n.ns {
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        Some(ns) => {
            let len = i32::try_from(ns.len())
                .map_err(|_| unsupported("namespace longer than i32::MAX bytes"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(ns.as_bytes());
        }
    }
    put_len_bytes(out, n.name.as_bytes(), "name")
}

/// The tag byte of a value.
fn tag_of(v: &Value) -> u8 {
    match v {
        Value::Nil => TAG_NIL,
        Value::Bool(true) => TAG_TRUE,
        Value::Bool(false) => TAG_FALSE,
        Value::Long(_) => TAG_LONG,
        Value::Double(_) => TAG_DOUBLE,
        Value::Float(_) => TAG_FLOAT,
        Value::String(_) => TAG_STRING,
        Value::Keyword(_) => TAG_KEYWORD,
        Value::Symbol(_) => TAG_SYMBOL,
        Value::Char(_) => TAG_CHAR,
        Value::Inst(_) => TAG_INST,
        Value::Uuid(_) => TAG_UUID,
        Value::BigInt(_) => TAG_BIGINT,
        Value::BigDec { .. } => TAG_BIGDEC,
        Value::Ratio { .. } => TAG_RATIO,
        Value::Bytes(_) => TAG_BYTES,
        Value::Vector(_) => TAG_VECTOR,
        Value::List(_) => TAG_LIST,
        Value::Set(_) => TAG_SET,
        Value::Map(_) => TAG_MAP,
    }
}

fn encode_tagged(v: &Value, out: &mut Vec<u8>) -> Result<()> {
    out.push(tag_of(v));
    encode_payload(v, out)
}

/// A collection being written: the elements still to write.
enum EncFrame<'a> {
    Seq(std::slice::Iter<'a, Value>),
    /// Entries still to write, and the value of the entry whose key was just written.
    Map(std::slice::Iter<'a, (Value, Value)>, Option<&'a Value>),
}

impl<'a> EncFrame<'a> {
    fn next_child(&mut self) -> Option<&'a Value> {
        match self {
            EncFrame::Seq(it) => it.next(),
            EncFrame::Map(it, pending) => match pending.take() {
                Some(v) => Some(v),
                None => it.next().map(|(k, v)| {
                    *pending = Some(v);
                    k
                }),
            },
        }
    }
}

/// Append the payload of `v` (its tagged encoding without the tag byte). Iterative: the
/// depth of nesting costs heap, not stack.
fn encode_payload(v: &Value, out: &mut Vec<u8>) -> Result<()> {
    let mut stack: Vec<EncFrame> = Vec::new();
    let mut cur = v;
    loop {
        match cur {
            Value::Vector(items) | Value::List(items) | Value::Set(items) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(unsupported(format!(
                        "value nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                out.extend_from_slice(&len_u32(items.len(), "collection")?.to_le_bytes());
                stack.push(EncFrame::Seq(items.iter()));
            }
            Value::Map(entries) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(unsupported(format!(
                        "value nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                out.extend_from_slice(&len_u32(entries.len(), "map")?.to_le_bytes());
                stack.push(EncFrame::Map(entries.iter(), None));
            }
            leaf => encode_leaf(leaf, out)?,
        }
        // The next element to write, closing finished collections.
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            if let Some(next) = top.next_child() {
                out.push(tag_of(next));
                cur = next;
                break;
            }
            stack.pop();
        }
    }
}

/// Append the payload of a non-collection value.
fn encode_leaf(v: &Value, out: &mut Vec<u8>) -> Result<()> {
    match v {
        Value::Nil | Value::Bool(_) => {}
        Value::Long(n) | Value::Inst(n) => out.extend_from_slice(&n.to_le_bytes()),
        Value::Double(d) => out.extend_from_slice(&d.to_bits().to_le_bytes()),
        Value::Float(f) => out.extend_from_slice(&f.to_bits().to_le_bytes()),
        Value::String(s) => put_len_bytes(out, s.as_bytes(), "string")?,
        Value::Keyword(n) | Value::Symbol(n) => put_name(out, n)?,
        Value::Char(c) => out.extend_from_slice(&c.to_le_bytes()),
        Value::Uuid(u) => {
            out.extend_from_slice(&((*u >> 64) as u64).to_le_bytes());
            out.extend_from_slice(&(*u as u64).to_le_bytes());
        }
        Value::BigInt(b) | Value::Bytes(b) => put_len_bytes(out, b, "byte array")?,
        Value::BigDec { unscaled, scale } => {
            out.extend_from_slice(&scale.to_le_bytes());
            put_len_bytes(out, unscaled, "big decimal")?;
        }
        Value::Ratio { num, den } => {
            put_len_bytes(out, num, "ratio numerator")?;
            put_len_bytes(out, den, "ratio denominator")?;
        }
        Value::Vector(_) | Value::List(_) | Value::Set(_) | Value::Map(_) => {
            return Err(Error::internal(ENCODE_OP, "collection passed as a leaf"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(truncated());
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

fn take_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    let (head, tail) = input.split_first_chunk::<N>().ok_or_else(truncated)?;
    *input = tail;
    Ok(*head)
}

fn read_u8(input: &mut &[u8]) -> Result<u8> {
    let (&b, tail) = input.split_first().ok_or_else(truncated)?;
    *input = tail;
    Ok(b)
}

fn read_u16(input: &mut &[u8]) -> Result<u16> {
    take_array::<2>(input).map(u16::from_le_bytes)
}

fn read_u32(input: &mut &[u8]) -> Result<u32> {
    take_array::<4>(input).map(u32::from_le_bytes)
}

fn read_i32(input: &mut &[u8]) -> Result<i32> {
    take_array::<4>(input).map(i32::from_le_bytes)
}

fn read_u64(input: &mut &[u8]) -> Result<u64> {
    take_array::<8>(input).map(u64::from_le_bytes)
}

fn read_i64(input: &mut &[u8]) -> Result<i64> {
    take_array::<8>(input).map(i64::from_le_bytes)
}

fn read_len_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    let n = read_u32(input)? as usize;
    take(input, n)
}

fn read_vec(input: &mut &[u8]) -> Result<Vec<u8>> {
    read_len_bytes(input).map(<[u8]>::to_vec)
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| corrupt(format!("{what} is not UTF-8: {e}")))
}

/// Names decoded on this thread at most, before [`read_name`]'s cache starts over.
const NAME_CACHE_LIMIT: usize = 4096;

thread_local! {
    /// [`read_name`]'s cache: the names decoded on this thread, by their encoded bytes.
    /// Sorted runs repeat a few attribute (and keyword value) names millions of times; a hit
    /// shares the name's strings instead of allocating and validating them again.
    static NAMES: std::cell::RefCell<HashMap<Box<[u8]>, Name>> =
        std::cell::RefCell::new(HashMap::new());
}

fn read_name(input: &mut &[u8]) -> Result<Name> {
    let start = *input;
    let ns_len = read_i32(input)?;
    let ns = match ns_len {
        -1 => None,
        n if n < 0 => return Err(corrupt(format!("negative namespace length {n}"))),
        n => Some(take(input, n as usize)?),
    };
    let name = read_len_bytes(input)?;
    let encoded = &start[..start.len() - input.len()];
    NAMES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(n) = cache.get(encoded) {
            return Ok(n.clone());
        }
        let n = Name {
            ns: ns
                .map(|b| utf8(b, "namespace").map(Into::into))
                .transpose()?,
            name: utf8(name, "name")?.into(),
        };
        if cache.len() >= NAME_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(encoded.into(), n.clone());
        Ok(n)
    })
}

fn read_string(input: &mut &[u8]) -> Result<String> {
    let bytes = read_len_bytes(input)?;
    utf8(bytes, "string").map(str::to_owned)
}

/// Given input positioned at a tagged value, decode it and advance `input` past it.
///
/// Errors ([`ErrorKind::Corrupt`]): unknown tag, truncated input, invalid UTF-8, a negative
/// namespace length other than -1, or nesting deeper than [`MAX_DEPTH`]. Never panics; the
/// allocation for a collection is bounded by the remaining input length, and decoding is
/// iterative (nesting costs heap, not stack).
pub fn decode_value(input: &mut &[u8]) -> Result<Value> {
    let tag = read_u8(input)?;
    decode_payload(tag, input)
}

fn decode_tagged(input: &mut &[u8]) -> Result<Value> {
    let tag = read_u8(input)?;
    decode_payload(tag, input)
}

/// A collection being read: what it holds so far and how many elements remain.
enum DecFrame {
    Seq {
        tag: u8,
        remaining: usize,
        items: Vec<Value>,
    },
    Map {
        remaining: usize,
        entries: Vec<(Value, Value)>,
        key: Option<Value>,
    },
}

impl DecFrame {
    /// Add a decoded element; return the finished collection if that was its last.
    fn add(&mut self, v: Value) -> Option<Value> {
        match self {
            DecFrame::Seq {
                tag,
                remaining,
                items,
            } => {
                items.push(v);
                *remaining -= 1;
                (*remaining == 0).then(|| seq_value(*tag, std::mem::take(items)))
            }
            DecFrame::Map {
                remaining,
                entries,
                key,
            } => match key.take() {
                None => {
                    *key = Some(v);
                    None
                }
                Some(k) => {
                    entries.push((k, v));
                    *remaining -= 1;
                    (*remaining == 0).then(|| Value::Map(std::mem::take(entries)))
                }
            },
        }
    }
}

fn seq_value(tag: u8, items: Vec<Value>) -> Value {
    match tag {
        TAG_VECTOR => Value::Vector(items),
        TAG_LIST => Value::List(items),
        _ => Value::Set(items),
    }
}

/// Decode the payload of a value with tag `tag` (the tag byte already consumed).
fn decode_payload(tag: u8, input: &mut &[u8]) -> Result<Value> {
    let mut stack: Vec<DecFrame> = Vec::new();
    let mut tag = tag;
    loop {
        let mut v = match tag {
            TAG_VECTOR | TAG_LIST | TAG_SET | TAG_MAP => {
                if stack.len() >= MAX_DEPTH {
                    return Err(corrupt(format!(
                        "value nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                let n = read_u32(input)? as usize;
                if n == 0 {
                    if tag == TAG_MAP {
                        Value::Map(Vec::new())
                    } else {
                        seq_value(tag, Vec::new())
                    }
                } else {
                    // Every element takes at least one byte: never reserve more than can follow.
                    stack.push(if tag == TAG_MAP {
                        DecFrame::Map {
                            remaining: n,
                            entries: Vec::with_capacity(n.min(input.len() / 2)),
                            key: None,
                        }
                    } else {
                        DecFrame::Seq {
                            tag,
                            remaining: n,
                            items: Vec::with_capacity(n.min(input.len())),
                        }
                    });
                    tag = read_u8(input)?;
                    continue;
                }
            }
            leaf => decode_leaf(leaf, input)?,
        };
        // Hand the value to its collection, closing the collections it completes.
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(v);
            };
            match top.add(v) {
                Some(done) => {
                    stack.pop();
                    v = done;
                }
                None => break,
            }
        }
        tag = read_u8(input)?;
    }
}

/// Decode the payload of a non-collection tag.
fn decode_leaf(tag: u8, input: &mut &[u8]) -> Result<Value> {
    Ok(match tag {
        TAG_NIL => Value::Nil,
        TAG_TRUE => Value::Bool(true),
        TAG_FALSE => Value::Bool(false),
        TAG_LONG => Value::Long(read_i64(input)?),
        TAG_DOUBLE => Value::Double(f64::from_bits(read_u64(input)?)),
        TAG_FLOAT => Value::Float(f32::from_bits(read_u32(input)?)),
        TAG_STRING => Value::String(read_string(input)?),
        TAG_KEYWORD => Value::Keyword(read_name(input)?),
        TAG_SYMBOL => Value::Symbol(read_name(input)?),
        TAG_INST => Value::Inst(read_i64(input)?),
        TAG_UUID => {
            let hi = read_u64(input)?;
            let lo = read_u64(input)?;
            Value::Uuid((u128::from(hi) << 64) | u128::from(lo))
        }
        TAG_BIGINT => Value::BigInt(read_vec(input)?),
        TAG_BIGDEC => {
            let scale = read_i32(input)?;
            Value::BigDec {
                unscaled: read_vec(input)?,
                scale,
            }
        }
        TAG_RATIO => {
            let num = read_vec(input)?;
            let den = read_vec(input)?;
            Value::Ratio { num, den }
        }
        TAG_CHAR => Value::Char(read_u16(input)?),
        TAG_BYTES => Value::Bytes(read_vec(input)?),
        other => return Err(corrupt(format!("unknown value tag {other}"))),
    })
}

// ---------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------

/// Append the tagged encoding of an attribute (KEYWORD or LONG) to `out`.
fn encode_attr(a: &Attr, out: &mut Vec<u8>) -> Result<()> {
    match a {
        Attr::Keyword(n) => {
            out.push(TAG_KEYWORD);
            put_name(out, n)
        }
        Attr::Id(id) => {
            out.push(TAG_LONG);
            out.extend_from_slice(&id.to_le_bytes());
            Ok(())
        }
    }
}

fn decode_attr(input: &mut &[u8]) -> Result<Attr> {
    match read_u8(input)? {
        TAG_KEYWORD => Ok(Attr::Keyword(read_name(input)?)),
        TAG_LONG => Ok(Attr::Id(read_i64(input)?)),
        other => Err(corrupt(format!(
            "attribute has tag {other}; expected KEYWORD ({TAG_KEYWORD}) or LONG ({TAG_LONG})"
        ))),
    }
}

/// Given the `new_attrs` column of a batch (tagged KEYWORD or LONG values, back to back),
/// append the attributes to `table` in order (KEYWORD → [`Attr::Keyword`], LONG →
/// [`Attr::Id`]).
///
/// Errors ([`ErrorKind::Corrupt`]): any other tag, or malformed/truncated bytes. On error
/// `table` is left as it was.
pub fn decode_attrs(bytes: &[u8], table: &mut Vec<Attr>) -> Result<()> {
    let start = table.len();
    let mut input = bytes;
    while !input.is_empty() {
        match decode_attr(&mut input) {
            Ok(a) => table.push(a),
            Err(e) => {
                table.truncate(start);
                return Err(e.in_op("decode attributes"));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------

/// The columns of one batch as they come out of (or go into) the JVM's primitive arrays.
///
/// Element types are those of `jni-rs` array regions: `long[]` → `i64`, `int[]` → `i32`,
/// `boolean[]` → `u8` (0 or 1), `byte[]` → `i8` for `vtag`. `vbytes` is a `byte[]` viewed
/// as unsigned bytes. All per-datom columns must have the same length N.
#[derive(Clone, Copy, Debug)]
pub struct BatchColumns<'a> {
    /// Entity ids.
    pub e: &'a [i64],
    /// Attribute ids: indexes into the session's attribute table.
    pub a: &'a [i32],
    /// Transaction ids.
    pub tx: &'a [i64],
    /// 1 for an assertion, 0 for a retraction.
    pub added: &'a [u8],
    /// Value tags.
    pub vtag: &'a [i8],
    /// Payloads of scalar tags.
    pub vnum: &'a [i64],
    /// Payloads of non-scalar tags, concatenated in datom order (untagged).
    pub vbytes: &'a [u8],
}

impl BatchColumns<'_> {
    /// Return N, the number of datoms (the length of `e`).
    pub fn len(&self) -> usize {
        self.e.len()
    }

    /// Return whether the batch holds no datom.
    pub fn is_empty(&self) -> bool {
        self.e.is_empty()
    }
}

/// Given a batch's columns and the session's attribute table (with this batch's
/// `new_attrs` already appended by [`decode_attrs`]), append the batch's datoms to `out`
/// in column order.
///
/// Errors ([`ErrorKind::Corrupt`]): columns of different lengths, an attribute id outside
/// the table, an `added` other than 0/1, an unknown tag, a FLOAT `vnum` that is not a
/// 32-bit pattern (sign- or zero-extended), a CHAR `vnum` outside 0..=0xFFFF, malformed
/// `vbytes`, or `vbytes` left over after the last datom. The `vnum` of NIL/TRUE/FALSE and
/// of non-scalar tags is ignored. On error `out` is left as it was.
pub fn decode_batch(cols: &BatchColumns, attrs: &[Attr], out: &mut Vec<Datom>) -> Result<()> {
    let start = out.len();
    let r = decode_batch_inner(cols, attrs, out);
    if r.is_err() {
        out.truncate(start);
    }
    r.map_err(|e| e.in_op("decode batch"))
}

fn decode_batch_inner(cols: &BatchColumns, attrs: &[Attr], out: &mut Vec<Datom>) -> Result<()> {
    let n = cols.e.len();
    let lens = [
        ("a", cols.a.len()),
        ("tx", cols.tx.len()),
        ("added", cols.added.len()),
        ("vtag", cols.vtag.len()),
        ("vnum", cols.vnum.len()),
    ];
    for (name, len) in lens {
        if len != n {
            return Err(corrupt(format!(
                "column {name} has {len} elements, column e has {n}"
            )));
        }
    }
    out.reserve(n);
    let mut vbytes = cols.vbytes;
    for i in 0..n {
        let a = cols.a[i];
        let attr = usize::try_from(a)
            .ok()
            .and_then(|ix| attrs.get(ix))
            .ok_or_else(|| {
                corrupt(format!(
                    "datom {i}: attribute id {a} outside the table of {} attributes",
                    attrs.len()
                ))
            })?;
        let added = match cols.added[i] {
            0 => false,
            1 => true,
            b => return Err(corrupt(format!("datom {i}: added is {b}, not 0 or 1"))),
        };
        let tag = cols.vtag[i] as u8;
        let num = cols.vnum[i];
        let v = match tag {
            TAG_NIL => Value::Nil,
            TAG_TRUE => Value::Bool(true),
            TAG_FALSE => Value::Bool(false),
            TAG_LONG => Value::Long(num),
            TAG_INST => Value::Inst(num),
            TAG_DOUBLE => Value::Double(f64::from_bits(num as u64)),
            TAG_FLOAT => {
                if num != i64::from(num as i32) && num != i64::from(num as u32) {
                    return Err(corrupt(format!(
                        "datom {i}: FLOAT payload {num} is not a 32-bit pattern"
                    )));
                }
                Value::Float(f32::from_bits(num as u32))
            }
            TAG_CHAR => match u16::try_from(num) {
                Ok(c) => Value::Char(c),
                Err(_) => {
                    return Err(corrupt(format!(
                        "datom {i}: CHAR payload {num} is not a UTF-16 code unit"
                    )))
                }
            },
            _ => decode_payload(tag, &mut vbytes)
                .map_err(|e| corrupt(format!("datom {i}: {}", e.message)))?,
        };
        out.push(Datom {
            e: cols.e[i],
            a: attr.clone(),
            v,
            tx: cols.tx[i],
            added,
        });
    }
    if !vbytes.is_empty() {
        return Err(corrupt(format!(
            "{} bytes of vbytes left after the last datom",
            vbytes.len()
        )));
    }
    Ok(())
}

/// One batch with owned columns: built by [`BatchBuilder`] for the JVM (restore), or copied
/// from the JVM's arrays and handed to the feeding thread (backup, [`crate::feed`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Entity ids.
    pub e: Vec<i64>,
    /// Attribute ids (indexes into the builder's attribute table).
    pub a: Vec<i32>,
    /// Transaction ids.
    pub tx: Vec<i64>,
    /// 1 for an assertion, 0 for a retraction.
    pub added: Vec<u8>,
    /// Value tags.
    pub vtag: Vec<i8>,
    /// Payloads of scalar tags (0 for the others).
    pub vnum: Vec<i64>,
    /// Payloads of non-scalar tags, concatenated in datom order.
    pub vbytes: Vec<u8>,
    /// Attributes first used in this batch, tagged (KEYWORD or LONG), in id order.
    pub new_attrs: Vec<u8>,
}

impl Batch {
    /// Return borrowed columns of this batch (for [`decode_batch`]).
    pub fn columns(&self) -> BatchColumns<'_> {
        BatchColumns {
            e: &self.e,
            a: &self.a,
            tx: &self.tx,
            added: &self.added,
            vtag: &self.vtag,
            vnum: &self.vnum,
            vbytes: &self.vbytes,
        }
    }

    /// Return the number of datoms in the batch.
    pub fn len(&self) -> usize {
        self.e.len()
    }

    /// Return whether the batch holds no datom.
    pub fn is_empty(&self) -> bool {
        self.e.is_empty()
    }
}

/// Accumulates datoms into owned columns (the restore direction: Rust → JVM).
///
/// The builder keeps its own attribute table for the whole session: ids are assigned from
/// 0 in order of first use, and each [`Batch`] carries in `new_attrs` the attributes first
/// used since the previous [`BatchBuilder::flush`], so the receiver can append them to its
/// table exactly as [`decode_attrs`] does.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    cur: Batch,
    attr_ids: HashMap<Attr, i32>,
}

impl BatchBuilder {
    /// Return an empty builder with an empty attribute table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Given a datom, append it to the current batch.
    ///
    /// Errors: [`ErrorKind::Unsupported`] if the value cannot be encoded (see
    /// [`encode_value`]) or the attribute table would exceed `i32::MAX` entries. On error
    /// the builder is left as it was.
    pub fn push(&mut self, d: &Datom) -> Result<()> {
        let b = &mut self.cur;
        // 1. The attribute id; a new attribute is written to `new_attrs` but entered into
        //    the table only once the value has been encoded too.
        let attrs_start = b.new_attrs.len();
        let (a, is_new) = match self.attr_ids.get(&d.a) {
            Some(&id) => (id, false),
            None => {
                let id = i32::try_from(self.attr_ids.len()).map_err(|_| {
                    Error::new(
                        ErrorKind::Unsupported,
                        "build batch",
                        "more than i32::MAX distinct attributes",
                    )
                })?;
                if let Err(e) = encode_attr(&d.a, &mut b.new_attrs) {
                    b.new_attrs.truncate(attrs_start);
                    return Err(e.in_op("build batch"));
                }
                (id, true)
            }
        };
        // 2. The value: scalars into `vnum`, the rest into `vbytes`.
        let (tag, num) = match &d.v {
            Value::Nil => (TAG_NIL, 0),
            Value::Bool(true) => (TAG_TRUE, 0),
            Value::Bool(false) => (TAG_FALSE, 0),
            Value::Long(n) => (TAG_LONG, *n),
            Value::Inst(n) => (TAG_INST, *n),
            Value::Double(x) => (TAG_DOUBLE, x.to_bits() as i64),
            Value::Float(x) => (TAG_FLOAT, i64::from(x.to_bits() as i32)),
            Value::Char(c) => (TAG_CHAR, i64::from(*c)),
            other => {
                let start = b.vbytes.len();
                if let Err(e) = encode_payload(other, &mut b.vbytes) {
                    b.vbytes.truncate(start);
                    b.new_attrs.truncate(attrs_start);
                    return Err(e.in_op("build batch"));
                }
                (tag_of(other), 0)
            }
        };
        if is_new {
            self.attr_ids.insert(d.a.clone(), a);
        }
        b.e.push(d.e);
        b.a.push(a);
        b.tx.push(d.tx);
        b.added.push(u8::from(d.added));
        b.vtag.push(tag as i8);
        b.vnum.push(num);
        Ok(())
    }

    /// Return the number of datoms in the current (unflushed) batch.
    pub fn len(&self) -> usize {
        self.cur.e.len()
    }

    /// Return whether the current batch holds no datom.
    pub fn is_empty(&self) -> bool {
        self.cur.e.is_empty()
    }

    /// Return the approximate size in bytes of the current batch's columns (for deciding
    /// when to flush).
    pub fn approx_bytes(&self) -> usize {
        let b = &self.cur;
        b.e.len() * (8 + 4 + 8 + 1 + 1 + 8) + b.vbytes.len() + b.new_attrs.len()
    }

    /// Return the current batch and start an empty one; the attribute table is kept, so
    /// the next batch's `new_attrs` holds only attributes not seen before.
    pub fn flush(&mut self) -> Batch {
        std::mem::take(&mut self.cur)
    }
}

// ---------------------------------------------------------------------------------------
// Spill records
// ---------------------------------------------------------------------------------------

/// Given a datom, append its self-contained record encoding to `out`: `e` (i64 LE), `tx`
/// (i64 LE), `added` (one byte, 0/1), the attribute tagged (KEYWORD or LONG), the value
/// tagged. Errors as [`encode_value`]; on error `out` is left as it was.
pub fn encode_datom(d: &Datom, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&d.e.to_le_bytes());
    out.extend_from_slice(&d.tx.to_le_bytes());
    out.push(u8::from(d.added));
    let r = encode_attr(&d.a, out).and_then(|()| encode_tagged(&d.v, out));
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Given input positioned at a record written by [`encode_datom`], decode it and advance
/// `input` past it. Errors ([`ErrorKind::Corrupt`]) on malformed or truncated input.
pub fn decode_datom(input: &mut &[u8]) -> Result<Datom> {
    let e = read_i64(input)?;
    let tx = read_i64(input)?;
    let added = match read_u8(input)? {
        0 => false,
        1 => true,
        b => return Err(corrupt(format!("datom record: added byte is {b}"))),
    };
    let a = decode_attr(input)?;
    let v = decode_tagged(input)?;
    Ok(Datom { e, a, v, tx, added })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(v, &mut out).unwrap();
        out
    }

    fn dec(bytes: &[u8]) -> Result<Value> {
        let mut input = bytes;
        let v = decode_value(&mut input)?;
        assert!(input.is_empty(), "decode left {} bytes", input.len());
        Ok(v)
    }

    fn samples() -> Vec<Value> {
        vec![
            Value::Nil,
            Value::Bool(true),
            Value::Bool(false),
            Value::Long(-42),
            Value::Double(-0.0),
            Value::Float(1.5),
            Value::str("héllo"),
            Value::kw("ns/name"),
            Value::kw("bare"),
            Value::Keyword(Name::new(Some(""), "x")),
            Value::Symbol(Name::new(Some("clojure.core"), "inc")),
            Value::Char(0xD800),
            Value::Inst(1_700_000_000_000),
            Value::Uuid(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            Value::BigInt(vec![0x80, 0]),
            Value::BigDec {
                unscaled: vec![1, 2],
                scale: -3,
            },
            Value::Ratio {
                num: vec![1],
                den: vec![3],
            },
            Value::Bytes(vec![]),
            Value::Vector(vec![Value::Long(1), Value::Nil]),
            Value::List(vec![]),
            Value::Set(vec![Value::kw("a"), Value::str("b")]),
            Value::Map(vec![(
                Value::kw("k"),
                Value::Vector(vec![Value::Bool(false)]),
            )]),
        ]
    }

    #[test]
    fn exact_bytes_match_the_spec() {
        assert_eq!(enc(&Value::Nil), [0]);
        assert_eq!(
            enc(&Value::Long(-2)),
            [3, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(enc(&Value::Float(1.0)), [5, 0, 0, 0x80, 0x3F]);
        assert_eq!(enc(&Value::str("ab")), [6, 2, 0, 0, 0, b'a', b'b']);
        assert_eq!(
            enc(&Value::kw("n/x")),
            [7, 1, 0, 0, 0, b'n', 1, 0, 0, 0, b'x']
        );
        assert_eq!(
            enc(&Value::kw("x")),
            [7, 0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, b'x']
        );
        assert_eq!(enc(&Value::Char(0x41)), [14, 0x41, 0]);
        let mut uuid = vec![10];
        uuid.extend_from_slice(&1u64.to_le_bytes());
        uuid.extend_from_slice(&2u64.to_le_bytes());
        assert_eq!(enc(&Value::Uuid((1u128 << 64) | 2)), uuid);
        assert_eq!(
            enc(&Value::BigDec {
                unscaled: vec![7],
                scale: 2
            }),
            [12, 2, 0, 0, 0, 1, 0, 0, 0, 7]
        );
        assert_eq!(
            enc(&Value::Ratio {
                num: vec![1],
                den: vec![3]
            }),
            [13, 1, 0, 0, 0, 1, 1, 0, 0, 0, 3]
        );
        assert_eq!(
            enc(&Value::Map(vec![(Value::Nil, Value::Bool(true))])),
            [19, 1, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            enc(&Value::Set(vec![Value::Bool(false)])),
            [18, 1, 0, 0, 0, 2]
        );
        assert_eq!(enc(&Value::List(vec![])), [17, 0, 0, 0, 0]);
    }

    #[test]
    fn samples_round_trip() {
        for v in samples() {
            assert_eq!(dec(&enc(&v)).unwrap(), v);
        }
        let nan = Value::Double(f64::from_bits(0x7FF8_0000_0000_0123));
        assert_eq!(dec(&enc(&nan)).map(|v| enc(&v)).unwrap(), enc(&nan));
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let v = Value::Vector(samples());
        let bytes = enc(&v);
        for cut in 0..bytes.len() {
            let mut input = &bytes[..cut];
            let e = decode_value(&mut input).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Corrupt, "cut at {cut}");
        }
    }

    #[test]
    fn malformed_input_is_corrupt() {
        let cases: Vec<Vec<u8>> = vec![
            vec![20],
            vec![0xFF],
            vec![6, 2, 0, 0, 0, 0xC3, 0x28], // invalid UTF-8
            vec![7, 0xFE, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], // ns length -2
            vec![16, 0xFF, 0xFF, 0xFF, 0xFF], // huge count, no elements
            vec![19, 0xFF, 0xFF, 0xFF, 0x7F, 0], // huge map
        ];
        for c in cases {
            let mut input = c.as_slice();
            let e = decode_value(&mut input).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Corrupt, "{c:?}");
        }
    }

    #[test]
    fn depth_limit() {
        let mut ok = Value::Nil;
        for _ in 0..MAX_DEPTH {
            ok = Value::Vector(vec![ok]);
        }
        assert_eq!(dec(&enc(&ok)).unwrap(), ok);
        let deep = Value::List(vec![ok.clone()]);
        let mut out = vec![9];
        let e = encode_value(&deep, &mut out).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert_eq!(out, [9], "out is restored on error");
        // Hand-made deeper input: (MAX_DEPTH + 1) nested vectors.
        let mut bytes = Vec::new();
        for _ in 0..=MAX_DEPTH {
            bytes.extend_from_slice(&[16, 1, 0, 0, 0]);
        }
        bytes.push(0);
        let e = dec(&bytes).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert!(e.message.contains("nested deeper"), "{}", e.message);
        // Far deeper input must not overflow the stack either.
        let bytes: Vec<u8> = std::iter::repeat_n([16u8, 1, 0, 0, 0], 100_000)
            .flatten()
            .collect();
        assert_eq!(dec(&bytes).unwrap_err().kind, ErrorKind::Corrupt);
    }

    #[test]
    fn attrs_decode_and_reject() {
        let mut bytes = Vec::new();
        encode_attr(&Attr::Keyword(Name::parse("db/ident")), &mut bytes).unwrap();
        encode_attr(&Attr::Id(17), &mut bytes).unwrap();
        let mut table = vec![Attr::Id(1)];
        decode_attrs(&bytes, &mut table).unwrap();
        assert_eq!(
            table,
            vec![
                Attr::Id(1),
                Attr::Keyword(Name::parse("db/ident")),
                Attr::Id(17)
            ]
        );
        let mut bad = bytes.clone();
        bad.extend_from_slice(&enc(&Value::str("no")));
        let e = decode_attrs(&bad, &mut table).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert_eq!(table.len(), 3, "table unchanged on error");
        let e = decode_attrs(&bytes[..bytes.len() - 1], &mut table).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert_eq!(table.len(), 3);
    }

    fn datoms() -> Vec<Datom> {
        let attrs = [
            Attr::Keyword(Name::parse("a/x")),
            Attr::Id(72),
            Attr::Keyword(Name::parse("b")),
        ];
        samples()
            .into_iter()
            .enumerate()
            .map(|(i, v)| Datom {
                e: i as i64 * 3 - 5,
                a: attrs[i % 3].clone(),
                v,
                tx: crate::model::TX0 + i as i64,
                added: i % 4 != 1,
            })
            .collect()
    }

    #[test]
    fn builder_batches_decode_back() {
        let all = datoms();
        let mut b = BatchBuilder::new();
        let mut table = Vec::new();
        let mut got = Vec::new();
        for (i, d) in all.iter().enumerate() {
            b.push(d).unwrap();
            if i % 7 == 6 {
                let batch = b.flush();
                assert!(b.is_empty());
                decode_attrs(&batch.new_attrs, &mut table).unwrap();
                decode_batch(&batch.columns(), &table, &mut got).unwrap();
            }
        }
        let batch = b.flush();
        decode_attrs(&batch.new_attrs, &mut table).unwrap();
        decode_batch(&batch.columns(), &table, &mut got).unwrap();
        assert_eq!(got, all);
        assert_eq!(table.len(), 3, "each attribute sent once");
        let again = b.flush();
        assert!(again.is_empty() && again.new_attrs.is_empty());
    }

    #[test]
    fn batch_scalars_use_vnum() {
        let mut b = BatchBuilder::new();
        let a = Attr::Id(1);
        for v in [
            Value::Float(-1.0),
            Value::Char(0xFFFF),
            Value::Double(2.5),
            Value::Long(i64::MIN),
        ] {
            b.push(&Datom {
                e: 1,
                a: a.clone(),
                v,
                tx: 2,
                added: true,
            })
            .unwrap();
        }
        let batch = b.flush();
        assert!(batch.vbytes.is_empty());
        assert_eq!(batch.vtag, [5, 14, 4, 3]);
        assert_eq!(
            batch.vnum,
            [
                i64::from((-1.0f32).to_bits() as i32),
                0xFFFF,
                2.5f64.to_bits() as i64,
                i64::MIN
            ]
        );
        // A zero-extended FLOAT pattern is accepted as well.
        let mut cols = batch.columns();
        let vnum = [i64::from((-1.0f32).to_bits()), 0xFFFF, 0, 0];
        cols.vnum = &vnum;
        let mut out = Vec::new();
        decode_batch(&cols, &[a], &mut out).unwrap();
        assert_eq!(out[0].v, Value::Float(-1.0));
    }

    #[test]
    fn batch_validation() {
        let table = vec![Attr::Id(5)];
        let e = [1i64, 2];
        let a = [0i32, 0];
        let tx = [3i64, 3];
        let added = [1u8, 0];
        let vtag = [TAG_STRING as i8, TAG_LONG as i8];
        let vnum = [0i64, 9];
        let vbytes = [1u8, 0, 0, 0, b'z'];
        let good = BatchColumns {
            e: &e,
            a: &a,
            tx: &tx,
            added: &added,
            vtag: &vtag,
            vnum: &vnum,
            vbytes: &vbytes,
        };
        let mut out = vec![];
        decode_batch(&good, &table, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                Datom {
                    e: 1,
                    a: Attr::Id(5),
                    v: Value::str("z"),
                    tx: 3,
                    added: true
                },
                Datom {
                    e: 2,
                    a: Attr::Id(5),
                    v: Value::Long(9),
                    tx: 3,
                    added: false
                }
            ]
        );

        let short = [3i64];
        let bad_a = [0i32, 1];
        let neg_a = [-1i32, 0];
        let bad_added = [1u8, 2];
        let bad_tag = [TAG_STRING as i8, 20];
        let neg_tag = [TAG_STRING as i8, -1];
        let bad_char_tag = [TAG_STRING as i8, TAG_CHAR as i8];
        let bad_char = [0i64, 0x1_0000];
        let bad_float_tag = [TAG_STRING as i8, TAG_FLOAT as i8];
        let bad_float = [0i64, 1 << 40];
        let long_vbytes = [1u8, 0, 0, 0, b'z', 0];
        let short_vbytes = [1u8, 0, 0, 0];
        let variants: Vec<(&str, BatchColumns)> = vec![
            ("length", BatchColumns { tx: &short, ..good }),
            ("attr range", BatchColumns { a: &bad_a, ..good }),
            ("negative attr", BatchColumns { a: &neg_a, ..good }),
            (
                "added",
                BatchColumns {
                    added: &bad_added,
                    ..good
                },
            ),
            (
                "tag",
                BatchColumns {
                    vtag: &bad_tag,
                    ..good
                },
            ),
            (
                "negative tag",
                BatchColumns {
                    vtag: &neg_tag,
                    ..good
                },
            ),
            (
                "char",
                BatchColumns {
                    vtag: &bad_char_tag,
                    vnum: &bad_char,
                    ..good
                },
            ),
            (
                "float",
                BatchColumns {
                    vtag: &bad_float_tag,
                    vnum: &bad_float,
                    ..good
                },
            ),
            (
                "trailing",
                BatchColumns {
                    vbytes: &long_vbytes,
                    ..good
                },
            ),
            (
                "truncated",
                BatchColumns {
                    vbytes: &short_vbytes,
                    ..good
                },
            ),
        ];
        for (name, cols) in variants {
            let mut out = vec![Datom {
                e: 0,
                a: Attr::Id(0),
                v: Value::Nil,
                tx: 0,
                added: true,
            }];
            let e = decode_batch(&cols, &table, &mut out).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Corrupt, "{name}");
            assert_eq!(e.op, "decode batch", "{name}");
            assert_eq!(out.len(), 1, "{name}: out unchanged");
        }
    }

    #[test]
    fn datom_records_round_trip_and_truncate() {
        for d in datoms() {
            let mut out = vec![0xAA];
            encode_datom(&d, &mut out).unwrap();
            let mut input = &out[1..];
            assert_eq!(decode_datom(&mut input).unwrap(), d);
            assert!(input.is_empty());
            for cut in 1..out.len() {
                let mut input = &out[1..cut];
                assert_eq!(
                    decode_datom(&mut input).unwrap_err().kind,
                    ErrorKind::Corrupt
                );
            }
        }
    }

    #[test]
    fn decoded_names_are_shared_per_thread_and_still_checked() {
        let enc_name = |n: &Name| {
            let mut out = Vec::new();
            put_name(&mut out, n).unwrap();
            out
        };
        let a = Name::parse("person/name");
        let bytes = enc_name(&a);
        let first = read_name(&mut &bytes[..]).unwrap();
        let second = read_name(&mut &bytes[..]).unwrap();
        assert_eq!((&first, &second), (&a, &a));
        assert!(
            std::sync::Arc::ptr_eq(&first.name, &second.name),
            "a hit shares the strings"
        );
        // No namespace vs an empty one are different encodings and names.
        let bare = Name::new(None, "name");
        let empty_ns = Name::new(Some(""), "name");
        assert_eq!(read_name(&mut &enc_name(&bare)[..]).unwrap(), bare);
        assert_eq!(read_name(&mut &enc_name(&empty_ns)[..]).unwrap(), empty_ns);
        // Invalid UTF-8 fails every time (it is never cached).
        let mut bad = enc_name(&Name::new(Some("ns"), "ab"));
        let last = bad.len() - 1;
        bad[last] = 0xff;
        for _ in 0..2 {
            assert!(read_name(&mut &bad[..]).is_err());
        }
        // More distinct names than the cache holds still decode exactly.
        for i in 0..(NAME_CACHE_LIMIT + 10) {
            let n = Name::new(Some("gen"), &format!("attr-{i}"));
            let bytes = enc_name(&n);
            let mut input = &bytes[..];
            assert_eq!(read_name(&mut input).unwrap(), n);
            assert!(input.is_empty());
        }
        assert_eq!(read_name(&mut &bytes[..]).unwrap(), a);
    }

    fn arb_name() -> impl Strategy<Value = Name> {
        (proptest::option::of("[a-z.]{0,6}"), "[a-z?!-]{0,8}")
            .prop_map(|(ns, name)| Name::new(ns.as_deref(), &name))
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Long),
            any::<u64>().prop_map(|b| Value::Double(f64::from_bits(b))),
            any::<u32>().prop_map(|b| Value::Float(f32::from_bits(b))),
            ".{0,12}".prop_map(Value::String),
            arb_name().prop_map(Value::Keyword),
            arb_name().prop_map(Value::Symbol),
            any::<u16>().prop_map(Value::Char),
            any::<i64>().prop_map(Value::Inst),
            any::<u128>().prop_map(Value::Uuid),
            proptest::collection::vec(any::<u8>(), 0..9).prop_map(Value::BigInt),
            (proptest::collection::vec(any::<u8>(), 0..9), any::<i32>())
                .prop_map(|(unscaled, scale)| Value::BigDec { unscaled, scale }),
            (
                proptest::collection::vec(any::<u8>(), 0..5),
                proptest::collection::vec(any::<u8>(), 0..5)
            )
                .prop_map(|(num, den)| Value::Ratio { num, den }),
            proptest::collection::vec(any::<u8>(), 0..9).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Vector),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn values_round_trip_bytewise(v in arb_value()) {
            let bytes = enc(&v);
            let back = dec(&bytes).unwrap();
            prop_assert_eq!(enc(&back), bytes);
        }

        #[test]
        fn batches_round_trip_bytewise(vs in proptest::collection::vec(arb_value(), 0..20)) {
            let all: Vec<Datom> = vs
                .into_iter()
                .enumerate()
                .map(|(i, v)| Datom { e: i as i64, a: Attr::Id(i as i64 % 3), v, tx: 7, added: i % 2 == 0 })
                .collect();
            let mut b = BatchBuilder::new();
            for d in &all {
                b.push(d).unwrap();
            }
            let batch = b.flush();
            let mut table = Vec::new();
            decode_attrs(&batch.new_attrs, &mut table).unwrap();
            let mut got = Vec::new();
            decode_batch(&batch.columns(), &table, &mut got).unwrap();
            prop_assert_eq!(got.len(), all.len());
            for (g, d) in got.iter().zip(&all) {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                encode_datom(g, &mut x).unwrap();
                encode_datom(d, &mut y).unwrap();
                prop_assert_eq!(x, y);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut input = bytes.as_slice();
            let _ = decode_value(&mut input);
            let mut input = bytes.as_slice();
            let _ = decode_datom(&mut input);
            let mut table = Vec::new();
            let _ = decode_attrs(&bytes, &mut table);
        }
    }
}
