//! The operations, one module each: [`backup`] (and [`resume`]), [`restore`], [`list`],
//! [`verify`], [`cleanup`], [`repair`] (a finished backup's damaged manifest), [`capture`]
//! (a continuous-backup session). They combine the [`crate::pipeline`] with a
//! [`crate::repo`] on a [`crate::store::Store`], and return typed results; the JNI layer
//! (and the CLI) render them.

pub mod backup;
pub mod capture;
pub mod check;
pub mod cleanup;
pub mod list;
pub mod repair;
pub mod restore;
pub mod resume;
pub mod verify;

#[cfg(test)]
pub(crate) mod testing;
