//! The one wrapper every `Java_*` entry point runs its body in.
//!
//! It catches panics (unwinding into the JVM would abort the process) and turns every
//! [`Error`] into a `datacamp.jni.DatacampException` carrying the error's kind, operation,
//! key and hint. A Java exception already pending (from a failed JNI call) is left to
//! propagate as it is.

use std::panic::{catch_unwind, AssertUnwindSafe};

use jni::objects::{JObject, JThrowable, JValue};
use jni::JNIEnv;

use crate::error::{Error, ErrorKind, Result};

/// The Java exception class our errors become.
const EXCEPTION_CLASS: &str = "datacamp/jni/DatacampException";
const EXCEPTION_CTOR: &str =
    "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V";

/// Run `body`; on error or panic throw a Java exception and return `fallback`.
pub fn guard<'l, T>(
    env: &mut JNIEnv<'l>,
    op: &str,
    fallback: T,
    body: impl FnOnce(&mut JNIEnv<'l>) -> Result<T>,
) -> T {
    let outcome = catch_unwind(AssertUnwindSafe(|| body(env)));
    let error = match outcome {
        Ok(Ok(value)) => return value,
        Ok(Err(e)) => e,
        Err(panic) => Error::from_panic(op, panic.as_ref()),
    };
    throw(env, &error);
    fallback
}

/// Throw `error` as a `DatacampException` unless an exception is already pending.
pub fn throw(env: &mut JNIEnv, error: &Error) {
    if env.exception_check().unwrap_or(false) {
        return;
    }
    if let Err(e) = try_throw(env, error) {
        // Constructing our exception failed (class missing?): fall back to a plain one.
        let _ = env.throw_new("java/lang/RuntimeException", format!("{error} (and: {e})"));
    }
}

fn try_throw(env: &mut JNIEnv, error: &Error) -> jni::errors::Result<()> {
    let kind = env.new_string(error.kind.keyword())?;
    let op = env.new_string(&error.op)?;
    let key = opt_string(env, error.key.as_deref())?;
    let hint = opt_string(env, error.hint.as_deref())?;
    // The Java side composes "op: message (key); hint" itself.
    let message = env.new_string(&error.message)?;
    let obj = env.new_object(
        EXCEPTION_CLASS,
        EXCEPTION_CTOR,
        &[
            JValue::Object(&kind),
            JValue::Object(&op),
            JValue::Object(&key),
            JValue::Object(&hint),
            JValue::Object(&message),
        ],
    )?;
    env.throw(JThrowable::from(obj))
}

fn opt_string<'l>(env: &mut JNIEnv<'l>, s: Option<&str>) -> jni::errors::Result<JObject<'l>> {
    match s {
        Some(s) => Ok(env.new_string(s)?.into()),
        None => Ok(JObject::null()),
    }
}

/// Convert a JNI failure into our error (a pending Java exception stays pending).
pub fn jni_error(op: &str, e: jni::errors::Error) -> Error {
    Error::new(ErrorKind::Internal, op, format!("JNI call failed: {e}"))
}
