//! The operations, one module each: [`backup`] (and [`resume`], [`incremental`]: the
//! parent of an incremental), [`restore`] (and [`restore_chain`]: chains and points in
//! time), [`list`], [`verify`], [`cleanup`], [`repair`] (a finished backup's damaged
//! manifest), [`prune`] (retention). They combine the [`crate::pipeline`] with a
//! [`crate::repo`] on a [`crate::store::Store`], and return typed results; the JNI layer
//! (and the CLI) render them.

pub mod backup;
pub mod check;
pub mod cleanup;
pub mod incremental;
pub mod list;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod restore_chain;
pub mod resume;
pub mod verify;

#[cfg(test)]
pub(crate) mod testing;
