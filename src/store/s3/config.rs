//! The settings of an S3 target: parsing and checking its EDN map ([`S3Config::from_target`]).

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::types::StorageClass;

use crate::error::{Error, Result};
use crate::model::Value;
use crate::options::Opts;
use crate::store::retry::RetryPolicy;

pub(super) const MIB: i64 = 1 << 20;
/// The smallest part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The largest object a single `PutObject` (and a single part) may carry.
pub(super) const MAX_SINGLE_PUT: i64 = 5 << 30;
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
        o.only_keys(&KEYS, "S3 target")?;
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
                    format!(
                        ":storage-class must be a keyword such as :standard-ia, got {}",
                        crate::options::describe(other)
                    ),
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
                    format!(
                        ":sse must be :aes256 or :kms, got {}",
                        crate::options::describe(other)
                    ),
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
            format!(
                ":storage-class {} is not an S3 storage class",
                crate::error::excerpt(name)
            ),
        )
        .with_hint(format!("one of {}", known.join(", "))))
    }
}

pub(super) fn normalize_prefix(p: &str) -> String {
    let p = p.trim().trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    }
}

pub(super) fn normalize_endpoint(e: &str) -> Result<String> {
    let e = e.trim();
    let bad = |why: &str| {
        // Never echo the endpoint: a URL may carry credentials (user:password@host).
        Error::invalid("open S3 target", format!("the :endpoint {why}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::edn;
    use crate::error::ErrorKind;

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
}
