//! The fault proxy of the Rust tests (`tests/support/proxy.rs`) as a program, for the
//! Clojure tests that need S3 faults on the JVM path (`datacamp.s3-server/start-fault-proxy!`).
//!
//! ```text
//! fault_proxy HOST:PORT [--lose METHOD PATTERN NTH]... [--latency-ms MS]
//! ```
//! Forwards to the S3 server at HOST:PORT; each `--lose` rule withholds the reply of the
//! NTH request with METHOD whose request line contains PATTERN, after the server executed
//! it. Prints `endpoint http://127.0.0.1:PORT`, runs until its standard input closes, then
//! prints `lost N` (replies withheld) and exits. Meanwhile it obeys commands on its standard
//! input, one per line, each answered by one line: `refuse` (close the port: connections are
//! refused, as when the server is down; answers `ok`), `accept` (listen on the same port
//! again; `ok`).

#[path = "../tests/support/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use std::io::{BufRead, Write};
use std::time::Duration;

use proxy::{FaultProxy, Faults, LostReply};

fn main() {
    let mut args = std::env::args().skip(1);
    let upstream = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: fault_proxy HOST:PORT [--lose METHOD PATTERN NTH]... [--latency-ms MS]");
    let mut faults = Faults::default();
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs values"));
        match arg.as_str() {
            "--lose" => {
                let method: &'static str = match value().as_str() {
                    "GET" => "GET",
                    "PUT" => "PUT",
                    "POST" => "POST",
                    "DELETE" => "DELETE",
                    "HEAD" => "HEAD",
                    other => panic!("unknown method {other}"),
                };
                let pattern = value();
                let nth = value().parse().expect("NTH is a number");
                faults
                    .lost_replies
                    .push(LostReply::nth(method, pattern, nth));
            }
            "--latency-ms" => {
                faults.latency = Duration::from_millis(value().parse().expect("--latency-ms MS"))
            }
            other => panic!("unknown option {other}"),
        }
    }
    let proxy = FaultProxy::start(upstream, faults, 1);
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    say(format!("endpoint {}", proxy.endpoint()));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "refuse" => {
                proxy.set_refusing(true);
                say("ok".into());
            }
            "accept" => {
                proxy.set_refusing(false);
                say("ok".into());
            }
            "" => {}
            other => say(format!("unknown command {other:?}")),
        }
    }
    say(format!("lost {}", proxy.stats().lost_replies));
}
