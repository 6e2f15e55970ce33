//! Typed results of [`crate::ops`] as the EDN maps the Clojure API returns: the one place
//! where results take their JVM shape (the CLI renders the same structs as text or JSON).

use jni::objects::{JObject, JValue};
use jni::JNIEnv;

use crate::chain::plan::{Available, Point};
use crate::chain::retention::Reason;
use crate::codec::wire::Batch;
use crate::log::catchup::CatchUpReport;
use crate::log::writer::{ErrorInfo, Status};
use crate::model::{kw_map, Value};
use crate::ops::backup::{BackupResult, ProgressSnapshot, Stage};
use crate::ops::capture::{Plan, Session};
use crate::ops::cleanup::CleanupReport;
use crate::ops::inspect::Inspection;
use crate::ops::list::BackupSummary;
use crate::ops::prune::PruneReport;
use crate::ops::repair::RepairReport;
use crate::ops::restore::RestoreInfo;
use crate::ops::resume::BackupStatus;
use crate::ops::verify::VerifyReport;
use crate::repo::manifest::Manifest;

fn strings(v: &[String]) -> Value {
    Value::Vector(v.iter().map(|s| Value::str(s)).collect())
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Nil, Value::str)
}

fn opt_long(n: Option<i64>) -> Value {
    n.map_or(Value::Nil, Value::Long)
}

fn pair(r: Option<(i64, i64)>, inst: bool) -> Value {
    let one = |x| if inst { Value::Inst(x) } else { Value::Long(x) };
    r.map_or(Value::Nil, |(a, b)| Value::Vector(vec![one(a), one(b)]))
}

/// A backup's chain facts: `:type :parent :base :after-tx :tx-range :instant-range`.
fn link_entries(m: &Manifest) -> Vec<(&'static str, Value)> {
    vec![
        ("type", Value::kw(&m.backup_type)),
        ("parent", opt_str(m.link.parent.as_deref())),
        ("base", opt_str(m.link.base.as_deref())),
        ("after-tx", opt_long(m.link.after_tx)),
        ("tx-range", pair(m.tx_range, false)),
        ("instant-range", pair(m.link.instant_range, true)),
    ]
}

/// A completed backup: `{:success true :backup-id … :path … :datom-count … …}`.
pub fn backup_result(r: &BackupResult) -> Value {
    let m = &r.manifest;
    kw_map(
        [
            ("success", Value::Bool(true)),
            ("backup-id", Value::str(&m.backup_id)),
            ("database-id", Value::str(&m.database_id)),
            ("path", Value::str(&r.location)),
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
        ]
        .into_iter()
        .chain(link_entries(m)),
    )
}

/// One backup as `list-backups` shows it.
pub fn summary(s: &BackupSummary) -> Value {
    let l = s.listing();
    let mut entries = vec![
        ("backup-id", Value::str(&l.backup_id)),
        ("type", Value::kw(&l.backup_type)),
        ("created-at", Value::Inst(l.created_at_ms)),
        ("completed?", Value::Bool(l.completed)),
        ("datom-count", Value::Long(l.datom_count as i64)),
        ("size-bytes", Value::Long(l.size_bytes as i64)),
        ("chunk-count", Value::Long(l.chunk_count as i64)),
        ("updated-at", Value::Inst(l.updated_at_ms)),
    ];
    if let Some(h) = l.history {
        entries.push(("history?", Value::Bool(h)));
    }
    if let Some(f) = l.format {
        entries.push(("format", Value::kw(f)));
    }
    if let Some(t) = l.max_tx {
        entries.push(("max-tx", Value::Long(t)));
    }
    if let Some(c) = &l.chain {
        entries.extend([
            ("parent", opt_str(c.parent.as_deref())),
            ("base", opt_str(c.base.as_deref())),
            ("after-tx", opt_long(c.after_tx)),
            ("tx-range", pair(c.tx_range, false)),
            ("instant-range", pair(c.instant_range, true)),
        ]);
    }
    if let Some(log) = &l.log {
        entries.extend([
            ("segment-count", Value::Long(log.segment_count as i64)),
            ("closed?", Value::Bool(log.closed)),
            ("reason", Value::str(&log.reason)),
        ]);
    }
    if l.pruning {
        entries.push(("pruning?", Value::Bool(true)));
    }
    if !l.problems.is_empty() {
        entries.push(("problems", strings(&l.problems)));
    }
    if let Some(p) = &l.progress {
        let progress = kw_map([
            (
                "phase",
                p.phase.map_or(Value::Nil, |ph| Value::kw(ph.keyword())),
            ),
            ("chunks-stored", Value::Long(p.chunks_stored as i64)),
            ("datoms-received", Value::Long(p.datoms_received as i64)),
            ("error", p.error.as_deref().map_or(Value::Nil, Value::str)),
        ]);
        entries.push(("progress", progress));
    }
    kw_map(entries)
}

/// A running backup's counters: `{:stage :reading|:sorting|:writing|:committing|:done
/// :datoms-received … :chunks-stored … :datoms-stored … :bytes-stored …}`.
pub fn backup_progress(p: &ProgressSnapshot) -> Value {
    let stage = match p.stage {
        Stage::Reading => "reading",
        Stage::Sorting => "sorting",
        Stage::Writing => "writing",
        Stage::Committing => "committing",
        Stage::Done => "done",
    };
    kw_map([
        ("stage", Value::kw(stage)),
        ("datoms-received", Value::Long(p.datoms_received as i64)),
        ("chunks-stored", Value::Long(p.chunks_stored as i64)),
        ("datoms-stored", Value::Long(p.datoms_stored as i64)),
        ("bytes-stored", Value::Long(p.bytes_stored as i64)),
    ])
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
    entries.push(("chain", strings(&r.chain)));
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

/// What `rewrap-backup-keys` did: `{:key-id … :rewrapped [ids] :already [ids] :plain [ids]}`.
pub fn rewrap_report(r: &crate::ops::rewrap::RewrapReport) -> Value {
    let ids = |v: &[String]| Value::Vector(v.iter().map(|s| Value::str(s)).collect());
    kw_map([
        ("key-id", Value::str(&r.key_id)),
        ("rewrapped", ids(&r.rewrapped)),
        ("already", ids(&r.already)),
        ("plain", ids(&r.plain)),
    ])
}

/// What `inspect` found: `{:backup-id … :database-id … :complete? … :manifest {…}|nil
/// :manifest-error … :checkpoint {…}|nil :objects n :stored-bytes n :time-range [#inst
/// #inst]|nil :chain [{:backup-id … :type … :tx-range […]} …]}` (manifest and checkpoint as
/// their files hold them).
pub fn inspection(i: &Inspection) -> Value {
    let range = |r: Option<(i64, i64)>, f: fn(i64) -> Value| {
        r.map_or(Value::Nil, |(a, b)| Value::Vector(vec![f(a), f(b)]))
    };
    kw_map([
        ("backup-id", Value::str(&i.backup_id)),
        ("database-id", Value::str(&i.database_id)),
        ("complete?", Value::Bool(i.complete)),
        (
            "manifest",
            i.manifest.as_ref().map_or(Value::Nil, |m| m.to_value()),
        ),
        (
            "manifest-error",
            i.manifest_error.as_deref().map_or(Value::Nil, Value::str),
        ),
        (
            "checkpoint",
            i.checkpoint.as_ref().map_or(Value::Nil, |c| c.to_value()),
        ),
        ("objects", Value::Long(i.objects as i64)),
        ("stored-bytes", Value::Long(i.stored_bytes as i64)),
        ("time-range", range(i.time_range, Value::Inst)),
        (
            "chain",
            Value::Vector(
                i.chain
                    .iter()
                    .map(|l| {
                        kw_map([
                            ("backup-id", Value::str(&l.backup_id)),
                            ("type", Value::kw(&l.backup_type)),
                            ("tx-range", range(l.tx_range, Value::Long)),
                        ])
                    })
                    .collect(),
            ),
        ),
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

fn available(a: &Available) -> Value {
    kw_map([
        ("first-tx", Value::Long(a.first_tx)),
        ("last-tx", Value::Long(a.last_tx)),
        (
            "first-instant",
            a.first_instant.map_or(Value::Nil, Value::Inst),
        ),
        (
            "last-instant",
            a.last_instant.map_or(Value::Nil, Value::Inst),
        ),
    ])
}

/// What a restore session knows before the first datom: `{:backup-id … :format …
/// :history? … :datom-count … :chunk-count … :max-eid … :max-tx … :created-at …
/// :datahike-config …}`; for a chain or a point in time also `:chain`, `:links`,
/// `:available`, `:as-of`, `:through-tx` and `:bytes-to-read` (`:datom-count` and
/// `:chunk-count` are then those of the chunks read). `reached` — the last transaction
/// handed out and its instant — gives `:restored-to-tx` and `:restored-to-instant`.
pub fn restore_info(info: &RestoreInfo, reached: (Option<i64>, Option<i64>)) -> Value {
    let m = &info.manifest;
    let mut v = kw_map([
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
        ("restored-to-tx", opt_long(reached.0)),
        (
            "restored-to-instant",
            reached.1.map_or(Value::Nil, Value::Inst),
        ),
    ]);
    if let (None, Value::Map(entries)) = (&info.chain, &mut v) {
        entries.push((
            Value::kw("chain"),
            strings(std::slice::from_ref(&m.backup_id)),
        ));
    }
    if let (Some(c), Value::Map(entries)) = (&info.chain, &mut v) {
        let point = match c.point {
            Point::Latest => Value::Nil,
            Point::Tx(t) => kw_map([("tx", Value::Long(t))]),
            Point::Time(ms) => kw_map([("time", Value::Inst(ms))]),
        };
        for (k, x) in [
            ("datom-count", Value::Long(c.datoms as i64)),
            ("chunk-count", Value::Long(c.chunks as i64)),
        ] {
            if let Some(slot) = entries.iter_mut().find(|(key, _)| *key == Value::kw(k)) {
                slot.1 = x;
            }
        }
        for (k, x) in [
            ("chain", strings(&c.chain)),
            ("links", strings(&c.links)),
            ("available", available(&c.available)),
            ("as-of", point),
            ("through-tx", opt_long(c.through_tx)),
            ("bytes-to-read", Value::Long(c.bytes as i64)),
        ] {
            entries.push((Value::kw(k), x));
        }
    }
    v
}

fn reason(r: &Reason) -> Value {
    match r {
        Reason::Last => Value::kw("keep-last"),
        Reason::Daily => Value::kw("keep-daily"),
        Reason::Weekly => Value::kw("keep-weekly"),
        Reason::Monthly => Value::kw("keep-monthly"),
        Reason::DependencyOf(id) => Value::Vector(vec![Value::kw("dependency-of"), Value::str(id)]),
        Reason::LogOf(id) => Value::Vector(vec![Value::kw("log-of"), Value::str(id)]),
    }
}

/// `{:dry-run? … :kept [{:backup-id … :reasons […]}] :deleted [ids] :finished [ids]
/// :rescued [ids] :incomplete [ids] :objects-deleted n}`.
pub fn prune_report(r: &PruneReport) -> Value {
    kw_map([
        ("database-id", Value::str(&r.database_id)),
        ("dry-run?", Value::Bool(r.dry_run)),
        (
            "kept",
            Value::Vector(
                r.kept
                    .iter()
                    .map(|(id, why)| {
                        kw_map([
                            ("backup-id", Value::str(id)),
                            ("reasons", Value::Vector(why.iter().map(reason).collect())),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("deleted", strings(&r.deleted)),
        ("finished", strings(&r.finished)),
        ("rescued", strings(&r.rescued)),
        ("incomplete", strings(&r.incomplete)),
        ("objects-deleted", Value::Long(r.objects_deleted as i64)),
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
        ("last-error", s.last_error().map_or(Value::Nil, error_info)),
        (
            "recent-errors",
            Value::Vector(s.recent_errors.iter().map(error_info).collect()),
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
