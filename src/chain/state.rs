//! What a chain must carry from link to link because history does not: the current datoms
//! of `:db/noHistory` attributes.
//!
//! Datahike keeps no history for a `:db/noHistory` attribute: a replaced or retracted value
//! leaves no datom at all, not even a retraction (DATAHIKE.md, "Transaction reports"). An
//! incremental backup reads the history, so it sees the values that are current now, never
//! the removal of one that was current at the parent's basis. A replacement is harmless
//! (`load-entities` upserts a card-one value, which replaces the old one); a plain
//! retraction (`:db/retract`, `retractEntity`) or a card-many removal would be lost.
//!
//! So every backup records its *state*: the current `:db/noHistory` datoms at its basis,
//! sorted by a canonical key (state chunks `state/no-history-N.fressian.gz`, listed in the
//! manifest under `:state/no-history`). An incremental compares the parent's state with its
//! own; a datom the parent had and the database no longer has becomes a retraction in the
//! incremental, in the window's first transaction. Loaded, it removes the value and —
//! `:db/noHistory` — records nothing in history, exactly as the source did; no `as-of`
//! view of the source shows a removed `:db/noHistory` value either.
//!
//! Memory: both states go through the external sort (bounded by its buffer), and the
//! comparison is a merge of two sorted streams.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::codec::record::{decode_datom, encode_datom};
use crate::crypto::envelope::BackupCipher;
use crate::error::{Error, Result};
use crate::model::{Attr, Datom};
use crate::pipeline::chunk::{self, ChunkEncoder};
use crate::pipeline::feed::Tap;
use crate::pipeline::sort::{ExternalSorter, SortRecord, SortedIter};
use crate::repo::layout;
use crate::repo::manifest::ChunkMeta;
use crate::store::Store;

/// Encoded bytes per state chunk.
const STATE_CHUNK_BYTES: usize = 8 << 20;

pub use crate::codec::eav::state_key;

/// A state datom with its key, as the external sort holds it (stable: pushes keep order).
struct StateRecord {
    key: Arc<[u8]>,
    d: Datom,
}

impl SortRecord for StateRecord {
    type Key = Arc<[u8]>;

    fn key(&self) -> Self::Key {
        self.key.clone()
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.key.len() + 64
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.key);
        encode_datom(&self.d, out)
    }

    fn decode(input: &mut &[u8]) -> Result<Self> {
        let truncated = || Error::corrupt("read state run", "truncated record");
        let (len, rest) = input.split_first_chunk::<4>().ok_or_else(truncated)?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(truncated());
        }
        let (key, mut rest) = rest.split_at(len);
        let d = decode_datom(&mut rest)?;
        *input = rest;
        Ok(StateRecord { key: key.into(), d })
    }
}

/// Collects, while a backup walks the database, the datoms of `:db/noHistory` attributes
/// and the first transaction of the window (incrementals).
pub struct Collector {
    attrs: HashSet<Attr>,
    after: Option<i64>,
    sorter: ExternalSorter<StateRecord>,
    first_window_tx: Option<i64>,
}

impl Collector {
    /// Given the `:db/noHistory` attributes, the window's exclusive lower bound (`None`
    /// for a full backup), a directory for spilled runs and the sort buffer, return an
    /// empty collector.
    pub fn new(attrs: HashSet<Attr>, after: Option<i64>, tmp_dir: &Path, buffer: usize) -> Self {
        Collector {
            attrs,
            after,
            sorter: ExternalSorter::new(tmp_dir, buffer),
            first_window_tx: None,
        }
    }

    /// Note one datom of the walk (any datom; only `:db/noHistory` ones are kept).
    pub fn observe(&mut self, d: &Datom) -> Result<()> {
        if self.after.is_some_and(|a| d.tx > a) && self.first_window_tx.is_none_or(|t| d.tx < t) {
            self.first_window_tx = Some(d.tx);
        }
        if self.attrs.contains(&d.a) {
            self.sorter.push(StateRecord {
                key: state_key(d)?,
                d: d.clone(),
            })?;
        }
        Ok(())
    }

    /// The smallest tx above the window's lower bound seen so far.
    pub fn first_window_tx(&self) -> Option<i64> {
        self.first_window_tx
    }

    /// Finish collecting; return the current state sorted by key (for every `[e a v]`
    /// the walk's last datom decides: an assertion is current).
    pub fn finish(self) -> Result<CurrentState> {
        Ok(CurrentState {
            src: self.sorter.finish()?.peekable(),
        })
    }
}

/// Whether `a` is the transaction instant attribute (`:db/txInstant`, or `tx_instant`, its
/// id in an `:attribute-refs?` database). Datahike marks it `:db/noHistory`, but an
/// instant is never retracted nor replaced: it has no state for a chain to carry.
pub fn is_tx_instant(a: &Attr, tx_instant: Option<&Attr>) -> bool {
    Some(a) == tx_instant
        || matches!(a, Attr::Keyword(n) if n.ns.as_deref() == Some("db") && &*n.name == "txInstant")
}

/// Return a feed [`Tap`] that hands the collector the datoms it needs: those of the
/// `:db/noHistory` attributes, and the transactions' own `tx_instant` datoms (one per
/// transaction: how it learns the window's first transaction). The lock is taken only
/// for the datoms it keeps or a new smallest window tx.
pub fn tap(collector: Arc<Mutex<Collector>>, tx_instant: Option<Attr>) -> Tap {
    let (attrs, after) = {
        let c = collector.lock().unwrap_or_else(|p| p.into_inner());
        (c.attrs.clone(), c.after)
    };
    let mut seen = attrs.clone();
    seen.extend(tx_instant);
    let mut seen_min: Option<i64> = None;
    Tap {
        attrs: seen,
        see: Box::new(move |d: &Datom| {
            let new_min = after.is_some_and(|a| d.tx > a) && seen_min.is_none_or(|t| d.tx < t);
            if new_min {
                seen_min = Some(d.tx);
            }
            if new_min || attrs.contains(&d.a) {
                collector
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .observe(d)?;
            }
            Ok(())
        }),
    }
}

/// The current state, sorted by [`state_key`]: one datom per `[e a v]`.
pub struct CurrentState {
    src: std::iter::Peekable<SortedIter<StateRecord>>,
}

impl Iterator for CurrentState {
    type Item = Result<(Arc<[u8]>, Datom)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let first = match self.src.next()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let mut last = first;
            while let Some(Ok(next)) = self.src.peek() {
                if next.key != last.key {
                    break;
                }
                match self.src.next() {
                    Some(Ok(r)) => last = r,
                    _ => unreachable!("peeked an Ok record"),
                }
            }
            if last.d.added {
                return Some(Ok((last.key, last.d)));
            }
        }
    }
}

/// Merge the current state with the parent's (both sorted by key): call `keep` with every
/// current datom, in key order, and `gone` with every parent datom whose `[e a v]` is no
/// longer current. `Corrupt` when the parent's stream is not strictly ascending.
pub fn merge(
    current: impl Iterator<Item = Result<(Arc<[u8]>, Datom)>>,
    parent: impl Iterator<Item = Result<Datom>>,
    mut keep: impl FnMut(Datom) -> Result<()>,
    mut gone: impl FnMut(Datom) -> Result<()>,
) -> Result<()> {
    let mut parent = parent.map(|r| r.and_then(|d| Ok((state_key(&d)?, d))));
    let mut last_parent: Option<Arc<[u8]>> = None;
    let mut next_parent = || -> Result<Option<(Arc<[u8]>, Datom)>> {
        match parent.next().transpose()? {
            None => Ok(None),
            Some((k, d)) => {
                if last_parent.as_ref().is_some_and(|l| *l >= k) {
                    return Err(Error::corrupt(
                        "read chain state",
                        "the parent's :db/noHistory state is not in key order",
                    ));
                }
                last_parent = Some(k.clone());
                Ok(Some((k, d)))
            }
        }
    };
    let mut p = next_parent()?;
    for c in current {
        let (ck, cd) = c?;
        while let Some((pk, _)) = &p {
            if *pk >= ck {
                break;
            }
            let (_, pd) = p.take().expect("checked Some");
            gone(pd)?;
            p = next_parent()?;
        }
        if p.as_ref().is_some_and(|(pk, _)| *pk == ck) {
            p = next_parent()?;
        }
        keep(cd)?;
    }
    while let Some((_, pd)) = p {
        gone(pd)?;
        p = next_parent()?;
    }
    Ok(())
}

/// Writes state chunks (`state/no-history-N.fressian.gz`) under a backup's folder.
pub struct StateWriter<'a> {
    store: &'a dyn Store,
    prefix: String,
    level: u32,
    enc: ChunkEncoder,
    stored: Vec<ChunkMeta>,
    cipher: Option<&'a BackupCipher>,
}

impl<'a> StateWriter<'a> {
    /// Given the store, the backup's folder (`layout::backup_prefix`), the gzip level and
    /// the backup's cipher (an encrypted backup seals its state chunks), return a writer
    /// with nothing stored yet.
    pub fn new(
        store: &'a dyn Store,
        prefix: String,
        level: u32,
        cipher: Option<&'a BackupCipher>,
    ) -> Result<Self> {
        Ok(StateWriter {
            store,
            prefix,
            level,
            cipher,
            enc: ChunkEncoder::new(STATE_CHUNK_BYTES)?,
            stored: Vec::new(),
        })
    }

    /// Add the next state datom (in key order).
    pub fn push(&mut self, d: &Datom) -> Result<()> {
        if let Some(c) = self.enc.push(d)? {
            self.put(c)?;
        }
        Ok(())
    }

    fn put(&mut self, c: chunk::EncodedChunk) -> Result<()> {
        let rel = layout::no_history_state_relative(c.id);
        let mut gz = chunk::gzip(&c.fressian, self.level)?;
        if let Some(cipher) = self.cipher {
            gz = cipher.seal_chunk(&rel, c.id, &gz)?;
        }
        let key = layout::key_in(&self.prefix, &rel);
        self.store.put(&key, &gz)?;
        self.stored.push(ChunkMeta {
            id: c.id,
            s3_key: self.store.object_key_of(&key),
            key: rel,
            tx_range: c.tx_range,
            max_eid: c.max_eid,
            datom_count: c.datom_count,
            size_bytes: gz.len() as u64,
            uncompressed_bytes: c.fressian.len() as u64,
            checksum: chunk::sha256_hex(&gz),
            raw_checksum: Some(chunk::sha256_hex(&c.fressian)),
            instant_range: None,
        });
        Ok(())
    }

    /// Store the last chunk; return the entries for the manifest's `:state/no-history`.
    pub fn finish(mut self) -> Result<Vec<ChunkMeta>> {
        let enc = std::mem::replace(&mut self.enc, ChunkEncoder::new(STATE_CHUNK_BYTES)?);
        if let Some(c) = enc.finish()? {
            self.put(c)?;
        }
        Ok(self.stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, Value, TX0};
    use crate::store::memory::MemoryStore;

    fn d(e: i64, a: &str, v: Value, tx: i64, added: bool) -> Datom {
        Datom {
            e,
            a: Attr::Keyword(Name::parse(a)),
            v,
            tx,
            added,
        }
    }

    fn collect(after: Option<i64>, walk: &[Datom], buffer: usize) -> (Vec<Datom>, Option<i64>) {
        let tmp = tempfile::tempdir().unwrap();
        let attrs = HashSet::from([Attr::Keyword(Name::parse("p/nick"))]);
        let shared = Arc::new(Mutex::new(Collector::new(attrs, after, tmp.path(), buffer)));
        let mut t = tap(shared.clone(), None);
        for x in walk {
            (t.see)(x).unwrap();
        }
        drop(t);
        let c = Arc::try_unwrap(shared).ok().unwrap().into_inner().unwrap();
        let first = c.first_window_tx();
        let state = c
            .finish()
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect::<Vec<_>>();
        (state, first)
    }

    #[test]
    fn the_tx_instant_attribute_is_known_by_ident_or_id() {
        let ident = Attr::Keyword(Name::parse("db/txInstant"));
        assert!(is_tx_instant(&ident, None));
        assert!(is_tx_instant(&Attr::Id(3), Some(&Attr::Id(3))));
        assert!(!is_tx_instant(&Attr::Id(4), Some(&Attr::Id(3))));
        assert!(!is_tx_instant(
            &Attr::Keyword(Name::parse("p/txInstant")),
            None
        ));
        assert!(!is_tx_instant(
            &Attr::Keyword(Name::parse("db/ident")),
            None
        ));
    }

    #[test]
    fn the_state_is_the_current_no_history_datoms_by_key() {
        let walk = vec![
            d(9, "p/nick", Value::str("z"), TX0 + 3, true),
            d(2, "p/name", Value::str("two"), TX0 + 1, true),
            d(2, "p/nick", Value::str("b"), TX0 + 1, true),
            d(2, "p/nick", Value::str("a"), TX0 + 2, true),
            // An older history entry (the attribute became noHistory later): retracted.
            d(5, "p/nick", Value::str("old"), TX0 + 1, true),
            d(5, "p/nick", Value::str("old"), TX0 + 2, false),
        ];
        for buffer in [0, 1 << 20] {
            let (state, first) = collect(Some(TX0 + 1), &walk, buffer);
            assert_eq!(first, Some(TX0 + 2));
            let got: Vec<(i64, Value)> = state.iter().map(|x| (x.e, x.v.clone())).collect();
            assert_eq!(
                got,
                vec![
                    (2, Value::str("a")),
                    (2, Value::str("b")),
                    (9, Value::str("z"))
                ]
            );
        }
    }

    #[test]
    fn merging_finds_what_is_gone_and_keeps_the_rest() {
        let key = |x: &Datom| state_key(x).unwrap();
        let mut parent = [
            d(1, "p/nick", Value::str("a"), TX0 + 1, true),
            d(3, "p/nick", Value::str("c"), TX0 + 1, true),
            d(4, "p/nick", Value::str("d"), TX0 + 1, true),
            d(7, "p/nick", Value::str("g"), TX0 + 1, true),
        ];
        parent.sort_by_key(key);
        let mut current = [
            d(3, "p/nick", Value::str("c"), TX0 + 5, true), // same [e a v], moved tx
            d(5, "p/nick", Value::str("e"), TX0 + 5, true),
        ];
        current.sort_by_key(key);
        let (mut kept, mut gone) = (Vec::new(), Vec::new());
        merge(
            current.iter().map(|x| Ok((key(x), x.clone()))),
            parent.iter().cloned().map(Ok),
            |x| {
                kept.push(x.e);
                Ok(())
            },
            |x| {
                gone.push(x.e);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(kept, [3, 5]);
        gone.sort();
        assert_eq!(gone, [1, 4, 7]);
        // A parent stream out of order is corrupt.
        let err = merge(
            std::iter::empty(),
            parent.iter().rev().cloned().map(Ok),
            |_| Ok(()),
            |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Corrupt);
    }

    #[test]
    fn keys_see_sets_maps_and_signed_zeros_as_datahike_does() {
        let set = |xs: &[i64]| Value::Set(xs.iter().map(|&x| Value::Long(x)).collect());
        let k = |v: Value| state_key(&d(1, "p/nick", v, TX0 + 1, true)).unwrap();
        assert_eq!(k(set(&[1, 2, 3])), k(set(&[3, 1, 2])));
        assert_ne!(k(set(&[1, 2])), k(set(&[1, 2, 3])));
        assert_eq!(k(Value::Double(-0.0)), k(Value::Double(0.0)));
        let m = |xs: &[(i64, &str)]| {
            Value::Map(
                xs.iter()
                    .map(|&(a, b)| (Value::Long(a), Value::str(b)))
                    .collect(),
            )
        };
        assert_eq!(k(m(&[(1, "x"), (2, "y")])), k(m(&[(2, "y"), (1, "x")])));
        assert_ne!(k(Value::str("1")), k(Value::Long(1)));
        assert!(k(Value::Long(5)) < state_key(&d(2, "a/a", Value::Long(0), TX0, true)).unwrap());
    }

    #[test]
    fn state_chunks_round_trip_through_a_store() {
        let mem = MemoryStore::new();
        let mut w = StateWriter::new(&mem, "db/b1/".into(), 6, None).unwrap();
        let ds: Vec<Datom> = (0..5)
            .map(|i| d(i, "p/nick", Value::Long(i), TX0 + 1, true))
            .collect();
        for x in &ds {
            w.push(x).unwrap();
        }
        let metas = w.finish().unwrap();
        assert_eq!(metas.len(), 1);
        assert_eq!(metas[0].key, "state/no-history-0.fressian.gz");
        let bytes = mem.get("db/b1/state/no-history-0.fressian.gz").unwrap();
        assert_eq!(chunk::sha256_hex(&bytes), metas[0].checksum);
        assert_eq!(
            chunk::decode_chunk(&bytes, &chunk::ChunkLimits::NONE)
                .unwrap()
                .datoms,
            ds
        );
        let empty = StateWriter::new(&mem, "db/b2/".into(), 6, None).unwrap();
        assert!(empty.finish().unwrap().is_empty());
    }
}
