//! The on-disk formats: Fressian (chunks), EDN (metadata), and the chunk container.

pub mod chunk;
pub mod edn;
pub mod fressian;
