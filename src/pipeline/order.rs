//! The restore order: the order in which a backup's datoms are transacted again.
//!
//! Input: a history database's datoms in the order the JVM delivers them (EAVT: assertions,
//! retracted values and retractions with `added = false`, each with its own positive tx).
//! `seq` is a datom's position in that input. Output order:
//!
//! 1. `tx` ascending;
//! 2. within a tx, first its `:db/txInstant` datom (`e == tx`, `a` the txInstant attribute,
//!    `added`) — class 0;
//! 3. then its retractions (`added = false`) by `seq` — class 1;
//! 4. then its assertions — class 2 — by `(key, seq)`, where `key` is the largest id *new in
//!    this tx* among the ids the datom mentions: its `e`, and its `v` when `a` is a ref
//!    attribute and `v` a `Long`. The tx id itself never counts (so a tx-meta datom, `e ==
//!    tx`, gets no key from `e`). An id X is new in tx T iff T is the smallest tx of any
//!    input datom mentioning X (as `e`, or as the `v` of a ref attribute) — datoms dropped
//!    by `skip_tx0` included. `key` is -1 when no mentioned id is new.
//!
//! With `skip_tx0`, datoms of tx [`TX0`] are dropped (counted in [`RestoreOrder::skipped`]).
//!
//! A window ([`RestoreOrder::emit_after`], for incremental backups): only datoms with
//! `tx > after` are emitted, but every pushed datom still counts for which ids are new in
//! which tx — "new" is relative to the whole history, as `load-entities` sees it when the
//! window is loaded after the transactions before it.
//!
//! # How, and the memory bound
//!
//! Phase 1 ([`RestoreOrder::push`], [`RestoreOrder::push_tagged`]) feeds compact byte
//! records ([`crate::codec::record::RecordView`]: e, added, is-ref, the attribute's id in
//! this order's table, the tagged value) keyed `(tx, class, seq)` into a [`RecordSorter`],
//! and notes, per id, the smallest tx mentioning it. Phase 2 (the [`RestoreIter`]) reads
//! the merged stream: classes 0 and 1 pass straight through; a tx's assertions are
//! collected, keyed (the table is final now), sorted by `(key, seq)` in memory, or — once
//! they exceed the buffer budget — in a nested [`RecordSorter`]. Records stay bytes from
//! the push to [`RestoreIter::next_ref`]: no datom is built on the way (the iterator also
//! yields [`Datom`]s, decoded, for callers that want them).
//!
//! Memory, with B = `sort_buffer_bytes` (records' bytes plus 24 bytes per record; a
//! buffer's allocations, grown by doubling, may hold up to twice what it counts):
//! - the first-tx table, O(distinct ids), never freed before the iterator: 4 bytes per slot
//!   in two dense arrays (ids from 0, tx ids from [`TX0`]), each grown only while it stays
//!   under max(2^20, 4 × the ids it holds) slots — so for Datahike's sequential ids about
//!   4 bytes × (max eid + number of txs) — and ~40 bytes per id outside them (a hash map);
//! - while pushing, about 2 × B (the buffer being filled and the one being spilled);
//! - while iterating, about 3 × B at most: the merge's last buffer (kept in memory, ≤ B)
//!   plus, for a tx whose assertions exceed B, a nested sort (2 × B); plus 64 KiB per
//!   merged run (≤ 64 runs open).
//!
//! Measured with the object records this order used before the byte records (#14): 3 M
//! datoms, B = 32 MiB, one tx of 900 k datoms: peak RSS 85 MB while pushing, 116 MB overall.
//! A byte record takes 14 bytes plus the tagged value (plus its 24-byte slot), about half
//! of what an object record was counted as, so a buffer holds about twice the datoms.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::codec::record::{put_record_header, RecordView};
use crate::codec::tagged::{decode_value, encode_value, TAG_LONG};
use crate::error::{Error, Result};
use crate::model::{Attr, Datom, TX0};
use crate::pipeline::sort::{RecordBuf, RecordSorter, SortedRecords};

/// What the restore order needs to know about the database's schema.
#[derive(Clone, Debug, Default)]
pub struct OrderSpec {
    /// The attributes whose values are entity references (`:db.type/ref`).
    pub ref_attrs: HashSet<Attr>,
    /// The `:db/txInstant` attribute (a keyword, or its id with `:attribute-refs? true`);
    /// `None`: no datom is class 0.
    pub tx_instant: Option<Attr>,
    /// Drop the datoms of tx [`TX0`] (the system datoms of `:attribute-refs? true` dbs).
    pub skip_tx0: bool,
}

const CLASS_TX_INSTANT: u8 = 0;
const CLASS_RETRACTION: u8 = 1;
const CLASS_ASSERTION: u8 = 2;

/// The largest `seq` a key can hold (2^62 - 1 datoms).
const SEQ_MAX: u64 = (1 << 62) - 1;

/// Order-preserving map of an i64 onto u64.
fn ordered(x: i64) -> u64 {
    (x as u64) ^ (1 << 63)
}

fn unordered(x: u64) -> i64 {
    (x ^ (1 << 63)) as i64
}

/// Phase-1 key: `(tx, class, seq)`.
fn tx_key(tx: i64, class: u8, seq: u64) -> u128 {
    (u128::from(ordered(tx)) << 64) | (u128::from(class) << 62) | u128::from(seq & SEQ_MAX)
}

fn key_tx(key: u128) -> i64 {
    unordered((key >> 64) as u64)
}

fn key_class(key: u128) -> u8 {
    ((key >> 62) & 3) as u8
}

fn key_seq(key: u128) -> u64 {
    (key as u64) & SEQ_MAX
}

/// Phase-2 key of an assertion: `(key, seq)`.
fn group_key(key: i64, seq: u64) -> u128 {
    (u128::from(ordered(key)) << 64) | u128::from(seq)
}

/// Slots that a dense range may always grow to (4 MiB).
const DENSE_FLOOR: usize = 1 << 20;

/// A dense array of first txs for ids `base..`, encoded as `tx - TX0 + 1` (0: none).
#[derive(Debug)]
struct Dense {
    base: i64,
    slots: Vec<u32>,
    filled: usize,
}

impl Dense {
    fn new(base: i64) -> Self {
        Dense {
            base,
            slots: Vec::new(),
            filled: 0,
        }
    }

    fn index(&self, id: i64) -> Option<usize> {
        id.checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
    }

    /// Note `tx` (encoded) for `id`; `false` if the id is outside what may be held densely.
    fn note(&mut self, id: i64, enc: u32) -> bool {
        let Some(i) = self.index(id) else {
            return false;
        };
        if i >= self.slots.len() {
            let limit = DENSE_FLOOR.max(self.filled.saturating_add(1).saturating_mul(4));
            if i >= limit {
                return false;
            }
            let want = (i + 1).max(self.slots.len().saturating_mul(2)).min(limit);
            self.slots.resize(want, 0);
        }
        let slot = &mut self.slots[i];
        if *slot == 0 {
            self.filled += 1;
            *slot = enc;
        } else if enc < *slot {
            *slot = enc;
        }
        true
    }

    fn get(&self, id: i64) -> Option<i64> {
        let i = self.index(id)?;
        match self.slots.get(i) {
            Some(&s) if s != 0 => Some(i64::from(s) - 1 + TX0),
            _ => None,
        }
    }

    fn bytes(&self) -> usize {
        self.slots.capacity() * 4
    }
}

/// Per id, the smallest tx of any datom mentioning it.
#[derive(Debug)]
struct FirstTx {
    low: Dense,
    txs: Dense,
    sparse: HashMap<i64, i64>,
}

impl FirstTx {
    fn new() -> Self {
        FirstTx {
            low: Dense::new(0),
            txs: Dense::new(TX0),
            sparse: HashMap::new(),
        }
    }

    fn note(&mut self, id: i64, tx: i64) {
        let enc = tx
            .checked_sub(TX0)
            .and_then(|d| d.checked_add(1))
            .and_then(|d| u32::try_from(d).ok())
            .filter(|&d| d != 0);
        if let Some(enc) = enc {
            let dense = if id >= TX0 {
                &mut self.txs
            } else {
                &mut self.low
            };
            if dense.note(id, enc) {
                return;
            }
        }
        self.sparse
            .entry(id)
            .and_modify(|t| *t = (*t).min(tx))
            .or_insert(tx);
    }

    fn get(&self, id: i64) -> Option<i64> {
        let dense = if id >= TX0 {
            self.txs.get(id)
        } else {
            self.low.get(id)
        };
        if self.sparse.is_empty() {
            return dense;
        }
        match (dense, self.sparse.get(&id)) {
            (Some(a), Some(&b)) => Some(a.min(b)),
            (a, b) => a.or(b.copied()),
        }
    }

    fn bytes(&self) -> usize {
        self.low.bytes() + self.txs.bytes() + self.sparse.capacity() * 24
    }
}

/// Puts a history database's datoms into restore order (see the module doc).
///
/// Use: [`RestoreOrder::new`], push every datom in input order ([`RestoreOrder::push`], or
/// [`RestoreOrder::intern`] + [`RestoreOrder::push_tagged`] for values that are bytes
/// already), then [`RestoreOrder::finish`] and iterate.
pub struct RestoreOrder {
    spec: OrderSpec,
    tmp_dir: PathBuf,
    buffer: usize,
    sorter: RecordSorter,
    first: FirstTx,
    attrs: Attrs,
    pushed: u64,
    skipped: u64,
    /// Emit only datoms with a tx above this (incremental backups); `None`: all.
    window_after: Option<i64>,
    /// Datoms pushed but outside the window.
    outside_window: u64,
    scratch: Vec<u8>,
}

/// The attributes of an order, by id, and what the order needs to know of each.
#[derive(Debug, Default)]
struct Attrs {
    table: Vec<Attr>,
    ids: HashMap<Attr, u32>,
    is_ref: Vec<bool>,
    is_tx_instant: Vec<bool>,
}

impl std::fmt::Debug for RestoreOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOrder")
            .field("pushed", &self.pushed)
            .field("skipped", &self.skipped)
            .field("sorter", &self.sorter)
            .finish()
    }
}

impl RestoreOrder {
    /// Given the schema facts, a directory for temporary run files (a temporary directory
    /// is created inside it only if the data outgrows the buffer) and the sort buffer
    /// budget in bytes, return an empty restore order.
    ///
    /// Errors: `tmp_dir` does not exist ([`crate::error::ErrorKind::NotFound`]), cannot be
    /// inspected ([`crate::error::ErrorKind::Io`]) or is not a directory
    /// ([`crate::error::ErrorKind::InvalidArgument`]); all with the path as key.
    pub fn new(spec: OrderSpec, tmp_dir: &Path, sort_buffer_bytes: usize) -> Result<Self> {
        let key = || tmp_dir.display().to_string();
        let meta =
            std::fs::metadata(tmp_dir).map_err(|e| Error::io("open sort directory", key(), e))?;
        if !meta.is_dir() {
            return Err(Error::invalid("open sort directory", "not a directory").with_key(key()));
        }
        Ok(RestoreOrder {
            spec,
            tmp_dir: tmp_dir.to_path_buf(),
            buffer: sort_buffer_bytes,
            sorter: RecordSorter::new(tmp_dir, sort_buffer_bytes),
            first: FirstTx::new(),
            attrs: Attrs::default(),
            pushed: 0,
            skipped: 0,
            window_after: None,
            outside_window: 0,
            scratch: Vec::new(),
        })
    }

    /// Given an attribute, return its id in this order's table (added on first use).
    pub fn intern(&mut self, a: &Attr) -> u32 {
        if let Some(&id) = self.attrs.ids.get(a) {
            return id;
        }
        let id = self.attrs.table.len() as u32;
        self.attrs.ids.insert(a.clone(), id);
        self.attrs.table.push(a.clone());
        self.attrs.is_ref.push(self.spec.ref_attrs.contains(a));
        self.attrs
            .is_tx_instant
            .push(self.spec.tx_instant.as_ref() == Some(a));
        id
    }

    /// Given the next datom of the input, take it (its `seq` is the number of datoms
    /// pushed before it). Datoms of [`TX0`] are dropped when `skip_tx0`, but still count
    /// for which ids are new in which tx.
    ///
    /// Errors: the value cannot be encoded ([`crate::error::ErrorKind::Unsupported`]);
    /// those of [`RecordSorter::push_with`] (I/O while spilling), after which the order is
    /// failed and must be dropped.
    pub fn push(&mut self, d: Datom) -> Result<()> {
        let aid = self.intern(&d.a);
        let mut value = std::mem::take(&mut self.scratch);
        value.clear();
        let r = encode_value(&d.v, &mut value)
            .and_then(|()| self.push_tagged(d.e, aid, d.tx, d.added, &value, &[]));
        self.scratch = value;
        r
    }

    /// As [`RestoreOrder::push`], for a datom whose attribute is `aid` (from
    /// [`RestoreOrder::intern`]) and whose tagged value is `head` followed by `tail` (the tag
    /// byte first; split in two so that a value's tag and payload can come from different
    /// buffers). The value bytes are taken as they are: the caller has checked them.
    ///
    /// Errors: `aid` not interned ([`crate::error::ErrorKind::Internal`]), an empty value,
    /// and those of [`RestoreOrder::push`].
    pub fn push_tagged(
        &mut self,
        e: i64,
        aid: u32,
        tx: i64,
        added: bool,
        head: &[u8],
        tail: &[u8],
    ) -> Result<()> {
        let ix = aid as usize;
        let (Some(&is_ref), Some(&is_tx_instant)) =
            (self.attrs.is_ref.get(ix), self.attrs.is_tx_instant.get(ix))
        else {
            return Err(Error::internal(
                "restore order",
                format!("attribute id {aid} was not interned"),
            ));
        };
        let Some(&tag) = head.first() else {
            return Err(Error::internal("restore order", "empty value"));
        };
        let ref_id = if is_ref && tag == TAG_LONG {
            let mut b = [0u8; 8];
            let mut bytes = head[1..].iter().chain(tail);
            for x in &mut b {
                *x = *bytes
                    .next()
                    .ok_or_else(|| Error::internal("restore order", "truncated LONG value"))?;
            }
            Some(i64::from_le_bytes(b))
        } else {
            None
        };
        let seq = self.pushed;
        self.pushed += 1;
        self.first.note(e, tx);
        if let Some(v) = ref_id {
            self.first.note(v, tx);
        }
        if self.window_after.is_some_and(|after| tx <= after) {
            self.outside_window += 1;
            return Ok(());
        }
        if self.spec.skip_tx0 && tx == TX0 {
            self.skipped += 1;
            return Ok(());
        }
        let class = if !added {
            CLASS_RETRACTION
        } else if e == tx && is_tx_instant {
            CLASS_TX_INSTANT
        } else {
            CLASS_ASSERTION
        };
        self.sorter.push_with(tx_key(tx, class, seq), |out| {
            put_record_header(out, e, added, is_ref, aid);
            out.extend_from_slice(head);
            out.extend_from_slice(tail);
            Ok(())
        })
    }

    /// Return the order emitting only datoms with `tx > after` (see the module doc): the
    /// others are pushed for their first mentions only, and counted in
    /// [`RestoreOrder::outside_window`].
    pub fn emit_after(mut self, after: Option<i64>) -> Self {
        self.window_after = after;
        self
    }

    /// Return the number of datoms pushed but left out by the window.
    pub fn outside_window(&self) -> u64 {
        self.outside_window
    }

    /// Return the number of datoms pushed (including skipped ones).
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Return the number of datoms dropped by `skip_tx0`.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Return the number of sort runs spilled to disk so far.
    pub fn spilled_runs(&self) -> u64 {
        self.sorter.spilled_runs()
    }

    /// Return the approximate bytes held by the first-tx table.
    pub fn first_tx_table_bytes(&self) -> usize {
        self.first.bytes()
    }

    /// Finish pushing and return the datoms (all pushed minus the skipped and those outside
    /// the window) in restore
    /// order. Errors: those of [`RecordSorter::finish`].
    pub fn finish(self) -> Result<RestoreIter> {
        let src = self.sorter.finish()?;
        Ok(RestoreIter {
            src,
            first: self.first,
            attrs: self.attrs.table,
            tmp_dir: self.tmp_dir,
            buffer: self.buffer,
            pending: Vec::new(),
            pending_key: None,
            group: Group::None,
            group_tx: 0,
            spare: RecordBuf::new(),
            nested_sorts: 0,
            done: false,
        })
    }
}

/// The sorted assertions of the current tx.
enum Group {
    None,
    Mem { buf: RecordBuf, pos: usize },
    Sorted(SortedRecords),
}

/// Where the current record of a [`RestoreIter`] is.
#[derive(Clone, Copy)]
enum Loc {
    /// The merged stream's current record (classes 0 and 1).
    Src,
    /// The record held back from the stream (the first of a tx after a group).
    Pending(u128),
    /// Record `i` of the in-memory group.
    Mem(usize),
    /// The nested sort's current record.
    Sorted,
}

/// One datom of a [`RestoreIter`], read in place: valid until the next call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DatomRef<'a> {
    /// Entity id.
    pub e: i64,
    /// Attribute.
    pub a: &'a Attr,
    /// The value, tagged ([`crate::codec::tagged`]).
    pub value: &'a [u8],
    /// Transaction id.
    pub tx: i64,
    /// Assertion or retraction.
    pub added: bool,
}

impl DatomRef<'_> {
    /// Decode the datom.
    pub fn to_datom(&self) -> Result<Datom> {
        let mut input = self.value;
        let v = decode_value(&mut input)?;
        Ok(Datom {
            e: self.e,
            a: self.a.clone(),
            v,
            tx: self.tx,
            added: self.added,
        })
    }
}

/// The datoms of a [`RestoreOrder`] in restore order: [`RestoreIter::next_ref`] reads them
/// in place; as an [`Iterator`] it yields decoded [`Datom`]s.
///
/// Yields `Err` once if a run cannot be read, written or decoded, then ends. Holds the
/// temporary run files, deleted when it is dropped.
pub struct RestoreIter {
    src: SortedRecords,
    first: FirstTx,
    attrs: Vec<Attr>,
    tmp_dir: PathBuf,
    buffer: usize,
    pending: Vec<u8>,
    pending_key: Option<u128>,
    group: Group,
    group_tx: i64,
    /// The allocation of the last in-memory group, for the next.
    spare: RecordBuf,
    nested_sorts: u64,
    done: bool,
}

impl std::fmt::Debug for RestoreIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreIter")
            .field("src", &self.src)
            .field("nested_sorts", &self.nested_sorts)
            .field("done", &self.done)
            .finish()
    }
}

/// The key of an assertion (see the module doc); the table must be final.
fn key_of(first: &FirstTx, tx: i64, r: &RecordView) -> i64 {
    let mut key: Option<i64> = None;
    if r.e != tx && first.get(r.e) == Some(tx) {
        key = Some(r.e);
    }
    if let Some(v) = r.ref_target() {
        if v != tx && first.get(v) == Some(tx) {
            key = Some(key.map_or(v, |k| k.max(v)));
        }
    }
    key.unwrap_or(-1)
}

/// Where a tx's assertions gather: in memory until they outgrow the buffer, then in a
/// nested sort.
struct GroupBuilder<'a> {
    first: &'a FirstTx,
    tx: i64,
    buffer: usize,
    tmp_dir: &'a Path,
    mem: RecordBuf,
    nested: Option<RecordSorter>,
}

impl GroupBuilder<'_> {
    fn add(&mut self, key: u128, bytes: &[u8]) -> Result<()> {
        let view = RecordView::read(bytes)?;
        let k = group_key(key_of(self.first, self.tx, &view), key_seq(key));
        let write = |out: &mut Vec<u8>| {
            out.extend_from_slice(bytes);
            Ok(())
        };
        match &mut self.nested {
            Some(s) => s.push_with(k, write),
            None => {
                self.mem.push_with(k, write)?;
                if self.mem.mem() > self.buffer {
                    let mut s = RecordSorter::new(self.tmp_dir, self.buffer);
                    for i in 0..self.mem.len() {
                        let (k, b) = self.mem.get(i);
                        s.push_with(k, |out| {
                            out.extend_from_slice(b);
                            Ok(())
                        })?;
                    }
                    self.mem.clear();
                    self.nested = Some(s);
                }
                Ok(())
            }
        }
    }
}

impl RestoreIter {
    /// Return how many tx groups so far outgrew the buffer and were sorted externally.
    pub fn nested_sorts(&self) -> u64 {
        self.nested_sorts
    }

    /// The attribute table the records' ids index.
    pub fn attrs(&self) -> &[Attr] {
        &self.attrs
    }

    /// The next datom, read in place (valid until the next call), or `None` at the end.
    ///
    /// Errors: a run cannot be read, written or decoded; the iterator then ends.
    pub fn next_ref(&mut self) -> Result<Option<DatomRef<'_>>> {
        if self.done {
            return Ok(None);
        }
        let loc = match self.advance() {
            Ok(Some(loc)) => loc,
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        let (tx, bytes) = match loc {
            Loc::Src => {
                let (key, bytes) = self.src.current();
                (key_tx(key), bytes)
            }
            Loc::Pending(key) => (key_tx(key), self.pending.as_slice()),
            Loc::Mem(i) => match &self.group {
                Group::Mem { buf, .. } => (self.group_tx, buf.get(i).1),
                _ => return Err(Error::internal("restore order", "no group in memory")),
            },
            Loc::Sorted => match &self.group {
                Group::Sorted(s) => (self.group_tx, s.current().1),
                _ => return Err(Error::internal("restore order", "no sorted group")),
            },
        };
        let view = match RecordView::read(bytes) {
            Ok(v) => v,
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        let Some(a) = self.attrs.get(view.aid as usize) else {
            self.done = true;
            return Err(Error::corrupt(
                "read restore-order record",
                format!("attribute id {} outside the table", view.aid),
            ));
        };
        Ok(Some(DatomRef {
            e: view.e,
            a,
            value: view.value,
            tx,
            added: view.added,
        }))
    }

    /// Move to the next datom; return where it is.
    fn advance(&mut self) -> Result<Option<Loc>> {
        loop {
            match &mut self.group {
                Group::None => {}
                Group::Mem { buf, pos } => {
                    if *pos < buf.len() {
                        *pos += 1;
                        return Ok(Some(Loc::Mem(*pos - 1)));
                    }
                    if let Group::Mem { mut buf, .. } =
                        std::mem::replace(&mut self.group, Group::None)
                    {
                        buf.clear();
                        self.spare = buf;
                    }
                }
                Group::Sorted(s) => {
                    if s.advance()? {
                        return Ok(Some(Loc::Sorted));
                    }
                    self.group = Group::None;
                }
            }
            let (key, held) = match self.pending_key.take() {
                Some(key) => (key, true),
                None => {
                    if !self.src.advance()? {
                        return Ok(None);
                    }
                    (self.src.current().0, false)
                }
            };
            if key_class(key) != CLASS_ASSERTION {
                return Ok(Some(if held { Loc::Pending(key) } else { Loc::Src }));
            }
            self.build_group(key, held)?;
        }
    }

    /// Collect the assertions of the tx whose first assertion has `key` (held back in
    /// `pending`, or the stream's current record) into `self.group`.
    fn build_group(&mut self, key: u128, held: bool) -> Result<()> {
        let tx = key_tx(key);
        let mut g = GroupBuilder {
            first: &self.first,
            tx,
            buffer: self.buffer,
            tmp_dir: &self.tmp_dir,
            mem: std::mem::take(&mut self.spare),
            nested: None,
        };
        if held {
            g.add(key, &self.pending)?;
        } else {
            let (key, bytes) = self.src.current();
            g.add(key, bytes)?;
        }
        while self.src.advance()? {
            let (k, bytes) = self.src.current();
            if key_tx(k) != tx {
                self.pending.clear();
                self.pending.extend_from_slice(bytes);
                self.pending_key = Some(k);
                break;
            }
            if key_class(k) != CLASS_ASSERTION {
                return Err(Error::internal(
                    "restore order",
                    "assertion followed by a lower class in the same tx",
                ));
            }
            g.add(k, bytes)?;
        }
        let GroupBuilder { mem, nested, .. } = g;
        self.group_tx = tx;
        self.group = match nested {
            Some(s) => {
                self.nested_sorts += 1;
                self.spare = mem;
                Group::Sorted(s.finish()?)
            }
            None => {
                let mut mem = mem;
                mem.sort();
                Group::Mem { buf: mem, pos: 0 }
            }
        };
        Ok(())
    }
}

impl Iterator for RestoreIter {
    type Item = Result<Datom>;

    fn next(&mut self) -> Option<Result<Datom>> {
        match self.next_ref() {
            Ok(Some(d)) => match d.to_datom() {
                Ok(d) => Some(Ok(d)),
                Err(e) => {
                    self.done = true;
                    Some(Err(e))
                }
            },
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl std::iter::FusedIterator for RestoreIter {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, Value};
    use proptest::prelude::*;

    const T1: i64 = TX0 + 1;
    const T2: i64 = TX0 + 2;
    const T3: i64 = TX0 + 3;

    fn kw(s: &str) -> Attr {
        Attr::Keyword(Name::parse(s))
    }

    fn d(e: i64, a: &str, v: Value, tx: i64, added: bool) -> Datom {
        Datom {
            e,
            a: kw(a),
            v,
            tx,
            added,
        }
    }

    fn inst(tx: i64) -> Datom {
        d(tx, "db/txInstant", Value::Inst(tx - TX0), tx, true)
    }

    fn spec(refs: &[&str]) -> OrderSpec {
        OrderSpec {
            ref_attrs: refs.iter().map(|r| kw(r)).collect(),
            tx_instant: Some(kw("db/txInstant")),
            skip_tx0: false,
        }
    }

    /// Run the order with a given buffer and return the output.
    fn run(spec: &OrderSpec, input: &[Datom], buffer: usize) -> (Vec<Datom>, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = RestoreOrder::new(spec.clone(), tmp.path(), buffer).unwrap();
        for x in input {
            o.push(x.clone()).unwrap();
        }
        assert_eq!(o.pushed(), input.len() as u64);
        let skipped = o.skipped();
        let out = o.finish().unwrap().collect::<Result<Vec<_>>>().unwrap();
        assert_eq!(out.len() as u64, input.len() as u64 - skipped);
        drop(tmp);
        (out, skipped)
    }

    /// Check that the output is `input` permuted as `perm` (indexes into input).
    fn assert_order(spec: &OrderSpec, input: &[Datom], perm: &[usize]) {
        let want: Vec<Datom> = perm.iter().map(|&i| input[i].clone()).collect();
        for buffer in [0, 1 << 30] {
            let (out, _) = run(spec, input, buffer);
            assert_eq!(out, want, "buffer {buffer}");
        }
    }

    #[test]
    fn component_map_orders_by_largest_new_id() {
        // tx1 creates 5; tx2 gives 5 two component refs to new entities 7 and 6.
        let input = vec![
            d(5, "comp", Value::Long(6), T2, true),     // 0: key 6
            d(5, "comp", Value::Long(7), T2, true),     // 1: key 7
            d(5, "name", Value::str("five"), T1, true), // 2: key 5 (tx1)
            d(6, "v", Value::str("a"), T2, true),       // 3: key 6
            d(7, "v", Value::str("b"), T2, true),       // 4: key 7
            inst(T1),                                   // 5
            inst(T2),                                   // 6
        ];
        assert_order(&spec(&["comp"]), &input, &[5, 2, 6, 0, 3, 1, 4]);
    }

    #[test]
    fn component_map_when_parent_is_new_too() {
        // All of 5, 6, 7 new in tx1: 5's own datoms key 5, its refs key by the child.
        let input = vec![
            d(5, "comp", Value::Long(7), T1, true),     // 0: key 7
            d(5, "comp", Value::Long(6), T1, true),     // 1: key 6
            d(5, "name", Value::str("five"), T1, true), // 2: key 5
            d(6, "v", Value::str("a"), T1, true),       // 3: key 6
            d(7, "v", Value::str("b"), T1, true),       // 4: key 7
            inst(T1),                                   // 5
        ];
        assert_order(&spec(&["comp"]), &input, &[5, 2, 1, 3, 0, 4]);
        // Without the ref attribute, the values do not count: 5's datoms all key 5.
        assert_order(&spec(&[]), &input, &[5, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn key_minus_one_datoms_by_seq_before_new_ids() {
        let input = vec![
            d(1, "name", Value::str("old"), T1, true),   // 0: tx1 key 1
            d(1, "name", Value::str("old"), T2, false),  // 1: tx2 retraction
            d(1, "name", Value::str("new"), T2, true),   // 2: tx2 key -1 (1 not new)
            d(2, "name", Value::str("two"), T2, true),   // 3: tx2 key 2
            inst(T1),                                    // 4
            inst(T2),                                    // 5
            d(T2, "note", Value::str("meta"), T2, true), // 6: tx2 tx-meta, key -1
        ];
        assert_order(&spec(&[]), &input, &[4, 0, 5, 1, 2, 6, 3]);
    }

    #[test]
    fn retractions_in_seq_order_before_assertions() {
        let input = vec![
            d(1, "a", Value::Long(1), T1, true),  // 0
            d(1, "a", Value::Long(1), T2, false), // 1
            d(1, "b", Value::Long(9), T2, true),  // 2: key -1
            d(2, "a", Value::Long(2), T1, true),  // 3
            d(2, "a", Value::Long(2), T2, false), // 4
            d(3, "a", Value::Long(0), T2, false), // 5 (retraction of a value never asserted)
            inst(T1),                             // 6
            inst(T2),                             // 7
        ];
        assert_order(&spec(&[]), &input, &[6, 0, 3, 7, 1, 4, 5, 2]);
    }

    #[test]
    fn tx_instant_first_only_when_it_is_the_txs_own() {
        let input = vec![
            d(1, "a", Value::Long(1), T1, true),              // 0: key 1
            d(1, "db/txInstant", Value::Inst(0), T1, true),   // 1: e != tx: class 2, key 1
            inst(T1),                                         // 2: class 0
            d(T1, "db/txInstant", Value::Inst(1), T2, false), // 3: class 1 in tx2
            d(T2, "db/txInstant", Value::Inst(7), T2, false), // 4: retraction: class 1
            inst(T2),                                         // 5: class 0
        ];
        assert_order(&spec(&[]), &input, &[2, 0, 1, 5, 3, 4]);
        // With no txInstant attribute, nothing is class 0: tx-meta keys -1, first by seq.
        let none = OrderSpec {
            tx_instant: None,
            ..spec(&[])
        };
        assert_order(&none, &input, &[2, 0, 1, 3, 4, 5]);
    }

    #[test]
    fn refs_to_tx_ids_and_own_tx_do_not_count() {
        let input = vec![
            d(1, "r", Value::Long(T1), T2, true), // 0: T1 not new in tx2; 1 new → key 1
            d(2, "r", Value::Long(T2), T2, true), // 1: own tx never counts; 2 new → key 2
            d(3, "r", Value::Long(T1), T1, true), // 2: tx1: own tx; 3 new → key 3
            d(3, "x", Value::Long(0), T2, true),  // 3: 3 not new in tx2 → key -1
            inst(T1),                             // 4
            inst(T2),                             // 5
        ];
        assert_order(&spec(&["r"]), &input, &[4, 2, 5, 3, 0, 1]);
    }

    #[test]
    fn skip_tx0_drops_and_counts_but_keeps_first_mentions() {
        let input = vec![
            d(1, "r", Value::Long(10), T1, true), // 0: key 1 (10 known from TX0)
            d(5, "name", Value::str("z"), T1, true), // 1: key 5
            d(10, "db/ident", Value::kw("foo"), TX0, true), // 2: dropped
            inst(TX0),                            // 3: dropped
            inst(T1),                             // 4
        ];
        let mut s = spec(&["r"]);
        s.skip_tx0 = true;
        let (out, skipped) = run(&s, &input, 1 << 30);
        assert_eq!(skipped, 2);
        assert_eq!(
            out,
            vec![input[4].clone(), input[0].clone(), input[1].clone()]
        );
        // Without skipping, the tx0 datoms come first (txInstant, then key 10).
        s.skip_tx0 = false;
        assert_order(&s, &input, &[3, 2, 4, 0, 1]);
    }

    #[test]
    fn bad_tmp_dir_fails_fast() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let e = RestoreOrder::new(spec(&[]), &missing, 1).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::NotFound);
        assert_eq!(e.key, Some(missing.display().to_string()));
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = RestoreOrder::new(spec(&[]), &file, 1).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::InvalidArgument);
    }

    #[test]
    fn empty_input() {
        let (out, skipped) = run(&spec(&[]), &[], 0);
        assert!(out.is_empty());
        assert_eq!(skipped, 0);
    }

    #[test]
    fn big_group_uses_nested_sort_and_cleans_up() {
        let mut input: Vec<Datom> = (0..500)
            .map(|e| d(e, "v", Value::Long(499 - e), T1, true))
            .collect();
        input.push(inst(T1));
        let tmp = tempfile::tempdir().unwrap();
        let mut o = RestoreOrder::new(spec(&["v"]), tmp.path(), 4096).unwrap();
        for x in &input {
            o.push(x.clone()).unwrap();
        }
        assert!(o.spilled_runs() > 0);
        let mut it = o.finish().unwrap();
        let mut out = Vec::new();
        for x in it.by_ref() {
            out.push(x.unwrap());
        }
        assert_eq!(it.nested_sorts(), 1);
        // Keys: max(e, 499 - e) — both new; ties by seq (e ascending).
        let mut want: Vec<(i64, usize)> = (0..500).map(|e| (e.max(499 - e), e as usize)).collect();
        want.sort();
        let mut perm = vec![500];
        perm.extend(want.iter().map(|&(_, i)| i));
        let want: Vec<Datom> = perm.iter().map(|&i| input[i].clone()).collect();
        assert_eq!(out, want);
        drop(it);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn first_tx_table_dense_sparse_and_min() {
        let mut f = FirstTx::new();
        f.note(3, T2);
        f.note(3, T1);
        f.note(3, T3);
        assert_eq!(f.get(3), Some(T1));
        assert_eq!(f.get(4), None);
        f.note(-7, T2);
        f.note(i64::MAX, T3);
        f.note(1 << 40, T1);
        f.note(T2, T2);
        f.note(9, 5); // a tx below TX0 cannot be encoded densely
        f.note(9, T1);
        assert_eq!(f.get(-7), Some(T2));
        assert_eq!(f.get(i64::MAX), Some(T3));
        assert_eq!(f.get(1 << 40), Some(T1));
        assert_eq!(f.get(T2), Some(T2));
        assert_eq!(f.get(9), Some(5));
        assert!(f.low.slots.len() <= DENSE_FLOOR);
        assert!(f.sparse.contains_key(&(1 << 40)));
    }

    /// (tx, class, key, seq).
    type RefKey = (i64, u8, i64, usize);

    /// The rule, written plainly (everything in memory).
    fn reference(spec: &OrderSpec, input: &[Datom]) -> Vec<Datom> {
        let mut first: HashMap<i64, i64> = HashMap::new();
        let refv = |x: &Datom| match x.v {
            Value::Long(v) if spec.ref_attrs.contains(&x.a) => Some(v),
            _ => None,
        };
        for x in input {
            for id in std::iter::once(x.e).chain(refv(x)) {
                let t = first.entry(id).or_insert(x.tx);
                *t = (*t).min(x.tx);
            }
        }
        let mut keyed: Vec<(RefKey, &Datom)> = input
            .iter()
            .enumerate()
            .filter(|(_, x)| !(spec.skip_tx0 && x.tx == TX0))
            .map(|(seq, x)| {
                let class = if !x.added {
                    1
                } else if x.e == x.tx && spec.tx_instant.as_ref() == Some(&x.a) {
                    0
                } else {
                    2
                };
                let key = if class == 2 {
                    std::iter::once(x.e)
                        .chain(refv(x))
                        .filter(|&id| id != x.tx && first[&id] == x.tx)
                        .max()
                        .unwrap_or(-1)
                } else {
                    0
                };
                ((x.tx, class, key, seq), x)
            })
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        keyed.into_iter().map(|(_, x)| x.clone()).collect()
    }

    fn arb_datom() -> impl Strategy<Value = Datom> {
        (
            0i64..40,
            0usize..4,
            0i64..40,
            0i64..6,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(e, a, v, t, added, tx_meta)| {
                let tx = TX0 + t;
                let names = ["r", "s", "name", "db/txInstant"];
                let e = if tx_meta { tx } else { e };
                let v = match a {
                    0 => Value::Long(if v > 35 { TX0 + v - 36 } else { v }),
                    1 => Value::Long(v),
                    2 => Value::String(format!("name-{v}")),
                    _ => Value::Inst(v),
                };
                d(e, names[a], v, tx, added)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn tiny_buffer_equals_huge_buffer_and_reference(
            mut input in proptest::collection::vec(arb_datom(), 0..300),
            skip_tx0 in any::<bool>(),
            eavt in any::<bool>(),
        ) {
            if eavt {
                input.sort_by(|x, y| {
                    (x.e, x.a.to_string(), format!("{:?}", x.v), x.tx)
                        .cmp(&(y.e, y.a.to_string(), format!("{:?}", y.v), y.tx))
                });
            }
            let mut s = spec(&["r"]);
            s.skip_tx0 = skip_tx0;
            let want = reference(&s, &input);
            let (huge, _) = run(&s, &input, 1 << 30);
            prop_assert_eq!(&huge, &want);
            let (tiny, _) = run(&s, &input, 1);
            prop_assert_eq!(&tiny, &want);
            let (mid, _) = run(&s, &input, 3000);
            prop_assert_eq!(&mid, &want);
        }
    }

    #[test]
    fn a_window_emits_the_full_orders_suffix_with_first_mentions_from_everything() {
        // 5 is first mentioned in tx1 (outside the window), 6 and 7 in tx2: inside the
        // window only 6 and 7 are new, so [5 comp 7] keys 7 and [5 name] keys -1.
        let input = vec![
            d(5, "comp", Value::Long(7), T2, true),      // 0: key 7
            d(5, "name", Value::str("five"), T1, true),  // 1: tx1
            d(5, "name", Value::str("five"), T2, false), // 2: tx2 retraction
            d(5, "name", Value::str("5"), T2, true),     // 3: key -1
            d(6, "v", Value::str("a"), T2, true),        // 4: key 6
            d(7, "v", Value::str("b"), T2, true),        // 5: key 7
            inst(T1),                                    // 6
            inst(T2),                                    // 7
        ];
        let s = spec(&["comp"]);
        for buffer in [0, 1 << 30] {
            let tmp = tempfile::tempdir().unwrap();
            let mut o = RestoreOrder::new(s.clone(), tmp.path(), buffer)
                .unwrap()
                .emit_after(Some(T1));
            for x in &input {
                o.push(x.clone()).unwrap();
            }
            assert_eq!(o.outside_window(), 2);
            let out = o.finish().unwrap().collect::<Result<Vec<_>>>().unwrap();
            let (full, _) = run(&s, &input, buffer);
            let suffix: Vec<Datom> = full.into_iter().filter(|x| x.tx > T1).collect();
            assert_eq!(out, suffix);
            let want: Vec<Datom> = [7, 2, 3, 4, 0, 5]
                .iter()
                .map(|&i| input[i].clone())
                .collect();
            assert_eq!(out, want, "buffer {buffer}");
        }
    }
}
