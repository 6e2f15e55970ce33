//! Test support for the S3 tests: a real S3 server (moto, started by
//! `scripts/s3-test-server`), buckets and targets on it, a fault-injecting proxy
//! ([`proxy`]) and the Datahike fixtures ([`fixtures`]).
//!
//! The server is shared by the tests of one binary while any of them holds it, and stopped
//! when the last one lets go (and, through its standard input, when the test process dies).
//! A missing venv fails the test with instructions; nothing is skipped silently.

#![allow(dead_code)]

pub mod fixtures;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use datacamp::model::Value;
use datacamp::runtime::block_on;
use datacamp::store::s3::S3Store;

/// A running moto server on loopback; stopped on drop.
pub struct MotoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The server's address.
    pub addr: SocketAddr,
}

static SERVER: Mutex<Weak<MotoServer>> = Mutex::new(Weak::new());

/// Return the shared moto server, starting it if no test holds one. Panics (a test failure)
/// with instructions when the venv is missing or the server does not come up in time.
pub fn moto() -> Arc<MotoServer> {
    let mut slot = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = slot.upgrade() {
        return s;
    }
    let s = Arc::new(MotoServer::start());
    *slot = Arc::downgrade(&s);
    s
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl MotoServer {
    fn start() -> MotoServer {
        let venv = std::env::var_os("DATACAMP_MOTO_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join(".venv-moto"));
        assert!(
            venv.join("bin/python").exists(),
            "the S3 tests need moto's server in {}: run bin/setup (or scripts/s3-test-server --install)",
            venv.display()
        );
        let mut child = Command::new(repo().join("scripts/s3-test-server"))
            .arg("--until-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/s3-test-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("scripts/s3-test-server printed no endpoint within 90 s");
            }
        };
        let Some(endpoint) = line.trim().strip_prefix("endpoint ").map(String::from) else {
            let status = child.wait().ok();
            panic!("scripts/s3-test-server failed (exit {status:?}), printed {line:?}");
        };
        let addr: SocketAddr = endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("endpoint host:port");
        let server = MotoServer {
            stdin: child.stdin.take(),
            child,
            endpoint,
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&server.addr, Duration::from_millis(500)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto does not accept connections on {}",
                server.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the server stops by itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The EDN target map for `bucket` on `endpoint` (`http://host:port`), region us-east-1,
/// with `extra` options spliced in (`":prefix \"p/\" …"`), and test credentials unless
/// `extra` names its own.
pub fn target(endpoint: &str, bucket: &str, extra: &str) -> Value {
    let credentials = if extra.contains(":access-key-id") {
        ""
    } else {
        ":access-key-id \"testing\" :secret-access-key \"testing\""
    };
    datacamp::codec::edn::parse(&format!(
        "{{:bucket \"{bucket}\" :region \"us-east-1\" :endpoint \"{endpoint}\" {credentials} {extra}}}"
    ))
    .expect("target map")
}

/// Open an S3 store for `bucket` on `endpoint` with `extra` options.
pub fn store(endpoint: &str, bucket: &str, extra: &str) -> S3Store {
    S3Store::open_target(&target(endpoint, bucket, extra)).expect("open S3 store")
}

/// Create `bucket` on the server and return a store on it (prefix `extra` may set).
pub fn bucket(server: &MotoServer, bucket: &str, extra: &str) -> S3Store {
    let s = store(&server.endpoint, bucket, extra);
    block_on(s.client().create_bucket().bucket(bucket).send())
        .expect("runtime")
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
    s
}

/// The multipart uploads in progress in the store's bucket, as `(key, upload id)`.
pub fn uploads(store: &S3Store) -> Vec<(String, String)> {
    let out = block_on(
        store
            .client()
            .list_multipart_uploads()
            .bucket(&store.config().bucket)
            .send(),
    )
    .expect("runtime")
    .expect("list multipart uploads");
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or_default().to_owned(),
                u.upload_id().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `n` pseudo-random bytes (seeded, so a failure reproduces).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}
