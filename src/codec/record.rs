//! The self-contained record encoding of one datom, for the external sort's spilled runs
//! ([`crate::pipeline::order`]): `e`, `tx`, `added`, then the attribute and the value in
//! the [`super::tagged`] encoding.

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

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut input = bytes.as_slice();
            let _ = decode_datom(&mut input);
        }
    }
}
