//! Multipart uploads: parts in parallel, then complete, or abort on failure; and the abort
//! of uploads a killed process left behind.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

use super::errors::attempt;
use super::{sse_params, S3Store};
use crate::error::{Error, ErrorKind, Result};
use crate::store::retry::{retry, RetryPolicy};
use crate::store::Store;

/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
impl S3Store {
    pub(super) async fn put_multipart(&self, object: &str, loc: &str, bytes: &[u8]) -> Result<()> {
        let op = "create multipart upload";
        let created = retry(&self.cfg.retry, op, loc, || {
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
        if let Err(mut err) = result {
            if let Err(abort) = self.abort_upload(object, loc, &upload_id).await {
                err.message = format!(
                    "{}; aborting multipart upload {upload_id} failed too ({}), cleanup-incomplete aborts it later",
                    err.message, abort.message
                );
            }
            return Err(err);
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
            // An attempt whose answer was lost may have completed the upload already: then
            // the retry finds no such upload, and the object is there with the right size.
            Err(e) if e.kind == ErrorKind::NotFound && attempts > 1 => {
                match self.head(object, loc).await? {
                    Some(size) if size == len => Ok(()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn abort_upload(&self, object: &str, loc: &str, upload_id: &str) -> Result<()> {
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
            Err(e) if e.kind == ErrorKind::NotFound && e.message.contains("NoSuchUpload") => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn abort_stale_async(
        &self,
        prefix: &str,
        older_than: SystemTime,
    ) -> Result<u64> {
        let full = self.object_key(prefix);
        let loc = self.location(prefix);
        let op = "list multipart uploads";
        let mut stale: Vec<(String, String)> = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = retry(&self.cfg.retry, op, &loc, || {
                let req = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.cfg.bucket)
                    .prefix(&full)
                    .set_key_marker(key_marker.clone())
                    .set_upload_id_marker(id_marker.clone());
                attempt(op, &loc, self.cfg.attempt_timeout, req.send())
            })
            .await?;
            for u in page.uploads() {
                let initiated = u.initiated().and_then(|t| SystemTime::try_from(*t).ok());
                if let (Some(key), Some(id), Some(t)) = (u.key(), u.upload_id(), initiated) {
                    if t < older_than {
                        stale.push((key.to_owned(), id.to_owned()));
                    }
                }
            }
            key_marker = page.next_key_marker().map(String::from);
            id_marker = page.next_upload_id_marker().map(String::from);
            if !page.is_truncated().unwrap_or(false) || key_marker.is_none() {
                break;
            }
        }
        let mut aborted = 0;
        for (object, id) in stale {
            let loc = format!("s3://{}/{object}", self.cfg.bucket);
            self.abort_upload(&object, &loc, &id).await?;
            aborted += 1;
        }
        Ok(aborted)
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
