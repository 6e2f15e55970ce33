//! Where the S3 backend's credentials and region come from when the target names none: the
//! standard AWS provider chain — environment variables, the shared config/credentials files
//! with `AWS_PROFILE`, web identity (STS `AssumeRoleWithWebIdentity`), ECS container
//! credentials — and explicit keys in the target winning over all of them. Each case is
//! checked on the wire: our proxy records the SigV4 credential scope (access key id and
//! region) and session token of every request that reaches the S3 server (moto).
//!
//! The provider chain reads process-wide environment variables, so every case runs in the
//! one test of this binary, one after another.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use datacamp::codec::edn;
use datacamp::ops::backup::BackupSession;
use datacamp::store::s3::S3Store;
use datacamp::store::Store;
use datacamp::ErrorKind;
use support::fixtures::{fixture, options, source_datoms};
use support::proxy::{FaultProxy, Faults, Signer};

/// Every variable of the provider chain this test sets; cleared before each case.
const CHAIN_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Start a case: no chain variables but `vars`; the shared files point into `dir` (missing
/// files unless the case writes them, so the machine's `~/.aws` never leaks in) and the
/// instance metadata service is off (it would only be probed, and time out, here).
fn environment(dir: &Path, vars: &[(&str, &str)]) {
    for v in CHAIN_VARS {
        std::env::remove_var(v);
    }
    std::env::set_var("AWS_CONFIG_FILE", dir.join("config"));
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"));
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

/// A target on `endpoint` for bucket `creds` with only `extra` (no region, no keys).
fn open(endpoint: &str, extra: &str) -> datacamp::Result<S3Store> {
    let target = edn::parse(&format!(
        "{{:bucket \"creds\" :endpoint \"{endpoint}\" {extra}}}"
    ))
    .unwrap();
    S3Store::open_target(&target)
}

/// Write and read back one object through `store`.
fn round_trip(store: &S3Store) {
    store.put("db/b1/probe", b"probe").unwrap();
    assert_eq!(store.get("db/b1/probe").unwrap(), b"probe");
}

/// The access key id and region of a signer's scope (`KEY/DATE/REGION/s3/aws4_request`).
fn key_and_region(s: &Signer) -> (String, String) {
    let parts: Vec<&str> = s.scope.split('/').collect();
    assert_eq!(parts.len(), 5, "a SigV4 scope, got {:?}", s.scope);
    assert_eq!(&parts[3..], ["s3", "aws4_request"], "{:?}", s.scope);
    (parts[0].to_owned(), parts[2].to_owned())
}

/// Assert every request the proxy saw was signed with `key` for `region`, with `token`.
fn all_signed_by(proxy: &FaultProxy, key: &str, region: &str, token: Option<&str>) {
    let signers = proxy.signers();
    assert!(signers.len() >= 2, "{signers:?}");
    for s in &signers {
        assert_eq!(
            key_and_region(s),
            (key.to_owned(), region.to_owned()),
            "{s:?}"
        );
        assert_eq!(s.token.as_deref(), token, "{s:?}");
    }
}

/// A one-purpose ECS credentials endpoint: answers every GET with `body` and records the
/// `Authorization` header of each request.
fn ecs_endpoint(body: String) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v2/credentials/datacamp",
        listener.local_addr().unwrap()
    );
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(&conn);
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_owned();
                }
            }
            log.lock().unwrap().push(auth);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = (&conn).write_all(answer.as_bytes());
        }
    });
    (url, seen)
}

#[test]
fn credentials_and_region_come_from_the_standard_provider_chain() {
    let s = support::moto();
    support::bucket(&s, "creds", "");
    let dir = tempfile::tempdir().unwrap();

    // 1. A named profile of the shared files (AWS_PROFILE): its keys and its region, not
    //    the default profile's.
    std::fs::write(
        dir.path().join("credentials"),
        "[default]\naws_access_key_id = AKIADEFAULTPROFILE\naws_secret_access_key = default-secret\n\n\
         [backup-team]\naws_access_key_id = AKIAPROFILETEST\n\
         aws_secret_access_key = profile-secret-not-real\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config"),
        "[default]\nregion = ap-south-1\n\n[profile backup-team]\nregion = eu-west-3\n",
    )
    .unwrap();
    environment(dir.path(), &[("AWS_PROFILE", "backup-team")]);
    let proxy = FaultProxy::start(s.addr, Faults::default(), 1);
    let store = open(&proxy.endpoint(), "").unwrap();
    round_trip(&store);
    all_signed_by(&proxy, "AKIAPROFILETEST", "eu-west-3", None);

    // A whole backup with those credentials: no secret, no key id, in any object it wrote
    // nor in the store's debug form.
    let store: Arc<dyn Store> = Arc::new(store);
    let fx = fixture("kitchen-sink");
    let mut session =
        BackupSession::open(store.clone(), options(&fx, "fx", 4096, dir.path())).unwrap();
    for d in source_datoms(&fx) {
        session.push(d).unwrap();
    }
    let result = session.finish().unwrap();
    let objects = store
        .list(&format!("fx/{}/", result.manifest.backup_id))
        .unwrap();
    assert!(objects.len() > 3, "{objects:?}");
    for o in &objects {
        let bytes = store.get(&o.key).unwrap();
        for secret in ["profile-secret-not-real", "AKIAPROFILETEST"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds {secret}",
                o.key
            );
        }
    }
    all_signed_by(&proxy, "AKIAPROFILETEST", "eu-west-3", None);

    // 2. Environment variables come before the profile files.
    environment(
        dir.path(),
        &[
            ("AWS_PROFILE", "backup-team"),
            ("AWS_ACCESS_KEY_ID", "AKIAENVTEST"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret-not-real"),
            ("AWS_SESSION_TOKEN", "env-session-token"),
            ("AWS_REGION", "us-west-2"),
        ],
    );
    let proxy = FaultProxy::start(s.addr, Faults::default(), 2);
    round_trip(&open(&proxy.endpoint(), "").unwrap());
    all_signed_by(
        &proxy,
        "AKIAENVTEST",
        "us-west-2",
        Some("env-session-token"),
    );

    // 3. Explicit keys and region in the target win over the environment.
    let proxy = FaultProxy::start(s.addr, Faults::default(), 3);
    round_trip(
        &open(
            &proxy.endpoint(),
            ":region \"ca-central-1\" :access-key-id \"AKIATARGETTEST\" \
             :secret-access-key \"target-secret-not-real\"",
        )
        .unwrap(),
    );
    all_signed_by(&proxy, "AKIATARGETTEST", "ca-central-1", None);

    // 4. Web identity: a token file and a role; the SDK exchanges them at STS (moto, reached
    //    through the same proxy) for temporary credentials that sign the S3 requests.
    //    (The shared files go: a profile with keys comes before web identity in the chain.)
    std::fs::remove_file(dir.path().join("credentials")).unwrap();
    std::fs::remove_file(dir.path().join("config")).unwrap();
    let token_file = dir.path().join("web-identity-token");
    std::fs::write(&token_file, "eyJ.web-identity.token").unwrap();
    let proxy = FaultProxy::start(s.addr, Faults::default(), 4);
    let endpoint = proxy.endpoint();
    environment(
        dir.path(),
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/datacamp-backup",
            ),
            ("AWS_ROLE_SESSION_NAME", "datacamp-test"),
            ("AWS_ENDPOINT_URL_STS", &endpoint),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    round_trip(&open(&endpoint, "").unwrap());
    let lines = proxy.request_lines();
    let signers = proxy.signers();
    assert!(
        lines[0].starts_with("POST / "),
        "the STS call first: {lines:?} {signers:?}"
    );
    assert_eq!(
        signers[0].scope, "",
        "AssumeRoleWithWebIdentity is unsigned"
    );
    let (key, region) = key_and_region(&signers[1]);
    assert!(
        key.starts_with("ASIA"),
        "temporary credentials from STS: {key}"
    );
    assert_eq!(region, "us-east-1");
    assert!(signers[1].token.as_deref().is_some_and(|t| !t.is_empty()));
    assert!(signers[1..].iter().all(|x| x == &signers[1]), "{signers:?}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("POST / ")).count(), 1);

    // 5. ECS container credentials (the task role's endpoint and authorization token).
    let (url, seen) = ecs_endpoint(
        r#"{"AccessKeyId":"AKIAECSTEST","SecretAccessKey":"ecs-secret-not-real","Token":"ecs-session-token","Expiration":"2099-01-01T00:00:00Z"}"#
            .to_owned(),
    );
    environment(
        dir.path(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token"),
            ("AWS_REGION", "eu-central-1"),
        ],
    );
    let proxy = FaultProxy::start(s.addr, Faults::default(), 5);
    round_trip(&open(&proxy.endpoint(), "").unwrap());
    all_signed_by(
        &proxy,
        "AKIAECSTEST",
        "eu-central-1",
        Some("ecs-session-token"),
    );
    assert_eq!(
        seen.lock().unwrap().first().map(String::as_str),
        Some("ecs-auth-token")
    );

    // 6. No region anywhere (a profile without one, no AWS_REGION): a clear refusal before
    //    any request.
    std::fs::write(dir.path().join("config"), "[default]\noutput = json\n").unwrap();
    environment(
        dir.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENVTEST"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret-not-real"),
        ],
    );
    let proxy = FaultProxy::start(s.addr, Faults::default(), 6);
    let err = open(&proxy.endpoint(), "").expect_err("no region, no store");
    assert_eq!(err.kind, ErrorKind::InvalidArgument, "{err}");
    assert!(err.message.contains("no region"), "{err}");
    assert!(err.hint.as_deref().unwrap().contains(":region"), "{err}");
    assert!(!format!("{err:?}").contains("env-secret-not-real"));
    assert_eq!(proxy.stats().requests, 0);
}
