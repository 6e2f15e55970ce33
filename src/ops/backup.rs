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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::bounded;
use serde::Serialize;

use crate::clock::now_ms;
use crate::codec::wire::Batch;
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;
use crate::model::{kw_map, Attr, Datom, Value};
use crate::options::Opts;
use crate::pipeline::chunk::{self, ChunkEncoder, EncodedChunk};
use crate::pipeline::feed::Feed;
use crate::pipeline::order::{OrderSpec, RestoreOrder};
use crate::repo::checkpoint::{Checkpoint, Phase};
use crate::repo::layout;
use crate::repo::lock::ResumeLock;
use crate::repo::manifest::{ChunkMeta, ChunkOrder, Manifest};
use crate::repo::meta::write_edn;
use crate::store::Store;

/// Everything a backup needs to know, validated. [`Default`] holds every documented
/// default (the README's option table); [`BackupOptions::from_edn`] parses the map the
/// Clojure API sends, one check per option.
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

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            database_id: String::new(),
            backup_id: None,
            chunk_size: 8 << 20,
            compression_level: 6,
            parallel: 2,
            history: true,
            sort_buffer_bytes: 64 << 20,
            tmp_dir: None,
            order: OrderSpec::default(),
            max_eid: 0,
            max_tx: 0,
            datahike_version: None,
            db_config: Value::Nil,
            datahike_id: None,
            resume: false,
            break_lock: false,
            lock_lease: std::time::Duration::from_secs(60),
        }
    }
}

/// The option keys a caller of a backup may pass (checked by
/// [`crate::options::check_keys`] before anything is read; the Clojure API removes its own
/// — `:batch-size`, `:progress-fn` — first, and computes the internal ones, `:ref-attrs`,
/// `:max-tx`, …). A new option is one line here.
pub const KEYS: &[&str] = &[
    "database-id",
    "chunk-size",
    "compression",
    "compression-level",
    "parallel",
    "history?",
    "sort-buffer-bytes",
    "tmp-dir",
];

fn attr_of(v: &Value) -> Result<Attr> {
    match v {
        Value::Keyword(n) => Ok(Attr::Keyword(n.clone())),
        Value::Long(id) => Ok(Attr::Id(*id)),
        other => Err(Error::invalid(
            "open backup",
            format!(
                "an attribute must be a keyword or an id, got {}",
                crate::codec::edn::write(other)
            ),
        )),
    }
}

impl BackupOptions {
    /// Parse the options map sent by the Clojure wrapper (see the README for each key).
    pub fn from_edn(v: &Value) -> Result<Self> {
        let o = Opts::new(v, "open backup")?;
        let d = BackupOptions::default();
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
            chunk_size: o.long_in("chunk-size", d.chunk_size as i64, 1, 1 << 31)? as usize,
            compression_level: o.long_in("compression-level", d.compression_level.into(), 0, 9)?
                as u32,
            parallel: o.long_in("parallel", d.parallel as i64, 1, 64)? as usize,
            history: o.bool("history?", d.history)?,
            sort_buffer_bytes: o.long_in(
                "sort-buffer-bytes",
                d.sort_buffer_bytes as i64,
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
                d.lock_lease.as_millis() as i64,
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

/// Where a running backup is, as [`BackupProgress::snapshot`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Receiving datoms from the database.
    Reading,
    /// Ordering the received datoms (merging sorted runs).
    Sorting,
    /// Compressing and storing chunks.
    Writing,
    /// Writing the manifest and the completion marker.
    Committing,
    /// Complete.
    Done,
}

/// Counters of a running backup, updated as it goes and readable from any thread (the
/// Clojure API polls them for `:progress-fn`).
#[derive(Debug, Default)]
pub struct BackupProgress {
    stage: AtomicU8,
    datoms_received: AtomicU64,
    chunks_stored: AtomicU64,
    datoms_stored: AtomicU64,
    bytes_stored: AtomicU64,
}

/// A consistent-enough reading of [`BackupProgress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProgressSnapshot {
    /// The stage.
    pub stage: Stage,
    /// Datoms received so far.
    pub datoms_received: u64,
    /// Chunks stored so far.
    pub chunks_stored: u64,
    /// Datoms in the stored chunks.
    pub datoms_stored: u64,
    /// Bytes (compressed) of the stored chunks.
    pub bytes_stored: u64,
}

impl BackupProgress {
    fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }

    fn stored(&self, meta: &ChunkMeta) {
        self.chunks_stored.fetch_add(1, Ordering::Relaxed);
        self.datoms_stored
            .fetch_add(meta.datom_count, Ordering::Relaxed);
        self.bytes_stored
            .fetch_add(meta.size_bytes, Ordering::Relaxed);
    }

    /// Read the counters.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let stage = match self.stage.load(Ordering::Relaxed) {
            0 => Stage::Reading,
            1 => Stage::Sorting,
            2 => Stage::Writing,
            3 => Stage::Committing,
            _ => Stage::Done,
        };
        ProgressSnapshot {
            stage,
            datoms_received: self.datoms_received.load(Ordering::Relaxed),
            chunks_stored: self.chunks_stored.load(Ordering::Relaxed),
            datoms_stored: self.datoms_stored.load(Ordering::Relaxed),
            bytes_stored: self.bytes_stored.load(Ordering::Relaxed),
        }
    }
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
    /// Counters for progress reports.
    progress: Arc<BackupProgress>,
}

impl BackupSession {
    /// Given a store and validated options, create the backup folder (config and checkpoint)
    /// and return the session. Fails with `Conflict` if the backup id is already used.
    pub fn open(store: Arc<dyn Store>, opts: BackupOptions) -> Result<Self> {
        if opts.resume {
            return super::resume::open_resumed(store, opts);
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
        let session = Self::assemble(store, opts, backup_id, now_ms(), BTreeMap::new(), None)?;
        write_edn(
            session.store.as_ref(),
            &session.key(layout::CONFIG),
            &session.config_value(),
        )?;
        session.write_checkpoint(Phase::Ingest, &[], None)?;
        Ok(session)
    }

    /// Build a session over `store` (shared by [`BackupSession::open`] and resume):
    /// `prior` holds the chunks an interrupted run stored, `lock` the resume lock.
    pub(super) fn assemble(
        store: Arc<dyn Store>,
        opts: BackupOptions,
        backup_id: String,
        started_ms: i64,
        prior: BTreeMap<u64, ChunkMeta>,
        lock: Option<ResumeLock>,
    ) -> Result<Self> {
        let tmp = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let order = RestoreOrder::new(opts.order.clone(), &tmp, opts.sort_buffer_bytes)?;
        Ok(BackupSession {
            store,
            backup_id,
            started: Instant::now(),
            started_ms,
            feed: Feed::new(order),
            received: 0,
            prior,
            _lock: lock,
            opts,
            progress: Arc::default(),
        })
    }

    /// The session's progress counters (shared: they stay readable while it finishes).
    pub fn progress(&self) -> Arc<BackupProgress> {
        self.progress.clone()
    }

    /// The backup id.
    pub fn backup_id(&self) -> &str {
        &self.backup_id
    }

    fn key(&self, name: &str) -> String {
        layout::backup_file(&self.opts.database_id, &self.backup_id, name)
    }

    /// The chunks an interrupted run stored (resume), by id.
    pub(super) fn prior(&self) -> &BTreeMap<u64, ChunkMeta> {
        &self.prior
    }

    /// What `config.edn` records: the options and snapshot a resume must share.
    pub(super) fn config_value(&self) -> Value {
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

    /// Rewrite `checkpoint.edn` with the phase and the stored chunks.
    pub(super) fn write_checkpoint(
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
        write_edn(
            self.store.as_ref(),
            &self.key(layout::CHECKPOINT),
            &cp.to_value(),
        )
    }

    /// Push one datom (datoms must arrive in the EAVT order `d/datoms` yields).
    pub fn push(&mut self, d: Datom) -> Result<()> {
        self.received += 1;
        self.progress
            .datoms_received
            .store(self.received, Ordering::Relaxed);
        self.feed.push(d)
    }

    /// Push one columnar batch from the JVM (its `new_attrs` extend the attribute table).
    /// The batch is decoded and sorted on the feeding thread ([`Feed`]): its errors surface
    /// at a later push or at [`BackupSession::finish`].
    pub fn push_batch(&mut self, batch: Batch) -> Result<()> {
        let n = batch.e.len() as u64;
        self.feed.push_batch(batch)?;
        self.received += n;
        self.progress
            .datoms_received
            .store(self.received, Ordering::Relaxed);
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
        self.progress.set_stage(Stage::Sorting);
        let order = self.feed.finish()?;
        let skipped = order.skipped();
        let datoms = order.finish()?;
        failpoint::hit("before-first-chunk");
        self.progress.set_stage(Stage::Writing);
        let chunks = self.write_chunks(datoms)?;
        let uncompressed = chunks.iter().map(|c| c.uncompressed_bytes).sum();
        self.progress.set_stage(Stage::Committing);
        self.write_checkpoint(Phase::Committing, &chunks, None)?;
        failpoint::hit("before-manifest");
        let manifest = self.manifest(chunks);
        write_edn(
            self.store.as_ref(),
            &self.key(layout::MANIFEST),
            &manifest.to_value(),
        )?;
        failpoint::hit("before-marker");
        self.store.put(
            &self.key(layout::COMPLETE_MARKER),
            layout::COMPLETE_MARKER_BYTES,
        )?;
        // The checkpoint says so too (the manifest and marker are what count).
        self.write_checkpoint(Phase::Complete, &manifest.chunks, None)?;
        self.progress.set_stage(Stage::Done);
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
        self.progress.stored(&meta);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TX0;
    use crate::ops::testing::{self, history};
    use crate::repo::meta::read_edn;

    #[test]
    fn a_backup_commits_config_checkpoint_chunks_manifest_and_marker() {
        let (mem, store) = testing::store();
        let datoms = history(40);
        let r = testing::backup(&store, testing::options("db", 600, 40), &datoms);
        let m = &r.manifest;
        assert!(m.chunks.len() > 3, "{} chunks", m.chunks.len());
        assert_eq!(m.datom_count, datoms.len() as u64);
        assert_eq!(m.max_tx, TX0 + 40);
        let keys: Vec<String> = mem
            .list("db/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        let prefix = format!("db/{}/", m.backup_id);
        for name in [
            "config.edn",
            "checkpoint.edn",
            "manifest.edn",
            "complete.marker",
        ] {
            assert!(
                keys.contains(&format!("{prefix}{name}")),
                "{name}: {keys:?}"
            );
        }
        assert_eq!(keys.len(), 4 + m.chunks.len());
        let back = Manifest::from_value(&read_edn(&mem, &format!("{prefix}manifest.edn")).unwrap())
            .unwrap();
        assert_eq!(&back.chunks, &m.chunks);
        let cp =
            Checkpoint::from_value(&read_edn(&mem, &format!("{prefix}checkpoint.edn")).unwrap())
                .unwrap();
        assert_eq!(cp.chunks.len(), m.chunks.len());
        assert_eq!(cp.datoms_stored, m.datom_count);
    }

    #[test]
    fn chunks_hold_the_restore_order_with_ascending_tx_ranges() {
        let (mem, store) = testing::store();
        let datoms = history(30);
        let r = testing::backup(&store, testing::options("db", 500, 30), &datoms);
        let stored = testing::stored_datoms(&mem, &r);
        assert_eq!(stored.len(), datoms.len());
        assert!(stored.windows(2).all(|w| w[0].tx <= w[1].tx));
        // Within each tx the txInstant datom comes first, then retractions, then assertions.
        for w in stored.windows(2).filter(|w| w[0].tx == w[1].tx) {
            let class = |d: &Datom| match (d.e == d.tx, d.added) {
                (true, true) => 0,
                (_, false) => 1,
                _ => 2,
            };
            assert!(class(&w[0]) <= class(&w[1]), "{:?} before {:?}", w[0], w[1]);
        }
        let ranges: Vec<(i64, i64)> = r
            .manifest
            .chunks
            .iter()
            .map(|c| c.tx_range.unwrap())
            .collect();
        assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0), "{ranges:?}");
    }

    #[test]
    fn an_existing_backup_id_is_a_conflict_and_abort_leaves_it_incomplete() {
        let (_mem, store) = testing::store();
        let mut opts = testing::options("db", 1 << 20, 3);
        opts.backup_id = Some("b1".into());
        let mut s = BackupSession::open(store.clone(), opts.clone()).unwrap();
        s.push(history(3)[0].clone()).unwrap();
        s.abort("test").unwrap();
        let err = BackupSession::open(store.clone(), opts).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
        let listed = crate::ops::list::list(store.as_ref(), "db").unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].completed);
        assert_eq!(listed[0].checkpoint.as_ref().unwrap().phase, Phase::Aborted);
    }

    #[test]
    fn options_default_to_the_documented_values() {
        let o = BackupOptions::from_edn(&crate::codec::edn::parse("{:database-id \"x\"}").unwrap())
            .unwrap();
        let d = BackupOptions::default();
        assert_eq!(
            (
                o.chunk_size,
                o.compression_level,
                o.parallel,
                o.history,
                o.sort_buffer_bytes
            ),
            (
                d.chunk_size,
                d.compression_level,
                d.parallel,
                d.history,
                d.sort_buffer_bytes
            )
        );
        assert_eq!((d.chunk_size, d.parallel), (8 << 20, 2));
        for bad in [
            "{}",
            "{:database-id \"a/b\"}",
            "{:database-id \"x\" :parallel 0}",
        ] {
            let err = BackupOptions::from_edn(&crate::codec::edn::parse(bad).unwrap()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
