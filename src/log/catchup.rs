//! Catching up: the transactions a capture did not see live (after a restart, a full
//! spool, a `load-entities` into the live database), read from the database's history.
//!
//! The JVM walks the history of one database value (EAVT, exactly as a backup walks it)
//! and pushes it here; the datoms go through the backup's pipeline — the feeding thread and
//! the restore order ([`crate::pipeline::feed`], [`crate::pipeline::order`], where an id is
//! new in the transaction of its first appearance) — and the transactions of the window
//! `(after, through]` are appended to the log, one [`TxMark`] per transaction, marked as
//! caught up. A window's end without datoms (a transaction id `load-entities` consumed)
//! still moves the log to `through`, so the log stays contiguous.
//!
//! History keeps no trace of a `:db/noHistory` value that was removed: the catch-up is
//! given the values current at `after` ([`CatchUpOptions::no_history_at_after`]) and sees
//! those current now in the walk; a value no longer current becomes a retraction in the
//! window's first transaction (as an incremental backup does, [`crate::chain::state`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::clock::now_ms;
use crate::codec::wire::Batch;
use crate::error::Result;
use crate::model::{Attr, Datom};
use crate::pipeline::feed::{Feed, Tap};
use crate::pipeline::order::{OrderSpec, RestoreOrder};

use super::writer::{Appended, LogWriter, TxMark};

/// What a catch-up reads.
#[derive(Clone, Debug)]
pub struct CatchUpOptions {
    /// The log holds everything through this transaction.
    pub after: i64,
    /// The database value walked ends here (its `:max-tx`).
    pub through: i64,
    /// The restore order's view of the schema.
    pub order: OrderSpec,
    /// Where sorted runs spill.
    pub tmp_dir: PathBuf,
    /// Bytes sorted in memory before a run spills.
    pub sort_buffer_bytes: usize,
    /// The `:db/noHistory` attributes.
    pub no_history_attrs: HashSet<Attr>,
    /// Their datoms current at `after`.
    pub no_history_at_after: Vec<Datom>,
}

/// What a catch-up did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUpReport {
    /// Transactions appended.
    pub txs: u64,
    /// Datoms appended.
    pub datoms: u64,
    /// Datoms of the history read.
    pub datoms_read: u64,
    /// The writer refused (its spool is full): the log ends before `through`.
    pub refused: bool,
}

/// A catch-up in progress: history datoms in, transactions of the window out.
pub struct CatchUp {
    opts: CatchUpOptions,
    feed: Feed,
    read: u64,
    /// The `[e a v]` of the `:db/noHistory` values current in the walked database.
    current: Arc<Mutex<HashSet<Arc<[u8]>>>>,
}

impl CatchUp {
    /// Start a catch-up of the window `(opts.after, opts.through]`.
    pub fn new(opts: CatchUpOptions) -> Result<Self> {
        let order = RestoreOrder::new(opts.order.clone(), &opts.tmp_dir, opts.sort_buffer_bytes)?;
        let current = Arc::new(Mutex::new(HashSet::new()));
        let tap = (!opts.no_history_attrs.is_empty()).then(|| {
            let current = current.clone();
            Tap {
                attrs: opts.no_history_attrs.clone(),
                see: Box::new(move |d: &Datom| {
                    let key = crate::codec::eav::state_key(d)?;
                    let mut c = current.lock().unwrap_or_else(|p| p.into_inner());
                    if d.added {
                        c.insert(key);
                    } else {
                        c.remove(&key);
                    }
                    Ok(())
                }),
            }
        });
        Ok(CatchUp {
            opts,
            feed: Feed::with_tap(order, tap),
            read: 0,
            current,
        })
    }

    /// Push one batch of the history walk (EAVT order, columns from the JVM).
    pub fn push_batch(&mut self, batch: Batch) -> Result<()> {
        self.read += batch.len() as u64;
        self.feed.push_batch(batch)
    }

    /// Push one datom of the history walk.
    pub fn push(&mut self, d: Datom) -> Result<()> {
        self.read += 1;
        self.feed.push(d)
    }

    /// Order what was pushed and append the window's transactions to `writer`, whose log
    /// must end at the window's `after`.
    pub fn finish(mut self, writer: &LogWriter) -> Result<CatchUpReport> {
        let (after, through) = (self.opts.after, self.opts.through);
        let order = self.feed.finish()?;
        // The values current at `after` and no longer now: removed in the window.
        let mut removed: Vec<Datom> = {
            let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = Vec::new();
            for d in std::mem::take(&mut self.opts.no_history_at_after) {
                if !current.contains(&crate::codec::eav::state_key(&d)?) {
                    out.push(Datom { added: false, ..d });
                }
            }
            out
        };
        let mut report = CatchUpReport {
            datoms_read: self.read,
            ..CatchUpReport::default()
        };
        let mut prev = after;
        let mut group: Vec<Datom> = Vec::new();
        let mut group_tx = None;
        let mut flush = |tx: i64, group: &mut Vec<Datom>, prev: &mut i64| -> Result<bool> {
            // The removals end the window's first transaction: after its own datoms (a
            // transaction's entity datoms come first, as load-entities needs them).
            group.extend(removed.drain(..).map(|r| Datom { tx, ..r }));
            let mark = TxMark {
                before: *prev,
                after: tx,
                committed_ms: now_ms(),
                instant_ms: None,
                caught_up: true,
            };
            if writer.append_tx(&mark, group)? == Appended::Refused {
                return Ok(true);
            }
            report.txs += 1;
            report.datoms += group.len() as u64;
            group.clear();
            *prev = tx;
            Ok(false)
        };
        for d in order.finish()? {
            let d = d?;
            if d.tx <= after || d.tx > through {
                continue;
            }
            if group_tx != Some(d.tx) {
                if let Some(tx) = group_tx {
                    if flush(tx, &mut group, &mut prev)? {
                        report.refused = true;
                        return Ok(report);
                    }
                }
                group_tx = Some(d.tx);
            }
            group.push(d);
        }
        if let Some(tx) = group_tx {
            if flush(tx, &mut group, &mut prev)? {
                report.refused = true;
                return Ok(report);
            }
        }
        if prev < through && flush(through, &mut group, &mut prev)? {
            report.refused = true;
        }
        Ok(report)
    }
}
