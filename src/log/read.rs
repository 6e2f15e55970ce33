//! Reading a stored log: its head, its segments in transaction order, and how far it is
//! contiguous (its durable point).
//!
//! A log's content is its segments' listing: one `list` (or `list_after` from a known
//! transaction), no index file. The segments must follow each other without gap from the
//! head's `after`: segment `i+1` covers the transactions after exactly segment `i`'s
//! `through`. The contiguous run from the start is what the log holds; the first break
//! (a gap, an overlap, a foreign file) ends it and is named in [`StoredLog::problems`].

use crate::error::{Error, ErrorKind, Result};
use crate::repo::layout;
use crate::repo::link::LinkMeta;
use crate::repo::manifest::{ChunkMeta, ChunkOrder, Manifest};
use crate::repo::meta::{read_edn, read_edn_opt};
use crate::store::{ObjectMeta, Store};

use super::head::{Closed, LogHead};
use super::name::{self, SegmentName};

/// One stored segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its parsed name.
    pub name: SegmentName,
    /// Its key, relative to the target's root.
    pub key: String,
    /// Its stored size.
    pub size: u64,
}

impl Segment {
    /// The segment as a chunk entry, for the chunk checks and the restore stream that
    /// backups use ([`crate::ops::check`]): its id is its `after` (the `:chunk/id`
    /// written into it: unique in a log, and the same in every log that holds the
    /// segment), its tx range `(after + 1, through)`, its path relative to the log's
    /// folder.
    pub fn chunk_meta(&self) -> ChunkMeta {
        let rel = format!("segments/{}", self.name.file_name());
        ChunkMeta {
            id: self.name.after as u64,
            key: rel,
            s3_key: None,
            tx_range: Some((self.name.after + 1, self.name.through)),
            max_eid: 0,
            datom_count: self.name.datoms,
            size_bytes: self.size,
            uncompressed_bytes: 0,
            checksum: self.name.sha256.clone(),
            raw_checksum: None,
            instant_range: self.name.instants,
        }
    }
}

/// A log as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLog {
    /// Its head.
    pub head: LogHead,
    /// Its folder key (`{database-id}/{log-id}/`).
    pub prefix: String,
    /// Its contiguous run of segments from the head's `after`, in order.
    pub segments: Vec<Segment>,
    /// The last transaction of the contiguous run (the head's `after` when empty): the
    /// log's durable point.
    pub through: i64,
    /// Its closing marker, when its capture stopped cleanly.
    pub closed: Option<Closed>,
    /// What breaks the log (gaps, overlaps, foreign files), one sentence each.
    pub problems: Vec<String>,
    /// Bytes stored under the log's folder.
    pub stored_bytes: u64,
    /// Newest modification time of its files, epoch ms (0 when unknown).
    pub updated_at_ms: i64,
}

impl StoredLog {
    /// The `:db/txInstant` of the first and last transaction of the run that carry one.
    pub fn instant_range(&self) -> Option<(i64, i64)> {
        let first = self.segments.iter().find_map(|s| s.name.instants)?;
        let last = self.segments.iter().rev().find_map(|s| s.name.instants)?;
        Some((first.0, last.1))
    }

    /// Datoms in the contiguous run.
    pub fn datom_count(&self) -> u64 {
        self.segments.iter().map(|s| s.name.datoms).sum()
    }

    /// Stored bytes of the contiguous run's segments.
    pub fn segment_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// The log as a link of its chain ([`crate::chain`]): a manifest of type `log` whose
    /// chunks are the contiguous run's segments ([`Segment::chunk_meta`]), ending at the
    /// durable point. Its entity ids are not bounded (`max-eid` 0: unknown); its names and
    /// contiguity were checked when the log was read, so it is never validated as a
    /// backup's manifest.
    pub fn link_manifest(&self) -> Manifest {
        let h = &self.head;
        let chunks: Vec<ChunkMeta> = self.segments.iter().map(Segment::chunk_meta).collect();
        Manifest {
            backup_id: h.log_id.clone(),
            database_id: h.database_id.clone(),
            backup_type: "log".to_owned(),
            format_version: "1.0.0".to_owned(),
            encryption: None,
            created_at_ms: h.created_at_ms,
            completed_at_ms: self.updated_at_ms.max(h.created_at_ms),
            completed: true,
            datahike_version: h.datahike_version.clone(),
            compression: "gzip".to_owned(),
            history: h.history,
            order: ChunkOrder::Restore,
            datom_count: self.datom_count(),
            stated_chunk_count: Some(chunks.len() as u64),
            size_bytes: self.segment_bytes(),
            tx_range: (!chunks.is_empty()).then_some((h.after_tx + 1, self.through)),
            max_eid: 0,
            max_tx: self.through,
            chunks,
            link: LinkMeta {
                parent: Some(h.parent.clone()),
                base: Some(h.base.clone()),
                after_tx: Some(h.after_tx),
                instant_range: self.instant_range(),
                no_history: None,
            },
        }
    }
}

/// Whether `log_id` of `database_id` is a log (its folder holds `log.edn`).
pub fn is_log(store: &dyn Store, database_id: &str, log_id: &str) -> Result<bool> {
    Ok(store
        .size(&layout::backup_file(database_id, log_id, layout::LOG_HEAD))?
        .is_some())
}

/// Read log `log_id` of `database_id`: its head, segments and durable point.
///
/// Errors: `NotFound` when there is no `log.edn`; `Corrupt` (naming it) when the head is
/// unreadable; the store's errors. Problems of the segments are reported, not raised.
pub fn read(store: &dyn Store, database_id: &str, log_id: &str) -> Result<StoredLog> {
    layout::check_segment("database-id", database_id)?;
    layout::check_segment("log id", log_id)?;
    let objects = store.list(&layout::backup_prefix(database_id, log_id))?;
    read_listed(store, database_id, log_id, &objects)
}

/// Like [`read`], given the listing of the log's folder (every object under
/// `{database-id}/{log-id}/`), so that a caller that listed a whole database reads each
/// log without listing it again.
pub fn read_listed(
    store: &dyn Store,
    database_id: &str,
    log_id: &str,
    objects: &[ObjectMeta],
) -> Result<StoredLog> {
    let head_key = layout::backup_file(database_id, log_id, layout::LOG_HEAD);
    let head = match read_edn(store, &head_key) {
        Ok(v) => LogHead::from_value(&v).map_err(|e| e.with_key(store.location(&head_key)))?,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(Error::new(
                ErrorKind::NotFound,
                "read log",
                format!("no log {log_id} for database {database_id}"),
            )
            .with_key(store.location(&head_key)))
        }
        Err(e) => return Err(e),
    };
    let prefix = layout::backup_prefix(database_id, log_id);
    let closed_key = layout::backup_file(database_id, log_id, layout::LOG_CLOSED);
    let closed = if objects.iter().any(|o| o.key == closed_key) {
        read_edn_opt(store, &closed_key)?
            .map(|v| Closed::from_value(&v))
            .transpose()?
    } else {
        None
    };
    let seg_prefix = layout::log_segments_prefix(database_id, log_id);
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for o in objects {
        let Some(file) = o.key.strip_prefix(&seg_prefix) else {
            continue;
        };
        match SegmentName::parse(file) {
            Some(name) => found.push(Segment {
                name,
                key: o.key.clone(),
                size: o.size,
            }),
            None => problems.push(format!("{file} under segments/ is not a segment")),
        }
    }
    let (segments, through, breaks) = contiguous(head.after_tx, found);
    problems.extend(breaks);
    if let Some(c) = &closed {
        if c.through != through {
            problems.push(format!(
                "the log was closed at tx {} but its segments reach tx {through}",
                c.through
            ));
        }
    }
    let updated_at_ms = objects
        .iter()
        .filter_map(|o| o.modified)
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .max()
        .unwrap_or(0);
    Ok(StoredLog {
        head,
        prefix,
        segments,
        through,
        closed,
        problems,
        stored_bytes: objects.iter().map(|o| o.size).sum(),
        updated_at_ms,
    })
}

/// The segments of log `log_id` whose `through` lies after `tx`, in order: one listing
/// that starts at `tx` ([`Store::list_after`]); names that are not segments are skipped.
pub fn segments_after(
    store: &dyn Store,
    database_id: &str,
    log_id: &str,
    tx: i64,
) -> Result<Vec<Segment>> {
    let seg_prefix = layout::log_segments_prefix(database_id, log_id);
    let start = format!("{seg_prefix}{}", name::start_after(tx));
    Ok(store
        .list_after(&seg_prefix, &start)?
        .into_iter()
        .filter_map(|o| {
            let name = SegmentName::parse(o.key.strip_prefix(&seg_prefix)?)?;
            Some(Segment {
                name,
                key: o.key,
                size: o.size,
            })
        })
        .collect())
}

/// Given the log's start and its segments in key order, return the contiguous run from
/// `after`, its end, and what breaks it.
pub fn contiguous(after: i64, segments: Vec<Segment>) -> (Vec<Segment>, i64, Vec<String>) {
    let mut run = Vec::new();
    let mut end = after;
    let mut problems = Vec::new();
    let mut rest = segments.into_iter();
    for s in rest.by_ref() {
        if s.name.after == end {
            end = s.name.through;
            run.push(s);
            continue;
        }
        problems.push(if s.name.after > end {
            format!(
                "gap: the log holds transactions up to {end}, then a segment covering {}..{}: transactions {}..{} are missing",
                s.name.after + 1,
                s.name.through,
                end + 1,
                s.name.after
            )
        } else {
            format!(
                "overlap: a segment covering {}..{} follows one ending at {end}",
                s.name.after + 1,
                s.name.through
            )
        });
        break;
    }
    let left = rest.count();
    if left > 0 {
        problems.push(format!(
            "{left} more segment(s) after the break are not part of the log"
        ));
    }
    (run, end, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::name::Kind;
    use crate::model::TX0;

    fn seg(after: i64, through: i64) -> Segment {
        let name = SegmentName {
            through: TX0 + through,
            after: TX0 + after,
            datoms: 1,
            instants: None,
            kind: Kind::default(),
            sha256: "ab".repeat(32),
        };
        Segment {
            key: name.file_name(),
            name,
            size: 10,
        }
    }

    #[test]
    fn the_contiguous_run_ends_at_the_first_break_which_is_named() {
        let (run, end, problems) = contiguous(TX0, vec![seg(0, 3), seg(3, 4), seg(4, 9)]);
        assert_eq!((run.len(), end, problems.len()), (3, TX0 + 9, 0));
        let (run, end, problems) = contiguous(TX0, vec![seg(0, 3), seg(5, 7), seg(7, 8)]);
        assert_eq!((run.len(), end), (1, TX0 + 3));
        assert!(
            problems[0].contains("transactions 536870916..536870917 are missing"),
            "{problems:?}"
        );
        assert!(problems[1].contains("1 more segment"), "{problems:?}");
        let (run, _, problems) = contiguous(TX0 + 2, vec![seg(0, 3)]);
        assert!(
            run.is_empty() && problems[0].starts_with("overlap"),
            "{problems:?}"
        );
        let (run, end, problems) = contiguous(TX0 + 2, vec![]);
        assert!(run.is_empty() && end == TX0 + 2 && problems.is_empty());
    }
}
