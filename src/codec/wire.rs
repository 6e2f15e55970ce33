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
//! The tagged encoding itself lives in [`super::tagged`]; the same encoding serves the spill
//! files of the external sort ([`super::record`]) and the batches handed back to the JVM on
//! restore.

use std::collections::HashMap;

use super::tagged::*;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Value};

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
/// from the JVM's arrays and handed to the feeding thread (backup, [`crate::pipeline::feed`]).
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

/// The sending side's attribute table (Rust → JVM): ids from 0 in order of first use, and
/// the encodings of the attributes added since the last [`AttrTable::take_new`] — a
/// batch's `new_attrs`, which the receiver appends to its table as [`decode_attrs`] does.
#[derive(Debug, Default)]
pub struct AttrTable {
    ids: HashMap<Attr, i32, foldhash::fast::FixedState>,
    table: Vec<Attr>,
    new: Vec<u8>,
}

impl AttrTable {
    /// Return `a`'s id, adding it to the table when it is new.
    ///
    /// Errors: [`ErrorKind::Unsupported`] if `a` cannot be encoded or the table would
    /// exceed `i32::MAX` entries; the table is left as it was.
    pub fn id(&mut self, a: &Attr) -> Result<i32> {
        if let Some(id) = self.ids.get(a) {
            return Ok(*id);
        }
        let id = i32::try_from(self.table.len()).map_err(|_| {
            Error::new(
                ErrorKind::Unsupported,
                "build batch",
                "more than i32::MAX distinct attributes",
            )
        })?;
        let start = self.new.len();
        if let Err(e) = encode_attr(a, &mut self.new) {
            self.new.truncate(start);
            return Err(e.in_op("build batch"));
        }
        self.ids.insert(a.clone(), id);
        self.table.push(a.clone());
        Ok(id)
    }

    /// Return the encodings of the attributes added since the last call (a batch's
    /// `new_attrs`).
    pub fn take_new(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.new)
    }

    /// Return the attributes in id order.
    pub fn attrs(&self) -> &[Attr] {
        &self.table
    }

    /// Return the attributes in id order, consuming the table.
    pub fn into_attrs(self) -> Vec<Attr> {
        self.table
    }
}

/// Accumulates datoms into owned columns (the restore direction: Rust → JVM).
///
/// The builder keeps its own [`AttrTable`] for the whole session: each [`Batch`] carries in
/// `new_attrs` the attributes first used since the previous [`BatchBuilder::flush`].
#[derive(Debug, Default)]
pub struct BatchBuilder {
    cur: Batch,
    attrs: AttrTable,
    /// The attribute of the previous push and its id: consecutive datoms mostly share the
    /// attribute, and decoded datoms share its strings (see [`same_attr`]).
    last: Option<(Attr, i32)>,
}

/// Whether `x` and `y` are the same attribute, told cheaply when they share their strings
/// (names decoded through one cache do) and by comparing the strings otherwise.
fn same_attr(x: &Attr, y: &Attr) -> bool {
    match (x, y) {
        (Attr::Keyword(a), Attr::Keyword(b)) => {
            let ns = match (&a.ns, &b.ns) {
                (Some(p), Some(q)) => std::sync::Arc::ptr_eq(p, q) || p == q,
                (None, None) => true,
                _ => false,
            };
            ns && (std::sync::Arc::ptr_eq(&a.name, &b.name) || a.name == b.name)
        }
        (Attr::Id(a), Attr::Id(b)) => a == b,
        _ => false,
    }
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
        let a = match &self.last {
            Some((attr, id)) if same_attr(attr, &d.a) => *id,
            _ => {
                let id = self.attrs.id(&d.a)?;
                self.last = Some((d.a.clone(), id));
                id
            }
        };
        self.push_parts(d.e, a, &d.v, d.tx, d.added)
    }

    /// Append a datom whose attribute is already numbered (`a`: an id in a table the
    /// receiver knows — this builder's own, or one the batches are sent with).
    ///
    /// Errors: [`ErrorKind::Unsupported`] if the value cannot be encoded; the builder is
    /// left as it was.
    pub fn push_parts(&mut self, e: i64, a: i32, v: &Value, tx: i64, added: bool) -> Result<()> {
        let b = &mut self.cur;
        // Scalars go into `vnum`, the rest into `vbytes`.
        let (tag, num) = match v {
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
                    return Err(e.in_op("build batch"));
                }
                (tag_of(other), 0)
            }
        };
        b.e.push(e);
        b.a.push(a);
        b.tx.push(tx);
        b.added.push(u8::from(added));
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
        b.e.len() * (8 + 4 + 8 + 1 + 1 + 8) + b.vbytes.len() + self.attrs.new.len()
    }

    /// Return the current batch and start an empty one; the attribute table is kept, so
    /// the next batch's `new_attrs` holds only attributes not seen before.
    pub fn flush(&mut self) -> Batch {
        // The next batch starts with room for as many datoms and bytes as this one held.
        let next = Batch {
            e: Vec::with_capacity(self.cur.e.len()),
            a: Vec::with_capacity(self.cur.a.len()),
            tx: Vec::with_capacity(self.cur.tx.len()),
            added: Vec::with_capacity(self.cur.added.len()),
            vtag: Vec::with_capacity(self.cur.vtag.len()),
            vnum: Vec::with_capacity(self.cur.vnum.len()),
            vbytes: Vec::with_capacity(self.cur.vbytes.len()),
            new_attrs: Vec::new(),
        };
        let mut batch = std::mem::replace(&mut self.cur, next);
        batch.new_attrs = self.attrs.take_new();
        batch
    }

    /// Return the attribute table (every attribute pushed so far, in id order), consuming
    /// the builder: for batches numbered by a table of their own (one chunk's).
    pub fn into_attrs(self) -> Vec<Attr> {
        self.attrs.into_attrs()
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::encode_datom;
    use super::super::tagged::samples::*;
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::Name;
    use proptest::prelude::*;

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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
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
            let mut table = Vec::new();
            let _ = decode_attrs(&bytes, &mut table);
        }
    }
}
