//! Byte formats, with no knowledge of backups or storage.
//!
//! - [`fressian`]: the chunks' serialization, byte-compatible with `clojure.data.fressian`.
//! - [`edn`]: the metadata files (manifest, config, checkpoint) and the EDN that crosses JNI.
//! - [`tagged`]: the tagged binary encoding of one [`crate::model::Value`], shared by
//!   [`wire`] (datom batches crossing JNI as columns) and [`record`] (the external sort's
//!   spilled runs).

pub mod edn;
pub mod fressian;
pub mod record;
pub mod tagged;
pub mod wire;
