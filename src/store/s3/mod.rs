//! An S3 bucket (AWS or any S3-compatible endpoint) as a [`Store`]: keys live under a prefix.
//!
//! A target map such as
//! `{:bucket "my-backups" :region "us-east-1" :prefix "production/" :endpoint "localhost:9000"}`
//! stores the key `db/b1/manifest.edn` as the object `production/db/b1/manifest.edn`.
//!
//! - **Writes**: one `PutObject` below `:multipart-threshold`; above it a multipart upload
//!   (parts of `:part-size`, `:upload-concurrency` of them in flight) that is either completed
//!   or aborted, so an object appears whole or not at all. [`Store::leftovers`] lists the
//!   uploads a killed process left behind, [`Store::remove_leftover`] aborts one.
//! - **Retries**: every request goes through [`crate::store::retry`]; the SDK's own retries are off.
//!   Each attempt has a time limit (`:timeout-ms`). [`map_sdk_error`] decides what is
//!   transient. Why each retried request is safe when an earlier attempt was executed and
//!   only its reply was lost: the table in [`crate::store::retry`].
//! - **Credentials**: `:access-key-id` / `:secret-access-key` (/ `:session-token`) when given,
//!   else the standard AWS provider chain (environment, `~/.aws` profiles and `AWS_PROFILE`,
//!   web identity, ECS and EC2 instance roles, `credential_process`). SSO profiles are not
//!   built in (the SDK's `sso` feature is off). Secrets are never logged, put into errors, or
//!   shown by `Debug`.
//! - **Checksums**: the SDK computes request checksums only where S3 requires them
//!   (`DeleteObjects`), which keeps older S3-compatible servers working; payloads are still
//!   signed with their SHA-256 (SigV4), and backups carry their own SHA-256 per chunk.

use std::time::SystemTime;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};
use aws_sdk_s3::Client;

use crate::error::{Error, ErrorKind, Result};
use crate::model::Value;
use crate::runtime::block_on;
use crate::store::retry::retry;
use crate::store::{Leftover, LeftoverKind, ObjectMeta, Store};

mod config;
mod errors;
mod multipart;

pub use config::{S3Config, Sse, StaticCredentials, MIN_PART_SIZE};
use errors::{attempt, is_conditional_conflict, is_gone, is_precondition_failed};
pub use errors::{classify, map_sdk_error};

/// Keys per `DeleteObjects` request (S3's limit).
const DELETE_BATCH: usize = 1000;
/// An S3 bucket and prefix as a [`Store`]; cheap to share between threads.
#[derive(Debug)]
pub struct S3Store {
    client: Client,
    cfg: S3Config,
}

impl S3Store {
    /// Given a configuration, build the client and return the store. Fails with
    /// `InvalidArgument` when no region is configured and the environment provides none.
    /// Sends no request: a missing bucket or bad credentials show on first use.
    pub fn open(cfg: S3Config) -> Result<Self> {
        let client = block_on(build_client(&cfg))??;
        Ok(S3Store { client, cfg })
    }

    /// Given a target map, parse it ([`S3Config::from_target`]) and open the store.
    pub fn open_target(target: &Value) -> Result<Self> {
        Self::open(S3Config::from_target(target)?)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// The SDK client (same endpoint, credentials and settings), for tools and tests that
    /// need requests the [`Store`] trait does not offer. Its requests are not retried.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The object key of a store key: `prefix + key`.
    pub fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.cfg.prefix)
    }

    /// GET `key`, refusing (`Corrupt`, not retried) an object of more than `max` bytes: by
    /// its announced length before the body is read, and while the body streams (one
    /// request; no HEAD first).
    fn get_bounded(&self, key: &str, max: u64) -> Result<Vec<u8>> {
        let object = self.checked_key(key)?;
        let loc = self.location(key);
        let op = "get object";
        block_on(retry(&self.cfg.retry, op, &loc, || async {
            let req = self
                .client
                .get_object()
                .bucket(&self.cfg.bucket)
                .key(&object);
            let read = async {
                let mut out = req.send().await.map_err(|e| map_sdk_error(op, &loc, e))?;
                let announced = out.content_length().unwrap_or(0).max(0) as u64;
                if announced > max {
                    return Err(super::too_large(loc.clone(), announced, max));
                }
                let mut bytes = Vec::with_capacity(announced as usize);
                loop {
                    let next = out.body.try_next().await.map_err(|e| {
                        Error::new(
                            ErrorKind::Transient,
                            op,
                            format!("reading the body failed: {e}"),
                        )
                        .with_key(&loc)
                    })?;
                    let Some(piece) = next else { break };
                    if (bytes.len() + piece.len()) as u64 > max {
                        return Err(super::too_large(
                            loc.clone(),
                            (bytes.len() + piece.len()) as u64,
                            max,
                        ));
                    }
                    bytes.extend_from_slice(&piece);
                }
                Ok(bytes)
            };
            match tokio::time::timeout(self.cfg.attempt_timeout, read).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Transient,
                    op,
                    format!(
                        "no complete answer within {} ms",
                        self.cfg.attempt_timeout.as_millis()
                    ),
                )
                .with_key(&loc)),
            }
        }))?
    }

    fn checked_key(&self, key: &str) -> Result<String> {
        crate::repo::layout::check_key(key)?;
        Ok(self.object_key(key))
    }

    async fn put_single(&self, object: &str, loc: &str, bytes: &[u8]) -> Result<()> {
        let body = bytes::Bytes::copy_from_slice(bytes);
        let op = "put object";
        retry(&self.cfg.retry, op, loc, || {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.cfg.bucket)
                .key(object)
                .content_length(body.len() as i64)
                .body(ByteStream::from(body.clone()));
            if let Some(class) = &self.cfg.storage_class {
                req = req.storage_class(class.clone());
            }
            let (sse, kms) = sse_params(&self.cfg.sse);
            req = req.set_server_side_encryption(sse).set_ssekms_key_id(kms);
            attempt(op, loc, self.cfg.attempt_timeout, req.send())
        })
        .await
        .map(|_| ())
    }

    async fn head(&self, object: &str, loc: &str) -> Result<Option<u64>> {
        Ok(self.head_meta(object, loc).await?.map(|(size, _)| size))
    }

    /// HEAD an object: its size and ETag (quotes removed), or `None` if there is none.
    pub(super) async fn head_meta(
        &self,
        object: &str,
        loc: &str,
    ) -> Result<Option<(u64, Option<String>)>> {
        let op = "read object size";
        let result = retry(&self.cfg.retry, op, loc, || {
            let req = self
                .client
                .head_object()
                .bucket(&self.cfg.bucket)
                .key(object);
            attempt(op, loc, self.cfg.attempt_timeout, req.send())
        })
        .await;
        match result {
            Ok(out) => Ok(Some((
                out.content_length().unwrap_or(0).max(0) as u64,
                out.e_tag().map(|t| t.trim_matches('"').to_owned()),
            ))),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_async(&self, prefix: &str, start_after: Option<&str>) -> Result<Vec<ObjectMeta>> {
        let full = self.object_key(prefix);
        let start_after = start_after.map(|k| self.object_key(k));
        let loc = self.location(prefix);
        let op = "list objects";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = retry(&self.cfg.retry, op, &loc, || {
                let req = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.cfg.bucket)
                    .prefix(&full)
                    .set_start_after(start_after.clone())
                    .set_continuation_token(token.clone());
                attempt(op, &loc, self.cfg.attempt_timeout, req.send())
            })
            .await?;
            for o in page.contents() {
                let Some(key) = o.key().and_then(|k| k.strip_prefix(&self.cfg.prefix)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: key.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: o
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            token = page.next_continuation_token().map(String::from);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete_batch(&self, keys: &[ObjectMeta], loc: &str) -> Result<()> {
        let op = "delete objects";
        let ids = keys
            .iter()
            .map(|o| {
                ObjectIdentifier::builder()
                    .key(self.object_key(&o.key))
                    .build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::internal(op, e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(ids))
            .quiet(true)
            .build()
            .map_err(|e| Error::internal(op, e.to_string()))?;
        let out = retry(&self.cfg.retry, op, loc, || {
            let req = self
                .client
                .delete_objects()
                .bucket(&self.cfg.bucket)
                .delete(delete.clone());
            attempt(op, loc, self.cfg.attempt_timeout, req.send())
        })
        .await?;
        // A key that is already gone counts as deleted: a retry after a lost reply meets
        // the first attempt's deletions (S3 itself reports none; some compatible stores do).
        let failed: Vec<_> = out
            .errors()
            .iter()
            .filter(|e| !matches!(e.code(), Some("NoSuchKey" | "NotFound")))
            .collect();
        if let Some(e) = failed.first() {
            let code = e.code().unwrap_or("unknown");
            let (kind, hint) = classify(None, Some(code));
            let mut err = Error::new(
                kind,
                op,
                format!(
                    "{} of {} objects were not deleted; first: {code}: {}",
                    failed.len(),
                    keys.len(),
                    e.message().unwrap_or("")
                ),
            )
            .with_key(format!(
                "s3://{}/{}",
                self.cfg.bucket,
                e.key().unwrap_or_default()
            ));
            err.hint = hint;
            return Err(err);
        }
        Ok(())
    }
}

pub(super) fn sse_params(sse: &Option<Sse>) -> (Option<ServerSideEncryption>, Option<String>) {
    match sse {
        None => (None, None),
        Some(Sse::Aes256) => (Some(ServerSideEncryption::Aes256), None),
        Some(Sse::Kms { key_id }) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
    }
}

async fn build_client(cfg: &S3Config) -> Result<Client> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(cfg.connect_timeout)
                .build(),
        );
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(c) = &cfg.credentials {
        loader = loader.credentials_provider(Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "datacamp-target",
        ));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(Error::invalid(
            "open S3 target",
            format!("no region for bucket {:?}", cfg.bucket),
        )
        .with_hint("set :region in the target, or AWS_REGION / a profile's region"));
    }
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(cfg.path_style)
        .retry_config(RetryConfig::disabled())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &cfg.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(Client::from_conf(builder.build()))
}

impl Store for S3Store {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let object = self.checked_key(key)?;
        let loc = self.location(key);
        block_on(async {
            if bytes.len() as u64 >= self.cfg.multipart_threshold {
                self.put_multipart(&object, &loc, bytes).await
            } else {
                self.put_single(&object, &loc, bytes).await
            }
        })?
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.get_bounded(key, u64::MAX)
    }

    fn get_max(&self, key: &str, max: u64) -> Result<Vec<u8>> {
        self.get_bounded(key, max)
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let object = self.checked_key(key)?;
        let loc = self.location(key);
        block_on(self.head(&object, &loc))?
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        block_on(self.list_async(prefix, None))?
    }

    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = block_on(self.list_async(prefix, Some(start_after)))??;
        // S3 compares keys as UTF-8 bytes, as we do; keep the contract exact regardless.
        out.retain(|o| o.key.as_str() > start_after);
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let object = self.checked_key(key)?;
        let loc = self.location(key);
        let op = "delete object";
        let result = block_on(retry(&self.cfg.retry, op, &loc, || {
            let req = self
                .client
                .delete_object()
                .bucket(&self.cfg.bucket)
                .key(&object);
            attempt(op, &loc, self.cfg.attempt_timeout, req.send())
        }))?;
        match result {
            Ok(_) => Ok(()),
            // S3 answers 204 for a missing key; a store that answers 404 means the same.
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let loc = self.location(prefix);
        block_on(async {
            let objects = self.list_async(prefix, None).await?;
            for batch in objects.chunks(DELETE_BATCH) {
                self.delete_batch(batch, &loc).await?;
            }
            Ok(objects.len() as u64)
        })?
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let object = self.checked_key(key)?;
        let loc = self.location(key);
        let body = bytes::Bytes::copy_from_slice(bytes);
        let op = "put object if absent";
        let mut attempts = 0u32;
        let result = block_on(retry(&self.cfg.retry, op, &loc, || {
            attempts += 1;
            let req = self
                .client
                .put_object()
                .bucket(&self.cfg.bucket)
                .key(&object)
                .if_none_match("*")
                .content_length(body.len() as i64)
                .body(ByteStream::from(body.clone()));
            let sent = attempt(op, &loc, self.cfg.attempt_timeout, req.send());
            async move {
                // 409 ConditionalRequestConflict: another conditional write to the key was
                // in flight; AWS says to retry, and the retry meets its outcome (412 or 200).
                sent.await.map_err(|mut e| {
                    if is_conditional_conflict(&e) {
                        e.kind = ErrorKind::Transient;
                    }
                    e
                })
            }
        }))?;
        match result {
            Ok(_) => Ok(true),
            // 412: the object exists. On the first attempt it cannot be ours. On a retry an
            // earlier attempt may have created it and lost its reply: it is ours exactly when
            // it holds our bytes (callers make them unique, e.g. with an owner id).
            Err(e) if is_precondition_failed(&e) => {
                if attempts == 1 {
                    return Ok(false);
                }
                match self.get(key) {
                    Ok(stored) => Ok(stored == bytes),
                    Err(g) if g.kind == ErrorKind::NotFound => Ok(false),
                    Err(g) => Err(g),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn object_key_of(&self, key: &str) -> Option<String> {
        Some(self.object_key(key))
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.cfg.bucket, self.cfg.prefix)
    }

    fn leftovers(&self, prefix: &str) -> Result<Vec<Leftover>> {
        block_on(self.uploads_async(prefix))?
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<()> {
        match &leftover.kind {
            // Uploads are atomic: an S3 store never leaves temporaries.
            LeftoverKind::Temporary => Ok(()),
            LeftoverKind::Upload { upload_id } => {
                let object = self.checked_key(&leftover.key)?;
                let loc = self.location(&leftover.key);
                block_on(self.abort_upload(&object, &loc, upload_id))?
            }
        }
    }
}
