//! Every `Java_datacamp_jni_Native_*` entry point, and all JNI marshalling.
//!
//! Each entry point is a thin shell: it converts its Java arguments, calls the session or
//! catalog code, converts the result, and runs inside [`boundary::guard`] so that errors
//! and panics become `DatacampException`s. Options and results cross as EDN strings;
//! datoms cross as primitive-array columns (see [`crate::codec::wire`]).

pub mod boundary;
pub mod convert;
pub mod handles;
pub mod log;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use once_cell::sync::Lazy;

use jni::objects::{JBooleanArray, JByteArray, JClass, JIntArray, JLongArray, JString};
use jni::sys::{jboolean, jint, jlong, jobjectArray, jstring};
use jni::JNIEnv;

use crate::codec::edn;
use crate::codec::wire::{Batch, BatchBuilder};
use crate::crypto::envelope::KeySpec;
use crate::error::{Error, Result};
use crate::model::Value;
use crate::ops::backup::{BackupOptions, BackupProgress, BackupSession};
use crate::ops::prune::{self, PruneOptions};
use crate::ops::restore::{RestoreOptions, RestoreSession};
use crate::ops::{cleanup, inspect, list, repair, resume, verify};
use crate::pipeline::chunk;
use crate::store::{self, Store};
use boundary::{guard, jni_error};
use convert::batch_to_java;
use handles::Registry;

static BACKUPS: Registry<Option<BackupSession>> = Registry::new("backup session");
static RESTORES: Registry<RestoreSession> = Registry::new("restore session");
/// The progress counters of each open backup session, by its handle: readable while the
/// session finishes (when [`BACKUPS`] no longer holds it).
static PROGRESS: Lazy<Mutex<HashMap<i64, Arc<BackupProgress>>>> = Lazy::new(Default::default);

fn progress_map() -> std::sync::MutexGuard<'static, HashMap<i64, Arc<BackupProgress>>> {
    PROGRESS.lock().unwrap_or_else(|p| p.into_inner())
}

fn string(env: &mut JNIEnv, s: &JString, what: &str) -> Result<String> {
    if s.is_null() {
        return Err(Error::invalid(
            "read arguments",
            format!("{what} must not be null"),
        ));
    }
    Ok(env
        .get_string(s)
        .map_err(|e| jni_error("read string", e))?
        .into())
}

fn edn_arg(env: &mut JNIEnv, s: &JString, what: &str) -> Result<Value> {
    let text = string(env, s, what)?;
    edn::parse(&text)
        .map_err(|e| Error::invalid("read arguments", format!("{what} is not valid EDN: {e}")))
}

fn target(env: &mut JNIEnv, s: &JString) -> Result<Arc<dyn Store>> {
    store::open_target(&edn_arg(env, s, "the target")?)
}

fn edn_result(env: &mut JNIEnv, v: &Value) -> Result<jstring> {
    let s = env
        .new_string(edn::write(v))
        .map_err(|e| jni_error("return result", e))?;
    Ok(s.into_raw())
}

/// `String Native.version()`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_version(mut env: JNIEnv, _: JClass) -> jstring {
    guard(&mut env, "version", std::ptr::null_mut(), |env| {
        let s = env
            .new_string(concat!("datacamp-native ", env!("CARGO_PKG_VERSION")))
            .map_err(|e| jni_error("version", e))?;
        Ok(s.into_raw())
    })
}

/// `long Native.backupOpen(String targetEdn, String optionsEdn)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_backupOpen(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    options_edn: JString,
) -> jlong {
    guard(&mut env, "open backup", 0, |env| {
        let opts = BackupOptions::from_edn(&edn_arg(env, &options_edn, "the options")?)?;
        let store = target(env, &target_edn)?;
        let session = BackupSession::open(store, opts)?;
        let progress = session.progress();
        let handle = BACKUPS.insert(Some(session));
        progress_map().insert(handle, progress);
        Ok(handle)
    })
}

fn sized<T: Default + Clone>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    v.clear();
    v.resize(n, T::default());
    v
}

/// Copy `len` elements of a Java array (checked against its real length).
macro_rules! region {
    ($env:expr, $getter:ident, $arr:expr, $buf:expr, $len:expr, $what:literal) => {{
        let real = $env
            .get_array_length($arr)
            .map_err(|e| jni_error("read batch", e))? as usize;
        if real < $len {
            return Err(Error::invalid(
                "push batch",
                format!("column {} has {} elements, {} expected", $what, real, $len),
            ));
        }
        $env.$getter($arr, 0, sized($buf, $len))
            .map_err(|e| jni_error("read batch", e))?;
    }};
}

/// The columns of one batch as the JVM passes them (see [`crate::codec::wire`]).
struct Columns<'l> {
    n: jint,
    e: JLongArray<'l>,
    a: JIntArray<'l>,
    tx: JLongArray<'l>,
    added: JBooleanArray<'l>,
    vtag: JByteArray<'l>,
    vnum: JLongArray<'l>,
    vbytes: JByteArray<'l>,
    vbytes_len: jint,
    new_attrs: JByteArray<'l>,
    new_attrs_len: jint,
}

/// Copy a batch's columns out of the JVM (lengths checked against the arrays).
fn read_batch(env: &mut JNIEnv, c: &Columns) -> Result<Batch> {
    if c.n < 0 || c.vbytes_len < 0 || c.new_attrs_len < 0 {
        return Err(Error::invalid("push batch", "negative batch length"));
    }
    let (n, vb, na) = (
        c.n as usize,
        c.vbytes_len as usize,
        c.new_attrs_len as usize,
    );
    let mut batch = Batch::default();
    let (mut vbytes_copy, mut new_attrs_copy) = (Vec::<i8>::new(), Vec::<i8>::new());
    region!(env, get_long_array_region, &c.e, &mut batch.e, n, "e");
    region!(env, get_int_array_region, &c.a, &mut batch.a, n, "a");
    region!(env, get_long_array_region, &c.tx, &mut batch.tx, n, "tx");
    region!(
        env,
        get_boolean_array_region,
        &c.added,
        &mut batch.added,
        n,
        "added"
    );
    region!(
        env,
        get_byte_array_region,
        &c.vtag,
        &mut batch.vtag,
        n,
        "vtag"
    );
    region!(
        env,
        get_long_array_region,
        &c.vnum,
        &mut batch.vnum,
        n,
        "vnum"
    );
    region!(
        env,
        get_byte_array_region,
        &c.vbytes,
        &mut vbytes_copy,
        vb,
        "vbytes"
    );
    region!(
        env,
        get_byte_array_region,
        &c.new_attrs,
        &mut new_attrs_copy,
        na,
        "newAttrs"
    );
    batch.vbytes = into_u8(vbytes_copy);
    batch.new_attrs = into_u8(new_attrs_copy);
    Ok(batch)
}

/// `void Native.backupPush(long handle, int n, long[] e, int[] a, long[] tx, boolean[] added,
/// byte[] vtag, long[] vnum, byte[] vbytes, int vbytesLen, byte[] newAttrs, int newAttrsLen)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_datacamp_jni_Native_backupPush(
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
    guard(&mut env, "push batch", (), |env| {
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
        // The copies move on to the feeding thread (`crate::pipeline::feed`).
        let batch = read_batch(env, &cols)?;
        BACKUPS.with(handle, |s| {
            s.as_mut()
                .ok_or_else(|| {
                    Error::invalid("push batch", "the backup session is already finished")
                })?
                .push_batch(batch)
        })
    })
}

/// A Java `byte[]` copy as unsigned bytes (collected in place: no copy, no allocation).
fn into_u8(v: Vec<i8>) -> Vec<u8> {
    v.into_iter().map(|b| b as u8).collect()
}

/// `String Native.backupFinish(long handle)`: commit the backup, return the result EDN.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_backupFinish(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, "finish backup", std::ptr::null_mut(), |env| {
        let session = BACKUPS.with(handle, |s| {
            s.take().ok_or_else(|| {
                Error::invalid("finish backup", "the backup session is already finished")
            })
        })?;
        let result = session.finish()?;
        edn_result(env, &convert::backup_result(&result))
    })
}

/// `void Native.backupAbort(long handle)`: leave the backup incomplete.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_backupAbort(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "abort backup", (), |_| {
        let session = BACKUPS.with(handle, |s| Ok(s.take()))?;
        match session {
            Some(s) => s.abort("aborted by the caller"),
            None => Ok(()),
        }
    })
}

/// `void Native.backupFree(long handle)`: release the session (aborting it if still open).
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_backupFree(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "free backup", (), |_| {
        progress_map().remove(&handle);
        if let Some(slot) = BACKUPS.remove(handle) {
            let open = slot.lock().ok().and_then(|mut s| s.take());
            if let Some(s) = open {
                s.abort("the session was closed before it finished")?;
            }
        }
        Ok(())
    })
}

/// `String Native.backupProgress(long handle)`: the session's progress counters as EDN
/// (also while another thread finishes it).
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_backupProgress(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, "backup progress", std::ptr::null_mut(), |env| {
        let progress = progress_map().get(&handle).cloned().ok_or_else(|| {
            Error::invalid(
                "backup progress",
                format!("no open backup session with handle {handle}"),
            )
        })?;
        edn_result(env, &convert::backup_progress(&progress.snapshot()))
    })
}

/// `void Native.checkOptions(String op, String optionsEdn)`: fail (`InvalidArgument`) on an
/// option key that operation `op` does not know, naming the closest known one.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_checkOptions(
    mut env: JNIEnv,
    _: JClass,
    op: JString,
    options_edn: JString,
) {
    guard(&mut env, "check options", (), |env| {
        let op = string(env, &op, "the operation")?;
        let keys = crate::ops::option_keys(&op).ok_or_else(|| {
            Error::internal("check options", format!("no option keys for {op:?}"))
        })?;
        crate::options::check_keys(&edn_arg(env, &options_edn, "the options")?, &op, keys)
    })
}

/// `String Native.readMetadata(String targetEdn, String databaseId, String backupId,
/// String name)`: read and parse one EDN metadata file (size-limited), returned as EDN.
/// With a database and backup id, `name` is one of the backup's metadata files
/// (`manifest.edn`, …); with both null, a key relative to the target's root.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_readMetadata(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    database_id: JString,
    backup_id: JString,
    name: JString,
) -> jstring {
    guard(&mut env, "read metadata", std::ptr::null_mut(), |env| {
        let store = target(env, &target_edn)?;
        let name = string(env, &name, "the file name")?;
        let v = if database_id.is_null() && backup_id.is_null() {
            inspect::read_metadata(store.as_ref(), &name)?
        } else {
            let db = string(env, &database_id, "the database id")?;
            let id = string(env, &backup_id, "the backup id")?;
            inspect::read_backup_file(store.as_ref(), &db, &id, &name)?
        };
        edn_result(env, &v)
    })
}

/// `String Native.listBackups(String targetEdn, String databaseId)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_listBackups(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    database_id: JString,
) -> jstring {
    guard(&mut env, "list backups", std::ptr::null_mut(), |env| {
        let store = target(env, &target_edn)?;
        let db = string(env, &database_id, "the database id")?;
        let list = list::list(store.as_ref(), &db)?;
        edn_result(env, &convert::summaries(&list))
    })
}

/// `String Native.backupStatus(String targetEdn, String databaseId, String backupId)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_backupStatus(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    database_id: JString,
    backup_id: JString,
) -> jstring {
    guard(&mut env, "backup status", std::ptr::null_mut(), |env| {
        let store = target(env, &target_edn)?;
        let db = string(env, &database_id, "the database id")?;
        let id = string(env, &backup_id, "the backup id")?;
        let status = resume::status(store.as_ref(), &db, &id)?;
        edn_result(env, &convert::status(&status))
    })
}

/// `String Native.verifyBackup(String targetEdn, String databaseId, String backupId, boolean deep,
/// String optionsEdn)` (`:encryption`, for a deep verify of an encrypted backup).
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_verifyBackup(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    database_id: JString,
    backup_id: JString,
    deep: jboolean,
    options_edn: JString,
) -> jstring {
    guard(&mut env, "verify backup", std::ptr::null_mut(), |env| {
        let key =
            KeySpec::from_options(&edn_arg(env, &options_edn, "the options")?, "verify backup")?;
        let store = target(env, &target_edn)?;
        let db = string(env, &database_id, "the database id")?;
        let id = string(env, &backup_id, "the backup id")?;
        let report = verify::verify(store.as_ref(), &db, &id, deep != 0, key.as_ref())?;
        edn_result(env, &convert::verify_report(&report))
    })
}

/// `String Native.repairManifest(String targetEdn, String databaseId, String backupId)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_repairManifest(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    database_id: JString,
    backup_id: JString,
) -> jstring {
    guard(&mut env, "repair manifest", std::ptr::null_mut(), |env| {
        let store = target(env, &target_edn)?;
        let db = string(env, &database_id, "the database id")?;
        let id = string(env, &backup_id, "the backup id")?;
        let report = repair::repair_manifest(store.as_ref(), &db, &id)?;
        edn_result(env, &convert::repair_report(&report))
    })
}

/// `String Native.rewrapBackupKeys(String targetEdn, String databaseId, String optionsEdn)`
/// (`{:old-key {…} :new-key {…}}`, each as `:encryption` takes it).
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_rewrapBackupKeys(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    database_id: JString,
    options_edn: JString,
) -> jstring {
    guard(
        &mut env,
        "rewrap backup keys",
        std::ptr::null_mut(),
        |env| {
            const OP: &str = "rewrap backup keys";
            let opts = edn_arg(env, &options_edn, "the options")?;
            let key = |name: &str| {
                KeySpec::from_option(&opts, name, OP)?
                    .ok_or_else(|| Error::invalid(OP, format!(":{name} is required")))
            };
            let (old, new) = (key("old-key")?, key("new-key")?);
            let store = target(env, &target_edn)?;
            let db = string(env, &database_id, "the database id")?;
            let report = crate::ops::rewrap::rewrap(store.as_ref(), &db, &old, &new)?;
            edn_result(env, &convert::rewrap_report(&report))
        },
    )
}

/// `String Native.cleanupIncomplete(String targetEdn, String databaseId, long olderThanMillis)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_cleanupIncomplete(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    database_id: JString,
    older_than_millis: jlong,
) -> jstring {
    guard(
        &mut env,
        "clean up incomplete backups",
        std::ptr::null_mut(),
        |env| {
            if older_than_millis < 0 {
                return Err(Error::invalid(
                    "clean up incomplete backups",
                    ":older-than must not be negative",
                ));
            }
            let store = target(env, &target_edn)?;
            let db = string(env, &database_id, "the database id")?;
            let older_than = std::time::Duration::from_millis(older_than_millis as u64);
            let report = cleanup::cleanup_incomplete(store.as_ref(), &db, older_than)?;
            edn_result(env, &convert::cleanup_report(&report))
        },
    )
}

/// `String Native.pruneBackups(String targetEdn, String databaseId, String optionsEdn)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_pruneBackups(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    database_id: JString,
    options_edn: JString,
) -> jstring {
    guard(&mut env, "prune backups", std::ptr::null_mut(), |env| {
        let opts = PruneOptions::from_edn(&edn_arg(env, &options_edn, "the options")?)?;
        let store = target(env, &target_edn)?;
        let db = string(env, &database_id, "the database id")?;
        crate::repo::layout::check_segment("database-id", &db)?;
        let report = prune::prune(store.as_ref(), &db, &opts)?;
        edn_result(env, &convert::prune_report(&report))
    })
}

/// `Object[] Native.decodeChunk(byte[] stored)`: decode one chunk natively.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_decodeChunk(
    mut env: JNIEnv,
    _: JClass,
    stored: JByteArray,
) -> jobjectArray {
    guard(&mut env, "decode chunk", std::ptr::null_mut(), |env| {
        if stored.is_null() {
            return Err(Error::invalid(
                "decode chunk",
                "the chunk bytes must not be null",
            ));
        }
        let bytes = env
            .convert_byte_array(&stored)
            .map_err(|e| jni_error("decode chunk", e))?;
        let decoded = chunk::decode_chunk(&bytes, &chunk::ChunkLimits::NONE)?;
        let mut builder = BatchBuilder::new();
        for d in &decoded.datoms {
            builder.push(d)?;
        }
        let batch = builder.flush();
        let out =
            batch_to_java(env, decoded.id, &batch).map_err(|e| jni_error("decode chunk", e))?;
        Ok(out.into_raw())
    })
}

/// `long Native.restoreOpen(String targetEdn, String optionsEdn)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_restoreOpen(
    mut env: JNIEnv,
    _: JClass,
    target_edn: JString,
    options_edn: JString,
) -> jlong {
    guard(&mut env, "open restore", 0, |env| {
        let opts = RestoreOptions::from_edn(&edn_arg(env, &options_edn, "the options")?)?;
        let store = target(env, &target_edn)?;
        Ok(RESTORES.insert(RestoreSession::open(store, opts)?))
    })
}

/// `String Native.restoreInfo(long handle)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_restoreInfo(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jstring {
    guard(&mut env, "restore info", std::ptr::null_mut(), |env| {
        let info = RESTORES.with(handle, |s| Ok(convert::restore_info(s.info(), s.reached())))?;
        edn_result(env, &info)
    })
}

/// `Object[] Native.restoreNext(long handle)`: the next batch, or null at the end.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_restoreNext(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) -> jobjectArray {
    guard(&mut env, "restore", std::ptr::null_mut(), |env| {
        let next = RESTORES.with(handle, |s| {
            Ok(s.next_batch()?.map(|b| (s.last_chunk().unwrap_or(0), b)))
        })?;
        match next {
            None => Ok(std::ptr::null_mut()),
            Some((chunk, batch)) => {
                let out = batch_to_java(env, chunk as i64, &batch)
                    .map_err(|e| jni_error("restore", e))?;
                Ok(out.into_raw())
            }
        }
    })
}

/// `void Native.restoreFree(long handle)`.
#[no_mangle]
pub extern "system" fn Java_datacamp_jni_Native_restoreFree(
    mut env: JNIEnv,
    _: JClass,
    handle: jlong,
) {
    guard(&mut env, "free restore", (), |_| {
        RESTORES.remove(handle);
        Ok(())
    })
}
