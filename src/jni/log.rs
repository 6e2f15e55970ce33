//! The `Java_datacamp_jni_Native_log*` entry points: a continuous capture session
//! ([`crate::ops::capture::Session`]) driven by the JVM's capture thread.
//!
//! A session is shared behind an `Arc`: the registry's lock is held only to find it, so a
//! status call from another JVM thread never waits for a push or a catch-up in progress.

use std::sync::Arc;
use std::time::Duration;

use jni::objects::{JBooleanArray, JByteArray, JClass, JIntArray, JLongArray, JString};
use jni::sys::{jboolean, jint, jlong, jstring};
use jni::JNIEnv;

use crate::error::{Error, Result};
use crate::log::writer::{Appended, TxMark};
use crate::model::Value;
use crate::ops::capture::{order_spec, Session, SessionOptions};

use super::boundary::{guard, jni_error};
use super::handles::Registry;
use super::{convert, edn_arg, edn_result, read_batch, string, Columns};

static LOGS: Registry<Arc<Session>> = Registry::new("capture session");

/// Longs per transaction mark in `logPush`'s `marks` array.
pub const MARK_LONGS: usize = 6;

fn session(handle: jlong) -> Result<Arc<Session>> {
    LOGS.with(handle, |s| Ok(s.clone()))
}

/// Parse `count` marks: `[before after datoms committedMs instantMs flags]` each, with
/// `instantMs == Long.MIN_VALUE` for none and flag bit 0 "caught up".
fn marks(env: &mut JNIEnv, count: jint, arr: &JLongArray) -> Result<Vec<(TxMark, usize)>> {
    if count < 0 {
        return Err(Error::invalid("push transactions", "negative mark count"));
    }
    let len = count as usize * MARK_LONGS;
    let real = env
        .get_array_length(arr)
        .map_err(|e| jni_error("read marks", e))? as usize;
    if real < len {
        return Err(Error::invalid(
            "push transactions",
            format!("{count} marks need {len} longs, the array has {real}"),
        ));
    }
    let mut buf = vec![0i64; len];
    env.get_long_array_region(arr, 0, &mut buf)
        .map_err(|e| jni_error("read marks", e))?;
    buf.chunks(MARK_LONGS)
        .map(|m| {
            if m[2] < 0 {
                return Err(Error::invalid("push transactions", "negative datom count"));
            }
            Ok((
                TxMark {
                    before: m[0],
                    after: m[1],
                    committed_ms: m[3],
                    instant_ms: (m[4] != i64::MIN).then_some(m[4]),
                    caught_up: m[5] & 1 != 0,
                },
                m[2] as usize,
            ))
        })
        .collect()
}

/// The S3 defaults of a capture's target: each upload attempt gives up sooner (the writer
/// retries on its own, forever, and shows the outage meanwhile).
fn capture_target(target: Value) -> Value {
    match target {
        Value::Map(mut entries) if target_has(&entries, "bucket") => {
            for (k, v) in [("max-retries", 2), ("timeout-ms", 30_000)] {
                if !target_has(&entries, k) {
                    entries.push((Value::kw(k), Value::Long(v)));
                }
            }
            Value::Map(entries)
        }
        other => other,
    }
}

fn target_has(entries: &[(Value, Value)], key: &str) -> bool {
    let k = Value::kw(key);
    entries.iter().any(|(x, _)| *x == k)
}

/// `long Native.logOpen(String targetEdn, String optionsEdn)`: open a capture session.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logOpen(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    options_edn: JString,
) -> jlong {
    guard(&mut env, "start continuous backup", 0, |env| {
        let opts = SessionOptions::from_edn(&edn_arg(env, &options_edn, "the options")?)?;
        let target = capture_target(edn_arg(env, &target_edn, "the target")?);
        let store = crate::store::open_target(&target)?;
        Ok(LOGS.insert(Arc::new(Session::open(store, opts)?)))
    })
}

/// `String Native.logInfo(long handle)`: how the session started.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logInfo(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, "capture info", std::ptr::null_mut(), |env| {
        let s = session(handle)?;
        edn_result(env, &convert::capture_info(&s))
    })
}

/// `int Native.logPush(long handle, <batch columns>, int markCount, long[] marks)`: append
/// live transactions; 0 when taken, 1 when refused (the spool is full).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_datacamp_jni_Native_logPush(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    n: jint,
    e: JLongArray,
    a: JIntArray,
    tx: JLongArray,
    added: JBooleanArray,
    vtag: JByteArray,
    vnum: JLongArray,
    vbytes: JByteArray,
    vbytes_len: jint,
    new_attrs: JByteArray,
    new_attrs_len: jint,
    mark_count: jint,
    mark_longs: JLongArray,
) -> jint {
    guard(&mut env, "push transactions", 0, |env| {
        let cols = Columns {
            n,
            e,
            a,
            tx,
            added,
            vtag,
            vnum,
            vbytes,
            vbytes_len,
            new_attrs,
            new_attrs_len,
        };
        let batch = read_batch(env, &cols)?;
        let marks = marks(env, mark_count, &mark_longs)?;
        let s = session(handle)?;
        Ok(match s.push(&batch, &marks)? {
            Appended::Accepted => 0,
            Appended::Refused => 1,
        })
    })
}

/// `boolean Native.logTick(long handle)`: seal the open segment when it is due.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logTick(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jboolean {
    guard(&mut env, "seal segment", 0, |_| {
        Ok(u8::from(session(handle)?.writer().tick()?))
    })
}

/// `long Native.logCatchUpBegin(long handle, long through, String orderEdn)`: begin a
/// catch-up up to `through`; returns the transaction it starts after. `orderEdn` (or null)
/// names the schema facts of the database value walked (`:ref-attrs`, `:tx-instant-attr`,
/// `:skip-tx0?`).
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logCatchUpBegin(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    through: jlong,
    order_edn: JString,
) -> jlong {
    guard(&mut env, "catch up", 0, |env| {
        let order = if order_edn.is_null() {
            None
        } else {
            Some(order_spec(&edn_arg(env, &order_edn, "the schema facts")?)?)
        };
        session(handle)?.catch_up_begin(through, order)
    })
}

/// `void Native.logCatchUpPush(long handle, <batch columns>)`: one batch of the history walk.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_datacamp_jni_Native_logCatchUpPush(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    n: jint,
    e: JLongArray,
    a: JIntArray,
    tx: JLongArray,
    added: JBooleanArray,
    vtag: JByteArray,
    vnum: JLongArray,
    vbytes: JByteArray,
    vbytes_len: jint,
    new_attrs: JByteArray,
    new_attrs_len: jint,
) {
    guard(&mut env, "catch up", (), |env| {
        let cols = Columns {
            n,
            e,
            a,
            tx,
            added,
            vtag,
            vnum,
            vbytes,
            vbytes_len,
            new_attrs,
            new_attrs_len,
        };
        let batch = read_batch(env, &cols)?;
        session(handle)?.catch_up_push(batch)
    })
}

/// `String Native.logCatchUpFinish(long handle)`: append the caught-up transactions.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logCatchUpFinish(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, "catch up", std::ptr::null_mut(), |env| {
        let r = session(handle)?.catch_up_finish()?;
        edn_result(env, &convert::catch_up_report(&r))
    })
}

/// `void Native.logCatchUpAbort(long handle)`: drop a catch-up in progress.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logCatchUpAbort(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "catch up", (), |_| {
        session(handle)?.catch_up_abort();
        Ok(())
    })
}

/// `String Native.logNewChain(long handle, String backupId, long after, boolean dual,
/// String reason)`: start a new chain's log; returns `{:log-id … :backup-id …}` (a new
/// time-ordered backup id when `backupId` is null).
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logNewChain(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    backup_id: JString,
    after: jlong,
    dual: jboolean,
    reason: JString,
) -> jstring {
    guard(&mut env, "start a new chain", std::ptr::null_mut(), |env| {
        let id = if backup_id.is_null() {
            uuid::Uuid::now_v7().to_string()
        } else {
            string(env, &backup_id, "the backup id")?
        };
        let reason = string(env, &reason, "the reason")?;
        let log = session(handle)?.new_chain(&id, after, dual != 0, &reason)?;
        edn_result(
            env,
            &crate::model::kw_map([("log-id", Value::str(&log)), ("backup-id", Value::str(&id))]),
        )
    })
}

/// `void Native.logRetire(long handle, String logId, String reason)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logRetire(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    log_id: JString,
    reason: JString,
) {
    guard(&mut env, "retire log", (), |env| {
        let id = string(env, &log_id, "the log id")?;
        let reason = string(env, &reason, "the reason")?;
        session(handle)?.retire(&id, &reason)
    })
}

/// `String Native.logStatus(long handle)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logStatus(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, "capture status", std::ptr::null_mut(), |env| {
        let s = session(handle)?;
        edn_result(env, &convert::capture_status(&s.status(), &s.log_id()))
    })
}

/// `String Native.logFlush(long handle, long timeoutMs)`: seal and wait (bounded) until
/// everything captured is durable; returns the status.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logFlush(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    timeout_ms: jlong,
) -> jstring {
    guard(&mut env, "flush capture", std::ptr::null_mut(), |env| {
        let s = session(handle)?;
        let st = s
            .writer()
            .flush(Duration::from_millis(timeout_ms.max(0) as u64))?;
        edn_result(env, &convert::capture_status(&st, &s.log_id()))
    })
}

/// `String Native.logClose(long handle, long timeoutMs, String reason)`: flush (bounded),
/// close the logs, release the lock; returns the final status.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logClose(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
    timeout_ms: jlong,
    reason: JString,
) -> jstring {
    guard(
        &mut env,
        "stop continuous backup",
        std::ptr::null_mut(),
        |env| {
            let reason = string(env, &reason, "the reason")?;
            let s = session(handle)?;
            let st = s.close(Duration::from_millis(timeout_ms.max(0) as u64), &reason)?;
            edn_result(env, &convert::capture_status(&st, &s.log_id()))
        },
    )
}

/// `void Native.logFree(long handle)`: release the session (closing it at once if open).
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_logFree(mut env: JNIEnv, _: JClass, handle: jlong) {
    guard(&mut env, "free capture session", (), |_| {
        if let Some(slot) = LOGS.remove(handle) {
            let s = slot.lock().map(|s| s.clone()).ok();
            if let Some(s) = s {
                if !s.status().closed {
                    s.close(Duration::ZERO, "the capture session was freed")?;
                }
            }
        }
        Ok(())
    })
}
