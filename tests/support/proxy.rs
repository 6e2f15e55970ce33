//! A fault-injecting HTTP proxy between the S3 client and the server, on loopback.
//!
//! Per request it draws (from a seeded generator) one of: forward it, answer
//! `503 SlowDown` or `500 InternalError` (S3 XML error bodies), close the connection before
//! answering, forward it and close the connection halfway through the answer, stall (hold
//! the request, then forward it), or hang (hold it past the client's timeout, then close
//! without forwarding). Requests whose request line contains `deny_matching` get
//! `403 AccessDenied`. Each connection carries one request (answers say `Connection: close`).
//!
//! Deterministic faults come first: a [`LostReply`] rule matches requests by method and a
//! pattern in the request line (the key, `?uploads`, `partNumber=2&`, …) and, for the n-th
//! matches it names, forwards the request, lets the server execute it and read its whole
//! answer, then closes the connection without sending a byte of it: "executed, reply lost".
//! An [`Answer`] rule answers the n-th matching request with an S3 error instead (how other
//! S3-compatible stores answer some retries). `latency` delays every request before it is
//! forwarded (a distant server).
//!
//! Bounded: the proxy stops accepting after [`MAX_LIFE`] or when dropped or
//! [`FaultProxy::vanish`]ed (then its port refuses connections); every socket has timeouts.
//! [`FaultProxy::set_refusing`] closes its port for a while (connections are refused, as
//! when the server is down) and opens the same port again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a proxy runs.
pub const MAX_LIFE: Duration = Duration::from_secs(600);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Shares (0.0–1.0) of requests that get each fault; the rest are forwarded.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// `503 SlowDown`.
    pub slowdown: f64,
    /// `500 InternalError`.
    pub internal_error: f64,
    /// Connection closed after the request was read, before any answer.
    pub drop_before: f64,
    /// Forwarded, then the connection closed halfway through the answer.
    pub drop_mid: f64,
    /// Held for `stall_for`, then forwarded.
    pub stall: f64,
    /// How long a stall lasts.
    pub stall_for: Duration,
    /// Held for `hang_for`, then the connection closed without forwarding.
    pub hang: f64,
    /// How long a hang lasts (make it longer than the client's attempt timeout).
    pub hang_for: Duration,
    /// Requests whose request line contains this get `403 AccessDenied`.
    pub deny_matching: Option<String>,
    /// Requests executed by the server whose answer is then withheld (checked in order;
    /// the first rule whose match count is listed applies).
    pub lost_replies: Vec<LostReply>,
    /// Requests answered with an S3 error instead of being forwarded (checked before the
    /// lost-reply rules): how other S3-compatible stores answer some retries.
    pub answers: Vec<Answer>,
    /// Added to every request before it is forwarded (0: none).
    pub latency: Duration,
}

/// Answer matching requests with an S3 error, without forwarding them.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Which requests, as for [`LostReply`].
    pub rule: LostReply,
    /// The status line's status, e.g. `"404 Not Found"`.
    pub status: &'static str,
    /// The S3 error code, e.g. `"NoSuchUpload"`.
    pub code: &'static str,
}

/// "Forward, let the server execute, then cut the reply" for matching requests.
#[derive(Clone, Debug)]
pub struct LostReply {
    /// The HTTP method (`PUT`, `GET`, `POST`, `DELETE`, `HEAD`).
    pub method: &'static str,
    /// A substring of the request line, e.g. `"/lock-0.edn "` or `"?uploads"`.
    pub pattern: String,
    /// Which matches (1 = the first) lose their reply; empty: every match.
    pub nth: Vec<u64>,
}

impl LostReply {
    /// The reply of the `nth` request with `method` whose request line contains `pattern`.
    pub fn nth(method: &'static str, pattern: impl Into<String>, nth: u64) -> Self {
        LostReply {
            method,
            pattern: pattern.into(),
            nth: vec![nth],
        }
    }

    /// The replies of every request with `method` whose line contains `pattern`.
    pub fn every(method: &'static str, pattern: impl Into<String>) -> Self {
        LostReply {
            method,
            pattern: pattern.into(),
            nth: Vec::new(),
        }
    }
}

/// Counters of what the proxy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests read from clients.
    pub requests: u64,
    /// Requests forwarded to the server (stalled and drop-mid ones included).
    pub forwarded: u64,
    /// `503 SlowDown` answers.
    pub slowdowns: u64,
    /// `500 InternalError` answers.
    pub internal_errors: u64,
    /// Connections closed before answering.
    pub drops_before: u64,
    /// Answers cut off halfway.
    pub drops_mid: u64,
    /// Stalled requests.
    pub stalls: u64,
    /// Hung requests.
    pub hangs: u64,
    /// `403 AccessDenied` answers.
    pub denied: u64,
    /// `UploadPart` requests (forwarded or not).
    pub upload_parts: u64,
    /// `ListObjectsV2` requests (one per page).
    pub list_pages: u64,
    /// Requests executed whose reply was withheld ([`LostReply`]).
    pub lost_replies: u64,
}

impl Stats {
    /// Requests that got a fault of any kind.
    pub fn faults(&self) -> u64 {
        self.slowdowns
            + self.internal_errors
            + self.drops_before
            + self.drops_mid
            + self.stalls
            + self.hangs
            + self.lost_replies
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    forwarded: AtomicU64,
    slowdowns: AtomicU64,
    internal_errors: AtomicU64,
    drops_before: AtomicU64,
    drops_mid: AtomicU64,
    stalls: AtomicU64,
    hangs: AtomicU64,
    denied: AtomicU64,
    upload_parts: AtomicU64,
    list_pages: AtomicU64,
    lost_replies: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    /// Per lost-reply rule: requests it matched so far.
    matched: Mutex<Vec<u64>>,
    /// Per lost-reply rule: replies it withheld so far.
    cut: Mutex<Vec<u64>>,
    /// Per answer rule: requests it matched so far, and answered.
    answer_matched: Mutex<Vec<u64>>,
    answered: Mutex<Vec<u64>>,
    rng: Mutex<u64>,
    counters: Counters,
    lines: Mutex<Vec<String>>,
    signers: Mutex<Vec<Signer>>,
    stop: AtomicBool,
    refusing: AtomicBool,
    listening: AtomicBool,
}

/// Who signed a request: the `Credential=` scope of its SigV4 `Authorization` header
/// (`ACCESS-KEY-ID/DATE/REGION/s3/aws4_request`) and its `x-amz-security-token`, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The credential scope, or `""` for an unsigned request.
    pub scope: String,
    /// The session token sent with the request.
    pub token: Option<String>,
}

/// A running proxy; stops on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

enum Fault {
    None,
    SlowDown,
    InternalError,
    DropBefore,
    DropMid,
    Stall(Duration),
    Hang(Duration),
}

impl FaultProxy {
    /// Start a proxy on a free loopback port that forwards to `upstream` with `faults`,
    /// drawing faults from a generator seeded with `seed`.
    pub fn start(upstream: SocketAddr, faults: Faults, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let rules = faults.lost_replies.len();
        let answers = faults.answers.len();
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(faults),
            matched: Mutex::new(vec![0; rules]),
            cut: Mutex::new(vec![0; rules]),
            answer_matched: Mutex::new(vec![0; answers]),
            answered: Mutex::new(vec![0; answers]),
            rng: Mutex::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            counters: Counters::default(),
            lines: Mutex::new(Vec::new()),
            signers: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            listening: AtomicBool::new(true),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            let deadline = Instant::now() + MAX_LIFE;
            let mut listener = Some(listener);
            while !s.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                // Refusing: the port is closed; afterwards the same port is bound again.
                if s.refusing.load(Ordering::SeqCst) {
                    listener = None;
                    s.listening.store(false, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                let Some(l) = listener.as_ref() else {
                    match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                        Ok(l) => {
                            listener = Some(l);
                            s.listening.store(true, Ordering::SeqCst);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                    continue;
                };
                match l.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            let _ = handle(conn, &s);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            // The listener drops here: the port refuses connections from now on.
        });
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The proxy's endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replace the faults (for requests read from now on); the lost-reply rules' match
    /// counts start again from 0.
    pub fn set_faults(&self, faults: Faults) {
        let (rules, answers) = (faults.lost_replies.len(), faults.answers.len());
        let mut f = self.shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        let reset =
            |m: &Mutex<Vec<u64>>, n| *m.lock().unwrap_or_else(|p| p.into_inner()) = vec![0; n];
        reset(&self.shared.matched, rules);
        reset(&self.shared.cut, rules);
        reset(&self.shared.answer_matched, answers);
        reset(&self.shared.answered, answers);
        *f = faults;
    }

    /// Per answer rule (in order), how many requests it answered so far.
    pub fn answered_by_rule(&self) -> Vec<u64> {
        self.shared
            .answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Per lost-reply rule (in order), how many replies it withheld so far.
    pub fn lost_by_rule(&self) -> Vec<u64> {
        self.shared
            .cut
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            requests: g(&c.requests),
            forwarded: g(&c.forwarded),
            slowdowns: g(&c.slowdowns),
            internal_errors: g(&c.internal_errors),
            drops_before: g(&c.drops_before),
            drops_mid: g(&c.drops_mid),
            stalls: g(&c.stalls),
            hangs: g(&c.hangs),
            denied: g(&c.denied),
            upload_parts: g(&c.upload_parts),
            list_pages: g(&c.list_pages),
            lost_replies: g(&c.lost_replies),
        }
    }

    /// The request lines read so far (`PUT /bucket/key?partNumber=1&uploadId=… HTTP/1.1`).
    pub fn request_lines(&self) -> Vec<String> {
        self.shared
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Who signed each request read so far, in order.
    pub fn signers(&self) -> Vec<Signer> {
        self.shared
            .signers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// While `refusing`, the proxy's port is closed: connections are refused, as if the
    /// server were down; afterwards it listens on the same port again. Returns once the
    /// port is closed (or listening again).
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.shared.listening.load(Ordering::SeqCst) == refusing && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stop listening: from when this returns, connecting to the proxy is refused, as if the
    /// server were gone. (Requests already read are still answered.)
    pub fn vanish(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.vanish();
    }
}

fn next_f64(shared: &Shared) -> f64 {
    let mut x = shared.rng.lock().unwrap_or_else(|p| p.into_inner());
    // SplitMix64.
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn choose(shared: &Shared) -> Fault {
    let f = shared
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let r = next_f64(shared);
    let c = &shared.counters;
    let mut edge = 0.0;
    let mut hit = |share: f64| {
        edge += share;
        r < edge
    };
    if hit(f.slowdown) {
        c.slowdowns.fetch_add(1, Ordering::SeqCst);
        Fault::SlowDown
    } else if hit(f.internal_error) {
        c.internal_errors.fetch_add(1, Ordering::SeqCst);
        Fault::InternalError
    } else if hit(f.drop_before) {
        c.drops_before.fetch_add(1, Ordering::SeqCst);
        Fault::DropBefore
    } else if hit(f.drop_mid) {
        c.drops_mid.fetch_add(1, Ordering::SeqCst);
        Fault::DropMid
    } else if hit(f.stall) {
        c.stalls.fetch_add(1, Ordering::SeqCst);
        Fault::Stall(f.stall_for)
    } else if hit(f.hang) {
        c.hangs.fetch_add(1, Ordering::SeqCst);
        Fault::Hang(f.hang_for)
    } else {
        Fault::None
    }
}

/// Which of `rules` takes `req`: counts the match for every rule that matches and returns
/// the first one that lists that match number (counting it in `taken`).
fn take_rule<'a>(
    req: &Request,
    rules: impl Iterator<Item = &'a LostReply>,
    matched: &Mutex<Vec<u64>>,
    taken: &Mutex<Vec<u64>>,
) -> Option<usize> {
    let mut matched = matched.lock().unwrap_or_else(|p| p.into_inner());
    let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
    let mut hit = None;
    for (i, rule) in rules.enumerate() {
        if req.method != rule.method || !req.line.contains(&rule.pattern) {
            continue;
        }
        matched[i] += 1;
        if hit.is_none() && (rule.nth.is_empty() || rule.nth.contains(&matched[i])) {
            taken[i] += 1;
            hit = Some(i);
        }
    }
    hit
}

/// Whether a lost-reply rule takes `req`.
fn loses_reply(req: &Request, shared: &Shared) -> bool {
    let f = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
    take_rule(req, f.lost_replies.iter(), &shared.matched, &shared.cut).is_some()
}

/// The S3 error an answer rule gives `req` instead of forwarding it, if one takes it.
fn answer_for(req: &Request, shared: &Shared) -> Option<(&'static str, &'static str)> {
    let f = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
    let i = take_rule(
        req,
        f.answers.iter().map(|a| &a.rule),
        &shared.answer_matched,
        &shared.answered,
    )?;
    Some((f.answers[i].status, f.answers[i].code))
}

struct Request {
    line: String,
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(conn: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let line = line.trim_end().to_owned();
    let method = line.split(' ').next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if header("transfer-encoding").is_some() {
        return Err(std::io::Error::other(
            "chunked request bodies are not supported",
        ));
    }
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        let mut w = conn;
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Some(Request {
        line,
        method,
        headers,
        body,
    }))
}

fn error_answer(req: &Request, status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
    );
    let head_only = req.method == "HEAD";
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        if head_only { 0 } else { body.len() }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn signer(req: &Request) -> Signer {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let scope = header("authorization")
        .and_then(|a| {
            let start = a.find("Credential=")? + "Credential=".len();
            let rest = &a[start..];
            Some(rest[..rest.find(',').unwrap_or(rest.len())].to_owned())
        })
        .unwrap_or_default();
    Signer {
        scope,
        token: header("x-amz-security-token"),
    }
}

fn forward(req: &Request, shared: &Shared) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))?;
    // Head and body go out in two writes: without this, Nagle's algorithm holds the body
    // until the server's delayed ACK of the head (tens of ms per request).
    up.set_nodelay(true)?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("{}\r\n", req.line);
    for (k, v) in &req.headers {
        let k_lower = k.to_ascii_lowercase();
        if !matches!(k_lower.as_str(), "connection" | "keep-alive" | "expect") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    shared.counters.forwarded.fetch_add(1, Ordering::SeqCst);
    Ok(answer)
}

fn handle(mut conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(req) = read_request(&conn)? else {
        return Ok(());
    };
    let c = &shared.counters;
    c.requests.fetch_add(1, Ordering::SeqCst);
    shared
        .lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(req.line.clone());
    shared
        .signers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(signer(&req));
    if req.line.contains("partNumber=") && req.line.contains("uploadId=") {
        c.upload_parts.fetch_add(1, Ordering::SeqCst);
    }
    if req.method == "GET" && req.line.contains("list-type=2") {
        c.list_pages.fetch_add(1, Ordering::SeqCst);
    }
    let denied = {
        let f = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        f.deny_matching
            .as_deref()
            .is_some_and(|m| req.line.contains(m))
    };
    if denied {
        c.denied.fetch_add(1, Ordering::SeqCst);
        conn.write_all(&error_answer(
            &req,
            "403 Forbidden",
            "AccessDenied",
            "Access Denied",
        ))?;
        return conn.shutdown(Shutdown::Both);
    }
    let latency = shared
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .latency;
    if !latency.is_zero() {
        std::thread::sleep(latency.min(IO_TIMEOUT));
    }
    if let Some((status, code)) = answer_for(&req, shared) {
        conn.write_all(&error_answer(
            &req,
            status,
            code,
            "answered by the fault proxy",
        ))?;
        return conn.shutdown(Shutdown::Both);
    }
    if loses_reply(&req, shared) {
        // Executed by the server, its whole answer read, then nothing of it sent.
        forward(&req, shared)?;
        c.lost_replies.fetch_add(1, Ordering::SeqCst);
        return conn.shutdown(Shutdown::Both);
    }
    match choose(shared) {
        Fault::SlowDown => conn.write_all(&error_answer(
            &req,
            "503 Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
        ))?,
        Fault::InternalError => conn.write_all(&error_answer(
            &req,
            "500 Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ))?,
        Fault::DropBefore => {}
        Fault::Hang(d) => std::thread::sleep(d.min(IO_TIMEOUT)),
        Fault::DropMid => {
            let answer = forward(&req, shared)?;
            let half = (answer.len() / 2)
                .max(1)
                .min(answer.len().saturating_sub(1));
            conn.write_all(&answer[..half])?;
        }
        Fault::Stall(d) => {
            std::thread::sleep(d.min(IO_TIMEOUT));
            conn.write_all(&forward(&req, shared)?)?;
        }
        Fault::None => conn.write_all(&forward(&req, shared)?)?,
    }
    conn.shutdown(Shutdown::Both)
}
