//! The datom pipeline between the JVM and the stored chunks.
//!
//! ```text
//! backup:  wire batches ──► feed (decode thread) ──► order (restore order, via the external
//!          sort) ──► chunk (cut on encoded size, gzip, SHA-256)
//! restore: stored bytes ──► chunk (gunzip, decode) ──► datoms in restore order
//! ```
//! Nothing here knows where bytes are stored ([`crate::store`]) or how a backup is laid out
//! ([`crate::repo`]).

pub mod chunk;
pub mod feed;
pub mod order;
pub mod sort;
