//! Multipart uploads: parts in parallel, then complete, or abort on failure; and the
//! listing of uploads a killed process left behind ([`Store::leftovers`]).
//!
//! Lost replies (see the table in [`crate::store::retry`]): a retried create may leave the
//! first attempt's upload behind, so when the create needed more than one attempt, the other
//! uploads of the same key are aborted once ours is finished; a retried complete that fails
//! is checked against the object (size and multipart ETag); a retried abort that finds no
//! upload succeeded.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

use md5::{Digest, Md5};

use super::errors::{attempt, is_gone};
use super::{sse_params, S3Store};
use crate::error::{Error, ErrorKind, Result};
use crate::store::retry::{retry, RetryPolicy};
use crate::store::{Leftover, LeftoverKind, Store};

/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
impl S3Store {
    pub(super) async fn put_multipart(&self, object: &str, loc: &str, bytes: &[u8]) -> Result<()> {
        let op = "create multipart upload";
        let mut create_attempts = 0u32;
        let created = retry(&self.cfg.retry, op, loc, || {
            create_attempts += 1;
            let mut req = self
                .client
                .create_multipart_upload()
                .bucket(&self.cfg.bucket)
                .key(object);
            if let Some(class) = &self.cfg.storage_class {
                req = req.storage_class(class.clone());
            }
            let (sse, kms) = sse_params(&self.cfg.sse);
            req = req.set_server_side_encryption(sse).set_ssekms_key_id(kms);
            attempt(op, loc, self.cfg.attempt_timeout, req.send())
        })
        .await?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                Error::new(ErrorKind::Io, op, "the server returned no upload id").with_key(loc)
            })?
            .to_owned();
        let result = self
            .upload_parts_and_complete(object, loc, &upload_id, bytes)
            .await;
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(mut err) => {
                if let Err(abort) = self.abort_upload(object, loc, &upload_id).await {
                    err.message = format!(
                        "{}; aborting multipart upload {upload_id} failed too ({}), cleanup-incomplete aborts it later",
                        err.message, abort.message
                    );
                }
                Err(err)
            }
        };
        if create_attempts > 1 {
            // An earlier create may have been executed with its reply lost: its upload id
            // never reached us. Abort the other uploads of this key (one writer per key: a
            // backup's chunk keys are its own, and a resume holds the lock). Best effort:
            // cleanup-incomplete aborts what is left.
            let _ = self.abort_other_uploads(object, loc, &upload_id).await;
        }
        outcome
    }

    /// Abort every unfinished upload of exactly `object` except `keep`.
    async fn abort_other_uploads(&self, object: &str, loc: &str, keep: &str) -> Result<()> {
        for (key, id, _) in self.list_uploads(object, loc).await? {
            if key == object && id != keep {
                self.abort_upload(object, loc, &id).await?;
            }
        }
        Ok(())
    }

    async fn upload_parts_and_complete(
        &self,
        object: &str,
        loc: &str,
        upload_id: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let len = bytes.len() as u64;
        let part_size = self.cfg.part_size.max(len.div_ceil(MAX_PARTS)) as usize;
        let ranges: Vec<(i32, std::ops::Range<usize>)> = (0..bytes.len())
            .step_by(part_size.max(1))
            .enumerate()
            .map(|(i, start)| (i as i32 + 1, start..(start + part_size).min(bytes.len())))
            .collect();
        let mut pending = ranges.into_iter();
        let mut in_flight = tokio::task::JoinSet::new();
        let mut done: BTreeMap<i32, String> = BTreeMap::new();
        loop {
            while in_flight.len() < self.cfg.upload_concurrency {
                let Some((number, range)) = pending.next() else {
                    break;
                };
                let part = PartUpload {
                    client: self.client.clone(),
                    bucket: self.cfg.bucket.clone(),
                    object: object.to_owned(),
                    loc: loc.to_owned(),
                    upload_id: upload_id.to_owned(),
                    number,
                    body: bytes::Bytes::copy_from_slice(&bytes[range]),
                    policy: self.cfg.retry.clone(),
                    timeout: self.cfg.attempt_timeout,
                };
                in_flight.spawn(part.run());
            }
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            let outcome = joined.map_err(|e| {
                Error::internal("upload part", format!("the part upload task failed: {e}"))
                    .with_key(loc)
            });
            match outcome.and_then(|r| r) {
                Ok((number, etag)) => {
                    done.insert(number, etag);
                }
                Err(e) => {
                    // Stop the other parts before the caller aborts the upload, so that
                    // no part lands after the abort.
                    in_flight.abort_all();
                    while in_flight.join_next().await.is_some() {}
                    return Err(e);
                }
            }
        }
        let expected_etag = multipart_etag(done.values().map(String::as_str));
        let part_count = done.len();
        let parts: Vec<CompletedPart> = done
            .into_iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(n).e_tag(etag).build())
            .collect();
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let op = "complete multipart upload";
        let mut attempts = 0u32;
        let result = retry(&self.cfg.retry, op, loc, || {
            attempts += 1;
            let req = self
                .client
                .complete_multipart_upload()
                .bucket(&self.cfg.bucket)
                .key(object)
                .upload_id(upload_id)
                .multipart_upload(completed.clone());
            attempt(op, loc, self.cfg.attempt_timeout, req.send())
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            // An attempt whose reply was lost may have completed the upload: AWS answers the
            // retry with 200 again, other stores with NoSuchUpload or another error. Then the
            // object is there with our size and the ETag our parts make ("md5-of-md5s-N").
            Err(e) if attempts > 1 => match self.head_meta(object, loc).await {
                Ok(Some((size, Some(etag))))
                    if size == len && etag_matches(&etag, expected_etag.as_deref(), part_count) =>
                {
                    // Nothing should be left, but make sure the upload is not.
                    let _ = self.abort_upload(object, loc, upload_id).await;
                    Ok(())
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    pub(super) async fn abort_upload(
        &self,
        object: &str,
        loc: &str,
        upload_id: &str,
    ) -> Result<()> {
        let op = "abort multipart upload";
        let result = retry(&self.cfg.retry, op, loc, || {
            let req = self
                .client
                .abort_multipart_upload()
                .bucket(&self.cfg.bucket)
                .key(object)
                .upload_id(upload_id);
            attempt(op, loc, self.cfg.attempt_timeout, req.send())
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            // Aborting is idempotent: an upload that is gone (aborted by an attempt whose
            // reply was lost, or completed) is what the caller wants.
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The unfinished uploads whose object key starts with `full` (a full object key
    /// prefix), as `(object key, upload id, initiated)`.
    async fn list_uploads(
        &self,
        full: &str,
        loc: &str,
    ) -> Result<Vec<(String, String, Option<SystemTime>)>> {
        let op = "list multipart uploads";
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = retry(&self.cfg.retry, op, loc, || {
                let req = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.cfg.bucket)
                    .prefix(full)
                    .set_key_marker(key_marker.clone())
                    .set_upload_id_marker(id_marker.clone());
                attempt(op, loc, self.cfg.attempt_timeout, req.send())
            })
            .await?;
            for u in page.uploads() {
                let initiated = u.initiated().and_then(|t| SystemTime::try_from(*t).ok());
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    out.push((key.to_owned(), id.to_owned(), initiated));
                }
            }
            key_marker = page.next_key_marker().map(String::from);
            id_marker = page.next_upload_id_marker().map(String::from);
            if !page.is_truncated().unwrap_or(false) || key_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// The unfinished multipart uploads under the store key `prefix`, as leftovers.
    pub(super) async fn uploads_async(&self, prefix: &str) -> Result<Vec<Leftover>> {
        let uploads = self
            .list_uploads(&self.object_key(prefix), &self.location(prefix))
            .await?;
        Ok(uploads
            .into_iter()
            .filter_map(|(object, upload_id, started)| {
                let key = object.strip_prefix(&self.cfg.prefix)?.to_owned();
                Some(Leftover {
                    key,
                    started,
                    kind: LeftoverKind::Upload { upload_id },
                })
            })
            .collect())
    }
}

/// The ETag S3 gives an object completed from parts with these ETags: the MD5 of the
/// concatenated binary part MD5s, in hex, then `-` and the part count. `None` when a part
/// ETag is not a hex MD5 (e.g. SSE-KMS or SSE-C).
pub fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut md5 = Md5::new();
    let mut n = 0;
    for etag in part_etags {
        let raw = hex::decode(etag.trim_matches('"')).ok()?;
        if raw.len() != 16 {
            return None;
        }
        md5.update(&raw);
        n += 1;
    }
    Some(format!("{}-{n}", hex::encode(md5.finalize())))
}

/// Whether an object's ETag is the one our parts make: equal to `expected` when known,
/// else (part ETags that are not MD5s) at least of the form `…-parts`.
fn etag_matches(etag: &str, expected: Option<&str>, parts: usize) -> bool {
    let etag = etag.trim_matches('"');
    match expected {
        Some(x) => etag.eq_ignore_ascii_case(x),
        None => etag.ends_with(&format!("-{parts}")),
    }
}

/// One part of a multipart upload, owned, so that it can run on the runtime's workers.
struct PartUpload {
    client: Client,
    bucket: String,
    object: String,
    loc: String,
    upload_id: String,
    number: i32,
    body: bytes::Bytes,
    policy: RetryPolicy,
    timeout: Duration,
}

impl PartUpload {
    /// Upload the part (retried); return its number and ETag.
    async fn run(self) -> Result<(i32, String)> {
        let op = "upload part";
        let out = retry(&self.policy, op, &self.loc, || {
            let req = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(&self.object)
                .upload_id(&self.upload_id)
                .part_number(self.number)
                .content_length(self.body.len() as i64)
                .body(ByteStream::from(self.body.clone()));
            attempt(op, &self.loc, self.timeout, req.send())
        })
        .await?;
        let etag = out.e_tag().ok_or_else(|| {
            Error::new(
                ErrorKind::Io,
                op,
                format!("the server returned no ETag for part {}", self.number),
            )
            .with_key(&self.loc)
        })?;
        Ok((self.number, etag.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s() {
        // Two parts "a" and "b": md5("a") = 0cc175b9…, md5("b") = 92eb5ffe…
        let a = hex::encode(Md5::digest(b"a"));
        let b = hex::encode(Md5::digest(b"b"));
        let mut both = Md5::digest(b"a").to_vec();
        both.extend_from_slice(&Md5::digest(b"b"));
        let want = format!("{}-2", hex::encode(Md5::digest(&both)));
        let quoted = format!("\"{b}\"");
        assert_eq!(
            multipart_etag([a.as_str(), quoted.as_str()]).as_deref(),
            Some(want.as_str())
        );
        assert!(etag_matches(&format!("\"{want}\""), Some(&want), 2));
        assert!(!etag_matches("0123-2", Some(&want), 2));
        assert_eq!(multipart_etag(["not-hex"]), None);
        assert!(etag_matches("whatever-3", None, 3));
        assert!(!etag_matches("whatever-2", None, 3));
    }
}
