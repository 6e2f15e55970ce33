//! A full backup session: datoms in (EAVT, from the JVM), a complete backup out.
//!
//! ```text
//! push (EAVT batches) ──► RestoreOrder (external sort, spills to tmp) ──finish──►
//!   ChunkEncoder (cut on encoded size) ──► `parallel` workers: gzip + SHA-256 + Store::put
//!   ──► manifest.edn (commit point) ──► complete.marker
//! ```
//! `config.edn` and `checkpoint.edn` are written when the session opens, so an interrupted
//! backup lists as incomplete. Memory: the sort buffer plus `parallel + 1` chunks.
//!
//! An incremental backup ([`super::incremental`]) walks the same history but the order
//! emits only the transactions after its parent's basis; the `:db/noHistory` state
//! ([`crate::chain::state`]) is collected on the feeding thread and stored before the
//! chunks, and what the parent's state had and the database lost becomes retractions.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::bounded;
use serde::Serialize;

use crate::chain::state::{self, Collector, StateWriter};
use crate::clock::now_ms;
use crate::codec::tagged::ValueScratch;
use crate::codec::wire::Batch;
use crate::crypto::envelope::{self, BackupCipher, Envelope, KeySpec};
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;
use crate::model::{kw_map, Attr, Datom, Value};
use crate::options::Opts;
use crate::pipeline::chunk::{self, ChunkEncoder, Codec, EncodedChunk};
use crate::pipeline::feed::Feed;
use crate::pipeline::order::{OrderSpec, RestoreIter, RestoreOrder};
use crate::repo::checkpoint::{Checkpoint, Phase};
use crate::repo::layout;
use crate::repo::link::LinkMeta;
use crate::repo::lock::ResumeLock;
use crate::repo::manifest::{ChunkMeta, ChunkOrder, Manifest, FORMAT_VERSION, MAX_CHUNKS};
use crate::repo::meta::write_edn;
use crate::store::Store;

use super::incremental::{self, Parent};

/// The largest `:chunk-size`: a chunk (one datom larger than the size included) must stay
/// within what a restore decodes ([`chunk::MAX_UNCOMPRESSED_BYTES`]).
pub const MAX_CHUNK_SIZE: usize = 512 << 20;

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
    /// How chunks are compressed (`:compression`, gzip by default).
    pub compression: Codec,
    /// The compression level (gzip 0–9, default 6; zstd 1–19, default 3).
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
    /// Write an incremental continuing the newest complete backup of the database.
    pub incremental: bool,
    /// Write an incremental continuing this backup (implies `incremental`).
    pub parent: Option<String>,
    /// The `:db/noHistory` attributes (their current datoms are the chain's state).
    pub no_history_attrs: HashSet<Attr>,
    /// The user's key when the backup is encrypted (`:encryption`).
    pub encryption: Option<KeySpec>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            database_id: String::new(),
            backup_id: None,
            chunk_size: 8 << 20,
            compression: Codec::Gzip,
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
            incremental: false,
            parent: None,
            no_history_attrs: HashSet::new(),
            encryption: None,
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
    "incremental?",
    "parent",
    "encryption",
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
        let compression_name = o.keyword("compression", "gzip")?;
        let compression = Codec::from_name(&compression_name).ok_or_else(|| {
            Error::invalid(
                "open backup",
                format!(
                    ":compression {compression_name} is not supported (use one of {})",
                    chunk::COMPRESSIONS
                        .iter()
                        .map(|c| format!(":{c}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            )
        })?;
        let (lo, hi) = compression.levels();
        let ref_attrs = o
            .seq("ref-attrs")?
            .iter()
            .map(attr_of)
            .collect::<Result<HashSet<_>>>()?;
        let tx_instant = o.get("tx-instant-attr").map(attr_of).transpose()?;
        let parent = o.string("parent")?.map(String::from);
        if let Some(id) = &parent {
            layout::check_segment("parent", id)?;
        }
        // Datahike marks :db/txInstant :db/noHistory, but a transaction's instant is never
        // retracted nor replaced: it has no state for a chain to carry.
        let no_history_attrs = o
            .seq("no-history-attrs")?
            .iter()
            .map(attr_of)
            .filter(|a| {
                a.as_ref()
                    .map_or(true, |a| !state::is_tx_instant(a, tx_instant.as_ref()))
            })
            .collect::<Result<HashSet<_>>>()?;
        Ok(BackupOptions {
            database_id,
            backup_id,
            chunk_size: o.long_in("chunk-size", d.chunk_size as i64, 1, MAX_CHUNK_SIZE as i64)?
                as usize,
            compression,
            compression_level: o.long_in(
                "compression-level",
                compression.default_level().into(),
                lo.into(),
                hi.into(),
            )? as u32,
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
                crate::repo::lock::MAX_LEASE.as_millis() as i64,
            )? as u64),
            incremental: o.bool("incremental?", false)? || parent.is_some(),
            parent,
            no_history_attrs,
            encryption: KeySpec::from_options(v, "open backup")?,
        })
    }
}

/// The chunks stored so far and what the checkpoint cost (see `write_chunks`).
struct Progress {
    chunks: BTreeMap<u64, ChunkMeta>,
    /// Stored bytes of the chunks stored since the checkpoint was last rewritten.
    since_checkpoint: u64,
    /// Size of the checkpoint as last rewritten by this run.
    checkpoint_bytes: u64,
}

/// Refuse chunk `id` beyond the most a backup may have.
fn too_many_chunks(id: u64) -> Result<()> {
    if id >= MAX_CHUNKS as u64 {
        return Err(Error::invalid(
            "write chunks",
            format!("the backup needs more than {MAX_CHUNKS} chunks"),
        )
        .with_hint("raise :chunk-size"));
    }
    Ok(())
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
    /// The backup an incremental continues (`None`: a full backup).
    parent: Option<Parent>,
    /// Collects the `:db/noHistory` state on the feeding thread (`None`: no such attribute).
    collector: Option<Arc<Mutex<Collector>>>,
    /// Counters for progress reports.
    progress: Arc<BackupProgress>,
    /// An encrypted backup's record (manifest, config) and cipher (`None`: plain).
    sealing: Option<(Envelope, Arc<BackupCipher>)>,
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
        let parent = incremental::parent_of(store.as_ref(), &opts)?;
        let session = Self::assemble(
            store,
            opts,
            backup_id,
            now_ms(),
            BTreeMap::new(),
            None,
            parent,
        )?;
        let mut session = session;
        if let Some(spec) = &session.opts.encryption {
            // A link of an encrypted chain: the chain's key (and passphrase parameters).
            let kdf = session
                .parent
                .as_ref()
                .and_then(|p| p.sealing.as_ref())
                .and_then(|(e, _)| e.kdf.clone());
            let (envelope, cipher) =
                spec.seal_new(&session.opts.database_id, &session.backup_id, kdf.as_ref())?;
            session.set_sealing(envelope, Arc::new(cipher));
        }
        session.write_config()?;
        session.write_checkpoint(Phase::Ingest, &[], None)?;
        Ok(session)
    }

    /// Build a session over `store` (shared by [`BackupSession::open`] and resume):
    /// `prior` holds the chunks an interrupted run stored, `lock` the resume lock,
    /// `parent` the backup an incremental continues.
    pub(super) fn assemble(
        store: Arc<dyn Store>,
        opts: BackupOptions,
        backup_id: String,
        started_ms: i64,
        prior: BTreeMap<u64, ChunkMeta>,
        lock: Option<ResumeLock>,
        parent: Option<Parent>,
    ) -> Result<Self> {
        let tmp = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let after = parent.as_ref().map(|p| p.after_tx);
        let order =
            RestoreOrder::new(opts.order.clone(), &tmp, opts.sort_buffer_bytes)?.emit_after(after);
        let collector = (!opts.no_history_attrs.is_empty()).then(|| {
            Arc::new(Mutex::new(Collector::new(
                opts.no_history_attrs.clone(),
                after,
                &tmp,
                opts.sort_buffer_bytes / 4,
            )))
        });
        let tap = collector
            .clone()
            .map(|c| state::tap(c, opts.order.tx_instant.clone()));
        Ok(BackupSession {
            store,
            backup_id,
            started: Instant::now(),
            started_ms,
            feed: Feed::with_tap(order, tap),
            received: 0,
            prior,
            _lock: lock,
            parent,
            collector,
            opts,
            progress: Arc::default(),
            sealing: None,
        })
    }

    /// Make the session an encrypted backup's, with its record and cipher (a new backup's,
    /// or the interrupted one's when resuming).
    pub(super) fn set_sealing(&mut self, envelope: Envelope, cipher: Arc<BackupCipher>) {
        self.sealing = Some((envelope, cipher));
    }

    fn cipher(&self) -> Option<&BackupCipher> {
        self.sealing.as_ref().map(|(_, c)| c.as_ref())
    }

    /// Write `config.edn` (an encrypted backup's with its schema facts sealed).
    fn write_config(&self) -> Result<()> {
        let envelope = self.sealing.as_ref().map(|(e, _)| e);
        write_edn(
            self.store.as_ref(),
            &self.key(layout::CONFIG),
            &envelope::seal_config(self.config_value(), self.cipher(), envelope)?,
        )
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
        let mut config = kw_map([
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
            (
                "backup/type",
                Value::kw(if self.parent.is_some() {
                    "incremental"
                } else {
                    "full"
                }),
            ),
            (
                "backup/parent",
                self.parent
                    .as_ref()
                    .map_or(Value::Nil, |p| Value::str(&p.id)),
            ),
            (
                "backup/after-tx",
                self.parent
                    .as_ref()
                    .map_or(Value::Nil, |p| Value::Long(p.after_tx)),
            ),
            ("schema/no-history-attrs", {
                let mut attrs: Vec<Value> = o.no_history_attrs.iter().map(Attr::to_value).collect();
                attrs.sort_by_key(|v| format!("{v:?}"));
                Value::Vector(attrs)
            }),
        ]);
        // Recorded only when not the default, so that configs written before zstd existed
        // resume as they are.
        if o.compression != Codec::Gzip {
            if let Value::Map(entries) = &mut config {
                entries.push((
                    Value::kw("backup/compression"),
                    Value::kw(o.compression.name()),
                ));
            }
        }
        config
    }

    /// Rewrite `checkpoint.edn` with the phase and the stored chunks; return its size.
    pub(super) fn write_checkpoint(
        &self,
        phase: Phase,
        chunks: &[ChunkMeta],
        error: Option<String>,
    ) -> Result<u64> {
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
        let text = crate::codec::edn::write_pretty(&cp.to_value());
        self.store
            .put(&self.key(layout::CHECKPOINT), text.as_bytes())?;
        Ok(text.len() as u64)
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
            .map(|_| ())
    }

    fn write_all(&mut self) -> Result<BackupResult> {
        self.progress.set_stage(Stage::Sorting);
        let mut order = self.feed.finish()?;
        let state = self.write_state(&mut order)?;
        let skipped = order.skipped();
        let mut datoms = order.finish()?;
        failpoint::hit("before-first-chunk");
        self.progress.set_stage(Stage::Writing);
        let chunks = self.write_chunks(&mut datoms)?;
        let uncompressed = chunks.iter().map(|c| c.uncompressed_bytes).sum();
        self.progress.set_stage(Stage::Committing);
        self.write_checkpoint(Phase::Committing, &chunks, None)?;
        failpoint::hit("before-manifest");
        let manifest = self.manifest(chunks, state);
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
        // The checkpoint says so too; best effort: the manifest and marker are what count,
        // and a failure here must not turn a complete backup into an aborted one.
        let _ = self.write_checkpoint(Phase::Complete, &manifest.chunks, None);
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

    /// Store the `:db/noHistory` state (the current datoms of those attributes, sorted by
    /// key) and, for an incremental, push a retraction into `order` for every datom of the
    /// parent's state that is no longer current (see [`crate::chain::state`]). Returns the
    /// state's chunk entries.
    fn write_state(&mut self, order: &mut RestoreOrder) -> Result<Vec<ChunkMeta>> {
        let Some(shared) = self.collector.take() else {
            return Ok(Vec::new());
        };
        let collector = Arc::try_unwrap(shared)
            .map_err(|_| Error::internal("write chain state", "the collector is still shared"))?
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let first_window_tx = collector.first_window_tx();
        let current = collector.finish()?;
        let store = self.store.as_ref();
        let prefix = layout::backup_prefix(&self.opts.database_id, &self.backup_id);
        // The state is always gzip (the chunk codec's level may be a zstd one).
        let level = if self.opts.compression == Codec::Gzip {
            self.opts.compression_level
        } else {
            Codec::Gzip.default_level()
        };
        let mut writer = StateWriter::new(store, prefix, level, self.cipher())?;
        let attrs = &self.opts.no_history_attrs;
        let parent_state: Vec<(String, ChunkMeta)> = match &self.parent {
            Some(p) => p
                .no_history
                .iter()
                .flatten()
                .map(|c| (p.prefix.clone(), c.clone()))
                .collect(),
            None => Vec::new(),
        };
        let parent_cipher = self
            .parent
            .as_ref()
            .and_then(|p| p.sealing.as_ref())
            .map(|(_, c)| c.clone());
        let parent_datoms = parent_state
            .into_iter()
            .flat_map(|(prefix, meta)| {
                match super::check::fetch_checked(store, &prefix, &meta, parent_cipher.as_deref()) {
                    Ok(c) => c.datoms.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                }
            })
            .filter(|r| r.as_ref().map_or(true, |d| attrs.contains(&d.a)));
        state::merge(
            current,
            parent_datoms,
            |d| writer.push(&d),
            |d| {
                let tx = first_window_tx.ok_or_else(|| {
                    Error::internal(
                        "write chain state",
                        "a :db/noHistory value was removed without any transaction since the parent",
                    )
                })?;
                order.push(Datom {
                    tx,
                    added: false,
                    ..d
                })
            },
        )?;
        writer.finish()
    }

    fn manifest(&self, chunks: Vec<ChunkMeta>, state: Vec<ChunkMeta>) -> Manifest {
        let tx_range = chunks
            .iter()
            .filter_map(|c| c.tx_range)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        let instant_range = chunks
            .iter()
            .filter_map(|c| c.instant_range)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        let link = LinkMeta {
            parent: self.parent.as_ref().map(|p| p.id.clone()),
            base: self.parent.as_ref().map(|p| p.base.clone()),
            after_tx: self.parent.as_ref().map(|p| p.after_tx),
            instant_range,
            no_history: Some(state),
        };
        Manifest {
            backup_id: self.backup_id.clone(),
            database_id: self.opts.database_id.clone(),
            backup_type: if self.parent.is_some() {
                "incremental"
            } else {
                "full"
            }
            .into(),
            format_version: FORMAT_VERSION.into(),
            encryption: self.sealing.as_ref().map(|(e, _)| e.clone()),
            created_at_ms: self.started_ms,
            completed_at_ms: now_ms(),
            completed: true,
            datahike_version: self.opts.datahike_version.clone(),
            compression: self.opts.compression.name().into(),
            history: self.opts.history,
            order: ChunkOrder::Restore,
            datom_count: chunks.iter().map(|c| c.datom_count).sum(),
            stated_chunk_count: Some(chunks.len() as u64),
            size_bytes: chunks.iter().map(|c| c.size_bytes).sum(),
            tx_range,
            max_eid: self.opts.max_eid,
            max_tx: self.opts.max_tx,
            chunks,
            link,
        }
    }

    /// Encode on this thread; compress, hash and store on `parallel` workers. At most
    /// `parallel` chunks are being compressed while one more is being encoded. After a
    /// chunk is durable, the checkpoint is rewritten (serialised by the progress lock) once
    /// the chunks stored since its last rewrite are at least as large as it: the checkpoint
    /// grows with the chunk count, so rewriting it after every chunk would cost time
    /// quadratic in the chunk count, while this keeps its cost below the chunks' own. A
    /// crash loses at most that much progress (resume rewrites those chunks, byte for byte).
    fn write_chunks(&self, datoms: &mut RestoreIter) -> Result<Vec<ChunkMeta>> {
        let progress = Mutex::new(Progress {
            chunks: self.prior.clone(),
            since_checkpoint: 0,
            checkpoint_bytes: 0,
        });
        let produced = Mutex::new(Vec::<u64>::new());
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let failed = AtomicBool::new(false);
        let fail = |e: Error| {
            failed.store(true, Ordering::SeqCst);
            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        };
        let (job_tx, job_rx) = bounded::<(EncodedChunk, Option<(i64, i64)>)>(0);
        std::thread::scope(|scope| {
            for _ in 0..self.opts.parallel {
                let job_rx = job_rx.clone();
                let (progress, fail, failed) = (&progress, &fail, &failed);
                scope.spawn(move || {
                    for (job, instants) in job_rx {
                        if failed.load(Ordering::SeqCst) {
                            continue;
                        }
                        if let Err(e) = self.store_and_checkpoint(job, instants, progress) {
                            fail(e);
                        }
                    }
                });
            }
            let encoded = (|| -> Result<()> {
                let mut enc = ChunkEncoder::new(self.opts.chunk_size)?;
                let send = |c: EncodedChunk, instants: Option<(i64, i64)>| -> Result<()> {
                    produced
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(c.id);
                    job_tx
                        .send((c, instants))
                        .map_err(|_| Error::internal("write chunks", "all chunk writers stopped"))
                };
                // Each value is decoded once, into reused room, straight from the sort's
                // record bytes to the Fressian writer.
                let mut scratch = ValueScratch::default();
                let mut n = 0u64;
                // The instant range of the transactions starting in the open chunk.
                let mut instants: Option<(i64, i64)> = None;
                let tx_instant = self.opts.order.tx_instant.as_ref();
                while let Some(d) = datoms.next_ref()? {
                    n += 1;
                    if n.is_multiple_of(4096) && failed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let mut input = d.value;
                    let v = scratch.decode(&mut input)?;
                    if let Some(c) = enc.push_parts(d.e, d.a, v, d.tx, d.added)? {
                        too_many_chunks(c.id)?;
                        send(c, instants.take())?;
                    }
                    // A transaction's own instant datom (it comes first in its transaction).
                    if let (Value::Inst(ms), true) =
                        (v, d.added && d.e == d.tx && Some(d.a) == tx_instant)
                    {
                        let ms = *ms;
                        instants =
                            Some(instants.map_or((ms, ms), |(lo, hi)| (lo.min(ms), hi.max(ms))));
                    }
                }
                match enc.finish()? {
                    Some(c) => {
                        too_many_chunks(c.id)?;
                        send(c, instants)
                    }
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
        let stored = progress
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .chunks;
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
        instants: Option<(i64, i64)>,
        progress: &Mutex<Progress>,
    ) -> Result<()> {
        let meta = self.store_chunk(job, instants)?;
        self.progress.stored(&meta);
        failpoint::hit("chunk-stored");
        let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
        p.since_checkpoint += meta.size_bytes;
        p.chunks.insert(meta.id, meta);
        if p.since_checkpoint >= p.checkpoint_bytes {
            let metas: Vec<ChunkMeta> = p.chunks.values().cloned().collect();
            p.checkpoint_bytes = self.write_checkpoint(Phase::Writing, &metas, None)?;
            p.since_checkpoint = 0;
        }
        failpoint::hit("checkpoint-written");
        Ok(())
    }

    /// Compress and store one chunk; for a resumed backup, reuse the chunk stored before
    /// when it is intact and decompresses to exactly the chunk just encoded. Nothing the
    /// checkpoint says about a reused chunk is trusted: its entry is rebuilt from the
    /// encoded chunk and the stored bytes.
    fn store_chunk(&self, c: EncodedChunk, instants: Option<(i64, i64)>) -> Result<ChunkMeta> {
        let raw_checksum = chunk::sha256_hex(&c.fressian);
        let rel = layout::chunk_relative_ext(c.id, self.opts.compression.extension());
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
            match self.store.get_max(&key, chunk::MAX_STORED_BYTES) {
                Ok(bytes)
                    if chunk::sha256_hex(&bytes) == prior.checksum
                        && self
                            .unseal(&rel, c.id, &bytes)
                            .and_then(|b| chunk::decompress(&b, c.fressian.len() as u64))
                            .is_ok_and(|raw| raw == c.fressian) =>
                {
                    return Ok(self.chunk_meta(&c, &bytes, raw_checksum, instants));
                }
                Ok(_) => {}
                // Missing, unreadable or not a regular file: written anew below.
                Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Corrupt) => {}
                Err(e) => return Err(e),
            }
        }
        let mut gz = chunk::compress(
            &c.fressian,
            self.opts.compression,
            self.opts.compression_level,
        )?;
        // Encrypted after compression; the manifest's size and SHA-256 are the sealed bytes'.
        if let Some(cipher) = self.cipher() {
            gz = cipher.seal_chunk(&rel, c.id, &gz)?;
        }
        self.store.put(&key, &gz)?;
        Ok(self.chunk_meta(&c, &gz, raw_checksum, instants))
    }

    /// The compressed bytes of a stored chunk (opened for an encrypted backup).
    fn unseal(&self, rel: &str, id: u64, stored: &[u8]) -> Result<Vec<u8>> {
        match self.cipher() {
            Some(cipher) => cipher.open_chunk(rel, id, stored),
            None => Ok(stored.to_vec()),
        }
    }

    /// The manifest entry of encoded chunk `c` stored as `stored`.
    fn chunk_meta(
        &self,
        c: &EncodedChunk,
        stored: &[u8],
        raw_checksum: String,
        instants: Option<(i64, i64)>,
    ) -> ChunkMeta {
        let rel = layout::chunk_relative_ext(c.id, self.opts.compression.extension());
        ChunkMeta {
            id: c.id,
            s3_key: self.store.object_key_of(&self.key(&rel)),
            key: rel,
            tx_range: c.tx_range,
            max_eid: c.max_eid,
            datom_count: c.datom_count,
            size_bytes: stored.len() as u64,
            uncompressed_bytes: c.fressian.len() as u64,
            checksum: chunk::sha256_hex(stored),
            raw_checksum: Some(raw_checksum),
            instant_range: instants,
        }
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
    fn a_zstd_backup_is_recorded_as_such_and_restores_and_verifies_like_gzip() {
        let datoms = history(30);
        let (gz_mem, gz_store) = testing::store();
        let gz = testing::backup(&gz_store, testing::options("db", 500, 30), &datoms);
        let (mem, store) = testing::store();
        let mut opts = testing::options("db", 500, 30);
        opts.compression = Codec::Zstd;
        opts.compression_level = 3;
        let r = testing::backup(&store, opts, &datoms);
        let m = &r.manifest;
        assert_eq!(m.compression, "zstd");
        assert_eq!(m.chunks.len(), gz.manifest.chunks.len(), "same cuts");
        let prefix = format!("db/{}/", m.backup_id);
        for (c, g) in m.chunks.iter().zip(&gz.manifest.chunks) {
            assert_eq!(c.key, format!("chunks/datoms-{}.fressian.zst", c.id));
            // Same datoms, same Fressian bytes: only the compression differs.
            assert_eq!(c.raw_checksum, g.raw_checksum);
            assert_eq!(c.datom_count, g.datom_count);
            let stored = mem.get(&format!("{prefix}{}", c.key)).unwrap();
            assert!(
                stored.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]),
                "a zstd frame"
            );
        }
        // The manifest on disk says :zstd; config.edn records it for a resume.
        let text = String::from_utf8(mem.get(&format!("{prefix}manifest.edn")).unwrap()).unwrap();
        assert!(text.contains(":format/compression :zstd"), "{text}");
        let back = Manifest::from_value(&read_edn(&mem, &format!("{prefix}manifest.edn")).unwrap())
            .unwrap();
        assert_eq!(back.compression, "zstd");
        let config = read_edn(&mem, &format!("{prefix}config.edn")).unwrap();
        assert_eq!(config.get("backup/compression"), Some(&Value::kw("zstd")));
        let gz_prefix = format!("db/{}/", gz.manifest.backup_id);
        let gz_config = read_edn(&gz_mem, &format!("{gz_prefix}config.edn")).unwrap();
        assert_eq!(
            gz_config.get("backup/compression"),
            None,
            "gzip stays unrecorded"
        );
        // Restore and verify read it: the same datoms as the gzip backup's, in order.
        let restored = testing::restore(&store, "db", &m.backup_id).unwrap();
        assert_eq!(
            restored,
            testing::restore(&gz_store, "db", &gz.manifest.backup_id).unwrap()
        );
        assert_eq!(restored.len(), datoms.len());
        assert_eq!(
            testing::stored_datoms(&mem, &r),
            testing::stored_datoms(&gz_mem, &gz)
        );
        let report =
            crate::ops::verify::verify(store.as_ref(), "db", &m.backup_id, true, None).unwrap();
        assert!(report.success(), "{report:?}");
    }

    #[test]
    fn compression_options_are_checked_per_codec() {
        let parse = |s: &str| BackupOptions::from_edn(&crate::codec::edn::parse(s).unwrap());
        let z = parse("{:database-id \"x\" :compression :zstd}").unwrap();
        assert_eq!((z.compression, z.compression_level), (Codec::Zstd, 3));
        let z = parse("{:database-id \"x\" :compression :zstd :compression-level 19}").unwrap();
        assert_eq!(z.compression_level, 19);
        let g = parse("{:database-id \"x\"}").unwrap();
        assert_eq!((g.compression, g.compression_level), (Codec::Gzip, 6));
        for bad in [
            "{:database-id \"x\" :compression :zstd :compression-level 0}",
            "{:database-id \"x\" :compression :zstd :compression-level 20}",
            "{:database-id \"x\" :compression-level 10}",
            "{:database-id \"x\" :compression :lz4}",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
        }
        let err = parse("{:database-id \"x\" :compression :lz4}").unwrap_err();
        assert!(err.message.contains(":gzip :zstd"), "{err}");
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

    /// Counts the bytes written to each file name.
    struct Counting {
        inner: crate::store::memory::MemoryStore,
        written: Mutex<std::collections::HashMap<String, (u64, u64)>>,
    }

    impl Store for Counting {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
            let name = if key.contains("/chunks/") {
                "chunks"
            } else {
                key.rsplit('/').next().unwrap()
            };
            let mut w = self.written.lock().unwrap();
            let e = w.entry(name.to_owned()).or_default();
            e.0 += 1;
            e.1 += bytes.len() as u64;
            drop(w);
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>> {
            self.inner.get(key)
        }
        fn size(&self, key: &str) -> Result<Option<u64>> {
            self.inner.size(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<crate::store::ObjectMeta>> {
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
    fn the_checkpoint_costs_less_than_the_chunks_however_small_they_are() {
        let counting = Arc::new(Counting {
            inner: crate::store::memory::MemoryStore::new(),
            written: Mutex::new(Default::default()),
        });
        let store: Arc<dyn Store> = counting.clone();
        // Chunks of one datom each: 600+ chunks.
        let r = testing::backup(&store, testing::options("db", 1, 150), &history(150));
        assert!(r.manifest.chunks.len() > 600, "{}", r.manifest.chunks.len());
        let w = counting.written.lock().unwrap();
        let (chunk_writes, chunk_bytes) = w["chunks"];
        let (cp_writes, cp_bytes) = w["checkpoint.edn"];
        assert_eq!(chunk_writes, r.manifest.chunks.len() as u64);
        // Rewriting the whole checkpoint after every chunk would write ~n²/2 entries;
        // here the checkpoint never costs more than the chunks stored since its last
        // rewrite, plus the final one.
        let last = w["manifest.edn"].1 * 2;
        assert!(
            cp_bytes <= chunk_bytes + 2 * last,
            "{cp_bytes} checkpoint bytes for {chunk_bytes} chunk bytes"
        );
        assert!(
            cp_writes < chunk_writes / 4,
            "{cp_writes} rewrites for {chunk_writes} chunks"
        );
    }

    #[test]
    fn too_large_chunk_sizes_are_refused() {
        let parse = |s: &str| BackupOptions::from_edn(&crate::codec::edn::parse(s).unwrap());
        assert!(parse("{:database-id \"x\" :chunk-size 536870912}").is_ok());
        for bad in [
            "{:database-id \"x\" :chunk-size 536870913}",
            "{:database-id \"x\" :chunk-size 0}",
            "{:database-id \"x\" :chunk-size ##NaN}",
            "{:database-id \"x\" :parallel ##Inf}",
            "{:database-id \"x\\u202Ey\"}",
        ] {
            assert_eq!(
                parse(bad).unwrap_err().kind,
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }
}
