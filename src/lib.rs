//! Datacamp's native core: backup and restore of Datahike databases.
//!
//! The JVM walks a database's datoms and pushes them here in columnar batches; the core
//! orders, encodes, compresses, checksums and stores them, and reads them back for restore.
//! The crate is layered; dependencies point down only:
//!
//! ```text
//! jni/        every JNI entry point: marshalling, the panic boundary, session handles
//!   │
//! ops/        the operations: backup, resume, restore, list, verify, cleanup, repair, prune,
//!   │         inspect (typed results; the JNI layer and the `datacamp` CLI render them)
//!   │
//! chain/      backup chains: resolve a chain, plan a point-in-time restore, the
//!   │         :db/noHistory state, the retention policy
//!   │
//! log/        continuous backup: the capture session, the segment writer, the spool, the
//!   │         segments of a log (a link of a chain)
//!   │
//!   ├── pipeline/   datoms ⇄ chunks: feed (decode thread), order + sort (restore order,
//!   │               external merge sort), chunk (cut, gzip, SHA-256, decode)
//!   └── repo/       a backup repository: layout (every key), manifest, checkpoint, lock,
//!         │         meta (size-limited EDN metadata I/O)
//!         │
//! store/      one `Store` trait: dir, memory, s3 (retry; conformance suite)
//!
//! crypto/     envelope encryption: user key → wrapped data key → sealed objects; the
//!             `:encryption` option, the `:format/encryption` record, per-backup sealing
//! codec/      byte formats: fressian, edn, tagged values, wire (JNI columns), record (spills)
//! model, error, options, clock, runtime, failpoint      shared by every layer
//! ```
//!
//! The operator CLI (`src/bin/datacamp.rs`, its code in `src/cli/`) is a binary of this
//! crate built on `ops`; it is not part of the library (nor of the JNI cdylib).
//!
//! The backup layout and formats are those of the original Clojure datacamp
//! ([`repo::layout`]), which can read our backups and whose backups we read.

pub mod chain;
pub mod clock;
pub mod codec;
pub mod crypto;
pub mod error;
pub mod failpoint;
pub mod jni;
pub mod log;
pub mod model;
pub mod ops;
pub mod options;
pub mod pipeline;
pub mod repo;
pub mod runtime;
pub mod store;

pub use error::{Error, ErrorKind, Result};
