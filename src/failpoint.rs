//! Crash points for crash tests: `DATACAMP_FAILPOINT=name` (or `name:n`, the n-th time the
//! point is reached, from 1) makes the process kill itself with SIGKILL right there, as if
//! the machine had died. Unset (always, outside crash tests), a point costs one atomic load.
//!
//! Points: `before-first-chunk`, `mid-write` (half of a file written to its temp name),
//! `chunk-stored` (a chunk durable, its checkpoint not yet), `checkpoint-written`,
//! `before-manifest`, `before-marker`; in `prune-backups`: `prune-tombstoned` (a backup's
//! tombstone written, nothing deleted yet), `prune-object-deleted` (after each object).

use std::sync::atomic::{AtomicU64, Ordering};

use once_cell::sync::Lazy;

struct Armed {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

static ARMED: Lazy<Option<Armed>> = Lazy::new(|| {
    let spec = std::env::var("DATACAMP_FAILPOINT").ok()?;
    let (name, nth) = match spec.split_once(':') {
        Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
        None => (spec, 1),
    };
    Some(Armed {
        name,
        nth,
        seen: AtomicU64::new(0),
    })
});

/// Reach crash point `name`: kill the process if this is the armed point's n-th visit.
pub fn hit(name: &str) {
    let Some(armed) = ARMED.as_ref() else { return };
    if armed.name == name && armed.seen.fetch_add(1, Ordering::SeqCst) + 1 == armed.nth {
        eprintln!("datacamp: failpoint {name} reached, killing the process");
        // SAFETY: kill(2) on our own pid with a constant signal has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}
