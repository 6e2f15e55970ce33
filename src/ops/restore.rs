//! A restore session: a stored backup out, datoms in restore order, in columnar batches.
//!
//! Our backups are stored in restore order, so their chunks stream straight through:
//! `fetch_ahead` readers fetch and check (size and SHA-256) the chunks ahead, in order and
//! concurrently (so that a store with per-request latency, such as S3, is not read one
//! chunk at a time), and `parallel` workers decode them. Backups of the original implementation hold EAVT slices of the current db;
//! for them the chunks are read twice — once to learn the schema's ref attributes, once
//! through the bounded external sort of [`crate::pipeline::order`] — before datoms flow.
//! Memory: about `2 × parallel` decoded chunks, plus up to `fetch_ahead` stored (compressed)
//! chunks of at most [`super::restore_feed::FETCH_AHEAD_BYTES`] together; or the sort buffer for original backups.
//!
//! An incremental backup restores with its whole chain, and any backup to a point in time:
//! see [`super::restore_chain`], which builds the same session over the chain's links.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::chain::plan::Point;
use crate::codec::tagged::TAG_INST;
use crate::codec::wire::{AttrTable, Batch};
use crate::crypto::envelope::{self, KeySpec};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Name, Value};
use crate::options::Opts;
use crate::pipeline::chunk::DecodedChunk;
use crate::pipeline::order::{OrderSpec, RestoreOrder};
use crate::repo::layout;
use crate::repo::manifest::{ChunkOrder, Manifest};
use crate::repo::meta::{read_edn, read_edn_opt};
use crate::store::Store;

use super::check::{self, ContentCheck};
use super::restore_feed::{to_columns, Checked, ColumnChunk, Columns, Decoded, Discarded, Source};

/// The option keys a caller of a restore may pass (checked by
/// [`crate::options::check_keys`]; the Clojure API removes its own — `:batch-size`,
/// `:progress-fn`, `:load-timeout-ms` — first). A new option is one line here.
pub const KEYS: &[&str] = &[
    "database-id",
    "parallel",
    "fetch-ahead",
    "verify-first?",
    "sort-buffer-bytes",
    "tmp-dir",
    "as-of-tx",
    "as-of-time",
    "latest?",
    "encryption",
];

/// Validated restore options.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The database id.
    pub database_id: String,
    /// The backup id.
    pub backup_id: String,
    /// Chunks decoded ahead, concurrently.
    pub parallel: usize,
    /// Chunks fetched ahead, concurrently (reads in flight; at most [`super::restore_feed::FETCH_AHEAD_BYTES`]
    /// of stored bytes waiting).
    pub fetch_ahead: usize,
    /// Check every chunk's size and SHA-256 before the first datom is handed out.
    pub verify_first: bool,
    /// Datoms per batch handed to the JVM.
    pub batch_datoms: usize,
    /// Sort buffer for backups that need re-ordering (the original's).
    pub sort_buffer_bytes: usize,
    /// Where sorted runs spill.
    pub tmp_dir: Option<PathBuf>,
    /// Restore to right after this transaction (a prefix of the chain).
    pub as_of_tx: Option<i64>,
    /// Restore to right after the last transaction whose `:db/txInstant` (epoch ms) is at
    /// or before this.
    pub as_of_time_ms: Option<i64>,
    /// The key of an encrypted backup (`:encryption`).
    pub encryption: Option<KeySpec>,
    /// Restore the newest state captured (`:latest? true`): the furthest end of the
    /// database's intact chains — of the chain holding `backup_id` when one is given —
    /// logs of continuous backup included ([`crate::log::tip::latest`]).
    pub latest: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            database_id: String::new(),
            backup_id: String::new(),
            parallel: 2,
            fetch_ahead: 32,
            verify_first: false,
            batch_datoms: 8192,
            sort_buffer_bytes: 64 << 20,
            tmp_dir: None,
            as_of_tx: None,
            as_of_time_ms: None,
            encryption: None,
            latest: false,
        }
    }
}

impl RestoreOptions {
    /// Parse the options map sent by the Clojure wrapper (defaults: [`Default`]).
    pub fn from_edn(v: &Value) -> Result<Self> {
        let o = Opts::new(v, "open restore")?;
        let d = RestoreOptions::default();
        let database_id = o.required_string("database-id")?.to_owned();
        layout::check_segment("database-id", &database_id)?;
        let latest = o.bool("latest?", false)?;
        let backup_id = match o.string("backup-id")? {
            None if latest => String::new(),
            _ => o.required_string("backup-id")?.to_owned(),
        };
        if !backup_id.is_empty() {
            layout::check_segment("backup-id", &backup_id)?;
        }
        Ok(RestoreOptions {
            database_id,
            backup_id,
            parallel: o.long_in("parallel", d.parallel as i64, 1, 64)? as usize,
            fetch_ahead: o.long_in("fetch-ahead", d.fetch_ahead as i64, 1, 256)? as usize,
            verify_first: o.bool("verify-first?", d.verify_first)?,
            batch_datoms: o.long_in("batch-datoms", d.batch_datoms as i64, 1, 1 << 24)? as usize,
            sort_buffer_bytes: o.long_in(
                "sort-buffer-bytes",
                d.sort_buffer_bytes as i64,
                1 << 16,
                1 << 40,
            )? as usize,
            tmp_dir: o.string("tmp-dir")?.map(PathBuf::from),
            encryption: KeySpec::from_options(v, "open restore")?,
            latest,
            as_of_tx: o.long("as-of-tx")?,
            as_of_time_ms: match o.get("as-of-time") {
                None => None,
                Some(Value::Inst(ms)) => Some(*ms),
                Some(other) => {
                    return Err(Error::invalid(
                        "open restore",
                        format!(":as-of-time must be an instant, got {other:?}"),
                    ))
                }
            },
        })
        .and_then(|r| {
            if r.as_of_tx.is_some() && r.as_of_time_ms.is_some() {
                return Err(Error::invalid(
                    "open restore",
                    "give :as-of-tx or :as-of-time, not both",
                ));
            }
            Ok(r)
        })
    }

    /// The point the options ask for.
    pub fn point(&self) -> crate::chain::plan::Point {
        use crate::chain::plan::Point;
        match (self.as_of_tx, self.as_of_time_ms) {
            (Some(t), _) => Point::Tx(t),
            (None, Some(ms)) => Point::Time(ms),
            (None, None) => Point::Latest,
        }
    }
}

/// The chunks of a restore as column batches, in restore order.
pub(super) type ChunkSource = Box<dyn Iterator<Item = Result<ColumnChunk>> + Send>;

/// Given datoms in restore order (the external sort's output for EAVT backups), return them
/// as column chunks of `batch_datoms` datoms, each named chunk `id`.
fn columns_of(
    mut datoms: impl Iterator<Item = Result<Datom>> + Send + 'static,
    id: u64,
    batch_datoms: usize,
) -> ChunkSource {
    Box::new(std::iter::from_fn(move || {
        let mut piece = Vec::with_capacity(batch_datoms.min(1 << 16));
        for d in datoms.by_ref() {
            match d {
                Ok(d) => piece.push(d),
                Err(e) => return Some(Err(e)),
            }
            if piece.len() >= batch_datoms {
                break;
            }
        }
        (!piece.is_empty()).then(|| to_columns(id, piece, batch_datoms, None))
    }))
}

/// Learn the ref attributes of an EAVT backup from its schema datoms (first pass).
fn schema_spec(chunks: impl Iterator<Item = Result<DecodedChunk>>) -> Result<OrderSpec> {
    let ident = Attr::Keyword(Name::new(Some("db"), "ident"));
    let value_type = Attr::Keyword(Name::new(Some("db"), "valueType"));
    let mut idents: HashMap<i64, Name> = HashMap::new();
    let mut ref_eids: HashSet<i64> = HashSet::new();
    for c in chunks {
        for d in c?.datoms {
            match (&d.a, &d.v) {
                (a, Value::Keyword(n)) if *a == ident => {
                    idents.insert(d.e, n.clone());
                }
                (a, Value::Keyword(n)) if *a == value_type && n.to_string() == "db.type/ref" => {
                    ref_eids.insert(d.e);
                }
                _ => {}
            }
        }
    }
    let ref_attrs = ref_eids
        .iter()
        .filter_map(|e| idents.get(e).map(|n| Attr::Keyword(n.clone())))
        .collect();
    Ok(OrderSpec {
        ref_attrs,
        tx_instant: Some(Attr::Keyword(Name::new(Some("db"), "txInstant"))),
        skip_tx0: true,
    })
}

/// What a restore session says about its backup before the first datom.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreInfo {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// The source database's configuration as `config.edn` records it (`Nil` if unknown).
    pub datahike_config: Value,
    /// For a chain or a point-in-time restore: the links and the reading plan.
    pub chain: Option<super::restore_chain::ChainInfo>,
}

/// An open restore: hands out the backup's datoms in restore order, batch by batch.
///
/// The batches come ready from the workers ([`ColumnChunk`]); the session renumbers their
/// attributes into its own table (whose new entries each batch carries) and notes where
/// the stream got to.
pub struct RestoreSession {
    info: RestoreInfo,
    source: ChunkSource,
    /// The chunk being handed out.
    current: Option<Current>,
    attrs: AttrTable,
    done: u64,
    last_chunk: Option<u64>,
    finished: bool,
    /// The `:db/txInstant` attribute, to report the instant restored to.
    tx_instant: Option<Attr>,
    /// The last transaction handed out, and its `:db/txInstant` when seen.
    reached: (Option<i64>, Option<i64>),
}

/// The chunk a session is handing out.
struct Current {
    id: u64,
    batches: std::vec::IntoIter<Batch>,
    /// Session attribute id by chunk attribute id.
    ids: Vec<i32>,
    /// The session id of `:db/txInstant`, if the chunk uses it.
    tx_instant: Option<i32>,
    cut: bool,
}

impl RestoreSession {
    /// Assemble a session over a chunk source (the chain restore builds its own).
    pub(super) fn from_source(
        info: RestoreInfo,
        source: ChunkSource,
        tx_instant: Option<Attr>,
    ) -> Self {
        RestoreSession {
            info,
            source,
            current: None,
            attrs: AttrTable::default(),
            done: 0,
            last_chunk: None,
            finished: false,
            tx_instant,
            reached: (None, None),
        }
    }

    /// The last transaction handed out so far and its `:db/txInstant` (epoch ms), when the
    /// stream carried it: at the end, the point the restore reached.
    pub fn reached(&self) -> (Option<i64>, Option<i64>) {
        self.reached
    }
    /// Given a store and options, read and check the backup's metadata and start streaming.
    ///
    /// Refuses (`NotFound`) a backup that does not exist, (`Conflict`) one that is
    /// incomplete, and (`Corrupt`, or `Unsupported` for a type, format or compression this
    /// version does not read) one whose manifest fails [`Manifest::validate`] or whose
    /// chunks are missing or of the wrong size. With `verify_first`, every chunk is also
    /// read, checked, decoded and checked against the manifest ([`ContentCheck`]) before any
    /// datom is handed out, so a damaged backup leaves the target untouched. Backups of the
    /// original implementation are read whole (and so checked) before the first datom in
    /// any case. Chunks are checked again as they stream.
    pub fn open(store: Arc<dyn Store>, mut opts: RestoreOptions) -> Result<Self> {
        if opts.latest {
            let within = (!opts.backup_id.is_empty()).then_some(opts.backup_id.as_str());
            opts.backup_id = crate::log::tip::latest(store.as_ref(), &opts.database_id, within)?.id;
        }
        let (db, id) = (&opts.database_id, &opts.backup_id);
        let manifest_key = layout::backup_file(db, id, layout::MANIFEST);
        let manifest = match read_edn(store.as_ref(), &manifest_key) {
            Ok(v) => {
                Manifest::from_value(&v).map_err(|e| e.with_key(store.location(&manifest_key)))?
            }
            Err(e)
                if e.kind == ErrorKind::NotFound
                    && (opts.point() != Point::Latest
                        || crate::log::read::is_log(store.as_ref(), db, id)?) =>
            {
                // A point in time (the chain tells what is missing), or a log.
                return super::restore_chain::open(store, opts);
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                let exists = !store.list(&layout::backup_prefix(db, id))?.is_empty();
                return Err(if exists {
                    Error::new(
                        ErrorKind::Conflict,
                        "restore",
                        format!("backup {id} is incomplete (no manifest)"),
                    )
                    .with_hint("resume or remove it; restore only complete backups")
                } else {
                    Error::new(
                        ErrorKind::NotFound,
                        "restore",
                        format!("no backup {id} for database {db}"),
                    )
                }
                .with_key(store.location(&layout::backup_prefix(db, id))));
            }
            Err(e) => return Err(e),
        };
        if manifest.backup_type != "full" || opts.point() != Point::Latest {
            return super::restore_chain::open(store, opts);
        }
        let marker = layout::backup_file(db, id, layout::COMPLETE_MARKER);
        if !manifest.completed || store.size(&marker)?.is_none() {
            return Err(Error::new(
                ErrorKind::Conflict,
                "restore",
                format!("backup {id} is incomplete"),
            )
            .with_key(store.location(&marker)));
        }
        manifest
            .check(db, id)
            .map_err(|e| e.with_key(store.location(&manifest_key)))?;
        // The key before anything else is read: a wrong or missing one stops here.
        let cipher = envelope::resolve(
            manifest.encryption.as_ref(),
            opts.encryption.as_ref(),
            db,
            id,
        )?;
        let config = read_edn_opt(store.as_ref(), &layout::backup_file(db, id, layout::CONFIG))?
            .map(|c| envelope::open_config(c, cipher.as_deref()))
            .transpose()?;
        let prefix = layout::backup_prefix(db, id);
        let chunks = Arc::new(manifest.chunks.clone());
        // The cheap check (one listing): missing or truncated chunks stop the restore before
        // anything is loaded, judged exactly as verify judges them (not a request per chunk).
        let listing = store.list(&format!("{prefix}chunks/"))?;
        for p in check::present(store.as_ref(), &prefix, &chunks, &listing) {
            p.into_result()?;
        }
        let extra = check::unlisted(&prefix, &chunks, &listing);
        if !extra.is_empty() {
            return Err(check::unlisted_error(&extra, store.location(&prefix)));
        }
        // One reading of the chunks, gathered by the workers as the caller needs them.
        let check = || ContentCheck::new(&manifest, config.as_ref());
        let src = || Source {
            store: store.clone(),
            prefix: prefix.clone(),
            chunks: chunks.clone(),
            cipher: cipher.clone(),
            rules: check().rules(),
        };
        let (parallel, ahead) = (opts.parallel, opts.fetch_ahead);
        let source: ChunkSource = match manifest.order {
            ChunkOrder::Restore => {
                if opts.verify_first {
                    // Every chunk read, checked and decoded before the first datom.
                    for c in Checked::start(src(), check(), parallel, ahead, Discarded) {
                        c?;
                    }
                }
                let gather = Columns {
                    batch_datoms: opts.batch_datoms,
                    through: None,
                };
                Box::new(Checked::start(src(), check(), parallel, ahead, gather))
            }
            ChunkOrder::Eavt => {
                // Both passes read every chunk before the first datom is handed out.
                let spec = schema_spec(Checked::start(src(), check(), parallel, ahead, Decoded))?;
                let tmp = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
                let mut order = RestoreOrder::new(spec, &tmp, opts.sort_buffer_bytes)?;
                for c in Checked::start(src(), check(), parallel, ahead, Decoded) {
                    for d in c?.datoms {
                        order.push(d)?;
                    }
                }
                let last = manifest.chunks.len().saturating_sub(1) as u64;
                columns_of(order.finish()?, last, opts.batch_datoms)
            }
        };
        let tx_instant =
            super::restore_chain::tx_instant_attr(config.as_ref().unwrap_or(&Value::Nil));
        Ok(Self::from_source(
            RestoreInfo {
                datahike_config: config
                    .as_ref()
                    .and_then(|c| c.get("datahike/config"))
                    .cloned()
                    .unwrap_or(Value::Nil),
                manifest,
                chain: None,
            },
            source,
            Some(tx_instant),
        ))
    }

    /// What the backup says about itself (manifest facts and the source's configuration).
    pub fn info(&self) -> &RestoreInfo {
        &self.info
    }

    /// Datoms handed out so far.
    pub fn datoms_done(&self) -> u64 {
        self.done
    }

    /// The chunk the last datom handed out came from.
    pub fn last_chunk(&self) -> Option<u64> {
        self.last_chunk
    }

    /// Every datom still to come, decoded from the batches (what the JVM would be handed,
    /// as datoms: for tools and tests; the session is at its end afterwards).
    pub fn read_to_end(&mut self) -> Result<Vec<Datom>> {
        let (mut out, mut attrs) = (Vec::new(), Vec::new());
        while let Some(batch) = self.next_batch()? {
            crate::codec::wire::decode_attrs(&batch.new_attrs, &mut attrs)?;
            crate::codec::wire::decode_batch(&batch.columns(), &attrs, &mut out)?;
        }
        Ok(out)
    }

    /// Return the next batch of datoms (up to the session's batch size, never across
    /// chunks), or `None` at the end. tx0 system datoms are never handed out.
    pub fn next_batch(&mut self) -> Result<Option<Batch>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            if let Some(cur) = &mut self.current {
                if let Some(mut b) = cur.batches.next() {
                    let id = cur.id;
                    let inst = cur.tx_instant;
                    for a in &mut b.a {
                        *a = cur.ids[*a as usize];
                    }
                    b.new_attrs = self.attrs.take_new();
                    self.note(id, &b, inst);
                    return Ok(Some(b));
                }
                self.finished = cur.cut;
                self.current = None;
                continue;
            }
            match self.source.next() {
                None => self.finished = true,
                Some(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                Some(Ok(c)) => {
                    let ids = c
                        .attrs
                        .iter()
                        .map(|a| self.attrs.id(a))
                        .collect::<Result<Vec<_>>>()?;
                    let tx_instant = self
                        .tx_instant
                        .as_ref()
                        .and_then(|t| c.attrs.iter().position(|a| a == t))
                        .map(|i| ids[i]);
                    self.current = Some(Current {
                        id: c.id,
                        batches: c.batches.into_iter(),
                        ids,
                        tx_instant,
                        cut: c.cut,
                    });
                }
            }
        }
    }

    /// Note batch `b` of chunk `id` as handed out: the datoms done, and the last
    /// transaction with its `:db/txInstant` (`inst_id`: that attribute's session id).
    fn note(&mut self, id: u64, b: &Batch, inst_id: Option<i32>) {
        self.done += b.len() as u64;
        self.last_chunk = Some(id);
        let Some(&last) = b.tx.last() else { return };
        let mut instant = if self.reached.0 == Some(last) {
            self.reached.1
        } else {
            None
        };
        for i in (0..b.len()).rev() {
            if b.tx[i] != last {
                break;
            }
            if Some(b.a[i]) == inst_id
                && b.e[i] == last
                && b.added[i] == 1
                && b.vtag[i] == TAG_INST as i8
            {
                instant = Some(b.vnum[i]);
                break;
            }
        }
        self.reached = (Some(last), instant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{self, history};
    use crate::repo::layout;

    #[test]
    fn a_backup_restores_in_the_stored_order() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 700, 25), &history(25));
        let restored = testing::restore(&store, "db", &r.manifest.backup_id).unwrap();
        assert_eq!(restored, testing::stored_datoms(&mem, &r));
    }

    #[test]
    fn missing_incomplete_and_damaged_backups_are_refused_before_any_datom() {
        let (mem, store) = testing::store();
        assert_eq!(
            testing::restore(&store, "db", "nope").unwrap_err().kind,
            ErrorKind::NotFound
        );
        let r = testing::backup(&store, testing::options("db", 700, 25), &history(25));
        let id = r.manifest.backup_id.clone();
        let chunk = layout::chunk_key("db", &id, 2);
        let good = mem.get(&chunk).unwrap();
        mem.put(&chunk, &good[..good.len() - 3]).unwrap();
        let err = RestoreSession::open(
            store.clone(),
            RestoreOptions {
                database_id: "db".into(),
                backup_id: id.clone(),
                ..RestoreOptions::default()
            },
        )
        .err()
        .unwrap();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert!(err.message.contains("chunk 2 has"), "{err}");
        let mut flipped = good.clone();
        flipped[30] ^= 0x40;
        mem.put(&chunk, &flipped).unwrap();
        let err = RestoreSession::open(
            store.clone(),
            RestoreOptions {
                database_id: "db".into(),
                backup_id: id.clone(),
                verify_first: true,
                ..RestoreOptions::default()
            },
        )
        .err()
        .unwrap();
        assert!(err.message.contains("chunk 2 fails its SHA-256"), "{err}");
        mem.put(&chunk, &good).unwrap();
        mem.delete(&layout::backup_file("db", &id, layout::COMPLETE_MARKER))
            .unwrap();
        assert_eq!(
            testing::restore(&store, "db", &id).unwrap_err().kind,
            ErrorKind::Conflict
        );
    }

    /// Replace chunk `n` of backup `id` by `bytes` and make the manifest agree (size and
    /// checksum), as someone who can write the backup can.
    fn replace_chunk(mem: &crate::store::memory::MemoryStore, id: &str, n: usize, bytes: &[u8]) {
        let mkey = layout::backup_file("db", id, layout::MANIFEST);
        let mut m = Manifest::from_value(&read_edn(mem, &mkey).unwrap()).unwrap();
        let old = m.chunks[n].size_bytes;
        m.chunks[n].size_bytes = bytes.len() as u64;
        m.chunks[n].checksum = crate::pipeline::chunk::sha256_hex(bytes);
        m.size_bytes = m.size_bytes - old + bytes.len() as u64;
        crate::repo::meta::write_edn(mem, &mkey, &m.to_value()).unwrap();
        mem.put(&layout::chunk_key("db", id, n as u64), bytes)
            .unwrap();
    }

    #[test]
    fn verify_first_decodes_so_a_late_undecodable_chunk_stops_the_restore_before_any_datom() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 700, 25), &history(25));
        let id = r.manifest.backup_id.clone();
        let last = r.manifest.chunks.len() - 1;
        replace_chunk(
            &mem,
            &id,
            last,
            &crate::pipeline::chunk::gzip(b"not fressian", 6).unwrap(),
        );
        let open = |verify_first| {
            RestoreSession::open(
                store.clone(),
                RestoreOptions {
                    database_id: "db".into(),
                    backup_id: id.clone(),
                    verify_first,
                    ..RestoreOptions::default()
                },
            )
        };
        let err = open(true).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert!(
            err.message
                .contains(&format!("chunk {last} does not decode")),
            "{err}"
        );
        // Without verify-first the damage surfaces while streaming, after datoms went out.
        let mut s = open(false).unwrap();
        let mut failed = None;
        for _ in 0..1000 {
            match s.next_batch() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        assert!(failed.is_some());
        assert!(s.datoms_done() > 0);
    }

    #[test]
    fn a_manifest_that_fails_validation_is_refused_before_any_datom() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 700, 25), &history(25));
        let id = r.manifest.backup_id.clone();
        let mkey = layout::backup_file("db", &id, layout::MANIFEST);
        let good = read_edn(&mem, &mkey).unwrap();
        let mut cases: Vec<(Manifest, ErrorKind)> = Vec::new();
        let m = Manifest::from_value(&good).unwrap();
        let mut swapped = m.clone();
        swapped.chunks.swap(0, 1);
        cases.push((swapped, ErrorKind::Corrupt));
        let mut other = m.clone();
        other.backup_id = "../../evil".into();
        cases.push((other, ErrorKind::Corrupt));
        let mut unknown = m.clone();
        unknown.backup_type = "differential".into();
        cases.push((unknown, ErrorKind::Unsupported));
        for (bad, kind) in cases {
            crate::repo::meta::write_edn(&mem, &mkey, &bad.to_value()).unwrap();
            let err = testing::restore(&store, "db", &id).unwrap_err();
            assert_eq!(err.kind, kind, "{err}");
        }
    }
}

#[cfg(test)]
mod fetch_tests {
    use super::*;
    use crate::ops::testing::{self, history};
    use crate::store::memory::MemoryStore;
    use crate::store::ObjectMeta;
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// A memory store that counts size requests for chunks and holds the chunk reads until
    /// `gate` of them are in flight at once (or a deadline passes), recording the most seen.
    struct Gated {
        inner: MemoryStore,
        gate: usize,
        in_flight: Mutex<usize>,
        arrived: Condvar,
        most: Mutex<usize>,
        sizes: Mutex<usize>,
    }

    impl Store for Gated {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>> {
            if key.contains("/chunks/") {
                let mut n = self.in_flight.lock().unwrap();
                *n += 1;
                let mut most = self.most.lock().unwrap();
                *most = (*most).max(*n);
                drop(most);
                self.arrived.notify_all();
                let deadline = Instant::now() + Duration::from_secs(2);
                while *n < self.gate
                    && *self.most.lock().unwrap() < self.gate
                    && Instant::now() < deadline
                {
                    n = self
                        .arrived
                        .wait_timeout(n, Duration::from_millis(50))
                        .unwrap()
                        .0;
                }
                *n -= 1;
            }
            self.inner.get(key)
        }
        fn get_max(&self, key: &str, max: u64) -> Result<Vec<u8>> {
            // As a backend that bounds its reads itself (no size request first).
            let bytes = self.get(key)?;
            assert!(bytes.len() as u64 <= max);
            Ok(bytes)
        }
        fn size(&self, key: &str) -> Result<Option<u64>> {
            if key.contains("/chunks/") {
                *self.sizes.lock().unwrap() += 1;
            }
            self.inner.size(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key)
        }
        fn location(&self, key: &str) -> String {
            self.inner.location(key)
        }
        fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
            self.inner.put_if_absent(key, bytes)
        }
    }

    #[test]
    fn chunks_are_fetched_concurrently_beyond_the_decoders_without_a_request_per_chunk_up_front() {
        let (mem, store) = testing::store();
        let r = testing::backup(&store, testing::options("db", 300, 40), &history(40));
        assert!(r.manifest.chunks.len() >= 12, "{}", r.manifest.chunks.len());
        for verify_first in [false, true] {
            let gated = Arc::new(Gated {
                inner: mem.clone(),
                gate: 6,
                in_flight: Mutex::new(0),
                arrived: Condvar::new(),
                most: Mutex::new(0),
                sizes: Mutex::new(0),
            });
            let opts = RestoreOptions {
                database_id: "db".into(),
                backup_id: r.manifest.backup_id.clone(),
                parallel: 1,
                fetch_ahead: 8,
                verify_first,
                ..RestoreOptions::default()
            };
            let mut session = RestoreSession::open(gated.clone(), opts).unwrap();
            let (mut attrs, mut out) = (Vec::new(), Vec::new());
            while let Some(batch) = session.next_batch().unwrap() {
                crate::codec::wire::decode_attrs(&batch.new_attrs, &mut attrs).unwrap();
                crate::codec::wire::decode_batch(&batch.columns(), &attrs, &mut out).unwrap();
            }
            assert_eq!(out, testing::stored_datoms(&mem, &r), "{verify_first}");
            assert_eq!(
                *gated.sizes.lock().unwrap(),
                0,
                "no request per chunk up front"
            );
            let most = *gated.most.lock().unwrap();
            assert!(
                (6..=8).contains(&most),
                "one decoder, yet {most} reads in flight (verify-first {verify_first})"
            );
        }
    }
}
