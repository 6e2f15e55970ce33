//! A backup's place in its chain, as its manifest records it (the metadata only; what a
//! chain means and how it is resolved lives in [`crate::chain`]).
//!
//! A chain is a base full backup plus a contiguous sequence of links, each covering a tx
//! range `(after, through]` and naming its predecessor. The manifest keys:
//!
//! ```text
//! :backup/type          :full | :incremental
//! :backup/parent        the predecessor's backup id (incrementals)
//! :backup/base          the full backup at the chain's root (incrementals)
//! :backup/tx-range      [after through]: the transactions after `after` (exclusive; the
//!                       parent's basis, nil for a full backup) through `through` (the
//!                       basis, = :stats/max-tx)
//! :backup/instant-range [first last]: the :db/txInstant of the first and last transaction
//!                       whose datoms the backup holds (nil when it holds none)
//! :state/version        1
//! :state/no-history     [chunk entries]: the current datoms of :db/noHistory attributes at
//!                       the basis (absent: not recorded), see `chain::state`
//! ```
//! Later link kinds (log segments of continuous capture) use the same fields.

use crate::error::{Error, Result};
use crate::model::Value;
use crate::repo::manifest::ChunkMeta;

/// The version of the chain state files (`:state/version`) we write and read.
pub const STATE_VERSION: i64 = 1;

/// The chain facts of one backup's manifest (all empty for a full backup of an older
/// version).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LinkMeta {
    /// The predecessor's backup id (`None` for a full backup).
    pub parent: Option<String>,
    /// The chain's base (root) full backup (`None` for a full backup: itself).
    pub base: Option<String>,
    /// The exclusive lower bound of the transactions covered: the parent's basis
    /// (`None` for a full backup: everything from the first transaction).
    pub after_tx: Option<i64>,
    /// The `:db/txInstant` (epoch ms) of the first and last transaction with datoms here.
    pub instant_range: Option<(i64, i64)>,
    /// The stored chunks of the current `:db/noHistory` datoms at the basis; `None` when
    /// the backup did not record them.
    pub no_history: Option<Vec<ChunkMeta>>,
}

fn pair(r: Option<(i64, i64)>, instants: bool) -> Value {
    let one = |x: i64| {
        if instants {
            Value::Inst(x)
        } else {
            Value::Long(x)
        }
    };
    match r {
        Some((a, b)) => Value::Vector(vec![one(a), one(b)]),
        None => Value::Nil,
    }
}

fn pair_of(v: Option<&Value>) -> Option<(i64, i64)> {
    let items = v?.as_seq()?;
    let num = |x: &Value| match x {
        Value::Long(n) | Value::Inst(n) => Some(*n),
        _ => None,
    };
    match items {
        [a, b] => Some((num(a)?, num(b)?)),
        _ => None,
    }
}

fn id_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Uuid(u) => Some(uuid::Uuid::from_u128(*u).to_string()),
        _ => None,
    }
}

impl LinkMeta {
    /// Return the manifest entries for this link; `basis` is the backup's `:stats/max-tx`.
    pub fn entries(&self, basis: i64) -> Vec<(&'static str, Value)> {
        let opt = |s: &Option<String>| s.as_deref().map_or(Value::Nil, Value::str);
        let mut out = vec![
            ("backup/parent", opt(&self.parent)),
            ("backup/base", opt(&self.base)),
            (
                "backup/tx-range",
                Value::Vector(vec![
                    self.after_tx.map_or(Value::Nil, Value::Long),
                    Value::Long(basis),
                ]),
            ),
            ("backup/instant-range", pair(self.instant_range, true)),
        ];
        if let Some(chunks) = &self.no_history {
            out.push(("state/version", Value::Long(STATE_VERSION)));
            out.push((
                "state/no-history",
                Value::Vector(chunks.iter().map(ChunkMeta::to_value).collect()),
            ));
        }
        out
    }

    /// Read the link facts of a manifest map (absent keys: a full backup of an older
    /// version). `Corrupt` when a state file of another version is recorded.
    pub fn from_manifest(v: &Value) -> Result<Self> {
        let op = "read manifest";
        let after_tx = v
            .get("backup/tx-range")
            .and_then(Value::as_seq)
            .and_then(|r| r.first())
            .and_then(Value::as_long);
        let no_history = match v.get("state/no-history") {
            None | Some(Value::Nil) => None,
            Some(list) => {
                let version = v.get("state/version").and_then(Value::as_long);
                if version != Some(STATE_VERSION) {
                    return Err(Error::corrupt(
                        op,
                        format!(
                            ":state/version is {version:?}; this version reads {STATE_VERSION}"
                        ),
                    ));
                }
                let items = list
                    .as_seq()
                    .ok_or_else(|| Error::corrupt(op, ":state/no-history is not a vector"))?;
                Some(
                    items
                        .iter()
                        .map(ChunkMeta::from_value)
                        .collect::<Result<Vec<_>>>()?,
                )
            }
        };
        Ok(LinkMeta {
            parent: id_of(v.get("backup/parent")),
            base: id_of(v.get("backup/base")),
            after_tx,
            instant_range: pair_of(v.get("backup/instant-range")),
            no_history,
        })
    }
}

/// Given a `[a b]` value of longs or instants, return the pair (shared with chunk entries).
pub fn range_of(v: Option<&Value>) -> Option<(i64, i64)> {
    pair_of(v)
}

/// The EDN of an instant range `[#inst a #inst b]` (nil when absent).
pub fn instant_range_value(r: Option<(i64, i64)>) -> Value {
    pair(r, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::edn;
    use crate::repo::manifest::{ChunkOrder, Manifest};

    fn incremental() -> Manifest {
        let state = ChunkMeta {
            id: 0,
            key: "state/no-history-0.fressian.gz".into(),
            tx_range: Some((536870913, 536870920)),
            datom_count: 3,
            size_bytes: 90,
            checksum: "ef".repeat(32),
            ..ChunkMeta::default()
        };
        Manifest {
            backup_id: "b2".into(),
            database_id: "prod".into(),
            backup_type: "incremental".into(),
            format_version: crate::repo::manifest::FORMAT_VERSION.into(),
            encryption: None,
            stated_chunk_count: Some(0),
            created_at_ms: 1_700_000_000_000,
            completed_at_ms: 1_700_000_000_100,
            completed: true,
            datahike_version: None,
            compression: "gzip".into(),
            history: true,
            order: ChunkOrder::Restore,
            datom_count: 0,
            size_bytes: 0,
            tx_range: None,
            max_eid: 9,
            max_tx: 536870930,
            chunks: vec![],
            link: LinkMeta {
                parent: Some("b1".into()),
                base: Some("b0".into()),
                after_tx: Some(536870925),
                instant_range: Some((1_700_000_000_000, 1_700_000_000_050)),
                no_history: Some(vec![state]),
            },
        }
    }

    #[test]
    fn chain_fields_round_trip_and_read_as_the_issue_names_them() {
        let m = incremental();
        let v = m.to_value();
        assert_eq!(v.get("backup/type"), Some(&Value::kw("incremental")));
        assert_eq!(v.get("backup/parent"), Some(&Value::str("b1")));
        assert_eq!(v.get("backup/base"), Some(&Value::str("b0")));
        assert_eq!(
            v.get("backup/tx-range"),
            Some(&Value::Vector(vec![
                Value::Long(536870925),
                Value::Long(536870930)
            ]))
        );
        let text = edn::write_pretty(&v);
        assert_eq!(
            Manifest::from_value(&edn::parse(&text).unwrap()).unwrap(),
            m
        );
        // A full backup: no parent, the range open below, no state recorded (older version).
        let full = Manifest {
            backup_type: "full".into(),
            link: LinkMeta::default(),
            ..m.clone()
        };
        let v = full.to_value();
        assert_eq!(
            v.get("backup/tx-range"),
            Some(&Value::Vector(vec![Value::Nil, Value::Long(536870930)]))
        );
        assert_eq!(v.get("state/no-history"), None);
        assert_eq!(Manifest::from_value(&v).unwrap().link, LinkMeta::default());
    }

    #[test]
    fn a_state_of_another_version_is_corrupt() {
        let text = edn::write_pretty(&incremental().to_value())
            .replace(":state/version 1", ":state/version 2");
        let err = Manifest::from_value(&edn::parse(&text).unwrap()).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Corrupt);
        assert!(err.message.contains(":state/version"), "{err}");
    }
}
