//! The S3 fault proxy of the Rust tests (`tests/support/proxy.rs`) as a process, for the
//! JVM tests (`clj/test-support/datacamp/fault_proxy.clj`).
//!
//! `fault_proxy UPSTREAM_HOST:PORT` prints `endpoint http://127.0.0.1:PORT`, then reads
//! commands from its standard input, one per line, answering each with one line:
//! `refuse` (close the port: connections are refused, as when the server is down),
//! `accept` (listen on the same port again), `stats` (`requests N forwarded N`).
//! It exits at end of input (so it dies with the process that started it).

#[path = "../tests/support/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use std::io::{BufRead, Write};

fn main() {
    let upstream = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: fault_proxy UPSTREAM_HOST:PORT");
    let p = proxy::FaultProxy::start(upstream, proxy::Faults::default(), 1);
    let out = std::io::stdout();
    let say = |line: String| {
        let mut o = out.lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    say(format!("endpoint {}", p.endpoint()));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "refuse" => {
                p.set_refusing(true);
                say("ok".into());
            }
            "accept" => {
                p.set_refusing(false);
                say("ok".into());
            }
            "stats" => {
                let s = p.stats();
                say(format!("requests {} forwarded {}", s.requests, s.forwarded));
            }
            "" => {}
            other => say(format!("unknown command {other:?}")),
        }
    }
}
