//! A backup repository on a [`crate::store::Store`]: what lives where, and the metadata files.
//!
//! - [`layout`]: every key of a backup, built in one place.
//! - [`manifest`] (the commit point), [`checkpoint`] (progress), [`lock`] (the resume lock):
//!   one module per metadata file.
//! - [`meta`]: reading and writing those EDN files, with size limits, in one place.
//! - [`link`]: a backup's place in its chain, as its manifest records it.

pub mod checkpoint;
pub mod layout;
pub mod link;
pub mod lock;
pub mod manifest;
pub mod meta;
