//! A restore session: a stored backup out, datoms in restore order, in columnar batches.
//!
//! Our backups are stored in restore order, so their chunks stream straight through: a
//! prefetcher reads, checks (size and SHA-256) and decodes up to `parallel` chunks ahead,
//! in order. Backups of the original implementation hold EAVT slices of the current db;
//! for them the chunks are read twice — once to learn the schema's ref attributes, once
//! through the bounded external sort of [`crate::pipeline::order`] — before datoms flow.
//! Memory: about `2 × parallel` decoded chunks, or the sort buffer for original backups.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver};

use crate::codec::wire::{Batch, BatchBuilder};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Name, Value, TX0};
use crate::options::Opts;
use crate::pipeline::chunk::DecodedChunk;
use crate::pipeline::order::{OrderSpec, RestoreOrder};
use crate::repo::layout;
use crate::repo::manifest::{ChunkMeta, ChunkOrder, Manifest};
use crate::repo::meta::{read_edn, read_edn_opt};
use crate::store::Store;

use super::check;

/// The option keys a caller of a restore may pass (checked by
/// [`crate::options::check_keys`]; the Clojure API removes its own — `:batch-size`,
/// `:progress-fn`, `:load-timeout-ms` — first). A new option is one line here.
pub const KEYS: &[&str] = &[
    "database-id",
    "parallel",
    "verify-first?",
    "sort-buffer-bytes",
    "tmp-dir",
];

/// Validated restore options.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The database id.
    pub database_id: String,
    /// The backup id.
    pub backup_id: String,
    /// Chunks fetched and decoded ahead, concurrently.
    pub parallel: usize,
    /// Check every chunk's size and SHA-256 before the first datom is handed out.
    pub verify_first: bool,
    /// Datoms per batch handed to the JVM.
    pub batch_datoms: usize,
    /// Sort buffer for backups that need re-ordering (the original's).
    pub sort_buffer_bytes: usize,
    /// Where sorted runs spill.
    pub tmp_dir: Option<PathBuf>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            database_id: String::new(),
            backup_id: String::new(),
            parallel: 2,
            verify_first: false,
            batch_datoms: 8192,
            sort_buffer_bytes: 64 << 20,
            tmp_dir: None,
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
        let backup_id = o.required_string("backup-id")?.to_owned();
        layout::check_segment("backup-id", &backup_id)?;
        Ok(RestoreOptions {
            database_id,
            backup_id,
            parallel: o.long_in("parallel", d.parallel as i64, 1, 64)? as usize,
            verify_first: o.bool("verify-first?", d.verify_first)?,
            batch_datoms: o.long_in("batch-datoms", d.batch_datoms as i64, 1, 1 << 24)? as usize,
            sort_buffer_bytes: o.long_in(
                "sort-buffer-bytes",
                d.sort_buffer_bytes as i64,
                1 << 16,
                1 << 40,
            )? as usize,
            tmp_dir: o.string("tmp-dir")?.map(PathBuf::from),
        })
    }
}

/// Reads chunks ahead on worker threads and yields them in chunk order.
///
/// Worker `k` handles chunks `k, k + parallel, …` and hands each over through its own
/// one-slot channel, so at most `2 × parallel` decoded chunks exist at once.
struct Prefetch {
    receivers: Vec<Receiver<Result<DecodedChunk>>>,
    next: usize,
    count: usize,
    stop: Arc<AtomicBool>,
}

impl Prefetch {
    fn start(
        store: Arc<dyn Store>,
        prefix: String,
        chunks: Arc<Vec<ChunkMeta>>,
        parallel: usize,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(parallel);
        for k in 0..parallel.max(1) {
            let (tx, rx) = bounded(1);
            receivers.push(rx);
            let (store, prefix, chunks, stop) =
                (store.clone(), prefix.clone(), chunks.clone(), stop.clone());
            thread::spawn(move || {
                for i in (k..chunks.len()).step_by(parallel.max(1)) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = check::fetch_checked(store.as_ref(), &prefix, &chunks[i]);
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            });
        }
        Prefetch {
            count: chunks.len(),
            receivers,
            next: 0,
            stop,
        }
    }
}

impl Iterator for Prefetch {
    type Item = Result<DecodedChunk>;

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

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The datoms of a backup in restore order, with the chunk each came from.
type DatomSource = Box<dyn Iterator<Item = Result<(u64, Datom)>> + Send>;

fn streamed(prefetch: Prefetch) -> DatomSource {
    Box::new(prefetch.flat_map(
        |r| -> Box<dyn Iterator<Item = Result<(u64, Datom)>> + Send> {
            match r {
                Ok(c) => {
                    let id = c.id as u64;
                    Box::new(c.datoms.into_iter().map(move |d| Ok((id, d))))
                }
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        },
    ))
}

/// Learn the ref attributes of an EAVT backup from its schema datoms (first pass).
fn schema_spec(chunks: Prefetch) -> Result<OrderSpec> {
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
}

/// An open restore: hands out the backup's datoms in restore order, batch by batch.
pub struct RestoreSession {
    info: RestoreInfo,
    source: DatomSource,
    builder: BatchBuilder,
    batch_datoms: usize,
    done: u64,
    last_chunk: Option<u64>,
    finished: bool,
}

impl RestoreSession {
    /// Given a store and options, read and check the backup's metadata and start streaming.
    ///
    /// Refuses (`NotFound`) a backup that does not exist and (`Conflict`) one that is
    /// incomplete; with `verify_first`, fails (`Corrupt`, naming the chunk) before any datom
    /// is handed out if a chunk is missing, truncated or fails its checksum.
    pub fn open(store: Arc<dyn Store>, opts: RestoreOptions) -> Result<Self> {
        let (db, id) = (&opts.database_id, &opts.backup_id);
        let manifest_key = layout::backup_file(db, id, layout::MANIFEST);
        let manifest = match read_edn(store.as_ref(), &manifest_key) {
            Ok(v) => Manifest::from_value(&v)?,
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
        let marker = layout::backup_file(db, id, layout::COMPLETE_MARKER);
        if !manifest.completed || store.size(&marker)?.is_none() {
            return Err(Error::new(
                ErrorKind::Conflict,
                "restore",
                format!("backup {id} is incomplete"),
            )
            .with_key(store.location(&marker)));
        }
        let config = read_edn_opt(store.as_ref(), &layout::backup_file(db, id, layout::CONFIG))?;
        let prefix = layout::backup_prefix(db, id);
        let chunks = Arc::new(manifest.chunks.clone());
        if opts.verify_first {
            // Every chunk's size and SHA-256 before the first datom is handed out.
            for meta in chunks.iter() {
                check::fetch_stored(store.as_ref(), &prefix, meta)?;
            }
        } else {
            // The cheap check (a stat / HEAD per chunk): missing or truncated chunks stop the
            // restore before anything is loaded; checksums are checked as chunks stream.
            for meta in chunks.iter() {
                let key = layout::chunk_in(&prefix, meta);
                match store.size(&key)? {
                    None => return Err(check::missing(meta, store.location(&key))),
                    Some(n) => check::check_size(meta, n, || store.location(&key))?,
                }
            }
        }
        let prefetch =
            || Prefetch::start(store.clone(), prefix.clone(), chunks.clone(), opts.parallel);
        let source = match manifest.order {
            ChunkOrder::Restore => streamed(prefetch()),
            ChunkOrder::Eavt => {
                let spec = schema_spec(prefetch())?;
                let tmp = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
                let mut order = RestoreOrder::new(spec, &tmp, opts.sort_buffer_bytes)?;
                for c in prefetch() {
                    for d in c?.datoms {
                        order.push(d)?;
                    }
                }
                let last = manifest.chunks.len().saturating_sub(1) as u64;
                Box::new(order.finish()?.map(move |r| r.map(|d| (last, d))))
            }
        };
        Ok(RestoreSession {
            info: RestoreInfo {
                datahike_config: config
                    .as_ref()
                    .and_then(|c| c.get("datahike/config"))
                    .cloned()
                    .unwrap_or(Value::Nil),
                manifest,
            },
            source,
            builder: BatchBuilder::new(),
            batch_datoms: opts.batch_datoms,
            done: 0,
            last_chunk: None,
            finished: false,
        })
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

    /// Return the next batch of datoms (up to `batch_datoms`), or `None` at the end.
    /// tx0 system datoms are never handed out.
    pub fn next_batch(&mut self) -> Result<Option<Batch>> {
        if self.finished {
            return Ok(None);
        }
        while self.builder.len() < self.batch_datoms {
            match self.source.next() {
                None => {
                    self.finished = true;
                    break;
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                Some(Ok((chunk_id, d))) => {
                    self.last_chunk = Some(chunk_id);
                    if d.tx == TX0 {
                        continue;
                    }
                    self.builder.push(&d)?;
                    self.done += 1;
                }
            }
        }
        Ok((!self.builder.is_empty()).then(|| self.builder.flush()))
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
}
