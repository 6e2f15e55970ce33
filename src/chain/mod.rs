//! Backup chains: a base full backup plus a contiguous sequence of incremental links, each
//! covering a tx range `(after, through]` and naming its predecessor (the manifest fields:
//! [`crate::repo::link`]).
//!
//! - [`resolve`]: from any backup id, its chain back to the base, checked link by link
//!   (complete, same database, contiguous); a broken link ends the chain, named.
//! - [`plan`]: what a restore reads — the links' chunks up to a point in time (a prefix of
//!   the tx-ascending stream; chunks wholly after the point are never read).
//! - [`state`]: the `:db/noHistory` state a chain carries from link to link, because
//!   history does not record those attributes' removals.
//! - [`retention`]: the retention policy of `prune-backups`, decided on whole chains.
//!
//! Pure functions over manifests where possible; reading goes through a
//! [`crate::store::Store`], and chunk reads are handed in by the caller (the one chunk
//! check lives in `ops::check`). Later link kinds (log segments of continuous capture) fit
//! the same shape: a link covers a tx range and names its parent.

pub mod plan;
pub mod resolve;
pub mod retention;
pub mod state;
