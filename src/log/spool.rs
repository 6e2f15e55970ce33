//! The spool: where sealed segments wait, on local disk, until the target has them.
//!
//! A spool is a directory ([`DirStore`]: temp file, fsync, rename, fsync of the folder) that
//! holds each waiting segment under the very key it gets in the target
//! (`{database-id}/{log-id}/segments/{name}`). A segment is written to the spool when it is
//! sealed and deleted once the target stored it, so what a killed process leaves in its
//! spool is exactly what it had captured but not yet stored: the next capture of that
//! database uploads it first ([`Spool::leftovers`]).
//!
//! Without a spool directory the waiting segments stay in memory (lost with the process;
//! the next capture catches up from the database instead). Either way their bytes are
//! bounded by `:max-spool-bytes`.

use std::path::Path;

use crate::error::Result;
use crate::repo::layout;
use crate::store::dir::DirStore;
use crate::store::Store;

use super::name::SegmentName;
use super::read::Segment;

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: DirStore,
}

impl Spool {
    /// Open (create) the spool directory `path`, removing temporaries a killed writer left.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let dir = DirStore::open(path)?;
        // A half-written temporary is never a segment (the rename makes one appear whole).
        dir.remove_temporaries("")?;
        Ok(Spool { dir })
    }

    /// Write a sealed segment durably under `key` (fsynced before this returns).
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.dir.put(key, bytes)
    }

    /// The bytes of a spooled segment.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.dir.get(key)
    }

    /// Forget a segment the target now holds.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.dir.delete(key)
    }

    /// Where `key` lives in the spool (for errors).
    pub fn location(&self, key: &str) -> String {
        self.dir.location(key)
    }

    /// The segments an earlier capture of `database_id` left in the spool, by log id, each
    /// log's in transaction order.
    pub fn leftovers(&self, database_id: &str) -> Result<Vec<(String, Vec<Segment>)>> {
        let mut out: Vec<(String, Vec<Segment>)> = Vec::new();
        for o in self.dir.list(&layout::database_prefix(database_id))? {
            let Some(log_id) = layout::backup_id_of(database_id, &o.key) else {
                continue;
            };
            let seg_prefix = layout::log_segments_prefix(database_id, log_id);
            let Some(name) = o.key.strip_prefix(&seg_prefix).and_then(SegmentName::parse) else {
                continue;
            };
            let seg = Segment {
                name,
                key: o.key.clone(),
                size: o.size,
            };
            match out.last_mut() {
                Some((id, segs)) if id == log_id => segs.push(seg),
                _ => out.push((log_id.to_owned(), vec![seg])),
            }
        }
        Ok(out)
    }
}
