//! The producing side of a restore: stored chunks fetched ahead, then decoded, checked
//! alone and gathered (for our backups: into column batches, [`Columns`]) datom by datom
//! on worker threads, then handed over in chunk order with the in-order checks applied.
//!
//! A worker frees what it decoded itself (each datom becomes columns as it is read, on the
//! thread that read it), so the thread that hands batches to the JVM only renumbers
//! attributes ([`super::restore::RestoreSession`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crossbeam_channel::{bounded, Receiver};

use crate::codec::fressian::DatomParts;
use crate::codec::wire::{AttrTable, Batch, BatchBuilder};
use crate::crypto::envelope::BackupCipher;
use crate::error::{Error, Result};
use crate::model::{Attr, Datom, TX0};
use crate::pipeline::chunk::{self, DecodedChunk};
use crate::repo::layout;
use crate::repo::manifest::ChunkMeta;
use crate::store::Store;

use super::check::{self, ChunkFacts, ChunkRules, ContentCheck, DatomRef};

/// Stored bytes fetched ahead and not yet taken by a decoder, at most (at least one chunk
/// is always allowed, whatever its size).
pub const FETCH_AHEAD_BYTES: u64 = 64 << 20;

/// A chunk's datoms as column batches numbered by the chunk's own attribute table, built on
/// the worker that decoded it (tx0 datoms, which a restore never hands out, left out).
#[derive(Debug)]
pub struct ColumnChunk {
    /// The chunk's id (for progress: the chunk a batch came from).
    pub id: u64,
    /// The attributes the batches' `a` columns index.
    pub attrs: Vec<Attr>,
    /// The batches, in order (`new_attrs` empty).
    pub batches: Vec<Batch>,
    /// Datoms past the restore's point were left out: the stream ends with this chunk.
    pub cut: bool,
}

/// Given datoms in restore order, return them as a [`ColumnChunk`] with batches of at most
/// `batch_datoms` datoms, leaving out tx0 datoms and, with `through`, every datom from the
/// first one of a later transaction on.
pub fn to_columns(
    id: u64,
    datoms: impl IntoIterator<Item = Datom>,
    batch_datoms: usize,
    through: Option<i64>,
) -> Result<ColumnChunk> {
    let g = Columns {
        batch_datoms,
        through,
    };
    let mut acc = g.begin(id);
    let mut table = AttrTable::default();
    for d in datoms {
        let a = table.id(&d.a)? as u32;
        let (e, v, tx, added) = (d.e, d.v, d.tx, d.added);
        g.push(&mut acc, DatomParts { e, a, v, tx, added }, table.attrs())?;
    }
    g.finish(acc, table.into_attrs())
}

/// How a worker gathers a chunk's datoms, as they are decoded, for its consumer.
pub(super) trait Gather: Send + Sync + 'static {
    /// What is gathered while the chunk is read.
    type Acc: Send;
    /// What the consumer gets.
    type Out: Send + 'static;
    /// Start gathering chunk `id`.
    fn begin(&self, id: u64) -> Self::Acc;
    /// Take the chunk's next datom (its `a` indexes `attrs`, the chunk's attributes so far).
    fn push(&self, acc: &mut Self::Acc, d: DatomParts, attrs: &[Attr]) -> Result<()>;
    /// The chunk, read to its end (`attrs`: all its attributes).
    fn finish(&self, acc: Self::Acc, attrs: Vec<Attr>) -> Result<Self::Out>;
}

/// Keep the decoded chunks as they are.
pub(super) struct Decoded;

impl Gather for Decoded {
    type Acc = DecodedChunk;
    type Out = DecodedChunk;
    fn begin(&self, id: u64) -> DecodedChunk {
        DecodedChunk {
            id: id as i64,
            datoms: Vec::new(),
        }
    }
    fn push(&self, acc: &mut DecodedChunk, d: DatomParts, attrs: &[Attr]) -> Result<()> {
        acc.datoms.push(d.into_datom(attrs));
        Ok(())
    }
    fn finish(&self, acc: DecodedChunk, _: Vec<Attr>) -> Result<DecodedChunk> {
        Ok(acc)
    }
}

/// Keep nothing (a verifying pass: the chunks are only checked).
pub(super) struct Discarded;

impl Gather for Discarded {
    type Acc = ();
    type Out = ();
    fn begin(&self, _: u64) {}
    fn push(&self, _: &mut (), _: DatomParts, _: &[Attr]) -> Result<()> {
        Ok(())
    }
    fn finish(&self, _: (), _: Vec<Attr>) -> Result<()> {
        Ok(())
    }
}

/// Turn the chunks into column batches ([`to_columns`]).
pub(super) struct Columns {
    /// The most datoms per batch.
    pub batch_datoms: usize,
    /// The point of a point-in-time restore: later transactions are left out.
    pub through: Option<i64>,
}

/// A [`ColumnChunk`] being built.
pub(super) struct ColumnsAcc {
    id: u64,
    builder: BatchBuilder,
    batches: Vec<Batch>,
    cut: bool,
}

impl Gather for Columns {
    type Acc = ColumnsAcc;
    type Out = ColumnChunk;
    fn begin(&self, id: u64) -> ColumnsAcc {
        ColumnsAcc {
            id,
            builder: BatchBuilder::new(),
            batches: Vec::new(),
            cut: false,
        }
    }
    fn push(&self, acc: &mut ColumnsAcc, d: DatomParts, _: &[Attr]) -> Result<()> {
        if acc.cut || d.tx == TX0 {
            return Ok(());
        }
        if self.through.is_some_and(|t| d.tx > t) {
            acc.cut = true;
            return Ok(());
        }
        // The batches are numbered by the chunk's own table (sent along as `attrs`).
        acc.builder
            .push_parts(d.e, d.a as i32, &d.v, d.tx, d.added)?;
        if acc.builder.len() >= self.batch_datoms {
            acc.batches.push(acc.builder.flush());
        }
        Ok(())
    }
    fn finish(&self, mut acc: ColumnsAcc, attrs: Vec<Attr>) -> Result<ColumnChunk> {
        if !acc.builder.is_empty() {
            acc.batches.push(acc.builder.flush());
        }
        for batch in &mut acc.batches {
            batch.new_attrs.clear();
        }
        Ok(ColumnChunk {
            id: acc.id,
            attrs,
            batches: acc.batches,
            cut: acc.cut,
        })
    }
}

/// A chunk as a worker hands it over: what the in-order checks need, and its content.
struct Fetched<T> {
    facts: ChunkFacts,
    content: T,
}

/// Fetches and checks (size, SHA-256) stored chunks ahead on `depth` reader threads,
/// claiming them in chunk order; [`FetchAhead::take`] hands each one out once.
///
/// Bounded: a reader claims the next chunk only while fewer than `depth` claimed chunks
/// are untaken and their stored sizes stay within [`FETCH_AHEAD_BYTES`]. Whoever takes the
/// lowest untaken chunk always makes progress: when everything claimed has been taken, a
/// claim is always allowed.
struct FetchAhead {
    state: Mutex<FetchState>,
    changed: Condvar,
}

#[derive(Default)]
struct FetchState {
    /// The next chunk to claim.
    next: usize,
    /// Claimed and not yet taken: how many, and their stored bytes.
    pending: usize,
    pending_bytes: u64,
    /// Fetched and not yet taken.
    ready: HashMap<usize, Result<Vec<u8>>>,
    stopped: bool,
}

impl FetchAhead {
    fn start(
        store: Arc<dyn Store>,
        prefix: String,
        chunks: Arc<Vec<ChunkMeta>>,
        depth: usize,
    ) -> Arc<Self> {
        let fetch = Arc::new(FetchAhead {
            state: Mutex::new(FetchState::default()),
            changed: Condvar::new(),
        });
        let depth = depth.max(1);
        for _ in 0..depth.min(chunks.len()) {
            let (fetch, store, prefix, chunks) =
                (fetch.clone(), store.clone(), prefix.clone(), chunks.clone());
            thread::spawn(move || {
                while let Some(i) = fetch.claim(&chunks, depth) {
                    let r = check::fetch_stored(store.as_ref(), &prefix, &chunks[i]);
                    let mut st = fetch.lock();
                    st.ready.insert(i, r);
                    fetch.changed.notify_all();
                }
            });
        }
        fetch
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until the next chunk may be fetched and claim it; `None` at the end or stop.
    fn claim(&self, chunks: &[ChunkMeta], depth: usize) -> Option<usize> {
        let mut st = self.lock();
        loop {
            if st.stopped || st.next >= chunks.len() {
                return None;
            }
            let size = chunks[st.next].size_bytes;
            if st.pending == 0
                || (st.pending < depth && st.pending_bytes + size <= FETCH_AHEAD_BYTES)
            {
                let i = st.next;
                st.next += 1;
                st.pending += 1;
                st.pending_bytes += size;
                return Some(i);
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wait for chunk `i`'s checked bytes and take them; `None` once stopped.
    fn take(&self, i: usize, size: u64) -> Option<Result<Vec<u8>>> {
        let mut st = self.lock();
        loop {
            if st.stopped {
                return None;
            }
            if let Some(r) = st.ready.remove(&i) {
                st.pending -= 1;
                st.pending_bytes -= size;
                self.changed.notify_all();
                return Some(r);
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stop: readers claim nothing more, waiting takers return `None`.
    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// What a [`Prefetch`] reads: one backup's (or log's) chunks and how to open and check them.
pub(super) struct Source {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The backup's folder.
    pub prefix: String,
    /// The chunks to read, in order.
    pub chunks: Arc<Vec<ChunkMeta>>,
    /// The backup's cipher (an encrypted backup).
    pub cipher: Option<Arc<BackupCipher>>,
    /// What each chunk must satisfy alone.
    pub rules: ChunkRules,
}

/// Decodes the fetched chunks on worker threads, checks and gathers each alone, and yields
/// them in chunk order.
///
/// Worker `k` handles chunks `k, k + parallel, …` and hands each over through its own
/// one-slot channel, so at most `2 × parallel` decoded chunks exist at once.
struct Prefetch<G: Gather> {
    receivers: Vec<Receiver<Result<Fetched<G::Out>>>>,
    next: usize,
    count: usize,
    stop: Arc<AtomicBool>,
    fetch: Arc<FetchAhead>,
}

impl<G: Gather> Prefetch<G> {
    /// Start reading `src` with `parallel` decoders and `fetch_ahead` readers.
    fn start(src: Source, parallel: usize, fetch_ahead: usize, gather: Arc<G>) -> Self {
        let Source {
            store,
            prefix,
            chunks,
            cipher,
            rules,
        } = src;
        let stop = Arc::new(AtomicBool::new(false));
        let fetch = FetchAhead::start(store.clone(), prefix.clone(), chunks.clone(), fetch_ahead);
        let parallel = parallel.max(1);
        let mut receivers = Vec::with_capacity(parallel);
        for k in 0..parallel {
            let (tx, rx) = bounded(1);
            receivers.push(rx);
            let (store, prefix, chunks, stop, fetch, cipher, rules, gather) = (
                store.clone(),
                prefix.clone(),
                chunks.clone(),
                stop.clone(),
                fetch.clone(),
                cipher.clone(),
                rules.clone(),
                gather.clone(),
            );
            let worker = move || {
                for i in (k..chunks.len()).step_by(parallel) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let meta = &chunks[i];
                    let Some(bytes) = fetch.take(i, meta.size_bytes) else {
                        break;
                    };
                    let key = layout::chunk_in(&prefix, meta);
                    let work = || -> Result<Fetched<G::Out>> {
                        // Each datom is checked and gathered as it is decoded; the first
                        // error of either stops both, and is reported unless decoding fails.
                        let mut facts = rules.start(meta);
                        let mut acc = gather.begin(meta.id);
                        let mut failed = None;
                        let sink = &mut |p: DatomParts, attrs: &[Attr]| {
                            if failed.is_none() {
                                let d = DatomRef {
                                    e: p.e,
                                    a: &attrs[p.a as usize],
                                    v: &p.v,
                                    tx: p.tx,
                                    added: p.added,
                                };
                                let r = facts.push_ref(d);
                                if let Err(e) = r.and_then(|()| gather.push(&mut acc, p, attrs)) {
                                    failed = Some(e);
                                }
                            }
                        };
                        let attrs = check::decode_checked_into(
                            meta,
                            &bytes?,
                            cipher.as_deref(),
                            || store.location(&key),
                            sink,
                        )?;
                        if let Some(e) = failed {
                            return Err(e);
                        }
                        Ok(Fetched {
                            facts: facts.finish(),
                            content: gather.finish(acc, attrs)?,
                        })
                    };
                    // A panic is this chunk's error, as on a decoding thread of its own.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                        .unwrap_or_else(|p| Err(Error::from_panic("decode chunk", p.as_ref())));
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            };
            // A worker that cannot start leaves its channel closed: its first chunk reports it.
            let _ = chunk::spawn_decoder("datacamp-restore", worker);
        }
        Prefetch {
            count: chunks.len(),
            receivers,
            next: 0,
            stop,
            fetch,
        }
    }
}

impl<G: Gather> Iterator for Prefetch<G> {
    type Item = Result<Fetched<G::Out>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let slot = self.next % self.receivers.len();
        self.next += 1;
        Some(self.receivers[slot].recv().unwrap_or_else(|_| {
            Err(Error::internal(
                "restore",
                "a chunk reader stopped unexpectedly",
            ))
        }))
    }
}

impl<G: Gather> Drop for Prefetch<G> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.fetch.stop();
    }
}

/// One backup's (or chain link's) chunks, each checked in chunk order
/// ([`ContentCheck::apply`]); after the last one, the backup-wide checks (attributes
/// declared, datom total). [`Checked::into_check`] gives the check back for a next link.
pub(super) struct Checked<G: Gather> {
    chunks: Prefetch<G>,
    metas: Arc<Vec<ChunkMeta>>,
    next: usize,
    check: ContentCheck,
    finished: bool,
}

impl<G: Gather> Checked<G> {
    /// Start reading `src` (whose rules are `check`'s), gathering each chunk with `gather`
    /// and checking it with `check`.
    pub(super) fn start(
        src: Source,
        check: ContentCheck,
        parallel: usize,
        fetch_ahead: usize,
        gather: impl Into<Arc<G>>,
    ) -> Self {
        let metas = src.chunks.clone();
        Checked {
            chunks: Prefetch::start(src, parallel, fetch_ahead, gather.into()),
            metas,
            next: 0,
            check,
            finished: false,
        }
    }

    /// The check, with what it learnt of these chunks (for the next link of a chain).
    pub(super) fn into_check(self) -> ContentCheck {
        self.check
    }
}

impl<G: Gather> Iterator for Checked<G> {
    type Item = Result<G::Out>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = match self.chunks.next() {
            Some(Ok(f)) => next_checked(&mut self.check, self.metas.get(self.next), f),
            Some(Err(e)) => Err(e),
            None => {
                self.finished = true;
                return self.check.finish().err().map(Err);
            }
        };
        self.next += 1;
        self.finished = item.is_err();
        Some(item)
    }
}

/// Apply the in-order checks to the next chunk (`meta`, from the plan) and hand its content on.
fn next_checked<T>(check: &mut ContentCheck, meta: Option<&ChunkMeta>, f: Fetched<T>) -> Result<T> {
    let meta = meta.ok_or_else(|| Error::internal("restore", "more chunks than planned"))?;
    check.apply(meta, &f.facts)?;
    Ok(f.content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::wire::decode_batch;
    use crate::ops::testing::history;

    /// The datoms of `c`'s batches, decoded with its attribute table.
    fn datoms_of(c: &ColumnChunk) -> Vec<Datom> {
        let mut out = Vec::new();
        for b in &c.batches {
            assert!(b.new_attrs.is_empty());
            decode_batch(&b.columns(), &c.attrs, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn a_chunk_becomes_batches_of_its_datoms_without_tx0_and_up_to_the_point() {
        let mut datoms = history(40);
        let tx0 = Datom {
            tx: TX0,
            e: 1,
            ..datoms[0].clone()
        };
        datoms.insert(0, tx0);
        let c = to_columns(7, datoms.clone(), 16, None).unwrap();
        assert_eq!((c.id, c.cut), (7, false));
        assert!(c.batches.iter().all(|b| (1..=16).contains(&b.len())));
        assert_eq!(datoms_of(&c), datoms[1..].to_vec());
        // Through a transaction: everything before the first datom of a later one.
        let through = datoms[datoms.len() / 2].tx;
        let c = to_columns(7, datoms.clone(), 16, Some(through)).unwrap();
        assert!(c.cut);
        let want: Vec<Datom> = datoms[1..]
            .iter()
            .take_while(|d| d.tx <= through)
            .cloned()
            .collect();
        assert!(!want.is_empty() && want.len() < datoms.len() - 1);
        assert_eq!(datoms_of(&c), want);
        // A point past the chunk cuts nothing.
        let last = datoms.last().unwrap().tx;
        assert!(!to_columns(7, datoms, 16, Some(last)).unwrap().cut);
    }
}
