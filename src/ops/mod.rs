//! The operations, one module each: [`backup`] (and [`resume`], [`incremental`]: the
//! parent of an incremental), [`restore`] (and [`restore_chain`]: chains and points in
//! time), [`list`], [`verify`], [`cleanup`], [`repair`] (a finished backup's damaged
//! manifest), [`prune`] (retention), [`inspect`] (a backup's metadata and datoms, for
//! tools), [`capture`] (a continuous-backup session). They combine the [`crate::pipeline`] with a
//! [`crate::repo`] on a [`crate::store::Store`], and return typed results; the JNI layer
//! (and the CLI) render them.

pub mod backup;
pub mod capture;
pub mod check;
pub mod cleanup;
pub mod incremental;
pub mod inspect;
pub mod list;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod restore_chain;
mod restore_feed;
pub mod resume;
pub mod rewrap;
pub mod verify;

/// Given an operation's name (`"backup"`, `"resume"`, `"restore"`, `"verify"`,
/// `"cleanup"`, `"prune"`, `"repair"`, `"rewrap"`, `"continuous"`), return the option keys its callers may pass (each listed next to its
/// operation's options); `None` for an unknown operation.
pub fn option_keys(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "backup" => backup::KEYS,
        "resume" => resume::KEYS,
        "restore" => restore::KEYS,
        "verify" => verify::KEYS,
        "cleanup" => cleanup::KEYS,
        "prune" => prune::KEYS,
        "repair" => repair::KEYS,
        "rewrap" => rewrap::KEYS,
        "continuous" => capture::KEYS,
        _ => return None,
    })
}

#[cfg(test)]
mod encryption_tests;
#[cfg(test)]
pub(crate) mod testing;
