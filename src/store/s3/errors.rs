//! S3 failures as the crate's errors: the one place where they become error kinds
//! ([`map_sdk_error`], [`classify`]), and the time limit of one attempt ([`attempt`]).

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::{Error, ErrorKind, ServiceReply};

/// Run one attempt of a request with a time limit; map its error ([`map_sdk_error`]).
pub(super) async fn attempt<T, E>(
    op: &str,
    loc: &str,
    limit: Duration,
    send: impl Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
) -> crate::error::Result<T>
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
    let mut service = None;
    let (kind, hint, message) = match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = err.code().map(String::from);
            let (kind, hint) = classify(Some(status), code.as_deref());
            let message = match (&code, err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                (None, _) => format!("HTTP {status}"),
            };
            service = Some((status, code));
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
    e.source = Some(match service {
        Some((status, code)) => Box::new(ServiceReply {
            status: Some(status),
            code,
            cause: Some(Box::new(err)),
        }),
        None => Box::new(err),
    });
    e
}

/// Whether `e` is S3's answer that a conditional write's precondition failed: HTTP 412
/// (`PreconditionFailed`, for `If-None-Match: *` the object exists).
pub(super) fn is_precondition_failed(e: &Error) -> bool {
    e.status() == Some(412) || e.code() == Some("PreconditionFailed")
}

/// Whether `e` is S3's answer that a concurrent conditional write to the same key was in
/// progress: HTTP 409 `ConditionalRequestConflict` (AWS: retry the request).
pub(super) fn is_conditional_conflict(e: &Error) -> bool {
    e.code() == Some("ConditionalRequestConflict")
        || (e.status() == Some(409) && e.code().is_none())
}

/// Whether `e` says that the object or upload a request named does not exist (any more):
/// `NoSuchKey`, `NoSuchUpload`, `NotFound`, or a bare HTTP 404 — but not `NoSuchBucket`.
pub(super) fn is_gone(e: &Error) -> bool {
    match e.code() {
        Some("NoSuchKey" | "NoSuchUpload" | "NotFound") => true,
        Some(_) => false,
        None => e.status() == Some(404),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn answers_are_told_apart_by_status_and_code_never_by_text() {
        let answer = |status, code: Option<&str>| {
            let mut e = Error::new(ErrorKind::Io, "op", "whatever the message says");
            e.source = Some(Box::new(ServiceReply {
                status,
                code: code.map(String::from),
                cause: None,
            }));
            e
        };
        let text_only = |t: &str| Error::new(ErrorKind::NotFound, "op", t);
        assert!(is_precondition_failed(&answer(
            Some(412),
            Some("PreconditionFailed")
        )));
        assert!(is_precondition_failed(&answer(Some(412), None)));
        assert!(!is_precondition_failed(&text_only(
            "PreconditionFailed (HTTP 412)"
        )));
        assert!(is_conditional_conflict(&answer(
            Some(409),
            Some("ConditionalRequestConflict")
        )));
        assert!(!is_conditional_conflict(&answer(
            Some(409),
            Some("BucketAlreadyOwnedByYou")
        )));
        assert!(is_gone(&answer(Some(404), Some("NoSuchUpload"))));
        assert!(is_gone(&answer(Some(404), None)));
        assert!(!is_gone(&answer(Some(404), Some("NoSuchBucket"))));
        assert!(!is_gone(&text_only("NoSuchUpload (HTTP 404)")));
        assert_eq!(
            answer(Some(404), Some("NoSuchKey")).code(),
            Some("NoSuchKey")
        );
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
