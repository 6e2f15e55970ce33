//! Typed results of [`crate::ops`] as the EDN maps the Clojure API returns: the one place
//! where results take their JVM shape (the CLI renders the same structs as text or JSON).

use jni::objects::{JObject, JValue};
use jni::JNIEnv;

use crate::codec::wire::Batch;
use crate::log::catchup::CatchUpReport;
use crate::log::writer::{ErrorInfo, Status};
use crate::model::{kw_map, Value};
use crate::ops::backup::BackupResult;
use crate::ops::capture::{Plan, Session};
use crate::ops::cleanup::CleanupReport;
use crate::ops::list::BackupSummary;
use crate::ops::repair::RepairReport;
use crate::ops::restore::RestoreInfo;
use crate::ops::resume::BackupStatus;
use crate::ops::verify::VerifyReport;
use crate::repo::checkpoint::Checkpoint;

fn strings(v: &[String]) -> Value {
    Value::Vector(v.iter().map(|s| Value::str(s)).collect())
}

/// A completed backup: `{:success true :backup-id … :path … :datom-count … …}`.
pub fn backup_result(r: &BackupResult) -> Value {
    let m = &r.manifest;
    kw_map([
        ("success", Value::Bool(true)),
        ("backup-id", Value::str(&m.backup_id)),
        ("database-id", Value::str(&m.database_id)),
        ("path", Value::str(&r.location)),
        ("type", Value::kw(&m.backup_type)),
        ("history?", Value::Bool(m.history)),
        ("datom-count", Value::Long(m.datom_count as i64)),
        ("chunk-count", Value::Long(m.chunks.len() as i64)),
        ("total-size-bytes", Value::Long(m.size_bytes as i64)),
        (
            "uncompressed-bytes",
            Value::Long(r.uncompressed_bytes as i64),
        ),
        (
            "skipped-system-datoms",
            Value::Long(r.skipped_system_datoms as i64),
        ),
        ("max-eid", Value::Long(m.max_eid)),
        ("max-tx", Value::Long(m.max_tx)),
        ("duration-ms", Value::Long(r.duration_ms as i64)),
    ])
}

/// A log of continuous backup as `list-backups` shows it: `{:backup-id … :type :log
/// :parent … :base … :after-tx … :max-tx … :tx-range … :instant-range … :segment-count …
/// :datom-count … :size-bytes … :closed? … :problems […]}`.
fn log_summary(s: &BackupSummary, log: &crate::log::read::StoredLog) -> Value {
    let h = &log.head;
    let pair = |r: Option<(i64, i64)>, inst: bool| {
        r.map_or(Value::Nil, |(a, b)| {
            let one = |x| if inst { Value::Inst(x) } else { Value::Long(x) };
            Value::Vector(vec![one(a), one(b)])
        })
    };
    let tx_range = (!log.segments.is_empty()).then_some((h.after_tx + 1, log.through));
    kw_map([
        ("backup-id", Value::str(&s.backup_id)),
        ("type", Value::kw("log")),
        ("created-at", Value::Inst(s.created_at_ms)),
        ("updated-at", Value::Inst(s.updated_at_ms)),
        ("completed?", Value::Bool(true)),
        ("history?", Value::Bool(h.history)),
        ("parent", Value::str(&h.parent)),
        ("base", Value::str(&h.base)),
        ("after-tx", Value::Long(h.after_tx)),
        ("max-tx", Value::Long(log.through)),
        ("tx-range", pair(tx_range, false)),
        ("instant-range", pair(log.instant_range(), true)),
        ("segment-count", Value::Long(log.segments.len() as i64)),
        ("datom-count", Value::Long(log.datom_count() as i64)),
        ("size-bytes", Value::Long(log.segment_bytes() as i64)),
        ("closed?", Value::Bool(log.closed.is_some())),
        ("reason", Value::str(&h.reason)),
        ("problems", strings(&log.problems)),
    ])
}

/// One backup as `list-backups` shows it.
pub fn summary(s: &BackupSummary) -> Value {
    if let Some(log) = &s.log {
        return log_summary(s, log);
    }
    let m = s.manifest.as_ref();
    let cp = s.checkpoint.as_ref();
    let mut entries = vec![
        ("backup-id", Value::str(&s.backup_id)),
        (
            "type",
            Value::kw(m.map_or("full", |m| m.backup_type.as_str())),
        ),
        ("created-at", Value::Inst(s.created_at_ms)),
        ("completed?", Value::Bool(s.completed)),
        (
            "datom-count",
            Value::Long(
                m.map_or_else(|| cp.map_or(0, |c| c.datoms_stored), |m| m.datom_count) as i64,
            ),
        ),
        (
            "size-bytes",
            Value::Long(m.map_or(s.stored_bytes, |m| m.size_bytes) as i64),
        ),
        (
            "chunk-count",
            Value::Long(
                m.map_or_else(|| cp.map_or(0, |c| c.chunks.len()), |m| m.chunks.len()) as i64,
            ),
        ),
        ("updated-at", Value::Inst(s.updated_at_ms)),
    ];
    if let Some(m) = m {
        entries.push(("history?", Value::Bool(m.history)));
        entries.push(("format", Value::kw(m.order.format_name())));
    }
    if !s.problems.is_empty() {
        entries.push(("problems", strings(&s.problems)));
    }
    if !s.completed {
        let progress = kw_map([
            ("phase", cp.map_or(Value::Nil, |c| Value::kw(phase_name(c)))),
            (
                "chunks-stored",
                Value::Long(cp.map_or(0, |c| c.chunks.len()) as i64),
            ),
            (
                "datoms-received",
                Value::Long(cp.map_or(0, |c| c.datoms_received) as i64),
            ),
            (
                "error",
                cp.and_then(|c| c.error.as_deref())
                    .map_or(Value::Nil, Value::str),
            ),
        ]);
        entries.push(("progress", progress));
    }
    kw_map(entries)
}

fn phase_name(c: &Checkpoint) -> &'static str {
    use crate::repo::checkpoint::Phase::*;
    match c.phase {
        Ingest => "ingest",
        Writing => "writing",
        Committing => "committing",
        Aborted => "aborted",
    }
}

/// The vector `list-backups` returns.
pub fn summaries(list: &[BackupSummary]) -> Value {
    Value::Vector(list.iter().map(summary).collect())
}

/// `{:success … :backup-id … :complete? … :chunk-count … :all-chunks-present …
/// :checksums-valid … :deep? … [:datoms-verified …] :problems […]}`.
pub fn verify_report(r: &VerifyReport) -> Value {
    let mut entries = vec![
        ("success", Value::Bool(r.success())),
        ("backup-id", Value::str(&r.backup_id)),
        ("database-id", Value::str(&r.database_id)),
        ("complete?", Value::Bool(r.complete)),
        ("chunk-count", Value::Long(r.chunk_count as i64)),
        ("all-chunks-present", Value::Bool(r.all_chunks_present)),
        ("checksums-valid", Value::Bool(r.checksums_valid)),
        ("deep?", Value::Bool(r.deep)),
    ];
    if let Some(n) = r.datoms_verified {
        entries.push(("datoms-verified", Value::Long(n as i64)));
    }
    entries.push(("problems", strings(&r.problems)));
    kw_map(entries)
}

/// `{:removed [ids] :kept-incomplete [ids] :damaged [ids] :objects-deleted n
/// :uploads-aborted n :temporaries-removed n :leftovers-kept n}`.
pub fn cleanup_report(r: &CleanupReport) -> Value {
    kw_map([
        ("database-id", Value::str(&r.database_id)),
        ("removed", strings(&r.removed)),
        ("kept-incomplete", strings(&r.kept_incomplete)),
        ("damaged", strings(&r.damaged)),
        ("objects-deleted", Value::Long(r.objects_deleted as i64)),
        ("uploads-aborted", Value::Long(r.uploads_aborted as i64)),
        (
            "temporaries-removed",
            Value::Long(r.temporaries_removed as i64),
        ),
        ("leftovers-kept", Value::Long(r.leftovers_kept as i64)),
    ])
}

/// `{:backup-id … :repaired? … :chunk-count … :datom-count …}`.
pub fn repair_report(r: &RepairReport) -> Value {
    kw_map([
        ("backup-id", Value::str(&r.backup_id)),
        ("repaired?", Value::Bool(r.repaired)),
        ("chunk-count", Value::Long(r.chunk_count as i64)),
        ("datom-count", Value::Long(r.datom_count as i64)),
    ])
}

/// `{:state :complete|:incomplete|:missing …listing… :config …}`.
pub fn status(s: &BackupStatus) -> Value {
    let (state, listing, config) = match s {
        BackupStatus::Missing => return kw_map([("state", Value::kw("missing"))]),
        BackupStatus::Complete { summary, config } => ("complete", summary, config),
        BackupStatus::Incomplete { summary, config } => ("incomplete", summary, config),
    };
    let mut v = summary(listing);
    if let Value::Map(entries) = &mut v {
        entries.push((Value::kw("state"), Value::kw(state)));
        entries.push((Value::kw("config"), config.clone()));
    }
    v
}

/// What a restore session knows before the first datom: `{:backup-id … :format …
/// :history? … :datom-count … :chunk-count … :max-eid … :max-tx … :created-at …
/// :datahike-config …}`.
pub fn restore_info(info: &RestoreInfo) -> Value {
    let m = &info.manifest;
    kw_map([
        ("backup-id", Value::str(&m.backup_id)),
        ("database-id", Value::str(&m.database_id)),
        ("format", Value::kw(m.order.format_name())),
        ("history?", Value::Bool(m.history)),
        ("datom-count", Value::Long(m.datom_count as i64)),
        ("chunk-count", Value::Long(m.chunks.len() as i64)),
        ("max-eid", Value::Long(m.max_eid)),
        ("max-tx", Value::Long(m.max_tx)),
        ("created-at", Value::Inst(m.created_at_ms)),
        ("datahike-config", info.datahike_config.clone()),
    ])
}

fn opt_inst(ms: Option<i64>) -> Value {
    ms.map_or(Value::Nil, Value::Inst)
}

fn error_info(e: &ErrorInfo) -> Value {
    kw_map([
        ("seq", Value::Long(e.seq as i64)),
        (
            "datacamp/error",
            Value::Keyword(crate::model::Name::new(Some("datacamp"), e.kind.keyword())),
        ),
        ("op", Value::str(&e.op)),
        ("message", Value::str(&e.message)),
        ("key", e.key.as_deref().map_or(Value::Nil, Value::str)),
        ("hint", e.hint.as_deref().map_or(Value::Nil, Value::str)),
        ("at", Value::Inst(e.at_ms)),
    ])
}

/// A capture's status as the native side knows it: `{:log-id … :last-durable-tx …
/// :last-durable-instant … :lag-ms … :segments-written … :bytes-written … :last-error …}`
/// (the JVM adds what it knows: `:running?`, `:queued-txs`, …).
pub fn capture_status(s: &Status, log_id: &str) -> Value {
    kw_map([
        ("database-id", Value::str(&s.database_id)),
        ("log-id", Value::str(log_id)),
        ("logs", strings(&s.logs)),
        ("captured-through", Value::Long(s.captured_through)),
        ("last-durable-tx", Value::Long(s.durable_through)),
        ("last-durable-instant", opt_inst(s.durable_instant_ms)),
        ("lag-ms", Value::Long(s.lag_ms)),
        ("pending-segments", Value::Long(s.pending_segments as i64)),
        ("pending-bytes", Value::Long(s.pending_bytes as i64)),
        ("spooled?", Value::Bool(s.spooled)),
        ("txs-captured", Value::Long(s.txs_captured as i64)),
        ("segments-written", Value::Long(s.segments_written as i64)),
        ("bytes-written", Value::Long(s.bytes_written as i64)),
        ("datoms-written", Value::Long(s.datoms_written as i64)),
        ("spool-full?", Value::Bool(s.spool_full)),
        ("spool-refusals", Value::Long(s.refusals as i64)),
        (
            "target-reachable?",
            Value::Bool(s.outage_since_ms.is_none()),
        ),
        ("outage-since", opt_inst(s.outage_since_ms)),
        (
            "last-error",
            s.last_error.as_ref().map_or(Value::Nil, error_info),
        ),
        ("closed?", Value::Bool(s.closed)),
    ])
}

/// How a capture session started: `{:log-id … :plan {:kind :continue :parent … :base …
/// :after …} | {:kind :new-chain :backup-id … :reason …} :recovered-segments n}`.
pub fn capture_info(s: &Session) -> Value {
    let plan = match s.plan() {
        Plan::Continue {
            parent,
            base,
            after,
        } => kw_map([
            ("kind", Value::kw("continue")),
            ("parent", Value::str(parent)),
            ("base", Value::str(base)),
            ("after", Value::Long(*after)),
        ]),
        Plan::NewChain { backup_id, reason } => kw_map([
            ("kind", Value::kw("new-chain")),
            ("backup-id", Value::str(backup_id)),
            ("reason", Value::str(reason)),
        ]),
    };
    kw_map([
        ("log-id", Value::str(&s.log_id())),
        ("plan", plan),
        ("recovered-segments", Value::Long(s.recovered() as i64)),
    ])
}

/// What a catch-up appended: `{:txs … :datoms … :datoms-read … :refused? …}`.
pub fn catch_up_report(r: &CatchUpReport) -> Value {
    kw_map([
        ("txs", Value::Long(r.txs as i64)),
        ("datoms", Value::Long(r.datoms as i64)),
        ("datoms-read", Value::Long(r.datoms_read as i64)),
        ("refused?", Value::Bool(r.refused)),
    ])
}

/// Convert a batch into Java arrays: `Object[]{Long id, long[] e, int[] a, long[] tx,
/// boolean[] added, byte[] vtag, long[] vnum, byte[] vbytes, byte[] newAttrs}`.
pub fn batch_to_java<'l>(
    env: &mut JNIEnv<'l>,
    id: i64,
    b: &Batch,
) -> jni::errors::Result<JObject<'l>> {
    let n = b.len() as i32;
    let e = env.new_long_array(n)?;
    env.set_long_array_region(&e, 0, &b.e)?;
    let a = env.new_int_array(n)?;
    env.set_int_array_region(&a, 0, &b.a)?;
    let tx = env.new_long_array(n)?;
    env.set_long_array_region(&tx, 0, &b.tx)?;
    let added = env.new_boolean_array(n)?;
    env.set_boolean_array_region(&added, 0, &b.added)?;
    let vtag = env.new_byte_array(n)?;
    env.set_byte_array_region(&vtag, 0, &b.vtag)?;
    let vnum = env.new_long_array(n)?;
    env.set_long_array_region(&vnum, 0, &b.vnum)?;
    let vbytes = env.byte_array_from_slice(&b.vbytes)?;
    let new_attrs = env.byte_array_from_slice(&b.new_attrs)?;
    let boxed_id = env.new_object("java/lang/Long", "(J)V", &[JValue::Long(id)])?;
    let items: [JObject; 9] = [
        boxed_id,
        e.into(),
        a.into(),
        tx.into(),
        added.into(),
        vtag.into(),
        vnum.into(),
        vbytes.into(),
        new_attrs.into(),
    ];
    let out = env.new_object_array(items.len() as i32, "java/lang/Object", JObject::null())?;
    for (i, item) in items.iter().enumerate() {
        env.set_object_array_element(&out, i as i32, item)?;
    }
    Ok(out.into())
}
