//! The `--target` of a command: a directory path or `s3://bucket/prefix/`, opened as the
//! library's [`Store`] through the same target map the Clojure API sends
//! ([`datacamp::store::open_target`]).

use std::path::Path;
use std::sync::Arc;

use datacamp::model::{kw_map, Value};
use datacamp::store::{self, Store};
use datacamp::{Error, ErrorKind, Result};

/// Where the backups are, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A local directory (must exist: the CLI never creates one).
    Dir(String),
    /// An S3 bucket and key prefix (`""` for the bucket's root).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, ending in `/` unless empty.
        prefix: String,
    },
}

/// The S3 settings given next to an `s3://` target.
#[derive(Clone, Debug, Default)]
pub struct S3Flags {
    /// `--endpoint`: `host:port` or a URL of an S3-compatible server.
    pub endpoint: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--path-style`.
    pub path_style: bool,
}

impl Target {
    /// Given the `--target` text, return the target: `s3://bucket[/prefix/]`, or a path.
    pub fn parse(s: &str) -> Result<Target> {
        let op = "read --target";
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(
                    Error::invalid(op, format!("{s:?} names no bucket")).with_hint(
                        "write s3://BUCKET/PREFIX/, e.g. s3://my-backups/datahike-backups/",
                    ),
                );
            }
            let prefix = prefix.trim_start_matches('/');
            let prefix = if prefix.is_empty() || prefix.ends_with('/') {
                prefix.to_owned()
            } else {
                format!("{prefix}/")
            };
            return Ok(Target::S3 {
                bucket: bucket.to_owned(),
                prefix,
            });
        }
        if s.contains("://") {
            return Err(Error::invalid(
                op,
                format!("{s:?}: only directories and s3:// targets are supported"),
            ));
        }
        if s.trim().is_empty() {
            return Err(Error::invalid(op, "the target is empty"));
        }
        Ok(Target::Dir(s.to_owned()))
    }

    /// The target map the library (and the Clojure API) understands.
    pub fn to_value(&self, s3: &S3Flags) -> Value {
        match self {
            Target::Dir(p) => kw_map([("path", Value::str(p))]),
            Target::S3 { bucket, prefix } => {
                let mut entries = vec![
                    ("bucket", Value::str(bucket)),
                    ("prefix", Value::str(prefix)),
                ];
                if let Some(e) = &s3.endpoint {
                    entries.push(("endpoint", Value::str(e)));
                }
                if let Some(r) = &s3.region {
                    entries.push(("region", Value::str(r)));
                }
                if s3.path_style {
                    entries.push(("path-style-access?", Value::Bool(true)));
                }
                kw_map(entries)
            }
        }
    }

    /// Open the store: a directory must exist (a read-only tool never creates one);
    /// S3 credentials come from the AWS provider chain.
    pub fn open(&self, s3: &S3Flags) -> Result<Arc<dyn Store>> {
        if let Target::Dir(p) = self {
            let path = Path::new(p);
            if !path.exists() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "open backup directory",
                    format!("{p} does not exist"),
                )
                .with_key(p.clone()));
            }
        }
        if !matches!(self, Target::S3 { .. })
            && (s3.endpoint.is_some() || s3.region.is_some() || s3.path_style)
        {
            return Err(Error::invalid(
                "read arguments",
                "--endpoint, --region and --path-style apply to s3:// targets only",
            ));
        }
        store::open_target(&self.to_value(s3))
    }

    /// How the target is shown to people.
    pub fn describe(&self) -> String {
        match self {
            Target::Dir(p) => p.clone(),
            Target::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("s3://b/a/b").unwrap(),
            Target::S3 {
                bucket: "b".into(),
                prefix: "a/b/".into()
            }
        );
        assert_eq!(
            Target::parse("s3://b").unwrap(),
            Target::S3 {
                bucket: "b".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            Target::parse("/tmp/x").unwrap(),
            Target::Dir("/tmp/x".into())
        );
        assert!(Target::parse("s3:///x").is_err());
        assert!(Target::parse("gs://b/").is_err());
    }
}
