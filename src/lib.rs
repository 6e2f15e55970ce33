//! Datacamp's native core: backup (and soon restore) of Datahike databases.
//!
//! The JVM side walks a database's datoms and pushes them here in columnar batches
//! ([`wire`]); a [`backup::BackupSession`] re-orders them into restore order ([`order`],
//! an external sort), cuts Fressian chunks ([`format::chunk`]), compresses, checksums and
//! stores them through a [`store::Store`], and commits a [`manifest`]. [`catalog`] lists,
//! verifies and cleans up stored backups. All JNI code lives in [`jni`].
//!
//! The backup layout and formats are those of the original Clojure datacamp ([`layout`]).

pub mod backup;
pub mod catalog;
pub mod checkpoint;
pub mod error;
pub mod failpoint;
pub mod feed;
pub mod format;
pub mod jni;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod model;
pub mod options;
pub mod order;
pub mod restore;
pub mod runtime;
pub mod sort;
pub mod store;
pub mod wire;

pub use error::{Error, ErrorKind, Result};
