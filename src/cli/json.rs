//! Datoms as JSON lines (`cat --format json`).
//!
//! One object per datom: `{"e": 17, "a": ":person/name", "v": "Ada", "tx": 536870913,
//! "added": true}`. The attribute is its keyword as text (`":ns/name"`) or, in
//! `:attribute-refs? true` databases, its entity id. A value is a JSON value when JSON has
//! it exactly — nil, booleans, strings, 64-bit integers, finite doubles and floats, and
//! vectors (tuples) of such values — and otherwise `{"edn": "<its EDN text>"}` (keywords,
//! instants, UUIDs, big numbers, ratios, chars, byte arrays, sets, maps, lists, NaN and
//! infinities), so nothing is lost or confused with a string.

use datacamp::codec::edn;
use datacamp::model::{Attr, Datom, Value};
use serde::Serialize;
use serde_json::{json, Value as Json};

fn number(x: f64) -> Option<Json> {
    serde_json::Number::from_f64(x).map(Json::Number)
}

/// Given a value, return its JSON form (see the module documentation).
pub fn value(v: &Value) -> Json {
    let native = match v {
        Value::Nil => Some(Json::Null),
        Value::Bool(b) => Some(Json::Bool(*b)),
        Value::Long(n) => Some(json!(n)),
        Value::String(s) => Some(Json::String(s.clone())),
        Value::Double(x) => number(*x),
        Value::Float(x) => number(f64::from(*x)),
        Value::Vector(items) => Some(Json::Array(items.iter().map(value).collect())),
        _ => None,
    };
    native.unwrap_or_else(|| json!({ "edn": edn::write(v) }))
}

/// A datom as its JSON line holds it (fields in datom order).
#[derive(Serialize)]
struct JsonDatom {
    e: i64,
    a: Json,
    v: Json,
    tx: i64,
    added: bool,
}

/// Given a datom, return its JSON line (one object, no newline).
pub fn datom(d: &Datom) -> String {
    let a = match &d.a {
        Attr::Keyword(n) => Json::String(format!(":{n}")),
        Attr::Id(id) => json!(id),
    };
    let line = JsonDatom {
        e: d.e,
        a,
        v: value(&d.v),
        tx: d.tx,
        added: d.added,
    };
    serde_json::to_string(&line).unwrap_or_else(|e| json!({ "error": e.to_string() }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datacamp::model::Name;

    #[test]
    fn values_are_exact_json_or_tagged_edn() {
        assert_eq!(value(&Value::Long(i64::MAX)), json!(i64::MAX));
        assert_eq!(value(&Value::Double(1.5)), json!(1.5));
        assert_eq!(value(&Value::Double(f64::NAN)), json!({"edn": "##NaN"}));
        assert_eq!(value(&Value::kw("a/b")), json!({"edn": ":a/b"}));
        assert_eq!(
            value(&Value::Vector(vec![Value::Long(1), Value::kw("x")])),
            json!([1, {"edn": ":x"}])
        );
        assert_eq!(
            value(&Value::Inst(0)),
            json!({"edn": "#inst \"1970-01-01T00:00:00.000-00:00\""})
        );
        let d = Datom {
            e: 7,
            a: Attr::Keyword(Name::parse("p/name")),
            v: Value::str("Ada"),
            tx: 536870913,
            added: false,
        };
        assert_eq!(
            datom(&d),
            r#"{"e":7,"a":":p/name","v":"Ada","tx":536870913,"added":false}"#
        );
    }
}
