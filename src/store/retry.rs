//! Retry with exponential backoff and full jitter: the one place where storage operations
//! are retried.
//!
//! What is retried: exactly the errors of kind [`ErrorKind::Transient`], and nothing else.
//! Backends decide what is transient when they map their errors (for S3, in
//! `s3::map_sdk_error`: HTTP 5xx, `SlowDown` and other throttling codes, HTTP 429,
//! `RequestTimeout`, connection failures (refused, reset, closed mid-response), timeouts, and
//! bodies that broke off while being read). Not found, access denied, invalid arguments and
//! corrupt data fail at once.
//!
//! The AWS SDK's own retries are switched off (`RetryConfig::disabled()`), so that the
//! attempt count and delays configured here are the only ones.
//!
//! # Executed, reply lost
//!
//! A transient failure does not say whether the server executed the request: the
//! connection may break after the server acted and before its reply arrived. So every
//! retried request must be safe when the retry meets the effect of an earlier attempt.
//! The S3 backend's requests, one by one (tested on moto through the fault proxy, which
//! forwards a request, lets the server execute it, then cuts the reply:
//! `tests/s3_lost_replies.rs`):
//!
//! | request | used for | what the retry meets | why the outcome is right |
//! |---|---|---|---|
//! | `PutObject` (whole bytes) | `config.edn`, chunks, `checkpoint.edn`, `manifest.edn`, `complete.marker`, lock renewal | the object, already written | the retry writes the same bytes again: same final state. The manifest and the marker are written once, after every chunk; checkpoints are written one at a time, so no newer checkpoint races the retry of an older one |
//! | `PutObject` with `If-None-Match: *` | creating the resume lock (`Store::put_if_absent`) | `412 PreconditionFailed`: the object exists | on a retry (never on the first attempt) the object is read back and is ours exactly when it holds our bytes, which carry a fresh owner id; `409 ConditionalRequestConflict` is retried; 412/409 are told by HTTP status and error code ([`crate::error::ServiceReply`]), never by message text. If creating fails anyway, the lock code deletes what it may have created (`repo::lock`) |
//! | `GetObject`, `HeadObject`, `ListObjectsV2`, `ListMultipartUploads` | every read | nothing: reads change nothing | a body cut mid-way is read again whole (and chunks are checked by SHA-256); a listing page is asked for again with the same continuation token |
//! | `DeleteObject` | releasing the lock, older lock generations, single objects | `204` again (AWS), or `404` (other stores) | "not found" is success: the object is gone either way |
//! | `DeleteObjects` | `delete_prefix` (cleanup) | `200` again, or per-key `NoSuchKey` (other stores) | per-key "not found" is success |
//! | `CreateMultipartUpload` | objects of `:multipart-threshold` bytes and more | a second upload; the first attempt's upload id never reached us | when creating took more than one attempt, the other unfinished uploads of the same key are aborted once ours is completed or aborted (one writer per key); `cleanup-incomplete` aborts whatever is left |
//! | `UploadPart` | each part | the part, already uploaded | re-uploading a part number replaces it with the same bytes (same ETag) |
//! | `CompleteMultipartUpload` | finishing an upload | `200` again (AWS), or `NoSuchUpload` / another error (other stores) | after a failed retry the object is checked with a HEAD: our size and the ETag our parts make (MD5 of the part MD5s, `-N`) mean it was completed; otherwise the error stands and the upload is aborted |
//! | `AbortMultipartUpload` | a failed upload, stale uploads | `NoSuchUpload` | "not found" is success |
//!
//! One risk remains and is accepted: an attempt that is *delayed* in the network and
//! executed after its retry succeeded (and after a later write of the same key) rolls that
//! key back. Only `checkpoint.edn` is rewritten, and it is advisory: a resume checks every
//! chunk it names by SHA-256 and rewrites what does not match.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, Result};

/// How often and how patiently to retry transient failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry). At least 1.
    pub max_attempts: u32,
    /// The backoff cap before the first retry; it doubles with every further retry.
    pub base_delay: Duration,
    /// The largest backoff cap.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 100 ms base, 10 s cap: a failing service is given about 20 s (expected
    /// total backoff) before an operation gives up.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the wait before retry number `retry` (1 = the first retry):
    /// `min(max_delay, base_delay * 2^(retry-1))`.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry number `retry`: uniformly random in `[0, backoff_cap(retry)]`
    /// ("full jitter"), so that many clients failing together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.backoff_cap(retry).as_nanos() as u64;
        // RandomState is seeded per thread from the OS and advanced per instance.
        let r = RandomState::new().hash_one(retry);
        Duration::from_nanos(if cap == 0 { 0 } else { r % (cap + 1) })
    }
}

/// Run `f` until it succeeds, fails with an error that is not [`ErrorKind::Transient`], or
/// `policy.max_attempts` attempts have failed; sleep [`RetryPolicy::backoff`] between
/// attempts. Returns the first success, or the last error: a permanent error unchanged, a
/// transient one with the attempt count and elapsed time added to its message and a hint.
/// Errors that carry no key get `key`; `op` names the operation in that message.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, op: &str, key: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let attempts = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let err = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let err = if err.key.is_none() {
            err.with_key(key)
        } else {
            err
        };
        if err.kind != ErrorKind::Transient {
            return Err(err);
        }
        if attempt >= attempts {
            let mut err = err;
            err.message = format!(
                "{} (gave up on {op} after {attempt} attempt{} in {:.1} s)",
                err.message,
                if attempt == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64()
            );
            if err.hint.is_none() {
                err.hint = Some(
                    "the storage service kept failing or could not be reached; check the endpoint, \
                     the network and the service's status, then run the operation again"
                        .into(),
                );
            }
            return Err(err);
        }
        tokio::time::sleep(policy.backoff(attempt)).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::runtime::block_on;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    async fn failing_then_ok(failures: u32, kind: ErrorKind, calls: &AtomicU32) -> Result<u32> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= failures {
            Err(Error::new(kind, "fake op", format!("failure {n}")))
        } else {
            Ok(n)
        }
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let got = block_on(retry(&fast(5), "fake op", "k", || {
            failing_then_ok(4, ErrorKind::Transient, &calls)
        }))
        .unwrap();
        assert_eq!(got.unwrap(), 5);
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn transient_failures_give_up_after_max_attempts_with_context() {
        let calls = AtomicU32::new(0);
        let err = block_on(retry(&fast(3), "put object", "db/b/x", || {
            failing_then_ok(10, ErrorKind::Transient, &calls)
        }))
        .unwrap()
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(err.kind, ErrorKind::Transient);
        assert_eq!(err.key.as_deref(), Some("db/b/x"));
        assert!(
            err.message
                .starts_with("failure 3 (gave up on put object after 3 attempts in "),
            "{err}"
        );
        assert!(err.hint.is_some());
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::InvalidArgument,
            ErrorKind::Io,
            ErrorKind::Denied,
        ] {
            let calls = AtomicU32::new(0);
            let err = block_on(retry(&fast(8), "get object", "k", || {
                failing_then_ok(1, kind, &calls)
            }))
            .unwrap()
            .unwrap_err();
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{kind:?}");
            assert_eq!(err.kind, kind);
            assert_eq!(err.message, "failure 1");
        }
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        };
        let caps: Vec<u128> = (1..=9).map(|r| p.backoff_cap(r).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(p.backoff_cap(u32::MAX), Duration::from_secs(10));
        for retry in 1..=9 {
            let samples: Vec<Duration> = (0..200).map(|_| p.backoff(retry)).collect();
            assert!(
                samples.iter().all(|d| *d <= p.backoff_cap(retry)),
                "retry {retry}"
            );
            // Full jitter: the samples spread over the range (not a constant).
            let distinct: std::collections::HashSet<_> = samples.iter().collect();
            assert!(
                distinct.len() > 100,
                "retry {retry}: {} distinct delays",
                distinct.len()
            );
            let below_half = samples
                .iter()
                .filter(|d| **d < p.backoff_cap(retry) / 2)
                .count();
            assert!(
                (40..=160).contains(&below_half),
                "retry {retry}: {below_half} of 200 below half"
            );
        }
    }
}
