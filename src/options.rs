//! Typed reading of the EDN option maps that arrive from Clojure.
//!
//! Every accessor fails with `InvalidArgument` naming the option when its value has the
//! wrong type or range, so a caller's mistake never reaches the disk.

use crate::error::{Error, Result};
use crate::model::Value;

/// A view of an options map (`{:chunk-size 1000 …}`), keys spelled without the colon.
pub struct Opts<'a> {
    map: &'a Value,
    op: &'static str,
}

impl<'a> Opts<'a> {
    /// Given an EDN map and the operation name for errors, return the view.
    pub fn new(map: &'a Value, op: &'static str) -> Result<Self> {
        match map {
            Value::Map(_) | Value::Nil => Ok(Opts { map, op }),
            _ => Err(Error::invalid(op, "options must be a map")),
        }
    }

    fn bad(&self, key: &str, want: &str, got: &Value) -> Error {
        Error::invalid(self.op, format!(":{key} must be {want}, got {got:?}"))
    }

    /// The raw value under `key`, if present and not nil.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| **v != Value::Nil)
    }

    /// A string option; `None` if absent.
    pub fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.bad(key, "a string", other)),
        }
    }

    /// A required, non-blank string option.
    pub fn required_string(&self, key: &str) -> Result<&'a str> {
        match self.string(key)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(Error::invalid(self.op, format!(":{key} is required"))),
        }
    }

    /// An integer option within `[min, max]`, `default` if absent.
    pub fn long_in(&self, key: &str, default: i64, min: i64, max: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Long(n)) if (min..=max).contains(n) => Ok(*n),
            Some(other) => Err(self.bad(key, &format!("an integer from {min} to {max}"), other)),
        }
    }

    /// An integer option without range check; `None` if absent.
    pub fn long(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Long(n)) => Ok(Some(*n)),
            Some(other) => Err(self.bad(key, "an integer", other)),
        }
    }

    /// A boolean option, `default` if absent.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.bad(key, "true or false", other)),
        }
    }

    /// A keyword option's name (`:gzip` → `"gzip"`), `default` if absent.
    pub fn keyword(&self, key: &str, default: &'static str) -> Result<String> {
        match self.get(key) {
            None => Ok(default.to_owned()),
            Some(Value::Keyword(n)) => Ok(n.to_string()),
            Some(other) => Err(self.bad(key, "a keyword", other)),
        }
    }

    /// A sequential option's elements (empty if absent).
    pub fn seq(&self, key: &str) -> Result<&'a [Value]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Vector(v)) | Some(Value::List(v)) | Some(Value::Set(v)) => Ok(v),
            Some(other) => Err(self.bad(key, "a vector", other)),
        }
    }
}
