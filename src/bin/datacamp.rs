//! `datacamp`: the operator CLI — list, verify, inspect, cat and clean up backups from a
//! shell, without a JVM. Its code lives in `src/cli/` (compiled into this binary only, so
//! the JNI library stays as it is); every operation is the library's `ops` code, the same
//! the Clojure API runs.

#[path = "../cli/mod.rs"]
mod cli;

fn main() {
    std::process::exit(cli::run());
}
