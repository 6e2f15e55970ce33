//! The one tokio runtime of the crate, for the backends that wrap async clients (S3).
//!
//! The [`crate::store::Store`] trait is synchronous and is called from the backup's worker
//! threads (and from JNI threads); async backends run their futures here with [`block_on`].
//! The runtime is created on first use, has [`WORKER_THREADS`] workers, and lives for the
//! rest of the process (a `cdylib` loaded by the JVM is never unloaded).

use std::future::Future;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Worker threads of the runtime: I/O-bound work (HTTP requests, signing) needs few.
pub const WORKER_THREADS: usize = 2;

static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// Return the shared runtime, creating it on first use; fails with `Internal` if the
/// operating system refuses the threads (the failure is remembered).
pub fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .thread_name("datacamp-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::internal("start the I/O runtime", e.clone()))
}

/// Run `fut` to completion on the shared runtime, blocking the calling thread.
///
/// May be called from any number of threads at once. Must not be called from inside the
/// runtime itself (from a future running on it): that fails with `Internal` instead of
/// deadlocking or panicking.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::internal(
            "run I/O",
            "block_on was called from inside an async runtime",
        ));
    }
    Ok(runtime()?.block_on(fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_runs_futures_from_many_threads_at_once() {
        let handles: Vec<_> = (0..8u64)
            .map(|i| {
                std::thread::spawn(move || {
                    block_on(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        i * 2
                    })
                    .unwrap()
                })
            })
            .collect();
        let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 56);
    }

    #[test]
    fn block_on_inside_the_runtime_is_an_error_not_a_panic() {
        let nested = block_on(async { block_on(async { 1 }) }).unwrap();
        assert_eq!(nested.unwrap_err().kind, crate::error::ErrorKind::Internal);
    }
}
