//! What a restore of a chain reads: which chunks of which links, up to which transaction.
//!
//! Every link stores its datoms in restore order (tx ascending) and the links follow each
//! other without gap, so the chain is one tx-ascending stream and a point in time is a
//! prefix of it. A chunk whose smallest tx lies after the point is never read (the
//! manifests' `:chunk/tx-range`); the last chunk read is cut at the point.
//!
//! A point by instant (`:as-of-time`) is the last transaction whose `:db/txInstant` is at
//! or before it: the chunk that holds it is the last one whose `:chunk/instant-range`
//! starts at or before the instant; that one chunk is read first to find the transaction.
//! (When a transaction set its own earlier `:db/txInstant`, instants do not ascend; the
//! restore is still a prefix: every transaction up to the one found.)

use crate::error::{Error, Result};
use crate::model::{Attr, Datom, Value};
use crate::repo::manifest::{ChunkMeta, ChunkOrder};

use super::resolve::{Chain, Link};

/// Where a restore stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// At the requested backup's basis (the whole chain).
    Latest,
    /// Right after transaction `tx` (every transaction `<= tx`).
    Tx(i64),
    /// Right after the last transaction whose `:db/txInstant` (epoch ms) is `<=` this.
    Time(i64),
}

/// What a chain can restore: every transaction from `first_tx` to `last_tx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Available {
    /// The earliest point: the base's first transaction (its basis if it holds no history).
    pub first_tx: i64,
    /// The chain's end: the requested backup's basis.
    pub last_tx: i64,
    /// The `:db/txInstant` of `first_tx`, when recorded.
    pub first_instant: Option<i64>,
    /// The `:db/txInstant` of `last_tx`, when recorded.
    pub last_instant: Option<i64>,
}

impl Available {
    /// The range as a person reads it.
    pub fn describe(&self) -> String {
        let inst = |t: Option<i64>| {
            t.map(|ms| format!(" ({})", crate::codec::edn::write(&Value::Inst(ms))))
                .unwrap_or_default()
        };
        format!(
            "transactions {}{} to {}{}",
            self.first_tx,
            inst(self.first_instant),
            self.last_tx,
            inst(self.last_instant)
        )
    }
}

/// The chunks of one link that a restore reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// The link's backup id.
    pub backup_id: String,
    /// The link's folder key.
    pub prefix: String,
    /// The chunks to read, in order.
    pub chunks: Vec<ChunkMeta>,
}

/// A restore's reading plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// What to read, base first.
    pub parts: Vec<Part>,
    /// Hand out only datoms with `tx <= through_tx` (`None`: everything read).
    pub through_tx: Option<i64>,
    /// What the chain can restore.
    pub available: Available,
    /// Stored bytes read before streaming (the chunk that resolved an instant).
    pub lookup_bytes: u64,
}

impl Plan {
    /// Datoms in the chunks read (an upper bound of those handed out when cut).
    pub fn datom_count(&self) -> u64 {
        self.chunks().map(|c| c.datom_count).sum()
    }

    /// Stored bytes of the chunks read, the instant lookup included.
    pub fn bytes(&self) -> u64 {
        self.chunks().map(|c| c.size_bytes).sum::<u64>() + self.lookup_bytes
    }

    /// The chunks read, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkMeta> {
        self.parts.iter().flat_map(|p| p.chunks.iter())
    }
}

fn first_instant(l: &Link) -> Option<i64> {
    let r = l.manifest.link.instant_range?;
    Some(if l.manifest.history { r.0 } else { r.1 })
}

/// What `chain` can restore (see [`Available`]).
pub fn available(chain: &Chain) -> Available {
    let base = &chain.base().manifest;
    let first_tx = match (base.history, base.tx_range) {
        (true, Some((lo, _))) => lo,
        _ => base.max_tx,
    };
    Available {
        first_tx,
        last_tx: chain.tip().manifest.max_tx,
        first_instant: first_instant(chain.base()),
        last_instant: chain
            .links
            .iter()
            .rev()
            .find_map(|l| l.manifest.link.instant_range.map(|r| r.1)),
    }
}

fn outside(op: &str, what: String, avail: &Available, tip: &str) -> Error {
    Error::invalid(
        op,
        format!(
            "{what} is outside what backup {tip} can restore: {}",
            avail.describe()
        ),
    )
    .with_hint(
        "pick a point inside that range, or another backup (list-backups shows each one's range)",
    )
}

/// Given a resolved chain, a point, the `:db/txInstant` attribute and a way to read one
/// checked chunk of a link (`fetch(prefix, chunk)`), return the reading plan.
///
/// Errors (`InvalidArgument`, naming the available range): a point before the base or
/// after the chain's end, an instant with no recorded instants, a point inside a backup of
/// the original datacamp (it holds no history).
pub fn plan(
    op: &str,
    chain: &Chain,
    point: Point,
    tx_instant: &Attr,
    mut fetch: impl FnMut(&str, &ChunkMeta) -> Result<Vec<Datom>>,
) -> Result<Plan> {
    let avail = available(chain);
    let tip = chain.tip().id().to_owned();
    let mut lookup_bytes = 0;
    let through = match point {
        Point::Latest => None,
        _ if chain.base().manifest.order == ChunkOrder::Eavt => {
            return Err(Error::invalid(
                op,
                format!("backup {tip} was written by the original datacamp and holds no history: it restores only as a whole"),
            ))
        }
        Point::Tx(t) => {
            if t < avail.first_tx || t > avail.last_tx {
                return Err(outside(op, format!("as-of-tx {t}"), &avail, &tip));
            }
            Some(t)
        }
        Point::Time(ms) => {
            let shown = crate::codec::edn::write(&Value::Inst(ms));
            let (Some(lo), Some(hi)) = (avail.first_instant, avail.last_instant) else {
                return Err(Error::invalid(
                    op,
                    format!("backup {tip}'s chain records no transaction instants"),
                )
                .with_hint("restore with :as-of-tx instead"));
            };
            if ms < lo || ms > hi {
                return Err(outside(op, format!("as-of-time {shown}"), &avail, &tip));
            }
            let (link, chunk) = chain
                .links
                .iter()
                .flat_map(|l| l.manifest.chunks.iter().map(move |c| (l, c)))
                .rfind(|(_, c)| c.instant_range.is_some_and(|r| r.0 <= ms))
                .ok_or_else(|| outside(op, format!("as-of-time {shown}"), &avail, &tip))?;
            lookup_bytes = chunk.size_bytes;
            let tx = fetch(&link.prefix, chunk)?
                .iter()
                .filter(|d| d.added && d.e == d.tx && d.a == *tx_instant)
                .filter(|d| matches!(d.v, Value::Inst(i) if i <= ms))
                .map(|d| d.tx)
                .max()
                .ok_or_else(|| {
                    Error::corrupt(
                        op,
                        format!(
                            "chunk {} of backup {} records instants it does not hold",
                            chunk.id,
                            link.id()
                        ),
                    )
                })?;
            if tx < avail.first_tx {
                return Err(outside(op, format!("as-of-time {shown}"), &avail, &tip));
            }
            Some(tx)
        }
    };
    let mut parts = Vec::new();
    for (i, l) in chain.links.iter().enumerate() {
        let m = &l.manifest;
        if let (Some(t), true) = (through, i > 0) {
            if m.link.after_tx.is_some_and(|after| after >= t) {
                break;
            }
        }
        let chunks = m
            .chunks
            .iter()
            .filter(|c| match (through, c.tx_range) {
                (None, _) => true,
                (Some(t), Some((lo, _))) => lo <= t,
                (Some(_), None) => false,
            })
            .cloned()
            .collect();
        parts.push(Part {
            backup_id: l.id().to_owned(),
            prefix: l.prefix.clone(),
            chunks,
        });
    }
    Ok(Plan {
        parts,
        through_tx: through.filter(|&t| t < avail.last_tx),
        available: avail,
        lookup_bytes,
    })
}
