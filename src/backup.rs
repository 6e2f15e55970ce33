//! A full backup session: datoms in (EAVT, from the JVM), a complete backup out.
//!
//! ```text
//! push (EAVT batches) ──► RestoreOrder (external sort, spills to tmp) ──finish──►
//!   ChunkEncoder (cut on encoded size) ──► `parallel` workers: gzip + SHA-256 + Store::put
//!   ──► manifest.edn (commit point) ──► complete.marker
//! ```
//! `config.edn` and `checkpoint.edn` are written when the session opens, so an interrupted
//! backup lists as incomplete. Memory: the sort buffer plus `parallel + 1` chunks.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver};

use crate::checkpoint::{Checkpoint, Phase};
use crate::error::{Error, ErrorKind, Result};
use crate::format::chunk::{self, ChunkEncoder, EncodedChunk};
use crate::format::edn;
use crate::layout;
use crate::manifest::{ChunkMeta, ChunkOrder, Manifest};
use crate::model::{kw_map, Attr, Datom, Value};
use crate::options::Opts;
use crate::order::{OrderSpec, RestoreOrder};
use crate::store::Store;
use crate::wire::{self, BatchColumns};

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
    order: Option<RestoreOrder>,
    attrs: Vec<Attr>,
    scratch: Vec<Datom>,
    received: u64,
}

impl BackupSession {
    /// Given a store and validated options, create the backup folder (config and checkpoint)
    /// and return the session. Fails with `Conflict` if the backup id is already used.
    pub fn open(store: Arc<dyn Store>, opts: BackupOptions) -> Result<Self> {
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
            order: Some(order),
            attrs: Vec::new(),
            scratch: Vec::new(),
            received: 0,
            opts,
        };
        session.put_edn(layout::CONFIG, &session.config_value())?;
        session.write_checkpoint(Phase::Ingest, &[], None)?;
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

    fn order_mut(&mut self) -> Result<&mut RestoreOrder> {
        self.order
            .as_mut()
            .ok_or_else(|| Error::invalid("push datoms", "the backup session is already finished"))
    }

    /// Push one datom (datoms must arrive in the EAVT order `d/datoms` yields).
    pub fn push(&mut self, d: Datom) -> Result<()> {
        self.received += 1;
        self.order_mut()?.push(d)
    }

    /// Push one columnar batch from the JVM; `new_attrs` extends the attribute table.
    pub fn push_columns(&mut self, cols: &BatchColumns, new_attrs: &[u8]) -> Result<()> {
        wire::decode_attrs(new_attrs, &mut self.attrs)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        wire::decode_batch(cols, &self.attrs, &mut scratch)?;
        self.received += scratch.len() as u64;
        let order = self.order_mut()?;
        for d in scratch.drain(..) {
            order.push(d)?;
        }
        self.scratch = scratch;
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
        self.order = None;
        self.write_checkpoint(Phase::Aborted, &[], Some(reason.to_owned()))
    }

    fn write_all(&mut self) -> Result<BackupResult> {
        let order = self.order.take().ok_or_else(|| {
            Error::invalid("finish backup", "the backup session is already finished")
        })?;
        let skipped = order.skipped();
        self.write_checkpoint(Phase::Writing, &[], None)?;
        let datoms = order.finish()?;
        let (chunks, uncompressed) = self.write_chunks(datoms)?;
        self.write_checkpoint(Phase::Committing, &chunks, None)?;
        let manifest = self.manifest(chunks);
        self.put_edn(layout::MANIFEST, &manifest.to_value())?;
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
    /// `parallel` chunks are being compressed while one more is being encoded.
    fn write_chunks(
        &self,
        datoms: impl Iterator<Item = Result<Datom>>,
    ) -> Result<(Vec<ChunkMeta>, u64)> {
        let (job_tx, job_rx) = bounded::<EncodedChunk>(0);
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Result<(ChunkMeta, u64)>>();
        let mut stored = Vec::new();
        let mut last_checkpoint = Instant::now();
        let encode_result = std::thread::scope(|scope| {
            for _ in 0..self.opts.parallel {
                let job_rx = job_rx.clone();
                let done_tx = done_tx.clone();
                scope.spawn(move || {
                    for job in job_rx {
                        let r = self.store_chunk(job);
                        let failed = r.is_err();
                        let _ = done_tx.send(r);
                        if failed {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let r = self.encode_into(datoms, &job_tx, &done_rx, &mut stored, &mut last_checkpoint);
            drop(job_tx);
            r
        });
        let mut first_error = encode_result.err();
        for r in done_rx {
            match r {
                Ok(done) => stored.push(done),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        stored.sort_by_key(|(c, _)| c.id);
        let uncompressed = stored.iter().map(|(_, u)| u).sum();
        Ok((stored.into_iter().map(|(c, _)| c).collect(), uncompressed))
    }

    fn encode_into(
        &self,
        datoms: impl Iterator<Item = Result<Datom>>,
        jobs: &crossbeam_channel::Sender<EncodedChunk>,
        done: &Receiver<Result<(ChunkMeta, u64)>>,
        stored: &mut Vec<(ChunkMeta, u64)>,
        last_checkpoint: &mut Instant,
    ) -> Result<()> {
        let mut enc = ChunkEncoder::new(self.opts.chunk_size)?;
        let mut send = |c: EncodedChunk, stored: &mut Vec<(ChunkMeta, u64)>| -> Result<()> {
            jobs.send(c)
                .map_err(|_| Error::internal("write chunks", "all chunk writers stopped"))?;
            for r in done.try_iter() {
                stored.push(r?);
            }
            if last_checkpoint.elapsed().as_millis() >= 1000 {
                let metas: Vec<ChunkMeta> = stored.iter().map(|(c, _)| c.clone()).collect();
                self.write_checkpoint(Phase::Writing, &metas, None)?;
                *last_checkpoint = Instant::now();
            }
            Ok(())
        };
        for d in datoms {
            if let Some(c) = enc.push(&d?)? {
                send(c, stored)?;
            }
        }
        if let Some(c) = enc.finish()? {
            send(c, stored)?;
        }
        Ok(())
    }

    fn store_chunk(&self, c: EncodedChunk) -> Result<(ChunkMeta, u64)> {
        let gz = chunk::gzip(&c.fressian, self.opts.compression_level)?;
        let rel = layout::chunk_relative(c.id);
        self.store.put(&self.key(&rel), &gz)?;
        let meta = ChunkMeta {
            id: c.id,
            key: rel,
            tx_range: c.tx_range,
            max_eid: c.max_eid,
            datom_count: c.datom_count,
            size_bytes: gz.len() as u64,
            uncompressed_bytes: c.fressian.len() as u64,
            checksum: chunk::sha256_hex(&gz),
        };
        Ok((meta, c.fressian.len() as u64))
    }
}
