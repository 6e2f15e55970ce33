//! The checkpoint (`checkpoint.edn`): a backup's progress, rewritten as chunks are stored.
//!
//! It is what `list-backups` shows for a backup that has no manifest yet (interrupted or
//! still running). Keys extend the original implementation's.

use serde::Serialize;

use crate::model::{kw_map, Value};
use crate::repo::manifest::ChunkMeta;

/// Where a backup is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Receiving and sorting datoms; no chunk written yet.
    Ingest,
    /// Writing chunks.
    Writing,
    /// All chunks stored; the manifest is being written.
    Committing,
    /// The manifest and the completion marker are written: the backup is complete.
    Complete,
    /// Aborted by the caller or by an error.
    Aborted,
}

impl Phase {
    /// The phase's name, as `:checkpoint/phase` holds it (`"ingest"`, `"complete"`, …).
    pub fn keyword(self) -> &'static str {
        match self {
            Phase::Ingest => "ingest",
            Phase::Writing => "writing",
            Phase::Committing => "committing",
            Phase::Complete => "complete",
            Phase::Aborted => "aborted",
        }
    }

    fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "ingest" => Phase::Ingest,
            "writing" => Phase::Writing,
            "committing" => Phase::Committing,
            "complete" => Phase::Complete,
            "aborted" => Phase::Aborted,
            _ => return None,
        })
    }
}

/// A backup's progress.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Checkpoint {
    /// The backup id.
    pub backup_id: String,
    /// The database id.
    pub database_id: String,
    /// Started, epoch millis.
    pub started_at_ms: i64,
    /// Last rewritten, epoch millis.
    pub updated_at_ms: i64,
    /// The phase.
    pub phase: Phase,
    /// Datoms received so far.
    pub datoms_received: u64,
    /// Datoms in stored chunks.
    pub datoms_stored: u64,
    /// The stored chunks, by id.
    pub chunks: Vec<ChunkMeta>,
    /// The error that aborted the backup, if any.
    pub error: Option<String>,
}

impl Checkpoint {
    /// Return the checkpoint as an EDN map.
    pub fn to_value(&self) -> Value {
        kw_map([
            ("checkpoint/version", Value::str("1.0.0")),
            ("checkpoint/operation", Value::kw("backup")),
            ("checkpoint/backup-id", Value::str(&self.backup_id)),
            ("database/id", Value::str(&self.database_id)),
            ("checkpoint/started-at", Value::Inst(self.started_at_ms)),
            ("checkpoint/updated-at", Value::Inst(self.updated_at_ms)),
            ("checkpoint/phase", Value::kw(self.phase.keyword())),
            ("progress/completed", Value::Long(self.chunks.len() as i64)),
            (
                "progress/total-chunks",
                // Known once every chunk is stored (committing, complete).
                match self.phase {
                    Phase::Committing | Phase::Complete => Value::Long(self.chunks.len() as i64),
                    _ => Value::kw("unknown"),
                },
            ),
            (
                "progress/datoms-received",
                Value::Long(self.datoms_received as i64),
            ),
            (
                "progress/datoms-stored",
                Value::Long(self.datoms_stored as i64),
            ),
            (
                "state/completed-chunks",
                Value::Set(
                    self.chunks
                        .iter()
                        .map(|c| Value::Long(c.id as i64))
                        .collect(),
                ),
            ),
            (
                "state/chunks",
                Value::Vector(self.chunks.iter().map(ChunkMeta::to_value).collect()),
            ),
            (
                "state/error",
                self.error.as_deref().map_or(Value::Nil, Value::str),
            ),
        ])
    }

    /// Parse a checkpoint (ours or the original's); `None` if it is not a map with a backup id.
    pub fn from_value(v: &Value) -> Option<Self> {
        let backup_id = v.get("checkpoint/backup-id")?.as_str()?.to_owned();
        let inst = |k: &str| match v.get(k) {
            Some(Value::Inst(ms)) => *ms,
            _ => 0,
        };
        let long = |k: &str| v.get(k).and_then(Value::as_long).unwrap_or(0) as u64;
        let phase = match v.get("checkpoint/phase") {
            Some(Value::Keyword(n)) => Phase::parse(&n.name).unwrap_or(Phase::Ingest),
            _ => Phase::Ingest,
        };
        let chunks = v
            .get("state/chunks")
            .and_then(Value::as_seq)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| ChunkMeta::from_value(c).ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(Checkpoint {
            backup_id,
            database_id: v
                .get("database/id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            started_at_ms: inst("checkpoint/started-at"),
            updated_at_ms: inst("checkpoint/updated-at"),
            phase,
            datoms_received: long("progress/datoms-received"),
            datoms_stored: long("progress/datoms-stored"),
            chunks,
            error: v
                .get("state/error")
                .and_then(Value::as_str)
                .map(String::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::edn;

    #[test]
    fn a_checkpoint_round_trips_and_garbage_is_none() {
        let cp = Checkpoint {
            backup_id: "b1".into(),
            database_id: "db".into(),
            started_at_ms: 5,
            updated_at_ms: 9,
            phase: Phase::Writing,
            datoms_received: 100,
            datoms_stored: 0,
            chunks: vec![],
            error: Some("boom".into()),
        };
        let text = edn::write_pretty(&cp.to_value());
        assert_eq!(
            Checkpoint::from_value(&edn::parse(&text).unwrap()),
            Some(cp)
        );
        assert_eq!(Checkpoint::from_value(&edn::parse("{:a 1}").unwrap()), None);
    }
}
