//! Typed reading of the EDN option maps that arrive from Clojure.
//!
//! Every accessor fails with `InvalidArgument` naming the option when its value has the
//! wrong type or range, so a caller's mistake never reaches the disk. [`check_keys`] is the
//! one check of an operation's option keys: each operation lists its keys next to its
//! options struct (`KEYS` in [`crate::ops`]'s modules), and a misspelled key fails naming
//! the closest known one.

use crate::codec::edn;
use crate::error::{Error, Result};
use crate::model::Value;

/// The closest of `known` to `key` (Jaro–Winkler similarity, with a floor so that unrelated
/// names are not suggested).
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Given an options map, the operation's name and the keys it accepts (spelled without the
/// colon), fail with `InvalidArgument` on the first key that is not one of them, naming it
/// and the closest known key (`unknown option :paralel (closest known option: :parallel)`).
/// Namespaced keywords (`:my.app/tag`) are left to the caller and accepted.
pub fn check_keys(map: &Value, op: &str, known: &[&str]) -> Result<()> {
    let Value::Map(entries) = map else {
        return match map {
            Value::Nil => Ok(()),
            _ => Err(Error::invalid(op, "options must be a map")),
        };
    };
    for (k, _) in entries {
        // The key as the caller wrote it, and its bare name for the suggestion.
        let (shown, bare) = match k {
            Value::Keyword(n) if n.ns.is_some() || known.contains(&&*n.name) => continue,
            Value::Keyword(n) => (format!(":{n}"), n.name.to_string()),
            Value::String(s) => (edn::write(k), s.clone()),
            other => (edn::write(other), edn::write(other)),
        };
        let message = match closest(&bare, known) {
            Some(c) => format!("unknown option {shown} (closest known option: :{c})"),
            None => format!("unknown option {shown}"),
        };
        return Err(
            Error::invalid(op, message).with_hint(format!("{op} options: :{}", known.join(" :")))
        );
    }
    Ok(())
}

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

    /// The error for option `key` of the wrong type or range. It names the type it got and
    /// quotes a number, never a string, keyword or collection: options carry secrets.
    fn bad(&self, key: &str, want: &str, got: &Value) -> Error {
        Error::invalid(
            self.op,
            format!(":{key} must be {want}, got {}", describe(got)),
        )
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

    /// Refuse every key of the map that is not a keyword named in `known` (namespaced
    /// keywords are left to their owner): `InvalidArgument` naming the key, the closest
    /// known one when there is a likely match, and `what` the map is.
    pub fn only_keys(&self, known: &[&str], what: &str) -> Result<()> {
        let Value::Map(entries) = self.map else {
            return Ok(());
        };
        for (k, _) in entries {
            let name = match k {
                Value::Keyword(n) if n.ns.is_some() => continue,
                Value::Keyword(n) if known.contains(&&*n.name) => continue,
                Value::Keyword(n) => n.name.to_string(),
                other => crate::codec::edn::write(other),
            };
            let mut err = Error::invalid(self.op, format!("unknown option :{name} in the {what}"));
            err.hint = Some(match closest(&name, known) {
                Some(near) => format!(
                    "did you mean :{near}? The {what} takes :{}",
                    known.join(" :")
                ),
                None => format!("the {what} takes :{}", known.join(" :")),
            });
            return Err(err);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::edn;

    #[test]
    fn unknown_keys_name_the_closest_known_one() {
        let known = ["parallel", "verify-first?", "deep?", "path"];
        assert_eq!(closest("paralel", &known), Some("parallel"));
        assert_eq!(closest("verify-frist?", &known), Some("verify-first?"));
        assert_eq!(closest("deeep?", &known), Some("deep?"));
        assert_eq!(closest("bucket", &known), None);
        let map = edn::parse("{:path \"/x\" :paralel 4 :datacamp/ignored 1}").unwrap();
        let err = Opts::new(&map, "open target")
            .unwrap()
            .only_keys(&known, "directory target")
            .unwrap_err();
        assert_eq!(
            err.message,
            "unknown option :paralel in the directory target"
        );
        assert!(err.hint.unwrap().starts_with("did you mean :parallel?"));
        let ok = edn::parse("{:path \"/x\" :datacamp/ignored 1}").unwrap();
        assert!(Opts::new(&ok, "t").unwrap().only_keys(&known, "t").is_ok());
    }
}

/// A description of an option's value for an error message: numbers and booleans as they
/// are, everything else by its type only (an option may hold a secret).
pub fn describe(v: &Value) -> String {
    match v {
        Value::Long(n) => n.to_string(),
        Value::Double(x) if x.is_nan() => "##NaN".into(),
        Value::Double(x) if x.is_infinite() => if *x > 0.0 { "##Inf" } else { "##-Inf" }.into(),
        Value::Double(x) => x.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Nil => "nil".into(),
        Value::String(_) => "a string".into(),
        Value::Keyword(_) => "a keyword".into(),
        Value::Symbol(_) => "a symbol".into(),
        Value::Char(_) => "a character".into(),
        Value::Inst(_) => "an instant".into(),
        Value::Uuid(_) => "a UUID".into(),
        Value::BigInt(_) => "a big integer".into(),
        Value::BigDec { .. } => "a decimal".into(),
        Value::Ratio { .. } => "a ratio".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Vector(_) => "a vector".into(),
        Value::List(_) => "a list".into(),
        Value::Set(_) => "a set".into(),
        Value::Map(_) => "a map".into(),
    }
}

#[cfg(test)]
mod describe_tests {
    use super::*;
    use crate::codec::edn;

    #[test]
    fn wrong_types_are_named_without_echoing_the_value() {
        let v = edn::parse("{:secret :SECRET-abc :n 1.5 :s \"SECRET-def\" :x ##NaN}").unwrap();
        let o = Opts::new(&v, "open").unwrap();
        let e = o.string("secret").unwrap_err();
        assert_eq!(e.message, ":secret must be a string, got a keyword");
        let e = o.long("s").unwrap_err();
        assert!(!e.message.contains("SECRET"), "{e}");
        assert_eq!(
            o.long("n").unwrap_err().message,
            ":n must be an integer, got 1.5"
        );
        assert!(o.long("x").unwrap_err().message.ends_with("got ##NaN"));
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;
    use crate::error::ErrorKind;

    fn check(text: &str, op: &str) -> Result<()> {
        let keys = crate::ops::option_keys(op).unwrap();
        check_keys(&edn::parse(text).unwrap(), op, keys)
    }

    #[test]
    fn misspelled_keys_name_the_closest_known_one() {
        for (text, op, want) in [
            (
                "{:paralel 4}",
                "backup",
                "unknown option :paralel (closest known option: :parallel)",
            ),
            (
                "{:verify-frist? false}",
                "restore",
                "unknown option :verify-frist? (closest known option: :verify-first?)",
            ),
            (
                "{:deeep? true}",
                "verify",
                "unknown option :deeep? (closest known option: :deep?)",
            ),
            (
                "{:older-than 3}",
                "cleanup",
                "unknown option :older-than (closest known option: :older-than-hours)",
            ),
            (
                "{\"parallel\" 2}",
                "backup",
                "unknown option \"parallel\" (closest known option: :parallel)",
            ),
            ("{:zzz 1}", "backup", "unknown option :zzz"),
        ] {
            let err = check(text, op).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument);
            assert_eq!(err.message, want, "{text}");
            assert!(err.hint.as_deref().unwrap().contains(":database-id") || op == "cleanup");
        }
        check("{:parallel 4 :chunk-size 1 :my.app/tag 1}", "backup").unwrap();
        check("{:database-id \"x\" :deep? true}", "verify").unwrap();
        check("nil", "restore").unwrap();
        assert!(check("[1]", "restore").is_err());
    }

    #[test]
    fn wrong_values_are_described_by_type_unless_numbers_or_booleans() {
        let v = edn::parse("{:parallel \"4\" :n 42}").unwrap();
        let o = Opts::new(&v, "backup").unwrap();
        let err = o.long_in("parallel", 2, 1, 64).unwrap_err();
        assert_eq!(
            err.message,
            ":parallel must be an integer from 1 to 64, got a string"
        );
        let err = o.bool("n", false).unwrap_err();
        assert_eq!(err.message, ":n must be true or false, got 42");
    }
}
