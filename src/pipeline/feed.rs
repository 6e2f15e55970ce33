//! The backup's feeding thread: decodes the JVM's column batches and pushes their datoms
//! into the [`RestoreOrder`], so that the JVM thread walking the database only copies the
//! columns and goes on walking while another core decodes and sorts.
//!
//! ```text
//! JVM walk ──push_batch──► bounded channel (FEED_DEPTH batches) ──► "datacamp-feed":
//!   check each datom's columns ──► RestoreOrder::push_tagged (records as bytes: sort
//!   buffer, spilled runs)
//! ```
//! The channel is the backpressure: while the thread is behind, `push_batch` blocks. An
//! error (or panic) of the thread ends it; the next `push_batch` or [`Feed::finish`]
//! returns that error.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};

use crate::codec::tagged::{
    skip_payload, TAG_CHAR, TAG_DOUBLE, TAG_FALSE, TAG_FLOAT, TAG_INST, TAG_LONG, TAG_NIL, TAG_TRUE,
};
use crate::codec::wire::{self, Batch};
use crate::error::{Error, Result};
use crate::model::{Attr, Datom};
use crate::pipeline::order::RestoreOrder;

/// Batches that may wait in the channel (each up to the JVM's batch size, 8,192 datoms).
pub const FEED_DEPTH: usize = 2;

/// A tap's callback: called with each datom it sees; an error stops the feed.
pub type SeeFn = Box<dyn FnMut(&Datom) -> Result<()> + Send + Sync>;

/// Sees the datoms of some attributes on their way into the order, on the feeding thread,
/// before the order's own rules (window, tx0): e.g. the chain state's collector
/// (`crate::chain::state`), which needs the `:db/noHistory` attributes' datoms. Only the
/// datoms of [`Tap::attrs`] are decoded for it. An error stops the feed as a bad batch does.
pub struct Tap {
    /// The attributes whose datoms the tap sees.
    pub attrs: std::collections::HashSet<Attr>,
    /// Called with each of their datoms, in input order.
    pub see: SeeFn,
}

/// What receives the datoms: the order, the batches' attribute table, per batch attribute
/// id the order's id of the same attribute and whether the tap sees it, and the tap.
struct Sink {
    order: RestoreOrder,
    attrs: Vec<Attr>,
    ids: Vec<u32>,
    tapped: Vec<bool>,
    tap: Option<Tap>,
}

impl Sink {
    /// Check each datom of the batch as [`wire::decode_batch`] does and push it into the
    /// order as bytes: a scalar's tagged value is built from `vnum`, any other value's
    /// payload is taken from `vbytes` as it is (checked, never decoded).
    fn push_batch(&mut self, batch: &Batch) -> Result<()> {
        let corrupt = |m: String| Error::corrupt("decode batch", m);
        wire::decode_attrs(&batch.new_attrs, &mut self.attrs)?;
        for a in &self.attrs[self.ids.len()..] {
            self.ids.push(self.order.intern(a));
            self.tapped
                .push(self.tap.as_ref().is_some_and(|t| t.attrs.contains(a)));
        }
        let cols = batch.columns();
        let n = cols.e.len();
        for (name, len) in [
            ("a", cols.a.len()),
            ("tx", cols.tx.len()),
            ("added", cols.added.len()),
            ("vtag", cols.vtag.len()),
            ("vnum", cols.vnum.len()),
        ] {
            if len != n {
                return Err(corrupt(format!(
                    "column {name} has {len} elements, column e has {n}"
                )));
            }
        }
        let mut vbytes = cols.vbytes;
        let mut head = [0u8; 9];
        for i in 0..n {
            let a = cols.a[i];
            let aid = usize::try_from(a)
                .ok()
                .and_then(|ix| self.ids.get(ix))
                .copied()
                .ok_or_else(|| {
                    corrupt(format!(
                        "datom {i}: attribute id {a} outside the table of {} attributes",
                        self.ids.len()
                    ))
                })?;
            let added = match cols.added[i] {
                0 => false,
                1 => true,
                b => return Err(corrupt(format!("datom {i}: added is {b}, not 0 or 1"))),
            };
            let tag = cols.vtag[i] as u8;
            let num = cols.vnum[i];
            head[0] = tag;
            let (head_len, tail): (usize, &[u8]) = match tag {
                TAG_NIL | TAG_TRUE | TAG_FALSE => (1, &[]),
                TAG_LONG | TAG_INST | TAG_DOUBLE => {
                    head[1..9].copy_from_slice(&num.to_le_bytes());
                    (9, &[])
                }
                TAG_FLOAT => {
                    if num != i64::from(num as i32) && num != i64::from(num as u32) {
                        return Err(corrupt(format!(
                            "datom {i}: FLOAT payload {num} is not a 32-bit pattern"
                        )));
                    }
                    head[1..5].copy_from_slice(&(num as u32).to_le_bytes());
                    (5, &[])
                }
                TAG_CHAR => match u16::try_from(num) {
                    Ok(c) => {
                        head[1..3].copy_from_slice(&c.to_le_bytes());
                        (3, &[])
                    }
                    Err(_) => {
                        return Err(corrupt(format!(
                            "datom {i}: CHAR payload {num} is not a UTF-16 code unit"
                        )))
                    }
                },
                _ => {
                    let before = vbytes;
                    skip_payload(tag, &mut vbytes)
                        .map_err(|e| corrupt(format!("datom {i}: {}", e.message)))?;
                    (1, &before[..before.len() - vbytes.len()])
                }
            };
            if self.tapped[a as usize] {
                if let Some(tap) = &mut self.tap {
                    let mut tagged = head[..head_len].to_vec();
                    tagged.extend_from_slice(tail);
                    let v = crate::codec::tagged::decode_value(&mut tagged.as_slice())?;
                    (tap.see)(&Datom {
                        e: cols.e[i],
                        a: self.attrs[a as usize].clone(),
                        v,
                        tx: cols.tx[i],
                        added,
                    })?;
                }
            }
            self.order
                .push_tagged(cols.e[i], aid, cols.tx[i], added, &head[..head_len], tail)?;
        }
        if !vbytes.is_empty() {
            return Err(corrupt(format!(
                "{} bytes of vbytes left after the last datom",
                vbytes.len()
            )));
        }
        Ok(())
    }
}

enum State {
    /// No thread: the sink is here (before the first batch, and after a join).
    Here(Box<Sink>),
    /// The feeding thread owns the sink until it is joined.
    Thread {
        tx: Sender<Batch>,
        handle: JoinHandle<Result<Box<Sink>>>,
    },
    /// Finished, or the thread failed (its error was returned once).
    Done,
}

/// Datoms on their way into a [`RestoreOrder`], batches decoded on a feeding thread.
pub struct Feed {
    state: State,
}

impl Feed {
    /// Given a restore order, return a feed into it (the thread starts with the first batch).
    pub fn new(order: RestoreOrder) -> Self {
        Self::with_tap(order, None)
    }

    /// Like [`Feed::new`], with a [`Tap`] that sees its attributes' datoms before the order.
    pub fn with_tap(order: RestoreOrder, tap: Option<Tap>) -> Self {
        Feed {
            state: State::Here(Box::new(Sink {
                order,
                attrs: Vec::new(),
                ids: Vec::new(),
                tapped: Vec::new(),
                tap,
            })),
        }
    }

    /// Push one datom on the caller's thread, after every batch pushed before.
    pub fn push(&mut self, d: Datom) -> Result<()> {
        let sink = self.here()?;
        if let Some(tap) = &mut sink.tap {
            if tap.attrs.contains(&d.a) {
                (tap.see)(&d)?;
            }
        }
        sink.order.push(d)
    }

    /// Hand one columnar batch to the feeding thread; blocks while `FEED_DEPTH` batches
    /// wait. Returns the thread's error if it failed on an earlier batch.
    pub fn push_batch(&mut self, batch: Batch) -> Result<()> {
        if matches!(self.state, State::Here(_)) {
            let State::Here(sink) = std::mem::replace(&mut self.state, State::Done) else {
                unreachable!("matched above")
            };
            self.state = spawn(sink)?;
        }
        let State::Thread { tx, .. } = &self.state else {
            return Err(finished());
        };
        if tx.send(batch).is_ok() {
            return Ok(());
        }
        // The receiver is gone: the thread stopped on an error, which the join returns.
        self.join()?;
        Err(Error::internal(
            "push batch",
            "the feeding thread stopped early",
        ))
    }

    /// Wait until every pushed batch is in the order; return the order. The feed takes
    /// nothing more afterwards.
    pub fn finish(&mut self) -> Result<RestoreOrder> {
        self.here()?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Here(sink) => Ok(sink.order),
            _ => Err(finished()),
        }
    }

    /// Join the feeding thread if one runs; return the sink, now on this thread.
    fn here(&mut self) -> Result<&mut Sink> {
        if matches!(self.state, State::Thread { .. }) {
            let sink = self.join()?;
            self.state = State::Here(sink);
        }
        match &mut self.state {
            State::Here(sink) => Ok(sink),
            _ => Err(finished()),
        }
    }

    /// Close the channel and join the thread; the state becomes `Done`.
    fn join(&mut self) -> Result<Box<Sink>> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Thread { tx, handle } => {
                drop(tx);
                handle
                    .join()
                    .unwrap_or_else(|panic| Err(Error::from_panic("push batch", panic.as_ref())))
            }
            State::Here(sink) => Ok(sink),
            State::Done => Err(finished()),
        }
    }
}

impl Feed {
    /// Stop: join the thread if one runs and drop the order (and its spill files); the
    /// feed takes nothing more.
    pub fn close(&mut self) {
        let _ = self.join();
        self.state = State::Done;
    }
}

impl Drop for Feed {
    /// Stop the thread (it drops the order and its spill files) before the session goes.
    fn drop(&mut self) {
        self.close();
    }
}

fn spawn(mut sink: Box<Sink>) -> Result<State> {
    let (tx, rx) = bounded::<Batch>(FEED_DEPTH);
    let handle = std::thread::Builder::new()
        .name("datacamp-feed".into())
        .spawn(move || {
            for batch in rx {
                sink.push_batch(&batch)?;
            }
            Ok(sink)
        })
        .map_err(|e| Error::io("start the feeding thread", "datacamp-feed", e))?;
    Ok(State::Thread { tx, handle })
}

fn finished() -> Error {
    Error::invalid("push datoms", "the backup session is already finished")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::wire::BatchBuilder;
    use crate::error::ErrorKind;
    use crate::model::{Name, Value, TX0};
    use crate::pipeline::order::OrderSpec;

    /// Datoms in EAVT order over `txs` transactions, with retractions and txInstants.
    fn datoms(entities: i64, txs: i64) -> Vec<Datom> {
        let attrs: Vec<Attr> = ["person/name", "person/age", "person/friend", "order/total"]
            .iter()
            .map(|s| Attr::Keyword(Name::parse(s)))
            .collect();
        let mut out = Vec::new();
        for e in 1..=entities {
            for (i, a) in attrs.iter().enumerate() {
                let tx = TX0 + 1 + (e * 7 + i as i64) % txs;
                let v = match i {
                    0 => Value::String(format!("name-{e}")),
                    2 => Value::Long((e * 13) % entities + 1),
                    _ => Value::Long(e * 31 + i as i64),
                };
                out.push(Datom {
                    e,
                    a: a.clone(),
                    v: v.clone(),
                    tx,
                    added: true,
                });
                if e % 5 == 0 {
                    out.push(Datom {
                        e,
                        a: a.clone(),
                        v,
                        tx: tx + txs,
                        added: false,
                    });
                }
            }
        }
        let inst = Attr::Keyword(Name::parse("db/txInstant"));
        for tx in TX0 + 1..=TX0 + 2 * txs {
            out.push(Datom {
                e: tx,
                a: inst.clone(),
                v: Value::Inst(tx),
                tx,
                added: true,
            });
        }
        out
    }

    fn order(tmp: &std::path::Path) -> RestoreOrder {
        let spec = OrderSpec {
            ref_attrs: [Attr::Keyword(Name::parse("person/friend"))].into(),
            tx_instant: Some(Attr::Keyword(Name::parse("db/txInstant"))),
            skip_tx0: false,
        };
        // A small sort buffer: the feeding thread spills sorted runs.
        RestoreOrder::new(spec, tmp, 64 << 10).unwrap()
    }

    fn batches(ds: &[Datom], size: usize) -> Vec<Batch> {
        let mut b = BatchBuilder::new();
        ds.chunks(size)
            .map(|c| {
                for d in c {
                    b.push(d).unwrap();
                }
                b.flush()
            })
            .collect()
    }

    fn drain(order: RestoreOrder) -> Vec<Datom> {
        order.finish().unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn batches_fed_on_the_thread_come_out_as_datoms_pushed_inline() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = datoms(3000, 40);
        let mut inline = Feed::new(order(tmp.path()));
        for d in &ds {
            inline.push(d.clone()).unwrap();
        }
        let expected = drain(inline.finish().unwrap());
        assert_eq!(expected.len(), ds.len());

        // All batches through the thread; and batches, single datoms, batches mixed.
        let mut fed = Feed::new(order(tmp.path()));
        for b in batches(&ds, 1000) {
            fed.push_batch(b).unwrap();
        }
        assert_eq!(drain(fed.finish().unwrap()), expected);

        let (head, tail) = ds.split_at(5000);
        let (middle, tail) = tail.split_at(10);
        let mut mixed = Feed::new(order(tmp.path()));
        let mut builder = BatchBuilder::new();
        for d in head {
            builder.push(d).unwrap();
        }
        mixed.push_batch(builder.flush()).unwrap();
        for d in middle {
            mixed.push(d.clone()).unwrap();
        }
        for c in tail.chunks(777) {
            for d in c {
                builder.push(d).unwrap();
            }
            mixed.push_batch(builder.flush()).unwrap();
        }
        assert_eq!(drain(mixed.finish().unwrap()), expected);
    }

    #[test]
    fn a_bad_batch_fails_a_later_push_or_the_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = datoms(500, 10);
        let mut good = batches(&ds, 100).into_iter();
        let mut bad = batches(&ds[..10], 10).remove(0);
        bad.a[3] = 99; // outside the attribute table

        let mut feed = Feed::new(order(tmp.path()));
        feed.push_batch(good.next().unwrap()).unwrap();
        feed.push_batch(bad).unwrap();
        // The thread stops on the bad batch: a later push or the finish reports it.
        let err = good
            .find_map(|b| feed.push_batch(b).err())
            .unwrap_or_else(|| match feed.finish() {
                Ok(_) => panic!("the finish does not report the bad batch"),
                Err(e) => e,
            });
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        assert!(
            err.message.contains("attribute id 99 outside the table"),
            "{err}"
        );
    }

    #[test]
    fn a_feed_dropped_while_its_thread_runs_stops_it_and_leaves_no_files() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = datoms(3000, 40);
        let mut feed = Feed::new(order(tmp.path()));
        for b in batches(&ds, 1000) {
            feed.push_batch(b).unwrap();
        }
        drop(feed);
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_finished_feed_takes_nothing_more() {
        let tmp = tempfile::tempdir().unwrap();
        let mut feed = Feed::new(order(tmp.path()));
        feed.push_batch(batches(&datoms(10, 2), 100).remove(0))
            .unwrap();
        assert_eq!(drain(feed.finish().unwrap()).len(), datoms(10, 2).len());
        let err = feed.push(datoms(1, 1).remove(0)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert!(feed.push_batch(Batch::default()).is_err());
        assert!(feed.finish().is_err());
        // Closing stops it likewise (what an aborted backup does).
        let mut closed = Feed::new(order(tmp.path()));
        closed
            .push_batch(batches(&datoms(10, 2), 100).remove(0))
            .unwrap();
        closed.close();
        assert!(closed.finish().is_err());
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
