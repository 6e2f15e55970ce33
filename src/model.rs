//! The data model shared by every layer: values, attributes and datoms.
//!
//! [`Value`] is the closed set of values Datahike can store (and that EDN metadata uses).
//! It keeps apart what Clojure keeps apart: vectors vs lists, `Double` vs `Float`,
//! `BigDecimal` scale, byte arrays. Sets and maps keep the element order in which they were
//! read or received, so re-encoding a decoded value reproduces the same bytes.

use std::fmt;
use std::sync::Arc;

/// A namespaced name: the payload of a keyword or a symbol (`:ns/name`, `ns/name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    /// The namespace, if any (`None` for `:foo`).
    pub ns: Option<Arc<str>>,
    /// The name part.
    pub name: Arc<str>,
}

impl Name {
    /// Given an optional namespace and a name, return the [`Name`].
    pub fn new(ns: Option<&str>, name: &str) -> Self {
        Name {
            ns: ns.map(Into::into),
            name: name.into(),
        }
    }

    /// Parse `"ns/name"` or `"name"` (the first `/` splits, except a lone `"/"`).
    pub fn parse(s: &str) -> Self {
        match s.find('/') {
            Some(i) if s != "/" && i > 0 => Name::new(Some(&s[..i]), &s[i + 1..]),
            _ => Name::new(None, s),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ns {
            Some(ns) => write!(f, "{}/{}", ns, self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A value as Datahike stores it (or as EDN metadata holds it).
///
/// Big integers are carried as two's-complement big-endian bytes
/// (`java.math.BigInteger#toByteArray`), so no big-number crate is needed to move them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// A 64-bit integer (`java.lang.Long`; also what `Integer`/`Short`/`Byte` become).
    Long(i64),
    /// A `java.lang.Double`; NaN payloads and `-0.0` bits are kept.
    Double(f64),
    /// A `java.lang.Float`.
    Float(f32),
    /// A string (UTF-8 here; Fressian and the JVM use UTF-16 code units).
    String(String),
    /// A keyword.
    Keyword(Name),
    /// A symbol.
    Symbol(Name),
    /// A `java.lang.Character` (one UTF-16 code unit).
    Char(u16),
    /// A `java.util.Date`, as milliseconds since the epoch.
    Inst(i64),
    /// A `java.util.UUID`, as its 128 bits (most significant first).
    Uuid(u128),
    /// A `clojure.lang.BigInt` / `java.math.BigInteger`: two's-complement big-endian bytes.
    BigInt(Vec<u8>),
    /// A `java.math.BigDecimal`: unscaled value (two's-complement big-endian) and scale.
    BigDec {
        /// The unscaled value's bytes.
        unscaled: Vec<u8>,
        /// The scale (digits right of the point; negative for powers of ten).
        scale: i32,
    },
    /// A `clojure.lang.Ratio`: numerator and denominator bytes (two's complement, big-endian).
    Ratio {
        /// Numerator bytes.
        num: Vec<u8>,
        /// Denominator bytes.
        den: Vec<u8>,
    },
    /// A `byte[]`.
    Bytes(Vec<u8>),
    /// A vector (`clojure.lang.IPersistentVector`).
    Vector(Vec<Value>),
    /// A list or any other sequential collection that is not a vector.
    List(Vec<Value>),
    /// A set, elements in encounter order.
    Set(Vec<Value>),
    /// A map, entries in encounter order.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// Given a keyword spelled `"ns/name"` (no colon), return the keyword value.
    pub fn kw(s: &str) -> Value {
        Value::Keyword(Name::parse(s))
    }

    /// Given a string slice, return a string value.
    pub fn str(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    /// Return the long inside, if this is a `Long`.
    pub fn as_long(&self) -> Option<i64> {
        match self {
            Value::Long(n) => Some(*n),
            _ => None,
        }
    }

    /// Return the string inside, if this is a `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Return the boolean inside, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Return the elements, if this is a vector or a list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Vector(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// If this is a map, return the value under keyword `key` (spelled `"ns/name"`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        let Value::Map(entries) = self else {
            return None;
        };
        let want = Name::parse(key);
        entries.iter().find_map(|(k, v)| match k {
            Value::Keyword(n) if *n == want => Some(v),
            _ => None,
        })
    }
}

/// Build a keyword-keyed map value from `(key, value)` pairs (keys spelled `"ns/name"`).
pub fn kw_map<I: IntoIterator<Item = (&'static str, Value)>>(entries: I) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::kw(k), v))
            .collect(),
    )
}

/// A datom's attribute: a keyword, or (in `:attribute-refs? true` databases) an entity id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attr {
    /// `:ns/name`.
    Keyword(Name),
    /// The attribute's entity id.
    Id(i64),
}

impl Attr {
    /// Return the attribute as the value written into a chunk's `[e a v tx added]`.
    pub fn to_value(&self) -> Value {
        match self {
            Attr::Keyword(n) => Value::Keyword(n.clone()),
            Attr::Id(id) => Value::Long(*id),
        }
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Keyword(n) => write!(f, ":{n}"),
            Attr::Id(id) => write!(f, "{id}"),
        }
    }
}

/// The first transaction id of every Datahike database (2^29): the system datoms' tx.
pub const TX0: i64 = 536_870_912;

/// One datom `[e a v tx added]`; `tx` is always the positive transaction id.
#[derive(Clone, Debug, PartialEq)]
pub struct Datom {
    /// Entity id.
    pub e: i64,
    /// Attribute.
    pub a: Attr,
    /// Value.
    pub v: Value,
    /// Transaction id (positive, also for retractions).
    pub tx: i64,
    /// `true` for an assertion, `false` for a retraction.
    pub added: bool,
}

impl Datom {
    /// Return the datom as the 5-element list `[e a v tx added]` that chunks hold.
    pub fn to_value(&self) -> Value {
        Value::Vector(vec![
            Value::Long(self.e),
            self.a.to_value(),
            self.v.clone(),
            Value::Long(self.tx),
            Value::Bool(self.added),
        ])
    }
}
