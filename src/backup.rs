//! A full backup session: datoms in (EAVT, from the JVM), a complete backup out.
//!
//! ```text
//! push (EAVT batches) ──► RestoreOrder (external sort, spills to tmp) ──finish──►
//!   ChunkEncoder (cut on encoded size) ──► `parallel` workers: gzip + SHA-256 + Store::put
//!   ──► manifest.edn (commit point) ──► complete.marker
//! ```
//! `config.edn` and `checkpoint.edn` are written when the session opens, so an interrupted
//! backup lists as incomplete. Memory: the sort buffer plus `parallel + 1` chunks.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::bounded;

use crate::checkpoint::{Checkpoint, Phase};
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;
use crate::feed::Feed;
use crate::format::chunk::{self, ChunkEncoder, EncodedChunk};
use crate::format::edn;
use crate::layout;
use crate::lock::ResumeLock;
use crate::manifest::{ChunkMeta, ChunkOrder, Manifest};
use crate::model::{kw_map, Attr, Datom, Value};
use crate::options::Opts;
use crate::order::{OrderSpec, RestoreOrder};
use crate::store::Store;
use crate::wire::Batch;

/// Default `:chunk-size`: 8 MiB of encoded Fressian per chunk.
pub const DEFAULT_CHUNK_SIZE: i64 = 8 << 20;
/// Default `:sort-buffer-bytes`: 64 MiB of datoms sorted in memory before a run spills.
pub const DEFAULT_SORT_BUFFER: i64 = 64 << 20;

/// Everything a backup needs to know, validated.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The database id (a single safe path segment).
    pub database_id: String,
    /// The backup id; a time-ordered UUID (v7) when not given.
    pub backup_id: Option<String>,
    /// Maximum encoded (uncompressed) bytes per chunk.
    pub chunk_size: usize,
    /// Gzip level, 0–9.
    pub compression_level: u32,
    /// Chunks compressed and stored concurrently.
    pub parallel: usize,
    /// Whether the datoms include history (retractions and retracted values).
    pub history: bool,
    /// Bytes of datoms sorted in memory before a sorted run is spilled to `tmp_dir`.
    pub sort_buffer_bytes: usize,
    /// Where sorted runs spill (the system temp dir when `None`).
    pub tmp_dir: Option<PathBuf>,
    /// How to order datoms for restore (ref attributes, the txInstant attribute, tx0).
    pub order: OrderSpec,
    /// The source db's `:max-eid`.
    pub max_eid: i64,
    /// The source db's `:max-tx`.
    pub max_tx: i64,
    /// The source's Datahike version, if known.
    pub datahike_version: Option<String>,
    /// The source db's configuration (written to `config.edn`).
    pub db_config: Value,
    /// The source database's `:datahike/id` (from its meta), if known.
    pub datahike_id: Option<String>,
    /// Continue the interrupted backup `backup_id` instead of starting a new one.
    pub resume: bool,
    /// When resuming, take over a resume lock even if its lease is still live.
    pub break_lock: bool,
    /// The resume lock's lease (renewed by a heartbeat every third of it).
    pub lock_lease: std::time::Duration,
}

fn attr_of(v: &Value) -> Result<Attr> {
    match v {
        Value::Keyword(n) => Ok(Attr::Keyword(n.clone())),
        Value::Long(id) => Ok(Attr::Id(*id)),
        other => Err(Error::invalid(
            "open backup",
            format!("an attribute must be a keyword or an id, got {other:?}"),
        )),
    }
}

impl BackupOptions {
    /// Parse the options map sent by the Clojure wrapper (see the README for each key).
    pub fn from_edn(v: &Value) -> Result<Self> {
        let o = Opts::new(v, "open backup")?;
        let database_id = o.required_string("database-id")?.to_owned();
        layout::check_segment("database-id", &database_id)?;
        let backup_id = o.string("backup-id")?.map(String::from);
        if let Some(id) = &backup_id {
            layout::check_segment("backup-id", id)?;
        }
        let compression = o.keyword("compression", "gzip")?;
        if compression != "gzip" {
            return Err(Error::invalid(
                "open backup",
                format!(":compression {compression} is not supported (use :gzip)"),
            ));
        }
        let ref_attrs = o
            .seq("ref-attrs")?
            .iter()
            .map(attr_of)
            .collect::<Result<HashSet<_>>>()?;
        let tx_instant = o.get("tx-instant-attr").map(attr_of).transpose()?;
        Ok(BackupOptions {
            database_id,
            backup_id,
            chunk_size: o.long_in("chunk-size", DEFAULT_CHUNK_SIZE, 1, 1 << 31)? as usize,
            compression_level: o.long_in("compression-level", 6, 0, 9)? as u32,
            parallel: o.long_in("parallel", 2, 1, 64)? as usize,
            history: o.bool("history?", true)?,
            sort_buffer_bytes: o.long_in(
                "sort-buffer-bytes",
                DEFAULT_SORT_BUFFER,
                1 << 16,
                1 << 40,
            )? as usize,
            tmp_dir: o.string("tmp-dir")?.map(PathBuf::from),
            order: OrderSpec {
                ref_attrs,
                tx_instant,
                skip_tx0: o.bool("skip-tx0?", false)?,
            },
            max_eid: o.long("max-eid")?.unwrap_or(0),
            max_tx: o.long("max-tx")?.unwrap_or(0),
            datahike_version: o.string("datahike-version")?.map(String::from),
            db_config: o.get("db-config").cloned().unwrap_or(Value::Nil),
            datahike_id: o.string("datahike-id")?.map(String::from),
            resume: o.bool("resume?", false)?,
            break_lock: o.bool("break-lock?", false)?,
            lock_lease: std::time::Duration::from_millis(o.long_in(
                "lock-lease-ms",
                60_000,
                1_000,
                86_400_000,
            )? as u64),
        })
    }
}

/// What a completed backup reports.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupResult {
    /// The manifest that was committed.
    pub manifest: Manifest,
    /// Where the backup lives (directory path or URL).
    pub location: String,
    /// Encoded bytes before compression.
    pub uncompressed_bytes: u64,
    /// Datoms left out because they are tx0 system datoms.
    pub skipped_system_datoms: u64,
    /// Wall time from open to commit.
    pub duration_ms: u64,
}

impl BackupResult {
    /// The result map returned to Clojure.
    pub fn to_value(&self) -> Value {
        let m = &self.manifest;
        kw_map([
            ("success", Value::Bool(true)),
            ("backup-id", Value::str(&m.backup_id)),
            ("database-id", Value::str(&m.database_id)),
            ("path", Value::str(&self.location)),
            ("type", Value::kw(&m.backup_type)),
            ("history?", Value::Bool(m.history)),
            ("datom-count", Value::Long(m.datom_count as i64)),
            ("chunk-count", Value::Long(m.chunks.len() as i64)),
            ("total-size-bytes", Value::Long(m.size_bytes as i64)),
            (
                "uncompressed-bytes",
                Value::Long(self.uncompressed_bytes as i64),
            ),
            (
                "skipped-system-datoms",
                Value::Long(self.skipped_system_datoms as i64),
            ),
            ("max-eid", Value::Long(m.max_eid)),
            ("max-tx", Value::Long(m.max_tx)),
            ("duration-ms", Value::Long(self.duration_ms as i64)),
        ])
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An open backup: accepts datoms until [`BackupSession::finish`] or [`BackupSession::abort`].
pub struct BackupSession {
    store: Arc<dyn Store>,
    opts: BackupOptions,
    backup_id: String,
    started: Instant,
    started_ms: i64,
    feed: Feed,
    received: u64,
    /// Chunks a resumed backup stored before, by id (empty for a new backup).
    prior: BTreeMap<u64, ChunkMeta>,
    /// The resume lock, held while a resumed backup runs (released on drop).
    _lock: Option<ResumeLock>,
}

/// The options a resumed backup must share with the interrupted one, as `config.edn`
/// records them (key, recorded value, value now).
fn resume_mismatches(recorded: &Value, now: &Value) -> Vec<String> {
    const KEYS: [&str; 9] = [
        "database/id",
        "backup/history?",
        "backup/chunk-size",
        "backup/compression-level",
        "backup/skip-tx0?",
        "schema/ref-attrs",
        "schema/tx-instant-attr",
        "stats/max-tx",
        "datahike/id",
    ];
    KEYS.iter()
        .filter(|k| recorded.get(k) != now.get(k))
        .map(|k| {
            format!(
                ":{k} was {} and is now {}",
                recorded.get(k).map_or("nil".into(), edn::write),
                now.get(k).map_or("nil".into(), edn::write)
            )
        })
        .collect()
}

impl BackupSession {
    /// Given a store and validated options, create the backup folder (config and checkpoint)
    /// and return the session. Fails with `Conflict` if the backup id is already used.
    pub fn open(store: Arc<dyn Store>, opts: BackupOptions) -> Result<Self> {
        if opts.resume {
            return Self::resume(store, opts);
        }
        let backup_id = opts
            .backup_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let prefix = layout::backup_prefix(&opts.database_id, &backup_id);
        if !store.list(&prefix)?.is_empty() {
            return Err(Error::new(
                ErrorKind::Conflict,
                "open backup",
                format!("backup {backup_id} already exists"),
            )
            .with_key(store.location(&prefix)));
        }
        let tmp = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let order = RestoreOrder::new(opts.order.clone(), &tmp, opts.sort_buffer_bytes)?;
        let session = BackupSession {
            store,
            backup_id,
            started: Instant::now(),
            started_ms: now_ms(),
            feed: Feed::new(order),
            received: 0,
            prior: BTreeMap::new(),
            _lock: None,
            opts,
        };
        session.put_edn(layout::CONFIG, &session.config_value())?;
        session.write_checkpoint(Phase::Ingest, &[], None)?;
        Ok(session)
    }

    /// Continue the interrupted backup `opts.backup_id`: the same options and snapshot as
    /// recorded in its `config.edn`, reusing every chunk already stored intact. Refuses
    /// (`Conflict`) a complete backup, other options, or another database.
    fn resume(store: Arc<dyn Store>, opts: BackupOptions) -> Result<Self> {
        let op = "resume backup";
        let backup_id = opts
            .backup_id
            .clone()
            .ok_or_else(|| Error::invalid(op, "resuming needs :backup-id"))?;
        let db = opts.database_id.clone();
        let read = |name: &str| -> Result<Option<Value>> {
            let key = layout::backup_file(&db, &backup_id, name);
            match store.get(&key) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    edn::parse(&text)
                        .map(Some)
                        .map_err(|e| e.with_key(store.location(&key)))
                }
                Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        let conflict = |m: String| Error::new(ErrorKind::Conflict, op, m);
        let recorded = read(layout::CONFIG)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                op,
                format!("no backup {backup_id} of {db} to resume"),
            )
        })?;
        let complete = store
            .size(&layout::backup_file(
                &db,
                &backup_id,
                layout::COMPLETE_MARKER,
            ))?
            .is_some();
        if complete && read(layout::MANIFEST)?.is_some() {
            return Err(conflict(format!("backup {backup_id} is already complete")));
        }
        let lock = ResumeLock::acquire(
            store.clone(),
            &db,
            &backup_id,
            opts.lock_lease,
            opts.break_lock,
        )?;
        let tmp = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let order = RestoreOrder::new(opts.order.clone(), &tmp, opts.sort_buffer_bytes)?;
        let checkpoint = read(layout::CHECKPOINT)?.and_then(|v| Checkpoint::from_value(&v));
        let session = BackupSession {
            store: store.clone(),
            backup_id: backup_id.clone(),
            started: Instant::now(),
            started_ms: checkpoint.as_ref().map_or_else(now_ms, |c| c.started_at_ms),
            feed: Feed::new(order),
            received: 0,
            prior: checkpoint
                .map(|c| c.chunks.into_iter().map(|m| (m.id, m)).collect())
                .unwrap_or_default(),
            _lock: Some(lock),
            opts,
        };
        let mismatches = resume_mismatches(&recorded, &session.config_value());
        if !mismatches.is_empty() {
            return Err(conflict(format!(
                "backup {backup_id} was started with other options or another database: {}",
                mismatches.join("; ")
            ))
            .with_hint(
                "resume with the options of the interrupted backup, or start a new backup",
            ));
        }
        store.remove_temporaries(&layout::backup_prefix(&db, &backup_id))?;
        let prior: Vec<ChunkMeta> = session.prior.values().cloned().collect();
        session.write_checkpoint(Phase::Ingest, &prior, None)?;
        Ok(session)
    }

    /// The backup id.
    pub fn backup_id(&self) -> &str {
        &self.backup_id
    }

    fn key(&self, name: &str) -> String {
        layout::backup_file(&self.opts.database_id, &self.backup_id, name)
    }

    fn put_edn(&self, name: &str, v: &Value) -> Result<()> {
        self.store
            .put(&self.key(name), edn::write_pretty(v).as_bytes())
    }

    fn config_value(&self) -> Value {
        let o = &self.opts;
        let mut refs: Vec<Value> = o.order.ref_attrs.iter().map(Attr::to_value).collect();
        refs.sort_by_key(|v| format!("{v:?}"));
        kw_map([
            ("backup/id", Value::str(&self.backup_id)),
            ("database/id", Value::str(&o.database_id)),
            ("datahike/config", o.db_config.clone()),
            (
                "datahike/version",
                o.datahike_version.as_deref().map_or(Value::Nil, Value::str),
            ),
            ("backup/history?", Value::Bool(o.history)),
            ("schema/ref-attrs", Value::Vector(refs)),
            (
                "schema/tx-instant-attr",
                o.order
                    .tx_instant
                    .as_ref()
                    .map_or(Value::Nil, Attr::to_value),
            ),
            ("backup/skip-tx0?", Value::Bool(o.order.skip_tx0)),
            ("backup/chunk-size", Value::Long(o.chunk_size as i64)),
            (
                "backup/compression-level",
                Value::Long(o.compression_level as i64),
            ),
            ("stats/max-eid", Value::Long(o.max_eid)),
            ("stats/max-tx", Value::Long(o.max_tx)),
            (
                "datahike/id",
                o.datahike_id.as_deref().map_or(Value::Nil, Value::str),
            ),
        ])
    }

    fn write_checkpoint(
        &self,
        phase: Phase,
        chunks: &[ChunkMeta],
        error: Option<String>,
    ) -> Result<()> {
        let cp = Checkpoint {
            backup_id: self.backup_id.clone(),
            database_id: self.opts.database_id.clone(),
            started_at_ms: self.started_ms,
            updated_at_ms: now_ms(),
            phase,
            datoms_received: self.received,
            datoms_stored: chunks.iter().map(|c| c.datom_count).sum(),
            chunks: chunks.to_vec(),
            error,
        };
        self.put_edn(layout::CHECKPOINT, &cp.to_value())
    }

    /// Push one datom (datoms must arrive in the EAVT order `d/datoms` yields).
    pub fn push(&mut self, d: Datom) -> Result<()> {
        self.received += 1;
        self.feed.push(d)
    }

    /// Push one columnar batch from the JVM (its `new_attrs` extend the attribute table).
    /// The batch is decoded and sorted on the feeding thread ([`Feed`]): its errors surface
    /// at a later push or at [`BackupSession::finish`].
    pub fn push_batch(&mut self, batch: Batch) -> Result<()> {
        let n = batch.e.len() as u64;
        self.feed.push_batch(batch)?;
        self.received += n;
        Ok(())
    }

    /// Sort, encode, compress and store every chunk, then commit the manifest and the
    /// completion marker. On failure the checkpoint records the error and the backup
    /// stays incomplete.
    pub fn finish(mut self) -> Result<BackupResult> {
        match self.write_all() {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = self.write_checkpoint(Phase::Aborted, &[], Some(e.to_string()));
                Err(e)
            }
        }
    }

    /// Stop the backup, leaving it incomplete (it lists as such; cleanup removes it).
    pub fn abort(mut self, reason: &str) -> Result<()> {
        self.feed.close();
        self.write_checkpoint(Phase::Aborted, &[], Some(reason.to_owned()))
    }

    fn write_all(&mut self) -> Result<BackupResult> {
        let order = self.feed.finish()?;
        let skipped = order.skipped();
        let datoms = order.finish()?;
        failpoint::hit("before-first-chunk");
        let chunks = self.write_chunks(datoms)?;
        let uncompressed = chunks.iter().map(|c| c.uncompressed_bytes).sum();
        self.write_checkpoint(Phase::Committing, &chunks, None)?;
        failpoint::hit("before-manifest");
        let manifest = self.manifest(chunks);
        self.put_edn(layout::MANIFEST, &manifest.to_value())?;
        failpoint::hit("before-marker");
        self.store.put(
            &self.key(layout::COMPLETE_MARKER),
            layout::COMPLETE_MARKER_BYTES,
        )?;
        Ok(BackupResult {
            location: self.store.location(&layout::backup_prefix(
                &self.opts.database_id,
                &self.backup_id,
            )),
            manifest,
            uncompressed_bytes: uncompressed,
            skipped_system_datoms: skipped,
            duration_ms: self.started.elapsed().as_millis() as u64,
        })
    }

    fn manifest(&self, chunks: Vec<ChunkMeta>) -> Manifest {
        let tx_range = chunks
            .iter()
            .filter_map(|c| c.tx_range)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        Manifest {
            backup_id: self.backup_id.clone(),
            database_id: self.opts.database_id.clone(),
            backup_type: "full".into(),
            created_at_ms: self.started_ms,
            completed_at_ms: now_ms(),
            completed: true,
            datahike_version: self.opts.datahike_version.clone(),
            compression: "gzip".into(),
            history: self.opts.history,
            order: ChunkOrder::Restore,
            datom_count: chunks.iter().map(|c| c.datom_count).sum(),
            size_bytes: chunks.iter().map(|c| c.size_bytes).sum(),
            tx_range,
            max_eid: self.opts.max_eid,
            max_tx: self.opts.max_tx,
            chunks,
        }
    }

    /// Encode on this thread; compress, hash and store on `parallel` workers. At most
    /// `parallel` chunks are being compressed while one more is being encoded. After each
    /// chunk is durable, the checkpoint is rewritten (serialised by the progress lock).
    fn write_chunks(&self, datoms: impl Iterator<Item = Result<Datom>>) -> Result<Vec<ChunkMeta>> {
        let progress = Mutex::new(self.prior.clone());
        let produced = Mutex::new(Vec::<u64>::new());
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let failed = AtomicBool::new(false);
        let fail = |e: Error| {
            failed.store(true, Ordering::SeqCst);
            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        };
        let (job_tx, job_rx) = bounded::<EncodedChunk>(0);
        std::thread::scope(|scope| {
            for _ in 0..self.opts.parallel {
                let job_rx = job_rx.clone();
                let (progress, fail, failed) = (&progress, &fail, &failed);
                scope.spawn(move || {
                    for job in job_rx {
                        if failed.load(Ordering::SeqCst) {
                            continue;
                        }
                        if let Err(e) = self.store_and_checkpoint(job, progress) {
                            fail(e);
                        }
                    }
                });
            }
            let encoded = (|| -> Result<()> {
                let mut enc = ChunkEncoder::new(self.opts.chunk_size)?;
                let send = |c: EncodedChunk| -> Result<()> {
                    produced
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(c.id);
                    job_tx
                        .send(c)
                        .map_err(|_| Error::internal("write chunks", "all chunk writers stopped"))
                };
                for d in datoms {
                    if failed.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    if let Some(c) = enc.push(&d?)? {
                        send(c)?;
                    }
                }
                match enc.finish()? {
                    Some(c) => send(c),
                    None => Ok(()),
                }
            })();
            drop(job_tx);
            if let Err(e) = encoded {
                fail(e);
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let stored = progress.into_inner().unwrap_or_else(|p| p.into_inner());
        let ids = produced.into_inner().unwrap_or_else(|p| p.into_inner());
        ids.iter()
            .map(|id| {
                stored.get(id).cloned().ok_or_else(|| {
                    Error::internal(
                        "write chunks",
                        format!("chunk {id} was encoded but not stored"),
                    )
                })
            })
            .collect()
    }

    fn store_and_checkpoint(
        &self,
        job: EncodedChunk,
        progress: &Mutex<BTreeMap<u64, ChunkMeta>>,
    ) -> Result<()> {
        let meta = self.store_chunk(job)?;
        failpoint::hit("chunk-stored");
        let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
        p.insert(meta.id, meta);
        let metas: Vec<ChunkMeta> = p.values().cloned().collect();
        self.write_checkpoint(Phase::Writing, &metas, None)?;
        failpoint::hit("checkpoint-written");
        Ok(())
    }

    /// Compress and store one chunk; for a resumed backup, reuse the chunk stored before
    /// when it is intact and its content is the same.
    fn store_chunk(&self, c: EncodedChunk) -> Result<ChunkMeta> {
        let raw_checksum = chunk::sha256_hex(&c.fressian);
        let rel = layout::chunk_relative(c.id);
        let key = self.key(&rel);
        if let Some(prior) = self.prior.get(&c.id) {
            if prior.raw_checksum.as_deref() != Some(raw_checksum.as_str()) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "resume backup",
                    format!("chunk {} now has other content than the one stored before", c.id),
                )
                .with_key(self.store.location(&key))
                .with_hint("the database changed in a way its history cannot replay (e.g. :db/noHistory attributes); start a new backup"));
            }
            match self.store.get(&key) {
                Ok(bytes) if chunk::sha256_hex(&bytes) == prior.checksum => {
                    return Ok(prior.clone())
                }
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let gz = chunk::gzip(&c.fressian, self.opts.compression_level)?;
        self.store.put(&key, &gz)?;
        Ok(ChunkMeta {
            id: c.id,
            s3_key: self.store.object_key_of(&key),
            key: rel,
            tx_range: c.tx_range,
            max_eid: c.max_eid,
            datom_count: c.datom_count,
            size_bytes: gz.len() as u64,
            uncompressed_bytes: c.fressian.len() as u64,
            checksum: chunk::sha256_hex(&gz),
            raw_checksum: Some(raw_checksum),
        })
    }
}
