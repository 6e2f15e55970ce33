//! Record encodings of one datom for the external sort ([`crate::pipeline::order`]):
//! [`encode_datom`], self-contained (`e`, `tx`, `added`, then the attribute and the value in
//! the [`super::tagged`] encoding), and the restore order's compact records
//! ([`put_record_header`], [`RecordView`]) that name the attribute by its id.

use super::tagged::*;
use crate::error::Result;
use crate::model::Datom;

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

// ---------------------------------------------------------------------------------------
// Restore-order records (#14): what the backup's sort holds and spills, per datom
// ---------------------------------------------------------------------------------------

/// Bytes before the value in a restore-order record.
pub const RECORD_HEADER: usize = 14;

/// Append the header of a restore-order record to `out`: `e` (i64 LE), `added` (0/1),
/// `is_ref` (0/1: the attribute is a ref attribute), the attribute's id in the sort's table
/// (u32 LE). The tagged value follows; the tx and the datom's position live in the sort key.
pub fn put_record_header(out: &mut Vec<u8>, e: i64, added: bool, is_ref: bool, aid: u32) {
    out.extend_from_slice(&e.to_le_bytes());
    out.push(u8::from(added));
    out.push(u8::from(is_ref));
    out.extend_from_slice(&aid.to_le_bytes());
}

/// A restore-order record read in place (see [`put_record_header`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordView<'a> {
    /// Entity id.
    pub e: i64,
    /// Assertion or retraction.
    pub added: bool,
    /// Whether the attribute is a ref attribute.
    pub is_ref: bool,
    /// The attribute's id in the sort's table.
    pub aid: u32,
    /// The value, tagged (tag byte first).
    pub value: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Read a record; `Corrupt` if it is shorter than a header and a tag, or its flags are
    /// not 0/1.
    pub fn read(bytes: &'a [u8]) -> Result<Self> {
        let bad = || crate::error::Error::corrupt("read restore-order record", "malformed record");
        let (head, value) = bytes
            .split_first_chunk::<RECORD_HEADER>()
            .filter(|(_, v)| !v.is_empty())
            .ok_or_else(bad)?;
        let (e, rest) = head.split_first_chunk::<8>().ok_or_else(bad)?;
        let [added, is_ref, aid @ ..] = rest else {
            return Err(bad());
        };
        if *added > 1 || *is_ref > 1 {
            return Err(bad());
        }
        let aid: [u8; 4] = aid.try_into().map_err(|_| bad())?;
        Ok(RecordView {
            e: i64::from_le_bytes(*e),
            added: *added == 1,
            is_ref: *is_ref == 1,
            aid: u32::from_le_bytes(aid),
            value,
        })
    }

    /// The entity the value refers to: the value when the attribute is a ref attribute and
    /// the value a LONG.
    pub fn ref_target(&self) -> Option<i64> {
        match self.value.split_first() {
            Some((&TAG_LONG, rest)) if self.is_ref => {
                rest.first_chunk::<8>().map(|b| i64::from_le_bytes(*b))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tagged::samples::*;
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

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
    fn restore_order_records_read_back() {
        let mut out = Vec::new();
        put_record_header(&mut out, -5, true, true, 7);
        encode_tagged(&crate::model::Value::Long(42), &mut out).unwrap();
        let r = RecordView::read(&out).unwrap();
        assert_eq!((r.e, r.added, r.is_ref, r.aid), (-5, true, true, 7));
        assert_eq!(r.ref_target(), Some(42));
        let not_ref = RecordView { is_ref: false, ..r };
        assert_eq!(not_ref.ref_target(), None);
        for cut in 0..=RECORD_HEADER {
            assert!(RecordView::read(&out[..cut]).is_err(), "{cut}");
        }
        let mut bad = out.clone();
        bad[8] = 2;
        assert!(RecordView::read(&bad).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut input = bytes.as_slice();
            let _ = decode_datom(&mut input);
            if let Ok(r) = RecordView::read(&bytes) {
                let _ = r.ref_target();
            }
        }
    }
}
