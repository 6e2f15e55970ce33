//! The tagged binary encoding of one value (and of an attribute): the payload format of
//! [`super::wire`]'s batches and of [`super::record`]'s spill records.
//!
//! The JVM ↔ Rust batch format, for reference (the columns live in [`super::wire`]):
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
use crate::model::{Attr, Name, Value};

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
/// thread's stack (JNI threads included). The same limit as every codec's
/// ([`super::MAX_DEPTH`]): what a backup accepts, a restore can read.
pub const MAX_DEPTH: usize = super::MAX_DEPTH;

pub(crate) const DECODE_OP: &str = "decode value";
pub(crate) const ENCODE_OP: &str = "encode value";

pub(crate) fn corrupt(message: impl Into<String>) -> Error {
    Error::corrupt(DECODE_OP, message)
}

pub(crate) fn truncated() -> Error {
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

pub(crate) fn unsupported(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unsupported, ENCODE_OP, message)
}

pub(crate) fn len_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| unsupported(format!("{what} of length {n} exceeds u32::MAX")))
}

pub(crate) fn put_len_bytes(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<()> {
    out.extend_from_slice(&len_u32(bytes.len(), what)?.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

pub(crate) fn put_name(out: &mut Vec<u8>, n: &Name) -> Result<()> {
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
pub(crate) fn tag_of(v: &Value) -> u8 {
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

pub(crate) fn encode_tagged(v: &Value, out: &mut Vec<u8>) -> Result<()> {
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
pub(crate) fn encode_payload(v: &Value, out: &mut Vec<u8>) -> Result<()> {
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
pub(crate) fn encode_leaf(v: &Value, out: &mut Vec<u8>) -> Result<()> {
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

pub(crate) fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(truncated());
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

pub(crate) fn take_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    let (head, tail) = input.split_first_chunk::<N>().ok_or_else(truncated)?;
    *input = tail;
    Ok(*head)
}

pub(crate) fn read_u8(input: &mut &[u8]) -> Result<u8> {
    let (&b, tail) = input.split_first().ok_or_else(truncated)?;
    *input = tail;
    Ok(b)
}

pub(crate) fn read_u16(input: &mut &[u8]) -> Result<u16> {
    take_array::<2>(input).map(u16::from_le_bytes)
}

pub(crate) fn read_u32(input: &mut &[u8]) -> Result<u32> {
    take_array::<4>(input).map(u32::from_le_bytes)
}

pub(crate) fn read_i32(input: &mut &[u8]) -> Result<i32> {
    take_array::<4>(input).map(i32::from_le_bytes)
}

pub(crate) fn read_u64(input: &mut &[u8]) -> Result<u64> {
    take_array::<8>(input).map(u64::from_le_bytes)
}

pub(crate) fn read_i64(input: &mut &[u8]) -> Result<i64> {
    take_array::<8>(input).map(i64::from_le_bytes)
}

pub(crate) fn read_len_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    let n = read_u32(input)? as usize;
    take(input, n)
}

pub(crate) fn read_vec(input: &mut &[u8]) -> Result<Vec<u8>> {
    read_len_bytes(input).map(<[u8]>::to_vec)
}

pub(crate) fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| corrupt(format!("{what} is not UTF-8: {e}")))
}

/// Names decoded on this thread at most, before [`read_name`]'s cache starts over.
pub(crate) const NAME_CACHE_LIMIT: usize = 4096;

thread_local! {
    /// [`read_name`]'s cache: the names decoded on this thread, by their encoded bytes.
    /// Sorted runs repeat a few attribute (and keyword value) names millions of times; a hit
    /// shares the name's strings instead of allocating and validating them again.
    static NAMES: std::cell::RefCell<HashMap<Box<[u8]>, Name>> =
        std::cell::RefCell::new(HashMap::new());
}

pub(crate) fn read_name(input: &mut &[u8]) -> Result<Name> {
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

pub(crate) fn read_string(input: &mut &[u8]) -> Result<String> {
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

pub(crate) fn decode_tagged(input: &mut &[u8]) -> Result<Value> {
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

pub(crate) fn seq_value(tag: u8, items: Vec<Value>) -> Value {
    match tag {
        TAG_VECTOR => Value::Vector(items),
        TAG_LIST => Value::List(items),
        _ => Value::Set(items),
    }
}

/// Decode the payload of a value with tag `tag` (the tag byte already consumed).
pub(crate) fn decode_payload(tag: u8, input: &mut &[u8]) -> Result<Value> {
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
pub(crate) fn decode_leaf(tag: u8, input: &mut &[u8]) -> Result<Value> {
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
// Checking and reusing (#14): the backup moves values as bytes, decoding them only once
// ---------------------------------------------------------------------------------------

/// Given input positioned after a tag byte, check the payload exactly as
/// [`decode_payload`] would (lengths, UTF-8, nesting, known tags) without building the
/// value, and advance `input` past it. Errors as [`decode_payload`].
pub(crate) fn skip_payload(tag: u8, input: &mut &[u8]) -> Result<()> {
    // Per open collection, the elements still to come (a map's entries count twice).
    let mut stack: Vec<u64> = Vec::new();
    let mut tag = tag;
    loop {
        match tag {
            TAG_VECTOR | TAG_LIST | TAG_SET | TAG_MAP => {
                if stack.len() >= MAX_DEPTH {
                    return Err(corrupt(format!(
                        "value nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                let n = u64::from(read_u32(input)?) * if tag == TAG_MAP { 2 } else { 1 };
                if n > 0 {
                    stack.push(n);
                    tag = read_u8(input)?;
                    continue;
                }
            }
            TAG_NIL | TAG_TRUE | TAG_FALSE => {}
            TAG_LONG | TAG_DOUBLE | TAG_INST => {
                take(input, 8)?;
            }
            TAG_FLOAT => {
                take(input, 4)?;
            }
            TAG_CHAR => {
                take(input, 2)?;
            }
            TAG_UUID => {
                take(input, 16)?;
            }
            TAG_STRING => {
                utf8(read_len_bytes(input)?, "string")?;
            }
            TAG_KEYWORD | TAG_SYMBOL => {
                let ns_len = read_i32(input)?;
                match ns_len {
                    -1 => {}
                    n if n < 0 => return Err(corrupt(format!("negative namespace length {n}"))),
                    n => {
                        utf8(take(input, n as usize)?, "namespace")?;
                    }
                }
                utf8(read_len_bytes(input)?, "name")?;
            }
            TAG_BIGINT | TAG_BYTES => {
                read_len_bytes(input)?;
            }
            TAG_BIGDEC => {
                take(input, 4)?;
                read_len_bytes(input)?;
            }
            TAG_RATIO => {
                read_len_bytes(input)?;
                read_len_bytes(input)?;
            }
            other => return Err(corrupt(format!("unknown value tag {other}"))),
        }
        // One element done: close the collections it completes.
        loop {
            match stack.last_mut() {
                None => return Ok(()),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    stack.pop();
                }
            }
        }
        tag = read_u8(input)?;
    }
}

/// Reusable room for decoding values one after another without allocating for each
/// string: [`ValueScratch::decode`] keeps the last string's buffer.
#[derive(Debug)]
pub struct ValueScratch {
    string: Value,
    other: Value,
}

impl Default for ValueScratch {
    fn default() -> Self {
        ValueScratch {
            string: Value::String(String::new()),
            other: Value::Nil,
        }
    }
}

impl ValueScratch {
    /// Given input positioned at a tagged value, decode it (as [`decode_value`]) into this
    /// scratch, advance `input` past it and return the value, valid until the next call.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<&Value> {
        let tag = read_u8(input)?;
        if tag == TAG_STRING {
            let text = utf8(read_len_bytes(input)?, "string")?;
            let Value::String(s) = &mut self.string else {
                unreachable!("the string slot only ever holds a string")
            };
            s.clear();
            s.push_str(text);
            Ok(&self.string)
        } else {
            self.other = decode_payload(tag, input)?;
            Ok(&self.other)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------

/// Append the tagged encoding of an attribute (KEYWORD or LONG) to `out`.
pub(crate) fn encode_attr(a: &Attr, out: &mut Vec<u8>) -> Result<()> {
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

pub(crate) fn decode_attr(input: &mut &[u8]) -> Result<Attr> {
    match read_u8(input)? {
        TAG_KEYWORD => Ok(Attr::Keyword(read_name(input)?)),
        TAG_LONG => Ok(Attr::Id(read_i64(input)?)),
        other => Err(corrupt(format!(
            "attribute has tag {other}; expected KEYWORD ({TAG_KEYWORD}) or LONG ({TAG_LONG})"
        ))),
    }
}

#[cfg(test)]
pub(crate) mod samples {
    //! Values and datoms shared by the codec tests.
    use super::*;
    use crate::model::Datom;
    use proptest::prelude::*;

    pub fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(v, &mut out).unwrap();
        out
    }

    pub fn dec(bytes: &[u8]) -> Result<Value> {
        let mut input = bytes;
        let v = decode_value(&mut input)?;
        assert!(input.is_empty(), "decode left {} bytes", input.len());
        Ok(v)
    }

    pub fn samples() -> Vec<Value> {
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

    pub fn datoms() -> Vec<Datom> {
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

    pub fn arb_name() -> impl Strategy<Value = Name> {
        (proptest::option::of("[a-z.]{0,6}"), "[a-z?!-]{0,8}")
            .prop_map(|(ns, name)| Name::new(ns.as_deref(), &name))
    }

    pub fn arb_value() -> impl Strategy<Value = Value> {
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
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;
    use proptest::prelude::*;

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
    fn scratch_reuses_its_string_and_switches_kinds() {
        let mut scratch = ValueScratch::default();
        let mut all = Vec::new();
        for v in samples() {
            all.extend_from_slice(&enc(&v));
        }
        let mut input = all.as_slice();
        for v in samples() {
            let mut skipped = input;
            let tag = read_u8(&mut skipped).unwrap();
            skip_payload(tag, &mut skipped).unwrap();
            assert_eq!(scratch.decode(&mut input).unwrap(), &v);
            assert_eq!(input.len(), skipped.len());
        }
        assert!(input.is_empty());
        let long = enc(&Value::str(&"x".repeat(1000)));
        scratch.decode(&mut long.as_slice()).unwrap();
        let Value::String(s) = &scratch.string else {
            unreachable!()
        };
        let (cap, ptr) = (s.capacity(), s.as_ptr());
        assert_eq!(
            scratch
                .decode(&mut enc(&Value::Long(3)).as_slice())
                .unwrap(),
            &Value::Long(3)
        );
        assert_eq!(
            scratch
                .decode(&mut enc(&Value::str("short")).as_slice())
                .unwrap(),
            &Value::str("short")
        );
        let Value::String(s) = &scratch.string else {
            unreachable!()
        };
        assert_eq!((s.capacity(), s.as_ptr()), (cap, ptr), "the buffer is kept");
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn values_round_trip_bytewise(v in arb_value()) {
            let bytes = enc(&v);
            let back = dec(&bytes).unwrap();
            prop_assert_eq!(enc(&back), bytes);
        }

        #[test]
        fn skip_and_scratch_agree_with_decode(v in arb_value(), junk in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = enc(&v);
            bytes.extend_from_slice(&junk);
            let mut skipped = &bytes[1..];
            skip_payload(bytes[0], &mut skipped).unwrap();
            let mut decoded = bytes.as_slice();
            let back = decode_value(&mut decoded).unwrap();
            prop_assert_eq!(skipped.len(), decoded.len());
            prop_assert_eq!(skipped.len(), junk.len());
            let mut scratch = ValueScratch::default();
            let mut again = bytes.as_slice();
            let got = scratch.decode(&mut again).unwrap();
            prop_assert_eq!(enc(got), enc(&back));
            prop_assert_eq!(again.len(), junk.len());
        }

        #[test]
        fn skip_accepts_exactly_what_decode_accepts(bytes in proptest::collection::vec(any::<u8>(), 1..64)) {
            let mut decoded = bytes.as_slice();
            let d = decode_value(&mut decoded);
            let mut skipped = &bytes[1..];
            let s = skip_payload(bytes[0], &mut skipped);
            prop_assert_eq!(d.is_ok(), s.is_ok(), "{:?} vs {:?}", d, s);
            if d.is_ok() {
                prop_assert_eq!(decoded.len(), skipped.len());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut input = bytes.as_slice();
            let _ = decode_value(&mut input);
        }
    }
}
