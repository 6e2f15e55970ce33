//! A log's metadata files: its head (`log.edn`, written once when the log starts, before
//! any segment) and its closing marker (`closed.edn`, written when its capture stops
//! cleanly). Neither grows with the log: what the log holds is its segments' listing.
//!
//! The head carries the chain keys of a backup manifest (`:backup/type :log`,
//! `:backup/parent`, `:backup/base`, `:backup/tx-range [after nil]`) and the keys of a
//! backup's `config.edn` that a restore needs (the source's configuration, the
//! `:db/txInstant` attribute, the Datahike identity), so that a log is a link of a chain
//! like any backup.

use crate::error::{Error, Result};
use crate::model::{kw_map, Attr, Value};

/// The head format version we write and read.
pub const HEAD_VERSION: i64 = 1;

/// A log's head (`log.edn`).
#[derive(Clone, Debug, PartialEq)]
pub struct LogHead {
    /// The log id (a time-ordered UUID).
    pub log_id: String,
    /// The database id.
    pub database_id: String,
    /// The link this log continues: a backup or a log.
    pub parent: String,
    /// The chain's base full backup.
    pub base: String,
    /// The log holds the transactions after this one (the parent's end).
    pub after_tx: i64,
    /// When the log started, epoch ms.
    pub created_at_ms: i64,
    /// Whether the source keeps history.
    pub history: bool,
    /// The source's `:datahike/id`.
    pub datahike_id: Option<String>,
    /// The source's Datahike version.
    pub datahike_version: Option<String>,
    /// The source's configuration (without store details), as `config.edn` records it.
    pub db_config: Value,
    /// The `:db/txInstant` attribute (a keyword, or an id with `:attribute-refs? true`).
    pub tx_instant: Option<Attr>,
    /// The `:db/noHistory` attributes when the log started.
    pub no_history_attrs: Vec<Attr>,
    /// Whether tx0 datoms are left out (`:attribute-refs? true`).
    pub skip_tx0: bool,
    /// Why the log started where it did (a person reads it in `list-backups`).
    pub reason: String,
}

fn attr_value(a: &Attr) -> Value {
    a.to_value()
}

fn attr_of(v: &Value) -> Option<Attr> {
    match v {
        Value::Keyword(n) => Some(Attr::Keyword(n.clone())),
        Value::Long(id) => Some(Attr::Id(*id)),
        _ => None,
    }
}

fn opt_str(s: &Option<String>) -> Value {
    s.as_deref().map_or(Value::Nil, Value::str)
}

fn string_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Uuid(u) => Some(uuid::Uuid::from_u128(*u).to_string()),
        _ => None,
    }
}

impl LogHead {
    /// The head as the EDN map stored in `log.edn`.
    pub fn to_value(&self) -> Value {
        kw_map([
            ("log/version", Value::Long(HEAD_VERSION)),
            ("backup/id", Value::str(&self.log_id)),
            ("backup/type", Value::kw("log")),
            ("database/id", Value::str(&self.database_id)),
            ("backup/parent", Value::str(&self.parent)),
            ("backup/base", Value::str(&self.base)),
            (
                "backup/tx-range",
                Value::Vector(vec![Value::Long(self.after_tx), Value::Nil]),
            ),
            ("backup/created-at", Value::Inst(self.created_at_ms)),
            ("backup/history?", Value::Bool(self.history)),
            ("datahike/id", opt_str(&self.datahike_id)),
            ("datahike/version", opt_str(&self.datahike_version)),
            ("datahike/config", self.db_config.clone()),
            (
                "schema/tx-instant-attr",
                self.tx_instant.as_ref().map_or(Value::Nil, attr_value),
            ),
            (
                "schema/no-history-attrs",
                Value::Vector(self.no_history_attrs.iter().map(attr_value).collect()),
            ),
            ("backup/skip-tx0?", Value::Bool(self.skip_tx0)),
            ("format/chunk-order", Value::kw("restore")),
            ("format/compression", Value::kw("gzip")),
            ("log/reason", Value::str(&self.reason)),
        ])
    }

    /// Parse a `log.edn`; `Corrupt` when a required key is missing or of another version.
    pub fn from_value(v: &Value) -> Result<Self> {
        let op = "read log head";
        let version = v.get("log/version").and_then(Value::as_long);
        if version != Some(HEAD_VERSION) {
            return Err(Error::corrupt(
                op,
                format!(":log/version is {version:?}; this version reads {HEAD_VERSION}"),
            ));
        }
        let req = |k: &str| {
            string_of(v.get(k)).ok_or_else(|| Error::corrupt(op, format!("missing :{k}")))
        };
        let after_tx = v
            .get("backup/tx-range")
            .and_then(Value::as_seq)
            .and_then(|r| r.first())
            .and_then(Value::as_long)
            .ok_or_else(|| Error::corrupt(op, "missing :backup/tx-range [after nil]"))?;
        Ok(LogHead {
            log_id: req("backup/id")?,
            database_id: req("database/id")?,
            parent: req("backup/parent")?,
            base: req("backup/base")?,
            after_tx,
            created_at_ms: match v.get("backup/created-at") {
                Some(Value::Inst(ms)) => *ms,
                _ => 0,
            },
            history: v
                .get("backup/history?")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            datahike_id: string_of(v.get("datahike/id")),
            datahike_version: string_of(v.get("datahike/version")),
            db_config: v.get("datahike/config").cloned().unwrap_or(Value::Nil),
            tx_instant: v.get("schema/tx-instant-attr").and_then(attr_of),
            no_history_attrs: v
                .get("schema/no-history-attrs")
                .and_then(Value::as_seq)
                .map(|xs| xs.iter().filter_map(attr_of).collect())
                .unwrap_or_default(),
            skip_tx0: v
                .get("backup/skip-tx0?")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            reason: string_of(v.get("log/reason")).unwrap_or_default(),
        })
    }
}

/// A log's closing marker (`closed.edn`): its capture stopped cleanly at `through`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The last transaction the log holds.
    pub through: i64,
    /// When it was closed, epoch ms.
    pub closed_at_ms: i64,
    /// Segments it holds.
    pub segments: u64,
    /// Why it was closed.
    pub reason: String,
}

impl Closed {
    /// The marker as EDN.
    pub fn to_value(&self) -> Value {
        kw_map([
            ("log/through", Value::Long(self.through)),
            ("log/closed-at", Value::Inst(self.closed_at_ms)),
            ("log/segments", Value::Long(self.segments as i64)),
            ("log/reason", Value::str(&self.reason)),
        ])
    }

    /// Parse a marker; `Corrupt` without `:log/through`.
    pub fn from_value(v: &Value) -> Result<Self> {
        Ok(Closed {
            through: v
                .get("log/through")
                .and_then(Value::as_long)
                .ok_or_else(|| Error::corrupt("read log marker", "missing :log/through"))?,
            closed_at_ms: match v.get("log/closed-at") {
                Some(Value::Inst(ms)) => *ms,
                _ => 0,
            },
            segments: v.get("log/segments").and_then(Value::as_long).unwrap_or(0) as u64,
            reason: string_of(v.get("log/reason")).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::edn;
    use crate::model::{Name, TX0};

    #[test]
    fn head_and_marker_round_trip() {
        let head = LogHead {
            log_id: "0194-log".into(),
            database_id: "prod".into(),
            parent: "0194-full".into(),
            base: "0194-full".into(),
            after_tx: TX0 + 40,
            created_at_ms: 1_767_225_600_000,
            history: true,
            datahike_id: Some("dh-1".into()),
            datahike_version: Some("0.6.1613".into()),
            db_config: edn::parse("{:keep-history? true :store {:backend :file}}").unwrap(),
            tx_instant: Some(Attr::Keyword(Name::parse("db/txInstant"))),
            no_history_attrs: vec![Attr::Keyword(Name::parse("p/nick")), Attr::Id(7)],
            skip_tx0: false,
            reason: "continues 0194-full".into(),
        };
        let text = edn::write_pretty(&head.to_value());
        assert_eq!(
            LogHead::from_value(&edn::parse(&text).unwrap()).unwrap(),
            head
        );
        let v = head.to_value();
        assert_eq!(v.get("backup/type"), Some(&Value::kw("log")));
        let closed = Closed {
            through: TX0 + 99,
            closed_at_ms: 5,
            segments: 12,
            reason: "stopped".into(),
        };
        let text = edn::write(&closed.to_value());
        assert_eq!(
            Closed::from_value(&edn::parse(&text).unwrap()).unwrap(),
            closed
        );
        assert!(LogHead::from_value(&edn::parse("{:log/version 2}").unwrap()).is_err());
        assert!(LogHead::from_value(&edn::parse("{:log/version 1}").unwrap()).is_err());
    }
}
