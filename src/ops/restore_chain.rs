//! Restoring a chain (an incremental backup with every link back to its base), or any
//! backup to a point in time, as ONE stream of datoms in restore order.
//!
//! Before the first datom: the chain is resolved and checked link by link
//! ([`crate::chain::resolve`]), every link's manifest validated as a single backup's is
//! ([`crate::repo::manifest::Manifest::check`]), the reading plan made
//! ([`crate::chain::plan`]), and every chunk the plan reads checked for presence and size
//! from one listing per link — with `verify_first` also read, checked, decoded and checked
//! against its manifest — so a missing or broken link stops the restore before the target
//! is touched. Then the links' chunks stream one link after the other through the same
//! fetch-ahead and decoders as a single backup, each checked against its link's manifest
//! ([`ContentCheck`], one check across the chain: attributes declared in an earlier link
//! stay declared), cut at the point.

use std::collections::HashMap;
use std::sync::Arc;

use crate::chain::plan::{self, Available, Point};
use crate::chain::resolve;
use crate::crypto::envelope::{self, BackupCipher};
use crate::error::Result;
use crate::model::{Attr, Name, Value};
use crate::store::Store;

use super::check::{self, ContentCheck};
use super::restore::{ChunkSource, RestoreInfo, RestoreOptions, RestoreSession};
use super::restore_feed::{Checked, Columns, Discarded, Gather, Source};
use crate::error::Error;
use crate::repo::manifest::{ChunkMeta, Manifest};

const OP: &str = "restore";

/// What a chain or point-in-time restore reads, known before the first datom.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainInfo {
    /// The links read, base first.
    pub links: Vec<String>,
    /// Every link of the chain, base first (also those after the point).
    pub chain: Vec<String>,
    /// The point asked for.
    pub point: Point,
    /// What the chain can restore.
    pub available: Available,
    /// Datoms are handed out up to this transaction (`None`: all that are read).
    pub through_tx: Option<i64>,
    /// Chunks read.
    pub chunks: u64,
    /// Datoms in the chunks read.
    pub datoms: u64,
    /// Stored bytes read (chunks, and the chunk that resolved an instant).
    pub bytes: u64,
}

/// The `:db/txInstant` attribute a backup's `config.edn` records (its id in an
/// `:attribute-refs? true` database), `:db/txInstant` when it records none.
pub fn tx_instant_attr(config: &Value) -> Attr {
    match config.get("schema/tx-instant-attr") {
        Some(Value::Keyword(n)) => Attr::Keyword(n.clone()),
        Some(Value::Long(id)) => Attr::Id(*id),
        _ => Attr::Keyword(Name::new(Some("db"), "txInstant")),
    }
}

/// Open a restore of `opts.backup_id`'s chain up to `opts.point()` (see the module doc).
///
/// Errors: those of [`resolve::resolve`] (`NotFound`, `Conflict`, `Corrupt` naming the
/// link), of [`plan::plan`] (`InvalidArgument` naming the available range), and
/// `Corrupt` naming the chunk when a chunk read is missing, truncated or (with
/// `verify_first`) fails its checksum.
pub(super) fn open(store: Arc<dyn Store>, opts: RestoreOptions) -> Result<RestoreSession> {
    let chain = resolve::resolve(store.as_ref(), &opts.database_id, &opts.backup_id, OP)?;
    let mut tip = chain.tip().clone();
    // Every link's key before anything is read: an encrypted chain opens with its key only,
    // and a chain mixing plain and encrypted links is refused (a plain link read with a
    // key, an encrypted one without).
    let mut ciphers: HashMap<String, Arc<BackupCipher>> = HashMap::new();
    for link in &chain.links {
        if let Some(c) = envelope::resolve(
            link.manifest.encryption.as_ref(),
            opts.encryption.as_ref(),
            &opts.database_id,
            link.id(),
        )? {
            ciphers.insert(link.prefix.clone(), c);
        }
    }
    tip.config = envelope::open_config(tip.config, ciphers.get(&tip.prefix).map(|c| c.as_ref()))?;
    let tx_instant = tx_instant_attr(&tip.config);
    let plan = plan::plan(OP, &chain, opts.point(), &tx_instant, |prefix, meta| {
        check::fetch_checked(
            store.as_ref(),
            prefix,
            meta,
            ciphers.get(prefix).map(|c| c.as_ref()),
        )
        .map(|c| c.datoms)
    })?;
    // (A log's segments were checked when it was read: names, contiguity.)
    for link in chain.links.iter().filter(|l| !l.is_log()) {
        link.manifest
            .check(&opts.database_id, &link.manifest.backup_id)
            .map_err(|e| e.with_key(store.location(&link.prefix)))?;
    }
    for part in &plan.parts {
        // Presence and size from one listing per link (not a request per chunk): the
        // folder of its chunks (`chunks/`, a log's `segments/`).
        let folder = part
            .chunks
            .first()
            .and_then(|c| c.key.rsplit_once('/'))
            .map_or("chunks", |(dir, _)| dir);
        let listing = store.list(&format!("{}{folder}/", part.prefix))?;
        for p in check::present(store.as_ref(), &part.prefix, &part.chunks, &listing) {
            p.into_result()?;
        }
    }
    let links: Vec<LinkSpec> = plan
        .parts
        .iter()
        .map(|p| {
            let link = chain
                .links
                .iter()
                .find(|l| l.prefix == p.prefix)
                .ok_or_else(|| Error::internal(OP, "a planned link is not in the chain"))?;
            Ok(LinkSpec {
                prefix: p.prefix.clone(),
                chunks: Arc::new(p.chunks.clone()),
                manifest: link.manifest.clone(),
                cipher: ciphers.get(&p.prefix).cloned(),
            })
        })
        .collect::<Result<_>>()?;
    let (parallel, ahead) = (opts.parallel, opts.fetch_ahead);
    if opts.verify_first {
        // Every chunk read, checked and decoded before the first datom.
        let gather = Discarded;
        for c in ChainChecked::new(
            store.clone(),
            links.clone(),
            &tip.config,
            parallel,
            ahead,
            gather,
        ) {
            c?;
        }
    }
    let info = ChainInfo {
        links: plan.parts.iter().map(|p| p.backup_id.clone()).collect(),
        chain: chain.ids(),
        point: opts.point(),
        available: plan.available,
        through_tx: plan.through_tx,
        chunks: plan.chunks().count() as u64,
        datoms: plan.datom_count(),
        bytes: plan.bytes(),
    };
    // Datoms past the point are left out by the workers; the stream ends at the first
    // chunk that had any (the checks of later chunks and the link's datom total are not
    // reached: those chunks are not read).
    let gather = Columns {
        batch_datoms: opts.batch_datoms,
        through: plan.through_tx,
    };
    let source: ChunkSource = Box::new(ChainChecked::new(
        store.clone(),
        links,
        &tip.config,
        parallel,
        ahead,
        gather,
    ));
    let datahike_config = tip
        .config
        .get("datahike/config")
        .cloned()
        .unwrap_or(Value::Nil);
    Ok(RestoreSession::from_source(
        RestoreInfo {
            manifest: tip.manifest,
            datahike_config,
            chain: Some(info),
        },
        source,
        Some(tx_instant),
    ))
}

/// One link's part of a chain restore: its folder, the chunks read and its manifest.
#[derive(Clone)]
struct LinkSpec {
    prefix: String,
    chunks: Arc<Vec<ChunkMeta>>,
    manifest: Manifest,
    /// The link's cipher (an encrypted chain).
    cipher: Option<Arc<BackupCipher>>,
}

/// The chunks of a chain's links, link after link, each link's read by a [`Checked`] with
/// one [`ContentCheck`] carried across the links.
struct ChainChecked<G: Gather> {
    store: Arc<dyn Store>,
    links: std::vec::IntoIter<LinkSpec>,
    current: Option<Checked<G>>,
    /// The check between links (the first link creates it).
    check: Option<ContentCheck>,
    config: Value,
    parallel: usize,
    fetch_ahead: usize,
    gather: Arc<G>,
    finished: bool,
}

impl<G: Gather> ChainChecked<G> {
    fn new(
        store: Arc<dyn Store>,
        links: Vec<LinkSpec>,
        config: &Value,
        parallel: usize,
        fetch_ahead: usize,
        gather: G,
    ) -> Self {
        ChainChecked {
            store,
            links: links.into_iter(),
            current: None,
            check: None,
            config: config.clone(),
            parallel,
            fetch_ahead,
            gather: Arc::new(gather),
            finished: false,
        }
    }

    fn step(&mut self) -> Option<Result<G::Out>> {
        loop {
            if let Some(link) = &mut self.current {
                if let Some(item) = link.next() {
                    return Some(item);
                }
                self.check = self.current.take().map(Checked::into_check);
                continue;
            }
            let link = self.links.next()?;
            let expected = link.chunks.iter().map(|c| c.datom_count).sum();
            let mut check = self
                .check
                .take()
                .unwrap_or_else(|| ContentCheck::new(&link.manifest, Some(&self.config)));
            check.next_link(&link.manifest, expected);
            let src = Source {
                store: self.store.clone(),
                prefix: link.prefix,
                chunks: link.chunks,
                cipher: link.cipher,
                rules: check.rules(),
            };
            self.current = Some(Checked::start(
                src,
                check,
                self.parallel,
                self.fetch_ahead,
                self.gather.clone(),
            ));
        }
    }
}

impl<G: Gather> Iterator for ChainChecked<G> {
    type Item = Result<G::Out>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = self.step();
        self.finished = item.as_ref().is_none_or(|r| r.is_err());
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::{Datom, TX0};
    use crate::ops::testing::{self, history, CountingStore};
    use crate::repo::layout;
    use crate::repo::manifest::Manifest;
    use crate::repo::meta::{read_edn, write_edn};
    use crate::store::memory::MemoryStore;

    fn manifest(mem: &MemoryStore, id: &str) -> Manifest {
        Manifest::from_value(
            &read_edn(mem, &layout::backup_file("db", id, layout::MANIFEST)).unwrap(),
        )
        .unwrap()
    }

    fn link_datoms(mem: &MemoryStore, id: &str) -> Vec<Datom> {
        let m = manifest(mem, id);
        let prefix = layout::backup_prefix("db", id);
        m.chunks
            .iter()
            .flat_map(|c| check::fetch_checked(mem, &prefix, c, None).unwrap().datoms)
            .collect()
    }

    fn opts(id: &str) -> RestoreOptions {
        RestoreOptions {
            database_id: "db".into(),
            backup_id: id.into(),
            ..RestoreOptions::default()
        }
    }

    fn instant(t: i64) -> i64 {
        1_700_000_000_000 + (t - TX0)
    }

    /// A chain of a full backup at tx 10 and incrementals at 20, 30 and 30 again (nothing
    /// new), and the datoms of a full backup at 30 (the reference).
    fn setup() -> (MemoryStore, Arc<dyn Store>, Vec<String>, Vec<Datom>) {
        let (mem, store) = testing::store();
        let ids = testing::chain(&store, "db", &[10, 20, 30, 30]);
        let full = testing::backup(&store, testing::options("ref", 600, 30), &history(30));
        let want = testing::stored_datoms(&mem, &full);
        (mem, store, ids, want)
    }

    #[test]
    fn each_link_holds_its_window_of_the_full_order_and_restores_its_chain() {
        let (mem, store, ids, want) = setup();
        let ends = [10, 20, 30, 30].map(|t| TX0 + t);
        for (i, id) in ids.iter().enumerate() {
            let m = manifest(&mem, id);
            let after = (i > 0).then(|| ends[i - 1]);
            assert_eq!(m.link.after_tx, after);
            assert_eq!(m.max_tx, ends[i]);
            assert_eq!(m.backup_type, if i == 0 { "full" } else { "incremental" });
            assert_eq!(m.link.parent, (i > 0).then(|| ids[i - 1].clone()));
            assert_eq!(m.link.base, (i > 0).then(|| ids[0].clone()));
            let window: Vec<Datom> = want
                .iter()
                .filter(|d| after.is_none_or(|a| d.tx > a) && d.tx <= ends[i])
                .cloned()
                .collect();
            assert_eq!(link_datoms(&mem, id), window, "link {i}");
            if !window.is_empty() {
                let first = window.first().unwrap().tx;
                assert_eq!(
                    m.link.instant_range,
                    Some((instant(first), instant(ends[i])))
                );
            }
            let restored = testing::restore(&store, "db", id).unwrap();
            let upto: Vec<Datom> = want.iter().filter(|d| d.tx <= ends[i]).cloned().collect();
            assert_eq!(restored, upto, "restore of link {i}");
        }
        assert!(manifest(&mem, &ids[1]).chunks.len() > 1);
        assert!(
            manifest(&mem, &ids[3]).chunks.is_empty(),
            "nothing new: an empty link"
        );
    }

    #[test]
    fn a_point_in_time_is_a_prefix_and_reads_only_the_chunks_it_needs() {
        let (mem, _store, ids, want) = setup();
        let counting = Arc::new(CountingStore {
            inner: mem.clone(),
            read: 0.into(),
        });
        let store: Arc<dyn Store> = counting.clone();
        let total: u64 = ids.iter().map(|id| manifest(&mem, id).size_bytes).sum();
        for t in TX0 + 1..=TX0 + 30 {
            for by_time in [false, true] {
                let mut o = opts(&ids[3]);
                if by_time {
                    o.as_of_time_ms = Some(instant(t));
                } else {
                    o.as_of_tx = Some(t);
                }
                let before = counting.read.load(std::sync::atomic::Ordering::SeqCst);
                let (got, session) = testing::restore_with(&store, o).unwrap();
                let read = counting.read.load(std::sync::atomic::Ordering::SeqCst) - before;
                let upto: Vec<Datom> = want.iter().filter(|d| d.tx <= t).cloned().collect();
                assert_eq!(got, upto, "as of {t} (by time: {by_time})");
                assert_eq!(session.reached(), (Some(t), Some(instant(t))));
                let info = session.info().chain.clone().unwrap();
                assert_eq!(read, info.bytes, "bytes read as planned");
                let needed: u64 = ids
                    .iter()
                    .flat_map(|id| manifest(&mem, id).chunks)
                    .filter(|c| c.tx_range.unwrap().0 <= t)
                    .map(|c| c.size_bytes)
                    .sum();
                let lookup = if by_time { info.bytes - needed } else { 0 };
                assert_eq!(info.bytes, needed + lookup);
                assert!(lookup <= 700, "one chunk looked up: {lookup}");
                if t <= TX0 + 10 {
                    assert!(needed * 2 < total, "{needed} of {total}");
                }
            }
        }
    }

    #[test]
    fn points_outside_the_chain_are_refused_naming_the_range() {
        let (_mem, store, ids, _) = setup();
        for (tx, time) in [
            (Some(TX0), None),
            (Some(TX0 + 31), None),
            (None, Some(instant(TX0 + 1) - 1)),
            (None, Some(instant(TX0 + 30) + 1)),
        ] {
            let o = RestoreOptions {
                as_of_tx: tx,
                as_of_time_ms: time,
                ..opts(&ids[2])
            };
            let err = RestoreSession::open(store.clone(), o).err().unwrap();
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err}");
            assert!(
                err.message.contains(
                    "transactions 536870913 (#inst \"2023-11-14T22:13:20.001-00:00\") to 536870942"
                ),
                "{err}"
            );
        }
        // Inside a single full backup too: any earlier transaction is a prefix.
        let (got, s) = testing::restore_with(
            &store,
            RestoreOptions {
                as_of_tx: Some(TX0 + 3),
                ..opts(&ids[0])
            },
        )
        .unwrap();
        assert!(got.iter().all(|d| d.tx <= TX0 + 3) && !got.is_empty());
        assert_eq!(s.reached().0, Some(TX0 + 3));
    }

    #[test]
    fn broken_chains_are_refused_before_any_datom_and_named_by_verify() {
        let (mem, store, ids, _) = setup();
        let verify =
            |id: &str| crate::ops::verify::verify(store.as_ref(), "db", id, false, None).unwrap();
        let good = verify(&ids[2]);
        assert!(good.success(), "{good:?}");
        assert_eq!(good.chain, ids[..3]);
        // A missing chunk in the base: the restore's open fails, naming it.
        let chunk = layout::chunk_key("db", &ids[0], 1);
        let bytes = mem.get(&chunk).unwrap();
        mem.delete(&chunk).unwrap();
        let err = RestoreSession::open(store.clone(), opts(&ids[2]))
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert!(err.message.contains("chunk 1 is missing"), "{err}");
        let bad = verify(&ids[2]);
        assert!(
            bad.problems
                .iter()
                .any(|p| p.contains(&format!("link {}: chunk 1 is missing", ids[0]))),
            "{bad:?}"
        );
        mem.put(&chunk, &bytes).unwrap();
        // An edited parent: its basis moved, so the next link no longer continues it.
        let key = layout::backup_file("db", &ids[1], layout::MANIFEST);
        let original = mem.get(&key).unwrap();
        let mut m = manifest(&mem, &ids[1]);
        m.max_tx -= 1;
        write_edn(&mem, &key, &m.to_value()).unwrap();
        let err = RestoreSession::open(store.clone(), opts(&ids[2]))
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        let want = format!(
            "broken chain: backup {} covers the transactions after 536870932 but its parent {} ends at 536870931",
            ids[2], ids[1]
        );
        assert!(err.message.contains(&want), "{err}");
        assert!(verify(&ids[2]).problems.iter().any(|p| p.contains(&want)));
        mem.put(&key, &original).unwrap();
        // A deleted link: missing, named.
        let link = layout::backup_prefix("db", &ids[1]);
        let saved: Vec<(String, Vec<u8>)> = mem
            .list(&link)
            .unwrap()
            .into_iter()
            .map(|o| (o.key.clone(), mem.get(&o.key).unwrap()))
            .collect();
        mem.delete_prefix(&link).unwrap();
        let err = RestoreSession::open(store.clone(), opts(&ids[3]))
            .err()
            .unwrap();
        assert!(
            err.message
                .contains(&format!("backup {}'s parent {} is missing", ids[2], ids[1])),
            "{err}"
        );
        assert_eq!(err.key.as_deref(), Some(store.location(&link).as_str()));
        let v = verify(&ids[3]);
        assert!(!v.success() && v.problems.iter().any(|p| p.contains("is missing")));
        // Its manifest gone but its files there: incomplete, named.
        for (k, b) in &saved {
            mem.put(k, b).unwrap();
        }
        mem.delete(&layout::backup_file("db", &ids[1], layout::MANIFEST))
            .unwrap();
        let err = RestoreSession::open(store.clone(), opts(&ids[2]))
            .err()
            .unwrap();
        assert!(err.message.contains("is incomplete"), "{err}");
        // The base alone still restores.
        assert!(testing::restore(&store, "db", &ids[0]).is_ok());
    }
}
