//! The identity of a datom's `[e a v]` as bytes: equal exactly when Datahike holds the
//! same fact (sets and maps by content, ±0.0 alike), ordered by `e` first. What the
//! `:db/noHistory` state of a chain ([`crate::chain::state`]) and of a capture
//! ([`crate::log::writer`]) is keyed by.

use std::sync::Arc;

use crate::error::Result;
use crate::model::{Datom, Value};

use super::tagged::encode_value;

fn canonical(v: &Value) -> Value {
    let sorted = |items: &[Value]| {
        let mut keyed: Vec<(Vec<u8>, Value)> = items
            .iter()
            .map(|x| {
                let c = canonical(x);
                let mut k = Vec::new();
                let _ = encode_value(&c, &mut k);
                (k, c)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        keyed.into_iter().map(|(_, x)| x).collect::<Vec<_>>()
    };
    match v {
        // Datahike's index compares -0.0 and 0.0 as equal.
        Value::Double(x) if *x == 0.0 => Value::Double(0.0),
        Value::Float(x) if *x == 0.0 => Value::Float(0.0),
        Value::Vector(items) => Value::Vector(items.iter().map(canonical).collect()),
        Value::List(items) => Value::List(items.iter().map(canonical).collect()),
        Value::Set(items) => Value::Set(sorted(items)),
        Value::Map(entries) => {
            let mut keyed: Vec<(Vec<u8>, (Value, Value))> = entries
                .iter()
                .map(|(k, x)| {
                    let ck = canonical(k);
                    let mut bytes = Vec::new();
                    let _ = encode_value(&ck, &mut bytes);
                    (bytes, (ck, canonical(x)))
                })
                .collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(keyed.into_iter().map(|(_, e)| e).collect())
        }
        other => other.clone(),
    }
}

/// Given a datom, return its state key: bytes equal exactly when Datahike holds the same
/// `[e a v]` (sets and maps by content, ±0.0 alike), ordered by `e` first.
pub fn state_key(d: &Datom) -> Result<Arc<[u8]>> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&((d.e as u64) ^ (1 << 63)).to_be_bytes());
    encode_value(&d.a.to_value(), &mut out)?;
    encode_value(&canonical(&d.v), &mut out)?;
    Ok(out.into())
}
