//! An S3 bucket (AWS or any S3-compatible endpoint) as a [`Store`]: keys live under a prefix.
//!
//! A target map such as
//! `{:bucket "my-backups" :region "us-east-1" :prefix "production/" :endpoint "localhost:9000"}`
//! stores the key `db/b1/manifest.edn` as the object `production/db/b1/manifest.edn`.
//!
//! - **Writes**: one `PutObject` below `:multipart-threshold`; above it a multipart upload
//!   (parts of `:part-size`, `:upload-concurrency` of them in flight) that is either completed
//!   or aborted, so an object appears whole or not at all. [`Store::abort_stale_uploads`]
//!   aborts uploads that a killed process left behind.
//! - **Retries**: every request goes through [`super::retry`]; the SDK's own retries are off.
//!   Each attempt has a time limit (`:timeout-ms`). [`map_sdk_error`] decides what is
//!   transient.
//! - **Credentials**: `:access-key-id` / `:secret-access-key` (/ `:session-token`) when given,
//!   else the standard AWS provider chain (environment, `~/.aws` profiles and `AWS_PROFILE`,
//!   web identity, ECS and EC2 instance roles, `credential_process`). SSO profiles are not
//!   built in (the SDK's `sso` feature is off). Secrets are never logged, put into errors, or
//!   shown by `Debug`.
//! - **Checksums**: the SDK computes request checksums only where S3 requires them
//!   (`DeleteObjects`), which keeps older S3-compatible servers working; payloads are still
//!   signed with their SHA-256 (SigV4), and backups carry their own SHA-256 per chunk.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, ServerSideEncryption,
    StorageClass,
};
use aws_sdk_s3::Client;

use super::retry::{retry, RetryPolicy};
use super::{ObjectMeta, Store};
use crate::error::{Error, ErrorKind, Result};
use crate::model::Value;
use crate::options::Opts;
use crate::runtime::block_on;

const MIB: i64 = 1 << 20;
/// The smallest part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The largest object a single `PutObject` (and a single part) may carry.
const MAX_SINGLE_PUT: i64 = 5 << 30;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Keys per `DeleteObjects` request (S3's limit).
const DELETE_BATCH: usize = 1000;
/// The option keys of an S3 target map.
const KEYS: [&str; 19] = [
    "bucket",
    "region",
    "prefix",
    "endpoint",
    "path-style-access?",
    "access-key-id",
    "secret-access-key",
    "session-token",
    "storage-class",
    "sse",
    "kms-key-id",
    "multipart-threshold",
    "part-size",
    "upload-concurrency",
    "max-retries",
    "retry-base-ms",
    "retry-max-ms",
    "connect-timeout-ms",
    "timeout-ms",
];

/// Server-side encryption of the stored objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sse {
    /// `:sse :aes256`: S3-managed keys (SSE-S3).
    Aes256,
    /// `:sse :kms`: AWS KMS (SSE-KMS), with `:kms-key-id` or the account's default key.
    Kms {
        /// The KMS key id or ARN, if given.
        key_id: Option<String>,
    },
}

/// Explicit credentials from the target map (for S3-compatible stores).
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// `:access-key-id`.
    pub access_key_id: String,
    /// `:secret-access-key` (never shown by `Debug`).
    pub secret_access_key: String,
    /// `:session-token`, if any (never shown by `Debug`).
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// The settings of an S3 target, parsed from its EDN map by [`S3Config::from_target`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// `:bucket` (required).
    pub bucket: String,
    /// `:region`; when absent, the environment's (`AWS_REGION`, the profile, instance
    /// metadata) is used, and opening fails if there is none.
    pub region: Option<String>,
    /// `:prefix`, default `datahike-backups/`: empty, or ending in `/` (added if missing);
    /// a leading `/` is dropped.
    pub prefix: String,
    /// `:endpoint` as a URL: `host:port` becomes `http://host:port` for loopback hosts
    /// (`localhost`, `127.x`, `[::1]`) and `https://host:port` otherwise; a full `http://` or
    /// `https://` URL is kept. `None`: AWS's endpoint for the region.
    pub endpoint: Option<String>,
    /// `:path-style-access?`: `https://host/bucket/key` instead of `https://bucket.host/key`.
    /// Default: true when `:endpoint` is given, false for AWS.
    pub path_style: bool,
    /// `:access-key-id` + `:secret-access-key` (+ `:session-token`); `None`: the AWS chain.
    pub credentials: Option<StaticCredentials>,
    /// `:storage-class` (`:standard-ia` or `"STANDARD_IA"`, …), passed to every upload.
    pub storage_class: Option<StorageClass>,
    /// `:sse` (`:aes256` or `:kms`, with `:kms-key-id`), passed to every upload.
    pub sse: Option<Sse>,
    /// `:multipart-threshold` (bytes, default 16 MiB, 5 MiB to 5 GiB): objects of at least
    /// this size go up as multipart uploads.
    pub multipart_threshold: u64,
    /// `:part-size` (bytes, default 8 MiB, 5 MiB to 5 GiB); raised automatically when an
    /// object would need more than 10,000 parts.
    pub part_size: u64,
    /// `:upload-concurrency` (default 4, 1 to 64): parts of one object in flight at once.
    pub upload_concurrency: usize,
    /// `:max-retries` (default 7, so 8 attempts), `:retry-base-ms` (100), `:retry-max-ms`
    /// (10,000).
    pub retry: RetryPolicy,
    /// `:connect-timeout-ms` (default 10,000): limit on opening a connection.
    pub connect_timeout: Duration,
    /// `:timeout-ms` (default 120,000): limit on one attempt of one request, body included;
    /// an attempt that takes longer is abandoned and retried.
    pub attempt_timeout: Duration,
}

impl S3Config {
    /// Given an S3 target map, return its configuration (every option documented on the
    /// fields). Fails with `InvalidArgument` naming the option on a missing `:bucket`, a value
    /// of the wrong type or range, an unknown key, half of a key pair, or `:kms-key-id`
    /// without `:sse :kms`. Touches no network.
    pub fn from_target(target: &Value) -> Result<Self> {
        const OP: &str = "open S3 target";
        let o = Opts::new(target, OP)?;
        if let Value::Map(entries) = target {
            for (k, _) in entries {
                let known =
                    matches!(k, Value::Keyword(n) if n.ns.is_none() && KEYS.contains(&&*n.name));
                let namespaced = matches!(k, Value::Keyword(n) if n.ns.is_some());
                if !known && !namespaced {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "unknown option {} in the S3 target",
                            crate::format::edn::write(k)
                        ),
                    )
                    .with_hint(format!("S3 target options: :{}", KEYS.join(" :"))));
                }
            }
        }
        let bucket = o.required_string("bucket")?.trim().to_owned();
        let region = o
            .string("region")?
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from);
        let prefix = normalize_prefix(o.string("prefix")?.unwrap_or("datahike-backups/"));
        let endpoint = o.string("endpoint")?.map(normalize_endpoint).transpose()?;
        let path_style = o.bool("path-style-access?", endpoint.is_some())?;
        let credentials = match (o.string("access-key-id")?, o.string("secret-access-key")?) {
            (Some(id), Some(secret)) => Some(StaticCredentials {
                access_key_id: id.to_owned(),
                secret_access_key: secret.to_owned(),
                session_token: o.string("session-token")?.map(String::from),
            }),
            (None, None) if o.get("session-token").is_none() => None,
            _ => return Err(Error::invalid(
                OP,
                ":access-key-id and :secret-access-key go together (and :session-token needs both)",
            )),
        };
        let storage_class = match o.get("storage-class") {
            None => None,
            Some(Value::Keyword(n)) if n.ns.is_none() => Some(storage_class(
                &n.name.to_ascii_uppercase().replace('-', "_"),
            )?),
            Some(Value::String(s)) => Some(storage_class(s)?),
            Some(other) => {
                return Err(Error::invalid(
                    OP,
                    format!(":storage-class must be a keyword such as :standard-ia, got {other:?}"),
                ))
            }
        };
        let kms_key_id = o.string("kms-key-id")?.map(String::from);
        let sse = match o.get("sse") {
            None => None,
            Some(Value::Keyword(n)) if n.ns.is_none() && &*n.name == "aes256" => Some(Sse::Aes256),
            Some(Value::Keyword(n)) if n.ns.is_none() && &*n.name == "kms" => Some(Sse::Kms {
                key_id: kms_key_id.clone(),
            }),
            Some(other) => {
                return Err(Error::invalid(
                    OP,
                    format!(":sse must be :aes256 or :kms, got {other:?}"),
                ))
            }
        };
        if kms_key_id.is_some() && !matches!(sse, Some(Sse::Kms { .. })) {
            return Err(Error::invalid(OP, ":kms-key-id needs :sse :kms"));
        }
        let min_part = MIN_PART_SIZE as i64;
        Ok(S3Config {
            bucket,
            region,
            prefix,
            endpoint,
            path_style,
            credentials,
            storage_class,
            sse,
            multipart_threshold: o.long_in(
                "multipart-threshold",
                16 * MIB,
                min_part,
                MAX_SINGLE_PUT,
            )? as u64,
            part_size: o.long_in("part-size", 8 * MIB, min_part, MAX_SINGLE_PUT)? as u64,
            upload_concurrency: o.long_in("upload-concurrency", 4, 1, 64)? as usize,
            retry: RetryPolicy {
                max_attempts: o.long_in("max-retries", 7, 0, 100)? as u32 + 1,
                base_delay: Duration::from_millis(
                    o.long_in("retry-base-ms", 100, 1, 60_000)? as u64
                ),
                max_delay: Duration::from_millis(
                    o.long_in("retry-max-ms", 10_000, 1, 3_600_000)? as u64
                ),
            },
            connect_timeout: Duration::from_millis(o.long_in(
                "connect-timeout-ms",
                10_000,
                1,
                600_000,
            )? as u64),
            attempt_timeout: Duration::from_millis(o.long_in(
                "timeout-ms",
                120_000,
                1,
                86_400_000,
            )? as u64),
        })
    }
}

fn storage_class(name: &str) -> Result<StorageClass> {
    let known = StorageClass::values();
    if known.contains(&name) {
        Ok(StorageClass::from(name))
    } else {
        Err(Error::invalid(
            "open S3 target",
            format!(":storage-class {name:?} is not an S3 storage class"),
        )
        .with_hint(format!("one of {}", known.join(", "))))
    }
}

fn normalize_prefix(p: &str) -> String {
    let p = p.trim().trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    }
}

fn normalize_endpoint(e: &str) -> Result<String> {
    let e = e.trim();
    let bad = |why: &str| {
        Error::invalid("open S3 target", format!(":endpoint {e:?} {why}"))
            .with_hint("give host:port (\"localhost:9000\") or a URL (\"https://s3.example.com\")")
    };
    if let Some((scheme, rest)) = e.split_once("://") {
        if !matches!(scheme, "http" | "https") {
            return Err(bad("must use http or https"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("has no host"));
        }
        return Ok(format!("{scheme}://{rest}"));
    }
    let e = e.trim_end_matches('/');
    if e.is_empty() || e.contains('/') {
        return Err(bad("is not host:port or a URL"));
    }
    let host = if e.starts_with('[') {
        e.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        e.split(':').next().unwrap_or_default().to_owned()
    };
    let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    Ok(format!("{}://{e}", if loopback { "http" } else { "https" }))
}

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

    fn checked_key(&self, key: &str) -> Result<String> {
        crate::layout::check_key(key)?;
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

    async fn put_multipart(&self, object: &str, loc: &str, bytes: &[u8]) -> Result<()> {
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

    async fn head(&self, object: &str, loc: &str) -> Result<Option<u64>> {
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
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_async(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = self.object_key(prefix);
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
        if let Some(e) = out.errors().first() {
            let code = e.code().unwrap_or("unknown");
            let (kind, hint) = classify(None, Some(code));
            let mut err = Error::new(
                kind,
                op,
                format!(
                    "{} of {} objects were not deleted; first: {code}: {}",
                    out.errors().len(),
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

    async fn abort_stale_async(&self, prefix: &str, older_than: SystemTime) -> Result<u64> {
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

fn sse_params(sse: &Option<Sse>) -> (Option<ServerSideEncryption>, Option<String>) {
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

/// Run one attempt of a request with a time limit; map its error ([`map_sdk_error`]).
async fn attempt<T, E>(
    op: &str,
    loc: &str,
    limit: Duration,
    send: impl Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
) -> Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, send).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(map_sdk_error(op, loc, e)),
        Err(_) => Err(Error::new(
            ErrorKind::Transient,
            op,
            format!("no answer within {} ms", limit.as_millis()),
        )
        .with_key(loc)),
    }
}

/// Given an S3 error code and/or HTTP status, return the error kind and a hint.
///
/// Transient (retried): HTTP 5xx and 429, and the codes `SlowDown`, `Throttling`,
/// `ThrottlingException`, `RequestTimeout`, `RequestTimeTooSkewed` (the SDK corrects its
/// clock skew on the next attempt), `InternalError`, `ServiceUnavailable`. Not found:
/// `NoSuchKey`, `NoSuchUpload`, `NoSuchBucket` (with a hint), HTTP 404. Denied (with a hint):
/// `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `ExpiredToken`,
/// `InvalidToken`, `AllAccessDisabled`, `AccountProblem`, HTTP 403. Wrong region or endpoint
/// (`PermanentRedirect`, `AuthorizationHeaderMalformed`, HTTP 301): `InvalidArgument`.
/// Anything else: `Io`, not retried.
pub fn classify(status: Option<u16>, code: Option<&str>) -> (ErrorKind, Option<String>) {
    let hint = |s: &str| Some(s.to_owned());
    match code.unwrap_or("") {
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestTimeout"
        | "RequestTimeTooSkewed"
        | "InternalError"
        | "ServiceUnavailable" => return (ErrorKind::Transient, None),
        "NoSuchBucket" => {
            return (
                ErrorKind::NotFound,
                hint(
                    "the bucket does not exist: create it, or check :bucket, :region and :endpoint",
                ),
            )
        }
        "NoSuchKey" | "NoSuchUpload" | "NotFound" => return (ErrorKind::NotFound, None),
        "AccessDenied"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "AllAccessDisabled"
        | "AccountProblem" => {
            return (
                ErrorKind::Denied,
                hint(
                    "check the credentials (:access-key-id/:secret-access-key, or the AWS \
                      environment, profile or role) and that they may use this bucket and prefix",
                ),
            )
        }
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => {
            return (
                ErrorKind::InvalidArgument,
                hint("the bucket is in another region: set :region to the bucket's region"),
            )
        }
        _ => {}
    }
    match status {
        Some(s) if s >= 500 || s == 429 => (ErrorKind::Transient, None),
        Some(404) => (ErrorKind::NotFound, None),
        Some(403) => (
            ErrorKind::Denied,
            hint("check the credentials and that they may use this bucket and prefix"),
        ),
        Some(301) => (
            ErrorKind::InvalidArgument,
            hint("the bucket is in another region: set :region to the bucket's region"),
        ),
        _ => (ErrorKind::Io, None),
    }
}

/// Given an SDK error, return the crate's error for operation `op` on `loc`: the one place
/// where S3 failures become error kinds.
///
/// Service errors: by code and HTTP status ([`classify`]). Timeouts, connection failures
/// (refused, reset, closed before or during the response) and unreadable responses:
/// `Transient`. Credentials that the provider chain could not load: `Denied` with a hint,
/// unless the provider timed out or failed (`Transient`). Other failures before sending
/// (endpoint, signing, request construction): `InvalidArgument`, not retried.
pub fn map_sdk_error<E>(op: &str, loc: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, hint, message) = match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = err.code().map(String::from);
            let (kind, hint) = classify(Some(status), code.as_deref());
            let message = match (code, err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                (None, _) => format!("HTTP {status}"),
            };
            (kind, hint, message)
        }
        SdkError::TimeoutError(_) => (ErrorKind::Transient, None, "timed out".to_owned()),
        SdkError::ResponseError(_) => (
            ErrorKind::Transient,
            None,
            format!("unreadable response: {}", DisplayErrorContext(&err)),
        ),
        SdkError::DispatchFailure(d) => {
            let text = format!("{}", DisplayErrorContext(&err));
            if d.is_io()
                || d.is_timeout()
                || d.as_other() == Some(aws_smithy_types::retry::ErrorKind::TransientError)
            {
                (
                    ErrorKind::Transient,
                    None,
                    format!("connection failed: {text}"),
                )
            } else if let Some(c) =
                find_source::<aws_credential_types::provider::error::CredentialsError>(&err)
            {
                use aws_credential_types::provider::error::CredentialsError as C;
                match c {
                    C::ProviderTimedOut(_) | C::ProviderError(_) => {
                        (ErrorKind::Transient, None, format!("loading credentials failed: {text}"))
                    }
                    _ => (
                        ErrorKind::Denied,
                        Some("no usable AWS credentials: set :access-key-id and :secret-access-key, \
                              or configure the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, a role)"
                            .to_owned()),
                        format!("no credentials: {text}"),
                    ),
                }
            } else {
                (
                    ErrorKind::InvalidArgument,
                    Some("check :endpoint, :region and the credentials".to_owned()),
                    format!("the request could not be sent: {text}"),
                )
            }
        }
        _ => (
            ErrorKind::InvalidArgument,
            None,
            format!(
                "the request could not be built: {}",
                DisplayErrorContext(&err)
            ),
        ),
    };
    let mut e = Error::new(kind, op, message).with_key(loc);
    e.hint = hint;
    e.source = Some(Box::new(err));
    e
}

fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
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
                let out = req.send().await.map_err(|e| map_sdk_error(op, &loc, e))?;
                let body = out.body.collect().await.map_err(|e| {
                    Error::new(
                        ErrorKind::Transient,
                        op,
                        format!("reading the body failed: {e}"),
                    )
                    .with_key(&loc)
                })?;
                Ok(body.into_bytes().to_vec())
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

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let object = self.checked_key(key)?;
        let loc = self.location(key);
        block_on(self.head(&object, &loc))?
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        block_on(self.list_async(prefix))?
    }

    fn delete(&self, key: &str) -> Result<()> {
        let object = self.checked_key(key)?;
        let loc = self.location(key);
        let op = "delete object";
        block_on(retry(&self.cfg.retry, op, &loc, || {
            let req = self
                .client
                .delete_object()
                .bucket(&self.cfg.bucket)
                .key(&object);
            attempt(op, &loc, self.cfg.attempt_timeout, req.send())
        }))?
        .map(|_| ())
    }

    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let loc = self.location(prefix);
        block_on(async {
            let objects = self.list_async(prefix).await?;
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
        let result = block_on(retry(&self.cfg.retry, op, &loc, || {
            let req = self
                .client
                .put_object()
                .bucket(&self.cfg.bucket)
                .key(&object)
                .if_none_match("*")
                .content_length(body.len() as i64)
                .body(ByteStream::from(body.clone()));
            attempt(op, &loc, self.cfg.attempt_timeout, req.send())
        }))?;
        match result {
            Ok(_) => Ok(true),
            // 412 PreconditionFailed: the object exists (409: a concurrent conditional write won).
            Err(e)
                if e.message.contains("PreconditionFailed") || e.message.contains("HTTP 412") =>
            {
                Ok(false)
            }
            Err(e)
                if e.message.contains("ConditionalRequestConflict")
                    || e.message.contains("HTTP 409") =>
            {
                Ok(false)
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

    fn abort_stale_uploads(&self, prefix: &str, older_than: SystemTime) -> Result<u64> {
        block_on(self.abort_stale_async(prefix, older_than))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::edn;

    fn cfg(text: &str) -> Result<S3Config> {
        S3Config::from_target(&edn::parse(text).unwrap())
    }

    #[test]
    fn defaults_and_the_issue_example() {
        let c = cfg(
            r#"{:bucket "my-backups" :region "us-east-1" :prefix "production/"
                        :endpoint "localhost:9000" :path-style-access? true}"#,
        )
        .unwrap();
        assert_eq!(c.bucket, "my-backups");
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.prefix, "production/");
        assert_eq!(c.endpoint.as_deref(), Some("http://localhost:9000"));
        assert!(c.path_style);
        assert_eq!(c.multipart_threshold, 16 << 20);
        assert_eq!(c.part_size, 8 << 20);
        assert_eq!(c.retry, RetryPolicy::default());
        assert_eq!(c.attempt_timeout, Duration::from_secs(120));
        let d = cfg(r#"{:bucket "b"}"#).unwrap();
        assert_eq!(d.prefix, "datahike-backups/");
        assert_eq!(
            (d.endpoint, d.path_style, d.region, d.credentials),
            (None, false, None, None)
        );
    }

    #[test]
    fn prefixes_and_endpoints_are_normalized() {
        assert_eq!(normalize_prefix("prod"), "prod/");
        assert_eq!(normalize_prefix("/a/b/"), "a/b/");
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(
            normalize_endpoint("127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            normalize_endpoint("[::1]:9000").unwrap(),
            "http://[::1]:9000"
        );
        assert_eq!(
            normalize_endpoint("minio.lan:9000").unwrap(),
            "https://minio.lan:9000"
        );
        assert_eq!(
            normalize_endpoint("http://minio.lan:9000/").unwrap(),
            "http://minio.lan:9000"
        );
        assert_eq!(
            normalize_endpoint("https://s3.example.com").unwrap(),
            "https://s3.example.com"
        );
        for bad in ["ftp://x", "http://", "a/b", ""] {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_are_checked() {
        let c = cfg(
            r#"{:bucket "b" :storage-class :standard-ia :sse :kms :kms-key-id "k1"
                        :access-key-id "AKIA" :secret-access-key "s3cr3t" :session-token "t0k"
                        :multipart-threshold 6291456 :part-size 5242880 :max-retries 2
                        :retry-base-ms 5 :timeout-ms 1500 :datacamp/ignored 1}"#,
        )
        .unwrap();
        assert_eq!(c.storage_class, Some(StorageClass::StandardIa));
        assert_eq!(
            c.sse,
            Some(Sse::Kms {
                key_id: Some("k1".into())
            })
        );
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.retry.base_delay, Duration::from_millis(5));
        assert_eq!(c.attempt_timeout, Duration::from_millis(1500));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("AKIA") && !shown.contains("s3cr3t") && !shown.contains("t0k"),
            "{shown}"
        );
        assert_eq!(
            cfg(r#"{:bucket "b" :sse :aes256 :storage-class "GLACIER_IR"}"#)
                .unwrap()
                .sse,
            Some(Sse::Aes256)
        );
        for (bad, needle) in [
            (r#"{:region "x"}"#, ":bucket is required"),
            (r#"{:bucket "b" :regoin "x"}"#, "unknown option :regoin"),
            (
                r#"{:bucket "b" :access-key-id "a"}"#,
                ":access-key-id and :secret-access-key",
            ),
            (r#"{:bucket "b" :sse :des}"#, ":sse must be"),
            (
                r#"{:bucket "b" :kms-key-id "k"}"#,
                ":kms-key-id needs :sse :kms",
            ),
            (
                r#"{:bucket "b" :storage-class :fast}"#,
                "not an S3 storage class",
            ),
            (r#"{:bucket "b" :part-size 1000}"#, ":part-size must be"),
            (
                r#"{:bucket "b" :endpoint "ftp://x"}"#,
                "must use http or https",
            ),
        ] {
            let err = cfg(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
            assert!(err.to_string().contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn classification_of_service_errors() {
        use ErrorKind::*;
        for (status, code, kind) in [
            (503, Some("SlowDown"), Transient),
            (500, Some("InternalError"), Transient),
            (502, None, Transient),
            (429, None, Transient),
            (400, Some("RequestTimeout"), Transient),
            (404, Some("NoSuchKey"), NotFound),
            (404, Some("NoSuchBucket"), NotFound),
            (404, None, NotFound),
            (403, Some("AccessDenied"), Denied),
            (403, Some("InvalidAccessKeyId"), Denied),
            (403, Some("SignatureDoesNotMatch"), Denied),
            (403, None, Denied),
            (301, Some("PermanentRedirect"), InvalidArgument),
            (400, Some("InvalidArgument"), Io),
        ] {
            assert_eq!(classify(Some(status), code).0, kind, "{status} {code:?}");
        }
        assert!(classify(Some(404), Some("NoSuchBucket"))
            .1
            .unwrap()
            .contains("bucket does not exist"));
    }

    #[test]
    fn connection_and_credential_failures_are_classified() {
        use aws_sdk_s3::error::ConnectorError;
        use aws_sdk_s3::operation::get_object::GetObjectError;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e: SdkError<GetObjectError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(io)));
        let mapped = map_sdk_error("get object", "s3://b/k", e);
        assert_eq!(mapped.kind, ErrorKind::Transient);
        assert_eq!(mapped.key.as_deref(), Some("s3://b/k"));
        let missing = aws_credential_types::provider::error::CredentialsError::not_loaded(
            "no providers in chain",
        );
        let e: SdkError<GetObjectError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::other(Box::new(missing), None));
        let mapped = map_sdk_error("get object", "s3://b/k", e);
        assert_eq!(mapped.kind, ErrorKind::Denied, "{mapped}");
        assert!(mapped.hint.unwrap().contains(":access-key-id"));
        let slow = aws_credential_types::provider::error::CredentialsError::provider_timed_out(
            Duration::from_secs(5),
        );
        let e: SdkError<GetObjectError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::other(Box::new(slow), None));
        assert_eq!(
            map_sdk_error("get object", "s3://b/k", e).kind,
            ErrorKind::Transient
        );
    }
}
